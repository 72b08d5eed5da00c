//! [`Ec2`] with `aws-sdk-ec2`.

use std::collections::BTreeMap;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileAssociation, IamInstanceProfileSpecification, Instance, InstanceSpecification, ResourceType, Tag,
    TagSpecification, VolumeModification,
};
use opsflow_core::facts::{
    Association, AssociationState, BlockDevice, CheckStatus, InstanceFacts, InstanceState, Modification, ModificationState, Platform,
    SnapshotFacts, StatusChecks, VolumeFacts,
};
use opsflow_core::ports::{Ec2, SnapshotRequest};
use opsflow_core::CoreError;

use crate::error::{from_sdk_error, unexpected};

/// The EC2 port on an `aws_sdk_ec2::Client`.
#[derive(Clone, Debug)]
pub struct Ec2Adapter {
    client: aws_sdk_ec2::Client,
}

impl Ec2Adapter {
    /// StartInstances for one instance.
    pub async fn start_instance(&self, instance_id: &str) -> Result<(), CoreError> {
        const OP: &str = "StartInstances";
        self.client
            .start_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(())
    }

    /// StopInstances for one instance (not forced: the OS shuts down cleanly).
    pub async fn stop_instance(&self, instance_id: &str) -> Result<(), CoreError> {
        const OP: &str = "StopInstances";
        self.client
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(())
    }
    /// CreateSnapshots of every EBS volume of the instance (boot volume included), tagged at
    /// creation with the request's tags (TagSpecifications) only: a volume's own tags could
    /// carry opsflow:* keys that the idempotency lookup, retention and IAM rely on.
    pub async fn create_snapshots(&self, request: &SnapshotRequest) -> Result<Vec<SnapshotFacts>, CoreError> {
        const OP: &str = "CreateSnapshots";
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .set_tags(Some(
                request.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect(),
            ))
            .build();
        let out = self
            .client
            .create_snapshots()
            .instance_specification(
                InstanceSpecification::builder()
                    .instance_id(&request.instance_id)
                    .exclude_boot_volume(false)
                    .build(),
            )
            .description(&request.description)
            .tag_specifications(tags)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        out.snapshots()
            .iter()
            .map(|i| {
                let id = i.snapshot_id().ok_or_else(|| unexpected(OP, "a snapshot without SnapshotId"))?;
                Ok(SnapshotFacts {
                    snapshot_id: id.to_string(),
                    volume_id: i.volume_id().unwrap_or_default().to_string(),
                    state: i.state().map(|s| s.as_str()).unwrap_or("pending").to_string(),
                    progress: i.progress().unwrap_or_default().to_string(),
                    start_time_epoch_s: i.start_time().map(epoch_s).unwrap_or_default(),
                    state_message: String::new(),
                    tags: tag_map(i.tags()),
                })
            })
            .collect()
    }

    /// DescribeSnapshots owned by this account (`OwnerIds=self`) with every one of these tags,
    /// every page.
    pub async fn find_snapshots(&self, tags: &[(String, String)]) -> Result<Vec<SnapshotFacts>, CoreError> {
        const OP: &str = "DescribeSnapshots";
        let filters = tags
            .iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build());
        let mut pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters.collect()))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            for s in page.map_err(|e| from_sdk_error(OP, &e))?.snapshots() {
                let Some(id) = s.snapshot_id() else { continue };
                found.push(SnapshotFacts {
                    snapshot_id: id.to_string(),
                    volume_id: s.volume_id().unwrap_or_default().to_string(),
                    state: s.state().map(|s| s.as_str()).unwrap_or_default().to_string(),
                    progress: s.progress().unwrap_or_default().to_string(),
                    start_time_epoch_s: s.start_time().map(epoch_s).unwrap_or_default(),
                    state_message: s.state_message().unwrap_or_default().to_string(),
                    tags: tag_map(s.tags()),
                });
            }
        }
        Ok(found)
    }

    /// DeleteSnapshot.
    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), CoreError> {
        const OP: &str = "DeleteSnapshot";
        self.client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(())
    }

    /// CreateReplaceRootVolumeTask from a snapshot, keeping the replaced volume (for a look at
    /// what went wrong); `client_token` makes it idempotent.
    pub async fn replace_root_volume(&self, instance_id: &str, snapshot_id: &str, client_token: &str) -> Result<String, CoreError> {
        const OP: &str = "CreateReplaceRootVolumeTask";
        let out = self
            .client
            .create_replace_root_volume_task()
            .instance_id(instance_id)
            .snapshot_id(snapshot_id)
            .delete_replaced_root_volume(false)
            .client_token(client_token)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        out.replace_root_volume_task()
            .and_then(|t| t.replace_root_volume_task_id())
            .map(str::to_string)
            .ok_or_else(|| unexpected(OP, "no ReplaceRootVolumeTaskId"))
    }

    /// DescribeReplaceRootVolumeTasks of one task: its state.
    /// CreateTags on one resource.
    pub async fn tag(&self, resource: &str, tags: &[(String, String)]) -> Result<(), CoreError> {
        self.client
            .create_tags()
            .resources(resource)
            .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .send()
            .await
            .map_err(|e| from_sdk_error("CreateTags", &e))?;
        Ok(())
    }

    pub async fn replace_root_task(&self, task_id: &str) -> Result<String, CoreError> {
        const OP: &str = "DescribeReplaceRootVolumeTasks";
        let out = self
            .client
            .describe_replace_root_volume_tasks()
            .replace_root_volume_task_ids(task_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        out.replace_root_volume_tasks()
            .iter()
            .find(|t| t.replace_root_volume_task_id() == Some(task_id))
            .and_then(|t| t.task_state())
            .map(|s| s.as_str().to_string())
            .ok_or_else(|| CoreError::not_found(format!("replace root volume task {task_id}"), "EC2 does not list it"))
    }

    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Ec2Adapter { client }
    }

    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    /// DescribeInstances with these filters, every page (facts without the profile association).
    pub async fn find_instances(&self, filters: Vec<aws_sdk_ec2::types::Filter>) -> Result<Vec<InstanceFacts>, CoreError> {
        const OP: &str = "DescribeInstances";
        let mut pages = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error(OP, &e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                out.push(instance_facts(instance, None)?);
            }
        }
        Ok(out)
    }
}

