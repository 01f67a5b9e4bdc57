//! `muster keyring -list | -list-primary | -install=K | -use=K | -remove=K`
//! (consul-compat.md §11.3): the gossip encryption keyring through
//! `/v1/operator/keyring` (GET list, POST install, PUT use, DELETE remove),
//! with Consul's `==> ` progress lines and per-pool key listing.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use super::http::{Client, HttpArgs};
use super::members::{block_on, get_json, write};
use super::services::say;

/// The keyring endpoint.
const KEYRING_PATH: &str = "/v1/operator/keyring";
/// Largest `-relay-factor` Consul accepts.
const MAX_RELAY_FACTOR: u8 = 5;

/// `muster keyring`.
#[derive(Debug, clap::Args)]
pub struct KeyringArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// List the installed keys and how many members hold each.
    #[arg(long)]
    pub list: bool,
    /// List the primary (encrypting) keys and how many members use each.
    #[arg(long)]
    pub list_primary: bool,
    /// Install a new key (base64) without using it yet.
    #[arg(long, value_name = "KEY")]
    pub install: Option<String>,
    /// Make an installed key the primary key.
    #[arg(long = "use", value_name = "KEY")]
    pub use_key: Option<String>,
    /// Remove an installed key that is not the primary.
    #[arg(long, value_name = "KEY")]
    pub remove: Option<String>,
    /// How many extra members relay each reply (0–5; accepted and passed
    /// on).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub relay_factor: u8,
    /// List only this agent's keys (with -list or -list-primary).
    #[arg(long)]
    pub local_only: bool,
}

/// What `muster keyring` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringAction {
    /// `-list` (`primary` false) or `-list-primary`.
    List {
        /// Show primary keys instead of all keys.
        primary: bool,
    },
    /// `method` with `{"Key": key}`; `info` is the progress line.
    Write {
        /// POST install, PUT use, DELETE remove.
        method: Method,
        /// The key.
        key: String,
        /// Consul's progress line.
        info: &'static str,
    },
}

/// Consul's `KeyringResponse` (one gossip pool).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(default, rename = "WAN")]
    wan: bool,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    partition: String,
    #[serde(default)]
    messages: Option<BTreeMap<String, String>>,
    #[serde(default)]
    keys: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    primary_keys: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    num_nodes: u64,
}

/// Validate the flags: exactly one action.
pub fn action(args: &KeyringArgs) -> anyhow::Result<KeyringAction> {
    let writes = [
        (
            &args.install,
            Method::POST,
            "Installing new gossip encryption key...",
        ),
        (
            &args.use_key,
            Method::PUT,
            "Changing primary gossip encryption key...",
        ),
        (
            &args.remove,
            Method::DELETE,
            "Removing gossip encryption key...",
        ),
    ];
    let given = writes
        .iter()
        .filter(|(k, _, _)| k.as_deref().is_some_and(|k| !k.is_empty()))
        .count()
        + usize::from(args.list)
        + usize::from(args.list_primary);
    if given > 1 {
        bail!("Only a single action is allowed");
    }
    if given == 0 {
        bail!("Error: one of -list, -list-primary, -install, -use or -remove is required");
    }
    if args.relay_factor > MAX_RELAY_FACTOR {
        bail!("Error parsing relay factor: Relay factor must be in range: [0, {MAX_RELAY_FACTOR}]");
    }
    if args.local_only && !(args.list || args.list_primary) {
        bail!("Error validating local-only: local-only can only be set for list requests");
    }
    if args.list || args.list_primary {
        return Ok(KeyringAction::List {
            primary: args.list_primary,
        });
    }
    writes
        .into_iter()
        .find_map(|(key, method, info)| {
            key.clone()
                .filter(|k| !k.is_empty())
                .map(|key| KeyringAction::Write { method, key, info })
        })
        .ok_or_else(|| anyhow::anyhow!("Error: no keyring action given"))
}

