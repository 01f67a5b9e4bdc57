//! Typed reads of one JSON object's fields, matched by folded spelling
//! (see the parent module), each mismatch a [`DefinitionError`] at the
//! key path as spelled.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_engine::duration;
use serde_json::{Map, Value};

use super::error::{DefinitionError, Expected, JsonType, Problem};

pub(super) type Result<T, E = DefinitionError> = std::result::Result<T, E>;

pub(super) fn err(path: &str, problem: Problem) -> DefinitionError {
    DefinitionError {
        path: path.to_string(),
        problem,
    }
}

/// `parent.key`, or `key` at the top.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A field's canonical name and its other spellings (beyond case and
/// underscores).
pub(super) type Keys = &'static [(&'static str, &'static [&'static str])];

/// Lowercase without underscores: the form spellings are compared in.
fn fold_eq(a: &str, b: &str) -> bool {
    let mut x = a
        .bytes()
        .filter(|c| *c != b'_')
        .map(|c| c.to_ascii_lowercase());
    let mut y = b
        .bytes()
        .filter(|c| *c != b'_')
        .map(|c| c.to_ascii_lowercase());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// One object's fields under their canonical names.
pub(super) struct Fields<'v> {
    /// Canonical name → (key path as spelled, value, priority).
    map: BTreeMap<&'static str, (String, &'v Value, u8)>,
}

impl<'v> Fields<'v> {
    pub(super) fn new(path: &str, value: &'v Value, keys: Keys) -> Result<Fields<'v>> {
        let obj = object(path, value)?;
        let mut map: BTreeMap<&'static str, (String, &'v Value, u8)> = BTreeMap::new();
        for (key, v) in obj {
            let Some((canonical, prio)) = keys.iter().find_map(|(name, aliases)| {
                if fold_eq(name, key) {
                    Some((*name, if key.contains('_') { 1 } else { 2 }))
                } else if aliases.iter().any(|a| fold_eq(a, key)) {
                    Some((*name, 1))
                } else {
                    None
                }
            }) else {
                return Err(err(
                    &join(path, key),
                    Problem::UnknownKey { key: key.clone() },
                ));
            };
            if v.is_null() {
                continue;
            }
            if map.get(canonical).is_some_and(|(_, _, old)| *old > prio) {
                continue;
            }
            map.insert(canonical, (join(path, key), v, prio));
        }
        Ok(Fields { map })
    }

    pub(super) fn get(&self, name: &str) -> Option<(&str, &'v Value)> {
        self.map.get(name).map(|(p, v, _)| (p.as_str(), *v))
    }

    pub(super) fn string(&self, name: &str) -> Result<String> {
        self.get(name)
            .map(|(p, v)| string(p, v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub(super) fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None => Ok(false),
            Some((_, Value::Bool(b))) => Ok(*b),
            Some((p, v)) => Err(wrong(p, Expected::Bool, v)),
        }
    }

    pub(super) fn u32(&self, name: &str) -> Result<u32> {
        match self.get(name) {
            None => Ok(0),
            Some((p, v)) => {
                let n = unsigned(p, v, Expected::Integer)?;
                u32::try_from(n).map_err(|_| out_of_range(p, v, Expected::Integer))
            }
        }
    }

    pub(super) fn duration(&self, name: &str) -> Result<Option<Duration>> {
        self.get(name)
            .map(|(p, v)| duration_value(p, v))
            .transpose()
    }

    pub(super) fn string_list(&self, name: &str) -> Result<Vec<String>> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some((p, v)) => string_list(p, v),
        }
    }
}

fn wrong(path: &str, expected: Expected, found: &Value) -> DefinitionError {
    err(
        path,
        Problem::WrongType {
            expected,
            found: JsonType::of(found),
        },
    )
}

fn out_of_range(path: &str, v: &Value, expected: Expected) -> DefinitionError {
    err(
        path,
        Problem::OutOfRange {
            value: v.to_string(),
            expected,
        },
    )
}

pub(super) fn object<'v>(path: &str, v: &'v Value) -> Result<&'v Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| wrong(path, Expected::Object, v))
}

pub(super) fn string(path: &str, v: &Value) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong(path, Expected::String, v))
}

pub(super) fn unsigned(path: &str, v: &Value, expected: Expected) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| out_of_range(path, v, expected)),
        _ => Err(wrong(path, expected, v)),
    }
}

pub(super) fn signed(path: &str, v: &Value) -> Result<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| out_of_range(path, v, Expected::SignedInteger)),
        _ => Err(wrong(path, Expected::SignedInteger, v)),
    }
}

pub(super) fn port(path: &str, v: &Value) -> Result<u16> {
    let n = unsigned(path, v, Expected::Port)?;
    u16::try_from(n).map_err(|_| out_of_range(path, v, Expected::Port))
}

pub(super) fn string_list(path: &str, v: &Value) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(&format!("{path}[{i}]"), item))
            .collect(),
        _ => Err(wrong(path, Expected::StringList, v)),
    }
}

pub(super) fn string_map(path: &str, v: &Value) -> Result<BTreeMap<String, String>> {
    object(path, v)?
        .iter()
        .map(|(k, item)| Ok((k.clone(), string(&join(path, k), item)?)))
        .collect()
}

/// An object or a list of objects (HCL's repeated blocks), with their
/// paths (`check`, `checks[1]`).
pub fn objects<'v>(path: &str, v: &'v Value) -> Result<Vec<(String, &'v Value)>> {
    match v {
        Value::Object(_) => Ok(vec![(path.to_string(), v)]),
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{path}[{i}]"), item))
            .collect()),
        _ => Err(wrong(path, Expected::Objects, v)),
    }
}

/// A Go duration string or a number of nanoseconds; negative is 0.
pub(super) fn duration_value(path: &str, v: &Value) -> Result<Duration> {
    match v {
        Value::String(s) => match duration::parse_signed(s) {
            Ok((true, _)) => Ok(Duration::ZERO),
            Ok((false, d)) => Ok(d),
            Err(e) => Err(err(
                path,
                Problem::BadDuration {
                    value: s.clone(),
                    reason: e.to_string(),
                },
            )),
        },
        Value::Number(n) => {
            let ns = match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => u,
                // A float: truncated like Go's int conversion; negative → 0.
                (None, Some(f)) if f.is_finite() && f > 0.0 => f as u64,
                _ => 0,
            };
            Ok(Duration::from_nanos(ns))
        }
        _ => Err(wrong(path, Expected::Duration, v)),
    }
}
