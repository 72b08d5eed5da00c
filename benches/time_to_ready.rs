//! Time to ready: `statemachines/provision-instance.asl.json` on the local engine in virtual time,
//! with the real step handlers, against a modelled AWS whose slow steps take durations drawn
//! from the distributions below; side by side with the designs it replaces, on the same draws.
//!
//! `cargo bench --bench time_to_ready` (`make bench`). No network, no local cloud: the model
//! implements the core ports. Each modelled AWS call takes [`API_MS`] of the step's time.
//!
//! Designs, each run on the same [`RUNS`] draws:
//! - **watch** (opsflow): each step checks again after 1 s, ×1.5 up to every 5 s, for up to
//!   `WatchSeconds` (120) inside one invocation, then the Step Functions Wait loop;
//! - **Step Functions poll, 2 s ×1.5 ≤15 s**: the same state machine with `WatchSeconds` 0 and
//!   the poll policy opsflow had before (every check a Wait + Task + Choice);
//! - **fixed 5 s poll** (the CDK provider framework's interval): `WatchSeconds` 0, every 5 s;
//! - **fixed waits** (the Cloud9 IDE bootstrap design): associate and resize, Wait 300 s,
//!   reboot (cloud-init grows the partition at boot), Wait 300 s, then the bootstrap command,
//!   polled every 5 s (`benches/fixed-wait.asl.json`, served by model Lambdas);
//! - **callback** (modelled, not run): the watch design with the volume and both commands
//!   answered by an EventBridge event and a task token instead of checks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opsflow::local::provision::provision_machine;
use opsflow::local::{function_arn, ACCOUNT, REGION};
use opsflow_asl::{model, Clock as EngineClock, Engine, ExecutionResult, StartOptions, StateMachine, StatesError, TaskClock, TaskRequest};
use opsflow_core::facts::{
    Association, AssociationState, BlockDevice, CheckStatus, InstanceFacts, InstanceState, Invocation, Modification, ModificationState,
    PingStatus, Platform, ProfileRef, StackResource, StatusChecks, VolumeFacts,
};
use opsflow_core::ports::{Clock, SetupStore, Stacks, SteppedClock, Workflow};
use opsflow_core::provision::guard::STACK_ID_TAG;
use opsflow_core::provision::handlers::{invoke, Ports, TASK_FUNCTIONS};
use opsflow_core::provision::request::{admit, Admission, RequestPorts};
use opsflow_core::provision::steps::{PollPolicy, Settings};
use opsflow_core::{AllowList, CommandSpec, CoreError, Ec2, Iam, ResponseSink, Ssm};
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use serde_json::{json, Value};

const RUNS: usize = 1000;
/// How long each modelled AWS call takes.
const API_MS: i64 = 80;
const INSTANCE: &str = "i-0123456789abcdef0";
const VOLUME: &str = "vol-0123456789abcdef0";
const PROFILE: &str = "dev-ide-profile";
const SEED: u64 = 20261123;

/// Prices (us-east-1, November 2026): Step Functions Standard per state transition; Lambda per
/// request and per GB-second (arm64), functions at 128 MB.
const PRICE_TRANSITION: f64 = 0.000025;
const PRICE_REQUEST: f64 = 0.0000002;
const PRICE_GB_S: f64 = 0.0000133334;
const MEMORY_GB: f64 = 0.125;

/// The slow steps: median and σ of a lognormal (seconds).
const WAITS: [(&str, f64, f64); 6] = [
    ("association", 4.0, 0.5),
    ("volume", 15.0, 0.6),
    ("agent", 60.0, 0.5),
    ("filesystem", 3.0, 0.4),
    ("bootstrap", 90.0, 0.5),
    ("agent after reboot", 45.0, 0.4),
];
/// EventBridge delivery delay of the callback design: median and σ (seconds).
const EVENT_DELAY: (f64, f64) = (0.5, 1.0);

