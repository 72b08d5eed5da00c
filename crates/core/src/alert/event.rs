//! The Lambda event, SNS or EventBridge, turned into [`Alarm`]s.
//!
//! The envelopes are read with `aws_lambda_events` ([`SnsEvent`], [`EventBridgeEvent`]). The
//! alarm payloads inside are read with this module's own serde types: the crate's
//! `sns::CloudWatchAlarmPayload` and `cloudwatch_alarms::*` reject real payloads (each type
//! below says which feature breaks the crate's). Whatever is not an alarm we understand becomes
//! [`Incoming::Unrecognized`], never dropped.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sns::{SnsEvent, SnsRecord};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::alert::model::{Alarm, AlarmKind, Dimension, Metric, MetricQuery, MetricStat, Target};
use crate::CoreError;

/// The EventBridge `source` and `detail-type` of an alarm state change.
const EVENTBRIDGE_SOURCE: &str = "aws.cloudwatch";
const EVENTBRIDGE_DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// One message of a Lambda event: an alarm, or something that is not one (passed on, never dropped).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Alarm(Box<Alarm>),
    /// A message that is not an alarm state change opsflow understands.
    Unrecognized {
        /// `sns` or `eventbridge`.
        source: String,
        /// The SNS subject, or the EventBridge detail-type.
        subject: Option<String>,
        /// The message as it came (the SNS `Message`, or the whole EventBridge event).
        raw: String,
        /// Why it was not understood.
        why: String,
    },
}

/// Reads a Lambda event: an SNS event (one [`Incoming`] per record) or an EventBridge event
/// (one [`Incoming`]).
///
/// Fails with `InvalidInput` only when the event is neither envelope; a message inside that is
/// not an alarm becomes [`Incoming::Unrecognized`].
pub fn incoming(event: &Value) -> Result<Vec<Incoming>, CoreError> {
    if event.get("Records").is_some() {
        let sns: SnsEvent = serde_json::from_value(event.clone())
            .map_err(|e| CoreError::invalid("event", format!("Records is not an SNS Lambda event (Records[].Sns): {e}")))?;
        return Ok(sns.records.iter().map(from_sns_record).collect());
    }
    if event.get("detail-type").is_some() {
        let eb: EventBridgeEvent<Value> = serde_json::from_value(event.clone())
            .map_err(|e| CoreError::invalid("event", format!("not an EventBridge event (source, detail-type, detail): {e}")))?;
        return Ok(vec![from_eventbridge(&eb, event)]);
    }
    Err(CoreError::invalid(
        "event",
        "expected an SNS Lambda event (Records[].Sns) or an EventBridge event (source, detail-type, detail)",
    ))
}

/// What the EC2 lookups are about: the `InstanceId` dimension (an EC2 id, `i-…`) of the
/// alarm's metric, else its `AutoScalingGroupName`. For metric math and anomaly detection, the
/// first query metric that has one. None for composite alarms and metrics of other resources
/// (RDS, load balancers…).
pub fn target(alarm: &Alarm) -> Option<Target> {
    let metrics: Vec<&Metric> = match &alarm.kind {
        AlarmKind::Metric { stat, .. } => vec![&stat.metric],
        AlarmKind::MetricMath { queries, .. } | AlarmKind::AnomalyDetection { queries, .. } => {
            queries.iter().filter_map(|q| q.metric_stat.as_ref().map(|s| &s.metric)).collect()
        }
        AlarmKind::Composite { .. } => return None,
    };
    let dimension = |name: &str| {
        metrics
            .iter()
            .flat_map(|m| &m.dimensions)
            .find(|d| d.name == name && !d.value.is_empty())
            .map(|d| d.value.clone())
    };
    dimension("InstanceId")
        .filter(|id| id.starts_with("i-"))
        .map(Target::Instance)
        .or_else(|| dimension("AutoScalingGroupName").map(Target::AutoScalingGroup))
}

// ---------------------------------------------------------------------------------------------
// SNS: CloudWatch's alarm notification in each record's `Message`.

/// The alarm notification CloudWatch publishes to SNS. Own type rather than
/// `sns::CloudWatchAlarmPayload`, whose `alarm_description: String` rejects the
/// `"AlarmDescription": null` of alarms without a description, whose `trigger` is required
/// (composite alarm notifications carry `AlarmRule` and `TriggeringChildren` instead), and
/// whose `old_state_value: String` is required too.
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

fn from_sns_record(record: &SnsRecord) -> Incoming {
    let sns = &record.sns;
    let unrecognized = |why: String| Incoming::Unrecognized {
        source: "sns".into(),
        subject: sns.subject.clone(),
        raw: sns.message.clone(),
        why,
    };
    let json: Value = match serde_json::from_str(&sns.message) {
        Ok(json) => json,
        Err(_) => return unrecognized("the SNS message is not JSON, so not a CloudWatch alarm notification".into()),
    };
    let payload: SnsAlarm = match serde_json::from_value(json) {
        Ok(payload) => payload,
        Err(e) => return unrecognized(format!("the SNS message is JSON but not a CloudWatch alarm notification: {e}")),
    };
    match sns_alarm(payload, &sns.topic_arn, sns.timestamp) {
        Ok(alarm) => Incoming::Alarm(Box::new(alarm)),
        Err(why) => unrecognized(why),
    }
}

