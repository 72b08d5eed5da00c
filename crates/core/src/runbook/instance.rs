//! The maintenance procedures' instance steps: start and wait until ready (start-and-check),
//! stop and wait until stopped (clean-stop), and what a health check's output says.
//!
//! Every step checks the procedure's kind and the instance's opt-in again, on fresh facts in
//! the member account, before it changes anything. Each is idempotent: a retried Start finds
//! the instance pending or running and only waits; a retried Stop finds it stopping or stopped.
//! The waits are the project's one way to wait: a [`Watch`] inside the function for up to
//! `watch_s`, then the state machine's Wait state, to a deadline from the catalogue
//! (`Timeouts.ReadySeconds`, `Timeouts.StopSeconds`).

use serde::{Deserialize, Serialize};

use super::catalogue::{Catalogue, Kind, Procedure};
use super::results::TargetStatus;
use super::steps::{PollState, ProcedureResult, Run, Settings};
use super::targets::{check_opt_in, Target};
use crate::alert::render::clip_chars;
use crate::error::CoreError;
use crate::facts::InstanceState;
use crate::ports::{Clock, Fleet, Member, MuteRule};
use crate::readiness::{readiness, Readiness, ReadinessFacts};
use crate::wait::{watch, Check, Poll, Watched};

/// A wait on one instance (until ready, or until stopped), carried between polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceProgress {
    pub done: bool,
    /// Whether this procedure changed the instance's state (false when it found it already
    /// started, or already stopping).
    pub changed: bool,
    /// The state the procedure found.
    pub found: InstanceState,
    pub poll: PollState,
    /// What the wait is waiting for, as last seen.
    #[serde(default)]
    pub waiting_for: String,
    /// clean-stop's result, once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ProcedureResult>,
}

/// The run's procedure, if it is of one of these kinds.
pub(super) fn procedure_of<'c>(run: &Run, kinds: &[Kind], catalogue: &'c Catalogue) -> Result<&'c Procedure, CoreError> {
    let procedure = catalogue.get(&run.procedure)?;
    if !kinds.contains(&procedure.kind) {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return Err(CoreError::invalid(
            "Run.Procedure",
            format!(
                "{} is a {} procedure, not {}",
                procedure.name,
                procedure.kind.as_str(),
                kinds.join(" or ")
            ),
        ));
    }
    Ok(procedure)
}

/// Which way a procedure moves an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// StartInstances unless the instance is already pending or running.
    Start,
    /// StopInstances (a clean OS shutdown, never forced) unless it is already stopping or stopped.
    Stop,
}

impl Change {
    fn kind(self) -> Kind {
        match self {
            Change::Start => Kind::StartAndCheck,
            Change::Stop => Kind::CleanStop,
        }
    }

    /// Whether the call is needed in `state` (false: the instance is already on its way), or
    /// why it cannot be made.
    fn needed(self, state: InstanceState) -> Result<bool, String> {
        use InstanceState::*;
        match (self, state) {
            (Change::Start, Stopped) | (Change::Stop, Running | Pending) => Ok(true),
            (Change::Start, Pending | Running) | (Change::Stop, Stopping | Stopped) => Ok(false),
            (Change::Start, other) => Err(format!("is {other}; it can be started only once it is stopped")),
            (Change::Stop, other) => Err(format!("is {other}; there is nothing to stop")),
        }
    }
}

/// Start (start-and-check) or Stop (clean-stop): checks the procedure's kind and the instance's
/// opt-in on fresh facts, makes the call if it is needed, and starts the wait to the catalogue's
/// deadline.
pub async fn change<F: Fleet>(
    change: Change,
    run: &Run,
    target: &Target,
    fleet: &F,
    settings: &Settings,
    catalogue: &Catalogue,
    now_s: i64,
) -> Result<InstanceProgress, CoreError> {
    let procedure = procedure_of(run, &[change.kind()], catalogue)?;
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    let facts = member.describe_instance(id).await?;
    check_opt_in(id, &facts.tags, procedure)?;
    let changed = change
        .needed(facts.state)
        .map_err(|why| CoreError::conflict(format!("instance {id}"), why))?;
    if changed {
        tracing::info!(run = %run.id, instance = %id, ?change, "changing the instance's state");
        match change {
            Change::Start => member.start_instance(id).await?,
            Change::Stop => member.stop_instance(id).await?,
        }
    }
    let (timeout_s, waiting_for) = match change {
        Change::Start => (
            procedure.timeouts.ready_seconds,
            "the instance to run, pass its status checks and come Online in SSM",
        ),
        Change::Stop => (procedure.timeouts.stop_seconds, "the instance to be stopped"),
    };
    Ok(InstanceProgress {
        done: false,
        changed,
        found: facts.state,
        poll: Poll::start(now_s, i64::from(timeout_s), settings.poll).into(),
        waiting_for: waiting_for.to_string(),
        result: None,
    })
}

