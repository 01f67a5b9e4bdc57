//! Service and check definitions in config files (consul-compat.md §6):
//! snake_case keys, their CamelCase spellings, and the legacy forms of old
//! Consul releases, turned into the engine's [`ServiceDefinition`] /
//! [`CheckDefinition`]; and back into the PascalCase JSON that
//! `/v1/agent/service/register` takes (used by `muster services register`).
//!
//! Key spellings are matched by a table: a key is folded (lowercased,
//! underscores dropped) and looked up among the canonical names and their
//! aliases, so `enable_tag_override`, `EnableTagOverride` and
//! `enableTagOverride` are one key. Each definition is then checked by the
//! one set of rules HTTP bodies also go through
//! (`ServiceDefinition::validate`, `CheckDefinition::validate`), with the
//! file, service and check named in the error; this module must not know
//! where the files came from or how they merge (that is `mod.rs`).

use std::collections::BTreeMap;

use muster_agent::definition::DEFAULT_OUTPUT_MAX_SIZE;
use muster_agent::{CheckDefinition, CheckKind, ServiceDefinition};
use muster_engine::duration;
use muster_engine::types::{ServiceAddress, Status, Weights};
use serde_json::{json, Map, Value};

use super::error::ConfigError;
use super::value::{join, Ctx};

/// A canonical key and its extra spellings (beyond case and underscores).
type KeyTable = &'static [(&'static str, &'static [&'static str])];

/// The keys of a service definition.
const SERVICE_KEYS: KeyTable = &[
    ("id", &[]),
    ("name", &[]),
    ("tags", &[]),
    ("address", &[]),
    ("tagged_addresses", &[]),
    ("port", &[]),
    ("socket_path", &[]),
    ("meta", &[]),
    ("weights", &[]),
    ("enable_tag_override", &[]),
    ("kind", &[]),
    ("check", &[]),
    ("checks", &[]),
    ("token", &[]),
    // Mesh: accepted, not used.
    ("proxy", &[]),
    ("connect", &[]),
    ("namespace", &[]),
    ("partition", &[]),
];

/// The keys of a check definition.
const CHECK_KEYS: KeyTable = &[
    ("id", &["check_id"]),
    ("name", &[]),
    ("notes", &[]),
    ("service_id", &[]),
    ("status", &[]),
    ("token", &[]),
    ("script", &[]),
    ("args", &["script_args"]),
    ("http", &[]),
    ("method", &[]),
    ("header", &[]),
    ("body", &[]),
    ("tls_server_name", &[]),
    ("tls_skip_verify", &[]),
    ("disable_redirects", &[]),
    ("tcp", &[]),
    ("udp", &[]),
    ("ttl", &[]),
    ("grpc", &[]),
    ("grpc_use_tls", &[]),
    ("h2ping", &[]),
    ("h2ping_use_tls", &[]),
    ("os_service", &[]),
    ("docker_container_id", &[]),
    ("shell", &[]),
    ("alias_service", &[]),
    ("alias_node", &[]),
    ("interval", &[]),
    ("timeout", &[]),
    ("success_before_passing", &[]),
    ("failures_before_warning", &[]),
    ("failures_before_critical", &[]),
    ("output_max_size", &[]),
    ("deregister_critical_service_after", &[]),
];

/// The keys of a tagged address and of weights.
const ADDRESS_KEYS: KeyTable = &[("address", &[]), ("port", &[])];
const WEIGHT_KEYS: KeyTable = &[("passing", &[]), ("warning", &[])];

/// Lowercase, without underscores: the form spellings are compared in.
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// An object's entries under their canonical names. When two spellings of
/// one key are present, the non-snake_case one wins (Consul: "PascalCase
/// wins").
struct Fields<'v> {
    /// Canonical name → (key path, value, spelled as the canonical name).
    map: BTreeMap<&'static str, (String, &'v Value, bool)>,
}

impl<'v> Fields<'v> {
    fn new(
        ctx: Ctx<'_>,
        path: &str,
        obj: &'v Map<String, Value>,
        table: KeyTable,
    ) -> Result<Fields<'v>, ConfigError> {
        let mut map: BTreeMap<&'static str, (String, &'v Value, bool)> = BTreeMap::new();
        for (key, value) in obj {
            let folded = fold(key);
            let Some(&(canonical, _)) = table.iter().find(|(name, aliases)| {
                fold(name) == folded || aliases.iter().any(|a| fold(a) == folded)
            }) else {
                return Err(ctx.unknown(&join(path, key)));
            };
            let snake = key == canonical || table.iter().any(|(_, a)| a.contains(&key.as_str()));
            let keep_old = map
                .get(canonical)
                .is_some_and(|(_, _, old_snake)| !old_snake && snake);
            if !keep_old {
                map.insert(canonical, (join(path, key), value, snake));
            }
        }
        Ok(Fields { map })
    }

    /// The key path and value of `name`, if present and not null.
    fn get(&self, name: &str) -> Option<(&str, &'v Value)> {
        self.map
            .get(name)
            .filter(|(_, v, _)| !v.is_null())
            .map(|(path, v, _)| (path.as_str(), *v))
    }

    fn string(&self, ctx: Ctx<'_>, name: &str) -> Result<Option<String>, ConfigError> {
        self.get(name).map(|(p, v)| ctx.string(p, v)).transpose()
    }

    fn bool(&self, ctx: Ctx<'_>, name: &str) -> Result<bool, ConfigError> {
        Ok(self
            .get(name)
            .map(|(p, v)| ctx.bool(p, v))
            .transpose()?
            .unwrap_or(false))
    }

    fn u32(&self, ctx: Ctx<'_>, name: &str) -> Result<Option<u32>, ConfigError> {
        self.get(name).map(|(p, v)| ctx.u32(p, v)).transpose()
    }

    fn duration(
        &self,
        ctx: Ctx<'_>,
        name: &str,
    ) -> Result<Option<std::time::Duration>, ConfigError> {
        self.get(name).map(|(p, v)| ctx.duration(p, v)).transpose()
    }
}

