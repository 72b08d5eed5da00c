//! The `Answer` step of the provisioning state machine: PUTs to CloudFormation's ResponseURL,
//! once per request (claimed in opsflow's state table), and ends the resource's lifecycle on a
//! Delete.
use opsflow_aws::{AwsConfig, HttpResponseSink};
use opsflow_core::{provision::handlers::Ports, Unused};
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = AwsConfig::from_env().await;
    let ports = Ports {
        ec2: Unused,
        iam: Unused,
        ssm: Unused,
        sink: HttpResponseSink::build().map_err(FnError)?,
        store: aws.setup_store().map_err(FnError)?,
    };
    opsflow_functions::run_task("Answer", ports).await
}
