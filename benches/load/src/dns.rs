//! The DNS workload (muster only): register S services over HTTP, check
//! that each `<svc>.service.consul` A query answers the registered address,
//! then N UDP sockets send A queries for random services, closed-loop, each
//! waiting for its reply (or a timeout, counted as an error) before the next.
//!
//! Queries are encoded once with hickory-proto; the loop only patches the
//! 16-bit ID and reads the reply's header (ID, QR, RCODE, ANCOUNT), so the
//! client spends little CPU on the machine it shares with the server.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;

use crate::http::Conn;
use crate::load::Measured;

/// How long a client waits for one reply before counting a timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Name of service `i`.
pub fn service_name(i: usize) -> String {
    format!("svc{i}")
}

/// The address service `i`'s node is registered with (10.x.y.1).
pub fn service_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (i / 256 % 256) as u8, (i % 256) as u8, 1)
}

/// Register `n` services, one node each, through `/v1/catalog/register`.
pub async fn register_services(http: SocketAddr, n: usize) -> Result<()> {
    let mut conn = Conn::connect(http).await?;
    for i in 0..n {
        let body = serde_json::json!({
            "Node": format!("bench-node-{i}"),
            "Address": service_addr(i).to_string(),
            "Service": { "Service": service_name(i), "Port": 8080 },
        });
        let r = conn
            .request(
                Method::PUT,
                "/v1/catalog/register",
                Bytes::from(body.to_string()),
            )
            .await?;
        if r.status != StatusCode::OK {
            bail!(
                "register {}: HTTP {} {:?}",
                service_name(i),
                r.status,
                r.body
            );
        }
    }
    Ok(())
}

/// The encoded A query for `<name>.service.consul.`, with ID 0.
pub fn encode_query(service: &str) -> Result<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.id = 0;
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(format!("{service}.service.consul."))?;
    m.add_query(Query::query(name, RecordType::A));
    Ok(m.to_vec()?)
}

/// What the header of a reply says, for the hot loop.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// Message ID.
    pub id: u16,
    /// QR bit: it is a response.
    pub response: bool,
    /// RCODE (low 4 bits).
    pub rcode: u8,
    /// Number of answer records.
    pub answers: u16,
}

/// Read the fixed 12-byte DNS header; `None` if shorter.
pub fn reply_header(b: &[u8]) -> Option<ReplyHeader> {
    let h = b.get(..12)?;
    Some(ReplyHeader {
        id: u16::from_be_bytes([h[0], h[1]]),
        response: h[2] & 0x80 != 0,
        rcode: h[3] & 0x0f,
        answers: u16::from_be_bytes([h[6], h[7]]),
    })
}

/// Check with a full decode that every service answers its address.
pub async fn verify_answers(dns: SocketAddr, n: usize) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(dns).await?;
    let mut buf = vec![0u8; 4096];
    for i in 0..n {
        let q = encode_query(&service_name(i))?;
        sock.send(&q).await?;
        let len = tokio::time::timeout(REPLY_TIMEOUT * 5, sock.recv(&mut buf))
            .await
            .with_context(|| format!("no DNS reply for {}", service_name(i)))??;
        let m = Message::from_vec(buf.get(..len).unwrap_or_default())?;
        let got: Vec<Ipv4Addr> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect();
        if m.metadata.response_code != ResponseCode::NoError || got != [service_addr(i)] {
            bail!(
                "{}.service.consul A: {:?} {got:?}, want [{}]",
                service_name(i),
                m.metadata.response_code,
                service_addr(i)
            );
        }
    }
    Ok(())
}

/// Run `clients` UDP sockets against `dns` for `duration`.
pub async fn run_dns(
    dns: SocketAddr,
    services: usize,
    clients: usize,
    duration: Duration,
) -> Result<Measured> {
    let queries: Vec<Vec<u8>> = (0..services)
        .map(|i| encode_query(&service_name(i)))
        .collect::<Result<_>>()?;
    let mut socks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let s = UdpSocket::bind("127.0.0.1:0").await?;
        s.connect(dns).await?;
        socks.push(s);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for (id, sock) in socks.into_iter().enumerate() {
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            dns_client(id as u64, sock, queries, deadline).await
        }));
    }
    let mut total = Measured::default();
    for t in tasks {
        total.merge(t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// One UDP client's loop.
async fn dns_client(
    id: u64,
    sock: UdpSocket,
    mut queries: Vec<Vec<u8>>,
    deadline: Instant,
) -> Measured {
    let mut rng = StdRng::seed_from_u64(0x0064_6e73 ^ id);
    let mut m = Measured::default();
    let mut buf = vec![0u8; 4096];
    let mut qid: u16 = (id as u16).wrapping_mul(7919);
    while Instant::now() < deadline {
        qid = qid.wrapping_add(1);
        let svc = rng.random_range(0..queries.len());
        let Some(q) = queries.get_mut(svc) else { break };
        q[..2].copy_from_slice(&qid.to_be_bytes());
        let t0 = Instant::now();
        if let Err(e) = sock.send(q).await {
            m.fail(format!("send: {e}"));
            continue;
        }
        // Skip late replies to earlier (timed-out) queries.
        let outcome = tokio::time::timeout(REPLY_TIMEOUT, async {
            loop {
                let n = sock.recv(&mut buf).await?;
                match reply_header(buf.get(..n).unwrap_or_default()) {
                    Some(h) if h.id == qid => return std::io::Result::Ok(h),
                    _ => continue,
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(h)) if h.response && h.rcode == 0 && h.answers >= 1 => {
                m.hist.record_duration(t0.elapsed());
            }
            Ok(Ok(h)) => m.fail(format!("{}: bad reply {h:?}", service_name(svc))),
            Ok(Err(e)) => m.fail(format!("recv: {e}")),
            Err(_) => m.fail(format!(
                "{}: no reply within {REPLY_TIMEOUT:?}",
                service_name(svc)
            )),
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_round_trips() -> Result<()> {
        let q = encode_query("svc7")?;
        let m = Message::from_vec(&q)?;
        assert_eq!(m.queries.len(), 1);
        let query = m.queries.first().context("one query")?;
        assert_eq!(query.name().to_ascii(), "svc7.service.consul.");
        assert_eq!(query.query_type(), RecordType::A);
        let h = reply_header(&q).context("header")?;
        assert_eq!(
            h,
            ReplyHeader {
                id: 0,
                response: false,
                rcode: 0,
                answers: 0
            }
        );
        Ok(())
    }

    #[test]
    fn reply_header_reads_id_rcode_and_answers() {
        // ID 0xbeef, QR=1 RD=1, RA=1 RCODE=3 (NXDOMAIN), 1 question, 2 answers.
        let b = [0xbe, 0xef, 0x81, 0x83, 0, 1, 0, 2, 0, 0, 0, 0];
        assert_eq!(
            reply_header(&b),
            Some(ReplyHeader {
                id: 0xbeef,
                response: true,
                rcode: 3,
                answers: 2
            })
        );
        assert_eq!(reply_header(&b[..11]), None);
    }

    #[test]
    fn service_addresses_are_distinct() {
        let addrs: std::collections::BTreeSet<_> = (0..1000).map(service_addr).collect();
        assert_eq!(addrs.len(), 1000);
        assert_eq!(service_addr(257), Ipv4Addr::new(10, 1, 1, 1));
    }
}
