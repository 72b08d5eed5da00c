//! The AWS clients, built once per process (in a Lambda's `main`, never per invocation).

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use opsflow_core::CoreError;

use crate::ec2::Ec2Adapter;
use crate::http::HttpResponseSink;
use crate::iam::IamAdapter;
use crate::ssm::SsmAdapter;

/// The region when neither the environment (`AWS_REGION`, `AWS_DEFAULT_REGION`) nor the
/// shared config file names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Connect timeout of the AWS clients (the SDK's own default).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// How long one attempt of an AWS call may take, from sending to the parsed answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an AWS call may take in all, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The access key `for_endpoint` signs with (moto accepts any).
pub const STATIC_TEST_ACCESS_KEY: &str = "testing";

/// The loaded SDK configuration: build it once in `main`, then only the clients the function
/// uses (each SDK client costs init time and binary size: the endpoint rules and the service's
/// code). Each adapter holds a cheap handle (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct AwsConfig(SdkConfig);

impl AwsConfig {
    /// From the environment, as the AWS SDK reads it: credentials from the default chain (the
    /// Lambda's role, `AWS_ACCESS_KEY_ID`…, profiles), the region from `AWS_REGION` /
    /// `AWS_DEFAULT_REGION` / the profile or else [`DEFAULT_REGION`], the endpoint from
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_EC2` and the like, per service) when set, which
    /// is how the local cloud is reached, retries from `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE`.
    pub async fn from_env() -> Self {
        Self::from_env_with(timeout_config()).await
    }

    /// [`AwsConfig::from_env`] with other time limits (e.g. the alert lookups' short ones).
    pub async fn from_env_with(timeouts: TimeoutConfig) -> Self {
        let region = RegionProviderChain::default_provider().or_else(Region::from_static(DEFAULT_REGION));
        AwsConfig(
            aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .timeout_config(timeouts)
                .load()
                .await,
        )
    }

    /// For the local cloud and tests: every service at `endpoint` (e.g. `http://127.0.0.1:4566`),
    /// region [`DEFAULT_REGION`], static credentials [`STATIC_TEST_ACCESS_KEY`]. Environment
    /// endpoint, region and credential settings are not consulted.
    pub async fn for_endpoint(endpoint: &str) -> Self {
        AwsConfig(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(Region::from_static(DEFAULT_REGION))
                .credentials_provider(Credentials::new(
                    STATIC_TEST_ACCESS_KEY,
                    STATIC_TEST_ACCESS_KEY,
                    None,
                    None,
                    "opsflow-static",
                ))
                .timeout_config(timeout_config())
                .load()
                .await,
        )
    }

