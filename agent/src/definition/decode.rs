//! The one decoder for service and check definitions: HTTP bodies
//! (`/v1/agent/service/register`, `/v1/agent/check/register`), config files
//! (JSON, and HCL through its JSON mapping) and `muster validate` all come
//! through [`service`] and [`check`].
//!
//! Keys: a key is folded (lowercased, underscores dropped) and matched
//! against each field's canonical PascalCase name and its aliases, so
//! `enable_tag_override`, `EnableTagOverride`, `enableTagOverride` and
//! python-consul's `enabletagoverride` are one key. When two spellings of
//! one field are present, one without underscores that is not an alias
//! wins ("PascalCase wins", consul-compat.md §0.2). A `null` value is
//! absent. Unknown keys are refused.
//!
//! Values: durations are Go duration strings or nanoseconds (negative → 0,
//! as Go's decoder leaves them); a lone string counts as a one-element
//! string list; `check` and `checks` take an object or a list of objects
//! (HCL's repeated blocks).
//!
//! Errors are a [`DefinitionError`]: the key path as the user spelled it
//! (`services[1].checks[0].intervl`) and a [`Problem`]; the API words it as
//! Consul does (`Request decode failed: json: unknown field "intervl"`),
//! the config loader names the file, the service and the check. Rules that
//! need no agent state are checked here, after the defaults
//! ([`ServiceDefinition::normalize`]), so errors carry final check IDs;
//! state-dependent rules (does the service exist, are scripts allowed) are
//! the agent's.

use std::collections::BTreeMap;

use muster_engine::{ServiceAddress, Status};
use serde_json::Value;

use super::DEFAULT_OUTPUT_MAX_SIZE;
use super::{validate_weights, CheckDefinition, CheckKind, ServiceDefinition};

mod error;
mod fields;
mod resource;

pub use error::{DefinitionError, Expected, JsonType, Problem};
pub use fields::objects;
use fields::{
    err, join, object, port, signed, string, string_list, string_map, unsigned, Fields, Keys,
    Result,
};

/// Where a definition comes from. Spellings and rules are the same; the
/// few defaults Consul itself applies differently are chosen by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An HTTP body: a weight left out is 0; a standalone check needs a
    /// `Name`.
    Http,
    /// A config file: a weight left out is 1; a node check's name and ID
    /// default to each other.
    File,
}

const SERVICE_KEYS: Keys = &[
    ("Kind", &[]),
    ("ID", &[]),
    ("Name", &[]),
    ("Tags", &[]),
    ("Address", &[]),
    ("TaggedAddresses", &[]),
    ("Meta", &[]),
    ("Port", &[]),
    ("SocketPath", &[]),
    ("Weights", &[]),
    ("EnableTagOverride", &[]),
    ("Check", &[]),
    ("Checks", &[]),
    ("Token", &[]),
    // Mesh and enterprise fields: accepted, not used.
    ("Proxy", &[]),
    ("Connect", &[]),
    ("Locality", &[]),
    ("Namespace", &[]),
    ("Partition", &[]),
];

const CHECK_KEYS: Keys = &[
    ("ID", &[]),
    ("CheckID", &[]),
    ("Name", &[]),
    ("Notes", &[]),
    ("ServiceID", &[]),
    ("Token", &[]),
    ("Status", &[]),
    ("Script", &[]),
    ("ScriptArgs", &["args"]),
    ("DockerContainerID", &[]),
    ("Shell", &[]),
    ("HTTP", &[]),
    ("Header", &[]),
    ("Method", &[]),
    ("Body", &[]),
    ("DisableRedirects", &[]),
    ("TCP", &[]),
    ("TCPUseTLS", &[]),
    ("UDP", &[]),
    ("H2PING", &[]),
    ("H2PingUseTLS", &[]),
    ("GRPC", &[]),
    ("GRPCUseTLS", &[]),
    ("TLSServerName", &[]),
    ("TLSSkipVerify", &[]),
    ("AliasNode", &[]),
    ("AliasService", &[]),
    ("OSService", &[]),
    ("Interval", &[]),
    ("Timeout", &[]),
    ("TTL", &[]),
    ("DeregisterCriticalServiceAfter", &[]),
    ("OutputMaxSize", &[]),
    ("SuccessBeforePassing", &[]),
    ("FailuresBeforeWarning", &[]),
    ("FailuresBeforeCritical", &[]),
    ("Namespace", &[]),
    ("Partition", &[]),
    ("Memory", &[]),
    ("CPU", &[]),
    ("Disk", &[]),
    ("Inodes", &[]),
    ("Process", &[]),
];

const ADDRESS_KEYS: Keys = &[("Address", &[]), ("Port", &[])];
const WEIGHT_KEYS: Keys = &[("Passing", &[]), ("Warning", &[])];

/// A check as decoded, before the kind is chosen: the kind's rules need
/// the final ID in their errors, which inline checks get from
/// [`ServiceDefinition::normalize`].
struct Decoded {
    def: CheckDefinition,
    /// A rule the fields already break (reported with the final ID).
    conflict: Option<String>,
}

