//! Alerts that diagnose: for an alarm on one instance that opted in, the output of a read-only
//! diagnostics command in the alert, or in a follow-up when the command is slow.
//!
//! What runs: the account's `opsflow-Diagnose` (Linux) or `opsflow-DiagnoseWindows` document
//! (infra/member-account.yaml): load, memory, the top processes by CPU and by memory, disk and
//! inode usage, the last hour's OOM kills, failed units and restarts (Windows: the System log's
//! service crashes, unexpected shutdowns and low-memory events), each probe bounded. The
//! documents take no parameters, so nothing from an alarm reaches a command line.
//!
//! On what: an alarm in ALARM whose metric names one instance that is running, whose SSM agent
//! is Online and that carries the tag [`TAG`] (`opsflow:diagnose` = `enabled`); not while the
//! alarm is muted for maintenance; at most once per instance per `diagnose_cooldown_s` (a ledger
//! claim: a flapping alarm, or whoever can set an alarm's state, gets no command loop). IAM says
//! the same: the alert roles may send only these two documents, only to instances with that tag.
//!
//! Bounded, never a late or lost alert:
//! - the alert waits at most `diagnose_wait_s` after SendCommand, and never past the
//!   invocation's deadline; a command that finished by then is in it (status, exit code, the
//!   end of its output);
//! - otherwise the alert is published saying the diagnostics still run, and a follow-up message
//!   carries the result when the command ends, or says at most `diagnose_limit_s` after
//!   SendCommand that it did not end (the command's delivery timeout is SendCommand's minimum,
//!   30 s: a command the agent has not picked up by then never runs);
//! - a command that cannot be sent, fails or cannot be read is a line in the alert: the alert
//!   goes out all the same.
//!
//! The follow-up is claimed in the ledger under [`follow_up_key`] right after the alert is
//! published (before the alert is recorded published), noting the command, with a lease that
//! ends [`FOLLOW_UP_MARGIN_S`] after the limit; an alert whose publish failed notes its command
//! there too. A later delivery of the same state change that finds the claim lapsed takes it over
//! and reads that command ([`resume`]) instead of sending another.

use crate::alert::enrich::{console, AlertLookups, AlertSettings};
use crate::alert::ledger::{AlertLedger, Claim};
use crate::alert::model::{Diagnostics, DiagnosticsStatus, Enriched, Place, Target};
use crate::command::{command_outcome, invocation_lookup_error, CommandOutcome, InvocationLookup, INVOCATION_GRACE_S};
use crate::facts::Platform;
use crate::ports::Clock;
use crate::CoreError;

/// The tag that opts an instance in, and its value (the alert roles' IAM condition is the same).
pub const TAG: (&str, &str) = ("opsflow:diagnose", "enabled");
/// The diagnostics document of Linux instances.
pub const LINUX_DOCUMENT: &str = "opsflow-Diagnose";
/// The diagnostics document of Windows instances.
pub const WINDOWS_DOCUMENT: &str = "opsflow-DiagnoseWindows";
/// SendCommand's `TimeoutSeconds` (its minimum): a command not delivered by then never runs.
pub const DELIVERY_TIMEOUT_S: u32 = 30;
/// How often the invocation is read while waiting.
const POLL_MS: u64 = 1000;
/// How long past the limit a follow-up's claim holds: time to publish it (a delivery that takes
/// it over waits the limit again, from its own start).
pub const FOLLOW_UP_MARGIN_S: i64 = 30;
/// Diagnostics are not started with less time than this left in the invocation.
const MIN_LEFT_MS: i64 = 5_000;
/// SSM's limit for a command's `Comment`.
const COMMENT_MAX: usize = 100;

/// The diagnostics document of an instance whose EC2 PlatformDetails (the alert's
/// `platform`) is `platform_details`.
fn document_for(platform_details: Option<&str>) -> &'static str {
    match Platform::from_ec2_details(None, platform_details) {
        Platform::Windows => WINDOWS_DOCUMENT,
        Platform::Linux => LINUX_DOCUMENT,
    }
}

/// Diagnostics of `document` on the instance, `status` at `sent_at_ms`, nothing read yet.
fn diagnostics(instance_id: String, document: &str, status: DiagnosticsStatus, sent_at_ms: i64) -> Diagnostics {
    Diagnostics {
        instance_id,
        document: document.to_string(),
        command_id: None,
        status,
        ssm_status: None,
        exit_code: None,
        output: String::new(),
        reason: None,
        sent_at_ms,
        took_ms: 0,
        link: None,
    }
}

/// The ledger key of a state change's diagnostics follow-up.
pub fn follow_up_key(state_change_key: &str) -> String {
    format!("{state_change_key}/diagnostics")
}

