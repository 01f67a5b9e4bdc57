//! The scale workload (muster only): load a large state, read the server's
//! memory, kill it with SIGKILL, start it again on the same data and time
//! how long it takes to answer again with everything in place.
//!
//! The state is written through `/v1/txn` (64 operations per transaction,
//! Consul's limit), by several clients at once:
//! - `instances` service instances, 100 per node, on nodes `scale-n<i>`,
//!   spread over 100 services `scale-s<j>`;
//! - `keys` KV keys `scale/k<i>` with `value_size`-byte values.
//!
//! Then it records the server's resident memory (current and the peak of
//! the load), its data size on disk, kills it, restarts it and measures
//! the time from the new process's spawn to its readiness line and to the
//! first answers that show the last key and every instance of a service.
//! Finally it checks that every key is there (`?keys` over the prefix).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http::Conn;
use crate::procs::ServerProc;
use crate::target::kv_value;

/// Operations per transaction (Consul's maximum).
const TXN_OPS: usize = 64;
/// Service instances per node.
const PER_NODE: usize = 100;
/// Distinct service names.
const SERVICES: usize = 100;
/// Concurrent loading clients.
const LOADERS: usize = 16;
/// How long the restarted server may take to answer with the full state.
const QUERYABLE_TIMEOUT: Duration = Duration::from_secs(600);

/// What to load.
#[derive(Clone, Copy, Debug)]
pub struct ScaleArgs {
    /// Service instances.
    pub instances: usize,
    /// KV keys.
    pub keys: usize,
    /// Bytes per KV value.
    pub value_size: usize,
}

/// What the scale workload measured.
#[derive(Debug, Default)]
pub struct ScaleReport {
    /// The loaded state.
    pub instances: usize,
    /// KV keys loaded.
    pub keys: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Time to write the instances.
    pub load_instances: Duration,
    /// Time to write the keys.
    pub load_keys: Duration,
    /// Peak RSS while loading (KiB).
    pub peak_rss_load_kib: Option<u64>,
    /// RSS after loading, once writes stopped for 2 s (KiB).
    pub rss_loaded_kib: Option<u64>,
    /// Data directory size after loading (bytes).
    pub disk_bytes: u64,
    /// The restarts, in order.
    pub restarts: Vec<Restart>,
}

/// One kill -9 and restart of the loaded server.
#[derive(Debug, Default)]
pub struct Restart {
    /// What was restarted from.
    pub what: &'static str,
    /// Spawn of the restarted process to its readiness line.
    pub ready: Duration,
    /// Spawn to the first answers showing the last key and all instances
    /// of the last service.
    pub queryable: Duration,
    /// RSS of the restarted process once queryable (KiB).
    pub rss_kib: Option<u64>,
    /// Peak RSS of the restarted process up to then (KiB).
    pub peak_rss_kib: Option<u64>,
    /// Keys under the prefix read back afterwards.
    pub keys_after: usize,
    /// The restarted server's log lines up to its readiness.
    pub log: Vec<String>,
}

