//! The runbook ports with the SDK: [`MemberFleet`] (the member accounts, through their role),
//! [`S3Objects`] and [`DynamoRunLog`] (the audit trail).
//!
//! A member account is reached with `sts:AssumeRole` on `arn:<partition>:iam::<account>:role/<name>`
//! with the deployment's ExternalId, by the function itself: the SDK's assume-role provider
//! caches the session (refreshing it before it expires) and one [`MemberAdapter`] per account
//! and region is kept for the life of the process. Credentials never leave this module.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_ec2::types::Filter;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use opsflow_core::command::CommandSpec;
use opsflow_core::facts::{InstanceFacts, Invocation, PingStatus, SnapshotFacts, StatusChecks};
use opsflow_core::ports::{
    Ec2, Fleet, InstanceQuery, LifecycleHook, Member, MuteRule, NetworkInterface, Objects, RunLog, SnapshotRequest, Ssm,
};
use opsflow_core::runbook::input::LifecycleAction;
use opsflow_core::runbook::log::TargetRow;
use opsflow_core::runbook::TargetStatus;
use opsflow_core::CoreError;

use crate::error::{from_sdk_error, unexpected};
use crate::{Ec2Adapter, SsmAdapter};

pub use opsflow_core::facts::partition;

/// The member accounts.
#[derive(Clone)]
pub struct MemberFleet {
    base: aws_config::SdkConfig,
    role_name: String,
    external_id: String,
    members: Arc<Mutex<HashMap<(String, String), MemberAdapter>>>,
}

impl std::fmt::Debug for MemberFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberFleet")
            .field("role_name", &self.role_name)
            .finish_non_exhaustive()
    }
}

impl MemberFleet {
    /// `base` is the function's own configuration (its credentials assume the member role).
    pub fn new(base: &aws_config::SdkConfig, role_name: &str, external_id: &str) -> MemberFleet {
        MemberFleet {
            base: base.clone(),
            role_name: role_name.to_string(),
            external_id: external_id.to_string(),
            members: Arc::default(),
        }
    }

    /// From `MEMBER_ROLE_NAME` (default `opsflow-member`) and `MEMBER_EXTERNAL_ID` (required).
    pub fn from_env(base: &aws_config::SdkConfig) -> Result<MemberFleet, CoreError> {
        let role = std::env::var("MEMBER_ROLE_NAME")
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "opsflow-member".to_string());
        let external_id = std::env::var("MEMBER_EXTERNAL_ID")
            .ok()
            .filter(|x| !x.is_empty())
            .ok_or_else(|| CoreError::invalid("MEMBER_EXTERNAL_ID", "is required: the ExternalId of the member role"))?;
        Ok(MemberFleet::new(base, &role, &external_id))
    }

    pub fn role_arn(&self, account: &str, region: &str) -> String {
        format!("arn:{}:iam::{account}:role/{}", partition(region), self.role_name)
    }
}

impl Fleet for MemberFleet {
    type Member = MemberAdapter;

    async fn member(&self, account: &str, region: &str) -> Result<MemberAdapter, CoreError> {
        let key = (account.to_string(), region.to_string());
        if let Some(m) = self.members.lock().expect("members").get(&key) {
            return Ok(m.clone());
        }
        let role_arn = self.role_arn(account, region);
        let config = crate::member::assumed_config(&self.base, &role_arn, &self.external_id, "opsflow-runbook", region).await?;
        let member = MemberAdapter {
            ec2: Ec2Adapter::new(aws_sdk_ec2::Client::new(&config)),
            ssm: SsmAdapter::new(aws_sdk_ssm::Client::new(&config)),
            groups: aws_sdk_resourcegroups::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
        };
        self.members.lock().expect("members").insert(key, member.clone());
        Ok(member)
    }
}

/// One member account and region.
#[derive(Clone, Debug)]
pub struct MemberAdapter {
    ec2: Ec2Adapter,
    ssm: SsmAdapter,
    groups: aws_sdk_resourcegroups::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    iam: aws_sdk_iam::Client,
}

