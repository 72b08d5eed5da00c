//! Task states: Lambda resources, the lambda:invoke integration, callbacks with task tokens,
//! TimeoutSeconds / HeartbeatSeconds, mocks, history, execution time limits and StopExecution.
mod common;
use std::time::Duration;

use common::*;
use opsflow_asl::{Engine, MockCase, StartOptions, StatesError, Status, TaskRequest};
use serde_json::{json, Value};

fn echo_engine() -> Engine {
    Engine::builder()
        .lambda("echo", |req: TaskRequest| async move { Ok(json!({"echo": req.payload})) })
        .build()
}

#[tokio::test]
async fn lambda_invoke_returns_the_invoke_api_response_shape() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:echo:live", "Payload": {"x.$": "$.x"}},
        "ResultSelector": {"body.$": "$.Payload", "code.$": "$.StatusCode"}, "End": true}}});
    let r = run_with(&echo_engine(), def, json!({"x": 1})).await;
    assert_eq!(r.output, Some(json!({"body": {"echo": {"x": 1}}, "code": 200})));
    let scheduled = r.events.iter().find(|e| e.event_type == "TaskScheduled").unwrap().to_json();
    assert_eq!(scheduled["taskScheduledEventDetails"]["resourceType"], "lambda");
    assert_eq!(scheduled["taskScheduledEventDetails"]["resource"], "invoke");
    let params: Value = serde_json::from_str(scheduled["taskScheduledEventDetails"]["parameters"].as_str().unwrap()).unwrap();
    assert_eq!(params["Payload"], json!({"x": 1}));
}

#[tokio::test]
async fn a_function_arn_resource_returns_the_output_and_logs_lambda_events() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:echo", "End": true}}});
    let r = run_with(&echo_engine(), def, json!({"x": 1})).await;
    assert_eq!(r.output, Some(json!({"echo": {"x": 1}})));
    assert_eq!(
        types(&r),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    // Ids are consecutive and each event points at the one before it, except the first
    // state's, which points at 0 as in AWS histories.
    for (i, e) in r.events.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert_eq!(e.previous_event_id, if i == 1 { 0 } else { i as u64 });
    }
    let entered = r.events[1].to_json();
    assert_eq!(entered["stateEnteredEventDetails"]["input"], "{\"x\":1}");
}

#[tokio::test]
async fn task_timeout_is_states_timeout_and_catchable() {
    let engine = Engine::builder()
        .lambda("slow", |_req| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(json!(1))
        })
        .build();
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:slow", "TimeoutSeconds": 1, "End": true,
              "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]},
        "TimedOut": {"Type": "Pass", "End": true}}});
    let started = std::time::Instant::now();
    let r = run_with(&engine, def, json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output.as_ref().unwrap()["Error"], "States.Timeout");
    assert!(types(&r).contains(&"LambdaFunctionTimedOut"));
}

fn callback_def(extra: Value) -> Value {
    let mut t = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token"}}, "End": true});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    json!({"StartAt": "T", "States": {"T": t}})
}

/// A "notify" Lambda that hands each token to the test.
fn token_engine() -> (Engine, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine::builder()
        .lambda("notify", move |req: TaskRequest| {
            let tx = tx.clone();
            async move {
                assert_eq!(req.task_token.as_deref(), req.payload["token"].as_str());
                tx.send(req.payload["token"].as_str().unwrap().to_string()).unwrap();
                Ok(json!("ignored"))
            }
        })
        .build();
    (engine, rx)
}

