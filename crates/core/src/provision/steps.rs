//! The steps of the provisioning workflow, one per Lambda: each takes the small JSON the state
//! machine hands it, reads fresh facts through the ports, decides with [`crate::provision::plan`], acts,
//! and returns the small JSON the next state needs. Every step is idempotent: run twice (a
//! retry, a replay), it finds the work done and reports it instead of doing it again.
//!
//! Waits are poll loops. A step that starts something slow (an association, a volume
//! modification, a command) or waits for readiness [`Watch`]es it while it runs: it checks
//! again after each [`Poll`] delay (1 s, backing off to 5 s) for up to
//! [`Settings::watch_s`], so what becomes ready is noticed within seconds without a state
//! transition per check. Past that window it hands the wait back to the state machine
//! (Wait → check step → Choice), which calls the check step again. A check fails with
//! `DeadlineExceeded` past its deadline.

use serde::{Deserialize, Serialize};

use crate::command::CommandSpec;
use crate::command::{command_outcome, invocation_lookup_error, CommandOutcome, InvocationLookup, DEFAULT_TAIL_BYTES, INVOCATION_GRACE_S};
use crate::error::CoreError;
use crate::facts::{Association, AssociationState, InstanceFacts, ModificationState, PingStatus, Platform};
use crate::ports::{Ec2, Iam, SetupStore, Ssm};
use crate::provision::cfn::{changed_fields, physical_resource_id, CfnRequest, ChangeSet, RequestType};
use crate::provision::guard::{self, StackRef};
use crate::provision::plan::{
    check_reboot_fallback, choose_volume, plan_profile, plan_profile_restore, plan_profile_to, plan_volume, profile_name, verify_profile,
    ProfileAction, VolumeAction, VolumeRules,
};
use crate::provision::props::{AllowList, Bootstrap, BootstrapAction, OnDelete, SetupProps};
use crate::provision::script::{bootstrap_command, fs_grow_command, parse_fs_size, FsTarget, FS_GROW_TIMEOUT_SECONDS};
use crate::provision::state;
use crate::readiness::{readiness, Readiness, ReadinessFacts};
pub use crate::wait::{Poll, PollPolicy, Watch};

/// Deployment settings of the steps (from the Lambdas' environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub allow_list: AllowList,
    pub volume_rules: VolumeRules,
    /// How long to wait for an association to become `associated`.
    pub association_timeout_s: i64,
    /// How long to wait for a volume modification to reach `optimizing`.
    pub volume_timeout_s: i64,
    /// How long to wait for the instance to run, pass its status checks and be Online in SSM.
    pub readiness_timeout_s: i64,
    /// With `RebootFallback`: how long to wait after the reboot (the instance back with passing
    /// status checks, and SSM Online if it comes).
    pub reboot_timeout_s: i64,
    pub poll: PollPolicy,
    /// How long one invocation of a step may keep watching what it waits for before it hands
    /// the wait back to the state machine. The waiting Lambdas' timeout must be longer.
    pub watch_s: i64,
    /// The deployment's `MaxVolumeSizeGiB`: no IAM condition can bound ModifyVolume's size.
    pub max_volume_size_gib: u32,
    /// This account (`ACCOUNT_ID`): the only account whose documents a bootstrap may name by
    /// ARN. Unset, the requesting stack's account.
    pub account_id: Option<String>,
    /// `OPSFLOW_LOCAL_RESPONSE_URLS=1`: answers may go to `http://127.0.0.1` (the local cloud).
    pub local_response_urls: bool,
    /// How long the request handler retries throttling and transient errors before it answers
    /// FAILED (its Lambda timeout must be longer).
    pub request_retry_s: i64,
    /// Whether the request handler checks with CloudFormation that a request belongs to a stack
    /// operation under way ([`guard::check_live_request`]). Always on in a deployment; off only
    /// for local runs whose requests no stack sent.
    pub verify_stack: bool,
}

impl Settings {
    pub fn new(allow_list: AllowList) -> Settings {
        Settings {
            allow_list,
            volume_rules: VolumeRules::CURRENT,
            association_timeout_s: 300,
            volume_timeout_s: 1800,
            readiness_timeout_s: 900,
            reboot_timeout_s: 600,
            poll: PollPolicy::DEFAULT,
            watch_s: DEFAULT_WATCH_SECONDS,
            max_volume_size_gib: DEFAULT_MAX_VOLUME_SIZE_GIB,
            account_id: None,
            local_response_urls: false,
            request_retry_s: 20,
            verify_stack: true,
        }
    }
}

/// [`Settings::max_volume_size_gib`] by default (the template's `MaxVolumeSizeGiB` default).
pub const DEFAULT_MAX_VOLUME_SIZE_GIB: u32 = 2048;

