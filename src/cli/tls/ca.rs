//! `muster tls ca create`: a self-signed CA (ECDSA P-256) for the agents,
//! as Consul's: key usages certSign, cRLSign and digitalSignature, basic
//! constraints CA:true, optionally DNS name constraints (`-name-constraint`:
//! localhost, the domain and `-additional-name-constraint`s, marked
//! critical), saved as `<domain>-agent-ca.pem` and
//! `<domain>-agent-ca-key.pem` (mode 0600).

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType, PKCS_ECDSA_P256_SHA256,
};

use super::{absent, save, serial_number, validity};

/// `muster tls ca create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaCreateArgs {
    /// Number of days the CA is valid for.
    #[arg(long, default_value_t = 1825, value_name = "N")]
    pub days: u32,
    /// The DNS domain of the cluster (names the files; with
    /// -name-constraint, a permitted domain).
    #[arg(long, default_value = "consul", value_name = "DOMAIN")]
    pub domain: String,
    /// Add X.509 name constraints: the CA then signs only certificates for
    /// localhost, -domain and -additional-name-constraint names.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub name_constraint: bool,
    /// Another permitted DNS domain with -name-constraint (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    pub additional_name_constraint: Vec<String>,
    /// Common Name of the CA (default: "Consul Agent CA <serial>").
    #[arg(long, value_name = "NAME")]
    pub common_name: Option<String>,
    /// ID of the cluster: adds the URI spiffe://<cluster-id>.<domain>.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
}

/// Create the CA in `dir`, reporting on `out`.
pub(super) fn create(args: &CaCreateArgs, dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let domain = args.domain.trim_matches('.');
    if domain.is_empty() {
        bail!("Error: -domain must not be empty");
    }
    if args.days == 0 {
        bail!("Error: -days must be at least 1");
    }
    let cert_name = format!("{domain}-agent-ca.pem");
    let key_name = format!("{domain}-agent-ca-key.pem");
    for name in [&cert_name, &key_name] {
        if !absent(dir, name) {
            bail!("{name} already exists.");
        }
    }
    let (serial, serial_decimal) = serial_number()?;
    let (not_before, not_after) = validity(args.days)?;
    let mut params = CertificateParams::default();
    params.serial_number = Some(serial);
    params.not_before = not_before;
    params.not_after = not_after;
    let common_name = match args.common_name.as_deref() {
        Some(name) if !name.trim().is_empty() => name.to_string(),
        _ => format!("Consul Agent CA {serial_decimal}"),
    };
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if args.name_constraint {
        let mut permitted: Vec<String> = args
            .additional_name_constraint
            .iter()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        permitted.push(domain.to_string());
        permitted.push("localhost".to_string());
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted.into_iter().map(GeneralSubtree::DnsName).collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    if let Some(id) = args.cluster_id.as_deref().filter(|id| !id.is_empty()) {
        let uri = format!("spiffe://{id}.{domain}");
        params.subject_alt_names.push(SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|e| anyhow!("Error: invalid -cluster-id {id:?} ({uri}): {e}"))?,
        ));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| anyhow!("Error: cannot generate a private key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| anyhow!("Error: cannot create the CA certificate: {e}"))?;
    save(dir, &cert_name, &cert.pem(), 0o644, out)?;
    save(dir, &key_name, &key.serialize_pem(), 0o600, out)?;
    Ok(())
}
