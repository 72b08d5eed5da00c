//! Fleet runbooks, offline: the runner and the procedures' state machine files on the local
//! engine, the runbook functions in-process with the real adapters, against the local cloud,
//! whose accounts stand for the member accounts (each with its member role, checked with its
//! ExternalId by the local cloud's STS) and whose clock the engine drives.
//!
//! The Distributed Map's children, the nested procedure executions, the HTTP Task (through a
//! connection registered with the engine, its secret never in a definition or a payload), the
//! ItemReader over S3 and the run's row written by the DynamoDB integration all run as they
//! would on AWS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use aws_sdk_dynamodb::types::AttributeValue;
use opsflow_asl::{Clock as EngineClock, Engine, ExecutionHandle, ExecutionResult, StartOptions, StateMachine, StatesError, TaskRequest};
use opsflow_aws::{aws_sdk_dynamodb, aws_sdk_ec2, AwsConfig, Clients, DynamoRunLog, MemberFleet, S3Objects, SnsPublisher, SystemClock};
use opsflow_core::ports::Clock;
use opsflow_core::runbook::handlers::{invoke, placeholder, RunbookPorts, TASK_FUNCTIONS};
use opsflow_core::runbook::steps::Settings;
use opsflow_core::runbook::{Catalogue, Kind, Summary};
use serde_json::{json, Value};

use super::{function_arn, load_machine, LocalClock, LocalCloud, ACCOUNT, REGION};

/// The local runs table (the template's RunsTable).
pub const RUNS_TABLE: &str = "opsflow-runs";
/// The local runs bucket (the template's RunsBucket).
pub const RUNS_BUCKET: &str = "opsflow-runs-local";
/// forensic-capture's evidence.
pub const FORENSICS_BUCKET: &str = "opsflow-forensics-local";
/// The local results topic's name (the template's RunbookResultsTopic).
pub const RESULTS_TOPIC: &str = "opsflow-runbook-results";
/// The member role's name, as `infra/member-account.yaml` creates it.
pub const MEMBER_ROLE: &str = "opsflow-member";
/// The member audit role's name (read only), as `infra/member-account.yaml` creates it.
pub const AUDIT_ROLE: &str = "opsflow-member-audit";
/// The member fix role's name (fleet health's automatic fix), as `infra/member-account.yaml`
/// creates it with SsmProfileFix Enabled.
pub const SSM_FIX_ROLE: &str = "opsflow-member-ssmfix";
/// The member accounts' default SSM instance profile (and its role), likewise.
pub const SSM_DEFAULT_PROFILE: &str = "opsflow-member-ssm";
/// The runner's state machine name.
pub const RUNNER: &str = "opsflow-run-runbook";

/// The ARN of a local state machine.
pub fn state_machine_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}

/// The ARN of a procedure kind's local state machine (`opsflow-<kind>`).
fn procedure_machine_arn(kind: Kind) -> String {
    state_machine_arn(&format!("opsflow-{}", kind.as_str()))
}

/// An EventBridge connection for the HTTP Task: its ARN and its definition with the secret, as
/// CreateConnection takes it.
#[derive(Clone, Debug)]
pub struct Connection {
    pub name: String,
    pub arn: String,
    pub definition: Value,
}

impl Connection {
    /// An API key connection: `header: key` on every call.
    pub fn api_key(name: &str, header: &str, key: &str) -> Connection {
        Connection {
            name: name.to_string(),
            arn: format!("arn:aws:events:{REGION}:{ACCOUNT}:connection/{name}/5c0ffee0-0000-4000-8000-000000000001"),
            definition: json!({"AuthorizationType": "API_KEY", "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": header, "ApiKeyValue": key}}}),
        }
    }
}

/// How the local runner reaches the member accounts and endpoints.
#[derive(Clone, Debug)]
pub struct Options {
    pub role_name: String,
    pub external_id: String,
    pub connections: Vec<Connection>,
    /// Procedure name → the endpoint its HTTP check calls instead of the catalogue's.
    pub endpoints: BTreeMap<String, String>,
    /// The HTTP Task's time limit (AWS: 60 s), shorter in tests.
    pub http_time_limit: Option<std::time::Duration>,
}

