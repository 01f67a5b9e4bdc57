//! `muster version`: the version and protocol lines, in Consul's shape.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;

/// Print `muster v<version>`, the Consul version muster answers as, and the
/// protocol line (`muster version`, `muster -v`, `muster -version`).
pub fn run() -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    writeln!(out, "muster v{}", env!("CARGO_PKG_VERSION"))
        .and_then(|()| {
            writeln!(
                out,
                "Consul API compatibility: v{}",
                muster_engine::CONSUL_VERSION
            )
        })
        .and_then(|()| {
            writeln!(
                out,
                "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use \
                 protocol >2 when speaking to compatible agents)"
            )
        })
        .and_then(|()| out.flush())
        .context("Error: cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
