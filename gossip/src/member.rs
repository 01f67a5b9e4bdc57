//! The public view of the member list: [`Member`], [`MemberStatus`] and the
//! [`MemberEvent`]s a subscriber receives.
//!
//! Plain data only; the state machine that produces them is `table.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// A member's status, as Consul's `members` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Answering probes (SWIM "alive" or "suspect").
    Alive,
    /// Announced a graceful leave that has not completed yet.
    Leaving,
    /// Left gracefully, or was forced to leave after failing.
    Left,
    /// Stopped answering probes and was declared down by the cluster.
    Failed,
}

impl MemberStatus {
    /// Consul's lowercase name: `alive`, `leaving`, `left`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of the gossip pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node name, unique in the pool.
    pub name: String,
    /// Node ID (a UUID string).
    pub id: String,
    /// Gossip address (UDP and TCP).
    pub addr: SocketAddr,
    /// Tags: role, dc, ports, build and so on.
    pub tags: BTreeMap<String, String>,
    /// Current status.
    pub status: MemberStatus,
}

/// A change in the member list, as sent to [`crate::Gossip::subscribe`]rs.
///
/// Events describe other members; the local member only produces
/// [`MemberEvent::Update`] when its own tags change. Entering
/// [`MemberStatus::Leaving`] has no event (it is transient); the
/// [`MemberEvent::Leave`] comes when the member is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member became alive: first seen, or back after failing or leaving.
    Join(Member),
    /// An alive member's tags or address changed.
    Update(Member),
    /// A member left gracefully (or was forced to leave).
    Leave(Member),
    /// A member stopped answering and was declared down.
    Failed(Member),
    /// A failed or left member was forgotten after `reconnect_timeout` /
    /// `tombstone_timeout` (or pruned by `force_leave`).
    Reap(Member),
}

impl MemberEvent {
    /// The member the event is about, in its new state.
    pub fn member(&self) -> &Member {
        match self {
            MemberEvent::Join(m)
            | MemberEvent::Update(m)
            | MemberEvent::Leave(m)
            | MemberEvent::Failed(m)
            | MemberEvent::Reap(m) => m,
        }
    }

    /// The event's name in Consul's vocabulary (`member-join`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            MemberEvent::Join(_) => "member-join",
            MemberEvent::Update(_) => "member-update",
            MemberEvent::Leave(_) => "member-leave",
            MemberEvent::Failed(_) => "member-failed",
            MemberEvent::Reap(_) => "member-reap",
        }
    }

    /// serf's name for the event, as Consul logs it (`EventMemberJoin`).
    pub fn serf_name(&self) -> &'static str {
        match self {
            MemberEvent::Join(_) => "EventMemberJoin",
            MemberEvent::Update(_) => "EventMemberUpdate",
            MemberEvent::Leave(_) => "EventMemberLeave",
            MemberEvent::Failed(_) => "EventMemberFailed",
            MemberEvent::Reap(_) => "EventMemberReap",
        }
    }
}
