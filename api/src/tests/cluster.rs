//! Membership and operator handler tests (`/v1/agent/members|join|leave|
//! force-leave`, `/v1/operator/raft/*`, `/v1/operator/keyring`) over an
//! in-memory fake of [`ClusterBackend`] that records every call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::agent::FakeAgent;
use super::{call_with, open, Real, Reply, TestResult};
use crate::cluster::{
    BoxFuture, ClusterBackend, KeyringOp, KeyringReply, MemberInfo, MemberStatusCode, PeerRef,
    RaftConfiguration, RaftServer, NOT_AVAILABLE,
};
use crate::router::{Serving, State};
use crate::ApiConfig;

const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const K2: &str = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";

/// Everything the fake was asked to do, and what it answers.
#[derive(Default)]
struct ClusterState {
    lan: Vec<MemberInfo>,
    wan: Vec<MemberInfo>,
    joins: Vec<(Vec<String>, bool)>,
    leaves: usize,
    force_leaves: Vec<(String, bool, bool)>,
    removed: Vec<PeerRef>,
    keys: Vec<String>,
    primary: String,
    /// Fail every operation with this message.
    fail: Option<String>,
}

#[derive(Default)]
struct FakeCluster {
    state: Mutex<ClusterState>,
}

impl FakeCluster {
    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the state unless a failure is set.
    fn op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ClusterState) -> Result<T, String>,
    ) -> BoxFuture<'_, Result<T, String>> {
        let mut s = self.lock();
        let r = match s.fail.clone() {
            Some(msg) => Err(msg),
            None => f(&mut s),
        };
        Box::pin(async move { r })
    }
}

impl ClusterBackend for FakeCluster {
    fn members(&self, wan: bool) -> Vec<MemberInfo> {
        let s = self.lock();
        if wan {
            s.wan.clone()
        } else {
            s.lan.clone()
        }
    }
    fn join(&self, addrs: Vec<String>, wan: bool) -> BoxFuture<'_, Result<usize, String>> {
        self.op(move |s| {
            let n = addrs.len();
            s.joins.push((addrs, wan));
            Ok(n)
        })
    }
    fn leave(&self) -> BoxFuture<'_, Result<(), String>> {
        self.op(|s| {
            s.leaves += 1;
            Ok(())
        })
    }
    fn force_leave(
        &self,
        node: String,
        prune: bool,
        wan: bool,
    ) -> BoxFuture<'_, Result<(), String>> {
        self.op(move |s| {
            s.force_leaves.push((node, prune, wan));
            Ok(())
        })
    }
    fn raft_configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, String>> {
        self.op(|_| {
            Ok(RaftConfiguration {
                servers: vec![
                    RaftServer::new("id-1", "s1", "10.0.0.1:8300", true, true),
                    RaftServer::new("id-2", "s2", "10.0.0.2:8300", false, false),
                ],
                index: 42,
            })
        })
    }
    fn remove_raft_peer(&self, by: PeerRef) -> BoxFuture<'_, Result<(), String>> {
        self.op(move |s| {
            s.removed.push(by);
            Ok(())
        })
    }
    fn keyring(&self, op: KeyringOp) -> BoxFuture<'_, Result<Vec<KeyringReply>, String>> {
        self.op(move |s| {
            match op {
                KeyringOp::List => {
                    return Ok(vec![
                        KeyringReply::local(true, &s.keys, &s.primary),
                        KeyringReply::local(false, &s.keys, &s.primary),
                    ])
                }
                KeyringOp::Install(k) => s.keys.push(k),
                KeyringOp::Use(k) if s.keys.contains(&k) => s.primary = k,
                KeyringOp::Use(_) => return Err("Requested key is not in the keyring".into()),
                KeyringOp::Remove(k) if k == s.primary => {
                    return Err("Removing the primary key is not allowed".into())
                }
                KeyringOp::Remove(k) => s.keys.retain(|x| *x != k),
            }
            Ok(Vec::new())
        })
    }
}

type St = Arc<State>;

