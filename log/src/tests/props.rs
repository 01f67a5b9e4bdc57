//! Property tests: the store against a `Vec` model, and recovery after a cut
//! at any byte or a flipped byte.

use std::fs;
use std::path::{Path, PathBuf};

use openraft::{CommittedLeaderId, LogId};
use proptest::prelude::*;

use super::{append_sync, entry, last_segment, TestConfig, TestEntry};
use crate::{LogOptions, LogStore};

/// One operation of the model test. Numbers are turned into valid
/// arguments against the current model.
#[derive(Debug, Clone)]
enum Op {
    /// Append this many entries; `new_term` bumps the term first.
    Append { count: u64, new_term: bool },
    /// Truncate at a point chosen by `at` among the live entries (and one past).
    Truncate { at: u64 },
    /// Purge up to a point chosen by `at`, possibly past the last entry.
    Purge { at: u64 },
    /// Drop the store and open it again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..6, any::<bool>()).prop_map(|(count, new_term)| Op::Append { count, new_term }),
        1 => any::<u64>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u64>().prop_map(|at| Op::Purge { at }),
        1 => Just(Op::Reopen),
    ]
}

/// What the log should hold.
#[derive(Debug, Default)]
struct Model {
    /// Live entries, in order.
    entries: Vec<TestEntry>,
    /// Last purged id.
    purged: Option<LogId<u64>>,
    /// Current term for new entries.
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.last(), self.purged) {
            (Some(e), _) => e.log_id.index + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 0,
        }
    }

    fn last_log_id(&self) -> Option<LogId<u64>> {
        self.entries.last().map(|e| e.log_id).or(self.purged)
    }
}

