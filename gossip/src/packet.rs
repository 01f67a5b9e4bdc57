//! The on-the-wire frame around every gossip payload, UDP datagram or TCP
//! message alike: a version byte, a flags byte, then either the plaintext
//! payload or an AES-GCM sealed one.
//!
//! ```text
//! plaintext:  [version=1][channel]        [payload ...]
//! encrypted:  [version=1][channel | 0x80] [nonce: 12][ciphertext ... | tag: 16]
//! ```
//!
//! The two header bytes are the AES-GCM associated data, so a sealed SWIM
//! datagram can't be replayed as a sync message or downgraded. The nonce is
//! random per packet (96 bits from the thread CSPRNG). The primary key
//! seals; every installed key is tried to open.
//!
//! This module owns framing and crypto only; it never logs or counts (the
//! transport does) and must never panic on any input: it is fuzzed
//! (`fuzz/fuzz_targets/gossip_packet.rs`) and property-tested.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::keyring::{Keyring, NONCE_LEN, TAG_LEN};

/// The frame version this build writes and reads.
pub const VERSION: u8 = 1;

/// Flag bit: the payload is AES-GCM sealed.
const ENCRYPTED: u8 = 0x80;

/// Bytes the frame adds to a plaintext payload.
pub const PLAIN_OVERHEAD: usize = 2;

/// Bytes the frame adds to an encrypted payload.
pub const SEALED_OVERHEAD: usize = 2 + NONCE_LEN + TAG_LEN;

/// What a frame carries; part of the authenticated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    /// A foca SWIM message (UDP).
    Swim = 1,
    /// A push/pull state exchange (TCP).
    Sync = 2,
    /// A keyring operation and its answer (TCP).
    Query = 3,
    /// The answer to a push/pull this node will not take: a kind byte then
    /// a UTF-8 reason (TCP). Sealed when the refusing node can seal for
    /// the joiner; plaintext when it could not read the joiner at all
    /// (the wrong key). A refusal changes no state anywhere: at worst a
    /// forged one fails a join, which dropping the connection does too.
    Refusal = 4,
}

impl Channel {
    /// The channel a frame says it carries (its second header byte),
    /// unauthenticated: [`open`] checks it again.
    pub fn of(frame: &[u8]) -> Option<Channel> {
        match frame.get(1).map(|b| b & !ENCRYPTED) {
            Some(1) => Some(Channel::Swim),
            Some(2) => Some(Channel::Sync),
            Some(3) => Some(Channel::Query),
            Some(4) => Some(Channel::Refusal),
            _ => None,
        }
    }
}

/// Frames `payload`: sealed with the keyring's primary key when `keyring`
/// is given, plaintext otherwise.
pub fn seal(keyring: Option<&Keyring>, channel: Channel, payload: &[u8]) -> Result<Vec<u8>> {
    match keyring {
        None => {
            let mut out = Vec::with_capacity(PLAIN_OVERHEAD + payload.len());
            out.extend_from_slice(&[VERSION, channel as u8]);
            out.extend_from_slice(payload);
            Ok(out)
        }
        Some(ring) => {
            let header = [VERSION, channel as u8 | ENCRYPTED];
            let mut nonce = [0u8; NONCE_LEN];
            rand::fill(&mut nonce);
            let sealed = ring.encrypt(&nonce, &header, payload)?;
            let mut out = Vec::with_capacity(header.len() + NONCE_LEN + sealed.len());
            out.extend_from_slice(&header);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&sealed);
            Ok(out)
        }
    }
}

/// Unframes a packet received on `channel`.
///
/// - An encrypted frame is opened with any installed key; without a
///   keyring it is [`Error::NoKeyring`], with no matching key
///   [`Error::DecryptFailed`].
/// - A plaintext frame is [`Error::PlaintextRejected`] when
///   `require_encryption` is set (Consul's `encrypt_verify_incoming`).
///
/// Never panics, whatever the bytes.
pub fn open<'a>(
    keyring: Option<&Keyring>,
    require_encryption: bool,
    channel: Channel,
    packet: &'a [u8],
) -> Result<Cow<'a, [u8]>> {
    let (header, body) = packet
        .split_first_chunk::<2>()
        .ok_or(Error::MalformedPacket("shorter than the frame header"))?;
    let [version, flags] = *header;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    if flags & !ENCRYPTED != channel as u8 {
        return Err(Error::MalformedPacket("wrong channel"));
    }
    if flags & ENCRYPTED == 0 {
        if require_encryption {
            return Err(Error::PlaintextRejected);
        }
        return Ok(Cow::Borrowed(body));
    }
    let ring = keyring.ok_or(Error::NoKeyring)?;
    let (nonce, sealed) = body
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(Error::MalformedPacket(
            "encrypted frame shorter than its nonce",
        ))?;
    if sealed.len() < TAG_LEN {
        return Err(Error::MalformedPacket(
            "encrypted frame shorter than its tag",
        ));
    }
    ring.decrypt(nonce, header, sealed)
        .map(Cow::Owned)
        .ok_or(Error::DecryptFailed)
}

#[cfg(test)]
mod tests {

