//! Drift alerts: a CloudTrail management event that changes what an instance's role may do, or
//! which profile an instance has, re-evaluates the running instances it touches; when their
//! risk changed, one alert says who did it, when, what, before → after, and on which instances.
//!
//! The events (EventBridge "AWS API Call via CloudTrail"; IAM's are delivered in us-east-1
//! only, EC2's in their Region):
//! - a role's permissions: AttachRolePolicy, DetachRolePolicy, PutRolePolicy, DeleteRolePolicy,
//!   PutRolePermissionsBoundary, DeleteRolePermissionsBoundary, and its trust policy:
//!   UpdateAssumeRolePolicy (who else may assume it);
//! - a managed policy's default version: CreatePolicyVersion (with setAsDefault),
//!   SetDefaultPolicyVersion, for every role it is attached to or bounds;
//! - a profile's role: AddRoleToInstanceProfile, RemoveRoleFromInstanceProfile;
//! - an instance's profile: AssociateIamInstanceProfile, ReplaceIamInstanceProfileAssociation,
//!   DisassociateIamInstanceProfile.
//!
//! *Before* is the scope's last known state (`audit/roles/state/<account>/<region>.json`), which
//! the daily audit's scan writes and every drift evaluation rewrites from fresh reads; *after*
//! is what the role's policies allow now. A change that moves no instance's verdict (a policy
//! on a role no running instance carries, a grant that opens no path) sends nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::report::Severity;
use super::roles::{assess, AuditInstance, IamFacts, RoleFacts};
use crate::alert::render::{ascii_line, limit, message, SMS_MAX, SUBJECT_MAX};
use crate::alert::Publication;
use crate::error::CoreError;

/// The alert's schema name.
pub const SCHEMA: &str = "opsflow.role-drift/1";

/// What a role's credentials allow, as the drift compares it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskView {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    #[serde(default)]
    pub escalations: Vec<String>,
    /// The SSM agent can register and receive commands.
    pub ssm: bool,
    /// Who besides EC2 may assume the role.
    #[serde(default)]
    pub trusted: Vec<String>,
}

impl RiskView {
    pub fn of(role: &RoleFacts, iam: &IamFacts) -> RiskView {
        let risk = assess(role, iam);
        RiskView {
            role: role.arn.clone(),
            admin: risk.admin.clone(),
            escalations: risk.escalations.iter().map(|(id, _)| id.clone()).collect(),
            ssm: risk.ssm_missing.is_empty(),
            trusted: role.trusted_beyond_ec2(),
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let name = self.role.rsplit('/').next().unwrap_or(&self.role);
        let mut parts = Vec::new();
        match (&self.admin, self.escalations.len()) {
            (Some(why), _) => parts.push(format!("ADMIN ({why})")),
            (None, 0) => parts.push("no admin or escalation path".into()),
            (None, _) => parts.push(format!("can escalate: {}", self.escalations.join(", "))),
        }
        if !self.ssm && self.admin.is_none() {
            parts.push("cannot talk to SSM".into());
        }
        if !self.trusted.is_empty() {
            parts.push(format!("also assumable by {}", self.trusted.join(", ")));
        }
        format!("role {name}: {}", parts.join("; "))
    }

    fn rank(&self) -> u8 {
        match (&self.admin, self.escalations.is_empty()) {
            (Some(_), _) => 3,
            (None, false) => 2,
            _ => 1,
        }
    }
}

/// An instance as the state keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One scope's last known state: its running instances' profiles and roles, and each of those
/// roles' verdict.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeState {
    pub account: String,
    pub region: String,
    pub at: String,
    pub instances: BTreeMap<String, InstanceState>,
    pub roles: BTreeMap<String, RiskView>,
}

