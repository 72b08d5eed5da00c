//! The runner's ResolveTargets step: the opted-in instances of every account and region, through the member role, to S3.
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
    opsflow_functions::run_runbook_task("Resolve", ports).await
}
