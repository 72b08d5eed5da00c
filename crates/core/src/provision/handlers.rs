//! The Lambda functions of the provisioning state machine, as one JSON-in, JSON-out entry point
//! per function name. The deployed Lambdas (thin mains) and the local engine call the same
//! [`invoke`], so what runs offline is exactly what runs on AWS.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::CoreError;
use crate::ports::{Clock, Ec2, Iam, ResponseSink, SetupStore, Ssm};
use crate::provision::cfn::CfnRequest;
use crate::provision::request::{self, Outcome};
use crate::provision::steps::{self, CommandKind, CommandProgress, Plan, ProfileProgress, ReadyProgress, Settings, VolumeProgress, Watch};

/// The task functions of `statemachines/provision-instance.asl.json` (its `${<Name>FunctionArn}`).
pub const TASK_FUNCTIONS: [&str; 9] = [
    "Plan",
    "AssignProfile",
    "ModifyVolume",
    "CheckReadiness",
    "GrowFilesystem",
    "SendCommand",
    "CheckCommand",
    "Undo",
    "Answer",
];

/// The AWS ports one function uses.
pub struct Ports<E, I, S, R, T> {
    pub ec2: E,
    pub iam: I,
    pub ssm: S,
    pub sink: R,
    /// opsflow's own state (DynamoDB).
    pub store: T,
}

