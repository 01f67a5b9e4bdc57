//! The `Engine` handle: what the API, DNS, agent and CLI layers hold:
//! opening (recovery, raft, the background tasks), proposing with
//! forwarding to the leader, and the engine's configuration. Its reads are
//! in `queries.rs`, its consistency gates and lease in `lease.rs`, the
//! batching proposer task in `propose.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use muster_log::LogStore;
use openraft::{Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

use crate::command::{Command, Response};
use crate::coordination::{session_ttl_loop, SessionTimers};
use crate::error::{Error, Result};
use crate::propose::{proposer, Proposal};
use crate::raft::{RaftNode, TypeConfig};
use crate::rpc::client::{AckTimes, CallError, HttpNetwork, RpcClient};
use crate::rpc::{ProposeResult, RpcFailure, PATH_PROPOSE};
use crate::sm::{Shared, StateMachine};
use crate::snapshot;
use crate::views::Views;
use crate::watch::Watch;

/// How to open an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory for the log, views and snapshots.
    pub data_dir: PathBuf,
    /// This agent's node name.
    pub node_name: String,
    /// This server's raft id (persisted by the caller).
    pub node_id: u64,
    /// `ip:port` of this server's RPC listener, as peers should reach it.
    pub rpc_addr: String,
    /// Initialise a one-member cluster if the log is empty.
    pub bootstrap: bool,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout lower bound (upper bound is twice this).
    pub election_timeout: Duration,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot (for slow followers).
    pub trailing_logs: u64,
    /// How long a write waits for a leader before failing with `No cluster
    /// leader` (Consul's `rpc_hold_timeout`, default [`RPC_HOLD_TIMEOUT`]).
    pub rpc_hold_timeout: Duration,
}

impl EngineConfig {
    /// Defaults for a single server in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            node_name: node_name.into(),
            node_id: 1,
            rpc_addr: "127.0.0.1:8300".to_string(),
            bootstrap: true,
            heartbeat: Duration::from_millis(250),
            election_timeout: Duration::from_millis(1000),
            snapshot_threshold: 16_384,
            trailing_logs: 10_240,
            rpc_hold_timeout: RPC_HOLD_TIMEOUT,
        }
    }
}

/// The result of a proposed command once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The log index of the entry (its `ModifyIndex`).
    pub index: u64,
    /// What the state machine answered.
    pub response: Response,
}

/// What the raft layer knows about the cluster, for the read headers and
/// `/v1/status/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// RPC address of the current leader, if known.
    pub leader: Option<String>,
    /// True if this server is the leader.
    pub is_leader: bool,
    /// RPC addresses of the raft voters.
    pub peers: Vec<String>,
    /// Milliseconds since this server last heard from the leader (0 on the
    /// leader).
    pub last_contact_ms: u64,
    /// Last log index applied to the views.
    pub applied_index: u64,
    /// The raft term this server is in.
    pub term: u64,
}

/// How long a write waits for a leader to be elected before failing with
/// `No cluster leader` (Consul's `rpc_hold_timeout`).
pub const RPC_HOLD_TIMEOUT: Duration = Duration::from_secs(7);

/// A handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cfg: EngineConfig,
    /// Queue of the proposer task.
    proposals: mpsc::Sender<Proposal>,
    /// The leader's session TTL timers.
    pub(crate) session_timers: SessionTimers,
    /// The pooled RPC client (raft's network and forwarding).
    pub(crate) rpc: RpcClient,
    /// When a leader last reached this server (append or snapshot).
    pub(crate) leader_contact: std::sync::Mutex<Option<std::time::Instant>>,
    /// When each peer last acknowledged this server's appends.
    pub(crate) acks: Arc<AckTimes>,
    /// Decoded `health_service` results by name, with the per-service
    /// index they were read at (see `Engine::health_service_shared`).
    pub(crate) health_cache: crate::queries::HealthCache,
    /// The UI's per-service and per-node summaries.
    pub(crate) ui_cache: crate::ui::UiCache,
}

/// Where a proposal goes.
pub(crate) enum Route {
    /// This server is the leader.
    Local,
    /// Forward to the leader at this RPC address.
    Remote(String),
    /// No leader is known (an election is running).
    Unknown,
}

/// How long a forwarded call may take: the leader may hold a proposal for
/// up to [`RPC_HOLD_TIMEOUT`] itself.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.inner.cfg.node_name)
            .finish_non_exhaustive()
    }
}

pub(crate) fn raft_err(e: impl std::fmt::Display) -> Error {
    Error::Raft(e.to_string())
}

