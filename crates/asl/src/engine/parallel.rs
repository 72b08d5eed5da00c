//! Parallel states: branches run concurrently, results in branch order.

use super::*;

pub(super) fn child_ctx(pc: &PathCtx) -> PathCtx {
    PathCtx {
        vars: Vars::child(Arc::new(pc.vars.clone())),
        now_ms: pc.now_ms,
        last_event: pc.last_event,
        entered_event: pc.entered_event,
        context: pc.context.clone(),
    }
}

pub(super) async fn run_parallel(
    exec: &Arc<Exec>,
    st: &State,
    branches: &[Arc<StateMachine>],
    eff: &Value,
    pc: &mut PathCtx,
) -> Result<Value, Stop> {
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
