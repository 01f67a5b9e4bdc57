//! The engine's cluster surface: who leads and how to reach it, the
//! leader-side handlers of forwarded proposals, read indexes and joins,
//! follower reads, and the raft configuration (`/v1/operator/raft/*`,
//! bootstrap of a multi-server cluster, removing a dead server).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{ChangeMembers, Raft};

use crate::command::Command;
use crate::engine::{Engine, Route, FORWARD_TIMEOUT};
use crate::error::{Error, Result};
use crate::raft::{RaftNode, TypeConfig};
use crate::rpc::client::CallError;
use crate::rpc::{
    JoinRequest, ProposeResult, RpcFailure, ServerInfo, PATH_INFO, PATH_JOIN, PATH_READ_INDEX,
};

/// One server in the raft configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftServer {
    /// Its raft id.
    pub id: u64,
    /// Its node name and RPC address.
    pub node: RaftNode,
    /// True for a voter (false: a learner catching up).
    pub voter: bool,
    /// True for the current leader.
    pub leader: bool,
}

/// Log leadership changes in Consul's words, as an operator reads them:
/// `cluster leadership acquired` / `cluster leadership lost` on this
/// server, `New leader elected` when another server takes over. Ends when
/// raft stops.
pub(crate) async fn leadership_log(
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, RaftNode>>,
) {
    let mut was = (false, None::<u64>);
    let mut was_candidate = false;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            // Consul's `consul.raft.state.candidate`: elections this
            // server started.
            let candidate = m.state == openraft::ServerState::Candidate;
            if candidate && !was_candidate {
                metrics::counter!("consul.raft.state.candidate").increment(1);
            }
            was_candidate = candidate;
            let leads = m.state == openraft::ServerState::Leader && m.current_leader == Some(m.id);
            let name = m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.name.clone())
            });
            ((leads, m.current_leader), name, m.current_term)
        };
        let ((leads, leader), name, term) = now;
        if (leads, leader) != was {
            if leads {
                metrics::counter!("consul.raft.state.leader").increment(1);
                tracing::info!(term, "cluster leadership acquired");
            } else {
                if was.0 {
                    tracing::warn!(term, "cluster leadership lost");
                }
                if let Some(name) = name.filter(|_| leader.is_some() && leader != was.1) {
                    tracing::info!(term, "New leader elected: payload={name}");
                }
            }
            was = (leads, leader);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Engine {
    /// The leader's RPC address, if known.
    pub fn leader_addr(&self) -> Option<String> {
        match self.route() {
            Route::Remote(addr) => Some(addr),
            Route::Local => Some(self.inner.cfg.rpc_addr.clone()),
            Route::Unknown => None,
        }
    }

    /// The raft handle (for the RPC server).
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// A leader (`leader` is its id) reached this server.
    pub(crate) fn note_leader_contact(&self, leader: Option<u64>) {
        if leader.is_some_and(|l| l != self.inner.cfg.node_id) {
            let now = std::time::Instant::now();
            let previous = self
                .inner
                .leader_contact
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .replace(now);
            // Consul's `consul.raft.leader.lastContact`: the time since the
            // leader was last heard from, each time it is.
            if let Some(previous) = previous {
                muster_metrics::timing!(
                    "consul.raft.leader.lastContact",
                    muster_metrics::ms(now - previous)
                );
            }
        }
    }

    /// Leader side of a forwarded proposal.
    pub(crate) async fn serve_forwarded(&self, cmd: Command) -> ProposeResult {
        if self.check_leader().is_err() {
            return Err(RpcFailure::NotLeader {
                leader: self.leader_addr(),
            });
        }
        match self.propose_local(cmd).await {
            Ok(a) => Ok((a.index, a.response)),
            Err(Error::NoLeader | Error::LeaderChanged) => {
                Err(RpcFailure::NotLeader { leader: None })
            }
            Err(e) => Err(RpcFailure::Failed(e.to_string())),
        }
    }

    /// Leader side of a follower read: confirm leadership with a quorum
    /// and answer the index the follower must apply before reading.
    pub(crate) async fn serve_read_index(&self) -> std::result::Result<u64, RpcFailure> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(RpcFailure::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(e) => Err(RpcFailure::Failed(e.to_string())),
        }
    }

    /// Leader side of a join: add the server as a learner, let it catch
    /// up, then make it a voter. Joining again is harmless.
    pub(crate) async fn serve_join(
        &self,
        join: JoinRequest,
    ) -> std::result::Result<(), RpcFailure> {
        if self.check_leader().is_err() {
            return Err(RpcFailure::NotLeader {
                leader: self.leader_addr(),
            });
        }
        self.add_server(join.id, join.node)
            .await
            .map_err(|e| RpcFailure::Failed(e.to_string()))
    }

    /// On the leader: add server `id` at `node` as a learner, wait for it
    /// to catch up (through a snapshot if it is behind the purge point),
    /// then make it a voter. Adding a voter again is harmless.
    pub async fn add_server(&self, id: u64, node: RaftNode) -> Result<()> {
        self.check_leader()?;
        let raft = &self.inner.raft;
        let is_voter = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            membership.voter_ids().any(|v| v == id) && membership.get_node(&id) == Some(&node)
        };
        if is_voter {
            return Ok(());
        }
        tracing::info!(id, node = %node, "adding server to the cluster");
        let failed = |e: &dyn std::fmt::Display| Error::Raft(e.to_string());
        let added = raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| failed(&e))?;
        // openraft's blocking add stops waiting after its own short timeout
        // and returns Ok: wait here until the learner holds the entry that
        // added it, so a server the leader cannot replicate to (a
        // certificate from another CA, a firewall) never becomes a voter
        // and never costs the cluster its quorum. Callers bound the wait.
        let mut metrics = raft.metrics();
        loop {
            let caught_up = metrics
                .borrow()
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .is_some_and(|matched| matched.index >= added.log_id.index);
            if caught_up {
                break;
            }
            self.check_leader()?;
            if metrics.changed().await.is_err() {
                return Err(Error::Raft(
                    "raft stopped while a server was being added".into(),
                ));
            }
        }
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| failed(&e))?;
        Ok(())
    }

    /// This server's identity and view of the cluster.
    pub async fn server_info(&self) -> ServerInfo {
        ServerInfo {
            id: self.inner.cfg.node_id,
            node: RaftNode {
                name: self.inner.cfg.node_name.clone(),
                addr: self.inner.cfg.rpc_addr.clone(),
            },
            initialized: self.inner.raft.is_initialized().await.unwrap_or(false),
            leader: self.leader_addr(),
        }
    }

    /// Ask the server at `addr` (or the leader it names) to add this server
    /// to its cluster; returns once this server is a voter.
    pub async fn join(&self, addr: &str) -> Result<()> {
        let req = JoinRequest {
            id: self.inner.cfg.node_id,
            node: RaftNode {
                name: self.inner.cfg.node_name.clone(),
                addr: self.inner.cfg.rpc_addr.clone(),
            },
        };
        let mut target = addr.to_string();
        for _ in 0..4 {
            let answer: std::result::Result<std::result::Result<(), RpcFailure>, CallError> = self
                .inner
                .rpc
                .call(&target, PATH_JOIN, &req, Duration::from_secs(60))
                .await;
            match answer {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(RpcFailure::NotLeader { leader: Some(l) })) if l != target => target = l,
                Ok(Err(RpcFailure::NotLeader { .. })) => return Err(Error::NoLeader),
                Ok(Err(RpcFailure::Failed(m))) => return Err(Error::Raft(m)),
                Err(e) => return Err(Error::Raft(format!("join {target}: {e}"))),
            }
        }
        Err(Error::Raft(format!("join {addr}: too many redirects")))
    }

    /// A follower's linearizable read: get the leader's read index (the
    /// leader confirms its leadership with a quorum), then wait until this
    /// server has applied it. Reads are then served from local views.
    pub(crate) async fn follower_read_index(&self, leader: &str) -> Result<()> {
        let index: u64 = self.call_leader(leader, PATH_READ_INDEX, &()).await?;
        self.inner
            .raft
            .wait(Some(FORWARD_TIMEOUT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|_| Error::NoLeader)?;
        Ok(())
    }

    /// Ask the leader at `leader` to do something only a leader does: its
    /// answer, `NoLeader` if it no longer leads or cannot be reached (the
    /// caller may retry), or its failure message.
    pub(crate) async fn call_leader<Req, T>(&self, leader: &str, path: &str, req: &Req) -> Result<T>
    where
        Req: serde::Serialize,
        T: serde::de::DeserializeOwned,
    {
        let answer: std::result::Result<std::result::Result<T, RpcFailure>, CallError> = self
            .inner
            .rpc
            .call(leader, path, req, FORWARD_TIMEOUT)
            .await;
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(RpcFailure::Failed(m))) => Err(Error::Raft(m)),
            Ok(Err(RpcFailure::NotLeader { .. })) | Err(_) => Err(Error::NoLeader),
        }
    }

    /// Ask the server at `addr` who it is and whether it belongs to a
    /// cluster (bootstrap and join decisions).
    pub async fn remote_info(&self, addr: &str) -> Result<ServerInfo> {
        self.inner
            .rpc
            .call(addr, PATH_INFO, &(), Duration::from_secs(2))
            .await
            .map_err(|e| Error::Raft(format!("{addr}: {e}")))
    }

    /// The raft configuration: every server (voters first, by id) and the
    /// log index of the membership entry it comes from.
    pub fn raft_servers(&self) -> (Vec<RaftServer>, u64) {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut out: Vec<RaftServer> = membership
            .nodes()
            .map(|(id, node)| RaftServer {
                id: *id,
                node: node.clone(),
                voter: voters.contains(id),
                leader: m.current_leader == Some(*id),
            })
            .collect();
        out.sort_by_key(|s| (!s.voter, s.id));
        let index = m.membership_config.log_id().map(|l| l.index).unwrap_or(0);
        (out, index)
    }

    /// This server's raft id.
    pub fn raft_id(&self) -> u64 {
        self.inner.cfg.node_id
    }

    /// True once this server belongs to an initialised cluster.
    pub async fn is_initialized(&self) -> bool {
        self.inner.raft.is_initialized().await.unwrap_or(false)
    }

    /// Initialise a new cluster with these voters (`bootstrap_expect`: one
    /// server does this once the expected servers have met).
    pub async fn initialize(&self, voters: BTreeMap<u64, RaftNode>) -> Result<()> {
        self.inner
            .raft
            .initialize(voters)
            .await
            .map_err(|e| Error::Raft(e.to_string()))
    }

    /// Remove a server from the raft configuration (on the leader): demote
    /// it, then drop it. Unknown ids are an error.
    pub async fn remove_server(&self, id: u64) -> Result<()> {
        self.check_leader()?;
        let (servers, _) = self.raft_servers();
        let Some(server) = servers.iter().find(|s| s.id == id) else {
            return Err(Error::Raft(format!("no raft server with id {id}")));
        };
        let raft = &self.inner.raft;
        let failed = |e: &dyn std::fmt::Display| Error::Raft(e.to_string());
        if server.voter {
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(|e| failed(&e))?;
        }
        raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| failed(&e))?;
        Ok(())
    }
}
