//! The alert enrichment, locally: the alarms and enriched-alerts SNS topics in the local cloud,
//! the real handler in-process, and a queue subscribed to the enriched topic to read what
//! subscribers get.
//!
//! The local cloud runs no Lambda, so an SQS queue subscribed to the alarms topic stands in for
//! the function's subscription: [`LocalAlerts::deliver`] turns each notification SNS put there
//! into the SNS event Lambda would receive (the same envelope) and calls the handler; like SNS,
//! it deletes a notification only when the handler succeeded, so a failed one is delivered
//! again. And moto never runs alarm actions, so [`LocalAlerts::raise`] publishes the
//! notification CloudWatch would, built from the alarm as DescribeAlarms returns it;
//! [`lambda_action_event`] builds the event CloudWatch's Lambda alarm action would send.
//! The ledger (one publication per state change) is a DynamoDB table of the local cloud.

use anyhow::{bail, Context};
use opsflow_aws::aws_sdk_cloudwatch::primitives::DateTime;
use opsflow_aws::aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricDatum, Statistic};
use opsflow_aws::aws_sdk_sqs::types::Message;
use opsflow_aws::{AlertAdapter, Clients, DynamoAlertLedger, SnsPublisher, SystemClock};
use opsflow_core::alert::{handle, AlertSettings};
use opsflow_core::time::format_utc;
use opsflow_core::CoreError;

use crate::fixtures::{queue, subscribe, topic};
use serde_json::{json, Value};

/// The topics, the stand-in subscription and the inbox.
pub struct LocalAlerts {
    pub clients: Clients,
    pub alarms_topic: String,
    pub enriched_topic: String,
    bridge_queue: String,
    bridge_subscription: String,
    inbox_queue: String,
    pub lookups: AlertAdapter,
    pub publisher: SnsPublisher,
    pub ledger: DynamoAlertLedger,
    pub settings: AlertSettings,
}

/// What `opsflow-Diagnose` prints on a busy Linux instance (its format, sections in the script's
/// order): the local cloud runs no script, so its command rules answer with this.
pub const SAMPLE_DIAGNOSE_OUTPUT: &str = "opsflow-diagnose 2026-12-06T22:40:01Z host=ip-10-0-1-23

== load
 22:40:01 up 3 days,  2:11,  0 users,  load average: 7.92, 6.10, 3.04
cpus=2

== memory
               total        used        free      shared  buff/cache   available
Mem:            3851        3620          71           1         159          12
Swap:              0           0           0

== top-cpu
    PID USER     %CPU %MEM   RSS     ELAPSED COMMAND
   4242 app      97.3 81.2 3203112   01:02:11 java
    812 root      1.1  0.9 36120  3-02:11:40 amazon-ssm-agent

== top-mem
    PID USER     %CPU %MEM   RSS     ELAPSED COMMAND
   4242 app      97.3 81.2 3203112   01:02:11 java

== disk
Filesystem      Size  Used Avail Use% Mounted on
/dev/nvme0n1p1   20G   19G  1.0G  95% /

== inodes
Filesystem      Inodes IUsed  IFree IUse% Mounted on
/dev/nvme0n1p1   1.3M  212K   1.1M   17% /

== oom-1h
2026-12-06T22:31:07+0000 ip-10-0-1-23 kernel: Out of memory: Killed process 3977 (java) total-vm:5123456kB, anon-rss:3101232kB

== failed-units

== restarts-1h
2026-12-06T22:31:09+0000 ip-10-0-1-23 systemd[1]: app.service: Main process exited, code=killed, status=9/KILL
2026-12-06T22:31:14+0000 ip-10-0-1-23 systemd[1]: app.service: Scheduled restart job, restart counter is at 1.
";

/// The ledger table of the local alerts.
pub const LEDGER_TABLE: &str = "opsflow-alert-ledger";

/// What one delivery of a notification to the handler ended with.
#[derive(Debug)]
pub struct Delivery {
    pub result: Result<Vec<String>, CoreError>,
    /// How long the handler took (lookups, rendering, publishing).
    pub took: std::time::Duration,
}

/// CloudWatch's timestamp format in alarm notifications: `2026-11-23T03:01:12.345+0000`.
fn cloudwatch_time(ms: i64) -> String {
    format_utc(ms.div_euclid(1000)).replace('Z', &format!(".{:03}+0000", ms.rem_euclid(1000)))
}

