//! Watch notifiers: blocking reads register on the tables, keys and key
//! prefixes they read; apply fires exactly the registrations it touched.
//!
//! A registration fires once and is removed, so a wake-up costs
//! O(watchers of what changed), never O(all watchers). The blocking loop
//! registers again before every re-run of its query, and registers *before*
//! running the query, so no change between query and wait is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A table of the state machine, as far as watches care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// The KV store (including tombstones).
    Kv,
    /// Catalog nodes.
    Nodes,
    /// Catalog services.
    Services,
    /// Health checks.
    Checks,
    /// Sessions.
    Sessions,
}

/// What a blocking read depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    /// Any change to the table.
    Table(Table),
    /// A change to this exact KV key.
    KvKey(String),
    /// A change to any KV key starting with this prefix.
    KvPrefix(String),
    /// A change to any instance (or its checks or node) of this service.
    Service(String),
    /// A change to this node, its services or its checks.
    Node(String),
}

/// One waiting blocking query.
#[derive(Debug)]
struct Waiter {
    notify: Notify,
    fired: AtomicBool,
}

impl Waiter {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    /// key → (waiter id → waiter).
    slots: HashMap<WatchKey, HashMap<u64, Arc<Waiter>>>,
}

/// The watch hub shared by the state machine (which fires) and readers
/// (which subscribe).
#[derive(Default)]
pub struct Watch {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// Number of live `KvPrefix` registrations: lets a KV write skip the
    /// per-prefix lookups when nobody watches a prefix.
    prefix_watchers: AtomicUsize,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// A registration on a set of keys; `changed()` resolves once any of them
/// fired after the subscription was made. Dropping it unregisters.
pub struct Subscription {
    hub: Arc<Watch>,
    id: u64,
    keys: Vec<WatchKey>,
    waiter: Arc<Waiter>,
}

impl Watch {
    /// A new hub.
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch::default())
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves only a map of waiters
        // behind, which is still consistent: recover it.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register on `keys`.
    pub fn subscribe(self: &Arc<Self>, keys: &[WatchKey]) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter {
            notify: Notify::new(),
            fired: AtomicBool::new(false),
        });
        let mut reg = self.lock();
        for key in keys {
            if matches!(key, WatchKey::KvPrefix(_)) {
                self.prefix_watchers.fetch_add(1, Ordering::Relaxed);
            }
            reg.slots
                .entry(key.clone())
                .or_default()
                .insert(id, waiter.clone());
        }
        drop(reg);
        Subscription {
            hub: self.clone(),
            id,
            keys: keys.to_vec(),
            waiter,
        }
    }

    /// Fire every registration on `keys` (and, for `KvKey`, on every
    /// `KvPrefix` that is a prefix of it). Called after the apply batch that
    /// changed them has been committed.
    pub fn fire(&self, keys: &[WatchKey]) {
        let check_prefixes = self.prefix_watchers.load(Ordering::Relaxed) > 0;
        let mut reg = self.lock();
        if reg.slots.is_empty() {
            return;
        }
        let mut fired = Vec::new();
        for key in keys {
            if let Some(waiters) = reg.slots.remove(key) {
                fired.extend(waiters.into_values());
            }
            if check_prefixes {
                if let WatchKey::KvKey(k) = key {
                    let mut ends: Vec<usize> = k.char_indices().map(|(i, _)| i).collect();
                    ends.push(k.len());
                    for end in ends {
                        let p = WatchKey::KvPrefix(k[..end].to_string());
                        if let Some(waiters) = reg.slots.remove(&p) {
                            fired.extend(waiters.into_values());
                        }
                    }
                }
            }
        }
        drop(reg);
        for w in fired {
            w.fire();
        }
    }

    /// Fire every registration (snapshot install, shutdown).
    pub fn fire_all(&self) {
        let mut reg = self.lock();
        let slots = std::mem::take(&mut reg.slots);
        drop(reg);
        for (_, waiters) in slots {
            for w in waiters.into_values() {
                w.fire();
            }
        }
    }

    /// Number of keys with live registrations (for tests and metrics).
    pub fn registered_keys(&self) -> usize {
        self.lock().slots.len()
    }
}

impl Subscription {
    /// Resolves once any key of this subscription fired.
    pub async fn changed(&self) {
        loop {
            let notified = self.waiter.notify.notified();
            if self.waiter.fired.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// True if a key already fired.
    pub fn has_changed(&self) -> bool {
        self.waiter.fired.load(Ordering::Acquire)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut reg = self.hub.lock();
        for key in &self.keys {
            if matches!(key, WatchKey::KvPrefix(_)) {
                self.hub.prefix_watchers.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(waiters) = reg.slots.get_mut(key) {
                waiters.remove(&self.id);
                if waiters.is_empty() {
                    reg.slots.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fire_wakes_only_subscribers_of_the_key() {
        let hub = Watch::new();
        let a = hub.subscribe(&[WatchKey::KvKey("a".into())]);
        let b = hub.subscribe(&[WatchKey::KvKey("b".into())]);
        hub.fire(&[WatchKey::KvKey("a".into())]);
        assert!(a.has_changed());
        assert!(!b.has_changed());
        tokio::time::timeout(Duration::from_secs(1), a.changed())
            .await
            .expect("a fired");
        drop(b);
        assert_eq!(hub.registered_keys(), 0);
    }

    #[tokio::test]
    async fn key_write_fires_prefix_watchers() {
        let hub = Watch::new();
        let p = hub.subscribe(&[WatchKey::KvPrefix("svc/".into())]);
        let other = hub.subscribe(&[WatchKey::KvPrefix("other/".into())]);
        let all = hub.subscribe(&[WatchKey::KvPrefix(String::new())]);
        hub.fire(&[WatchKey::KvKey("svc/x/leader".into())]);
        assert!(p.has_changed());
        assert!(all.has_changed());
        assert!(!other.has_changed());
    }

    #[tokio::test]
    async fn fire_before_wait_is_not_lost() {
        let hub = Watch::new();
        let s = hub.subscribe(&[WatchKey::Table(Table::Kv)]);
        hub.fire(&[WatchKey::Table(Table::Kv)]);
        tokio::time::timeout(Duration::from_secs(1), s.changed())
            .await
            .expect("fired before wait");
    }
}
