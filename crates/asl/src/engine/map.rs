//! Map states (inline): items, ItemSelector, concurrency, tolerated failures, iteration events.

use super::*;

pub(super) async fn run_map(exec: &Arc<Exec>, st: &State, m: &MapState, eff: &Value, pc: &mut PathCtx) -> Result<Value, Stop> {
    if let Some(d) = &m.distributed {
        return super::distributed::run_distributed(exec, st, m, d, eff, pc).await;
    }
    let items = map_items(exec, st, m, eff, pc)?;
    let max = match &m.max_concurrency {
        None => 0,
        Some(s) => exec.seconds(s, eff, pc, "MaxConcurrencyPath")?,
    };
    let limit = if max == 0 {
        INLINE_MAP_CONCURRENCY
    } else {
        (max as usize).min(INLINE_MAP_CONCURRENCY)
    };
    let (tolerated_count, tolerated_pct) = tolerance(exec, m, eff, pc)?;
    let n = items.len();
    exec.emit(
        pc,
        "MapStateStarted",
        details("mapStateStartedEventDetails", vec![("length", json!(n))]),
    );
    let inputs = select_items(exec, m, items, eff, pc)?;
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

/// The items of a Map without an ItemReader: ItemsPath (default `$`) or JSONata `Items`.
pub(super) fn map_items(exec: &Exec, st: &State, m: &MapState, eff: &Value, pc: &PathCtx) -> Result<Vec<Value>, Stop> {
    let items = match (&m.items_path, &m.items) {
        (Some(p), _) => p.eval_required(&exec.scope(eff, pc), "ItemsPath")?,
        (None, Some(t)) => t.eval(&exec.jenv(pc, &Seen::of(eff)), "Items")?,
        (None, None) => eff.clone(),
    };
    match items {
        Value::Array(items) => Ok(items),
        // AWS: an Items expression that is not an array is a query evaluation error.
        items if st.lang == Lang::Jsonata => Err(Stop::Failed(StatesError::new(
            names::QUERY_EVALUATION_ERROR,
            format!("Map state input must be an array but was: {}", type_name(&items)),
        ))),
        items => Err(Stop::Failed(StatesError::runtime(format!(
            "Map state input must be an array, but the ItemsPath '{}' selected {}",
            m.items_path.as_ref().map_or("$", |p| p.text()),
            type_name(&items)
        )))),
    }
}

/// ToleratedFailureCount(Path) and ToleratedFailurePercentage(Path): (count, percentage).
pub(super) fn tolerance(exec: &Exec, m: &MapState, eff: &Value, pc: &PathCtx) -> Result<(u64, f64), Stop> {
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
    Ok((tolerated_count, tolerated_pct))
}

/// Item inputs, built up front: ItemSelector sees the state's effective input as `$` and the
/// item in `$$.Map.Item`.
pub(super) fn select_items(exec: &Exec, m: &MapState, items: Vec<Value>, eff: &Value, pc: &PathCtx) -> Result<Vec<Value>, Stop> {
    let Some(selector) = &m.item_selector else {
        return Ok(items);
    };
    let mut inputs = Vec::with_capacity(items.len());
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
    Ok(inputs)
}
