//! Choice rules. Interface placeholder: being written.
use serde_json::Value;

use crate::error::StatesError;
use crate::path::Scope;

#[derive(Debug, Clone)]
pub struct Rule;

impl Rule {
    pub fn parse(_v: &Value) -> Result<Rule, (String, String)> {
        Ok(Rule)
    }
    pub fn eval(&self, _scope: &Scope) -> Result<bool, StatesError> {
        Ok(false)
    }
}
