//! The intrinsic functions of JSONPath states (`States.Format`, `States.Array`, ...).
//!
//! An intrinsic is parsed once, when the definition loads, into a small tree of calls whose
//! arguments are literals, compiled [`Path`]s or nested calls; evaluation walks that tree and
//! never looks at the text again.
//!
//! Sources of the rules implemented here (cited again next to each rule):
//! * \[SPEC\] Amazon States Language specification, "Intrinsic Functions" and "Appendix B"
//!   (states-language.net/spec.html).
//! * \[DOC\] AWS developer guide, "Intrinsic functions for JSONPath states in Step Functions"
//!   (docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html).
//! * \[AWS-REC\] executions recorded against the real service, stored as snapshots in
//!   LocalStack's AWS-validated test suite (tests/aws/services/stepfunctions/v2/intrinsic_functions).
//! * \[AWS-ERR\] the cause AWS writes when an intrinsic's path argument selects nothing, as quoted
//!   from real executions (`States.Runtime`, "The function '...' had the following error: The
//!   JsonPath argument for the field '...' could not be found in the input '...'").
//! * \[SFN-LOCAL\] values observed on AWS Step Functions Local, as recorded by other emulators'
//!   test suites; used only where AWS itself documents nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use sha2::Digest as _;

use crate::error::{names, StatesError};
use crate::path::{truncate, walk, Path, Root, Scope};

/// \[DOC\] "You can nest up to 10 intrinsic functions within a field." The page's own example
/// counts every call in the field ("nine nested intrinsic functions" for a `States.Format` with
/// two arguments of four calls each), so the limit is on the total number of calls.
const MAX_CALLS: usize = 10;

/// \[DOC\] Base64Encode/Base64Decode take "a data string of up to 10,000 characters"; States.Hash
/// takes data "containing 10,000 characters or less".
const MAX_INPUT_CHARS: usize = 10_000;

/// \[DOC\] ArrayRange: "The newly generated array can't contain more than 1000 items."
const MAX_RANGE_ITEMS: i128 = 1000;

/// A parsed intrinsic function call, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Intrinsic {
    text: String,
    call: Call,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Func {
    const ALL: [Func; 18] = [
        Func::Format,
        Func::StringToJson,
        Func::JsonToString,
        Func::Array,
        Func::ArrayPartition,
        Func::ArrayContains,
        Func::ArrayRange,
        Func::ArrayGetItem,
        Func::ArrayLength,
        Func::ArrayUnique,
        Func::Base64Encode,
        Func::Base64Decode,
        Func::Hash,
        Func::JsonMerge,
        Func::MathRandom,
        Func::MathAdd,
        Func::StringSplit,
        Func::Uuid,
    ];

    fn name(self) -> &'static str {
        match self {
            Func::Format => "States.Format",
            Func::StringToJson => "States.StringToJson",
            Func::JsonToString => "States.JsonToString",
            Func::Array => "States.Array",
            Func::ArrayPartition => "States.ArrayPartition",
            Func::ArrayContains => "States.ArrayContains",
            Func::ArrayRange => "States.ArrayRange",
            Func::ArrayGetItem => "States.ArrayGetItem",
            Func::ArrayLength => "States.ArrayLength",
            Func::ArrayUnique => "States.ArrayUnique",
            Func::Base64Encode => "States.Base64Encode",
            Func::Base64Decode => "States.Base64Decode",
            Func::Hash => "States.Hash",
            Func::JsonMerge => "States.JsonMerge",
            Func::MathRandom => "States.MathRandom",
            Func::MathAdd => "States.MathAdd",
            Func::StringSplit => "States.StringSplit",
            Func::Uuid => "States.UUID",
        }
    }

    fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// (minimum, maximum) number of arguments, from \[DOC\]/\[SPEC\] for each function.
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            // "takes one or more arguments"
            Func::Format => (1, None),
            // "takes zero or more arguments"
            Func::Array => (0, None),
            Func::StringToJson | Func::JsonToString | Func::ArrayLength | Func::ArrayUnique | Func::Base64Encode | Func::Base64Decode => {
                (1, Some(1))
            }
            Func::ArrayPartition | Func::ArrayContains | Func::ArrayGetItem | Func::Hash | Func::MathAdd | Func::StringSplit => {
                (2, Some(2))
            }
            Func::ArrayRange | Func::JsonMerge => (3, Some(3)),
            // "the last argument controls the optional seed value"
            Func::MathRandom => (2, Some(3)),
            // "called with no arguments specified"
            Func::Uuid => (0, Some(0)),
        }
    }
}

#[derive(Debug, Clone)]
enum Arg {
    Lit(Value),
    Path(Path),
    Call(Box<Call>),
}

#[derive(Debug, Clone)]
struct Call {
    func: Func,
    args: Vec<Arg>,
    /// `States.Format` whose template is a string literal: compiled at parse time.
    template: Option<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Hole,
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    calls: usize,
}

fn is_name_byte(b: u8) -> bool {
    // [SPEC] "An Intrinsic Function name MUST contain only the characters A through Z, a through
    // z, 0 through 9, ".", and "_"."
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_'
}

impl<'t> Parser<'t> {
    fn err(&self, msg: impl std::fmt::Display) -> String {
        format!("invalid intrinsic function '{}': {} (at offset {})", self.text, msg, self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn name(&mut self) -> &'t str {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn call(&mut self) -> Result<Call, String> {
        let name_at = self.pos;
        let name = self.name();
        if name.is_empty() {
            return Err(self.err("expected an intrinsic function name"));
        }
        // [SPEC] "The Intrinsic Function name MUST be followed immediately by a list of zero or
        // more arguments, enclosed by "(" and ")", and separated by commas."
        if self.peek() != Some(b'(') {
            return Err(self.err(format!("expected '(' immediately after '{name}'")));
        }
        let Some(func) = Func::from_name(name) else {
            self.pos = name_at;
            return Err(self.err(format!("unknown intrinsic function '{name}'")));
        };
        self.calls += 1;
        if self.calls > MAX_CALLS {
            return Err(self.err(format!("a field may use at most {MAX_CALLS} intrinsic functions")));
        }
        self.pos += 1;
        self.skip_ws();
        let mut args = Vec::new();
        let mut first_raw: Option<&'t str> = None;
        if self.peek() == Some(b')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let (arg, raw) = self.arg()?;
                if args.is_empty() {
                    first_raw = raw;
                }
                args.push(arg);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(self.err(format!("missing ')' to close {}(", func.name()))),
                    Some(_) => return Err(self.err("expected ',' or ')' after an argument")),
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || max.is_some_and(|m| args.len() > m) {
            let expected = match max {
                None => format!("at least {min}"),
                Some(m) if m == min => min.to_string(),
                Some(m) => format!("{min} to {m}"),
            };
            return Err(format!(
                "invalid intrinsic function '{}': {} takes {} argument(s), but {} were given",
                self.text,
                func.name(),
                expected,
                args.len()
            ));
        }
        let mut template = None;
        if func == Func::Format {
            if let Some(raw) = first_raw {
                let pieces = compile_template(raw)
                    .map_err(|e| format!("invalid intrinsic function '{}': invalid template in States.Format: {e}", self.text))?;
                let holes = pieces.iter().filter(|p| **p == Piece::Hole).count();
                // [SPEC]/[DOC] "There MUST be as many remaining arguments ... as there are
                // occurrences of {}" -- known statically when the template is a literal.
                if holes != args.len() - 1 {
                    return Err(format!(
                        "invalid intrinsic function '{}': the template of States.Format has {} occurrence(s) of {{}} but {} argument(s) follow it",
                        self.text,
                        holes,
                        args.len() - 1
                    ));
                }
                template = Some(pieces);
            } else if matches!(args[0], Arg::Lit(_)) {
                return Err(format!(
                    "invalid intrinsic function '{}': the first argument of States.Format must be a string",
                    self.text
                ));
            }
        }
        Ok(Call { func, args, template })
    }

    /// One argument; for a string literal also its raw (still escaped) text.
    fn arg(&mut self) -> Result<(Arg, Option<&'t str>), String> {
        match self.peek() {
            // [SPEC] "Intrinsic Function arguments may be strings enclosed by apostrophe (')
            // characters, numbers, null, Paths, or nested Intrinsic Functions."
            Some(b'\'') => {
                let (value, raw) = self.string()?;
                Ok((Arg::Lit(Value::String(value)), Some(raw)))
            }
            Some(b'$') => Ok((Arg::Path(self.path()?), None)),
            Some(b'-' | b'0'..=b'9') => Ok((Arg::Lit(self.number()?), None)),
            Some(b) if is_name_byte(b) => {
                let start = self.pos;
                let word = self.name();
                if self.peek() == Some(b'(') {
                    self.pos = start;
                    return Ok((Arg::Call(Box::new(self.call()?)), None));
                }
                // [DOC] JsonMerge's third argument is the literal `false`, so booleans are
                // accepted besides the spec's null.
                let lit = match word {
                    "null" => Value::Null,
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        self.pos = start;
                        return Err(self.err(format!("unexpected '{word}' (strings must be quoted with ')")));
                    }
                };
                Ok((Arg::Lit(lit), None))
            }
            Some(b',' | b')') => Err(self.err("missing argument")),
            None => Err(self.err("unexpected end of the expression")),
            Some(_) => {
                let c = self.text[self.pos..].chars().next().unwrap_or('?');
                Err(self.err(format!("unexpected character '{c}'")))
            }
        }
    }

    /// A `'...'` literal. \[SPEC\]/\[DOC\] "Reserved characters": `\'`, `\{`, `\}` and `\\` stand
    /// for `'`, `{`, `}` and `\`; "If an open escape backslash \ is found in the intrinsic
    /// invocation string, the interpreter will return a runtime error" -- it is found here, at
    /// load time. Unescaped `{`/`}` are kept: \[AWS-REC\] runs
    /// `States.StringToJson('{"constant_in_literal": "false"}')` successfully.
    fn string(&mut self) -> Result<(String, &'t str), String> {
        self.pos += 1;
        let start = self.pos;
        let mut out = String::new();
        let mut run = start;
        loop {
            match self.peek() {
                None => {
                    self.pos = start - 1;
                    return Err(self.err("unterminated string literal"));
                }
                Some(b'\'') => {
                    out.push_str(&self.text[run..self.pos]);
                    let raw = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok((out, raw));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.pos]);
                    match self.bytes.get(self.pos + 1) {
                        Some(&c @ (b'\'' | b'{' | b'}' | b'\\')) => out.push(c as char),
                        _ => {
                            return Err(self.err("open escape backslash: only \\', \\{, \\} and \\\\ may be escaped in an intrinsic string"))
                        }
                    }
                    self.pos += 2;
                    run = self.pos;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A path argument ends at a top-level `,`, `)` or blank; brackets may hold anything
    /// (`$['a, b']`, `$.x[?(@.y > 1)]`).
    fn path(&mut self) -> Result<Path, String> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<u8> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                if c == b'\\' {
                    self.pos += 2;
                    continue;
                }
                if c == q {
                    quote = None;
                }
                self.pos += 1;
                continue;
            }
            match c {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b'\'' | b'"' if depth > 0 => quote = Some(c),
                b',' | b')' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        self.pos = self.pos.min(self.bytes.len());
        let token = &self.text[start..self.pos];
        Path::parse(token).map_err(|e| self.err(e))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.pos += 1;
        }
        let token = &self.text[start..self.pos];
        match serde_json::from_str::<Number>(token) {
            // `-0` is the integer 0, as in StringToJson.
            Ok(_) if token == "-0" => Ok(Value::from(0)),
            Ok(n) => Ok(Value::Number(n)),
            Err(_) => {
                self.pos = start;
                Err(self.err(format!("'{token}' is not a valid number")))
            }
        }
    }
}

/// Splits a `States.Format` template into text and `{}` holes. \[SPEC\] "If necessary, the { and }
/// characters can be escaped respectively as \\{ and \\}"; a `{` or `}` that is neither escaped
/// nor part of `{}` is an invalid template (AWS: "matching '}' not found for '{'", as recorded
/// by \[SFN-LOCAL\]). The same rules apply to a template that comes from a path at run time; there
/// a backslash before any other character is kept as it is.
fn compile_template(raw: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('\'' | '{' | '}' | '\\')) => {
                    cur.push(n);
                    chars.next();
                }
                _ => cur.push('\\'),
            },
            '{' => {
                if chars.peek() == Some(&'}') {
                    chars.next();
                    if !cur.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut cur)));
                    }
                    pieces.push(Piece::Hole);
                } else {
                    return Err("matching '}' not found for '{'".to_string());
                }
            }
            '}' => return Err("matching '{' not found for '}'".to_string()),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        pieces.push(Piece::Text(cur));
    }
    Ok(pieces)
}

