//! The RPC server on the server port: decodes each call, hands it to raft,
//! to the engine's leader-side handlers, or (client agents' DNS and HTTP
//! API requests) to the [`ServerHooks`] the binary supplies, and encodes
//! the answer. One task per connection (HTTP/2 or HTTP/1.1), one task per
//! call.

use crate::AbortOnDrop;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    ApplyRequest, DnsAnswer, DnsRequest, DnsWatchAnswer, DnsWatchRequest, JoinRequest,
    NodeViewRequest, RpcFailure, SnapshotChunk, MAX_BODY, PATH_APPEND, PATH_APPLY, PATH_DNS,
    PATH_DNS_WATCH, PATH_INFO, PATH_JOIN, PATH_NODE_VIEW, PATH_PROPOSE, PATH_READ_INDEX,
    PATH_RENEW, PATH_SNAPSHOT, PATH_VOTE, PREFIX_API,
};
use crate::command::Command;
use crate::engine::Engine;
use crate::raft::TypeConfig;
use crate::BoxFuture;

/// What a server answers for client agents beyond the engine: their HTTP
/// API requests and DNS questions (the binary wires the API and DNS
/// crates in here).
pub trait ServerHooks: Send + Sync + 'static {
    /// Answer one HTTP API request (`/v1/...`) as the HTTP port would.
    fn http(&self, req: Request<Bytes>) -> BoxFuture<'_, Response<Bytes>>;
    /// Answer one DNS question (the wire message); empty: no answer.
    fn dns(&self, packet: Vec<u8>, max_size: usize) -> BoxFuture<'_, Vec<u8>>;
    /// May a client agent holding ACL `token` do `what`? `Err` is the
    /// refusal (with ACLs off, always `Ok`).
    fn authorize(&self, token: &str, what: ClientAccess<'_>) -> Result<(), String>;
}