/// Targets running now and the most seen at once: what the Map let through, observed where the
/// targets start (Admit) and end (Record).
#[derive(Debug, Default)]
pub struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
}

/// A progress event for the operator's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Started { at_ms: i64, target: String },
    NotStarted { at_ms: i64, target: String },
    Finished { at_ms: i64, target: String, status: String },
}

type Ports = RunbookPorts<MemberFleet, S3Objects, DynamoRunLog, SnsPublisher>;
type Listener = Arc<Mutex<Option<Box<dyn FnMut(Progress) + Send>>>>;

/// The runner on the local engine.
pub struct LocalRunbooks {
    pub cloud: Arc<LocalCloud>,
    /// The central account's clients.
    pub clients: Clients,
    pub topic_arn: String,
    pub log: DynamoRunLog,
    engine: Engine,
    runner: Arc<StateMachine>,
    in_flight: Arc<InFlight>,
    listener: Listener,
    /// The run going on, for [`LocalRunbooks::stop`].
    running: Mutex<Option<ExecutionHandle>>,
}

/// A run's end.
#[derive(Debug)]
pub struct RunOutcome {
    pub execution: ExecutionResult,
    pub execution_arn: String,
    /// The summary the runner wrote (none for a dry run or a refused input).
    pub summary: Option<Summary>,
}

/// The local name of a runbook function (`Validate` → `opsflow-runbook-validate`).
pub fn function_name(function: &str) -> String {
    let mut kebab = String::new();
    for (i, c) in function.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            kebab.push('-');
        }
        kebab.push(c.to_ascii_lowercase());
    }
    format!("runbook-{kebab}")
}

/// A DynamoDB JSON attribute value (`{"S": "…"}`, `{"N": "1"}`, `{"M": {…}}`, …).
fn attribute(v: &Value) -> Result<AttributeValue, String> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| format!("{v} is not a DynamoDB attribute value"))?;
    let (kind, inner) = obj.iter().next().expect("one entry");
    let strings = |x: &Value| -> Result<Vec<String>, String> {
        x.as_array()
            .ok_or_else(|| format!("{kind} must be a list"))?
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| format!("{kind} holds strings")))
            .collect()
    };
    Ok(match (kind.as_str(), inner) {
        ("S", Value::String(s)) => AttributeValue::S(s.clone()),
        ("N", Value::String(n)) => AttributeValue::N(n.clone()),
        ("BOOL", Value::Bool(b)) => AttributeValue::Bool(*b),
        ("NULL", Value::Bool(true)) => AttributeValue::Null(true),
        ("SS", x) => AttributeValue::Ss(strings(x)?),
        ("NS", x) => AttributeValue::Ns(strings(x)?),
        ("L", Value::Array(items)) => AttributeValue::L(items.iter().map(attribute).collect::<Result<_, _>>()?),
        ("M", Value::Object(m)) => AttributeValue::M(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), attribute(x)?)))
                .collect::<Result<_, String>>()?,
        ),
        _ => return Err(format!("{v} is not a DynamoDB attribute value")),
    })
}

