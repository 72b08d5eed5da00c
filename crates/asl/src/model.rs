//! A state machine definition, parsed and validated once: every path, template, intrinsic
//! function and Choice rule is compiled here, and every `Next` is resolved to an index, so an
//! execution never parses text. Validation follows what AWS's CreateStateMachine rejects; every
//! error names the state and the field.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::choice::Rule;
use crate::error::{names, LoadError};
use crate::jsonata::{expression_body, JTemplate};
use crate::path::{Path, Seg, Template};

/// The query language of a state (`QueryLanguage`, inherited from the top level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    JsonPath,
    Jsonata,
}

/// An `Assign` block in either language.
#[derive(Debug, Clone)]
pub enum Assign {
    Path(Template),
    Jsonata(JTemplate),
}

/// A Choice rule: JSONPath comparison operators, or a JSONata `Condition`.
#[derive(Debug)]
pub enum Cond {
    Path(Rule),
    Jsonata(JTemplate),
}

/// A compiled state machine (the top level, a Parallel branch or a Map's item processor).
#[derive(Debug)]
pub struct StateMachine {
    pub start_at: usize,
    pub states: Vec<State>,
    pub timeout_seconds: Option<u64>,
    pub comment: Option<String>,
}

#[derive(Debug)]
pub struct State {
    pub name: Arc<str>,
    pub kind: Kind,
    pub lang: Lang,
    /// JSONata `Arguments` (Task, Parallel).
    pub arguments: Option<JTemplate>,
    /// JSONata `Output`.
    pub output: Option<JTemplate>,
    pub input_path: IoPath,
    pub output_path: IoPath,
    pub result_path: ResultPath,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub assign: Option<Assign>,
    pub transition: Transition,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    /// Whether anything in the state reads the context object (`$$`), so the engine keeps
    /// `$$.State` up to date only where it is read.
    pub uses_context: bool,
}

/// InputPath / OutputPath: absent means `$`, JSON null means `{}`.
#[derive(Debug, Clone)]
pub enum IoPath {
    Whole,
    Discard,
    Select(Path),
}

/// ResultPath: absent means `$` (replace), null means discard the result.
#[derive(Debug, Clone)]
pub enum ResultPath {
    Replace,
    Discard,
    At { segs: Vec<Seg>, text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Next(usize),
    End,
    /// Choice, Succeed and Fail decide themselves.
    None,
}

#[derive(Debug)]
pub enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task(Box<Task>),
    Choice {
        choices: Vec<ChoiceBranch>,
        default: Option<usize>,
    },
    Wait(Wait),
    Succeed,
    Fail(Fail),
    Parallel {
        branches: Vec<Arc<StateMachine>>,
    },
    Map(Box<MapState>),
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Pass { .. } => "Pass",
            Kind::Task(_) => "Task",
            Kind::Choice { .. } => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail(_) => "Fail",
            Kind::Parallel { .. } => "Parallel",
            Kind::Map(_) => "Map",
        }
    }
}

#[derive(Debug)]
pub struct Task {
    pub resource: String,
    /// The resource without `.sync` / `.waitForTaskToken`.
    pub base: String,
    pub wait_for_token: bool,
    pub target: Target,
    /// `resourceType` and `resource` of the Task events (`lambda`, `invoke`).
    pub resource_type: String,
    pub resource_name: String,
    pub timeout: Option<Seconds>,
    pub heartbeat: Option<Seconds>,
}

/// How a Task resource is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `arn:aws:lambda:...:function:NAME` (result is the function's output).
    LambdaArn(String),
    /// `arn:aws:states:::lambda:invoke` (result is the Invoke API response).
    LambdaInvoke,
    /// `arn:aws:states:::states:startExecution[.sync|.sync:2|.waitForTaskToken]`: a nested
    /// execution of a registered state machine.
    StartExecution(StartMode),
    /// `arn:aws:states:::http:invoke`: the HTTP Task.
    Http,
    Other,
}

/// How a Task waits for the execution it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Request-response (and `.waitForTaskToken`): the result is `{ExecutionArn, StartDate}`.
    Start,
    /// `.sync`: waits; the result is DescribeExecution's, `Input`/`Output` as JSON text.
    Sync,
    /// `.sync:2`: waits; the result is DescribeExecution's, `Input`/`Output` as JSON.
    Sync2,
}

impl Task {
    /// Everything the engine needs to know about `resource`, worked out once at load time.
    pub fn new(resource: String, timeout: Option<Seconds>, heartbeat: Option<Seconds>) -> Task {
        let (base, wait_for_token) = match resource.strip_suffix(".waitForTaskToken") {
            Some(base) => (base.to_string(), true),
            None => (
                resource.find(".sync").map_or(resource.as_str(), |i| &resource[..i]).to_string(),
                false,
            ),
        };
        let target = if base.starts_with("arn:aws:lambda:") && base.contains(":function:") {
            Target::LambdaArn(function_name(&base).to_string())
        } else if base == "arn:aws:states:::lambda:invoke" {
            Target::LambdaInvoke
        } else if base == "arn:aws:states:::http:invoke" {
            Target::Http
        } else if base == "arn:aws:states:::states:startExecution" {
            Target::StartExecution(if resource.ends_with(".sync:2") {
                StartMode::Sync2
            } else if resource.ends_with(".sync") {
                StartMode::Sync
            } else {
                StartMode::Start
            })
        } else {
            Target::Other
        };
        let (resource_type, resource_name) = match resource.strip_prefix("arn:aws:states:::") {
            // `states:startExecution.sync:2` is resourceType `states`, resource `startExecution.sync:2`.
            Some(rest) => match rest[..rest.find(".sync").unwrap_or(rest.len())].rfind(':') {
                Some(i) => (rest[..i].to_string(), rest[i + 1..].to_string()),
                None => (rest.to_string(), String::new()),
            },
            None => {
                let parts: Vec<&str> = resource.split(':').collect();
                (
                    parts.get(2).copied().unwrap_or("").to_string(),
                    parts[3.min(parts.len())..].join(":"),
                )
            }
        };
        Task {
            resource,
            base,
            wait_for_token,
            target,
            resource_type,
            resource_name,
            timeout,
            heartbeat,
        }
    }
}

/// Which of a Map's processor fields is set: `ItemProcessor`, or the legacy `Iterator`.
fn processor_field(obj: &Map<String, Value>) -> &'static str {
    if obj.contains_key("Iterator") && !obj.contains_key("ItemProcessor") {
        "Iterator"
    } else {
        "ItemProcessor"
    }
}

/// The function name in a FunctionName: a name, `name:alias`, `123:function:name` or an ARN.
pub fn function_name(f: &str) -> &str {
    if let Some(i) = f.find("function:") {
        let rest = &f[i + "function:".len()..];
        return rest.split(':').next().unwrap_or(rest);
    }
    f.split(':').next().unwrap_or(f)
}

/// A number given literally, by a path, or by a JSONata expression.
#[derive(Debug, Clone)]
pub enum Seconds {
    Fixed(u64),
    Path(Path),
    Jsonata(JTemplate),
}

