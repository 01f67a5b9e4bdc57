//! A server's links to the other datacenters it knows through the WAN
//! pool: which servers each has, how far away each is (round-trip time),
//! HTTP requests sent there (`?dc=`), and DNS names of theirs
//! (`web.service.dc2.consul`) answered from a cache that their servers
//! keep fresh.
//!
//! The DNS cache holds one answer per question (the packet without its
//! ID) and per size limit. Each cached question has one blocking call open
//! to the other datacenter that returns when that datacenter's catalog
//! index moves, so a busy name costs one WAN round trip per change there,
//! not one per query. A question not asked for [`CACHE_IDLE`] is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use muster_engine::remote::Remote;
use muster_engine::BoxFuture;
use muster_gossip::{Gossip, MemberStatus};

/// How long a blocking refresh of a cached DNS answer waits at most.
const REFRESH_WAIT: Duration = Duration::from_secs(60);
/// A cached DNS answer no one asked for in this long is dropped.
const CACHE_IDLE: Duration = Duration::from_secs(120);
/// Most DNS questions cached; past it, answers are fetched every time.
const CACHE_MAX: usize = 4096;
/// How often the round-trip time to each datacenter is measured.
const RTT_INTERVAL: Duration = Duration::from_secs(10);
/// RTT samples kept per datacenter (the median is used).
const RTT_SAMPLES: usize = 5;

/// A DNS question as cached: datacenter, packet without its ID, size
/// limit.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Question {
    dc: String,
    packet: Vec<u8>,
    max_size: usize,
}

/// A cached answer (its ID is the first asker's; replaced per query).
struct Cached {
    answer: Mutex<Vec<u8>>,
    used: Mutex<Instant>,
}

/// The links to other datacenters (servers only).
pub(crate) struct Datacenters {
    wan: Arc<Gossip>,
    /// This server's datacenter.
    local: String,
    links: Mutex<HashMap<String, Arc<Remote>>>,
    dns: Mutex<HashMap<Question, Arc<Cached>>>,
    /// Recent round-trip times per datacenter.
    rtt: Mutex<HashMap<String, Vec<Duration>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Datacenters {
    /// Links over `wan`, for a server of `local`; starts measuring
    /// round-trip times.
    pub(crate) fn start(wan: Arc<Gossip>, local: String) -> Arc<Datacenters> {
        let dcs = Arc::new(Datacenters {
            wan,
            local,
            links: Mutex::default(),
            dns: Mutex::default(),
            rtt: Mutex::default(),
        });
        tokio::spawn(rtt_loop(Arc::downgrade(&dcs)));
        dcs
    }

    /// The RPC addresses of `dc`'s alive servers.
    fn servers(&self, dc: &str) -> Vec<String> {
        self.wan
            .members()
            .into_iter()
            .filter(|m| {
                m.status == MemberStatus::Alive && m.tags.get("dc").map(String::as_str) == Some(dc)
            })
            .filter_map(|m| {
                let port: u16 = m.tags.get("port")?.parse().ok()?;
                Some(std::net::SocketAddr::new(m.addr.ip(), port).to_string())
            })
            .collect()
    }

    /// The link to `dc`'s servers, `None` when none is alive.
    pub(crate) fn link(&self, dc: &str) -> Option<Arc<Remote>> {
        let servers = self.servers(dc);
        if servers.is_empty() {
            return None;
        }
        let remote = lock(&self.links).entry(dc.to_string()).or_default().clone();
        remote.set_servers(servers);
        Some(remote)
    }

    /// Every datacenter with an alive server, this one first, then by
    /// median round-trip time (unmeasured ones last), then by name: the
    /// order of `/v1/catalog/datacenters`.
    pub(crate) fn sorted(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .wan
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .filter_map(|m| m.tags.get("dc").cloned())
            .collect();
        names.sort();
        names.dedup();
        let rtt = lock(&self.rtt);
        let distance = |dc: &String| -> (u8, Duration) {
            if *dc == self.local {
                return (0, Duration::ZERO);
            }
            match rtt.get(dc).filter(|s| !s.is_empty()) {
                Some(samples) => {
                    let mut sorted = samples.clone();
                    sorted.sort();
                    (1, sorted[sorted.len() / 2])
                }
                None => (2, Duration::ZERO),
            }
        };
        names.sort_by_cached_key(|dc| (distance(dc), dc.clone()));
        names
    }

    /// Measure each other datacenter once: the time of a TCP handshake
    /// with one of its servers' RPC port.
    async fn measure(&self) {
        let mut by_dc: BTreeMap<String, String> = BTreeMap::new();
        for m in self.wan.members() {
            let Some(dc) = m.tags.get("dc") else { continue };
            if m.status != MemberStatus::Alive || *dc == self.local || by_dc.contains_key(dc) {
                continue;
            }
            if let Some(port) = m.tags.get("port").and_then(|p| p.parse::<u16>().ok()) {
                by_dc.insert(
                    dc.clone(),
                    std::net::SocketAddr::new(m.addr.ip(), port).to_string(),
                );
            }
        }
        for (dc, addr) in by_dc {
            let start = Instant::now();
            let ok = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            .is_ok_and(|c| c.is_ok());
            if ok {
                let mut rtt = lock(&self.rtt);
                let samples = rtt.entry(dc).or_default();
                samples.push(start.elapsed());
                if samples.len() > RTT_SAMPLES {
                    samples.remove(0);
                }
            }
        }
    }

    /// A DNS question for `dc`: from the cache, or asked of its servers
    /// (and cached, kept fresh by a blocking call).
    async fn ask_dns(
        self: Arc<Self>,
        dc: String,
        packet: Vec<u8>,
        max_size: usize,
    ) -> Option<Vec<u8>> {
        let remote = self.link(&dc)?;
        let (id, question) = match packet.get(..2) {
            Some(id) => {
                let mut q = packet.clone();
                q[0] = 0;
                q[1] = 0;
                ([id[0], id[1]], q)
            }
            None => return None,
        };
        let key = Question {
            dc,
            packet: question,
            max_size,
        };
        let hit = lock(&self.dns).get(&key).cloned();
        if let Some(cached) = hit {
            *lock(&cached.used) = Instant::now();
            let mut answer = lock(&cached.answer).clone();
            if answer.len() >= 2 {
                answer[..2].copy_from_slice(&id);
            }
            return Some(answer);
        }
        let (answer, index) = match remote.dns_watch(packet, max_size, 0, Duration::ZERO).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(dc = %key.dc, error = %e, "dns: another datacenter did not answer");
                return None;
            }
        };
        if cacheable(&answer) {
            let fresh = {
                let mut dns = lock(&self.dns);
                if dns.len() < CACHE_MAX && !dns.contains_key(&key) {
                    let cached = Arc::new(Cached {
                        answer: Mutex::new(answer.clone()),
                        used: Mutex::new(Instant::now()),
                    });
                    dns.insert(key.clone(), cached.clone());
                    Some(cached)
                } else {
                    None
                }
            };
            if let Some(cached) = fresh {
                tokio::spawn(refresh(Arc::downgrade(&self), remote, key, cached, index));
            }
        }
        Some(answer)
    }
}

