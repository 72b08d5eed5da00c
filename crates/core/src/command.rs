//! SSM Run Command, shared by the capabilities: the SendCommand call ([`CommandSpec`]) and its
//! results, from GetCommandInvocation to an outcome the state machine acts on.
//!
//! `Status` is one of Pending, InProgress, Delayed, Success, Cancelled, TimedOut, Failed and
//! Cancelling; `StatusDetails` refines it with Delivery Timed Out, Execution Timed Out,
//! Undeliverable, Terminated, Invalid Platform, Access Denied and the like (AWS writes them with
//! spaces; they are compared here without spaces and case).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::facts::{Invocation, Platform};

/// The SSM document running shell lines on Linux.
pub const LINUX_SHELL_DOCUMENT: &str = "AWS-RunShellScript";
/// The SSM document running PowerShell lines on Windows.
pub const WINDOWS_SHELL_DOCUMENT: &str = "AWS-RunPowerShellScript";

/// One SSM SendCommand call for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub document_name: String,
    /// Document parameters; command lines stay one list item each.
    pub parameters: BTreeMap<String, Vec<String>>,
    /// SendCommand `TimeoutSeconds`: how long the command may wait to be delivered and start.
    pub timeout_seconds: u32,
    pub output_s3_bucket: Option<String>,
    pub output_s3_prefix: Option<String>,
    /// Enables `CloudWatchOutputConfig` with this log group.
    pub cloudwatch_log_group: Option<String>,
    /// SendCommand's `Comment` (at most 100 characters): what sent it, for Run Command's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The shell document of a platform.
pub fn shell_document(platform: Platform) -> &'static str {
    match platform {
        Platform::Linux => LINUX_SHELL_DOCUMENT,
        Platform::Windows => WINDOWS_SHELL_DOCUMENT,
    }
}

/// Bytes of output kept in an outcome (the CloudFormation answer holds 4096 bytes in all).
pub const DEFAULT_TAIL_BYTES: usize = 1024;
/// How long after SendCommand an `InvocationDoesNotExist` still means "not visible yet".
pub const INVOCATION_GRACE_S: u64 = 30;

/// What a command invocation came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome")]
pub enum CommandOutcome {
    /// Not finished: poll again.
    Running,
    Succeeded {
        exit_code: i32,
        tail: String,
    },
    Failed {
        /// AWS's `Status`.
        status: String,
        /// The script's exit code, when it ran.
        exit_code: Option<i32>,
        tail: String,
        reason: String,
    },
}

/// Maps a GetCommandInvocation result to an outcome, keeping `max_tail_bytes` of output.
pub fn command_outcome(inv: &Invocation, max_tail_bytes: usize) -> CommandOutcome {
    let exit_code = (inv.response_code >= 0).then_some(inv.response_code);
    let details = normalize(&inv.status_details);
    match inv.status.as_str() {
        "Pending" | "InProgress" | "Delayed" | "Cancelling" => CommandOutcome::Running,
        "Success" => CommandOutcome::Succeeded {
            exit_code: exit_code.unwrap_or(0),
            tail: tail(&inv.stdout, &inv.stderr, max_tail_bytes),
        },
        status => {
            let reason = match details_reason(&details, exit_code) {
                Some(reason) => reason,
                None => match status {
                    "Failed" => exit_reason(exit_code),
                    "TimedOut" => "the command timed out".to_string(),
                    "Cancelled" => "the command was cancelled".to_string(),
                    other => format!("unexpected command status {other:?} ({})", inv.status_details),
                },
            };
            CommandOutcome::Failed {
                status: status.to_string(),
                exit_code,
                tail: tail(&inv.stdout, &inv.stderr, max_tail_bytes),
                reason,
            }
        }
    }
}

