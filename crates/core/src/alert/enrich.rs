//! Enrichment: every lookup at once, each failure a note, then one publication per alarm.

use std::future::Future;

use serde_json::Value;

use crate::alert::event::{incoming, target, Incoming};
use crate::alert::model::{
    AgentInfo, Alarm, AlarmKind, Datapoint, Enriched, InstanceDetails, InstanceView, Link, MetricQuery, ProfileRole, Publication, Severity,
    Target,
};
use crate::alert::policy::admin_grant;
use crate::alert::render;
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
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            recent_threshold_s: 15 * 60,
            group_cap: 5,
            datapoints: 6,
        }
    }
}

/// The lookups, one AWS call each (the IAM one may be cached by the adapter).
pub trait AlertLookups: Sync {
    /// DescribeInstances: the instance, or at most `cap` instances of the group.
    fn instances(&self, target: &Target, cap: usize) -> impl Future<Output = Result<Vec<InstanceDetails>, CoreError>> + Send;
    /// DescribeInstanceInformation: the SSM agents of the instance or the group.
    fn agents(&self, target: &Target) -> impl Future<Output = Result<Vec<AgentInfo>, CoreError>> + Send;
    /// The instance profiles of the account with their roles and policies.
    fn profile_roles(&self) -> impl Future<Output = Result<Vec<ProfileRole>, CoreError>> + Send;
    /// GetMetricData: the values of the one query with `return_data`, between the two times.
    fn datapoints(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = Result<Vec<Datapoint>, CoreError>> + Send;
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

/// Enriches one alarm. Never fails: what a lookup could not tell becomes a note.
pub async fn enrich(lookups: &impl AlertLookups, settings: &AlertSettings, alarm: Alarm) -> Enriched {
    let target = target(&alarm);
    let queries = datapoint_queries(&alarm);
    let window = queries.as_ref().map(|q| {
        let period_ms = period_of(q) * 1000;
        // Up to the period holding the state change, far enough back for `datapoints` values.
        let end = alarm.changed_at_ms + period_ms;
        (end - (settings.datapoints as i64 + 1) * period_ms, end)
    });
    // All lookups at once: the alert takes as long as the slowest one, not their sum. The IAM
    // listing does not depend on the instance (its profile is matched afterwards), so it runs
    // alongside instead of after DescribeInstances.
    let (instances, agents, roles, points) = futures::join!(
        when(target.as_ref().map(|t| lookups.instances(t, settings.group_cap))),
        when(target.as_ref().map(|t| lookups.agents(t))),
        when(target.as_ref().map(|_| lookups.profile_roles())),
        when(
            queries
                .as_ref()
                .zip(window)
                .map(|(q, (start, end))| lookups.datapoints(q, start, end))
        ),
    );

    let mut notes = Vec::new();
    let instances_known = !matches!(instances, Some(Err(_)));
    let instances = found(instances, "EC2 DescribeInstances", "instance details are", &mut notes).unwrap_or_default();
    let agents = found(agents, "SSM DescribeInstanceInformation", "the SSM agent status is", &mut notes);
    let roles = found(
        roles,
        "IAM GetAccountAuthorizationDetails",
        "the instance role and whether it is admin are",
        &mut notes,
    );
    let mut datapoints = found(points, "CloudWatch GetMetricData", "recent datapoints are", &mut notes).unwrap_or_default();
    datapoints.sort_by_key(|d| d.epoch_s);
    let keep_from = datapoints.len().saturating_sub(settings.datapoints);
    let datapoints = datapoints.split_off(keep_from);
    let sparkline = (!datapoints.is_empty()).then(|| render::sparkline(&datapoints.iter().map(|d| d.value).collect::<Vec<_>>()));

    let region = alarm.region.clone();
    let views: Vec<InstanceView> = instances
        .into_iter()
        .map(|details| view(details, &alarm, settings, agents.as_deref(), roles.as_deref(), &mut notes))
        .collect();
    match &target {
        Some(Target::Instance(id)) if views.is_empty() && instances_known => notes.push(format!(
            "instance {id} was not found: it does not exist in {region} of this account, or was terminated over an hour ago"
        )),
        Some(Target::AutoScalingGroup(name)) if views.is_empty() && instances_known => {
            notes.push(format!("Auto Scaling group {name} has no instances"))
        }
        Some(Target::AutoScalingGroup(name)) if views.len() >= settings.group_cap => notes.push(format!(
            "only the first {} instances of Auto Scaling group {name} are shown",
            settings.group_cap
        )),
        _ => {}
    }

    let severity = match alarm.state.as_str() {
        "OK" => Severity::Info,
        "INSUFFICIENT_DATA" => Severity::Low,
        _ if !views.is_empty() && views.iter().all(|v| v.recently_started) => Severity::Medium,
        _ => Severity::High,
    };
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
        instances: views,
        datapoints,
        sparkline,
        assessment,
        notes,
        links,
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
    if region.starts_with("cn-") {
        "https://console.amazonaws.cn".to_string()
    } else if region.starts_with("us-gov-") {
        "https://console.amazonaws-us-gov.com".to_string()
    } else {
        format!("https://{region}.console.aws.amazon.com")
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

/// The Lambda: every message of `event` enriched (or passed on as unrecognized) and published.
/// Fails only when the event is not an SNS or EventBridge event, or when publishing fails — then
/// SNS retries the delivery and, in the end, the dead-letter queue keeps it: an alert is never lost.
pub async fn handle(
    lookups: &impl AlertLookups,
    publisher: &impl AlertPublisher,
    settings: &AlertSettings,
    event: &Value,
) -> Result<Vec<String>, CoreError> {
    let mut ids = Vec::new();
    for message in incoming(event)? {
        let publication = match message {
            Incoming::Alarm(alarm) => render::publication(&enrich(lookups, settings, *alarm).await),
            Incoming::Unrecognized { source, subject, raw, why } => {
                render::unrecognized_publication(&source, subject.as_deref(), &raw, &why)
            }
        };
        ids.push(publisher.publish(&publication).await?);
    }
    Ok(ids)
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
    use crate::alert::model::{Dimension, Metric, MetricStat};
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

    /// Lookups that answer after a delay (virtual time) or fail, and log what was asked.
    struct Fake {
        delays_ms: [u64; 4],
        fail: Option<usize>,
        instances: Vec<InstanceDetails>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(instances: Vec<InstanceDetails>) -> Fake {
            Fake {
                delays_ms: [0; 4],
                fail: None,
                instances,
                calls: Mutex::new(Vec::new()),
            }
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
        async fn instances(&self, target: &Target, cap: usize) -> Result<Vec<InstanceDetails>, CoreError> {
            let list = self.instances.iter().take(cap).cloned().collect();
            self.answer(0, format!("instances {target:?} {cap}"), list).await
        }
        async fn agents(&self, _target: &Target) -> Result<Vec<AgentInfo>, CoreError> {
            let agents = self
                .instances
                .iter()
                .map(|i| AgentInfo {
                    instance_id: i.instance_id.clone(),
                    ping_status: "Online".into(),
                    last_ping_epoch_s: Some(ALARM_AT_S - 60),
                    agent_version: Some("3.3.987.0".into()),
                })
                .collect();
            self.answer(1, "agents".into(), agents).await
        }
        async fn profile_roles(&self) -> Result<Vec<ProfileRole>, CoreError> {
            let roles = vec![ProfileRole {
                profile_arn: "arn:aws:iam::123456789012:instance-profile/web".into(),
                role_name: "web-role".into(),
                role_arn: "arn:aws:iam::123456789012:role/web-role".into(),
                attached_policy_arns: vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()],
                policy_documents: vec![],
            }];
            self.answer(2, "roles".into(), roles).await
        }
        async fn datapoints(&self, queries: &[MetricQuery], start_ms: i64, end_ms: i64) -> Result<Vec<Datapoint>, CoreError> {
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
        // Six 5-minute periods back from the period holding the change, one call per lookup.
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 4, "{calls:?}");
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
            ["instance i-0gone was not found: it does not exist in eu-west-1 of this account, or was terminated over an hour ago"]
        );
        assert_eq!(e.severity, Severity::High);

        let mut gone = instance("i-0abc", 60, None);
        gone.state = "terminated".into();
        let e = enrich(&Fake::new(vec![gone]), &AlertSettings::default(), alarm(("InstanceId", "i-0abc"))).await;
        assert_eq!(e.assessment.as_deref(), Some("the instance is terminated — the alarm may be stale"));
        assert!(!e.instances[0].recently_started);
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
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_shown_query_of_math_and_anomaly_alarms() {
        let q = |id: &str, expr: Option<&str>, ret: bool| MetricQuery {
            id: id.into(),
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
}
