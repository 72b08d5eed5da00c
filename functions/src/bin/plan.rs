//! The `Plan` step of the provisioning state machine.
use opsflow_core::{handlers::Ports, Unused};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::run_task("Plan", |aws| {
        Ok(Ports {
            ec2: aws.ec2_adapter(),
            iam: aws.iam_adapter(),
            ssm: Unused,
            sink: Unused,
        })
    })
    .await
}
