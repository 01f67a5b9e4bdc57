//! `muster lock -n N` with N > 1: a slot of a distributed semaphore, by
//! Consul's client protocol (`api.Semaphore`), so muster and Consul
//! semaphore clients share a prefix.
//!
//! Each contender holds its own key, `PREFIX/<session>`, acquired with its
//! session (created with `Behavior: delete`, so the key goes when the
//! session does). The slots are the key `PREFIX/.lock`, flagged with
//! Consul's semaphore flag value, whose value is the JSON
//! `{"Limit":N,"Holders":{"<session>":true,...}}`; it is only ever changed
//! with CAS. To take a slot a contender reads the prefix, drops the holders
//! whose session no longer holds any key under it, and, if fewer than
//! `Limit` remain, CAS-writes itself in; otherwise it blocks on the
//! prefix's index. Every contender must agree on `Limit`.
//!
//! This module owns those keys only: the session, its renewal and the child
//! are the caller's ([`super`]), and whether a session is alive is the
//! agent's word (the contender keys it keeps or deletes).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{destroy_session, BLOCKING_WAIT, LOCK_KEY, RETRY_PAUSE};
use crate::cli::http::{kv_path, query_value, Client};

/// Consul's `api.SemaphoreFlagValue`: the `Flags` of a semaphore's keys.
const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f6_9a2b_aa41_4de0;

/// Upper bound for one prefix read: the blocking wait plus the server's
/// jitter (at most wait/16) and room to spare.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The value of `PREFIX/.lock`: Consul's `semaphoreLock`, as Go's
/// `encoding/json` writes it (map keys sorted, no spaces).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Slots {
    /// How many holders the semaphore allows; every contender must agree.
    #[serde(rename = "Limit", alias = "limit", default)]
    limit: i64,
    /// The holders' sessions (a set: the value is always `true`).
    #[serde(
        rename = "Holders",
        alias = "holders",
        default,
        deserialize_with = "null_as_empty"
    )]
    holders: BTreeMap<String, bool>,
}

/// Go writes a nil map as `null`; read it as an empty set.
fn null_as_empty<'de, D>(de: D) -> Result<BTreeMap<String, bool>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, bool>>::deserialize(de)?.unwrap_or_default())
}

/// Consul's `KVPair`, the fields a semaphore reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    /// The key.
    key: String,
    /// Its flags.
    #[serde(default)]
    flags: u64,
    /// The session holding it, if any.
    #[serde(default)]
    session: Option<String>,
    /// Its `ModifyIndex`, for CAS.
    #[serde(default)]
    modify_index: u64,
    /// Its value, base64 (`null` when empty).
    #[serde(default)]
    value: Option<String>,
}

/// One read of the prefix: its pairs and the `X-Consul-Index` to block on.
struct Listing {
    /// Every key under the prefix.
    pairs: Vec<Pair>,
    /// The prefix's index.
    index: u64,
}

/// `PREFIX/.lock` as read: its slots, and what a CAS write needs.
struct LockEntry {
    /// The decoded slots (`Limit` = ours and no holders if the key is
    /// missing or empty, as Consul's `decodeLock`).
    slots: Slots,
    /// The key's flags (the semaphore's if the key is missing).
    flags: u64,
    /// Its `ModifyIndex`; 0 if missing, so a CAS creates it.
    modify_index: u64,
}

