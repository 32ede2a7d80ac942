//! Fuzzes the receive side of replication: the conntrackd datagram walk
//! and a whole FT-FW engine fed the same bytes as if they came from the
//! peer. Neither may panic; whatever the engine answers (NACKs, events) is
//! drained so its queues are exercised too.
//!
//! Run with `cargo +nightly fuzz run sync_datagram` from the repository root.

#![no_main]

use std::time::{Duration, Instant};

use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Engine, EngineConfig};
use ftfw_sync::wire::datagram::{decode_datagram, DecodeStats};
use ftfw_sync::wire::EncodeOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stats = DecodeStats::default();
    let _ = decode_datagram(data, &mut stats);

    let now = Instant::now();
    let mut engine = Engine::new(
        EngineConfig::default(),
        WireCodec::new(EncodeOptions::default()),
        now,
    );
    // The input split into up to four datagrams at the first bytes' offsets.
    let cuts = data
        .iter()
        .take(3)
        .map(|&b| usize::from(b))
        .collect::<Vec<_>>();
    let mut rest = data;
    let mut t = now;
    for cut in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
        let (d, r) = rest.split_at(cut.min(rest.len()));
        rest = r;
        t += Duration::from_millis(1);
        engine.handle_datagram(t, d);
        while engine.poll_event().is_some() {}
        let mut out = Vec::new();
        while engine.poll_transmit(t, &mut out) {
            out.clear();
        }
    }
});
