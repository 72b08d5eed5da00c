//! What a role's policies allow: enough of IAM's policy evaluation to say whether an action is
//! allowed, by which statements, on which resources.
//!
//! The rules (IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements"):
//! - `Statement` is one object or a list; `Action`/`NotAction`, `Resource`/`NotResource` are a
//!   string or a list. Action names match case-insensitively with `*` and `?` wildcards;
//!   `NotAction` allows every action it does not name.
//! - An explicit `Deny` wins over any `Allow`. Only an unconditional deny of every resource is
//!   subtracted here: a deny that holds under a condition, or on some resources only, may not
//!   apply, so the grant is still reported (an audit says what *may* be possible).
//! - A permissions boundary caps the identity policies: the action must be allowed by both, and
//!   covers every resource only if both grants do.
//! - A grant under a `Condition` still counts (the condition may hold); it is marked
//!   `conditional` so the reader can judge.
//!
//! "Every resource" is `*`, `NotResource` (everything but what it names), or an ARN whose
//! resource part is `*` or `<type>/*` in any account (e.g. `arn:aws:iam::*:role/*`).

use serde::Serialize;
use serde_json::Value;

/// A policy and its document (inline: its name; managed: its ARN).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDoc {
    pub name: String,
    pub document: Value,
}

#[derive(Clone, Debug)]
struct Statement {
    policy: String,
    sid: Option<String>,
    allow: bool,
    actions: Vec<String>,
    not_action: bool,
    resources: Vec<String>,
    not_resource: bool,
    conditional: bool,
}

/// One statement that allows an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The statement's `Resource` (or `NotResource` as `not <pattern>`).
    pub resources: Vec<String>,
    pub conditional: bool,
}

/// Whether and how an action is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub grants: Vec<Grant>,
    /// A grant covers every resource (after the boundary).
    pub any_resource: bool,
}

/// A role's effective permissions: its identity policies, capped by its boundary.
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    identity: Vec<Statement>,
    boundary: Option<Vec<Statement>>,
}

impl Permissions {
    pub fn new(identity: &[PolicyDoc], boundary: Option<&PolicyDoc>) -> Permissions {
        Permissions {
            identity: identity.iter().flat_map(statements).collect(),
            boundary: boundary.map(statements),
        }
    }

    /// How `action` (e.g. `iam:PassRole`) is allowed, or None.
    pub fn allows(&self, action: &str) -> Option<Access> {
        let identity = allowed(&self.identity, action)?;
        match &self.boundary {
            None => Some(identity),
            Some(boundary) => {
                let capped = allowed(boundary, action)?;
                Some(Access {
                    any_resource: identity.any_resource && capped.any_resource,
                    grants: identity.grants,
                })
            }
        }
    }
}

fn allowed(statements: &[Statement], action: &str) -> Option<Access> {
    let matching = |s: &&Statement| s.actions.iter().any(|p| wildcard(p, action)) != s.not_action;
    let denied = statements
        .iter()
        .filter(matching)
        .any(|s| !s.allow && !s.conditional && covers_every_resource(s));
    if denied {
        return None;
    }
    let grants: Vec<&Statement> = statements.iter().filter(matching).filter(|s| s.allow).collect();
    if grants.is_empty() {
        return None;
    }
    Some(Access {
        any_resource: grants.iter().any(|s| covers_every_resource(s)),
        grants: grants
            .into_iter()
            .map(|s| Grant {
                policy: s.policy.clone(),
                sid: s.sid.clone(),
                resources: if s.not_resource {
                    s.resources.iter().map(|r| format!("not {r}")).collect()
                } else {
                    s.resources.clone()
                },
                conditional: s.conditional,
            })
            .collect(),
    })
}

fn covers_every_resource(s: &Statement) -> bool {
    s.not_resource || s.resources.iter().any(|r| every_resource(r))
}

/// `*`, or an ARN whose resource part is `*` or `<type>/*`.
pub fn every_resource(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, _, _, resource] => {
            *resource == "*"
                || resource
                    .split_once('/')
                    .is_some_and(|(kind, rest)| !kind.contains('*') && rest == "*")
        }
        _ => false,
    }
}

