//! [`Ssm`] with `aws-sdk-ssm`.

use std::collections::HashMap;

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{CloudWatchOutputConfig, InstanceInformationStringFilter};
use opsflow_core::command::CommandSpec;
use opsflow_core::facts::{Invocation, PingStatus};
use opsflow_core::ports::Ssm;
use opsflow_core::CoreError;

use crate::error::{from_sdk_error, unexpected};

/// The SSM port on an `aws_sdk_ssm::Client`.
#[derive(Clone, Debug)]
pub struct SsmAdapter {
    client: aws_sdk_ssm::Client,
}

impl SsmAdapter {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmAdapter { client }
    }

    pub fn client(&self) -> &aws_sdk_ssm::Client {
        &self.client
    }
}

impl Ssm for SsmAdapter {
    /// DescribeInstanceInformation with the `InstanceIds` filter. An instance SSM does not
    /// list, or answers `InvalidInstanceId` for, is not a managed node (yet): `None`.
    async fn ping_status(&self, instance_id: &str) -> Result<Option<PingStatus>, CoreError> {
        const OP: &str = "DescribeInstanceInformation";
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(instance_id)
            .build()
            .map_err(|e| CoreError::invalid(OP, e.to_string()))?;
        let result = self.client.describe_instance_information().filters(filter).send().await;
        let out = match result {
            Ok(out) => out,
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidInstanceId") => return Ok(None),
            Err(e) => return Err(from_sdk_error(OP, &e)),
        };
        let Some(info) = out
            .instance_information_list()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
        else {
            return Ok(None);
        };
        let text = info.ping_status().map(|p| p.as_str()).unwrap_or("");
        PingStatus::parse(text)
            .map(Some)
            .ok_or_else(|| unexpected(OP, format!("ping status {text:?}")))
    }

    /// SendCommand for one instance: `DocumentName`, `Parameters` (each a list, as given),
    /// `TimeoutSeconds`, `OutputS3BucketName` / `OutputS3KeyPrefix` and, with a log group,
    /// `CloudWatchOutputConfig` (enabled), and `Comment`.
    async fn send_command(&self, spec: &CommandSpec, instance_id: &str) -> Result<String, CoreError> {
        const OP: &str = "SendCommand";
        let timeout = i32::try_from(spec.timeout_seconds)
            .map_err(|_| CoreError::invalid("TimeoutSeconds", format!("{} is too large", spec.timeout_seconds)))?;
        let parameters: HashMap<String, Vec<String>> = spec.parameters.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let cloudwatch = spec.cloudwatch_log_group.as_ref().map(|group| {
            CloudWatchOutputConfig::builder()
                .cloud_watch_log_group_name(group)
                .cloud_watch_output_enabled(true)
                .build()
        });
        let out = self
            .client
            .send_command()
            .document_name(&spec.document_name)
            .instance_ids(instance_id)
            .set_parameters((!parameters.is_empty()).then_some(parameters))
            .timeout_seconds(timeout)
            .set_output_s3_bucket_name(spec.output_s3_bucket.clone())
            .set_output_s3_key_prefix(spec.output_s3_prefix.clone())
            .set_cloud_watch_output_config(cloudwatch)
            .set_comment(spec.comment.clone())
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let command_id = out
            .command()
            .and_then(|c| c.command_id())
            .ok_or_else(|| unexpected(OP, "no Command.CommandId"))?;
        tracing::debug!(command_id, instance_id, document = %spec.document_name, "command sent");
        Ok(command_id.to_string())
    }

    async fn get_invocation(&self, command_id: &str, instance_id: &str) -> Result<Invocation, CoreError> {
        const OP: &str = "GetCommandInvocation";
        let out = self
            .client
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let status = out.status().ok_or_else(|| unexpected(OP, "no Status"))?;
        Ok(Invocation {
            status: status.as_str().to_string(),
            status_details: out.status_details().unwrap_or("").to_string(),
            response_code: out.response_code(),
            stdout: out.standard_output_content().unwrap_or("").to_string(),
            stderr: out.standard_error_content().unwrap_or("").to_string(),
            stdout_url: out.standard_output_url().unwrap_or("").to_string(),
            stderr_url: out.standard_error_url().unwrap_or("").to_string(),
        })
    }

    async fn cancel_command(&self, command_id: &str, instance_id: &str) -> Result<(), CoreError> {
        const OP: &str = "CancelCommand";
        self.client
            .cancel_command()
            .command_id(command_id)
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        tracing::info!(command_id, instance_id, "command cancelled");
        Ok(())
    }
}
