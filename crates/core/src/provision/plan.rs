//! Pure decisions from observed facts: what to do next with the profile, the volume, the
//! instance's readiness and the file system. No AWS call happens here; each function is
//! re-run on fresh facts after every wait, so every decision is idempotent.
//!
//! The actions serialize with a tag (`{"action": "Grow", ...}`) so a Step Functions `Choice`
//! state can branch on `$.action`.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::facts::{Association, AssociationState, InstanceFacts, ModificationState, Platform, ProfileRef, VolumeFacts};
use crate::provision::props::{AllowList, ProfileSpec, ALLOW_LIST_PARAMETER};
use crate::time::format_utc;

// ----------------------------------------------------------------------------------------------
// Instance profile
// ----------------------------------------------------------------------------------------------

/// The next step for the instance's IAM instance profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum ProfileAction {
    /// The instance already has the wanted profile (or nothing is asked).
    Nothing,
    /// AssociateIamInstanceProfile with `profile` (an ARN or a name).
    Associate { profile: String },
    /// ReplaceIamInstanceProfileAssociation: swaps the profile in one call, so the instance is
    /// never left without credentials (never disassociate first).
    Replace { association_id: String, profile: String },
    /// DisassociateIamInstanceProfile (only when reverting to "no profile").
    Disassociate { association_id: String },
    /// An association is `associating` or `disassociating`: wait, then plan again.
    WaitForAssociation { association_id: String, state: AssociationState },
}

impl ProfileAction {
    /// The EC2 call the action makes and what it names (a profile, an association), for the
    /// audit log; `None` when it makes none.
    pub fn call(&self) -> Option<(&'static str, &str)> {
        match self {
            ProfileAction::Associate { profile } => Some(("AssociateIamInstanceProfile", profile)),
            ProfileAction::Replace { profile, .. } => Some(("ReplaceIamInstanceProfileAssociation", profile)),
            ProfileAction::Disassociate { association_id } => Some(("DisassociateIamInstanceProfile", association_id)),
            ProfileAction::Nothing | ProfileAction::WaitForAssociation { .. } => None,
        }
    }
}

/// The profile name in an instance profile ARN (its last path segment), or the name itself.
pub fn profile_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}

/// Plans Create/Update: make the instance use `desired` (as found in IAM).
///
/// Profiles are compared by name, since EC2 reports the association by ARN only and a name is
/// unique within an account whatever its path.
pub fn plan_profile(desired: Option<&ProfileRef>, current: Option<&Association>) -> ProfileAction {
    match desired {
        Some(desired) => plan_profile_to(&desired.arn, current),
        None => ProfileAction::Nothing,
    }
}

/// The step that makes the instance use the profile `wanted` (an ARN or a name), compared by
/// name with what it has.
pub fn plan_profile_to(wanted: &str, current: Option<&Association>) -> ProfileAction {
    let associate = || ProfileAction::Associate {
        profile: wanted.to_string(),
    };
    match current {
        None => associate(),
        Some(a) => match a.state {
            AssociationState::Associating | AssociationState::Disassociating => ProfileAction::WaitForAssociation {
                association_id: a.association_id.clone(),
                state: a.state,
            },
            AssociationState::Disassociated => associate(),
            AssociationState::Associated if profile_name(&a.profile_arn) == profile_name(wanted) => ProfileAction::Nothing,
            AssociationState::Associated => ProfileAction::Replace {
                association_id: a.association_id.clone(),
                profile: wanted.to_string(),
            },
        },
    }
}

