//! `/v1/agent/*` handler tests over an in-memory fake of the agent
//! interface (the real agent is tested in the engine crate and end to end).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use muster_agent::{
    AgentError, CheckDefinition, CheckKind, LocalService, LocalServiceHealth, ServiceDefinition,
    Source,
};
use muster_engine::{Check, Service, Status};
use serde_json::{json, Value};

use super::{open, Real, Reply, TestResult};
use crate::backend::{AgentBackend, BoxFuture};
use crate::router::{self, Serving, State};
use crate::{ApiConfig, ReloadHook};

#[derive(Default)]
struct AgentState {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, Check>,
    /// Check ID → is a TTL check.
    ttl: BTreeMap<String, bool>,
    /// The last `replace_existing_checks` seen.
    last_replace: Option<bool>,
    /// The last service definition registered.
    last_service: Option<ServiceDefinition>,
}

/// An agent keeping services and checks in memory, with the agent's error
/// rules; node maintenance is the `_node_maintenance` check.
#[derive(Default)]
pub(super) struct FakeAgent {
    state: Mutex<AgentState>,
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(async move { v })
}

impl FakeAgent {
    fn lock(&self) -> MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_check(s: &mut AgentState, def: &CheckDefinition) -> Result<(), AgentError> {
        if matches!(def.kind, CheckKind::Script { .. }) {
            return Err(AgentError::ScriptsDisabled);
        }
        let (service_name, service_tags) = if def.service_id.is_empty() {
            (String::new(), Vec::new())
        } else {
            let svc = s
                .services
                .get(&def.service_id)
                .ok_or_else(|| AgentError::MissingService(def.service_id.clone()))?;
            (svc.service.service.clone(), svc.service.tags.clone())
        };
        s.ttl
            .insert(def.id.clone(), matches!(def.kind, CheckKind::Ttl { .. }));
        s.checks.insert(
            def.id.clone(),
            Check {
                node: "n1".into(),
                check_id: def.id.clone(),
                name: def.name.clone(),
                status: def.status.unwrap_or(Status::Critical),
                notes: def.notes.clone(),
                service_id: def.service_id.clone(),
                service_name,
                service_tags,
                check_type: def.check_type().into(),
                interval_ns: u64::try_from(def.interval.as_nanos()).unwrap_or(0),
                ..Check::default()
            },
        );
        Ok(())
    }

    fn maintenance(s: &mut AgentState, id: String, service_id: &str, enable: bool, reason: &str) {
        if enable {
            s.checks.insert(
                id.clone(),
                Check {
                    node: "n1".into(),
                    check_id: id,
                    name: "Maintenance Mode".into(),
                    status: Status::Critical,
                    notes: reason.into(),
                    service_id: service_id.into(),
                    ..Check::default()
                },
            );
        } else {
            s.checks.remove(&id);
        }
    }
}

