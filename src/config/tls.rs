//! The TLS keys of a config file, as Consul 1.12+ reads them: the `tls`
//! block (`defaults`, `https`, `internal_rpc`, `grpc`) and the deprecated
//! top-level keys (`ca_file`, `cert_file`, `verify_incoming`, ...), which
//! fill `tls.defaults` (or `tls.https` / `tls.internal_rpc`) where those
//! are unset, with Consul's deprecation warnings.
//!
//! Decoding checks names and types (`tls_min_version`, cipher suites);
//! [`TlsSettings::https`] and [`TlsSettings::internal_rpc`] resolve what
//! the HTTPS listener and the server RPC port use (`tls.https.*` or
//! `tls.internal_rpc.*` over `tls.defaults.*`). Files are not read here:
//! the listeners load them at start and on reload.

use std::path::PathBuf;

use serde_json::Value;

use super::error::ConfigError;
use super::value::{join, Ctx};

/// The TLS versions muster can offer, by Consul's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1_2` (the default).
    Tls12,
    /// `TLSv1_3`.
    Tls13,
}

/// Consul's names of the TLS 1.2 cipher suites muster offers (rustls'
/// AEAD suites; Consul's CBC suites are refused).
pub const CIPHER_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/// A value and the key path it was set at (for error messages), e.g.
/// `tls.https.cert_file` or the deprecated `cert_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed<T> {
    /// The value.
    pub value: T,
    /// Where it was set: the key path.
    pub key: String,
    /// Where it was set: the file.
    pub file: PathBuf,
}

/// One interface's keys (`tls.defaults`, `tls.https`, ...); `None` = not
/// set in any file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsProtocol {
    /// `ca_file`: PEM CA certificates.
    pub ca_file: Option<Keyed<PathBuf>>,
    /// `ca_path`: a directory of PEM CA certificates.
    pub ca_path: Option<Keyed<PathBuf>>,
    /// `cert_file`: the agent's PEM certificate (chain).
    pub cert_file: Option<Keyed<PathBuf>>,
    /// `key_file`: its PEM private key.
    pub key_file: Option<Keyed<PathBuf>>,
    /// `verify_incoming`: require client certificates signed by the CA.
    pub verify_incoming: Option<Keyed<bool>>,
    /// `verify_outgoing`: use TLS, and verify the server, when connecting.
    pub verify_outgoing: Option<Keyed<bool>>,
    /// `verify_server_hostname` (only valid in `internal_rpc`).
    pub verify_server_hostname: Option<Keyed<bool>>,
    /// `tls_min_version`.
    pub tls_min_version: Option<Keyed<TlsVersion>>,
    /// `tls_cipher_suites`: Consul names from [`CIPHER_SUITES`].
    pub tls_cipher_suites: Option<Keyed<Vec<String>>>,
}

impl TlsProtocol {
    /// `self` where set, else `base`.
    fn or(&self, base: &TlsProtocol) -> TlsProtocol {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        TlsProtocol {
            ca_file: pick(&self.ca_file, &base.ca_file),
            ca_path: pick(&self.ca_path, &base.ca_path),
            cert_file: pick(&self.cert_file, &base.cert_file),
            key_file: pick(&self.key_file, &base.key_file),
            verify_incoming: pick(&self.verify_incoming, &base.verify_incoming),
            verify_outgoing: pick(&self.verify_outgoing, &base.verify_outgoing),
            verify_server_hostname: pick(
                &self.verify_server_hostname,
                &base.verify_server_hostname,
            ),
            tls_min_version: pick(&self.tls_min_version, &base.tls_min_version),
            tls_cipher_suites: pick(&self.tls_cipher_suites, &base.tls_cipher_suites),
        }
    }

    /// Later files win, key by key.
    fn merge(&mut self, later: TlsProtocol) {
        *self = later.or(self);
    }
}

