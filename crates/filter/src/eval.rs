//! Evaluation against one item's JSON, with go-bexpr's rules: the value as written is
//! coerced to the selected field's type; `in`/`contains` test list elements, map keys or
//! substrings; `is empty` applies to lists, maps and strings.

use crate::{Expr, Match, Op};
use serde_json::Value;

/// An operation the selected field's type does not support, or a value that does not coerce
/// to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter: selector {selector}: {reason}")]
pub struct EvalError {
    pub selector: String,
    pub reason: String,
}

pub(crate) fn expr(e: &Expr, item: &Value) -> Result<bool, EvalError> {
    Ok(match e {
        Expr::And(a, b) => expr(a, item)? && expr(b, item)?,
        Expr::Or(a, b) => expr(a, item)? || expr(b, item)?,
        Expr::Not(a) => !expr(a, item)?,
        Expr::Match(m) => matches(m, item)?,
    })
}

/// The values a selector reaches: one, none (absent), or several when it steps through a
/// list by field name (any of them may match).
fn select<'v>(item: &'v Value, path: &[String], out: &mut Vec<&'v Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(item);
        return;
    };
    match item {
        Value::Object(map) => {
            if let Some(v) = map.get(first) {
                select(v, rest, out);
            }
        }
        Value::Array(items) => match first.parse::<usize>() {
            Ok(i) => {
                if let Some(v) = items.get(i) {
                    select(v, rest, out);
                }
            }
            Err(_) => {
                for v in items {
                    select(v, path, out);
                }
            }
        },
        _ => {}
    }
}

fn matches(m: &Match, item: &Value) -> Result<bool, EvalError> {
    let mut found = Vec::new();
    select(item, &m.selector, &mut found);
    // Consul's "not present" disposition: only the negative operators hold.
    let absent = matches!(
        m.op,
        Op::NotEqual | Op::NotIn | Op::NotContains | Op::NotMatches | Op::IsEmpty
    );
    if found.iter().all(|v| v.is_null()) {
        return Ok(absent);
    }
    for v in found.into_iter().filter(|v| !v.is_null()) {
        if one(m, v)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn one(m: &Match, v: &Value) -> Result<bool, EvalError> {
    let err = |reason: String| EvalError {
        selector: m.selector.join("."),
        reason,
    };
    Ok(match m.op {
        Op::Equal => equal(&m.value, v).map_err(err)?,
        Op::NotEqual => !equal(&m.value, v).map_err(err)?,
        Op::In | Op::Contains => contains(&m.value, v).map_err(err)?,
        Op::NotIn | Op::NotContains => !contains(&m.value, v).map_err(err)?,
        Op::IsEmpty => empty(v).map_err(err)?,
        Op::IsNotEmpty => !empty(v).map_err(err)?,
        Op::Matches | Op::NotMatches => {
            let Value::String(s) = v else {
                return Err(err(format!(
                    "`matches` needs a string, the field is {}",
                    kind(v)
                )));
            };
            let re = m.regex.as_ref().expect("compiled when parsed");
            re.is_match(s) == (m.op == Op::Matches)
        }
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// `raw == v` for a primitive `v`, `raw` coerced to its type.
fn equal(raw: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::String(s) => Ok(s == raw),
        Value::Bool(b) => Ok(parse_bool(raw)? == *b),
        Value::Number(n) => {
            let want: f64 = raw
                .parse()
                .map_err(|_| format!("{raw:?} is not a number (the field is a number)"))?;
            Ok(n.as_f64() == Some(want))
        }
        other => Err(format!(
            "`==` and `!=` compare strings, numbers and booleans; the field is {}",
            kind(other)
        )),
    }
}

/// Go's strconv.ParseBool.
fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{raw:?} is not a boolean (the field is a boolean)")),
    }
}

/// `raw in v`: an element of a list (compared as its type; elements it does not coerce to
/// are skipped, as go-bexpr does), a key of a map, a substring of a string.
fn contains(raw: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::Array(items) => Ok(items.iter().any(|i| equal(raw, i).unwrap_or(false))),
        Value::Object(map) => Ok(map.contains_key(raw)),
        Value::String(s) => Ok(s.contains(raw)),
        other => Err(format!(
            "`in` and `contains` apply to lists, maps and strings; the field is {}",
            kind(other)
        )),
    }
}

fn empty(v: &Value) -> Result<bool, String> {
    match v {
        Value::Array(items) => Ok(items.is_empty()),
        Value::Object(map) => Ok(map.is_empty()),
        Value::String(s) => Ok(s.is_empty()),
        other => Err(format!(
            "`is empty` applies to lists, maps and strings; the field is {}",
            kind(other)
        )),
    }
}
