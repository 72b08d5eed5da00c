//! The `Plan` step of the provisioning state machine.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::run_task("Plan").await
}