impl AgentBackend for FakeAgent {
    fn services(&self) -> BTreeMap<String, LocalService> {
        self.lock().services.clone()
    }
    fn checks(&self) -> BTreeMap<String, Check> {
        self.lock().checks.clone()
    }
    fn register_service(
        &self,
        def: ServiceDefinition,
        replace_existing_checks: bool,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        let mut s = self.lock();
        s.last_replace = Some(replace_existing_checks);
        s.last_service = Some(def.clone());
        s.services.insert(
            def.id.clone(),
            LocalService {
                service: Service {
                    node: "n1".into(),
                    id: def.id.clone(),
                    service: def.name.clone(),
                    kind: def.kind.clone(),
                    tags: def.tags.clone(),
                    address: def.address.clone(),
                    tagged_addresses: def.tagged_addresses.clone(),
                    port: def.port,
                    socket_path: def.socket_path.clone(),
                    meta: def.meta.clone(),
                    weights: def.weights,
                    enable_tag_override: def.enable_tag_override,
                    ..Service::default()
                },
                source: Source::Api,
            },
        );
        if replace_existing_checks {
            let keep: Vec<&str> = def.checks.iter().map(|c| c.id.as_str()).collect();
            s.checks
                .retain(|id, c| c.service_id != def.id || keep.contains(&id.as_str()));
        }
        let r = def
            .checks
            .iter()
            .try_for_each(|c| FakeAgent::add_check(&mut s, c));
        ready(r)
    }
    fn deregister_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AgentError>> {
        let mut s = self.lock();
        let r = match s.services.remove(id) {
            None => Err(AgentError::UnknownService(id.into())),
            Some(_) => {
                s.checks.retain(|_, c| c.service_id != id);
                Ok(())
            }
        };
        ready(r)
    }
    fn register_check(&self, def: CheckDefinition) -> BoxFuture<'_, Result<(), AgentError>> {
        let mut s = self.lock();
        ready(FakeAgent::add_check(&mut s, &def))
    }
    fn deregister_check<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AgentError>> {
        let r = match self.lock().checks.remove(id) {
            None => Err(AgentError::UnknownCheck(id.into())),
            Some(_) => Ok(()),
        };
        ready(r)
    }
    fn update_ttl<'a>(
        &'a self,
        id: &'a str,
        status: Status,
        output: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        let mut s = self.lock();
        let is_ttl = s.ttl.get(id).copied();
        let r = match (s.checks.get_mut(id), is_ttl) {
            (None, _) => Err(AgentError::UnknownCheck(id.into())),
            (Some(_), Some(false) | None) => Err(AgentError::NotTtl(id.into())),
            (Some(c), Some(true)) => {
                c.status = status;
                c.output = output.into();
                Ok(())
            }
        };
        ready(r)
    }
    fn set_node_maintenance<'a>(
        &'a self,
        enable: bool,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        let mut s = self.lock();
        FakeAgent::maintenance(&mut s, "_node_maintenance".into(), "", enable, reason);
        ready(Ok(()))
    }
    fn set_service_maintenance<'a>(
        &'a self,
        id: &'a str,
        enable: bool,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        let mut s = self.lock();
        if !s.services.contains_key(id) {
            return ready(Err(AgentError::UnknownService(id.into())));
        }
        FakeAgent::maintenance(
            &mut s,
            format!("_service_maintenance:{id}"),
            id,
            enable,
            reason,
        );
        ready(Ok(()))
    }
    fn service_health(&self, id: &str) -> Option<LocalServiceHealth> {
        let s = self.lock();
        let svc = s.services.get(id)?;
        let checks: Vec<Check> = s
            .checks
            .values()
            .filter(|c| c.service_id.is_empty() || c.service_id == id)
            .cloned()
            .collect();
        let aggregated = if checks.iter().any(|c| c.check_id.starts_with('_')) {
            "maintenance"
        } else {
            checks
                .iter()
                .map(|c| c.status)
                .max()
                .unwrap_or(Status::Passing)
                .as_str()
        };
        Some(LocalServiceHealth {
            aggregated: aggregated.into(),
            service: svc.service.clone(),
            checks,
        })
    }
}

type St = Arc<State>;

async fn agent_state(
    reload: Option<ReloadHook>,
) -> Result<(St, Arc<FakeAgent>, Real), Box<dyn std::error::Error>> {
    let real = open(true).await?;
    let agent = Arc::new(FakeAgent::default());
    let mut cfg = ApiConfig::new("dc1", "n1", "00000000-0000-4000-8000-000000000001");
    cfg.reload = reload;
    let st = Arc::new(State {
        serving: Serving::Server(real.engine.clone()),
        agent: agent.clone(),
        cfg,
        local_addr: None,
        shared: Default::default(),
    });
    Ok((st, agent, real))
}

async fn call(
    st: &St,
    method: Method,
    uri: &str,
    body: &str,
    accept: Option<&str>,
) -> Result<Reply, Box<dyn std::error::Error>> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let resp = router::handle(st.clone(), req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn put(st: &St, uri: &str, body: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let r = call(st, Method::PUT, uri, body, None).await?;
    Ok((r.status.as_u16(), r.body))
}

async fn get(st: &St, uri: &str) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let r = call(st, Method::GET, uri, "", None).await?;
    Ok((r.status.as_u16(), serde_json::from_str(&r.body)?))
}

/// Patroni's registration body (consul-compat.md §14 P1.8), verbatim shape.
const PATRONI: &str = r#"{"name": "batman", "id": "batman/pg0", "address": "10.0.0.5", "port": 5432, "tags": ["master"], "enabletagoverride": true, "check": {"http": "http://10.0.0.5:8008/master", "interval": "5s", "DeregisterCriticalServiceAfter": "150.0s"}}"#;

/// python-consul's `agent.service.register("web", service_id="web1",
/// port=80, tags=["v1"], check=Check.ttl("10s"))`.
const PYTHON_CONSUL: &str = r#"{"name": "web", "id": "web1", "port": 80, "tags": ["v1"], "enabletagoverride": false, "check": {"ttl": "10s"}}"#;

const OK: (u16, String) = (200, String::new());