/// [`Settings::watch_s`] by default: two minutes of watching per invocation.
pub const DEFAULT_WATCH_SECONDS: i64 = 120;

/// What the plan step decided; the state machine branches on the `action` fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub instance_id: String,
    /// The requesting stack's id: every step that changes the instance checks again that the
    /// instance belongs to it ([`guard::check_owner`]).
    pub stack_id: String,
    /// The resource's logical id and the request: with the stack, they name the resource's
    /// lifecycle in opsflow's state ([`state::lifecycle_key`]).
    pub logical_resource_id: String,
    pub request_id: String,
    /// A Delete putting back the profile the instance had before (`OnDelete: Revert`).
    #[serde(default)]
    pub reverting: bool,
    /// When the whole setup must be over (seconds since the epoch): every wait's deadline is
    /// capped by it, so CloudFormation is answered before its `ServiceTimeout`.
    pub deadline_epoch_s: i64,
    pub platform: Platform,
    pub physical_resource_id: String,
    /// `Nothing`, `Associate`, `Replace`, `Disassociate` or `WaitForAssociation`.
    pub profile: ProfileAction,
    /// The profile (ARN) the instance must end with, when one is wanted.
    pub wanted_profile_arn: Option<String>,
    /// The profile (ARN) the instance had before, reported in the output.
    pub previous_profile_arn: Option<String>,
    /// `Nothing`, `Grow` or `WaitForModification`; absent when no size is asked.
    pub volume: Option<VolumeAction>,
    /// The volume's device and whether it is the root volume, when a size is asked.
    pub device: Option<String>,
    pub grow_filesystem: bool,
    pub bootstrap: bool,
    /// True when SSM must be reachable (file system or bootstrap).
    pub needs_ssm: bool,
    /// `RebootFallback`, checked to be possible: when SSM does not come online, reboot so that
    /// cloud-init grows the root partition at boot.
    #[serde(default)]
    pub reboot_fallback: bool,
}

impl Plan {
    /// The key of this resource's lifecycle on the plan's instance.
    pub fn lifecycle_key(&self) -> String {
        state::lifecycle_key(&self.stack_id, &self.logical_resource_id, &self.instance_id)
    }

    /// A wait of `timeout_s` from now, its deadline capped by the plan's.
    pub fn poll(&self, now_s: i64, timeout_s: i64, policy: PollPolicy) -> Poll {
        Poll::start(now_s, timeout_s.min(self.deadline_epoch_s - now_s).max(0), policy)
    }

    fn stack(&self) -> Result<StackRef<'_>, CoreError> {
        StackRef::parse(&self.stack_id)
    }

    /// Reads the instance and checks that it still belongs to the plan's stack and can be set
    /// up: a step can be invoked directly, with any plan, so each one that changes the
    /// instance checks for itself.
    pub(crate) async fn owned_instance(&self, ec2: &impl Ec2) -> Result<InstanceFacts, CoreError> {
        let stack = self.stack()?;
        let instance = ec2.describe_instance(&self.instance_id).await?;
        guard::check_owner(&instance, &stack)?;
        guard::check_instance_state(&instance)?;
        Ok(instance)
    }

    /// Logs a change opsflow is about to make (the audit trail: stack, instance, action).
    pub(crate) fn audit(&self, action: &str, detail: &str) {
        tracing::info!(
            stack = %self.stack_id,
            physical_resource_id = %self.physical_resource_id,
            instance = %self.instance_id,
            action,
            detail,
            "opsflow changes the instance"
        );
    }
}

/// The request's properties, validated against the deployment's rules: the properties' own
/// rules, the stack id, the volume size cap and the documents a bootstrap may name.
pub fn checked_props<'r>(request: &'r CfnRequest, settings: &Settings) -> Result<(SetupProps, StackRef<'r>), CoreError> {
    // A Delete only puts back what the instance had: a profile taken off the allow-list since
    // must not stop it.
    let props = if request.request_type == RequestType::Delete {
        SetupProps::parse(&request.resource_properties, &AllowList::everything())?
    } else {
        SetupProps::parse(&request.resource_properties, &settings.allow_list)?
    };
    let stack = StackRef::parse(&request.stack_id)?;
    if let Some(size) = props.volume_size_gib {
        guard::check_volume_size(size, settings.max_volume_size_gib)?;
    }
    if let Some(Bootstrap {
        action: BootstrapAction::Document { name, .. },
        ..
    }) = &props.bootstrap
    {
        guard::check_document(name, settings.account_id.as_deref().unwrap_or(stack.account))?;
    }
    Ok((props, stack))
}

