//! muster-engine: the event-sourced core.
//!
//! Owns the [`Command`] enum (the only way state changes), the raft node that
//! orders commands (openraft over `muster-log`), the deterministic state
//! machine that materialises commands into fjall views, and the watch and
//! blocking-read machinery that answers `?index=` queries.
//!
//! # Layout
//! - `command.rs`: `Command` and `Response`, the log payload.
//! - `types.rs`: view records (`KvEntry`) and `Indexed<T>`.
//! - `raft.rs`: the openraft type configuration and node identity.
//! - `sm.rs`: the state machine (`RaftStateMachine` over fjall).
//! - `apply.rs` / `tables/`: per-table apply helpers; `stage.rs`: the
//!   read-your-writes stage one command is applied into.
//! - `txn.rs`: transactions.
//! - `snapshot.rs`: raft snapshot files (header, rows, CRC trailer);
//!   `backup/`: snapshot archives' state stream and restore through the log.
//! - `view.rs`: `ReadView`, the one consistent snapshot each query reads.
//! - `watch.rs`: per-table / per-key notifiers and the `WatchSet` a query
//!   fills with what it read.
//! - `blocking.rs`: the blocking-query loop.
//! - `engine.rs`: the `Engine` handle that api and dns hold (open, propose
//!   with forwarding, consistency gates); `queries.rs`: its KV, catalog and
//!   health reads; `node_view.rs`: a node's entry and batched commands for
//!   its agent; `coordination.rs`: sessions, lock-delay, read-only
//!   transactions and the leader's session TTL timers; `cluster.rs`: the
//!   leader-side RPC handlers, follower reads and the raft configuration;
//!   `ui.rs`: the web UI's service and node summaries.
//! - `rpc/`: server RPC (raft and forwarding) as msgpack over HTTP/2.
//! - `remote.rs`: a client agent's link to the servers (no log, no views).
//!
//! The API, DNS and agent crates never open fjall: they hold an
//! [`Engine`]. The agent (local services, check runners, anti-entropy) is
//! `muster-agent`, a client of this crate.

pub mod backup;
pub mod blocking;
pub mod command;
pub mod duration;
pub mod engine;
pub mod error;
pub mod feed;
mod lease;
mod node_view;
pub mod offline;
mod propose;
mod queries;
pub use queries::ObjectsView;
pub mod raft;
pub mod remote;
pub mod rpc;
pub mod txn;
pub mod types;
pub mod ui;
pub mod watch;

mod apply;
pub mod cluster;
mod coordination;
mod sm;
#[cfg(test)]
mod sm_catalog_tests;
#[cfg(test)]
mod sm_session_tests;
#[cfg(test)]
mod sm_tests;
mod snapshot;
mod stage;
mod tables;
mod view;
mod views;

pub use blocking::Blocking;
pub use command::{Command, Response};
pub use engine::{Applied, ClusterStatus, Engine, EngineConfig, StorageStats};
pub use error::{Error, Result};
pub use node_view::NodeView;
pub use types::{
    Check, Indexed, KvEntry, Node, NodeServices, Service, ServiceAddress, ServiceCheckRef,
    ServiceHealth, ServiceNode, Session, SessionBehavior, Status, StoredObject, Weights,
};
pub use watch::{Table, WatchKey, WatchSet};

/// A spawned task that is aborted when this handle is dropped (a request
/// whose caller went away, a probe that timed out, a timer whose owner is
/// gone); the one definition every crate uses.
pub struct AbortOnDrop<T = ()>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Consul version muster answers as wherever a client reads one
/// (`/v1/agent/self` `Config.Version`, the member `build` tag, the node's
/// `consul-version` meta, `muster version`): tools such as Nomad parse it
/// and disable features below a minimum. muster's own version is reported
/// beside it.
pub const CONSUL_VERSION: &str = "1.20.0";

/// The member `build` tag: Consul's version, then (where Consul puts its
/// git revision) muster's own version.
pub fn build_tag() -> String {
    format!("{CONSUL_VERSION}:muster-{}", env!("CARGO_PKG_VERSION"))
}

/// A boxed future borrowing its receiver (the one definition every crate
/// uses).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
