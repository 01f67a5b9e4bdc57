//! Scenario tests: group commit batching, rotation across reopen, torn
//! tails, poisoning.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use openraft::{CommittedLeaderId, LogId};

use super::{append_sync, entry, last_segment, TestConfig, TestEntry};
use crate::{Error, LogOptions, LogStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A fresh log in a temporary directory holding `entries` (synced, store
/// closed), and the path of its last segment file.
fn write_log(
    entries: &[TestEntry],
) -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    {
        let mut store = LogStore::<TestConfig>::open(dir.path())?;
        append_sync(&mut store, entries.to_vec())?;
    }
    let (_, path) = last_segment(dir.path())?;
    Ok((dir, path))
}

#[test]
fn group_commit_batches_waiting_appends_into_one_fsync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = LogStore::<TestConfig>::open(dir.path())?;
    let (tx, rx) = mpsc::channel();
    let flush = std::sync::Arc::clone(&store.inner.flush);
    let gate = flush.gate.lock().map_err(|e| e.to_string())?;
    for i in 0..100 {
        let tx = tx.clone();
        store.append_with(vec![entry(1, i)], move |r| {
            let _ = tx.send((i, r.is_ok()));
        })?;
    }
    // Readable at once, but not acknowledged before the fsync.
    assert_eq!(store.read_range(0..100)?.len(), 100);
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    drop(gate);
    let mut acked: Vec<_> = (0..100).map(|_| rx.recv()).collect::<Result<_, _>>()?;
    acked.sort_unstable();
    assert_eq!(acked, (0..100).map(|i| (i, true)).collect::<Vec<_>>());
    let stats = store.stats();
    assert_eq!(stats.flush_requests, 100);
    // The flusher took the first job before the gate, then drained the
    // other 99 at once: at most two fsyncs for 100 appends.
    assert!(stats.fsyncs <= 2, "{stats:?}");
    Ok(())
}

#[test]
fn group_commit_under_free_running_appends_saves_fsyncs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = LogStore::<TestConfig>::open(dir.path())?;
    let (tx, rx) = mpsc::channel();
    for i in 0..500 {
        let tx = tx.clone();
        store.append_with(vec![entry(1, i)], move |r| {
            let _ = tx.send(r.is_ok());
        })?;
    }
    for _ in 0..500 {
        assert!(rx.recv()?);
    }
    let stats = store.stats();
    assert_eq!(stats.flush_requests, 500);
    assert!(stats.fsyncs < 500, "{stats:?}");
    Ok(())
}

#[test]
fn rotation_with_tiny_segments_survives_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let options = LogOptions::with_segment_size(150);
    let written: Vec<_> = (0..60).map(|i| entry(1, i)).collect();
    {
        let mut store = LogStore::<TestConfig>::open_with(dir.path(), options)?;
        for chunk in written.chunks(4) {
            append_sync(&mut store, chunk.to_vec())?;
        }
    }
    let segments = crate::segment::list(dir.path())?;
    assert!(segments.len() > 10, "{} segments", segments.len());
    for (i, (first, path)) in segments.iter().enumerate() {
        assert!(path.ends_with(format!("{first:020}.seg")));
        let len = fs::metadata(path)?.len();
        if i + 1 < segments.len() {
            // A sealed segment keeps no zeros, and is only over the size
            // by its last entry.
            assert!(len < 150 + 100, "sealed segment of {len} bytes");
        } else {
            // The open one is preallocated.
            assert!(
                len >= crate::segment::PREALLOC_CHUNK,
                "open segment of {len} bytes"
            );
        }
    }

    let mut store = LogStore::<TestConfig>::open_with(dir.path(), options)?;
    assert_eq!(store.read_range(0..1000)?, written);
    assert_eq!(store.read_range(17..23)?, written[17..23]);

    let purge_to = LogId::new(CommittedLeaderId::new(1, 1), 30);
    store.purge_upto(purge_to)?;
    store.truncate_from(50)?;
    let fewer = crate::segment::list(dir.path())?;
    assert!(fewer.len() < segments.len());
    assert!(fewer.iter().all(|(first, _)| *first <= 49));
    drop(store);

    let store = LogStore::<TestConfig>::open_with(dir.path(), options)?;
    assert_eq!(store.read_range(0..1000)?, written[31..50]);
    let state = store.log_state()?;
    assert_eq!(state.last_purged_log_id, Some(purge_to));
    assert_eq!(state.last_log_id, Some(written[49].log_id));
    Ok(())
}

