//! Enrichment: every lookup at once, in the alarm's account and region, each failure a note,
//! then one publication per alarm state change.

use std::future::Future;

use serde_json::Value;

use crate::alert::diagnose;
use crate::alert::event::{incoming, target_and_place, Incoming};
use crate::alert::ledger::{self, AlertLedger, Claim};
use crate::alert::model::{
    ActiveMute, AgentInfo, Alarm, AlarmKind, Datapoint, Diagnostics, DiagnosticsStatus, Enriched, InstanceDetails, InstanceView, Link,
    MetricQuery, Place, ProfileRole, Publication, Target,
};
use crate::alert::policy::{admin_grant, severity};
use crate::alert::render;
use crate::facts::Invocation;
use crate::ports::Clock;
use crate::CoreError;

/// Deployment settings of the enrichment.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// An instance started less than this before the alarm is "recently started".
    pub recent_threshold_s: i64,
    /// At most this many instances of an Auto Scaling group are looked up.
    pub group_cap: usize,
    /// How many of the metric's most recent datapoints the alert shows.
    pub datapoints: usize,
    /// How long a delivery's claim of a state change holds before another delivery may take it
    /// over (longer than one invocation: the function's timeout is 60 s).
    pub claim_lease_s: i64,
    /// How long the ledger remembers a state change (its TTL): longer than any redelivery
    /// (Lambda's asynchronous queue keeps an event up to 6 hours).
    pub ledger_ttl_s: i64,
    /// How long an alert waits for its diagnostics after SendCommand before it is published
    /// without them ([`crate::alert::diagnose`]).
    pub diagnose_wait_s: i64,
    /// How long after SendCommand the follow-up waits for them at most; 0 turns diagnostics off.
    /// The function's timeout must cover the lookups, this and two publications.
    pub diagnose_limit_s: i64,
    /// Bytes of the diagnostics output kept (its end).
    pub diagnose_output_bytes: usize,
    /// An instance is diagnosed at most once in this long, however often its alarms change
    /// state (whoever can set an alarm's state cannot make it a command loop); 0: no limit.
    pub diagnose_cooldown_s: i64,
    /// How long an invocation may wait before its last publications, when the Lambda's
    /// deadline is not known ([`handle`]).
    pub invocation_budget_s: i64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            recent_threshold_s: 15 * 60,
            group_cap: 5,
            datapoints: 6,
            claim_lease_s: 90,
            ledger_ttl_s: 7 * 86_400,
            diagnose_wait_s: 8,
            diagnose_limit_s: 30,
            diagnose_output_bytes: 8000,
            diagnose_cooldown_s: 300,
            invocation_budget_s: 45,
        }
    }
}

/// Whether the lookups can look in an account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Yes,
    /// The deployment is configured not to look there (another account, and cross-account
    /// lookups are off): why, for the note.
    Off(String),
}

/// The lookups, one AWS call each (the IAM one may be cached by the adapter), each in the
/// account and region `at` names: the adapter never answers from another region or account.
pub trait AlertLookups: Sync {
    /// Whether `at` can be searched: [`Reach::Off`] when the deployment does not look there, an
    /// error when it should and cannot (the member account's role refused).
    fn reach(&self, at: &Place) -> impl Future<Output = Result<Reach, CoreError>> + Send;
    /// DescribeInstances: the instance, or at most `cap` instances of the group.
    fn instances(&self, at: &Place, target: &Target, cap: usize) -> impl Future<Output = Result<Vec<InstanceDetails>, CoreError>> + Send;
    /// DescribeInstanceInformation: the SSM agents of the instance or the group.
    fn agents(&self, at: &Place, target: &Target) -> impl Future<Output = Result<Vec<AgentInfo>, CoreError>> + Send;
    /// The instance profiles of the account with their roles and policies.
    fn profile_roles(&self, at: &Place) -> impl Future<Output = Result<Vec<ProfileRole>, CoreError>> + Send;
    /// GetMetricData: the values of the one query with `return_data`, between the two times.
    fn datapoints(
        &self,
        at: &Place,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = Result<Vec<Datapoint>, CoreError>> + Send;
    /// ListAlarmMuteRules (with GetAlarmMuteRule for each): the mute rules that target the
    /// alarm and are active now.
    fn active_mutes(&self, at: &Place, alarm_name: &str) -> impl Future<Output = Result<Vec<ActiveMute>, CoreError>> + Send;
    /// SendCommand of the parameterless diagnostics `document` to the instance, with
    /// `TimeoutSeconds` [`crate::alert::diagnose::DELIVERY_TIMEOUT_S`]: the command id.
    fn send_diagnostics(
        &self,
        at: &Place,
        instance_id: &str,
        document: &str,
        comment: &str,
    ) -> impl Future<Output = Result<String, CoreError>> + Send;
    /// GetCommandInvocation of that command on the instance.
    fn diagnostics_result(
        &self,
        at: &Place,
        command_id: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Invocation, CoreError>> + Send;
}

/// Where enriched alerts go (the enriched-alerts SNS topic).
pub trait AlertPublisher: Sync {
    /// Publishes; returns the message id.
    fn publish(&self, publication: &Publication) -> impl Future<Output = Result<String, CoreError>> + Send;
}

/// The queries whose values the alert shows: the alarm's metric, or the math expression it
/// evaluates; for anomaly detection the metric compared with the band, not the band. None for
/// composite alarms.
pub fn datapoint_queries(alarm: &Alarm) -> Option<Vec<MetricQuery>> {
    match &alarm.kind {
        AlarmKind::Metric { stat, .. } => Some(vec![MetricQuery {
            id: "m1".into(),
            account_id: None,
            expression: None,
            metric_stat: Some(stat.clone()),
            label: None,
            return_data: true,
            period_s: None,
        }]),
        AlarmKind::MetricMath { queries, .. } => only_returned(queries.clone(), |q| q.return_data),
        AlarmKind::AnomalyDetection {
            queries,
            threshold_metric_id,
            ..
        } => {
            let band_of = |q: &MetricQuery| q.id == *threshold_metric_id;
            // The compared metric: a returned query that is not the band.
            let compared = queries.iter().find(|q| q.return_data && !band_of(q)).map(|q| q.id.clone())?;
            only_returned(queries.iter().filter(|q| !band_of(q)).cloned().collect(), |q| q.id == compared)
        }
        AlarmKind::Composite { .. } => None,
    }
}

/// `queries` with `return_data` on exactly the first that `keep` accepts.
fn only_returned(mut queries: Vec<MetricQuery>, keep: impl Fn(&MetricQuery) -> bool) -> Option<Vec<MetricQuery>> {
    let chosen = queries.iter().position(&keep)?;
    for (i, q) in queries.iter_mut().enumerate() {
        q.return_data = i == chosen;
    }
    Some(queries)
}

/// The period of the shown values.
fn period_of(queries: &[MetricQuery]) -> i64 {
    let returned = queries.iter().find(|q| q.return_data);
    returned
        .and_then(|q| q.period_s.or(q.metric_stat.as_ref().map(|s| s.period_s)))
        .or_else(|| queries.iter().find_map(|q| q.metric_stat.as_ref().map(|s| s.period_s)))
        .unwrap_or(60)
        .max(1)
}

async fn when<T, F: Future<Output = Result<T, CoreError>>>(f: Option<F>) -> Option<Result<T, CoreError>> {
    match f {
        Some(f) => Some(f.await),
        None => None,
    }
}

/// What a lookup that ran found; a failed one adds a note saying what is `missing`.
fn found<T>(result: Option<Result<T, CoreError>>, what: &str, missing: &str, notes: &mut Vec<String>) -> Option<T> {
    match result? {
        Ok(value) => Some(value),
        Err(e) => {
            notes.push(format!("{what} failed ({e}); {missing} unknown"));
            None
        }
    }
}

/// True when `az` (`ap-northeast-2a`, `us-west-2-lax-1a`) is in `region`.
fn in_region(az: &str, region: &str) -> bool {
    az.strip_prefix(region)
        .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '-'))
}

/// Searches each place the alert needs (the alarm's for its datapoints, the target's for EC2,
/// SSM and IAM: another account for a cross-account metric), once each. Returns whether the
/// target's and the alarm's places were reached; a place not reached is one note saying which
/// account and region were not searched and what is therefore unknown.
async fn reach_places(
    lookups: &impl AlertLookups,
    alarm_place: Option<&Place>,
    target_place: Option<&Place>,
    notes: &mut Vec<String>,
) -> (bool, bool) {
    let mut places: Vec<(&Place, Vec<&str>)> = Vec::new();
    if let Some(p) = target_place {
        places.push((p, vec!["instance details, the SSM agent status and the instance role"]));
    }
    if let Some(p) = alarm_place {
        match places.iter_mut().find(|(q, _)| *q == p) {
            Some((_, unknown)) => unknown.push("recent datapoints"),
            None => places.push((p, vec!["recent datapoints"])),
        }
    }
    let results = futures::future::join_all(places.iter().map(|(p, _)| lookups.reach(p))).await;
    let mut reached = Vec::new();
    for ((place, unknown), result) in places.iter().zip(results) {
        let (account, region) = (&place.account_id, &place.region);
        let unknown = unknown.join(" and ");
        match result {
            Ok(Reach::Yes) => reached.push(*place),
            Ok(Reach::Off(why)) => notes.push(format!("account {account} in {region} was not searched ({why}): {unknown} unknown")),
            Err(e) => notes.push(format!("lookups in account {account}, {region} failed ({e}): {unknown} unknown")),
        }
    }
    let ok = |p: Option<&Place>| p.is_some_and(|p| reached.contains(&p));
    (ok(target_place), ok(alarm_place))
}

