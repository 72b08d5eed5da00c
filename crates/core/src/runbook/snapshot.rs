//! consistent-snapshot: application hooks and a freeze, CreateSnapshots of every volume, then
//! the thaw on every path.
//!
//! The member stack's `opsflow-Freeze` runs the pre-snapshot hooks, arms an on-instance watchdog
//! (it thaws after `WatchdogSeconds` whatever happens to the procedure, its functions or the
//! network), then freezes the data file systems. [`take`] calls CreateSnapshots as soon as the
//! freeze has succeeded (the snapshots' point in time is fixed when the call returns; `pending`
//! is fine), then the state machine sends `opsflow-Thaw` at once, which thaws and runs the
//! post-snapshot hooks. Every failure after the freeze was sent goes through the thaw; a thaw
//! that does not succeed leaves the watchdog to it, and the procedure waits for the watchdog
//! before it ends. [`conclude`] turns what happened into the result, naming the first step that
//! failed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalogue::{Catalogue, Kind, Os, Procedure, ON_FREEZE_FAILURE};
use super::instance::procedure_of;
use super::results::TargetStatus;
use super::steps::{CommandProgress, PollState, ProcedureResult, Run, Settings};
use super::targets::{check_opt_in, Target};
use crate::alert::render::clip_chars;
use crate::error::CoreError;
use crate::facts::{InstanceState, SnapshotFacts};
use crate::ports::{Clock, Fleet, Member, SnapshotRequest};
use crate::wait::{watch, Check, Poll, Watched};

/// How long a snapshot CreateSnapshots returned may be missing from DescribeSnapshots.
pub const LISTING_GRACE_S: i64 = 60;
/// How many more times (a second apart) a retried Take looks for its snapshots.
const RETRY_LOOKS: u32 = 3;

/// The member stack's documents (`infra/member-account.yaml`).
pub const FREEZE_DOCUMENT: &str = "opsflow-Freeze";
pub const THAW_DOCUMENT: &str = "opsflow-Thaw";
/// AWS's VSS snapshot document (Windows): it takes and tags the snapshots itself.
pub const VSS_DOCUMENT: &str = "AWSEC2-CreateVssSnapshot";

/// `opsflow-Freeze` exits 3 when a pre-snapshot hook failed (nothing was frozen), 4 when the
/// freeze failed (it thawed what it had frozen); `opsflow-Thaw` exits 5 when a file system
/// could not be thawed (the watchdog will), 6 when a post-snapshot hook failed (all thawed).
pub const EXIT_PRE_HOOK: i32 = 3;
pub const EXIT_FREEZE: i32 = 4;
pub const EXIT_THAW: i32 = 5;
pub const EXIT_POST_HOOK: i32 = 6;

/// The tags every snapshot of the procedure carries. The member role may delete only
/// snapshots tagged `opsflow:kind=consistent-snapshot`.
pub const TAG_KIND: &str = "opsflow:kind";
pub const TAG_PROCEDURE: &str = "opsflow:procedure";
pub const TAG_INSTANCE: &str = "opsflow:instance";
pub const TAG_RUN: &str = "opsflow:run";
pub const TAG_EXECUTION: &str = "opsflow:execution";
pub const TAG_CONSISTENCY: &str = "opsflow:consistency";

/// What the snapshots hold: the file systems frozen (after the hooks), or only crash-consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    ApplicationConsistent,
    CrashConsistent,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::ApplicationConsistent => "application-consistent",
            Consistency::CrashConsistent => "crash-consistent",
        }
    }
}

/// The snapshots one execution took, and the wait for them to complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotSet {
    /// The execution that took them (their `opsflow:execution` tag).
    pub execution: String,
    /// `snap-…` per volume, in the order of `VolumeIds`.
    pub snapshot_ids: Vec<String>,
    pub volume_ids: Vec<String>,
    pub consistency: Consistency,
    pub started_at: String,
    /// When CreateSnapshots answered (epoch seconds).
    pub taken_at_epoch_s: i64,
    /// Whether every snapshot is `completed`.
    pub done: bool,
    pub poll: PollState,
    #[serde(default)]
    pub waiting_for: String,
}