impl Member for MemberAdapter {
    /// DescribeInstances with `instance-id` or `tag:<key>` filters, every page, not terminated.
    async fn find_instances(&self, query: &InstanceQuery) -> Result<Vec<InstanceFacts>, CoreError> {
        let mut filters = vec![Filter::builder()
            .name("instance-state-name")
            .set_values(Some(["pending", "running", "stopping", "stopped"].map(String::from).to_vec()))
            .build()];
        match query {
            InstanceQuery::Ids(ids) => filters.push(Filter::builder().name("instance-id").set_values(Some(ids.clone())).build()),
            InstanceQuery::Tags(tags) => {
                for (k, v) in tags {
                    filters.push(match v.is_empty() {
                        // A key with any value.
                        true => Filter::builder().name("tag-key").values(k).build(),
                        false => Filter::builder().name(format!("tag:{k}")).set_values(Some(v.clone())).build(),
                    });
                }
            }
        }
        self.ec2.find_instances(filters).await
    }

    async fn group_query(&self, group: &str) -> Result<(String, String), CoreError> {
        const OP: &str = "GetGroupQuery";
        let out = self
            .groups
            .get_group_query()
            .group(group)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_not_found_exception() => CoreError::not_found(format!("resource group {group}"), "no such group"),
                _ => from_sdk_error(OP, &e),
            })?;
        let q = out
            .group_query()
            .and_then(|g| g.resource_query())
            .ok_or_else(|| unexpected(OP, "no GroupQuery.ResourceQuery"))?;
        Ok((q.r#type().as_str().to_string(), q.query().to_string()))
    }

    /// DescribeInstanceInformation with the `InstanceIds` filter, 50 at a time, every page.
    async fn ping_statuses(&self, instance_ids: &[String]) -> Result<BTreeMap<String, PingStatus>, CoreError> {
        const OP: &str = "DescribeInstanceInformation";
        let mut out = BTreeMap::new();
        for chunk in instance_ids.chunks(50) {
            let filter = InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(chunk.to_vec()))
                .build()
                .map_err(|e| CoreError::invalid(OP, e.to_string()))?;
            let mut pages = self
                .ssm
                .client()
                .describe_instance_information()
                .filters(filter)
                .max_results(50)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = match page {
                    Ok(p) => p,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_invalid_instance_id()) => break,
                    Err(e) => return Err(from_sdk_error(OP, &e)),
                };
                for info in page.instance_information_list() {
                    if let (Some(id), Some(p)) = (info.instance_id(), info.ping_status().and_then(|p| PingStatus::parse(p.as_str()))) {
                        out.insert(id.to_string(), p);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn describe_instance(&self, instance_id: &str) -> Result<InstanceFacts, CoreError> {
        self.ec2.describe_instance(instance_id).await
    }

    async fn send_command(&self, spec: &CommandSpec, instance_id: &str) -> Result<String, CoreError> {
        self.ssm.send_command(spec, instance_id).await
    }

    async fn get_invocation(&self, command_id: &str, instance_id: &str) -> Result<Invocation, CoreError> {
        self.ssm.get_invocation(command_id, instance_id).await
    }

    async fn cancel_command(&self, command_id: &str, instance_id: &str) -> Result<(), CoreError> {
        self.ssm.cancel_command(command_id, instance_id).await
    }

    async fn instance_status(&self, instance_id: &str) -> Result<Option<StatusChecks>, CoreError> {
        self.ec2.instance_status(instance_id).await
    }

    async fn start_instance(&self, instance_id: &str) -> Result<(), CoreError> {
        self.ec2.start_instance(instance_id).await
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), CoreError> {
        self.ec2.stop_instance(instance_id).await
    }

    /// DescribeAlarms (metric alarms, every page), kept when a dimension `InstanceId` names the
    /// instance on the alarm's metric or on a metric of its metric math.
    async fn alarms_on_instance(&self, instance_id: &str) -> Result<Vec<String>, CoreError> {
        const OP: &str = "DescribeAlarms";
        let on_it = |dims: &[aws_sdk_cloudwatch::types::Dimension]| {
            dims.iter()
                .any(|d| d.name() == Some("InstanceId") && d.value() == Some(instance_id))
        };
        let mut names = Vec::new();
        let mut pages = self
            .cloudwatch
            .describe_alarms()
            .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error(OP, &e))?;
            for a in page.metric_alarms() {
                let watched = on_it(a.dimensions())
                    || a.metrics()
                        .iter()
                        .filter_map(|q| q.metric_stat().and_then(|m| m.metric()))
                        .any(|m| on_it(m.dimensions()));
                if let (true, Some(name)) = (watched, a.alarm_name()) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// PutAlarmMuteRule: `at(<the minute of from>)` (UTC) for `duration_s` rounded up to whole
    /// minutes (PT1M..P15D).
    async fn mute_alarms(&self, rule: &MuteRule) -> Result<(), CoreError> {
        const OP: &str = "PutAlarmMuteRule";
        use aws_sdk_cloudwatch::types::{MuteTargets, Rule, Schedule};
        let at = opsflow_core::time::format_utc(rule.from_epoch_s);
        let minutes = ((rule.duration_s + 59) / 60).clamp(1, 15 * 24 * 60);
        let schedule = Schedule::builder()
            .expression(format!("at({})", &at[..16]))
            .duration(format!("PT{minutes}M"))
            .timezone("UTC")
            .build();
        let targets = MuteTargets::builder().set_alarm_names(Some(rule.alarms.clone())).build();
        self.cloudwatch
            .put_alarm_mute_rule()
            .name(&rule.name)
            .description(&rule.description)
            .rule(Rule::builder().schedule(schedule).build())
            .mute_targets(targets)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(())
    }

    async fn unmute_alarms(&self, rule_name: &str) -> Result<(), CoreError> {
        const OP: &str = "DeleteAlarmMuteRule";
        match self
            .cloudwatch
            .delete_alarm_mute_rule()
            .alarm_mute_rule_name(rule_name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if aws_sdk_cloudwatch::error::ProvideErrorMetadata::code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(from_sdk_error(OP, &e)),
        }
    }

    async fn create_snapshots(&self, request: &SnapshotRequest) -> Result<Vec<SnapshotFacts>, CoreError> {
        self.ec2.create_snapshots(request).await
    }

    async fn find_snapshots(&self, tags: &[(String, String)]) -> Result<Vec<SnapshotFacts>, CoreError> {
        self.ec2.find_snapshots(tags).await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), CoreError> {
        self.ec2.delete_snapshot(snapshot_id).await
    }

    async fn replace_root_volume(&self, instance_id: &str, snapshot_id: &str, client_token: &str) -> Result<String, CoreError> {
        self.ec2.replace_root_volume(instance_id, snapshot_id, client_token).await
    }

    async fn replace_root_task(&self, task_id: &str) -> Result<String, CoreError> {
        self.ec2.replace_root_task(task_id).await
    }

    async fn tag_instance(&self, instance_id: &str, tags: &[(String, String)]) -> Result<(), CoreError> {
        self.ec2.tag(instance_id, tags).await
    }

    async fn lifecycle_state(&self, instance_id: &str) -> Result<Option<(String, String)>, CoreError> {
        const OP: &str = "DescribeAutoScalingInstances";
        let out = self
            .autoscaling
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
            .map(|i| {
                (
                    i.auto_scaling_group_name().unwrap_or_default().to_string(),
                    i.lifecycle_state().unwrap_or_default().to_string(),
                )
            }))
    }

    async fn lifecycle_hook(&self, group: &str, hook: &str) -> Result<LifecycleHook, CoreError> {
        const OP: &str = "DescribeLifecycleHooks";
        let out = self
            .autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .lifecycle_hook_names(hook)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let h = out
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_hook_name() == Some(hook))
            .ok_or_else(|| CoreError::not_found(format!("lifecycle hook {hook}"), format!("group {group} has no such hook")))?;
        Ok(LifecycleHook {
            heartbeat_timeout_s: i64::from(h.heartbeat_timeout().unwrap_or(3_600)),
            default_result: h.default_result().unwrap_or("ABANDON").to_string(),
        })
    }

    async fn lifecycle_heartbeat(&self, action: &LifecycleAction) -> Result<(), CoreError> {
        self.autoscaling
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.auto_scaling_group_name)
            .lifecycle_hook_name(&action.lifecycle_hook_name)
            .lifecycle_action_token(&action.lifecycle_action_token)
            .instance_id(&action.instance_id)
            .send()
            .await
            .map_err(|e| from_sdk_error("RecordLifecycleActionHeartbeat", &e))?;
        Ok(())
    }

    async fn complete_lifecycle_action(&self, action: &LifecycleAction, result: &str) -> Result<bool, CoreError> {
        let sent = self
            .autoscaling
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.auto_scaling_group_name)
            .lifecycle_hook_name(&action.lifecycle_hook_name)
            .lifecycle_action_token(&action.lifecycle_action_token)
            .instance_id(&action.instance_id)
            .lifecycle_action_result(result)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            // Auto Scaling answers ValidationError "No active Lifecycle Action found with
            // instance ID …" once the action has ended (completed, or its timeout passed).
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.message())
                    .is_some_and(|m| m.contains("No active Lifecycle Action")) =>
            {
                Ok(false)
            }
            Err(e) => Err(from_sdk_error("CompleteLifecycleAction", &e)),
        }
    }

    async fn network_interfaces(&self, instance_id: &str) -> Result<Vec<NetworkInterface>, CoreError> {
        let out = self
            .ec2
            .client()
            .describe_network_interfaces()
            .filters(Filter::builder().name("attachment.instance-id").values(instance_id).build())
            .send()
            .await
            .map_err(|e| from_sdk_error("DescribeNetworkInterfaces", &e))?;
        Ok(out
            .network_interfaces()
            .iter()
            .map(|n| NetworkInterface {
                interface_id: n.network_interface_id().unwrap_or_default().to_string(),
                vpc_id: n.vpc_id().unwrap_or_default().to_string(),
                groups: n.groups().iter().filter_map(|g| g.group_id().map(str::to_string)).collect(),
            })
            .collect())
    }

    async fn quarantine_group(&self, vpc_id: &str, name: &str, tags: &[(String, String)]) -> Result<String, CoreError> {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        let ec2 = self.ec2.client();
        let find = || async {
            let out = ec2
                .describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
                .filters(Filter::builder().name("group-name").values(name).build())
                .send()
                .await
                .map_err(|e| from_sdk_error("DescribeSecurityGroups", &e))?;
            Ok::<_, CoreError>(out.security_groups().first().and_then(|g| g.group_id()).map(str::to_string))
        };
        if let Some(id) = find().await? {
            return Ok(id);
        }
        let mut spec = TagSpecification::builder().resource_type(ResourceType::SecurityGroup);
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
        let created = ec2
            .create_security_group()
            .group_name(name)
            .vpc_id(vpc_id)
            .description("opsflow forensic-capture quarantine: no inbound or outbound rule")
            .tag_specifications(spec.build())
            .send()
            .await;
        let id = match created {
            Ok(out) => out.group_id().unwrap_or_default().to_string(),
            // Made meanwhile by another capture in the same VPC.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidGroup.Duplicate") => {
                return find()
                    .await?
                    .ok_or_else(|| CoreError::transient("CreateSecurityGroup", "the group exists but is not listed yet"));
            }
            Err(e) => return Err(from_sdk_error("CreateSecurityGroup", &e)),
        };
        // A new group allows all outbound traffic: revoke that rule.
        ec2.revoke_security_group_egress()
            .group_id(&id)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk_error("RevokeSecurityGroupEgress", &e))?;
        Ok(id)
    }

    async fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> Result<(), CoreError> {
        self.ec2
            .client()
            .modify_network_interface_attribute()
            .network_interface_id(interface_id)
            .set_groups(Some(groups.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk_error("ModifyNetworkInterfaceAttribute", &e))?;
        Ok(())
    }

    async fn target_groups_of(&self, instance_id: &str) -> Result<Vec<(String, Option<i32>)>, CoreError> {
        let mut found = Vec::new();
        let mut pages = self.elb.describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error("DescribeTargetGroups", &e))?;
            for group in page.target_groups() {
                let Some(arn) = group.target_group_arn() else { continue };
                if group.target_type().is_some_and(|t| t.as_str() != "instance") {
                    continue;
                }
                let health = self
                    .elb
                    .describe_target_health()
                    .target_group_arn(arn)
                    .send()
                    .await
                    .map_err(|e| from_sdk_error("DescribeTargetHealth", &e))?;
                for d in health.target_health_descriptions() {
                    if let Some(t) = d.target().filter(|t| t.id() == Some(instance_id)) {
                        found.push((arn.to_string(), t.port()));
                    }
                }
            }
        }
        Ok(found)
    }

    async fn deregister_target(&self, target_group_arn: &str, instance_id: &str, port: Option<i32>) -> Result<(), CoreError> {
        self.elb
            .deregister_targets()
            .target_group_arn(target_group_arn)
            .targets(
                aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                    .id(instance_id)
                    .set_port(port)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk_error("DeregisterTargets", &e))?;
        Ok(())
    }

    async fn profile_role(&self, profile_arn: &str) -> Result<Option<opsflow_core::ports::TaggedRole>, CoreError> {
        let name = opsflow_core::provision::plan::profile_name(profile_arn);
        let out = self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| from_sdk_error("GetInstanceProfile", &e))?;
        let Some(role) = out
            .instance_profile()
            .and_then(|p| p.roles().first())
            .map(|r| r.role_name().to_string())
        else {
            return Ok(None);
        };
        let tags = self
            .iam
            .list_role_tags()
            .role_name(&role)
            .send()
            .await
            .map_err(|e| from_sdk_error("ListRoleTags", &e))?;
        Ok(Some((
            role,
            tags.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
        )))
    }

    async fn put_role_policy(&self, role: &str, name: &str, document: &str) -> Result<(), CoreError> {
        self.iam
            .put_role_policy()
            .role_name(role)
            .policy_name(name)
            .policy_document(document)
            .send()
            .await
            .map_err(|e| from_sdk_error("PutRolePolicy", &e))?;
        Ok(())
    }
}

