//! The blocking-query loop of consul-compat.md §1.1.
//!
//! `Blocking` carries the caller's `index` and `wait`; [`Blocking::run`]
//! re-runs a query until its index passes `index` or the jittered deadline
//! elapses, in which case the current result is returned (not an error).

use std::sync::Arc;
use std::time::Duration;

use crate::types::Indexed;
use crate::watch::{Watch, WatchSet};

/// Default blocking wait (5 minutes).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Maximum blocking wait (10 minutes).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Parameters of a blocking read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// The client's `index`; 0 means "answer at once".
    pub min_index: u64,
    /// The client's `wait`, already clamped (0 → default, > max → max).
    pub wait: Duration,
}

impl Blocking {
    /// Build from raw query values: `wait` of zero means the default; more
    /// than the maximum is clamped.
    pub fn new(min_index: u64, wait: Option<Duration>) -> Blocking {
        let wait = match wait {
            None => DEFAULT_WAIT,
            Some(w) if w.is_zero() => DEFAULT_WAIT,
            Some(w) => w.min(MAX_WAIT),
        };
        Blocking { min_index, wait }
    }

    /// The wait plus random jitter in `[0, wait/16)`.
    pub fn deadline(&self) -> Duration {
        let jitter_max = self.wait.as_nanos() / 16;
        let jitter = if jitter_max == 0 {
            0
        } else {
            rand::random_range(0..jitter_max)
        };
        self.wait + Duration::from_nanos(u64::try_from(jitter).unwrap_or(u64::MAX))
    }

    /// Run `query` until its index passes `min_index`, waiting between
    /// runs on the watch set the query filled, or until the deadline (then
    /// the last result is returned).
    ///
    /// Each run gets a fresh [`WatchSet`]; the loop takes the hub's fire
    /// number before the run and subscribes with it after, so a change
    /// that lands while the query runs is never missed (see `watch`).
    pub async fn run<T, E, F>(&self, watch: &Arc<Watch>, mut query: F) -> Result<Indexed<T>, E>
    where
        F: FnMut(&mut WatchSet) -> Result<Indexed<T>, E>,
    {
        let deadline = tokio::time::Instant::now() + self.deadline();
        loop {
            let since = watch.seq();
            let mut ws = WatchSet::new();
            let result = query(&mut ws)?;
            if self.min_index == 0 || result.index > self.min_index {
                return Ok(result);
            }
            let sub = watch.subscribe_since(ws.keys(), since);
            if tokio::time::timeout_at(deadline, sub.changed())
                .await
                .is_err()
            {
                return Ok(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{Table, WatchKey};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn wait_defaults_and_clamps() {
        assert_eq!(Blocking::new(1, None).wait, DEFAULT_WAIT);
        assert_eq!(Blocking::new(1, Some(Duration::ZERO)).wait, DEFAULT_WAIT);
        assert_eq!(
            Blocking::new(1, Some(Duration::from_secs(3600))).wait,
            MAX_WAIT
        );
        let b = Blocking::new(1, Some(Duration::from_secs(16)));
        for _ in 0..100 {
            let d = b.deadline();
            assert!(d >= Duration::from_secs(16) && d < Duration::from_secs(17));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn returns_current_result_at_deadline() {
        let hub = Watch::new();
        let b = Blocking::new(5, Some(Duration::from_secs(2)));
        let start = tokio::time::Instant::now();
        let r: Result<Indexed<u8>, ()> = b
            .run(&hub, |ws| {
                ws.add(WatchKey::Table(Table::Kv));
                Ok(Indexed { index: 5, value: 1 })
            })
            .await;
        assert_eq!(r, Ok(Indexed { index: 5, value: 1 }));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(2) && waited < Duration::from_millis(2200));
    }

    #[tokio::test]
    async fn wakes_when_the_key_fires() {
        let hub = Watch::new();
        let index = Arc::new(AtomicU64::new(5));
        let b = Blocking::new(5, Some(Duration::from_secs(30)));
        let (h2, i2) = (hub.clone(), index.clone());
        let task = tokio::spawn(async move {
            b.run(&h2, |ws| {
                ws.add(WatchKey::KvKey("k".into()));
                Ok::<_, ()>(Indexed {
                    index: i2.load(Ordering::SeqCst),
                    value: (),
                })
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        index.store(9, Ordering::SeqCst);
        hub.fire(&[WatchKey::KvKey("k".into())]);
        let r = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("woke")
            .expect("joined");
        assert_eq!(r.map(|r| r.index), Ok(9));
    }
}