impl Listing {
    /// `key`'s entry, decoded; `limit` fills in a missing or empty one.
    fn lock(&self, key: &str, limit: u32) -> anyhow::Result<LockEntry> {
        let Some(pair) = self.pairs.iter().find(|p| p.key == key) else {
            return Ok(LockEntry {
                slots: Slots {
                    limit: i64::from(limit),
                    holders: BTreeMap::new(),
                },
                flags: SEMAPHORE_FLAG_VALUE,
                modify_index: 0,
            });
        };
        let value = match pair.value.as_deref().filter(|v| !v.is_empty()) {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| anyhow!("Error! The agent sent an unreadable value of {key}: {e}"))?,
            None => Vec::new(),
        };
        let slots = if value.is_empty() {
            Slots {
                limit: i64::from(limit),
                holders: BTreeMap::new(),
            }
        } else if pair.flags != SEMAPHORE_FLAG_VALUE {
            // Not ours to decode: the caller reports the conflict.
            Slots::default()
        } else {
            serde_json::from_slice(&value).map_err(|e| {
                anyhow!(
                    "Error! {key} does not hold a semaphore's JSON ({e}): delete it or use \
                     another prefix"
                )
            })?
        };
        Ok(LockEntry {
            slots,
            flags: pair.flags,
            modify_index: pair.modify_index,
        })
    }

    /// Drop the holders whose session holds no key under the prefix (their
    /// contender key was deleted or released with the session).
    fn prune(&self, slots: &mut Slots) {
        let alive: HashSet<&str> = self
            .pairs
            .iter()
            .filter_map(|p| p.session.as_deref().filter(|s| !s.is_empty()))
            .collect();
        slots
            .holders
            .retain(|holder, _| alive.contains(holder.as_str()));
    }
}

/// A contender for a slot of the semaphore at a prefix.
pub(super) struct Semaphore {
    /// The agent.
    client: Client,
    /// What is listed: `PREFIX/` (everything, for an empty prefix).
    list_key: String,
    /// `PREFIX/.lock`.
    key: String,
    /// `PREFIX/<session>`, this contender's key.
    contender: String,
    /// The session ID (`Behavior: delete`).
    session: String,
    /// How many holders this contender expects (`-n`).
    limit: u32,
    /// Consecutive failed reads tolerated (`-monitor-retry`).
    retries: u32,
}

