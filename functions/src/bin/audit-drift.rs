//! Drift alerts: a CloudTrail event (EventBridge) that changes an instance's role or profile →
//! the running instances it touches re-evaluated in `AUDIT_REGIONS` (an EC2 change: its own
//! region) through the member audit role, and one alert on `AUDIT_TOPIC_ARN` when a verdict
//! changed, once per event (`ALERT_LEDGER_TABLE`).
use opsflow_aws::{AwsConfig, SystemClock};
use opsflow_core::audit::{AuditPorts, DriftSettings};
use opsflow_core::ports::Clock;
use opsflow_core::CoreError;
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::init_logging();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let bucket = var("AUDIT_BUCKET").ok_or_else(|| FnError(CoreError::invalid("AUDIT_BUCKET", "is required: the audits' bucket")))?;
    let topic = var("AUDIT_TOPIC_ARN")
        .filter(|t| t.starts_with("arn:"))
        .ok_or_else(|| FnError(CoreError::invalid("AUDIT_TOPIC_ARN", "is required: the SNS topic of drift alerts")))?;
    let regions: Vec<String> = var("AUDIT_REGIONS")
        .or_else(|| var("AWS_REGION"))
        .ok_or_else(|| {
            FnError(CoreError::invalid(
                "AUDIT_REGIONS",
                "is required: the regions whose instances drift re-evaluates",
            ))
        })?
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let aws = AwsConfig::from_env().await;
    let ports = AuditPorts {
        auditors: aws.audit_fleet().map_err(FnError)?,
        objects: aws.s3_objects(),
        publisher: aws.sns_publisher(&topic),
    };
    let ledger = aws.alert_ledger();
    let settings = DriftSettings { bucket, regions };
    let (ports, ledger, settings) = (&ports, &ledger, &settings);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            opsflow_core::audit::handlers::drift(ports, ledger, settings, &event.payload, SystemClock.now_ms())
                .await
                .map_err(FnError)
        },
    ))
    .await
}
