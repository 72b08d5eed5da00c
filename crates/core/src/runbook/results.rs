//! What a run came to, target by target, and the message that tells people.
//!
//! Every target ends with one [`TargetResult`] (the audit row). The run's summary counts them;
//! a target that never started because the errors passed `MaxErrors` is `NotStarted`. The
//! notification has a subject like `runbook patch-dev: 2 of 40 failed` (≤ 100 ASCII
//! characters), a text body that lists each failure with the end of its output and a link to
//! the full output, a JSON body for machines, and message attributes for filter policies; it is
//! cut to fit SNS's 256 KiB by listing fewer failures (the counts stay exact).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::input::Notify;
use super::targets::Excluded;
use crate::alert::render::{ascii_line, limit, message, MESSAGE_MAX, SMS_MAX, SUBJECT_MAX};
use crate::alert::Publication;

/// How one target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TargetStatus {
    /// In the audit trail while the procedure runs; a summary reports a target still `Running`
    /// (its execution ended without a record) as failed.
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Not started: the errors had passed `MaxErrors` (or the run was stopped) first.
    NotStarted,
}

impl TargetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Running => "Running",
            TargetStatus::Succeeded => "Succeeded",
            TargetStatus::Failed => "Failed",
            TargetStatus::TimedOut => "TimedOut",
            TargetStatus::Cancelled => "Cancelled",
            TargetStatus::NotStarted => "NotStarted",
        }
    }

    /// Whether it counts as an error against `MaxErrors`.
    pub fn is_error(self) -> bool {
        matches!(self, TargetStatus::Failed | TargetStatus::TimedOut | TargetStatus::Cancelled)
    }

    pub fn parse(text: &str) -> Option<TargetStatus> {
        [
            TargetStatus::Running,
            TargetStatus::Succeeded,
            TargetStatus::Failed,
            TargetStatus::TimedOut,
            TargetStatus::Cancelled,
            TargetStatus::NotStarted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One target's outcome: the audit row of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetResult {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub status: TargetStatus,
    pub exit_code: Option<i32>,
    /// The last lines of output (stdout, then stderr).
    #[serde(default)]
    pub output_tail: String,
    /// Where the whole output is.
    pub output_url: Option<String>,
    /// Why it failed, in a sentence (empty when it succeeded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The counts the operator's command prints (`--output json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub targets: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub not_started: usize,
}

impl Counts {
    pub fn of(results: &[TargetResult]) -> Counts {
        let mut c = Counts {
            targets: results.len(),
            ..Counts::default()
        };
        for r in results {
            match r.status {
                TargetStatus::Succeeded => c.succeeded += 1,
                TargetStatus::NotStarted => c.not_started += 1,
                _ => c.failed += 1,
            }
        }
        c
    }

    /// `Succeeded` only when every target succeeded.
    pub fn status(&self) -> &'static str {
        if self.succeeded == self.targets {
            "Succeeded"
        } else {
            "Failed"
        }
    }
}

/// The run as people and machines read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub status: String,
    pub execution: String,
    pub procedure: String,
    pub counts: Counts,
    pub targets: Vec<TargetResult>,
    /// Instances the selector found that the run left alone (not opted in, stopped, agent not
    /// Online, platform), with the first few reasons.
    #[serde(default)]
    pub excluded_count: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Excluded>,
}

impl Summary {
    /// Targets in a stable order: failures first, then by account, region and id.
    pub fn new(execution: &str, procedure: &str, mut targets: Vec<TargetResult>) -> Summary {
        targets.sort_by(|a, b| {
            (a.status == TargetStatus::Succeeded, a.status, &a.account, &a.region, &a.instance_id).cmp(&(
                b.status == TargetStatus::Succeeded,
                b.status,
                &b.account,
                &b.region,
                &b.instance_id,
            ))
        });
        let counts = Counts::of(&targets);
        Summary {
            status: counts.status().to_string(),
            execution: execution.to_string(),
            procedure: procedure.to_string(),
            counts,
            targets,
            excluded_count: 0,
            excluded: vec![],
        }
    }

    /// With the instances the run left alone. A run that found instances but could run on none
    /// of them failed: someone must look (an agent offline everywhere, a tag typed wrong).
    pub fn with_excluded(mut self, count: usize, shown: Vec<Excluded>) -> Summary {
        self.excluded_count = count;
        self.excluded = shown;
        if self.counts.targets == 0 && count > 0 {
            self.status = "Failed".to_string();
        }
        self
    }

    /// Whether `notify` asks for a message about this run.
    pub fn should_notify(&self, notify: Notify) -> bool {
        match notify {
            Notify::Always => true,
            Notify::Never => false,
            Notify::OnFailure => self.status != "Succeeded",
        }
    }

