//! `muster lock [options] PREFIX CHILD...`: run a command while holding a
//! distributed mutex (`-n 1`) or a slot of a semaphore (`-n N`), like
//! `consul lock`.
//!
//! An HTTP client of a running agent, as `kv` is: it creates a session
//! (TTL 15 s, renewed every TTL/2), waits with blocking queries until it
//! holds the lock, runs the child, and when the child exits (or on
//! SIGINT/SIGTERM, or if the lock is lost) stops the child, gives the lock
//! up and destroys the session. It exits with the child's status (128 +
//! signal if the child was killed by one); its own failures are one line on
//! stderr and exit status 1. `-monitor-retry N` is how many consecutive
//! failed reads or renewals are ridden out (1 s apart) before the lock
//! counts as lost.
//!
//! This file owns the command, the session and the mutex: acquire
//! `PREFIX/.lock` with the session (retrying while a lock-delay is in
//! effect), release it, delete it if nobody holds it. The child process is
//! [`child`]'s, the semaphore [`semaphore`]'s. Lock semantics (who may acquire, lock-delays, TTL expiry)
//! are the agent's: this module only follows Consul's client protocols
//! (`api.Lock`, `api.Semaphore`), including the flags values that mark
//! their keys, so muster and Consul clients recognise each other's keys.

mod child;
mod semaphore;

use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};

use self::child::{child_command, exit_code, shell, stop};
use super::http::{kv_path, query_value, Client, HttpArgs};

/// Consul's `api.LockFlagValue`: the `Flags` of a key used as a lock.
const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;

/// The key under the prefix that holds the lock.
const LOCK_KEY: &str = ".lock";

/// The session's TTL (Consul's `api.DefaultLockSessionTTL`).
const SESSION_TTL: Duration = Duration::from_secs(15);

/// The `wait` of each blocking read; well under the HTTP client's 60 s
/// request timeout even with the server's jitter (at most wait/16).
const BLOCKING_WAIT: &str = "30s";

/// How long to wait before retrying an acquire refused by a lock-delay
/// (the key is free but the agent still says no).
const LOCK_DELAY_RETRY: Duration = Duration::from_millis(500);

/// Pause between retries of a failed renewal or key read.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// `muster lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// How many holders the lock allows: 1 is a mutex, more a semaphore
    /// (every contender must use the same N).
    #[arg(short = 'n', value_name = "N", default_value_t = 1)]
    pub limit: u32,
    /// How many consecutive failed reads or session renewals (1 s apart)
    /// to ride out before the lock counts as lost and the child is
    /// stopped; 0 gives up at the first failure.
    #[arg(
        long = "monitor-retry",
        value_name = "N",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    pub monitor_retry: i64,
    /// The session's name (default: "muster lock for 'CHILD' at 'PREFIX'").
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Run CHILD with $SHELL -c (default /bin/sh), its words joined by
    /// spaces; -shell=false runs it directly.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub shell: bool,
    /// Give CHILD this command's stdin (by default it gets none).
    #[arg(long)]
    pub pass_stdin: bool,
    /// Longest time to wait for the lock, a Go duration (0 = forever).
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub timeout: String,
    /// The KV prefix; the lock is the key PREFIX/.lock.
    pub prefix: Option<String>,
    /// The command to run while holding the lock.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub child: Vec<String>,
}

/// Consul's `KVPair`, the fields a lock reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    session: Option<String>,
}

impl KvPair {
    /// The session holding the key, if any.
    fn holder(&self) -> Option<&str> {
        self.session.as_deref().filter(|s| !s.is_empty())
    }
}

/// `{"ID": "..."}` from `/v1/session/create`.
#[derive(Debug, Deserialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

/// How the wait for the child ended.
enum Ended {
    /// The child exited by itself.
    Exited(ExitStatus),
    /// SIGINT or SIGTERM arrived; the child was stopped.
    Interrupted(ExitStatus),
    /// The lock was lost (the reason); the child was stopped.
    Lost(String),
}

/// The mutex: an agent, a key and the session that holds (or wants) it.
struct Lock {
    /// The agent.
    client: Client,
    /// `PREFIX/.lock`.
    key: String,
    /// The session ID.
    session: String,
    /// Consecutive failed reads tolerated (`-monitor-retry`).
    retries: u32,
}

/// What `muster lock` holds (or waits for): Consul's mutex for `-n 1`, a
/// slot of Consul's semaphore for more.
enum Holder {
    /// `api.Lock`.
    Mutex(Lock),
    /// `api.Semaphore`.
    Semaphore(semaphore::Semaphore),
}

