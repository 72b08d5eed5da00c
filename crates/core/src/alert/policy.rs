//! The alert's judgements: how severe it is ([`severity`]), and whether an instance's role
//! grants admin ([`admin_grant`]: AdministratorAccess attached, or a policy that allows every
//! action on every resource).

use serde_json::Value;

use crate::alert::model::{Alarm, InstanceView, ProfileRole, Severity};

/// How severe the alert is:
/// - `OK` is `info`, `INSUFFICIENT_DATA` is `low`;
/// - `ALARM` is `high`, or `medium` when every instance it is about started recently (within
///   the settings' threshold: likely warm-up);
/// - whatever the state, a composite alarm whose actions CloudWatch suppressed
///   (`actionsSuppressedBy`: its suppressor alarm is in ALARM, or the wait or extension period
///   runs) is at most `low`: its owner said not to act on it now. It is still published, with
///   the suppression in the text, the body and the `actionsSuppressed` attribute.
pub fn severity(alarm: &Alarm, views: &[InstanceView], muted: bool) -> Severity {
    let by_state = match alarm.state.as_str() {
        "OK" => Severity::Info,
        "INSUFFICIENT_DATA" => Severity::Low,
        _ if !views.is_empty() && views.iter().all(|v| v.recently_started) => Severity::Medium,
        _ => Severity::High,
    };
    // Suppressed actions, or an active mute rule (maintenance): nobody is to be paged.
    match (alarm.actions_suppressed.is_some() || muted, by_state) {
        (true, Severity::High | Severity::Medium) => Severity::Low,
        (_, severity) => severity,
    }
}

/// Why `role` counts as admin, or None.
pub fn admin_grant(role: &ProfileRole) -> Option<String> {
    // Any partition: arn:aws:…, arn:aws-us-gov:…, arn:aws-cn:….
    if role
        .attached_policy_arns
        .iter()
        .any(|arn| arn.ends_with(":iam::aws:policy/AdministratorAccess"))
    {
        return Some("AdministratorAccess is attached".to_string());
    }
    role.policy_documents
        .iter()
        .find(|(_, doc)| allows_everything(doc))
        .map(|(name, _)| format!("policy {name} allows every action (*) on every resource (*)"))
}

/// True when a statement of `doc` is `Allow` of `*` on `*` (conditions do not change the
/// verdict: a conditional admin is still admin when the condition holds).
pub fn allows_everything(doc: &Value) -> bool {
    let statements = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return false,
    };
    statements.iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && has_wildcard(s.get("Action"), &["*", "*:*"])
            && has_wildcard(s.get("Resource"), &["*"])
    })
}

fn has_wildcard(v: Option<&Value>, wildcards: &[&str]) -> bool {
    match v {
        Some(Value::String(s)) => wildcards.contains(&s.as_str()),
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str().is_some_and(|s| wildcards.contains(&s))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::model::{AlarmKind, Suppression};
    use serde_json::json;

    fn composite(state: &str, suppressed_by: Option<&str>) -> Alarm {
        Alarm {
            name: "web-tier-unhealthy".into(),
            description: None,
            arn: None,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            region_name: None,
            state: state.into(),
            previous_state: None,
            reason: String::new(),
            changed_at_ms: 0,
            kind: AlarmKind::Composite {
                rule: "ALARM(a) OR ALARM(b)".into(),
                triggering_alarms: vec![],
            },
            source: "eventbridge".into(),
            actions_suppressed: suppressed_by.map(|by| Suppression {
                by: by.into(),
                reason: None,
                suppressor: Some("maintenance-window".into()),
                wait_period_s: Some(120),
                extension_period_s: Some(180),
            }),
            evaluation_state: None,
            datapoints_to_alarm: None,
            treat_missing_data: None,
            tags: Default::default(),
            tags_status: None,
        }
    }

    #[test]
    fn suppressed_actions_lower_the_severity_to_low_at_most() {
        assert_eq!(severity(&composite("ALARM", None), &[], false), Severity::High);
        for by in ["WaitPeriod", "ExtensionPeriod", "Alarm"] {
            assert_eq!(severity(&composite("ALARM", Some(by)), &[], false), Severity::Low, "{by}");
            assert_eq!(severity(&composite("OK", Some(by)), &[], false), Severity::Info, "{by}");
            assert_eq!(
                severity(&composite("INSUFFICIENT_DATA", Some(by)), &[], false),
                Severity::Low,
                "{by}"
            );
        }
        assert_eq!(severity(&composite("OK", None), &[], false), Severity::Info);
        assert_eq!(severity(&composite("INSUFFICIENT_DATA", None), &[], false), Severity::Low);
        // An alarm muted for maintenance (an active mute rule) pages nobody either.
        assert_eq!(severity(&composite("ALARM", None), &[], true), Severity::Low);
        assert_eq!(severity(&composite("OK", None), &[], true), Severity::Info);
    }

    fn role(attached: &[&str], docs: Vec<(&str, Value)>) -> ProfileRole {
        ProfileRole {
            profile_arn: "arn:aws:iam::123456789012:instance-profile/web".into(),
            role_name: "web-role".into(),
            role_arn: "arn:aws:iam::123456789012:role/web-role".into(),
            attached_policy_arns: attached.iter().map(|s| s.to_string()).collect(),
            policy_documents: docs.into_iter().map(|(n, d)| (n.to_string(), d)).collect(),
        }
    }

    #[test]
    fn administrator_access_in_any_partition() {
        for arn in [
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
        ] {
            assert_eq!(
                admin_grant(&role(&[arn], vec![])).as_deref(),
                Some("AdministratorAccess is attached")
            );
        }
        // A customer policy with the same name is judged by its document, not its name.
        assert_eq!(
            admin_grant(&role(&["arn:aws:iam::123456789012:policy/AdministratorAccess"], vec![])),
            None
        );
        assert_eq!(admin_grant(&role(&["arn:aws:iam::aws:policy/ReadOnlyAccess"], vec![])), None);
    }

    #[test]
    fn allow_star_on_star_in_any_statement_form() {
        let admin = [
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
            json!({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
                                 {"Effect": "Allow", "Action": ["ec2:*", "*"], "Resource": ["*"]}]}),
            json!({"Statement": [{"Effect": "Allow", "Action": "*:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}),
        ];
        for doc in admin {
            assert!(allows_everything(&doc), "{doc}");
        }
        let not_admin = [
            json!({"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}),
            json!({"Statement": {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}}),
            json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::bucket/*"}}),
            json!({"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}),
            json!({}),
        ];
        for doc in not_admin {
            assert!(!allows_everything(&doc), "{doc}");
        }
        let r = role(
            &[],
            vec![(
                "inline-everything",
                json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
            )],
        );
        assert_eq!(
            admin_grant(&r).as_deref(),
            Some("policy inline-everything allows every action (*) on every resource (*)")
        );
    }
}
