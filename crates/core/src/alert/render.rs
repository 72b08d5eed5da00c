//! The enriched alert as the message for the enriched-alerts topic: a subject, a text for
//! people (email, SMS) and a JSON body for machines (SQS, Lambda, HTTP/S, Firehose), in one
//! SNS message with `MessageStructure: json`, plus message attributes for filter policies.
//!
//! Times are UTC; relative times ("4 minutes ago") are relative to the alarm's state change,
//! not the wall clock, so the same alert always renders the same.
//!
//! Message attributes (for subscription filter policies) obey SNS's rules: at most 10 per
//! message; names of `A-Z a-z 0-9 _ - .`, at most 256, no leading, trailing or doubled `.`,
//! not starting with `AWS.` or `Amazon.`; String values not empty. opsflow's own come first,
//! in this order: `severity`, `state`, `alarmName`, `account`, `region`, `actionsSuppressed`,
//! `mutedBy` (the first active alarm mute rule), `instanceId`, `autoScalingGroup`, `recentlyStarted`, `adminRole` (those that apply). The
//! alarm's tags fill the room left, as `tag.<key>`, in key order. A tag past the tenth
//! attribute, with an empty value, or whose key has a character an attribute name cannot
//! carry (tag keys may have spaces, `:`, `/`, `+`, `=`, `@`) is no attribute — never renamed,
//! which could merge two tags — but stays in the JSON body (`alarm.tags`) and the text; the body
//! lists those keys in `tagsNotAttributes`.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde_json::{json, Map, Value};

use crate::alert::model::{
    Alarm, AlarmKind, Diagnostics, DiagnosticsStatus, Enriched, InstanceView, Metric, MetricQuery, MetricStat, Publication, Suppression,
    Target,
};

/// The `schema` of the JSON body.
/// Version 2: `alarm.kind`'s fields are camelCase like the rest (1 had three snake_case ones).
/// Version 3: `alarm.source` may also be `lambda` (CloudWatch's Lambda action) or `sqs`, and
/// `unrecognized.source` `lambda`, `sqs` or `unknown`; `severity` is `low` for a composite
/// alarm whose actions were suppressed (a filter policy on `severity` sees that); new fields
/// `alarm.actionsSuppressed`, `alarm.evaluationState`, `alarm.datapointsToAlarm`,
/// `alarm.treatMissingData`, `alarm.tags`, `alarm.tagsStatus`, `alarm.kind.queries[].accountId`,
/// `targetPlace`, `tagsNotAttributes` and `maintenance` (the active alarm mute rules that target
/// the alarm; `severity` is then `low` at most).
/// Also in version 3 (added, optional): `diagnostics`, the read-only diagnostics command's
/// status and output when the instance opted in.
pub const SCHEMA: &str = "opsflow.enriched-alert/3";
/// The `schema` of a diagnostics follow-up's JSON body.
pub const DIAGNOSTICS_SCHEMA: &str = "opsflow.alert-diagnostics/1";

/// SNS's limit of message attributes per message.
pub(crate) const ATTRIBUTES_MAX: usize = 10;

/// SNS's limit for an email subject.
pub(crate) const SUBJECT_MAX: usize = 100;
pub(crate) const SMS_MAX: usize = 140;
/// SNS's message limit is 256 KiB; the attributes and some headroom come off it.
pub(crate) const MESSAGE_MAX: usize = 256 * 1024 - 8 * 1024;
/// Values shown in the text's datapoints line.
const TEXT_DATAPOINTS: usize = 20;
const TEXT_TAGS: usize = 15;

/// How much of each list a message carries. The fullest that fits under [`MESSAGE_MAX`] is used.
#[derive(Clone, Copy)]
struct Caps {
    datapoints: usize,
    instances: usize,
    notes: usize,
    note_chars: usize,
    raw_bytes: usize,
}

const CAPS: [Caps; 3] = [
    Caps {
        datapoints: 300,
        instances: 50,
        notes: 50,
        note_chars: 1000,
        raw_bytes: 16 * 1024,
    },
    Caps {
        datapoints: 60,
        instances: 10,
        notes: 10,
        note_chars: 300,
        raw_bytes: 4 * 1024,
    },
    Caps {
        datapoints: 10,
        instances: 1,
        notes: 3,
        note_chars: 200,
        raw_bytes: 1024,
    },
];

/// The publication for an enriched alert.
pub fn publication(e: &Enriched) -> Publication {
    fit(|caps| {
        let (kept, omitted) = trim(e, caps);
        let subject = subject(&kept);
        let text = text(&kept, &omitted);
        let sms = limit(&ascii_line(&sms(&kept, &subject)), SMS_MAX);
        let mut body = Map::new();
        body.insert("schema".into(), SCHEMA.into());
        if let Ok(Value::Object(fields)) = serde_json::to_value(&kept) {
            body.extend(fields);
        }
        if omitted.any() {
            body.insert("omitted".into(), omitted.json());
        }
        let (attributes, not_attributes) = attributes(e);
        if !not_attributes.is_empty() {
            body.insert("tagsNotAttributes".into(), json!(not_attributes));
        }
        Publication {
            message: message(&text, &sms, &Value::Object(body)),
            attributes,
            subject,
        }
    })
}

/// The follow-up of an alert whose diagnostics had not ended when it was published: the
/// diagnostics' result (or why there is none), with the alert's message attributes so that the
/// same filter policies let it through. `taken_over`: a later delivery of the alarm read the
/// command, because the delivery that waited for it stopped before sending this.
pub fn diagnostics_publication(e: &Enriched, d: &Diagnostics, taken_over: bool) -> Publication {
    let a = &e.alarm;
    let subject = limit(&ascii_line(&format!("Diagnostics: {} on {}", a.name, d.instance_id)), SUBJECT_MAX);
    let why = match taken_over {
        true => "Follow-up, read by a later delivery of the alarm: the delivery that waited for it stopped before sending it.",
        false => "Follow-up: the alert went out before they ended.",
    };
    let text = format!(
        "Diagnostics for {}: {} at {}, {}, account {}\n{why}\n\n{}\n",
        a.state,
        a.name,
        utc(a.changed_at_ms),
        a.region,
        a.account_id,
        diagnostics_block(d)
    );
    let sms = limit(&ascii_line(&format!("{subject}: {}", status_word(d))), SMS_MAX);
    let body = json!({
        "schema": DIAGNOSTICS_SCHEMA,
        "alarm": {"name": a.name, "accountId": a.account_id, "region": a.region, "state": a.state, "changedAtMs": a.changed_at_ms},
        "severity": e.severity,
        "takenOver": taken_over,
        "diagnostics": d,
    });
    Publication {
        message: message(&text, &sms, &body),
        attributes: attributes(e).0,
        subject,
    }
}

/// `succeeded`, `failed`, `still running`…
fn status_word(d: &Diagnostics) -> &'static str {
    match d.status {
        DiagnosticsStatus::Running => "still running",
        DiagnosticsStatus::Succeeded => "succeeded",
        DiagnosticsStatus::Failed => "failed",
        DiagnosticsStatus::NotStarted => "not run",
        DiagnosticsStatus::Unfinished => "did not finish",
    }
}

