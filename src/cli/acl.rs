//! `muster acl bootstrap | token ... | policy ... | role ...`: Consul's
//! `consul acl` commands over the HTTP API (`/v1/acl/*`), with its flags
//! and its text output (`-format=json` for the API's JSON). The token to
//! act with comes from `-token`, `-token-file` or `CONSUL_HTTP_TOKEN`.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::http::{Client, HttpArgs};
use super::members::block_on;

/// `muster acl`.
#[derive(Debug, clap::Args)]
pub struct AclArgs {
    #[command(subcommand)]
    pub command: AclCommand,
}

/// The `acl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AclCommand {
    /// Make the first management token (once per cluster).
    Bootstrap(Common),
    /// Create, list, read, update or delete tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, list, read, update or delete policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Create, list, read or delete roles.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Set one of the agent's own tokens: default, agent, agent_recovery,
    /// dns or replication (kept across restarts with
    /// acl.enable_token_persistence).
    SetAgentToken(SetAgentToken),
}

/// `acl set-agent-token TYPE TOKEN`.
#[derive(Debug, clap::Args)]
pub struct SetAgentToken {
    /// Agent address and token.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Which token: default, agent, agent_recovery, dns or replication.
    pub kind: String,
    /// The token's SecretID.
    #[arg(value_name = "TOKEN")]
    pub secret: String,
}

/// Flags every `acl` command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Agent address and token.
    #[command(flatten)]
    pub http: HttpArgs,
    /// `pretty` (Consul's text) or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// `acl token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token.
    Create(TokenFields),
    /// List tokens.
    List(Common),
    /// Read a token (-id ID, or -self).
    Read(TokenRef),
    /// Update a token's description, policies and roles.
    Update(TokenFields),
    /// Delete a token.
    Delete(TokenRef),
}

/// A token by AccessorID.
#[derive(Debug, clap::Args)]
pub struct TokenRef {
    #[command(flatten)]
    pub common: Common,
    /// The token's AccessorID.
    #[arg(long, default_value = "")]
    pub id: String,
    /// The token the request is made with.
    #[arg(long = "self")]
    pub self_: bool,
}

/// A token's fields.
#[derive(Debug, clap::Args)]
pub struct TokenFields {
    #[command(flatten)]
    pub common: Common,
    /// The AccessorID (update: the token to change).
    #[arg(long, alias = "accessor", default_value = "")]
    pub id: String,
    /// The SecretID to use (create; default: a new one).
    #[arg(long, default_value = "")]
    pub secret: String,
    /// A description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// A policy by name (repeatable).
    #[arg(long = "policy-name")]
    pub policy_names: Vec<String>,
    /// A policy by ID (repeatable).
    #[arg(long = "policy-id")]
    pub policy_ids: Vec<String>,
    /// A role by name (repeatable).
    #[arg(long = "role-name")]
    pub role_names: Vec<String>,
    /// A service identity, `NAME[:DC,...]` (repeatable).
    #[arg(long = "service-identity")]
    pub service_identities: Vec<String>,
    /// A node identity, `NODE:DC` (repeatable).
    #[arg(long = "node-identity")]
    pub node_identities: Vec<String>,
    /// Local to this datacenter.
    #[arg(long)]
    pub local: bool,
}

/// `acl policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Create a policy.
    Create(PolicyFields),
    /// List policies.
    List(Common),
    /// Read a policy (-id or -name).
    Read(NamedRef),
    /// Update a policy.
    Update(PolicyFields),
    /// Delete a policy (-id or -name).
    Delete(NamedRef),
}

/// A policy or role by ID or name.
#[derive(Debug, clap::Args)]
pub struct NamedRef {
    #[command(flatten)]
    pub common: Common,
    /// Its ID.
    #[arg(long, default_value = "")]
    pub id: String,
    /// Its name.
    #[arg(long, default_value = "")]
    pub name: String,
}

/// A policy's fields.
#[derive(Debug, clap::Args)]
pub struct PolicyFields {
    #[command(flatten)]
    pub common: Common,
    /// The policy to change (update).
    #[arg(long, default_value = "")]
    pub id: String,
    /// Its name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// A description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The rules (HCL or JSON), `@FILE` to read them from a file.
    #[arg(long, default_value = "")]
    pub rules: String,
    /// A datacenter the policy applies in (repeatable; default all).
    #[arg(long = "valid-datacenter")]
    pub datacenters: Vec<String>,
}

