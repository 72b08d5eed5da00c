//! The `CheckCommand` step of the provisioning state machine.
use opsflow_aws::AwsConfig;
use opsflow_core::{provision::handlers::Ports, Unused};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = AwsConfig::from_env().await;
    let ports = Ports {
        ec2: aws.ec2_adapter(),
        iam: Unused,
        ssm: aws.ssm_adapter(),
        sink: Unused,
        store: Unused,
    };
    opsflow_functions::run_task("CheckCommand", ports).await
}