    #[test]
    fn channel_of_reads_the_header_with_or_without_encryption() -> Result<()> {
        let ring = Keyring::new(K16)?;
        for ch in [
            Channel::Swim,
            Channel::Sync,
            Channel::Query,
            Channel::Refusal,
        ] {
            assert_eq!(Channel::of(&seal(None, ch, b"x")?), Some(ch));
            assert_eq!(Channel::of(&seal(Some(&ring), ch, b"x")?), Some(ch));
        }
        assert_eq!(Channel::of(&[1]), None);
        assert_eq!(Channel::of(&[1, 9]), None);
        Ok(())
    }

    use super::*;
    use proptest::prelude::*;

    const K16: &str = "AAECAwQFBgcICQoLDA0ODw==";
    const K32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER: &str = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";

    #[test]
    fn encrypted_round_trip() -> Result<()> {
        for key in [K16, K32] {
            let ring = Keyring::new(key)?;
            let sealed = seal(Some(&ring), Channel::Swim, b"hello swim")?;
            assert_eq!(sealed.len(), SEALED_OVERHEAD + 10);
            assert_eq!(sealed.first(), Some(&VERSION));
            let opened = open(Some(&ring), true, Channel::Swim, &sealed)?;
            assert_eq!(&*opened, b"hello swim");
        }
        Ok(())
    }

    #[test]
    fn nonces_differ_per_packet() -> Result<()> {
        let ring = Keyring::new(K16)?;
        let a = seal(Some(&ring), Channel::Swim, b"same")?;
        let b = seal(Some(&ring), Channel::Swim, b"same")?;
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn plaintext_round_trip_and_verify_incoming() -> Result<()> {
        let plain = seal(None, Channel::Sync, b"state")?;
        assert_eq!(&*open(None, false, Channel::Sync, &plain)?, b"state");
        let ring = Keyring::new(K16)?;
        // Rolling enablement: a keyring but verify_incoming off accepts it.
        assert_eq!(&*open(Some(&ring), false, Channel::Sync, &plain)?, b"state");
        assert!(matches!(
            open(Some(&ring), true, Channel::Sync, &plain),
            Err(Error::PlaintextRejected)
        ));
        Ok(())
    }

    #[test]
    fn wrong_key_is_rejected() -> Result<()> {
        let sealed = seal(Some(&Keyring::new(K16)?), Channel::Swim, b"x")?;
        let other = Keyring::new(OTHER)?;
        assert!(matches!(
            open(Some(&other), true, Channel::Swim, &sealed),
            Err(Error::DecryptFailed)
        ));
        assert!(matches!(
            open(None, false, Channel::Swim, &sealed),
            Err(Error::NoKeyring)
        ));
        Ok(())
    }

    #[test]
    fn any_installed_key_opens() -> Result<()> {
        let old = Keyring::new(K16)?;
        let sealed = seal(Some(&old), Channel::Swim, b"rotating")?;
        let mut new = Keyring::new(K32)?;
        new.install(K16)?;
        assert_eq!(
            &*open(Some(&new), true, Channel::Swim, &sealed)?,
            b"rotating"
        );
        Ok(())
    }

    #[test]
    fn tampering_with_any_byte_is_rejected() -> Result<()> {
        let ring = Keyring::new(K32)?;
        let sealed = seal(Some(&ring), Channel::Swim, b"do not touch")?;
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            if let Some(b) = bad.get_mut(at) {
                *b ^= 0x01;
            }
            assert!(
                open(Some(&ring), true, Channel::Swim, &bad).is_err(),
                "flipping byte {at} was accepted"
            );
        }
        let truncated = sealed.get(..sealed.len() - 1).unwrap_or_default();
        assert!(open(Some(&ring), true, Channel::Swim, truncated).is_err());
        Ok(())
    }

    #[test]
    fn channel_is_authenticated() -> Result<()> {
        let ring = Keyring::new(K16)?;
        let mut sealed = seal(Some(&ring), Channel::Swim, b"ping")?;
        assert!(open(Some(&ring), true, Channel::Sync, &sealed).is_err());
        // Relabel the frame as sync: the tag no longer verifies.
        if let Some(flags) = sealed.get_mut(1) {
            *flags = Channel::Sync as u8 | ENCRYPTED;
        }
        assert!(matches!(
            open(Some(&ring), true, Channel::Sync, &sealed),
            Err(Error::DecryptFailed)
        ));
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let ring = Keyring::new(K16).expect("valid test key");
            for channel in [Channel::Swim, Channel::Sync] {
                let _ = open(Some(&ring), true, channel, &data);
                let _ = open(Some(&ring), false, channel, &data);
                let _ = open(None, false, channel, &data);
            }
        }

        #[test]
        fn round_trips_any_payload(
            payload in proptest::collection::vec(any::<u8>(), 0..2048),
            key in proptest::collection::vec(any::<u8>(), 32..=32),
        ) {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
            let ring = Keyring::new(&b64).expect("32-byte key");
            let sealed = seal(Some(&ring), Channel::Sync, &payload).expect("seal");
            let opened = open(Some(&ring), true, Channel::Sync, &sealed).expect("open");
            prop_assert_eq!(&*opened, &payload[..]);
        }
    }
}
