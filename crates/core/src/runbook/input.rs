//! The runner's input, from a schedule or an operator, checked against the catalogue before
//! anything runs. Every error names the field and the rule.
//!
//! ```json
//! {"Procedure": "restart-app", "Parameters": {"Service": "billing-api"},
//!  "Targets": {"Tags": [{"Key": "Env", "Values": ["dev"]}]},
//!  "Accounts": ["111111111111"], "Regions": ["eu-west-1"],
//!  "MaxConcurrency": "10%", "MaxErrors": "2", "Notify": "OnFailure", "DryRun": false}
//! ```
//! `Targets` is one of `InstanceIds`, `Tags` (every filter must match; a filter matches any of
//! its values) or `ResourceGroup`. `Accounts` and `Regions` default to the runner's own.
//! `IfTagged` (`{"Key", "Values"}`) keeps only the instances that carry that tag, and skips the
//! others without a report: an event-driven run (a start anywhere in an account) acts only on
//! the instances that asked for it, and says nothing about the others.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::catalogue::{Catalogue, Kind, Procedure};
use super::rate::Rate;
use crate::error::CoreError;

const FIELDS: [&str; 12] = [
    "Procedure",
    "Parameters",
    "Targets",
    "Accounts",
    "Regions",
    "MaxConcurrency",
    "MaxErrors",
    "Notify",
    "DryRun",
    "StartedBy",
    "IfTagged",
    "LifecycleAction",
];
/// At most this many tag filters, values per filter, instance ids, accounts and regions.
pub const MAX_TAG_FILTERS: usize = 5;
pub const MAX_TAG_VALUES: usize = 20;
pub const MAX_INSTANCE_IDS: usize = 10_000;
pub const MAX_ACCOUNTS: usize = 100;
pub const MAX_REGIONS: usize = 30;

/// Which instances, before the opt-in, platform and state checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetSelector {
    InstanceIds(Vec<String>),
    Tags(Vec<TagFilter>),
    ResourceGroup(String),
    /// An http-check procedure: its endpoint is the one target.
    Endpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagFilter {
    pub key: String,
    pub values: Vec<String>,
}

/// When the results are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notify {
    OnFailure,
    Always,
    Never,
}

/// A checked, completed run request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunRequest {
    pub procedure: String,
    pub kind: Kind,
    pub parameters: BTreeMap<String, String>,
    pub targets: TargetSelector,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub max_concurrency: Rate,
    pub max_errors: Rate,
    pub notify: Notify,
    pub dry_run: bool,
    /// Who asked, as the caller says (the schedule's ARN, or the operator's principal).
    pub started_by: String,
    /// Only the instances with this tag are targets; the others are skipped without a report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_tagged: Option<TagFilter>,
    /// The Auto Scaling lifecycle action that holds the one target (forensic-capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_action: Option<LifecycleAction>,
}

/// An Auto Scaling termination lifecycle action waiting on an instance: what
/// RecordLifecycleActionHeartbeat and CompleteLifecycleAction name (the EventBridge event's
/// `detail` fields). The token is an identifier, not a credential: completing needs the
/// member role's autoscaling permission on the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleAction {
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    pub lifecycle_action_token: String,
    #[serde(rename = "EC2InstanceId")]
    pub instance_id: String,
}

/// Where the runner itself runs: the defaults of `Accounts` and `Regions`.
#[derive(Debug, Clone)]
pub struct Home {
    pub account: String,
    pub region: String,
}

