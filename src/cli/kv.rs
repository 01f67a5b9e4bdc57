//! `muster kv get|put|delete`: the key/value commands, HTTP clients of
//! `/v1/kv/*` on a running agent, with Consul's flags and messages
//! (`put -acquire|-release -session=ID` takes or gives up a key's lock).
//!
//! Values are written to stdout as raw bytes (followed by a newline, as
//! Consul does); every failure is one line on stderr and exit status 1.

use std::fs;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::http::{kv_path, query_value, Client, HttpArgs};

/// `muster kv`.
#[derive(Debug, clap::Args)]
#[command(about = "Read and write the key/value store of a running agent")]
pub struct KvArgs {
    /// The kv command.
    #[command(subcommand)]
    pub command: KvCommand,
}

/// The kv subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Read a key (or, with -recurse / -keys, a prefix).
    Get(GetArgs),
    /// Write a key.
    Put(PutArgs),
    /// Delete a key (or, with -recurse, a prefix).
    Delete(DeleteArgs),
}

/// `muster kv get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Print every key under the prefix as `key:value`.
    #[arg(long)]
    pub recurse: bool,
    /// Print only key names under the prefix.
    #[arg(long)]
    pub keys: bool,
    /// With -keys: list keys only up to the first separator past the prefix
    /// (empty = no separator).
    #[arg(long, value_name = "SEP", default_value = "/")]
    pub separator: String,
    /// Print every field of the entry, not just its value.
    #[arg(long)]
    pub detailed: bool,
    /// Print values base64-encoded.
    #[arg(long)]
    pub base64: bool,
    /// The key (a prefix with -recurse / -keys; may be empty then).
    pub key: Option<String>,
}

/// `muster kv put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Check-and-set: write only if the key's ModifyIndex equals
    /// -modify-index (0 or absent: only if the key does not exist).
    #[arg(long)]
    pub cas: bool,
    /// The ModifyIndex expected by -cas.
    #[arg(long, value_name = "N")]
    pub modify_index: Option<u64>,
    /// Opaque unsigned integer stored with the value (default 0).
    #[arg(long, value_name = "N")]
    pub flags: Option<u64>,
    /// Take the key's lock for -session (creating the key if absent) and
    /// write the value; fails if another session holds it or a lock-delay
    /// is in effect.
    #[arg(long)]
    pub acquire: bool,
    /// Release the key's lock held by -session and write the value.
    #[arg(long)]
    pub release: bool,
    /// The session ID used by -acquire and -release (required with them).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// The value argument is base64-encoded.
    #[arg(long)]
    pub base64: bool,
    /// The key.
    pub key: Option<String>,
    /// The value: literal text, `@file` to read a file, `-` to read stdin
    /// (default: empty). A value starting with `-` goes after `--`.
    pub value: Option<String>,
}

/// `muster kv delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Delete every key under the prefix.
    #[arg(long)]
    pub recurse: bool,
    /// Check-and-set: delete only if the key's ModifyIndex equals
    /// -modify-index.
    #[arg(long)]
    pub cas: bool,
    /// The ModifyIndex expected by -cas.
    #[arg(long, value_name = "N")]
    pub modify_index: Option<u64>,
    /// The key (a prefix with -recurse; may be empty then).
    pub key: Option<String>,
}

/// Consul's `KVPair`, as `/v1/kv` returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    #[serde(default)]
    key: String,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    flags: u64,
    /// Base64; `null` when empty.
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    session: Option<String>,
}

impl KvPair {
    fn value_bytes(&self) -> anyhow::Result<Vec<u8>> {
        match &self.value {
            None => Ok(Vec::new()),
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v)
                .with_context(|| {
                    format!("Error: the agent sent a bad base64 value for {}", self.key)
                }),
        }
    }
}

/// Run a kv subcommand on a small single-threaded runtime.
pub fn run(args: KvArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    runtime.block_on(async {
        match args.command {
            KvCommand::Get(args) => get(args).await,
            KvCommand::Put(args) => put(args).await,
            KvCommand::Delete(args) => delete(args).await,
        }
    })
}