/// The waits whose lag is reported.
const ASSOC: usize = 0;
const VOL: usize = 1;
const AGENT: usize = 2;
const FS: usize = 3;
const BOOT: usize = 4;
const REBOOT_AGENT: usize = 5;
const REPORTED: [usize; 5] = [ASSOC, VOL, AGENT, FS, BOOT];

/// One run's drawn durations, ms.
#[derive(Clone, Copy, Debug)]
struct Draw {
    ms: [i64; 6],
    event_delay_ms: [i64; 2],
}

impl Draw {
    /// Association, then the volume and the agent side by side, then the file system and the
    /// bootstrap: the least time any design can take.
    fn critical_ms(&self) -> i64 {
        self.ms[ASSOC] + self.ms[VOL].max(self.ms[AGENT]) + self.ms[FS] + self.ms[BOOT]
    }
}

/// What the modelled AWS knows of one run.
#[derive(Default)]
struct World {
    associated_at: Option<i64>,
    modified_at: Option<i64>,
    rebooted_at: Option<i64>,
    commands: Vec<(String, usize, i64)>,
    /// Per wait: when the workflow started it or first checked it, when the resource became ready, and when
    /// the workflow first saw it ready.
    checked: [Option<i64>; 5],
    ready: [Option<i64>; 5],
    seen: [Option<i64>; 5],
    answer: Option<Value>,
    calls: u64,
    /// opsflow's state table.
    items: BTreeMap<String, String>,
}

/// The modelled AWS: the core ports on the engine's virtual clock.
#[derive(Clone)]
struct Model {
    draw: Draw,
    world: Arc<Mutex<World>>,
    /// The running invocation's clock (one execution at a time).
    clock: Arc<Mutex<TaskClock>>,
}

impl Model {
    fn new(draw: Draw) -> Model {
        Model {
            draw,
            world: Arc::default(),
            clock: Arc::new(Mutex::new(TaskClock::virtual_at(0))),
        }
    }

    /// One AWS call: takes [`API_MS`]; returns the time it answered at.
    async fn call(&self) -> i64 {
        let clock = self.clock.lock().unwrap().clone();
        clock.sleep(API_MS as u64).await;
        self.world.lock().unwrap().calls += 1;
        clock.now_ms()
    }

    fn association_ready_at(&self, w: &World) -> Option<i64> {
        w.associated_at.map(|t| t + self.draw.ms[ASSOC])
    }

    /// The agent registers after the profile arrives; a reboot takes it offline until it is
    /// back up and registered again.
    fn agent_online_at(&self, w: &World) -> Option<i64> {
        match w.rebooted_at {
            Some(t) => Some(t + self.draw.ms[REBOOT_AGENT]),
            None => w.associated_at.map(|t| t + self.draw.ms[AGENT]),
        }
    }

    /// Records that the workflow checked wait `i` at `now` (the first time counts).
    fn checked(w: &mut World, i: usize, now: i64) {
        w.checked[i].get_or_insert(now);
    }

    /// Records that the workflow saw wait `i` done at `now` (the first time counts).
    fn saw(w: &mut World, i: usize, ready_at: i64, now: i64) {
        w.ready[i].get_or_insert(ready_at);
        w.seen[i].get_or_insert(now);
    }

    fn association(&self, w: &mut World, now: i64) -> Option<Association> {
        let ready_at = self.association_ready_at(w)?;
        Model::checked(w, ASSOC, now);
        let state = if now >= ready_at {
            Model::saw(w, ASSOC, ready_at, now);
            AssociationState::Associated
        } else {
            AssociationState::Associating
        };
        Some(Association {
            association_id: "iip-assoc-0123456789abcdef0".into(),
            profile_arn: profile_arn(),
            state,
        })
    }

