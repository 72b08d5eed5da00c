//! The runner's and the procedures' steps, over the ports.
//!
//! - **Validate**: the input against the catalogue → [`Run`] (small: it is copied into every
//!   target's child execution) and [`Scope`] (which instances, where).
//! - **ResolveTargets**: per account × region through the member role, the instances the
//!   selector finds → targets (opted in, running, Online, supported platform), written to S3
//!   for the Distributed Map's ItemReader, with the Map's concurrency and allowed errors.
//! - **Admit** / **Record** (each target): start unless the run's errors passed MaxErrors; the
//!   final audit row, counting an error against MaxErrors.
//! - **SendCommand** / **CheckCommand** (the run-command procedure): the command, sent once per
//!   procedure execution, watched through reboots until it ends or its deadline (delivery +
//!   execution timeout + a margin), then cancelled.
//! - **Summarize** / **Notify**: the summary from the audit rows, to S3, and to the topic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalogue::{Catalogue, Kind, Os, ParameterUse, Procedure};
use super::input::{self, Home, LifecycleAction, Notify, TagFilter, TargetSelector};
use super::log::{target_key, TargetRow};
use super::rate::{may_start, Rate};
use super::results::{Counts, Summary, TargetStatus};
use super::targets::{check_count, check_opt_in, controls, select, Candidate, Excluded, Target};
use super::{forensics, patch, snapshot};
use crate::alert::render::clip_chars;
use crate::alert::AlertPublisher;
use crate::command::{command_outcome, invocation_lookup_error, CommandOutcome, CommandSpec, InvocationLookup, INVOCATION_GRACE_S};
use crate::error::CoreError;
use crate::facts::InstanceState;
use crate::ports::{Clock, Fleet, InstanceQuery, Member, Objects, RunLog};
use crate::time::format_utc;
use crate::wait::{Poll, PollPolicy, Watch};

/// SSM keeps the first 24,000 characters of standard output in GetCommandInvocation: output
/// that long was cut, and its end is read from the S3 copy.
pub const SSM_STDOUT_WINDOW: usize = 24_000;
/// SSM keeps the first 8,000 characters of standard error.
pub const SSM_STDERR_WINDOW: usize = 8_000;
/// How many exclusions and (for a dry run) targets the runner's state shows; all are in S3.
pub const SHOWN: usize = 25;
/// How many account × region pairs ResolveTargets lists at once.
pub const RESOLVE_CONCURRENCY: usize = 8;

/// The deployment's settings of the runbook functions.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bucket of targets, summaries and command output (`RUNS_BUCKET`).
    pub runs_bucket: String,
    /// How long audit rows and command records are kept.
    pub retention_days: i64,
    /// The state machine of each procedure kind (Validate).
    pub procedure_arns: BTreeMap<String, String>,
    /// EventBridge connection ARNs by the catalogue's connection names (Validate).
    pub connections: BTreeMap<String, String>,
    /// Endpoints that replace a catalogue procedure's `Http.Url`, by procedure name (the local
    /// runner points an HTTP check at a local server; a deployment sets none).
    pub endpoint_overrides: BTreeMap<String, String>,
    /// `CloudWatchOutputConfig` log group of commands, if any.
    pub output_log_group: Option<String>,
    pub poll: PollPolicy,
    /// How long one CheckCommand invocation may watch before the state machine's Wait takes over.
    pub watch_s: i64,
    /// Bytes of output kept in a result (the end of it).
    pub tail_bytes: usize,
    /// The bucket forensic-capture's evidence goes to (`FORENSICS_BUCKET`; none: the
    /// deployment takes no evidence).
    pub forensics_bucket: Option<String>,
}

impl Settings {
    pub fn new(runs_bucket: &str) -> Settings {
        Settings {
            runs_bucket: runs_bucket.to_string(),
            retention_days: 90,
            procedure_arns: BTreeMap::new(),
            connections: BTreeMap::new(),
            endpoint_overrides: BTreeMap::new(),
            output_log_group: None,
            poll: PollPolicy {
                first_s: 2,
                factor: 1.5,
                max_s: 30,
            },
            watch_s: 60,
            tail_bytes: 2_048,
            forensics_bucket: None,
        }
    }

    fn expires_at(&self, now_s: i64) -> i64 {
        now_s + self.retention_days * 86_400
    }
}

/// What every step of a run knows: small, copied into each target's execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Run {
    /// The runner's execution ARN.
    pub id: String,
    /// The execution's name (S3 keys).
    pub name: String,
    pub started_at: String,
    pub procedure: String,
    pub kind: Kind,
    pub parameters: BTreeMap<String, String>,
    pub max_concurrency: Rate,
    pub max_errors: Rate,
    pub notify: Notify,
    pub dry_run: bool,
    pub started_by: String,
    /// The procedure's state machine.
    pub procedure_arn: String,
    /// The call of an http-check procedure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCall>,
    /// The lifecycle action that holds the run's one instance (forensic-capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_action: Option<LifecycleAction>,
}

/// The HTTP Task's arguments (the secret stays in the connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpCall {
    pub api_endpoint: String,
    pub method: String,
    pub connection_arn: String,
    pub query_parameters: BTreeMap<String, String>,
}

/// Which instances, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Scope {
    pub targets: TargetSelector,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Only the instances with this tag; the others are skipped without a report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_tagged: Option<TagFilter>,
}

/// Validate's result: the state the runner goes on with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Validated {
    pub run: Run,
    pub scope: Scope,
}

