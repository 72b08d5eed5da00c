//! The alert enrichment's lookups ([`AlertLookups`]) and publisher ([`AlertPublisher`]) with the
//! AWS SDK: EC2 DescribeInstances, SSM DescribeInstanceInformation, IAM
//! GetAccountAuthorizationDetails (cached), CloudWatch GetMetricData, SNS Publish.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StandardUnit};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use aws_sdk_iam::types::EntityType;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use opsflow_core::alert::{
    AgentInfo, AlertLookups, AlertPublisher, Datapoint, InstanceDetails, MetricQuery, ProfileRole, Publication, Target,
};
use opsflow_core::CoreError;
use serde_json::Value;

use crate::error::{from_sdk_error, unexpected};

/// The tag EC2 Auto Scaling puts on the instances it launches.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";
/// How long the IAM listing is reused (it changes rarely and is the largest lookup).
pub const ROLES_TTL: Duration = Duration::from_secs(300);

/// The time limits of the alert lookups' clients: each lookup gets a few seconds, because an
/// alert late by a minute is worth less than one with a note saying what could not be looked up.
pub fn lookup_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The lookups on the SDK clients. Clone it freely: the IAM cache is shared.
#[derive(Clone, Debug)]
pub struct AlertAdapter {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    iam: aws_sdk_iam::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    roles: Arc<Mutex<Option<CachedRoles>>>,
}

/// The IAM listing and when it was fetched.
type CachedRoles = (Instant, Vec<ProfileRole>);

impl AlertAdapter {
    pub fn new(
        ec2: aws_sdk_ec2::Client,
        ssm: aws_sdk_ssm::Client,
        iam: aws_sdk_iam::Client,
        cloudwatch: aws_sdk_cloudwatch::Client,
    ) -> Self {
        AlertAdapter {
            ec2,
            ssm,
            iam,
            cloudwatch,
            roles: Arc::default(),
        }
    }
}

