//! The executor: runs a compiled [`StateMachine`] the way AWS Step Functions does (input and
//! output processing, Retry and Catch, Parallel and Map concurrency, callbacks with task
//! tokens, execution time limits) and records a history in AWS's shape.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

use crate::error::{names, StatesError};
use crate::history::{details, payload, Details, HistoryEvent};
use crate::jsonata::{Env, JTemplate};
use crate::mock::MockCase;
use crate::model::{
    function_name, Assign, Cond, IoPath, Kind, Lang, MapState, Percentage, ResultPath, Retrier, Seconds, State, StateMachine, StrOrPath,
    Target, Task, Transition, Wait,
};
use crate::path::{set_at, truncate, type_name, Scope, Vars};
use crate::time::{format_ms, parse_timestamp};

/// The largest payload (input, output, result) AWS accepts: 256 KiB of UTF-8 JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// AWS runs at most 40 iterations of an inline Map at once, whatever MaxConcurrency says.
pub const INLINE_MAP_CONCURRENCY: usize = 40;
const HISTORY_CHUNK: usize = 1024;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, StatesError>> + Send>>;

/// What a Task handler receives.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// The Task's `Resource` (for `lambda:invoke`, the resolved function name is in `function`).
    pub resource: String,
    /// The Lambda function name, for Lambda resources.
    pub function: Option<String>,
    pub state_name: String,
    /// The payload: the Lambda event, or the effective parameters of another resource.
    pub payload: Value,
    /// Set for `.waitForTaskToken` tasks.
    pub task_token: Option<String>,
    /// The engine's clock when the task was scheduled, ms since the Unix epoch.
    pub now_ms: i64,
    /// The engine's clock, for a handler that waits (e.g. polls a resource) while it runs.
    pub clock: TaskClock,
}

/// The engine's clock as one task invocation sees it. With [`Clock::Virtual`], [`TaskClock::sleep`]
/// returns at once and moves this invocation's time on; the engine then carries on from the
/// time the handler reached, so a handler that waited took that long on the engine's clock
/// (and past the Task's `TimeoutSeconds` it times out, as on AWS).
#[derive(Debug, Clone)]
pub struct TaskClock {
    inner: Arc<TaskClockInner>,
}

#[derive(Debug)]
enum TaskClockInner {
    Virtual(AtomicI64),
    Real { scale: f64, start_ms: i64, started: Instant },
}

impl TaskClock {
    fn new(clock: Clock, now_ms: i64) -> TaskClock {
        let inner = match clock {
            Clock::Virtual => TaskClockInner::Virtual(AtomicI64::new(now_ms)),
            Clock::Real { scale } => TaskClockInner::Real {
                scale,
                start_ms: now_ms,
                started: Instant::now(),
            },
        };
        TaskClock { inner: Arc::new(inner) }
    }

    /// A virtual clock standing at `now_ms`, for calling a handler outside an engine.
    pub fn virtual_at(now_ms: i64) -> TaskClock {
        TaskClock::new(Clock::Virtual, now_ms)
    }

    /// Now, ms since the Unix epoch, on the engine's clock.
    pub fn now_ms(&self) -> i64 {
        match &*self.inner {
            TaskClockInner::Virtual(now) => now.load(Ordering::Relaxed),
            TaskClockInner::Real { scale, start_ms, started } => start_ms + (started.elapsed().as_secs_f64() * scale * 1000.0) as i64,
        }
    }

    /// Waits `ms` on the engine's clock.
    pub async fn sleep(&self, ms: u64) {
        match &*self.inner {
            TaskClockInner::Virtual(now) => {
                now.fetch_add(ms as i64, Ordering::Relaxed);
            }
            TaskClockInner::Real { scale, .. } => tokio::time::sleep(Duration::from_secs_f64(ms as f64 / 1000.0 / scale)).await,
        }
    }
}

/// A Task implementation. For Lambda functions the error's `error` is the function's
/// `errorType` and `cause` its `errorMessage`; the engine shapes the Cause as AWS does.
pub trait TaskHandler: Send + Sync + 'static {
    fn invoke(&self, req: TaskRequest) -> HandlerFuture;
}

impl<F, Fut> TaskHandler for F
where
    F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, StatesError>> + Send + 'static,
{
    fn invoke(&self, req: TaskRequest) -> HandlerFuture {
        Box::pin(self(req))
    }
}

/// How time passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    /// Wait states and retry delays advance a virtual clock instantly and deterministically;
    /// Task and callback time limits are still enforced in real time.
    Virtual,
    /// Real time, sped up by `scale` (1.0 is real time, 60.0 makes a minute take a second).
    Real { scale: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExecutionResult {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub events: Vec<HistoryEvent>,
    /// States entered (AWS's billed state transitions).
    pub transitions: u64,
    /// Task handler invocations (including retries; mocked responses count too).
    pub task_invocations: u64,
    /// Engine time from start to end, ms on the engine's clock.
    pub engine_ms: i64,
}

/// Options of one execution.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub name: String,
    pub state_machine_name: String,
    /// Keep the history in the result (the live stream works either way).
    pub record_history: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            name: uuid::Uuid::new_v4().to_string(),
            state_machine_name: "StateMachine".into(),
            record_history: true,
        }
    }
}

/// Builds an [`Engine`].
#[derive(Default)]
pub struct EngineBuilder {
    lambdas: HashMap<String, Arc<dyn TaskHandler>>,
    resources: Vec<(String, Arc<dyn TaskHandler>)>,
    mock: Option<MockCase>,
    clock: Option<Clock>,
    region: Option<String>,
    account: Option<String>,
}

impl EngineBuilder {
    /// Serves the Lambda function `name` (reached by a function ARN resource or `lambda:invoke`).
    pub fn lambda(mut self, name: impl Into<String>, h: impl TaskHandler) -> Self {
        self.lambdas.insert(name.into(), Arc::new(h));
        self
    }
    /// Serves any other resource: an exact ARN, or a prefix ending in `:` or `*`
    /// (e.g. `arn:aws:states:::aws-sdk:ec2:*`). `.sync` / `.waitForTaskToken` suffixes are stripped first.
    pub fn resource(mut self, arn: impl Into<String>, h: impl TaskHandler) -> Self {
        self.resources.push((arn.into(), Arc::new(h)));
        self
    }
    pub fn mock(mut self, case: MockCase) -> Self {
        self.mock = Some(case);
        self
    }
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }
    pub fn build(self) -> Engine {
        let mut resources = self.resources;
        resources.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        Engine {
            inner: Arc::new(Inner {
                lambdas: self.lambdas,
                resources,
                mock: self.mock,
                clock: self.clock.unwrap_or(Clock::Virtual),
                region: self.region.unwrap_or_else(|| "us-east-1".into()),
                account: self.account.unwrap_or_else(|| "123456789012".into()),
            }),
        }
    }
}

struct Inner {
    lambdas: HashMap<String, Arc<dyn TaskHandler>>,
    resources: Vec<(String, Arc<dyn TaskHandler>)>,
    mock: Option<MockCase>,
    clock: Clock,
    region: String,
    account: String,
}

/// The local Step Functions engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A running execution: its handle (callbacks, stop), its live event stream and its result.
pub struct RunningExecution {
    pub handle: ExecutionHandle,
    pub events: mpsc::UnboundedReceiver<HistoryEvent>,
    pub result: tokio::task::JoinHandle<ExecutionResult>,
}

enum TokenMsg {
    Success(Value),
    Failure(StatesError),
    Heartbeat,
}

/// Errors of the callback API, named like the Step Functions API's exceptions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("TaskDoesNotExist: no task is waiting for this token (it completed, timed out or never existed)")]
    TaskDoesNotExist,
    #[error("InvalidOutput: {0}")]
    InvalidOutput(String),
}

