//! Fleet: the runbook runner (`statemachines/run-runbook.asl.json`) and the run-command procedure
//! (`statemachines/procedures/run-command.asl.json`) on the local engine in virtual time, with the
//! real runbook functions (`opsflow_core::runbook::handlers::invoke`) and the real catalogue,
//! against a modelled AWS: a fleet spread over 3 accounts × 3 regions, every instance opted in,
//! running and Online, each command taking a duration drawn from a lognormal (seeded). Side by
//! side with SSM Run Command's own rate control for the same fleet, on the same draws.
//!
//! `cargo bench --bench fleet` (`make bench`). No network, no local cloud: the model implements
//! the core ports (Fleet/Member, Objects, RunLog, AlertPublisher); each modelled AWS call takes
//! [`API_MS`] of the step's time, and the ports page as the APIs do (DescribeInstances 1,000 a
//! page, DescribeInstanceInformation 50, a DynamoDB Query 1 MB).
//!
//! What is run and what is modelled:
//! - **opsflow, Standard children** (run): Distributed Map, `MaxConcurrency` 10%, each target a
//!   STANDARD child that runs the procedure as a nested `startExecution.sync:2` execution.
//! - **opsflow, Express children** (priced from the same run, not run): EXPRESS children cannot
//!   use `.sync` or `.waitForTaskToken`, so the procedure would be inlined into the ItemProcessor
//!   (Admit → SendCommand → Wait/CheckCommand loop → Record) and each child would be billed per
//!   request and per GB-s (64 MB, rounded up to 100 ms) for the time the target took here; a
//!   child past Express' 5 minutes fails, so those targets are counted.
//! - **SSM Run Command rate control** (modelled on the same durations): one SendCommand per
//!   account × region (9 commands), each with MaxConcurrency 10% of its own targets and its own
//!   MaxErrors, SSM starting the next target the moment one ends; and the baseline of the whole
//!   fleet in one account and region (one command).
//!
//! Environment: `FLEET_SIZES=200,2000` runs other fleet sizes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use opsflow::local::runbook::{function_name, state_machine_arn};
use opsflow::local::{function_arn, ACCOUNT, REGION};
use opsflow_asl::{
    model, Clock as EngineClock, Engine, ExecutionResult, MemoryStore, StartOptions, StateMachine, StatesError, TaskClock, TaskRequest,
};
use opsflow_core::alert::{AlertPublisher, Publication};
use opsflow_core::facts::{InstanceFacts, InstanceState, Invocation, PingStatus, Platform, SnapshotFacts};
use opsflow_core::ports::{Clock, Fleet, InstanceQuery, Member, Objects, RunLog, SnapshotRequest};
use opsflow_core::runbook::handlers::{invoke, placeholder, RunbookPorts, TASK_FUNCTIONS};
use opsflow_core::runbook::log::TargetRow;
use opsflow_core::runbook::steps::Settings;
use opsflow_core::runbook::{Catalogue, Summary, TargetStatus};
use opsflow_core::{CommandSpec, CoreError};
use rand::SeedableRng;
use rand_distr::{Bernoulli, Distribution, LogNormal};
use serde_json::{json, Value};

/// The fleet sizes run: a small one to check the model, then issue 14's.
const SIZES: [usize; 2] = [200, 10_000];
const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
const REGIONS: [&str; 3] = ["eu-west-1", "eu-north-1", "us-east-1"];
const PROCEDURE: &str = "disk-cleanup";
const MAX_CONCURRENCY_PCT: u32 = 10;
const MAX_ERRORS_PCT: u32 = 5;
/// How long each modelled AWS call takes (as in the time-to-ready benchmark).
const API_MS: u64 = 80;
/// The command's duration: lognormal, median and σ (seconds).
const COMMAND: (f64, f64) = (60.0, 0.8);
/// The share of commands that exit non-zero.
const FAILING: f64 = 0.01;
const SEED: u64 = 20261206;
/// 2026-12-06T03:00:00Z, when the schedule starts the run.
const START_MS: i64 = 1_796_526_000_000;
const RUNS_BUCKET: &str = "opsflow-runs-bench";
const RUNS_TABLE: &str = "opsflow-runs";
/// A DynamoDB Query returns at most 1 MB a page.
const QUERY_PAGE_BYTES: usize = 1 << 20;

/// Prices (us-east-1, December 2026): Step Functions Standard per state transition; Express per
/// request and per GB-s (first 1,000 GB-hours, memory billed in 64 MB chunks, duration rounded up
/// to 100 ms); Lambda per request and per GB-s (arm64), functions at 128 MB (the template's).
const PRICE_TRANSITION: f64 = 0.000025;
const PRICE_EXPRESS_REQUEST: f64 = 0.000001;
const PRICE_EXPRESS_GB_S: f64 = 0.00001667;
const EXPRESS_GB: f64 = 64.0 / 1024.0;
const EXPRESS_MAX_MS: i64 = 300_000;
const PRICE_LAMBDA_REQUEST: f64 = 0.0000002;
const PRICE_LAMBDA_GB_S: f64 = 0.0000133334;
const LAMBDA_GB: f64 = 0.125;
/// DynamoDB on-demand (us-east-1, since the November 2024 price cut): per read request unit (a
/// strongly consistent read of up to 4 KB) and per write request unit (1 KB; a transactional
/// write takes two).
const PRICE_RRU: f64 = 0.125 / 1e6;
const PRICE_WRU: f64 = 0.625 / 1e6;

