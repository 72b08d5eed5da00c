//! Choice Rules of the JSONPath query language: `Variable` with one comparison operator, and the
//! `And` / `Or` / `Not` combinators, nested to any depth.
//!
//! Everything that can be decided when the definition loads is decided then: operand types are
//! checked, paths compiled, timestamps parsed and `StringMatches` patterns split into literal
//! pieces. Evaluating a rule whose paths are simple (`$.a.b[0]`, `$$.Execution.Id`, `$var.x`)
//! borrows the values from the scope and allocates nothing.
//!
//! Sources for the semantics (cited as [spec] and [docs] below):
//! - [spec] Amazon States Language, "Choice State" / "Timestamps"
//!   (states-language.net/spec.html, awslabs/states-language `spec/States.html`).
//! - [docs] AWS Step Functions developer guide, "Choice workflow state" (state-choice.html).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::error::StatesError;
use crate::path::{walk, Path, Root, Scope, Seg};

/// One Choice Rule (top-level or nested), compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    node: Node,
}

impl Rule {
    /// Parses one rule object. `Next`, `Comment` and `Assign` of a top-level rule are left to the
    /// engine. `Err((field, message))` names the field relative to the rule, e.g.
    /// `And[0].StringEquals`.
    pub fn parse(v: &Value) -> Result<Rule, (String, String)> {
        Ok(Rule {
            node: Node::parse(v, "", false)?,
        })
    }

    /// Evaluates the rule against the state's effective input, the context object and the
    /// variables. A missing `Variable` (or comparison path) is `States.Runtime`, except for
    /// `IsPresent`.
    pub fn eval(&self, scope: &Scope) -> Result<bool, StatesError> {
        self.node.eval(scope)
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Test { var: Operand, test: Test },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Cmp {
    #[inline]
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Le => o != Ordering::Greater,
            Cmp::Ge => o != Ordering::Less,
        }
    }
}

/// The value type an operator family compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Num,
    Bool,
    Ts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IsKind {
    Null,
    Present,
    Numeric,
    Str,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone)]
enum Test {
    Str(Cmp, Box<str>),
    Num(Cmp, Num),
    Bool(bool),
    Ts(Cmp, Instant),
    /// Any `...Path` operator: the comparison value is read from a path at evaluation time.
    Path(Ty, Cmp, Operand),
    /// `Err` holds the message of the runtime error an open escape raises ([spec] StringMatches).
    Matches(Result<Pattern, String>),
    Is(IsKind, bool),
}

/// A number as serde_json stores it, ready for exact comparison.
#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    #[inline]
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::I(i)
        } else if let Some(u) = n.as_u64() {
            Num::U(u)
        } else {
            Num::F(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
        }
    }

    /// Integers compare exactly; as soon as a float is involved both sides are compared as
    /// IEEE-754 doubles, so `1 == 1.0` ([docs]: precision beyond binary64 is not guaranteed).
    #[inline]
    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::I(a), Num::I(b)) => Some(a.cmp(&b)),
            (Num::U(a), Num::U(b)) => Some(a.cmp(&b)),
            (Num::I(a), Num::U(b)) => Some(if a < 0 { Ordering::Less } else { (a as u64).cmp(&b) }),
            (Num::U(a), Num::I(b)) => Some(if b < 0 { Ordering::Greater } else { a.cmp(&(b as u64)) }),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths: compiled once, read by reference
// ---------------------------------------------------------------------------------------------

/// A `Variable` or `...Path` operand.
#[derive(Debug, Clone)]
struct Operand {
    /// Boxed: only the slow path and error messages read it, and it keeps `Node` small.
    path: Box<Path>,
    /// Set when the path is a plain walk (`.key`, `['key']`, `[n]`) from its root; the value is
    /// then borrowed from the scope instead of cloned by [`Path::eval`].
    fast: Option<Fast>,
}

#[derive(Debug, Clone)]
struct Fast {
    root: FastRoot,
    segs: Vec<Seg>,
}

#[derive(Debug, Clone)]
enum FastRoot {
    Input,
    Context,
    Var(String),
}

impl Operand {
    fn compile(v: &Value, field: &str) -> Result<Operand, (String, String)> {
        let Value::String(text) = v else {
            return Err((
                field.to_string(),
                format!("must be a string holding a path (beginning with '$'), got {}", describe(v)),
            ));
        };
        let path = Path::parse(text).map_err(|e| (field.to_string(), e))?;
        let fast = match path.root() {
            Root::Input => path.reference_segments().map(|s| Fast {
                root: FastRoot::Input,
                segs: s.to_vec(),
            }),
            // `$$...` and `$name...`: re-read the rest as a path on `$` to learn whether it is a
            // plain walk (path.rs only exposes the segments of input paths).
            Root::Context => simple_rest(&text[2..]).map(|segs| Fast {
                root: FastRoot::Context,
                segs,
            }),
            Root::Var(name) => simple_rest(&text[1 + name.len()..]).map(|segs| Fast {
                root: FastRoot::Var(name.clone()),
                segs,
            }),
        };
        Ok(Operand {
            path: Box::new(path),
            fast,
        })
    }

    /// The selected value; `None` when the path selects nothing (or names an undefined variable).
    #[inline]
    fn resolve<'s>(&self, scope: &Scope<'s>) -> Option<Cow<'s, Value>> {
        match &self.fast {
            Some(f) => {
                let (base, segs): (&'s Value, &[Seg]) = match &f.root {
                    FastRoot::Input => (scope.input, &f.segs),
                    FastRoot::Context => match (scope.execution_input, f.segs.as_slice()) {
                        (None, segs) => (scope.context, segs),
                        // The context object is stored without `Execution.Input` (see `Scope`).
                        (Some(exec_input), [Seg::Key(a), Seg::Key(b), rest @ ..]) if a == "Execution" && b == "Input" => (exec_input, rest),
                        // `$$` and `$$.Execution` need the input spliced in: let path.rs build them.
                        (Some(_), []) => return self.path.eval(scope).map(Cow::Owned),
                        (Some(_), [Seg::Key(a)]) if a == "Execution" => return self.path.eval(scope).map(Cow::Owned),
                        (Some(_), segs) => (scope.context, segs),
                    },
                    FastRoot::Var(name) => (scope.vars.get(name)?, &f.segs),
                };
                walk(base, segs).map(Cow::Borrowed)
            }
            None => self.path.eval(scope).map(Cow::Owned),
        }
    }

    /// The error AWS raises when a Choice Rule path selects nothing.
    fn invalid(&self) -> StatesError {
        StatesError::runtime(format!(
            "Invalid path '{}': The choice state's condition path references an invalid value.",
            self.path.text()
        ))
    }
}