    /// [`AwsConfig::for_endpoint`] in `region`, signed with these keys (the local cloud maps
    /// keys to their account: a seeded account's administrator, say).
    pub async fn for_endpoint_as(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Self {
        AwsConfig(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(Region::new(region.to_string()))
                .credentials_provider(Credentials::new(access_key, secret_key, None, None, "opsflow-static"))
                .timeout_config(timeout_config())
                .load()
                .await,
        )
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.0
    }

    pub fn ec2_adapter(&self) -> Ec2Adapter {
        Ec2Adapter::new(aws_sdk_ec2::Client::new(&self.0))
    }

    pub fn iam_adapter(&self) -> IamAdapter {
        IamAdapter::new(aws_sdk_iam::Client::new(&self.0))
    }

    pub fn ssm_adapter(&self) -> SsmAdapter {
        SsmAdapter::new(aws_sdk_ssm::Client::new(&self.0))
    }

    /// Step Functions for the state machine `state_machine_arn`.
    pub fn workflow(&self, state_machine_arn: &str) -> crate::SfnWorkflow {
        crate::SfnWorkflow::new(self.sfn_client(), state_machine_arn)
    }

    /// The Step Functions client, for a function that serves several state machines.
    /// CloudFormation, for the request handler's check of a request.
    pub fn stacks_adapter(&self) -> crate::StackAdapter {
        crate::StackAdapter::new(aws_sdk_cloudformation::Client::new(&self.0))
    }

    /// opsflow's state table, named by `SETUP_TABLE_NAME`.
    pub fn setup_store(&self) -> Result<crate::DynamoStore, CoreError> {
        let table = std::env::var("SETUP_TABLE_NAME")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CoreError::invalid("SETUP_TABLE_NAME", "is required: the DynamoDB table of opsflow's state"))?;
        Ok(crate::DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.0), table))
    }

    pub fn sfn_client(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.0)
    }

    /// The alert enrichment's lookups, in the alarm's region and account: `ACCOUNT_ID` is this
    /// account (unset: asked of STS once); other accounts are searched only with
    /// `ALERT_MEMBER_LOOKUPS=true` (default false), through the read-only role
    /// `ALERT_MEMBER_ROLE_NAME` (default `opsflow-member-alerts`, which member-account.yaml
    /// creates beside the runbooks' role) with `MEMBER_EXTERNAL_ID`. A configuration that asks for member
    /// lookups and cannot have them (no ExternalId, a value other than true/false) does not stop
    /// the function: it is logged, and each alert of another account says why it was not searched.
    pub fn alert_adapter(&self) -> crate::AlertAdapter {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let adapter = |member| crate::AlertAdapter::new(&self.0, var("ACCOUNT_ID"), member);
        let problem = match var("ALERT_MEMBER_LOOKUPS").as_deref().map(str::trim) {
            None | Some("false") => return adapter(None),
            Some("true") => match var("MEMBER_EXTERNAL_ID") {
                Some(external_id) => {
                    return adapter(Some(crate::MemberAccess {
                        role_name: var("ALERT_MEMBER_ROLE_NAME").unwrap_or_else(|| "opsflow-member-alerts".to_string()),
                        external_id,
                    }))
                }
                None => {
                    "ALERT_MEMBER_LOOKUPS is true but MEMBER_EXTERNAL_ID is empty (the member role's ExternalId is required)".to_string()
                }
            },
            Some(other) => format!("ALERT_MEMBER_LOOKUPS must be true or false, not {other:?}"),
        };
        tracing::error!(problem, "cross-account alert lookups are off");
        adapter(None).without_members_because(problem)
    }

    /// The alert ledger (one publication per alarm state change), the table named by
    /// `ALERT_LEDGER_TABLE`; None when unset (every delivery is published).
    pub fn alert_ledger(&self) -> Option<crate::DynamoAlertLedger> {
        let table = std::env::var("ALERT_LEDGER_TABLE").ok().filter(|t| !t.is_empty())?;
        Some(crate::DynamoAlertLedger::new(aws_sdk_dynamodb::Client::new(&self.0), table))
    }

    /// The member accounts, through the role `MEMBER_ROLE_NAME` with `MEMBER_EXTERNAL_ID`.
    pub fn member_fleet(&self) -> Result<crate::MemberFleet, CoreError> {
        crate::MemberFleet::from_env(&self.0)
    }

    /// The member accounts' audit roles (`AUDIT_ROLE_NAME`, `MEMBER_EXTERNAL_ID`).
    pub fn audit_fleet(&self) -> Result<crate::AuditFleet, CoreError> {
        crate::AuditFleet::from_env(&self.0)
    }

    /// S3 objects (runs, command output).
    pub fn s3_objects(&self) -> crate::S3Objects {
        crate::S3Objects::new(aws_sdk_s3::Client::new(&self.0))
    }

    /// The runbook audit trail, the table named by `RUNS_TABLE`.
    pub fn run_log(&self) -> Result<crate::DynamoRunLog, CoreError> {
        let table = std::env::var("RUNS_TABLE")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CoreError::invalid("RUNS_TABLE", "is required: the DynamoDB table of runbook runs"))?;
        Ok(crate::DynamoRunLog::new(aws_sdk_dynamodb::Client::new(&self.0), table))
    }

    /// Publishes enriched alerts to `topic_arn`.
    pub fn sns_publisher(&self, topic_arn: &str) -> crate::SnsPublisher {
        crate::SnsPublisher::new(aws_sdk_sns::Client::new(&self.0), topic_arn)
    }
}

