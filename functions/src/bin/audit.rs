//! The fleet audits' steps (`Step`): Plan (the schedule's input to scopes), Scan (one account
//! and region read through its member audit role, findings to `AUDIT_BUCKET`) and Report (the
//! report and its difference from the previous one, to S3 and the `AUDIT_TOPIC_ARN` topic).
//! `SSM_FIX_PROFILE` (optional) turns on fleet health's automatic fix: that instance profile
//! for running instances SSM does not manage because they have none (`SSM_FIX_ROLE_NAME`).
use opsflow_aws::{AwsConfig, SystemClock};
use opsflow_core::audit::{AuditPorts, AuditSettings};
use opsflow_core::CoreError;
use opsflow_functions::FnError;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opsflow_functions::init_logging();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let bucket = var("AUDIT_BUCKET").ok_or_else(|| FnError(CoreError::invalid("AUDIT_BUCKET", "is required: the reports' bucket")))?;
    let topic = var("AUDIT_TOPIC_ARN").filter(|t| t.starts_with("arn:")).ok_or_else(|| {
        FnError(CoreError::invalid(
            "AUDIT_TOPIC_ARN",
            "is required: the SNS topic of report summaries",
        ))
    })?;
    let aws = AwsConfig::from_env().await;
    let ports = AuditPorts {
        auditors: aws.audit_fleet().map_err(FnError)?,
        objects: aws.s3_objects(),
        publisher: aws.sns_publisher(&topic),
    };
    // Fleet health's automatic fix, off unless the deployment names the default SSM profile.
    let settings = AuditSettings {
        bucket,
        fix_profile: var("SSM_FIX_PROFILE"),
    };
    let (ports, settings) = (&ports, &settings);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            opsflow_core::audit::handlers::invoke(ports, settings, event.payload, &SystemClock)
                .await
                .map_err(FnError)
        },
    ))
    .await
}