/// The runner's own account and region, from its execution ARN
/// (`arn:<partition>:states:<region>:<account>:execution:<machine>:<name>`) or its state
/// machine's (`…:stateMachine:<machine>`): the defaults of `Accounts` and `Regions`.
pub fn home_of(execution: &str) -> Result<Home, CoreError> {
    let parts: Vec<&str> = execution.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "states", region, account, "execution" | "stateMachine", ..] if input::valid_account(account) => Ok(Home {
            account: account.to_string(),
            region: region.to_string(),
        }),
        _ => Err(CoreError::invalid(
            "Execution",
            format!("{execution:?} is not a Step Functions execution or state machine ARN"),
        )),
    }
}

/// Validate: the input against the catalogue.
pub fn validate(
    input: &Value,
    execution: &str,
    start_time: &str,
    settings: &Settings,
    catalogue: &Catalogue,
) -> Result<Validated, CoreError> {
    let req = input::check(input, catalogue, &home_of(execution)?)?;
    let procedure = catalogue.get(&req.procedure)?;
    let procedure_arn = settings.procedure_arns.get(procedure.kind.as_str()).cloned().ok_or_else(|| {
        CoreError::unsupported(
            format!("procedure {}", procedure.name),
            format!("this deployment has no state machine for kind {}", procedure.kind.as_str()),
        )
    })?;
    let http = match &procedure.http {
        None => None,
        Some(h) => Some(HttpCall {
            api_endpoint: settings
                .endpoint_overrides
                .get(&procedure.name)
                .cloned()
                .unwrap_or_else(|| h.url.clone()),
            method: h.method.clone(),
            connection_arn: settings.connections.get(&h.connection).cloned().ok_or_else(|| {
                CoreError::unsupported(
                    format!("procedure {}", procedure.name),
                    format!("this deployment has no EventBridge connection named {:?}", h.connection),
                )
            })?,
            query_parameters: h.query_parameters.clone(),
        }),
    };
    let name = execution.rsplit(':').next().unwrap_or(execution).to_string();
    Ok(Validated {
        run: Run {
            id: execution.to_string(),
            name,
            started_at: start_time.to_string(),
            procedure: req.procedure,
            kind: req.kind,
            parameters: req.parameters,
            max_concurrency: req.max_concurrency,
            max_errors: req.max_errors,
            notify: req.notify,
            dry_run: req.dry_run,
            started_by: req.started_by,
            procedure_arn,
            http,
            lifecycle_action: req.lifecycle_action,
        },
        scope: Scope {
            targets: req.targets,
            accounts: req.accounts,
            regions: req.regions,
            if_tagged: req.if_tagged,
        },
    })
}

/// ResolveTargets' result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resolved {
    pub count: usize,
    /// Where the targets are (a JSON array of [`Target`]).
    pub bucket: String,
    pub key: String,
    pub max_concurrency: u32,
    pub allowed_errors: u32,
    pub excluded_count: usize,
    /// The first exclusions, with their reasons.
    pub excluded: Vec<Excluded>,
    /// A dry run's first targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Target>,
}

/// The S3 key of a run's file.
pub fn run_key(run: &Run, file: &str) -> String {
    format!("runs/{}/{file}", run.name)
}

/// ResolveTargets: every account × region, through the member role. A member account opsflow
/// cannot reach refuses the run before anything starts.
pub async fn resolve<F: Fleet>(
    run: &Run,
    scope: &Scope,
    fleet: &F,
    objects: &impl Objects,
    settings: &Settings,
    catalogue: &Catalogue,
) -> Result<Resolved, CoreError> {
    let procedure = catalogue.get(&run.procedure)?;
    let (targets, excluded) = match &scope.targets {
        TargetSelector::Endpoint => {
            let url = run.http.as_ref().map(|h| h.api_endpoint.clone()).unwrap_or_default();
            let home = home_of(&run.id)?;
            let target = Target {
                account: home.account,
                region: home.region,
                instance_id: String::new(),
                name: url,
                platform: Os::Linux,
            };
            (vec![target], vec![])
        }
        selector => {
            let query = match selector {
                TargetSelector::InstanceIds(ids) => Query::Instances(InstanceQuery::Ids(ids.clone())),
                TargetSelector::Tags(filters) => Query::Instances(InstanceQuery::Tags(
                    filters.iter().map(|f| (f.key.clone(), f.values.clone())).collect(),
                )),
                TargetSelector::ResourceGroup(g) => Query::Group(g.clone()),
                TargetSelector::Endpoint => unreachable!("handled above"),
            };
            let places: Vec<(String, String)> = scope
                .accounts
                .iter()
                .flat_map(|a| scope.regions.iter().map(move |r| (a.clone(), r.clone())))
                .collect();
            // A few accounts and regions at a time: each is an AssumeRole and a few list calls.
            use futures::StreamExt;
            let query = &query;
            let found: Vec<_> = futures::stream::iter(places.into_iter().map(|(a, r)| async move {
                candidates(fleet, &a, &r, query).await.map_err(|e| match e {
                    CoreError::AccessDenied { operation, detail } => CoreError::AccessDenied {
                        operation,
                        detail: format!("account {a} in {r}: {detail}"),
                    },
                    other => other,
                })
            }))
            .buffered(RESOLVE_CONCURRENCY)
            .collect()
            .await;
            let mut all = Vec::new();
            let mut groups_found = 0;
            for f in found {
                if let Some(c) = f? {
                    groups_found += 1;
                    all.extend(c);
                }
            }
            if let (Query::Group(g), 0) = (&query, groups_found) {
                return Err(CoreError::not_found(
                    "Targets.ResourceGroup",
                    format!("no account and region of the run has a resource group {g:?}"),
                ));
            }
            if let Some(filter) = &scope.if_tagged {
                all.retain(|c| filter.matches(&c.tags));
            }
            select(all, procedure)
        }
    };
    check_count(targets.len(), procedure)?;
    let c = controls(targets.len(), run.max_concurrency, run.max_errors);
    let key = run_key(run, "targets.json");
    objects
        .put(
            &settings.runs_bucket,
            &key,
            &serde_json::to_string(&targets).expect("targets serialize"),
        )
        .await?;
    tracing::info!(run = %run.id, targets = targets.len(), excluded = excluded.len(), "targets resolved");
    Ok(Resolved {
        count: targets.len(),
        bucket: settings.runs_bucket.clone(),
        key,
        max_concurrency: c.max_concurrency,
        allowed_errors: c.allowed_errors,
        excluded_count: excluded.len(),
        excluded: excluded.into_iter().take(SHOWN).collect(),
        preview: if run.dry_run {
            targets.into_iter().take(SHOWN).collect()
        } else {
            vec![]
        },
    })
}

