//! The instance-role audit: instance → instance profile → role → attached and inline policies
//! and permissions boundary, judged into findings.
//!
//! Findings (one per role and kind, listing the instances that carry it, so a fleet of 10,000
//! instances on three roles gives a handful of findings, not 10,000):
//! - `admin` (critical): AdministratorAccess attached, or a policy allowing `*` on `*`, not
//!   capped by a boundary. Whoever is on the instance is account administrator.
//! - `escalation` (high), one per path of [`super::escalation::paths`] the role's permissions
//!   open (not reported for admin roles, which need no path).
//! - `no-ssm` (medium): the role lacks what the SSM agent needs to register
//!   (`ssm:UpdateInstanceInformation`) or to receive commands (the `ssmmessages` control
//!   channel or `ec2messages:GetMessages`), as AmazonSSMManagedInstanceCore grants them.
//! - `no-profile` (medium, per instance): no instance profile; `profile-without-role` (medium):
//!   a profile with no role (or deleted): either way the instance has no role credentials.
//! - `unreadable-policy` (low): an attached managed policy whose document could not be read;
//!   the role's verdict may be incomplete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::escalation::{paths, EscalationPath};
use super::policy::{Grant, Permissions, PolicyDoc};
use super::report::{Finding, InstanceRef, Severity};

/// An EC2 instance as the audits see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditInstance {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// EC2's state name (`running`, `stopped`, …).
    pub state: String,
    /// The instance profile's ARN, None without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_arn: Option<String>,
    /// `linux` or `windows`.
    #[serde(default)]
    pub platform: String,
    /// When it was launched (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns: Option<String>,
    /// It has a public IPv4 address.
    #[serde(default)]
    pub public_ip: bool,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Its metadata service requires IMDSv2 (`HttpTokens` `required`).
    #[serde(default)]
    pub imds_v2: bool,
    /// Tagged `opsflow:ssm-fix` = `off`: fleet health's automatic fix leaves it alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssm_fix_off: bool,
}

impl AuditInstance {
    pub fn reference(&self) -> InstanceRef {
        InstanceRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }
}

/// A role as IAM's GetAccountAuthorizationDetails describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleFacts {
    pub name: String,
    pub arn: String,
    /// The permissions boundary's policy ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<String>,
    /// Attached managed policies' ARNs.
    #[serde(default)]
    pub attached: Vec<String>,
    /// Inline policies: name → document.
    #[serde(default)]
    pub inline: BTreeMap<String, Value>,
    /// The instance profiles the role is in (ARNs).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// The trust policy (who may assume the role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Value>,
}