/// Every TLS key of the config files, merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `tls.defaults`.
    pub defaults: TlsProtocol,
    /// `tls.https`.
    pub https: TlsProtocol,
    /// `tls.internal_rpc`.
    pub internal_rpc: TlsProtocol,
    /// The deprecated top-level keys, as if in `tls.defaults` (they fill
    /// its gaps).
    pub legacy: TlsProtocol,
    /// Deprecated `verify_incoming_https` (fills `tls.https`).
    pub legacy_https: TlsProtocol,
    /// Deprecated `verify_incoming_rpc` / `verify_server_hostname` (fill
    /// `tls.internal_rpc`).
    pub legacy_rpc: TlsProtocol,
}

/// What one interface uses: `tls.https` (or `tls.internal_rpc`) over
/// `tls.defaults` over the deprecated keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTls {
    /// CA certificates to verify clients against.
    pub ca_file: Option<Keyed<PathBuf>>,
    /// A directory of them.
    pub ca_path: Option<Keyed<PathBuf>>,
    /// The agent's certificate.
    pub cert_file: Option<Keyed<PathBuf>>,
    /// Its key.
    pub key_file: Option<Keyed<PathBuf>>,
    /// Require a client certificate signed by the CA.
    pub verify_incoming: bool,
    /// HTTPS: verify the agent's own certificate when it calls itself
    /// (watches). RPC: use TLS to servers and verify their certificates.
    pub verify_outgoing: bool,
    /// RPC: servers' certificates must name `server.<dc>.<domain>`.
    pub verify_server_hostname: bool,
    /// The lowest TLS version accepted (default TLS 1.2).
    pub min_version: TlsVersion,
    /// TLS 1.2 cipher suites (Consul names); `None`: all of them.
    pub cipher_suites: Option<Vec<String>>,
}

/// The deprecated top-level TLS keys, and where Consul moved each.
const LEGACY: &[(&str, &str)] = &[
    ("ca_file", "tls.defaults.ca_file"),
    ("ca_path", "tls.defaults.ca_path"),
    ("cert_file", "tls.defaults.cert_file"),
    ("key_file", "tls.defaults.key_file"),
    ("tls_min_version", "tls.defaults.tls_min_version"),
    ("tls_cipher_suites", "tls.defaults.tls_cipher_suites"),
    ("verify_incoming", "tls.defaults.verify_incoming"),
    ("verify_outgoing", "tls.defaults.verify_outgoing"),
    ("verify_incoming_https", "tls.https.verify_incoming"),
    ("verify_incoming_rpc", "tls.internal_rpc.verify_incoming"),
    (
        "verify_server_hostname",
        "tls.internal_rpc.verify_server_hostname",
    ),
];

/// True for a top-level key this module decodes.
pub fn is_tls_key(key: &str) -> bool {
    key == "tls"
        || key == "tls_prefer_server_cipher_suites"
        || LEGACY.iter().any(|(k, _)| *k == key)
}

impl TlsSettings {
    /// Decode one top-level key for which [`is_tls_key`] holds; deprecation
    /// warnings go to `warnings`.
    pub fn decode_key(
        &mut self,
        ctx: Ctx<'_>,
        key: &str,
        v: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let file = ctx.file.display();
        if key == "tls_prefer_server_cipher_suites" {
            ctx.bool(key, v)?;
            warnings.push(format!(
                "{file}: The 'tls_prefer_server_cipher_suites' field is deprecated and will be \
                 ignored."
            ));
            return Ok(());
        }
        if key == "tls" {
            for (block, item) in ctx.object(key, v)? {
                let path = join(key, block);
                let slot = match block.as_str() {
                    "defaults" => &mut self.defaults,
                    "https" => &mut self.https,
                    "internal_rpc" => &mut self.internal_rpc,
                    "grpc" => {
                        // No gRPC listener: nothing to protect or expose.
                        ctx.object(&path, item)?;
                        warnings.push(format!(
                            "{file}: \"tls.grpc\" has no effect: muster serves no gRPC"
                        ));
                        continue;
                    }
                    _ => return Err(ctx.unknown(&path)),
                };
                let mut decoded = TlsProtocol::default();
                for (k, item) in ctx.object(&path, item)? {
                    decode_protocol_key(ctx, &mut decoded, &join(&path, k), k, item, false)?;
                }
                if block != "internal_rpc" {
                    if let Some(set) = &decoded.verify_server_hostname {
                        return Err(ctx.bad(
                            &set.key,
                            "verify_server_hostname is only valid in the tls.internal_rpc stanza",
                        ));
                    }
                }
                slot.merge(decoded);
            }
            return Ok(());
        }
        let moved = LEGACY
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("tls.defaults", |(_, to)| to);
        warnings.push(format!(
            "{file}: The '{key}' field is deprecated. Use the '{moved}' field instead."
        ));
        let mut decoded = TlsProtocol::default();
        let (field, slot) = match key {
            "verify_incoming_https" => ("verify_incoming", &mut self.legacy_https),
            "verify_incoming_rpc" => ("verify_incoming", &mut self.legacy_rpc),
            "verify_server_hostname" => ("verify_server_hostname", &mut self.legacy_rpc),
            other => (other, &mut self.legacy),
        };
        decode_protocol_key(ctx, &mut decoded, key, field, v, true)?;
        slot.merge(decoded);
        Ok(())
    }