/// What ResolveTargets asks each account and region.
enum Query {
    Instances(InstanceQuery),
    /// A resource group of that account and region, by name.
    Group(String),
}

/// The instances of one account and region; `None` when the query names a resource group the
/// account and region do not have.
async fn candidates<F: Fleet>(fleet: &F, account: &str, region: &str, query: &Query) -> Result<Option<Vec<Candidate>>, CoreError> {
    let member = fleet.member(account, region).await?;
    let query = match query {
        Query::Instances(q) => q.clone(),
        Query::Group(g) => match member.group_query(g).await {
            Ok((kind, text)) => InstanceQuery::Tags(super::targets::group_tag_filters(g, &kind, &text)?),
            Err(CoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    let instances = member.find_instances(&query).await?;
    let running: Vec<String> = instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .map(|i| i.instance_id.clone())
        .collect();
    let pings = if running.is_empty() {
        BTreeMap::new()
    } else {
        member.ping_statuses(&running).await?
    };
    Ok(Some(
        instances
            .into_iter()
            .map(|i| Candidate {
                account: account.to_string(),
                region: region.to_string(),
                ping: pings.get(&i.instance_id).copied(),
                instance_id: i.instance_id,
                state: i.state,
                platform: i.platform,
                tags: i.tags,
            })
            .collect(),
    ))
}

/// Admit's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Admission {
    pub start: bool,
    /// When the target was admitted (its row's start), for Record.
    pub started_at: String,
}

fn row(run: &Run, target: &Target, status: TargetStatus, now_s: i64, settings: &Settings) -> TargetRow {
    TargetRow {
        run: run.id.clone(),
        target: target_key(target),
        procedure: run.procedure.clone(),
        parameters: run.parameters.clone(),
        started_by: run.started_by.clone(),
        account: target.account.clone(),
        region: target.region.clone(),
        instance_id: target.instance_id.clone(),
        name: target.name.clone(),
        status,
        exit_code: None,
        output_tail: String::new(),
        output_url: None,
        reason: String::new(),
        execution: None,
        started_at: format_utc(now_s),
        ended_at: None,
        expires_at: settings.expires_at(now_s),
    }
}

/// Admit: the target starts unless the run's errors already exceed `allowed_errors` (then its
/// row says NotStarted). A retried Admit finds its row and answers the same.
pub async fn admit(
    run: &Run,
    target: &Target,
    allowed_errors: u32,
    log: &impl RunLog,
    settings: &Settings,
    now_s: i64,
) -> Result<Admission, CoreError> {
    let errors = log.errors(&run.id).await?;
    let mut r = row(run, target, TargetStatus::Running, now_s, settings);
    if !may_start(errors, allowed_errors) {
        r.status = TargetStatus::NotStarted;
        r.reason = format!(
            "not started: {errors} targets had failed, more than MaxErrors {} allows ({allowed_errors})",
            run.max_errors
        );
        r.ended_at = Some(r.started_at.clone());
    }
    Ok(match log.begin(&r).await? {
        None => Admission {
            start: r.status == TargetStatus::Running,
            started_at: r.started_at,
        },
        Some(existing) => Admission {
            start: existing.status == TargetStatus::Running,
            started_at: existing.started_at,
        },
    })
}

/// A procedure's outcome as its result (`Output` of the nested execution) or its failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcedureResult {
    pub status: TargetStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub output_tail: String,
    #[serde(default)]
    pub output_url: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub command_id: Option<String>,
    /// An HTTP check's status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The snapshots the procedure took (consistent-snapshot).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
}

impl ProcedureResult {
    /// A result with only a status and a reason (no command behind it).
    pub fn new(status: TargetStatus, reason: impl Into<String>) -> ProcedureResult {
        ProcedureResult {
            status,
            exit_code: None,
            output_tail: String::new(),
            output_url: None,
            reason: reason.into(),
            command_id: None,
            status_code: None,
            snapshots: Vec::new(),
        }
    }
}

/// Reads the nested execution's outcome: `{"Output": …, "ExecutionArn": …}` when it succeeded,
/// `{"Error", "Cause"}` when the Task failed — for a failed child the cause is its
/// DescribeExecution as JSON, whose own `Cause` is, for `CommandFailed`, the result as JSON.
pub fn procedure_result(outcome: &Value) -> (ProcedureResult, Option<String>) {
    let execution = outcome.get("ExecutionArn").and_then(Value::as_str).map(str::to_string);
    if let Some(output) = outcome.get("Output") {
        let mut r: ProcedureResult =
            serde_json::from_value(output.clone()).unwrap_or_else(|e| failed(format!("the procedure's output is not a result: {e}")));
        if r.status == TargetStatus::Running {
            r.status = TargetStatus::Failed;
        }
        return (r, execution);
    }
    let error = outcome.get("Error").and_then(Value::as_str).unwrap_or("Unknown");
    let cause = outcome.get("Cause").and_then(Value::as_str).unwrap_or("");
    let child: Option<Value> = serde_json::from_str(cause).ok();
    let execution = execution.or_else(|| {
        child
            .as_ref()
            .and_then(|c| c.get("ExecutionArn"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let (child_error, child_cause) = match &child {
        Some(c) if c.get("Status").is_some() => (
            c.get("Error").and_then(Value::as_str).unwrap_or(error).to_string(),
            c.get("Cause").and_then(Value::as_str).unwrap_or("").to_string(),
        ),
        _ => (error.to_string(), cause.to_string()),
    };
    // A procedure that fails with its result as the cause (CommandFailed, PreStopFailed, …).
    if let Ok(r) = serde_json::from_str::<ProcedureResult>(&child_cause) {
        return (r, execution);
    }
    let status = match (
        child.as_ref().and_then(|c| c.get("Status")).and_then(Value::as_str),
        child_error.as_str(),
    ) {
        (Some("TIMED_OUT"), _) | (_, "States.Timeout") => TargetStatus::TimedOut,
        (Some("ABORTED"), _) => TargetStatus::Cancelled,
        _ => TargetStatus::Failed,
    };
    let mut r = failed(clip_chars(&format!("{child_error}: {child_cause}"), 1_024));
    r.status = status;
    (r, execution)
}

fn failed(reason: String) -> ProcedureResult {
    ProcedureResult::new(TargetStatus::Failed, reason)
}

/// Record: the target's final row; a failure counts against MaxErrors (once, even if retried).
/// `started_at` is Admit's (the row's start).
pub async fn record(
    run: &Run,
    target: &Target,
    outcome: &Value,
    started_at: Option<&str>,
    log: &impl RunLog,
    settings: &Settings,
    now_s: i64,
) -> Result<TargetStatus, CoreError> {
    let (result, execution) = procedure_result(outcome);
    let mut r = row(run, target, result.status, now_s, settings);
    if let Some(at) = started_at {
        r.started_at = at.to_string();
    }
    r.exit_code = result.exit_code;
    r.output_tail = result.output_tail;
    r.output_url = result.output_url;
    r.reason = result.reason;
    r.execution = execution;
    r.ended_at = Some(format_utc(now_s));
    log.finish(&r, r.status.is_error()).await?;
    tracing::info!(run = %run.id, target = %r.target, status = r.status.as_str(), "target recorded");
    Ok(r.status)
}

/// A command sent by the run-command procedure, and its watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommandProgress {
    pub command_id: String,
    /// Which of the procedure's commands (consistent-snapshot's, patch's); a Freeze or Thaw is
    /// watched every second, since the file systems stay frozen until the procedure sees the
    /// freeze end and thaws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<CommandStep>,
    pub sent_at_epoch_s: i64,
    pub poll: PollState,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ProcedureResult>,
}

/// [`Poll`] in the procedure's PascalCase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollState {
    pub attempt: u32,
    pub delay_seconds: u64,
    pub deadline_epoch_s: i64,
}

impl From<Poll> for PollState {
    fn from(p: Poll) -> Self {
        PollState {
            attempt: p.attempt,
            delay_seconds: p.delay_seconds,
            deadline_epoch_s: p.deadline_epoch_s,
        }
    }
}

impl From<&PollState> for Poll {
    fn from(p: &PollState) -> Self {
        Poll {
            attempt: p.attempt,
            delay_seconds: p.delay_seconds,
            deadline_epoch_s: p.deadline_epoch_s,
        }
    }
}

/// The SendCommand call of a procedure on a platform; parameters are never spliced into a
/// command line: fixed commands go as the shell document's `commands`, a document's typed
/// parameters as SSM parameters.
pub fn command_spec(
    procedure: &Procedure,
    parameters: &BTreeMap<String, String>,
    os: Os,
    step: Option<CommandStep>,
    run: &Run,
    settings: &Settings,
) -> Result<CommandSpec, CoreError> {
    let t = procedure.timeouts;
    let (document_name, params) = match (step, &procedure.document) {
        (Some(step), _) => {
            let (document, params) = step_command(procedure.kind, step, os, parameters);
            (document.to_string(), params)
        }
        (None, Some(doc)) => (
            doc.name.clone(),
            parameters
                .iter()
                .filter(|(k, _)| procedure.parameters.get(*k).is_none_or(|p| p.used_by == ParameterUse::Command))
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
        ),
        (None, None) => {
            let lines = procedure
                .commands
                .get(&os)
                .ok_or_else(|| CoreError::unsupported(format!("procedure {}", procedure.name), format!("has no commands for {os:?}")))?;
            (
                os.shell_document().to_string(),
                BTreeMap::from([
                    ("commands".to_string(), lines.clone()),
                    ("executionTimeout".to_string(), vec![t.execution_seconds.to_string()]),
                ]),
            )
        }
    };
    Ok(CommandSpec {
        document_name,
        parameters: params,
        timeout_seconds: t.delivery_seconds,
        output_s3_bucket: Some(settings.runs_bucket.clone()),
        output_s3_prefix: Some(format!("output/{}/{}", run.procedure, run.name)),
        cloudwatch_log_group: settings.output_log_group.clone(),
        comment: None,
    })
}

/// Which command of a procedure with several a SendCommand sends (consistent-snapshot's and
/// patch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandStep {
    /// The pre-snapshot hooks, the watchdog and the freeze (`opsflow-Freeze`).
    Freeze,
    /// The thaw and the post-snapshot hooks (`opsflow-Thaw`).
    Thaw,
    /// AWS-RunPatchBaselineWithHooks, Install.
    Patch,
    /// The health check after the patch (`opsflow-HealthCheck`).
    HealthCheck,
    /// The health check after a rollback.
    Recheck,
    /// forensic-capture's collection and upload (`opsflow-ForensicCollect`, or
    /// `opsflow-ForensicCollectWindows`).
    Collect,
    /// consistent-snapshot on Windows: AWS's `AWSEC2-CreateVssSnapshot` (VSS freezes and
    /// releases the writes itself; the instance takes the snapshots, tagged as ours).
    Vss,
}

impl CommandStep {
    /// The steps a kind sends.
    fn of(kind: Kind) -> &'static [CommandStep] {
        use CommandStep::*;
        match kind {
            Kind::ConsistentSnapshot => &[Freeze, Thaw, Vss],
            Kind::Patch => &[Freeze, Thaw, Patch, HealthCheck, Recheck],
            Kind::ForensicCapture => &[Collect],
            _ => &[],
        }
    }
}

/// A step's document and its SSM parameters: the procedure's parameters it takes (under the
/// document's names) and the fixed ones.
fn step_command(
    kind: Kind,
    step: CommandStep,
    os: Os,
    parameters: &BTreeMap<String, String>,
) -> (&'static str, BTreeMap<String, Vec<String>>) {
    use CommandStep::*;
    let freeze_mounts = if kind == Kind::Patch { "FreezeMounts" } else { "Mounts" };
    /// (procedure parameter, document parameter) pairs.
    type Names = Vec<(&'static str, &'static str)>;
    let (document, names, fixed): (&str, Names, &[(&str, &str)]) = match step {
        Freeze => (
            snapshot::FREEZE_DOCUMENT,
            vec![(freeze_mounts, "Mounts"), ("WatchdogSeconds", "WatchdogSeconds")],
            &[],
        ),
        Thaw => (snapshot::THAW_DOCUMENT, vec![(freeze_mounts, "Mounts")], &[]),
        Patch => (
            patch::PATCH_DOCUMENT,
            [
                "RebootOption",
                "PreInstallHookDocName",
                "PostInstallHookDocName",
                "OnExitHookDocName",
            ]
            .map(|n| (n, n))
            .to_vec(),
            &[("Operation", "Install")],
        ),
        HealthCheck | Recheck => (
            patch::HEALTH_CHECK_DOCUMENT,
            ["Mounts", "MinFreePercent", "Units", "Ports", "Urls", "Processes"]
                .map(|n| (n, n))
                .to_vec(),
            &[],
        ),
        // description and tags are set by send_command (snapshot::vss_parameters).
        Vss => (
            snapshot::VSS_DOCUMENT,
            [("description", "description"), ("tags", "tags")].to_vec(),
            &[
                ("ExcludeBootVolume", "False"),
                ("NoWriters", "False"),
                ("CopyOnly", "False"),
                ("CreateAmi", "False"),
            ],
        ),
        // Bucket, KeyPrefix, CaseId and BucketRegion are set by send_command (forensics::upload).
        Collect => (
            forensics::collect_document(os),
            ["Bucket", "KeyPrefix", "CaseId", "BucketRegion", "MaxLogMiB"]
                .map(|n| (n, n))
                .to_vec(),
            &[],
        ),
    };
    let mut params: BTreeMap<String, Vec<String>> = names
        .into_iter()
        .filter_map(|(from, to)| Some((to.to_string(), vec![parameters.get(from)?.clone()])))
        .collect();
    params.extend(fixed.iter().map(|(k, v)| (k.to_string(), vec![v.to_string()])));
    (document, params)
}

/// SendCommand: checks the procedure, its parameters and the instance's opt-in again (on fresh
/// facts, in the member account), then sends the command once per procedure execution (and
/// step). A Thaw is sent whatever the opt-in says now: it only undoes this execution's freeze,
/// and is not sent when there is none (no freeze was sent, or the instance no longer runs).
#[allow(clippy::too_many_arguments)]
pub async fn send_command<F: Fleet>(
    run: &Run,
    target: &Target,
    execution: &str,
    step: Option<CommandStep>,
    fleet: &F,
    log: &impl RunLog,
    settings: &Settings,
    catalogue: &Catalogue,
    now_s: i64,
) -> Result<CommandProgress, CoreError> {
    let procedure = catalogue.get(&run.procedure)?;
    let steps = CommandStep::of(procedure.kind);
    let fits = match step {
        None => steps.is_empty(),
        Some(s) => steps.contains(&s),
    };
    if !fits {
        return Err(CoreError::invalid(
            "Step",
            format!(
                "a {} procedure's SendCommand takes {}, not {step:?}",
                procedure.kind.as_str(),
                if steps.is_empty() {
                    "no Step".to_string()
                } else {
                    format!("a Step among {steps:?}")
                }
            ),
        ));
    }
    let given = serde_json::to_value(&run.parameters).expect("parameters serialize");
    let mut parameters = procedure.parameters(Some(&given))?;
    match step {
        Some(CommandStep::Collect) => parameters.extend(forensics::upload(run, target, settings)?),
        Some(CommandStep::Vss) => parameters.extend(snapshot::vss_parameters(run, target, execution, procedure)),
        _ => {}
    }
    let deadline_s = i64::from(procedure.timeouts.delivery_seconds) + i64::from(procedure.timeouts.execution_seconds) + 120;
    let progress = |command_id: String| CommandProgress {
        command_id,
        step,
        sent_at_epoch_s: now_s,
        poll: Poll::start(now_s, deadline_s, settings.poll).into(),
        done: false,
        result: None,
    };
    let nothing_to_thaw = |why: String| CommandProgress {
        done: true,
        result: Some(ProcedureResult::new(TargetStatus::Succeeded, format!("nothing to thaw: {why}"))),
        ..progress(String::new())
    };
    let key = |step: Option<CommandStep>| match step {
        None => execution.to_string(),
        Some(s) => format!("{execution}#{s:?}"),
    };
    if let Some(id) = log.sent_command(&key(step)).await? {
        return Ok(progress(id));
    }
    let thaw = step == Some(CommandStep::Thaw);
    if thaw && log.sent_command(&key(Some(CommandStep::Freeze))).await?.is_none() {
        return Ok(nothing_to_thaw("this execution sent no freeze".to_string()));
    }
    let member = fleet.member(&target.account, &target.region).await?;
    let facts = member.describe_instance(&target.instance_id).await?;
    if thaw && facts.state != InstanceState::Running {
        return Ok(nothing_to_thaw(format!("the instance is {} (a stop ends a freeze)", facts.state)));
    }
    if !thaw {
        check_opt_in(&target.instance_id, &facts.tags, procedure)?;
    }
    if facts.state != InstanceState::Running {
        return Err(CoreError::conflict(
            format!("instance {}", target.instance_id),
            format!("is {}, not running", facts.state),
        ));
    }
    let os = Os::from_platform(facts.platform);
    if !procedure.targets.platforms.contains(&os) {
        return Err(CoreError::unsupported(
            format!("instance {}", target.instance_id),
            format!("procedure {} does not run on {os:?}", procedure.name),
        ));
    }
    let spec = command_spec(procedure, &parameters, os, step, run, settings)?;
    tracing::info!(run = %run.id, instance = %target.instance_id, account = %target.account, document = %spec.document_name, "SendCommand");
    let command_id = member.send_command(&spec, &target.instance_id).await?;
    if let Some(earlier) = log.command(&key(step), &command_id, settings.expires_at(now_s)).await? {
        // Another attempt of this step sent first: keep that one, cancel this one.
        let _ = member.cancel_command(&command_id, &target.instance_id).await;
        return Ok(progress(earlier));
    }
    Ok(progress(command_id))
}

/// CheckCommand: watches the invocation (a reboot the script asks for keeps it InProgress, so
/// the watch carries on through it) until it ends, the instance stops, or the deadline passes;
/// then the result keeps the last lines of output — read from the S3 copy when SSM's window
/// cut the output — and the link to all of it.
#[allow(clippy::too_many_arguments)]
pub async fn check_command<F: Fleet>(
    target: &Target,
    progress: &CommandProgress,
    fleet: &F,
    objects: &impl Objects,
    settings: &Settings,
    clock: &impl Clock,
) -> Result<CommandProgress, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let watch = Watch::start(clock, settings.watch_s);
    let mut poll: Poll = (&progress.poll).into();
    let policy = match progress.step {
        Some(CommandStep::Freeze | CommandStep::Thaw | CommandStep::Vss) => PollPolicy::EVERY_SECOND,
        _ => settings.poll,
    };
    loop {
        let now_s = watch.now_s();
        let id = &progress.command_id;
        let ended = match member.get_invocation(id, &target.instance_id).await {
            Ok(inv) => match command_outcome(&inv, settings.tail_bytes) {
                CommandOutcome::Running => None,
                outcome => Some((outcome, inv)),
            },
            Err(CoreError::NotFound { detail, .. }) => {
                let elapsed = (now_s - progress.sent_at_epoch_s).max(0) as u64;
                let code = detail.split(':').next().unwrap_or_default();
                match invocation_lookup_error(code, &detail, elapsed, INVOCATION_GRACE_S) {
                    InvocationLookup::Pending => None,
                    InvocationLookup::Failed(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if let Some((outcome, inv)) = ended {
            return Ok(CommandProgress {
                done: true,
                result: Some(finished(id, outcome, &inv, objects, settings).await),
                poll: poll.into(),
                ..progress.clone()
            });
        }
        // Watched every second (a freeze, a thaw), the instance is looked at every 5th check:
        // at fleet scale, one DescribeInstances per target per second would throttle EC2.
        let look = policy != PollPolicy::EVERY_SECOND || poll.attempt.is_multiple_of(5);
        let stopped = match look {
            false => None,
            true => match member.describe_instance(&target.instance_id).await {
                Ok(i) if i.state.is_going_down() => Some(format!("the instance is {}", i.state)),
                Ok(_) => None,
                Err(CoreError::NotFound { .. }) => Some("the instance is gone".to_string()),
                Err(e) => return Err(e),
            },
        };
        let next = poll.next(now_s, policy, "the command", "it is still running");
        let end = match (stopped, next) {
            (Some(why), _) => Some((TargetStatus::Failed, format!("{why}: command {id} cannot finish"))),
            (None, Err(_)) => Some((
                TargetStatus::TimedOut,
                format!("command {id} outlived its delivery and execution timeouts"),
            )),
            (None, Ok(p)) => {
                poll = p;
                None
            }
        };
        if let Some((status, why)) = end {
            let note = match member.cancel_command(id, &target.instance_id).await {
                Ok(()) => "it was cancelled".to_string(),
                Err(e) => format!("cancelling it failed ({e})"),
            };
            let mut r = failed(format!("{why}; {note}"));
            r.status = status;
            r.command_id = Some(id.clone());
            return Ok(CommandProgress {
                done: true,
                result: Some(r),
                poll: poll.into(),
                ..progress.clone()
            });
        }
        if !watch.pause(&poll).await? {
            return Ok(CommandProgress {
                poll: poll.into(),
                ..progress.clone()
            });
        }
    }
}

async fn finished(
    command_id: &str,
    outcome: CommandOutcome,
    inv: &crate::facts::Invocation,
    objects: &impl Objects,
    settings: &Settings,
) -> ProcedureResult {
    let (status, exit_code, mut tail, reason) = match outcome {
        CommandOutcome::Succeeded { exit_code, tail } => (TargetStatus::Succeeded, Some(exit_code), tail, String::new()),
        CommandOutcome::Failed {
            status,
            exit_code,
            tail,
            reason,
        } => (
            match status.as_str() {
                "TimedOut" => TargetStatus::TimedOut,
                "Cancelled" => TargetStatus::Cancelled,
                _ => TargetStatus::Failed,
            },
            exit_code,
            tail,
            reason,
        ),
        CommandOutcome::Running => unreachable!("only ended outcomes"),
    };
    let cut = inv.stdout.chars().count() >= SSM_STDOUT_WINDOW || inv.stderr.chars().count() >= SSM_STDERR_WINDOW;
    if cut {
        // SSM kept the beginning; the end (where the error is) is in the S3 copy.
        let stdout = read_tail(&inv.stdout_url, objects, settings.tail_bytes).await;
        let stderr = read_tail(&inv.stderr_url, objects, settings.tail_bytes / 2).await;
        if let (Some(out), err) = (stdout, stderr) {
            tail = crate::command::tail(&out, &err.unwrap_or_default(), settings.tail_bytes);
        } else {
            tail = format!("(the output passed SSM's {SSM_STDOUT_WINDOW}-character window and its S3 copy could not be read; this is its beginning)\n{}", clip_chars(&inv.stdout, settings.tail_bytes / 2));
        }
    }
    let output_url = [&inv.stdout_url, &inv.stderr_url].into_iter().find(|u| !u.is_empty()).cloned();
    ProcedureResult {
        status,
        exit_code,
        output_tail: tail,
        output_url,
        reason,
        command_id: Some(command_id.to_string()),
        status_code: None,
        snapshots: Vec::new(),
    }
}

async fn read_tail(url: &str, objects: &impl Objects, bytes: usize) -> Option<String> {
    let (bucket, key) = s3_location(url)?;
    objects.tail(&bucket, &key, bytes).await.ok()
}

/// Bucket and key of an S3 URL, path style (`https://s3.<region>.amazonaws.com/<bucket>/<key>`)
/// or virtual-hosted style (`https://<bucket>.s3.<region>.amazonaws.com/<key>`).
pub fn s3_location(url: &str) -> Option<(String, String)> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let path = u.path().trim_start_matches('/');
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    if host.starts_with("s3.")
        || host.starts_with("s3-")
        || host == "s3.amazonaws.com"
        || u.port().is_some()
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        let (bucket, key) = path.split_once('/')?;
        Some((bucket.to_string(), decode(key)?))
    } else {
        let bucket = host.split(".s3").next()?;
        Some((bucket.to_string(), decode(path)?))
    }
}

/// Summarize's result (the summary itself is in S3: it can be large).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryRef {
    pub status: String,
    pub counts: Counts,
    pub subject: String,
    pub notify: bool,
    pub bucket: String,
    pub key: String,
    pub url: String,
    /// For the run's row (a DynamoDB number, as a string).
    pub expires_at: String,
}

/// Summarize: every target's row; a target of the list without one never started, a row still
/// Running means its execution ended without a record.
pub async fn summarize(
    run: &Run,
    targets: Option<&Resolved>,
    log: &impl RunLog,
    objects: &impl Objects,
    settings: &Settings,
    now_s: i64,
) -> Result<SummaryRef, CoreError> {
    let rows = log.targets(&run.id).await?;
    let mut results: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut t = r.result();
            if t.status == TargetStatus::Running {
                t.status = TargetStatus::Failed;
                t.reason = "the target's execution ended without recording a result".to_string();
            }
            t
        })
        .collect();
    if let Some(resolved) = targets.filter(|t| t.count > 0) {
        let listed: Vec<Target> = serde_json::from_str(&objects.get(&resolved.bucket, &resolved.key).await?)
            .map_err(|e| CoreError::invalid(&resolved.key, format!("is not a list of targets: {e}")))?;
        for t in listed {
            let key = target_key(&t);
            if !rows.iter().any(|r| r.target == key) {
                let mut r = row(run, &t, TargetStatus::NotStarted, now_s, settings).result();
                r.reason = "not started: the run ended before it".to_string();
                results.push(r);
            }
        }
    }
    let summary = Summary::new(&run.id, &run.procedure, results);
    let summary = match targets {
        Some(t) => summary.with_excluded(t.excluded_count, t.excluded.clone()),
        None => summary,
    };
    let key = run_key(run, "summary.json");
    objects.put(&settings.runs_bucket, &key, &summary.to_json().to_string()).await?;
    Ok(SummaryRef {
        status: summary.status.clone(),
        counts: summary.counts,
        subject: summary.publication().subject,
        notify: summary.should_notify(run.notify),
        url: format!("s3://{}/{key}", settings.runs_bucket),
        bucket: settings.runs_bucket.clone(),
        key,
        expires_at: settings.expires_at(now_s).to_string(),
    })
}

