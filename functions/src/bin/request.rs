//! The custom resource request handler (the ServiceToken): validates, answers FAILED at once
//! when the request cannot succeed, else starts one execution per RequestId.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use opsflow_aws::{AwsConfig, HttpResponseSink, SystemClock};
use opsflow_core::provision::request::{admit, Admission, RequestPorts};
use opsflow_core::CoreError;
use opsflow_functions::{init_logging, settings_from_env, FnError};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let settings = settings_from_env().map_err(FnError)?;
    let state_machine = std::env::var("STATE_MACHINE_ARN").map_err(|_| FnError(CoreError::invalid("STATE_MACHINE_ARN", "is required")))?;
    let aws = AwsConfig::from_env().await;
    let ports = RequestPorts {
        ec2: aws.ec2_adapter(),
        iam: aws.iam_adapter(),
        sink: HttpResponseSink::build().map_err(FnError)?,
        store: aws.setup_store().map_err(FnError)?,
        workflow: aws.workflow(&state_machine),
        stacks: aws.stacks_adapter(),
        ssm: aws.ssm_adapter(),
    };
    let (ports, settings) = (&ports, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        match admit(ports, &SystemClock, settings, &event.payload).await.map_err(FnError)? {
            Admission::Answered(r) => Ok::<Value, FnError>(json!({"answered": r.status, "reason": r.reason})),
            Admission::Started { execution_name } => Ok(json!({"started": execution_name})),
        }
    }))
    .await
}