/// A service definition from a config file, normalized (ID and inline check
/// IDs defaulted) and validated as Consul validates one.
pub fn service(
    ctx: Ctx<'_>,
    path: &str,
    obj: &Map<String, Value>,
) -> Result<ServiceDefinition, ConfigError> {
    let f = Fields::new(ctx, path, obj, SERVICE_KEYS)?;
    let mut def = ServiceDefinition {
        id: f.string(ctx, "id")?.unwrap_or_default(),
        name: f.string(ctx, "name")?.unwrap_or_default(),
        address: f.string(ctx, "address")?.unwrap_or_default(),
        socket_path: f.string(ctx, "socket_path")?.unwrap_or_default(),
        kind: f.string(ctx, "kind")?.unwrap_or_default(),
        token: f.string(ctx, "token")?.unwrap_or_default(),
        enable_tag_override: f.bool(ctx, "enable_tag_override")?,
        ..ServiceDefinition::default()
    };
    if let Some((p, v)) = f.get("tags") {
        def.tags = ctx.string_list(p, v)?;
    }
    if let Some((p, v)) = f.get("port") {
        def.port = ctx.port(p, v)?;
    }
    if let Some((p, v)) = f.get("meta") {
        def.meta = ctx.string_map(p, v)?;
    }
    if let Some((p, v)) = f.get("tagged_addresses") {
        for (tag, addr) in ctx.object(p, v)? {
            let ap = join(p, tag);
            let af = Fields::new(ctx, &ap, ctx.object(&ap, addr)?, ADDRESS_KEYS)?;
            let port = match af.get("port") {
                Some((pp, pv)) => ctx.port(pp, pv)?,
                None => 0,
            };
            let address = af.string(ctx, "address")?.unwrap_or_default();
            def.tagged_addresses
                .insert(tag.clone(), ServiceAddress { address, port });
        }
    }
    if let Some((p, v)) = f.get("weights") {
        let wf = Fields::new(ctx, p, ctx.object(p, v)?, WEIGHT_KEYS)?;
        def.weights = Weights {
            passing: wf.u32(ctx, "passing")?.unwrap_or(1),
            warning: wf.u32(ctx, "warning")?.unwrap_or(1),
        };
    }
    for key in ["check", "checks"] {
        if let Some((p, v)) = f.get(key) {
            for (cp, cobj) in ctx.objects(p, v)? {
                def.checks.push(check(ctx, &cp, cobj)?);
            }
        }
    }
    def.normalize();
    let label = if def.id.is_empty() {
        path.to_string()
    } else {
        def.id.clone()
    };
    def.validate()
        .map_err(|reason| ConfigError::InvalidService {
            file: ctx.file.to_path_buf(),
            service: label.clone(),
            reason,
        })?;
    for c in &def.checks {
        c.validate().map_err(|reason| ConfigError::InvalidCheck {
            file: ctx.file.to_path_buf(),
            service: Some(label.clone()),
            check: c.id.clone(),
            reason,
        })?;
    }
    Ok(def)
}

/// A node-level check from a config file (`check` / `checks` at the top):
/// ID defaults to the name and the name to the ID; validated.
pub fn node_check(
    ctx: Ctx<'_>,
    path: &str,
    obj: &Map<String, Value>,
) -> Result<CheckDefinition, ConfigError> {
    let mut def = check(ctx, path, obj)?;
    if def.id.is_empty() {
        def.id = def.name.clone();
    }
    if def.name.is_empty() {
        def.name = def.id.clone();
    }
    if def.id.is_empty() {
        return Err(ConfigError::InvalidCheck {
            file: ctx.file.to_path_buf(),
            service: None,
            check: path.to_string(),
            reason: "a check needs an id or a name".into(),
        });
    }
    def.validate().map_err(|reason| ConfigError::InvalidCheck {
        file: ctx.file.to_path_buf(),
        service: None,
        check: def.id.clone(),
        reason,
    })?;
    Ok(def)
}