fn simple_rest(rest: &str) -> Option<Vec<Seg>> {
    let p = Path::parse(&format!("${rest}")).ok()?;
    match p.root() {
        Root::Input => p.reference_segments().map(<[Seg]>::to_vec),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string '{}'", crate::path::truncate(s, 64)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The operator a field name denotes, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Cmp(Ty, Cmp, bool),
    Matches,
    Is(IsKind),
}

fn classify(name: &str) -> Option<Op> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let cmp = |s: &str| match s {
        "Equals" => Some(Cmp::Eq),
        "LessThan" => Some(Cmp::Lt),
        "GreaterThan" => Some(Cmp::Gt),
        "LessThanEquals" => Some(Cmp::Le),
        "GreaterThanEquals" => Some(Cmp::Ge),
        _ => None,
    };
    if let Some(r) = base.strip_prefix("String") {
        if r == "Matches" {
            return (!is_path).then_some(Op::Matches); // there is no StringMatchesPath
        }
        return cmp(r).map(|c| Op::Cmp(Ty::Str, c, is_path));
    }
    if let Some(r) = base.strip_prefix("Numeric") {
        return cmp(r).map(|c| Op::Cmp(Ty::Num, c, is_path));
    }
    if let Some(r) = base.strip_prefix("Timestamp") {
        return cmp(r).map(|c| Op::Cmp(Ty::Ts, c, is_path));
    }
    if base == "BooleanEquals" {
        return Some(Op::Cmp(Ty::Bool, Cmp::Eq, is_path));
    }
    if is_path {
        return None;
    }
    let kind = match name {
        "IsNull" => IsKind::Null,
        "IsPresent" => IsKind::Present,
        "IsNumeric" => IsKind::Numeric,
        "IsString" => IsKind::Str,
        "IsBoolean" => IsKind::Boolean,
        "IsTimestamp" => IsKind::Timestamp,
        _ => return None,
    };
    Some(Op::Is(kind))
}

const OPERATORS_HINT: &str = "one of StringEquals, StringLessThan, StringGreaterThan, StringLessThanEquals, \
StringGreaterThanEquals, StringMatches, NumericEquals, NumericLessThan, NumericGreaterThan, NumericLessThanEquals, \
NumericGreaterThanEquals, BooleanEquals, TimestampEquals, TimestampLessThan, TimestampGreaterThan, \
TimestampLessThanEquals, TimestampGreaterThanEquals, their ...Path variants, IsNull, IsPresent, IsNumeric, IsString, \
IsBoolean or IsTimestamp";

impl Node {
    /// `at` is the rule's own location relative to the top-level rule ("" for the top level,
    /// `And[0]`, `Not`, ...); `nested` is false only for a member of `Choices`.
    fn parse(v: &Value, at: &str, nested: bool) -> Result<Node, (String, String)> {
        let Value::Object(m) = v else {
            return Err((at.to_string(), format!("a Choice Rule must be a JSON object, got {}", describe(v))));
        };
        Self::parse_object(m, at, nested)
    }

    fn parse_object(m: &Map<String, Value>, at: &str, nested: bool) -> Result<Node, (String, String)> {
        let mut variable: Option<&Value> = None;
        let mut boolean: Option<(&str, &Value)> = None;
        let mut operator: Option<(&str, Op, &Value)> = None;

        for (k, val) in m {
            match k.as_str() {
                "Next" | "Assign" if nested => {
                    return Err((
                        join(at, k),
                        format!("a Choice Rule nested inside And, Or or Not must not have a '{k}' field; only top-level rules do"),
                    ));
                }
                "Next" | "Assign" => {} // read by the engine
                "Comment" => {
                    if !val.is_string() {
                        return Err((join(at, k), format!("must be a string, got {}", describe(val))));
                    }
                }
                "Variable" => variable = Some(val),
                "And" | "Or" | "Not" => {
                    if let Some((first, _)) = boolean {
                        return Err((
                            join(at, k),
                            format!("a Choice Rule may have only one of And, Or and Not, but it has both '{first}' and '{k}'"),
                        ));
                    }
                    boolean = Some((k.as_str(), val));
                }
                "Condition" => {
                    return Err((
                        join(at, k),
                        "'Condition' is a JSONata field; a JSONPath Choice Rule uses 'Variable' with a comparison operator".into(),
                    ));
                }
                _ => match classify(k) {
                    Some(op) => {
                        if let Some((first, _, _)) = operator {
                            return Err((
                                join(at, k),
                                format!("a Choice Rule must have exactly one comparison operator, but it has both '{first}' and '{k}'"),
                            ));
                        }
                        operator = Some((k.as_str(), op, val));
                    }
                    None => {
                        return Err((join(at, k), format!("unknown field '{k}' in a Choice Rule")));
                    }
                },
            }
        }

        if let Some((name, val)) = boolean {
            if variable.is_some() {
                return Err((
                    join(at, "Variable"),
                    format!("a Choice Rule with '{name}' must not also have 'Variable'"),
                ));
            }
            if let Some((op, _, _)) = operator {
                return Err((
                    join(at, op),
                    format!("a Choice Rule with '{name}' must not also have a comparison operator ('{op}')"),
                ));
            }
            let here = join(at, name);
            return match name {
                "Not" => match val {
                    Value::Object(inner) => Ok(Node::Not(Box::new(Self::parse_object(inner, &here, true)?))),
                    other => Err((
                        here,
                        format!("the value of 'Not' must be a single Choice Rule object, got {}", describe(other)),
                    )),
                },
                _ => {
                    let Value::Array(items) = val else {
                        return Err((
                            here,
                            format!(
                                "the value of '{name}' must be a non-empty array of Choice Rules, got {}",
                                describe(val)
                            ),
                        ));
                    };
                    if items.is_empty() {
                        return Err((here, format!("the value of '{name}' must be a non-empty array of Choice Rules")));
                    }
                    let rules = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| Self::parse(item, &format!("{here}[{i}]"), true))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(if name == "And" { Node::And(rules) } else { Node::Or(rules) })
                }
            };
        }

