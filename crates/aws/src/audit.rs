//! The audits' readers ([`AuditFleet`], [`AuditAdapter`]): EC2 DescribeInstances and IAM
//! GetAccountAuthorizationDetails (roles and customer managed policies, every page), then
//! GetPolicy + GetPolicyVersion for the AWS managed policies and boundaries the roles reference
//! (the listing of every AWS managed policy would be a thousand documents for a handful used);
//! for SSM fleet health, DescribeInstanceInformation, GetServiceSetting (Default Host
//! Management Configuration) and the instances' route tables, VPC endpoints and security groups.
//!
//! Every account, the central one too, is read through its member audit role
//! (`opsflow-member-audit` of infra/member-account.yaml: read only, trusted only from the
//! central audit function's role path, with the ExternalId), assumed by the function itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::Filter;
use aws_sdk_iam::types::EntityType;
use opsflow_core::audit::ssm::{ManagedNode, NetworkFacts};
use opsflow_core::audit::{AuditInstance, IamFacts, RoleFacts};
use opsflow_core::ports::{AuditReader, Auditors};
use opsflow_core::CoreError;
use serde_json::Value;

use crate::error::{from_sdk_error, unexpected};
use crate::runbook::partition;

/// The session name the member accounts' CloudTrail shows for the audits.
pub const AUDIT_SESSION: &str = "opsflow-audit";
/// The tag that keeps an instance out of fleet health's automatic fix (the fix role's IAM
/// condition names it too).
pub const SSM_FIX_OPT_OUT: (&str, &str) = ("opsflow:ssm-fix", "off");
/// The session name of the fix role, as member accounts' CloudTrail shows it.
pub const FIX_SESSION: &str = "opsflow-ssmfix";

/// The member accounts, read only.
#[derive(Clone)]
pub struct AuditFleet {
    base: aws_config::SdkConfig,
    role_name: String,
    /// The member accounts' fix role (fleet health's automatic fix).
    fix_role_name: String,
    external_id: String,
    readers: Arc<Mutex<HashMap<(String, String), AuditAdapter>>>,
}

impl std::fmt::Debug for AuditFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFleet")
            .field("role_name", &self.role_name)
            .finish_non_exhaustive()
    }
}

impl AuditFleet {
    pub fn new(base: &aws_config::SdkConfig, role_name: &str, external_id: &str) -> AuditFleet {
        AuditFleet {
            base: base.clone(),
            role_name: role_name.to_string(),
            fix_role_name: "opsflow-member-ssmfix".to_string(),
            external_id: external_id.to_string(),
            readers: Arc::default(),
        }
    }

    /// The member accounts' fix role is `role_name` (default `opsflow-member-ssmfix`).
    pub fn with_fix_role(mut self, role_name: &str) -> AuditFleet {
        self.fix_role_name = role_name.to_string();
        self
    }

    /// From `AUDIT_ROLE_NAME` (default `opsflow-member-audit`) and `MEMBER_EXTERNAL_ID` (required).
    pub fn from_env(base: &aws_config::SdkConfig) -> Result<AuditFleet, CoreError> {
        let role = std::env::var("AUDIT_ROLE_NAME")
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "opsflow-member-audit".to_string());
        let external_id = std::env::var("MEMBER_EXTERNAL_ID")
            .ok()
            .filter(|x| !x.is_empty())
            .ok_or_else(|| CoreError::invalid("MEMBER_EXTERNAL_ID", "is required: the ExternalId of the member roles"))?;
        let fleet = AuditFleet::new(base, &role, &external_id);
        Ok(match std::env::var("SSM_FIX_ROLE_NAME").ok().filter(|r| !r.is_empty()) {
            Some(fix_role) => fleet.with_fix_role(&fix_role),
            None => fleet,
        })
    }

    pub fn role_arn(&self, account: &str, region: &str) -> String {
        format!("arn:{}:iam::{account}:role/{}", partition(region), self.role_name)
    }
}

impl Auditors for AuditFleet {
    type Reader = AuditAdapter;
    type Fixer = crate::Ec2Adapter;

