//! Nested executions (`arn:aws:states:::states:startExecution`), from the AWS guide "Start a
//! new AWS Step Functions state machine from a running execution".
mod common;
use common::*;
use opsflow_asl::{Engine, Status};
use serde_json::{json, Value};

fn child_def() -> Value {
    json!({"StartAt": "Double", "States": {
        "Double": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, $.n)"}, "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 100, "End": true}}})
}

fn engine() -> Engine {
    Engine::builder()
        .state_machine("Child", machine(child_def()))
        .state_machine(
            "Failing",
            machine(json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Child.Broke", "Cause": "on purpose"}}})),
        )
        .build()
}

fn parent(resource: &str, params: Value) -> Value {
    json!({"StartAt": "Start", "States": {"Start": {"Type": "Task", "Resource": resource, "Parameters": params, "End": true}}})
}

const CHILD_ARN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:Child";

#[tokio::test]
async fn sync_2_waits_for_the_child_and_returns_its_description_with_json_output() {
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": CHILD_ARN, "Name": "double-21", "Input": {"n.$": "$.n"}}),
    );
    let r = run_with(&engine(), def, json!({"n": 21})).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    let out = r.output.unwrap();
    assert_eq!(out["Output"], json!({"n": 42}));
    assert_eq!(out["Input"], json!({"n": 21}));
    assert_eq!(out["Status"], "SUCCEEDED");
    assert_eq!(
        out["ExecutionArn"],
        "arn:aws:states:us-east-1:123456789012:execution:Child:double-21"
    );
    assert_eq!(out["StateMachineArn"], CHILD_ARN);
    // The child ran 100 s on the virtual clock, and the parent waited for it.
    assert_eq!(out["StopDate"].as_i64().unwrap() - out["StartDate"].as_i64().unwrap(), 100_000);
    assert!(r.engine_ms >= 100_000);
    // The child has its own history.
    assert_eq!(r.children.len(), 1);
    let child = &r.children[0];
    assert_eq!(types(&child.result)[0], "ExecutionStarted");
    assert_eq!(*types(&child.result).last().unwrap(), "ExecutionSucceeded");
    assert!(child.result.events.iter().any(|e| e.event_type == "WaitStateEntered"));
}

#[tokio::test]
async fn sync_returns_input_and_output_as_json_text() {
    let def = parent(
        "arn:aws:states:::states:startExecution.sync",
        json!({"StateMachineArn": CHILD_ARN, "Input": {"n": 2}}),
    );
    let out = run_with(&engine(), def, json!({})).await.output.unwrap();
    assert_eq!(out["Output"], json!("{\"n\":4}"));
    assert_eq!(out["Input"], json!("{\"n\":2}"));
}

#[tokio::test]
async fn request_response_returns_the_execution_arn_and_start_date_at_once() {
    let def = parent(
        "arn:aws:states:::states:startExecution",
        json!({"StateMachineArn": "Child", "Name": "bg", "Input": "{\"n\": 1}"}),
    );
    let r = run_with(&engine(), def, json!({})).await;
    let out = r.output.unwrap();
    assert_eq!(out["ExecutionArn"], "arn:aws:states:us-east-1:123456789012:execution:Child:bg");
    assert!(out["StartDate"].is_i64());
    assert_eq!(out.as_object().unwrap().len(), 2);
    // The parent did not wait for the child's 100 s Wait.
    assert!(r.engine_ms < 100_000);
}

#[tokio::test]
async fn a_failed_child_fails_the_sync_task_with_states_task_failed_and_its_description_as_cause() {
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:Failing"}),
    );
    let r = run_with(&engine(), def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.TaskFailed"));
    let cause: Value = serde_json::from_str(r.cause.as_deref().unwrap()).unwrap();
    assert_eq!(
        (cause["Status"].as_str(), cause["Error"].as_str(), cause["Cause"].as_str()),
        (Some("FAILED"), Some("Child.Broke"), Some("on purpose"))
    );
    assert!(cause.get("Output").is_none());
}

#[tokio::test]
async fn an_unknown_state_machine_is_a_catchable_state_machine_does_not_exist() {
    let mut def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:Nope"}),
    );
    def["States"]["Start"]["Catch"] = json!([{"ErrorEquals": ["StepFunctions.StateMachineDoesNotExistException"], "Next": "Caught"}]);
    def["States"]["Start"].as_object_mut().unwrap().remove("End");
    def["States"]["Start"]["Next"] = json!("Caught");
    def["States"]["Caught"] = json!({"Type": "Pass", "End": true});
    let r = run_with(&engine(), def, json!({})).await;
    assert_eq!(r.status, Status::Succeeded);
    let out = r.output.unwrap();
    assert_eq!(out["Error"], "StepFunctions.StateMachineDoesNotExistException");
    assert_eq!(
        out["Cause"],
        "State Machine Does Not Exist: 'arn:aws:states:us-east-1:123456789012:stateMachine:Nope'"
    );
}

#[tokio::test]
async fn a_name_used_twice_is_execution_already_exists() {
    let engine = engine();
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "Child", "Name": "once", "Input": {"n": 1}}),
    );
    assert_eq!(run_with(&engine, def.clone(), json!({})).await.status, Status::Succeeded);
    let r = run_with(&engine, def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("StepFunctions.ExecutionAlreadyExistsException"));
}

