//! TestState, offline: one state of a definition run on its own, the way the Step Functions
//! `TestState` API runs it (API reference "TestState", "TestStateConfiguration",
//! "InspectionData", "InspectionErrorDetails"; the November 2025 form with `stateName`,
//! `mock`, `context`, `stateConfiguration` and `variables`).
//!
//! - `definition` is a whole state machine (with `stateName`) or a single state.
//! - With `mock`, no handler runs: `result` (JSON text) is the task's result, or `errorOutput`
//!   (`error`, `cause`) its failure. Map and Parallel states, `.sync` and `.waitForTaskToken`
//!   Tasks need a mock, as on AWS (`ValidationException` otherwise). Without a mock a Task runs
//!   through the engine's handlers.
//! - An error (mocked or real) is handled as the state would: a retrier that matches and has
//!   attempts left (`stateConfiguration.retrierRetryCount` is how many it has made) makes the
//!   status `RETRIABLE` (with `retryIndex` and `retryBackoffIntervalSeconds`, without jitter);
//!   else a catcher that matches makes it `CAUGHT_ERROR` (with `catchIndex`, the catcher's
//!   output and `nextState`); else `FAILED`. `States.Runtime` is never retried or caught.
//! - `stateConfiguration.mapIterationFailureCount` above the Map's tolerated failures fails
//!   it with `States.ExceedToleratedFailureThreshold`; `errorCausedByState` must name a state
//!   inside the mocked Map or Parallel.
//! - `inspectionLevel` INFO gives the output and the error details; DEBUG adds the data flow
//!   (`input`, `afterInputPath`, `afterParameters` / `afterArguments`, `result`,
//!   `afterResultSelector`, `afterResultPath`, `afterItemsPath`, `afterItemSelector`,
//!   `afterItemBatcher`, `maxConcurrency`, `toleratedFailureCount`,
//!   `toleratedFailurePercentage`, `variables`); TRACE adds an HTTP Task's `request`
//!   (`protocol`, `method`, `url`, `headers`, `body`) and `response` (`protocol`, `statusCode`,
//!   `statusMessage`, `headers`, `body`), the connection's secrets `<redacted>` unless
//!   `reveal_secrets`.

use super::map::{map_items, select_items, tolerance};
use super::*;
use crate::model::{parse_value, Transition};

/// How much a TestState response shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InspectionLevel {
    #[default]
    Info,
    Debug,
    Trace,
}

impl std::str::FromStr for InspectionLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "INFO" => Ok(InspectionLevel::Info),
            "DEBUG" => Ok(InspectionLevel::Debug),
            "TRACE" => Ok(InspectionLevel::Trace),
            o => Err(format!("'{o}' is not INFO, DEBUG or TRACE")),
        }
    }
}

/// A TestState request (the API's fields; JSON values instead of JSON text).
#[derive(Debug, Clone, Default)]
pub struct TestStateRequest {
    /// A state machine definition, or one state's definition.
    pub definition: Value,
    /// The state to test in a state machine definition (default: its StartAt).
    pub state_name: Option<String>,
    pub input: Value,
    /// `{"result": "<json>"}` or `{"errorOutput": {"error", "cause"}}`; `fieldValidationMode` is accepted.
    pub mock: Option<Value>,
    /// A context object (`$$`), merged over the default one.
    pub context: Option<Value>,
    /// `{"retrierRetryCount", "errorCausedByState", "mapIterationFailureCount", "mapItemReaderData"}`.
    pub state_configuration: Option<Value>,
    /// Workflow variables visible to the state.
    pub variables: Option<Value>,
    pub inspection_level: InspectionLevel,
    /// Show the connection's credentials in a TRACE of an HTTP Task (else `<redacted>`).
    pub reveal_secrets: bool,
}

/// A TestState response. [`TestStateOutput::to_json`] gives the API's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TestStateOutput {
    /// `SUCCEEDED`, `FAILED`, `RETRIABLE` or `CAUGHT_ERROR`.
    pub status: &'static str,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub next_state: Option<String>,
    /// The API's `inspectionData` (data-flow fields as JSON text, `errorDetails` as numbers).
    pub inspection_data: Map<String, Value>,
}

