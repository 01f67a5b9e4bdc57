//! Request-body decoding with Consul's rules (consul-compat.md §0.2), shared
//! by every endpoint that takes a JSON body (catalog register/deregister,
//! session create, transactions, operator keyring; agent service and check
//! definitions go through `muster_agent::definition::decode`).
//!
//! Decoding is two steps:
//! 1. [`canonicalize`] walks the parsed JSON against a [`Schema`], a table
//!    of each object's canonical (PascalCase) field names. Keys match
//!    case-insensitively or through a snake_case alias; a canonical spelling
//!    wins over an alias when both are present; an unknown key is
//!    `json: unknown field "X"`; a `null` value is dropped (Go leaves the
//!    zero value); duration fields become a JSON number of nanoseconds.
//!    Free-form maps (`Meta`, `NodeMeta`, node `TaggedAddresses`, `Header`)
//!    are [`Kind::Value`] and are never rewritten.
//! 2. serde deserializes the canonical JSON into a request struct whose
//!    field names are exactly the schema's (`deny_unknown_fields` is a
//!    safety net: a schema/struct mismatch shows up in the tests).
//!
//! Every failure is a 400 `Request decode failed: <msg>`. This module knows
//! no endpoint semantics (defaults, validation): callers do that.
//!
//! # Adding a body type
//! Write a `Schema` (reuse [`WEIGHTS`], [`SERVICE_ADDRESS`],
//! [`CHECK_DEFINITION`] for nested objects), a `#[derive(Deserialize)]`
//! struct with the same field names, `impl Decode for T { const SCHEMA }`,
//! and call [`read`] (or [`from_slice`]) in the handler. Duration fields are
//! `u64` nanoseconds (`Option<u64>` to tell "absent" apart).

use std::fmt::Display;

use bytes::Bytes;
use muster_engine::duration;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Largest JSON request body accepted (bytes).
pub const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

/// Prefix of every decode error body.
pub const DECODE_FAILED: &str = "Request decode failed: ";

/// How the value of one field is canonicalised.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Any JSON value, left as is (scalars, lists of scalars, free-form
    /// maps such as `Meta`).
    Value,
    /// A Go duration: a string (`"10s"`) or a number of nanoseconds;
    /// becomes a number of nanoseconds (negative → 0).
    Duration,
    /// `LockDelay`: like [`Kind::Duration`], but a number below 1000 is
    /// seconds (§0.2).
    LockDelay,
    /// A nested object with its own schema.
    Object(&'static Schema),
    /// A list of objects with this schema.
    List(&'static Schema),
    /// A map with free-form keys whose values are objects with this schema
    /// (a service's `TaggedAddresses`).
    MapOf(&'static Schema),
}

/// One accepted field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// The canonical (PascalCase) name; the serde struct uses this name.
    pub name: &'static str,
    /// Other accepted spellings (snake_case); all match case-insensitively.
    pub aliases: &'static [&'static str],
    /// How the value is canonicalised.
    pub kind: Kind,
}

/// The accepted fields of one JSON object.
#[derive(Debug)]
pub(crate) struct Schema {
    /// Fields, in any order.
    pub fields: &'static [Field],
}

/// A field without aliases.
pub(crate) const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        aliases: &[],
        kind,
    }
}

