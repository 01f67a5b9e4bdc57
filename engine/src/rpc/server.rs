//! The RPC server on the server port: decodes each call, hands it to raft or
//! to the engine's leader-side handlers, and encodes the answer. One task
//! per connection (HTTP/2 or HTTP/1.1), one task per call.

use std::convert::Infallible;
use std::future::Future;

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
    JoinRequest, SnapshotChunk, MAX_BODY, PATH_APPEND, PATH_INFO, PATH_JOIN, PATH_PROPOSE,
    PATH_READ_INDEX, PATH_RENEW, PATH_SNAPSHOT, PATH_VOTE,
};
use crate::command::Command;
use crate::engine::Engine;
use crate::raft::TypeConfig;

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

async fn handle(engine: Engine, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
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
        _ => reply(StatusCode::NOT_FOUND, b"unknown rpc".to_vec()),
    }
}

/// Serve RPCs on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
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
        let engine = engine.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let engine = engine.clone();
            async move {
                // Each call in its own task: a panic is a failed call, not a
                // dead connection.
                let answer = tokio::spawn(handle(engine, req)).await;
                Ok::<_, Infallible>(answer.unwrap_or_else(|e| {
                    reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        e.to_string().into_bytes(),
                    )
                }))
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "rpc connection ended with an error");
            }
        });
        while conns.try_join_next().is_some() {}
    }
    // Dropping the set aborts every connection: a stopped server must not
    // keep answering raft.
    conns.abort_all();
}
