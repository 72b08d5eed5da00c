//! `opsflow run` and `opsflow runs`: the operator's command line for runbooks.
//!
//! `opsflow run` checks the request against the compiled-in catalogue first (exit 2 when it is
//! not allowed), then starts the deployed runner (StartExecution) — or, with `--local`, runs the
//! same state machine files on the local engine against `AWS_ENDPOINT_URL` — and follows the run
//! in the audit trail until it ends: targets done, failed, running. Exit 0 when every target
//! succeeded, 1 otherwise, 2 for invalid usage or a procedure outside the catalogue.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use opsflow::local::runbook::{Connection, LocalRunbooks, Options, RUNS_TABLE};
use opsflow::local::{LocalCloud, ACCOUNT, REGION};
use opsflow_aws::{Clients, DynamoRunLog};
use opsflow_core::ports::RunLog;
use opsflow_core::runbook::input::{self, Home};
use opsflow_core::runbook::log::TargetRow;
use opsflow_core::runbook::{Catalogue, Summary, TargetStatus};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct RunArgs {
    /// A procedure of the catalogue (catalogue/*.json).
    procedure: String,
    /// Instances by tag: tag:KEY=VALUE[,tag:KEY=VALUE…] (every key must match; a key given
    /// twice matches either value).
    #[arg(long, conflicts_with = "instance_ids")]
    targets: Option<String>,
    /// Instances by id: ID[,ID…].
    #[arg(long)]
    instance_ids: Option<String>,
    /// Member accounts (default: the runner's own).
    #[arg(long, value_delimiter = ',')]
    accounts: Vec<String>,
    /// Regions (default: the runner's own).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// A parameter of the procedure, KEY=VALUE (repeat for more).
    #[arg(long = "param")]
    params: Vec<String>,
    /// N targets or P% of them at once (default: the procedure's).
    #[arg(long)]
    max_concurrency: Option<String>,
    /// Once more than N (or P%) targets failed, start no new one (default: the procedure's).
    #[arg(long)]
    max_errors: Option<String>,
    /// Print the targets and what would run on them; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// OnFailure (default), Always or Never: when the RunbookResults topic is told.
    #[arg(long)]
    notify: Option<String>,
    /// Run on the local engine against AWS_ENDPOINT_URL (e.g. the local cloud) instead of
    /// starting the deployed runner.
    #[arg(long)]
    local: bool,
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// --local: the member role's name.
    #[arg(long, env = "OPSFLOW_MEMBER_ROLE", default_value = "opsflow-member")]
    member_role: String,
    /// --local: the member role's ExternalId.
    #[arg(long, env = "OPSFLOW_EXTERNAL_ID")]
    external_id: Option<String>,
    /// --local: EventBridge connections for HTTP checks, a JSON file of connection names to
    /// {"AuthorizationType", "AuthParameters"} (secrets included: keep the file private).
    #[arg(long)]
    connections: Option<std::path::PathBuf>,
    /// --local: PROCEDURE=URL, the endpoint an HTTP check calls instead of the catalogue's.
    #[arg(long = "http-endpoint")]
    http_endpoints: Vec<String>,
    #[command(flatten)]
    deployment: Deployment,
}

/// Where the deployed runbooks are: flags or environment, else the stack's outputs.
#[derive(clap::Args)]
pub struct Deployment {
    /// The opsflow stack (its outputs name the runner, the table and the bucket).
    #[arg(long, env = "OPSFLOW_STACK", default_value = "opsflow")]
    stack: String,
    #[arg(long, env = "OPSFLOW_RUNNER_ARN")]
    runner_arn: Option<String>,
    #[arg(long, env = "OPSFLOW_RUNS_TABLE")]
    runs_table: Option<String>,
    #[arg(long, env = "OPSFLOW_RUNS_BUCKET")]
    runs_bucket: Option<String>,
}