impl ScopeState {
    pub fn of(account: &str, region: &str, at: &str, instances: &[AuditInstance], iam: &IamFacts) -> ScopeState {
        let mut state = ScopeState {
            account: account.into(),
            region: region.into(),
            at: at.into(),
            ..ScopeState::default()
        };
        for i in instances.iter().filter(|i| i.state == "running") {
            let role = i.profile_arn.as_deref().and_then(|p| iam.role_of_profile(p));
            if let Some(r) = role {
                state.roles.entry(r.arn.clone()).or_insert_with(|| RiskView::of(r, iam));
            }
            state.instances.insert(
                i.id.clone(),
                InstanceState {
                    name: i.name.clone(),
                    profile: i.profile_arn.clone(),
                    role: role.map(|r| r.arn.clone()),
                },
            );
        }
        state
    }

    /// The verdict on an instance: its role's, None without a role.
    pub fn view_of(&self, instance: &str) -> Option<&RiskView> {
        self.instances.get(instance)?.role.as_ref().and_then(|r| self.roles.get(r))
    }
}

/// The S3 key of a scope's state.
pub fn state_key(account: &str, region: &str) -> String {
    format!("audit/roles/state/{account}/{region}.json")
}

/// Who made the call (CloudTrail's `userIdentity`, and where from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Who {
    pub identity_type: String,
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Who {
    fn line(&self) -> String {
        let mut s = format!("{} ({}", self.arn, self.identity_type);
        if let Some(role) = &self.via_role {
            s += &format!(", session of {role}");
        }
        s += ")";
        if let Some(ip) = &self.source_ip {
            s += &format!(" from {ip}");
        }
        s
    }

    /// The short name for a subject line: the session or user name.
    fn short(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }
}

/// A CloudTrail management event.
#[derive(Clone, Debug, PartialEq)]
pub struct TrailEvent {
    pub event_id: String,
    pub name: String,
    pub time: String,
    pub account: String,
    pub region: String,
    pub who: Who,
    pub request: Value,
    pub response: Value,
    pub error_code: Option<String>,
}

impl TrailEvent {
    /// From the EventBridge event (`detail` is the CloudTrail record).
    pub fn parse(event: &Value) -> Result<TrailEvent, CoreError> {
        let d = event
            .get("detail")
            .filter(|d| d.is_object())
            .ok_or_else(|| CoreError::invalid("detail", "is required: the CloudTrail record"))?;
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let need = |k: &str| s(d, k).ok_or_else(|| CoreError::invalid(format!("detail.{k}"), "is required"));
        let u = d.get("userIdentity").cloned().unwrap_or(Value::Null);
        let account = s(d, "recipientAccountId")
            .or_else(|| s(event, "account"))
            .ok_or_else(|| CoreError::invalid("account", "is required"))?;
        Ok(TrailEvent {
            event_id: need("eventID")?,
            name: need("eventName")?,
            time: need("eventTime")?,
            region: need("awsRegion")?,
            account,
            who: Who {
                identity_type: s(&u, "type").unwrap_or_else(|| "Unknown".into()),
                arn: s(&u, "arn")
                    .or_else(|| s(&u, "invokedBy"))
                    .or_else(|| s(&u, "principalId"))
                    .unwrap_or_else(|| "unknown".into()),
                via_role: u
                    .pointer("/sessionContext/sessionIssuer/arn")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                source_ip: s(d, "sourceIPAddress"),
                user_agent: s(d, "userAgent"),
            },
            request: d.get("requestParameters").cloned().unwrap_or(Value::Null),
            response: d.get("responseElements").cloned().unwrap_or(Value::Null),
            error_code: s(d, "errorCode"),
        })
    }

    fn req(&self, key: &str) -> Option<&str> {
        self.request.get(key).and_then(Value::as_str)
    }

