//! User events: [`UserEvent`], what `consul event` fires, and
//! [`EventLog`], a node's record of the events it has seen.
//!
//! An event travels as a custom broadcast item (`wire::Item::Event`),
//! piggybacked by foca on SWIM packets like tags and leave intents, and is
//! re-gossiped by every node that sees it for the first time. As serf does,
//! each node keeps a Lamport clock for events: a fired event carries the
//! clock's current time and the clock then ticks; a received one moves the
//! clock past its time. Nodes recognise an event by its ID: a bounded set
//! of recently seen IDs makes a second copy (from another member, or sent
//! again by foca) a no-op.
//!
//! This module only carries and records events. Whether an agent acts on
//! one (its node, service and tag filters) is the agent's business: the log
//! keeps every event received, filters included.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::{Error, Result};

/// How many received events [`EventLog::recent`] keeps (Consul's agent
/// ring of 256).
pub const RECENT_USER_EVENTS: usize = 256;

/// The largest event, counting its ID, name, payload and filters (serf's
/// default `UserEventSizeLimit`): an event rides in one SWIM packet.
pub const USER_EVENT_SIZE_LIMIT: usize = 512;

/// The event format version this build writes (Consul's
/// `userEventMaxVersion`).
pub const USER_EVENT_VERSION: u32 = 1;

/// The length of a UUID string.
const UUID_LEN: usize = 36;

/// The most broadcasts waiting in foca's queue before firing a user event
/// is refused (serf's `MaxQueueDepth`): the queue has no bound of its own.
pub(crate) const MAX_BROADCAST_BACKLOG: usize = 4096;

/// How many event IDs are remembered to drop duplicates. Larger than the
/// recent ring: foca stops re-sending an event long before this many
/// newer ones can arrive.
const SEEN_IDS: usize = 4 * RECENT_USER_EVENTS;

/// Events buffered per subscriber before the slowest one lags.
const EVENT_BUFFER: usize = 256;

/// A user event, as Consul's agent encodes it in its serf event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// A UUID, assigned when the event is fired; identifies the event
    /// everywhere.
    pub id: String,
    /// The event's name (`deploy`).
    pub name: String,
    /// Opaque payload; empty when none was given.
    pub payload: Vec<u8>,
    /// A regular expression on node names; empty matches every node.
    pub node_filter: String,
    /// A regular expression on the names of a node's services; empty
    /// matches every node.
    pub service_filter: String,
    /// A regular expression on the tags of the services `service_filter`
    /// matched; only with `service_filter`.
    pub tag_filter: String,
    /// The format version ([`USER_EVENT_VERSION`]).
    pub version: u32,
    /// The Lamport time it was fired at.
    pub ltime: u64,
}

impl UserEvent {
    /// An event named `name` with `payload` and no filters; the ID,
    /// version and time are filled in when it is fired.
    pub fn new(name: impl Into<String>, payload: impl Into<Vec<u8>>) -> UserEvent {
        UserEvent {
            id: String::new(),
            name: name.into(),
            payload: payload.into(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: USER_EVENT_VERSION,
            ltime: 0,
        }
    }

    /// What counts against [`USER_EVENT_SIZE_LIMIT`]: the ID (a UUID, 36
    /// bytes, assigned or not yet), name, payload and filters.
    pub fn size(&self) -> usize {
        [
            UUID_LEN,
            self.name.len(),
            self.payload.len(),
            self.node_filter.len(),
            self.service_filter.len(),
            self.tag_filter.len(),
        ]
        .iter()
        .sum()
    }

    /// Refuse an event that cannot be fired: no name, or too large.
    pub(crate) fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::UserEventInvalid("User event missing name"));
        }
        let size = self.size();
        if size > USER_EVENT_SIZE_LIMIT {
            return Err(Error::UserEventTooLarge {
                size,
                max: USER_EVENT_SIZE_LIMIT,
            });
        }
        Ok(())
    }
}

/// A random (version 4) UUID string.
pub(crate) fn new_event_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let part = |r: std::ops::Range<usize>| hex.get(r).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// A node's user events: the Lamport clock, the IDs seen, the last
/// [`RECENT_USER_EVENTS`] events, and the subscribers.
///
/// Invariant: an event ID enters `recent` and reaches subscribers at most
/// once while it is among the last [`SEEN_IDS`] IDs seen.
pub(crate) struct EventLog {
    /// The Lamport clock: the time the next fired event gets.
    clock: u64,
    /// IDs seen, for dropping duplicates; `seen_order` evicts the oldest.
    seen: HashSet<String>,
    /// The IDs of `seen`, oldest first.
    seen_order: VecDeque<String>,
    /// Events received (and fired here), oldest first.
    recent: VecDeque<UserEvent>,
    /// Every new event, to subscribers.
    events: broadcast::Sender<UserEvent>,
}

