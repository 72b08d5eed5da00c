//! Evaluating an intrinsic's tree against a scope.

use super::*;

/// What every evaluation step needs: the whole expression (errors name it, not the inner call)
/// and the scope.
#[derive(Clone, Copy)]
pub(super) struct Cx<'a> {
    pub(super) text: &'a str,
    pub(super) scope: Scope<'a>,
}

pub(super) type Res<T> = Result<T, StatesError>;

pub(super) fn kind(v: &Value) -> &'static str {
    crate::path::type_name(v)
}

impl<'a> Cx<'a> {
    pub(super) fn fail(&self, detail: impl std::fmt::Display) -> StatesError {
        StatesError::new(
            names::INTRINSIC_FAILURE,
            format!("The function '{}' had the following error: {}", self.text, detail),
        )
    }

    pub(super) fn invalid(&self, func: Func, detail: impl std::fmt::Display) -> StatesError {
        self.fail(format!("Invalid arguments in {}: {}", func.name(), detail))
    }

    /// \[AWS-ERR\] A path argument that selects nothing fails the execution with `States.Runtime`.
    pub(super) fn not_found(&self, path: &Path) -> StatesError {
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

    pub(super) fn arg(&self, arg: &'a Arg) -> Res<Cow<'a, Value>> {
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

    pub(super) fn array(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<Cow<'a, [Value]>> {
        match self.arg(arg)? {
            Cow::Borrowed(Value::Array(a)) => Ok(Cow::Borrowed(a.as_slice())),
            Cow::Owned(Value::Array(a)) => Ok(Cow::Owned(a)),
            other => Err(self.invalid(func, format!("argument {pos} must be an array, but it is of type {}", kind(&other)))),
        }
    }

    pub(super) fn string(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<Cow<'a, str>> {
        match self.arg(arg)? {
            Cow::Borrowed(Value::String(s)) => Ok(Cow::Borrowed(s.as_str())),
            Cow::Owned(Value::String(s)) => Ok(Cow::Owned(s)),
            other => Err(self.invalid(func, format!("argument {pos} must be a string, but it is of type {}", kind(&other)))),
        }
    }

    pub(super) fn object(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<Cow<'a, Map<String, Value>>> {
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
    pub(super) fn int(&self, func: Func, arg: &'a Arg, pos: usize) -> Res<i64> {
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

    pub(super) fn call(&self, call: &'a Call) -> Res<Value> {
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

    pub(super) fn check_len(&self, func: Func, s: &str) -> Res<()> {
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

    pub(super) fn format(&self, call: &'a Call) -> Res<Value> {
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
pub(super) fn fix_negative_zero(v: &mut Value) {
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
pub(super) fn render(v: &Value, out: &mut String) {
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
pub(super) fn java_round(x: f64) -> Option<i64> {
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

pub(super) fn hex(bytes: &[u8]) -> String {
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
pub(super) fn unique(items: Cow<'_, [Value]>) -> Vec<Value> {
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
pub(super) fn json_hash(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    hash_into(v, &mut h);
    h.finish()
}

pub(super) fn hash_into(v: &Value, h: &mut DefaultHasher) {
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
pub(super) struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULT: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    pub(super) fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULT) & Self::MASK,
        }
    }

    pub(super) fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> (48 - bits)) as i64 as i32
    }

    /// `nextInt(bound)`, bound > 0.
    pub(super) fn next_int(&mut self, bound: i32) -> i32 {
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

    pub(super) fn next_long(&mut self) -> i64 {
        (i64::from(self.next(32)) << 32).wrapping_add(i64::from(self.next(32)))
    }

    /// A number in `[start, end)`, start < end: `start + nextInt(end - start)` while the width
    /// fits an int, else a 64-bit draw.
    pub(super) fn in_range(&mut self, start: i64, end: i64) -> i64 {
        let width = i128::from(end) - i128::from(start);
        match i32::try_from(width) {
            Ok(w) => start + i64::from(self.next_int(w)),
            Err(_) => (i128::from(start) + i128::from(self.next_long()).rem_euclid(width)) as i64,
        }
    }
}
