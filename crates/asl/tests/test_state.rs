//! TestState offline, from the Step Functions API reference (TestState, TestStateConfiguration,
//! InspectionData, InspectionErrorDetails).
use opsflow_asl::{Engine, InspectionLevel, StatesError, TaskRequest, TestStateError, TestStateRequest};
use serde_json::{json, Value};

fn machine(states: Value) -> Value {
    let start = states.as_object().unwrap().keys().next().unwrap().clone();
    json!({"StartAt": start, "States": states})
}

fn task_state() -> Value {
    machine(json!({
        "Fetch": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "InputPath": "$.req", "Parameters": {"FunctionName": "fetch", "Payload.$": "$"},
            "ResultSelector": {"size.$": "$.Payload.size"}, "ResultPath": "$.got", "OutputPath": "$.got",
            "Retry": [{"ErrorEquals": ["Throttled"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}],
            "Next": "Done"},
        "Recover": {"Type": "Pass", "End": true},
        "Done": {"Type": "Succeed"}}))
}

fn request(definition: Value, input: Value) -> TestStateRequest {
    TestStateRequest {
        definition,
        input,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_mocked_task_shows_its_input_after_each_processing_step_at_debug() {
    let mut req = request(task_state(), json!({"req": {"id": 7}}));
    req.mock = Some(json!({"result": "{\"Payload\": {\"size\": 42}, \"StatusCode\": 200}"}));
    req.inspection_level = InspectionLevel::Debug;
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!(out.status, "SUCCEEDED");
    assert_eq!(out.output, Some(json!({"size": 42})));
    assert_eq!(out.next_state.as_deref(), Some("Done"));
    let d = &out.inspection_data;
    let field = |k: &str| serde_json::from_str::<Value>(d[k].as_str().unwrap()).unwrap();
    assert_eq!(field("input"), json!({"req": {"id": 7}}));
    assert_eq!(field("afterInputPath"), json!({"id": 7}));
    assert_eq!(field("afterParameters"), json!({"FunctionName": "fetch", "Payload": {"id": 7}}));
    assert_eq!(field("result"), json!({"Payload": {"size": 42}, "StatusCode": 200}));
    assert_eq!(field("afterResultSelector"), json!({"size": 42}));
    assert_eq!(field("afterResultPath"), json!({"req": {"id": 7}, "got": {"size": 42}}));
    // The API's shape: output as JSON text.
    let api = out.to_json();
    assert_eq!(api["output"], json!("{\"size\":42}"));
    assert_eq!(api["nextState"], "Done");
}

#[tokio::test]
async fn info_level_shows_only_the_output() {
    let mut req = request(task_state(), json!({"req": {}}));
    req.mock = Some(json!({"result": "{\"Payload\": {\"size\": 1}}"}));
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!(out.output, Some(json!({"size": 1})));
    assert!(out.inspection_data.is_empty(), "{:?}", out.inspection_data);
}

#[tokio::test]
async fn a_mocked_error_with_retries_left_is_retriable_with_the_backoff() {
    let mut req = request(task_state(), json!({"req": {}}));
    req.mock = Some(json!({"errorOutput": {"error": "Throttled", "cause": "slow down"}}));
    req.state_configuration = Some(json!({"retrierRetryCount": 1}));
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!(
        (out.status, out.error.as_deref(), out.cause.as_deref()),
        ("RETRIABLE", Some("Throttled"), Some("slow down"))
    );
    // IntervalSeconds 2 × BackoffRate 3 ^ 1 retry made.
    assert_eq!(
        out.inspection_data["errorDetails"],
        json!({"retryIndex": 0, "retryBackoffIntervalSeconds": 6})
    );
}

#[tokio::test]
async fn an_error_whose_retries_are_spent_is_caught_by_the_matching_catcher() {
    let mut req = request(task_state(), json!({"req": {"id": 1}}));
    req.mock = Some(json!({"errorOutput": {"error": "Throttled", "cause": "slow down"}}));
    req.state_configuration = Some(json!({"retrierRetryCount": 2}));
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!(out.status, "CAUGHT_ERROR");
    assert_eq!(out.next_state.as_deref(), Some("Recover"));
    assert_eq!(
        out.output,
        Some(json!({"req": {"id": 1}, "error": {"Error": "Throttled", "Cause": "slow down"}}))
    );
    assert_eq!(out.inspection_data["errorDetails"], json!({"catchIndex": 0}));
}

#[tokio::test]
async fn an_error_nothing_handles_fails_the_state() {
    let def = machine(
        json!({"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"}, "End": true}}),
    );
    let mut req = request(def, json!({}));
    req.mock = Some(json!({"errorOutput": {"error": "Boom", "cause": "why"}}));
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!((out.status, out.error.as_deref(), out.next_state), ("FAILED", Some("Boom"), None));
}

