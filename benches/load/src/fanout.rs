//! The health fan-out workload (muster only): the load Prometheus,
//! Traefik and consul-template put on a registry.
//!
//! `web` gets I instances, one per node, each with a passing check. W
//! watchers, each on its own connection, block on
//! `GET /v1/health/service/web?index=<idx>&wait=5m`, sending
//! `Accept-Encoding: gzip` as Go's HTTP client does unless `--no-gzip`.
//! Each round flips one instance's check (critical, then passing again)
//! and measures, from the start of that write, the time until every
//! watcher has read its whole reply with a higher index, plus the
//! server's CPU time (utime + stime from /proc) over the round and its
//! peak RSS over the run. Each watcher re-arms at once with its new
//! index, as real clients do. One reply per round is decoded in full and
//! checked: I entries, and the flipped check in its new state.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, ACCEPT_ENCODING};
use hyper::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::http::Conn;
use crate::procs::ServerProc;

/// How long a round waits for every watcher.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause after every watcher is armed, so the server has parked them.
const SETTLE: Duration = Duration::from_secs(2);
/// Connections opened at once while arming.
const CONNECT_BATCH: usize = 100;
/// Clients registering the instances.
const REGISTER_CLIENTS: usize = 16;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct FanoutArgs {
    /// Blocking watchers (W).
    pub watchers: usize,
    /// Instances of `web` (I).
    pub instances: usize,
    /// Check flips measured.
    pub rounds: usize,
    /// Send `Accept-Encoding: gzip`.
    pub gzip: bool,
}

/// One measured round.
#[derive(Debug, Clone)]
pub struct Round {
    /// Write start → the last watcher's whole reply read.
    pub all_answered: Duration,
    /// Write start → the median watcher's reply read.
    pub median_answered: Duration,
    /// Server CPU seconds (user + system) from the write until the last
    /// reply was read.
    pub server_cpu_s: f64,
    /// Bytes of one reply body as sent.
    pub body_bytes: usize,
    /// The reply's `Content-Encoding`.
    pub encoding: Option<String>,
}

/// What the workload measured.
#[derive(Debug, Default)]
pub struct FanoutReport {
    /// The parameters.
    pub watchers: usize,
    /// Instances registered.
    pub instances: usize,
    /// The measured rounds.
    pub rounds: Vec<Round>,
    /// Server RSS with every watcher armed, before the first flip (KiB).
    pub rss_armed_kib: Option<u64>,
    /// Server peak RSS from arming to the end (KiB).
    pub peak_rss_kib: Option<u64>,
}

/// A watcher's reply.
struct Woke {
    at: Instant,
    index: u64,
    body: Bytes,
    encoding: Option<String>,
}

fn instance_body(i: usize, status: &str) -> Bytes {
    let node = format!("fan-{i:05}");
    Bytes::from(
        serde_json::json!({
            "Node": node,
            "Address": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            "NodeMeta": {"rack": format!("r{}", i % 16)},
            "Service": {"ID": "web", "Service": "web", "Port": 8080,
                        "Tags": ["http", "v1"], "Meta": {"version": "1.2.3"}},
            "Check": {"CheckID": "web-alive", "Name": "web alive", "ServiceID": "web",
                      "Status": status, "Output": format!("HTTP GET http://{node}:8080/health: 200 OK")}
        })
        .to_string(),
    )
}

async fn register(http: SocketAddr, i: usize, status: &str, conn: &mut Conn) -> Result<()> {
    let r = conn
        .request(
            Method::PUT,
            "/v1/catalog/register",
            instance_body(i, status),
        )
        .await?;
    if r.status != StatusCode::OK {
        bail!(
            "register fan-{i:05} on {http}: HTTP {} {:?}",
            r.status,
            r.body
        );
    }
    Ok(())
}

