//! The gossip keyring: AES-GCM keys, which one encrypts, and the JSON file
//! they are persisted in.
//!
//! A keyring holds one or more 16-, 24- or 32-byte keys (AES-128/192/256).
//! The first is the primary: it encrypts every outgoing packet. Every
//! installed key is tried when decrypting, which is what makes rotation
//! work (install everywhere, `use` everywhere, remove the old one).
//!
//! This module owns key validation and the file format (a JSON list of
//! base64 keys, primary first, as Consul's `data_dir/serf/local.keyring`).
//! It does not own the packet framing: that is `packet.rs`.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::{Error, Result};

/// AES-192-GCM with a 96-bit nonce (aes-gcm has no alias for it).
type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// Bytes in an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes in an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;

/// One installed key and its ready-to-use cipher.
#[derive(Clone)]
struct Key {
    /// The raw key bytes; the identity of the key (two base64 spellings of
    /// the same bytes are the same key).
    raw: Vec<u8>,
    /// The cipher for `raw`'s length.
    cipher: Cipher,
}

/// The cipher matching a key's length.
#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl Key {
    fn parse(b64: &str) -> Result<Key> {
        let raw = STANDARD
            .decode(b64.trim())
            .map_err(|e| Error::InvalidKey(format!("not valid base64: {e}")))?;
        Key::from_bytes(raw)
    }

    fn from_bytes(raw: Vec<u8>) -> Result<Key> {
        let bad_len = |_| Error::InvalidKey(format!("bad key length {}", raw.len()));
        let cipher = match raw.len() {
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(&raw).map_err(bad_len)?)),
            24 => Cipher::Aes192(Box::new(Aes192Gcm::new_from_slice(&raw).map_err(bad_len)?)),
            32 => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(&raw).map_err(bad_len)?)),
            n => {
                return Err(Error::InvalidKey(format!(
                    "key must be 16, 24 or 32 bytes (AES-128/192/256), got {n} bytes"
                )));
            }
        };
        Ok(Key { raw, cipher })
    }

    fn encoded(&self) -> String {
        STANDARD.encode(&self.raw)
    }

    fn encrypt(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
        let nonce = (*nonce).into();
        let payload = Payload { msg, aad };
        let out = match &self.cipher {
            Cipher::Aes128(c) => c.encrypt(&nonce, payload),
            Cipher::Aes192(c) => c.encrypt(&nonce, payload),
            Cipher::Aes256(c) => c.encrypt(&nonce, payload),
        };
        out.map_err(|_| Error::Codec("AES-GCM encryption failed".to_owned()))
    }

    fn decrypt(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
        let nonce = (*nonce).into();
        let payload = Payload { msg, aad };
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt(&nonce, payload),
            Cipher::Aes192(c) => c.decrypt(&nonce, payload),
            Cipher::Aes256(c) => c.decrypt(&nonce, payload),
        }
        .ok()
    }
}

