//! The properties of `Custom::OpsflowInstanceSetup`, validated before any AWS call.
//!
//! CloudFormation sends every scalar property of a custom resource as a string (`32` arrives as
//! `"32"`, `true` as `"true"`), so numbers and booleans are accepted both as JSON values and as
//! strings. A property whose value is `null` or the empty string counts as absent: templates
//! often pass `""` from a parameter to mean "not set". Unknown property names are rejected
//! (except `ServiceToken` and `ServiceTimeout`, which belong to CloudFormation itself).
//!
//! `Bootstrap.Commands` may also be a single string: it is then one command line (which may
//! contain newlines); lines are never joined or split by opsflow.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CoreError;

/// The CloudFormation resource type these properties belong to.
pub const RESOURCE_TYPE: &str = "Custom::OpsflowInstanceSetup";
/// The deployment parameter that holds the instance profile allow-list.
pub const ALLOW_LIST_PARAMETER: &str = "InstanceProfileAllowList";
/// Largest `VolumeSizeGiB` of any EBS volume type (io2 and gp3: 65,536 GiB).
pub const MAX_VOLUME_SIZE_GIB: u32 = 65_536;
/// `Bootstrap.TimeoutSeconds` bounds and default. The minimum is SendCommand's 30 s. The maximum
/// is what one execution can honour: the state machine's `TimeoutSeconds` ([`EXECUTION_TIMEOUT_SECONDS`])
/// less [`RESERVED_SECONDS`] for the steps before the bootstrap and the answer after it (SSM
/// itself would allow 48 h, but CloudFormation waits one hour at most).
pub const MIN_TIMEOUT_SECONDS: u32 = 30;
pub const MAX_TIMEOUT_SECONDS: u32 = EXECUTION_TIMEOUT_SECONDS - RESERVED_SECONDS;
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1_800;
/// The provisioning state machine's `TimeoutSeconds` (statemachines/provision-instance.asl.json):
/// 55 minutes, inside CloudFormation's hour.
pub const EXECUTION_TIMEOUT_SECONDS: u32 = 3_300;
/// Time a bootstrap leaves for everything else of the execution: sending, cancelling, undoing and answering.
pub const RESERVED_SECONDS: u32 = 180;
/// CloudFormation's `ServiceTimeout` of a custom resource: 1 to 3600 s (default 3600).
pub const MAX_SERVICE_TIMEOUT_SECONDS: u32 = 3_600;

const PROPERTIES: [&str; 9] = [
    "ServiceToken",
    "ServiceTimeout",
    "InstanceId",
    "InstanceProfile",
    "VolumeSizeGiB",
    "Device",
    "Bootstrap",
    "RebootFallback",
    "OnDelete",
];
const BOOTSTRAP_PROPERTIES: [&str; 7] = [
    "Commands",
    "DocumentName",
    "Parameters",
    "TimeoutSeconds",
    "OutputS3BucketName",
    "OutputS3KeyPrefix",
    "CloudWatchLogGroupName",
];

/// The validated properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupProps {
    pub instance_id: String,
    pub instance_profile: Option<ProfileSpec>,
    pub volume_size_gib: Option<u32>,
    /// EC2 device name of the volume to grow; `None` means the root device.
    pub device: Option<String>,
    pub bootstrap: Option<Bootstrap>,
    pub reboot_fallback: bool,
    pub on_delete: OnDelete,
    /// CloudFormation's `ServiceTimeout`: how long it waits for the answer (1 to 3600 s), when set.
    #[serde(default)]
    pub service_timeout_s: Option<u32>,
}

/// `InstanceProfile` as written: a name, or an ARN (which also gives the path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSpec {
    pub name: String,
    /// Known only from an ARN.
    pub path: Option<String>,
    pub arn: Option<String>,
}

/// What happens to the instance profile when the resource is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnDelete {
    /// Leave the instance as it is (default).
    #[default]
    Retain,
    /// Put back the instance profile the instance had before opsflow changed it.
    Revert,
}

/// `Bootstrap`: what to run through SSM Run Command once the instance is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub action: BootstrapAction,
    pub timeout_seconds: u32,
    pub output_s3_bucket: Option<String>,
    pub output_s3_prefix: Option<String>,
    pub cloudwatch_log_group: Option<String>,
}

/// Either shell (or PowerShell) lines, or an SSM document with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum BootstrapAction {
    Commands {
        lines: Vec<String>,
    },
    Document {
        name: String,
        parameters: BTreeMap<String, Vec<String>>,
    },
}