impl Intrinsic {
    /// Parses an intrinsic function call (the value of a `.$` field that starts with `States.`).
    pub fn parse(text: &str) -> Result<Intrinsic, String> {
        let mut p = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            calls: 0,
        };
        let call = p.call()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.err("unexpected text after the closing ')'"));
        }
        Ok(Intrinsic {
            text: text.to_string(),
            call,
        })
    }

    /// Evaluates the call in `scope`.
    pub fn eval(&self, scope: &Scope) -> Result<Value, StatesError> {
        let cx = Cx {
            text: &self.text,
            scope: *scope,
        };
        cx.call(&self.call)
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// What every evaluation step needs: the whole expression (errors name it, not the inner call)
/// and the scope.
#[derive(Clone, Copy)]
struct Cx<'a> {
    text: &'a str,
    scope: Scope<'a>,
}

type Res<T> = Result<T, StatesError>;

fn kind(v: &Value) -> &'static str {
    crate::path::type_name(v)
}

impl<'a> Cx<'a> {
    fn fail(&self, detail: impl std::fmt::Display) -> StatesError {
        StatesError::new(
            names::INTRINSIC_FAILURE,
            format!("The function '{}' had the following error: {}", self.text, detail),
        )
    }

    fn invalid(&self, func: Func, detail: impl std::fmt::Display) -> StatesError {
        self.fail(format!("Invalid arguments in {}: {}", func.name(), detail))
    }

    /// \[AWS-ERR\] A path argument that selects nothing fails the execution with `States.Runtime`.
    fn not_found(&self, path: &Path) -> StatesError {
        let where_ = match path.root() {
            Root::Input => format!("in the input '{}'", truncate(&self.scope.input.to_string(), 256)),
            Root::Context => "in the context object".to_string(),
            Root::Var(name) if self.scope.vars.get(name).is_none() => {
                format!("because the variable '${name}' is not defined")
            }
            Root::Var(name) => format!("in the variable '${name}'"),
        };
        StatesError::runtime(format!(
            "The function '{}' had the following error: The JsonPath argument for the field '{}' could not be found {}",
            self.text,
            path.text(),
            where_
        ))
    }

