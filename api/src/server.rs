//! The accept loop: hyper 1 over tokio with the auto builder (HTTP/1.1 and
//! h2c), one task per connection, a tracing span per request, and graceful
//! shutdown. Each request runs in its own task so that a panicking handler
//! costs a 500, not the connection, and a dropped connection cancels its
//! (possibly blocking) handler.
//!
//! A [`Listener`] is a TCP listener and, optionally, a [`Handshake`] run on
//! each accepted connection before HTTP (the binary's TLS): this crate
//! knows no TLS. A handshake runs in the connection's own task, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow client never holds up the accept loop.

use muster_engine::AbortOnDrop;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::backend::AgentBackend;
use crate::error::Result;
use crate::response::{self, Body};
use crate::router::{self, Serving, State};
use crate::ApiConfig;

/// How long in-flight requests may run after shutdown was signalled.
/// Blocking queries can take minutes; they are cut off at this bound.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Back-off after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Slow clients must send their request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection's [`Handshake`] must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream HTTP can be served over (what a [`Handshake`] yields).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The future a [`Handshake`] returns.
pub type HandshakeFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send>>;

/// What runs on each accepted TCP connection before HTTP is spoken on it
/// (e.g. a TLS handshake). `Err` drops the connection without an answer.
pub trait Handshake: Send + Sync + 'static {
    /// Turn the accepted connection from `peer` into the stream to serve.
    fn handshake(&self, tcp: TcpStream, peer: SocketAddr) -> HandshakeFuture;
}

/// Where the API is served: a bound TCP listener (plain HTTP), or one
/// with a [`Handshake`] on every connection.
pub struct Listener {
    /// The bound socket.
    tcp: TcpListener,
    /// Run on each connection first; `None`: plain HTTP.
    handshake: Option<Arc<dyn Handshake>>,
}

impl Listener {
    /// Serve over `handshake`'s streams (e.g. HTTPS).
    pub fn with_handshake(tcp: TcpListener, handshake: Arc<dyn Handshake>) -> Listener {
        Listener {
            tcp,
            handshake: Some(handshake),
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Listener {
        Listener {
            tcp,
            handshake: None,
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("handshake", &self.handshake.is_some())
            .finish()
    }
}

/// Run one request in its own task under a span carrying method and path.
async fn serve_request(
    st: Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    // Which node a forwarded session belongs to is said only by a client
    // agent over the server RPC port, never by an HTTP client.
    req.headers_mut().remove(crate::client::X_AGENT_NODE);
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        %peer,
    );
    let mut task = AbortOnDrop(tokio::spawn(
        router::handle(st, req).instrument(span.clone()),
    ));
    match (&mut task.0).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(parent: &span, error = %e, "request handler failed");
            response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
        }
    }
}

/// Open connections per client address (`limits.http_max_conns_per_client`).
#[derive(Default)]
struct ConnCounts(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One counted connection: uncounted when dropped (the connection ended).
struct ConnSlot {
    counts: Arc<ConnCounts>,
    ip: std::net::IpAddr,
}

impl ConnCounts {
    /// Count a connection from `ip`, unless it already has `max` open
    /// (`max` 0: no limit).
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<ConnSlot> {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut m = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serve until `shutdown` resolves, then drain (bounded by
/// [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(
    listener: impl Into<Listener>,
    serving: Serving,
    agent: Arc<dyn AgentBackend>,
    cfg: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let Listener {
        tcp: listener,
        handshake,
    } = listener.into();
    let local_addr = listener.local_addr()?;
    let state = Arc::new(State {
        serving,
        agent,
        cfg,
        local_addr: Some(local_addr),
        shared: Default::default(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Go's canonical header case (`X-Consul-Index`, `Content-Type`):
        // scripts and some clients match it case-sensitively.
        .title_case_headers(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let counts = Arc::new(ConnCounts::default());
    let max_per_client = state.cfg.http_max_conns_per_client;
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::debug!(addr = %local_addr, "http api serving");
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // One client cannot hold every file descriptor: past its limit a
        // new connection is closed at once (Consul's connlimit).
        let Some(slot) = counts.take(peer.ip(), max_per_client) else {
            tracing::debug!(%peer, max_per_client, "http connection refused: too many from this client");
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let st = state.clone();
        let watcher = graceful.watcher();
        match &handshake {
            None => spawn_connection(&builder, stream, st, watcher, peer, slot),
            Some(handshake) => {
                let shaking = handshake.handshake(stream, peer);
                let builder = builder.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, shaking).await {
                        Ok(Ok(stream)) => {
                            spawn_connection(&builder, stream, st, watcher, peer, slot)
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
                        Err(_) => tracing::debug!(%peer, "handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    state.shared.stop();
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("http api drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("http api: in-flight requests still running after drain timeout");
        }
    }
    Ok(())
}

/// Serve HTTP on one connection in its own task, watched for graceful
/// shutdown.
fn spawn_connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    st: Arc<State>,
    watcher: Watcher,
    peer: SocketAddr,
    slot: ConnSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(serve_request(st, peer, req).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "http connection ended with an error");
        }
        drop(slot);
    });
}
