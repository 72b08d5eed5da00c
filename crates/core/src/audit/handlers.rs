//! The audit functions as one JSON-in, JSON-out entry point, `Step` naming the step: the
//! deployed Lambda (a thin main) and the local engine call the same [`invoke`].
//!
//! `statemachines/fleet-audit.asl.json` runs them: **Plan** checks the schedule's input and
//! lists the scopes (account × region), **Scan** reads one scope through its member audit role
//! and writes its findings to S3 (the state keeps only counts and the object's key), **Report**
//! joins the scans, compares with the previous report, writes the report (JSON and text) and
//! publishes the summary.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::drift::{drift_in_scope, outcome, state_key, Change, DriftAlert, ScopeState, TrailEvent};
use super::report::{FailedScope, Finding, Part, Report};
use super::roles;
use super::ssm::{self, HealthFacts, HealthRules};
use crate::alert::{AlertLedger, AlertPublisher, Claim};
use crate::error::CoreError;
use crate::ports::{AuditReader, Auditors, Clock, Ec2, Objects};
use crate::runbook::input::accounts_and_regions;
use crate::runbook::steps::home_of;
use crate::time::format_utc;

/// The function's placeholder in the state machine file.
pub const FUNCTION_PLACEHOLDER: &str = "${AuditFunctionArn}";

/// The checks a schedule can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
    #[serde(rename = "roles")]
    Roles,
    #[serde(rename = "ssm-health")]
    SsmHealth,
}

impl Check {
    pub const ALL: [Check; 2] = [Check::Roles, Check::SsmHealth];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Roles => "roles",
            Check::SsmHealth => "ssm-health",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Check::Roles => "Instance-role audit",
            Check::SsmHealth => "SSM fleet health",
        }
    }

    fn parse(v: Option<&Value>) -> Result<Check, CoreError> {
        let names = || Check::ALL.map(Check::as_str).join(", ");
        match v {
            Some(Value::String(s)) => Check::ALL
                .into_iter()
                .find(|c| c.as_str() == s)
                .ok_or_else(|| CoreError::invalid("Check", format!("{s:?} is not a check ({})", names()))),
            _ => Err(CoreError::invalid("Check", format!("is required: one of {}", names()))),
        }
    }
}

/// Where reports go.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// `AUDIT_BUCKET`.
    pub bucket: String,
    /// `SSM_FIX_PROFILE`: fleet health's automatic fix, off when None. The member accounts'
    /// default SSM instance profile, associated with each running instance SSM does not manage
    /// because it has no profile.
    pub fix_profile: Option<String>,
}

/// The ports the audit function uses.
pub struct AuditPorts<A, O, P> {
    pub auditors: A,
    pub objects: O,
    pub publisher: P,
}

/// The S3 prefix of a check's reports.
pub fn prefix(check: Check) -> String {
    format!("audit/{}", check.as_str())
}

/// The key of the latest report (JSON; the text is beside it as `latest.txt`).
pub fn latest_key(check: Check) -> String {
    format!("{}/latest.json", prefix(check))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PlanInput {
    input: Value,
    execution: String,
}

/// One scope of one run.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScanRequest {
    pub check: Check,
    pub run: String,
    pub account: String,
    pub region: String,
    /// ssm-health: a hybrid node not seen for this many days is stale.
    #[serde(default = "default_stale_days")]
    pub stale_days: i64,
}

fn default_stale_days() -> i64 {
    14
}

