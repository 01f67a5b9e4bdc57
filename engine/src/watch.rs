//! Watch notifiers: blocking reads register on the tables, keys and key
//! prefixes their query read (its [`WatchSet`]); apply fires exactly the
//! registrations it touched.
//!
//! A registration fires once and is removed, so a wake-up costs
//! O(watchers of what changed), never O(all watchers).
//!
//! # Correctness: no change between a query and its wait is lost
//! A query learns what it depends on only by running, so it subscribes
//! *after* it ran. To close that gap the hub numbers every fire (`seq`) and
//! keeps the keys of the last [`RECENT_FIRES`] fires. A reader takes
//! [`Watch::seq`] *before* it opens its read view and passes it to
//! [`Watch::subscribe_since`]; under the registry lock that call checks the
//! fires numbered after it against the watch set and, if one intersects
//! (or the record no longer reaches back that far), hands back a
//! subscription that has already fired. Apply commits its batch before it
//! fires, so a change the read view missed is either in that record or
//! fires after the registration. The cost of the check is a spurious wake
//! at worst (a change committed before the view but fired after `seq` was
//! read), which only re-runs the query.

use std::collections::{HashMap, VecDeque};
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
    /// Stored objects (prepared queries, autopilot configuration).
    Objects,
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

impl WatchKey {
    /// True if firing `fired` wakes a registration on `self`.
    fn woken_by(&self, fired: &WatchKey) -> bool {
        match (self, fired) {
            (WatchKey::KvPrefix(p), WatchKey::KvKey(k)) => k.starts_with(p.as_str()),
            _ => self == fired,
        }
    }
}

/// Most keys one query's watch set holds; past it the set falls back to
/// whole tables (as Consul's `AddWithLimit` does), so a huge result never
/// costs a huge registration.
pub const WATCH_LIMIT: usize = 8192;

/// The keys one query read: what must change for its result to change.
/// Filled by the engine's queries, never by their callers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchSet {
    keys: Vec<WatchKey>,
}

impl WatchSet {
    /// An empty set.
    pub fn new() -> WatchSet {
        WatchSet::default()
    }

    /// Add a key (duplicates are kept once).
    pub fn add(&mut self, key: WatchKey) {
        if self.keys.len() >= WATCH_LIMIT {
            let table = match &key {
                WatchKey::Table(t) => *t,
                WatchKey::KvKey(_) | WatchKey::KvPrefix(_) => Table::Kv,
                WatchKey::Service(_) => Table::Services,
                WatchKey::Node(_) => Table::Nodes,
            };
            let coarse = WatchKey::Table(table);
            if !self.keys.contains(&coarse) {
                self.keys.push(coarse);
            }
            return;
        }
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// The keys, in the order added.
    pub fn keys(&self) -> &[WatchKey] {
        &self.keys
    }

    /// True if firing `fired` changes a result that read this set.
    pub fn is_woken_by(&self, fired: &[WatchKey]) -> bool {
        fired
            .iter()
            .any(|f| self.keys.iter().any(|k| k.woken_by(f)))
    }
}

/// One registration: fired at most once, awaited by any number of tasks.
#[derive(Debug, Default)]
struct Waiter {
    notify: Notify,
    fired: AtomicBool,
}

impl Waiter {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// How many past fires the hub remembers for [`Watch::subscribe_since`]: a
/// query that takes longer than this many applies to run is woken once
/// spuriously.
pub const RECENT_FIRES: usize = 1024;

/// One remembered fire: its keys, or `None` for "everything" (a snapshot
/// install).
type Fired = Option<Arc<[WatchKey]>>;

#[derive(Default)]
struct Registry {
    /// Exact keys (tables, KV keys, services, nodes) → (waiter id → waiter).
    slots: HashMap<WatchKey, HashMap<u64, Arc<Waiter>>>,
    /// KV prefixes → (waiter id → waiter), looked up by borrowed slices of
    /// the written key, so a write allocates nothing per prefix.
    prefixes: HashMap<String, HashMap<u64, Arc<Waiter>>>,
    /// The keys of the last [`RECENT_FIRES`] fires, oldest first, with
    /// their numbers.
    recent: VecDeque<(u64, Fired)>,
}

/// The watch hub shared by the state machine (which fires) and readers
/// (which subscribe).
#[derive(Default)]
pub struct Watch {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// Number of fires so far (the newest fire's number).
    seq: AtomicU64,
    /// Number of live prefix registrations: lets a KV write skip the
    /// per-prefix lookups when nobody watches a prefix.
    prefix_watchers: AtomicUsize,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// A registration on a set of keys; `changed()` resolves once any of them
/// fired after the subscription was made (or after the `since` it was made
/// with). Dropping it unregisters. Several tasks may await one
/// subscription: a fire wakes them all.
pub struct Subscription {
    hub: Arc<Watch>,
    id: u64,
    keys: Vec<WatchKey>,
    waiter: Arc<Waiter>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("keys", &self.keys)
            .field("fired", &self.has_changed())
            .finish()
    }
}

impl Watch {
    /// A new hub.
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch::default())
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves only maps of waiters
        // behind, which are still consistent: recover it.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of the newest fire: take it before opening the read view
    /// a query runs on, and subscribe with [`Watch::subscribe_since`].
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Register on `keys`, counting only fires after now.
    pub fn subscribe(self: &Arc<Self>, keys: &[WatchKey]) -> Subscription {
        let since = self.seq();
        self.subscribe_since(keys, since)
    }