#[test]
fn bad_crc_in_the_last_record_is_a_torn_tail() -> TestResult {
    let written: Vec<_> = (0..5).map(|i| entry(1, i)).collect();
    let (dir, path) = write_log(&written)?;
    let mut bytes = fs::read(&path)?;
    // The last non-zero byte is in the last record (zeros follow it).
    let last = bytes.iter().rposition(|b| *b != 0).ok_or("no records")?;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes)?;
    let store = LogStore::<TestConfig>::open(dir.path())?;
    assert_eq!(store.read_range(0..10)?, written[..4]);
    Ok(())
}

#[test]
fn poisoned_store_refuses_everything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = LogStore::<TestConfig>::open(dir.path())?;
    append_sync(&mut store, vec![entry(1, 0)])?;
    store.inner.flush.poisoned.store(true, Ordering::Release);
    assert!(matches!(store.read_range(0..1), Err(Error::Poisoned)));
    assert!(matches!(store.truncate_from(0), Err(Error::Poisoned)));
    assert!(matches!(
        append_sync(&mut store, vec![entry(1, 1)]),
        Err(Error::Poisoned)
    ));
    Ok(())
}

#[test]
fn non_contiguous_append_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = LogStore::<TestConfig>::open(dir.path())?;
    append_sync(&mut store, vec![entry(1, 0), entry(1, 1)])?;
    assert!(matches!(
        append_sync(&mut store, vec![entry(2, 1)]),
        Err(Error::NonContiguous {
            expected: 2,
            got: 1
        })
    ));
    Ok(())
}

#[test]
fn preallocated_zeros_end_the_records_without_loss() -> TestResult {
    let written: Vec<_> = (0..20).map(|i| entry(1, i)).collect();
    let (dir, path) = write_log(&written[..10])?;
    let len = fs::metadata(&path)?.len();
    assert!(len >= crate::segment::PREALLOC_CHUNK, "{len} bytes");
    {
        // Reopening keeps the zeros (nothing is cut) and appends over them.
        let mut store = LogStore::<TestConfig>::open(dir.path())?;
        assert_eq!(store.read_range(0..100)?, written[..10]);
        assert_eq!(fs::metadata(&path)?.len(), len);
        append_sync(&mut store, written[10..].to_vec())?;
    }
    let store = LogStore::<TestConfig>::open(dir.path())?;
    assert_eq!(store.read_range(0..100)?, written);
    Ok(())
}

#[test]
fn data_after_a_zero_length_is_a_torn_tail() -> TestResult {
    let written: Vec<_> = (0..3).map(|i| entry(1, i)).collect();
    let (dir, path) = write_log(&written)?;
    let mut bytes = fs::read(&path)?;
    let end = bytes.len();
    bytes[end - 10..].copy_from_slice(b"not zeros!");
    fs::write(&path, &bytes)?;
    let mut store = LogStore::<TestConfig>::open(dir.path())?;
    assert_eq!(store.read_range(0..10)?, written);
    // The tail was cut at the end of the records; appends go on from there.
    assert!(fs::metadata(&path)?.len() < 1000);
    append_sync(&mut store, vec![entry(1, 3)])?;
    drop(store);
    let store = LogStore::<TestConfig>::open(dir.path())?;
    assert_eq!(store.read_range(0..10)?.len(), 4);
    Ok(())
}

#[test]
fn truncated_records_never_come_back_after_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let mut store = LogStore::<TestConfig>::open(dir.path())?;
        append_sync(&mut store, (0..10).map(|i| entry(1, i)).collect())?;
        store.truncate_from(5)?;
        // Same lengths as the cut entries: stale frames after them would
        // line up and pass their CRCs if the cut bytes were left in place.
        append_sync(&mut store, (5..7).map(|i| entry(2, i)).collect())?;
    }
    let store = LogStore::<TestConfig>::open(dir.path())?;
    let mut want: Vec<_> = (0..5).map(|i| entry(1, i)).collect();
    want.extend((5..7).map(|i| entry(2, i)));
    assert_eq!(store.read_range(0..100)?, want);
    Ok(())
}
