//! Cold start of each function, side by side with a hello-world Rust Lambda built with the same
//! profile (`cargo bench -p opsflow-functions --bench cold_start`: the release profile).
//!
//! Each function's binary is started as Lambda starts it: `AWS_LAMBDA_RUNTIME_API` pointing at a
//! minimal Lambda Runtime API served here on 127.0.0.1, the AWS SDK pointed at the local cloud
//! (moto on 127.0.0.1) with static credentials, `SSL_CERT_FILE` naming the CA bundle as the
//! template does. Measured, over `RUNS` starts (median):
//! - init: from exec to the binary's first `GET /runtime/invocation/next`;
//! - first invocation: from handing it the event to its response (or error) POST, with its AWS
//!   calls against the local cloud;
//! - peak RSS (`VmHWM` of /proc/<pid>/status) after the first invocation;
//! - zip size: the binary zipped as `bootstrap` with deflate, as cargo-lambda packages it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use opsflow::local::provision::SETUP_TABLE;
use opsflow::local::LocalCloud;
use opsflow_aws::Clients;
use opsflow_core::facts::Platform;
use opsflow_core::provision::plan::{ProfileAction, VolumeAction};
use opsflow_core::provision::steps::Plan;
use serde_json::{json, Value};

const RUNS: usize = 30;
const INSTANCE: &str = "i-0123456789abcdef0";
/// Stands for the Runtime API's address in the events.
const RUNTIME_API: &str = "runtime-api.invalid";

/// What the Runtime API saw, in order.
enum Seen {
    Next(Instant),
    /// The response, or the error's `errorType`.
    Done(Instant, String),
}

/// A minimal Lambda Runtime API (2018-06-01): hands out one event, then holds `next` open.
struct RuntimeApi {
    port: u16,
    seen: mpsc::Receiver<Seen>,
}

fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut h = String::new();
        stream.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

impl RuntimeApi {
    /// Serves `event`, with [`RUNTIME_API`] in it replaced by this server's address.
    fn serve(event: &Value) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = mpsc::channel();
        let event = serde_json::to_string(event)
            .unwrap()
            .replace(RUNTIME_API, &format!("127.0.0.1:{port}"))
            .into_bytes();
        thread::spawn(move || {
            let mut handed_out = false;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (tx, event) = (tx.clone(), event.clone());
                let first = !handed_out;
                handed_out = true;
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    let mut given = !first;
                    while let Some((method, path, body)) = read_request(&mut reader) {
                        let now = Instant::now();
                        if method == "GET" && path.ends_with("/invocation/next") {
                            if given {
                                // Lambda freezes the process here; the bench kills it.
                                let _ = tx.send(Seen::Next(now));
                                thread::sleep(Duration::from_secs(60));
                                return;
                            }
                            given = true;
                            let _ = tx.send(Seen::Next(now));
                            let deadline = (std::time::SystemTime::now() + Duration::from_secs(300))
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis();
                            respond(
                                &mut out,
                                "200 OK",
                                &[
                                    ("content-type", "application/json".into()),
                                    ("lambda-runtime-aws-request-id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into()),
                                    ("lambda-runtime-deadline-ms", deadline.to_string()),
                                    (
                                        "lambda-runtime-invoked-function-arn",
                                        "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
                                    ),
                                    ("lambda-runtime-trace-id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700".into()),
                                ],
                                &event,
                            );
                        } else if method == "POST" && (path.ends_with("/response") || path.ends_with("/error")) {
                            let outcome = if path.ends_with("/response") {
                                "response".to_string()
                            } else {
                                let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                error["errorType"].as_str().unwrap_or("error").to_string()
                            };
                            let _ = tx.send(Seen::Done(now, outcome));
                            respond(&mut out, "202 Accepted", &[], b"{}");
                        } else {
                            // The CloudFormation response PUT (the answer steps) and init errors.
                            respond(&mut out, "200 OK", &[], b"");
                        }
                    }
                });
            }
        });
        RuntimeApi { port, seen }
    }

    fn wait(&self) -> Seen {
        self.seen
            .recv_timeout(Duration::from_secs(60))
            .expect("the function did not call the Runtime API within 60 s")
    }
}

