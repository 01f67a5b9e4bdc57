//! The change feed: what each applied entry changed, for
//! `/v1/event-stream`. An entry's changes are its final rows in the KV,
//! catalog (nodes, services, checks) and session views: a row written
//! (with its new value) or removed. They come from the apply path's staged
//! writes, so a rejected command (a failed CAS, a transaction rolled back)
//! shows nothing, and several writes of one key in one batch entry show
//! its last value.
//!
//! The feed keeps the most recent entries in memory, up to
//! [`FEED_BUDGET`] bytes, from the index this server started at: a reader
//! that asks for changes after an older index is told the oldest one it
//! may resume from ([`Gone`]) and reads the state instead, as a Consul
//! streaming subscriber does after its buffer moved on. A restore (or a
//! snapshot install on a follower) replaces the whole state: it appears as
//! one `reset` entry, after which readers read the state again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use fjall::Slice;

use crate::error::Result;
use crate::types::{Check, KvEntry, Node, Service, Session};
use crate::views::{decode, Ks};

/// Bytes of changes kept in memory (keys, values and a per-change
/// overhead).
pub const FEED_BUDGET: usize = 64 << 20;

/// Bytes counted per change beyond its key and value.
const CHANGE_OVERHEAD: usize = 64;

/// Which view a change is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A KV entry.
    Kv,
    /// A catalog node.
    Node,
    /// A service instance.
    Service,
    /// A health check.
    Check,
    /// A session.
    Session,
}

impl Topic {
    /// The topic of rows of `ks`, if they are fed.
    pub(crate) fn of(ks: Ks) -> Option<Topic> {
        match ks {
            Ks::Kv => Some(Topic::Kv),
            Ks::Nodes => Some(Topic::Node),
            Ks::Services => Some(Topic::Service),
            Ks::Checks => Some(Topic::Check),
            Ks::Sessions => Some(Topic::Session),
            _ => None,
        }
    }
}

/// One row an entry wrote or removed.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its view.
    pub topic: Topic,
    /// Its key: the KV key, a node's lowercase name, `node\0service-id`,
    /// `node\0check-id`, a session ID.
    pub key: Vec<u8>,
    /// The new row (`None`: removed).
    pub value: Option<Slice>,
}

/// A change's new value, decoded.
#[derive(Debug, Clone)]
pub enum Value {
    /// A KV entry.
    Kv(KvEntry),
    /// A node.
    Node(Node),
    /// A service instance.
    Service(Service),
    /// A check.
    Check(Check),
    /// A session.
    Session(Session),
}

impl Change {
    /// The new value, decoded (`None` for a removal).
    pub fn decode(&self) -> Result<Option<Value>> {
        let Some(bytes) = &self.value else {
            return Ok(None);
        };
        Ok(Some(match self.topic {
            Topic::Kv => Value::Kv(decode(bytes, "kv entry")?),
            Topic::Node => Value::Node(decode(bytes, "node")?),
            Topic::Service => Value::Service(decode(bytes, "service")?),
            Topic::Check => Value::Check(decode(bytes, "check")?),
            Topic::Session => Value::Session(decode(bytes, "session")?),
        }))
    }

    fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, |v| v.len()) + CHANGE_OVERHEAD
    }
}

/// What one applied entry changed.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    /// The entry's index (as `X-Consul-Index` reports it).
    pub index: u64,
    /// Its changes, in view and key order.
    pub changes: Vec<Change>,
    /// The whole state was replaced (a restore or a snapshot install):
    /// read it again.
    pub reset: bool,
}

/// The reader asked for changes after an index the feed no longer holds;
/// it holds every change after `oldest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// The oldest index a reader may resume from.
    pub oldest: u64,
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<Arc<FeedEntry>>,
    bytes: usize,
    /// Every change after this index is held.
    floor: u64,
}

/// The feed: recent entries' changes, and a signal for each new one.
#[derive(Debug)]
pub struct Feed {
    ring: Mutex<Ring>,
    budget: usize,
    latest: tokio::sync::watch::Sender<u64>,
}

