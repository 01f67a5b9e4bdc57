//! Fuzzes the gossip packet decoder: opening arbitrary bytes as a UDP
//! (SWIM) or TCP (sync) frame, with and without a keyring, must never
//! panic; whatever opens as plaintext is fed to the payload decoders, and
//! plaintext frames re-seal to the same bytes and round-trip encrypted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_gossip::packet::{self, Channel};
use muster_gossip::Keyring;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(KEY).expect("valid fuzz key");
    muster_gossip::fuzz_decode_payloads(data);
    for channel in [Channel::Swim, Channel::Sync] {
        let _ = packet::open(Some(&ring), true, channel, data);
        let _ = packet::open(Some(&ring), false, channel, data);
        if let Ok(plain) = packet::open(None, false, channel, data) {
            muster_gossip::fuzz_decode_payloads(&plain);
            let resealed = packet::seal(None, channel, &plain).expect("plaintext seal");
            assert_eq!(resealed.as_slice(), data);
            let sealed = packet::seal(Some(&ring), channel, &plain).expect("encrypt");
            let opened =
                packet::open(Some(&ring), true, channel, &sealed).expect("own packet opens");
            assert_eq!(&*opened, &*plain);
        }
    }
});
