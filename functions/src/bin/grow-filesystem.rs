//! The `GrowFilesystem` step of the provisioning state machine.
use opsflow_core::{handlers::Ports, Unused};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::run_task("GrowFilesystem", |aws| {
        Ok(Ports {
            ec2: Unused,
            iam: Unused,
            ssm: aws.ssm_adapter(),
            sink: Unused,
        })
    })
    .await
}
