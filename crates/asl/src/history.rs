//! Execution history in the shape of AWS `GetExecutionHistory`: `timestamp`, `type`, `id`,
//! `previousEventId` and one `<kind>EventDetails` object whose `input`/`output`/`parameters`
//! are JSON text, as AWS returns them.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::time::format_ms;

#[derive(Debug, Clone)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    /// Milliseconds since the Unix epoch, on the engine's clock (virtual or real).
    pub timestamp_ms: i64,
    /// `PassStateEntered`, `TaskScheduled`, `ExecutionSucceeded`, ...
    pub event_type: &'static str,
    pub details: Details,
}

#[derive(Debug, Clone)]
pub enum Details {
    None,
    /// `stateEnteredEventDetails`
    StateEntered {
        name: Arc<str>,
        input: Arc<Value>,
    },
    /// `stateExitedEventDetails`
    /// `stateExitedEventDetails`, with `assignedVariables` when the state assigned any.
    StateExited {
        name: Arc<str>,
        output: Arc<Value>,
        assigned: Option<Box<Map<String, Value>>>,
    },
    /// Payload fields (`input`, `output`, `parameters`) hold JSON values, turned into JSON
    /// text (with `<field>Details`) only by [`HistoryEvent::to_json`].
    Other {
        key: &'static str,
        fields: Vec<(&'static str, Value)>,
    },
}

impl HistoryEvent {
    /// The state name, for state and iteration events.
    pub fn state_name(&self) -> Option<&str> {
        match &self.details {
            Details::StateEntered { name, .. } | Details::StateExited { name, .. } => Some(name),
            Details::Other { fields, .. } => field(fields, "name"),
            Details::None => None,
        }
    }

    /// A text field of the event's details (`resource`, `error`, ...).
    pub fn detail(&self, key: &str) -> Option<&str> {
        match &self.details {
            Details::Other { fields, .. } => field(fields, key),
            _ => None,
        }
    }

    /// The `error` of a failure event.
    pub fn error(&self) -> Option<&str> {
        match &self.details {
            Details::Other { fields, .. } => field(fields, "error"),
            _ => None,
        }
    }

    /// The event as AWS's API returns it (timestamps as ISO-8601 text, like the AWS CLI prints).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("timestamp".into(), Value::String(format_ms(self.timestamp_ms)));
        m.insert("type".into(), Value::String(self.event_type.into()));
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        match &self.details {
            Details::None => {}
            Details::StateEntered { name, input } => {
                m.insert(
                    "stateEnteredEventDetails".into(),
                    json!({"name": &**name, "input": input.to_string(), "inputDetails": {"truncated": false}}),
                );
            }
            Details::StateExited { name, output, assigned } => {
                let mut d = json!({"name": &**name, "output": output.to_string(), "outputDetails": {"truncated": false}});
                if let Some(vars) = assigned {
                    let texts: Map<String, Value> = vars.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect();
                    d["assignedVariables"] = Value::Object(texts);
                    d["assignedVariablesDetails"] = json!({"truncated": false});
                }
                m.insert("stateExitedEventDetails".into(), d);
            }
            Details::Other { key, fields } => {
                let mut d = Map::new();
                for (k, v) in fields {
                    match *k {
                        "input" | "output" | "parameters" => {
                            d.insert((*k).into(), Value::String(v.to_string()));
                            d.insert(format!("{k}Details"), json!({"truncated": false}));
                        }
                        _ => {
                            d.insert((*k).into(), v.clone());
                        }
                    }
                }
                m.insert((*key).into(), Value::Object(d));
            }
        }
        Value::Object(m)
    }
}

fn field<'a>(fields: &'a [(&'static str, Value)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == name).and_then(|(_, v)| v.as_str())
}

/// Builds `Other` details from pairs.
pub(crate) fn details(key: &'static str, fields: Vec<(&'static str, Value)>) -> Details {
    Details::Other { key, fields }
}

/// A payload field (`input`, `output`, `parameters`): kept as a value until printed.
pub(crate) fn payload(field: &'static str, v: &Value) -> Vec<(&'static str, Value)> {
    vec![(field, v.clone())]
}