    fn modification(&self, w: &mut World, now: i64) -> Option<Modification> {
        let at = w.modified_at?;
        let ready_at = at + self.draw.ms[VOL];
        Model::checked(w, VOL, now);
        let state = if now >= ready_at {
            Model::saw(w, VOL, ready_at, now);
            ModificationState::Optimizing
        } else {
            ModificationState::Modifying
        };
        Some(Modification {
            state,
            target_size_gib: 32,
            start_time_epoch_s: at / 1000,
            end_time_epoch_s: None,
        })
    }
}

fn profile_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:instance-profile/{PROFILE}")
}

impl Ec2 for Model {
    async fn describe_instance(&self, _: &str) -> Result<InstanceFacts, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        Ok(InstanceFacts {
            instance_id: INSTANCE.into(),
            state: InstanceState::Running,
            platform: Platform::Linux,
            root_device_name: Some("/dev/xvda".into()),
            block_devices: vec![BlockDevice {
                device_name: "/dev/xvda".into(),
                volume_id: VOLUME.into(),
            }],
            iam_association: self.association(&mut w, now),
            // CloudFormation's tag on an instance the stack created: the stack owns it.
            tags: BTreeMap::from([(STACK_ID_TAG.to_string(), stack_id())]),
            launch_time_epoch_s: Some(0),
        })
    }
    async fn describe_volume(&self, _: &str) -> Result<VolumeFacts, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        let modification = self.modification(&mut w, now);
        Ok(VolumeFacts {
            volume_id: VOLUME.into(),
            size_gib: if modification.is_some() { 32 } else { 8 },
            volume_type: "gp3".into(),
            modification,
        })
    }
    async fn modify_volume(&self, _: &str, size_gib: u32) -> Result<Modification, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        w.modified_at = Some(now);
        Model::checked(&mut w, VOL, now);
        Ok(Modification {
            state: ModificationState::Modifying,
            target_size_gib: size_gib,
            start_time_epoch_s: now / 1000,
            end_time_epoch_s: None,
        })
    }
    async fn describe_volume_modification(&self, _: &str) -> Result<Option<Modification>, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        Ok(self.modification(&mut w, now))
    }
    async fn associate_profile(&self, _: &str, _: &str) -> Result<Association, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        w.associated_at = Some(now);
        Ok(self.association(&mut w, now).expect("just associated"))
    }
    async fn replace_profile_association(&self, _: &str, _: &str) -> Result<Association, CoreError> {
        Err(CoreError::unsupported("model", "the instance has no profile to replace"))
    }
    async fn disassociate_profile(&self, _: &str) -> Result<Association, CoreError> {
        Err(CoreError::unsupported("model", "nothing to disassociate"))
    }
    async fn describe_association(&self, _: &str) -> Result<Option<Association>, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        Ok(self.association(&mut w, now))
    }
    async fn instance_status(&self, _: &str) -> Result<Option<StatusChecks>, CoreError> {
        self.call().await;
        Ok(Some(StatusChecks {
            instance_status: CheckStatus::Ok,
            system_status: CheckStatus::Ok,
        }))
    }
    async fn reboot_instance(&self, _: &str) -> Result<(), CoreError> {
        let now = self.call().await;
        self.world.lock().unwrap().rebooted_at = Some(now);
        Ok(())
    }
}

impl Iam for Model {
    async fn get_instance_profile(&self, name: &str) -> Result<ProfileRef, CoreError> {
        self.call().await;
        Ok(ProfileRef {
            name: name.into(),
            path: "/".into(),
            arn: profile_arn(),
            roles: vec!["dev-ide-role".into()],
        })
    }
}