        let Some((name, op, val)) = operator else {
            return Err(match variable {
                Some(_) => (
                    join(at, "Variable"),
                    format!("a Choice Rule with 'Variable' needs a comparison operator: {OPERATORS_HINT}"),
                ),
                None => (
                    join(at, "Variable"),
                    "a Choice Rule must have 'Variable' with a comparison operator, or one of 'And', 'Or' and 'Not'".into(),
                ),
            });
        };
        let Some(var) = variable else {
            return Err((
                join(at, "Variable"),
                format!("a Choice Rule with '{name}' must have a 'Variable' field holding a path"),
            ));
        };
        let var = Operand::compile(var, &join(at, "Variable"))?;
        let field = join(at, name);
        let test = Self::parse_operand(name, op, val, &field)?;
        Ok(Node::Test { var, test })
    }

    fn parse_operand(name: &str, op: Op, val: &Value, field: &str) -> Result<Test, (String, String)> {
        let wrong = |what: &str| {
            Err((
                field.to_string(),
                format!("the value of '{name}' must be {what}, got {}", describe(val)),
            ))
        };
        match op {
            Op::Cmp(ty, cmp, true) => Ok(Test::Path(ty, cmp, Operand::compile(val, field)?)),
            Op::Cmp(Ty::Str, cmp, false) => match val {
                Value::String(s) => Ok(Test::Str(cmp, s.as_str().into())),
                _ => wrong("a string"),
            },
            Op::Cmp(Ty::Num, cmp, false) => match val {
                Value::Number(n) => Ok(Test::Num(cmp, Num::of(n))),
                _ => wrong("a number"),
            },
            Op::Cmp(Ty::Bool, _, false) => match val {
                Value::Bool(b) => Ok(Test::Bool(*b)),
                _ => wrong("a boolean"),
            },
            Op::Cmp(Ty::Ts, cmp, false) => match val {
                Value::String(s) => match parse_timestamp(s) {
                    Some(t) => Ok(Test::Ts(cmp, t)),
                    None => {
                        wrong("an RFC 3339 timestamp with an uppercase 'T' and a 'Z' or numeric offset, such as '2016-08-18T17:33:00Z'")
                    }
                },
                _ => wrong("a timestamp string"),
            },
            Op::Matches => match val {
                Value::String(s) => Ok(Test::Matches(Pattern::compile(s))),
                _ => wrong("a string pattern"),
            },
            Op::Is(kind) => match val {
                Value::Bool(b) => Ok(Test::Is(kind, *b)),
                _ => wrong("a boolean"),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

impl Node {
    fn eval(&self, scope: &Scope) -> Result<bool, StatesError> {
        match self {
            // [spec] Boolean expression: "ceasing array processing when the boolean value has been
            // unambiguously determined" — later rules (and their missing paths) are not evaluated.
            Node::And(rules) => {
                for r in rules {
                    if !r.eval(scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Node::Or(rules) => {
                for r in rules {
                    if r.eval(scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Node::Not(r) => Ok(!r.eval(scope)?),
            Node::Test { var, test } => {
                let value = var.resolve(scope);
                // [spec] IsPresent: "if the Variable-field Path fails to match anything in the input
                // no exception is thrown and the Choice Rule just returns false".
                if let Test::Is(IsKind::Present, want) = test {
                    return Ok(value.is_some() == *want);
                }
                let Some(value) = value else {
                    return Err(var.invalid());
                };
                test.eval(&value, scope)
            }
        }
    }
}

impl Test {
    #[inline]
    fn eval(&self, v: &Value, scope: &Scope) -> Result<bool, StatesError> {
        // [spec] "if the values are not both of the appropriate type ... the comparison will
        // return false".
        Ok(match self {
            Test::Str(cmp, s) => match v {
                Value::String(x) => cmp.holds(java_cmp(x, s)),
                _ => false,
            },
            Test::Num(cmp, n) => match v {
                Value::Number(x) => Num::of(x).cmp(*n).is_some_and(|o| cmp.holds(o)),
                _ => false,
            },
            Test::Bool(b) => matches!(v, Value::Bool(x) if x == b),
            Test::Ts(cmp, t) => match v {
                Value::String(x) => parse_timestamp(x).is_some_and(|x| cmp.holds(x.cmp(t))),
                _ => false,
            },
            Test::Path(ty, cmp, other) => {
                let Some(w) = other.resolve(scope) else {
                    return Err(other.invalid());
                };
                compare(*ty, *cmp, v, &w)
            }
            Test::Matches(pattern) => match v {
                Value::String(x) => match pattern {
                    Ok(p) => p.matches(x),
                    Err(msg) => return Err(StatesError::runtime(msg.clone())),
                },
                _ => false,
            },
            Test::Is(kind, want) => {
                let is = match kind {
                    IsKind::Null => v.is_null(),
                    IsKind::Present => true,
                    IsKind::Numeric => v.is_number(),
                    IsKind::Str => v.is_string(),
                    IsKind::Boolean => v.is_boolean(),
                    IsKind::Timestamp => {
                        matches!(v, Value::String(s) if parse_timestamp(s).is_some())
                    }
                };
                is == *want
            }
        })
    }
}

/// Compares two runtime values for a `...Path` operator.
#[inline]
fn compare(ty: Ty, cmp: Cmp, a: &Value, b: &Value) -> bool {
    match (ty, a, b) {
        (Ty::Str, Value::String(x), Value::String(y)) => cmp.holds(java_cmp(x, y)),
        (Ty::Num, Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)).is_some_and(|o| cmp.holds(o)),
        (Ty::Bool, Value::Bool(x), Value::Bool(y)) => x == y,
        (Ty::Ts, Value::String(x), Value::String(y)) => match (parse_timestamp(x), parse_timestamp(y)) {
            (Some(x), Some(y)) => cmp.holds(x.cmp(&y)),
            _ => false,
        },
        _ => false,
    }
}

/// Orders strings like Java's `String.compareTo` ([docs]: "To understand the behavior of string
/// comparisons, see the Java compareTo documentation"): by UTF-16 code units. That equals
/// code-point order except that characters above U+FFFF (surrogate pairs, 0xD800..) sort before
/// U+E000..U+FFFF.
fn java_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let n = x.len().min(y.len());
    let Some(mut i) = (0..n).find(|&i| x[i] != y[i]) else {
        return x.len().cmp(&y.len());
    };
    // The bytes before `i` are equal, so `i` is a char boundary in `a` exactly when it is one in
    // `b`; step back to the start of the differing characters.
    while !a.is_char_boundary(i) {
        i -= 1;
    }
    let ca = a[i..].chars().next().unwrap_or('\0');
    let cb = b[i..].chars().next().unwrap_or('\0');
    utf16_key(ca).cmp(&utf16_key(cb))
}

#[inline]
fn utf16_key(c: char) -> (u32, u32) {
    let c = c as u32;
    if c >= 0x1_0000 {
        (0xD800 + ((c - 0x1_0000) >> 10), c)
    } else {
        (c, c)
    }
}

// ---------------------------------------------------------------------------------------------
// StringMatches
// ---------------------------------------------------------------------------------------------

/// A `StringMatches` pattern: the literal pieces between unescaped `*` wildcards.
#[derive(Debug, Clone)]
struct Pattern {
    /// `parts.len() == stars + 1`; with no star the single part must equal the whole string.
    parts: Vec<String>,
}

impl Pattern {
    /// [spec] StringMatches: `*` matches zero or more characters and nothing else is special;
    /// `\*` is a literal `*`, `\\` a literal `\`; "If an open escape backslash `\` is found in the
    /// StringMatches string, the interpreter will throw a runtime error" — any other use of `\`
    /// (before another character, or at the end) yields `Err` with that error's message.
    fn compile(text: &str) -> Result<Pattern, String> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => parts.push(String::new()),
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => parts.last_mut().expect("non-empty").push(e),
                    _ => {
                        return Err(format!(
                            "The StringMatches pattern '{}' contains an open escape backslash: '\\' must be followed by '*' or '\\'",
                            crate::path::truncate(text, 128)
                        ))
                    }
                },
                c => parts.last_mut().expect("non-empty").push(c),
            }
        }
        Ok(Pattern { parts })
    }

    fn matches(&self, s: &str) -> bool {
        let parts = &self.parts;
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if parts.len() == 1 {
            return s == first;
        }
        if s.len() < first.len() + last.len() || !s.starts_with(first.as_str()) || !s.ends_with(last.as_str()) {
            return false;
        }
        // Between the anchored first and last pieces, find the middle pieces left to right; taking
        // the leftmost occurrence each time is optimal when `*` is the only wildcard.
        let mut rest = &s[first.len()..s.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part.as_str()) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// An instant: seconds since the Unix epoch and nanoseconds; the derived order is time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Instant {
    secs: i64,
    nanos: u32,
}

/// Parses a timestamp as [spec] "Timestamps" defines it: the RFC 3339 profile of ISO 8601, with an
/// uppercase `T` between date and time and an uppercase `Z` unless a numeric offset is given:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`. The fraction has 1 to 9 digits (nanosecond
/// precision); fields must be in range (no leap second 60, no February 30).
fn parse_timestamp(s: &str) -> Option<Instant> {
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied();
    let digits = |i: usize, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(i..i + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let year = digits(0, 4)?;
    if at(4)? != b'-' || at(7)? != b'-' || at(10)? != b'T' || at(13)? != b':' || at(16)? != b':' {
        return None;
    }
    let (month, day, hour, minute, second) = (digits(5, 2)?, digits(8, 2)?, digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if at(i) == Some(b'.') {
        i += 1;
        let start = i;
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(start, n)? * 10u32.pow((9 - n) as u32);
    }
    let offset: i64 = match at(i)? {
        b'Z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if at(i + 3)? != b':' || oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let secs = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some(Instant { secs, nanos })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Vars;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"Execution": {"Id": "arn:exec", "Input": {"x": 5, "name": "in-ctx"}}, "State": {"EnteredTime": "2024-01-01T00:00:00Z"}})
    }

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("limit".into(), json!(10));
        v.set("cfg".into(), json!({"mode": "fast", "when": "2024-01-01T00:00:00Z", "on": true}));
        v
    }

    fn eval_with(rule: &Value, input: &Value) -> Result<bool, StatesError> {
        let rule = Rule::parse(rule).unwrap_or_else(|e| panic!("parse {rule}: {e:?}"));
        let (c, v) = (ctx(), vars());
        rule.eval(&Scope::new(input, &c, &v))
    }

    fn ok(rule: Value, input: Value) -> bool {
        eval_with(&rule, &input).unwrap_or_else(|e| panic!("eval {rule} on {input}: {e:?}"))
    }

    /// `Variable: "$.v"` with `op: operand`, evaluated with `$.v` = `v`.
    fn t(op: &str, operand: Value, v: Value) -> bool {
        ok(json!({"Variable": "$.v", op: operand}), json!({"v": v}))
    }

    fn err(rule: Value, input: Value) -> StatesError {
        eval_with(&rule, &input).expect_err("expected a runtime error")
    }

    fn parse_err(rule: Value) -> (String, String) {
        Rule::parse(&rule).expect_err("expected a parse error")
    }

    // --- strings ----------------------------------------------------------------------------

    #[test]
    fn string_operators() {
        assert!(t("StringEquals", json!("abc"), json!("abc")));
        assert!(!t("StringEquals", json!("abc"), json!("ABC")));
        assert!(t("StringLessThan", json!("abd"), json!("abc")));
        assert!(!t("StringLessThan", json!("abc"), json!("abc")));
        assert!(t("StringLessThan", json!("abcd"), json!("abc"))); // a prefix sorts first
        assert!(t("StringLessThan", json!("a"), json!("B"))); // by code unit: 'B' (66) < 'a' (97)
        assert!(t("StringGreaterThan", json!("MyStringABC"), json!("MyStringABD")));
        assert!(!t("StringGreaterThan", json!("b"), json!("b")));
        assert!(t("StringLessThanEquals", json!("b"), json!("b")));
        assert!(t("StringLessThanEquals", json!("b"), json!("a")));
        assert!(!t("StringLessThanEquals", json!("b"), json!("c")));
        assert!(t("StringGreaterThanEquals", json!("b"), json!("b")));
        assert!(t("StringGreaterThanEquals", json!("b"), json!("c")));
        assert!(!t("StringGreaterThanEquals", json!("b"), json!("a")));
        assert!(t("StringEquals", json!(""), json!("")));
    }

    #[test]
    fn string_order_is_java_utf16_order() {
        // [docs] string comparison follows Java compareTo (UTF-16 code units): U+10000 is the
        // surrogate pair D800 DC00, which sorts before U+FFFF although its code point is larger.
        assert!(t("StringLessThan", json!("\u{FFFF}"), json!("\u{10000}")));
        assert!(t("StringGreaterThan", json!("\u{10000}"), json!("\u{FFFF}")));
        assert!(t("StringLessThan", json!("\u{10001}"), json!("\u{10000}")));
        assert!(t("StringLessThan", json!("é"), json!("e")));
        assert!(t("StringGreaterThan", json!("é"), json!("éa"))); // same prefix, longer is greater
        assert_eq!(java_cmp("ab\u{E000}", "ab\u{1F600}"), Ordering::Greater);
        assert_eq!(java_cmp("x", "x"), Ordering::Equal);
    }

    #[test]
    fn string_operators_on_other_types_are_false() {
        // [spec] "if the values are not both of the appropriate type ... the comparison will return false"
        for v in [json!(1), json!(true), json!(null), json!(["a"]), json!({"a": "a"})] {
            assert!(!t("StringEquals", json!("a"), v.clone()), "{v}");
            assert!(!t("StringLessThan", json!("z"), v.clone()), "{v}");
            assert!(!t("StringMatches", json!("*"), v.clone()), "{v}");
        }
        assert!(!t("StringEquals", json!("1"), json!(1)));
    }

    // --- StringMatches ------------------------------------------------------------------------

    #[test]
    fn string_matches_wildcards() {
        // The [spec] examples.
        assert!(t("StringMatches", json!("foo*.log"), json!("foo23.log")));
        assert!(t("StringMatches", json!("*.log"), json!("zebra.log")));
        assert!(t("StringMatches", json!("foo*.*"), json!("foobar.zebra")));
        assert!(!t("StringMatches", json!("foo*.log"), json!("foo23.txt")));
        assert!(t("StringMatches", json!("exact"), json!("exact")));
        assert!(!t("StringMatches", json!("exact"), json!("exactly")));
        assert!(t("StringMatches", json!("*"), json!("")));
        assert!(t("StringMatches", json!("**"), json!("anything")));
        assert!(t("StringMatches", json!(""), json!("")));
        assert!(!t("StringMatches", json!(""), json!("x")));
        assert!(t("StringMatches", json!("a*b*c"), json!("abc")));
        assert!(t("StringMatches", json!("a*b*c"), json!("aXXbYYc")));
        assert!(!t("StringMatches", json!("a*b*c"), json!("acb")));
        assert!(!t("StringMatches", json!("a*a"), json!("a"))); // prefix and suffix must not overlap
        assert!(t("StringMatches", json!("a*a"), json!("aa")));
        assert!(t("StringMatches", json!("*ab*ab*"), json!("xxabyyab")));
        assert!(t("StringMatches", json!("é*ü"), json!("é—ü")));
        assert!(t("StringMatches", json!("line1*line2"), json!("line1\nline2"))); // '*' spans newlines
                                                                                  // No character other than '*' is special ([spec]).
        assert!(t("StringMatches", json!("a?c[.]+"), json!("a?c[.]+")));
        assert!(!t("StringMatches", json!("a?c"), json!("abc")));
    }

    #[test]
    fn string_matches_escapes() {
        // [spec] The literal string \* represents * and \\ represents \ (in JSON: "\\*", "\\\\").
        assert!(t("StringMatches", json!("file\\*name.txt"), json!("file*name.txt")));
        assert!(!t("StringMatches", json!("file\\*name.txt"), json!("fileXname.txt")));
        assert!(t("StringMatches", json!("C:\\\\temp\\\\*"), json!("C:\\temp\\a.txt")));
        assert!(!t("StringMatches", json!("C:\\\\temp\\\\*"), json!("C:/temp/a.txt")));
        assert!(t("StringMatches", json!("\\\\*"), json!("\\anything"))); // escaped '\' then a wildcard
        assert!(t("StringMatches", json!("\\**"), json!("*tail"))); // literal '*' then a wildcard
        assert!(!t("StringMatches", json!("\\**"), json!("tail")));
    }

    #[test]
    fn string_matches_open_escape_is_a_runtime_error() {
        // [spec] "If an open escape backslash \ is found in the StringMatches string, the
        // interpreter will throw a runtime error."
        for pattern in ["abc\\", "a\\bc", "\\"] {
            let e = err(json!({"Variable": "$.v", "StringMatches": pattern}), json!({"v": "abc"}));
            assert_eq!(e.error, "States.Runtime");
            assert!(e.cause.contains("open escape"), "{}", e.cause);
        }
        // Only string values are matched at all; other types are simply false.
        assert!(!t("StringMatches", json!("a\\bc"), json!(5)));
    }

    // --- numbers ------------------------------------------------------------------------------

    #[test]
    fn numeric_operators() {
        assert!(t("NumericEquals", json!(1), json!(1)));
        assert!(t("NumericEquals", json!(1), json!(1.0))); // integer and float compare by value
        assert!(t("NumericEquals", json!(1.0), json!(1)));
        assert!(t("NumericEquals", json!(0), json!(-0.0)));
        assert!(!t("NumericEquals", json!(1), json!(1.000001)));
        assert!(t("NumericLessThan", json!(30), json!(22)));
        assert!(!t("NumericLessThan", json!(22), json!(22)));
        assert!(t("NumericLessThan", json!(2.5), json!(2)));
        assert!(t("NumericGreaterThan", json!(2), json!(2.5)));
        assert!(!t("NumericGreaterThan", json!(3), json!(3)));
        assert!(t("NumericLessThanEquals", json!(3), json!(3.0)));
        assert!(!t("NumericLessThanEquals", json!(3), json!(3.5)));
        assert!(t("NumericGreaterThanEquals", json!(20), json!(20)));
        assert!(!t("NumericGreaterThanEquals", json!(20), json!(19.999)));
        // Mixed signed / unsigned 64-bit integers compare exactly.
        assert!(t("NumericLessThan", json!(u64::MAX), json!(-1)));
        assert!(t("NumericGreaterThan", json!(-1), json!(u64::MAX)));
        assert!(t("NumericEquals", json!(u64::MAX), json!(u64::MAX)));
        assert!(!t("NumericEquals", json!(i64::MAX), json!(i64::MAX - 1)));
    }

    #[test]
    fn numeric_operators_on_other_types_are_false() {
        // [docs] "Step Functions doesn't attempt to match a numeric field to a string value."
        for v in [json!("1"), json!(true), json!(null), json!([1]), json!({"n": 1})] {
            assert!(!t("NumericEquals", json!(1), v.clone()), "{v}");
            assert!(!t("NumericLessThan", json!(100), v.clone()), "{v}");
        }
    }

    // --- booleans -----------------------------------------------------------------------------

    #[test]
    fn boolean_equals() {
        assert!(t("BooleanEquals", json!(true), json!(true)));
        assert!(t("BooleanEquals", json!(false), json!(false)));
        assert!(!t("BooleanEquals", json!(true), json!(false)));
        assert!(!t("BooleanEquals", json!(true), json!("true")));
        assert!(!t("BooleanEquals", json!(false), json!(0)));
        assert!(!t("BooleanEquals", json!(false), json!(null)));
    }

    // --- timestamps ---------------------------------------------------------------------------

    #[test]
    fn timestamp_operators_compare_instants() {
        let z = json!("2016-08-18T17:33:00Z");
        assert!(t("TimestampEquals", z.clone(), json!("2016-08-18T17:33:00Z")));
        // Same instant written with an offset, and with zero fractional digits.
        assert!(t("TimestampEquals", z.clone(), json!("2016-08-18T19:33:00+02:00")));
        assert!(t("TimestampEquals", z.clone(), json!("2016-08-18T12:03:00-05:30")));
        assert!(t("TimestampEquals", z.clone(), json!("2016-08-18T17:33:00.000Z")));
        assert!(t("TimestampEquals", z.clone(), json!("2016-08-18T17:33:00-00:00")));
        assert!(!t("TimestampEquals", z.clone(), json!("2016-08-18T17:33:00.001Z"))); // full precision
        assert!(t("TimestampLessThan", z.clone(), json!("2016-08-18T17:32:59.999999999Z")));
        assert!(!t("TimestampLessThan", z.clone(), json!("2016-08-18T17:33:00Z")));
        assert!(t("TimestampGreaterThan", z.clone(), json!("2016-08-18T17:33:00.5Z")));
        assert!(t("TimestampGreaterThan", z.clone(), json!("2016-08-18T18:00:00+00:20"))); // 17:40Z
        assert!(t("TimestampLessThanEquals", z.clone(), json!("2016-08-18T17:33:00Z")));
        assert!(t("TimestampLessThanEquals", z.clone(), json!("2015-12-31T23:59:59Z")));
        assert!(!t("TimestampLessThanEquals", z.clone(), json!("2016-08-18T17:33:01Z")));
        assert!(t("TimestampGreaterThanEquals", z.clone(), json!("2016-08-18T17:33:00Z")));
        assert!(t("TimestampGreaterThanEquals", z.clone(), json!("2100-01-01T00:00:00Z")));
        assert!(!t("TimestampGreaterThanEquals", z.clone(), json!("1970-01-01T00:00:00Z")));
        // The constant may carry an offset or a fraction too.
        assert!(t(
            "TimestampEquals",
            json!("2016-08-18T19:33:00.250+02:00"),
            json!("2016-08-18T17:33:00.25Z")
        ));
    }

    #[test]
    fn timestamp_operators_on_non_timestamps_are_false() {
        let z = json!("2016-08-18T17:33:00Z");
        for v in [
            json!("2016-08-18t17:33:00Z"), // lowercase t ([spec]: uppercase T required)
            json!("2016-08-18T17:33:00z"), // lowercase z
            json!("2016-08-18T17:33:00"),  // no zone
            json!("2016-08-18 17:33:00Z"), // space separator
            json!("2016-08-18"),           // date only
            json!("not a timestamp"),
            json!(1471541580),
            json!(null),
            json!(true),
        ] {
            assert!(!t("TimestampEquals", z.clone(), v.clone()), "{v}");
            assert!(!t("TimestampLessThan", json!("2999-01-01T00:00:00Z"), v.clone()), "{v}");
            assert!(!t("TimestampGreaterThan", json!("1000-01-01T00:00:00Z"), v.clone()), "{v}");
        }
        // A timestamp is a string, so StringEquals can match it too ([docs]).
        assert!(t("StringEquals", z.clone(), z));
    }

    #[test]
    fn is_timestamp_accepts_exactly_the_spec_profile() {
        let yes = [
            "2016-03-14T01:59:00Z",
            "2016-03-14T01:59:00.1Z",
            "2016-03-14T01:59:00.123456789Z",
            "2016-03-14T01:59:00+01:00",
            "2016-03-14T01:59:00.5-08:00",
            "2016-03-14T01:59:00-00:00",
            "2024-02-29T00:00:00Z", // leap year
            "2000-02-29T23:59:59Z", // divisible by 400
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ];
        for s in yes {
            assert!(t("IsTimestamp", json!(true), json!(s)), "{s}");
            assert!(!t("IsTimestamp", json!(false), json!(s)), "{s}");
        }
        let no = [
            "2016-03-14t01:59:00Z",
            "2016-03-14T01:59:00z",
            "2016-03-14 01:59:00Z",
            "2016-03-14T01:59:00",
            "2016-03-14T01:59Z",
            "2016-03-14T1:59:00Z",
            "16-03-14T01:59:00Z",
            "2016-03-14T01:59:00.Z",
            "2016-03-14T01:59:00.1234567890Z", // more than nanosecond precision
            "2016-03-14T01:59:00+0100",
            "2016-03-14T01:59:00+01",
            "2016-03-14T01:59:00+24:00",
            "2016-03-14T01:59:00Z ",
            " 2016-03-14T01:59:00Z",
            "2016-13-01T00:00:00Z",
            "2016-00-01T00:00:00Z",
            "2023-02-29T00:00:00Z", // not a leap year
            "1900-02-29T00:00:00Z", // divisible by 100, not by 400
            "2016-04-31T00:00:00Z",
            "2016-03-14T24:00:00Z",
            "2016-03-14T23:60:00Z",
            "2016-03-14T23:59:60Z", // no leap seconds
            "2016-03-14T01:59:00ZZ",
            "",
            "2012-10-09T19:00:55",
            "2023-02-24",
        ];
        for s in no {
            assert!(!t("IsTimestamp", json!(true), json!(s)), "{s}");
            assert!(t("IsTimestamp", json!(false), json!(s)), "{s}");
        }
        for v in [json!(0), json!(null), json!(true), json!([]), json!({})] {
            assert!(!t("IsTimestamp", json!(true), v.clone()), "{v}");
        }
    }

    #[test]
    fn timestamp_parser_agrees_with_chrono() {
        for s in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2016-03-14T01:59:00.123456789+05:45",
            "2000-02-29T12:00:00-11:59",
            "0001-01-01T00:00:00Z",
            "1600-03-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2038-01-19T03:14:08Z",
        ] {
            let mine = parse_timestamp(s).unwrap();
            let theirs = chrono::DateTime::parse_from_rfc3339(s).unwrap();
            assert_eq!(
                (mine.secs, mine.nanos),
                (theirs.timestamp(), theirs.timestamp_subsec_nanos()),
                "{s}"
            );
        }
    }

    // --- Is* ----------------------------------------------------------------------------------

    #[test]
    fn is_type_tests() {
        let cases = [
            (json!(null), "IsNull"),
            (json!(0), "IsNumeric"),
            (json!(1.5), "IsNumeric"),
            (json!(""), "IsString"),
            (json!("2016-03-14T01:59:00Z"), "IsString"),
            (json!(false), "IsBoolean"),
            (json!(true), "IsBoolean"),
        ];
        let ops = ["IsNull", "IsNumeric", "IsString", "IsBoolean"];
        for (v, which) in cases {
            for op in ops {
                let expect = op == which;
                assert_eq!(t(op, json!(true), v.clone()), expect, "{op} true on {v}");
                assert_eq!(t(op, json!(false), v.clone()), !expect, "{op} false on {v}");
            }
        }
        for v in [json!([]), json!({}), json!(["x"])] {
            for op in ops {
                assert!(!t(op, json!(true), v.clone()), "{op} {v}");
            }
        }
    }

    #[test]
    fn is_present() {
        // [spec] IsPresent never fails on a missing path; IsPresent: false matches it.
        assert!(t("IsPresent", json!(true), json!(null)));
        assert!(!t("IsPresent", json!(false), json!(null)));
        assert!(!ok(json!({"Variable": "$.nope", "IsPresent": true}), json!({})));
        assert!(ok(json!({"Variable": "$.nope", "IsPresent": false}), json!({})));
        assert!(!ok(json!({"Variable": "$.a.b.c", "IsPresent": true}), json!({"a": 1})));
        assert!(!ok(json!({"Variable": "$.list[5]", "IsPresent": true}), json!({"list": [1]})));
        assert!(ok(json!({"Variable": "$.list[-1]", "IsPresent": true}), json!({"list": [1]})));
        assert!(!ok(json!({"Variable": "$undefinedVar", "IsPresent": true}), json!({})));
        assert!(ok(json!({"Variable": "$undefinedVar.x", "IsPresent": false}), json!({})));
        assert!(ok(json!({"Variable": "$cfg.mode", "IsPresent": true}), json!({})));
        assert!(ok(json!({"Variable": "$$.Execution.Id", "IsPresent": true}), json!({})));
        assert!(!ok(json!({"Variable": "$$.Execution.Nope", "IsPresent": true}), json!({})));
    }

    #[test]
    fn missing_variable_is_states_runtime_except_for_is_present() {
        // [spec] only IsPresent is exempt; [docs] "If the state input doesn't contain the $.type
        // field, the execution fails".
        for (op, operand) in [
            ("StringEquals", json!("a")),
            ("StringMatches", json!("*")),
            ("NumericEquals", json!(1)),
            ("BooleanEquals", json!(true)),
            ("TimestampEquals", json!("2016-03-14T01:59:00Z")),
            ("NumericEqualsPath", json!("$.n")),
            ("IsNull", json!(true)),
            ("IsNull", json!(false)),
            ("IsNumeric", json!(false)),
            ("IsString", json!(true)),
            ("IsBoolean", json!(true)),
            ("IsTimestamp", json!(false)),
        ] {
            let e = err(json!({"Variable": "$.missing", op: operand}), json!({"n": 1}));
            assert_eq!(e.error, "States.Runtime", "{op}");
            assert_eq!(
                e.cause, "Invalid path '$.missing': The choice state's condition path references an invalid value.",
                "{op}"
            );
        }
        let e = err(json!({"Variable": "$nope", "StringEquals": "a"}), json!({}));
        assert_eq!(
            e.cause,
            "Invalid path '$nope': The choice state's condition path references an invalid value."
        );
        let e = err(json!({"Variable": "$$.Execution.Missing", "StringEquals": "a"}), json!({}));
        assert_eq!(
            e.cause,
            "Invalid path '$$.Execution.Missing': The choice state's condition path references an invalid value."
        );
        // A path through a scalar selects nothing either.
        let e = err(json!({"Variable": "$.s.x", "StringEquals": "a"}), json!({"s": "str"}));
        assert_eq!(e.error, "States.Runtime");
    }

    // --- ...Path variants ---------------------------------------------------------------------

    #[test]
    fn path_variants() {
        let input = json!({
            "s": "m", "lo": "a", "hi": "z",
            "n": 5, "five": 5.0, "big": 7,
            "t": true, "f": false,
            "ts": "2020-01-01T00:00:00Z", "ts_off": "2020-01-01T01:00:00+01:00", "later": "2021-01-01T00:00:00Z"
        });
        let p = |op: &str, var: &str, other: &str| ok(json!({"Variable": var, op: other}), input.clone());
        assert!(p("StringEqualsPath", "$.s", "$.s"));
        assert!(!p("StringEqualsPath", "$.s", "$.lo"));
        assert!(p("StringLessThanPath", "$.lo", "$.s"));
        assert!(p("StringGreaterThanPath", "$.hi", "$.s"));
        assert!(p("StringLessThanEqualsPath", "$.s", "$.s"));
        assert!(!p("StringLessThanEqualsPath", "$.hi", "$.s"));
        assert!(p("StringGreaterThanEqualsPath", "$.s", "$.lo"));
        assert!(p("NumericEqualsPath", "$.n", "$.five"));
        assert!(p("NumericLessThanPath", "$.n", "$.big"));
        assert!(p("NumericGreaterThanPath", "$.big", "$.n"));
        assert!(p("NumericLessThanEqualsPath", "$.five", "$.n"));
        assert!(p("NumericGreaterThanEqualsPath", "$.n", "$.five"));
        assert!(!p("NumericGreaterThanEqualsPath", "$.n", "$.big"));
        assert!(p("BooleanEqualsPath", "$.t", "$.t"));
        assert!(!p("BooleanEqualsPath", "$.t", "$.f"));
        assert!(p("TimestampEqualsPath", "$.ts", "$.ts_off"));
        assert!(p("TimestampLessThanPath", "$.ts", "$.later"));
        assert!(p("TimestampGreaterThanPath", "$.later", "$.ts"));
        assert!(p("TimestampLessThanEqualsPath", "$.ts_off", "$.ts"));
        assert!(p("TimestampGreaterThanEqualsPath", "$.later", "$.ts_off"));
        assert!(!p("TimestampGreaterThanEqualsPath", "$.ts", "$.later"));
        // The comparison path may read the context object or a variable.
        assert!(p("NumericEqualsPath", "$.n", "$$.Execution.Input.x"));
        assert!(p("NumericLessThanPath", "$.n", "$limit"));
        assert!(p("StringEqualsPath", "$cfg.mode", "$cfg.mode"));
        assert!(p("TimestampLessThanPath", "$.ts", "$$.State.EnteredTime"));
        assert!(p("BooleanEqualsPath", "$.t", "$cfg.on"));
        // Mismatched types on either side are false ([spec]).
        assert!(!p("NumericEqualsPath", "$.n", "$.s"));
        assert!(!p("NumericEqualsPath", "$.s", "$.n"));
        assert!(!p("StringEqualsPath", "$.n", "$.n"));
        assert!(!p("BooleanEqualsPath", "$.t", "$.s"));
        assert!(!p("TimestampEqualsPath", "$.ts", "$.s")); // "m" is not a timestamp
        assert!(!p("TimestampEqualsPath", "$.n", "$.ts"));
    }

    #[test]
    fn missing_comparison_path_is_states_runtime() {
        let e = err(
            json!({"Variable": "$.left", "NumericLessThanEqualsPath": "$.right"}),
            json!({"left": 8}),
        );
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(
            e.cause,
            "Invalid path '$.right': The choice state's condition path references an invalid value."
        );
        let e = err(
            json!({"Variable": "$.left", "StringEqualsPath": "$missingVar"}),
            json!({"left": "x"}),
        );
        assert_eq!(
            e.cause,
            "Invalid path '$missingVar': The choice state's condition path references an invalid value."
        );
        // ... even when the variable has the wrong type: both paths are resolved first.
        let e = err(json!({"Variable": "$.left", "NumericEqualsPath": "$.right"}), json!({"left": "x"}));
        assert_eq!(e.error, "States.Runtime");
    }

    // --- Variable forms -----------------------------------------------------------------------

    #[test]
    fn variable_roots() {
        assert!(ok(json!({"Variable": "$", "StringEquals": "whole"}), json!("whole")));
        assert!(ok(json!({"Variable": "$", "NumericGreaterThan": 1}), json!(2)));
        assert!(ok(
            json!({"Variable": "$$.Execution.Input.name", "StringEquals": "in-ctx"}),
            json!({})
        ));
        assert!(ok(json!({"Variable": "$limit", "NumericEquals": 10}), json!({})));
        assert!(ok(json!({"Variable": "$cfg.mode", "StringEquals": "fast"}), json!({})));
        assert!(ok(json!({"Variable": "$cfg['mode']", "StringEquals": "fast"}), json!({})));
        assert!(ok(
            json!({"Variable": "$.a['b c'][1]", "NumericEquals": 2}),
            json!({"a": {"b c": [1, 2]}})
        ));
        // Indefinite paths yield an array (Jayway semantics), which no scalar operator matches.
        let input = json!({"items": [{"p": 1}, {"p": 5}]});
        assert!(!ok(json!({"Variable": "$.items[*].p", "NumericEquals": 1}), input.clone()));
        assert!(ok(json!({"Variable": "$.items[*].p", "IsPresent": true}), input.clone()));
        assert!(!ok(json!({"Variable": "$.items[?(@.p > 3)].p", "IsNumeric": true}), input.clone()));
        assert!(ok(json!({"Variable": "$.items[0].p", "NumericEquals": 1}), input));
    }

    #[test]
    fn fast_paths_are_used_for_simple_paths() {
        let fast = |p: &str| Operand::compile(&json!(p), "Variable").unwrap().fast.is_some();
        assert!(fast("$"));
        assert!(fast("$.a.b[0]"));
        assert!(fast("$$"));
        assert!(fast("$$.Execution.Input.x"));
        assert!(fast("$var"));
        assert!(fast("$var.x['y'][2]"));
        assert!(!fast("$.items[*].p"));
        assert!(!fast("$$.Execution..x"));
    }

    #[test]
    fn context_with_separate_execution_input() {
        // The engine may keep `Execution.Input` out of the context object (`Scope::execution_input`).
        let context = json!({"Execution": {"Id": "arn:exec"}, "State": {"Name": "S"}});
        let exec_input = json!({"x": 5, "deep": {"k": "v"}});
        let v = Vars::new();
        let input = json!({"n": 5});
        let mut scope = Scope::new(&input, &context, &v);
        scope.execution_input = Some(&exec_input);
        let run = |r: Value| Rule::parse(&r).unwrap().eval(&scope);
        assert_eq!(run(json!({"Variable": "$$.Execution.Input.x", "NumericEquals": 5})), Ok(true));
        assert_eq!(run(json!({"Variable": "$$.Execution.Input.deep.k", "StringEquals": "v"})), Ok(true));
        assert_eq!(run(json!({"Variable": "$$.Execution.Input", "IsPresent": true})), Ok(true));
        assert_eq!(run(json!({"Variable": "$$.Execution.Id", "StringEquals": "arn:exec"})), Ok(true));
        assert_eq!(run(json!({"Variable": "$$.State.Name", "StringEquals": "S"})), Ok(true));
        assert_eq!(run(json!({"Variable": "$$.Execution", "IsPresent": true})), Ok(true));
        assert_eq!(run(json!({"Variable": "$$", "IsNull": false})), Ok(true));
        assert_eq!(
            run(json!({"Variable": "$.n", "NumericEqualsPath": "$$.Execution.Input.x"})),
            Ok(true)
        );
        assert_eq!(run(json!({"Variable": "$$.Execution.Input.nope", "IsPresent": true})), Ok(false));
        assert_eq!(
            run(json!({"Variable": "$$.Execution.Input.nope", "IsNull": true}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
    }

    // --- And / Or / Not -----------------------------------------------------------------------

    #[test]
    fn boolean_combinators() {
        let input = json!({"type": "Private", "value": 22});
        let in_twenties = json!({"And": [
            {"Variable": "$.value", "IsPresent": true},
            {"Variable": "$.value", "IsNumeric": true},
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30}
        ]});
        assert!(ok(in_twenties.clone(), input.clone()));
        assert!(!ok(in_twenties.clone(), json!({"value": 31})));
        // The same guard protects against a missing field ([spec] example).
        assert!(!ok(in_twenties, json!({})));
        assert!(!ok(
            json!({"Not": {"Variable": "$.type", "StringEquals": "Private"}}),
            input.clone()
        ));
        assert!(ok(json!({"Not": {"Variable": "$.type", "StringEquals": "Public"}}), input.clone()));
        assert!(ok(
            json!({"Or": [{"Variable": "$.value", "NumericEquals": 1}, {"Variable": "$.type", "StringEquals": "Private"}]}),
            input.clone()
        ));
        assert!(!ok(
            json!({"Or": [{"Variable": "$.value", "NumericEquals": 1}, {"Variable": "$.type", "StringEquals": "X"}]}),
            input.clone()
        ));
        let deep = json!({"Not": {"Or": [
            {"And": [{"Variable": "$.value", "NumericGreaterThan": 100}, {"Variable": "$.type", "StringEquals": "Private"}]},
            {"Not": {"Not": {"Variable": "$.type", "StringMatches": "Pub*"}}}
        ]}});
        assert!(ok(deep.clone(), input.clone()));
        assert!(!ok(deep, json!({"type": "Public", "value": 1})));
    }

    #[test]
    fn and_or_short_circuit_before_missing_paths() {
        // [spec] array processing stops "when the boolean value has been unambiguously determined".
        let missing = json!({"Variable": "$.missing", "NumericEquals": 1});
        assert!(!ok(
            json!({"And": [{"Variable": "$.v", "BooleanEquals": true}, missing.clone()]}),
            json!({"v": false})
        ));
        assert!(ok(
            json!({"Or": [{"Variable": "$.v", "BooleanEquals": false}, missing.clone()]}),
            json!({"v": false})
        ));
        let e = err(
            json!({"And": [{"Variable": "$.v", "BooleanEquals": false}, missing.clone()]}),
            json!({"v": false}),
        );
        assert_eq!(e.error, "States.Runtime");
        let e = err(
            json!({"Or": [{"Variable": "$.v", "BooleanEquals": true}, missing.clone()]}),
            json!({"v": false}),
        );
        assert_eq!(e.error, "States.Runtime");
        let e = err(json!({"Not": missing}), json!({}));
        assert_eq!(e.error, "States.Runtime");
    }

    // --- parse-time validation ----------------------------------------------------------------

    fn assert_parse_err(rule: Value, field: &str, needle: &str) {
        let (f, m) = parse_err(rule.clone());
        assert_eq!(f, field, "field for {rule}: {m}");
        assert!(m.contains(needle), "message for {rule}: {m:?} lacks {needle:?}");
    }

    #[test]
    fn top_level_next_comment_and_assign_are_left_to_the_engine() {
        let r = json!({"Variable": "$.v", "StringEquals": "a", "Next": "X", "Comment": "c", "Assign": {"x": 1}});
        assert!(ok(r, json!({"v": "a"})));
        assert!(Rule::parse(&json!({"Not": {"Variable": "$.v", "IsNull": true, "Comment": "nested comment"}, "Next": "X"})).is_ok());
    }

    #[test]
    fn operator_operand_types_are_checked() {
        assert_parse_err(
            json!({"Variable": "$.v", "StringEquals": 1}),
            "StringEquals",
            "must be a string, got number 1",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "StringLessThan": null}),
            "StringLessThan",
            "must be a string",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "StringMatches": ["*"]}),
            "StringMatches",
            "must be a string pattern",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "NumericEquals": "1"}),
            "NumericEquals",
            "must be a number, got string '1'",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "NumericGreaterThanEquals": true}),
            "NumericGreaterThanEquals",
            "must be a number",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "BooleanEquals": "true"}),
            "BooleanEquals",
            "must be a boolean",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "TimestampEquals": "2016-08-18"}),
            "TimestampEquals",
            "RFC 3339",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "TimestampLessThan": "2016-08-18t17:33:00Z"}),
            "TimestampLessThan",
            "RFC 3339",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "TimestampGreaterThan": 5}),
            "TimestampGreaterThan",
            "timestamp string",
        );
        for op in ["IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"] {
            assert_parse_err(json!({"Variable": "$.v", op: "true"}), op, "must be a boolean");
        }
        assert_parse_err(
            json!({"Variable": "$.v", "StringEqualsPath": "v"}),
            "StringEqualsPath",
            "must begin with '$'",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "NumericEqualsPath": 3}),
            "NumericEqualsPath",
            "must be a string holding a path",
        );
        assert_parse_err(
            json!({"Variable": "$.v", "TimestampEqualsPath": "$.a[?(@.x"}),
            "TimestampEqualsPath",
            "not a valid JSONPath",
        );
    }

    #[test]
    fn rule_shape_is_checked() {
        assert_parse_err(
            json!({"Variable": "$.v", "StringEquals": "a", "NumericEquals": 1}),
            "NumericEquals",
            "exactly one comparison operator",
        );
        assert_parse_err(json!({"StringEquals": "a"}), "Variable", "must have a 'Variable' field");
        assert_parse_err(json!({"Variable": "$.v"}), "Variable", "needs a comparison operator");
        assert_parse_err(
            json!({}),
            "Variable",
            "must have 'Variable' with a comparison operator, or one of 'And', 'Or' and 'Not'",
        );
        assert_parse_err(json!({"Variable": "v", "IsNull": true}), "Variable", "must begin with '$'");
        assert_parse_err(
            json!({"Variable": 7, "IsNull": true}),
            "Variable",
            "must be a string holding a path",
        );
        assert_parse_err(json!({"Variable": "$.v", "IsNull": true, "Foo": 1}), "Foo", "unknown field 'Foo'");
        assert_parse_err(
            json!({"Variable": "$.v", "StringMatchesPath": "$.p"}),
            "StringMatchesPath",
            "unknown field",
        );
        assert_parse_err(json!({"Variable": "$.v", "IsPresentPath": "$.p"}), "IsPresentPath", "unknown field");
        assert_parse_err(json!({"Variable": "$.v", "stringequals": "a"}), "stringequals", "unknown field");
        assert_parse_err(json!({"Condition": "{% true %}"}), "Condition", "JSONata");
        assert_parse_err(
            json!({"Variable": "$.v", "IsNull": true, "Comment": 3}),
            "Comment",
            "must be a string",
        );
    }

    #[test]
    fn boolean_rule_shape_is_checked() {
        assert_parse_err(json!({"And": []}), "And", "non-empty array");
        assert_parse_err(json!({"Or": []}), "Or", "non-empty array");
        assert_parse_err(
            json!({"And": {"Variable": "$.v", "IsNull": true}}),
            "And",
            "non-empty array of Choice Rules, got an object",
        );
        assert_parse_err(json!({"Or": "x"}), "Or", "non-empty array");
        assert_parse_err(json!({"Not": []}), "Not", "single Choice Rule object, got an array");
        assert_parse_err(json!({"Not": null}), "Not", "single Choice Rule object, got null");
        assert_parse_err(json!({"And": [1]}), "And[0]", "must be a JSON object, got number 1");
        assert_parse_err(
            json!({"And": [{"Variable": "$.v", "IsNull": true}], "Or": [{"Variable": "$.v", "IsNull": true}]}),
            "Or",
            "only one of And, Or and Not",
        );
        assert_parse_err(
            json!({"And": [{"Variable": "$.v", "IsNull": true}], "Variable": "$.v"}),
            "Variable",
            "must not also have 'Variable'",
        );
        assert_parse_err(
            json!({"Not": {"Variable": "$.v", "IsNull": true}, "IsNull": true}),
            "IsNull",
            "must not also have a comparison operator",
        );
    }

    #[test]
    fn nested_errors_name_the_nested_field() {
        assert_parse_err(
            json!({"And": [{"Variable": "$.v", "IsNull": true, "Next": "X"}]}),
            "And[0].Next",
            "must not have a 'Next' field",
        );
        assert_parse_err(
            json!({"Not": {"Variable": "$.v", "IsNull": true, "Assign": {}}}),
            "Not.Assign",
            "must not have a 'Assign' field",
        );
        assert_parse_err(
            json!({"Not": {"And": [{"Variable": "$.a", "IsNull": true}, {"Variable": "$.b", "StringEquals": 1}]}}),
            "Not.And[1].StringEquals",
            "must be a string",
        );
        assert_parse_err(
            json!({"Or": [{"Variable": "$.a", "IsNull": true}, {"Or": [{"Variable": "$.b"}]}]}),
            "Or[1].Or[0].Variable",
            "needs a comparison operator",
        );
        assert_parse_err(json!({"Or": [{"Not": {"And": []}}]}), "Or[0].Not.And", "non-empty array");
        assert_parse_err(
            json!({"And": [{"Variable": "nope", "IsNull": true}]}),
            "And[0].Variable",
            "must begin with '$'",
        );
    }
}