/// Plan: validates the properties (again — the request handler did so first), reads the
/// instance, its volume and the wanted profile, and decides every step. Read-only.
pub async fn plan(
    ec2: &impl Ec2,
    iam: &impl Iam,
    store: &impl SetupStore,
    settings: &Settings,
    request: &CfnRequest,
    now_s: i64,
) -> Result<Plan, CoreError> {
    let (props, stack) = checked_props(request, settings)?;
    let deadline_epoch_s = now_s + props.setup_window_s();
    let changes = match (&request.request_type, &request.old_resource_properties) {
        (RequestType::Update, Some(old)) => changed_fields(old, &request.resource_properties),
        _ => ChangeSet::ALL,
    };
    let instance = ec2.describe_instance(&props.instance_id).await?;
    guard::check_owner(&instance, &stack)?;
    let physical_resource_id = physical_resource_id(request, Some(&props.instance_id));
    let current = instance.iam_association.as_ref();

    if request.request_type == RequestType::Delete {
        // Exactly what the instance had before this resource's lifecycle, from opsflow's own
        // state; nothing when opsflow never changed the profile.
        let key = state::lifecycle_key(&request.stack_id, &request.logical_resource_id, &props.instance_id);
        let profile = match (props.on_delete, state::lifecycle(store, &key).await?) {
            (OnDelete::Revert, Some(life)) => match life.applied_profile_arn.as_deref() {
                Some(applied) => plan_profile_restore(life.previous_profile_arn.as_deref(), applied, current),
                None => ProfileAction::Nothing,
            },
            _ => ProfileAction::Nothing,
        };
        let wanted = match &profile {
            ProfileAction::Associate { profile } | ProfileAction::Replace { profile, .. } => Some(profile.clone()),
            _ => None,
        };
        return Ok(Plan {
            instance_id: props.instance_id,
            stack_id: request.stack_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            request_id: request.request_id.clone(),
            reverting: true,
            deadline_epoch_s,
            platform: instance.platform,
            physical_resource_id,
            profile,
            wanted_profile_arn: wanted,
            previous_profile_arn: current.map(|a| a.profile_arn.clone()),
            volume: None,
            device: None,
            grow_filesystem: false,
            bootstrap: false,
            needs_ssm: false,
            reboot_fallback: false,
        });
    }

    guard::check_instance_state(&instance)?;
    let (profile, wanted_profile_arn) = match &props.instance_profile {
        Some(spec) => {
            let found = iam.get_instance_profile(&spec.name).await?;
            verify_profile(spec, &found, &settings.allow_list)?;
            (plan_profile(Some(&found), current), Some(found.arn))
        }
        None => (ProfileAction::Nothing, None),
    };
    let (volume, device) = match props.volume_size_gib {
        Some(size) => {
            let chosen = choose_volume(&instance, props.device.as_deref())?;
            if props.reboot_fallback {
                check_reboot_fallback(&props.instance_id, instance.platform, &chosen)?;
            }
            let facts = ec2.describe_volume(&chosen.volume_id).await?;
            (
                Some(plan_volume(Some(size), &facts, now_s, &settings.volume_rules)?),
                Some(chosen.device_name),
            )
        }
        None => (None, None),
    };
    let grown = matches!(
        volume,
        Some(VolumeAction::Grow { .. }) | Some(VolumeAction::WaitForModification { .. })
    );
    let grow_filesystem = volume.is_some() && (grown || changes.volume);
    let bootstrap = props.bootstrap.is_some() && changes.bootstrap;
    Ok(Plan {
        instance_id: props.instance_id,
        stack_id: request.stack_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        request_id: request.request_id.clone(),
        reverting: false,
        deadline_epoch_s,
        platform: instance.platform,
        physical_resource_id,
        profile,
        wanted_profile_arn,
        previous_profile_arn: current.map(|a| a.profile_arn.clone()),
        volume,
        device,
        grow_filesystem,
        bootstrap,
        needs_ssm: grow_filesystem || bootstrap,
        reboot_fallback: props.reboot_fallback && grow_filesystem,
    })
}

/// Progress of the profile association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileProgress {
    pub association_id: Option<String>,
    pub state: Option<AssociationState>,
    pub done: bool,
    pub poll: Poll,
}

fn holds(assoc: Option<&crate::facts::Association>, wanted: Option<&str>) -> bool {
    match (assoc, wanted) {
        (Some(a), Some(w)) => profile_name(&a.profile_arn) == profile_name(w),
        (None, None) => true,
        _ => false,
    }
}

