//! From AWS SDK errors to [`CoreError`].
//!
//! - A service error with an AWS error code goes through [`CoreError::from_aws_error`], so the
//!   code (and message) is kept in the detail as `"<code>: <message>"`. A message that only
//!   repeats the code (moto's way of sending none) counts as empty.
//! - A response without an AWS error code: an HTTP 500 whose body is an HTML page becomes
//!   [`CoreError::Unsupported`] (this is how moto, the local cloud, answers an operation it does
//!   not implement, or one it failed on; AWS itself always answers with an AWS error document);
//!   any other such response becomes [`CoreError::Transient`] with its HTTP status.
//! - The request was not delivered (connection refused or reset, DNS, TLS) or timed out:
//!   [`CoreError::Transient`].
//! - The SDK could not even build the request (a required field missing): [`CoreError::InvalidInput`].
//!
//! The SDK's own retries (standard mode, 3 attempts by default, `AWS_MAX_ATTEMPTS` to change)
//! run before any of this: an error seen here is the last attempt's.

use std::error::Error;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use opsflow_core::CoreError;

/// Bytes of an unexpected response body quoted in an error detail.
const BODY_QUOTE_BYTES: usize = 160;

/// Classifies an SDK error of `operation` (e.g. `"DescribeInstances"`).
///
/// The three SDK crates share one `SdkError` type (from `aws-smithy-runtime-api`), so this one
/// function serves EC2, IAM and SSM.
pub fn from_sdk_error<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> CoreError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let core = match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) => CoreError::from_aws_error(operation, code, own_message(code, service.err().message().unwrap_or(""))),
            None => without_aws_code(operation, service.raw()),
        },
        SdkError::ResponseError(response) => without_aws_code(operation, response.raw()),
        SdkError::TimeoutError(_) => CoreError::transient(operation, "timed out before AWS answered"),
        SdkError::DispatchFailure(failure) => {
            let what = if failure.is_timeout() {
                "timed out while sending the request"
            } else if failure.is_io() {
                "the request could not be sent (connection failed)"
            } else {
                "the request could not be sent"
            };
            CoreError::transient(operation, format!("{what}: {}", DisplayErrorContext(err)))
        }
        SdkError::ConstructionFailure(_) => {
            CoreError::invalid(operation, format!("the request could not be built: {}", DisplayErrorContext(err)))
        }
        _ => CoreError::transient(operation, DisplayErrorContext(err).to_string()),
    };
    tracing::debug!(operation, error = %core, "AWS call failed");
    core
}

/// The message without a leading copy of the code: moto words an empty message as
/// `"<code>: "` (e.g. `InvocationDoesNotExist`), AWS sends none.
fn own_message<'a>(code: &str, message: &'a str) -> &'a str {
    message
        .strip_prefix(code)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::trim_start)
        .unwrap_or(message)
}

/// A response that carries no AWS error code.
fn without_aws_code(operation: &str, raw: &HttpResponse) -> CoreError {
    let status = raw.status().as_u16();
    let content_type = raw.headers().get("content-type").unwrap_or("");
    let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
    let start: String = body.trim_start().chars().take(15).collect::<String>().to_ascii_lowercase();
    let html =
        content_type.to_ascii_lowercase().starts_with("text/html") || start.starts_with("<!doctype html") || start.starts_with("<html");
    if status == 500 && html {
        return CoreError::unsupported(
            operation,
            format!(
                "the endpoint answered HTTP 500 with an HTML page ({}) instead of an AWS error: it does not implement this \
                 operation or failed inside it (moto answers both this way; its server.log has the traceback)",
                html_title(&body).unwrap_or("no title")
            ),
        );
    }
    CoreError::transient(
        operation,
        format!(
            "HTTP {status} without an AWS error code ({}): {}",
            content_or_none(content_type),
            quote(&body)
        ),
    )
}

fn content_or_none(content_type: &str) -> &str {
    if content_type.is_empty() {
        "no Content-Type"
    } else {
        content_type
    }
}

fn html_title(body: &str) -> Option<&str> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    body.get(start..end).map(str::trim)
}

