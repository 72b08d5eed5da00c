//! The HTTP Task (`arn:aws:states:::http:invoke`), as the AWS guide "Call HTTPS APIs in Step
//! Functions workflows" describes it: a real HTTP call (reqwest) with the credentials of an
//! EventBridge connection, read from the connections the engine was given
//! ([`super::EngineBuilder::connection`], the CLI's `--connections FILE`).
//!
//! - Parameters (or Arguments): `ApiEndpoint`, `Method` (GET, POST, PUT, DELETE, PATCH, OPTIONS,
//!   HEAD), `Authentication.ConnectionArn` (required), `Headers`, `QueryParameters`,
//!   `RequestBody` (JSON, sent as `application/json`, or a string sent as is), `Transform`
//!   (`RequestBodyEncoding` `NONE` or `URL_ENCODED`, `RequestEncodingOptions.ArrayFormat`
//!   `INDICES` (default), `REPEAT`, `COMMAS`, `BRACKETS`).
//! - The connection (an EventBridge `DescribeConnection`-like object: `AuthorizationType`
//!   `API_KEY` / `BASIC` / `OAUTH_CLIENT_CREDENTIALS` and `AuthParameters`) adds its header,
//!   basic credentials or OAuth bearer token (client-credentials grant at
//!   `AuthorizationEndpoint`, cached per connection), and its `InvocationHttpParameters`
//!   (headers, query string, body fields). Step Functions' own `User-Agent`
//!   (`Amazon|StepFunctions|HttpInvoke|<region>`) and `Range: bytes=0-262144` are set; headers a
//!   definition may not set (Authorization, Host, `x-amz-*`, …) are refused with `States.Runtime`.
//! - The result: `{"Headers": {name: [values]}, "ResponseBody": JSON when the response is JSON,
//!   else text, "StatusCode", "StatusText"}`. A non-2xx response fails the Task with
//!   `States.Http.StatusCode.<code>`, the cause being that result as JSON text; no response within
//!   AWS's 60-second limit, or no connection at all, is `States.Http.Socket`; an unknown
//!   connection is `Events.ConnectionResource.ResourceNotFound`.

use std::sync::OnceLock;

use super::*;

/// AWS's hard limit for one HTTP Task request.
pub const HTTP_TASK_LIMIT: Duration = Duration::from_secs(60);
const SOCKET: &str = "States.Http.Socket";

pub(super) fn http_invoke(exec: &Arc<Exec>) -> Arc<dyn TaskHandler> {
    Arc::new(HttpInvoke {
        engine: exec.engine.clone(),
    })
}

struct HttpInvoke {
    engine: Arc<Inner>,
}

fn client(engine: &Inner) -> &reqwest::Client {
    static FALLBACK: OnceLock<reqwest::Client> = OnceLock::new();
    engine.http.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(engine.http_limit)
            .build()
            .unwrap_or_else(|_| FALLBACK.get_or_init(reqwest::Client::new).clone())
    })
}

impl TaskHandler for HttpInvoke {
    fn invoke(&self, req: TaskRequest) -> HandlerFuture {
        let engine = self.engine.clone();
        Box::pin(async move { call(&engine, &req.payload, None).await })
    }
}

fn runtime(msg: impl Into<String>) -> StatesError {
    StatesError::runtime(msg.into())
}

/// Headers an HTTP Task definition may not set (AWS: "Headers" of the HTTP Task fields).
fn forbidden_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("x-forwarded-")
        || n.starts_with("x-amz-")
        || n.starts_with("x-amzn-")
        || [
            "a-im",
            "accept-charset",
            "accept-datetime",
            "accept-encoding",
            "authorization",
            "cache-control",
            "connection",
            "content-encoding",
            "content-md5",
            "date",
            "expect",
            "forwarded",
            "from",
            "host",
            "http2-settings",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "max-forwards",
            "origin",
            "pragma",
            "proxy-authorization",
            "referer",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "via",
            "warning",
        ]
        .contains(&n.as_str())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// application/x-www-form-urlencoded percent-encoding (space as `+`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A JSON object as form fields: nested objects as `a[b]`, arrays per `ArrayFormat`.