impl Holder {
    /// `PREFIX/.lock`, for messages.
    fn key(&self) -> &str {
        match self {
            Holder::Mutex(lock) => &lock.key,
            Holder::Semaphore(sem) => sem.key(),
        }
    }

    /// Wait until the lock (or a slot) is held.
    async fn acquire(&self) -> anyhow::Result<()> {
        match self {
            Holder::Mutex(lock) => lock.acquire().await,
            Holder::Semaphore(sem) => sem.acquire().await,
        }
    }

    /// Renew the session until it is gone; returns why.
    async fn keep_renewed(&self) -> String {
        match self {
            Holder::Mutex(lock) => keep_renewed(&lock.client, &lock.session, lock.retries).await,
            Holder::Semaphore(sem) => {
                keep_renewed(sem.client(), sem.session(), sem.retries()).await
            }
        }
    }

    /// Watch the lock until it is no longer held; returns why.
    async fn monitor(&self) -> String {
        match self {
            Holder::Mutex(lock) => lock.monitor().await,
            Holder::Semaphore(sem) => sem.monitor().await,
        }
    }

    /// Give the lock up (see [`Lock::unlock`], [`semaphore::Semaphore::unlock`]).
    async fn unlock(&self, held: bool) -> anyhow::Result<()> {
        match self {
            Holder::Mutex(lock) => lock.unlock(held).await,
            Holder::Semaphore(sem) => sem.unlock(held).await,
        }
    }

    /// Clean up after an acquire cut short (it may still have taken the
    /// lock). Best effort: the error that stopped us is the one to report.
    async fn abandon(&self) {
        match self {
            Holder::Mutex(lock) => {
                // Release (so no lock-delay follows), then drop the session.
                let _ = lock.put_lock("release").await;
                let _ = destroy_session(&lock.client, &lock.session).await;
            }
            Holder::Semaphore(sem) => {
                let _ = sem.unlock(true).await;
            }
        }
    }
}

/// Run `muster lock` on a small single-threaded runtime.
pub fn run(args: LockArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    runtime.block_on(lock(args))
}

