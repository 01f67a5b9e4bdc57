//! Helpers: fast test timing, starting and joining clusters, polling.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use muster_gossip::{Gossip, GossipConfig, MemberEvent, MemberStatus};
use tokio::sync::broadcast;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A distinct UUID per call.
pub fn uuid() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Consul's LAN defaults, on a free loopback port.
pub fn default_config(name: &str) -> GossipConfig {
    let mut cfg = GossipConfig::lan(name, uuid(), loopback());
    cfg.tags = BTreeMap::from([
        ("role".to_owned(), "node".to_owned()),
        ("dc".to_owned(), "dc1".to_owned()),
    ]);
    cfg
}

/// Four times faster than LAN probing, and quick push/pull: keeps the
/// suite short while leaving room for a busy 2-core machine.
pub fn fast_config(name: &str) -> GossipConfig {
    let mut cfg = default_config(name);
    cfg.probe_interval = Duration::from_millis(250);
    cfg.probe_timeout = Duration::from_millis(125);
    cfg.gossip_interval = Duration::from_millis(50);
    cfg.push_pull_interval = Duration::from_secs(2);
    cfg.tcp_timeout = Duration::from_secs(2);
    cfg
}

/// Starts one node per config; every node after the first joins the first.
pub async fn start_cluster(configs: Vec<GossipConfig>) -> TestResult<Vec<Gossip>> {
    let mut nodes: Vec<Gossip> = Vec::new();
    for cfg in configs {
        let node = Gossip::start(cfg).await?;
        if let Some(seed) = nodes.first() {
            let joined = node.join(&[seed.local_addr()]).await?;
            assert_eq!(joined, 1);
        }
        nodes.push(node);
    }
    Ok(nodes)
}

/// Polls `cond` every 20ms until it holds; fails after `limit`. Returns how
/// long it took.
pub async fn wait_for(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
) -> TestResult<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn status_of(node: &Gossip, name: &str) -> Option<MemberStatus> {
    node.members()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.status)
}

pub fn alive(node: &Gossip) -> usize {
    node.members()
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count()
}

/// Every node sees `n` alive members.
pub async fn wait_all_alive(nodes: &[Gossip], n: usize, limit: Duration) -> TestResult<Duration> {
    wait_for(&format!("{n} alive members everywhere"), limit, || {
        nodes.iter().all(|g| alive(g) == n)
    })
    .await
}

/// Receives events until one matches, within `limit`.
pub async fn next_event(
    rx: &mut broadcast::Receiver<MemberEvent>,
    limit: Duration,
    mut wanted: impl FnMut(&MemberEvent) -> bool,
) -> TestResult<MemberEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| "no matching event in time")??;
        if wanted(&event) {
            return Ok(event);
        }
    }
}

/// Events received so far, without waiting.
pub fn drain(rx: &mut broadcast::Receiver<MemberEvent>) -> Vec<MemberEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}
