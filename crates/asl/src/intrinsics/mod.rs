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

mod eval;
mod parse;
#[cfg(test)]
mod tests;

pub(crate) use eval::digest_hex;
use eval::*;
use parse::*;
