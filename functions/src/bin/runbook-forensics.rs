//! forensic-capture's steps: Begin and Heartbeat (the lifecycle action held), Verify (the
//! uploaded archive against its manifest, from the evidence bucket), Preserve (the case's
//! snapshots and tags, in the member account), Complete (CompleteLifecycleAction CONTINUE,
//! once) and Conclude (the result).
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
    opsflow_functions::run_runbook_task("Forensics", ports).await
}
