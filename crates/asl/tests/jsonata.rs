//! The JSONata query language, from the AWS docs "Transforming data with JSONata in Step
//! Functions" and "Passing data between states with variables".
mod common;
use common::*;
use opsflow_asl::{model, Engine, StatesError, Status, TaskRequest};
use serde_json::json;

fn jsonata(states: serde_json::Value) -> serde_json::Value {
    json!({"QueryLanguage": "JSONata", "StartAt": states.as_object().unwrap().keys().next().unwrap(), "States": states})
}

#[tokio::test]
async fn pass_output_reads_states_input_and_context() {
    let def = jsonata(
        json!({"P": {"Type": "Pass", "Output": {"sum": "{% $states.input.a + $states.input.b %}", "state": "{% $states.context.State.Name %}", "exec": "{% $states.context.Execution.Input.a %}", "lit": "x"}, "End": true}}),
    );
    let r = run(def, json!({"a": 1, "b": 2})).await;
    assert_eq!(r.output, Some(json!({"sum": 3, "state": "P", "exec": 1, "lit": "x"})));
    // Without Output, a Pass state passes its input through.
    let def = jsonata(json!({"P": {"Type": "Pass", "End": true}}));
    assert_eq!(run(def, json!(0)).await.output, Some(json!(0)));
}

#[tokio::test]
async fn task_arguments_result_output_and_assign() {
    let engine = Engine::builder()
        .lambda("double", |req: TaskRequest| async move {
            Ok(json!({"n": req.payload["n"].as_i64().unwrap() * 2}))
        })
        .build();
    let def = jsonata(json!({
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Arguments": {"FunctionName": "double", "Payload": {"n": "{% $states.input.value %}"}},
              "Assign": {"doubled": "{% $states.result.Payload.n %}"},
              "Output": "{% $states.result.Payload %}", "Next": "Use"},
        "Use": {"Type": "Pass", "Output": {"fromVar": "{% $doubled %}", "in": "{% $states.input %}"}, "End": true}}));
    let r = run_with(&engine, def, json!({"value": 21})).await;
    assert_eq!(r.output, Some(json!({"fromVar": 42, "in": {"n": 42}})));
    // Without Output, a Task's output is its result.
    let def = jsonata(json!({"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:double", "End": true}}));
    assert_eq!(run_with(&engine, def, json!({"n": 2})).await.output, Some(json!({"n": 4})));
}

#[tokio::test]
async fn choice_conditions_route_and_non_booleans_fail() {
    let def = jsonata(json!({
        "C": {"Type": "Choice", "Choices": [{"Condition": "{% $states.input.n > 10 %}", "Next": "Big", "Output": {"size": "big"}}], "Default": "Small"},
        "Big": {"Type": "Succeed"},
        "Small": {"Type": "Pass", "Output": "small", "End": true}}));
    assert_eq!(run(def.clone(), json!({"n": 11})).await.output, Some(json!({"size": "big"})));
    assert_eq!(run(def, json!({"n": 1})).await.output, Some(json!("small")));
    let def = jsonata(
        json!({"C": {"Type": "Choice", "Choices": [{"Condition": "{% $states.input.n %}", "Next": "D"}], "Default": "D"}, "D": {"Type": "Succeed"}}),
    );
    let r = run(def, json!({"n": 1})).await;
    assert_eq!(
        (r.status, r.error.as_deref()),
        (Status::Failed, Some("States.QueryEvaluationError"))
    );
}

#[tokio::test]
async fn map_items_and_item_selector() {
    let def = jsonata(json!({"M": {"Type": "Map", "Items": "{% $states.input.xs %}",
        "ItemSelector": {"v": "{% $states.context.Map.Item.Value %}", "i": "{% $states.context.Map.Item.Index %}"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "Output": "{% $states.input.v * 10 + $states.input.i %}", "End": true}}},
        "Output": {"all": "{% $states.result %}", "total": "{% $sum($states.result) %}"}, "End": true}}));
    let r = run(def, json!({"xs": [1, 2, 3]})).await;
    assert_eq!(r.output, Some(json!({"all": [10, 21, 32], "total": 63})));
}

#[tokio::test]
async fn wait_seconds_from_an_expression_advances_the_clock() {
    let def = jsonata(json!({"W": {"Type": "Wait", "Seconds": "{% $states.input.delay * 2 %}", "End": true}}));
    let r = run(def, json!({"delay": 30})).await;
    assert_eq!(r.engine_ms, 60_000);
}

#[tokio::test]
async fn catch_output_sees_the_error_output() {
    let engine = Engine::builder()
        .lambda("boom", |_req: TaskRequest| async { Err(StatesError::new("Boom", "bad")) })
        .build();
    let def = jsonata(json!({
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:boom", "End": true,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Output": {"err": "{% $states.errorOutput.Error %}", "was": "{% $states.input %}"}, "Assign": {"failed": true}, "Next": "H"}]},
        "H": {"Type": "Pass", "Output": {"o": "{% $states.input %}", "f": "{% $failed %}"}, "End": true}}));
    let r = run_with(&engine, def, json!({"k": 1})).await;
    assert_eq!(r.output, Some(json!({"o": {"err": "Boom", "was": {"k": 1}}, "f": true})));
}

#[tokio::test]
async fn an_undefined_result_is_a_query_evaluation_error_that_can_be_caught() {
    let def = jsonata(json!({"P": {"Type": "Pass", "Output": "{% $states.input.nope %}", "End": true}}));
    let r = run(def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.QueryEvaluationError"));
    assert!(r.cause.unwrap().contains("returned nothing (undefined)"));
}

#[tokio::test]
async fn a_jsonata_state_inside_a_jsonpath_machine() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"x.$": "$.v"}, "Next": "B"},
        "B": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input.x + 1 %}", "End": true}}});
    assert_eq!(run(def, json!({"v": 1})).await.output, Some(json!(2)));
}

#[tokio::test]
async fn fail_error_and_cause_from_expressions() {
    let def = jsonata(json!({"F": {"Type": "Fail", "Error": "{% 'E' & $states.input.code %}", "Cause": "{% $states.input.why %}"}}));
    let r = run(def, json!({"code": 42, "why": "because"})).await;
    assert_eq!((r.error.as_deref(), r.cause.as_deref()), (Some("E42"), Some("because")));
}

#[test]
fn validation_separates_the_two_languages() {
    let errs = |d: serde_json::Value| {
        model::parse_value(&d)
            .err()
            .map(|e| e.iter().map(|x| x.to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let e = errs(jsonata(json!({"P": {"Type": "Pass", "Parameters": {"a": 1}, "End": true}})));
    assert_eq!(
        e,
        vec!["State 'P': field 'Parameters': this JSONPath field is not supported in a JSONata Pass state"]
    );
    let e = errs(jsonata(json!({"P": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": true}})));
    assert!(
        e[0].contains("cannot be used in a state machine whose QueryLanguage is JSONata"),
        "{e:?}"
    );
    let e = errs(json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Output": 1, "End": true}}}));
    assert_eq!(
        e,
        vec!["State 'P': field 'Output': this JSONata field is not supported in a JSONPath Pass state"]
    );
    let e = errs(jsonata(json!({"P": {"Type": "Pass", "Output": "{% 1 + %}", "End": true}})));
    assert!(e[0].starts_with("State 'P': field 'Output': "), "{e:?}");
    let e = errs(jsonata(
        json!({"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "D"}]}, "D": {"Type": "Succeed"}}),
    ));
    assert!(e.iter().any(|m| m.contains("Condition")), "{e:?}");
}
