//! Append throughput of muster-log with real fsyncs: one `append` call of 1,
//! 16 or 256 entries (128-byte payloads), waiting for its group-commit ack.

use std::io::Cursor;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use muster_log::LogStore;
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

openraft::declare_raft_types!(
    /// A small type config for the bench: `String` requests.
    pub BenchConfig
);

// `declare_raft_types!` needs `Cursor` in scope for its default snapshot type.
const _: Option<Cursor<Vec<u8>>> = None;

fn batch(start: u64, n: u64, payload: &str) -> Vec<Entry<BenchConfig>> {
    (start..start + n)
        .map(|i| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(payload.to_string()),
        })
        .collect()
}

fn log_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    let payload = "x".repeat(128);
    let mut group = c.benchmark_group("log_append");
    for n in [1u64, 16, 256] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LogStore::<BenchConfig>::open(dir.path()).expect("open the log");
        let mut next = 0u64;
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("entries_per_append", n), &n, |b, &n| {
            b.iter(|| {
                let entries = batch(next, n, &payload);
                next += n;
                rt.block_on(store.blocking_append(entries))
                    .expect("append and fsync");
            });
        });
        drop(store);
    }
    group.finish();
}

criterion_group!(benches, log_append);
criterion_main!(benches);
