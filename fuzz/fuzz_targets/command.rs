//! Fuzz the log payload decoder: `Command::decode` never panics on any
//! bytes, and whatever it accepts re-encodes to bytes that decode to the
//! same command (the round trip old logs rely on).

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_engine::Command;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        let again = Command::decode(&cmd.encode()).expect("an encoded command decodes");
        assert_eq!(again, cmd, "decode(encode(cmd)) == cmd");
    }
});
