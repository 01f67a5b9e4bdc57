//! Talking to the upstream `recursors` (§10.3): forwarding questions
//! outside the Consul domain, and resolving hostname (CNAME and SRV)
//! targets. Recursors are tried in the order of `recursor_strategy`, each
//! within `recursor_timeout`; a UDP answer with TC set is asked again over
//! TCP. Nothing here reads the engine.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::response::{error_reply, size_limit, Pending};
use crate::DnsConfig;

/// The TC bit in the third header byte.
const TC: u8 = 0x02;

/// What one recursor answered.
struct Upstream {
    /// The complete answer (over TCP when the UDP one was truncated).
    full: Vec<u8>,
    /// The truncated UDP answer, when `full` came over TCP: sent instead
    /// of `full` to a UDP client that cannot take `full`, so that it
    /// retries over TCP.
    truncated: Option<Vec<u8>>,
}

/// Forward `packet` (the client's question, parsed as `req`) to the
/// recursors: REFUSED without any, SERVFAIL when all fail. `max_size` is
/// the client transport's limit, as for [`crate::handle`].
pub(crate) async fn forward(
    cfg: &DnsConfig,
    req: &Message,
    packet: &[u8],
    max_size: usize,
) -> Vec<u8> {
    if cfg.recursors.is_empty() {
        return error_reply(req, cfg, ResponseCode::Refused, false);
    }
    for upstream in cfg.recursor_strategy.order(&cfg.recursors) {
        let asked = exchange(upstream, req.metadata.id, packet);
        match tokio::time::timeout(cfg.recursor_timeout, asked).await {
            Ok(Some(answer)) => {
                let fits = answer.full.len() <= size_limit(req, max_size);
                return match answer.truncated {
                    Some(tc) if !fits => tc,
                    _ => answer.full,
                };
            }
            _ => tracing::debug!(%upstream, "dns recursor failed"),
        }
    }
    error_reply(req, cfg, ResponseCode::ServFail, false)
}

/// Resolve the hostname targets of `pending` through the recursors (all
/// at once) and build the response.
pub(crate) async fn complete(cfg: &DnsConfig, pending: Pending, max_size: usize) -> Vec<u8> {
    let lookups = pending
        .answer
        .chases
        .iter()
        .map(|c| resolve(cfg, Query::query(c.name.clone(), c.qtype)));
    let found = join_all(lookups).await;
    pending.complete(cfg, found, max_size)
}

/// Drive `futures` together (their lookups overlap, so one slow
/// recursor costs one timeout, not one per hostname); outputs in order.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut running: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (fut, slot) in running.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// The answer records for `query` from the first recursor that answers
/// (NOERROR or NXDOMAIN); none if all fail.
async fn resolve(cfg: &DnsConfig, query: Query) -> Vec<Record> {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let name = query.name.clone();
    msg.add_query(query);
    let Ok(packet) = msg.to_vec() else {
        return Vec::new();
    };
    for upstream in cfg.recursor_strategy.order(&cfg.recursors) {
        let asked = exchange(upstream, msg.metadata.id, &packet);
        if let Ok(Some(answer)) = tokio::time::timeout(cfg.recursor_timeout, asked).await {
            return Message::from_vec(&answer.full)
                .map(|m| m.answers)
                .unwrap_or_default();
        }
        tracing::debug!(%upstream, %name, "dns CNAME target lookup failed");
    }
    Vec::new()
}

/// One exchange with a recursor: UDP, then TCP if the UDP answer has TC
/// set (falling back to the truncated answer if TCP fails). `None` unless
/// it answers NOERROR or NXDOMAIN.
async fn exchange(upstream: SocketAddr, id: u16, packet: &[u8]) -> Option<Upstream> {
    let udp = ask_udp(upstream, id, packet).await?;
    if udp.get(2).is_none_or(|b| b & TC == 0) {
        return Some(Upstream {
            full: udp,
            truncated: None,
        });
    }
    match ask_tcp(upstream, id, packet).await {
        Some(full) => Some(Upstream {
            full,
            truncated: Some(udp),
        }),
        None => {
            tracing::debug!(%upstream, "dns recursor: TCP retry after TC failed");
            Some(Upstream {
                full: udp,
                truncated: None,
            })
        }
    }
}

/// What to make of a message read from a recursor.
enum Verdict {
    /// The answer to our question, NOERROR or NXDOMAIN.
    Accept,
    /// Not the answer to our question (another id, unreadable): keep reading.
    Ignore,
    /// The answer, but another rcode (SERVFAIL, REFUSED…): try the next.
    Reject,
}

fn check(bytes: &[u8], id: u16) -> Verdict {
    let Ok(msg) = Message::from_vec(bytes) else {
        return Verdict::Ignore;
    };
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return Verdict::Ignore;
    }
    match msg.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Verdict::Accept,
        _ => Verdict::Reject,
    }
}

/// One UDP exchange (bounded by the caller's `recursor_timeout`).
async fn ask_udp(upstream: SocketAddr, id: u16, packet: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind).await.ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(packet).await.ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        match check(&buf[..n], id) {
            Verdict::Accept => return Some(buf[..n].to_vec()),
            Verdict::Ignore => continue,
            Verdict::Reject => return None,
        }
    }
}

/// One TCP exchange (bounded by the caller's `recursor_timeout`).
async fn ask_tcp(upstream: SocketAddr, id: u16, packet: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await.ok()?;
    let len = u16::try_from(packet.len()).ok()?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.ok()?;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.ok()?;
        match check(&buf, id) {
            Verdict::Accept => return Some(buf),
            Verdict::Ignore => continue,
            Verdict::Reject => return None,
        }
    }
}
