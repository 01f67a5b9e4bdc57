//! The HTTP API's view of the cluster, over gossip and (on a server) raft:
//! `/v1/agent/members|join|leave|force-leave`, `/v1/operator/raft/*`,
//! `/v1/operator/keyring`, `/v1/catalog/datacenters`, requests for other
//! datacenters (`?dc=`), sent to one of their servers, autopilot's view of
//! the servers (`/v1/operator/autopilot/*`), and user events
//! (`/v1/event/*`) over the LAN pool.

use std::sync::Arc;
use std::time::Duration;

use muster_api::cluster::{
    ClusterBackend, KeyringOp, KeyringReply, MemberInfo, MemberStatusCode, PeerRef,
    RaftConfiguration, RaftServer as ApiRaftServer,
};
use muster_api::BoxFuture;
use muster_engine::Engine;
use muster_gossip::{Gossip, KeyAnswer, KeyOp, MemberStatus};
// Autopilot.
use muster_api::autopilot::{AutopilotConfiguration, AutopilotServer};
// User events.
use muster_api::event::UserEvent as ApiUserEvent;
use muster_gossip::UserEvent;
use tokio::sync::broadcast::error::RecvError;

use super::cluster::{resolve, DEFAULT_SERF_LAN_PORT, DEFAULT_SERF_WAN_PORT};

/// The HTTP API's view of the cluster (`/v1/agent/members`, join, leave,
/// force-leave, `/v1/operator/raft/*`, `/v1/operator/keyring`).
pub(crate) struct ClusterApi {
    pub gossip: Arc<Gossip>,
    /// The WAN pool, on servers.
    pub wan: Option<Arc<Gossip>>,
    /// The links to other datacenters (for `?dc=`), on servers.
    pub datacenters: Option<Arc<super::datacenters::Datacenters>>,
    /// The engine on a server; `None` on a client agent, which forwards
    /// the raft endpoints to a server and never calls those methods.
    pub engine: Option<Engine>,
    /// Notified after a `leave`: the agent shuts down.
    pub shutdown: Arc<tokio::sync::Notify>,
}

fn status_code(s: MemberStatus) -> MemberStatusCode {
    match s {
        MemberStatus::Alive => MemberStatusCode::Alive,
        MemberStatus::Leaving => MemberStatusCode::Leaving,
        MemberStatus::Left => MemberStatusCode::Left,
        MemberStatus::Failed => MemberStatusCode::Failed,
    }
}

impl ClusterApi {
    /// The LAN pool, or the WAN pool (servers only).
    fn pool(&self, wan: bool) -> Result<&Arc<Gossip>, String> {
        if !wan {
            return Ok(&self.gossip);
        }
        self.wan
            .as_ref()
            .ok_or_else(|| "WAN pool is available only on servers".to_string())
    }

    fn engine(&self) -> Result<&Engine, String> {
        self.engine
            .as_ref()
            .ok_or_else(|| "not a server: raft runs on the servers".to_string())
    }

    /// The node UUID gossip knows for a raft id (the `ID` Consul shows),
    /// or the raft id itself.
    fn server_id(&self, raft_id: u64) -> String {
        let id = raft_id.to_string();
        self.gossip
            .members()
            .into_iter()
            .find(|m| m.tags.get("raft_id") == Some(&id))
            .map(|m| m.id)
            .unwrap_or(id)
    }
}

impl ClusterBackend for ClusterApi {
    fn members(&self, wan: bool) -> Vec<MemberInfo> {
        let Ok(pool) = self.pool(wan) else {
            return Vec::new();
        };
        pool.members()
            .into_iter()
            .map(|m| MemberInfo {
                name: m.name,
                addr: m.addr.ip().to_string(),
                port: m.addr.port(),
                tags: m.tags,
                status: status_code(m.status),
            })
            .collect()
    }

    fn datacenters(&self) -> Vec<String> {
        self.datacenters
            .as_ref()
            .map(|dcs| dcs.sorted())
            .unwrap_or_default()
    }