#[tokio::test]
async fn api_agent_service_register_list_get_deregister() -> TestResult {
    let (st, agent, _real) = agent_state(None).await?;
    assert_eq!(put(&st, "/v1/agent/service/register", PATRONI).await?, OK);
    assert_eq!(
        put(&st, "/v1/agent/service/register", PYTHON_CONSUL).await?,
        OK
    );
    assert_eq!(agent.lock().last_replace, Some(false));
    let (code, v) = get(&st, "/v1/agent/services").await?;
    assert_eq!(code, 200);
    assert_eq!(
        v["batman/pg0"],
        json!({"ID":"batman/pg0","Service":"batman","Tags":["master"],"Meta":{},"Port":5432,
               "Address":"10.0.0.5","Weights":{"Passing":1,"Warning":1},
               "EnableTagOverride":true,"Datacenter":"dc1"})
    );
    assert_eq!(v["web1"]["Service"], "web");
    // filter
    let (_, v) = get(&st, "/v1/agent/services?filter=Service%20%3D%3D%20web").await?;
    assert_eq!(v.as_object().map(|o| o.len()), Some(1));
    assert!(v.get("web1").is_some());
    let r = call(
        &st,
        Method::GET,
        "/v1/agent/services?filter=%3D%3D",
        "",
        None,
    )
    .await?;
    assert_eq!(r.status.as_u16(), 400);
    // single service, percent-encoded ID with '/'
    let r = call(&st, Method::GET, "/v1/agent/service/batman%2Fpg0", "", None).await?;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&r.body)?;
    let hash = v["ContentHash"].as_str().unwrap_or_default().to_string();
    assert_eq!(hash.len(), 16);
    assert_eq!(r.header("x-consul-contenthash"), hash);
    assert_eq!(v["ID"], "batman/pg0");
    // hash-blocking: same hash waits for `wait`, then answers.
    let t = Instant::now();
    let r = call(
        &st,
        Method::GET,
        &format!("/v1/agent/service/batman/pg0?hash={hash}&wait=300ms"),
        "",
        None,
    )
    .await?;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.header("x-consul-contenthash"), hash);
    let r = call(&st, Method::GET, "/v1/agent/service/nope", "", None).await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (404, "unknown service ID: nope")
    );
    // the inline checks were registered with their default IDs
    let (_, checks) = get(&st, "/v1/agent/checks").await?;
    assert_eq!(checks["service:batman/pg0"]["Type"], "http");
    assert_eq!(checks["service:web1"]["Type"], "ttl");
    assert_eq!(checks["service:web1"]["Status"], "critical");
    // deregister, percent-decoded; then unknown
    assert_eq!(
        put(&st, "/v1/agent/service/deregister/batman%2Fpg0", "").await?,
        OK
    );
    assert_eq!(
        put(&st, "/v1/agent/service/deregister/batman%2Fpg0", "").await?,
        (
            404,
            r#"Unknown service ID "batman/pg0". Ensure that the service ID is passed, not the service name."#
                .to_string()
        )
    );
    assert_eq!(
        put(&st, "/v1/agent/service/deregister/", "").await?,
        (400, "Missing service ID".to_string())
    );
    // wrong methods
    let r = call(&st, Method::GET, "/v1/agent/service/register", "", None).await?;
    assert_eq!((r.status.as_u16(), r.header("allow")), (405, "OPTIONS,PUT"));
    let r = call(&st, Method::PUT, "/v1/agent/services", "", None).await?;
    assert_eq!(r.status.as_u16(), 405);
    Ok(())
}

