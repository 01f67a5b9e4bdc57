//! `PUT /v1/catalog/register` and `/v1/catalog/deregister` (consul-compat.md
//! §3): bodies decoded with [`crate::decode`], validated here (a service's
//! address, meta and weights by the agent's rules), applied by the engine.
//! Register semantics that depend on state (missing service for a check,
//! ...) are the engine's; its `Rejected` becomes a 500.

use std::collections::BTreeMap;
use std::fmt::Display;

use bytes::Bytes;
use hyper::{Request, Response};
use muster_engine::{Check, Command, Node, Service, Status, Weights};
use serde::Deserialize;
use serde_json::Value;

use crate::decode::{
    self, a, f, tagged_addresses, AddressIn, Decode, Kind, Schema, CHECK_DEFINITION,
    SERVICE_ADDRESS, WEIGHTS,
};
use crate::error::{Error, Result};
use crate::kv::propose_bool;
use crate::response::Body;
use crate::router::EngineCtx;
use muster_agent::definition::{validate_meta, validate_service_fields, validate_weights};

/// `Missing service name` body.
pub const MISSING_SERVICE: &str = "Missing service name";
/// `Missing node name` body.
pub const MISSING_NODE: &str = "Missing node name";

use Kind::Value as V;

/// `RegisterRequest.Service` (a `NodeService`).
const NODE_SERVICE: Schema = Schema {
    fields: &[
        f("Kind", V),
        f("ID", V),
        f("Service", V),
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
        f("Proxy", V),
        f("Connect", V),
        f("Locality", V),
        a(
            "LocallyRegisteredAsSidecar",
            &["locally_registered_as_sidecar"],
            V,
        ),
        f("CreateIndex", V),
        f("ModifyIndex", V),
        f("Namespace", V),
        f("Partition", V),
        f("PeerName", V),
    ],
};

/// `RegisterRequest.Check` / `Checks[]` (a `HealthCheck`); also the
/// `Check` of a transaction's check operation.
pub(crate) const HEALTH_CHECK: Schema = Schema {
    fields: &[
        f("Node", V),
        a("CheckID", &["check_id"], V),
        f("Name", V),
        f("Status", V),
        f("Notes", V),
        f("Output", V),
        a("ServiceID", &["service_id"], V),
        a("ServiceName", &["service_name"], V),
        a("ServiceTags", &["service_tags"], V),
        f("Type", V),
        f("Interval", Kind::Duration),
        f("Timeout", Kind::Duration),
        a("ExposedPort", &["exposed_port"], V),
        f("Definition", Kind::Object(&CHECK_DEFINITION)),
        f("CreateIndex", V),
        f("ModifyIndex", V),
        f("Namespace", V),
        f("Partition", V),
        f("PeerName", V),
    ],
};

const REGISTER: Schema = Schema {
    fields: &[
        f("ID", V),
        f("Node", V),
        f("Address", V),
        f("Datacenter", V),
        a("TaggedAddresses", &["tagged_addresses"], V),
        a("NodeMeta", &["node_meta"], V),
        f("Service", Kind::Object(&NODE_SERVICE)),
        f("Check", Kind::Object(&HEALTH_CHECK)),
        f("Checks", Kind::List(&HEALTH_CHECK)),
        a("SkipNodeUpdate", &["skip_node_update"], V),
        f("Token", V),
        f("Namespace", V),
        f("Partition", V),
        f("PeerName", V),
        f("Locality", V),
    ],
};

const DEREGISTER: Schema = Schema {
    fields: &[
        f("Node", V),
        a("ServiceID", &["service_id"], V),
        a("CheckID", &["check_id"], V),
        f("Datacenter", V),
        f("Token", V),
        f("Namespace", V),
        f("Partition", V),
        f("PeerName", V),
    ],
};

/// `Weights` as sent (signed, to validate).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct WeightsIn {
    passing: i64,
    warning: i64,
}

/// `RegisterRequest.Service`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct NodeServiceIn {
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, AddressIn>,
    meta: BTreeMap<String, String>,
    port: u16,
    socket_path: String,
    weights: Option<WeightsIn>,
    enable_tag_override: bool,
    proxy: Option<Value>,
    connect: Option<Value>,
    locality: Option<Value>,
    locally_registered_as_sidecar: bool,
    create_index: u64,
    modify_index: u64,
    namespace: String,
    partition: String,
    peer_name: String,
}

