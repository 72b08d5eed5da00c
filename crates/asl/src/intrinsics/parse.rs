//! Parsing an intrinsic function call into its tree, once, at load time.

use super::*;

pub(super) struct Parser<'t> {
    pub(super) text: &'t str,
    pub(super) bytes: &'t [u8],
    pub(super) pos: usize,
    pub(super) calls: usize,
}

pub(super) fn is_name_byte(b: u8) -> bool {
    // [SPEC] "An Intrinsic Function name MUST contain only the characters A through Z, a through
    // z, 0 through 9, ".", and "_"."
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_'
}

impl<'t> Parser<'t> {
    pub(super) fn err(&self, msg: impl std::fmt::Display) -> String {
        format!("invalid intrinsic function '{}': {} (at offset {})", self.text, msg, self.pos)
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub(super) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    pub(super) fn name(&mut self) -> &'t str {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    pub(super) fn call(&mut self) -> Result<Call, String> {
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
    pub(super) fn arg(&mut self) -> Result<(Arg, Option<&'t str>), String> {
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
    pub(super) fn string(&mut self) -> Result<(String, &'t str), String> {
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
    pub(super) fn path(&mut self) -> Result<Path, String> {
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

    pub(super) fn number(&mut self) -> Result<Value, String> {
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
pub(super) fn compile_template(raw: &str) -> Result<Vec<Piece>, String> {
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
