//! The Lambda event turned into [`Alarm`]s: an SNS event, an SQS event whose messages are SNS
//! notifications (or raw alarm messages), an EventBridge "CloudWatch Alarm State Change", or
//! CloudWatch's own Lambda alarm action (`alarmData`, no envelope).
//!
//! Every envelope and payload is read with this module's own lenient serde types, never
//! `aws_lambda_events`': its `SnsEvent` requires the signature fields (an SNS record without
//! `Signature`, `SigningCertUrl`… refused the whole event), its `EventBridgeEvent` requires
//! `detail`, and its `sns::CloudWatchAlarmPayload` and `cloudwatch_alarms::*` reject real alarm
//! payloads (each type below says which feature breaks the crate's).
//!
//! Nothing fails here: whatever is not an alarm we understand becomes
//! [`Incoming::Unrecognized`] — the message as received and why — and is published for people
//! like an alert. An alert is never lost to an envelope we did not expect.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::alert::model::{Alarm, AlarmKind, Dimension, Metric, MetricQuery, MetricStat, Place, Suppression, Target};

/// The EventBridge `source` and `detail-type` of an alarm state change; the `source` of
/// CloudWatch's Lambda alarm action too.
const CLOUDWATCH_SOURCE: &str = "aws.cloudwatch";
const EVENTBRIDGE_DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// One message of a Lambda event: an alarm, or something that is not one (passed on, never dropped).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Alarm(Box<Alarm>),
    /// A message that is not an alarm state change opsflow understands.
    Unrecognized {
        /// `sns`, `sqs`, `eventbridge`, `lambda` or `unknown` (not an envelope we know).
        source: String,
        /// The SNS subject, the EventBridge detail-type, the record's event source.
        subject: Option<String>,
        /// The message as it came (the SNS `Message`, the SQS body, or the whole event/record).
        raw: String,
        /// Why it was not understood.
        why: String,
    },
}

fn unrecognized(source: &str, subject: Option<String>, raw: String, why: impl Into<String>) -> Incoming {
    Incoming::Unrecognized {
        source: source.to_string(),
        subject,
        raw,
        why: why.into(),
    }
}

/// Reads a Lambda event: SNS or SQS (one [`Incoming`] per record), EventBridge or CloudWatch's
/// Lambda alarm action (one [`Incoming`]). Never fails: anything else is one
/// [`Incoming::Unrecognized`] carrying the whole event.
pub fn incoming(event: &Value) -> Vec<Incoming> {
    if let Some(records) = event.get("Records") {
        let Some(records) = records.as_array() else {
            return vec![unrecognized(
                "unknown",
                None,
                event.to_string(),
                format!("Records is not a list: {EXPECTED}"),
            )];
        };
        return records.iter().map(from_record).collect();
    }
    if event.get("alarmData").is_some() {
        return vec![from_lambda_action(event)];
    }
    if event.get("detail-type").is_some() {
        return vec![from_eventbridge(event)];
    }
    vec![unrecognized("unknown", None, event.to_string(), EXPECTED)]
}

/// The envelopes [`incoming`] reads.
const EXPECTED: &str = "expected an SNS or SQS event (Records[].Sns, Records[].body), an EventBridge event \
                        (detail-type, detail) or CloudWatch's Lambda alarm action (alarmData)";

/// What the EC2 lookups are about: the `InstanceId` dimension (an EC2 id, `i-…`) of the
/// alarm's metric, else its `AutoScalingGroupName`. For metric math and anomaly detection, the
/// first query metric that has one. None for composite alarms and metrics of other resources
/// (RDS, load balancers…).
pub fn target(alarm: &Alarm) -> Option<Target> {
    target_and_place(alarm).map(|(t, _)| t)
}

/// [`target`] and where it lives: the account of the query that names it (a cross-account
/// metric math alarm reads metrics of other accounts) or else the alarm's, in the alarm's region
/// (an alarm watches metrics of its own region).
pub fn target_and_place(alarm: &Alarm) -> Option<(Target, Place)> {
    let metrics: Vec<(Option<&String>, &Metric)> = match &alarm.kind {
        AlarmKind::Metric { stat, .. } => vec![(None, &stat.metric)],
        AlarmKind::MetricMath { queries, .. } | AlarmKind::AnomalyDetection { queries, .. } => queries
            .iter()
            .filter_map(|q| q.metric_stat.as_ref().map(|s| (q.account_id.as_ref(), &s.metric)))
            .collect(),
        AlarmKind::Composite { .. } => return None,
    };
    let dimension = |name: &str| {
        metrics.iter().find_map(|(account, m)| {
            m.dimensions
                .iter()
                .find(|d| d.name == name && !d.value.is_empty())
                .map(|d| (d.value.clone(), *account))
        })
    };
    let (target, account) = dimension("InstanceId")
        .filter(|(id, _)| id.starts_with("i-"))
        .map(|(id, account)| (Target::Instance(id), account))
        .or_else(|| dimension("AutoScalingGroupName").map(|(name, account)| (Target::AutoScalingGroup(name), account)))?;
    let place = Place {
        account_id: account.filter(|a| !a.is_empty()).unwrap_or(&alarm.account_id).clone(),
        region: alarm.region.clone(),
    };
    Some((target, place))
}

// ---------------------------------------------------------------------------------------------
// Records: SNS (`Records[].Sns`) and SQS (`Records[].body`).

/// An SNS notification: `Records[].Sns` of an SNS Lambda event, or the body of an SQS message
/// delivered by an SNS subscription (not raw). Only `Message` is required: records seen without
/// the signature fields, `MessageAttributes` or `Subject` are still notifications.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsNotification {
    message: String,
    subject: Option<String>,
    topic_arn: Option<String>,
    timestamp: Option<String>,
}

fn from_record(record: &Value) -> Incoming {
    if let Some(sns) = record.get("Sns") {
        return from_sns_notification(sns, "sns");
    }
    let source = record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match record.get("body").and_then(Value::as_str) {
        Some(body) => from_sqs_body(body),
        None => unrecognized(
            "unknown",
            source,
            record.to_string(),
            "a record that is neither an SNS notification (Records[].Sns) nor an SQS message (Records[].body)",
        ),
    }
}

fn from_sns_notification(sns: &Value, source: &str) -> Incoming {
    match serde_json::from_value::<SnsNotification>(sns.clone()) {
        Ok(n) => {
            let published_ms = n.timestamp.as_deref().and_then(parse_time_ms);
            from_sns_message(&n.message, n.subject, n.topic_arn.as_deref(), published_ms, source)
        }
        Err(e) => {
            let subject = sns.get("Subject").and_then(Value::as_str).map(str::to_string);
            unrecognized(
                source,
                subject,
                sns.to_string(),
                format!("the SNS notification cannot be read: {e}"),
            )
        }
    }
}

/// An SQS message: an SNS notification (a subscription without raw delivery), or the alarm
/// message itself (raw delivery).
fn from_sqs_body(body: &str) -> Incoming {
    let json: Option<Value> = serde_json::from_str(body).ok();
    match json {
        Some(n) if n.get("Type").and_then(Value::as_str) == Some("Notification") && n.get("Message").is_some() => {
            from_sns_notification(&n, "sqs")
        }
        _ => from_sns_message(body, None, None, None, "sqs"),
    }
}

