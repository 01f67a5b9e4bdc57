//! `muster maint [-enable|-disable] [-service=id] [-reason=...]`: node or
//! service maintenance mode on the local agent
//! (`PUT /v1/agent/maintenance`, `PUT /v1/agent/service/maintenance/:id`);
//! without `-enable`/`-disable`, list what is in maintenance (the
//! `_node_maintenance` and `_service_maintenance:<id>` checks of
//! `GET /v1/agent/checks`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::http::{query_value, Client, HttpArgs};
use super::services::say;

/// The node maintenance check's ID.
const NODE_MAINT: &str = "_node_maintenance";
/// The prefix of a service maintenance check's ID.
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

/// `muster maint`.
#[derive(Debug, clap::Args)]
#[command(about = "Put the node or a service into maintenance mode, or list maintenance")]
pub struct MaintArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Enter maintenance mode.
    #[arg(long)]
    pub enable: bool,
    /// Leave maintenance mode.
    #[arg(long)]
    pub disable: bool,
    /// Act on this service ID instead of the node.
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Why (shown in the maintenance check's notes).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// What `muster maint` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum MaintAction {
    /// List the maintenance checks.
    List,
    /// `PUT path`, then print `message`.
    Toggle {
        /// Path and query.
        path: String,
        /// Consul's success line.
        message: &'static str,
        /// What the error message says failed (`enabling node maintenance`).
        what: String,
    },
}

/// The request `args` describe.
pub fn action(args: &MaintArgs) -> anyhow::Result<MaintAction> {
    if args.enable && args.disable {
        bail!("Only one of -enable or -disable may be provided");
    }
    if !args.enable && !args.disable {
        if args.service.is_some() || args.reason.is_some() {
            bail!("Error: -service and -reason need -enable or -disable");
        }
        return Ok(MaintAction::List);
    }
    let enable = args.enable;
    let mut query = format!("?enable={enable}");
    if let Some(reason) = args.reason.as_deref().filter(|r| enable && !r.is_empty()) {
        query.push_str("&reason=");
        query.push_str(&query_value(reason));
    }
    let verb = if enable { "enabling" } else { "disabling" };
    Ok(match args.service.as_deref() {
        Some("") => bail!("Error: -service must name a service ID"),
        Some(id) => MaintAction::Toggle {
            path: format!("/v1/agent/service/maintenance/{}{query}", query_value(id)),
            message: if enable {
                "Service entered maintenance mode"
            } else {
                "Service left maintenance mode"
            },
            what: format!("{verb} service maintenance"),
        },
        None => MaintAction::Toggle {
            path: format!("/v1/agent/maintenance{query}"),
            message: if enable {
                "Node entered maintenance mode"
            } else {
                "Node left maintenance mode"
            },
            what: format!("{verb} node maintenance"),
        },
    })
}

/// The fields of a `HealthCheck` the listing shows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    #[serde(default, rename = "CheckID")]
    check_id: String,
    #[serde(default, rename = "ServiceID")]
    service_id: String,
    #[serde(default)]
    notes: String,
}

/// `/v1/agent/self`, as far as the listing needs it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SelfInfo {
    #[serde(default)]
    config: SelfConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SelfConfig {
    #[serde(default)]
    node_name: String,
}

/// Consul's listing: a `Node:` block for node maintenance, a `Service:`
/// block per service in maintenance, each followed by a blank line.
fn listing(node_name: &str, checks: &BTreeMap<String, Check>) -> String {
    let mut out = String::new();
    for (id, check) in checks {
        let id = if check.check_id.is_empty() {
            id.as_str()
        } else {
            check.check_id.as_str()
        };
        if id == NODE_MAINT {
            out.push_str(&format!(
                "Node:\n  Name:   {node_name}\n  Reason: {}\n\n",
                check.notes
            ));
        } else if let Some(service) = id.strip_prefix(SERVICE_MAINT_PREFIX) {
            let service = if check.service_id.is_empty() {
                service
            } else {
                check.service_id.as_str()
            };
            out.push_str(&format!(
                "Service:\n  ID:     {service}\n  Reason: {}\n\n",
                check.notes
            ));
        }
    }
    out
}

