//! JSONPath as Step Functions uses it: paths over the state input (`$`), the context object
//! (`$$`) and workflow variables (`$name`), reference paths (ResultPath), and payload templates
//! (Parameters, ResultSelector, ItemSelector, Assign) whose `.$` keys are paths or intrinsic
//! function calls. Everything is compiled once when a definition loads.

use std::sync::Arc;

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use crate::error::StatesError;
use crate::intrinsics::Intrinsic;

/// Workflow variables visible to a state: its own scope, then the enclosing ones (a Map
/// iteration or Parallel branch reads the outer variables but assigns only in its own scope).
#[derive(Debug, Clone, Default)]
pub struct Vars {
    local: Map<String, Value>,
    parent: Option<Arc<Vars>>,
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }
    /// A child scope (Map iteration, Parallel branch) that sees a snapshot of `self`.
    pub fn child(parent: Arc<Vars>) -> Self {
        Vars {
            local: Map::new(),
            parent: Some(parent),
        }
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.local.get(name) {
            Some(v) => Some(v),
            None => self.parent.as_ref().and_then(|p| p.get(name)),
        }
    }
    pub fn set(&mut self, name: String, value: Value) {
        self.local.insert(name, value);
    }
    /// Every visible variable (inner scopes shadow outer ones).
    pub fn all(&self) -> Vec<(String, Value)> {
        let mut out = self.parent.as_ref().map(|p| p.all()).unwrap_or_default();
        out.retain(|(k, _)| !self.local.contains_key(k));
        out.extend(self.local.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.parent.as_ref().is_none_or(|p| p.is_empty())
    }
}

/// What a path can read: the effective input, the context object and the variables.
/// `context` is the context object without `Execution.Input`, which `execution_input` holds
/// (so that a Map iteration's context does not copy the execution's whole input).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub vars: &'a Vars,
    pub execution_input: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    pub fn new(input: &'a Value, context: &'a Value, vars: &'a Vars) -> Self {
        Scope {
            input,
            context,
            vars,
            execution_input: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    Input,
    Context,
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(i64),
}

#[derive(Debug, Clone)]
enum Kind {
    /// `$`, `$.a.b`, `$['a'][0]`: walked directly, always definite.
    Simple(Vec<Seg>),
    /// Anything with wildcards, slices, filters, unions or recursive descent.
    Query { query: Box<JsonPath>, definite: bool },
}

/// A compiled path.
#[derive(Debug, Clone)]
pub struct Path {
    text: String,
    root: Root,
    kind: Kind,
}

impl PartialEq for Path {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses `.name`, `['name']`, `["name"]`, `[3]`, `[-1]` segments; None when the rest uses any
/// other JSONPath feature.
fn parse_simple(rest: &str) -> Option<Vec<Seg>> {
    let b = rest.as_bytes();
    let mut i = 0;
    let mut segs = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len()
                    && !matches!(
                        b[j],
                        b'.' | b'[' | b'*' | b'?' | b'(' | b')' | b'@' | b',' | b' ' | b'\'' | b'"' | b']'
                    )
                {
                    j += 1;
                }
                if j == start {
                    return None; // `..`, `.*`, trailing dot
                }
                segs.push(Seg::Key(rest[start..j].to_string()));
                i = j;
            }
            b'[' => {
                let close = rest[i..].find(']')? + i;
                let inner = rest[i + 1..close].trim();
                if (inner.starts_with('\'') && inner.ends_with('\'') || inner.starts_with('"') && inner.ends_with('"')) && inner.len() >= 2
                {
                    // The name between the quotes is read literally, backslashes and the other
                    // quote character included (AWS evaluates `$['Test\""Name"']` so).
                    let name = &inner[1..inner.len() - 1];
                    if name.contains(inner.as_bytes()[0] as char) {
                        return None;
                    }
                    segs.push(Seg::Key(name.to_string()));
                } else {
                    let n: i64 = inner.parse().ok()?;
                    segs.push(Seg::Index(n));
                }
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(segs)
}

/// A path is definite (yields one value, not a list) unless it uses `..`, `*`, filters,
/// slices or unions — Jayway JsonPath's rule, which Step Functions follows.
fn is_definite(rest: &str) -> bool {
    !(rest.contains("..") || rest.contains('*') || rest.contains("[?") || rest.contains(':') || rest.contains(','))
}

/// True when the text ends before the 4 hex digits of its last `\u` escape. serde_json_path
/// 0.7.2 reads those digits with a streaming parser and panics (`unreachable!`) when the text
/// runs out there (found by the `path_query` fuzz target), so such a query is refused first.
/// No valid query ends so: the digits, the closing quote and `]` follow every escape.
fn ends_inside_unicode_escape(query: &str) -> bool {
    let b = query.as_bytes();
    let (mut i, mut last) = (0, None);
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'u') {
                last = Some(i);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    last.is_some_and(|at| b.len() - at < "\\uXXXX".len())
}

/// How deep a query may nest `[` and `(`. serde_json_path's parser takes time exponential in
/// the nesting of filters (40 levels: minutes; found by the `path_query` fuzz target); real
/// paths nest two or three.
pub const MAX_QUERY_NESTING: usize = 16;

/// The deepest nesting of `[` and `(` outside quoted names and strings.
fn nesting(query: &str) -> usize {
    let (mut depth, mut deepest, mut quote, mut escaped) = (0usize, 0, None, false);
    for c in query.chars() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '(') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | ')') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    deepest
}