impl TestStateOutput {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), json!(self.status));
        if let Some(o) = &self.output {
            m.insert("output".into(), json!(o.to_string()));
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
        }
        if let Some(c) = &self.cause {
            m.insert("cause".into(), json!(c));
        }
        if let Some(n) = &self.next_state {
            m.insert("nextState".into(), json!(n));
        }
        if !self.inspection_data.is_empty() {
            m.insert("inspectionData".into(), Value::Object(self.inspection_data.clone()));
        }
        Value::Object(m)
    }
}

/// Why a TestState request could not run (the API's `InvalidDefinition` / `ValidationException`).
#[derive(Debug, thiserror::Error)]
pub enum TestStateError {
    #[error("InvalidDefinition: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    InvalidDefinition(Vec<crate::error::LoadError>),
    #[error("ValidationException: {0}")]
    Validation(String),
}

/// A single state's definition as a machine: its Next targets become Succeed states.
fn as_machine(def: &Value) -> (Value, String) {
    if def.get("States").is_some() {
        let start = def.get("StartAt").and_then(Value::as_str).unwrap_or_default().to_string();
        return (def.clone(), start);
    }
    let name = "TestState".to_string();
    let mut targets = Vec::new();
    let mut collect = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            targets.push(s.to_string());
        }
    };
    collect(def.get("Next"));
    collect(def.get("Default"));
    for list in ["Catch", "Choices"] {
        for c in def.get(list).and_then(Value::as_array).into_iter().flatten() {
            collect(c.get("Next"));
        }
    }
    let mut states = Map::new();
    states.insert(name.clone(), def.clone());
    for t in targets {
        if t != name {
            states.insert(t, json!({"Type": "Succeed"}));
        }
    }
    let mut m = json!({"StartAt": name, "States": states});
    if let Some(q) = def.get("QueryLanguage") {
        m["QueryLanguage"] = q.clone();
    }
    (m, name)
}

fn find<'a>(sm: &'a StateMachine, name: &str) -> Option<(&'a StateMachine, &'a State)> {
    for st in &sm.states {
        if &*st.name == name {
            return Some((sm, st));
        }
        let inner: Vec<&StateMachine> = match &st.kind {
            Kind::Parallel { branches } => branches.iter().map(|b| &**b).collect(),
            Kind::Map(m) => vec![&*m.processor],
            _ => vec![],
        };
        if let Some(found) = inner.into_iter().find_map(|b| find(b, name)) {
            return Some(found);
        }
    }
    None
}

fn text(v: &Value) -> Value {
    Value::String(v.to_string())
}

