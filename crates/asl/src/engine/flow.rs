//! Pass, Succeed, Fail, Choice and Wait, in both query languages; Task, Parallel and Map
//! bodies are handed to [`super::machine::with_retry`] and their results processed here.

use super::*;

/// A JSONata state: Arguments → task → Assign and Output, all seeing `$states`.
pub(super) async fn run_jsonata_state(exec: &Arc<Exec>, st: &State, raw: &Value, pc: &mut PathCtx) -> Result<StepOut, Stop> {
    let next = match st.transition {
        Transition::Next(n) => Some(n),
        _ => None,
    };
    let finish = |exec: &Exec, pc: &PathCtx, result: Option<&Value>, output: Option<&JTemplate>, next| -> Result<StepOut, Stop> {
        let seen = Seen {
            input: raw,
            dollar: raw,
            result,
            error_output: None,
        };
        let assigned = st.assign.as_ref().map(|a| eval_assign(exec, a, &seen, pc)).transpose()?;
        let output = match output {
            Some(t) => t.eval(&exec.jenv(pc, &seen), "Output")?,
            None => result.unwrap_or(raw).clone(),
        };
        Ok(StepOut { output, next, assigned })
    };
    match &st.kind {
        Kind::Pass { .. } | Kind::Succeed => finish(exec, pc, None, st.output.as_ref(), next),
        Kind::Fail(_) => run_jsonpath_state(exec, st, raw, pc).await,
        Kind::Choice { choices, default } => {
            for c in choices {
                if condition(exec, &c.rule, raw, pc)? {
                    let mut out = finish(exec, pc, None, c.output.as_ref().or(st.output.as_ref()), Some(c.next))?;
                    if let Some(a) = &c.assign {
                        let rule_vars = eval_assign(exec, a, &Seen::of(raw), pc)?;
                        out.assigned.get_or_insert_with(Map::new).extend(rule_vars);
                    }
                    return Ok(out);
                }
            }
            match default {
                Some(d) => finish(exec, pc, None, st.output.as_ref(), Some(*d)),
                None => Err(Stop::Failed(StatesError::runtime(
                    "Failed to transition out of the state. The state does not point to a next state.",
                ))),
            }
        }
        Kind::Wait(w) => {
            let env = exec.jenv(pc, &Seen::of(raw));
            let until_ms = match w {
                Wait::Seconds(s) => exec.now(pc) + *s as i64 * 1000,
                Wait::Timestamp(t) => t.timestamp_millis(),
                Wait::SecondsJsonata(t) => match t.eval(&env, "Seconds")?.as_u64() {
                    Some(s) if s <= 99_999_999 => exec.now(pc) + s as i64 * 1000,
                    _ => {
                        return Err(Stop::Failed(StatesError::new(
                            names::QUERY_EVALUATION_ERROR,
                            "The Seconds field must evaluate to an integer between 0 and 99999999",
                        )))
                    }
                },
                Wait::TimestampJsonata(t) => match t.eval(&env, "Timestamp")?.as_str().and_then(parse_timestamp) {
                    Some(t) => t.timestamp_millis(),
                    None => {
                        return Err(Stop::Failed(StatesError::new(
                            names::QUERY_EVALUATION_ERROR,
                            "The Timestamp field must evaluate to an ISO-8601 timestamp string",
                        )))
                    }
                },
                Wait::SecondsPath(_) | Wait::TimestampPath(_) => unreachable!("rejected at load time in JSONata states"),
            };
            drop(env);
            exec.sleep_until(pc, until_ms).await?;
            finish(exec, pc, None, st.output.as_ref(), next)
        }
        Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
            let result = with_retry(exec, st, raw, pc).await?;
            finish(exec, pc, Some(&result), st.output.as_ref(), next)
        }
    }
}

