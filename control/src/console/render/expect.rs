//! `ftfwctl expect list`: like `conntrack -L expect`.

use std::fmt::Write as _;

use super::super::proto::ExpectListing;
use super::tuple;

/// One line per expectation: seconds left, the expected tuple (`sport=any`
/// when any source port matches), the master, the helper.
pub fn expectations(l: &ExpectListing) -> String {
    let mut o = String::new();
    for e in &l.expectations {
        let mut expected = tuple(&e.expected);
        if e.expected.sport.is_none() {
            expected = expected.replacen(" dport=", " sport=any dport=", 1);
        }
        let _ = writeln!(
            o,
            "{} proto={} {} master: {} {} zone={} helper={}",
            e.timeout,
            e.proto,
            expected,
            e.master.proto,
            tuple(&e.master.original),
            e.zone,
            e.helper
        );
    }
    let _ = writeln!(
        o,
        "{} expectation entries have been shown.",
        l.expectations.len()
    );
    o
}