impl Engine {
    /// Runs one state as the TestState API does (see the module documentation).
    pub async fn test_state(&self, req: TestStateRequest) -> Result<TestStateOutput, TestStateError> {
        let (def, default_name) = as_machine(&req.definition);
        let sm = parse_value(&def).map_err(TestStateError::InvalidDefinition)?;
        let name = req.state_name.clone().unwrap_or(default_name);
        let (machine, st) =
            find(&sm, &name).ok_or_else(|| TestStateError::Validation(format!("The state '{name}' is not in the definition")))?;
        let config = req.state_configuration.clone().unwrap_or(Value::Null);
        let needs_mock = matches!(st.kind, Kind::Map(_) | Kind::Parallel { .. })
            || matches!(&st.kind, Kind::Task(t) if t.wait_for_token || t.resource.contains(".sync"));
        if needs_mock && req.mock.is_none() {
            return Err(TestStateError::Validation(format!(
                "The state '{name}' can only be tested with a mock (Map, Parallel, .sync and .waitForTaskToken states)"
            )));
        }
        if let Some(by) = config.get("errorCausedByState").and_then(Value::as_str) {
            let inside = match &st.kind {
                Kind::Parallel { branches } => branches.iter().any(|b| find(b, by).is_some()),
                Kind::Map(m) => find(&m.processor, by).is_some(),
                _ => false,
            };
            if !inside {
                return Err(TestStateError::Validation(format!(
                    "errorCausedByState '{by}' is not a state inside '{name}'"
                )));
            }
        }
        let mock = match &req.mock {
            None => None,
            Some(m) => Some(match (m.get("result"), m.get("errorOutput")) {
                (Some(Value::String(s)), None) => Ok(serde_json::from_str::<Value>(s)
                    .map_err(|e| TestStateError::Validation(format!("mock.result is not JSON text: {e}")))?),
                (Some(v), None) => Ok(v.clone()),
                (None, Some(e)) => Err(StatesError::new(
                    e.get("error").and_then(Value::as_str).unwrap_or_default(),
                    e.get("cause").and_then(Value::as_str).unwrap_or_default(),
                )),
                _ => {
                    return Err(TestStateError::Validation(
                        "mock needs exactly one of 'result' and 'errorOutput'".into(),
                    ))
                }
            }),
        };
        // A Map or Parallel state's result is an array; fieldValidationMode NONE skips the check.
        let validate = req.mock.as_ref().and_then(|m| m.get("fieldValidationMode")).and_then(Value::as_str) != Some("NONE");
        if let (true, Some(Ok(v)), Kind::Map(_) | Kind::Parallel { .. }) = (validate, &mock, &st.kind) {
            if !v.is_array() {
                return Err(TestStateError::Validation(format!(
                    "The mocked result of the {} state '{name}' must be a JSON array",
                    if matches!(st.kind, Kind::Map(_)) { "Map" } else { "Parallel" }
                )));
            }
        }

        let opts = StartOptions {
            name: "TestState".into(),
            state_machine_name: "TestStateMachine".into(),
            record_history: false,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let exec = self.new_exec(&opts, req.input.clone(), None, tx, None);
        let e = &self.inner;
        let mut context = json!({
            "Execution": {"Id": format!("arn:aws:states:{}:{}:execution:{}:{}", e.region, e.account, opts.state_machine_name, opts.name),
                "Name": opts.name, "RoleArn": format!("arn:aws:iam::{}:role/StepFunctionsLocal", e.account), "StartTime": format_ms(exec.start_ms), "RedriveCount": 0},
            "StateMachine": {"Id": format!("arn:aws:states:{}:{}:stateMachine:{}", e.region, e.account, opts.state_machine_name), "Name": opts.state_machine_name},
            "State": {"Name": &*st.name, "EnteredTime": format_ms(exec.start_ms), "RetryCount": config.get("retrierRetryCount").and_then(Value::as_u64).unwrap_or(0)},
        });
        if let Some(Value::Object(c)) = &req.context {
            for (k, v) in c {
                match (context.get_mut(k), v) {
                    (Some(Value::Object(base)), Value::Object(over)) => base.extend(over.clone()),
                    _ => context[k] = v.clone(),
                }
            }
        }
        let mut pc = PathCtx {
            vars: Vars::new(),
            now_ms: exec.start_ms,
            last_event: 0,
            entered_event: 0,
            context: Arc::new(context),
        };
        if let Some(Value::Object(vars)) = &req.variables {
            for (k, v) in vars {
                pc.vars.set(k.clone(), v.clone());
            }
        }
        let mut probe = Probe {
            debug: req.inspection_level != InspectionLevel::Info,
            trace: (req.inspection_level == InspectionLevel::Trace).then(|| super::http::HttpTrace {
                reveal_secrets: req.reveal_secrets,
                ..Default::default()
            }),
            data: Map::new(),
        };
        let raw = req.input.clone();
        probe.put("input", &raw);
        let step = run_one(&exec, st, &raw, &mut pc, mock, &config, &mut probe).await;
        let name_of = |i: usize| machine.states[i].name.to_string();
        let mut out = TestStateOutput {
            status: "SUCCEEDED",
            output: None,
            error: None,
            cause: None,
            next_state: None,
            inspection_data: Map::new(),
        };
        match step {
            Ok(s) => {
                if let Some(vars) = &s.assigned {
                    for (k, v) in vars {
                        pc.vars.set(k.clone(), v.clone());
                    }
                }
                out.output = Some(s.output);
                out.next_state = s.next.map(name_of);
            }
            // The cause as the state gave it: no "(entered at the event id #n)" prefix, since a
            // tested state has no execution history.
            Err(Stop::Failed(err)) => {
                let retry_count = config.get("retrierRetryCount").and_then(Value::as_u64).unwrap_or(0) as u32;
                let retrier = (err.error != names::RUNTIME)
                    .then(|| {
                        st.retry
                            .iter()
                            .position(|r| r.error_equals.iter().any(|p| error_matches(p, &err.error)))
                    })
                    .flatten();
                let catcher = (err.error != names::RUNTIME)
                    .then(|| {
                        st.catch
                            .iter()
                            .position(|c| c.error_equals.iter().any(|p| error_matches(p, &err.error)))
                    })
                    .flatten();
                out.error = Some(err.error.clone());
                out.cause = Some(err.cause.clone());
                match (retrier, catcher) {
                    (Some(i), _) if retry_count < st.retry[i].max_attempts => {
                        let r = &st.retry[i];
                        let mut delay = r.interval_seconds * r.backoff_rate.powi(retry_count as i32);
                        if let Some(max) = r.max_delay_seconds {
                            delay = delay.min(max);
                        }
                        out.status = "RETRIABLE";
                        out.next_state = Some(st.name.to_string());
                        out.inspection_data.insert(
                            "errorDetails".into(),
                            json!({"retryIndex": i, "retryBackoffIntervalSeconds": delay as u64}),
                        );
                    }
                    (_, Some(i)) => {
                        let c = &st.catch[i];
                        let error_output = json!({"Error": err.error, "Cause": err.cause});
                        let seen = Seen {
                            input: &raw,
                            dollar: &error_output,
                            result: None,
                            error_output: Some(&error_output),
                        };
                        let output = match (st.lang, &c.output) {
                            (Lang::Jsonata, Some(t)) => t.eval(&exec.jenv(&pc, &seen), "Output"),
                            (Lang::Jsonata, None) => Ok(error_output.clone()),
                            (Lang::JsonPath, _) => apply_result_path(&c.result_path, &raw, error_output.clone()),
                        };
                        let assigned = c.assign.as_ref().map(|a| eval_assign(&exec, a, &seen, &pc)).transpose();
                        match (output, assigned) {
                            (Ok(o), Ok(a)) => {
                                for (k, v) in a.into_iter().flatten() {
                                    pc.vars.set(k, v);
                                }
                                out.status = "CAUGHT_ERROR";
                                out.output = Some(o);
                                out.next_state = Some(name_of(c.next));
                                out.inspection_data.insert("errorDetails".into(), json!({"catchIndex": i}));
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                out.status = "FAILED";
                                out.error = Some(e.error);
                                out.cause = Some(e.cause);
                            }
                        }
                    }
                    _ => out.status = "FAILED",
                }
            }
            Err(Stop::TimedOut) => {
                out.status = "FAILED";
                out.error = Some(names::TIMEOUT.into());
            }
            Err(Stop::Aborted) => {
                out.status = "FAILED";
                out.error = Some("States.Aborted".into());
            }
        }
        if probe.debug {
            let vars: Map<String, Value> = pc.vars.all().into_iter().collect();
            if !vars.is_empty() {
                probe.data.insert("variables".into(), text(&Value::Object(vars)));
            }
        }
        for (k, v) in probe.data {
            out.inspection_data.entry(k).or_insert(v);
        }
        Ok(out)
    }
}

/// The inspection data being collected (DEBUG and TRACE only).
struct Probe {
    debug: bool,
    /// TRACE: the HTTP Task's request and response.
    trace: Option<super::http::HttpTrace>,
    data: Map<String, Value>,
}

impl Probe {
    fn put(&mut self, k: &str, v: &Value) {
        if self.debug {
            self.data.insert(k.into(), text(v));
        }
    }
    fn num(&mut self, k: &str, v: Value) {
        if self.debug {
            self.data.insert(k.into(), v);
        }
    }
}

async fn run_one(
    exec: &Arc<Exec>,
    st: &State,
    raw: &Value,
    pc: &mut PathCtx,
    mock: Option<Result<Value, StatesError>>,
    config: &Value,
    probe: &mut Probe,
) -> Result<StepOut, Stop> {
    let next = match st.transition {
        Transition::Next(n) => Some(n),
        _ => None,
    };
    let eff = match st.lang {
        Lang::JsonPath => apply_input_path(&st.input_path, raw, exec, pc)?.into_owned(),
        Lang::Jsonata => raw.clone(),
    };
    if st.lang == Lang::JsonPath {
        probe.put("afterInputPath", &eff);
    }
    let result = match &st.kind {
        Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
            if let Kind::Map(m) = &st.kind {
                inspect_map(exec, st, m, &eff, pc, config, probe)?;
            } else {
                let args = state_args(exec, st, &eff, pc)?;
                probe.put(
                    if st.lang == Lang::Jsonata {
                        "afterArguments"
                    } else {
                        "afterParameters"
                    },
                    &args,
                );
            }
            match (mock, &st.kind, probe.trace.as_mut()) {
                (Some(r), _, _) => r?,
                // TRACE an HTTP Task: the call itself, with its request and response.
                (None, Kind::Task(t), Some(trace)) if t.target == crate::model::Target::Http => {
                    let args = state_args(exec, st, &eff, pc)?;
                    let r = super::http::call(&exec.engine, &args, Some(trace)).await;
                    if let Some(req) = trace.request.take() {
                        probe.data.insert("request".into(), req);
                    }
                    if let Some(resp) = trace.response.take() {
                        probe.data.insert("response".into(), resp);
                    }
                    r?
                }
                (None, _, _) => super::task::run_task(exec, st, &eff, pc).await?,
            }
        }
        _ => {
            if let (Kind::Pass { .. }, Some(t), Lang::JsonPath) = (&st.kind, &st.parameters, st.lang) {
                probe.put("afterParameters", &t.eval(&exec.scope(&eff, pc))?);
            }
            let out = run_state(exec, st, raw, pc).await?;
            if matches!(st.kind, Kind::Pass { .. }) && st.lang == Lang::JsonPath {
                probe.put("afterResultPath", &out.output);
            }
            return Ok(out);
        }
    };
    probe.put("result", &result);
    match st.lang {
        Lang::Jsonata => {
            let seen = Seen {
                input: raw,
                dollar: raw,
                result: Some(&result),
                error_output: None,
            };
            let assigned = st.assign.as_ref().map(|a| eval_assign(exec, a, &seen, pc)).transpose()?;
            let output = match &st.output {
                Some(t) => t.eval(&exec.jenv(pc, &seen), "Output")?,
                None => result.clone(),
            };
            Ok(StepOut { output, next, assigned })
        }
        Lang::JsonPath => {
            let assigned = opt_assign(exec, st, &result, pc)?;
            let selected = match &st.result_selector {
                Some(t) => {
                    let v = t.eval(&exec.scope(&result, pc))?;
                    probe.put("afterResultSelector", &v);
                    v
                }
                None => result,
            };
            let out = apply_result_path(&st.result_path, raw, selected)?;
            probe.put("afterResultPath", &out);
            Ok(StepOut {
                output: apply_output_path(&st.output_path, out, exec, pc)?,
                next,
                assigned,
            })
        }
    }
}

