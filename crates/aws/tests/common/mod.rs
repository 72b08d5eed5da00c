//! Test support: the local cloud fixture, its control API, tiny local HTTP servers and a
//! bounded async runner. Everything binds or talks to 127.0.0.1 only.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Upper bound of one test's async body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `future` on a fresh current-thread runtime, failing the test after [`TEST_TIMEOUT`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, future)
            .await
            .unwrap_or_else(|_| panic!("test did not finish within {TEST_TIMEOUT:?}"))
    })
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A name no other test (in this or another process) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------- local cloud

/// The local cloud (moto + opsflow extension) of this test process: started on first use with
/// `infra/localcloud/localcloud.sh start --state-dir <tmp>`, shared by the tests of the binary.
///
/// It is stopped by a watchdog process started with it, which waits for this test process to
/// end (however it ends: success, failed test, panic, abort, kill) and then runs
/// `localcloud.sh stop --state-dir <tmp>` and removes the state directory.
pub struct LocalCloud {
    pub endpoint: String,
    pub state_dir: PathBuf,
}

static CLOUD: OnceLock<Result<LocalCloud, String>> = OnceLock::new();
/// The local cloud's control state (config, clock, faults, rules) is global: tests using it
/// take this lock and run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const WATCHDOG: &str = r#"
pid="$1"; script="$2"; dir="$3"
while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
bash "$script" stop --state-dir "$dir" >/dev/null 2>&1
rm -rf "$dir"
"#;

fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: did not finish within {limit:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        return Err(format!("{what}: {} {stdout} {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(stdout)
}

fn start_local_cloud() -> Result<LocalCloud, String> {
    let repo = repo_root();
    let script = repo.join("infra/localcloud/localcloud.sh");
    if !repo.join(".venv/bin/python").exists() {
        run_bounded(
            Command::new("bash").arg(&script).arg("install"),
            Duration::from_secs(900),
            "localcloud.sh install",
        )?;
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let state_dir = std::env::temp_dir().join(format!("opsflow-aws-tests-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    // The watchdog first, so that even a start that fails half-way is cleaned up.
    Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(&script)
        .arg(&state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    let endpoint = run_bounded(
        Command::new("bash").arg(&script).arg("start").arg("--state-dir").arg(&state_dir),
        Duration::from_secs(120),
        "localcloud.sh start",
    )?;
    if !endpoint.starts_with("http://127.0.0.1:") {
        return Err(format!("localcloud.sh start printed {endpoint:?}"));
    }
    Ok(LocalCloud { endpoint, state_dir })
}

/// One test's hold on the local cloud: the serial lock, the endpoint and a control client.
pub struct CloudTest {
    pub endpoint: String,
    pub control: Control,
    _serial: MutexGuard<'static, ()>,
}

/// Takes the serial lock, starts the local cloud if needed and resets its control state
/// (config, command rules, faults, call counts; the clock runs again at scale 1).
pub fn local_cloud() -> CloudTest {
    let serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cloud = match CLOUD.get_or_init(start_local_cloud) {
        Ok(cloud) => cloud,
        Err(e) => panic!("the local cloud did not start: {e}"),
    };
    let control = Control::new(&cloud.endpoint);
    block_on(control.post("reset", serde_json::json!({})));
    CloudTest {
        endpoint: cloud.endpoint.clone(),
        control,
        _serial: serial,
    }
}

/// The local cloud's `/_opsflow/` control API.
#[derive(Clone)]
pub struct Control {
    base: String,
    http: reqwest::Client,
}

impl Control {
    pub fn new(endpoint: &str) -> Self {
        Control {
            base: format!("{endpoint}/_opsflow/"),
            // No pooled connections: a Control is used from several runtimes (one per test).
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status.as_u16(), 200, "{method} /_opsflow/{path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn config(&self, body: Value) -> Value {
        self.post("config", body).await
    }

    /// Stops the clock (manual mode) and returns its time in epoch milliseconds.
    pub async fn freeze_clock(&self) -> i64 {
        self.post("clock", serde_json::json!({"advance_ms": 0})).await["now_ms"]
            .as_i64()
            .unwrap()
    }

    /// Moves the manual clock forward; returns the new time.
    pub async fn advance(&self, ms: i64) -> i64 {
        self.post("clock", serde_json::json!({"advance_ms": ms})).await["now_ms"]
            .as_i64()
            .unwrap()
    }

    /// How often `service:Operation` was called since the last reset.
    pub async fn calls(&self, key: &str) -> i64 {
        self.get("calls").await["calls"][key].as_i64().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------- stub server

/// One HTTP request as a stub server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a stub server does with each request.
#[derive(Clone)]
pub enum Reply {
    /// Status line reason, headers and body.
    With {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Reads the request, then keeps the connection open without answering until the server stops.
    Hang,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: &str) -> Reply {
        Reply::With {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.to_string(),
        }
    }
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 that records every request and answers each
/// with the same [`Reply`] (one request per connection). Stopped on drop.
pub struct StubServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: mpsc::Receiver<Recorded>,
    thread: Option<JoinHandle<()>>,
}

impl StubServer {
    pub fn start(reply: Reply) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            let deadline = Instant::now() + TEST_TIMEOUT;
            while !thread_stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let Some(request) = read_request(&stream) else { continue };
                        let _ = tx.send(request);
                        match &reply {
                            Reply::With { status, headers, body } => {
                                let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(*status));
                                for (k, v) in headers {
                                    out.push_str(&format!("{k}: {v}\r\n"));
                                }
                                out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
                                let mut stream = stream;
                                let _ = stream.write_all(out.as_bytes());
                                let _ = stream.flush();
                                let _ = stream.shutdown(Shutdown::Both);
                            }
                            Reply::Hang => open.push(stream),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for s in open {
                let _ = s.shutdown(Shutdown::Both);
            }
        });
        StubServer {
            addr,
            stop,
            requests: rx,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.try_iter().collect()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        500 => "INTERNAL SERVER ERROR",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}