/// Make sure the views are not behind the snapshot (the log may be purged up
/// to it) and not half-installed; reinstall from the newest snapshot if so.
fn recover_views(views: &Views, snap_dir: &std::path::Path) -> Result<()> {
    let interrupted = views.install_interrupted()?;
    let Some(path) = snapshot::latest(snap_dir)? else {
        if interrupted {
            // A restore was cut off and there is no snapshot to start from:
            // the log is whole (nothing was ever purged), so start from
            // nothing and replay it all.
            tracing::info!("rebuilding the views from the whole log (an interrupted restore)");
            views.clear()?;
        }
        return Ok(());
    };
    let (applied, _) = views.applied_state()?;
    let meta = snapshot::read_meta(&path)?;
    let behind = meta.last_log_id.map(|l| l.index) > applied.map(|l| l.index);
    if interrupted || behind {
        tracing::info!(
            snapshot = %path.display(),
            interrupted,
            views_at = applied.map(|l| l.index).unwrap_or(0),
            "restoring views from snapshot"
        );
        let mut file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        snapshot::install(views, &mut file)?;
    }
    Ok(())
}

/// How often replay at open logs its progress.
const REPLAY_PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl Engine {
    /// Open (or create) the data directory, recover the log and views, start
    /// raft and, with `bootstrap`, initialise a one-member cluster.
    pub async fn open(cfg: EngineConfig) -> Result<Engine> {
        let started = std::time::Instant::now();
        let raft_dir = cfg.data_dir.join("raft");
        let views_dir = cfg.data_dir.join("views");
        let snap_dir = cfg.data_dir.join("snapshots");
        for dir in [&raft_dir, &views_dir, &snap_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        // Opening the views (and reinstalling a snapshot into them) is
        // long file I/O: off the async runtime.
        let views = {
            let snap_dir = snap_dir.clone();
            tokio::task::spawn_blocking(move || -> Result<Views> {
                let views = Views::open(&views_dir)?;
                recover_views(&views, &snap_dir)?;
                Ok(views)
            })
            .await
            .map_err(|e| Error::Raft(format!("opening the views: {e}")))??
        };
        let (applied, _) = views.applied_state()?;
        let views_index_at_open = views.index_of(applied.map(|l| l.index).unwrap_or(0));
        tracing::info!(
            applied = applied.map(|l| l.index).unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "views open"
        );
        let seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            views,
            watch: Watch::new(),
            snap_dir,
            applied: AtomicU64::new(applied.map(|l| l.index).unwrap_or(0)),
            seq: AtomicU64::new(seq << 16),
            commands_since_snapshot: AtomicU64::new(0),
            lock_delays: Default::default(),
            feed: crate::feed::Feed::new(views_index_at_open, crate::feed::FEED_BUDGET),
        });
        let log_store = LogStore::<TypeConfig>::open(&raft_dir)?;
        tracing::info!(
            last_log = log_store.last_index().unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log store open"
        );
        let heartbeat = u64::try_from(cfg.heartbeat.as_millis())
            .unwrap_or(250)
            .max(10);
        let election = u64::try_from(cfg.election_timeout.as_millis())
            .unwrap_or(1000)
            .max(heartbeat * 2);
        let config = openraft::Config {
            cluster_name: "muster".to_string(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: cfg.trailing_logs,
            // Snapshots travel in 1 MiB chunks: never whole in memory.
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        }
        .validate()
        .map_err(raft_err)?;
        let rpc = RpcClient::new();
        let acks = Arc::new(AckTimes::default());
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(config),
            HttpNetwork::new(rpc.clone(), acks.clone()),
            log_store,
            StateMachine::new(shared.clone()),
        )
        .await
        .map_err(raft_err)?;
        if cfg.bootstrap && !raft.is_initialized().await.map_err(raft_err)? {
            let me = RaftNode {
                name: cfg.node_name.clone(),
                addr: cfg.rpc_addr.clone(),
            };
            tracing::info!(node = %me, "bootstrapping a new one-server cluster");
            raft.initialize(BTreeMap::from([(cfg.node_id, me)]))
                .await
                .map_err(raft_err)?;
        }
        let (proposals, queue) = mpsc::channel(4096);
        tokio::spawn(proposer(raft.clone(), queue, cfg.rpc_hold_timeout));
        let engine = Engine {
            inner: Arc::new(Inner {
                raft,
                shared,
                cfg,
                proposals,
                session_timers: SessionTimers::default(),
                rpc,
                leader_contact: std::sync::Mutex::new(None),
                acks,
                health_cache: Default::default(),
                ui_cache: Default::default(),
            }),
        };
        tokio::spawn(session_ttl_loop(Arc::downgrade(&engine.inner)));
        tokio::spawn(snapshot_trigger(Arc::downgrade(&engine.inner)));
        tokio::spawn(crate::cluster::leadership_log(engine.inner.raft.metrics()));
        engine.wait_for_solo_leadership().await?;
        let m = engine.inner.raft.metrics().borrow().clone();
        tracing::info!(
            applied = m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log = m.last_log_index.unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "engine open"
        );
        Ok(engine)
    }

    /// In a cluster whose only voter is this server, wait until it has
    /// elected itself and applied everything committed (replay), so the
    /// first request after open sees every acknowledged write.
    async fn wait_for_solo_leadership(&self) -> Result<()> {
        let raft = &self.inner.raft;
        let id = self.inner.cfg.node_id;
        if !raft.is_initialized().await.map_err(raft_err)? {
            return Ok(());
        }
        // Metrics start empty and catch up with the stored membership
        // shortly after the core starts.
        let m = raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .next()
                        .is_some()
                },
                "membership loaded",
            )
            .await
            .map_err(raft_err)?;
        let solo = {
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            voters == [id]
        };
        if !solo {
            return Ok(());
        }
        let timeout = self.inner.cfg.election_timeout * 20 + Duration::from_secs(10);
        raft.wait(Some(timeout))
            .state(ServerState::Leader, "self-elect")
            .await
            .map_err(raft_err)?;
        // The leader's first entry (a blank) commits everything before it.
        let m = raft.metrics().borrow().clone();
        let Some(last) = m.last_log_index else {
            return Ok(());
        };
        let from = m.last_applied.map(|l| l.index).unwrap_or(0);
        let (mut seen, mut stalled_since) = (from, tokio::time::Instant::now());
        // Replay in steps of a second, logging progress at each; give up
        // only when nothing is applied for `timeout`.
        loop {
            let step = raft
                .wait(Some(REPLAY_PROGRESS_EVERY))
                .applied_index_at_least(Some(last), "replay")
                .await;
            let applied = raft
                .metrics()
                .borrow()
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0);
            if applied > seen {
                (seen, stalled_since) = (applied, tokio::time::Instant::now());
            }
            match step {
                Ok(_) => return Ok(()),
                Err(_) if stalled_since.elapsed() < timeout => tracing::info!(
                    applied,
                    last,
                    done = applied.saturating_sub(from),
                    total = last.saturating_sub(from),
                    "replaying log"
                ),
                Err(e) => return Err(raft_err(e)),
            }
        }
    }

    /// Propose a command; resolves once it is committed and applied.
    ///
    /// Concurrent proposals are batched into one log entry (one fsync) by
    /// the proposer task. During an election (no leader known) a write is
    /// held for up to [`RPC_HOLD_TIMEOUT`] waiting for one, as Consul holds
    /// RPCs.
    pub async fn propose(&self, cmd: Command) -> Result<Applied> {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.rpc_hold_timeout;
        loop {
            match self.route() {
                Route::Local => match self.propose_local(cmd.clone()).await {
                    // Leadership moved while it was proposed; it was not
                    // applied: route it again (to the new leader).
                    Err(Error::LeaderChanged) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(Error::LeaderChanged) => return Err(Error::NoLeader),
                    other => return other,
                },
                Route::Remote(addr) => {
                    let answer: std::result::Result<ProposeResult, CallError> = self
                        .inner
                        .rpc
                        .call(&addr, PATH_PROPOSE, &cmd, FORWARD_TIMEOUT)
                        .await;
                    match answer {
                        Ok(Ok((index, response))) => {
                            // Read-your-writes on this server: answer once
                            // the entry is applied here too.
                            let _ = self
                                .inner
                                .raft
                                .wait(Some(FORWARD_TIMEOUT))
                                .applied_index_at_least(Some(index), "forwarded write")
                                .await;
                            return Ok(Applied { index, response });
                        }
                        // Not applied anywhere: safe to route again.
                        Ok(Err(RpcFailure::NotLeader { .. })) | Err(CallError::Unreachable(_))
                            if tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(Err(RpcFailure::NotLeader { .. })) | Err(CallError::Unreachable(_)) => {
                            return Err(Error::NoLeader)
                        }
                        Ok(Err(RpcFailure::Failed(msg))) => return Err(Error::Raft(msg)),
                        // Sent but unanswered: it may or may not have been
                        // applied, so it is not retried.
                        Err(e) => {
                            return Err(Error::Raft(format!("forwarding to the leader: {e}")))
                        }
                    }
                }
                Route::Unknown => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(Error::NoLeader);
                    }
                    tokio::time::sleep(left.min(Duration::from_millis(50))).await;
                }
            }
        }
    }

    /// Where a proposal should go now.
    pub(crate) fn route(&self) -> Route {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        match m.current_leader {
            // A leader past its lease waits, like a follower in an
            // election, for a leader that a quorum hears.
            Some(id) if id == m.id && m.state == ServerState::Leader => {
                if self.lease_age(&m) <= self.lease() {
                    Route::Local
                } else {
                    Route::Unknown
                }
            }
            Some(id) => match m.membership_config.membership().get_node(&id) {
                Some(node) => Route::Remote(node.addr.clone()),
                None => Route::Unknown,
            },
            // One voter that is this server: its own proposer holds the
            // proposal until it has elected itself.
            None if self.is_solo(&m) => Route::Local,
            None => Route::Unknown,
        }
    }

    fn is_solo(&self, m: &openraft::RaftMetrics<u64, RaftNode>) -> bool {
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(m.id) && voters.next().is_none()
    }

    /// Propose on this server's own raft (the leader, or a lone server
    /// still electing itself).
    pub(crate) async fn propose_local(&self, cmd: Command) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .proposals
            .send(Proposal { cmd, reply })
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// The watch hub, for blocking reads.
    pub fn watch(&self) -> &Arc<Watch> {
        &self.inner.shared.watch
    }

    /// The change feed (`/v1/event-stream`).
    pub fn feed(&self) -> &crate::feed::Feed {
        &self.inner.shared.feed
    }

    /// The view store's work in progress and size, for metrics.
    pub fn storage_stats(&self) -> StorageStats {
        let db = &self.views().db;
        StorageStats {
            active_compactions: db.active_compactions(),
            compactions_completed: db.compactions_completed(),
            outstanding_flushes: db.outstanding_flushes(),
            write_buffer_bytes: db.write_buffer_size(),
            journal_count: db.journal_count(),
            journal_bytes: db.journal_disk_space().unwrap_or(0),
        }
    }

    pub(crate) fn views(&self) -> &Views {
        &self.inner.shared.views
    }

    /// This agent's node name.
    pub fn node_name(&self) -> String {
        self.inner.cfg.node_name.clone()
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Build a snapshot covering at least everything applied now (normally
    /// raft builds one every `snapshot_threshold` entries) and wait for it.
    /// Returns the snapshot's index.
    pub async fn snapshot_now(&self) -> Result<u64> {
        let raft = &self.inner.raft;
        let target = raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            // A trigger while a build is already running is dropped by
            // raft, and that build may cover less than `target`: retry.
            raft.trigger().snapshot().await.map_err(raft_err)?;
            let waited = raft
                .wait(Some(Duration::from_secs(1)))
                .metrics(
                    |m| m.snapshot.map(|s| s.index).unwrap_or(0) >= target,
                    "snapshot",
                )
                .await;
            match waited {
                Ok(m) => return Ok(m.snapshot.map(|s| s.index).unwrap_or(0)),
                Err(openraft::metrics::WaitError::Timeout(..))
                    if tokio::time::Instant::now() < deadline => {}
                Err(e) => return Err(raft_err(e)),
            }
        }
    }

    /// Stop raft and flush the views; pending proposals fail with `Shutdown`.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.raft.shutdown().await.map_err(raft_err)?;
        self.inner.shared.watch.fire_all();
        self.inner
            .shared
            .views
            .db
            .persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
}

