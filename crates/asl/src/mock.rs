//! The AWS Step Functions Local mock configuration format (`MockConfigFile.json`):
//! `StateMachines.<name>.TestCases.<case>.<state> = <response name>` and
//! `MockedResponses.<response name>.<"0" | "1-3">` = `{"Return": ...}` or
//! `{"Throw": {"Error": ..., "Cause": ...}}`, indexed by the state's invocation count
//! (retries included).

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{LoadError, StatesError};

#[derive(Debug, Clone)]
enum Response {
    Return(Value),
    Throw(StatesError),
}

/// The responses of one mocked state: (first invocation, last invocation, response).
type Ranges = Vec<(u32, u32, Response)>;

/// The mocked states of one test case.
#[derive(Debug, Clone, Default)]
pub struct MockCase {
    /// state name -> (first invocation, last invocation, response), in file order.
    states: HashMap<String, (String, Ranges)>,
}

impl MockCase {
    /// Reads `text` and selects the test case `test_case` of the state machine `state_machine`
    /// (when `None` and the file has a single state machine, that one).
    pub fn parse(text: &str, state_machine: Option<&str>, test_case: &str) -> Result<MockCase, LoadError> {
        let v: Value = serde_json::from_str(text).map_err(|e| LoadError::Json(e.to_string()))?;
        let bad = |field: &str, msg: String| LoadError::invalid("mock config", field, msg);
        let machines = v
            .get("StateMachines")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("StateMachines", "is required and must be an object".into()))?;
        let (sm_name, sm) = match state_machine {
            Some(n) => (
                n.to_string(),
                machines.get(n).ok_or_else(|| {
                    bad(
                        "StateMachines",
                        format!("has no state machine named '{n}' (it has: {})", keys(machines)),
                    )
                })?,
            ),
            None if machines.len() == 1 => {
                let (k, v) = machines.iter().next().unwrap();
                (k.clone(), v)
            }
            None => {
                return Err(bad(
                    "StateMachines",
                    format!(
                        "holds several state machines ({}); name one with --state-machine-name",
                        keys(machines)
                    ),
                ))
            }
        };
        let cases = sm.get("TestCases").and_then(Value::as_object).ok_or_else(|| {
            bad(
                &format!("StateMachines.{sm_name}.TestCases"),
                "is required and must be an object".into(),
            )
        })?;
        let case = cases.get(test_case).and_then(Value::as_object).ok_or_else(|| {
            bad(
                &format!("StateMachines.{sm_name}.TestCases"),
                format!("has no test case named '{test_case}' (it has: {})", keys(cases)),
            )
        })?;
        let responses = v
            .get("MockedResponses")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("MockedResponses", "is required and must be an object".into()))?;
        let mut states = HashMap::new();
        for (state, resp_name) in case {
            let field = format!("StateMachines.{sm_name}.TestCases.{test_case}.{state}");
            let resp_name = resp_name
                .as_str()
                .ok_or_else(|| bad(&field, "must name a mocked response".into()))?;
            let resp = responses.get(resp_name).and_then(Value::as_object).ok_or_else(|| {
                bad(
                    &field,
                    format!("names the mocked response '{resp_name}', which is not in MockedResponses"),
                )
            })?;
            let mut list = Vec::new();
            for (range, r) in resp {
                let rf = format!("MockedResponses.{resp_name}.{range}");
                let (a, b) = match range.split_once('-') {
                    Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
                    None => (range.trim().parse::<u32>(), range.trim().parse::<u32>()),
                };
                let (Ok(a), Ok(b)) = (a, b) else {
                    return Err(bad(
                        &rf,
                        "the key must be an invocation index like \"0\" or a range like \"1-3\"".into(),
                    ));
                };
                if a > b {
                    return Err(bad(&rf, "the range must not end before it starts".into()));
                }
                let response = match (r.get("Return"), r.get("Throw")) {
                    (Some(v), None) => Response::Return(v.clone()),
                    (None, Some(t)) => {
                        let error = t
                            .get("Error")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad(&format!("{rf}.Throw.Error"), "is required and must be a string".into()))?;
                        let cause = t.get("Cause").and_then(Value::as_str).unwrap_or("");
                        Response::Throw(StatesError::new(error, cause))
                    }
                    _ => return Err(bad(&rf, "must hold exactly one of 'Return' or 'Throw'".into())),
                };
                list.push((a, b, response));
            }
            states.insert(state.clone(), (resp_name.to_string(), list));
        }
        Ok(MockCase { states })
    }

    pub fn has(&self, state: &str) -> bool {
        self.states.contains_key(state)
    }

    /// The response to invocation `n` (0-based) of `state`.
    pub fn respond(&self, state: &str, n: u32) -> Result<Value, StatesError> {
        let (name, list) = &self.states[state];
        match list.iter().find(|(a, b, _)| (*a..=*b).contains(&n)) {
            Some((_, _, Response::Return(v))) => Ok(v.clone()),
            Some((_, _, Response::Throw(e))) => Err(e.clone()),
            None => Err(StatesError::runtime(format!(
                "The mocked response '{name}' of state '{state}' has no entry for invocation {n}"
            ))),
        }
    }
}

fn keys(m: &serde_json::Map<String, Value>) -> String {
    m.keys().cloned().collect::<Vec<_>>().join(", ")
}
