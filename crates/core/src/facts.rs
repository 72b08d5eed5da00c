//! What the ports report about AWS: small, serializable facts, with AWS's own spellings.
//!
//! The adapter crate fills these from the SDK responses; the plan functions decide from them.
//! Enumerations use the exact strings of the AWS APIs (`shutting-down`, `insufficient-data`,
//! `ConnectionLost`, ...) so that a fact serialized into a Step Functions state reads like AWS.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The partition of a region (`cn-…` → `aws-cn`, `us-gov-…` → `aws-us-gov`, else `aws`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A string enumeration of an AWS API: serde, `as_str`, `parse` and `Display` use the AWS spelling.
macro_rules! aws_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order AWS documents them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The AWS spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the AWS spelling (exact match); `None` for a value this crate does not know.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_enum! {
    /// `InstanceState.Name` of EC2 DescribeInstances.
    InstanceState {
        Pending => "pending",
        Running => "running",
        ShuttingDown => "shutting-down",
        Terminated => "terminated",
        Stopping => "stopping",
        Stopped => "stopped",
    }
}

aws_enum! {
    /// `Platform` of the instance: EC2 reports `windows` or nothing (then it is Linux/UNIX).
    Platform {
        Linux => "linux",
        Windows => "windows",
    }
}

impl InstanceState {
    /// Stopping, stopped, shutting down or terminated: a command on it cannot finish (its SSM
    /// agent is going or gone).
    pub fn is_going_down(self) -> bool {
        matches!(
            self,
            InstanceState::Stopping | InstanceState::Stopped | InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

impl Platform {
    /// From EC2's `Instance.Platform`, which is `windows` for Windows instances and absent otherwise.
    pub fn from_ec2(platform: Option<&str>) -> Platform {
        match platform {
            Some(p) if p.eq_ignore_ascii_case("windows") => Platform::Windows,
            _ => Platform::Linux,
        }
    }

    /// From EC2's `Platform` and `PlatformDetails` (`Windows`, `Windows with SQL Server
    /// Standard`, `Windows BYOL`, `Linux/UNIX`, `Red Hat Enterprise Linux`…): the details are the
    /// more recent field and decide when `Platform` is absent.
    pub fn from_ec2_details(platform: Option<&str>, platform_details: Option<&str>) -> Platform {
        match Platform::from_ec2(platform) {
            Platform::Windows => Platform::Windows,
            Platform::Linux if platform_details.is_some_and(|d| d.trim_start().to_ascii_lowercase().starts_with("windows")) => {
                Platform::Windows
            }
            Platform::Linux => Platform::Linux,
        }
    }
}

aws_enum! {
    /// `IamInstanceProfileAssociation.State`.
    AssociationState {
        Associating => "associating",
        Associated => "associated",
        Disassociating => "disassociating",
        Disassociated => "disassociated",
    }
}

aws_enum! {
    /// `VolumeModification.ModificationState`.
    ModificationState {
        Modifying => "modifying",
        Optimizing => "optimizing",
        Completed => "completed",
        Failed => "failed",
    }
}

aws_enum! {
    /// `InstanceStatusSummary.Status` of EC2 DescribeInstanceStatus (instance and system checks).
    CheckStatus {
        Ok => "ok",
        Impaired => "impaired",
        InsufficientData => "insufficient-data",
        NotApplicable => "not-applicable",
        Initializing => "initializing",
    }
}

aws_enum! {
    /// `InstanceInformation.PingStatus` of SSM DescribeInstanceInformation.
    PingStatus {
        Online => "Online",
        ConnectionLost => "ConnectionLost",
        Inactive => "Inactive",
    }
}

/// One EBS volume of the instance's block device mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// EC2's device name, e.g. `/dev/xvda`, `/dev/sda1` or `xvdf` (as in `BlockDeviceMappings`).
    pub device_name: String,
    pub volume_id: String,
}

/// An IAM instance profile association of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    pub association_id: String,
    /// EC2 reports the profile by ARN only.
    pub profile_arn: String,
    pub state: AssociationState,
}

/// What EC2 DescribeInstances tells about the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFacts {
    pub instance_id: String,
    pub state: InstanceState,
    pub platform: Platform,
    /// `RootDeviceName`, e.g. `/dev/xvda`; absent only in odd cases.
    pub root_device_name: Option<String>,
    /// The EBS volumes of `BlockDeviceMappings` (instance store volumes are not listed by EC2).
    pub block_devices: Vec<BlockDevice>,
    /// The current association (`associating` or `associated`), if any.
    pub iam_association: Option<Association>,
    pub tags: BTreeMap<String, String>,
    pub launch_time_epoch_s: Option<i64>,
}

/// A resource of a CloudFormation stack, as DescribeStacks and DescribeStackResource report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackResource {
    /// `StackStatus`, e.g. `CREATE_IN_PROGRESS`, `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS`.
    pub stack_status: String,
    /// `ResourceType`, e.g. `Custom::OpsflowInstanceSetup`.
    pub resource_type: String,
    /// `ResourceStatus`, e.g. `CREATE_IN_PROGRESS`.
    pub resource_status: String,
}

/// The latest modification of a volume (EC2 DescribeVolumesModifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modification {
    pub state: ModificationState,
    pub target_size_gib: u32,
    pub start_time_epoch_s: i64,
    /// Set once the modification is `completed` or `failed`.
    pub end_time_epoch_s: Option<i64>,
}