async fn lock(args: LockArgs) -> anyhow::Result<ExitCode> {
    let prefix = args.prefix.clone().unwrap_or_default();
    if prefix.is_empty() || args.child.is_empty() {
        bail!("Error! Key prefix and child command must be specified");
    }
    if args.limit == 0 {
        bail!("Error! Lock holder limit must be positive");
    }
    if args.monitor_retry < 0 {
        bail!("Error! Number for 'monitor-retry' must be >= 0");
    }
    let retries = u32::try_from(args.monitor_retry).unwrap_or(u32::MAX);
    let timeout = muster_engine::duration::parse(&args.timeout)
        .map_err(|e| anyhow!("Error! Invalid -timeout {:?}: {e}", args.timeout))?;
    let prefix = prefix.trim_start_matches('/').trim_end_matches('/');
    let key = if prefix.is_empty() {
        LOCK_KEY.to_string()
    } else {
        format!("{prefix}/{LOCK_KEY}")
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("muster lock for '{}' at '{prefix}'", args.child.join(" ")));
    // Install the handlers before anything exists to clean up, so a signal
    // never kills this process with a session or a lock left behind.
    let mut sigint = signal(SignalKind::interrupt()).context("Error: cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("Error: cannot handle SIGTERM")?;

    let client = Client::new(&args.http)?;
    let lock = if args.limit == 1 {
        let session = create_session(&client, &name, "release").await?;
        Holder::Mutex(Lock {
            client,
            key,
            session,
            retries,
        })
    } else {
        // Consul's semaphore sessions delete their contender key when they
        // go, which is what tells the others the slot is free.
        let session = create_session(&client, &name, "delete").await?;
        Holder::Semaphore(semaphore::Semaphore::new(
            client, prefix, session, args.limit, retries,
        ))
    };
    let renew = lock.keep_renewed();
    tokio::pin!(renew);

    // Wait for the lock (bounded by -timeout), or a signal, or the session
    // dying under us.
    let acquire = async {
        if timeout.is_zero() {
            lock.acquire().await
        } else {
            match tokio::time::timeout(timeout, lock.acquire()).await {
                Ok(result) => result,
                Err(_) => Err(anyhow!(
                    "Error! Timed out after {} waiting for the lock on {}",
                    args.timeout,
                    lock.key()
                )),
            }
        }
    };
    let acquired = tokio::select! {
        result = acquire => result,
        reason = &mut renew => Err(anyhow!("Error! Lost the session while waiting for the lock: {reason}")),
        _ = sigint.recv() => Err(anyhow!("Error! Interrupted while waiting for the lock on {}", lock.key())),
        _ = sigterm.recv() => Err(anyhow!("Error! Terminated while waiting for the lock on {}", lock.key())),
    };
    if let Err(err) = acquired {
        lock.abandon().await;
        return Err(err);
    }

    let mut child = match child_command(&args).spawn() {
        Ok(child) => child,
        Err(err) => {
            lock.unlock(true).await?;
            let program = if args.shell {
                shell()
            } else {
                args.child[0].clone()
            };
            bail!("Error! Failed to run {program}: {err}");
        }
    };
    let group = !args.pass_stdin;
    let monitor = lock.monitor();
    let ended = tokio::select! {
        status = child.wait() => status
            .map(Ended::Exited)
            .context("Error! Failed to wait for the child"),
        _ = sigint.recv() => stop(&mut child, group).await.map(Ended::Interrupted),
        _ = sigterm.recv() => stop(&mut child, group).await.map(Ended::Interrupted),
        reason = &mut renew => stop(&mut child, group).await.map(|_| Ended::Lost(reason)),
        reason = monitor => stop(&mut child, group).await.map(|_| Ended::Lost(reason)),
    };
    match ended {
        Ok(Ended::Exited(status) | Ended::Interrupted(status)) => {
            lock.unlock(true).await?;
            Ok(exit_code(status))
        }
        Ok(Ended::Lost(reason)) => {
            lock.unlock(false).await?;
            bail!("Error! Lock lost ({reason}): the child was stopped")
        }
        Err(err) => {
            // Still give the lock up; the child is killed when dropped.
            let _ = lock.unlock(true).await;
            Err(err)
        }
    }
}

/// `PUT /v1/session/create` with a TTL and `behavior` (`release` for the
/// mutex, `delete` for the semaphore, as Consul's clients create them).
async fn create_session(client: &Client, name: &str, behavior: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "Name": name,
        "TTL": format!("{}s", SESSION_TTL.as_secs()),
        "Behavior": behavior,
    });
    let reply = client
        .request(
            Method::PUT,
            "/v1/session/create",
            Bytes::from(body.to_string()),
        )
        .await?;
    if reply.status != StatusCode::OK {
        bail!("Error! Failed to create session: {}", reply.unexpected());
    }
    let created: Created = serde_json::from_slice(&reply.body)
        .map_err(|e| anyhow!("Error! The agent sent an unreadable session: {e}"))?;
    Ok(created.id)
}

/// Renew `session` every TTL/2 until it is gone (or more than `retries`
/// renewals in a row failed); returns why. Never returns while the session
/// lives.
async fn keep_renewed(client: &Client, session: &str, retries: u32) -> String {
    let path = format!("/v1/session/renew/{}", query_value(session));
    let mut failures = 0;
    loop {
        let pause = if failures == 0 {
            SESSION_TTL / 2
        } else {
            RETRY_PAUSE
        };
        tokio::time::sleep(pause).await;
        match client.request(Method::PUT, &path, Bytes::new()).await {
            Ok(reply) if reply.status == StatusCode::OK => failures = 0,
            Ok(reply) if reply.status == StatusCode::NOT_FOUND => {
                return format!("session {session} expired or was destroyed")
            }
            Ok(reply) => {
                failures += 1;
                if failures > retries {
                    return format!("renewing the session failed: {}", reply.unexpected());
                }
            }
            Err(err) => {
                failures += 1;
                if failures > retries {
                    return format!("renewing the session failed: {err:#}");
                }
            }
        }
    }
}

/// `PUT /v1/session/destroy/<id>`.
async fn destroy_session(client: &Client, session: &str) -> anyhow::Result<()> {
    let path = format!("/v1/session/destroy/{}", query_value(session));
    let reply = client.request(Method::PUT, &path, Bytes::new()).await?;
    if reply.status != StatusCode::OK {
        bail!(
            "Error! Failed to destroy session {session}: {}",
            reply.unexpected()
        );
    }
    Ok(())
}

