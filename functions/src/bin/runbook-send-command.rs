//! The run-command procedure's SendCommand step, in the member account.
use opsflow_aws::AwsConfig;
use opsflow_core::runbook::handlers::RunbookPorts;
use opsflow_core::Unused;
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = AwsConfig::from_env().await;
    let ports = RunbookPorts {
        fleet: aws.member_fleet().map_err(FnError)?,
        objects: Unused,
        log: aws.run_log().map_err(FnError)?,
        publisher: Unused,
    };
    opsflow_functions::run_runbook_task("SendCommand", ports).await
}
