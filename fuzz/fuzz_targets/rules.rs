//! Fuzzes the rule-file parser: any text is either a rule set or an error
//! naming file and line; a parsed set compiles into the classifier.
//!
//! Run with `cargo +nightly fuzz run rules` from the repository root.

#![no_main]

use ftfw_dataplane::acl::{parse_rules, Classifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ports = |name: &str| match name {
        "inside" => Some(0),
        "outside" => Some(1),
        _ => None,
    };
    if let Ok(set) = parse_rules(text, "fuzz.rules", 1, &ports) {
        let _ = Classifier::new(&set);
    }
});
