//! The member table: this node's view of the pool by node name, the status
//! state machine, and the events it emits.
//!
//! foca knows identities and Alive/Suspect/Down; this table joins that with
//! metadata (node ID, tags) and leave intents to get Consul's statuses:
//!
//! ```text
//!  (unknown) --up--> Alive --intent--> Leaving --down--> Left
//!                      |                                  ^
//!                      +--down--> Failed --intent/force---+
//!  Failed/Left --up (new life)--> Alive      Failed/Left --timeout--> reaped
//! ```
//!
//! A member is listed (and produces events) once both its identity and its
//! metadata are known. The table never does I/O; the driver feeds it foca's
//! notifications and the handler feeds it broadcast items.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::identity::NodeIdent;
use crate::member::{Member, MemberEvent, MemberStatus};
use crate::wire::{Intent, Meta, SyncMsg};

/// Locks a mutex, ignoring poisoning: the table's invariants hold between
/// method calls, and no method panics halfway.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What this node knows about one member.
#[derive(Debug)]
struct Record {
    /// Its current SWIM identity, once foca (or a sync) told us.
    ident: Option<NodeIdent>,
    /// Its metadata, once a broadcast or a sync brought it.
    meta: Option<Meta>,
    /// None until foca reports the member up or a sync reports it down.
    status: Option<MemberStatus>,
    /// A Join was emitted for the current alive spell; Failed/Leave/Update
    /// events are only emitted after one.
    announced: bool,
    /// The life a leave intent was received for.
    leave_life: Option<u64>,
    /// When `status` last changed (reaping counts from here).
    changed: Instant,
}

impl Record {
    fn new() -> Record {
        Record {
            ident: None,
            meta: None,
            status: None,
            announced: false,
            leave_life: None,
            changed: Instant::now(),
        }
    }

    fn view(&self) -> Option<Member> {
        let (ident, meta, status) = (self.ident.as_ref()?, self.meta.as_ref()?, self.status?);
        Some(Member {
            name: meta.name.clone(),
            id: meta.id.clone(),
            addr: ident.addr,
            tags: meta.tags.clone(),
            status,
        })
    }

    fn leaving(&self, life: u64) -> bool {
        self.leave_life.is_some_and(|l| l >= life)
    }

    fn set_status(&mut self, status: MemberStatus) {
        if self.status != Some(status) {
            self.status = Some(status);
            self.changed = Instant::now();
        }
    }
}

/// The member table. See the module docs for the state machine.
pub(crate) struct Table {
    /// This node's name; its record is never reaped or changed by gossip.
    local: String,
    /// Every member by name, this node included.
    records: BTreeMap<String, Record>,
    /// Subscribers' channel.
    events: broadcast::Sender<MemberEvent>,
}

impl Table {
    pub(crate) fn new(
        ident: NodeIdent,
        meta: Meta,
        events: broadcast::Sender<MemberEvent>,
    ) -> Table {
        let local = ident.name.clone();
        let mut me = Record::new();
        me.ident = Some(ident);
        me.meta = Some(meta);
        me.status = Some(MemberStatus::Alive);
        me.announced = true;
        let mut records = BTreeMap::new();
        records.insert(local.clone(), me);
        Table {
            local,
            records,
            events,
        }
    }

    fn emit(&self, make: fn(Member) -> MemberEvent, name: &str) {
        if let Some(member) = self.records.get(name).and_then(Record::view) {
            let event = make(member.clone());
            // Consul's (serf's) line: `EventMemberJoin: node2 10.0.0.2`.
            tracing::info!(
                "{}: {} {}",
                event.serf_name(),
                member.name,
                member.addr.ip()
            );
            // Consul's `consul.serf.member.join|update|left|failed|reap`.
            let counter = match &event {
                MemberEvent::Join(_) => "consul.serf.member.join",
                MemberEvent::Update(_) => "consul.serf.member.update",
                MemberEvent::Leave(_) => "consul.serf.member.left",
                MemberEvent::Failed(_) => "consul.serf.member.failed",
                MemberEvent::Reap(_) => "consul.serf.member.reap",
            };
            metrics::counter!(counter).increment(1);
            // No subscribers is fine.
            let _ = self.events.send(event);
        }
    }

