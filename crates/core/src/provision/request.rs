//! The CloudFormation-facing side of the custom resource: the request handler (the
//! ServiceToken), the one answer per request, and the safety net for executions that ended
//! without answering.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CoreError;
use crate::ports::{Ec2, Iam, ResponseSink};
use crate::provision::cfn::{failure_reason, physical_resource_id, CfnRequest, CfnResponse, RequestType};
use crate::provision::plan::verify_profile;
use crate::provision::props::{OnDelete, SetupProps};
use crate::provision::steps::{Plan, Settings};

/// What the answer step reports to CloudFormation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `SUCCESS` or `FAILED`.
    pub status: String,
    /// On failure: the state that failed and the error it raised.
    pub step: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The plan, when planning got that far (gives the physical id).
    pub plan: Option<Plan>,
    /// Data returned to the stack (`Fn::GetAtt`): strings only.
    #[serde(default)]
    pub data: serde_json::Map<String, Value>,
    /// A Delete is always answered SUCCESS: deleting the stack must never be blocked.
    #[serde(default)]
    pub delete: bool,
    /// On success, what the stack should know (the Reason): e.g. that the reboot fallback grew
    /// the file system without SSM to verify it.
    #[serde(default)]
    pub note: Option<String>,
}

/// Answer: PUTs the one response to the ResponseURL (≤ 4096 bytes, Reason naming the step).
pub async fn answer(sink: &impl ResponseSink, request: &CfnRequest, outcome: &Outcome) -> Result<CfnResponse, CoreError> {
    let instance_id = request.resource_properties.get("InstanceId").and_then(Value::as_str);
    let physical = outcome
        .plan
        .as_ref()
        .map_or_else(|| physical_resource_id(request, instance_id), |p| p.physical_resource_id.clone());
    let failure = || {
        let error = outcome.error.clone().unwrap_or_else(|| "States.Runtime".to_string());
        let cause = crate::provision::cfn::cause_message(outcome.cause.as_deref().unwrap_or(""));
        failure_reason(outcome.step.as_deref().unwrap_or("Workflow"), &error, &cause)
    };
    let response = if outcome.delete {
        let physical = request.physical_resource_id.clone().unwrap_or(physical);
        let r = CfnResponse::success(request, physical);
        if outcome.status == "SUCCESS" {
            r
        } else {
            r.with_reason(format!(
                "{} (the resource is deleted anyway; deleting never blocks the stack)",
                failure()
            ))
        }
    } else if outcome.status == "SUCCESS" {
        let mut r = CfnResponse::success(request, physical);
        for (k, v) in &outcome.data {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            r = r.with_data(k.clone(), text);
        }
        match &outcome.note {
            Some(note) => r.with_reason(note.clone()),
            None => r,
        }
    } else {
        let reason = failure();
        let physical = if request.request_type == RequestType::Create {
            crate::provision::cfn::failed_physical_resource_id(request, instance_id)
        } else {
            request.physical_resource_id.clone().unwrap_or(physical)
        };
        CfnResponse::failed(request, physical, reason)
    };
    sink.put(&request.response_url, &response.to_body()).await?;
    Ok(response)
}

/// What the request handler decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Answered at once (invalid properties, an unknown instance, a profile not allowed, or a
    /// Delete with nothing to revert): no execution.
    Answered(CfnResponse),
    /// Started the execution named after the RequestId (or found it started).
    Started { execution_name: String },
}

/// The custom resource request handler: validates before anything changes and answers FAILED
/// at once when the request cannot succeed; otherwise starts one execution per RequestId.
pub async fn admit(
    ec2: &impl Ec2,
    iam: &impl Iam,
    sink: &impl ResponseSink,
    workflow: &impl crate::ports::Workflow,
    settings: &Settings,
    request_json: &Value,
) -> Result<Admission, CoreError> {
    let request = CfnRequest::from_value(request_json.clone())?;
    let instance_id = request
        .resource_properties
        .get("InstanceId")
        .and_then(Value::as_str)
        .map(String::from);
    let refuse = |e: CoreError| {
        let reason = failure_reason("Validate", e.name(), &e.to_string());
        if request.request_type == RequestType::Delete {
            let physical = request
                .physical_resource_id
                .clone()
                .unwrap_or_else(|| physical_resource_id(&request, instance_id.as_deref()));
            CfnResponse::success(&request, physical).with_reason(format!("{reason} (nothing to revert; the resource is deleted)"))
        } else {
            CfnResponse::failed(
                &request,
                crate::provision::cfn::failed_physical_resource_id(&request, instance_id.as_deref()),
                reason,
            )
        }
    };
    let checked = async {
        let props = SetupProps::parse(&request.resource_properties, &settings.allow_list)?;
        if request.request_type == RequestType::Delete {
            return Ok::<bool, CoreError>(props.on_delete == OnDelete::Revert && props.instance_profile.is_some());
        }
        ec2.describe_instance(&props.instance_id).await?;
        if let Some(spec) = &props.instance_profile {
            let found = iam.get_instance_profile(&spec.name).await?;
            verify_profile(spec, &found, &settings.allow_list)?;
        }
        Ok(true)
    };
    let start = match checked.await {
        Ok(start) => start,
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => {
            let response = refuse(e);
            sink.put(&request.response_url, &response.to_body()).await?;
            return Ok(Admission::Answered(response));
        }
    };
    if !start {
        let physical = request
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| physical_resource_id(&request, instance_id.as_deref()));
        let response = CfnResponse::success(&request, physical);
        sink.put(&request.response_url, &response.to_body()).await?;
        return Ok(Admission::Answered(response));
    }
    workflow.start_execution(&request.request_id, request_json).await?;
    Ok(Admission::Started {
        execution_name: request.request_id,
    })
}

/// The safety net, run when an execution ends FAILED, TIMED_OUT or ABORTED: if no answer step
/// finished, answers FAILED naming the execution's status, so the stack never hangs.
pub async fn safety_net(
    sink: &impl ResponseSink,
    workflow: &impl crate::ports::Workflow,
    execution_arn: &str,
    status: &str,
    request_json: &Value,
) -> Result<Option<CfnResponse>, CoreError> {
    if workflow.answered(execution_arn).await? {
        return Ok(None);
    }
    let request = CfnRequest::from_value(request_json.clone())?;
    let outcome = Outcome {
        status: "FAILED".to_string(),
        step: Some("Workflow".to_string()),
        error: Some(format!("Execution{}", title_case(status))),
        cause: Some(format!("the execution {execution_arn} ended {status} before answering")),
        plan: None,
        data: serde_json::Map::new(),
        delete: request.request_type == RequestType::Delete,
        note: None,
    };
    answer(sink, &request, &outcome).await.map(Some)
}

/// `TIMED_OUT` → `TimedOut`.
fn title_case(status: &str) -> String {
    status
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}