/// `RegisterRequest.Check` (and a transaction's `Check`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
pub(crate) struct HealthCheckIn {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    r#type: String,
    interval: Option<u64>,
    timeout: Option<u64>,
    exposed_port: u64,
    definition: Option<Value>,
    create_index: u64,
    modify_index: u64,
    namespace: String,
    partition: String,
    peer_name: String,
}

/// `PUT /v1/catalog/register` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct RegisterRequest {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    service: Option<NodeServiceIn>,
    check: Option<HealthCheckIn>,
    checks: Vec<HealthCheckIn>,
    skip_node_update: bool,
    token: String,
    namespace: String,
    partition: String,
    peer_name: String,
    locality: Option<Value>,
}

impl HealthCheckIn {
    /// The node the check names (`""` when not given).
    pub(crate) fn node(&self) -> &str {
        &self.node
    }
}

impl Decode for RegisterRequest {
    const SCHEMA: &'static Schema = &REGISTER;
}

/// `PUT /v1/catalog/deregister` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct DeregisterRequest {
    node: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    datacenter: String,
    token: String,
    namespace: String,
    partition: String,
    peer_name: String,
}

impl Decode for DeregisterRequest {
    const SCHEMA: &'static Schema = &DEREGISTER;
}

/// A server-side validation failure: 500 with Consul's message.
fn invalid(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}

/// hashicorp/go-uuid's `ParseUUID` rules, with its messages.
pub(crate) fn check_uuid(id: &str) -> std::result::Result<(), &'static str> {
    if id.len() != 36 {
        return Err("uuid string is wrong length");
    }
    let b = id.as_bytes();
    if [8, 13, 18, 23].iter().any(|&i| b.get(i) != Some(&b'-')) {
        return Err("uuid is improperly formatted");
    }
    if !b
        .iter()
        .enumerate()
        .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
    {
        return Err("encoding/hex: invalid byte");
    }
    Ok(())
}

/// The check type implied by a `Definition` (Consul's `CheckType.Type()`).
fn definition_type(def: &Value) -> &'static str {
    let has = |k: &str| def.get(k).is_some();
    if has("TTL") {
        "ttl"
    } else if has("AliasService") || has("AliasNode") {
        "alias"
    } else if has("DockerContainerID") {
        "docker"
    } else if has("GRPC") {
        "grpc"
    } else if has("HTTP") {
        "http"
    } else if has("TCP") {
        "tcp"
    } else if has("UDP") {
        "udp"
    } else if has("H2PING") {
        "h2ping"
    } else if has("OSService") {
        "os_service"
    } else if has("ScriptArgs") {
        "script"
    } else {
        ""
    }
}

fn to_service(s: NodeServiceIn, node: &str) -> Result<Service> {
    let mut id = s.id;
    if id.is_empty() {
        if s.service.is_empty() {
            return Err(invalid(MISSING_SERVICE));
        }
        id.clone_from(&s.service);
    }
    if s.service.is_empty() {
        return Err(invalid("Must provide service name with ID"));
    }
    let weights = match s.weights {
        None => Weights::default(),
        Some(w) => validate_weights(w.passing, w.warning)
            .map_err(|e| invalid(format!("Invalid Weights: {e}")))?,
    };
    validate_service_fields(&s.address, &s.meta, weights).map_err(invalid)?;
    Ok(Service {
        node: node.to_string(),
        id,
        service: s.service,
        kind: s.kind,
        tags: s.tags,
        address: s.address,
        tagged_addresses: tagged_addresses(s.tagged_addresses),
        port: s.port,
        socket_path: s.socket_path,
        meta: s.meta,
        weights,
        enable_tag_override: s.enable_tag_override,
        create_index: 0,
        modify_index: 0,
    })
}