/// AssignProfile: records the previous profile (for `OnDelete: Revert`) the first time, then
/// associates, replaces or disassociates — unless the instance already holds the wanted
/// profile. IAM's eventual consistency (EC2 rejecting a just-created profile as invalid) is
/// reported as `Transient`, which the state machine retries with backoff.
pub async fn assign_profile(
    ec2: &impl Ec2,
    store: &impl SetupStore,
    settings: &Settings,
    plan: &Plan,
    now_s: i64,
) -> Result<ProfileProgress, CoreError> {
    let id = &plan.instance_id;
    let instance = plan.owned_instance(ec2).await?;
    let current = instance.iam_association.as_ref();
    let wanted = plan.wanted_profile_arn.as_deref();
    let poll = plan.poll(now_s, settings.association_timeout_s, settings.poll);
    if holds(current, wanted) {
        let done = current.is_none_or(|a| a.state == AssociationState::Associated);
        return Ok(ProfileProgress {
            association_id: current.map(|a| a.association_id.clone()),
            state: current.map(|a| a.state),
            done,
            poll,
        });
    }
    // Before the first change of the lifecycle, remember what the instance had (a retried or
    // later change keeps that first record).
    if !plan.reverting {
        let fresh = state::Lifecycle {
            instance_id: id.clone(),
            previous_profile_arn: current
                .filter(|a| matches!(a.state, AssociationState::Associated | AssociationState::Associating))
                .map(|a| a.profile_arn.clone()),
            applied_profile_arn: None,
            started_by: plan.request_id.clone(),
        };
        let life = state::begin_lifecycle(store, &plan.lifecycle_key(), &fresh).await?;
        state::record_applied(store, &plan.lifecycle_key(), life, wanted).await?;
    }
    let not_yet_visible = |e: CoreError| match e {
        CoreError::InvalidInput { ref rule, .. } if rule.contains("iamInstanceProfile") || rule.contains("IAM Instance Profile") => {
            CoreError::transient(
                "AssociateIamInstanceProfile",
                format!("the instance profile is not yet visible to EC2 ({rule})"),
            )
        }
        other => other,
    };
    // Re-plan on fresh facts: the plan may be stale after a retry.
    let action = match (wanted, current) {
        (Some(w), _) => plan_profile_to(w, current),
        (None, Some(a)) if a.state == AssociationState::Associated => ProfileAction::Disassociate {
            association_id: a.association_id.clone(),
        },
        (None, Some(a)) if a.state == AssociationState::Associating => ProfileAction::WaitForAssociation {
            association_id: a.association_id.clone(),
            state: a.state,
        },
        (None, _) => ProfileAction::Nothing,
    };
    if let ProfileAction::WaitForAssociation { association_id, state } = action {
        return Ok(ProfileProgress {
            association_id: Some(association_id),
            state: Some(state),
            done: false,
            poll,
        });
    }
    if let Some((operation, detail)) = action.call() {
        plan.audit(operation, detail);
    }
    let assoc = apply_profile(ec2, id, &action).await.map_err(not_yet_visible)?;
    Ok(ProfileProgress {
        association_id: assoc.as_ref().map(|a| a.association_id.clone()),
        state: assoc.as_ref().map(|a| a.state),
        done: assoc.is_none(),
        poll,
    })
}

/// Makes the profile change `action` names; the association it leaves, `None` when there is
/// nothing to change. An association still changing is a `Conflict`: the caller waits first.
pub(crate) async fn apply_profile(ec2: &impl Ec2, instance_id: &str, action: &ProfileAction) -> Result<Option<Association>, CoreError> {
    match action {
        ProfileAction::Nothing => Ok(None),
        ProfileAction::Associate { profile } => ec2.associate_profile(instance_id, profile).await.map(Some),
        ProfileAction::Replace { association_id, profile } => ec2.replace_profile_association(association_id, profile).await.map(Some),
        ProfileAction::Disassociate { association_id } => ec2.disassociate_profile(association_id).await.map(Some),
        ProfileAction::WaitForAssociation { .. } => Err(CoreError::conflict(
            format!("instance {instance_id}"),
            "its profile association is still changing",
        )),
    }
}

/// CheckAssociation: done when the instance holds the wanted profile, `associated`.
pub async fn check_association(
    ec2: &impl Ec2,
    settings: &Settings,
    plan: &Plan,
    progress: &ProfileProgress,
    now_s: i64,
) -> Result<ProfileProgress, CoreError> {
    let current = ec2.describe_association(&plan.instance_id).await?;
    let wanted = plan.wanted_profile_arn.as_deref();
    let done = holds(current.as_ref(), wanted) && current.as_ref().is_none_or(|a| a.state == AssociationState::Associated);
    let poll = if done {
        progress.poll.clone()
    } else {
        let state = current
            .as_ref()
            .map_or("no association".to_string(), |a| format!("{} is {}", a.profile_arn, a.state));
        progress.poll.next(
            now_s,
            settings.poll,
            "WaitForAssociation",
            &format!("instance {}: {state}", plan.instance_id),
        )?
    };
    Ok(ProfileProgress {
        association_id: current.as_ref().map(|a| a.association_id.clone()),
        state: current.map(|a| a.state),
        done,
        poll,
    })
}

