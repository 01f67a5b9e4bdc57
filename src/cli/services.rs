//! `muster services register|deregister`: add or remove services on the
//! local agent, from flags or from a config file holding `service` /
//! `services` (JSON or HCL, read by the config loader), through
//! `PUT /v1/agent/service/register` and `/v1/agent/service/deregister/:id`.
//!
//! Requests are built by pure functions (tested without an agent); the
//! `run` functions only send them and print Consul's messages.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use muster_agent::ServiceDefinition;

use super::http::{query_value, Client, HttpArgs};
use crate::config::{self, ConfigSource};

/// `muster services`.
#[derive(Debug, clap::Args)]
#[command(about = "Register or deregister services on a running agent")]
pub struct ServicesArgs {
    /// The services command.
    #[command(subcommand)]
    pub command: ServicesCommand,
}

/// The services subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ServicesCommand {
    /// Register a service from flags, or every service of a config file.
    Register(RegisterArgs),
    /// Deregister a service by -id, or every service of a config file.
    Deregister(DeregisterArgs),
}

/// `muster services register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Service name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Service ID (default: the name).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Service address (default: the node's).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// Service port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Metadata `key=value` (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Config files with `service` / `services` definitions.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `muster services deregister`.
#[derive(Debug, clap::Args)]
pub struct DeregisterArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The service ID to deregister.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Config files whose services (by ID, defaulting to the name) go.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Run a services subcommand on a small single-threaded runtime.
pub fn run(args: ServicesArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    runtime.block_on(async {
        match args.command {
            ServicesCommand::Register(args) => register(args).await,
            ServicesCommand::Deregister(args) => deregister(args).await,
        }
    })
}

/// The services that `args` describe: from the flags, or from the files.
pub fn services_to_register(args: &RegisterArgs) -> anyhow::Result<Vec<ServiceDefinition>> {
    let has_flags = args.name.is_some()
        || args.id.is_some()
        || args.address.is_some()
        || args.port.is_some()
        || !args.tags.is_empty()
        || !args.meta.is_empty();
    match (has_flags, args.files.is_empty()) {
        (true, false) => bail!("Error: give either flags or config files, not both"),
        (false, true) => {
            bail!("Error: service registration requires a config file or flags (at least -name)")
        }
        (false, false) => services_of_files(&args.files),
        (true, true) => {
            let Some(name) = args.name.clone().filter(|n| !n.is_empty()) else {
                bail!("Error: -name is required to register a service from flags");
            };
            let mut meta = BTreeMap::new();
            for pair in &args.meta {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("Error: -meta must be key=value, got {pair:?}");
                };
                meta.insert(k.to_string(), v.to_string());
            }
            let mut def = ServiceDefinition {
                id: args.id.clone().unwrap_or_default(),
                name,
                tags: args.tags.clone(),
                address: args.address.clone().unwrap_or_default(),
                port: args.port.unwrap_or(0),
                meta,
                ..ServiceDefinition::default()
            };
            def.normalize();
            Ok(vec![def])
        }
    }
}