/// Notify: the summary, published.
pub async fn notify(summary: &SummaryRef, objects: &impl Objects, publisher: &impl AlertPublisher) -> Result<String, CoreError> {
    let text = objects.get(&summary.bucket, &summary.key).await?;
    let s: Summary = serde_json::from_str(&text).map_err(|e| CoreError::invalid(&summary.key, format!("is not a run summary: {e}")))?;
    publisher.publish(&s.publication()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_childs_cause_gives_back_the_command_result() {
        let result = json!({"Status": "Failed", "ExitCode": 2, "OutputTail": "E: boom", "OutputUrl": "https://s3.eu-west-1.amazonaws.com/b/k", "Reason": "the command exited with code 2", "CommandId": "c-1"});
        let child = json!({"ExecutionArn": "arn:aws:states:eu-west-1:1:execution:run-command:x", "Status": "FAILED", "Error": "CommandFailed", "Cause": result.to_string()});
        let (r, exec) = procedure_result(&json!({"Error": "States.TaskFailed", "Cause": child.to_string()}));
        assert_eq!(
            (r.status, r.exit_code, r.output_tail.as_str()),
            (TargetStatus::Failed, Some(2), "E: boom")
        );
        assert_eq!(exec.as_deref(), Some("arn:aws:states:eu-west-1:1:execution:run-command:x"));
    }

    #[test]
    fn other_failures_name_the_childs_error() {
        let child = json!({"Status": "FAILED", "Error": "Forbidden", "Cause": "Forbidden: i-1: it has not opted in"});
        let (r, _) = procedure_result(&json!({"Error": "States.TaskFailed", "Cause": child.to_string()}));
        assert_eq!(r.status, TargetStatus::Failed);
        assert_eq!(r.reason, "Forbidden: Forbidden: i-1: it has not opted in");
        let timed_out = json!({"Status": "TIMED_OUT"});
        assert_eq!(
            procedure_result(&json!({"Error": "States.TaskFailed", "Cause": timed_out.to_string()}))
                .0
                .status,
            TargetStatus::TimedOut
        );
        let (ok, _) = procedure_result(&json!({"Output": {"Status": "Succeeded", "ExitCode": 0}, "ExecutionArn": "e"}));
        assert_eq!(ok.status, TargetStatus::Succeeded);
    }

    #[test]
    fn home_is_read_from_an_execution_or_a_state_machine_arn() {
        for arn in [
            "arn:aws:states:eu-west-1:123456789012:execution:run-runbook:x",
            "arn:aws:states:eu-west-1:123456789012:stateMachine:run-runbook",
        ] {
            let h = home_of(arn).unwrap();
            assert_eq!((h.account.as_str(), h.region.as_str()), ("123456789012", "eu-west-1"));
        }
        assert!(home_of("arn:aws:lambda:eu-west-1:123456789012:function:f").is_err());
    }

    #[test]
    fn s3_urls_of_both_styles_give_bucket_and_key() {
        let k = (
            "out".to_string(),
            "output/p/r/c/i-1/awsrunShellScript/0.awsrunShellScript/stdout".to_string(),
        );
        assert_eq!(
            s3_location("https://s3.eu-west-1.amazonaws.com/out/output/p/r/c/i-1/awsrunShellScript/0.awsrunShellScript/stdout"),
            Some(k.clone())
        );
        assert_eq!(
            s3_location("https://out.s3.eu-west-1.amazonaws.com/output/p/r/c/i-1/awsrunShellScript/0.awsrunShellScript/stdout"),
            Some(k)
        );
        assert_eq!(
            s3_location("http://127.0.0.1:4566/b/a%20b"),
            Some(("b".to_string(), "a b".to_string()))
        );
        assert_eq!(s3_location("not a url"), None);
    }

    #[test]
    fn fixed_commands_go_as_the_shell_documents_commands_and_documents_get_typed_parameters() {
        let cat = Catalogue::builtin();
        let settings = Settings::new("runs");
        let v = validate(
            &json!({"Procedure": "disk-cleanup", "Targets": {"InstanceIds": ["i-0123456789abcdef0"]}}),
            "arn:aws:states:eu-west-1:123456789012:execution:run-runbook:nightly",
            "2026-12-06T03:00:00Z",
            &Settings {
                procedure_arns: BTreeMap::from([("run-command".to_string(), "arn:rc".to_string())]),
                ..settings.clone()
            },
            &cat,
        )
        .unwrap();
        assert_eq!(v.run.name, "nightly");
        let p = cat.get("disk-cleanup").unwrap();
        let spec = command_spec(p, &BTreeMap::new(), Os::Linux, None, &v.run, &settings).unwrap();
        assert_eq!(spec.document_name, "AWS-RunShellScript");
        assert_eq!(spec.parameters["executionTimeout"], vec!["900".to_string()]);
        assert_eq!(spec.timeout_seconds, 600);
        assert_eq!(spec.output_s3_prefix.as_deref(), Some("output/disk-cleanup/nightly"));
        let r = cat.get("restart-app").unwrap();
        let params = r.parameters(Some(&json!({"Service": "worker"}))).unwrap();
        let spec = command_spec(r, &params, Os::Linux, None, &v.run, &settings).unwrap();
        assert_eq!(spec.document_name, "opsflow-RestartService");
        assert_eq!(spec.parameters["Service"], vec!["worker".to_string()]);
        assert!(!spec.parameters.contains_key("commands"));
        // The clean-stop policy is the state machine's, never a document parameter.
        let c = cat.get("clean-stop").unwrap();
        let params = c
            .parameters(Some(&json!({"Services": "app worker", "OnPreStopFailure": "stop"})))
            .unwrap();
        let spec = command_spec(c, &params, Os::Linux, None, &v.run, &settings).unwrap();
        assert_eq!(spec.document_name, "opsflow-PreStop");
        assert_eq!(
            spec.parameters.keys().collect::<Vec<_>>(),
            ["Services", "StopTimeoutSeconds"].iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_kind_without_a_state_machine_or_connection_is_refused() {
        let cat = Catalogue::builtin();
        let settings = Settings::new("runs");
        let e = validate(
            &json!({"Procedure": "healthz"}),
            "arn:aws:states:eu-west-1:123456789012:execution:run-runbook:e",
            "t",
            &settings,
            &cat,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no state machine for kind http-check"), "{e}");
        let settings = Settings {
            procedure_arns: BTreeMap::from([("http-check".to_string(), "arn:hc".to_string())]),
            ..settings
        };
        let e = validate(
            &json!({"Procedure": "healthz"}),
            "arn:aws:states:eu-west-1:123456789012:execution:run-runbook:e",
            "t",
            &settings,
            &cat,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no EventBridge connection named \"healthz\""), "{e}");
    }
}