fn normalize(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

fn exit_reason(exit_code: Option<i32>) -> String {
    match exit_code {
        Some(code) => format!("the command exited with code {code}"),
        None => "the command failed".to_string(),
    }
}

/// The reason of a terminal `StatusDetails`, as the Systems Manager User Guide explains them.
fn details_reason(details: &str, exit_code: Option<i32>) -> Option<String> {
    let reason = match details {
        "failed" => return Some(exit_reason(exit_code)),
        "deliverytimedout" => "the command was not delivered to the instance before its delivery timeout (is the SSM agent running?)",
        "executiontimedout" => "the command started but did not finish within its execution timeout",
        "cancelled" | "canceled" => "the command was cancelled",
        "undeliverable" => "the command could not be delivered: the instance might not exist or might not be responding",
        "terminated" => "the command was terminated because its parent command exceeded its MaxErrors limit",
        "invalidplatform" => "the document does not support the instance's platform (for example a PowerShell document on Linux)",
        "accessdenied" => "the caller may not run commands on this instance (access denied)",
        _ => return None,
    };
    Some(reason.to_string())
}

/// The end of the output, stderr last, cut to at most `max_bytes` on a UTF-8 boundary; a cut
/// is marked with a leading `…`.
pub fn tail(stdout: &str, stderr: &str, max_bytes: usize) -> String {
    let (stdout, stderr) = (stdout.trim_end(), stderr.trim_end());
    let combined = match (stdout.is_empty(), stderr.is_empty()) {
        (_, true) => stdout.to_string(),
        (true, false) => format!("--- stderr ---\n{stderr}"),
        (false, false) => format!("{stdout}\n--- stderr ---\n{stderr}"),
    };
    keep_end(&combined, max_bytes)
}

fn keep_end(text: &str, max_bytes: usize) -> String {
    const CUT: &str = "…";
    if text.len() <= max_bytes {
        return text.to_string();
    }
    if max_bytes < CUT.len() {
        return String::new();
    }
    let mut start = text.len() - (max_bytes - CUT.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{CUT}{}", &text[start..])
}

/// What a failed GetCommandInvocation call means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationLookup {
    /// Right after SendCommand the invocation may not be visible yet: poll again.
    Pending,
    Failed(CoreError),
}

/// Classifies a GetCommandInvocation error: `InvocationDoesNotExist` within `grace_s` seconds
/// of SendCommand (default [`INVOCATION_GRACE_S`]) is pending, as SSM is eventually consistent;
/// later, or any other error, it is a failure.
pub fn invocation_lookup_error(error_name: &str, message: &str, elapsed_since_send_s: u64, grace_s: u64) -> InvocationLookup {
    if error_name == "InvocationDoesNotExist" {
        if elapsed_since_send_s <= grace_s {
            return InvocationLookup::Pending;
        }
        return InvocationLookup::Failed(CoreError::not_found(
            "command invocation",
            format!("SSM still reports InvocationDoesNotExist {elapsed_since_send_s} s after SendCommand (grace period {grace_s} s)"),
        ));
    }
    InvocationLookup::Failed(CoreError::from_aws_error("GetCommandInvocation", error_name, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(status: &str, details: &str, code: i32) -> Invocation {
        Invocation {
            status: status.into(),
            status_details: details.into(),
            response_code: code,
            stdout: "out".into(),
            ..Invocation::default()
        }
    }

    fn failed(status: &str, details: &str, code: i32) -> (String, Option<i32>, String) {
        match command_outcome(&inv(status, details, code), DEFAULT_TAIL_BYTES) {
            CommandOutcome::Failed {
                status, exit_code, reason, ..
            } => (status, exit_code, reason),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    // Statuses from the SSM API reference (CommandInvocationStatus) and StatusDetails from
    // "Understanding command statuses" in the Systems Manager User Guide.
    #[test]
    fn non_terminal_statuses_are_running() {
        for (status, details) in [
            ("Pending", "Pending"),
            ("InProgress", "In Progress"),
            ("Delayed", "Delayed"),
            ("Cancelling", "Cancelling"),
        ] {
            assert_eq!(command_outcome(&inv(status, details, -1), 100), CommandOutcome::Running, "{status}");
        }
    }

    #[test]
    fn success_keeps_exit_code_and_tail() {
        let mut i = inv("Success", "Success", 0);
        i.stdout = "line\nOPSFLOW_FS_SIZE_BYTES=1024\n".into();
        assert_eq!(
            command_outcome(&i, 100),
            CommandOutcome::Succeeded {
                exit_code: 0,
                tail: "line\nOPSFLOW_FS_SIZE_BYTES=1024".into()
            }
        );
    }

    #[test]
    fn terminal_failures_explain_themselves() {
        assert_eq!(
            failed("Failed", "Failed", 3),
            ("Failed".into(), Some(3), "the command exited with code 3".into())
        );
        assert_eq!(
            failed("TimedOut", "Delivery Timed Out", -1),
            (
                "TimedOut".into(),
                None,
                "the command was not delivered to the instance before its delivery timeout (is the SSM agent running?)".into()
            )
        );
        assert_eq!(
            failed("TimedOut", "Execution Timed Out", -1).2,
            "the command started but did not finish within its execution timeout".to_string()
        );
        assert_eq!(failed("Cancelled", "Cancelled", -1).2, "the command was cancelled".to_string());
        assert_eq!(
            failed("Failed", "Undeliverable", -1).2,
            "the command could not be delivered: the instance might not exist or might not be responding".to_string()
        );
        assert_eq!(
            failed("Failed", "Terminated", -1).2,
            "the command was terminated because its parent command exceeded its MaxErrors limit".to_string()
        );
        assert_eq!(
            failed("Failed", "Invalid Platform", -1).2,
            "the document does not support the instance's platform (for example a PowerShell document on Linux)".to_string()
        );
        assert_eq!(
            failed("Failed", "Access Denied", -1).2,
            "the caller may not run commands on this instance (access denied)".to_string()
        );
        // the detail spelling without spaces works too
        assert_eq!(
            failed("TimedOut", "DeliveryTimedOut", -1).2,
            failed("TimedOut", "Delivery Timed Out", -1).2
        );
        assert_eq!(
            failed("Failed", "InvalidPlatform", -1).2,
            failed("Failed", "Invalid Platform", -1).2
        );
    }

    #[test]
    fn status_alone_decides_when_details_are_unknown() {
        assert_eq!(failed("Failed", "", 1).2, "the command exited with code 1".to_string());
        assert_eq!(failed("Failed", "", -1).2, "the command failed".to_string());
        assert_eq!(failed("TimedOut", "", -1).2, "the command timed out".to_string());
        assert_eq!(failed("Cancelled", "", -1).2, "the command was cancelled".to_string());
        assert_eq!(
            failed("Exploded", "Weird", -1),
            ("Exploded".into(), None, "unexpected command status \"Exploded\" (Weird)".into())
        );
    }

    #[test]
    fn tail_keeps_the_end_with_stderr_last() {
        assert_eq!(tail("a\nb\n", "", 100), "a\nb");
        assert_eq!(tail("", "boom\n", 100), "--- stderr ---\nboom");
        assert_eq!(tail("out\n", "err\n", 100), "out\n--- stderr ---\nerr");
        assert_eq!(tail("0123456789", "", 7), "…6789");
        assert_eq!(tail("0123456789", "", 10), "0123456789");
        assert_eq!(tail("0123456789", "", 2), "");
    }

    #[test]
    fn tail_cuts_on_a_utf8_boundary() {
        // "é" is 2 bytes: 8 bytes in all, 6 allowed, 3 left after the 3-byte mark.
        let t = tail("éééé", "", 6);
        assert_eq!(t, "…é");
        assert!(t.len() <= 6);
        let long = "日本語".repeat(100);
        for max in 3..40 {
            let t = tail(&long, "", max);
            assert!(t.len() <= max, "{max}");
            assert!(t.starts_with('…'));
        }
    }

    #[test]
    fn invocation_does_not_exist_is_pending_within_grace() {
        assert_eq!(
            invocation_lookup_error("InvocationDoesNotExist", "", 0, INVOCATION_GRACE_S),
            InvocationLookup::Pending
        );
        assert_eq!(
            invocation_lookup_error("InvocationDoesNotExist", "", 30, INVOCATION_GRACE_S),
            InvocationLookup::Pending
        );
        assert_eq!(
            invocation_lookup_error("InvocationDoesNotExist", "", 31, INVOCATION_GRACE_S),
            InvocationLookup::Failed(CoreError::not_found(
                "command invocation",
                "SSM still reports InvocationDoesNotExist 31 s after SendCommand (grace period 30 s)"
            ))
        );
        assert_eq!(
            invocation_lookup_error("ThrottlingException", "Rate exceeded", 1, INVOCATION_GRACE_S),
            InvocationLookup::Failed(CoreError::throttled("GetCommandInvocation", "ThrottlingException: Rate exceeded"))
        );
        assert_eq!(
            invocation_lookup_error("InvalidCommandId", "", 1, INVOCATION_GRACE_S),
            InvocationLookup::Failed(CoreError::not_found("GetCommandInvocation", "InvalidCommandId"))
        );
    }

    #[test]
    fn outcomes_serialize_with_a_tag() {
        assert_eq!(
            serde_json::to_value(CommandOutcome::Running).unwrap(),
            serde_json::json!({"outcome": "Running"})
        );
    }
}