/// The query string for `-relay-factor` and `-local-only`.
fn query(args: &KeyringArgs) -> String {
    let mut params = Vec::new();
    if args.relay_factor > 0 {
        params.push(format!("relay-factor={}", args.relay_factor));
    }
    if args.local_only {
        params.push("local-only=true".to_string());
    }
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

/// Run the keyring command.
pub fn run(args: KeyringArgs) -> anyhow::Result<ExitCode> {
    let action = action(&args)?;
    let path = format!("{KEYRING_PATH}{}", query(&args));
    block_on(async {
        let client = Client::new(&args.http)?;
        match action {
            KeyringAction::List { primary } => {
                say(if primary {
                    "==> Gathering installed primary encryption keys..."
                } else {
                    "==> Gathering installed encryption keys..."
                })?;
                let pools: Vec<KeyringResponse> = get_json(&client, &path, "error").await?;
                for pool in &pools {
                    say(&format_pool(pool, primary))?;
                }
            }
            KeyringAction::Write { method, key, info } => {
                say(&format!("==> {info}"))?;
                let body = serde_json::json!({ "Key": key }).to_string();
                write(&client, method, &path, Bytes::from(body), "error").await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One pool as Consul prints it: a blank line, `WAN:` or `<dc> (LAN):`
/// (with ` [segment]` or ` [partition: p]`), the members' messages, then
/// `  <key> [<held>/<members>]` per key.
fn format_pool(pool: &KeyringResponse, primary: bool) -> String {
    let mut out = String::from("\n");
    out.push_str(&if pool.wan {
        "WAN".to_string()
    } else {
        format!("{} (LAN)", pool.datacenter)
    });
    if !pool.segment.is_empty() {
        out.push_str(&format!(" [{}]", pool.segment));
    } else if !pool.partition.is_empty() && pool.partition != "default" {
        out.push_str(&format!(" [partition: {}]", pool.partition));
    }
    out.push_str(":\n");
    for (from, msg) in pool.messages.iter().flatten() {
        out.push_str(&format!("  ===> {from}: {msg}\n"));
    }
    let keys = if primary {
        &pool.primary_keys
    } else {
        &pool.keys
    };
    for (key, held) in keys.iter().flatten() {
        out.push_str(&format!("  {key} [{held}/{}]\n", pool.num_nodes));
    }
    out.trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> KeyringArgs {
        KeyringArgs {
            http: HttpArgs::default(),
            list: false,
            list_primary: false,
            install: None,
            use_key: None,
            remove: None,
            relay_factor: 0,
            local_only: false,
        }
    }

    #[test]
    fn keyring_flags_need_exactly_one_action() -> anyhow::Result<()> {
        assert!(action(&args()).is_err());
        let mut a = args();
        a.list = true;
        a.install = Some("k".into());
        assert!(action(&a).is_err());
        let mut a = args();
        a.use_key = Some("k".into());
        assert_eq!(
            action(&a)?,
            KeyringAction::Write {
                method: Method::PUT,
                key: "k".into(),
                info: "Changing primary gossip encryption key...",
            }
        );
        a.local_only = true;
        assert!(action(&a).is_err());
        let mut a = args();
        a.list_primary = true;
        a.local_only = true;
        a.relay_factor = 2;
        assert_eq!(action(&a)?, KeyringAction::List { primary: true });
        assert_eq!(query(&a), "?relay-factor=2&local-only=true");
        a.relay_factor = 6;
        assert!(action(&a).is_err());
        Ok(())
    }

    #[test]
    fn keyring_list_format_matches_consul() -> anyhow::Result<()> {
        let pools: Vec<KeyringResponse> = serde_json::from_str(
            r#"[{"WAN":true,"Datacenter":"dc1","Segment":"","Messages":{},
                 "Keys":{"K1=":1,"K2=":2},"PrimaryKeys":{"K1=":2},"NumNodes":2},
                {"WAN":false,"Datacenter":"dc1","Segment":"","Messages":{"n2":"bad key"},
                 "Keys":{"K1=":2},"PrimaryKeys":{"K1=":2},"NumNodes":2}]"#,
        )?;
        assert_eq!(
            format_pool(&pools[0], false),
            "\nWAN:\n  K1= [1/2]\n  K2= [2/2]"
        );
        assert_eq!(
            format_pool(&pools[1], true),
            "\ndc1 (LAN):\n  ===> n2: bad key\n  K1= [2/2]"
        );
        Ok(())
    }
}