/// Enriches one alarm. Never fails: what a lookup could not tell becomes a note.
pub async fn enrich(lookups: &impl AlertLookups, settings: &AlertSettings, alarm: Alarm) -> Enriched {
    let (target, target_place) = target_and_place(&alarm).unzip();
    let queries = datapoint_queries(&alarm);
    let alarm_place = Place {
        account_id: alarm.account_id.clone(),
        region: alarm.region.clone(),
    };
    let mut notes = Vec::new();
    let (target_reached, alarm_reached) =
        reach_places(lookups, queries.as_ref().map(|_| &alarm_place), target_place.as_ref(), &mut notes).await;
    let searched_target = target.as_ref().zip(target_place.as_ref()).filter(|_| target_reached);
    let queries_searched = queries.as_ref().filter(|_| alarm_reached);
    let window = queries_searched.map(|q| {
        let period_ms = period_of(q) * 1000;
        // Up to the period holding the state change, far enough back for `datapoints` values.
        let end = alarm.changed_at_ms + period_ms;
        (end - (settings.datapoints as i64 + 1) * period_ms, end)
    });
    // All lookups at once: the alert takes as long as the slowest one, not their sum. The IAM
    // listing does not depend on the instance (its profile is matched afterwards), so it runs
    // alongside instead of after DescribeInstances.
    // The alarm's mute rules live where the alarm does: searched when that place was reached.
    let alarm_place_reached = alarm_reached || (target_reached && target_place.as_ref() == Some(&alarm_place));
    let (instances, agents, roles, points, mutes) = futures::join!(
        when(searched_target.map(|(t, at)| lookups.instances(at, t, settings.group_cap))),
        when(searched_target.map(|(t, at)| lookups.agents(at, t))),
        when(searched_target.map(|(_, at)| lookups.profile_roles(at))),
        when(
            queries_searched
                .zip(window)
                .map(|(q, (start, end))| lookups.datapoints(&alarm_place, q, start, end))
        ),
        when(alarm_place_reached.then(|| lookups.active_mutes(&alarm_place, &alarm.name))),
    );

    let instances_known = matches!(instances, Some(Ok(_)));
    let instances = found(instances, "EC2 DescribeInstances", "instance details are", &mut notes).unwrap_or_default();
    let agents = found(agents, "SSM DescribeInstanceInformation", "the SSM agent status is", &mut notes);
    let roles = found(
        roles,
        "IAM GetAccountAuthorizationDetails",
        "the instance role and whether it is admin are",
        &mut notes,
    );
    let mut datapoints = found(points, "CloudWatch GetMetricData", "recent datapoints are", &mut notes).unwrap_or_default();
    let maintenance = found(
        mutes,
        "CloudWatch ListAlarmMuteRules",
        "whether the alarm is muted for maintenance is",
        &mut notes,
    )
    .unwrap_or_default();
    datapoints.sort_by_key(|d| d.epoch_s);
    let keep_from = datapoints.len().saturating_sub(settings.datapoints);
    let datapoints = datapoints.split_off(keep_from);
    let sparkline = (!datapoints.is_empty()).then(|| render::sparkline(&datapoints.iter().map(|d| d.value).collect::<Vec<_>>()));

    let region = alarm.region.clone();
    // An instance answered from another region is not the alarm's, whatever its id: an alarm
    // watches metrics of its own region.
    let (instances, elsewhere): (Vec<InstanceDetails>, Vec<InstanceDetails>) = instances
        .into_iter()
        .partition(|i| i.availability_zone.as_deref().is_none_or(|az| in_region(az, &region)));
    for i in &elsewhere {
        notes.push(format!(
            "instance {} in {} is not shown: the alarm is in {region}, and an instance of another region is not the one its metric names",
            i.instance_id,
            i.availability_zone.as_deref().unwrap_or("another region")
        ));
    }
    let views: Vec<InstanceView> = instances
        .into_iter()
        .map(|details| view(details, &alarm, settings, agents.as_deref(), roles.as_deref(), &mut notes))
        .collect();
    let account = target_place.as_ref().map_or(&alarm.account_id, |p| &p.account_id);
    match &target {
        Some(Target::Instance(id)) if views.is_empty() && instances_known => notes.push(format!(
            "instance {id} was not found: it does not exist in {region} of account {account}, or was terminated over an hour ago"
        )),
        Some(Target::AutoScalingGroup(name)) if views.is_empty() && instances_known => notes.push(format!(
            "Auto Scaling group {name} has no instances in {region} of account {account}"
        )),
        Some(Target::AutoScalingGroup(name)) if views.len() >= settings.group_cap => notes.push(format!(
            "only the first {} instances of Auto Scaling group {name} are shown",
            settings.group_cap
        )),
        _ => {}
    }

    let severity = severity(&alarm, &views, !maintenance.is_empty());
    let assessment = assessment(&views);
    let links = vec![Link {
        label: "Alarm".into(),
        url: format!(
            "{}/cloudwatch/home?region={region}#alarmsV2:alarm/{}",
            console(&region),
            url_encode(&alarm.name)
        ),
    }];
    Enriched {
        alarm,
        severity,
        target,
        target_place,
        instances: views,
        datapoints,
        sparkline,
        assessment,
        notes,
        links,
        maintenance,
        diagnostics: None,
    }
}

fn view(
    details: InstanceDetails,
    alarm: &Alarm,
    settings: &AlertSettings,
    agents: Option<&[AgentInfo]>,
    roles: Option<&[ProfileRole]>,
    notes: &mut Vec<String>,
) -> InstanceView {
    let id = details.instance_id.clone();
    let running = details.state == "running";
    let uptime_s = details
        .launch_time_epoch_s
        .filter(|_| running)
        .map(|launched| (alarm.changed_at_ms / 1000 - launched).max(0));
    let recently_started = uptime_s.is_some_and(|u| u < settings.recent_threshold_s);
    let role = match (&details.instance_profile_arn, roles) {
        (Some(profile), Some(roles)) => {
            let found = roles.iter().find(|r| r.profile_arn == *profile);
            if found.is_none() {
                notes.push(format!("instance profile {profile} of {id} has no role in IAM's listing"));
            }
            found
        }
        _ => None,
    };
    let agent = agents.and_then(|list| list.iter().find(|a| a.instance_id == id).cloned());
    if agents.is_some() && agent.is_none() && running {
        notes.push(format!(
            "{id} is not a managed instance in SSM (no agent registered, or its role does not allow SSM)"
        ));
    }
    let (r, base) = (&alarm.region, console(&alarm.region));
    let links = vec![
        Link {
            label: "Instance".into(),
            url: format!("{base}/ec2/home?region={r}#InstanceDetails:instanceId={id}"),
        },
        Link {
            label: "Session Manager".into(),
            url: format!("{base}/systems-manager/session-manager/{id}?region={r}"),
        },
    ];
    InstanceView {
        uptime_s,
        recently_started,
        role_name: role.map(|r| r.role_name.clone()),
        admin: role.and_then(admin_grant),
        agent,
        links,
        details,
    }
}

/// A plain-language verdict on the instances, when there is one to give.
fn assessment(views: &[InstanceView]) -> Option<String> {
    let [only] = views else {
        let recent = views.iter().filter(|v| v.recently_started).count();
        return (recent > 0).then(|| format!("{recent} of {} instances started recently — possibly warm-up", views.len()));
    };
    match only.details.state.as_str() {
        "terminated" | "shutting-down" => Some(format!("the instance is {} — the alarm may be stale", only.details.state)),
        "stopped" | "stopping" => Some(format!("the instance is {}", only.details.state)),
        _ if only.recently_started => Some(format!(
            "started {} ago — likely warm-up, probably a false positive",
            render::human_duration(only.uptime_s.unwrap_or(0))
        )),
        _ => None,
    }
}