#[tokio::test]
async fn the_child_is_associated_with_the_parent_that_passes_its_execution_id() {
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "Child", "Input": {"n": 1, "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id"}}),
    );
    let r = run_with(&engine(), def, json!({})).await;
    assert_eq!(
        r.children[0].started_by.as_deref(),
        Some("arn:aws:states:us-east-1:123456789012:execution:Test:test-exec")
    );
    // Without it, the child stands alone.
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "Child", "Input": {"n": 1}}),
    );
    assert_eq!(run_with(&engine(), def, json!({})).await.children[0].started_by, None);
}

#[tokio::test]
async fn wait_for_task_token_waits_until_the_child_sends_task_success() {
    let answering = json!({"StartAt": "Answer", "States": {"Answer": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sfn:sendTaskSuccess",
        "Parameters": {"TaskToken.$": "$.token", "Output.$": "States.JsonToString($.reply)"}, "End": true}}});
    let engine = Engine::builder().state_machine("Answering", machine(answering)).build();
    let def = parent(
        "arn:aws:states:::states:startExecution.waitForTaskToken",
        json!({"StateMachineArn": "Answering", "Input": {"token.$": "$$.Task.Token", "reply": {"answer": 42}}}),
    );
    let r = run_with(&engine, def, json!({})).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    assert_eq!(r.output, Some(json!({"answer": 42})));
    let t = types(&r);
    assert!(t.contains(&"TaskSubmitted"), "{t:?}");
}

#[tokio::test]
async fn send_task_success_with_an_unknown_token_is_task_does_not_exist() {
    let def = parent(
        "arn:aws:states:::aws-sdk:sfn:sendTaskSuccess",
        json!({"TaskToken": "nope", "Output": "{}"}),
    );
    let r = run_with(&engine(), def, json!({})).await;
    assert_eq!(r.error.as_deref(), Some("Sfn.TaskDoesNotExistException"));
}

#[tokio::test]
async fn task_events_name_the_states_integration_as_aws_does() {
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "Child", "Input": {"n": 1}}),
    );
    let r = run_with(&engine(), def, json!({})).await;
    let scheduled = r.events.iter().find(|e| e.event_type == "TaskScheduled").unwrap();
    assert_eq!(scheduled.detail("resourceType"), Some("states"));
    assert_eq!(scheduled.detail("resource"), Some("startExecution.sync:2"));
}

#[tokio::test]
async fn a_sync_task_logs_task_submitted_with_the_start_response_before_it_ends() {
    let def = parent(
        "arn:aws:states:::states:startExecution.sync",
        json!({"StateMachineArn": "Child", "Name": "logged", "Input": {"n": 1}}),
    );
    let r = run_with(&engine(), def, json!({})).await;
    assert_eq!(
        types(&r),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    let submitted = r.events.iter().find(|e| e.event_type == "TaskSubmitted").unwrap().to_json();
    let output: Value = serde_json::from_str(submitted["taskSubmittedEventDetails"]["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output["ExecutionArn"],
        "arn:aws:states:us-east-1:123456789012:execution:Child:logged"
    );
    // Submitted when the child started; succeeded when it ended, 100 s later on the virtual clock.
    let succeeded = r.events.iter().find(|e| e.event_type == "TaskSucceeded").unwrap();
    let submitted = r.events.iter().find(|e| e.event_type == "TaskSubmitted").unwrap();
    assert_eq!(succeeded.timestamp_ms - submitted.timestamp_ms, 100_000);
    // A failed child is submitted too, then fails.
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "Failing"}),
    );
    let t = types(&run_with(&engine(), def, json!({})).await);
    assert_eq!(t[4..6], ["TaskSubmitted", "TaskFailed"]);
}

#[tokio::test]
async fn a_state_machine_registered_by_its_arn_is_reached_by_that_arn() {
    let arn = "arn:aws:states:eu-west-1:210987654321:stateMachine:Elsewhere";
    let engine = Engine::builder().state_machine(arn, machine(child_def())).build();
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": arn, "Input": {"n": 5}}),
    );
    let r = run_with(&engine, def, json!({})).await;
    let out = r.output.unwrap();
    assert_eq!(out["Output"], json!({"n": 10}));
    assert_eq!(out["StateMachineArn"], arn);
    assert!(out["ExecutionArn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:states:eu-west-1:210987654321:execution:Elsewhere:"));
}

#[tokio::test]
async fn stopping_the_parent_stops_the_child_it_waits_for() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    /// Set when the child's task is dropped (its execution stopped).
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (started, stopped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (s, d) = (started.clone(), stopped.clone());
    let child = json!({"StartAt": "Hang", "States": {"Hang": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:hang", "End": true}}});
    let engine = Engine::builder()
        .state_machine("Hanging", machine(child))
        .lambda("hang", move |_req: opsflow_asl::TaskRequest| {
            let (s, guard) = (s.clone(), SetOnDrop(d.clone()));
            async move {
                s.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
                drop(guard);
                Ok(json!(null))
            }
        })
        .build();
    let def = parent(
        "arn:aws:states:::states:startExecution.sync:2",
        json!({"StateMachineArn": "Hanging"}),
    );
    let running = engine.start(machine(def), json!({}), opsflow_asl::StartOptions::default());
    let wait_for = |flag: Arc<AtomicBool>| async move {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !flag.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok()
    };
    assert!(wait_for(started).await, "the child never started");
    running.handle.stop(Some("Stopped"), None);
    assert_eq!(running.result.await.unwrap().status, Status::Aborted);
    assert!(wait_for(stopped).await, "the child kept running after its parent stopped");
}