impl SetupProps {
    /// Validates `ResourceProperties`; every error names the property path and the rule broken.
    pub fn parse(props: &Value, allow: &AllowList) -> Result<SetupProps, CoreError> {
        let obj = Obj::new(props, "", "ResourceProperties")?;
        obj.reject_unknown(&PROPERTIES, RESOURCE_TYPE)?;

        let instance_id = match obj.get("InstanceId") {
            None => return Err(CoreError::invalid("InstanceId", "is required")),
            Some(v) => string_value(v, "InstanceId")?,
        };
        if !is_instance_id(instance_id) {
            return Err(CoreError::invalid(
                "InstanceId",
                format!(
                    "must be i- followed by 8 or 17 lowercase hexadecimal digits, like i-0123456789abcdef0, got {}",
                    show_str(instance_id)
                ),
            ));
        }

        let instance_profile = match obj.get("InstanceProfile") {
            None => None,
            Some(v) => {
                let spec = ProfileSpec::parse("InstanceProfile", string_value(v, "InstanceProfile")?)?;
                if !allow.allows(&spec.name, spec.path.as_deref()) {
                    return Err(CoreError::invalid("InstanceProfile", not_allowed_rule(&spec, allow)));
                }
                Some(spec)
            }
        };

        let volume_size_gib = obj
            .get("VolumeSizeGiB")
            .map(|v| whole_number(v, "VolumeSizeGiB", 1, MAX_VOLUME_SIZE_GIB, "of GiB "))
            .transpose()?;

        let device = match obj.get("Device") {
            None => None,
            Some(v) => {
                let d = string_value(v, "Device")?;
                if !is_ec2_device_name(d) {
                    return Err(CoreError::invalid(
                        "Device",
                        format!(
                            "must be an EC2 device name of the instance's block device mapping, like /dev/xvda, /dev/sda1 or /dev/sdf \
                             (not the operating system's name such as /dev/nvme1n1), got {}",
                            show_str(d)
                        ),
                    ));
                }
                Some(d.to_string())
            }
        };

        let reboot_fallback = obj
            .get("RebootFallback")
            .map(|v| boolean(v, "RebootFallback"))
            .transpose()?
            .unwrap_or(false);

        let service_timeout_s = obj
            .get("ServiceTimeout")
            .map(|v| whole_number(v, "ServiceTimeout", 1, MAX_SERVICE_TIMEOUT_SECONDS, "of seconds "))
            .transpose()?;

        let bootstrap = obj.get("Bootstrap").map(parse_bootstrap).transpose()?;
        if let (Some(b), Some(service_timeout)) = (&bootstrap, service_timeout_s) {
            let most = service_timeout.min(EXECUTION_TIMEOUT_SECONDS).saturating_sub(RESERVED_SECONDS);
            if b.timeout_seconds > most {
                return Err(CoreError::invalid(
                    "Bootstrap.TimeoutSeconds",
                    format!(
                        "must leave {RESERVED_SECONDS} s of the ServiceTimeout ({service_timeout} s) for the steps around the bootstrap: \
                         at most {most}, got {}",
                        b.timeout_seconds
                    ),
                ));
            }
        }

        let on_delete = match obj.get("OnDelete") {
            None => OnDelete::Retain,
            Some(v) => match string_value(v, "OnDelete")? {
                "Retain" => OnDelete::Retain,
                "Revert" => OnDelete::Revert,
                other => {
                    return Err(CoreError::invalid(
                        "OnDelete",
                        format!("must be Retain or Revert, got {}", show_str(other)),
                    ))
                }
            },
        };

        if volume_size_gib.is_none() {
            if device.is_some() {
                return Err(CoreError::invalid(
                    "Device",
                    "only applies with VolumeSizeGiB (it chooses the volume to grow)",
                ));
            }
            if reboot_fallback {
                return Err(CoreError::invalid(
                    "RebootFallback",
                    "only applies with VolumeSizeGiB (it is how the root file system grows without SSM)",
                ));
            }
        }

        Ok(SetupProps {
            instance_id: instance_id.to_string(),
            instance_profile,
            volume_size_gib,
            device,
            bootstrap,
            reboot_fallback,
            on_delete,
            service_timeout_s,
        })
    }

    /// How long the whole setup may take, from the plan on: CloudFormation's `ServiceTimeout`
    /// (one hour by default) or the execution's timeout, whichever is shorter, less a minute to
    /// undo and answer. Every wait's deadline is capped by it, so the answer comes before
    /// CloudFormation gives up.
    pub fn setup_window_s(&self) -> i64 {
        let service = self.service_timeout_s.unwrap_or(MAX_SERVICE_TIMEOUT_SECONDS);
        i64::from(service.min(EXECUTION_TIMEOUT_SECONDS)) - 60
    }
}

impl ProfileSpec {
    /// Parses an instance profile name (`[\w+=,.@-]{1,128}`) or ARN
    /// (`arn:<partition>:iam::<account>:instance-profile<path><name>`).
    pub fn parse(field: &str, text: &str) -> Result<ProfileSpec, CoreError> {
        if text.starts_with("arn:") {
            let (path, name) = parse_profile_arn(text).ok_or_else(|| {
                CoreError::invalid(
                    field,
                    format!(
                        "must be an instance profile ARN like arn:aws:iam::123456789012:instance-profile/path/name, got {}",
                        show_str(text)
                    ),
                )
            })?;
            return Ok(ProfileSpec {
                name,
                path: Some(path),
                arn: Some(text.to_string()),
            });
        }
        if !is_profile_name(text) {
            return Err(CoreError::invalid(
                field,
                format!(
                    "must be an instance profile name (1 to 128 letters, digits and _+=,.@-) or an instance profile ARN, got {}",
                    show_str(text)
                ),
            ));
        }
        Ok(ProfileSpec {
            name: text.to_string(),
            path: None,
            arn: None,
        })
    }

    /// How to name the profile to EC2 (`IamInstanceProfileSpecification` takes an ARN or a name).
    pub fn reference(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Display for ProfileSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reference())
    }
}

/// The instance profiles a deployment lets templates assign.
///
/// Parsed from a comma-separated deployment parameter: each entry is either an instance
/// profile name (`dev-ide-profile`, matched exactly, case-sensitively) or a path prefix that
/// starts and ends with `/` (`/opsflow/`, matching `/opsflow/` and `/opsflow/team/`; `/` matches
/// every path). An empty list allows nothing. A profile written as a bare name has no known
/// path before IAM is asked, so only name entries (or `/`) can allow it; write the ARN to be
/// allowed by a path prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowList {
    names: Vec<String>,
    path_prefixes: Vec<String>,
}