impl LocalAlerts {
    /// Creates the topics `opsflow-alarms` and `opsflow-enriched-alerts`, the stand-in queue for
    /// the function's subscription and an inbox queue subscribed to the enriched topic.
    pub async fn setup(clients: &Clients, settings: AlertSettings) -> anyhow::Result<LocalAlerts> {
        let alarms_topic = topic(clients, "opsflow-alarms").await?;
        let enriched_topic = topic(clients, "opsflow-enriched-alerts").await?;
        let (bridge_queue, bridge_arn) = queue(clients, "opsflow-alarms-to-enrich-alert").await?;
        let bridge_subscription = subscribe(clients, &alarms_topic, &bridge_arn).await?;
        let (inbox_queue, inbox_arn) = queue(clients, "opsflow-enriched-alerts-inbox").await?;
        subscribe(clients, &enriched_topic, &inbox_arn).await?;
        let ledger = clients.alert_ledger(LEDGER_TABLE);
        ledger.create_table().await.context("the alert ledger table")?;
        Ok(LocalAlerts {
            ledger,
            clients: clients.clone(),
            lookups: clients.alert_adapter(),
            publisher: clients.sns_publisher(&enriched_topic),
            alarms_topic,
            enriched_topic,
            bridge_queue,
            bridge_subscription,
            inbox_queue,
            settings,
        })
    }

    /// Publishes to the alarms topic what CloudWatch publishes when alarm `name` goes from OK
    /// to ALARM at `at_ms` with `reason`: the notification built from DescribeAlarms.
    pub async fn raise(&self, name: &str, reason: &str, at_ms: i64) -> anyhow::Result<Value> {
        let out = self
            .clients
            .cloudwatch
            .describe_alarms()
            .alarm_names(name)
            .send()
            .await
            .context("DescribeAlarms")?;
        let Some(alarm) = out.metric_alarms().first() else {
            bail!("no metric alarm named {name}");
        };
        let region = alarm.alarm_arn().and_then(|a| a.split(':').nth(3)).unwrap_or("us-east-1");
        let statistic = alarm.statistic().map(|s| match s {
            Statistic::SampleCount => "SAMPLE_COUNT".to_string(),
            other => other.as_str().to_ascii_uppercase(),
        });
        let message = json!({
            "AlarmName": alarm.alarm_name(),
            "AlarmDescription": alarm.alarm_description(),
            "AWSAccountId": alarm.alarm_arn().and_then(|a| a.split(':').nth(4)),
            "AlarmConfigurationUpdatedTimestamp": alarm.alarm_configuration_updated_timestamp().map(|t| cloudwatch_time(t.to_millis().unwrap_or(0))),
            "NewStateValue": "ALARM",
            "NewStateReason": reason,
            "StateChangeTime": cloudwatch_time(at_ms),
            "Region": region_name(region),
            "AlarmArn": alarm.alarm_arn(),
            "OldStateValue": "OK",
            "OKActions": alarm.ok_actions(),
            "AlarmActions": alarm.alarm_actions(),
            "InsufficientDataActions": alarm.insufficient_data_actions(),
            "Trigger": {
                "MetricName": alarm.metric_name(),
                "Namespace": alarm.namespace(),
                "StatisticType": if alarm.extended_statistic().is_some() { "ExtendedStatistic" } else { "Statistic" },
                "Statistic": statistic,
                "ExtendedStatistic": alarm.extended_statistic(),
                "Unit": alarm.unit().map(|u| u.as_str()),
                "Dimensions": alarm.dimensions().iter().map(|d| json!({"value": d.value(), "name": d.name()})).collect::<Vec<_>>(),
                "Period": alarm.period(),
                "EvaluationPeriods": alarm.evaluation_periods(),
                "DatapointsToAlarm": alarm.datapoints_to_alarm(),
                "ComparisonOperator": alarm.comparison_operator().map(|c| c.as_str()),
                "Threshold": alarm.threshold(),
                "TreatMissingData": alarm.treat_missing_data().unwrap_or("missing"),
                "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile().unwrap_or(""),
            }
        });
        let subject = format!("ALARM: \"{name}\" in {}", region_name(region));
        let subject: String = subject.chars().take(100).collect();
        self.clients
            .sns
            .publish()
            .topic_arn(&self.alarms_topic)
            .subject(subject)
            .message(message.to_string())
            .send()
            .await
            .context("Publish to the alarms topic")?;
        Ok(message)
    }

    /// Hands every notification waiting on the alarms topic's subscription to the handler, as
    /// Lambda would; deletes those it handled.
    pub async fn deliver(&self) -> anyhow::Result<Vec<Delivery>> {
        let mut deliveries = Vec::new();
        let received = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.bridge_queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .context("ReceiveMessage")?;
        for message in received.messages() {
            let envelope: Value = serde_json::from_str(message.body().unwrap_or("null")).context("the SNS notification")?;
            let event = json!({"Records": [{
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": self.bridge_subscription,
                "Sns": envelope,
            }]});
            let started = std::time::Instant::now();
            let result = self.invoke(&event).await;
            let took = started.elapsed();
            if result.is_ok() {
                self.delete(&self.bridge_queue, message).await?;
            }
            deliveries.push(Delivery { result, took });
        }
        Ok(deliveries)
    }

