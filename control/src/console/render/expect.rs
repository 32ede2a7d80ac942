//! `ftfwctl expect list`: like `conntrack -L expect`.

use std::fmt::Write as _;

use super::super::proto::ExpectListing;
use super::tuple;

/// One line per expectation: seconds left, the expected tuple (`sport=any`
/// when any source port matches), the master, the helper, and where a
/// connection that follows its master's NAT is translated to.
pub fn expectations(l: &ExpectListing) -> String {
    let mut o = String::new();
    for e in &l.expectations {
        let mut expected = tuple(&e.expected);
        // `tuple` prints ports only as a pair.
        if let (None, Some(dp)) = (e.expected.sport, e.expected.dport) {
            let _ = write!(expected, " sport=any dport={dp}");
        }
        let _ = write!(
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
        if let (Some(to), Some(from)) = (&e.translated_to, &e.translated_from) {
            let _ = write!(o, " nat: to={to} from={from}");
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "{} expectation entries have been shown.",
        l.expectations.len()
    );
    o
}