impl Ssm for Model {
    async fn ping_status(&self, _: &str) -> Result<Option<PingStatus>, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        Model::checked(&mut w, AGENT, now);
        match self.agent_online_at(&w) {
            Some(at) if now >= at => {
                Model::saw(&mut w, AGENT, at, now);
                Ok(Some(PingStatus::Online))
            }
            _ => Ok(None),
        }
    }
    async fn send_command(&self, spec: &CommandSpec, _: &str) -> Result<String, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        if self.agent_online_at(&w).is_none_or(|at| now < at) {
            return Err(CoreError::invalid(
                "InstanceIds",
                "InvalidInstanceId: the instance is not an online managed node",
            ));
        }
        let grows = spec.parameters.values().flatten().any(|line| line.contains("growpart"));
        let wait = if grows { FS } else { BOOT };
        Model::checked(&mut w, wait, now);
        let id = format!("cmd-{}", w.commands.len());
        w.commands.push((id.clone(), wait, now));
        Ok(id)
    }
    async fn cancel_command(&self, _: &str, _: &str) -> Result<(), CoreError> {
        self.call().await;
        Ok(())
    }
    async fn get_invocation(&self, command_id: &str, _: &str) -> Result<Invocation, CoreError> {
        let now = self.call().await;
        let mut w = self.world.lock().unwrap();
        let &(_, wait, sent) = w.commands.iter().find(|c| c.0 == command_id).expect("a command sent");
        let done_at = sent + self.draw.ms[wait];
        Model::checked(&mut w, wait, now);
        let done = now >= done_at;
        if done {
            Model::saw(&mut w, wait, done_at, now);
        }
        Ok(Invocation {
            status: if done { "Success" } else { "InProgress" }.into(),
            status_details: if done { "Success" } else { "InProgress" }.into(),
            response_code: if done { 0 } else { -1 },
            stdout: if done && wait == FS {
                "OPSFLOW_FS_SIZE_BYTES=34359738368".into()
            } else {
                String::new()
            },
            ..Invocation::default()
        })
    }
}

impl ResponseSink for Model {
    async fn put(&self, _: &str, body: &str) -> Result<(), CoreError> {
        self.call().await;
        self.world.lock().unwrap().answer = serde_json::from_str(body).ok();
        Ok(())
    }
}

/// CloudFormation: the stack's Create is under way.
impl Stacks for Model {
    async fn resource(&self, _: &str, _: &str) -> Result<Option<StackResource>, CoreError> {
        self.call().await;
        Ok(Some(StackResource {
            stack_status: "CREATE_IN_PROGRESS".into(),
            resource_type: "Custom::OpsflowInstanceSetup".into(),
            resource_status: "CREATE_IN_PROGRESS".into(),
        }))
    }
}

/// The state table: a DynamoDB call each, like the others.
impl SetupStore for Model {
    async fn get(&self, key: &str) -> Result<Option<String>, CoreError> {
        self.call().await;
        Ok(self.world.lock().unwrap().items.get(key).cloned())
    }
    async fn put_new(&self, key: &str, doc: &str, _: Option<i64>) -> Result<bool, CoreError> {
        self.call().await;
        let mut w = self.world.lock().unwrap();
        if w.items.contains_key(key) {
            return Ok(false);
        }
        w.items.insert(key.to_string(), doc.to_string());
        Ok(true)
    }
    async fn put(&self, key: &str, doc: &str, _: Option<i64>) -> Result<(), CoreError> {
        self.call().await;
        self.world.lock().unwrap().items.insert(key.to_string(), doc.to_string());
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), CoreError> {
        self.call().await;
        self.world.lock().unwrap().items.remove(key);
        Ok(())
    }
}

/// The steps' clock: the invocation's clock on the engine.
struct StepClock(TaskClock);

impl Clock for StepClock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    async fn sleep(&self, ms: u64) -> Result<(), CoreError> {
        self.0.sleep(ms).await;
        Ok(())
    }
}

/// The request handler's StartExecution: keeps the input.
#[derive(Default)]
struct Started(Mutex<Option<Value>>);

impl Workflow for Started {
    async fn stop_execution(&self, _: &str, _: &str) -> Result<bool, CoreError> {
        Ok(false)
    }
    async fn start_execution(&self, _: &str, input: &Value) -> Result<(), CoreError> {
        *self.0.lock().unwrap() = Some(input.clone());
        Ok(())
    }
    async fn answered(&self, _: &str) -> Result<bool, CoreError> {
        Ok(false)
    }
}

