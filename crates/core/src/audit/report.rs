//! A scheduled check's report: its findings, scope by scope (account × region), the difference
//! from the previous report at the top, as JSON (for tools) and text (for people), and the SNS
//! summary.
//!
//! A finding's `key` is stable from run to run (account, region, kind, subject), so two reports
//! compare by key: a key only in the new one is *new*, only in the old one *resolved* — but only
//! when its scope was scanned this time: a scope that failed resolves nothing, its findings are
//! counted as *not re-checked*. A finding whose instances changed is *changed*.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::alert::render::{ascii_line, limit, message, MESSAGE_MAX, SMS_MAX, SUBJECT_MAX};
use crate::alert::Publication;

/// The report's schema name.
pub const SCHEMA: &str = "opsflow.audit-report/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// An instance a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl InstanceRef {
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} ({n})", self.id),
            None => self.id.clone(),
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable across runs: `<account>/<region>/<kind>/<subject>[/<detail>]`.
    pub key: String,
    pub kind: String,
    pub severity: Severity,
    pub account: String,
    pub region: String,
    /// What it is about: a role's ARN, an instance id, a registration id.
    pub subject: String,
    /// One line.
    pub title: String,
    /// Why: the policies, statements and resources (or the facts) that make it a finding.
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub instances: Vec<InstanceRef>,
    /// The likely cause (fleet health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Where the rule comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What opsflow did about it: fleet health's automatic fix (an instance profile for an
    /// instance without one), or why that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

impl Finding {
    /// A finding with nothing but its identity: key `<account>/<region>/<kind>/<detail>`.
    pub fn new(account: &str, region: &str, kind: &str, detail: &str, severity: Severity, subject: &str, title: String) -> Finding {
        Finding {
            key: format!("{account}/{region}/{kind}/{detail}"),
            kind: kind.into(),
            severity,
            account: account.into(),
            region: region.into(),
            subject: subject.into(),
            title,
            evidence: Vec::new(),
            instances: Vec::new(),
            cause: None,
            fix: None,
            source: None,
            fixed: None,
        }
    }
}

/// One scope's scan, as the scan step writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub account: String,
    pub region: String,
    pub scanned_at: String,
    /// What was looked at, e.g. `{"instances": 12, "roles": 4}`.
    pub counted: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
    /// Why the scope could not be read (then no findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a scope went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    pub account: String,
    pub region: String,
    /// `scanned` or `failed`.
    pub status: String,
    #[serde(default)]
    pub counted: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A finding that is still there with other instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changed {
    pub key: String,
    pub title: String,
    pub added: Vec<InstanceRef>,
    pub removed: Vec<InstanceRef>,
}

/// The difference from the previous report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    /// The previous report's run, None for the first report.
    pub previous_run: Option<String>,
    pub previous_at: Option<String>,
    /// Keys of the findings that are new.
    pub new: Vec<String>,
    /// The findings that are gone (whole, as they were).
    pub resolved: Vec<Finding>,
    pub changed: Vec<Changed>,
    /// Previous findings of scopes that failed this time (not re-checked, not resolved).
    pub not_rechecked: usize,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: String,
    /// `roles` or `ssm-health`.
    pub check: String,
    pub title: String,
    pub run: String,
    pub generated_at: String,
    pub scopes: Vec<Scope>,
    pub counts: BTreeMap<Severity, usize>,
    pub changes: Changes,
    pub findings: Vec<Finding>,
}

/// A scope that could not be scanned.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedScope {
    pub account: String,
    pub region: String,
    pub error: String,
}

impl Report {
    /// The report of `parts` and `failed` scopes, compared with `previous`.
    pub fn new(
        check: &str,
        title: &str,
        run: &str,
        generated_at: &str,
        parts: Vec<Part>,
        mut failed: Vec<FailedScope>,
        previous: Option<&Report>,
    ) -> Report {
        let (parts, unread): (Vec<Part>, Vec<Part>) = parts.into_iter().partition(|p| p.error.is_none());
        failed.extend(unread.into_iter().map(|p| FailedScope {
            account: p.account,
            region: p.region,
            error: p.error.unwrap_or_default(),
        }));
        let mut scopes: Vec<Scope> = parts
            .iter()
            .map(|p| Scope {
                account: p.account.clone(),
                region: p.region.clone(),
                status: "scanned".into(),
                counted: p.counted.clone(),
                error: None,
            })
            .chain(failed.into_iter().map(|f| Scope {
                account: f.account,
                region: f.region,
                status: "failed".into(),
                counted: BTreeMap::new(),
                error: Some(f.error),
            }))
            .collect();
        scopes.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        let mut findings: Vec<Finding> = parts.into_iter().flat_map(|p| p.findings).collect();
        findings.sort_by(|a, b| (a.severity, &a.account, &a.region, &a.key).cmp(&(b.severity, &b.account, &b.region, &b.key)));
        let mut counts = BTreeMap::new();
        for f in &findings {
            *counts.entry(f.severity).or_insert(0) += 1;
        }
        let changes = previous.map(|p| diff(p, &findings, &scopes)).unwrap_or_default();
        Report {
            schema: SCHEMA.into(),
            check: check.into(),
            title: title.into(),
            run: run.into(),
            generated_at: generated_at.into(),
            scopes,
            counts,
            changes,
            findings,
        }
    }