impl AllowList {
    pub fn parse(text: &str) -> Result<AllowList, CoreError> {
        let mut list = AllowList::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.starts_with('/') {
                if !is_profile_path(entry) {
                    return Err(CoreError::invalid(
                        ALLOW_LIST_PARAMETER,
                        format!(
                            "path prefix {} must start and end with / and contain only printable ASCII characters",
                            show_str(entry)
                        ),
                    ));
                }
                list.path_prefixes.push(entry.to_string());
            } else if is_profile_name(entry) {
                list.names.push(entry.to_string());
            } else {
                return Err(CoreError::invalid(
                    ALLOW_LIST_PARAMETER,
                    format!(
                        "entry {} is neither an instance profile name nor a path prefix like /opsflow/ (use / to allow every profile)",
                        show_str(entry)
                    ),
                ));
            }
        }
        Ok(list)
    }

    /// Every profile (the list `/`): for a Delete, which only puts back what was there.
    pub fn everything() -> AllowList {
        AllowList {
            names: vec![],
            path_prefixes: vec!["/".to_string()],
        }
    }

    /// True when the name is listed, or the path (when known) starts with a listed prefix.
    pub fn allows(&self, profile_name: &str, profile_path: Option<&str>) -> bool {
        if self.names.iter().any(|n| n == profile_name) {
            return true;
        }
        match profile_path {
            Some(path) => self.path_prefixes.iter().any(|p| path.starts_with(p.as_str())),
            None => self.path_prefixes.iter().any(|p| p == "/"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.path_prefixes.is_empty()
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<&str> = self.names.iter().chain(self.path_prefixes.iter()).map(String::as_str).collect();
        f.write_str(&entries.join(", "))
    }
}

fn not_allowed_rule(spec: &ProfileSpec, allow: &AllowList) -> String {
    if allow.is_empty() {
        return format!(
            "{} is not allowed: the deployment's {ALLOW_LIST_PARAMETER} is empty, so no instance profile may be assigned",
            spec.name
        );
    }
    let hint = if spec.path.is_none() && !allow.path_prefixes.is_empty() {
        "; path prefixes only match a profile given by ARN"
    } else {
        ""
    };
    format!(
        "{} is not in the deployment's {ALLOW_LIST_PARAMETER} ({allow}){hint}",
        spec.reference()
    )
}

fn parse_bootstrap(value: &Value) -> Result<Bootstrap, CoreError> {
    let obj = Obj::new(value, "Bootstrap.", "Bootstrap")?;
    obj.reject_unknown(&BOOTSTRAP_PROPERTIES, "Bootstrap")?;

    let action = match (obj.get("Commands"), obj.get("DocumentName")) {
        (Some(_), Some(_)) => return Err(CoreError::invalid("Bootstrap", "give either Commands or DocumentName, not both")),
        (None, None) => {
            return Err(CoreError::invalid(
                "Bootstrap",
                "needs Commands (command lines) or DocumentName (an SSM document)",
            ))
        }
        (Some(commands), None) => {
            if obj.get("Parameters").is_some() {
                return Err(CoreError::invalid(
                    "Bootstrap.Parameters",
                    "only applies with DocumentName; with Commands, write the values into the lines",
                ));
            }
            BootstrapAction::Commands {
                lines: command_lines(commands)?,
            }
        }
        (None, Some(name)) => {
            let name = string_value(name, "Bootstrap.DocumentName")?;
            if !is_document_name(name) {
                return Err(CoreError::invalid(
                    "Bootstrap.DocumentName",
                    format!(
                        "must be 3 to 128 letters, digits and _-.:/ (an SSM document name or ARN), got {}",
                        show_str(name)
                    ),
                ));
            }
            let parameters = obj.get("Parameters").map(document_parameters).transpose()?.unwrap_or_default();
            BootstrapAction::Document {
                name: name.to_string(),
                parameters,
            }
        }
    };

    let timeout_seconds = obj
        .get("TimeoutSeconds")
        .map(|v| {
            whole_number(
                v,
                "Bootstrap.TimeoutSeconds",
                MIN_TIMEOUT_SECONDS,
                MAX_TIMEOUT_SECONDS,
                "of seconds ",
            )
        })
        .transpose()?
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);

    let output_s3_bucket = match obj.get("OutputS3BucketName") {
        None => None,
        Some(v) => {
            let bucket = string_value(v, "Bootstrap.OutputS3BucketName")?;
            s3_bucket_rule(bucket)
                .map_err(|rule| CoreError::invalid("Bootstrap.OutputS3BucketName", format!("{rule}, got {}", show_str(bucket))))?;
            Some(bucket.to_string())
        }
    };
    let output_s3_prefix = match obj.get("OutputS3KeyPrefix") {
        None => None,
        Some(v) => {
            let prefix = string_value(v, "Bootstrap.OutputS3KeyPrefix")?;
            if output_s3_bucket.is_none() {
                return Err(CoreError::invalid("Bootstrap.OutputS3KeyPrefix", "needs OutputS3BucketName"));
            }
            if prefix.chars().count() > 500 || prefix.chars().any(char::is_control) {
                return Err(CoreError::invalid(
                    "Bootstrap.OutputS3KeyPrefix",
                    "must be at most 500 characters without control characters",
                ));
            }
            Some(prefix.to_string())
        }
    };
    let cloudwatch_log_group = match obj.get("CloudWatchLogGroupName") {
        None => None,
        Some(v) => {
            let group = string_value(v, "Bootstrap.CloudWatchLogGroupName")?;
            if !is_log_group_name(group) {
                return Err(CoreError::invalid(
                    "Bootstrap.CloudWatchLogGroupName",
                    format!("must be 1 to 512 letters, digits and ._-/#, got {}", show_str(group)),
                ));
            }
            Some(group.to_string())
        }
    };

    Ok(Bootstrap {
        action,
        timeout_seconds,
        output_s3_bucket,
        output_s3_prefix,
        cloudwatch_log_group,
    })
}

