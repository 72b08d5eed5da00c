//! The fuzz targets' bodies, one function per target (`fuzz_targets/<name>.rs` only calls it),
//! so that a smoke run and a replay of the corpora run exactly the same code.
//!
//! Each target checks properties, not only "no panic":
//! - `cfn_request`: every request that can be answered is answered with a body of at most
//!   4096 bytes, whatever the reason; a refused request's error names a field.
//! - `alert_event`: every SNS or EventBridge event (and anything else) becomes publications
//!   whose subject is at most 100 ASCII characters on one line and whose message, with its
//!   attributes, stays within SNS's 256 KiB.
//! - `asl_definition`: an invalid definition (JSONPath or JSONata mode) is a list of errors,
//!   each naming where (the top level or a state) and a field.
//! - `path_query`, `intrinsic`, `jsonata`, `choice_rule`: parse, then evaluate against a
//!   document, within the engine's limits (libFuzzer's `-timeout` and `-rss_limit_mb` catch a
//!   hang or a blow-up).
//! - `mock_config`: a Step Functions Local mock configuration loads or names the field.
//! - `command_output`: the file system size marker and the command outcome of any output.
//!
//! Inputs that carry two parts (an expression and the document it reads) separate them with
//! the first NUL byte; a document that is not JSON is built from its bytes by [`arbitrary`].

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Map, Value};

use opsflow_asl::error::LoadError;
use opsflow_asl::path::{Path, Scope, Vars};
use opsflow_core::alert::{
    self, ActiveMute, AgentInfo, AlertLookups, AlertSettings, Datapoint, InstanceDetails, MetricQuery, Place, ProfileRole, Reach, Target,
};
use opsflow_core::provision::cfn::{self, CfnRequest, CfnResponse, ReplyTo, MAX_BODY_BYTES};
use opsflow_core::provision::props::{AllowList, SetupProps};
use opsflow_core::provision::script::{self, FsTarget};
use opsflow_core::{CoreError, Invocation, Platform};

/// SNS's limits: an email subject, and a message with its attributes.
pub const SNS_SUBJECT_MAX: usize = 100;
pub const SNS_MESSAGE_MAX: usize = 256 * 1024;

/// Nesting of the JSON documents built from bytes (serde_json's own parser stops at 128).
const MAX_DEPTH: usize = 8;

fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

/// Splits at the first NUL: (text, rest).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The document an expression reads: the bytes as JSON, or a value built from them.
fn document(data: &[u8]) -> Value {
    json(data).unwrap_or_else(|| arbitrary_value(&mut Unstructured::new(data), 0).unwrap_or(Value::Null))
}

/// A JSON value of bounded depth, built from fuzz bytes (structure-aware: every input is a
/// valid document, so the evaluators, not serde_json's parser, get the mutations).
pub fn arbitrary_value(u: &mut Unstructured, depth: usize) -> arbitrary::Result<Value> {
    let kind = if depth >= MAX_DEPTH {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=6)?
    };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => json!(i64::arbitrary(u)?),
        3 => serde_json::Number::from_f64(f64::arbitrary(u)?).map_or(Value::Null, Value::Number),
        4 => Value::String(String::arbitrary(u)?),
        5 => {
            let n = u.int_in_range(0..=8)?;
            Value::Array((0..n).map(|_| arbitrary_value(u, depth + 1)).collect::<arbitrary::Result<_>>()?)
        }
        _ => {
            let n = u.int_in_range(0..=8)?;
            let mut m = Map::new();
            for _ in 0..n {
                let key = String::arbitrary(u)?;
                m.insert(key, arbitrary_value(u, depth + 1)?);
            }
            Value::Object(m)
        }
    })
}

/// A refusal names the field it refuses (`InvalidInput` reads "<field> <rule>").
fn assert_names_a_field(e: &CoreError) {
    assert!(!e.name().is_empty(), "an error without a name: {e:?}");
    assert!(!e.to_string().trim().is_empty(), "an error without a message: {e:?}");
}

fn assert_answer_fits(response: &CfnResponse) {
    let body = response.to_body();
    assert!(
        body.len() <= MAX_BODY_BYTES,
        "the answer is {} bytes, over CloudFormation's {MAX_BODY_BYTES}",
        body.len()
    );
    let parsed: Value = serde_json::from_str(&body).expect("the answer is JSON");
    assert!(parsed.get("Status").is_some() && parsed.get("PhysicalResourceId").is_some());
}