fn member(name: &str, addr: &str, role: &str, status: MemberStatusCode) -> MemberInfo {
    MemberInfo {
        name: name.into(),
        addr: addr.into(),
        port: 8301,
        tags: BTreeMap::from([
            ("role".to_string(), role.to_string()),
            ("dc".to_string(), "dc1".to_string()),
        ]),
        status,
    }
}

/// A server state with a fake cluster of three LAN members and one WAN
/// member, keyring `[K1]` with K1 primary.
async fn cluster_state() -> Result<(St, Arc<FakeCluster>, Real), Box<dyn std::error::Error>> {
    let real = open(true).await?;
    let cluster = Arc::new(FakeCluster::default());
    {
        let mut s = cluster.lock();
        s.lan = vec![
            member("n3", "10.0.0.3", "node", MemberStatusCode::Failed),
            member("n1", "10.0.0.1", "consul", MemberStatusCode::Alive),
            member("n2", "10.0.0.2", "node", MemberStatusCode::Left),
        ];
        let mut wan = member("n1.dc1", "10.0.0.1", "consul", MemberStatusCode::Alive);
        wan.port = 8302;
        s.wan = vec![wan];
        s.keys = vec![K1.to_string()];
        s.primary = K1.to_string();
    }
    let mut cfg = ApiConfig::new("dc1", "n1", "00000000-0000-4000-8000-000000000001");
    cfg.cluster = Some(cluster.clone());
    let st = Arc::new(State {
        serving: Serving::Server(real.engine.clone()),
        agent: Arc::new(FakeAgent::default()),
        cfg,
        local_addr: None,
        shared: Default::default(),
    });
    Ok((st, cluster, real))
}

async fn req(
    st: &St,
    method: Method,
    uri: &str,
    body: &str,
) -> Result<Reply, Box<dyn std::error::Error>> {
    call_with(st, method, uri, body.to_string()).await
}

/// Status and body of a call.
async fn sb(
    st: &St,
    method: Method,
    uri: &str,
    body: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let r = req(st, method, uri, body).await?;
    Ok((r.status.as_u16(), r.body))
}

fn ok() -> (u16, String) {
    (200, String::new())
}