/// What one run cost and how long it took.
#[derive(Clone, Debug, Default)]
struct Run {
    ok: bool,
    total_ms: i64,
    critical_ms: i64,
    /// Detection lag per reported wait (ms); `None` where the design does not wait on it.
    lag_ms: [Option<i64>; 5],
    transitions: u64,
    invocations: u64,
    calls: u64,
    lambda_ms: i64,
}

impl Run {
    fn dollars(&self) -> f64 {
        self.transitions as f64 * PRICE_TRANSITION
            + self.invocations as f64 * PRICE_REQUEST
            + self.lambda_ms as f64 / 1000.0 * MEMORY_GB * PRICE_GB_S
    }
}

/// Counts the invocations and their billed time (ms, rounded up, at least 1).
#[derive(Clone, Default)]
struct Meter {
    invocations: Arc<AtomicU64>,
    ms: Arc<AtomicU64>,
}

impl Meter {
    fn bill(&self, req_now_ms: i64, end_ms: i64) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.ms.fetch_add((end_ms - req_now_ms).max(1) as u64, Ordering::Relaxed);
    }
}

fn stack_id() -> String {
    format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/dev-ide/1")
}

fn request() -> Value {
    json!({
        "RequestType": "Create", "ServiceToken": function_arn("Request"), "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/r",
        "StackId": stack_id(), "RequestId": "bench-1",
        "LogicalResourceId": "Setup", "ResourceType": "Custom::OpsflowInstanceSetup",
        "ResourceProperties": {"ServiceToken": function_arn("Request"), "InstanceId": INSTANCE, "InstanceProfile": PROFILE,
            "VolumeSizeGiB": "32", "Bootstrap": {"Commands": ["yum install -y git"], "TimeoutSeconds": "1800"}}
    })
}

async fn run_opsflow(draw: Draw, settings: &Settings, machine: &Arc<StateMachine>) -> Run {
    let model = Model::new(draw);
    let meter = Meter::default();
    let ports = Arc::new(Ports {
        ec2: model.clone(),
        iam: model.clone(),
        ssm: model.clone(),
        sink: model.clone(),
        store: model.clone(),
    });
    // The request handler (CloudFormation's call), at time 0.
    let clock = SteppedClock::starting_at(model.clock.lock().unwrap().now_ms());
    let handler = RequestPorts {
        ec2: model.clone(),
        iam: model.clone(),
        sink: model.clone(),
        store: model.clone(),
        workflow: Started::default(),
        stacks: model.clone(),
        ssm: model.clone(),
    };
    let admission = admit(&handler, &clock, settings, &request()).await.expect("admit");
    assert!(matches!(admission, Admission::Started { .. }), "{admission:?}");
    meter.bill(0, model.clock.lock().unwrap().now_ms());
    let input = handler.workflow.0.lock().unwrap().take().expect("an execution input");

    let settings = Arc::new(settings.clone());
    let step = move |name, payload, clock| {
        let (ports, settings) = (ports.clone(), settings.clone());
        async move { invoke(&*ports, &settings, &StepClock(clock), name, payload).await }
    };
    let result = execute(&model, &meter, machine, input, "opsflow", &TASK_FUNCTIONS, step).await;
    finish(&model, &meter, result.transitions, result.engine_ms, |w| {
        w.answer.as_ref().is_some_and(|a| a["Status"] == "SUCCESS")
    })
}