/// Checks `input` against the catalogue.
pub fn check(input: &Value, catalogue: &Catalogue, home: &Home) -> Result<RunRequest, CoreError> {
    let obj = input
        .as_object()
        .ok_or_else(|| CoreError::invalid("Input", "must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        // An empty key still gets a field name a reader can see.
        let field = if unknown.is_empty() { "\"\"" } else { unknown.as_str() };
        return Err(CoreError::invalid(
            field,
            format!("is not a runner input field ({})", FIELDS.join(", ")),
        ));
    }
    let name = match obj.get("Procedure") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(CoreError::invalid(
                "Procedure",
                "is required: the name of a procedure of the catalogue",
            ))
        }
    };
    let procedure = catalogue.get(name)?;
    let parameters = procedure.parameters(obj.get("Parameters"))?;
    let targets = targets(obj.get("Targets"), procedure)?;
    let (accounts, regions) = accounts_and_regions(obj, home)?;
    let max_concurrency = rate(
        obj,
        "MaxConcurrency",
        procedure.defaults.max_concurrency,
        procedure.limits.max_concurrency,
        procedure,
    )?;
    let max_errors = rate(
        obj,
        "MaxErrors",
        procedure.defaults.max_errors,
        procedure.limits.max_errors,
        procedure,
    )?;
    let notify = match obj.get("Notify") {
        None | Some(Value::Null) => Notify::OnFailure,
        Some(Value::String(s)) => match s.as_str() {
            "OnFailure" => Notify::OnFailure,
            "Always" => Notify::Always,
            "Never" => Notify::Never,
            _ => return Err(CoreError::invalid("Notify", "must be OnFailure, Always or Never")),
        },
        Some(_) => return Err(CoreError::invalid("Notify", "must be OnFailure, Always or Never")),
    };
    let dry_run = match obj.get("DryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(_) => return Err(CoreError::invalid("DryRun", "must be true or false")),
    };
    let started_by = match obj.get("StartedBy") {
        None | Some(Value::Null) => "unknown".to_string(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control) => s.clone(),
        Some(_) => {
            return Err(CoreError::invalid(
                "StartedBy",
                "must be a principal or schedule ARN of at most 512 characters",
            ))
        }
    };
    let if_tagged = match obj.get("IfTagged") {
        None | Some(Value::Null) => None,
        Some(_) if !procedure.kind.on_instances() => {
            return Err(CoreError::invalid(
                "IfTagged",
                format!("procedure {} calls its endpoint and has no instances to filter", procedure.name),
            ))
        }
        Some(f) => Some(tag_filter(f, "IfTagged")?),
    };
    let lifecycle_action = match obj.get("LifecycleAction") {
        None | Some(Value::Null) => None,
        Some(a) => Some(lifecycle_action(a, procedure, &targets)?),
    };
    Ok(RunRequest {
        procedure: procedure.name.clone(),
        kind: procedure.kind,
        parameters,
        targets,
        accounts,
        regions,
        max_concurrency,
        max_errors,
        notify,
        dry_run,
        started_by,
        if_tagged,
        lifecycle_action,
    })
}

/// `LifecycleAction`: the termination lifecycle action that holds the run's one instance, as
/// the `EC2 Instance-terminate Lifecycle Action` event's detail names it.
fn lifecycle_action(a: &Value, procedure: &Procedure, targets: &TargetSelector) -> Result<LifecycleAction, CoreError> {
    const FIELD: &str = "LifecycleAction";
    if procedure.kind != Kind::ForensicCapture {
        return Err(CoreError::invalid(
            FIELD,
            format!(
                "only a forensic-capture procedure holds a lifecycle action, and {} is a {}",
                procedure.name,
                procedure.kind.as_str()
            ),
        ));
    }
    let obj = a.as_object().ok_or_else(|| CoreError::invalid(FIELD, "must be a JSON object"))?;
    const KNOWN: [&str; 5] = [
        "AutoScalingGroupName",
        "LifecycleHookName",
        "LifecycleActionToken",
        "EC2InstanceId",
        "LifecycleTransition",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(CoreError::invalid(
            format!("{FIELD}.{k}"),
            format!("is not a lifecycle action field ({})", KNOWN.join(", ")),
        ));
    }
    let text = |name: &str, max: usize| -> Result<String, CoreError> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control) => Ok(s.clone()),
            _ => Err(CoreError::invalid(
                format!("{FIELD}.{name}"),
                format!("must be a string of 1 to {max} characters"),
            )),
        }
    };
    match obj.get("LifecycleTransition") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "autoscaling:EC2_INSTANCE_TERMINATING" => {}
        Some(_) => {
            return Err(CoreError::invalid(
                format!("{FIELD}.LifecycleTransition"),
                "must be autoscaling:EC2_INSTANCE_TERMINATING: evidence is taken before an instance goes",
            ))
        }
    }
    let action = LifecycleAction {
        auto_scaling_group_name: text("AutoScalingGroupName", 255)?,
        lifecycle_hook_name: text("LifecycleHookName", 255)?,
        lifecycle_action_token: text("LifecycleActionToken", 36)?,
        instance_id: text("EC2InstanceId", 19)?,
    };
    if !valid_instance_id(&action.instance_id) {
        return Err(CoreError::invalid(
            format!("{FIELD}.EC2InstanceId"),
            "must be an instance id (i- and 8 or 17 hex digits)",
        ));
    }
    match targets {
        TargetSelector::InstanceIds(ids) if ids.len() == 1 && ids[0] == action.instance_id => Ok(action),
        _ => Err(CoreError::invalid(
            "Targets",
            format!(
                "must be {{\"InstanceIds\": [\"{}\"]}}: the instance the lifecycle action holds, and only it",
                action.instance_id
            ),
        )),
    }
}