fn peak_rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Start {
    init: Duration,
    first: Duration,
    outcome: String,
    rss_kib: u64,
}

fn start_once(binary: &Path, env: &[(&str, String)], event: &Value) -> Start {
    let api = RuntimeApi::serve(event);
    let t0 = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        // The answer goes to the Runtime API server on 127.0.0.1, as to the local cloud.
        .env("OPSFLOW_LOCAL_RESPONSE_URLS", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the function");
    let Seen::Next(first_next) = api.wait() else {
        panic!("a response before the first next")
    };
    let Seen::Done(done, outcome) = api.wait() else {
        panic!("a second next before a response")
    };
    // The runtime asks for the next event right after the response: then it is idle, as frozen.
    let _ = api.wait();
    let rss_kib = peak_rss_kib(&child);
    let _ = child.kill();
    let _ = child.wait();
    Start {
        init: first_next - t0,
        first: done - first_next,
        outcome,
        rss_kib,
    }
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn zip_size(binary: &Path) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import io,sys,zipfile\nb=io.BytesIO()\nz=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED,compresslevel=6)\nz.write(sys.argv[1],'bootstrap')\nz.close()\nprint(len(b.getvalue()))",
        ])
        .arg(binary)
        .output()
        .expect("python3 for the zip size");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

