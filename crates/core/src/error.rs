//! The one error type of the domain.
//!
//! Each variant name is stable: the Lambdas raise it as their error type, so a Step Functions
//! `Retry`/`Catch` can match it (`"ErrorEquals": ["Throttled", "Transient"]`) and the
//! CloudFormation answer can quote it. [`CoreError::name`] returns exactly the variant name and
//! every message starts with it, then names the field, resource or operation concerned.

use thiserror::Error;

/// Everything that can go wrong in opsflow's domain, classified for retry decisions.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// A property or parameter breaks a rule (`field` is its path, e.g. `Bootstrap.TimeoutSeconds`).
    /// Never retried: the template has to change.
    #[error("InvalidInput: {field}: {rule}")]
    InvalidInput { field: String, rule: String },
    /// An instance, volume, device, profile, document or invocation does not exist.
    #[error("NotFound: {resource}: {detail}")]
    NotFound { resource: String, detail: String },
    /// The resource is in a state that does not allow the operation (now).
    #[error("Conflict: {resource}: {detail}")]
    Conflict { resource: String, detail: String },
    /// AWS asked us to slow down. Retry with backoff.
    #[error("Throttled: {operation}: {detail}")]
    Throttled { operation: String, detail: String },
    /// A temporary failure (AWS internal error, unavailable service, time-out, unknown error code).
    /// Retry a bounded number of times.
    #[error("Transient: {operation}: {detail}")]
    Transient { operation: String, detail: String },
    /// An AWS limit or quota stops the operation, e.g. the EBS volume modification rate.
    #[error("LimitExceeded: {resource}: {detail}")]
    LimitExceeded { resource: String, detail: String },
    /// The request is valid but opsflow (or AWS) cannot do it for this kind of resource.
    #[error("Unsupported: {subject}: {detail}")]
    Unsupported { subject: String, detail: String },
    /// The requesting stack may not have opsflow act on the resource: it does not own it
    /// (see `provision::guard`). Never retried: the template, or the instance's tags, must change.
    #[error("Forbidden: {resource}: {detail}")]
    Forbidden { resource: String, detail: String },
    /// The Lambda's role may not call the operation (a deployment problem, not a template one).
    #[error("AccessDenied: {operation}: {detail}")]
    AccessDenied { operation: String, detail: String },
    /// A wait (association, volume modification, SSM readiness, command) passed its deadline.
    #[error("DeadlineExceeded: {what}: {detail}")]
    DeadlineExceeded { what: String, detail: String },
    /// An SSM command ended in a status other than Success; `detail` holds the status, the
    /// exit code and the end of its output.
    #[error("CommandFailed: {command_id}: {detail}")]
    CommandFailed { command_id: String, detail: String },
}

impl CoreError {
    /// Every variant name, as returned by [`CoreError::name`].
    pub const NAMES: [&'static str; 11] = [
        "InvalidInput",
        "NotFound",
        "Conflict",
        "Forbidden",
        "Throttled",
        "Transient",
        "LimitExceeded",
        "Unsupported",
        "AccessDenied",
        "DeadlineExceeded",
        "CommandFailed",
    ];