/// One instance of the modelled fleet.
struct Instance {
    account: &'static str,
    region: &'static str,
    id: String,
    /// How long its command runs, ms.
    duration_ms: i64,
    /// Whether its command exits 1.
    fails: bool,
}

/// One target's times on the engine's clock (ms).
#[derive(Default, Clone, Copy)]
struct Span {
    /// Admit was invoked / answered Start.
    admit_at: Option<i64>,
    started_at: Option<i64>,
    /// Record ended.
    recorded_at: Option<i64>,
}

/// What the modelled AWS knows.
#[derive(Default)]
struct World {
    instances: Vec<Instance>,
    by_id: HashMap<String, usize>,
    /// Command id → (instance, sent at).
    commands: HashMap<String, (usize, i64)>,
    sends: Vec<u32>,
    /// The runs table: rows per run in write order, with their index; the error counts; the
    /// commands each procedure execution sent; the run rows the putItem integration wrote.
    rows: HashMap<String, (Vec<TargetRow>, HashMap<String, usize>)>,
    errors: HashMap<String, u32>,
    sent: HashMap<String, String>,
    run_rows: Vec<Value>,
    published: Vec<Publication>,
    calls: BTreeMap<&'static str, u64>,
    /// Rows read back by Query, and its pages.
    query_rows: u64,
    query_pages: u64,
    /// DynamoDB request units consumed.
    rru: u64,
    wru: u64,
    query_rru: u64,
    /// The size of a row (JSON) while its target runs, and once final; how many are final.
    row_bytes: (usize, usize),
    final_rows: usize,
    spans: Vec<Span>,
}

impl World {
    fn new(instances: Vec<Instance>) -> World {
        let by_id = instances.iter().enumerate().map(|(i, x)| (x.id.clone(), i)).collect();
        World {
            sends: vec![0; instances.len()],
            spans: vec![Span::default(); instances.len()],
            instances,
            by_id,
            ..World::default()
        }
    }

    fn facts(&self, i: usize) -> InstanceFacts {
        let x = &self.instances[i];
        InstanceFacts {
            instance_id: x.id.clone(),
            state: InstanceState::Running,
            platform: Platform::Linux,
            root_device_name: Some("/dev/xvda".into()),
            block_devices: vec![],
            iam_association: None,
            tags: BTreeMap::from([
                ("Name".to_string(), format!("web-{i}")),
                ("Fleet".to_string(), "bench".to_string()),
                ("opsflow:runbooks".to_string(), "enabled".to_string()),
            ]),
            launch_time_epoch_s: Some(0),
        }
    }
}

/// The modelled AWS as one invocation sees it: its calls take time on the invocation's clock.
#[derive(Clone)]
struct Aws {
    world: Arc<Mutex<World>>,
    store: Arc<MemoryStore>,
    clock: TaskClock,
}

impl Aws {
    /// `n` calls of `api` in a row; returns the time the last answered.
    async fn calls(&self, api: &'static str, n: u64) -> i64 {
        self.clock.sleep(API_MS * n).await;
        *self.world.lock().unwrap().calls.entry(api).or_default() += n;
        self.clock.now_ms()
    }

    async fn call(&self, api: &'static str) -> i64 {
        self.calls(api, 1).await
    }
}

/// One account and region.
struct AwsMember {
    aws: Aws,
    account: String,
    region: String,
}

impl Fleet for Aws {
    type Member = AwsMember;

    /// The adapter assumes the member role (AssumeRole with the ExternalId).
    async fn member(&self, account: &str, region: &str) -> Result<AwsMember, CoreError> {
        self.call("sts:AssumeRole").await;
        Ok(AwsMember {
            aws: self.clone(),
            account: account.to_string(),
            region: region.to_string(),
        })
    }
}

impl Member for AwsMember {
    async fn instance_status(&self, id: &str) -> Result<Option<opsflow_core::StatusChecks>, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn start_instance(&self, id: &str) -> Result<(), CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn stop_instance(&self, id: &str) -> Result<(), CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn alarms_on_instance(&self, id: &str) -> Result<Vec<String>, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn mute_alarms(&self, rule: &opsflow_core::ports::MuteRule) -> Result<(), CoreError> {
        Err(CoreError::unsupported(
            &rule.name,
            "the fleet model runs run-command procedures only",
        ))
    }

    async fn unmute_alarms(&self, name: &str) -> Result<(), CoreError> {
        Err(CoreError::unsupported(name, "the fleet model runs run-command procedures only"))
    }

    async fn create_snapshots(&self, r: &SnapshotRequest) -> Result<Vec<SnapshotFacts>, CoreError> {
        Err(CoreError::unsupported(
            &r.instance_id,
            "the fleet model runs run-command procedures only",
        ))
    }

