//! Timestamps as Step Functions reads and writes them.
use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an ISO-8601 / RFC 3339 timestamp (Wait `Timestamp`, `TimestampPath`). AWS requires
/// an uppercase `T` separator (RFC 3339 also allows a space; AWS rejects it with
/// States.Runtime) and a zone designator (`Z` or an offset).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if s.contains(['t', 'z', ' ']) {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

/// Formats like the context object's `StartTime` / `EnteredTime`: `2026-11-23T06:37:48.123Z`.
pub fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
