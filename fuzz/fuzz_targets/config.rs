//! Fuzzes the configuration parser on arbitrary text: `config::parse`
//! returns a configuration or an error with at least one diagnostic, each
//! naming the file and a line inside the text; it never panics.
//!
//! Run with `fuzz/run.sh 60 config`.

#![no_main]

use ftfw_control::config::{self, ConfigError};
use libfuzzer_sys::fuzz_target;

/// Inside the repository's configs/, so that relative paths in a seed
/// (rules.conf) resolve as they do for the example files.
const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/fuzz.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
});

fn check(text: &str) {
    match config::parse(text, FILE) {
        Ok(_) => {}
        Err(ConfigError::Invalid(diags)) => {
            assert!(!diags.is_empty(), "an error without diagnostics");
            let lines = text.lines().count().max(1) + 1;
            for d in &diags {
                assert_eq!(d.file, FILE);
                assert!(
                    d.line >= 1 && d.line <= lines,
                    "line {} of {lines}: {d:?}",
                    d.line
                );
                assert!(!d.message.is_empty());
            }
        }
        Err(ConfigError::Io { .. }) => {}
    }
}