/// The fields of one check, not yet defaulted or validated.
fn check(
    ctx: Ctx<'_>,
    path: &str,
    obj: &Map<String, Value>,
) -> Result<CheckDefinition, ConfigError> {
    let f = Fields::new(ctx, path, obj, CHECK_KEYS)?;
    let status = match f.get("status") {
        None => None,
        Some((p, v)) => {
            let s = ctx.string(p, v)?;
            Some(Status::parse(&s).ok_or_else(|| {
                ctx.bad(
                    p,
                    format!("bad check status {s:?}: use passing, warning or critical"),
                )
            })?)
        }
    };
    let args = match f.get("args") {
        Some((p, v)) => ctx.string_list(p, v)?,
        None => Vec::new(),
    };
    let script = f.string(ctx, "script")?.filter(|s| !s.is_empty());
    let mut header = BTreeMap::new();
    if let Some((p, v)) = f.get("header") {
        for (name, values) in ctx.object(p, v)? {
            header.insert(name.clone(), ctx.string_list(&join(p, name), values)?);
        }
    }
    let ttl = f.duration(ctx, "ttl")?;
    let http = f.string(ctx, "http")?.filter(|s| !s.is_empty());
    let tcp = f.string(ctx, "tcp")?.filter(|s| !s.is_empty());
    let udp = f.string(ctx, "udp")?.filter(|s| !s.is_empty());
    let grpc = f.string(ctx, "grpc")?.filter(|s| !s.is_empty());
    let docker = f
        .string(ctx, "docker_container_id")?
        .filter(|s| !s.is_empty());
    let alias = f.string(ctx, "alias_service")?.filter(|s| !s.is_empty());
    for unsupported in ["h2ping", "os_service"] {
        if let Some((p, _)) = f.get(unsupported) {
            return Err(ctx.bad(
                p,
                format!("{unsupported} checks are not supported by muster"),
            ));
        }
    }
    let shell = f.string(ctx, "shell")?.unwrap_or_default();
    // Consul picks the kind in this order (agent.addCheck); validation then
    // rejects the contradictions (e.g. TTL with an interval).
    let kind = if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
        CheckKind::Ttl { ttl }
    } else if let Some(url) = http {
        CheckKind::Http {
            url,
            method: f
                .string(ctx, "method")?
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "GET".into()),
            header,
            body: f.string(ctx, "body")?.unwrap_or_default(),
            tls_server_name: f.string(ctx, "tls_server_name")?.unwrap_or_default(),
            tls_skip_verify: f.bool(ctx, "tls_skip_verify")?,
            disable_redirects: f.bool(ctx, "disable_redirects")?,
        }
    } else if let Some(addr) = tcp {
        CheckKind::Tcp { addr }
    } else if let Some(addr) = udp {
        CheckKind::Udp { addr }
    } else if let Some(container_id) = docker {
        // Legacy `script`: run through the shell, as Consul 0.x did.
        let args = match script {
            Some(s) if args.is_empty() => {
                let sh = if shell.is_empty() { "/bin/sh" } else { &shell };
                vec![sh.to_string(), "-c".to_string(), s]
            }
            _ => args,
        };
        CheckKind::Docker {
            container_id,
            shell,
            args,
        }
    } else if !args.is_empty() || script.is_some() {
        let args = match script {
            Some(s) if args.is_empty() => vec!["/bin/sh".into(), "-c".into(), s],
            _ => args,
        };
        CheckKind::Script { args }
    } else if let Some(target) = grpc {
        CheckKind::Grpc {
            target,
            use_tls: f.bool(ctx, "grpc_use_tls")?,
        }
    } else if let Some(service) = alias {
        CheckKind::Alias {
            service,
            node: f.string(ctx, "alias_node")?.unwrap_or_default(),
        }
    } else {
        CheckKind::Unset
    };
    Ok(CheckDefinition {
        id: f.string(ctx, "id")?.unwrap_or_default(),
        name: f.string(ctx, "name")?.unwrap_or_default(),
        notes: f.string(ctx, "notes")?.unwrap_or_default(),
        service_id: f.string(ctx, "service_id")?.unwrap_or_default(),
        status,
        kind,
        interval: f.duration(ctx, "interval")?.unwrap_or_default(),
        timeout: f.duration(ctx, "timeout")?,
        success_before_passing: f.u32(ctx, "success_before_passing")?.unwrap_or(0),
        failures_before_warning: f.u32(ctx, "failures_before_warning")?.unwrap_or(0),
        failures_before_critical: f.u32(ctx, "failures_before_critical")?.unwrap_or(0),
        output_max_size: match f.get("output_max_size") {
            Some((p, v)) => usize::try_from(ctx.u64(p, v)?).unwrap_or(usize::MAX),
            None => DEFAULT_OUTPUT_MAX_SIZE,
        },
        deregister_critical_service_after: f.duration(ctx, "deregister_critical_service_after")?,
    })
}

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
