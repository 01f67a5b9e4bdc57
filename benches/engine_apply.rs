//! State-machine apply: one KV set per entry, each entry one fjall batch
//! (rows, table index, last_applied), as the raft state machine applies it.
//! Also the full write path through raft and the log (with fsync) for scale.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use muster_engine::offline::OfflineViews;
use muster_engine::raft::TypeConfig;
use muster_engine::{Command, Engine, EngineConfig};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn set(i: u64) -> Command {
    Command::KvSet {
        key: format!("bench/key/{:08}", i % 10_000),
        value: i.to_le_bytes().repeat(16),
        flags: 0,
    }
}

fn apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let views = OfflineViews::open(dir.path()).expect("open views");
    let mut index = 0u64;
    let mut group = c.benchmark_group("engine_apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("kv_set_entry", |b| {
        b.iter_batched(
            || {
                index += 1;
                Entry::<TypeConfig> {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                    payload: EntryPayload::Normal(set(index)),
                }
            },
            |entry| views.apply(&entry).expect("apply"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn propose(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt
        .block_on(Engine::open(EngineConfig::new(dir.path(), "bench")))
        .expect("engine");
    let mut group = c.benchmark_group("engine_propose");
    group.measurement_time(Duration::from_secs(5));
    for clients in [1u64, 64] {
        group.throughput(Throughput::Elements(clients));
        group.bench_function(format!("kv_set_{clients}_concurrent"), |b| {
            let mut n = 0u64;
            b.to_async(&rt).iter(|| {
                n += clients;
                let engine = engine.clone();
                let base = n;
                async move {
                    let mut tasks = Vec::new();
                    for i in 0..clients {
                        let engine = engine.clone();
                        tasks.push(tokio::spawn(
                            async move { engine.propose(set(base + i)).await },
                        ));
                    }
                    for t in tasks {
                        t.await.expect("join").expect("propose");
                    }
                }
            })
        });
    }
    group.finish();
    rt.block_on(engine.shutdown()).expect("shutdown");
}

criterion_group!(benches, apply, propose);
criterion_main!(benches);