/// One readiness check of `id` on fresh facts ([`readiness`]): ready, still waiting (why), or
/// failed (an impaired check, an instance going down).
pub(super) async fn readiness_of(member: &impl Member, id: &str) -> Result<Check<()>, CoreError> {
    let facts = member.describe_instance(id).await?;
    let status = member.instance_status(id).await?;
    let ping = member.ping_statuses(&[id.to_string()]).await?.remove(id);
    match readiness(&ReadinessFacts {
        instance_id: id.to_string(),
        state: facts.state,
        status,
        ping,
    }) {
        Readiness::Ready => Ok(Check::Done(())),
        Readiness::Failed { reason } => Err(CoreError::conflict(format!("instance {id}"), reason)),
        Readiness::Waiting { reason } => Ok(Check::Waiting(reason)),
    }
}

impl InstanceProgress {
    /// The progress after a watch: done (with the result, if the wait gave one), or still
    /// waiting, and why.
    fn after(&self, watched: Watched<Option<ProcedureResult>>) -> InstanceProgress {
        match watched {
            Watched::Done(result, poll) => InstanceProgress {
                done: true,
                poll: poll.into(),
                waiting_for: String::new(),
                result: result.or_else(|| self.result.clone()),
                ..self.clone()
            },
            Watched::Waiting(poll, why) => InstanceProgress {
                poll: poll.into(),
                waiting_for: why,
                ..self.clone()
            },
        }
    }
}

/// CheckReady: running, both status checks passed, SSM agent Online ([`readiness`]); an
/// impaired check or an instance going down fails at once, the deadline with what it still
/// waited for.
pub async fn check_ready<F: Fleet>(
    target: &Target,
    progress: &InstanceProgress,
    fleet: &F,
    settings: &Settings,
    clock: &impl Clock,
) -> Result<InstanceProgress, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    let what = format!("instance {id} to be ready");
    let member = &member;
    let watched = watch(
        clock,
        settings.watch_s,
        (&progress.poll).into(),
        settings.poll,
        &what,
        || async move {
            Ok(match readiness_of(member, id).await? {
                Check::Done(()) => Check::Done(None),
                Check::Waiting(why) => Check::Waiting(why),
            })
        },
    )
    .await?;
    Ok(progress.after(watched))
}

/// CheckStopped: waits for `stopped`; once there, the procedure's result says whether the stop
/// was clean (the pre-stop script succeeded) or forced by `OnPreStopFailure: stop`.
pub async fn check_stopped<F: Fleet>(
    target: &Target,
    progress: &InstanceProgress,
    pre_stop: Option<&ProcedureResult>,
    fleet: &F,
    settings: &Settings,
    clock: &impl Clock,
) -> Result<InstanceProgress, CoreError> {
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    let what = format!("instance {id} to stop");
    let member = &member;
    let watched = watch(
        clock,
        settings.watch_s,
        (&progress.poll).into(),
        settings.poll,
        &what,
        || async move {
            let state = member.describe_instance(id).await?.state;
            match state {
                InstanceState::Stopped => Ok(Check::Done(Some(stop_result(pre_stop)))),
                InstanceState::ShuttingDown | InstanceState::Terminated => Err(CoreError::conflict(
                    format!("instance {id}"),
                    format!("is {state}: it was terminated while the procedure stopped it"),
                )),
                _ => Ok(Check::Waiting(format!("the instance is {state}"))),
            }
        },
    )
    .await?;
    Ok(progress.after(watched))
}

/// The alarms a procedure silenced on its instance while it works on it, and the rule that does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Quiet {
    /// The mute rule; none when no alarm watches the instance.
    #[serde(default)]
    pub rule_name: Option<String>,
    pub alarms: Vec<String>,
    /// Alarms past the rule's 100 targets, left unmuted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_muted: Vec<String>,
    /// When the rule ends by itself, should nothing restore the alarms before.
    pub until: String,
}

