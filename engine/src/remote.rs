//! [`Remote`]: a client agent's link to the servers of its datacenter. A
//! client holds no log and no views: its anti-entropy writes and node
//! reads, its relayed DNS questions and the HTTP API requests it does not
//! answer itself all go to one server over RPC. The server list comes from
//! gossip; calls stick to one server and move to the next when it cannot
//! be reached, as Consul's client does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::Command;
use crate::node_view::NodeView;
use crate::rpc::client::{CallError, RpcClient};
use crate::rpc::{
    ApplyRequest, DnsAnswer, DnsRequest, DnsWatchAnswer, DnsWatchRequest, NodeViewRequest,
    RpcFailure, PATH_APPLY, PATH_DNS, PATH_DNS_WATCH, PATH_NODE_VIEW,
};

/// Consul's error when a client knows no server.
pub const NO_SERVERS: &str = "No known Consul servers";
/// Bound on a client's write (the server forwards it to the leader).
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a relayed DNS question.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to a blocking read's wait for the server's jitter and the trip.
const READ_SLACK: Duration = Duration::from_secs(10);

/// The servers a client agent talks to.
pub struct Remote {
    rpc: RpcClient,
    /// Server RPC addresses, sorted.
    servers: RwLock<Vec<String>>,
    /// Index (modulo the list's length) of the server calls go to first.
    preferred: AtomicUsize,
    /// The ACL token this agent's own writes and reads carry.
    token: RwLock<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("servers", &self.servers())
            .finish_non_exhaustive()
    }
}

impl Default for Remote {
    fn default() -> Self {
        Remote::new()
    }
}

impl Remote {
    /// A link with no servers known yet.
    pub fn new() -> Remote {
        Remote {
            rpc: RpcClient::new(),
            servers: RwLock::new(Vec::new()),
            preferred: AtomicUsize::new(rand::random::<u32>() as usize),
            token: RwLock::new(String::new()),
        }
    }

    /// Replace the server list (from gossip: alive servers of this
    /// datacenter).
    pub fn set_servers(&self, mut addrs: Vec<String>) {
        addrs.sort();
        addrs.dedup();
        let mut servers = self
            .servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *servers != addrs {
            tracing::info!(servers = ?addrs, "server list changed");
            *servers = addrs;
        }
    }

    /// Set the ACL token this agent's anti-entropy carries (`tokens.agent`).
    pub fn set_token(&self, token: String) {
        *self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    }

    fn token(&self) -> String {
        self.token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The known servers.
    pub fn servers(&self) -> Vec<String> {
        self.servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The servers in the order to try them: the preferred one first.
    fn order(&self) -> Vec<String> {
        let mut list = self.servers();
        if !list.is_empty() {
            let first = self.preferred.load(Ordering::Relaxed) % list.len();
            list.rotate_left(first);
        }
        list
    }

    /// The preferred server failed: prefer the next one.
    fn demote(&self, addr: &str) {
        let list = self.servers();
        if let Some(pos) = list.iter().position(|a| a == addr) {
            self.preferred.store(pos + 1, Ordering::Relaxed);
        }
        tracing::debug!(server = %addr, "server unreachable; trying the next");
    }

    /// Call `path` on the first server that answers. A transport failure
    /// moves on to the next server (the calls made here are idempotent);
    /// a failure the server reports is the answer.
    async fn call<Req, T>(&self, path: &str, req: &Req, timeout: Duration) -> Result<T, String>
    where
        Req: Serialize,
        T: DeserializeOwned,
    {
        let mut last = NO_SERVERS.to_string();
        for addr in self.order() {
            let answer: Result<Result<T, RpcFailure>, CallError> =
                self.rpc.call(&addr, path, req, timeout).await;
            match answer {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(RpcFailure::NotLeader { .. })) => return Err("No cluster leader".into()),
                Ok(Err(RpcFailure::Failed(msg))) => return Err(msg),
                Err(e) => {
                    self.demote(&addr);
                    last = format!("rpc error with server {addr}: {e}");
                }
            }
        }
        Err(last)
    }

    /// Apply `commands` through a server (which forwards them to the
    /// leader).
    pub async fn apply(&self, commands: Vec<Command>) -> Result<(), String> {
        let req = ApplyRequest {
            token: self.token(),
            commands,
        };
        self.call::<_, ()>(PATH_APPLY, &req, APPLY_TIMEOUT).await
    }

    /// `node`'s entry, blocking on a server as [`Engine::node_view`](crate::Engine::node_view) does locally.
    pub async fn node_view(
        &self,
        node: &str,
        min_index: u64,
        wait: Duration,
    ) -> Result<NodeView, String> {
        let req = NodeViewRequest {
            token: self.token(),
            node: node.to_string(),
            min_index,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let timeout = if min_index > 0 {
            wait + wait / 16 + READ_SLACK
        } else {
            READ_SLACK
        };
        self.call(PATH_NODE_VIEW, &req, timeout).await
    }

    /// Relay a DNS question to a server; `None` when no server answered.
    pub async fn dns(&self, packet: Vec<u8>, max_size: usize) -> Option<Vec<u8>> {
        let req = DnsRequest {
            packet,
            max_size: u32::try_from(max_size).unwrap_or(u32::MAX),
        };
        match self.call::<_, DnsAnswer>(PATH_DNS, &req, DNS_TIMEOUT).await {
            Ok(DnsAnswer(out)) => Some(out),
            Err(e) => {
                tracing::debug!(error = %e, "relaying a DNS question failed");
                None
            }
        }
    }

    /// Ask a server of another datacenter a DNS question, once its catalog
    /// index passes `min_index` (0: at once) or after `wait`: the answer
    /// and the index it was answered at.
    pub async fn dns_watch(
        &self,
        packet: Vec<u8>,
        max_size: usize,
        min_index: u64,
        wait: Duration,
    ) -> Result<(Vec<u8>, u64), String> {
        let req = DnsWatchRequest {
            packet,
            max_size: u32::try_from(max_size).unwrap_or(u32::MAX),
            min_index,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let timeout = if min_index > 0 {
            wait + wait / 16 + READ_SLACK
        } else {
            DNS_TIMEOUT
        };
        self.call::<_, DnsWatchAnswer>(PATH_DNS_WATCH, &req, timeout)
            .await
            .map(|a| (a.packet, a.index))
    }

    /// Forward an HTTP API request to a server and return its answer. Only
    /// a server that could not be connected to is skipped for the next:
    /// once sent, a request (it may be a write) is never sent twice.
    pub async fn http(&self, req: hyper::Request<Bytes>) -> Result<hyper::Response<Bytes>, String> {
        let (parts, body) = req.into_parts();
        let mut last = NO_SERVERS.to_string();
        for addr in self.order() {
            let mut again = hyper::Request::new(body.clone());
            *again.method_mut() = parts.method.clone();
            *again.uri_mut() = parts.uri.clone();
            *again.headers_mut() = parts.headers.clone();
            match self.rpc.forward(&addr, again).await {
                Ok(resp) => return Ok(resp),
                Err(CallError::Unreachable(e)) => {
                    self.demote(&addr);
                    last = format!("rpc error with server {addr}: {e}");
                }
                Err(e) => {
                    self.demote(&addr);
                    return Err(format!("rpc error with server {addr}: {e}"));
                }
            }
        }
        Err(last)
    }
}
