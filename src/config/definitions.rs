//! Service and check definitions in config files (consul-compat.md §6):
//! each `service` / `check` object goes through the one definition decoder
//! ([`muster_agent::definition::decode`], which HTTP bodies use too), and
//! its errors become [`ConfigError`]s naming the file, the key path, the
//! service and the check. This module must not know where the files came
//! from or how they merge (that is `mod.rs`).

use muster_agent::definition::decode::{self, DefinitionError, Origin, Problem};
use muster_agent::{CheckDefinition, ServiceDefinition};
use serde_json::Value;

use super::error::ConfigError;
use super::value::Ctx;

/// A decoder error against the file it came from.
fn config_error(ctx: Ctx<'_>, e: DefinitionError) -> ConfigError {
    let file = ctx.file.to_path_buf();
    let key = e.path;
    match e.problem {
        Problem::UnknownKey { .. } => ConfigError::UnknownKey { file, key },
        Problem::WrongType { expected, found } => ConfigError::WrongType {
            file,
            key,
            expected: expected.human(),
            found: found.human(),
        },
        Problem::OutOfRange { value, expected } => ConfigError::BadValue {
            file,
            key,
            reason: match expected {
                decode::Expected::Port => format!("port {value} is out of range 0-65535"),
                other => format!("{value} is out of range for {}", other.go()),
            },
        },
        Problem::BadDuration { value, reason } => ConfigError::BadDuration {
            file,
            key,
            value,
            reason,
        },
        Problem::BadStatus { value, .. } => ConfigError::BadValue {
            file,
            key,
            reason: format!("bad check status {value:?}: use passing, warning or critical"),
        },
        Problem::Unsupported { kind } => ConfigError::BadValue {
            file,
            key,
            reason: format!("{kind} checks are not supported by muster"),
        },
        Problem::MissingCheckName => ConfigError::InvalidCheck {
            file,
            service: None,
            check: key,
            reason: "a check needs an id or a name".into(),
        },
        Problem::InvalidService { service, reason } => ConfigError::InvalidService {
            file,
            service,
            reason,
        },
        Problem::InvalidCheck {
            service,
            check,
            reason,
        } => ConfigError::InvalidCheck {
            file,
            service,
            check,
            reason,
        },
    }
}

/// The service definitions under `key` (`service` / `services`: an object
/// or a list of them), each defaulted and validated as Consul validates
/// one.
pub fn services(
    ctx: Ctx<'_>,
    key: &str,
    value: &Value,
) -> Result<Vec<ServiceDefinition>, ConfigError> {
    decode::objects(key, value)
        .and_then(|defs| {
            defs.into_iter()
                .map(|(path, v)| decode::service(v, &path, Origin::File))
                .collect()
        })
        .map_err(|e| config_error(ctx, e))
}

/// The node-level checks under `key` (`check` / `checks`): each one's ID
/// defaults to its name and its name to its ID; validated.
pub fn node_checks(
    ctx: Ctx<'_>,
    key: &str,
    value: &Value,
) -> Result<Vec<CheckDefinition>, ConfigError> {
    decode::objects(key, value)
        .and_then(|defs| {
            defs.into_iter()
                .map(|(path, v)| decode::check(v, &path, Origin::File))
                .collect()
        })
        .map_err(|e| config_error(ctx, e))
}