// ---------------------------------------------------------------------------------------------
// SNS: CloudWatch's alarm notification in the notification's `Message`.

/// The alarm notification CloudWatch publishes to SNS. Own type rather than
/// `sns::CloudWatchAlarmPayload`, whose `alarm_description: String` rejects the
/// `"AlarmDescription": null` of alarms without a description, whose `trigger` is required
/// (composite alarm notifications carry `AlarmRule` and `TriggeringChildren` instead), and
/// whose `old_state_value: String` is required too.
///
/// The suppression and evaluation fields are read under the names DescribeAlarms gives them
/// (`ActionsSuppressedBy`, `EvaluationState`…), the SNS message's convention for every other
/// field; `AlarmTags` is read as an object of keys to values or as a list of `Key`/`Value`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsAlarm {
    alarm_name: String,
    alarm_description: Option<String>,
    #[serde(rename = "AWSAccountId")]
    aws_account_id: String,
    new_state_value: String,
    new_state_reason: Option<String>,
    state_change_time: Option<String>,
    /// A display name: "EU (Ireland)".
    region: Option<String>,
    alarm_arn: Option<String>,
    old_state_value: Option<String>,
    trigger: Option<SnsTrigger>,
    /// Composite alarms only.
    alarm_rule: Option<String>,
    triggering_children: Option<Vec<SnsChild>>,
    actions_suppressed_by: Option<String>,
    actions_suppressed_reason: Option<String>,
    actions_suppressor: Option<String>,
    actions_suppressor_wait_period: Option<i64>,
    actions_suppressor_extension_period: Option<i64>,
    evaluation_state: Option<String>,
    alarm_tags: Option<Value>,
    alarm_tags_status: Option<String>,
}

/// `Trigger` of a metric alarm notification. Own type rather than
/// `sns::CloudWatchAlarmTrigger`, whose `threshold: f64` is required (anomaly detection alarms
/// have `ThresholdMetricId` and no `Threshold`), which has no `extended_statistic` (a p99 alarm
/// has `"StatisticType": "ExtendedStatistic"`, `"ExtendedStatistic": "p99"` and no
/// `Statistic`) nor `threshold_metric_id`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsTrigger {
    metric_name: Option<String>,
    namespace: Option<String>,
    statistic_type: Option<String>,
    statistic: Option<String>,
    extended_statistic: Option<String>,
    unit: Option<String>,
    dimensions: Option<Vec<SnsDimension>>,
    period: Option<i64>,
    evaluation_periods: Option<i64>,
    datapoints_to_alarm: Option<i64>,
    treat_missing_data: Option<String>,
    comparison_operator: Option<String>,
    threshold: Option<f64>,
    threshold_metric_id: Option<String>,
    metrics: Option<Vec<SnsQuery>>,
}