/// Server CPU seconds so far (utime + stime of /proc/<pid>/stat).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Decode one reply (gunzip if needed) and check it holds `instances`
/// entries with `flipped`'s check at `status`.
fn check_reply(w: &Woke, instances: usize, flipped: &str, status: &str) -> Result<()> {
    let json = if w.encoding.as_deref() == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&w.body[..])
            .read_to_end(&mut out)
            .context("gunzip reply")?;
        out
    } else {
        w.body.to_vec()
    };
    let v: serde_json::Value = serde_json::from_slice(&json).context("reply is not JSON")?;
    let entries = v.as_array().context("reply is not a list")?;
    if entries.len() != instances {
        bail!("reply has {} entries, want {instances}", entries.len());
    }
    let seen = entries
        .iter()
        .find(|e| e["Node"]["Node"] == flipped)
        .and_then(|e| e["Checks"].as_array())
        .and_then(|c| c.iter().find(|c| c["CheckID"] == "web-alive"))
        .and_then(|c| c["Status"].as_str())
        .map(str::to_owned);
    if seen.as_deref() != Some(status) {
        bail!("{flipped}'s check is {seen:?} in the reply, want {status}");
    }
    Ok(())
}

/// Run the workload against a fresh muster.
pub async fn run_fanout(proc: &mut ServerProc, args: FanoutArgs) -> Result<FanoutReport> {
    let http = proc.http;
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..REGISTER_CLIENTS.min(args.instances.max(1)) {
        let next = next.clone();
        set.spawn(async move {
            let mut conn = Conn::connect(http).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.instances {
                    return Ok::<_, anyhow::Error>(());
                }
                register(http, i, "passing", &mut conn).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    eprintln!(
        "fanout: registered {} instances in {:.1} s",
        args.instances,
        t0.elapsed().as_secs_f64()
    );

    let mut ctl = Conn::connect(http).await?;
    let first = ctl
        .request(Method::GET, "/v1/health/service/web", Bytes::new())
        .await?;
    let mut index = first.consul_index.context("no X-Consul-Index")?;

    proc.reset_peak_rss();
    let headers: Arc<Vec<(HeaderName, HeaderValue)>> = Arc::new(if args.gzip {
        vec![(ACCEPT_ENCODING, HeaderValue::from_static("gzip"))]
    } else {
        Vec::new()
    });
    let armed = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Woke, String>>();
    let mut watchers = JoinSet::new();
    let mut opened = 0;
    while opened < args.watchers {
        let batch = CONNECT_BATCH.min(args.watchers - opened);
        let mut conns = JoinSet::new();
        for _ in 0..batch {
            conns.spawn(Conn::connect(http));
        }
        while let Some(c) = conns.join_next().await {
            let mut conn = c??;
            let (armed, tx, headers) = (armed.clone(), tx.clone(), headers.clone());
            watchers.spawn(async move {
                let mut index = index;
                loop {
                    let url = format!("/v1/health/service/web?index={index}&wait=5m");
                    armed.fetch_add(1, Ordering::SeqCst);
                    let r = conn
                        .request_with(Method::GET, &url, Bytes::new(), &headers)
                        .await;
                    let woke = match r {
                        Ok(r) if r.status == StatusCode::OK => match r.consul_index {
                            Some(i) => Ok(Woke {
                                at: Instant::now(),
                                index: i,
                                body: r.body,
                                encoding: r.content_encoding,
                            }),
                            None => Err("no X-Consul-Index".to_string()),
                        },
                        Ok(r) => Err(format!("HTTP {}", r.status)),
                        Err(e) => Err(format!("{e:#}")),
                    };
                    let failed = woke.is_err();
                    if let Ok(w) = &woke {
                        index = w.index;
                    }
                    if tx.send(woke).is_err() || failed {
                        return;
                    }
                }
            });
        }
        opened += batch;
    }
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while armed.load(Ordering::SeqCst) < args.watchers {
        if Instant::now() > deadline {
            bail!("only {} watchers armed", armed.load(Ordering::SeqCst));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let mut report = FanoutReport {
        watchers: args.watchers,
        instances: args.instances,
        rss_armed_kib: proc.rss_kib(),
        ..FanoutReport::default()
    };
    eprintln!(
        "fanout: {} watchers armed; server RSS {:.1} MiB",
        args.watchers,
        report.rss_armed_kib.unwrap_or(0) as f64 / 1024.0
    );

    for round in 0..args.rounds {
        let status = if round % 2 == 0 {
            "critical"
        } else {
            "passing"
        };
        // Rounds come in pairs on one instance: critical, then passing.
        let which = (round / 2) % args.instances.max(1);
        let flipped = format!("fan-{which:05}");
        let cpu0 = cpu_seconds(proc.pid());
        let start = Instant::now();
        register(http, which, status, &mut ctl).await?;
        let mut times = Vec::with_capacity(args.watchers);
        let mut sample = None;
        let round_deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
        while times.len() < args.watchers {
            let w = match tokio::time::timeout_at(round_deadline, rx.recv()).await {
                Ok(Some(Ok(w))) => w,
                Ok(Some(Err(e))) => bail!("a watcher failed: {e}"),
                Ok(None) => bail!("watchers ended"),
                Err(_) => bail!(
                    "round {round}: only {} of {} watchers answered in {ROUND_TIMEOUT:?}",
                    times.len(),
                    args.watchers
                ),
            };
            if w.index <= index {
                bail!("a watcher returned index {} <= {index}", w.index);
            }
            times.push(w.at.saturating_duration_since(start));
            if sample.is_none() {
                sample = Some(w);
            }
        }
        let cpu1 = cpu_seconds(proc.pid());
        let sample = sample.context("no reply")?;
        check_reply(&sample, args.instances, &flipped, status)?;
        index = sample.index;
        times.sort();
        let r = Round {
            all_answered: times.last().copied().unwrap_or_default(),
            median_answered: times.get(times.len() / 2).copied().unwrap_or_default(),
            server_cpu_s: match (cpu0, cpu1) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            },
            body_bytes: sample.body.len(),
            encoding: sample.encoding.clone(),
        };
        eprintln!(
            "fanout round {round}: all {} answered in {:.3} s (median {:.3} s), server CPU {:.2} s, reply {} bytes{}",
            args.watchers,
            r.all_answered.as_secs_f64(),
            r.median_answered.as_secs_f64(),
            r.server_cpu_s,
            r.body_bytes,
            r.encoding.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
        report.rounds.push(r);
        // Let the re-armed watchers park before the next flip.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.peak_rss_kib = proc.peak_rss_kib();
    watchers.shutdown().await;
    Ok(report)
}

/// The workload as `name  value` lines.
pub fn text(r: &FanoutReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mib = |k: Option<u64>| k.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    let _ = writeln!(out, "watchers                 {}", r.watchers);
    let _ = writeln!(out, "instances                {}", r.instances);
    let _ = writeln!(out, "server RSS armed (MiB)   {}", mib(r.rss_armed_kib));
    let _ = writeln!(out, "server peak RSS (MiB)    {}", mib(r.peak_rss_kib));
    let _ = writeln!(
        out,
        "round  all answered (s)  median (s)  server CPU (s)  reply bytes"
    );
    for (i, x) in r.rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i:<5}  {:<16.3}  {:<10.3}  {:<14.2}  {}{}",
            x.all_answered.as_secs_f64(),
            x.median_answered.as_secs_f64(),
            x.server_cpu_s,
            x.body_bytes,
            x.encoding
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    out
}

/// The workload as JSON.
pub fn json(r: &FanoutReport) -> serde_json::Value {
    serde_json::json!({
        "watchers": r.watchers,
        "instances": r.instances,
        "rss_armed_kib": r.rss_armed_kib,
        "peak_rss_kib": r.peak_rss_kib,
        "rounds": r.rounds.iter().map(|x| serde_json::json!({
            "all_answered_s": x.all_answered.as_secs_f64(),
            "median_answered_s": x.median_answered.as_secs_f64(),
            "server_cpu_s": x.server_cpu_s,
            "body_bytes": x.body_bytes,
            "encoding": x.encoding,
        })).collect::<Vec<_>>(),
    })
}
