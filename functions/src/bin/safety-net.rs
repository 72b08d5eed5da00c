//! The safety net: on an execution that ended FAILED, TIMED_OUT or ABORTED (an EventBridge
//! "Step Functions Execution Status Change" event), answers CloudFormation FAILED unless an
//! answer step already did.
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use opsflow_aws::{AwsConfig, HttpResponseSink, SfnWorkflow, SystemClock};
use opsflow_core::ports::Clock;
use opsflow_core::provision::request::safety_net;
use opsflow_core::{CfnStatus, CoreError};
use opsflow_functions::{init_logging, settings_from_env, FnError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The event's `detail` (the fields used).
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionStatusChange {
    execution_arn: String,
    state_machine_arn: String,
    status: String,
    /// The execution input as JSON text: the CloudFormation request.
    input: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let settings = settings_from_env().map_err(FnError)?;
    let aws = AwsConfig::from_env().await;
    let (sfn, sink) = (aws.sfn_client(), HttpResponseSink::build().map_err(FnError)?);
    let (ec2, ssm, store) = (aws.ec2_adapter(), aws.ssm_adapter(), aws.setup_store().map_err(FnError)?);
    let (sfn, sink, settings, ec2, ssm, store) = (&sfn, &sink, &settings, &ec2, &ssm, &store);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<ExecutionStatusChange>>| async move {
            let d = event.payload.detail;
            let input: Value = serde_json::from_str(d.input.as_deref().unwrap_or("null")).map_err(|e| {
                FnError(CoreError::invalid(
                    "detail.input",
                    format!("is not the CloudFormation request: {e}"),
                ))
            })?;
            let workflow = SfnWorkflow::new(sfn.clone(), &d.state_machine_arn);
            let answered = safety_net(
                ec2,
                ssm,
                sink,
                store,
                &workflow,
                settings,
                &d.execution_arn,
                &d.status,
                &input,
                SystemClock.now_ms() / 1000,
            )
            .await
            .map_err(FnError)?;
            if let Some(r) = &answered {
                // The template's SafetyNetAnswers metric filter counts these lines.
                let status = if r.status == CfnStatus::Failed { "FAILED" } else { "SUCCESS" };
                tracing::warn!(answered = status, execution = %d.execution_arn, "the safety net answered CloudFormation");
            }
            Ok::<Value, FnError>(json!({"answered": answered.map(|r| r.status)}))
        },
    ))
    .await
}
