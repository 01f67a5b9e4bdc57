//! A node's catalog entry for its agent, read or blocked on locally, and
//! a batch of the agent's commands applied: what anti-entropy and alias
//! checks need from a server, served to the local agent directly and to
//! client agents over RPC (`/rpc/node-view`, `/rpc/apply`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::blocking::Blocking;
use crate::command::{Command, Response};
use crate::engine::Engine;
use crate::types::{Check, NodeServices};

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

impl Engine {
    /// `node`'s entry from the local views. With `min_index` above 0,
    /// wait (up to `wait`) until its index passes `min_index`, as a
    /// blocking query does.
    pub async fn node_view(
        &self,
        node: &str,
        min_index: u64,
        wait: Duration,
    ) -> crate::Result<NodeView> {
        let read = Blocking::new(min_index, Some(wait))
            .run(self.watch(), |ws| self.node_entry(node, ws))
            .await?;
        Ok(NodeView {
            index: read.index,
            node: read.value.0,
            checks: read.value.1,
        })
    }

    /// Propose `commands` concurrently (the leader batches them into one
    /// log entry); the first failure or rejection is the error.
    pub async fn apply_all(&self, commands: Vec<Command>) -> Result<(), String> {
        let tasks: Vec<_> = commands
            .into_iter()
            .map(|cmd| {
                let engine = self.clone();
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
}