fn form_pairs(prefix: &str, v: &Value, array_format: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}[{k}]") };
                form_pairs(&key, x, array_format, out);
            }
        }
        Value::Array(a) => match array_format {
            "COMMAS" => out.push((prefix.to_string(), a.iter().map(scalar).collect::<Vec<_>>().join(","))),
            "REPEAT" => a.iter().for_each(|x| form_pairs(prefix, x, array_format, out)),
            "BRACKETS" => a.iter().for_each(|x| form_pairs(&format!("{prefix}[]"), x, array_format, out)),
            _ => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| form_pairs(&format!("{prefix}[{i}]"), x, array_format, out)),
        },
        other => out.push((prefix.to_string(), scalar(other))),
    }
}

fn join_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `[{"Key", "Value"}]` parameter lists of a connection.
fn key_values(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get("Key")?.as_str()?.to_string(), scalar(p.get("Value")?))))
                .collect()
        })
        .unwrap_or_default()
}

/// The HTTP request and response of one call, for TestState's TRACE inspection level
/// (`InspectionDataRequest` / `InspectionDataResponse`); connection secrets are shown as
/// `<redacted>` unless `reveal_secrets`.
#[derive(Debug, Default)]
pub(super) struct HttpTrace {
    pub reveal_secrets: bool,
    pub request: Option<Value>,
    pub response: Option<Value>,
}