impl LocalRunbooks {
    pub async fn new(cloud: Arc<LocalCloud>, options: Options) -> anyhow::Result<LocalRunbooks> {
        let clients = Clients::for_endpoint(&cloud.endpoint).await.map_err(|e| anyhow!("{e}"))?;
        let log = DynamoRunLog::new(clients.dynamodb.clone(), RUNS_TABLE);
        log.create_table().await.map_err(|e| anyhow!("creating the runs table: {e}"))?;
        for bucket in [RUNS_BUCKET, FORENSICS_BUCKET] {
            match clients.s3.create_bucket().bucket(bucket).send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
                Err(e) => return Err(anyhow!("creating bucket {bucket}: {e:?}")),
            }
        }
        let topic_arn = crate::fixtures::topic(&clients, RESULTS_TOPIC).await?;
        let base = AwsConfig::for_endpoint(&cloud.endpoint).await;
        let ports = Arc::new(Ports {
            fleet: MemberFleet::new(base.sdk_config(), &options.role_name, &options.external_id),
            objects: S3Objects::new(clients.s3.clone()),
            log: log.clone(),
            publisher: clients.sns_publisher(&topic_arn),
        });
        let mut settings = Settings::new(RUNS_BUCKET);
        settings.procedure_arns = Kind::ALL
            .iter()
            .map(|kind| (kind.as_str().to_string(), procedure_machine_arn(*kind)))
            .collect();
        settings.connections = options.connections.iter().map(|c| (c.name.clone(), c.arn.clone())).collect();
        settings.endpoint_overrides = options.endpoints.clone();
        settings.forensics_bucket = Some(FORENSICS_BUCKET.to_string());
        let (settings, catalogue) = (Arc::new(settings), Arc::new(Catalogue::builtin()));
        let in_flight = Arc::new(InFlight::default());
        let listener: Listener = Arc::default();