/// Talks to a running execution: `SendTaskSuccess`, `SendTaskFailure`, `SendTaskHeartbeat`, `StopExecution`.
#[derive(Clone)]
pub struct ExecutionHandle {
    exec: Arc<Exec>,
}

impl ExecutionHandle {
    fn send(&self, token: &str, msg: TokenMsg) -> Result<(), CallbackError> {
        let tokens = self.exec.tokens.lock().unwrap();
        let tx = tokens.get(token).ok_or(CallbackError::TaskDoesNotExist)?;
        tx.send(msg).map_err(|_| CallbackError::TaskDoesNotExist)
    }
    pub fn send_task_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        if json_len(&output) > MAX_PAYLOAD_BYTES {
            return Err(CallbackError::InvalidOutput("the output is larger than 256 KiB".into()));
        }
        self.send(token, TokenMsg::Success(output))
    }
    pub fn send_task_failure(&self, token: &str, error: &str, cause: &str) -> Result<(), CallbackError> {
        self.send(token, TokenMsg::Failure(StatesError::new(error, cause)))
    }
    pub fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.send(token, TokenMsg::Heartbeat)
    }
    /// Stops (aborts) the execution, like `StopExecution`.
    pub fn stop(&self, error: Option<&str>, cause: Option<&str>) {
        *self.exec.stop_reason.lock().unwrap() = Some((error.map(String::from), cause.map(String::from)));
        let _ = self.exec.abort.send(true);
    }
    /// Tokens of the callback tasks waiting right now.
    pub fn waiting_tokens(&self) -> Vec<String> {
        self.exec.tokens.lock().unwrap().keys().cloned().collect()
    }
}

struct Exec {
    engine: Arc<Inner>,
    record: bool,
    /// Recorded events in fixed-size chunks, so a long history is never copied to grow.
    history: Mutex<Vec<Vec<HistoryEvent>>>,
    next_id: AtomicU64,
    sink: mpsc::UnboundedSender<HistoryEvent>,
    start_ms: i64,
    started: Instant,
    deadline_ms: Option<i64>,
    exec_input: Value,
    transitions: AtomicU64,
    invocations: AtomicU64,
    mock_counts: Mutex<HashMap<Arc<str>, u32>>,
    tokens: Mutex<HashMap<String, mpsc::UnboundedSender<TokenMsg>>>,
    abort: watch::Sender<bool>,
    stop_reason: Mutex<Option<(Option<String>, Option<String>)>>,
    rng: Mutex<u64>,
}

/// Why a path stopped without output.
#[derive(Debug)]
enum Stop {
    Failed(StatesError),
    TimedOut,
    Aborted,
}

impl From<StatesError> for Stop {
    fn from(e: StatesError) -> Self {
        Stop::Failed(e)
    }
}

/// One thread of execution: the top level, a Parallel branch or a Map iteration.
#[derive(Clone)]
struct PathCtx {
    vars: Vars,
    now_ms: i64,
    last_event: u64,
    /// The context object without Execution.Input, shared between paths until one changes it.
    context: Arc<Value>,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Starts an execution on the current Tokio runtime.
    pub fn start(&self, sm: Arc<StateMachine>, input: Value, opts: StartOptions) -> RunningExecution {
        let (tx, rx) = mpsc::unbounded_channel();
        let exec = self.new_exec(&opts, input, sm.timeout_seconds, tx);
        let handle = ExecutionHandle { exec: exec.clone() };
        let result = tokio::spawn(async move { run_execution(exec, sm, opts).await });
        RunningExecution {
            handle,
            events: rx,
            result,
        }
    }

    /// Runs an execution to its end on the current task.
    pub async fn run(&self, sm: &Arc<StateMachine>, input: Value, opts: StartOptions) -> ExecutionResult {
        // Nobody watches this execution live: a closed channel makes emitting skip the copy.
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let exec = self.new_exec(&opts, input, sm.timeout_seconds, tx);
        run_execution(exec, sm.clone(), opts).await
    }

    fn new_exec(&self, opts: &StartOptions, input: Value, timeout: Option<u64>, sink: mpsc::UnboundedSender<HistoryEvent>) -> Arc<Exec> {
        let start_ms = chrono::Utc::now().timestamp_millis();
        let seed = opts
            .name
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
            | 1;
        Arc::new(Exec {
            engine: self.inner.clone(),
            record: opts.record_history,
            history: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            sink,
            start_ms,
            started: Instant::now(),
            deadline_ms: timeout.map(|t| start_ms + t as i64 * 1000),
            exec_input: input,
            transitions: AtomicU64::new(0),
            invocations: AtomicU64::new(0),
            mock_counts: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            abort: watch::channel(false).0,
            stop_reason: Mutex::new(None),
            rng: Mutex::new(seed),
        })
    }
}

