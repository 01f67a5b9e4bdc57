//! muster's integration tests: one test binary (`[[test]] integration`) that
//! spawns the real `muster` binary on loopback, one process per agent, with a
//! fresh temporary directory and no fixed ports.
//!
//! # Layout
//! - `harness.rs`: `Agent` (spawn, readiness line, SIGKILL, restart, log dump
//!   on failure) and a tiny HTTP/1.1 client.
//! - `agent.rs`: the agent's lifecycle: readiness line, signals, node ID,
//!   `/v1/status/*`.
//! - `kv.rs`: `/v1/kv/*` semantics (values, flags, cas, listings, limits,
//!   headers).
//! - `blocking.rs`: `?index=&wait=` blocking reads and index monotonicity
//!   across restarts.
//! - `durability.rs`: acknowledged writes survive `kill -9`.
//! - `cli.rs`: the client commands and flag handling of the binary.
//! - `catalog.rs`: `/v1/catalog/*` (register, deregister, reads, indexes,
//!   restart).
//! - `catalog_cli.rs`: the `muster catalog` commands.
//! - `health.rs`: `/v1/health/*`, aggregate status, and blocking on
//!   `/v1/health/service/:s?passing`.
//! - `agent_checks.rs`: the check runners against real targets (HTTP, TCP,
//!   script, TTL) and their results in `/v1/agent/checks` and the catalog.
//! - `agent_api.rs`: `/v1/agent/*` (maintenance, anti-entropy, services,
//!   local health, members), config dirs, reload and restart.
//! - `config.rs`: config files through `muster validate` (every seed
//!   example), and the `services`, `maint` and `reload` commands.
//! - `session.rs`: sessions and KV locks (contention, lock-delay, TTL,
//!   `Behavior`, linked checks, `session_ttl_min`, kill -9).
//! - `lock.rs`: locks from a client's side: blocking reads of a lock key,
//!   leader election with a dying holder, `kv put -acquire|-release`,
//!   `muster lock`.
//! - `semaphore.rs`: `muster lock -n N` (Consul's semaphore): two of three
//!   contenders hold it at any moment, a killed holder's slot passes on
//!   when its session goes, limit and lock-kind conflicts, `-monitor-retry`.
//! - `txn.rs`: `/v1/txn` results, rollback and lock verbs.
//! - `snapshot.rs`: snapshot save, restore (into a fresh cluster, into a
//!   running server with blocking readers), damaged archives, inspect,
//!   `agent -restore`.
//! - `events.rs`: user events (`/v1/event/*`, `muster event`) across a
//!   server and two client agents: spread within 2 s, blocking lists,
//!   node/service/tag filters, Consul's errors.
//! - `feed.rs`: the change feed (`/v1/event-stream`, `muster log tail`):
//!   1,000 mixed writes in order, reconnecting, 410 after a restart.
//! - `autopilot.rs`: `/v1/operator/autopilot/*` and `muster operator
//!   autopilot` on three servers: defaults, set-config and CAS, the stored
//!   configuration surviving kill -9 of the leader and switching dead-server
//!   cleanup off and on, health and state before and after a follower dies.
//! - `federation.rs`: three servers in dc1 and one in dc2 over WAN gossip:
//!   flood join, rejoin after kill -9, DNS names of the other datacenter
//!   (cached, following changes), unknown datacenters.
//! - `prepared.rs`: prepared queries: CRUD through the log, Consul's
//!   errors, execute filters, templates, explain, DNS `.query.`, and
//!   failover to another datacenter and back.
//! - `limits.rs`: `limits.http_max_conns_per_client` (a client past its
//!   connection limit is closed at once; slots come back).
//! - `resource_checks.rs`: memory, CPU, disk and inode checks crossing
//!   their thresholds both ways (a meminfo file the test rewrites, a tmpfs
//!   it mounts as root), config-file and HTTP definitions, their errors.
//! - `log_files.rs`: `-log-file` with `-log-json`, rotation by size and
//!   `-log-rotate-max-files`.
//! - `log_tools.rs`: `muster log inspect|dump|verify|replay` on a stopped
//!   server: refusal while it runs, a flipped byte, a changed view row,
//!   answers as of an index.
//! - `metrics.rs`: `/v1/agent/metrics` in Prometheus text (parsed by
//!   prometheus-parse) and Consul's JSON, moving with traffic; prefix
//!   filters; 415 without a retention time.
//! - `monitor.rs`: `muster monitor` streams lines logged after it connected,
//!   at its own level, as text or JSON.
//! - `acl.rs`: ACLs under default deny: bootstrap once, Consul's denials,
//!   a key_prefix read token (filtered listings, not woken by hidden
//!   writes), snapshots for management only, DNS refused, restart, config
//!   mistakes refused.
//! - `acl_client.rs`: ACLs on client agents: their own endpoints checked
//!   with the servers' rules, forwarded requests, anti-entropy with the
//!   agent token, down_policy extend-cache while no server answers.
//! - `acl_python.rs`: python-consul with tokens (KV, catalog, sessions,
//!   blocking) under default deny.
//! - `acl_rules.rs`: the rules endpoint by endpoint: catalog writes, node
//!   and health reads filtered, the agent's services and checks, operator
//!   and keyring, prepared queries, transactions, a blocking read not
//!   woken by hidden changes, a token travelling with `?dc=`.
//! - `debug_bundle.rs`: `muster debug` writes a tar.gz of the agent's
//!   configuration, members, metrics samples and capture-time log.
//! - `day_one.rs`: a Consul user's first day: wire details (header case,
//!   compact JSON, `/v1/agent/self`), listener addresses, flag errors, and
//!   config mistakes refused with the fix.
//! - `day_one_logs.rs`: what the agent logs, in Consul's words (sync, check
//!   status, joins and leaves, leadership, reload).
//! - `day_one_start.rs`: starting and stopping: joins that fail, wrong keys,
//!   name clashes, a busy data directory, signals at any moment, pid file
//!   and systemd readiness.
//! - `readme.rs`: the README's walk-through, run as written.
//! - `ui.rs`: the web UI: how it is served, and every page in a headless
//!   Chromium (`browser.rs`: the WebDriver harness).
//! - `ui_acl.rs`: the web UI under default-deny ACLs, before and after a
//!   token is set on its Settings page.
//! - `netns.rs`, `process.rs`: network namespaces, and agents run without
//!   the harness (ones that must exit, or are signalled before ready).
//! - `watch.rs`: `muster watch` (a handler run once per change, in order,
//!   for keys, services with `-passingonly`, events; printing without a
//!   handler; exit statuses) and the agent's `watches` key (script and
//!   HTTP handlers inside the agent, refused mistakes).
//! - `tls/`: `muster tls ca|cert create` (Consul's files, names and
//!   usages), HTTPS with `verify_incoming`, the CLI over HTTPS (flags and
//!   `CONSUL_*` variables), certificates re-read on reload, HTTPS alone,
//!   TLS config mistakes refused naming the key, and TLS on the server RPC
//!   port keeping out servers another CA signed.
//! - `dns.rs`: the DNS interface over UDP and TCP (service, tag, RFC 2782
//!   and node names, NXDOMAIN/NODATA, checks, UDP limits, recursors,
//!   malformed packets).

mod acl;
mod acl_client;
mod acl_python;
mod acl_rules;
mod agent;
mod agent_api;
mod agent_checks;
mod autopilot;
mod blocking;
mod browser;
mod catalog;
mod catalog_cli;
mod cli;
mod cluster;
mod config;
mod day_one;
mod day_one_logs;
mod day_one_start;
mod debug_bundle;
mod dns;
mod durability;
mod events;
mod federation;
mod feed;
mod harness;
mod health;
mod kv;
mod limits;
mod lock;
mod log_files;
mod log_tools;
mod metrics;
mod monitor;
mod netns;
mod partition;
mod prepared;
mod process;
mod readme;
mod resource_checks;
mod semaphore;
mod session;
mod snapshot;
mod tls;
mod txn;
mod ui;
mod ui_acl;
mod watch;