/// Run the scale workload against `proc` (a fresh muster).
pub async fn run_scale(proc: &mut ServerProc, args: ScaleArgs) -> Result<ScaleReport> {
    let mut r = ScaleReport {
        instances: args.instances,
        keys: args.keys,
        value_size: args.value_size,
        ..ScaleReport::default()
    };
    proc.reset_peak_rss();
    let started = Instant::now();
    load_instances(proc.http, args.instances).await?;
    r.load_instances = started.elapsed();
    eprintln!(
        "scale: {} instances in {:.1} s",
        args.instances,
        r.load_instances.as_secs_f64()
    );
    let started = Instant::now();
    load_keys(proc.http, args.keys, args.value_size).await?;
    r.load_keys = started.elapsed();
    eprintln!(
        "scale: {} keys in {:.1} s",
        args.keys,
        r.load_keys.as_secs_f64()
    );
    proc.check_alive()?;
    r.peak_rss_load_kib = proc.peak_rss_kib();
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.rss_loaded_kib = proc.rss_kib();
    r.disk_bytes = proc.dir_bytes();

    let last_key = (args.keys > 0).then(|| key(args.keys - 1));
    let last_service = (args.instances > 0).then(|| {
        let name = service((args.instances - 1) % SERVICES);
        (name.clone(), instances_of(args.instances, &name))
    });
    for (what, remove) in [
        ("views kept (a crash)", None),
        (
            "views deleted: rebuilt from snapshot and log",
            Some("views"),
        ),
    ] {
        let log_before = proc.log_lines_with("").len();
        let ready = proc.kill9_and_restart(remove)?;
        let spawned = Instant::now() - ready;
        eprintln!(
            "scale: restarted ({what}), ready after {:.2} s",
            ready.as_secs_f64()
        );
        wait_queryable(proc.http, last_key.as_deref(), last_service.as_ref()).await?;
        let queryable = spawned.elapsed();
        let (rss_kib, peak_rss_kib) = (proc.rss_kib(), proc.peak_rss_kib());
        let log = proc
            .log_lines_with("")
            .into_iter()
            .skip(log_before)
            .take_while(|l| !l.contains("agent ready"))
            .collect();
        let keys_after = count_keys(proc.http).await?;
        proc.check_alive()?;
        r.restarts.push(Restart {
            what,
            ready,
            queryable,
            rss_kib,
            peak_rss_kib,
            keys_after,
            log,
        });
    }
    Ok(r)
}

/// Key number `i`.
fn key(i: usize) -> String {
    format!("scale/k{i:07}")
}

/// Service number `j`.
fn service(j: usize) -> String {
    format!("scale-s{j}")
}

/// How many of `total` instances belong to service `name`.
fn instances_of(total: usize, name: &str) -> usize {
    (0..SERVICES)
        .find(|&j| service(j) == name)
        .map_or(0, |j| total / SERVICES + usize::from(j < total % SERVICES))
}

/// The transaction operation that registers node `n`.
fn node_op(n: usize) -> Value {
    let addr = format!("10.{}.{}.{}", n / 65_536 % 256, n / 256 % 256, n % 256);
    json!({ "Node": { "Verb": "set", "Node": { "Node": format!("scale-n{n}"), "Address": addr } } })
}

/// The transaction operation that registers instance `i` on its node.
fn instance_op(i: usize) -> Value {
    json!({ "Service": { "Verb": "set", "Node": format!("scale-n{}", i / PER_NODE), "Service": {
        "ID": format!("i{i}"),
        "Service": service(i % SERVICES),
        "Port": 20_000 + (i % 10_000),
        "Tags": ["scale"],
    } } })
}

/// Write the nodes, then `n` instances on them, `LOADERS` transactions at
/// a time.
async fn load_instances(http: SocketAddr, n: usize) -> Result<()> {
    let nodes: Vec<Value> = (0..n.div_ceil(PER_NODE)).map(node_op).collect();
    run_txns(http, Arc::new(nodes)).await?;
    run_txns(http, Arc::new((0..n).map(instance_op).collect())).await
}

/// Write `n` keys of `size` bytes, `LOADERS` transactions at a time.
async fn load_keys(http: SocketAddr, n: usize, size: usize) -> Result<()> {
    let ops: Vec<Value> = (0..n)
        .map(|i| {
            json!({ "KV": { "Verb": "set", "Key": key(i),
                "Value": B64.encode(kv_value(size, i as u64)) } })
        })
        .collect();
    run_txns(http, Arc::new(ops)).await
}