/// `Diagnostics (opsflow-Diagnose on i-0abc, 1.2 s): succeeded`, the reason, the output
/// indented, the command and its Run Command link.
fn diagnostics_block(d: &Diagnostics) -> String {
    let took = match d.status {
        DiagnosticsStatus::NotStarted => String::new(),
        _ => format!(", {:.1} s", d.took_ms as f64 / 1000.0),
    };
    let mut out = vec![format!(
        "Diagnostics ({} on {}{took}): {}",
        d.document,
        d.instance_id,
        status_word(d)
    )];
    if d.status == DiagnosticsStatus::Running {
        out.push("  A follow-up message will carry the output.".to_string());
    }
    if let Some(reason) = &d.reason {
        out.push(format!("  {reason}"));
    }
    if !d.output.is_empty() {
        out.push("  Output (its end):".to_string());
        out.extend(d.output.lines().map(|l| format!("    {l}")));
    }
    if let Some(id) = &d.command_id {
        let link = d.link.as_deref().map(|l| format!(": {l}")).unwrap_or_default();
        out.push(format!("  Command {id}{link}"));
    }
    out.join("\n")
}

/// The publication for a message that is not an alarm opsflow understands: passed on to
/// people with `severity` high, so that someone looks at it.
pub fn unrecognized_publication(source: &str, subject: Option<&str>, raw: &str, why: &str) -> Publication {
    let about = subject
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| raw.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    let title = limit(&ascii_line(&format!("Unrecognized alert via {source}: {about}")), SUBJECT_MAX);
    let title = title.trim_end_matches([':', ' ']).to_string();
    fit(|caps| {
        let (shown, cut) = clip_bytes(raw, caps.raw_bytes);
        let mut text = format!("opsflow could not understand a message that arrived via {source}.\nWhy: {why}\n");
        if let Some(subject) = subject {
            text.push_str(&format!("Subject: {subject}\n"));
        }
        match cut {
            0 => text.push_str("\nThe message as received:\n"),
            cut => text.push_str(&format!(
                "\nThe message as received (the first {} bytes, {cut} more not shown):\n",
                shown.len()
            )),
        }
        text.push_str(shown);
        let body = json!({
            "schema": SCHEMA,
            "unrecognized": {
                "source": source,
                "subject": subject,
                "why": why,
                "raw": shown,
                "rawBytesOmitted": cut,
            }
        });
        let sms = limit(&ascii_line(&format!("{title} - {why}")), SMS_MAX);
        let attributes = BTreeMap::from([
            ("severity".to_string(), "high".to_string()),
            ("source".to_string(), source.to_string()),
        ]);
        Publication {
            subject: title.clone(),
            message: message(&text, &sms, &body),
            attributes: attributes.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        }
    })
}