fn to_u32(operation: &str, field: &str, value: Option<i32>) -> Result<u32, CoreError> {
    value
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| unexpected(operation, format!("{field} is missing or negative ({value:?})")))
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

fn epoch_s(time: &DateTime) -> i64 {
    time.secs()
}

fn instance_facts(instance: &Instance, iam_association: Option<Association>) -> Result<InstanceFacts, CoreError> {
    const OP: &str = "DescribeInstances";
    let instance_id = instance
        .instance_id()
        .ok_or_else(|| unexpected(OP, "an instance without InstanceId"))?;
    let state_name = instance.state().and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or("");
    let state = InstanceState::parse(state_name).ok_or_else(|| unexpected(OP, format!("instance state {state_name:?}")))?;
    let block_devices = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let volume_id = m.ebs()?.volume_id()?;
            Some(BlockDevice {
                device_name: m.device_name()?.to_string(),
                volume_id: volume_id.to_string(),
            })
        })
        .collect();
    let tags = tag_map(instance.tags());
    Ok(InstanceFacts {
        instance_id: instance_id.to_string(),
        state,
        platform: Platform::from_ec2_details(instance.platform().map(|p| p.as_str()), instance.platform_details()),
        root_device_name: instance.root_device_name().map(str::to_string),
        block_devices,
        iam_association,
        tags,
        launch_time_epoch_s: instance.launch_time().map(epoch_s),
    })
}

fn modification(operation: &str, m: &VolumeModification) -> Result<Modification, CoreError> {
    let state_text = m.modification_state().map(|s| s.as_str()).unwrap_or("");
    let state = ModificationState::parse(state_text).ok_or_else(|| unexpected(operation, format!("modification state {state_text:?}")))?;
    let start = m
        .start_time()
        .ok_or_else(|| unexpected(operation, "a volume modification without StartTime"))?;
    Ok(Modification {
        state,
        target_size_gib: to_u32(operation, "TargetSize", m.target_size())?,
        start_time_epoch_s: epoch_s(start),
        end_time_epoch_s: m.end_time().map(epoch_s),
    })
}

fn association(operation: &str, a: Option<&IamInstanceProfileAssociation>) -> Result<Association, CoreError> {
    let a = a.ok_or_else(|| unexpected(operation, "no IamInstanceProfileAssociation"))?;
    let state_text = a.state().map(|s| s.as_str()).unwrap_or("");
    Ok(Association {
        association_id: a
            .association_id()
            .ok_or_else(|| unexpected(operation, "an association without AssociationId"))?
            .to_string(),
        profile_arn: a
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .ok_or_else(|| unexpected(operation, "an association without IamInstanceProfile.Arn"))?
            .to_string(),
        state: AssociationState::parse(state_text).ok_or_else(|| unexpected(operation, format!("association state {state_text:?}")))?,
    })
}

/// An instance profile given as an ARN (`arn:…`) or as a name.
fn profile_spec(profile: &str) -> IamInstanceProfileSpecification {
    let spec = IamInstanceProfileSpecification::builder();
    if profile.starts_with("arn:") {
        spec.arn(profile).build()
    } else {
        spec.name(profile).build()
    }
}

fn check_status(operation: &str, status: Option<&str>) -> Result<Option<CheckStatus>, CoreError> {
    match status {
        None => Ok(None),
        Some(s) => CheckStatus::parse(s)
            .map(Some)
            .ok_or_else(|| unexpected(operation, format!("status check value {s:?}"))),
    }
}