/// A freeze is trusted to hold until this many seconds before its watchdog's time.
pub const WATCHDOG_MARGIN_S: i64 = 2;

/// When the freeze armed its watchdog (its `ARMED <epoch seconds>` line), if it says.
fn armed_at(freeze: &ProcedureResult) -> Option<i64> {
    freeze
        .output_tail
        .lines()
        .find_map(|l| l.trim().strip_prefix("ARMED ")?.split(':').next()?.trim().parse().ok())
}

/// What the freeze's result allows at `now_s`: an application-consistent snapshot, a
/// crash-consistent one (the freeze itself failed, or its watchdog has thawed or is about to,
/// and `OnFreezeFailure` is `crash-consistent`), or none.
pub fn consistency(run: &Run, freeze: &ProcedureResult, windows: bool, now_s: i64) -> Result<Consistency, CoreError> {
    let fallback = run.parameters.get(ON_FREEZE_FAILURE).map(String::as_str) == Some("crash-consistent");
    if freeze.status == TargetStatus::Succeeded {
        let watchdog_s: i64 = run.parameters.get("WatchdogSeconds").and_then(|w| w.parse().ok()).unwrap_or(0);
        let expired = armed_at(freeze).is_some_and(|armed| now_s >= armed + watchdog_s - WATCHDOG_MARGIN_S);
        return match (expired, fallback) {
            (false, _) => Ok(Consistency::ApplicationConsistent),
            (true, true) => Ok(Consistency::CrashConsistent),
            (true, false) => Err(CoreError::conflict(
                "the freeze",
                format!("its watchdog ({watchdog_s} s) thawed before CreateSnapshots could be called: raise WatchdogSeconds, or allow OnFreezeFailure=crash-consistent"),
            )),
        };
    }
    if (freeze.exit_code == Some(EXIT_FREEZE) || windows) && fallback {
        return Ok(Consistency::CrashConsistent);
    }
    Err(CoreError::conflict(
        "the freeze",
        format!(
            "did not succeed ({}), and only a failed freeze itself with OnFreezeFailure=crash-consistent allows a snapshot",
            freeze.reason
        ),
    ))
}