/// `acl role ...`.
#[derive(Debug, clap::Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    Create(RoleFields),
    /// List roles.
    List(Common),
    /// Read a role (-id or -name).
    Read(NamedRef),
    /// Delete a role (-id or -name).
    Delete(NamedRef),
}

/// A role's fields.
#[derive(Debug, clap::Args)]
pub struct RoleFields {
    #[command(flatten)]
    pub common: Common,
    /// Its name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// A description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// A policy by name (repeatable).
    #[arg(long = "policy-name")]
    pub policy_names: Vec<String>,
    /// A service identity, `NAME[:DC,...]` (repeatable).
    #[arg(long = "service-identity")]
    pub service_identities: Vec<String>,
}

/// Run `muster acl`.
pub fn run(args: AclArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        match args.command {
            AclCommand::Bootstrap(c) => {
                let v = call(&c, Method::PUT, "/v1/acl/bootstrap", None, "bootstrap ACLs").await?;
                show_token(&c, &v)?;
            }
            AclCommand::Token(cmd) => token(cmd).await?,
            AclCommand::Policy(cmd) => policy(cmd).await?,
            AclCommand::Role(cmd) => role(cmd).await?,
            AclCommand::SetAgentToken(a) => {
                let client = Client::new(&a.http)?;
                let body = Bytes::from(json!({"Token": a.secret}).to_string());
                let path = format!("/v1/agent/token/{}", a.kind);
                let reply = client.request(Method::PUT, &path, body).await?;
                if reply.status != StatusCode::OK {
                    bail!("Failed setting token: {}", reply.unexpected());
                }
                println!("ACL token {:?} set successfully", a.kind);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One request; a non-200 is `Failed to <what>: Unexpected response ...`.
async fn call(
    c: &Common,
    method: Method,
    path: &str,
    body: Option<Value>,
    what: &str,
) -> anyhow::Result<Value> {
    let client = Client::new(&c.http)?;
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let reply = client.request(method, path, body).await?;
    if reply.status != StatusCode::OK {
        bail!("Failed to {what}: {}", reply.unexpected());
    }
    serde_json::from_slice(&reply.body).map_err(|e| anyhow!("Failed to {what}: bad answer: {e}"))
}

fn links(names: &[String], ids: &[String]) -> Value {
    let by_name = names.iter().map(|n| json!({"Name": n}));
    let by_id = ids.iter().map(|i| json!({"ID": i}));
    Value::Array(by_name.chain(by_id).collect())
}

fn service_identities(list: &[String]) -> Value {
    Value::Array(
        list.iter()
            .map(|s| match s.split_once(':') {
                Some((name, dcs)) => json!({"ServiceName": name,
                    "Datacenters": dcs.split(',').collect::<Vec<_>>()}),
                None => json!({"ServiceName": s}),
            })
            .collect(),
    )
}

fn node_identities(list: &[String]) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    for n in list {
        let (node, dc) = n.split_once(':').ok_or_else(|| {
            anyhow!("Malformed -node-identity argument: {n:?} (use NODE:DATACENTER)")
        })?;
        out.push(json!({"NodeName": node, "Datacenter": dc}));
    }
    Ok(Value::Array(out))
}

async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create(f) => {
            let mut body = token_body(&f)?;
            if !f.secret.is_empty() {
                body["SecretID"] = json!(f.secret);
            }
            if !f.id.is_empty() {
                body["AccessorID"] = json!(f.id);
            }
            let v = call(
                &f.common,
                Method::PUT,
                "/v1/acl/token",
                Some(body),
                "create new token",
            )
            .await?;
            show_token(&f.common, &v)
        }
        TokenCommand::Update(f) => {
            if f.id.is_empty() {
                bail!("Cannot update a token without specifying the -id parameter");
            }
            let path = format!("/v1/acl/token/{}", f.id);
            let body = token_body(&f)?;
            let v = call(&f.common, Method::PUT, &path, Some(body), "update token").await?;
            show_token(&f.common, &v)
        }
        TokenCommand::List(c) => {
            list(&c, "/v1/acl/tokens", "retrieve the token list", |t| {
                print_token(t);
                println!();
            })
            .await
        }
        TokenCommand::Read(r) => {
            let path = if r.self_ {
                "/v1/acl/token/self".to_string()
            } else if r.id.is_empty() {
                bail!("Must specify the -id parameter");
            } else {
                format!("/v1/acl/token/{}", r.id)
            };
            let v = call(&r.common, Method::GET, &path, None, "read token").await?;
            show_token(&r.common, &v)
        }
        TokenCommand::Delete(r) => {
            if r.id.is_empty() {
                bail!("Must specify the -id parameter");
            }
            let path = format!("/v1/acl/token/{}", r.id);
            call(&r.common, Method::DELETE, &path, None, "delete token").await?;
            println!("Token \"{}\" deleted successfully", r.id);
            Ok(())
        }
    }
}

