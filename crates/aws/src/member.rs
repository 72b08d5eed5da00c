//! A member account's SDK configuration: `sts:AssumeRole` on the member role with the
//! deployment's ExternalId, by the function itself. The SDK's assume-role provider caches the
//! session and refreshes it before it expires; credentials never leave the returned config.
//! The runbook functions' `MemberFleet` and the alert lookups both reach member accounts here.

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use opsflow_core::CoreError;

/// `base` with the credentials of `role_arn` (assumed with `external_id`) and `region`. The
/// role is assumed at once, so that one that cannot be assumed fails here with its reason
/// (`AccessDenied` naming the role).
pub async fn assumed_config(
    base: &SdkConfig,
    role_arn: &str,
    external_id: &str,
    session_name: &str,
    region: &str,
) -> Result<SdkConfig, CoreError> {
    let provider = AssumeRoleProvider::builder(role_arn)
        .external_id(external_id)
        .session_name(session_name)
        .region(Region::new(region.to_string()))
        .configure(base)
        .build()
        .await;
    provider.provide_credentials().await.map_err(|e| {
        let detail = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        CoreError::access_denied("sts:AssumeRole", format!("{role_arn}: {detail}"))
    })?;
    Ok(base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .region(Region::new(region.to_string()))
        .build())
}
