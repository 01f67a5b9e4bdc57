//! The RPC client: one pooled HTTP/2 connection per peer, msgpack bodies,
//! per-call timeouts; and openraft's `RaftNetwork` on top of it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{SnapshotChunk, MAX_BODY, PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use crate::raft::{RaftNode, TypeConfig};

/// Why a call failed before an answer was decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No connection could be made (refused, unreachable).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke or the answer was not valid.
    #[error("{0}")]
    Transport(String),
}

/// A failed request: unreachable if no connection was made (the request
/// was never sent), else a transport failure.
fn request_error(e: hyper_util::client::legacy::Error) -> CallError {
    if e.is_connect() {
        CallError::Unreachable(e.to_string())
    } else {
        CallError::Transport(e.to_string())
    }
}

/// A cheap-to-clone RPC client (the connection pool is shared).
#[derive(Clone)]
pub(crate) struct RpcClient {
    http: Client<super::transport::Connector, Full<Bytes>>,
}

impl RpcClient {
    pub fn new() -> RpcClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .build(super::transport::Connector::new(connector));
        RpcClient { http }
    }

    /// `POST http://{addr}{path}` with `req` as msgpack; decode the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = rmp_serde::to_vec_named(req).map_err(|e| CallError::Transport(e.to_string()))?;
        let request = hyper::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/msgpack")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let exchange = async {
            let resp = self.http.request(request).await.map_err(request_error)?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(CallError::Transport(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes)
                )));
            }
            rmp_serde::from_slice(&bytes).map_err(|e| CallError::Transport(e.to_string()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }
}

/// Headers that belong to one HTTP/1 connection and must not cross into
/// an HTTP/2 request or back.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "host",
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

impl RpcClient {
    /// Send `req` (an HTTP API request: path, query, method, headers and
    /// body kept) to the server at `addr` and collect its answer. No
    /// overall timeout: a blocking query may take minutes; the connect
    /// timeout and HTTP/2 keep-alive bound a dead server.
    pub async fn forward(
        &self,
        addr: &str,
        req: hyper::Request<Bytes>,
    ) -> Result<hyper::Response<Bytes>, CallError> {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", hyper::http::uri::PathAndQuery::as_str);
        parts.uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| CallError::Transport(e.to_string()))?;
        parts.version = hyper::Version::HTTP_2;
        strip_hop_by_hop(&mut parts.headers);
        let request = hyper::Request::from_parts(parts, Full::new(body));
        let resp = self.http.request(request).await.map_err(request_error)?;
        let (mut parts, body) = resp.into_parts();
        let bytes = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?
            .to_bytes();
        parts.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        Ok(hyper::Response::from_parts(parts, bytes))
    }
}

/// When each peer last acknowledged this server's leadership: the send
/// time of the newest append it accepted, with the term it was sent in.
/// Only requests sent by this process count (the map starts empty), and
/// only acceptances (success, partial success, or a log conflict, which
/// still grants the sender's term); a rejection for a higher vote never
/// does. The leader's lease is derived from these alone (see
/// `Engine::lease_age`).
#[derive(Default)]
pub(crate) struct AckTimes {
    acks: std::sync::Mutex<std::collections::HashMap<u64, (std::time::Instant, u64)>>,
}

impl AckTimes {
    /// `peer` accepted, in `term`, a request sent at `sent`.
    fn record(&self, peer: u64, sent: std::time::Instant, term: u64) {
        let mut acks = self
            .acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = acks.entry(peer).or_insert((sent, term));
        if (term, sent) > (e.1, e.0) {
            *e = (sent, term);
        }
    }

    /// The send time of `peer`'s newest acknowledged request of `term`.
    pub fn last(&self, peer: u64, term: u64) -> Option<std::time::Instant> {
        self.acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&peer)
            .filter(|(_, t)| *t == term)
            .map(|(at, _)| *at)
    }
}

/// Creates a [`Peer`] per raft target, all sharing one client pool.
pub(crate) struct HttpNetwork {
    client: RpcClient,
    acks: std::sync::Arc<AckTimes>,
}

impl HttpNetwork {
    pub fn new(client: RpcClient, acks: std::sync::Arc<AckTimes>) -> HttpNetwork {
        HttpNetwork { client, acks }
    }
}

/// Raft's connection to one peer.
pub(crate) struct Peer {
    client: RpcClient,
    target: u64,
    addr: String,
    acks: std::sync::Arc<AckTimes>,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &RaftNode) -> Peer {
        Peer {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
            acks: self.acks.clone(),
        }
    }
}

impl Peer {
    /// Call `path` and map failures onto openraft's error kinds: no
    /// connection → `Unreachable` (raft backs off), other transport errors →
    /// `Network`, the remote's raft error → `RemoteError`.
    async fn raft_call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, RaftNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, E> = self
            .client
            .call(&self.addr, path, req, timeout)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, RaftNode, RaftError<u64>>> {
        // Timed from the send: the peer's grant can be no older than this.
        let sent = std::time::Instant::now();
        let term = rpc.vote.leader_id.term;
        let answer = self.raft_call(PATH_APPEND, &rpc, option.hard_ttl()).await;
        if let Ok(
            AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict,
        ) = &answer
        {
            self.acks.record(self.target, sent, term);
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, RaftNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let chunk = SnapshotChunk::from(rpc);
        self.raft_call(PATH_SNAPSHOT, &chunk, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, RaftNode, RaftError<u64>>> {
        self.raft_call(PATH_VOTE, &rpc, option.hard_ttl()).await
    }
}