impl EventLog {
    pub(crate) fn new() -> EventLog {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        EventLog {
            clock: 0,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            recent: VecDeque::new(),
            events,
        }
    }

    /// Stamps `event` as fired here now (a fresh ID, the version, the
    /// clock's time, then the clock ticks, as serf's `UserEvent` does) and
    /// records it; returns it as it must be gossiped.
    pub(crate) fn fire(&mut self, mut event: UserEvent) -> UserEvent {
        event.id = new_event_id();
        event.version = USER_EVENT_VERSION;
        event.ltime = self.clock;
        self.clock += 1;
        self.receive(event.clone());
        event
    }

    /// Records an event from the pool. Returns false for one already seen
    /// (nothing changes then but the clock, which moves past its time).
    pub(crate) fn receive(&mut self, event: UserEvent) -> bool {
        if event.ltime >= self.clock {
            self.clock = event.ltime.saturating_add(1);
        }
        if !self.seen.insert(event.id.clone()) {
            return false;
        }
        self.seen_order.push_back(event.id.clone());
        while self.seen_order.len() > SEEN_IDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        tracing::debug!(name = %event.name, id = %event.id, ltime = event.ltime, "gossip: new user event");
        if self.recent.len() == RECENT_USER_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.events.send(event);
        true
    }

    /// The last [`RECENT_USER_EVENTS`] events, oldest first.
    pub(crate) fn recent(&self) -> Vec<UserEvent> {
        self.recent.iter().cloned().collect()
    }

    /// New events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<UserEvent> {
        self.events.subscribe()
    }

    /// The Lamport clock's current time.
    pub(crate) fn clock(&self) -> u64 {
        self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(id: &str, ltime: u64) -> UserEvent {
        UserEvent {
            id: id.to_string(),
            ltime,
            ..UserEvent::new("deploy", b"v1".to_vec())
        }
    }

    #[test]
    fn fired_events_take_the_clock_then_it_ticks() {
        let mut log = EventLog::new();
        let a = log.fire(UserEvent::new("a", Vec::new()));
        let b = log.fire(UserEvent::new("b", Vec::new()));
        assert_eq!((a.ltime, b.ltime, log.clock()), (0, 1, 2));
        assert_ne!(a.id, b.id);
        assert_eq!(a.version, USER_EVENT_VERSION);
        assert_eq!(log.recent(), vec![a, b]);
    }

    #[test]
    fn received_times_move_the_clock_forward_only() {
        let mut log = EventLog::new();
        assert!(log.receive(received("x", 41)));
        assert_eq!(log.clock(), 42);
        assert!(log.receive(received("y", 3)));
        assert_eq!(log.clock(), 42);
        assert_eq!(log.fire(UserEvent::new("z", Vec::new())).ltime, 42);
    }

    #[test]
    fn a_second_copy_is_dropped_and_the_ring_keeps_the_newest() {
        let mut log = EventLog::new();
        let mut sub = log.subscribe();
        assert!(log.receive(received("dup", 1)));
        assert!(!log.receive(received("dup", 1)));
        assert_eq!(log.recent().len(), 1);
        assert_eq!(sub.try_recv().map(|e| e.id).ok().as_deref(), Some("dup"));
        assert!(sub.try_recv().is_err(), "one delivery per event");
        for i in 0..RECENT_USER_EVENTS + 10 {
            assert!(log.receive(received(&format!("e{i}"), 2)));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT_USER_EVENTS);
        assert_eq!(recent.first().map(|e| e.id.as_str()), Some("e10"));
        let last = format!("e{}", RECENT_USER_EVENTS + 9);
        assert_eq!(recent.last().map(|e| e.id.as_str()), Some(last.as_str()));
    }

    #[test]
    fn seen_ids_are_bounded() {
        let mut log = EventLog::new();
        for i in 0..SEEN_IDS + 5 {
            log.receive(received(&format!("e{i}"), 0));
        }
        assert_eq!(log.seen.len(), SEEN_IDS);
        assert_eq!(log.seen_order.len(), SEEN_IDS);
        assert!(!log.receive(received(&format!("e{}", SEEN_IDS), 0)));
    }

    #[test]
    fn events_without_a_name_or_too_large_are_refused() {
        assert!(UserEvent::new("", Vec::new()).check().is_err());
        let mut fits = UserEvent::new("n", vec![0; USER_EVENT_SIZE_LIMIT - 1 - UUID_LEN]);
        assert!(fits.check().is_ok());
        fits.payload.push(0);
        assert!(matches!(
            fits.check(),
            Err(Error::UserEventTooLarge {
                size: 513,
                max: 512
            })
        ));
    }

    #[test]
    fn event_ids_are_v4_uuids() {
        let id = new_event_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(id.get(14..15), Some("4"));
    }
}
