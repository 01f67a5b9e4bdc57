//! Why a definition was refused: the key path and a [`Problem`], with the
//! type names both voices need (a config error's `a boolean`, Go's `bool`
//! for the API's `json: cannot unmarshal ...`).

use std::fmt;

use serde_json::Value;

/// Why a definition was refused, at which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// The key path as spelled in the input (`service.checks[0].ttl`);
    /// the object's own path for rules that span fields.
    pub path: String,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A key no definition has (the path ends with it).
    UnknownKey {
        /// The key as spelled.
        key: String,
    },
    /// A value of the wrong JSON type.
    WrongType {
        /// What the field takes.
        expected: Expected,
        /// What was there.
        found: JsonType,
    },
    /// A number outside the field's range.
    OutOfRange {
        /// The number as written.
        value: String,
        /// What the field takes.
        expected: Expected,
    },
    /// A duration string that does not parse.
    BadDuration {
        /// The value as written.
        value: String,
        /// The parser's message (`time: unknown unit "d" in duration "10d"`).
        reason: String,
    },
    /// A `Status` that is not passing, warning or critical.
    BadStatus {
        /// The value as written.
        value: String,
        /// Inline in a service (Consul words it differently).
        inline: bool,
    },
    /// A check kind muster does not run (`H2PING`, `OSService`).
    Unsupported {
        /// The kind's field, as Consul names it.
        kind: &'static str,
    },
    /// A standalone check without a name (and, from a file, without an ID).
    MissingCheckName,
    /// A service that breaks a rule; the reason is Consul's message
    /// (`Missing service name`, `Invalid Weights: ...`).
    InvalidService {
        /// The service's ID, or its key path if it has none.
        service: String,
        /// Consul's message.
        reason: String,
    },
    /// A check that breaks a rule; the reason goes after `Invalid check: `.
    InvalidCheck {
        /// The service it is defined in, if inline.
        service: Option<String>,
        /// The check's ID (final: after the defaults).
        check: String,
        /// Consul's message.
        reason: String,
    },
}

/// The type a field takes, for messages in both voices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A string.
    String,
    /// A boolean.
    Bool,
    /// A non-negative integer (u32).
    Integer,
    /// A signed integer (weights, validated after).
    SignedInteger,
    /// A port, 0..=65535.
    Port,
    /// A Go duration.
    Duration,
    /// An object.
    Object,
    /// An object or a list of objects.
    Objects,
    /// A list of strings.
    StringList,
}

impl Expected {
    /// As a config error says it (`a boolean`).
    pub fn human(self) -> &'static str {
        match self {
            Expected::String => "a string",
            Expected::Bool => "a boolean",
            Expected::Integer | Expected::Port => "a non-negative integer",
            Expected::SignedInteger => "an integer",
            Expected::Duration => "a duration string",
            Expected::Object => "an object",
            Expected::Objects => "an object or a list of objects",
            Expected::StringList => "a list of strings",
        }
    }

    /// As Go's JSON decoder says it (`bool`).
    pub fn go(self) -> &'static str {
        match self {
            Expected::String => "string",
            Expected::Bool => "bool",
            Expected::Integer => "uint32",
            Expected::SignedInteger => "int",
            Expected::Port => "uint16",
            Expected::Duration => "time.Duration",
            Expected::Object => "struct",
            Expected::Objects => "[]struct",
            Expected::StringList => "[]string",
        }
    }
}

/// A JSON value's type, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `true` / `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// A list.
    Array,
    /// An object.
    Object,
    /// `null` (only inside lists and maps: a null field is absent).
    Null,
}

impl JsonType {
    /// The type of `v`.
    pub fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Bool,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// With its article (`a string`).
    pub fn human(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "a list",
            JsonType::Object => "an object",
        }
    }

    /// As Go's JSON decoder names it (`string`).
    pub fn go(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "bool",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

impl fmt::Display for DefinitionError {
    /// A neutral one-line message (`key "check.ttl": ...`); the API and the
    /// config loader word their own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.problem {
            Problem::UnknownKey { .. } => write!(f, "unknown key {path:?}"),
            Problem::WrongType { expected, found } => write!(
                f,
                "key {path:?}: expected {}, got {}",
                expected.human(),
                found.human()
            ),
            Problem::OutOfRange { value, expected } => {
                write!(
                    f,
                    "key {path:?}: {value} is out of range for {}",
                    expected.go()
                )
            }
            Problem::BadDuration { value, reason } => {
                write!(f, "key {path:?}: invalid duration {value:?}: {reason}")
            }
            Problem::BadStatus { value, .. } => write!(
                f,
                "key {path:?}: bad check status {value:?}: use passing, warning or critical"
            ),
            Problem::Unsupported { kind } => {
                write!(f, "key {path:?}: {kind} checks are not supported by muster")
            }
            Problem::MissingCheckName => write!(f, "check {path:?}: Missing check name"),
            Problem::InvalidService { service, reason } => {
                write!(f, "service {service:?}: {reason}")
            }
            Problem::InvalidCheck {
                service,
                check,
                reason,
            } => {
                if let Some(service) = service {
                    write!(f, "service {service:?}: ")?;
                }
                write!(f, "check {check:?}: Invalid check: {reason}")
            }
        }
    }
}

impl std::error::Error for DefinitionError {}