/// Progress of the volume modification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    pub volume_id: String,
    pub target_size_gib: u32,
    pub state: Option<ModificationState>,
    pub done: bool,
    pub poll: Poll,
}

/// A size increase is usable once the modification is `optimizing` (AWS: the file system can
/// be extended then), so that is where the wait ends.
fn usable(state: ModificationState) -> bool {
    matches!(state, ModificationState::Optimizing | ModificationState::Completed)
}

/// ModifyVolume: starts the modification unless one to the size (or more) is already under
/// way or done; a modification in progress is waited on, not failed.
pub async fn modify_volume(
    ec2: &impl Ec2,
    settings: &Settings,
    plan: &Plan,
    action: &VolumeAction,
    now_s: i64,
) -> Result<VolumeProgress, CoreError> {
    let poll = plan.poll(now_s, settings.volume_timeout_s, settings.poll);
    let (volume_id, target) = match action {
        VolumeAction::Nothing { volume_id, size_gib } => {
            return Ok(VolumeProgress {
                volume_id: volume_id.clone(),
                target_size_gib: *size_gib,
                state: None,
                done: true,
                poll,
            })
        }
        VolumeAction::Grow { volume_id, to, .. } => (volume_id.clone(), *to),
        VolumeAction::WaitForModification {
            volume_id,
            target_size_gib,
            ..
        } => (volume_id.clone(), *target_size_gib),
    };
    if let Some(m) = ec2.describe_volume_modification(&volume_id).await? {
        let reached = m.target_size_gib >= target && m.state != ModificationState::Failed;
        let in_progress = matches!(m.state, ModificationState::Modifying | ModificationState::Optimizing);
        if reached || in_progress {
            // Our own earlier call (a retry), or someone else's: wait for it, then check the size.
            return Ok(VolumeProgress {
                volume_id,
                target_size_gib: target,
                state: Some(m.state),
                done: reached && usable(m.state),
                poll,
            });
        }
    }
    // Only a volume of the stack's own instance, and never past the deployment's cap (no IAM
    // condition ties a volume to its instance's tags or bounds its size).
    let instance = plan.owned_instance(ec2).await?;
    if !instance.block_devices.iter().any(|d| d.volume_id == volume_id) {
        return Err(CoreError::forbidden(
            format!("volume {volume_id}"),
            format!(
                "is not attached to instance {}: opsflow grows only the instance's own volumes",
                plan.instance_id
            ),
        ));
    }
    guard::check_volume_size(target, settings.max_volume_size_gib)?;
    plan.audit("ModifyVolume", &format!("{volume_id} to {target} GiB"));
    match ec2.modify_volume(&volume_id, target).await {
        Ok(m) => Ok(VolumeProgress {
            volume_id,
            target_size_gib: target,
            state: Some(m.state),
            done: usable(m.state),
            poll,
        }),
        Err(CoreError::Conflict { .. }) => Ok(VolumeProgress {
            volume_id,
            target_size_gib: target,
            state: None,
            done: false,
            poll,
        }),
        Err(e) => Err(e),
    }
}

/// CheckVolume: done when the modification to the size is `optimizing` or `completed`; a
/// modification to a smaller size (someone else's) that ends is followed by ours.
pub async fn check_volume(
    ec2: &impl Ec2,
    settings: &Settings,
    plan: &Plan,
    progress: &VolumeProgress,
    now_s: i64,
) -> Result<VolumeProgress, CoreError> {
    let m = ec2.describe_volume_modification(&progress.volume_id).await?;
    let state = m.as_ref().map(|m| m.state);
    match &m {
        Some(m) if m.state == ModificationState::Failed && m.target_size_gib >= progress.target_size_gib => {
            return Err(CoreError::conflict(
                format!("volume {}", progress.volume_id),
                format!("the modification to {} GiB failed", m.target_size_gib),
            ));
        }
        Some(m) if m.target_size_gib >= progress.target_size_gib && usable(m.state) => {
            return Ok(VolumeProgress {
                state,
                done: true,
                ..progress.clone()
            });
        }
        Some(m) if m.target_size_gib < progress.target_size_gib && !matches!(m.state, ModificationState::Modifying) => {
            // The earlier modification is usable now: start ours.
            let again = modify_volume(
                ec2,
                settings,
                plan,
                &VolumeAction::Grow {
                    volume_id: progress.volume_id.clone(),
                    from: m.target_size_gib,
                    to: progress.target_size_gib,
                },
                now_s,
            )
            .await?;
            if !again.done {
                let poll = progress
                    .poll
                    .next(now_s, settings.poll, "WaitForVolume", "the modification was just started")?;
                return Ok(VolumeProgress { poll, ..again });
            }
            return Ok(again);
        }
        _ => {}
    }
    let why = match &m {
        Some(m) => format!(
            "volume {}: modification to {} GiB is {}",
            progress.volume_id, m.target_size_gib, m.state
        ),
        None => format!("volume {}: no modification is reported yet", progress.volume_id),
    };
    let poll = progress.poll.next(now_s, settings.poll, "WaitForVolume", &why)?;
    Ok(VolumeProgress {
        state,
        done: false,
        poll,
        ..progress.clone()
    })
}