/// The service definitions of config files, which must hold at least one.
fn services_of_files(files: &[PathBuf]) -> anyhow::Result<Vec<ServiceDefinition>> {
    let sources: Vec<ConfigSource> = files.iter().map(ConfigSource::detect).collect();
    let loaded = config::load(&sources).map_err(|e| anyhow!("Error: {e}"))?;
    if loaded.services.is_empty() {
        bail!(
            "Error: no service definitions (service / services) found in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(loaded.services)
}

/// The service IDs that `args` name.
pub fn ids_to_deregister(args: &DeregisterArgs) -> anyhow::Result<Vec<String>> {
    match (&args.id, args.files.is_empty()) {
        (Some(_), false) => bail!("Error: give either -id or config files, not both"),
        (None, true) => bail!("Error: service deregistration requires a config file or -id"),
        (Some(id), true) if id.is_empty() => bail!("Error: -id must not be empty"),
        (Some(id), true) => Ok(vec![id.clone()]),
        (None, false) => Ok(services_of_files(&args.files)?
            .into_iter()
            .map(|s| s.id)
            .collect()),
    }
}

/// `PUT /v1/agent/service/deregister/<id>` (the ID percent-encoded: it may
/// hold `/`).
pub fn deregister_path(id: &str) -> String {
    format!("/v1/agent/service/deregister/{}", query_value(id))
}

/// The register endpoint.
pub const REGISTER_PATH: &str = "/v1/agent/service/register";

async fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let services = services_to_register(&args)?;
    let client = Client::new(&args.http)?;
    for def in services {
        let body = serde_json::to_vec(&muster_agent::definition::encode::service_to_api(&def))
            .context("Error: cannot encode the service definition")?;
        let fail = |msg: String| anyhow!("Error registering service {:?}: {msg}", def.name);
        let reply = client
            .request(Method::PUT, REGISTER_PATH, Bytes::from(body))
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        if reply.status != StatusCode::OK {
            return Err(fail(reply.unexpected()));
        }
        say(&format!("Registered service: {}", def.name))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn deregister(args: DeregisterArgs) -> anyhow::Result<ExitCode> {
    let ids = ids_to_deregister(&args)?;
    let client = Client::new(&args.http)?;
    for id in ids {
        let fail = |msg: String| anyhow!("Error deregistering service {id:?}: {msg}");
        let reply = client
            .request(Method::PUT, &deregister_path(&id), Bytes::new())
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        if reply.status != StatusCode::OK {
            return Err(fail(reply.unexpected()));
        }
        say(&format!("Deregistered service: {id}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on stdout.
pub(crate) fn say(line: &str) -> anyhow::Result<()> {
    writeln!(io::stdout().lock(), "{line}").context("Error: cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register_args(files: Vec<PathBuf>) -> RegisterArgs {
        RegisterArgs {
            http: HttpArgs::default(),
            name: None,
            id: None,
            address: None,
            port: None,
            tags: vec![],
            meta: vec![],
            files,
        }
    }

    #[test]
    fn flags_build_one_normalized_service() -> anyhow::Result<()> {
        let mut args = register_args(vec![]);
        args.name = Some("web".into());
        args.port = Some(80);
        args.tags = vec!["a".into(), "b".into()];
        args.meta = vec!["k=v=w".into()];
        let services = services_to_register(&args)?;
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].id, "web");
        let body = muster_agent::definition::encode::service_to_api(&services[0]);
        assert_eq!(body["Name"], "web");
        assert_eq!(body["ID"], "web");
        assert_eq!(body["Port"], 80);
        assert_eq!(body["Tags"], serde_json::json!(["a", "b"]));
        assert_eq!(body["Meta"]["k"], "v=w");
        Ok(())
    }

    #[test]
    fn flags_and_files_are_checked() -> anyhow::Result<()> {
        assert!(services_to_register(&register_args(vec![])).is_err());
        let mut both = register_args(vec!["x.json".into()]);
        both.name = Some("web".into());
        assert!(services_to_register(&both).is_err());
        let mut no_name = register_args(vec![]);
        no_name.port = Some(1);
        assert!(services_to_register(&no_name).is_err());
        let mut bad_meta = register_args(vec![]);
        bad_meta.name = Some("w".into());
        bad_meta.meta = vec!["novalue".into()];
        assert!(services_to_register(&bad_meta).is_err());
        Ok(())
    }

    #[test]
    fn files_give_every_service_and_deregister_ids() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("s.json");
        std::fs::write(
            &file,
            r#"{"services":[{"name":"a","checks":[{"ttl":"10s"}]},{"id":"b/1","name":"b"}]}"#,
        )?;
        let services = services_to_register(&register_args(vec![file.clone()]))?;
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let ids = ids_to_deregister(&DeregisterArgs {
            http: HttpArgs::default(),
            id: None,
            files: vec![file],
        })?;
        assert_eq!(ids, ["a", "b/1"]);
        assert_eq!(deregister_path("b/1"), "/v1/agent/service/deregister/b%2F1");
        let empty = dir.path().join("e.json");
        std::fs::write(&empty, r#"{"datacenter":"x"}"#)?;
        assert!(services_to_register(&register_args(vec![empty])).is_err());
        Ok(())
    }
}
