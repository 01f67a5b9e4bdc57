//! TLS on the server RPC port (`tls.internal_rpc` over `tls.defaults`, and
//! the deprecated `verify_*` keys), as Consul does it:
//! - incoming: a connection starting with a TLS record is a TLS handshake
//!   (with this agent's certificate); with `verify_incoming` the client
//!   must present a certificate signed by the CA, and plain TCP is
//!   refused; without it, plain TCP is still accepted (a rollout);
//! - outgoing: with `verify_outgoing`, every RPC connection is TLS and the
//!   server's certificate must be signed by the CA; this agent presents its
//!   own certificate; with `verify_server_hostname` the certificate must
//!   also name `server.<dc>.<domain>` (any datacenter, so WAN calls work:
//!   a client agent's certificate, `client.<dc>.<domain>`, is refused).
//!
//! The engine knows no TLS: this is its [`Transport`]. Certificates are
//! re-read on reload.

use std::io;
use std::sync::{Arc, RwLock};

use muster_engine::rpc::transport::{RpcStream, Transport};
use muster_engine::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::https::{provider, read_certs, read_key, read_roots, versions};
use crate::config::tls::{ResolvedTls, TlsSettings};

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// The configs in force, swapped whole on reload.
struct State {
    /// For incoming TLS (`None`: no certificate, TLS refused).
    server: Option<Arc<ServerConfig>>,
    /// For outgoing TLS (`None`: outgoing RPC is plain).
    client: Option<Arc<ClientConfig>>,
    /// Refuse plain TCP.
    verify_incoming: bool,
}

/// The server port's TLS; see the module docs.
pub(crate) struct RpcTls {
    /// The settings in force.
    state: RwLock<Arc<State>>,
    /// `server.<dc>.<domain>`: the name sent (SNI) and, in part, checked.
    server_name: ServerName<'static>,
    /// The cluster's domain (`consul`), for the hostname check.
    domain: String,
}

impl std::fmt::Debug for RpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl RpcTls {
    /// The transport for `tls`, or `None` when nothing in it concerns RPC
    /// (no certificate, no `verify_*`): RPC stays plain.
    pub(crate) fn from_settings(
        tls: &TlsSettings,
        datacenter: &str,
        domain: &str,
    ) -> anyhow::Result<Option<RpcTls>> {
        let r = tls
            .internal_rpc()
            .map_err(|e| anyhow::anyhow!("Error: {e}"))?;
        if r.cert_file.is_none() && !r.verify_incoming && !r.verify_outgoing {
            return Ok(None);
        }
        let domain = domain.trim_matches('.').to_string();
        let name = format!("server.{datacenter}.{domain}");
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| anyhow::anyhow!("Error: {name} is not a DNS name: {e}"))?;
        let rpc = RpcTls {
            state: RwLock::new(Arc::new(
                State::load(&r, &domain).map_err(|e| anyhow::anyhow!("Error: {e}"))?,
            )),
            server_name,
            domain,
        };
        Ok(Some(rpc))
    }

    /// Re-read the certificates (a reload); on error the running ones stay.
    pub(crate) fn reload(&self, tls: &TlsSettings) -> Result<(), String> {
        let state = State::load(&tls.internal_rpc()?, &self.domain)?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        tracing::info!("RPC certificates reloaded");
        Ok(())
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl State {
    /// Build both configs from `r`, reading its files.
    fn load(r: &ResolvedTls, domain: &str) -> Result<State, String> {
        let roots = read_roots(
            r.ca_file
                .as_ref()
                .map(|k| (k.value.as_path(), k.key.as_str())),
            r.ca_path
                .as_ref()
                .map(|k| (k.value.as_path(), k.key.as_str())),
        )?;
        let no_ca = |what: &str| {
            format!(
                "{what} is set for the server RPC port but there is no CA: set \
                 tls.internal_rpc.ca_file (or ca_path, or tls.defaults.*); 'muster tls ca create' \
                 makes one"
            )
        };
        let pair = match (&r.cert_file, &r.key_file) {
            (Some(c), Some(k)) => Some((
                read_certs(&c.value, &c.key)?,
                read_key(&k.value, &k.key)?,
                c.key.clone(),
                k.key.clone(),
            )),
            (Some(c), None) => {
                return Err(format!(
                    "{}: {} is set but no key_file",
                    c.file.display(),
                    c.key
                ))
            }
            (None, Some(k)) => {
                return Err(format!(
                    "{}: {} is set but no cert_file",
                    k.file.display(),
                    k.key
                ))
            }
            (None, None) => None,
        };
        if r.verify_incoming && pair.is_none() {
            return Err(
                "verify_incoming is set for the server RPC port but there is no \
                        certificate: set tls.internal_rpc.cert_file and key_file (or \
                        tls.defaults.*); 'muster tls cert create -server' makes one"
                    .to_string(),
            );
        }
        let provider = Arc::new(provider(r.cipher_suites.as_deref()));
        let server = match &pair {
            None => None,
            Some((certs, key, cert_key, key_key)) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions(r.min_version))
                    .map_err(|e| format!("tls: {e}"))?;
                let builder = match (&roots, r.verify_incoming) {
                    (None, true) => return Err(no_ca("verify_incoming")),
                    (None, false) => builder.with_no_client_auth(),
                    (Some(roots), required) => {
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots.clone()),
                            provider.clone(),
                        );
                        let verifier = if required {
                            verifier.build()
                        } else {
                            verifier.allow_unauthenticated().build()
                        }
                        .map_err(|e| format!("tls.internal_rpc: {e}"))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                };
                let config = builder
                    .with_single_cert(certs.clone(), key.clone_key())
                    .map_err(|e| {
                        format!("{cert_key} and {key_key}: {e}: is the key the certificate's?")
                    })?;
                Some(Arc::new(config))
            }
        };
        let client = if r.verify_outgoing {
            let Some(roots) = roots else {
                return Err(no_ca(if r.verify_server_hostname {
                    "verify_server_hostname (which implies verify_outgoing)"
                } else {
                    "verify_outgoing"
                }));
            };
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("tls.internal_rpc: {e}"))?;
            let verifier = ServerVerifier {
                inner,
                check_hostname: r.verify_server_hostname,
                suffix: format!(".{domain}"),
            };
            let builder = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions(r.min_version))
                .map_err(|e| format!("tls: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier));
            let config = match pair {
                Some((certs, key, cert_key, key_key)) => builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("{cert_key} and {key_key}: {e}"))?,
                None => builder.with_no_client_auth(),
            };
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(State {
            server,
            client,
            verify_incoming: r.verify_incoming,
        })
    }
}

