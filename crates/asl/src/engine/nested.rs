//! Nested executions: `arn:aws:states:::states:startExecution` with its three integration
//! patterns, as the AWS guide "Start a new AWS Step Functions state machine from a running
//! execution" describes them, running a state machine registered with
//! [`super::EngineBuilder::state_machine`].
//!
//! - Request-response (and `.waitForTaskToken`): the child starts and the Task's result is the
//!   StartExecution response `{"ExecutionArn", "StartDate"}`; the child runs on in the background.
//! - `.sync`: the Task waits for the child; its result is the DescribeExecution response with
//!   `Input` and `Output` as JSON text. `.sync:2`: the same with `Input` and `Output` as JSON.
//!   A child that fails, times out or is aborted fails the Task with `States.TaskFailed`, the
//!   cause being that DescribeExecution response as JSON text (its `Status`, `Error`, `Cause`).
//!   Stopping the parent stops a child it waits for.
//! - An unknown state machine is `StepFunctions.StateMachineDoesNotExistException`; a `Name`
//!   already used for that state machine is `StepFunctions.ExecutionAlreadyExistsException`.
//! - An `Input` given as a string is parsed as JSON text. When it carries
//!   `AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID` (the parent's `$$.Execution.Id`), the child is
//!   associated with that parent ([`ChildExecution::started_by`]).
//!
//! The child is a full execution of its own: its history, its `$$.Execution`, its time limits;
//! on the virtual clock it starts at the parent's time and a `.sync` parent waits as long as the
//! child ran. Finished children are listed in the parent's [`ExecutionResult::children`].
//!
//! The engine also serves `arn:aws:states:::aws-sdk:sfn:sendTaskSuccess` / `sendTaskFailure` /
//! `sendTaskHeartbeat` (unless a handler is registered for them), so a child can answer its
//! parent's `.waitForTaskToken` task; an unknown token is `Sfn.TaskDoesNotExistException`.

use super::*;
use crate::model::StartMode;

/// A finished execution started by another one.
#[derive(Debug, Clone)]
pub struct ChildExecution {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    /// The parent's execution ARN, when the input carried `AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID`.
    pub started_by: Option<String>,
    pub start_ms: i64,
    pub input: Value,
    pub result: ExecutionResult,
}

impl ChildExecution {
    /// The DescribeExecution response, `Input`/`Output` as JSON text (`.sync`) or JSON (`.sync:2`).
    pub fn describe(&self, json_payloads: bool) -> Value {
        let text = |v: &Value| if json_payloads { v.clone() } else { Value::String(v.to_string()) };
        let r = &self.result;
        let mut d = json!({
            "ExecutionArn": self.execution_arn,
            "StateMachineArn": self.state_machine_arn,
            "Name": self.name,
            "Status": r.status.as_str(),
            "StartDate": self.start_ms,
            "StopDate": self.start_ms + r.engine_ms,
            "Input": text(&self.input),
            "InputDetails": {"Included": true},
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
        });
        if let Some(out) = &r.output {
            d["Output"] = text(out);
            d["OutputDetails"] = json!({"Included": true});
        }
        if let Some(e) = &r.error {
            d["Error"] = json!(e);
        }
        if let Some(c) = &r.cause {
            d["Cause"] = json!(c);
        }
        d
    }
}

/// The built-in `states:startExecution` handler of one execution.
pub(super) fn start_execution(exec: &Arc<Exec>, mode: StartMode) -> Arc<dyn TaskHandler> {
    Arc::new(StartExecution {
        engine: exec.engine.clone(),
        children: exec.children.clone(),
        mode,
    })
}

struct StartExecution {
    engine: Arc<Inner>,
    children: Arc<Mutex<Vec<ChildExecution>>>,
    mode: StartMode,
}

/// Stops a child execution when the Task waiting for it goes away (the parent stopped or timed out).
struct StopOnDrop(Option<ExecutionHandle>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.stop(None, None);
        }
    }
}

/// The state machine name a `StateMachineArn` names (`…:stateMachine:NAME[:version|alias]`), or a bare name.
fn machine_name(arn: &str) -> &str {
    match arn.split_once(":stateMachine:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => arn,
    }
}

