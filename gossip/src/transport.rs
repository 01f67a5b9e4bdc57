//! Sockets and framing: the UDP socket for SWIM, the TCP listener and
//! client for push/pull state exchanges, and sealing/opening frames with
//! the current keyring.
//!
//! Why TCP at all: foca fills every SWIM datagram up to the configured
//! packet size and leaves the rest for later packets, so no UDP message is
//! ever too large. What doesn't fit in a datagram is a whole member list
//! with every member's tags: that travels as one length-prefixed TCP
//! message (`[len: u32 BE][frame]`, one request and one reply per
//! connection), on join and periodically (memberlist's push/pull).
//!
//! The same listener answers keyring operations (`keyops.rs`).
//!
//! A push/pull this node will not take is answered with a refusal frame
//! (a kind byte and a reason) instead of a silent close, so the joining
//! side can say why: the encryption key differs, or its node name is
//! taken.
//!
//! This module never touches the member table; it hands decoded messages
//! to the driver through [`Command`]s.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::Command;
use crate::error::{Error, Result};
use crate::keyops::{self, KeyOp};
use crate::keyring::Keyring;
use crate::packet::{self, Channel};
use crate::stats::Counters;
use crate::wire::SyncMsg;

/// Largest TCP message accepted (a member list of tens of thousands).
const MAX_TCP_FRAME: usize = 32 << 20;

/// How many times binding a UDP+TCP pair on a random port is retried when
/// the TCP side of the picked port is taken.
const BIND_ATTEMPTS: usize = 16;

/// Encryption settings and counters, shared by every task.
#[derive(Debug)]
pub(crate) struct Transport {
    /// The keyring; replaced by keyring operations.
    pub(crate) keyring: RwLock<Option<Keyring>>,
    /// Refuse plaintext when a keyring is set.
    pub(crate) verify_incoming: bool,
    /// Encrypt when a keyring is set.
    pub(crate) verify_outgoing: bool,
    /// What happened on the wire.
    pub(crate) counters: Counters,
    /// Where keyring changes persist.
    pub(crate) keyring_path: Option<std::path::PathBuf>,
    /// This member's name (in keyring answers).
    pub(crate) node: String,
}

impl Transport {
    pub(crate) fn keyring(&self) -> RwLockReadGuard<'_, Option<Keyring>> {
        self.keyring.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frames a payload for sending.
    pub(crate) fn seal(&self, channel: Channel, payload: &[u8]) -> Result<Vec<u8>> {
        let ring = self.keyring();
        let ring = ring.as_ref().filter(|_| self.verify_outgoing);
        packet::seal(ring, channel, payload)
    }

    /// Unframes a received packet; a refused one is counted, logged
    /// (rate-limited) and returned as the error.
    pub(crate) fn open<'a>(
        &self,
        channel: Channel,
        data: &'a [u8],
        from: SocketAddr,
    ) -> Result<Cow<'a, [u8]>> {
        let ring = self.keyring();
        let require = ring.is_some() && self.verify_incoming;
        packet::open(ring.as_ref(), require, channel, data)
            .inspect_err(|e| self.counters.dropped(from, channel, e))
    }
}

/// Binds the UDP socket and the TCP listener on the same address and port.
/// With port 0, the port the UDP socket got is reused for TCP (retrying if
/// that TCP port is taken).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let attempts = if addr.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| Error::io(format!("bind UDP {addr}"), e))?;
        let bound = udp
            .local_addr()
            .map_err(|e| Error::io("UDP local address", e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(Error::io(format!("bind TCP {bound}"), e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::Config(format!("could not bind {addr}"))))
}

pub(crate) async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_TCP_FRAME {
        return Err(std::io::Error::other(format!(
            "message of {len} bytes exceeds {MAX_TCP_FRAME}"
        )));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

pub(crate) async fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| std::io::Error::other("message too large"))?;
    stream.write_u32(len).await?;
    stream.write_all(frame).await?;
    stream.flush().await
}

/// Refusal kind: another alive member has the joiner's node name.
const REFUSED_NAME: u8 = 1;
/// Refusal kind: the joiner's message could not be opened (encryption).
const REFUSED_UNREADABLE: u8 = 2;

/// What a refusal's reason says about a frame this node could not open.
fn unreadable_reason(e: &Error) -> String {
    match e {
        Error::DecryptFailed => "no key installed on this pool decrypts the message: the gossip \
             encryption key (encrypt) is probably wrong: use the pool's key"
            .into(),
        Error::PlaintextRejected => "this pool encrypts its gossip and refuses plaintext: set \
             encrypt to the pool's key"
            .into(),
        Error::NoKeyring => "this pool does not encrypt its gossip: remove encrypt from this \
             agent, or install the key on the pool first (muster keyring -install)"
            .into(),
        other => format!("the message could not be read: {other}"),
    }
}

/// Answer a push/pull with a refusal (best effort: the peer may be gone).
async fn refuse(stream: &mut TcpStream, transport: &Transport, kind: u8, reason: &str) {
    let mut payload = vec![kind];
    payload.extend_from_slice(reason.as_bytes());
    let frame = if kind == REFUSED_UNREADABLE {
        // The peer could not be read: it may not hold our key either.
        packet::seal(None, Channel::Refusal, &payload)
    } else {
        transport.seal(Channel::Refusal, &payload)
    };
    if let Ok(frame) = frame {
        let _ = write_frame(stream, &frame).await;
    }
}

