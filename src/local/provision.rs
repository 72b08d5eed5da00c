//! The provisioning pipeline, offline: the real state machine file on the local engine, the
//! real handlers in-process, AWS calls to the local cloud (moto + extension on 127.0.0.1),
//! whose clock the engine drives, and the CloudFormation answers PUT to presigned URLs in its S3.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use opsflow_asl::{
    Clock as EngineClock, Engine, ExecutionHandle, ExecutionResult, HistoryEvent, StartOptions, StateMachine, StatesError, TaskRequest,
};
use opsflow_aws::{Clients, DynamoStore, ResponseBucket, SystemClock};
use opsflow_core::ports::{Clock, SteppedClock, Workflow};
use opsflow_core::provision::handlers::{invoke, Ports, TASK_FUNCTIONS};
use opsflow_core::provision::request::{admit, safety_net, Admission, RequestPorts};
use opsflow_core::provision::steps::Settings;
use opsflow_core::CoreError;
use serde_json::{json, Value};

use super::{function_arn, load_machine, LocalClock, LocalCloud, ACCOUNT, REGION};

/// Where CloudFormation would read the answers: presigned PUT URLs into a bucket of the local
/// cloud's S3, versioned so that every PUT is kept and counted.
#[derive(Clone, Debug)]
pub struct ResponseStore {
    bucket: ResponseBucket,
}

impl ResponseStore {
    /// The bucket, as CloudFormation's own response bucket.
    pub const BUCKET: &'static str = "cloudformation-custom-resource-response-local";

    pub async fn create(clients: &Clients) -> anyhow::Result<ResponseStore> {
        Ok(ResponseStore {
            bucket: ResponseBucket::create(clients.s3.clone(), Self::BUCKET).await?,
        })
    }

    fn key(request_id: &str) -> String {
        // CloudFormation's key: the stack ARN, the logical id and the request id.
        format!("{}|Setup|{request_id}", stack_id())
    }

    /// The presigned response URL of one request (valid two hours, as CloudFormation's).
    pub async fn url_for(&self, request_id: &str) -> anyhow::Result<String> {
        Ok(self.bucket.presigned_put_url(&Self::key(request_id)).await?)
    }

    /// The bodies PUT for one request, oldest first.
    pub async fn answers(&self, request_id: &str) -> anyhow::Result<Vec<Value>> {
        self.bucket
            .read_all(&Self::key(request_id))
            .await?
            .iter()
            .map(|body| Ok(serde_json::from_str(body)?))
            .collect()
    }
}

/// The provisioning state machine, as SAM would deploy it, with local function ARNs.
pub fn provision_machine() -> anyhow::Result<Arc<StateMachine>> {
    let substitutions: Vec<(String, String)> = TASK_FUNCTIONS
        .iter()
        .map(|f| (format!("${{{f}FunctionArn}}"), function_arn(f)))
        .collect();
    load_machine("statemachines/provision-instance.asl.json", &substitutions)
}

type AdapterPorts =
    Ports<opsflow_aws::Ec2Adapter, opsflow_aws::IamAdapter, opsflow_aws::SsmAdapter, opsflow_aws::HttpResponseSink, DynamoStore>;

/// The local state table (the template's SetupStateTable).
pub const SETUP_TABLE: &str = "opsflow-setup-state";

/// Executions started by the request handler, run on the local engine.
#[derive(Default)]
struct Executions {
    /// Errors the next StartExecution calls fail with (fault injection for tests).
    failing_starts: Vec<CoreError>,
    started: HashSet<String>,
    pending: Vec<(String, Value)>,
    /// The executions running now, to stop them.
    running: HashMap<String, ExecutionHandle>,
    histories: HashMap<String, Vec<HistoryEvent>>,
}

/// [`Workflow`] on the local engine: StartExecution records the execution (once per name);
/// `answered` reads its history.
#[derive(Clone, Default)]
pub struct LocalWorkflow {
    inner: Arc<Mutex<Executions>>,
}

/// Step Functions' largest execution input (256 KiB).
pub const MAX_EXECUTION_INPUT_BYTES: usize = 262_144;

pub fn execution_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:provision-instance:{name}")
}

impl Workflow for LocalWorkflow {
    async fn stop_execution(&self, name: &str, cause: &str) -> Result<bool, CoreError> {
        let handle = self.inner.lock().unwrap().running.get(name).cloned();
        Ok(handle.is_some_and(|h| {
            h.stop(Some("opsflow.Superseded"), Some(cause));
            true
        }))
    }

