//! Undo: what a Create or Update that failed (or whose execution timed out or was stopped)
//! takes back before CloudFormation hears of it, and what it says it left.
//!
//! - The command the request's execution sent is cancelled, if it still runs.
//! - The instance profile is put back as it was, when this request started the resource's
//!   lifecycle on the instance (a Create, or the Update that moved the resource to another
//!   instance, which CloudFormation's rollback never sends a Delete for). A failed Update on the
//!   same instance is left to CloudFormation's rollback, which sends the Update back.
//! - A grown volume cannot shrink, and what a bootstrap did on the instance stays: the note says so.
//!
//! Best effort and idempotent: each part that fails is said in the note, never raised, so the
//! answer always follows.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::facts::AssociationState;
use crate::ports::{Ec2, SetupStore, Ssm};
use crate::provision::cfn::{CfnRequest, RequestType};
use crate::provision::guard::{self, StackRef};
use crate::provision::plan::{plan_profile_restore, profile_name, VolumeAction};
use crate::provision::props::is_instance_id;
use crate::provision::state;
use crate::provision::steps::{apply_profile, Plan};

/// What was undone and what was left, for the Reason of the FAILED answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoReport {
    pub undone: Vec<String>,
    pub left: Vec<String>,
}

impl UndoReport {
    /// `undone: …; left as it is: …`, or `None` when there is nothing to say.
    pub fn note(&self) -> Option<String> {
        let mut parts = vec![];
        if !self.undone.is_empty() {
            parts.push(format!("undone: {}", self.undone.join(", ")));
        }
        if !self.left.is_empty() {
            parts.push(format!("left as it is: {}", self.left.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Undoes what the request's execution did. `plan` is the plan when planning got that far;
/// without it (an execution stopped early, seen by the safety net) the instance comes from the
/// request's properties.
pub async fn undo(ec2: &impl Ec2, ssm: &impl Ssm, store: &impl SetupStore, request: &CfnRequest, plan: Option<&Plan>) -> UndoReport {
    let mut report = UndoReport::default();
    if request.request_type == RequestType::Delete {
        return report;
    }
    let sent = state::sent_command(store, &request.request_id).await;
    match &sent {
        Ok(Some(sent)) => match ssm.get_invocation(&sent.command_id, &sent.instance_id).await {
            Ok(inv) if matches!(inv.status.as_str(), "Pending" | "InProgress" | "Delayed") => {
                tracing::info!(stack = %request.stack_id, request_id = %request.request_id, instance = %sent.instance_id,
                    action = "CancelCommand", detail = %sent.command_id, "opsflow changes the instance");
                match ssm.cancel_command(&sent.command_id, &sent.instance_id).await {
                    Ok(()) => report.undone.push(format!("command {} cancelled", sent.command_id)),
                    Err(e) => report
                        .left
                        .push(format!("command {} still running (cancelling failed: {e})", sent.command_id)),
                }
            }
            Ok(_) => {}
            Err(e) => report.left.push(format!("command {} not checked ({e})", sent.command_id)),
        },
        Ok(None) => {}
        Err(e) => report.left.push(format!("the command sent is unknown ({e})")),
    }
    let instance_id = plan.map(|p| p.instance_id.clone()).or_else(|| {
        request
            .resource_properties
            .get("InstanceId")
            .and_then(|v| v.as_str())
            .filter(|id| is_instance_id(id))
            .map(String::from)
    });
    let Some(instance_id) = instance_id else {
        return report;
    };
    if let Err(e) = restore_profile(ec2, store, request, &instance_id, &mut report).await {
        report
            .left
            .push(format!("the instance profile of {instance_id} (restoring it failed: {e})"));
    }
    if let Some(VolumeAction::Grow { volume_id, to, .. }) = plan.and_then(|p| p.volume.as_ref()) {
        report
            .left
            .push(format!("volume {volume_id} at {to} GiB if it grew (EBS volumes cannot shrink)"));
    }
    if plan.is_some_and(|p| p.bootstrap) && sent.is_ok_and(|s| s.is_some()) {
        report.left.push("whatever the bootstrap changed on the instance".to_string());
    }
    report
}

/// Puts the profile back when this request started the lifecycle, and ends the lifecycle.
async fn restore_profile(
    ec2: &impl Ec2,
    store: &impl SetupStore,
    request: &CfnRequest,
    instance_id: &str,
    report: &mut UndoReport,
) -> Result<(), CoreError> {
    let key = state::lifecycle_key(&request.stack_id, &request.logical_resource_id, instance_id);
    let Some(life) = state::lifecycle(store, &key).await? else {
        return Ok(());
    };
    if life.started_by != request.request_id {
        // An earlier request's lifecycle: CloudFormation's rollback puts its properties back.
        return Ok(());
    }
    let instance = ec2.describe_instance(instance_id).await?;
    guard::check_owner(&instance, &StackRef::parse(&request.stack_id)?)?;
    let current = instance.iam_association.as_ref();
    let applied = life.applied_profile_arn.as_deref().unwrap_or_default();
    let action = plan_profile_restore(life.previous_profile_arn.as_deref(), applied, current);
    let previous = life
        .previous_profile_arn
        .as_deref()
        .map_or("no profile".to_string(), |p| profile_name(p).to_string());
    tracing::info!(stack = %request.stack_id, request_id = %request.request_id, instance = instance_id, ?action, "opsflow undoes its profile change");
    let changed = match apply_profile(ec2, instance_id, &action).await.map(|a| a.is_some()) {
        // Another undo of the same request (the safety net, a superseding request) got there
        // first: what counts is what the instance holds now.
        Err(CoreError::NotFound { .. }) => {
            let now = ec2.describe_instance(instance_id).await?;
            let holds = now.iam_association.as_ref().map(|a| profile_name(&a.profile_arn).to_string());
            if holds != life.previous_profile_arn.as_deref().map(|p| profile_name(p).to_string()) {
                return Err(CoreError::conflict(
                    format!("instance {instance_id}"),
                    "its profile changed while it was put back",
                ));
            }
            true
        }
        other => other?,
    };
    let someone_else =
        current.is_some_and(|a| a.state == AssociationState::Associated && profile_name(&a.profile_arn) != profile_name(applied));
    if changed && life.previous_profile_arn.is_none() {
        report.undone.push("instance profile removed, as before".to_string());
    } else if changed {
        report.undone.push(format!("instance profile back to {previous}"));
    } else if someone_else {
        report
            .left
            .push(format!("the instance profile of {instance_id}, changed by someone else since"));
    }
    state::end_lifecycle(store, &key).await
}
