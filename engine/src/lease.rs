//! Who may answer: the cluster status behind the read headers and
//! `/v1/status/*`, the leader's lease (what bounds a default-mode read's
//! staleness, reasoned in [`Engine::lease_age`]'s docs), and the gates of
//! each consistency mode (default, `?consistent`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, Fatal, RaftError};
use openraft::ServerState;

use crate::engine::{raft_err, ClusterStatus, Engine, Route};
use crate::error::{Error, Result};
use crate::raft::RaftNode;

impl Engine {
    /// Cluster status for headers and `/v1/status/*`.
    pub fn status(&self) -> ClusterStatus {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let addr_of = |id: &u64| membership.get_node(id).map(|n| n.addr.clone());
        let leads = m.state == ServerState::Leader && m.current_leader == Some(m.id);
        let lease_age = if leads {
            self.lease_age(&m)
        } else {
            Duration::ZERO
        };
        // A leader that has not heard from a quorum within its lease no
        // longer says it leads (Consul's leader steps down).
        let is_leader = leads && lease_age <= self.lease();
        let leader = if leads && !is_leader {
            None
        } else {
            m.current_leader.as_ref().and_then(addr_of)
        };
        ClusterStatus {
            leader,
            is_leader,
            peers: membership
                .voter_ids()
                .filter_map(|id| addr_of(&id))
                .collect(),
            last_contact_ms: if leads {
                u64::try_from(lease_age.as_millis()).unwrap_or(u64::MAX)
            } else {
                self.inner
                    .leader_contact
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0)
            },
            applied_index: self.inner.shared.applied.load(Ordering::Acquire),
            term: m.current_term,
        }
    }

    /// Default-consistency read gate: `Err(NoLeader)` unless this server is
    /// the leader.
    pub fn check_leader(&self) -> Result<()> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        if m.state == ServerState::Leader
            && m.current_leader == Some(m.id)
            && self.lease_age(&m) <= self.lease()
        {
            Ok(())
        } else {
            Err(Error::NoLeader)
        }
    }

    /// How long a leader keeps acting as one after the send of the newest
    /// request a quorum acknowledged: 1.5 × the election timeout, three
    /// quarters of the window in which those followers refuse to vote for
    /// anyone else (see [`Engine::lease_age`]).
    pub(crate) fn lease(&self) -> Duration {
        self.inner.cfg.election_timeout * 3 / 2
    }

    /// On a leader: how long ago the quorum's acknowledgement was *sent*
    /// (the newest time by which a majority of voters, itself included,
    /// had granted this term); zero for a lone voter; `Duration::MAX` when
    /// no quorum of this process's requests has been acknowledged in this
    /// term.
    ///
    /// # Correctness: what bounds a default-mode read's staleness
    /// A default-mode read is answered from this server's views only while
    /// `lease_age <= lease()`. A follower that accepted an append of this
    /// term refuses every vote request for openraft's leader lease (the
    /// election timeout's upper bound, 2 × the election timeout) after it
    /// accepted it, which is after the request was sent at `t`; a new
    /// leader needs the votes of a quorum, which shares a member with the
    /// quorum that acknowledged, so no other leader is elected, nor commits
    /// a write, before `t + 2 × election timeout`, and this server stops
    /// answering at `t + 1.5 × election timeout`. Counting from the send (not from when the
    /// reply was processed) and only counting requests this process sent in
    /// this term keeps that bound: a server that restarts still believing
    /// it leads an old term starts with no acknowledgements at all and
    /// serves no default read until a quorum
    /// accepts it again (it learns of the newer term instead, and steps
    /// down). Like etcd's and Consul's leases this assumes bounded clock
    /// drift: the lease is measured on the leader's monotonic clock and the
    /// followers' refusal on theirs, so it holds while the leader's clock
    /// runs less than a third slower than a follower's over one lease
    /// (1.5 s by default). `?consistent`
    /// reads do not rely on it: they confirm leadership with a quorum round
    /// trip first.
    pub(crate) fn lease_age(&self, m: &openraft::RaftMetrics<u64, RaftNode>) -> Duration {
        let others: Vec<u64> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != m.id)
            .collect();
        // A majority of n voters is n/2 + 1: this one plus n/2 others.
        let need = others.len().div_ceil(2);
        if need == 0 {
            // A lone voter is its own quorum (every read checks this).
            return Duration::ZERO;
        }
        let now = std::time::Instant::now();
        let mut ages: Vec<Duration> = others
            .iter()
            .map(|id| {
                self.inner
                    .acks
                    .last(*id, m.current_term)
                    .map_or(Duration::MAX, |sent| now.saturating_duration_since(sent))
            })
            .collect();
        ages.sort();
        ages.get(need - 1).copied().unwrap_or(Duration::MAX)
    }

    /// The gate of each run of a default-mode blocking read after its
    /// first: this server leads, or follows a leader that reached it within
    /// the election timeout (its views trail the leader's by at most that).
    pub fn leader_known(&self) -> Result<()> {
        if self.check_leader().is_ok() {
            return Ok(());
        }
        let recent = self
            .inner
            .leader_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < self.inner.cfg.election_timeout * 2);
        if recent && matches!(self.route(), Route::Remote(_)) {
            Ok(())
        } else {
            Err(Error::NoLeader)
        }
    }

    /// `?consistent` read gate: confirm leadership with a quorum and wait
    /// until the views have applied the read index.
    pub async fn linearizable(&self) -> Result<()> {
        if let Route::Remote(addr) = self.route() {
            return self.follower_read_index(&addr).await;
        }
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))
            | Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(Error::NoLeader)
            }
            Err(RaftError::Fatal(Fatal::Stopped)) => Err(Error::Shutdown),
            Err(e) => Err(raft_err(e)),
        }
    }
}