fn check(store: &LogStore<TestConfig>, model: &Model) -> Result<(), TestCaseError> {
    let got = store
        .read_range(0..u64::MAX)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&got, &model.entries);
    let state = store
        .log_state()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(state.last_purged_log_id, model.purged);
    prop_assert_eq!(state.last_log_id, model.last_log_id());
    prop_assert_eq!(store.last_index(), model.last_log_id().map(|id| id.index));
    // A sub-range read agrees too.
    if let (Some(first), Some(last)) = (model.entries.first(), model.entries.last()) {
        let mid = (first.log_id.index + last.log_id.index) / 2;
        let part = store
            .read_range(mid..last.log_id.index)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: Vec<_> = model
            .entries
            .iter()
            .filter(|e| e.log_id.index >= mid && e.log_id.index < last.log_id.index)
            .cloned()
            .collect();
        prop_assert_eq!(part, want);
    }
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_vec_model(
        ops in proptest::collection::vec(op(), 1..40),
        segment_size in prop_oneof![Just(1u64), 60u64..400, Just(1u64 << 20)],
    ) {
        let dir = tempfile::tempdir().map_err(fail)?;
        let options = LogOptions::with_segment_size(segment_size);
        let mut store = LogStore::<TestConfig>::open_with(dir.path(), options).map_err(fail)?;
        let mut model = Model { term: 1, ..Model::default() };
        for op in ops {
            match op {
                Op::Append { count, new_term } => {
                    if new_term {
                        model.term += 1;
                    }
                    let start = model.next_index();
                    let batch: Vec<_> = (start..start + count).map(|i| entry(model.term, i)).collect();
                    append_sync(&mut store, batch.clone()).map_err(fail)?;
                    model.entries.extend(batch);
                }
                Op::Truncate { at } => {
                    let Some(first) = model.entries.first().map(|e| e.log_id.index) else { continue };
                    let len = model.entries.len() as u64;
                    let index = first + at % (len + 1);
                    store.truncate_from(index).map_err(fail)?;
                    model.entries.retain(|e| e.log_id.index < index);
                }
                Op::Purge { at } => {
                    let lo = model.purged.map_or(0, |p| p.index + 1);
                    let hi = model.next_index() + 2;
                    if lo >= hi {
                        continue;
                    }
                    let index = lo + at % (hi - lo);
                    let id = model
                        .entries
                        .iter()
                        .find(|e| e.log_id.index == index)
                        .map(|e| e.log_id)
                        .unwrap_or(LogId::new(CommittedLeaderId::new(model.term, 1), index));
                    store.purge_upto(id).map_err(fail)?;
                    model.entries.retain(|e| e.log_id.index > index);
                    model.purged = Some(id);
                }
                Op::Reopen => {
                    drop(store);
                    store = LogStore::open_with(dir.path(), options).map_err(fail)?;
                }
            }
            check(&store, &model)?;
        }
        drop(store);
        let store = LogStore::<TestConfig>::open_with(dir.path(), options).map_err(fail)?;
        check(&store, &model)?;
    }

    #[test]
    fn cut_last_segment_anywhere_recovers_a_prefix(
        count in 1u64..40,
        segment_size in prop_oneof![Just(1u64 << 20), 100u64..600],
        cut_at in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().map_err(fail)?;
        let options = LogOptions::with_segment_size(segment_size);
        let written: Vec<_> = (0..count).map(|i| entry(1 + i / 7, i)).collect();
        {
            let mut store = LogStore::<TestConfig>::open_with(dir.path(), options).map_err(fail)?;
            for chunk in written.chunks(3) {
                append_sync(&mut store, chunk.to_vec()).map_err(fail)?;
            }
        }
        let (last_first, last_path) = last_segment(dir.path()).map_err(fail)?;
        let len = fs::metadata(&last_path).map_err(fail)?.len() as usize;
        let cut = cut_at.index(len + 1);
        let bytes = fs::read(&last_path).map_err(fail)?;
        fs::write(&last_path, &bytes[..cut]).map_err(fail)?;

        // Entries wholly before the cut must survive, and nothing else.
        let mut kept = last_first;
        let mut end = 0usize;
        for e in written.iter().filter(|e| e.log_id.index >= last_first) {
            end += 8 + rmp_serde::to_vec_named(e).map_err(fail)?.len();
            if end > cut {
                break;
            }
            kept += 1;
        }

        let mut store = LogStore::<TestConfig>::open_with(dir.path(), options).map_err(fail)?;
        let got = store.read_range(0..u64::MAX).map_err(fail)?;
        prop_assert_eq!(&got[..], &written[..kept as usize]);

        // The log goes on from where it was cut.
        let next = entry(9, kept);
        append_sync(&mut store, vec![next.clone()]).map_err(fail)?;
        drop(store);
        let store = LogStore::<TestConfig>::open_with(dir.path(), options).map_err(fail)?;
        let got = store.read_range(0..u64::MAX).map_err(fail)?;
        prop_assert_eq!(got.last(), Some(&next));
        prop_assert_eq!(got.len() as u64, kept + 1);
    }

    #[test]
    fn flipped_byte_before_valid_records_is_corrupt(
        count in 2u64..30,
        victim in any::<prop::sample::Index>(),
        tiny_segments in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().map_err(fail)?;
        // Tiny segments put the victim in a sealed segment; big ones put it
        // mid-file with valid records after it.
        let options = LogOptions::with_segment_size(if tiny_segments { 1 } else { 1 << 20 });
        let written: Vec<_> = (0..count).map(|i| entry(1, i)).collect();
        {
            let mut store = LogStore::<TestConfig>::open_with(dir.path(), options).map_err(fail)?;
            append_sync(&mut store, written.clone()).map_err(fail)?;
        }
        // Any record but the last one.
        let victim = victim.index(count as usize - 1);
        let (path, offset) = locate(dir.path(), &written, victim).map_err(fail)?;
        let payload_len = rmp_serde::to_vec_named(&written[victim]).map_err(fail)?.len();
        let mut bytes = fs::read(&path).map_err(fail)?;
        bytes[offset + 8 + payload_len / 2] ^= 0x20;
        fs::write(&path, &bytes).map_err(fail)?;

        match LogStore::<TestConfig>::open_with(dir.path(), options) {
            Err(crate::Error::Corrupt { segment, offset: at, .. }) => {
                prop_assert_eq!(segment, path);
                prop_assert_eq!(at, offset as u64);
            }
            Err(e) => prop_assert!(false, "expected Corrupt, got {e}"),
            Ok(s) => prop_assert!(false, "expected Corrupt, opened with {:?}", s.last_index()),
        }
    }
}

/// The segment file holding entry `k` of `written` and its offset there.
fn locate(dir: &Path, written: &[TestEntry], k: usize) -> crate::Result<(PathBuf, usize)> {
    let segments = crate::segment::list(dir)?;
    let index = written[k].log_id.index;
    let Some((first, path)) = segments.into_iter().rev().find(|(f, _)| *f <= index) else {
        return Err(crate::Error::io(
            "no segment",
            std::io::ErrorKind::NotFound.into(),
        ));
    };
    let mut offset = 0;
    for e in written
        .iter()
        .filter(|e| e.log_id.index >= first && e.log_id.index < index)
    {
        offset += 8 + rmp_serde::to_vec_named(e)?.len();
    }
    Ok((path, offset))
}