async fn run_execution(exec: Arc<Exec>, sm: Arc<StateMachine>, opts: StartOptions) -> ExecutionResult {
    let e = &exec.engine;
    let sm_arn = format!("arn:aws:states:{}:{}:stateMachine:{}", e.region, e.account, opts.state_machine_name);
    let exec_arn = format!(
        "arn:aws:states:{}:{}:execution:{}:{}",
        e.region, e.account, opts.state_machine_name, opts.name
    );
    let role = format!("arn:aws:iam::{}:role/StepFunctionsLocal", e.account);
    let context = json!({
        "Execution": {"Id": exec_arn, "Name": opts.name, "RoleArn": role, "StartTime": format_ms(exec.start_ms), "RedriveCount": 0},
        "StateMachine": {"Id": sm_arn, "Name": opts.state_machine_name},
        "State": {"Name": "", "EnteredTime": "", "RetryCount": 0},
    });
    let mut pc = PathCtx {
        vars: Vars::new(),
        now_ms: exec.start_ms,
        last_event: 0,
        context: Arc::new(context),
    };
    let input = exec.exec_input.clone();
    let mut started = payload("input", &input);
    started.push(("roleArn", Value::String(role)));
    exec.emit(&mut pc, "ExecutionStarted", details("executionStartedEventDetails", started));
    // In AWS histories the first state's event does not point back at ExecutionStarted.
    pc.last_event = 0;

    let outcome = if json_len(&input) > MAX_PAYLOAD_BYTES {
        Err(Stop::Failed(StatesError::new(
            names::DATA_LIMIT_EXCEEDED,
            "The execution input exceeds the maximum size of 262144 bytes",
        )))
    } else {
        let mut abort_rx = exec.abort.subscribe();
        let fut = run_machine(&exec, &sm, input, &mut pc);
        let real_deadline = match (exec.engine.clock, sm.timeout_seconds) {
            (Clock::Real { scale }, Some(t)) => Some(Duration::from_secs_f64(t as f64 / scale)),
            _ => None,
        };
        tokio::select! {
            r = fut => r,
            _ = abort_rx.wait_for(|a| *a) => Err(Stop::Aborted),
            _ = sleep_opt(real_deadline) => Err(Stop::TimedOut),
        }
    };
    let now = exec.now(&pc);
    pc.now_ms = now.max(pc.now_ms);
    let (status, output, error, cause) = match outcome {
        Ok(out) => {
            exec.emit(
                &mut pc,
                "ExecutionSucceeded",
                details("executionSucceededEventDetails", payload("output", &out)),
            );
            (Status::Succeeded, Some(out), None, None)
        }
        Err(Stop::Failed(err)) => {
            let (error, cause) = (non_empty(err.error), non_empty(err.cause));
            exec.emit(
                &mut pc,
                "ExecutionFailed",
                details("executionFailedEventDetails", present(&error, &cause)),
            );
            (Status::Failed, None, error, cause)
        }
        Err(Stop::TimedOut) => {
            if let Some(d) = exec.deadline_ms {
                pc.now_ms = pc.now_ms.max(d);
            }
            // AWS records no error or cause for an execution that timed out.
            exec.emit(&mut pc, "ExecutionTimedOut", Details::None);
            (Status::TimedOut, None, Some(names::TIMEOUT.to_string()), None)
        }
        Err(Stop::Aborted) => {
            let (error, cause) = exec.stop_reason.lock().unwrap().clone().unwrap_or((None, None));
            exec.emit(
                &mut pc,
                "ExecutionAborted",
                details("executionAbortedEventDetails", present(&error, &cause)),
            );
            (Status::Aborted, None, error, cause)
        }
    };
    exec.tokens.lock().unwrap().clear();
    let chunks = std::mem::take(&mut *exec.history.lock().unwrap());
    let mut events = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    chunks.into_iter().for_each(|c| events.extend(c));
    ExecutionResult {
        status,
        output,
        error,
        cause,
        events,
        transitions: exec.transitions.load(Ordering::Relaxed),
        task_invocations: exec.invocations.load(Ordering::Relaxed),
        engine_ms: pc.now_ms - exec.start_ms,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// `error` / `cause` detail fields, each only when it has a value (as the API omits them).
fn present(error: &Option<String>, cause: &Option<String>) -> Vec<(&'static str, Value)> {
    let mut d = Vec::new();
    if let Some(e) = error {
        d.push(("error", json!(e)));
    }
    if let Some(c) = cause {
        d.push(("cause", json!(c)));
    }
    d
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a state produced: its output, where to go next (None: the machine ends) and the
/// variables it assigns, which take effect when it exits.
struct StepOut {
    output: Value,
    next: Option<usize>,
    assigned: Option<Map<String, Value>>,
}

const RUNTIME_PREFIX: &str = "An error occurred while executing the state";

/// Runs the states of one machine from StartAt to an end.
fn run_machine<'a>(exec: &'a Arc<Exec>, sm: &'a StateMachine, input: Value, pc: &'a mut PathCtx) -> BoxFut<'a, Result<Value, Stop>> {
    Box::pin(async move {
        let mut idx = sm.start_at;
        // The current value is shared with the history events that show it.
        let mut current = Arc::new(input);
        loop {
            if *exec.abort.borrow() {
                return Err(Stop::Aborted);
            }
            let st = &sm.states[idx];
            exec.check_deadline(pc)?;
            exec.transitions.fetch_add(1, Ordering::Relaxed);
            let entered_ms = exec.now(pc);
            pc.now_ms = entered_ms;
            exec.emit(
                pc,
                entered_type(&st.kind),
                Details::StateEntered {
                    name: st.name.clone(),
                    input: current.clone(),
                },
            );
            let entered_id = pc.last_event;
            if st.uses_context {
                let retries = matches!(st.kind, Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_));
                let s = &mut Arc::make_mut(&mut pc.context)["State"];
                *s = json!({"Name": &*st.name, "EnteredTime": format_ms(entered_ms)});
                if retries {
                    s["RetryCount"] = json!(0);
                }
            }
            let step = run_state(exec, st, &current, pc).await.and_then(|out| {
                if json_len(&out.output) > MAX_PAYLOAD_BYTES {
                    return Err(Stop::Failed(StatesError::new(
                        names::DATA_LIMIT_EXCEEDED,
                        format!(
                            "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                            st.name
                        ),
                    )));
                }
                Ok(out)
            });
            let step = match step {
                Ok(step) => step,
                Err(Stop::Failed(mut err)) => {
                    if err.error == names::RUNTIME && !err.cause.starts_with(RUNTIME_PREFIX) {
                        err.cause = format!(
                            "{RUNTIME_PREFIX} '{}' (entered at the event id #{entered_id}). {}",
                            st.name, err.cause
                        );
                    }
                    let catcher = if is_catchable(&err.error) {
                        st.catch
                            .iter()
                            .find(|c| c.error_equals.iter().any(|p| error_matches(p, &err.error)))
                    } else {
                        None
                    };
                    let Some(c) = catcher else { return Err(Stop::Failed(err)) };
                    let error_output = json!({"Error": err.error, "Cause": err.cause});
                    let seen = Seen {
                        input: &current,
                        dollar: &error_output,
                        result: None,
                        error_output: Some(&error_output),
                    };
                    let assigned = match &c.assign {
                        Some(a) => Some(eval_assign(exec, a, &seen, pc)?),
                        None => None,
                    };
                    let output = match (st.lang, &c.output) {
                        (Lang::Jsonata, Some(t)) => t.eval(&exec.jenv(pc, &seen), "Output")?,
                        (Lang::Jsonata, None) => error_output,
                        (Lang::JsonPath, _) => apply_result_path(&c.result_path, &current, error_output)?,
                    };
                    StepOut {
                        output,
                        next: Some(c.next),
                        assigned,
                    }
                }
                Err(other) => return Err(other),
            };
            let output = Arc::new(step.output);
            if !matches!(st.kind, Kind::Fail(_)) {
                exec.emit(
                    pc,
                    exited_type(&st.kind),
                    Details::StateExited {
                        name: st.name.clone(),
                        output: output.clone(),
                        assigned: step.assigned.clone().map(Box::new),
                    },
                );
            }
            if let Some(vars) = step.assigned {
                for (k, v) in vars {
                    pc.vars.set(k, v);
                }
            }
            match step.next {
                Some(n) => {
                    idx = n;
                    current = output;
                }
                None => return Ok(Arc::try_unwrap(output).unwrap_or_else(|shared| (*shared).clone())),
            }
        }
    })
}

fn entered_type(k: &Kind) -> &'static str {
    match k {
        Kind::Pass { .. } => "PassStateEntered",
        Kind::Task(_) => "TaskStateEntered",
        Kind::Choice { .. } => "ChoiceStateEntered",
        Kind::Wait(_) => "WaitStateEntered",
        Kind::Succeed => "SucceedStateEntered",
        Kind::Fail(_) => "FailStateEntered",
        Kind::Parallel { .. } => "ParallelStateEntered",
        Kind::Map(_) => "MapStateEntered",
    }
}

fn exited_type(k: &Kind) -> &'static str {
    match k {
        Kind::Pass { .. } => "PassStateExited",
        Kind::Task(_) => "TaskStateExited",
        Kind::Choice { .. } => "ChoiceStateExited",
        Kind::Wait(_) => "WaitStateExited",
        Kind::Succeed => "SucceedStateExited",
        Kind::Fail(_) => "FailStateExited",
        Kind::Parallel { .. } => "ParallelStateExited",
        Kind::Map(_) => "MapStateExited",
    }
}

/// Error names that neither Retry nor Catch can handle (AWS: "States.Runtime isn't retriable
/// and will always cause the execution to fail").
fn is_catchable(error: &str) -> bool {
    error != names::RUNTIME
}

/// Does the `ErrorEquals` entry `pattern` match `error`? States.ALL matches every error but
/// States.Runtime; States.TaskFailed matches every error but States.Timeout. The AWS docs call
/// States.DataLimitExceeded terminal, but executions recorded on AWS show a States.ALL catcher
/// catching it, so it is matched like any other error.
pub fn error_matches(pattern: &str, error: &str) -> bool {
    if error == names::RUNTIME {
        return false;
    }
    pattern == error || pattern == names::ALL || (pattern == names::TASK_FAILED && error != names::TIMEOUT)
}

fn apply_result_path(rp: &ResultPath, raw_input: &Value, result: Value) -> Result<Value, StatesError> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(raw_input.clone()),
        ResultPath::At { segs, text } => set_at(raw_input.clone(), segs, result).map_err(|_| {
            let shown = Value::String(truncate(&raw_input.to_string(), 256));
            StatesError::runtime(format!("Unable to apply ReferencePath {text} to input {shown}"))
        }),
    }
}

/// InputPath: borrows the input when it is used whole.
fn apply_input_path<'v>(p: &IoPath, v: &'v Value, exec: &Exec, pc: &PathCtx) -> Result<Cow<'v, Value>, StatesError> {
    match p {
        IoPath::Whole => Ok(Cow::Borrowed(v)),
        _ => apply_io_path(p, v, exec, pc).map(Cow::Owned),
    }
}

