//! The JSONata query language of Step Functions (`"QueryLanguage": "JSONata"`): `{% %}`
//! expressions in Arguments, Output, Assign, Condition, Items, ItemSelector and the number and
//! text fields that accept them, evaluated with jlens-core (JSONata 2.0.6, the version AWS
//! implements) and bound to `$states` and the workflow variables. Step Functions' own
//! functions are added: `$partition`, `$range`, `$hash`, `$random([seed])`, `$uuid`, `$parse`;
//! `$eval` is not available, as on AWS.

use std::sync::{Arc, LazyLock};

use jlens_core::{Bindings, Error as JError, Expression, HostFunction, Options};
use serde_json::{json, Map, Value};

use crate::error::{names, StatesError};

/// A compiled `{% expression %}`.
#[derive(Clone)]
pub struct Expr {
    text: Arc<str>,
    compiled: Arc<Expression>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{% {} %}}", self.text)
    }
}

/// The body of a `{% ... %}` string, if the whole string is one.
pub fn expression_body(s: &str) -> Option<&str> {
    s.strip_prefix("{%").and_then(|r| r.strip_suffix("%}"))
}

impl Expr {
    pub fn compile(body: &str) -> Result<Expr, String> {
        let compiled =
            Expression::compile(body).map_err(|e| format!("'{{%{body}%}}' is not a valid JSONata expression: {}", e.message()))?;
        Ok(Expr {
            text: Arc::from(body.trim()),
            compiled: Arc::new(compiled),
        })
    }
}

/// A JSON value whose `{% %}` strings (at any depth) are expressions.
#[derive(Debug, Clone)]
pub enum JTemplate {
    Const(Value),
    Expr(Expr),
    Object(Vec<(String, JTemplate)>),
    Array(Vec<JTemplate>),
}

impl JTemplate {
    /// Compiles a field value. `Err` is (location inside the field, message).
    pub fn compile(v: &Value) -> Result<JTemplate, (String, String)> {
        Self::compile_at(v, "")
    }

    fn compile_at(v: &Value, at: &str) -> Result<JTemplate, (String, String)> {
        Ok(match v {
            Value::String(s) => match expression_body(s) {
                Some(body) => JTemplate::Expr(Expr::compile(body).map_err(|e| (at.to_string(), e))?),
                None => JTemplate::Const(v.clone()),
            },
            Value::Object(m) => {
                let fields = m
                    .iter()
                    .map(|(k, x)| Ok((k.clone(), Self::compile_at(x, &join(at, k))?)))
                    .collect::<Result<Vec<_>, (String, String)>>()?;
                if fields.iter().all(|(_, t)| matches!(t, JTemplate::Const(_))) {
                    JTemplate::Const(v.clone())
                } else {
                    JTemplate::Object(fields)
                }
            }
            Value::Array(a) => {
                let items = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Self::compile_at(x, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|t| matches!(t, JTemplate::Const(_))) {
                    JTemplate::Const(v.clone())
                } else {
                    JTemplate::Array(items)
                }
            }
            other => JTemplate::Const(other.clone()),
        })
    }

    /// Evaluates for the field `field` (named in errors).
    pub fn eval(&self, env: &Env, field: &str) -> Result<Value, StatesError> {
        match self {
            JTemplate::Const(v) => Ok(v.clone()),
            JTemplate::Expr(e) => env.eval(e, field),
            JTemplate::Object(fields) => {
                let mut m = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    m.insert(k.clone(), t.eval(env, &join(field, k))?);
                }
                Ok(Value::Object(m))
            }
            JTemplate::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, t)| t.eval(env, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Value::Array),
        }
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}/{k}")
    }
}

/// The bounds of one evaluation. jlens has none by default (a backtracking regular expression or
/// a nested range runs for hours; found by the `jsonata` fuzz target), and Step Functions, which
/// publishes none, ends such a state too: past them the field fails with
/// `States.QueryEvaluationError` naming the limit. Steps are counted, not timed, so the same
/// expression fails the same way on every machine; a regular expression's backtracking counts
/// one step per 1,024 of its own, so [`MAX_SECONDS`] of wall-clock time bounds it too.
pub const MAX_STEPS: u64 = 2_000_000;
pub const MAX_SECONDS: u64 = 1;
/// Strings, arrays and results as large as a state's whole payload may be (256 KiB), not more.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
pub const MAX_ARRAY_ITEMS: usize = 256 * 1024;
/// Nesting (recursion) depth.
pub const MAX_DEPTH: usize = 1_000;

/// What expressions of one state see: `$states` and the workflow variables.
pub struct Env {
    bindings: Bindings,
    options: Options,
}