/// [`Objects`] on S3.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Objects { client }
    }
}

impl Objects for S3Objects {
    async fn put(&self, bucket: &str, key: &str, body: &str) -> Result<(), CoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .map_err(|e| from_sdk_error("PutObject", &e))?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<String, CoreError> {
        self.text(bucket, key, None).await
    }

    /// A ranged GET of the last `bytes` bytes (`Range: bytes=-N`), cut to whole characters.
    async fn tail(&self, bucket: &str, key: &str, bytes: usize) -> Result<String, CoreError> {
        self.text(bucket, key, Some(format!("bytes=-{bytes}"))).await
    }

    /// GetObject with ChecksumMode=ENABLED; the body goes chunk by chunk through a bounded
    /// channel to `f` on a blocking thread.
    async fn read<R: Send + 'static>(
        &self,
        bucket: &str,
        key: &str,
        f: impl FnOnce(&mut dyn std::io::Read) -> R + Send + 'static,
    ) -> Result<(R, Option<String>), CoreError> {
        let mut out = self.get_object(bucket, key, None, true).await?;
        let checksum = out.checksum_sha256().map(str::to_string);
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<bytes::Bytes>>(8);
        let reader = tokio::task::spawn_blocking(move || {
            f(&mut ChunkReader {
                rx,
                chunk: bytes::Bytes::new(),
            })
        });
        while let Some(chunk) = out.body.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(format!("GetObject body: {e}")));
            let failed = chunk.is_err();
            // The reader may stop early (a damaged archive): then the rest is not needed.
            if tx.send(chunk).is_err() || failed {
                break;
            }
        }
        drop(tx);
        let r = reader
            .await
            .map_err(|e| CoreError::transient("GetObject", format!("the reader failed: {e}")))?;
        Ok((r, checksum))
    }
}

