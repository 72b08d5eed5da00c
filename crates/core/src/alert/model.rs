//! The alert domain's types: a CloudWatch alarm state change as opsflow sees it, whatever
//! carried it (SNS, EventBridge, CloudWatch's Lambda action, SNS through SQS), what the lookups
//! return, and the enriched alert.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One alarm state change, normalised from the SNS message or the EventBridge event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    pub name: String,
    pub description: Option<String>,
    pub arn: Option<String>,
    pub account_id: String,
    /// The region code (`eu-west-1`): from the alarm ARN, or the event's `region`. The SNS
    /// message's `Region` is a display name ("EU (Ireland)"), kept in `region_name`.
    pub region: String,
    pub region_name: Option<String>,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub previous_state: Option<String>,
    pub reason: String,
    /// When the state changed (epoch milliseconds).
    pub changed_at_ms: i64,
    pub kind: AlarmKind,
    /// What carried it: `sns`, `eventbridge`, `lambda` (CloudWatch's Lambda alarm action,
    /// no envelope) or `sqs` (an SNS notification delivered through an SQS queue).
    pub source: String,
    /// A composite alarm whose actions CloudWatch suppressed for this state change.
    #[serde(default)]
    pub actions_suppressed: Option<Suppression>,
    /// `PARTIAL_DATA` (evaluated on part of its metrics), `EVALUATION_ERROR`,
    /// `EVALUATION_FAILURE`; None when the evaluation was complete.
    #[serde(default)]
    pub evaluation_state: Option<String>,
    /// M of "M out of N" datapoints that must breach (N is the kind's `evaluationPeriods`).
    #[serde(default)]
    pub datapoints_to_alarm: Option<i64>,
    /// `missing`, `breaching`, `notBreaching` or `ignore`.
    #[serde(default)]
    pub treat_missing_data: Option<String>,
    /// The alarm's tags, when its AlarmTagsPropagation puts them in the notification (keys
    /// starting with `aws:` never do).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// CloudWatch's `AlarmTagsStatus` (`SUCCESS`, or why the tags are missing or partial).
    #[serde(default)]
    pub tags_status: Option<String>,
}

/// Why a composite alarm's actions did not run for this state change (its actions suppressor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suppression {
    /// `WaitPeriod`, `ExtensionPeriod` or `Alarm`.
    pub by: String,
    pub reason: Option<String>,
    /// The suppressor alarm (name or ARN), when the configuration names it.
    pub suppressor: Option<String>,
    pub wait_period_s: Option<i64>,
    pub extension_period_s: Option<i64>,
}

/// Where a lookup runs: the account and region of the resource it asks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Place {
    pub account_id: String,
    pub region: String,
}

/// What the alarm watches. Variants and their fields are camelCase alike (`rename_all` alone
/// renames only the variants: schema 1 had `evaluation_periods` beside `evaluationPeriods`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum AlarmKind {
    /// One metric with a static threshold.
    Metric {
        stat: MetricStat,
        comparison: Option<String>,
        threshold: Option<f64>,
        evaluation_periods: Option<i64>,
    },
    /// Metric math: the queries, the one with `return_data` being the alarm's value.
    MetricMath {
        queries: Vec<MetricQuery>,
        comparison: Option<String>,
        threshold: Option<f64>,
        evaluation_periods: Option<i64>,
    },
    /// Anomaly detection: a band expression (`ANOMALY_DETECTION_BAND`) is the threshold.
    AnomalyDetection {
        queries: Vec<MetricQuery>,
        threshold_metric_id: String,
        comparison: Option<String>,
        evaluation_periods: Option<i64>,
    },
    /// A composite alarm: a rule over other alarms; no metric of its own.
    Composite {
        rule: String,
        /// ARNs of the alarms that triggered the change, when the event says.
        triggering_alarms: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<Dimension>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricStat {
    pub metric: Metric,
    pub period_s: i64,
    /// `Average`, `Maximum`, `p99`…
    pub stat: String,
    pub unit: Option<String>,
}

/// One query of a metric math or anomaly detection alarm (GetMetricData's MetricDataQuery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricQuery {
    pub id: String,
    /// The account holding the metric, for a cross-account alarm (None: the alarm's account).
    #[serde(default)]
    pub account_id: Option<String>,
    pub expression: Option<String>,
    pub metric_stat: Option<MetricStat>,
    pub label: Option<String>,
    pub return_data: bool,
    pub period_s: Option<i64>,
}

/// What the EC2 lookups are about: an instance, or an Auto Scaling group's instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "camelCase")]
pub enum Target {
    Instance(String),
    AutoScalingGroup(String),
}

/// DescribeInstances, for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetails {
    pub instance_id: String,
    /// The `Name` tag.
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub instance_type: Option<String>,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
    pub availability_zone: Option<String>,
    pub private_ip: Option<String>,
    /// EC2's LaunchTime: the last start (it moves on every start from stopped).
    pub launch_time_epoch_s: Option<i64>,
    pub instance_profile_arn: Option<String>,
    pub platform: Option<String>,
}

