//! Alert enrichment: a CloudWatch alarm state change from the alarms SNS topic, CloudWatch's
//! Lambda alarm action, an EventBridge "CloudWatch Alarm State Change" rule or an SQS queue of
//! SNS notifications, enriched with what EC2, SSM, IAM and CloudWatch know in the alarm's
//! account and region, published once per state change to the enriched-alerts topic. A failed
//! lookup is a note in the alert; a message that is not an alarm is published as unrecognized;
//! a failed publish fails the invocation so that it is retried and, in the end, lands in the
//! dead-letter queue.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use opsflow_aws::{alerts::lookup_timeouts, AwsConfig, SystemClock};
use opsflow_core::alert::handle_until;
use opsflow_functions::{alert_settings_from_env, init_logging, FnError};
use serde_json::{json, Value};

/// How long before Lambda's deadline the invocation stops waiting: its last publications and
/// ledger writes (each call limited to 8 s) fit in it.
const PUBLISH_MARGIN_MS: i64 = 10_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let (topic, settings) = alert_settings_from_env().map_err(FnError)?;
    let aws = AwsConfig::from_env_with(lookup_timeouts()).await;
    let (lookups, publisher, ledger) = (aws.alert_adapter(), aws.sns_publisher(&topic), aws.alert_ledger());
    let (lookups, publisher, ledger, settings) = (&lookups, &publisher, &ledger, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // Waiting (for diagnostics) ends 10 s before Lambda's deadline: time for the last
        // publications and their ledger records.
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX) - PUBLISH_MARGIN_MS;
        let ids = handle_until(lookups, publisher, ledger, &SystemClock, settings, &event.payload, deadline_ms)
            .await
            .map_err(FnError)?;
        Ok::<Value, FnError>(json!({"published": ids}))
    }))
    .await
}
