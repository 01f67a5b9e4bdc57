//! The HTTP API's listeners: plain HTTP (`ports.http`, `-1` turns it off)
//! and HTTPS (`ports.https` / `addresses.https`, off unless set), each
//! serving the same API, and the HTTPS listener's TLS (rustls, `ring`):
//! the certificate, the client-certificate check of `verify_incoming`, the
//! minimum version and cipher suites of `tls.https` / `tls.defaults`.
//!
//! Certificates are read at start (a missing or bad file stops the agent
//! with one line naming the key) and again on every reload (SIGHUP, `PUT
//! /v1/agent/reload`): new connections get the new certificate, open ones
//! keep theirs, and a reload that fails keeps the running one.
//!
//! The PEM readers here are also what the CLI's HTTPS client uses.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use muster_agent::Agent;
use muster_api::{ApiConfig, Handshake, HandshakeFuture, Listener};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, RootCertStore, ServerConfig, SupportedCipherSuite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::cluster::Role;
use crate::cli::agent::Config;
use crate::cli::http::HttpArgs;
use crate::config::settings::AgentSettings;
use crate::config::tls::{ResolvedTls, TlsSettings, TlsVersion};

/// The HTTPS listener as configured: where, and its TLS.
#[derive(Debug, Clone)]
pub(crate) struct HttpsListener {
    /// The address to bind (`addresses.https`, else the client address).
    pub(crate) addr: SocketAddr,
    /// The TLS it serves with (reloadable).
    pub(crate) tls: Arc<ServerTls>,
    /// What the agent's own HTTPS calls (watches) present and trust.
    pub(crate) settings: ResolvedTls,
}

impl HttpsListener {
    /// The HTTPS listener of `st`, its certificates loaded and checked;
    /// `None` unless `ports.https` is a port (Consul's default is -1).
    pub(crate) fn from_settings(st: &AgentSettings, ip: IpAddr) -> anyhow::Result<Option<Self>> {
        let Some(port) = st.ports.https.and_then(|p| u16::try_from(p).ok()) else {
            return Ok(None);
        };
        let settings = st.tls.https().map_err(|e| anyhow::anyhow!("Error: {e}"))?;
        let tls = ServerTls::load(&settings).map_err(|e| anyhow::anyhow!("Error: {e}"))?;
        Ok(Some(HttpsListener {
            addr: SocketAddr::new(ip, port),
            tls: Arc::new(tls),
            settings,
        }))
    }
}

/// The HTTPS listener's TLS: the server config new connections get,
/// swapped whole on reload.
pub(crate) struct ServerTls {
    /// The config for new connections.
    current: RwLock<Arc<ServerConfig>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Read the files `t` names and build the server config.
    pub(crate) fn load(t: &ResolvedTls) -> Result<ServerTls, String> {
        Ok(ServerTls {
            current: RwLock::new(Arc::new(server_config(t)?)),
        })
    }

    /// Re-read the files (the merged config of a reload); on error the
    /// running config stays.
    pub(crate) fn reload(&self, tls: &TlsSettings) -> Result<(), String> {
        let config = server_config(&tls.https()?)?;
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(config);
        tracing::info!("HTTPS certificates reloaded");
        Ok(())
    }

    /// The config for a new connection.
    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Handshake for ServerTls {
    fn handshake(&self, tcp: TcpStream, _peer: SocketAddr) -> HandshakeFuture {
        let acceptor = TlsAcceptor::from(self.config());
        Box::pin(async move {
            let stream = acceptor.accept(tcp).await?;
            Ok(Box::new(stream) as Box<dyn muster_api::Stream>)
        })
    }
}

/// ring, with the TLS 1.2 suites cut down to `suites` (Consul names) if
/// given; TLS 1.3 suites are always offered.
pub(crate) fn provider(suites: Option<&[String]>) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = suites {
        let wanted: Vec<CipherSuite> = names.iter().filter_map(|n| suite_of(n)).collect();
        provider
            .cipher_suites
            .retain(|s: &SupportedCipherSuite| s.tls13().is_some() || wanted.contains(&s.suite()));
    }
    provider
}