/// DescribeInstanceInformation, for one managed instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub instance_id: String,
    /// `Online`, `ConnectionLost`, `Inactive`.
    pub ping_status: String,
    pub last_ping_epoch_s: Option<i64>,
    pub agent_version: Option<String>,
}

/// An instance profile's role and its policies, as IAM lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRole {
    pub profile_arn: String,
    pub role_name: String,
    pub role_arn: String,
    /// ARNs of the managed policies attached to the role.
    pub attached_policy_arns: Vec<String>,
    /// The policy documents in force: inline policies and the default versions of the
    /// customer-managed attached ones, by name.
    pub policy_documents: Vec<(String, serde_json::Value)>,
}

/// One datapoint of the alarm's metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Datapoint {
    pub epoch_s: i64,
    pub value: f64,
}

/// One instance in an enriched alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub details: InstanceDetails,
    /// Seconds since the last start, when running and known.
    pub uptime_s: Option<i64>,
    pub recently_started: bool,
    /// The role behind the instance profile, when the IAM lookup found it.
    pub role_name: Option<String>,
    /// Why the role counts as admin (e.g. "AdministratorAccess is attached"), if it does.
    pub admin: Option<String>,
    pub agent: Option<AgentInfo>,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// `high` (ALARM), `medium` (ALARM on an instance started within the threshold: likely
/// warm-up), `low` (INSUFFICIENT_DATA, or actions suppressed), `info` (OK): see
/// [`crate::alert::policy::severity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// An alarm mute rule that targets the alarm and is active: the alarm is muted for
/// maintenance (opsflow's procedures describe theirs: procedure, instance, run, start, starter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMute {
    pub rule: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// The alarm with everything the lookups found, and a note for each that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enriched {
    pub alarm: Alarm,
    pub severity: Severity,
    pub target: Option<Target>,
    /// Where the target's lookups ran (or would have): the account holding the metric's
    /// resource and the alarm's region. None without a target.
    #[serde(default)]
    pub target_place: Option<Place>,
    pub instances: Vec<InstanceView>,
    /// The alarm metric's most recent datapoints, oldest first.
    pub datapoints: Vec<Datapoint>,
    /// The datapoints as a text sparkline (`▁▂▃▄▅▆▇█`).
    pub sparkline: Option<String>,
    /// A plain-language verdict, e.g. "started 4 minutes ago — likely warm-up, probably a false positive".
    pub assessment: Option<String>,
    /// What could not be found out, and why (a failed lookup never stops the alert).
    pub notes: Vec<String>,
    /// Links to the alarm (and, per instance, in `instances`).
    pub links: Vec<Link>,
    /// The active alarm mute rules that target the alarm: it arrived during maintenance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<ActiveMute>,
    /// The read-only diagnostics command run on the instance ([`crate::alert::diagnose`]), when
    /// it opted in: its output, or that it still runs (a follow-up message carries the result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
}

/// Where a diagnostics command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosticsStatus {
    /// Sent and not finished yet: the alert went out without it, a follow-up carries the result.
    Running,
    /// SSM says Success: the script ran (a script that exits 0 whatever it finds).
    Succeeded,
    /// SSM ended it otherwise: exit code, delivery or execution timeout, undeliverable…
    Failed,
    /// SendCommand failed: nothing runs on the instance.
    NotStarted,
    /// Not finished within the limit: the result is in Run Command's history, not here.
    Unfinished,
}

/// A diagnostics command on one instance, as the alert and its follow-up carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostics {
    pub instance_id: String,
    /// `opsflow-Diagnose` or `opsflow-DiagnoseWindows`.
    pub document: String,
    /// None when SendCommand failed.
    pub command_id: Option<String>,
    pub status: DiagnosticsStatus,
    /// SSM's last `Status` (`Pending`, `InProgress`, `Success`, `Failed`, `TimedOut`…).
    pub ssm_status: Option<String>,
    pub exit_code: Option<i32>,
    /// The end of the output (stdout, then stderr), cut on a character boundary with a leading `…`.
    pub output: String,
    /// Why it failed, did not start or did not finish.
    pub reason: Option<String>,
    /// When SendCommand was called (epoch ms), and how long until the result (or giving up).
    pub sent_at_ms: i64,
    pub took_ms: i64,
    /// Run Command's page of the command, in the instance's console.
    pub link: Option<String>,
}

/// The message published to the enriched-alerts topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// ≤ 100 ASCII characters, no line breaks (SNS's rule for email subjects).
    pub subject: String,
    /// The SNS message with `MessageStructure: json`: `default`, `email`, `sms`, and the JSON
    /// body for `sqs`, `lambda`, `http`, `https`, `firehose`.
    pub message: String,
    /// String message attributes for subscription filter policies.
    pub attributes: BTreeMap<String, String>,
}