    async fn find_snapshots(&self, _: &[(String, String)]) -> Result<Vec<SnapshotFacts>, CoreError> {
        Err(CoreError::unsupported(
            "snapshots",
            "the fleet model runs run-command procedures only",
        ))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn replace_root_volume(&self, id: &str, _: &str, _: &str) -> Result<String, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn replace_root_task(&self, id: &str) -> Result<String, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn tag_instance(&self, id: &str, _: &[(String, String)]) -> Result<(), CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn lifecycle_state(&self, id: &str) -> Result<Option<(String, String)>, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn lifecycle_hook(&self, _: &str, hook: &str) -> Result<opsflow_core::ports::LifecycleHook, CoreError> {
        Err(CoreError::unsupported(hook, "the fleet model runs run-command procedures only"))
    }

    async fn lifecycle_heartbeat(&self, a: &opsflow_core::runbook::input::LifecycleAction) -> Result<(), CoreError> {
        Err(CoreError::unsupported(
            &a.instance_id,
            "the fleet model runs run-command procedures only",
        ))
    }

    async fn complete_lifecycle_action(&self, a: &opsflow_core::runbook::input::LifecycleAction, _: &str) -> Result<bool, CoreError> {
        Err(CoreError::unsupported(
            &a.instance_id,
            "the fleet model runs run-command procedures only",
        ))
    }

    async fn network_interfaces(&self, id: &str) -> Result<Vec<opsflow_core::ports::NetworkInterface>, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn quarantine_group(&self, vpc: &str, _: &str, _: &[(String, String)]) -> Result<String, CoreError> {
        Err(CoreError::unsupported(vpc, "the fleet model runs run-command procedures only"))
    }

    async fn set_interface_groups(&self, eni: &str, _: &[String]) -> Result<(), CoreError> {
        Err(CoreError::unsupported(eni, "the fleet model runs run-command procedures only"))
    }

    async fn target_groups_of(&self, id: &str) -> Result<Vec<(String, Option<i32>)>, CoreError> {
        Err(CoreError::unsupported(id, "the fleet model runs run-command procedures only"))
    }

    async fn deregister_target(&self, arn: &str, _: &str, _: Option<i32>) -> Result<(), CoreError> {
        Err(CoreError::unsupported(arn, "the fleet model runs run-command procedures only"))
    }

    async fn profile_role(&self, arn: &str) -> Result<Option<opsflow_core::ports::TaggedRole>, CoreError> {
        Err(CoreError::unsupported(arn, "the fleet model runs run-command procedures only"))
    }

    async fn put_role_policy(&self, role: &str, _: &str, _: &str) -> Result<(), CoreError> {
        Err(CoreError::unsupported(role, "the fleet model runs run-command procedures only"))
    }

    async fn group_query(&self, group: &str) -> Result<(String, String), CoreError> {
        Err(CoreError::not_found(
            format!("resource group {group}"),
            "the model has no resource groups",
        ))
    }

    async fn find_instances(&self, query: &InstanceQuery) -> Result<Vec<InstanceFacts>, CoreError> {
        let found: Vec<InstanceFacts> = {
            let w = self.aws.world.lock().unwrap();
            (0..w.instances.len())
                .filter(|&i| w.instances[i].account == self.account && w.instances[i].region == self.region)
                .map(|i| w.facts(i))
                .filter(|f| match query {
                    InstanceQuery::Ids(ids) => ids.contains(&f.instance_id),
                    InstanceQuery::Tags(filters) => filters.iter().all(|(k, vs)| f.tags.get(k).is_some_and(|v| vs.contains(v))),
                })
                .collect()
        };
        self.aws
            .calls("ec2:DescribeInstances", found.len().div_ceil(1000).max(1) as u64)
            .await;
        Ok(found)
    }

    async fn ping_statuses(&self, ids: &[String]) -> Result<BTreeMap<String, PingStatus>, CoreError> {
        self.aws
            .calls("ssm:DescribeInstanceInformation", ids.len().div_ceil(50).max(1) as u64)
            .await;
        Ok(ids.iter().map(|id| (id.clone(), PingStatus::Online)).collect())
    }

    async fn describe_instance(&self, id: &str) -> Result<InstanceFacts, CoreError> {
        self.aws.call("ec2:DescribeInstances").await;
        let w = self.aws.world.lock().unwrap();
        let i = *w.by_id.get(id).ok_or_else(|| CoreError::not_found(id, "no such instance"))?;
        Ok(w.facts(i))
    }

    async fn send_command(&self, _: &CommandSpec, id: &str) -> Result<String, CoreError> {
        let now = self.aws.call("ssm:SendCommand").await;
        let mut w = self.aws.world.lock().unwrap();
        let i = *w.by_id.get(id).ok_or_else(|| CoreError::not_found(id, "no such instance"))?;
        w.sends[i] += 1;
        let command = format!("cmd-{:08}", w.commands.len());
        w.commands.insert(command.clone(), (i, now));
        Ok(command)
    }

    async fn get_invocation(&self, command: &str, _: &str) -> Result<Invocation, CoreError> {
        let now = self.aws.call("ssm:GetCommandInvocation").await;
        let w = self.aws.world.lock().unwrap();
        let &(i, sent) = w
            .commands
            .get(command)
            .ok_or_else(|| CoreError::not_found(command, "InvocationDoesNotExist"))?;
        let x = &w.instances[i];
        if now < sent + x.duration_ms {
            return Ok(Invocation {
                status: "InProgress".into(),
                status_details: "InProgress".into(),
                response_code: -1,
                ..Invocation::default()
            });
        }
        let (status, code) = if x.fails { ("Failed", 1) } else { ("Success", 0) };
        Ok(Invocation {
            status: status.into(),
            status_details: status.into(),
            response_code: code,
            stdout: "Vacuuming done, freed 1.2G of archived journals\nFilesystem      Size  Used Avail Use% Mounted on\n/dev/xvda1       32G   14G   18G  44% /\n".into(),
            stderr: if x.fails { "find: '/tmp/x': Permission denied\n".into() } else { String::new() },
            stdout_url: format!(
                "https://s3.{}.amazonaws.com/{RUNS_BUCKET}/output/{PROCEDURE}/{command}/{}/awsrunShellScript/0.awsrunShellScript/stdout",
                self.region, x.id
            ),
            stderr_url: String::new(),
        })
    }

    async fn cancel_command(&self, _: &str, _: &str) -> Result<(), CoreError> {
        self.aws.call("ssm:CancelCommand").await;
        Ok(())
    }
}

impl Objects for Aws {
    async fn put(&self, bucket: &str, key: &str, body: &str) -> Result<(), CoreError> {
        self.call("s3:PutObject").await;
        self.store.insert(bucket, key, body.as_bytes().to_vec());
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<String, CoreError> {
        self.call("s3:GetObject").await;
        let body = self.store.get(bucket, key).ok_or_else(|| CoreError::not_found(key, "NoSuchKey"))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn tail(&self, bucket: &str, key: &str, bytes: usize) -> Result<String, CoreError> {
        let text = self.get(bucket, key).await?;
        let start = text.len().saturating_sub(bytes);
        Ok(text[text.ceil_char_boundary(start)..].to_string())
    }

    async fn read<R: Send + 'static>(
        &self,
        bucket: &str,
        key: &str,
        f: impl FnOnce(&mut dyn std::io::Read) -> R + Send + 'static,
    ) -> Result<(R, Option<String>), CoreError> {
        let text = self.get(bucket, key).await?;
        Ok((f(&mut text.as_bytes()), None))
    }
}

/// The runs table with the DynamoDB adapter's conditions: begin only if absent, finish only if
/// absent or Running (counting an error in the same transaction), a command remembered once.
impl RunLog for Aws {
    async fn errors(&self, run: &str) -> Result<u32, CoreError> {
        self.call("dynamodb:GetItem").await;
        let mut w = self.world.lock().unwrap();
        w.rru += 1;
        Ok(w.errors.get(run).copied().unwrap_or(0))
    }

