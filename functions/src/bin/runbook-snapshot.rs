//! consistent-snapshot's snapshot steps: Take (CreateSnapshots), Check (until completed), Prune
//! (the procedure's older snapshots) and Conclude (the result), in the member account.
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
        log: Unused,
        publisher: Unused,
    };
    opsflow_functions::run_runbook_task("Snapshot", ports).await
}