impl RoleFacts {
    /// Who besides EC2 may assume the role: each principal of an `Allow` of `sts:AssumeRole*`
    /// in its trust policy, as `<kind> <value>` (`AWS arn:aws:iam::999999999999:root`,
    /// `Service lambda.amazonaws.com`, `*`), without `Service ec2.amazonaws.com`.
    pub fn trusted_beyond_ec2(&self) -> Vec<String> {
        let Some(doc) = &self.trust else { return Vec::new() };
        let statements: Vec<&Value> = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for s in statements {
            let assumes = match s.get("Action") {
                Some(Value::String(a)) => a.to_ascii_lowercase().starts_with("sts:assumerole") || a == "*",
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| a.to_ascii_lowercase().starts_with("sts:assumerole") || a == "*"),
                _ => false,
            };
            if s.get("Effect").and_then(Value::as_str) != Some("Allow") || !assumes {
                continue;
            }
            match s.get("Principal") {
                Some(Value::String(p)) => out.push(p.clone()),
                Some(Value::Object(kinds)) => {
                    for (kind, v) in kinds {
                        let values: Vec<String> = match v {
                            Value::String(x) => vec![x.clone()],
                            Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
                            _ => Vec::new(),
                        };
                        out.extend(
                            values
                                .into_iter()
                                .filter(|x| !(kind == "Service" && x == "ec2.amazonaws.com"))
                                .map(|x| format!("{kind} {x}")),
                        );
                    }
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// An account's IAM as the audit needs it: the roles, and the default document of every managed
/// policy they reference (None: it could not be read).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IamFacts {
    pub roles: Vec<RoleFacts>,
    pub managed: BTreeMap<String, Option<Value>>,
}

impl IamFacts {
    /// The role in `profile_arn`, if any.
    pub fn role_of_profile(&self, profile_arn: &str) -> Option<&RoleFacts> {
        self.roles.iter().find(|r| r.profiles.iter().any(|p| p == profile_arn))
    }

    pub fn role(&self, role_arn: &str) -> Option<&RoleFacts> {
        self.roles.iter().find(|r| r.arn == role_arn)
    }
}

/// What SSM's agent needs: registration, and at least one way to receive commands.
const SSM_REGISTER: &str = "ssm:UpdateInstanceInformation";
const SSM_CHANNELS: [&[&str]; 2] = [
    &["ssmmessages:CreateControlChannel", "ssmmessages:OpenControlChannel"],
    &["ec2messages:GetMessages"],
];

/// A role's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRisk {
    pub role: String,
    pub role_name: String,
    /// Why it is admin.
    pub admin: Option<String>,
    /// Open escalation paths (ids) with the grants that open them.
    pub escalations: Vec<(String, Vec<Grant>)>,
    /// What the SSM agent lacks (empty: it can talk to SSM).
    pub ssm_missing: Vec<String>,
    pub unreadable: Vec<String>,
}

fn is_admin_policy(arn: &str) -> bool {
    arn.ends_with(":iam::aws:policy/AdministratorAccess")
}

/// Judges a role.
pub fn assess(role: &RoleFacts, iam: &IamFacts) -> RoleRisk {
    let mut unreadable = Vec::new();
    let mut docs: Vec<PolicyDoc> = role
        .inline
        .iter()
        .map(|(name, document)| PolicyDoc {
            name: format!("inline {name}"),
            document: document.clone(),
        })
        .collect();
    for arn in &role.attached {
        match iam.managed.get(arn) {
            Some(Some(document)) => docs.push(PolicyDoc {
                name: arn.clone(),
                document: document.clone(),
            }),
            _ if is_admin_policy(arn) => {}
            _ => unreadable.push(arn.clone()),
        }
    }
    let boundary = role.boundary.as_ref().and_then(|arn| match iam.managed.get(arn) {
        Some(Some(document)) => Some(PolicyDoc {
            name: format!("boundary {arn}"),
            document: document.clone(),
        }),
        _ => {
            unreadable.push(arn.clone());
            None
        }
    });
    let permissions = Permissions::new(&docs, boundary.as_ref());
    let capped = |why: String| match &boundary {
        Some(b)
            if !Permissions::new(std::slice::from_ref(b), None)
                .allows("*:*")
                .is_some_and(|a| a.any_resource) =>
        {
            None
        }
        _ => Some(why),
    };
    let admin = if let Some(arn) = role.attached.iter().find(|a| is_admin_policy(a)) {
        capped(format!("{arn} is attached"))
    } else {
        docs.iter()
            .find(|d| crate::alert::policy::allows_everything(&d.document))
            .and_then(|d| capped(format!("{} allows every action (*) on every resource (*)", d.name)))
    };
    let escalations = if admin.is_some() {
        Vec::new()
    } else {
        paths()
            .iter()
            .filter_map(|p| open_path(&permissions, p).map(|g| (p.id.clone(), g)))
            .collect()
    };
    let mut ssm_missing = Vec::new();
    if admin.is_none() {
        if permissions.allows(SSM_REGISTER).is_none() {
            ssm_missing.push(SSM_REGISTER.to_string());
        }
        if !SSM_CHANNELS.iter().any(|set| set.iter().all(|a| permissions.allows(a).is_some())) {
            ssm_missing.push(format!("{} (or {})", SSM_CHANNELS[0].join(" + "), SSM_CHANNELS[1].join(" + ")));
        }
    }
    RoleRisk {
        role: role.arn.clone(),
        role_name: role.name.clone(),
        admin,
        escalations,
        ssm_missing,
        unreadable,
    }
}

fn open_path(permissions: &Permissions, path: &EscalationPath) -> Option<Vec<Grant>> {
    let mut grants = Vec::new();
    for action in &path.actions {
        let access = permissions.allows(action)?;
        if path.any_resource && !access.any_resource {
            return None;
        }
        for g in access.grants {
            if !grants.contains(&g) {
                grants.push(g);
            }
        }
    }
    Some(grants)
}

fn grant_line(g: &Grant) -> String {
    format!(
        "{}{} on {}{}",
        g.policy,
        g.sid.as_deref().map(|s| format!(" (Sid {s})")).unwrap_or_default(),
        if g.resources.is_empty() {
            "(no resource)".to_string()
        } else {
            g.resources.join(", ")
        },
        if g.conditional { ", under a condition" } else { "" }
    )
}

/// The audit's findings for one account and region.
pub fn findings(account: &str, region: &str, instances: &[AuditInstance], iam: &IamFacts) -> Vec<Finding> {
    let base = |kind: &str, detail: &str, severity: Severity, subject: &str, title: String| {
        Finding::new(account, region, kind, detail, severity, subject, title)
    };
    let mut out = Vec::new();
    let mut by_role: BTreeMap<String, Vec<InstanceRef>> = BTreeMap::new();
    let mut empty_profiles: BTreeMap<String, Vec<InstanceRef>> = BTreeMap::new();
    for i in instances.iter().filter(|i| i.state != "terminated" && i.state != "shutting-down") {
        match &i.profile_arn {
            None => {
                let mut f = base(
                    "no-profile",
                    &i.id,
                    Severity::Medium,
                    &i.id,
                    format!("{} has no instance profile", i.reference().label()),
                );
                f.instances = vec![i.reference()];
                f.evidence = vec![format!("state {}", i.state)];
                f.fix = Some("associate an instance profile whose role has AmazonSSMManagedInstanceCore (or turn on Default Host Management Configuration)".into());
                out.push(f);
            }
            Some(profile) => match iam.role_of_profile(profile) {
                Some(role) => by_role.entry(role.arn.clone()).or_default().push(i.reference()),
                None => empty_profiles.entry(profile.clone()).or_default().push(i.reference()),
            },
        }
    }
    for (profile, instances) in empty_profiles {
        let name = profile.rsplit('/').next().unwrap_or(&profile).to_string();
        let mut f = base(
            "profile-without-role",
            &name,
            Severity::Medium,
            &profile,
            format!("instance profile {name} has no role: its instances get no credentials"),
        );
        f.instances = instances;
        f.fix = Some(format!(
            "add a role to {name} (iam:AddRoleToInstanceProfile) or associate another profile"
        ));
        out.push(f);
    }
    for (role_arn, instances) in by_role {
        let Some(role) = iam.role(&role_arn) else { continue };
        let risk = assess(role, iam);
        let policies = || {
            let mut p: Vec<String> = role.attached.clone();
            p.extend(role.inline.keys().map(|n| format!("inline {n}")));
            if let Some(b) = &role.boundary {
                p.push(format!("boundary {b}"));
            }
            format!("policies: {}", if p.is_empty() { "none".into() } else { p.join(", ") })
        };
        if let Some(why) = &risk.admin {
            let mut f = base(
                "admin",
                &role.name,
                Severity::Critical,
                &role.arn,
                format!("role {} is admin: anyone on its instances administers the account", role.name),
            );
            f.evidence = vec![why.clone(), policies()];
            f.instances = instances.clone();
            f.fix = Some("replace the admin grant with the actions the workload needs (IAM Access Analyzer can generate a policy from its CloudTrail activity)".into());
            out.push(f);
        }
        for (id, grants) in &risk.escalations {
            let path = paths().iter().find(|p| &p.id == id).expect("an open path is in the list");
            let mut f = base(
                "escalation",
                &format!("{}/{id}", role.name),
                Severity::High,
                &role.arn,
                format!("role {} can escalate: {}", role.name, path.summary),
            );
            f.evidence = grants.iter().map(grant_line).collect();
            f.evidence.insert(
                0,
                format!(
                    "{} {}",
                    path.actions.join(" + "),
                    if path.any_resource { "on every resource" } else { "allowed" }
                ),
            );
            f.instances = instances.clone();
            f.fix = Some(format!(
                "remove {} from the role, or limit it to named resources",
                path.actions.join(" + ")
            ));
            f.source = Some(format!("{} ({})", path.reference, path.source));
            out.push(f);
        }
        if !risk.ssm_missing.is_empty() {
            let mut f = base(
                "no-ssm",
                &role.name,
                Severity::Medium,
                &role.arn,
                format!("role {} cannot talk to SSM: its instances cannot be managed", role.name),
            );
            f.evidence = risk.ssm_missing.iter().map(|m| format!("not allowed: {m}")).collect();
            f.evidence.push(policies());
            f.instances = instances.clone();
            f.fix = Some("attach arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore to the role".into());
            out.push(f);
        }
        for arn in &risk.unreadable {
            let mut f = base(
                "unreadable-policy",
                &format!("{}/{}", role.name, arn.rsplit('/').next().unwrap_or(arn)),
                Severity::Low,
                &role.arn,
                format!("role {}: policy {arn} could not be read; its verdict may be incomplete", role.name),
            );
            f.instances = instances.clone();
            f.fix = Some("allow the audit role iam:GetPolicy and iam:GetPolicyVersion on it".into());
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
    const SSM_CORE: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";

    fn ssm_core() -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ssm:DescribeAssociation", "ssm:UpdateInstanceInformation", "ssm:GetDocument"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["ec2messages:GetMessages", "ec2messages:SendReply"], "Resource": "*"}]})
    }

    fn role(name: &str, attached: &[&str], inline: Vec<(&str, Value)>) -> RoleFacts {
        RoleFacts {
            name: name.into(),
            arn: format!("arn:aws:iam::111111111111:role/{name}"),
            boundary: None,
            attached: attached.iter().map(|s| s.to_string()).collect(),
            inline: inline.into_iter().map(|(n, d)| (n.to_string(), d)).collect(),
            profiles: vec![format!("arn:aws:iam::111111111111:instance-profile/{name}")],
            trust: None,
        }
    }

    fn iam(roles: Vec<RoleFacts>) -> IamFacts {
        IamFacts {
            roles,
            managed: BTreeMap::from([
                (
                    ADMIN.to_string(),
                    Some(json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}})),
                ),
                (SSM_CORE.to_string(), Some(ssm_core())),
            ]),
        }
    }