    async fn begin(&self, row: &TargetRow) -> Result<Option<TargetRow>, CoreError> {
        self.call("dynamodb:PutItem").await;
        let existing = {
            let mut w = self.world.lock().unwrap();
            w.wru += 1;
            let (rows, index) = w.rows.entry(row.run.clone()).or_default();
            match index.get(&row.target) {
                Some(&k) => Some(rows[k].clone()),
                None => {
                    index.insert(row.target.clone(), rows.len());
                    rows.push(row.clone());
                    None
                }
            }
        };
        if existing.is_some() {
            // The adapter reads the row that failed the condition.
            self.call("dynamodb:GetItem").await;
        }
        Ok(existing)
    }

    async fn finish(&self, row: &TargetRow, error: bool) -> Result<bool, CoreError> {
        self.call("dynamodb:TransactWriteItems").await;
        let mut w = self.world.lock().unwrap();
        w.wru += if error { 4 } else { 2 };
        let (rows, index) = w.rows.entry(row.run.clone()).or_default();
        match index.get(&row.target) {
            Some(&k) if rows[k].status != TargetStatus::Running => return Ok(false),
            Some(&k) => rows[k] = row.clone(),
            None => {
                index.insert(row.target.clone(), rows.len());
                rows.push(row.clone());
            }
        }
        w.final_rows += 1;
        if error {
            *w.errors.entry(row.run.clone()).or_default() += 1;
        }
        Ok(true)
    }

    /// A strongly consistent Query of the run's rows: one call per 1 MB page.
    async fn targets(&self, run: &str) -> Result<Vec<TargetRow>, CoreError> {
        let (rows, pages) = {
            let mut w = self.world.lock().unwrap();
            let rows = w.rows.get(run).map(|(rows, _)| rows.clone()).unwrap_or_default();
            let size = |r: &TargetRow| serde_json::to_string(r).map_or(0, |s| s.len());
            if w.row_bytes.0 == 0 {
                if let Some(r) = rows.iter().find(|r| r.status == TargetStatus::Running) {
                    w.row_bytes.0 = size(r);
                }
            }
            if w.row_bytes.1 == 0 {
                if let Some(r) = rows.iter().find(|r| r.status != TargetStatus::Running) {
                    w.row_bytes.1 = size(r);
                }
            }
            let finals = w.final_rows.min(rows.len());
            let bytes = (rows.len() - finals) * w.row_bytes.0 + finals * w.row_bytes.1;
            let pages = bytes.div_ceil(QUERY_PAGE_BYTES).max(1) as u64;
            w.rru += bytes.div_ceil(4096).max(1) as u64;
            w.query_rru += bytes.div_ceil(4096).max(1) as u64;
            w.query_rows += rows.len() as u64;
            w.query_pages += pages;
            (rows, pages)
        };
        self.calls("dynamodb:Query", pages).await;
        Ok(rows)
    }