    fn arg(&self, arg: &'a Arg) -> Res<Cow<'a, Value>> {
        match arg {
            Arg::Lit(v) => Ok(Cow::Borrowed(v)),
            Arg::Path(p) => {
                // Simple paths on the input are walked in place, without copying what they select.
                if let Some(segs) = p.reference_segments() {
                    return walk(self.scope.input, segs).map(Cow::Borrowed).ok_or_else(|| self.not_found(p));
                }
                p.eval(&self.scope).map(Cow::Owned).ok_or_else(|| self.not_found(p))
            }
            Arg::Call(c) => self.call(c).map(Cow::Owned),
        }
    }

    fn array(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<Cow<'a, [Value]>> {
        match self.arg(arg)? {
            Cow::Borrowed(Value::Array(a)) => Ok(Cow::Borrowed(a.as_slice())),
            Cow::Owned(Value::Array(a)) => Ok(Cow::Owned(a)),
            other => Err(self.invalid(func, format!("argument {pos} must be an array, but it is of type {}", kind(&other)))),
        }
    }

    fn string(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<Cow<'a, str>> {
        match self.arg(arg)? {
            Cow::Borrowed(Value::String(s)) => Ok(Cow::Borrowed(s.as_str())),
            Cow::Owned(Value::String(s)) => Ok(Cow::Owned(s)),
            other => Err(self.invalid(func, format!("argument {pos} must be a string, but it is of type {}", kind(&other)))),
        }
    }

    fn object(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<Cow<'a, Map<String, Value>>> {
        match self.arg(arg)? {
            Cow::Borrowed(Value::Object(m)) => Ok(Cow::Borrowed(m)),
            Cow::Owned(Value::Object(m)) => Ok(Cow::Owned(m)),
            other => Err(self.invalid(
                func,
                format!("argument {pos} must be a JSON object, but it is of type {}", kind(&other)),
            )),
        }
    }

    /// An integer argument. \[DOC\] (MathAdd, MathRandom, ArrayRange, ArrayPartition) "If you
    /// specify a non-integer value ..., Step Functions will round it off to the nearest integer";
    /// the rounding is Java's `Math.round` (half up), as \[AWS-REC\] shows for MathAdd.
    fn int(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<i64> {
        let v = self.arg(arg)?;
        let Value::Number(n) = &*v else {
            return Err(self.invalid(func, format!("argument {pos} must be an integer, but it is of type {}", kind(&v))));
        };
        if let Some(i) = n.as_i64() {
            return Ok(i);
        }
        n.as_f64()
            .and_then(java_round)
            .ok_or_else(|| self.invalid(func, format!("argument {pos} ({n}) is out of the integer range")))
    }

    fn call(&self, call: &'a Call) -> Res<Value> {
        let f = call.func;
        let a = &call.args;
        match f {
            Func::Format => self.format(call),
            Func::StringToJson => {
                let s = self.string(f, &a[0], 1)?;
                // [AWS-REC] an empty or blank string yields null.
                if s.trim().is_empty() {
                    return Ok(Value::Null);
                }
                let mut v: Value = serde_json::from_str(&s).map_err(|e| self.invalid(f, format!("the string is not valid JSON: {e}")))?;
                // [AWS-REC] "-0" parses to the integer 0 (serde_json reads it as -0.0).
                if s.contains("-0") {
                    fix_negative_zero(&mut v);
                }
                Ok(v)
            }
            Func::JsonToString => {
                // [AWS-REC] compact JSON text: {"Arg1":1,"Arg2":[]}
                let v = self.arg(&a[0])?;
                Ok(Value::String(serde_json::to_string(&*v).unwrap_or_default()))
            }
            Func::Array => a
                .iter()
                .map(|x| self.arg(x).map(Cow::into_owned))
                .collect::<Res<Vec<_>>>()
                .map(Value::Array),
            Func::ArrayPartition => {
                let arr = self.array(f, &a[0], 1)?;
                let size = self.int(f, &a[1], 2)?;
                // [DOC] "You must specify a non-zero, positive integer for the second argument"
                if size <= 0 {
                    return Err(self.invalid(f, format!("the chunk size must be a positive integer, but it is {size}")));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                let chunks: Vec<Value> = match arr {
                    Cow::Borrowed(v) => v.chunks(size).map(|c| Value::Array(c.to_vec())).collect(),
                    Cow::Owned(v) => {
                        let mut out = Vec::with_capacity(v.len().div_ceil(size));
                        let mut it = v.into_iter().peekable();
                        while it.peek().is_some() {
                            out.push(Value::Array(it.by_ref().take(size).collect()));
                        }
                        out
                    }
                };
                Ok(Value::Array(chunks))
            }
            Func::ArrayContains => {
                let arr = self.array(f, &a[0], 1)?;
                let needle = self.arg(&a[1])?;
                // Deep equality; object member order does not matter.
                Ok(Value::Bool(arr.contains(&*needle)))
            }
            Func::ArrayRange => {
                let start = self.int(f, &a[0], 1)?;
                let end = self.int(f, &a[1], 2)?;
                let step = self.int(f, &a[2], 3)?;
                // [DOC] "You must specify a non-zero value for the third argument."
                if step == 0 {
                    return Err(self.invalid(f, "the step (argument 3) must not be zero"));
                }
                let (s, e, st) = (i128::from(start), i128::from(end), i128::from(step));
                let count = if (st > 0 && e >= s) || (st < 0 && e <= s) {
                    (e - s) / st + 1
                } else {
                    0
                };
                if count > MAX_RANGE_ITEMS {
                    return Err(self.invalid(
                        f,
                        format!("the range would contain {count} items, but it can contain at most {MAX_RANGE_ITEMS}"),
                    ));
                }
                Ok(Value::Array((0..count).map(|i| Value::from((s + i * st) as i64)).collect()))
            }
            Func::ArrayGetItem => {
                let arr = self.array(f, &a[0], 1)?;
                let index = self.int(f, &a[1], 2)?;
                let len = arr.len();
                let Some(i) = usize::try_from(index).ok().filter(|i| *i < len) else {
                    return Err(self.invalid(f, format!("index {index} is out of bounds for an array of length {len}")));
                };
                Ok(match arr {
                    Cow::Borrowed(v) => v[i].clone(),
                    Cow::Owned(mut v) => v.swap_remove(i),
                })
            }
            Func::ArrayLength => Ok(Value::from(self.array(f, &a[0], 1)?.len())),
            Func::ArrayUnique => Ok(Value::Array(unique(self.array(f, &a[0], 1)?))),
            Func::Base64Encode => {
                let s = self.string(f, &a[0], 1)?;
                self.check_len(f, &s)?;
                Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())))
            }
            Func::Base64Decode => {
                let s = self.string(f, &a[0], 1)?;
                self.check_len(f, &s)?;
                // [DOC] "MIME Base64 decoding": line breaks are ignored and the padding is optional.
                let cleaned: Cow<str> = if s.bytes().any(|b| b.is_ascii_whitespace()) {
                    Cow::Owned(s.chars().filter(|c| !c.is_ascii_whitespace()).collect())
                } else {
                    Cow::Borrowed(&s)
                };
                let bytes = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
                    .decode(cleaned.as_bytes())
                    .map_err(|e| self.invalid(f, format!("the string is not valid Base64: {e}")))?;
                Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            }
            Func::Hash => {
                let data = self.arg(&a[0])?;
                let data: Cow<str> = match &*data {
                    Value::String(s) => Cow::Borrowed(s.as_str()),
                    Value::Null => return Err(self.invalid(f, "the data (argument 1) must not be null")),
                    other => {
                        let mut s = String::new();
                        render(other, &mut s);
                        Cow::Owned(s)
                    }
                };
                self.check_len(f, &data)?;
                let alg = self.string(f, &a[1], 2)?;
                let bytes = data.as_bytes();
                // [DOC] "MD5, SHA-1, SHA-256, SHA-384, SHA-512"; the digest is lowercase hex
                // (the page's SHA-1 example).
                let Some(digest) = digest_hex(&alg, bytes) else {
                    return Err(self.invalid(
                        f,
                        format!("'{alg}' is not a supported algorithm; use one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"),
                    ));
                };
                Ok(Value::String(digest))
            }
            Func::JsonMerge => {
                let left = self.object(f, &a[0], 1)?;
                let right = self.object(f, &a[1], 2)?;
                match &*self.arg(&a[2])? {
                    Value::Bool(false) => {}
                    // [DOC] "Currently, Step Functions only supports the shallow merging mode;
                    // therefore, you must specify the boolean value as false."
                    Value::Bool(true) => return Err(self.invalid(f, "deep merging is not supported; the third argument must be false")),
                    other => return Err(self.invalid(f, format!("argument 3 must be a boolean, but it is of type {}", kind(other)))),
                }
                // Shallow: a key of the second object replaces the same key of the first (which
                // keeps its position); nested objects are not merged.
                let mut out = left.into_owned();
                match right {
                    Cow::Borrowed(r) => out.extend(r.iter().map(|(k, v)| (k.clone(), v.clone()))),
                    Cow::Owned(r) => out.extend(r),
                }
                Ok(Value::Object(out))
            }
            Func::MathRandom => {
                let start = self.int(f, &a[0], 1)?;
                let end = self.int(f, &a[1], 2)?;
                let seed = match a.get(2) {
                    Some(s) => Some(self.int(f, s, 3)?),
                    None => None,
                };
                // [DOC] "a random number between the specified start number (inclusive) and end
                // number (exclusive)", so the range must not be empty.
                if start >= end {
                    return Err(self.invalid(f, format!("the start ({start}) must be less than the end ({end})")));
                }
                let value = match seed {
                    // [DOC] "if you use this function with the same seed value, it will return
                    // identical numbers": java.util.Random, as the Java-based service would.
                    Some(seed) => JavaRandom::new(seed).in_range(start, end),
                    None => rand::random_range(start..end),
                };
                Ok(Value::from(value))
            }
            Func::MathAdd => {
                let x = self.int(f, &a[0], 1)?;
                let y = self.int(f, &a[1], 2)?;
                // [DOC] "You must specify integer values in the range of -2147483648 and 2147483647."
                for (pos, v) in [(1, x), (2, y)] {
                    if i32::try_from(v).is_err() {
                        return Err(self.invalid(f, format!("argument {pos} ({v}) is outside the range -2147483648 to 2147483647")));
                    }
                }
                Ok(Value::from(x + y))
            }
            Func::StringSplit => {
                let s = self.string(f, &a[0], 1)?;
                let delims = self.string(f, &a[1], 2)?;
                // [DOC] with splitter ".+,=" "This.is+a,test=string" -> ["This","is","a","test","string"]:
                // every character of the second argument is a delimiter. [AWS-REC] empty members
                // are dropped: ",,,," -> [], " , " -> [" ", " "].
                let parts = s
                    .split(|c: char| delims.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                Ok(Value::Array(parts))
            }
            // [DOC] "a version 4 universally unique identifier (v4 UUID)"
            Func::Uuid => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
        }
    }

    fn check_len(&self, func: Func, s: &str) -> Res<()> {
        // Characters as the Java service counts them (UTF-16 units); never more than the bytes.
        if s.len() > MAX_INPUT_CHARS {
            let n = s.encode_utf16().count();
            if n > MAX_INPUT_CHARS {
                return Err(self.invalid(
                    func,
                    format!("the input has {n} characters, but at most {MAX_INPUT_CHARS} are allowed"),
                ));
            }
        }
        Ok(())
    }

    fn format(&self, call: &'a Call) -> Res<Value> {
        let f = Func::Format;
        let runtime_template;
        let pieces: &[Piece] = match &call.template {
            Some(p) => p,
            None => {
                let t = self.string(f, &call.args[0], 1)?;
                runtime_template = compile_template(&t).map_err(|e| self.fail(format!("Invalid template in States.Format: {e}")))?;
                let holes = runtime_template.iter().filter(|p| **p == Piece::Hole).count();
                if holes != call.args.len() - 1 {
                    return Err(self.invalid(f, "number of arguments do not match the occurrences of {}"));
                }
                &runtime_template
            }
        };
        let mut out = String::new();
        let mut next = call.args[1..].iter();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Hole => {
                    let arg = next
                        .next()
                        .ok_or_else(|| self.invalid(f, "number of arguments do not match the occurrences of {}"))?;
                    render(&*self.arg(arg)?, &mut out);
                }
            }
        }
        Ok(Value::String(out))
    }
}

/// Turns every -0.0 into the integer 0.
fn fix_negative_zero(v: &mut Value) {
    match v {
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) && n.is_f64() => {
            *v = Value::from(0);
        }
        Value::Array(a) => a.iter_mut().for_each(fix_negative_zero),
        Value::Object(m) => m.values_mut().for_each(fix_negative_zero),
        _ => {}
    }
}

/// The string a value becomes inside `States.Format` (and the text `States.Hash` digests when its
/// data is not a string). \[SPEC\] strings "are not accompanied by enclosing \" characters", null
/// is `null`, numbers and booleans are their JSON text. Objects and arrays (which the spec forbids
/// but AWS accepts) are written the way the Java service prints them: \[AWS-REC\] renders
/// `{"Arg1": 1, "Arg2": []}` as `{Arg1=1, Arg2=[]}` and the context object's `StateMachine` as
/// `{Id=arn:..., Name=...}`; arrays follow the same `java.util.List` style: `[a, 1, null]`.
fn render(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                render(x, out);
            }
            out.push('}');
        }
    }
}

