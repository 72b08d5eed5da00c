//! The alert enrichment's lookups ([`AlertLookups`]), publisher ([`AlertPublisher`]) and
//! ledger ([`AlertLedger`]) with the AWS SDK: EC2 DescribeInstances, SSM
//! DescribeInstanceInformation, IAM GetAccountAuthorizationDetails (cached per account),
//! CloudWatch GetMetricData, SNS Publish, DynamoDB conditional writes.
//!
//! Every lookup runs in the place ([`Place`]) the alarm names: clients are made per account and
//! region and kept for the life of the process. The function's own account is searched in any
//! region with its own credentials; another account only through its member role
//! (`MemberAccess`: the role name and ExternalId of infra/member-account.yaml), when the
//! deployment turns cross-account lookups on — else [`Reach::Off`], and the alert says which
//! account and region were not searched. Never the function's region instead of the alarm's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{Region, SdkConfig};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StandardUnit};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use opsflow_core::alert::diagnose;
use opsflow_core::alert::{
    ActiveMute, AgentInfo, AlertLedger, AlertLookups, AlertPublisher, Claim, Datapoint, InstanceDetails, MetricQuery, Place, ProfileRole,
    Publication, Reach, Target,
};
use opsflow_core::command::CommandSpec;
use opsflow_core::facts::Invocation;
use opsflow_core::ports::Ssm;
use opsflow_core::CoreError;
use serde_json::Value;

use crate::error::{from_sdk_error, unexpected};

/// The tag EC2 Auto Scaling puts on the instances it launches.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";
/// How long the IAM listing is reused (it changes rarely and is the largest lookup).
pub const ROLES_TTL: Duration = Duration::from_secs(300);
/// The session name of the member role, as member accounts' CloudTrail shows it.
pub const MEMBER_SESSION: &str = "opsflow-alerts";

/// The time limits of the alert lookups' clients: each lookup gets a few seconds, because an
/// alert late by a minute is worth less than one with a note saying what could not be looked up.
pub fn lookup_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// How other accounts are searched: their member role (infra/member-account.yaml).
#[derive(Clone)]
pub struct MemberAccess {
    pub role_name: String,
    pub external_id: String,
}

impl std::fmt::Debug for MemberAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberAccess")
            .field("role_name", &self.role_name)
            .finish_non_exhaustive()
    }
}

/// The clients of one account and region.
#[derive(Clone, Debug)]
struct PlaceClients {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    iam: aws_sdk_iam::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl PlaceClients {
    fn new(config: &SdkConfig) -> Self {
        PlaceClients {
            ec2: aws_sdk_ec2::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
        }
    }
}

/// The lookups, routed to the alarm's account and region. Clone it freely: the clients and the
/// IAM cache are shared.
#[derive(Clone, Debug)]
pub struct AlertAdapter {
    base: SdkConfig,
    home_account: Arc<Mutex<Option<String>>>,
    member: Option<MemberAccess>,
    /// Why other accounts are not searched, when `member` is None (for the alert's note).
    no_member: String,
    places: Arc<Mutex<HashMap<Place, PlaceClients>>>,
    roles: Arc<Mutex<HashMap<String, CachedRoles>>>,
}

/// The IAM listing and when it was fetched.
type CachedRoles = (Instant, Vec<ProfileRole>);

impl AlertAdapter {
    /// `base`: the function's own configuration. `home_account`: the function's account (None:
    /// asked of STS GetCallerIdentity once). `member`: how other accounts are searched (None:
    /// they are not).
    pub fn new(base: &SdkConfig, home_account: Option<String>, member: Option<MemberAccess>) -> Self {
        AlertAdapter {
            base: base.clone(),
            home_account: Arc::new(Mutex::new(home_account.filter(|a| !a.is_empty()))),
            member,
            no_member: "cross-account lookups are off (ALERT_MEMBER_LOOKUPS)".to_string(),
            places: Arc::default(),
            roles: Arc::default(),
        }
    }

    /// Other accounts are not searched, because `why` (a configuration that asked for them but
    /// cannot reach them: the alerts still flow, each saying why).
    pub fn without_members_because(mut self, why: impl Into<String>) -> Self {
        self.member = None;
        self.no_member = why.into();
        self
    }