    /// Register on `keys`, counting every fire numbered after `since`:
    /// if one of those already touched `keys`, the subscription has
    /// already fired.
    pub fn subscribe_since(self: &Arc<Self>, keys: &[WatchKey], since: u64) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter::default());
        let mut reg = self.lock();
        let missed = self.seq.load(Ordering::Acquire) > since && {
            let oldest = reg.recent.front().map(|(n, _)| *n).unwrap_or(u64::MAX);
            oldest > since.saturating_add(1)
                || reg.recent.iter().any(|(n, fired)| {
                    *n > since
                        && match fired {
                            None => true,
                            Some(fired) => fired.iter().any(|f| keys.iter().any(|k| k.woken_by(f))),
                        }
                })
        };
        if missed {
            drop(reg);
            waiter.fire();
            return Subscription {
                hub: self.clone(),
                id,
                keys: Vec::new(),
                waiter,
            };
        }
        let mut unique: Vec<WatchKey> = Vec::with_capacity(keys.len());
        for key in keys {
            if unique.contains(key) {
                continue;
            }
            unique.push(key.clone());
            match key {
                WatchKey::KvPrefix(p) => {
                    self.prefix_watchers.fetch_add(1, Ordering::Relaxed);
                    reg.prefixes
                        .entry(p.clone())
                        .or_default()
                        .insert(id, waiter.clone());
                }
                _ => {
                    reg.slots
                        .entry(key.clone())
                        .or_default()
                        .insert(id, waiter.clone());
                }
            }
        }
        drop(reg);
        Subscription {
            hub: self.clone(),
            id,
            keys: unique,
            waiter,
        }
    }

    /// Fire every registration on `keys` (and, for `KvKey`, on every KV
    /// prefix of it). Called after the apply batch that changed them has
    /// been committed.
    pub fn fire(&self, keys: &[WatchKey]) {
        let check_prefixes = self.prefix_watchers.load(Ordering::Relaxed) > 0;
        let mut reg = self.lock();
        self.remember(&mut reg, Some(keys.into()));
        let mut fired = Vec::new();
        if !reg.slots.is_empty() || !reg.prefixes.is_empty() {
            for key in keys {
                if let Some(waiters) = reg.slots.remove(key) {
                    fired.extend(waiters.into_values());
                }
                if check_prefixes {
                    if let WatchKey::KvKey(k) = key {
                        let ends = k.char_indices().map(|(i, _)| i).chain([k.len()]);
                        for end in ends {
                            if let Some(waiters) = reg.prefixes.remove(&k[..end]) {
                                fired.extend(waiters.into_values());
                            }
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

    /// Record a fire in the recent list and number it. Called under the
    /// registry lock, so numbers and records agree.
    fn remember(&self, reg: &mut Registry, fired: Fired) {
        let n = self.seq.load(Ordering::Relaxed) + 1;
        if reg.recent.len() >= RECENT_FIRES {
            reg.recent.pop_front();
        }
        reg.recent.push_back((n, fired));
        self.seq.store(n, Ordering::Release);
    }

    /// Fire every registration (snapshot install, shutdown).
    pub fn fire_all(&self) {
        let mut reg = self.lock();
        self.remember(&mut reg, None);
        let slots = std::mem::take(&mut reg.slots);
        let prefixes = std::mem::take(&mut reg.prefixes);
        drop(reg);
        let all = slots.into_values().chain(prefixes.into_values());
        for waiters in all {
            for w in waiters.into_values() {
                w.fire();
            }
        }
    }

    /// Number of live registrations on one key (for tests and metrics).
    pub fn registrations_on(&self, key: &WatchKey) -> usize {
        let reg = self.lock();
        match key {
            WatchKey::KvPrefix(p) => reg.prefixes.get(p).map_or(0, HashMap::len),
            _ => reg.slots.get(key).map_or(0, HashMap::len),
        }
    }

    /// Number of keys with live registrations (for tests and metrics).
    pub fn registered_keys(&self) -> usize {
        let reg = self.lock();
        reg.slots.len() + reg.prefixes.len()
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
        if self.keys.is_empty() {
            return;
        }
        let mut reg = self.hub.lock();
        for key in &self.keys {
            let map = match key {
                WatchKey::KvPrefix(p) => {
                    self.hub.prefix_watchers.fetch_sub(1, Ordering::Relaxed);
                    let Some(waiters) = reg.prefixes.get_mut(p) else {
                        continue;
                    };
                    waiters.remove(&self.id);
                    if waiters.is_empty() {
                        reg.prefixes.remove(p);
                    }
                    continue;
                }
                _ => reg.slots.get_mut(key),
            };
            if let Some(waiters) = map {
                waiters.remove(&self.id);
                if waiters.is_empty() {
                    reg.slots.remove(key);
                }
            }
        }
    }
}

/// Distinct keys of a list (for tests).
#[cfg(test)]
fn distinct(keys: &[WatchKey]) -> usize {
    keys.iter().collect::<std::collections::HashSet<_>>().len()
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
        drop((other, p, all));
        assert_eq!(hub.registered_keys(), 0);
        assert_eq!(hub.prefix_watchers.load(Ordering::Relaxed), 0);
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

    #[test]
    fn a_fire_between_query_and_subscribe_is_caught() {
        let hub = Watch::new();
        let since = hub.seq();
        // The query runs here; meanwhile a write to what it read fires.
        hub.fire(&[WatchKey::KvKey("other".into())]);
        hub.fire(&[WatchKey::KvKey("svc/a".into())]);
        let caught = hub.subscribe_since(&[WatchKey::KvPrefix("svc/".into())], since);
        assert!(caught.has_changed());
        // A fire of something else does not count.
        let since = hub.seq();
        hub.fire(&[WatchKey::KvKey("other".into())]);
        let quiet = hub.subscribe_since(&[WatchKey::KvPrefix("svc/".into())], since);
        assert!(!quiet.has_changed());
        // Nor does a fire from before `since`.
        let later = hub.subscribe_since(&[WatchKey::KvKey("svc/a".into())], hub.seq());
        assert!(!later.has_changed());
    }

    #[test]
    fn a_forgotten_gap_counts_as_a_change() {
        let hub = Watch::new();
        let since = hub.seq();
        for i in 0..RECENT_FIRES + 1 {
            hub.fire(&[WatchKey::KvKey(format!("k{i}"))]);
        }
        let s = hub.subscribe_since(&[WatchKey::KvKey("unrelated".into())], since);
        assert!(s.has_changed());
        let s = hub.subscribe_since(&[WatchKey::KvKey("unrelated".into())], hub.seq() - 5);
        assert!(!s.has_changed());
    }

    #[test]
    fn fire_all_is_remembered() {
        let hub = Watch::new();
        let since = hub.seq();
        hub.fire_all();
        assert!(hub
            .subscribe_since(&[WatchKey::Node("n".into())], since)
            .has_changed());
    }

    #[tokio::test]
    async fn one_fire_wakes_every_task_awaiting_a_subscription() {
        let hub = Watch::new();
        let sub = Arc::new(hub.subscribe(&[WatchKey::Service("web".into())]));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = sub.clone();
            tasks.push(tokio::spawn(async move { s.changed().await }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.fire(&[WatchKey::Service("web".into())]);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .expect("woke")
                .expect("joined");
        }
    }

    #[test]
    fn watch_set_dedups_and_falls_back_to_tables() {
        let mut ws = WatchSet::new();
        ws.add(WatchKey::KvKey("a".into()));
        ws.add(WatchKey::KvKey("a".into()));
        assert_eq!(ws.keys().len(), 1);
        for i in 0..WATCH_LIMIT + 10 {
            ws.add(WatchKey::Service(format!("s{i}")));
        }
        assert_eq!(ws.keys().len(), WATCH_LIMIT + 1);
        assert_eq!(distinct(ws.keys()), ws.keys().len());
        assert!(ws.keys().contains(&WatchKey::Table(Table::Services)));
        assert!(ws.is_woken_by(&[WatchKey::Table(Table::Services)]));
    }
}