/// Java's `Math.round(double)`: the closest integer, halves rounded up (-2.5 -> -2, 2.5 -> 3);
/// None when the value does not fit an i64.
fn java_round(x: f64) -> Option<i64> {
    if !x.is_finite() {
        return None;
    }
    let floor = x.floor();
    let r = if x - floor >= 0.5 { floor + 1.0 } else { floor };
    // -2^63 is exact; 2^63 is the first value that no longer fits.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r) {
        Some(r as i64)
    } else {
        None
    }
}

/// The lowercase hex digest of `bytes` with one of the algorithms Step Functions offers
/// (MD5, SHA-1, SHA-256, SHA-384, SHA-512), or None for another name.
pub(crate) fn digest_hex(alg: &str, bytes: &[u8]) -> Option<String> {
    Some(match alg {
        "MD5" => hex(&md5::Md5::digest(bytes)),
        "SHA-1" => hex(&sha1::Sha1::digest(bytes)),
        "SHA-256" => hex(&sha2::Sha256::digest(bytes)),
        "SHA-384" => hex(&sha2::Sha384::digest(bytes)),
        "SHA-512" => hex(&sha2::Sha512::digest(bytes)),
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// \[DOC\] ArrayUnique "removes duplicate values from an array": the first occurrence of each
/// value stays, in order. Equality is deep JSON equality (object member order does not matter).
fn unique(items: Cow<'_, [Value]>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(items.len());
    let mut push = |v: Cow<'_, Value>, out: &mut Vec<Value>| {
        let h = json_hash(&v);
        let bucket = seen.entry(h).or_default();
        if bucket.iter().any(|&i| out[i] == *v) {
            return;
        }
        bucket.push(out.len());
        out.push(v.into_owned());
    };
    match items {
        Cow::Borrowed(v) => v.iter().for_each(|x| push(Cow::Borrowed(x), &mut out)),
        Cow::Owned(v) => v.into_iter().for_each(|x| push(Cow::Owned(x), &mut out)),
    }
    out
}

/// A hash consistent with `Value`'s equality (objects: independent of member order).
fn json_hash(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    hash_into(v, &mut h);
    h.finish()
}

fn hash_into(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                (2u8, u).hash(h);
            } else if let Some(i) = n.as_i64() {
                (3u8, i).hash(h);
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                // 0.0 == -0.0
                (4u8, if f == 0.0 { 0 } else { f.to_bits() }).hash(h);
            }
        }
        Value::String(s) => (5u8, s).hash(h),
        Value::Array(a) => {
            (6u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_into(x, h));
        }
        Value::Object(m) => {
            let mut sum = 0u64;
            for (k, x) in m {
                let mut eh = DefaultHasher::new();
                k.hash(&mut eh);
                hash_into(x, &mut eh);
                sum = sum.wrapping_add(eh.finish());
            }
            (7u8, m.len(), sum).hash(h);
        }
    }
}