/// The chunks of a body as a [`std::io::Read`].
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.chunk = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl S3Objects {
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<String>,
        checksum: bool,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, CoreError> {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range)
            .set_checksum_mode(checksum.then_some(aws_sdk_s3::types::ChecksumMode::Enabled))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_no_such_key() => CoreError::not_found(format!("s3://{bucket}/{key}"), "no such object"),
                _ => from_sdk_error("GetObject", &e),
            })
    }

    async fn text(&self, bucket: &str, key: &str, range: Option<String>) -> Result<String, CoreError> {
        let out = self.get_object(bucket, key, range, false).await?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| CoreError::transient("GetObject", e.to_string()))?;
        let bytes = body.into_bytes();
        // A range may start inside a character: drop the partial one.
        let start = (0..bytes.len().min(4))
            .find(|&i| std::str::from_utf8(&bytes[i..]).is_ok())
            .unwrap_or(0);
        Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
    }
}

/// [`RunLog`] on the runs table (partition key `Run`, sort key `Target`; a target row keeps
/// its document in `Doc`; the run's error count is the item `Target = "#errors"`; a procedure
/// execution's command is `Run = <execution>, Target = "#command"`; `ExpiresAt` is the TTL).
#[derive(Clone, Debug)]
pub struct DynamoRunLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const ERRORS: &str = "#errors";
const COMMAND: &str = "#command";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

