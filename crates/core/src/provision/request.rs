//! The CloudFormation-facing side of the custom resource: the request handler (the
//! ServiceToken), the one answer per request, and the safety net for executions that ended
//! without answering.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CoreError;
use crate::ports::{Clock, Ec2, Iam, ResponseSink, SetupStore, Ssm, Stacks, Workflow};
use crate::provision::cfn::{
    failed_physical_resource_id, failure_reason, physical_resource_id, CfnRequest, CfnResponse, CfnStatus, ReplyTo, RequestType,
};
use crate::provision::guard;
use crate::provision::plan::verify_profile;
use crate::provision::props::is_instance_id;
use crate::provision::props::OnDelete;
use crate::provision::state;
use crate::provision::steps::{checked_props, Plan, Settings};
use crate::provision::undo::undo;

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
    /// On failure, what was undone and what was left (see [`crate::provision::undo`]).
    #[serde(default)]
    pub undone: Option<String>,
}

/// Answer: PUTs the one response to the ResponseURL (≤ 4096 bytes, Reason naming the step).
pub async fn answer(
    sink: &impl ResponseSink,
    store: &impl SetupStore,
    settings: &Settings,
    request: &CfnRequest,
    outcome: &Outcome,
    now_s: i64,
) -> Result<CfnResponse, CoreError> {
    let instance_id = request
        .resource_properties
        .get("InstanceId")
        .and_then(Value::as_str)
        .filter(|id| is_instance_id(id));
    state::end_running(store, &request.stack_id, &request.logical_resource_id, &request.request_id).await?;
    if outcome.delete {
        // The resource is gone: its lifecycle ends, and a later one on the instance starts afresh.
        if let Some(id) = instance_id {
            state::end_lifecycle(store, &state::lifecycle_key(&request.stack_id, &request.logical_resource_id, id)).await?;
        }
    }
    let physical = outcome
        .plan
        .as_ref()
        .map_or_else(|| physical_resource_id(request, instance_id), |p| p.physical_resource_id.clone());
    let failure = || {
        let error = outcome.error.clone().unwrap_or_else(|| "States.Runtime".to_string());
        let cause = crate::provision::cfn::cause_message(outcome.cause.as_deref().unwrap_or(""));
        let reason = failure_reason(outcome.step.as_deref().unwrap_or("Workflow"), &error, &cause);
        match &outcome.undone {
            Some(note) => format!("{reason} [{note}]"),
            None => reason,
        }
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
            failed_physical_resource_id(request, instance_id)
        } else {
            request.physical_resource_id.clone().unwrap_or(physical)
        };
        CfnResponse::failed(request, physical, reason)
    };
    put_answer(sink, store, settings, &ReplyTo::of(request), &response, now_s).await?;
    Ok(response)
}

/// What the request handler decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Answered at once (a malformed request, invalid properties, an instance that is unknown,
    /// terminated or not the stack's, a profile not allowed, AWS errors that outlasted the
    /// retries, a failed start, or a Delete with nothing to revert): no execution.
    Answered(CfnResponse),
    /// Started the execution named after the RequestId (or found it started).
    Started { execution_name: String },
}

/// The ports of the request handler.
pub struct RequestPorts<E, I, S, R, T, W, K> {
    pub ec2: E,
    pub iam: I,
    /// To cancel the command of an execution a later request stops.
    pub ssm: S,
    pub sink: R,
    pub store: T,
    pub workflow: W,
    pub stacks: K,
}

