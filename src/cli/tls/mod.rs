//! `muster tls ca create` and `muster tls cert create`, as `consul tls`:
//! a private CA for the agents and certificates it signs for servers,
//! client agents and CLI users, written into the current directory under
//! Consul's file names (`consul-agent-ca.pem`, `dc1-server-consul-0.pem`,
//! ...), with Consul's subject alternative names, key usages and output
//! lines.
//!
//! Certificates are built with rcgen (ECDSA P-256 keys, as Consul's), never
//! by hand. This module owns the commands and the file writing; it never
//! talks to an agent. Keys are PKCS#8 PEM (`PRIVATE KEY`), which Consul
//! and every TLS library read.

mod ca;
mod cert;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use rand::TryRng;
use rcgen::SerialNumber;

pub use ca::CaCreateArgs;
pub use cert::CertCreateArgs;

/// `muster tls`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TlsCommand,
}

/// The `tls` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TlsCommand {
    /// The agents' certificate authority.
    Ca(CaArgs),
    /// Certificates signed by that authority.
    Cert(CertArgs),
}

/// `muster tls ca`.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CaCommand,
}

/// The `tls ca` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a new CA: <domain>-agent-ca.pem and <domain>-agent-ca-key.pem
    /// in the current directory.
    Create(CaCreateArgs),
}

/// `muster tls cert`.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertCommand,
}

/// The `tls cert` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// Create a certificate and its key, signed by the CA: for a server
    /// (-server), a client agent (-client) or the CLI (-cli).
    Create(CertCreateArgs),
}

/// Run `muster tls ...`.
pub fn run(args: TlsArgs) -> anyhow::Result<ExitCode> {
    let dir = Path::new(".");
    let mut out = std::io::stdout().lock();
    match args.command {
        TlsCommand::Ca(CaArgs {
            command: CaCommand::Create(args),
        }) => ca::create(&args, dir, &mut out)?,
        TlsCommand::Cert(CertArgs {
            command: CertCommand::Create(args),
        }) => cert::create(&args, dir, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A random positive 127-bit serial number, and its decimal form (Consul
/// names its CA after it).
fn serial_number() -> anyhow::Result<(SerialNumber, u128)> {
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .context("Error: the operating system gave no random bytes")?;
    // A DER INTEGER with the top bit set would be negative.
    bytes[0] &= 0x7f;
    Ok((SerialNumber::from_slice(&bytes), u128::from_be_bytes(bytes)))
}

/// Now, and `days` days from now, as certificate validity bounds.
fn validity(days: u32) -> anyhow::Result<(time::OffsetDateTime, time::OffsetDateTime)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("Error: the system clock is before 1970")?;
    let secs = i64::try_from(now.as_secs()).context("Error: the system clock is out of range")?;
    let not_before = time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| anyhow!("Error: the system clock is out of range: {e}"))?;
    let not_after = not_before
        .checked_add(time::Duration::days(i64::from(days)))
        .ok_or_else(|| anyhow!("Error: -days={days} is too far in the future"))?;
    Ok((not_before, not_after))
}

/// Write `contents` to `dir/name` with `mode`, atomically (a temporary file
/// renamed into place) and never over an existing file; then say so as
/// Consul does (`==> Saved NAME`).
fn save(
    dir: &Path,
    name: &str,
    contents: &str,
    mode: u32,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("Error: cannot create a file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("Error: cannot set the permissions of {name}"))?;
    tmp.write_all(contents.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("Error: cannot write {name}"))?;
    tmp.persist_noclobber(&path)
        .map_err(|e| anyhow!("Error: cannot save {name}: {}", e.error))?;
    writeln!(out, "==> Saved {name}").context("Error: cannot write to stdout")?;
    Ok(())
}

/// Consul's `FileDoesNotExist`: nothing at all at that path.
fn absent(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_err()
}
