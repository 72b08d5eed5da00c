//! End to end through the local cloud: a CloudWatch alarm notification published to the alarms
//! topic (or CloudWatch's Lambda action event, an EventBridge event, an SQS message) → the
//! enrich-alert handler (lookups against the local cloud, in the alarm's account and region;
//! the ledger in its DynamoDB table) → the enriched-alerts topic → a subscribed SQS queue.

use std::sync::Arc;

use opsflow::fixtures;
use opsflow::local::alerts::{cpu_alarm, lambda_action_event, LocalAlerts, SAMPLE_DIAGNOSE_OUTPUT};
use opsflow::local::runbook::{MemberAccount, MEMBER_ROLE};
use opsflow::local::{LocalCloud, ACCOUNT};
use opsflow_aws::{Clients, MemberAccess};
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
    world_with(AlertSettings::default()).await
}

async fn world_with(settings: AlertSettings) -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let clients = Clients::for_endpoint(&cloud.endpoint).await.unwrap();
    let instance_id = fixtures::managed_instance(&clients, "web-7", "web-role", true).await.unwrap();
    let alerts = LocalAlerts::setup(&clients, settings).await.unwrap();
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
async fn an_alarm_on_an_instance_arrives_enriched_in_six_calls_and_two_ledger_writes() {
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
    // Five lookups (the alarm's mute rules included) and the publish: the alarm's own
    // notification is not counted.
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
        "cloudwatch:ListAlarmMuteRules",
        "sns:Publish",
    ]
    .iter()
    .map(|op| calls.get(*op).copied().unwrap_or(0))
    .sum::<u64>()
        - 1;
    assert_eq!(per_alert, 6, "{calls:?}");
    // The ledger: the claim and the record that it was published.
    assert_eq!(calls.get("dynamodb:PutItem"), Some(&2), "{calls:?}");
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

fn inbox_one(inbox: &[Value]) -> &Value {
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    &inbox[0]
}

