//! Property tests of the state machine at the views level: apply matches a
//! simple model, indexes are monotonic, and snapshot + replay gives exactly
//! the views that direct apply gives.

use std::collections::BTreeMap;

use fjall::Keyspace;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;

use crate::apply::{apply_entry, apply_entry_until};
use crate::command::{Command, Response};
use crate::raft::TypeConfig;
use crate::snapshot;
use crate::tables::kv;
use crate::views::{encode, Views};
use crate::watch::Table;

const KEYS: &[&str] = &["a", "a/b", "a/c", "ab", "b", "b/x"];
const PREFIXES: &[&str] = &["", "a", "a/", "b", "zz"];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, u8, u64),
    Cas(usize, u8, CasIndex),
    Delete(usize),
    DeleteCas(usize, CasIndex),
    DeleteTree(usize),
}

#[derive(Debug, Clone)]
enum CasIndex {
    Zero,
    Current,
    Other(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let cas = prop_oneof![
        Just(CasIndex::Zero),
        Just(CasIndex::Current),
        (1u64..50).prop_map(CasIndex::Other)
    ];
    prop_oneof![
        4 => (key.clone(), 0u8..3, 0u64..2).prop_map(|(k, v, f)| Op::Set(k, v, f)),
        2 => (key.clone(), 0u8..3, cas.clone()).prop_map(|(k, v, c)| Op::Cas(k, v, c)),
        2 => key.clone().prop_map(Op::Delete),
        1 => (key, cas).prop_map(|(k, c)| Op::DeleteCas(k, c)),
        1 => (0..PREFIXES.len()).prop_map(Op::DeleteTree),
    ]
}

/// Model row: value, flags, create, modify.
type Row = (Vec<u8>, u64, u64, u64);

#[derive(Default)]
struct Model {
    rows: BTreeMap<String, Row>,
    table_index: u64,
}

impl Model {
    fn resolve(&self, key: &str, c: &CasIndex) -> u64 {
        match c {
            CasIndex::Zero => 0,
            CasIndex::Current => self.rows.get(key).map(|r| r.3).unwrap_or(0),
            CasIndex::Other(n) => *n,
        }
    }

    fn write(&mut self, key: &str, value: Vec<u8>, flags: u64, index: u64) {
        match self.rows.get_mut(key) {
            Some(r) if r.0 == value && r.1 == flags => {}
            Some(r) => {
                r.0 = value;
                r.1 = flags;
                r.3 = index;
                self.table_index = index;
            }
            None => {
                self.rows
                    .insert(key.to_string(), (value, flags, index, index));
                self.table_index = index;
            }
        }
    }

    fn delete(&mut self, key: &str, index: u64) {
        if self.rows.remove(key).is_some() {
            self.table_index = index;
        }
    }

    /// Apply `op` at `index`; returns the command and the expected response.
    fn apply(&mut self, op: &Op, index: u64) -> (Command, Response) {
        match op {
            Op::Set(k, v, f) => {
                let key = KEYS[*k];
                self.write(key, vec![*v], *f, index);
                (
                    Command::KvSet {
                        key: key.into(),
                        value: vec![*v],
                        flags: *f,
                    },
                    Response::Bool(true),
                )
            }
            Op::Cas(k, v, c) => {
                let key = KEYS[*k];
                let expected = self.resolve(key, c);
                let ok = match self.rows.get(key) {
                    None => expected == 0,
                    Some(r) => expected != 0 && r.3 == expected,
                };
                if ok {
                    self.write(key, vec![*v], 0, index);
                }
                (
                    Command::KvCas {
                        key: key.into(),
                        value: vec![*v],
                        flags: 0,
                        index: expected,
                    },
                    Response::Bool(ok),
                )
            }
            Op::Delete(k) => {
                let key = KEYS[*k];
                self.delete(key, index);
                (Command::KvDelete { key: key.into() }, Response::Bool(true))
            }
            Op::DeleteCas(k, c) => {
                let key = KEYS[*k];
                let expected = self.resolve(key, c);
                let ok = match self.rows.get(key) {
                    None => true,
                    Some(r) => r.3 == expected,
                };
                if ok {
                    self.delete(key, index);
                }
                (
                    Command::KvDeleteCas {
                        key: key.into(),
                        index: expected,
                    },
                    Response::Bool(ok),
                )
            }
            Op::DeleteTree(p) => {
                let prefix = PREFIXES[*p];
                let doomed: Vec<String> = self
                    .rows
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect();
                for k in doomed {
                    self.delete(&k, index);
                }
                (
                    Command::KvDeleteTree {
                        prefix: prefix.into(),
                    },
                    Response::Bool(true),
                )
            }
        }
    }
}

/// A normal entry at `index` in term 1 (shared with the catalog tests).
pub(crate) fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// Every row of a keyspace (shared with the catalog tests).
pub(crate) fn dump(ks: &Keyspace) -> Vec<(Vec<u8>, Vec<u8>)> {
    ks.iter()
        .map(|g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .expect("read row")
        })
        .collect()
}