/// The tags and description of this execution's snapshots of the instance.
fn snapshot_tags(run: &Run, target: &Target, execution: &str, procedure: &Procedure, consistency: Consistency) -> SnapshotRequest {
    let id = &target.instance_id;
    let tags = [
        (TAG_KIND, Kind::ConsistentSnapshot.as_str()),
        (TAG_PROCEDURE, procedure.name.as_str()),
        (TAG_INSTANCE, id.as_str()),
        (TAG_RUN, run.name.as_str()),
        (TAG_EXECUTION, execution),
        (TAG_CONSISTENCY, consistency.as_str()),
    ];
    SnapshotRequest {
        instance_id: id.clone(),
        description: clip_chars(
            &format!(
                "opsflow {} ({}) of {id}: run {} started {} by {}",
                procedure.name,
                consistency.as_str(),
                run.name,
                run.started_at,
                run.started_by
            ),
            255,
        ),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// `AWSEC2-CreateVssSnapshot`'s `description` and `tags` (`Key=…,Value=…;…`): the instance tags
/// the snapshots as this execution's, so Take finds them and Prune may delete them later.
pub fn vss_parameters(run: &Run, target: &Target, execution: &str, procedure: &Procedure) -> BTreeMap<String, String> {
    let request = snapshot_tags(run, target, execution, procedure, Consistency::ApplicationConsistent);
    // The document splits on ';' and ',' and '=': keep them out of the values.
    let clean = |v: &str| v.replace([';', ',', '='], "_");
    let tags: Vec<String> = request
        .tags
        .iter()
        .map(|(k, v)| format!("Key={},Value={}", clean(k), clean(v)))
        .collect();
    BTreeMap::from([
        ("description".to_string(), clean(&request.description)),
        ("tags".to_string(), tags.join(";")),
    ])
}

/// Take: CreateSnapshots of every volume of the instance, tagged at creation; a retry finds the
/// snapshots this execution took and takes no more.
#[allow(clippy::too_many_arguments)]
pub async fn take<F: Fleet>(
    run: &Run,
    target: &Target,
    execution: &str,
    freeze: &ProcedureResult,
    attempt: u32,
    fleet: &F,
    settings: &Settings,
    catalogue: &Catalogue,
    clock: &impl Clock,
) -> Result<SnapshotSet, CoreError> {
    let now_s = clock.now_ms().div_euclid(1000);
    let procedure = procedure_of(run, &[Kind::ConsistentSnapshot, Kind::Patch], catalogue)?;
    let consistency = consistency(run, freeze, target.platform == Os::Windows, now_s)?;
    let vss = target.platform == Os::Windows && freeze.status == TargetStatus::Succeeded;
    let mut snapshots = match vss {
        // The VSS document took them: find them (DescribeSnapshots may lag), never take a
        // crash-consistent set in their place.
        true => find_vss_snapshots(target, execution, fleet, clock).await?,
        false => {
            let request = snapshot_tags(run, target, execution, procedure, consistency);
            create_once(target, execution, procedure, &request, attempt, fleet, clock).await?
        }
    };
    snapshots.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    Ok(SnapshotSet {
        execution: execution.to_string(),
        snapshot_ids: snapshots.iter().map(|s| s.snapshot_id.clone()).collect(),
        volume_ids: snapshots.iter().map(|s| s.volume_id.clone()).collect(),
        consistency,
        started_at: crate::time::format_utc(snapshots.iter().map(|s| s.start_time_epoch_s).min().unwrap_or(now_s)),
        done: false,
        poll: Poll::start(now_s, i64::from(procedure.timeouts.snapshot_seconds), settings.poll).into(),
        taken_at_epoch_s: now_s,
        waiting_for: String::new(),
    })
}

/// The snapshots tagged as this execution's; while there are none, up to `more_looks` more
/// looks a second apart (DescribeSnapshots lists new snapshots late).
async fn find_mine(member: &impl Member, execution: &str, more_looks: u32, clock: &impl Clock) -> Result<Vec<SnapshotFacts>, CoreError> {
    let mine = [(TAG_EXECUTION.to_string(), execution.to_string())];
    let mut found = member.find_snapshots(&mine).await?;
    for _ in 0..more_looks {
        if !found.is_empty() {
            break;
        }
        clock.sleep(1_000).await?;
        found = member.find_snapshots(&mine).await?;
    }
    Ok(found)
}

/// The snapshots `AWSEC2-CreateVssSnapshot` took and tagged as this execution's.
async fn find_vss_snapshots<F: Fleet>(
    target: &Target,
    execution: &str,
    fleet: &F,
    clock: &impl Clock,
) -> Result<Vec<SnapshotFacts>, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let found = find_mine(&member, execution, RETRY_LOOKS, clock).await?;
    if !found.is_empty() {
        return Ok(found);
    }
    Err(CoreError::conflict(
        format!("instance {}", target.instance_id),
        format!("{VSS_DOCUMENT} succeeded but no snapshot tagged {TAG_EXECUTION}={execution} is listed"),
    ))
}

/// CreateSnapshots of every volume of the instance, once per execution: the snapshots this
/// execution took (its `opsflow:execution` tag, which `request` must carry) if there are any,
/// else new ones, after the opt-in is checked again on fresh facts.
pub(crate) async fn create_once<F: Fleet>(
    target: &Target,
    execution: &str,
    procedure: &Procedure,
    request: &SnapshotRequest,
    attempt: u32,
    fleet: &F,
    clock: &impl Clock,
) -> Result<Vec<SnapshotFacts>, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    // A retry: the attempt before may have taken them without answering, and DescribeSnapshots
    // may not list them yet (it is eventually consistent; CreateSnapshots takes no client
    // token). Look a few more times before taking a second set.
    let more_looks = if attempt == 0 { 0 } else { RETRY_LOOKS };
    let mut snapshots = find_mine(&member, execution, more_looks, clock).await?;
    if snapshots.is_empty() {
        let facts = member.describe_instance(id).await?;
        check_opt_in(id, &facts.tags, procedure)?;
        if matches!(facts.state, InstanceState::ShuttingDown | InstanceState::Terminated) {
            return Err(CoreError::conflict(format!("instance {id}"), format!("is {}", facts.state)));
        }
        tracing::info!(instance = %id, execution, "CreateSnapshots");
        snapshots = member.create_snapshots(request).await?;
        if snapshots.is_empty() {
            return Err(CoreError::conflict(format!("instance {id}"), "has no EBS volume to snapshot"));
        }
    }
    Ok(snapshots)
}

