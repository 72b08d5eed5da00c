//! Retry and Catch, from the AWS docs "Handling errors in Step Functions workflows" and the
//! ASL specification ("Errors", "Retrying after error", "Fallback states").
mod common;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use opsflow_asl::{Engine, StatesError, Status};
use serde_json::{json, Value};

/// A Lambda that fails with `errors[n]` on its n-th call and then succeeds.
fn flaky(errors: Vec<&'static str>) -> (Engine, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let engine = Engine::builder()
        .lambda("f", move |req: opsflow_asl::TaskRequest| {
            let n = c.fetch_add(1, Ordering::SeqCst) as usize;
            let errors = errors.clone();
            async move {
                match errors.get(n) {
                    Some(e) => Err(StatesError::new(*e, format!("failure {n}"))),
                    None => Ok(json!({"ok": true, "calls": n + 1, "got": req.payload})),
                }
            }
        })
        .build();
    (engine, calls)
}

fn task(extra: Value) -> Value {
    let mut t = json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": true});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    json!({"StartAt": "T", "States": {"T": t, "Caught": {"Type": "Pass", "End": true}, "Other": {"Type": "Pass", "End": true}}})
}

fn def_with(extra: Value) -> Value {
    // Unreferenced helper states would be unreachable: keep only what is referenced.
    let mut d = task(extra.clone());
    let text = extra.to_string();
    for s in ["Caught", "Other"] {
        if !text.contains(&format!("\"{s}\"")) {
            d["States"].as_object_mut().unwrap().remove(s);
        }
    }
    d
}