#[tokio::test]
async fn api_agent_service_register_errors_and_replace() -> TestResult {
    let (st, agent, _real) = agent_state(None).await?;
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"id":"x"}"#, 400, "Missing service name"),
        ("", 400, "Request decode failed: EOF"),
        ("{", 400, "Request decode failed: "),
        (
            r#"{"Name":"x","Foo":1}"#,
            400,
            r#"Request decode failed: json: unknown field "Foo""#,
        ),
        (
            r#"{"Name":"x","Address":"0.0.0.0"}"#,
            400,
            "Invalid service address",
        ),
        (
            r#"{"Name":"x","Meta":{"consul-a":"b"}}"#,
            400,
            "Invalid Service Meta: ",
        ),
        (
            r#"{"Name":"x","Weights":{"Passing":0}}"#,
            400,
            "Invalid Weights: ",
        ),
        (
            r#"{"Name":"x","Check":{"HTTP":"http://x"}}"#,
            400,
            "Invalid check: Interval must be > 0",
        ),
        (
            r#"{"Name":"x","Check":{"Args":["/bin/true"],"Interval":"1s"}}"#,
            500,
            "Scripts are disabled on this agent",
        ),
    ];
    for (body, code, prefix) in cases {
        let (c, b) = put(&st, "/v1/agent/service/register", body).await?;
        assert_eq!(c, *code, "{body}: {b}");
        assert!(b.starts_with(prefix), "{body}: {b}");
    }
    let two =
        r#"{"Name":"db","Checks":[{"TTL":"10s"},{"CheckID":"extra","Name":"e","TTL":"10s"}]}"#;
    assert_eq!(put(&st, "/v1/agent/service/register", two).await?, OK);
    let one = r#"{"Name":"db","Check":{"CheckID":"extra","Name":"e","TTL":"10s"}}"#;
    assert_eq!(put(&st, "/v1/agent/service/register", one).await?, OK);
    assert_eq!(agent.lock().checks.len(), 2);
    for q in ["?replace-existing-checks", "?replace-existing-checks=true"] {
        let uri = format!("/v1/agent/service/register{q}");
        assert_eq!(put(&st, &uri, one).await?, OK);
        assert_eq!(agent.lock().last_replace, Some(true), "{q}");
    }
    assert_eq!(
        agent.lock().checks.keys().cloned().collect::<Vec<_>>(),
        ["extra"]
    );
    let uri = "/v1/agent/service/register?replace-existing-checks=false";
    assert_eq!(put(&st, uri, one).await?, OK);
    assert_eq!(agent.lock().last_replace, Some(false));
    let def = agent.lock().last_service.clone().unwrap_or_default();
    assert_eq!(
        def.checks.first().map(|c| c.service_id.as_str()),
        Some("db")
    );
    Ok(())
}

