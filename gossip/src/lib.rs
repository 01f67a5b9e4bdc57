//! muster-gossip: membership and failure detection for a gossip pool (the
//! LAN pool of a datacenter, or the WAN pool of servers), SWIM via
//! [foca](https://docs.rs/foca) over tokio UDP, with TCP for full-state
//! exchanges and optional AES-GCM encryption.
//!
//! ```no_run
//! # async fn demo() -> muster_gossip::Result<()> {
//! use std::net::SocketAddr;
//! use muster_gossip::{Gossip, GossipConfig};
//! let bind = SocketAddr::from(([127, 0, 0, 1], 8301));
//! let cfg = GossipConfig::lan("node-1", "3f1c2b4a-0000-4000-8000-000000000001", bind);
//! let gossip = Gossip::start(cfg).await?;
//! gossip.join(&[SocketAddr::from(([127, 0, 0, 1], 8311))]).await?;
//! let mut events = gossip.subscribe();
//! while let Ok(event) = events.recv().await {
//!     println!("{}: {}", event.kind(), event.member().name);
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`gossip`]: [`Gossip`], the public handle.
//! - [`config`]: [`GossipConfig`] with Consul's LAN/WAN defaults.
//! - [`member`]: [`Member`], [`MemberStatus`], [`MemberEvent`].
//! - [`event`]: [`UserEvent`], the events `consul event` fires, and the
//!   log of those seen (Lamport clock, duplicate IDs, the last 256).
//! - [`keyring`]: [`Keyring`], keys and their JSON file.
//! - [`packet`]: the frame on the wire, plaintext or AES-GCM sealed.
//! - `driver`: the task that runs foca: timers, datagrams, commands.
//! - `table`: the member table and its status state machine.
//! - `transport`: UDP/TCP sockets and push/pull exchanges.
//! - `wire`: tags, leave intents and sync messages (postcard).
//! - `identity`: the small identity foca gossips.
//! - [`stats`]: counters; [`error`]: the crate's [`Error`].
//!
//! # Design
//!
//! - SWIM (probe, indirect probe, suspicion, dissemination) is foca's; its
//!   packets never exceed `udp_packet_size`, so UDP needs no fallback.
//!   TCP carries push/pull: a full state exchange on join, every
//!   `push_pull_interval`, and to fetch a member's tags when they did not
//!   arrive by gossip.
//! - Tags and node IDs are not in foca's identity (it rides in every
//!   ping); they are versioned custom broadcasts.
//! - Left vs failed: foca only knows "down". A leaving node first
//!   broadcasts a leave intent, then declares itself down; a down member
//!   with an intent is left, without one failed. A late intent turns
//!   failed into left, as in serf.
//! - User events are custom broadcasts too: fired on one node, recorded
//!   there, and re-gossiped by each node the first time it sees their ID.
//! - Key operations apply to one node ([`Gossip::install_key`]) or to
//!   every alive member ([`Gossip::keyring_all`]).

pub mod config;
mod driver;
pub mod error;
pub mod event;
pub mod gossip;
mod identity;
pub mod keyops;
pub mod keyring;
pub mod member;
pub mod packet;
pub mod stats;
mod table;
mod transport;
mod wire;

pub use config::GossipConfig;
pub use error::{Error, Result};
pub use event::UserEvent;
pub use gossip::Gossip;
pub use keyops::{KeyAnswer, KeyOp};
pub use keyring::Keyring;
pub use member::{Member, MemberEvent, MemberStatus};
pub use stats::GossipStats;
#[doc(hidden)]
pub use wire::fuzz_decode_payloads;