    async fn start_execution(&self, name: &str, input: &Value) -> Result<(), CoreError> {
        let mut e = self.inner.lock().unwrap();
        if !e.failing_starts.is_empty() {
            return Err(e.failing_starts.remove(0));
        }
        // As AWS: an input over 256 KiB is refused.
        let size = input.to_string().len();
        if size > MAX_EXECUTION_INPUT_BYTES {
            return Err(CoreError::from_aws_error(
                "StartExecution",
                "InvalidExecutionInput",
                &format!("Provided input exceeds the maximum size of {MAX_EXECUTION_INPUT_BYTES} bytes ({size})"),
            ));
        }
        if e.started.insert(name.to_string()) {
            e.pending.push((name.to_string(), input.clone()));
        }
        Ok(())
    }

    async fn answered(&self, execution_arn: &str) -> Result<bool, CoreError> {
        let e = self.inner.lock().unwrap();
        let name = execution_arn.rsplit(':').next().unwrap_or_default();
        Ok(e.histories.get(name).is_some_and(|h| {
            h.iter()
                .any(|ev| ev.event_type == "TaskStateExited" && matches!(ev.state_name(), Some("AnswerSuccess" | "AnswerFailed")))
        }))
    }
}

/// The local pipeline: request handler, state machine, safety net.
pub struct LocalPipeline {
    pub cloud: Arc<LocalCloud>,
    pub clients: Clients,
    pub settings: Settings,
    engine: Engine,
    machine: Arc<StateMachine>,
    workflow: LocalWorkflow,
    invocations: Arc<AtomicU64>,
}

/// What happened to one CloudFormation request.
pub struct Submission {
    pub admission: Admission,
    pub execution: Option<ExecutionResult>,
    /// The safety net's answer, when it had to answer.
    pub safety_net_answered: bool,
}