fn parse<T: for<'de> Deserialize<'de>>(function: &str, payload: Value) -> Result<T, CoreError> {
    serde_json::from_value(payload).map_err(|e| CoreError::invalid(format!("{function} input"), e.to_string()))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, CoreError> {
    serde_json::to_value(v).map_err(|e| CoreError::transient("serialize", e.to_string()))
}

#[derive(Deserialize)]
struct RequestAndPlan {
    request: Value,
    plan: Plan,
}

#[derive(Deserialize)]
struct OpInput<P> {
    op: String,
    plan: Plan,
    progress: Option<P>,
}

#[derive(Deserialize)]
struct ProgressInput<P> {
    plan: Plan,
    progress: Option<P>,
}

#[derive(Deserialize)]
struct AnswerInput {
    status: String,
    #[serde(default)]
    step: Option<String>,
    state: Value,
}

fn request_of(v: Value) -> Result<CfnRequest, CoreError> {
    CfnRequest::from_value(v)
}

/// Runs the task function `function` on `payload`. The steps that wait watch what they wait
/// for on `clock` (see [`steps::Watch`]) and return when it is done or their watch is over.
pub async fn invoke<E: Ec2, I: Iam, S: Ssm, R: ResponseSink, T: SetupStore>(
    ports: &Ports<E, I, S, R, T>,
    settings: &Settings,
    clock: &impl Clock,
    function: &str,
    payload: Value,
) -> Result<Value, CoreError> {
    let watch = Watch::start(clock, settings.watch_s);
    match function {
        "Plan" => {
            #[derive(Deserialize)]
            struct In {
                request: Value,
            }
            let input: In = parse(function, payload)?;
            to_value(
                &steps::plan(
                    &ports.ec2,
                    &ports.iam,
                    &ports.store,
                    settings,
                    &request_of(input.request)?,
                    watch.now_s(),
                )
                .await?,
            )
        }
        "AssignProfile" => {
            let input: OpInput<ProfileProgress> = parse(function, payload)?;
            let (ec2, plan) = (&ports.ec2, &input.plan);
            let mut p = match (input.op.as_str(), input.progress) {
                ("assign", _) => steps::assign_profile(ec2, &ports.store, settings, plan, watch.now_s()).await?,
                ("check", Some(p)) => steps::check_association(ec2, settings, plan, &p, watch.now_s()).await?,
                _ => return Err(CoreError::invalid("op", "must be \"assign\", or \"check\" with a progress")),
            };
            while !p.done && watch.pause(&p.poll).await? {
                p = steps::check_association(ec2, settings, plan, &p, watch.now_s()).await?;
            }
            to_value(&p)
        }
        "ModifyVolume" => {
            let input: OpInput<VolumeProgress> = parse(function, payload)?;
            let ec2 = &ports.ec2;
            let mut p = match (input.op.as_str(), input.progress, &input.plan.volume) {
                ("modify", _, Some(action)) => steps::modify_volume(ec2, settings, &input.plan, action, watch.now_s()).await?,
                ("check", Some(p), _) => steps::check_volume(ec2, settings, &input.plan, &p, watch.now_s()).await?,
                _ => {
                    return Err(CoreError::invalid(
                        "op",
                        "must be \"modify\" with a planned volume, or \"check\" with a progress",
                    ))
                }
            };
            while !p.done && watch.pause(&p.poll).await? {
                p = steps::check_volume(ec2, settings, &input.plan, &p, watch.now_s()).await?;
            }
            to_value(&p)
        }
        "CheckReadiness" => {
            let input: ProgressInput<ReadyProgress> = parse(function, payload)?;
            let (ec2, ssm, plan) = (&ports.ec2, &ports.ssm, &input.plan);
            let mut p = steps::check_readiness(ec2, ssm, settings, plan, input.progress.as_ref(), watch.now_s()).await?;
            while !p.ready && watch.pause(&p.poll).await? {
                p = steps::check_readiness(ec2, ssm, settings, plan, Some(&p), watch.now_s()).await?;
            }
            to_value(&p)
        }
        "GrowFilesystem" | "SendCommand" => {
            let kind = if function == "GrowFilesystem" {
                CommandKind::Filesystem
            } else {
                CommandKind::Bootstrap
            };
            let input: RequestAndPlan = parse(function, payload)?;
            let request = request_of(input.request)?;
            let spec = steps::command_spec(kind, settings, &request, &input.plan)?;
            let p = steps::send_command(
                &ports.ec2,
                &ports.ssm,
                &ports.store,
                kind,
                &spec,
                &input.plan,
                settings,
                watch.now_s(),
            )
            .await?;
            to_value(&watch_command(ports, settings, &watch, &input.plan, p).await?)
        }
        "CheckCommand" => {
            let input: ProgressInput<CommandProgress> = parse(function, payload)?;
            let progress = input.progress.ok_or_else(|| CoreError::invalid("progress", "is required"))?;
            let p = steps::check_command(&ports.ec2, &ports.ssm, settings, &input.plan, &progress, watch.now_s()).await?;
            to_value(&watch_command(ports, settings, &watch, &input.plan, p).await?)
        }
        "Undo" => {
            #[derive(Deserialize)]
            struct In {
                state: Value,
            }
            let input: In = parse(function, payload)?;
            let request = request_of(input.state.get("request").cloned().unwrap_or(Value::Null))?;
            let plan: Option<Plan> = input.state.get("plan").and_then(|p| serde_json::from_value(p.clone()).ok());
            let report = crate::provision::undo::undo(&ports.ec2, &ports.ssm, &ports.store, &request, plan.as_ref()).await;
            Ok(json!({"undone": report.undone, "left": report.left, "note": report.note()}))
        }
        "Answer" => {
            let input: AnswerInput = parse(function, payload)?;
            let outcome = outcome_of(&input);
            let request = request_of(input.state.get("request").cloned().unwrap_or(Value::Null))?;
            let response = request::answer(&ports.sink, &ports.store, settings, &request, &outcome, watch.now_s()).await?;
            Ok(json!({"status": response.status, "reason": response.reason, "physicalResourceId": response.physical_resource_id}))
        }
        other => Err(CoreError::invalid(
            "function",
            format!("'{other}' is not one of {}", TASK_FUNCTIONS.join(", ")),
        )),
    }
}

/// Watches a command until it ends or the watch is over.
async fn watch_command<E: Ec2, I: Iam, S: Ssm, R: ResponseSink, T: SetupStore>(
    ports: &Ports<E, I, S, R, T>,
    settings: &Settings,
    watch: &Watch<'_, impl Clock>,
    plan: &Plan,
    mut p: CommandProgress,
) -> Result<CommandProgress, CoreError> {
    while !p.done && watch.pause(&p.poll).await? {
        p = steps::check_command(&ports.ec2, &ports.ssm, settings, plan, &p, watch.now_s()).await?;
    }
    Ok(p)
}

/// What the answer reports, read from the state the workflow accumulated.
fn outcome_of(input: &AnswerInput) -> Outcome {
    let s = &input.state;
    let plan: Option<Plan> = s.get("plan").and_then(|p| serde_json::from_value(p.clone()).ok());
    let is_delete = s.pointer("/request/RequestType").and_then(Value::as_str) == Some("Delete");
    let mut data = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            data.insert(k.to_string(), v);
        }
    };
    put("AssociationId", s.pointer("/profile/associationId").cloned());
    put(
        "PreviousInstanceProfileArn",
        plan.as_ref().and_then(|p| p.previous_profile_arn.clone()).map(Value::String),
    );
    let volume_size = s
        .pointer("/volume/targetSizeGiB")
        .cloned()
        .or_else(|| match plan.as_ref().and_then(|p| p.volume.clone()) {
            Some(crate::provision::plan::VolumeAction::Nothing { size_gib, .. }) => Some(json!(size_gib)),
            Some(crate::provision::plan::VolumeAction::Grow { to, .. }) => Some(json!(to)),
            Some(crate::provision::plan::VolumeAction::WaitForModification { target_size_gib, .. }) => Some(json!(target_size_gib)),
            None => None,
        });
    put("VolumeSizeGiB", volume_size);
    put(
        "FilesystemSizeGiB",
        s.pointer("/filesystem/filesystemSizeBytes")
            .and_then(Value::as_u64)
            .map(|b| json!(format!("{:.1}", b as f64 / 1073741824.0))),
    );
    put(
        "Rebooted",
        s.pointer("/ready/rebootedAt").filter(|v| !v.is_null()).map(|_| json!("true")),
    );
    put("CommandId", s.pointer("/bootstrap/commandId").cloned());
    put("CommandStatus", s.pointer("/bootstrap/status").cloned());
    let error = s.pointer("/error/Error").and_then(Value::as_str).map(String::from);
    let cause = s.pointer("/error/Cause").and_then(Value::as_str).map(String::from);
    let status = if input.status == "SUCCESS" { "SUCCESS" } else { "FAILED" };
    Outcome {
        status: status.to_string(),
        step: input.step.clone(),
        error,
        cause,
        plan,
        data,
        delete: is_delete,
        // Going on without SSM (the reboot fallback) is the one success with something to say.
        note: match s.pointer("/ready/ssmAvailable") {
            Some(Value::Bool(false)) => s.pointer("/ready/reason").and_then(Value::as_str).map(String::from),
            _ => None,
        },
        undone: s.pointer("/undo/note").and_then(Value::as_str).map(String::from),
    }
}