/// The custom resource request, its properties and its answer.
pub fn cfn_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(value) = json(data) else {
        let e = CfnRequest::from_json(text).expect_err("not JSON");
        return assert_names_a_field(&e);
    };
    // Whatever can be answered is answered within the limit, with the longest reason we write.
    let reason = "x".repeat(2 * MAX_BODY_BYTES);
    if let Some(reply) = ReplyTo::from_value(&value) {
        let _ = reply.partition();
        assert_answer_fits(&reply.failed(reason.clone()));
    }
    let allow = value
        .get("ResourceProperties")
        .and_then(|p| p.get("AllowList"))
        .and_then(Value::as_str)
        .map(AllowList::parse)
        .unwrap_or_else(|| Ok(AllowList::everything()));
    if let Err(e) = &allow {
        assert_names_a_field(e);
    }
    let request = match CfnRequest::from_value(value.clone()) {
        Ok(request) => request,
        Err(e) => return assert_names_a_field(&e),
    };
    if let Some(old) = &request.old_resource_properties {
        let _ = cfn::changed_fields(old, &request.resource_properties);
    }
    let props = SetupProps::parse(&request.resource_properties, &allow.unwrap_or_else(|_| AllowList::everything()));
    let instance_id = request.resource_properties.get("InstanceId").and_then(Value::as_str);
    let physical = cfn::physical_resource_id(&request, instance_id);
    match props {
        Ok(props) => {
            let _ = props.setup_window_s();
            if let Some(bootstrap) = &props.bootstrap {
                for platform in [Platform::Linux, Platform::Windows] {
                    let _ = script::bootstrap_command(bootstrap, platform);
                }
            }
            if let Some(device) = &props.device {
                let target = FsTarget::Volume {
                    volume_id: "vol-0123456789abcdef0".into(),
                    device_name: device.clone(),
                };
                for platform in [Platform::Linux, Platform::Windows] {
                    if let Err(e) = script::fs_grow_command(platform, &target) {
                        assert_names_a_field(&e);
                    }
                }
            }
            let answer = CfnResponse::success(&request, physical).with_data("InstanceId", props.instance_id);
            assert_answer_fits(&answer.with_reason(reason));
        }
        Err(e) => {
            assert_names_a_field(&e);
            let why = cfn::failure_reason("Validate", e.name(), &e.to_string());
            let physical = cfn::failed_physical_resource_id(&request, instance_id);
            assert_answer_fits(&CfnResponse::failed(&request, physical, why));
        }
    }
}

/// What the enrichment's lookups answer: read from the second part of the input, or failures.
#[derive(Default)]
struct Lookups {
    answers: Value,
}

impl Lookups {
    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, CoreError> {
        self.answers
            .get(key)
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| CoreError::invalid(key, "is not in the fuzz input"))
    }
}

impl AlertLookups for Lookups {
    /// `"reach": "off"` in the answers: the place is not searched; a missing or other value: yes.
    async fn reach(&self, _: &Place) -> Result<Reach, CoreError> {
        match self.answers.get("reach").and_then(Value::as_str) {
            Some("off") => Ok(Reach::Off("the fuzz input says so".into())),
            Some("error") => Err(CoreError::access_denied("sts:AssumeRole", "the fuzz input says so")),
            _ => Ok(Reach::Yes),
        }
    }
    async fn instances(&self, _: &Place, _: &Target, _: usize) -> Result<Vec<InstanceDetails>, CoreError> {
        self.get("instances")
    }
    async fn agents(&self, _: &Place, _: &Target) -> Result<Vec<AgentInfo>, CoreError> {
        self.get("agents")
    }
    async fn profile_roles(&self, _: &Place) -> Result<Vec<ProfileRole>, CoreError> {
        self.get("profiles")
    }
    async fn datapoints(&self, _: &Place, _: &[MetricQuery], _: i64, _: i64) -> Result<Vec<Datapoint>, CoreError> {
        self.get("datapoints")
    }
    async fn active_mutes(&self, _: &Place, _: &str) -> Result<Vec<ActiveMute>, CoreError> {
        self.get("mutes")
    }
    async fn send_diagnostics(&self, _: &Place, _: &str, _: &str, _: &str) -> Result<String, CoreError> {
        self.get("command_id")
    }
    async fn diagnostics_result(&self, _: &Place, _: &str, _: &str) -> Result<Invocation, CoreError> {
        self.get("invocation")
    }
}

