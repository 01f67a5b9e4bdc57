//! Blocking-query wake-up fan-out in the watch hub (`muster_engine::watch`):
//! what one change costs to deliver.
//!
//! - `one_of_10000_keys`: 10,000 watchers each on its own KV key, plus one
//!   on the key that changes; firing that key wakes exactly that watcher,
//!   so its cost must not grow with the 10,000 others.
//! - `10000_on_one_key`: 10,000 tokio tasks blocked in `changed()` on one
//!   key; timed from the fire until the last task has run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use muster_engine::watch::Watch;
use muster_engine::WatchKey;
use tokio::sync::Notify;

/// Watchers per case.
const WATCHERS: usize = 10_000;

fn key(k: &str) -> WatchKey {
    WatchKey::KvKey(k.to_owned())
}

fn watch_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("watch_fanout");

    let hub = Watch::new();
    let others: Vec<_> = (0..WATCHERS)
        .map(|i| hub.subscribe(&[key(&format!("w/{i}"))]))
        .collect();
    let target = [key("target")];
    group.bench_function("one_of_10000_keys", |b| {
        b.iter_batched(
            || hub.subscribe(&target),
            |sub| {
                hub.fire(&target);
                assert!(sub.has_changed());
                sub
            },
            BatchSize::SmallInput,
        )
    });
    assert!(
        others.iter().all(|s| !s.has_changed()),
        "a spurious wake-up"
    );
    drop(others);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    group.sample_size(10);
    group.bench_function("10000_on_one_key", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let hub = Watch::new();
                let all = [key("all")];
                let done = Arc::new(AtomicUsize::new(0));
                let last = Arc::new(Notify::new());
                let tasks: Vec<_> = (0..WATCHERS)
                    .map(|_| {
                        let sub = hub.subscribe(&all);
                        let (done, last) = (done.clone(), last.clone());
                        rt.spawn(async move {
                            sub.changed().await;
                            if done.fetch_add(1, Ordering::AcqRel) + 1 == WATCHERS {
                                last.notify_one();
                            }
                        })
                    })
                    .collect();
                // Let every task park in `changed()` before the fire.
                rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
                total += rt.block_on(async {
                    let t0 = Instant::now();
                    hub.fire(&all);
                    last.notified().await;
                    t0.elapsed()
                });
                assert_eq!(done.load(Ordering::Acquire), WATCHERS);
                rt.block_on(async {
                    for t in tasks {
                        t.await.expect("watcher task");
                    }
                });
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, watch_fanout);
criterion_main!(benches);