#[tokio::test]
async fn wait_for_task_token_resumes_on_send_task_success() {
    let (engine, mut tokens) = token_engine();
    let mut running = engine.start(machine(callback_def(json!({}))), json!({}), StartOptions::default());
    let token = tokens.recv().await.unwrap();
    assert_eq!(running.handle.waiting_tokens(), vec![token.clone()]);
    running.handle.send_task_success(&token, json!({"answer": 42})).unwrap();
    let r = running.result.await.unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output, Some(json!({"answer": 42})));
    // The token is spent.
    assert_eq!(
        running.handle.send_task_success(&token, json!({})),
        Err(opsflow_asl::CallbackError::TaskDoesNotExist)
    );
    // The live stream saw the same events as the history.
    let mut streamed = Vec::new();
    while let Ok(e) = running.events.try_recv() {
        streamed.push(e.event_type);
    }
    assert_eq!(streamed, types(&r));
    assert!(streamed.contains(&"TaskSubmitted"));
}

#[tokio::test]
async fn wait_for_task_token_fails_on_send_task_failure() {
    let (engine, mut tokens) = token_engine();
    let running = engine.start(machine(callback_def(json!({}))), json!({}), StartOptions::default());
    let token = tokens.recv().await.unwrap();
    running.handle.send_task_failure(&token, "Rejected", "no").unwrap();
    let r = running.result.await.unwrap();
    assert_eq!(
        (r.status, r.error.as_deref(), r.cause.as_deref()),
        (Status::Failed, Some("Rejected"), Some("no"))
    );
}

#[tokio::test]
async fn heartbeats_keep_a_callback_alive_and_their_absence_times_it_out() {
    let (engine, mut tokens) = token_engine();
    let running = engine.start(
        machine(callback_def(json!({"HeartbeatSeconds": 1, "TimeoutSeconds": 10}))),
        json!({}),
        StartOptions::default(),
    );
    let token = tokens.recv().await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        running.handle.send_task_heartbeat(&token).unwrap();
    }
    running.handle.send_task_success(&token, json!("done")).unwrap();
    assert_eq!(running.result.await.unwrap().status, Status::Succeeded);

    let (engine, mut tokens) = token_engine();
    let running = engine.start(
        machine(callback_def(json!({"HeartbeatSeconds": 1}))),
        json!({}),
        StartOptions::default(),
    );
    let _token = tokens.recv().await.unwrap();
    let r = running.result.await.unwrap();
    // AWS reports a missed heartbeat as States.Timeout with no cause (recorded on AWS).
    assert_eq!((r.error.as_deref(), r.cause.as_deref()), (Some("States.Timeout"), None));
    assert!(types(&r).contains(&"TaskTimedOut"));
}

#[tokio::test]
async fn stop_execution_aborts_a_waiting_execution() {
    let (engine, mut tokens) = token_engine();
    let running = engine.start(machine(callback_def(json!({}))), json!({}), StartOptions::default());
    let _token = tokens.recv().await.unwrap();
    running.handle.stop(Some("Operator"), Some("stopped by hand"));
    let r = running.result.await.unwrap();
    assert_eq!((r.status, r.error.as_deref()), (Status::Aborted, Some("Operator")));
    assert_eq!(types(&r).last(), Some(&"ExecutionAborted"));
}

#[tokio::test]
async fn execution_timeout_ends_a_long_wait_as_timed_out_in_virtual_time() {
    let def = json!({"TimeoutSeconds": 60, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    let r = run(def, json!({})).await;
    assert_eq!(r.status, Status::TimedOut);
    assert_eq!(r.error.as_deref(), Some("States.Timeout"));
    assert_eq!(r.engine_ms, 60_000);
}

#[tokio::test]
async fn waits_advance_the_virtual_clock_and_history_timestamps() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Wait", "Seconds": 90, "Next": "B"},
        "B": {"Type": "Wait", "SecondsPath": "$.s", "Next": "C"},
        "C": {"Type": "Wait", "TimestampPath": "$.t", "End": true}}});
    let r = run(def, json!({"s": 10, "t": "2000-01-01T00:00:00Z"})).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.engine_ms, 100_000);
    let first = r.events.first().unwrap().timestamp_ms;
    let last = r.events.last().unwrap().timestamp_ms;
    assert_eq!(last - first, 100_000);
    // A bad SecondsPath value is a runtime error.
    let def = json!({"StartAt": "B", "States": {"B": {"Type": "Wait", "SecondsPath": "$.s", "End": true}}});
    assert_eq!(run(def.clone(), json!({"s": -1})).await.error.as_deref(), Some("States.Runtime"));
    assert_eq!(run(def, json!({"s": "10"})).await.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn real_clock_waits_in_scaled_real_time() {
    let engine = Engine::builder().clock(opsflow_asl::Clock::Real { scale: 100.0 }).build();
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 20, "End": true}}});
    let t = std::time::Instant::now();
    let r = run_with(&engine, def, json!({})).await;
    let elapsed = t.elapsed();
    assert_eq!(r.status, Status::Succeeded);
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

