//! Fuzzes the log's record framing: walking frames over arbitrary bytes must
//! never panic, and every valid frame must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_log::record::{self, Decoded};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match record::decode(rest) {
            Ok(Decoded::Record { payload, frame_len }) => {
                let mut again = Vec::new();
                record::encode_into(payload, &mut again);
                assert_eq!(again.as_slice(), &rest[..frame_len]);
                assert_eq!(record::frame_len(payload.len()), frame_len);
                assert_eq!(
                    record::decode(&again),
                    Ok(Decoded::Record { payload, frame_len })
                );
                rest = &rest[frame_len..];
            }
            Ok(Decoded::BadCrc { frame_len, .. }) => {
                // Recovery looks at the next frame after a bad CRC.
                assert!(frame_len > record::HEADER_LEN);
                match rest.get(frame_len..) {
                    Some(next) if !next.is_empty() => rest = next,
                    _ => break,
                }
            }
            Ok(Decoded::Incomplete | Decoded::End) | Err(_) => break,
        }
    }
});
