//! [`Store`]: where the agent's node lives in the catalog. On a server it
//! is the local [`Engine`]; on a client agent it is the servers, reached
//! over RPC ([`crate::remote::Remote`]). Anti-entropy reads this node's
//! entry and writes commands through it; alias checks block on it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AgentError;
use crate::blocking::{Blocking, QueryOutcome};
use crate::command::{Command, Response};
use crate::engine::Engine;
use crate::types::{Check, NodeServices};

/// A boxed future borrowing its receiver.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One node's catalog entry and checks at a raft index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// The node's index (moves with every change to its entry or checks).
    pub index: u64,
    /// The node and its services, if registered.
    pub node: Option<NodeServices>,
    /// The node's checks (node-level and service-level).
    pub checks: Vec<Check>,
}

/// The agent's access to the catalog.
pub trait Store: Send + Sync + 'static {
    /// `node`'s entry. With `min_index` above 0, wait (up to `wait`) until
    /// its index passes `min_index`, as a blocking query does.
    fn node_view<'a>(
        &'a self,
        node: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeView, AgentError>>;

    /// Apply `commands` (concurrently: the leader batches them into one log
    /// entry). A rejected command is an error.
    fn apply(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<(), AgentError>>;
}

/// Read `node`'s entry from the local views, blocking as asked.
pub async fn local_node_view(
    engine: &Engine,
    node: &str,
    min_index: u64,
    wait: Duration,
) -> crate::Result<NodeView> {
    let read = Blocking::new(min_index, Some(wait))
        .run(engine.watch(), |ws| {
            Ok::<_, crate::Error>(QueryOutcome::Ready(engine.node_entry(node, ws)?))
        })
        .await?;
    Ok(NodeView {
        index: read.index,
        node: read.value.0,
        checks: read.value.1,
    })
}

/// Propose `commands` concurrently on `engine` (which forwards to the
/// leader); the first failure or rejection is the error.
pub async fn local_apply(engine: &Engine, commands: Vec<Command>) -> Result<(), String> {
    let tasks: Vec<_> = commands
        .into_iter()
        .map(|cmd| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.propose(cmd).await })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(applied)) => {
                if let Response::Rejected(msg) = applied.response {
                    return Err(msg);
                }
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

impl Store for Engine {
    fn node_view<'a>(
        &'a self,
        node: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeView, AgentError>> {
        Box::pin(async move {
            local_node_view(self, node, min_index, wait)
                .await
                .map_err(|e| AgentError::Engine(e.to_string()))
        })
    }

    fn apply(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<(), AgentError>> {
        Box::pin(async move {
            local_apply(self, commands)
                .await
                .map_err(AgentError::Engine)
        })
    }
}
