//! End to end through the local cloud: a CloudWatch alarm notification published to the alarms
//! topic → the enrich-alert handler (lookups against the local cloud) → the enriched-alerts
//! topic → a subscribed SQS queue.

use std::sync::Arc;

use opsflow::fixtures;
use opsflow::local::alerts::{cpu_alarm, LocalAlerts};
use opsflow::local::LocalCloud;
use opsflow_aws::Clients;
use opsflow_core::alert::AlertSettings;
use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::const_new(());

struct World {
    _serial: MutexGuard<'static, ()>,
    cloud: Arc<LocalCloud>,
    alerts: LocalAlerts,
    instance_id: String,
}

const VALUES: [f64; 6] = [12.0, 15.0, 97.0, 98.0, 99.0, 99.0];

async fn world() -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let clients = Clients::for_endpoint(&cloud.endpoint).await.unwrap();
    let instance_id = fixtures::managed_instance(&clients, "web-7", "web-role", true).await.unwrap();
    let alerts = LocalAlerts::setup(&clients, AlertSettings::default()).await.unwrap();
    World {
        _serial: serial,
        cloud,
        alerts,
        instance_id,
    }
}

impl World {
    async fn alarm_on(&self, instance_id: &str) -> i64 {
        let at = self.cloud.now_ms().await.unwrap();
        let name = format!("cpu-high-{instance_id}");
        cpu_alarm(&self.alerts.clients, &name, instance_id, &self.alerts.alarms_topic, &VALUES, at)
            .await
            .unwrap();
        let reason = "Threshold Crossed: 1 out of the last 1 datapoints [99.0] was greater than the threshold (90.0) (minimum 1 datapoint for OK -> ALARM transition).";
        self.alerts.raise(&name, reason, at).await.unwrap();
        at
    }

    async fn calls(&self) -> std::collections::HashMap<String, u64> {
        self.cloud.calls().await.unwrap()
    }

    async fn reset_calls(&self) {
        self.cloud.reset_calls().await.unwrap();
    }
}

fn body(delivered: &Value) -> Value {
    serde_json::from_str(delivered["Message"].as_str().unwrap()).unwrap()
}

fn attribute<'a>(delivered: &'a Value, name: &str) -> Option<&'a str> {
    delivered["MessageAttributes"][name]["Value"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_on_an_instance_arrives_enriched_in_five_calls() {
    let w = world().await;
    w.reset_calls().await;
    w.alarm_on(&w.instance_id).await;
    let deliveries = w.alerts.deliver().await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let inbox = w.alerts.inbox().await.unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let delivered = &inbox[0];
    let subject = delivered["Subject"].as_str().unwrap();
    assert!(subject.starts_with(&format!("ALARM: cpu-high-{}", w.instance_id)), "{subject}");
    assert_eq!(attribute(delivered, "instanceId"), Some(w.instance_id.as_str()));
    assert_eq!(attribute(delivered, "recentlyStarted"), Some("true"));
    assert_eq!(attribute(delivered, "adminRole"), Some("true"));
    assert_eq!(attribute(delivered, "severity"), Some("medium"));
    assert_eq!(attribute(delivered, "region"), Some("us-east-1"));
    let b = body(delivered);
    assert_eq!(b["schema"], "opsflow.enriched-alert/3");
    let values: Vec<f64> = b["datapoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, VALUES);
    let instance = &b["instances"][0];
    assert_eq!(instance["details"]["name"], "web-7");
    assert_eq!(instance["details"]["instanceType"], "t3.small");
    assert_eq!(instance["roleName"], "web-role");
    assert_eq!(instance["admin"], "AdministratorAccess is attached");
    assert_eq!(instance["agent"]["pingStatus"], "Online");
    assert_eq!(b["notes"], json!([]));
    // Four lookups and the publish: the alarm's own notification is not counted.
    let calls = w.calls().await;
    assert_eq!(
        calls.get("sns:Publish"),
        Some(&2),
        "the alarm's notification and the enriched alert"
    );
    let per_alert: u64 = [
        "ec2:DescribeInstances",
        "ssm:DescribeInstanceInformation",
        "iam:GetAccountAuthorizationDetails",
        "cloudwatch:GetMetricData",
        "sns:Publish",
    ]
    .iter()
    .map(|op| calls.get(*op).copied().unwrap_or(0))
    .sum::<u64>()
        - 1;
    assert_eq!(per_alert, 5, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_instance_and_a_failing_lookup_are_notes_not_lost_alerts() {
    let w = world().await;
    w.alarm_on("i-0123456789abcdef0").await;
    w.cloud
        .control(
            "faults",
            json!({"operation": "cloudwatch:GetMetricData", "count": 10, "code": "Throttling", "http_status": 400}),
        )
        .await
        .unwrap();
    let deliveries = w.alerts.deliver().await.unwrap();
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let inbox = w.alerts.inbox().await.unwrap();
    assert_eq!(inbox.len(), 1);
    let b = body(&inbox[0]);
    let notes: Vec<&str> = b["notes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(notes.iter().any(|n| n.contains("i-0123456789abcdef0 was not found")), "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("CloudWatch GetMetricData failed") && n.contains("Throttl")),
        "{notes:?}"
    );
    assert_eq!(attribute(&inbox[0], "severity"), Some("high"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_fails_the_delivery_and_the_retry_delivers() {
    let w = world().await;
    w.alarm_on(&w.instance_id).await;
    // The SDK retries a 500 itself (3 attempts): fail every attempt of this delivery.
    w.cloud
        .control(
            "faults",
            json!({"operation": "sns:Publish", "count": 3, "code": "InternalError", "http_status": 500}),
        )
        .await
        .unwrap();
    let first = w.alerts.deliver().await.unwrap();
    assert_eq!(first.len(), 1);
    let err = first[0].result.as_ref().unwrap_err();
    assert_eq!(err.name(), "Transient", "{err}");
    assert!(w.alerts.inbox().await.unwrap().is_empty());
    // The notification was not deleted: SNS (here, the queue) delivers it again.
    let second = w.alerts.deliver().await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].result.is_ok(), "{:?}", second[0].result);
    assert_eq!(w.alerts.inbox().await.unwrap().len(), 1);
}