/// Readiness progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyProgress {
    /// Done waiting: go on.
    pub ready: bool,
    /// False only when going on without SSM: after the reboot fallback, with SSM still not
    /// available and nothing else needing it (cloud-init grew the root partition at boot).
    #[serde(default = "yes")]
    pub ssm_available: bool,
    /// When the reboot fallback rebooted the instance (seconds since the epoch).
    #[serde(default)]
    pub rebooted_at: Option<i64>,
    pub reason: Option<String>,
    pub poll: Poll,
}

fn yes() -> bool {
    true
}

/// CheckReadiness: the instance runs, passes both status checks and is Online in SSM.
/// `progress` is `None` on the first check.
///
/// With the plan's reboot fallback, a deadline passed with the instance healthy but SSM not
/// online reboots the instance once (cloud-init grows the root partition at boot; a restarted
/// agent picks up the instance profile's credentials at once) and waits again for
/// `reboot_timeout_s`. If SSM is still not online then and no bootstrap needs it, the workflow
/// goes on without SSM; otherwise the deadline is an error.
pub async fn check_readiness(
    ec2: &impl Ec2,
    ssm: &impl Ssm,
    settings: &Settings,
    plan: &Plan,
    progress: Option<&ReadyProgress>,
    now_s: i64,
) -> Result<ReadyProgress, CoreError> {
    let poll = progress.map_or_else(|| plan.poll(now_s, settings.readiness_timeout_s, settings.poll), |p| p.poll.clone());
    let rebooted_at = progress.and_then(|p| p.rebooted_at);
    let instance = ec2.describe_instance(&plan.instance_id).await?;
    let status = ec2.instance_status(&plan.instance_id).await?;
    let ping = ssm.ping_status(&plan.instance_id).await?;
    let facts = ReadinessFacts {
        instance_id: plan.instance_id.clone(),
        state: instance.state,
        status,
        ping,
    };
    let reason = match readiness(&facts) {
        Readiness::Ready => {
            return Ok(ReadyProgress {
                ready: true,
                ssm_available: true,
                rebooted_at,
                reason: None,
                poll,
            })
        }
        Readiness::Failed { reason } => return Err(CoreError::conflict(format!("instance {}", plan.instance_id), reason)),
        Readiness::Waiting { reason } => reason,
    };
    let waiting = |poll: Poll, reason: String| ReadyProgress {
        ready: false,
        ssm_available: true,
        rebooted_at,
        reason: Some(reason),
        poll,
    };
    if progress.is_none() {
        return Ok(waiting(poll, reason));
    }
    let what = if rebooted_at.is_some() {
        "WaitAfterReboot"
    } else {
        "WaitForReadiness"
    };
    if now_s < poll.deadline_epoch_s {
        return Ok(waiting(poll.next(now_s, settings.poll, what, &reason)?, reason));
    }
    // Only SSM is missing when the same facts with the agent online would be ready.
    let only_ssm_missing = readiness(&ReadinessFacts {
        ping: Some(PingStatus::Online),
        ..facts
    }) == Readiness::Ready;
    if !plan.reboot_fallback || !only_ssm_missing {
        let hint = if plan.grow_filesystem && only_ssm_missing {
            "; the file system was not grown: set RebootFallback to true to reboot the instance and let cloud-init grow the root partition"
        } else {
            ""
        };
        return Err(poll.expired(what, &format!("{reason}{hint}")));
    }
    match rebooted_at {
        None => {
            guard::check_owner(&instance, &plan.stack()?)?;
            plan.audit("RebootInstances", "RebootFallback: SSM is not available");
            ec2.reboot_instance(&plan.instance_id).await?;
            Ok(ReadyProgress {
                ready: false,
                ssm_available: true,
                rebooted_at: Some(now_s),
                reason: Some(format!(
                    "rebooted {} (RebootFallback) because SSM was not available: {reason}",
                    plan.instance_id
                )),
                poll: plan.poll(now_s, settings.reboot_timeout_s, settings.poll),
            })
        }
        Some(_) if !plan.bootstrap => Ok(ReadyProgress {
            ready: true,
            ssm_available: false,
            rebooted_at,
            reason: Some(format!(
                "{} was rebooted (RebootFallback) because SSM was not available, and cloud-init grew the root partition at boot; \
                 the file system size is not verified: {reason}",
                plan.instance_id
            )),
            poll,
        }),
        Some(_) => Err(poll.expired(
            what,
            &format!("{reason}; the bootstrap needs SSM, which is still not available after the reboot"),
        )),
    }
}

