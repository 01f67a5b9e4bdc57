//! Service and check definition decoding (API bodies and config-file
//! entries): arbitrary JSON never panics, and every accepted definition is
//! normalised (an ID, checks owned by the service).
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_api::definition::{check_definition_from_json, service_definition_from_json};
use muster_api::filter::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(def) = service_definition_from_json(&value) {
        assert!(!def.id.is_empty(), "a service always gets an ID");
        for c in &def.checks {
            assert_eq!(c.service_id, def.id, "inline checks belong to the service");
            assert!(!c.id.is_empty(), "inline checks always get an ID");
        }
    }
    let _ = check_definition_from_json(&value);
});