const MOCKS: &str = r#"{
  "StateMachines": {"Test": {"TestCases": {
      "HappyPath": {"T": "Ok"},
      "RetryPath": {"T": "FailTwiceThenOk"}}}},
  "MockedResponses": {
    "Ok": {"0": {"Return": {"StatusCode": 200, "Payload": {"mocked": true}}}},
    "FailTwiceThenOk": {
      "0-1": {"Throw": {"Error": "Lambda.ServiceException", "Cause": "flaky"}},
      "2": {"Return": {"Payload": "third time"}}}}
}"#;

#[tokio::test]
async fn mocked_responses_replace_handlers_by_invocation_index() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "nobody"}, "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 3}],
        "OutputPath": "$.Payload", "End": true}}});
    let engine = Engine::builder()
        .mock(MockCase::parse(MOCKS, Some("Test"), "HappyPath").unwrap())
        .build();
    assert_eq!(
        run_with(&engine, def.clone(), json!({})).await.output,
        Some(json!({"mocked": true}))
    );
    let engine = Engine::builder()
        .mock(MockCase::parse(MOCKS, Some("Test"), "RetryPath").unwrap())
        .build();
    let r = run_with(&engine, def, json!({})).await;
    assert_eq!(r.output, Some(json!("third time")));
    assert_eq!(r.task_invocations, 3);
    assert!(MockCase::parse(MOCKS, Some("Test"), "Nope")
        .unwrap_err()
        .to_string()
        .contains("has no test case named 'Nope'"));
}

#[tokio::test]
async fn other_resources_are_served_by_registered_handlers() {
    let engine = Engine::builder()
        .resource("arn:aws:states:::aws-sdk:ec2:*", |req: TaskRequest| async move {
            if req.resource.ends_with("describeInstances") {
                Ok(json!({"Reservations": [], "asked": req.payload}))
            } else {
                Err(StatesError::new("Ec2.UnsupportedOperation", req.resource))
            }
        })
        .build();
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:ec2:describeInstances", "Parameters": {"InstanceIds": ["i-1"]}, "End": true}}});
    let r = run_with(&engine, def, json!({})).await;
    assert_eq!(r.output, Some(json!({"Reservations": [], "asked": {"InstanceIds": ["i-1"]}})));
}

#[tokio::test]
async fn a_handler_waiting_on_the_virtual_clock_takes_that_long_on_the_engine_clock() {
    let engine = Engine::builder()
        .lambda("watch", |req: TaskRequest| async move {
            let start = req.clock.now_ms();
            assert_eq!(start, req.now_ms);
            for _ in 0..3 {
                req.clock.sleep(30_000).await;
            }
            Ok(json!({"waited_ms": req.clock.now_ms() - start}))
        })
        .build();
    let task = |timeout: u64| {
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:watch",
            "TimeoutSeconds": timeout, "End": true}}})
    };
    let started = std::time::Instant::now();
    let r = run_with(&engine, task(120), json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(1), "virtual waits take no real time");
    assert_eq!(r.output, Some(json!({"waited_ms": 90_000})));
    assert_eq!(r.engine_ms, 90_000);
    // Past TimeoutSeconds the task times out, at the time limit.
    let r = run_with(&engine, task(60), json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.Timeout"));
    assert_eq!(r.engine_ms, 60_000);
}