/// `java.util.Random`, for seeded `States.MathRandom`.
struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULT: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULT) & Self::MASK,
        }
    }

    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> (48 - bits)) as i64 as i32
    }

    /// `nextInt(bound)`, bound > 0.
    fn next_int(&mut self, bound: i32) -> i32 {
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }

    fn next_long(&mut self) -> i64 {
        (i64::from(self.next(32)) << 32).wrapping_add(i64::from(self.next(32)))
    }

    /// A number in `[start, end)`, start < end: `start + nextInt(end - start)` while the width
    /// fits an int, else a 64-bit draw.
    fn in_range(&mut self, start: i64, end: i64) -> i64 {
        let width = i128::from(end) - i128::from(start);
        match i32::try_from(width) {
            Ok(w) => start + i64::from(self.next_int(w)),
            Err(_) => (i128::from(start) + i128::from(self.next_long()).rem_euclid(width)) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Vars;
    use serde_json::json;

    fn run_in(expr: &str, input: &Value, ctx: &Value, vars: &Vars) -> Result<Value, StatesError> {
        Intrinsic::parse(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .eval(&Scope::new(input, ctx, vars))
    }

    fn run(expr: &str, input: Value) -> Result<Value, StatesError> {
        run_in(expr, &input, &json!({}), &Vars::new())
    }

    fn ok(expr: &str, input: Value) -> Value {
        run(expr, input).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn fails(expr: &str, input: Value) -> StatesError {
        match run(expr, input) {
            Ok(v) => panic!("{expr} should fail, got {v}"),
            Err(e) => e,
        }
    }

    fn intrinsic_failure(expr: &str, input: Value, needle: &str) {
        let e = fails(expr, input);
        assert_eq!(e.error, "States.IntrinsicFailure", "{expr}: {e}");
        assert!(
            e.cause.starts_with(&format!("The function '{expr}' had the following error: ")),
            "{}",
            e.cause
        );
        assert!(e.cause.contains(needle), "{expr}: '{}' lacks '{needle}'", e.cause);
    }

    fn parse_err(expr: &str, needle: &str) {
        match Intrinsic::parse(expr) {
            Ok(i) => panic!("{expr} should not parse: {i:?}"),
            Err(e) => assert!(e.contains(needle), "{expr}: '{e}' lacks '{needle}'"),
        }
    }

    // ---- parsing ---------------------------------------------------------------------------

    #[test]
    fn parse_rejects_syntax_errors() {
        parse_err("States.Nope(1)", "unknown intrinsic function 'States.Nope'");
        parse_err("Foo.Array(1)", "unknown intrinsic function 'Foo.Array'");
        parse_err("States.Array(1", "missing ')'");
        parse_err("States.Array(1) x", "unexpected text after the closing ')'");
        parse_err("States.Array(1,)", "missing argument");
        parse_err("States.Array(,1)", "missing argument");
        parse_err("States.Array(1 2)", "expected ',' or ')'");
        parse_err("States.Array (1)", "expected '(' immediately after 'States.Array'");
        parse_err("States.Array('abc)", "unterminated string literal");
        parse_err("States.Array(abc)", "unexpected 'abc'");
        parse_err("States.Array(\"abc\")", "unexpected character '\"'");
        parse_err("States.Array(01)", "'01' is not a valid number");
        parse_err("States.Array(1.)", "'1.' is not a valid number");
        parse_err("States.Array($.a[)", "is not a valid JSONPath");
        // [SPEC]/[DOC] only \' \{ \} \\ are escapes; an open backslash is an error.
        parse_err(r"States.Array('a\nb')", "open escape backslash");
        parse_err(r"States.Array('a\')", "unterminated string literal");
    }

    #[test]
    fn parse_checks_argument_counts() {
        parse_err("States.Format()", "States.Format takes at least 1 argument(s), but 0 were given");
        parse_err("States.UUID(1)", "States.UUID takes 0 argument(s), but 1 were given");
        parse_err("States.MathAdd(1)", "States.MathAdd takes 2 argument(s), but 1 were given");
        parse_err(
            "States.MathRandom(1, 2, 3, 4)",
            "States.MathRandom takes 2 to 3 argument(s), but 4 were given",
        );
        parse_err("States.ArrayRange(1, 2)", "States.ArrayRange takes 3 argument(s)");
        parse_err("States.JsonMerge($.a, $.b)", "States.JsonMerge takes 3 argument(s)");
        parse_err("States.StringToJson()", "States.StringToJson takes 1 argument(s)");
        parse_err("States.Hash('a')", "States.Hash takes 2 argument(s)");
        // Nested calls are checked too.
        parse_err("States.Array(States.ArrayLength())", "States.ArrayLength takes 1 argument(s)");
        // A literal template's {} count is known at load time.
        parse_err(
            "States.Format('{} and {}', 1)",
            "has 2 occurrence(s) of {} but 1 argument(s) follow it",
        );
        parse_err("States.Format('no holes', 1)", "has 0 occurrence(s) of {} but 1 argument(s)");
        parse_err("States.Format(1)", "the first argument of States.Format must be a string");
        parse_err("States.Format('a { b')", "matching '}' not found for '{'");
        parse_err("States.Format('a } b')", "matching '{' not found for '}'");
    }

    #[test]
    fn at_most_ten_calls_per_field() {
        // [DOC] the page's "myArn" example (nine calls) evaluates.
        let expr = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
        let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123:image-recipe/my.recipe/1.0.0"}});
        assert_eq!(ok(expr, input), json!("1.0"));
        // States.Array(1, States.Array(... States.Array() ...)): `calls` calls in all.
        let nest = |calls: usize, first: &str| {
            format!(
                "States.Array({first}{}{})",
                "States.Array(".repeat(calls - 1),
                ")".repeat(calls - 1)
            )
        };
        let mut expected = json!([]);
        for _ in 0..8 {
            expected = json!([expected]);
        }
        assert_eq!(ok(&nest(10, "1, "), json!({})), json!([1, expected]));
        let eleven = nest(10, "States.UUID(), ");
        parse_err(&eleven, "at most 10 intrinsic functions");
    }

    #[test]
    fn literals_whitespace_and_escapes() {
        assert_eq!(
            ok("States.Array('Foo', 2020, -1.5, 1e2, null, true, false, '')", json!({})),
            json!(["Foo", 2020, -1.5, 100.0, null, true, false, ""])
        );
        assert_eq!(ok("States.Array(  1 ,\n2\t)", json!({})), json!([1, 2]));
        assert_eq!(
            serde_json::to_string(&ok("States.Array(-0, -0.0, 0.0)", json!({}))).unwrap(),
            "[0,-0.0,0.0]"
        );
        assert_eq!(ok("States.Array( )", json!({})), json!([]));
        // [SPEC] \' \{ \} \\ stand for ' { } \ ; in the definition JSON they are written
        // "\\'" etc., which is what this Rust text holds.
        assert_eq!(
            ok(r"States.Array('it\'s', '\{x\}', 'a\\b')", json!({})),
            json!(["it's", "{x}", r"a\b"])
        );
        let from_json: Value = serde_json::from_str(r#"{"v.$": "States.Array('it\\'s \\{\\} \\\\')"}"#).unwrap();
        let expr = from_json["v.$"].as_str().unwrap();
        assert_eq!(ok(expr, json!({})), json!([r"it's {} \"]));
        // [AWS-REC] unescaped braces are fine outside a Format template.
        assert_eq!(
            ok(r#"States.StringToJson('{"a": [1, {"b": null}]}')"#, json!({})),
            json!({"a": [1, {"b": null}]})
        );
        // Commas and parentheses inside strings are not separators.
        assert_eq!(ok("States.Array('a, b)', ')')", json!({})), json!(["a, b)", ")"]));
        // Non-ASCII text.
        assert_eq!(ok("States.Array('héllo ☃')", json!({})), json!(["héllo ☃"]));
    }

    // ---- paths -----------------------------------------------------------------------------

    #[test]
    fn path_arguments_read_input_context_and_variables() {
        let input = json!({"a": {"b": [10, 20, 30]}, "x y": 5, "items": [{"p": 1}, {"p": 5}, {"p": 9}]});
        let ctx =
            json!({"Execution": {"Id": "arn:aws:states:us-east-1:1:execution:sm:run-1"}, "StateMachine": {"Id": "arn:sm", "Name": "sm"}});
        let mut vars = Vars::new();
        vars.set("cfg".into(), json!({"size": 3, "name": "cfg"}));
        let r = |e: &str| run_in(e, &input, &ctx, &vars).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert_eq!(r("States.Array($.a.b[1], $.a.b[-1], $['x y'])"), json!([20, 30, 5]));
        assert_eq!(r("States.Array($)"), json!([input.clone()]));
        assert_eq!(
            r("States.Array($$.Execution.Id)"),
            json!(["arn:aws:states:us-east-1:1:execution:sm:run-1"])
        );
        assert_eq!(r("States.Format('{}/{}', $cfg.name, $cfg.size)"), json!("cfg/3"));
        assert_eq!(r("States.Array($cfg)"), json!([{"size": 3, "name": "cfg"}]));
        // Indefinite paths yield arrays; brackets may hold commas, quotes and parentheses.
        assert_eq!(r("States.ArrayLength($.items[?(@.p > 3)])"), json!(2));
        assert_eq!(r("States.Array($.items[*].p, $['a']['b'][0])"), json!([[1, 5, 9], 10]));
        assert_eq!(
            r("States.ArrayGetItem(States.StringSplit($$.Execution.Id, ':'), 3)"),
            json!("us-east-1")
        );
        // [AWS-REC] test_context_json_path: an object from the context object inside Format.
        assert_eq!(
            r("States.Format('fst={} and snd={}.', $$.Execution.Id, $$.StateMachine)"),
            json!("fst=arn:aws:states:us-east-1:1:execution:sm:run-1 and snd={Id=arn:sm, Name=sm}.")
        );
    }

    #[test]
    fn a_path_that_selects_nothing_is_states_runtime() {
        // [AWS-ERR] the exact cause AWS writes (the engine adds the "An error occurred while
        // executing the state ..." prefix).
        let e = fails("States.Format('{}', $.nope)", json!({"other": 1}));
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(
            e.cause,
            "The function 'States.Format('{}', $.nope)' had the following error: The JsonPath argument for the field '$.nope' could not be found in the input '{\"other\":1}'"
        );
        // Nested: the cause names the whole expression.
        let e = fails("States.Array(States.ArrayLength($.a.missing))", json!({"a": {}}));
        assert_eq!(e.error, "States.Runtime");
        assert!(
            e.cause
                .starts_with("The function 'States.Array(States.ArrayLength($.a.missing))' had"),
            "{}",
            e.cause
        );
        assert!(e.cause.contains("'$.a.missing'"), "{}", e.cause);
        // Context object and variables.
        let vars = Vars::new();
        let e = run_in("States.Array($$.Map.Item.Value)", &json!({}), &json!({}), &vars).unwrap_err();
        assert_eq!(e.error, "States.Runtime");
        assert!(e.cause.ends_with("could not be found in the context object"), "{}", e.cause);
        let e = run_in("States.Array($undefinedVar.x)", &json!({}), &json!({}), &vars).unwrap_err();
        assert_eq!(e.error, "States.Runtime");
        assert!(
            e.cause.ends_with("because the variable '$undefinedVar' is not defined"),
            "{}",
            e.cause
        );
        // A path to an explicit null is not missing.
        assert_eq!(ok("States.Array($.n)", json!({"n": null})), json!([null]));
    }

    // ---- States.Format ---------------------------------------------------------------------

    #[test]
    fn format_examples_and_value_rendering() {
        // [DOC] both forms give "Hello, my name is Arnav."
        let input = json!({"name": "Arnav", "template": "Hello, my name is {}."});
        assert_eq!(
            ok("States.Format('Hello, my name is {}.', $.name)", input.clone()),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(ok("States.Format($.template, $.name)", input), json!("Hello, my name is Arnav."));
        // [SPEC] "States.Format('Your name is {}, we are in the year {}', $.name, 2020)"
        assert_eq!(
            ok(
                "States.Format('Your name is {}, we are in the year {}', $.name, 2020)",
                json!({"name": "Foo"})
            ),
            json!("Your name is Foo, we are in the year 2020")
        );
        assert_eq!(ok("States.Format('')", json!({})), json!(""));
        assert_eq!(ok("States.Format('plain')", json!({})), json!("plain"));
        // [AWS-REC] test_format_1/test_format_2: "", " ", null, 1, 1.1, a JSON-looking string
        // and an object.
        let f = "States.Format('Formatting arguments fst={} and snd={}.', $.fst, $.snd)";
        let cases = [
            (json!(""), "Formatting arguments fst= and snd=."),
            (json!(" "), "Formatting arguments fst=  and snd= ."),
            (json!(null), "Formatting arguments fst=null and snd=null."),
            (json!(1), "Formatting arguments fst=1 and snd=1."),
            (json!(1.1), "Formatting arguments fst=1.1 and snd=1.1."),
            (
                json!("{\"Arg1\": 1, \"Arg2\": []}"),
                "Formatting arguments fst={\"Arg1\": 1, \"Arg2\": []} and snd={\"Arg1\": 1, \"Arg2\": []}.",
            ),
            (
                json!({"Arg1": 1, "Arg2": []}),
                "Formatting arguments fst={Arg1=1, Arg2=[]} and snd={Arg1=1, Arg2=[]}.",
            ),
        ];
        for (v, expected) in cases {
            assert_eq!(ok(f, json!({"fst": v.clone(), "snd": v})), json!(expected));
        }
        assert_eq!(
            ok("States.Format('{}|{}|{}', true, false, -0.5)", json!({})),
            json!("true|false|-0.5")
        );
        assert_eq!(
            ok("States.Format('{}', $.a)", json!({"a": ["x", 1, null, {"k": [true]}]})),
            json!("[x, 1, null, {k=[true]}]")
        );
        // Nested calls as values and as the template.
        assert_eq!(
            ok("States.Format('{} items', States.ArrayLength($.a))", json!({"a": [1, 2, 3]})),
            json!("3 items")
        );
        assert_eq!(ok("States.Format(States.Format('{}-\\{\\}', 'x'), 7)", json!({})), json!("x-7"));
    }

    #[test]
    fn format_escapes() {
        // [SPEC] { and } can be escaped as \{ and \}; the escape is not a placeholder.
        assert_eq!(
            ok(r"States.Format('This value is \{{}\}', 'Foo')", json!({})),
            json!("This value is {Foo}")
        );
        assert_eq!(ok(r"States.Format('\{\}')", json!({})), json!("{}"));
        assert_eq!(ok(r"States.Format('{} - \'\{\}\\', 'Foo')", json!({})), json!(r"Foo - '{}\"));
        // [SPEC] example: "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)"
        let def: Value =
            serde_json::from_str(r#"{"greeting.$": "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)"}"#).unwrap();
        assert_eq!(
            ok(def["greeting.$"].as_str().unwrap(), json!({"firstName": "John", "lastName": "Doe"})),
            json!("Welcome to John Doe's playlist.")
        );
        // Values are inserted verbatim: braces and backslashes in them are not reinterpreted.
        assert_eq!(ok("States.Format('<{}>', $.v)", json!({"v": "{}\\{"})), json!("<{}\\{>"));
        // A template read from the input follows the same rules.
        assert_eq!(
            ok("States.Format($.t, 'Foo')", json!({"t": "This value is \\{{}\\}"})),
            json!("This value is {Foo}")
        );
    }

    #[test]
    fn format_runtime_failures() {
        intrinsic_failure(
            "States.Format($.t, 1)",
            json!({"t": "none"}),
            "number of arguments do not match the occurrences of {}",
        );
        intrinsic_failure(
            "States.Format($.t)",
            json!({"t": "{} {}"}),
            "number of arguments do not match the occurrences of {}",
        );
        intrinsic_failure("States.Format($.t)", json!({"t": "a { b"}), "matching '}' not found for '{'");
        intrinsic_failure(
            "States.Format($.t, 1)",
            json!({"t": 5}),
            "argument 1 must be a string, but it is of type number",
        );
    }

    // ---- JSON ------------------------------------------------------------------------------

    #[test]
    fn string_to_json() {
        // [DOC] {"escapedJsonString": "{\"foo\": \"bar\"}"} -> { "foo": "bar" }
        assert_eq!(
            ok("States.StringToJson($.s)", json!({"s": "{\"foo\": \"bar\"}"})),
            json!({"foo": "bar"})
        );
        // [AWS-REC] test_string_to_json
        let cases = [
            ("", json!(null)),
            (" ", json!(null)),
            ("null", json!(null)),
            ("-0", json!(0)),
            ("1", json!(1)),
            ("1.1", json!(1.1)),
            ("true", json!(true)),
            ("\"HelloWorld\"", json!("HelloWorld")),
            ("[1, 2, \"HelloWorld\"]", json!([1, 2, "HelloWorld"])),
            ("{\"Arg1\": 1, \"Arg2\": []}", json!({"Arg1": 1, "Arg2": []})),
        ];
        for (s, expected) in cases {
            assert_eq!(ok("States.StringToJson($.s)", json!({"s": s})), expected, "{s:?}");
        }
        intrinsic_failure("States.StringToJson($.s)", json!({"s": "{oops"}), "not valid JSON");
        intrinsic_failure("States.StringToJson($.s)", json!({"s": 5}), "argument 1 must be a string");
    }

    #[test]
    fn json_to_string() {
        // [AWS-REC] test_json_to_string: compact JSON text.
        let cases = [
            (json!(null), "null"),
            (json!(1), "1"),
            (json!(1.1), "1.1"),
            (json!(true), "true"),
            (json!("HelloWorld"), "\"HelloWorld\""),
            (json!([1, 2, "HelloWorld"]), "[1,2,\"HelloWorld\"]"),
            (json!({"Arg1": 1, "Arg2": []}), "{\"Arg1\":1,\"Arg2\":[]}"),
        ];
        for (v, expected) in cases {
            assert_eq!(ok("States.JsonToString($.v)", json!({"v": v})), json!(expected));
        }
        // Member order is kept.
        assert_eq!(
            ok("States.JsonToString($.v)", json!({"v": {"z": 1, "a": 2}})),
            json!("{\"z\":1,\"a\":2}")
        );
        // Round trip.
        assert_eq!(
            ok("States.StringToJson(States.JsonToString($.v))", json!({"v": {"a": [1, "x"]}})),
            json!({"a": [1, "x"]})
        );
    }

    #[test]
    fn json_merge() {
        // [DOC] example: json2's "a" replaces json1's "a", nested objects are not merged.
        let input = json!({"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}});
        let merged = ok("States.JsonMerge($.json1, $.json2, false)", input);
        assert_eq!(merged, json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3}));
        assert_eq!(serde_json::to_string(&merged).unwrap(), r#"{"a":{"a3":1,"a4":2},"b":2,"c":3}"#);
        // [AWS-REC] JsonMerge of a literal parsed with StringToJson and a context path.
        let ctx = json!({"Execution": {"Input": {"input_field": {"constant_input_field": "constant_value"}}}});
        let v = run_in(
            r#"States.JsonMerge(States.StringToJson('{"constant_in_literal": "false"}'), $$.Execution.Input.input_field, false)"#,
            &json!({}),
            &ctx,
            &Vars::new(),
        )
        .unwrap();
        assert_eq!(v, json!({"constant_in_literal": "false", "constant_input_field": "constant_value"}));
        // The same with the execution input held apart from the context object.
        let exec_input = json!({"input_field": {"k": "v"}});
        let ctx = json!({"Execution": {"Id": "x"}});
        let vars = Vars::new();
        let scope = Scope {
            execution_input: Some(&exec_input),
            ..Scope::new(&exec_input, &ctx, &vars)
        };
        let call = Intrinsic::parse("States.JsonMerge($$.Execution.Input.input_field, States.StringToJson('{\"a\": 1}'), false)").unwrap();
        assert_eq!(call.eval(&scope).unwrap(), json!({"k": "v", "a": 1}));
        intrinsic_failure(
            "States.JsonMerge($.a, $.b, true)",
            json!({"a": {}, "b": {}}),
            "deep merging is not supported",
        );
        intrinsic_failure(
            "States.JsonMerge($.a, $.b, 'false')",
            json!({"a": {}, "b": {}}),
            "argument 3 must be a boolean",
        );
        intrinsic_failure(
            "States.JsonMerge($.a, $.b, false)",
            json!({"a": [], "b": {}}),
            "argument 1 must be a JSON object, but it is of type array",
        );
        intrinsic_failure(
            "States.JsonMerge($.a, $.b, false)",
            json!({"a": {}, "b": 1}),
            "argument 2 must be a JSON object",
        );
    }

    // ---- arrays ----------------------------------------------------------------------------

    #[test]
    fn array() {
        // [DOC] {"Id": 123456} -> [123456]
        assert_eq!(ok("States.Array($.Id)", json!({"Id": 123456})), json!([123456]));
        // [SPEC] States.Array('Foo', 2020, $.someJson, null)
        assert_eq!(
            ok(
                "States.Array('Foo', 2020, $.someJson, null)",
                json!({"someJson": {"random": "abcdefg"}})
            ),
            json!(["Foo", 2020, {"random": "abcdefg"}, null])
        );
        assert_eq!(ok("States.Array()", json!({})), json!([]));
        assert_eq!(ok("States.Array(States.Array())", json!({})), json!([[]]));
    }

    #[test]
    fn array_partition() {
        // [DOC] [1..9] in chunks of 4 -> [[1,2,3,4],[5,6,7,8],[9]]
        let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]});
        assert_eq!(
            ok("States.ArrayPartition($.inputArray,4)", input.clone()),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(
            ok("States.ArrayPartition($.inputArray, 9)", input.clone()),
            json!([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
        );
        assert_eq!(
            ok("States.ArrayPartition($.inputArray, 20)", input.clone()),
            json!([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
        );
        assert_eq!(
            ok("States.ArrayPartition(States.Array(1, 2, 3), 2)", json!({})),
            json!([[1, 2], [3]])
        );
        assert_eq!(ok("States.ArrayPartition(States.Array(), 4)", json!({})), json!([]));
        // [DOC] "If you specify a non-integer value for the second argument, Step Functions will
        // round it off to the nearest integer."
        assert_eq!(
            ok("States.ArrayPartition($.inputArray, 2.5)", input.clone()),
            json!([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        );
        // [DOC] "You must specify a non-zero, positive integer"
        intrinsic_failure(
            "States.ArrayPartition($.inputArray, 0)",
            input.clone(),
            "the chunk size must be a positive integer, but it is 0",
        );
        intrinsic_failure("States.ArrayPartition($.inputArray, -1)", input.clone(), "it is -1");
        intrinsic_failure("States.ArrayPartition($.inputArray, 0.4)", input.clone(), "it is 0");
        intrinsic_failure("States.ArrayPartition($.inputArray, '4')", input, "argument 2 must be an integer");
        intrinsic_failure(
            "States.ArrayPartition($.x, 4)",
            json!({"x": "abc"}),
            "argument 1 must be an array, but it is of type string",
        );
    }

    #[test]
    fn array_contains() {
        // [DOC] lookingFor 5 in [1..9] -> true
        let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5});
        assert_eq!(ok("States.ArrayContains($.inputArray, $.lookingFor)", input.clone()), json!(true));
        assert_eq!(ok("States.ArrayContains($.inputArray, 10)", input.clone()), json!(false));
        assert_eq!(ok("States.ArrayContains($.inputArray, '5')", input), json!(false));
        // Deep equality, whatever the member order.
        let input = json!({"a": [[1, 2, 3], 2, {"x": 1, "y": [null]}, true], "o": {"y": [null], "x": 1}});
        assert_eq!(ok("States.ArrayContains($.a, $.o)", input.clone()), json!(true));
        assert_eq!(ok("States.ArrayContains($.a, States.Array(1, 2, 3))", input.clone()), json!(true));
        assert_eq!(ok("States.ArrayContains($.a, States.Array(1, 2))", input.clone()), json!(false));
        assert_eq!(ok("States.ArrayContains($.a, null)", input.clone()), json!(false));
        assert_eq!(ok("States.ArrayContains($.a, true)", input), json!(true));
        assert_eq!(ok("States.ArrayContains(States.Array(), null)", json!({})), json!(false));
        intrinsic_failure(
            "States.ArrayContains($.o, 1)",
            json!({"o": {}}),
            "argument 1 must be an array, but it is of type object",
        );
    }

    #[test]
    fn array_range() {
        // [DOC] States.ArrayRange(1, 9, 2) -> [1,3,5,7,9]
        assert_eq!(ok("States.ArrayRange(1, 9, 2)", json!({})), json!([1, 3, 5, 7, 9]));
        // [AWS-REC] test_array_range cases; the end is included only when a step lands on it.
        assert_eq!(ok("States.ArrayRange(0, 9, 3)", json!({})), json!([0, 3, 6, 9]));
        assert_eq!(ok("States.ArrayRange(0, 10, 3)", json!({})), json!([0, 3, 6, 9]));
        assert_eq!(ok("States.ArrayRange(1, 9, 9)", json!({})), json!([1]));
        assert_eq!(ok("States.ArrayRange(9, -1, -2)", json!({})), json!([9, 7, 5, 3, 1, -1]));
        assert_eq!(ok("States.ArrayRange(5, 5, 1)", json!({})), json!([5]));
        // A step that walks away from the end gives an empty array.
        assert_eq!(ok("States.ArrayRange(1, 9, -2)", json!({})), json!([]));
        assert_eq!(ok("States.ArrayRange(9, 1, 2)", json!({})), json!([]));
        // [DOC] non-integers are rounded to the nearest integer (Java: half up).
        assert_eq!(ok("States.ArrayRange(1.5, 4.4, 0.6)", json!({})), json!([2, 3, 4]));
        assert_eq!(
            ok("States.ArrayRange($.a, $.b, $.c)", json!({"a": -2, "b": 2, "c": 2})),
            json!([-2, 0, 2])
        );
        // [DOC] at most 1000 items.
        assert_eq!(ok("States.ArrayLength(States.ArrayRange(1, 1000, 1))", json!({})), json!(1000));
        assert_eq!(ok("States.ArrayLength(States.ArrayRange(0, -999, -1))", json!({})), json!(1000));
        intrinsic_failure(
            "States.ArrayRange(0, 1000, 1)",
            json!({}),
            "the range would contain 1001 items, but it can contain at most 1000",
        );
        intrinsic_failure(
            "States.ArrayRange(-9223372036854775808, 9223372036854775807, 1)",
            json!({}),
            "can contain at most 1000",
        );
        // [DOC] the third argument must not be zero.
        intrinsic_failure("States.ArrayRange(1, 9, 0)", json!({}), "the step (argument 3) must not be zero");
        intrinsic_failure(
            "States.ArrayRange('1', 9, 1)",
            json!({}),
            "argument 1 must be an integer, but it is of type string",
        );
    }

    #[test]
    fn array_get_item() {
        // [DOC] index 5 of [1..9] -> 6
        let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5});
        assert_eq!(ok("States.ArrayGetItem($.inputArray, $.index)", input.clone()), json!(6));
        assert_eq!(ok("States.ArrayGetItem($.inputArray, 0)", input.clone()), json!(1));
        assert_eq!(ok("States.ArrayGetItem($.inputArray, 8)", input.clone()), json!(9));
        assert_eq!(
            ok("States.ArrayGetItem(States.Array('a', States.Array('b')), 1)", json!({})),
            json!(["b"])
        );
        intrinsic_failure(
            "States.ArrayGetItem($.inputArray, 9)",
            input.clone(),
            "index 9 is out of bounds for an array of length 9",
        );
        intrinsic_failure("States.ArrayGetItem($.inputArray, -1)", input.clone(), "index -1 is out of bounds");
        intrinsic_failure(
            "States.ArrayGetItem(States.Array(), 0)",
            json!({}),
            "index 0 is out of bounds for an array of length 0",
        );
        intrinsic_failure("States.ArrayGetItem($.inputArray, 'a')", input, "argument 2 must be an integer");
    }

    #[test]
    fn array_length_and_unique() {
        // [DOC] length of [1..9] -> 9
        assert_eq!(
            ok(
                "States.ArrayLength($.inputArray)",
                json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]})
            ),
            json!(9)
        );
        assert_eq!(ok("States.ArrayLength(States.Array())", json!({})), json!(0));
        intrinsic_failure(
            "States.ArrayLength($.s)",
            json!({"s": "abc"}),
            "argument 1 must be an array, but it is of type string",
        );
        // [DOC] [1,2,3,3,3,3,3,3,4] -> [1,2,3,4]
        assert_eq!(
            ok(
                "States.ArrayUnique($.inputArray)",
                json!({"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]})
            ),
            json!([1, 2, 3, 4])
        );
        // First occurrence kept, in order; deep equality (member order ignored); 1 and "1" differ.
        let input = json!({"a": [null, null, true, true, false, 1, "1", 1, 1.1, 0, "HelloWorld", "HelloWorld", [], [],
            [null], [null], {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1, "b": 1}, 3, 1]});
        assert_eq!(
            ok("States.ArrayUnique($.a)", input),
            json!([null, true, false, 1, "1", 1.1, 0, "HelloWorld", [], [null], {"a": 1, "b": 2}, {"a": 1, "b": 1}, 3])
        );
        assert_eq!(ok("States.ArrayUnique(States.Array(3, 2, 3, 1, 2))", json!({})), json!([3, 2, 1]));
        intrinsic_failure("States.ArrayUnique($.o)", json!({"o": {}}), "must be an array");
    }

    // ---- encoding, hashing -----------------------------------------------------------------

    #[test]
    fn base64() {
        // [DOC] "Data to encode" <-> "RGF0YSB0byBlbmNvZGU="; [AWS-REC] "" <-> "".
        assert_eq!(
            ok("States.Base64Encode($.input)", json!({"input": "Data to encode"})),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            ok("States.Base64Decode($.base64)", json!({"base64": "RGF0YSB0byBlbmNvZGU="})),
            json!("Data to encode")
        );
        assert_eq!(ok("States.Base64Encode('')", json!({})), json!(""));
        assert_eq!(ok("States.Base64Decode('')", json!({})), json!(""));
        // UTF-8 text round trips.
        assert_eq!(ok("States.Base64Encode('héllo ☃')", json!({})), json!("aMOpbGxvIOKYgw=="));
        assert_eq!(
            ok("States.Base64Decode(States.Base64Encode('héllo ☃'))", json!({})),
            json!("héllo ☃")
        );
        // MIME decoding: missing padding and line breaks are accepted.
        assert_eq!(ok("States.Base64Decode('RGF0YSB0byBlbmNvZGU')", json!({})), json!("Data to encode"));
        assert_eq!(
            ok("States.Base64Decode($.s)", json!({"s": "RGF0YSB0\r\nbyBlbmNvZGU="})),
            json!("Data to encode")
        );
        intrinsic_failure("States.Base64Decode('R*F0')", json!({}), "not valid Base64");
        // [DOC] up to 10,000 characters, for both.
        let max = "a".repeat(10_000);
        assert_eq!(
            ok("States.ArrayLength(States.Array(States.Base64Encode($.s)))", json!({"s": max})),
            json!(1)
        );
        let long = "a".repeat(10_001);
        intrinsic_failure(
            "States.Base64Encode($.s)",
            json!({"s": long.clone()}),
            "the input has 10001 characters, but at most 10000 are allowed",
        );
        intrinsic_failure("States.Base64Decode($.s)", json!({"s": long}), "the input has 10001 characters");
        // Characters, not bytes: 5,000 two-byte characters are fine.
        assert!(ok("States.Base64Encode($.s)", json!({"s": "é".repeat(5_000)})).is_string());
        intrinsic_failure(
            "States.Base64Encode(1)",
            json!({}),
            "argument 1 must be a string, but it is of type number",
        );
    }

    #[test]
    fn hash() {
        // [DOC] lists MD5, SHA-1, SHA-256, SHA-384, SHA-512; digests are lowercase hex
        // (cross-checked with md5sum/sha*sum of "input data").
        let cases = [
            ("MD5", "812f45842bc6d66ee14572ce20db8e86"),
            ("SHA-1", "aaff4a450a104cd177d28d18d74485e8cae074b7"),
            ("SHA-256", "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
            (
                "SHA-384",
                "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562",
            ),
            (
                "SHA-512",
                "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4",
            ),
        ];
        for (alg, digest) in cases {
            let input = json!({"Data": "input data", "Algorithm": alg});
            assert_eq!(ok("States.Hash($.Data, $.Algorithm)", input), json!(digest), "{alg}");
        }
        assert_eq!(
            ok("States.Hash('', 'SHA-1')", json!({})),
            json!("da39a3ee5e6b4b0d3255bfef95601890afd80709")
        );
        // Data that is not a string is digested as its Format text ("1", "true", "{foo=bar}" --
        // the last as [SFN-LOCAL] records it).
        assert_eq!(
            ok("States.Hash($.d, 'SHA-1')", json!({"d": 1})),
            json!("356a192b7913b04c54574d18c28d46e6395428ab")
        );
        assert_eq!(
            ok("States.Hash($.d, 'SHA-1')", json!({"d": true})),
            json!("5ffe533b830f08a0326348a9160afafc8ada44db")
        );
        assert_eq!(
            ok("States.Hash($.d, 'SHA-1')", json!({"d": {"foo": "bar"}})),
            json!("dc2935b70ad43836e2e74df2d9758b1e51397997")
        );
        intrinsic_failure("States.Hash(null, 'SHA-1')", json!({}), "the data (argument 1) must not be null");
        intrinsic_failure("States.Hash('x', 'SHA-224')", json!({}), "'SHA-224' is not a supported algorithm");
        intrinsic_failure("States.Hash('x', 'sha-1')", json!({}), "'sha-1' is not a supported algorithm");
        intrinsic_failure("States.Hash('x', 1)", json!({}), "argument 2 must be a string");
        // [DOC] "10,000 characters or less"
        assert_eq!(
            ok("States.Hash($.s, 'MD5')", json!({"s": "a".repeat(10_000)}))
                .as_str()
                .map(str::len),
            Some(32)
        );
        intrinsic_failure(
            "States.Hash($.s, 'MD5')",
            json!({"s": "a".repeat(10_001)}),
            "at most 10000 are allowed",
        );
    }

    // ---- math ------------------------------------------------------------------------------

    #[test]
    fn math_add() {
        // [DOC] 111 + -1 -> 110
        assert_eq!(
            ok("States.MathAdd($.value1, $.step)", json!({"value1": 111, "step": -1})),
            json!(110)
        );
        assert_eq!(ok("States.MathAdd(-9, 3)", json!({})), json!(-6));
        // [AWS-REC] test_math_add: each argument is rounded (Java Math.round) before adding.
        let cases = [
            (1.49, 1.5, 3),
            (1.5, 1.51, 4),
            (-1.49, -1.5, -2),
            (-1.5, -1.51, -3),
            (0.5, 0.0, 1),
            (2.5, 0.0, 3),
            (-0.5, 0.0, 0),
            (-2.5, 0.0, -2),
            (-0.5, 0.5, 1),
            (1.49, -1.49, 0),
        ];
        for (x, y, sum) in cases {
            assert_eq!(ok("States.MathAdd($.x, $.y)", json!({"x": x, "y": y})), json!(sum), "{x} + {y}");
        }
        // [DOC] "integer values in the range of -2147483648 and 2147483647"
        assert_eq!(ok("States.MathAdd(2147483647, 2147483647)", json!({})), json!(4294967294_i64));
        assert_eq!(ok("States.MathAdd(-2147483648, 0)", json!({})), json!(-2147483648_i64));
        intrinsic_failure(
            "States.MathAdd(2147483648, 0)",
            json!({}),
            "argument 1 (2147483648) is outside the range -2147483648 to 2147483647",
        );
        intrinsic_failure(
            "States.MathAdd(0, -2147483649)",
            json!({}),
            "argument 2 (-2147483649) is outside the range",
        );
        intrinsic_failure(
            "States.MathAdd('1', 2)",
            json!({}),
            "argument 1 must be an integer, but it is of type string",
        );
        intrinsic_failure(
            "States.MathAdd(1, null)",
            json!({}),
            "argument 2 must be an integer, but it is of type null",
        );
        // Loop counter built from nested calls.
        assert_eq!(ok("States.MathAdd(States.ArrayLength($.a), -1)", json!({"a": [1, 2, 3]})), json!(2));
    }

    #[test]
    fn java_round_matches_math_round() {
        // Values from java.lang.Math.round.
        for (x, r) in [(-2.5, -2), (2.5, 3), (-0.5, 0), (0.49999999999999994, 0), (-1.5, -1), (1.5, 2)] {
            assert_eq!(java_round(x), Some(r), "{x}");
        }
        assert_eq!(java_round(1e300), None);
        assert_eq!(java_round(-9.3e18), None);
        assert_eq!(java_round(4.5e15 + 0.5), Some(4_500_000_000_000_001));
    }

    #[test]
    fn math_random() {
        // [DOC] start inclusive, end exclusive.
        let mut seen = [false; 3];
        for _ in 0..400 {
            let v = ok("States.MathRandom(1, 3)", json!({})).as_i64().unwrap();
            assert!((1..3).contains(&v), "{v}");
            seen[v as usize] = true;
        }
        assert_eq!(seen, [false, true, true]);
        for _ in 0..50 {
            let v = ok("States.MathRandom($.start, $.end)", json!({"start": -99999, "end": -9999}))
                .as_i64()
                .unwrap();
            assert!((-99999..-9999).contains(&v));
        }
        // [DOC] non-integer bounds are rounded: [12.5, 44.51) -> [13, 45)
        for _ in 0..50 {
            let v = ok("States.MathRandom(12.5, 44.51)", json!({})).as_i64().unwrap();
            assert!((13..45).contains(&v), "{v}");
        }
        // [DOC] the same seed gives the same number: java.util.Random's sequence (values
        // printed by `new Random(seed).nextInt(bound)` on a JVM).
        assert_eq!(ok("States.MathRandom(0, 10, 42)", json!({})), json!(0));
        assert_eq!(ok("States.MathRandom(1, 1000, 3)", json!({})), json!(240));
        assert_eq!(ok("States.MathRandom(0, 1000000007, -7)", json!({})), json!(577934662));
        assert_eq!(ok("States.MathRandom(100, 1048676, 12345)", json!({})), json!(379478));
        let a = ok("States.MathRandom(0, 999, $.seed)", json!({"seed": 3}));
        assert_eq!(a, ok("States.MathRandom(0, 999, $.seed)", json!({"seed": 3})));
        // Widths beyond an int still work and stay in range.
        let v = ok("States.MathRandom(-9000000000000000000, 9000000000000000000, 1)", json!({}))
            .as_i64()
            .unwrap();
        assert!((-9_000_000_000_000_000_000..9_000_000_000_000_000_000).contains(&v));
        intrinsic_failure("States.MathRandom(5, 5)", json!({}), "the start (5) must be less than the end (5)");
        intrinsic_failure("States.MathRandom(10, 1)", json!({}), "must be less than the end");
        intrinsic_failure("States.MathRandom('1', 2)", json!({}), "argument 1 must be an integer");
        intrinsic_failure("States.MathRandom(1, 2, 'x')", json!({}), "argument 3 must be an integer");
    }

    #[test]
    fn java_random_sequence() {
        // new Random(42).nextInt() and new Random(0).nextInt() on a JVM.
        assert_eq!(JavaRandom::new(42).next(32), -1170105035);
        assert_eq!(JavaRandom::new(0).next(32), -1155484576);
        assert_eq!(JavaRandom::new(3).next_int(999), 239);
        assert_eq!(JavaRandom::new(12345).next_int(1 << 20), 379378);
    }

    // ---- strings, uuid ---------------------------------------------------------------------

    #[test]
    fn string_split() {
        // [DOC] both examples.
        assert_eq!(
            ok(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "1,2,3,4,5", "splitter": ","})
            ),
            json!(["1", "2", "3", "4", "5"])
        );
        assert_eq!(
            ok(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "This.is+a,test=string", "splitter": ".+,="})
            ),
            json!(["This", "is", "a", "test", "string"])
        );
        // [AWS-REC] test_string_split: empty members are dropped, blanks are kept.
        let cases = [
            (" ", ",", json!([" "])),
            (" , ", ",", json!([" ", " "])),
            (", , ,", ",", json!([" ", " "])),
            (",,,,", ",", json!([])),
            ("split on T and \nnew line", "T\n", json!(["split on ", " and ", "new line"])),
        ];
        for (s, d, expected) in cases {
            assert_eq!(ok("States.StringSplit($.s, $.d)", json!({"s": s, "d": d})), expected, "{s:?}");
        }
        // [AWS-REC] test_string_split_context_object
        let csv = "Value1,Value2,Value3\nValue4,Value5,Value6\n,,,\ntrue,1,'HelloWorld'\nNull,None,\n   \n";
        assert_eq!(
            ok("States.StringSplit($.s, ',')", json!({"s": csv})),
            json!([
                "Value1",
                "Value2",
                "Value3\nValue4",
                "Value5",
                "Value6\n",
                "\ntrue",
                "1",
                "'HelloWorld'\nNull",
                "None",
                "\n   \n"
            ])
        );
        // [AWS-REC] test_escape_sequence: a newline inside the literal.
        assert_eq!(ok("States.StringSplit('Hello\nWorld', '\n')", json!({})), json!(["Hello", "World"]));
        assert_eq!(ok("States.StringSplit('', ',')", json!({})), json!([]));
        assert_eq!(ok("States.StringSplit('a,b', '')", json!({})), json!(["a,b"]));
        assert_eq!(ok("States.StringSplit('a☃b☃', '☃')", json!({})), json!(["a", "b"]));
        intrinsic_failure("States.StringSplit(1, ',')", json!({}), "argument 1 must be a string");
        intrinsic_failure("States.StringSplit('a', 1)", json!({}), "argument 2 must be a string");
    }

    #[test]
    fn uuid_is_a_random_v4() {
        let a = ok("States.UUID()", json!({}));
        let b = ok("States.UUID()", json!({}));
        assert_ne!(a, b);
        let s = a.as_str().unwrap();
        let groups: Vec<&str> = s.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{s}");
        assert!(s.chars().all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)), "{s}");
        assert!(groups[2].starts_with('4'), "{s}");
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "{s}");
    }

    #[test]
    fn intrinsics_work_inside_payload_templates() {
        let t = crate::path::Template::compile(&json!({"n.$": "States.MathAdd($.n, 1)", "s.$": "States.Format('n={}', $.n)"})).unwrap();
        let input = json!({"n": 41});
        let ctx = json!({});
        let vars = Vars::new();
        assert_eq!(t.eval(&Scope::new(&input, &ctx, &vars)).unwrap(), json!({"n": 42, "s": "n=41"}));
        let err = crate::path::Template::compile(&json!({"x.$": "States.Format('{}')"})).unwrap_err();
        assert_eq!(err.0, "x.$");
    }
}