        let mut builder = Engine::builder().clock(EngineClock::Virtual).region(REGION).account(ACCOUNT);
        builder = builder.object_store(Arc::new(crate::object_store::S3Store::new(clients.s3.clone())));
        if let Some(limit) = options.http_time_limit {
            builder = builder.http_time_limit(limit);
        }
        for c in &options.connections {
            builder = builder.connection(c.arn.clone(), c.definition.clone());
        }
        for function in TASK_FUNCTIONS {
            let (ports, settings, catalogue, cloud) = (ports.clone(), settings.clone(), catalogue.clone(), cloud.clone());
            let (in_flight, listener) = (in_flight.clone(), listener.clone());
            builder = builder.lambda(format!("opsflow-{}", function_name(function)), move |req: TaskRequest| {
                let (ports, settings, catalogue, cloud) = (ports.clone(), settings.clone(), catalogue.clone(), cloud.clone());
                let (in_flight, listener) = (in_flight.clone(), listener.clone());
                async move {
                    cloud
                        .control("clock", json!({"now_ms": req.now_ms}))
                        .await
                        .map_err(|e| StatesError::new("Lambda.Unknown", e.to_string()))?;
                    let target = req.payload.get("Target").map(target_label).unwrap_or_default();
                    let at_ms = req.now_ms;
                    let clock = LocalClock { task: req.clock, cloud };
                    let out = invoke(function, &*ports, &settings, &catalogue, req.payload, &clock)
                        .await
                        .map_err(|e| StatesError::new(e.name(), e.to_string()))?;
                    let event = match function {
                        "Admit" if out["Start"] == true => {
                            let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
                            in_flight.max.fetch_max(now, Ordering::SeqCst);
                            Some(Progress::Started { at_ms, target })
                        }
                        "Admit" => Some(Progress::NotStarted { at_ms, target }),
                        "Record" => {
                            in_flight.now.fetch_sub(1, Ordering::SeqCst);
                            let status = out["Status"].as_str().unwrap_or_default().to_string();
                            Some(Progress::Finished { at_ms, target, status })
                        }
                        _ => None,
                    };
                    if let (Some(event), Some(f)) = (event, listener.lock().expect("listener").as_mut()) {
                        f(event);
                    }
                    Ok(out)
                }
            });
        }
        let dynamodb = clients.dynamodb.clone();
        builder = builder.resource("arn:aws:states:::dynamodb:putItem", move |req: TaskRequest| {
            let dynamodb = dynamodb.clone();
            async move {
                let table = req.payload["TableName"].as_str().unwrap_or_default().to_string();
                let item = req.payload["Item"]
                    .as_object()
                    .ok_or_else(|| StatesError::new("States.Runtime", "PutItem needs an Item object"))?
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
                    .collect::<Result<std::collections::HashMap<_, _>, String>>()
                    .map_err(|e| StatesError::new("DynamoDB.ValidationException", e))?;
                dynamodb
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .map_err(|e| {
                        let code = e
                            .as_service_error()
                            .and_then(|s| aws_sdk_dynamodb::error::ProvideErrorMetadata::code(s))
                            .unwrap_or("SdkClientException");
                        StatesError::new(format!("DynamoDB.{code}"), format!("{e:?}"))
                    })?;
                Ok(json!({}))
            }
        });
        let subs: Vec<(String, String)> = TASK_FUNCTIONS
            .iter()
            .map(|f| (placeholder(f), function_arn(&function_name(f))))
            .chain([("${RunsTableName}".to_string(), RUNS_TABLE.to_string())])
            .chain(Kind::ALL.map(|k| (k.arn_placeholder(), procedure_machine_arn(k))))
            .collect();
        for kind in Kind::ALL {
            builder = builder.state_machine(
                procedure_machine_arn(kind),
                load_machine(&format!("statemachines/procedures/{}.asl.json", kind.as_str()), &subs)?,
            );
        }
        let runner = load_machine("statemachines/run-runbook.asl.json", &subs)?;
        Ok(LocalRunbooks {
            cloud,
            clients,
            topic_arn,
            log,
            engine: builder.build(),
            runner,
            in_flight,
            listener,
            running: Mutex::new(None),
        })
    }

    /// Stops the run going on, as StopExecution does (its procedures' executions with it): what
    /// an operator's brake, or a dying region, does to a run mid-way. False when none runs.
    pub fn stop(&self, cause: &str) -> bool {
        match self.running.lock().expect("running").as_ref() {
            Some(h) => {
                h.stop(None, Some(cause));
                true
            }
            None => false,
        }
    }

    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Runs the runner on `input` (as a schedule or `opsflow run` would start it), calling
    /// `on_progress` as targets start and end, and reads the summary it wrote.
    pub async fn run(&self, input: Value, name: &str, on_progress: impl FnMut(Progress) + Send + 'static) -> anyhow::Result<RunOutcome> {
        *self.listener.lock().expect("listener") = Some(Box::new(on_progress));
        self.in_flight.now.store(0, Ordering::SeqCst);
        self.in_flight.max.store(0, Ordering::SeqCst);
        let start = SystemClock.now_ms().max(self.cloud.now_ms().await?);
        let opts = StartOptions {
            name: name.to_string(),
            state_machine_name: RUNNER.to_string(),
            record_history: true,
        };
        let running = self.engine.start_at(self.runner.clone(), input, opts, Some(start));
        *self.running.lock().expect("running") = Some(running.handle.clone());
        let execution = running.result.await.context("the runner's execution");
        *self.running.lock().expect("running") = None;
        let execution = execution?;
        *self.listener.lock().expect("listener") = None;
        let execution_arn = format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:{RUNNER}:{name}");
        let key = format!("runs/{name}/summary.json");
        let summary = match self.clients.s3.get_object().bucket(RUNS_BUCKET).key(&key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.context("reading the summary")?.into_bytes();
                Some(serde_json::from_slice(&bytes).context("parsing the summary")?)
            }
            Err(_) => None,
        };
        Ok(RunOutcome {
            execution,
            execution_arn,
            summary,
        })
    }
}

fn target_label(t: &Value) -> String {
    let (id, name) = (t["InstanceId"].as_str().unwrap_or_default(), t["Name"].as_str().unwrap_or_default());
    let what = match (id.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => id.to_string(),
        (false, false) => format!("{id} ({name})"),
    };
    format!(
        "{what} in {} {}",
        t["Account"].as_str().unwrap_or("?"),
        t["Region"].as_str().unwrap_or("?")
    )
}

/// A member account of the local cloud, seeded: its administrator's clients and the member roles
/// (runbooks' and audits', trusting the central account, with the ExternalId condition), as
/// `infra/member-account.yaml` would create them.
pub struct MemberAccount {
    pub account: String,
    access_key: String,
    secret_key: String,
    endpoint: String,
}