impl Ec2 for Ec2Adapter {
    async fn describe_instance(&self, instance_id: &str) -> Result<InstanceFacts, CoreError> {
        const OP: &str = "DescribeInstances";
        let out = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| CoreError::not_found(format!("instance {instance_id}"), "DescribeInstances did not list it"))?;
        let iam_association = self.describe_association(instance_id).await?;
        instance_facts(instance, iam_association)
    }

    async fn describe_volume(&self, volume_id: &str) -> Result<VolumeFacts, CoreError> {
        const OP: &str = "DescribeVolumes";
        let out = self
            .client
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let volume = out
            .volumes()
            .iter()
            .find(|v| v.volume_id() == Some(volume_id))
            .ok_or_else(|| CoreError::not_found(format!("volume {volume_id}"), "DescribeVolumes did not list it"))?;
        let facts = VolumeFacts {
            volume_id: volume_id.to_string(),
            size_gib: to_u32(OP, "Size", volume.size())?,
            volume_type: volume.volume_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            modification: None,
        };
        Ok(VolumeFacts {
            modification: self.describe_volume_modification(volume_id).await?,
            ..facts
        })
    }

    async fn modify_volume(&self, volume_id: &str, size_gib: u32) -> Result<Modification, CoreError> {
        const OP: &str = "ModifyVolume";
        let size = i32::try_from(size_gib).map_err(|_| CoreError::invalid("size_gib", format!("{size_gib} GiB is too large")))?;
        let out = self
            .client
            .modify_volume()
            .volume_id(volume_id)
            .size(size)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let m = out.volume_modification().ok_or_else(|| unexpected(OP, "no VolumeModification"))?;
        modification(OP, m)
    }

    async fn describe_volume_modification(&self, volume_id: &str) -> Result<Option<Modification>, CoreError> {
        const OP: &str = "DescribeVolumesModifications";
        let result = self.client.describe_volumes_modifications().volume_ids(volume_id).send().await;
        let out = match result {
            Ok(out) => out,
            // AWS answers this code for a volume that was never modified (moto: an empty list).
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidVolumeModification.NotFound") => return Ok(None),
            Err(e) => return Err(from_sdk_error(OP, &e)),
        };
        let latest = out
            .volumes_modifications()
            .iter()
            .filter(|m| m.volume_id().is_none_or(|id| id == volume_id))
            .max_by_key(|m| m.start_time().map(|t| t.as_nanos()));
        latest.map(|m| modification(OP, m)).transpose()
    }

    async fn associate_profile(&self, instance_id: &str, profile: &str) -> Result<Association, CoreError> {
        const OP: &str = "AssociateIamInstanceProfile";
        let out = self
            .client
            .associate_iam_instance_profile()
            .instance_id(instance_id)
            .iam_instance_profile(profile_spec(profile))
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        association(OP, out.iam_instance_profile_association())
    }

    async fn replace_profile_association(&self, association_id: &str, profile: &str) -> Result<Association, CoreError> {
        const OP: &str = "ReplaceIamInstanceProfileAssociation";
        let out = self
            .client
            .replace_iam_instance_profile_association()
            .association_id(association_id)
            .iam_instance_profile(profile_spec(profile))
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        association(OP, out.iam_instance_profile_association())
    }

    async fn disassociate_profile(&self, association_id: &str) -> Result<Association, CoreError> {
        const OP: &str = "DisassociateIamInstanceProfile";
        let out = self
            .client
            .disassociate_iam_instance_profile()
            .association_id(association_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        association(OP, out.iam_instance_profile_association())
    }

    async fn describe_association(&self, instance_id: &str) -> Result<Option<Association>, CoreError> {
        const OP: &str = "DescribeIamInstanceProfileAssociations";
        let out = self
            .client
            .describe_iam_instance_profile_associations()
            .filters(Filter::builder().name("instance-id").values(instance_id).build())
            .filters(Filter::builder().name("state").values("associating").values("associated").build())
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let mut current = Vec::new();
        for a in out.iam_instance_profile_associations() {
            if a.instance_id().is_some_and(|id| id != instance_id) {
                continue;
            }
            let found = association(OP, Some(a))?;
            if matches!(found.state, AssociationState::Associating | AssociationState::Associated) {
                current.push(found);
            }
        }
        // During a replacement the new association is `associating` while the old one leaves.
        current.sort_by_key(|a| a.state != AssociationState::Associating);
        Ok(current.into_iter().next())
    }

    async fn instance_status(&self, instance_id: &str) -> Result<Option<StatusChecks>, CoreError> {
        const OP: &str = "DescribeInstanceStatus";
        let out = self
            .client
            .describe_instance_status()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let Some(status) = out.instance_statuses().iter().find(|s| s.instance_id() == Some(instance_id)) else {
            return Ok(None);
        };
        let instance = check_status(OP, status.instance_status().and_then(|s| s.status()).map(|s| s.as_str()))?;
        let system = check_status(OP, status.system_status().and_then(|s| s.status()).map(|s| s.as_str()))?;
        Ok(match (instance, system) {
            (Some(instance_status), Some(system_status)) => Some(StatusChecks {
                instance_status,
                system_status,
            }),
            _ => None,
        })
    }

    async fn reboot_instance(&self, instance_id: &str) -> Result<(), CoreError> {
        const OP: &str = "RebootInstances";
        self.client
            .reboot_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(())
    }
}
