//! The runbook functions as one JSON-in, JSON-out entry point per function name: the deployed
//! Lambdas (thin mains) and the local engine call the same [`invoke`].

use serde::Deserialize;
use serde_json::{json, Value};

use super::catalogue::{Catalogue, Kind};
use super::forensics::{self, Hold};
use super::instance::{self, Change, InstanceProgress, Quiet};
use super::patch::{self, PatchConclusion, RollbackProgress};
use super::snapshot::{self, Conclusion, SnapshotSet};
use super::steps::{self, CommandProgress, CommandStep, ProcedureResult, Resolved, Run, Scope, Settings, SummaryRef};
use super::targets::Target;
use crate::alert::AlertPublisher;
use crate::error::CoreError;
use crate::ports::{Clock, Fleet, Objects, RunLog};

/// The task functions of the runner and the procedures (their `${Runbook<Name>FunctionArn}`).
pub const TASK_FUNCTIONS: [&str; 11] = [
    "Validate",
    "Resolve",
    "Admit",
    "Record",
    "Summarize",
    "Notify",
    "SendCommand",
    "CheckCommand",
    "Instance",
    "Snapshot",
    "Forensics",
];

/// The placeholder of a function's ARN in the state machine files.
pub fn placeholder(function: &str) -> String {
    format!("${{Runbook{function}FunctionArn}}")
}

/// The AWS ports one function uses ([`crate::Unused`] for the others).
pub struct RunbookPorts<F, O, L, P> {
    pub fleet: F,
    pub objects: O,
    pub log: L,
    pub publisher: P,
}