    /// Merge `later` over `self`, key by key.
    pub fn merge(&mut self, later: TlsSettings) {
        self.defaults.merge(later.defaults);
        self.https.merge(later.https);
        self.internal_rpc.merge(later.internal_rpc);
        self.legacy.merge(later.legacy);
        self.legacy_https.merge(later.legacy_https);
        self.legacy_rpc.merge(later.legacy_rpc);
    }

    /// `tls.defaults` with the deprecated keys filling its gaps.
    fn defaults(&self) -> TlsProtocol {
        self.defaults.or(&self.legacy)
    }

    /// What the HTTPS listener uses. `Err`: a combination Consul refuses
    /// too (cipher suites with a TLS 1.3 minimum), as one line.
    pub fn https(&self) -> Result<ResolvedTls, String> {
        resolve(self.https.or(&self.legacy_https).or(&self.defaults()))
    }

    /// What the server RPC port uses (`verify_server_hostname` implies
    /// `verify_outgoing`, as in Consul).
    pub fn internal_rpc(&self) -> Result<ResolvedTls, String> {
        let mut r = resolve(self.internal_rpc.or(&self.legacy_rpc).or(&self.defaults()))?;
        r.verify_outgoing |= r.verify_server_hostname;
        Ok(r)
    }
}

/// One interface's settings, with the defaults filled in.
fn resolve(p: TlsProtocol) -> Result<ResolvedTls, String> {
    if let (Some(min), Some(suites)) = (&p.tls_min_version, &p.tls_cipher_suites) {
        if min.value == TlsVersion::Tls13 {
            return Err(format!(
                "{}: {} cannot be set with {} = \"TLSv1_3\" (TLS 1.3 suites are not \
                 configurable): remove one of them",
                suites.file.display(),
                suites.key,
                min.key
            ));
        }
    }
    Ok(ResolvedTls {
        ca_file: p.ca_file,
        ca_path: p.ca_path,
        cert_file: p.cert_file,
        key_file: p.key_file,
        verify_incoming: p.verify_incoming.is_some_and(|k| k.value),
        verify_outgoing: p.verify_outgoing.is_some_and(|k| k.value),
        verify_server_hostname: p.verify_server_hostname.is_some_and(|k| k.value),
        min_version: p.tls_min_version.map_or(TlsVersion::Tls12, |k| k.value),
        cipher_suites: p.tls_cipher_suites.map(|k| k.value),
    })
}

