//! ACL rules (HCL or JSON) and their decisions: arbitrary text never
//! panics the parser, and an accepted rule set answers any question
//! without panicking, with `deny` never granting anything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_api::acl::rules::{parse, Access, Resource};
use muster_api::acl::Authorizer;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(rules) = parse(&text) {
        let authz = Authorizer::new(std::slice::from_ref(&rules), false);
        for r in &rules.rules {
            let granted = authz.allowed(r.resource, &r.segment, Access::Read);
            if !r.prefix && r.access == Access::Deny {
                assert!(!granted, "an exact deny granted read");
            }
        }
        let _ = authz.allowed(Resource::Key, &text, Access::Write);
        let _ = authz.allowed_under(Resource::Key, "", Access::Write);
    }
});