/// A field with aliases.
pub(crate) const fn a(name: &'static str, aliases: &'static [&'static str], kind: Kind) -> Field {
    Field {
        name,
        aliases,
        kind,
    }
}

use Kind::{Duration as D, Value as V};

/// `Weights`: `{"Passing","Warning"}`.
pub(crate) const WEIGHTS: Schema = Schema {
    fields: &[f("Passing", V), f("Warning", V)],
};

/// A service's tagged address: `{"Address","Port"}`.
pub(crate) const SERVICE_ADDRESS: Schema = Schema {
    fields: &[f("Address", V), f("Port", V)],
};

/// A tagged address as sent (a catalog registration's service, a txn
/// service op), decoded with [`SERVICE_ADDRESS`].
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
pub(crate) struct AddressIn {
    address: String,
    port: u16,
}

/// Tagged addresses as sent → as the engine stores them.
pub(crate) fn tagged_addresses(
    map: std::collections::BTreeMap<String, AddressIn>,
) -> std::collections::BTreeMap<String, muster_engine::ServiceAddress> {
    map.into_iter()
        .map(|(k, v)| {
            let a = muster_engine::ServiceAddress {
                address: v.address,
                port: v.port,
            };
            (k, a)
        })
        .collect()
}

/// The check-type fields of §6.2: the catalog's `HealthCheckDefinition`
/// (a check's stored `Definition`, shown back as sent; agent check
/// definitions are decoded by `muster_agent::definition::decode`).
pub(crate) const CHECK_TYPE_FIELDS: &[Field] = &[
    a("ScriptArgs", &["Args", "script_args"], V),
    a("DockerContainerID", &["docker_container_id"], V),
    f("Shell", V),
    f("HTTP", V),
    f("Header", V),
    f("Method", V),
    f("Body", V),
    a("DisableRedirects", &["disable_redirects"], V),
    f("TCP", V),
    a("TCPUseTLS", &["tcp_use_tls"], V),
    f("UDP", V),
    f("H2PING", V),
    a("H2PingUseTLS", &["h2ping_use_tls"], V),
    f("GRPC", V),
    a("GRPCUseTLS", &["grpc_use_tls"], V),
    a("TLSServerName", &["tls_server_name"], V),
    a("TLSSkipVerify", &["tls_skip_verify"], V),
    a("AliasNode", &["alias_node"], V),
    a("AliasService", &["alias_service"], V),
    a("OSService", &["os_service"], V),
    f("Interval", D),
    f("Timeout", D),
    f("TTL", D),
    a(
        "DeregisterCriticalServiceAfter",
        &["deregister_critical_service_after"],
        D,
    ),
    a("OutputMaxSize", &["output_max_size"], V),
    a("SuccessBeforePassing", &["success_before_passing"], V),
    a("FailuresBeforeWarning", &["failures_before_warning"], V),
    a("FailuresBeforeCritical", &["failures_before_critical"], V),
];

/// The catalog's `HealthCheckDefinition` (a check's `Definition`).
pub(crate) const CHECK_DEFINITION: Schema = Schema {
    fields: CHECK_TYPE_FIELDS,
};

/// A request body type: a serde struct and the schema of its JSON.
pub(crate) trait Decode: DeserializeOwned {
    /// The accepted fields.
    const SCHEMA: &'static Schema;
}

fn fail(msg: impl Display) -> Error {
    Error::bad_request(format!("{DECODE_FAILED}{msg}"))
}

/// Decode a body; an empty body is `Request decode failed: EOF` (Go).
pub(crate) fn from_slice<T: Decode>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(fail("EOF"));
    }
    let raw: Value = serde_json::from_slice(body).map_err(fail)?;
    let canon = canonicalize(raw, T::SCHEMA).map_err(fail)?;
    serde_json::from_value(canon).map_err(fail)
}

/// Decode a body that may be empty (then `T::default()`, as session
/// create allows).
pub(crate) fn from_slice_or_default<T: Decode + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    from_slice(body)
}

/// Read a request's body (at most [`MAX_JSON_BODY`] bytes) and decode it.
pub(crate) async fn read<T, B>(req: hyper::Request<B>) -> Result<T>
where
    T: Decode,
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    from_slice(&read_bytes(req).await?)
}

/// Read a request's body (at most [`MAX_JSON_BODY`] bytes).
pub(crate) async fn read_bytes<B>(req: hyper::Request<B>) -> Result<Vec<u8>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let content_length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    crate::kv::read_body(req.into_body(), content_length, MAX_JSON_BODY).await
}

/// Rewrite `value` (an object of `schema`) to canonical field names; see
/// the module docs. A non-object is returned unchanged for serde to reject
/// with a type error.
pub(crate) fn canonicalize(value: Value, schema: &Schema) -> Result<Value, String> {
    let Value::Object(obj) = value else {
        return Ok(value);
    };
    // (canonical name, priority: 2 = canonical spelling, 1 = alias).
    let mut out = Map::new();
    let mut prio: Vec<(&'static str, u8)> = Vec::new();
    for (key, v) in obj {
        let (field, p) =
            lookup(schema, &key).ok_or_else(|| format!("json: unknown field {key:?}"))?;
        if v.is_null() {
            continue;
        }
        let v = convert(v, field)?;
        match prio.iter_mut().find(|(n, _)| *n == field.name) {
            Some((_, old)) if *old > p => continue,
            Some((_, old)) => *old = p,
            None => prio.push((field.name, p)),
        }
        out.insert(field.name.to_string(), v);
    }
    Ok(Value::Object(out))
}

fn lookup<'s>(schema: &'s Schema, key: &str) -> Option<(&'s Field, u8)> {
    if let Some(field) = schema
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(key))
    {
        return Some((field, 2));
    }
    schema
        .fields
        .iter()
        .find(|f| f.aliases.iter().any(|al| al.eq_ignore_ascii_case(key)))
        .map(|field| (field, 1))
}

