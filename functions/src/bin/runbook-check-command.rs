//! The run-command procedure's CheckCommand step: the invocation watched to its end; the output's last lines.
use opsflow_aws::AwsConfig;
use opsflow_core::runbook::handlers::RunbookPorts;
use opsflow_core::Unused;
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = AwsConfig::from_env().await;
    let ports = RunbookPorts {
        fleet: aws.member_fleet().map_err(FnError)?,
        objects: aws.s3_objects(),
        log: Unused,
        publisher: Unused,
    };
    opsflow_functions::run_runbook_task("CheckCommand", ports).await
}
