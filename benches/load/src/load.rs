//! The closed-loop KV load generator, the same for both servers: N clients,
//! each on its own HTTP/1.1 keep-alive connection, each sending its next
//! request as soon as the previous reply is read, until the run's deadline.
//! Keys are drawn uniformly from the keyspace; every successful request's
//! latency (send to last body byte) goes into a histogram.
//!
//! Only the request bytes differ between servers ([`Server::put`] /
//! [`Server::get`]); connection handling, timing and checks are shared.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::args::{GetMode, Workload};
use crate::hist::Histogram;
use crate::http::Conn;
use crate::target::{kv_key, kv_value, Server};

/// Distinct values each put client cycles through.
const VALUE_POOL: usize = 16;

/// What one run measured on the client side.
#[derive(Debug, Default)]
pub struct Measured {
    /// Latencies of successful operations (ns).
    pub hist: Histogram,
    /// Failed operations (transport error, bad status or bad body).
    pub errors: u64,
    /// The first failure, as text.
    pub first_error: Option<String>,
    /// From the start of the run until the last client stopped.
    pub elapsed: Duration,
}

impl Measured {
    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.hist.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Fold another client's figures into this one.
    pub fn merge(&mut self, other: Measured) {
        self.hist.merge(&other.hist);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Count one failure, keeping the first one's text.
    pub fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// The parameters of one KV run.
#[derive(Clone, Copy, Debug)]
pub struct KvRun {
    /// Which server's requests to send.
    pub server: Server,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// `Put` or `Get`.
    pub workload: Workload,
    /// Concurrent clients (connections).
    pub clients: usize,
    /// How long clients keep sending.
    pub duration: Duration,
    /// Keys are `kv_key(0..keys)`.
    pub keys: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// How gets read.
    pub get_mode: GetMode,
}

/// Run one KV workload and return the merged client figures.
pub async fn run_kv(run: KvRun) -> Result<Measured> {
    if !matches!(run.workload, Workload::Put | Workload::Get) {
        bail!("{} is not a KV workload", run.workload.name());
    }
    // Connect everyone first, so connection setup is not measured.
    let mut conns = Vec::with_capacity(run.clients);
    for _ in 0..run.clients {
        conns.push(Conn::connect(run.addr).await?);
    }
    let start = Instant::now();
    let deadline = start + run.duration;
    let mut tasks = Vec::with_capacity(run.clients);
    for (id, conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(client(run, id as u64, conn, deadline)));
    }
    let mut total = Measured::default();
    for t in tasks {
        total.merge(t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// One client's loop.
async fn client(run: KvRun, id: u64, mut conn: Conn, deadline: Instant) -> Measured {
    let mut rng = StdRng::seed_from_u64(0x6d75_7374 ^ id);
    let values: Vec<Bytes> = (0..VALUE_POOL)
        .map(|i| kv_value(run.value_size, id * VALUE_POOL as u64 + i as u64))
        .collect();
    let mut m = Measured::default();
    let mut n = 0usize;
    while Instant::now() < deadline {
        let key = kv_key(rng.random_range(0..run.keys));
        let (method, path, body) = match run.workload {
            Workload::Put => run.server.put(&key, &values[n % VALUE_POOL]),
            _ => run.server.get(&key, run.get_mode),
        };
        n += 1;
        let t0 = Instant::now();
        match conn.request(method, &path, body).await {
            Ok(reply) => {
                let ok = match run.workload {
                    Workload::Put => run.server.put_ok(&reply),
                    _ => run.server.get_ok(&reply, run.value_size),
                };
                if ok {
                    m.hist.record_duration(t0.elapsed());
                } else {
                    let body = String::from_utf8_lossy(&reply.body);
                    let body: String = body.chars().take(200).collect();
                    m.fail(format!("{path}: HTTP {} {body:?}", reply.status));
                }
            }
            Err(e) => {
                m.fail(format!("{path}: {e:#}"));
                // The connection is likely gone: open a new one, or stop.
                match Conn::connect(run.addr).await {
                    Ok(c) => conn = c,
                    Err(_) => break,
                }
            }
        }
    }
    m
}

/// Write every key of the keyspace once (`concurrency` clients), so reads
/// always find a value. Fails if any write fails.
pub async fn populate(
    server: Server,
    addr: SocketAddr,
    keys: usize,
    value_size: usize,
    concurrency: usize,
) -> Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(keys) {
        let next = next.clone();
        let mut conn = Conn::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return anyhow::Ok(());
                }
                let value = kv_value(value_size, i as u64);
                let (method, path, body) = server.put(&kv_key(i), &value);
                let reply = conn.request(method, &path, body).await?;
                if !server.put_ok(&reply) {
                    bail!("populate {path}: HTTP {} {:?}", reply.status, reply.body);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}
