//! `muster catalog datacenters|nodes|services`: read-only views of the
//! catalog of a running agent, HTTP clients of `/v1/catalog/*` with Consul's
//! flags and output layout (consul-compat.md §11.3).
//!
//! Tables go to stdout; "nothing matched" is a note on stderr with exit 0,
//! as in Consul; every failure is one line on stderr and exit status 1.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::http::{query_value, Client, HttpArgs};
use super::table::columnize;

/// The padding after the name column of `services -tags` (Consul's
/// `tabwriter` padding).
const TAGS_PADDING: usize = 6;

/// `muster catalog`.
#[derive(Debug, clap::Args)]
#[command(about = "Read the catalog (datacenters, nodes, services) of a running agent")]
pub struct CatalogArgs {
    /// The catalog command.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// The catalog subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// List the known datacenters.
    Datacenters(DatacentersArgs),
    /// List nodes: `Node  ID  Address  DC`.
    Nodes(NodesArgs),
    /// List service names (sorted).
    Services(ServicesArgs),
}

/// Flags shared by the catalog reads.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The datacenter to query (default: the agent's).
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,
    /// Let any server answer, possibly with stale data.
    #[arg(long)]
    pub stale: bool,
}

impl ReadArgs {
    /// `dc=` and `stale` as query parameters (each prefixed with `&`).
    fn query(&self) -> String {
        let mut q = String::new();
        if let Some(dc) = self.datacenter.as_deref().filter(|dc| !dc.is_empty()) {
            q.push_str("&dc=");
            q.push_str(&query_value(dc));
        }
        if self.stale {
            q.push_str("&stale");
        }
        q
    }
}

/// `muster catalog datacenters`.
#[derive(Debug, clap::Args)]
pub struct DatacentersArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `muster catalog nodes`.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Agent address, datacenter, staleness.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Only nodes that provide this service.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Show the full node ID, tagged addresses and metadata.
    #[arg(long)]
    pub detailed: bool,
    /// Only nodes with this metadata, `key=value` (repeatable; all must
    /// match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub node_meta: Vec<String>,
    /// A filter expression over the nodes (Consul's `filter=`; over the
    /// service instances with -service).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
}

/// `muster catalog services`.
#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    /// Agent address, datacenter, staleness.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Only services registered on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Show each service's tags (comma-separated, sorted).
    #[arg(long)]
    pub tags: bool,
    /// Only services on nodes with this metadata, `key=value` (repeatable;
    /// all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub node_meta: Vec<String>,
}

/// Consul's `Node` (the fields the table shows).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

/// Consul's `ServiceNode` (the node half of it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceNode {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default)]
    node_meta: Option<BTreeMap<String, String>>,
}

/// Consul's `NodeService` (name and tags).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeService {
    #[serde(default)]
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// `/v1/catalog/node/:n`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogNode {
    #[serde(default)]
    services: Option<BTreeMap<String, NodeService>>,
}

/// Run a catalog subcommand on a small single-threaded runtime.
pub fn run(args: CatalogArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    runtime.block_on(async {
        match args.command {
            CatalogCommand::Datacenters(args) => datacenters(args).await,
            CatalogCommand::Nodes(args) => nodes(args).await,
            CatalogCommand::Services(args) => services(args).await,
        }
    })
}

/// GET `path` and decode a 200's JSON body; `what` names the listing in
/// error messages (`Error listing nodes: ...`).
async fn get_json<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    what: &str,
) -> anyhow::Result<T> {
    let reply = client
        .request(Method::GET, path, Bytes::new())
        .await
        .map_err(|e| anyhow!("Error listing {what}: {e:#}"))?;
    if reply.status != StatusCode::OK {
        bail!("Error listing {what}: {}", reply.unexpected());
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| anyhow!("Error listing {what}: the agent sent an unreadable reply: {e}"))
}

