//! The `AssignProfile` step of the provisioning state machine.
use opsflow_core::{handlers::Ports, Unused};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::run_task("AssignProfile", |aws| {
        Ok(Ports {
            ec2: aws.ec2_adapter(),
            iam: Unused,
            ssm: Unused,
            sink: Unused,
        })
    })
    .await
}
