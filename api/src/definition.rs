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
//! The config loader calls [`service_definition_from_json`] and
//! [`check_definition_from_json`] on each `service`/`check` object (JSON
//! or HCL converted to JSON); an inline `check` may also be a list there
//! (repeated HCL blocks).

use std::collections::BTreeMap;
use std::time::Duration;

use muster_engine::agent::definition::DEFAULT_OUTPUT_MAX_SIZE;
use muster_engine::agent::{CheckDefinition, CheckKind, ServiceDefinition};
use muster_engine::{ServiceAddress, Status};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::catalog::{check_meta, check_weights, is_any_addr, MISSING_SERVICE};
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

/// A tagged address as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct AddressIn {
    address: String,
    port: u16,
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
    if s.name.is_empty() {
        return Err(DefError::Invalid(MISSING_SERVICE.into()));
    }
    check_meta("Service", &s.meta)
        .map_err(|e| DefError::Invalid(format!("Invalid Service Meta: {e}")))?;
    let weights = match s.weights {
        None => muster_engine::Weights::default(),
        Some(w) => check_weights(w.passing, w.warning)
            .map_err(|e| DefError::Invalid(format!("Invalid Weights: {e}")))?,
    };
    if is_any_addr(&s.address) {
        return Err(DefError::Invalid("Invalid service address".into()));
    }
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
        tagged_addresses: s
            .tagged_addresses
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    ServiceAddress {
                        address: v.address,
                        port: v.port,
                    },
                )
            })
            .collect(),
        port: s.port,
        socket_path: s.socket_path,
        meta: s.meta,
        weights,
        enable_tag_override: s.enable_tag_override,
        kind: s.kind,
        checks,
        token: s.token,
    };
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
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(body: &str) -> std::result::Result<ServiceDefinition, String> {
        service_from_body(body.as_bytes()).map_err(|e| format!("{} {e}", e.status().as_u16()))
    }

    fn chk(body: &str) -> std::result::Result<CheckDefinition, String> {
        check_from_body(body.as_bytes()).map_err(|e| format!("{} {e}", e.status().as_u16()))
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn definition_patroni_body_verbatim() -> std::result::Result<(), String> {
        let d = svc(
            r#"{"name": "batman", "id": "batman/pg0", "address": "10.0.0.5", "port": 5432,
                "tags": ["master"], "enabletagoverride": true,
                "check": {"http": "http://10.0.0.5:8008/master", "interval": "5s",
                          "DeregisterCriticalServiceAfter": "150.0s", "TLSServerName": "pg0"}}"#,
        )?;
        assert_eq!((d.id.as_str(), d.name.as_str()), ("batman/pg0", "batman"));
        assert_eq!((d.address.as_str(), d.port), ("10.0.0.5", 5432));
        assert_eq!(d.tags, vec!["master".to_string()]);
        assert!(d.enable_tag_override);
        assert_eq!(d.weights, muster_engine::Weights::default());
        let [c] = d.checks.as_slice() else {
            return Err(format!("{:?}", d.checks));
        };
        assert_eq!(c.id, "service:batman/pg0");
        assert_eq!(c.name, "Service 'batman' check");
        assert_eq!(c.service_id, "batman/pg0");
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(
            c.deregister_critical_service_after,
            Some(Duration::from_secs(150))
        );
        assert_eq!(c.status, None);
        assert_eq!(c.output_max_size, DEFAULT_OUTPUT_MAX_SIZE);
        assert_eq!(
            c.kind,
            CheckKind::Http {
                url: "http://10.0.0.5:8008/master".into(),
                method: "GET".into(),
                header: BTreeMap::new(),
                body: String::new(),
                tls_server_name: "pg0".into(),
                tls_skip_verify: false,
                disable_redirects: false,
            }
        );
        Ok(())
    }

    #[test]
    fn definition_python_consul_bodies() -> std::result::Result<(), String> {
        // python-consul `agent.service.register(name, service_id, address,
        // port, tags, check=Check.http(...), enable_tag_override=...)`.
        let d = svc(
            r#"{"name": "web", "id": "web1", "port": 80, "enabletagoverride": false,
                "check": {"http": "http://localhost:80/health", "interval": "10s",
                          "timeout": "2s", "header": {"X-A": ["1", "2"]}, "TLSSkipVerify": true}}"#,
        )?;
        let c = d.checks.first().ok_or("no check")?;
        assert_eq!(c.timeout, Some(Duration::from_secs(2)));
        let CheckKind::Http {
            header,
            tls_skip_verify,
            ..
        } = &c.kind
        else {
            return Err(format!("{:?}", c.kind));
        };
        assert_eq!(header.get("X-A"), Some(&vec!["1".into(), "2".into()]));
        assert!(*tls_skip_verify);
        // Check.ttl, Check.script, Check.tcp.
        let d = svc(r#"{"name":"t","check":{"ttl":"15s"}}"#)?;
        assert_eq!(
            d.checks.first().map(|c| c.kind.clone()),
            Some(CheckKind::Ttl {
                ttl: Duration::from_secs(15)
            })
        );
        assert_eq!(d.id, "t");
        let d = svc(r#"{"name":"s","check":{"args":["/bin/true","x"],"interval":"1s"}}"#)?;
        assert_eq!(
            d.checks.first().map(|c| c.kind.clone()),
            Some(CheckKind::Script {
                args: vec!["/bin/true".into(), "x".into()]
            })
        );
        let d = svc(r#"{"name":"s","check":{"script":"exit 1","interval":"1s"}}"#)?;
        assert_eq!(
            d.checks.first().map(|c| c.kind.clone()),
            Some(CheckKind::Script {
                args: vec!["/bin/sh".into(), "-c".into(), "exit 1".into()]
            })
        );
        let d = svc(
            r#"{"name":"db","checks":[{"tcp":"127.0.0.1:5432","interval":"10s","timeout":"1s"},
               {"CheckID":"own","Name":"mine","TTL":30000000000,"Status":"passing"}]}"#,
        )?;
        let ids: Vec<&str> = d.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["service:db:1", "own"]);
        assert_eq!(
            d.checks.get(1).and_then(|c| c.status),
            Some(Status::Passing)
        );
        assert_eq!(d.checks.get(1).map(|c| c.name.as_str()), Some("mine"));
        // python-consul `agent.check.register(name, check, check_id, notes,
        // service_id)`.
        let c = chk(
            r#"{"name": "mem", "ttl": "10s", "id": "mem1", "notes": "n", "serviceid": "web1"}"#,
        )?;
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.notes.as_str()),
            ("mem1", "mem", "n")
        );
        assert_eq!(c.service_id, "web1");
        Ok(())
    }

    #[test]
    fn definition_kinds_and_fields() -> std::result::Result<(), String> {
        let c =
            chk(r#"{"Name":"g","GRPC":"127.0.0.1:9000/svc","GRPCUseTLS":true,"Interval":"1s"}"#)?;
        assert_eq!(
            c.kind,
            CheckKind::Grpc {
                target: "127.0.0.1:9000/svc".into(),
                use_tls: true
            }
        );
        assert_eq!(c.id, "g");
        let c = chk(r#"{"Name":"u","UDP":"127.0.0.1:53","Interval":"1s"}"#)?;
        assert_eq!(
            c.kind,
            CheckKind::Udp {
                addr: "127.0.0.1:53".into()
            }
        );
        let c = chk(r#"{"Name":"a","AliasService":"web1"}"#)?;
        assert_eq!(
            c.kind,
            CheckKind::Alias {
                service: "web1".into(),
                node: String::new()
            }
        );
        let c = chk(
            r#"{"Name":"d","DockerContainerID":"abc","Args":["ls"],"Interval":"1s","Timeout":"3s",
                "SuccessBeforePassing":2,"FailuresBeforeWarning":1,"FailuresBeforeCritical":3,
                "OutputMaxSize":100,"Status":"warning"}"#,
        )?;
        assert_eq!(
            c.kind,
            CheckKind::Docker {
                container_id: "abc".into(),
                shell: "/bin/sh".into(),
                args: vec!["ls".into()]
            }
        );
        assert_eq!(
            (
                c.success_before_passing,
                c.failures_before_warning,
                c.failures_before_critical,
                c.output_max_size
            ),
            (2, 1, 3, 100)
        );
        assert_eq!(c.status, Some(Status::Warning));
        assert_eq!(c.timeout, Some(Duration::from_secs(3)));
        let c = chk(r#"{"Name":"n","TTL":"1m","Interval":"0"}"#)?;
        assert_eq!(c.interval, Duration::ZERO);
        let c = chk(
            r#"{"Name":"x","HTTP":"http://x","Method":"POST","Body":"b","Interval":2000000000,"DisableRedirects":true}"#,
        )?;
        let CheckKind::Http {
            method,
            body,
            disable_redirects,
            ..
        } = &c.kind
        else {
            return Err(format!("{:?}", c.kind));
        };
        assert_eq!(
            (method.as_str(), body.as_str(), *disable_redirects),
            ("POST", "b", true)
        );
        assert_eq!(c.interval, Duration::from_nanos(2 * SEC));
        Ok(())
    }

    #[test]
    fn definition_validation_messages() {
        let cases: &[(&str, &str)] = &[
            (r#"{"id":"x"}"#, "400 Missing service name"),
            ("", "400 Request decode failed: EOF"),
            (
                r#"{"name":"x","bogus":1}"#,
                r#"400 Request decode failed: json: unknown field "bogus""#,
            ),
            (
                r#"{"name":"x","check":{"http":"h","interval":"5s","nope":1}}"#,
                r#"400 Request decode failed: json: unknown field "nope""#,
            ),
            (
                r#"{"name":"x","Address":"0.0.0.0"}"#,
                "400 Invalid service address",
            ),
            (
                r#"{"name":"x","Address":"::"}"#,
                "400 Invalid service address",
            ),
            (
                r#"{"name":"x","Meta":{"consul-x":"1"}}"#,
                "400 Invalid Service Meta: Key prefix 'consul-' is reserved for internal use",
            ),
            (
                r#"{"name":"x","Meta":{"a b":"1"}}"#,
                "400 Invalid Service Meta: Key contains invalid characters",
            ),
            (
                r#"{"name":"x","Weights":{"Passing":0,"Warning":1}}"#,
                "400 Invalid Weights: Passing must be greater than 0",
            ),
            (
                r#"{"name":"x","Weights":{"Passing":1,"Warning":70000}}"#,
                "400 Invalid Weights: Weight must be < 65536",
            ),
            (
                r#"{"name":"x","check":{"http":"http://x"}}"#,
                "400 Invalid check: Interval must be > 0 for http checks",
            ),
            (
                r#"{"name":"x","check":{}}"#,
                "400 Invalid check: TTL must be > 0 for TTL checks",
            ),
            (
                r#"{"name":"x","check":{"ttl":"10s","interval":"10s"}}"#,
                "400 Invalid check: Interval and TTL cannot both be specified",
            ),
            (
                r#"{"name":"x","check":{"ttl":"10s","status":"bogus"}}"#,
                "400 Status for checks must 'passing', 'warning', 'critical'",
            ),
            (
                r#"{"name":"x","check":{"interval":"1s"}}"#,
                "400 Invalid check: TTL must be > 0 for TTL checks",
            ),
            (
                r#"{"name":"x","check":{"interval":"ten"}}"#,
                r#"400 Request decode failed: time: invalid duration "ten""#,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(svc(body).err().as_deref(), Some(*want), "{body}");
        }
        let meta: serde_json::Map<String, Value> =
            (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        let body = json!({"Name":"x","Meta":meta}).to_string();
        assert_eq!(
            svc(&body).err().as_deref(),
            Some("400 Invalid Service Meta: Service metadata cannot contain more than 64 key/value pairs")
        );
        let checks: &[(&str, &str)] = &[
            (r#"{"ttl":"10s"}"#, "400 Missing check name"),
            (
                r#"{"name":"c","ttl":"10s","status":"up"}"#,
                "400 Bad check status",
            ),
            (
                r#"{"name":"c","AliasService":"w","Interval":"1s"}"#,
                "400 Invalid check: Interval cannot be set for alias checks",
            ),
            (
                r#"{"name":"c","AliasService":"w","TTL":"1s"}"#,
                "400 Invalid check: TTL must be not be set for Alias checks",
            ),
            (
                r#"{"name":"c","HTTP":"h","Interval":"1s","FailuresBeforeWarning":3,"FailuresBeforeCritical":2}"#,
                "400 Invalid check: FailuresBeforeWarning must be less than or equal to FailuresBeforeCritical",
            ),
        ];
        for (body, want) in checks {
            assert_eq!(chk(body).err().as_deref(), Some(*want), "{body}");
        }
    }

    #[test]
    fn definition_config_file_snake_case() -> std::result::Result<(), String> {
        let d = service_definition_from_json(&json!({
            "name": "redis", "id": "redis1", "tags": ["primary"], "port": 6379,
            "enable_tag_override": true, "socket_path": "/tmp/r.sock",
            "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 6379}},
            "weights": {"passing": 10, "warning": 1}, "meta": {"env": "prod"},
            "check": [
                {"args": ["/bin/check"], "interval": "10s", "timeout": "1s"},
                {"tcp": "localhost:6379", "interval": "5s", "deregister_critical_service_after": "90m",
                 "failures_before_critical": 3, "success_before_passing": 2, "output_max_size": 512}
            ],
            "checks": [{"name": "ttl", "ttl": "30s", "status": "passing", "notes": "n"}]
        }))?;
        assert!(d.enable_tag_override);
        assert_eq!(d.socket_path, "/tmp/r.sock");
        assert_eq!(
            d.tagged_addresses
                .get("lan")
                .map(|a| (a.address.as_str(), a.port)),
            Some(("10.0.0.1", 6379))
        );
        assert_eq!((d.weights.passing, d.weights.warning), (10, 1));
        let ids: Vec<&str> = d.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["service:redis1:1", "service:redis1:2", "service:redis1:3"]
        );
        let tcp = d.checks.get(1).ok_or("tcp")?;
        assert_eq!(
            tcp.deregister_critical_service_after,
            Some(Duration::from_secs(90 * 60))
        );
        assert_eq!(
            (
                tcp.failures_before_critical,
                tcp.success_before_passing,
                tcp.output_max_size
            ),
            (3, 2, 512)
        );
        assert_eq!(d.checks.get(2).map(|c| c.name.as_str()), Some("ttl"));
        let c = check_definition_from_json(&json!({
            "name": "web-alive", "check_id": "wa", "service_id": "web1",
            "http": "http://localhost/", "interval": "10s", "tls_skip_verify": true,
            "tls_server_name": "web", "disable_redirects": true, "method": "HEAD"
        }))?;
        assert_eq!((c.id.as_str(), c.service_id.as_str()), ("wa", "web1"));
        assert_eq!(
            service_definition_from_json(&json!({"name": "x", "port": "80"})).err(),
            Some("invalid type: string \"80\", expected u16".to_string())
        );
        assert_eq!(
            check_definition_from_json(&json!({"ttl": "1s"}))
                .err()
                .as_deref(),
            Some(MISSING_CHECK_NAME)
        );
        Ok(())
    }
}
