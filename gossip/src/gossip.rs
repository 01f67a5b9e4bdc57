//! [`Gossip`], the public handle: start, join, leave, shut down, read the
//! member list, subscribe to events, change tags, manage the keyring, fire
//! and read user events.
//!
//! The handle talks to the driver task through commands and reads the
//! member table and counters directly. Keyring operations apply to this
//! node or, with [`Gossip::keyring_all`], to every alive member over the
//! encrypted TCP channel (Consul uses serf queries); each member persists
//! its keyring to `keyring_path`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use foca::{Foca, PostcardCodec};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{check_tags, GossipConfig};
use crate::driver::{Command, Driver, DriverParts};
use crate::error::{Error, Result};
use crate::event::{EventLog, UserEvent};
use crate::identity::{now_millis, NodeIdent};
use crate::keyops::{self, KeyAnswer, KeyOp};
use crate::keyring::Keyring;
use crate::member::{Member, MemberEvent};
use crate::stats::GossipStats;
use crate::table::{lock, Table};
use crate::transport::{self, Transport};
use crate::wire::{Item, ItemHandler, Meta};

/// Events buffered per subscriber before the slowest one lags.
const EVENT_BUFFER: usize = 1024;

/// A running member of a gossip pool. Dropping it stops it like
/// [`Gossip::shutdown`] (without waiting).
pub struct Gossip {
    /// Requests to the driver.
    commands: mpsc::Sender<Command>,
    /// Flipped to stop every task.
    shutdown: watch::Sender<bool>,
    /// The driver and the TCP accept loop, joined by `shutdown`.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    table: Arc<Mutex<Table>>,
    /// User events seen here (fired or received).
    user_events: Arc<Mutex<EventLog>>,
    transport: Arc<Transport>,
    events: broadcast::Sender<MemberEvent>,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    name: String,
    /// Bound for a push/pull in `join`.
    tcp_timeout: Duration,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Binds the UDP and TCP sockets and starts gossiping (alone until
    /// [`Gossip::join`]). Must run inside a tokio runtime.
    pub async fn start(cfg: GossipConfig) -> Result<Gossip> {
        cfg.validate()?;
        check_tags(&cfg.tags)?;
        let keyring = resolve_keyring(&cfg)?;
        let (udp, tcp) = transport::bind(cfg.bind).await?;
        let local_addr = udp
            .local_addr()
            .map_err(|e| Error::io("UDP local address", e))?;
        let advertise = cfg.advertise.unwrap_or(local_addr);
        let life = now_millis();
        let ident = NodeIdent {
            name: cfg.node_name.clone(),
            addr: advertise,
            life,
        };
        let meta = Meta {
            name: cfg.node_name.clone(),
            id: cfg.node_id.clone(),
            tags: cfg.tags.clone(),
            epoch: life,
            seq: 0,
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let table = Arc::new(Mutex::new(Table::new(
            ident.clone(),
            meta.clone(),
            events.clone(),
        )));
        let transport = Arc::new(Transport {
            keyring: std::sync::RwLock::new(keyring),
            verify_incoming: cfg.encrypt_verify_incoming,
            verify_outgoing: cfg.encrypt_verify_outgoing,
            counters: Default::default(),
            keyring_path: cfg.keyring_path.clone(),
            node: cfg.node_name.clone(),
        });
        let user_events = Arc::new(Mutex::new(EventLog::new()));
        let handler = ItemHandler {
            table: Arc::clone(&table),
            events: Arc::clone(&user_events),
        };
        let mut foca = Foca::with_custom_broadcast(
            ident,
            cfg.foca_config(1),
            rand::make_rng(),
            PostcardCodec,
            handler,
        );
        // Our own metadata waits in foca's queue until there is someone to
        // send it to.
        foca.add_broadcast(&Item::Meta(meta).encode()?)
            .map_err(|e| Error::Codec(format!("queue own tags: {e}")))?;
        let (commands, command_rx) = mpsc::channel(256);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept = tokio::spawn(transport::accept_loop(
            tcp,
            Arc::clone(&transport),
            commands.clone(),
            shutdown_rx.clone(),
            cfg.tcp_timeout,
        ));
        let name = cfg.node_name.clone();
        let tcp_timeout = cfg.tcp_timeout;
        let driver = Driver::new(DriverParts {
            cfg,
            foca,
            udp,
            transport: Arc::clone(&transport),
            table: Arc::clone(&table),
            events: Arc::clone(&user_events),
            commands: command_rx,
            loopback: commands.clone(),
            shutdown: shutdown_rx,
        });
        let driver = tokio::spawn(driver.run());
        tracing::info!(node = %name, addr = %local_addr, %advertise, "gossip: listening");
        Ok(Gossip {
            commands,
            shutdown,
            tasks: Mutex::new(vec![driver, accept]),
            table,
            user_events,
            transport,
            events,
            local_addr,
            advertise,
            name,
            tcp_timeout,
        })
    }

    /// The address the sockets are bound to (the real port when the config
    /// said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address other members reach this one at.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Joins the pool through the given members: a full state exchange
    /// over TCP with each, one after the other. Returns how many answered;
    /// an error when none did, or [`Error::JoinRefused`] at once when one
    /// refused this node for good (its name is taken). Retrying is the
    /// caller's business.
    pub async fn join(&self, addrs: &[SocketAddr]) -> Result<usize> {
        let mut joined = 0;
        let mut failures = Vec::new();
        for &addr in addrs {
            let local = self
                .request(|reply| Command::Snapshot { join: true, reply })
                .await?;
            match transport::exchange(&self.transport, addr, &local, self.tcp_timeout).await {
                Ok(remote) => {
                    self.request(|reply| Command::Apply {
                        remote,
                        reply: Some(reply),
                    })
                    .await?;
                    joined += 1;
                }
                Err(e @ Error::JoinRefused { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "gossip: join attempt failed");
                    failures.push((addr, e.to_string()));
                }
            }
        }
        if joined == 0 {
            return Err(Error::JoinFailed(failures));
        }
        tracing::info!(joined, "gossip: joined the pool");
        Ok(joined)
    }

    /// Leaves gracefully: announces the leave, waits (up to half of
    /// `timeout`) for the announcement to spread, then tells the pool this
    /// node is down. Others then list it as left, not failed. Gossip stops
    /// participating afterwards; call [`Gossip::shutdown`] to close the
    /// sockets. Rejoining needs a new `Gossip`.
    pub async fn leave(&self, timeout: Duration) -> Result<()> {
        let reply = self.request(|reply| Command::Leave { timeout, reply });
        tokio::time::timeout(timeout + Duration::from_secs(1), reply)
            .await
            .map_err(|_| Error::Stopped)?
            .and_then(|r| r)
    }

    /// Stops every task and closes the sockets, without telling anyone:
    /// to the pool this looks like a crash, and it will mark this node
    /// failed. Call [`Gossip::leave`] first for a graceful exit.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Every known member, this node included, sorted by name. Failed and
    /// left members stay listed until reaped.
    pub fn members(&self) -> Vec<Member> {
        lock(&self.table).members()
    }

    /// Member events from now on. A subscriber that falls more than 1024
    /// events behind gets `RecvError::Lagged` and should re-read
    /// [`Gossip::members`].
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// Replaces this node's tags and gossips them.
    pub async fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<()> {
        self.request(|reply| Command::SetTags { tags, reply })
            .await?
    }

    /// Marks a failed member left, here and (by broadcast) on the rest of
    /// the pool; with `prune`, also forgets it here at once.
    pub async fn force_leave(&self, name: &str, prune: bool) -> Result<()> {
        self.request(|reply| Command::ForceLeave {
            name: name.to_owned(),
            prune,
            reply,
        })
        .await?
    }

    /// Fires a user event into the pool: it gets a fresh ID, the version
    /// and this node's Lamport time (whatever `event` held there), is
    /// recorded here (so [`Gossip::user_events`] and subscribers see it at
    /// once) and is gossiped to every member. Returns it as fired. Refused
    /// without a name, above [`crate::event::USER_EVENT_SIZE_LIMIT`], or
    /// once this node has left.
    pub async fn fire_event(&self, event: UserEvent) -> Result<UserEvent> {
        event.check()?;
        self.request(|reply| Command::FireEvent { event, reply })
            .await?
    }

    /// User events from now on, each once: the ones received from the
    /// pool and the ones fired here. A subscriber that falls more than 256
    /// events behind gets `RecvError::Lagged` and should re-read
    /// [`Gossip::user_events`].
    pub fn subscribe_events(&self) -> broadcast::Receiver<UserEvent> {
        lock(&self.user_events).subscribe()
    }

    /// The last [`crate::event::RECENT_USER_EVENTS`] user events seen here,
    /// oldest first, whatever their filters.
    pub fn user_events(&self) -> Vec<UserEvent> {
        lock(&self.user_events).recent()
    }

    /// The user-event Lamport clock: the time the next event fired here
    /// gets.
    pub fn event_clock(&self) -> u64 {
        lock(&self.user_events).clock()
    }

    /// Transport counters.
    pub fn stats(&self) -> GossipStats {
        self.transport.counters.snapshot()
    }

    /// Installed keys in base64, primary first; empty without encryption.
    pub fn list_keys(&self) -> Vec<String> {
        self.transport
            .keyring()
            .as_ref()
            .map(Keyring::keys)
            .unwrap_or_default()
    }

    /// Installs a key here only (decrypt-only until [`Gossip::use_key`]).
    pub fn install_key(&self, key: &str) -> Result<()> {
        keyops::apply(&self.transport, &KeyOp::Install(key.to_string())).map(|_| ())
    }

    /// Makes an installed key the one that encrypts, here only.
    pub fn use_key(&self, key: &str) -> Result<()> {
        keyops::apply(&self.transport, &KeyOp::Use(key.to_string())).map(|_| ())
    }

    /// Removes a key here only; the primary can't be removed.
    pub fn remove_key(&self, key: &str) -> Result<()> {
        keyops::apply(&self.transport, &KeyOp::Remove(key.to_string())).map(|_| ())
    }

    /// Apply a keyring operation here and on every alive member; one
    /// answer per member, this one first.
    pub async fn keyring_all(&self, op: KeyOp) -> Vec<KeyAnswer> {
        let mut answers = vec![keyops::answer(&self.transport, &op)];
        if answers.first().is_some_and(|a| a.result.is_err()) {
            return answers;
        }
        let own = self.name().to_string();
        let mut asks = tokio::task::JoinSet::new();
        for m in self.members() {
            if m.name == own || m.status != crate::member::MemberStatus::Alive {
                continue;
            }
            let (transport, op) = (Arc::clone(&self.transport), op.clone());
            let timeout = self.tcp_timeout;
            asks.spawn(async move { keyops::ask(&transport, m.name, m.addr, &op, timeout).await });
        }
        while let Some(done) = asks.join_next().await {
            if let Ok(answer) = done {
                answers.push(answer);
            }
        }
        answers
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The keyring to start with: the file at `keyring_path` if it exists
/// (Consul ignores `encrypt` then), else `cfg.keyring`, which is then
/// written to the file.
fn resolve_keyring(cfg: &GossipConfig) -> Result<Option<Keyring>> {
    let Some(path) = &cfg.keyring_path else {
        return Ok(cfg.keyring.clone());
    };
    if path.exists() {
        let ring = Keyring::load(path)?;
        if cfg
            .keyring
            .as_ref()
            .is_some_and(|given| !ring.keys().contains(&given.primary()))
        {
            tracing::warn!(path = %path.display(), "gossip: a keyring file exists, the configured encrypt key is ignored");
        }
        return Ok(Some(ring));
    }
    if let Some(ring) = &cfg.keyring {
        ring.save(path)?;
    }
    Ok(cfg.keyring.clone())
}
