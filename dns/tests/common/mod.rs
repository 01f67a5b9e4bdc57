//! Helpers shared by the muster-dns test binaries: an engine with
//! registrations, question packets, UDP/TCP clients, a running [`serve`],
//! and a fake upstream resolver on loopback. Not every binary uses every
//! helper.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use muster_dns::{handle, DnsConfig};
use muster_engine::{Check, Command, Engine, EngineConfig, Node, Service, Status, Weights};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub type BoxErr = Box<dyn std::error::Error>;
pub type Res = Result<(), BoxErr>;

/// How long a test waits for one DNS exchange.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn open(dir: &std::path::Path) -> Result<Engine, BoxErr> {
    let mut cfg = EngineConfig::new(dir, "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    Ok(Engine::open(cfg).await?)
}

/// A node in dc1 with meta `rack=r1`.
pub fn node(name: &str, addr: &str) -> Node {
    Node {
        node: name.into(),
        address: addr.into(),
        datacenter: "dc1".into(),
        meta: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
        ..Node::default()
    }
}

pub async fn register(
    engine: &Engine,
    n: Node,
    svc: Service,
    status: Option<Status>,
) -> Result<(), BoxErr> {
    let checks = status
        .map(|status| Check {
            node: n.node.clone(),
            check_id: format!("service:{}", svc.id),
            name: "c".into(),
            status,
            service_id: svc.id.clone(),
            service_name: svc.service.clone(),
            ..Check::default()
        })
        .into_iter()
        .collect();
    engine
        .propose(Command::CatalogRegister {
            node: n,
            skip_node_update: false,
            service: Some(svc),
            checks,
        })
        .await?;
    Ok(())
}

pub fn svc(id: &str, name: &str, addr: &str, port: u16, tags: &[&str]) -> Service {
    Service {
        id: id.into(),
        service: name.into(),
        address: addr.into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        weights: Weights {
            passing: 10,
            warning: 2,
        },
        ..Service::default()
    }
}

/// A question message (id 4242, RD), with EDNS0 of `edns` bytes if given.
pub fn question(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    question(name, qtype, edns).to_vec().expect("encode")
}

/// `handle` over UDP rules (512 bytes, no EDNS0).
pub fn ask(engine: &Engine, cfg: &DnsConfig, name: &str, qtype: RecordType) -> Message {
    ask_max(engine, cfg, name, qtype, 512)
}

/// `handle` with a transport limit (`MAX_TCP_SIZE` for TCP).
pub fn ask_max(
    engine: &Engine,
    cfg: &DnsConfig,
    name: &str,
    qtype: RecordType,
    max: usize,
) -> Message {
    let out = handle(engine, cfg, &query(name, qtype, None), max);
    Message::from_vec(&out).expect("decode answer")
}

/// The A/AAAA addresses in ANSWER, sorted.
pub fn ips(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The A/AAAA records in ADDITIONAL (SRV glue, without node meta TXT).
pub fn addr_glue(m: &Message) -> Vec<&Record> {
    m.additionals
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .collect()
}

/// `(owner, text)` of the TXT records in ADDITIONAL.
pub fn txt_glue(m: &Message) -> Vec<(String, String)> {
    m.additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .map(|r| (r.name.to_ascii(), r.data.to_string()))
        .collect()
}

/// `(owner, target)` of the CNAME records in ANSWER.
pub fn cnames(m: &Message) -> Vec<(String, String)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some((r.name.to_ascii(), c.0.to_ascii())),
            _ => None,
        })
        .collect()
}

/// `(port, target)` of the SRV records in ANSWER, sorted.
pub fn srvs(m: &Message) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

pub async fn udp_ask(server: SocketAddr, pkt: &[u8]) -> Result<Message, BoxErr> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(pkt, server).await?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(ASK_TIMEOUT, sock.recv_from(&mut buf)).await??;
    Ok(Message::from_vec(&buf[..n])?)
}