/// CheckSnapshots: waits until every snapshot of the set is `completed`; one in `error`, or
/// gone, fails at once, the deadline with what is still pending.
pub async fn check<F: Fleet>(
    target: &Target,
    set: &SnapshotSet,
    fleet: &F,
    settings: &Settings,
    clock: &impl Clock,
) -> Result<SnapshotSet, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let mine = [(TAG_EXECUTION.to_string(), set.execution.clone())];
    let watched = watch(
        clock,
        settings.watch_s,
        (&set.poll).into(),
        settings.poll,
        "the snapshots to complete",
        async || {
            let found: BTreeMap<String, SnapshotFacts> = member
                .find_snapshots(&mine)
                .await?
                .into_iter()
                .map(|s| (s.snapshot_id.clone(), s))
                .collect();
            let mut pending = Vec::new();
            for id in &set.snapshot_ids {
                let Some(s) = found.get(id) else {
                    // DescribeSnapshots is eventually consistent: a new snapshot may not be
                    // listed at once.
                    if clock.now_ms().div_euclid(1000) - set.taken_at_epoch_s < LISTING_GRACE_S {
                        pending.push(format!("{id} not listed yet"));
                        continue;
                    }
                    return Err(CoreError::conflict(
                        format!("snapshot {id}"),
                        "is gone: it was deleted before it completed",
                    ));
                };
                match s.state.as_str() {
                    "completed" => {}
                    "error" => {
                        return Err(CoreError::conflict(
                            format!("snapshot {id}"),
                            format!("of volume {} failed: {}", s.volume_id, s.state_message),
                        ))
                    }
                    state => pending.push(format!("{id} {state} {}", s.progress)),
                }
            }
            Ok(match pending.is_empty() {
                true => Check::Done(()),
                false => Check::Waiting(format!(
                    "{} of {} not completed: {}",
                    pending.len(),
                    set.snapshot_ids.len(),
                    pending.join(", ")
                )),
            })
        },
    )
    .await?;
    Ok(match watched {
        Watched::Done((), poll) => SnapshotSet {
            done: true,
            poll: poll.into(),
            waiting_for: String::new(),
            ..set.clone()
        },
        Watched::Waiting(poll, why) => SnapshotSet {
            poll: poll.into(),
            waiting_for: why,
            ..set.clone()
        },
    })
}

/// What Prune deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pruned {
    pub deleted: Vec<String>,
    /// Old snapshots that could not be deleted because an AMI uses them.
    #[serde(default)]
    pub in_use: Vec<String>,
    pub retention_days: i64,
}