/// Every SDK client opsflow uses and the HTTP client of the response sink, for the local
/// pipeline and tests (a Lambda builds only its own, from an [`AwsConfig`]).
///
/// Each client is a cheap handle (an `Arc` inside): clone it, or build the adapters with
/// [`Clients::ec2_adapter`] and friends.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// Path-style addressing, which works against any endpoint (virtual-hosted needs DNS).
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sts: aws_sdk_sts::Client,
    pub resource_groups: aws_sdk_resourcegroups::Client,
    /// For the CloudFormation ResponseURL PUT only.
    pub http: reqwest::Client,
    /// The configuration the clients were made from (for clients of other regions and accounts).
    pub sdk_config: SdkConfig,
}

impl Clients {
    /// See [`AwsConfig::from_env`].
    pub async fn from_env() -> Result<Self, CoreError> {
        Self::from_sdk_config(AwsConfig::from_env().await.sdk_config())
    }

    /// See [`AwsConfig::for_endpoint`].
    pub async fn for_endpoint(endpoint: &str) -> Result<Self, CoreError> {
        Self::from_sdk_config(AwsConfig::for_endpoint(endpoint).await.sdk_config())
    }

    /// See [`AwsConfig::for_endpoint_as`].
    pub async fn for_endpoint_as(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Result<Self, CoreError> {
        Self::from_sdk_config(
            AwsConfig::for_endpoint_as(endpoint, region, access_key, secret_key)
                .await
                .sdk_config(),
        )
    }

    /// From a loaded [`SdkConfig`] (to choose retries, timeouts or an HTTP client yourself).
    pub fn from_sdk_config(config: &SdkConfig) -> Result<Self, CoreError> {
        Ok(Clients {
            ec2: aws_sdk_ec2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            cloudformation: aws_sdk_cloudformation::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build()),
            sns: aws_sdk_sns::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            resource_groups: aws_sdk_resourcegroups::Client::new(config),
            http: crate::http::response_http_client()?,
            sdk_config: config.clone(),
        })
    }

    pub fn ec2_adapter(&self) -> Ec2Adapter {
        Ec2Adapter::new(self.ec2.clone())
    }

    pub fn iam_adapter(&self) -> IamAdapter {
        IamAdapter::new(self.iam.clone())
    }

    pub fn ssm_adapter(&self) -> SsmAdapter {
        SsmAdapter::new(self.ssm.clone())
    }

    /// Step Functions for the state machine `state_machine_arn`.
    pub fn workflow(&self, state_machine_arn: &str) -> crate::SfnWorkflow {
        crate::SfnWorkflow::new(self.sfn.clone(), state_machine_arn)
    }

    /// The alert enrichment's lookups: this account in any region (the account asked of STS),
    /// no other account.
    pub fn alert_adapter(&self) -> crate::AlertAdapter {
        crate::AlertAdapter::new(&self.sdk_config, None, None)
    }

    /// The alert enrichment's lookups, other accounts through their member role.
    pub fn alert_adapter_with_members(&self, member: crate::MemberAccess) -> crate::AlertAdapter {
        crate::AlertAdapter::new(&self.sdk_config, None, Some(member))
    }

    /// The alert ledger on the table `table`.
    pub fn alert_ledger(&self, table: &str) -> crate::DynamoAlertLedger {
        crate::DynamoAlertLedger::new(self.dynamodb.clone(), table)
    }

    /// Publishes enriched alerts to `topic_arn`.
    pub fn sns_publisher(&self, topic_arn: &str) -> crate::SnsPublisher {
        crate::SnsPublisher::new(self.sns.clone(), topic_arn)
    }

    pub fn response_sink(&self) -> HttpResponseSink {
        HttpResponseSink::new(self.http.clone())
    }

    pub fn stacks_adapter(&self) -> crate::StackAdapter {
        crate::StackAdapter::new(self.cloudformation.clone())
    }

    /// opsflow's state in the table `table`.
    pub fn setup_store(&self, table: &str) -> crate::DynamoStore {
        crate::DynamoStore::new(self.dynamodb.clone(), table)
    }
}

/// [`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`] and [`OPERATION_TIMEOUT`].
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