    async fn home_account(&self) -> Result<String, CoreError> {
        if let Some(account) = self
            .home_account
            .lock()
            .map_err(|_| unexpected("GetCallerIdentity", "lock poisoned"))?
            .clone()
        {
            return Ok(account);
        }
        let out = aws_sdk_sts::Client::new(&self.base)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| from_sdk_error("GetCallerIdentity", &e))?;
        let account = out
            .account()
            .ok_or_else(|| unexpected("GetCallerIdentity", "no Account"))?
            .to_string();
        *self
            .home_account
            .lock()
            .map_err(|_| unexpected("GetCallerIdentity", "lock poisoned"))? = Some(account.clone());
        Ok(account)
    }

    fn cached(&self, at: &Place) -> Option<PlaceClients> {
        self.places.lock().ok()?.get(at).cloned()
    }

    /// The clients of `at`, made on first use: the function's credentials in its own account,
    /// the member role's in another (None: cross-account lookups are off, with why).
    async fn clients(&self, at: &Place) -> Result<Result<PlaceClients, String>, CoreError> {
        if let Some(c) = self.cached(at) {
            return Ok(Ok(c));
        }
        let home = self.home_account().await?;
        let config = if at.account_id == home {
            self.base.to_builder().region(Region::new(at.region.clone())).build()
        } else {
            let Some(member) = &self.member else {
                return Ok(Err(format!("it is not opsflow's account {home}, and {}", self.no_member)));
            };
            let role_arn = format!(
                "arn:{}:iam::{}:role/{}",
                crate::runbook::partition(&at.region),
                at.account_id,
                member.role_name
            );
            crate::member::assumed_config(&self.base, &role_arn, &member.external_id, MEMBER_SESSION, &at.region).await?
        };
        let clients = PlaceClients::new(&config);
        if let Ok(mut places) = self.places.lock() {
            places.insert(at.clone(), clients.clone());
        }
        Ok(Ok(clients))
    }

    /// The clients of a place [`AlertLookups::reach`] found reachable.
    async fn at(&self, at: &Place) -> Result<PlaceClients, CoreError> {
        self.clients(at)
            .await?
            .map_err(|why| CoreError::forbidden(format!("account {} in {}", at.account_id, at.region), why))
    }
}

fn ec2_filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// A policy document as IAM returns it: URL-encoded JSON (moto returns it plain).
impl AlertLookups for AlertAdapter {
    async fn reach(&self, at: &Place) -> Result<Reach, CoreError> {
        Ok(match self.clients(at).await? {
            Ok(_) => Reach::Yes,
            Err(why) => Reach::Off(why),
        })
    }

