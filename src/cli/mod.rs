//! The command line: the clap definitions of every command, the Go-style
//! flag rewrite, and dispatch to one module per command group.
//!
//! Raw arguments are parsed here; each command validates its own flags into
//! what it runs with (`agent` builds a `Config`). Nothing here talks to the
//! network or the disk.

pub mod acl;
pub mod agent;
pub mod catalog;
pub mod debug;
pub mod event;
pub mod http;
pub mod info;
pub mod join;
pub mod keygen;
pub mod keyring;
pub mod kv;
pub mod lock;
pub mod log;
pub mod logging;
pub mod maint;
pub mod members;
pub mod monitor;
pub mod operator;
pub mod reload;
pub mod services;
pub mod snapshot;
mod table;
pub mod tls;
pub mod validate;
pub mod version;
pub mod watch;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// muster: a service registry and coordination server that speaks Consul's
/// HTTP API.
#[derive(Debug, Parser)]
#[command(name = "muster", about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent: a server (-server) or a client agent.
    Agent(Box<agent::AgentArgs>),
    /// Read the catalog (datacenters, nodes, services) of a running agent.
    Catalog(catalog::CatalogArgs),
    /// Read and write the key/value store of a running agent.
    Kv(kv::KvArgs),
    /// Run a command while holding a lock on a KV prefix.
    ///
    /// Creates a session, waits until it can acquire PREFIX/.lock, runs
    /// CHILD, and releases the lock and destroys the session when CHILD
    /// exits (SIGINT or SIGTERM stop CHILD first). Exits with CHILD's
    /// status. Flags go before PREFIX; everything after PREFIX is the
    /// command.
    Lock(lock::LockArgs),
    /// Register or deregister services on a running agent.
    Services(services::ServicesArgs),
    /// Put the node or a service into maintenance mode, or list maintenance.
    Maint(maint::MaintArgs),
    /// Make a running agent re-read its config files.
    Reload(reload::ReloadArgs),
    /// Check config files or directories without starting an agent.
    Validate(validate::ValidateArgs),
    /// Print muster's version and protocol.
    Version,
    /// Print a new gossip encryption key (base64 of 32 random bytes).
    Keygen,
    /// List the members of the gossip pool.
    ///
    /// Columns: Node, Address, Status, Type, Build, Protocol, DC,
    /// Partition, Segment (-detailed: Node, Address, Status, Tags). Exits 2
    /// when no member matches -status.
    Members(members::MembersArgs),
    /// Stream a running agent's logs at a level of your choosing (-log-level,
    /// -log-json) until interrupted.
    Monitor(monitor::MonitorArgs),
    /// Capture a support bundle from a running agent: its configuration,
    /// members, metrics every -interval for -duration, and its debug log,
    /// in one tar.gz.
    Debug(debug::DebugArgs),
    /// Fire a user event to the datacenter's agents (filtered by node,
    /// service and tag regular expressions); prints `Event ID: <id>`.
    Event(event::EventArgs),
    /// Make the agent join a cluster through the given addresses.
    Join(join::JoinArgs),
    /// Make the agent leave the cluster gracefully and shut down.
    Leave(join::LeaveArgs),
    /// Force a failed member out of the cluster (into the "left" state).
    ForceLeave(join::ForceLeaveArgs),
    /// Cluster operator tools (raft peers).
    Operator(operator::OperatorArgs),
    /// Manage the gossip encryption keyring: -list, -list-primary,
    /// -install, -use or -remove.
    Keyring(keyring::KeyringArgs),
    /// Print the agent's stats (agent, build, consul, raft, serf_lan, ...).
    Info(info::InfoArgs),
    /// Save, restore and inspect snapshots of the whole state.
    Snapshot(snapshot::SnapshotArgs),
    /// Look into a stopped server's log (inspect, dump, verify, replay) or
    /// follow a running one's changes (tail).
    Log(log::LogArgs),
    /// Bootstrap ACLs and manage tokens, policies and roles.
    Acl(acl::AclArgs),
    /// Watch a view (key, keyprefix, services, nodes, service, checks,
    /// event): print it, or run a handler on every change.
    Watch(watch::WatchArgs),
    /// Create the agents' CA and certificates (`tls ca create`, `tls cert
    /// create -server|-client|-cli`).
    Tls(tls::TlsArgs),
}

/// Run the parsed command. `Err` is reported by `main` as one line on
/// stderr with exit status 1.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => agent::run(*args),
        Command::Catalog(args) => catalog::run(args),
        Command::Kv(args) => kv::run(args),
        Command::Lock(args) => lock::run(args),
        Command::Services(args) => services::run(args),
        Command::Maint(args) => maint::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Version => version::run(),
        Command::Keygen => keygen::run(),
        Command::Members(args) => members::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::Debug(args) => debug::run(args),
        Command::Event(args) => event::run(args),
        Command::Join(args) => join::run_join(args),
        Command::Leave(args) => join::run_leave(args),
        Command::ForceLeave(args) => join::run_force_leave(args),
        Command::Operator(args) => operator::run(args),
        Command::Keyring(args) => keyring::run(args),
        Command::Info(args) => info::run(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Log(args) => log::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Acl(args) => acl::run(args),
        Command::Tls(args) => tls::run(args),
    }
}

