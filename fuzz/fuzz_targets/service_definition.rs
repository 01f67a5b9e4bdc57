//! Service and check definition decoding (HTTP bodies and config-file
//! entries go through one decoder): arbitrary JSON never panics; every
//! accepted service is normalised (an ID, checks owned by the service);
//! and an accepted definition encoded as the API's JSON decodes back to
//! itself (what `muster services register` relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_agent::definition::decode::{check, service, Origin};
use muster_agent::definition::encode::{check_to_api, service_to_api};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for origin in [Origin::Http, Origin::File] {
        if let Ok(def) = service(&value, "service", origin) {
            assert!(!def.id.is_empty(), "a service always gets an ID");
            for c in &def.checks {
                assert_eq!(c.service_id, def.id, "inline checks belong to the service");
                assert!(!c.id.is_empty(), "inline checks always get an ID");
            }
            let back = service(&service_to_api(&def), "", Origin::Http);
            assert_eq!(back.as_ref(), Ok(&def), "encode → decode is the identity");
        }
        if let Ok(def) = check(&value, "check", origin) {
            let back = check(&check_to_api(&def, true), "", Origin::Http);
            assert_eq!(back.as_ref(), Ok(&def), "encode → decode is the identity");
        }
    }
});