impl Env {
    /// `states` is the `$states` object; `vars` the visible variables; `now_ms` the engine's
    /// clock, for `$now()` and `$millis()`.
    pub fn new(states: Value, vars: impl IntoIterator<Item = (String, Value)>, now_ms: i64) -> Env {
        let mut bindings = FUNCTIONS.clone();
        for (k, v) in vars {
            bindings = bindings.var(k, v);
        }
        Env {
            bindings: bindings.var("states", states),
            options: Options::new()
                .now(now_ms)
                .max_steps(MAX_STEPS)
                .timeout(std::time::Duration::from_secs(MAX_SECONDS))
                .max_depth(MAX_DEPTH)
                .max_string_length(MAX_VALUE_BYTES)
                .max_array_length(MAX_ARRAY_ITEMS)
                .max_result_size(MAX_VALUE_BYTES),
        }
    }

    /// Smaller bounds, for the fuzz target: the same code paths, many more inputs a second.
    #[doc(hidden)]
    pub fn with_bounds(mut self, steps: u64, timeout: std::time::Duration) -> Env {
        let options = std::mem::replace(&mut self.options, Options::new());
        self.options = options.max_steps(steps).timeout(timeout);
        self
    }

    pub fn eval(&self, e: &Expr, field: &str) -> Result<Value, StatesError> {
        match e.compiled.evaluate_with(None, &self.bindings, &self.options) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(StatesError::new(
                names::QUERY_EVALUATION_ERROR,
                format!(
                    "The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
                    e.text
                ),
            )),
            Err(err) => Err(StatesError::new(
                names::QUERY_EVALUATION_ERROR,
                format!(
                    "An error occurred while evaluating the JSONata expression '{}' for the field '{field}': {} ({})",
                    e.text,
                    err.message(),
                    err.code()
                ),
            )),
        }
    }
}

fn arg(a: &[Option<Value>], i: usize) -> Value {
    a.get(i).cloned().flatten().unwrap_or(Value::Null)
}

fn host(r: Result<Value, String>) -> jlens_core::Result<Option<Value>> {
    r.map(Some).map_err(|m| JError::new("D3137").with("message", m))
}

/// Step Functions' own JSONata functions (built once).
static FUNCTIONS: LazyLock<Bindings> = LazyLock::new(|| {
    Bindings::new()
        .function(
            "partition",
            HostFunction::new(2, |a, _| host(partition(&arg(a, 0), &arg(a, 1)))).without_input(),
        )
        .function(
            "range",
            HostFunction::new(3, |a, _| host(range(&arg(a, 0), &arg(a, 1), &arg(a, 2)))).without_input(),
        )
        .function(
            "hash",
            HostFunction::new(2, |a, _| host(hash(&arg(a, 0), &arg(a, 1)))).without_input(),
        )
        .function("parse", HostFunction::new(1, |a, _| host(parse(&arg(a, 0)))).without_input())
        .function(
            "uuid",
            HostFunction::new(0, |_, _| host(Ok(json!(uuid::Uuid::new_v4().to_string())))).without_input(),
        )
        .function(
            "random",
            HostFunction::new(1, |a, _| host(random(a.first().and_then(|x| x.as_ref())))).without_input(),
        )
        .function(
            "eval",
            HostFunction::new(1, |_, _| host(Err("$eval is not available in Step Functions; use $parse".into()))).without_input(),
        )
});

/// `$partition(array, size)`: chunks of `size` items.
fn partition(arr: &Value, size: &Value) -> Result<Value, String> {
    let a = arr.as_array().ok_or("$partition: the first argument must be an array")?;
    let n = size
        .as_f64()
        .filter(|n| *n >= 1.0 && n.fract() == 0.0)
        .ok_or("$partition: the chunk size must be a positive integer")? as usize;
    Ok(Value::Array(a.chunks(n).map(|c| Value::Array(c.to_vec())).collect()))
}

/// `$range(start, end, step)`: start to end inclusive, at most 1000 items (as States.ArrayRange).
fn range(start: &Value, end: &Value, step: &Value) -> Result<Value, String> {
    let (Some(s), Some(e), Some(st)) = (start.as_i64(), end.as_i64(), step.as_i64()) else {
        return Err("$range: start, end and step must be integers".into());
    };
    if st == 0 {
        return Err("$range: the step must not be 0".into());
    }
    let mut out = Vec::new();
    let mut i = s;
    while (st > 0 && i <= e) || (st < 0 && i >= e) {
        if out.len() == 1000 {
            return Err("$range: the result would have more than 1000 items".into());
        }
        out.push(json!(i));
        i += st;
    }
    // A JSONata sequence of one item is that item: AWS returns `$range(1, 9, 9)` as `1`.
    if out.len() == 1 {
        return Ok(out.pop().unwrap_or_default());
    }
    Ok(Value::Array(out))
}

/// `$hash(data, algorithm)`: lowercase hex digest (MD5, SHA-1, SHA-256, SHA-384, SHA-512).
fn hash(data: &Value, alg: &Value) -> Result<Value, String> {
    let s = data.as_str().ok_or("$hash: the data must be a string")?;
    let alg = alg.as_str().ok_or("$hash: the algorithm must be a string")?;
    crate::intrinsics::digest_hex(alg, s.as_bytes())
        .map(Value::String)
        .ok_or_else(|| format!("$hash: '{alg}' is not one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"))
}

