//! Typed reads of parsed config values (JSON and HCL both arrive as
//! `serde_json::Value`), each turning a mismatch into a [`ConfigError`] that
//! names the file and the key path.
//!
//! This module knows no config key; callers pass the key path they are at.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ConfigError;

/// The file being read; every read reports errors against it.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The file.
    pub file: &'a Path,
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A JSON type's name with its article, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Ctx<'_> {
    /// A wrong-type error for `key`.
    pub fn wrong(&self, key: &str, expected: &'static str, found: &Value) -> ConfigError {
        ConfigError::WrongType {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            expected,
            found: type_name(found),
        }
    }

    /// An unknown-key error for `key`.
    pub fn unknown(&self, key: &str) -> ConfigError {
        ConfigError::UnknownKey {
            file: self.file.to_path_buf(),
            key: key.to_string(),
        }
    }

    /// A bad-value error for `key`.
    pub fn bad(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// An object.
    pub fn object<'v>(
        &self,
        key: &str,
        v: &'v Value,
    ) -> Result<&'v Map<String, Value>, ConfigError> {
        v.as_object().ok_or_else(|| self.wrong(key, "an object", v))
    }

    /// A string.
    pub fn string(&self, key: &str, v: &Value) -> Result<String, ConfigError> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.wrong(key, "a string", v))
    }

    /// A boolean.
    pub fn bool(&self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        v.as_bool().ok_or_else(|| self.wrong(key, "a boolean", v))
    }

    /// A non-negative integer.
    pub fn u64(&self, key: &str, v: &Value) -> Result<u64, ConfigError> {
        v.as_u64()
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    /// A non-negative integer that fits in a `u32`.
    pub fn u32(&self, key: &str, v: &Value) -> Result<u32, ConfigError> {
        let n = self.u64(key, v)?;
        u32::try_from(n).map_err(|_| self.bad(key, format!("{n} is too large")))
    }

    /// A listener port: 0..=65535, or -1 (and other negatives) to disable.
    pub fn listener_port(&self, key: &str, v: &Value) -> Result<i32, ConfigError> {
        let n = v
            .as_i64()
            .ok_or_else(|| self.wrong(key, "an integer port", v))?;
        if n > 65535 {
            return Err(self.bad(
                key,
                format!("port {n} is out of range 0-65535 (-1 disables)"),
            ));
        }
        Ok(i32::try_from(n.max(-1)).unwrap_or(-1))
    }

    /// A Go duration string (`"10s"`), or an integer number of nanoseconds
    /// as the API takes them.
    pub fn duration(&self, key: &str, v: &Value) -> Result<Duration, ConfigError> {
        match v {
            Value::String(s) => {
                muster_engine::duration::parse(s).map_err(|err| ConfigError::BadDuration {
                    file: self.file.to_path_buf(),
                    key: key.to_string(),
                    value: s.clone(),
                    reason: err.to_string(),
                })
            }
            Value::Number(n) => match n.as_u64() {
                Some(ns) => Ok(Duration::from_nanos(ns)),
                None => Err(ConfigError::BadDuration {
                    file: self.file.to_path_buf(),
                    key: key.to_string(),
                    value: n.to_string(),
                    reason: "a numeric duration is a non-negative integer of nanoseconds".into(),
                }),
            },
            other => Err(self.wrong(key, "a duration string", other)),
        }
    }

    /// A list of strings (a lone string counts as a one-element list, as
    /// Consul's decoder allows).
    pub fn string_list(&self, key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(&index(key, i), item))
                .collect(),
            other => Err(self.wrong(key, "a list of strings", other)),
        }
    }

    /// An object of strings.
    pub fn string_map(
        &self,
        key: &str,
        v: &Value,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        self.object(key, v)?
            .iter()
            .map(|(k, item)| Ok((k.clone(), self.string(&join(key, k), item)?)))
            .collect()
    }
}

/// Merge `src` into `dst` key by key: objects recursively, lists appended,
/// anything else replaced (later wins).
pub fn deep_merge(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (key, value) in src {
        match (dst.get_mut(key), value) {
            (Some(Value::Object(d)), Value::Object(s)) => deep_merge(d, s),
            (Some(Value::Array(d)), Value::Array(s)) => d.extend(s.iter().cloned()),
            _ => {
                dst.insert(key.clone(), value.clone());
            }
        }
    }
}
