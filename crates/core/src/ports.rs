//! The ports: the only way this crate's callers reach AWS. The adapter crate implements them
//! with the AWS SDK; tests implement them with fakes.
//!
//! Each method returns a `Send` future, so the Lambdas can run them on a multi-threaded
//! runtime; implementations may simply write `async fn`. Errors are [`CoreError`]s, classified
//! by the adapter (see [`CoreError::from_aws_error`]).

use std::collections::BTreeMap;
use std::future::Future;

use crate::audit::roles::{AuditInstance, IamFacts};
use crate::audit::ssm::{ManagedNode, NetworkFacts};
use crate::command::CommandSpec;
use crate::error::CoreError;
use crate::facts::{
    Association, InstanceFacts, Invocation, Modification, PingStatus, ProfileRef, SnapshotFacts, StackResource, StatusChecks, VolumeFacts,
};
use crate::runbook::input::LifecycleAction;
use crate::runbook::log::TargetRow;

/// EC2: instances, volumes and instance profile associations.
pub trait Ec2: Send + Sync {
    /// DescribeInstances for one instance; `NotFound` when it does not exist.
    fn describe_instance(&self, instance_id: &str) -> impl Future<Output = Result<InstanceFacts, CoreError>> + Send;

    /// DescribeVolumes plus the latest DescribeVolumesModifications entry.
    fn describe_volume(&self, volume_id: &str) -> impl Future<Output = Result<VolumeFacts, CoreError>> + Send;

    /// ModifyVolume to `size_gib`; returns the modification it started.
    fn modify_volume(&self, volume_id: &str, size_gib: u32) -> impl Future<Output = Result<Modification, CoreError>> + Send;

    /// The latest modification of the volume, if it was ever modified.
    fn describe_volume_modification(&self, volume_id: &str) -> impl Future<Output = Result<Option<Modification>, CoreError>> + Send;

    /// AssociateIamInstanceProfile; `profile` is an ARN or a name.
    fn associate_profile(&self, instance_id: &str, profile: &str) -> impl Future<Output = Result<Association, CoreError>> + Send;

    /// ReplaceIamInstanceProfileAssociation.
    fn replace_profile_association(
        &self,
        association_id: &str,
        profile: &str,
    ) -> impl Future<Output = Result<Association, CoreError>> + Send;

    /// DisassociateIamInstanceProfile.
    fn disassociate_profile(&self, association_id: &str) -> impl Future<Output = Result<Association, CoreError>> + Send;

    /// The instance's `associating` or `associated` association, if any.
    fn describe_association(&self, instance_id: &str) -> impl Future<Output = Result<Option<Association>, CoreError>> + Send;

    /// DescribeInstanceStatus: `None` while EC2 reports no status for the instance.
    fn instance_status(&self, instance_id: &str) -> impl Future<Output = Result<Option<StatusChecks>, CoreError>> + Send;

    /// RebootInstances (for `RebootFallback`).
    fn reboot_instance(&self, instance_id: &str) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// IAM: instance profiles.
pub trait Iam: Send + Sync {
    /// GetInstanceProfile by name; `NotFound` when there is none.
    fn get_instance_profile(&self, name: &str) -> impl Future<Output = Result<ProfileRef, CoreError>> + Send;
}

/// SSM: managed node status and Run Command.
pub trait Ssm: Send + Sync {
    /// The ping status of the instance as a managed node; `None` when SSM does not know it.
    fn ping_status(&self, instance_id: &str) -> impl Future<Output = Result<Option<PingStatus>, CoreError>> + Send;

    /// SendCommand for one instance; returns the command ID.
    fn send_command(&self, spec: &CommandSpec, instance_id: &str) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// GetCommandInvocation. Errors carry the AWS code (see
    /// [`crate::command::invocation_lookup_error`] for `InvocationDoesNotExist`).
    fn get_invocation(&self, command_id: &str, instance_id: &str) -> impl Future<Output = Result<Invocation, CoreError>> + Send;

    /// CancelCommand for one instance's invocation (a command that ended already is no error).
    fn cancel_command(&self, command_id: &str, instance_id: &str) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// Time, for the steps that wait while they run: real time in a Lambda, the engine's clock
/// when the local engine runs the step.
pub trait Clock: Send + Sync {
    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Waits `ms` milliseconds.
    fn sleep(&self, ms: u64) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// CloudFormation, for the request handler: whether a request belongs to a stack operation in
/// progress.
pub trait Stacks: Send + Sync {
    /// The stack's status and the resource's type and status; `None` when the stack or the
    /// resource does not exist.
    fn resource(&self, stack_id: &str, logical_id: &str) -> impl Future<Output = Result<Option<StackResource>, CoreError>> + Send;
}

/// opsflow's own state, where only opsflow writes (a DynamoDB table on AWS): JSON documents
/// by key (see `provision::state`).
pub trait SetupStore: Send + Sync {
    /// The document under `key`, if any (a strongly consistent read).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, CoreError>> + Send;