fn sns_alarm(p: SnsAlarm, topic_arn: &str, published: DateTime<Utc>) -> Result<Alarm, String> {
    let kind = match (p.alarm_rule, p.trigger) {
        (Some(rule), _) => AlarmKind::Composite {
            rule,
            triggering_alarms: p.triggering_children.unwrap_or_default().into_iter().map(|c| c.arn).collect(),
        },
        (None, Some(trigger)) => sns_kind(trigger)?,
        (None, None) => {
            return Err("the alarm notification has neither a Trigger (metric alarm) nor an AlarmRule (composite alarm)".into())
        }
    };
    let arn = p.alarm_arn.filter(|a| !a.is_empty());
    let region = arn
        .as_deref()
        .and_then(|a| arn_part(a, 3))
        .or_else(|| arn_part(topic_arn, 3))
        .ok_or("no region: neither AlarmArn nor the topic ARN names one")?;
    let changed_at_ms = p
        .state_change_time
        .as_deref()
        .and_then(parse_time_ms)
        .unwrap_or_else(|| published.timestamp_millis());
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
        source: "sns".into(),
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

// ---------------------------------------------------------------------------------------------
// EventBridge: "CloudWatch Alarm State Change".

/// `detail` of a "CloudWatch Alarm State Change" event. Own type rather than
/// `cloudwatch_alarms::CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration |
/// CloudWatchCompositeAlarmConfiguration>`, which cannot read it (see the types below).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbDetail {
    alarm_name: String,
    state: EbState,
    previous_state: Option<EbState>,
    #[serde(default)]
    configuration: EbConfiguration,
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
    threshold_metric_id: Option<String>,
}

/// One of `configuration.metrics`. The crate's `CloudWatchMetricDefinition` requires
/// `metricStat` (metric math expressions have `expression` and no `metricStat`) and has no
/// `expression` nor `label`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EbQuery {
    id: String,
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

fn from_eventbridge(eb: &EventBridgeEvent<Value>, raw: &Value) -> Incoming {
    let unrecognized = |why: String| Incoming::Unrecognized {
        source: "eventbridge".into(),
        subject: Some(eb.detail_type.clone()),
        raw: raw.to_string(),
        why,
    };
    if eb.source != EVENTBRIDGE_SOURCE || eb.detail_type != EVENTBRIDGE_DETAIL_TYPE {
        return unrecognized(format!(
            "EventBridge event \"{}\" from {} is not a \"{EVENTBRIDGE_DETAIL_TYPE}\" from {EVENTBRIDGE_SOURCE}",
            eb.detail_type, eb.source
        ));
    }
    let detail: EbDetail = match serde_json::from_value(eb.detail.clone()) {
        Ok(detail) => detail,
        Err(e) => return unrecognized(format!("the alarm state change detail cannot be read: {e}")),
    };
    match eventbridge_alarm(eb, detail) {
        Ok(alarm) => Incoming::Alarm(Box::new(alarm)),
        Err(why) => unrecognized(why),
    }
}

fn eventbridge_alarm(eb: &EventBridgeEvent<Value>, d: EbDetail) -> Result<Alarm, String> {
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
    let arn = eb.resources.iter().flatten().find(|r| r.contains(":alarm:")).cloned();
    let region = arn
        .as_deref()
        .and_then(|a| arn_part(a, 3))
        .or_else(|| eb.region.clone().filter(|r| !r.is_empty()))
        .ok_or("no region: neither the alarm ARN in resources nor the event's region")?;
    let account_id = eb
        .account
        .clone()
        .filter(|a| !a.is_empty())
        .or_else(|| arn.as_deref().and_then(|a| arn_part(a, 4)))
        .ok_or("no account: neither the event's account nor the alarm ARN")?;
    let changed_at_ms = d
        .state
        .timestamp
        .as_deref()
        .and_then(parse_time_ms)
        .or_else(|| eb.time.map(|t| t.timestamp_millis()))
        .ok_or("no time: neither state.timestamp nor the event's time can be read")?;
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
        source: "eventbridge".into(),
    })
}

fn eb_query(q: EbQuery) -> MetricQuery {
    MetricQuery {
        id: q.id,
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

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// The one alarm of a one-message event.
    fn alarm_of(event_json: &str) -> Alarm {
        match incoming(&fixture(event_json)).unwrap().as_slice() {
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
        let out = incoming(&event).unwrap();
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
        let out = incoming(&event).unwrap();
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
        let out = incoming(&event).unwrap();
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
        let out = incoming(&event).unwrap();
        let [Incoming::Unrecognized { source, subject, raw, why }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(source, "eventbridge");
        assert_eq!(subject.as_deref(), Some("EC2 Instance State-change Notification"));
        assert!(raw.contains("i-0abc1234def567890"));
        assert!(why.contains("CloudWatch Alarm State Change"), "{why}");
    }

    #[test]
    fn other_events_are_rejected() {
        for event in [
            json!({"hello": "world"}),
            json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}),
            json!("ALARM"),
        ] {
            let e = incoming(&event).unwrap_err();
            assert_eq!(e.name(), "InvalidInput", "{event}");
            assert!(e.to_string().contains("event"), "{e}");
        }
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