fn assert_publishable(p: &alert::Publication) {
    assert!(
        p.subject.chars().count() <= SNS_SUBJECT_MAX,
        "subject of {} characters",
        p.subject.chars().count()
    );
    assert!(
        p.subject.is_ascii() && !p.subject.contains(['\n', '\r']),
        "subject not one ASCII line: {:?}",
        p.subject
    );
    assert!(!p.subject.trim().is_empty(), "empty subject");
    let attributes: usize = p.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(
        p.message.len() + attributes <= SNS_MESSAGE_MAX,
        "message {} bytes + attributes {attributes} bytes, over SNS's {SNS_MESSAGE_MAX}",
        p.message.len()
    );
    let message: Value = serde_json::from_str(&p.message).expect("a MessageStructure json message");
    assert!(message.get("default").is_some_and(Value::is_string), "no default message");
}

/// An SNS or EventBridge event (or anything else) through enrichment to its publications.
pub fn alert_event(data: &[u8]) {
    let (event, answers) = split(data);
    let Some(event) = json(event) else { return };
    let lookups = Lookups {
        answers: json(answers).unwrap_or_default(),
    };
    // Never fails: anything not an alarm is published as unrecognized.
    let messages = alert::incoming(&event);
    let settings = AlertSettings::default();
    for message in messages {
        let publication = match message {
            alert::Incoming::Alarm(alarm) => {
                let _ = alert::target(&alarm);
                let _ = alert::datapoint_queries(&alarm);
                alert::publication(&futures::executor::block_on(alert::enrich(&lookups, &settings, *alarm)))
            }
            alert::Incoming::Unrecognized { source, subject, raw, why } => {
                alert::unrecognized_publication(&source, subject.as_deref(), &raw, &why)
            }
        };
        assert_publishable(&publication);
    }
}