fn ec2_filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// A policy document as IAM returns it: URL-encoded JSON (moto returns it plain).
fn policy_document(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(text).decode_utf8().ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

impl AlertLookups for AlertAdapter {
    async fn instances(&self, target: &Target, cap: usize) -> Result<Vec<InstanceDetails>, CoreError> {
        const OP: &str = "DescribeInstances";
        let request = match target {
            Target::Instance(id) => self.ec2.describe_instances().instance_ids(id),
            // One page of at most `cap` (EC2 wants 5..=1000) of the group's instances.
            Target::AutoScalingGroup(name) => self
                .ec2
                .describe_instances()
                .filters(ec2_filter(&format!("tag:{GROUP_TAG}"), name))
                .max_results(cap.clamp(5, 1000) as i32),
        };
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidInstanceID.NotFound") => return Ok(Vec::new()),
            Err(e) => return Err(from_sdk_error(OP, &e)),
        };
        let mut found = Vec::new();
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let instance_id = i.instance_id().ok_or_else(|| unexpected(OP, "an instance without InstanceId"))?;
            let tags: std::collections::BTreeMap<String, String> = i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
                .collect();
            found.push(InstanceDetails {
                instance_id: instance_id.to_string(),
                name: tags.get("Name").cloned(),
                tags,
                instance_type: i.instance_type().map(|t| t.as_str().to_string()),
                state: i.state().and_then(|s| s.name()).map_or("unknown", |n| n.as_str()).to_string(),
                availability_zone: i.placement().and_then(|p| p.availability_zone()).map(String::from),
                private_ip: i.private_ip_address().map(String::from),
                launch_time_epoch_s: i.launch_time().map(|t| t.secs()),
                instance_profile_arn: i.iam_instance_profile().and_then(|p| p.arn()).map(String::from),
                platform: i.platform_details().map(String::from),
            });
        }
        found.truncate(cap);
        Ok(found)
    }

    async fn agents(&self, target: &Target) -> Result<Vec<AgentInfo>, CoreError> {
        const OP: &str = "DescribeInstanceInformation";
        let (key, value) = match target {
            Target::Instance(id) => ("InstanceIds".to_string(), id),
            Target::AutoScalingGroup(name) => (format!("tag:{GROUP_TAG}"), name),
        };
        let filter = InstanceInformationStringFilter::builder()
            .key(key)
            .values(value)
            .build()
            .map_err(|e| CoreError::invalid(OP, e.to_string()))?;
        let out = self
            .ssm
            .describe_instance_information()
            .filters(filter)
            .max_results(50)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        Ok(out
            .instance_information_list()
            .iter()
            .filter_map(|info| {
                Some(AgentInfo {
                    instance_id: info.instance_id()?.to_string(),
                    ping_status: info.ping_status().map_or("Unknown", |p| p.as_str()).to_string(),
                    last_ping_epoch_s: info.last_ping_date_time().map(|t| t.secs()),
                    agent_version: info.agent_version().map(String::from),
                })
            })
            .collect())
    }

    async fn profile_roles(&self) -> Result<Vec<ProfileRole>, CoreError> {
        const OP: &str = "GetAccountAuthorizationDetails";
        if let Some((at, roles)) = self.roles.lock().map_err(|_| unexpected(OP, "cache lock poisoned"))?.as_ref() {
            if at.elapsed() < ROLES_TTL {
                return Ok(roles.clone());
            }
        }
        let mut roles = Vec::new();
        let mut managed: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .iam
                .get_account_authorization_details()
                .filter(EntityType::Role)
                .filter(EntityType::LocalManagedPolicy)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| from_sdk_error(OP, &e))?;
            for policy in out.policies() {
                let default = policy.policy_version_list().iter().find(|v| v.is_default_version());
                if let (Some(arn), Some(doc)) = (policy.arn(), default.and_then(|v| v.document()).and_then(policy_document)) {
                    managed.insert(arn.to_string(), doc);
                }
            }
            roles.extend(out.role_detail_list().iter().cloned());
            match (out.is_truncated(), out.marker()) {
                (true, Some(next)) => marker = Some(next.to_string()),
                _ => break,
            }
        }
        let mut found = Vec::new();
        for role in &roles {
            let attached: Vec<String> = role
                .attached_managed_policies()
                .iter()
                .filter_map(|p| p.policy_arn())
                .map(String::from)
                .collect();
            let mut documents: Vec<(String, Value)> = role
                .role_policy_list()
                .iter()
                .filter_map(|p| Some((p.policy_name()?.to_string(), policy_document(p.policy_document()?)?)))
                .collect();
            documents.extend(attached.iter().filter_map(|arn| Some((arn.clone(), managed.get(arn)?.clone()))));
            for profile in role.instance_profile_list() {
                found.push(ProfileRole {
                    profile_arn: profile.arn().to_string(),
                    role_name: role.role_name().unwrap_or_default().to_string(),
                    role_arn: role.arn().unwrap_or_default().to_string(),
                    attached_policy_arns: attached.clone(),
                    policy_documents: documents.clone(),
                });
            }
        }
        *self.roles.lock().map_err(|_| unexpected(OP, "cache lock poisoned"))? = Some((Instant::now(), found.clone()));
        Ok(found)
    }

    async fn datapoints(&self, queries: &[MetricQuery], start_ms: i64, end_ms: i64) -> Result<Vec<Datapoint>, CoreError> {
        const OP: &str = "GetMetricData";
        let mut request = self
            .cloudwatch
            .get_metric_data()
            .start_time(DateTime::from_millis(start_ms))
            .end_time(DateTime::from_millis(end_ms))
            .scan_by(ScanBy::TimestampDescending);
        for q in queries {
            let stat = q.metric_stat.as_ref().map(|s| {
                let metric = Metric::builder()
                    .namespace(&s.metric.namespace)
                    .metric_name(&s.metric.name)
                    .set_dimensions(Some(
                        s.metric
                            .dimensions
                            .iter()
                            .map(|d| Dimension::builder().name(&d.name).value(&d.value).build())
                            .collect(),
                    ))
                    .build();
                MetricStat::builder()
                    .metric(metric)
                    .period(s.period_s as i32)
                    .stat(&s.stat)
                    .set_unit(s.unit.as_deref().map(StandardUnit::from))
                    .build()
            });
            request = request.metric_data_queries(
                MetricDataQuery::builder()
                    .id(&q.id)
                    .set_expression(q.expression.clone())
                    .set_metric_stat(stat)
                    .set_label(q.label.clone())
                    .set_period(q.period_s.filter(|_| q.expression.is_some()).map(|p| p as i32))
                    .return_data(q.return_data)
                    .build(),
            );
        }
        let out = request.send().await.map_err(|e| from_sdk_error(OP, &e))?;
        let shown = queries.iter().find(|q| q.return_data).map(|q| q.id.as_str());
        Ok(out
            .metric_data_results()
            .iter()
            .filter(|r| r.id() == shown)
            .flat_map(|r| r.timestamps().iter().zip(r.values()))
            .map(|(t, v)| Datapoint {
                epoch_s: t.secs(),
                value: *v,
            })
            .collect())
    }
}

/// Publishes enriched alerts to an SNS topic, one message per protocol.
#[derive(Clone, Debug)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        SnsPublisher {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

impl AlertPublisher for SnsPublisher {
    async fn publish(&self, p: &Publication) -> Result<String, CoreError> {
        const OP: &str = "Publish";
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&p.subject)
            .message_structure("json")
            .message(&p.message);
        for (name, value) in &p.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| CoreError::invalid(format!("message attribute {name}"), e.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        let out = request.send().await.map_err(|e| from_sdk_error(OP, &e))?;
        out.message_id().map(String::from).ok_or_else(|| unexpected(OP, "no MessageId"))
    }
}