impl Lock {
    /// `GET` the lock key, blocking until its index passes `index` (if
    /// given). A found key's index is its `ModifyIndex`; a missing key ends
    /// the wait as soon as the table moves past `index`.
    async fn read(&self, index: Option<u64>) -> anyhow::Result<Option<KvPair>> {
        let mut path = kv_path(&self.key);
        if let Some(index) = index {
            path.push_str(&format!("?index={index}&wait={BLOCKING_WAIT}"));
        }
        let reply = self
            .client
            .request(Method::GET, &path, Bytes::new())
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let mut pairs: Vec<KvPair> = serde_json::from_slice(&reply.body)
                    .map_err(|e| anyhow!("Error! The agent sent an unreadable KV list: {e}"))?;
                Ok(pairs.pop())
            }
            _ => bail!("Error! Failed to read {}: {}", self.key, reply.unexpected()),
        }
    }

    /// `PUT key?acquire=` or `?release=` with the lock flags; the agent's
    /// `true` / `false`.
    async fn put_lock(&self, op: &str) -> anyhow::Result<bool> {
        let path = format!(
            "{}?flags={LOCK_FLAG_VALUE}&{op}={}",
            kv_path(&self.key),
            query_value(&self.session)
        );
        let reply = self
            .client
            .request(Method::PUT, &path, Bytes::new())
            .await?;
        if reply.status != StatusCode::OK {
            bail!("Error! Failed to {op} {}: {}", self.key, reply.unexpected());
        }
        Ok(reply.body.trim_ascii() == b"true")
    }

    /// Wait until this session holds the key: block on the key while
    /// another session holds it, retry shortly while a lock-delay refuses
    /// a free key.
    async fn acquire(&self) -> anyhow::Result<()> {
        let mut index = None;
        loop {
            match self.read(index).await? {
                Some(pair) if pair.flags != LOCK_FLAG_VALUE => bail!(
                    "Error! Existing key {} does not match lock use (flags {})",
                    self.key,
                    pair.flags
                ),
                Some(pair) if pair.holder() == Some(self.session.as_str()) => return Ok(()),
                Some(pair) if pair.holder().is_some() => {
                    index = Some(pair.modify_index);
                    continue;
                }
                _ => {}
            }
            if self.put_lock("acquire").await? {
                return Ok(());
            }
            // Refused: either someone took it first (wait on the key) or a
            // lock-delay is in effect (the key is free: retry after a pause).
            match self.read(None).await? {
                Some(pair) if pair.holder().is_some() => index = Some(pair.modify_index),
                _ => {
                    tokio::time::sleep(LOCK_DELAY_RETRY).await;
                    index = None;
                }
            }
        }
    }

    /// Watch the key with blocking reads until this session no longer
    /// holds it (or reads keep failing); returns why.
    async fn monitor(&self) -> String {
        let mut index = None;
        let mut failures = 0;
        loop {
            match self.read(index).await {
                Ok(Some(pair)) if pair.holder() == Some(self.session.as_str()) => {
                    failures = 0;
                    index = Some(pair.modify_index);
                }
                Ok(Some(_)) => return format!("{} is no longer held by this session", self.key),
                Ok(None) => return format!("{} was deleted", self.key),
                Err(err) => {
                    failures += 1;
                    if failures > self.retries {
                        return format!("watching {} failed: {err:#}", self.key);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Give the lock up: release it (if `held`), delete the key if nobody
    /// holds it (as Consul's `Lock.Destroy` does), destroy the session.
    /// Every step is tried; the first failure is returned.
    async fn unlock(&self, held: bool) -> anyhow::Result<()> {
        let released = if held {
            match self.put_lock("release").await {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow!(
                    "Error! Lock release failed: {} was not held by this session",
                    self.key
                )),
                Err(err) => Err(err),
            }
        } else {
            Ok(())
        };
        let cleaned = self.delete_if_free().await;
        let destroyed = destroy_session(&self.client, &self.session).await;
        released.and(cleaned).and(destroyed)
    }

    /// Delete the lock key with CAS if it is a free lock key (another
    /// contender may have taken it meanwhile: then it stays).
    async fn delete_if_free(&self) -> anyhow::Result<()> {
        let Some(pair) = self.read(None).await? else {
            return Ok(());
        };
        if pair.holder().is_some() || pair.flags != LOCK_FLAG_VALUE {
            return Ok(());
        }
        delete_unchanged(&self.client, &self.key, pair.modify_index).await
    }
}

/// Delete `key` if it still is at `modify_index` (a CAS delete): the
/// last holder's clean-up of a lock or semaphore key.
pub(crate) async fn delete_unchanged(
    client: &Client,
    key: &str,
    modify_index: u64,
) -> anyhow::Result<()> {
    let path = format!("{}?cas={modify_index}", kv_path(key));
    let reply = client.request(Method::DELETE, &path, Bytes::new()).await?;
    if reply.status != StatusCode::OK {
        bail!("Error! Failed to clean up {key}: {}", reply.unexpected());
    }
    Ok(())
}