/// A Map's item processing as inspection data, and its tolerated failures against
/// `mapIterationFailureCount`.
fn inspect_map(
    exec: &Arc<Exec>,
    st: &State,
    m: &MapState,
    eff: &Value,
    pc: &PathCtx,
    config: &Value,
    probe: &mut Probe,
) -> Result<(), Stop> {
    let items = match (
        config.get("mapItemReaderData").and_then(Value::as_str),
        m.distributed.as_ref().and_then(|d| d.reader.as_ref()),
    ) {
        (Some(data), Some(_)) => match serde_json::from_str(data) {
            Ok(Value::Array(a)) => a,
            _ => {
                return Err(Stop::Failed(StatesError::new(
                    "States.ItemReaderFailed",
                    "mapItemReaderData is not a JSON array",
                )))
            }
        },
        _ => map_items(exec, st, m, eff, pc)?,
    };
    if st.lang == Lang::JsonPath {
        probe.put("afterItemsPath", &Value::Array(items.clone()));
    }
    let n = items.len();
    let selected = select_items(exec, m, items, eff, pc)?;
    probe.put("afterItemSelector", &Value::Array(selected.clone()));
    if let Some(b) = m.distributed.as_ref().and_then(|d| d.batcher.as_ref()) {
        let batches = super::distributed::batch(exec, b, selected, eff, pc)?;
        probe.put("afterItemBatcher", &Value::Array(batches.into_iter().map(|(v, _)| v).collect()));
    }
    if let Some(s) = &m.max_concurrency {
        probe.num("maxConcurrency", json!(exec.seconds(s, eff, pc, "MaxConcurrencyPath")?));
    }
    let (count, pct) = tolerance(exec, m, eff, pc)?;
    if m.tolerated_failure_count.is_some() {
        probe.num("toleratedFailureCount", json!(count));
    }
    if m.tolerated_failure_percentage.is_some() {
        probe.num("toleratedFailurePercentage", json!(pct));
    }
    if let Some(failed) = config.get("mapIterationFailureCount").and_then(Value::as_u64) {
        if failed > count && (failed as f64 * 100.0 / n.max(1) as f64) > pct {
            return Err(Stop::Failed(StatesError::new(
                names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                super::distributed::TOLERATED_FAILURE_CAUSE,
            )));
        }
    }
    Ok(())
}