/// Send `ops` as transactions of up to [`TXN_OPS`], from [`LOADERS`]
/// clients taking the next chunk in turn; every transaction must succeed.
async fn run_txns(http: SocketAddr, ops: Arc<Vec<Value>>) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let chunks = ops.len().div_ceil(TXN_OPS);
    let mut tasks = Vec::new();
    for _ in 0..LOADERS {
        let (ops, next) = (ops.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(http).await?;
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return Ok::<(), anyhow::Error>(());
                }
                let chunk = &ops[c * TXN_OPS..((c + 1) * TXN_OPS).min(ops.len())];
                let body = Bytes::from(serde_json::to_vec(chunk)?);
                let r = conn.request(Method::PUT, "/v1/txn", body).await?;
                if r.status != StatusCode::OK {
                    bail!(
                        "txn {c}: HTTP {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Poll until the last key reads back and the last service lists all its
/// instances as passing, or fail after [`QUERYABLE_TIMEOUT`].
async fn wait_queryable(
    http: SocketAddr,
    last_key: Option<&str>,
    last_service: Option<&(String, usize)>,
) -> Result<()> {
    let deadline = Instant::now() + QUERYABLE_TIMEOUT;
    let mut last_seen = String::from("no answer");
    loop {
        if let Ok(mut conn) = Conn::connect(http).await {
            let key_ok = match last_key {
                None => true,
                Some(k) => conn
                    .request(Method::GET, &format!("/v1/kv/{k}"), Bytes::new())
                    .await
                    .is_ok_and(|r| r.status == StatusCode::OK),
            };
            let svc_ok = match last_service {
                None => true,
                Some((name, want)) => {
                    match conn
                        .request(
                            Method::GET,
                            &format!("/v1/health/service/{name}?passing"),
                            Bytes::new(),
                        )
                        .await
                    {
                        Ok(r) if r.status == StatusCode::OK => {
                            let got = serde_json::from_slice::<Vec<Value>>(&r.body)
                                .map_or(0, |v| v.len());
                            last_seen = format!("{name}: {got} of {want} instances");
                            got == *want
                        }
                        Ok(r) => {
                            last_seen = format!("{name}: HTTP {}", r.status);
                            false
                        }
                        Err(e) => {
                            last_seen = format!("{name}: {e}");
                            false
                        }
                    }
                }
            };
            if key_ok && svc_ok {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("restarted muster not queryable after {QUERYABLE_TIMEOUT:?}: {last_seen}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Load the scale state into a server: the instances, then the keys.
pub async fn load(http: SocketAddr, args: ScaleArgs) -> Result<()> {
    load_instances(http, args.instances).await?;
    load_keys(http, args.keys, args.value_size).await
}

/// The number of keys under `scale/` (`?keys`).
pub async fn count_keys(http: SocketAddr) -> Result<usize> {
    let mut conn = Conn::connect(http).await?;
    let r = conn
        .request(Method::GET, "/v1/kv/scale/?keys", Bytes::new())
        .await?;
    if r.status == StatusCode::NOT_FOUND {
        return Ok(0);
    }
    if r.status != StatusCode::OK {
        bail!("?keys: HTTP {}", r.status);
    }
    let keys: Vec<String> = serde_json::from_slice(&r.body).context("?keys body")?;
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_spread_over_services() {
        assert_eq!(instances_of(100_000, "scale-s7"), 1_000);
        assert_eq!(instances_of(150, "scale-s49"), 2);
        assert_eq!(instances_of(150, "scale-s50"), 1);
        assert_eq!(instances_of(150, "nope"), 0);
        let total: usize = (0..SERVICES).map(|j| instances_of(1234, &service(j))).sum();
        assert_eq!(total, 1234);
    }

    #[test]
    fn instances_live_on_their_nodes() {
        assert_eq!(node_op(1)["Node"]["Node"]["Node"], "scale-n1");
        assert_eq!(node_op(257)["Node"]["Node"]["Address"], "10.0.1.1");
        assert_eq!(instance_op(101)["Service"]["Node"], "scale-n1");
        assert_eq!(
            instance_op(101)["Service"]["Service"]["Service"],
            "scale-s1"
        );
    }
}
