//! The autopilot configuration (Consul's `api.AutopilotConfiguration`):
//! its JSON shape, Consul's defaults, how a `PUT` body is decoded (Go's
//! `encoding/json` rules and messages: fields matched case-insensitively,
//! unknown ones ignored, absent ones zero) and how it is kept in the
//! engine's stored-object table (kind `autopilot`, ID `config`, the JSON
//! as the body). It decides nothing about what the settings do: the
//! leader's autopilot (in the binary) reads them.

use std::time::Duration;

use muster_engine::{duration, StoredObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The stored object's kind.
pub const KIND: &str = "autopilot";
/// The stored object's ID (there is one configuration per datacenter).
pub const ID: &str = "config";

/// Consul's `AutopilotConfiguration`. Durations are Go duration strings
/// on the wire (`"200ms"`); a number is taken as nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutopilotConfiguration {
    /// Remove failed servers from raft (after the stabilization time).
    pub cleanup_dead_servers: bool,
    /// How long a server may go without hearing from the leader and still
    /// be healthy.
    #[serde(with = "go_duration")]
    pub last_contact_threshold: Duration,
    /// How many log entries a server may trail the leader by and still be
    /// healthy.
    pub max_trailing_logs: u64,
    /// Never prune dead servers below this many voters (0: no floor).
    pub min_quorum: u32,
    /// How long a server must have been failed before it is removed (in
    /// Consul also: healthy before a new server is promoted).
    #[serde(with = "go_duration")]
    pub server_stabilization_time: Duration,
    /// Enterprise-only in Consul; kept and shown, no effect.
    pub redundancy_zone_tag: String,
    /// Enterprise-only in Consul; kept and shown, no effect.
    pub disable_upgrade_migration: bool,
    /// Enterprise-only in Consul; kept and shown, no effect.
    pub upgrade_version_tag: String,
    /// Index of the write that first stored a configuration (0: none
    /// stored, these are the agent's configured values).
    pub create_index: u64,
    /// Index of the last write (what `?cas=` compares with).
    pub modify_index: u64,
}

impl Default for AutopilotConfiguration {
    /// Consul's defaults.
    fn default() -> Self {
        AutopilotConfiguration {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl AutopilotConfiguration {
    /// The configuration kept in a stored object, with its indexes.
    pub fn from_stored(object: &StoredObject) -> Result<AutopilotConfiguration, String> {
        let mut config: AutopilotConfiguration = serde_json::from_slice(&object.body)
            .map_err(|e| format!("stored autopilot configuration is unreadable: {e}"))?;
        config.create_index = object.create_index;
        config.modify_index = object.modify_index;
        Ok(config)
    }

    /// The stored object that keeps this configuration (the indexes are
    /// the engine's to set).
    pub fn to_stored(&self) -> Result<StoredObject, String> {
        let body = AutopilotConfiguration {
            create_index: 0,
            modify_index: 0,
            ..self.clone()
        };
        Ok(StoredObject {
            kind: KIND.into(),
            id: ID.into(),
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
            ..StoredObject::default()
        })
    }
}

/// Go duration strings for serde: `"10s"` out; a string or a number of
/// nanoseconds in (negative values become zero).
pub mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as Go's `Duration.String`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&muster_engine::duration::format(*d))
    }

    /// Deserialize a Go duration string or a number of nanoseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        super::duration_value(&v).map_err(serde::de::Error::custom)
    }
}

/// A duration the way Consul's `ReadableDuration` reads one: a quoted Go
/// duration, else a number of nanoseconds (truncated; negative → 0).
fn duration_value(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => match duration::parse_signed(s) {
            Ok((true, _)) => Ok(Duration::ZERO),
            Ok((false, d)) => Ok(d),
            Err(e) => Err(e.to_string()),
        },
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            Ok(if let Some(u) = n.as_u64() {
                Duration::from_nanos(u)
            } else if f.is_finite() && f > 0.0 {
                Duration::from_nanos(f as u64)
            } else {
                Duration::ZERO
            })
        }
        other => {
            let raw = other.to_string();
            Err(format!(
                "strconv.ParseFloat: parsing {raw:?}: invalid syntax"
            ))
        }
    }
}

/// The Go name of a JSON value's kind, for type errors.
fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

fn type_error(v: &Value, field: &str, go_type: &str) -> String {
    // Go names the kind alone for everything but numbers, which it quotes.
    let kind = match v {
        Value::Number(_) => json_kind(v),
        _ => json_kind(v)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    format!(
        "json: cannot unmarshal {kind} into Go struct field AutopilotConfiguration.{field} of type {go_type}"
    )
}

fn as_bool(v: &Value, field: &str) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| type_error(v, field, "bool"))
}

fn as_uint(v: &Value, field: &str, go_type: &str, max: u64) -> Result<u64, String> {
    v.as_u64()
        .filter(|n| *n <= max)
        .ok_or_else(|| type_error(v, field, go_type))
}

fn as_string(v: &Value, field: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| type_error(v, field, "string"))
}

