//! The audit trail: one row per target of each run, written by the runner's Admit and Record
//! steps, read by Summarize and by `opsflow runs`. Who (the schedule or the caller's principal),
//! what (procedure, parameters), where (account, region, instance), when (start, end), result
//! (status, exit code, the last lines of output, the link to all of it). Rows expire after the
//! retention (a DynamoDB TTL).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::results::{TargetResult, TargetStatus};
use super::targets::Target;

/// One target of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetRow {
    /// The runner's execution ARN.
    pub run: String,
    /// `account/region/instance` (or `account/region/endpoint` for an HTTP check).
    pub target: String,
    pub procedure: String,
    pub parameters: BTreeMap<String, String>,
    pub started_by: String,
    pub account: String,
    pub region: String,
    pub instance_id: String,
    #[serde(default)]
    pub name: String,
    pub status: TargetStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub output_tail: String,
    #[serde(default)]
    pub output_url: Option<String>,
    #[serde(default)]
    pub reason: String,
    /// The procedure's own execution, once it ran.
    #[serde(default)]
    pub execution: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    /// Epoch seconds after which the row may be dropped.
    pub expires_at: i64,
}

/// The key of a target within its run.
pub fn target_key(t: &Target) -> String {
    let what = if t.instance_id.is_empty() { &t.name } else { &t.instance_id };
    format!("{}/{}/{what}", t.account, t.region)
}

impl TargetRow {
    pub fn result(&self) -> TargetResult {
        TargetResult {
            account: self.account.clone(),
            region: self.region.clone(),
            instance_id: self.instance_id.clone(),
            name: self.name.clone(),
            status: self.status,
            exit_code: self.exit_code,
            output_tail: self.output_tail.clone(),
            output_url: self.output_url.clone(),
            reason: self.reason.clone(),
        }
    }
}