#[derive(Debug)]
pub struct ChoiceBranch {
    pub rule: Cond,
    pub next: usize,
    pub assign: Option<Assign>,
    pub output: Option<JTemplate>,
}

#[derive(Debug)]
pub enum Wait {
    Seconds(u64),
    Timestamp(chrono::DateTime<chrono::Utc>),
    SecondsPath(Path),
    TimestampPath(Path),
    SecondsJsonata(JTemplate),
    TimestampJsonata(JTemplate),
}

#[derive(Debug)]
pub struct Fail {
    pub error: Option<StrOrPath>,
    pub cause: Option<StrOrPath>,
}

#[derive(Debug)]
pub enum StrOrPath {
    Str(String),
    Path(Path),
    Intrinsic(Box<crate::intrinsics::Intrinsic>),
    Jsonata(JTemplate),
}

#[derive(Debug)]
pub struct MapState {
    pub processor: Arc<StateMachine>,
    pub items_path: Option<Path>,
    /// JSONata `Items`.
    pub items: Option<JTemplate>,
    pub item_selector: Option<Assign>,
    pub max_concurrency: Option<Seconds>,
    pub tolerated_failure_count: Option<Seconds>,
    pub tolerated_failure_percentage: Option<Percentage>,
    /// Set for `ProcessorConfig.Mode: DISTRIBUTED`.
    pub distributed: Option<Box<Distributed>>,
}

/// A Distributed Map's own configuration.
#[derive(Debug, Clone)]
pub struct Distributed {
    /// `ProcessorConfig.ExecutionType`: `STANDARD` or `EXPRESS`.
    pub execution_type: String,
    /// `Label`, else the state name: names the Map Run and the child executions.
    pub label: Option<String>,
    pub reader: Option<ItemReader>,
    pub batcher: Option<ItemBatcher>,
    pub writer: Option<ResultWriter>,
}

/// `ItemReader`: where the items come from.
#[derive(Debug, Clone)]
pub struct ItemReader {
    /// `s3:getObject` (true) or `s3:listObjectsV2` (false).
    pub get_object: bool,
    /// `Parameters` / `Arguments`: `Bucket`, `Key` or `Prefix`.
    pub params: Assign,
    /// `ReaderConfig.InputType`: `JSON`, `JSONL`, `CSV`, `MANIFEST` (an S3 inventory; `s3:getObject` only).
    pub input_type: Option<String>,
    /// `ReaderConfig.ItemsPointer`: a JSON Pointer to the array inside a JSON object (`InputType` JSON).
    pub items_pointer: Option<String>,
    /// `CSVHeaderLocation` `GIVEN`: these headers; `FIRST_ROW` (default): None.
    pub csv_headers: Option<Vec<String>>,
    pub csv_delimiter: char,
    pub max_items: Option<Seconds>,
}

/// `ItemBatcher`.
#[derive(Debug, Clone)]
pub struct ItemBatcher {
    pub max_items: Option<Seconds>,
    pub max_bytes: Option<Seconds>,
    pub batch_input: Option<Assign>,
}

/// `ResultWriter`.
#[derive(Debug, Clone)]
pub struct ResultWriter {
    /// `Parameters` / `Arguments` (`Bucket`, `Prefix`) when the results are exported.
    pub params: Option<Assign>,
    /// `WriterConfig.Transformation`: `NONE`, `COMPACT` or `FLATTEN`.
    pub transformation: Option<String>,
    /// `WriterConfig.OutputType`: `JSON` or `JSONL`.
    pub output_type: String,
}

#[derive(Debug, Clone)]
pub enum Percentage {
    Fixed(f64),
    Path(Path),
    Jsonata(JTemplate),
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter_full: bool,
}

#[derive(Debug)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: usize,
    pub result_path: ResultPath,
    pub assign: Option<Assign>,
    /// JSONata `Output` (default: the error output).
    pub output: Option<JTemplate>,
}

/// Parses and validates a definition. All errors found are returned, each naming its state.
pub fn parse(text: &str) -> Result<StateMachine, Vec<LoadError>> {
    let v: Value = serde_json::from_str(text).map_err(|e| vec![LoadError::Json(e.to_string())])?;
    parse_value(&v)
}

pub fn parse_value(v: &Value) -> Result<StateMachine, Vec<LoadError>> {
    let top_lang = match v.get("QueryLanguage") {
        Some(q) if q == "JSONata" => Lang::Jsonata,
        _ => Lang::JsonPath,
    };
    let mut p = Parser {
        errors: Vec::new(),
        names: HashSet::new(),
        top_lang,
    };
    let sm = p.machine(v, "top level", true);
    match sm {
        Some(sm) if p.errors.is_empty() => Ok(sm),
        _ => {
            if p.errors.is_empty() {
                p.errors
                    .push(LoadError::invalid("top level", "States", "the definition could not be read"));
            }
            Err(p.errors)
        }
    }
}

struct Parser {
    errors: Vec<LoadError>,
    names: HashSet<String>,
    /// Every state inherits the top level's QueryLanguage unless it sets its own.
    top_lang: Lang,
}

/// Fields that exist only in JSONPath states.
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Result",
    "ItemsPath",
    "Iterator",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
    "ErrorPath",
    "CausePath",
];

/// Fields that exist only in JSONata states, by state type.
fn jsonata_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "Task" | "Parallel" => &["Arguments", "Output"],
        "Map" => &["Items", "Output"],
        "Pass" | "Choice" | "Wait" | "Succeed" => &["Output"],
        _ => &[],
    }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

fn allowed_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "Pass" => &[
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultPath",
            "Result",
            "Next",
            "End",
            "Assign",
        ],
        "Task" => &[
            "Resource",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Next",
            "End",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
        "Wait" => &[
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Next",
            "End",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Branches",
            "Next",
            "End",
            "Retry",
            "Catch",
            "Assign",
        ],
        "Map" => &[
            "InputPath",
            "OutputPath",
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "Iterator",
            "ItemProcessor",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ResultPath",
            "ResultSelector",
            "Retry",
            "Catch",
            "Next",
            "End",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "Label",
            "Assign",
        ],
        _ => &[],
    }
}

fn loc(name: &str) -> String {
    format!("State '{name}'")
}

impl Parser {
    fn err(&mut self, location: &str, field: &str, msg: impl Into<String>) {
        self.errors.push(LoadError::invalid(location, field, msg));
    }