/// The AWS Management Console of a region's partition: the regional host in the `aws`
/// partition, `console.amazonaws.cn` in China (`cn-…`), `console.amazonaws-us-gov.com` in
/// GovCloud (`us-gov-…`); each link also names the region in its query.
pub fn console(region: &str) -> String {
    match crate::facts::partition(region) {
        "aws-cn" => "https://console.amazonaws.cn".to_string(),
        "aws-us-gov" => "https://console.amazonaws-us-gov.com".to_string(),
        _ => format!("https://{region}.console.aws.amazon.com"),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The Lambda: every message of `event` enriched (or passed on as unrecognized) and published,
/// once per alarm state change ([`ledger`]), then the diagnostics follow-ups of the alerts that
/// went out before their diagnostics ended ([`diagnose`]), all at once: a slow command delays no
/// other message. Every message is tried; the invocation fails when one could not be published
/// (then SNS, Lambda or SQS delivers it again and, in the end, the dead-letter queue keeps it:
/// an alert is never lost) or when another delivery holds its claim (`Conflict`: retried later).
/// Returns the ids of the messages published by this delivery; a state change published before
/// is skipped. Waiting ends by `deadline_ms` (the Lambda's deadline less the time to publish).
pub async fn handle_until(
    lookups: &impl AlertLookups,
    publisher: &impl AlertPublisher,
    ledger: &impl AlertLedger,
    clock: &impl Clock,
    settings: &AlertSettings,
    event: &Value,
    deadline_ms: i64,
) -> Result<Vec<String>, CoreError> {
    let mut ids = Vec::new();
    let mut failed = None;
    let mut owed = Vec::new();
    for message in incoming(event) {
        let outcome = match message {
            // Boxed: the enrichment's future (every lookup at once) is large, and a caller's
            // stack (a test thread's 2 MiB, in debug builds) need not hold it.
            Incoming::Alarm(alarm) => Box::pin(publish_alarm(lookups, publisher, ledger, clock, settings, *alarm, deadline_ms))
                .await
                .map(|(id, follow_up)| {
                    owed.extend(follow_up);
                    id
                }),
            Incoming::Unrecognized { source, subject, raw, why } => publisher
                .publish(&render::unrecognized_publication(&source, subject.as_deref(), &raw, &why))
                .await
                .map(Some),
        };
        match outcome {
            Ok(id) => ids.extend(id),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    let follow_ups = owed
        .into_iter()
        .map(|o| publish_follow_up(lookups, publisher, ledger, clock, settings, o, deadline_ms));
    for outcome in futures::future::join_all(follow_ups).await {
        match outcome {
            Ok(id) => ids.push(id),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(ids),
    }
}

/// [`handle_until`] with the deadline `invocation_budget_s` from now (when the Lambda's is not
/// known).
pub async fn handle(
    lookups: &impl AlertLookups,
    publisher: &impl AlertPublisher,
    ledger: &impl AlertLedger,
    clock: &impl Clock,
    settings: &AlertSettings,
    event: &Value,
) -> Result<Vec<String>, CoreError> {
    let deadline_ms = clock.now_ms() + settings.invocation_budget_s * 1000;
    handle_until(lookups, publisher, ledger, clock, settings, event, deadline_ms).await
}

fn busy(what: String, lease_until_s: i64) -> CoreError {
    CoreError::conflict(
        what,
        format!(
            "another delivery is publishing it (its claim holds until {}): retry later",
            crate::time::format_utc(lease_until_s)
        ),
    )
}

/// A diagnostics follow-up this delivery owes: the alert it follows (with its running
/// diagnostics) and the ledger key to record it under (None without a ledger).
struct FollowUp {
    enriched: Enriched,
    diagnostics: Diagnostics,
    record: Option<(String, i64)>,
    /// Taken over from a delivery that stopped before publishing it.
    taken_over: bool,
}

/// Claims the alarm's state change, enriches and publishes it, and records it published.
/// Returns the alert's id (None: published before) and the follow-up owed when its
/// diagnostics still run — or, for a state change published before whose follow-up the
/// delivery that owed it did not publish, that follow-up.
async fn publish_alarm(
    lookups: &impl AlertLookups,
    publisher: &impl AlertPublisher,
    ledger: &impl AlertLedger,
    clock: &impl Clock,
    settings: &AlertSettings,
    alarm: Alarm,
    deadline_ms: i64,
) -> Result<(Option<String>, Option<FollowUp>), CoreError> {
    let key = ledger::key(&alarm);
    let follow_key = diagnose::follow_up_key(&key);
    let now_s = clock.now_ms().div_euclid(1000);
    let expires_at_s = now_s + settings.ledger_ttl_s;
    let follow_lease_s = settings.diagnose_limit_s + diagnose::FOLLOW_UP_MARGIN_S;
    let claimed = match ledger.claim(&key, now_s, settings.claim_lease_s, expires_at_s).await {
        Ok(Claim::Won) => Ok(()),
        Ok(Claim::Published(message_id)) => {
            tracing::info!(key, message_id, "alarm state change published before: skipped");
            if settings.diagnose_limit_s <= 0 {
                return Ok((None, None));
            }
            // Its follow-up too, unless the delivery that owed it stopped before publishing it.
            return match ledger.reclaim(&follow_key, now_s, follow_lease_s, expires_at_s).await? {
                None | Some((Claim::Published(_), _)) => Ok((None, None)),
                Some((Claim::Busy { lease_until_s }, _)) => Err(busy(format!("diagnostics of {key}"), lease_until_s)),
                Some((Claim::Won, owed)) => {
                    let enriched = Box::pin(enrich(lookups, settings, alarm)).await;
                    let diagnostics = serde_json::from_str::<Diagnostics>(&owed).unwrap_or_else(|_| {
                        diagnose::not_run(&enriched, "the command this follow-up waited for was not recorded".to_string())
                    });
                    Ok((
                        None,
                        Some(FollowUp {
                            enriched,
                            diagnostics,
                            record: Some((follow_key, expires_at_s)),
                            taken_over: true,
                        }),
                    ))
                }
            };
        }
        Ok(Claim::Busy { lease_until_s }) => return Err(busy(format!("alarm state change {key}"), lease_until_s)),
        Err(e) => Err(e),
    };
    let mut enriched = Box::pin(enrich(lookups, settings, alarm)).await;
    if let Err(e) = &claimed {
        enriched
            .notes
            .push(format!("deduplication unavailable ({e}): this alert may repeat one already sent"));
    }
    // An earlier delivery of this state change may have sent a command and stopped before the
    // alert was recorded published: its follow-up claim notes the command, read instead of
    // sending another (asked only when the instance is to be diagnosed).
    let earlier = match claimed.is_ok() && matches!(diagnose::candidate(&enriched, settings), Some(Ok(_))) {
        false => None,
        true => ledger
            .reclaim(&follow_key, now_s, follow_lease_s, expires_at_s)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(key = follow_key, error = %e, "could not look for an earlier delivery's command");
                None
            }),
    };
    let follow_held = matches!(earlier, Some((Claim::Won, _)));
    match earlier {
        None => diagnose::start(lookups, ledger, clock, settings, &mut enriched, deadline_ms).await,
        Some((Claim::Published(follow_up_id), _)) => {
            // The alert and its follow-up went out; only the alert's record was lost.
            if let Err(e) = ledger.published(&key, &follow_up_id, expires_at_s).await {
                tracing::warn!(key, error = %e, "could not record the state change as published");
            }
            return Ok((None, None));
        }
        Some((Claim::Busy { lease_until_s }, _)) => {
            if let Err(e) = ledger.release(&key).await {
                tracing::warn!(key, error = %e, "could not release the claim of an unpublished state change");
            }
            return Err(busy(format!("diagnostics of {key}"), lease_until_s));
        }
        Some((Claim::Won, owed)) => match serde_json::from_str::<Diagnostics>(&owed) {
            Ok(d) => {
                enriched.diagnostics = Some(d);
                diagnose::resume(lookups, clock, settings, &mut enriched, deadline_ms).await;
            }
            Err(_) => diagnose::start(lookups, ledger, clock, settings, &mut enriched, deadline_ms).await,
        },
    }
    let message_id = match publisher.publish(&render::publication(&enriched)).await {
        Ok(message_id) => message_id,
        Err(e) => {
            if claimed.is_ok() {
                // A command that was sent is noted for the retry (which reads it instead of
                // sending another; the instance's cooldown stays), with a lease that has already
                // run out.
                let sent = enriched.diagnostics.as_ref().filter(|d| d.command_id.is_some());
                if let (Some(d), false) = (sent, follow_held) {
                    let owed = serde_json::to_string(d).unwrap_or_default();
                    let now_s = clock.now_ms().div_euclid(1000);
                    if let Err(e) = ledger.claim_owed(&follow_key, now_s, 0, expires_at_s, &owed).await {
                        tracing::warn!(key = follow_key, error = %e, "could not note the command for the retry");
                    }
                }
                if let Err(release) = ledger.release(&key).await {
                    // The claim lapses with its lease; the retry after that publishes.
                    tracing::warn!(key, error = %release, "could not release the claim of an unpublished state change");
                }
            }
            return Err(e);
        }
    };
    let running = enriched.diagnostics.as_ref().filter(|d| d.status == DiagnosticsStatus::Running);
    // Owed before the alert is recorded published: a delivery that stops in between leaves the
    // alert unrecorded, and the retry finds the follow-up's claim (above) and reads its command.
    let record = match (running, &claimed) {
        (None, _) => {
            if follow_held {
                // The earlier delivery's command ended in this alert: nothing is owed.
                if let Err(e) = ledger.published(&follow_key, &message_id, expires_at_s).await {
                    tracing::warn!(key = follow_key, error = %e, "could not record the diagnostics as published");
                }
            }
            None
        }
        (Some(_), Err(_)) => Some(None),
        (Some(_), Ok(())) if follow_held => Some(Some((follow_key, expires_at_s))),
        (Some(d), Ok(())) => {
            let owed = serde_json::to_string(d).unwrap_or_default();
            match ledger
                .claim_owed(&follow_key, clock.now_ms().div_euclid(1000), follow_lease_s, expires_at_s, &owed)
                .await
            {
                Ok(Claim::Won) => Some(Some((follow_key, expires_at_s))),
                // Another delivery owes it, or published it.
                Ok(Claim::Published(_) | Claim::Busy { .. }) => None,
                // No ledger to record it in: published all the same.
                Err(_) => Some(None),
            }
        }
    };
    if claimed.is_ok() {
        if let Err(e) = ledger.published(&key, &message_id, expires_at_s).await {
            // Published all the same; a redelivery after the lease would repeat it.
            tracing::warn!(key, error = %e, "could not record the state change as published");
        }
    }
    let follow_up = match (record, enriched.diagnostics.take()) {
        (Some(record), Some(diagnostics)) => Some(FollowUp {
            enriched,
            diagnostics,
            record,
            taken_over: follow_held,
        }),
        _ => None,
    };
    Ok((Some(message_id), follow_up))
}

/// Waits for the follow-up's diagnostics (until `diagnose_limit_s` after SendCommand, or after
/// now when taken over, and never past `deadline_ms`), publishes the follow-up and records it.
/// A failed publish fails the invocation and leaves the claim to lapse with its lease: the
/// redelivery takes it over and publishes it.
async fn publish_follow_up(
    lookups: &impl AlertLookups,
    publisher: &impl AlertPublisher,
    ledger: &impl AlertLedger,
    clock: &impl Clock,
    settings: &AlertSettings,
    mut f: FollowUp,
    deadline_ms: i64,
) -> Result<String, CoreError> {
    if let Some(at) = &f.enriched.target_place {
        let from = if f.taken_over { clock.now_ms() } else { f.diagnostics.sent_at_ms };
        let until = (from + settings.diagnose_limit_s * 1000).min(deadline_ms);
        diagnose::finish(lookups, clock, at, &mut f.diagnostics, until, settings).await;
    }
    let message_id = publisher
        .publish(&render::diagnostics_publication(&f.enriched, &f.diagnostics, f.taken_over))
        .await?;
    if let Some((key, expires_at_s)) = &f.record {
        if let Err(e) = ledger.published(key, &message_id, *expires_at_s).await {
            tracing::warn!(key, error = %e, "could not record the diagnostics follow-up as published");
        }
    }
    Ok(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_links_follow_the_regions_partition() {
        assert_eq!(console("eu-west-1"), "https://eu-west-1.console.aws.amazon.com");
        assert_eq!(console("cn-north-1"), "https://console.amazonaws.cn");
        assert_eq!(console("cn-northwest-1"), "https://console.amazonaws.cn");
        assert_eq!(console("us-gov-west-1"), "https://console.amazonaws-us-gov.com");
    }
    use crate::alert::model::{Dimension, Metric, MetricStat, Severity};
    use crate::ports::Clock;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    const ALARM_AT_S: i64 = 1_795_000_000;

    fn alarm(dimension: (&str, &str)) -> Alarm {
        Alarm {
            name: "cpu-high web/7".into(),
            description: None,
            arn: Some("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu-high web/7".into()),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            region_name: Some("EU (Ireland)".into()),
            state: "ALARM".into(),
            previous_state: Some("OK".into()),
            reason: "Threshold Crossed".into(),
            changed_at_ms: ALARM_AT_S * 1000,
            kind: AlarmKind::Metric {
                stat: MetricStat {
                    metric: Metric {
                        namespace: "AWS/EC2".into(),
                        name: "CPUUtilization".into(),
                        dimensions: vec![Dimension {
                            name: dimension.0.into(),
                            value: dimension.1.into(),
                        }],
                    },
                    period_s: 300,
                    stat: "Average".into(),
                    unit: None,
                },
                comparison: Some("GreaterThanThreshold".into()),
                threshold: Some(90.0),
                evaluation_periods: Some(1),
            },
            source: "sns".into(),
            actions_suppressed: None,
            evaluation_state: None,
            datapoints_to_alarm: None,
            treat_missing_data: None,
            tags: BTreeMap::new(),
            tags_status: None,
        }
    }

    fn instance(id: &str, started_s_before: i64, profile: Option<&str>) -> InstanceDetails {
        InstanceDetails {
            instance_id: id.into(),
            name: Some("web-7".into()),
            tags: BTreeMap::from([("Name".to_string(), "web-7".to_string())]),
            instance_type: Some("t3.small".into()),
            state: "running".into(),
            availability_zone: Some("eu-west-1a".into()),
            private_ip: Some("10.0.1.23".into()),
            launch_time_epoch_s: Some(ALARM_AT_S - started_s_before),
            instance_profile_arn: profile.map(String::from),
            platform: None,
        }
    }

    /// Lookups that answer after a delay (virtual time) or fail, and log what was asked and
    /// where. Like AWS, they answer from any place they are asked about (the adapter's clients
    /// are per place); `off` accounts are not searched, `refused` ones fail to be reached.
    struct Fake {
        delays_ms: [u64; 4],
        fail: Option<usize>,
        instances: Vec<InstanceDetails>,
        calls: Mutex<Vec<String>>,
        places: Mutex<Vec<(String, Place)>>,
        off: Vec<String>,
        refused: Vec<String>,
        mutes: Vec<ActiveMute>,
        ping: String,
        /// The diagnostics command: after how many reads it ends, and how (None: SendCommand fails).
        command: Option<(usize, Invocation)>,
        sent: Mutex<Vec<(Place, String, String, String)>>,
        reads: Mutex<usize>,
    }

    impl Fake {
        fn new(instances: Vec<InstanceDetails>) -> Fake {
            Fake {
                delays_ms: [0; 4],
                fail: None,
                instances,
                calls: Mutex::new(Vec::new()),
                places: Mutex::new(Vec::new()),
                off: Vec::new(),
                refused: Vec::new(),
                mutes: Vec::new(),
                ping: "Online".into(),
                command: None,
                sent: Mutex::new(Vec::new()),
                reads: Mutex::new(0),
            }
        }

        fn asked(&self, what: &str, at: &Place) {
            self.places.lock().unwrap().push((what.to_string(), at.clone()));
        }

        async fn answer<T>(&self, which: usize, what: String, value: T) -> Result<T, CoreError> {
            self.calls.lock().unwrap().push(what);
            tokio::time::sleep(Duration::from_millis(self.delays_ms[which])).await;
            if self.fail == Some(which) {
                return Err(CoreError::throttled("Lookup", "Rate exceeded"));
            }
            Ok(value)
        }
    }

    impl AlertLookups for Fake {
        async fn reach(&self, at: &Place) -> Result<Reach, CoreError> {
            if self.refused.contains(&at.account_id) {
                return Err(CoreError::access_denied("sts:AssumeRole", "not authorized"));
            }
            Ok(match self.off.contains(&at.account_id) {
                true => Reach::Off("another account; cross-account lookups are off".into()),
                false => Reach::Yes,
            })
        }
        async fn instances(&self, at: &Place, target: &Target, cap: usize) -> Result<Vec<InstanceDetails>, CoreError> {
            self.asked("instances", at);
            let list = self.instances.iter().take(cap).cloned().collect();
            self.answer(0, format!("instances {target:?} {cap}"), list).await
        }
        async fn agents(&self, at: &Place, _target: &Target) -> Result<Vec<AgentInfo>, CoreError> {
            self.asked("agents", at);
            let agents = self
                .instances
                .iter()
                .map(|i| AgentInfo {
                    instance_id: i.instance_id.clone(),
                    ping_status: self.ping.clone(),
                    last_ping_epoch_s: Some(ALARM_AT_S - 60),
                    agent_version: Some("3.3.987.0".into()),
                })
                .collect();
            self.answer(1, "agents".into(), agents).await
        }
        async fn profile_roles(&self, at: &Place) -> Result<Vec<ProfileRole>, CoreError> {
            self.asked("roles", at);
            let roles = vec![ProfileRole {
                profile_arn: "arn:aws:iam::123456789012:instance-profile/web".into(),
                role_name: "web-role".into(),
                role_arn: "arn:aws:iam::123456789012:role/web-role".into(),
                attached_policy_arns: vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()],
                policy_documents: vec![],
            }];
            self.answer(2, "roles".into(), roles).await
        }
        async fn datapoints(&self, at: &Place, queries: &[MetricQuery], start_ms: i64, end_ms: i64) -> Result<Vec<Datapoint>, CoreError> {
            self.asked("datapoints", at);
            let values = [10.0, 12.0, 15.0, 97.0, 98.0, 99.0, 99.0];
            let points = values
                .iter()
                .enumerate()
                .map(|(i, v)| Datapoint {
                    epoch_s: ALARM_AT_S - 300 * (values.len() as i64 - 1 - i as i64),
                    value: *v,
                })
                .rev() // newest first, as GetMetricData returns them
                .collect();
            self.answer(3, format!("datapoints {} {start_ms}..{end_ms}", queries.len()), points)
                .await
        }
        async fn active_mutes(&self, at: &Place, alarm_name: &str) -> Result<Vec<ActiveMute>, CoreError> {
            self.asked("mutes", at);
            self.calls.lock().unwrap().push(format!("mutes {alarm_name}"));
            Ok(self.mutes.clone())
        }
        async fn send_diagnostics(&self, at: &Place, instance_id: &str, document: &str, comment: &str) -> Result<String, CoreError> {
            let sent = (at.clone(), instance_id.to_string(), document.to_string(), comment.to_string());
            self.sent.lock().unwrap().push(sent);
            match self.command {
                Some(_) => Ok("cmd-1".into()),
                None => Err(CoreError::access_denied("ssm:SendCommand", "not authorized")),
            }
        }
        async fn diagnostics_result(&self, _at: &Place, command_id: &str, _instance_id: &str) -> Result<Invocation, CoreError> {
            assert_eq!(command_id, "cmd-1");
            let Some((ends_after, end)) = &self.command else {
                panic!("no command was sent")
            };
            let read = {
                let mut reads = self.reads.lock().unwrap();
                *reads += 1;
                *reads
            };
            Ok(match read {
                // Right after SendCommand, SSM may not know the invocation yet.
                1 => return Err(CoreError::not_found("GetCommandInvocation", "InvocationDoesNotExist: ")),
                r if r < *ends_after => Invocation {
                    status: "InProgress".into(),
                    response_code: -1,
                    ..Invocation::default()
                },
                _ => end.clone(),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_muted_for_maintenance_is_low_and_says_by_which_rule() {
        let mut fake = Fake::new(vec![instance("i-0abc", 86_400, None)]);
        fake.mutes = vec![ActiveMute {
            rule: "opsflow-i-0abc-nightly".into(),
            description: Some("opsflow clean-stop (clean-stop) on i-0abc: run nightly started 2026-12-06T02:00:00Z by ops".into()),
        }];
        let e = enrich(&fake, &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
        assert_eq!(e.maintenance, fake.mutes);
        assert_eq!(e.severity, Severity::Low, "an alarm in the ALARM state would be high unmuted");
        let unmuted = enrich(
            &Fake::new(vec![instance("i-0abc", 86_400, None)]),
            &AlertSettings::default(),
            alarm(("InstanceId", "i-0abc")),
        )
        .await;
        assert_eq!(unmuted.severity, Severity::High);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_alarm_gets_everything_and_a_verdict() {
        let fake = Fake::new(vec![instance(
            "i-0abc",
            240,
            Some("arn:aws:iam::123456789012:instance-profile/web"),
        )]);
        let e = enrich(&fake, &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
        assert_eq!(e.notes, Vec::<String>::new());
        assert_eq!(e.severity, Severity::Medium);
        assert_eq!(
            e.assessment.as_deref(),
            Some("started 4 minutes ago — likely warm-up, probably a false positive")
        );
        let v = &e.instances[0];
        assert_eq!((v.uptime_s, v.recently_started), (Some(240), true));
        assert_eq!(v.role_name.as_deref(), Some("web-role"));
        assert_eq!(v.admin.as_deref(), Some("AdministratorAccess is attached"));
        assert_eq!(v.agent.as_ref().unwrap().ping_status, "Online");
        assert_eq!(
            e.datapoints.iter().map(|d| d.value).collect::<Vec<_>>(),
            [12.0, 15.0, 97.0, 98.0, 99.0, 99.0]
        );
        assert!(e.sparkline.is_some());
        assert_eq!(
            e.links[0].url,
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/cpu-high%20web%2F7"
        );
        assert_eq!(
            v.links[1].url,
            "https://eu-west-1.console.aws.amazon.com/systems-manager/session-manager/i-0abc?region=eu-west-1"
        );
        // Six 5-minute periods back from the period holding the change, one call per lookup
        // (the mute rules of the alarm included).
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 5, "{calls:?}");
        assert!(calls.contains(&"mutes cpu-high web/7".to_string()), "{calls:?}");
        let start = (ALARM_AT_S + 300 - 7 * 300) * 1000;
        assert!(
            calls.contains(&format!("datapoints 1 {start}..{}", (ALARM_AT_S + 300) * 1000)),
            "{calls:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_run_at_once_so_a_slow_one_does_not_delay_the_others() {
        let mut fake = Fake::new(vec![instance("i-0abc", 86_400, None)]);
        fake.delays_ms = [100, 200, 300, 1_500];
        let started = tokio::time::Instant::now();
        let e = enrich(&fake, &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
        // The slowest lookup's time, not the sum (2.1 s).
        assert_eq!(started.elapsed(), Duration::from_millis(1_500));
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.assessment, None);
        assert_eq!(e.datapoints.len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_lookup_is_a_note_and_the_rest_is_kept() {
        for failing in 0..4 {
            let mut fake = Fake::new(vec![instance("i-0abc", 60, Some("arn:aws:iam::123456789012:instance-profile/web"))]);
            fake.fail = Some(failing);
            let e = enrich(&fake, &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
            assert_eq!(e.notes.len(), 1, "{:?}", e.notes);
            assert!(e.notes[0].contains("Throttled: Lookup: Rate exceeded"), "{}", e.notes[0]);
            assert_eq!(e.instances.is_empty(), failing == 0);
            assert_eq!(e.datapoints.is_empty(), failing == 3);
            if failing != 0 {
                assert_eq!(e.instances[0].agent.is_none(), failing == 1);
                assert_eq!(e.instances[0].admin.is_none(), failing == 2);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_or_terminated_instance_is_said_plainly() {
        let fake = Fake::new(vec![]);
        let e = enrich(&fake, &AlertSettings::default(), alarm(("InstanceId", "i-0gone"))).await;
        assert_eq!(
            e.notes,
            ["instance i-0gone was not found: it does not exist in eu-west-1 of account 123456789012, or was terminated over an hour ago"]
        );
        assert_eq!(e.severity, Severity::High);

        let mut gone = instance("i-0abc", 60, None);
        gone.state = "terminated".into();
        let e = enrich(&Fake::new(vec![gone]), &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
        assert_eq!(e.assessment.as_deref(), Some("the instance is terminated — the alarm may be stale"));
        assert!(!e.instances[0].recently_started);
    }

    fn place(account: &str, region: &str) -> Place {
        Place {
            account_id: account.into(),
            region: region.into(),
        }
    }

    /// An alarm on `i-0abc` in `region` of `account`.
    fn alarm_in(account: &str, region: &str) -> Alarm {
        let mut a = alarm(("InstanceId", "i-0abc"));
        a.account_id = account.into();
        a.region = region.into();
        a.arn = Some(format!("arn:aws:cloudwatch:{region}:{account}:alarm:cpu-high"));
        a
    }

    // --- Lookups in the alarm's region and account (issue 16, defect 4).

    #[tokio::test(start_paused = true)]
    async fn every_lookup_runs_in_the_alarms_region_and_account() {
        let mut seoul = instance("i-0abc", 86_400, Some("arn:aws:iam::123456789012:instance-profile/web"));
        seoul.availability_zone = Some("ap-northeast-2c".into());
        let fake = Fake::new(vec![seoul]);
        let e = enrich(&fake, &AlertSettings::default(), alarm_in("123456789012", "ap-northeast-2")).await;
        assert_eq!(e.notes, Vec::<String>::new());
        assert_eq!(e.instances.len(), 1);
        assert_eq!(e.target_place, Some(place("123456789012", "ap-northeast-2")));
        let places = fake.places.lock().unwrap().clone();
        assert_eq!(places.len(), 5, "{places:?}");
        assert!(
            places.iter().all(|(_, p)| *p == place("123456789012", "ap-northeast-2")),
            "{places:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_same_id_instance_of_another_region_is_never_attached() {
        // The lookups answer with an instance of eu-west-1 for an alarm of ap-northeast-2.
        let fake = Fake::new(vec![instance("i-0abc", 60, None)]);
        let e = enrich(&fake, &AlertSettings::default(), alarm_in("123456789012", "ap-northeast-2")).await;
        assert!(e.instances.is_empty());
        assert_eq!(e.severity, Severity::High, "not lowered by another region's young instance");
        assert_eq!(
            e.notes,
            [
                "instance i-0abc in eu-west-1a is not shown: the alarm is in ap-northeast-2, and an instance of another region is not the one its metric names",
                "instance i-0abc was not found: it does not exist in ap-northeast-2 of account 123456789012, or was terminated over an hour ago"
            ]
        );
        assert!(e.links[0].url.starts_with("https://ap-northeast-2.console.aws.amazon.com/"));
        assert!(in_region("us-west-2-lax-1a", "us-west-2"));
        assert!(!in_region("us-east-10a", "us-east-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn another_account_not_searched_says_which_account_and_region() {
        let mut fake = Fake::new(vec![instance("i-0abc", 60, None)]);
        fake.off = vec!["444455556666".into()];
        let e = enrich(&fake, &AlertSettings::default(), alarm_in("444455556666", "eu-west-1")).await;
        assert_eq!(
            e.notes,
            [
                "account 444455556666 in eu-west-1 was not searched (another account; cross-account lookups are off): \
              instance details, the SSM agent status and the instance role and recent datapoints unknown"
            ]
        );
        assert!(e.instances.is_empty() && e.datapoints.is_empty());
        assert!(
            fake.calls.lock().unwrap().is_empty(),
            "nothing is asked of the function's own account instead"
        );
        assert_eq!(e.severity, Severity::High);

        fake.off.clear();
        fake.refused = vec!["444455556666".into()];
        let e = enrich(&fake, &AlertSettings::default(), alarm_in("444455556666", "eu-west-1")).await;
        assert_eq!(e.notes.len(), 1, "{:?}", e.notes);
        assert!(
            e.notes[0].starts_with("lookups in account 444455556666, eu-west-1 failed (AccessDenied: sts:AssumeRole"),
            "{}",
            e.notes[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cross_account_metric_is_looked_up_in_its_account_and_datapoints_in_the_alarms() {
        let mut a = alarm_in("111122223333", "eu-west-1");
        let AlarmKind::Metric { stat, .. } = a.kind.clone() else {
            unreachable!()
        };
        a.kind = AlarmKind::MetricMath {
            queries: vec![
                MetricQuery {
                    id: "e1".into(),
                    account_id: None,
                    expression: Some("m1*1".into()),
                    metric_stat: None,
                    label: None,
                    return_data: true,
                    period_s: None,
                },
                MetricQuery {
                    id: "m1".into(),
                    account_id: Some("444455556666".into()),
                    expression: None,
                    metric_stat: Some(stat),
                    label: None,
                    return_data: false,
                    period_s: None,
                },
            ],
            comparison: None,
            threshold: Some(90.0),
            evaluation_periods: None,
        };
        let mut fake = Fake::new(vec![instance("i-0abc", 86_400, None)]);
        let e = enrich(&fake, &AlertSettings::default(), a.clone()).await;
        assert_eq!(e.target_place, Some(place("444455556666", "eu-west-1")));
        let places = fake.places.lock().unwrap().clone();
        for (what, at) in &places {
            // The metric's data and the alarm's mute rules are the alarm's account's.
            let want = if what == "datapoints" || what == "mutes" {
                "111122223333"
            } else {
                "444455556666"
            };
            assert_eq!(at.account_id, want, "{what}");
        }
        assert_eq!(e.instances.len(), 1);

        // The workload account off: the datapoints still come from the alarm's account.
        fake.off = vec!["444455556666".into()];
        fake.places.lock().unwrap().clear();
        let e = enrich(&fake, &AlertSettings::default(), a).await;
        assert_eq!(e.datapoints.len(), 6);
        assert_eq!(
            e.notes,
            [
                "account 444455556666 in eu-west-1 was not searched (another account; cross-account lookups are off): \
              instance details, the SSM agent status and the instance role unknown"
            ]
        );
    }

    // --- One publication per state change (the ledger), and never a lost alert.

    #[derive(Default)]
    struct Published(Mutex<Vec<Publication>>, Mutex<usize>);

    impl AlertPublisher for Published {
        async fn publish(&self, p: &Publication) -> Result<String, CoreError> {
            let mut fail = self.1.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(CoreError::transient("Publish", "InternalError"));
            }
            let mut list = self.0.lock().unwrap();
            list.push(p.clone());
            Ok(format!("msg-{}", list.len()))
        }
    }

    /// The ledger as a map of key → (published message id, lease end, what it owes); `broken`
    /// fails every call.
    /// (published message id, lease end, what it owes).
    type Row = (Option<String>, i64, String);

    #[derive(Default)]
    struct MemoryLedger {
        rows: Mutex<BTreeMap<String, Row>>,
        broken: bool,
    }

    impl AlertLedger for MemoryLedger {
        async fn claim(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64) -> Result<Claim, CoreError> {
            self.claim_owed(key, now_s, lease_s, expires_at_s, "").await
        }
        async fn claim_owed(&self, key: &str, now_s: i64, lease_s: i64, _expires_at_s: i64, owed: &str) -> Result<Claim, CoreError> {
            if self.broken {
                return Err(CoreError::transient("PutItem", "ServiceUnavailable"));
            }
            let mut rows = self.rows.lock().unwrap();
            match rows.get(key) {
                Some((Some(id), _, _)) => Ok(Claim::Published(id.clone())),
                Some((None, until, _)) if *until >= now_s => Ok(Claim::Busy { lease_until_s: *until }),
                _ => {
                    rows.insert(key.into(), (None, now_s + lease_s, owed.into()));
                    Ok(Claim::Won)
                }
            }
        }
        async fn published(&self, key: &str, message_id: &str, _expires_at_s: i64) -> Result<(), CoreError> {
            self.rows
                .lock()
                .unwrap()
                .insert(key.into(), (Some(message_id.into()), 0, String::new()));
            Ok(())
        }
        async fn release(&self, key: &str) -> Result<(), CoreError> {
            let mut rows = self.rows.lock().unwrap();
            if rows.get(key).is_some_and(|r| r.0.is_none()) {
                rows.remove(key);
            }
            Ok(())
        }
        async fn reclaim(&self, key: &str, now_s: i64, lease_s: i64, _expires_at_s: i64) -> Result<Option<(Claim, String)>, CoreError> {
            if self.broken {
                return Err(CoreError::transient("UpdateItem", "ServiceUnavailable"));
            }
            let mut rows = self.rows.lock().unwrap();
            Ok(match rows.get_mut(key) {
                None => None,
                Some((Some(id), _, owed)) => Some((Claim::Published(id.clone()), owed.clone())),
                Some((None, until, owed)) if *until >= now_s => Some((Claim::Busy { lease_until_s: *until }, owed.clone())),
                Some((None, until, owed)) => {
                    *until = now_s + lease_s;
                    Some((Claim::Won, owed.clone()))
                }
            })
        }
    }

    /// The SNS event of the alarm on i-0abc changing state at `time` (HH:MM:SS) of its day.
    fn sns_event_at(time: &str) -> Value {
        let e = sns_event(&alarm(("InstanceId", "i-0abc"))).to_string();
        serde_json::from_str(&e.replace("20:26:40", time)).unwrap()
    }

    fn sns_event(alarm: &Alarm) -> Value {
        let message = serde_json::json!({
            "AlarmName": alarm.name, "AWSAccountId": alarm.account_id, "NewStateValue": alarm.state,
            "NewStateReason": alarm.reason, "StateChangeTime": "2026-11-18T20:26:40.000+0000",
            "AlarmArn": alarm.arn, "OldStateValue": "OK",
            "Trigger": {"MetricName": "CPUUtilization", "Namespace": "AWS/EC2", "StatisticType": "Statistic",
                        "Statistic": "AVERAGE", "Dimensions": [{"value": "i-0abc", "name": "InstanceId"}],
                        "Period": 300, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold", "Threshold": 90.0}
        });
        serde_json::json!({"Records": [{"Sns": {"Message": message.to_string(), "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms"}}]})
    }

    #[tokio::test(start_paused = true)]
    async fn a_redelivered_state_change_is_published_once() {
        let (fake, publisher, ledger) = (Fake::new(vec![]), Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        let first = handle(&fake, &publisher, &ledger, &clock, &AlertSettings::default(), &event).await;
        assert_eq!(first.unwrap(), ["msg-1"]);
        // The same notification again (SNS redelivery, Lambda retry): nothing published.
        let again = handle(&fake, &publisher, &ledger, &clock, &AlertSettings::default(), &event).await;
        assert_eq!(again.unwrap(), Vec::<String>::new());
        assert_eq!(publisher.0.lock().unwrap().len(), 1);
        // The next state change of the same alarm is another alert.
        let next = handle(
            &fake,
            &publisher,
            &ledger,
            &clock,
            &AlertSettings::default(),
            &sns_event_at("20:31:40"),
        )
        .await;
        assert_eq!(next.unwrap(), ["msg-2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_publish_releases_the_claim_so_the_retry_publishes() {
        let (fake, publisher, ledger) = (Fake::new(vec![]), Published::default(), MemoryLedger::default());
        *publisher.1.lock().unwrap() = 1;
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        let e = handle(&fake, &publisher, &ledger, &clock, &AlertSettings::default(), &event)
            .await
            .unwrap_err();
        assert_eq!(e.name(), "Transient");
        assert_eq!(
            handle(&fake, &publisher, &ledger, &clock, &AlertSettings::default(), &event)
                .await
                .unwrap(),
            ["msg-1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_claim_of_another_delivery_is_a_conflict_until_its_lease_ends() {
        let (fake, publisher, ledger) = (Fake::new(vec![]), Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let settings = AlertSettings::default();
        let a = alarm(("InstanceId", "i-0abc"));
        let event = sns_event(&a);
        let Incoming::Alarm(parsed) = incoming(&event).remove(0) else {
            panic!()
        };
        // Another delivery claimed it and crashed before publishing.
        ledger
            .claim(&ledger::key(&parsed), ALARM_AT_S, settings.claim_lease_s, 0)
            .await
            .unwrap();
        let e = handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap_err();
        assert_eq!(e.name(), "Conflict");
        assert!(e.to_string().contains("retry later"), "{e}");
        // Once its lease has run out, a retry takes the claim over and publishes.
        clock.sleep((settings.claim_lease_s as u64 + 1) * 1000).await.unwrap();
        assert_eq!(
            handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap(),
            ["msg-1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_ledger_never_stops_an_alert() {
        let (fake, publisher) = (Fake::new(vec![]), Published::default());
        let ledger = MemoryLedger {
            broken: true,
            ..Default::default()
        };
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        assert_eq!(
            handle(&fake, &publisher, &ledger, &clock, &AlertSettings::default(), &event)
                .await
                .unwrap(),
            ["msg-1"]
        );
        let body = publisher.0.lock().unwrap()[0].message.clone();
        assert!(
            body.contains("deduplication unavailable (Transient: PutItem: ServiceUnavailable)"),
            "{body}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unusual_envelopes_are_published_as_unrecognized_never_an_error() {
        let (fake, publisher) = (Fake::new(vec![]), Published::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let event = serde_json::json!({"Records": [
            {"Sns": {"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms"}},
            {"eventSource": "aws:sqs", "body": "{\"Type\": \"Notification\", \"Message\": \"not an alarm\"}"}
        ]});
        let ids = handle(
            &fake,
            &publisher,
            &crate::alert::NoLedger,
            &clock,
            &AlertSettings::default(),
            &event,
        )
        .await;
        assert_eq!(ids.unwrap().len(), 2);
        let subjects: Vec<String> = publisher.0.lock().unwrap().iter().map(|p| p.subject.clone()).collect();
        assert!(subjects.iter().all(|s| s.starts_with("Unrecognized alert via")), "{subjects:?}");
        let eb = serde_json::json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch"});
        let ids = handle(&fake, &publisher, &crate::alert::NoLedger, &clock, &AlertSettings::default(), &eb).await;
        assert_eq!(ids.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_is_capped_and_other_namespaces_pass_through() {
        let many = (0..8).map(|i| instance(&format!("i-{i:04}"), 86_400, None)).collect();
        let e = enrich(
            &Fake::new(many),
            &AlertSettings::default(),
            alarm(("AutoScalingGroupName", "web-asg")),
        )
        .await;
        assert_eq!(e.instances.len(), 5);
        assert!(e
            .notes
            .contains(&"only the first 5 instances of Auto Scaling group web-asg are shown".to_string()));

        let fake = Fake::new(vec![instance("i-0abc", 60, None)]);
        let e = enrich(&fake, &AlertSettings::default(), alarm(("DBInstanceIdentifier", "orders-db"))).await;
        assert_eq!(e.target, None);
        assert!(e.instances.is_empty() && e.notes.is_empty());
        assert_eq!(e.datapoints.len(), 6, "the metric's datapoints are still shown");
        assert_eq!(fake.calls.lock().unwrap().len(), 2, "datapoints and the alarm's mute rules only");
    }

    #[test]
    fn the_shown_query_of_math_and_anomaly_alarms() {
        let q = |id: &str, expr: Option<&str>, ret: bool| MetricQuery {
            id: id.into(),
            account_id: None,
            expression: expr.map(String::from),
            metric_stat: None,
            label: None,
            return_data: ret,
            period_s: Some(60),
        };
        let mut a = alarm(("InstanceId", "i-0abc"));
        a.kind = AlarmKind::MetricMath {
            queries: vec![q("m1", None, false), q("m2", None, false), q("e1", Some("m1+m2"), true)],
            comparison: None,
            threshold: Some(1.0),
            evaluation_periods: None,
        };
        let shown = datapoint_queries(&a).unwrap();
        assert_eq!(
            shown.iter().map(|q| (q.id.as_str(), q.return_data)).collect::<Vec<_>>(),
            [("m1", false), ("m2", false), ("e1", true)]
        );

        a.kind = AlarmKind::AnomalyDetection {
            queries: vec![q("m1", None, true), q("ad1", Some("ANOMALY_DETECTION_BAND(m1, 2)"), true)],
            threshold_metric_id: "ad1".into(),
            comparison: None,
            evaluation_periods: None,
        };
        let shown = datapoint_queries(&a).unwrap();
        assert_eq!(
            shown.iter().map(|q| (q.id.as_str(), q.return_data)).collect::<Vec<_>>(),
            [("m1", true)]
        );

        a.kind = AlarmKind::Composite {
            rule: "ALARM(a) OR ALARM(b)".into(),
            triggering_alarms: vec![],
        };
        assert_eq!(datapoint_queries(&a), None);
    }

    // --- Alerts that diagnose.

    fn opted_in(id: &str) -> InstanceDetails {
        let mut i = instance(id, 86_400, None);
        i.tags.insert(diagnose::TAG.0.into(), diagnose::TAG.1.into());
        i
    }

    fn ended(status: &str, code: i32, stdout: &str) -> Invocation {
        Invocation {
            status: status.into(),
            status_details: status.into(),
            response_code: code,
            stdout: stdout.into(),
            ..Invocation::default()
        }
    }

    /// Handles the alarm on i-0abc with `fake`: what was published, as (subject, text, JSON body).
    async fn diagnosed(fake: &Fake, ledger: &MemoryLedger) -> (Result<Vec<String>, CoreError>, Vec<(String, String, Value)>) {
        let publisher = Published::default();
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        let result = handle(fake, &publisher, ledger, &clock, &AlertSettings::default(), &event).await;
        let published = publisher
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|p| {
                let m: Value = serde_json::from_str(&p.message).unwrap();
                let body = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
                (p.subject.clone(), m["email"].as_str().unwrap().to_string(), body)
            })
            .collect();
        (result, published)
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_diagnostics_command_is_in_the_alert() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((3, ended("Success", 0, "== load\n 10:00:00 up 3 days, load average: 7.9\n")));
        let (result, published) = diagnosed(&fake, &MemoryLedger::default()).await;
        assert_eq!(result.unwrap(), ["msg-1"], "one message: no follow-up");
        let (_, text, body) = &published[0];
        assert_eq!(body["diagnostics"]["status"], "succeeded");
        assert_eq!(body["diagnostics"]["exitCode"], 0);
        assert_eq!(body["diagnostics"]["tookMs"], 3000, "read every second, the third read ended");
        assert!(
            text.contains("Diagnostics (opsflow-Diagnose on i-0abc, 3.0 s): succeeded"),
            "{text}"
        );
        assert!(
            text.contains("  Output (its end):\n    == load\n     10:00:00 up 3 days, load average: 7.9\n"),
            "{text}"
        );
        let sent = fake.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].0.clone(), sent[0].1.as_str(), sent[0].2.as_str()),
            (place("123456789012", "eu-west-1"), "i-0abc", "opsflow-Diagnose")
        );
        assert_eq!(sent[0].3, "opsflow alert: cpu-high web/7");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_diagnostics_command_is_said_and_the_alert_goes_out() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((
            2,
            Invocation {
                stderr: "df: /mnt/nfs: Stale file handle".into(),
                ..ended("Failed", 1, "== disk")
            },
        ));
        let (result, published) = diagnosed(&fake, &MemoryLedger::default()).await;
        assert_eq!(result.unwrap(), ["msg-1"]);
        let (_, text, body) = &published[0];
        assert_eq!(body["diagnostics"]["status"], "failed");
        assert_eq!(body["diagnostics"]["reason"], "the command exited with code 1");
        assert!(text.contains("): failed\n  the command exited with code 1"), "{text}");
        assert!(text.contains("Stale file handle"), "{text}");

        // SendCommand refused: a line in the alert, nothing else changes.
        let fake = Fake::new(vec![opted_in("i-0abc")]);
        let (result, published) = diagnosed(&fake, &MemoryLedger::default()).await;
        assert_eq!(result.unwrap(), ["msg-1"]);
        assert_eq!(published[0].2["diagnostics"]["status"], "not-started");
        assert!(
            published[0]
                .1
                .contains("SendCommand failed (AccessDenied: ssm:SendCommand: not authorized)"),
            "{}",
            published[0].1
        );
        assert_eq!(published[0].2["severity"], "high");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_command_sends_the_alert_first_and_its_output_in_a_follow_up() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((20, ended("Success", 0, "== top-cpu\n  4242 app 97.0")));
        let ledger = MemoryLedger::default();
        let (result, published) = diagnosed(&fake, &ledger).await;
        assert_eq!(result.unwrap(), ["msg-1", "msg-2"]);
        let (_, text, body) = &published[0];
        assert_eq!(body["diagnostics"]["status"], "running");
        assert_eq!(body["diagnostics"]["tookMs"], 8000, "the alert waited 8 s, not more");
        assert!(
            text.contains("still running\n  A follow-up message will carry the output."),
            "{text}"
        );
        let (subject, text, body) = &published[1];
        assert_eq!(subject, "Diagnostics: cpu-high web/7 on i-0abc");
        assert_eq!(body["schema"], "opsflow.alert-diagnostics/1");
        assert_eq!(
            (body["diagnostics"]["status"].as_str(), body["diagnostics"]["tookMs"].as_i64()),
            (Some("succeeded"), Some(20_000))
        );
        assert!(text.contains("Follow-up: the alert went out before they ended."), "{text}");
        assert!(text.contains("4242 app 97.0"), "{text}");
        // A redelivery publishes neither again.
        let rows = ledger.rows.lock().unwrap().clone();
        assert_eq!(rows.len(), 3, "the alert, its follow-up and the instance's cooldown: {rows:?}");
        let (again, published) = diagnosed(&fake, &ledger).await;
        assert_eq!((again.unwrap(), published.len()), (vec![], 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_never_ends_is_said_at_the_limit() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((usize::MAX, Invocation::default()));
        let (result, published) = diagnosed(&fake, &MemoryLedger::default()).await;
        assert_eq!(result.unwrap().len(), 2);
        let d = &published[1].2["diagnostics"];
        assert_eq!((d["status"].as_str(), d["tookMs"].as_i64()), (Some("unfinished"), Some(30_000)));
        assert!(
            d["reason"].as_str().unwrap().starts_with("still InProgress 30 s after it was sent"),
            "{d}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_follow_up_is_published_by_the_next_delivery_and_the_alert_is_not_repeated() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((12, ended("Success", 0, "== memory\nMem: 3800 3700")));
        let ledger = MemoryLedger::default();
        let (publisher, clock) = (Published::default(), crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000));
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        let settings = AlertSettings::default();
        // The alert goes out; the follow-up's publish fails: the invocation fails.
        let publish_fails_second = async {
            *publisher.1.lock().unwrap() = 0;
            handle(&fake, &FailSecond(&publisher), &ledger, &clock, &settings, &event).await
        };
        assert_eq!(publish_fails_second.await.unwrap_err().name(), "Transient");
        assert_eq!(publisher.0.lock().unwrap().len(), 1, "the alert itself went out");
        // Lambda retries a minute later: the follow-up's claim lapsed (limit + margin); the
        // retry reads the same command (no second one) and publishes only the follow-up.
        clock.sleep(60_000).await.unwrap();
        let ids = handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap();
        assert_eq!(ids, ["msg-2"]);
        let last = publisher.0.lock().unwrap()[1].clone();
        assert!(last.subject.starts_with("Diagnostics:"), "{}", last.subject);
        assert!(last.message.contains("read by a later delivery"), "{}", last.message);
        assert!(last.message.contains("Mem: 3800 3700"), "{}", last.message);
        assert_eq!(fake.sent.lock().unwrap().len(), 1, "no second command");
        // And never again.
        assert_eq!(
            handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap(),
            Vec::<String>::new()
        );
    }

    /// Publishes the first message through the inner publisher and fails the others.
    struct FailSecond<'a>(&'a Published);

    impl AlertPublisher for FailSecond<'_> {
        async fn publish(&self, p: &Publication) -> Result<String, CoreError> {
            if !self.0 .0.lock().unwrap().is_empty() {
                return Err(CoreError::transient("Publish", "InternalError"));
            }
            self.0.publish(p).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn diagnostics_run_only_on_an_opted_in_online_instance_in_alarm() {
        // Not opted in: nothing is sent, nothing is said.
        let mut fake = Fake::new(vec![instance("i-0abc", 86_400, None)]);
        fake.command = Some((2, ended("Success", 0, "")));
        let (_, published) = diagnosed(&fake, &MemoryLedger::default()).await;
        assert!(fake.sent.lock().unwrap().is_empty());
        assert!(published[0].2.get("diagnostics").is_none());
        // Opted in, agent not Online: said, not sent.
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((2, ended("Success", 0, "")));
        fake.ping = "ConnectionLost".into();
        let (_, published) = diagnosed(&fake, &MemoryLedger::default()).await;
        assert!(fake.sent.lock().unwrap().is_empty());
        assert!(
            published[0]
                .1
                .contains("diagnostics not run on i-0abc: its SSM agent is ConnectionLost"),
            "{}",
            published[0].1
        );
        // Windows gets its document; OK and diagnostics off send nothing.
        let mut windows = opted_in("i-0abc");
        windows.platform = Some("windows".into());
        let mut fake = Fake::new(vec![windows]);
        fake.command = Some((2, ended("Success", 0, "")));
        assert_eq!(diagnosed(&fake, &MemoryLedger::default()).await.0.unwrap().len(), 1);
        assert_eq!(fake.sent.lock().unwrap()[0].2, "opsflow-DiagnoseWindows");
        let mut ok = alarm(("InstanceId", "i-0abc"));
        ok.state = "OK".into();
        let e = enrich(&fake, &AlertSettings::default(), ok).await;
        assert_eq!(diagnose::candidate(&e, &AlertSettings::default()), None);
        let e = enrich(&fake, &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
        assert!(diagnose::candidate(&e, &AlertSettings::default()).is_some());
        let off = AlertSettings {
            diagnose_limit_s: 0,
            ..AlertSettings::default()
        };
        assert_eq!(diagnose::candidate(&e, &off), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_is_diagnosed_once_per_cooldown_and_never_when_muted_or_out_of_time() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((2, ended("Success", 0, "== load")));
        let (publisher, ledger) = (Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let settings = AlertSettings::default();
        handle(&fake, &publisher, &ledger, &clock, &settings, &sns_event_at("20:26:40"))
            .await
            .unwrap();
        // The alarm flaps (or someone sets its state): a minute later, no second command.
        clock.sleep(60_000).await.unwrap();
        handle(&fake, &publisher, &ledger, &clock, &settings, &sns_event_at("20:27:40"))
            .await
            .unwrap();
        assert_eq!(fake.sent.lock().unwrap().len(), 1);
        let second = publisher.0.lock().unwrap()[1].message.clone();
        assert!(
            second.contains("diagnostics not run on i-0abc: it was diagnosed less than 5 minutes ago"),
            "{second}"
        );
        // After the cooldown, diagnosed again.
        clock.sleep(300_000).await.unwrap();
        handle(&fake, &publisher, &ledger, &clock, &settings, &sns_event_at("20:33:40"))
            .await
            .unwrap();
        assert_eq!(fake.sent.lock().unwrap().len(), 2);

        // Muted for maintenance: said, not run.
        let mut muted = Fake::new(vec![opted_in("i-0abc")]);
        muted.command = Some((2, ended("Success", 0, "")));
        muted.mutes = vec![ActiveMute {
            rule: "opsflow-i-0abc-nightly".into(),
            description: None,
        }];
        let (_, published) = diagnosed(&muted, &MemoryLedger::default()).await;
        assert!(muted.sent.lock().unwrap().is_empty());
        assert!(published[0]
            .1
            .contains("diagnostics not run on i-0abc: the alarm is muted for maintenance"));

        // Too little of the invocation left: said, not run.
        let mut late = Fake::new(vec![opted_in("i-0abc")]);
        late.command = Some((2, ended("Success", 0, "")));
        let (publisher, clock) = (Published::default(), crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000));
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        let deadline = ALARM_AT_S * 1000 + 3_000;
        handle_until(&late, &publisher, &crate::alert::NoLedger, &clock, &settings, &event, deadline)
            .await
            .unwrap();
        assert!(late.sent.lock().unwrap().is_empty());
        assert!(publisher.0.lock().unwrap()[0]
            .message
            .contains("diagnostics not run on i-0abc: the invocation has 3 s left"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_publishes_every_alert_before_any_follow_up_and_a_live_follow_up_claim_is_a_conflict() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((20, ended("Success", 0, "== load")));
        let (publisher, ledger) = (Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let settings = AlertSettings::default();
        let one = sns_event(&alarm(("InstanceId", "i-0abc")));
        let mut other = alarm(("InstanceId", "i-0abc"));
        other.name = "disk-full web/7".into();
        let two = sns_event(&other);
        let batch = serde_json::json!({"Records": [one["Records"][0], two["Records"][0]]});
        let ids = handle(&fake, &publisher, &ledger, &clock, &settings, &batch).await.unwrap();
        let subjects: Vec<String> = publisher.0.lock().unwrap().iter().map(|p| p.subject.clone()).collect();
        // The second alarm found the instance in its cooldown: one follow-up, after both alerts.
        assert_eq!(ids.len(), 3, "{subjects:?}");
        assert!(
            subjects[0].starts_with("ALARM: cpu-high") && subjects[1].starts_with("ALARM: disk-full"),
            "{subjects:?}"
        );
        assert!(subjects[2].starts_with("Diagnostics: cpu-high"), "{subjects:?}");

        // A redelivery while another delivery still owes the follow-up: retried later.
        let ledger = MemoryLedger::default();
        let a = alarm(("InstanceId", "i-0abc"));
        let Incoming::Alarm(parsed) = incoming(&one).remove(0) else {
            panic!()
        };
        let key = ledger::key(&parsed);
        ledger.published(&key, "msg-9", 0).await.unwrap();
        ledger
            .claim_owed(&diagnose::follow_up_key(&key), ALARM_AT_S, 60, 0, "{}")
            .await
            .unwrap();
        let e = handle(&fake, &publisher, &ledger, &clock, &settings, &sns_event(&a))
            .await
            .unwrap_err();
        assert_eq!(e.name(), "Conflict");
    }

    #[test]
    fn windows_in_any_of_ec2s_spellings_gets_the_windows_document() {
        for platform in ["windows", "Windows", "Windows with SQL Server Standard", "Windows BYOL"] {
            let mut i = opted_in("i-0abc");
            i.platform = Some(platform.into());
            let e = Enriched {
                target: Some(Target::Instance("i-0abc".into())),
                target_place: Some(place("123456789012", "eu-west-1")),
                instances: vec![InstanceView {
                    details: i,
                    uptime_s: None,
                    recently_started: false,
                    role_name: None,
                    admin: None,
                    agent: Some(AgentInfo {
                        instance_id: "i-0abc".into(),
                        ping_status: "Online".into(),
                        last_ping_epoch_s: None,
                        agent_version: None,
                    }),
                    links: vec![],
                }],
                ..bare_enriched()
            };
            let (_, _, document) = diagnose::candidate(&e, &AlertSettings::default()).unwrap().unwrap();
            assert_eq!(document, "opsflow-DiagnoseWindows", "{platform}");
        }
    }

    fn bare_enriched() -> Enriched {
        Enriched {
            alarm: alarm(("InstanceId", "i-0abc")),
            severity: Severity::High,
            target: None,
            target_place: None,
            instances: vec![],
            datapoints: vec![],
            sparkline: None,
            assessment: None,
            notes: vec![],
            links: vec![],
            maintenance: vec![],
            diagnostics: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_a_failed_alert_reads_the_command_already_sent_never_a_second() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        // Ends at the 10th read: after the first delivery's 8 s wait.
        fake.command = Some((10, ended("Success", 0, "== load\nload average: 7.9")));
        let (publisher, ledger) = (Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let settings = AlertSettings::default();
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        // The alert's publish fails (all of the SDK's attempts): the invocation fails.
        *publisher.1.lock().unwrap() = 1;
        let e = handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap_err();
        assert_eq!(e.name(), "Transient");
        // Lambda retries a minute later: the same command is read, and by now it has ended.
        clock.sleep(60_000).await.unwrap();
        let ids = handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap();
        assert_eq!(ids, ["msg-1"], "the alert, with the output: no follow-up owed");
        assert_eq!(fake.sent.lock().unwrap().len(), 1, "no second command");
        assert!(publisher.0.lock().unwrap()[0].message.contains("load average: 7.9"));
        // Nothing owed any more: a redelivery publishes nothing.
        assert_eq!(
            handle(&fake, &publisher, &ledger, &clock, &settings, &event).await.unwrap(),
            Vec::<String>::new()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_that_stopped_before_recording_its_alert_leaves_the_command_to_the_retry() {
        let mut fake = Fake::new(vec![opted_in("i-0abc")]);
        fake.command = Some((1, ended("Success", 0, "== memory\nMem: 3800 3700")));
        let (publisher, ledger) = (Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at((ALARM_AT_S + 200) * 1000);
        let event = sns_event(&alarm(("InstanceId", "i-0abc")));
        let Incoming::Alarm(parsed) = incoming(&event).remove(0) else {
            panic!()
        };
        // It claimed the change, sent cmd-1, published the alert, owed the follow-up — and
        // stopped before recording the alert; both leases have run out.
        let key = ledger::key(&parsed);
        let owed = Diagnostics {
            instance_id: "i-0abc".into(),
            document: diagnose::LINUX_DOCUMENT.into(),
            command_id: Some("cmd-1".into()),
            status: DiagnosticsStatus::Running,
            ssm_status: Some("InProgress".into()),
            exit_code: None,
            output: String::new(),
            reason: None,
            sent_at_ms: ALARM_AT_S * 1000,
            took_ms: 8000,
            link: None,
        };
        ledger.claim(&key, ALARM_AT_S, 90, 0).await.unwrap();
        let follow = diagnose::follow_up_key(&key);
        ledger
            .claim_owed(&follow, ALARM_AT_S + 8, 60, 0, &serde_json::to_string(&owed).unwrap())
            .await
            .unwrap();
        let ids = handle(&fake, &publisher, &ledger, &clock, &AlertSettings::default(), &event)
            .await
            .unwrap();
        // The alert again (it was not recorded), with the command's output: what was owed.
        assert_eq!(ids.len(), 1);
        assert!(fake.sent.lock().unwrap().is_empty(), "the command already sent is read");
        assert!(publisher.0.lock().unwrap()[0].message.contains("Mem: 3800 3700"));
        let rows = ledger.rows.lock().unwrap().clone();
        assert!(rows[&follow].0.is_some() && rows[&key].0.is_some(), "{rows:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_could_not_be_sent_leaves_no_cooldown() {
        let fake = Fake::new(vec![opted_in("i-0abc")]);
        let (publisher, ledger) = (Published::default(), MemoryLedger::default());
        let clock = crate::ports::SteppedClock::starting_at(ALARM_AT_S * 1000);
        let settings = AlertSettings::default();
        handle(&fake, &publisher, &ledger, &clock, &settings, &sns_event_at("20:26:40"))
            .await
            .unwrap();
        clock.sleep(60_000).await.unwrap();
        handle(&fake, &publisher, &ledger, &clock, &settings, &sns_event_at("20:27:40"))
            .await
            .unwrap();
        assert_eq!(
            fake.sent.lock().unwrap().len(),
            2,
            "SendCommand refused: the next alarm tries again"
        );
    }
}