fn command_lines(value: &Value) -> Result<Vec<String>, CoreError> {
    let field = "Bootstrap.Commands";
    let lines = match value {
        Value::String(line) => vec![line.clone()],
        Value::Array(items) => {
            let mut lines = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(line) if !line.trim().is_empty() => lines.push(line.clone()),
                    Value::String(_) => return Err(CoreError::invalid(format!("{field}[{i}]"), "must not be empty")),
                    other => {
                        return Err(CoreError::invalid(
                            format!("{field}[{i}]"),
                            format!("must be a string, got {}", kind(other)),
                        ))
                    }
                }
            }
            lines
        }
        other => {
            return Err(CoreError::invalid(
                field,
                format!("must be a list of command lines, got {}", kind(other)),
            ))
        }
    };
    if lines.is_empty() {
        return Err(CoreError::invalid(field, "must hold at least one command line"));
    }
    if lines.iter().any(|l| l.trim().is_empty()) {
        return Err(CoreError::invalid(field, "must not be empty"));
    }
    Ok(lines)
}

fn document_parameters(value: &Value) -> Result<BTreeMap<String, Vec<String>>, CoreError> {
    let Value::Object(map) = value else {
        return Err(CoreError::invalid(
            "Bootstrap.Parameters",
            format!("must be a map of parameter name to list of strings, got {}", kind(value)),
        ));
    };
    let mut parameters = BTreeMap::new();
    for (name, v) in map {
        let path = format!("Bootstrap.Parameters.{name}");
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CoreError::invalid(
                "Bootstrap.Parameters",
                format!("parameter name {} must be non-empty without spaces", show_str(name)),
            ));
        }
        let values = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(CoreError::invalid(
                        format!("{path}[{i}]"),
                        format!("must be a string, got {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(CoreError::invalid(path, format!("must be a list of strings, got {}", kind(other)))),
        };
        parameters.insert(name.clone(), values);
    }
    Ok(parameters)
}

/// A JSON object with a path prefix for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, prefix: &'static str, what: &str) -> Result<Obj<'a>, CoreError> {
        match value {
            Value::Object(map) => Ok(Obj { map, prefix }),
            other => Err(CoreError::invalid(
                what,
                format!("must be a map of properties, got {}", kind(other)),
            )),
        }
    }

    /// The value, or `None` when absent, `null` or `""`.
    fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        }
    }

    fn reject_unknown(&self, known: &[&str], owner: &str) -> Result<(), CoreError> {
        let mut unknown: Vec<&str> = self.map.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        let first = unknown[0];
        let listed: Vec<&str> = known
            .iter()
            .copied()
            .filter(|k| *k != "ServiceToken" && *k != "ServiceTimeout")
            .collect();
        let mut rule = match suggestion(first, &listed) {
            Some(s) => format!("is not a property of {owner}; did you mean {s}?"),
            None => format!("is not a property of {owner} (known: {})", listed.join(", ")),
        };
        if unknown.len() > 1 {
            rule.push_str(&format!(" (also unknown: {})", unknown[1..].join(", ")));
        }
        Err(CoreError::invalid(format!("{}{first}", self.prefix), rule))
    }
}

fn string_value<'a>(value: &'a Value, field: &str) -> Result<&'a str, CoreError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(CoreError::invalid(field, format!("must be a string, got {}", kind(other)))),
    }
}

fn whole_number(value: &Value, field: &str, min: u32, max: u32, unit: &str) -> Result<u32, CoreError> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (u64::from(min)..=u64::from(max)).contains(&n) => Ok(n as u32),
        _ => Err(CoreError::invalid(
            field,
            format!("must be a whole number {unit}from {min} to {max}, got {}", show(value)),
        )),
    }
}