/// A refusal frame from `peer`, as the error the join reports.
fn refusal(transport: &Transport, peer: SocketAddr, frame: &[u8]) -> Error {
    let ring = transport.keyring();
    let Ok(plain) = packet::open(ring.as_ref(), false, Channel::Refusal, frame) else {
        return Error::Exchange {
            peer,
            reason: "refused, with a reason this node cannot read".into(),
        };
    };
    let (kind, text) = plain.split_first().unwrap_or((&0, &[]));
    let reason = String::from_utf8_lossy(text).into_owned();
    if *kind == REFUSED_NAME {
        Error::JoinRefused { peer, reason }
    } else {
        Error::Exchange { peer, reason }
    }
}

/// Push/pull with `peer`: sends our state, returns theirs.
pub(crate) async fn exchange(
    transport: &Transport,
    peer: SocketAddr,
    local: &SyncMsg,
    timeout: Duration,
) -> Result<SyncMsg> {
    let fail = |reason: String| Error::Exchange { peer, reason };
    let frame = transport.seal(Channel::Sync, &local.encode()?)?;
    let reply = tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(peer).await?;
        write_frame(&mut stream, &frame).await?;
        read_frame(&mut stream).await
    })
    .await
    .map_err(|_| fail(format!("timed out after {timeout:?}")))?
    .map_err(|e| {
        let closed = e.kind() == std::io::ErrorKind::UnexpectedEof;
        if closed && transport.keyring().is_some() {
            fail(format!(
                "{e}: the member closed the connection without answering; the gossip \
                 encryption key (encrypt) is probably wrong"
            ))
        } else {
            fail(e.to_string())
        }
    })?;
    if Channel::of(&reply) == Some(Channel::Refusal) {
        Counters::bump(&transport.counters.syncs_failed);
        return Err(refusal(transport, peer, &reply));
    }
    let result = transport
        .open(Channel::Sync, &reply, peer)
        .and_then(|plain| SyncMsg::decode(&plain))
        .map_err(|e| match e {
            Error::DecryptFailed | Error::NoKeyring | Error::PlaintextRejected => fail(format!(
                "the answer could not be read ({e}): the gossip encryption key (encrypt) \
                 probably differs from the pool's"
            )),
            other => fail(other.to_string()),
        });
    let counter = if result.is_ok() {
        &transport.counters.syncs_completed
    } else {
        &transport.counters.syncs_failed
    };
    Counters::bump(counter);
    result
}

/// Accepts push/pull connections until shutdown.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    transport: Arc<Transport>,
    commands: mpsc::Sender<Command>,
    mut shutdown: watch::Receiver<bool>,
    timeout: Duration,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "gossip: accept failed");
                    continue;
                }
            },
        };
        let transport = Arc::clone(&transport);
        let commands = commands.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, serve(stream, peer, &transport, commands)).await {
                Ok(Ok(())) => Counters::bump(&transport.counters.syncs_completed),
                Ok(Err(e)) => {
                    Counters::bump(&transport.counters.syncs_failed);
                    tracing::debug!(%peer, error = %e, "gossip: state exchange failed");
                }
                Err(_) => {
                    Counters::bump(&transport.counters.syncs_failed);
                    tracing::debug!(%peer, "gossip: state exchange timed out");
                }
            }
        });
    }
}

/// One incoming exchange: read their state, hand it to the driver, write
/// ours back.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    transport: &Transport,
    commands: mpsc::Sender<Command>,
) -> Result<()> {
    let frame = read_frame(&mut stream)
        .await
        .map_err(|e| Error::io("read state", e))?;
    if Channel::of(&frame) == Some(Channel::Query) {
        let op = {
            let plain = transport.open(Channel::Query, &frame, peer)?;
            KeyOp::decode(&plain)
                .inspect_err(|e| transport.counters.dropped(peer, Channel::Query, e))?
        };
        let out = transport.seal(Channel::Query, &keyops::answer(transport, &op).encode()?)?;
        return write_frame(&mut stream, &out)
            .await
            .map_err(|e| Error::io("write keyring answer", e));
    }
    let remote = {
        let plain = match transport.open(Channel::Sync, &frame, peer) {
            Ok(plain) => plain,
            Err(e) => {
                refuse(
                    &mut stream,
                    transport,
                    REFUSED_UNREADABLE,
                    &unreadable_reason(&e),
                )
                .await;
                return Err(e);
            }
        };
        SyncMsg::decode(&plain)
            .inspect_err(|e| transport.counters.dropped(peer, Channel::Sync, e))?
    };
    let (reply, local) = oneshot::channel();
    commands
        .send(Command::Exchange { remote, reply })
        .await
        .map_err(|_| Error::Stopped)?;
    let local = match local.await.map_err(|_| Error::Stopped)? {
        Ok(local) => local,
        Err(reason) => {
            refuse(&mut stream, transport, REFUSED_NAME, &reason).await;
            return Err(Error::Exchange { peer, reason });
        }
    };
    let out = transport.seal(Channel::Sync, &local.encode()?)?;
    write_frame(&mut stream, &out)
        .await
        .map_err(|e| Error::io("write state", e))
}
