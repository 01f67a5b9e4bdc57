//! `muster keygen`: a new gossip encryption key, base64 (standard, padded)
//! of 32 random bytes, as Consul's `keygen` prints it.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use rand::TryRng;

/// Print a fresh 32-byte key as base64 (44 characters).
pub fn run() -> anyhow::Result<ExitCode> {
    let mut key = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut key)
        .context("Error: the operating system gave no random bytes")?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let mut out = io::stdout().lock();
    writeln!(out, "{encoded}")
        .and_then(|()| out.flush())
        .context("Error: cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
