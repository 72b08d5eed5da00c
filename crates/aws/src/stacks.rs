//! [`Stacks`]: CloudFormation DescribeStacks and DescribeStackResource, for the request
//! handler's check that a request belongs to a stack operation under way.

use opsflow_core::facts::StackResource;
use opsflow_core::ports::Stacks;
use opsflow_core::CoreError;

use crate::error::from_sdk_error;

#[derive(Clone, Debug)]
pub struct StackAdapter {
    client: aws_sdk_cloudformation::Client,
}

impl StackAdapter {
    pub fn new(client: aws_sdk_cloudformation::Client) -> Self {
        StackAdapter { client }
    }
}

/// CloudFormation answers `ValidationError` "Stack with id … does not exist" / "Resource … does
/// not exist for stack …" for what is not there.
fn missing<E: aws_sdk_cloudformation::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ValidationError") && e.message().is_some_and(|m| m.contains("does not exist"))
}

impl Stacks for StackAdapter {
    async fn resource(&self, stack_id: &str, logical_id: &str) -> Result<Option<StackResource>, CoreError> {
        let stacks = match self.client.describe_stacks().stack_name(stack_id).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(missing) => return Ok(None),
            Err(e) => return Err(from_sdk_error("DescribeStacks", &e)),
        };
        let Some(stack_status) = stacks
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .map(|s| s.as_str().to_string())
        else {
            return Ok(None);
        };
        let detail = match self
            .client
            .describe_stack_resource()
            .stack_name(stack_id)
            .logical_resource_id(logical_id)
            .send()
            .await
        {
            Ok(out) => out.stack_resource_detail,
            Err(e) if e.as_service_error().is_some_and(missing) => return Ok(None),
            Err(e) => return Err(from_sdk_error("DescribeStackResource", &e)),
        };
        Ok(detail.map(|d| StackResource {
            stack_status,
            resource_type: d.resource_type().unwrap_or_default().to_string(),
            resource_status: d.resource_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
        }))
    }
}
