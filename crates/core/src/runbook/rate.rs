//! Rate controls with SSM Run Command's meaning.
//!
//! `MaxConcurrency` and `MaxErrors` are a number (`"10"`) or a percentage of the targets
//! (`"10%"`), as in SendCommand. A percentage of concurrency is rounded down but never below
//! one target. `MaxErrors` is the number of errors *allowed*: once the errors exceed it, no new
//! target starts (with 3, the fourth error stops new starts; with 0, the first; with 10% of 50
//! targets, the sixth — the SSM API reference's examples). Targets already running finish.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// The most child executions a Distributed Map runs at once.
pub const MAX_MAP_CONCURRENCY: u32 = 10_000;

/// A number of targets, or a percentage of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Count(u32),
    Percent(u8),
}

impl Rate {
    /// Parses `"10"` or `"10%"` (a JSON number is accepted too). `what` names the field.
    pub fn parse(field: &str, value: &serde_json::Value) -> Result<Rate, CoreError> {
        let text = match value {
            serde_json::Value::String(s) => s.trim().to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(CoreError::invalid(
                    field,
                    "must be a number of targets (\"10\") or a percentage (\"10%\")",
                ))
            }
        };
        let rule = "must be a whole number of targets (e.g. \"10\") or a percentage from 0% to 100% (e.g. \"10%\")";
        if let Some(p) = text.strip_suffix('%') {
            match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Rate::Percent(p)),
                _ => Err(CoreError::invalid(field, rule)),
            }
        } else {
            text.parse::<u32>().map(Rate::Count).map_err(|_| CoreError::invalid(field, rule))
        }
    }

    /// How many targets may run at once among `targets`: at least one, at most the Distributed
    /// Map's limit.
    pub fn concurrency(self, targets: u32) -> u32 {
        let n = match self {
            Rate::Count(n) => n,
            Rate::Percent(p) => (u64::from(targets) * u64::from(p) / 100) as u32,
        };
        n.clamp(1, MAX_MAP_CONCURRENCY)
    }

    /// How many errors are allowed among `targets` before no new target starts.
    pub fn allowed_errors(self, targets: u32) -> u32 {
        match self {
            Rate::Count(n) => n,
            Rate::Percent(p) => (u64::from(targets) * u64::from(p) / 100) as u32,
        }
    }

    /// Whether `self` asks for more than `cap` would give among `targets`.
    pub fn exceeds(self, cap: Rate, targets: u32) -> bool {
        match (self, cap) {
            (Rate::Percent(a), Rate::Percent(b)) => a > b,
            (Rate::Count(a), Rate::Count(b)) => a > b,
            _ => self.allowed_errors(targets) > cap.allowed_errors(targets),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Count(n) => write!(f, "{n}"),
            Rate::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Rate::parse("rate", &v).map_err(serde::de::Error::custom)
    }
}

/// Whether a new target may start after `errors` errors when `allowed` are allowed.
pub fn may_start(errors: u32, allowed: u32) -> bool {
    errors <= allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_percentages_parse_and_anything_else_names_the_field() {
        assert_eq!(Rate::parse("MaxErrors", &json!("3")).unwrap(), Rate::Count(3));
        assert_eq!(Rate::parse("MaxErrors", &json!(3)).unwrap(), Rate::Count(3));
        assert_eq!(Rate::parse("MaxErrors", &json!("10%")).unwrap(), Rate::Percent(10));
        for bad in [json!("-1"), json!("101%"), json!("ten"), json!("1.5"), json!(true), json!("%")] {
            let e = Rate::parse("MaxErrors", &bad).unwrap_err().to_string();
            assert!(e.starts_with("InvalidInput: MaxErrors: "), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_follow_the_ssm_examples() {
        // "If you specify 3, the system stops ... when the fourth error is received."
        let allowed = Rate::Count(3).allowed_errors(50);
        assert!(may_start(3, allowed) && !may_start(4, allowed));
        // "If you specify 0, ... after the first error result is returned."
        assert!(!may_start(1, Rate::Count(0).allowed_errors(50)));
        // "50 resources and max-errors 10%: ... stops ... when the sixth error is received."
        let allowed = Rate::Percent(10).allowed_errors(50);
        assert!(may_start(5, allowed) && !may_start(6, allowed));
    }

    #[test]
    fn concurrency_is_at_least_one_and_at_most_the_map_limit() {
        assert_eq!(Rate::Percent(10).concurrency(5), 1);
        assert_eq!(Rate::Percent(10).concurrency(10_000), 1_000);
        assert_eq!(Rate::Percent(100).concurrency(50_000), MAX_MAP_CONCURRENCY);
        assert_eq!(Rate::Count(0).concurrency(10), 1);
        assert_eq!(Rate::Count(25).concurrency(10), 25);
    }

    #[test]
    fn a_cap_compares_like_with_like_and_otherwise_on_the_targets() {
        assert!(Rate::Percent(30).exceeds(Rate::Percent(25), 100));
        assert!(!Rate::Count(20).exceeds(Rate::Count(20), 100));
        assert!(Rate::Count(30).exceeds(Rate::Percent(25), 100));
        assert!(!Rate::Count(20).exceeds(Rate::Percent(25), 100));
    }
}
