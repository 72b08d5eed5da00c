//! Choice and Wait states in an execution (rule semantics are unit-tested in src/choice.rs).
mod common;
use common::*;
use opsflow_asl::Status;
use serde_json::json;

fn router() -> serde_json::Value {
    json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "InputPath": "$.in", "OutputPath": "$.v",
              "Assign": {"seen.$": "$.v"},
              "Choices": [
                {"Variable": "$.v", "NumericGreaterThan": 10, "Next": "Big", "Assign": {"size": "big"}},
                {"And": [{"Variable": "$.v", "IsNumeric": true}, {"Not": {"Variable": "$.v", "NumericEquals": 0}}], "Next": "Small"}],
              "Default": "Other"},
        "Big": {"Type": "Pass", "Parameters": {"size.$": "$size", "seen.$": "$seen", "in.$": "$"}, "End": true},
        "Small": {"Type": "Pass", "Result": "small", "End": true},
        "Other": {"Type": "Pass", "Result": "other", "End": true}}})
}

#[tokio::test]
async fn choice_routes_by_rule_order_and_default() {
    assert_eq!(
        run(router(), json!({"in": {"v": 11}})).await.output,
        Some(json!({"size": "big", "seen": 11, "in": 11}))
    );
    assert_eq!(run(router(), json!({"in": {"v": 3}})).await.output, Some(json!("small")));
    // 0 is falsy but still a number: it reaches Default only because of the Not rule.
    assert_eq!(run(router(), json!({"in": {"v": 0}})).await.output, Some(json!("other")));
    // A string where a number is expected is a type mismatch: false, not an error.
    assert_eq!(run(router(), json!({"in": {"v": "11"}})).await.output, Some(json!("other")));
}

/// AWS fails with States.Runtime here (recorded on AWS), although the ASL spec names
/// States.NoChoiceMatched.
#[tokio::test]
async fn no_match_without_default_is_a_runtime_error() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.v", "BooleanEquals": true, "Next": "T"}]},
        "T": {"Type": "Succeed"}}});
    let r = run(def, json!({"v": false})).await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Failed, Some("States.Runtime")));
    assert_eq!(
        r.cause.as_deref(),
        Some("An error occurred while executing the state 'C' (entered at the event id #2). Failed to transition out of the state. The state does not point to a next state.")
    );
}

#[tokio::test]
async fn a_missing_choice_variable_is_states_runtime() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.nope", "StringEquals": "x", "Next": "T"}], "Default": "T"},
        "T": {"Type": "Succeed"}}});
    assert_eq!(run(def, json!({})).await.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn a_poll_loop_with_backoff_runs_in_virtual_time() {
    // Wait -> check -> Choice with a doubling delay, until the 4th check succeeds.
    let def = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Result": {"n": 0, "delay": 5}, "ResultPath": "$.poll", "Next": "Wait"},
        "Wait": {"Type": "Wait", "SecondsPath": "$.poll.delay", "Next": "Check"},
        "Check": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.poll.n, 1)", "delay.$": "States.MathAdd($.poll.delay, $.poll.delay)"}, "ResultPath": "$.poll", "Next": "Done?"},
        "Done?": {"Type": "Choice", "Choices": [{"Variable": "$.poll.n", "NumericGreaterThanEquals": 4, "Next": "Done"}], "Default": "Wait"},
        "Done": {"Type": "Succeed"}}});
    let r = run(def, json!({})).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output.unwrap()["poll"]["n"], 4);
    assert_eq!(r.engine_ms, (5 + 10 + 20 + 40) * 1000);
    assert_eq!(r.transitions, 1 + 4 * 3 + 1);
}