/// The instance to diagnose for this alert, with its place and document. None when diagnostics
/// do not apply (off, not ALARM, not one instance, the instance did not opt in); `Err(why)` when
/// it opted in and cannot be diagnosed now (stopped, its agent not Online).
pub fn candidate(e: &Enriched, settings: &AlertSettings) -> Option<Result<(Place, String, &'static str), String>> {
    if settings.diagnose_limit_s <= 0 || e.alarm.state != "ALARM" {
        return None;
    }
    let (Some(Target::Instance(id)), Some(place)) = (&e.target, &e.target_place) else {
        return None;
    };
    let view = e.instances.iter().find(|v| v.details.instance_id == *id)?;
    if view.details.tags.get(TAG.0).map(String::as_str) != Some(TAG.1) {
        return None;
    }
    if !e.maintenance.is_empty() {
        return Some(Err(format!("diagnostics not run on {id}: the alarm is muted for maintenance")));
    }
    if view.details.state != "running" {
        return Some(Err(format!("diagnostics not run on {id}: the instance is {}", view.details.state)));
    }
    match view.agent.as_ref().map(|a| a.ping_status.as_str()) {
        Some("Online") => {}
        Some(other) => return Some(Err(format!("diagnostics not run on {id}: its SSM agent is {other}"))),
        None => return Some(Err(format!("diagnostics not run on {id}: SSM does not list it as Online"))),
    }
    Some(Ok((place.clone(), id.clone(), document_for(view.details.platform.as_deref()))))
}

/// Diagnostics that were owed and could not run, because `why` (for the follow-up).
pub fn not_run(e: &Enriched, why: String) -> Diagnostics {
    let instance_id = match &e.target {
        Some(Target::Instance(id)) => id.clone(),
        _ => String::new(),
    };
    let platform = e
        .instances
        .iter()
        .find(|v| v.details.instance_id == instance_id)
        .and_then(|v| v.details.platform.as_deref());
    let document = document_for(platform);
    Diagnostics {
        reason: Some(why),
        ..diagnostics(instance_id, document, DiagnosticsStatus::NotStarted, 0)
    }
}

/// The ledger key that keeps an instance from being diagnosed more than once per cooldown.
pub fn cooldown_key(at: &Place, instance_id: &str) -> String {
    format!("diagnose#{}/{}/{instance_id}", at.account_id, at.region)
}

/// Waits, as [`start`] does, for the diagnostics an earlier delivery of the same state change
/// sent (`e.diagnostics`, as the ledger noted them): no second command.
pub async fn resume(lookups: &impl AlertLookups, clock: &impl Clock, settings: &AlertSettings, e: &mut Enriched, deadline_ms: i64) {
    let (Some(mut d), Some(at)) = (e.diagnostics.take(), e.target_place.clone()) else {
        return;
    };
    let wait_s = settings.diagnose_wait_s.clamp(0, settings.diagnose_limit_s);
    wait(
        lookups,
        clock,
        settings,
        &at,
        &mut d,
        (clock.now_ms() + wait_s * 1000).min(deadline_ms),
    )
    .await;
    e.diagnostics = Some(d);
}