/// `$random()` or `$random(seed)`: a number in [0, 1); the same seed gives the same number.
fn random(seed: Option<&Value>) -> Result<Value, String> {
    let mut x: u64 = match seed {
        Some(v) => v.as_f64().ok_or("$random: the seed must be a number")? as i64 as u64,
        None => rand::random(),
    };
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Ok(json!((z >> 11) as f64 / (1u64 << 53) as f64))
}

/// `$parse(text)`: JSON text to a value.
fn parse(s: &Value) -> Result<Value, String> {
    let s = s.as_str().ok_or("$parse: the argument must be a string")?;
    serde_json::from_str(s).map_err(|e| format!("$parse: the text is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str, states: Value) -> Result<Value, StatesError> {
        let env = Env::new(states, [("limit".to_string(), json!(3))], 1_700_000_000_000);
        JTemplate::compile(&json!(expr)).unwrap().eval(&env, "Output")
    }

    // Found by the `jsonata` fuzz target: without bounds these ran for minutes or exhausted memory.
    #[test]
    fn a_pathological_expression_fails_with_a_query_evaluation_error_in_bounded_time() {
        let input = json!({"input": {"s": "a".repeat(40)}});
        for expr in [
            "{% $match($states.input.s, /(a+)+b/) %}",
            "{% $count([1..100000].([1..100000])) %}",
            "{% $sum([1..10000000]) %}",
            "{% ($f := function($n) { $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000)) %}",
            "{% $pad('', 100000000) %}",
            "{% $join([1..100000].($string($) & 'abcdefghij')) %}",
        ] {
            let started = std::time::Instant::now();
            let e = eval(expr, input.clone()).expect_err(expr);
            assert_eq!(e.error, names::QUERY_EVALUATION_ERROR, "{expr}: {e}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{expr} took {:?}",
                started.elapsed()
            );
        }
        // Ordinary work stays well inside the bounds.
        assert_eq!(eval("{% $count([1..100000]) %}", input).unwrap(), json!(100000));
    }

    #[test]
    fn expressions_read_states_and_variables() {
        assert_eq!(
            eval("{% $states.input.a + $limit %}", json!({"input": {"a": 1}})).unwrap(),
            json!(4)
        );
        assert_eq!(eval("plain text", json!({})).unwrap(), json!("plain text"));
        assert_eq!(
            eval(
                "{% $states.input.items[price > 2].name %}",
                json!({"input": {"items": [{"name": "a", "price": 1}, {"name": "b", "price": 5}]}})
            )
            .unwrap(),
            json!("b")
        );
    }

    #[test]
    fn templates_evaluate_at_any_depth_and_keep_key_order() {
        let t = JTemplate::compile(&json!({"z": "{% 1 + 1 %}", "a": [1, "{% $uppercase('x') %}"], "k": "const"})).unwrap();
        let env = Env::new(json!({}), [], 0);
        let v = t.eval(&env, "Arguments").unwrap();
        assert_eq!(v, json!({"z": 2, "a": [1, "X"], "k": "const"}));
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["z", "a", "k"]);
    }

    #[test]
    fn undefined_and_errors_are_query_evaluation_errors() {
        let e = eval("{% $states.input.missing %}", json!({"input": {}})).unwrap_err();
        assert_eq!(e.error, "States.QueryEvaluationError");
        assert!(e.cause.contains("returned nothing (undefined)"), "{}", e.cause);
        let e = eval("{% $number('x') + 1 %}", json!({})).unwrap_err();
        assert_eq!(e.error, "States.QueryEvaluationError");
        assert!(JTemplate::compile(&json!("{% 1 + %}")).is_err());
    }

    #[test]
    fn step_functions_functions() {
        assert_eq!(
            eval("{% $partition([1,2,3,4,5], 2) %}", json!({})).unwrap(),
            json!([[1, 2], [3, 4], [5]])
        );
        assert_eq!(eval("{% $range(0, 10, 5) %}", json!({})).unwrap(), json!([0, 5, 10]));
        assert_eq!(
            eval("{% $hash('abc', 'SHA-256') %}", json!({})).unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(eval("{% $parse('{\"a\":[1]}') %}", json!({})).unwrap(), json!({"a": [1]}));
        assert_eq!(eval("{% $random(7) = $random(7) %}", json!({})).unwrap(), json!(true));
        assert_eq!(eval("{% $length($uuid()) %}", json!({})).unwrap(), json!(36));
        assert!(eval("{% $eval('1') %}", json!({})).is_err());
        assert!(eval("{% $range(0, 5000, 1) %}", json!({})).is_err());
    }

    #[test]
    fn now_follows_the_engine_clock() {
        assert_eq!(eval("{% $millis() %}", json!({})).unwrap(), json!(1_700_000_000_000i64));
        assert_eq!(eval("{% $now() %}", json!({})).unwrap(), json!("2023-11-14T22:13:20.000Z"));
    }
}
