//! The opsflow command line: `opsflow sfn run` / `opsflow sfn validate` /
//! `opsflow sfn test-state` run, check and test Amazon States Language files on the local engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use opsflow_asl::{
    model, Clock, Engine, EngineBuilder, InspectionLevel, LocalDirStore, MockCase, StartOptions, Status, TestStateError, TestStateRequest,
};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "opsflow", version, about = "Run opsflow's Step Functions workflows locally")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `sfn` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// The local Step Functions engine.
    Sfn {
        #[command(subcommand)]
        command: Sfn,
    },
    /// The demo: a CloudFormation Create request for Custom::OpsflowInstanceSetup, run through the
    /// request handler and the real state machine on the local engine against the local cloud.
    Demo {
        /// The bootstrap command's exit code in the local cloud (non-zero shows the FAILED path).
        #[arg(long, default_value_t = 0)]
        bootstrap_exit: i32,
    },
    /// Run a pre-approved procedure of the catalogue on a fleet: starts the deployed runner (or,
    /// with --local, the same state machines on the local engine against AWS_ENDPOINT_URL) and
    /// follows it. Exit 0 when every target succeeded, 1 otherwise, 2 for invalid usage or a
    /// procedure outside the catalogue.
    Run(runbook_cli::RunArgs),
    /// The audit trail of runbook runs, target by target.
    Runs(runbook_cli::RunsArgs),
    /// Run one Lambda handler locally on an event file, against the AWS endpoint of the
    /// environment (AWS_ENDPOINT_URL for the local cloud), and print its result.
    Invoke {
        /// Plan, AssignProfile, ModifyVolume, CheckReadiness, GrowFilesystem, SendCommand,
        /// CheckCommand, Answer, Request (needs STATE_MACHINE_ARN) or EnrichAlert (needs ENRICHED_TOPIC_ARN).
        function: String,
        /// The event (the function's input) as a JSON file.
        #[arg(long)]
        event: PathBuf,
    },
}