/// What EC2 DescribeVolumes (plus the latest modification) tells about a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFacts {
    pub volume_id: String,
    pub size_gib: u32,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1` or `standard` (kept as text: AWS adds types).
    pub volume_type: String,
    pub modification: Option<Modification>,
}

/// An EBS snapshot (EC2 CreateSnapshots / DescribeSnapshots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    pub snapshot_id: String,
    pub volume_id: String,
    /// `pending`, `completed`, `error`, `recoverable` or `recovering` (kept as text: AWS adds
    /// states).
    pub state: String,
    /// `Progress`, e.g. `42%`.
    pub progress: String,
    pub start_time_epoch_s: i64,
    /// `StateMessage`: why a snapshot is in `error`.
    pub state_message: String,
    pub tags: BTreeMap<String, String>,
}

/// The two status checks of EC2 DescribeInstanceStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChecks {
    pub instance_status: CheckStatus,
    pub system_status: CheckStatus,
}

/// An IAM instance profile (IAM GetInstanceProfile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRef {
    pub name: String,
    /// `/` or `/a/b/`.
    pub path: String,
    pub arn: String,
    /// Names of the roles in the profile (IAM allows at most one).
    pub roles: Vec<String>,
}

/// The part of SSM GetCommandInvocation that decides the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// `Pending`, `InProgress`, `Delayed`, `Success`, `Cancelled`, `TimedOut`, `Failed` or `Cancelling`.
    pub status: String,
    /// The detailed status, e.g. `Delivery Timed Out` or `Undeliverable`.
    pub status_details: String,
    /// The script's exit code; `-1` when it has not run (yet).
    pub response_code: i32,
    /// `StandardOutputContent` (SSM keeps its first 24,000 characters).
    pub stdout: String,
    /// `StandardErrorContent` (SSM keeps its first 8,000 characters).
    pub stderr: String,
    /// `StandardOutputUrl`: the whole output in S3, when the command wrote it there.
    #[serde(default)]
    pub stdout_url: String,
    /// `StandardErrorUrl`.
    #[serde(default)]
    pub stderr_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Values from the EC2 API reference: InstanceState, IamInstanceProfileAssociation,
    // VolumeModification and InstanceStatusSummary; PingStatus from the SSM API reference.
    #[test]
    fn enums_use_the_aws_spellings() {
        let states: Vec<&str> = InstanceState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(states, ["pending", "running", "shutting-down", "terminated", "stopping", "stopped"]);
        let assoc: Vec<&str> = AssociationState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(assoc, ["associating", "associated", "disassociating", "disassociated"]);
        let mods: Vec<&str> = ModificationState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(mods, ["modifying", "optimizing", "completed", "failed"]);
        let checks: Vec<&str> = CheckStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(checks, ["ok", "impaired", "insufficient-data", "not-applicable", "initializing"]);
        let pings: Vec<&str> = PingStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(pings, ["Online", "ConnectionLost", "Inactive"]);
    }

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for s in InstanceState::ALL {
            assert_eq!(InstanceState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(CheckStatus::parse("insufficient-data"), Some(CheckStatus::InsufficientData));
        assert_eq!(InstanceState::parse("Running"), None);
        assert_eq!(PingStatus::parse("online"), None);
        assert_eq!(InstanceState::ShuttingDown.to_string(), "shutting-down");
    }

    #[test]
    fn platform_from_ec2_field() {
        assert_eq!(Platform::from_ec2(Some("windows")), Platform::Windows);
        assert_eq!(Platform::from_ec2(Some("Windows")), Platform::Windows);
        assert_eq!(Platform::from_ec2(None), Platform::Linux);
        assert_eq!(Platform::from_ec2(Some("")), Platform::Linux);
        // PlatformDetails decides when Platform is absent.
        for details in ["Windows", "Windows with SQL Server Standard", "Windows BYOL"] {
            assert_eq!(Platform::from_ec2_details(None, Some(details)), Platform::Windows, "{details}");
        }
        for details in ["Linux/UNIX", "Red Hat Enterprise Linux"] {
            assert_eq!(Platform::from_ec2_details(None, Some(details)), Platform::Linux, "{details}");
        }
        assert_eq!(Platform::from_ec2_details(Some("windows"), Some("Linux/UNIX")), Platform::Windows);
    }

    #[test]
    fn facts_serialize_with_aws_strings() {
        let facts = InstanceFacts {
            instance_id: "i-0123456789abcdef0".into(),
            state: InstanceState::ShuttingDown,
            platform: Platform::Linux,
            root_device_name: Some("/dev/xvda".into()),
            block_devices: vec![BlockDevice {
                device_name: "/dev/xvda".into(),
                volume_id: "vol-1".into(),
            }],
            iam_association: Some(Association {
                association_id: "iip-assoc-1".into(),
                profile_arn: "arn:aws:iam::123456789012:instance-profile/p".into(),
                state: AssociationState::Associating,
            }),
            tags: BTreeMap::from([("Name".to_string(), "dev".to_string())]),
            launch_time_epoch_s: Some(1_767_225_600),
        };
        let v = serde_json::to_value(&facts).unwrap();
        assert_eq!(v["state"], json!("shutting-down"));
        assert_eq!(v["platform"], json!("linux"));
        assert_eq!(v["iam_association"]["state"], json!("associating"));
        assert_eq!(v["block_devices"][0], json!({"device_name": "/dev/xvda", "volume_id": "vol-1"}));
        let back: InstanceFacts = serde_json::from_value(v).unwrap();
        assert_eq!(back, facts);
    }

    #[test]
    fn unknown_aws_value_fails_to_deserialize() {
        let err = serde_json::from_value::<StatusChecks>(json!({"instance_status": "fine", "system_status": "ok"}));
        assert!(err.is_err());
    }
}