/// OutputPath: moves the value when it is used whole.
fn apply_output_path(p: &IoPath, v: Value, exec: &Exec, pc: &PathCtx) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v),
        _ => apply_io_path(p, &v, exec, pc),
    }
}

fn apply_io_path(p: &IoPath, v: &Value, exec: &Exec, pc: &PathCtx) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v.clone()),
        IoPath::Discard => Ok(Value::Object(Map::new())),
        IoPath::Select(path) => {
            let scope = exec.scope(v, pc);
            path.eval(&scope).ok_or_else(|| {
                StatesError::runtime(format!(
                    "Invalid path '{}' : No results for path: {}",
                    path.text(),
                    path.bracket_text()
                ))
            })
        }
    }
}

/// What a state's expressions see: JSONPath's `$` (`dollar`), and JSONata's `$states.input`,
/// `$states.result` and `$states.errorOutput`.
struct Seen<'a> {
    input: &'a Value,
    dollar: &'a Value,
    result: Option<&'a Value>,
    error_output: Option<&'a Value>,
}

impl<'a> Seen<'a> {
    fn of(input: &'a Value) -> Self {
        Seen {
            input,
            dollar: input,
            result: None,
            error_output: None,
        }
    }
}

/// Evaluates an Assign block against the variables as they were when the state was entered;
/// the caller applies the values when the state exits.
fn eval_assign(exec: &Exec, a: &Assign, seen: &Seen, pc: &PathCtx) -> Result<Map<String, Value>, StatesError> {
    let v = match a {
        Assign::Path(t) => t.eval(&exec.scope(seen.dollar, pc))?,
        Assign::Jsonata(t) => t.eval(&exec.jenv(pc, seen), "Assign")?,
    };
    match v {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

fn opt_assign(exec: &Exec, st: &State, dollar: &Value, pc: &PathCtx) -> Result<Option<Map<String, Value>>, StatesError> {
    st.assign.as_ref().map(|a| eval_assign(exec, a, &Seen::of(dollar), pc)).transpose()
}

/// A Choice rule's verdict in either language.
fn condition(exec: &Exec, cond: &Cond, input: &Value, pc: &PathCtx) -> Result<bool, StatesError> {
    match cond {
        Cond::Path(rule) => rule.eval(&exec.scope(input, pc)),
        Cond::Jsonata(t) => match t.eval(&exec.jenv(pc, &Seen::of(input)), "Condition")? {
            Value::Bool(b) => Ok(b),
            other => Err(StatesError::new(
                names::QUERY_EVALUATION_ERROR,
                format!("The Condition must evaluate to a boolean, but evaluated to {}", type_name(&other)),
            )),
        },
    }
}

/// The input a Task or Parallel state hands on: Parameters (JSONPath) or Arguments (JSONata),
/// else the effective input.
fn state_args(exec: &Exec, st: &State, eff: &Value, pc: &PathCtx) -> Result<Value, StatesError> {
    match (st.lang, &st.parameters, &st.arguments) {
        (Lang::JsonPath, Some(t), _) => t.eval(&exec.scope(eff, pc)),
        (Lang::Jsonata, _, Some(t)) => t.eval(&exec.jenv(pc, &Seen::of(eff)), "Arguments"),
        _ => Ok(eff.clone()),
    }
}

/// A JSONata state: Arguments → task → Assign and Output, all seeing `$states`.
async fn run_jsonata_state(exec: &Arc<Exec>, st: &State, raw: &Value, pc: &mut PathCtx) -> Result<StepOut, Stop> {
    let next = match st.transition {
        Transition::Next(n) => Some(n),
        _ => None,
    };
    let finish = |exec: &Exec, pc: &PathCtx, result: Option<&Value>, output: Option<&JTemplate>, next| -> Result<StepOut, Stop> {
        let seen = Seen {
            input: raw,
            dollar: raw,
            result,
            error_output: None,
        };
        let assigned = st.assign.as_ref().map(|a| eval_assign(exec, a, &seen, pc)).transpose()?;
        let output = match output {
            Some(t) => t.eval(&exec.jenv(pc, &seen), "Output")?,
            None => result.unwrap_or(raw).clone(),
        };
        Ok(StepOut { output, next, assigned })
    };
    match &st.kind {
        Kind::Pass { .. } | Kind::Succeed => finish(exec, pc, None, st.output.as_ref(), next),
        Kind::Fail(_) => run_jsonpath_state(exec, st, raw, pc).await,
        Kind::Choice { choices, default } => {
            for c in choices {
                if condition(exec, &c.rule, raw, pc)? {
                    let mut out = finish(exec, pc, None, c.output.as_ref().or(st.output.as_ref()), Some(c.next))?;
                    if let Some(a) = &c.assign {
                        let rule_vars = eval_assign(exec, a, &Seen::of(raw), pc)?;
                        out.assigned.get_or_insert_with(Map::new).extend(rule_vars);
                    }
                    return Ok(out);
                }
            }
            match default {
                Some(d) => finish(exec, pc, None, st.output.as_ref(), Some(*d)),
                None => Err(Stop::Failed(StatesError::runtime(
                    "Failed to transition out of the state. The state does not point to a next state.",
                ))),
            }
        }
        Kind::Wait(w) => {
            let env = exec.jenv(pc, &Seen::of(raw));
            let until_ms = match w {
                Wait::Seconds(s) => exec.now(pc) + *s as i64 * 1000,
                Wait::Timestamp(t) => t.timestamp_millis(),
                Wait::SecondsJsonata(t) => match t.eval(&env, "Seconds")?.as_u64() {
                    Some(s) if s <= 99_999_999 => exec.now(pc) + s as i64 * 1000,
                    _ => {
                        return Err(Stop::Failed(StatesError::new(
                            names::QUERY_EVALUATION_ERROR,
                            "The Seconds field must evaluate to an integer between 0 and 99999999",
                        )))
                    }
                },
                Wait::TimestampJsonata(t) => match t.eval(&env, "Timestamp")?.as_str().and_then(parse_timestamp) {
                    Some(t) => t.timestamp_millis(),
                    None => {
                        return Err(Stop::Failed(StatesError::new(
                            names::QUERY_EVALUATION_ERROR,
                            "The Timestamp field must evaluate to an ISO-8601 timestamp string",
                        )))
                    }
                },
                Wait::SecondsPath(_) | Wait::TimestampPath(_) => unreachable!("rejected at load time in JSONata states"),
            };
            drop(env);
            exec.sleep_until(pc, until_ms).await?;
            finish(exec, pc, None, st.output.as_ref(), next)
        }
        Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
            let result = with_retry(exec, st, raw, pc).await?;
            finish(exec, pc, Some(&result), st.output.as_ref(), next)
        }
    }
}

/// Runs one state (without its Catch, which the caller applies).
async fn run_state(exec: &Arc<Exec>, st: &State, raw: &Value, pc: &mut PathCtx) -> Result<StepOut, Stop> {
    match st.lang {
        Lang::Jsonata => run_jsonata_state(exec, st, raw, pc).await,
        Lang::JsonPath => run_jsonpath_state(exec, st, raw, pc).await,
    }
}

async fn run_jsonpath_state(exec: &Arc<Exec>, st: &State, raw: &Value, pc: &mut PathCtx) -> Result<StepOut, Stop> {
    let next = match st.transition {
        Transition::Next(n) => Some(n),
        _ => None,
    };
    match &st.kind {
        Kind::Pass { result } => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let eff = match &st.parameters {
                Some(t) => t.eval(&exec.scope(&eff, pc))?,
                None => eff.into_owned(),
            };
            let res = result.clone().unwrap_or(eff);
            let assigned = opt_assign(exec, st, &res, pc)?;
            let out = apply_result_path(&st.result_path, raw, res)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, out, exec, pc)?,
                next,
                assigned,
            })
        }
        Kind::Succeed => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, eff.into_owned(), exec, pc)?,
                next: None,
                assigned: None,
            })
        }
        Kind::Fail(f) => {
            let scope = exec.scope(raw, pc);
            let get = |x: &Option<StrOrPath>, field: &str| -> Result<Option<String>, StatesError> {
                Ok(match x {
                    None => None,
                    Some(StrOrPath::Str(s)) => Some(s.clone()),
                    Some(StrOrPath::Path(p)) => match p.eval_required(&scope, field)? {
                        Value::String(s) => Some(s),
                        other => {
                            return Err(StatesError::runtime(format!(
                                "The {field} '{}' must select a string, but selected {}",
                                p.text(),
                                type_name(&other)
                            )))
                        }
                    },
                    Some(StrOrPath::Intrinsic(i)) => match i.eval(&scope)? {
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    },
                    Some(StrOrPath::Jsonata(t)) => match t.eval(&exec.jenv(pc, &Seen::of(raw)), field.trim_end_matches("Path"))? {
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    },
                })
            };
            let error = get(&f.error, "ErrorPath")?;
            let cause = get(&f.cause, "CausePath")?;
            Err(Stop::Failed(StatesError {
                error: error.unwrap_or_default(),
                cause: cause.unwrap_or_default(),
            }))
        }
        Kind::Choice { choices, default } => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let mut chosen = None;
            for c in choices {
                if condition(exec, &c.rule, &eff, pc)? {
                    chosen = Some(c);
                    break;
                }
            }
            let mut assigned = opt_assign(exec, st, &eff, pc)?;
            let next = match (chosen, default) {
                (Some(c), _) => {
                    if let Some(a) = &c.assign {
                        let rule_vars = eval_assign(exec, a, &Seen::of(&eff), pc)?;
                        assigned.get_or_insert_with(Map::new).extend(rule_vars);
                    }
                    c.next
                }
                (None, Some(d)) => *d,
                // AWS reports this as States.Runtime (recorded on AWS), not States.NoChoiceMatched.
                (None, None) => {
                    return Err(Stop::Failed(StatesError::runtime(
                        "Failed to transition out of the state. The state does not point to a next state.",
                    )))
                }
            };
            Ok(StepOut {
                output: apply_output_path(&st.output_path, eff.into_owned(), exec, pc)?,
                next: Some(next),
                assigned,
            })
        }
        Kind::Wait(w) => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let now = exec.now(pc);
            let until_ms = match w {
                Wait::Seconds(s) => now + *s as i64 * 1000,
                Wait::Timestamp(t) => t.timestamp_millis(),
                Wait::SecondsPath(p) => {
                    let Some(v) = p.eval(&exec.scope(&eff, pc)) else {
                        return Err(Stop::Failed(StatesError::runtime(format!(
                            "The SecondsPath parameter does not reference an input value: {}",
                            p.text()
                        ))));
                    };
                    match (v.as_i64(), v.as_f64()) {
                        (Some(s), _) if s >= 0 => now + s * 1000,
                        (Some(_), _) => {
                            return Err(Stop::Failed(StatesError::runtime(format!(
                                "The SecondsPath parameter references a negative value: {} == {v}",
                                p.text()
                            ))))
                        }
                        _ => {
                            return Err(Stop::Failed(StatesError::runtime(format!(
                                "The SecondsPath parameter cannot be parsed as a long value: {} == {v}",
                                p.text()
                            ))))
                        }
                    }
                }
                Wait::SecondsJsonata(_) | Wait::TimestampJsonata(_) => unreachable!("only in JSONata states"),
                Wait::TimestampPath(p) => {
                    let v = p.eval(&exec.scope(&eff, pc));
                    match v.as_ref().and_then(Value::as_str).and_then(parse_timestamp) {
                        Some(t) => t.timestamp_millis(),
                        None => {
                            return Err(Stop::Failed(StatesError::runtime(format!(
                                "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                                p.text(),
                                v.map_or("null".to_string(), |v| v.to_string())
                            ))))
                        }
                    }
                }
            };
            exec.sleep_until(pc, until_ms).await?;
            let assigned = opt_assign(exec, st, &eff, pc)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, eff.into_owned(), exec, pc)?,
                next,
                assigned,
            })
        }
        Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let result = with_retry(exec, st, &eff, pc).await?;
            // Assign sees the raw result, before ResultSelector (as AWS evaluates it).
            let assigned = opt_assign(exec, st, &result, pc)?;
            let result = match &st.result_selector {
                Some(t) => t.eval(&exec.scope(&result, pc))?,
                None => result,
            };
            let out = apply_result_path(&st.result_path, raw, result)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, out, exec, pc)?,
                next,
                assigned,
            })
        }
    }
}