/// Runs the diagnostics the alert calls for ([`candidate`]) and waits for them until
/// `diagnose_wait_s` after SendCommand (never past `deadline_ms`): they land in
/// `e.diagnostics` (still `Running` if slow), or a note says why they did not run.
pub async fn start(
    lookups: &impl AlertLookups,
    ledger: &impl AlertLedger,
    clock: &impl Clock,
    settings: &AlertSettings,
    e: &mut Enriched,
    deadline_ms: i64,
) {
    let (place, instance_id, document) = match candidate(e, settings) {
        None => return,
        Some(Err(why)) => return e.notes.push(why),
        Some(Ok(found)) => found,
    };
    let now = clock.now_ms();
    if deadline_ms - now < MIN_LEFT_MS {
        return e.notes.push(format!(
            "diagnostics not run on {instance_id}: the invocation has {} s left",
            (deadline_ms - now).max(0) / 1000
        ));
    }
    let key = cooldown_key(&place, &instance_id);
    let now_s = now.div_euclid(1000);
    let cooldown_s = settings.diagnose_cooldown_s;
    let cooldown = match cooldown_s > 0 {
        false => None,
        true => match ledger.claim(&key, now_s, cooldown_s, now_s + cooldown_s).await {
            Ok(Claim::Won) => Some(key),
            Ok(Claim::Busy { lease_until_s }) => {
                return e.notes.push(format!(
                    "diagnostics not run on {instance_id}: it was diagnosed less than {} ago (again from {})",
                    crate::alert::render::human_duration(cooldown_s),
                    crate::time::format_utc(lease_until_s)
                ));
            }
            Ok(Claim::Published(_)) => {
                return e
                    .notes
                    .push(format!("diagnostics not run on {instance_id}: it was diagnosed recently"))
            }
            // No ledger to keep the cooldown: diagnosed all the same.
            Err(_) => None,
        },
    };
    let comment = crate::alert::render::limit(&format!("opsflow alert: {}", e.alarm.name), COMMENT_MAX);
    let sent_at_ms = clock.now_ms();
    let sent = lookups.send_diagnostics(&place, &instance_id, document, &comment).await;
    let mut d = diagnostics(instance_id, document, DiagnosticsStatus::Running, sent_at_ms);
    match sent {
        Ok(command_id) => {
            d.link = Some(format!(
                "{}/systems-manager/run-command/{command_id}?region={}",
                console(&place.region),
                place.region
            ));
            d.command_id = Some(command_id);
            let wait_s = settings.diagnose_wait_s.clamp(0, settings.diagnose_limit_s);
            wait(
                lookups,
                clock,
                settings,
                &place,
                &mut d,
                (sent_at_ms + wait_s * 1000).min(deadline_ms),
            )
            .await;
        }
        Err(err) => {
            d.status = DiagnosticsStatus::NotStarted;
            d.reason = Some(format!("SendCommand failed ({err})"));
            // Nothing reached the instance: the next alarm may try again.
            if let Some(key) = &cooldown {
                if let Err(e) = ledger.release(key).await {
                    tracing::warn!(key, error = %e, "could not release the diagnostics cooldown");
                }
            }
        }
    }
    e.diagnostics = Some(d);
}

/// Waits for running diagnostics until `until_ms`; marks them `Unfinished` when they did not
/// end by then.
pub async fn finish(
    lookups: &impl AlertLookups,
    clock: &impl Clock,
    at: &Place,
    d: &mut Diagnostics,
    until_ms: i64,
    settings: &AlertSettings,
) {
    wait(lookups, clock, settings, at, d, until_ms).await;
    if d.status == DiagnosticsStatus::Running {
        d.status = DiagnosticsStatus::Unfinished;
        let ssm = d.ssm_status.as_deref().unwrap_or("not visible yet");
        let why = format!(
            "still {ssm} {} s after it was sent (the agent may be busy with another command, or the instance overloaded)",
            (clock.now_ms() - d.sent_at_ms).max(0) / 1000
        );
        d.reason = Some(match d.reason.take() {
            Some(read_error) => format!("{why}; {read_error}"),
            None => why,
        });
    }
}

/// Reads the invocation every second until it ends or `until_ms`. A read that fails is retried;
/// the last failure stays in `reason` while the command is not known to have ended.
async fn wait(lookups: &impl AlertLookups, clock: &impl Clock, settings: &AlertSettings, at: &Place, d: &mut Diagnostics, until_ms: i64) {
    let Some(command_id) = d.command_id.clone() else { return };
    while d.status == DiagnosticsStatus::Running {
        let now = clock.now_ms();
        if now >= until_ms {
            break;
        }
        if clock.sleep(POLL_MS.min((until_ms - now) as u64)).await.is_err() {
            break;
        }
        let read = lookups.diagnostics_result(at, &command_id, &d.instance_id).await;
        d.took_ms = clock.now_ms() - d.sent_at_ms;
        let inv = match read {
            Ok(inv) => inv,
            Err(err) => {
                let elapsed_s = (d.took_ms / 1000).max(0) as u64;
                let not_visible_yet = match &err {
                    CoreError::NotFound { detail, .. } => {
                        let code = detail.split(':').next().unwrap_or_default();
                        matches!(
                            invocation_lookup_error(code, detail, elapsed_s, INVOCATION_GRACE_S),
                            InvocationLookup::Pending
                        )
                    }
                    _ => false,
                };
                if !not_visible_yet {
                    d.reason = Some(format!("GetCommandInvocation failed ({err})"));
                }
                continue;
            }
        };
        d.ssm_status = Some(inv.status.clone());
        // A read went through: an earlier read's failure is no longer the news.
        d.reason = None;
        match command_outcome(&inv, settings.diagnose_output_bytes) {
            CommandOutcome::Running => {}
            CommandOutcome::Succeeded { exit_code, tail } => {
                d.status = DiagnosticsStatus::Succeeded;
                d.exit_code = Some(exit_code);
                d.output = tail;
                d.reason = None;
            }
            CommandOutcome::Failed {
                exit_code, tail, reason, ..
            } => {
                d.status = DiagnosticsStatus::Failed;
                d.exit_code = exit_code;
                d.output = tail;
                d.reason = Some(reason);
            }
        }
    }
}
