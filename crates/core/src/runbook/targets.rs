//! From the instances a selector found to the targets a procedure runs on.
//!
//! An instance becomes a target only if it opted in (the procedure's opt-in tag with one of its
//! values), runs a platform the procedure supports, is `running`, and its SSM agent is `Online`
//! (a start-and-check also takes stopped and pending instances, whatever their agent).
//! Everything else is reported as excluded, with the reason, and never touched. The same opt-in
//! rule is checked again, on fresh facts, by the step that sends the command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalogue::{Kind, Os, Procedure};
use super::rate::Rate;
use crate::error::CoreError;
use crate::facts::{InstanceState, PingStatus, Platform};

/// An instance as ResolveTargets sees it in one account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub state: InstanceState,
    pub platform: Platform,
    pub tags: BTreeMap<String, String>,
    /// The SSM agent's ping status; `None` when SSM does not know the instance.
    pub ping: Option<PingStatus>,
}

/// One target of a run: what the Map's child execution gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    /// The `Name` tag, for people reading the results.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub platform: Os,
}

/// An instance found by the selector that the run leaves alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Excluded {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub reason: String,
}

/// Whether the instance's tags opt it in to `procedure`; the error says which tag is missing.
pub fn check_opt_in(instance_id: &str, tags: &BTreeMap<String, String>, procedure: &Procedure) -> Result<(), CoreError> {
    let rules = &procedure.targets;
    match tags.get(&rules.opt_in_tag) {
        Some(v) if rules.tag_values.iter().any(|t| t == v) => Ok(()),
        Some(v) => Err(CoreError::forbidden(
            instance_id,
            format!(
                "its tag {}={v} does not admit procedure {} (admitted values: {})",
                rules.opt_in_tag,
                procedure.name,
                rules.tag_values.join(", ")
            ),
        )),
        None => Err(CoreError::forbidden(
            instance_id,
            format!(
                "it has not opted in to runbooks (no tag {}={})",
                rules.opt_in_tag,
                rules.tag_values.join("|")
            ),
        )),
    }
}

/// Why an instance in `state` cannot be a target of a `kind` procedure, if it cannot: a
/// start-and-check starts a stopped instance (a running or pending one is only checked; its SSM
/// agent need not be Online yet, the procedure waits for it); the others need it running.
fn unfit_state(kind: Kind, state: InstanceState) -> Option<String> {
    match (kind, state) {
        (_, InstanceState::Running) => None,
        (Kind::StartAndCheck, InstanceState::Stopped | InstanceState::Pending) => None,
        (Kind::StartAndCheck, InstanceState::Stopping) => {
            Some("the instance is stopping; it can be started once it is stopped".to_string())
        }
        (Kind::CleanStop, InstanceState::Stopped | InstanceState::Stopping) => Some(format!("the instance is already {state}")),
        _ => Some(format!("the instance is {state}")),
    }
}

/// Splits candidates into targets and exclusions, in a stable order (account, region, id).
pub fn select(mut candidates: Vec<Candidate>, procedure: &Procedure) -> (Vec<Target>, Vec<Excluded>) {
    candidates.sort_by(|a, b| (&a.account, &a.region, &a.instance_id).cmp(&(&b.account, &b.region, &b.instance_id)));
    candidates.dedup_by(|a, b| (&a.account, &a.region, &a.instance_id) == (&b.account, &b.region, &b.instance_id));
    let mut targets = Vec::new();
    let mut excluded = Vec::new();
    for c in candidates {
        let os = Os::from_platform(c.platform);
        let reason = if let Err(e) = check_opt_in(&c.instance_id, &c.tags, procedure) {
            Some(match e {
                CoreError::Forbidden { detail, .. } => detail,
                other => other.to_string(),
            })
        } else if !procedure.targets.platforms.contains(&os) {
            Some(format!("procedure {} does not run on {os:?}", procedure.name))
        } else if let Some(why) = unfit_state(procedure.kind, c.state) {
            Some(why)
        } else if procedure.kind != Kind::StartAndCheck && c.ping != Some(PingStatus::Online) {
            Some(match c.ping {
                Some(p) => format!("its SSM agent is {p}"),
                None => "it is not a managed node of SSM (no agent, or no instance profile allowing SSM)".to_string(),
            })
        } else {
            None
        };
        match reason {
            Some(reason) => excluded.push(Excluded {
                account: c.account,
                region: c.region,
                instance_id: c.instance_id,
                reason,
            }),
            None => targets.push(Target {
                name: c.tags.get("Name").cloned().unwrap_or_default(),
                account: c.account,
                region: c.region,
                instance_id: c.instance_id,
                platform: os,
            }),
        }
    }
    (targets, excluded)
}

/// The Distributed Map's numbers for `targets` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Controls {
    pub max_concurrency: u32,
    /// Errors allowed before no new target starts.
    pub allowed_errors: u32,
}

pub fn controls(targets: usize, max_concurrency: Rate, max_errors: Rate) -> Controls {
    let n = u32::try_from(targets).unwrap_or(u32::MAX);
    Controls {
        max_concurrency: max_concurrency.concurrency(n).min(n.max(1)),
        allowed_errors: max_errors.allowed_errors(n),
    }
}

