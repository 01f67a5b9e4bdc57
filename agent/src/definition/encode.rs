//! Definitions back into the PascalCase JSON that
//! `PUT /v1/agent/service/register` and `/v1/agent/check/register` take
//! (`muster services register` sends files' definitions this way); what
//! [`super::decode`] reads back to the same definition.

use muster_engine::duration;
use serde_json::{json, Map, Value};

use super::{CheckDefinition, CheckKind, ServiceDefinition, DEFAULT_OUTPUT_MAX_SIZE};

/// A service definition as the PascalCase JSON body of
/// `PUT /v1/agent/service/register`.
pub fn service_to_api(def: &ServiceDefinition) -> Value {
    let mut out = Map::new();
    out.insert("ID".into(), json!(def.id));
    out.insert("Name".into(), json!(def.name));
    if !def.tags.is_empty() {
        out.insert("Tags".into(), json!(def.tags));
    }
    out.insert("Address".into(), json!(def.address));
    out.insert("Port".into(), json!(def.port));
    if !def.socket_path.is_empty() {
        out.insert("SocketPath".into(), json!(def.socket_path));
    }
    if !def.tagged_addresses.is_empty() {
        let tagged: Map<String, Value> = def
            .tagged_addresses
            .iter()
            .map(|(k, a)| (k.clone(), json!({"Address": a.address, "Port": a.port})))
            .collect();
        out.insert("TaggedAddresses".into(), Value::Object(tagged));
    }
    if !def.meta.is_empty() {
        out.insert("Meta".into(), json!(def.meta));
    }
    out.insert(
        "Weights".into(),
        json!({"Passing": def.weights.passing, "Warning": def.weights.warning}),
    );
    out.insert("EnableTagOverride".into(), json!(def.enable_tag_override));
    if !def.kind.is_empty() {
        out.insert("Kind".into(), json!(def.kind));
    }
    if !def.token.is_empty() {
        out.insert("Token".into(), json!(def.token));
    }
    if !def.checks.is_empty() {
        let checks: Vec<Value> = def.checks.iter().map(|c| check_to_api(c, false)).collect();
        out.insert("Checks".into(), Value::Array(checks));
    }
    Value::Object(out)
}

/// A check as PascalCase JSON: `standalone` adds `ID` / `ServiceID` (the
/// check registration body); inline checks carry `CheckID`.
pub fn check_to_api(def: &CheckDefinition, standalone: bool) -> Value {
    let mut out = Map::new();
    if standalone {
        out.insert("ID".into(), json!(def.id));
        if !def.service_id.is_empty() {
            out.insert("ServiceID".into(), json!(def.service_id));
        }
    } else {
        out.insert("CheckID".into(), json!(def.id));
    }
    out.insert("Name".into(), json!(def.name));
    if !def.notes.is_empty() {
        out.insert("Notes".into(), json!(def.notes));
    }
    if let Some(status) = def.status {
        out.insert("Status".into(), json!(status.as_str()));
    }
    match &def.kind {
        CheckKind::Unset => {}
        CheckKind::Script { args } => {
            out.insert("Args".into(), json!(args));
        }
        CheckKind::Http {
            url,
            method,
            header,
            body,
            tls_server_name,
            tls_skip_verify,
            disable_redirects,
        } => {
            out.insert("HTTP".into(), json!(url));
            out.insert("Method".into(), json!(method));
            if !header.is_empty() {
                out.insert("Header".into(), json!(header));
            }
            if !body.is_empty() {
                out.insert("Body".into(), json!(body));
            }
            if !tls_server_name.is_empty() {
                out.insert("TLSServerName".into(), json!(tls_server_name));
            }
            out.insert("TLSSkipVerify".into(), json!(tls_skip_verify));
            out.insert("DisableRedirects".into(), json!(disable_redirects));
        }
        CheckKind::Tcp { addr } => {
            out.insert("TCP".into(), json!(addr));
        }
        CheckKind::Udp { addr } => {
            out.insert("UDP".into(), json!(addr));
        }
        CheckKind::Ttl { ttl } => {
            out.insert("TTL".into(), json!(duration::format(*ttl)));
        }
        CheckKind::Grpc { target, use_tls } => {
            out.insert("GRPC".into(), json!(target));
            out.insert("GRPCUseTLS".into(), json!(use_tls));
        }
        CheckKind::Docker {
            container_id,
            shell,
            args,
        } => {
            out.insert("DockerContainerID".into(), json!(container_id));
            if !shell.is_empty() {
                out.insert("Shell".into(), json!(shell));
            }
            out.insert("Args".into(), json!(args));
        }
        CheckKind::Resource(r) => {
            let mut spec = serde_json::Map::new();
            if let Some(w) = r.warning {
                spec.insert("Warning".into(), json!(crate::definition::percent(w)));
            }
            if let Some(c) = r.critical {
                spec.insert("Critical".into(), json!(crate::definition::percent(c)));
            }
            let (key, place) = match &r.resource {
                crate::definition::Resource::Memory { source } => ("Memory", ("Source", source)),
                crate::definition::Resource::Cpu { source } => ("CPU", ("Source", source)),
                crate::definition::Resource::Disk { path } => ("Disk", ("Path", path)),
                crate::definition::Resource::Inodes { path } => ("Inodes", ("Path", path)),
                crate::definition::Resource::Process { pidfile, name } => {
                    if !name.is_empty() {
                        spec.insert("Name".into(), json!(name));
                    }
                    ("Process", ("PidFile", pidfile))
                }
            };
            if !place.1.is_empty() {
                spec.insert(place.0.into(), json!(place.1));
            }
            out.insert(key.into(), serde_json::Value::Object(spec));
        }
        CheckKind::Alias { service, node } => {
            out.insert("AliasService".into(), json!(service));
            if !node.is_empty() {
                out.insert("AliasNode".into(), json!(node));
            }
        }
    }
    if !def.interval.is_zero() {
        out.insert("Interval".into(), json!(duration::format(def.interval)));
    }
    if let Some(t) = def.timeout {
        out.insert("Timeout".into(), json!(duration::format(t)));
    }
    for (key, n) in [
        ("SuccessBeforePassing", def.success_before_passing),
        ("FailuresBeforeWarning", def.failures_before_warning),
        ("FailuresBeforeCritical", def.failures_before_critical),
    ] {
        if n > 0 {
            out.insert(key.into(), json!(n));
        }
    }
    if def.output_max_size != DEFAULT_OUTPUT_MAX_SIZE {
        out.insert("OutputMaxSize".into(), json!(def.output_max_size));
    }
    if let Some(d) = def.deregister_critical_service_after {
        out.insert(
            "DeregisterCriticalServiceAfter".into(),
            json!(duration::format(d)),
        );
    }
    Value::Object(out)
}
