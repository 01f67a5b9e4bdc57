//! The blocking-query workload (muster only).
//!
//! Single key: W keys `w/<i>`, each watched by one client on its own
//! connection (`GET /v1/kv/w/<i>?index=<idx>&wait=5m`, `idx` read just
//! before). Rounds then write one not-yet-written key at a time and time
//! how long its watcher takes to return, counted from the start of the
//! write (so including the durable write itself) and from the moment the
//! write's own reply was read; any other watcher that returns is counted
//! as spurious.
//!
//! Fan-out: W new clients all watch `w/all`; each round writes it once and
//! times every watcher's return, and the time until the last one returned.
//!
//! Watchers stamp the time they read their reply themselves, so the
//! coordinator being late to look does not inflate the figures. No writes
//! happen between a watcher reading its index and the rounds starting (a
//! KV read's index is the KV table's, so any write would wake it early).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::hist::Histogram;
use crate::http::Conn;
use crate::target::{kv_value, Server};

/// How long a round waits for the watcher(s) it woke.
const WAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after all watchers sent their blocking request, so the server has
/// parked them before the first write.
const SETTLE: Duration = Duration::from_secs(2);

/// Connections opened at once while arming watchers.
const CONNECT_BATCH: usize = 100;

/// What the watch workload measured.
#[derive(Debug, Default)]
pub struct WatchReport {
    /// Watchers per phase.
    pub watchers: usize,
    /// Single-key rounds run.
    pub rounds: u64,
    /// Write start → its watcher's reply read (ns), single key.
    pub wake: Histogram,
    /// Latency of the writes of the single-key rounds (ns).
    pub write: Histogram,
    /// The write's reply read → its watcher's reply read (ns), single key;
    /// a watcher that returned first counts as 0 and in `before_ack`.
    pub wake_after_ack: Histogram,
    /// Watchers whose reply was read before the write's own reply.
    pub before_ack: u64,
    /// Rounds whose watcher did not return within [`WAKE_TIMEOUT`].
    pub missed: u64,
    /// Watchers that returned although their key was not written.
    pub spurious: u64,
    /// Fan-out: write start → each watcher's reply (ns), all rounds.
    pub fanout_wake: Histogram,
    /// Fan-out: write start → the last watcher's reply (ns), per round.
    pub fanout_all: Vec<u64>,
    /// Fan-out watchers that had not returned within [`WAKE_TIMEOUT`].
    pub fanout_missed: u64,
    /// Failed requests (arming reads, writes, blocking reads).
    pub errors: u64,
    /// The first failure, as text.
    pub first_error: Option<String>,
}

impl WatchReport {
    fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// A watcher's reply: which watcher, when it was read, and how it went.
struct Woke {
    /// Watcher number.
    id: usize,
    /// When the reply's body was read.
    at: Instant,
    /// `Err` text if the request failed or was not a 200.
    result: std::result::Result<u64, String>,
}

/// Read `path` once and return its `X-Consul-Index`.
async fn read_index(conn: &mut Conn, path: &str) -> Result<u64> {
    let r = conn.request(Method::GET, path, Bytes::new()).await?;
    if r.status != StatusCode::OK {
        bail!("GET {path}: HTTP {}", r.status);
    }
    r.consul_index
        .with_context(|| format!("GET {path}: no X-Consul-Index"))
}

/// One blocking read; the new index on a 200.
async fn block(conn: &mut Conn, path: &str, index: u64) -> std::result::Result<u64, String> {
    let url = format!("{path}?index={index}&wait=5m");
    match conn.request(Method::GET, &url, Bytes::new()).await {
        Ok(r) if r.status == StatusCode::OK => r
            .consul_index
            .ok_or_else(|| format!("GET {url}: no X-Consul-Index")),
        Ok(r) => Err(format!("GET {url}: HTTP {} {:?}", r.status, r.body)),
        Err(e) => Err(format!("GET {url}: {e:#}")),
    }
}

/// Write `key` with muster's KV API; its latency.
async fn write(conn: &mut Conn, key: &str, seed: u64) -> Result<Duration> {
    let (method, path, body) = Server::Muster.put(key, &kv_value(100, seed));
    let t0 = Instant::now();
    let r = conn.request(method, &path, body).await?;
    if !Server::Muster.put_ok(&r) {
        bail!("PUT {path}: HTTP {} {:?}", r.status, r.body);
    }
    Ok(t0.elapsed())
}

/// Open `n` connections, `CONNECT_BATCH` at a time.
async fn connect_many(addr: SocketAddr, n: usize) -> Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = CONNECT_BATCH.min(n - conns.len());
        let mut set = JoinSet::new();
        for _ in 0..batch {
            set.spawn(Conn::connect(addr));
        }
        while let Some(c) = set.join_next().await {
            conns.push(c??);
        }
    }
    Ok(conns)
}

