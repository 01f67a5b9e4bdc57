//! The UDP and TCP listeners: reading questions, running the handler and
//! the recursor work it hands back, writing answers, and one debug-level
//! tracing span per query (`name`, `qtype`, `transport`, `rcode`).

use std::future::Future;
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

/// Serve DNS on `udp` and `tcp` until `shutdown` completes.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    engine: Engine,
    cfg: DnsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let udp = Arc::new(udp);
    let cfg = Arc::new(cfg);
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            got = udp.recv_from(&mut buf) => {
                let (len, peer) = match got {
                    Ok(x) => x,
                    // ICMP errors surface here on some systems: keep going.
                    Err(e) => {
                        tracing::debug!(error = %e, "dns udp recv");
                        continue;
                    }
                };
                let packet = &buf[..len];
                let span = query_span("udp");
                match span.in_scope(|| respond(&engine, &cfg, packet, UDP_MAX)) {
                    Outcome::Reply(out) => {
                        answered(&span, &out);
                        let _ = udp.send_to(&out, peer).await;
                    }
                    Outcome::Drop => answered(&span, &[]),
                    outcome => {
                        let (udp, cfg, packet) = (udp.clone(), cfg.clone(), packet.to_vec());
                        let task = async move {
                            let out = network(&cfg, outcome, &packet, UDP_MAX).await;
                            answered(&Span::current(), &out);
                            let _ = udp.send_to(&out, peer).await;
                        };
                        tasks.spawn(task.instrument(span));
                    }
                }
            }
            conn = tcp.accept() => {
                match conn {
                    Ok((stream, _)) => {
                        let (engine, cfg) = (engine.clone(), cfg.clone());
                        tasks.spawn(async move {
                            if let Err(e) = serve_tcp(stream, &engine, &cfg).await {
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
    Ok(())
}

async fn serve_tcp(mut stream: TcpStream, engine: &Engine, cfg: &DnsConfig) -> std::io::Result<()> {
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
        let Ok(n) = u16::try_from(out.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        stream.write_all(&framed).await?;
    }
}

/// Finish an outcome that needs the recursors: forwarding, or resolving
/// hostname targets.
async fn network(cfg: &DnsConfig, outcome: Outcome, packet: &[u8], max_size: usize) -> Vec<u8> {
    match outcome {
        Outcome::Reply(out) => out,
        Outcome::Drop => Vec::new(),
        Outcome::Forward(req) => recursor::forward(cfg, &req, packet, max_size).await,
        Outcome::Resolve(pending) => recursor::complete(cfg, *pending, max_size).await,
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