fn main() {
    let cloud = LocalCloud::start().expect("the local cloud");
    // enrich-alert publishes to this topic.
    let topic = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let clients = Clients::for_endpoint(&cloud.endpoint).await.expect("clients");
        // The provisioning functions keep their state in this table.
        clients.setup_store(SETUP_TABLE).create_table().await.expect("CreateTable");
        let out = clients.sns.create_topic().name("opsflow-enriched-alerts").send().await;
        out.expect("CreateTopic").topic_arn().expect("a topic ARN").to_string()
    });
    // The Runtime API server also takes the CloudFormation response PUT.
    let response_url = format!("http://{RUNTIME_API}/cloudformation-response");
    let request = json!({
        "RequestType": "Create", "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:opsflow-Request",
        "ResponseURL": response_url, "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/bench/1",
        "RequestId": "bench-1", "LogicalResourceId": "Setup", "ResourceType": "Custom::OpsflowInstanceSetup",
        "ResourceProperties": {"InstanceId": INSTANCE, "InstanceProfile": "dev-ide-profile", "VolumeSizeGiB": 32,
            "Bootstrap": {"Commands": ["true"]}}
    });
    let profile_arn = "arn:aws:iam::123456789012:instance-profile/dev-ide-profile".to_string();
    let plan = serde_json::to_value(Plan {
        instance_id: INSTANCE.into(),
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/bench/1".into(),
        logical_resource_id: "Setup".into(),
        request_id: "bench-1".into(),
        reverting: false,
        deadline_epoch_s: i64::MAX / 2,
        platform: Platform::Linux,
        physical_resource_id: format!("opsflow-setup-{INSTANCE}"),
        profile: ProfileAction::Associate {
            profile: profile_arn.clone(),
        },
        wanted_profile_arn: Some(profile_arn),
        previous_profile_arn: None,
        volume: Some(VolumeAction::Grow {
            volume_id: "vol-0123456789abcdef0".into(),
            from: 8,
            to: 32,
        }),
        device: Some("/dev/xvda".into()),
        grow_filesystem: true,
        bootstrap: true,
        needs_ssm: true,
        reboot_fallback: false,
    })
    .unwrap();
    // Each function's first event: real work and real AWS calls, which the local cloud answers
    // (for an instance, volume or command it does not know: NotFound, a usual error path).
    let functions: Vec<(&str, Value)> = vec![
        ("hello", json!({"x": 1})),
        ("request", request.clone()),
        ("plan", json!({"request": request})),
        ("assign-profile", json!({"op": "assign", "plan": plan})),
        ("modify-volume", json!({"op": "modify", "plan": plan})),
        ("check-readiness", json!({"plan": plan, "progress": null})),
        ("grow-filesystem", json!({"request": request, "plan": plan})),
        ("send-command", json!({"request": request, "plan": plan})),
        ("undo", json!({"state": {"request": request, "plan": plan}})),
        (
            "check-command",
            json!({"plan": plan, "progress": {"kind": "Bootstrap", "commandId": "c0ffee00-0000-4000-8000-000000000000",
            "sentAtEpochS": 0, "done": false, "status": null, "exitCode": null, "tail": null, "filesystemSizeBytes": null,
            "poll": {"attempt": 0, "delaySeconds": 1, "deadlineEpochS": 0}}}),
        ),
        (
            "answer",
            json!({"status": "FAILED", "step": "Plan", "state": {"request": request, "error": {"Error": "NotFound", "Cause": "bench"}}}),
        ),
        (
            "safety-net",
            json!({"version": "0", "id": "1", "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
            "account": "123456789012", "time": "2026-11-23T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:provision-instance:bench-1",
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:provision-instance",
                "status": "ABORTED", "input": serde_json::to_string(&request).unwrap()}}),
        ),
        (
            "enrich-alert",
            serde_json::from_str(include_str!("../../crates/core/src/alert/fixtures/sns-ec2-cpu.json")).unwrap(),
        ),
    ];
    // As the template does on provided.al2023: the TLS clients read this host's CA bundle file
    // only, not every file of the certificate directories too.
    let bundle = [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .find(|f| Path::new(f).exists());
    let mut env = vec![
        ("AWS_ENDPOINT_URL", cloud.endpoint.clone()),
        ("INSTANCE_PROFILE_ALLOW_LIST", "dev-ide-profile".to_string()),
        ("SETUP_TABLE_NAME", SETUP_TABLE.to_string()),
        // The command steps answer after sending, without watching the command.
        ("WATCH_SECONDS", "0".to_string()),
        (
            "STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:provision-instance".to_string(),
        ),
        ("ENRICHED_TOPIC_ARN", topic),
    ];
    if let Some(bundle) = bundle {
        env.push(("SSL_CERT_FILE", bundle.to_string()));
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_hello")).parent().unwrap().to_path_buf();
    println!("cold start, {RUNS} starts per function (medians), release profile, AWS calls to the local cloud on 127.0.0.1");
    println!(
        "{:<16} {:>10} {:>9} {:>15} {:>12} {:>9} {:>9} {:>9}",
        "function", "init", "× hello", "1st invocation", "outcome", "peak RSS", "binary", "zip"
    );
    // Round after round of every function, so that what else the machine does weighs on all alike.
    let mut all: Vec<Vec<Start>> = functions.iter().map(|_| Vec::with_capacity(RUNS)).collect();
    for _ in 0..RUNS {
        for ((name, event), starts) in functions.iter().zip(&mut all) {
            starts.push(start_once(&bin_dir.join(name), &env, event));
        }
    }
    let mut hello_init = None;
    for ((name, _), starts) in functions.iter().zip(all) {
        let binary = bin_dir.join(name);
        let init = median(starts.iter().map(|s| s.init).collect());
        let first = median(starts.iter().map(|s| s.first).collect());
        let rss = starts.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let mut outcomes: Vec<&str> = starts.iter().map(|s| s.outcome.as_str()).collect();
        outcomes.dedup();
        let base = *hello_init.get_or_insert(init);
        println!(
            "{:<16} {:>8.2}ms {:>8.2}× {:>13.2}ms {:>12} {:>7.1}MB {:>7.1}MB {:>7.2}MB",
            name,
            init.as_secs_f64() * 1e3,
            init.as_secs_f64() / base.as_secs_f64(),
            first.as_secs_f64() * 1e3,
            outcomes.join("/"),
            rss as f64 / 1024.0,
            std::fs::metadata(&binary).map_or(0, |m| m.len()) as f64 / 1e6,
            zip_size(&binary) as f64 / 1e6,
        );
    }
}
