//! Fuzz the `filter=` expression parser: any UTF-8 input must parse or fail
//! without panicking, a parsed filter must evaluate on a fixed health entry
//! without panicking, and its pretty-printed form must parse back to the
//! same tree with the same verdict.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_api::filter::{Filter, Value};

const ENTRY: &str = r#"{
  "Node": {"Node": "n1", "Address": "10.0.0.5",
           "Meta": {"env": "prod", "consul-version": "1.20.0", "empty": ""}},
  "Service": {"ID": "web1", "Service": "web", "Tags": ["v1", "primary"],
              "Port": 8080, "Meta": {"env": "prod"}, "EnableTagOverride": false,
              "Weights": {"Passing": 1, "Warning": 1}, "Proxy": null, "Connect": {}},
  "Checks": [
    {"CheckID": "serfHealth", "Status": "passing", "Notes": "", "ServiceTags": []},
    {"CheckID": "service:web1", "Status": "critical", "Notes": "down", "ServiceTags": ["v1"]}
  ]
}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Filter::parse(src) else {
        return;
    };
    let entry: Value = ENTRY.parse().expect("the fixture is valid JSON");
    let verdict = filter.matches(&entry);
    let _ = filter.matches(&Value::Null);
    let printed = filter.to_string();
    let again = Filter::parse(&printed).expect("a printed filter parses");
    assert_eq!(again, filter, "{printed}");
    assert_eq!(again.matches(&entry), verdict);
});
