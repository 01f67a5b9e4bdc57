//! The UDP and TCP listeners, and forwarding to recursors.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use muster_engine::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::handler::{error_reply, respond, Outcome, MAX_TCP_SIZE};
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
                match respond(&engine, &cfg, packet, UDP_MAX) {
                    Outcome::Reply(out) => {
                        let _ = udp.send_to(&out, peer).await;
                    }
                    Outcome::Drop => {}
                    Outcome::Forward(req) => {
                        let (udp, cfg, packet) = (udp.clone(), cfg.clone(), packet.to_vec());
                        tasks.spawn(async move {
                            let out = forward(&cfg, &req, &packet).await;
                            let _ = udp.send_to(&out, peer).await;
                        });
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
        let out = match respond(engine, cfg, &packet, MAX_TCP_SIZE) {
            Outcome::Reply(out) => out,
            Outcome::Drop => continue,
            Outcome::Forward(req) => forward(cfg, &req, &packet).await,
        };
        let Ok(n) = u16::try_from(out.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        stream.write_all(&framed).await?;
    }
}

/// Try the recursors in order; REFUSED without any, SERVFAIL when all fail.
async fn forward(cfg: &DnsConfig, req: &Message, packet: &[u8]) -> Vec<u8> {
    if cfg.recursors.is_empty() {
        return error_reply(req, cfg, ResponseCode::Refused, false);
    }
    for &upstream in &cfg.recursors {
        match tokio::time::timeout(cfg.recursor_timeout, ask(upstream, req.metadata.id, packet))
            .await
        {
            Ok(Some(answer)) => return answer,
            _ => tracing::debug!(%upstream, "dns recursor failed"),
        }
    }
    error_reply(req, cfg, ResponseCode::ServFail, false)
}

/// One UDP exchange with a recursor; `None` unless it answers NOERROR or
/// NXDOMAIN.
async fn ask(upstream: SocketAddr, id: u16, packet: &[u8]) -> Option<Vec<u8>> {
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
        let Ok(msg) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if msg.metadata.id != id {
            continue;
        }
        return match msg.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Some(buf[..n].to_vec()),
            _ => None,
        };
    }
}