/// Trigger dimensions use lowercase keys: `{"value": "i-0abc", "name": "InstanceId"}`.
#[derive(Deserialize)]
struct SnsDimension {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsQuery {
    id: String,
    account_id: Option<String>,
    expression: Option<String>,
    label: Option<String>,
    metric_stat: Option<SnsMetricStat>,
    period: Option<i64>,
    return_data: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMetricStat {
    metric: SnsMetric,
    period: i64,
    stat: String,
    unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMetric {
    dimensions: Option<Vec<SnsDimension>>,
    metric_name: String,
    namespace: String,
}

/// A child alarm whose change triggered a composite alarm.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsChild {
    arn: String,
}

fn from_sns_message(message: &str, subject: Option<String>, topic_arn: Option<&str>, published_ms: Option<i64>, source: &str) -> Incoming {
    let not_alarm = |why: String| unrecognized(source, subject.clone(), message.to_string(), why);
    let json: Value = match serde_json::from_str(message) {
        Ok(json) => json,
        Err(_) => return not_alarm("the SNS message is not JSON, so not a CloudWatch alarm notification".into()),
    };
    let payload: SnsAlarm = match serde_json::from_value(json) {
        Ok(payload) => payload,
        Err(e) => return not_alarm(format!("the SNS message is JSON but not a CloudWatch alarm notification: {e}")),
    };
    match sns_alarm(payload, topic_arn, published_ms, source) {
        Ok(alarm) => Incoming::Alarm(Box::new(alarm)),
        Err(why) => not_alarm(why),
    }
}

fn sns_alarm(p: SnsAlarm, topic_arn: Option<&str>, published_ms: Option<i64>, source: &str) -> Result<Alarm, String> {
    let (mut datapoints_to_alarm, mut treat_missing_data) = (None, None);
    let kind = match (p.alarm_rule, p.trigger) {
        (Some(rule), _) => AlarmKind::Composite {
            rule,
            triggering_alarms: p.triggering_children.unwrap_or_default().into_iter().map(|c| c.arn).collect(),
        },
        (None, Some(mut trigger)) => {
            datapoints_to_alarm = trigger.datapoints_to_alarm.take();
            treat_missing_data = trigger.treat_missing_data.take().filter(|t| !t.is_empty());
            sns_kind(trigger)?
        }
        (None, None) => {
            return Err("the alarm notification has neither a Trigger (metric alarm) nor an AlarmRule (composite alarm)".into())
        }
    };
    let arn = p.alarm_arn.filter(|a| !a.is_empty());
    let region = arn
        .as_deref()
        .and_then(|a| arn_part(a, 3))
        .or_else(|| topic_arn.and_then(|t| arn_part(t, 3)))
        .ok_or("no region: neither AlarmArn nor the topic ARN names one")?;
    let changed_at_ms = p
        .state_change_time
        .as_deref()
        .and_then(parse_time_ms)
        .or(published_ms)
        .ok_or("no time: neither StateChangeTime nor the notification's Timestamp can be read")?;
    let actions_suppressed = p.actions_suppressed_by.filter(|b| !b.is_empty()).map(|by| Suppression {
        by,
        reason: p.actions_suppressed_reason.filter(|r| !r.is_empty()),
        suppressor: p.actions_suppressor.filter(|s| !s.is_empty()),
        wait_period_s: p.actions_suppressor_wait_period,
        extension_period_s: p.actions_suppressor_extension_period,
    });
    Ok(Alarm {
        name: p.alarm_name,
        description: p.alarm_description.filter(|d| !d.trim().is_empty()),
        arn,
        account_id: p.aws_account_id,
        region,
        region_name: p.region.filter(|r| !r.is_empty()),
        state: p.new_state_value,
        previous_state: p.old_state_value.filter(|s| !s.is_empty()),
        reason: p.new_state_reason.unwrap_or_default(),
        changed_at_ms,
        kind,
        source: source.into(),
        actions_suppressed,
        evaluation_state: p.evaluation_state.filter(|s| !s.is_empty()),
        datapoints_to_alarm,
        treat_missing_data,
        tags: tags(p.alarm_tags.as_ref()),
        tags_status: p.alarm_tags_status.filter(|s| !s.is_empty()),
    })
}

fn sns_kind(t: SnsTrigger) -> Result<AlarmKind, String> {
    let queries: Vec<MetricQuery> = t.metrics.unwrap_or_default().into_iter().map(sns_query).collect();
    if !queries.is_empty() {
        return Ok(math_kind(
            queries,
            t.threshold_metric_id,
            t.comparison_operator,
            t.threshold,
            t.evaluation_periods,
        ));
    }
    // A single metric: `Statistic` ("AVERAGE") or, for percentiles, `ExtendedStatistic` ("p99").
    let stat = match t.statistic_type.as_deref() {
        Some("ExtendedStatistic") => t.extended_statistic.or(t.statistic),
        _ => t.statistic.or(t.extended_statistic),
    };
    let (Some(name), Some(namespace), Some(stat), Some(period_s)) = (t.metric_name, t.namespace, stat, t.period) else {
        return Err("the alarm Trigger has no Metrics and lacks MetricName, Namespace, Statistic or Period".into());
    };
    Ok(AlarmKind::Metric {
        stat: MetricStat {
            metric: Metric {
                namespace,
                name,
                dimensions: sns_dimensions(t.dimensions),
            },
            period_s,
            stat: statistic_name(&stat),
            unit: t.unit,
        },
        comparison: t.comparison_operator,
        threshold: t.threshold,
        evaluation_periods: t.evaluation_periods,
    })
}

fn sns_query(q: SnsQuery) -> MetricQuery {
    MetricQuery {
        id: q.id,
        account_id: q.account_id.filter(|a| !a.is_empty()),
        expression: q.expression,
        metric_stat: q.metric_stat.map(|s| MetricStat {
            metric: Metric {
                namespace: s.metric.namespace,
                name: s.metric.metric_name,
                dimensions: sns_dimensions(s.metric.dimensions),
            },
            period_s: s.period,
            stat: statistic_name(&s.stat),
            unit: s.unit,
        }),
        label: q.label,
        // GetMetricData's default.
        return_data: q.return_data.unwrap_or(true),
        period_s: q.period,
    }
}

fn sns_dimensions(dimensions: Option<Vec<SnsDimension>>) -> Vec<Dimension> {
    dimensions
        .unwrap_or_default()
        .into_iter()
        .map(|d| Dimension {
            name: d.name,
            value: d.value,
        })
        .collect()
}

/// SNS notifications spell statistics in capitals ("AVERAGE"); the API wants "Average".
fn statistic_name(stat: &str) -> String {
    match stat {
        "AVERAGE" => "Average",
        "SUM" => "Sum",
        "MINIMUM" => "Minimum",
        "MAXIMUM" => "Maximum",
        "SAMPLE_COUNT" => "SampleCount",
        other => other,
    }
    .to_string()
}

/// The alarm's tags as the notification carries them: an object of keys to values, or a list
/// of `{"Key": …, "Value": …}` (either case). Keys starting with `aws:` are AWS's, never
/// propagated by CloudWatch, and dropped if present; a value that is not a string is kept as
/// its JSON text.
fn tags(value: Option<&Value>) -> BTreeMap<String, String> {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let pairs: Vec<(String, String)> = match value {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|t| {
                let key = t.get("Key").or_else(|| t.get("key"))?.as_str()?;
                let value = t.get("Value").or_else(|| t.get("value")).map(text).unwrap_or_default();
                Some((key.to_string(), value))
            })
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter(|(k, _)| !k.is_empty() && !k.to_ascii_lowercase().starts_with("aws:"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// EventBridge ("CloudWatch Alarm State Change") and CloudWatch's Lambda alarm action: the same
// alarm data (EventBridge's `detail`, the action's `alarmData`) in different envelopes.

/// `detail` of a "CloudWatch Alarm State Change" event, `alarmData` of the Lambda action. Own
/// type rather than `cloudwatch_alarms::CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration |
/// CloudWatchCompositeAlarmConfiguration>`, which cannot read it (see the types below).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbDetail {
    alarm_name: String,
    state: EbState,
    previous_state: Option<EbState>,
    #[serde(default)]
    configuration: EbConfiguration,
    alarm_tags: Option<Value>,
    alarm_tags_status: Option<String>,
}

/// `state`, `previousState`. `reasonData` is a JSON string: the metric evaluation (`threshold`,
/// `recentDatapoints`…) or, for composite alarms, `triggeringAlarms`. The crate's
/// `CloudWatchAlarmStateReasonDataMetric` has `period: u16` (86400-second periods overflow) and a
/// required `threshold: f64` (anomaly detection reason data has threshold bands instead);
/// this module reads only what it uses from it, as untyped JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbState {
    value: String,
    reason: Option<String>,
    reason_data: Option<String>,
    timestamp: Option<String>,
    /// A composite alarm's suppressed actions: `WaitPeriod`, `ExtensionPeriod`, `Alarm`.
    actions_suppressed_by: Option<String>,
    actions_suppressed_reason: Option<String>,
    /// `PARTIAL_DATA` and the like.
    evaluation_state: Option<String>,
}

/// `configuration` of a metric or composite alarm. The crate's
/// `CloudWatchCompositeAlarmConfiguration` requires `actionsSuppressor` and its two `u16`
/// periods (absent when the composite alarm has no actions suppressor), and its
/// `CloudWatchMetricAlarmConfiguration` has no room for `alarmRule`, `thresholdMetricId`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EbConfiguration {
    description: Option<String>,
    metrics: Option<Vec<EbQuery>>,
    alarm_rule: Option<String>,
    comparison_operator: Option<String>,
    threshold: Option<f64>,
    evaluation_periods: Option<i64>,
    datapoints_to_alarm: Option<i64>,
    treat_missing_data: Option<String>,
    threshold_metric_id: Option<String>,
    actions_suppressor: Option<String>,
    actions_suppressor_wait_period: Option<i64>,
    actions_suppressor_extension_period: Option<i64>,
}

/// One of `configuration.metrics`. The crate's `CloudWatchMetricDefinition` requires
/// `metricStat` (metric math expressions have `expression` and no `metricStat`) and has no
/// `expression` nor `label`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbQuery {
    id: String,
    account_id: Option<String>,
    expression: Option<String>,
    label: Option<String>,
    metric_stat: Option<EbMetricStat>,
    return_data: Option<bool>,
    period: Option<i64>,
}

/// The crate's `CloudWatchMetricStatDefinition` has `period: u16`: an 86400-second (daily)
/// period does not fit.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbMetricStat {
    metric: EbMetric,
    period: i64,
    stat: String,
    unit: Option<String>,
}

/// Dimensions are an object here (`{"InstanceId": "i-0abc"}`), kept in their order.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbMetric {
    namespace: Option<String>,
    name: String,
    #[serde(default)]
    dimensions: Map<String, Value>,
}

/// The envelope around the alarm data: where the alarm is and when it changed, if the data
/// itself does not say.
struct Envelope {
    arn: Option<String>,
    region: Option<String>,
    account: Option<String>,
    time_ms: Option<i64>,
    source: &'static str,
}