#[derive(clap::Args)]
pub struct RunsArgs {
    /// How far back: 30m, 12h, 7d (default 24h).
    #[arg(long, default_value = "24h")]
    since: String,
    #[arg(long)]
    procedure: Option<String>,
    /// An instance id (or an endpoint) to show alone.
    #[arg(long)]
    target: Option<String>,
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Read the local cloud's table (AWS_ENDPOINT_URL) instead of the deployed one.
    #[arg(long)]
    local: bool,
    #[command(flatten)]
    deployment: Deployment,
}

/// The runner's input from the flags.
fn input(args: &RunArgs, started_by: &str) -> anyhow::Result<Value> {
    let mut input = json!({"Procedure": args.procedure, "StartedBy": started_by});
    if let Some(t) = &args.targets {
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in t.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .strip_prefix("tag:")
                .and_then(|kv| kv.split_once('='))
                .ok_or_else(|| anyhow!("--targets: {part:?} is not tag:KEY=VALUE"))?;
            tags.entry(k.to_string()).or_default().push(v.to_string());
        }
        input["Targets"] = json!({"Tags": tags.into_iter().map(|(k, v)| json!({"Key": k, "Values": v})).collect::<Vec<_>>()});
    }
    if let Some(ids) = &args.instance_ids {
        input["Targets"] = json!({"InstanceIds": ids.split(',').filter(|i| !i.is_empty()).collect::<Vec<_>>()});
    }
    if !args.accounts.is_empty() {
        input["Accounts"] = json!(args.accounts);
    }
    if !args.regions.is_empty() {
        input["Regions"] = json!(args.regions);
    }
    if !args.params.is_empty() {
        let mut params = serde_json::Map::new();
        for p in &args.params {
            let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("--param: {p:?} is not KEY=VALUE"))?;
            params.insert(k.to_string(), json!(v));
        }
        input["Parameters"] = Value::Object(params);
    }
    for (field, value) in [
        ("MaxConcurrency", &args.max_concurrency),
        ("MaxErrors", &args.max_errors),
        ("Notify", &args.notify),
    ] {
        if let Some(v) = value {
            input[field] = json!(v);
        }
    }
    if args.dry_run {
        input["DryRun"] = json!(true);
    }
    Ok(input)
}

/// Who runs this: the caller's ARN (GetCallerIdentity), as the audit trail records it.
async fn caller(clients: &Clients) -> String {
    match clients.sts.get_caller_identity().send().await {
        Ok(id) => id.arn().unwrap_or("unknown").to_string(),
        Err(_) => format!("unknown (user {})", std::env::var("USER").unwrap_or_default()),
    }
}

struct Located {
    runner_arn: String,
    runs_table: String,
    runs_bucket: String,
}

async fn locate(d: &Deployment, clients: &Clients) -> anyhow::Result<Located> {
    let mut outputs = BTreeMap::new();
    if d.runner_arn.is_none() || d.runs_table.is_none() || d.runs_bucket.is_none() {
        let out = clients
            .cloudformation
            .describe_stacks()
            .stack_name(&d.stack)
            .send()
            .await
            .with_context(|| {
                format!(
                    "reading stack {}'s outputs (or set OPSFLOW_RUNNER_ARN, OPSFLOW_RUNS_TABLE, OPSFLOW_RUNS_BUCKET)",
                    d.stack
                )
            })?;
        for o in out.stacks().first().map(|s| s.outputs()).unwrap_or_default() {
            if let (Some(k), Some(v)) = (o.output_key(), o.output_value()) {
                outputs.insert(k.to_string(), v.to_string());
            }
        }
    }
    let pick = |given: &Option<String>, key: &str| -> anyhow::Result<String> {
        given
            .clone()
            .or_else(|| outputs.get(key).cloned())
            .ok_or_else(|| anyhow!("stack {} has no output {key}", d.stack))
    };
    Ok(Located {
        runner_arn: pick(&d.runner_arn, "RunbookRunnerArn")?,
        runs_table: pick(&d.runs_table, "RunsTableName")?,
        runs_bucket: pick(&d.runs_bucket, "RunsBucketName")?,
    })
}