    /// Writes `doc` under `key` unless a document is there already: false when one was (a
    /// conditional write, so two writers never both win). `expires_at_s`: when the store may
    /// drop it (seconds since the epoch).
    fn put_new(&self, key: &str, doc: &str, expires_at_s: Option<i64>) -> impl Future<Output = Result<bool, CoreError>> + Send;

    /// Writes `doc` under `key`, replacing what is there.
    fn put(&self, key: &str, doc: &str, expires_at_s: Option<i64>) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// Removes `key` (no error when it is not there).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// One member account and region, reached through its member role: what a runbook does there.
pub trait Member: Send + Sync {
    /// DescribeInstances of the instances a query selects (not terminated), with tags.
    fn find_instances(&self, query: &InstanceQuery) -> impl Future<Output = Result<Vec<InstanceFacts>, CoreError>> + Send;

    /// Resource Groups GetGroupQuery: the group's query `Type` and `Query` (JSON text);
    /// `NotFound` when the account and region have no such group.
    fn group_query(&self, group: &str) -> impl Future<Output = Result<(String, String), CoreError>> + Send;

    /// DescribeInstanceInformation: the ping status of each of these instances SSM knows.
    fn ping_statuses(
        &self,
        instance_ids: &[String],
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, PingStatus>, CoreError>> + Send;

    /// DescribeInstances for one instance; `NotFound` when it does not exist.
    fn describe_instance(&self, instance_id: &str) -> impl Future<Output = Result<InstanceFacts, CoreError>> + Send;

    /// SendCommand for one instance; returns the command ID.
    fn send_command(&self, spec: &CommandSpec, instance_id: &str) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// GetCommandInvocation.
    fn get_invocation(&self, command_id: &str, instance_id: &str) -> impl Future<Output = Result<Invocation, CoreError>> + Send;

    /// CancelCommand for one instance's invocation.
    fn cancel_command(&self, command_id: &str, instance_id: &str) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// DescribeInstanceStatus: both status checks; `None` while EC2 reports none.
    fn instance_status(&self, instance_id: &str) -> impl Future<Output = Result<Option<StatusChecks>, CoreError>> + Send;

    /// StartInstances for one instance (a started one stays as it is).
    fn start_instance(&self, instance_id: &str) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// StopInstances for one instance (a stopping or stopped one stays as it is).
    fn stop_instance(&self, instance_id: &str) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// DescribeAlarms: the names of the metric alarms that watch this instance (a dimension
    /// `InstanceId` = it, on the alarm's metric or on a metric of its metric math).
    fn alarms_on_instance(&self, instance_id: &str) -> impl Future<Output = Result<Vec<String>, CoreError>> + Send;

    /// PutAlarmMuteRule: a one-time rule that mutes the alarms' actions (create or replace).
    fn mute_alarms(&self, rule: &MuteRule) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// DeleteAlarmMuteRule (a rule already gone is no error).
    fn unmute_alarms(&self, rule_name: &str) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// CreateSnapshots: one snapshot of every EBS volume of the instance, at one point in time
    /// (crash-consistent across the volumes), tagged at creation.
    fn create_snapshots(&self, request: &SnapshotRequest) -> impl Future<Output = Result<Vec<SnapshotFacts>, CoreError>> + Send;

    /// DescribeSnapshots owned by this account that carry every one of these tags.
    fn find_snapshots(&self, tags: &[(String, String)]) -> impl Future<Output = Result<Vec<SnapshotFacts>, CoreError>> + Send;

    /// DeleteSnapshot.
    fn delete_snapshot(&self, snapshot_id: &str) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// CreateReplaceRootVolumeTask from a snapshot of the instance's root volume (the instance
    /// keeps running, its id and addresses; the replaced volume is kept); `client_token` makes
    /// a retry return the same task. Returns the task id.
    fn replace_root_volume(
        &self,
        instance_id: &str,
        snapshot_id: &str,
        client_token: &str,
    ) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// DescribeReplaceRootVolumeTasks: the task's state (`pending`, `in-progress`, `failing`,
    /// `succeeded`, `failed`, `failed-detached`).
    fn replace_root_task(&self, task_id: &str) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// CreateTags on the instance (the member role may set only opsflow's case tags).
    fn tag_instance(&self, instance_id: &str, tags: &[(String, String)]) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// DescribeAutoScalingInstances: the instance's group and lifecycle state
    /// (`Terminating:Wait`, …); `None` when no group holds it.
    fn lifecycle_state(&self, instance_id: &str) -> impl Future<Output = Result<Option<(String, String)>, CoreError>> + Send;

    /// DescribeLifecycleHooks for one hook; `NotFound` when the group has no such hook.
    fn lifecycle_hook(&self, group: &str, hook: &str) -> impl Future<Output = Result<LifecycleHook, CoreError>> + Send;

    /// RecordLifecycleActionHeartbeat: restarts the hook's heartbeat timeout.
    fn lifecycle_heartbeat(&self, action: &LifecycleAction) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// CompleteLifecycleAction with `result` (CONTINUE or ABANDON); false when the action had
    /// ended already (Auto Scaling's "No active Lifecycle Action found").
    fn complete_lifecycle_action(&self, action: &LifecycleAction, result: &str) -> impl Future<Output = Result<bool, CoreError>> + Send;

    /// DescribeNetworkInterfaces attached to the instance: each one's VPC and security groups.
    fn network_interfaces(&self, instance_id: &str) -> impl Future<Output = Result<Vec<NetworkInterface>, CoreError>> + Send;

    /// The security group `name` of the VPC, made if it is not there: no inbound rule, its
    /// default outbound rule revoked, tagged `tags`. Returns its id.
    fn quarantine_group(
        &self,
        vpc_id: &str,
        name: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// ModifyNetworkInterfaceAttribute: the interface's security groups become `groups`.
    fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// The target groups (ARN and port) the instance is registered in (DescribeTargetGroups,
    /// DescribeTargetHealth).
    fn target_groups_of(&self, instance_id: &str) -> impl Future<Output = Result<Vec<(String, Option<i32>)>, CoreError>> + Send;

    /// DeregisterTargets of the instance (on that port) from the target group.
    fn deregister_target(
        &self,
        target_group_arn: &str,
        instance_id: &str,
        port: Option<i32>,
    ) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// GetInstanceProfile: the profile's role and its tags; `None` when it has no role.
    fn profile_role(&self, profile_arn: &str) -> impl Future<Output = Result<Option<TaggedRole>, CoreError>> + Send;

    /// PutRolePolicy: an inline policy on the role (create or replace).
    fn put_role_policy(&self, role: &str, name: &str, document: &str) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// A role's name and its tags.
pub type TaggedRole = (String, BTreeMap<String, String>);

/// An elastic network interface attached to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub interface_id: String,
    pub vpc_id: String,
    pub groups: Vec<String>,
}

/// An Auto Scaling lifecycle hook's timeout and what happens when it runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleHook {
    pub heartbeat_timeout_s: i64,
    /// CONTINUE or ABANDON.
    pub default_result: String,
}

/// CreateSnapshots of one instance's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub instance_id: String,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// A one-time CloudWatch alarm mute rule: `alarms` muted from the minute of `from_epoch_s` for
/// `duration_s`, after which it ends by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuteRule {
    pub name: String,
    pub description: String,
    pub alarms: Vec<String>,
    pub from_epoch_s: i64,
    pub duration_s: i64,
}

/// What DescribeInstances is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceQuery {
    Ids(Vec<String>),
    /// Every filter must match; a filter matches any of its values (with no values, any
    /// instance that has the key).
    Tags(Vec<(String, Vec<String>)>),
}

/// The member accounts: a [`Member`] per account and region. The adapter assumes the member
/// role itself (with the ExternalId) and caches the session; credentials never leave it.
pub trait Fleet: Send + Sync {
    type Member: Member;