#[derive(Subcommand)]
enum Sfn {
    /// Run a definition once and print {"status","output","error","cause"} as JSON.
    Run {
        /// The state machine definition (an .asl.json file).
        #[arg(long)]
        definition: PathBuf,
        /// The execution input: JSON text, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// An AWS Step Functions Local mock configuration file.
        #[arg(long, requires = "test_case")]
        mock_config: Option<PathBuf>,
        /// The test case of the mock configuration to use.
        #[arg(long, requires = "mock_config")]
        test_case: Option<String>,
        /// The state machine's name (in ARNs and for the mock configuration); default: the file name.
        #[arg(long)]
        state_machine_name: Option<String>,
        /// Also print the execution history (GetExecutionHistory events) under "events".
        #[arg(long)]
        history: bool,
        /// Print each history event to stderr as it happens, with its time since the start.
        #[arg(long)]
        trace: bool,
        /// virtual (default: waits and retry delays take no time) or real.
        #[arg(long, default_value = "virtual", value_parser = ["virtual", "real"])]
        clock: String,
        /// With --clock real, how many times faster than real time the clock runs.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        #[command(flatten)]
        integrations: Integrations,
    },
    /// Test one state as the Step Functions TestState API does; prints its response
    /// {"status","output","error","cause","nextState","inspectionData"}. Exit 0 when the state
    /// SUCCEEDED, 1 for FAILED / RETRIABLE / CAUGHT_ERROR, 2 when the request is refused.
    TestState {
        /// A state machine definition (an .asl.json file), or one state's definition.
        #[arg(long)]
        definition: PathBuf,
        /// The state to test (default: the definition's StartAt).
        #[arg(long)]
        state_name: Option<String>,
        /// The state's input: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        /// {"result": "<JSON text>"} or {"errorOutput": {"error", "cause"}}: JSON text or @FILE.
        #[arg(long)]
        mock: Option<String>,
        /// A context object ($$), merged over the default one: JSON text or @FILE.
        #[arg(long)]
        context: Option<String>,
        /// {"retrierRetryCount", "errorCausedByState", "mapIterationFailureCount", "mapItemReaderData"}: JSON text or @FILE.
        #[arg(long)]
        state_configuration: Option<String>,
        /// Workflow variables visible to the state: a JSON object, or @FILE.
        #[arg(long)]
        variables: Option<String>,
        #[arg(long, default_value = "INFO", value_parser = ["INFO", "DEBUG", "TRACE"])]
        inspection_level: String,
        /// With TRACE, show an HTTP Task's connection credentials instead of <redacted>.
        #[arg(long)]
        reveal_secrets: bool,
        #[command(flatten)]
        integrations: Integrations,
    },
    /// Validate definitions; prints every error with its state and field.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// What the engine's own integrations reach, shared by `sfn run` and `sfn test-state`.
#[derive(clap::Args)]
struct Integrations {
    /// A state machine that `states:startExecution` Tasks may start, as NAME=FILE (repeatable).
    #[arg(long = "state-machine", value_name = "NAME=FILE")]
    state_machines: Vec<String>,
    /// The EventBridge connections HTTP Tasks use: a JSON file mapping each ConnectionArn to
    /// {"AuthorizationType", "AuthParameters"} as CreateConnection takes them.
    #[arg(long, value_name = "FILE")]
    connections: Option<PathBuf>,
    /// A folder standing in for S3 (Distributed Map ItemReader / ResultWriter): s3://BUCKET/KEY is DIR/BUCKET/KEY.
    #[arg(long, value_name = "DIR")]
    s3_dir: Option<PathBuf>,
}

impl Integrations {
    /// Registers the state machines, connections and S3 folder; Err(code) when a file is invalid.
    fn apply(&self, mut builder: EngineBuilder) -> anyhow::Result<Result<EngineBuilder, ExitCode>> {
        for spec in &self.state_machines {
            let Some((name, file)) = spec.split_once('=') else {
                bail!("--state-machine takes NAME=FILE, not '{spec}'");
            };
            let file = PathBuf::from(file);
            match load(&file)? {
                Ok(sm) => builder = builder.state_machine(name, Arc::new(sm)),
                Err(errors) => {
                    for e in errors {
                        eprintln!("{}: {e}", file.display());
                    }
                    return Ok(Err(ExitCode::from(2)));
                }
            }
        }
        if let Some(file) = &self.connections {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let Value::Object(conns) = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))? else {
                bail!("{} must hold a JSON object of ConnectionArn -> connection", file.display());
            };
            for (arn, c) in conns {
                builder = builder.connection(arn, c);
            }
        }
        if let Some(dir) = &self.s3_dir {
            builder = builder.object_store(Arc::new(LocalDirStore::new(dir)));
        }
        Ok(Ok(builder))
    }
}

/// A JSON argument: JSON text, or @FILE to read it from a file.
fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("cannot read the {what} file {file}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("--{what} is not valid JSON"))
}

