//! TLS for HTTP and gRPC checks: rustls with the `ring` provider. Servers
//! are verified against the system's CA bundle (`$SSL_CERT_FILE`, else the
//! usual Debian/Red Hat/Alpine paths) plus the Mozilla roots of
//! `webpki-roots`; `tls_skip_verify` accepts any certificate (signatures
//! are still checked, so the handshake itself is sound).
//!
//! The two client configs are built once per process. This module only
//! wraps a connected stream; it never opens sockets itself.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// CA bundles tried when `$SSL_CERT_FILE` is unset.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A client config verifying servers, or one that accepts any certificate.
pub(super) fn client_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    static VERIFY: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static SKIP: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    if skip_verify {
        SKIP.get_or_init(|| build(true)).clone()
    } else {
        VERIFY.get_or_init(|| build(false)).clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The system CA bundle (unreadable or bad entries are skipped) plus the
/// Mozilla roots (also what the CLI verifies an HTTPS agent with when no
/// CA is given).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    let paths = from_env
        .iter()
        .map(String::as_str)
        .chain(CA_BUNDLES.iter().copied());
    for path in paths {
        if let Ok(pem) = std::fs::read(path) {
            let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
            roots.add_parsable_certificates(certs);
            break;
        }
    }
    roots
}

/// Handshake over `stream` with `config`, offering `alpn`, expecting the
/// certificate of `server_name` (a DNS name or an IP address).
pub(super) async fn connect(
    config: Arc<ClientConfig>,
    stream: TcpStream,
    server_name: &str,
    alpn: &[u8],
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("invalid TLS server name {server_name:?}: {e}"))?;
    let mut config = (*config).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// `tls_skip_verify` (and the CLI's `CONSUL_HTTP_SSL_VERIFY=false`): any
/// certificate chain and name; handshake signatures are still verified
/// with the provider's algorithms.
#[derive(Debug)]
pub struct AnyCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Test fixtures: a throwaway CA and a `localhost`/`127.0.0.1` server
/// certificate it signed (see `testdata/README.md`).
#[cfg(test)]
pub(super) mod testing {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::ServerConfig;
    use std::error::Error;
    use tokio_rustls::TlsAcceptor;

    pub const CA_PEM: &str = include_str!("testdata/ca.pem");
    pub const LEAF_PEM: &str = include_str!("testdata/leaf.pem");
    pub const LEAF_KEY: &str = include_str!("testdata/leaf.key");

    /// A server acceptor offering `alpn`.
    pub fn acceptor(alpn: &[u8]) -> Result<TlsAcceptor, Box<dyn Error>> {
        let certs =
            CertificateDer::pem_slice_iter(LEAF_PEM.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(LEAF_KEY.as_bytes())?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// A verifying client config trusting only the test CA.
    pub fn trusting_test_ca() -> Result<Arc<ClientConfig>, Box<dyn Error>> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(CA_PEM.as_bytes()) {
            roots.add(cert?)?;
        }
        Ok(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::error::Error;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    type TestResult = Result<(), Box<dyn Error>>;

    /// A TLS echo-once server; returns its address.
    async fn server() -> Result<std::net::SocketAddr, Box<dyn Error>> {
        let acceptor = acceptor(b"http/1.1")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.write_all(b"hi").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Ok(addr)
    }

    #[tokio::test]
    async fn tls_verifies_against_trusted_roots() -> TestResult {
        let addr = server().await?;
        for name in ["localhost", "127.0.0.1"] {
            let stream = TcpStream::connect(addr).await?;
            let mut tls = connect(trusting_test_ca()?, stream, name, b"http/1.1").await?;
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await?;
            assert_eq!(got, b"hi");
        }
        // Wrong name: refused.
        let stream = TcpStream::connect(addr).await?;
        let err = connect(trusting_test_ca()?, stream, "other.test", b"http/1.1").await;
        assert!(err.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn tls_system_roots_refuse_and_skip_verify_accepts() -> TestResult {
        let addr = server().await?;
        let stream = TcpStream::connect(addr).await?;
        let err = connect(client_config(false)?, stream, "localhost", b"http/1.1").await;
        assert!(
            matches!(&err, Err(e) if e.contains("certificate")),
            "{:?}",
            err.map(|_| ())
        );
        let stream = TcpStream::connect(addr).await?;
        let ok = connect(client_config(true)?, stream, "anything.test", b"http/1.1").await;
        assert!(ok.is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn tls_bad_server_name_is_an_error() -> TestResult {
        let addr = server().await?;
        let stream = TcpStream::connect(addr).await?;
        assert!(connect(client_config(true)?, stream, "", b"h2")
            .await
            .is_err());
        Ok(())
    }
}