/// An ASL definition, loaded in the mode the first byte chooses (0: as written, 1: JSONPath,
/// 2: JSONata at the top level).
pub fn asl_definition(data: &[u8]) {
    let Some((&mode, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let Some(mut value) = json(text.as_bytes()) else {
        let errors = opsflow_asl::model::parse(text).expect_err("not JSON");
        return assert!(matches!(errors.as_slice(), [LoadError::Json(_)]));
    };
    if let Value::Object(m) = &mut value {
        match mode % 3 {
            1 => {
                m.insert("QueryLanguage".into(), "JSONPath".into());
            }
            2 => {
                m.insert("QueryLanguage".into(), "JSONata".into());
            }
            _ => {}
        }
    }
    match opsflow_asl::model::parse_value(&value) {
        Ok(machine) => {
            assert!(machine.start_at < machine.states.len(), "StartAt names no state");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an invalid definition without an error");
            for e in errors {
                let LoadError::Invalid { location, field, message } = &e else {
                    panic!("a JSON value reported as invalid JSON: {e}")
                };
                assert!(
                    location == "top level" || location.starts_with("State '"),
                    "an error that names no state: {e}"
                );
                // The field as written (a key `""` is named `''`).
                assert!(!field.is_empty() || text.contains("\"\""), "an error that names no field: {e}");
                assert!(!message.is_empty(), "an error without a message: {e}");
            }
        }
    }
}

fn context() -> Value {
    json!({
        "Execution": {"Id": "arn:aws:states:eu-west-1:123456789012:execution:m:e", "Name": "e", "StartTime": "2026-12-06T08:00:00Z"},
        "State": {"Name": "S", "EnteredTime": "2026-12-06T08:00:01Z", "RetryCount": 0},
        "StateMachine": {"Id": "arn:aws:states:eu-west-1:123456789012:stateMachine:m", "Name": "m"},
        "Task": {"Token": "t"},
        "Map": {"Item": {"Index": 0, "Value": "v"}}
    })
}

fn vars(input: &Value) -> Vars {
    let mut vars = Vars::new();
    vars.set("x".into(), input.clone());
    vars.set("n".into(), json!(3));
    vars
}

/// An evaluation's error is a `States.*` error (one that Retry and Catch can match).
fn assert_states_error<T>(result: Result<T, opsflow_asl::StatesError>) {
    if let Err(e) = result {
        assert!(e.error.starts_with("States."), "not a States error: {e}");
    }
}

/// Evaluates on the document `doc` (after the NUL), with a context object and variables.
fn on_document<T>(doc: &[u8], eval: impl FnOnce(&Scope) -> Result<T, opsflow_asl::StatesError>) {
    let input = document(doc);
    let (ctx, vars) = (context(), vars(&input));
    assert_states_error(eval(&Scope::new(&input, &ctx, &vars)));
}

/// A reference path or JSONPath query (before the NUL) read from a document (after it).
pub fn path_query(data: &[u8]) {
    let (text, doc) = split(data);
    let Ok(text) = std::str::from_utf8(text) else { return };
    let input = document(doc);
    let Ok(path) = Path::parse(text) else { return };
    let _ = (path.text(), path.bracket_text(), path.is_root());
    let _ = path.select(&input);
    let (ctx, vars) = (context(), vars(&input));
    let scope = Scope::new(&input, &ctx, &vars);
    let _ = path.eval(&scope);
    assert_states_error(path.eval_required(&scope, "InputPath"));
    if let Some(segs) = path.reference_segments() {
        let _ = opsflow_asl::path::set_at(input.clone(), segs, json!({"r": 1}));
    }
    // A template holding the path as a `.$` field, as Parameters and ResultSelector do.
    if let Ok(template) = opsflow_asl::path::Template::compile(&json!({"v.$": text, "c": [1]})) {
        let _ = template.eval(&scope);
    }
}

/// An intrinsic function call (before the NUL) evaluated on a document (after it).
pub fn intrinsic(data: &[u8]) {
    let (text, doc) = split(data);
    let Ok(text) = std::str::from_utf8(text) else { return };
    if let Ok(call) = opsflow_asl::intrinsics::Intrinsic::parse(text) {
        on_document(doc, |scope| call.eval(scope));
    }
}

/// A JSONata state field (before the NUL: a `{% %}` expression or a JSON value holding them)
/// evaluated with `$states.input` and a variable read from the document (after it).
pub fn jsonata(data: &[u8]) {
    use opsflow_asl::jsonata::{Env, JTemplate};
    let (text, doc) = split(data);
    let Ok(text) = std::str::from_utf8(text) else { return };
    let field = json(text.as_bytes()).unwrap_or_else(|| Value::String(format!("{{%{text}%}}")));
    let Ok(template) = JTemplate::compile(&field) else { return };
    let input = document(doc);
    let states = json!({"input": input, "context": context()});
    // A thousandth of the engine's bounds: they are hit the same way, a thousand times sooner.
    let steps = opsflow_asl::jsonata::MAX_STEPS / 1000;
    let timeout = std::time::Duration::from_secs(opsflow_asl::jsonata::MAX_SECONDS) / 1000;
    let env = Env::new(states, [("x".to_string(), input.clone())], 1_796_000_000_000).with_bounds(steps, timeout);
    assert_states_error(template.eval(&env, "Output"));
}

/// A Choice rule (a JSON object, before the NUL) evaluated on a document (after it).
pub fn choice_rule(data: &[u8]) {
    let (rule, doc) = split(data);
    let Some(rule) = json(rule) else { return };
    if let Ok(rule) = opsflow_asl::choice::Rule::parse(&rule) {
        on_document(doc, |scope| rule.eval(scope));
    }
}

/// A Step Functions Local mock configuration: every test case of every state machine loads or
/// names the field, and every mocked state answers its invocations.
pub fn mock_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cases: Vec<(String, String, Vec<String>)> = match serde_json::from_str::<Value>(text) {
        Ok(v) => v
            .get("StateMachines")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .flat_map(|(machine, m)| {
                let states: Vec<String> = m
                    .get("TestCases")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|t| t.values().filter_map(Value::as_object).flat_map(|c| c.keys().cloned()))
                    .collect();
                let cases: Vec<String> = m
                    .get("TestCases")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|t| t.keys().cloned())
                    .collect();
                cases.into_iter().map(move |c| (machine.clone(), c, states.clone()))
            })
            .collect(),
        Err(_) => vec![(String::new(), "Case".into(), Vec::new())],
    };
    for (machine, case, states) in cases.into_iter().take(16) {
        match opsflow_asl::MockCase::parse(text, Some(&machine).filter(|m| !m.is_empty()).map(String::as_str), &case) {
            Ok(mock) => {
                for state in states.iter().filter(|s| mock.has(s)) {
                    for n in 0..3 {
                        let _ = mock.respond(state, n);
                    }
                }
            }
            Err(LoadError::Invalid { field, .. }) => assert!(!field.is_empty()),
            Err(LoadError::Json(_)) => {}
        }
    }
}