/// Watchers running on their own connections.
struct Watchers {
    /// Counts watchers that have sent their blocking request.
    armed: Arc<AtomicUsize>,
    /// Their replies.
    rx: mpsc::UnboundedReceiver<Woke>,
    /// Their tasks (shut down when the phase ends).
    tasks: JoinSet<()>,
    /// Held so `rx` stays open while the phase runs.
    _tx: mpsc::UnboundedSender<Woke>,
}

/// Open `n` connections and run `watcher(id, conn, armed, tx)` on each.
async fn start_watchers<F, Fut>(http: SocketAddr, n: usize, watcher: F) -> Result<Watchers>
where
    F: Fn(usize, Conn, Arc<AtomicUsize>, mpsc::UnboundedSender<Woke>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let conns = connect_many(http, n).await?;
    let armed = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for (id, conn) in conns.into_iter().enumerate() {
        tasks.spawn(watcher(id, conn, armed.clone(), tx.clone()));
    }
    Ok(Watchers {
        armed,
        rx,
        tasks,
        _tx: tx,
    })
}

/// Wait until `armed` reaches `want`, then [`SETTLE`].
async fn wait_armed(armed: &AtomicUsize, want: usize) -> Result<()> {
    let deadline = Instant::now() + WAKE_TIMEOUT;
    while armed.load(Ordering::SeqCst) < want {
        if Instant::now() > deadline {
            bail!(
                "only {} of {want} watchers armed after {WAKE_TIMEOUT:?}",
                armed.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(())
}

/// Run both phases with `watchers` watchers; single-key rounds for at most
/// `duration`, then `fanout_rounds` fan-out rounds.
pub async fn run_watch(
    http: SocketAddr,
    watchers: usize,
    duration: Duration,
    fanout_rounds: usize,
) -> Result<WatchReport> {
    let mut rep = WatchReport {
        watchers,
        ..WatchReport::default()
    };
    single_key(http, watchers, duration, &mut rep).await?;
    fanout(http, watchers, fanout_rounds, &mut rep).await?;
    Ok(rep)
}

/// The single-key phase.
async fn single_key(
    http: SocketAddr,
    watchers: usize,
    duration: Duration,
    rep: &mut WatchReport,
) -> Result<()> {
    let mut writer = Conn::connect(http).await?;
    for i in 0..watchers {
        write(&mut writer, &format!("w/{i}"), i as u64).await?;
    }
    let Watchers {
        armed,
        mut rx,
        mut tasks,
        _tx,
    } = start_watchers(http, watchers, |id, mut conn, armed, tx| async move {
        let path = format!("/v1/kv/w/{id}");
        let result = match read_index(&mut conn, &path).await {
            Ok(index) => {
                armed.fetch_add(1, Ordering::SeqCst);
                block(&mut conn, &path, index).await
            }
            Err(e) => {
                armed.fetch_add(1, Ordering::SeqCst);
                Err(format!("{e:#}"))
            }
        };
        let _ = tx.send(Woke {
            id,
            at: Instant::now(),
            result,
        });
        // Keep the connection open until the phase ends.
        std::future::pending::<()>().await;
    })
    .await?;
    wait_armed(&armed, watchers).await?;

    let mut order: Vec<usize> = (0..watchers).collect();
    order.shuffle(&mut StdRng::seed_from_u64(0x7761_7463));
    let start = Instant::now();
    for (round, &k) in order.iter().enumerate() {
        if start.elapsed() >= duration {
            break;
        }
        let t0 = Instant::now();
        let acked = match write(&mut writer, &format!("w/{k}"), (watchers + round) as u64).await {
            Ok(d) => {
                rep.write.record_duration(d);
                t0 + d
            }
            Err(e) => {
                rep.fail(format!("{e:#}"));
                continue;
            }
        };
        rep.rounds += 1;
        let deadline = tokio::time::Instant::now() + WAKE_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(w)) if w.id == k => {
                    match w.result {
                        Ok(_) => {
                            rep.wake.record_duration(w.at.saturating_duration_since(t0));
                            rep.wake_after_ack
                                .record_duration(w.at.saturating_duration_since(acked));
                            rep.before_ack += u64::from(w.at < acked);
                        }
                        Err(e) => rep.fail(e),
                    }
                    break;
                }
                Ok(Some(w)) => {
                    rep.spurious += 1;
                    if let Err(e) = w.result {
                        rep.fail(e);
                    }
                }
                Ok(None) | Err(_) => {
                    rep.missed += 1;
                    break;
                }
            }
        }
    }
    // Anything else that returns shortly after the last write is spurious.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while let Ok(w) = rx.try_recv() {
        rep.spurious += 1;
        if let Err(e) = w.result {
            rep.fail(e);
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// The fan-out phase.
async fn fanout(
    http: SocketAddr,
    watchers: usize,
    rounds: usize,
    rep: &mut WatchReport,
) -> Result<()> {
    if rounds == 0 {
        return Ok(());
    }
    let path = "/v1/kv/w/all";
    let mut writer = Conn::connect(http).await?;
    write(&mut writer, "w/all", 0).await?;
    let Watchers {
        armed,
        mut rx,
        mut tasks,
        _tx,
    } = start_watchers(http, watchers, |id, mut conn, armed, tx| async move {
        let mut index = match read_index(&mut conn, path).await {
            Ok(i) => i,
            Err(e) => {
                let result = Err(format!("{e:#}"));
                let _ = tx.send(Woke {
                    id,
                    at: Instant::now(),
                    result,
                });
                return;
            }
        };
        loop {
            armed.fetch_add(1, Ordering::SeqCst);
            let result = block(&mut conn, path, index).await;
            let failed = result.is_err();
            if let Ok(i) = result {
                index = i;
            }
            if tx
                .send(Woke {
                    id,
                    at: Instant::now(),
                    result,
                })
                .is_err()
                || failed
            {
                return;
            }
        }
    })
    .await?;
    for round in 0..rounds {
        wait_armed(&armed, watchers * (round + 1)).await?;
        let t0 = Instant::now();
        if let Err(e) = write(&mut writer, "w/all", (round + 1) as u64).await {
            rep.fail(format!("{e:#}"));
            break;
        }
        let deadline = tokio::time::Instant::now() + WAKE_TIMEOUT;
        let mut last = None;
        let mut seen = 0;
        while seen < watchers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(w)) => {
                    seen += 1;
                    match w.result {
                        Ok(_) => {
                            let d = w.at.saturating_duration_since(t0);
                            rep.fanout_wake.record_duration(d);
                            last = last.max(Some(d));
                        }
                        Err(e) => rep.fail(e),
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        rep.fanout_missed += (watchers - seen) as u64;
        if let Some(d) = last {
            rep.fanout_all
                .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        }
        if seen < watchers {
            // Watchers that missed this round would skew the next one.
            break;
        }
    }
    tasks.shutdown().await;
    Ok(())
}