fn token_body(f: &TokenFields) -> anyhow::Result<Value> {
    Ok(json!({
        "Description": f.description,
        "Policies": links(&f.policy_names, &f.policy_ids),
        "Roles": links(&f.role_names, &[]),
        "ServiceIdentities": service_identities(&f.service_identities),
        "NodeIdentities": node_identities(&f.node_identities)?,
        "Local": f.local,
    }))
}

/// The rules text: `@FILE` reads a file.
fn rules_text(rules: &str) -> anyhow::Result<String> {
    match rules.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow!("Failed to read rules file {path}: {e}")),
        None => Ok(rules.to_string()),
    }
}

/// `/v1/acl/<kind>/<id>` or `/v1/acl/<kind>/name/<name>`.
fn named_path(kind: &str, r: &NamedRef) -> anyhow::Result<String> {
    match (r.id.is_empty(), r.name.is_empty()) {
        (false, _) => Ok(format!("/v1/acl/{kind}/{}", r.id)),
        (true, false) => Ok(format!("/v1/acl/{kind}/name/{}", r.name)),
        (true, true) => bail!("Must specify either the -id or -name parameters"),
    }
}

async fn policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Create(f) => {
            if f.name.is_empty() {
                bail!("Missing required '-name' flag");
            }
            let body = json!({"Name": f.name, "Description": f.description,
                "Rules": rules_text(&f.rules)?, "Datacenters": f.datacenters});
            let v = call(
                &f.common,
                Method::PUT,
                "/v1/acl/policy",
                Some(body),
                "create new policy",
            )
            .await?;
            show_policy(&f.common, &v)
        }
        PolicyCommand::Update(f) => {
            if f.id.is_empty() {
                bail!("Cannot update a policy without specifying the -id parameter");
            }
            let path = format!("/v1/acl/policy/{}", f.id);
            let current = call(&f.common, Method::GET, &path, None, "read policy").await?;
            let pick = |given: &str, key: &str| {
                if given.is_empty() {
                    current[key].clone()
                } else {
                    json!(given)
                }
            };
            let rules = rules_text(&f.rules)?;
            let body = json!({"Name": pick(&f.name, "Name"),
                "Description": pick(&f.description, "Description"),
                "Rules": pick(&rules, "Rules"),
                "Datacenters": if f.datacenters.is_empty() { current["Datacenters"].clone() } else { json!(f.datacenters) }});
            let v = call(&f.common, Method::PUT, &path, Some(body), "update policy").await?;
            show_policy(&f.common, &v)
        }
        PolicyCommand::List(c) => {
            list(&c, "/v1/acl/policies", "retrieve the policy list", |p| {
                print_summary(p);
                println!("   Datacenters:  {}", join(&p["Datacenters"]));
            })
            .await
        }
        PolicyCommand::Read(r) => {
            let v = call(
                &r.common,
                Method::GET,
                &named_path("policy", &r)?,
                None,
                "read policy",
            )
            .await?;
            show_policy(&r.common, &v)
        }
        PolicyCommand::Delete(r) => {
            let mut r = r;
            if r.id.is_empty() {
                let v = call(
                    &r.common,
                    Method::GET,
                    &named_path("policy", &r)?,
                    None,
                    "read policy",
                )
                .await?;
                r.id = v["ID"].as_str().unwrap_or_default().to_string();
            }
            let path = format!("/v1/acl/policy/{}", r.id);
            call(&r.common, Method::DELETE, &path, None, "delete policy").await?;
            println!("Policy \"{}\" deleted successfully", r.id);
            Ok(())
        }
    }
}