/// Live progress: targets done, failed and running, from the audit trail.
struct Follow {
    bar: Option<ProgressBar>,
    text: bool,
    last: String,
}

impl Follow {
    fn new(text: bool) -> Follow {
        let bar = (text && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}").expect("a template"));
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Follow {
            bar,
            text,
            last: String::new(),
        }
    }

    fn show(&mut self, rows: &[TargetRow], started: Instant) {
        let count = |f: &dyn Fn(TargetStatus) -> bool| rows.iter().filter(|r| f(r.status)).count();
        let running = count(&|s| s == TargetStatus::Running);
        let failed = count(&|s| s.is_error());
        let not_started = count(&|s| s == TargetStatus::NotStarted);
        let done = rows.len() - running;
        let msg = format!("{done} done, {failed} failed, {running} running, {not_started} not started");
        if let Some(b) = &self.bar {
            b.set_length(rows.len() as u64);
            b.set_position(done as u64);
            b.set_message(msg);
        } else if self.text && msg != self.last {
            eprintln!("[{:>6.1}s] {msg}", started.elapsed().as_secs_f64());
            self.last = msg;
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let text = args.output == "text";
    let catalogue = Catalogue::builtin();
    let name = format!("{}-{}", args.procedure, chrono_stamp());
    let (clients, home) = if args.local {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| anyhow!("--local runs against AWS_ENDPOINT_URL (e.g. `infra/localcloud/localcloud.sh start`): set it"))?;
        let clients = Clients::for_endpoint(&endpoint).await.map_err(|e| anyhow!("{e}"))?;
        (
            clients,
            Home {
                account: ACCOUNT.into(),
                region: REGION.into(),
            },
        )
    } else {
        let clients = Clients::from_env().await.map_err(|e| anyhow!("{e}"))?;
        (
            clients,
            Home {
                account: String::new(),
                region: String::new(),
            },
        )
    };
    let started_by = caller(&clients).await;
    let input = input(&args, &started_by)?;
    let located = if args.local {
        None
    } else {
        Some(locate(&args.deployment, &clients).await?)
    };
    let home = match &located {
        Some(l) => opsflow_core::runbook::steps::home_of(&l.runner_arn).map_err(|e| anyhow!("{e}"))?,
        None => home,
    };
    if let Err(e) = input::check(&input, &catalogue, &home) {
        eprintln!("opsflow run: {e}");
        return Ok(ExitCode::from(2));
    }
    let started = Instant::now();
    let mut follow = Follow::new(text);
    let (status, execution_arn, output, cause, summary) = match located {
        None => {
            let external_id = args
                .external_id
                .clone()
                .ok_or_else(|| anyhow!("--local needs the member role's ExternalId: --external-id or OPSFLOW_EXTERNAL_ID"))?;
            let cloud = Arc::new(LocalCloud::attach(&clients_endpoint()?)?);
            let mut connections = Vec::new();
            if let Some(path) = &args.connections {
                let defs: BTreeMap<String, Value> =
                    serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
                        .with_context(|| format!("{}: a JSON object of connection names to definitions", path.display()))?;
                for (n, definition) in defs {
                    let mut c = Connection::api_key(&n, "", "");
                    c.definition = definition;
                    connections.push(c);
                }
            }
            let endpoints = args
                .http_endpoints
                .iter()
                .map(|e| {
                    e.split_once('=')
                        .map(|(p, u)| (p.to_string(), u.to_string()))
                        .ok_or_else(|| anyhow!("--http-endpoint: {e:?} is not PROCEDURE=URL"))
                })
                .collect::<anyhow::Result<_>>()?;
            let options = Options {
                role_name: args.member_role.clone(),
                external_id,
                connections,
                endpoints,
                http_time_limit: None,
            };
            let runbooks = Arc::new(LocalRunbooks::new(cloud, options).await?);
            let arn = format!(
                "arn:aws:states:{REGION}:{ACCOUNT}:execution:{}:{name}",
                opsflow::local::runbook::RUNNER
            );
            let task = {
                let (runbooks, input, name) = (runbooks.clone(), input.clone(), name.clone());
                tokio::spawn(async move { runbooks.run(input, &name, |_| {}).await })
            };
            while !task.is_finished() {
                follow.show(&runbooks.log.targets(&arn).await.unwrap_or_default(), started);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let out = task.await??;
            follow.show(&runbooks.log.targets(&arn).await.unwrap_or_default(), started);
            let status = format!("{:?}", out.execution.status).to_uppercase();
            (status, out.execution_arn, out.execution.output, out.execution.cause, out.summary)
        }
        Some(l) => {
            let log = DynamoRunLog::new(clients.dynamodb.clone(), &l.runs_table);
            let started_exec = clients
                .sfn
                .start_execution()
                .state_machine_arn(&l.runner_arn)
                .name(&name)
                .input(input.to_string())
                .send()
                .await
                .context("StartExecution")?;
            let arn = started_exec.execution_arn().to_string();
            if text {
                eprintln!("started {arn}");
            }
            let described = loop {
                let d = clients
                    .sfn
                    .describe_execution()
                    .execution_arn(&arn)
                    .send()
                    .await
                    .context("DescribeExecution")?;
                follow.show(&log.targets(&arn).await.unwrap_or_default(), started);
                if d.status().as_str() != "RUNNING" {
                    break d;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            };
            let output = described.output().and_then(|o| serde_json::from_str(o).ok());
            let summary = read_summary(&clients, &l.runs_bucket, &name).await;
            (
                described.status().as_str().to_string(),
                arn,
                output,
                described.cause().map(str::to_string),
                summary,
            )
        }
    };
    follow.finish();
    print_result(&args, &status, &execution_arn, output.as_ref(), cause.as_deref(), summary.as_ref())
}

fn clients_endpoint() -> anyhow::Result<String> {
    std::env::var("AWS_ENDPOINT_URL").map_err(|_| anyhow!("AWS_ENDPOINT_URL is not set"))
}

/// A UTC stamp for execution names (`20261206T091500Z`).
fn chrono_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    opsflow_core::time::format_utc(now.as_secs() as i64).replace(['-', ':'], "")
}

async fn read_summary(clients: &Clients, bucket: &str, name: &str) -> Option<Summary> {
    let out = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(format!("runs/{name}/summary.json"))
        .send()
        .await
        .ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    serde_json::from_slice(&bytes).ok()
}

fn print_result(
    args: &RunArgs,
    status: &str,
    arn: &str,
    output: Option<&Value>,
    cause: Option<&str>,
    summary: Option<&Summary>,
) -> anyhow::Result<ExitCode> {
    let json_out = args.output == "json";
    if args.dry_run {
        let resolved = output.cloned().unwrap_or(Value::Null);
        if json_out {
            println!(
                "{}",
                json!({"status": "DryRun", "execution": arn, "procedure": args.procedure, "resolved": resolved})
            );
        } else {
            println!(
                "dry run of {}: {} targets (max {} at once, {} errors allowed); nothing was changed",
                args.procedure, resolved["Count"], resolved["MaxConcurrency"], resolved["AllowedErrors"]
            );
            for t in resolved["Preview"].as_array().into_iter().flatten() {
                println!(
                    "  would run on {} {} {} {}",
                    t["Account"].as_str().unwrap_or(""),
                    t["Region"].as_str().unwrap_or(""),
                    t["InstanceId"].as_str().unwrap_or(""),
                    t["Name"].as_str().unwrap_or("")
                );
            }
            for e in resolved["Excluded"].as_array().into_iter().flatten() {
                println!(
                    "  excluded {} {} {}: {}",
                    e["Account"].as_str().unwrap_or(""),
                    e["Region"].as_str().unwrap_or(""),
                    e["InstanceId"].as_str().unwrap_or(""),
                    e["Reason"].as_str().unwrap_or("")
                );
            }
        }
        return Ok(ExitCode::from(if status == "SUCCEEDED" { 0 } else { 1 }));
    }
    let Some(s) = summary else {
        let why = cause.unwrap_or("no summary was written");
        if json_out {
            println!(
                "{}",
                json!({"status": status, "execution": arn, "procedure": args.procedure, "error": why})
            );
        } else {
            println!("{} {status}: {why}", args.procedure);
        }
        return Ok(ExitCode::from(1));
    };
    if json_out {
        println!("{}", s.to_json());
    } else {
        let c = &s.counts;
        println!(
            "{}: {} — {} targets, {} succeeded, {} failed, {} not started",
            s.procedure, s.status, c.targets, c.succeeded, c.failed, c.not_started
        );
        println!("execution {arn}");
        for t in &s.targets {
            let code = t.exit_code.map_or("-".to_string(), |c| c.to_string());
            println!(
                "  {:<10} {} {} {} {} exit {code}{}",
                t.status.as_str(),
                t.account,
                t.region,
                t.instance_id,
                t.name,
                if t.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", t.reason)
                }
            );
            if t.status != TargetStatus::Succeeded && !t.output_tail.is_empty() {
                for line in t.output_tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
                    println!("      | {line}");
                }
                if let Some(u) = &t.output_url {
                    println!("      full output: {u}");
                }
            }
        }
    }
    Ok(ExitCode::from(if s.status == "Succeeded" { 0 } else { 1 }))
}