/// Run `muster maint` on a small single-threaded runtime.
pub fn run(args: MaintArgs) -> anyhow::Result<ExitCode> {
    let action = action(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    runtime.block_on(async {
        let client = Client::new(&args.http)?;
        match action {
            MaintAction::List => {
                let get = |path: &'static str| {
                    let client = &client;
                    async move {
                        let reply = client
                            .request(Method::GET, path, Bytes::new())
                            .await
                            .map_err(|e| anyhow!("Error listing maintenance: {e:#}"))?;
                        if reply.status != StatusCode::OK {
                            bail!("Error listing maintenance: {}", reply.unexpected());
                        }
                        Ok(reply.body)
                    }
                };
                let info: SelfInfo = serde_json::from_slice(&get("/v1/agent/self").await?)
                    .context("Error listing maintenance: unreadable /v1/agent/self reply")?;
                let checks: BTreeMap<String, Check> =
                    serde_json::from_slice(&get("/v1/agent/checks").await?)
                        .context("Error listing maintenance: unreadable /v1/agent/checks reply")?;
                let text = listing(&info.config.node_name, &checks);
                if !text.is_empty() {
                    say(text.trim_end_matches('\n'))?;
                    say("")?;
                }
            }
            MaintAction::Toggle {
                path,
                message,
                what,
            } => {
                let reply = client
                    .request(Method::PUT, &path, Bytes::new())
                    .await
                    .map_err(|e| anyhow!("Error {what}: {e:#}"))?;
                match reply.status {
                    StatusCode::OK => say(message)?,
                    StatusCode::NOT_FOUND if args.service.is_some() => bail!(
                        "No service registered with ID {:?}",
                        args.service.as_deref().unwrap_or_default()
                    ),
                    _ => bail!("Error {what}: {}", reply.unexpected()),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(enable: bool, disable: bool, service: Option<&str>, reason: Option<&str>) -> MaintArgs {
        MaintArgs {
            http: HttpArgs::default(),
            enable,
            disable,
            service: service.map(String::from),
            reason: reason.map(String::from),
        }
    }

    #[test]
    fn flags_pick_the_request() -> anyhow::Result<()> {
        assert_eq!(action(&args(false, false, None, None))?, MaintAction::List);
        assert!(action(&args(true, true, None, None)).is_err());
        assert!(action(&args(false, false, Some("web"), None)).is_err());
        assert_eq!(
            action(&args(true, false, None, Some("disk swap")))?,
            MaintAction::Toggle {
                path: "/v1/agent/maintenance?enable=true&reason=disk%20swap".into(),
                message: "Node entered maintenance mode",
                what: "enabling node maintenance".into(),
            }
        );
        assert_eq!(
            action(&args(false, true, Some("a/b"), None))?,
            MaintAction::Toggle {
                path: "/v1/agent/service/maintenance/a%2Fb?enable=false".into(),
                message: "Service left maintenance mode",
                what: "disabling service maintenance".into(),
            }
        );
        Ok(())
    }

    #[test]
    fn listing_shows_node_and_services() -> anyhow::Result<()> {
        let checks: BTreeMap<String, Check> = serde_json::from_str(
            r#"{"_node_maintenance":{"CheckID":"_node_maintenance","Notes":"why"},
                "_service_maintenance:web":{"CheckID":"_service_maintenance:web",
                  "ServiceID":"web","Notes":"upgrade"},
                "other":{"CheckID":"other"}}"#,
        )?;
        assert_eq!(
            listing("n1", &checks),
            "Node:\n  Name:   n1\n  Reason: why\n\n\
             Service:\n  ID:     web\n  Reason: upgrade\n\n"
        );
        Ok(())
    }
}