/// rustls' suite for a Consul cipher suite name (the config loader has
/// checked the names against `config::tls::CIPHER_SUITES`).
fn suite_of(name: &str) -> Option<CipherSuite> {
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// The protocol versions from `min` up.
pub(crate) fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static FROM_TLS12: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static FROM_TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::Tls12 => &FROM_TLS12,
        TlsVersion::Tls13 => &FROM_TLS13,
    }
}

/// Build the HTTPS server config from `t`, reading its files.
fn server_config(t: &ResolvedTls) -> Result<ServerConfig, String> {
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        return Err(match (&t.cert_file, &t.key_file) {
            (Some(c), None) => format!(
                "{}: {} is set but no key_file: set tls.https.key_file (or tls.defaults.key_file)",
                c.file.display(),
                c.key
            ),
            (None, Some(k)) => format!(
                "{}: {} is set but no cert_file: set tls.https.cert_file (or tls.defaults.cert_file)",
                k.file.display(),
                k.key
            ),
            _ => "ports.https is set but HTTPS has no certificate: set tls.https.cert_file and \
                  tls.https.key_file (or tls.defaults.*); 'muster tls cert create -server' makes \
                  one"
                .to_string(),
        });
    };
    let certs = read_certs(&cert_file.value, &cert_file.key)?;
    let key = read_key(&key_file.value, &key_file.key)?;
    let provider = Arc::new(provider(t.cipher_suites.as_deref()));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(t.min_version))
        .map_err(|e| format!("tls: {e}"))?;
    let roots = read_roots(
        t.ca_file
            .as_ref()
            .map(|k| (k.value.as_path(), k.key.as_str())),
        t.ca_path
            .as_ref()
            .map(|k| (k.value.as_path(), k.key.as_str())),
    )?;
    let builder = match (t.verify_incoming, roots) {
        (false, _) => builder.with_no_client_auth(),
        (true, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls.https.verify_incoming: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        (true, None) => {
            return Err(
                "verify_incoming is set for HTTPS but there is no CA to check client \
                 certificates against: set tls.https.ca_file (or ca_path, or tls.defaults.*)"
                    .to_string(),
            )
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {}: {e}: is the key the certificate's?",
            cert_file.key, key_file.key
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of PEM file `path` (set at config key `key`).
pub(crate) fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of PEM file `path` (PKCS#8, SEC1 or PKCS#1).
pub(crate) fn read_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{key}: {} holds no PEM private key: {e}", path.display()))
}

/// The CAs of `ca_file` and every file in directory `ca_path` (each with
/// its config key or flag, for messages); `None` when neither is given.
pub(crate) fn read_roots(
    ca_file: Option<(&Path, &str)>,
    ca_path: Option<(&Path, &str)>,
) -> Result<Option<RootCertStore>, String> {
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    if let Some((file, key)) = ca_file {
        files.push((file.to_path_buf(), key));
    }
    if let Some((dir, key)) = ca_path {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("{key}: cannot read directory {}: {e}", dir.display()))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("{key}: cannot read directory {}: {e}", dir.display()))?
                .path();
            if path.is_file() {
                found.push(path);
            }
        }
        if found.is_empty() {
            return Err(format!("{key}: {} holds no file", dir.display()));
        }
        found.sort();
        files.extend(found.into_iter().map(|p| (p, key)));
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for (path, key) in files {
        for cert in read_certs(&path, key)? {
            roots
                .add(cert)
                .map_err(|e| format!("{key}: {}: not a usable CA: {e}", path.display()))?;
        }
    }
    Ok(Some(roots))
}

/// The API listeners, bound.
pub(crate) struct Bound {
    /// Plain HTTP and its address.
    http: Option<(TcpListener, SocketAddr)>,
    /// HTTPS, its address and TLS.
    https: Option<(TcpListener, SocketAddr, HttpsListener)>,
}

impl Bound {
    /// Bind what `cfg` configures (plain HTTP unless `ports.http = -1`,
    /// HTTPS if `ports.https` is set).
    pub(crate) async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
        let http = match cfg.http_enabled {
            false => None,
            true => {
                let addr = SocketAddr::new(cfg.http_addr, cfg.http_port);
                let listener = TcpListener::bind(addr).await.with_context(|| {
                    format!("Error: cannot listen for HTTP on {addr}: is another agent running? Pick another port with -http-port")
                })?;
                let bound = listener
                    .local_addr()
                    .context("Error: cannot read the HTTP listener's address")?;
                Some((listener, bound))
            }
        };
        let https = match &cfg.https {
            None => None,
            Some(h) => {
                let listener = TcpListener::bind(h.addr).await.with_context(|| {
                    format!(
                        "Error: cannot listen for HTTPS on {}: is another agent running? Pick \
                         another port with ports.https",
                        h.addr
                    )
                })?;
                let bound = listener
                    .local_addr()
                    .context("Error: cannot read the HTTPS listener's address")?;
                Some((listener, bound, h.clone()))
            }
        };
        Ok(Bound { http, https })
    }

    /// The readiness line's listener fields: `http=ADDR` and/or
    /// `https=ADDR`.
    pub(crate) fn ready_fields(&self) -> String {
        let mut fields = Vec::new();
        if let Some((_, addr)) = &self.http {
            fields.push(format!("http={addr}"));
        }
        if let Some((_, addr, _)) = &self.https {
            fields.push(format!("https={addr}"));
        }
        fields.join(" ")
    }

    /// The plain HTTP address, if any.
    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(_, a)| *a)
    }

    /// How the agent calls its own API (watches): plain HTTP when on,
    /// else HTTPS with the agent's CA and certificate (as Consul's agent
    /// does), verifying its own certificate only with `verify_outgoing`.
    pub(crate) fn self_client(&self) -> HttpArgs {
        let loopback = |a: SocketAddr| {
            let ip = match a.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            SocketAddr::new(ip, a.port())
        };
        match (&self.http, &self.https) {
            (None, Some((_, addr, h))) => {
                let t = &h.settings;
                HttpArgs {
                    http_addr: Some(format!("https://{}", loopback(*addr))),
                    ca_file: t.ca_file.as_ref().map(|k| k.value.clone()),
                    ca_path: t.ca_path.as_ref().map(|k| k.value.clone()),
                    client_cert: t.cert_file.as_ref().map(|k| k.value.clone()),
                    client_key: t.key_file.as_ref().map(|k| k.value.clone()),
                    insecure_skip_verify: !t.verify_outgoing,
                    ..HttpArgs::default()
                }
            }
            _ => HttpArgs {
                http_addr: self.http_addr().map(|a| loopback(a).to_string()),
                ..HttpArgs::default()
            },
        }
    }

    /// Serve the API on every listener until `stop`; the task ends when
    /// all have drained, or at once with the error of one that fails
    /// (the others are stopped too).
    pub(crate) fn serve(
        self,
        backing: &Role,
        agent: &Agent,
        api_cfg: ApiConfig,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<Result<(), muster_api::Error>> {
        let (tx, rx) = tokio::sync::watch::channel(());
        let mut listeners: Vec<Listener> = Vec::new();
        if let Some((tcp, _)) = self.http {
            listeners.push(tcp.into());
        }
        if let Some((tcp, _, h)) = self.https {
            listeners.push(Listener::with_handshake(tcp, h.tls));
        }
        let mut set = JoinSet::new();
        for listener in listeners {
            let mut rx = rx.clone();
            let stopped = async move {
                let _ = rx.changed().await;
            };
            match backing {
                Role::Server(engine) => set.spawn(muster_api::serve(
                    listener,
                    engine.clone(),
                    agent.clone(),
                    api_cfg.clone(),
                    stopped,
                )),
                Role::Client(remote) => set.spawn(muster_api::serve_client(
                    listener,
                    remote.clone(),
                    agent.clone(),
                    api_cfg.clone(),
                    stopped,
                )),
            };
        }
        drop(rx);
        tokio::spawn(async move {
            let joined = |j: Result<Result<(), muster_api::Error>, tokio::task::JoinError>| {
                j.unwrap_or_else(|e| {
                    Err(muster_api::Error::Internal(format!(
                        "HTTP server task failed: {e}"
                    )))
                })
            };
            let first = tokio::select! {
                () = stop => None,
                Some(j) = set.join_next() => Some(joined(j)),
            };
            let _ = tx.send(());
            let mut result = first.unwrap_or(Ok(()));
            while let Some(j) = set.join_next().await {
                if result.is_ok() {
                    result = joined(j);
                }
            }
            result
        })
    }
}
