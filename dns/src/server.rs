//! The UDP and TCP listeners: reading questions, running the handler and
//! the recursor work it hands back (or, on a client agent, relaying each
//! question to a server), writing answers, and one debug-level tracing
//! span per query (`name`, `qtype`, `transport`, `rcode`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use muster_engine::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tracing::{field, Instrument, Span};

use crate::handler::{respond, Outcome};
use crate::recursor;
use crate::response::MAX_TCP_SIZE;
use crate::{DnsConfig, Error};

/// The largest UDP payload answered (the handler follows §10.3 below it).
const UDP_MAX: usize = 65507;

/// An idle TCP connection is closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A boxed, sendable future: the engine's one definition.
pub use muster_engine::BoxFuture;

/// Where a client agent sends its DNS questions: a server, which answers
/// them with [`answer`].
pub trait Relay: Send + Sync + 'static {
    /// The answer to `packet` (at most `max_size` bytes), or `None` when no
    /// server answered (the question is then dropped, and the client's
    /// resolver retries).
    fn relay(&self, packet: Vec<u8>, max_size: usize) -> BoxFuture<'_, Option<Vec<u8>>>;
}

/// Who answers: this agent's engine, or a server through a relay.
#[derive(Clone)]
enum Source {
    Local { engine: Engine, cfg: Arc<DnsConfig> },
    Relay(Arc<dyn Relay>),
}

/// The whole answer to one question (recursors included); empty when
/// nothing is to be sent. What a server runs for a relayed question.
pub async fn answer(engine: &Engine, cfg: &DnsConfig, packet: &[u8], max_size: usize) -> Vec<u8> {
    let span = query_span("relay");
    let out = match span.in_scope(|| respond(engine, cfg, packet, max_size)) {
        Outcome::Reply(out) => out,
        Outcome::Drop => Vec::new(),
        outcome => {
            network(cfg, outcome, packet, max_size)
                .instrument(span.clone())
                .await
        }
    };
    answered(&span, &out);
    out
}

/// Serve DNS on `udp` and `tcp` from `engine` until `shutdown` completes.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    engine: Engine,
    cfg: DnsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let cfg = Arc::new(cfg);
    run(udp, tcp, Source::Local { engine, cfg }, shutdown).await
}

/// Serve DNS on `udp` and `tcp` by relaying every question through
/// `relay` (a client agent) until `shutdown` completes.
pub async fn serve_relay(
    udp: UdpSocket,
    tcp: TcpListener,
    relay: Arc<dyn Relay>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run(udp, tcp, Source::Relay(relay), shutdown).await
}