    /// What the call changed.
    pub fn change(&self) -> Change {
        let ec2 = |action: &str| {
            self.request
                .pointer(&format!("/{action}Request/InstanceId"))
                .or_else(|| {
                    self.response
                        .pointer(&format!("/{action}Response/iamInstanceProfileAssociation/instanceId"))
                })
                .and_then(Value::as_str)
                .map(|i| Change::Instance(i.to_string()))
                .unwrap_or_else(|| Change::Ignored(format!("{} without an instance id", self.name)))
        };
        match self.name.as_str() {
            "AttachRolePolicy"
            | "DetachRolePolicy"
            | "PutRolePolicy"
            | "DeleteRolePolicy"
            | "PutRolePermissionsBoundary"
            | "DeleteRolePermissionsBoundary"
            | "UpdateAssumeRolePolicy" => match self.req("roleName") {
                Some(r) => Change::Role(r.to_string()),
                None => Change::Ignored(format!("{} without roleName", self.name)),
            },
            "CreatePolicyVersion" if self.request.get("setAsDefault") != Some(&Value::Bool(true)) => {
                Change::Ignored("a new policy version that is not the default changes nothing".into())
            }
            "CreatePolicyVersion" | "SetDefaultPolicyVersion" => match self.req("policyArn") {
                Some(p) => Change::Policy(p.to_string()),
                None => Change::Ignored(format!("{} without policyArn", self.name)),
            },
            "AddRoleToInstanceProfile" | "RemoveRoleFromInstanceProfile" => match self.req("instanceProfileName") {
                Some(p) => Change::Profile(p.to_string()),
                None => Change::Ignored(format!("{} without instanceProfileName", self.name)),
            },
            "AssociateIamInstanceProfile" => ec2("AssociateIamInstanceProfile"),
            "ReplaceIamInstanceProfileAssociation" => ec2("ReplaceIamInstanceProfileAssociation"),
            "DisassociateIamInstanceProfile" => ec2("DisassociateIamInstanceProfile"),
            other => Change::Ignored(format!("{other} does not change an instance's role")),
        }
    }

    /// The call in one line: its name and request parameters (documents left out).
    pub fn what(&self) -> String {
        let params: Vec<String> = match &self.request {
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| !k.ends_with("Document"))
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect(),
            _ => Vec::new(),
        };
        format!("{} {}", self.name, params.join(" "))
    }
}

/// What a call touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A role's policies, boundary or trust (its name).
    Role(String),
    /// A managed policy's default version (its ARN).
    Policy(String),
    /// An instance profile's role (the profile's name).
    Profile(String),
    /// An instance's profile association (its id).
    Instance(String),
    Ignored(String),
}