/// Decode a `PUT /v1/operator/autopilot/configuration` body as Consul's Go
/// client sends it. `Err` is the message after `Error parsing autopilot
/// config: ` (Go's wording where it matters: type errors, bad durations,
/// `EOF`). Absent fields are zero, as Go leaves them; the indexes in the
/// body are ignored (`?cas=` carries the one that counts).
pub fn decode(body: &[u8]) -> Result<AutopilotConfiguration, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("EOF".into());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Value::Object(fields) = value else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type api.AutopilotConfiguration",
            json_kind(&value).split(' ').next().unwrap_or_default()
        ));
    };
    let mut c = AutopilotConfiguration {
        cleanup_dead_servers: false,
        last_contact_threshold: Duration::ZERO,
        max_trailing_logs: 0,
        min_quorum: 0,
        server_stabilization_time: Duration::ZERO,
        redundancy_zone_tag: String::new(),
        disable_upgrade_migration: false,
        upgrade_version_tag: String::new(),
        create_index: 0,
        modify_index: 0,
    };
    for (key, v) in &fields {
        // Go leaves a field alone for `null`.
        if v.is_null() {
            continue;
        }
        match key.to_ascii_lowercase().as_str() {
            "cleanupdeadservers" => c.cleanup_dead_servers = as_bool(v, "CleanupDeadServers")?,
            "lastcontactthreshold" => c.last_contact_threshold = duration_value(v)?,
            "maxtrailinglogs" => {
                c.max_trailing_logs = as_uint(v, "MaxTrailingLogs", "uint64", u64::MAX)?
            }
            "minquorum" => {
                let n = as_uint(v, "MinQuorum", "uint", u64::from(u32::MAX))?;
                c.min_quorum = u32::try_from(n).unwrap_or(u32::MAX);
            }
            "serverstabilizationtime" => c.server_stabilization_time = duration_value(v)?,
            "redundancyzonetag" => c.redundancy_zone_tag = as_string(v, "RedundancyZoneTag")?,
            "disableupgrademigration" => {
                c.disable_upgrade_migration = as_bool(v, "DisableUpgradeMigration")?
            }
            "upgradeversiontag" => c.upgrade_version_tag = as_string(v, "UpgradeVersionTag")?,
            "createindex" => {
                as_uint(v, "CreateIndex", "uint64", u64::MAX)?;
            }
            "modifyindex" => {
                as_uint(v, "ModifyIndex", "uint64", u64::MAX)?;
            }
            // Go ignores fields it does not know.
            _ => {}
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autopilot_config_json_has_consuls_shape_and_defaults() -> Result<(), serde_json::Error> {
        let c = AutopilotConfiguration::default();
        assert_eq!(
            serde_json::to_string(&c)?,
            r#"{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,"MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"","DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":0,"ModifyIndex":0}"#
        );
        let back: AutopilotConfiguration = serde_json::from_str(&serde_json::to_string(&c)?)?;
        assert_eq!(back, c);
        Ok(())
    }

    #[test]
    fn autopilot_config_decodes_like_go() -> Result<(), String> {
        let c = decode(
            br#"{"cleanupdeadservers":true,"LastContactThreshold":"1.5s","MaxTrailingLogs":7,
                "MinQuorum":3,"ServerStabilizationTime":2000000000,"Unknown":{"x":1},
                "RedundancyZoneTag":null,"ModifyIndex":99}"#,
        )?;
        assert!(c.cleanup_dead_servers);
        assert_eq!(c.last_contact_threshold, Duration::from_millis(1500));
        assert_eq!(c.max_trailing_logs, 7);
        assert_eq!(c.min_quorum, 3);
        assert_eq!(c.server_stabilization_time, Duration::from_secs(2));
        assert_eq!(
            c.modify_index, 0,
            "indexes come from the store, not the body"
        );
        // Absent fields are Go's zero values.
        let c = decode(b"{}")?;
        assert!(!c.cleanup_dead_servers);
        assert_eq!(c.server_stabilization_time, Duration::ZERO);
        Ok(())
    }

    #[test]
    fn autopilot_config_decode_errors_are_gos() {
        let err = |body: &str| decode(body.as_bytes()).err().unwrap_or_default();
        assert_eq!(err(""), "EOF");
        assert_eq!(
            err(r#"{"LastContactThreshold":"soon"}"#),
            r#"time: invalid duration "soon""#
        );
        assert_eq!(
            err(r#"{"ServerStabilizationTime":true}"#),
            r#"strconv.ParseFloat: parsing "true": invalid syntax"#
        );
        assert_eq!(
            err(r#"{"CleanupDeadServers":"yes"}"#),
            "json: cannot unmarshal string into Go struct field \
             AutopilotConfiguration.CleanupDeadServers of type bool"
        );
        assert_eq!(
            err(r#"{"MaxTrailingLogs":-1}"#),
            "json: cannot unmarshal number -1 into Go struct field \
             AutopilotConfiguration.MaxTrailingLogs of type uint64"
        );
        assert_eq!(
            err(r#"{"MinQuorum":"3"}"#),
            "json: cannot unmarshal string into Go struct field \
             AutopilotConfiguration.MinQuorum of type uint"
        );
        assert_eq!(
            err("[]"),
            "json: cannot unmarshal array into Go value of type api.AutopilotConfiguration"
        );
    }

    #[test]
    fn autopilot_config_round_trips_through_a_stored_object() -> Result<(), String> {
        let c = AutopilotConfiguration {
            cleanup_dead_servers: false,
            min_quorum: 5,
            create_index: 3,
            modify_index: 9,
            ..AutopilotConfiguration::default()
        };
        let mut stored = c.to_stored()?;
        assert_eq!((stored.kind.as_str(), stored.id.as_str()), (KIND, ID));
        stored.create_index = 3;
        stored.modify_index = 9;
        assert_eq!(AutopilotConfiguration::from_stored(&stored)?, c);
        Ok(())
    }
}