/// Which command a command step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandKind {
    /// Grow the partition and file system of the chosen volume.
    Filesystem,
    /// The template's `Bootstrap`.
    Bootstrap,
}

impl CommandKind {
    /// The step's name in messages.
    pub fn step(self) -> &'static str {
        match self {
            CommandKind::Filesystem => "GrowFilesystem",
            CommandKind::Bootstrap => "Bootstrap",
        }
    }
}

/// A command sent and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandProgress {
    pub kind: CommandKind,
    pub command_id: String,
    pub sent_at_epoch_s: i64,
    pub done: bool,
    pub status: Option<String>,
    pub exit_code: Option<i32>,
    /// The end of the output (at most 1 KiB; the full output goes to S3 / CloudWatch when set).
    pub tail: Option<String>,
    /// For the file system command: the size it reports, in bytes.
    pub filesystem_size_bytes: Option<u64>,
    pub poll: Poll,
}

/// The command a step runs, from the request's properties and the plan.
pub fn command_spec(kind: CommandKind, settings: &Settings, request: &CfnRequest, plan: &Plan) -> Result<CommandSpec, CoreError> {
    let props = SetupProps::parse(&request.resource_properties, &settings.allow_list)?;
    match kind {
        CommandKind::Bootstrap => {
            let b = props
                .bootstrap
                .ok_or_else(|| CoreError::invalid("Bootstrap", "is required for the bootstrap step"))?;
            Ok(bootstrap_command(&b, plan.platform))
        }
        CommandKind::Filesystem => {
            let device = plan
                .device
                .clone()
                .ok_or_else(|| CoreError::invalid("VolumeSizeGiB", "is required for the file system step"))?;
            let instance_root = props.device.is_none();
            let volume = crate::provision::plan::ChosenVolume {
                device_name: device,
                volume_id: match &plan.volume {
                    Some(
                        VolumeAction::Nothing { volume_id, .. }
                        | VolumeAction::Grow { volume_id, .. }
                        | VolumeAction::WaitForModification { volume_id, .. },
                    ) => volume_id.clone(),
                    None => String::new(),
                },
                is_root: instance_root,
            };
            fs_grow_command(plan.platform, &FsTarget::for_volume(plan.platform, &volume))
        }
    }
}

/// SendCommand: sends the file system or bootstrap command to the instance.
#[allow(clippy::too_many_arguments)]
pub async fn send_command(
    ec2: &impl Ec2,
    ssm: &impl Ssm,
    store: &impl SetupStore,
    kind: CommandKind,
    spec: &CommandSpec,
    plan: &Plan,
    settings: &Settings,
    now_s: i64,
) -> Result<CommandProgress, CoreError> {
    plan.owned_instance(ec2).await?;
    plan.audit("SendCommand", &format!("{} ({})", spec.document_name, kind.step()));
    let command_id = ssm.send_command(spec, &plan.instance_id).await?;
    // Whatever ends the execution (a failure, a timeout, an abort) cancels it from there.
    state::record_command(store, &plan.request_id, &command_id, &plan.instance_id, now_s).await?;
    let timeout = match kind {
        CommandKind::Filesystem => FS_GROW_TIMEOUT_SECONDS,
        CommandKind::Bootstrap => spec.timeout_seconds,
    };
    // The deadline covers delivery and the command's own execution timeout, plus a margin,
    // within the plan's: past it the command is cancelled (see check_command).
    let poll = plan.poll(now_s, i64::from(timeout) * 2 + 60, settings.poll);
    Ok(CommandProgress {
        kind,
        command_id,
        sent_at_epoch_s: now_s,
        done: false,
        status: None,
        exit_code: None,
        tail: None,
        filesystem_size_bytes: None,
        poll,
    })
}