    fn member(&self, account: &str, region: &str) -> impl Future<Output = Result<Self::Member, CoreError>> + Send;
}

/// What the audits read in one account and region, through its member audit role (read only).
pub trait AuditReader: Send + Sync {
    /// Every instance not terminated (DescribeInstances, all pages).
    fn instances(&self) -> impl Future<Output = Result<Vec<AuditInstance>, CoreError>> + Send;

    /// The account's roles and the default documents of the managed policies they reference.
    fn iam(&self) -> impl Future<Output = Result<IamFacts, CoreError>> + Send;

    /// Every node SSM lists (DescribeInstanceInformation, all pages: EC2 and hybrid).
    fn managed_nodes(&self) -> impl Future<Output = Result<Vec<ManagedNode>, CoreError>> + Send;

    /// The role Default Host Management Configuration gives instances without a profile, None
    /// when it is off.
    fn dhmc_role(&self) -> impl Future<Output = Result<Option<String>, CoreError>> + Send;

    /// The network between these instances and SSM: their security groups' egress, their
    /// subnets' default routes, their VPCs' SSM endpoints.
    fn network(&self, instances: &[AuditInstance]) -> impl Future<Output = Result<NetworkFacts, CoreError>> + Send;
}

/// The audits' readers, one per account and region (the adapter assumes the member audit role
/// with the ExternalId and caches the session).
pub trait Auditors: Send + Sync {
    type Reader: AuditReader;
    /// EC2 as fleet health's automatic fix may use it: only AssociateIamInstanceProfile of the
    /// deployment's default SSM profile, which the member account's fix role allows and nothing
    /// else.
    type Fixer: Ec2;