fn text_field(event: &Value, key: &str) -> Option<String> {
    event.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

fn from_eventbridge(event: &Value) -> Incoming {
    let detail_type = text_field(event, "detail-type");
    let source = text_field(event, "source").unwrap_or_default();
    let not_alarm = |why: String| unrecognized("eventbridge", detail_type.clone(), event.to_string(), why);
    if source != CLOUDWATCH_SOURCE || detail_type.as_deref() != Some(EVENTBRIDGE_DETAIL_TYPE) {
        return not_alarm(format!(
            "EventBridge event \"{}\" from {source} is not a \"{EVENTBRIDGE_DETAIL_TYPE}\" from {CLOUDWATCH_SOURCE}",
            detail_type.as_deref().unwrap_or_default()
        ));
    }
    let Some(detail) = event.get("detail") else {
        return not_alarm("the alarm state change event has no detail".into());
    };
    let detail: EbDetail = match serde_json::from_value(detail.clone()) {
        Ok(detail) => detail,
        Err(e) => return not_alarm(format!("the alarm state change detail cannot be read: {e}")),
    };
    let envelope = Envelope {
        arn: event
            .get("resources")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().filter_map(Value::as_str).find(|r| r.contains(":alarm:")))
            .map(str::to_string),
        region: text_field(event, "region"),
        account: text_field(event, "account"),
        time_ms: text_field(event, "time").as_deref().and_then(parse_time_ms),
        source: "eventbridge",
    };
    match detail_alarm(detail, envelope) {
        Ok(alarm) => Incoming::Alarm(Box::new(alarm)),
        Err(why) => not_alarm(why),
    }
}

/// CloudWatch's Lambda alarm action: `source: "aws.cloudwatch"`, `alarmArn`, `accountId`,
/// `region`, `time` and `alarmData` (EventBridge's `detail`), with no SNS or EventBridge envelope.
fn from_lambda_action(event: &Value) -> Incoming {
    let subject =
        text_field(event, "alarmArn").or_else(|| event.pointer("/alarmData/alarmName").and_then(Value::as_str).map(str::to_string));
    let not_alarm = |why: String| unrecognized("lambda", subject.clone(), event.to_string(), why);
    let source = text_field(event, "source").unwrap_or_default();
    if source != CLOUDWATCH_SOURCE {
        return not_alarm(format!("an event with alarmData from {source:?}, not from {CLOUDWATCH_SOURCE}"));
    }
    let detail: EbDetail = match serde_json::from_value(event["alarmData"].clone()) {
        Ok(detail) => detail,
        Err(e) => return not_alarm(format!("the Lambda alarm action's alarmData cannot be read: {e}")),
    };
    let envelope = Envelope {
        arn: text_field(event, "alarmArn").filter(|a| a.contains(":alarm:")),
        region: text_field(event, "region"),
        account: text_field(event, "accountId"),
        time_ms: text_field(event, "time").as_deref().and_then(parse_time_ms),
        source: "lambda",
    };
    match detail_alarm(detail, envelope) {
        Ok(alarm) => Incoming::Alarm(Box::new(alarm)),
        Err(why) => not_alarm(why),
    }
}