    fn instance(id: &str, profile: Option<&str>) -> AuditInstance {
        AuditInstance {
            id: id.into(),
            name: Some(format!("{id}-name")),
            state: "running".into(),
            profile_arn: profile.map(|p| format!("arn:aws:iam::111111111111:instance-profile/{p}")),
            platform: "linux".into(),
            ..AuditInstance::default()
        }
    }

    #[test]
    fn an_admin_role_is_one_critical_finding_listing_its_instances() {
        let iam = iam(vec![role("web", &[ADMIN, SSM_CORE], vec![])]);
        let f = findings(
            "111111111111",
            "us-east-1",
            &[instance("i-1", Some("web")), instance("i-2", Some("web"))],
            &iam,
        );
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].key, "111111111111/us-east-1/admin/web");
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].instances.len(), 2);
        assert!(f[0].evidence[0].contains("AdministratorAccess is attached"));
    }

    #[test]
    fn escalation_paths_name_the_statement_and_its_source() {
        let inline =
            json!({"Statement": [{"Sid": "Deploy", "Effect": "Allow", "Action": ["iam:PassRole", "ec2:RunInstances"], "Resource": "*"}]});
        let iam = iam(vec![role("builder", &[SSM_CORE], vec![("deploy", inline)])]);
        let f = findings("111111111111", "us-east-1", &[instance("i-1", Some("builder"))], &iam);
        let keys: Vec<&str> = f.iter().map(|f| f.key.as_str()).collect();
        assert!(
            keys.contains(&"111111111111/us-east-1/escalation/builder/iam-pass-role-any"),
            "{keys:?}"
        );
        let pass = f.iter().find(|f| f.key.ends_with("/iam-pass-role-any")).unwrap();
        assert_eq!(pass.severity, Severity::High);
        assert!(
            pass.evidence.iter().any(|e| e == "inline deploy (Sid Deploy) on *"),
            "{:?}",
            pass.evidence
        );
        assert!(pass.source.as_deref().is_some_and(|s| s.contains("https://")));
        assert!(f.iter().all(|f| f.kind != "no-ssm"), "it has AmazonSSMManagedInstanceCore");
        assert!(f.iter().all(|f| f.kind != "admin"));
    }

    #[test]
    fn pass_role_on_one_role_is_not_pass_role_on_every_role() {
        let inline = json!({"Statement": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::111111111111:role/app"}});
        let iam = iam(vec![role("narrow", &[SSM_CORE], vec![("p", inline)])]);
        let f = findings("111111111111", "us-east-1", &[instance("i-1", Some("narrow"))], &iam);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn no_profile_an_empty_profile_and_a_role_without_ssm() {
        let iam = iam(vec![role(
            "bare",
            &[],
            vec![(
                "s3",
                json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}),
            )],
        )]);
        let mut stopped = instance("i-3", None);
        stopped.state = "stopped".into();
        let gone = AuditInstance {
            state: "terminated".into(),
            ..instance("i-4", None)
        };
        let f = findings(
            "111111111111",
            "us-east-1",
            &[instance("i-1", Some("bare")), instance("i-2", Some("deleted")), stopped, gone],
            &iam,
        );
        let kinds: Vec<(&str, &str)> = f.iter().map(|f| (f.kind.as_str(), f.subject.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("no-profile", "i-3"),
                ("profile-without-role", "arn:aws:iam::111111111111:instance-profile/deleted"),
                ("no-ssm", "arn:aws:iam::111111111111:role/bare"),
            ],
            "a terminated instance is not audited"
        );
        let no_ssm = &f[2];
        assert!(no_ssm.evidence[0].contains("ssm:UpdateInstanceInformation"));
        assert!(no_ssm.fix.as_deref().unwrap().contains("AmazonSSMManagedInstanceCore"));
    }

    #[test]
    fn a_boundary_caps_admin_and_an_unreadable_policy_is_said() {
        let mut r = role("capped", &[ADMIN, SSM_CORE, "arn:aws:iam::111111111111:policy/gone"], vec![]);
        r.boundary = Some("arn:aws:iam::111111111111:policy/boundary".into());
        let mut iam = iam(vec![r]);
        iam.managed.insert(
            "arn:aws:iam::111111111111:policy/boundary".into(),
            Some(json!({"Statement": {"Effect": "Allow", "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:*", "ec2messages:*", "s3:*"], "Resource": "*"}})),
        );
        iam.managed.insert("arn:aws:iam::111111111111:policy/gone".into(), None);
        let risk = assess(&iam.roles[0], &iam);
        assert_eq!(risk.admin, None, "the boundary caps AdministratorAccess");
        assert!(risk.escalations.is_empty(), "{:?}", risk.escalations);
        assert!(risk.ssm_missing.is_empty());
        assert_eq!(risk.unreadable, ["arn:aws:iam::111111111111:policy/gone"]);
    }

    #[test]
    fn who_else_may_assume_the_role() {
        let mut r = role("web", &[], vec![]);
        assert!(r.trusted_beyond_ec2().is_empty());
        r.trust = Some(json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com", "ssm.amazonaws.com"]}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": ["sts:AssumeRole", "sts:TagSession"]},
            {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::888888888888:root"}, "Action": "s3:GetObject"}]}));
        assert_eq!(
            r.trusted_beyond_ec2(),
            ["AWS arn:aws:iam::999999999999:root", "Service ssm.amazonaws.com"]
        );
    }
}