fn convert(v: Value, field: &Field) -> Result<Value, String> {
    match field.kind {
        Kind::Value => Ok(v),
        Kind::Duration => duration_nanos(&v, field.name, false).map(Value::from),
        Kind::LockDelay => duration_nanos(&v, field.name, true).map(Value::from),
        Kind::Object(s) => canonicalize(v, s),
        Kind::List(s) => match v {
            Value::Array(items) => items
                .into_iter()
                .map(|item| canonicalize(item, s))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other),
        },
        Kind::MapOf(s) => match v {
            Value::Object(m) => m
                .into_iter()
                .map(|(k, item)| canonicalize(item, s).map(|item| (k, item)))
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            other => Ok(other),
        },
    }
}

/// A duration field's value in nanoseconds.
fn duration_nanos(v: &Value, name: &str, lock_delay: bool) -> Result<u64, String> {
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    match v {
        Value::String(s) => match duration::parse_signed(s) {
            Ok((true, _)) => Ok(0),
            Ok((false, d)) => Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            Err(e) => Err(e.to_string()),
        },
        Value::Number(n) => {
            let ns = if let Some(u) = n.as_u64() {
                u
            } else if n.as_i64().is_some() {
                0
            } else {
                // A float: truncated like a Go int conversion; negative → 0.
                let f = n.as_f64().unwrap_or(0.0);
                if f.is_finite() && f > 0.0 {
                    f as u64
                } else {
                    0
                }
            };
            if lock_delay && ns < 1000 {
                Ok(ns.saturating_mul(NANOS_PER_SEC))
            } else {
                Ok(ns)
            }
        }
        _ => Err(format!(
            "json: cannot unmarshal {} into Go struct field .{name} of type time.Duration",
            json_type(v)
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The canonical JSON of `value` (an object of `schema`, already
/// canonicalised) for display: duration fields back to Go duration strings,
/// and empty values (`""`, `0`, `false`, `[]`, `{}`) dropped, as Consul's
/// `Definition` carries only the non-empty settings.
pub(crate) fn display_json(value: &Value, schema: &Schema) -> Value {
    let Value::Object(obj) = value else {
        return value.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if is_empty(v) {
            continue;
        }
        let kind = schema.fields.iter().find(|f| f.name == k).map(|f| f.kind);
        let v = match (kind, v) {
            (Some(Kind::Duration | Kind::LockDelay), Value::Number(n)) => Value::String(
                duration::format(std::time::Duration::from_nanos(n.as_u64().unwrap_or(0))),
            ),
            (Some(Kind::Object(s)), v) => display_json(v, s),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    const INNER: Schema = Schema {
        fields: &[
            f("Name", V),
            a("EnableTagOverride", &["enable_tag_override"], V),
        ],
    };
    const OUTER: Schema = Schema {
        fields: &[
            f("ID", V),
            f("Meta", V),
            f("Interval", D),
            f("LockDelay", Kind::LockDelay),
            f("Inner", Kind::Object(&INNER)),
            f("Items", Kind::List(&INNER)),
            a(
                "TaggedAddresses",
                &["tagged_addresses"],
                Kind::MapOf(&SERVICE_ADDRESS),
            ),
        ],
    };

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
    struct Inner {
        name: String,
        enable_tag_override: bool,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
    struct Outer {
        #[serde(rename = "ID")]
        id: String,
        meta: BTreeMap<String, String>,
        interval: Option<u64>,
        lock_delay: Option<u64>,
        inner: Option<Inner>,
        items: Vec<Inner>,
        tagged_addresses: BTreeMap<String, Addr>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
    struct Addr {
        address: String,
        port: u16,
    }

    impl Decode for Outer {
        const SCHEMA: &'static Schema = &OUTER;
    }

    fn dec(body: &str) -> std::result::Result<Outer, String> {
        from_slice::<Outer>(body.as_bytes()).map_err(|e| format!("{} {e}", e.status().as_u16()))
    }

    #[test]
    fn decode_matches_names_case_insensitively_and_keeps_free_maps() -> Result<()> {
        let o = dec(
            r#"{"id":"x","META":{"Mixed_Case":"v"},"inner":{"name":"web","enabletagoverride":true},
               "items":[{"NAME":"a"},{"enable_tag_override":true}],
               "tagged_addresses":{"LAN":{"address":"10.0.0.1","port":80}}}"#,
        )
        .map_err(Error::bad_request)?;
        assert_eq!(o.id, "x");
        assert_eq!(o.meta.get("Mixed_Case").map(String::as_str), Some("v"));
        let inner = o.inner.unwrap_or_default();
        assert_eq!(
            (inner.name.as_str(), inner.enable_tag_override),
            ("web", true)
        );
        assert_eq!(o.items.len(), 2);
        assert!(o.items.get(1).is_some_and(|i| i.enable_tag_override));
        let lan = o
            .tagged_addresses
            .get("LAN")
            .map(|a| (a.address.as_str(), a.port));
        assert_eq!(lan, Some(("10.0.0.1", 80)));
        Ok(())
    }

    #[test]
    fn decode_pascal_case_wins_over_alias() {
        for body in [
            r#"{"Inner":{"EnableTagOverride":false,"enable_tag_override":true}}"#,
            r#"{"Inner":{"enable_tag_override":true,"EnableTagOverride":false}}"#,
            r#"{"Inner":{"enable_tag_override":true,"enabletagoverride":false}}"#,
        ] {
            let o = dec(body).map(|o| o.inner.map(|i| i.enable_tag_override));
            assert_eq!(o, Ok(Some(false)), "{body}");
        }
    }

    #[test]
    fn decode_rejects_unknown_fields_and_bad_json() {
        assert_eq!(
            dec(r#"{"ID":"x","Bogus":1}"#).err().as_deref(),
            Some(r#"400 Request decode failed: json: unknown field "Bogus""#)
        );
        assert_eq!(
            dec(r#"{"Inner":{"Nope":1}}"#).err().as_deref(),
            Some(r#"400 Request decode failed: json: unknown field "Nope""#)
        );
        // Keys inside free-form maps are never checked.
        assert!(dec(r#"{"Meta":{"Nope":"1"}}"#).is_ok());
        assert_eq!(
            dec("").err().as_deref(),
            Some("400 Request decode failed: EOF")
        );
        assert!(from_slice_or_default::<Outer>(b" \n").is_ok_and(|o| o == Outer::default()));
        assert!(from_slice_or_default::<Outer>(b"{\"x\":1}").is_err());
        for bad in [
            "{",
            "[1]",
            r#"{"ID":5}"#,
            r#"{"Inner":"x"}"#,
            r#"{"Meta":{"a":1}}"#,
        ] {
            let e = dec(bad).err().unwrap_or_default();
            assert!(e.starts_with("400 Request decode failed: "), "{bad}: {e}");
        }
        // null leaves the zero value.
        assert_eq!(dec(r#"{"ID":null,"Inner":null}"#), Ok(Outer::default()));
    }

    #[test]
    fn decode_durations_from_strings_and_numbers() {
        let iv = |body: &str| dec(body).map(|o| (o.interval, o.lock_delay));
        assert_eq!(
            iv(r#"{"Interval":"10s"}"#),
            Ok((Some(10_000_000_000), None))
        );
        assert_eq!(
            iv(r#"{"interval":"1m30s"}"#),
            Ok((Some(90_000_000_000), None))
        );
        assert_eq!(
            iv(r#"{"Interval":15000000000}"#),
            Ok((Some(15_000_000_000), None))
        );
        assert_eq!(iv(r#"{"Interval":"0"}"#), Ok((Some(0), None)));
        assert_eq!(iv(r#"{"LockDelay":5}"#), Ok((None, Some(5_000_000_000))));
        assert_eq!(
            iv(r#"{"lockdelay":"15s"}"#),
            Ok((None, Some(15_000_000_000)))
        );
        assert_eq!(
            iv(r#"{"LockDelay":15000000000}"#),
            Ok((None, Some(15_000_000_000)))
        );
        assert_eq!(
            iv(r#"{"Interval":"10"}"#).err().as_deref(),
            Some(r#"400 Request decode failed: time: missing unit in duration "10""#)
        );
        assert!(iv(r#"{"Interval":true}"#).is_err());
    }

    #[test]
    fn decode_display_json_formats_durations_and_drops_empties() -> Result<(), String> {
        let v = canonicalize(
            json!({"http":"http://x","interval":"10s","Timeout":0,"tls_skip_verify":false,"Header":{}}),
            &CHECK_DEFINITION,
        )?;
        assert_eq!(
            display_json(&v, &CHECK_DEFINITION),
            json!({"HTTP":"http://x","Interval":"10s"})
        );
        Ok(())
    }
}