/// The tag filters of a resource group's query, for DescribeInstances. A tag-based group
/// (`TAG_FILTERS_1_0`) selects the resources that match every filter (a filter: any of its
/// values, or with none any value), of its resource types: it must include EC2 instances. A
/// CloudFormation-stack group (`CLOUDFORMATION_STACK_1_0`) is refused: select by the stack's tag.
pub fn group_tag_filters(group: &str, kind: &str, query: &str) -> Result<Vec<(String, Vec<String>)>, CoreError> {
    let field = "Targets.ResourceGroup";
    if kind != "TAG_FILTERS_1_0" {
        return Err(CoreError::unsupported(
            field,
            format!("group {group} is a {kind} group; only tag-based groups (TAG_FILTERS_1_0) are resolved: select by Tags (e.g. aws:cloudformation:stack-name)"),
        ));
    }
    let q: serde_json::Value =
        serde_json::from_str(query).map_err(|e| CoreError::invalid(field, format!("group {group}'s query is not JSON: {e}")))?;
    let types: Vec<&str> = q["ResourceTypeFilters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    if !types.iter().any(|t| *t == "AWS::EC2::Instance" || *t == "AWS::AllSupported") {
        return Err(CoreError::invalid(
            field,
            format!("group {group} holds no EC2 instances (its resource types: {})", types.join(", ")),
        ));
    }
    let filters: Vec<(String, Vec<String>)> = q["TagFilters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let key = f["Key"].as_str()?.to_string();
            let values = f["Values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            Some((key, values))
        })
        .collect();
    if filters.is_empty() {
        return Err(CoreError::invalid(field, format!("group {group}'s query has no tag filters")));
    }
    Ok(filters)
}

/// Refuses a run with more targets than the procedure allows.
pub fn check_count(targets: usize, procedure: &Procedure) -> Result<(), CoreError> {
    let max = procedure.targets.max_targets as usize;
    if targets > max {
        return Err(CoreError::invalid(
            "Targets",
            format!("select {targets} instances; procedure {} runs on at most {max}", procedure.name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::catalogue::Catalogue;

    fn candidate(id: &str, tags: &[(&str, &str)]) -> Candidate {
        Candidate {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            instance_id: id.into(),
            state: InstanceState::Running,
            platform: Platform::Linux,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ping: Some(PingStatus::Online),
        }
    }

    #[test]
    fn only_opted_in_running_online_instances_of_a_supported_platform_are_targets() {
        let cat = Catalogue::builtin();
        let p = cat.get("restart-app").unwrap();
        let opted = [("opsflow:runbooks", "enabled"), ("Name", "billing-1")];
        let mut stopped = candidate("i-00000003", &opted);
        stopped.state = InstanceState::Stopped;
        let mut windows = candidate("i-00000004", &opted);
        windows.platform = Platform::Windows;
        let mut lost = candidate("i-00000005", &opted);
        lost.ping = Some(PingStatus::ConnectionLost);
        let (targets, excluded) = select(
            vec![
                candidate("i-00000002", &[("opsflow:runbooks", "restart-app")]),
                candidate("i-00000001", &opted),
                candidate("i-00000006", &[("opsflow:runbooks", "disk-cleanup")]),
                candidate("i-00000007", &[]),
                stopped,
                windows,
                lost,
            ],
            p,
        );
        let ids: Vec<_> = targets.iter().map(|t| t.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-00000001", "i-00000002"]);
        assert_eq!(targets[0].name, "billing-1");
        let reasons: Vec<_> = excluded.iter().map(|e| (e.instance_id.as_str(), e.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("i-00000003", "the instance is stopped"),
                ("i-00000004", "procedure restart-app does not run on Windows"),
                ("i-00000005", "its SSM agent is ConnectionLost"),
                (
                    "i-00000006",
                    "its tag opsflow:runbooks=disk-cleanup does not admit procedure restart-app (admitted values: enabled, restart-app)"
                ),
                (
                    "i-00000007",
                    "it has not opted in to runbooks (no tag opsflow:runbooks=enabled|restart-app)"
                ),
            ]
        );
    }

    #[test]
    fn a_tag_based_groups_filters_become_the_instance_query() {
        let q = r#"{"ResourceTypeFilters":["AWS::EC2::Instance"],"TagFilters":[{"Key":"Env","Values":["dev","test"]},{"Key":"Team","Values":[]}]}"#;
        assert_eq!(
            group_tag_filters("dev", "TAG_FILTERS_1_0", q).unwrap(),
            vec![
                ("Env".to_string(), vec!["dev".to_string(), "test".to_string()]),
                ("Team".to_string(), vec![])
            ]
        );
        let buckets = r#"{"ResourceTypeFilters":["AWS::S3::Bucket"],"TagFilters":[{"Key":"Env","Values":["dev"]}]}"#;
        assert!(group_tag_filters("b", "TAG_FILTERS_1_0", buckets)
            .unwrap_err()
            .to_string()
            .contains("holds no EC2 instances"));
        let e = group_tag_filters("s", "CLOUDFORMATION_STACK_1_0", "{}").unwrap_err();
        assert_eq!(e.name(), "Unsupported");
    }

    #[test]
    fn controls_bound_concurrency_by_the_targets() {
        assert_eq!(
            controls(40, Rate::Percent(10), Rate::Count(2)),
            Controls {
                max_concurrency: 4,
                allowed_errors: 2
            }
        );
        assert_eq!(
            controls(3, Rate::Count(50), Rate::Percent(50)),
            Controls {
                max_concurrency: 3,
                allowed_errors: 1
            }
        );
        assert_eq!(
            controls(0, Rate::Percent(10), Rate::Count(0)),
            Controls {
                max_concurrency: 1,
                allowed_errors: 0
            }
        );
    }
}