/// Flags of `muster lock` whose value may be the next argument (`-name x`).
const LOCK_VALUE_FLAGS: &[&str] = &[
    "name",
    "timeout",
    "http-addr",
    "n",
    "monitor-retry",
    "ca-file",
    "ca-path",
    "client-cert",
    "client-key",
    "tls-server-name",
    "token",
    "token-file",
];

/// Rewrite Go-style flags for clap: `-name` and `-name=value` (one dash, a
/// name of two or more characters starting with a letter) become `--name`
/// and `--name=value`. Single-character short flags (`-h`), `--flags`, a lone
/// `-` (stdin) and everything after a literal `--` are left alone; the first
/// element (the program name) is never touched.
///
/// `muster lock`'s flags end at its first positional argument (the prefix),
/// as with Go's flag package: a `--` is inserted before it, so the child
/// command's own flags (`ls -la`) are passed through untouched.
pub fn rewrite_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    let mut lock = false;
    let mut lock_value_next = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        // Consul's `-v` / `-version` at the top: the version command.
        if i == 1 && (arg == "-v" || arg == "-version" || arg == "--version") {
            out.push(OsString::from("version"));
            continue;
        }
        if i == 1 && arg == "lock" {
            lock = true;
            out.push(arg);
            continue;
        }
        if lock {
            if lock_value_next {
                lock_value_next = false;
                out.push(arg);
                continue;
            }
            match arg.to_str() {
                Some(s) if s.len() > 1 && s.starts_with('-') => {
                    let name = s.trim_start_matches('-');
                    lock_value_next = LOCK_VALUE_FLAGS.contains(&name);
                }
                _ => {
                    passthrough = true;
                    out.push(OsString::from("--"));
                    out.push(arg);
                    continue;
                }
            }
        }
        match arg.to_str() {
            Some(s) if is_go_long_flag(s) => out.push(OsString::from(format!("-{s}"))),
            _ => out.push(arg),
        }
    }
    out
}

/// True for `-name` / `-name=value` where `name` is a Go-style long flag.
fn is_go_long_flag(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix('-') else {
        return false;
    };
    let name = rest.split('=').next().unwrap_or_default();
    name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        rewrite_go_flags(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().expect("test args are UTF-8"))
            .collect()
    }

    #[test]
    fn go_style_long_flags_become_double_dash() {
        assert_eq!(
            rewrite(&["muster", "agent", "-dev", "-http-port=0", "-node", "n1"]),
            ["muster", "agent", "--dev", "--http-port=0", "--node", "n1"]
        );
    }

    #[test]
    fn short_flags_double_dash_stdin_and_passthrough_are_kept() {
        assert_eq!(
            rewrite(&["muster", "-h", "--help", "kv", "put", "k", "-", "--", "-value"]),
            ["muster", "-h", "--help", "kv", "put", "k", "-", "--", "-value"]
        );
    }

    #[test]
    fn lock_flags_end_at_the_prefix() {
        assert_eq!(
            rewrite(&[
                "muster",
                "lock",
                "-name",
                "x",
                "-n=1",
                "-shell=false",
                "p",
                "ls",
                "-la"
            ]),
            [
                "muster",
                "lock",
                "--name",
                "x",
                "-n=1",
                "--shell=false",
                "--",
                "p",
                "ls",
                "-la"
            ]
        );
        assert_eq!(
            rewrite(&[
                "muster",
                "lock",
                "-n",
                "1",
                "-http-addr=a:1",
                "p",
                "sh",
                "-c",
                "-x"
            ]),
            [
                "muster",
                "lock",
                "-n",
                "1",
                "--http-addr=a:1",
                "--",
                "p",
                "sh",
                "-c",
                "-x"
            ]
        );
        assert_eq!(
            rewrite(&["muster", "lock", "-help"]),
            ["muster", "lock", "--help"]
        );
    }

    #[test]
    fn version_flags_run_the_version_command() {
        for flag in ["-v", "-version", "--version"] {
            assert_eq!(rewrite(&["muster", flag]), ["muster", "version"]);
        }
        assert_eq!(
            rewrite(&["muster", "kv", "-v"]),
            ["muster", "kv", "-v"],
            "only at the top"
        );
    }

    #[test]
    fn negative_numbers_are_not_flags() {
        assert_eq!(rewrite(&["muster", "-10", "-x"]), ["muster", "-10", "-x"]);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