    fn forward_dc(
        &self,
        dc: String,
        req: hyper::Request<bytes::Bytes>,
    ) -> BoxFuture<'_, Option<Result<hyper::Response<bytes::Bytes>, String>>> {
        Box::pin(async move {
            let remote = self.datacenters.as_ref()?.link(&dc)?;
            Some(remote.http(req).await)
        })
    }

    fn join(&self, addrs: Vec<String>, wan: bool) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async move {
            let pool = self.pool(wan)?;
            let port = if wan {
                DEFAULT_SERF_WAN_PORT
            } else {
                DEFAULT_SERF_LAN_PORT
            };
            let mut resolved = Vec::new();
            for a in &addrs {
                resolved.extend(resolve(a, port).await);
            }
            pool.join(&resolved).await.map_err(|e| e.to_string())
        })
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), String>> {
        let pools: Vec<Arc<Gossip>> = std::iter::once(self.gossip.clone())
            .chain(self.wan.clone())
            .collect();
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            // Spawned: a dropped request must not cut the leave short.
            let done = tokio::spawn(async move {
                let mut result = Ok(());
                for pool in pools {
                    if let Err(e) = pool.leave(Duration::from_secs(5)).await {
                        result = Err(e);
                    }
                }
                shutdown.notify_one();
                result
            });
            match done.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn force_leave(
        &self,
        node: String,
        prune: bool,
        wan: bool,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.pool(wan)?
                .force_leave(&node, prune)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn raft_configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, String>> {
        Box::pin(async move {
            let (servers, index) = self.engine()?.raft_servers();
            Ok(RaftConfiguration {
                servers: servers
                    .into_iter()
                    .map(|s| {
                        ApiRaftServer::new(
                            self.server_id(s.id),
                            s.node.name,
                            s.node.addr,
                            s.leader,
                            s.voter,
                        )
                    })
                    .collect(),
                index,
            })
        })
    }

    fn remove_raft_peer(&self, by: PeerRef) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let engine = self.engine()?;
            let (servers, _) = engine.raft_servers();
            let found = servers.iter().find(|s| match &by {
                PeerRef::Id(id) => *id == s.id.to_string() || *id == self.server_id(s.id),
                PeerRef::Address(addr) => *addr == s.node.addr,
            });
            let Some(server) = found else {
                return Err(match by {
                    PeerRef::Id(id) => format!("id {id:?} was not found in the Raft configuration"),
                    PeerRef::Address(a) => {
                        format!("address {a:?} was not found in the Raft configuration")
                    }
                });
            };
            engine
                .remove_server(server.id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn keyring(&self, op: KeyringOp) -> BoxFuture<'_, Result<Vec<KeyringReply>, String>> {
        Box::pin(async move {
            let op = match op {
                KeyringOp::List => KeyOp::List,
                KeyringOp::Install(k) => KeyOp::Install(k),
                KeyringOp::Use(k) => KeyOp::Use(k),
                KeyringOp::Remove(k) => KeyOp::Remove(k),
            };
            let list = op == KeyOp::List;
            let reply = keyring_reply(self.gossip.keyring_all(op).await);
            if reply.num_nodes == 0 {
                // This agent itself refused (no encryption, unknown key...).
                let msg = reply.messages.into_values().next().unwrap_or_default();
                return Err(msg);
            }
            if !list && !reply.messages.is_empty() {
                let total = reply.num_nodes + reply.messages.len();
                let detail: Vec<String> = reply
                    .messages
                    .iter()
                    .map(|(node, e)| format!("{node}: {e}"))
                    .collect();
                return Err(format!(
                    "{} of {total} nodes reported failure: {}",
                    reply.messages.len(),
                    detail.join("; ")
                ));
            }
            Ok(if list { vec![reply] } else { Vec::new() })
        })
    }

    // ---- Autopilot (`/v1/operator/autopilot/*`): `autopilot/health.rs`.

    fn autopilot_defaults(&self) -> Option<AutopilotConfiguration> {
        self.engine
            .as_ref()
            .and(super::autopilot::health::defaults())
    }

    fn autopilot_servers(
        &self,
        config: AutopilotConfiguration,
    ) -> BoxFuture<'_, Result<Vec<AutopilotServer>, String>> {
        Box::pin(async move {
            let engine = self.engine()?;
            let members = self.gossip.members();
            Ok(super::autopilot::health::servers(engine, &members, &config).await)
        })
    }

    // ---- User events (`/v1/event/*`): the LAN pool carries them. -------

    fn fire_user_event(&self, event: ApiUserEvent) -> BoxFuture<'_, Result<ApiUserEvent, String>> {
        Box::pin(async move {
            self.gossip
                .fire_event(to_gossip_event(event))
                .await
                .map(from_gossip_event)
                .map_err(|e| e.to_string())
        })
    }

    fn user_events(&self) -> Vec<ApiUserEvent> {
        self.gossip
            .user_events()
            .into_iter()
            .map(from_gossip_event)
            .collect()
    }

    fn next_user_event(&self) -> BoxFuture<'static, ()> {
        let mut next = self.gossip.subscribe_events();
        Box::pin(async move {
            // Closed: gossip is gone and no event will come.
            if let Err(RecvError::Closed) = next.recv().await {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// A user event from the API, for gossip.
fn to_gossip_event(e: ApiUserEvent) -> UserEvent {
    UserEvent {
        id: e.id,
        name: e.name,
        payload: e.payload,
        node_filter: e.node_filter,
        service_filter: e.service_filter,
        tag_filter: e.tag_filter,
        version: e.version,
        ltime: e.ltime,
    }
}

/// A user event from gossip, for the API.
fn from_gossip_event(e: UserEvent) -> ApiUserEvent {
    ApiUserEvent {
        id: e.id,
        name: e.name,
        payload: e.payload,
        node_filter: e.node_filter,
        service_filter: e.service_filter,
        tag_filter: e.tag_filter,
        version: e.version,
        ltime: e.ltime,
    }
}

/// Consul's keyring summary of the members' answers: how many hold each
/// key and use it as primary, how many answered, and who failed.
fn keyring_reply(answers: Vec<KeyAnswer>) -> KeyringReply {
    let mut reply = KeyringReply::default();
    for a in answers {
        match a.result {
            Ok(keys) => {
                reply.num_nodes += 1;
                if let Some(primary) = keys.first() {
                    *reply.primary_keys.entry(primary.clone()).or_default() += 1;
                }
                for k in keys {
                    *reply.keys.entry(k).or_default() += 1;
                }
            }
            Err(e) => {
                reply.messages.insert(a.node, e);
            }
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_answers_are_counted_per_key_and_primary() {
        let ok = |node: &str, keys: &[&str]| KeyAnswer {
            node: node.to_string(),
            result: Ok(keys.iter().map(|k| k.to_string()).collect()),
        };
        let reply = keyring_reply(vec![
            ok("a", &["new", "old"]),
            ok("b", &["old", "new"]),
            ok("c", &["old"]),
            KeyAnswer {
                node: "d".into(),
                result: Err("timed out".into()),
            },
        ]);
        assert_eq!(reply.num_nodes, 3);
        assert_eq!(reply.keys.get("old"), Some(&3));
        assert_eq!(reply.keys.get("new"), Some(&2));
        assert_eq!(reply.primary_keys.get("old"), Some(&2));
        assert_eq!(reply.primary_keys.get("new"), Some(&1));
        assert_eq!(
            reply.messages.get("d").map(String::as_str),
            Some("timed out")
        );
    }
}