/// Runs a Task, Parallel or Map body under the state's retriers. A Parallel or Map state
/// that finally fails logs `ParallelStateFailed` / `MapStateFailed` once (not for States.Runtime).
async fn with_retry(exec: &Arc<Exec>, st: &State, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    let r = retry_loop(exec, st, eff, pc).await;
    if let Err(Stop::Failed(e)) = &r {
        let failed = match st.kind {
            Kind::Parallel { .. } => Some("ParallelStateFailed"),
            Kind::Map(_) => Some("MapStateFailed"),
            _ => None,
        };
        if let (Some(ty), true) = (failed, e.error != names::RUNTIME) {
            exec.emit(pc, ty, Details::None);
        }
    }
    r
}

async fn retry_loop(exec: &Arc<Exec>, st: &State, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    let mut attempts = vec![0u32; st.retry.len()];
    let mut retry_count = 0u32;
    loop {
        let r = match &st.kind {
            Kind::Task(_) => run_task(exec, st, eff, pc).await,
            Kind::Parallel { branches } => run_parallel(exec, st, branches, eff, pc).await,
            Kind::Map(m) => run_map(exec, st, m, eff, pc).await,
            _ => unreachable!("only Task, Parallel and Map retry"),
        };
        let err = match r {
            Err(Stop::Failed(e)) if is_catchable(&e.error) => e,
            other => return other,
        };
        let Some(i) = st
            .retry
            .iter()
            .position(|r| r.error_equals.iter().any(|p| error_matches(p, &err.error)))
        else {
            return Err(Stop::Failed(err));
        };
        let r: &Retrier = &st.retry[i];
        if attempts[i] >= r.max_attempts {
            return Err(Stop::Failed(err));
        }
        let mut delay = r.interval_seconds * r.backoff_rate.powi(attempts[i] as i32);
        if let Some(max) = r.max_delay_seconds {
            delay = delay.min(max);
        }
        if r.jitter_full {
            delay *= exec.random_unit();
        }
        attempts[i] += 1;
        retry_count += 1;
        let until = exec.now(pc) + (delay * 1000.0) as i64;
        exec.sleep_until(pc, until).await?;
        if st.uses_context {
            Arc::make_mut(&mut pc.context)["State"]["RetryCount"] = json!(retry_count);
        }
    }
}