/// Every row of every view, except the stored membership: an install
/// always records the snapshot's membership, even an empty one, which a
/// view that never applied a membership entry lacks.
fn dump_all(v: &Views) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut meta = dump(v.ks(crate::views::Ks::Meta));
    meta.retain(|(k, _)| k.as_slice() != crate::views::META_MEMBERSHIP);
    vec![
        dump(v.ks(crate::views::Ks::Kv)),
        dump(v.ks(crate::views::Ks::Tombstones)),
        meta,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn apply_matches_model_and_snapshot_replay(ops in proptest::collection::vec(op(), 1..60), cut in 0usize..60) {
        let dir = tempfile::tempdir().expect("tempdir");
        let direct = Views::open(&dir.path().join("direct")).expect("open");
        let mut model = Model::default();
        let mut entries = Vec::new();
        let mut last_table_index = 0;
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            let (cmd, expected) = model.apply(op, index);
            let e = entry(index, cmd);
            let (resp, _) = apply_entry(&direct, &e).expect("apply");
            prop_assert_eq!(resp, expected, "op {:?} at {}", op, index);
            // Views match the model.
            let rows: BTreeMap<String, Row> = kv::list(&direct, "").expect("list").into_iter()
                .map(|e| (e.key, (e.value, e.flags, e.create_index, e.modify_index))).collect();
            prop_assert_eq!(&rows, &model.rows);
            let ti = crate::view::table_index(&direct, Table::Kv).expect("index");
            prop_assert_eq!(ti, model.table_index);
            prop_assert!(ti >= last_table_index, "table index went backwards");
            last_table_index = ti;
            // Prefix indexes never go below any live key's or tombstone's index.
            for p in PREFIXES {
                let live = model.rows.iter().filter(|(k, _)| k.starts_with(p)).map(|(_, r)| r.3).max().unwrap_or(0);
                prop_assert!(kv::tombstone_index(&direct, p).expect("tomb").max(live) <= ti);
            }
            entries.push(e);
        }

        // Snapshot after `cut` entries, install into fresh views, replay the rest.
        let cut = cut.min(entries.len());
        let partial = Views::open(&dir.path().join("partial")).expect("open");
        for e in &entries[..cut] {
            apply_entry(&partial, e).expect("apply");
        }
        let (_, path) = snapshot::build(&partial, &dir.path().join("snaps"), 1).expect("build");
        let restored = Views::open(&dir.path().join("restored")).expect("open");
        apply_entry(&restored, &entry(1000, Command::KvSet { key: "junk".into(), value: vec![1], flags: 0 })).expect("junk");
        let mut file = std::fs::File::open(&path).expect("open snap");
        snapshot::install(&restored, &mut file).expect("install");
        for e in &entries[cut..] {
            apply_entry(&restored, e).expect("apply");
        }
        prop_assert_eq!(dump_all(&direct), dump_all(&restored));
    }
}