/// A mute rule names at most this many alarms (PutAlarmMuteRule).
pub const MAX_MUTE_TARGETS: usize = 100;
/// The longest a mute rule lasts (PutAlarmMuteRule's Duration: P15D).
pub const MAX_MUTE_S: i64 = 15 * 86_400;

/// How long a procedure may hold its instance: delivery, execution and its wait, plus a margin.
/// The mute rule lasts that long, so it ends by itself even if nothing restores the alarms.
pub fn hold_s(procedure: &Procedure) -> i64 {
    let t = procedure.timeouts;
    let command = i64::from(t.delivery_seconds) + i64::from(t.execution_seconds);
    let wait = match procedure.kind {
        Kind::CleanStop => i64::from(t.stop_seconds),
        Kind::StartAndCheck => i64::from(t.ready_seconds),
        // The thaw is a second command; the snapshots may be waited for.
        Kind::ConsistentSnapshot => command + i64::from(t.snapshot_seconds),
        // The snapshot's commands and the health checks beside the patch; the snapshot may be
        // waited for, and the instance again after a rollback.
        Kind::Patch => 4 * command + i64::from(t.snapshot_seconds) + i64::from(t.ready_seconds),
        _ => 0,
    };
    (command + wait + 300).min(MAX_MUTE_S)
}

/// The mute rule of one procedure execution on one instance: `opsflow-<instance>-<execution>`.
pub fn mute_rule_name(instance_id: &str, execution: &str) -> String {
    let name = execution.rsplit(':').next().unwrap_or(execution);
    let raw = format!("opsflow-{instance_id}-{name}");
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .take(255)
        .collect()
}

/// Quiet: mutes the alarms that watch the instance for as long as the procedure may hold it,
/// with a one-time mute rule whose description says which procedure, run and start. Every
/// exit path of the procedure restores them ([`restore`]); if none does, the rule ends by
/// itself.
pub async fn quiet<F: Fleet>(
    run: &Run,
    target: &Target,
    execution: &str,
    fleet: &F,
    catalogue: &Catalogue,
    now_s: i64,
) -> Result<Quiet, CoreError> {
    let procedure = catalogue.get(&run.procedure)?;
    let member = fleet.member(&target.account, &target.region).await?;
    let id = &target.instance_id;
    let mut alarms = member.alarms_on_instance(id).await?;
    alarms.sort();
    let not_muted = alarms.split_off(alarms.len().min(MAX_MUTE_TARGETS));
    let duration_s = hold_s(procedure);
    let until = crate::time::format_utc(now_s - now_s.rem_euclid(60) + duration_s);
    if alarms.is_empty() {
        return Ok(Quiet {
            rule_name: None,
            alarms,
            not_muted,
            until,
        });
    }
    let rule = MuteRule {
        name: mute_rule_name(id, execution),
        description: clip_chars(
            &format!(
                "opsflow {} ({}) on {id}: run {} started {} by {}",
                procedure.name,
                procedure.kind.as_str(),
                run.name,
                run.started_at,
                run.started_by
            ),
            1_024,
        ),
        alarms: alarms.clone(),
        from_epoch_s: now_s,
        duration_s,
    };
    tracing::info!(run = %run.id, instance = %id, rule = %rule.name, alarms = alarms.len(), "muting the instance's alarms");
    member.mute_alarms(&rule).await?;
    Ok(Quiet {
        rule_name: Some(rule.name),
        alarms,
        not_muted,
        until,
    })
}

/// Restore: deletes the procedure's mute rule (done already, or none: nothing to do).
pub async fn restore<F: Fleet>(target: &Target, quiet: &Quiet, fleet: &F) -> Result<(), CoreError> {
    let Some(name) = &quiet.rule_name else { return Ok(()) };
    let member = fleet.member(&target.account, &target.region).await?;
    member.unmute_alarms(name).await
}

/// clean-stop's result once the instance is stopped.
fn stop_result(pre_stop: Option<&ProcedureResult>) -> ProcedureResult {
    let mut r = pre_stop
        .cloned()
        .unwrap_or_else(|| ProcedureResult::new(TargetStatus::Succeeded, ""));
    if r.status == TargetStatus::Succeeded {
        r.reason = "stopped after the pre-stop script succeeded".to_string();
    } else {
        r.reason = clip_chars(
            &format!(
                "stopped although the pre-stop script did not succeed (OnPreStopFailure=stop): {}",
                r.reason
            ),
            1_024,
        );
        r.status = TargetStatus::Failed;
    }
    r
}