    fn reader(&self, account: &str, region: &str) -> impl Future<Output = Result<Self::Reader, CoreError>> + Send;
    /// The fix role's EC2 in the account and region.
    fn fixer(&self, account: &str, region: &str) -> impl Future<Output = Result<Self::Fixer, CoreError>> + Send;
}

/// S3 objects opsflow writes and reads (targets, summaries, command output).
pub trait Objects: Send + Sync {
    fn put(&self, bucket: &str, key: &str, body: &str) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// The object's text; `NotFound` when it does not exist.
    fn get(&self, bucket: &str, key: &str) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// The last `bytes` bytes of the object (a ranged GET); `NotFound` when it does not exist.
    fn tail(&self, bucket: &str, key: &str, bytes: usize) -> impl Future<Output = Result<String, CoreError>> + Send;

    /// Streams the object through `f` on a blocking thread (never all of it in memory), with
    /// the SHA-256 checksum S3 stored for it (base64), if it has one; `NotFound` when it does
    /// not exist.
    fn read<R: Send + 'static>(
        &self,
        bucket: &str,
        key: &str,
        f: impl FnOnce(&mut dyn std::io::Read) -> R + Send + 'static,
    ) -> impl Future<Output = Result<(R, Option<String>), CoreError>> + Send;
}

/// The runbook audit trail (a DynamoDB table on AWS): one row per target of each run, plus the
/// run's error count.
pub trait RunLog: Send + Sync {
    /// The run's errors so far (a strongly consistent read; 0 when none was counted).
    fn errors(&self, run: &str) -> impl Future<Output = Result<u32, CoreError>> + Send;

    /// Writes `row` unless the target already has one; returns the row that was there.
    fn begin(&self, row: &TargetRow) -> impl Future<Output = Result<Option<TargetRow>, CoreError>> + Send;

    /// Writes the final `row` if the target's row is not final yet and, in the same
    /// transaction, counts an error on the run when `error`; false when it was final already.
    fn finish(&self, row: &TargetRow, error: bool) -> impl Future<Output = Result<bool, CoreError>> + Send;

    /// Every target row of the run.
    fn targets(&self, run: &str) -> impl Future<Output = Result<Vec<TargetRow>, CoreError>> + Send;

    /// Target rows that started at or after `since` (RFC 3339), any run.
    fn since(&self, since: &str) -> impl Future<Output = Result<Vec<TargetRow>, CoreError>> + Send;

    /// Remembers the command a procedure execution sent; returns the one remembered before, if
    /// any (then nothing is written), so a retried send never sends twice.
    fn command(
        &self,
        execution: &str,
        command_id: &str,
        expires_at_s: i64,
    ) -> impl Future<Output = Result<Option<String>, CoreError>> + Send;

