//! A server's place in the WAN pool, kept as Consul keeps it: every server
//! brings the other servers of its datacenter into the WAN pool (Consul's
//! "flood join": each LAN server member advertises its WAN port in the
//! `wan_join_port` tag, and a server joins any such peer its WAN pool does
//! not list alive), so one server of a datacenter joining another
//! datacenter federates them all, and a restarted server finds its way back
//! through its LAN peers even when no `-retry-join-wan` names them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use muster_gossip::{Gossip, MemberStatus};

use super::cluster::ROLE_SERVER;

/// The LAN tag carrying a server's WAN gossip port (Consul's).
pub(crate) const WAN_JOIN_PORT_TAG: &str = "wan_join_port";

/// How often a server checks that every server of its datacenter is in its
/// WAN pool, besides on every LAN membership event.
const FLOOD_INTERVAL: Duration = Duration::from_secs(2);

/// The WAN addresses of this datacenter's alive servers (from the LAN
/// pool's tags) that `wan` does not list alive: the ones to join.
fn missing_from_wan(lan: &Gossip, wan: &Gossip, dc: &str) -> Vec<(String, SocketAddr)> {
    let in_wan: Vec<String> = wan
        .members()
        .into_iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .map(|m| m.name)
        .collect();
    let own = lan.name().to_string();
    lan.members()
        .into_iter()
        .filter(|m| {
            m.status == MemberStatus::Alive
                && m.name != own
                && m.tags.get("role").map(String::as_str) == Some(ROLE_SERVER)
                && m.tags.get("dc").map(String::as_str) == Some(dc)
        })
        .filter_map(|m| {
            let port: u16 = m.tags.get(WAN_JOIN_PORT_TAG)?.parse().ok()?;
            let wan_name = format!("{}.{dc}", m.name);
            (!in_wan.contains(&wan_name)).then(|| (wan_name, SocketAddr::new(m.addr.ip(), port)))
        })
        .collect()
}

/// Flood join, for the life of the server: on every LAN membership event
/// and every [`FLOOD_INTERVAL`], join the WAN pool of each server of this
/// datacenter that the WAN pool does not list alive.
pub(super) async fn flood_join_loop(lan: Arc<Gossip>, wan: Arc<Gossip>, dc: String) {
    let mut events = lan.subscribe();
    loop {
        for (name, addr) in missing_from_wan(&lan, &wan, &dc) {
            match wan.join(&[addr]).await {
                Ok(_) => tracing::info!(
                    "(WAN) flood-joined a server of this datacenter: server={name} address={addr}"
                ),
                Err(e) => {
                    tracing::debug!(server = %name, %addr, error = %e, "(WAN) flood join failed")
                }
            }
        }
        tokio::select! {
            ev = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                    return;
                }
            }
            () = tokio::time::sleep(FLOOD_INTERVAL) => {}
        }
    }
}
