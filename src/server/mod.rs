//! The agent process: everything `muster agent` runs once its flags and
//! config files are validated (`cli::agent` does that). One file each:
//! - `serve.rs`: running a server (engine, RPC, gossip, agent, HTTP, DNS)
//!   or a client agent, the readiness line, signals and shutdown;
//! - `dns.rs`: the DNS listeners and settings;
//! - `https.rs`: the HTTP and HTTPS listeners of the API, and HTTPS's TLS;
//!   `rpc_tls.rs`: TLS on the server RPC port;
//! - `client_link.rs`: where client agents and servers meet (forwarded
//!   HTTP requests and relayed DNS questions);
//! - `cluster.rs`: gossip pools, joins, the known-members file, a client's
//!   server list; `form.rs`: forming the raft cluster; `reconcile.rs`: the
//!   leader's reconcile of members into the catalog; `autopilot.rs`: the
//!   leader's server management;
//! - `cluster_api.rs`: the HTTP API's view of gossip and raft;
//! - `node_id.rs`: the agent's identity on disk;
//! - `watches.rs`: the watches of the `watches` config key.

mod autopilot;
mod client_link;
pub(crate) mod cluster;
mod cluster_api;
mod datacenters;
pub(crate) mod dns;
mod form;
pub(crate) mod https;
pub(crate) mod node_id;
mod reconcile;
pub(crate) mod rpc_tls;
pub(crate) mod serve;
mod wan;
mod watches;
