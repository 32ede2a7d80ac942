//! Fuzzes the console protocol's request lines: any bytes either parse as
//! a `Request` or are refused, never a panic; a parsed request serializes
//! to one line that parses back equal.
//!
//! Run with `fuzz/run.sh 60 console_request`.

#![no_main]

use ftfw_control::console::proto::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<Request>(data) {
        let line = serde_json::to_string(&req).expect("a request serializes");
        assert!(!line.contains('\n'), "a request is one line");
        let back: Request = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{line} does not parse back: {e}"));
        assert_eq!(back, req, "round trip changed {line}");
    }
});