fn parse<T: for<'de> Deserialize<'de>>(function: &str, payload: Value) -> Result<T, CoreError> {
    serde_json::from_value(payload).map_err(|e| CoreError::invalid(format!("{function} input"), e.to_string()))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, CoreError> {
    serde_json::to_value(v).map_err(|e| CoreError::transient("serialize", e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ValidateInput {
    input: Value,
    execution: String,
    start_time: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResolveInput {
    run: Run,
    scope: Scope,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AdmitInput {
    run: Run,
    target: Target,
    allowed_errors: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordInput {
    run: Run,
    target: Target,
    outcome: Value,
    #[serde(default)]
    started_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendInput {
    run: Run,
    target: Target,
    execution: String,
    /// consistent-snapshot: which of its commands.
    #[serde(default)]
    step: Option<CommandStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckInput {
    target: Target,
    command: CommandProgress,
    #[serde(default)]
    run: Option<Run>,
}

/// The maintenance procedures' instance steps, one function: `Action` says which.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceInput {
    action: String,
    run: Run,
    target: Target,
    #[serde(default)]
    progress: Option<InstanceProgress>,
    /// clean-stop: the pre-stop script's result, for the final result.
    #[serde(default)]
    pre_stop: Option<ProcedureResult>,
    /// Quiet: the procedure's execution (names the mute rule).
    #[serde(default)]
    execution: Option<String>,
    /// Restore: what Quiet muted.
    #[serde(default)]
    quiet: Option<Quiet>,
}

/// consistent-snapshot's and patch's snapshot steps, one function: `Action` says which.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnapshotInput {
    action: String,
    #[serde(default)]
    run: Option<Run>,
    #[serde(default)]
    target: Option<Target>,
    /// Take: the execution (tags the snapshots) and the freeze's result.
    #[serde(default)]
    execution: Option<String>,
    #[serde(default)]
    freeze: Option<ProcedureResult>,
    /// Check, Prune: the snapshots taken.
    #[serde(default)]
    snapshots: Option<SnapshotSet>,
    /// Take: which attempt this is (`$$.State.RetryCount`; 0 the first).
    #[serde(default)]
    attempt: u32,
    /// Rollback: the nested consistent-snapshot's outcome.
    #[serde(default)]
    snapshot: Option<Value>,
    /// CheckRollback: the rollback so far.
    #[serde(default)]
    rollback: Option<RollbackProgress>,
    /// Conclude, ConcludePatch: the procedure's whole state.
    #[serde(default)]
    state: Option<Value>,
}

/// forensic-capture's steps, one function: `Action` says which.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ForensicsInput {
    action: String,
    #[serde(default)]
    run: Option<Run>,
    #[serde(default)]
    target: Option<Target>,
    /// Preserve: the execution (tags the snapshots) and which attempt this is.
    #[serde(default)]
    execution: Option<String>,
    #[serde(default)]
    attempt: u32,
    /// Heartbeat: the lifecycle action held so far.
    #[serde(default)]
    hold: Option<Hold>,
    /// Conclude: the procedure's whole state.
    #[serde(default)]
    state: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SummarizeInput {
    run: Run,
    #[serde(default)]
    targets: Option<Resolved>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NotifyInput {
    summary: SummaryRef,
}

/// Runs the task function `function` on `payload`.
pub async fn invoke<F: Fleet, O: Objects, L: RunLog, P: AlertPublisher>(
    function: &str,
    ports: &RunbookPorts<F, O, L, P>,
    settings: &Settings,
    catalogue: &Catalogue,
    payload: Value,
    clock: &impl Clock,
) -> Result<Value, CoreError> {
    let now_s = clock.now_ms().div_euclid(1000);
    match function {
        "Validate" => {
            let i: ValidateInput = parse(function, payload)?;
            to_value(&steps::validate(&i.input, &i.execution, &i.start_time, settings, catalogue)?)
        }
        "Resolve" => {
            let i: ResolveInput = parse(function, payload)?;
            to_value(&steps::resolve(&i.run, &i.scope, &ports.fleet, &ports.objects, settings, catalogue).await?)
        }
        "Admit" => {
            let i: AdmitInput = parse(function, payload)?;
            to_value(&steps::admit(&i.run, &i.target, i.allowed_errors, &ports.log, settings, now_s).await?)
        }
        "Record" => {
            let i: RecordInput = parse(function, payload)?;
            let status = steps::record(&i.run, &i.target, &i.outcome, i.started_at.as_deref(), &ports.log, settings, now_s).await?;
            Ok(json!({"Status": status.as_str()}))
        }
        "SendCommand" => {
            let i: SendInput = parse(function, payload)?;
            to_value(
                &steps::send_command(
                    &i.run,
                    &i.target,
                    &i.execution,
                    i.step,
                    &ports.fleet,
                    &ports.log,
                    settings,
                    catalogue,
                    now_s,
                )
                .await?,
            )
        }
        "CheckCommand" => {
            let i: CheckInput = parse(function, payload)?;
            let mut p = steps::check_command(&i.target, &i.command, &ports.fleet, &ports.objects, settings, clock).await?;
            if let (Some(r), Some(Kind::StartAndCheck)) = (p.result.as_mut(), i.run.map(|r| r.kind)) {
                instance::name_failed_checks(r);
            }
            to_value(&p)
        }
        "Instance" => {
            let i: InstanceInput = parse(function, payload)?;
            let waiting = |what: &str| {
                i.progress
                    .clone()
                    .ok_or_else(|| CoreError::invalid(format!("{function} input"), format!("{what} needs Progress")))
            };
            let p = match i.action.as_str() {
                "Start" => instance::change(Change::Start, &i.run, &i.target, &ports.fleet, settings, catalogue, now_s).await?,
                "CheckReady" => instance::check_ready(&i.target, &waiting("CheckReady")?, &ports.fleet, settings, clock).await?,
                "Stop" => instance::change(Change::Stop, &i.run, &i.target, &ports.fleet, settings, catalogue, now_s).await?,
                "CheckStopped" => {
                    instance::check_stopped(
                        &i.target,
                        &waiting("CheckStopped")?,
                        i.pre_stop.as_ref(),
                        &ports.fleet,
                        settings,
                        clock,
                    )
                    .await?
                }
                "Quiet" => {
                    let execution = i
                        .execution
                        .as_deref()
                        .ok_or_else(|| CoreError::invalid("Execution", "Quiet needs it"))?;
                    return to_value(&instance::quiet(&i.run, &i.target, execution, &ports.fleet, catalogue, now_s).await?);
                }
                "Restore" => {
                    let quiet = i.quiet.as_ref().ok_or_else(|| CoreError::invalid("Quiet", "Restore needs it"))?;
                    instance::restore(&i.target, quiet, &ports.fleet).await?;
                    return Ok(json!({"Restored": quiet.rule_name.is_some()}));
                }
                other => {
                    return Err(CoreError::invalid(
                        "Action",
                        format!("{other:?} is not an instance step (Start, CheckReady, Stop, CheckStopped, Quiet, Restore)"),
                    ))
                }
            };
            to_value(&p)
        }
        "Snapshot" => {
            let i: SnapshotInput = parse(function, payload)?;
            let need = |field: &str| CoreError::invalid(field, format!("{} needs it", i.action));
            match i.action.as_str() {
                "Conclude" => {
                    let c: Conclusion = parse(function, i.state.ok_or_else(|| need("State"))?)?;
                    return to_value(&snapshot::conclude(&c));
                }
                "ConcludePatch" => {
                    let c: PatchConclusion = parse(function, i.state.ok_or_else(|| need("State"))?)?;
                    return to_value(&patch::conclude(&c));
                }
                _ => {}
            }
            let run = i.run.as_ref().ok_or_else(|| need("Run"))?;
            let target = i.target.as_ref().ok_or_else(|| need("Target"))?;
            let set = || i.snapshots.as_ref().ok_or_else(|| need("Snapshots"));
            match i.action.as_str() {
                "Take" => {
                    let execution = i.execution.as_deref().ok_or_else(|| need("Execution"))?;
                    let freeze = i.freeze.as_ref().ok_or_else(|| need("Freeze"))?;
                    to_value(&snapshot::take(run, target, execution, freeze, i.attempt, &ports.fleet, settings, catalogue, clock).await?)
                }
                "Check" => to_value(&snapshot::check(target, set()?, &ports.fleet, settings, clock).await?),
                "Prune" => to_value(&snapshot::prune(run, target, set()?, &ports.fleet, catalogue, now_s).await?),
                "Rollback" => {
                    let execution = i.execution.as_deref().ok_or_else(|| need("Execution"))?;
                    let taken = i.snapshot.as_ref().ok_or_else(|| need("Snapshot"))?;
                    to_value(&patch::rollback(run, target, execution, taken, &ports.fleet, settings, catalogue, now_s).await?)
                }
                "CheckRollback" => {
                    let p = i.rollback.as_ref().ok_or_else(|| need("Rollback"))?;
                    to_value(&patch::check_rollback(target, p, &ports.fleet, settings, clock).await?)
                }
                other => Err(CoreError::invalid(
                    "Action",
                    format!("{other:?} is not a snapshot step (Take, Check, Prune, Conclude, Rollback, CheckRollback, ConcludePatch)"),
                )),
            }
        }
        "Forensics" => {
            let i: ForensicsInput = parse(function, payload)?;
            let need = |field: &str| CoreError::invalid(field, format!("{} needs it", i.action));
            if i.action == "Conclude" {
                let c: forensics::Conclusion = parse(function, i.state.ok_or_else(|| need("State"))?)?;
                return to_value(&forensics::conclude(&c));
            }
            let run = i.run.as_ref().ok_or_else(|| need("Run"))?;
            let target = i.target.as_ref().ok_or_else(|| need("Target"))?;
            match i.action.as_str() {
                "Begin" => to_value(&forensics::begin(run, target, &ports.fleet, now_s).await?),
                "Heartbeat" => {
                    let hold = i.hold.as_ref().ok_or_else(|| need("Hold"))?;
                    to_value(&forensics::heartbeat(run, target, hold, &ports.fleet, now_s).await?)
                }
                "Verify" => to_value(&forensics::verify(run, target, settings, &ports.objects).await?),
                "Preserve" => {
                    let execution = i.execution.as_deref().ok_or_else(|| need("Execution"))?;
                    to_value(&forensics::preserve(run, target, execution, i.attempt, &ports.fleet, catalogue, clock).await?)
                }
                "Isolate" => to_value(&forensics::isolate(run, target, &ports.fleet, catalogue).await?),
                "Complete" => to_value(&forensics::complete(run, target, &ports.fleet).await?),
                other => Err(CoreError::invalid(
                    "Action",
                    format!("{other:?} is not a forensics step (Begin, Heartbeat, Verify, Preserve, Isolate, Complete, Conclude)"),
                )),
            }
        }
        "Summarize" => {
            let i: SummarizeInput = parse(function, payload)?;
            to_value(&steps::summarize(&i.run, i.targets.as_ref(), &ports.log, &ports.objects, settings, now_s).await?)
        }
        "Notify" => {
            let i: NotifyInput = parse(function, payload)?;
            let id = steps::notify(&i.summary, &ports.objects, &ports.publisher).await?;
            Ok(json!({"MessageId": id}))
        }
        other => Err(CoreError::invalid(
            "function",
            format!("{other:?} is not a runbook function ({})", TASK_FUNCTIONS.join(", ")),
        )),
    }
}