impl DynamoRunLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRunLog {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// CreateTable with the template's key schema, unless it exists (local cloud and tests).
    pub async fn create_table(&self) -> Result<(), CoreError> {
        crate::dynamodb::create_table(&self.client, &self.table, "Run", Some("Target")).await
    }

    fn row_item(row: &TargetRow) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("Run".to_string(), s(&row.run)),
            ("Target".to_string(), s(&row.target)),
            ("Doc".to_string(), s(&serde_json::to_string(row).expect("a row serializes"))),
            ("Status".to_string(), s(row.status.as_str())),
            ("Procedure".to_string(), s(&row.procedure)),
            ("StartedAt".to_string(), s(&row.started_at)),
            ("ExpiresAt".to_string(), AttributeValue::N(row.expires_at.to_string())),
        ])
    }

    fn parse_row(item: &HashMap<String, AttributeValue>) -> Result<TargetRow, CoreError> {
        let doc = item
            .get("Doc")
            .and_then(|d| d.as_s().ok())
            .ok_or_else(|| unexpected("Query", "a target row without Doc"))?;
        serde_json::from_str(doc).map_err(|e| unexpected("Query", format!("a target row that does not parse: {e}")))
    }

    async fn get(&self, run: &str, target: &str) -> Result<Option<HashMap<String, AttributeValue>>, CoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("Run", s(run))
            .key("Target", s(target))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk_error("GetItem", &e))?;
        Ok(out.item)
    }
}