/// A set of gossip encryption keys; the first is the primary.
///
/// Invariant: no key appears twice (the primary is never also a secondary).
#[derive(Clone)]
pub struct Keyring {
    /// The key that encrypts; also tried first when decrypting.
    primary: Key,
    /// Decrypt-only keys, in installation order.
    secondary: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("keys", &(1 + self.secondary.len()))
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring with one key, given in base64 (Consul's `encrypt`).
    pub fn new(primary: &str) -> Result<Keyring> {
        Ok(Keyring {
            primary: Key::parse(primary)?,
            secondary: Vec::new(),
        })
    }

    /// A keyring from base64 keys, primary first. Duplicates are dropped.
    pub fn from_keys<S: AsRef<str>>(keys: &[S]) -> Result<Keyring> {
        let mut parsed: Vec<Key> = Vec::with_capacity(keys.len());
        for k in keys {
            let key = Key::parse(k.as_ref())?;
            if !parsed.iter().any(|p| p.raw == key.raw) {
                parsed.push(key);
            }
        }
        let mut parsed = parsed.into_iter();
        let primary = parsed
            .next()
            .ok_or_else(|| Error::InvalidKey("keyring has no keys".to_owned()))?;
        Ok(Keyring {
            primary,
            secondary: parsed.collect(),
        })
    }

    /// A fresh random 32-byte key in base64 (`consul keygen`).
    pub fn generate_key() -> String {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        STANDARD.encode(raw)
    }

    /// Checks a base64 key without installing it.
    pub fn validate_key(key: &str) -> Result<()> {
        Key::parse(key).map(|_| ())
    }

    /// The primary key in base64.
    pub fn primary(&self) -> String {
        self.primary.encoded()
    }

    /// Every installed key in base64, primary first.
    pub fn keys(&self) -> Vec<String> {
        self.all().map(Key::encoded).collect()
    }

    /// Installs a key as a secondary (decrypt-only) key. Returns false if
    /// it was already installed.
    pub fn install(&mut self, key: &str) -> Result<bool> {
        let key = Key::parse(key)?;
        if self.all().any(|k| k.raw == key.raw) {
            return Ok(false);
        }
        self.secondary.push(key);
        Ok(true)
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, key: &str) -> Result<()> {
        let key = Key::parse(key)?;
        if self.primary.raw == key.raw {
            return Ok(());
        }
        let at = self
            .secondary
            .iter()
            .position(|k| k.raw == key.raw)
            .ok_or(Error::KeyNotInstalled)?;
        let chosen = self.secondary.remove(at);
        let old = std::mem::replace(&mut self.primary, chosen);
        self.secondary.insert(0, old);
        Ok(())
    }

    /// Removes a secondary key. The primary cannot be removed.
    pub fn remove(&mut self, key: &str) -> Result<()> {
        let key = Key::parse(key)?;
        if self.primary.raw == key.raw {
            return Err(Error::RemovePrimaryKey);
        }
        let at = self
            .secondary
            .iter()
            .position(|k| k.raw == key.raw)
            .ok_or(Error::KeyNotInstalled)?;
        self.secondary.remove(at);
        Ok(())
    }

    /// Reads a keyring file: a JSON list of base64 keys, primary first.
    pub fn load(path: &Path) -> Result<Keyring> {
        let file_err = |reason: String| Error::KeyringFile {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let keys: Vec<String> =
            serde_json::from_str(&text).map_err(|e| file_err(format!("not a JSON list: {e}")))?;
        Keyring::from_keys(&keys).map_err(|e| file_err(e.to_string()))
    }

    /// Writes the keyring file atomically (temp file, fsync, rename),
    /// creating its directory if needed. The file is private to the owner.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let json = serde_json::to_string_pretty(&self.keys())
            .map_err(|e| Error::Codec(format!("keyring JSON: {e}")))?;
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = opts
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("rename to {}", path.display()), e))
    }

    /// Every key, primary first.
    fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.primary).chain(&self.secondary)
    }

    /// Encrypts with the primary key.
    pub(crate) fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>> {
        self.primary.encrypt(nonce, aad, msg)
    }

    /// Tries every installed key, primary first.
    pub(crate) fn decrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        msg: &[u8],
    ) -> Option<Vec<u8>> {
        self.all().find_map(|k| k.decrypt(nonce, aad, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K16: &str = "AAECAwQFBgcICQoLDA0ODw==";
    const K24: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
    const K32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn accepts_16_24_32_byte_keys() -> Result<()> {
        for k in [K16, K24, K32] {
            let ring = Keyring::new(k)?;
            assert_eq!(ring.primary(), k);
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_keys_with_clear_errors() {
        let short = STANDARD.encode([1u8; 10]);
        let err = Keyring::new(&short).expect_err("10 bytes").to_string();
        assert!(err.contains("16, 24 or 32 bytes"), "{err}");
        assert!(err.contains("got 10"), "{err}");
        let err = Keyring::new("not base64!")
            .expect_err("bad base64")
            .to_string();
        assert!(err.contains("base64"), "{err}");
    }

    #[test]
    fn install_use_remove() -> Result<()> {
        let mut ring = Keyring::new(K16)?;
        assert!(ring.install(K32)?);
        assert!(!ring.install(K32)?, "second install is a no-op");
        assert_eq!(ring.keys(), vec![K16.to_owned(), K32.to_owned()]);
        assert!(matches!(ring.remove(K16), Err(Error::RemovePrimaryKey)));
        assert!(matches!(ring.use_key(K24), Err(Error::KeyNotInstalled)));
        ring.use_key(K32)?;
        assert_eq!(ring.primary(), K32);
        ring.remove(K16)?;
        assert_eq!(ring.keys(), vec![K32.to_owned()]);
        Ok(())
    }

    #[test]
    fn file_round_trip() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("serf").join("local.keyring");
        let ring = Keyring::from_keys(&[K24, K16])?;
        ring.save(&path)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", e))?;
        let listed: Vec<String> =
            serde_json::from_str(&text).map_err(|e| Error::Codec(e.to_string()))?;
        assert_eq!(listed, vec![K24.to_owned(), K16.to_owned()]);
        let back = Keyring::load(&path)?;
        assert_eq!(back.keys(), ring.keys());
        Ok(())
    }

    #[test]
    fn generated_keys_are_valid() -> Result<()> {
        let k = Keyring::generate_key();
        Keyring::validate_key(&k)?;
        assert_ne!(k, Keyring::generate_key());
        Ok(())
    }
}