impl Path {
    /// Parses `$...`, `$$...` or `$var...`.
    pub fn parse(text: &str) -> Result<Path, String> {
        let (root, rest) = if let Some(r) = text.strip_prefix("$$") {
            (Root::Context, r)
        } else if let Some(r) = text.strip_prefix('$') {
            if r.starts_with(is_ident_start) {
                let end = r.find(|c: char| !is_ident(c)).unwrap_or(r.len());
                (Root::Var(r[..end].to_string()), &r[end..])
            } else {
                (Root::Input, r)
            }
        } else {
            return Err(format!("'{text}' is not a valid JSONPath: it must begin with '$'"));
        };
        let kind = match parse_simple(rest) {
            Some(segs) => Kind::Simple(segs),
            None => {
                if ends_inside_unicode_escape(rest) {
                    return Err(format!(
                        "'{text}' is not a valid JSONPath: it ends inside a '\\u' escape, which needs 4 hex digits"
                    ));
                }
                let nesting = nesting(rest);
                if nesting > MAX_QUERY_NESTING {
                    return Err(format!(
                        "'{}' is not a valid JSONPath: it nests brackets and parentheses {nesting} deep, \
                         at most {MAX_QUERY_NESTING} are allowed",
                        truncate(text, 128)
                    ));
                }
                let query = JsonPath::parse(&format!("${rest}")).map_err(|e| format!("'{text}' is not a valid JSONPath: {e}"))?;
                Kind::Query {
                    query: Box::new(query),
                    definite: is_definite(rest),
                }
            }
        };
        Ok(Path {
            text: text.to_string(),
            root,
            kind,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The path in bracket notation as AWS (Jayway JsonPath) prints it: `$['a']['b'][0]`.
    pub fn bracket_text(&self) -> String {
        match &self.kind {
            Kind::Simple(segs) if self.root == Root::Input => {
                let mut out = String::from("$");
                for s in segs {
                    match s {
                        Seg::Key(k) => out.push_str(&format!("['{k}']")),
                        Seg::Index(i) => out.push_str(&format!("[{i}]")),
                    }
                }
                out
            }
            _ => self.text.clone(),
        }
    }
    pub fn root(&self) -> &Root {
        &self.root
    }
    /// The segments of a reference path (simple, on the input), else None.
    pub fn reference_segments(&self) -> Option<&[Seg]> {
        match (&self.root, &self.kind) {
            (Root::Input, Kind::Simple(s)) => Some(s),
            _ => None,
        }
    }
    /// A reference path selects one node: no wildcards, filters, slices or unions.
    pub fn is_reference(&self) -> bool {
        matches!(self.kind, Kind::Simple(_))
    }
    pub fn is_root(&self) -> bool {
        matches!((&self.root, &self.kind), (Root::Input, Kind::Simple(s)) if s.is_empty())
    }

    /// Evaluates against one document; None when a definite path selects nothing.
    pub fn select(&self, doc: &Value) -> Option<Value> {
        match &self.kind {
            Kind::Simple(segs) => walk(doc, segs).cloned(),
            Kind::Query { query, definite } => {
                let nodes = query.query(doc).all();
                if *definite {
                    nodes.first().map(|v| (*v).clone())
                } else {
                    Some(Value::Array(nodes.into_iter().cloned().collect()))
                }
            }
        }
    }

    /// Evaluates in a scope; None when nothing is selected (or the variable does not exist).
    pub fn eval(&self, scope: &Scope) -> Option<Value> {
        match &self.root {
            Root::Input => self.select(scope.input),
            Root::Context => match (scope.execution_input, &self.kind) {
                (None, _) => self.select(scope.context),
                (Some(exec_input), Kind::Simple(segs)) => match segs.as_slice() {
                    [Seg::Key(a), Seg::Key(b), rest @ ..] if a == "Execution" && b == "Input" => walk(exec_input, rest).cloned(),
                    [Seg::Key(a)] if a == "Execution" => {
                        let mut e = scope.context.get("Execution")?.clone();
                        e.as_object_mut()?.insert("Input".into(), exec_input.clone());
                        Some(e)
                    }
                    [Seg::Key(a), ..] if a == "Execution" => self.select(scope.context),
                    [] => Some(full_context(scope.context, exec_input)),
                    _ => self.select(scope.context),
                },
                (Some(exec_input), Kind::Query { .. }) => self.select(&full_context(scope.context, exec_input)),
            },
            Root::Var(name) => self.select(scope.vars.get(name)?),
        }
    }

    /// Like [`Path::eval`] but a missing value is the `States.Runtime` error AWS raises.
    pub fn eval_required(&self, scope: &Scope, field: &str) -> Result<Value, StatesError> {
        self.eval(scope).ok_or_else(|| self.not_found(scope, field))
    }

    pub fn not_found(&self, scope: &Scope, field: &str) -> StatesError {
        match &self.root {
            Root::Var(name) if scope.vars.get(name).is_none() => StatesError::runtime(format!(
                "The JSONPath '{}' specified for the field '{}' could not be found: variable '${}' is not defined",
                self.text, field, name
            )),
            Root::Context => StatesError::runtime(format!(
                "The JSONPath '{}' specified for the field '{}' could not be found in the context object",
                self.text, field
            )),
            _ => StatesError::runtime(format!(
                "The JSONPath '{}' specified for the field '{}' could not be found in the input '{}'",
                self.text,
                field,
                truncate(&scope.input.to_string(), 256)
            )),
        }
    }
}

fn full_context(context: &Value, exec_input: &Value) -> Value {
    let mut c = context.clone();
    if let Some(e) = c.get_mut("Execution").and_then(Value::as_object_mut) {
        e.insert("Input".into(), exec_input.clone());
    }
    c
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Objects of up to this many members are searched linearly: comparing a few short keys is
/// several times cheaper than hashing the wanted key.
const LINEAR_LOOKUP_MAX: usize = 16;

#[inline]
fn get_key<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    if m.len() <= LINEAR_LOOKUP_MAX {
        m.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        m.get(key)
    }
}

/// Follows simple segments, borrowing what they select (negative indexes count from the end).
#[inline]
pub(crate) fn walk<'v>(mut v: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    for seg in segs {
        v = match (seg, v) {
            (Seg::Key(k), Value::Object(m)) => get_key(m, k)?,
            (Seg::Index(i), Value::Array(a)) => {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                a.get(usize::try_from(idx).ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// Applies `ResultPath`: puts `result` into `input` at the reference path, creating missing
/// parent objects. `Err` carries the reason when the path runs through a non-object value.
pub fn set_at(input: Value, segs: &[Seg], result: Value) -> Result<Value, String> {
    if segs.is_empty() {
        return Ok(result);
    }
    let mut root = input;
    {
        let mut cur = &mut root;
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            match seg {
                Seg::Key(k) => {
                    let Value::Object(m) = cur else {
                        return Err(format!("cannot set field '{k}' on a value of type {}", type_name(cur)));
                    };
                    if last {
                        m.insert(k.clone(), result);
                        break;
                    }
                    cur = m.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if !cur.is_object() && !cur.is_array() {
                        *cur = Value::Object(Map::new());
                    }
                }
                Seg::Index(n) => {
                    let Value::Array(a) = cur else {
                        return Err(format!("cannot set index [{n}] on a value of type {}", type_name(cur)));
                    };
                    let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                    if idx < 0 || idx as usize >= a.len() {
                        return Err(format!("index [{n}] is out of bounds"));
                    }
                    let slot = &mut a[idx as usize];
                    if last {
                        *slot = result;
                        break;
                    }
                    cur = slot;
                }
            }
        }
    }
    Ok(root)
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A compiled payload template.
#[derive(Debug, Clone)]
pub enum Template {
    Const(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Path { field: String, path: Path },
    Intrinsic { field: String, call: Box<Intrinsic> },
}

impl Template {
    /// Compiles a payload template. `Err` is (field, message) for the load error.
    pub fn compile(v: &Value) -> Result<Template, (String, String)> {
        Self::compile_at(v, "")
    }

    fn compile_at(v: &Value, at: &str) -> Result<Template, (String, String)> {
        match v {
            Value::Object(m) => {
                let mut fields = Vec::with_capacity(m.len());
                let mut all_const = true;
                for (k, val) in m {
                    let where_ = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    let t = if let Some(name) = k.strip_suffix(".$") {
                        let Value::String(s) = val else {
                            return Err((where_, "the value of a field whose name ends in '.$' must be a string holding a path or an intrinsic function call".into()));
                        };
                        let t = if s.starts_with("States.") {
                            Template::Intrinsic {
                                field: k.clone(),
                                call: Box::new(Intrinsic::parse(s).map_err(|e| (where_.clone(), e))?),
                            }
                        } else if s.starts_with('$') {
                            Template::Path {
                                field: k.clone(),
                                path: Path::parse(s).map_err(|e| (where_.clone(), e))?,
                            }
                        } else {
                            return Err((where_, format!("'{s}' is neither a JSONPath nor an intrinsic function call")));
                        };
                        all_const = false;
                        fields.push((name.to_string(), t));
                        continue;
                    } else {
                        Self::compile_at(val, &where_)?
                    };
                    if !matches!(t, Template::Const(_)) {
                        all_const = false;
                    }
                    fields.push((k.clone(), t));
                }
                if all_const {
                    Ok(Template::Const(v.clone()))
                } else {
                    Ok(Template::Object(fields))
                }
            }
            Value::Array(items) => {
                let ts = items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Self::compile_at(x, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if ts.iter().all(|t| matches!(t, Template::Const(_))) {
                    Ok(Template::Const(v.clone()))
                } else {
                    Ok(Template::Array(ts))
                }
            }
            other => Ok(Template::Const(other.clone())),
        }
    }

    pub fn eval(&self, scope: &Scope) -> Result<Value, StatesError> {
        match self {
            Template::Const(v) => Ok(v.clone()),
            Template::Object(fields) => {
                let mut m = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    m.insert(k.clone(), t.eval(scope)?);
                }
                Ok(Value::Object(m))
            }
            Template::Array(items) => items.iter().map(|t| t.eval(scope)).collect::<Result<Vec<_>, _>>().map(Value::Array),
            Template::Path { field, path } => path.eval_required(scope, field),
            Template::Intrinsic { call, .. } => call.eval(scope),
        }
    }

    /// Every path used anywhere in the template (for validation).
    pub fn paths(&self, out: &mut Vec<Path>) {
        match self {
            Template::Object(f) => f.iter().for_each(|(_, t)| t.paths(out)),
            Template::Array(a) => a.iter().for_each(|t| t.paths(out)),
            Template::Path { path, .. } => out.push(path.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope_eval(path: &str, input: &Value) -> Option<Value> {
        let vars = Vars::new();
        let ctx = json!({"Execution": {"Id": "arn:x"}});
        Path::parse(path).unwrap().eval(&Scope::new(input, &ctx, &vars))
    }

    // Found by the `path_query` fuzz target: serde_json_path panicked on these.
    #[test]
    fn a_query_that_ends_inside_a_unicode_escape_is_refused_not_a_panic() {
        for text in [r#"$["\u"#, r#"$['a\u00"#, r#"$['\uD83D\u"#, r#"$['\uD83D\uDC"#, r#"$[?(@.a == "\u"#] {
            let e = Path::parse(text).expect_err(text);
            assert!(e.contains("ends inside a '\\u' escape"), "{text}: {e}");
        }
        // A complete escape, and a `\\u` that is no escape, still parse.
        for text in [r#"$["\u0041"]"#, r#"$['\uD83D\uDE00']"#, r#"$["\\u"]"#, r#"$[?(@.a == '\\u')]"#] {
            assert!(Path::parse(text).is_ok(), "{text}");
        }
    }

    // Found by the `path_query` fuzz target: 40 nested filters took minutes to parse.
    #[test]
    fn a_query_nested_deeper_than_16_is_refused_quickly() {
        let deep = format!("$.a{}", "[?(@.b".repeat(30));
        let started = std::time::Instant::now();
        let e = Path::parse(&deep).unwrap_err();
        assert!(e.contains("nests brackets and parentheses 60 deep, at most 16"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // Brackets inside quoted names do not count; real filters still parse.
        assert!(Path::parse(&format!("$['{}'][?(@.a > 1)]", "[(".repeat(20))).is_ok());
        assert!(Path::parse("$.a[?(@.b[?(@.c == 'x')])].d").is_ok());
    }

    #[test]
    fn simple_paths_select_definite_values() {
        let input = json!({"a": {"b": [10, 20, 30]}, "x-y": 1, "zero": 0});
        assert_eq!(scope_eval("$", &input), Some(input.clone()));
        assert_eq!(scope_eval("$.a.b[1]", &input), Some(json!(20)));
        assert_eq!(scope_eval("$.a.b[-1]", &input), Some(json!(30)));
        assert_eq!(scope_eval("$['a']['b'][0]", &input), Some(json!(10)));
        assert_eq!(scope_eval("$.x-y", &input), Some(json!(1)));
        assert_eq!(scope_eval("$.zero", &input), Some(json!(0)));
        assert_eq!(scope_eval("$.missing", &input), None);
        assert_eq!(scope_eval("$$.Execution.Id", &input), Some(json!("arn:x")));
    }

    #[test]
    fn indefinite_paths_always_yield_arrays() {
        let input = json!({"items": [{"p": 1}, {"p": 5}, {"p": 9}]});
        assert_eq!(scope_eval("$.items[*].p", &input), Some(json!([1, 5, 9])));
        assert_eq!(scope_eval("$.items[?(@.p > 3)].p", &input), Some(json!([5, 9])));
        assert_eq!(scope_eval("$.items[?(@.p > 30)]", &input), Some(json!([])));
        assert_eq!(scope_eval("$..p", &input), Some(json!([1, 5, 9])));
        assert_eq!(scope_eval("$.items[0:2].p", &input), Some(json!([1, 5])));
    }

    #[test]
    fn variables_resolve_through_parent_scopes() {
        let mut outer = Vars::new();
        outer.set("cfg".into(), json!({"size": 32}));
        let mut inner = Vars::child(Arc::new(outer));
        inner.set("n".into(), json!(1));
        let input = json!({});
        let ctx = json!({});
        let scope = Scope::new(&input, &ctx, &inner);
        assert_eq!(Path::parse("$cfg.size").unwrap().eval(&scope), Some(json!(32)));
        assert_eq!(Path::parse("$n").unwrap().eval(&scope), Some(json!(1)));
        assert_eq!(Path::parse("$nope").unwrap().eval(&scope), None);
    }

    #[test]
    fn result_path_creates_missing_parents_and_replaces_scalars_on_the_way() {
        let segs = match Path::parse("$.a.b.c").unwrap().kind {
            Kind::Simple(s) => s,
            _ => unreachable!(),
        };
        assert_eq!(
            set_at(json!({"x": 1}), &segs, json!(7)).unwrap(),
            json!({"x": 1, "a": {"b": {"c": 7}}})
        );
        assert!(set_at(json!("text"), &segs, json!(7)).is_err());
        assert_eq!(set_at(json!({"a": 1}), &[], json!(7)).unwrap(), json!(7));
    }

    #[test]
    fn templates_fold_constants_and_fill_paths_at_any_depth() {
        let t = Template::compile(&json!({"a": 1, "n": {"v.$": "$.x", "list": [{"w.$": "$$.Execution.Id"}, 2]}})).unwrap();
        let input = json!({"x": false});
        let vars = Vars::new();
        let ctx = json!({"Execution": {"Id": "id-1"}});
        let out = t.eval(&Scope::new(&input, &ctx, &vars)).unwrap();
        assert_eq!(out, json!({"a": 1, "n": {"v": false, "list": [{"w": "id-1"}, 2]}}));
        assert!(matches!(
            Template::compile(&json!({"a": [1, {"b": 2}]})).unwrap(),
            Template::Const(_)
        ));
        assert!(Template::compile(&json!({"a.$": 3})).is_err());
        assert!(Template::compile(&json!({"a.$": "nope"})).is_err());
    }

    #[test]
    fn missing_path_in_template_is_states_runtime() {
        let t = Template::compile(&json!({"v.$": "$.missing"})).unwrap();
        let input = json!({});
        let vars = Vars::new();
        let err = t.eval(&Scope::new(&input, &input, &vars)).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(err.cause.contains("v.$"), "{}", err.cause);
    }
}