/// Decode one key of a TLS block (or a deprecated top-level key, `legacy`)
/// into `p`; `path` is the full key path, `field` the key's name.
fn decode_protocol_key(
    ctx: Ctx<'_>,
    p: &mut TlsProtocol,
    path: &str,
    field: &str,
    v: &Value,
    legacy: bool,
) -> Result<(), ConfigError> {
    fn keyed<T>(ctx: Ctx<'_>, path: &str, value: T) -> Keyed<T> {
        Keyed {
            value,
            key: path.to_string(),
            file: ctx.file.to_path_buf(),
        }
    }
    let file_path = |v: &Value| -> Result<Keyed<PathBuf>, ConfigError> {
        let s = ctx.string(path, v)?;
        if s.trim().is_empty() {
            return Err(ctx.bad(path, "must not be empty: give a path or remove the key"));
        }
        Ok(keyed(ctx, path, PathBuf::from(s)))
    };
    let flag = |v: &Value| ctx.bool(path, v).map(|b| keyed(ctx, path, b));
    match field {
        "ca_file" => p.ca_file = Some(file_path(v)?),
        "ca_path" => p.ca_path = Some(file_path(v)?),
        "cert_file" => p.cert_file = Some(file_path(v)?),
        "key_file" => p.key_file = Some(file_path(v)?),
        "verify_incoming" => p.verify_incoming = Some(flag(v)?),
        "verify_outgoing" => p.verify_outgoing = Some(flag(v)?),
        "verify_server_hostname" => p.verify_server_hostname = Some(flag(v)?),
        "tls_min_version" => {
            let version = tls_version(ctx, path, &ctx.string(path, v)?, legacy)?;
            p.tls_min_version = Some(keyed(ctx, path, version));
        }
        "tls_cipher_suites" => {
            let suites = cipher_suites(ctx, path, &ctx.string(path, v)?)?;
            p.tls_cipher_suites = Some(keyed(ctx, path, suites));
        }
        "use_auto_cert" => {
            return Err(ctx.bad(path, "use_auto_cert is only valid in the tls.grpc stanza"))
        }
        _ => return Err(ctx.unknown(path)),
    }
    Ok(())
}

/// `TLSv1_2` / `TLSv1_3` (and, for the deprecated top-level key, `tls12` /
/// `tls13`).
fn tls_version(ctx: Ctx<'_>, key: &str, s: &str, legacy: bool) -> Result<TlsVersion, ConfigError> {
    match s {
        "TLSv1_2" => Ok(TlsVersion::Tls12),
        "TLSv1_3" => Ok(TlsVersion::Tls13),
        "tls12" if legacy => Ok(TlsVersion::Tls12),
        "tls13" if legacy => Ok(TlsVersion::Tls13),
        "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Err(ctx.bad(
            key,
            format!("{s} is not supported: muster speaks TLS 1.2 and 1.3 only: use TLSv1_2"),
        )),
        _ => Err(ctx.bad(
            key,
            format!("{s:?} is not a TLS version: use TLSv1_2 or TLSv1_3"),
        )),
    }
}