/// `-node-meta key=value` flags → `&node-meta=key:value` parameters.
fn node_meta_query(flags: &[String]) -> anyhow::Result<String> {
    let mut q = String::new();
    for flag in flags {
        let Some((key, value)) = flag.split_once('=') else {
            bail!("Error: -node-meta must be key=value, got {flag:?}");
        };
        q.push_str("&node-meta=");
        q.push_str(&query_value(&format!("{key}:{value}")));
    }
    Ok(q)
}

/// `?a&b` from `&a&b` (or nothing).
fn with_query(path: &str, params: &str) -> String {
    match params.strip_prefix('&') {
        Some(rest) => format!("{path}?{rest}"),
        None => path.to_string(),
    }
}

async fn datacenters(args: DatacentersArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.http)?;
    let dcs: Vec<String> = get_json(&client, "/v1/catalog/datacenters", "datacenters").await?;
    if dcs.is_empty() {
        bail!("No datacenters found");
    }
    let mut out = String::new();
    for dc in dcs {
        out.push_str(&dc);
        out.push('\n');
    }
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

async fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let mut params = node_meta_query(&args.node_meta)?;
    if let Some(filter) = &args.filter {
        params.push_str("&filter=");
        params.push_str(&query_value(filter));
    }
    params.push_str(&args.read.query());
    let client = Client::new(&args.read.http)?;
    let nodes: Vec<Node> = match args.service.as_deref() {
        Some("") => bail!("Error: -service must name a service"),
        Some(service) => {
            let path = with_query(
                &format!("/v1/catalog/service/{}", query_value(service)),
                &params,
            );
            let instances: Vec<ServiceNode> = get_json(&client, &path, "nodes").await?;
            // One row per node, even if it runs several instances.
            let mut by_name = BTreeMap::new();
            for s in instances {
                by_name.entry(s.node.clone()).or_insert(Node {
                    id: s.id,
                    node: s.node,
                    address: s.address,
                    datacenter: s.datacenter,
                    tagged_addresses: s.tagged_addresses,
                    meta: s.node_meta,
                });
            }
            by_name.into_values().collect()
        }
        None => get_json(&client, &with_query("/v1/catalog/nodes", &params), "nodes").await?,
    };
    if nodes.is_empty() {
        write_stderr("No nodes match the given query - try expanding your search.\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    write_stdout(&nodes_table(&nodes, args.detailed))?;
    Ok(ExitCode::SUCCESS)
}

/// Consul's node table: `Node  ID  Address  DC` with the ID cut to its first
/// group (8 characters of a UUID); `-detailed` shows the whole ID and adds
/// `TaggedAddresses` and `Meta` as sorted `k=v, k=v`.
fn nodes_table(nodes: &[Node], detailed: bool) -> String {
    let mut rows = Vec::with_capacity(nodes.len() + 1);
    if detailed {
        rows.push(
            ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
                .map(String::from)
                .to_vec(),
        );
    } else {
        rows.push(["Node", "ID", "Address", "DC"].map(String::from).to_vec());
    }
    for n in nodes {
        if detailed {
            rows.push(vec![
                n.node.clone(),
                n.id.clone(),
                n.address.clone(),
                n.datacenter.clone(),
                map_to_kv(n.tagged_addresses.as_ref()),
                map_to_kv(n.meta.as_ref()),
            ]);
        } else {
            let id = match n.id.find('-') {
                Some(cut) if cut > 0 => &n.id[..cut],
                _ => n.id.as_str(),
            };
            rows.push(vec![
                n.node.clone(),
                id.to_string(),
                n.address.clone(),
                n.datacenter.clone(),
            ]);
        }
    }
    columnize(&rows)
}

/// `k1=v1, k2=v2` in key order (`""` for none).
fn map_to_kv(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

async fn services(args: ServicesArgs) -> anyhow::Result<ExitCode> {
    let mut params = node_meta_query(&args.node_meta)?;
    params.push_str(&args.read.query());
    let client = Client::new(&args.read.http)?;
    let services: BTreeMap<String, Vec<String>> = match args.node.as_deref() {
        Some("") => bail!("Error: -node must name a node"),
        Some(node) => {
            let path = with_query(&format!("/v1/catalog/node/{}", query_value(node)), &params);
            let found: Option<CatalogNode> = get_json(&client, &path, "services").await?;
            let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for s in found
                .and_then(|n| n.services)
                .into_iter()
                .flat_map(|m| m.into_values())
            {
                by_name
                    .entry(s.service)
                    .or_default()
                    .extend(s.tags.unwrap_or_default());
            }
            by_name
        }
        None => {
            let listed: BTreeMap<String, Option<Vec<String>>> = get_json(
                &client,
                &with_query("/v1/catalog/services", &params),
                "services",
            )
            .await?;
            listed
                .into_iter()
                .map(|(name, tags)| (name, tags.unwrap_or_default()))
                .collect()
        }
    };
    if services.is_empty() {
        write_stderr("No services match the given query - try expanding your search.\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    write_stdout(&services_table(services, args.tags))?;
    Ok(ExitCode::SUCCESS)
}

/// One service name per line, sorted; with `tags`, Consul's tabwriter
/// layout: the name padded to the widest name plus six spaces, then the
/// sorted, deduplicated tags joined by commas.
fn services_table(services: BTreeMap<String, Vec<String>>, tags: bool) -> String {
    let width = services
        .keys()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        + TAGS_PADDING;
    let mut out = String::new();
    for (name, mut service_tags) in services {
        if tags {
            service_tags.sort();
            service_tags.dedup();
            let line = format!("{name:<width$}{}", service_tags.join(","));
            out.push_str(line.trim_end());
        } else {
            out.push_str(&name);
        }
        out.push('\n');
    }
    out
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("Error: cannot write to stdout")
}

fn write_stderr(text: &str) -> anyhow::Result<()> {
    let mut err = io::stderr().lock();
    err.write_all(text.as_bytes())
        .and_then(|()| err.flush())
        .context("Error: cannot write to stderr")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, id: &str, addr: &str) -> Node {
        Node {
            id: id.into(),
            node: name.into(),
            address: addr.into(),
            datacenter: "dc1".into(),
            tagged_addresses: None,
            meta: Some(BTreeMap::from([("rack".to_string(), "r1".to_string())])),
        }
    }

    #[test]
    fn node_table_pads_columns_and_cuts_the_id() {
        let nodes = [
            node("alpha", "40e4a748-2192-161a-0510-9bf59fe950b5", "10.0.0.1"),
            node("beta-node", "", "10.0.0.22"),
        ];
        assert_eq!(
            nodes_table(&nodes, false),
            "Node       ID        Address    DC\n\
             alpha      40e4a748  10.0.0.1   dc1\n\
             beta-node            10.0.0.22  dc1\n"
        );
        assert_eq!(
            nodes_table(&nodes[1..], true),
            "Node       ID  Address    DC   TaggedAddresses  Meta\n\
             beta-node      10.0.0.22  dc1                   rack=r1\n"
        );
    }

    #[test]
    fn services_table_sorts_and_joins_tags() {
        let services = BTreeMap::from([
            (
                "web".to_string(),
                vec!["v2".into(), "v1".into(), "v2".into()],
            ),
            ("db".to_string(), vec![]),
        ]);
        assert_eq!(services_table(services.clone(), false), "db\nweb\n");
        assert_eq!(services_table(services, true), "db\nweb      v1,v2\n");
    }

    #[test]
    fn node_meta_flags_become_query_parameters() -> anyhow::Result<()> {
        assert_eq!(
            node_meta_query(&["rack=r 1".into(), "a=b=c".into()])?,
            "&node-meta=rack%3Ar%201&node-meta=a%3Ab%3Dc"
        );
        assert!(node_meta_query(&["nope".into()]).is_err());
        assert_eq!(with_query("/p", ""), "/p");
        assert_eq!(with_query("/p", "&a&b=1"), "/p?a&b=1");
        Ok(())
    }
}
