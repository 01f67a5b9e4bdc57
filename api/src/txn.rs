//! `PUT /v1/txn` (consul-compat.md §7.3): decode the operations with
//! Consul's decoding rules (failures are 400 `Failed to parse body: …`),
//! enforce the limits (body size, operation count, value size: 413), then
//! run a read-only transaction through the engine's `txn_read` (no log,
//! consistency honoured, no index header, no blocking) or propose
//! `Command::Txn`. What each verb does, and the all-or-nothing rule, are
//! the engine's; `results.rs` renders the outcome.

use std::collections::BTreeMap;
use std::fmt::Display;

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{header, Request, Response, StatusCode};
use muster_engine::txn::{CatalogVerb, KvVerb, TxnError, TxnOp, TxnResult, MAX_TXN_OPS};
use muster_engine::{Command, Node, Service, Weights};
use serde::Deserialize;
use serde_json::Value;

use muster_agent::definition::validate_weights;

use crate::catalog::{to_check, HealthCheckIn, HEALTH_CHECK};
use crate::decode::{
    canonicalize, f, tagged_addresses, AddressIn, Kind, Schema, SERVICE_ADDRESS, WEIGHTS,
};
use crate::error::{Error, Result};
use crate::kv::read_body;
use crate::query::Consistency;
use crate::response::{self, Body};
use crate::router::EngineCtx;
use crate::session::{SessionIn, SESSION_ENTRY};
use crate::ApiConfig;

mod results;

use crate::routes::{exact, on_cluster, Route, PUT};
use results::TxnReply;

/// Largest transaction body (`txn_max_req_len`, 512 KiB).
pub const TXN_MAX_REQ_LEN: usize = 512 * 1024;
/// The documentation link Consul appends to the body-size 413.
const TXN_MAX_REQ_LEN_DOC: &str =
    "https://developer.hashicorp.com/consul/docs/agent/config/config-files#txn_max_req_len";
/// Prefix of every decode error body.
pub const PARSE_FAILED: &str = "Failed to parse body: ";

use Kind::Value as V;

const KV_OP: Schema = Schema {
    fields: &[
        f("Verb", V),
        f("Key", V),
        f("Value", V),
        f("Flags", V),
        f("Index", V),
        f("Session", V),
        f("Namespace", V),
        f("Partition", V),
    ],
};

const NODE: Schema = Schema {
    fields: &[
        f("ID", V),
        f("Node", V),
        f("Address", V),
        f("Datacenter", V),
        f("TaggedAddresses", V),
        f("Meta", V),
        f("CreateIndex", V),
        f("ModifyIndex", V),
        f("Partition", V),
        f("PeerName", V),
        f("Locality", V),
    ],
};

const NODE_OP: Schema = Schema {
    fields: &[f("Verb", V), f("Node", Kind::Object(&NODE))],
};

/// `api.AgentService`, the `Service` of a service operation.
const AGENT_SERVICE: Schema = Schema {
    fields: &[
        f("Kind", V),
        f("ID", V),
        f("Service", V),
        f("Tags", V),
        f("Meta", V),
        f("Port", V),
        f("Address", V),
        f("SocketPath", V),
        f("TaggedAddresses", Kind::MapOf(&SERVICE_ADDRESS)),
        f("Weights", Kind::Object(&WEIGHTS)),
        f("EnableTagOverride", V),
        f("Proxy", V),
        f("Connect", V),
        f("PeerName", V),
        f("CreateIndex", V),
        f("ModifyIndex", V),
        f("ContentHash", V),
        f("Namespace", V),
        f("Partition", V),
        f("Datacenter", V),
        f("Locality", V),
    ],
};

const SERVICE_OP: Schema = Schema {
    fields: &[
        f("Verb", V),
        f("Node", V),
        f("Service", Kind::Object(&AGENT_SERVICE)),
    ],
};

const CHECK_OP: Schema = Schema {
    fields: &[f("Verb", V), f("Check", Kind::Object(&HEALTH_CHECK))],
};

const SESSION_OP: Schema = Schema {
    fields: &[f("Verb", V), f("Session", Kind::Object(&SESSION_ENTRY))],
};

const TXN_OP: Schema = Schema {
    fields: &[
        f("KV", Kind::Object(&KV_OP)),
        f("Node", Kind::Object(&NODE_OP)),
        f("Service", Kind::Object(&SERVICE_OP)),
        f("Check", Kind::Object(&CHECK_OP)),
        f("Session", Kind::Object(&SESSION_OP)),
    ],
};

