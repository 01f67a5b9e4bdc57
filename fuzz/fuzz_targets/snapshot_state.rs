//! Fuzz the snapshot state stream (`state.bin`): reading never panics on
//! any bytes, and every record it accepts re-encodes and decodes to the
//! same record.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_engine::backup::state::{decode_record, StateReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = StateReader::new(data) else {
        return;
    };
    while let Ok(Some(record)) = reader.next_record() {
        let again = rmp_serde::to_vec_named(&record).expect("a record encodes");
        assert_eq!(decode_record(&again).ok(), Some(record));
    }
});