/// How often the command count since the last snapshot is looked at.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(1);

/// Ask raft for a snapshot once `snapshot_threshold` commands (not log
/// entries: a batch entry holds up to 1,024) were applied since the last
/// ask, so the log behind a snapshot is purged at the same pace however
/// writes are batched.
async fn snapshot_trigger(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(SNAPSHOT_CHECK).await;
        let Some(inner) = inner.upgrade() else { return };
        let threshold = inner.cfg.snapshot_threshold.max(1);
        let count = &inner.shared.commands_since_snapshot;
        if count.load(std::sync::atomic::Ordering::Relaxed) < threshold {
            continue;
        }
        count.store(0, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            threshold,
            "commands since the last snapshot passed the threshold"
        );
        if let Err(e) = inner.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "asking for a snapshot failed");
        }
    }
}

/// The view store's figures (fjall): compactions and flushes running and
/// done, the write buffer and the journals.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageStats {
    /// Compactions running now.
    pub active_compactions: usize,
    /// Compactions finished since the engine opened.
    pub compactions_completed: usize,
    /// Memtables waiting to be flushed.
    pub outstanding_flushes: usize,
    /// Bytes in write buffers (memtables).
    pub write_buffer_bytes: u64,
    /// Journal files on disk.
    pub journal_count: usize,
    /// Bytes of journal on disk.
    pub journal_bytes: u64,
}
