//! Command-line flags of `muster-bench` (raw, from clap) and their checks.
//!
//! This module only parses and validates; it starts nothing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// One kind of load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// KV writes of random keys in the keyspace (muster and etcd).
    Put,
    /// KV reads of random keys of a pre-populated keyspace (muster and etcd).
    Get,
    /// UDP DNS A queries for `<svc>.service.consul` (muster only).
    Dns,
    /// Blocking-query watchers woken by writes (muster only).
    Watch,
    /// A large state (instances and keys), its memory, and a kill -9
    /// restart of it (muster only; not in the default set).
    Scale,
    /// W blocking watchers of one service with I instances, woken by one
    /// check flip (muster only; not in the default set).
    HealthFanout,
    /// The scale state saved with `muster snapshot save` and restored into
    /// a fresh server: times and peak memory (muster only; not in the
    /// default set).
    Snapshot,
    /// N keys written once (64 clients) into a server that never purges
    /// its log, then the offline log tools timed on it: inspect, verify,
    /// verify -views, replay to the middle (muster only; not in the
    /// default set).
    Log,
}

impl Workload {
    /// The name used in flags and tables.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Dns => "dns",
            Workload::Watch => "watch",
            Workload::Scale => "scale",
            Workload::HealthFanout => "health-fanout",
            Workload::Snapshot => "snapshot",
            Workload::Log => "log",
        }
    }
}

/// How the get workload asks each server to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetMode {
    /// Each server's default: muster's default mode (the leader answers
    /// from its own state), etcd's default (linearizable) range.
    Default,
    /// Linearizable on both: muster `?consistent`, etcd's default range.
    Consistent,
    /// Local state without a leader check on both: muster `?stale`, etcd
    /// `serializable: true`.
    Stale,
}

impl GetMode {
    /// The name used in flags and tables.
    pub fn name(self) -> &'static str {
        match self {
            GetMode::Default => "default",
            GetMode::Consistent => "consistent",
            GetMode::Stale => "stale",
        }
    }
}

/// End-to-end load harness: starts a durable one-node muster server and an
/// etcd server on loopback and drives both with the same HTTP/1.1 load
/// generator; also measures muster's DNS and blocking-query watchers.
#[derive(Debug, Parser)]
#[command(name = "muster-bench", version)]
pub struct Args {
    /// The muster binary (default: $CARGO_TARGET_DIR/release/muster, else
    /// target/release/muster of this workspace).
    #[arg(long, value_name = "PATH")]
    pub muster: Option<PathBuf>,

    /// The etcd binary (default: `etcd` on PATH).
    #[arg(long, value_name = "PATH")]
    pub etcd: Option<PathBuf>,

    /// Do not install etcd (Debian's etcd-server) when it is missing.
    #[arg(long)]
    pub no_install: bool,

    /// Skip the etcd comparison.
    #[arg(long)]
    pub no_etcd: bool,