async fn run_task(exec: &Arc<Exec>, st: &State, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    let Kind::Task(task) = &st.kind else { unreachable!() };
    let token = task
        .wait_for_token
        .then(|| format!("{}-{}", uuid::Uuid::new_v4().simple(), exec.next_id.load(Ordering::Relaxed)));
    if let Some(t) = &token {
        Arc::make_mut(&mut pc.context)["Task"] = json!({"Token": t});
    }
    let params = state_args(exec, st, eff, pc);
    if token.is_some() {
        if let Some(m) = Arc::make_mut(&mut pc.context).as_object_mut() {
            m.remove("Task");
        }
    }
    let params = params?;
    if json_len(&params) > MAX_PAYLOAD_BYTES {
        return Err(Stop::Failed(StatesError::new(
            names::DATA_LIMIT_EXCEEDED,
            format!("The input of state '{}' after Parameters exceeds 262144 bytes", st.name),
        )));
    }
    let timeout = match &task.timeout {
        None => None,
        Some(s) => Some(exec.seconds(s, eff, pc, "TimeoutSecondsPath")?),
    };
    let heartbeat = match &task.heartbeat {
        None => None,
        Some(s) => Some(exec.seconds(s, eff, pc, "HeartbeatSecondsPath")?),
    };
    let (rtype, rname) = (&task.resource_type, &task.resource_name);
    let lambda_events = matches!(task.target, Target::LambdaArn(_));
    if lambda_events {
        let mut d = vec![("resource", json!(task.resource))];
        d.extend(payload("input", &params));
        if let Some(t) = timeout {
            d.push(("timeoutInSeconds", json!(t)));
        }
        exec.emit(pc, "LambdaFunctionScheduled", details("lambdaFunctionScheduledEventDetails", d));
        exec.emit(pc, "LambdaFunctionStarted", Details::None);
    } else {
        let mut d = vec![
            ("resourceType", json!(rtype)),
            ("resource", json!(rname)),
            ("region", json!(exec.engine.region)),
        ];
        d.push(("parameters", params.clone()));
        if let Some(t) = timeout {
            d.push(("timeoutInSeconds", json!(t)));
        }
        if let Some(h) = heartbeat {
            d.push(("heartbeatInSeconds", json!(h)));
        }
        exec.emit(pc, "TaskScheduled", details("taskScheduledEventDetails", d));
        exec.emit(
            pc,
            "TaskStarted",
            details(
                "taskStartedEventDetails",
                vec![("resourceType", json!(rtype)), ("resource", json!(rname))],
            ),
        );
    }
    exec.invocations.fetch_add(1, Ordering::Relaxed);

    let outcome = invoke(exec, st, task, params, token.clone(), timeout, heartbeat, pc).await;
    let now = exec.now(pc);
    pc.now_ms = pc.now_ms.max(now);
    // A result over the payload limit fails the task (States.ALL can catch it, as on AWS).
    let outcome = outcome.and_then(|v| {
        if json_len(&v) > MAX_PAYLOAD_BYTES {
            let what = if lambda_events { task.resource.as_str() } else { rtype.as_str() };
            return Err(Stop::Failed(StatesError::new(
                names::DATA_LIMIT_EXCEEDED,
                format!("The state/task '{what}' returned a result with a size exceeding the maximum number of bytes service limit."),
            )));
        }
        Ok(v)
    });
    match outcome {
        Ok(v) => {
            if lambda_events {
                exec.emit(
                    pc,
                    "LambdaFunctionSucceeded",
                    details("lambdaFunctionSucceededEventDetails", payload("output", &v)),
                );
            } else {
                let mut d = vec![("resourceType", json!(rtype)), ("resource", json!(rname))];
                d.extend(payload("output", &v));
                exec.emit(pc, "TaskSucceeded", details("taskSucceededEventDetails", d));
            }
            Ok(v)
        }
        Err(Stop::Failed(e)) => {
            let timed_out = e.error == names::TIMEOUT;
            let (ty, key) = match (lambda_events, timed_out) {
                (true, true) => ("LambdaFunctionTimedOut", "lambdaFunctionTimedOutEventDetails"),
                (true, false) => ("LambdaFunctionFailed", "lambdaFunctionFailedEventDetails"),
                (false, true) => ("TaskTimedOut", "taskTimedOutEventDetails"),
                (false, false) => ("TaskFailed", "taskFailedEventDetails"),
            };
            let mut d = vec![("error", json!(e.error))];
            if !e.cause.is_empty() {
                d.push(("cause", json!(e.cause)));
            }
            if !lambda_events {
                d.insert(0, ("resource", json!(rname)));
                d.insert(0, ("resourceType", json!(rtype)));
            }
            exec.emit(pc, ty, details(key, d));
            Err(Stop::Failed(e))
        }
        Err(other) => Err(other),
    }
}

#[allow(clippy::too_many_arguments)]
async fn invoke(
    exec: &Arc<Exec>,
    st: &State,
    task: &Task,
    params: Value,
    token: Option<String>,
    timeout: Option<u64>,
    heartbeat: Option<u64>,
    pc: &mut PathCtx,
) -> Result<Value, Stop> {
    let clock = exec.engine.clock;
    let real = |secs: u64| match clock {
        Clock::Real { scale } => Duration::from_secs_f64(secs as f64 / scale),
        Clock::Virtual => Duration::from_secs(secs),
    };
    // A task that runs past TimeoutSeconds, or a callback without a heartbeat for
    // HeartbeatSeconds, fails with States.Timeout and no cause (recorded on AWS).
    let timed_out = |pc: &mut PathCtx, secs: u64| {
        if clock == Clock::Virtual {
            pc.now_ms += secs as i64 * 1000;
        }
        Stop::Failed(StatesError::new(names::TIMEOUT, ""))
    };
    // A mocked response replaces the handler (and, for callbacks, the callback).
    if let Some(mock) = &exec.engine.mock {
        if mock.has(&st.name) {
            let n = {
                let mut counts = exec.mock_counts.lock().unwrap();
                let c = counts.entry(st.name.clone()).or_insert(0);
                *c += 1;
                *c - 1
            };
            return mock.respond(&st.name, n).map_err(Stop::Failed);
        }
    }
    let (handler, function, payload_in) = match &task.target {
        Target::LambdaArn(f) => (exec.engine.lambdas.get(f).cloned(), Some(f.clone()), params),
        Target::LambdaInvoke => {
            let Some(fname) = params.get("FunctionName").and_then(Value::as_str) else {
                return Err(Stop::Failed(StatesError::runtime(format!(
                    "The Parameters of state '{}' must contain 'FunctionName' for arn:aws:states:::lambda:invoke",
                    st.name
                ))));
            };
            let f = function_name(fname).to_string();
            let payload = match params {
                Value::Object(mut m) => m.remove("Payload").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            (exec.engine.lambdas.get(&f).cloned(), Some(f), payload)
        }
        Target::Other => {
            let h = exec.engine.resources.iter().find(|(k, _)| {
                *k == task.base
                    || (k.ends_with('*') && task.base.starts_with(&k[..k.len() - 1]))
                    || (k.ends_with(':') && task.base.starts_with(k.as_str()))
            });
            (h.map(|(_, h)| h.clone()), None, params)
        }
    };
    let Some(handler) = handler else {
        return Err(Stop::Failed(match function {
            Some(f) => StatesError::new(
                "Lambda.ResourceNotFoundException",
                format!(
                    "Function not found: arn:aws:lambda:{}:{}:function:{f} (no handler is registered for it in the local engine)",
                    exec.engine.region, exec.engine.account
                ),
            ),
            None => StatesError::runtime(format!(
                "No handler is registered for the resource '{}' of state '{}'; register one with EngineBuilder::resource or mock the state",
                task.resource.as_str(),
                st.name
            )),
        }));
    };
    let is_lambda = function.is_some();
    let started_ms = exec.now(pc);
    let task_clock = TaskClock::new(clock, started_ms);
    let req = TaskRequest {
        resource: task.resource.as_str().to_string(),
        function,
        state_name: st.name.to_string(),
        payload: payload_in,
        task_token: token.clone(),
        now_ms: started_ms,
        clock: task_clock.clone(),
    };

    // Callback registration happens before the handler runs, so an instant callback is not lost.
    let mut rx = token.as_ref().map(|t| {
        let (tx, rx) = mpsc::unbounded_channel();
        exec.tokens.lock().unwrap().insert(t.clone(), tx);
        rx
    });
    let mut abort_rx = exec.abort.subscribe();
    let call = handler.invoke(req);
    let handler_result = tokio::select! {
        r = call => Some(r),
        _ = sleep_opt(if token.is_none() { timeout.map(real) } else { None }) => None,
        _ = abort_rx.wait_for(|a| *a) => return Err(Stop::Aborted),
    };
    let shape_lambda_error = |e: StatesError| -> StatesError {
        if is_lambda {
            let cause = json!({"errorMessage": e.cause, "errorType": e.error}).to_string();
            StatesError::new(e.error, cause)
        } else {
            e
        }
    };
    if clock == Clock::Virtual {
        // The handler's waits, on the virtual clock.
        let elapsed_ms = task_clock.now_ms() - started_ms;
        match timeout {
            Some(t) if token.is_none() && elapsed_ms > t as i64 * 1000 => {
                pc.now_ms = started_ms;
                return Err(timed_out(pc, t));
            }
            _ => pc.now_ms = pc.now_ms.max(started_ms + elapsed_ms),
        }
    }
    let value = match handler_result {
        None => return Err(timed_out(pc, timeout.unwrap_or(0))),
        Some(Err(e)) => {
            if let Some(t) = &token {
                exec.tokens.lock().unwrap().remove(t);
            }
            return Err(Stop::Failed(shape_lambda_error(e)));
        }
        Some(Ok(v)) => v,
    };
    let Some(rx) = rx.as_mut() else {
        return Ok(match task.target {
            Target::LambdaInvoke => lambda_invoke_response(value),
            _ => value,
        });
    };
    // .waitForTaskToken: the handler's own output is ignored; wait for the callback.
    let token = token.unwrap();
    let (rtype, rname) = (&task.resource_type, &task.resource_name);
    exec.emit(
        pc,
        "TaskSubmitted",
        details("taskSubmittedEventDetails", {
            let mut d = vec![("resourceType", json!(rtype)), ("resource", json!(rname))];
            d.extend(payload("output", &value));
            d
        }),
    );
    let started = Instant::now();
    let total = timeout.map(real);
    let result = loop {
        let remaining = total.map(|t| t.saturating_sub(started.elapsed()));
        let hb = heartbeat.map(real);
        let (wait, secs) = match (remaining, hb) {
            (Some(r), Some(h)) if h < r => (Some(h), heartbeat),
            (Some(r), _) => (Some(r), timeout),
            (None, Some(h)) => (Some(h), heartbeat),
            (None, None) => (None, timeout),
        };
        tokio::select! {
            m = rx.recv() => match m {
                Some(TokenMsg::Success(v)) => break Ok(v),
                Some(TokenMsg::Failure(e)) => break Err(Stop::Failed(e)),
                Some(TokenMsg::Heartbeat) => continue,
                None => break Err(Stop::Aborted),
            },
            _ = sleep_opt(wait) => break Err(timed_out(pc, secs.unwrap_or(0))),
            _ = abort_rx.wait_for(|a| *a) => break Err(Stop::Aborted),
        }
    };
    exec.tokens.lock().unwrap().remove(&token);
    result
}

/// The Lambda Invoke API response as the `lambda:invoke` integration returns it.
fn lambda_invoke_response(payload: Value) -> Value {
    let request_id = uuid::Uuid::new_v4().to_string();
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "X-Amz-Executed-Version": ["$LATEST"],
                "x-amzn-Remapped-Content-Length": ["0"],
                "Connection": ["keep-alive"],
                "x-amzn-RequestId": [request_id],
                "Content-Type": ["application/json"]
            },
            "HttpHeaders": {
                "Connection": "keep-alive",
                "Content-Type": "application/json",
                "X-Amz-Executed-Version": "$LATEST",
                "x-amzn-Remapped-Content-Length": "0",
                "x-amzn-RequestId": request_id
            },
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200
    })
}