fn boolean(value: &Value, field: &str) -> Result<bool, CoreError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(CoreError::invalid(field, format!("must be true or false, got {}", show(other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A value as quoted in messages: strings in quotes, long ones cut.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => show_str(s),
        Value::Array(_) | Value::Object(_) => kind(value).to_string(),
        other => other.to_string(),
    }
}

fn show_str(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    if s.chars().count() <= MAX_CHARS {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX_CHARS).collect();
        format!("{cut:?}…")
    }
}

/// A known name differing only in case or by at most two edits.
fn suggestion<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().copied().find(|k| k.eq_ignore_ascii_case(name)).or_else(|| {
        known
            .iter()
            .copied()
            .map(|k| (edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()), k))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `i-` and 8 or 17 lowercase hexadecimal digits (the two EC2 instance ID lengths).
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|hex| matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// IAM's instance profile name pattern `[\w+=,.@-]+`, 1 to 128 characters.
pub fn is_profile_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// IAM's path pattern: `/` alone, or `/…/` of printable ASCII (`!` to `~`), at most 512 characters.
pub fn is_profile_path(s: &str) -> bool {
    s.len() <= 512 && s.starts_with('/') && s.ends_with('/') && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// `(path, name)` of `arn:<partition>:iam::<12 digits>:instance-profile<path><name>`.
pub fn parse_profile_arn(arn: &str) -> Option<(String, String)> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let partition_ok = partition == "aws"
        || partition
            .strip_prefix("aws-")
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    if prefix != "arn" || !partition_ok || service != "iam" || !region.is_empty() {
        return None;
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = resource.strip_prefix("instance-profile")?;
    let slash = rest.rfind('/')?;
    let (path, name) = (&rest[..=slash], &rest[slash + 1..]);
    (is_profile_path(path) && is_profile_name(name)).then(|| (path.to_string(), name.to_string()))
}

/// An EC2 block device mapping name: `/dev/sd*`, `/dev/xvd*` or `/dev/hd*` with one or two
/// letters and an optional partition number (`/dev/sda1`, `/dev/xvdba`), with or without `/dev/`
/// (Windows AMIs report additional volumes as `xvdf`).
pub fn is_ec2_device_name(s: &str) -> bool {
    let name = s.strip_prefix("/dev/").unwrap_or(s);
    let Some(rest) = ["xvd", "sd", "hd"].iter().find_map(|p| name.strip_prefix(p)) else {
        return false;
    };
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = &rest[letters..];
    (1..=2).contains(&letters) && digits.len() <= 2 && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// SSM's document name pattern `^[a-zA-Z0-9_\-.:/]{3,128}$` (names and shared-document ARNs).
pub fn is_document_name(s: &str) -> bool {
    (3..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
}

/// CloudWatch Logs group names: 1 to 512 of `[.\-_/#A-Za-z0-9]`.
pub fn is_log_group_name(s: &str) -> bool {
    (1..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
}

/// The basic general purpose bucket naming rules; `Err` holds the rule broken.
pub fn s3_bucket_rule(name: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lowercase letters, digits, dots (.) and hyphens (-)");
    }
    let (first, last) = (name.as_bytes()[0], name.as_bytes()[name.len() - 1]);
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("must not contain two adjacent dots");
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return Err("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return Err("must not start with xn-- or sthree- nor end with -s3alias or --ol-s3");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "i-0123456789abcdef0";

    fn allow() -> AllowList {
        AllowList::parse("dev-ide-profile, /opsflow/").unwrap()
    }

    fn parse(v: Value) -> Result<SetupProps, CoreError> {
        SetupProps::parse(&v, &allow())
    }

    fn invalid(v: Value) -> (String, String) {
        match parse(v) {
            Err(CoreError::InvalidInput { field, rule }) => (field, rule),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn full_example_as_cloudformation_sends_it() {
        // Every scalar arrives as a string, as CloudFormation sends custom resource properties.
        let p = parse(json!({
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:opsflow",
            "InstanceId": ID,
            "InstanceProfile": "dev-ide-profile",
            "VolumeSizeGiB": "32",
            "Device": "/dev/xvda",
            "Bootstrap": {
                "Commands": ["yum install -y git", "git --version"],
                "TimeoutSeconds": "1800",
                "OutputS3BucketName": "my-logs.example",
                "OutputS3KeyPrefix": "opsflow/",
                "CloudWatchLogGroupName": "/opsflow/bootstrap"
            },
            "RebootFallback": "false",
            "OnDelete": "Revert"
        }))
        .unwrap();
        assert_eq!(
            p,
            SetupProps {
                instance_id: ID.into(),
                instance_profile: Some(ProfileSpec {
                    name: "dev-ide-profile".into(),
                    path: None,
                    arn: None
                }),
                volume_size_gib: Some(32),
                device: Some("/dev/xvda".into()),
                bootstrap: Some(Bootstrap {
                    action: BootstrapAction::Commands {
                        lines: vec!["yum install -y git".into(), "git --version".into()]
                    },
                    timeout_seconds: 1800,
                    output_s3_bucket: Some("my-logs.example".into()),
                    output_s3_prefix: Some("opsflow/".into()),
                    cloudwatch_log_group: Some("/opsflow/bootstrap".into()),
                }),
                reboot_fallback: false,
                on_delete: OnDelete::Revert,
                service_timeout_s: None,
            }
        );
    }

    #[test]
    fn minimal_props_take_defaults() {
        let p = parse(json!({"ServiceToken": "x", "ServiceTimeout": "900", "InstanceId": "i-0123abcd"})).unwrap();
        assert_eq!(
            p,
            SetupProps {
                instance_id: "i-0123abcd".into(),
                instance_profile: None,
                volume_size_gib: None,
                device: None,
                bootstrap: None,
                reboot_fallback: false,
                on_delete: OnDelete::Retain,
                service_timeout_s: Some(900),
            }
        );
    }

    #[test]
    fn instance_id_is_required_and_checked() {
        assert_eq!(invalid(json!({})), ("InstanceId".into(), "is required".into()));
        assert_eq!(invalid(json!({"InstanceId": ""})), ("InstanceId".into(), "is required".into()));
        for bad in [
            "i-0123456789ABCDEF0",
            "i-0123abc",
            "i-0123456789abcdef",
            "0123456789abcdef0",
            "i-0123456789abcdefg",
            "i-0123456789abcdef01",
        ] {
            let (field, rule) = invalid(json!({ "InstanceId": bad }));
            assert_eq!(field, "InstanceId");
            assert_eq!(
                rule,
                format!("must be i- followed by 8 or 17 lowercase hexadecimal digits, like i-0123456789abcdef0, got {bad:?}")
            );
        }
        assert_eq!(
            invalid(json!({"InstanceId": 12})),
            ("InstanceId".into(), "must be a string, got a number".into())
        );
    }

    #[test]
    fn unknown_properties_are_rejected_with_a_suggestion() {
        assert_eq!(
            invalid(json!({"InstanceId": ID, "InstanceProfil": "dev-ide-profile"})),
            (
                "InstanceProfil".into(),
                "is not a property of Custom::OpsflowInstanceSetup; did you mean InstanceProfile?".into()
            )
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "volumesizegib": "32"})),
            (
                "volumesizegib".into(),
                "is not a property of Custom::OpsflowInstanceSetup; did you mean VolumeSizeGiB?".into()
            )
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Zebra": "1", "Color": "2"})),
            (
                "Color".into(),
                "is not a property of Custom::OpsflowInstanceSetup (known: InstanceId, InstanceProfile, VolumeSizeGiB, Device, Bootstrap, \
                 RebootFallback, OnDelete) (also unknown: Zebra)"
                    .into()
            )
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "Timeout": "60"}})).0,
            "Bootstrap.Timeout".to_string()
        );
    }

    #[test]
    fn properties_must_be_an_object() {
        assert_eq!(
            invalid(json!(["x"])),
            ("ResourceProperties".into(), "must be a map of properties, got a list".into())
        );
    }

    #[test]
    fn volume_size_accepts_numbers_and_numeric_strings_in_range() {
        for (v, want) in [
            (json!(1), 1),
            (json!("1"), 1),
            (json!("032"), 32),
            (json!(65536), 65536),
            (json!("65536"), 65536),
        ] {
            assert_eq!(
                parse(json!({"InstanceId": ID, "VolumeSizeGiB": v})).unwrap().volume_size_gib,
                Some(want)
            );
        }
        for (v, shown) in [
            (json!(0), "0"),
            (json!("0"), "\"0\""),
            (json!(65537), "65537"),
            (json!(32.5), "32.5"),
            (json!("32.5"), "\"32.5\""),
            (json!("-4"), "\"-4\""),
            (json!(" 32"), "\" 32\""),
            (json!("32GiB"), "\"32GiB\""),
            (json!(true), "true"),
        ] {
            assert_eq!(
                invalid(json!({"InstanceId": ID, "VolumeSizeGiB": v})),
                (
                    "VolumeSizeGiB".into(),
                    format!("must be a whole number of GiB from 1 to 65536, got {shown}")
                )
            );
        }
    }

    #[test]
    fn empty_string_counts_as_absent() {
        let p = parse(json!({"InstanceId": ID, "InstanceProfile": "", "VolumeSizeGiB": "", "OnDelete": "", "RebootFallback": ""})).unwrap();
        assert_eq!(
            (p.instance_profile, p.volume_size_gib, p.on_delete, p.reboot_fallback),
            (None, None, OnDelete::Retain, false)
        );
    }

    #[test]
    fn device_names_follow_ec2_block_device_mappings() {
        for ok in ["/dev/xvda", "/dev/sda1", "/dev/sdf", "/dev/xvdba", "xvdf", "/dev/sdp15", "/dev/hda"] {
            assert!(is_ec2_device_name(ok), "{ok}");
            let p = parse(json!({"InstanceId": ID, "VolumeSizeGiB": "32", "Device": ok})).unwrap();
            assert_eq!(p.device.as_deref(), Some(ok));
        }
        for bad in [
            "/dev/nvme0n1",
            "/dev/nvme0n1p1",
            "/dev/vda",
            "/dev/sd",
            "/dev/sdabc",
            "/dev/sda0",
            "/dev/sda123",
            "C:",
            "/dev/xvdA",
        ] {
            assert!(!is_ec2_device_name(bad), "{bad}");
        }
        let (field, rule) = invalid(json!({"InstanceId": ID, "VolumeSizeGiB": "32", "Device": "/dev/nvme1n1"}));
        assert_eq!(field, "Device");
        assert!(
            rule.ends_with("(not the operating system's name such as /dev/nvme1n1), got \"/dev/nvme1n1\""),
            "{rule}"
        );
    }

    #[test]
    fn device_and_reboot_fallback_need_a_size() {
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Device": "/dev/sdf"})),
            (
                "Device".into(),
                "only applies with VolumeSizeGiB (it chooses the volume to grow)".into()
            )
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "RebootFallback": "true"})).0,
            "RebootFallback".to_string()
        );
        // false is harmless without a size
        assert!(parse(json!({"InstanceId": ID, "RebootFallback": "false"})).is_ok());
    }

    #[test]
    fn booleans_accept_json_and_strings() {
        for (v, want) in [
            (json!(true), true),
            (json!("true"), true),
            (json!("True"), true),
            (json!(false), false),
            (json!("FALSE"), false),
        ] {
            assert_eq!(
                parse(json!({"InstanceId": ID, "VolumeSizeGiB": 8, "RebootFallback": v}))
                    .unwrap()
                    .reboot_fallback,
                want
            );
        }
        assert_eq!(
            invalid(json!({"InstanceId": ID, "VolumeSizeGiB": 8, "RebootFallback": "yes"})),
            ("RebootFallback".into(), "must be true or false, got \"yes\"".into())
        );
    }

    #[test]
    fn on_delete_is_retain_or_revert() {
        assert_eq!(
            parse(json!({"InstanceId": ID, "OnDelete": "Retain"})).unwrap().on_delete,
            OnDelete::Retain
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "OnDelete": "revert"})),
            ("OnDelete".into(), "must be Retain or Revert, got \"revert\"".into())
        );
    }

    #[test]
    fn profile_by_arn_carries_path() {
        let arn = "arn:aws:iam::123456789012:instance-profile/opsflow/team/dev-box";
        let p = parse(json!({"InstanceId": ID, "InstanceProfile": arn})).unwrap();
        assert_eq!(
            p.instance_profile,
            Some(ProfileSpec {
                name: "dev-box".into(),
                path: Some("/opsflow/team/".into()),
                arn: Some(arn.into())
            })
        );
        assert_eq!(p.instance_profile.unwrap().reference(), arn);
    }

    #[test]
    fn profile_arn_parsing() {
        assert_eq!(
            parse_profile_arn("arn:aws:iam::123456789012:instance-profile/name"),
            Some(("/".into(), "name".into()))
        );
        assert_eq!(
            parse_profile_arn("arn:aws-cn:iam::123456789012:instance-profile/a/b/n"),
            Some(("/a/b/".into(), "n".into()))
        );
        assert_eq!(
            parse_profile_arn("arn:aws-us-gov:iam::123456789012:instance-profile/n"),
            Some(("/".into(), "n".into()))
        );
        for bad in [
            "arn:aws:iam::123456789012:role/name",
            "arn:aws:iam::12345678901:instance-profile/name",
            "arn:aws:iam:us-east-1:123456789012:instance-profile/name",
            "arn:aws:ec2::123456789012:instance-profile/name",
            "arn:aws:iam::123456789012:instance-profile/",
            "arn:aws:iam::123456789012:instance-profilename",
            "arn:azure:iam::123456789012:instance-profile/name",
            "arn:aws:iam::123456789012:instance-profile/pa th/name",
        ] {
            assert_eq!(parse_profile_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn profile_names_follow_iam_pattern() {
        assert!(is_profile_name("dev-ide_profile+x=y,z.w@q"));
        assert!(is_profile_name(&"a".repeat(128)));
        assert!(!is_profile_name(&"a".repeat(129)));
        assert!(!is_profile_name("has space"));
        assert!(!is_profile_name("slash/name"));
        let (field, rule) = invalid(json!({"InstanceId": ID, "InstanceProfile": "has space"}));
        assert_eq!(field, "InstanceProfile");
        assert!(
            rule.starts_with("must be an instance profile name (1 to 128 letters, digits and _+=,.@-)"),
            "{rule}"
        );
        let (_, rule) = invalid(json!({"InstanceId": ID, "InstanceProfile": "arn:aws:iam::1:instance-profile/x"}));
        assert!(
            rule.starts_with("must be an instance profile ARN like arn:aws:iam::123456789012:instance-profile/path/name"),
            "{rule}"
        );
    }

    #[test]
    fn profile_must_be_in_the_allow_list() {
        assert_eq!(
            invalid(json!({"InstanceId": ID, "InstanceProfile": "admin"})),
            (
                "InstanceProfile".into(),
                "admin is not in the deployment's InstanceProfileAllowList (dev-ide-profile, /opsflow/); path prefixes only match a profile given by ARN"
                    .into()
            )
        );
        let outside = "arn:aws:iam::123456789012:instance-profile/other/dev-box";
        assert_eq!(
            invalid(json!({"InstanceId": ID, "InstanceProfile": outside})).1,
            format!("{outside} is not in the deployment's InstanceProfileAllowList (dev-ide-profile, /opsflow/)")
        );
        let empty = SetupProps::parse(
            &json!({"InstanceId": ID, "InstanceProfile": "dev-ide-profile"}),
            &AllowList::default(),
        );
        assert_eq!(
            empty,
            Err(CoreError::invalid(
                "InstanceProfile",
                "dev-ide-profile is not allowed: the deployment's InstanceProfileAllowList is empty, so no instance profile may be assigned"
            ))
        );
    }

    #[test]
    fn allow_list_matching() {
        let list = AllowList::parse(" dev-ide-profile ,/opsflow/,, ").unwrap();
        assert_eq!(list.to_string(), "dev-ide-profile, /opsflow/");
        assert!(list.allows("dev-ide-profile", None));
        assert!(list.allows("dev-ide-profile", Some("/elsewhere/")));
        assert!(!list.allows("Dev-Ide-Profile", None));
        assert!(list.allows("anything", Some("/opsflow/")));
        assert!(list.allows("anything", Some("/opsflow/team/")));
        assert!(!list.allows("anything", Some("/opsflowx/")));
        assert!(!list.allows("anything", Some("/")));
        assert!(!list.allows("anything", None));
        let all = AllowList::parse("/").unwrap();
        assert!(all.allows("anything", None));
        assert!(all.allows("anything", Some("/deep/path/")));
        let none = AllowList::parse("").unwrap();
        assert!(none.is_empty());
        assert!(!none.allows("dev-ide-profile", Some("/")));
    }

    #[test]
    fn allow_list_rejects_bad_entries() {
        assert_eq!(
            AllowList::parse("ok,/no-trailing-slash"),
            Err(CoreError::invalid(
                "InstanceProfileAllowList",
                "path prefix \"/no-trailing-slash\" must start and end with / and contain only printable ASCII characters"
            ))
        );
        assert_eq!(
            AllowList::parse("*"),
            Err(CoreError::invalid(
                "InstanceProfileAllowList",
                "entry \"*\" is neither an instance profile name nor a path prefix like /opsflow/ (use / to allow every profile)"
            ))
        );
    }

    #[test]
    fn bootstrap_document_with_parameters() {
        let p = parse(json!({"InstanceId": ID, "Bootstrap": {
            "DocumentName": "My-Doc",
            "Parameters": {"key": ["value"], "single": "one", "empty": []}
        }}))
        .unwrap();
        assert_eq!(
            p.bootstrap,
            Some(Bootstrap {
                action: BootstrapAction::Document {
                    name: "My-Doc".into(),
                    parameters: BTreeMap::from([
                        ("empty".to_string(), vec![]),
                        ("key".to_string(), vec!["value".to_string()]),
                        ("single".to_string(), vec!["one".to_string()]),
                    ]),
                },
                timeout_seconds: 1800,
                output_s3_bucket: None,
                output_s3_prefix: None,
                cloudwatch_log_group: None,
            })
        );
    }

    #[test]
    fn bootstrap_needs_exactly_one_of_commands_and_document() {
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "DocumentName": "My-Doc"}})),
            ("Bootstrap".into(), "give either Commands or DocumentName, not both".into())
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"TimeoutSeconds": "60"}})),
            (
                "Bootstrap".into(),
                "needs Commands (command lines) or DocumentName (an SSM document)".into()
            )
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "Parameters": {"a": ["b"]}}})).0,
            "Bootstrap.Parameters".to_string()
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": "echo"})),
            ("Bootstrap".into(), "must be a map of properties, got a string".into())
        );
    }

    #[test]
    fn bootstrap_commands_rules() {
        let single = parse(json!({"InstanceId": ID, "Bootstrap": {"Commands": "yum install -y git"}})).unwrap();
        assert_eq!(
            single.bootstrap.unwrap().action,
            BootstrapAction::Commands {
                lines: vec!["yum install -y git".into()]
            }
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": []}})),
            ("Bootstrap.Commands".into(), "must hold at least one command line".into())
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["ok", "  "]}})),
            ("Bootstrap.Commands[1]".into(), "must not be empty".into())
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["ok", 3]}})),
            ("Bootstrap.Commands[1]".into(), "must be a string, got a number".into())
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": "   "}})),
            ("Bootstrap.Commands".into(), "must not be empty".into())
        );
    }

    #[test]
    fn service_timeout_bounds_the_bootstrap_and_the_setup_window() {
        let p =
            parse(json!({"InstanceId": ID, "ServiceTimeout": "600", "Bootstrap": {"Commands": ["x"], "TimeoutSeconds": "420"}})).unwrap();
        assert_eq!(p.service_timeout_s, Some(600));
        assert_eq!(p.setup_window_s(), 540);
        assert_eq!(
            invalid(json!({"InstanceId": ID, "ServiceTimeout": "600", "Bootstrap": {"Commands": ["x"], "TimeoutSeconds": "421"}})),
            (
                "Bootstrap.TimeoutSeconds".into(),
                "must leave 180 s of the ServiceTimeout (600 s) for the steps around the bootstrap: at most 420, got 421".into()
            )
        );
        // Without ServiceTimeout: CloudFormation's hour, cut to the execution's 55 minutes.
        assert_eq!(parse(json!({"InstanceId": ID})).unwrap().setup_window_s(), 3240);
        assert_eq!(
            parse(json!({"InstanceId": ID, "ServiceTimeout": 3600})).unwrap().setup_window_s(),
            3240
        );
        for bad in [json!("0"), json!(3601), json!("soon")] {
            assert_eq!(invalid(json!({"InstanceId": ID, "ServiceTimeout": bad})).0, "ServiceTimeout");
        }
    }

    #[test]
    fn bootstrap_timeout_range() {
        for (v, want) in [(json!("30"), 30), (json!(3120), 3120)] {
            let p = parse(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "TimeoutSeconds": v}})).unwrap();
            assert_eq!(p.bootstrap.unwrap().timeout_seconds, want);
        }
        for v in [json!("29"), json!(3121), json!(172800), json!("1h")] {
            let (field, rule) = invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "TimeoutSeconds": v}}));
            assert_eq!(field, "Bootstrap.TimeoutSeconds");
            assert!(
                rule.starts_with("must be a whole number of seconds from 30 to 3120, got "),
                "{rule}"
            );
        }
    }

    #[test]
    fn bootstrap_document_name_and_parameters_rules() {
        assert!(is_document_name("AWS-RunShellScript"));
        assert!(is_document_name("arn:aws:ssm:us-east-1:123456789012:document/My-Doc"));
        assert!(!is_document_name("ab"));
        assert!(!is_document_name(&"a".repeat(129)));
        assert!(!is_document_name("My Doc"));
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"DocumentName": "My Doc"}})).0,
            "Bootstrap.DocumentName".to_string()
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"DocumentName": "My-Doc", "Parameters": {"k": [1]}}})),
            ("Bootstrap.Parameters.k[0]".into(), "must be a string, got a number".into())
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"DocumentName": "My-Doc", "Parameters": ["k"]}})),
            (
                "Bootstrap.Parameters".into(),
                "must be a map of parameter name to list of strings, got a list".into()
            )
        );
    }

    #[test]
    fn bootstrap_output_rules() {
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "OutputS3BucketName": "My_Bucket"}})),
            (
                "Bootstrap.OutputS3BucketName".into(),
                "may contain only lowercase letters, digits, dots (.) and hyphens (-), got \"My_Bucket\"".into()
            )
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "OutputS3KeyPrefix": "p/"}})),
            ("Bootstrap.OutputS3KeyPrefix".into(), "needs OutputS3BucketName".into())
        );
        assert_eq!(
            invalid(json!({"InstanceId": ID, "Bootstrap": {"Commands": ["x"], "CloudWatchLogGroupName": "bad group"}})),
            (
                "Bootstrap.CloudWatchLogGroupName".into(),
                "must be 1 to 512 letters, digits and ._-/#, got \"bad group\"".into()
            )
        );
    }

    #[test]
    fn s3_bucket_naming_rules() {
        assert_eq!(s3_bucket_rule("my-bucket.logs-1"), Ok(()));
        assert_eq!(s3_bucket_rule("ab"), Err("must be 3 to 63 characters long"));
        assert_eq!(s3_bucket_rule(&"a".repeat(64)), Err("must be 3 to 63 characters long"));
        assert_eq!(s3_bucket_rule("-bucket"), Err("must begin and end with a letter or digit"));
        assert_eq!(s3_bucket_rule("bucket."), Err("must begin and end with a letter or digit"));
        assert_eq!(s3_bucket_rule("my..bucket"), Err("must not contain two adjacent dots"));
        assert_eq!(s3_bucket_rule("192.168.5.4"), Err("must not be formatted as an IP address"));
        assert_eq!(
            s3_bucket_rule("xn--bucket"),
            Err("must not start with xn-- or sthree- nor end with -s3alias or --ol-s3")
        );
        assert_eq!(
            s3_bucket_rule("bucket-s3alias"),
            Err("must not start with xn-- or sthree- nor end with -s3alias or --ol-s3")
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(100);
        let (_, rule) = invalid(json!({"InstanceId": long}));
        assert!(rule.ends_with(&format!("got \"{}\"…", "x".repeat(64))), "{rule}");
    }

    #[test]
    fn props_round_trip_through_serde() {
        let p = parse(json!({"InstanceId": ID, "InstanceProfile": "dev-ide-profile", "VolumeSizeGiB": 40,
            "Bootstrap": {"DocumentName": "My-Doc", "Parameters": {"a": ["b"]}}}))
        .unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["bootstrap"]["action"]["kind"], json!("Document"));
        assert_eq!(serde_json::from_value::<SetupProps>(v).unwrap(), p);
    }
}