/// Plans Delete with `OnDelete: Revert`: put back `previous` (ARN or name; `None` = no profile).
///
/// Only undoes opsflow's own change: when the instance no longer uses `applied` (the profile
/// opsflow set), someone changed it since, and it is left alone.
pub fn plan_profile_restore(previous: Option<&str>, applied: &str, current: Option<&Association>) -> ProfileAction {
    let Some(a) = current else {
        return ProfileAction::Nothing;
    };
    match a.state {
        AssociationState::Associating | AssociationState::Disassociating => ProfileAction::WaitForAssociation {
            association_id: a.association_id.clone(),
            state: a.state,
        },
        AssociationState::Disassociated => ProfileAction::Nothing,
        AssociationState::Associated if profile_name(&a.profile_arn) != profile_name(applied) => ProfileAction::Nothing,
        AssociationState::Associated => match previous {
            None => ProfileAction::Disassociate {
                association_id: a.association_id.clone(),
            },
            Some(prev) if profile_name(prev) == profile_name(applied) => ProfileAction::Nothing,
            Some(prev) => ProfileAction::Replace {
                association_id: a.association_id.clone(),
                profile: prev.to_string(),
            },
        },
    }
}

/// Checks the profile IAM returned against what the template asked and the allow-list.
pub fn verify_profile(spec: &ProfileSpec, found: &ProfileRef, allow: &AllowList) -> Result<(), CoreError> {
    if let Some(arn) = &spec.arn {
        if *arn != found.arn {
            return Err(CoreError::invalid(
                "InstanceProfile",
                format!("{arn} does not match the profile of that name in this account, {}", found.arn),
            ));
        }
    }
    if !allow.allows(&found.name, Some(&found.path)) {
        return Err(CoreError::invalid(
            "InstanceProfile",
            format!("{} is not in the deployment's {ALLOW_LIST_PARAMETER} ({allow})", found.arn),
        ));
    }
    if found.roles.is_empty() {
        return Err(CoreError::invalid(
            "InstanceProfile",
            format!(
                "instance profile {} has no role, so the instance would get no credentials; add a role to it first",
                found.name
            ),
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Volume
// ----------------------------------------------------------------------------------------------

/// The EBS volume chosen to grow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChosenVolume {
    pub device_name: String,
    pub volume_id: String,
    pub is_root: bool,
}

/// Picks the volume: the mapping named `device`, or the root device's.
pub fn choose_volume(instance: &InstanceFacts, device: Option<&str>) -> Result<ChosenVolume, CoreError> {
    let attached = || {
        if instance.block_devices.is_empty() {
            "no EBS volume is attached".to_string()
        } else {
            let list: Vec<String> = instance
                .block_devices
                .iter()
                .map(|b| format!("{} ({})", b.device_name, b.volume_id))
                .collect();
            format!("attached: {}", list.join(", "))
        }
    };
    let root = instance.root_device_name.as_deref();
    let wanted = match (device, root) {
        (Some(d), _) => d,
        (None, Some(r)) => r,
        (None, None) => {
            return Err(CoreError::not_found(
                format!("root device of {}", instance.instance_id),
                format!("EC2 reports no root device name; set Device ({})", attached()),
            ))
        }
    };
    match instance.block_devices.iter().find(|b| same_device(&b.device_name, wanted)) {
        Some(b) => Ok(ChosenVolume {
            device_name: b.device_name.clone(),
            volume_id: b.volume_id.clone(),
            is_root: root.is_some_and(|r| same_device(r, &b.device_name)),
        }),
        None if device.is_some() => Err(CoreError::not_found(
            format!("device {wanted} on {}", instance.instance_id),
            format!("no EBS volume uses that name; {}", attached()),
        )),
        None => Err(CoreError::not_found(
            format!("root device {wanted} of {}", instance.instance_id),
            format!("it is not an EBS volume (an instance store root cannot grow); {}", attached()),
        )),
    }
}

/// EC2 names the same device `/dev/xvdf` or `xvdf` depending on the AMI.
fn same_device(a: &str, b: &str) -> bool {
    a.strip_prefix("/dev/").unwrap_or(a) == b.strip_prefix("/dev/").unwrap_or(b)
}

/// Size bounds in GiB of each EBS volume type, as documented for ModifyVolume `Size`:
/// gp2 1–16,384; gp3 1–65,536; io1 4–16,384; io2 4–65,536 (every io2 volume is io2 Block
/// Express since April 2025); st1 and sc1 125–16,384; standard 1–1,024.
pub fn size_limits_gib(volume_type: &str) -> Option<(u32, u32)> {
    match volume_type {
        "gp2" => Some((1, 16_384)),
        "gp3" => Some((1, 65_536)),
        "io1" => Some((4, 16_384)),
        "io2" => Some((4, 65_536)),
        "st1" | "sc1" => Some((125, 16_384)),
        "standard" => Some((1, 1_024)),
        _ => None,
    }
}

/// How long EBS wants between two modifications of the same volume.
///
/// Since January 2026 the ModifyVolume reference says: wait until the previous modification is
/// `completed`, and at most four modifications per rolling 24 hours (EC2 enforces the count
/// with `VolumeModificationRateExceeded`, which [`CoreError::from_aws_error`] maps to
/// `LimitExceeded`). Before, it asked for at least six hours after a modification:
/// [`VolumeRules::SIX_HOUR_COOLDOWN`] keeps that rule for a deployment that wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRules {
    /// Seconds after the last completed modification before the next one; 0 for none.
    pub cooldown_s: i64,
}

impl VolumeRules {
    /// The current EBS rule: no fixed wait once the previous modification completed.
    pub const CURRENT: VolumeRules = VolumeRules { cooldown_s: 0 };
    /// The former "wait at least six hours" rule.
    pub const SIX_HOUR_COOLDOWN: VolumeRules = VolumeRules { cooldown_s: 6 * 3600 };
}

impl Default for VolumeRules {
    fn default() -> Self {
        VolumeRules::CURRENT
    }
}

/// The next step for the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum VolumeAction {
    /// The volume already has the size (or no size is asked): go on to the file system.
    Nothing { volume_id: String, size_gib: u32 },
    /// ModifyVolume to `to` GiB.
    Grow { volume_id: String, from: u32, to: u32 },
    /// A modification is under way: wait, then plan again.
    WaitForModification {
        volume_id: String,
        state: ModificationState,
        target_size_gib: u32,
    },
}

/// Plans the volume size. Grows only; a size increase is usable (and the file system can be
/// extended) once the modification is `optimizing`, so only `modifying` is waited for when the
/// target is big enough.
pub fn plan_volume(desired: Option<u32>, volume: &VolumeFacts, now_epoch_s: i64, rules: &VolumeRules) -> Result<VolumeAction, CoreError> {
    let id = &volume.volume_id;
    let Some(desired) = desired else {
        return Ok(VolumeAction::Nothing {
            volume_id: id.clone(),
            size_gib: volume.size_gib,
        });
    };
    if let Some((min, max)) = size_limits_gib(&volume.volume_type) {
        if desired > max {
            return Err(CoreError::invalid(
                "VolumeSizeGiB",
                format!(
                    "{desired} GiB exceeds the maximum of {max} GiB for {} volumes ({id})",
                    volume.volume_type
                ),
            ));
        }
        if desired < min {
            return Err(CoreError::invalid(
                "VolumeSizeGiB",
                format!(
                    "{desired} GiB is below the minimum of {min} GiB for {} volumes ({id})",
                    volume.volume_type
                ),
            ));
        }
    }

    let mut current = volume.size_gib;
    let wait = |state, target| {
        Ok(VolumeAction::WaitForModification {
            volume_id: id.clone(),
            state,
            target_size_gib: target,
        })
    };
    if let Some(m) = &volume.modification {
        match m.state {
            ModificationState::Modifying => return wait(m.state, m.target_size_gib),
            ModificationState::Optimizing if m.target_size_gib < desired => return wait(m.state, m.target_size_gib),
            ModificationState::Optimizing | ModificationState::Completed => current = current.max(m.target_size_gib),
            // A failed modification changed nothing and may be retried at once.
            ModificationState::Failed => {}
        }
    }

    if desired < current {
        return Err(CoreError::invalid(
            "VolumeSizeGiB",
            format!("must not be smaller than the current size {current} GiB"),
        ));
    }
    if desired == current {
        return Ok(VolumeAction::Nothing {
            volume_id: id.clone(),
            size_gib: current,
        });
    }
    if rules.cooldown_s > 0 {
        if let Some(m) = volume.modification.as_ref().filter(|m| m.state == ModificationState::Completed) {
            let last = m.end_time_epoch_s.unwrap_or(m.start_time_epoch_s);
            let allowed_at = last.saturating_add(rules.cooldown_s);
            if now_epoch_s < allowed_at {
                return Err(CoreError::limit_exceeded(
                    format!("volume {id}"),
                    format!(
                        "its last modification completed at {}; EBS allows the next one (to {desired} GiB) from {} (UTC)",
                        format_utc(last),
                        format_utc(allowed_at)
                    ),
                ));
            }
        }
    }
    Ok(VolumeAction::Grow {
        volume_id: id.clone(),
        from: current,
        to: desired,
    })
}

// ----------------------------------------------------------------------------------------------
// The file system route
// ----------------------------------------------------------------------------------------------

/// Whether the opt-in reboot fallback can grow `volume`'s file system: rebooting lets
/// cloud-init's growpart and resizefs grow the root partition at boot, so it needs a Linux
/// instance (cloud-init) and the root volume. Checked when planning, before anything changes, so
/// a fallback that could never work is a clear error rather than a surprise at the deadline.
pub fn check_reboot_fallback(instance_id: &str, platform: Platform, volume: &ChosenVolume) -> Result<(), CoreError> {
    if platform == Platform::Windows {
        return Err(CoreError::unsupported(
            "RebootFallback",
            format!("relies on cloud-init, which Windows instance {instance_id} does not run"),
        ));
    }
    if !volume.is_root {
        return Err(CoreError::unsupported(
            "RebootFallback",
            format!(
                "cloud-init grows only the root partition at boot, not {} ({}); SSM is needed for it",
                volume.device_name, volume.volume_id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{BlockDevice, InstanceState, Modification};
    use std::collections::BTreeMap;

    const ARN_DEV: &str = "arn:aws:iam::123456789012:instance-profile/opsflow/dev-ide-profile";
    const ARN_OLD: &str = "arn:aws:iam::123456789012:instance-profile/old-profile";

    fn profile(name: &str, arn: &str) -> ProfileRef {
        ProfileRef {
            name: name.into(),
            path: "/opsflow/".into(),
            arn: arn.into(),
            roles: vec!["dev-role".into()],
        }
    }

    fn assoc(arn: &str, state: AssociationState) -> Association {
        Association {
            association_id: "iip-assoc-0123".into(),
            profile_arn: arn.into(),
            state,
        }
    }

    #[test]
    fn profile_name_is_last_arn_segment() {
        assert_eq!(profile_name(ARN_DEV), "dev-ide-profile");
        assert_eq!(profile_name("arn:aws:iam::123456789012:instance-profile/p"), "p");
        assert_eq!(profile_name("plain-name"), "plain-name");
    }

    #[test]
    fn plan_profile_decisions() {
        let dev = profile("dev-ide-profile", ARN_DEV);
        assert_eq!(
            plan_profile(None, Some(&assoc(ARN_OLD, AssociationState::Associated))),
            ProfileAction::Nothing
        );
        assert_eq!(plan_profile(Some(&dev), None), ProfileAction::Associate { profile: ARN_DEV.into() });
        assert_eq!(
            plan_profile(Some(&dev), Some(&assoc(ARN_DEV, AssociationState::Associated))),
            ProfileAction::Nothing
        );
        // EC2 may report the ARN without the path: still the same profile by name.
        let no_path = "arn:aws:iam::123456789012:instance-profile/dev-ide-profile";
        assert_eq!(
            plan_profile(Some(&dev), Some(&assoc(no_path, AssociationState::Associated))),
            ProfileAction::Nothing
        );
        assert_eq!(
            plan_profile(Some(&dev), Some(&assoc(ARN_OLD, AssociationState::Associated))),
            ProfileAction::Replace {
                association_id: "iip-assoc-0123".into(),
                profile: ARN_DEV.into()
            }
        );
        for state in [AssociationState::Associating, AssociationState::Disassociating] {
            assert_eq!(
                plan_profile(Some(&dev), Some(&assoc(ARN_OLD, state))),
                ProfileAction::WaitForAssociation {
                    association_id: "iip-assoc-0123".into(),
                    state
                }
            );
        }
        assert_eq!(
            plan_profile(Some(&dev), Some(&assoc(ARN_OLD, AssociationState::Disassociated))),
            ProfileAction::Associate { profile: ARN_DEV.into() }
        );
    }

    #[test]
    fn restore_puts_back_the_previous_profile() {
        let ours = assoc(ARN_DEV, AssociationState::Associated);
        assert_eq!(
            plan_profile_restore(Some(ARN_OLD), ARN_DEV, Some(&ours)),
            ProfileAction::Replace {
                association_id: "iip-assoc-0123".into(),
                profile: ARN_OLD.into()
            }
        );
        assert_eq!(
            plan_profile_restore(None, ARN_DEV, Some(&ours)),
            ProfileAction::Disassociate {
                association_id: "iip-assoc-0123".into()
            }
        );
        assert_eq!(
            plan_profile_restore(Some("dev-ide-profile"), ARN_DEV, Some(&ours)),
            ProfileAction::Nothing
        );
    }

    #[test]
    fn restore_leaves_changes_made_by_others() {
        let other = assoc(
            "arn:aws:iam::123456789012:instance-profile/someone-else",
            AssociationState::Associated,
        );
        assert_eq!(plan_profile_restore(Some(ARN_OLD), ARN_DEV, Some(&other)), ProfileAction::Nothing);
        assert_eq!(plan_profile_restore(None, ARN_DEV, Some(&other)), ProfileAction::Nothing);
        assert_eq!(plan_profile_restore(Some(ARN_OLD), ARN_DEV, None), ProfileAction::Nothing);
        assert_eq!(
            plan_profile_restore(Some(ARN_OLD), ARN_DEV, Some(&assoc(ARN_DEV, AssociationState::Disassociated))),
            ProfileAction::Nothing
        );
        assert_eq!(
            plan_profile_restore(Some(ARN_OLD), ARN_DEV, Some(&assoc(ARN_DEV, AssociationState::Associating))),
            ProfileAction::WaitForAssociation {
                association_id: "iip-assoc-0123".into(),
                state: AssociationState::Associating
            }
        );
    }

    #[test]
    fn verify_profile_checks_arn_allow_list_and_role() {
        let allow = AllowList::parse("/opsflow/").unwrap();
        let found = profile("dev-ide-profile", ARN_DEV);
        let by_arn = ProfileSpec {
            name: "dev-ide-profile".into(),
            path: Some("/opsflow/".into()),
            arn: Some(ARN_DEV.into()),
        };
        assert_eq!(verify_profile(&by_arn, &found, &allow), Ok(()));

        let other_account = ProfileSpec {
            arn: Some("arn:aws:iam::999999999999:instance-profile/opsflow/dev-ide-profile".into()),
            ..by_arn.clone()
        };
        assert_eq!(
            verify_profile(&other_account, &found, &allow),
            Err(CoreError::invalid(
                "InstanceProfile",
                format!("arn:aws:iam::999999999999:instance-profile/opsflow/dev-ide-profile does not match the profile of that name in this account, {ARN_DEV}")
            ))
        );

        let by_name = ProfileSpec {
            name: "dev-ide-profile".into(),
            path: None,
            arn: None,
        };
        let elsewhere = ProfileRef {
            path: "/other/".into(),
            ..found.clone()
        };
        assert_eq!(
            verify_profile(&by_name, &elsewhere, &allow),
            Err(CoreError::invalid(
                "InstanceProfile",
                format!("{ARN_DEV} is not in the deployment's InstanceProfileAllowList (/opsflow/)")
            ))
        );

        let roleless = ProfileRef { roles: vec![], ..found };
        assert_eq!(
            verify_profile(&by_name, &roleless, &allow),
            Err(CoreError::invalid(
                "InstanceProfile",
                "instance profile dev-ide-profile has no role, so the instance would get no credentials; add a role to it first"
            ))
        );
    }

    fn instance(root: Option<&str>, devices: &[(&str, &str)]) -> InstanceFacts {
        InstanceFacts {
            instance_id: "i-0123456789abcdef0".into(),
            state: InstanceState::Running,
            platform: Platform::Linux,
            root_device_name: root.map(String::from),
            block_devices: devices
                .iter()
                .map(|(d, v)| BlockDevice {
                    device_name: d.to_string(),
                    volume_id: v.to_string(),
                })
                .collect(),
            iam_association: None,
            tags: BTreeMap::new(),
            launch_time_epoch_s: None,
        }
    }

    #[test]
    fn choose_root_or_named_device() {
        let inst = instance(Some("/dev/xvda"), &[("/dev/xvda", "vol-root"), ("/dev/sdf", "vol-data")]);
        assert_eq!(
            choose_volume(&inst, None),
            Ok(ChosenVolume {
                device_name: "/dev/xvda".into(),
                volume_id: "vol-root".into(),
                is_root: true
            })
        );
        assert_eq!(
            choose_volume(&inst, Some("/dev/sdf")),
            Ok(ChosenVolume {
                device_name: "/dev/sdf".into(),
                volume_id: "vol-data".into(),
                is_root: false
            })
        );
        assert_eq!(choose_volume(&inst, Some("/dev/xvda")).map(|c| c.is_root), Ok(true));
        // Windows AMIs list extra volumes without /dev/.
        let win = instance(Some("/dev/sda1"), &[("/dev/sda1", "vol-root"), ("xvdf", "vol-data")]);
        assert_eq!(
            choose_volume(&win, Some("/dev/xvdf")).map(|c| c.volume_id),
            Ok("vol-data".to_string())
        );
    }

    #[test]
    fn missing_device_lists_the_attached_ones() {
        let inst = instance(Some("/dev/xvda"), &[("/dev/xvda", "vol-root"), ("/dev/sdf", "vol-data")]);
        assert_eq!(
            choose_volume(&inst, Some("/dev/sdg")),
            Err(CoreError::not_found(
                "device /dev/sdg on i-0123456789abcdef0",
                "no EBS volume uses that name; attached: /dev/xvda (vol-root), /dev/sdf (vol-data)"
            ))
        );
        let store_root = instance(Some("/dev/sda1"), &[]);
        assert_eq!(
            choose_volume(&store_root, None),
            Err(CoreError::not_found(
                "root device /dev/sda1 of i-0123456789abcdef0",
                "it is not an EBS volume (an instance store root cannot grow); no EBS volume is attached"
            ))
        );
        assert_eq!(choose_volume(&instance(None, &[]), None).unwrap_err().name(), "NotFound");
    }

    fn vol(size: u32, kind: &str, modification: Option<Modification>) -> VolumeFacts {
        VolumeFacts {
            volume_id: "vol-0abc".into(),
            size_gib: size,
            volume_type: kind.into(),
            modification,
        }
    }

    fn modif(state: ModificationState, target: u32, start: i64, end: Option<i64>) -> Option<Modification> {
        Some(Modification {
            state,
            target_size_gib: target,
            start_time_epoch_s: start,
            end_time_epoch_s: end,
        })
    }

    const NOW: i64 = 1_777_640_000; // 2026-05-01T12:53:20Z

    #[test]
    fn grow_nothing_and_shrink() {
        let rules = VolumeRules::default();
        assert_eq!(
            plan_volume(Some(32), &vol(8, "gp3", None), NOW, &rules),
            Ok(VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 8,
                to: 32
            })
        );
        assert_eq!(
            plan_volume(Some(32), &vol(32, "gp3", None), NOW, &rules),
            Ok(VolumeAction::Nothing {
                volume_id: "vol-0abc".into(),
                size_gib: 32
            })
        );
        assert_eq!(
            plan_volume(None, &vol(40, "gp3", None), NOW, &rules),
            Ok(VolumeAction::Nothing {
                volume_id: "vol-0abc".into(),
                size_gib: 40
            })
        );
        let shrink = plan_volume(Some(32), &vol(40, "gp3", None), NOW, &rules).unwrap_err();
        assert_eq!(
            shrink.to_string(),
            "InvalidInput: VolumeSizeGiB: must not be smaller than the current size 40 GiB"
        );
    }

    #[test]
    fn modification_in_progress() {
        let rules = VolumeRules::default();
        // modifying: the new size is not usable yet, whatever the target.
        assert_eq!(
            plan_volume(
                Some(32),
                &vol(8, "gp3", modif(ModificationState::Modifying, 32, NOW - 10, None)),
                NOW,
                &rules
            ),
            Ok(VolumeAction::WaitForModification {
                volume_id: "vol-0abc".into(),
                state: ModificationState::Modifying,
                target_size_gib: 32
            })
        );
        // optimizing to the wanted size: the size is already usable.
        assert_eq!(
            plan_volume(
                Some(32),
                &vol(8, "gp3", modif(ModificationState::Optimizing, 32, NOW - 60, None)),
                NOW,
                &rules
            ),
            Ok(VolumeAction::Nothing {
                volume_id: "vol-0abc".into(),
                size_gib: 32
            })
        );
        // optimizing to less than wanted: another modification must wait for completed.
        assert_eq!(
            plan_volume(
                Some(64),
                &vol(32, "gp3", modif(ModificationState::Optimizing, 32, NOW - 60, None)),
                NOW,
                &rules
            ),
            Ok(VolumeAction::WaitForModification {
                volume_id: "vol-0abc".into(),
                state: ModificationState::Optimizing,
                target_size_gib: 32
            })
        );
        // optimizing to more than wanted: shrinking is refused.
        assert_eq!(
            plan_volume(
                Some(32),
                &vol(8, "gp3", modif(ModificationState::Optimizing, 40, NOW - 60, None)),
                NOW,
                &rules
            )
            .unwrap_err()
            .to_string(),
            "InvalidInput: VolumeSizeGiB: must not be smaller than the current size 40 GiB"
        );
        // a failed modification is retried at once
        assert_eq!(
            plan_volume(
                Some(32),
                &vol(8, "gp3", modif(ModificationState::Failed, 32, NOW - 60, Some(NOW - 30))),
                NOW,
                &rules
            ),
            Ok(VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 8,
                to: 32
            })
        );
    }

    #[test]
    fn completed_modification_allows_the_next_under_current_rules() {
        let v = vol(32, "gp3", modif(ModificationState::Completed, 32, NOW - 120, Some(NOW - 60)));
        assert_eq!(
            plan_volume(Some(64), &v, NOW, &VolumeRules::CURRENT),
            Ok(VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 32,
                to: 64
            })
        );
    }

    #[test]
    fn six_hour_cooldown_rule_names_the_time() {
        let completed_at = 1_777_629_600; // 2026-05-01T10:00:00Z
        let v = vol(
            32,
            "gp3",
            modif(ModificationState::Completed, 32, completed_at - 300, Some(completed_at)),
        );
        let err = plan_volume(Some(64), &v, NOW, &VolumeRules::SIX_HOUR_COOLDOWN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LimitExceeded: volume vol-0abc: its last modification completed at 2026-05-01T10:00:00Z; EBS allows the next one (to 64 GiB) \
             from 2026-05-01T16:00:00Z (UTC)"
        );
        // exactly six hours later it is allowed
        assert_eq!(
            plan_volume(Some(64), &v, completed_at + 21_600, &VolumeRules::SIX_HOUR_COOLDOWN),
            Ok(VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 32,
                to: 64
            })
        );
        // no end time reported: the start time counts
        let no_end = vol(32, "gp3", modif(ModificationState::Completed, 32, completed_at, None));
        assert_eq!(
            plan_volume(Some(64), &no_end, completed_at + 21_599, &VolumeRules::SIX_HOUR_COOLDOWN)
                .unwrap_err()
                .name(),
            "LimitExceeded"
        );
    }

    #[test]
    fn volume_type_size_limits() {
        let rules = VolumeRules::default();
        assert_eq!(
            plan_volume(Some(1025), &vol(8, "standard", None), NOW, &rules)
                .unwrap_err()
                .to_string(),
            "InvalidInput: VolumeSizeGiB: 1025 GiB exceeds the maximum of 1024 GiB for standard volumes (vol-0abc)"
        );
        assert_eq!(
            plan_volume(Some(16_385), &vol(8, "gp2", None), NOW, &rules)
                .unwrap_err()
                .to_string(),
            "InvalidInput: VolumeSizeGiB: 16385 GiB exceeds the maximum of 16384 GiB for gp2 volumes (vol-0abc)"
        );
        assert_eq!(
            plan_volume(Some(16_385), &vol(8, "io1", None), NOW, &rules).unwrap_err().name(),
            "InvalidInput"
        );
        assert_eq!(
            plan_volume(Some(16_385), &vol(8, "st1", None), NOW, &rules).unwrap_err().name(),
            "InvalidInput"
        );
        assert_eq!(
            plan_volume(Some(65_536), &vol(8, "io2", None), NOW, &rules),
            Ok(VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 8,
                to: 65_536
            })
        );
        assert_eq!(
            plan_volume(Some(65_536), &vol(8, "gp3", None), NOW, &rules),
            Ok(VolumeAction::Grow {
                volume_id: "vol-0abc".into(),
                from: 8,
                to: 65_536
            })
        );
        assert_eq!(
            plan_volume(Some(100), &vol(125, "sc1", None), NOW, &rules).unwrap_err().to_string(),
            "InvalidInput: VolumeSizeGiB: 100 GiB is below the minimum of 125 GiB for sc1 volumes (vol-0abc)"
        );
        assert_eq!(size_limits_gib("st1"), Some((125, 16_384)));
        assert_eq!(size_limits_gib("io2"), Some((4, 65_536)));
        assert_eq!(size_limits_gib("future"), None);
        // unknown type: only the general bound of the property applies
        assert_eq!(
            plan_volume(Some(70_000), &vol(8, "future", None), NOW, &rules).map(|a| matches!(a, VolumeAction::Grow { .. })),
            Ok(true)
        );
    }

    #[test]
    fn actions_serialize_with_a_tag_for_choice_states() {
        let v = serde_json::to_value(VolumeAction::Grow {
            volume_id: "vol-1".into(),
            from: 8,
            to: 32,
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"action": "Grow", "volume_id": "vol-1", "from": 8, "to": 32}));
        let p = serde_json::to_value(ProfileAction::Nothing).unwrap();
        assert_eq!(p, serde_json::json!({"action": "Nothing"}));
    }

    #[test]
    fn the_reboot_fallback_needs_linux_and_the_root_volume() {
        let root = ChosenVolume {
            device_name: "/dev/xvda".into(),
            volume_id: "vol-root".into(),
            is_root: true,
        };
        let data = ChosenVolume {
            device_name: "/dev/sdf".into(),
            volume_id: "vol-data".into(),
            is_root: false,
        };
        let id = "i-0123456789abcdef0";
        assert_eq!(check_reboot_fallback(id, Platform::Linux, &root), Ok(()));
        assert_eq!(
            check_reboot_fallback(id, Platform::Windows, &root).unwrap_err().to_string(),
            "Unsupported: RebootFallback: relies on cloud-init, which Windows instance i-0123456789abcdef0 does not run"
        );
        assert_eq!(
            check_reboot_fallback(id, Platform::Linux, &data).unwrap_err().to_string(),
            "Unsupported: RebootFallback: cloud-init grows only the root partition at boot, not /dev/sdf (vol-data); SSM is needed for it"
        );
    }
}
