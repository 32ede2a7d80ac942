//! Seeded randomness and lossy one-way links in virtual time.
#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use ftfw_dataplane::rng::SplitMix64;

/// The simulation's generator ([`SplitMix64`]) with the draws it needs.
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed ^ 0x005e_ed0f_f7f0_u64))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    /// True with probability `percent / 100`.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
    /// Random 32 bits.
    pub fn u32(&mut self) -> u32 {
        u32::try_from(self.next_u64() >> 32).unwrap_or(0)
    }
}

/// A one-way link: loss, duplication, and a random delay per copy (which
/// reorders datagrams).
pub struct Link {
    /// Loss probability in percent.
    pub loss: u32,
    /// Duplication probability in percent.
    pub dup: u32,
    /// Smallest delay.
    pub min_delay: Duration,
    /// Extra random delay, up to this.
    pub jitter: Duration,
    q: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    n: u64,
    /// Datagrams offered.
    pub offered: u64,
    /// Datagrams lost.
    pub lost: u64,
}

impl Link {
    /// A link with the given loss and duplication percentages.
    pub fn new(loss: u32, dup: u32) -> Self {
        Link {
            loss,
            dup,
            min_delay: Duration::from_micros(1000),
            jitter: Duration::from_micros(1500),
            q: BinaryHeap::new(),
            n: 0,
            offered: 0,
            lost: 0,
        }
    }

    /// Offers one datagram to the link at `now`.
    pub fn send(&mut self, now: Instant, rng: &mut Rng, bytes: &[u8]) {
        self.offered += 1;
        if rng.percent(self.loss) {
            self.lost += 1;
            return;
        }
        let copies = if rng.percent(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap_or(0);
            let at = now + self.min_delay + Duration::from_nanos(rng.below(jitter_ns + 1));
            self.n += 1;
            self.q.push(Reverse((at, self.n, bytes.to_vec())));
        }
    }

    /// When the next datagram arrives.
    pub fn next_at(&self) -> Option<Instant> {
        self.q.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next datagram due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_at()? <= now {
            self.q.pop().map(|Reverse((_, _, b))| b)
        } else {
            None
        }
    }
}