/// The tag that opts an instance in to runbooks, and its usual value.
pub const OPT_IN: (&str, &str) = ("opsflow:runbooks", "enabled");
/// A Windows AMI that moto knows.
pub const WINDOWS_AMI: &str = "ami-03cf127a";

impl MemberAccount {
    pub async fn seed(cloud: &LocalCloud, account: &str, external_id: &str) -> anyhow::Result<MemberAccount> {
        let keys = cloud.control("accounts", json!({"account_id": account})).await?;
        let m = MemberAccount {
            account: account.to_string(),
            access_key: keys["access_key_id"].as_str().context("access_key_id")?.to_string(),
            secret_key: keys["secret_access_key"].as_str().context("secret_access_key")?.to_string(),
            endpoint: cloud.endpoint.clone(),
        };
        let iam = m.clients(REGION).await?.iam;
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]});
        for role in [MEMBER_ROLE, AUDIT_ROLE] {
            match iam
                .create_role()
                .role_name(role)
                .assume_role_policy_document(trust.to_string())
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) => {}
                Err(e) => return Err(anyhow!("CreateRole {role} in {account}: {e:?}")),
            }
        }
        match crate::fixtures::instance_profile(&m.clients(REGION).await?, "fleet-ssm", "/").await {
            Ok(_) => {}
            Err(e) if format!("{e:?}").contains("EntityAlreadyExists") => {}
            Err(e) => return Err(e),
        }
        Ok(m)
    }

    /// What the member stack with SsmProfileFix Enabled adds: the default SSM instance profile
    /// (its role with AmazonSSMManagedEC2InstanceDefaultPolicy only) and the fix role, trusted
    /// like the others.
    pub async fn allow_ssm_fix(&self, external_id: &str) -> anyhow::Result<()> {
        let c = self.clients(REGION).await?;
        crate::fixtures::instance_profile(&c, SSM_DEFAULT_PROFILE, "/").await?;
        // The fixture's role has AmazonSSMManagedInstanceCore: swap it for DHMC's policy.
        c.iam
            .detach_role_policy()
            .role_name(SSM_DEFAULT_PROFILE)
            .policy_arn("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
            .send()
            .await
            .map_err(|e| anyhow!("DetachRolePolicy in {}: {e:?}", self.account))?;
        c.iam
            .attach_role_policy()
            .role_name(SSM_DEFAULT_PROFILE)
            .policy_arn("arn:aws:iam::aws:policy/AmazonSSMManagedEC2InstanceDefaultPolicy")
            .send()
            .await
            .map_err(|e| anyhow!("AttachRolePolicy in {}: {e:?}", self.account))?;
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]});
        c.iam
            .create_role()
            .role_name(SSM_FIX_ROLE)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .map_err(|e| anyhow!("CreateRole {SSM_FIX_ROLE} in {}: {e:?}", self.account))?;
        Ok(())
    }

    /// The account administrator's clients in `region`.
    pub async fn clients(&self, region: &str) -> anyhow::Result<Clients> {
        Clients::for_endpoint_as(&self.endpoint, region, &self.access_key, &self.secret_key)
            .await
            .map_err(|e| anyhow!("{e}"))
    }

    /// A managed instance (its SSM agent Online) in `region` with `tags` (and Name), Linux or
    /// Windows; returns its id.
    /// An Auto Scaling group of `n` Linux instances whose `tags` propagate to them (each with
    /// the fleet's SSM profile), and a termination lifecycle hook `hook` (DefaultResult
    /// CONTINUE, `heartbeat_s`); returns the instance ids.
    pub async fn scaling_group(
        &self,
        region: &str,
        name: &str,
        n: i32,
        tags: &[(&str, &str)],
        hook: &str,
        heartbeat_s: i32,
    ) -> anyhow::Result<Vec<String>> {
        use aws_sdk_ec2::types::{IamInstanceProfileSpecification, RequestLaunchTemplateData};
        use opsflow_aws::aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
        let c = self.clients(region).await?;
        c.ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(RequestLaunchTemplateData::builder().image_id(crate::fixtures::LINUX_AMI).build())
            .send()
            .await
            .context("CreateLaunchTemplate")?;
        let asg = opsflow_aws::aws_sdk_autoscaling::Client::new(&c.sdk_config);
        let mut create = asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(LaunchTemplateSpecification::builder().launch_template_name(name).build())
            .min_size(0)
            .max_size(n)
            .desired_capacity(n)
            .availability_zones(format!("{region}a"));
        for (k, v) in tags {
            create = create.tags(Tag::builder().key(*k).value(*v).propagate_at_launch(true).build());
        }
        create.send().await.context("CreateAutoScalingGroup")?;
        asg.put_lifecycle_hook()
            .auto_scaling_group_name(name)
            .lifecycle_hook_name(hook)
            .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
            .heartbeat_timeout(heartbeat_s)
            .default_result("CONTINUE")
            .send()
            .await
            .context("PutLifecycleHook")?;
        let out = asg
            .describe_auto_scaling_instances()
            .send()
            .await
            .context("DescribeAutoScalingInstances")?;
        let ids: Vec<String> = out
            .auto_scaling_instances()
            .iter()
            .filter(|i| i.auto_scaling_group_name() == Some(name))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        for id in &ids {
            c.ec2
                .associate_iam_instance_profile()
                .instance_id(id)
                .iam_instance_profile(IamInstanceProfileSpecification::builder().name("fleet-ssm").build())
                .send()
                .await
                .context("AssociateIamInstanceProfile")?;
        }
        Ok(ids)
    }

    pub async fn instance(&self, region: &str, name: &str, tags: &[(&str, &str)], windows: bool) -> anyhow::Result<String> {
        use aws_sdk_ec2::types::{IamInstanceProfileSpecification, ResourceType, Tag, TagSpecification};
        let c = self.clients(region).await?;
        let mut spec = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(name).build());
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(*k).value(*v).build());
        }
        let out = c
            .ec2
            .run_instances()
            .image_id(if windows { WINDOWS_AMI } else { crate::fixtures::LINUX_AMI })
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
            .min_count(1)
            .max_count(1)
            .tag_specifications(spec.build())
            .send()
            .await
            .context("RunInstances")?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .context("no instance")?
            .to_string();
        c.ec2
            .associate_iam_instance_profile()
            .instance_id(&id)
            .iam_instance_profile(IamInstanceProfileSpecification::builder().name("fleet-ssm").build())
            .send()
            .await
            .context("AssociateIamInstanceProfile")?;
        Ok(id)
    }
}