fn child_ctx(pc: &PathCtx) -> PathCtx {
    PathCtx {
        vars: Vars::child(Arc::new(pc.vars.clone())),
        now_ms: pc.now_ms,
        last_event: pc.last_event,
        context: pc.context.clone(),
    }
}

async fn run_parallel(exec: &Arc<Exec>, st: &State, branches: &[Arc<StateMachine>], eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    let input = state_args(exec, st, eff, pc)?;
    exec.emit(pc, "ParallelStateStarted", Details::None);
    let mut running: FuturesUnordered<_> = branches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut child = child_ctx(pc);
            let input = input.clone();
            async move {
                let r = run_machine(exec, b, input, &mut child).await;
                (i, r, child.now_ms, child.last_event)
            }
        })
        .collect();
    let mut results = vec![Value::Null; branches.len()];
    let (mut end, mut last) = (pc.now_ms, pc.last_event);
    while let Some((i, r, t, ev)) = running.next().await {
        (end, last) = (end.max(t), last.max(ev));
        match r {
            Ok(v) => results[i] = v,
            Err(stop) => {
                drop(running);
                (pc.now_ms, pc.last_event) = (end, last);
                return Err(stop);
            }
        }
    }
    (pc.now_ms, pc.last_event) = (end, last);
    exec.emit(pc, "ParallelStateSucceeded", Details::None);
    Ok(Value::Array(results))
}