pub(super) async fn run_jsonpath_state(exec: &Arc<Exec>, st: &State, raw: &Value, pc: &mut PathCtx) -> Result<StepOut, Stop> {
    let next = match st.transition {
        Transition::Next(n) => Some(n),
        _ => None,
    };
    match &st.kind {
        Kind::Pass { result } => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let eff = match &st.parameters {
                Some(t) => t.eval(&exec.scope(&eff, pc))?,
                None => eff.into_owned(),
            };
            let res = result.clone().unwrap_or(eff);
            let assigned = opt_assign(exec, st, &res, pc)?;
            let out = apply_result_path(&st.result_path, raw, res)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, out, exec, pc)?,
                next,
                assigned,
            })
        }
        Kind::Succeed => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, eff.into_owned(), exec, pc)?,
                next: None,
                assigned: None,
            })
        }
        Kind::Fail(f) => {
            let scope = exec.scope(raw, pc);
            let get = |x: &Option<StrOrPath>, field: &str| -> Result<Option<String>, StatesError> {
                Ok(match x {
                    None => None,
                    Some(StrOrPath::Str(s)) => Some(s.clone()),
                    Some(StrOrPath::Path(p)) => match p.eval_required(&scope, field)? {
                        Value::String(s) => Some(s),
                        other => {
                            return Err(StatesError::runtime(format!(
                                "The {field} '{}' must select a string, but selected {}",
                                p.text(),
                                type_name(&other)
                            )))
                        }
                    },
                    Some(StrOrPath::Intrinsic(i)) => match i.eval(&scope)? {
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    },
                    Some(StrOrPath::Jsonata(t)) => match t.eval(&exec.jenv(pc, &Seen::of(raw)), field.trim_end_matches("Path"))? {
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    },
                })
            };
            let error = get(&f.error, "ErrorPath")?;
            let cause = get(&f.cause, "CausePath")?;
            Err(Stop::Failed(StatesError {
                error: error.unwrap_or_default(),
                cause: cause.unwrap_or_default(),
            }))
        }
        Kind::Choice { choices, default } => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let mut chosen = None;
            for c in choices {
                if condition(exec, &c.rule, &eff, pc)? {
                    chosen = Some(c);
                    break;
                }
            }
            let mut assigned = opt_assign(exec, st, &eff, pc)?;
            let next = match (chosen, default) {
                (Some(c), _) => {
                    if let Some(a) = &c.assign {
                        let rule_vars = eval_assign(exec, a, &Seen::of(&eff), pc)?;
                        assigned.get_or_insert_with(Map::new).extend(rule_vars);
                    }
                    c.next
                }
                (None, Some(d)) => *d,
                // AWS reports this as States.Runtime (recorded on AWS), not States.NoChoiceMatched.
                (None, None) => {
                    return Err(Stop::Failed(StatesError::runtime(
                        "Failed to transition out of the state. The state does not point to a next state.",
                    )))
                }
            };
            Ok(StepOut {
                output: apply_output_path(&st.output_path, eff.into_owned(), exec, pc)?,
                next: Some(next),
                assigned,
            })
        }
        Kind::Wait(w) => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let now = exec.now(pc);
            let until_ms = match w {
                Wait::Seconds(s) => now + *s as i64 * 1000,
                Wait::Timestamp(t) => t.timestamp_millis(),
                Wait::SecondsPath(p) => {
                    let Some(v) = p.eval(&exec.scope(&eff, pc)) else {
                        return Err(Stop::Failed(StatesError::runtime(format!(
                            "The SecondsPath parameter does not reference an input value: {}",
                            p.text()
                        ))));
                    };
                    match (v.as_i64(), v.as_f64()) {
                        (Some(s), _) if s >= 0 => now + s * 1000,
                        (Some(_), _) => {
                            return Err(Stop::Failed(StatesError::runtime(format!(
                                "The SecondsPath parameter references a negative value: {} == {v}",
                                p.text()
                            ))))
                        }
                        _ => {
                            return Err(Stop::Failed(StatesError::runtime(format!(
                                "The SecondsPath parameter cannot be parsed as a long value: {} == {v}",
                                p.text()
                            ))))
                        }
                    }
                }
                Wait::SecondsJsonata(_) | Wait::TimestampJsonata(_) => unreachable!("only in JSONata states"),
                Wait::TimestampPath(p) => {
                    let v = p.eval(&exec.scope(&eff, pc));
                    match v.as_ref().and_then(Value::as_str).and_then(parse_timestamp) {
                        Some(t) => t.timestamp_millis(),
                        None => {
                            return Err(Stop::Failed(StatesError::runtime(format!(
                                "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                                p.text(),
                                // AWS shows the value as it is, a string without quotes.
                                match v {
                                    Some(Value::String(s)) => s,
                                    Some(v) => v.to_string(),
                                    None => "null".to_string(),
                                }
                            ))));
                        }
                    }
                }
            };
            exec.sleep_until(pc, until_ms).await?;
            let assigned = opt_assign(exec, st, &eff, pc)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, eff.into_owned(), exec, pc)?,
                next,
                assigned,
            })
        }
        Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
            let eff = apply_input_path(&st.input_path, raw, exec, pc)?;
            let result = with_retry(exec, st, &eff, pc).await?;
            // Assign sees the raw result, before ResultSelector (as AWS evaluates it).
            let assigned = opt_assign(exec, st, &result, pc)?;
            let result = match &st.result_selector {
                Some(t) => t.eval(&exec.scope(&result, pc))?,
                None => result,
            };
            let out = apply_result_path(&st.result_path, raw, result)?;
            Ok(StepOut {
                output: apply_output_path(&st.output_path, out, exec, pc)?,
                next,
                assigned,
            })
        }
    }
}
