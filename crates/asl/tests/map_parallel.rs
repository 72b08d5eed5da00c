//! Map (inline) and Parallel, from the AWS docs "Map workflow state" and "Parallel workflow state".
mod common;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use opsflow_asl::{Engine, StatesError, Status, TaskRequest};
use serde_json::json;

#[tokio::test]
async fn map_keeps_item_order_and_exposes_item_index_and_value() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
        "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
        "ResultPath": "$.out", "End": true}}});
    let r = run(def, json!({"items": ["a", "b", "c"], "tag": 1})).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.output.unwrap()["out"],
        json!([{"v": "a", "i": 0, "tag": 1}, {"v": "b", "i": 1, "tag": 1}, {"v": "c", "i": 2, "tag": 1}])
    );
    assert_eq!(r.transitions, 4);
}

#[tokio::test]
async fn legacy_iterator_and_parameters_still_work_and_empty_input_gives_empty_output() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "Parameters": {"x.$": "$$.Map.Item.Value"},
        "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}});
    assert_eq!(run(def.clone(), json!([1, 2])).await.output, Some(json!([{"x": 1}, {"x": 2}])));
    assert_eq!(run(def, json!([])).await.output, Some(json!([])));
}

#[tokio::test]
async fn map_over_a_non_array_is_a_runtime_error() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.x",
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}});
    assert_eq!(run(def, json!({"x": {"a": 1}})).await.error.as_deref(), Some("States.Runtime"));
}

/// A Lambda that records the highest number of concurrent calls.
fn concurrency_probe(delay_ms: u64) -> (Engine, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n2, p2) = (now.clone(), peak.clone());
    let engine = Engine::builder()
        .lambda("work", move |req: TaskRequest| {
            let (now, peak) = (n2.clone(), p2.clone());
            async move {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                if req.payload == json!("bad") {
                    return Err(StatesError::new("ItemFailed", "bad item"));
                }
                Ok(req.payload)
            }
        })
        .build();
    (engine, peak)
}

fn map_def(extra: serde_json::Value) -> serde_json::Value {
    let mut m = json!({"Type": "Map", "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:work", "End": true}}}, "End": true});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"StartAt": "M", "States": {"M": m}})
}

#[tokio::test]
async fn max_concurrency_bounds_concurrent_iterations() {
    let (engine, peak) = concurrency_probe(20);
    let r = run_with(&engine, map_def(json!({"MaxConcurrency": 3})), json!((0..12).collect::<Vec<_>>())).await;
    assert_eq!(r.output, Some(json!((0..12).collect::<Vec<_>>())));
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    // 0 means no limit beyond the inline Map's 40.
    let (engine, peak) = concurrency_probe(20);
    run_with(&engine, map_def(json!({"MaxConcurrency": 0})), json!((0..60).collect::<Vec<_>>())).await;
    assert_eq!(peak.load(Ordering::SeqCst), 40);
}

#[tokio::test]
async fn a_failed_iteration_fails_the_map_with_its_error() {
    let (engine, _) = concurrency_probe(1);
    let r = run_with(&engine, map_def(json!({})), json!([1, "bad", 3])).await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Failed, Some("ItemFailed")));
    assert!(types(&r).contains(&"MapIterationFailed"));
    assert!(types(&r).contains(&"MapStateFailed"));
}

#[tokio::test]
async fn tolerated_failures_let_the_map_succeed_until_the_threshold() {
    let (engine, _) = concurrency_probe(1);
    let r = run_with(&engine, map_def(json!({"ToleratedFailureCount": 1})), json!([1, "bad", 3])).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output.unwrap()[1]["Error"], "ItemFailed");
    let (engine, _) = concurrency_probe(1);
    let r = run_with(&engine, map_def(json!({"ToleratedFailureCount": 1})), json!(["bad", 2, "bad"])).await;
    assert_eq!(r.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
    let (engine, _) = concurrency_probe(1);
    let r = run_with(&engine, map_def(json!({"ToleratedFailurePercentage": 50})), json!(["bad", 2, 3, 4])).await;
    assert_eq!(r.status, Status::Succeeded);
}

#[tokio::test]
async fn parallel_runs_branches_concurrently_and_keeps_branch_order() {
    let (engine, peak) = concurrency_probe(50);
    let branch = |v: i64| json!({"StartAt": format!("B{v}"), "States": {format!("B{v}"): {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:work", "Parameters": {"v": v}, "End": true}}});
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [branch(1), branch(2), branch(3)], "End": true}}});
    let t = std::time::Instant::now();
    let r = run_with(&engine, def, json!({})).await;
    assert!(t.elapsed() < Duration::from_millis(140), "{:?}", t.elapsed());
    assert_eq!(r.output, Some(json!([{"v": 1}, {"v": 2}, {"v": 3}])));
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert!(types(&r).contains(&"ParallelStateSucceeded"));
}

#[tokio::test]
async fn a_failed_branch_fails_the_parallel_state_which_can_catch_it() {
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Done", "Catch": [{"ErrorEquals": ["BranchBroke"], "ResultPath": "$.err", "Next": "Done"}],
              "Branches": [
                {"StartAt": "Ok", "States": {"Ok": {"Type": "Wait", "Seconds": 5, "End": true}}},
                {"StartAt": "Bad", "States": {"Bad": {"Type": "Fail", "Error": "BranchBroke", "Cause": "x"}}}]},
        "Done": {"Type": "Succeed"}}});
    let r = run(def, json!({"in": 1})).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output, Some(json!({"in": 1, "err": {"Error": "BranchBroke", "Cause": "x"}})));
    assert!(types(&r).contains(&"ParallelStateFailed"));
}

#[tokio::test]
async fn branches_read_outer_variables_but_their_assignments_stay_inside() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"outer": 1}, "Next": "P"},
        "P": {"Type": "Parallel", "Next": "B", "Branches": [
            {"StartAt": "In", "States": {"In": {"Type": "Pass", "Assign": {"inner": 2}, "Next": "Read"},
              "Read": {"Type": "Pass", "Parameters": {"o.$": "$outer", "i.$": "$inner"}, "End": true}}}]},
        "B": {"Type": "Pass", "Parameters": {"r.$": "$", "o.$": "$outer"}, "End": true}}});
    let r = run(def, json!({})).await;
    assert_eq!(r.output, Some(json!({"r": [{"o": 1, "i": 2}], "o": 1})));
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "B", "Branches": [{"StartAt": "In", "States": {"In": {"Type": "Pass", "Assign": {"inner": 2}, "End": true}}}]},
        "B": {"Type": "Pass", "Parameters": {"i.$": "$inner"}, "End": true}}});
    assert_eq!(run(def, json!({})).await.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn parallel_branch_clocks_join_at_the_slowest_branch() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "W1", "States": {"W1": {"Type": "Wait", "Seconds": 10, "End": true}}},
        {"StartAt": "W2", "States": {"W2": {"Type": "Wait", "Seconds": 30, "End": true}}}]}}});
    assert_eq!(run(def, json!({})).await.engine_ms, 30_000);
}