/// One operation as sent: exactly one field is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct OpIn {
    #[serde(rename = "KV")]
    kv: Option<KvOpIn>,
    node: Option<NodeOpIn>,
    service: Option<ServiceOpIn>,
    check: Option<CheckOpIn>,
    session: Option<SessionOpIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct KvOpIn {
    verb: String,
    key: String,
    /// Standard base64.
    value: String,
    flags: u64,
    index: u64,
    session: String,
    #[serde(rename = "Namespace")]
    _namespace: String,
    #[serde(rename = "Partition")]
    _partition: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct NodeIn {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    #[serde(rename = "CreateIndex")]
    _create_index: u64,
    modify_index: u64,
    #[serde(rename = "Partition")]
    _partition: String,
    #[serde(rename = "PeerName")]
    _peer_name: String,
    #[serde(rename = "Locality")]
    _locality: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct NodeOpIn {
    verb: String,
    node: NodeIn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct WeightsIn {
    passing: i64,
    warning: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct AgentServiceIn {
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    port: u16,
    address: String,
    socket_path: String,
    tagged_addresses: BTreeMap<String, AddressIn>,
    weights: Option<WeightsIn>,
    enable_tag_override: bool,
    #[serde(rename = "Proxy")]
    _proxy: Option<Value>,
    #[serde(rename = "Connect")]
    _connect: Option<Value>,
    #[serde(rename = "PeerName")]
    _peer_name: String,
    #[serde(rename = "CreateIndex")]
    _create_index: u64,
    modify_index: u64,
    #[serde(rename = "ContentHash")]
    _content_hash: String,
    #[serde(rename = "Namespace")]
    _namespace: String,
    #[serde(rename = "Partition")]
    _partition: String,
    #[serde(rename = "Datacenter")]
    _datacenter: String,
    #[serde(rename = "Locality")]
    _locality: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct ServiceOpIn {
    verb: String,
    node: String,
    service: AgentServiceIn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct CheckOpIn {
    verb: String,
    check: HealthCheckIn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct SessionOpIn {
    verb: String,
    session: SessionIn,
}

fn parse_fail(msg: impl Display) -> Error {
    Error::bad_request(format!("{PARSE_FAILED}{msg}"))
}

/// Decode the body into operations (not yet validated). `null` is no
/// operations, as Go decodes it.
fn parse_ops(body: &[u8]) -> Result<Vec<OpIn>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(parse_fail("EOF"));
    }
    let items = match serde_json::from_slice::<Value>(body).map_err(parse_fail)? {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        _ => {
            return Err(parse_fail(
                "json: cannot unmarshal object into Go value of type api.TxnOps",
            ))
        }
    };
    items
        .into_iter()
        .map(|item| {
            let canon = canonicalize(item, &TXN_OP).map_err(parse_fail)?;
            serde_json::from_value(canon).map_err(parse_fail)
        })
        .collect()
}

/// One operation, or why that operation is invalid (→ a 409 naming it,
/// nothing applied). Malformed input (an unknown verb, no or several
/// operation kinds) is a 400 and a KV value over the limit a 413.
type Converted = std::result::Result<TxnOp, String>;

fn convert(i: usize, op: OpIn, cfg: &ApiConfig) -> Result<Converted> {
    let kinds = [
        op.kv.is_some(),
        op.node.is_some(),
        op.service.is_some(),
        op.check.is_some(),
        op.session.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(parse_fail(format!(
            "operation {i} must have exactly one of KV, Node, Service, Check or Session"
        )));
    }
    let catalog_verb = |kind: &str, verb: &str| {
        CatalogVerb::parse(verb).ok_or_else(|| parse_fail(format!("unknown {kind} verb {verb:?}")))
    };
    if let Some(kv) = op.kv {
        let verb = KvVerb::parse(&kv.verb)
            .ok_or_else(|| parse_fail(format!("unknown KV verb {:?}", kv.verb)))?;
        let value = if kv.value.is_empty() {
            Vec::new()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(&kv.value)
                .map_err(|e| parse_fail(format!("illegal base64 data: {e}")))?
        };
        if value.len() > cfg.kv_max_value_size {
            return Err(Error::PayloadTooLarge(format!(
                "Value for key {:?} is too large ({} > {} bytes)",
                kv.key,
                value.len(),
                cfg.kv_max_value_size
            )));
        }
        if kv.key.is_empty() && !matches!(verb, KvVerb::GetTree | KvVerb::DeleteTree) {
            return Ok(Err("Missing key name".into()));
        }
        return Ok(Ok(TxnOp::Kv {
            verb,
            key: kv.key,
            value,
            flags: kv.flags,
            index: kv.index,
            session: kv.session,
        }));
    }
    if let Some(n) = op.node {
        let verb = catalog_verb("Node", &n.verb)?;
        let node = n.node;
        let datacenter = if node.datacenter.is_empty() {
            cfg.datacenter.clone()
        } else {
            node.datacenter
        };
        return Ok(Ok(TxnOp::Node {
            verb,
            node: Node {
                id: node.id,
                node: node.node,
                address: node.address,
                datacenter,
                tagged_addresses: node.tagged_addresses,
                meta: node.meta,
                create_index: 0,
                modify_index: node.modify_index,
            },
        }));
    }
    if let Some(s) = op.service {
        let verb = catalog_verb("Service", &s.verb)?;
        return Ok(to_service(s.node, s.service).map(|service| TxnOp::Service {
            verb,
            node: service.node.clone(),
            service,
        }));
    }
    if let Some(c) = op.check {
        let verb = catalog_verb("Check", &c.verb)?;
        let node = c.check.node().to_string();
        return Ok(to_check(c.check, &node)
            .map(|check| TxnOp::Check { verb, check })
            .map_err(|e| e.to_string()));
    }
    match op.session {
        Some(s) if s.verb == "delete" => Ok(Ok(TxnOp::SessionDelete { id: s.session.id })),
        Some(s) => Err(parse_fail(format!("unknown Session verb {:?}", s.verb))),
        None => Err(parse_fail(format!("operation {i} is empty"))),
    }
}

/// A service operation's instance (an empty ID defaults to the name, absent
/// weights to 1/1).
fn to_service(node: String, s: AgentServiceIn) -> std::result::Result<Service, String> {
    let weights = match s.weights {
        None => Weights::default(),
        Some(w) => {
            validate_weights(w.passing, w.warning).map_err(|e| format!("Invalid Weights: {e}"))?
        }
    };
    let id = if s.id.is_empty() {
        s.service.clone()
    } else {
        s.id
    };
    Ok(Service {
        node,
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
        modify_index: s.modify_index,
    })
}

/// Decode a body into operations: `Err` for a 400/413, `Ok(Err(..))` with
/// the reasons of invalid operations (a 409, nothing applied).
fn validate_ops(
    body: &[u8],
    cfg: &ApiConfig,
) -> Result<std::result::Result<Vec<TxnOp>, Vec<TxnError>>> {
    let parsed = parse_ops(body)?;
    if parsed.len() > MAX_TXN_OPS {
        return Err(Error::PayloadTooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            parsed.len()
        )));
    }
    let mut ops = Vec::with_capacity(parsed.len());
    let mut invalid = Vec::new();
    for (i, op) in parsed.into_iter().enumerate() {
        match convert(i, op, cfg)? {
            Ok(op) => ops.push(op),
            Err(what) => invalid.push(TxnError { op_index: i, what }),
        }
    }
    Ok(if invalid.is_empty() {
        Ok(ops)
    } else {
        Err(invalid)
    })
}

/// [`validate_ops`] with every failure as its message (for fuzzing).
pub(crate) fn decode_ops(body: &[u8], cfg: &ApiConfig) -> std::result::Result<Vec<TxnOp>, String> {
    match validate_ops(body, cfg) {
        Ok(Ok(ops)) => Ok(ops),
        Ok(Err(invalid)) => Err(invalid.first().map(|e| e.what.clone()).unwrap_or_default()),
        Err(e) => Err(e.to_string()),
    }
}

/// `PUT /v1/txn`.
pub(crate) async fn handle<B>(ctx: &EngineCtx<'_>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = read_body(req.into_body(), content_length, TXN_MAX_REQ_LEN)
        .await
        .map_err(|e| match e {
            Error::TooLarge { size, max } => Error::PayloadTooLarge(format!(
                "Request body({size} bytes) too large, max size: {max} bytes. See {TXN_MAX_REQ_LEN_DOC}."
            )),
            other => other,
        })?;
    let ops = match validate_ops(&body, &ctx.st.cfg)? {
        Ok(ops) => ops,
        Err(invalid) => return reply(ctx, &[], &invalid),
    };
    if let Some(acl) = ctx.acl.as_deref() {
        for (i, op) in ops.iter().enumerate() {
            crate::acl::check_txn_op(acl, ctx.engine, i, op)?;
        }
    }
    let engine = &ctx.engine;
    if ops.iter().all(TxnOp::is_read) {
        let read = ctx.begin_read().await?;
        if read.consistency == Consistency::Leader {
            engine.check_leader()?;
        }
        let (results, errors) = engine.txn_read(&ops)?;
        let mut resp = reply(ctx, &results, &errors)?;
        let meta = ctx.read_meta(0, read.consistency);
        let h = resp.headers_mut();
        h.insert(
            response::X_CONSUL_KNOWN_LEADER,
            HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
        );
        h.insert(
            response::X_CONSUL_LAST_CONTACT,
            HeaderValue::from(meta.last_contact_ms),
        );
        return Ok(resp);
    }
    let start = std::time::Instant::now();
    let applied = engine.propose(Command::Txn { ops }).await?;
    muster_metrics::timing!("consul.txn.apply", muster_metrics::ms(start.elapsed()));
    match applied.response {
        muster_engine::Response::Txn { results, errors } => reply(ctx, &results, &errors),
        muster_engine::Response::Rejected(msg) => Err(Error::Internal(msg)),
        other => Err(Error::Internal(format!("unexpected response {other:?}"))),
    }
}

/// 200 with the results, or 409 with the errors.
fn reply(
    ctx: &EngineCtx<'_>,
    results: &[TxnResult],
    errors: &[TxnError],
) -> Result<Response<Body>> {
    let body = TxnReply::new(results, errors);
    let mut resp = ctx.json(&body)?;
    if body.is_conflict() {
        *resp.status_mut() = StatusCode::CONFLICT;
    }
    Ok(resp)
}

/// `PUT /v1/txn`.
pub(crate) const ROUTES: &[Route] = &[exact(
    "/v1/txn",
    PUT,
    on_cluster!(|ctx, c| handle(ctx, c.req).await),
)];
