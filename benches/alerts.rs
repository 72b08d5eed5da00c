//! Alert enrichment benchmark: per-alert latency of the enrich-alert handler next to the latency
//! of its slowest single lookup, and the AWS calls per alert, against the local cloud with
//! modelled AWS latencies (the local cloud's `latency_ms`), plus a run without added latency.
//!
//! Then alerts that diagnose: when the alert and its follow-up go out for commands of three
//! lengths.
//!
//! `cargo bench --bench alerts` (or `make bench`). Target: ≤ 1.3× the slowest lookup, ≤ 5 calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opsflow::fixtures;
use opsflow::local::alerts::{cpu_alarm, LocalAlerts};
use opsflow::local::LocalCloud;
use opsflow_aws::{Clients, SystemClock};
use opsflow_core::alert::{
    datapoint_queries, handle, incoming, AlertLookups, AlertPublisher, AlertSettings, Incoming, NoLedger, Place, Publication, Target,
};
use serde_json::{json, Value};

const ALERTS: usize = 30;

/// Typical in-region latencies of the calls (milliseconds), stated as the model.
const MODEL: [(&str, f64); 5] = [
    ("ec2:DescribeInstances", 150.0),
    ("ssm:DescribeInstanceInformation", 80.0),
    ("iam:GetAccountAuthorizationDetails", 300.0),
    ("cloudwatch:GetMetricData", 120.0),
    ("sns:Publish", 25.0),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn time<T, E: std::fmt::Debug>(f: impl std::future::Future<Output = Result<T, E>>) -> Duration {
    let started = Instant::now();
    f.await.expect("lookup");
    started.elapsed()
}

struct Row {
    case: String,
    lookups: Vec<(&'static str, Duration)>,
    alert: Duration,
    calls: u64,
}

/// Each lookup alone (median of `ALERTS`), then whole alerts (median), `cold`: with the IAM
/// listing fetched every time (a fresh adapter), else cached as in a warm Lambda.
async fn measure(cloud: &LocalCloud, alerts: &LocalAlerts, event: &Value, case: &str, cold: bool) -> Row {
    let Incoming::Alarm(alarm) = incoming(event).remove(0) else {
        panic!("not an alarm")
    };
    let target = Target::Instance(match &alarm.kind {
        opsflow_core::alert::AlarmKind::Metric { stat, .. } => stat.metric.dimensions[0].value.clone(),
        _ => unreachable!(),
    });
    let queries = datapoint_queries(&alarm).unwrap();
    let at = Place {
        account_id: alarm.account_id.clone(),
        region: alarm.region.clone(),
    };
    let (start, end) = (alarm.changed_at_ms - 2_100_000, alarm.changed_at_ms + 300_000);
    let settings = AlertSettings::default();
    // The function knows its account (ACCOUNT_ID): no GetCallerIdentity per cold start.
    let home = alerts
        .clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .account()
        .map(String::from);
    let adapter = || opsflow_aws::AlertAdapter::new(&alerts.clients.sdk_config, home.clone(), None);
    let warm = adapter();
    let mut per: HashMap<&'static str, Vec<Duration>> = HashMap::new();
    for _ in 0..ALERTS {
        let l = if cold { adapter() } else { warm.clone() };
        per.entry("DescribeInstances")
            .or_default()
            .push(time(l.instances(&at, &target, 5)).await);
        per.entry("DescribeInstanceInformation")
            .or_default()
            .push(time(l.agents(&at, &target)).await);
        per.entry("GetAccountAuthorizationDetails")
            .or_default()
            .push(time(l.profile_roles(&at)).await);
        per.entry("GetMetricData")
            .or_default()
            .push(time(l.datapoints(&at, &queries, start, end)).await);
    }
    let mut totals = Vec::new();
    let mut calls = 0;
    for i in 0..ALERTS {
        let l = if cold { adapter() } else { warm.clone() };
        cloud.reset_calls().await.unwrap();
        let started = Instant::now();
        handle(&l, &alerts.publisher, &NoLedger, &SystemClock, &settings, event)
            .await
            .expect("alert");
        totals.push(started.elapsed());
        if i == 0 || !cold {
            calls = calls.max(cloud.calls().await.unwrap().values().sum::<u64>());
        }
    }
    let mut lookups: Vec<(&'static str, Duration)> = per.into_iter().map(|(k, v)| (k, median(v))).collect();
    lookups.sort_by_key(|l| std::cmp::Reverse(l.1));
    Row {
        case: case.to_string(),
        lookups,
        alert: median(totals),
        calls,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cloud = LocalCloud::start().expect("local cloud");
        let clients = Clients::for_endpoint(&cloud.endpoint).await.unwrap();
        let instance_id = fixtures::managed_instance(&clients, "web-7", "web-role", true).await.unwrap();
        let alerts = LocalAlerts::setup(&clients, AlertSettings::default()).await.unwrap();
        let at = cloud.now_ms().await.unwrap();
        let name = format!("cpu-high-{instance_id}");
        cpu_alarm(
            &clients,
            &name,
            &instance_id,
            &alerts.alarms_topic,
            &[12.0, 15.0, 97.0, 98.0, 99.0, 99.0],
            at,
        )
        .await
        .unwrap();
        let message = alerts.raise(&name, "Threshold Crossed", at).await.unwrap();
        let event = json!({"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": format!("{}:bench", alerts.alarms_topic),
            "Sns": {
                "Type": "Notification", "MessageId": "bench", "TopicArn": alerts.alarms_topic,
                "Subject": format!("ALARM: \"{name}\" in US East (N. Virginia)"), "Message": message.to_string(),
                "Timestamp": "2026-11-23T03:01:12.401Z", "SignatureVersion": "1", "Signature": "bench",
                "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/bench.pem",
                "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {}
            }
        }]});

        let mut rows = vec![
            measure(&cloud, &alerts, &event, "no added latency, IAM cached", false).await,
            measure(&cloud, &alerts, &event, "no added latency, IAM fetched", true).await,
        ];
        let model: serde_json::Map<String, Value> = MODEL.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        cloud.control("config", json!({"latency_ms": model})).await.unwrap();
        rows.push(measure(&cloud, &alerts, &event, "modelled AWS latency, IAM cached", false).await);
        rows.push(measure(&cloud, &alerts, &event, "modelled AWS latency, IAM fetched", true).await);

        println!("alert enrichment: {ALERTS} alerts per case, medians; one EC2 instance alarm (SNS event)");
        println!(
            "modelled latency (ms): {}",
            MODEL.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        );
        println!();
        println!(
            "{:<36} {:>11} {:>12} {:>34} {:>7} {:>9}",
            "case", "alert (ms)", "slowest (ms)", "slowest lookup", "ratio", "AWS calls"
        );
        for r in &rows {
            let (name, slowest) = r.lookups[0];
            println!(
                "{:<36} {:>11.1} {:>12.1} {:>34} {:>6.2}x {:>9}",
                r.case,
                ms(r.alert),
                ms(slowest),
                name,
                ms(r.alert) / ms(slowest),
                r.calls
            );
        }
        println!();
        for r in &rows {
            println!(
                "  {}: lookups alone {}",
                r.case,
                r.lookups
                    .iter()
                    .map(|(k, d)| format!("{k} {:.1} ms", ms(*d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        diagnostics(&cloud, &alerts, &event, &instance_id).await;
        drop(cloud);
    });
}

/// A publisher that notes when each message went out.
struct Timed<'a> {
    inner: &'a opsflow_aws::SnsPublisher,
    started: Instant,
    at: std::sync::Mutex<Vec<Duration>>,
}

impl AlertPublisher for Timed<'_> {
    async fn publish(&self, p: &Publication) -> Result<String, opsflow_core::CoreError> {
        let id = self.inner.publish(p).await?;
        self.at.lock().unwrap().push(self.started.elapsed());
        Ok(id)
    }
}

/// Alerts that diagnose, with the modelled latencies: when the alert and its follow-up go out
/// for a diagnostics command that takes 0.5, 3 and 12 s (the alert waits 8 s at most, the
/// follow-up 30 s), and the SSM calls it costs. Once each: the times are the command's and the
/// 1 s polling, not noise.
async fn diagnostics(cloud: &LocalCloud, alerts: &LocalAlerts, event: &Value, instance_id: &str) {
    use opsflow_core::alert::diagnose::{LINUX_DOCUMENT, TAG};
    alerts
        .clients
        .ec2
        .create_tags()
        .resources(instance_id)
        .tags(opsflow_aws::aws_sdk_ec2::types::Tag::builder().key(TAG.0).value(TAG.1).build())
        .send()
        .await
        .unwrap();
    let settings = AlertSettings::default();
    println!();
    println!(
        "alerts that diagnose (modelled latency; the alert waits {} s for the command, the follow-up {} s after SendCommand):",
        settings.diagnose_wait_s, settings.diagnose_limit_s
    );
    println!(
        "{:>12} {:>14} {:>16} {:>12} {:>22}",
        "command (s)", "alert at (s)", "follow-up at (s)", "SendCommand", "GetCommandInvocation"
    );
    for duration in [0.5, 3.0, 12.0] {
        cloud
            .control(
                "commands",
                json!({"rules": [{"document": LINUX_DOCUMENT, "count": 1, "duration_seconds": duration, "stdout": "== load"}]}),
            )
            .await
            .unwrap();
        cloud.reset_calls().await.unwrap();
        let timed = Timed {
            inner: &alerts.publisher,
            started: Instant::now(),
            at: std::sync::Mutex::new(Vec::new()),
        };
        handle(&alerts.lookups, &timed, &NoLedger, &SystemClock, &settings, event)
            .await
            .expect("alert");
        let at = timed.at.lock().unwrap().clone();
        let calls = cloud.calls().await.unwrap();
        let count = |op: &str| calls.get(op).copied().unwrap_or(0);
        println!(
            "{:>12.1} {:>14.1} {:>16} {:>12} {:>22}",
            duration,
            at[0].as_secs_f64(),
            at.get(1).map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
            count("ssm:SendCommand"),
            count("ssm:GetCommandInvocation")
        );
    }
}