    /// A session of the fix role (not cached: the fix is rare, and the read role's cache stays
    /// read-only).
    async fn fixer(&self, account: &str, region: &str) -> Result<crate::Ec2Adapter, CoreError> {
        let role_arn = format!("arn:{}:iam::{account}:role/{}", partition(region), self.fix_role_name);
        let config = crate::member::assumed_config(&self.base, &role_arn, &self.external_id, FIX_SESSION, region).await?;
        Ok(crate::Ec2Adapter::new(aws_sdk_ec2::Client::new(&config)))
    }

    async fn reader(&self, account: &str, region: &str) -> Result<AuditAdapter, CoreError> {
        let key = (account.to_string(), region.to_string());
        if let Some(r) = self.readers.lock().expect("readers").get(&key) {
            return Ok(r.clone());
        }
        let role_arn = self.role_arn(account, region);
        let config = crate::member::assumed_config(&self.base, &role_arn, &self.external_id, AUDIT_SESSION, region).await?;
        let reader = AuditAdapter::new(&config);
        self.readers.lock().expect("readers").insert(key, reader.clone());
        Ok(reader)
    }
}

/// One account and region.
#[derive(Clone, Debug)]
pub struct AuditAdapter {
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    ssm: aws_sdk_ssm::Client,
}

impl AuditAdapter {
    pub fn new(config: &aws_config::SdkConfig) -> AuditAdapter {
        AuditAdapter {
            ec2: aws_sdk_ec2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }

    /// The default version's document of a managed policy; None when IAM refuses or lacks it.
    async fn managed_document(&self, arn: &str) -> Result<Option<Value>, CoreError> {
        let policy = match self.iam.get_policy().policy_arn(arn).send().await {
            Ok(out) => out.policy,
            Err(e) => return absent_or(e, "GetPolicy"),
        };
        let Some(version) = policy.and_then(|p| p.default_version_id) else {
            return Ok(None);
        };
        match self.iam.get_policy_version().policy_arn(arn).version_id(version).send().await {
            Ok(out) => Ok(out.policy_version.and_then(|v| v.document).and_then(|d| policy_document(&d))),
            Err(e) => absent_or(e, "GetPolicyVersion"),
        }
    }
}

/// NoSuchEntity or AccessDenied: the document is unknown (the audit says so); anything else
/// fails the scan (a retry may do better).
fn absent_or<E>(e: aws_sdk_iam::error::SdkError<E, aws_sdk_iam::config::http::HttpResponse>, op: &str) -> Result<Option<Value>, CoreError>
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match from_sdk_error(op, &e) {
        CoreError::NotFound { .. } | CoreError::AccessDenied { .. } | CoreError::Forbidden { .. } => Ok(None),
        other => Err(other),
    }
}

/// GetAccountAuthorizationDetails, every page: the account's roles (policies, boundary, trust,
/// instance profiles) and its customer managed policies' default documents (None: unreadable).
/// The audits and the alert lookups both read IAM here.
pub async fn authorization_details(iam: &aws_sdk_iam::Client) -> Result<IamFacts, CoreError> {
    const OP: &str = "GetAccountAuthorizationDetails";
    let mut facts = IamFacts::default();
    let mut marker: Option<String> = None;
    loop {
        let out = iam
            .get_account_authorization_details()
            .filter(EntityType::Role)
            .filter(EntityType::LocalManagedPolicy)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        for policy in out.policies() {
            let default = policy.policy_version_list().iter().find(|v| v.is_default_version());
            if let Some(arn) = policy.arn() {
                facts
                    .managed
                    .insert(arn.to_string(), default.and_then(|v| v.document()).and_then(policy_document));
            }
        }
        for role in out.role_detail_list() {
            let (Some(name), Some(arn)) = (role.role_name(), role.arn()) else {
                continue;
            };
            facts.roles.push(RoleFacts {
                name: name.to_string(),
                arn: arn.to_string(),
                boundary: role
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_string),
                attached: role
                    .attached_managed_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn())
                    .map(str::to_string)
                    .collect(),
                inline: role
                    .role_policy_list()
                    .iter()
                    .filter_map(|p| Some((p.policy_name()?.to_string(), policy_document(p.policy_document()?)?)))
                    .collect::<BTreeMap<_, _>>(),
                profiles: role.instance_profile_list().iter().map(|p| p.arn().to_string()).collect(),
                trust: role.assume_role_policy_document().and_then(policy_document),
            });
        }
        match (out.is_truncated(), out.marker()) {
            (true, Some(next)) => marker = Some(next.to_string()),
            (true, None) => return Err(unexpected(OP, "truncated without a Marker")),
            _ => break,
        }
    }
    Ok(facts)
}

