//! [`ConfigError`]: why a set of config files was rejected.
//!
//! Every variant names the file it came from and, where there is one, the
//! key (as a path such as `services[1].checks[0].ttl`), so one line is
//! enough to find and fix the problem.

use std::fmt;
use std::path::PathBuf;

/// Why loading the config files failed. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file or directory could not be read.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error, as text.
        reason: String,
    },
    /// A file is not valid JSON / HCL, or its top level is not an object.
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A key the loader does not know.
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The key path.
        key: String,
    },
    /// A value of the wrong JSON/HCL type.
    WrongType {
        /// The file.
        file: PathBuf,
        /// The key path.
        key: String,
        /// What was expected, e.g. `a boolean`.
        expected: &'static str,
        /// What was found, e.g. `a string`.
        found: &'static str,
    },
    /// A duration string that does not parse.
    BadDuration {
        /// The file.
        file: PathBuf,
        /// The key path.
        key: String,
        /// The value as written.
        value: String,
        /// The parser's message.
        reason: String,
    },
    /// A value of the right type that is still unacceptable (a port out of
    /// range, a bad gossip key, an unknown check status...).
    BadValue {
        /// The file.
        file: PathBuf,
        /// The key path.
        key: String,
        /// Why.
        reason: String,
    },
    /// A service definition Consul would reject.
    InvalidService {
        /// The file.
        file: PathBuf,
        /// The service's ID (or name, or key path if it has neither).
        service: String,
        /// Consul's reason.
        reason: String,
    },
    /// A check definition Consul would reject.
    InvalidCheck {
        /// The file.
        file: PathBuf,
        /// The service the check is defined in, if inline.
        service: Option<String>,
        /// The check's ID.
        check: String,
        /// Consul's reason (after `Invalid check: `).
        reason: String,
    },
    /// A key of a feature muster does not implement whose absence would
    /// weaken security (ACLs, TLS): refused rather than ignored.
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The top-level key.
        key: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A script or Docker check while neither `enable_script_checks` nor
    /// `enable_local_script_checks` is set.
    ScriptChecksDisabled {
        /// The file the check is defined in.
        file: PathBuf,
        /// The service it belongs to, if inline.
        service: Option<String>,
        /// The check's ID.
        check: String,
    },
    /// Two check definitions with the same ID.
    DuplicateCheck {
        /// The check ID.
        id: String,
        /// The file that defined it first.
        first: PathBuf,
        /// The file that defined it again.
        second: PathBuf,
    },
    /// Two service definitions with the same ID.
    DuplicateService {
        /// The service ID.
        id: String,
        /// The file that defined it first.
        first: PathBuf,
        /// The file that defined it again.
        second: PathBuf,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, reason } => write!(f, "{}: {reason}", path.display()),
            ConfigError::Parse { file, reason } => {
                write!(f, "{}: parse error: {reason}", file.display())
            }
            ConfigError::UnknownKey { file, key } => {
                write!(f, "{}: unknown key {key:?}", file.display())
            }
            ConfigError::WrongType {
                file,
                key,
                expected,
                found,
            } => write!(
                f,
                "{}: key {key:?}: expected {expected}, got {found}",
                file.display()
            ),
            ConfigError::BadDuration {
                file,
                key,
                value,
                reason,
            } => write!(
                f,
                "{}: key {key:?}: invalid duration {value:?}: {reason}",
                file.display()
            ),
            ConfigError::BadValue { file, key, reason } => {
                write!(f, "{}: key {key:?}: {reason}", file.display())
            }
            ConfigError::InvalidService {
                file,
                service,
                reason,
            } => write!(f, "{}: service {service:?}: {reason}", file.display()),
            ConfigError::InvalidCheck {
                file,
                service,
                check,
                reason,
            } => {
                write!(f, "{}: ", file.display())?;
                if let Some(service) = service {
                    write!(f, "service {service:?}: ")?;
                }
                write!(f, "check {check:?}: Invalid check: {reason}")?;
                if reason.starts_with("Interval and TTL") {
                    write!(
                        f,
                        " (a check is either run every interval by muster or updated by the \
                         application before its TTL ends: drop \"ttl\" to have muster run it, \
                         or drop the script/http/tcp and \"interval\" keys and report through \
                         /v1/agent/check/pass)"
                    )?;
                }
                Ok(())
            }
            ConfigError::Unsupported { file, reason, .. } => {
                write!(f, "{}: {reason}", file.display())
            }
            ConfigError::ScriptChecksDisabled {
                file,
                service,
                check,
            } => {
                write!(f, "{}: ", file.display())?;
                if let Some(service) = service {
                    write!(f, "service {service:?}: ")?;
                }
                write!(
                    f,
                    "check {check:?}: script checks are disabled: set \
                     \"enable_local_script_checks\": true (checks from config files) or \
                     \"enable_script_checks\": true (also checks registered over HTTP)"
                )
            }
            ConfigError::DuplicateCheck { id, first, second } => write!(
                f,
                "duplicate check ID {id:?}: defined in {} and in {}",
                first.display(),
                second.display()
            ),
            ConfigError::DuplicateService { id, first, second } => write!(
                f,
                "duplicate service ID {id:?}: defined in {} and in {}",
                first.display(),
                second.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