#[tokio::test]
async fn api_cluster_members_consul_shape_sorted_and_wan() -> TestResult {
    let (st, _, _real) = cluster_state().await?;
    let r = req(&st, Method::GET, "/v1/agent/members?segment=x", "").await?;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&r.body)?;
    assert_eq!(
        v[0],
        json!({"Name":"n1","Addr":"10.0.0.1","Port":8301,
               "Tags":{"dc":"dc1","role":"consul"},"Status":1,
               "ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2,
               "DelegateMin":2,"DelegateMax":5,"DelegateCur":4})
    );
    let names: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["Name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["n1", "n2", "n3"]);
    assert_eq!((&v[1]["Status"], &v[2]["Status"]), (&json!(3), &json!(4)));
    // Field order is Consul's.
    assert!(r
        .body
        .starts_with(r#"[{"Name":"n1","Addr":"10.0.0.1","Port":8301,"Tags":"#));
    let (_, body) = sb(&st, Method::GET, "/v1/agent/members?wan=1", "").await?;
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(
        (&v[0]["Name"], &v[0]["Port"]),
        (&json!("n1.dc1"), &json!(8302))
    );
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    // An empty `wan=` is the LAN pool, as in Consul.
    let (_, body) = sb(&st, Method::GET, "/v1/agent/members?wan=", "").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&body)?
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    Ok(())
}

#[tokio::test]
async fn api_cluster_join_leave_force_leave() -> TestResult {
    let (st, cluster, _real) = cluster_state().await?;
    assert_eq!(
        sb(&st, Method::PUT, "/v1/agent/join/10.0.0.9:8301", "").await?,
        ok()
    );
    assert_eq!(
        sb(&st, Method::PUT, "/v1/agent/join/10.0.0.9?wan=1", "").await?,
        ok()
    );
    assert_eq!(sb(&st, Method::PUT, "/v1/agent/join/", "").await?.0, 400);
    assert_eq!(sb(&st, Method::GET, "/v1/agent/join/x", "").await?.0, 405);
    assert_eq!(sb(&st, Method::PUT, "/v1/agent/leave", "").await?, ok());
    assert_eq!(sb(&st, Method::POST, "/v1/agent/leave", "").await?.0, 405);
    assert_eq!(
        sb(&st, Method::PUT, "/v1/agent/force-leave/n3", "").await?,
        ok()
    );
    assert_eq!(
        sb(&st, Method::PUT, "/v1/agent/force-leave/n3?prune", "").await?,
        ok()
    );
    assert_eq!(
        sb(
            &st,
            Method::PUT,
            "/v1/agent/force-leave/n3.dc1?prune=1&wan=1",
            ""
        )
        .await?,
        ok()
    );
    assert_eq!(
        sb(&st, Method::PUT, "/v1/agent/force-leave/", "").await?.0,
        400
    );
    {
        let s = cluster.lock();
        assert_eq!(
            s.joins,
            [
                (vec!["10.0.0.9:8301".to_string()], false),
                (vec!["10.0.0.9".to_string()], true)
            ]
        );
        assert_eq!(s.leaves, 1);
        assert_eq!(
            s.force_leaves,
            [
                ("n3".to_string(), false, false),
                ("n3".to_string(), true, false),
                ("n3.dc1".to_string(), true, true)
            ]
        );
    }
    cluster.lock().fail = Some("No node found with name 'zz'".into());
    let failed = (500, "No node found with name 'zz'".to_string());
    assert_eq!(
        sb(&st, Method::PUT, "/v1/agent/force-leave/zz", "").await?,
        failed
    );
    assert_eq!(sb(&st, Method::PUT, "/v1/agent/join/zz", "").await?, failed);
    assert_eq!(sb(&st, Method::PUT, "/v1/agent/leave", "").await?, failed);
    Ok(())
}

#[tokio::test]
async fn api_cluster_raft_configuration_and_remove_peer() -> TestResult {
    let (st, cluster, _real) = cluster_state().await?;
    let (code, body) = sb(&st, Method::GET, "/v1/operator/raft/configuration", "").await?;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"Servers":[
            {"ID":"id-1","Node":"s1","Address":"10.0.0.1:8300","Leader":true,
             "ProtocolVersion":"3","Voter":true,"LastIndex":0},
            {"ID":"id-2","Node":"s2","Address":"10.0.0.2:8300","Leader":false,
             "ProtocolVersion":"3","Voter":false,"LastIndex":0}],"Index":42})
    );
    let (code, _) = sb(
        &st,
        Method::GET,
        "/v1/operator/raft/configuration?stale",
        "",
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(
        sb(
            &st,
            Method::GET,
            "/v1/operator/raft/configuration?dc=dc9",
            ""
        )
        .await?,
        (500, "No path to datacenter".to_string())
    );
    let peer = "/v1/operator/raft/peer";
    assert_eq!(
        sb(&st, Method::DELETE, &format!("{peer}?id=id-2"), "").await?,
        ok()
    );
    assert_eq!(
        sb(
            &st,
            Method::DELETE,
            &format!("{peer}?address=10.0.0.2:8300"),
            ""
        )
        .await?,
        ok()
    );
    assert_eq!(
        sb(&st, Method::DELETE, &format!("{peer}?id=a&address=b"), "").await?,
        (400, "Must specify only one of ?id or ?address".to_string())
    );
    let (code, body) = sb(&st, Method::DELETE, peer, "").await?;
    assert_eq!(code, 400);
    assert!(body.starts_with("Must specify either ?id"), "{body}");
    let r = req(&st, Method::GET, peer, "").await?;
    assert_eq!(
        (r.status.as_u16(), r.header("allow")),
        (405, "OPTIONS,DELETE")
    );
    assert_eq!(
        cluster.lock().removed,
        [
            PeerRef::Id("id-2".into()),
            PeerRef::Address("10.0.0.2:8300".into())
        ]
    );
    cluster.lock().fail = Some("id \"x\" was not found in the Raft configuration".into());
    assert_eq!(
        sb(&st, Method::DELETE, &format!("{peer}?id=x"), "").await?,
        (
            500,
            "id \"x\" was not found in the Raft configuration".to_string()
        )
    );
    assert_eq!(
        sb(&st, Method::GET, "/v1/operator/raft/configuration", "")
            .await?
            .0,
        500
    );
    Ok(())
}