    /// Workloads to run, comma-separated.
    #[arg(
        long = "workload",
        value_delimiter = ',',
        default_value = "put,get,dns,watch"
    )]
    pub workloads: Vec<Workload>,

    /// Concurrent clients per run (one connection or UDP socket each),
    /// comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,

    /// Length of each run: seconds, or a number with `s` or `ms`.
    #[arg(long, value_parser = parse_duration, default_value = "10")]
    pub duration: Duration,

    /// Read mode of the get workload.
    #[arg(long, value_enum, default_value = "default")]
    pub get_mode: GetMode,

    /// Number of distinct keys the KV workloads spread over.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,

    /// Size of each KV value in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,

    /// Services registered for the DNS workload.
    #[arg(long, default_value_t = 100)]
    pub services: usize,

    /// Blocking-query watchers (one connection each).
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,

    /// Writes of the one key watched by all watchers.
    #[arg(long, default_value_t = 5)]
    pub fanout_rounds: usize,

    /// Service instances the scale workload registers (100 per node).
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,

    /// KV keys the scale workload writes (values of --value-size bytes).
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_keys: usize,

    /// Instances of `web` in the health fan-out workload.
    #[arg(long, default_value_t = 1_000)]
    pub fanout_instances: usize,

    /// Check flips measured by the health fan-out workload.
    #[arg(long, default_value_t = 5)]
    pub fanout_flips: usize,

    /// Health fan-out watchers do not send `Accept-Encoding: gzip` (Go's
    /// HTTP client, which Prometheus, Traefik and consul-template use,
    /// sends it).
    #[arg(long)]
    pub no_gzip: bool,

    /// Print one JSON document on stdout instead of the text tables.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Check the values clap cannot: lists not empty, counts not zero.
    /// Sorts and deduplicates the workload and client lists.
    pub fn validate(mut self) -> Result<Args, String> {
        self.workloads.sort();
        self.workloads.dedup();
        self.clients.sort_unstable();
        self.clients.dedup();
        if self.workloads.is_empty() {
            return Err("--workload: give at least one of put,get,dns,watch".into());
        }
        if self.clients.is_empty() || self.clients.contains(&0) {
            return Err("--clients: give one or more counts above 0".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be above 0".into());
        }
        if self.keys == 0 || self.services == 0 || self.watchers == 0 {
            return Err("--keys, --services and --watchers must be above 0".into());
        }
        if self.watchers > 10_000 {
            return Err("--watchers: at most 10000 (two sockets each, one per side)".into());
        }
        Ok(self)
    }

    /// Whether `w` was asked for.
    pub fn wants(&self, w: Workload) -> bool {
        self.workloads.contains(&w)
    }
}

/// `10` (seconds), `2.5s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use 10, 2.5s or 500ms)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        let mut full = vec!["muster-bench"];
        full.extend_from_slice(args);
        Args::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn defaults() -> Result<(), String> {
        let a = parse(&[])?;
        assert_eq!(
            a.workloads,
            [Workload::Put, Workload::Get, Workload::Dns, Workload::Watch]
        );
        assert_eq!(a.clients, [1, 16, 64]);
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!((a.keys, a.value_size, a.watchers), (10_000, 100, 1_000));
        assert!(!a.json && !a.no_install && !a.no_etcd);
        assert_eq!(a.get_mode, GetMode::Default);
        assert_eq!(a.muster, None);
        assert_eq!((a.instances, a.scale_keys), (100_000, 1_000_000));
        assert!(!a.wants(Workload::Scale));
        Ok(())
    }

    #[test]
    fn lists_are_comma_separated_sorted_and_deduplicated() -> Result<(), String> {
        let a = parse(&["--workload", "watch,get,get", "--clients", "64,4,4"])?;
        assert_eq!(a.workloads, [Workload::Get, Workload::Watch]);
        assert_eq!(a.clients, [4, 64]);
        assert!(a.wants(Workload::Get) && !a.wants(Workload::Put));
        Ok(())
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--workload", "scan"]).is_err());
        assert!(parse(&["--clients", "0"]).is_err());
        assert!(parse(&["--clients", "a"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--duration", "-1"]).is_err());
        assert!(parse(&["--watchers", "0"]).is_err());
        assert!(parse(&["--watchers", "20000"]).is_err());
        assert!(parse(&["--get-mode", "linear"]).is_err());
        assert!(parse(&["--instances", "-1"]).is_err());
    }

    #[test]
    fn durations() -> Result<(), String> {
        assert_eq!(parse_duration("5")?, Duration::from_secs(5));
        assert_eq!(parse_duration("2.5s")?, Duration::from_millis(2_500));
        assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
        assert!(parse_duration("5m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("inf").is_err());
        Ok(())
    }

    #[test]
    fn paths_and_switches() -> Result<(), String> {
        let a = parse(&[
            "--muster",
            "/x/muster",
            "--no-install",
            "--json",
            "--duration",
            "5",
        ])?;
        assert_eq!(a.muster, Some(PathBuf::from("/x/muster")));
        assert!(a.no_install && a.json);
        assert_eq!(a.duration, Duration::from_secs(5));
        Ok(())
    }
}
