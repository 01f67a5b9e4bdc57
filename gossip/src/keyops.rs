//! Keyring operations across the pool (Consul's `keyring` command): the
//! agent asked applies an operation to its own keyring and sends it to
//! every alive member over the encrypted TCP channel, one request and one
//! answer per member; each answers with its keys after the operation or
//! its error. Install a new key everywhere, make it primary everywhere,
//! then remove the old one: the pool keeps talking throughout.

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::packet::Channel;
use crate::transport::{read_frame, write_frame, Transport};

/// One keyring operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    /// Report the installed keys.
    List,
    /// Install a key (decrypt-only until used).
    Install(String),
    /// Make an installed key the primary (the one that encrypts).
    Use(String),
    /// Remove a key that is not the primary.
    Remove(String),
}

/// One member's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnswer {
    /// The member.
    pub node: String,
    /// Its keys after the operation (primary first), or its error.
    pub result: std::result::Result<Vec<String>, String>,
}

impl KeyOp {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| Error::Codec(format!("encode key op: {e}")))
    }

    pub(crate) fn decode(data: &[u8]) -> Result<KeyOp> {
        postcard::from_bytes(data).map_err(|e| Error::Codec(format!("decode key op: {e}")))
    }
}

impl KeyAnswer {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| Error::Codec(format!("encode key answer: {e}")))
    }

    pub(crate) fn decode(data: &[u8]) -> Result<KeyAnswer> {
        postcard::from_bytes(data).map_err(|e| Error::Codec(format!("decode key answer: {e}")))
    }
}

/// Apply `op` to this member's keyring: a change goes to a copy, which is
/// persisted, then made current (a failed write changes nothing).
pub(crate) fn apply(transport: &Transport, op: &KeyOp) -> Result<Vec<String>> {
    let mut guard = transport
        .keyring
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let mut ring: Keyring = guard.clone().ok_or(Error::EncryptionDisabled)?;
    match op {
        KeyOp::List => return Ok(ring.keys()),
        KeyOp::Install(k) => ring.install(k).map(|_| ())?,
        KeyOp::Use(k) => ring.use_key(k)?,
        KeyOp::Remove(k) => ring.remove(k)?,
    }
    if let Some(path) = &transport.keyring_path {
        ring.save(path)?;
    }
    let keys = ring.keys();
    *guard = Some(ring);
    if !matches!(op, KeyOp::List) {
        tracing::info!(op = ?redacted(op), "gossip: keyring changed");
    }
    Ok(keys)
}

/// The operation without its key (for logs).
fn redacted(op: &KeyOp) -> &'static str {
    match op {
        KeyOp::List => "list",
        KeyOp::Install(_) => "install",
        KeyOp::Use(_) => "use",
        KeyOp::Remove(_) => "remove",
    }
}

/// This member's answer to `op`.
pub(crate) fn answer(transport: &Transport, op: &KeyOp) -> KeyAnswer {
    KeyAnswer {
        node: transport.node.clone(),
        result: apply(transport, op).map_err(|e| e.to_string()),
    }
}

/// Send `op` to the member `name` at `peer` and return its answer (an
/// unreachable member answers with the error).
pub(crate) async fn ask(
    transport: &Transport,
    name: String,
    peer: SocketAddr,
    op: &KeyOp,
    timeout: Duration,
) -> KeyAnswer {
    let exchange = async {
        let frame = transport.seal(Channel::Query, &op.encode()?)?;
        let reply = tokio::time::timeout(timeout, async {
            let mut stream = tokio::net::TcpStream::connect(peer).await?;
            write_frame(&mut stream, &frame).await?;
            read_frame(&mut stream).await
        })
        .await
        .map_err(|_| Error::Exchange {
            peer,
            reason: format!("timed out after {timeout:?}"),
        })?
        .map_err(|e| Error::io(format!("keyring query to {peer}"), e))?;
        let plain = transport.open(Channel::Query, &reply, peer)?;
        KeyAnswer::decode(&plain)
    };
    match exchange.await {
        Ok(a) => a,
        Err(e) => KeyAnswer {
            node: name,
            result: Err(e.to_string()),
        },
    }
}