/// The largest request opsflow starts an execution with. Step Functions refuses an input over
/// 256 KiB, and the steps add their results to the request in the state; a request is a few
/// KiB unless its bootstrap is a whole script.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The custom resource request handler (the ServiceToken): validates before anything changes
/// and answers FAILED at once when the request cannot succeed; otherwise starts one execution
/// per RequestId.
///
/// Every request that can be answered is answered: a malformed one FAILED naming what is
/// wrong; throttling and transient errors are retried for [`Settings::request_retry_s`], then
/// answered FAILED; a failed StartExecution is answered FAILED. The only requests left
/// unanswered (an error, for the dead-letter queue and its alarm) are those without a usable
/// ResponseURL: no answer can reach CloudFormation, and opsflow PUTs nowhere else.
pub async fn admit<E: Ec2, I: Iam, S: Ssm, R: ResponseSink, T: SetupStore, W: Workflow, K: Stacks>(
    ports: &RequestPorts<E, I, S, R, T, W, K>,
    clock: &impl Clock,
    settings: &Settings,
    request_json: &Value,
) -> Result<Admission, CoreError> {
    let RequestPorts {
        ec2,
        iam,
        sink,
        store,
        workflow,
        stacks,
        ..
    } = ports;
    let reply = reply_to(request_json, settings)?;
    let now_s = clock.now_ms().div_euclid(1000);
    let answer_now = |response: CfnResponse| async {
        put_answer(sink, store, settings, &reply, &response, now_s).await?;
        Ok(Admission::Answered(response))
    };
    let request = match CfnRequest::from_value(request_json.clone()) {
        Ok(request) => request,
        Err(e) => return answer_now(reply.failed(failure_reason("Validate", e.name(), &e.to_string()))).await,
    };
    let refuse = |step: &str, e: CoreError| {
        let reason = failure_reason(step, e.name(), &e.to_string());
        let instance_id = request.resource_properties.get("InstanceId").and_then(Value::as_str);
        if request.request_type == RequestType::Delete {
            CfnResponse::success(&request, physical_resource_id(&request, instance_id))
                .with_reason(format!("{reason} (nothing was reverted; the resource is deleted)"))
        } else {
            CfnResponse::failed(&request, failed_physical_resource_id(&request, instance_id), reason)
        }
    };
    let size = request_json.to_string().len();
    if size > MAX_REQUEST_BYTES {
        let e = CoreError::invalid(
            "ResourceProperties",
            format!(
                "make the request {size} bytes of JSON; opsflow accepts at most {MAX_REQUEST_BYTES} \
                 (Step Functions refuses an execution input over 256 KiB, and the steps add to it): \
                 keep long scripts in an SSM document and name it in Bootstrap.DocumentName"
            ),
        );
        return answer_now(refuse("Validate", e)).await;
    }
    let start = match retrying(clock, settings.request_retry_s, || validate(ec2, iam, stacks, settings, &request)).await {
        Ok(start) => start,
        Err(e) => return answer_now(refuse("Validate", e)).await,
    };
    // An execution still running for this resource (CloudFormation gave up on it) is stopped,
    // and what it did undone, before this request goes on.
    let superseded = match retrying(clock, settings.request_retry_s, || supersede(ports, &request)).await {
        Ok(note) => note,
        Err(e) => return answer_now(refuse("Start", e)).await,
    };
    if !start {
        // (A Delete: its physical id is the one CloudFormation sent.)
        let response = CfnResponse::success(&request, physical_resource_id(&request, None));
        return answer_now(match superseded {
            Some(note) => response.with_reason(format!("{note}; nothing else to revert")),
            None => response,
        })
        .await;
    }
    let running = state::Running {
        request_id: request.request_id.clone(),
        request: request_json.clone(),
    };
    if let Err(e) = state::record_running(store, &request.stack_id, &request.logical_resource_id, &running, now_s).await {
        return answer_now(refuse("Start", e)).await;
    }
    if let Err(e) = retrying(clock, settings.request_retry_s, || {
        workflow.start_execution(&request.request_id, request_json)
    })
    .await
    {
        return answer_now(refuse("Start", e)).await;
    }
    if let Some(note) = superseded {
        tracing::warn!(request_id = %request.request_id, note, "a running execution was stopped first");
    }
    Ok(Admission::Started {
        execution_name: request.request_id,
    })
}

/// Stops the execution another request of the same resource still runs, and undoes what it
/// did; the note says what happened (`None` when nothing ran).
async fn supersede<E: Ec2, I: Iam, S: Ssm, R: ResponseSink, T: SetupStore, W: Workflow, K: Stacks>(
    ports: &RequestPorts<E, I, S, R, T, W, K>,
    request: &CfnRequest,
) -> Result<Option<String>, CoreError> {
    let Some(running) = state::running(&ports.store, &request.stack_id, &request.logical_resource_id).await? else {
        return Ok(None);
    };
    if running.request_id == request.request_id {
        return Ok(None);
    }
    let cause = format!("superseded by {:?} request {}", request.request_type, request.request_id);
    if !ports.workflow.stop_execution(&running.request_id, &cause).await? {
        return Ok(None);
    }
    let old = CfnRequest::from_value(running.request)?;
    let report = undo(&ports.ec2, &ports.ssm, &ports.store, &old, None).await;
    state::end_running(&ports.store, &request.stack_id, &request.logical_resource_id, &running.request_id).await?;
    Ok(Some(format!(
        "stopped the execution of {:?} request {}{}",
        old.request_type,
        old.request_id,
        report.note().map(|n| format!(" ({n})")).unwrap_or_default()
    )))
}