/// Prune: deletes this procedure's completed snapshots of the instance that started more than
/// `RetentionDays` ago, never the set just taken, and only once that set is completed.
pub async fn prune<F: Fleet>(
    run: &Run,
    target: &Target,
    set: &SnapshotSet,
    fleet: &F,
    catalogue: &Catalogue,
    now_s: i64,
) -> Result<Pruned, CoreError> {
    let procedure = procedure_of(run, &[Kind::ConsistentSnapshot, Kind::Patch], catalogue)?;
    let days: i64 = run.parameters.get("RetentionDays").and_then(|d| d.parse().ok()).unwrap_or(0);
    let mut pruned = Pruned {
        deleted: Vec::new(),
        in_use: Vec::new(),
        retention_days: days,
    };
    if days <= 0 {
        return Ok(pruned);
    }
    if !set.done {
        return Err(CoreError::conflict(
            "the new snapshots",
            "are not completed: older ones are deleted only once the new ones are",
        ));
    }
    let member = fleet.member(&target.account, &target.region).await?;
    let ours = [
        (TAG_KIND, Kind::ConsistentSnapshot.as_str()),
        (TAG_PROCEDURE, procedure.name.as_str()),
        (TAG_INSTANCE, target.instance_id.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let cutoff = now_s - days * 86_400;
    let mut old: Vec<SnapshotFacts> = member
        .find_snapshots(&ours)
        .await?
        .into_iter()
        .filter(|s| s.state == "completed" && s.start_time_epoch_s < cutoff && !set.snapshot_ids.contains(&s.snapshot_id))
        .collect();
    old.sort_by_key(|s| s.start_time_epoch_s);
    for s in old {
        match member.delete_snapshot(&s.snapshot_id).await {
            Ok(()) => pruned.deleted.push(s.snapshot_id),
            Err(e) if e.to_string().contains("InvalidSnapshot.InUse") => pruned.in_use.push(s.snapshot_id),
            Err(e) => return Err(e),
        }
    }
    tracing::info!(run = %run.id, instance = %target.instance_id, deleted = pruned.deleted.len(), "pruned old snapshots");
    Ok(pruned)
}

/// A step's caught error (`{"Error", "Cause"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepError {
    pub error: String,
    #[serde(default)]
    pub cause: String,
}

/// Everything the procedure's state holds at its end.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Conclusion {
    pub run: Run,
    #[serde(default)]
    pub freeze: Option<CommandProgress>,
    #[serde(default)]
    pub freeze_error: Option<StepError>,
    #[serde(default)]
    pub snapshots: Option<SnapshotSet>,
    #[serde(default)]
    pub snapshot_error: Option<StepError>,
    #[serde(default)]
    pub thaw: Option<CommandProgress>,
    #[serde(default)]
    pub thaw_error: Option<StepError>,
    /// The wait for the snapshots to complete (after the thaw).
    #[serde(default)]
    pub completion_error: Option<StepError>,
    #[serde(default)]
    pub pruned: Option<Pruned>,
    #[serde(default)]
    pub prune_error: Option<StepError>,
}