#[tokio::test]
async fn without_a_mock_the_task_runs_the_engines_handler() {
    let engine = Engine::builder()
        .lambda("fetch", |req: TaskRequest| async move {
            Ok(json!({"size": req.payload["id"].as_i64().unwrap() * 10}))
        })
        .build();
    let out = engine.test_state(request(task_state(), json!({"req": {"id": 3}}))).await.unwrap();
    assert_eq!(out.output, Some(json!({"size": 30})));
    let failing = Engine::builder()
        .lambda(
            "fetch",
            |_req: TaskRequest| async move { Err(StatesError::new("Throttled", "busy")) },
        )
        .build();
    assert_eq!(
        failing.test_state(request(task_state(), json!({"req": {}}))).await.unwrap().status,
        "RETRIABLE"
    );
}

#[tokio::test]
async fn a_choice_names_the_state_it_chose() {
    let def = machine(json!({
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}], "Default": "Small"},
        "Big": {"Type": "Succeed"}, "Small": {"Type": "Succeed"}}));
    let engine = Engine::builder().build();
    let out = engine.test_state(request(def.clone(), json!({"n": 11}))).await.unwrap();
    assert_eq!(out.next_state.as_deref(), Some("Big"));
    let out = engine.test_state(request(def, json!({"n": 1}))).await.unwrap();
    assert_eq!(out.next_state.as_deref(), Some("Small"));
}

#[tokio::test]
async fn a_single_state_definition_is_tested_on_its_own() {
    let def = json!({"Type": "Pass", "Parameters": {"name.$": "$$.Execution.Name", "who.$": "$user"}, "Next": "Elsewhere"});
    let mut req = request(def, json!({}));
    req.context = Some(json!({"Execution": {"Name": "exec-9"}}));
    req.variables = Some(json!({"user": "ana"}));
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!(out.output, Some(json!({"name": "exec-9", "who": "ana"})));
    assert_eq!(out.next_state.as_deref(), Some("Elsewhere"));
}

