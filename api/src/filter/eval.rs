//! Evaluating a parsed [`Filter`](super::Filter) against one JSON element: selector
//! fan-out and the comparison operators (see the semantics in the module
//! docs of [`filter`](super)).

use regex::Regex;

use super::{Expr, Match, Op, Selector, Value};

impl Expr {
    pub(super) fn eval(&self, item: &Value) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|e| e.eval(item)),
            Expr::And(items) => items.iter().all(|e| e.eval(item)),
            Expr::Not(e) => !e.eval(item),
            Expr::Match(m) => m.eval(item),
        }
    }
}

impl Match {
    fn eval(&self, item: &Value) -> bool {
        let found = self.selector.resolve(item);
        let hit = match &self.op {
            Op::Equal(v) => found.iter().any(|x| scalar_eq(x, v)),
            // "is not empty" is the existential form; see the module docs.
            Op::IsEmpty => found.iter().all(|x| is_empty(x)),
            Op::In(v) | Op::Contains(v) => found.iter().any(|x| contains(x, v)),
            Op::Matches(p) => found.iter().any(|x| regex_match(x, &p.regex)),
        };
        hit != self.negated
    }
}

impl Selector {
    /// Every value the path reaches in `item`, fanning out through arrays.
    /// Iterative, so its cost is bounded by the item's size.
    fn resolve<'v>(&self, item: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![item];
        for key in &self.0 {
            let mut next = Vec::new();
            for v in current {
                match v {
                    Value::Object(m) => next.extend(m.get(key)),
                    Value::Array(items) => next.extend(
                        items
                            .iter()
                            .filter_map(|e| e.as_object().and_then(|m| m.get(key))),
                    ),
                    _ => {}
                }
            }
            if next.is_empty() {
                return next;
            }
            current = next;
        }
        current
    }
}

/// `==` between one JSON value and a raw filter value (see module docs).
fn scalar_eq(v: &Value, raw: &str) -> bool {
    match v {
        Value::String(s) => s == raw,
        Value::Bool(b) => parse_bool(raw) == Some(*b),
        Value::Number(n) => {
            if let (Some(a), Ok(b)) = (n.as_u64(), raw.parse::<u64>()) {
                return a == b;
            }
            if let (Some(a), Ok(b)) = (n.as_i64(), raw.parse::<i64>()) {
                return a == b;
            }
            match (n.as_f64(), raw.parse::<f64>()) {
                (Some(a), Ok(b)) if b.is_finite() => a == b,
                _ => false,
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn contains(v: &Value, raw: &str) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|e| scalar_eq(e, raw)),
        Value::Object(m) => m.contains_key(raw),
        Value::String(s) => s.contains(raw),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn regex_match(v: &Value, re: &Regex) -> bool {
    match v {
        Value::String(s) => re.is_match(s),
        Value::Array(items) => items
            .iter()
            .any(|e| e.as_str().is_some_and(|s| re.is_match(s))),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}
