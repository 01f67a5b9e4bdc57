//! Service and check definitions (consul-compat.md §6) from JSON, for
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/check/register` and the
//! binary's config loader.
//!
//! Keys follow `decode.rs`'s rules: canonical PascalCase names match
//! case-insensitively (python-consul's `enabletagoverride`, `http`), the
//! snake_case aliases of §0.2/§6.1 are accepted (`enable_tag_override`,
//! `deregister_critical_service_after`, `service_id`, `args`, ...), the
//! PascalCase spelling wins when both are present, and unknown keys are
//! rejected. Durations are Go duration strings or nanoseconds.
//!
//! The result is a validated [`ServiceDefinition`] (after
//! [`ServiceDefinition::normalize`]) or [`CheckDefinition`]; state-dependent
//! rules (does the check's service exist, are scripts enabled) are the
//! agent's.
//!
//! The rules a definition must meet are not here: they are
//! [`ServiceDefinition::validate`] and [`CheckDefinition::validate`] in
//! `muster-agent`, which the config loader (its own key-spelling decoder
//! for file forms and legacy keys) and catalog registrations use too.
//! [`service_definition_from_json`] and [`check_definition_from_json`]
//! decode one JSON object the way an HTTP body is decoded.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_agent::definition::DEFAULT_OUTPUT_MAX_SIZE;
use muster_agent::{CheckDefinition, CheckKind, ServiceDefinition};
use muster_engine::{ServiceAddress, Status};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use muster_agent::definition::validate_weights;

use crate::decode::{
    a, canonicalize, f, Field, Kind, Schema, CHECK_TYPE_FIELDS, DECODE_FAILED, SERVICE_ADDRESS,
    WEIGHTS,
};
use crate::error::{Error, Result};

/// `Missing check name` (standalone check without a name).
pub const MISSING_CHECK_NAME: &str = "Missing check name";
/// `Bad check status` (standalone check with an unknown `Status`).
pub const BAD_CHECK_STATUS: &str = "Bad check status";
/// An inline service check with an unknown `Status`.
pub const BAD_INLINE_CHECK_STATUS: &str = "Status for checks must 'passing', 'warning', 'critical'";

use Kind::Value as V;

/// The fields of a check besides [`CHECK_TYPE_FIELDS`].
const CHECK_OWN_FIELDS: &[Field] = &[
    f("ID", V),
    a("CheckID", &["check_id"], V),
    f("Name", V),
    f("Notes", V),
    a("ServiceID", &["service_id"], V),
    f("Token", V),
    f("Status", V),
    f("Script", V),
    f("Namespace", V),
    f("Partition", V),
];

/// A check definition: [`CHECK_OWN_FIELDS`] + [`CHECK_TYPE_FIELDS`].
const CHECK: Schema = Schema {
    fields: &concat_fields(),
};

const CHECK_FIELD_COUNT: usize = CHECK_OWN_FIELDS.len() + CHECK_TYPE_FIELDS.len();

const fn concat_fields() -> [Field; CHECK_FIELD_COUNT] {
    let mut out = [f("", V); CHECK_FIELD_COUNT];
    let mut i = 0;
    while i < CHECK_OWN_FIELDS.len() {
        out[i] = CHECK_OWN_FIELDS[i];
        i += 1;
    }
    let mut j = 0;
    while j < CHECK_TYPE_FIELDS.len() {
        out[i + j] = CHECK_TYPE_FIELDS[j];
        j += 1;
    }
    out
}

/// A service definition.
const SERVICE: Schema = Schema {
    fields: &[
        f("Kind", V),
        f("ID", V),
        f("Name", V),
        f("Tags", V),
        f("Address", V),
        a(
            "TaggedAddresses",
            &["tagged_addresses"],
            Kind::MapOf(&SERVICE_ADDRESS),
        ),
        f("Meta", V),
        f("Port", V),
        a("SocketPath", &["socket_path"], V),
        f("Weights", Kind::Object(&WEIGHTS)),
        a("EnableTagOverride", &["enable_tag_override"], V),
        f("Check", Kind::OneOrList(&CHECK)),
        f("Checks", Kind::List(&CHECK)),
        f("Token", V),
        f("Proxy", V),
        f("Connect", V),
        f("Locality", V),
        f("Namespace", V),
        f("Partition", V),
    ],
};

/// `Weights` as sent (signed, to validate).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct WeightsIn {
    passing: i64,
    warning: i64,
}

/// A tagged address as sent (also in catalog registrations).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
pub(crate) struct AddressIn {
    address: String,
    port: u16,
}

/// Tagged addresses as sent → as the engine stores them.
pub(crate) fn tagged_addresses(
    map: BTreeMap<String, AddressIn>,
) -> BTreeMap<String, ServiceAddress> {
    map.into_iter()
        .map(|(k, v)| {
            (
                k,
                ServiceAddress {
                    address: v.address,
                    port: v.port,
                },
            )
        })
        .collect()
}

/// A service definition as sent (canonical names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct ServiceIn {
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, AddressIn>,
    meta: BTreeMap<String, String>,
    port: u16,
    socket_path: String,
    weights: Option<WeightsIn>,
    enable_tag_override: bool,
    /// An object, or (config files) a list of objects.
    check: Option<Value>,
    checks: Vec<CheckIn>,
    token: String,
    proxy: Option<Value>,
    connect: Option<Value>,
    locality: Option<Value>,
    namespace: String,
    partition: String,
}

/// A check definition as sent (canonical names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct CheckIn {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    notes: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    token: String,
    status: String,
    script: String,
    namespace: String,
    partition: String,
    script_args: Vec<String>,
    #[serde(rename = "DockerContainerID")]
    docker_container_id: String,
    shell: String,
    #[serde(rename = "HTTP")]
    http: String,
    header: BTreeMap<String, Vec<String>>,
    method: String,
    body: String,
    disable_redirects: bool,
    #[serde(rename = "TCP")]
    tcp: String,
    #[serde(rename = "TCPUseTLS")]
    tcp_use_tls: bool,
    #[serde(rename = "UDP")]
    udp: String,
    #[serde(rename = "H2PING")]
    h2ping: String,
    #[serde(rename = "H2PingUseTLS")]
    h2_ping_use_tls: Option<bool>,
    #[serde(rename = "GRPC")]
    grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: bool,
    #[serde(rename = "TLSServerName")]
    tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: bool,
    alias_node: String,
    alias_service: String,
    #[serde(rename = "OSService")]
    os_service: String,
    interval: u64,
    timeout: u64,
    #[serde(rename = "TTL")]
    ttl: u64,
    deregister_critical_service_after: Option<u64>,
    output_max_size: usize,
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
}

/// Why a definition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DefError {
    /// The JSON does not fit (unknown key, wrong type, bad duration).
    Decode(String),
    /// It fits but breaks a rule (Consul's message).
    Invalid(String),
}

impl DefError {
    /// The HTTP error: both are 400s, decode errors with Consul's prefix.
    fn into_http(self) -> Error {
        match self {
            DefError::Decode(m) => Error::bad_request(format!("{DECODE_FAILED}{m}")),
            DefError::Invalid(m) => Error::bad_request(m),
        }
    }

    /// The bare message (config files).
    fn into_message(self) -> String {
        match self {
            DefError::Decode(m) | DefError::Invalid(m) => m,
        }
    }
}

fn decode_value<T: DeserializeOwned>(value: Value, schema: &Schema) -> Result<T, DefError> {
    let canon = canonicalize(value, schema).map_err(DefError::Decode)?;
    serde_json::from_value(canon).map_err(|e| DefError::Decode(e.to_string()))
}

fn parse_json(body: &[u8]) -> Result<Value, DefError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DefError::Decode("EOF".into()));
    }
    serde_json::from_slice(body).map_err(|e| DefError::Decode(e.to_string()))
}

fn nonzero(ns: u64) -> Option<Duration> {
    (ns > 0).then(|| Duration::from_nanos(ns))
}

/// What the check does, from which of its kind fields is set (Consul's
/// `CheckType.Type()` order), after the checks Consul makes before it.
fn check_kind(c: &mut CheckIn) -> Result<CheckKind, String> {
    if c.interval > 0 && c.ttl > 0 {
        return Err("Interval and TTL cannot both be specified".into());
    }
    let alias = !c.alias_service.is_empty() || !c.alias_node.is_empty();
    if alias && c.ttl > 0 {
        return Err("TTL must be not be set for Alias checks".into());
    }
    let mut args = std::mem::take(&mut c.script_args);
    if args.is_empty() && !c.script.is_empty() {
        args = vec!["/bin/sh".into(), "-c".into(), std::mem::take(&mut c.script)];
    }
    let kind = if !c.grpc.is_empty() {
        CheckKind::Grpc {
            target: std::mem::take(&mut c.grpc),
            use_tls: c.grpc_use_tls,
        }
    } else if !c.http.is_empty() {
        let method = if c.method.is_empty() {
            "GET".to_string()
        } else {
            std::mem::take(&mut c.method)
        };
        CheckKind::Http {
            url: std::mem::take(&mut c.http),
            method,
            header: std::mem::take(&mut c.header),
            body: std::mem::take(&mut c.body),
            tls_server_name: std::mem::take(&mut c.tls_server_name),
            tls_skip_verify: c.tls_skip_verify,
            disable_redirects: c.disable_redirects,
        }
    } else if c.ttl > 0 {
        CheckKind::Ttl {
            ttl: Duration::from_nanos(c.ttl),
        }
    } else if !c.tcp.is_empty() {
        CheckKind::Tcp {
            addr: std::mem::take(&mut c.tcp),
        }
    } else if !c.udp.is_empty() {
        CheckKind::Udp {
            addr: std::mem::take(&mut c.udp),
        }
    } else if alias {
        CheckKind::Alias {
            service: std::mem::take(&mut c.alias_service),
            node: std::mem::take(&mut c.alias_node),
        }
    } else if !c.docker_container_id.is_empty() {
        if args.is_empty() {
            return Err("ScriptArgs must be set for Docker checks".into());
        }
        let shell = if c.shell.is_empty() {
            "/bin/sh".to_string()
        } else {
            std::mem::take(&mut c.shell)
        };
        CheckKind::Docker {
            container_id: std::mem::take(&mut c.docker_container_id),
            shell,
            args,
        }
    } else if !args.is_empty() {
        CheckKind::Script { args }
    } else if !c.h2ping.is_empty() {
        return Err("H2PING checks are not supported by muster".into());
    } else if !c.os_service.is_empty() {
        return Err("OSService checks are not supported by muster".into());
    } else {
        CheckKind::Unset
    };
    Ok(kind)
}

/// A decoded check as a definition; `inline` for checks inside a service
/// definition (their status message differs, their IDs come from
/// `normalize`).
fn to_check(mut c: CheckIn, inline: bool) -> Result<CheckDefinition, DefError> {
    let status = if c.status.is_empty() {
        None
    } else {
        let bad = if inline {
            BAD_INLINE_CHECK_STATUS
        } else {
            BAD_CHECK_STATUS
        };
        Some(Status::parse(&c.status).ok_or_else(|| DefError::Invalid(bad.into()))?)
    };
    let kind = check_kind(&mut c).map_err(|e| DefError::Invalid(format!("Invalid check: {e}")))?;
    let id = if c.id.is_empty() { c.check_id } else { c.id };
    let def = CheckDefinition {
        id,
        name: c.name,
        notes: c.notes,
        service_id: c.service_id,
        status,
        kind,
        interval: Duration::from_nanos(c.interval),
        timeout: nonzero(c.timeout),
        success_before_passing: c.success_before_passing,
        failures_before_warning: c.failures_before_warning,
        failures_before_critical: c.failures_before_critical,
        output_max_size: if c.output_max_size == 0 {
            DEFAULT_OUTPUT_MAX_SIZE
        } else {
            c.output_max_size
        },
        deregister_critical_service_after: c.deregister_critical_service_after.and_then(nonzero),
    };
    def.validate()
        .map_err(|e| DefError::Invalid(format!("Invalid check: {e}")))?;
    Ok(def)
}

/// A standalone check (API `check/register` or a config file's node check):
/// `Name` required, `ID` defaults to it.
fn check_from_value(value: Value) -> Result<CheckDefinition, DefError> {
    let c: CheckIn = decode_value(value, &CHECK)?;
    if c.name.is_empty() {
        return Err(DefError::Invalid(MISSING_CHECK_NAME.into()));
    }
    let mut def = to_check(c, false)?;
    if def.id.is_empty() {
        def.id.clone_from(&def.name);
    }
    Ok(def)
}

fn service_from_value(value: Value) -> Result<ServiceDefinition, DefError> {
    let s: ServiceIn = decode_value(value, &SERVICE)?;
    // Raw weights may be out of u32's range: checked before they are kept;
    // every other rule is the definition's own (`ServiceDefinition::validate`).
    let weights = match s.weights {
        None => muster_engine::Weights::default(),
        Some(w) => validate_weights(w.passing, w.warning)
            .map_err(|e| DefError::Invalid(format!("Invalid Weights: {e}")))?,
    };
    let mut inline: Vec<CheckIn> = match s.check {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| DefError::Decode(e.to_string())))
            .collect::<Result<_, _>>()?,
        Some(v) => vec![serde_json::from_value(v).map_err(|e| DefError::Decode(e.to_string()))?],
    };
    inline.extend(s.checks);
    let checks = inline
        .into_iter()
        .map(|c| to_check(c, true))
        .collect::<Result<Vec<_>, _>>()?;
    let mut def = ServiceDefinition {
        id: s.id,
        name: s.name,
        tags: s.tags,
        address: s.address,
        tagged_addresses: tagged_addresses(s.tagged_addresses),
        port: s.port,
        socket_path: s.socket_path,
        meta: s.meta,
        weights,
        enable_tag_override: s.enable_tag_override,
        kind: s.kind,
        checks,
        token: s.token,
    };
    def.validate().map_err(DefError::Invalid)?;
    def.normalize();
    Ok(def)
}

/// A service definition from a config file's `service` object (or one
/// element of `services`): snake_case, PascalCase and any-case keys,
/// `check` as an object or a list, `checks` as a list. Defaults applied
/// ([`ServiceDefinition::normalize`]) and §6.1 validated; the error is
/// the bare reason (`json: unknown field "x"`, `Missing service name`,
/// `Invalid check: Interval must be > 0 for http checks`, ...).
pub fn service_definition_from_json(value: &Value) -> Result<ServiceDefinition, String> {
    service_from_value(value.clone()).map_err(DefError::into_message)
}

/// A check definition from a config file's `check` object (or one element
/// of `checks`): `name` required (`Missing check name`), `id` (or
/// `check_id`) defaulting to it, `service_id` for a service's check,
/// `status` (`Bad check status`), validated per §6.2 (`Invalid check: …`).
pub fn check_definition_from_json(value: &Value) -> Result<CheckDefinition, String> {
    check_from_value(value.clone()).map_err(DefError::into_message)
}

/// The body of `PUT /v1/agent/service/register`.
pub(crate) fn service_from_body(body: &[u8]) -> Result<ServiceDefinition> {
    parse_json(body)
        .and_then(service_from_value)
        .map_err(DefError::into_http)
}

/// The body of `PUT /v1/agent/check/register`.
pub(crate) fn check_from_body(body: &[u8]) -> Result<CheckDefinition> {
    parse_json(body)
        .and_then(check_from_value)
        .map_err(DefError::into_http)
}

#[cfg(test)]
mod tests;