    /// foca reports `id` alive (first sight, rejoin, or a rename).
    pub(crate) fn member_up(&mut self, id: &NodeIdent) {
        if id.name == self.local {
            if self.local_ident().is_some_and(|me| me.addr != id.addr) {
                tracing::warn!(name = %id.name, addr = %id.addr, "another node uses this node's name; names must be unique");
            }
            return;
        }
        let rec = self
            .records
            .entry(id.name.clone())
            .or_insert_with(Record::new);
        if rec.ident.as_ref().is_some_and(|cur| cur.life > id.life) {
            return; // news about an older life
        }
        let same_life = rec.ident.as_ref() == Some(id);
        let was = rec.status;
        if same_life && matches!(was, Some(MemberStatus::Alive | MemberStatus::Leaving)) {
            return;
        }
        let addr_changed = rec.ident.as_ref().is_some_and(|cur| cur.addr != id.addr);
        if rec.leave_life.is_some_and(|l| l < id.life) {
            rec.leave_life = None; // a new life, the old intent is void
        }
        rec.ident = Some(id.clone());
        let status = if rec.leaving(id.life) {
            MemberStatus::Leaving
        } else {
            MemberStatus::Alive
        };
        rec.set_status(status);
        let was_up = matches!(was, Some(MemberStatus::Alive | MemberStatus::Leaving));
        if was_up && rec.announced {
            if addr_changed {
                self.emit(MemberEvent::Update, &id.name);
            }
        } else if rec.meta.is_some() {
            rec.announced = true;
            self.emit(MemberEvent::Join, &id.name);
        } else {
            rec.announced = false;
        }
    }

    /// foca reports `id` down (failed probes, or its own leave).
    pub(crate) fn member_down(&mut self, id: &NodeIdent) {
        if id.name == self.local {
            return;
        }
        let Some(rec) = self.records.get_mut(&id.name) else {
            return;
        };
        if rec.ident.as_ref().is_some_and(|cur| cur.life > id.life) {
            return; // news about an older life
        }
        if matches!(rec.status, Some(MemberStatus::Left | MemberStatus::Failed)) {
            return;
        }
        rec.ident = Some(id.clone());
        let (status, event): (_, fn(Member) -> MemberEvent) = if rec.leaving(id.life) {
            (MemberStatus::Left, MemberEvent::Leave)
        } else {
            (MemberStatus::Failed, MemberEvent::Failed)
        };
        rec.set_status(status);
        let announced = std::mem::replace(&mut rec.announced, false);
        if announced {
            self.emit(event, &id.name);
        }
    }

    /// A sync reported `id` down and this node never saw it up, but has its
    /// metadata (it joined and died before foca told us): list it as failed
    /// (or left), without an event. Members this node knows nothing of are
    /// ignored, as memberlist does: otherwise a member reaped here could be
    /// brought back by a peer that has not reaped it yet.
    pub(crate) fn note_down(&mut self, id: &NodeIdent) {
        if id.name == self.local {
            return;
        }
        let Some(rec) = self.records.get_mut(&id.name) else {
            return;
        };
        if rec.status.is_some() || rec.ident.as_ref().is_some_and(|cur| cur.life >= id.life) {
            return;
        }
        rec.ident = Some(id.clone());
        let status = if rec.leaving(id.life) {
            MemberStatus::Left
        } else {
            MemberStatus::Failed
        };
        rec.set_status(status);
    }

    /// Applies metadata from the network. Returns true if it was new.
    pub(crate) fn apply_meta(&mut self, meta: Meta) -> bool {
        if meta.name == self.local || meta.name.is_empty() {
            return false;
        }
        let name = meta.name.clone();
        let rec = self.records.entry(name.clone()).or_insert_with(Record::new);
        if rec
            .meta
            .as_ref()
            .is_some_and(|cur| cur.version() >= meta.version())
        {
            return false;
        }
        let changed = rec
            .meta
            .as_ref()
            .is_none_or(|cur| cur.tags != meta.tags || cur.id != meta.id);
        rec.meta = Some(meta);
        if matches!(
            rec.status,
            Some(MemberStatus::Alive | MemberStatus::Leaving)
        ) {
            if !rec.announced {
                rec.announced = true;
                self.emit(MemberEvent::Join, &name);
            } else if changed {
                self.emit(MemberEvent::Update, &name);
            }
        }
        true
    }