#[tokio::test]
async fn map_and_parallel_need_a_mock_and_failed_iterations_count_against_the_tolerance() {
    let def = machine(
        json!({"M": {"Type": "Map", "ItemsPath": "$.items", "ToleratedFailureCount": 1, "MaxConcurrency": 5,
        "ItemSelector": {"v.$": "$$.Map.Item.Value"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}),
    );
    let engine = Engine::builder().build();
    let err = engine
        .test_state(request(def.clone(), json!({"items": [1, 2, 3]})))
        .await
        .unwrap_err();
    assert!(matches!(err, TestStateError::Validation(_)), "{err}");
    // The mocked result of a Map is an array.
    let mut not_array = request(def.clone(), json!({"items": [1]}));
    not_array.mock = Some(json!({"result": "{\"a\": 1}"}));
    assert!(matches!(
        engine.test_state(not_array.clone()).await.unwrap_err(),
        TestStateError::Validation(_)
    ));
    not_array.mock = Some(json!({"result": "{\"a\": 1}", "fieldValidationMode": "NONE"}));
    assert_eq!(engine.test_state(not_array).await.unwrap().status, "SUCCEEDED");
    let mut req = request(def.clone(), json!({"items": [1, 2, 3]}));
    req.mock = Some(json!({"result": "[1, 2, 3]"}));
    req.inspection_level = InspectionLevel::Debug;
    req.state_configuration = Some(json!({"mapIterationFailureCount": 1}));
    let out = engine.test_state(req.clone()).await.unwrap();
    assert_eq!(out.status, "SUCCEEDED");
    assert_eq!(out.inspection_data["afterItemSelector"], json!("[{\"v\":1},{\"v\":2},{\"v\":3}]"));
    assert_eq!(out.inspection_data["maxConcurrency"], json!(5));
    assert_eq!(out.inspection_data["toleratedFailureCount"], json!(1));
    req.state_configuration = Some(json!({"mapIterationFailureCount": 2}));
    let out = engine.test_state(req).await.unwrap();
    assert_eq!(
        (out.status, out.error.as_deref()),
        ("FAILED", Some("States.ExceedToleratedFailureThreshold"))
    );
}

#[tokio::test]
async fn a_jsonata_task_shows_its_arguments_and_outputs_from_states_result() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Arguments": {"FunctionName": "f", "Payload": {"n": "{% $states.input.n + 1 %}"}},
        "Output": {"doubled": "{% $states.result.Payload * 2 %}"}, "Assign": {"last": "{% $states.result.Payload %}"}, "End": true}}});
    let mut req = request(def, json!({"n": 1}));
    req.mock = Some(json!({"result": "{\"Payload\": 5}"}));
    req.inspection_level = InspectionLevel::Trace;
    let out = Engine::builder().build().test_state(req).await.unwrap();
    assert_eq!(out.output, Some(json!({"doubled": 10})));
    assert_eq!(
        out.inspection_data["afterArguments"],
        json!("{\"FunctionName\":\"f\",\"Payload\":{\"n\":2}}")
    );
    assert_eq!(out.inspection_data["variables"], json!("{\"last\":5}"));
}

#[tokio::test]
async fn an_unknown_state_name_or_an_invalid_definition_is_refused() {
    let engine = Engine::builder().build();
    let mut req = request(task_state(), json!({}));
    req.state_name = Some("Nope".into());
    assert!(matches!(engine.test_state(req).await.unwrap_err(), TestStateError::Validation(_)));
    let bad = json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}});
    assert!(matches!(
        engine.test_state(request(bad, json!({}))).await.unwrap_err(),
        TestStateError::InvalidDefinition(_)
    ));
}

#[tokio::test]
async fn a_distributed_map_shows_its_batches_with_the_batch_input() {
    let def = machine(json!({"M": {"Type": "Map", "ItemsPath": "$.items",
        "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
        "End": true}}));
    let mut req = request(def, json!({"job": "j", "items": [1, 2, 3]}));
    req.mock = Some(json!({"result": "[]"}));
    req.inspection_level = InspectionLevel::Debug;
    let out = Engine::builder().build().test_state(req).await.unwrap();
    let batches: Value = serde_json::from_str(out.inspection_data["afterItemBatcher"].as_str().unwrap()).unwrap();
    assert_eq!(
        batches,
        json!([{"BatchInput": {"job": "j"}, "Items": [1, 2]}, {"BatchInput": {"job": "j"}, "Items": [3]}])
    );
}

#[tokio::test]
async fn a_query_evaluation_error_is_reported_without_an_execution_prefix() {
    let def = json!({"QueryLanguage": "JSONata", "Type": "Pass", "Output": "{% $states.input.absent %}", "End": true});
    let out = Engine::builder().build().test_state(request(def, json!({}))).await.unwrap();
    assert_eq!((out.status, out.error.as_deref()), ("FAILED", Some("States.QueryEvaluationError")));
    assert_eq!(
        out.cause.as_deref(),
        Some("The JSONata expression '$states.input.absent' specified for the field 'Output' returned nothing (undefined).")
    );
}
