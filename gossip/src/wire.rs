//! What gossip carries besides foca's own SWIM messages, and how it is
//! encoded (postcard).
//!
//! - Custom broadcasts, piggybacked by foca on SWIM packets: a member's
//!   [`Meta`] (node ID and tags, versioned), leave [`Intent`]s and user
//!   events ([`UserEvent`]).
//! - [`SyncMsg`], the full state one node sends another over TCP in a
//!   push/pull exchange (join and periodic anti-entropy).
//!
//! [`ItemHandler`] is foca's `BroadcastHandler`: it applies received items
//! to the member table and tells foca whether they are new (and so worth
//! passing on).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{EventLog, UserEvent};
use crate::identity::NodeIdent;
use crate::table::{lock, Table};

/// A member's metadata: what Consul's serf carries as tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// Node name; the key of the member table.
    pub(crate) name: String,
    /// Node ID (UUID string).
    pub(crate) id: String,
    /// Tags (role, dc, ports, build...).
    pub(crate) tags: BTreeMap<String, String>,
    /// The first `life` of the process that wrote it: a restarted node's
    /// metadata always wins over its previous run's.
    pub(crate) epoch: u64,
    /// Bumped on every tag change within one run.
    pub(crate) seq: u64,
}

impl Meta {
    /// Newer metadata has a larger version.
    pub(crate) fn version(&self) -> (u64, u64) {
        (self.epoch, self.seq)
    }
}

/// "Member `name` in its life `life` is leaving gracefully" (or was forced
/// to leave). A later down of that life means Left rather than Failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// The member.
    pub(crate) name: String,
    /// The identity life the intent applies to.
    pub(crate) life: u64,
}

/// One custom broadcast item.
///
/// Variants are append-only (postcard encodes the variant's position):
/// never remove or reorder them, so every build decodes the items it
/// already knew the same way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Item {
    /// A member's metadata.
    Meta(Meta),
    /// A leave intent.
    Leave(Intent),
    /// A user event.
    Event(UserEvent),
}

impl Item {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| Error::Codec(format!("encode item: {e}")))
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Item> {
        postcard::from_bytes(data).map_err(|e| Error::Codec(format!("decode item: {e}")))
    }
}

/// Identifies a broadcast item so a newer one replaces an older one still
/// waiting in foca's dissemination queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemKey {
    /// 0 for metadata, 1 for a leave intent, 2 for a user event.
    kind: u8,
    /// The member the item is about; a user event's ID.
    name: String,
    /// Its version: `(epoch, seq)` for metadata, `(life, 0)` for intents,
    /// `(0, 0)` for user events.
    version: (u64, u64),
}

/// # Correctness
/// A user event never invalidates another: its key is its own ID with one
/// fixed version, and a key only replaces a strictly older version of
/// itself. Events are added to foca's queue once (the first time they are
/// seen), so an ID is never queued twice.
impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.version > other.version
    }
}

impl Item {
    fn key(&self) -> ItemKey {
        match self {
            Item::Meta(m) => ItemKey {
                kind: 0,
                name: m.name.clone(),
                version: m.version(),
            },
            Item::Leave(i) => ItemKey {
                kind: 1,
                name: i.name.clone(),
                version: (i.life, 0),
            },
            Item::Event(e) => ItemKey {
                kind: 2,
                name: e.id.clone(),
                version: (0, 0),
            },
        }
    }
}

/// A node's whole view, exchanged over TCP.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SyncMsg {
    /// The sender.
    pub(crate) from: NodeIdent,
    /// True when the sender is joining through this exchange.
    pub(crate) join: bool,
    /// foca's membership state (alive, suspect and down), plus the sender
    /// itself as alive.
    pub(crate) members: Vec<foca::Member<NodeIdent>>,
    /// Every member's metadata the sender knows, its own included.
    pub(crate) metas: Vec<Meta>,
    /// Every leave intent the sender knows.
    pub(crate) intents: Vec<Intent>,
}

impl SyncMsg {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| Error::Codec(format!("encode sync: {e}")))
    }

    pub(crate) fn decode(data: &[u8]) -> Result<SyncMsg> {
        postcard::from_bytes(data).map_err(|e| Error::Codec(format!("decode sync: {e}")))
    }
}

/// foca's broadcast handler: applies items to the member table and the
/// event log.
pub(crate) struct ItemHandler {
    /// The member table shared with the driver and the public handle.
    pub(crate) table: Arc<Mutex<Table>>,
    /// User events, shared with the driver and the public handle.
    pub(crate) events: Arc<Mutex<EventLog>>,
}

impl foca::BroadcastHandler<NodeIdent> for ItemHandler {
    type Key = ItemKey;
    type Error = Error;

    fn receive_item(&mut self, data: &[u8], sender: Option<&NodeIdent>) -> Result<Option<ItemKey>> {
        let item = Item::decode(data)?;
        let key = item.key();
        // `sender` is None for items this node adds itself
        // (`Foca::add_broadcast`): those are always disseminated; the table
        // already holds them.
        if sender.is_none() {
            return Ok(Some(key));
        }
        let fresh = match item {
            Item::Meta(meta) => lock(&self.table).apply_meta(meta),
            Item::Leave(intent) => lock(&self.table).apply_intent(&intent),
            Item::Event(event) => lock(&self.events).receive(event),
        };
        Ok(fresh.then_some(key))
    }
}

/// Decodes every payload type gossip accepts from the network, discarding
/// the result. For the fuzz target; never panics.
#[doc(hidden)]
pub fn fuzz_decode_payloads(data: &[u8]) {
    let _ = Item::decode(data);
    let _ = SyncMsg::decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::UserEvent;
    use foca::Invalidates;
    use proptest::prelude::*;

    #[test]
    fn old_items_encode_as_before_and_events_come_last() -> Result<()> {
        // The variant index leads: metadata 0 and intents 1 as they always
        // were; user events, added later, 2.
        let leave = Item::Leave(Intent {
            name: "n".into(),
            life: 5,
        });
        assert_eq!(leave.encode()?, [1, 1, b'n', 5]);
        let meta = Item::Meta(Meta {
            name: "n".into(),
            id: "i".into(),
            tags: BTreeMap::new(),
            epoch: 1,
            seq: 2,
        });
        assert_eq!(meta.encode()?, [0, 1, b'n', 1, b'i', 0, 1, 2]);
        let event = Item::Event(UserEvent::new("deploy", b"v2".to_vec()));
        let bytes = event.encode()?;
        assert_eq!(bytes.first(), Some(&2));
        match Item::decode(&bytes)? {
            Item::Event(e) => assert_eq!(e, UserEvent::new("deploy", b"v2".to_vec())),
            other => panic!("decoded {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn one_event_never_invalidates_another() {
        let event = |id: &str| {
            Item::Event(UserEvent {
                id: id.into(),
                ..UserEvent::new("deploy", Vec::new())
            })
            .key()
        };
        assert!(!event("a").invalidates(&event("b")));
        assert!(!event("a").invalidates(&event("a")));
        let leave = Item::Leave(Intent {
            name: "a".into(),
            life: 9,
        })
        .key();
        assert!(!leave.invalidates(&event("a")) && !event("a").invalidates(&leave));
    }

    proptest! {
        #[test]
        fn item_decoding_is_total(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            fuzz_decode_payloads(&data);
        }

        #[test]
        fn any_prefix_of_an_event_is_refused_or_decodes(cut in 0usize..64) {
            let bytes = Item::Event(UserEvent::new("deploy", b"payload".to_vec()))
                .encode()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let _ = Item::decode(bytes.get(..cut.min(bytes.len())).unwrap_or_default());
        }
    }
}
