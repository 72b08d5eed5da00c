//! SSM fleet health: which running instances SSM can actually manage, and for each one it
//! cannot, the likely cause and the fix — the checks of AWS's
//! `AWSSupport-TroubleshootManagedInstance` runbook, on facts read once per account and region
//! (DescribeInstances, DescribeInstanceInformation, GetServiceSetting, the subnets' routes, the
//! VPC endpoints, the security groups).
//!
//! Findings:
//! - `unmanaged` (high): a running instance SSM does not list (after a grace period from its
//!   launch);
//! - `connection-lost` (high) / `inactive` (medium): listed, but its agent does not ping;
//! - `registered-as-mi` (high): an EC2 instance whose agent registered under a hybrid `mi-` id
//!   (an image made from a registered machine carries its registration);
//! - `stale-registration` (medium): a hybrid `mi-` node not seen for `stale_days`;
//! - `old-agent` (low): an agent that is not the latest version;
//! - `dhmc-off` (low, per scope): instances without a profile, and Default Host Management
//!   Configuration off.
//!
//! The cause checks, in the runbook's order: credentials (a profile whose role has what the agent
//! needs, or DHMC with IMDSv2), then the network (outbound TCP 443 in a security group, and a
//! route out — NAT, or an internet gateway with a public IP — or the three interface endpoints
//! `ssm`, `ssmmessages`, `ec2messages`), then the agent itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::report::{Finding, Severity};
use super::roles::{assess, AuditInstance, IamFacts};

/// A node as DescribeInstanceInformation lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedNode {
    pub id: String,
    pub ping_status: String,
    #[serde(default)]
    pub last_ping_s: Option<i64>,
    #[serde(default)]
    pub agent_version: Option<String>,
    #[serde(default)]
    pub is_latest: Option<bool>,
    /// `EC2Instance` or `ManagedInstance`.
    pub resource_type: String,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub registered_s: Option<i64>,
}

/// What the network between an instance and SSM looks like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkFacts {
    /// Security group → it allows outbound TCP 443 to anywhere.
    pub egress_443: BTreeMap<String, bool>,
    /// Subnet → the target of its route table's `0.0.0.0/0` route (`igw-…`, `nat-…`, …), None
    /// without one (the subnet's own table, else its VPC's main table).
    pub default_route: BTreeMap<String, Option<String>>,
    /// VPC → the SSM interface endpoints it has (`ssm`, `ssmmessages`, `ec2messages`), available.
    pub endpoints: BTreeMap<String, Vec<String>>,
}

const ENDPOINTS: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

/// The settings of the check.
#[derive(Clone, Copy, Debug)]
pub struct HealthRules {
    pub now_s: i64,
    /// A hybrid node not seen for this long is stale.
    pub stale_days: i64,
    /// An instance launched this recently may still be registering.
    pub grace_s: i64,
}

impl HealthRules {
    pub fn new(now_s: i64) -> HealthRules {
        HealthRules {
            now_s,
            stale_days: 14,
            grace_s: 600,
        }
    }
}