/// Runs `machine` from `input` on an engine whose Lambdas `{prefix}-{name}` run `step` on the
/// model: each invocation puts the model on the invocation's clock and is billed.
async fn execute<F, Fut>(
    model: &Model,
    meter: &Meter,
    machine: &Arc<StateMachine>,
    input: Value,
    prefix: &str,
    functions: &[&'static str],
    step: F,
) -> ExecutionResult
where
    F: Fn(&'static str, Value, TaskClock) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, CoreError>> + Send + 'static,
{
    let mut builder = Engine::builder().clock(EngineClock::Virtual).region(REGION).account(ACCOUNT);
    for &name in functions {
        let (model, meter, step) = (model.clone(), meter.clone(), step.clone());
        builder = builder.lambda(format!("{prefix}-{name}"), move |req: TaskRequest| {
            let (model, meter, step) = (model.clone(), meter.clone(), step.clone());
            async move {
                *model.clock.lock().unwrap() = req.clock.clone();
                let out = step(name, req.payload, req.clock.clone()).await;
                meter.bill(req.now_ms, req.clock.now_ms());
                out.map_err(|e| StatesError::new(e.name(), e.to_string()))
            }
        });
    }
    builder
        .build()
        .start(machine.clone(), input, StartOptions::default())
        .result
        .await
        .expect("the execution ends")
}

fn finish(model: &Model, meter: &Meter, transitions: u64, engine_ms: i64, ok: impl Fn(&World) -> bool) -> Run {
    let w = model.world.lock().unwrap();
    let mut lag_ms = [None; 5];
    for i in REPORTED {
        // A resource that was ready before the workflow came to it (the agent, while the
        // volume was being waited for) has no lag of its own.
        lag_ms[i] = w.ready[i].zip(w.seen[i]).map(|(r, s)| s - r.max(w.checked[i].unwrap_or(r)));
    }
    Run {
        ok: ok(&w),
        total_ms: engine_ms,
        critical_ms: model.draw.critical_ms(),
        lag_ms,
        transitions,
        invocations: meter.invocations.load(Ordering::Relaxed),
        calls: w.calls,
        lambda_ms: meter.ms.load(Ordering::Relaxed) as i64,
    }
}

/// The fixed-wait design's Lambdas, on the same model.
async fn fixed_step(model: &Model, function: &str) -> Result<Value, CoreError> {
    match function {
        "Setup" => {
            model.associate_profile(INSTANCE, PROFILE).await?;
            model.modify_volume(VOLUME, 32).await?;
            Ok(json!({}))
        }
        "Reboot" => {
            model.reboot_instance(INSTANCE).await?;
            let mut w = model.world.lock().unwrap();
            // The design moves on from the volume here: cloud-init grows the partition at boot
            // if the modification reached `optimizing` by now.
            let (ready, now) = (w.modified_at.unwrap() + model.draw.ms[VOL], w.rebooted_at.unwrap());
            // (The wait began at ModifyVolume, which recorded it.)
            if now < ready {
                return Err(CoreError::conflict(
                    "volume",
                    "still modifying at the reboot: the file system was not grown",
                ));
            }
            Model::saw(&mut w, VOL, ready, now);
            Ok(json!({}))
        }
        "SendBootstrap" => {
            let spec = CommandSpec {
                document_name: "AWS-RunShellScript".into(),
                parameters: BTreeMap::from([("commands".to_string(), vec!["yum install -y git".to_string()])]),
                timeout_seconds: 600,
                output_s3_bucket: None,
                output_s3_prefix: None,
                cloudwatch_log_group: None,
                comment: None,
            };
            let id = model.send_command(&spec, INSTANCE).await?;
            let mut w = model.world.lock().unwrap();
            let (online, sent) = (model.agent_online_at(&w).unwrap(), w.commands[0].2);
            let began = w.rebooted_at.unwrap();
            Model::checked(&mut w, AGENT, began);
            Model::saw(&mut w, AGENT, online, sent);
            Ok(json!({"commandId": id}))
        }
        "CheckBootstrap" => {
            let id = model.world.lock().unwrap().commands[0].0.clone();
            let inv = model.get_invocation(&id, INSTANCE).await?;
            Ok(json!({"commandId": id, "done": inv.status == "Success"}))
        }
        _ => unreachable!("{function}"),
    }
}

async fn run_fixed(draw: Draw, machine: &Arc<StateMachine>) -> Run {
    let model = Model::new(draw);
    let meter = Meter::default();
    let step = {
        let model = model.clone();
        move |name, _, _| {
            let model = model.clone();
            async move { fixed_step(&model, name).await }
        }
    };
    let functions = ["Setup", "Reboot", "SendBootstrap", "CheckBootstrap"];
    let result = execute(&model, &meter, machine, json!({}), "fixed", &functions, step).await;
    let succeeded = result.status == opsflow_asl::Status::Succeeded;
    // The custom resource's answer: one more invocation (as opsflow's Answer step).
    meter.bill(0, 1);
    finish(&model, &meter, result.transitions, result.engine_ms, |_| succeeded)
}

/// The callback design on a watch run's draw: the two commands are answered by an EventBridge
/// event (SSM's command status change; delivery delay drawn) that resumes a
/// `.waitForTaskToken` Task, instead of the step watching. Per command: the watching Lambda
/// time and checks go, an event router invocation comes, and the transitions stay (the Task
/// replaces the send-and-watch Task). The volume is left out: its wait overlaps the agent's,
/// which has no event, so an event for it would rarely shorten a run.
fn callback_of(watch: &Run, draw: &Draw) -> Run {
    let mut run = watch.clone();
    for (k, i) in [FS, BOOT].into_iter().enumerate() {
        let (Some(lag), delay) = (watch.lag_ms[i], draw.event_delay_ms[k]) else {
            continue;
        };
        run.lag_ms[i] = Some(delay);
        run.total_ms += delay - lag;
        // The watch's checks of this wait, at most every 5 s: Lambda time and calls saved.
        let watched = draw.ms[i] + lag;
        run.lambda_ms -= watched;
        run.calls = run.calls.saturating_sub((watched / 5000) as u64) + 1;
        run.invocations += 1;
        run.lambda_ms += 50;
    }
    run
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn secs(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

fn report(name: &str, runs: &[Run]) {
    let ok: Vec<&Run> = runs.iter().filter(|r| r.ok).collect();
    let mut lags = String::new();
    for i in REPORTED {
        let mut v: Vec<i64> = ok.iter().filter_map(|r| r.lag_ms[i]).collect();
        if v.is_empty() {
            lags.push_str(&format!(" {:>11}", "—"));
        } else {
            let (med, max) = (pct(&mut v, 0.5), pct(&mut v, 1.0));
            lags.push_str(&format!(" {:>5}/{:<5}", secs(med), secs(max)));
        }
    }
    let mean = |f: &dyn Fn(&Run) -> f64| ok.iter().map(|r| f(r)).sum::<f64>() / ok.len().max(1) as f64;
    let mut total: Vec<i64> = ok.iter().map(|r| r.total_ms).collect();
    let mut over: Vec<i64> = ok.iter().map(|r| r.total_ms - r.critical_ms).collect();
    println!(
        "{:<38} {:>4}/{:<4}{} {:>7} {:>7} {:>7} {:>6.1} {:>5.1} {:>6.1} {:>7.1} {:>9.6}",
        name,
        ok.len(),
        runs.len(),
        lags,
        secs(if total.is_empty() { 0 } else { pct(&mut total, 0.5) }),
        secs(if over.is_empty() { 0 } else { pct(&mut over, 0.5) }),
        secs(if over.is_empty() { 0 } else { pct(&mut over, 1.0) }),
        mean(&|r| r.transitions as f64),
        mean(&|r| r.invocations as f64),
        mean(&|r| r.calls as f64),
        mean(&|r| r.lambda_ms as f64 / 1000.0 * MEMORY_GB),
        mean(&|r| r.dollars()),
    );
}

fn draws() -> Vec<Draw> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let dist = |(median, sigma): (f64, f64)| LogNormal::new(median.ln(), sigma).expect("a lognormal");
    let waits: Vec<_> = WAITS.iter().map(|&(_, m, s)| dist((m, s))).collect();
    let event = dist(EVENT_DELAY);
    (0..RUNS)
        .map(|_| Draw {
            ms: std::array::from_fn(|i| (waits[i].sample(&mut rng) * 1000.0).round() as i64),
            event_delay_ms: std::array::from_fn(|_| (event.sample(&mut rng) * 1000.0).round() as i64),
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let draws = draws();
    let machine = provision_machine().expect("the provisioning state machine");
    let fixed_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixed-wait.asl.json")).unwrap();
    let fixed_machine = Arc::new(model::parse(&fixed_text).expect("benches/fixed-wait.asl.json"));
    let base = Settings::new(AllowList::parse(PROFILE).unwrap());
    let with = |watch_s: i64, first_s: u64, factor: f64, max_s: u64| Settings {
        watch_s,
        poll: PollPolicy { first_s, factor, max_s },
        ..base.clone()
    };
    let designs = [
        ("watch 1 s ×1.5 ≤5 s, 120 s (opsflow)", base.clone()),
        ("Step Functions poll 2 s ×1.5 ≤15 s", with(0, 2, 1.5, 15)),
        ("fixed 5 s poll (CDK provider)", with(0, 5, 1.0, 5)),
    ];

    println!("time to ready: {RUNS} runs per design on the same draws (seed {SEED}), virtual time, each AWS call {API_MS} ms");
    println!("modelled durations, lognormal (median, σ):");
    for (name, median, sigma) in WAITS {
        println!("  {name:<20} {median:>5.1} s  σ {sigma}");
    }
    println!("  EventBridge delivery (callback) {:.1} s  σ {}", EVENT_DELAY.0, EVENT_DELAY.1);
    println!(
        "prices: Step Functions Standard ${PRICE_TRANSITION} per transition; Lambda ${PRICE_REQUEST} per request, ${PRICE_GB_S} per GB-s (arm64, {} MB)",
        MEMORY_GB * 1024.0
    );
    println!();
    println!(
        "{:<38} {:>9} {:>11} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7} {:>6} {:>5} {:>6} {:>7} {:>9}",
        "design",
        "ready",
        "assoc lag",
        "volume lag",
        "agent lag",
        "fs lag",
        "boot lag",
        "total",
        "over",
        "over",
        "trans",
        "invoc",
        "calls",
        "GB-s",
        "$ / run"
    );
    println!(
        "{:<38} {:>9} {:>11} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7}",
        "", "", "med/max s", "med/max s", "med/max s", "med/max s", "med/max s", "med s", "med s", "max s"
    );
    let mut watch_runs = Vec::new();
    for (i, (name, settings)) in designs.iter().enumerate() {
        let mut runs = Vec::with_capacity(RUNS);
        for draw in &draws {
            runs.push(run_opsflow(*draw, settings, &machine).await);
        }
        report(name, &runs);
        if i == 0 {
            watch_runs = runs;
        }
    }
    let mut fixed = Vec::with_capacity(RUNS);
    for draw in &draws {
        fixed.push(run_fixed(*draw, &fixed_machine).await);
    }
    report("fixed waits 300 s + reboot (Cloud9)", &fixed);
    let callback: Vec<Run> = watch_runs.iter().zip(&draws).map(|(r, d)| callback_of(r, d)).collect();
    report("callback for the two commands*", &callback);
    println!();
    println!("ready: runs that ended ready (SUCCESS) of all runs. lag: from the resource being ready to the");
    println!("workflow seeing it (the check that sees it; for fixed waits, the step after the wait). total: start");
    println!("to answer; over: total minus the critical path (association + max(volume, agent) + file system +");
    println!("bootstrap). trans: state transitions; invoc: Lambda invocations (the request handler included);");
    println!("calls: AWS API calls; GB-s: Lambda compute at 128 MB; $: transitions + requests + GB-s.");
    println!("* modelled from the watch runs, not run on the engine: EventBridge events are best-effort, and no");
    println!("  event exists for the association or for the SSM agent coming online.");
}
