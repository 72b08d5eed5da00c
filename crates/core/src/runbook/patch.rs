//! patch: a consistent snapshot first, AWS-RunPatchBaselineWithHooks (Install; a reboot it asks
//! for is carried through), the health check; on failure, optionally the root volume replaced
//! from the pre-patch snapshot (EC2's replace-root-volume task: no stop and start, the instance
//! keeps its id and addresses) and the health check again. [`conclude`] says which of these
//! happened.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalogue::{Catalogue, Kind};
use super::instance::{name_failed_checks, procedure_of, readiness_of};
use super::results::TargetStatus;
use super::snapshot::{End, StepError, TAG_INSTANCE, TAG_PROCEDURE};
use super::steps::{procedure_result, CommandProgress, PollState, ProcedureResult, Run, Settings};
use super::targets::Target;
use crate::alert::render::clip_chars;
use crate::error::CoreError;
use crate::ports::{Clock, Fleet, Member};
use crate::wait::{watch, Check, Poll, Watched};

/// AWS's patch document with lifecycle hooks (the hooks are SSM documents the catalogue names;
/// AWS-Noop by default).
pub const PATCH_DOCUMENT: &str = "AWS-RunPatchBaselineWithHooks";
/// The member stack's health check (start-and-check's).
pub const HEALTH_CHECK_DOCUMENT: &str = "opsflow-HealthCheck";

/// A rollback: the pre-patch snapshot of the root volume, the replace-root-volume task made from
/// it, and the wait until the task succeeded and the instance is ready again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RollbackProgress {
    /// The procedure's execution (the task's client token).
    pub execution: String,
    pub root_volume: String,
    pub snapshot_id: String,
    #[serde(default)]
    pub task_id: Option<String>,
    pub done: bool,
    pub poll: PollState,
    #[serde(default)]
    pub waiting_for: String,
}

/// Rollback: finds the pre-patch snapshot of the instance's root volume among the snapshots the
/// nested consistent-snapshot took (its `outcome`), and starts the wait that replaces the root
/// volume from it.
#[allow(clippy::too_many_arguments)]
pub async fn rollback<F: Fleet>(
    run: &Run,
    target: &Target,
    execution: &str,
    snapshot: &Value,
    fleet: &F,
    settings: &Settings,
    catalogue: &Catalogue,
    now_s: i64,
) -> Result<RollbackProgress, CoreError> {
    let procedure = procedure_of(run, &[Kind::Patch], catalogue)?;
    let (taken, _) = procedure_result(snapshot);
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    let facts = member.describe_instance(id).await?;
    let root = facts
        .root_device_name
        .as_ref()
        .and_then(|name| facts.block_devices.iter().find(|d| &d.device_name == name))
        .map(|d| d.volume_id.clone())
        .ok_or_else(|| CoreError::conflict(format!("instance {id}"), "has no EBS root volume to replace"))?;
    let ours = [(TAG_INSTANCE, id.as_str()), (TAG_PROCEDURE, procedure.name.as_str())].map(|(k, v)| (k.to_string(), v.to_string()));
    let snapshot_id = member
        .find_snapshots(&ours)
        .await?
        .into_iter()
        .find(|s| taken.snapshots.contains(&s.snapshot_id) && s.volume_id == root)
        .map(|s| s.snapshot_id)
        .ok_or_else(|| {
            CoreError::conflict(
                format!("instance {id}"),
                format!(
                    "the pre-patch snapshots ({}) hold none of its root volume {root}",
                    taken.snapshots.join(", ")
                ),
            )
        })?;
    let t = procedure.timeouts;
    let deadline_s = i64::from(t.snapshot_seconds) + i64::from(t.ready_seconds) + 600;
    Ok(RollbackProgress {
        execution: execution.to_string(),
        root_volume: root,
        snapshot_id,
        task_id: None,
        done: false,
        poll: Poll::start(now_s, deadline_s, settings.poll).into(),
        waiting_for: String::new(),
    })
}