/// A comma-separated list of Consul cipher suite names.
fn cipher_suites(ctx: Ctx<'_>, key: &str, s: &str) -> Result<Vec<String>, ConfigError> {
    let names: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(ctx.bad(key, "lists no cipher suite: remove the key to allow all"));
    }
    if let Some(bad) = names.iter().find(|n| !CIPHER_SUITES.contains(&n.as_str())) {
        return Err(ctx.bad(
            key,
            format!(
                "{bad} is not supported (muster offers only AEAD suites): use any of {}",
                CIPHER_SUITES.join(",")
            ),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(files: &[Value]) -> Result<(TlsSettings, Vec<String>), ConfigError> {
        let mut all = TlsSettings::default();
        let mut warnings = Vec::new();
        for (i, v) in files.iter().enumerate() {
            let name = PathBuf::from(format!("f{i}.json"));
            let ctx = Ctx { file: &name };
            let mut one = TlsSettings::default();
            for (k, item) in ctx.object("", v)? {
                assert!(is_tls_key(k), "{k}");
                one.decode_key(ctx, k, item, &mut warnings)?;
            }
            all.merge(one);
        }
        Ok((all, warnings))
    }

    #[test]
    fn tls_https_overrides_defaults_which_fill_from_legacy_keys() -> Result<(), ConfigError> {
        let (s, warnings) = decode(&[
            json!({"cert_file": "legacy.pem", "key_file": "legacy-key.pem", "ca_file": "ca.pem"}),
            json!({"tls": {"defaults": {"cert_file": "d.pem"}, "https": {"key_file": "h-key.pem",
                "verify_incoming": true, "tls_min_version": "TLSv1_3"}}}),
        ])?;
        let h = s.https().map_err(|e| ConfigError::Io {
            path: "x".into(),
            reason: e,
        })?;
        assert_eq!(
            h.cert_file.map(|k| (k.value, k.key)),
            Some(("d.pem".into(), "tls.defaults.cert_file".into()))
        );
        assert_eq!(h.key_file.map(|k| k.value), Some("h-key.pem".into()));
        assert_eq!(h.ca_file.map(|k| k.key), Some("ca_file".into()));
        assert!(h.verify_incoming);
        assert_eq!(h.min_version, TlsVersion::Tls13);
        assert!(warnings
            .iter()
            .any(|w| w.contains("'cert_file' field is deprecated")));
        Ok(())
    }

    #[test]
    fn verify_flags_reach_the_rpc_port_through_defaults_and_legacy_keys() -> Result<(), ConfigError>
    {
        let rpc = |v: Value| -> Result<ResolvedTls, ConfigError> {
            let (s, _) = decode(std::slice::from_ref(&v))?;
            s.internal_rpc().map_err(|e| ConfigError::Io {
                path: "x".into(),
                reason: e,
            })
        };
        assert!(rpc(json!({"verify_incoming": true}))?.verify_incoming);
        assert!(rpc(json!({"verify_incoming_rpc": true}))?.verify_incoming);
        assert!(!rpc(json!({"verify_incoming_https": true}))?.verify_incoming);
        let r = rpc(json!({"verify_server_hostname": true}))?;
        assert!(
            r.verify_server_hostname && r.verify_outgoing,
            "implies verify_outgoing"
        );
        let r = rpc(
            json!({"tls": {"defaults": {"verify_incoming": true, "verify_outgoing": true},
            "internal_rpc": {"verify_incoming": false, "verify_server_hostname": true}}}),
        )?;
        assert!(!r.verify_incoming && r.verify_outgoing && r.verify_server_hostname);
        let (s, _) = decode(&[json!({"tls": {"defaults": {"verify_incoming": true},
            "https": {"verify_incoming": false}}})])?;
        assert!(s.https().is_ok_and(|h| !h.verify_incoming));
        Ok(())
    }

    #[test]
    fn bad_versions_suites_and_misplaced_keys_name_the_key() {
        for (v, key) in [
            (
                json!({"tls": {"https": {"tls_min_version": "TLSv1_9"}}}),
                "tls.https.tls_min_version",
            ),
            (
                json!({"tls": {"defaults": {"tls_min_version": "tls12"}}}),
                "tls.defaults.tls_min_version",
            ),
            (json!({"tls_min_version": "TLSv1_0"}), "tls_min_version"),
            (
                json!({"tls": {"https": {"tls_cipher_suites": "TLS_RSA_WITH_RC4_128_SHA"}}}),
                "tls.https.tls_cipher_suites",
            ),
            (
                json!({"tls": {"https": {"verify_server_hostname": true}}}),
                "tls.https.verify_server_hostname",
            ),
            (json!({"tls": {"https": {"cert": "x"}}}), "tls.https.cert"),
            (
                json!({"tls": {"https": {"ca_file": 1}}}),
                "tls.https.ca_file",
            ),
        ] {
            let err = decode(std::slice::from_ref(&v))
                .expect_err(&v.to_string())
                .to_string();
            assert!(err.contains(&format!("{key:?}")), "{err}");
        }
        assert!(decode(&[json!({"tls_min_version": "tls12"})]).is_ok());
        let both = decode(&[json!({"tls": {"defaults": {"tls_min_version": "TLSv1_3"},
            "https": {"tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}})]);
        let err = both.map(|(s, _)| s.https()).ok().and_then(Result::err);
        assert!(err.is_some_and(|e| e.contains("tls.defaults.tls_min_version")));
    }
}
