//! `muster tls cert create`: a certificate and key (ECDSA P-256) signed by
//! the agents' CA, as Consul's: subject `CN=<kind>.<dc>.<domain>`, key
//! usages digitalSignature and keyEncipherment, and
//! - `-server`: DNS `[<node>.]server.<dc>.<domain>`, `localhost`, IP
//!   127.0.0.1, extended key usages serverAuth and clientAuth;
//! - `-client`: DNS `client.<dc>.<domain>`, `localhost`, IP 127.0.0.1,
//!   clientAuth and serverAuth;
//! - `-cli`: DNS `cli.<dc>.<domain>`, `localhost`, no extended key usage;
//!
//! saved as `<dc>-<kind>-<domain>-<n>.pem` and `...-<n>-key.pem` with the
//! first free `n`. The new certificate is checked against the CA before it
//! is saved, so a key that does not belong to the CA is caught here.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;

use super::{absent, save, serial_number, validity};

/// The largest file index tried before giving up (Consul's).
const MAX_INDEX: u32 = 10_000;

/// `muster tls cert create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertCreateArgs {
    /// A server certificate.
    #[arg(long)]
    pub server: bool,
    /// A client agent certificate.
    #[arg(long)]
    pub client: bool,
    /// A certificate for the CLI.
    #[arg(long)]
    pub cli: bool,
    /// The CA certificate (default: <domain>-agent-ca.pem).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
    /// The CA's private key (default: <domain>-agent-ca-key.pem).
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
    /// The datacenter.
    #[arg(long, default_value = "dc1", value_name = "DC")]
    pub dc: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "consul", value_name = "DOMAIN")]
    pub domain: String,
    /// Number of days the certificate is valid for.
    #[arg(long, default_value_t = 365, value_name = "N")]
    pub days: u32,
    /// With -server: also name <node>.server.<dc>.<domain>.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Another DNS name for the certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub additional_dnsname: Vec<String>,
    /// Another IP address for the certificate (repeatable).
    #[arg(long, value_name = "IP")]
    pub additional_ipaddress: Vec<String>,
}

/// Which certificate, and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Client,
    Cli,
}

/// Create the certificate in `dir` (CA paths are relative to it),
/// reporting on `out`.
pub(super) fn create(args: &CertCreateArgs, dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let kind = match (args.server, args.client, args.cli) {
        (true, false, false) => Kind::Server,
        (false, true, false) => Kind::Client,
        (false, false, true) => Kind::Cli,
        _ => bail!("Please provide either -server, -client, or -cli"),
    };
    let node = args.node.as_deref().filter(|n| !n.is_empty());
    if node.is_some() && kind != Kind::Server {
        bail!("-node requires -server");
    }
    if args.days == 0 {
        bail!("Error: -days must be at least 1");
    }
    let (dc, domain) = (args.dc.as_str(), args.domain.trim_matches('.'));
    let mut dns: Vec<String> = args
        .additional_dnsname
        .iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    let mut ips = args
        .additional_ipaddress
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(|i| {
            i.parse::<IpAddr>()
                .map_err(|_| anyhow!("Error: -additional-ipaddress={i:?} is not an IP address"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let localhost_ip = IpAddr::from([127, 0, 0, 1]);
    let (name, prefix, eku) = match kind {
        Kind::Server => {
            let name = format!("server.{dc}.{domain}");
            if let Some(node) = node {
                dns.push(format!("{node}.{name}"));
            }
            dns.extend([name.clone(), "localhost".into()]);
            ips.push(localhost_ip);
            let eku = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            (name, format!("{dc}-server-{domain}"), eku)
        }
        Kind::Client => {
            let name = format!("client.{dc}.{domain}");
            dns.extend([name.clone(), "localhost".into()]);
            ips.push(localhost_ip);
            let eku = vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ];
            (name, format!("{dc}-client-{domain}"), eku)
        }
        Kind::Cli => {
            // As Consul: the CLI's names replace any additional ones.
            let name = format!("cli.{dc}.{domain}");
            dns = vec![name.clone(), "localhost".into()];
            (name, format!("{dc}-cli-{domain}"), Vec::new())
        }
    };
    let (cert_name, key_name) = (0..=MAX_INDEX)
        .map(|i| (format!("{prefix}-{i}.pem"), format!("{prefix}-{i}-key.pem")))
        .find(|(c, k)| absent(dir, c) && absent(dir, k))
        .ok_or_else(|| anyhow!("Could not find a filename that doesn't already exist"))?;

    let ca_file = args
        .ca
        .clone()
        .unwrap_or_else(|| format!("{domain}-agent-ca.pem"));
    let key_file = args
        .key
        .clone()
        .unwrap_or_else(|| format!("{domain}-agent-ca-key.pem"));
    let ca_pem = std::fs::read_to_string(dir.join(&ca_file)).map_err(|e| {
        anyhow!("Error reading CA: {ca_file}: {e} (create one with 'muster tls ca create', or pass -ca)")
    })?;
    let ca_key_pem = std::fs::read_to_string(dir.join(&key_file))
        .map_err(|e| anyhow!("Error reading CA key: {key_file}: {e} (pass -key)"))?;
    if kind == Kind::Server {
        writeln!(
            out,
            "==> WARNING: Server Certificates grants authority to become a\n    server and \
             access all state in the cluster including root keys\n    and all ACL tokens. Do \
             not distribute them to production hosts\n    that are not server nodes. Store \
             them as securely as CA keys."
        )?;
    }
    writeln!(out, "==> Using {ca_file} and {key_file}")?;

    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| {
        anyhow!(
            "Error: {key_file} is not a PKCS#8 ECDSA, Ed25519 or RSA private key ({e}); convert \
             an 'EC PRIVATE KEY' with 'openssl pkcs8 -topk8 -nocrypt -in {key_file}'"
        )
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| anyhow!("Error: {ca_file} is not a PEM certificate: {e}"))?;

    let (serial, _) = serial_number()?;
    let (not_before, not_after) = validity(args.days)?;
    let mut params = CertificateParams::default();
    params.serial_number = Some(serial);
    params.not_before = not_before;
    params.not_after = not_after;
    params
        .distinguished_name
        .push(DnType::CommonName, name.clone());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = eku;
    params.use_authority_key_identifier_extension = true;
    for d in &dns {
        let san = d
            .clone()
            .try_into()
            .map_err(|e| anyhow!("Error: invalid DNS name {d:?}: {e}"))?;
        params.subject_alt_names.push(SanType::DnsName(san));
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| anyhow!("Error: cannot generate a private key: {e}"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| anyhow!("Error: cannot sign the certificate: {e}"))?;
    verify(&ca_pem, cert.der(), &name)
        .with_context(|| format!("Error: is {key_file} the key of {ca_file}?"))?;

    save(dir, &cert_name, &cert.pem(), 0o644, out)?;
    save(dir, &key_name, &key.serialize_pem(), 0o600, out)?;
    Ok(())
}

/// Check `cert` against the CAs in `ca_pem` for `name`, as a TLS client
/// would (Consul's `tlsutil.Verify`).
fn verify(ca_pem: &str, cert: &CertificateDer<'_>, name: &str) -> anyhow::Result<()> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.context("the CA file is not PEM")?)
            .context("the CA certificate cannot be used")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .context("cannot build a verifier")?;
    let server_name = ServerName::try_from(name.to_string()).context("invalid name")?;
    verifier
        .verify_server_cert(cert, &[], &server_name, &[], UnixTime::now())
        .map_err(|e| anyhow!("the new certificate does not verify against the CA: {e}"))?;
    Ok(())
}
