//! Input and output processing: InputPath, Parameters/Arguments, ResultSelector, ResultPath,
//! OutputPath, Assign, and what JSONPath's `$` and JSONata's `$states` see.

use super::*;

pub(super) fn apply_result_path(rp: &ResultPath, raw_input: &Value, result: Value) -> Result<Value, StatesError> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(raw_input.clone()),
        ResultPath::At { segs, text } => set_at(raw_input.clone(), segs, result).map_err(|_| {
            let shown = Value::String(truncate(&raw_input.to_string(), 256));
            StatesError::runtime(format!("Unable to apply ReferencePath {text} to input {shown}"))
        }),
    }
}

/// InputPath: borrows the input when it is used whole.
pub(super) fn apply_input_path<'v>(p: &IoPath, v: &'v Value, exec: &Exec, pc: &PathCtx) -> Result<Cow<'v, Value>, StatesError> {
    match p {
        IoPath::Whole => Ok(Cow::Borrowed(v)),
        _ => apply_io_path(p, v, exec, pc).map(Cow::Owned),
    }
}

/// OutputPath: moves the value when it is used whole.
pub(super) fn apply_output_path(p: &IoPath, v: Value, exec: &Exec, pc: &PathCtx) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v),
        _ => apply_io_path(p, &v, exec, pc),
    }
}

pub(super) fn apply_io_path(p: &IoPath, v: &Value, exec: &Exec, pc: &PathCtx) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v.clone()),
        IoPath::Discard => Ok(Value::Object(Map::new())),
        IoPath::Select(path) => {
            let scope = exec.scope(v, pc);
            path.eval(&scope).ok_or_else(|| {
                StatesError::runtime(format!(
                    "Invalid path '{}' : No results for path: {}",
                    path.text(),
                    path.bracket_text()
                ))
            })
        }
    }
}

/// What a state's expressions see: JSONPath's `$` (`dollar`), and JSONata's `$states.input`,
/// `$states.result` and `$states.errorOutput`.
pub(super) struct Seen<'a> {
    pub(super) input: &'a Value,
    pub(super) dollar: &'a Value,
    pub(super) result: Option<&'a Value>,
    pub(super) error_output: Option<&'a Value>,
}

impl<'a> Seen<'a> {
    pub(super) fn of(input: &'a Value) -> Self {
        Seen {
            input,
            dollar: input,
            result: None,
            error_output: None,
        }
    }
}

/// Evaluates an Assign block against the variables as they were when the state was entered;
/// the caller applies the values when the state exits.
pub(super) fn eval_assign(exec: &Exec, a: &Assign, seen: &Seen, pc: &PathCtx) -> Result<Map<String, Value>, StatesError> {
    let v = match a {
        Assign::Path(t) => t.eval(&exec.scope(seen.dollar, pc))?,
        Assign::Jsonata(t) => t.eval(&exec.jenv(pc, seen), "Assign")?,
    };
    match v {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

pub(super) fn opt_assign(exec: &Exec, st: &State, dollar: &Value, pc: &PathCtx) -> Result<Option<Map<String, Value>>, StatesError> {
    st.assign.as_ref().map(|a| eval_assign(exec, a, &Seen::of(dollar), pc)).transpose()
}

/// A Choice rule's verdict in either language.
pub(super) fn condition(exec: &Exec, cond: &Cond, input: &Value, pc: &PathCtx) -> Result<bool, StatesError> {
    match cond {
        Cond::Path(rule) => rule.eval(&exec.scope(input, pc)),
        Cond::Jsonata(t) => match t.eval(&exec.jenv(pc, &Seen::of(input)), "Condition")? {
            Value::Bool(b) => Ok(b),
            other => Err(StatesError::new(
                names::QUERY_EVALUATION_ERROR,
                format!("The Condition must evaluate to a boolean, but evaluated to {}", type_name(&other)),
            )),
        },
    }
}

/// The input a Task or Parallel state hands on: Parameters (JSONPath) or Arguments (JSONata),
/// else the effective input.
pub(super) fn state_args(exec: &Exec, st: &State, eff: &Value, pc: &PathCtx) -> Result<Value, StatesError> {
    match (st.lang, &st.parameters, &st.arguments) {
        (Lang::JsonPath, Some(t), _) => t.eval(&exec.scope(eff, pc)),
        (Lang::Jsonata, _, Some(t)) => t.eval(&exec.jenv(pc, &Seen::of(eff)), "Arguments"),
        _ => Ok(eff.clone()),
    }
}