/// One tag filter `{"Key", "Values"}`; `field` names it in errors.
fn tag_filter(f: &Value, field: &str) -> Result<TagFilter, CoreError> {
    let key = f.get("Key").and_then(Value::as_str).filter(|k| !k.is_empty() && k.len() <= 128);
    let key = key.ok_or_else(|| CoreError::invalid(format!("{field}.Key"), "must be a tag key of 1 to 128 characters"))?;
    if !f.is_object() || f.as_object().is_some_and(|o| o.keys().any(|k| k != "Key" && k != "Values")) {
        return Err(CoreError::invalid(field, "has only Key and Values"));
    }
    let values = strings(f.get("Values").unwrap_or(&Value::Null), &format!("{field}.Values"), MAX_TAG_VALUES)?;
    if values.iter().any(|v| v.len() > 256) {
        return Err(CoreError::invalid(
            format!("{field}.Values"),
            "a tag value has at most 256 characters",
        ));
    }
    Ok(TagFilter {
        key: key.to_string(),
        values,
    })
}

impl TagFilter {
    /// Whether `tags` carry this key with one of the values.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(&self.key).is_some_and(|v| self.values.contains(v))
    }
}

fn targets(value: Option<&Value>, procedure: &Procedure) -> Result<TargetSelector, CoreError> {
    if !procedure.kind.on_instances() {
        return match value {
            None | Some(Value::Null) => Ok(TargetSelector::Endpoint),
            Some(_) => Err(CoreError::invalid(
                "Targets",
                format!("procedure {} calls its endpoint and takes no instance targets", procedure.name),
            )),
        };
    }
    let rule = "must be one of {\"InstanceIds\": [...]}, {\"Tags\": [{\"Key\": ..., \"Values\": [...]}]} or {\"ResourceGroup\": name}";
    let obj = match value {
        Some(Value::Object(o)) if o.len() == 1 => o,
        None | Some(Value::Null) => return Err(CoreError::invalid("Targets", format!("is required: {rule}"))),
        Some(_) => return Err(CoreError::invalid("Targets", rule)),
    };
    let (key, v) = obj.iter().next().expect("one entry");
    match key.as_str() {
        "InstanceIds" => {
            let ids = strings(v, "Targets.InstanceIds", MAX_INSTANCE_IDS)?;
            if let Some((i, bad)) = ids.iter().enumerate().find(|(_, id)| !valid_instance_id(id)) {
                return Err(CoreError::invalid(
                    format!("Targets.InstanceIds[{i}]"),
                    format!("{bad:?} is not an instance id (i- and 8 or 17 hex digits)"),
                ));
            }
            Ok(TargetSelector::InstanceIds(ids))
        }
        "Tags" => {
            let filters = v
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= MAX_TAG_FILTERS)
                .ok_or_else(|| {
                    CoreError::invalid(
                        "Targets.Tags",
                        format!("must be a list of 1 to {MAX_TAG_FILTERS} filters {{\"Key\", \"Values\"}}"),
                    )
                })?;
            let out = filters
                .iter()
                .enumerate()
                .map(|(i, f)| tag_filter(f, &format!("Targets.Tags[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TargetSelector::Tags(out))
        }
        "ResourceGroup" => match v {
            Value::String(s) if !s.is_empty() && s.len() <= 300 => Ok(TargetSelector::ResourceGroup(s.clone())),
            _ => Err(CoreError::invalid("Targets.ResourceGroup", "must be a resource group name or ARN")),
        },
        other => Err(CoreError::invalid(format!("Targets.{other}"), rule)),
    }
}

fn strings(v: &Value, field: &str, max: usize) -> Result<Vec<String>, CoreError> {
    let rule = || CoreError::invalid(field, format!("must be a list of 1 to {max} non-empty strings without repeats"));
    let a = v.as_array().filter(|a| !a.is_empty() && a.len() <= max).ok_or_else(rule)?;
    let mut out: Vec<String> = Vec::with_capacity(a.len());
    for x in a {
        match x.as_str() {
            Some(s) if !s.is_empty() && !out.iter().any(|o| o == s) => out.push(s.to_string()),
            _ => return Err(rule()),
        }
    }
    Ok(out)
}

/// `Accounts` and `Regions` (each defaulting to `home`'s), checked: the runner's and the
/// audits' scope.
pub(crate) fn accounts_and_regions(obj: &Map<String, Value>, home: &Home) -> Result<(Vec<String>, Vec<String>), CoreError> {
    let accounts = list(
        obj,
        "Accounts",
        &home.account,
        MAX_ACCOUNTS,
        valid_account,
        "a 12-digit AWS account id",
    )?;
    let regions = list(
        obj,
        "Regions",
        &home.region,
        MAX_REGIONS,
        valid_region,
        "an AWS Region code such as eu-west-1",
    )?;
    Ok((accounts, regions))
}

fn list(
    obj: &Map<String, Value>,
    field: &str,
    default: &str,
    max: usize,
    valid: fn(&str) -> bool,
    what: &str,
) -> Result<Vec<String>, CoreError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(vec![default.to_string()]),
        Some(v) => {
            let items = strings(v, field, max)?;
            if let Some((i, bad)) = items.iter().enumerate().find(|(_, s)| !valid(s)) {
                return Err(CoreError::invalid(format!("{field}[{i}]"), format!("{bad:?} is not {what}")));
            }
            Ok(items)
        }
    }
}