fn notes(b: &Value) -> Vec<String> {
    b["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatchs_lambda_action_arrives_enriched_without_an_envelope() {
    let w = world().await;
    let at = w.cloud.now_ms().await.unwrap();
    let name = format!("cpu-high-{}", w.instance_id);
    cpu_alarm(&w.alerts.clients, &name, &w.instance_id, &w.alerts.alarms_topic, &VALUES, at)
        .await
        .unwrap();
    let event = lambda_action_event(ACCOUNT, "us-east-1", &name, &w.instance_id, at);
    let ids = w.alerts.invoke(&event).await.expect("the Lambda action's event is an alarm");
    assert_eq!(ids.len(), 1);
    let inbox = w.alerts.inbox().await.unwrap();
    let b = body(inbox_one(&inbox));
    assert_eq!(b["alarm"]["source"], "lambda");
    assert_eq!(b["alarm"]["name"], name.as_str());
    assert_eq!(b["instances"][0]["details"]["name"], "web-7");
    assert_eq!(b["datapoints"].as_array().unwrap().len(), VALUES.len());
    assert_eq!(notes(&b), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_is_looked_up_in_its_own_region_never_the_functions() {
    let w = world().await;
    // An instance in eu-west-1; the function's clients are in us-east-1.
    let eu = Clients::from_sdk_config(
        &w.alerts
            .clients
            .sdk_config
            .to_builder()
            .region(opsflow_aws::aws_config::Region::new("eu-west-1"))
            .build(),
    )
    .unwrap();
    let eu_instance = fixtures::instance(&eu, "web-eu").await.unwrap();
    let at = w.cloud.now_ms().await.unwrap();
    w.alerts
        .invoke(&lambda_action_event(ACCOUNT, "eu-west-1", "cpu-high-eu", &eu_instance, at))
        .await
        .unwrap();
    let inbox = w.alerts.inbox().await.unwrap();
    let b = body(inbox_one(&inbox));
    assert_eq!(b["instances"][0]["details"]["instanceId"], eu_instance.as_str());
    assert!(
        b["instances"][0]["details"]["availabilityZone"]
            .as_str()
            .unwrap()
            .starts_with("eu-west-1"),
        "{b}"
    );
    assert_eq!(b["targetPlace"], json!({"accountId": ACCOUNT, "region": "eu-west-1"}));

    // The us-east-1 instance named by an alarm of ap-northeast-2 is not that alarm's instance.
    w.alerts
        .invoke(&lambda_action_event(
            ACCOUNT,
            "ap-northeast-2",
            "cpu-high-seoul",
            &w.instance_id,
            at,
        ))
        .await
        .unwrap();
    let inbox = w.alerts.inbox().await.unwrap();
    let delivered = inbox_one(&inbox);
    let b = body(delivered);
    assert_eq!(b["instances"], json!([]));
    let want = format!(
        "instance {} was not found: it does not exist in ap-northeast-2 of account {ACCOUNT}, or was terminated over an hour ago",
        w.instance_id
    );
    assert!(notes(&b).contains(&want), "{:?}", notes(&b));
    assert_eq!(attribute(delivered, "region"), Some("ap-northeast-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_of_a_member_account_is_looked_up_through_its_role_or_said_not_searched() {
    let w = world().await;
    let member = MemberAccount::seed(&w.cloud, "444455556666", "alerts-ext-42").await.unwrap();
    let instance = member.instance("us-east-1", "batch-1", &[], false).await.unwrap();
    let at = w.cloud.now_ms().await.unwrap();

    // Off (the default): the alert says which account and region were not searched.
    w.alerts
        .invoke(&lambda_action_event("444455556666", "us-east-1", "batch-cpu", &instance, at))
        .await
        .unwrap();
    let b = body(inbox_one(&w.alerts.inbox().await.unwrap()));
    assert_eq!(b["instances"], json!([]));
    let n = notes(&b);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        n[0].starts_with(&format!(
            "account 444455556666 in us-east-1 was not searched (it is not opsflow's account {ACCOUNT}, and cross-account lookups are off"
        )),
        "{n:?}"
    );

    // Asked for but not configurable (no ExternalId): the alerts still flow, saying why.
    let misconfigured = w
        .alerts
        .clients
        .alert_adapter()
        .without_members_because("ALERT_MEMBER_LOOKUPS is true but MEMBER_EXTERNAL_ID is empty");
    w.alerts
        .invoke_with(
            &misconfigured,
            &lambda_action_event("444455556666", "us-east-1", "batch-cpu", &instance, at + 30_000),
        )
        .await
        .unwrap();
    let n = notes(&body(inbox_one(&w.alerts.inbox().await.unwrap())));
    assert!(
        n[0].contains(&format!(
            "(it is not opsflow's account {ACCOUNT}, and ALERT_MEMBER_LOOKUPS is true but MEMBER_EXTERNAL_ID is empty)"
        )),
        "{n:?}"
    );

    // On: through the member role with its ExternalId.
    let with_members = w.alerts.clients.alert_adapter_with_members(MemberAccess {
        role_name: MEMBER_ROLE.into(),
        external_id: "alerts-ext-42".into(),
    });
    w.alerts
        .invoke_with(
            &with_members,
            &lambda_action_event("444455556666", "us-east-1", "batch-cpu", &instance, at + 60_000),
        )
        .await
        .unwrap();
    let b = body(inbox_one(&w.alerts.inbox().await.unwrap()));
    assert_eq!(b["instances"][0]["details"]["name"], "batch-1", "{b}");
    assert_eq!(b["instances"][0]["details"]["instanceId"], instance.as_str());

    // A wrong ExternalId: the member role refuses, and the alert says so.
    let refused = w.alerts.clients.alert_adapter_with_members(MemberAccess {
        role_name: MEMBER_ROLE.into(),
        external_id: "not-the-id".into(),
    });
    w.alerts
        .invoke_with(
            &refused,
            &lambda_action_event("444455556666", "us-east-1", "batch-cpu", &instance, at + 120_000),
        )
        .await
        .unwrap();
    let b = body(inbox_one(&w.alerts.inbox().await.unwrap()));
    let n = notes(&b);
    assert!(
        n.iter()
            .any(|n| n.starts_with("lookups in account 444455556666, us-east-1 failed (AccessDenied")),
        "{n:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_delivered_twice_or_by_two_routes_is_published_once() {
    let w = world().await;
    let at = w.alarm_on(&w.instance_id).await;
    let first = w.alerts.deliver().await.unwrap();
    assert_eq!(first[0].result.as_ref().unwrap().len(), 1);
    assert_eq!(w.alerts.inbox().await.unwrap().len(), 1);
    // The same state change again: by the SNS route (a redelivery) and by the Lambda action.
    let name = format!("cpu-high-{}", w.instance_id);
    let again = lambda_action_event(ACCOUNT, "us-east-1", &name, &w.instance_id, at);
    assert_eq!(w.alerts.invoke(&again).await.unwrap(), Vec::<String>::new());
    assert!(w.alerts.inbox().await.unwrap().is_empty(), "published twice");
    let row = w
        .alerts
        .clients
        .dynamodb
        .scan()
        .table_name(w.alerts.ledger.table())
        .send()
        .await
        .unwrap();
    let items = row.items();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["status"].as_s().unwrap(), "published");
    assert!(items[0].contains_key("expiresAt"));
    // The next state change of the same alarm is a new alert.
    w.alerts
        .invoke(&lambda_action_event(ACCOUNT, "us-east-1", &name, &w.instance_id, at + 300_000))
        .await
        .unwrap();
    assert_eq!(w.alerts.inbox().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppressed_composite_alarm_arrives_low_with_its_suppression_and_tags() {
    let w = world().await;
    let event: Value = serde_json::from_str(include_str!(
        "../crates/core/src/alert/fixtures/eventbridge-composite-suppressed.json"
    ))
    .unwrap();
    w.alerts.invoke(&event).await.unwrap();
    let inbox = w.alerts.inbox().await.unwrap();
    let delivered = inbox_one(&inbox);
    assert_eq!(attribute(delivered, "actionsSuppressed"), Some("Alarm"));
    assert_eq!(attribute(delivered, "severity"), Some("low"));
    assert_eq!(attribute(delivered, "tag.team"), Some("web"));
    assert_eq!(attribute(delivered, "tag.env"), Some("prod"));
    let b = body(delivered);
    assert_eq!(b["alarm"]["actionsSuppressed"]["suppressor"], "web-maintenance-window");
    assert_eq!(b["alarm"]["source"], "eventbridge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_envelopes_are_enriched_or_published_as_unrecognized_never_failed() {
    let w = world().await;
    let at = w.cloud.now_ms().await.unwrap();
    let name = format!("cpu-high-{}", w.instance_id);
    cpu_alarm(&w.alerts.clients, &name, &w.instance_id, &w.alerts.alarms_topic, &VALUES, at)
        .await
        .unwrap();
    // An SQS queue subscribed to the alarms topic (no raw delivery), read by the function.
    let message = lambda_action_event(ACCOUNT, "us-east-1", &name, &w.instance_id, at);
    let sns_message = json!({
        "AlarmName": name, "AWSAccountId": ACCOUNT, "NewStateValue": "ALARM", "NewStateReason": "Threshold Crossed",
        "StateChangeTime": message["time"], "AlarmArn": message["alarmArn"], "OldStateValue": "OK",
        "Trigger": {"MetricName": "CPUUtilization", "Namespace": "AWS/EC2", "StatisticType": "Statistic", "Statistic": "AVERAGE",
                    "Dimensions": [{"value": w.instance_id, "name": "InstanceId"}], "Period": 300, "EvaluationPeriods": 1,
                    "ComparisonOperator": "GreaterThanThreshold", "Threshold": 90.0}
    });
    let envelope = json!({"Type": "Notification", "MessageId": "7f0c3c64-0000-4000-8000-000000000001",
        "TopicArn": w.alerts.alarms_topic, "Message": sns_message.to_string(), "Timestamp": "2026-11-23T03:01:12.401Z"});
    let sqs_event = json!({"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "body": envelope.to_string(),
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:alarms-buffer", "awsRegion": "us-east-1"}]});
    // An SNS record without signature fields, and an EventBridge alarm event without detail.
    let bare_sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification",
        "TopicArn": w.alerts.alarms_topic, "Subject": "hello", "Message": "disk almost full on web-7"}}]});
    let no_detail = json!({"version": "0", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "account": ACCOUNT, "region": "us-east-1", "time": "2026-11-23T03:01:12Z", "resources": []});
    for event in [&sqs_event, &bare_sns, &no_detail] {
        let ids = w.alerts.invoke(event).await;
        assert_eq!(ids.as_ref().map(Vec::len).ok(), Some(1), "{event}: {ids:?}");
    }
    let inbox = w.alerts.inbox().await.unwrap();
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    let subjects: Vec<&str> = inbox.iter().map(|d| d["Subject"].as_str().unwrap()).collect();
    let enriched = inbox
        .iter()
        .find(|d| d["Subject"].as_str().unwrap().starts_with("ALARM: "))
        .expect("the SQS-carried alarm");
    let b = body(enriched);
    assert_eq!(b["alarm"]["source"], "sqs");
    assert_eq!(b["instances"][0]["details"]["name"], "web-7");
    assert!(subjects.contains(&"Unrecognized alert via sns: hello"), "{subjects:?}");
    assert!(
        subjects.contains(&"Unrecognized alert via eventbridge: CloudWatch Alarm State Change"),
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_claims_once_holds_a_lease_releases_and_remembers_the_message() {
    use opsflow_core::alert::{AlertLedger, Claim};
    let w = world().await;
    let ledger = &w.alerts.ledger;
    let key = "123456789012/us-east-1/cpu-high/ALARM/1795402872345";
    let (now, lease, expires) = (1_795_402_900, 120, 1_796_000_000);
    assert_eq!(ledger.claim(key, now, lease, expires).await.unwrap(), Claim::Won);
    // A second delivery while the claim holds: busy until the lease ends.
    assert_eq!(
        ledger.claim(key, now + 5, lease, expires).await.unwrap(),
        Claim::Busy {
            lease_until_s: now + lease
        }
    );
    // The holder's publish failed: released, the next delivery wins.
    ledger.release(key).await.unwrap();
    assert_eq!(ledger.claim(key, now + 10, lease, expires).await.unwrap(), Claim::Won);
    // That holder crashed: after its lease, a delivery takes the claim over.
    assert_eq!(ledger.claim(key, now + 10 + lease + 1, lease, expires).await.unwrap(), Claim::Won);
    ledger.published(key, "msg-42", expires).await.unwrap();
    assert_eq!(
        ledger.claim(key, now + 1_000, lease, expires).await.unwrap(),
        Claim::Published("msg-42".into())
    );
    // Releasing a published state change changes nothing.
    ledger.release(key).await.unwrap();
    assert_eq!(
        ledger.claim(key, now + 2_000, lease, expires).await.unwrap(),
        Claim::Published("msg-42".into())
    );

    // A follow-up is taken over only when one was owed: claimed, and its lease ran out; the
    // delivery that takes it over learns what it owes (the command it waits for).
    let follow = format!("{key}/diagnostics");
    let owed = r#"{"commandId":"c-1"}"#;
    assert_eq!(ledger.reclaim(&follow, now, 50, expires).await.unwrap(), None);
    assert_eq!(ledger.claim_owed(&follow, now, 50, expires, owed).await.unwrap(), Claim::Won);
    assert_eq!(
        ledger.reclaim(&follow, now + 10, 50, expires).await.unwrap(),
        Some((Claim::Busy { lease_until_s: now + 50 }, owed.to_string()))
    );
    assert_eq!(
        ledger.reclaim(&follow, now + 51, 50, expires).await.unwrap(),
        Some((Claim::Won, owed.to_string()))
    );
    assert_eq!(
        ledger.reclaim(&follow, now + 60, 50, expires).await.unwrap(),
        Some((Claim::Busy { lease_until_s: now + 101 }, owed.to_string()))
    );
    ledger.published(&follow, "msg-43", expires).await.unwrap();
    assert_eq!(
        ledger.reclaim(&follow, now + 500, 50, expires).await.unwrap(),
        Some((Claim::Published("msg-43".into()), String::new()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_muted_for_maintenance_arrives_low_saying_by_which_procedure_and_when() {
    use opsflow_aws::aws_sdk_cloudwatch::types::{MuteTargets, Rule, Schedule};
    let w = world().await;
    let now_s = w.cloud.now_ms().await.unwrap() / 1000;
    let at = opsflow_core::time::format_utc(now_s);
    let alarm = format!("cpu-high-{}", w.instance_id);
    let description = format!(
        "opsflow clean-stop (clean-stop) on {}: run nightly started {at} by arn:aws:scheduler:us-east-1:123456789012:schedule/default/nightly",
        w.instance_id
    );
    w.alerts
        .clients
        .cloudwatch
        .put_alarm_mute_rule()
        .name("opsflow-maintenance-1")
        .description(&description)
        .rule(
            Rule::builder()
                .schedule(
                    Schedule::builder()
                        .expression(format!("at({})", &at[..16]))
                        .duration("PT1H")
                        .build(),
                )
                .build(),
        )
        .mute_targets(MuteTargets::builder().alarm_names(&alarm).build())
        .send()
        .await
        .unwrap();
    w.alarm_on(&w.instance_id).await;
    let deliveries = w.alerts.deliver().await.unwrap();
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let inbox = w.alerts.inbox().await.unwrap();
    let delivered = inbox_one(&inbox);
    assert_eq!(attribute(delivered, "severity"), Some("low"), "medium unmuted (recently started)");
    assert_eq!(attribute(delivered, "mutedBy"), Some("opsflow-maintenance-1"));
    let b = body(delivered);
    assert_eq!(
        b["maintenance"],
        json!([{"rule": "opsflow-maintenance-1", "description": description}])
    );
}

// --- Alerts that diagnose: opsflow-Diagnose on an opted-in instance, as the local cloud's
// command rules make it end.

impl World {
    /// The instance opted in to diagnostics; the next `opsflow-Diagnose` ends as `rule` says.
    async fn diagnose(&self, rule: Value) {
        self.alerts
            .clients
            .ec2
            .create_tags()
            .resources(&self.instance_id)
            .tags(
                opsflow_aws::aws_sdk_ec2::types::Tag::builder()
                    .key("opsflow:diagnose")
                    .value("enabled")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let mut rule = rule;
        rule["document"] = json!("opsflow-Diagnose");
        rule["count"] = json!(1);
        self.cloud.control("commands", json!({"rules": [rule]})).await.unwrap();
    }

    /// An alarm on the instance, delivered: what reached the inbox.
    async fn alarm_delivered(&self) -> Vec<Value> {
        self.alarm_on(&self.instance_id).await;
        let deliveries = self.alerts.deliver().await.unwrap();
        assert_eq!(deliveries.len(), 1);
        assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
        self.alerts.inbox().await.unwrap()
    }
}

/// Alerts wait 3 s for diagnostics, follow-ups 8 s; no cooldown (each scenario diagnoses one
/// instance several times).
fn diagnosing() -> AlertSettings {
    AlertSettings {
        diagnose_wait_s: 3,
        diagnose_limit_s: 8,
        diagnose_cooldown_s: 0,
        ..AlertSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_in_instance_is_diagnosed_in_the_alert_when_the_command_succeeds_or_fails() {
    let w = world_with(diagnosing()).await;
    w.diagnose(json!({"duration_seconds": 1, "stdout": SAMPLE_DIAGNOSE_OUTPUT})).await;
    let inbox = w.alarm_delivered().await;
    let d = &body(inbox_one(&inbox))["diagnostics"];
    assert_eq!(d["status"], "succeeded", "{d}");
    assert_eq!(d["document"], "opsflow-Diagnose");
    assert!(d["output"].as_str().unwrap().contains("4242 app      97.3 81.2"), "{d}");
    // The text email subscribers get, rendered from the delivered body.
    let enriched: opsflow_core::alert::Enriched = serde_json::from_value(body(&inbox[0])).unwrap();
    let message: Value = serde_json::from_str(&opsflow_core::alert::publication(&enriched).message).unwrap();
    let text = message["email"].as_str().unwrap();
    let command = d["commandId"].as_str().unwrap();
    // The command as SSM has it: the document alone, delivery timeout 30 s, the alarm named.
    let listed = w.alerts.clients.ssm.list_commands().command_id(command).send().await.unwrap();
    let c = &listed.commands()[0];
    assert_eq!(
        (c.document_name(), c.timeout_seconds(), c.parameters().map(|p| p.len())),
        (Some("opsflow-Diagnose"), Some(30), Some(0))
    );
    assert_eq!(c.comment(), Some(format!("opsflow alert: cpu-high-{}", w.instance_id).as_str()));
    assert!(
        text.contains(&format!("Diagnostics (opsflow-Diagnose on {}, ", w.instance_id)),
        "{text}"
    );
    assert!(text.contains("): succeeded\n  Output (its end):\n    opsflow-diagnose "), "{text}");

    // The script fails: said, with its output; the alert goes out all the same.
    w.diagnose(json!({"duration_seconds": 1, "exit_code": 2, "stdout": "== disk", "stderr": "df: /data: Stale file handle"}))
        .await;
    let inbox = w.alarm_delivered().await;
    let d = &body(inbox_one(&inbox))["diagnostics"];
    assert_eq!(
        (d["status"].as_str(), d["exitCode"].as_i64()),
        (Some("failed"), Some(2)),
        "{:?}",
        notes(&body(&inbox[0]))
    );
    assert_eq!(d["reason"], "the command exited with code 2");
    assert!(
        d["output"]
            .as_str()
            .unwrap()
            .ends_with("--- stderr ---\ndf: /data: Stale file handle"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_diagnostics_command_sends_the_alert_first_and_a_follow_up_once() {
    let w = world_with(diagnosing()).await;
    w.diagnose(json!({"duration_seconds": 5, "stdout": SAMPLE_DIAGNOSE_OUTPUT})).await;
    let started = std::time::Instant::now();
    w.alarm_on(&w.instance_id).await;
    let deliveries = w.alerts.deliver().await.unwrap();
    assert!(
        deliveries[0].result.as_ref().is_ok_and(|ids| ids.len() == 2),
        "{:?}",
        deliveries[0].result
    );
    let inbox = w.alerts.inbox().await.unwrap();
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    let (alert, follow_up) = (body(&inbox[0]), body(&inbox[1]));
    assert_eq!(alert["diagnostics"]["status"], "running");
    assert!(
        alert["diagnostics"]["tookMs"].as_i64().unwrap() <= 3_500,
        "{}",
        alert["diagnostics"]
    );
    assert_eq!(follow_up["schema"], "opsflow.alert-diagnostics/1");
    assert_eq!(follow_up["diagnostics"]["status"], "succeeded");
    assert_eq!(follow_up["diagnostics"]["commandId"], alert["diagnostics"]["commandId"]);
    assert!(inbox[1]["Subject"].as_str().unwrap().starts_with("Diagnostics: cpu-high-"));
    assert_eq!(attribute(&inbox[1], "instanceId"), Some(w.instance_id.as_str()));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));

    // Delivered again (here by CloudWatch's Lambda action): neither is repeated, no second command.
    let sent_before = w.calls().await.get("ssm:SendCommand").copied();
    let at = alert["alarm"]["changedAtMs"].as_i64().unwrap();
    let name = format!("cpu-high-{}", w.instance_id);
    let again = lambda_action_event(ACCOUNT, "us-east-1", &name, &w.instance_id, at);
    assert_eq!(w.alerts.invoke(&again).await.unwrap(), Vec::<String>::new());
    assert!(w.alerts.inbox().await.unwrap().is_empty());
    assert_eq!(w.calls().await.get("ssm:SendCommand").copied(), sent_before);

    // A command that never ends: the follow-up says so at the limit.
    w.diagnose(json!({"duration_seconds": 60})).await;
    let inbox = w.alarm_delivered().await;
    assert_eq!(inbox.len(), 2);
    let d = &body(&inbox[1])["diagnostics"];
    assert_eq!(d["status"], "unfinished", "{d}");
    assert!(
        d["reason"].as_str().unwrap().starts_with("still InProgress 8 s after it was sent"),
        "{d}"
    );
    assert_eq!(w.calls().await.get("ssm:SendCommand").copied(), sent_before.map(|n| n + 1));
}