    fn machine(&mut self, v: &Value, location: &str, top: bool) -> Option<StateMachine> {
        let Some(obj) = v.as_object() else {
            self.err(location, "States", "a state machine must be a JSON object");
            return None;
        };
        let mut allowed = vec!["StartAt", "States", "Comment"];
        if top {
            allowed.extend(["Version", "TimeoutSeconds", "QueryLanguage"]);
        } else {
            allowed.push("ProcessorConfig");
        }
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                self.err(location, k, "this field is not supported here");
            }
        }
        if let Some(q) = obj.get("QueryLanguage") {
            if q != "JSONPath" && q != "JSONata" {
                self.err(
                    location,
                    "QueryLanguage",
                    format!("{q} is not a query language; use \"JSONPath\" or \"JSONata\""),
                );
            }
        }
        let timeout_seconds = match obj.get("TimeoutSeconds") {
            None => None,
            Some(t) => match t.as_u64() {
                Some(n) if n > 0 && n <= 99_999_999 => Some(n),
                _ => {
                    self.err(location, "TimeoutSeconds", "must be a positive integer (at most 99999999)");
                    None
                }
            },
        };
        let Some(states) = obj.get("States").and_then(Value::as_object) else {
            self.err(location, "States", "is required and must be an object of states");
            return None;
        };
        if states.is_empty() {
            self.err(location, "States", "must contain at least one state");
            return None;
        }
        let index: HashMap<&str, usize> = states.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let start_at = match obj.get("StartAt").and_then(Value::as_str) {
            None => {
                self.err(location, "StartAt", "is required and must be a string");
                None
            }
            Some(s) => match index.get(s) {
                Some(i) => Some(*i),
                None => {
                    self.err(location, "StartAt", format!("names the state '{s}', which does not exist"));
                    None
                }
            },
        };
        let mut out = Vec::with_capacity(states.len());
        for (name, sv) in states {
            if let Some(st) = self.state(name, sv, &index) {
                out.push(st);
            }
        }
        if out.len() != states.len() {
            return None;
        }
        let start_at = start_at?;
        if !out
            .iter()
            .any(|st| matches!(st.kind, Kind::Succeed | Kind::Fail(_)) || st.transition == Transition::End)
        {
            self.err(
                location,
                "States",
                "the workflow has no terminal state (a Succeed or Fail state, or one with End: true)",
            );
        }
        // Reachability from StartAt.
        let mut seen = vec![false; out.len()];
        let mut stack = vec![start_at];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let st = &out[i];
            if let Transition::Next(n) = st.transition {
                stack.push(n);
            }
            stack.extend(st.catch.iter().map(|c| c.next));
            if let Kind::Choice { choices, default } = &st.kind {
                stack.extend(choices.iter().map(|c| c.next));
                stack.extend(default.iter().copied());
            }
        }
        for (i, st) in out.iter().enumerate() {
            if !seen[i] {
                self.err(
                    &loc(&st.name),
                    "Type",
                    format!("the state is not reachable from StartAt ('{}')", out[start_at].name),
                );
            }
        }
        Some(StateMachine {
            start_at,
            states: out,
            timeout_seconds,
            comment: obj.get("Comment").and_then(Value::as_str).map(String::from),
        })
    }

    fn next(&mut self, l: &str, field: &str, v: Option<&Value>, index: &HashMap<&str, usize>) -> Option<usize> {
        match v.and_then(Value::as_str) {
            None => {
                self.err(l, field, "is required and must be a state name");
                None
            }
            Some(n) => match index.get(n) {
                Some(i) => Some(*i),
                None => {
                    self.err(l, field, format!("names the state '{n}', which does not exist in this scope"));
                    None
                }
            },
        }
    }

    fn io_path(&mut self, l: &str, field: &str, v: Option<&Value>) -> IoPath {
        match v {
            None => IoPath::Whole,
            Some(Value::Null) => IoPath::Discard,
            Some(Value::String(s)) => match Path::parse(s) {
                Ok(p) if p.is_root() => IoPath::Whole,
                Ok(p) => IoPath::Select(p),
                Err(e) => {
                    self.err(l, field, e);
                    IoPath::Whole
                }
            },
            Some(_) => {
                self.err(l, field, "must be a JSONPath string or null");
                IoPath::Whole
            }
        }
    }

    fn result_path(&mut self, l: &str, field: &str, v: Option<&Value>) -> ResultPath {
        match v {
            None => ResultPath::Replace,
            Some(Value::Null) => ResultPath::Discard,
            Some(Value::String(s)) => match Path::parse(s) {
                Ok(p) => match p.reference_segments() {
                    Some([]) => ResultPath::Replace,
                    Some(segs) => ResultPath::At {
                        segs: segs.to_vec(),
                        text: s.clone(),
                    },
                    None => {
                        self.err(l, field, format!("'{s}' is not a reference path: it must select a single node of the input ($.a.b, $['a'], $.a[0]), without wildcards, filters, $$ or variables"));
                        ResultPath::Replace
                    }
                },
                Err(e) => {
                    self.err(l, field, e);
                    ResultPath::Replace
                }
            },
            Some(_) => {
                self.err(l, field, "must be a reference path string or null");
                ResultPath::Replace
            }
        }
    }

    fn template(&mut self, l: &str, field: &str, v: Option<&Value>) -> Option<Template> {
        let v = v?;
        if !v.is_object() {
            self.err(l, field, "must be a JSON object (a payload template)");
            return None;
        }
        match Template::compile(v) {
            Ok(t) => Some(t),
            Err((at, msg)) => {
                self.err(l, &format!("{field}.{at}"), msg);
                None
            }
        }
    }

    fn jtemplate(&mut self, l: &str, field: &str, v: Option<&Value>) -> Option<JTemplate> {
        match JTemplate::compile(v?) {
            Ok(t) => Some(t),
            Err((at, msg)) => {
                self.err(
                    l,
                    &if at.is_empty() {
                        field.to_string()
                    } else {
                        format!("{field}.{at}")
                    },
                    msg,
                );
                None
            }
        }
    }

    fn assign(&mut self, l: &str, field: &str, v: Option<&Value>, lang: Lang) -> Option<Assign> {
        let obj = v?;
        let Some(m) = obj.as_object() else {
            self.err(l, field, "must be a JSON object of variable names and values");
            return None;
        };
        {
            for k in m.keys() {
                let name = if lang == Lang::JsonPath {
                    k.strip_suffix(".$").unwrap_or(k)
                } else {
                    k.as_str()
                };
                let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && name.len() <= 80;
                if !ok {
                    self.err(
                        l,
                        &format!("{field}.{k}"),
                        "a variable name must start with a letter or '_' and hold only letters, digits and '_' (at most 80)",
                    );
                } else if name == "states" {
                    self.err(l, &format!("{field}.{k}"), "'states' is a reserved variable name");
                }
            }
        }
        match lang {
            Lang::JsonPath => self.template(l, field, Some(obj)).map(Assign::Path),
            Lang::Jsonata => self.jtemplate(l, field, Some(obj)).map(Assign::Jsonata),
        }
    }

    /// A JSONata number field: a literal or a `{% %}` expression.
    fn jsonata_number(&mut self, l: &str, obj: &Map<String, Value>, field: &str) -> Option<Option<JTemplate>> {
        match obj.get(field) {
            Some(Value::String(s)) => {
                if expression_body(s).is_none() {
                    self.err(l, field, "must be a number or a JSONata expression \"{% ... %}\"");
                    return Some(None);
                }
                Some(self.jtemplate(l, field, obj.get(field)))
            }
            _ => None,
        }
    }

    fn seconds(&mut self, l: &str, obj: &Map<String, Value>, field: &str, min: u64) -> Option<Seconds> {
        if let Some(t) = self.jsonata_number(l, obj, field) {
            return t.map(Seconds::Jsonata);
        }
        let path_field = format!("{field}Path");
        match (obj.get(field), obj.get(&path_field)) {
            (Some(_), Some(_)) => {
                self.err(l, field, format!("'{field}' and '{path_field}' cannot both be set"));
                None
            }
            (Some(v), None) => match v.as_u64() {
                Some(n) if n >= min && n <= 99_999_999 => Some(Seconds::Fixed(n)),
                _ => {
                    self.err(l, field, format!("must be an integer between {min} and 99999999"));
                    None
                }
            },
            (None, Some(v)) => match v.as_str().map(Path::parse) {
                Some(Ok(p)) => Some(Seconds::Path(p)),
                Some(Err(e)) => {
                    self.err(l, &path_field, e);
                    None
                }
                None => {
                    self.err(l, &path_field, "must be a JSONPath string");
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// The Distributed Map fields, checked against `ProcessorConfig.Mode` (one rule for
    /// `ItemProcessor` and the legacy `Iterator`).
    fn distributed(&mut self, l: &str, obj: &Map<String, Value>, lang: Lang) -> Option<Box<Distributed>> {
        let field = processor_field(obj);
        let config = obj.get(field).and_then(|p| p.get("ProcessorConfig"));
        let mode = config.and_then(|c| c.get("Mode")).and_then(Value::as_str).unwrap_or("INLINE");
        let params_field = if lang == Lang::Jsonata { "Arguments" } else { "Parameters" };
        match mode {
            "INLINE" => {
                for f in ["ItemReader", "ItemBatcher", "ResultWriter", "Label"] {
                    if obj.contains_key(f) {
                        self.err(l, f, "is only for a Distributed Map (ProcessorConfig.Mode DISTRIBUTED)");
                    }
                }
                if let Some(t) = config.and_then(|c| c.get("ExecutionType")) {
                    self.err(
                        l,
                        &format!("{field}.ProcessorConfig.ExecutionType"),
                        format!("{t} is only for Mode DISTRIBUTED"),
                    );
                }
                return None;
            }
            "DISTRIBUTED" => {}
            other => {
                self.err(
                    l,
                    &format!("{field}.ProcessorConfig.Mode"),
                    format!("'{other}' is not INLINE or DISTRIBUTED"),
                );
                return None;
            }
        }
        let execution_type = match config.and_then(|c| c.get("ExecutionType")).and_then(Value::as_str) {
            Some(t @ ("STANDARD" | "EXPRESS")) => t.to_string(),
            _ => {
                self.err(
                    l,
                    &format!("{field}.ProcessorConfig.ExecutionType"),
                    "is required for Mode DISTRIBUTED: STANDARD or EXPRESS",
                );
                "STANDARD".to_string()
            }
        };
        if let Some(Value::Number(n)) = obj.get("MaxConcurrency") {
            if n.as_u64().is_some_and(|n| n > 10_000) {
                self.err(l, "MaxConcurrency", "a Distributed Map runs at most 10000 child executions at once");
            }
        }
        let label = match obj.get("Label") {
            None => None,
            Some(Value::String(s))
                if s.len() <= 40
                    && !s
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)) =>
            {
                Some(s.clone())
            }
            Some(_) => {
                self.err(
                    l,
                    "Label",
                    "must be a string of at most 40 characters without whitespace or special characters",
                );
                None
            }
        };
        let sub = |p: &mut Parser, v: Option<&Value>, f: &str| -> Option<Assign> {
            match lang {
                Lang::Jsonata => p.jtemplate(l, f, v).map(Assign::Jsonata),
                Lang::JsonPath => p.template(l, f, v).map(Assign::Path),
            }
        };
        let reader = match obj.get("ItemReader") {
            None => None,
            Some(Value::Object(r)) => {
                let resource = r.get("Resource").and_then(Value::as_str).unwrap_or("");
                let get_object = match resource {
                    "arn:aws:states:::s3:getObject" => true,
                    "arn:aws:states:::s3:listObjectsV2" => false,
                    _ => {
                        self.err(
                            l,
                            "ItemReader.Resource",
                            "must be arn:aws:states:::s3:getObject or arn:aws:states:::s3:listObjectsV2",
                        );
                        true
                    }
                };
                let params = sub(self, r.get(params_field), &format!("ItemReader.{params_field}"));
                let empty = Map::new();
                let rc = r.get("ReaderConfig").and_then(Value::as_object).unwrap_or(&empty);
                let input_type = rc.get("InputType").and_then(Value::as_str).map(String::from);
                match (get_object, input_type.as_deref()) {
                    (true, Some("JSON" | "JSONL" | "CSV" | "MANIFEST")) | (false, None) => {}
                    (true, Some("PARQUET")) => self.err(
                        l,
                        "ItemReader.ReaderConfig.InputType",
                        "PARQUET is not supported by this engine; use JSON, JSONL, CSV or MANIFEST",
                    ),
                    (true, _) => self.err(
                        l,
                        "ItemReader.ReaderConfig.InputType",
                        "is required for s3:getObject: JSON, JSONL, CSV or MANIFEST",
                    ),
                    (false, Some(_)) => self.err(l, "ItemReader.ReaderConfig.InputType", "is not used with s3:listObjectsV2"),
                }
                match rc.get("ManifestType").and_then(Value::as_str) {
                    None | Some("S3_INVENTORY") => {}
                    Some(o) => self.err(
                        l,
                        "ItemReader.ReaderConfig.ManifestType",
                        format!("'{o}' is not supported by this engine; only S3_INVENTORY"),
                    ),
                }
                let items_pointer = match rc.get("ItemsPointer") {
                    None => None,
                    Some(Value::String(p)) if p.is_empty() || p.starts_with('/') => Some(p.clone()),
                    Some(_) => {
                        self.err(
                            l,
                            "ItemReader.ReaderConfig.ItemsPointer",
                            "must be a JSON Pointer such as \"/data/items\"",
                        );
                        None
                    }
                };
                let csv_headers = match rc.get("CSVHeaderLocation").and_then(Value::as_str) {
                    None | Some("FIRST_ROW") => None,
                    Some("GIVEN") => match rc.get("CSVHeaders").and_then(Value::as_array) {
                        Some(h) if h.iter().all(Value::is_string) => Some(h.iter().filter_map(|x| x.as_str().map(String::from)).collect()),
                        _ => {
                            self.err(
                                l,
                                "ItemReader.ReaderConfig.CSVHeaders",
                                "is required with CSVHeaderLocation GIVEN: an array of strings",
                            );
                            None
                        }
                    },
                    Some(o) => {
                        self.err(
                            l,
                            "ItemReader.ReaderConfig.CSVHeaderLocation",
                            format!("'{o}' is not FIRST_ROW or GIVEN"),
                        );
                        None
                    }
                };
                let csv_delimiter = match rc.get("CSVDelimiter").and_then(Value::as_str) {
                    None | Some("COMMA") => ',',
                    Some("PIPE") => '|',
                    Some("SEMICOLON") => ';',
                    Some("SPACE") => ' ',
                    Some("TAB") => '\t',
                    Some(o) => {
                        self.err(
                            l,
                            "ItemReader.ReaderConfig.CSVDelimiter",
                            format!("'{o}' is not COMMA, PIPE, SEMICOLON, SPACE or TAB"),
                        );
                        ','
                    }
                };
                let max_items = self.seconds(l, rc, "MaxItems", 0);
                params.map(|params| ItemReader {
                    get_object,
                    params,
                    input_type,
                    items_pointer,
                    csv_headers,
                    csv_delimiter,
                    max_items,
                })
            }
            Some(_) => {
                self.err(l, "ItemReader", "must be a JSON object");
                None
            }
        };
        let batcher = match obj.get("ItemBatcher") {
            None => None,
            Some(Value::Object(b)) => {
                let max_items = self.seconds(l, b, "MaxItemsPerBatch", 1);
                let max_bytes = self.seconds(l, b, "MaxInputBytesPerBatch", 1);
                if max_items.is_none() && max_bytes.is_none() {
                    self.err(l, "ItemBatcher", "needs MaxItemsPerBatch(Path) or MaxInputBytesPerBatch(Path)");
                }
                let batch_input = b.get("BatchInput").and_then(|v| sub(self, Some(v), "ItemBatcher.BatchInput"));
                Some(ItemBatcher {
                    max_items,
                    max_bytes,
                    batch_input,
                })
            }
            Some(_) => {
                self.err(l, "ItemBatcher", "must be a JSON object");
                None
            }
        };
        let writer = match obj.get("ResultWriter") {
            None => None,
            Some(Value::Object(w)) => {
                let params = match w.get("Resource").and_then(Value::as_str) {
                    Some("arn:aws:states:::s3:putObject") => sub(self, w.get(params_field), &format!("ResultWriter.{params_field}")),
                    Some(_) => {
                        self.err(l, "ResultWriter.Resource", "must be arn:aws:states:::s3:putObject");
                        None
                    }
                    None => None,
                };
                let wc = w.get("WriterConfig");
                if params.is_none() && wc.is_none() {
                    self.err(l, "ResultWriter", "needs Resource and Parameters, WriterConfig, or both");
                }
                let transformation = match wc.and_then(|c| c.get("Transformation")).and_then(Value::as_str) {
                    None => None,
                    Some(t @ ("NONE" | "COMPACT" | "FLATTEN")) => Some(t.to_string()),
                    Some(o) => {
                        self.err(
                            l,
                            "ResultWriter.WriterConfig.Transformation",
                            format!("'{o}' is not NONE, COMPACT or FLATTEN"),
                        );
                        None
                    }
                };
                let output_type = match wc.and_then(|c| c.get("OutputType")).and_then(Value::as_str) {
                    None | Some("JSON") => "JSON".to_string(),
                    Some("JSONL") => "JSONL".to_string(),
                    Some(o) => {
                        self.err(l, "ResultWriter.WriterConfig.OutputType", format!("'{o}' is not JSON or JSONL"));
                        "JSON".to_string()
                    }
                };
                Some(ResultWriter {
                    params,
                    transformation,
                    output_type,
                })
            }
            Some(_) => {
                self.err(l, "ResultWriter", "must be a JSON object");
                None
            }
        };
        Some(Box::new(Distributed {
            execution_type,
            label,
            reader,
            batcher,
            writer,
        }))
    }

    fn error_equals(&mut self, l: &str, field: &str, v: Option<&Value>) -> Vec<String> {
        let Some(arr) = v.and_then(Value::as_array) else {
            self.err(
                l,
                &format!("{field}.ErrorEquals"),
                "is required and must be a non-empty array of error names",
            );
            return vec![];
        };
        if arr.is_empty() {
            self.err(l, &format!("{field}.ErrorEquals"), "must not be empty");
        }
        let names: Vec<String> = arr.iter().filter_map(|e| e.as_str().map(String::from)).collect();
        if names.len() != arr.len() {
            self.err(l, &format!("{field}.ErrorEquals"), "must hold only strings");
        }
        if names.iter().any(|n| n == names::ALL) && names.len() > 1 {
            self.err(l, &format!("{field}.ErrorEquals"), "States.ALL must appear alone in ErrorEquals");
        }
        names
    }

    fn retriers(&mut self, l: &str, v: Option<&Value>) -> Vec<Retrier> {
        let Some(v) = v else { return vec![] };
        let Some(arr) = v.as_array() else {
            self.err(l, "Retry", "must be an array of retriers");
            return vec![];
        };
        let mut out = Vec::new();
        for (i, r) in arr.iter().enumerate() {
            let f = format!("Retry[{i}]");
            let Some(o) = r.as_object() else {
                self.err(l, &f, "must be an object");
                continue;
            };
            for k in o.keys() {
                if ![
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ]
                .contains(&k.as_str())
                {
                    self.err(l, &format!("{f}.{k}"), "this field is not supported in a retrier");
                }
            }
            let error_equals = self.error_equals(l, &f, o.get("ErrorEquals"));
            if error_equals.iter().any(|e| e == names::ALL) && i + 1 != arr.len() {
                self.err(l, &format!("{f}.ErrorEquals"), "a retrier with States.ALL must be the last retrier");
            }
            let interval_seconds = match o.get("IntervalSeconds") {
                None => 1.0,
                Some(x) => match x.as_u64() {
                    Some(n) if (1..=99_999_999).contains(&n) => n as f64,
                    _ => {
                        self.err(l, &format!("{f}.IntervalSeconds"), "must be an integer between 1 and 99999999");
                        1.0
                    }
                },
            };
            let max_attempts = match o.get("MaxAttempts") {
                None => 3,
                Some(x) => match x.as_u64() {
                    Some(n) if n <= 99_999_999 => n as u32,
                    _ => {
                        self.err(l, &format!("{f}.MaxAttempts"), "must be an integer between 0 and 99999999");
                        3
                    }
                },
            };
            let backoff_rate = match o.get("BackoffRate") {
                None => 2.0,
                Some(x) => match x.as_f64() {
                    Some(n) if n >= 1.0 => n,
                    _ => {
                        self.err(l, &format!("{f}.BackoffRate"), "must be a number greater than or equal to 1.0");
                        2.0
                    }
                },
            };
            let max_delay_seconds = match o.get("MaxDelaySeconds") {
                None => None,
                Some(x) => match x.as_u64() {
                    Some(n) if (1..=31_622_400).contains(&n) => Some(n as f64),
                    _ => {
                        self.err(l, &format!("{f}.MaxDelaySeconds"), "must be an integer between 1 and 31622400");
                        None
                    }
                },
            };
            let jitter_full = match o.get("JitterStrategy") {
                None => false,
                Some(x) if x == "FULL" => true,
                Some(x) if x == "NONE" => false,
                Some(_) => {
                    self.err(l, &format!("{f}.JitterStrategy"), "must be \"FULL\" or \"NONE\"");
                    false
                }
            };
            out.push(Retrier {
                error_equals,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds,
                jitter_full,
            });
        }
        out
    }

    fn catchers(&mut self, l: &str, v: Option<&Value>, index: &HashMap<&str, usize>, lang: Lang) -> Vec<Catcher> {
        let Some(v) = v else { return vec![] };
        let Some(arr) = v.as_array() else {
            self.err(l, "Catch", "must be an array of catchers");
            return vec![];
        };
        let mut out = Vec::new();
        for (i, c) in arr.iter().enumerate() {
            let f = format!("Catch[{i}]");
            let Some(o) = c.as_object() else {
                self.err(l, &f, "must be an object");
                continue;
            };
            let own = if lang == Lang::JsonPath { "ResultPath" } else { "Output" };
            for k in o.keys() {
                if !["ErrorEquals", "Next", own, "Assign", "Comment"].contains(&k.as_str()) {
                    self.err(l, &format!("{f}.{k}"), "this field is not supported in a catcher");
                }
            }
            let error_equals = self.error_equals(l, &f, o.get("ErrorEquals"));
            if error_equals.iter().any(|e| e == names::ALL) && i + 1 != arr.len() {
                self.err(l, &format!("{f}.ErrorEquals"), "a catcher with States.ALL must be the last catcher");
            }
            let next = self.next(l, &format!("{f}.Next"), o.get("Next"), index);
            let result_path = self.result_path(l, &format!("{f}.ResultPath"), o.get("ResultPath"));
            let assign = self.assign(l, &format!("{f}.Assign"), o.get("Assign"), lang);
            let output = self.jtemplate(l, &format!("{f}.Output"), o.get("Output"));
            if let Some(next) = next {
                out.push(Catcher {
                    error_equals,
                    next,
                    result_path,
                    assign,
                    output,
                });
            }
        }
        out
    }

    /// A JSONata Choice rule: `Condition` (a `{% %}` expression or a boolean), Next, Assign, Output.
    fn jsonata_rule(&mut self, l: &str, f: &str, c: &Value) -> Option<Cond> {
        let Some(o) = c.as_object() else {
            self.err(l, f, "must be an object");
            return None;
        };
        for k in o.keys() {
            if !["Condition", "Next", "Assign", "Output", "Comment"].contains(&k.as_str()) {
                self.err(
                    l,
                    &format!("{f}.{k}"),
                    "this field is not supported in a JSONata choice rule (use Condition)",
                );
            }
        }
        match o.get("Condition") {
            Some(Value::Bool(_)) => Some(Cond::Jsonata(JTemplate::Const(o["Condition"].clone()))),
            Some(Value::String(s)) if expression_body(s).is_some() => {
                self.jtemplate(l, &format!("{f}.Condition"), o.get("Condition")).map(Cond::Jsonata)
            }
            _ => {
                self.err(
                    l,
                    &format!("{f}.Condition"),
                    "is required and must be a JSONata expression \"{% ... %}\" or a boolean",
                );
                None
            }
        }
    }

    fn str_or_path(&mut self, l: &str, obj: &Map<String, Value>, field: &str) -> Option<StrOrPath> {
        if let Some(Value::String(s)) = obj.get(field) {
            if expression_body(s).is_some() {
                return self.jtemplate(l, field, obj.get(field)).map(StrOrPath::Jsonata);
            }
        }
        let pf = format!("{field}Path");
        match (obj.get(field), obj.get(&pf)) {
            (Some(_), Some(_)) => {
                self.err(l, field, format!("'{field}' and '{pf}' cannot both be set"));
                None
            }
            (Some(Value::String(s)), None) => Some(StrOrPath::Str(s.clone())),
            (Some(_), None) => {
                self.err(l, field, "must be a string");
                None
            }
            (None, Some(Value::String(s))) => {
                // AWS: a reference path, or one of seven intrinsic functions.
                const ALLOWED: [&str; 7] = [
                    "States.Format(",
                    "States.JsonToString(",
                    "States.ArrayGetItem(",
                    "States.Base64Encode(",
                    "States.Base64Decode(",
                    "States.Hash(",
                    "States.UUID(",
                ];
                let r = if s.starts_with("States.") {
                    if ALLOWED.iter().any(|f| s.starts_with(f)) {
                        crate::intrinsics::Intrinsic::parse(s).map(|i| StrOrPath::Intrinsic(Box::new(i)))
                    } else {
                        Err(format!("only States.Format, JsonToString, ArrayGetItem, Base64Encode, Base64Decode, Hash and UUID may be used here, not '{s}'"))
                    }
                } else {
                    Path::parse(s).and_then(|p| {
                        if p.is_reference() {
                            Ok(StrOrPath::Path(p))
                        } else {
                            Err(format!("'{s}' must be a reference path (no wildcards, filters or slices)"))
                        }
                    })
                };
                match r {
                    Ok(x) => Some(x),
                    Err(e) => {
                        self.err(l, &pf, e);
                        None
                    }
                }
            }
            (None, Some(_)) => {
                self.err(l, &pf, "must be a JSONPath or an intrinsic function string");
                None
            }
            (None, None) => None,
        }
    }

    fn state(&mut self, name: &str, v: &Value, index: &HashMap<&str, usize>) -> Option<State> {
        let l = loc(name);
        let l = l.as_str();
        if name.chars().count() > 80 {
            self.err(l, "Name", "state names must be at most 80 characters long");
        }
        if !self.names.insert(name.to_string()) {
            self.err(
                l,
                "Name",
                "state names must be unique within the whole state machine, including Parallel branches and Map processors",
            );
        }
        let Some(obj) = v.as_object() else {
            self.err(l, "Type", "a state must be a JSON object");
            return None;
        };
        let Some(ty) = obj.get("Type").and_then(Value::as_str) else {
            self.err(l, "Type", "is required");
            return None;
        };
        let lang = match obj.get("QueryLanguage") {
            None => self.top_lang,
            Some(q) if q == "JSONata" => Lang::Jsonata,
            Some(q) if q == "JSONPath" => {
                if self.top_lang == Lang::Jsonata {
                    self.err(
                        l,
                        "QueryLanguage",
                        "a JSONPath state cannot be used in a state machine whose QueryLanguage is JSONata",
                    );
                }
                Lang::JsonPath
            }
            Some(q) => {
                self.err(
                    l,
                    "QueryLanguage",
                    format!("{q} is not a query language; use \"JSONPath\" or \"JSONata\""),
                );
                self.top_lang
            }
        };
        let allowed: Vec<&str> = match lang {
            Lang::JsonPath => allowed_fields(ty).to_vec(),
            Lang::Jsonata => allowed_fields(ty)
                .iter()
                .copied()
                .filter(|f| !JSONPATH_ONLY.contains(f))
                .chain(jsonata_fields(ty).iter().copied())
                .collect(),
        };
        if allowed.is_empty() {
            self.err(
                l,
                "Type",
                format!("'{ty}' is not a state type (Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map)"),
            );
            return None;
        }
        for k in obj.keys() {
            if !COMMON.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
                let why = match lang {
                    Lang::Jsonata if JSONPATH_ONLY.contains(&k.as_str()) => {
                        format!("this JSONPath field is not supported in a JSONata {ty} state")
                    }
                    Lang::JsonPath if jsonata_fields(ty).contains(&k.as_str()) => {
                        format!("this JSONata field is not supported in a JSONPath {ty} state")
                    }
                    _ => format!("this field is not supported in a {ty} state"),
                };
                self.err(l, k, why);
            }
        }
        let transition = match ty {
            "Choice" | "Succeed" | "Fail" => Transition::None,
            _ => match (obj.get("Next"), obj.get("End")) {
                (Some(_), Some(_)) => {
                    self.err(l, "End", "'Next' and 'End' cannot both be set");
                    Transition::End
                }
                (Some(n), None) => match self.next(l, "Next", Some(n), index) {
                    Some(i) => Transition::Next(i),
                    None => Transition::End,
                },
                (None, Some(Value::Bool(true))) => Transition::End,
                (None, Some(_)) => {
                    self.err(l, "End", "must be true (or use 'Next')");
                    Transition::End
                }
                (None, None) => {
                    self.err(l, "Next", "a non-terminal state needs either 'Next' or 'End: true'");
                    Transition::End
                }
            },
        };
        let input_path = self.io_path(l, "InputPath", obj.get("InputPath"));
        let output_path = self.io_path(l, "OutputPath", obj.get("OutputPath"));
        let result_path = self.result_path(l, "ResultPath", obj.get("ResultPath"));
        let parameters = if ty == "Map" {
            None
        } else {
            self.template(l, "Parameters", obj.get("Parameters"))
        };
        let result_selector = self.template(l, "ResultSelector", obj.get("ResultSelector"));
        let assign = self.assign(l, "Assign", obj.get("Assign"), lang);
        let arguments = self.jtemplate(l, "Arguments", obj.get("Arguments"));
        let output = self.jtemplate(l, "Output", obj.get("Output"));
        let retry = self.retriers(l, obj.get("Retry"));
        let catch = self.catchers(l, obj.get("Catch"), index, lang);

        let kind = match ty {
            "Pass" => Kind::Pass {
                result: obj.get("Result").cloned(),
            },
            "Succeed" => Kind::Succeed,
            "Fail" => Kind::Fail(Fail {
                error: self.str_or_path(l, obj, "Error"),
                cause: self.str_or_path(l, obj, "Cause"),
            }),
            "Task" => {
                let resource = match obj.get("Resource").and_then(Value::as_str) {
                    Some(r) if r.starts_with("arn:") => r.to_string(),
                    Some(r) => {
                        self.err(l, "Resource", format!("'{r}' is not an ARN"));
                        r.to_string()
                    }
                    None => {
                        self.err(l, "Resource", "is required and must be an ARN string");
                        String::new()
                    }
                };
                let timeout = self.seconds(l, obj, "TimeoutSeconds", 1);
                let heartbeat = self.seconds(l, obj, "HeartbeatSeconds", 1);
                if let (Some(Seconds::Fixed(t)), Some(Seconds::Fixed(h))) = (&timeout, &heartbeat) {
                    if h >= t {
                        self.err(l, "HeartbeatSeconds", "must be smaller than TimeoutSeconds");
                    }
                }
                Kind::Task(Box::new(Task::new(resource, timeout, heartbeat)))
            }
            "Choice" => {
                let mut choices = Vec::new();
                match obj.get("Choices").and_then(Value::as_array) {
                    Some(arr) if !arr.is_empty() => {
                        for (i, c) in arr.iter().enumerate() {
                            let f = format!("Choices[{i}]");
                            let next = self.next(l, &format!("{f}.Next"), c.get("Next"), index);
                            let assign = self.assign(l, &format!("{f}.Assign"), c.get("Assign"), lang);
                            let rule = match lang {
                                Lang::JsonPath => match Rule::parse(c) {
                                    Ok(rule) => Some(Cond::Path(rule)),
                                    Err((field, msg)) => {
                                        self.err(l, &format!("{f}.{field}"), msg);
                                        None
                                    }
                                },
                                Lang::Jsonata => self.jsonata_rule(l, &f, c),
                            };
                            let output = if lang == Lang::Jsonata {
                                self.jtemplate(l, &format!("{f}.Output"), c.get("Output"))
                            } else {
                                None
                            };
                            if let (Some(rule), Some(next)) = (rule, next) {
                                choices.push(ChoiceBranch {
                                    rule,
                                    next,
                                    assign,
                                    output,
                                });
                            }
                        }
                    }
                    _ => self.err(l, "Choices", "is required and must be a non-empty array of choice rules"),
                }
                let default = obj.get("Default").and_then(|d| self.next(l, "Default", Some(d), index));
                Kind::Choice { choices, default }
            }
            "Wait" if lang == Lang::Jsonata => {
                let w = match (obj.get("Seconds"), obj.get("Timestamp")) {
                    (Some(v), None) => match v {
                        Value::String(_) => self.jsonata_number(l, obj, "Seconds").flatten().map(Wait::SecondsJsonata),
                        _ => v.as_u64().filter(|n| *n <= 99_999_999).map(Wait::Seconds),
                    },
                    (None, Some(Value::String(t))) if expression_body(t).is_some() => {
                        self.jtemplate(l, "Timestamp", Some(&obj["Timestamp"])).map(Wait::TimestampJsonata)
                    }
                    (None, Some(v)) => v.as_str().and_then(crate::time::parse_timestamp).map(Wait::Timestamp),
                    _ => {
                        self.err(l, "Seconds", "exactly one of 'Seconds' or 'Timestamp' must be set");
                        return None;
                    }
                };
                match w {
                    Some(w) => Kind::Wait(w),
                    None => {
                        let f = if obj.contains_key("Seconds") { "Seconds" } else { "Timestamp" };
                        self.err(
                            l,
                            f,
                            "must be a non-negative integer, an ISO-8601 timestamp or a JSONata expression, as the field requires",
                        );
                        return None;
                    }
                }
            }
            "Wait" => {
                let set: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
                    .into_iter()
                    .filter(|k| obj.contains_key(*k))
                    .collect();
                if set.len() != 1 {
                    self.err(
                        l,
                        "Seconds",
                        "exactly one of 'Seconds', 'Timestamp', 'SecondsPath' or 'TimestampPath' must be set",
                    );
                    return None;
                }
                let v = &obj[set[0]];
                let w = match set[0] {
                    "Seconds" => v.as_u64().filter(|n| *n <= 99_999_999).map(Wait::Seconds),
                    "Timestamp" => v.as_str().and_then(crate::time::parse_timestamp).map(Wait::Timestamp),
                    "SecondsPath" => v.as_str().and_then(|s| Path::parse(s).ok()).map(Wait::SecondsPath),
                    _ => v.as_str().and_then(|s| Path::parse(s).ok()).map(Wait::TimestampPath),
                };
                match w {
                    Some(w) => Kind::Wait(w),
                    None => {
                        let rule = match set[0] {
                            "Seconds" => "must be a non-negative integer (at most 99999999)",
                            "Timestamp" => "must be an ISO-8601 timestamp such as 2026-01-01T00:00:00Z",
                            _ => "must be a valid JSONPath",
                        };
                        self.err(l, set[0], rule);
                        return None;
                    }
                }
            }
            "Parallel" => {
                let mut branches = Vec::new();
                match obj.get("Branches").and_then(Value::as_array) {
                    Some(arr) if !arr.is_empty() => {
                        for (i, b) in arr.iter().enumerate() {
                            if let Some(sm) = self.machine(b, &format!("{l} > Branches[{i}]"), false) {
                                branches.push(Arc::new(sm));
                            }
                        }
                    }
                    _ => self.err(l, "Branches", "is required and must be a non-empty array of state machines"),
                }
                Kind::Parallel { branches }
            }
            "Map" => {
                let processor = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
                    (Some(_), Some(_)) => {
                        self.err(l, "Iterator", "'ItemProcessor' and the legacy 'Iterator' cannot both be set");
                        None
                    }
                    // One rule for both forms: the processor's ProcessorConfig.Mode decides.
                    (Some(p), None) | (None, Some(p)) => self.machine(p, &format!("{l} > {}", processor_field(obj)), false),
                    (None, None) => {
                        self.err(l, "ItemProcessor", "is required");
                        None
                    }
                };
                let distributed = self.distributed(l, obj, lang);
                let item_selector = match (obj.get("ItemSelector"), obj.get("Parameters")) {
                    (Some(_), Some(_)) => {
                        self.err(l, "ItemSelector", "'ItemSelector' and the legacy 'Parameters' cannot both be set");
                        None
                    }
                    (Some(s), None) if lang == Lang::Jsonata => self.jtemplate(l, "ItemSelector", Some(s)).map(Assign::Jsonata),
                    (Some(s), None) => self.template(l, "ItemSelector", Some(s)).map(Assign::Path),
                    (None, Some(p)) => self.template(l, "Parameters", Some(p)).map(Assign::Path),
                    (None, None) => None,
                };
                let items = match obj.get("Items") {
                    None => None,
                    Some(v @ Value::Array(_)) => self.jtemplate(l, "Items", Some(v)),
                    Some(Value::String(s)) if expression_body(s).is_some() => self.jtemplate(l, "Items", obj.get("Items")),
                    Some(_) => {
                        self.err(l, "Items", "must be a JSON array or a JSONata expression \"{% ... %}\"");
                        None
                    }
                };
                let items_path = match obj.get("ItemsPath") {
                    None => None,
                    Some(Value::String(s)) => match Path::parse(s) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            self.err(l, "ItemsPath", e);
                            None
                        }
                    },
                    Some(_) => {
                        self.err(l, "ItemsPath", "must be a JSONPath string");
                        None
                    }
                };
                let max_concurrency = self.seconds(l, obj, "MaxConcurrency", 0);
                let tolerated_failure_count = self.seconds(l, obj, "ToleratedFailureCount", 0);
                for f in ["ToleratedFailureCountPath", "ToleratedFailurePercentagePath"] {
                    if obj.get(f).and_then(Value::as_str).is_some_and(|p| p.starts_with("$$")) {
                        self.err(l, f, "must be a reference path into the state input, not the context object");
                    }
                }
                let tolerated_failure_percentage = match (obj.get("ToleratedFailurePercentage"), obj.get("ToleratedFailurePercentagePath"))
                {
                    (Some(_), Some(_)) => {
                        self.err(
                            l,
                            "ToleratedFailurePercentage",
                            "'ToleratedFailurePercentage' and 'ToleratedFailurePercentagePath' cannot both be set",
                        );
                        None
                    }
                    (Some(Value::String(_)), None) => self
                        .jsonata_number(l, obj, "ToleratedFailurePercentage")
                        .flatten()
                        .map(Percentage::Jsonata),
                    (Some(v), None) => match v.as_f64() {
                        Some(p) if (0.0..=100.0).contains(&p) => Some(Percentage::Fixed(p)),
                        _ => {
                            self.err(l, "ToleratedFailurePercentage", "must be a number between 0 and 100");
                            None
                        }
                    },
                    (None, Some(v)) => match v.as_str().map(Path::parse) {
                        Some(Ok(p)) => Some(Percentage::Path(p)),
                        _ => {
                            self.err(l, "ToleratedFailurePercentagePath", "must be a valid JSONPath");
                            None
                        }
                    },
                    (None, None) => None,
                };
                let processor = processor?;
                Kind::Map(Box::new(MapState {
                    processor: Arc::new(processor),
                    items_path,
                    items,
                    item_selector,
                    max_concurrency,
                    tolerated_failure_count,
                    tolerated_failure_percentage,
                    distributed,
                }))
            }
            _ => unreachable!(),
        };
        let uses_context = lang == Lang::Jsonata || v.to_string().contains("$$");
        Some(State {
            name: Arc::from(name),
            kind,
            lang,
            arguments,
            output,
            input_path,
            output_path,
            result_path,
            parameters,
            result_selector,
            assign,
            transition,
            retry,
            catch,
            uses_context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(def: Value) -> Vec<String> {
        match parse_value(&def) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_minimal_machine_loads() {
        let sm = parse_value(&json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}})).unwrap();
        assert_eq!(sm.states.len(), 1);
        assert_eq!(sm.states[sm.start_at].transition, Transition::End);
    }

    #[test]
    fn unknown_next_names_state_and_field() {
        let e = errors(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}));
        assert_eq!(
            e,
            vec!["State 'A': field 'Next': names the state 'B', which does not exist in this scope"]
        );
    }

    #[test]
    fn unreachable_states_are_rejected() {
        let e = errors(json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}));
        assert_eq!(e, vec!["State 'B': field 'Type': the state is not reachable from StartAt ('A')"]);
    }

    #[test]
    fn states_all_must_be_alone_and_last() {
        let e = errors(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
                  "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                  "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "F"}]},
            "F": {"Type": "Fail"}}}));
        assert!(
            e.iter().any(|m| m.contains("Retry[0].ErrorEquals") && m.contains("last retrier")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("Catch[0].ErrorEquals") && m.contains("alone")), "{e:?}");
    }

    #[test]
    fn bad_field_combinations_are_named() {
        let e = errors(json!({"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "Next": "P"},
            "P": {"Type": "Pass", "Next": "S", "End": true, "Resource": "arn:x"},
            "S": {"Type": "Succeed"}}}));
        assert!(e.iter().any(|m| m.starts_with("State 'W': field 'Seconds'")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("State 'P': field 'End'")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("State 'P': field 'Resource'")), "{e:?}");
    }

    #[test]
    fn result_path_must_be_a_reference_path() {
        let e = errors(json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "ResultPath": "$.a[*]", "End": true}}}));
        assert!(e[0].contains("field 'ResultPath'") && e[0].contains("reference path"), "{e:?}");
    }

    #[test]
    fn nested_states_are_checked_and_names_are_global() {
        let e = errors(
            json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Nope"}}}]}}}),
        );
        assert!(e.iter().any(|m| m.contains("unique")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("'Nope'")), "{e:?}");
    }

    #[test]
    fn heartbeat_must_be_below_timeout() {
        let e = errors(
            json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 5, "HeartbeatSeconds": 5, "End": true}}}),
        );
        assert_eq!(e, vec!["State 'T': field 'HeartbeatSeconds': must be smaller than TimeoutSeconds"]);
    }
}