async fn run(
    udp: UdpSocket,
    tcp: TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let mut tasks = JoinSet::new();
    let workers = match &source {
        Source::Local { engine, cfg } => Some(UdpWorkers::start(udp, engine, cfg)?),
        Source::Relay(relay) => {
            tasks.spawn(relay_udp(udp, relay.clone()));
            None
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            conn = tcp.accept() => {
                match conn {
                    Ok((stream, _)) => {
                        let source = source.clone();
                        tasks.spawn(async move {
                            if let Err(e) = serve_tcp(stream, &source).await {
                                tracing::debug!(error = %e, "dns tcp connection");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "dns tcp accept");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.shutdown().await;
    if let Some(w) = workers {
        w.stop().await;
    }
    Ok(())
}

/// The UDP hot path of a server: a few OS threads blocking on the same
/// socket, each answering from the engine synchronously (no task wake-ups
/// per datagram); only answers that need the recursors go to the runtime.
struct UdpWorkers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// How often a UDP worker looks at its stop flag while no query arrives.
const UDP_STOP_POLL: Duration = Duration::from_millis(100);

impl UdpWorkers {
    fn start(udp: UdpSocket, engine: &Engine, cfg: &Arc<DnsConfig>) -> Result<UdpWorkers, Error> {
        let sock = udp.into_std()?;
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(UDP_STOP_POLL))?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (sock, stop, runtime) = (sock.clone(), stop.clone(), runtime.clone());
            let (engine, cfg) = (engine.clone(), cfg.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || udp_worker(&sock, &engine, &cfg, &runtime, &stop))?;
            threads.push(thread);
        }
        Ok(UdpWorkers { stop, threads })
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// One UDP worker: receive, answer, send, until `stop`.
fn udp_worker(
    sock: &Arc<std::net::UdpSocket>,
    engine: &Engine,
    cfg: &Arc<DnsConfig>,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 65535];
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // ICMP errors surface here on some systems: keep going.
            Err(e) => {
                tracing::debug!(error = %e, "dns udp recv");
                continue;
            }
        };
        let packet = buf.get(..len).unwrap_or_default();
        let span = query_span("udp");
        match span.in_scope(|| respond(engine, cfg, packet, UDP_MAX)) {
            Outcome::Reply(out) => {
                answered(&span, &out);
                let _ = sock.send_to(&out, peer);
            }
            Outcome::Drop => answered(&span, &[]),
            outcome => {
                let (sock, cfg, packet) = (sock.clone(), cfg.clone(), packet.to_vec());
                let task = async move {
                    let out = network(&cfg, outcome, &packet, UDP_MAX).await;
                    answered(&Span::current(), &out);
                    let _ = sock.send_to(&out, peer);
                };
                runtime.spawn(task.instrument(span));
            }
        }
    }
}

/// A client agent's UDP loop: every question relayed, each in its own task.
async fn relay_udp(udp: UdpSocket, relay: Arc<dyn Relay>) {
    let udp = Arc::new(udp);
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp recv");
                continue;
            }
        };
        let packet = buf.get(..len).unwrap_or_default().to_vec();
        let (udp, relay) = (udp.clone(), relay.clone());
        tokio::spawn(async move {
            if let Some(out) = relay.relay(packet, UDP_MAX).await {
                if !out.is_empty() {
                    let _ = udp.send_to(&out, peer).await;
                }
            }
        });
    }
}

async fn serve_tcp(mut stream: TcpStream, source: &Source) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let (engine, cfg) = match source {
            Source::Local { engine, cfg } => (engine, cfg),
            Source::Relay(relay) => {
                match relay.relay(packet, MAX_TCP_SIZE).await {
                    Some(out) if !out.is_empty() => write_framed(&mut stream, &out).await?,
                    _ => {}
                }
                continue;
            }
        };
        let span = query_span("tcp");
        let out = match span.in_scope(|| respond(engine, cfg, &packet, MAX_TCP_SIZE)) {
            Outcome::Reply(out) => out,
            Outcome::Drop => {
                answered(&span, &[]);
                continue;
            }
            outcome => {
                network(cfg, outcome, &packet, MAX_TCP_SIZE)
                    .instrument(span.clone())
                    .await
            }
        };
        answered(&span, &out);
        write_framed(&mut stream, &out).await?;
    }
}

/// Write one length-prefixed TCP answer (skipped if over 64 KiB).
async fn write_framed(stream: &mut TcpStream, out: &[u8]) -> std::io::Result<()> {
    let Ok(n) = u16::try_from(out.len()) else {
        return Ok(());
    };
    let mut framed = Vec::with_capacity(out.len() + 2);
    framed.extend_from_slice(&n.to_be_bytes());
    framed.extend_from_slice(out);
    stream.write_all(&framed).await
}

/// Finish an outcome that needs the network: forwarding to the recursors,
/// resolving hostname targets, or asking another datacenter.
async fn network(cfg: &DnsConfig, outcome: Outcome, packet: &[u8], max_size: usize) -> Vec<u8> {
    match outcome {
        Outcome::Reply(out) => out,
        Outcome::Drop => Vec::new(),
        Outcome::Forward(req) => recursor::forward(cfg, &req, packet, max_size).await,
        Outcome::Resolve(pending) => recursor::complete(cfg, *pending, max_size).await,
        Outcome::Remote(q) => {
            let answer = match &cfg.datacenters {
                Some(link) => link.0.ask(&q.dc, packet.to_vec(), max_size).await,
                None => None,
            };
            answer.unwrap_or_else(|| q.unknown(cfg, max_size))
        }
        Outcome::Query(q) => {
            let executed = match &cfg.queries {
                Some(link) => link.0.execute(&q.name).await,
                None => None,
            };
            crate::handler::query_reply(cfg, &q, executed, max_size)
        }
    }
}

/// The span of one query; the handler records `name` and `qtype`,
/// [`answered`] the `rcode`.
fn query_span(transport: &'static str) -> Span {
    tracing::debug_span!(
        "dns_query",
        name = field::Empty,
        qtype = field::Empty,
        transport = field::display(transport),
        rcode = field::Empty
    )
}

/// Record the response code of `out` (`-` when nothing is sent) on `span`
/// and log the query's one debug line.
fn answered(span: &Span, out: &[u8]) {
    match out.get(3) {
        Some(b) => {
            let rcode = ResponseCode::from(0, b & 0x0f);
            span.record("rcode", field::debug(rcode));
        }
        None => {
            span.record("rcode", field::display("-"));
        }
    }
    tracing::debug!(parent: span, bytes = out.len(), "dns query");
}