#[tokio::test]
async fn api_agent_checks_register_ttl_update_deregister() -> TestResult {
    let (st, _, _real) = agent_state(None).await?;
    assert_eq!(
        put(&st, "/v1/agent/service/register", PYTHON_CONSUL).await?,
        OK
    );
    // python-consul `agent.check.register("mem", Check.ttl("10s"),
    // check_id="mem1", notes="n", service_id="web1")`
    let body = r#"{"name": "mem", "ttl": "10s", "id": "mem1", "notes": "n", "serviceid": "web1"}"#;
    assert_eq!(put(&st, "/v1/agent/check/register", body).await?, OK);
    let body = r#"{"Name":"disk","TCP":"127.0.0.1:1","Interval":"10s","Status":"passing"}"#;
    assert_eq!(put(&st, "/v1/agent/check/register", body).await?, OK);
    let (_, v) = get(&st, "/v1/agent/checks").await?;
    assert_eq!(v["mem1"]["ServiceID"], "web1");
    assert_eq!(v["mem1"]["ServiceName"], "web");
    assert_eq!(v["mem1"]["Notes"], "n");
    assert_eq!(v["disk"]["Status"], "passing");
    assert_eq!(v["disk"]["Interval"], "10s");
    let (_, v) = get(&st, "/v1/agent/checks?filter=Type%20%3D%3D%20tcp").await?;
    assert_eq!(
        v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["disk".to_string()])
    );
    let errors: &[(&str, u16, &str)] = &[
        (r#"{"TTL":"10s"}"#, 400, "Missing check name"),
        (
            r#"{"Name":"c","TTL":"10s","Status":"ok"}"#,
            400,
            "Bad check status",
        ),
        (
            r#"{"Name":"c"}"#,
            400,
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            r#"{"Name":"c","TTL":"10s","ServiceID":"nope"}"#,
            404,
            r#"ServiceID "nope" does not exist"#,
        ),
        (
            r#"{"Name":"c","TTL":"10s","Bogus":1}"#,
            400,
            r#"Request decode failed: json: unknown field "Bogus""#,
        ),
    ];
    for (body, code, msg) in errors {
        assert_eq!(
            put(&st, "/v1/agent/check/register", body).await?,
            (*code, msg.to_string()),
            "{body}"
        );
    }
    // pass/warn/fail with note → Output
    for (verb, status) in [
        ("warn", "warning"),
        ("fail", "critical"),
        ("pass", "passing"),
    ] {
        let uri = format!("/v1/agent/check/{verb}/mem1?note=all%20{verb}");
        assert_eq!(put(&st, &uri, "").await?, OK);
        let (_, v) = get(&st, "/v1/agent/checks").await?;
        assert_eq!(v["mem1"]["Status"], status);
        assert_eq!(v["mem1"]["Output"], format!("all {verb}"));
    }
    let r = call(&st, Method::GET, "/v1/agent/check/pass/mem1", "", None).await?;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(
        put(&st, "/v1/agent/check/pass/nope", "").await?,
        (404, r#"Unknown check ID "nope""#.to_string())
    );
    assert_eq!(
        put(&st, "/v1/agent/check/pass/disk", "").await?,
        (
            500,
            r#"CheckID "disk" does not have associated TTL"#.to_string()
        )
    );
    // update
    let body = r#"{"Status":"warning","Output":"slow"}"#;
    assert_eq!(put(&st, "/v1/agent/check/update/mem1", body).await?, OK);
    let (_, v) = get(&st, "/v1/agent/checks").await?;
    assert_eq!(
        (&v["mem1"]["Status"], &v["mem1"]["Output"]),
        (&json!("warning"), &json!("slow"))
    );
    assert_eq!(
        put(&st, "/v1/agent/check/update/mem1", r#"{"status":"bogus"}"#).await?,
        (400, "Invalid check status: 'bogus'".to_string())
    );
    assert_eq!(
        put(&st, "/v1/agent/check/update/mem1", r#"{"Output":"x"}"#).await?,
        (400, "Invalid check status: ''".to_string())
    );
    assert_eq!(
        put(
            &st,
            "/v1/agent/check/update/nope",
            r#"{"Status":"passing"}"#
        )
        .await?,
        (404, r#"Unknown check ID "nope""#.to_string())
    );
    // deregister
    assert_eq!(put(&st, "/v1/agent/check/deregister/mem1", "").await?, OK);
    assert_eq!(
        put(&st, "/v1/agent/check/deregister/mem1", "").await?,
        (404, r#"Unknown check ID "mem1""#.to_string())
    );
    Ok(())
}

#[tokio::test]
async fn api_agent_maintenance_params() -> TestResult {
    let (st, agent, _real) = agent_state(None).await?;
    assert_eq!(
        put(&st, "/v1/agent/maintenance", "").await?,
        (400, "Missing value for enable".to_string())
    );
    assert_eq!(
        put(&st, "/v1/agent/maintenance?enable=yes", "").await?,
        (400, r#"Invalid value for enable: "yes""#.to_string())
    );
    assert_eq!(
        put(&st, "/v1/agent/maintenance?enable=", "").await?,
        (400, r#"Invalid value for enable: """#.to_string())
    );
    assert_eq!(
        put(
            &st,
            "/v1/agent/maintenance?enable=true&reason=patching%20now",
            ""
        )
        .await?,
        OK
    );
    let notes = agent
        .lock()
        .checks
        .get("_node_maintenance")
        .map(|c| c.notes.clone());
    assert_eq!(notes.as_deref(), Some("patching now"));
    assert_eq!(put(&st, "/v1/agent/maintenance?enable=0", "").await?, OK);
    assert!(agent.lock().checks.is_empty());
    // service maintenance
    assert_eq!(
        put(&st, "/v1/agent/service/maintenance/web1?enable=true", "").await?,
        (
            404,
            r#"Unknown service ID "web1". Ensure that the service ID is passed, not the service name."#
                .to_string()
        )
    );
    assert_eq!(
        put(&st, "/v1/agent/service/register", PYTHON_CONSUL).await?,
        OK
    );
    assert_eq!(
        put(&st, "/v1/agent/service/maintenance/web1", "").await?,
        (400, "Missing value for enable".to_string())
    );
    assert_eq!(
        put(&st, "/v1/agent/service/maintenance/web1?enable=on", "").await?,
        (400, r#"Invalid value for enable: "on""#.to_string())
    );
    assert_eq!(
        put(&st, "/v1/agent/service/maintenance/?enable=true", "").await?,
        (400, "Missing service ID".to_string())
    );
    assert_eq!(
        put(
            &st,
            "/v1/agent/service/maintenance/web1?enable=True&reason=r",
            ""
        )
        .await?,
        OK
    );
    let (code, v) = get(&st, "/v1/agent/health/service/id/web1").await?;
    assert_eq!((code, &v["AggregatedStatus"]), (503, &json!("maintenance")));
    assert_eq!(
        put(&st, "/v1/agent/service/maintenance/web1?enable=false", "").await?,
        OK
    );
    Ok(())
}

#[tokio::test]
async fn api_agent_local_service_health() -> TestResult {
    let (st, _, _real) = agent_state(None).await?;
    for body in [
        r#"{"Name":"web","ID":"web1","Check":{"CheckID":"c1","Name":"c1","TTL":"10s","Status":"passing"}}"#,
        r#"{"Name":"web","ID":"web2","Check":{"CheckID":"c2","Name":"c2","TTL":"10s","Status":"passing"}}"#,
    ] {
        assert_eq!(put(&st, "/v1/agent/service/register", body).await?, OK);
    }
    let (code, v) = get(&st, "/v1/agent/health/service/id/web1").await?;
    assert_eq!(code, 200);
    assert_eq!(v["AggregatedStatus"], "passing");
    assert_eq!(v["Service"]["ID"], "web1");
    assert_eq!(v["Checks"][0]["CheckID"], "c1");
    let (code, v) = get(&st, "/v1/agent/health/service/name/web").await?;
    assert_eq!((code, v.as_array().map(Vec::len)), (200, Some(2)));
    assert_eq!(put(&st, "/v1/agent/check/warn/c2", "").await?, OK);
    let (code, _) = get(&st, "/v1/agent/health/service/id/web2").await?;
    assert_eq!(code, 429);
    let (code, _) = get(&st, "/v1/agent/health/service/name/web").await?;
    assert_eq!(code, 429);
    assert_eq!(put(&st, "/v1/agent/check/fail/c1", "").await?, OK);
    let (code, _) = get(&st, "/v1/agent/health/service/name/web").await?;
    assert_eq!(code, 503);
    let r = call(
        &st,
        Method::GET,
        "/v1/agent/health/service/name/web?format=text",
        "",
        None,
    )
    .await?;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, "critical"));
    let r = call(
        &st,
        Method::GET,
        "/v1/agent/health/service/id/web2",
        "",
        Some("text/plain"),
    )
    .await?;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (429, "warning"));
    // unknown
    let (code, v) = get(&st, "/v1/agent/health/service/id/nope").await?;
    assert_eq!(
        (code, v),
        (
            404,
            json!({"AggregatedStatus":"critical","Service":null,"Checks":null})
        )
    );
    let (code, v) = get(&st, "/v1/agent/health/service/name/nope").await?;
    assert_eq!((code, v), (404, json!([])));
    let r = call(
        &st,
        Method::GET,
        "/v1/agent/health/service/id/nope?format=text",
        "",
        None,
    )
    .await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (404, "ServiceId nope not found")
    );
    let r = call(
        &st,
        Method::GET,
        "/v1/agent/health/service/name/nope?format=text",
        "",
        None,
    )
    .await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (404, "ServiceName nope Not Found")
    );
    let r = call(&st, Method::GET, "/v1/agent/health/service/id/", "", None).await?;
    assert_eq!(r.status.as_u16(), 400);
    let r = call(&st, Method::GET, "/v1/agent/health/service/name/", "", None).await?;
    assert_eq!(r.status.as_u16(), 400);
    Ok(())
}

#[tokio::test]
async fn api_agent_reload_members_self() -> TestResult {
    let (st, _, _real) = agent_state(None).await?;
    let (code, body) = put(&st, "/v1/agent/reload", "").await?;
    assert_eq!(code, 500, "{body}");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let hook = ReloadHook::new(move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Ok(())
            } else {
                Err("Failed reloading: bad key \"x\"".to_string())
            }
        }
    });
    let (st, _, _real) = agent_state(Some(hook)).await?;
    assert_eq!(put(&st, "/v1/agent/reload", "").await?, OK);
    assert_eq!(
        put(&st, "/v1/agent/reload", "").await?,
        (500, "Failed reloading: bad key \"x\"".to_string())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let (code, v) = get(&st, "/v1/agent/members").await?;
    assert_eq!(code, 200);
    let m = &v[0];
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!((&m["Name"], &m["Status"]), (&json!("n1"), &json!(1)));
    for tag in ["role", "dc", "id", "port", "build", "vsn"] {
        assert!(m["Tags"][tag].is_string(), "{tag}");
    }
    assert_eq!(m["Tags"]["role"], "consul");
    let (_, v) = get(&st, "/v1/agent/members?wan=1").await?;
    assert_eq!(v[0]["Name"], "n1.dc1");
    let (code, v) = get(&st, "/v1/agent/self").await?;
    assert_eq!((code, &v["Config"]["Datacenter"]), (200, &json!("dc1")));
    Ok(())
}
