//! Task states: handler dispatch (Lambda function ARNs, `lambda:invoke`, other resources),
//! mocked responses, `.waitForTaskToken` callbacks with heartbeats, time limits, Task events.

use super::*;
use crate::model::StartMode;

pub(super) async fn run_task(exec: &Arc<Exec>, st: &State, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
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
    if let Target::StartExecution(StartMode::Sync | StartMode::Sync2) = task.target {
        submitted_child(exec, task, &outcome, pc);
    }
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

/// A `.sync` nested execution logs `TaskSubmitted` with the StartExecution response
/// (`ExecutionArn`, `StartDate`), at the child's start, before the Task's end, as AWS logs the
/// "Run a Job" pattern. The description the child left (its result, or the failure's cause)
/// says which execution it was.
fn submitted_child(exec: &Exec, task: &Task, outcome: &Result<Value, Stop>, pc: &mut PathCtx) {
    let described = match outcome {
        Ok(v) => Some(v.clone()),
        Err(Stop::Failed(e)) if e.error == names::TASK_FAILED => serde_json::from_str::<Value>(&e.cause).ok(),
        _ => None,
    };
    let Some(d) = described.filter(|d| d.get("ExecutionArn").is_some()) else {
        return;
    };
    let start = d.get("StartDate").and_then(Value::as_i64).unwrap_or(pc.now_ms);
    let end = pc.now_ms;
    pc.now_ms = start.min(end);
    let mut fields = vec![("resourceType", json!(task.resource_type)), ("resource", json!(task.resource_name))];
    fields.extend(payload(
        "output",
        &json!({"ExecutionArn": d["ExecutionArn"], "StartDate": d["StartDate"]}),
    ));
    exec.emit(pc, "TaskSubmitted", details("taskSubmittedEventDetails", fields));
    pc.now_ms = end;
}

/// The handler registered for a Task's resource: its exact ARN, or a prefix ending in `*` or `:`.
fn resource_handler(exec: &Exec, task: &Task) -> Option<Arc<dyn TaskHandler>> {
    let h = exec.engine.resources.iter().find(|(k, _)| {
        *k == task.base
            || (k.ends_with('*') && task.base.starts_with(&k[..k.len() - 1]))
            || (k.ends_with(':') && task.base.starts_with(k.as_str()))
    });
    h.map(|(_, h)| h.clone())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn invoke(
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
        // A handler registered for the resource wins; else the engine's own integrations.
        Target::StartExecution(mode) => {
            let h = resource_handler(exec, task).unwrap_or_else(|| nested::start_execution(exec, *mode));
            (Some(h), None, params)
        }
        Target::Http => (
            Some(resource_handler(exec, task).unwrap_or_else(|| http::http_invoke(exec))),
            None,
            params,
        ),
        Target::Other => (
            resource_handler(exec, task).or_else(|| nested::callback_api(exec, &task.base)),
            None,
            params,
        ),
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
        exec.register_token(t, tx);
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
                exec.remove_token(t);
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
    exec.remove_token(&token);
    result
}

/// The Lambda Invoke API response as the `lambda:invoke` integration returns it.
pub(super) fn lambda_invoke_response(payload: Value) -> Value {
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