/// A text sparkline, one bar (`▁▂▃▄▅▆▇█`) per value, scaled from the lowest to the highest.
/// All values equal gives all `▄`; a value that is not a number gives a space; none gives "".
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (min, max) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = max - min;
    values
        .iter()
        .map(|&v| match v {
            v if !v.is_finite() => ' ',
            _ if span <= f64::EPSILON * max.abs().max(1.0) => '▄',
            // NaN (from an infinite span) casts to 0.
            v => BARS[(((v - min) / span) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

/// The first of [`CAPS`] whose publication fits SNS's limit (else the smallest).
fn fit(build: impl Fn(Caps) -> Publication) -> Publication {
    let mut last = None;
    for caps in CAPS {
        let p = build(caps);
        if p.message.len() <= MESSAGE_MAX {
            return p;
        }
        last = Some(p);
    }
    last.unwrap_or_else(|| build(CAPS[CAPS.len() - 1]))
}

/// The SNS message for `MessageStructure: json`: every value a string.
pub(crate) fn message(text: &str, sms: &str, body: &Value) -> String {
    let body = body.to_string();
    json!({
        "default": text,
        "email": text,
        "sms": sms,
        "sqs": body,
        "lambda": body,
        "http": body,
        "https": body,
        "firehose": body,
    })
    .to_string()
}

/// How much of each list was left out.
#[derive(Default)]
struct Omitted {
    datapoints: usize,
    instances: usize,
    notes: usize,
}

impl Omitted {
    fn any(&self) -> bool {
        self.datapoints + self.instances + self.notes > 0
    }

    fn json(&self) -> Value {
        json!({"datapoints": self.datapoints, "instances": self.instances, "notes": self.notes})
    }
}

/// `e` with its lists cut to `caps`: the latest datapoints, the first instances and notes.
fn trim(e: &Enriched, caps: Caps) -> (Enriched, Omitted) {
    let mut kept = e.clone();
    let omitted = Omitted {
        datapoints: kept.datapoints.len().saturating_sub(caps.datapoints),
        instances: kept.instances.len().saturating_sub(caps.instances),
        notes: kept.notes.len().saturating_sub(caps.notes),
    };
    kept.datapoints.drain(..omitted.datapoints);
    kept.instances.truncate(caps.instances);
    kept.notes.truncate(caps.notes);
    for note in &mut kept.notes {
        *note = clip_chars(note, caps.note_chars);
    }
    (kept, omitted)
}

/// `ALARM: cpu-high-web-7 on i-0abc (web-7)`.
fn subject(e: &Enriched) -> String {
    let on = match &e.target {
        Some(Target::Instance(id)) => match e
            .instances
            .iter()
            .find(|v| v.details.instance_id == *id)
            .and_then(|v| v.details.name.as_deref())
        {
            Some(name) => format!(" on {id} ({name})"),
            None => format!(" on {id}"),
        },
        Some(Target::AutoScalingGroup(name)) => format!(" on Auto Scaling group {name}"),
        None => String::new(),
    };
    let subject = limit(&ascii_line(&format!("{}: {}{on}", e.alarm.state, e.alarm.name)), SUBJECT_MAX);
    if subject.trim_matches([':', ' ']).is_empty() {
        "CloudWatch alarm".into()
    } else {
        subject
    }
}

/// `ALARM: cpu-high-web-7 on i-0abc (web-7), eu-west-1: started 4 minutes ago - likely warm-up…`.
fn sms(e: &Enriched, subject: &str) -> String {
    match &e.assessment {
        Some(a) => format!("{subject}, {}: {a}", e.alarm.region),
        None => format!("{subject}, {}", e.alarm.region),
    }
}

/// The text for people.
fn text(e: &Enriched, omitted: &Omitted) -> String {
    let a = &e.alarm;
    let at_s = a.changed_at_ms.div_euclid(1000);
    let was = a.previous_state.as_deref().map(|p| format!(" (was {p})")).unwrap_or_default();
    let mut out = vec![format!(
        "{}: {}{was} at {}, {}, account {}",
        a.state,
        a.name,
        utc(a.changed_at_ms),
        a.region,
        a.account_id
    )];
    if let Some(d) = &a.description {
        out.push(format!("Description: {d}"));
    }
    if !a.reason.is_empty() {
        out.push(a.reason.clone());
    }
    if let Some(s) = &a.actions_suppressed {
        out.push(suppression_line(s));
    }
    for m in &e.maintenance {
        out.push(format!(
            "Muted for maintenance by alarm mute rule {}{} - its actions do not run",
            m.rule,
            m.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        ));
    }
    if let Some(state) = &a.evaluation_state {
        out.push(format!("Evaluation: {state}{}", evaluation_meaning(state)));
    }
    out.extend(kind_lines(&a.kind));
    if let Some(line) = evaluation_settings(a) {
        out.push(line);
    }
    if let Some(place) = e.target_place.as_ref().filter(|p| p.account_id != a.account_id) {
        out.push(format!("Metric of account {} ({})", place.account_id, place.region));
    }
    if !a.tags.is_empty() {
        let tags: Vec<String> = a.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(format!("Alarm tags: {}", tags.join(", ")));
    } else if let Some(status) = a.tags_status.as_deref().filter(|s| *s != "SUCCESS") {
        out.push(format!("Alarm tags: none ({status})"));
    }
    if !e.datapoints.is_empty() {
        let shown = &e.datapoints[e.datapoints.len().saturating_sub(TEXT_DATAPOINTS)..];
        let values: Vec<f64> = shown.iter().map(|d| d.value).collect();
        let line = values.iter().map(|&v| num(v)).collect::<Vec<_>>().join(", ");
        let spark = match (&e.sparkline, shown.len() == e.datapoints.len()) {
            (Some(s), true) => s.clone(),
            _ => sparkline(&values),
        };
        out.push(format!("Last {} datapoints: {line}  {spark}", shown.len()));
    }
    if let Some(assessment) = &e.assessment {
        out.push(format!("Assessment: {assessment}"));
    }

    let mut blocks = vec![out.join("\n")];
    match &e.target {
        Some(Target::Instance(id)) if !e.instances.iter().any(|v| v.details.instance_id == *id) => {
            blocks.push(format!(
                "Instance {id}: no details (not found, or the lookup failed: see the notes)"
            ));
        }
        Some(Target::AutoScalingGroup(name)) => {
            let count = e.instances.len() + omitted.instances;
            blocks.push(format!("Auto Scaling group {name}: {count} instance{}", plural(count)));
        }
        _ => {}
    }
    blocks.extend(e.instances.iter().map(|v| instance_block(v, at_s)));
    if omitted.instances > 0 {
        blocks.push(format!("({} more instances not shown)", omitted.instances));
    }
    if let Some(d) = &e.diagnostics {
        blocks.push(diagnostics_block(d));
    }

    let several = e.instances.len() > 1;
    let links: Vec<String> = e
        .links
        .iter()
        .map(|l| format!("  {}: {}", l.label, l.url))
        .chain(e.instances.iter().flat_map(|v| {
            v.links.iter().map(move |l| match several {
                true => format!("  {} {}: {}", v.details.instance_id, l.label, l.url),
                false => format!("  {}: {}", l.label, l.url),
            })
        }))
        .collect();
    let mut tail = Vec::new();
    if !links.is_empty() {
        tail.push("Links:".to_string());
        tail.extend(links);
    }
    if !e.notes.is_empty() {
        tail.push("Notes:".to_string());
        tail.extend(e.notes.iter().map(|n| format!("  - {n}")));
        if omitted.notes > 0 {
            tail.push(format!("  - ({} more notes not shown)", omitted.notes));
        }
    }
    if !tail.is_empty() {
        blocks.push(tail.join("\n"));
    }
    blocks.join("\n\n") + "\n"
}

/// `Actions suppressed: WaitPeriod (Actions suppressed by WaitPeriod; suppressor
/// maintenance-window, wait 120 s, extension 180 s) - CloudWatch ran none of this alarm's actions`.
fn suppression_line(s: &Suppression) -> String {
    let mut settings = Vec::new();
    if let Some(suppressor) = &s.suppressor {
        settings.push(format!("suppressor {suppressor}"));
    }
    if let Some(w) = s.wait_period_s {
        settings.push(format!("wait {w} s"));
    }
    if let Some(x) = s.extension_period_s {
        settings.push(format!("extension {x} s"));
    }
    let details: Vec<String> = s
        .reason
        .iter()
        .cloned()
        .chain((!settings.is_empty()).then(|| settings.join(", ")))
        .collect();
    let details = match details.is_empty() {
        true => String::new(),
        false => format!(" ({})", details.join("; ")),
    };
    format!(
        "Actions suppressed: {}{details} - CloudWatch ran none of this alarm's actions for this change",
        s.by
    )
}

fn evaluation_meaning(state: &str) -> &'static str {
    match state {
        "PARTIAL_DATA" => " - evaluated on part of its metrics only (the query matched more than CloudWatch evaluates)",
        "EVALUATION_ERROR" => " - the alarm's configuration has an error (see the reason)",
        "EVALUATION_FAILURE" => " - CloudWatch could not evaluate it (a temporary CloudWatch issue)",
        _ => "",
    }
}

/// `Alarms on 3 of 5 datapoints, missing data treated as breaching`.
fn evaluation_settings(a: &Alarm) -> Option<String> {
    let periods = match &a.kind {
        AlarmKind::Metric { evaluation_periods, .. }
        | AlarmKind::MetricMath { evaluation_periods, .. }
        | AlarmKind::AnomalyDetection { evaluation_periods, .. } => *evaluation_periods,
        AlarmKind::Composite { .. } => None,
    };
    let of = match (a.datapoints_to_alarm, periods) {
        (Some(m), Some(n)) => Some(format!("Alarms on {m} of {n} datapoints")),
        (Some(m), None) => Some(format!("Alarms on {m} datapoints")),
        (None, _) => None,
    };
    let missing = a.treat_missing_data.as_deref().map(|t| {
        let how = match t {
            "breaching" => "treated as breaching",
            "notBreaching" => "treated as not breaching",
            "ignore" => "ignored (the state is kept)",
            "missing" => "treated as missing",
            other => other,
        };
        format!("missing data {how}")
    });
    match (of, missing) {
        (Some(of), Some(m)) => Some(format!("{of}, {m}")),
        (Some(of), None) => Some(of),
        (None, Some(m)) => Some(format!("{}{}", m[..1].to_uppercase(), &m[1..])),
        (None, None) => None,
    }
}

/// What the alarm watches, in a line or a few.
fn kind_lines(kind: &AlarmKind) -> Vec<String> {
    match kind {
        AlarmKind::Metric { stat, .. } => vec![format!("Metric: {}", metric_stat(stat))],
        AlarmKind::MetricMath { queries, .. } => std::iter::once("Metric math:".to_string())
            .chain(queries.iter().map(query))
            .collect(),
        AlarmKind::AnomalyDetection {
            queries,
            threshold_metric_id,
            ..
        } => std::iter::once(format!("Anomaly detection (band {threshold_metric_id}):"))
            .chain(queries.iter().map(query))
            .collect(),
        AlarmKind::Composite { rule, triggering_alarms } => {
            let mut lines = vec![format!("Composite rule: {rule}")];
            if !triggering_alarms.is_empty() {
                let names: Vec<&str> = triggering_alarms
                    .iter()
                    .map(|arn| arn.split_once(":alarm:").map_or(arn.as_str(), |(_, n)| n))
                    .collect();
                lines.push(format!("Triggered by: {}", names.join(", ")));
            }
            lines
        }
    }
}

/// `  e1 = m1+m2 (Total network traffic)` or `  m1: AWS/EC2 NetworkIn (InstanceId=i-0abc) Maximum over 300 s`.
fn query(q: &MetricQuery) -> String {
    let label = q.label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
    match (&q.expression, &q.metric_stat) {
        (Some(expression), _) => format!("  {} = {expression}{label}", q.id),
        (None, Some(stat)) => format!("  {}: {}{label}", q.id, metric_stat(stat)),
        (None, None) => format!("  {}{label}", q.id),
    }
}

/// `AWS/EC2 CPUUtilization (InstanceId=i-0abc) Average over 300 s`.
fn metric_stat(s: &MetricStat) -> String {
    format!("{} {} over {} s", metric(&s.metric), s.stat, s.period_s)
}

fn metric(m: &Metric) -> String {
    if m.dimensions.is_empty() {
        return format!("{} {}", m.namespace, m.name);
    }
    let dims: Vec<String> = m.dimensions.iter().map(|d| format!("{}={}", d.name, d.value)).collect();
    format!("{} {} ({})", m.namespace, m.name, dims.join(", "))
}

/// One instance: what it is, since when, its role, its agent, its tags.
fn instance_block(v: &InstanceView, alarm_at_s: i64) -> String {
    let d = &v.details;
    let name = d.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    let facts: Vec<&str> = [
        d.instance_type.as_deref(),
        Some(d.state.as_str()),
        d.availability_zone.as_deref(),
        d.private_ip.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut lines = vec![format!("Instance {}{name}: {}", d.instance_id, facts.join(", "))];
    match (d.state.as_str(), v.uptime_s) {
        ("terminated" | "shutting-down", _) => lines.push(format!("  the instance is {}: it no longer runs", d.state)),
        ("stopped" | "stopping", _) => lines.push(format!("  the instance is {}", d.state)),
        (_, Some(up)) => lines.push(format!(
            "  started {} ago{}",
            human_duration(up),
            if v.recently_started { " (recently started)" } else { "" }
        )),
        (_, None) => {
            if let Some(launched) = d.launch_time_epoch_s {
                lines.push(format!("  last started {}", utc(launched.saturating_mul(1000))));
            }
        }
    }
    lines.push(match (&v.role_name, &v.admin, &d.instance_profile_arn) {
        (Some(role), Some(why), _) => format!("  role {role}: ADMIN — {why}"),
        (Some(role), None, _) => format!("  role {role}: not admin"),
        (None, _, Some(profile)) => format!("  instance profile {profile}: role unknown (see the notes)"),
        (None, _, None) => "  no instance profile".to_string(),
    });
    lines.push(match &v.agent {
        Some(agent) => {
            let version = agent.agent_version.as_deref().map(|v| format!(" (agent {v})")).unwrap_or_default();
            let ping = agent
                .last_ping_epoch_s
                .map(|p| format!(", last ping {}", ago(alarm_at_s - p)))
                .unwrap_or_default();
            format!("  SSM agent: {}{version}{ping}", agent.ping_status)
        }
        None => "  SSM agent: none reported".to_string(),
    });
    if !d.tags.is_empty() {
        let mut tags: Vec<String> = d.tags.iter().take(TEXT_TAGS).map(|(k, v)| format!("{k}={v}")).collect();
        if d.tags.len() > TEXT_TAGS {
            tags.push(format!("… ({} more)", d.tags.len() - TEXT_TAGS));
        }
        lines.push(format!("  Tags: {}", tags.join(", ")));
    }
    lines.join("\n")
}

/// Message attributes for subscription filter policies (see the module's rules), and the tag
/// keys that are not attributes.
fn attributes(e: &Enriched) -> (BTreeMap<String, String>, Vec<String>) {
    let a = &e.alarm;
    let mut out: Vec<(String, String)> = vec![
        ("severity".into(), e.severity.as_str().to_string()),
        ("state".into(), a.state.clone()),
        ("alarmName".into(), a.name.clone()),
        ("account".into(), a.account_id.clone()),
        ("region".into(), a.region.clone()),
    ];
    if let Some(s) = &a.actions_suppressed {
        out.push(("actionsSuppressed".into(), s.by.clone()));
    }
    if let Some(m) = e.maintenance.first() {
        out.push(("mutedBy".into(), m.rule.clone()));
    }
    match &e.target {
        Some(Target::Instance(id)) => out.push(("instanceId".into(), id.clone())),
        Some(Target::AutoScalingGroup(name)) => {
            if let Some(first) = e.instances.first() {
                out.push(("instanceId".into(), first.details.instance_id.clone()));
            }
            out.push(("autoScalingGroup".into(), name.clone()));
        }
        None => {}
    }
    if !e.instances.is_empty() {
        out.push(("recentlyStarted".into(), e.instances.iter().any(|v| v.recently_started).to_string()));
    }
    if e.instances.iter().any(|v| v.role_name.is_some()) {
        out.push(("adminRole".into(), e.instances.iter().any(|v| v.admin.is_some()).to_string()));
    }
    out.retain(|(_, v)| !v.is_empty());
    out.truncate(ATTRIBUTES_MAX);
    let mut not_attributes = Vec::new();
    for (key, value) in &a.tags {
        let name = format!("tag.{key}");
        if out.len() < ATTRIBUTES_MAX && !value.is_empty() && attribute_name_ok(&name) {
            out.push((name, value.clone()));
        } else {
            not_attributes.push(key.clone());
        }
    }
    (out.into_iter().collect(), not_attributes)
}

/// SNS's rules for a message attribute name.
fn attribute_name_ok(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

/// `2026-11-23 03:01:12 UTC`.
fn utc(epoch_ms: i64) -> String {
    DateTime::from_timestamp_millis(epoch_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{epoch_ms} ms after 1970"))
}

/// "4 minutes ago"; a time after the alarm's (clocks differ) says so.
fn ago(seconds: i64) -> String {
    if seconds < 0 {
        format!("{} after the alarm", human_duration(seconds.saturating_neg()))
    } else {
        format!("{} ago", human_duration(seconds))
    }
}

/// "4 minutes", "1 hour", "3 days".
/// "4 minutes", "1 hour", "3 days".
pub fn human_duration(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", plural(n as usize))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A datapoint value, short: `99`, `0.34`, `1234.5`, `0.0026`.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = match v.abs() {
        a if a.fract() == 0.0 && a < 1e15 => 0,
        a if a >= 100.0 => 1,
        a if a >= 1.0 => 2,
        _ => 4,
    };
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').trim_end_matches('.');
        if trimmed == "-0" {
            "0".into()
        } else {
            trimmed.to_string()
        }
    } else {
        text
    }
}

/// One line of printable ASCII: line breaks and other whitespace become one space, common
/// typography becomes its ASCII look-alike, anything else non-ASCII becomes `?`.
pub(crate) fn ascii_line(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            c if c.is_whitespace() => " ".to_string(),
            '—' | '–' | '−' => "-".to_string(),
            '‘' | '’' => "'".to_string(),
            '“' | '”' => "\"".to_string(),
            '…' => "...".to_string(),
            c if c.is_ascii_graphic() => c.to_string(),
            _ => "?".to_string(),
        })
        .collect();
    mapped.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, ending in "..." when cut.
pub(crate) fn limit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

/// At most `max` characters, ending in "…" when cut.
pub(crate) fn clip_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The first at most `max` bytes of `text` (on a character boundary), and how many were left out.
fn clip_bytes(text: &str, max: usize) -> (&str, usize) {
    if text.len() <= max {
        return (text, 0);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_kind_is_camel_case_like_the_rest_of_the_schema() {
        let kinds = [
            AlarmKind::Metric {
                stat: MetricStat {
                    metric: Metric {
                        namespace: "AWS/EC2".into(),
                        name: "CPUUtilization".into(),
                        dimensions: vec![],
                    },
                    period_s: 300,
                    stat: "Average".into(),
                    unit: None,
                },
                comparison: None,
                threshold: None,
                evaluation_periods: Some(3),
            },
            AlarmKind::Composite {
                rule: "ALARM(a)".into(),
                triggering_alarms: vec!["arn:aws:cloudwatch:eu-west-1:1:alarm:a".into()],
            },
        ];
        for kind in kinds {
            let text = serde_json::to_string(&kind).unwrap();
            assert!(!text.contains('_'), "snake_case in the schema: {text}");
        }
        assert_eq!(SCHEMA, "opsflow.enriched-alert/3");
    }
    use crate::alert::model::{ActiveMute, AgentInfo, Datapoint, Dimension, InstanceDetails, Link, Place, Severity};

    const AT_MS: i64 = 1_795_402_872_345; // 2026-11-23 03:01:12.345 UTC
    const AT_S: i64 = AT_MS / 1000;

    fn ec2_alarm() -> Alarm {
        Alarm {
            name: "cpu-high-web-7".into(),
            description: Some("CPU of web-7 above 90%".into()),
            arn: Some("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu-high-web-7".into()),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            region_name: Some("EU (Ireland)".into()),
            state: "ALARM".into(),
            previous_state: Some("OK".into()),
            reason: "Threshold Crossed: 1 datapoint [99.0] was greater than the threshold (90.0).".into(),
            changed_at_ms: AT_MS,
            kind: AlarmKind::Metric {
                stat: MetricStat {
                    metric: Metric {
                        namespace: "AWS/EC2".into(),
                        name: "CPUUtilization".into(),
                        dimensions: vec![Dimension {
                            name: "InstanceId".into(),
                            value: "i-0abc".into(),
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

    fn link(label: &str, url: &str) -> Link {
        Link {
            label: label.into(),
            url: url.into(),
        }
    }

    fn web7() -> InstanceView {
        InstanceView {
            details: InstanceDetails {
                instance_id: "i-0abc".into(),
                name: Some("web-7".into()),
                tags: BTreeMap::from([("Name".into(), "web-7".into()), ("Team".into(), "platform".into())]),
                instance_type: Some("t3.small".into()),
                state: "running".into(),
                availability_zone: Some("eu-west-1a".into()),
                private_ip: Some("10.0.1.23".into()),
                launch_time_epoch_s: Some(AT_S - 240),
                instance_profile_arn: Some("arn:aws:iam::123456789012:instance-profile/web".into()),
                platform: None,
            },
            uptime_s: Some(240),
            recently_started: true,
            role_name: Some("web-role".into()),
            admin: Some("AdministratorAccess is attached".into()),
            agent: Some(AgentInfo {
                instance_id: "i-0abc".into(),
                ping_status: "Online".into(),
                last_ping_epoch_s: Some(AT_S - 60),
                agent_version: Some("3.3.987.0".into()),
            }),
            links: vec![
                link(
                    "Instance",
                    "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0abc",
                ),
                link(
                    "Session Manager",
                    "https://eu-west-1.console.aws.amazon.com/systems-manager/session-manager/i-0abc?region=eu-west-1",
                ),
            ],
        }
    }

    fn ec2_enriched() -> Enriched {
        let values = [12.0, 15.0, 97.0, 98.0, 99.0, 99.0];
        Enriched {
            alarm: ec2_alarm(),
            severity: Severity::Medium,
            target: Some(Target::Instance("i-0abc".into())),
            target_place: Some(Place {
                account_id: "123456789012".into(),
                region: "eu-west-1".into(),
            }),
            instances: vec![web7()],
            datapoints: values
                .iter()
                .enumerate()
                .map(|(i, &value)| Datapoint {
                    epoch_s: AT_S - 300 * (6 - i as i64),
                    value,
                })
                .collect(),
            sparkline: Some(sparkline(&values)),
            assessment: Some("started 4 minutes ago — likely warm-up, probably a false positive".into()),
            notes: vec!["CloudWatch GetMetricData was slow".into()],
            links: vec![link(
                "Alarm",
                "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/cpu-high-web-7",
            )],
            maintenance: vec![],
            diagnostics: None,
        }
    }

    fn rds_enriched() -> Enriched {
        let mut alarm = ec2_alarm();
        alarm.name = "orders-db-free-storage-low".into();
        alarm.description = None;
        alarm.reason = "Threshold Crossed: 1 out of the last 1 datapoints [5.1539607552E9 (23/11/26 02:45:00)] was less than the threshold (5.36870912E9).".into();
        alarm.kind = AlarmKind::Metric {
            stat: MetricStat {
                metric: Metric {
                    namespace: "AWS/RDS".into(),
                    name: "FreeStorageSpace".into(),
                    dimensions: vec![Dimension {
                        name: "DBInstanceIdentifier".into(),
                        value: "orders-db".into(),
                    }],
                },
                period_s: 300,
                stat: "Minimum".into(),
                unit: Some("Bytes".into()),
            },
            comparison: Some("LessThanThreshold".into()),
            threshold: Some(5_368_709_120.0),
            evaluation_periods: Some(1),
        };
        Enriched {
            alarm,
            severity: Severity::High,
            target: None,
            target_place: None,
            instances: vec![],
            datapoints: vec![],
            sparkline: None,
            assessment: None,
            notes: vec![],
            links: vec![link(
                "Alarm",
                "https://eu-west-1.console.aws.amazon.com/cloudwatch/home#alarmsV2:alarm/orders-db",
            )],
            maintenance: vec![],
            diagnostics: None,
        }
    }

    /// The message's protocols, parsed; every value must be a string.
    fn protocols(p: &Publication) -> Map<String, Value> {
        let Value::Object(m) = serde_json::from_str(&p.message).unwrap() else {
            panic!("not an object")
        };
        for key in ["default", "email", "sms", "sqs", "lambda", "http", "https", "firehose"] {
            assert!(m.get(key).is_some_and(Value::is_string), "{key} missing or not a string");
        }
        m
    }

    fn text_of(p: &Publication) -> String {
        protocols(p)["default"].as_str().unwrap().to_string()
    }

    fn body_of(p: &Publication) -> Value {
        let m = protocols(p);
        let body = m["sqs"].as_str().unwrap();
        for key in ["lambda", "http", "https", "firehose"] {
            assert_eq!(m[key].as_str(), Some(body));
        }
        serde_json::from_str(body).unwrap()
    }

    fn assert_subject_rules(subject: &str) {
        assert!(!subject.is_empty());
        assert!(subject.len() <= SUBJECT_MAX, "{} chars: {subject}", subject.len());
        assert!(subject.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{subject:?}");
    }

    #[test]
    fn sparkline_scales_from_min_to_max() {
        assert_eq!(sparkline(&[12.0, 15.0, 97.0, 98.0, 99.0, 99.0]), "▁▁████");
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5.0, 5.0, 5.0]), "▄▄▄");
        assert_eq!(sparkline(&[42.0]), "▄");
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[0.0, f64::NAN, 10.0]), "▁ █");
        assert_eq!(sparkline(&[f64::NAN]), " ");
        assert_eq!(sparkline(&[-f64::MAX, f64::MAX]).chars().count(), 2);
    }

    #[test]
    fn full_rendering_of_an_ec2_alert() {
        let p = publication(&ec2_enriched());
        assert_eq!(p.subject, "ALARM: cpu-high-web-7 on i-0abc (web-7)");
        let text = text_of(&p);
        assert_eq!(protocols(&p)["email"].as_str(), Some(text.as_str()));
        for line in [
            "ALARM: cpu-high-web-7 (was OK) at 2026-11-23 03:01:12 UTC, eu-west-1, account 123456789012",
            "Description: CPU of web-7 above 90%",
            "Threshold Crossed: 1 datapoint [99.0] was greater than the threshold (90.0).",
            "Metric: AWS/EC2 CPUUtilization (InstanceId=i-0abc) Average over 300 s",
            "Last 6 datapoints: 12, 15, 97, 98, 99, 99  ▁▁████",
            "Assessment: started 4 minutes ago — likely warm-up, probably a false positive",
            "Instance i-0abc \"web-7\": t3.small, running, eu-west-1a, 10.0.1.23",
            "  started 4 minutes ago (recently started)",
            "  role web-role: ADMIN — AdministratorAccess is attached",
            "  SSM agent: Online (agent 3.3.987.0), last ping 1 minute ago",
            "  Tags: Name=web-7, Team=platform",
            "Links:",
            "  Alarm: https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/cpu-high-web-7",
            "  Instance: https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0abc",
            "  Session Manager: https://eu-west-1.console.aws.amazon.com/systems-manager/session-manager/i-0abc?region=eu-west-1",
            "Notes:",
            "  - CloudWatch GetMetricData was slow",
        ] {
            assert!(text.lines().any(|l| l == line), "missing line {line:?} in\n{text}");
        }
        // Facts before the instance, links and notes last.
        let pos = |needle: &str| text.find(needle).unwrap();
        assert!(pos("Assessment:") < pos("Instance i-0abc") && pos("Instance i-0abc") < pos("Links:") && pos("Links:") < pos("Notes:"));
    }

    #[test]
    fn json_body_carries_the_enriched_alert() {
        let e = ec2_enriched();
        let body = body_of(&publication(&e));
        assert_eq!(body["schema"], SCHEMA);
        assert_eq!(body["severity"], "medium");
        assert_eq!(body["alarm"]["name"], "cpu-high-web-7");
        assert_eq!(body["alarm"]["kind"]["type"], "metric");
        assert_eq!(body["target"], json!({"type": "instance", "id": "i-0abc"}));
        assert_eq!(body["instances"][0]["details"]["instanceId"], "i-0abc");
        assert_eq!(body["datapoints"].as_array().unwrap().len(), 6);
        assert!(body.get("omitted").is_none());
        let mut back = body.clone();
        back.as_object_mut().unwrap().remove("schema");
        assert_eq!(serde_json::from_value::<Enriched>(back).unwrap(), e);
    }

    #[test]
    fn sms_is_short_ascii() {
        let p = publication(&ec2_enriched());
        let sms = protocols(&p)["sms"].as_str().unwrap().to_string();
        assert!(sms.len() <= SMS_MAX, "{}", sms.len());
        assert!(sms.is_ascii());
        assert!(
            sms.starts_with("ALARM: cpu-high-web-7 on i-0abc (web-7), eu-west-1: started 4 minutes ago - likely"),
            "{sms}"
        );

        let mut long = ec2_enriched();
        long.alarm.name = "x".repeat(255);
        let sms = protocols(&publication(&long))["sms"].as_str().unwrap().to_string();
        assert_eq!(sms.chars().count(), SMS_MAX);
        assert!(sms.ends_with("..."));
    }

    #[test]
    fn attributes_for_an_instance() {
        let p = publication(&ec2_enriched());
        let want: BTreeMap<String, String> = [
            ("severity", "medium"),
            ("account", "123456789012"),
            ("region", "eu-west-1"),
            ("alarmName", "cpu-high-web-7"),
            ("state", "ALARM"),
            ("instanceId", "i-0abc"),
            ("recentlyStarted", "true"),
            ("adminRole", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(p.attributes, want);
    }

    #[test]
    fn attributes_for_an_auto_scaling_group_and_without_target() {
        let mut e = ec2_enriched();
        e.target = Some(Target::AutoScalingGroup("web-asg".into()));
        let mut second = web7();
        second.details.instance_id = "i-0def".into();
        second.recently_started = false;
        second.admin = None;
        e.instances[0].recently_started = false;
        e.instances[0].admin = None;
        e.instances.push(second);
        let p = publication(&e);
        assert_eq!(p.attributes["autoScalingGroup"], "web-asg");
        assert_eq!(p.attributes["instanceId"], "i-0abc");
        assert_eq!(p.attributes["recentlyStarted"], "false");
        assert_eq!(p.attributes["adminRole"], "false");
        assert!(p.attributes.len() <= 10);
        assert_eq!(p.subject, "ALARM: cpu-high-web-7 on Auto Scaling group web-asg");
        let text = text_of(&p);
        assert!(text.contains("Auto Scaling group web-asg: 2 instances"), "{text}");
        assert!(text.contains("  i-0def Session Manager: https://"), "{text}");

        let p = publication(&rds_enriched());
        let keys: Vec<&str> = p.attributes.keys().map(String::as_str).collect();
        assert_eq!(keys, ["account", "alarmName", "region", "severity", "state"]);
    }

    fn suppressed_composite() -> Enriched {
        let mut e = rds_enriched();
        e.alarm.name = "web-tier-unhealthy".into();
        e.alarm.kind = AlarmKind::Composite {
            rule: "ALARM(\"cpu-high-web-7\") OR ALARM(\"web-5xx-high\")".into(),
            triggering_alarms: vec![],
        };
        e.alarm.actions_suppressed = Some(Suppression {
            by: "Alarm".into(),
            reason: Some("Alarm action suppressed by web-maintenance-window".into()),
            suppressor: Some("web-maintenance-window".into()),
            wait_period_s: Some(120),
            extension_period_s: Some(180),
        });
        e.severity = Severity::Low;
        e
    }

    #[test]
    fn an_alarm_muted_for_maintenance_says_by_which_procedure_and_when() {
        let mut e = ec2_enriched();
        e.maintenance = vec![ActiveMute {
            rule: "opsflow-i-0abc-nightly-7".into(),
            description: Some(
                "opsflow clean-stop (clean-stop) on i-0abc: run nightly started 2026-12-06T02:00:00Z by arn:aws:scheduler:…".into(),
            ),
        }];
        let p = publication(&e);
        assert_eq!(p.attributes["mutedBy"], "opsflow-i-0abc-nightly-7");
        let text = protocols(&p)["email"].as_str().unwrap().to_string();
        assert!(
            text.contains("Muted for maintenance by alarm mute rule opsflow-i-0abc-nightly-7 (opsflow clean-stop (clean-stop) on i-0abc: run nightly started 2026-12-06T02:00:00Z"),
            "{text}"
        );
        assert_eq!(body_of(&p)["maintenance"][0]["rule"], "opsflow-i-0abc-nightly-7");
        assert!(
            body_of(&publication(&ec2_enriched())).get("maintenance").is_none(),
            "absent when not muted"
        );
    }

    #[test]
    fn suppressed_actions_are_a_body_field_an_attribute_and_a_line() {
        let p = publication(&suppressed_composite());
        assert_eq!(p.attributes["actionsSuppressed"], "Alarm");
        assert_eq!(p.attributes["severity"], "low");
        let body = body_of(&p);
        assert_eq!(
            body["alarm"]["actionsSuppressed"],
            json!({"by": "Alarm", "reason": "Alarm action suppressed by web-maintenance-window",
                   "suppressor": "web-maintenance-window", "waitPeriodS": 120, "extensionPeriodS": 180})
        );
        let text = text_of(&p);
        assert!(
            text.contains("\nActions suppressed: Alarm (Alarm action suppressed by web-maintenance-window; suppressor web-maintenance-window, wait 120 s, extension 180 s) - CloudWatch ran none of this alarm's actions for this change\n"),
            "{text}"
        );
        // Not suppressed: no attribute, no line.
        let p = publication(&rds_enriched());
        assert!(!p.attributes.contains_key("actionsSuppressed"));
        assert!(!text_of(&p).contains("Actions suppressed"));
        assert_eq!(body_of(&p)["alarm"]["actionsSuppressed"], Value::Null);
    }

    #[test]
    fn partial_data_and_the_evaluation_settings_are_said() {
        let mut e = ec2_enriched();
        e.alarm.evaluation_state = Some("PARTIAL_DATA".into());
        e.alarm.datapoints_to_alarm = Some(1);
        e.alarm.treat_missing_data = Some("breaching".into());
        let p = publication(&e);
        let text = text_of(&p);
        assert!(
            text.contains("\nEvaluation: PARTIAL_DATA - evaluated on part of its metrics only"),
            "{text}"
        );
        assert!(
            text.contains("\nAlarms on 1 of 1 datapoints, missing data treated as breaching\n"),
            "{text}"
        );
        let body = body_of(&p);
        assert_eq!(body["alarm"]["evaluationState"], "PARTIAL_DATA");
        assert_eq!(
            (
                body["alarm"]["datapointsToAlarm"].as_i64(),
                body["alarm"]["treatMissingData"].as_str()
            ),
            (Some(1), Some("breaching"))
        );
    }

    #[test]
    fn tags_fill_the_attributes_left_and_the_rest_stay_in_the_body() {
        let mut e = suppressed_composite();
        // 6 attributes of opsflow's own: room for 4 tags.
        e.alarm.tags = [
            ("team", "web"),
            ("env", "prod"),
            ("cost center", "cc-1"),
            ("owner", ""),
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        e.alarm.tags_status = Some("SUCCESS".into());
        let p = publication(&e);
        assert_eq!(p.attributes.len(), 10);
        let tags: Vec<(&str, &str)> = p
            .attributes
            .iter()
            .filter(|(k, _)| k.starts_with("tag."))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // In key order; "cost center" has a space and "owner" no value: never attributes.
        assert_eq!(tags, [("tag.a", "1"), ("tag.b", "2"), ("tag.c", "3"), ("tag.env", "prod")]);
        let body = body_of(&p);
        assert_eq!(body["tagsNotAttributes"], json!(["cost center", "owner", "team"]));
        assert_eq!(body["alarm"]["tags"]["cost center"], "cc-1");
        assert!(text_of(&p).contains("\nAlarm tags: a=1, b=2, c=3, cost center=cc-1, env=prod, owner=, team=web\n"));

        // An instance alert with an Auto Scaling group has 9 of its own: one tag.
        let mut e = ec2_enriched();
        e.target = Some(Target::AutoScalingGroup("web-asg".into()));
        e.alarm.tags = e_tags(&[("env", "prod"), ("team", "web")]);
        let p = publication(&e);
        assert_eq!(p.attributes.len(), 10);
        assert_eq!(p.attributes["tag.env"], "prod");
        assert_eq!(body_of(&p)["tagsNotAttributes"], json!(["team"]));
        for name in p.attributes.keys() {
            assert!(attribute_name_ok(name), "{name}");
        }
        assert!(!attribute_name_ok("tag.aws..x") && !attribute_name_ok("AWS.tag") && !attribute_name_ok("tag.a/b"));
    }

    fn e_tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_metric_of_another_account_says_so() {
        let mut e = ec2_enriched();
        e.target_place = Some(Place {
            account_id: "444455556666".into(),
            region: "eu-west-1".into(),
        });
        assert!(text_of(&publication(&e)).contains("\nMetric of account 444455556666 (eu-west-1)\n"));
        assert!(!text_of(&publication(&ec2_enriched())).contains("Metric of account"));
    }

    #[test]
    fn alarm_without_target_carries_its_own_context() {
        let p = publication(&rds_enriched());
        assert_eq!(p.subject, "ALARM: orders-db-free-storage-low");
        let text = text_of(&p);
        assert!(
            text.contains("\nMetric: AWS/RDS FreeStorageSpace (DBInstanceIdentifier=orders-db) Minimum over 300 s\n"),
            "{text}"
        );
        assert!(
            text.contains("  Alarm: https://eu-west-1.console.aws.amazon.com/cloudwatch/"),
            "{text}"
        );
        assert!(!text.contains("\nInstance "), "{text}");
        assert!(!text.contains("Description:"), "{text}");
        assert_eq!(body_of(&p)["target"], Value::Null);
    }

    #[test]
    fn composite_and_math_alarms_show_their_rule_and_queries() {
        let mut e = rds_enriched();
        e.alarm.kind = AlarmKind::Composite {
            rule: "ALARM(\"cpu-high-web-7\") OR ALARM(\"web-5xx-high\")".into(),
            triggering_alarms: vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu-high-web-7".into()],
        };
        let text = text_of(&publication(&e));
        assert!(
            text.contains("\nComposite rule: ALARM(\"cpu-high-web-7\") OR ALARM(\"web-5xx-high\")\nTriggered by: cpu-high-web-7\n"),
            "{text}"
        );

        let AlarmKind::Metric { stat, .. } = ec2_alarm().kind else {
            unreachable!()
        };
        e.alarm.kind = AlarmKind::AnomalyDetection {
            queries: vec![
                MetricQuery {
                    id: "m1".into(),
                    account_id: None,
                    expression: None,
                    metric_stat: Some(stat),
                    label: None,
                    return_data: true,
                    period_s: None,
                },
                MetricQuery {
                    id: "ad1".into(),
                    account_id: None,
                    expression: Some("ANOMALY_DETECTION_BAND(m1, 2)".into()),
                    metric_stat: None,
                    label: Some("CPUUtilization (expected)".into()),
                    return_data: true,
                    period_s: None,
                },
            ],
            threshold_metric_id: "ad1".into(),
            comparison: Some("GreaterThanUpperThreshold".into()),
            evaluation_periods: Some(3),
        };
        let text = text_of(&publication(&e));
        assert!(
            text.contains(
                "\nAnomaly detection (band ad1):\n  m1: AWS/EC2 CPUUtilization (InstanceId=i-0abc) Average over 300 s\n  ad1 = ANOMALY_DETECTION_BAND(m1, 2) (CPUUtilization (expected))\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn terminated_and_missing_instances_are_said_plainly() {
        let mut e = ec2_enriched();
        let v = &mut e.instances[0];
        v.details.state = "terminated".into();
        v.uptime_s = None;
        v.recently_started = false;
        v.agent = None;
        let text = text_of(&publication(&e));
        assert!(
            text.contains(
                "Instance i-0abc \"web-7\": t3.small, terminated, eu-west-1a, 10.0.1.23\n  the instance is terminated: it no longer runs\n"
            ),
            "{text}"
        );
        assert!(text.contains("  SSM agent: none reported"), "{text}");

        let mut e = ec2_enriched();
        e.instances.clear();
        e.notes = vec!["instance i-0abc was not found".into()];
        let p = publication(&e);
        assert_eq!(p.subject, "ALARM: cpu-high-web-7 on i-0abc");
        let text = text_of(&p);
        assert!(
            text.contains("Instance i-0abc: no details (not found, or the lookup failed: see the notes)"),
            "{text}"
        );
        assert!(text.contains("  - instance i-0abc was not found"), "{text}");
        assert!(!p.attributes.contains_key("recentlyStarted"));
    }

    #[test]
    fn subject_is_short_printable_ascii_on_one_line() {
        let mut e = ec2_enriched();
        e.alarm.name = "Überlast\r\nin café — 🔥 ".to_string() + &"very-long-name-".repeat(20);
        let p = publication(&e);
        assert_subject_rules(&p.subject);
        assert!(
            p.subject.starts_with("ALARM: ?berlast in caf? - ? very-long-name-"),
            "{}",
            p.subject
        );
        assert!(p.subject.ends_with("..."), "{}", p.subject);
        assert_eq!(p.subject.len(), SUBJECT_MAX);

        e.alarm.name = "\n\n".into();
        e.alarm.state = String::new();
        e.target = None;
        let p = publication(&e);
        assert_eq!(p.subject, "CloudWatch alarm");
    }

    #[test]
    fn huge_alerts_stay_under_the_sns_limit() {
        let mut e = ec2_enriched();
        e.notes = (0..2000).map(|i| format!("note {i}: {}", "\"quoted\" ".repeat(500))).collect();
        e.datapoints = (0..5000)
            .map(|i| Datapoint {
                epoch_s: AT_S - 60 * (5000 - i),
                value: i as f64 + 0.123_456,
            })
            .collect();
        e.instances = (0..200).map(|_| web7()).collect();
        let p = publication(&e);
        assert!(p.message.len() <= MESSAGE_MAX, "{}", p.message.len());
        let body = body_of(&p);
        assert!(body["omitted"]["notes"].as_u64().unwrap() > 0);
        assert!(body["omitted"]["datapoints"].as_u64().unwrap() > 0);
        // The latest datapoints are the ones kept.
        let kept = body["datapoints"].as_array().unwrap();
        assert_eq!(kept.last().unwrap()["epochS"], AT_S - 60);
        let text = text_of(&p);
        assert!(text.contains("more notes not shown"), "{}", &text[..500]);
        assert!(text.contains("Last 20 datapoints:"));
    }

    #[test]
    fn unrecognized_message_is_passed_on_for_people() {
        let raw = "AWS Budget Notification November 23, 2026\nAWS Account 123456789012\n...";
        let p = unrecognized_publication(
            "sns",
            Some("AWS Budgets: monthly-dev has exceeded your alert threshold"),
            raw,
            "the SNS message is not JSON",
        );
        assert_eq!(
            p.subject,
            "Unrecognized alert via sns: AWS Budgets: monthly-dev has exceeded your alert threshold"
        );
        assert_subject_rules(&p.subject);
        let text = text_of(&p);
        assert!(
            text.starts_with("opsflow could not understand a message that arrived via sns.\nWhy: the SNS message is not JSON\n"),
            "{text}"
        );
        assert!(text.ends_with(raw), "{text}");
        let body = body_of(&p);
        assert_eq!(body["schema"], SCHEMA);
        assert_eq!(
            body["unrecognized"],
            json!({"source": "sns", "subject": "AWS Budgets: monthly-dev has exceeded your alert threshold", "why": "the SNS message is not JSON", "raw": raw, "rawBytesOmitted": 0})
        );
        assert_eq!(
            p.attributes,
            BTreeMap::from([("severity".into(), "high".into()), ("source".into(), "sns".into())])
        );
        assert!(protocols(&p)["sms"].as_str().unwrap().len() <= SMS_MAX);
    }

    #[test]
    fn unrecognized_without_subject_uses_the_first_line_and_caps_the_raw_text() {
        let raw = format!("\n  {{\"weird\": \"é\u{0}\"}}\n{}", "\"\u{1}é".repeat(100_000));
        let p = unrecognized_publication("eventbridge", None, &raw, "not an alarm");
        assert_subject_rules(&p.subject);
        assert!(
            p.subject.starts_with("Unrecognized alert via eventbridge: {\"weird\": \"??\"}"),
            "{}",
            p.subject
        );
        assert!(p.message.len() <= MESSAGE_MAX, "{}", p.message.len());
        let body = body_of(&p);
        assert!(body["unrecognized"]["rawBytesOmitted"].as_u64().unwrap() > 0);
        assert!(text_of(&p).contains("more not shown"));

        let p = unrecognized_publication("sns", Some(" "), "", "empty message");
        assert_eq!(p.subject, "Unrecognized alert via sns");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(num(99.0), "99");
        assert_eq!(num(0.337675), "0.3377");
        assert_eq!(num(1.987), "1.99");
        assert_eq!(num(612_301_440.5), "612301440.5");
        assert_eq!(num(-0.00001), "0");
        assert_eq!(human_duration(240), "4 minutes");
        assert_eq!(human_duration(60), "1 minute");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(ago(-5), "5 seconds after the alarm");
        assert_eq!(utc(AT_MS), "2026-11-23 03:01:12 UTC");
    }
}
