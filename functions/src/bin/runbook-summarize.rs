//! The runner's Summarize step: every target's row to a summary in S3.
use opsflow_aws::AwsConfig;
use opsflow_core::runbook::handlers::RunbookPorts;
use opsflow_core::Unused;
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = AwsConfig::from_env().await;
    let ports = RunbookPorts {
        fleet: Unused,
        objects: aws.s3_objects(),
        log: aws.run_log().map_err(FnError)?,
        publisher: Unused,
    };
    opsflow_functions::run_runbook_task("Summarize", ports).await
}
