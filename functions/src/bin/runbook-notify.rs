//! The runner's Notify step: the run's summary published to the RunbookResults topic.
use opsflow_aws::AwsConfig;
use opsflow_core::runbook::handlers::RunbookPorts;
use opsflow_core::{CoreError, Unused};
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let topic = std::env::var("RESULTS_TOPIC_ARN").unwrap_or_default();
    if !topic.starts_with("arn:") {
        return Err(FnError(CoreError::invalid(
            "RESULTS_TOPIC_ARN",
            format!("must be an SNS topic ARN, not {topic:?}"),
        ))
        .into());
    }
    let aws = AwsConfig::from_env().await;
    let ports = RunbookPorts {
        fleet: Unused,
        objects: aws.s3_objects(),
        log: Unused,
        publisher: aws.sns_publisher(&topic),
    };
    opsflow_functions::run_runbook_task("Notify", ports).await
}