/// Validate a check as sent for `node` and build the record. `ModifyIndex`
/// is carried over (a transaction's `cas` verbs compare it; registration
/// ignores it).
pub(crate) fn to_check(c: HealthCheckIn, node: &str) -> Result<Check> {
    let mut check_id = c.check_id;
    if check_id.is_empty() {
        check_id.clone_from(&c.name);
    }
    if check_id.is_empty() {
        return Err(invalid("Missing check ID"));
    }
    let check_node = if c.node.is_empty() {
        node.to_string()
    } else if c.node.eq_ignore_ascii_case(node) {
        c.node
    } else {
        return Err(invalid(format!(
            "Check {check_id:?} node {:?} does not match registration node {node:?}",
            c.node
        )));
    };
    let status = if c.status.is_empty() {
        Status::Critical
    } else {
        Status::parse(&c.status)
            .ok_or_else(|| invalid(format!("Invalid check status: '{}'", c.status)))?
    };
    let def = c
        .definition
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    let def_ns = |k: &str| def.get(k).and_then(Value::as_u64);
    let interval_ns = c.interval.or_else(|| def_ns("Interval")).unwrap_or(0);
    let timeout_ns = c.timeout.or_else(|| def_ns("Timeout")).unwrap_or(0);
    let check_type = if c.r#type.is_empty() {
        definition_type(&def).to_string()
    } else {
        c.r#type
    };
    let shown = decode::display_json(&def, &CHECK_DEFINITION);
    let definition = match &shown {
        Value::Object(m) if !m.is_empty() => shown.to_string(),
        _ => String::new(),
    };
    Ok(Check {
        node: check_node,
        check_id,
        name: c.name,
        status,
        notes: c.notes,
        output: c.output,
        service_id: c.service_id,
        service_name: c.service_name,
        service_tags: c.service_tags,
        check_type,
        interval_ns,
        timeout_ns,
        definition,
        create_index: 0,
        modify_index: c.modify_index,
    })
}

/// Validate a register request (server-side rules, 500s) and build the
/// command.
fn register_command(req: RegisterRequest, dc: &str) -> Result<Command> {
    if req.node.is_empty() {
        return Err(invalid("Must provide node"));
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(invalid("Must provide address if SkipNodeUpdate is not set"));
    }
    if !req.id.is_empty() {
        check_uuid(&req.id).map_err(|e| invalid(format!("Bad node ID: {e}")))?;
    }
    if !req.datacenter.is_empty() && req.datacenter != dc {
        return Err(Error::NoPathToDatacenter);
    }
    validate_meta("Node", &req.node_meta).map_err(invalid)?;
    let service = req.service.map(|s| to_service(s, &req.node)).transpose()?;
    let checks = req
        .check
        .into_iter()
        .chain(req.checks)
        .map(|c| to_check(c, &req.node))
        .collect::<Result<Vec<_>>>()?;
    Ok(Command::CatalogRegister {
        node: Node {
            id: req.id,
            node: req.node,
            address: req.address,
            datacenter: dc.to_string(),
            tagged_addresses: req.tagged_addresses,
            meta: req.node_meta,
            create_index: 0,
            modify_index: 0,
        },
        skip_node_update: req.skip_node_update,
        service,
        checks,
    })
}

/// `PUT /v1/catalog/register`.
pub(crate) async fn register<B>(ctx: &EngineCtx<'_>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let body: RegisterRequest = decode::read(req).await?;
    let cmd = register_command(body, &ctx.st.cfg.datacenter)?;
    if let Some(r) = ctx.acl.as_deref() {
        crate::acl::check_command(r, ctx.engine, &cmd)?;
    }
    propose_bool(ctx, cmd).await
}

/// `PUT /v1/catalog/deregister`.
pub(crate) async fn deregister<B>(ctx: &EngineCtx<'_>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let body: DeregisterRequest = decode::read(req).await?;
    if body.node.is_empty() {
        return Err(invalid("Must provide node"));
    }
    if !body.datacenter.is_empty() && body.datacenter != ctx.st.cfg.datacenter {
        return Err(Error::NoPathToDatacenter);
    }
    let cmd = Command::CatalogDeregister {
        node: body.node,
        service_id: Some(body.service_id).filter(|s| !s.is_empty()),
        check_id: Some(body.check_id).filter(|s| !s.is_empty()),
    };
    if let Some(r) = ctx.acl.as_deref() {
        crate::acl::check_command(r, ctx.engine, &cmd)?;
    }
    propose_bool(ctx, cmd).await
}

#[cfg(test)]
mod tests;
