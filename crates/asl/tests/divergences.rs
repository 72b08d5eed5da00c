//! Edge cases where the engine once differed from executions recorded on AWS (issue 13), each
//! pinned to what AWS does.
mod common;
use common::*;
use opsflow_asl::{model, Status};
use serde_json::{json, Value};

fn jsonata(states: Value) -> Value {
    json!({"QueryLanguage": "JSONata", "StartAt": states.as_object().unwrap().keys().next().unwrap(), "States": states})
}

fn map_over(extra: Value) -> Value {
    let mut m = json!({"Type": "Map", "ItemsPath": "$.items",
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true});
    m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"StartAt": "M", "States": {"M": m}})
}

#[tokio::test]
async fn a_numeric_string_in_max_concurrency_path_is_a_number() {
    let r = run(
        map_over(json!({"MaxConcurrencyPath": "$.max"})),
        json!({"items": [1, 2, 3], "max": "1"}),
    )
    .await;
    assert_eq!((r.status, r.output), (Status::Succeeded, Some(json!([1, 2, 3]))));
    // A string that is not a number still fails.
    let r = run(
        map_over(json!({"MaxConcurrencyPath": "$.max"})),
        json!({"items": [1], "max": "one"}),
    )
    .await;
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn a_numeric_string_in_tolerated_failure_count_path_is_a_number() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "ToleratedFailureCountPath": "$.tolerated",
        "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}, "End": true}}});
    let r = run(def.clone(), json!({"items": [1, 2], "tolerated": "2"})).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    let r = run(def, json!({"items": [1, 2], "tolerated": "1"})).await;
    assert_eq!(r.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
}

#[tokio::test]
async fn a_wait_timestamp_with_a_space_instead_of_t_is_a_runtime_error_with_the_value_unquoted() {
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "TimestampPath": "$.at", "End": true}}});
    let r = run(def.clone(), json!({"at": "2016-03-14 01:59:00Z"})).await;
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
    let cause = r.cause.unwrap();
    assert!(
        cause.ends_with("The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: $.at == 2016-03-14 01:59:00Z"),
        "{cause}"
    );
    let r = run(def, json!({"at": "2016-03-14T01:59:00Z"})).await;
    assert_eq!(r.status, Status::Succeeded);
}

#[tokio::test]
async fn a_bracket_key_with_backslash_and_quotes_is_read_literally() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"v.$": "$['Test\\\"\"Name\"']"}, "End": true}}});
    let r = run(def, json!({"Test\\\"\"Name\"": "found"})).await;
    assert_eq!(r.output, Some(json!({"v": "found"})), "{:?}", r.cause);
}

#[tokio::test]
async fn jsonata_map_items_that_are_not_an_array_are_a_query_evaluation_error() {
    let def = jsonata(json!({"M": {"Type": "Map", "Items": "{% $states.input.items %}",
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}));
    let r = run(def.clone(), json!({"items": {"a": 1}})).await;
    assert_eq!(r.error.as_deref(), Some("States.QueryEvaluationError"));
    // It is catchable, unlike States.Runtime.
    let mut caught = def;
    caught["States"]["M"]["Catch"] = json!([{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Ok"}]);
    caught["States"]["M"].as_object_mut().unwrap().remove("End");
    caught["States"]["M"]["Next"] = json!("Ok");
    caught["States"]["Ok"] = json!({"Type": "Succeed"});
    assert_eq!(run(caught, json!({"items": 5})).await.status, Status::Succeeded);
}

#[tokio::test]
async fn expressions_inside_an_items_array_literal_are_evaluated() {
    let def = jsonata(
        json!({"M": {"Type": "Map", "Items": [1, "{% $states.input.n + 1 %}", {"k": "{% $states.input.n %}"}],
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}),
    );
    assert_eq!(run(def, json!({"n": 5})).await.output, Some(json!([1, 6, {"k": 5}])));
}

#[tokio::test]
async fn range_with_one_item_is_that_item_not_an_array() {
    let def =
        jsonata(json!({"P": {"Type": "Pass", "Output": {"one": "{% $range(1, 9, 9) %}", "two": "{% $range(1, 9, 8) %}"}, "End": true}}));
    assert_eq!(run(def, json!({})).await.output, Some(json!({"one": 1, "two": [1, 9]})));
}

#[tokio::test]
async fn a_jsonata_error_logs_evaluation_failed_and_its_cause_names_the_state_and_entered_event() {
    let def = jsonata(json!({"Start": {"Type": "Pass", "Next": "Bad"},
        "Bad": {"Type": "Pass", "Output": {"v": {"w": "{% $states.input.absent %}"}}, "End": true}}));
    let r = run(def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.QueryEvaluationError"));
    let entered = r
        .events
        .iter()
        .find(|e| e.event_type == "PassStateEntered" && e.state_name() == Some("Bad"))
        .unwrap();
    let expected = format!(
        "An error occurred while executing the state 'Bad' (entered at the event id #{}). The JSONata expression '$states.input.absent' specified for the field 'Output/v/w' returned nothing (undefined).",
        entered.id
    );
    assert_eq!(r.cause.as_deref(), Some(expected.as_str()));
    assert_eq!(types(&r)[types(&r).len() - 2..], ["EvaluationFailed", "ExecutionFailed"]);
    let ev = r.events.iter().find(|e| e.event_type == "EvaluationFailed").unwrap().to_json();
    assert_eq!(
        ev["evaluationFailedEventDetails"],
        json!({"error": "States.QueryEvaluationError", "cause": expected, "location": "Output/v/w", "state": "Bad"})
    );
}

#[tokio::test]
async fn a_map_that_fails_to_evaluate_logs_evaluation_failed_before_map_state_failed() {
    let def = jsonata(json!({"M": {"Type": "Map", "Items": "{% $states.input.items %}",
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}));
    let r = run(def, json!({"items": "nope"})).await;
    let t = types(&r);
    assert_eq!(t[t.len() - 3..], ["EvaluationFailed", "MapStateFailed", "ExecutionFailed"]);
    assert!(r
        .cause
        .unwrap()
        .starts_with("An error occurred while executing the state 'M' (entered at the event id #2). Map state input must be an array"));
}

#[test]
fn iterator_and_item_processor_follow_one_rule_for_the_processor_mode() {
    let processor = json!({"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    for field in ["ItemProcessor", "Iterator"] {
        let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", field: processor, "End": true}}});
        assert!(model::parse_value(&def).is_ok(), "{field} INLINE");
    }
}
