//! The state loop: enters each state, applies Catch on failure, Retry around Task, Parallel
//! and Map bodies, and records the Entered/Exited events.

use super::*;

pub(super) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a state produced: its output, where to go next (None: the machine ends) and the
/// variables it assigns, which take effect when it exits.
pub(super) struct StepOut {
    pub(super) output: Value,
    pub(super) next: Option<usize>,
    pub(super) assigned: Option<Map<String, Value>>,
}

pub(super) const RUNTIME_PREFIX: &str = "An error occurred while executing the state";

/// Runs the states of one machine from StartAt to an end.
pub(super) fn run_machine<'a>(
    exec: &'a Arc<Exec>,
    sm: &'a StateMachine,
    input: Value,
    pc: &'a mut PathCtx,
) -> BoxFut<'a, Result<Value, Stop>> {
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
            pc.entered_event = pc.last_event;
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
                    report_state_error(exec, st, &mut err, pc);
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

/// AWS prefixes the cause of a `States.Runtime` or `States.QueryEvaluationError` with the state
/// and the id of its Entered event ("An error occurred while executing the state 'S' (entered at
/// the event id #n). …"), once, where the error arises; a JSONata evaluation error is also
/// logged as an `EvaluationFailed` event (state, error, cause, and the field as `location`).
pub(super) fn report_state_error(exec: &Exec, st: &State, err: &mut StatesError, pc: &mut PathCtx) {
    let prefixed = err.error == names::RUNTIME || err.error == names::QUERY_EVALUATION_ERROR;
    if !prefixed || err.cause.starts_with(RUNTIME_PREFIX) {
        return;
    }
    err.cause = format!(
        "{RUNTIME_PREFIX} '{}' (entered at the event id #{}). {}",
        st.name, pc.entered_event, err.cause
    );
    if err.error == names::QUERY_EVALUATION_ERROR && st.lang == Lang::Jsonata {
        let mut d = vec![("error", json!(err.error)), ("cause", json!(err.cause))];
        if let Some(field) = err.cause.split("for the field '").nth(1).and_then(|r| r.split('\'').next()) {
            d.push(("location", json!(field)));
        }
        d.push(("state", json!(&*st.name)));
        exec.emit(pc, "EvaluationFailed", details("evaluationFailedEventDetails", d));
    }
}

pub(super) fn entered_type(k: &Kind) -> &'static str {
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

pub(super) fn exited_type(k: &Kind) -> &'static str {
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
pub(super) fn is_catchable(error: &str) -> bool {
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

/// Runs one state (without its Catch, which the caller applies).
pub(super) async fn run_state(exec: &Arc<Exec>, st: &State, raw: &Value, pc: &mut PathCtx) -> Result<StepOut, Stop> {
    match st.lang {
        Lang::Jsonata => run_jsonata_state(exec, st, raw, pc).await,
        Lang::JsonPath => run_jsonpath_state(exec, st, raw, pc).await,
    }
}

/// Runs a Task, Parallel or Map body under the state's retriers. A Parallel or Map state
/// that finally fails logs `ParallelStateFailed` / `MapStateFailed` once (not for States.Runtime).
pub(super) async fn with_retry(exec: &Arc<Exec>, st: &State, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    let mut r = retry_loop(exec, st, eff, pc).await;
    if let Err(Stop::Failed(e)) = &mut r {
        report_state_error(exec, st, e, pc);
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

pub(super) async fn retry_loop(exec: &Arc<Exec>, st: &State, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
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