    async fn instances(&self, at: &Place, target: &Target, cap: usize) -> Result<Vec<InstanceDetails>, CoreError> {
        const OP: &str = "DescribeInstances";
        let ec2 = self.at(at).await?.ec2;
        let request = match target {
            Target::Instance(id) => ec2.describe_instances().instance_ids(id),
            // One page of at most `cap` (EC2 wants 5..=1000) of the group's instances.
            Target::AutoScalingGroup(name) => ec2
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

    async fn agents(&self, at: &Place, target: &Target) -> Result<Vec<AgentInfo>, CoreError> {
        const OP: &str = "DescribeInstanceInformation";
        let ssm = self.at(at).await?.ssm;
        let (key, value) = match target {
            Target::Instance(id) => ("InstanceIds".to_string(), id),
            Target::AutoScalingGroup(name) => (format!("tag:{GROUP_TAG}"), name),
        };
        let filter = InstanceInformationStringFilter::builder()
            .key(key)
            .values(value)
            .build()
            .map_err(|e| CoreError::invalid(OP, e.to_string()))?;
        let out = ssm
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

    async fn profile_roles(&self, at: &Place) -> Result<Vec<ProfileRole>, CoreError> {
        const OP: &str = "GetAccountAuthorizationDetails";
        // IAM is global: one listing per account, whatever the region.
        if let Some((fetched, roles)) = self
            .roles
            .lock()
            .map_err(|_| unexpected(OP, "cache lock poisoned"))?
            .get(&at.account_id)
        {
            if fetched.elapsed() < ROLES_TTL {
                return Ok(roles.clone());
            }
        }
        let iam = self.at(at).await?.iam;
        let facts = crate::audit::authorization_details(&iam).await?;
        let mut found = Vec::new();
        for role in &facts.roles {
            let mut documents: Vec<(String, Value)> = role.inline.iter().map(|(n, d)| (n.clone(), d.clone())).collect();
            documents.extend(
                role.attached
                    .iter()
                    .filter_map(|arn| Some((arn.clone(), facts.managed.get(arn)?.clone()?))),
            );
            for profile in &role.profiles {
                found.push(ProfileRole {
                    profile_arn: profile.clone(),
                    role_name: role.name.clone(),
                    role_arn: role.arn.clone(),
                    attached_policy_arns: role.attached.clone(),
                    policy_documents: documents.clone(),
                });
            }
        }
        self.roles
            .lock()
            .map_err(|_| unexpected(OP, "cache lock poisoned"))?
            .insert(at.account_id.clone(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// ListAlarmMuteRules (AlarmName, Statuses ACTIVE), then GetAlarmMuteRule for each (the
    /// summaries carry no description); a rule deleted in between is left out.
    async fn active_mutes(&self, at: &Place, alarm_name: &str) -> Result<Vec<ActiveMute>, CoreError> {
        const OP: &str = "ListAlarmMuteRules";
        let cloudwatch = self.at(at).await?.cloudwatch;
        let out = cloudwatch
            .list_alarm_mute_rules()
            .alarm_name(alarm_name)
            .statuses(aws_sdk_cloudwatch::types::AlarmMuteRuleStatus::Active)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let mut found = Vec::new();
        for summary in out.alarm_mute_rule_summaries() {
            let Some(rule) = summary.alarm_mute_rule_arn().and_then(|a| a.rsplit(':').next()) else {
                continue;
            };
            match cloudwatch.get_alarm_mute_rule().alarm_mute_rule_name(rule).send().await {
                Ok(r) => found.push(ActiveMute {
                    rule: rule.to_string(),
                    description: r.description().map(str::to_string),
                }),
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(from_sdk_error("GetAlarmMuteRule", &e)),
            }
        }
        Ok(found)
    }

    /// SendCommand through the SSM port's adapter: the document alone (no parameters, no
    /// output bucket), delivery timeout [`diagnose::DELIVERY_TIMEOUT_S`].
    async fn send_diagnostics(&self, at: &Place, instance_id: &str, document: &str, comment: &str) -> Result<String, CoreError> {
        let spec = CommandSpec {
            document_name: document.to_string(),
            parameters: Default::default(),
            timeout_seconds: diagnose::DELIVERY_TIMEOUT_S,
            output_s3_bucket: None,
            output_s3_prefix: None,
            cloudwatch_log_group: None,
            comment: Some(comment.to_string()),
        };
        crate::SsmAdapter::new(self.at(at).await?.ssm)
            .send_command(&spec, instance_id)
            .await
    }

    async fn diagnostics_result(&self, at: &Place, command_id: &str, instance_id: &str) -> Result<Invocation, CoreError> {
        let ssm = self.at(at).await?.ssm;
        crate::SsmAdapter::new(ssm).get_invocation(command_id, instance_id).await
    }

    async fn datapoints(&self, at: &Place, queries: &[MetricQuery], start_ms: i64, end_ms: i64) -> Result<Vec<Datapoint>, CoreError> {
        const OP: &str = "GetMetricData";
        let mut request = self
            .at(at)
            .await?
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
                    // A cross-account alarm's metric: the alarm's (monitoring) account reads it.
                    .set_account_id(q.account_id.clone())
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

/// [`AlertLedger`] on a DynamoDB table (partition key `pk`, a string; `status` `claimed` or
/// `published`; `leaseUntil` and `expiresAt` in epoch seconds, the latter the table's TTL;
/// `messageId` once published). Claims are conditional writes: two deliveries never both win.
#[derive(Clone, Debug)]
pub struct DynamoAlertLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const CLAIMED: &str = "claimed";
const PUBLISHED: &str = "published";

fn conditional_failed<E: ProvideErrorMetadata>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

impl DynamoAlertLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoAlertLedger {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// CreateTable with the template's key schema, unless it exists (local cloud and tests).
    pub async fn create_table(&self) -> Result<(), CoreError> {
        crate::dynamodb::create_table(&self.client, &self.table, "pk", None).await
    }

    /// The row of `key` (strongly consistent).
    async fn row(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, CoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk_error("GetItem", &e))?;
        Ok(out.item)
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

impl AlertLedger for DynamoAlertLedger {
    async fn claim(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64) -> Result<Claim, CoreError> {
        self.claim_owed(key, now_s, lease_s, expires_at_s, "").await
    }

    async fn claim_owed(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64, owed: &str) -> Result<Claim, CoreError> {
        // Twice at most: a row released between the failed condition and the read is claimed again.
        for _ in 0..2 {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(key.to_string()))
                .item("status", AttributeValue::S(CLAIMED.into()))
                .item("leaseUntil", AttributeValue::N((now_s + lease_s).to_string()))
                .item("expiresAt", AttributeValue::N(expires_at_s.to_string()))
                .item("owed", AttributeValue::S(owed.to_string()))
                .condition_expression("attribute_not_exists(pk) OR (#s = :claimed AND leaseUntil < :now)")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":claimed", AttributeValue::S(CLAIMED.into()))
                .expression_attribute_values(":now", AttributeValue::N(now_s.to_string()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Claim::Won),
                Err(e) if conditional_failed(&e) => {}
                Err(e) => return Err(from_sdk_error("PutItem", &e)),
            }
            let Some(row) = self.row(key).await? else { continue };
            let status = row.get("status").and_then(|s| s.as_s().ok()).map(String::as_str);
            return Ok(match status {
                Some(PUBLISHED) => Claim::Published(row.get("messageId").and_then(|m| m.as_s().ok()).cloned().unwrap_or_default()),
                _ => Claim::Busy {
                    lease_until_s: number(&row, "leaseUntil").unwrap_or(now_s + lease_s),
                },
            });
        }
        Ok(Claim::Busy {
            lease_until_s: now_s + lease_s,
        })
    }

    async fn published(&self, key: &str, message_id: &str, expires_at_s: i64) -> Result<(), CoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_string()))
            .item("status", AttributeValue::S(PUBLISHED.into()))
            .item("messageId", AttributeValue::S(message_id.to_string()))
            .item("expiresAt", AttributeValue::N(expires_at_s.to_string()))
            .send()
            .await
            .map_err(|e| from_sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .condition_expression("#s = :claimed")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":claimed", AttributeValue::S(CLAIMED.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Published meanwhile, or gone: nothing to release.
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(from_sdk_error("DeleteItem", &e)),
        }
    }

    async fn reclaim(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64) -> Result<Option<(Claim, String)>, CoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .update_expression("SET leaseUntil = :until, expiresAt = :expires")
            .condition_expression("#s = :claimed AND leaseUntil < :now")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":claimed", AttributeValue::S(CLAIMED.into()))
            .expression_attribute_values(":now", AttributeValue::N(now_s.to_string()))
            .expression_attribute_values(":until", AttributeValue::N((now_s + lease_s).to_string()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at_s.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        let owed = |row: &HashMap<String, AttributeValue>| row.get("owed").and_then(|o| o.as_s().ok()).cloned().unwrap_or_default();
        match result {
            Ok(out) => return Ok(Some((Claim::Won, out.attributes.as_ref().map(owed).unwrap_or_default()))),
            Err(e) if conditional_failed(&e) => {}
            Err(e) => return Err(from_sdk_error("UpdateItem", &e)),
        }
        let Some(row) = self.row(key).await? else { return Ok(None) };
        let status = row.get("status").and_then(|s| s.as_s().ok()).map(String::as_str);
        let claim = match status {
            Some(PUBLISHED) => Claim::Published(row.get("messageId").and_then(|m| m.as_s().ok()).cloned().unwrap_or_default()),
            _ => Claim::Busy {
                lease_until_s: number(&row, "leaseUntil").unwrap_or(now_s + lease_s),
            },
        };
        Ok(Some((claim, owed(&row))))
    }
}
