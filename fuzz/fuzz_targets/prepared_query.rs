//! Prepared query definitions (`/v1/query` bodies) and template rendering:
//! arbitrary bytes never panic, the name is split off the end of the
//! input, and an accepted definition renders for any name without
//! panicking (unclosed `${`, unknown variables and bad regexps are errors).
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_api::bodies::prepared_query;

fuzz_target!(|data: &[u8]| {
    let (body, name) = match data.iter().rposition(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let name = String::from_utf8_lossy(name);
    let _ = prepared_query(body, &name);
});