#[tokio::test]
async fn retry_until_success_counts_attempts_and_waits_with_backoff() {
    let (engine, calls) = flaky(vec!["Boom", "Boom"]);
    let r = run_with(
        &engine,
        def_with(json!({"Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 2, "BackoffRate": 3.0, "MaxAttempts": 2}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // 2 s then 6 s of virtual time.
    assert_eq!(r.engine_ms, 8000);
}

#[tokio::test]
async fn max_attempts_zero_never_retries() {
    let (engine, calls) = flaky(vec!["Boom"]);
    let r = run_with(
        &engine,
        def_with(json!({"Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 0}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(r.error.as_deref(), Some("Boom"));
    // The Lambda error's cause is the JSON error payload, as AWS reports it.
    let cause: Value = serde_json::from_str(r.cause.as_deref().unwrap()).unwrap();
    assert_eq!(cause, json!({"errorMessage": "failure 0", "errorType": "Boom"}));
}

#[tokio::test]
async fn each_retrier_has_its_own_counter_and_the_first_match_decides() {
    // A, B, A, B: the A retrier (MaxAttempts 2) and the B retrier (MaxAttempts 2) each retry twice.
    let (engine, calls) = flaky(vec!["A", "B", "A", "B"]);
    let r = run_with(
        &engine,
        def_with(json!({"Retry": [{"ErrorEquals": ["A"], "MaxAttempts": 2, "IntervalSeconds": 1, "BackoffRate": 1.0}, {"ErrorEquals": ["B"], "MaxAttempts": 2, "IntervalSeconds": 1, "BackoffRate": 1.0}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // The first matching retrier is used even when exhausted: a later States.ALL retrier does not apply.
    let (engine, calls) = flaky(vec!["A", "A", "A"]);
    let r = run_with(
        &engine,
        def_with(json!({"Retry": [{"ErrorEquals": ["A"], "MaxAttempts": 1}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_delay_seconds_caps_the_backoff() {
    let (engine, _) = flaky(vec!["E", "E", "E", "E"]);
    let r = run_with(
        &engine,
        def_with(
            json!({"Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 10, "BackoffRate": 10.0, "MaxAttempts": 4, "MaxDelaySeconds": 50}]}),
        ),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.engine_ms, (10 + 50 + 50 + 50) * 1000);
}

#[tokio::test]
async fn full_jitter_waits_at_most_the_computed_delay_and_is_deterministic() {
    let d = def_with(
        json!({"Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 10, "BackoffRate": 2.0, "MaxAttempts": 3, "JitterStrategy": "FULL"}]}),
    );
    let (engine, _) = flaky(vec!["E", "E", "E"]);
    let a = run_with(&engine, d.clone(), json!({})).await;
    let (engine, _) = flaky(vec!["E", "E", "E"]);
    let b = run_with(&engine, d, json!({})).await;
    assert!(a.engine_ms < 70_000 && a.engine_ms >= 0, "{}", a.engine_ms);
    assert_eq!(a.engine_ms, b.engine_ms);
}

#[tokio::test]
async fn retry_count_is_visible_in_the_context_object() {
    let (engine, _) = flaky(vec!["E", "E"]);
    let r = run_with(
        &engine,
        def_with(json!({"Parameters": {"retry.$": "$$.State.RetryCount"}, "Retry": [{"ErrorEquals": ["E"]}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.output.unwrap()["got"], json!({"retry": 2}));
}

#[tokio::test]
async fn catch_puts_error_output_at_result_path_on_the_raw_input() {
    let (engine, _) = flaky(vec!["Boom"]);
    let r = run_with(
        &engine,
        def_with(json!({"InputPath": "$.narrow", "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.error", "Next": "Caught"}]})),
        json!({"narrow": 1, "other": 2}),
    )
    .await;
    assert_eq!(r.status, Status::Succeeded);
    let out = r.output.unwrap();
    assert_eq!(out["narrow"], 1);
    assert_eq!(out["other"], 2);
    assert_eq!(out["error"]["Error"], "Boom");
    // Default ResultPath "$": the error output replaces the input.
    let (engine, _) = flaky(vec!["Boom"]);
    let r = run_with(
        &engine,
        def_with(json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]})),
        json!({"x": 1}),
    )
    .await;
    assert_eq!(
        r.output.unwrap().as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["Error", "Cause"]
    );
}

#[tokio::test]
async fn catchers_match_in_order_and_task_failed_skips_timeouts() {
    let (engine, _) = flaky(vec!["Boom"]);
    let r = run_with(
        &engine,
        def_with(json!({"Catch": [{"ErrorEquals": ["Other"], "Next": "Other"}, {"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}]})),
        json!({}),
    )
    .await;
    assert_eq!(
        r.events
            .iter()
            .rev()
            .find(|e| e.event_type == "PassStateEntered")
            .unwrap()
            .state_name(),
        Some("Caught")
    );
    assert!(opsflow_asl::engine::error_matches("States.TaskFailed", "Lambda.Unknown"));
    assert!(!opsflow_asl::engine::error_matches("States.TaskFailed", "States.Timeout"));
    assert!(opsflow_asl::engine::error_matches("States.ALL", "States.Timeout"));
    // Recorded on AWS: a States.ALL catcher does catch States.DataLimitExceeded.
    assert!(opsflow_asl::engine::error_matches("States.ALL", "States.DataLimitExceeded"));
    assert!(!opsflow_asl::engine::error_matches("States.ALL", "States.Runtime"));
}

#[tokio::test]
async fn states_runtime_is_neither_retried_nor_caught() {
    let (engine, calls) = flaky(vec![]);
    let r = run_with(
        &engine,
        def_with(json!({"Parameters": {"x.$": "$.missing"}, "Retry": [{"ErrorEquals": ["States.ALL"]}], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_lambda_is_a_catchable_resource_not_found() {
    let r = run(
        def_with(json!({"Catch": [{"ErrorEquals": ["Lambda.ResourceNotFoundException"], "Next": "Caught"}]})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output.unwrap()["Error"], "Lambda.ResourceNotFoundException");
}

#[tokio::test]
async fn an_unregistered_resource_fails_with_a_clear_runtime_error() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:ec2:describeInstances", "End": true}}});
    let r = run(def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
    assert!(r
        .cause
        .unwrap()
        .contains("No handler is registered for the resource 'arn:aws:states:::aws-sdk:ec2:describeInstances'"));
}

#[tokio::test]
async fn fail_state_reports_error_and_cause_from_paths() {
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}}});
    let r = run(def, json!({"e": "Custom", "c": "because"})).await;
    assert_eq!(
        (r.status, r.error.as_deref(), r.cause.as_deref()),
        (Status::Failed, Some("Custom"), Some("because"))
    );
    assert_eq!(types(&r), vec!["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]);
}