mod demo;
mod demo_audit;
mod demo_runbook;
mod runbook_cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("opsflow: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &PathBuf) -> anyhow::Result<Result<model::StateMachine, Vec<opsflow_asl::LoadError>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(model::parse(&text))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Invoke { function, event } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(invoke_one(&function, &event))
        }
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(runbook_cli::run(args))
        }
        Command::Runs(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(runbook_cli::runs(args))
        }
        Command::Demo { bootstrap_exit } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(demo::run(bootstrap_exit))
        }
        Command::Sfn {
            command:
                Sfn::TestState {
                    definition,
                    state_name,
                    input,
                    mock,
                    context,
                    state_configuration,
                    variables,
                    inspection_level,
                    reveal_secrets,
                    integrations,
                },
        } => {
            let text = std::fs::read_to_string(&definition).with_context(|| format!("cannot read {}", definition.display()))?;
            let definition_json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", definition.display()))?;
            let opt = |v: &Option<String>, what: &str| v.as_deref().map(|t| json_arg(t, what)).transpose();
            let req = TestStateRequest {
                definition: definition_json,
                state_name,
                input: json_arg(&input, "input")?,
                mock: opt(&mock, "mock")?,
                context: opt(&context, "context")?,
                state_configuration: opt(&state_configuration, "state-configuration")?,
                variables: opt(&variables, "variables")?,
                inspection_level: inspection_level.parse::<InspectionLevel>().map_err(|e| anyhow::anyhow!(e))?,
                reveal_secrets,
            };
            let engine = match integrations.apply(Engine::builder())? {
                Ok(b) => b.build(),
                Err(code) => return Ok(code),
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match rt.block_on(engine.test_state(req)) {
                Ok(out) => {
                    println!("{}", out.to_json());
                    Ok(if out.status == "SUCCEEDED" {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                Err(TestStateError::InvalidDefinition(errors)) => {
                    for e in errors {
                        eprintln!("{}: {e}", definition.display());
                    }
                    Ok(ExitCode::from(2))
                }
                Err(e) => {
                    eprintln!("opsflow: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Sfn {
            command: Sfn::Validate { files },
        } => {
            let mut ok = true;
            for f in &files {
                match load(f)? {
                    Ok(_) => println!("{}: valid", f.display()),
                    Err(errors) => {
                        ok = false;
                        for e in errors {
                            eprintln!("{}: {e}", f.display());
                        }
                    }
                }
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Sfn {
            command:
                Sfn::Run {
                    definition,
                    input,
                    mock_config,
                    test_case,
                    state_machine_name,
                    history,
                    trace,
                    clock,
                    time_scale,
                    integrations,
                },
        } => {
            let sm = match load(&definition)? {
                Ok(sm) => Arc::new(sm),
                Err(errors) => {
                    for e in errors {
                        eprintln!("{}: {e}", definition.display());
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            let input_text = match input.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).with_context(|| format!("cannot read the input file {file}"))?,
                None => input,
            };
            let input: Value = serde_json::from_str(&input_text).context("--input is not valid JSON")?;
            let sm_name = state_machine_name.clone().unwrap_or_else(|| {
                let stem = definition.file_name().and_then(|s| s.to_str()).unwrap_or("StateMachine");
                stem.trim_end_matches(".json").trim_end_matches(".asl").to_string()
            });
            let clock = match clock.as_str() {
                "real" if time_scale > 0.0 => Clock::Real { scale: time_scale },
                "real" => bail!("--time-scale must be greater than 0"),
                _ => Clock::Virtual,
            };
            let mut builder = match integrations.apply(Engine::builder().clock(clock))? {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            if let (Some(file), Some(case)) = (mock_config, test_case) {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                // An explicit --state-machine-name must exist in the file; otherwise the
                // file-name default is tried, then the file's only state machine.
                let mock = match MockCase::parse(&text, Some(&sm_name), &case) {
                    Ok(m) => m,
                    Err(e) if state_machine_name.is_some() => bail!("{}: {e}", file.display()),
                    Err(_) => MockCase::parse(&text, None, &case).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
                };
                builder = builder.mock(mock);
            }
            let engine = builder.build();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let opts = StartOptions {
                state_machine_name: sm_name,
                record_history: history,
                ..StartOptions::default()
            };
            let result = rt.block_on(async {
                if !trace {
                    return Ok(engine.run(&sm, input, opts).await);
                }
                let mut running = engine.start(sm.clone(), input, opts);
                let mut first = None;
                let result = loop {
                    tokio::select! {
                        Some(ev) = running.events.recv() => print_trace(&ev, &mut first),
                        r = &mut running.result => break r,
                    }
                };
                while let Ok(ev) = running.events.try_recv() {
                    print_trace(&ev, &mut first);
                }
                result.map_err(|e| anyhow::anyhow!("the execution task panicked: {e}"))
            });
            let result = match result {
                Ok(r) => r,
                Err(e) => bail!(e),
            };
            let mut out = json!({
                "status": result.status.as_str(),
                "output": result.output,
                "error": result.error,
                "cause": result.cause,
            });
            if history {
                out["events"] = Value::Array(result.events.iter().map(|e| e.to_json()).collect());
                // Nested and Distributed Map child executions, each with its own history.
                if !result.children.is_empty() {
                    out["children"] = Value::Array(
                        result
                            .children
                            .iter()
                            .map(|c| {
                                json!({"executionArn": c.execution_arn, "stateMachineArn": c.state_machine_arn, "startedBy": c.started_by,
                                    "status": c.result.status.as_str(),
                                    "events": c.result.events.iter().map(|e| e.to_json()).collect::<Vec<_>>()})
                            })
                            .collect(),
                    );
                }
            }
            println!("{out}");
            Ok(if result.status == Status::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// One line per event: engine time since the start, event type, state name, error.
fn print_trace(ev: &opsflow_asl::HistoryEvent, first: &mut Option<i64>) {
    let t0 = *first.get_or_insert(ev.timestamp_ms);
    let mut line = format!("{:>9.3}s  {:<28}", (ev.timestamp_ms - t0) as f64 / 1000.0, ev.event_type);
    if let Some(name) = ev.state_name() {
        line.push_str(name);
    } else if let (Some(kind), Some(resource)) = (ev.detail("resourceType"), ev.detail("resource")) {
        line.push_str(&format!("{kind}:{resource}"));
    } else if let Some(resource) = ev.detail("resource") {
        line.push_str(resource);
    }
    if let Some(err) = ev.error() {
        line.push_str(&format!(" error={err}"));
    }
    eprintln!("{}", line.trim_end());
}

/// `opsflow invoke`: one handler, the same code the deployed Lambda runs.
async fn invoke_one(function: &str, event: &PathBuf) -> anyhow::Result<ExitCode> {
    use opsflow_core::provision::handlers::{invoke, Ports, TASK_FUNCTIONS};
    let text = std::fs::read_to_string(event).with_context(|| format!("cannot read {}", event.display()))?;
    let payload: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event.display()))?;
    let clients = opsflow_aws::Clients::from_env().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let allow = std::env::var("INSTANCE_PROFILE_ALLOW_LIST").unwrap_or_default();
    let mut settings =
        opsflow_core::provision::steps::Settings::new(opsflow_core::AllowList::parse(&allow).map_err(|e| anyhow::anyhow!("{e}"))?);
    settings.local_response_urls = std::env::var("OPSFLOW_LOCAL_RESPONSE_URLS").is_ok_and(|v| v == "1");
    let table = std::env::var("SETUP_TABLE_NAME").unwrap_or_else(|_| "opsflow-setup-state".to_string());
    let store = clients.setup_store(&table);
    let result = match function {
        "Request" => {
            let arn = std::env::var("STATE_MACHINE_ARN").context("STATE_MACHINE_ARN is required for the Request handler")?;
            let ports = opsflow_core::provision::request::RequestPorts {
                ec2: clients.ec2_adapter(),
                iam: clients.iam_adapter(),
                sink: clients.response_sink(),
                store,
                workflow: clients.workflow(&arn),
                stacks: clients.stacks_adapter(),
                ssm: clients.ssm_adapter(),
            };
            opsflow_core::provision::request::admit(&ports, &opsflow_aws::SystemClock, &settings, &payload)
                .await
                .map(|a| json!(format!("{a:?}")))
        }
        f if TASK_FUNCTIONS.contains(&f) => {
            let ports = Ports {
                ec2: clients.ec2_adapter(),
                iam: clients.iam_adapter(),
                ssm: clients.ssm_adapter(),
                sink: clients.response_sink(),
                store,
            };
            invoke(&ports, &settings, &opsflow_aws::SystemClock, f, payload).await
        }
        "EnrichAlert" => {
            let topic = std::env::var("ENRICHED_TOPIC_ARN").context("ENRICHED_TOPIC_ARN is required for EnrichAlert")?;
            let settings = opsflow_core::alert::AlertSettings::default();
            let ledger = std::env::var("ALERT_LEDGER_TABLE").ok().map(|t| clients.alert_ledger(&t));
            opsflow_core::alert::handle(
                &clients.alert_adapter(),
                &clients.sns_publisher(&topic),
                &ledger,
                &opsflow_aws::SystemClock,
                &settings,
                &payload,
            )
            .await
            .map(|ids| json!({"published": ids}))
        }
        other => bail!(
            "unknown function {other:?}: use Request, EnrichAlert or one of {}",
            TASK_FUNCTIONS.join(", ")
        ),
    };
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}", json!({"errorType": e.name(), "errorMessage": e.to_string()}));
            Ok(ExitCode::from(1))
        }
    }
}
