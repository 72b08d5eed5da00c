//! Input and output processing, as the AWS docs "Processing input and output in Step
//! Functions" describe: InputPath → Parameters → (task) → ResultSelector → ResultPath → OutputPath.
mod common;
use common::*;
use opsflow_asl::Status;
use serde_json::json;

fn pass(state: serde_json::Value) -> serde_json::Value {
    let mut s = state;
    s["Type"] = json!("Pass");
    s["End"] = json!(true);
    json!({"StartAt": "P", "States": {"P": s}})
}

#[tokio::test]
async fn pass_without_fields_passes_its_input_through_even_when_falsy() {
    for input in [json!(0), json!(false), json!(""), json!(null), json!([]), json!({"a": 1})] {
        let r = run(pass(json!({})), input.clone()).await;
        assert_eq!(r.status, Status::Succeeded);
        assert_eq!(r.output, Some(input));
    }
}

#[tokio::test]
async fn input_path_selects_and_null_discards() {
    let r = run(pass(json!({"InputPath": "$.a"})), json!({"a": {"b": 0}})).await;
    assert_eq!(r.output, Some(json!({"b": 0})));
    let r = run(pass(json!({"InputPath": null})), json!({"a": 1})).await;
    assert_eq!(r.output, Some(json!({})));
    // A falsy selected value is still a value.
    let r = run(pass(json!({"InputPath": "$.a"})), json!({"a": 0})).await;
    assert_eq!(r.output, Some(json!(0)));
}

#[tokio::test]
async fn missing_input_path_fails_with_states_runtime() {
    let r = run(pass(json!({"InputPath": "$.missing"})), json!({"a": 1})).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
    assert!(r.cause.unwrap().contains("$.missing"));
}

#[tokio::test]
async fn output_path_null_gives_an_empty_object() {
    let r = run(pass(json!({"OutputPath": null})), json!({"a": 1})).await;
    assert_eq!(r.output, Some(json!({})));
    let r = run(pass(json!({"OutputPath": "$.a"})), json!({"a": [1]})).await;
    assert_eq!(r.output, Some(json!([1])));
}

#[tokio::test]
async fn result_path_merges_into_the_raw_input_creating_parents() {
    let r = run(
        pass(json!({"Result": {"x": 1}, "ResultPath": "$.deep.er.result"})),
        json!({"keep": true}),
    )
    .await;
    assert_eq!(r.output, Some(json!({"keep": true, "deep": {"er": {"result": {"x": 1}}}})));
    // ResultPath null keeps the raw input (not the InputPath-filtered one).
    let r = run(
        pass(json!({"InputPath": "$.a", "Result": 5, "ResultPath": null})),
        json!({"a": 1, "b": 2}),
    )
    .await;
    assert_eq!(r.output, Some(json!({"a": 1, "b": 2})));
    // ResultPath "$.x" on the raw input, even though InputPath narrowed the effective input.
    let r = run(pass(json!({"InputPath": "$.a", "ResultPath": "$.copy"})), json!({"a": 1})).await;
    assert_eq!(r.output, Some(json!({"a": 1, "copy": 1})));
}

#[tokio::test]
async fn result_path_into_a_scalar_input_fails_with_states_runtime() {
    let r = run(pass(json!({"Result": 1, "ResultPath": "$.x"})), json!("text")).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        r.cause.as_deref(),
        Some(
            r#"An error occurred while executing the state 'P' (entered at the event id #2). Unable to apply ReferencePath $.x to input "\"text\"""#
        )
    );
}

#[tokio::test]
async fn parameters_build_the_effective_input_from_input_and_context() {
    let r = run(
        pass(json!({"Parameters": {"fixed": "v", "from.$": "$.a", "nested": {"exec.$": "$$.Execution.Name", "list": [{"i.$": "$.a"}]}, "state.$": "$$.State.Name", "in.$": "$$.Execution.Input.a"}})),
        json!({"a": 7}),
    )
    .await;
    assert_eq!(
        r.output,
        Some(json!({"fixed": "v", "from": 7, "nested": {"exec": "test-exec", "list": [{"i": 7}]}, "state": "P", "in": 7}))
    );
}

#[tokio::test]
async fn pass_result_wins_over_parameters_and_input() {
    let r = run(pass(json!({"Result": {"r": 1}, "Parameters": {"p": 1}})), json!({"i": 1})).await;
    assert_eq!(r.output, Some(json!({"r": 1})));
}

#[tokio::test]
async fn assign_sets_variables_read_by_later_states() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"n": 1, "copy.$": "$.v", "ctx.$": "$$.State.Name"}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"n.$": "$n", "copy.$": "$copy", "ctx.$": "$ctx"}, "End": true}}});
    let r = run(def, json!({"v": "x"})).await;
    assert_eq!(r.output, Some(json!({"n": 1, "copy": "x", "ctx": "A"})));
}

#[tokio::test]
async fn an_undefined_variable_fails_the_execution() {
    let def = json!({"StartAt": "B", "States": {"B": {"Type": "Pass", "Parameters": {"n.$": "$nope"}, "End": true}}});
    let r = run(def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
}

/// A task result over 256 KiB fails the task with States.DataLimitExceeded, which a States.ALL
/// catcher catches (recorded on AWS, although the docs call the error terminal).
#[tokio::test]
async fn a_result_larger_than_256_kib_is_data_limit_exceeded() {
    let big = "x".repeat(300 * 1024);
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "big"}, "End": true,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Succeed"}}});
    let engine = opsflow_asl::Engine::builder()
        .lambda("big", move |_req| {
            let big = big.clone();
            async move { Ok(json!(big)) }
        })
        .build();
    let r = run_with(&engine, def.clone(), json!({})).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output.as_ref().unwrap()["Error"], "States.DataLimitExceeded");
    assert!(
        types(&r).contains(&"TaskFailed") && !types(&r).contains(&"TaskSucceeded"),
        "{:?}",
        types(&r)
    );
    let mut uncaught = def;
    uncaught["States"]["T"].as_object_mut().unwrap().remove("Catch");
    uncaught["States"].as_object_mut().unwrap().remove("Caught");
    let r = run_with(&engine, uncaught, json!({})).await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Failed, Some("States.DataLimitExceeded")));
    assert_eq!(
        r.cause.as_deref(),
        Some("The state/task 'lambda' returned a result with a size exceeding the maximum number of bytes service limit.")
    );
}