/// CheckRollback: once the snapshot is completed, creates the replace-root-volume task (once:
/// its client token is the execution), waits until it succeeded, then until the rebooted
/// instance is ready (running, status checks passed, SSM Online). A failed task or snapshot
/// fails at once.
pub async fn check_rollback<F: Fleet>(
    target: &Target,
    progress: &RollbackProgress,
    fleet: &F,
    settings: &Settings,
    clock: &impl Clock,
) -> Result<RollbackProgress, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    // The task, once created: a check creates it and the next ones watch it.
    let task_id = std::sync::Mutex::new(progress.task_id.clone());
    let what = format!("instance {id} to be rolled back");
    let (member, task_ref) = (&member, &task_id);
    let watched = watch(
        clock,
        settings.watch_s,
        (&progress.poll).into(),
        settings.poll,
        &what,
        || async move {
            let current = task_ref.lock().expect("task id").clone();
            let task = match current {
                Some(task) => task,
                None => {
                    let tag = [(TAG_INSTANCE.to_string(), id.clone())];
                    let snapshot = member
                        .find_snapshots(&tag)
                        .await?
                        .into_iter()
                        .find(|s| s.snapshot_id == progress.snapshot_id);
                    match snapshot.as_ref().map(|s| s.state.as_str()) {
                        Some("completed") => {
                            let token = progress.execution.rsplit(':').next().unwrap_or(&progress.execution);
                            let task = member
                                .replace_root_volume(id, &progress.snapshot_id, &clip_chars(token, 64))
                                .await?;
                            tracing::info!(instance = %id, task = %task, snapshot = %progress.snapshot_id, "replacing the root volume");
                            *task_ref.lock().expect("task id") = Some(task.clone());
                            task
                        }
                        Some("error") | None => {
                            return Err(CoreError::conflict(
                                format!("snapshot {}", progress.snapshot_id),
                                "failed or is gone: there is nothing to roll back to",
                            ))
                        }
                        Some(state) => {
                            return Ok(Check::Waiting(format!(
                                "the pre-patch snapshot {} is {state}",
                                progress.snapshot_id
                            )))
                        }
                    }
                }
            };
            match member.replace_root_task(&task).await?.as_str() {
                "succeeded" => Ok(match readiness_of(member, id).await? {
                    Check::Waiting(why) => Check::Waiting(format!("root volume replaced; {why}")),
                    done => done,
                }),
                state @ ("failed" | "failed-detached") => Err(CoreError::conflict(
                    format!("replace root volume task {task}"),
                    format!("ended {state}: the instance keeps its patched root volume"),
                )),
                state => Ok(Check::Waiting(format!("replace root volume task {task} is {state}"))),
            }
        },
    )
    .await?;
    let task_id = task_id.into_inner().expect("task id");
    Ok(match watched {
        Watched::Done((), poll) => RollbackProgress {
            task_id,
            done: true,
            poll: poll.into(),
            waiting_for: String::new(),
            ..progress.clone()
        },
        Watched::Waiting(poll, why) => RollbackProgress {
            task_id,
            poll: poll.into(),
            waiting_for: why,
            ..progress.clone()
        },
    })
}

/// Everything the patch procedure's state holds at its end.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PatchConclusion {
    pub run: Run,
    /// The nested consistent-snapshot's outcome (`{"Output", …}` or `{"Error", "Cause"}`).
    #[serde(default)]
    pub snapshot: Option<Value>,
    #[serde(default)]
    pub patch: Option<CommandProgress>,
    #[serde(default)]
    pub patch_error: Option<StepError>,
    #[serde(default)]
    pub health: Option<CommandProgress>,
    #[serde(default)]
    pub health_error: Option<StepError>,
    #[serde(default)]
    pub rollback: Option<RollbackProgress>,
    #[serde(default)]
    pub rollback_error: Option<StepError>,
    #[serde(default)]
    pub recheck: Option<CommandProgress>,
    #[serde(default)]
    pub recheck_error: Option<StepError>,
}

/// A command step's outcome: its result, or its step's error as a failed result.
fn outcome(p: &Option<CommandProgress>, e: &Option<StepError>) -> Option<ProcedureResult> {
    match (p.as_ref().and_then(|p| p.result.clone()), e) {
        (_, Some(e)) => Some(ProcedureResult::new(TargetStatus::Failed, format!("{}: {}", e.error, e.cause))),
        (r, None) => r,
    }
}

fn ok(r: &ProcedureResult) -> bool {
    r.status == TargetStatus::Succeeded
}