    async fn since(&self, _: &str) -> Result<Vec<TargetRow>, CoreError> {
        Err(CoreError::unsupported("model", "the runner does not scan the table"))
    }

    async fn command(&self, execution: &str, command: &str, _: i64) -> Result<Option<String>, CoreError> {
        self.call("dynamodb:PutItem").await;
        let mut w = self.world.lock().unwrap();
        w.wru += 1;
        if let Some(earlier) = w.sent.get(execution) {
            return Ok(Some(earlier.clone()));
        }
        w.sent.insert(execution.to_string(), command.to_string());
        Ok(None)
    }

    async fn sent_command(&self, execution: &str) -> Result<Option<String>, CoreError> {
        self.call("dynamodb:GetItem").await;
        let mut w = self.world.lock().unwrap();
        w.rru += 1;
        Ok(w.sent.get(execution).cloned())
    }
}

impl AlertPublisher for Aws {
    async fn publish(&self, publication: &Publication) -> Result<String, CoreError> {
        self.call("sns:Publish").await;
        let mut w = self.world.lock().unwrap();
        w.published.push(publication.clone());
        Ok(format!("msg-{}", w.published.len()))
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

/// Lambda invocations and their billed time (ms, rounded up, at least 1), per function.
#[derive(Default)]
struct Meter {
    by_function: Mutex<BTreeMap<&'static str, (u64, u64)>>,
    total_ms: AtomicU64,
}

impl Meter {
    fn bill(&self, function: &'static str, from_ms: i64, to_ms: i64) {
        let ms = (to_ms - from_ms).max(1) as u64;
        let mut m = self.by_function.lock().unwrap();
        let e = m.entry(function).or_default();
        e.0 += 1;
        e.1 += ms;
        self.total_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn invocations(&self) -> u64 {
        self.by_function.lock().unwrap().values().map(|e| e.0).sum()
    }
}

fn machine(relative: &str) -> Arc<StateMachine> {
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for f in TASK_FUNCTIONS {
        text = text.replace(&placeholder(f), &function_arn(&function_name(f)));
    }
    text = text.replace("${RunsTableName}", RUNS_TABLE);
    Arc::new(model::parse(&text).unwrap_or_else(|e| panic!("{path}: {e:?}")))
}

/// The engine as the local runner wires it, the runbook functions served by the model.
fn engine(world: &Arc<Mutex<World>>, store: &Arc<MemoryStore>, meter: &Arc<Meter>) -> Engine {
    let mut settings = Settings::new(RUNS_BUCKET);
    settings.procedure_arns = BTreeMap::from([("run-command".to_string(), state_machine_arn("opsflow-run-command"))]);
    let (settings, catalogue) = (Arc::new(settings), Arc::new(Catalogue::builtin()));
    let mut builder = Engine::builder()
        .clock(EngineClock::Virtual)
        .region(REGION)
        .account(ACCOUNT)
        .object_store(store.clone());
    for function in TASK_FUNCTIONS {
        let (world, store, meter) = (world.clone(), store.clone(), meter.clone());
        let (settings, catalogue) = (settings.clone(), catalogue.clone());
        builder = builder.lambda(format!("opsflow-{}", function_name(function)), move |req: TaskRequest| {
            let (world, store, meter) = (world.clone(), store.clone(), meter.clone());
            let (settings, catalogue) = (settings.clone(), catalogue.clone());
            async move {
                let instance = req.payload["Target"]["InstanceId"].as_str().map(str::to_string);
                let aws = Aws {
                    world: world.clone(),
                    store,
                    clock: req.clock.clone(),
                };
                let ports = RunbookPorts {
                    fleet: aws.clone(),
                    objects: aws.clone(),
                    log: aws.clone(),
                    publisher: aws,
                };
                let out = invoke(function, &ports, &settings, &catalogue, req.payload, &StepClock(req.clock.clone())).await;
                let end = req.clock.now_ms();
                meter.bill(function, req.now_ms, end);
                if let (Some(id), Ok(v)) = (instance, &out) {
                    let mut w = world.lock().unwrap();
                    if let Some(&i) = w.by_id.get(&id) {
                        let span = &mut w.spans[i];
                        match function {
                            "Admit" => {
                                span.admit_at.get_or_insert(req.now_ms);
                                if v["Start"] == true {
                                    span.started_at.get_or_insert(end);
                                }
                            }
                            "Record" => span.recorded_at = Some(end),
                            _ => {}
                        }
                    }
                }
                out.map_err(|e| StatesError::new(e.name(), e.to_string()))
            }
        });
    }
    let w = world.clone();
    builder = builder.resource("arn:aws:states:::dynamodb:putItem", move |req: TaskRequest| {
        let w = w.clone();
        async move {
            req.clock.sleep(API_MS).await;
            let mut w = w.lock().unwrap();
            *w.calls.entry("dynamodb:PutItem (integration)").or_default() += 1;
            w.wru += 1;
            w.run_rows.push(req.payload["Item"].clone());
            Ok(json!({}))
        }
    });
    builder
        .state_machine(
            state_machine_arn("opsflow-run-command"),
            machine("statemachines/procedures/run-command.asl.json"),
        )
        .build()
}

fn fleet(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<Instance> {
    let duration = LogNormal::new(COMMAND.0.ln(), COMMAND.1).expect("a lognormal");
    let fails = Bernoulli::new(FAILING).expect("a probability");
    (0..n)
        .map(|i| {
            let place = i % (ACCOUNTS.len() * REGIONS.len());
            Instance {
                account: ACCOUNTS[place / REGIONS.len()],
                region: REGIONS[place % REGIONS.len()],
                id: format!("i-{:017x}", 0x0bad_c0de_0000_0000u64 + i as u64),
                duration_ms: (duration.sample(rng) * 1000.0).round() as i64,
                fails: fails.sample(rng),
            }
        })
        .collect()
}

/// Greedy list scheduling (a pool that starts the next job the moment one ends): the makespan.
fn pool_makespan(durations: impl IntoIterator<Item = i64>, slots: usize) -> i64 {
    let mut free = std::collections::BinaryHeap::new();
    for _ in 0..slots.max(1) {
        free.push(std::cmp::Reverse(0i64));
    }
    let mut end = 0;
    for d in durations {
        let std::cmp::Reverse(at) = free.pop().expect("a slot");
        end = end.max(at + d);
        free.push(std::cmp::Reverse(at + d));
    }
    end
}

/// The most intervals `[start, end)` open at once.
fn max_overlap(spans: &[(i64, i64)]) -> usize {
    let mut events: Vec<(i64, i32)> = spans.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn mins(ms: i64) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

/// State transitions of an execution and of every execution it started, and how many it started.
fn transitions(r: &ExecutionResult) -> (u64, u64) {
    r.children.iter().fold((r.transitions, 0), |(t, n), c| {
        let (ct, cn) = transitions(&c.result);
        (t + ct, n + 1 + cn)
    })
}

async fn run(n: usize) {
    let wall = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED ^ n as u64);
    let instances = fleet(n, &mut rng);
    let world = Arc::new(Mutex::new(World::new(instances)));
    let store = Arc::new(MemoryStore::new());
    let meter = Arc::new(Meter::default());
    let engine = engine(&world, &store, &meter);
    let runner = machine("statemachines/run-runbook.asl.json");
    let name = format!("fleet-{n}");
    let input = json!({
        "Procedure": PROCEDURE,
        "Targets": {"Tags": [{"Key": "Fleet", "Values": ["bench"]}]},
        "Accounts": ACCOUNTS, "Regions": REGIONS,
        "MaxConcurrency": format!("{MAX_CONCURRENCY_PCT}%"), "MaxErrors": format!("{MAX_ERRORS_PCT}%"),
        "Notify": "OnFailure",
        "StartedBy": format!("arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/nightly-disk-cleanup"),
    });
    let opts = StartOptions {
        name: name.clone(),
        state_machine_name: "opsflow-run-runbook".into(),
        record_history: true,
    };
    let result = engine
        .start_at(runner, input, opts, Some(START_MS))
        .result
        .await
        .expect("the runner ends");
    let wall_ms = wall.elapsed().as_millis();
    let rss = peak_rss_mb();

    // What the run left behind.
    let w = world.lock().unwrap();
    let run_arn = format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:opsflow-run-runbook:{name}");
    let summary: Summary = serde_json::from_slice(
        &store
            .get(RUNS_BUCKET, &format!("runs/{name}/summary.json"))
            .expect("the summary in S3"),
    )
    .expect("a summary");
    let rows = w.rows.get(&run_arn).map(|(r, _)| r.as_slice()).unwrap_or_default();
    let c = (n * MAX_CONCURRENCY_PCT as usize / 100).max(1);
    let allowed_errors = n * MAX_ERRORS_PCT as usize / 100;
    let failing = w.instances.iter().filter(|x| x.fails).count();

    // Invariants (the bench fails loudly rather than print wrong figures).
    assert_eq!(
        result.error.as_deref(),
        if failing > 0 { Some("TargetsFailed") } else { None },
        "{:?} {:?}",
        result.status,
        result.cause
    );
    assert_eq!(rows.len(), n, "every target has a row");
    let by_key: HashMap<&str, &TargetRow> = rows.iter().map(|r| (r.target.as_str(), r)).collect();
    for x in &w.instances {
        let key = format!("{}/{}/{}", x.account, x.region, x.id);
        let row = by_key.get(key.as_str());
        let expect = if x.fails { TargetStatus::Failed } else { TargetStatus::Succeeded };
        assert_eq!(row.map(|r| r.status), Some(expect), "{key}");
    }
    assert!(failing <= allowed_errors, "the draws stay within MaxErrors");
    let counts = summary.counts;
    assert_eq!(
        (counts.targets, counts.succeeded, counts.failed, counts.not_started),
        (n, n - failing, failing, 0),
        "counts add up"
    );
    assert_eq!(w.errors.get(&run_arn).copied().unwrap_or(0) as usize, failing);
    assert!(w.sends.iter().all(|&s| s == 1), "one SendCommand per target");
    assert_eq!(w.run_rows.len(), 1, "the run's own row");
    assert_eq!(w.published.len(), usize::from(failing > 0), "one notification on failure");
    let spans: Vec<(i64, i64)> = w
        .spans
        .iter()
        .map(|s| (s.started_at.expect("started"), s.recorded_at.expect("recorded")))
        .collect();
    let observed = max_overlap(&spans);
    assert!(observed <= c, "observed concurrency {observed} above MaxConcurrency {c}");
    let map_children: Vec<_> = result
        .children
        .iter()
        .filter(|c| c.state_machine_arn.ends_with("/targets"))
        .collect();
    let procedures: usize = map_children.iter().map(|c| c.result.children.len()).sum();
    assert_eq!(
        (map_children.len(), procedures),
        (n, n),
        "a child and a procedure execution per target"
    );

    // Figures.
    let durations: Vec<i64> = w.instances.iter().map(|x| x.duration_ms).collect();
    let sum: i64 = durations.iter().sum();
    let longest = *durations.iter().max().unwrap();
    let by_concurrency = sum / c as i64;
    let bound = by_concurrency.max(longest);
    let total = result.engine_ms;
    let map_start = w.spans.iter().filter_map(|s| s.admit_at).min().unwrap();
    let map_end = spans.iter().map(|s| s.1).max().unwrap();
    // Each target's time from Admit to its row, in the Map's item order (account, region, id).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&w.instances[a], &w.instances[b]);
        (x.account, x.region, &x.id).cmp(&(y.account, y.region, &y.id))
    });
    let per_target: Vec<i64> = order
        .iter()
        .map(|&i| w.spans[i].recorded_at.unwrap() - w.spans[i].admit_at.unwrap())
        .collect();
    let greedy = pool_makespan(per_target.iter().copied(), c);
    let mut overhead: Vec<i64> = order.iter().zip(&per_target).map(|(&i, t)| t - durations[i]).collect();
    overhead.sort();
    let (transitions_all, started) = transitions(&result);
    let t_runner = result.transitions;
    let t_children: u64 = map_children.iter().map(|c| c.result.transitions).sum();
    let t_procedures = transitions_all - t_runner - t_children;
    let invocations = meter.invocations();
    let gb_s = meter.total_ms.load(Ordering::Relaxed) as f64 / 1000.0 * LAMBDA_GB;
    let lambda = invocations as f64 * PRICE_LAMBDA_REQUEST + gb_s * PRICE_LAMBDA_GB_S;
    let standard = transitions_all as f64 * PRICE_TRANSITION;
    let express_gb_s: f64 = per_target.iter().map(|&t| (t + 99) / 100 * 100).sum::<i64>() as f64 / 1000.0 * EXPRESS_GB;
    let express = t_runner as f64 * PRICE_TRANSITION + n as f64 * PRICE_EXPRESS_REQUEST + express_gb_s * PRICE_EXPRESS_GB_S;
    let over_express = per_target.iter().filter(|&&t| t > EXPRESS_MAX_MS).count();
    let calls: u64 = w.calls.values().sum();

    // SSM Run Command's rate control on the same durations.
    let groups: Vec<Vec<i64>> = ACCOUNTS
        .iter()
        .flat_map(|a| REGIONS.iter().map(move |r| (*a, *r)))
        .map(|(a, r)| {
            order
                .iter()
                .filter(|&&i| w.instances[i].account == a && w.instances[i].region == r)
                .map(|&i| durations[i])
                .collect()
        })
        .collect();
    let per_command: Vec<(usize, usize, i64)> = groups
        .iter()
        .map(|g| {
            let cg = (g.len() * MAX_CONCURRENCY_PCT as usize / 100).max(1);
            (g.len(), cg, pool_makespan(g.iter().copied(), cg))
        })
        .collect();
    let ssm9 = per_command.iter().map(|g| g.2).max().unwrap();
    let ssm9_slots: usize = per_command.iter().map(|g| g.1).sum();
    let ssm9_errors: usize = per_command.iter().map(|g| g.0 * MAX_ERRORS_PCT as usize / 100).sum();
    let ssm1 = pool_makespan(order.iter().map(|&i| durations[i]), c);

    println!("## {n} instances: {} accounts × {} regions, MaxConcurrency {MAX_CONCURRENCY_PCT}% = {c}, MaxErrors {MAX_ERRORS_PCT}% = {allowed_errors}; {failing} commands drawn to fail", ACCOUNTS.len(), REGIONS.len());
    println!(
        "bench: wall {:.1} s, peak RSS (VmHWM) {rss:.0} MB; runner {:?} ({})",
        wall_ms as f64 / 1000.0,
        result.status,
        result.error.as_deref().unwrap_or("-")
    );
    println!(
        "durations: sum {} over {c} slots = {}, longest {}: lower bound {} ({})",
        mins(sum),
        mins(by_concurrency),
        mins(longest),
        mins(bound),
        if by_concurrency >= longest {
            "concurrency"
        } else {
            "longest command"
        }
    );
    println!(
        "per-target overhead over the command (Admit → row written): median {:.1} s, p99 {:.1} s, max {:.1} s",
        overhead[overhead.len() / 2] as f64 / 1000.0,
        overhead[overhead.len() * 99 / 100] as f64 / 1000.0,
        overhead[overhead.len() - 1] as f64 / 1000.0
    );
    println!(
        "transitions: runner {t_runner}, Map children {t_children}, procedures {t_procedures} = {transitions_all} ({:.1} per target); child executions started {started}",
        transitions_all as f64 / n as f64
    );
    println!(
        "Lambda: {invocations} invocations ({:.1} per target), {gb_s:.0} GB-s at 128 MB = ${lambda:.4}; by function:",
        invocations as f64 / n as f64
    );
    for (f, (k, ms)) in meter.by_function.lock().unwrap().iter() {
        println!("  {f:<13} {k:>7} invocations, mean {:>7.2} s", *ms as f64 / *k as f64 / 1000.0);
    }
    println!(
        "AWS calls {calls} ({:.1} per target); the runs table's Query (in Record and Summarize) read {} rows in {} pages (a row ≈ {} B running, {} B final)",
        calls as f64 / n as f64,
        w.query_rows,
        w.query_pages,
        w.row_bytes.0,
        w.row_bytes.1
    );
    for (api, k) in &w.calls {
        println!("  {api:<32} {k:>8}");
    }
    println!();
    let dynamo = w.rru as f64 * PRICE_RRU + w.wru as f64 * PRICE_WRU;
    let greedy_total = greedy + (total - (map_end - map_start));
    println!(
        "DynamoDB on-demand: {} RRU ({:.1}% by the Query), {} WRU = ${dynamo:.4}",
        w.rru,
        100.0 * w.query_rru as f64 / w.rru as f64,
        w.wru
    );
    println!();
    println!(
        "| design | total | × lower bound | targets/s | transitions | child executions | $ Step Functions | $ Lambda | $ DynamoDB | $ per run | $ per 1,000 targets |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let row = |design: &str, t: i64, trans: String, kids: String, sfn: Option<f64>| {
        let price = sfn.map(|s| s + lambda + dynamo);
        let cost = |v: f64| if sfn.is_some() { format!("${v:.2}") } else { "—".into() };
        println!(
            "| {design} | {} | {:.2}× | {:.1} | {trans} | {kids} | {} | {} | {} | {} | {} |",
            mins(t),
            t as f64 / bound as f64,
            n as f64 / (t as f64 / 1000.0),
            cost(sfn.unwrap_or(0.0)),
            cost(lambda),
            cost(dynamo),
            price.map_or("$0 (Run Command is free)".into(), |p| format!("${p:.2}")),
            price.map_or("—".into(), |p| format!("${:.3}", p / n as f64 * 1000.0)),
        );
    };
    row(
        "opsflow, Standard children: the engine's schedule (run)",
        total,
        transitions_all.to_string(),
        started.to_string(),
        Some(standard),
    );
    row(
        "opsflow, Standard children: the run's per-target times, next child as soon as one ends (AWS's Map)",
        greedy_total,
        transitions_all.to_string(),
        started.to_string(),
        Some(standard),
    );
    row(
        &format!("opsflow, Express children with the procedure inlined (priced, not run; {over_express} targets over Express' 5 min)"),
        greedy_total,
        t_runner.to_string(),
        n.to_string(),
        Some(express),
    );
    row(
        &format!("SSM rate control, 9 commands (one per account × region, {ssm9_slots} slots in all)"),
        ssm9,
        "—".into(),
        "—".into(),
        None,
    );
    row(
        &format!("SSM rate control, the fleet in one account and region (1 command, {c} slots)"),
        ssm1,
        "—".into(),
        "—".into(),
        None,
    );
    println!();
    println!(
        "observed concurrency (Admit started → row written, engine clock): max {observed} of {c}; the Map ran {} of the run's {}",
        mins(map_end - map_start),
        mins(total)
    );
    println!(
        "SSM per command (targets, MaxConcurrency, time): {}",
        per_command
            .iter()
            .map(|(k, cg, t)| format!("{k}/{cg}/{}", mins(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "MaxErrors: opsflow {allowed_errors} across the fleet (one count in the runs table); SSM {MAX_ERRORS_PCT}% of each command's targets, {ssm9_errors} in all but never more than {} in one command",
        per_command.iter().map(|g| g.0 * MAX_ERRORS_PCT as usize / 100).max().unwrap()
    );
    println!();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let wall = Instant::now();
    let sizes: Vec<usize> = match std::env::var("FLEET_SIZES") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => SIZES.to_vec(),
    };
    println!("fleet: the runbook runner and run-command procedure on the local engine, virtual time, real runbook functions and catalogue ({PROCEDURE})");
    println!(
        "model: each AWS call {API_MS} ms; command duration lognormal median {} s σ {}; {}% of commands exit 1; seed {SEED}",
        COMMAND.0,
        COMMAND.1,
        FAILING * 100.0
    );
    println!(
        "prices: Standard ${PRICE_TRANSITION}/transition; Express ${PRICE_EXPRESS_REQUEST}/request + ${PRICE_EXPRESS_GB_S}/GB-s at 64 MB (100 ms steps); Lambda ${PRICE_LAMBDA_REQUEST}/request + ${PRICE_LAMBDA_GB_S}/GB-s at 128 MB (arm64)"
    );
    println!();
    for n in sizes {
        run(n).await;
    }
    println!(
        "whole bench: wall {:.1} s, peak RSS {:.0} MB",
        wall.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
}