impl RunLog for DynamoRunLog {
    async fn errors(&self, run: &str) -> Result<u32, CoreError> {
        Ok(self
            .get(run, ERRORS)
            .await?
            .and_then(|i| i.get("Errors").and_then(|n| n.as_n().ok()).and_then(|n| n.parse().ok()))
            .unwrap_or(0))
    }

    async fn begin(&self, row: &TargetRow) -> Result<Option<TargetRow>, CoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::row_item(row)))
            .condition_expression("attribute_not_exists(#r)")
            .expression_attribute_names("#r", "Run")
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let item = self
                    .get(&row.run, &row.target)
                    .await?
                    .ok_or_else(|| unexpected("PutItem", "the row that failed the condition is gone"))?;
                Ok(Some(Self::parse_row(&item)?))
            }
            Err(e) => Err(from_sdk_error("PutItem", &e)),
        }
    }

    async fn finish(&self, row: &TargetRow, error: bool) -> Result<bool, CoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| CoreError::invalid("TransactWriteItems", e.to_string());
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::row_item(row)))
            .condition_expression("attribute_not_exists(#r) OR #s = :running")
            .expression_attribute_names("#r", "Run")
            .expression_attribute_names("#s", "Status")
            .expression_attribute_values(":running", s(TargetStatus::Running.as_str()))
            .build()
            .map_err(build)?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        if error {
            let update = Update::builder()
                .table_name(&self.table)
                .key("Run", s(&row.run))
                .key("Target", s(ERRORS))
                .update_expression("ADD Errors :one SET ExpiresAt = :exp")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":exp", AttributeValue::N(row.expires_at.to_string()))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_transaction_canceled_exception()) => Ok(false),
            Err(e) => Err(from_sdk_error("TransactWriteItems", &e)),
        }
    }

    async fn targets(&self, run: &str) -> Result<Vec<TargetRow>, CoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#r = :run")
            .expression_attribute_names("#r", "Run")
            .expression_attribute_values(":run", s(run))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error("Query", &e))?;
            for item in page.items() {
                if item.contains_key("Doc") {
                    rows.push(Self::parse_row(item)?);
                }
            }
        }
        Ok(rows)
    }

    async fn since(&self, since: &str) -> Result<Vec<TargetRow>, CoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("attribute_exists(Doc) AND StartedAt >= :since")
            .expression_attribute_values(":since", s(since))
            .into_paginator()
            .send();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error("Scan", &e))?;
            for item in page.items() {
                rows.push(Self::parse_row(item)?);
            }
        }
        Ok(rows)
    }

    async fn command(&self, execution: &str, command_id: &str, expires_at_s: i64) -> Result<Option<String>, CoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("Run", s(execution))
            .item("Target", s(COMMAND))
            .item("CommandId", s(command_id))
            .item("ExpiresAt", AttributeValue::N(expires_at_s.to_string()))
            .condition_expression("attribute_not_exists(#r)")
            .expression_attribute_names("#r", "Run")
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => self.sent_command(execution).await,
            Err(e) => Err(from_sdk_error("PutItem", &e)),
        }
    }

    async fn sent_command(&self, execution: &str) -> Result<Option<String>, CoreError> {
        Ok(self
            .get(execution, COMMAND)
            .await?
            .and_then(|i| i.get("CommandId").and_then(|c| c.as_s().ok()).cloned()))
    }
}