/// Conclude: patched and healthy (success), or which of the snapshot, patch, health check,
/// rollback and health check after it failed or happened. Error names: `SnapshotFailed`
/// (nothing was patched), `PatchFailed` / `HealthCheckFailed` (not rolled back), `RolledBack`
/// (rolled back and healthy again), `RollbackFailed`, `UnhealthyAfterRollback`.
pub fn conclude(c: &PatchConclusion) -> End {
    let snapshot = c.snapshot.as_ref().map(|s| procedure_result(s).0);
    let patch = outcome(&c.patch, &c.patch_error);
    let checked = |p, e| {
        outcome(p, e).map(|mut r| {
            name_failed_checks(&mut r);
            r
        })
    };
    let (health, recheck) = (checked(&c.health, &c.health_error), checked(&c.recheck, &c.recheck_error));
    let mut r = ProcedureResult::new(TargetStatus::Succeeded, "");
    r.snapshots = snapshot.as_ref().map(|s| s.snapshots.clone()).unwrap_or_default();
    if let Some(p) = &patch {
        r.exit_code = p.exit_code;
        r.output_tail = p.output_tail.clone();
        r.output_url = p.output_url.clone();
        r.command_id = p.command_id.clone();
    }
    let snapshots = if r.snapshots.is_empty() {
        String::new()
    } else {
        format!("; pre-patch snapshots: {}", r.snapshots.join(", "))
    };
    let failed = |error: &str, reason: String, mut r: ProcedureResult| {
        r.status = TargetStatus::Failed;
        r.reason = clip_chars(&reason, 1_024);
        End {
            ok: false,
            result: None,
            error: Some(error.to_string()),
            cause: Some(serde_json::to_string(&r).expect("a result serializes")),
        }
    };
    let Some(snap) = snapshot.filter(ok) else {
        let why = c
            .snapshot
            .as_ref()
            .map(|s| procedure_result(s).0.reason)
            .unwrap_or_else(|| "it never ran".to_string());
        return failed(
            "SnapshotFailed",
            format!("not patched: the pre-patch snapshot did not succeed: {why}"),
            r,
        );
    };
    let (first, what) = match (&patch, &health) {
        (Some(p), Some(h)) if ok(p) && ok(h) => {
            r.reason = clip_chars(&format!("patched and healthy{snapshots} ({})", snap.reason), 1_024);
            return End {
                ok: true,
                result: Some(r),
                error: None,
                cause: None,
            };
        }
        (Some(p), _) if !ok(p) => ("PatchFailed", format!("the patch failed: {}", p.reason)),
        (None, _) => ("PatchFailed", "the patch never ran".to_string()),
        (_, Some(h)) => ("HealthCheckFailed", format!("patched, but the health check failed: {}", h.reason)),
        (_, None) => ("HealthCheckFailed", "patched, but the health check never ran".to_string()),
    };
    match (&c.rollback, &c.rollback_error, &recheck) {
        (_, Some(e), _) => failed(
            "RollbackFailed",
            format!("{what}; the rollback failed ({}: {}){snapshots}", e.error, e.cause),
            r,
        ),
        (Some(rb), None, Some(h)) if rb.done && ok(h) => failed(
            "RolledBack",
            format!(
                "{what}; rolled back: root volume {} replaced from {} (task {}), healthy again",
                rb.root_volume,
                rb.snapshot_id,
                rb.task_id.as_deref().unwrap_or("?")
            ),
            r,
        ),
        (Some(rb), None, Some(h)) => failed(
            "UnhealthyAfterRollback",
            format!(
                "{what}; rolled back: root volume {} replaced from {}, but the health check after it failed: {}",
                rb.root_volume, rb.snapshot_id, h.reason
            ),
            r,
        ),
        _ => failed(first, format!("{what}; not rolled back (Rollback=false){snapshots}"), r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conclusion(extra: Value) -> PatchConclusion {
        let mut state = json!({
            "Run": {
                "Id": "arn:aws:states:eu-west-1:111122223333:execution:opsflow-run-runbook:r1",
                "Name": "r1", "StartedAt": "2026-12-06T10:00:00Z", "Procedure": "patch", "Kind": "patch",
                "Parameters": {"Rollback": "true"}, "MaxConcurrency": "1", "MaxErrors": "0",
                "Notify": "OnFailure", "DryRun": false, "StartedBy": "ann", "ProcedureArn": "arn:p"
            },
            "Snapshot": {"Output": {"Status": "Succeeded", "Reason": "1 snapshot, application-consistent, pending: snap-1 (vol-1)",
                                    "Snapshots": ["snap-1"]}, "ExecutionArn": "arn:x"},
            "Patch": {"CommandId": "c1", "SentAtEpochS": 0, "Done": true,
                      "Poll": {"Attempt": 0, "DelaySeconds": 1, "DeadlineEpochS": 0},
                      "Result": {"Status": "Succeeded", "ExitCode": 0, "OutputTail": "Installed 3 packages", "Reason": ""}},
            "Health": {"CommandId": "c2", "SentAtEpochS": 0, "Done": true,
                       "Poll": {"Attempt": 0, "DelaySeconds": 1, "DeadlineEpochS": 0},
                       "Result": {"Status": "Succeeded", "ExitCode": 0, "OutputTail": "PASS unit:app: active", "Reason": ""}}
        });
        state.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(state).unwrap()
    }

    fn failed_health() -> Value {
        json!({"CommandId": "c2", "SentAtEpochS": 0, "Done": true,
               "Poll": {"Attempt": 0, "DelaySeconds": 1, "DeadlineEpochS": 0},
               "Result": {"Status": "Failed", "ExitCode": 1, "OutputTail": "FAIL unit:app: inactive\n", "Reason": "exit 1"}})
    }

    fn cause(end: &End) -> ProcedureResult {
        serde_json::from_str(end.cause.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn patched_and_healthy_keeps_the_patch_output_and_the_snapshots() {
        let end = conclude(&conclusion(json!({})));
        assert!(end.ok);
        let r = end.result.unwrap();
        assert!(
            r.reason.starts_with("patched and healthy; pre-patch snapshots: snap-1"),
            "{}",
            r.reason
        );
        assert_eq!(r.output_tail, "Installed 3 packages");
    }

    #[test]
    fn each_way_to_fail_is_named_and_says_what_happened() {
        let end = conclude(&conclusion(
            json!({"Snapshot": {"Error": "States.TaskFailed", "Cause": "FreezeFailed: busy"}}),
        ));
        assert_eq!(end.error.as_deref(), Some("SnapshotFailed"));
        assert!(cause(&end).reason.starts_with("not patched"), "{:?}", cause(&end));

        let end = conclude(&conclusion(json!({"Health": failed_health(), "Run": {
            "Id": "r", "Name": "r1", "StartedAt": "t", "Procedure": "patch", "Kind": "patch",
            "Parameters": {"Rollback": "false"}, "MaxConcurrency": "1", "MaxErrors": "0",
            "Notify": "OnFailure", "DryRun": false, "StartedBy": "ann", "ProcedureArn": "arn:p"}})));
        assert_eq!(end.error.as_deref(), Some("HealthCheckFailed"));
        let reason = cause(&end).reason;
        assert!(reason.contains("health check failed: unit:app: inactive"), "{reason}");
        assert!(reason.contains("not rolled back (Rollback=false)"), "{reason}");

        let rollback = json!({"Execution": "arn:e", "RootVolume": "vol-1", "SnapshotId": "snap-1", "TaskId": "replacevol-1",
                              "Done": true, "Poll": {"Attempt": 0, "DelaySeconds": 1, "DeadlineEpochS": 0}});
        let healthy = json!({"CommandId": "c3", "SentAtEpochS": 0, "Done": true,
                             "Poll": {"Attempt": 0, "DelaySeconds": 1, "DeadlineEpochS": 0},
                             "Result": {"Status": "Succeeded", "ExitCode": 0, "Reason": ""}});
        let end = conclude(&conclusion(
            json!({"Health": failed_health(), "Rollback": rollback, "Recheck": healthy}),
        ));
        assert_eq!(end.error.as_deref(), Some("RolledBack"));
        let reason = cause(&end).reason;
        assert!(
            reason.contains("rolled back: root volume vol-1 replaced from snap-1 (task replacevol-1), healthy again"),
            "{reason}"
        );

        let end = conclude(&conclusion(
            json!({"Health": failed_health(), "Rollback": rollback, "Recheck": failed_health()}),
        ));
        assert_eq!(end.error.as_deref(), Some("UnhealthyAfterRollback"));

        let end = conclude(&conclusion(json!({"Health": failed_health(),
            "RollbackError": {"Error": "Conflict", "Cause": "task ended failed"}})));
        assert_eq!(end.error.as_deref(), Some("RollbackFailed"));
    }
}
