//! Fuzz the snapshot archive reader (gzip'd tar, `meta.json`, `SHA256SUMS`):
//! it never panics on any bytes, and never accepts an archive whose
//! `state.bin` does not match the size `meta.json` states.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_api::snapshot::archive::read_archive;

fuzz_target!(|data: &[u8]| {
    let mut state = Vec::new();
    if let Ok((meta, _)) = read_archive(data, &mut state) {
        assert_eq!(meta.size, state.len() as u64);
    }
});