/// A health endpoint on 127.0.0.1 for the HTTP check: answers the scripted statuses in turn
/// (the last one from then on), after `delay`, and records each request's line and headers.
/// A request the endpoint received: its request line and headers (lowercase names).
pub type SeenRequest = (String, Vec<(String, String)>);

pub struct HealthEndpoint {
    pub url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    pub async fn start(statuses: Vec<u16>, delay: std::time::Duration) -> anyhow::Result<HealthEndpoint> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/healthz", listener.local_addr()?);
        let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (log, statuses) = (log.clone(), statuses.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let mut lines = head.lines();
                    let line = lines.next().unwrap_or_default().to_string();
                    let headers = lines
                        .filter_map(|l| {
                            l.split_once(':')
                                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        })
                        .collect();
                    let n = {
                        let mut seen = log.lock().expect("seen");
                        seen.push((line, headers));
                        seen.len()
                    };
                    tokio::time::sleep(delay).await;
                    let code = statuses.get(n - 1).or(statuses.last()).copied().unwrap_or(200);
                    let body = if code < 300 {
                        r#"{"status":"ok"}"#
                    } else {
                        r#"{"status":"unhealthy"}"#
                    };
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        Ok(HealthEndpoint { url, seen, task })
    }

    /// Each request: its request line and headers (lowercase names).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
