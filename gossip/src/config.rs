//! [`GossipConfig`]: what a gossip pool member needs to start, with
//! Consul's LAN and WAN defaults, validation, and the mapping onto foca's
//! SWIM parameters.
//!
//! Timing follows hashicorp/memberlist, which Consul uses: the suspicion
//! timeout is `suspicion_mult * max(1, log10(n)) * probe_interval` and a
//! broadcast is retransmitted `retransmit_mult * ceil(log10(n + 1))`
//! times, both recomputed as the pool grows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::packet::SEALED_OVERHEAD;

/// The largest encoded size of a member's tags (memberlist's meta limit).
pub const MAX_TAGS_SIZE: usize = 512;

/// How a gossip pool member is set up.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Node name, unique in the pool.
    pub node_name: String,
    /// Node ID: a UUID string (`8-4-4-4-12` hex digits).
    pub node_id: String,
    /// Address the UDP and TCP sockets bind to. Port 0 picks a free port
    /// (see [`crate::Gossip::local_addr`]).
    pub bind: SocketAddr,
    /// Address other members reach this one at. Defaults to the bound
    /// address, which must then not be unspecified (`0.0.0.0`).
    pub advertise: Option<SocketAddr>,
    /// Tags: role, dc, ports, build... At most [`MAX_TAGS_SIZE`] bytes
    /// encoded.
    pub tags: BTreeMap<String, String>,
    /// How often a random member is probed (LAN 1s, WAN 5s).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe
    /// indirectly (LAN 500ms, WAN 3s). Must be below `probe_interval`.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly (3).
    pub indirect_checks: usize,
    /// Suspicion timeout multiplier (LAN 4, WAN 6).
    pub suspicion_mult: u32,
    /// Broadcast retransmission multiplier (4).
    pub retransmit_mult: u32,
    /// How often pending updates are gossiped (LAN 200ms, WAN 500ms).
    pub gossip_interval: Duration,
    /// To how many random members each gossip round goes (LAN 3, WAN 4).
    pub gossip_nodes: usize,
    /// How often the full state is exchanged over TCP with a random member
    /// (LAN 30s, WAN 60s). Also how often a lone node retries failed ones.
    pub push_pull_interval: Duration,
    /// Timeout for a TCP exchange: connect, send and receive (10s).
    pub tcp_timeout: Duration,
    /// How long a failed member stays listed before it is reaped (72h).
    pub reconnect_timeout: Duration,
    /// How long a left member stays listed before it is reaped (24h).
    pub tombstone_timeout: Duration,
    /// Largest UDP datagram sent, frame included (1400: below a typical
    /// MTU). SWIM packets are filled up to this and never exceed it.
    pub udp_packet_size: usize,
    /// Encryption keys; None disables gossip encryption.
    pub keyring: Option<Keyring>,
    /// Refuse plaintext packets when a keyring is set (true). False only
    /// while enabling encryption on a running pool.
    pub encrypt_verify_incoming: bool,
    /// Encrypt outgoing packets when a keyring is set (true).
    pub encrypt_verify_outgoing: bool,
    /// Where the keyring is persisted (`data_dir/serf/local.keyring`).
    /// When the file exists at start it wins over `keyring`; keyring
    /// operations rewrite it.
    pub keyring_path: Option<PathBuf>,
}