/// IAM answers policy documents URL-encoded (RFC 3986); some SDKs decode them, ours does not.
pub fn policy_document(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(text).decode_utf8().ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

/// Default Host Management Configuration's setting (SSM user guide, "Managing EC2 instances
/// with Default Host Management Configuration").
pub const DHMC_SETTING: &str = "/ssm/managed-instance/default-ec2-instance-management-role";

impl AuditReader for AuditAdapter {
    async fn managed_nodes(&self) -> Result<Vec<ManagedNode>, CoreError> {
        const OP: &str = "DescribeInstanceInformation";
        let mut pages = self.ssm.describe_instance_information().max_results(50).into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error(OP, &e))?;
            for n in page.instance_information_list() {
                let Some(id) = n.instance_id() else { continue };
                found.push(ManagedNode {
                    id: id.to_string(),
                    ping_status: n.ping_status().map_or("Unknown", |p| p.as_str()).to_string(),
                    last_ping_s: n.last_ping_date_time().map(|t| t.secs()),
                    agent_version: n.agent_version().map(str::to_string),
                    is_latest: n.is_latest_version(),
                    resource_type: n.resource_type().map_or("", |r| r.as_str()).to_string(),
                    ip_address: n.ip_address().map(str::to_string),
                    computer_name: n.computer_name().map(str::to_string),
                    registered_s: n.registration_date().map(|t| t.secs()),
                });
            }
        }
        Ok(found)
    }

    /// GetServiceSetting; a value that is not a role name (`$None`, empty) is off.
    async fn dhmc_role(&self) -> Result<Option<String>, CoreError> {
        const OP: &str = "GetServiceSetting";
        let out = self
            .ssm
            .get_service_setting()
            .setting_id(DHMC_SETTING)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(out
            .service_setting()
            .and_then(|s| s.setting_value())
            .map(str::trim)
            .filter(|v| !v.is_empty() && !v.starts_with('$'))
            .map(str::to_string))
    }

    async fn network(&self, instances: &[AuditInstance]) -> Result<NetworkFacts, CoreError> {
        let mut net = NetworkFacts::default();
        let vpcs: BTreeSet<&str> = instances.iter().filter_map(|i| i.vpc_id.as_deref()).collect();
        let subnets: BTreeSet<&str> = instances.iter().filter_map(|i| i.subnet_id.as_deref()).collect();
        let groups: BTreeSet<&str> = instances
            .iter()
            .flat_map(|i| i.security_groups.iter().map(String::as_str))
            .collect();
        if vpcs.is_empty() {
            return Ok(net);
        }
        let vpc_filter = || {
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(vpcs.iter().map(|v| v.to_string()).collect()))
                .build()
        };
        // Route tables: a subnet's own, else its VPC's main table.
        let mut own: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut main: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut pages = self.ec2.describe_route_tables().filters(vpc_filter()).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error("DescribeRouteTables", &e))?;
            for t in page.route_tables() {
                let default = t
                    .routes()
                    .iter()
                    .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0") && r.state().is_none_or(|s| s.as_str() == "active"))
                    .and_then(|r| {
                        r.nat_gateway_id()
                            .or(r.gateway_id())
                            .or(r.transit_gateway_id())
                            .or(r.network_interface_id())
                    })
                    .map(str::to_string);
                for a in t.associations() {
                    if a.main() == Some(true) {
                        if let Some(v) = t.vpc_id() {
                            main.insert(v.to_string(), default.clone());
                        }
                    } else if let Some(sub) = a.subnet_id() {
                        own.insert(sub.to_string(), default.clone());
                    }
                }
            }
        }
        for i in instances {
            if let (Some(sub), Some(vpc)) = (&i.subnet_id, &i.vpc_id) {
                if subnets.contains(sub.as_str()) {
                    let route = own.get(sub).cloned().or_else(|| main.get(vpc).cloned());
                    if let Some(route) = route {
                        net.default_route.insert(sub.clone(), route);
                    }
                }
            }
        }
        let mut pages = self.ec2.describe_vpc_endpoints().filters(vpc_filter()).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error("DescribeVpcEndpoints", &e))?;
            for e in page.vpc_endpoints() {
                let available = e.state().is_some_and(|s| s.as_str().eq_ignore_ascii_case("available"));
                if let (true, Some(vpc), Some(service)) = (available, e.vpc_id(), e.service_name()) {
                    // com.amazonaws.<region>.ssm → ssm
                    let short = service.rsplit('.').next().unwrap_or(service).to_string();
                    net.endpoints.entry(vpc.to_string()).or_default().push(short);
                }
            }
        }
        if !groups.is_empty() {
            let ids: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let out = self
                .ec2
                .describe_security_groups()
                .set_group_ids(Some(ids))
                .send()
                .await
                .map_err(|e| from_sdk_error("DescribeSecurityGroups", &e))?;
            for g in out.security_groups() {
                let open = g.ip_permissions_egress().iter().any(|p| {
                    let proto = p.ip_protocol().unwrap_or_default();
                    let port =
                        proto == "-1" || (proto == "tcp" && p.from_port().unwrap_or(0) <= 443 && p.to_port().unwrap_or(65535) >= 443);
                    let anywhere = p.ip_ranges().iter().any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
                        || !p.user_id_group_pairs().is_empty()
                        || !p.prefix_list_ids().is_empty();
                    port && anywhere
                });
                if let Some(id) = g.group_id() {
                    net.egress_443.insert(id.to_string(), open);
                }
            }
        }
        Ok(net)
    }

    async fn instances(&self) -> Result<Vec<AuditInstance>, CoreError> {
        const OP: &str = "DescribeInstances";
        let filter = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(["pending", "running", "stopping", "stopped"].map(String::from).to_vec()))
            .build();
        let mut pages = self.ec2.describe_instances().filters(filter).into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error(OP, &e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                found.push(AuditInstance {
                    id: id.to_string(),
                    name: i
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some("Name"))
                        .and_then(|t| t.value())
                        .map(str::to_string),
                    state: i.state().and_then(|s| s.name()).map_or("unknown", |n| n.as_str()).to_string(),
                    profile_arn: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string),
                    platform: if i.platform().is_some_and(|p| p.as_str().eq_ignore_ascii_case("windows")) {
                        "windows".into()
                    } else {
                        "linux".into()
                    },
                    launched_s: i.launch_time().map(|t| t.secs()),
                    vpc_id: i.vpc_id().map(str::to_string),
                    subnet_id: i.subnet_id().map(str::to_string),
                    private_ip: i.private_ip_address().map(str::to_string),
                    private_dns: i.private_dns_name().filter(|d| !d.is_empty()).map(str::to_string),
                    public_ip: i.public_ip_address().is_some_and(|p| !p.is_empty()),
                    security_groups: i
                        .security_groups()
                        .iter()
                        .filter_map(|g| g.group_id())
                        .map(str::to_string)
                        .collect(),
                    imds_v2: i
                        .metadata_options()
                        .and_then(|m| m.http_tokens())
                        .is_some_and(|t| t.as_str() == "required"),
                    ssm_fix_off: i
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(SSM_FIX_OPT_OUT.0) && t.value() == Some(SSM_FIX_OPT_OUT.1)),
                });
            }
        }
        Ok(found)
    }

    async fn iam(&self) -> Result<IamFacts, CoreError> {
        let mut facts = authorization_details(&self.iam).await?;
        let mut referenced: Vec<String> = facts
            .roles
            .iter()
            .flat_map(|r| r.attached.iter().chain(r.boundary.iter()))
            .filter(|arn| !facts.managed.contains_key(*arn))
            .cloned()
            .collect();
        referenced.sort();
        referenced.dedup();
        for arn in referenced {
            let doc = self.managed_document(&arn).await?;
            facts.managed.insert(arn, doc);
        }
        Ok(facts)
    }
}