    /// Applies a leave intent from the network. Returns true if it was new.
    pub(crate) fn apply_intent(&mut self, intent: &Intent) -> bool {
        if intent.name == self.local || intent.name.is_empty() {
            return false;
        }
        let rec = self
            .records
            .entry(intent.name.clone())
            .or_insert_with(Record::new);
        if rec.leaving(intent.life) || rec.ident.as_ref().is_some_and(|cur| cur.life > intent.life)
        {
            return false;
        }
        rec.leave_life = Some(intent.life);
        match rec.status {
            Some(MemberStatus::Alive) => rec.set_status(MemberStatus::Leaving),
            Some(MemberStatus::Failed) => {
                rec.set_status(MemberStatus::Left);
                rec.announced = false;
                self.emit(MemberEvent::Leave, &intent.name);
            }
            _ => {}
        }
        true
    }

    /// Marks a failed member left (and forgets it when `prune`). Returns the
    /// intent to broadcast so the rest of the pool does the same.
    pub(crate) fn force_leave(&mut self, name: &str, prune: bool) -> Result<Intent> {
        let rec = self
            .records
            .get_mut(name)
            .filter(|r| r.status.is_some() && name != self.local);
        let Some(rec) = rec else {
            return Err(Error::UnknownMember(name.to_owned()));
        };
        let life = rec.ident.as_ref().map_or(0, |i| i.life);
        match rec.status {
            Some(MemberStatus::Failed) => {
                rec.leave_life = Some(life);
                rec.set_status(MemberStatus::Left);
                self.emit(MemberEvent::Leave, name);
            }
            Some(MemberStatus::Left) => {}
            Some(status @ (MemberStatus::Alive | MemberStatus::Leaving)) => {
                return Err(Error::MemberNotFailed {
                    name: name.to_owned(),
                    status,
                });
            }
            None => return Err(Error::UnknownMember(name.to_owned())),
        }
        if prune {
            self.emit(MemberEvent::Reap, name);
            self.records.remove(name);
        }
        Ok(Intent {
            name: name.to_owned(),
            life,
        })
    }

    /// Forgets failed members after `reconnect` and left ones after
    /// `tombstone`, emitting Reap.
    pub(crate) fn reap(&mut self, reconnect: Duration, tombstone: Duration) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .records
            .iter()
            .filter(|(name, _)| **name != self.local)
            .filter(|(_, r)| {
                let age = now.saturating_duration_since(r.changed);
                match r.status {
                    Some(MemberStatus::Failed) | None => age >= reconnect,
                    Some(MemberStatus::Left) => age >= tombstone,
                    Some(MemberStatus::Alive | MemberStatus::Leaving) => false,
                }
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.emit(MemberEvent::Reap, &name);
            self.records.remove(&name);
        }
    }

    /// Why a joiner (its sync message) must be refused: another alive
    /// member, this node included, has its name at another address with
    /// another node ID. The same node restarted (same address, or same
    /// node ID at a new address) is not a conflict, nor is a name whose
    /// holder has failed or left.
    pub(crate) fn name_conflict(&self, joiner: &SyncMsg) -> Option<String> {
        let name = &joiner.from.name;
        let rec = self.records.get(name)?;
        let holder = rec.ident.as_ref()?;
        let up = matches!(
            rec.status,
            Some(MemberStatus::Alive | MemberStatus::Leaving)
        );
        if !up || holder.addr == joiner.from.addr {
            return None;
        }
        let joiner_id = joiner.metas.iter().find(|m| &m.name == name).map(|m| &m.id);
        let holder_id = rec.meta.as_ref().map(|m| &m.id);
        if joiner_id.is_some() && joiner_id == holder_id {
            return None;
        }
        Some(format!(
            "node name {name:?} is already used by the alive member at {} (node ID {}): every \
             agent needs its own name: start this one with -node <unique name>",
            holder.addr,
            holder_id.map_or("unknown", String::as_str)
        ))
    }