/// CheckCommand: reads the invocation. Success → done; any other final status →
/// `CommandFailed` with the status, exit code and the end of the output.
///
/// While the command runs, the instance must still be there to run it: one that stops or
/// terminates fails the step at once (instead of when the command times out). A command that
/// outlives its deadline (its own, or the plan's) is cancelled.
pub async fn check_command(
    ec2: &impl Ec2,
    ssm: &impl Ssm,
    settings: &Settings,
    plan: &Plan,
    progress: &CommandProgress,
    now_s: i64,
) -> Result<CommandProgress, CoreError> {
    let cancelled = |e: CoreError| async {
        let note = cancel_command(ssm, plan, &progress.command_id).await;
        match e {
            CoreError::DeadlineExceeded { what, detail } => CoreError::DeadlineExceeded {
                what,
                detail: format!("{detail}; {note}"),
            },
            CoreError::Conflict { resource, detail } => CoreError::Conflict {
                resource,
                detail: format!("{detail}; {note}"),
            },
            other => other,
        }
    };
    match read_command(ssm, settings, plan, progress, now_s).await {
        Ok(p) if !p.done => {
            let gone = match ec2.describe_instance(&plan.instance_id).await {
                Ok(i) => i.state.is_going_down().then(|| i.state.to_string()),
                Err(CoreError::NotFound { .. }) => Some("gone".to_string()),
                Err(e) => return Err(e),
            };
            match gone {
                Some(state) => Err(cancelled(CoreError::conflict(
                    format!("instance {}", plan.instance_id),
                    format!(
                        "is {state}: command {} ({}) cannot finish",
                        progress.command_id,
                        progress.kind.step()
                    ),
                ))
                .await),
                None => Ok(p),
            }
        }
        Err(e @ CoreError::DeadlineExceeded { .. }) => Err(cancelled(e).await),
        other => other,
    }
}

/// CancelCommand for the instance, best effort: the note says whether it was cancelled.
pub async fn cancel_command(ssm: &impl Ssm, plan: &Plan, command_id: &str) -> String {
    plan.audit("CancelCommand", command_id);
    match ssm.cancel_command(command_id, &plan.instance_id).await {
        Ok(()) => format!("command {command_id} was cancelled"),
        Err(e) => format!("cancelling command {command_id} failed ({e})"),
    }
}

/// Reads the invocation: done, still running (with the next poll), or failed.
async fn read_command(
    ssm: &impl Ssm,
    settings: &Settings,
    plan: &Plan,
    progress: &CommandProgress,
    now_s: i64,
) -> Result<CommandProgress, CoreError> {
    let what = progress.kind.step();
    let inv = match ssm.get_invocation(&progress.command_id, &plan.instance_id).await {
        Ok(inv) => inv,
        Err(CoreError::NotFound { detail, .. }) => {
            let elapsed = (now_s - progress.sent_at_epoch_s).max(0) as u64;
            let code = detail.split(':').next().unwrap_or_default();
            return match invocation_lookup_error(code, &detail, elapsed, INVOCATION_GRACE_S) {
                InvocationLookup::Pending => {
                    let poll = progress
                        .poll
                        .next(now_s, settings.poll, what, "the invocation is not visible yet")?;
                    Ok(CommandProgress { poll, ..progress.clone() })
                }
                InvocationLookup::Failed(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    match command_outcome(&inv, DEFAULT_TAIL_BYTES) {
        CommandOutcome::Running => {
            let poll = progress.poll.next(
                now_s,
                settings.poll,
                what,
                &format!("command {} is {}", progress.command_id, inv.status),
            )?;
            Ok(CommandProgress {
                status: Some(inv.status),
                poll,
                ..progress.clone()
            })
        }
        CommandOutcome::Succeeded { exit_code, tail } => Ok(CommandProgress {
            done: true,
            status: Some(inv.status),
            exit_code: Some(exit_code),
            filesystem_size_bytes: parse_fs_size(&inv.stdout),
            tail: Some(tail),
            ..progress.clone()
        }),
        CommandOutcome::Failed {
            status,
            exit_code,
            tail,
            reason,
        } => Err(CoreError::CommandFailed {
            command_id: progress.command_id.clone(),
            detail: format!(
                "{status}{}: {reason}; output tail: {tail}",
                exit_code.map_or(String::new(), |c| format!(" (exit code {c})"))
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_poll_backs_off_from_1_s_to_5_s_and_stops_at_the_deadline() {
        let policy = PollPolicy::DEFAULT;
        let mut poll = Poll::start(0, 30, policy);
        let (mut now, mut delays) = (0, vec![]);
        loop {
            now += poll.delay_seconds as i64;
            delays.push(poll.delay_seconds);
            match poll.next(now, policy, "WaitForVolume", "modifying") {
                Ok(next) => poll = next,
                Err(_) => break,
            }
        }
        // The last delay is cut short to end at the deadline.
        assert_eq!(delays, vec![1, 2, 3, 5, 5, 5, 5, 4]);
        let err = poll.next(30, policy, "WaitForVolume", "modifying").unwrap_err();
        assert_eq!(err.name(), "DeadlineExceeded");
        assert!(err.to_string().contains("WaitForVolume"), "{err}");
    }
}
