//! Shared setup of the HTTP benches: the API server (with an agent) on a
//! loopback port, in process, and a plain HTTP client for it.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use muster_agent::{Agent, AgentConfig};
use muster_api::ApiConfig;
use muster_engine::Engine;
use tokio::runtime::Runtime;

const NODE_ID: &str = "00000000-0000-0000-0000-000000000001";

/// The API server of a bench; `stop` shuts it down.
pub struct ApiServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), muster_api::Error>>,
}

impl ApiServer {
    /// Serve `engine` (with an agent on node `bench`) on 127.0.0.1:0.
    pub fn start(rt: &Runtime, engine: &Engine) -> ApiServer {
        ApiServer::start_with(rt, engine, ApiConfig::new("dc1", "bench", NODE_ID))
    }

    /// [`ApiServer::start`] with these API settings.
    pub fn start_with(rt: &Runtime, engine: &Engine, cfg: ApiConfig) -> ApiServer {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let agent = rt
            .block_on(Agent::start(
                engine.clone(),
                AgentConfig::new("bench", NODE_ID, "dc1"),
                Vec::new(),
                Vec::new(),
            ))
            .expect("agent");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(muster_api::serve(
            listener,
            engine.clone(),
            agent,
            cfg,
            async move {
                let _ = stopped.await;
            },
        ));
        ApiServer { addr, stop, task }
    }

    /// Stop serving and wait for the server to finish.
    pub fn stop(self, rt: &Runtime) {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.task);
    }
}

/// A two-worker runtime and an engine on a temporary directory (kept
/// alive by the returned guard).
#[allow(dead_code)]
pub fn runtime_and_engine() -> (Runtime, tempfile::TempDir, Engine) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt
        .block_on(Engine::open(muster_engine::EngineConfig::new(
            dir.path(),
            "bench",
        )))
        .expect("engine");
    (rt, dir, engine)
}

/// An HTTP/1.1 client with pooled connections.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Make a policy with `rules` and a token with it through the API (with
/// the management secret `root`); the token's SecretID.
#[allow(dead_code)]
pub async fn acl_token(addr: std::net::SocketAddr, root: &str, rules: &str) -> String {
    use http_body_util::{BodyExt, Full};
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let put = |path: &str, body: String| {
        hyper::Request::put(format!("http://{addr}{path}"))
            .header("X-Consul-Token", root)
            .body(Full::new(Bytes::from(body)))
            .expect("request")
    };
    let policy = format!(r#"{{"Name": "bench", "Rules": "{rules}"}}"#);
    let resp = client
        .request(put("/v1/acl/policy", policy))
        .await
        .expect("policy");
    assert_eq!(resp.status(), 200);
    let token = r#"{"Policies": [{"Name": "bench"}]}"#.to_string();
    let resp = client
        .request(put("/v1/acl/token", token))
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["SecretID"].as_str().expect("SecretID").to_string()
}