/// Where the answer to a request goes, checked: without a usable ResponseURL (missing, or not
/// the presigned S3 URL CloudFormation sends) the request cannot be answered at all.
fn reply_to(request_json: &Value, settings: &Settings) -> Result<ReplyTo, CoreError> {
    let reply = ReplyTo::from_value(request_json).ok_or_else(|| {
        CoreError::invalid(
            "request",
            "lacks a ResponseURL, StackId, RequestId or LogicalResourceId that an answer could use: it cannot be answered",
        )
    })?;
    check_reply(&reply, settings)?;
    Ok(reply)
}

/// The answer may go to the request's ResponseURL: [`guard::check_response_url`] for the
/// stack's partition.
fn check_reply(reply: &ReplyTo, settings: &Settings) -> Result<(), CoreError> {
    let partition = reply
        .partition()
        .ok_or_else(|| CoreError::invalid("StackId", "is not an ARN: the request cannot be answered"))?;
    guard::check_response_url(&reply.response_url, partition, settings.local_response_urls)
}

/// The checks before anything changes; true when an execution must run (false: a Delete with
/// nothing to revert).
async fn validate(
    ec2: &impl Ec2,
    iam: &impl Iam,
    stacks: &impl Stacks,
    settings: &Settings,
    request: &CfnRequest,
) -> Result<bool, CoreError> {
    let (props, stack) = checked_props(request, settings)?;
    if settings.verify_stack {
        let found = stacks.resource(&request.stack_id, &request.logical_resource_id).await?;
        guard::check_live_request(request, found.as_ref())?;
    }
    if request.request_type == RequestType::Delete {
        return Ok(props.on_delete == OnDelete::Revert && props.instance_profile.is_some());
    }
    let instance = ec2.describe_instance(&props.instance_id).await?;
    guard::check_owner(&instance, &stack)?;
    guard::check_instance_state(&instance)?;
    if let Some(spec) = &props.instance_profile {
        let found = iam.get_instance_profile(&spec.name).await?;
        verify_profile(spec, &found, &settings.allow_list)?;
    }
    Ok(true)
}

/// Runs `call` again while it fails with `Throttled` or `Transient`, waiting 1 s, 2 s, 4 s, then
/// 5 s between attempts, for at most `budget_s`; the last error says how long it was retried.
async fn retrying<T, F: std::future::Future<Output = Result<T, CoreError>>>(
    clock: &impl Clock,
    budget_s: i64,
    mut call: impl FnMut() -> F,
) -> Result<T, CoreError> {
    let started = clock.now_ms();
    let mut delay_ms: u64 = 1000;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && clock.now_ms() + delay_ms as i64 <= started + budget_s * 1000 => {
                clock.sleep(delay_ms).await?;
                delay_ms = (delay_ms * 2).min(5000);
            }
            Err(e) if e.is_retryable() => {
                let waited = (clock.now_ms() - started) as f64 / 1000.0;
                return Err(match e {
                    CoreError::Throttled { operation, detail } => CoreError::Throttled {
                        operation,
                        detail: format!("{detail} (still failing after {waited:.0} s of retries)"),
                    },
                    CoreError::Transient { operation, detail } => CoreError::Transient {
                        operation,
                        detail: format!("{detail} (still failing after {waited:.0} s of retries)"),
                    },
                    other => other,
                });
            }
            other => return other,
        }
    }
}

