//! The driver: one task that owns the foca instance and runs it.
//!
//! It reads SWIM datagrams, fires foca's timers in deadline order, sends
//! what foca asks to send, turns foca's notifications into member-table
//! updates, and serves the public handle's [`Command`]s. Every foca
//! interaction is synchronous and followed by [`Driver::drain`]; packets go
//! out in [`Driver::flush`], the loop's only await besides its `select!`.
//!
//! It owns the leave sequence (broadcast the intent, let it spread, then
//! declare itself down), periodic push/pull, metadata pulls for members
//! whose tags haven't arrived, and reaping. It does not decide statuses:
//! that is the table's job.

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::RngExt as _;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{check_tags, GossipConfig};
use crate::error::{Error, Result};
use crate::event::{EventLog, UserEvent, MAX_BROADCAST_BACKLOG};
use crate::identity::NodeIdent;
use crate::member::MemberStatus;
use crate::packet::Channel;
use crate::stats::Counters;
use crate::table::{lock, Table};
use crate::transport::{self, Transport};
use crate::wire::{Item, ItemHandler, Meta, SyncMsg};

/// The foca instance as this crate configures it.
pub(crate) type Swim = Foca<NodeIdent, PostcardCodec, StdRng, ItemHandler>;

/// Requests to the driver.
pub(crate) enum Command {
    /// Our state, for an outgoing push/pull.
    Snapshot {
        join: bool,
        reply: oneshot::Sender<SyncMsg>,
    },
    /// Merge a peer's state (the reply, if any, once merged).
    Apply {
        remote: SyncMsg,
        reply: Option<oneshot::Sender<()>>,
    },
    /// An incoming push/pull: reply with our state, then merge theirs;
    /// or, for a join whose node name another alive member holds, the
    /// reason it is refused (nothing is merged).
    Exchange {
        remote: SyncMsg,
        reply: oneshot::Sender<std::result::Result<SyncMsg, String>>,
    },
    /// Replace this node's tags and gossip them.
    SetTags {
        tags: std::collections::BTreeMap<String, String>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Leave gracefully; replies once the leave has been sent.
    Leave {
        timeout: Duration,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Mark a failed member left (and forget it when `prune`).
    ForceLeave {
        name: String,
        prune: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Fire a user event: stamp and record it here, then gossip it.
    FireEvent {
        event: UserEvent,
        reply: oneshot::Sender<Result<UserEvent>>,
    },
}

/// A foca timer waiting for its deadline.
struct Scheduled {
    at: Instant,
    /// Tie-breaker: insertion order.
    seq: u64,
    timer: Timer<NodeIdent>,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // foca's own order breaks ties at one deadline (an indirect probe
        // must run before the next probe starts).
        self.at
            .cmp(&other.at)
            .then_with(|| self.timer.cmp(&other.timer))
            .then_with(|| self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

/// A leave in progress.
struct Leaving {
    /// Give up waiting for the intent to spread at this point.
    intent_deadline: Instant,
    reply: oneshot::Sender<Result<()>>,
}

/// Everything the driver task owns.
pub(crate) struct Driver {
    cfg: GossipConfig,
    foca: Swim,
    udp: UdpSocket,
    transport: Arc<Transport>,
    table: Arc<Mutex<Table>>,
    /// User events: fired ones are stamped and recorded here.
    events: Arc<Mutex<EventLog>>,
    commands: mpsc::Receiver<Command>,
    /// A sender to our own queue, for push/pull tasks to report back.
    loopback: mpsc::Sender<Command>,
    shutdown: watch::Receiver<bool>,
    runtime: AccumulatingRuntime<NodeIdent>,
    timers: BinaryHeap<Reverse<Scheduled>>,
    timer_seq: u64,
    /// Datagrams foca produced, sent by `flush`.
    outbox: Vec<(SocketAddr, Bytes)>,
    /// Pool size foca's config was last computed for.
    sized_for: usize,
    /// The last metadata pull per peer (rate limit).
    meta_pulls: HashMap<SocketAddr, Instant>,
    leaving: Option<Leaving>,
    /// Set once the leave was sent: SWIM input is ignored from then on.
    left: bool,
    /// Picks push/pull partners.
    rng: StdRng,
}

/// What the driver is started with.
pub(crate) struct DriverParts {
    pub(crate) cfg: GossipConfig,
    pub(crate) foca: Swim,
    pub(crate) udp: UdpSocket,
    pub(crate) transport: Arc<Transport>,
    pub(crate) table: Arc<Mutex<Table>>,
    pub(crate) events: Arc<Mutex<EventLog>>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) loopback: mpsc::Sender<Command>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Driver {
    pub(crate) fn new(parts: DriverParts) -> Driver {
        let DriverParts {
            cfg,
            foca,
            udp,
            transport,
            table,
            events,
            commands,
            loopback,
            shutdown,
        } = parts;
        Driver {
            cfg,
            foca,
            udp,
            transport,
            table,
            events,
            commands,
            loopback,
            shutdown,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            outbox: Vec::new(),
            sized_for: 1,
            meta_pulls: HashMap::new(),
            leaving: None,
            left: false,
            rng: rand::make_rng(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut buf = vec![0u8; 65_536];
        let tick = self.cfg.probe_interval.min(Duration::from_secs(1));
        let mut housekeeping = tokio::time::interval(tick);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pp = self.cfg.push_pull_interval;
        let mut push_pull = tokio::time::interval_at(Instant::now() + pp, pp);
        push_pull.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse(s)| s.at);
            let leave_at = self.leaving.as_ref().map(|l| l.intent_deadline);
            tokio::select! {
                _ = self.shutdown.changed() => break,
                Some(cmd) = self.commands.recv() => self.command(cmd),
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.datagram(buf.get(..len).unwrap_or_default(), from),
                    Err(e) => tracing::debug!(error = %e, "gossip: UDP receive failed"),
                },
                () = sleep_until(next_timer) => self.fire_timers(),
                () = sleep_until(leave_at) => {}
                _ = housekeeping.tick() => self.housekeeping(),
                _ = push_pull.tick() => self.push_pull(),
            }
            self.flush().await;
            if let Some(reply) = self.advance_leave() {
                self.flush().await;
                let _ = reply.send(Ok(()));
            }
        }
        tracing::debug!("gossip: driver stopped");
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        Counters::bump(&self.transport.counters.udp_received);
        let Ok(plain) = self.transport.open(Channel::Swim, data, from) else {
            return;
        };
        if self.left {
            return;
        }
        if let Err(e) = self.foca.handle_data(&plain, &mut self.runtime) {
            tracing::trace!(%from, error = %e, "gossip: SWIM packet not applied");
        }
        self.drain();
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            if self.left {
                continue;
            }
            if let Err(e) = self.foca.handle_timer(due.timer, &mut self.runtime) {
                tracing::debug!(error = %e, "gossip: timer not applied");
            }
            self.drain();
        }
    }

    /// Moves what foca produced into the outbox, the timer heap and the
    /// member table; resizes foca's timing to the pool.
    pub(crate) fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.outbox.push((to.addr, data));
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.push(Reverse(Scheduled {
                at: now + after,
                seq: self.timer_seq,
                timer,
            }));
        }
        {
            let mut table = lock(&self.table);
            while let Some(note) = self.runtime.to_notify() {
                match note {
                    OwnedNotification::MemberUp(id) => table.member_up(&id),
                    OwnedNotification::MemberDown(id) => table.member_down(&id),
                    OwnedNotification::Rename(old, new) => {
                        if old.name != new.name {
                            table.member_down(&old);
                        }
                        if self.foca.iter_members().any(|m| m.id() == &new) {
                            table.member_up(&new);
                        }
                    }
                    OwnedNotification::Rejoin(me) => {
                        tracing::info!(identity = ?me, "gossip: declared down by the pool, rejoined");
                        table.set_local_ident(me);
                    }
                    OwnedNotification::Idle => tracing::debug!("gossip: no other alive member"),
                    OwnedNotification::Active => tracing::debug!("gossip: connected to the pool"),
                    OwnedNotification::Defunct => {
                        tracing::debug!("gossip: this node is down for the pool")
                    }
                }
            }
        }
        let n = self.foca.num_members() + 1;
        if n != self.sized_for {
            self.sized_for = n;
            if let Err(e) = self.foca.set_config(self.cfg.foca_config(n)) {
                tracing::warn!(error = %e, "gossip: could not resize SWIM timing");
            }
        }
    }

    /// Sends the outbox.
    async fn flush(&mut self) {
        for (to, data) in std::mem::take(&mut self.outbox) {
            match self.transport.seal(Channel::Swim, &data) {
                Ok(frame) => match self.udp.send_to(&frame, to).await {
                    Ok(_) => Counters::bump(&self.transport.counters.udp_sent),
                    Err(e) => tracing::debug!(%to, error = %e, "gossip: UDP send failed"),
                },
                Err(e) => tracing::warn!(error = %e, "gossip: could not seal a packet"),
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Snapshot { join, reply } => {
                let _ = reply.send(self.snapshot(join));
            }
            Command::Apply { remote, reply } => {
                self.apply_remote(remote);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Exchange { remote, reply } => {
                let conflict = remote
                    .join
                    .then(|| lock(&self.table).name_conflict(&remote))
                    .flatten();
                if let Some(reason) = conflict {
                    tracing::warn!(name = %remote.from.name, addr = %remote.from.addr, "gossip: refused a join: {reason}");
                    let _ = reply.send(Err(reason));
                    return;
                }
                let _ = reply.send(Ok(self.snapshot(false)));
                self.apply_remote(remote);
            }
            Command::SetTags { tags, reply } => {
                let _ = reply.send(self.set_tags(tags));
            }
            Command::Leave { timeout, reply } => self.begin_leave(timeout, reply),
            Command::ForceLeave { name, prune, reply } => {
                let result = lock(&self.table).force_leave(&name, prune);
                let _ = reply.send(result.map(|intent| self.broadcast(&Item::Leave(intent))));
            }
            Command::FireEvent { event, reply } => {
                let _ = reply.send(self.fire_event(event));
            }
        }
    }

    /// Adds an item to foca's broadcast queue and pushes it out now.
    fn broadcast(&mut self, item: &Item) {
        let added = item.encode().and_then(|data| {
            self.foca
                .add_broadcast(&data)
                .map_err(|e| Error::Codec(format!("broadcast: {e}")))
        });
        if let Err(e) = added {
            tracing::warn!(error = %e, "gossip: could not queue a broadcast");
        }
        if !self.left {
            if let Err(e) = self.foca.broadcast(&mut self.runtime) {
                tracing::debug!(error = %e, "gossip: broadcast failed");
            }
        }
        self.drain();
    }

    /// Stamps, records and gossips a user event (alone: no one to tell, and
    /// later joiners do not get it, as in Consul). Refused on a full queue.
    fn fire_event(&mut self, event: UserEvent) -> Result<UserEvent> {
        if self.left {
            return Err(Error::Stopped);
        }
        let queued = self.foca.custom_broadcast_backlog();
        if queued >= MAX_BROADCAST_BACKLOG {
            return Err(Error::UserEventBacklog { queued });
        }
        let event = lock(&self.events).fire(event);
        if self.foca.num_members() > 0 {
            self.broadcast(&Item::Event(event.clone()));
        }
        Ok(event)
    }

    fn set_tags(&mut self, tags: std::collections::BTreeMap<String, String>) -> Result<()> {
        if self.left {
            return Err(Error::Stopped);
        }
        check_tags(&tags)?;
        let meta = {
            let mut table = lock(&self.table);
            let Some(old) = table.local_meta() else {
                return Err(Error::Stopped);
            };
            let meta = Meta {
                tags,
                seq: old.seq + 1,
                ..old.clone()
            };
            table.set_local_meta(meta.clone());
            meta
        };
        self.broadcast(&Item::Meta(meta));
        Ok(())
    }

    /// Our whole view, for a push/pull.
    fn snapshot(&self, join: bool) -> SyncMsg {
        let table = lock(&self.table);
        let me = table
            .local_ident()
            .cloned()
            .unwrap_or_else(|| self.foca.identity().clone());
        let mut members: Vec<_> = self.foca.iter_membership_state().cloned().collect();
        let my_state = if self.left {
            foca::State::Down
        } else {
            foca::State::Alive
        };
        members.push(foca::Member::new(me.clone(), 0, my_state));
        SyncMsg {
            from: me,
            join,
            members,
            metas: table.metas(),
            intents: table.intents(),
        }
    }

    /// Merges a peer's view; re-gossips what was new to us.
    fn apply_remote(&mut self, remote: SyncMsg) {
        let SyncMsg {
            from,
            join,
            members,
            metas,
            intents,
        } = remote;
        tracing::debug!(peer = ?from, join, members = members.len(), "gossip: merging remote state");
        let mut fresh = Vec::new();
        {
            let mut table = lock(&self.table);
            for intent in intents {
                if table.apply_intent(&intent) {
                    fresh.push(Item::Leave(intent));
                }
            }
            for meta in metas {
                if table.apply_meta(meta.clone()) {
                    fresh.push(Item::Meta(meta));
                }
            }
        }
        let down: Vec<NodeIdent> = members
            .iter()
            .filter(|m| m.state() == foca::State::Down)
            .map(|m| m.id().clone())
            .collect();
        if !self.left {
            if let Err(e) = self
                .foca
                .apply_many(members.into_iter(), true, &mut self.runtime)
            {
                tracing::debug!(error = %e, "gossip: remote state not fully applied");
            }
            self.drain();
        }
        {
            let mut table = lock(&self.table);
            for id in &down {
                table.note_down(id);
            }
        }
        for item in &fresh {
            self.broadcast(item);
        }
    }

    fn begin_leave(&mut self, timeout: Duration, reply: oneshot::Sender<Result<()>>) {
        if self.left || self.leaving.is_some() {
            let _ = reply.send(Ok(()));
            return;
        }
        tracing::info!("gossip: leaving the pool");
        let intent = lock(&self.table).set_local_status(MemberStatus::Leaving);
        if let Some(intent) = intent {
            self.broadcast(&Item::Leave(intent));
        }
        self.leaving = Some(Leaving {
            intent_deadline: Instant::now() + timeout / 2,
            reply,
        });
    }

    /// Once the leave intent has spread (foca's broadcast queue is empty)
    /// or the time for it is up, declares this node down to the pool.
    /// Returns the reply to send after the final flush.
    fn advance_leave(&mut self) -> Option<oneshot::Sender<Result<()>>> {
        let leaving = self.leaving.as_ref()?;
        let spread = self.foca.custom_broadcast_backlog() == 0 || self.foca.num_members() == 0;
        if !spread && Instant::now() < leaving.intent_deadline {
            return None;
        }
        let leaving = self.leaving.take()?;
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::warn!(error = %e, "gossip: leave not sent");
        }
        self.drain();
        self.left = true;
        lock(&self.table).set_local_status(MemberStatus::Left);
        Some(leaving.reply)
    }

    fn housekeeping(&mut self) {
        let missing = {
            let mut table = lock(&self.table);
            table.reap(self.cfg.reconnect_timeout, self.cfg.tombstone_timeout);
            table.missing_meta(self.cfg.probe_interval * 2)
        };
        if self.left {
            return;
        }
        let now = Instant::now();
        let retry = self.cfg.probe_interval * 5;
        self.meta_pulls
            .retain(|_, at| now.saturating_duration_since(*at) < retry);
        for addr in missing {
            if let Entry::Vacant(slot) = self.meta_pulls.entry(addr) {
                slot.insert(now);
                tracing::debug!(%addr, "gossip: pulling state for a member without tags");
                self.spawn_exchange(addr);
            }
        }
    }

    /// Periodic push/pull with a random alive member; with none alive, a
    /// random failed one (reconnect after a partition).
    fn push_pull(&mut self) {
        if self.left {
            return;
        }
        let peers = {
            let table = lock(&self.table);
            let alive = table.peers(&[MemberStatus::Alive, MemberStatus::Leaving]);
            if alive.is_empty() {
                table.peers(&[MemberStatus::Failed])
            } else {
                alive
            }
        };
        if peers.is_empty() {
            return;
        }
        let pick = self.rng.random_range(0..peers.len());
        if let Some(&addr) = peers.get(pick) {
            self.spawn_exchange(addr);
        }
    }

    fn spawn_exchange(&self, addr: SocketAddr) {
        let local = self.snapshot(false);
        let transport = Arc::clone(&self.transport);
        let loopback = self.loopback.clone();
        let timeout = self.cfg.tcp_timeout;
        tokio::spawn(async move {
            match transport::exchange(&transport, addr, &local, timeout).await {
                Ok(remote) => {
                    let _ = loopback
                        .send(Command::Apply {
                            remote,
                            reply: None,
                        })
                        .await;
                }
                Err(e) => tracing::debug!(%addr, error = %e, "gossip: push/pull failed"),
            }
        });
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