    /// The variant name, used as the Lambda error type.
    pub fn name(&self) -> &'static str {
        match self {
            CoreError::InvalidInput { .. } => "InvalidInput",
            CoreError::NotFound { .. } => "NotFound",
            CoreError::Conflict { .. } => "Conflict",
            CoreError::Forbidden { .. } => "Forbidden",
            CoreError::Throttled { .. } => "Throttled",
            CoreError::Transient { .. } => "Transient",
            CoreError::LimitExceeded { .. } => "LimitExceeded",
            CoreError::Unsupported { .. } => "Unsupported",
            CoreError::AccessDenied { .. } => "AccessDenied",
            CoreError::DeadlineExceeded { .. } => "DeadlineExceeded",
            CoreError::CommandFailed { .. } => "CommandFailed",
        }
    }

    /// True for the errors worth retrying unchanged: `Throttled` and `Transient`.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CoreError::Throttled { .. } | CoreError::Transient { .. })
    }

    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        CoreError::InvalidInput {
            field: field.into(),
            rule: rule.into(),
        }
    }

    pub fn not_found(resource: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::NotFound {
            resource: resource.into(),
            detail: detail.into(),
        }
    }

    pub fn conflict(resource: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::Conflict {
            resource: resource.into(),
            detail: detail.into(),
        }
    }

    pub fn forbidden(resource: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::Forbidden {
            resource: resource.into(),
            detail: detail.into(),
        }
    }

    pub fn throttled(operation: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::Throttled {
            operation: operation.into(),
            detail: detail.into(),
        }
    }

    pub fn transient(operation: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::Transient {
            operation: operation.into(),
            detail: detail.into(),
        }
    }

    pub fn limit_exceeded(resource: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::LimitExceeded {
            resource: resource.into(),
            detail: detail.into(),
        }
    }

    pub fn unsupported(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::Unsupported {
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    pub fn access_denied(operation: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::AccessDenied {
            operation: operation.into(),
            detail: detail.into(),
        }
    }

    /// Classifies an AWS error code (EC2, IAM, SSM) returned by `operation`, for adapters.
    ///
    /// The detail is `"<code>: <message>"` so the original code is never lost. Unknown codes
    /// become `Transient`: retried a bounded number of times, then reported with their code.
    pub fn from_aws_error(operation: &str, code: &str, message: &str) -> Self {
        let detail = if message.is_empty() {
            code.to_string()
        } else {
            format!("{code}: {message}")
        };
        let op = operation.to_string();
        match code {
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "EC2ThrottledException"
            | "PriorRequestNotComplete" => CoreError::Throttled { operation: op, detail },
            "InternalError"
            | "InternalFailure"
            | "InternalServerError"
            | "InternalServiceError"
            | "ServiceFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "Unavailable"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "RequestExpired" => CoreError::Transient { operation: op, detail },
            "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthFailure" | "OptInRequired" => {
                CoreError::AccessDenied { operation: op, detail }
            }
            "VolumeModificationRateExceeded" | "LimitExceeded" | "ServiceQuotaExceededException" => {
                CoreError::LimitExceeded { resource: op, detail }
            }
            "NoSuchEntity" | "InvocationDoesNotExist" | "InvalidDocument" | "InvalidCommandId" => {
                CoreError::NotFound { resource: op, detail }
            }
            "IncorrectState"
            | "IncorrectInstanceState"
            | "IncorrectModificationState"
            | "InvalidState"
            | "ConcurrentModification"
            | "InvalidInstanceId"
            | "DuplicateInstanceId" => CoreError::Conflict { resource: op, detail },
            "UnsupportedOperation" | "Unsupported" | "UnsupportedPlatformType" => CoreError::Unsupported { subject: op, detail },
            "InvalidParameterValue"
            | "InvalidParameter"
            | "InvalidParameterCombination"
            | "MissingParameter"
            | "ValidationError"
            | "ValidationException"
            | "InvalidParameters"
            | "InvalidInput"
            | "InvalidDocumentVersion"
            | "InvalidOutputFolder"
            | "InvalidRole"
            | "MaxDocumentSizeExceeded"
            | "InvalidExecutionInput"
            | "InvalidName" => CoreError::InvalidInput { field: op, rule: detail },
            "StateMachineDoesNotExist" => CoreError::NotFound { resource: op, detail },
            "StateMachineDeleting" => CoreError::Conflict { resource: op, detail },
            _ if code.ends_with(".NotFound") => CoreError::NotFound { resource: op, detail },
            _ if code.ends_with(".Malformed") => CoreError::InvalidInput { field: op, rule: detail },
            _ if code.ends_with("LimitExceeded") => CoreError::LimitExceeded { resource: op, detail },
            _ => CoreError::Transient { operation: op, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of_each() -> Vec<CoreError> {
        vec![
            CoreError::invalid("Bootstrap.TimeoutSeconds", "must be between 30 and 172800"),
            CoreError::not_found("instance i-0123456789abcdef0", "no such instance"),
            CoreError::conflict("volume vol-1", "a modification is in progress"),
            CoreError::forbidden("instance i-0123456789abcdef0", "does not belong to stack dev-ide"),
            CoreError::throttled("DescribeInstances", "Rate exceeded"),
            CoreError::transient("ModifyVolume", "InternalError"),
            CoreError::limit_exceeded("volume vol-1", "four modifications in 24 hours"),
            CoreError::unsupported("file system", "zfs"),
            CoreError::access_denied("AssociateIamInstanceProfile", "not authorized"),
            CoreError::DeadlineExceeded {
                what: "WaitForAssociation".into(),
                detail: "not associated after 300 s".into(),
            },
            CoreError::CommandFailed {
                command_id: "c-1".into(),
                detail: "Failed, exit code 1".into(),
            },
        ]
    }

    #[test]
    fn name_is_exactly_the_variant_name_and_message_prefix() {
        let errors = one_of_each();
        let names: Vec<&str> = errors.iter().map(CoreError::name).collect();
        assert_eq!(names, CoreError::NAMES.to_vec());
        for e in &errors {
            assert!(e.to_string().starts_with(&format!("{}: ", e.name())), "{e}");
        }
    }

    #[test]
    fn invalid_input_message_names_field_and_rule() {
        let e = CoreError::invalid("VolumeSizeGiB", "must not be smaller than the current size 40 GiB");
        assert_eq!(
            e.to_string(),
            "InvalidInput: VolumeSizeGiB: must not be smaller than the current size 40 GiB"
        );
    }

    #[test]
    fn other_messages_name_the_resource() {
        assert_eq!(
            CoreError::not_found("device /dev/sdf on i-0123456789abcdef0", "attached: /dev/xvda").to_string(),
            "NotFound: device /dev/sdf on i-0123456789abcdef0: attached: /dev/xvda"
        );
        assert_eq!(
            CoreError::throttled("DescribeVolumes", "slow down").to_string(),
            "Throttled: DescribeVolumes: slow down"
        );
    }

    #[test]
    fn only_throttled_and_transient_are_retryable() {
        let retryable: Vec<&str> = one_of_each().iter().filter(|e| e.is_retryable()).map(CoreError::name).collect();
        assert_eq!(retryable, vec!["Throttled", "Transient"]);
    }

    #[test]
    fn aws_codes_are_classified() {
        let cases = [
            ("RequestLimitExceeded", "Throttled"),
            ("ThrottlingException", "Throttled"),
            ("Throttling", "Throttled"),
            ("InternalError", "Transient"),
            ("ServiceUnavailable", "Transient"),
            ("UnauthorizedOperation", "AccessDenied"),
            ("AccessDeniedException", "AccessDenied"),
            ("VolumeModificationRateExceeded", "LimitExceeded"),
            ("LimitExceeded", "LimitExceeded"),
            ("InvalidInstanceID.NotFound", "NotFound"),
            ("InvalidVolume.NotFound", "NotFound"),
            ("InvalidAssociationID.NotFound", "NotFound"),
            ("NoSuchEntity", "NotFound"),
            ("InvocationDoesNotExist", "NotFound"),
            ("InvalidInstanceID.Malformed", "InvalidInput"),
            ("IncorrectState", "Conflict"),
            ("IncorrectModificationState", "Conflict"),
            ("InvalidInstanceId", "Conflict"),
            ("UnsupportedPlatformType", "Unsupported"),
            ("InvalidParameterValue", "InvalidInput"),
            ("InvalidParameters", "InvalidInput"),
            ("InstanceLimitExceeded", "LimitExceeded"),
            ("SomethingNew", "Transient"),
        ];
        for (code, want) in cases {
            assert_eq!(CoreError::from_aws_error("Op", code, "m").name(), want, "code {code}");
        }
    }

    #[test]
    fn aws_error_keeps_code_and_message() {
        let e = CoreError::from_aws_error(
            "ModifyVolume",
            "VolumeModificationRateExceeded",
            "You've reached the maximum modification rate",
        );
        assert_eq!(
            e.to_string(),
            "LimitExceeded: ModifyVolume: VolumeModificationRateExceeded: You've reached the maximum modification rate"
        );
        let bare = CoreError::from_aws_error("GetInstanceProfile", "NoSuchEntity", "");
        assert_eq!(bare.to_string(), "NotFound: GetInstanceProfile: NoSuchEntity");
    }
}