/// Which running instances of a scope the change touches, now or before.
pub fn affected(change: &Change, before: Option<&ScopeState>, instances: &[AuditInstance], iam: &IamFacts) -> Vec<String> {
    let name_of = |arn: &str| arn.rsplit('/').next().unwrap_or(arn).to_string();
    let role_now = |i: &AuditInstance| i.profile_arn.as_deref().and_then(|p| iam.role_of_profile(p));
    let mut ids: Vec<String> = instances
        .iter()
        .filter(|i| i.state == "running")
        .filter(|i| match change {
            Change::Role(role) => role_now(i).is_some_and(|r| &r.name == role),
            Change::Policy(arn) => {
                role_now(i).is_some_and(|r| r.attached.iter().any(|a| a == arn) || r.boundary.as_deref() == Some(arn.as_str()))
            }
            Change::Profile(profile) => i.profile_arn.as_deref().is_some_and(|p| &name_of(p) == profile),
            Change::Instance(id) => &i.id == id,
            Change::Ignored(_) => false,
        })
        .map(|i| i.id.clone())
        .collect();
    // Those that carried the role or profile before (it was removed from them since).
    if let Some(state) = before {
        for (id, s) in &state.instances {
            let was = match change {
                Change::Role(role) => s.role.as_deref().is_some_and(|r| &name_of(r) == role),
                Change::Profile(profile) => s.profile.as_deref().is_some_and(|p| &name_of(p) == profile),
                _ => false,
            };
            if was && instances.iter().any(|i| &i.id == id && i.state == "running") {
                ids.push(id.clone());
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// One instance's verdict before and after.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDrift {
    pub instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub region: String,
    /// None: not known (the scope was never audited), or no role.
    pub before: Option<RiskView>,
    pub after: Option<RiskView>,
    /// The state the before comes from (its time), None if never audited.
    pub known_since: Option<String>,
}

impl InstanceDrift {
    /// Whether this is worth an alert: the verdict changed, or (never audited) it is risky now.
    pub fn changed(&self) -> bool {
        match (&self.known_since, &self.before, &self.after) {
            (None, _, Some(after)) => after.rank() > 1,
            (None, _, None) => false,
            (Some(_), before, after) => before != after,
        }
    }

    fn side(view: &Option<RiskView>) -> String {
        view.as_ref().map_or("no role (no credentials)".into(), RiskView::line)
    }
}

/// The drift alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftAlert {
    pub schema: &'static str,
    pub account: String,
    pub event: String,
    pub event_id: String,
    pub at: String,
    pub who: Who,
    pub what: String,
    pub severity: Severity,
    pub instances: Vec<InstanceDrift>,
}

impl DriftAlert {
    pub fn new(e: &TrailEvent, instances: Vec<InstanceDrift>) -> DriftAlert {
        let severity = instances
            .iter()
            .map(|d| {
                let (before, after) = (
                    d.before.as_ref().map_or(1, RiskView::rank),
                    d.after.as_ref().map_or(1, RiskView::rank),
                );
                match after {
                    3 if before < 3 => Severity::Critical,
                    2 if before < 2 => Severity::High,
                    _ if after < before => Severity::Low,
                    _ => Severity::Medium,
                }
            })
            .min()
            .unwrap_or(Severity::Low);
        DriftAlert {
            schema: SCHEMA,
            account: e.account.clone(),
            event: e.name.clone(),
            event_id: e.event_id.clone(),
            at: e.time.clone(),
            who: e.who.clone(),
            what: e.what(),
            severity,
            instances,
        }
    }

    pub fn publication(&self) -> Publication {
        let first = &self.instances[0];
        let verdict = match &first.after {
            Some(v) if v.admin.is_some() => "now ADMIN".to_string(),
            Some(v) if !v.escalations.is_empty() => "can now escalate".to_string(),
            _ => "risk changed".to_string(),
        };
        let subject = limit(
            &ascii_line(&format!(
                "opsflow drift [{}]: {} instance{} {verdict} ({} by {})",
                self.severity.as_str(),
                self.instances.len(),
                if self.instances.len() == 1 { "" } else { "s" },
                self.event,
                self.who.short()
            )),
            SUBJECT_MAX,
        );
        let mut text = format!(
            "{subject}\n\nAccount: {}\nWhat:    {}\nWho:     {}\nWhen:    {} (CloudTrail event {})\n",
            self.account,
            self.what,
            self.who.line(),
            self.at,
            self.event_id
        );
        for d in &self.instances {
            text += &format!(
                "\n{} ({}){}\n  before: {}{}\n  after:  {}\n",
                d.instance_id,
                d.region,
                d.name.as_deref().map(|n| format!(" {n}")).unwrap_or_default(),
                if d.known_since.is_some() {
                    InstanceDrift::side(&d.before)
                } else {
                    "not known (never audited)".into()
                },
                d.known_since.as_deref().map(|t| format!(" [as of {t}]")).unwrap_or_default(),
                InstanceDrift::side(&d.after)
            );
        }
        let body = serde_json::to_value(self).unwrap_or(Value::Null);
        Publication {
            message: message(&text, &limit(&subject, SMS_MAX), &body),
            subject,
            attributes: BTreeMap::from([
                ("check".to_string(), "role-drift".to_string()),
                ("severity".to_string(), self.severity.as_str().to_string()),
                ("account".to_string(), self.account.clone()),
            ]),
        }
    }
}

/// The drift of one scope: each affected instance's before (from `before`) and after (fresh).
pub fn drift_in_scope(
    region: &str,
    change: &Change,
    before: Option<&ScopeState>,
    instances: &[AuditInstance],
    iam: &IamFacts,
) -> Vec<InstanceDrift> {
    affected(change, before, instances, iam)
        .into_iter()
        .filter_map(|id| {
            let i = instances.iter().find(|i| i.id == id)?;
            let after = i
                .profile_arn
                .as_deref()
                .and_then(|p| iam.role_of_profile(p))
                .map(|r| RiskView::of(r, iam));
            Some(InstanceDrift {
                instance_id: id.clone(),
                name: i.name.clone(),
                region: region.to_string(),
                before: before.and_then(|s| s.view_of(&id)).cloned(),
                after,
                known_since: before.map(|s| s.at.clone()),
            })
        })
        .filter(InstanceDrift::changed)
        .collect()
}

/// The drift handler's summary of what it did (the function's result).
pub fn outcome(e: &TrailEvent, alerted: Option<&str>, instances: usize, note: &str) -> Value {
    json!({"EventId": e.event_id, "Event": e.name, "Account": e.account, "Alerted": alerted, "Instances": instances, "Note": note})
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111111111111";

    fn event(name: &str, request: Value) -> Value {
        json!({"version": "0", "id": "e1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "account": ACCOUNT,
               "time": "2026-12-06T10:00:00Z", "region": "us-east-1", "resources": [],
               "detail": {"eventVersion": "1.08", "eventID": "ev-1", "eventName": name, "eventTime": "2026-12-06T10:00:00Z",
                          "eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.5",
                          "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111111111111:assumed-role/dev/alice",
                                           "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111111111111:role/dev"}}},
                          "requestParameters": request, "responseElements": null, "recipientAccountId": ACCOUNT}})
    }

    fn iam(admin: bool) -> IamFacts {
        let admin_arn = "arn:aws:iam::aws:policy/AdministratorAccess".to_string();
        IamFacts {
            roles: vec![RoleFacts {
                name: "web".into(),
                arn: format!("arn:aws:iam::{ACCOUNT}:role/web"),
                boundary: None,
                attached: if admin { vec![admin_arn.clone()] } else { vec![] },
                inline: BTreeMap::new(),
                profiles: vec![format!("arn:aws:iam::{ACCOUNT}:instance-profile/web")],
                trust: None,
            }],
            managed: BTreeMap::from([(
                admin_arn,
                Some(json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}})),
            )]),
        }
    }

    fn instances() -> Vec<AuditInstance> {
        ["i-1", "i-2"]
            .iter()
            .map(|id| AuditInstance {
                id: id.to_string(),
                name: Some(format!("web-{id}")),
                state: if *id == "i-2" { "stopped".into() } else { "running".into() },
                profile_arn: Some(format!("arn:aws:iam::{ACCOUNT}:instance-profile/web")),
                platform: "linux".into(),
                ..AuditInstance::default()
            })
            .collect()
    }

    #[test]
    fn events_are_read_and_mapped_to_what_they_touch() {
        let e = TrailEvent::parse(&event(
            "AttachRolePolicy",
            json!({"roleName": "web", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        ))
        .unwrap();
        assert_eq!(e.change(), Change::Role("web".into()));
        assert_eq!(e.who.via_role.as_deref(), Some("arn:aws:iam::111111111111:role/dev"));
        assert_eq!(
            e.what(),
            "AttachRolePolicy roleName=web policyArn=arn:aws:iam::aws:policy/AdministratorAccess"
        );
        let v = TrailEvent::parse(&event("CreatePolicyVersion", json!({"policyArn": "arn:p", "setAsDefault": false}))).unwrap();
        assert!(matches!(v.change(), Change::Ignored(_)));
        let v = TrailEvent::parse(&event(
            "CreatePolicyVersion",
            json!({"policyArn": "arn:p", "setAsDefault": true, "policyDocument": "{}"}),
        ))
        .unwrap();
        assert_eq!(v.change(), Change::Policy("arn:p".into()));
        assert_eq!(
            v.what(),
            "CreatePolicyVersion policyArn=arn:p setAsDefault=true",
            "documents are left out"
        );
        let r = TrailEvent::parse(&event(
            "ReplaceIamInstanceProfileAssociation",
            json!({"ReplaceIamInstanceProfileAssociationRequest": {"AssociationId": "iip-1", "IamInstanceProfile": {"Name": "x"}}}),
        ))
        .unwrap();
        assert!(matches!(r.change(), Change::Ignored(_)), "no instance id in the request");
        let mut with_response = event("ReplaceIamInstanceProfileAssociation", json!({}));
        with_response["detail"]["responseElements"] =
            json!({"ReplaceIamInstanceProfileAssociationResponse": {"iamInstanceProfileAssociation": {"instanceId": "i-9"}}});
        assert_eq!(TrailEvent::parse(&with_response).unwrap().change(), Change::Instance("i-9".into()));
        assert!(TrailEvent::parse(&json!({"detail-type": "x"})).is_err());
    }

    #[test]
    fn admin_granted_to_a_running_instances_role_is_critical_and_says_before_and_after() {
        let before = ScopeState::of(ACCOUNT, "eu-west-1", "2026-12-06T06:00:00Z", &instances(), &iam(false));
        assert_eq!(before.instances.len(), 1, "only running instances are kept");
        let e = TrailEvent::parse(&event(
            "AttachRolePolicy",
            json!({"roleName": "web", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        ))
        .unwrap();
        let drift = drift_in_scope("eu-west-1", &e.change(), Some(&before), &instances(), &iam(true));
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].instance_id, "i-1");
        let alert = DriftAlert::new(&e, drift);
        assert_eq!(alert.severity, Severity::Critical);
        let p = alert.publication();
        assert_eq!(
            p.subject,
            "opsflow drift [critical]: 1 instance now ADMIN (AttachRolePolicy by alice)"
        );
        let text: Value = serde_json::from_str(&p.message).unwrap();
        let text = text["default"].as_str().unwrap();
        assert!(
            text.contains("before: role web: no admin or escalation path; cannot talk to SSM [as of 2026-12-06T06:00:00Z]"),
            "{text}"
        );
        assert!(
            text.contains("after:  role web: ADMIN (arn:aws:iam::aws:policy/AdministratorAccess is attached)"),
            "{text}"
        );
        assert!(text.contains("Who:     arn:aws:sts::111111111111:assumed-role/dev/alice (AssumedRole, session of arn:aws:iam::111111111111:role/dev) from 203.0.113.5"));
        // The same change seen again (a retried evaluation on the new state) moves nothing.
        let now = ScopeState::of(ACCOUNT, "eu-west-1", "t", &instances(), &iam(true));
        assert!(drift_in_scope("eu-west-1", &e.change(), Some(&now), &instances(), &iam(true)).is_empty());
    }

    #[test]
    fn an_unrelated_role_and_a_never_audited_harmless_change_send_nothing() {
        let before = ScopeState::of(ACCOUNT, "eu-west-1", "t", &instances(), &iam(false));
        assert!(drift_in_scope("eu-west-1", &Change::Role("batch".into()), Some(&before), &instances(), &iam(false)).is_empty());
        assert!(drift_in_scope("eu-west-1", &Change::Role("web".into()), None, &instances(), &iam(false)).is_empty());
        let risky = drift_in_scope("eu-west-1", &Change::Role("web".into()), None, &instances(), &iam(true));
        assert_eq!(risky.len(), 1, "never audited but admin now: said");
    }
}
