//! The `Answer` step of the provisioning state machine. It PUTs to CloudFormation's
//! ResponseURL and calls no AWS API, so it loads no AWS configuration.
use opsflow_aws::HttpResponseSink;
use opsflow_core::{provision::handlers::Ports, Unused};
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let ports = Ports {
        ec2: Unused,
        iam: Unused,
        ssm: Unused,
        sink: HttpResponseSink::build().map_err(FnError)?,
    };
    opsflow_functions::run_task("Answer", ports).await
}