/// What a client agent asks of a server over RPC, for its ACL check.
#[derive(Debug, Clone, Copy)]
pub enum ClientAccess<'a> {
    /// Apply these commands (anti-entropy).
    Apply(&'a [Command]),
    /// Read this node's services and checks.
    ReadNode(&'a str),
}

/// The hooks of a server, if it serves client agents.
pub type Hooks = Option<Arc<dyn ServerHooks>>;

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

fn encode<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    match rmp_serde::to_vec_named(value) {
        Ok(body) => reply(StatusCode::OK, body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(body).map_err(|e| format!("bad rpc body: {e}"))
}

fn bad(msg: String) -> Response<Full<Bytes>> {
    reply(StatusCode::BAD_REQUEST, msg.into_bytes())
}

async fn handle(engine: Engine, hooks: Hooks, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    if path.starts_with(PREFIX_API) {
        let Some(hooks) = hooks else {
            return reply(StatusCode::NOT_FOUND, b"no HTTP API here".to_vec());
        };
        return hooks
            .http(Request::from_parts(parts, body))
            .await
            .map(Full::new);
    }
    let raft = engine.raft();
    match path.as_str() {
        PATH_APPEND => match decode::<AppendEntriesRequest<TypeConfig>>(&body) {
            Ok(rpc) => {
                engine.note_leader_contact(rpc.vote.leader_id().voted_for());
                encode(&raft.append_entries(rpc).await)
            }
            Err(msg) => bad(msg),
        },
        PATH_VOTE => match decode::<VoteRequest<u64>>(&body) {
            Ok(rpc) => encode(&raft.vote(rpc).await),
            Err(msg) => bad(msg),
        },
        PATH_SNAPSHOT => match decode::<SnapshotChunk>(&body) {
            Ok(chunk) => {
                engine.note_leader_contact(chunk.vote.leader_id().voted_for());
                encode(&raft.install_snapshot(chunk.into()).await)
            }
            Err(msg) => bad(msg),
        },
        PATH_PROPOSE => match decode::<Command>(&body) {
            Ok(cmd) => encode(&engine.serve_forwarded(cmd).await),
            Err(msg) => bad(msg),
        },
        PATH_READ_INDEX => encode(&engine.serve_read_index().await),
        PATH_JOIN => match decode::<JoinRequest>(&body) {
            Ok(join) => encode(&engine.serve_join(join).await),
            Err(msg) => bad(msg),
        },
        PATH_INFO => encode(&engine.server_info().await),
        PATH_RENEW => match decode::<String>(&body) {
            Ok(id) => encode(&engine.serve_renew(&id)),
            Err(msg) => bad(msg),
        },
        PATH_APPLY => match decode::<ApplyRequest>(&body) {
            Ok(r) => {
                let allowed = hooks.as_ref().map_or(Ok(()), |h| {
                    h.authorize(&r.token, ClientAccess::Apply(&r.commands))
                });
                match allowed {
                    Ok(()) => encode(
                        &engine
                            .apply_all(r.commands)
                            .await
                            .map_err(RpcFailure::Failed),
                    ),
                    Err(msg) => encode(&Err::<(), _>(RpcFailure::Failed(msg))),
                }
            }
            Err(msg) => bad(msg),
        },
        PATH_NODE_VIEW => match decode::<NodeViewRequest>(&body) {
            Ok(r) => {
                if let Some(Err(msg)) = hooks
                    .as_ref()
                    .map(|h| h.authorize(&r.token, ClientAccess::ReadNode(&r.node)))
                {
                    return encode(&Err::<crate::node_view::NodeView, _>(RpcFailure::Failed(
                        msg,
                    )));
                }
                let wait = Duration::from_millis(r.wait_ms);
                let view = engine.node_view(&r.node, r.min_index, wait).await;
                encode(&view.map_err(|e| RpcFailure::Failed(e.to_string())))
            }
            Err(msg) => bad(msg),
        },
        PATH_DNS => match (decode::<DnsRequest>(&body), hooks) {
            (Ok(r), Some(hooks)) => {
                let max = usize::try_from(r.max_size).unwrap_or(usize::MAX);
                encode(&Ok::<_, RpcFailure>(DnsAnswer(
                    hooks.dns(r.packet, max).await,
                )))
            }
            (Ok(_), None) => encode(&Err::<DnsAnswer, _>(RpcFailure::Failed(
                "this server does not answer DNS".into(),
            ))),
            (Err(msg), _) => bad(msg),
        },
        PATH_DNS_WATCH => match (decode::<DnsWatchRequest>(&body), hooks) {
            (Ok(r), Some(hooks)) => {
                let wait = Duration::from_millis(r.wait_ms);
                let blocking = crate::Blocking::new(r.min_index, Some(wait));
                let index = blocking
                    .run(engine.watch(), |ws| engine.catalog_index(ws))
                    .await
                    .map(|i| i.index);
                match index {
                    // The index is read before the answer: the answer is at
                    // least as new, and a change after it moves the index.
                    Ok(index) => {
                        let max = usize::try_from(r.max_size).unwrap_or(usize::MAX);
                        let packet = hooks.dns(r.packet, max).await;
                        encode(&Ok::<_, RpcFailure>(DnsWatchAnswer { packet, index }))
                    }
                    Err(e) => encode(&Err::<DnsWatchAnswer, _>(RpcFailure::Failed(e.to_string()))),
                }
            }
            (Ok(_), None) => encode(&Err::<DnsWatchAnswer, _>(RpcFailure::Failed(
                "this server does not answer DNS".into(),
            ))),
            (Err(msg), _) => bad(msg),
        },
        _ => reply(StatusCode::NOT_FOUND, b"unknown rpc".to_vec()),
    }
}

/// How long a connection's transport handshake (TLS) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve HTTP/2 (or HTTP/1.1) RPCs on one connection until it ends.
async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: Box<dyn super::transport::RpcStream>,
    engine: Engine,
    hooks: Hooks,
    peer: std::net::SocketAddr,
) {
    let svc = service_fn(move |req: Request<Incoming>| {
        let engine = engine.clone();
        let hooks = hooks.clone();
        async move {
            // Each call in its own task: a panic is a failed call, not a
            // dead connection; a caller that goes away (a client agent's
            // blocking query whose HTTP client hung up) cancels it.
            let mut task = AbortOnDrop(tokio::spawn(handle(engine, hooks, req)));
            let answer = (&mut task.0).await;
            Ok::<_, Infallible>(answer.unwrap_or_else(|e| {
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.to_string().into_bytes(),
                )
            }))
        }
    });
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!(%peer, error = %e, "rpc connection ended with an error");
    }
}

/// Serve RPCs on `listener` until `shutdown` resolves (through the
/// process's [`super::transport::Transport`], if one is set).
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    hooks: Hooks,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    builder.http1().timer(TokioTimer::new());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "rpc accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if let Some(transport) = super::transport::transport() {
            // The handshake runs in the connection's task, bounded, so a
            // slow peer never holds up the accept loop.
            let (builder, engine, hooks) = (builder.clone(), engine.clone(), hooks.clone());
            conns.spawn(async move {
                let accepting = transport.accept(stream);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
                    Ok(Ok(stream)) => serve_connection(&builder, stream, engine, hooks, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "rpc handshake failed"),
                    Err(_) => tracing::debug!(%peer, "rpc handshake timed out"),
                }
            });
            while conns.try_join_next().is_some() {}
            continue;
        }
        let (builder, engine, hooks) = (builder.clone(), engine.clone(), hooks.clone());
        conns.spawn(async move {
            serve_connection(&builder, Box::new(stream), engine, hooks, peer).await;
        });
        while conns.try_join_next().is_some() {}
    }
    // Dropping the set aborts every connection: a stopped server must not
    // keep answering raft.
    conns.abort_all();
}
