//! The opsflow command line: `opsflow sfn run` / `opsflow sfn validate` run and check Amazon
//! States Language files on the local engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use opsflow_asl::{model, Clock, Engine, MockCase, StartOptions, Status};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "opsflow", version, about = "Run opsflow's Step Functions workflows locally")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
    },
    /// Validate definitions; prints every error with its state and field.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

mod demo;

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
        Command::Demo { bootstrap_exit } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(demo::run(bootstrap_exit))
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
            let mut builder = Engine::builder().clock(clock);
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
            opsflow_core::alert::handle(&clients.alert_adapter(), &clients.sns_publisher(&topic), &settings, &payload)
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