impl GossipConfig {
    /// Consul's LAN defaults.
    pub fn lan(node_name: impl Into<String>, node_id: impl Into<String>, bind: SocketAddr) -> Self {
        GossipConfig {
            node_name: node_name.into(),
            node_id: node_id.into(),
            bind,
            advertise: None,
            tags: BTreeMap::new(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            udp_packet_size: 1400,
            keyring: None,
            encrypt_verify_incoming: true,
            encrypt_verify_outgoing: true,
            keyring_path: None,
        }
    }

    /// Consul's WAN defaults (servers of all datacenters).
    pub fn wan(node_name: impl Into<String>, node_id: impl Into<String>, bind: SocketAddr) -> Self {
        GossipConfig {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            push_pull_interval: Duration::from_secs(60),
            ..GossipConfig::lan(node_name, node_id, bind)
        }
    }

    /// Checks the config; `start` calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.node_name.is_empty() || self.node_name.len() > 128 {
            return bad("node_name must be 1 to 128 bytes".into());
        }
        if !is_uuid(&self.node_id) {
            return bad(format!("node_id {:?} is not a UUID", self.node_id));
        }
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return bad("probe_interval and probe_timeout must be positive".into());
        }
        if self.probe_timeout >= self.probe_interval {
            return bad("probe_timeout must be shorter than probe_interval".into());
        }
        if self.gossip_interval.is_zero()
            || self.push_pull_interval.is_zero()
            || self.tcp_timeout.is_zero()
        {
            return bad(
                "gossip_interval, push_pull_interval and tcp_timeout must be positive".into(),
            );
        }
        if self.indirect_checks == 0 || self.gossip_nodes == 0 {
            return bad("indirect_checks and gossip_nodes must be at least 1".into());
        }
        if self.suspicion_mult == 0 || self.retransmit_mult == 0 {
            return bad("suspicion_mult and retransmit_mult must be at least 1".into());
        }
        if !(512..=65_000).contains(&self.udp_packet_size) {
            return bad("udp_packet_size must be between 512 and 65000".into());
        }
        let advertised = self.advertise.unwrap_or(self.bind);
        if advertised.ip().is_unspecified() {
            return bad(
                "an advertise address is required when binding to an unspecified address".into(),
            );
        }
        Ok(())
    }

    /// foca's parameters for a pool of `n` members (this one included).
    pub(crate) fn foca_config(&self, n: usize) -> foca::Config {
        let mut c = foca::Config::simple();
        c.probe_period = self.probe_interval;
        c.probe_rtt = self.probe_timeout;
        c.num_indirect_probes =
            NonZeroUsize::new(self.indirect_checks).unwrap_or(NonZeroUsize::MIN);
        c.max_transmissions = retransmit_limit(self.retransmit_mult, n);
        c.suspect_to_down_after = suspicion_timeout(self.suspicion_mult, n, self.probe_interval);
        // foca forgets a down identity after this; the member table keeps
        // its own (longer or equal) clock for listing and reaping.
        c.remove_down_after = Some(self.reconnect_timeout.max(self.tombstone_timeout));
        c.max_packet_size = NonZeroUsize::new(self.udp_packet_size.saturating_sub(SEALED_OVERHEAD))
            .unwrap_or(NonZeroUsize::MIN);
        c.notify_down_members = true;
        c.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.push_pull_interval,
            num_members: NonZeroUsize::MIN,
        });
        c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.push_pull_interval * 2,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: NonZeroUsize::new(self.gossip_nodes).unwrap_or(NonZeroUsize::MIN),
        });
        c
    }
}

/// Tags must fit in a gossip packet ([`MAX_TAGS_SIZE`] bytes encoded).
pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    let size = postcard::to_allocvec(tags)
        .map_err(|e| Error::Codec(format!("encode tags: {e}")))?
        .len();
    if size > MAX_TAGS_SIZE {
        return Err(Error::TagsTooLarge {
            size,
            max: MAX_TAGS_SIZE,
        });
    }
    Ok(())
}

/// memberlist's suspicion timeout: `mult * max(1, log10(n)) * interval`.
pub(crate) fn suspicion_timeout(mult: u32, n: usize, interval: Duration) -> Duration {
    let n = n.max(1) as f64;
    let scale = n.log10().max(1.0) * f64::from(mult);
    interval.mul_f64(scale)
}

/// memberlist's retransmit limit: `mult * ceil(log10(n + 1))`, in 1..=255.
fn retransmit_limit(mult: u32, n: usize) -> NonZeroU8 {
    let limit = f64::from(mult) * ((n as f64) + 1.0).log10().ceil();
    let limit = limit.clamp(1.0, 255.0) as u8;
    NonZeroU8::new(limit).unwrap_or(NonZeroU8::MIN)
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GossipConfig {
        GossipConfig::lan(
            "n1",
            "11111111-2222-3333-4444-555555555555",
            "127.0.0.1:0".parse().expect("addr"),
        )
    }

    #[test]
    fn lan_defaults_validate_and_match_consul() -> Result<()> {
        let c = cfg();
        c.validate()?;
        assert_eq!(c.probe_interval, Duration::from_secs(1));
        assert_eq!(c.probe_timeout, Duration::from_millis(500));
        let f = c.foca_config(5);
        assert_eq!(f.suspect_to_down_after, Duration::from_secs(4));
        assert_eq!(f.max_transmissions.get(), 4);
        assert_eq!(
            c.foca_config(100).suspect_to_down_after,
            Duration::from_secs(8)
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_configs() {
        let mut c = cfg();
        c.node_id = "nope".into();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.probe_timeout = c.probe_interval;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.bind = "0.0.0.0:0".parse().expect("addr");
        assert!(c.validate().is_err());
        c.advertise = Some("10.0.0.1:8301".parse().expect("addr"));
        assert!(c.validate().is_ok());
    }
}