/// One HTTP Task call, recording the request and response in `trace` when given.
pub(super) async fn call(engine: &Inner, p: &Value, mut trace: Option<&mut HttpTrace>) -> Result<Value, StatesError> {
    let endpoint = p
        .get("ApiEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| runtime("The HTTP Task needs the string 'ApiEndpoint'"))?;
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(runtime(format!("ApiEndpoint '{endpoint}' is not an http(s) URL")));
    }
    let method = p.get("Method").and_then(Value::as_str).unwrap_or_default();
    let method = match method {
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "HEAD" => {
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| runtime(e.to_string()))?
        }
        other => {
            return Err(runtime(format!(
                "Method '{other}' is not one of GET, POST, PUT, DELETE, PATCH, OPTIONS, HEAD"
            )))
        }
    };
    let arn = p
        .pointer("/Authentication/ConnectionArn")
        .and_then(Value::as_str)
        .ok_or_else(|| runtime("The HTTP Task needs 'Authentication.ConnectionArn'"))?;
    let conn = engine.connections.get(arn).cloned().ok_or_else(|| {
        StatesError::new(
            "Events.ConnectionResource.ResourceNotFound",
            format!("Connection '{arn}' does not exist (no such connection in the connections the engine was given)"),
        )
    })?;
    let auth = conn.get("AuthParameters").cloned().unwrap_or(Value::Null);
    let invocation = auth.get("InvocationHttpParameters").cloned().unwrap_or(Value::Null);

    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = p.get("Headers") {
        let Value::Object(h) = h else {
            return Err(runtime("Headers must be a JSON object"));
        };
        for (k, v) in h {
            if forbidden_header(k) {
                return Err(runtime(format!("The header '{k}' cannot be set in an HTTP Task")));
            }
            let v = match v {
                Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(","),
                v => scalar(v),
            };
            headers.push((k.clone(), v));
        }
    }
    headers.extend(key_values(invocation.get("HeaderParameters")));

    let mut query: Vec<(String, String)> = Vec::new();
    match p.get("QueryParameters") {
        None => {}
        Some(Value::Object(q)) => {
            for (k, v) in q {
                match v {
                    Value::Array(a) => a.iter().for_each(|x| query.push((k.clone(), scalar(x)))),
                    v => query.push((k.clone(), scalar(v))),
                }
            }
        }
        Some(_) => return Err(runtime("QueryParameters must be a JSON object")),
    }
    query.extend(key_values(invocation.get("QueryStringParameters")));

    let transform = p.get("Transform");
    let url_encoded = match transform.and_then(|t| t.get("RequestBodyEncoding")).and_then(Value::as_str) {
        None | Some("NONE") => false,
        Some("URL_ENCODED") => true,
        Some(o) => return Err(runtime(format!("RequestBodyEncoding '{o}' is not NONE or URL_ENCODED"))),
    };
    let array_format = match transform
        .and_then(|t| t.pointer("/RequestEncodingOptions/ArrayFormat"))
        .and_then(Value::as_str)
    {
        None => "INDICES",
        Some(f @ ("INDICES" | "REPEAT" | "COMMAS" | "BRACKETS")) => f,
        Some(o) => return Err(runtime(format!("ArrayFormat '{o}' is not INDICES, REPEAT, COMMAS or BRACKETS"))),
    };
    let mut body = p.get("RequestBody").cloned();
    let extra_body = key_values(invocation.get("BodyParameters"));
    if !extra_body.is_empty() {
        let mut m = match body {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(runtime("The connection's body parameters need a JSON object RequestBody")),
        };
        for (k, v) in extra_body {
            m.insert(k, Value::String(v));
        }
        body = Some(Value::Object(m));
    }
    let (body, content_type) = match body {
        None | Some(Value::Null) => (None, None),
        Some(Value::String(s)) => (Some(s), None),
        Some(v) if url_encoded => {
            let mut pairs = Vec::new();
            form_pairs("", &v, array_format, &mut pairs);
            (Some(join_pairs(&pairs)), Some("application/x-www-form-urlencoded"))
        }
        Some(v) => (Some(v.to_string()), Some("application/json; charset=UTF-8")),
    };

    let mut url = endpoint.to_string();
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&join_pairs(&query));
    }
    // Every header sent, in order, with whether its value is a connection secret.
    let mut sent: Vec<(String, String, bool)> = Vec::new();
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if let (Some(ct), false) = (content_type, has("content-type")) {
        sent.push(("Content-Type".into(), ct.into(), false));
    }
    let from_connection = key_values(invocation.get("HeaderParameters")).len();
    let own = headers.len() - from_connection;
    for (i, (k, v)) in headers.into_iter().enumerate() {
        sent.push((k, v, i >= own));
    }
    sent.push((
        "User-Agent".into(),
        format!("Amazon|StepFunctions|HttpInvoke|{}", engine.region),
        false,
    ));
    sent.push(("Range".into(), "bytes=0-262144".into(), false));
    match conn.get("AuthorizationType").and_then(Value::as_str) {
        Some("API_KEY") => {
            let k = auth
                .pointer("/ApiKeyAuthParameters/ApiKeyName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let v = auth
                .pointer("/ApiKeyAuthParameters/ApiKeyValue")
                .and_then(Value::as_str)
                .unwrap_or_default();
            sent.push((k.into(), v.into(), true));
        }
        Some("BASIC") => {
            let u = auth
                .pointer("/BasicAuthParameters/Username")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let pw = auth
                .pointer("/BasicAuthParameters/Password")
                .and_then(Value::as_str)
                .unwrap_or_default();
            sent.push(("Authorization".into(), basic(u, pw), true));
        }
        Some("OAUTH_CLIENT_CREDENTIALS") => {
            let token = oauth_token(engine, arn, &auth).await?;
            sent.push(("Authorization".into(), format!("Bearer {token}"), true));
        }
        _ => {}
    }
    let mut rb = client(engine).request(method.clone(), &url);
    for (k, v, _) in &sent {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if let Some(t) = trace.as_deref_mut() {
        let shown: Vec<String> = sent
            .iter()
            .map(|(k, v, secret)| format!("{k}: {}", if *secret && !t.reveal_secrets { "<redacted>" } else { v }))
            .collect();
        t.request = Some(json!({
            "protocol": url.split("://").next().unwrap_or("https"),
            "method": method.as_str(),
            "url": url,
            "headers": format!("[{}]", shown.join(", ")),
            "body": body.clone().unwrap_or_default(),
        }));
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb.send().await.map_err(|e| socket_error(e, engine.http_limit))?;
    let status = resp.status();
    let mut hs = Map::new();
    for name in resp.headers().keys() {
        let values: Vec<Value> = resp
            .headers()
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        hs.insert(name.as_str().to_string(), Value::Array(values));
    }
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let media = ct.split(';').next().unwrap_or("").trim();
            media == "application/json" || media.ends_with("+json")
        })
        .unwrap_or(false);
    let version = format!("{:?}", resp.version());
    let text = resp.text().await.map_err(|e| socket_error(e, engine.http_limit))?;
    if let Some(t) = trace {
        let shown: Vec<String> = hs
            .iter()
            .flat_map(|(k, vs)| {
                vs.as_array()
                    .into_iter()
                    .flatten()
                    .map(move |v| format!("{k}: {}", v.as_str().unwrap_or_default()))
            })
            .collect();
        t.response = Some(json!({
            "protocol": version,
            "statusCode": status.as_u16().to_string(),
            "statusMessage": status.canonical_reason().unwrap_or(""),
            "headers": format!("[{}]", shown.join(", ")),
            "body": text,
        }));
    }
    let body = if is_json {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    let out = json!({
        "Headers": hs,
        "ResponseBody": body,
        "StatusCode": status.as_u16(),
        "StatusText": status.canonical_reason().unwrap_or(""),
    });
    if status.is_success() {
        Ok(out)
    } else {
        Err(StatesError::new(
            format!("States.Http.StatusCode.{}", status.as_u16()),
            out.to_string(),
        ))
    }
}

fn socket_error(e: reqwest::Error, limit: Duration) -> StatesError {
    if e.is_timeout() {
        StatesError::new(SOCKET, format!("The HTTP request did not complete within {} ms", limit.as_millis()))
    } else {
        StatesError::new(SOCKET, format!("The HTTP request failed: {e}"))
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A client-credentials token from the connection's `AuthorizationEndpoint`, cached per connection.
async fn oauth_token(engine: &Inner, arn: &str, auth: &Value) -> Result<String, StatesError> {
    if let Some(t) = engine.oauth_tokens.lock().unwrap().get(arn) {
        return Ok(t.clone());
    }
    let o = auth.get("OAuthParameters").cloned().unwrap_or(Value::Null);
    let failed = |m: String| StatesError::new("Events.ConnectionResource.InvalidConnectionState", m);
    let endpoint = o
        .get("AuthorizationEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| failed(format!("Connection '{arn}' has no OAuthParameters.AuthorizationEndpoint")))?;
    let method = o.get("HttpMethod").and_then(Value::as_str).unwrap_or("POST");
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| failed(e.to_string()))?;
    let id = o.pointer("/ClientParameters/ClientID").and_then(Value::as_str).unwrap_or_default();
    let secret = o
        .pointer("/ClientParameters/ClientSecret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = o.get("OAuthHttpParameters").cloned().unwrap_or(Value::Null);
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    form.extend(key_values(params.get("BodyParameters")));
    let mut url = endpoint.to_string();
    let query = key_values(params.get("QueryStringParameters"));
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&join_pairs(&query));
    }
    let mut rb = client(engine)
        .request(method, &url)
        .header("Authorization", basic(id, secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(join_pairs(&form));
    for (k, v) in key_values(params.get("HeaderParameters")) {
        rb = rb.header(k, v);
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| failed(format!("The OAuth token request failed: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| failed(e.to_string()))?;
    let token = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("access_token").and_then(Value::as_str).map(String::from))
        .filter(|_| status.is_success())
        .ok_or_else(|| failed(format!("The OAuth token request answered {status} without an access_token")))?;
    engine.oauth_tokens.lock().unwrap().insert(arn.to_string(), token.clone());
    Ok(token)
}