fn rate(obj: &Map<String, Value>, field: &str, default: Rate, cap: Rate, procedure: &Procedure) -> Result<Rate, CoreError> {
    let r = match obj.get(field) {
        None | Some(Value::Null) => return Ok(default),
        Some(v) => Rate::parse(field, v)?,
    };
    if r.exceeds(cap, procedure.targets.max_targets) {
        return Err(CoreError::invalid(
            field,
            format!("{r} is above procedure {}'s limit of {cap}", procedure.name),
        ));
    }
    Ok(r)
}

pub fn valid_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`, …
pub fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts
            .iter()
            .take(parts.len() - 1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn valid_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|h| (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn home() -> Home {
        Home {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
        }
    }

    fn cat() -> Catalogue {
        Catalogue::builtin()
    }

    #[test]
    fn a_full_input_is_checked_and_completed() {
        let r = check(
            &json!({"Procedure": "restart-app", "Parameters": {"Service": "billing-api"},
                    "Targets": {"Tags": [{"Key": "Env", "Values": ["dev"]}]},
                    "Accounts": ["111111111111", "222222222222"], "Regions": ["eu-west-1", "eu-north-1"],
                    "MaxConcurrency": "10%", "MaxErrors": 1, "Notify": "Always", "StartedBy": "arn:aws:sts::123456789012:assumed-role/oncall/ann"}),
            &cat(),
            &home(),
        )
        .unwrap();
        assert_eq!(r.parameters["GraceSeconds"], "30");
        assert_eq!(r.accounts.len(), 2);
        assert_eq!(r.max_concurrency, Rate::Percent(10));
        assert_eq!(r.max_errors, Rate::Count(1));
        assert_eq!(r.notify, Notify::Always);
        assert_eq!(
            r.targets,
            TargetSelector::Tags(vec![TagFilter {
                key: "Env".into(),
                values: vec!["dev".into()]
            }])
        );
    }

    #[test]
    fn defaults_are_the_runners_home_and_the_procedures_rates() {
        let r = check(
            &json!({"Procedure": "disk-cleanup", "Targets": {"InstanceIds": ["i-0123456789abcdef0"]}}),
            &cat(),
            &home(),
        )
        .unwrap();
        assert_eq!(
            (r.accounts, r.regions),
            (vec!["123456789012".to_string()], vec!["eu-west-1".to_string()])
        );
        assert_eq!(
            (r.max_concurrency, r.max_errors, r.notify, r.dry_run),
            (Rate::Percent(10), Rate::Count(2), Notify::OnFailure, false)
        );
    }

    #[test]
    fn bad_input_names_the_field_and_the_rule() {
        let t = json!({"InstanceIds": ["i-0123456789abcdef0"]});
        for (input, expected) in [
            (json!([]), "InvalidInput: Input: must be a JSON object"),
            (
                json!({"Procedure": "rm -rf"}),
                "InvalidInput: Procedure: \"rm -rf\" is not in the catalogue",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "Commands": ["id"]}),
                "InvalidInput: Commands: is not a runner input field",
            ),
            (json!({"Procedure": "disk-cleanup"}), "InvalidInput: Targets: is required"),
            (
                json!({"Procedure": "disk-cleanup", "Targets": {"InstanceIds": ["i-1"]}}),
                "Targets.InstanceIds[0]: \"i-1\" is not an instance id",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": {"Tags": []}}),
                "Targets.Tags: must be a list of 1 to 5",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": {"Tags": [{"Key": "Env"}]}}),
                "Targets.Tags[0].Values: must be a list",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "Accounts": ["1234"]}),
                "Accounts[0]: \"1234\" is not a 12-digit AWS account id",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "Regions": ["Europe"]}),
                "Regions[0]: \"Europe\" is not an AWS Region code",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "MaxConcurrency": "80%"}),
                "MaxConcurrency: 80% is above procedure disk-cleanup's limit of 50%",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "MaxErrors": "x"}),
                "MaxErrors: must be a whole number",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "Notify": "Sometimes"}),
                "Notify: must be OnFailure, Always or Never",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "DryRun": "yes"}),
                "DryRun: must be true or false",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "Parameters": {"Path": "/"}}),
                "Parameters.Path: procedure disk-cleanup takes no parameters",
            ),
            (
                json!({"Procedure": "healthz", "Targets": t}),
                "Targets: procedure healthz calls its endpoint and takes no instance targets",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "IfTagged": {"Key": "opsflow:on-start"}}),
                "IfTagged.Values: must be a list",
            ),
            (
                json!({"Procedure": "disk-cleanup", "Targets": t, "IfTagged": {"Key": "", "Values": ["x"]}}),
                "IfTagged.Key: must be a tag key of 1 to 128 characters",
            ),
            (
                json!({"Procedure": "healthz", "IfTagged": {"Key": "k", "Values": ["v"]}}),
                "IfTagged: procedure healthz calls its endpoint and has no instances to filter",
            ),
        ] {
            let e = check(&input, &cat(), &home()).unwrap_err().to_string();
            assert!(e.contains(expected), "{input}: {e}");
        }
    }

    #[test]
    fn if_tagged_keeps_the_instances_with_the_tag() {
        let r = check(
            &json!({"Procedure": "disk-cleanup", "Targets": {"InstanceIds": ["i-0123456789abcdef0"]},
                    "IfTagged": {"Key": "opsflow:on-start", "Values": ["start-and-check"]}}),
            &cat(),
            &home(),
        )
        .unwrap();
        let f = r.if_tagged.unwrap();
        let tags = |v: &str| BTreeMap::from([("opsflow:on-start".to_string(), v.to_string())]);
        assert!(f.matches(&tags("start-and-check")));
        assert!(!f.matches(&tags("other")) && !f.matches(&BTreeMap::new()));
    }

    #[test]
    fn a_lifecycle_action_holds_the_one_target_of_a_forensic_capture() {
        let id = "i-0123456789abcdef0";
        let action = json!({"AutoScalingGroupName": "web", "LifecycleHookName": "opsflow-forensics",
                            "LifecycleActionToken": "3a4c0a5e-3e2b-4bb8-9a8e-0c8a3b4c5d6e", "EC2InstanceId": id,
                            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING"});
        let input = |procedure: &str, ids: Value, action: Value| json!({"Procedure": procedure, "Targets": {"InstanceIds": ids}, "LifecycleAction": action});
        let r = check(&input("forensic-capture", json!([id]), action.clone()), &cat(), &home()).unwrap();
        assert_eq!(r.lifecycle_action.unwrap().lifecycle_hook_name, "opsflow-forensics");
        let refused = |v: Value| check(&v, &cat(), &home()).unwrap_err().to_string();
        assert!(refused(input("disk-cleanup", json!([id]), action.clone())).contains("only a forensic-capture procedure"));
        assert!(
            refused(input("forensic-capture", json!([id, "i-0123456789abcdef1"]), action.clone())).starts_with("InvalidInput: Targets:")
        );
        let mut launching = action.clone();
        launching["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_LAUNCHING");
        assert!(refused(input("forensic-capture", json!([id]), launching)).contains("LifecycleAction.LifecycleTransition"));
        let mut odd = action;
        odd["Extra"] = json!(1);
        assert!(refused(input("forensic-capture", json!([id]), odd)).contains("LifecycleAction.Extra"));
    }

    #[test]
    fn identifiers_follow_aws_shapes() {
        assert!(valid_region("us-gov-west-1") && valid_region("eu-north-1") && valid_region("ap-southeast-5"));
        assert!(!valid_region("eu-west") && !valid_region("EU-west-1") && !valid_region("eu-west-1a"));
        assert!(valid_instance_id("i-0123abcd") && valid_instance_id("i-0123456789abcdef0"));
        assert!(!valid_instance_id("i-0123ABCD") && !valid_instance_id("i-012"));
    }
}