/// Command output: the file system size marker, and the outcome of an invocation (a JSON
/// `Invocation`, or the bytes as its output).
pub fn command_output(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = script::parse_fs_size(&text);
    let invocation = serde_json::from_str::<Invocation>(&text).unwrap_or_else(|_| {
        let (stdout, stderr) = text.split_at(text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap_or(0));
        Invocation {
            status: ["Success", "Failed", "TimedOut", "Cancelled", "InProgress", "Undeliverable"][data.len() % 6].into(),
            status_details: "Failed".into(),
            response_code: data.first().map_or(-1, |&b| i32::from(b) - 2),
            stdout: stdout.into(),
            stderr: stderr.into(),
            ..Invocation::default()
        }
    });
    let _ = script::parse_fs_size(&invocation.stdout);
    for max in [0, 1, 3, 64, opsflow_core::command::DEFAULT_TAIL_BYTES] {
        let tail = opsflow_core::tail(&invocation.stdout, &invocation.stderr, max);
        assert!(tail.len() <= max.max("…".len()), "a tail of {} bytes for at most {max}", tail.len());
        let _ = opsflow_core::command_outcome(&invocation, max);
    }
    if let Some(code) = data.first() {
        let _ = script::fs_script_exit_reason(i32::from(*code));
    }
}

/// The runbook runner's input (from schedules and operators): checked against the repository's
/// catalogue, it is refused naming a field, or becomes a run whose state stays small and
/// survives the JSON round trip through the state machine. The same bytes, read as a
/// procedure's outcome, are recorded as a final status; read as target results, they render
/// within SNS's limits.
pub fn runbook_input(data: &[u8]) {
    use opsflow_core::runbook::{catalogue::Catalogue, steps, Summary, TargetResult, TargetStatus};
    let v = document(data);
    let mut settings = steps::Settings::new("runs");
    settings.procedure_arns = [
        ("run-command", "arn:aws:states:eu-west-1:123456789012:stateMachine:rc"),
        ("http-check", "arn:aws:states:eu-west-1:123456789012:stateMachine:hc"),
    ]
    .into_iter()
    .map(|(k, a)| (k.to_string(), a.to_string()))
    .collect();
    settings.connections.insert(
        "healthz".into(),
        "arn:aws:events:eu-west-1:123456789012:connection/healthz/x".into(),
    );
    let catalogue = Catalogue::builtin();
    match steps::validate(
        &v,
        "arn:aws:states:eu-west-1:123456789012:execution:run-runbook:fuzz",
        "2026-12-06T00:00:00Z",
        &settings,
        &catalogue,
    ) {
        Ok(validated) => {
            let text = serde_json::to_string(&validated.run).expect("a run serializes");
            assert!(
                text.len() <= 64 * 1024,
                "a run of {} bytes would be copied into every target",
                text.len()
            );
            let back: steps::Run = serde_json::from_str(&text).expect("a run reads back");
            assert_eq!(back, validated.run);
        }
        Err(CoreError::InvalidInput { field, .. }) => assert!(!field.is_empty()),
        Err(e) => panic!("input refused with {} instead of InvalidInput: {e}", e.name()),
    }
    let (result, _) = steps::procedure_result(&v);
    assert_ne!(result.status, TargetStatus::Running, "an outcome is recorded as a final status");
    if let Ok(results) = serde_json::from_value::<Vec<TargetResult>>(v.clone()) {
        let p = Summary::new("e", "p", results).publication();
        assert!(
            p.subject.len() <= SNS_SUBJECT_MAX && p.subject.is_ascii() && !p.subject.contains('\n'),
            "{}",
            p.subject
        );
        let size = p.message.len() + p.attributes.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        assert!(size <= SNS_MESSAGE_MAX, "{size} bytes");
    }
}

/// A catalogue file: it loads, or is refused naming the file and a field; a loaded procedure
/// completes or refuses parameters naming the parameter.
pub fn runbook_catalogue(data: &[u8]) {
    use opsflow_core::runbook::catalogue::Catalogue;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let name = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("Name").and_then(Value::as_str).map(|n| format!("{n}.json")))
        .unwrap_or_else(|| "fuzz.json".to_string());
    match Catalogue::load(&[(&name, text)]) {
        Ok(c) => {
            for p in c.procedures() {
                match p.parameters(None) {
                    Ok(_) => {}
                    Err(CoreError::InvalidInput { field, .. }) => assert!(field.starts_with("Parameters."), "{field}"),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        Err(CoreError::InvalidInput { field, .. }) => assert!(field.starts_with(&name), "{field}"),
        Err(e) => panic!("a catalogue refused with {} instead of InvalidInput: {e}", e.name()),
    }
}