/// Drop one leading `/` (Consul keys never start with one).
fn normalize_key(key: Option<String>) -> String {
    let key = key.unwrap_or_default();
    match key.strip_prefix('/') {
        Some(rest) => rest.to_string(),
        None => key,
    }
}

async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    if args.recurse && args.keys {
        bail!("Error! Cannot specify both -recurse and -keys");
    }
    let listing = args.recurse || args.keys;
    if !listing && args.key.as_deref().unwrap_or_default().is_empty() {
        bail!("Error! Missing KEY argument");
    }
    let key = normalize_key(args.key);
    let client = Client::new(&args.http)?;
    let mut path = kv_path(&key);
    if args.keys {
        path.push_str("?keys");
        if !args.separator.is_empty() {
            path.push_str("&separator=");
            path.push_str(&query_value(&args.separator));
        }
    } else if args.recurse {
        path.push_str("?recurse");
    }
    let reply = client.request(Method::GET, &path, Bytes::new()).await?;
    if reply.status == StatusCode::NOT_FOUND {
        if listing {
            // Nothing under the prefix: nothing to print (Consul exits 0).
            return Ok(ExitCode::SUCCESS);
        }
        bail!("Error! No key exists at: {key}");
    }
    if reply.status != StatusCode::OK {
        bail!("Error querying agent: {}", reply.unexpected());
    }
    let mut out = Vec::new();
    if args.keys {
        let keys: Vec<String> = serde_json::from_slice(&reply.body)
            .map_err(|e| anyhow!("Error: the agent sent an unreadable key list: {e}"))?;
        for k in keys {
            out.extend_from_slice(k.as_bytes());
            out.push(b'\n');
        }
    } else {
        let pairs: Vec<KvPair> = serde_json::from_slice(&reply.body)
            .map_err(|e| anyhow!("Error: the agent sent an unreadable KV list: {e}"))?;
        if !listing && pairs.is_empty() {
            bail!("Error! No key exists at: {key}");
        }
        for (i, pair) in pairs.iter().enumerate() {
            let value = pair.value_bytes()?;
            let value = if args.base64 {
                base64::engine::general_purpose::STANDARD
                    .encode(&value)
                    .into_bytes()
            } else {
                value
            };
            if args.detailed {
                if i > 0 {
                    out.push(b'\n');
                }
                write_detailed(&mut out, pair, &value);
            } else if args.recurse {
                out.extend_from_slice(pair.key.as_bytes());
                out.push(b':');
                out.extend_from_slice(&value);
                out.push(b'\n');
            } else {
                out.extend_from_slice(&value);
                out.push(b'\n');
            }
        }
    }
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Consul's `-detailed` layout: one `Field  value` line per field.
fn write_detailed(out: &mut Vec<u8>, pair: &KvPair, value: &[u8]) {
    let session = pair
        .session
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("-");
    let lines = [
        ("CreateIndex", pair.create_index.to_string()),
        ("Flags", pair.flags.to_string()),
        ("Key", pair.key.clone()),
        ("LockIndex", pair.lock_index.to_string()),
        ("ModifyIndex", pair.modify_index.to_string()),
        ("Session", session.to_string()),
    ];
    for (name, v) in lines {
        out.extend_from_slice(format!("{name:<17}{v}\n").as_bytes());
    }
    out.extend_from_slice(format!("{:<17}", "Value").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

async fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    if args.key.as_deref().unwrap_or_default().is_empty() {
        bail!("Error! Missing KEY argument");
    }
    if args.modify_index.is_some() && !args.cas {
        bail!("Error! Cannot specify -modify-index without -cas");
    }
    let lock_op = match (args.acquire, args.release) {
        (true, true) => bail!("Error! Cannot specify both -acquire and -release"),
        (true, false) => Some(LockOp::Acquire),
        (false, true) => Some(LockOp::Release),
        (false, false) => None,
    };
    if lock_op.is_some() && args.cas {
        bail!("Error! Cannot specify -cas with -acquire or -release");
    }
    let session = args.session.as_deref().unwrap_or_default();
    if lock_op.is_some() && session.is_empty() {
        bail!("Error! Missing -session (required with -acquire and -release)");
    }
    let key = normalize_key(args.key);
    let value = read_value(args.value.as_deref())?;
    let value = if args.base64 {
        base64::engine::general_purpose::STANDARD
            .decode(value.trim_ascii())
            .map_err(|e| anyhow!("Error! Cannot base 64 decode data: {e}"))?
    } else {
        value
    };
    let client = Client::new(&args.http)?;
    let mut path = format!("{}?flags={}", kv_path(&key), args.flags.unwrap_or(0));
    if args.cas {
        path.push_str(&format!("&cas={}", args.modify_index.unwrap_or(0)));
    }
    if let Some(op) = lock_op {
        path.push_str(&format!("&{}={}", op.param(), query_value(session)));
    }
    let reply = client
        .request(Method::PUT, &path, Bytes::from(value))
        .await?;
    if reply.status != StatusCode::OK {
        bail!("Error! Failed writing data: {}", reply.unexpected());
    }
    let done = is_true(&reply.body);
    let msg = match (lock_op, done) {
        (Some(LockOp::Acquire), false) => bail!("Error! Did not acquire lock on: {key}"),
        (Some(LockOp::Release), false) => bail!("Error! Did not release lock on: {key}"),
        (None, false) => bail!("Error! Did not write to key: {key}"),
        (Some(LockOp::Acquire), true) => format!("Success! Lock acquired on: {key}\n"),
        (Some(LockOp::Release), true) => format!("Success! Lock released on: {key}\n"),
        (None, true) => format!("Success! Data written to: {key}\n"),
    };
    write_stdout(msg.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `kv put -acquire` / `-release`.
#[derive(Debug, Clone, Copy)]
enum LockOp {
    /// `?acquire=<session>`.
    Acquire,
    /// `?release=<session>`.
    Release,
}

impl LockOp {
    /// The query parameter naming the session.
    fn param(self) -> &'static str {
        match self {
            LockOp::Acquire => "acquire",
            LockOp::Release => "release",
        }
    }
}

/// The value argument: absent = empty, `-` = stdin, `@file` = the file's
/// bytes, anything else = the literal.
fn read_value(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match arg {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            io::stdin()
                .read_to_end(&mut buf)
                .context("Error! Failed to read stdin")?;
            Ok(buf)
        }
        Some(v) => match v.strip_prefix('@') {
            Some(file) => {
                fs::read(file).with_context(|| format!("Error! Failed to read file {file}"))
            }
            None => Ok(v.as_bytes().to_vec()),
        },
    }
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    if args.cas && args.recurse {
        bail!("Error! Cannot specify both -cas and -recurse");
    }
    if args.cas && args.modify_index.is_none() {
        bail!("Error! Must specify -modify-index with -cas");
    }
    if args.modify_index.is_some() && !args.cas {
        bail!("Error! Cannot specify -modify-index without -cas");
    }
    if !args.recurse && args.key.as_deref().unwrap_or_default().is_empty() {
        bail!("Error! Missing KEY argument");
    }
    let key = normalize_key(args.key);
    let client = Client::new(&args.http)?;
    let mut path = kv_path(&key);
    if args.recurse {
        path.push_str("?recurse");
    } else if let (true, Some(index)) = (args.cas, args.modify_index) {
        path.push_str(&format!("?cas={index}"));
    }
    let reply = client.request(Method::DELETE, &path, Bytes::new()).await?;
    if reply.status != StatusCode::OK {
        bail!("Error! Did not delete key {key}: {}", reply.unexpected());
    }
    if !is_true(&reply.body) {
        bail!("Error! Did not delete key {key}: CAS failed");
    }
    let msg = if args.recurse {
        format!("Success! Deleted keys with prefix: {key}\n")
    } else {
        format!("Success! Deleted key: {key}\n")
    };
    write_stdout(msg.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// A `true` / `false` JSON body.
fn is_true(body: &[u8]) -> bool {
    body.trim_ascii() == b"true"
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("Error: cannot write to stdout")
}