    fn counts_line(&self) -> String {
        if self.findings.is_empty() {
            return "no findings".into();
        }
        self.counts
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn changes_line(&self) -> String {
        let c = &self.changes;
        match &c.previous_run {
            None => "first report".into(),
            Some(_) => format!("{} new, {} resolved, {} changed", c.new.len(), c.resolved.len(), c.changed.len()),
        }
    }

    /// The text report: scope, changes since the previous report, then every finding.
    pub fn text(&self) -> String {
        self.render_text(usize::MAX)
    }

    fn render_text(&self, max_findings: usize) -> String {
        let mut t = format!("{} — run {}, {}\n", self.title, self.run, self.generated_at);
        let failed = self.scopes.iter().filter(|s| s.status == "failed").count();
        t += &format!(
            "Scope: {} account/region pairs scanned{}\n",
            self.scopes.len() - failed,
            if failed > 0 { format!(", {failed} FAILED") } else { String::new() }
        );
        for s in &self.scopes {
            let what = s.counted.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
            match &s.error {
                Some(e) => t += &format!("  {} {}: FAILED: {e}\n", s.account, s.region),
                None => t += &format!("  {} {}: {what}\n", s.account, s.region),
            }
        }
        let c = &self.changes;
        t += "\n";
        match (&c.previous_run, &c.previous_at) {
            (Some(run), at) => {
                t += &format!(
                    "Since the previous report (run {run}{}): {}\n",
                    at.as_deref().map(|a| format!(", {a}")).unwrap_or_default(),
                    self.changes_line()
                );
                let by_key: BTreeMap<&str, &Finding> = self.findings.iter().map(|f| (f.key.as_str(), f)).collect();
                for key in &c.new {
                    if let Some(f) = by_key.get(key.as_str()) {
                        t += &format!("  NEW       {}\n", line(f));
                    }
                }
                for f in &c.resolved {
                    t += &format!("  RESOLVED  {}\n", line(f));
                }
                for ch in &c.changed {
                    let mut what = Vec::new();
                    if !ch.added.is_empty() {
                        what.push(format!("now also on {}", labels(&ch.added)));
                    }
                    if !ch.removed.is_empty() {
                        what.push(format!("no longer on {}", labels(&ch.removed)));
                    }
                    t += &format!("  CHANGED   {}: {}\n", ch.title, what.join("; "));
                }
                if c.not_rechecked > 0 {
                    t += &format!(
                        "  ({} earlier findings are in scopes that failed this time: not re-checked)\n",
                        c.not_rechecked
                    );
                }
            }
            (None, _) => t += "First report: nothing to compare with.\n",
        }
        t += &format!("\nFindings: {}\n", self.counts_line());
        for f in self.findings.iter().take(max_findings) {
            t += &format!("\n[{}] {}\n", f.severity.as_str(), f.title);
            t += &format!("  account {} region {} · {}\n", f.account, f.region, f.subject);
            if !f.instances.is_empty() {
                t += &format!("  instances: {}\n", labels(&f.instances));
            }
            for e in &f.evidence {
                t += &format!("  - {e}\n");
            }
            if let Some(cause) = &f.cause {
                t += &format!("  likely cause: {cause}\n");
            }
            if let Some(fix) = &f.fix {
                t += &format!("  fix: {fix}\n");
            }
            if let Some(fixed) = &f.fixed {
                t += &format!("  fixed by opsflow: {fixed}\n");
            }
            if let Some(source) = &f.source {
                t += &format!("  source: {source}\n");
            }
        }
        if self.findings.len() > max_findings {
            t += &format!(
                "\n… and {} more findings: see the full report.\n",
                self.findings.len() - max_findings
            );
        }
        t
    }

    /// The SNS summary: the changes and counts, then as many findings as fit, and where the full
    /// report is.
    pub fn publication(&self, report_url: &str) -> Publication {
        let subject = limit(
            &ascii_line(&format!("opsflow {}: {}; {}", self.check, self.changes_line(), self.counts_line())),
            SUBJECT_MAX,
        );
        let sms = limit(&subject, SMS_MAX);
        let body = json!({
            "schema": SCHEMA,
            "check": self.check,
            "run": self.run,
            "generatedAt": self.generated_at,
            "report": report_url,
            "counts": self.counts,
            "new": self.changes.new,
            "resolved": self.changes.resolved.iter().map(|f| &f.key).collect::<Vec<_>>(),
            "changed": self.changes.changed.iter().map(|c| &c.key).collect::<Vec<_>>(),
            "failedScopes": self.scopes.iter().filter(|s| s.status == "failed").map(|s| json!({"account": s.account, "region": s.region, "error": s.error})).collect::<Vec<_>>(),
        });
        let mut shown = self.findings.len();
        loop {
            let text = format!("{}\nFull report: {report_url}\n", self.render_text(shown));
            let m = message(&text, &sms, &body);
            if m.len() <= MESSAGE_MAX || shown == 0 {
                return Publication {
                    subject,
                    message: m,
                    attributes: BTreeMap::from([
                        ("check".to_string(), self.check.clone()),
                        ("new".to_string(), self.changes.new.len().to_string()),
                        (
                            "highest".to_string(),
                            self.counts.keys().next().map_or("none", |s| s.as_str()).to_string(),
                        ),
                    ]),
                };
            }
            shown /= 2;
        }
    }
}

fn labels(instances: &[InstanceRef]) -> String {
    const SHOWN: usize = 10;
    let mut s = instances.iter().take(SHOWN).map(InstanceRef::label).collect::<Vec<_>>().join(", ");
    if instances.len() > SHOWN {
        s += &format!(" and {} more", instances.len() - SHOWN);
    }
    s
}

fn line(f: &Finding) -> String {
    let on = if f.instances.is_empty() {
        String::new()
    } else {
        format!(" — on {}", labels(&f.instances))
    };
    format!("{:<8} {} {} {}{on}", f.severity.as_str(), f.account, f.region, f.title)
}

fn diff(previous: &Report, findings: &[Finding], scopes: &[Scope]) -> Changes {
    let scanned: BTreeSet<(&str, &str)> = scopes
        .iter()
        .filter(|s| s.status == "scanned")
        .map(|s| (s.account.as_str(), s.region.as_str()))
        .collect();
    let before: BTreeMap<&str, &Finding> = previous.findings.iter().map(|f| (f.key.as_str(), f)).collect();
    let now: BTreeMap<&str, &Finding> = findings.iter().map(|f| (f.key.as_str(), f)).collect();
    let mut changes = Changes {
        previous_run: Some(previous.run.clone()),
        previous_at: Some(previous.generated_at.clone()),
        ..Changes::default()
    };
    for (key, f) in &now {
        match before.get(key) {
            None => changes.new.push(key.to_string()),
            Some(old) => {
                let (a, b): (BTreeSet<&InstanceRef>, BTreeSet<&InstanceRef>) =
                    (old.instances.iter().collect(), f.instances.iter().collect());
                let ids = |s: &BTreeSet<&InstanceRef>| s.iter().map(|i| i.id.clone()).collect::<BTreeSet<_>>();
                let (old_ids, new_ids) = (ids(&a), ids(&b));
                let added: Vec<InstanceRef> = f.instances.iter().filter(|i| !old_ids.contains(&i.id)).cloned().collect();
                let removed: Vec<InstanceRef> = old.instances.iter().filter(|i| !new_ids.contains(&i.id)).cloned().collect();
                if !added.is_empty() || !removed.is_empty() {
                    changes.changed.push(Changed {
                        key: key.to_string(),
                        title: f.title.clone(),
                        added,
                        removed,
                    });
                }
            }
        }
    }
    for (key, f) in before {
        if now.contains_key(key) {
            continue;
        }
        if scanned.contains(&(f.account.as_str(), f.region.as_str())) {
            changes.resolved.push(f.clone());
        } else {
            changes.not_rechecked += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(account: &str, key: &str, severity: Severity, instances: &[&str]) -> Finding {
        Finding {
            key: format!("{account}/us-east-1/{key}"),
            kind: key.split('/').next().unwrap().into(),
            severity,
            account: account.into(),
            region: "us-east-1".into(),
            subject: key.into(),
            title: format!("finding {key}"),
            evidence: vec!["because".into()],
            instances: instances
                .iter()
                .map(|i| InstanceRef {
                    id: i.to_string(),
                    name: None,
                })
                .collect(),
            cause: None,
            fix: Some("do this".into()),
            source: None,
            fixed: None,
        }
    }

    fn part(account: &str, findings: Vec<Finding>) -> Part {
        Part {
            account: account.into(),
            region: "us-east-1".into(),
            scanned_at: "2026-12-06T00:00:00Z".into(),
            counted: BTreeMap::from([("instances".to_string(), 3)]),
            findings,
            error: None,
        }
    }

    #[test]
    fn the_difference_from_the_previous_report_is_new_resolved_changed_and_not_rechecked() {
        const A: &str = "111111111111";
        const B: &str = "222222222222";
        let first = Report::new(
            "roles",
            "Instance-role audit",
            "run-1",
            "2026-12-05T00:00:00Z",
            vec![
                part(
                    A,
                    vec![
                        finding(A, "admin/web", Severity::Critical, &["i-1"]),
                        finding(A, "no-profile/i-9", Severity::Medium, &["i-9"]),
                    ],
                ),
                part(B, vec![finding(B, "admin/db", Severity::Critical, &["i-5"])]),
            ],
            vec![],
            None,
        );
        assert_eq!(first.changes.previous_run, None);
        assert!(first.text().contains("First report"));
        let second = Report::new(
            "roles",
            "Instance-role audit",
            "run-2",
            "2026-12-06T00:00:00Z",
            vec![part(
                A,
                vec![
                    finding(A, "admin/web", Severity::Critical, &["i-1", "i-2"]),
                    finding(A, "escalation/web/iam-pass-role-any", Severity::High, &["i-1"]),
                ],
            )],
            vec![FailedScope {
                account: B.into(),
                region: "us-east-1".into(),
                error: "AccessDenied".into(),
            }],
            Some(&first),
        );
        let c = &second.changes;
        assert_eq!(c.previous_run.as_deref(), Some("run-1"));
        assert_eq!(c.new, [format!("{A}/us-east-1/escalation/web/iam-pass-role-any")]);
        assert_eq!(c.resolved.len(), 1, "no-profile/i-9 is resolved: its scope was scanned");
        assert_eq!(c.resolved[0].key, format!("{A}/us-east-1/no-profile/i-9"));
        assert_eq!(c.not_rechecked, 1, "B's admin finding is not resolved: B failed");
        assert_eq!(c.changed.len(), 1);
        assert_eq!(
            c.changed[0].added,
            [InstanceRef {
                id: "i-2".into(),
                name: None
            }]
        );
        assert_eq!(second.counts, BTreeMap::from([(Severity::Critical, 1), (Severity::High, 1)]));
        let text = second.text();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in\n{text}"));
        assert!(
            at("Since the previous report (run run-1") < at("Findings: 1 critical, 1 high"),
            "the changes come first"
        );
        assert!(at("NEW") < at("RESOLVED") && at("RESOLVED") < at("CHANGED"));
        assert!(text.contains("now also on i-2"));
        assert!(text.contains("FAILED: AccessDenied"));
        assert!(text.contains("not re-checked"));
        let p = second.publication("s3://bucket/audit/roles/run-2/report.txt");
        assert!(p.subject.len() <= 100, "{}", p.subject);
        assert_eq!(p.subject, "opsflow roles: 1 new, 1 resolved, 1 changed; 1 critical, 1 high");
        assert_eq!(p.attributes["highest"], "critical");
        let parsed: Report = serde_json::from_value(serde_json::to_value(&second).unwrap()).unwrap();
        assert_eq!(parsed, second, "the JSON report reads back as the previous report");
    }

    #[test]
    fn a_huge_report_still_fits_one_sns_message() {
        let many: Vec<Finding> = (0..20_000)
            .map(|i| finding("111111111111", &format!("no-profile/i-{i:08}"), Severity::Medium, &["i-x"]))
            .collect();
        let r = Report::new(
            "roles",
            "Instance-role audit",
            "r",
            "t",
            vec![part("111111111111", many)],
            vec![],
            None,
        );
        let p = r.publication("s3://b/k");
        assert!(p.message.len() <= MESSAGE_MAX);
        assert!(p.message.contains("more findings: see the full report"));
    }
}
