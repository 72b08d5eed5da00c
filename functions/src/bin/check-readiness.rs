//! The `CheckReadiness` step of the provisioning state machine.
use opsflow_core::{handlers::Ports, Unused};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::run_task("CheckReadiness", |aws| {
        Ok(Ports {
            ec2: aws.ec2_adapter(),
            iam: Unused,
            ssm: aws.ssm_adapter(),
            sink: Unused,
        })
    })
    .await
}
