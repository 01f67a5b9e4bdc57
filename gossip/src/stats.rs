//! Counters for what the transport did, and the rate-limited warning for
//! dropped packets.
//!
//! A flood of bad packets (a node with the wrong key, a port scan) must not
//! flood the log: at most one warning per second, carrying how many
//! drops it stands for. Every drop is counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::packet::Channel;
use crate::table::lock;

/// At most one "dropped packet" warning per this period.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(1);

/// A snapshot of the transport counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// UDP datagrams received (accepted or not).
    pub udp_packets_received: u64,
    /// UDP datagrams sent.
    pub udp_packets_sent: u64,
    /// Packets and TCP messages refused at the frame level, all reasons.
    pub dropped_packets: u64,
    /// Of those, refused because no installed key decrypts them, or
    /// because they were encrypted and this node has no keyring.
    pub decrypt_failures: u64,
    /// Of those, plaintext refused because encryption is required.
    pub plaintext_rejected: u64,
    /// Push/pull state exchanges completed (either side).
    pub syncs_completed: u64,
    /// Push/pull exchanges that failed (connect, timeout, refused frame).
    pub syncs_failed: u64,
}

/// Live counters, updated by the transport.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) udp_received: AtomicU64,
    pub(crate) udp_sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) decrypt_failures: AtomicU64,
    pub(crate) plaintext_rejected: AtomicU64,
    pub(crate) syncs_completed: AtomicU64,
    pub(crate) syncs_failed: AtomicU64,
    /// When the last drop warning was logged, and drops since then.
    warn_state: Mutex<(Option<Instant>, u64)>,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GossipStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GossipStats {
            udp_packets_received: get(&self.udp_received),
            udp_packets_sent: get(&self.udp_sent),
            dropped_packets: get(&self.dropped),
            decrypt_failures: get(&self.decrypt_failures),
            plaintext_rejected: get(&self.plaintext_rejected),
            syncs_completed: get(&self.syncs_completed),
            syncs_failed: get(&self.syncs_failed),
        }
    }

    /// Counts a refused packet and logs it at warn, rate-limited.
    pub(crate) fn dropped(&self, from: SocketAddr, channel: Channel, err: &Error) {
        Self::bump(&self.dropped);
        match err {
            Error::DecryptFailed | Error::NoKeyring => Self::bump(&self.decrypt_failures),
            Error::PlaintextRejected => Self::bump(&self.plaintext_rejected),
            _ => {}
        }
        let suppressed = {
            let mut state = lock(&self.warn_state);
            let now = Instant::now();
            let due = state
                .0
                .is_none_or(|last| now.saturating_duration_since(last) >= WARN_EVERY);
            if due {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            } else {
                state.1 += 1;
                None
            }
        };
        if let Some(suppressed) = suppressed {
            tracing::warn!(
                %from,
                ?channel,
                reason = %err,
                suppressed_since_last_warning = suppressed,
                "gossip: dropped packet (check that every agent has the same encryption keys)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason() {
        let c = Counters::default();
        let from = SocketAddr::from(([127, 0, 0, 1], 9));
        for _ in 0..100 {
            c.dropped(from, Channel::Swim, &Error::DecryptFailed);
        }
        c.dropped(from, Channel::Sync, &Error::PlaintextRejected);
        let s = c.snapshot();
        assert_eq!(s.dropped_packets, 101);
        assert_eq!(s.decrypt_failures, 100);
        assert_eq!(s.plaintext_rejected, 1);
        // Within one WARN_EVERY window only the first was logged.
        assert_eq!(lock(&c.warn_state).1, 100);
    }
}
