//! Where client agents and servers meet, on both ends: a server answers the
//! HTTP API requests and DNS questions client agents forward over its RPC
//! port ([`ServerSide`]); a client agent's DNS listener relays its
//! questions to a server ([`DnsRelay`]).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use muster_api::Handler;
use muster_dns::DnsConfig;
use muster_engine::remote::Remote;
use muster_engine::rpc::server::{ClientAccess, ServerHooks};
use muster_engine::Engine;

/// A server's answers for client agents, available once its agent and API
/// are up.
#[derive(Default)]
pub(crate) struct ServerSide {
    ready: OnceLock<Ready>,
}

struct Ready {
    api: Handler,
    engine: Engine,
    dns: DnsConfig,
    acl: Option<Arc<muster_api::acl::Acl>>,
}

impl ServerSide {
    /// Start answering (called once, after the agent started).
    pub fn set(
        &self,
        api: Handler,
        engine: Engine,
        dns: DnsConfig,
        acl: Option<Arc<muster_api::acl::Acl>>,
    ) {
        let _ = self.ready.set(Ready {
            api,
            engine,
            dns,
            acl,
        });
    }
}

impl ServerHooks for ServerSide {
    fn http(&self, req: Request<Bytes>) -> muster_engine::BoxFuture<'_, Response<Bytes>> {
        let api = self.ready.get().map(|r| r.api.clone());
        Box::pin(async move {
            match api {
                Some(api) => api.handle(req).await,
                None => {
                    let mut resp = Response::new(Bytes::from_static(b"server starting; retry"));
                    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    resp
                }
            }
        })
    }

    fn authorize(&self, token: &str, what: ClientAccess<'_>) -> Result<(), String> {
        let Some(ready) = self.ready.get() else {
            return Err("server starting; retry".into());
        };
        let Some(acl) = &ready.acl else {
            return Ok(());
        };
        let (commands, node) = match what {
            ClientAccess::Apply(commands) => (commands, None),
            ClientAccess::ReadNode(node) => (&[][..], Some(node)),
        };
        muster_api::acl::authorize_client(acl, &ready.engine, token, commands, node)
    }

    fn dns(&self, packet: Vec<u8>, max_size: usize) -> muster_engine::BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            match self.ready.get() {
                Some(ready) => {
                    muster_dns::answer(&ready.engine, &ready.dns, &packet, max_size).await
                }
                None => Vec::new(),
            }
        })
    }
}

/// A client agent's DNS: every question goes to a server.
pub(crate) struct DnsRelay(pub Arc<Remote>);

impl muster_dns::Relay for DnsRelay {
    fn relay(
        &self,
        packet: Vec<u8>,
        max_size: usize,
    ) -> muster_dns::BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.0.dns(packet, max_size))
    }
}