/// One check's fields.
fn check_fields(path: &str, value: &Value, inline: bool) -> Result<Decoded> {
    let f = Fields::new(path, value, CHECK_KEYS)?;
    let status = match f.get("Status") {
        None => None,
        Some((p, v)) => {
            let s = string(p, v)?;
            if s.is_empty() {
                None
            } else {
                let bad = || {
                    err(
                        p,
                        Problem::BadStatus {
                            value: s.clone(),
                            inline,
                        },
                    )
                };
                Some(Status::parse(&s).ok_or_else(bad)?)
            }
        }
    };
    for kind in ["H2PING", "OSService"] {
        if let Some((p, v)) = f.get(kind) {
            if !string(p, v)?.is_empty() {
                return Err(err(p, Problem::Unsupported { kind }));
            }
        }
    }
    let ttl = f.duration("TTL")?.unwrap_or_default();
    let interval = f.duration("Interval")?.unwrap_or_default();
    let mut args = f.string_list("ScriptArgs")?;
    let script = f.string("Script")?;
    let shell = f.string("Shell")?;
    if args.is_empty() && !script.is_empty() {
        // Legacy `script`: run through the shell, as Consul 0.x did.
        let sh = if shell.is_empty() { "/bin/sh" } else { &shell };
        args = vec![sh.to_string(), "-c".to_string(), script];
    }
    let grpc = f.string("GRPC")?;
    let http = f.string("HTTP")?;
    let tcp = f.string("TCP")?;
    let udp = f.string("UDP")?;
    let alias_service = f.string("AliasService")?;
    let alias_node = f.string("AliasNode")?;
    let docker = f.string("DockerContainerID")?;
    let alias = !alias_service.is_empty() || !alias_node.is_empty();
    let mut header = BTreeMap::new();
    if let Some((p, v)) = f.get("Header") {
        for (name, values) in object(p, v)? {
            header.insert(name.clone(), string_list(&join(p, name), values)?);
        }
    }
    // Consul's checks before it picks a kind, then its `CheckType.Type()`
    // order.
    let mut conflict = None;
    if !interval.is_zero() && !ttl.is_zero() {
        conflict = Some("Interval and TTL cannot both be specified".to_string());
    } else if alias && !ttl.is_zero() {
        conflict = Some("TTL must be not be set for Alias checks".to_string());
    }
    let mut resources = Vec::new();
    for name in resource::KEYS {
        if let Some((p, v)) = f.get(name) {
            match resource::parse(name, p, v)? {
                Ok(r) => resources.push(r),
                Err(reason) => {
                    conflict.get_or_insert(reason);
                }
            }
        }
    }
    if resources.len() > 1 {
        conflict.get_or_insert_with(|| "a check measures one resource".to_string());
    }
    let kind = if let Some(r) = resources.pop() {
        CheckKind::Resource(r)
    } else if !grpc.is_empty() {
        CheckKind::Grpc {
            target: grpc,
            use_tls: f.bool("GRPCUseTLS")?,
        }
    } else if !http.is_empty() {
        let method = f.string("Method")?;
        CheckKind::Http {
            url: http,
            method: if method.is_empty() {
                "GET".into()
            } else {
                method
            },
            header,
            body: f.string("Body")?,
            tls_server_name: f.string("TLSServerName")?,
            tls_skip_verify: f.bool("TLSSkipVerify")?,
            disable_redirects: f.bool("DisableRedirects")?,
        }
    } else if !ttl.is_zero() {
        CheckKind::Ttl { ttl }
    } else if !tcp.is_empty() {
        CheckKind::Tcp { addr: tcp }
    } else if !udp.is_empty() {
        CheckKind::Udp { addr: udp }
    } else if alias {
        CheckKind::Alias {
            service: alias_service,
            node: alias_node,
        }
    } else if !docker.is_empty() {
        if args.is_empty() && conflict.is_none() {
            conflict = Some("ScriptArgs must be set for Docker checks".to_string());
        }
        CheckKind::Docker {
            container_id: docker,
            shell: if shell.is_empty() {
                "/bin/sh".into()
            } else {
                shell
            },
            args,
        }
    } else if !args.is_empty() {
        CheckKind::Script { args }
    } else {
        CheckKind::Unset
    };
    let id = match f.string("ID")? {
        id if id.is_empty() => f.string("CheckID")?,
        id => id,
    };
    let output_max_size = match f.get("OutputMaxSize") {
        None => 0,
        Some((p, v)) => unsigned(p, v, Expected::Integer)?,
    };
    let def = CheckDefinition {
        id,
        name: f.string("Name")?,
        notes: f.string("Notes")?,
        service_id: f.string("ServiceID")?,
        status,
        kind,
        interval,
        timeout: f.duration("Timeout")?.filter(|t| !t.is_zero()),
        success_before_passing: f.u32("SuccessBeforePassing")?,
        failures_before_warning: f.u32("FailuresBeforeWarning")?,
        failures_before_critical: f.u32("FailuresBeforeCritical")?,
        output_max_size: match usize::try_from(output_max_size) {
            Ok(0) => DEFAULT_OUTPUT_MAX_SIZE,
            Ok(n) => n,
            Err(_) => usize::MAX,
        },
        deregister_critical_service_after: f
            .duration("DeregisterCriticalServiceAfter")?
            .filter(|d| !d.is_zero()),
    };
    // Tokens, TLS-for-TCP and the enterprise fields are type-checked only.
    f.string("Token")?;
    f.string("Namespace")?;
    f.string("Partition")?;
    f.bool("TCPUseTLS")?;
    f.bool("H2PingUseTLS")?;
    Ok(Decoded { def, conflict })
}

