//! Error types of the engine: one for definitions that cannot be loaded, one for the
//! errors an execution raises (the `Error`/`Cause` pairs that Retry and Catch match on).

use serde::Serialize;

/// A definition (or a mock configuration) that cannot be loaded. The message always names the
/// state (or `<top level>`) and the field, like AWS's `InvalidDefinition` / `SCHEMA_VALIDATION_FAILED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{location}: field '{field}': {message}")]
    Invalid {
        /// `State 'Name'` or `top level` (nested states read `State 'Outer' > State 'Inner'`).
        location: String,
        field: String,
        message: String,
    },
}

impl LoadError {
    pub fn invalid(location: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError::Invalid {
            location: location.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error raised while an execution runs: `error` is the name Retry/Catch match on
/// (`States.TaskFailed`, `States.Runtime`, a Lambda's own error type, ...), `cause` the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct StatesError {
    pub error: String,
    pub cause: String,
}

impl StatesError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        StatesError {
            error: error.into(),
            cause: cause.into(),
        }
    }
    /// `States.Runtime`: not retried and not caught by `States.ALL`.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }
}

/// The predefined error names of the Amazon States Language.
pub mod names {
    pub const ALL: &str = "States.ALL";
    pub const RUNTIME: &str = "States.Runtime";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
    pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
    pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
}
