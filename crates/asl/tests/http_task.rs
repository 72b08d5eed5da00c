//! The HTTP Task (`arn:aws:states:::http:invoke`), from the AWS guide "Call HTTPS APIs in Step
//! Functions workflows", against a server each test starts on 127.0.0.1.
mod common;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opsflow_asl::{Engine, ExecutionResult, Status};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the server saw it: request line, lower-case headers, body.
#[derive(Debug, Clone, Default)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

type Reply = fn(&Seen) -> (u16, &'static str, String);

/// Serves HTTP/1.1 on 127.0.0.1 with `reply`, recording every request; returns the base URL.
async fn serve(reply: Reply) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let mut lines = head.lines();
                            let line = lines.next().unwrap_or_default().to_string();
                            let headers = lines
                                .filter_map(|l| {
                                    l.split_once(':')
                                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                                })
                                .collect();
                            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                            let req = Seen { line, headers, body };
                            let (code, content_type, body) = reply(&req);
                            log.lock().unwrap().push(req);
                            let resp = format!(
                                "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nX-Trace: a\r\nX-Trace: b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = sock.write_all(resp.as_bytes()).await;
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

const CONN: &str = "arn:aws:events:us-east-1:123456789012:connection/Api/1";

fn engine(connection: Value) -> Engine {
    Engine::builder().connection(CONN, connection).build()
}

fn api_key() -> Value {
    json!({"AuthorizationType": "API_KEY", "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "secret-1"},
        "InvocationHttpParameters": {"HeaderParameters": [{"Key": "x-tenant", "Value": "t9", "IsValueSecret": false}]}}})
}

fn http_task(params: Value) -> Value {
    json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke", "Parameters": params, "End": true}}})
}

async fn bounded(f: impl std::future::Future<Output = ExecutionResult>) -> ExecutionResult {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the HTTP Task test took over 20 s")
}

#[tokio::test]
async fn a_get_sends_the_connections_credentials_and_query_and_returns_the_response() {
    let (base, seen) = serve(|_| (200, "application/json", r#"{"items":[1,2]}"#.into())).await;
    let def = http_task(json!({"ApiEndpoint": format!("{base}/v1/things"), "Method": "GET",
        "Authentication": {"ConnectionArn": CONN}, "QueryParameters": {"q": "a b", "tag": ["x", "y"]}, "Headers": {"x-custom": "1"}}));
    let r = bounded(run_with(&engine(api_key()), def, json!({}))).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    let out = r.output.unwrap();
    assert_eq!(out["ResponseBody"], json!({"items": [1, 2]}));
    assert_eq!((out["StatusCode"].as_u64(), out["StatusText"].as_str()), (Some(200), Some("OK")));
    assert_eq!(out["Headers"]["x-trace"], json!(["a", "b"]));
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req.line, "GET /v1/things?q=a+b&tag=x&tag=y HTTP/1.1");
    assert_eq!(req.header("x-api-key"), Some("secret-1"));
    assert_eq!(req.header("x-tenant"), Some("t9"));
    assert_eq!(req.header("x-custom"), Some("1"));
    assert_eq!(req.header("user-agent"), Some("Amazon|StepFunctions|HttpInvoke|us-east-1"));
    assert_eq!(req.header("range"), Some("bytes=0-262144"));
    // Task events name the integration as AWS does.
    let scheduled = r.events.iter().find(|e| e.event_type == "TaskScheduled").unwrap();
    assert_eq!(
        (scheduled.detail("resourceType"), scheduled.detail("resource")),
        (Some("http"), Some("invoke"))
    );
}

#[tokio::test]
async fn a_json_request_body_is_sent_as_json_with_basic_credentials() {
    let (base, seen) = serve(|_| (201, "text/plain", "created".into())).await;
    let basic = json!({"AuthorizationType": "BASIC", "AuthParameters": {"BasicAuthParameters": {"Username": "u", "Password": "p"}}});
    let def = http_task(
        json!({"ApiEndpoint": format!("{base}/things"), "Method": "POST", "Authentication": {"ConnectionArn": CONN},
        "RequestBody": {"name.$": "$.name", "n": 1}}),
    );
    let r = bounded(run_with(&engine(basic), def, json!({"name": "x"}))).await;
    let out = r.output.unwrap();
    assert_eq!(
        (out["StatusCode"].as_u64(), out["ResponseBody"].as_str()),
        (Some(201), Some("created"))
    );
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(serde_json::from_str::<Value>(&req.body).unwrap(), json!({"name": "x", "n": 1}));
    assert_eq!(req.header("content-type"), Some("application/json; charset=UTF-8"));
    assert_eq!(req.header("authorization"), Some("Basic dTpw"));
}

#[tokio::test]
async fn url_encoded_bodies_follow_the_array_format() {
    let (base, seen) = serve(|_| (200, "text/plain", String::new())).await;
    let body = json!({"a": ["x", "y"], "o": {"k": "v w"}});
    let cases = [
        (None, "a%5B0%5D=x&a%5B1%5D=y&o%5Bk%5D=v+w"),
        (Some("REPEAT"), "a=x&a=y&o%5Bk%5D=v+w"),
        (Some("COMMAS"), "a=x%2Cy&o%5Bk%5D=v+w"),
        (Some("BRACKETS"), "a%5B%5D=x&a%5B%5D=y&o%5Bk%5D=v+w"),
    ];
    for (format, expected) in cases {
        let mut transform = json!({"RequestBodyEncoding": "URL_ENCODED"});
        if let Some(f) = format {
            transform["RequestEncodingOptions"] = json!({"ArrayFormat": f});
        }
        let def = http_task(
            json!({"ApiEndpoint": base, "Method": "POST", "Authentication": {"ConnectionArn": CONN}, "RequestBody": body, "Transform": transform}),
        );
        let r = bounded(run_with(&engine(api_key()), def, json!({}))).await;
        assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
        let req = seen.lock().unwrap().pop().unwrap();
        assert_eq!(req.body, expected, "{format:?}");
        assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    }
}

#[tokio::test]
async fn a_non_2xx_response_is_states_http_status_code_with_the_response_as_cause() {
    let (base, _) = serve(|_| (404, "application/json", r#"{"message":"no such thing"}"#.into())).await;
    let mut def = http_task(json!({"ApiEndpoint": base, "Method": "GET", "Authentication": {"ConnectionArn": CONN}}));
    let r = bounded(run_with(&engine(api_key()), def.clone(), json!({}))).await;
    assert_eq!(r.error.as_deref(), Some("States.Http.StatusCode.404"));
    let cause: Value = serde_json::from_str(r.cause.as_deref().unwrap()).unwrap();
    assert_eq!(
        (cause["StatusCode"].as_u64(), cause["ResponseBody"]["message"].as_str()),
        (Some(404), Some("no such thing"))
    );
    // Catchable by its name.
    def["States"]["Call"]["Catch"] = json!([{"ErrorEquals": ["States.Http.StatusCode.404"], "Next": "Missing"}]);
    def["States"]["Call"].as_object_mut().unwrap().remove("End");
    def["States"]["Call"]["Next"] = json!("Missing");
    def["States"]["Missing"] = json!({"Type": "Succeed"});
    assert_eq!(
        bounded(run_with(&engine(api_key()), def, json!({}))).await.status,
        Status::Succeeded
    );
}

#[tokio::test]
async fn no_server_listening_is_states_http_socket() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let def =
        http_task(json!({"ApiEndpoint": format!("http://127.0.0.1:{port}/x"), "Method": "GET", "Authentication": {"ConnectionArn": CONN}}));
    let r = bounded(run_with(&engine(api_key()), def, json!({}))).await;
    assert_eq!(r.error.as_deref(), Some("States.Http.Socket"));
}

#[tokio::test]
async fn an_unknown_connection_and_a_forbidden_header_are_refused() {
    let def = http_task(
        json!({"ApiEndpoint": "http://127.0.0.1:9/x", "Method": "GET", "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/Nope/2"}}),
    );
    let r = bounded(run_with(&engine(api_key()), def, json!({}))).await;
    assert_eq!(r.error.as_deref(), Some("Events.ConnectionResource.ResourceNotFound"));
    let def = http_task(
        json!({"ApiEndpoint": "http://127.0.0.1:9/x", "Method": "GET", "Authentication": {"ConnectionArn": CONN}, "Headers": {"Authorization": "x"}}),
    );
    let r = bounded(run_with(&engine(api_key()), def, json!({}))).await;
    assert_eq!(r.error.as_deref(), Some("States.Runtime"));
    assert!(r.cause.unwrap().contains("'Authorization' cannot be set"));
}

#[tokio::test]
async fn oauth_client_credentials_fetch_a_token_once_and_send_it_as_bearer() {
    let (base, seen) = serve(|req| {
        if req.line.starts_with("POST /token") {
            (200, "application/json", r#"{"access_token":"tok-7","token_type":"Bearer"}"#.into())
        } else if req.header("authorization") == Some("Bearer tok-7") {
            (200, "application/json", "true".into())
        } else {
            (401, "text/plain", "no".into())
        }
    })
    .await;
    let oauth = json!({"AuthorizationType": "OAUTH_CLIENT_CREDENTIALS", "AuthParameters": {"OAuthParameters": {
        "AuthorizationEndpoint": format!("{base}/token"), "HttpMethod": "POST",
        "ClientParameters": {"ClientID": "id", "ClientSecret": "sec"},
        "OAuthHttpParameters": {"BodyParameters": [{"Key": "scope", "Value": "read"}]}}}});
    let engine = engine(oauth);
    let def = http_task(json!({"ApiEndpoint": format!("{base}/api"), "Method": "GET", "Authentication": {"ConnectionArn": CONN}}));
    for _ in 0..2 {
        let r = bounded(run_with(&engine, def.clone(), json!({}))).await;
        assert_eq!(r.output.unwrap()["ResponseBody"], json!(true));
    }
    let seen = seen.lock().unwrap();
    let token_requests: Vec<_> = seen.iter().filter(|r| r.line.starts_with("POST /token")).collect();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].body, "grant_type=client_credentials&scope=read");
    assert_eq!(token_requests[0].header("authorization"), Some("Basic aWQ6c2Vj"));
}

#[tokio::test]
async fn test_state_at_trace_shows_the_http_request_and_response_with_secrets_redacted() {
    let (base, _) = serve(|_| (404, "application/json", r#"{"message":"gone"}"#.into())).await;
    let def = http_task(json!({"ApiEndpoint": format!("{base}/items"), "Method": "GET", "Authentication": {"ConnectionArn": CONN}}));
    let mut req = opsflow_asl::TestStateRequest {
        definition: def,
        inspection_level: opsflow_asl::InspectionLevel::Trace,
        ..Default::default()
    };
    let out = tokio::time::timeout(Duration::from_secs(20), engine(api_key()).test_state(req.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((out.status, out.error.as_deref()), ("FAILED", Some("States.Http.StatusCode.404")));
    let request = &out.inspection_data["request"];
    assert_eq!(
        (request["method"].as_str(), request["url"].as_str()),
        (Some("GET"), Some(format!("{base}/items").as_str()))
    );
    let headers = request["headers"].as_str().unwrap();
    assert!(
        headers.contains("x-api-key: <redacted>") && headers.contains("x-tenant: <redacted>"),
        "{headers}"
    );
    assert!(
        headers.contains("User-Agent: Amazon|StepFunctions|HttpInvoke|us-east-1"),
        "{headers}"
    );
    let response = &out.inspection_data["response"];
    assert_eq!(
        (response["statusCode"].as_str(), response["body"].as_str()),
        (Some("404"), Some(r#"{"message":"gone"}"#))
    );
    // revealSecrets shows them.
    req.reveal_secrets = true;
    let out = engine(api_key()).test_state(req).await.unwrap();
    assert!(out.inspection_data["request"]["headers"]
        .as_str()
        .unwrap()
        .contains("x-api-key: secret-1"));
}

#[tokio::test]
async fn no_answer_within_the_time_limit_is_states_http_socket() {
    // A server that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    // AWS's limit is 60 s; the engine takes a shorter one for this test.
    let engine = Engine::builder()
        .connection(CONN, api_key())
        .http_time_limit(Duration::from_millis(300))
        .build();
    let def = http_task(json!({"ApiEndpoint": format!("http://{addr}/slow"), "Method": "GET", "Authentication": {"ConnectionArn": CONN}}));
    let started = std::time::Instant::now();
    let r = bounded(run_with(&engine, def, json!({}))).await;
    assert_eq!(r.error.as_deref(), Some("States.Http.Socket"));
    assert!(r.cause.unwrap().contains("did not complete within 300 ms"));
    assert!(started.elapsed() < Duration::from_secs(5));
}