/// What is wrong with an instance's path to SSM, in the runbook's order; empty when nothing
/// that can be seen from outside is.
pub fn causes(i: &AuditInstance, iam: &IamFacts, dhmc_role: Option<&str>, net: &NetworkFacts) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match i.profile_arn.as_deref() {
        None => match dhmc_role {
            None => out.push((
                "no instance profile, and Default Host Management Configuration is off: the agent has no credentials".into(),
                "associate an instance profile whose role has AmazonSSMManagedInstanceCore, or turn on Default Host Management Configuration (Systems Manager > Fleet Manager > Account management)".into(),
            )),
            Some(_) if !i.imds_v2 => out.push((
                "no instance profile; Default Host Management Configuration is on but needs IMDSv2, and the instance allows IMDSv1".into(),
                "require IMDSv2 (aws ec2 modify-instance-metadata-options --http-tokens required), or associate an instance profile".into(),
            )),
            Some(_) => {}
        },
        Some(profile) => match iam.role_of_profile(profile) {
            None => out.push((
                format!("instance profile {} has no role: the agent has no credentials", profile.rsplit('/').next().unwrap_or(profile)),
                "add a role with AmazonSSMManagedInstanceCore to the profile".into(),
            )),
            Some(role) => {
                let risk = assess(role, iam);
                if !risk.ssm_missing.is_empty() && risk.admin.is_none() {
                    out.push((
                        format!("role {} does not allow {}", role.name, risk.ssm_missing.join(", ")),
                        format!("attach arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore to role {}", role.name),
                    ));
                }
            }
        },
    }
    if !i.security_groups.is_empty() && !i.security_groups.iter().any(|g| net.egress_443.get(g).copied().unwrap_or(true)) {
        out.push((
            format!(
                "no security group of the instance ({}) allows outbound TCP 443",
                i.security_groups.join(", ")
            ),
            "allow outbound TCP 443 (to the VPC endpoints' security group, or 0.0.0.0/0 through a NAT)".into(),
        ));
    }
    if let (Some(subnet), Some(vpc)) = (&i.subnet_id, &i.vpc_id) {
        let route = net.default_route.get(subnet).cloned().flatten();
        let out_to_internet = match route.as_deref() {
            Some(t) if t.starts_with("nat-") => true,
            Some(t) if t.starts_with("igw-") => i.public_ip,
            _ => false,
        };
        let have = net.endpoints.get(vpc).cloned().unwrap_or_default();
        let missing: Vec<&str> = ENDPOINTS.iter().copied().filter(|e| !have.iter().any(|h| h == e)).collect();
        if !out_to_internet && !missing.is_empty() && net.default_route.contains_key(subnet) {
            let how = match route.as_deref() {
                Some(t) if t.starts_with("igw-") => format!("subnet {subnet} routes to {t}, but the instance has no public IP"),
                Some(t) => format!("subnet {subnet}'s default route goes to {t}"),
                None => format!("subnet {subnet} has no route out (no 0.0.0.0/0)"),
            };
            out.push((
                format!(
                    "{how}, and VPC {vpc} lacks the interface endpoints {}",
                    missing
                        .iter()
                        .map(|m| format!("com.amazonaws.<region>.{m}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "create the interface endpoints {} (private DNS on), or route 0.0.0.0/0 through a NAT gateway",
                    missing.join(", ")
                ),
            ));
        }
    }
    out
}

/// What the check reads in one account and region.
#[derive(Clone, Debug, Default)]
pub struct HealthFacts {
    pub instances: Vec<AuditInstance>,
    pub nodes: Vec<ManagedNode>,
    pub iam: IamFacts,
    /// Default Host Management Configuration's role, None when it is off.
    pub dhmc_role: Option<String>,
    pub net: NetworkFacts,
}

/// The fleet-health findings of one account and region.
pub fn findings(account: &str, region: &str, facts: &HealthFacts, rules: HealthRules) -> (Vec<Finding>, BTreeMap<String, usize>) {
    let HealthFacts {
        instances,
        nodes,
        iam,
        dhmc_role,
        net,
    } = facts;
    let dhmc_role = dhmc_role.as_deref();
    let finding = |kind: &str, subject: &str, severity: Severity, title: String| {
        Finding {
        source: Some("AWSSupport-TroubleshootManagedInstance (https://docs.aws.amazon.com/systems-manager-automation-runbooks/latest/userguide/automation-awssupport-troubleshoot-managed-instance.html)".into()),
        ..Finding::new(account, region, kind, subject, severity, subject, title)
    }
    };
    let with_causes = |mut f: Finding, i: &AuditInstance, fallback: (&str, &str)| {
        let found = causes(i, iam, dhmc_role, net);
        if found.is_empty() {
            f.cause = Some(fallback.0.into());
            f.fix = Some(fallback.1.into());
        } else {
            f.cause = Some(found.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join("; "));
            f.fix = Some(found.iter().map(|(_, x)| x.as_str()).collect::<Vec<_>>().join("; "));
        }
        f.instances = vec![i.reference()];
        f
    };
    let running: Vec<&AuditInstance> = instances.iter().filter(|i| i.state == "running").collect();
    let by_id: BTreeMap<&str, &ManagedNode> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut out = Vec::new();
    let mut clones: BTreeMap<&str, &ManagedNode> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.id.starts_with("mi-")) {
        let twin = running.iter().find(|i| {
            n.ip_address.is_some() && n.ip_address == i.private_ip && !by_id.contains_key(i.id.as_str())
                || n.computer_name.is_some() && n.computer_name == i.private_dns && i.private_dns.is_some()
        });
        if let Some(i) = twin {
            clones.insert(i.id.as_str(), n);
        }
    }
    let mut no_profile = Vec::new();
    for i in &running {
        if i.profile_arn.is_none() {
            no_profile.push(i.reference());
        }
        let recent = i.launched_s.is_some_and(|t| rules.now_s - t < rules.grace_s);
        match (by_id.get(i.id.as_str()), clones.get(i.id.as_str())) {
            (_, Some(mi)) => {
                let mut f = finding(
                    "registered-as-mi",
                    &i.id,
                    Severity::High,
                    format!(
                        "{} registered with SSM as {} (another machine's registration)",
                        i.reference().label(),
                        mi.id
                    ),
                );
                f.evidence = vec![format!(
                    "{} has IP {} / computer name {}, the instance's",
                    mi.id,
                    mi.ip_address.as_deref().unwrap_or("?"),
                    mi.computer_name.as_deref().unwrap_or("?")
                )];
                f.instances = vec![i.reference()];
                f.cause = Some("the instance was launched from an image made of a machine registered with a hybrid activation: the image carries that registration, and the agent uses it instead of the instance identity".into());
                f.fix = Some(format!("on the instance: stop amazon-ssm-agent, delete the agent's registration state (/var/lib/amazon/ssm/registration and /var/lib/amazon/ssm/Vault on Linux; C:\\ProgramData\\Amazon\\SSM\\InstanceData\\registration on Windows), start the agent; then deregister {} (aws ssm deregister-managed-instance); clear the state in the image before the next build", mi.id));
                out.push(f);
            }
            (None, None) if recent => {}
            (None, None) => {
                let f = finding(
                    "unmanaged",
                    &i.id,
                    Severity::High,
                    format!("{} is running but SSM does not manage it", i.reference().label()),
                );
                out.push(with_causes(
                    f,
                    i,
                    (
                        "credentials and network look right: the agent is not installed, not running, or cannot start",
                        "install or start amazon-ssm-agent (systemctl status amazon-ssm-agent; Windows: Get-Service AmazonSSMAgent); its log is /var/log/amazon/ssm/amazon-ssm-agent.log",
                    ),
                ));
            }
            (Some(n), None) => match n.ping_status.as_str() {
                "ConnectionLost" => {
                    let mut f = finding(
                        "connection-lost",
                        &i.id,
                        Severity::High,
                        format!("{} is running but its SSM agent lost its connection", i.reference().label()),
                    );
                    f.evidence = vec![format!(
                        "last ping {}",
                        n.last_ping_s.map_or("never".to_string(), crate::time::format_utc)
                    )];
                    out.push(with_causes(
                        f,
                        i,
                        (
                            "credentials and network look right: the agent stopped, or the instance is impaired",
                            "check the instance's status checks and restart amazon-ssm-agent",
                        ),
                    ));
                }
                "Inactive" => {
                    let mut f = finding(
                        "inactive",
                        &i.id,
                        Severity::Medium,
                        format!("{} is listed Inactive by SSM", i.reference().label()),
                    );
                    f.instances = vec![i.reference()];
                    f.cause = Some("SSM has marked the node inactive (its registration is no longer used)".into());
                    f.fix = Some("restart amazon-ssm-agent so it registers again".into());
                    out.push(f);
                }
                _ => {}
            },
        }
    }
    let mut old = Vec::new();
    for n in nodes {
        if n.is_latest == Some(false) {
            old.push(n);
        }
        if n.id.starts_with("mi-") && !clones.values().any(|c| c.id == n.id) {
            let seen = n.last_ping_s.or(n.registered_s);
            let days = seen.map(|s| (rules.now_s - s) / 86_400);
            if n.ping_status != "Online" && days.is_none_or(|d| d >= rules.stale_days) {
                let mut f = finding(
                    "stale-registration",
                    &n.id,
                    Severity::Medium,
                    format!(
                        "hybrid node {} ({}) not seen for {}",
                        n.id,
                        n.computer_name.as_deref().or(n.ip_address.as_deref()).unwrap_or("?"),
                        days.map_or("ever".to_string(), |d| format!("{d} days"))
                    ),
                );
                f.evidence = vec![format!(
                    "ping status {}, last ping {}",
                    n.ping_status,
                    seen.map_or("never".to_string(), crate::time::format_utc)
                )];
                f.cause = Some("the machine is gone or its agent stopped; the registration stays until deregistered".into());
                f.fix = Some(format!(
                    "aws ssm deregister-managed-instance --instance-id {} (if the machine is gone)",
                    n.id
                ));
                out.push(f);
            }
        }
    }
    for n in old {
        let mut f = finding(
            "old-agent",
            &n.id,
            Severity::Low,
            format!(
                "{} runs SSM agent {}, not the latest",
                n.id,
                n.agent_version.as_deref().unwrap_or("?")
            ),
        );
        if let Some(i) = running.iter().find(|i| i.id == n.id) {
            f.instances = vec![i.reference()];
        }
        f.fix = Some("run AWS-UpdateSSMAgent on it (a State Manager association with AWS-UpdateSSMAgent keeps the fleet current)".into());
        out.push(f);
    }
    if !no_profile.is_empty() && dhmc_role.is_none() {
        let mut f = finding(
            "dhmc-off",
            "default-host-management",
            Severity::Low,
            format!(
                "Default Host Management Configuration is off, and {} running instance(s) have no instance profile",
                no_profile.len()
            ),
        );
        f.instances = no_profile;
        f.fix = Some("turn on Default Host Management Configuration (it gives instances without a profile SSM credentials; needs IMDSv2), or associate profiles".into());
        out.push(f);
    }
    let managed = running
        .iter()
        .filter(|i| by_id.get(i.id.as_str()).is_some_and(|n| n.ping_status == "Online"))
        .count();
    let counted = BTreeMap::from([
        ("running instances".to_string(), running.len()),
        ("managed and online".to_string(), managed),
        ("hybrid nodes".to_string(), nodes.iter().filter(|n| n.id.starts_with("mi-")).count()),
    ]);
    (out, counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::roles::RoleFacts;
    use serde_json::json;

    const NOW: i64 = 1_796_000_000;

    fn instance(id: &str, profile: Option<&str>) -> AuditInstance {
        AuditInstance {
            id: id.into(),
            name: Some(format!("{id}-name")),
            state: "running".into(),
            profile_arn: profile.map(|p| format!("arn:aws:iam::1:instance-profile/{p}")),
            platform: "linux".into(),
            launched_s: Some(NOW - 86_400),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-public".into()),
            private_ip: Some(format!("10.0.0.{}", id.len())),
            private_dns: None,
            public_ip: true,
            security_groups: vec!["sg-open".into()],
            imds_v2: false,
            ssm_fix_off: false,
        }
    }

    fn iam() -> IamFacts {
        let core = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".to_string();
        let role = |name: &str, attached: Vec<String>| RoleFacts {
            name: name.into(),
            arn: format!("arn:aws:iam::1:role/{name}"),
            boundary: None,
            attached,
            inline: BTreeMap::new(),
            profiles: vec![format!("arn:aws:iam::1:instance-profile/{name}")],
            trust: None,
        };
        IamFacts {
            roles: vec![role("ssm", vec![core.clone()]), role("bare", vec![])],
            managed: BTreeMap::from([(
                core,
                Some(
                    json!({"Statement": [{"Effect": "Allow", "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:*", "ec2messages:*"], "Resource": "*"}]}),
                ),
            )]),
        }
    }

    fn net() -> NetworkFacts {
        NetworkFacts {
            egress_443: BTreeMap::from([("sg-open".into(), true), ("sg-closed".into(), false)]),
            default_route: BTreeMap::from([("subnet-public".into(), Some("igw-1".into())), ("subnet-private".into(), None)]),
            endpoints: BTreeMap::from([("vpc-1".into(), vec!["ssm".into()])]),
        }
    }

    fn node(id: &str, status: &str) -> ManagedNode {
        ManagedNode {
            id: id.into(),
            ping_status: status.into(),
            last_ping_s: Some(NOW - 60),
            agent_version: Some("3.3.1000.0".into()),
            is_latest: Some(true),
            resource_type: if id.starts_with("mi-") { "ManagedInstance" } else { "EC2Instance" }.into(),
            ..ManagedNode::default()
        }
    }

    fn kinds(f: &[Finding]) -> Vec<(String, String)> {
        f.iter().map(|f| (f.kind.clone(), f.subject.clone())).collect()
    }

    #[test]
    fn each_state_gets_its_finding_with_a_cause_and_a_fix() {
        let healthy = instance("i-ok", Some("ssm"));
        let no_profile = instance("i-noprof", None);
        let bare_role = instance("i-bare", Some("bare"));
        let mut private = instance("i-private", Some("ssm"));
        private.subnet_id = Some("subnet-private".into());
        let mut closed = instance("i-closed", Some("ssm"));
        closed.security_groups = vec!["sg-closed".into()];
        let lost = instance("i-lost", Some("ssm"));
        let clone = instance("i-clone", Some("ssm"));
        let mut booting = instance("i-new", None);
        booting.launched_s = Some(NOW - 30);
        let mut old = node("i-ok", "Online");
        old.is_latest = Some(false);
        let mut mi_clone = node("mi-0123456789abcdef0", "Online");
        mi_clone.ip_address = clone.private_ip.clone();
        let mut stale = node("mi-0fedcba9876543210", "ConnectionLost");
        stale.last_ping_s = Some(NOW - 40 * 86_400);
        stale.computer_name = Some("old-laptop".into());
        let nodes = vec![old, node("i-lost", "ConnectionLost"), mi_clone, stale];
        let all = [healthy, no_profile, bare_role, private, closed, lost, clone, booting];
        let facts = HealthFacts {
            instances: all.to_vec(),
            nodes,
            iam: iam(),
            dhmc_role: None,
            net: net(),
        };
        let (f, counted) = findings("1", "eu-west-1", &facts, HealthRules::new(NOW));
        let k = kinds(&f);
        assert_eq!(
            k,
            [
                ("unmanaged", "i-noprof"),
                ("unmanaged", "i-bare"),
                ("unmanaged", "i-private"),
                ("unmanaged", "i-closed"),
                ("connection-lost", "i-lost"),
                ("registered-as-mi", "i-clone"),
                ("stale-registration", "mi-0fedcba9876543210"),
                ("old-agent", "i-ok"),
                ("dhmc-off", "default-host-management"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
            "the booting instance is in its grace period"
        );
        let cause = |id: &str| f.iter().find(|x| x.subject == id).unwrap().cause.clone().unwrap();
        assert!(cause("i-noprof").contains("Default Host Management Configuration is off"));
        assert!(cause("i-bare").contains("role bare does not allow ssm:UpdateInstanceInformation"));
        assert!(
            cause("i-private").contains("subnet subnet-private has no route out"),
            "{}",
            cause("i-private")
        );
        assert!(cause("i-private").contains("com.amazonaws.<region>.ssmmessages, com.amazonaws.<region>.ec2messages"));
        assert!(cause("i-closed").contains("outbound TCP 443"));
        assert!(cause("i-lost").contains("the agent stopped"), "nothing seen from outside");
        let clone_fix = f.iter().find(|x| x.kind == "registered-as-mi").unwrap().fix.clone().unwrap();
        assert!(clone_fix.contains("/var/lib/amazon/ssm/registration") && clone_fix.contains("deregister"));
        assert!(f.iter().all(|x| x.fix.is_some()), "every finding says what to do");
        assert_eq!(counted["managed and online"], 1);
        assert_eq!(counted["hybrid nodes"], 2);
    }

    #[test]
    fn dhmc_gives_credentials_only_with_imdsv2() {
        let mut v1 = instance("i-v1", None);
        v1.imds_v2 = false;
        let mut v2 = instance("i-v2", None);
        v2.imds_v2 = true;
        let c1 = causes(&v1, &iam(), Some("AWSSystemsManagerDefaultEC2InstanceManagementRole"), &net());
        assert!(c1[0].0.contains("needs IMDSv2"));
        assert!(causes(&v2, &iam(), Some("AWSSystemsManagerDefaultEC2InstanceManagementRole"), &net()).is_empty());
        let facts = HealthFacts {
            instances: vec![v2],
            iam: iam(),
            dhmc_role: Some("role".into()),
            net: net(),
            ..HealthFacts::default()
        };
        let (f, _) = findings("1", "r", &facts, HealthRules::new(NOW));
        assert!(f.iter().all(|f| f.kind != "dhmc-off"));
    }
}