/// IAM's action matching: case-insensitive, `*` any run of characters, `?` one character.
pub fn wildcard(pattern: &str, action: &str) -> bool {
    let (p, a): (Vec<char>, Vec<char>) = (
        pattern.to_ascii_lowercase().chars().collect(),
        action.to_ascii_lowercase().chars().collect(),
    );
    // Greedy matching with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < a.len() {
        if i < p.len() && (p[i] == '?' || p[i] == a[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn statements(doc: &PolicyDoc) -> Vec<Statement> {
    let list: Vec<&Value> = match doc.document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|s| {
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return None,
            };
            let not_action = s.get("NotAction").is_some();
            let not_resource = s.get("NotResource").is_some();
            Some(Statement {
                policy: doc.name.clone(),
                sid: s.get("Sid").and_then(Value::as_str).filter(|x| !x.is_empty()).map(str::to_string),
                allow,
                actions: strings(s.get(if not_action { "NotAction" } else { "Action" })),
                not_action,
                resources: strings(s.get(if not_resource { "NotResource" } else { "Resource" })),
                not_resource,
                conditional: s.get("Condition").is_some_and(|c| c.as_object().is_some_and(|o| !o.is_empty())),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(name: &str, document: Value) -> PolicyDoc {
        PolicyDoc {
            name: name.into(),
            document,
        }
    }

    #[test]
    fn action_wildcards_match_as_iam_does() {
        for (p, a) in [
            ("*", "iam:PassRole"),
            ("iam:*", "iam:PassRole"),
            ("IAM:passrole", "iam:PassRole"),
            ("iam:Pass*", "iam:PassRole"),
            ("iam:*Role*", "iam:PutRolePolicy"),
            ("ssm:Send?ommand", "ssm:SendCommand"),
            ("*:*", "sts:AssumeRole"),
        ] {
            assert!(wildcard(p, a), "{p} matches {a}");
        }
        for (p, a) in [
            ("iam:Get*", "iam:PassRole"),
            ("iam:PassRol", "iam:PassRole"),
            ("s3:*", "iam:PassRole"),
            ("iam:?", "iam:PassRole"),
        ] {
            assert!(!wildcard(p, a), "{p} does not match {a}");
        }
    }

    #[test]
    fn every_resource_is_a_star_or_every_resource_of_a_type() {
        for r in [
            "*",
            "arn:aws:iam::*:role/*",
            "arn:aws:iam::123456789012:role/*",
            "arn:aws:ec2:*:*:*",
        ] {
            assert!(every_resource(r), "{r}");
        }
        for r in [
            "arn:aws:iam::123456789012:role/web",
            "arn:aws:iam::123456789012:role/app-*",
            "arn:aws:s3:::bucket/*/x",
        ] {
            assert!(!every_resource(r), "{r}");
        }
    }

    #[test]
    fn grants_denies_not_action_and_boundaries() {
        let p = Permissions::new(
            &[
                doc(
                    "pass",
                    json!({"Statement": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}}),
                ),
                doc(
                    "put",
                    json!({"Statement": [{"Sid": "One", "Effect": "Allow", "Action": ["iam:PutRolePolicy"], "Resource": "arn:aws:iam::1:role/web"}]}),
                ),
                doc(
                    "most",
                    json!({"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}),
                ),
                doc(
                    "no-ssm",
                    json!({"Statement": {"Effect": "Deny", "Action": "ssm:SendCommand", "Resource": "*"}}),
                ),
                doc(
                    "maybe-no-sts",
                    json!({"Statement": {"Effect": "Deny", "Action": "sts:*", "Resource": "*", "Condition": {"Bool": {"aws:ViaAWSService": "false"}}}}),
                ),
            ],
            None,
        );
        let pass = p.allows("iam:PassRole").unwrap();
        assert!(pass.any_resource);
        assert_eq!(pass.grants[0].policy, "pass");
        let put = p.allows("iam:PutRolePolicy").unwrap();
        assert!(!put.any_resource);
        assert_eq!(put.grants[0].sid.as_deref(), Some("One"));
        assert_eq!(put.grants[0].resources, ["arn:aws:iam::1:role/web"]);
        assert!(p.allows("iam:CreateAccessKey").is_none(), "NotAction iam:* leaves IAM out");
        assert!(p.allows("ec2:RunInstances").unwrap().any_resource, "NotAction allows the rest");
        assert!(
            p.allows("ssm:SendCommand").is_none(),
            "an unconditional deny of every resource wins"
        );
        assert!(p.allows("sts:AssumeRole").is_some(), "a conditional deny may not apply");

        let bounded = Permissions::new(
            &[doc(
                "admin",
                json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
            )],
            Some(&doc(
                "boundary",
                json!({"Statement": {"Effect": "Allow", "Action": ["s3:*", "iam:PassRole"], "Resource": "arn:aws:iam::1:role/app"}}),
            )),
        );
        assert!(bounded.allows("iam:PutRolePolicy").is_none(), "the boundary does not allow it");
        let capped = bounded.allows("iam:PassRole").unwrap();
        assert!(!capped.any_resource, "the boundary narrows the resources");
    }

    #[test]
    fn malformed_documents_allow_nothing() {
        let p = Permissions::new(
            &[
                doc("empty", json!({})),
                doc(
                    "odd",
                    json!({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}, 7]}),
                ),
            ],
            None,
        );
        assert!(p.allows("iam:PassRole").is_none());
    }
}