/// How the procedure ends: its result, or the error naming the first step that failed with the
/// result as the cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct End {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ProcedureResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Conclude: the first failure in the order things happen (the hooks and freeze, CreateSnapshots,
/// the thaw and post-hooks, completion, pruning) names the error; every later one and every
/// note is in the reason; the snapshots taken are in the result on every path.
pub fn conclude(c: &Conclusion) -> End {
    let result = |p: &Option<CommandProgress>| p.as_ref().and_then(|p| p.result.clone());
    let (freeze, thaw) = (result(&c.freeze), result(&c.thaw));
    let watchdog = c.run.parameters.get("WatchdogSeconds").map(String::as_str).unwrap_or("?");
    let by_watchdog = format!("the on-instance watchdog thaws the file systems {watchdog} s after the freeze began");
    let mut failures: Vec<(&str, String)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let crash = c.snapshots.as_ref().is_some_and(|s| s.consistency == Consistency::CrashConsistent);
    match (&freeze, &c.freeze_error) {
        (_, Some(e)) => failures.push(("FreezeFailed", format!("the freeze step failed: {}: {}", e.error, e.cause))),
        (Some(r), None) if r.status == TargetStatus::Succeeded => {}
        (Some(r), None) if r.exit_code == Some(EXIT_PRE_HOOK) => failures.push((
            "PreHookFailed",
            format!("a pre-snapshot hook failed, so nothing was frozen: {}", r.reason),
        )),
        (Some(r), None) if crash => notes.push(format!(
            "the freeze failed, so the snapshots are only crash-consistent (OnFreezeFailure=crash-consistent): {}",
            r.reason
        )),
        (Some(r), None) => failures.push(("FreezeFailed", format!("the freeze did not succeed: {}", r.reason))),
        (None, None) => failures.push(("FreezeFailed", "the freeze never ended".to_string())),
    }
    if let Some(e) = &c.snapshot_error {
        failures.push(("SnapshotFailed", format!("{}: {}", e.error, e.cause)));
    }
    match (&thaw, &c.thaw_error) {
        (_, Some(e)) => failures.push((
            "ThawFailed",
            format!("the thaw step failed ({}: {}); {by_watchdog}", e.error, e.cause),
        )),
        (Some(r), None) if r.status == TargetStatus::Succeeded => {}
        (Some(r), None) if r.exit_code == Some(EXIT_POST_HOOK) => failures.push((
            "PostHookFailed",
            format!("the file systems were thawed but a post-snapshot hook failed: {}", r.reason),
        )),
        (Some(r), None) => failures.push(("ThawFailed", format!("the thaw did not succeed ({}); {by_watchdog}", r.reason))),
        (None, None) => failures.push(("ThawFailed", format!("no thaw ran; {by_watchdog}"))),
    }
    if let Some(e) = &c.completion_error {
        failures.push((
            "SnapshotFailed",
            format!("the snapshots did not complete: {}: {}", e.error, e.cause),
        ));
    }
    if let Some(e) = &c.prune_error {
        failures.push(("PruneFailed", format!("deleting older snapshots failed: {}: {}", e.error, e.cause)));
    }
    let taken = match &c.snapshots {
        Some(s) => {
            let pairs: Vec<String> = s
                .snapshot_ids
                .iter()
                .zip(&s.volume_ids)
                .map(|(snap, vol)| format!("{snap} ({vol})"))
                .collect();
            format!(
                "{} snapshot{}, {}{}: {}",
                pairs.len(),
                if pairs.len() == 1 { "" } else { "s" },
                s.consistency.as_str(),
                if s.done { ", completed" } else { ", pending" },
                pairs.join(", ")
            )
        }
        None => "no snapshot was taken".to_string(),
    };
    if let Some(p) = &c.pruned {
        if !p.deleted.is_empty() {
            notes.push(format!(
                "deleted {} older than {} days: {}",
                p.deleted.len(),
                p.retention_days,
                p.deleted.join(", ")
            ));
        }
        if !p.in_use.is_empty() {
            notes.push(format!("kept {} older ones an AMI uses: {}", p.in_use.len(), p.in_use.join(", ")));
        }
    }
    let tails: Vec<&str> = [&freeze, &thaw]
        .into_iter()
        .flatten()
        .map(|r| r.output_tail.trim())
        .filter(|t| !t.is_empty())
        .collect();
    let mut r = ProcedureResult::new(TargetStatus::Succeeded, "");
    r.output_tail = clip_chars(&tails.join("\n"), 4_096);
    r.command_id = freeze.as_ref().and_then(|f| f.command_id.clone());
    r.output_url = thaw.as_ref().and_then(|t| t.output_url.clone());
    r.snapshots = c.snapshots.as_ref().map(|s| s.snapshot_ids.clone()).unwrap_or_default();
    let Some((error, _)) = failures.first() else {
        r.reason = clip_chars(&std::iter::once(taken).chain(notes).collect::<Vec<_>>().join("; "), 1_024);
        return End {
            ok: true,
            result: Some(r),
            error: None,
            cause: None,
        };
    };
    let error = error.to_string();
    r.status = TargetStatus::Failed;
    r.reason = clip_chars(
        &failures
            .into_iter()
            .map(|(_, why)| why)
            .chain(std::iter::once(taken))
            .chain(notes)
            .collect::<Vec<_>>()
            .join("; "),
        1_024,
    );
    End {
        ok: false,
        cause: Some(serde_json::to_string(&r).expect("a result serializes")),
        result: None,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(on_freeze_failure: &str) -> Run {
        serde_json::from_value(json!({
            "Id": "arn:aws:states:eu-west-1:111122223333:execution:opsflow-run-runbook:r1",
            "Name": "r1", "StartedAt": "2026-12-06T10:00:00Z", "Procedure": "consistent-snapshot",
            "Kind": "consistent-snapshot",
            "Parameters": {"Mounts": "/data", "WatchdogSeconds": "30", "OnFreezeFailure": on_freeze_failure,
                           "WaitForCompletion": "true", "RetentionDays": "0"},
            "MaxConcurrency": "1", "MaxErrors": "0", "Notify": "OnFailure", "DryRun": false,
            "StartedBy": "arn:aws:iam::111122223333:user/ops", "ProcedureArn": "arn:p"
        }))
        .unwrap()
    }

    fn command(status: TargetStatus, exit_code: i32, tail: &str) -> CommandProgress {
        let mut r = ProcedureResult::new(status, format!("exit {exit_code}"));
        r.exit_code = Some(exit_code);
        r.output_tail = tail.to_string();
        CommandProgress {
            command_id: "c".into(),
            step: None,
            sent_at_epoch_s: 0,
            poll: PollState {
                attempt: 0,
                delay_seconds: 1,
                deadline_epoch_s: 0,
            },
            done: true,
            result: Some(r),
        }
    }

    fn set(consistency: Consistency) -> SnapshotSet {
        SnapshotSet {
            execution: "e".into(),
            snapshot_ids: vec!["snap-1".into(), "snap-2".into()],
            volume_ids: vec!["vol-1".into(), "vol-2".into()],
            consistency,
            started_at: "2026-12-06T10:00:05Z".into(),
            taken_at_epoch_s: 0,
            done: true,
            poll: PollState {
                attempt: 0,
                delay_seconds: 1,
                deadline_epoch_s: 0,
            },
            waiting_for: String::new(),
        }
    }

    fn conclusion(r: Run) -> Conclusion {
        Conclusion {
            run: r,
            freeze: Some(command(TargetStatus::Succeeded, 0, "FROZEN /data")),
            freeze_error: None,
            snapshots: Some(set(Consistency::ApplicationConsistent)),
            snapshot_error: None,
            thaw: Some(command(TargetStatus::Succeeded, 0, "THAWED /data after 1.2 s")),
            thaw_error: None,
            completion_error: None,
            pruned: None,
            prune_error: None,
        }
    }

    fn cause(end: &End) -> ProcedureResult {
        serde_json::from_str(end.cause.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn only_a_failed_freeze_itself_with_the_fallback_allows_a_crash_consistent_snapshot() {
        let freeze = |code| command(TargetStatus::Failed, code, "").result.unwrap();
        assert_eq!(
            consistency(&run("fail"), &command(TargetStatus::Succeeded, 0, "").result.unwrap(), false, 0).unwrap(),
            Consistency::ApplicationConsistent
        );
        assert_eq!(
            consistency(&run("crash-consistent"), &freeze(EXIT_FREEZE), false, 0).unwrap(),
            Consistency::CrashConsistent
        );
        assert!(consistency(&run("fail"), &freeze(EXIT_FREEZE), false, 0).is_err());
        // A failed pre-hook quiesced nothing: no fallback.
        assert!(consistency(&run("crash-consistent"), &freeze(EXIT_PRE_HOOK), false, 0).is_err());
        assert!(consistency(&run("crash-consistent"), &freeze(-1), false, 0).is_err());
        // A freeze whose watchdog (30 s) has thawed, or is about to, by the time of the call.
        let mut held = command(TargetStatus::Succeeded, 0, "").result.unwrap();
        held.output_tail = "ARMED 1000: the watchdog thaws in 30s\nFROZEN /data".into();
        assert_eq!(
            consistency(&run("fail"), &held, false, 1_027).unwrap(),
            Consistency::ApplicationConsistent
        );
        let late = consistency(&run("fail"), &held, false, 1_028).unwrap_err().to_string();
        assert!(late.contains("raise WatchdogSeconds"), "{late}");
        assert_eq!(
            consistency(&run("crash-consistent"), &held, false, 1_030).unwrap(),
            Consistency::CrashConsistent
        );
        // Windows: VSS fails in its own ways (no exit 4); the fallback applies to any of them.
        assert_eq!(
            consistency(&run("crash-consistent"), &freeze(1), true, 0).unwrap(),
            Consistency::CrashConsistent
        );
        assert!(consistency(&run("fail"), &freeze(1), true, 0).is_err());
    }

    #[test]
    fn a_clean_run_lists_the_snapshots_and_the_outputs() {
        let end = conclude(&conclusion(run("fail")));
        assert!(end.ok);
        let r = end.result.unwrap();
        assert_eq!(r.status, TargetStatus::Succeeded);
        assert_eq!(r.snapshots, vec!["snap-1", "snap-2"]);
        assert_eq!(
            r.reason,
            "2 snapshots, application-consistent, completed: snap-1 (vol-1), snap-2 (vol-2)"
        );
        assert_eq!(r.output_tail, "FROZEN /data\nTHAWED /data after 1.2 s");
    }

    #[test]
    fn the_first_failure_names_the_error_and_the_snapshots_stay_in_the_cause() {
        // A lost thaw: the snapshots are good, the watchdog thawed.
        let mut c = conclusion(run("fail"));
        c.thaw = Some(command(TargetStatus::Failed, -1, ""));
        let end = conclude(&c);
        assert_eq!(end.error.as_deref(), Some("ThawFailed"));
        let r = cause(&end);
        assert!(r.reason.contains("watchdog thaws the file systems 30 s after"), "{}", r.reason);
        assert!(r.reason.contains("snap-1 (vol-1)"), "{}", r.reason);
        assert_eq!(r.snapshots.len(), 2);

        // A failed pre-hook, then the thaw (post-hooks) failing too: the pre-hook names it.
        let mut c = conclusion(run("fail"));
        c.freeze = Some(command(TargetStatus::Failed, EXIT_PRE_HOOK, "FAIL pre-hook 10-db: exit 1"));
        c.snapshots = None;
        c.thaw = Some(command(TargetStatus::Failed, EXIT_POST_HOOK, ""));
        let end = conclude(&c);
        assert_eq!(end.error.as_deref(), Some("PreHookFailed"));
        let r = cause(&end);
        assert!(r.reason.contains("post-snapshot hook failed"), "{}", r.reason);
        assert!(r.reason.contains("no snapshot was taken"), "{}", r.reason);

        // CreateSnapshots failed after its retries; the thaw succeeded.
        let mut c = conclusion(run("fail"));
        c.snapshots = None;
        c.snapshot_error = Some(StepError {
            error: "Throttled".into(),
            cause: "RequestLimitExceeded".into(),
        });
        assert_eq!(conclude(&c).error.as_deref(), Some("SnapshotFailed"));

        // A failed freeze with the fallback: crash-consistent snapshots, said so, succeeded.
        let mut c = conclusion(run("crash-consistent"));
        c.freeze = Some(command(TargetStatus::Failed, EXIT_FREEZE, "FAIL freeze /data: busy"));
        c.snapshots = Some(set(Consistency::CrashConsistent));
        let end = conclude(&c);
        assert!(end.ok);
        let reason = end.result.unwrap().reason;
        assert!(reason.starts_with("2 snapshots, crash-consistent"), "{reason}");
        assert!(
            reason.contains("only crash-consistent (OnFreezeFailure=crash-consistent)"),
            "{reason}"
        );
    }
}