/// The start of a body, whitespace collapsed, cut to [`BODY_QUOTE_BYTES`] on a char boundary.
fn quote(body: &str) -> String {
    quote_bytes(body, BODY_QUOTE_BYTES)
}

/// The start of a body, whitespace collapsed, cut to `max` bytes on a char boundary.
pub(crate) fn quote_bytes(body: &str, max: usize) -> String {
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "empty body".to_string();
    }
    if collapsed.len() <= max {
        return collapsed;
    }
    let mut end = max;
    while !collapsed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &collapsed[..end])
}

/// The AWS error code and message kept in the detail of an error made by
/// [`CoreError::from_aws_error`] (`"<code>: <message>"` or `"<code>"`), e.g. to feed
/// [`opsflow_core::invocation_lookup_error`] after [`opsflow_core::Ssm::get_invocation`] failed.
///
/// `None` when the detail does not start with something shaped like an AWS error code.
pub fn aws_error_parts(err: &CoreError) -> Option<(&str, &str)> {
    // Only the variants `from_aws_error` makes carry an AWS code.
    let detail = match err {
        CoreError::InvalidInput { rule, .. } => rule,
        CoreError::NotFound { detail, .. }
        | CoreError::Conflict { detail, .. }
        | CoreError::Throttled { detail, .. }
        | CoreError::Transient { detail, .. }
        | CoreError::LimitExceeded { detail, .. }
        | CoreError::Unsupported { detail, .. }
        | CoreError::AccessDenied { detail, .. } => detail,
        _ => return None,
    };
    let (code, message) = detail.split_once(": ").unwrap_or((detail.as_str(), ""));
    let first = code.chars().next()?;
    let shaped = first.is_ascii_uppercase() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    shaped.then_some((code, message))
}

/// An answer that lacks a field the port needs, or has a value this crate does not know.
pub(crate) fn unexpected(operation: &str, what: impl std::fmt::Display) -> CoreError {
    CoreError::transient(operation, format!("unexpected response: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_error_parts_reads_back_from_aws_error() {
        let e = CoreError::from_aws_error("GetCommandInvocation", "InvocationDoesNotExist", "");
        assert_eq!(aws_error_parts(&e), Some(("InvocationDoesNotExist", "")));
        let e = CoreError::from_aws_error(
            "DescribeInstances",
            "InvalidInstanceID.NotFound",
            "The instance ID 'i-1' does not exist",
        );
        assert_eq!(
            aws_error_parts(&e),
            Some(("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist"))
        );
        let e = CoreError::from_aws_error("ModifyVolume", "InvalidParameterValue", "a: b");
        assert_eq!(aws_error_parts(&e), Some(("InvalidParameterValue", "a: b")));
        assert_eq!(
            aws_error_parts(&CoreError::transient("X", "the request could not be sent: io")),
            None
        );
    }

    #[test]
    fn own_message_drops_a_repeated_code() {
        assert_eq!(own_message("InvocationDoesNotExist", "InvocationDoesNotExist: "), "");
        assert_eq!(own_message("Throttling", "Throttling: Rate exceeded"), "Rate exceeded");
        assert_eq!(own_message("Throttling", "Rate exceeded"), "Rate exceeded");
        assert_eq!(
            own_message("InvalidParameterValue", "InvalidParameterValues are bad"),
            "InvalidParameterValues are bad"
        );
    }

    #[test]
    fn quote_collapses_and_cuts() {
        assert_eq!(quote("  <a>\n  b </a> "), "<a> b </a>");
        assert_eq!(quote(""), "empty body");
        let long = "é".repeat(100);
        let q = quote(&long);
        assert!(q.ends_with('…'));
        assert_eq!(q.len(), BODY_QUOTE_BYTES + '…'.len_utf8());
    }

    #[test]
    fn html_title_is_found_case_insensitively() {
        assert_eq!(
            html_title("<!doctype html>\n<TITLE>500 Internal Server Error</TITLE>"),
            Some("500 Internal Server Error")
        );
        assert_eq!(html_title("<html></html>"), None);
    }
}
