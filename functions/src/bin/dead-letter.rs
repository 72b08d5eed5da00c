//! The dead-letter handler: events whose handler failed for good (the request function's, the
//! safety net's) reach it from SetupDeadLetterQueue, and the CloudFormation request they carry is
//! answered FAILED once, so no stack waits for an hour.
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use opsflow_aws::{AwsConfig, HttpResponseSink, SystemClock};
use opsflow_core::ports::Clock;
use opsflow_core::provision::request::dead_letter;
use opsflow_core::CoreError;
use opsflow_functions::{init_logging, settings_from_env, FnError};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let settings = settings_from_env().map_err(FnError)?;
    let aws = AwsConfig::from_env().await;
    let (sink, store) = (HttpResponseSink::build().map_err(FnError)?, aws.setup_store().map_err(FnError)?);
    let (sink, store, settings) = (&sink, &store, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let mut answered = vec![];
        for record in event.payload.records {
            let body: Value = serde_json::from_str(record.body.as_deref().unwrap_or("null"))
                .map_err(|e| FnError(CoreError::invalid("body", format!("is not JSON: {e}"))))?;
            let response = dead_letter(sink, store, settings, &body, SystemClock.now_ms() / 1000)
                .await
                .map_err(FnError)?;
            if let Some(r) = &response {
                tracing::warn!(request_id = %r.request_id, status = ?r.status, "a dead letter was answered");
            }
            answered.push(response.map(|r| r.request_id));
        }
        Ok::<Value, FnError>(json!({"answered": answered}))
    }))
    .await
}