impl Decoded {
    /// The check's rules, named by its final ID.
    fn validate(&self, path: &str, service: Option<&str>) -> Result<()> {
        let reason = match &self.conflict {
            Some(c) => Err(c.clone()),
            None => self.def.validate(),
        };
        reason.map_err(|reason| {
            err(
                path,
                Problem::InvalidCheck {
                    service: service.map(str::to_string),
                    check: self.def.id.clone(),
                    reason,
                },
            )
        })
    }
}

/// A service definition at `path` (`""` for an HTTP body, `service` or
/// `services[2]` in a file): decoded, defaulted
/// ([`ServiceDefinition::normalize`]) and checked against Consul's rules
/// for the service, then for each inline check.
pub fn service(value: &Value, path: &str, origin: Origin) -> Result<ServiceDefinition> {
    let f = Fields::new(path, value, SERVICE_KEYS)?;
    let mut def = ServiceDefinition {
        id: f.string("ID")?,
        name: f.string("Name")?,
        tags: f.string_list("Tags")?,
        address: f.string("Address")?,
        socket_path: f.string("SocketPath")?,
        kind: f.string("Kind")?,
        token: f.string("Token")?,
        enable_tag_override: f.bool("EnableTagOverride")?,
        ..ServiceDefinition::default()
    };
    if let Some((p, v)) = f.get("Port") {
        def.port = port(p, v)?;
    }
    if let Some((p, v)) = f.get("Meta") {
        def.meta = string_map(p, v)?;
    }
    if let Some((p, v)) = f.get("TaggedAddresses") {
        for (tag, addr) in object(p, v)? {
            let af = Fields::new(&join(p, tag), addr, ADDRESS_KEYS)?;
            let port = match af.get("Port") {
                Some((pp, pv)) => port(pp, pv)?,
                None => 0,
            };
            let address = af.string("Address")?;
            def.tagged_addresses
                .insert(tag.clone(), ServiceAddress { address, port });
        }
    }
    let weights = match f.get("Weights") {
        None => None,
        Some((p, v)) => {
            let wf = Fields::new(p, v, WEIGHT_KEYS)?;
            let missing = if origin == Origin::File { 1 } else { 0 };
            let read = |name| match wf.get(name) {
                None => Ok(missing),
                Some((wp, wv)) => signed(wp, wv),
            };
            Some((read("Passing")?, read("Warning")?))
        }
    };
    let mut checks = Vec::new();
    for key in ["Check", "Checks"] {
        if let Some((p, v)) = f.get(key) {
            for (cp, cv) in objects(p, v)? {
                let decoded = check_fields(&cp, cv, true)?;
                checks.push((cp, decoded));
            }
        }
    }
    f.string("Namespace")?;
    f.string("Partition")?;

    def.checks = checks.iter().map(|(_, c)| c.def.clone()).collect();
    def.normalize();
    let label = if def.id.is_empty() {
        path.to_string()
    } else {
        def.id.clone()
    };
    let invalid = |reason: String| {
        err(
            path,
            Problem::InvalidService {
                service: label.clone(),
                reason,
            },
        )
    };
    if def.name.is_empty() {
        return Err(invalid("Missing service name".into()));
    }
    if let Some((passing, warning)) = weights {
        // Raw weights may be out of u32's range: checked before they are
        // kept.
        def.weights = validate_weights(passing, warning)
            .map_err(|e| invalid(format!("Invalid Weights: {e}")))?;
    }
    def.validate().map_err(invalid)?;
    for ((cp, decoded), normalized) in checks.iter_mut().zip(&def.checks) {
        decoded.def.clone_from(normalized);
        decoded.validate(cp, Some(&label))?;
    }
    Ok(def)
}

/// A standalone check at `path` (`""` for an HTTP body, `check` or
/// `checks[1]` in a file; `ServiceID` names a service's check): decoded,
/// its ID defaulted to its name (from a file, also its name to its ID),
/// and checked against Consul's rules.
pub fn check(value: &Value, path: &str, origin: Origin) -> Result<CheckDefinition> {
    let mut decoded = check_fields(path, value, false)?;
    let def = &mut decoded.def;
    if origin == Origin::File && def.name.is_empty() {
        def.name.clone_from(&def.id);
    }
    if def.name.is_empty() {
        return Err(err(path, Problem::MissingCheckName));
    }
    if def.id.is_empty() {
        def.id.clone_from(&def.name);
    }
    decoded.validate(path, None)?;
    Ok(decoded.def)
}

#[cfg(test)]
mod tests;