    /// The command a procedure execution sent, if any.
    fn sent_command(&self, execution: &str) -> impl Future<Output = Result<Option<String>, CoreError>> + Send;
}

/// A clock that never waits: `sleep` moves it on at once. For the local pipeline's request
/// handler, whose retries must not hold a run for real seconds, and for models in benchmarks.
#[derive(Debug)]
pub struct SteppedClock(std::sync::atomic::AtomicI64);

impl SteppedClock {
    pub fn starting_at(now_ms: i64) -> Self {
        SteppedClock(std::sync::atomic::AtomicI64::new(now_ms))
    }
}

impl Clock for SteppedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn sleep(&self, ms: u64) -> Result<(), CoreError> {
        self.0.fetch_add(ms as i64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Where the CloudFormation answer goes: an HTTP PUT of `body` to the presigned `url`.
pub trait ResponseSink: Send + Sync {
    fn put(&self, url: &str, body: &str) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// Step Functions, for the request handler and the safety net.
pub trait Workflow: Send + Sync {
    /// StartExecution named `name` (the CloudFormation RequestId): starting the same name again
    /// (a redelivered request) is not an error and starts nothing.
    fn start_execution(&self, name: &str, input: &serde_json::Value) -> impl Future<Output = Result<(), CoreError>> + Send;

    /// Whether the execution's history shows an answer step that finished (the response was PUT).
    fn answered(&self, execution_arn: &str) -> impl Future<Output = Result<bool, CoreError>> + Send;

    /// Stops the execution named `name` if it still runs (StopExecution with `cause`); true when
    /// it was running.
    fn stop_execution(&self, name: &str, cause: &str) -> impl Future<Output = Result<bool, CoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{AssociationState, BlockDevice, InstanceState, ModificationState, Platform};
    use crate::provision::cfn::{CfnRequest, CfnResponse};
    use crate::provision::plan::{choose_volume, plan_profile, plan_volume, ProfileAction, VolumeAction, VolumeRules};
    use std::collections::BTreeMap;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    /// Drives a future whose fakes never wait.
    fn run<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
        }
        panic!("the fake future did not complete");
    }

    fn assert_send<T: Send>(value: T) -> T {
        value
    }

    #[derive(Default)]
    struct FakeAws {
        calls: Mutex<Vec<String>>,
        volume_size: Mutex<u32>,
        puts: Mutex<Vec<(String, String)>>,
    }

    impl FakeAws {
        fn log(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    fn association(profile: &str) -> Association {
        Association {
            association_id: "iip-assoc-1".into(),
            profile_arn: format!("arn:aws:iam::123456789012:instance-profile/{profile}"),
            state: AssociationState::Associating,
        }
    }

    impl Ec2 for FakeAws {
        async fn describe_instance(&self, instance_id: &str) -> Result<InstanceFacts, CoreError> {
            self.log(format!("DescribeInstances {instance_id}"));
            if instance_id != "i-0123456789abcdef0" {
                return Err(CoreError::not_found(format!("instance {instance_id}"), "no such instance"));
            }
            Ok(InstanceFacts {
                instance_id: instance_id.into(),
                state: InstanceState::Running,
                platform: Platform::Linux,
                root_device_name: Some("/dev/xvda".into()),
                block_devices: vec![BlockDevice {
                    device_name: "/dev/xvda".into(),
                    volume_id: "vol-0abc".into(),
                }],
                iam_association: None,
                tags: BTreeMap::new(),
                launch_time_epoch_s: Some(0),
            })
        }
        async fn describe_volume(&self, volume_id: &str) -> Result<VolumeFacts, CoreError> {
            self.log(format!("DescribeVolumes {volume_id}"));
            Ok(VolumeFacts {
                volume_id: volume_id.into(),
                size_gib: *self.volume_size.lock().unwrap(),
                volume_type: "gp3".into(),
                modification: None,
            })
        }
        async fn modify_volume(&self, volume_id: &str, size_gib: u32) -> Result<Modification, CoreError> {
            self.log(format!("ModifyVolume {volume_id} {size_gib}"));
            *self.volume_size.lock().unwrap() = size_gib;
            Ok(Modification {
                state: ModificationState::Modifying,
                target_size_gib: size_gib,
                start_time_epoch_s: 0,
                end_time_epoch_s: None,
            })
        }
        async fn describe_volume_modification(&self, volume_id: &str) -> Result<Option<Modification>, CoreError> {
            self.log(format!("DescribeVolumesModifications {volume_id}"));
            Ok(None)
        }
        async fn associate_profile(&self, instance_id: &str, profile: &str) -> Result<Association, CoreError> {
            self.log(format!("AssociateIamInstanceProfile {instance_id} {profile}"));
            Ok(association(profile))
        }
        async fn replace_profile_association(&self, association_id: &str, profile: &str) -> Result<Association, CoreError> {
            self.log(format!("ReplaceIamInstanceProfileAssociation {association_id} {profile}"));
            Ok(association(profile))
        }
        async fn disassociate_profile(&self, association_id: &str) -> Result<Association, CoreError> {
            self.log(format!("DisassociateIamInstanceProfile {association_id}"));
            Ok(Association {
                state: AssociationState::Disassociating,
                ..association("x")
            })
        }
        async fn describe_association(&self, instance_id: &str) -> Result<Option<Association>, CoreError> {
            self.log(format!("DescribeIamInstanceProfileAssociations {instance_id}"));
            Ok(None)
        }
        async fn instance_status(&self, instance_id: &str) -> Result<Option<StatusChecks>, CoreError> {
            self.log(format!("DescribeInstanceStatus {instance_id}"));
            Ok(None)
        }
        async fn reboot_instance(&self, instance_id: &str) -> Result<(), CoreError> {
            self.log(format!("RebootInstances {instance_id}"));
            Ok(())
        }
    }

    impl Iam for FakeAws {
        async fn get_instance_profile(&self, name: &str) -> Result<ProfileRef, CoreError> {
            self.log(format!("GetInstanceProfile {name}"));
            Ok(ProfileRef {
                name: name.into(),
                path: "/".into(),
                arn: format!("arn:aws:iam::123456789012:instance-profile/{name}"),
                roles: vec!["role".into()],
            })
        }
    }

    impl Ssm for FakeAws {
        async fn ping_status(&self, instance_id: &str) -> Result<Option<PingStatus>, CoreError> {
            self.log(format!("DescribeInstanceInformation {instance_id}"));
            Ok(Some(PingStatus::Online))
        }
        async fn send_command(&self, spec: &CommandSpec, instance_id: &str) -> Result<String, CoreError> {
            self.log(format!("SendCommand {} {instance_id}", spec.document_name));
            Ok("cmd-1".into())
        }
        async fn get_invocation(&self, command_id: &str, instance_id: &str) -> Result<Invocation, CoreError> {
            self.log(format!("GetCommandInvocation {command_id} {instance_id}"));
            Ok(Invocation {
                status: "Success".into(),
                status_details: "Success".into(),
                response_code: 0,
                ..Invocation::default()
            })
        }
        async fn cancel_command(&self, command_id: &str, instance_id: &str) -> Result<(), CoreError> {
            self.log(format!("CancelCommand {command_id} {instance_id}"));
            Ok(())
        }
    }

    impl ResponseSink for FakeAws {
        async fn put(&self, url: &str, body: &str) -> Result<(), CoreError> {
            self.puts.lock().unwrap().push((url.into(), body.into()));
            Ok(())
        }
    }

    #[test]
    fn unused_ports_fail_naming_the_service() {
        let e = run(Ec2::describe_instance(&Unused, "i-0123456789abcdef0")).unwrap_err();
        assert_eq!(e.name(), "Unsupported");
        assert!(e.to_string().starts_with("Unsupported: EC2: "), "{e}");
        assert!(run(Unused.ping_status("i-1")).unwrap_err().to_string().contains("SSM"));
        assert!(run(Unused.get_instance_profile("p")).unwrap_err().to_string().contains("IAM"));
        assert!(run(ResponseSink::put(&Unused, "https://example/", "{}"))
            .unwrap_err()
            .to_string()
            .contains("ResponseURL"));
    }

    #[test]
    fn port_futures_are_send() {
        let aws = FakeAws::default();
        let spec = crate::provision::script::fs_grow_command(Platform::Linux, &crate::provision::script::FsTarget::MountPoint("/".into()))
            .unwrap();
        run(assert_send(aws.describe_instance("i-0123456789abcdef0"))).unwrap();
        run(assert_send(aws.get_instance_profile("p"))).unwrap();
        run(assert_send(aws.send_command(&spec, "i-0123456789abcdef0"))).unwrap();
        run(assert_send(aws.put("https://example/", "{}"))).unwrap();
    }

    /// A generic step, written the way the Lambdas will use the ports with the plans.
    async fn grow_root_volume<E: Ec2>(ec2: &E, instance_id: &str, desired: u32) -> Result<VolumeAction, CoreError> {
        let instance = ec2.describe_instance(instance_id).await?;
        let chosen = choose_volume(&instance, None)?;
        let volume = ec2.describe_volume(&chosen.volume_id).await?;
        let action = plan_volume(Some(desired), &volume, 0, &VolumeRules::CURRENT)?;
        if let VolumeAction::Grow { volume_id, to, .. } = &action {
            ec2.modify_volume(volume_id, *to).await?;
        }
        Ok(action)
    }

    async fn assign_profile<E: Ec2, I: Iam>(ec2: &E, iam: &I, instance_id: &str, name: &str) -> Result<ProfileAction, CoreError> {
        let profile = iam.get_instance_profile(name).await?;
        let current = ec2.describe_association(instance_id).await?;
        let action = plan_profile(Some(&profile), current.as_ref());
        if let ProfileAction::Associate { profile } = &action {
            ec2.associate_profile(instance_id, profile).await?;
        }
        Ok(action)
    }

    #[test]
    fn plans_drive_the_ports() {
        let aws = FakeAws::default();
        *aws.volume_size.lock().unwrap() = 8;
        let first = run(assert_send(grow_root_volume(&aws, "i-0123456789abcdef0", 32))).unwrap();
        assert_eq!(
            first,
            VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 8,
                to: 32
            }
        );
        let second = run(grow_root_volume(&aws, "i-0123456789abcdef0", 32)).unwrap();
        assert_eq!(
            second,
            VolumeAction::Nothing {
                volume_id: "vol-0abc".into(),
                size_gib: 32
            }
        );
        let assigned = run(assert_send(assign_profile(&aws, &aws, "i-0123456789abcdef0", "dev-ide-profile"))).unwrap();
        assert_eq!(
            assigned,
            ProfileAction::Associate {
                profile: "arn:aws:iam::123456789012:instance-profile/dev-ide-profile".into()
            }
        );
        assert_eq!(
            *aws.calls.lock().unwrap(),
            vec![
                "DescribeInstances i-0123456789abcdef0",
                "DescribeVolumes vol-0abc",
                "ModifyVolume vol-0abc 32",
                "DescribeInstances i-0123456789abcdef0",
                "DescribeVolumes vol-0abc",
                "GetInstanceProfile dev-ide-profile",
                "DescribeIamInstanceProfileAssociations i-0123456789abcdef0",
                "AssociateIamInstanceProfile i-0123456789abcdef0 arn:aws:iam::123456789012:instance-profile/dev-ide-profile",
            ]
        );
        assert_eq!(
            run(grow_root_volume(&aws, "i-0000000000000000f", 32)).unwrap_err().name(),
            "NotFound"
        );
    }

    #[test]
    fn response_sink_receives_the_body() {
        let aws = FakeAws::default();
        let request = CfnRequest::from_value(serde_json::json!({
            "RequestType": "Create", "ResponseURL": "https://s3.example/presigned", "StackId": "stack", "RequestId": "req",
            "ResourceType": "Custom::OpsflowInstanceSetup", "LogicalResourceId": "Setup", "ResourceProperties": {}
        }))
        .unwrap();
        let body = CfnResponse::success(&request, "opsflow-setup-i-0123456789abcdef0").to_body();
        run(aws.put(&request.response_url, &body)).unwrap();
        assert_eq!(*aws.puts.lock().unwrap(), vec![("https://s3.example/presigned".to_string(), body)]);
    }
}

/// The port of a service a function does not use, so that its binary neither builds nor links
/// that client. Every call fails with `Unsupported`: reaching it means a function was given a
/// step it was not built for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unused;

impl Unused {
    fn fail<T>(service: &str) -> Result<T, CoreError> {
        Err(CoreError::unsupported(
            service,
            "this function is built without that client: the step belongs to another function",
        ))
    }
}

impl Ec2 for Unused {
    async fn describe_instance(&self, _: &str) -> Result<InstanceFacts, CoreError> {
        Unused::fail("EC2")
    }
    async fn describe_volume(&self, _: &str) -> Result<VolumeFacts, CoreError> {
        Unused::fail("EC2")
    }
    async fn modify_volume(&self, _: &str, _: u32) -> Result<Modification, CoreError> {
        Unused::fail("EC2")
    }
    async fn describe_volume_modification(&self, _: &str) -> Result<Option<Modification>, CoreError> {
        Unused::fail("EC2")
    }
    async fn associate_profile(&self, _: &str, _: &str) -> Result<Association, CoreError> {
        Unused::fail("EC2")
    }
    async fn replace_profile_association(&self, _: &str, _: &str) -> Result<Association, CoreError> {
        Unused::fail("EC2")
    }
    async fn disassociate_profile(&self, _: &str) -> Result<Association, CoreError> {
        Unused::fail("EC2")
    }
    async fn describe_association(&self, _: &str) -> Result<Option<Association>, CoreError> {
        Unused::fail("EC2")
    }
    async fn instance_status(&self, _: &str) -> Result<Option<StatusChecks>, CoreError> {
        Unused::fail("EC2")
    }
    async fn reboot_instance(&self, _: &str) -> Result<(), CoreError> {
        Unused::fail("EC2")
    }
}

impl Iam for Unused {
    async fn get_instance_profile(&self, _: &str) -> Result<ProfileRef, CoreError> {
        Unused::fail("IAM")
    }
}

impl Ssm for Unused {
    async fn ping_status(&self, _: &str) -> Result<Option<PingStatus>, CoreError> {
        Unused::fail("SSM")
    }
    async fn send_command(&self, _: &CommandSpec, _: &str) -> Result<String, CoreError> {
        Unused::fail("SSM")
    }
    async fn get_invocation(&self, _: &str, _: &str) -> Result<Invocation, CoreError> {
        Unused::fail("SSM")
    }
    async fn cancel_command(&self, _: &str, _: &str) -> Result<(), CoreError> {
        Unused::fail("SSM")
    }
}

impl Stacks for Unused {
    async fn resource(&self, _: &str, _: &str) -> Result<Option<StackResource>, CoreError> {
        Unused::fail("CloudFormation")
    }
}

impl SetupStore for Unused {
    async fn get(&self, _: &str) -> Result<Option<String>, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn put_new(&self, _: &str, _: &str, _: Option<i64>) -> Result<bool, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn put(&self, _: &str, _: &str, _: Option<i64>) -> Result<(), CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn delete(&self, _: &str) -> Result<(), CoreError> {
        Unused::fail("DynamoDB")
    }
}

impl ResponseSink for Unused {
    async fn put(&self, _: &str, _: &str) -> Result<(), CoreError> {
        Unused::fail("ResponseURL")
    }
}

impl Fleet for Unused {
    type Member = Unused;
    async fn member(&self, _: &str, _: &str) -> Result<Unused, CoreError> {
        Unused::fail("member accounts")
    }
}

impl Member for Unused {
    async fn find_instances(&self, _: &InstanceQuery) -> Result<Vec<InstanceFacts>, CoreError> {
        Unused::fail("EC2")
    }
    async fn group_query(&self, _: &str) -> Result<(String, String), CoreError> {
        Unused::fail("Resource Groups")
    }
    async fn ping_statuses(&self, _: &[String]) -> Result<std::collections::BTreeMap<String, PingStatus>, CoreError> {
        Unused::fail("SSM")
    }
    async fn describe_instance(&self, _: &str) -> Result<InstanceFacts, CoreError> {
        Unused::fail("EC2")
    }
    async fn send_command(&self, _: &CommandSpec, _: &str) -> Result<String, CoreError> {
        Unused::fail("SSM")
    }
    async fn get_invocation(&self, _: &str, _: &str) -> Result<Invocation, CoreError> {
        Unused::fail("SSM")
    }
    async fn cancel_command(&self, _: &str, _: &str) -> Result<(), CoreError> {
        Unused::fail("SSM")
    }
    async fn instance_status(&self, _: &str) -> Result<Option<StatusChecks>, CoreError> {
        Unused::fail("EC2")
    }
    async fn start_instance(&self, _: &str) -> Result<(), CoreError> {
        Unused::fail("EC2")
    }
    async fn stop_instance(&self, _: &str) -> Result<(), CoreError> {
        Unused::fail("EC2")
    }
    async fn alarms_on_instance(&self, _: &str) -> Result<Vec<String>, CoreError> {
        Unused::fail("CloudWatch")
    }
    async fn mute_alarms(&self, _: &MuteRule) -> Result<(), CoreError> {
        Unused::fail("CloudWatch")
    }
    async fn unmute_alarms(&self, _: &str) -> Result<(), CoreError> {
        Unused::fail("CloudWatch")
    }
    async fn create_snapshots(&self, _: &SnapshotRequest) -> Result<Vec<SnapshotFacts>, CoreError> {
        Unused::fail("EC2")
    }
    async fn find_snapshots(&self, _: &[(String, String)]) -> Result<Vec<SnapshotFacts>, CoreError> {
        Unused::fail("EC2")
    }
    async fn delete_snapshot(&self, _: &str) -> Result<(), CoreError> {
        Unused::fail("EC2")
    }
    async fn replace_root_volume(&self, _: &str, _: &str, _: &str) -> Result<String, CoreError> {
        Unused::fail("EC2")
    }
    async fn replace_root_task(&self, _: &str) -> Result<String, CoreError> {
        Unused::fail("EC2")
    }
    async fn tag_instance(&self, _: &str, _: &[(String, String)]) -> Result<(), CoreError> {
        Unused::fail("EC2")
    }
    async fn lifecycle_state(&self, _: &str) -> Result<Option<(String, String)>, CoreError> {
        Unused::fail("Auto Scaling")
    }
    async fn lifecycle_hook(&self, _: &str, _: &str) -> Result<LifecycleHook, CoreError> {
        Unused::fail("Auto Scaling")
    }
    async fn lifecycle_heartbeat(&self, _: &LifecycleAction) -> Result<(), CoreError> {
        Unused::fail("Auto Scaling")
    }
    async fn complete_lifecycle_action(&self, _: &LifecycleAction, _: &str) -> Result<bool, CoreError> {
        Unused::fail("Auto Scaling")
    }
    async fn network_interfaces(&self, _: &str) -> Result<Vec<NetworkInterface>, CoreError> {
        Unused::fail("EC2")
    }
    async fn quarantine_group(&self, _: &str, _: &str, _: &[(String, String)]) -> Result<String, CoreError> {
        Unused::fail("EC2")
    }
    async fn set_interface_groups(&self, _: &str, _: &[String]) -> Result<(), CoreError> {
        Unused::fail("EC2")
    }
    async fn target_groups_of(&self, _: &str) -> Result<Vec<(String, Option<i32>)>, CoreError> {
        Unused::fail("Elastic Load Balancing")
    }
    async fn deregister_target(&self, _: &str, _: &str, _: Option<i32>) -> Result<(), CoreError> {
        Unused::fail("Elastic Load Balancing")
    }
    async fn profile_role(&self, _: &str) -> Result<Option<TaggedRole>, CoreError> {
        Unused::fail("IAM")
    }
    async fn put_role_policy(&self, _: &str, _: &str, _: &str) -> Result<(), CoreError> {
        Unused::fail("IAM")
    }
}

impl Objects for Unused {
    async fn put(&self, _: &str, _: &str, _: &str) -> Result<(), CoreError> {
        Unused::fail("S3")
    }
    async fn get(&self, _: &str, _: &str) -> Result<String, CoreError> {
        Unused::fail("S3")
    }
    async fn tail(&self, _: &str, _: &str, _: usize) -> Result<String, CoreError> {
        Unused::fail("S3")
    }
    async fn read<R: Send + 'static>(
        &self,
        _: &str,
        _: &str,
        _: impl FnOnce(&mut dyn std::io::Read) -> R + Send + 'static,
    ) -> Result<(R, Option<String>), CoreError> {
        Unused::fail("S3")
    }
}

impl RunLog for Unused {
    async fn errors(&self, _: &str) -> Result<u32, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn begin(&self, _: &TargetRow) -> Result<Option<TargetRow>, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn finish(&self, _: &TargetRow, _: bool) -> Result<bool, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn targets(&self, _: &str) -> Result<Vec<TargetRow>, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn since(&self, _: &str) -> Result<Vec<TargetRow>, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn command(&self, _: &str, _: &str, _: i64) -> Result<Option<String>, CoreError> {
        Unused::fail("DynamoDB")
    }
    async fn sent_command(&self, _: &str) -> Result<Option<String>, CoreError> {
        Unused::fail("DynamoDB")
    }
}

impl crate::alert::AlertPublisher for Unused {
    async fn publish(&self, _: &crate::alert::Publication) -> Result<String, CoreError> {
        Unused::fail("SNS")
    }
}
