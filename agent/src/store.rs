//! [`Store`]: where the agent's node lives in the catalog. On a server it
//! is the local [`Engine`]; on a client agent it is the servers, reached
//! over RPC ([`Remote`]). Anti-entropy reads this node's
//! entry and writes commands through it; alias checks block on it.

use std::time::Duration;

use muster_engine::remote::Remote;
use muster_engine::{BoxFuture, Command, Engine, NodeView};

use crate::AgentError;

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

impl Store for Engine {
    fn node_view<'a>(
        &'a self,
        node: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeView, AgentError>> {
        Box::pin(async move {
            Engine::node_view(self, node, min_index, wait)
                .await
                .map_err(|e| AgentError::Engine(e.to_string()))
        })
    }

    fn apply(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<(), AgentError>> {
        Box::pin(async move {
            Engine::apply_all(self, commands)
                .await
                .map_err(AgentError::Engine)
        })
    }
}

impl Store for Remote {
    fn node_view<'a>(
        &'a self,
        node: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeView, AgentError>> {
        Box::pin(async move {
            Remote::node_view(self, node, min_index, wait)
                .await
                .map_err(AgentError::Engine)
        })
    }

    fn apply(&self, commands: Vec<Command>) -> BoxFuture<'_, Result<(), AgentError>> {
        Box::pin(async move {
            Remote::apply(self, commands)
                .await
                .map_err(AgentError::Engine)
        })
    }
}
