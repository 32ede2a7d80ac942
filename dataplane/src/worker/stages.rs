//! Where a worker's time goes, stage by stage of the transparent burst
//! (receive, parse, table warm-up and bucket check, decide, transmit),
//! when a benchmark asks for it ([`super::Worker::set_stage_timing`]). The
//! clock is read at the stage boundaries of each non-empty burst (six
//! reads per burst, about 4 ns per packet at 32 packets a burst), never
//! per packet, and not at all when timing is off.

use std::time::Instant;

/// Nanoseconds per stage, summed over the bursts timed, and the packets
/// those bursts held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageTimes {
    /// Packets in the timed bursts.
    pub packets: u64,
    /// The port's receive call.
    pub rx_ns: u64,
    /// Parsing every frame of the burst.
    pub parse_ns: u64,
    /// Bucket ownership and the flow table warm-up (hash, probe, prefetch
    /// by touching) for the burst.
    pub lookup_ns: u64,
    /// The per-packet decisions: table hit, TCP/UDP state update, verdict
    /// cache or rule evaluation, delta push.
    pub decide_ns: u64,
    /// The port's transmit calls.
    pub tx_ns: u64,
}

impl StageTimes {
    /// Nanoseconds per packet of each stage, in order (rx, parse, lookup,
    /// decide, tx).
    pub fn per_packet(&self) -> [(&'static str, f64); 5] {
        let p = self.packets.max(1) as f64;
        [
            ("rx", self.rx_ns as f64 / p),
            ("parse", self.parse_ns as f64 / p),
            ("lookup", self.lookup_ns as f64 / p),
            ("decide", self.decide_ns as f64 / p),
            ("tx", self.tx_ns as f64 / p),
        ]
    }
}

/// A stopwatch over one burst: `lap` adds the time since the previous
/// mark to a stage. Inert when timing is off.
pub(super) struct Lap(Option<Instant>);

impl Lap {
    #[inline]
    pub(super) fn start(on: bool) -> Lap {
        Lap(on.then(Instant::now))
    }

    #[inline]
    pub(super) fn lap(&mut self, stage: &mut u64) {
        if let Some(t) = &mut self.0 {
            let now = Instant::now();
            *stage += u64::try_from(now.duration_since(*t).as_nanos()).unwrap_or(u64::MAX);
            *t = now;
        }
    }
}
