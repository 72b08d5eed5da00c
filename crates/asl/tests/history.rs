//! History shapes and Assign timing, checked against executions recorded on AWS (LocalStack's
//! AWS-recorded snapshots and the AWS docs, as cited per test).
mod common;
use std::time::Duration;

use common::*;
use opsflow_asl::{model, Engine, StatesError, Status, TaskRequest};
use serde_json::{json, Value};

fn failing_engine() -> Engine {
    Engine::builder()
        .lambda("boom", |_req: TaskRequest| async { Err(StatesError::new("Exception", "it broke")) })
        .build()
}

#[tokio::test]
async fn a_caught_lambda_failure_exits_the_state_with_the_catcher_output() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:boom", "Next": "Done",
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Handle"}]},
        "Handle": {"Type": "Pass", "End": true},
        "Done": {"Type": "Succeed"}}});
    let r = run_with(&failing_engine(), def, json!({"a": 1})).await;
    assert_eq!(
        types(&r),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    let exited = r.events[5].to_json();
    let output: Value = serde_json::from_str(exited["stateExitedEventDetails"]["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["err"]["Error"], "Exception");
    let failed = r.events[4].to_json();
    assert_eq!(failed["lambdaFunctionFailedEventDetails"]["error"], "Exception");
}

#[tokio::test]
async fn runtime_errors_name_the_state_and_its_entered_event() {
    let def =
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "InputPath": "$.x.y", "End": true}}});
    let r = run(def, json!({})).await;
    assert_eq!(
        r.cause.as_deref(),
        Some("An error occurred while executing the state 'B' (entered at the event id #4). Invalid path '$.x.y' : No results for path: $['x']['y']")
    );
    assert_eq!(
        types(&r),
        vec![
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "PassStateEntered",
            "ExecutionFailed"
        ]
    );
}

#[tokio::test]
async fn assigned_variables_take_effect_when_the_state_exits_and_are_logged() {
    // The Parameters of the same state still see the old value; the next state sees the new one.
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"old.$": "$x"}, "Assign": {"x": 2, "prev.$": "$x"}, "Next": "C"},
        "C": {"Type": "Pass", "Parameters": {"x.$": "$x", "prev.$": "$prev", "in.$": "$"}, "End": true}}});
    let r = run(def, json!({})).await;
    assert_eq!(r.output, Some(json!({"x": 2, "prev": 1, "in": {"old": 1}})));
    let exited = r
        .events
        .iter()
        .find(|e| e.event_type == "PassStateExited" && e.state_name() == Some("B"))
        .unwrap()
        .to_json();
    assert_eq!(
        exited["stateExitedEventDetails"]["assignedVariables"],
        json!({"x": "2", "prev": "1"})
    );
}

#[tokio::test]
async fn task_assign_sees_the_raw_result_before_result_selector() {
    let engine = Engine::builder()
        .lambda("f", |_req: TaskRequest| async { Ok(json!({"raw": 1})) })
        .build();
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "ResultSelector": {"sel.$": "$.raw"},
              "Assign": {"r.$": "$.raw"}, "Next": "P"},
        "P": {"Type": "Pass", "Parameters": {"r.$": "$r", "out.$": "$"}, "End": true}}});
    assert_eq!(
        run_with(&engine, def, json!({})).await.output,
        Some(json!({"r": 1, "out": {"sel": 1}}))
    );
}

#[tokio::test]
async fn a_failing_map_logs_failed_and_aborted_iterations_and_a_detail_free_map_state_failed() {
    let engine = Engine::builder()
        .lambda("work", |req: TaskRequest| async move {
            if req.payload == json!(0) {
                Err(StatesError::new("Bad", "item 0"))
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(req.payload)
            }
        })
        .build();
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:work", "End": true}}}}}});
    let r = run_with(&engine, def, json!([0, 1, 2])).await;
    assert_eq!(r.error.as_deref(), Some("Bad"));
    let t = types(&r);
    assert_eq!(t.iter().filter(|x| **x == "MapIterationFailed").count(), 1);
    assert_eq!(t.iter().filter(|x| **x == "MapIterationAborted").count(), 2);
    let failed = r.events.iter().find(|e| e.event_type == "MapStateFailed").unwrap().to_json();
    assert_eq!(failed.as_object().unwrap().len(), 4, "{failed}");
    assert_eq!(t[t.len() - 2..], ["MapStateFailed", "ExecutionFailed"]);
}

#[tokio::test]
async fn map_and_parallel_close_after_their_last_child_event() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    let r = run(def, json!([1, 2])).await;
    let id_of = |ty: &str| r.events.iter().filter(|e| e.event_type == ty).map(|e| e.id).max().unwrap();
    let succeeded = r.events.iter().find(|e| e.event_type == "MapStateSucceeded").unwrap();
    assert_eq!(succeeded.previous_event_id, id_of("MapIterationSucceeded"));
    // Each iteration's first state points at its MapIterationStarted event.
    for e in r.events.iter().filter(|e| e.event_type == "PassStateEntered") {
        assert_eq!(r.events[e.previous_event_id as usize - 1].event_type, "MapIterationStarted");
    }
}

#[tokio::test]
async fn task_timeouts_have_no_cause() {
    let engine = Engine::builder()
        .lambda("slow", |_req: TaskRequest| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(json!(1))
        })
        .build();
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "slow"},
        "TimeoutSeconds": 1, "End": true, "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "C"}]}, "C": {"Type": "Pass", "End": true}}});
    let r = run_with(&engine, def, json!({})).await;
    assert_eq!(r.output, Some(json!({"Error": "States.Timeout", "Cause": ""})));
    let timed_out = r.events.iter().find(|e| e.event_type == "TaskTimedOut").unwrap().to_json();
    assert_eq!(
        timed_out["taskTimedOutEventDetails"],
        json!({"resourceType": "lambda", "resource": "invoke", "error": "States.Timeout"})
    );
}

#[tokio::test]
async fn a_fail_state_without_error_logs_no_error_field() {
    let r = run(
        json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Cause": "Condition is false"}}}),
        json!({}),
    )
    .await;
    assert_eq!(
        (r.status, r.error.as_deref(), r.cause.as_deref()),
        (Status::Failed, None, Some("Condition is false"))
    );
    assert_eq!(
        r.events.last().unwrap().to_json()["executionFailedEventDetails"],
        json!({"cause": "Condition is false"})
    );
}

#[test]
fn validation_rejects_workflows_without_a_terminal_state_and_bad_fail_paths() {
    let e = model::parse_value(&json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}})).unwrap_err();
    assert!(e[0].to_string().contains("no terminal state"), "{e:?}");
    let e =
        model::parse_value(&json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "States.MathAdd(1, 2)"}}})).unwrap_err();
    assert!(e[0].to_string().contains("field 'ErrorPath'"), "{e:?}");
    let e = model::parse_value(&json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "CausePath": "$.a[*]"}}})).unwrap_err();
    assert!(e[0].to_string().contains("reference path"), "{e:?}");
    assert!(
        model::parse_value(&json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "CausePath": "States.Format('x {}', $.a)"}}})).is_ok()
    );
}