/// `30m`, `12h`, `7d` → seconds.
fn duration_s(text: &str) -> anyhow::Result<i64> {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow!("--since: {text:?} is not a duration like 30m, 12h or 7d"))?;
    Ok(n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--since: {text:?} is not a duration like 30m, 12h or 7d"),
    })
}

pub async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let since_s = match duration_s(&args.since) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("opsflow runs: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let (clients, table) = if args.local {
        let clients = Clients::for_endpoint(&clients_endpoint()?).await.map_err(|e| anyhow!("{e}"))?;
        (
            clients,
            args.deployment.runs_table.clone().unwrap_or_else(|| RUNS_TABLE.to_string()),
        )
    } else {
        let clients = Clients::from_env().await.map_err(|e| anyhow!("{e}"))?;
        let table = locate(&args.deployment, &clients).await?.runs_table;
        (clients, table)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let log = DynamoRunLog::new(clients.dynamodb.clone(), table);
    let mut rows = log
        .since(&opsflow_core::time::format_utc(now - since_s))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    rows.retain(|r| {
        args.procedure.as_ref().is_none_or(|p| &r.procedure == p)
            && args.target.as_ref().is_none_or(|t| &r.instance_id == t || &r.name == t)
    });
    rows.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.target.cmp(&b.target)));
    if args.output == "json" {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        println!(
            "{:<20} {:<16} {:<10} {:<28} {:<5} started by",
            "started", "procedure", "status", "target", "exit"
        );
        for r in &rows {
            let target = format!(
                "{}/{}/{}",
                r.account,
                r.region,
                if r.instance_id.is_empty() { &r.name } else { &r.instance_id }
            );
            println!(
                "{:<20} {:<16} {:<10} {:<28} {:<5} {}",
                r.started_at,
                r.procedure,
                r.status.as_str(),
                target,
                r.exit_code.map_or("-".to_string(), |c| c.to_string()),
                r.started_by
            );
        }
        println!("{} target runs since {}", rows.len(), opsflow_core::time::format_utc(now - since_s));
    }
    Ok(ExitCode::SUCCESS)
}