/// A scan's result as the Map collects it (in the order of the scopes): its count of findings,
/// or the error name the Catch kept (only the name: a thousand causes would not fit the state).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScanResult {
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScopeRef {
    account: String,
    region: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReportInput {
    check: Check,
    run: String,
    scopes: Vec<ScopeRef>,
    scans: Vec<ScanResult>,
}

fn to_string<T: Serialize>(v: &T) -> Result<String, CoreError> {
    serde_json::to_string(v).map_err(|e| CoreError::transient("serialize", e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(step: &str, payload: Value) -> Result<T, CoreError> {
    serde_json::from_value(payload).map_err(|e| CoreError::invalid(format!("{step} input"), e.to_string()))
}

const PLAN_FIELDS: [&str; 4] = ["Check", "Accounts", "Regions", "StaleDays"];

/// Scopes (account × region) per audit: each is an item of the state (with its scan's result),
/// which must stay under Step Functions' 256 KiB.
pub const MAX_SCOPES: usize = 1000;

/// Plan: the schedule's input (`Check`, `Accounts`, `Regions`; the last two default to the
/// state machine's own account and region) → the run and its scopes.
pub fn plan(input: &Value, execution: &str) -> Result<Value, CoreError> {
    let obj = input
        .as_object()
        .ok_or_else(|| CoreError::invalid("Input", "must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !PLAN_FIELDS.contains(&k.as_str())) {
        return Err(CoreError::invalid(
            if unknown.is_empty() { "\"\"" } else { unknown },
            format!("is not an audit input field ({})", PLAN_FIELDS.join(", ")),
        ));
    }
    let check = Check::parse(obj.get("Check"))?;
    let home = home_of(execution)?;
    let (accounts, regions) = accounts_and_regions(obj, &home)?;
    if accounts.len() * regions.len() > MAX_SCOPES {
        return Err(CoreError::invalid(
            "Accounts",
            format!(
                "{} accounts × {} regions is above {MAX_SCOPES} scopes per audit: split the accounts over several schedules",
                accounts.len(),
                regions.len()
            ),
        ));
    }
    let run = execution.rsplit(':').next().unwrap_or(execution).to_string();
    let scopes: Vec<Value> = accounts
        .iter()
        .flat_map(|a| regions.iter().map(move |r| json!({"Account": a, "Region": r})))
        .collect();
    let stale_days = match obj.get("StaleDays") {
        None | Some(Value::Null) => default_stale_days(),
        Some(v) => v
            .as_i64()
            .filter(|d| (1..=365).contains(d))
            .ok_or_else(|| CoreError::invalid("StaleDays", format!("{v} is not a whole number of days from 1 to 365")))?,
    };
    Ok(json!({"Check": check, "Run": run, "StaleDays": stale_days, "Scopes": scopes}))
}

/// Fleet health's automatic fix: the deployment's default SSM `profile` on each running instance
/// SSM does not manage because it has no credentials — no profile, and Default Host Management
/// Configuration off (or on, but the instance allows IMDSv1, which DHMC cannot use) — unless it
/// is tagged `opsflow:ssm-fix=off`. The provisioning steps' association (Ec2
/// AssociateIamInstanceProfile), through the member account's fix role, which IAM lets associate
/// only that profile, only with instances that have none and are not tagged off. Each finding
/// says what was done, or why it failed; a failure never fails the scan.
async fn fix_profiles<A: Auditors>(
    auditors: &A,
    account: &str,
    region: &str,
    profile: &str,
    facts: &HealthFacts,
    findings: &mut [Finding],
) {
    let lacks_credentials: BTreeSet<&str> = facts
        .instances
        .iter()
        .filter(|i| i.profile_arn.is_none() && !i.ssm_fix_off && (facts.dhmc_role.is_none() || !i.imds_v2))
        .map(|i| i.id.as_str())
        .collect();
    let mut targets: Vec<&mut Finding> = findings
        .iter_mut()
        .filter(|f| f.kind == "unmanaged" && lacks_credentials.contains(f.subject.as_str()))
        .collect();
    if targets.is_empty() {
        return;
    }
    let fixer = match auditors.fixer(account, region).await {
        Ok(fixer) => fixer,
        Err(e) => {
            for f in targets {
                f.fixed = Some(format!("not fixed: the member account's fix role could not be used ({e})"));
            }
            return;
        }
    };
    for f in targets.iter_mut() {
        f.fixed = Some(match fixer.associate_profile(&f.subject, profile).await {
            Ok(a) => {
                tracing::info!(account, region, instance = %f.subject, profile, association = %a.association_id, "default SSM profile associated");
                format!(
                    "associated instance profile {profile} ({} {}): SSM lists the instance once its agent retries with these \
                     credentials (minutes; restarting amazon-ssm-agent makes it immediate)",
                    a.association_id, a.state
                )
            }
            Err(e) => format!("not fixed: AssociateIamInstanceProfile of {profile} failed ({e})"),
        });
    }
}

/// Scan: one scope's findings, written to S3.
pub async fn scan<A: Auditors, O: Objects>(
    auditors: &A,
    objects: &O,
    settings: &AuditSettings,
    request: &ScanRequest,
    now_ms: i64,
) -> Result<Value, CoreError> {
    let ScanRequest {
        check,
        run,
        account,
        region,
        stale_days,
    } = request;
    let at = format_utc(now_ms / 1000);
    let read = async {
        let reader = auditors.reader(account, region).await?;
        let (instances, iam) = (reader.instances().await?, reader.iam().await?);
        match check {
            Check::Roles => {
                // The drift alerts' "before" (drift.rs).
                let state = ScopeState::of(account, region, &at, &instances, &iam);
                objects
                    .put(&settings.bucket, &state_key(account, region), &to_string(&state)?)
                    .await?;
                let mut roles_on_instances: Vec<&str> = instances
                    .iter()
                    .filter_map(|i| i.profile_arn.as_deref())
                    .filter_map(|p| iam.role_of_profile(p).map(|r| r.arn.as_str()))
                    .collect();
                roles_on_instances.sort();
                roles_on_instances.dedup();
                let counted = BTreeMap::from([("instances".into(), instances.len()), ("roles".into(), roles_on_instances.len())]);
                Ok::<_, CoreError>((roles::findings(account, region, &instances, &iam), counted))
            }
            Check::SsmHealth => {
                let facts = HealthFacts {
                    nodes: reader.managed_nodes().await?,
                    dhmc_role: reader.dhmc_role().await?,
                    net: reader.network(&instances).await?,
                    instances,
                    iam,
                };
                let mut rules = HealthRules::new(now_ms / 1000);
                rules.stale_days = *stale_days;
                let (mut findings, counted) = ssm::findings(account, region, &facts, rules);
                if let Some(profile) = &settings.fix_profile {
                    fix_profiles(auditors, account, region, profile, &facts, &mut findings).await;
                }
                Ok((findings, counted))
            }
        }
    };
    let (findings, counted, error) = match read.await {
        // Throttling and the like: the state machine retries the scan.
        Err(e) if e.is_retryable() => return Err(e),
        // What a retry cannot fix (no audit role, access denied): the scope's result.
        Err(e) => (Vec::new(), BTreeMap::new(), Some(format!("{}: {e}", e.name()))),
        Ok((findings, counted)) => (findings, counted, None),
    };
    let part = Part {
        account: account.clone(),
        region: region.clone(),
        scanned_at: at.clone(),
        counted,
        findings,
        error,
    };
    objects
        .put(&settings.bucket, &part_key(*check, run, account, region), &to_string(&part)?)
        .await?;
    Ok(json!({"Findings": part.findings.len()}))
}

/// Where a scope's scan goes.
pub fn part_key(check: Check, run: &str, account: &str, region: &str) -> String {
    format!("{}/runs/{run}/scopes/{account}-{region}.json", prefix(check))
}

/// Report: the scans joined, compared with the previous report, written and published.
pub async fn report<O: Objects, P: AlertPublisher>(
    objects: &O,
    publisher: &P,
    settings: &AuditSettings,
    check: Check,
    run: &str,
    scans: Vec<(String, String, Option<String>)>,
    now_ms: i64,
) -> Result<Value, CoreError> {
    let mut parts = Vec::new();
    let mut failed = Vec::new();
    for (account, region, error) in scans {
        match error {
            None => {
                let key = part_key(check, run, &account, &region);
                let text = objects.get(&settings.bucket, &key).await?;
                let part: Part = serde_json::from_str(&text).map_err(|e| CoreError::invalid(key.clone(), e.to_string()))?;
                parts.push(part);
            }
            Some(name) => failed.push(FailedScope {
                account,
                region,
                error: format!("{name}: the scan failed after its retries (the execution's history has the cause)"),
            }),
        }
    }
    let previous = match objects.get(&settings.bucket, &latest_key(check)).await {
        Ok(text) => serde_json::from_str::<Report>(&text).ok().filter(|p| p.run != run),
        Err(CoreError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let report = Report::new(
        check.as_str(),
        check.title(),
        run,
        &format_utc(now_ms / 1000),
        parts,
        failed,
        previous.as_ref(),
    );
    let json_text = serde_json::to_string_pretty(&report).map_err(|e| CoreError::transient("serialize", e.to_string()))?;
    let text = report.text();
    let dir = format!("{}/runs/{run}", prefix(check));
    objects.put(&settings.bucket, &format!("{dir}/report.json"), &json_text).await?;
    objects.put(&settings.bucket, &format!("{dir}/report.txt"), &text).await?;
    // The latest copy last: a retry after a failure here compares with the same previous report.
    objects
        .put(&settings.bucket, &format!("{}/latest.txt", prefix(check)), &text)
        .await?;
    objects.put(&settings.bucket, &latest_key(check), &json_text).await?;
    let url = format!("s3://{}/{dir}/report.txt", settings.bucket);
    let message_id = publisher.publish(&report.publication(&url)).await?;
    Ok(json!({
        "Check": check,
        "Run": run,
        "Report": format!("s3://{}/{dir}/report.json", settings.bucket),
        "Text": url,
        "Counts": report.counts,
        "New": report.changes.new.len(),
        "Resolved": report.changes.resolved.len(),
        "Changed": report.changes.changed.len(),
        "FailedScopes": report.scopes.iter().filter(|s| s.status == "failed").count(),
        "MessageId": message_id,
    }))
}

/// Where drift looks: the regions of every account (`AUDIT_REGIONS`) for IAM changes; an EC2
/// change only in its own region.
#[derive(Clone, Debug)]
pub struct DriftSettings {
    pub bucket: String,
    pub regions: Vec<String>,
}

/// How long a drift claim holds, and how long its record is kept.
const DRIFT_LEASE_S: i64 = 120;
const DRIFT_KEEP_S: i64 = 7 * 86_400;

/// A CloudTrail event (as EventBridge delivers it) → at most one drift alert, exactly once per
/// event (the ledger, keyed by CloudTrail's eventID), with every touched scope's state
/// rewritten from fresh reads.
pub async fn drift<A: Auditors, O: Objects, P: AlertPublisher, L: AlertLedger>(
    ports: &AuditPorts<A, O, P>,
    ledger: &L,
    settings: &DriftSettings,
    event: &Value,
    now_ms: i64,
) -> Result<Value, CoreError> {
    let e = TrailEvent::parse(event)?;
    if let Some(code) = &e.error_code {
        return Ok(outcome(&e, None, 0, &format!("the call failed ({code}): nothing changed")));
    }
    let change = e.change();
    if let Change::Ignored(why) = &change {
        return Ok(outcome(&e, None, 0, why));
    }
    let now_s = now_ms / 1000;
    let key = format!("drift#{}", e.event_id);
    match ledger.claim(&key, now_s, DRIFT_LEASE_S, now_s + DRIFT_KEEP_S).await? {
        Claim::Won => {}
        // (An evaluation that alerted nobody is recorded with an empty message id.)
        Claim::Published(id) => {
            let alerted = Some(id.as_str()).filter(|i| !i.is_empty());
            return Ok(outcome(&e, alerted, 0, "already handled (a repeated delivery)"));
        }
        Claim::Busy { lease_until_s } => {
            return Err(CoreError::conflict(
                key,
                format!("another delivery evaluates it until {}", format_utc(lease_until_s)),
            ))
        }
    }
    let result = evaluate_and_publish(ports, settings, &e, &change, now_ms).await;
    match result {
        Ok((Some(id), n)) => {
            ledger.published(&key, &id, now_s + DRIFT_KEEP_S).await?;
            Ok(outcome(&e, Some(&id), n, "published"))
        }
        Ok((None, _)) => {
            ledger.published(&key, "", now_s + DRIFT_KEEP_S).await?;
            Ok(outcome(&e, None, 0, "no running instance's verdict changed"))
        }
        Err(err) => {
            ledger.release(&key).await?;
            Err(err)
        }
    }
}

async fn evaluate_and_publish<A: Auditors, O: Objects, P: AlertPublisher>(
    ports: &AuditPorts<A, O, P>,
    settings: &DriftSettings,
    e: &TrailEvent,
    change: &Change,
    now_ms: i64,
) -> Result<(Option<String>, usize), CoreError> {
    let regions: Vec<String> = match change {
        Change::Instance(_) => vec![e.region.clone()],
        _ => settings.regions.clone(),
    };
    let mut drifts = Vec::new();
    for region in &regions {
        let reader = ports.auditors.reader(&e.account, region).await?;
        let (instances, iam) = (reader.instances().await?, reader.iam().await?);
        let key = state_key(&e.account, region);
        let before = match ports.objects.get(&settings.bucket, &key).await {
            Ok(text) => serde_json::from_str::<ScopeState>(&text).ok(),
            Err(CoreError::NotFound { .. }) => None,
            Err(err) => return Err(err),
        };
        drifts.extend(drift_in_scope(region, change, before.as_ref(), &instances, &iam));
        let now = ScopeState::of(&e.account, region, &format_utc(now_ms / 1000), &instances, &iam);
        ports.objects.put(&settings.bucket, &key, &to_string(&now)?).await?;
    }
    if drifts.is_empty() {
        return Ok((None, 0));
    }
    let n = drifts.len();
    let alert = DriftAlert::new(e, drifts);
    let id = ports.publisher.publish(&alert.publication()).await?;
    Ok((Some(id), n))
}

/// The entry point: `Step` is `Plan`, `Scan` or `Report`.
pub async fn invoke<A: Auditors, O: Objects, P: AlertPublisher, C: Clock>(
    ports: &AuditPorts<A, O, P>,
    settings: &AuditSettings,
    payload: Value,
    clock: &C,
) -> Result<Value, CoreError> {
    let step = payload.get("Step").and_then(Value::as_str).unwrap_or_default().to_string();
    match step.as_str() {
        "Plan" => {
            let i: PlanInput = parse("Plan", payload)?;
            plan(&i.input, &i.execution)
        }
        "Scan" => {
            let request: ScanRequest = parse("Scan", payload)?;
            scan(&ports.auditors, &ports.objects, settings, &request, clock.now_ms()).await
        }
        "Report" => {
            let i: ReportInput = parse("Report", payload)?;
            if i.scopes.len() != i.scans.len() {
                return Err(CoreError::invalid(
                    "Scans",
                    format!("has {} results for {} scopes", i.scans.len(), i.scopes.len()),
                ));
            }
            let scans = i
                .scopes
                .into_iter()
                .zip(i.scans)
                .map(|(s, r)| (s.account, s.region, r.error))
                .collect();
            report(&ports.objects, &ports.publisher, settings, i.check, &i.run, scans, clock.now_ms()).await
        }
        other => Err(CoreError::invalid(
            "Step",
            format!("{other:?} is not an audit step (Plan, Scan, Report)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXECUTION: &str = "arn:aws:states:eu-west-1:111111111111:execution:opsflow-fleet-audit:daily-2026-12-06";

    #[test]
    fn plan_lists_every_account_and_region_and_defaults_to_its_own() {
        let p = plan(&json!({"Check": "roles"}), EXECUTION).unwrap();
        assert_eq!(
            p,
            json!({"Check": "roles", "Run": "daily-2026-12-06", "StaleDays": 14, "Scopes": [{"Account": "111111111111", "Region": "eu-west-1"}]})
        );
        let p = plan(
            &json!({"Check": "roles", "Accounts": ["111111111111", "222222222222"], "Regions": ["eu-west-1", "us-east-1"]}),
            EXECUTION,
        )
        .unwrap();
        assert_eq!(p["Scopes"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn bad_input_names_the_field_and_the_rule() {
        for (input, field, rule) in [
            (json!({}), "Check", "is required: one of roles, ssm-health"),
            (
                json!({"Check": "ssm-health", "StaleDays": 0}),
                "StaleDays",
                "0 is not a whole number of days from 1 to 365",
            ),
            (
                json!({"Check": "everything"}),
                "Check",
                "\"everything\" is not a check (roles, ssm-health)",
            ),
            (
                json!({"Check": "roles", "Accounts": ["12"]}),
                "Accounts[0]",
                "\"12\" is not a 12-digit AWS account id",
            ),
            (json!({"Check": "roles", "Regions": "eu-west-1"}), "Regions", ""),
            (
                json!({"Check": "roles", "Procedure": "x"}),
                "Procedure",
                "is not an audit input field",
            ),
        ] {
            match plan(&input, EXECUTION) {
                Err(CoreError::InvalidInput { field: f, rule: r }) => {
                    assert_eq!(f, field, "{input}");
                    assert!(r.contains(rule), "{r} for {input}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