#[test]
fn corrupt_snapshot_is_rejected_before_views_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let views = Views::open(&dir.path().join("v")).expect("open");
    for i in 1..=20u64 {
        apply_entry(
            &views,
            &entry(
                i,
                Command::KvSet {
                    key: format!("k{i}"),
                    value: vec![i as u8; 10],
                    flags: 0,
                },
            ),
        )
        .expect("apply");
    }
    let (_, path) = snapshot::build(&views, &dir.path().join("s"), 1).expect("build");
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).expect("write");
    let target = Views::open(&dir.path().join("t")).expect("open");
    apply_entry(
        &target,
        &entry(
            1,
            Command::KvSet {
                key: "keep".into(),
                value: vec![1],
                flags: 0,
            },
        ),
    )
    .expect("apply");
    let mut file = std::fs::File::open(&path).expect("open");
    assert!(snapshot::install(&target, &mut file).is_err());
    assert!(
        kv::get(&target, "keep").expect("get").is_some(),
        "views untouched"
    );
}

/// The KV rows of `views`, as the model keeps them.
fn rows_of(views: &Views) -> BTreeMap<String, Row> {
    kv::list(views, "")
        .expect("list")
        .into_iter()
        .map(|e| (e.key, (e.value, e.flags, e.create_index, e.modify_index)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Batched entries give the same state and responses as one command per
    /// entry would at the same index; a batch cut short by a crash leaves
    /// the views untouched (the entry is one fjall batch); and a batch an
    /// older build left half applied (its `partial` marker) is finished
    /// with every command applied exactly once.
    #[test]
    fn batches_apply_each_command_once_across_crashes(
        ops in proptest::collection::vec(op(), 1..40),
        sizes in proptest::collection::vec(1usize..6, 1..40),
        crashes in proptest::collection::vec(proptest::option::of(0usize..6), 1..40),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let views = Views::open(&dir.path().join("v")).expect("open");
        let mut model = Model::default();
        let mut ops = ops.into_iter();
        let mut index = 0u64;
        for (n, size) in sizes.iter().enumerate() {
            let chunk: Vec<Op> = ops.by_ref().take(*size).collect();
            if chunk.is_empty() {
                break;
            }
            index += 1;
            let before = model.rows.clone();
            let (commands, expected): (Vec<Command>, Vec<Response>) =
                chunk.iter().map(|op| model.apply(op, index)).unzip();
            let e = entry(index, Command::Batch { commands: commands.clone() });
            // A crash can only interrupt an entry before its last command
            // (after it, raft never applies the entry again).
            let crash = crashes.get(n).copied().flatten().filter(|stop| *stop < chunk.len());
            if let Some(stop) = crash {
                apply_entry_until(&views, &e, stop).expect("partial apply");
                prop_assert_eq!(&rows_of(&views), &before, "a cut-short entry changes nothing");
                // What an older build leaves: the first `stop` commands
                // applied and a marker counting them.
                let head = commands.get(..stop).unwrap_or_default().to_vec();
                apply_entry(&views, &entry(index, Command::Batch { commands: head }))
                    .expect("apply the head");
                views
                    .ks(crate::views::Ks::Meta)
                    .insert(crate::views::META_PARTIAL, encode(&(index, stop), "partial").expect("encode"))
                    .expect("write the marker");
            }
            let (resp, _) = apply_entry(&views, &e).expect("apply");
            let Response::Batch(got) = resp else {
                return Err(TestCaseError::fail("batch answered with a non-batch response"));
            };
            for (i, (g, x)) in got.iter().zip(&expected).enumerate() {
                if crash.is_some_and(|stop| i < stop) {
                    prop_assert_eq!(g, &Response::None, "replay skips commands already applied");
                } else {
                    prop_assert_eq!(g, x);
                }
            }
            prop_assert_eq!(&rows_of(&views), &model.rows);
            prop_assert_eq!(views.partial(index).expect("partial"), 0);
            prop_assert_eq!(views.applied_state().expect("applied").0.map(|l| l.index), Some(index));
        }
    }
}