/// Every answer goes out here: only to a ResponseURL that passes [`guard::check_response_url`],
/// and once per RequestId: the answer is claimed in opsflow's state first (a redelivered
/// request, the safety net or the dead-letter handler finds it claimed and sends nothing), and
/// the claim is given back if the PUT fails, so that a retry can answer. False when the request
/// was answered already.
pub async fn put_answer(
    sink: &impl ResponseSink,
    store: &impl SetupStore,
    settings: &Settings,
    reply: &ReplyTo,
    response: &CfnResponse,
    now_s: i64,
) -> Result<bool, CoreError> {
    check_reply(reply, settings)?;
    let status = if response.status == CfnStatus::Success {
        "SUCCESS"
    } else {
        "FAILED"
    };
    if !state::claim_answer(store, &reply.request_id, status, now_s).await? {
        tracing::info!(request_id = %reply.request_id, "already answered: no second answer");
        return Ok(false);
    }
    tracing::info!(
        stack = %reply.stack_id,
        logical_resource_id = %reply.logical_resource_id,
        request_id = %reply.request_id,
        status = ?response.status,
        reason = response.reason.as_deref().unwrap_or(""),
        "opsflow answers CloudFormation"
    );
    if let Err(e) = sink.put(&reply.response_url, &response.to_body()).await {
        state::release_answer(store, &reply.request_id).await?;
        return Err(e);
    }
    Ok(true)
}

/// The safety net, run when an execution ends FAILED, TIMED_OUT or ABORTED: if no answer step
/// finished, answers FAILED naming the execution's status, so the stack never hangs.
#[allow(clippy::too_many_arguments)]
pub async fn safety_net(
    ec2: &impl Ec2,
    ssm: &impl Ssm,
    sink: &impl ResponseSink,
    store: &impl SetupStore,
    workflow: &impl Workflow,
    settings: &Settings,
    execution_arn: &str,
    status: &str,
    request_json: &Value,
    now_s: i64,
) -> Result<Option<CfnResponse>, CoreError> {
    if workflow.answered(execution_arn).await? {
        return Ok(None);
    }
    let request = CfnRequest::from_value(request_json.clone())?;
    // The execution ended without its failure path: undo here what it would have undone.
    let undone = undo(ec2, ssm, store, &request, None).await.note();
    let outcome = Outcome {
        status: "FAILED".to_string(),
        step: Some("Workflow".to_string()),
        error: Some(format!("Execution{}", title_case(status))),
        cause: Some(format!("the execution {execution_arn} ended {status} before answering")),
        plan: None,
        data: serde_json::Map::new(),
        delete: request.request_type == RequestType::Delete,
        note: None,
        undone,
    };
    answer(sink, store, settings, &request, &outcome, now_s).await.map(Some)
}

/// The dead-letter handler: an event whose handler failed for good (the request function, or
/// the safety net, after Lambda's retries) arrives here, from the dead-letter queue, and the
/// request it carries is answered FAILED (a Delete: SUCCESS, which never blocks), once. The event
/// is the CloudFormation request itself, or the execution status change the safety net was
/// given (the request is its `detail.input`). Returns `None` when it was answered already.
pub async fn dead_letter(
    sink: &impl ResponseSink,
    store: &impl SetupStore,
    settings: &Settings,
    event: &Value,
    now_s: i64,
) -> Result<Option<CfnResponse>, CoreError> {
    let (request_json, what) = match event.pointer("/detail/input").and_then(Value::as_str) {
        Some(input) => (
            serde_json::from_str::<Value>(input)
                .map_err(|e| CoreError::invalid("detail.input", format!("is not the CloudFormation request: {e}")))?,
            format!(
                "the execution ended {} and the safety net failed to answer",
                event.pointer("/detail/status").and_then(Value::as_str).unwrap_or("unanswered")
            ),
        ),
        None => (event.clone(), "the request handler failed after Lambda's retries".to_string()),
    };
    let reply = reply_to(&request_json, settings)?;
    let reason = format!("Step Workflow failed: opsflow could not handle the request: {what} (see the functions' log groups)");
    let response = match CfnRequest::from_value(request_json.clone()) {
        Ok(request) if request.request_type == RequestType::Delete => CfnResponse::success(&request, physical_resource_id(&request, None))
            .with_reason(format!("{reason} (the resource is deleted anyway)")),
        Ok(request) => {
            let instance_id = request.resource_properties.get("InstanceId").and_then(Value::as_str);
            CfnResponse::failed(&request, failed_physical_resource_id(&request, instance_id), reason)
        }
        Err(_) => reply.failed(reason),
    };
    let sent = put_answer(sink, store, settings, &reply, &response, now_s).await?;
    Ok(sent.then_some(response))
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