    /// The handler on `event`, as Lambda would invoke it (with the ledger).
    pub async fn invoke(&self, event: &Value) -> Result<Vec<String>, CoreError> {
        self.invoke_with(&self.lookups, event).await
    }

    /// [`LocalAlerts::invoke`] with other lookups (e.g. with member accounts).
    pub async fn invoke_with(&self, lookups: &AlertAdapter, event: &Value) -> Result<Vec<String>, CoreError> {
        handle(lookups, &self.publisher, &self.ledger, &SystemClock, &self.settings, event).await
    }

    /// Deletes a received message from `queue` (it was handled).
    async fn delete(&self, queue: &str, message: &Message) -> anyhow::Result<()> {
        if let Some(handle) = message.receipt_handle() {
            self.clients
                .sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(handle)
                .send()
                .await
                .context("DeleteMessage")?;
        }
        Ok(())
    }

    /// The notifications delivered to the inbox queue subscribed to the enriched topic (SNS's
    /// envelope: Subject, Message — the `sqs` body —, MessageAttributes), removed from it.
    pub async fn inbox(&self) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let received = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.inbox_queue)
                .max_number_of_messages(10)
                .send()
                .await
                .context("ReceiveMessage")?;
            if received.messages().is_empty() {
                return Ok(out);
            }
            for m in received.messages() {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).context("an enriched alert")?);
                self.delete(&self.inbox_queue, m).await?;
            }
        }
    }
}

/// The display name CloudWatch puts in a notification's `Region`.
pub fn region_name(code: &str) -> String {
    match code {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "eu-west-1" => "EU (Ireland)",
        "eu-central-1" => "EU (Frankfurt)",
        other => other,
    }
    .to_string()
}

/// A CPU alarm on `instance_id` (average over 5 minutes above 90 %), acting on `topic`, and
/// the metric's last six 5-minute datapoints before `at_ms`: `values`, oldest first.
pub async fn cpu_alarm(clients: &Clients, name: &str, instance_id: &str, topic: &str, values: &[f64], at_ms: i64) -> anyhow::Result<()> {
    let dimension = Dimension::builder().name("InstanceId").value(instance_id).build();
    clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .dimensions(dimension.clone())
        .statistic(Statistic::Average)
        .period(300)
        .evaluation_periods(1)
        .datapoints_to_alarm(1)
        .threshold(90.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("missing")
        .alarm_actions(topic)
        .send()
        .await
        .context("PutMetricAlarm")?;
    let n = values.len() as i64;
    let data = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // Inside the i-th 5-minute period before the alarm.
            let at = at_ms - (n - 1 - i as i64) * 300_000 - 30_000;
            MetricDatum::builder()
                .metric_name("CPUUtilization")
                .dimensions(dimension.clone())
                .timestamp(DateTime::from_millis(at))
                .value(*v)
                .unit(opsflow_aws::aws_sdk_cloudwatch::types::StandardUnit::Percent)
                .build()
        })
        .collect::<Vec<_>>();
    clients
        .cloudwatch
        .put_metric_data()
        .namespace("AWS/EC2")
        .set_metric_data(Some(data))
        .send()
        .await
        .context("PutMetricData")?;
    Ok(())
}

/// The event CloudWatch's Lambda alarm action sends when the metric alarm `name` of `account`
/// in `region` goes from OK to ALARM at `at_ms` (no SNS or EventBridge envelope), for
/// `instance_id`'s CPU.
pub fn lambda_action_event(account: &str, region: &str, name: &str, instance_id: &str, at_ms: i64) -> Value {
    let at = cloudwatch_time(at_ms);
    json!({
        "source": "aws.cloudwatch",
        "alarmArn": format!("arn:aws:cloudwatch:{region}:{account}:alarm:{name}"),
        "accountId": account,
        "time": at,
        "region": region,
        "alarmData": {
            "alarmName": name,
            "state": {
                "value": "ALARM",
                "reason": "Threshold Crossed: 1 out of the last 1 datapoints [99.0] was greater than the threshold (90.0) (minimum 1 datapoint for OK -> ALARM transition).",
                "reasonData": json!({"version": "1.0", "statistic": "Average", "period": 300, "recentDatapoints": [99.0], "threshold": 90.0}).to_string(),
                "timestamp": at,
            },
            "previousState": {"value": "OK", "reason": "Threshold Crossed", "timestamp": cloudwatch_time(at_ms - 3_600_000)},
            "configuration": {
                "description": "CPU above 90%",
                "metrics": [{
                    "id": "m1",
                    "metricStat": {
                        "metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"InstanceId": instance_id}},
                        "period": 300,
                        "stat": "Average"
                    },
                    "returnData": true
                }]
            }
        }
    })
}