impl LocalPipeline {
    pub async fn new(cloud: Arc<LocalCloud>, mut settings: Settings) -> anyhow::Result<LocalPipeline> {
        // The local cloud's presigned response URLs are http://127.0.0.1 (a deployment allows
        // them only with OPSFLOW_LOCAL_RESPONSE_URLS=1).
        settings.local_response_urls = true;
        let clients = Clients::for_endpoint(&cloud.endpoint).await.map_err(|e| anyhow!("{e}"))?;
        let store = clients.setup_store(SETUP_TABLE);
        store.create_table().await.map_err(|e| anyhow!("creating the state table: {e}"))?;
        let ports = Arc::new(AdapterPorts {
            ec2: clients.ec2_adapter(),
            iam: clients.iam_adapter(),
            ssm: clients.ssm_adapter(),
            sink: clients.response_sink(),
            store,
        });
        let invocations = Arc::new(AtomicU64::new(0));
        let mut builder = Engine::builder().clock(EngineClock::Virtual).region(REGION).account(ACCOUNT);
        // A Distributed Map's ItemReader and ResultWriter reach the local cloud's S3.
        builder = builder.object_store(Arc::new(crate::object_store::S3Store::new(clients.s3.clone())));
        for name in TASK_FUNCTIONS {
            let (ports, settings, cloud, count) = (ports.clone(), settings.clone(), cloud.clone(), invocations.clone());
            builder = builder.lambda(format!("opsflow-{name}"), move |req: TaskRequest| {
                let (ports, settings, cloud, count) = (ports.clone(), settings.clone(), cloud.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::Relaxed);
                    // The local cloud's time-driven progress follows the engine's clock.
                    cloud
                        .control("clock", json!({"now_ms": req.now_ms}))
                        .await
                        .map_err(|e| StatesError::new("Lambda.Unknown", e.to_string()))?;
                    let clock = LocalClock { task: req.clock, cloud };
                    invoke(&*ports, &settings, &clock, name, req.payload)
                        .await
                        .map_err(|e| StatesError::new(e.name(), e.to_string()))
                }
            });
        }
        Ok(LocalPipeline {
            cloud,
            clients,
            settings,
            engine: builder.build(),
            machine: provision_machine()?,
            workflow: LocalWorkflow::default(),
            invocations,
        })
    }

    pub fn lambda_invocations(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }

    /// Sends a CloudFormation request the way CloudFormation does: to the request handler; runs
    /// the execution it starts (watching its events with `on_event`), and the safety net when
    /// the execution ends FAILED, TIMED_OUT or ABORTED.
    pub async fn submit(&self, request: Value, mut on_event: impl FnMut(&HistoryEvent)) -> anyhow::Result<Submission> {
        let c = &self.clients;
        let ports = RequestPorts {
            ec2: c.ec2_adapter(),
            iam: c.iam_adapter(),
            sink: c.response_sink(),
            store: c.setup_store(SETUP_TABLE),
            workflow: self.workflow.clone(),
            stacks: c.stacks_adapter(),
            ssm: c.ssm_adapter(),
        };
        self.invocations.fetch_add(1, Ordering::Relaxed);
        // The handler's retries wait on a clock that moves at once (the local cloud's faults
        // are counted, not timed), so a throttling scenario takes no real seconds.
        let clock = SteppedClock::starting_at(self.cloud.now_ms().await?);
        let admission = admit(&ports, &clock, &self.settings, &request)
            .await
            .map_err(|e| anyhow!("request handler: {e}"))?;
        let pending = std::mem::take(&mut self.workflow.inner.lock().unwrap().pending);
        let mut execution = None;
        let mut safety = false;
        for (name, input) in pending {
            let mut running = self.engine.start_at(
                self.machine.clone(),
                input.clone(),
                StartOptions {
                    name: name.clone(),
                    state_machine_name: "provision-instance".into(),
                    record_history: true,
                },
                // Never behind the local cloud: an earlier long run in virtual time may have
                // driven its clock past real time, and time-driven progress (a volume
                // modification, an agent coming online) must not look already done or late.
                Some(SystemClock.now_ms().max(self.cloud.now_ms().await?)),
            );
            self.workflow
                .inner
                .lock()
                .unwrap()
                .running
                .insert(name.clone(), running.handle.clone());
            let result = loop {
                tokio::select! {
                    Some(ev) = running.events.recv() => on_event(&ev),
                    r = &mut running.result => break r?,
                }
            };
            while let Ok(ev) = running.events.try_recv() {
                on_event(&ev);
            }
            {
                let mut e = self.workflow.inner.lock().unwrap();
                e.running.remove(&name);
                e.histories.insert(name.clone(), result.events.clone());
            }
            if result.status != opsflow_asl::Status::Succeeded {
                self.invocations.fetch_add(1, Ordering::Relaxed);
                let now_s = result.events.last().map_or(0, |e| e.timestamp_ms / 1000);
                safety = self.safety_net(&name, result.status.as_str(), &input, now_s).await?;
            }
            execution = Some(result);
        }
        Ok(Submission {
            admission,
            execution,
            safety_net_answered: safety,
        })
    }

    /// Runs the safety net as the EventBridge rule would for an execution that ended `status`.
    pub async fn run_safety_net(&self, name: &str, status: &str, input: &Value) -> anyhow::Result<bool> {
        let now_s = self.cloud.now_ms().await? / 1000;
        self.safety_net(name, status, input, now_s).await
    }

    async fn safety_net(&self, name: &str, status: &str, input: &Value, now_s: i64) -> anyhow::Result<bool> {
        let c = &self.clients;
        let answered = safety_net(
            &c.ec2_adapter(),
            &c.ssm_adapter(),
            &c.response_sink(),
            &c.setup_store(SETUP_TABLE),
            &self.workflow,
            &self.settings,
            &execution_arn(name),
            status,
            input,
            now_s,
        )
        .await
        .map_err(|e| anyhow!("safety net: {e}"))?;
        Ok(answered.is_some())
    }

    /// Makes the next StartExecution fail with `error`, as AWS might (a test's fault injection).
    pub fn fail_next_start(&self, error: CoreError) {
        self.workflow.inner.lock().unwrap().failing_starts.push(error);
    }

    /// The engine, to start executions directly (e.g. to abort one in a test).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn machine(&self) -> Arc<StateMachine> {
        self.machine.clone()
    }

    /// Records a finished execution's history (for the safety net's `answered`).
    pub fn record_history(&self, name: &str, events: Vec<HistoryEvent>) {
        self.workflow.inner.lock().unwrap().histories.insert(name.to_string(), events);
    }
}

/// The consumer stack of the local requests.
pub fn stack_id() -> String {
    format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/dev-ide/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
}

/// A CloudFormation Create/Update/Delete request for `Custom::OpsflowInstanceSetup`.
pub fn cfn_request(request_type: &str, request_id: &str, response_url: &str, properties: Value, extra: Value) -> Value {
    let mut r = json!({
        "RequestType": request_type,
        "ServiceToken": function_arn("Request"),
        "ResponseURL": response_url,
        "StackId": stack_id(),
        "RequestId": request_id,
        "LogicalResourceId": "Setup",
        "ResourceType": "Custom::OpsflowInstanceSetup",
        "ResourceProperties": properties,
    });
    if let (Some(m), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    r
}