impl Semaphore {
    /// A contender at `prefix` (no leading or trailing `/`) with `session`.
    pub(super) fn new(
        client: Client,
        prefix: &str,
        session: String,
        limit: u32,
        retries: u32,
    ) -> Semaphore {
        let under = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            }
        };
        Semaphore {
            client,
            list_key: under(""),
            key: under(LOCK_KEY),
            contender: under(&session),
            session,
            limit,
            retries,
        }
    }

    /// `PREFIX/.lock`.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// The agent.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// The session ID.
    pub(super) fn session(&self) -> &str {
        &self.session
    }

    /// `-monitor-retry`.
    pub(super) fn retries(&self) -> u32 {
        self.retries
    }

    /// `GET PREFIX/?recurse`, blocking until the prefix's index passes
    /// `index` (if given); `consistent` asks the leader to confirm itself
    /// first, as Consul's monitor does.
    async fn list(&self, index: Option<u64>, consistent: bool) -> anyhow::Result<Listing> {
        let mut path = format!("{}?recurse", kv_path(&self.list_key));
        if let Some(index) = index {
            path.push_str(&format!("&index={index}&wait={BLOCKING_WAIT}"));
        }
        if consistent {
            path.push_str("&consistent");
        }
        // `request_stream` hands back the headers, which hold the index.
        let exchange = async {
            let empty = http_body_util::Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync();
            let resp = self
                .client
                .request_stream(Method::GET, &path, empty)
                .await?;
            let status = resp.status();
            let index = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .context("Error querying agent: reading a KV listing")?
                .to_bytes();
            anyhow::Ok((status, index, body))
        };
        let (status, index, body) = tokio::time::timeout(LIST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "Error querying agent: no answer to a read of {} within {}s",
                    self.list_key,
                    LIST_TIMEOUT.as_secs()
                )
            })??;
        let pairs = match status {
            StatusCode::NOT_FOUND => Vec::new(),
            StatusCode::OK => serde_json::from_slice(&body)
                .map_err(|e| anyhow!("Error! The agent sent an unreadable KV list: {e}"))?,
            _ => bail!(
                "Error! Failed to read prefix {}: Unexpected response code: {} ({})",
                self.list_key,
                status.as_u16(),
                String::from_utf8_lossy(&body).trim()
            ),
        };
        let index = index
            .ok_or_else(|| anyhow!("Error! The agent's KV listing has no X-Consul-Index header"))?;
        Ok(Listing { pairs, index })
    }

    /// Write `slots` to `PREFIX/.lock` if it is still at `modify_index`
    /// (0: only if missing); the agent's `true` / `false`.
    async fn cas(&self, slots: &Slots, modify_index: u64) -> anyhow::Result<bool> {
        let body = serde_json::to_vec(slots).context("Error! Cannot encode the semaphore")?;
        let path = format!(
            "{}?cas={modify_index}&flags={SEMAPHORE_FLAG_VALUE}",
            kv_path(&self.key)
        );
        let reply = self
            .client
            .request(Method::PUT, &path, Bytes::from(body))
            .await?;
        if reply.status != StatusCode::OK {
            bail!(
                "Error! Failed to update {}: {}",
                self.key,
                reply.unexpected()
            );
        }
        Ok(reply.body.trim_ascii() == b"true")
    }

    /// Take a slot: make the contender key, then block on the prefix until
    /// fewer than `Limit` live holders are left and a CAS adds this session.
    pub(super) async fn acquire(&self) -> anyhow::Result<()> {
        let path = format!(
            "{}?acquire={}&flags={SEMAPHORE_FLAG_VALUE}",
            kv_path(&self.contender),
            query_value(&self.session)
        );
        let reply = self
            .client
            .request(Method::PUT, &path, Bytes::new())
            .await?;
        if reply.status != StatusCode::OK {
            bail!(
                "Error! Failed to make contender entry {}: {}",
                self.contender,
                reply.unexpected()
            );
        }
        if reply.body.trim_ascii() != b"true" {
            bail!(
                "Error! Failed to make contender entry {}: the agent refused the acquire",
                self.contender
            );
        }
        let mut index = None;
        loop {
            let listing = self.list(index, false).await?;
            let mut lock = listing.lock(&self.key, self.limit)?;
            if lock.flags != SEMAPHORE_FLAG_VALUE {
                bail!(
                    "Error! Existing key {} does not match semaphore use (flags {}): another \
                     kind of lock uses this prefix; use -n with its limit or another prefix",
                    self.key,
                    lock.flags
                );
            }
            if lock.slots.limit != i64::from(self.limit) {
                bail!(
                    "Error! Semaphore limit conflict on {} (lock: {}, local: {}): use -n={} as \
                     the other holders do",
                    self.key,
                    lock.slots.limit,
                    self.limit,
                    lock.slots.limit
                );
            }
            listing.prune(&mut lock.slots);
            if lock.slots.holders.contains_key(&self.session) {
                // A CAS whose answer was lost (a retried request) took it.
                return Ok(());
            }
            if lock.slots.holders.len() >= usize::try_from(self.limit).unwrap_or(usize::MAX) {
                index = Some(listing.index);
                continue;
            }
            lock.slots.holders.insert(self.session.clone(), true);
            if self.cas(&lock.slots, lock.modify_index).await? {
                return Ok(());
            }
            // Another contender wrote first: read again at once.
            index = None;
        }
    }

    /// Watch the prefix with blocking reads until this session is no
    /// longer a live holder (or more than `retries` reads in a row failed);
    /// returns why.
    pub(super) async fn monitor(&self) -> String {
        let mut index = None;
        let mut failures = 0;
        loop {
            let listing = match self.list(index, true).await {
                Ok(listing) => listing,
                Err(err) => {
                    failures += 1;
                    if failures > self.retries {
                        return format!("watching {} failed: {err:#}", self.key);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    index = None;
                    continue;
                }
            };
            failures = 0;
            let mut lock = match listing.lock(&self.key, self.limit) {
                Ok(lock) => lock,
                Err(err) => return format!("{err:#}"),
            };
            listing.prune(&mut lock.slots);
            if !lock.slots.holders.contains_key(&self.session) {
                return format!("this session is no longer a holder in {}", self.key);
            }
            index = Some(listing.index);
        }
    }

    /// Give the slot up, as Consul's `Semaphore.Release` then `Destroy`
    /// do: CAS this session out of the holders, delete the contender key,
    /// delete `PREFIX/.lock` with CAS if no live holder is left, destroy
    /// the session. Every step is tried; the first failure is returned if
    /// the slot was `held`. After a loss failures are not reported: the
    /// agent may be what failed, and what is left heals itself (the
    /// session expires, its contender key goes with it, and the next
    /// contender prunes the holder).
    pub(super) async fn unlock(&self, held: bool) -> anyhow::Result<()> {
        let released = self.release().await;
        let cleaned = self.delete_if_unused().await;
        let destroyed = destroy_session(&self.client, &self.session).await;
        let result = released.and(cleaned).and(destroyed);
        if held {
            result
        } else {
            Ok(())
        }
    }

    /// CAS this session out of `PREFIX/.lock` (retrying on a race), then
    /// delete the contender key.
    async fn release(&self) -> anyhow::Result<()> {
        loop {
            let listing = self.list(None, false).await?;
            let mut lock = listing.lock(&self.key, self.limit)?;
            if lock.flags != SEMAPHORE_FLAG_VALUE
                || lock.slots.holders.remove(&self.session).is_none()
            {
                break;
            }
            if self.cas(&lock.slots, lock.modify_index).await? {
                break;
            }
        }
        let reply = self
            .client
            .request(Method::DELETE, &kv_path(&self.contender), Bytes::new())
            .await?;
        if reply.status != StatusCode::OK {
            bail!(
                "Error! Failed to delete contender entry {}: {}",
                self.contender,
                reply.unexpected()
            );
        }
        Ok(())
    }

    /// Delete `PREFIX/.lock` with CAS if it is a semaphore with no live
    /// holder (a contender may write meanwhile: then it stays).
    async fn delete_if_unused(&self) -> anyhow::Result<()> {
        let listing = self.list(None, false).await?;
        let mut lock = listing.lock(&self.key, self.limit)?;
        if lock.modify_index == 0 || lock.flags != SEMAPHORE_FLAG_VALUE {
            return Ok(());
        }
        listing.prune(&mut lock.slots);
        if !lock.slots.holders.is_empty() {
            return Ok(());
        }
        super::delete_unchanged(&self.client, &self.key, lock.modify_index).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, session: Option<&str>, value: Option<&[u8]>) -> Pair {
        Pair {
            key: key.to_string(),
            flags: SEMAPHORE_FLAG_VALUE,
            session: session.map(str::to_string),
            modify_index: 7,
            value: value.map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
        }
    }

    #[test]
    fn slots_are_encoded_as_go_writes_them() -> anyhow::Result<()> {
        let slots = Slots {
            limit: 2,
            holders: [("b".to_string(), true), ("a".to_string(), true)].into(),
        };
        assert_eq!(
            serde_json::to_string(&slots)?,
            r#"{"Limit":2,"Holders":{"a":true,"b":true}}"#
        );
        let go_nil: Slots = serde_json::from_str(r#"{"Limit":3,"Holders":null}"#)?;
        assert_eq!((go_nil.limit, go_nil.holders.len()), (3, 0));
        Ok(())
    }

    #[test]
    fn dead_holders_are_pruned_and_a_missing_lock_is_empty() -> anyhow::Result<()> {
        let value = br#"{"Limit":2,"Holders":{"live":true,"dead":true}}"#;
        let listing = Listing {
            pairs: vec![
                pair("p/.lock", None, Some(value)),
                pair("p/live", Some("live"), None),
                // Released (Behavior: release): no session, so not alive.
                pair("p/dead", None, None),
            ],
            index: 9,
        };
        let mut lock = listing.lock("p/.lock", 2)?;
        assert_eq!((lock.slots.limit, lock.modify_index), (2, 7));
        listing.prune(&mut lock.slots);
        assert_eq!(lock.slots.holders.keys().collect::<Vec<_>>(), ["live"]);

        let empty = Listing {
            pairs: Vec::new(),
            index: 1,
        };
        let lock = empty.lock("p/.lock", 4)?;
        assert_eq!(
            (lock.slots.limit, lock.flags, lock.modify_index),
            (4, SEMAPHORE_FLAG_VALUE, 0)
        );
        Ok(())
    }

    #[test]
    fn a_lock_value_that_is_not_json_is_an_error() {
        let listing = Listing {
            pairs: vec![pair("p/.lock", None, Some(b"not json"))],
            index: 1,
        };
        assert!(listing.lock("p/.lock", 2).is_err());
    }
}