    /// The SNS publication.
    pub fn publication(&self) -> Publication {
        let failures: Vec<&TargetResult> = self.targets.iter().filter(|t| t.status != TargetStatus::Succeeded).collect();
        let mut shown = failures.len();
        loop {
            let p = self.render(&failures[..shown], failures.len() - shown);
            if p.message.len() <= MESSAGE_MAX || shown == 0 {
                return p;
            }
            shown /= 2;
        }
    }

    fn subject(&self) -> String {
        let c = &self.counts;
        let what = if c.targets == 0 {
            format!("no targets, {} excluded", self.excluded_count)
        } else if c.failed + c.not_started == 0 {
            format!("all {} succeeded", c.targets)
        } else if c.not_started == 0 {
            format!("{} of {} failed", c.failed, c.targets)
        } else {
            format!("{} of {} failed, {} not started", c.failed, c.targets, c.not_started)
        };
        limit(&ascii_line(&format!("runbook {}: {what}", self.procedure)), SUBJECT_MAX)
    }

    fn render(&self, failures: &[&TargetResult], omitted: usize) -> Publication {
        let subject = self.subject();
        let c = &self.counts;
        let mut text = format!(
            "{subject}\n\nProcedure: {}\nExecution: {}\nTargets: {}, succeeded {}, failed {}, not started {}\n",
            self.procedure, self.execution, c.targets, c.succeeded, c.failed, c.not_started
        );
        let not_started: Vec<&&TargetResult> = failures.iter().filter(|t| t.status == TargetStatus::NotStarted).collect();
        for t in failures.iter().filter(|t| t.status != TargetStatus::NotStarted) {
            let name = if t.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.name)
            };
            let code = t.exit_code.map_or("-".to_string(), |c| c.to_string());
            text.push_str(&format!(
                "\n{} {}{name} in {} {}: {}, exit code {code}\n",
                t.status.as_str(),
                t.instance_id,
                t.account,
                t.region,
                if t.reason.is_empty() { "failed" } else { &t.reason }
            ));
            if !t.output_tail.is_empty() {
                text.push_str("Last lines of output:\n");
                for line in t.output_tail.lines() {
                    text.push_str(&format!("    {line}\n"));
                }
            }
            if let Some(url) = &t.output_url {
                text.push_str(&format!("Full output: {url}\n"));
            }
        }
        if !not_started.is_empty() {
            let ids: Vec<String> = not_started
                .iter()
                .map(|t| format!("{} ({} {})", t.instance_id, t.account, t.region))
                .collect();
            text.push_str(&format!("\nNot started (MaxErrors reached): {}\n", ids.join(", ")));
        }
        if self.excluded_count > 0 {
            text.push_str(&format!(
                "\nExcluded: {} instances the selector found were left alone",
                self.excluded_count
            ));
            if !self.excluded.is_empty() {
                text.push_str(", e.g.:\n");
                for e in &self.excluded {
                    text.push_str(&format!("    {} in {} {}: {}\n", e.instance_id, e.account, e.region, e.reason));
                }
            } else {
                text.push('\n');
            }
        }
        if omitted > 0 {
            text.push_str(&format!("\n{omitted} more not listed here (the message would pass SNS's size limit); see the JSON body's counts and `opsflow runs`.\n"));
        }
        let body = json!({
            "schema": "opsflow.runbook-results/1",
            "status": self.status,
            "execution": self.execution,
            "procedure": self.procedure,
            "counts": self.counts,
            "failures": failures,
            "omitted": omitted,
            "excludedCount": self.excluded_count,
            "excluded": self.excluded,
        });
        let sms = limit(&ascii_line(&subject), SMS_MAX);
        Publication {
            message: message(&text, &sms, &body),
            attributes: self.attributes(),
            subject,
        }
    }

    fn attributes(&self) -> BTreeMap<String, String> {
        let mut accounts: Vec<&str> = self.targets.iter().map(|t| t.account.as_str()).collect();
        accounts.sort();
        accounts.dedup();
        let mut attributes = BTreeMap::from([
            ("procedure".to_string(), self.procedure.clone()),
            ("status".to_string(), self.status.clone()),
            ("failed".to_string(), self.counts.failed.to_string()),
        ]);
        // SNS refuses an empty String attribute (InvalidParameter): a run whose targets were
        // all excluded has no account to name.
        if !accounts.is_empty() {
            attributes.insert("accounts".to_string(), accounts.join(","));
        }
        attributes
    }

    /// The JSON the operator's command prints.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a summary serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: TargetStatus, tail: &str) -> TargetResult {
        TargetResult {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            instance_id: id.into(),
            name: format!("web-{id}"),
            status,
            exit_code: match status {
                TargetStatus::Succeeded => Some(0),
                TargetStatus::Failed => Some(2),
                _ => None,
            },
            output_tail: tail.into(),
            output_url: (status != TargetStatus::NotStarted).then(|| format!("https://s3.eu-west-1.amazonaws.com/out/{id}/stdout")),
            reason: if status == TargetStatus::Failed {
                "the command exited with code 2".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn the_subject_counts_failures_and_the_body_lists_them_with_their_last_lines() {
        let mut results: Vec<_> = (0..38)
            .map(|i| result(&format!("i-{i:08x}"), TargetStatus::Succeeded, "ok"))
            .collect();
        results.push(result("i-000000aa", TargetStatus::Failed, "step 1\nE: disk full"));
        results.push(result("i-000000bb", TargetStatus::NotStarted, ""));
        let s = Summary::new("arn:aws:states:eu-west-1:1:execution:run-runbook:x", "patch-dev", results);
        assert_eq!(
            s.counts,
            Counts {
                targets: 40,
                succeeded: 38,
                failed: 1,
                not_started: 1
            }
        );
        assert_eq!(s.status, "Failed");
        assert_eq!(s.targets[0].instance_id, "i-000000aa", "failures come first");
        let p = s.publication();
        assert_eq!(p.subject, "runbook patch-dev: 1 of 40 failed, 1 not started");
        let m: Value = serde_json::from_str(&p.message).unwrap();
        let text = m["default"].as_str().unwrap();
        assert!(
            text.contains("Failed i-000000aa (web-i-000000aa) in 111111111111 eu-west-1: the command exited with code 2, exit code 2"),
            "{text}"
        );
        assert!(text.contains("    E: disk full\n"), "{text}");
        assert!(
            text.contains("Full output: https://s3.eu-west-1.amazonaws.com/out/i-000000aa/stdout"),
            "{text}"
        );
        assert!(text.contains("Not started (MaxErrors reached): i-000000bb"), "{text}");
        let body: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(body["counts"]["notStarted"], 1);
        assert_eq!(body["failures"][0]["exitCode"], 2);
        assert_eq!(p.attributes["status"], "Failed");
        assert_eq!(p.attributes["failed"], "1");
    }

    #[test]
    fn a_huge_failure_list_is_cut_to_fit_sns_with_exact_counts() {
        let tail = "x".repeat(3_000);
        let results: Vec<_> = (0..400)
            .map(|i| result(&format!("i-{i:08x}"), TargetStatus::Failed, &tail))
            .collect();
        let p = Summary::new("e", "p", results).publication();
        assert!(p.message.len() <= MESSAGE_MAX, "{}", p.message.len());
        assert_eq!(p.subject, "runbook p: 400 of 400 failed");
        let m: Value = serde_json::from_str(&p.message).unwrap();
        assert!(m["default"].as_str().unwrap().contains("more not listed here"));
    }

    #[test]
    fn notify_follows_the_setting() {
        let ok = Summary::new("e", "p", vec![result("i-00000001", TargetStatus::Succeeded, "")]);
        assert!(!ok.should_notify(Notify::OnFailure) && ok.should_notify(Notify::Always));
        let bad = Summary::new("e", "p", vec![result("i-00000001", TargetStatus::TimedOut, "")]);
        assert!(bad.should_notify(Notify::OnFailure) && !bad.should_notify(Notify::Never));
        assert_eq!(bad.publication().subject, "runbook p: 1 of 1 failed");
    }

    #[test]
    fn a_run_that_found_instances_but_ran_on_none_failed() {
        let excluded = Excluded {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            instance_id: "i-00000001".into(),
            reason: "its SSM agent is ConnectionLost".into(),
        };
        let s = Summary::new("e", "p", vec![]).with_excluded(20, vec![excluded]);
        assert_eq!(s.status, "Failed");
        let p = s.publication();
        assert_eq!(p.subject, "runbook p: no targets, 20 excluded");
        let m: Value = serde_json::from_str(&p.message).unwrap();
        assert!(m["default"]
            .as_str()
            .unwrap()
            .contains("i-00000001 in 111111111111 eu-west-1: its SSM agent is ConnectionLost"));
        // SNS refuses an empty attribute value: with no target there is no accounts attribute.
        assert!(!p.attributes.contains_key("accounts"), "{:?}", p.attributes);
        assert_eq!(Summary::new("e", "p", vec![]).status, "Succeeded", "nothing found, nothing to do");
    }

    #[test]
    fn the_subject_stays_within_100_ascii_characters() {
        let s = Summary::new(
            "e",
            &"a-very-long-procedure-name-".repeat(5),
            vec![result("i-00000001", TargetStatus::Failed, "")],
        );
        let subject = s.publication().subject;
        assert!(subject.len() <= SUBJECT_MAX && subject.is_ascii(), "{subject}");
    }
}