impl Feed {
    /// An empty feed holding every change after `start`.
    pub fn new(start: u64, budget: usize) -> Feed {
        Feed {
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                bytes: 0,
                floor: start,
            }),
            budget,
            latest: tokio::sync::watch::Sender::new(start),
        }
    }

    /// Record an entry's changes (nothing is recorded for an entry that
    /// changed nothing).
    pub fn push(&self, index: u64, changes: Vec<Change>, reset: bool) {
        if changes.is_empty() && !reset {
            return;
        }
        let bytes: usize = changes.iter().map(Change::bytes).sum::<usize>() + CHANGE_OVERHEAD;
        {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            ring.entries.push_back(Arc::new(FeedEntry {
                index,
                changes,
                reset,
            }));
            ring.bytes += bytes;
            // Keep the newest entry even when it alone is over budget.
            while ring.bytes > self.budget && ring.entries.len() > 1 {
                let Some(old) = ring.entries.pop_front() else {
                    break;
                };
                ring.bytes -=
                    old.changes.iter().map(Change::bytes).sum::<usize>() + CHANGE_OVERHEAD;
                ring.floor = old.index;
            }
        }
        self.latest.send_replace(index);
    }

    /// Every held entry after `after`, oldest first; [`Gone`] if changes
    /// after `after` are no longer held.
    pub fn since(&self, after: u64) -> std::result::Result<Vec<Arc<FeedEntry>>, Gone> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if after < ring.floor {
            return Err(Gone { oldest: ring.floor });
        }
        let first = ring.entries.partition_point(|e| e.index <= after);
        Ok(ring.entries.range(first..).cloned().collect())
    }

    /// Resolves once an entry after `after` was recorded.
    pub async fn wait_past(&self, after: u64) {
        let mut rx = self.latest.subscribe();
        // The sender lives as long as the feed, which outlives its readers.
        let _ = rx.wait_for(|latest| *latest > after).await;
    }

    /// The index of the newest entry recorded (or the start).
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// The oldest index a reader may resume from.
    pub fn oldest(&self) -> u64 {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8]) -> Change {
        Change {
            topic: Topic::Kv,
            key: key.as_bytes().to_vec(),
            value: Some(Slice::from(value)),
        }
    }

    fn indexes(v: &[Arc<FeedEntry>]) -> Vec<u64> {
        v.iter().map(|e| e.index).collect()
    }

    #[test]
    fn feed_returns_entries_after_an_index_and_says_when_they_are_gone() {
        let feed = Feed::new(10, 2 * (CHANGE_OVERHEAD * 2 + 2 + 100));
        assert_eq!(feed.since(10).map(|v| v.len()), Ok(0));
        assert_eq!(feed.since(9).err(), Some(Gone { oldest: 10 }));
        feed.push(11, vec![kv("a", &[0; 100])], false);
        feed.push(12, Vec::new(), false);
        feed.push(13, vec![kv("b", &[0; 100])], false);
        assert_eq!(indexes(&feed.since(10).expect("held")), vec![11, 13]);
        assert_eq!(indexes(&feed.since(11).expect("held")), vec![13]);
        assert_eq!(indexes(&feed.since(12).expect("held")), vec![13]);
        // Over budget: the oldest entry goes, and so does index 10.
        feed.push(14, vec![kv("c", &[0; 100])], false);
        assert_eq!(feed.since(10).err(), Some(Gone { oldest: 11 }));
        assert_eq!(indexes(&feed.since(11).expect("held")), vec![13, 14]);
        assert_eq!(feed.oldest(), 11);
    }

    #[test]
    fn feed_keeps_one_entry_larger_than_its_budget() {
        let feed = Feed::new(0, 10);
        feed.push(1, vec![kv("a", &[0; 100])], false);
        feed.push(2, vec![kv("b", &[0; 100])], false);
        assert_eq!(indexes(&feed.since(1).expect("held")), vec![2]);
        assert_eq!(feed.since(0).err(), Some(Gone { oldest: 1 }));
    }

    #[tokio::test]
    async fn feed_wakes_a_waiting_reader() {
        let feed = Arc::new(Feed::new(5, FEED_BUDGET));
        let waiter = {
            let feed = feed.clone();
            tokio::spawn(async move { feed.wait_past(5).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        feed.push(6, vec![kv("a", b"x")], false);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