/// The checks a health check's output reports as failed: its lines `FAIL <check>: <detail>`
/// (the health check documents print one `PASS …` or `FAIL …` line per check).
pub fn failed_checks(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FAIL "))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A health check's result, its reason naming the checks that failed when it did not succeed.
pub fn name_failed_checks(result: &mut ProcedureResult) {
    if result.status != TargetStatus::Succeeded {
        result.reason = health_reason(result);
    }
}

/// A failed health check's reason: which checks failed, else the command's own reason.
pub fn health_reason(result: &ProcedureResult) -> String {
    let failed = failed_checks(&result.output_tail);
    if failed.is_empty() {
        return result.reason.clone();
    }
    clip_chars(&format!("health check failed: {}", failed.join("; ")), 1_024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: TargetStatus, tail: &str, reason: &str) -> ProcedureResult {
        ProcedureResult {
            status,
            exit_code: Some(1),
            output_tail: tail.to_string(),
            output_url: None,
            reason: reason.to_string(),
            command_id: Some("c-1".into()),
            status_code: None,
            snapshots: Vec::new(),
        }
    }

    #[test]
    fn a_start_or_stop_is_made_only_when_needed_and_refused_when_it_cannot_be() {
        use InstanceState::*;
        assert_eq!(Change::Start.needed(Stopped), Ok(true));
        assert_eq!(Change::Start.needed(Running), Ok(false));
        assert_eq!(Change::Start.needed(Pending), Ok(false));
        assert_eq!(
            Change::Start.needed(Stopping),
            Err("is stopping; it can be started only once it is stopped".to_string())
        );
        assert_eq!(Change::Stop.needed(Running), Ok(true));
        assert_eq!(Change::Stop.needed(Stopped), Ok(false));
        assert_eq!(
            Change::Stop.needed(Terminated),
            Err("is terminated; there is nothing to stop".to_string())
        );
    }

    #[test]
    fn a_mute_rule_is_named_for_its_execution_and_lasts_as_long_as_the_procedure_may_hold() {
        let exec = "arn:aws:states:eu-west-1:123456789012:execution:opsflow-clean-stop:run/1 7";
        assert_eq!(mute_rule_name("i-0abc", exec), "opsflow-i-0abc-run-1-7");
        let cat = Catalogue::builtin();
        let stop = cat.get("clean-stop").unwrap();
        assert_eq!(hold_s(stop), 300 + 3_600 + 900 + 300);
    }

    #[test]
    fn a_health_checks_failures_are_named() {
        let out = "PASS disk:/: 61% free (minimum 10%)\nFAIL disk:/data: 3% free (minimum 10%)\nPASS unit:nginx: active\nFAIL port:5432: nothing listens on 127.0.0.1:5432\n";
        assert_eq!(
            failed_checks(out),
            vec!["disk:/data: 3% free (minimum 10%)", "port:5432: nothing listens on 127.0.0.1:5432"]
        );
        let r = result(TargetStatus::Failed, out, "exit code 1");
        assert_eq!(
            health_reason(&r),
            "health check failed: disk:/data: 3% free (minimum 10%); port:5432: nothing listens on 127.0.0.1:5432"
        );
        let r = result(TargetStatus::TimedOut, "no check lines", "timed out");
        assert_eq!(health_reason(&r), "timed out");
    }

    #[test]
    fn a_stop_is_clean_only_after_a_pre_stop_that_succeeded() {
        let ok = stop_result(Some(&result(TargetStatus::Succeeded, "stopped app", "")));
        assert_eq!(
            (ok.status, ok.reason.as_str()),
            (TargetStatus::Succeeded, "stopped after the pre-stop script succeeded")
        );
        assert_eq!(ok.output_tail, "stopped app");
        let forced = stop_result(Some(&result(TargetStatus::TimedOut, "", "command c-1 outlived its timeouts")));
        assert_eq!(forced.status, TargetStatus::Failed);
        assert_eq!(
            forced.reason,
            "stopped although the pre-stop script did not succeed (OnPreStopFailure=stop): command c-1 outlived its timeouts"
        );
    }
}
