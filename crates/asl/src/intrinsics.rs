//! Intrinsic functions (States.Format, States.Array, ...). Interface placeholder: being written.
use serde_json::Value;

use crate::error::StatesError;
use crate::path::Scope;

#[derive(Debug, Clone)]
pub struct Intrinsic {
    text: String,
}

impl Intrinsic {
    pub fn parse(text: &str) -> Result<Intrinsic, String> {
        Ok(Intrinsic { text: text.to_string() })
    }
    pub fn eval(&self, _scope: &Scope) -> Result<Value, StatesError> {
        Err(StatesError::new(
            "States.IntrinsicFailure",
            format!("not implemented: {}", self.text),
        ))
    }
}