    /// The listed members, sorted by name.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.records.values().filter_map(Record::view).collect()
    }

    /// This node's identity.
    pub(crate) fn local_ident(&self) -> Option<&NodeIdent> {
        self.records.get(&self.local).and_then(|r| r.ident.as_ref())
    }

    /// This node's metadata.
    pub(crate) fn local_meta(&self) -> Option<&Meta> {
        self.records.get(&self.local).and_then(|r| r.meta.as_ref())
    }

    /// Replaces this node's identity after foca renewed it.
    pub(crate) fn set_local_ident(&mut self, ident: NodeIdent) {
        if let Some(me) = self.records.get_mut(&self.local) {
            me.ident = Some(ident);
        }
    }

    /// Replaces this node's metadata (new tags) and emits Update for it.
    pub(crate) fn set_local_meta(&mut self, meta: Meta) {
        if let Some(me) = self.records.get_mut(&self.local) {
            me.meta = Some(meta);
        }
        let local = self.local.clone();
        self.emit(MemberEvent::Update, &local);
    }

    /// Sets this node's own status (Leaving, then Left on `leave`), and
    /// returns the leave intent for its current life.
    pub(crate) fn set_local_status(&mut self, status: MemberStatus) -> Option<Intent> {
        let me = self.records.get_mut(&self.local)?;
        me.set_status(status);
        let life = me.ident.as_ref()?.life;
        me.leave_life = Some(life);
        Some(Intent {
            name: self.local.clone(),
            life,
        })
    }

    /// Metadata of the alive and leaving members, this node's included (for
    /// a sync). Failed and left members' metadata is not passed on, so a
    /// member reaped on one node is not brought back by another.
    pub(crate) fn metas(&self) -> Vec<Meta> {
        self.records
            .values()
            .filter(|r| matches!(r.status, Some(MemberStatus::Alive | MemberStatus::Leaving)))
            .filter_map(|r| r.meta.clone())
            .collect()
    }

    /// Leave intents of listed members (for a sync).
    pub(crate) fn intents(&self) -> Vec<Intent> {
        self.records
            .iter()
            .filter(|(_, r)| r.status.is_some())
            .filter_map(|(name, r)| {
                r.leave_life.map(|life| Intent {
                    name: name.clone(),
                    life,
                })
            })
            .collect()
    }

    /// Peers with the given statuses, by gossip address.
    pub(crate) fn peers(&self, wanted: &[MemberStatus]) -> Vec<SocketAddr> {
        self.records
            .iter()
            .filter(|(name, r)| {
                **name != self.local && r.status.is_some_and(|s| wanted.contains(&s))
            })
            .filter_map(|(_, r)| r.ident.as_ref().map(|i| i.addr))
            .collect()
    }

    /// Alive members whose metadata has not arrived within `grace`.
    pub(crate) fn missing_meta(&self, grace: Duration) -> Vec<SocketAddr> {
        let now = Instant::now();
        self.records
            .values()
            .filter(|r| r.meta.is_none() && r.status == Some(MemberStatus::Alive))
            .filter(|r| now.saturating_duration_since(r.changed) >= grace)
            .filter_map(|r| r.ident.as_ref().map(|i| i.addr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(name: &str, port: u16, life: u64) -> NodeIdent {
        NodeIdent {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            life,
        }
    }

    fn meta(name: &str, seq: u64) -> Meta {
        Meta {
            name: name.to_owned(),
            id: format!("id-{name}"),
            tags: BTreeMap::from([("seq".to_owned(), seq.to_string())]),
            epoch: 1,
            seq,
        }
    }

    fn table() -> (Table, broadcast::Receiver<MemberEvent>) {
        let (tx, rx) = broadcast::channel(64);
        (Table::new(ident("me", 1, 1), meta("me", 0), tx), rx)
    }

    fn kinds(rx: &mut broadcast::Receiver<MemberEvent>) -> Vec<&'static str> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.kind())
            .collect()
    }

    #[test]
    fn join_waits_for_metadata() {
        let (mut t, mut rx) = table();
        t.member_up(&ident("a", 2, 5));
        assert!(kinds(&mut rx).is_empty());
        assert_eq!(t.members().len(), 1, "only the local member is listed");
        assert!(t.apply_meta(meta("a", 0)));
        assert!(!t.apply_meta(meta("a", 0)), "same version is not new");
        assert_eq!(kinds(&mut rx), vec!["member-join"]);
        assert!(t.apply_meta(meta("a", 1)));
        assert_eq!(kinds(&mut rx), vec!["member-update"]);
    }

    #[test]
    fn down_without_intent_is_failed_with_intent_left() {
        let (mut t, mut rx) = table();
        t.apply_meta(meta("a", 0));
        t.apply_meta(meta("b", 0));
        t.member_up(&ident("a", 2, 5));
        t.member_up(&ident("b", 3, 5));
        t.apply_intent(&Intent {
            name: "b".into(),
            life: 5,
        });
        t.member_down(&ident("a", 2, 5));
        t.member_down(&ident("b", 3, 5));
        assert_eq!(
            kinds(&mut rx),
            vec![
                "member-join",
                "member-join",
                "member-failed",
                "member-leave"
            ]
        );
        let st: Vec<_> = t
            .members()
            .into_iter()
            .map(|m| (m.name, m.status))
            .collect();
        assert!(st.contains(&("a".into(), MemberStatus::Failed)));
        assert!(st.contains(&("b".into(), MemberStatus::Left)));
    }

    #[test]
    fn late_intent_turns_failed_into_left() {
        let (mut t, mut rx) = table();
        t.apply_meta(meta("a", 0));
        t.member_up(&ident("a", 2, 5));
        t.member_down(&ident("a", 2, 5));
        t.apply_intent(&Intent {
            name: "a".into(),
            life: 5,
        });
        assert_eq!(
            kinds(&mut rx),
            vec!["member-join", "member-failed", "member-leave"]
        );
    }

    #[test]
    fn stale_news_is_ignored_and_new_life_rejoins() {
        let (mut t, mut rx) = table();
        t.apply_meta(meta("a", 0));
        t.member_up(&ident("a", 2, 6));
        t.member_down(&ident("a", 2, 5));
        assert_eq!(kinds(&mut rx), vec!["member-join"]);
        t.member_down(&ident("a", 2, 6));
        t.member_up(&ident("a", 2, 7));
        assert_eq!(kinds(&mut rx), vec!["member-failed", "member-join"]);
    }

    #[test]
    fn sync_does_not_resurrect_reaped_members() {
        let (mut t, mut rx) = table();
        t.apply_meta(meta("a", 0));
        t.member_up(&ident("a", 2, 5));
        t.member_down(&ident("a", 2, 5));
        assert!(
            t.metas().iter().all(|m| m.name != "a"),
            "failed members' tags are not synced"
        );
        t.reap(Duration::ZERO, Duration::ZERO);
        t.note_down(&ident("a", 2, 5));
        assert_eq!(t.members().len(), 1);
        assert_eq!(
            kinds(&mut rx),
            vec!["member-join", "member-failed", "member-reap"]
        );
    }

    #[test]
    fn force_leave_and_reap() -> Result<()> {
        let (mut t, mut rx) = table();
        t.apply_meta(meta("a", 0));
        t.member_up(&ident("a", 2, 5));
        assert!(matches!(
            t.force_leave("a", false),
            Err(Error::MemberNotFailed { .. })
        ));
        assert!(matches!(
            t.force_leave("zz", false),
            Err(Error::UnknownMember(_))
        ));
        t.member_down(&ident("a", 2, 5));
        let intent = t.force_leave("a", false)?;
        assert_eq!(intent.life, 5);
        assert_eq!(
            kinds(&mut rx),
            vec!["member-join", "member-failed", "member-leave"]
        );
        t.reap(Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(kinds(&mut rx), vec!["member-reap"]);
        assert_eq!(t.members().len(), 1);
        Ok(())
    }
}