async fn run_map(exec: &Arc<Exec>, st: &State, m: &MapState, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    let items = match (&m.items_path, &m.items) {
        (Some(p), _) => p.eval_required(&exec.scope(eff, pc), "ItemsPath")?,
        (None, Some(t)) => t.eval(&exec.jenv(pc, &Seen::of(eff)), "Items")?,
        (None, None) => eff.clone(),
    };
    let Value::Array(items) = items else {
        return Err(Stop::Failed(StatesError::runtime(format!(
            "Map state input must be an array, but the ItemsPath '{}' selected {}",
            m.items_path.as_ref().map_or("$", |p| p.text()),
            type_name(&items)
        ))));
    };
    let max = match &m.max_concurrency {
        None => 0,
        Some(s) => exec.seconds(s, eff, pc, "MaxConcurrencyPath")?,
    };
    let limit = if max == 0 {
        INLINE_MAP_CONCURRENCY
    } else {
        (max as usize).min(INLINE_MAP_CONCURRENCY)
    };
    let tolerated_count = match &m.tolerated_failure_count {
        None => 0,
        Some(s) => exec.seconds(s, eff, pc, "ToleratedFailureCountPath")?,
    };
    let tolerated_pct = match &m.tolerated_failure_percentage {
        None => 0.0,
        Some(Percentage::Fixed(p)) => *p,
        Some(Percentage::Path(p)) => match p.eval_required(&exec.scope(eff, pc), "ToleratedFailurePercentagePath")?.as_f64() {
            Some(x) if (0.0..=100.0).contains(&x) => x,
            _ => {
                return Err(Stop::Failed(StatesError::runtime(
                    "ToleratedFailurePercentagePath must select a number between 0 and 100",
                )))
            }
        },
        Some(Percentage::Jsonata(t)) => match t.eval(&exec.jenv(pc, &Seen::of(eff)), "ToleratedFailurePercentage")?.as_f64() {
            Some(x) if (0.0..=100.0).contains(&x) => x,
            _ => {
                return Err(Stop::Failed(StatesError::new(
                    names::QUERY_EVALUATION_ERROR,
                    "ToleratedFailurePercentage must evaluate to a number between 0 and 100",
                )))
            }
        },
    };
    let n = items.len();
    exec.emit(
        pc,
        "MapStateStarted",
        details("mapStateStartedEventDetails", vec![("length", json!(n))]),
    );

    // Item inputs are built up front: ItemSelector sees the state's effective input as `$`
    // and the item in $$.Map.Item.
    let mut inputs = Vec::with_capacity(n);
    match &m.item_selector {
        None => inputs = items,
        Some(selector) => {
            let mut ctx = (*pc.context).clone();
            for (i, item) in items.into_iter().enumerate() {
                ctx["Map"] = json!({"Item": {"Index": i, "Value": item}});
                inputs.push(match selector {
                    Assign::Path(t) => t.eval(&Scope {
                        input: eff,
                        context: &ctx,
                        vars: &pc.vars,
                        execution_input: Some(&exec.exec_input),
                    })?,
                    Assign::Jsonata(t) => {
                        let item_pc = PathCtx {
                            context: Arc::new(ctx.clone()),
                            ..pc.clone()
                        };
                        t.eval(&exec.jenv(&item_pc, &Seen::of(eff)), "ItemSelector")?
                    }
                });
            }
        }
    }
    let processor = &m.processor;
    let base = child_ctx(pc);
    let name = &st.name;
    let iteration = |key: &'static str, i: usize| details(key, vec![("name", json!(&**name)), ("index", json!(i))]);
    let mut queue = inputs.into_iter().enumerate();
    let mut running = FuturesUnordered::new();
    // Iterations started and not finished: logged as aborted when the Map fails.
    let mut in_flight = std::collections::BTreeSet::new();
    let start_one = |i: usize, input: Value| {
        let mut child = base.clone();
        async move {
            exec.emit(&mut child, "MapIterationStarted", iteration("mapIterationStartedEventDetails", i));
            let r = run_machine(exec, processor, input, &mut child).await;
            match &r {
                Ok(_) => exec.emit(
                    &mut child,
                    "MapIterationSucceeded",
                    iteration("mapIterationSucceededEventDetails", i),
                ),
                Err(Stop::Failed(e)) if e.error != names::RUNTIME => {
                    exec.emit(&mut child, "MapIterationFailed", iteration("mapIterationFailedEventDetails", i))
                }
                _ => {}
            }
            (i, r, child.now_ms, child.last_event)
        }
    };
    for (i, input) in queue.by_ref().take(limit) {
        in_flight.insert(i);
        running.push(start_one(i, input));
    }
    let mut results = vec![Value::Null; n];
    let mut failures = 0u64;
    let (mut end, mut last) = (pc.now_ms, pc.last_event);
    let tolerates = tolerated_count > 0 || tolerated_pct > 0.0;
    while let Some((i, r, t, ev)) = running.next().await {
        in_flight.remove(&i);
        (end, last) = (end.max(t), last.max(ev));
        let stop = match r {
            Ok(v) => {
                results[i] = v;
                None
            }
            Err(Stop::Failed(e)) if e.error != names::RUNTIME => {
                failures += 1;
                let over = failures > tolerated_count && (failures as f64 * 100.0 / n as f64) > tolerated_pct;
                if !tolerates {
                    Some(Stop::Failed(e))
                } else if over {
                    Some(Stop::Failed(StatesError::new(
                        names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                        format!(
                            "The specified tolerated failure threshold was exceeded: {failures} of {n} items of Map state '{}' failed",
                            st.name
                        ),
                    )))
                } else {
                    results[i] = json!({"Error": e.error, "Cause": e.cause});
                    None
                }
            }
            Err(other) => Some(other),
        };
        if let Some(stop) = stop {
            drop(running);
            (pc.now_ms, pc.last_event) = (end, last);
            for j in in_flight {
                exec.emit(pc, "MapIterationAborted", iteration("mapIterationAbortedEventDetails", j));
            }
            return Err(stop);
        }
        if let Some((i, input)) = queue.next() {
            in_flight.insert(i);
            running.push(start_one(i, input));
        }
    }
    (pc.now_ms, pc.last_event) = (end, last);
    exec.emit(pc, "MapStateSucceeded", Details::None);
    Ok(Value::Array(results))
}

impl Exec {
    /// The JSONata environment of a state: `$states` (input, result, errorOutput, context with
    /// the execution input) and the visible variables; `$now()` reads the engine's clock.
    fn jenv(&self, pc: &PathCtx, seen: &Seen) -> Env {
        let mut context = (*pc.context).clone();
        if let Some(e) = context.get_mut("Execution").and_then(Value::as_object_mut) {
            e.insert("Input".into(), self.exec_input.clone());
        }
        let mut states = Map::new();
        states.insert("input".into(), seen.input.clone());
        if let Some(r) = seen.result {
            states.insert("result".into(), r.clone());
        }
        if let Some(e) = seen.error_output {
            states.insert("errorOutput".into(), e.clone());
        }
        states.insert("context".into(), context);
        Env::new(Value::Object(states), pc.vars.all(), self.now(pc))
    }

    fn scope<'a>(&'a self, input: &'a Value, pc: &'a PathCtx) -> Scope<'a> {
        Scope {
            input,
            context: &pc.context,
            vars: &pc.vars,
            execution_input: Some(&self.exec_input),
        }
    }

    fn emit(&self, pc: &mut PathCtx, event_type: &'static str, details: Details) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ev = HistoryEvent {
            id,
            previous_event_id: pc.last_event,
            timestamp_ms: pc.now_ms,
            event_type,
            details,
        };
        pc.last_event = id;
        if !self.sink.is_closed() {
            let _ = self.sink.send(ev.clone());
        }
        if self.record {
            let mut chunks = self.history.lock().unwrap();
            match chunks.last_mut() {
                Some(c) if c.len() < HISTORY_CHUNK => c.push(ev),
                _ => {
                    let mut c = Vec::with_capacity(HISTORY_CHUNK);
                    c.push(ev);
                    chunks.push(c);
                }
            }
        }
    }

    fn now(&self, pc: &PathCtx) -> i64 {
        match self.engine.clock {
            Clock::Virtual => pc.now_ms,
            Clock::Real { scale } => self.start_ms + (self.started.elapsed().as_secs_f64() * scale * 1000.0) as i64,
        }
    }

    fn check_deadline(&self, pc: &mut PathCtx) -> Result<(), Stop> {
        match self.deadline_ms {
            Some(d) if self.now(pc) >= d => {
                pc.now_ms = d;
                Err(Stop::TimedOut)
            }
            _ => Ok(()),
        }
    }

    /// Waits until `until_ms` on the engine's clock (a Wait state, a retry delay).
    async fn sleep_until(&self, pc: &mut PathCtx, until_ms: i64) -> Result<(), Stop> {
        let target = match self.deadline_ms {
            Some(d) if until_ms >= d => d,
            _ => until_ms,
        };
        match self.engine.clock {
            Clock::Virtual => pc.now_ms = pc.now_ms.max(target),
            Clock::Real { scale } => {
                let now = self.now(pc);
                if target > now {
                    let d = Duration::from_secs_f64((target - now) as f64 / 1000.0 / scale);
                    let mut abort_rx = self.abort.subscribe();
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {},
                        _ = abort_rx.wait_for(|a| *a) => return Err(Stop::Aborted),
                    }
                }
                pc.now_ms = self.now(pc).max(target);
            }
        }
        if self.deadline_ms.is_some_and(|d| until_ms >= d) {
            return Err(Stop::TimedOut);
        }
        Ok(())
    }

    fn seconds(&self, s: &Seconds, eff: &Value, pc: &PathCtx, field: &str) -> Result<u64, StatesError> {
        match s {
            Seconds::Fixed(n) => Ok(*n),
            Seconds::Path(p) => {
                let v = p.eval_required(&self.scope(eff, pc), field)?;
                v.as_u64().ok_or_else(|| {
                    StatesError::runtime(format!(
                        "The value selected by {field} '{}' must be a non-negative integer, not {v}",
                        p.text()
                    ))
                })
            }
            Seconds::Jsonata(t) => {
                let v = t.eval(&self.jenv(pc, &Seen::of(eff)), field.trim_end_matches("Path"))?;
                v.as_u64().ok_or_else(|| {
                    StatesError::new(
                        names::QUERY_EVALUATION_ERROR,
                        format!(
                            "{} must evaluate to a non-negative integer, not {v}",
                            field.trim_end_matches("Path")
                        ),
                    )
                })
            }
        }
    }

    /// A deterministic uniform number in [0, 1) for FULL jitter (xorshift64*, seeded by the execution name).
    fn random_unit(&self) -> f64 {
        let mut s = self.rng.lock().unwrap();
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let x = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The length of `v` as compact JSON text, without building the text.
pub fn json_len(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