#[tokio::test]
async fn api_cluster_keyring_list_install_use_remove() -> TestResult {
    let (st, cluster, _real) = cluster_state().await?;
    let ring = "/v1/operator/keyring";
    let (code, body) = sb(&st, Method::GET, ring, "").await?;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(
        v[1],
        json!({"WAN":false,"Datacenter":"dc1","Segment":"","Messages":{},
               "Keys":{K1:1},"PrimaryKeys":{K1:1},"NumNodes":1})
    );
    assert_eq!(v[0]["WAN"], true);
    let install = format!(r#"{{"Key":"{K2}"}}"#);
    assert_eq!(sb(&st, Method::POST, ring, &install).await?, ok());
    // Field names match case-insensitively.
    assert_eq!(
        sb(&st, Method::PUT, ring, &format!(r#"{{"key":"{K2}"}}"#)).await?,
        ok()
    );
    assert_eq!(cluster.lock().primary, K2);
    assert_eq!(
        sb(&st, Method::DELETE, ring, &install).await?,
        (500, "Removing the primary key is not allowed".to_string())
    );
    assert_eq!(
        sb(&st, Method::DELETE, ring, &format!(r#"{{"Key":"{K1}"}}"#)).await?,
        ok()
    );
    assert_eq!(cluster.lock().keys, [K2]);
    let (_, body) = sb(&st, Method::GET, ring, "").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&body)?[1]["Keys"],
        json!({K2: 1})
    );
    for (body, want) in [
        ("", "Request decode failed: EOF"),
        ("{}", "Missing key"),
        (
            r#"{"Key":"k","Nope":1}"#,
            "Request decode failed: json: unknown field \"Nope\"",
        ),
    ] {
        assert_eq!(
            sb(&st, Method::POST, ring, body).await?,
            (400, want.to_string()),
            "{body}"
        );
    }
    assert_eq!(
        sb(&st, Method::GET, &format!("{ring}?relay-factor=9"), "")
            .await?
            .0,
        400
    );
    assert_eq!(
        sb(
            &st,
            Method::GET,
            &format!("{ring}?relay-factor=2&local-only=true"),
            ""
        )
        .await?,
        (code, body)
    );
    assert_eq!(
        sb(&st, Method::POST, &format!("{ring}?local-only=1"), &install).await?,
        (
            400,
            "Invalid use of local-only: local-only can only be set for GET requests".to_string()
        )
    );
    let r = req(&st, Method::PATCH, ring, "").await?;
    assert_eq!(
        (r.status.as_u16(), r.header("allow")),
        (405, "OPTIONS,GET,POST,PUT,DELETE")
    );
    Ok(())
}

#[tokio::test]
async fn api_cluster_endpoints_without_backend_answer_500() -> TestResult {
    let (st, _real) = super::state().await?;
    for (method, uri, body) in [
        (Method::PUT, "/v1/agent/join/10.0.0.1", ""),
        (Method::PUT, "/v1/agent/leave", ""),
        (Method::PUT, "/v1/agent/force-leave/n2", ""),
        (Method::GET, "/v1/operator/raft/configuration", ""),
        (Method::DELETE, "/v1/operator/raft/peer?id=x", ""),
        (Method::GET, "/v1/operator/keyring", ""),
        (Method::POST, "/v1/operator/keyring", r#"{"Key":"k"}"#),
    ] {
        assert_eq!(
            sb(&st, method, uri, body).await?,
            (500, NOT_AVAILABLE.to_string()),
            "{uri}"
        );
    }
    // Members still lists this agent alone.
    let (code, body) = sb(&st, Method::GET, "/v1/agent/members", "").await?;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body)?[0]["Name"], "n1");
    Ok(())
}
