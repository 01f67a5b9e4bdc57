//! Fuzz the HTTP query-string parser: any input must parse without
//! panicking, every typed accessor must return a value or an error, and the
//! re-encoded query must parse back to the same pairs (sorted by key).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let q = muster_api::query::parse(raw);
    let _ = q.index();
    let _ = q.wait();
    let _ = q.blocking();
    let _ = q.consistency();
    let _ = q.flags();
    let _ = q.cas();
    let _ = (q.dc(), q.token(), q.separator(), q.acquire(), q.release());
    let _ = (q.recurse(), q.keys(), q.raw(), q.pretty());
    let _ = q.check_conflicting(&["cas", "acquire", "release"]);
    let encoded = q.encode();
    let mut sorted = q.pairs().to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        muster_api::query::parse(&encoded).pairs(),
        sorted.as_slice()
    );
});