impl Transport for RpcTls {
    fn accept(&self, tcp: TcpStream) -> BoxFuture<'static, io::Result<Box<dyn RpcStream>>> {
        let state = self.state();
        Box::pin(async move {
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 0 {
                // Closed before a byte (another datacenter's round-trip
                // probe): nothing to refuse or log.
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            let tls = first[0] == TLS_HANDSHAKE;
            match (tls, &state.server) {
                (true, Some(config)) => match TlsAcceptor::from(config.clone()).accept(tcp).await {
                    Ok(stream) => Ok(Box::new(stream) as Box<dyn RpcStream>),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "refused an RPC connection: TLS handshake failed");
                        Err(e)
                    }
                },
                (true, None) => Err(io::Error::other(
                    "a TLS RPC connection, but this agent has no certificate (tls.internal_rpc.cert_file)",
                )),
                (false, _) if state.verify_incoming => {
                    tracing::warn!(%peer, "refused a plain RPC connection: verify_incoming requires TLS");
                    Err(io::Error::other("plain RPC refused: verify_incoming requires TLS"))
                }
                (false, _) => Ok(Box::new(tcp) as Box<dyn RpcStream>),
            }
        })
    }

    fn connect(&self, tcp: TcpStream) -> BoxFuture<'static, io::Result<Box<dyn RpcStream>>> {
        let state = self.state();
        let name = self.server_name.clone();
        Box::pin(async move {
            match &state.client {
                None => Ok(Box::new(tcp) as Box<dyn RpcStream>),
                Some(config) => {
                    let stream = TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await?;
                    Ok(Box::new(stream) as Box<dyn RpcStream>)
                }
            }
        })
    }
}

/// A server's certificate: signed by the CA; with `verify_server_hostname`
/// also naming `server.<some dc>.<domain>`.
#[derive(Debug)]
struct ServerVerifier {
    /// Chain (and exact-name) verification.
    inner: Arc<WebPkiServerVerifier>,
    /// Check the name at all.
    check_hostname: bool,
    /// `.<domain>`.
    suffix: String,
}

impl ServerVerifier {
    /// A DNS name of the certificate is `server.<one label>.<domain>`.
    fn names_a_server(&self, end_entity: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        let valid = cert.valid_dns_names().any(|name| {
            name.strip_prefix("server.")
                .and_then(|rest| rest.strip_suffix(self.suffix.as_str()))
                .is_some_and(|dc| !dc.is_empty() && !dc.contains('.'))
        });
        valid
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // The chain is checked before the name: a name mismatch means
            // the CA signed it.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_hostname || self.names_a_server(end_entity) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