async fn role(cmd: RoleCommand) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::Create(f) => {
            if f.name.is_empty() {
                bail!("Missing required '-name' flag");
            }
            let body = json!({"Name": f.name, "Description": f.description,
                "Policies": links(&f.policy_names, &[]),
                "ServiceIdentities": service_identities(&f.service_identities)});
            let v = call(
                &f.common,
                Method::PUT,
                "/v1/acl/role",
                Some(body),
                "create new role",
            )
            .await?;
            show_json_or(&f.common, &v, |v| {
                println!("ID:           {}", v["ID"].as_str().unwrap_or_default());
                println!("Name:         {}", v["Name"].as_str().unwrap_or_default());
                println!(
                    "Description:  {}",
                    v["Description"].as_str().unwrap_or_default()
                );
                print_links("Policies", &v["Policies"]);
            })
        }
        RoleCommand::List(c) => {
            list(&c, "/v1/acl/roles", "retrieve the role list", print_summary).await
        }
        RoleCommand::Read(r) => {
            let v = call(
                &r.common,
                Method::GET,
                &named_path("role", &r)?,
                None,
                "read role",
            )
            .await?;
            show_json_or(&r.common, &v, |v| {
                println!("ID:           {}", v["ID"].as_str().unwrap_or_default());
                println!("Name:         {}", v["Name"].as_str().unwrap_or_default());
                print_links("Policies", &v["Policies"]);
            })
        }
        RoleCommand::Delete(r) => {
            let path = named_path("role", &r)?;
            let id = if r.id.is_empty() {
                call(&r.common, Method::GET, &path, None, "read role").await?["ID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            } else {
                r.id.clone()
            };
            call(
                &r.common,
                Method::DELETE,
                &format!("/v1/acl/role/{id}"),
                None,
                "delete role",
            )
            .await?;
            println!("Role \"{id}\" deleted successfully");
            Ok(())
        }
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn show_json_or(c: &Common, v: &Value, pretty: impl Fn(&Value)) -> anyhow::Result<()> {
    if c.format == "json" {
        return print_json(v);
    }
    pretty(v);
    Ok(())
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn print_links(title: &str, v: &Value) {
    let list: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    if list.is_empty() {
        return;
    }
    println!("{title}:");
    for l in list {
        println!(
            "   {} - {}",
            l["ID"].as_str().unwrap_or_default(),
            l["Name"].as_str().unwrap_or_default()
        );
    }
}

/// Consul's token text.
fn show_token(c: &Common, v: &Value) -> anyhow::Result<()> {
    show_json_or(c, v, print_token)
}

/// Consul's token text.
fn print_token(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    println!("AccessorID:       {}", s("AccessorID"));
    println!("SecretID:         {}", s("SecretID"));
    println!("Description:      {}", s("Description"));
    println!(
        "Local:            {}",
        v["Local"].as_bool().unwrap_or(false)
    );
    println!("Create Time:      {}", s("CreateTime"));
    print_links("Policies", &v["Policies"]);
    print_links("Roles", &v["Roles"]);
    if let Some(ids) = v["ServiceIdentities"].as_array().filter(|a| !a.is_empty()) {
        println!("Service Identities:");
        for i in ids {
            println!("   {}", i["ServiceName"].as_str().unwrap_or_default());
        }
    }
}

/// `GET path` (a listing), printed as JSON with `-format=json`, else each
/// entry with `row`.
async fn list(c: &Common, path: &str, what: &str, row: impl Fn(&Value)) -> anyhow::Result<()> {
    let v = call(c, Method::GET, path, None, what).await?;
    show_json_or(c, &v, |v| v.as_array().into_iter().flatten().for_each(&row))
}

/// A policy's or role's lines in a listing: name, ID, description.
fn print_summary(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    println!("{}:", s("Name"));
    println!("   ID:           {}", s("ID"));
    println!("   Description:  {}", s("Description"));
}

/// Consul's policy text.
fn show_policy(c: &Common, v: &Value) -> anyhow::Result<()> {
    show_json_or(c, v, |v| {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        println!("ID:           {}", s("ID"));
        println!("Name:         {}", s("Name"));
        println!("Description:  {}", s("Description"));
        println!("Datacenters:  {}", join(&v["Datacenters"]));
        println!("Rules:\n{}", s("Rules"));
    })
}