/// Only whole NOERROR and NXDOMAIN answers are cached (not a SERVFAIL
/// of a datacenter without a leader, not a truncated one).
fn cacheable(answer: &[u8]) -> bool {
    match (answer.get(2), answer.get(3)) {
        (Some(flags), Some(codes)) => flags & 0x02 == 0 && matches!(codes & 0x0f, 0 | 3),
        _ => false,
    }
}

/// Keep one cached answer fresh: a blocking call that returns when the
/// other datacenter's catalog index moves past the answer's, until the
/// question goes unasked for [`CACHE_IDLE`] or the datacenter stops
/// answering (the next query asks again).
async fn refresh(
    dcs: std::sync::Weak<Datacenters>,
    remote: Arc<Remote>,
    key: Question,
    cached: Arc<Cached>,
    mut index: u64,
) {
    loop {
        let result = remote
            .dns_watch(key.packet.clone(), key.max_size, index, REFRESH_WAIT)
            .await;
        let Some(dcs) = dcs.upgrade() else { return };
        let idle = lock(&cached.used).elapsed() > CACHE_IDLE;
        match result {
            Ok((answer, at)) if !idle && cacheable(&answer) => {
                *lock(&cached.answer) = answer;
                index = at;
            }
            _ => {
                lock(&dcs.dns).remove(&key);
                return;
            }
        }
    }
}

/// Measure round-trip times every [`RTT_INTERVAL`] while the links live.
async fn rtt_loop(dcs: std::sync::Weak<Datacenters>) {
    loop {
        match dcs.upgrade() {
            Some(dcs) => dcs.measure().await,
            None => return,
        }
        tokio::time::sleep(RTT_INTERVAL).await;
    }
}

/// The DNS server's way to other datacenters.
pub(crate) struct DnsLink(pub Arc<Datacenters>);

impl muster_dns::Datacenters for DnsLink {
    fn ask(&self, dc: &str, packet: Vec<u8>, max_size: usize) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.0.clone().ask_dns(dc.to_string(), packet, max_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_noerror_and_nxdomain_answers_are_cached() {
        let header = |flags: u8, codes: u8| vec![0x12, 0x34, flags, codes];
        assert!(cacheable(&header(0x85, 0x80)));
        assert!(cacheable(&header(0x85, 0x83)));
        assert!(!cacheable(&header(0x85, 0x82)), "SERVFAIL");
        assert!(!cacheable(&header(0x87, 0x80)), "truncated");
        assert!(!cacheable(&[0x12]));
    }
}
