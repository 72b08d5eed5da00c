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

mod distributed;
mod flow;
mod http;
mod io;
mod machine;
mod map;
mod nested;
mod parallel;
mod task;
mod test_state;

use flow::*;
use io::*;
pub use machine::error_matches;
use machine::*;
use map::*;
pub use nested::ChildExecution;
use parallel::*;
use task::*;
pub use test_state::{InspectionLevel, TestStateError, TestStateOutput, TestStateRequest};

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

    /// Moves a virtual clock on by `ms` (time spent elsewhere, e.g. by a child execution on its
    /// own clock); a real clock has already moved.
    pub(crate) fn advance_virtual(&self, ms: i64) {
        if let TaskClockInner::Virtual(now) = &*self.inner {
            now.fetch_add(ms.max(0), Ordering::Relaxed);
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
    /// Executions this one started (`states:startExecution`) that have finished, each with its
    /// own history, in the order they finished.
    pub children: Vec<ChildExecution>,
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
    state_machines: HashMap<String, Arc<StateMachine>>,
    store: Option<Arc<dyn crate::store::ObjectStore>>,
    connections: HashMap<String, Value>,
    http_limit: Option<Duration>,
}

impl EngineBuilder {
    /// How long an HTTP Task's request may take before `States.Http.Socket` (AWS: 60 s, the
    /// default; a shorter one suits tests).
    pub fn http_time_limit(mut self, limit: Duration) -> Self {
        self.http_limit = Some(limit);
        self
    }
    /// An EventBridge connection the HTTP Task may use, by its ARN: `{"AuthorizationType":
    /// "API_KEY" | "BASIC" | "OAUTH_CLIENT_CREDENTIALS", "AuthParameters": {…}}` as
    /// EventBridge's CreateConnection takes it (secrets included).
    pub fn connection(mut self, arn: impl Into<String>, connection: Value) -> Self {
        self.connections.insert(arn.into(), connection);
        self
    }
    /// The object store a Distributed Map's `ItemReader` reads from and its `ResultWriter`
    /// writes to (S3 on AWS).
    pub fn object_store(mut self, store: Arc<dyn crate::store::ObjectStore>) -> Self {
        self.store = Some(store);
        self
    }
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
    /// Registers a state machine that `arn:aws:states:::states:startExecution` can start, by
    /// its ARN or by name; a `StateMachineArn` `arn:aws:states:<region>:<account>:stateMachine:<name>[:…]`
    /// reaches it by that exact ARN, else by the name after `:stateMachine:`.
    pub fn state_machine(mut self, name: impl Into<String>, sm: Arc<StateMachine>) -> Self {
        self.state_machines.insert(name.into(), sm);
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
                state_machines: self.state_machines,
                store: self.store,
                connections: self.connections,
                http_limit: self.http_limit.unwrap_or(http::HTTP_TASK_LIMIT),
                http: std::sync::OnceLock::new(),
                oauth_tokens: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                child_names: Mutex::new(std::collections::HashSet::new()),
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
    state_machines: HashMap<String, Arc<StateMachine>>,
    store: Option<Arc<dyn crate::store::ObjectStore>>,
    connections: HashMap<String, Value>,
    http_limit: Duration,
    /// The HTTP Task's client, built on first use.
    http: std::sync::OnceLock<reqwest::Client>,
    /// OAuth access tokens by connection ARN.
    oauth_tokens: Mutex<HashMap<String, String>>,
    /// Every waiting callback of every execution, for the engine-wide callback API (a child
    /// execution answers its parent's `.waitForTaskToken` task through it).
    tokens: Mutex<HashMap<String, mpsc::UnboundedSender<TokenMsg>>>,
    /// ARNs of the executions started by name through `states:startExecution`.
    child_names: Mutex<std::collections::HashSet<String>>,
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
    /// Finished child executions (shared with the ones still running in the background).
    children: Arc<Mutex<Vec<ChildExecution>>>,
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
    /// The id of the current state's `…StateEntered` event (named in error causes).
    entered_event: u64,
    /// The context object without Execution.Input, shared between paths until one changes it.
    context: Arc<Value>,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Starts an execution on the current Tokio runtime.
    pub fn start(&self, sm: Arc<StateMachine>, input: Value, opts: StartOptions) -> RunningExecution {
        self.start_at(sm, input, opts, None)
    }

    /// Starts an execution whose clock starts at `start_ms` (a child execution starts at its
    /// parent's time; a local run starts where the services it drives already are), or now.
    pub fn start_at(&self, sm: Arc<StateMachine>, input: Value, opts: StartOptions, start_ms: Option<i64>) -> RunningExecution {
        let (tx, rx) = mpsc::unbounded_channel();
        let exec = self.new_exec(&opts, input, sm.timeout_seconds, tx, start_ms);
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
        let exec = self.new_exec(&opts, input, sm.timeout_seconds, tx, None);
        run_execution(exec, sm.clone(), opts).await
    }

    /// Runs an execution to its end, its clock starting at `start_ms` (a child execution), with
    /// at most `max_seconds` (an EXPRESS child's five minutes) on top of the machine's own limit.
    async fn run_at(
        &self,
        sm: &Arc<StateMachine>,
        input: Value,
        opts: StartOptions,
        start_ms: i64,
        max_seconds: Option<u64>,
    ) -> ExecutionResult {
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let timeout = match (sm.timeout_seconds, max_seconds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let exec = self.new_exec(&opts, input, timeout, tx, Some(start_ms));
        run_execution(exec, sm.clone(), opts).await
    }

    /// `SendTaskSuccess` for a token of any execution of this engine.
    pub fn send_task_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        if json_len(&output) > MAX_PAYLOAD_BYTES {
            return Err(CallbackError::InvalidOutput("the output is larger than 256 KiB".into()));
        }
        self.send_token(token, TokenMsg::Success(output))
    }
    /// `SendTaskFailure` for a token of any execution of this engine.
    pub fn send_task_failure(&self, token: &str, error: &str, cause: &str) -> Result<(), CallbackError> {
        self.send_token(token, TokenMsg::Failure(StatesError::new(error, cause)))
    }
    /// `SendTaskHeartbeat` for a token of any execution of this engine.
    pub fn send_task_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.send_token(token, TokenMsg::Heartbeat)
    }
    fn send_token(&self, token: &str, msg: TokenMsg) -> Result<(), CallbackError> {
        let tokens = self.inner.tokens.lock().unwrap();
        let tx = tokens.get(token).ok_or(CallbackError::TaskDoesNotExist)?;
        tx.send(msg).map_err(|_| CallbackError::TaskDoesNotExist)
    }

    fn new_exec(
        &self,
        opts: &StartOptions,
        input: Value,
        timeout: Option<u64>,
        sink: mpsc::UnboundedSender<HistoryEvent>,
        start_ms: Option<i64>,
    ) -> Arc<Exec> {
        let start_ms = start_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
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
            children: Arc::new(Mutex::new(Vec::new())),
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
        entered_event: 0,
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
        let real_deadline = match (exec.engine.clock, exec.deadline_ms) {
            (Clock::Real { scale }, Some(d)) => Some(Duration::from_secs_f64((d - exec.start_ms) as f64 / 1000.0 / scale)),
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
    exec.clear_tokens();
    let children = std::mem::take(&mut *exec.children.lock().unwrap());
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
        children,
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

impl Exec {
    fn register_token(&self, token: &str, tx: mpsc::UnboundedSender<TokenMsg>) {
        self.engine.tokens.lock().unwrap().insert(token.to_string(), tx.clone());
        self.tokens.lock().unwrap().insert(token.to_string(), tx);
    }

    fn remove_token(&self, token: &str) {
        self.engine.tokens.lock().unwrap().remove(token);
        self.tokens.lock().unwrap().remove(token);
    }

    fn clear_tokens(&self) {
        let mine: Vec<String> = self.tokens.lock().unwrap().drain().map(|(k, _)| k).collect();
        let mut all = self.engine.tokens.lock().unwrap();
        for t in mine {
            all.remove(&t);
        }
    }

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
                // AWS takes a numeric string ("1", e.g. from a variable) for these two counts.
                let numeric_string = || match (&v, field) {
                    (Value::String(s), "MaxConcurrencyPath" | "ToleratedFailureCountPath") => s.parse::<u64>().ok(),
                    _ => None,
                };
                v.as_u64().or_else(numeric_string).ok_or_else(|| {
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
