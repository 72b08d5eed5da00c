//! The published privilege-escalation paths, kept as data (`escalations.json`, each entry with
//! its source): the permissions that let whoever holds a role's credentials (anyone on the
//! instance) give themselves more.

use std::sync::OnceLock;

use serde::Deserialize;

/// One path: every action in `actions` allowed (on every resource, when `any_resource`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EscalationPath {
    pub id: String,
    pub actions: Vec<String>,
    pub any_resource: bool,
    pub summary: String,
    pub source: String,
    pub reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    version: u32,
    paths: Vec<EscalationPath>,
}

const DATA: &str = include_str!("escalations.json");

/// The paths, parsed once.
pub fn paths() -> &'static [EscalationPath] {
    static PATHS: OnceLock<Vec<EscalationPath>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let c: Catalogue = serde_json::from_str(DATA).expect("escalations.json is checked by its tests");
        assert_eq!(c.version, 1, "escalations.json version");
        c.paths
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_well_formed_and_cites_its_source() {
        let all = paths();
        assert!(all.len() >= 21, "at least Rhino Security Labs' 21 methods");
        let mut ids = std::collections::BTreeSet::new();
        for p in all {
            assert!(ids.insert(p.id.as_str()), "{} is unique", p.id);
            assert!(
                p.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{} is kebab-case",
                p.id
            );
            assert!(!p.actions.is_empty(), "{} names its actions", p.id);
            for a in &p.actions {
                let (service, name) = a.split_once(':').unwrap_or_else(|| panic!("{}: {a} is service:Action", p.id));
                assert!(
                    service.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit()),
                    "{a}"
                );
                assert!(name.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{a}");
            }
            assert!(p.source.starts_with("https://"), "{} cites a source", p.id);
            assert!(
                !p.reference.is_empty() && !p.summary.is_empty() && p.summary.len() <= 120,
                "{}",
                p.id
            );
        }
        // The ones the audit must always report.
        let pass = all.iter().find(|p| p.id == "iam-pass-role-any").expect("iam-pass-role-any");
        assert!(pass.any_resource && pass.actions == ["iam:PassRole"]);
        for action in ["sts:AssumeRole", "ssm:SendCommand"] {
            assert!(
                all.iter().any(|p| p.actions == [action] && p.any_resource),
                "{action} on every resource is a path"
            );
        }
        for action in ["iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:CreatePolicyVersion"] {
            assert!(all.iter().any(|p| p.actions.iter().any(|a| a == action)), "{action} is on a path");
        }
    }
}