pub async fn tcp_ask(stream: &mut TcpStream, pkt: &[u8]) -> Result<Message, BoxErr> {
    let exchange = async {
        let len = u16::try_from(pkt.len())?.to_be_bytes();
        stream.write_all(&len).await?;
        stream.write_all(pkt).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut out).await?;
        Ok::<_, BoxErr>(Message::from_vec(&out)?)
    };
    tokio::time::timeout(ASK_TIMEOUT, exchange).await?
}

/// One question over a fresh TCP connection.
pub async fn tcp_once(server: SocketAddr, pkt: &[u8]) -> Result<Message, BoxErr> {
    let mut stream = TcpStream::connect(server).await?;
    tcp_ask(&mut stream, pkt).await
}

/// A running `muster_dns::serve` on loopback.
pub struct Server {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), muster_dns::Error>>,
}

impl Server {
    pub async fn start(engine: &Engine, cfg: DnsConfig) -> Result<Server, BoxErr> {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let (uaddr, taddr) = (udp.local_addr()?, tcp.local_addr()?);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(muster_dns::serve(udp, tcp, engine.clone(), cfg, async {
            let _ = rx.await;
        }));
        Ok(Server {
            udp: uaddr,
            tcp: taddr,
            stop,
            task,
        })
    }

    pub async fn stop(self) -> Res {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await???;
        Ok(())
    }
}

/// How many answers a `big.` name gets from [`Upstream`].
pub const BIG: u8 = 40;

/// A loopback upstream resolver on UDP and TCP (one port). An A question
/// gets `ip`, an AAAA question 2001:db8::7; a name starting with `big.`
/// gets [`BIG`] A records 10.77.0.x, which do not fit 512 bytes: over UDP
/// that is an empty answer with TC set. Counts questions per transport.
pub struct Upstream {
    pub addr: SocketAddr,
    pub udp_questions: Arc<AtomicUsize>,
    pub tcp_questions: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(ip: Ipv4Addr) -> Result<Upstream, BoxErr> {
        for _ in 0..32 {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            let up = Upstream {
                addr,
                udp_questions: Arc::new(AtomicUsize::new(0)),
                tcp_questions: Arc::new(AtomicUsize::new(0)),
            };
            let count = up.udp_questions.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65535];
                while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(out) = upstream_answer(&buf[..n], ip, true) {
                        let _ = udp.send_to(&out, peer).await;
                    }
                }
            });
            let count = up.tcp_questions.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let count = count.clone();
                    tokio::spawn(async move {
                        let mut len = [0u8; 2];
                        while stream.read_exact(&mut len).await.is_ok() {
                            let mut pkt = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if stream.read_exact(&mut pkt).await.is_err() {
                                return;
                            }
                            count.fetch_add(1, Ordering::SeqCst);
                            let Some(out) = upstream_answer(&pkt, ip, false) else {
                                continue;
                            };
                            let Ok(n) = u16::try_from(out.len()) else {
                                return;
                            };
                            let mut framed = n.to_be_bytes().to_vec();
                            framed.extend_from_slice(&out);
                            if stream.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
            return Ok(up);
        }
        Err("no port free on both UDP and TCP".into())
    }
}

fn upstream_answer(pkt: &[u8], ip: Ipv4Addr, udp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(pkt).ok()?;
    let q = req.queries.first()?;
    let mut resp = Message::response(req.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    let name = q.name.clone();
    let big = name.to_ascii().to_ascii_lowercase().starts_with("big.");
    match q.query_type {
        RecordType::A if big => {
            for i in 1..=BIG {
                let a = RData::A(A(Ipv4Addr::new(10, 77, 0, i)));
                resp.add_answer(Record::from_rdata(name.clone(), 60, a));
            }
        }
        RecordType::A => {
            resp.add_answer(Record::from_rdata(name, 60, RData::A(A(ip))));
        }
        RecordType::AAAA => {
            let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
            resp.add_answer(Record::from_rdata(name, 60, RData::AAAA(AAAA(v6))));
        }
        _ => {}
    }
    let out = resp.to_vec().ok()?;
    if udp && out.len() > 512 {
        resp.answers.clear();
        resp.metadata.truncation = true;
        return resp.to_vec().ok();
    }
    Some(out)
}