impl TaskHandler for StartExecution {
    fn invoke(&self, req: TaskRequest) -> HandlerFuture {
        let engine = Engine {
            inner: self.engine.clone(),
        };
        let children = self.children.clone();
        let mode = self.mode;
        Box::pin(async move {
            let p = &req.payload;
            let Some(arn) = p.get("StateMachineArn").and_then(Value::as_str) else {
                return Err(StatesError::runtime(format!(
                    "The Parameters of state '{}' must contain the string 'StateMachineArn' for arn:aws:states:::states:startExecution",
                    req.state_name
                )));
            };
            let sm_name = machine_name(arn).to_string();
            // Registered by its full ARN, or by its name.
            let registered = engine
                .inner
                .state_machines
                .get(arn)
                .or_else(|| engine.inner.state_machines.get(&sm_name));
            let Some(sm) = registered.cloned() else {
                return Err(StatesError::new(
                    "StepFunctions.StateMachineDoesNotExistException",
                    format!("State Machine Does Not Exist: '{arn}'"),
                ));
            };
            let (region, account) = (&engine.inner.region, &engine.inner.account);
            let by_arn = arn.starts_with("arn:") && engine.inner.state_machines.contains_key(arn);
            let sm_arn = if by_arn {
                arn.to_string()
            } else {
                format!("arn:aws:states:{region}:{account}:stateMachine:{sm_name}")
            };
            let name = match p.get("Name").and_then(Value::as_str) {
                Some(n) => n.to_string(),
                None => uuid::Uuid::new_v4().to_string(),
            };
            let exec_arn = if by_arn {
                format!("{}:{name}", arn.replacen(":stateMachine:", ":execution:", 1))
            } else {
                format!("arn:aws:states:{region}:{account}:execution:{sm_name}:{name}")
            };
            if p.get("Name").is_some() && !engine.inner.child_names.lock().unwrap().insert(exec_arn.clone()) {
                return Err(StatesError::new(
                    "StepFunctions.ExecutionAlreadyExistsException",
                    format!("Execution Already Exists: '{exec_arn}'"),
                ));
            }
            let input = match p.get("Input") {
                None => json!({}),
                Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
                Some(v) => v.clone(),
            };
            let started_by = input
                .get("AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID")
                .and_then(Value::as_str)
                .map(String::from);
            let start_ms = req.clock.now_ms();
            let opts = StartOptions {
                name: name.clone(),
                state_machine_name: sm_name,
                record_history: true,
            };
            let running = engine.start_at(sm, input.clone(), opts, Some(start_ms));
            let response = json!({"ExecutionArn": exec_arn, "StartDate": start_ms});
            let child = move |result| ChildExecution {
                execution_arn: exec_arn,
                state_machine_arn: sm_arn,
                name,
                started_by,
                start_ms,
                input,
                result,
            };
            if mode == StartMode::Start {
                tokio::spawn(async move {
                    if let Ok(result) = running.result.await {
                        children.lock().unwrap().push(child(result));
                    }
                });
                return Ok(response);
            }
            let mut guard = StopOnDrop(Some(running.handle));
            let result = running
                .result
                .await
                .map_err(|e| StatesError::runtime(format!("the child execution did not finish: {e}")))?;
            guard.0 = None;
            req.clock.advance_virtual(result.engine_ms);
            let child = child(result);
            let described = child.describe(mode == StartMode::Sync2);
            let ok = child.result.status == Status::Succeeded;
            children.lock().unwrap().push(child);
            if ok {
                Ok(described)
            } else {
                Err(StatesError::new(names::TASK_FAILED, described.to_string()))
            }
        })
    }
}

/// `aws-sdk:sfn:sendTaskSuccess` / `sendTaskFailure` / `sendTaskHeartbeat`, answered by the engine.
pub(super) fn callback_api(exec: &Arc<Exec>, base: &str) -> Option<Arc<dyn TaskHandler>> {
    let action = base.strip_prefix("arn:aws:states:::aws-sdk:sfn:")?;
    if !matches!(action, "sendTaskSuccess" | "sendTaskFailure" | "sendTaskHeartbeat") {
        return None;
    }
    let engine = Engine {
        inner: exec.engine.clone(),
    };
    let action = action.to_string();
    Some(Arc::new(move |req: TaskRequest| {
        let engine = engine.clone();
        let action = action.clone();
        async move {
            let p = &req.payload;
            let token = p.get("TaskToken").and_then(Value::as_str).unwrap_or_default();
            let sent = match action.as_str() {
                "sendTaskSuccess" => {
                    let output = match p.get("Output") {
                        Some(Value::String(s)) => serde_json::from_str(s)
                            .map_err(|e| StatesError::new("Sfn.InvalidOutputException", format!("Invalid Output: {e}")))?,
                        Some(v) => v.clone(),
                        None => json!({}),
                    };
                    engine.send_task_success(token, output)
                }
                "sendTaskFailure" => {
                    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    engine.send_task_failure(token, &field("Error"), &field("Cause"))
                }
                _ => engine.send_task_heartbeat(token),
            };
            match sent {
                Ok(()) => Ok(json!({})),
                Err(CallbackError::TaskDoesNotExist) => {
                    Err(StatesError::new("Sfn.TaskDoesNotExistException", "Task does not exist anymore"))
                }
                Err(CallbackError::InvalidOutput(m)) => Err(StatesError::new("Sfn.InvalidOutputException", m)),
            }
        }
    }))
}
