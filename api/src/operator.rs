//! `/v1/operator/*` (consul-compat.md §9): the raft configuration, removing
//! a raft peer, and the gossip keyring (list/install/use/remove). Each
//! handler checks its parameters the way Consul does and hands the work to
//! the [`crate::ClusterBackend`]; backend errors are 500s with the
//! backend's message. Nothing here knows how raft or gossip work.

use std::collections::BTreeMap;
use std::fmt::Display;

use bytes::Bytes;
use hyper::{Method, Request, Response};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, KeyringOp, KeyringReply, PeerRef};
use crate::decode::{self, f, Decode, Kind, Schema};
use crate::error::{Error, Result};
use crate::health::parse_bool;
use crate::response::Body;
use crate::router::{Ctx, EngineCtx};
use crate::routes::{exact, on_agent, on_cluster, Route, DELETE, GET};

/// Largest `?relay-factor` Consul accepts.
const MAX_RELAY_FACTOR: u8 = 5;

/// `GET /v1/operator/raft/configuration` (`?dc`; `?stale` accepted):
/// `{"Servers":[...],"Index":N}`.
pub(crate) async fn raft_configuration(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let backend = cluster::require(&ctx.st.cfg)?;
    let config = backend
        .raft_configuration()
        .await
        .map_err(Error::Internal)?;
    ctx.json(&config)
}

/// Which peer `?id=` / `?address=` name: exactly one must be present (by
/// presence, as in Consul; an empty value is passed on).
pub(crate) fn peer_ref(ctx: &EngineCtx<'_>) -> Result<PeerRef> {
    let id = ctx.query.has("id").then(|| ctx.query.get("id"));
    let address = ctx.query.has("address").then(|| ctx.query.get("address"));
    match (id, address) {
        (Some(_), Some(_)) => Err(Error::bad_request(
            "Must specify only one of ?id or ?address",
        )),
        (Some(id), None) => Ok(PeerRef::Id(id.unwrap_or_default().to_string())),
        (None, Some(addr)) => Ok(PeerRef::Address(addr.unwrap_or_default().to_string())),
        (None, None) => Err(Error::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        )),
    }
}

/// `DELETE /v1/operator/raft/peer?id=` or `?address=`: 200, empty body.
pub(crate) async fn remove_raft_peer(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let peer = peer_ref(ctx)?;
    let backend = cluster::require(&ctx.st.cfg)?;
    backend
        .remove_raft_peer(peer)
        .await
        .map_err(Error::Internal)?;
    Ok(crate::response::ok_empty())
}

const KEYRING_BODY: Schema = Schema {
    fields: &[f("Key", Kind::Value)],
};

/// The keyring write body, `{"Key":"<base64>"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct KeyringBody {
    key: String,
}

impl Decode for KeyringBody {
    const SCHEMA: &'static Schema = &KEYRING_BODY;
}

/// Consul's `KeyringResponse` (one gossip pool).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringJson<'a> {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: &'a str,
    segment: &'a str,
    messages: &'a BTreeMap<String, String>,
    keys: &'a BTreeMap<String, usize>,
    primary_keys: &'a BTreeMap<String, usize>,
    num_nodes: usize,
}

/// Check `?relay-factor` (0–5) and `?local-only` (a Go bool, GET only) as
/// Consul does; both are otherwise ignored (operations are local).
fn keyring_params(ctx: &Ctx<'_>, method: &Method) -> Result<()> {
    if let Some(raw) = ctx.query.get("relay-factor").filter(|v| !v.is_empty()) {
        let n: i64 = raw.parse().map_err(|_| {
            Error::bad_request(format!(
                "Error parsing relay factor: strconv.Atoi: parsing {raw:?}: invalid syntax"
            ))
        })?;
        if !(0..=i64::from(MAX_RELAY_FACTOR)).contains(&n) {
            return Err(Error::bad_request(format!(
                "Invalid relay-factor: Relay factor must be in range: [0, {MAX_RELAY_FACTOR}]"
            )));
        }
    }
    if let Some(raw) = ctx.query.get("local-only").filter(|v| !v.is_empty()) {
        let local = parse_bool(raw).ok_or_else(|| {
            Error::bad_request(format!(
                "Error parsing local-only: strconv.ParseBool: parsing {raw:?}: invalid syntax"
            ))
        })?;
        if local && method != Method::GET {
            return Err(Error::bad_request(
                "Invalid use of local-only: local-only can only be set for GET requests",
            ));
        }
    }
    Ok(())
}

/// `/v1/operator/keyring`: `GET` lists (one entry per pool), `POST`
/// installs, `PUT` makes primary, `DELETE` removes; writes take
/// `{"Key":"..."}` and answer 200 with an empty body.
pub(crate) async fn keyring<B>(
    ctx: &Ctx<'_>,
    method: &Method,
    req: Request<B>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let op = if *method == Method::GET {
        KeyringOp::List
    } else {
        let body: KeyringBody = decode::read(req).await?;
        if body.key.is_empty() {
            return Err(Error::bad_request("Missing key"));
        }
        match *method {
            Method::POST => KeyringOp::Install(body.key),
            Method::PUT => KeyringOp::Use(body.key),
            _ => KeyringOp::Remove(body.key),
        }
    };
    keyring_params(ctx, method)?;
    let backend = cluster::require(&ctx.st.cfg)?;
    let list = matches!(op, KeyringOp::List);
    let replies = backend.keyring(op).await.map_err(Error::Internal)?;
    if !list {
        return Ok(crate::response::ok_empty());
    }
    let dc = ctx.st.cfg.datacenter.as_str();
    let json: Vec<KeyringJson<'_>> = replies
        .iter()
        .map(|r: &KeyringReply| KeyringJson {
            wan: r.wan,
            datacenter: dc,
            segment: "",
            messages: &r.messages,
            keys: &r.keys,
            primary_keys: &r.primary_keys,
            num_nodes: r.num_nodes,
        })
        .collect();
    ctx.json(&json)
}

/// `GET|POST|PUT|DELETE /v1/operator/keyring`.
const KEYRING_METHODS: &str = "OPTIONS,GET,POST,PUT,DELETE";

/// `/v1/operator/*`: raft from the cluster, the keyring from this agent's
/// gossip pools.
pub(crate) const ROUTES: &[Route] = &[
    exact(
        "/v1/operator/raft/configuration",
        GET,
        on_cluster!(|ctx, _| raft_configuration(ctx).await),
    ),
    exact(
        "/v1/operator/raft/peer",
        DELETE,
        on_cluster!(|ctx, _| remove_raft_peer(ctx).await),
    ),
    exact(
        "/v1/operator/keyring",
        KEYRING_METHODS,
        on_agent!(|ctx, c| keyring(ctx, &c.method, c.req).await),
    ),
];