fn detail_alarm(d: EbDetail, envelope: Envelope) -> Result<Alarm, String> {
    let reason_data: Option<Value> = d.state.reason_data.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let c = d.configuration;
    let kind = if let Some(rule) = c.alarm_rule {
        let triggering_alarms = reason_data
            .as_ref()
            .and_then(|r| r.get("triggeringAlarms"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|a| a.get("arn")?.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        AlarmKind::Composite { rule, triggering_alarms }
    } else {
        let queries: Vec<MetricQuery> = c.metrics.unwrap_or_default().into_iter().map(eb_query).collect();
        // The state change event carries no threshold in `configuration`; the evaluation does.
        let threshold = c
            .threshold
            .or_else(|| reason_data.as_ref().and_then(|r| r.get("threshold")).and_then(Value::as_f64));
        match queries.as_slice() {
            [] => return Err("the alarm configuration has neither metrics nor an alarmRule".into()),
            [only] if only.expression.is_none() && c.threshold_metric_id.is_none() => AlarmKind::Metric {
                stat: only
                    .metric_stat
                    .clone()
                    .ok_or("the alarm's only metric has neither metricStat nor expression")?,
                comparison: c.comparison_operator,
                threshold,
                evaluation_periods: c.evaluation_periods,
            },
            _ => math_kind(
                queries,
                c.threshold_metric_id,
                c.comparison_operator,
                threshold,
                c.evaluation_periods,
            ),
        }
    };
    let arn = envelope.arn;
    let region = arn
        .as_deref()
        .and_then(|a| arn_part(a, 3))
        .or(envelope.region)
        .ok_or("no region: neither the alarm ARN nor the event's region")?;
    let account_id = envelope
        .account
        .or_else(|| arn.as_deref().and_then(|a| arn_part(a, 4)))
        .ok_or("no account: neither the event's account nor the alarm ARN")?;
    let changed_at_ms = d
        .state
        .timestamp
        .as_deref()
        .and_then(parse_time_ms)
        .or(envelope.time_ms)
        .ok_or("no time: neither state.timestamp nor the event's time can be read")?;
    let actions_suppressed = d.state.actions_suppressed_by.filter(|b| !b.is_empty()).map(|by| Suppression {
        by,
        reason: d.state.actions_suppressed_reason.filter(|r| !r.is_empty()),
        suppressor: c.actions_suppressor.filter(|s| !s.is_empty()),
        wait_period_s: c.actions_suppressor_wait_period,
        extension_period_s: c.actions_suppressor_extension_period,
    });
    Ok(Alarm {
        name: d.alarm_name,
        description: c.description.filter(|s| !s.trim().is_empty()),
        arn,
        account_id,
        region,
        region_name: None,
        state: d.state.value,
        previous_state: d.previous_state.map(|s| s.value),
        reason: d.state.reason.unwrap_or_default(),
        changed_at_ms,
        kind,
        source: envelope.source.into(),
        actions_suppressed,
        evaluation_state: d.state.evaluation_state.filter(|s| !s.is_empty()),
        datapoints_to_alarm: c.datapoints_to_alarm,
        treat_missing_data: c.treat_missing_data.filter(|t| !t.is_empty()),
        tags: tags(d.alarm_tags.as_ref()),
        tags_status: d.alarm_tags_status.filter(|s| !s.is_empty()),
    })
}

fn eb_query(q: EbQuery) -> MetricQuery {
    MetricQuery {
        id: q.id,
        account_id: q.account_id.filter(|a| !a.is_empty()),
        expression: q.expression,
        metric_stat: q.metric_stat.map(|s| MetricStat {
            metric: Metric {
                namespace: s.metric.namespace.unwrap_or_default(),
                name: s.metric.name,
                dimensions: s
                    .metric
                    .dimensions
                    .into_iter()
                    .map(|(name, value)| Dimension {
                        name,
                        value: value.as_str().map_or_else(|| value.to_string(), str::to_string),
                    })
                    .collect(),
            },
            period_s: s.period,
            stat: s.stat,
            unit: s.unit,
        }),
        label: q.label,
        return_data: q.return_data.unwrap_or(true),
        period_s: q.period,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared.

/// Metric math, or anomaly detection when a threshold metric id is given or a query is an
/// `ANOMALY_DETECTION_BAND` (the EventBridge event does not name the threshold metric).
fn math_kind(
    queries: Vec<MetricQuery>,
    threshold_metric_id: Option<String>,
    comparison: Option<String>,
    threshold: Option<f64>,
    evaluation_periods: Option<i64>,
) -> AlarmKind {
    let band = threshold_metric_id.or_else(|| {
        queries
            .iter()
            .find(|q| {
                q.expression
                    .as_deref()
                    .is_some_and(|e| e.to_ascii_uppercase().contains("ANOMALY_DETECTION_BAND"))
            })
            .map(|q| q.id.clone())
    });
    match band {
        Some(threshold_metric_id) => AlarmKind::AnomalyDetection {
            queries,
            threshold_metric_id,
            comparison,
            evaluation_periods,
        },
        None => AlarmKind::MetricMath {
            queries,
            comparison,
            threshold,
            evaluation_periods,
        },
    }
}

/// Part `index` of an ARN (`arn:partition:service:region:account:resource`), when not empty.
fn arn_part(arn: &str, index: usize) -> Option<String> {
    if !arn.starts_with("arn:") {
        return None;
    }
    arn.split(':').nth(index).filter(|p| !p.is_empty()).map(str::to_string)
}

/// CloudWatch's times, "2026-11-23T03:01:12.345+0000" (offset without colon), or RFC 3339.
fn parse_time_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// The one alarm of a one-message event.
    fn alarm_of(event_json: &str) -> Alarm {
        match incoming(&fixture(event_json)).as_slice() {
            [Incoming::Alarm(alarm)] => (**alarm).clone(),
            other => panic!("expected one alarm, got {other:?}"),
        }
    }

    fn dims(pairs: &[(&str, &str)]) -> Vec<Dimension> {
        pairs
            .iter()
            .map(|(n, v)| Dimension {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn ms(text: &str) -> i64 {
        parse_time_ms(text).unwrap()
    }

    #[test]
    fn sns_ec2_metric_alarm_with_null_description() {
        let a = alarm_of(include_str!("fixtures/sns-ec2-cpu.json"));
        assert_eq!(a.name, "cpu-high-web-7");
        assert_eq!(a.description, None);
        assert_eq!(
            a.arn.as_deref(),
            Some("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu-high-web-7")
        );
        assert_eq!(a.account_id, "123456789012");
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.region_name.as_deref(), Some("EU (Ireland)"));
        assert_eq!(a.state, "ALARM");
        assert_eq!(a.previous_state.as_deref(), Some("OK"));
        assert!(a.reason.starts_with("Threshold Crossed: 1 out of the last 1 datapoints [99.0"));
        assert_eq!(a.changed_at_ms, 1_795_402_872_345);
        assert_eq!(a.source, "sns");
        assert_eq!(
            a.kind,
            AlarmKind::Metric {
                stat: MetricStat {
                    metric: Metric {
                        namespace: "AWS/EC2".into(),
                        name: "CPUUtilization".into(),
                        dimensions: dims(&[("InstanceId", "i-0abc1234def567890")]),
                    },
                    period_s: 300,
                    stat: "Average".into(),
                    unit: None,
                },
                comparison: Some("GreaterThanThreshold".into()),
                threshold: Some(90.0),
                evaluation_periods: Some(1),
            }
        );
        assert_eq!(target(&a), Some(Target::Instance("i-0abc1234def567890".into())));
    }

    #[test]
    fn sns_metric_alarm_on_an_auto_scaling_group() {
        let a = alarm_of(include_str!("fixtures/sns-asg-cpu.json"));
        assert_eq!(a.name, "web-asg-cpu-credits-low");
        assert_eq!(a.description.as_deref(), Some("CPU credit balance of the web group is low"));
        assert_eq!(a.region, "us-west-2");
        assert_eq!(a.region_name.as_deref(), Some("US West (Oregon)"));
        assert_eq!(a.previous_state.as_deref(), Some("INSUFFICIENT_DATA"));
        let AlarmKind::Metric {
            stat,
            comparison,
            threshold,
            evaluation_periods,
        } = &a.kind
        else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(stat.metric.name, "CPUCreditBalance");
        assert_eq!(stat.metric.dimensions, dims(&[("AutoScalingGroupName", "web-asg")]));
        assert_eq!((stat.period_s, stat.stat.as_str()), (3600, "Average"));
        assert_eq!(comparison.as_deref(), Some("LessThanOrEqualToThreshold"));
        assert_eq!((*threshold, *evaluation_periods), (Some(10.0), Some(2)));
        assert_eq!(target(&a), Some(Target::AutoScalingGroup("web-asg".into())));
    }

    #[test]
    fn sns_metric_math_alarm() {
        let a = alarm_of(include_str!("fixtures/sns-metric-math.json"));
        assert_eq!(a.name, "network-total-high-web-7");
        assert_eq!(a.changed_at_ms, ms("2026-11-23T03:10:05.120+0000"));
        let AlarmKind::MetricMath {
            queries,
            comparison,
            threshold,
            evaluation_periods,
        } = &a.kind
        else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(queries.len(), 3);
        assert_eq!(queries[0].id, "e1");
        assert_eq!(queries[0].expression.as_deref(), Some("m1+m2"));
        assert_eq!(queries[0].label.as_deref(), Some("Total network traffic"));
        assert!(queries[0].return_data && queries[0].metric_stat.is_none());
        let m2 = queries[2].metric_stat.as_ref().unwrap();
        assert_eq!((m2.metric.namespace.as_str(), m2.metric.name.as_str()), ("AWS/EC2", "NetworkOut"));
        assert_eq!((m2.period_s, m2.stat.as_str()), (300, "Maximum"));
        assert!(!queries[2].return_data);
        assert_eq!(comparison.as_deref(), Some("GreaterThanThreshold"));
        assert_eq!((*threshold, *evaluation_periods), (Some(500_000_000.0), Some(3)));
        assert_eq!(target(&a), Some(Target::Instance("i-0abc1234def567890".into())));
    }

    #[test]
    fn sns_anomaly_detection_alarm() {
        let a = alarm_of(include_str!("fixtures/sns-anomaly.json"));
        assert_eq!(a.name, "cpu-anomaly-web-7");
        assert_eq!(a.state, "ALARM");
        let AlarmKind::AnomalyDetection {
            queries,
            threshold_metric_id,
            comparison,
            evaluation_periods,
        } = &a.kind
        else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(threshold_metric_id, "ad1");
        assert_eq!(comparison.as_deref(), Some("GreaterThanUpperThreshold"));
        assert_eq!(*evaluation_periods, Some(3));
        let band = queries.iter().find(|q| q.id == "ad1").unwrap();
        assert_eq!(band.expression.as_deref(), Some("ANOMALY_DETECTION_BAND(m1, 2)"));
        assert_eq!(target(&a), Some(Target::Instance("i-0abc1234def567890".into())));
    }

    #[test]
    fn sns_composite_alarm() {
        let a = alarm_of(include_str!("fixtures/sns-composite.json"));
        assert_eq!(a.name, "web-tier-unhealthy");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.region_name.as_deref(), Some("US East (N. Virginia)"));
        assert_eq!(
            a.kind,
            AlarmKind::Composite {
                rule: "ALARM(\"cpu-high-web-7\") OR ALARM(\"web-5xx-high\")".into(),
                triggering_alarms: vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu-high-web-7".into()],
            }
        );
        assert_eq!(target(&a), None);
    }

    #[test]
    fn sns_rds_alarm_has_no_ec2_target() {
        let a = alarm_of(include_str!("fixtures/sns-rds.json"));
        assert_eq!(a.name, "orders-db-free-storage-low");
        let AlarmKind::Metric { stat, threshold, .. } = &a.kind else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(
            (stat.metric.namespace.as_str(), stat.metric.name.as_str()),
            ("AWS/RDS", "FreeStorageSpace")
        );
        assert_eq!(stat.metric.dimensions, dims(&[("DBInstanceIdentifier", "orders-db")]));
        assert_eq!(stat.stat, "Minimum");
        assert_eq!(stat.unit.as_deref(), Some("Bytes"));
        assert_eq!(*threshold, Some(5_368_709_120.0));
        assert_eq!(target(&a), None);
    }

    #[test]
    fn sns_alb_p99_alarm_keeps_the_extended_statistic() {
        let a = alarm_of(include_str!("fixtures/sns-alb-p99.json"));
        assert_eq!(a.name, "checkout-alb-latency-p99");
        let AlarmKind::Metric { stat, threshold, .. } = &a.kind else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(stat.metric.namespace, "AWS/ApplicationELB");
        assert_eq!(stat.stat, "p99");
        assert_eq!(
            stat.metric.dimensions,
            dims(&[
                ("TargetGroup", "targetgroup/checkout-tg/6d0ecf831eec9f09"),
                ("LoadBalancer", "app/checkout-alb/50dc6c495c0c9188"),
            ])
        );
        assert_eq!(*threshold, Some(1.5));
        assert_eq!(target(&a), None);
    }

    #[test]
    fn sns_message_that_is_not_an_alarm_is_passed_on() {
        let event = fixture(include_str!("fixtures/sns-not-an-alarm.json"));
        let out = incoming(&event);
        let [Incoming::Unrecognized { source, subject, raw, why }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(source, "sns");
        assert_eq!(
            subject.as_deref(),
            Some("AWS Budgets: monthly-dev has exceeded your alert threshold")
        );
        assert!(raw.starts_with("AWS Budget Notification November 23, 2026"));
        assert!(why.contains("not JSON"), "{why}");
    }

    #[test]
    fn sns_json_message_that_is_not_an_alarm_says_what_is_missing() {
        let mut event = fixture(include_str!("fixtures/sns-not-an-alarm.json"));
        event["Records"][0]["Sns"]["Message"] = json!(r#"{"hello": "world"}"#);
        let out = incoming(&event);
        let [Incoming::Unrecognized { why, raw, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(why.contains("AlarmName"), "{why}");
        assert_eq!(raw, r#"{"hello": "world"}"#);
    }

    #[test]
    fn each_sns_record_is_one_message() {
        let alarm = fixture(include_str!("fixtures/sns-ec2-cpu.json"));
        let other = fixture(include_str!("fixtures/sns-not-an-alarm.json"));
        let event = json!({"Records": [alarm["Records"][0], other["Records"][0]]});
        let out = incoming(&event);
        assert!(
            matches!(out.as_slice(), [Incoming::Alarm(_), Incoming::Unrecognized { .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn eventbridge_metric_alarm() {
        let a = alarm_of(include_str!("fixtures/eventbridge-metric.json"));
        assert_eq!(a.name, "ServerCpuTooHigh");
        assert_eq!(
            a.description.as_deref(),
            Some("Goes into alarm when server CPU utilization is too high!")
        );
        assert_eq!(
            a.arn.as_deref(),
            Some("arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh")
        );
        assert_eq!((a.account_id.as_str(), a.region.as_str()), ("123456789012", "us-east-1"));
        assert_eq!(a.region_name, None);
        assert_eq!((a.state.as_str(), a.previous_state.as_deref()), ("ALARM", Some("OK")));
        assert!(a.reason.contains("[99.50160229693434 (02/10/19 16:59:00)]"));
        assert_eq!(a.changed_at_ms, ms("2019-10-02T17:04:40.989+0000"));
        assert_eq!(a.source, "eventbridge");
        assert_eq!(
            a.kind,
            AlarmKind::Metric {
                stat: MetricStat {
                    metric: Metric {
                        namespace: "AWS/EC2".into(),
                        name: "CPUUtilization".into(),
                        dimensions: dims(&[("InstanceId", "i-12345678901234567")]),
                    },
                    period_s: 300,
                    stat: "Average".into(),
                    unit: None,
                },
                comparison: None,
                threshold: Some(50.0),
                evaluation_periods: None,
            }
        );
        assert_eq!(target(&a), Some(Target::Instance("i-12345678901234567".into())));
    }

    #[test]
    fn eventbridge_metric_math_alarm() {
        let a = alarm_of(include_str!("fixtures/eventbridge-metric-math.json"));
        assert_eq!(a.name, "TotalNetworkTrafficTooHigh");
        assert_eq!(a.previous_state.as_deref(), Some("INSUFFICIENT_DATA"));
        let AlarmKind::MetricMath { queries, threshold, .. } = &a.kind else {
            panic!("{:?}", a.kind)
        };
        let ids: Vec<&str> = queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["e1", "m1", "m2"]);
        assert_eq!(queries[0].expression.as_deref(), Some("SUM(METRICS())"));
        assert_eq!(queries[1].metric_stat.as_ref().unwrap().metric.name, "NetworkIn");
        assert_eq!(*threshold, Some(10000.0));
        assert_eq!(target(&a), Some(Target::Instance("i-12345678901234567".into())));
    }

    #[test]
    fn eventbridge_daily_period_does_not_overflow() {
        let mut event = fixture(include_str!("fixtures/eventbridge-metric-math.json"));
        event["detail"]["configuration"]["metrics"][1]["metricStat"]["period"] = json!(86400);
        let a = alarm_of(&event.to_string());
        let AlarmKind::MetricMath { queries, .. } = &a.kind else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(queries[1].metric_stat.as_ref().unwrap().period_s, 86400);
    }

    #[test]
    fn eventbridge_anomaly_detection_alarm_is_found_by_its_band() {
        let a = alarm_of(include_str!("fixtures/eventbridge-anomaly.json"));
        assert_eq!(a.name, "EC2 CPU Utilization Anomaly");
        let AlarmKind::AnomalyDetection {
            threshold_metric_id,
            queries,
            ..
        } = &a.kind
        else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(threshold_metric_id, "ad1");
        assert_eq!(queries.len(), 2);
        assert_eq!(target(&a), Some(Target::Instance("i-12345678901234567".into())));
    }

    #[test]
    fn eventbridge_composite_alarm_without_suppressor() {
        let a = alarm_of(include_str!("fixtures/eventbridge-composite.json"));
        assert_eq!(a.name, "ServiceAggregatedAlarm");
        assert_eq!(a.state, "ALARM");
        assert_eq!(a.changed_at_ms, ms("2022-07-22T15:57:45.394+0000"));
        assert_eq!(
            a.kind,
            AlarmKind::Composite {
                rule: "ALARM(ServerCpuTooHigh) OR ALARM(TotalNetworkTrafficTooHigh)".into(),
                triggering_alarms: vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh".into()],
            }
        );
        assert_eq!(target(&a), None);
    }

    #[test]
    fn eventbridge_event_of_another_kind_is_passed_on() {
        let event = json!({
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2026-11-23T03:01:12Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc1234def567890"],
            "detail": {"instance-id": "i-0abc1234def567890", "state": "stopped"}
        });
        let out = incoming(&event);
        let [Incoming::Unrecognized { source, subject, raw, why }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(source, "eventbridge");
        assert_eq!(subject.as_deref(), Some("EC2 Instance State-change Notification"));
        assert!(raw.contains("i-0abc1234def567890"));
        assert!(why.contains("CloudWatch Alarm State Change"), "{why}");
    }

    #[test]
    fn events_of_no_known_envelope_are_passed_on_whole() {
        for event in [json!({"hello": "world"}), json!("ALARM"), json!({"Records": "none"})] {
            let out = incoming(&event);
            let [Incoming::Unrecognized { source, raw, why, .. }] = out.as_slice() else {
                panic!("{out:?}")
            };
            assert_eq!(source, "unknown", "{event}");
            assert_eq!(raw, &event.to_string());
            assert!(
                why.contains("Records") && why.contains("detail-type") && why.contains("alarmData"),
                "{why}"
            );
        }
        let out = incoming(&json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": "e30="}}]}));
        let [Incoming::Unrecognized { source, subject, why, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((source.as_str(), subject.as_deref()), ("unknown", Some("aws:kinesis")));
        assert!(why.contains("neither an SNS notification"), "{why}");
    }

    // --- CloudWatch's Lambda alarm action: alarmData, no envelope (issue 16, defect 1).

    #[test]
    fn lambda_action_metric_alarm_is_an_alarm_in_its_own_region() {
        let a = alarm_of(include_str!("fixtures/lambda-metric.json"));
        assert_eq!(a.name, "api-cpu-high");
        assert_eq!(a.source, "lambda");
        assert_eq!(
            a.arn.as_deref(),
            Some("arn:aws:cloudwatch:ap-northeast-2:123456789012:alarm:api-cpu-high")
        );
        assert_eq!((a.account_id.as_str(), a.region.as_str()), ("123456789012", "ap-northeast-2"));
        assert_eq!(a.description.as_deref(), Some("API node CPU above 90% for 3 of 5 periods"));
        assert_eq!((a.state.as_str(), a.previous_state.as_deref()), ("ALARM", Some("OK")));
        assert_eq!(a.changed_at_ms, ms("2026-11-23T05:40:12.518+0000"));
        assert!(a.reason.starts_with("Threshold Crossed: 3 out of the last 5 datapoints"));
        let AlarmKind::Metric { stat, threshold, .. } = &a.kind else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(
            (stat.metric.name.as_str(), stat.period_s, stat.stat.as_str()),
            ("CPUUtilization", 300, "Average")
        );
        // The threshold comes from the evaluation (reasonData), as in EventBridge events.
        assert_eq!(*threshold, Some(90.0));
        assert_eq!(
            target_and_place(&a),
            Some((
                Target::Instance("i-0ab12cd34ef56a789".into()),
                Place {
                    account_id: "123456789012".into(),
                    region: "ap-northeast-2".into()
                }
            ))
        );
        // The alarm's tags (keys with spaces too), and their status.
        assert_eq!(a.tags.get("team").map(String::as_str), Some("payments"));
        assert_eq!(a.tags.get("cost center").map(String::as_str), Some("cc-1234"));
        assert_eq!(a.tags_status.as_deref(), Some("SUCCESS"));
        assert_eq!((a.actions_suppressed.as_ref(), a.evaluation_state.as_ref()), (None, None));
    }

    #[test]
    fn lambda_action_composite_alarm_with_suppressed_actions() {
        let a = alarm_of(include_str!("fixtures/lambda-composite.json"));
        assert_eq!((a.name.as_str(), a.account_id.as_str()), ("checkout-degraded", "111122223333"));
        assert_eq!(a.source, "lambda");
        assert_eq!(
            a.kind,
            AlarmKind::Composite {
                rule: "ALARM(\"checkout-5xx-high\") OR ALARM(\"checkout-latency-p99\")".into(),
                triggering_alarms: vec!["arn:aws:cloudwatch:us-east-1:111122223333:alarm:checkout-5xx-high".into()],
            }
        );
        assert_eq!(
            a.actions_suppressed,
            Some(Suppression {
                by: "WaitPeriod".into(),
                reason: Some("Actions suppressed by WaitPeriod".into()),
                suppressor: Some("checkout-deploy-window".into()),
                wait_period_s: Some(120),
                extension_period_s: Some(180),
            })
        );
        assert_eq!(target(&a), None);
    }

    #[test]
    fn lambda_action_metric_math_across_accounts_looks_in_the_metrics_account() {
        let a = alarm_of(include_str!("fixtures/lambda-metric-math-cross-account.json"));
        assert_eq!((a.account_id.as_str(), a.region.as_str()), ("111122223333", "eu-central-1"));
        let AlarmKind::MetricMath { queries, threshold, .. } = &a.kind else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(queries.len(), 3);
        assert_eq!(queries[0].account_id, None);
        assert_eq!(queries[1].account_id.as_deref(), Some("444455556666"));
        assert_eq!(*threshold, Some(2.0e9));
        // The instance is the workload account's, in the alarm's region.
        assert_eq!(
            target_and_place(&a),
            Some((
                Target::Instance("i-0f1e2d3c4b5a69788".into()),
                Place {
                    account_id: "444455556666".into(),
                    region: "eu-central-1".into()
                }
            ))
        );
    }

    #[test]
    fn lambda_action_that_cannot_be_read_is_passed_on() {
        let mut event = fixture(include_str!("fixtures/lambda-metric.json"));
        event["alarmData"]["state"] = json!("ALARM");
        let out = incoming(&event);
        let [Incoming::Unrecognized { source, subject, raw, why }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(source, "lambda");
        assert_eq!(
            subject.as_deref(),
            Some("arn:aws:cloudwatch:ap-northeast-2:123456789012:alarm:api-cpu-high")
        );
        assert!(raw.contains("api-cpu-high"));
        assert!(why.contains("alarmData"), "{why}");
    }

    // --- Suppression, evaluation state, DatapointsToAlarm, TreatMissingData, tags.

    #[test]
    fn eventbridge_composite_alarm_suppressed_by_its_suppressor_alarm() {
        let a = alarm_of(include_str!("fixtures/eventbridge-composite-suppressed.json"));
        let s = a.actions_suppressed.as_ref().expect("suppressed");
        assert_eq!(s.by, "Alarm");
        assert_eq!(s.reason.as_deref(), Some("Alarm action suppressed by web-maintenance-window"));
        assert_eq!(s.suppressor.as_deref(), Some("web-maintenance-window"));
        assert_eq!((s.wait_period_s, s.extension_period_s), (Some(120), Some(180)));
        assert_eq!(a.tags.len(), 2);
        // The unsuppressed composite fixture stays unsuppressed.
        assert_eq!(
            alarm_of(include_str!("fixtures/eventbridge-composite.json")).actions_suppressed,
            None
        );
    }

    #[test]
    fn eventbridge_partial_data_is_kept() {
        let a = alarm_of(include_str!("fixtures/eventbridge-partial-data.json"));
        assert_eq!(a.evaluation_state.as_deref(), Some("PARTIAL_DATA"));
        assert_eq!(a.previous_state.as_deref(), Some("INSUFFICIENT_DATA"));
    }

    #[test]
    fn sns_trigger_keeps_datapoints_to_alarm_and_missing_data_treatment() {
        let a = alarm_of(include_str!("fixtures/sns-ec2-cpu.json"));
        assert_eq!((a.datapoints_to_alarm, a.treat_missing_data.as_deref()), (Some(1), Some("missing")));
        assert!(a.tags.is_empty());
    }

    #[test]
    fn sns_message_tags_suppression_and_evaluation_state_are_read() {
        let mut event = fixture(include_str!("fixtures/sns-composite.json"));
        let mut message: Value = serde_json::from_str(event["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
        message["ActionsSuppressedBy"] = json!("ExtensionPeriod");
        message["ActionsSuppressedReason"] = json!("Actions suppressed by ExtensionPeriod");
        message["ActionsSuppressor"] = json!("web-maintenance-window");
        message["EvaluationState"] = json!("PARTIAL_DATA");
        message["AlarmTags"] = json!([{"Key": "team", "Value": "web"}, {"Key": "aws:cloudformation:stack-name", "Value": "x"}]);
        message["AlarmTagsStatus"] = json!("SUCCESS");
        event["Records"][0]["Sns"]["Message"] = json!(message.to_string());
        let a = alarm_of(&event.to_string());
        let s = a.actions_suppressed.expect("suppressed");
        assert_eq!(
            (s.by.as_str(), s.suppressor.as_deref()),
            ("ExtensionPeriod", Some("web-maintenance-window"))
        );
        assert_eq!(a.evaluation_state.as_deref(), Some("PARTIAL_DATA"));
        // aws: keys are AWS's, never the alarm owner's.
        assert_eq!(a.tags, BTreeMap::from([("team".to_string(), "web".to_string())]));
    }

    // --- Unusual envelopes: never an error, an alert never lost (issue 16, defect 6).

    #[test]
    fn sqs_message_carrying_an_sns_notification_is_the_alarm() {
        let a = alarm_of(include_str!("fixtures/sqs-sns-ec2-cpu.json"));
        assert_eq!((a.name.as_str(), a.region.as_str()), ("cpu-high-web-7", "eu-west-1"));
        assert_eq!(a.source, "sqs");
        assert_eq!(a.changed_at_ms, 1_795_402_872_345);
        assert_eq!(target(&a), Some(Target::Instance("i-0abc1234def567890".into())));
    }

    #[test]
    fn sqs_message_with_raw_delivery_is_the_alarm_and_other_bodies_are_passed_on() {
        let sns = fixture(include_str!("fixtures/sns-ec2-cpu.json"));
        let message = sns["Records"][0]["Sns"]["Message"].as_str().unwrap();
        let event = json!({"Records": [
            {"eventSource": "aws:sqs", "body": message},
            {"eventSource": "aws:sqs", "body": "disk full on web-7"},
        ]});
        let out = incoming(&event);
        let [Incoming::Alarm(a), Incoming::Unrecognized { source, raw, why, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((a.name.as_str(), a.source.as_str()), ("cpu-high-web-7", "sqs"));
        assert_eq!((source.as_str(), raw.as_str()), ("sqs", "disk full on web-7"));
        assert!(why.contains("not JSON"), "{why}");
    }

    #[test]
    fn sns_record_without_signature_fields_is_still_read() {
        let mut event = fixture(include_str!("fixtures/sns-ec2-cpu.json"));
        let sns = event["Records"][0]["Sns"].as_object_mut().unwrap();
        for key in [
            "SignatureVersion",
            "Signature",
            "SigningCertUrl",
            "UnsubscribeUrl",
            "MessageAttributes",
            "Subject",
        ] {
            sns.remove(key);
        }
        let a = alarm_of(&event.to_string());
        assert_eq!((a.name.as_str(), a.source.as_str()), ("cpu-high-web-7", "sns"));

        // Without even a Message, it is passed on as it came.
        event["Records"][0]["Sns"].as_object_mut().unwrap().remove("Message");
        let out = incoming(&event);
        let [Incoming::Unrecognized { source, raw, why, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(source, "sns");
        assert!(raw.contains("opsflow-alarms"), "{raw}");
        assert!(why.contains("Message"), "{why}");
    }

    #[test]
    fn eventbridge_alarm_event_without_detail_is_passed_on() {
        let mut event = fixture(include_str!("fixtures/eventbridge-metric.json"));
        event.as_object_mut().unwrap().remove("detail");
        let out = incoming(&event);
        let [Incoming::Unrecognized { source, subject, raw, why }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(source, "eventbridge");
        assert_eq!(subject.as_deref(), Some("CloudWatch Alarm State Change"));
        assert!(raw.contains("ServerCpuTooHigh"));
        assert!(why.contains("no detail"), "{why}");
    }

    #[test]
    fn target_prefers_an_instance_and_ignores_non_ec2_ids() {
        let mut a = alarm_of(include_str!("fixtures/sns-ec2-cpu.json"));
        let AlarmKind::Metric { stat, .. } = &mut a.kind else { panic!() };
        stat.metric.dimensions = dims(&[("AutoScalingGroupName", "web-asg"), ("InstanceId", "i-0abc")]);
        assert_eq!(target(&a), Some(Target::Instance("i-0abc".into())));
        let AlarmKind::Metric { stat, .. } = &mut a.kind else { panic!() };
        stat.metric.dimensions = dims(&[("InstanceId", "mi-0123456789abcdef0")]);
        assert_eq!(target(&a), None);
    }

    #[test]
    fn times_with_and_without_colon_in_the_offset() {
        assert_eq!(ms("2026-11-23T03:01:12.345+0000"), 1_795_402_872_345);
        assert_eq!(ms("2026-11-23T03:01:12.345Z"), 1_795_402_872_345);
        assert_eq!(ms("2026-11-23T04:01:12.345+01:00"), 1_795_402_872_345);
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
