//! The reply budget (issue 16): what a NACK, or an ACK that skips stored
//! entries, may make us send again.
//!
//! Retransmissions are replies to the peer's input, and an input that
//! costs the sender 16 bytes (one NACK reaching far back) must not make us
//! send the resend queue's worth. Entries taken out of the resend queue to
//! be sent again are paid from a byte budget:
//! - it grows by [`super::EngineConfig::reply_factor`] times the bytes of
//!   every datagram received from the peer;
//! - by the bytes of our messages the peer acknowledges (each freed entry
//!   at the average message size sent so far): a peer that receives our
//!   messages may get as much again, which is what loss recovery needs
//!   (a 16-byte NACK of a lost full datagram asks for about 90 times its
//!   size);
//! - and by [`super::EngineConfig::reply_rate`] bytes per second, so a
//!   loss on an otherwise quiet link is repaired at once;
//! - it never holds more than [`super::EngineConfig::reply_burst`] (it
//!   starts full).
//!
//! Each entry taken is charged the largest message sent so far (at least
//! [`MIN_RESERVE`]); the rest of a range the budget did not cover is owed
//! and taken, oldest first, as the budget refills (one owed range, merged).
//! So for a sender that acknowledges nothing, what we send again within
//! any time T is at most `reply_factor` × what it sent us + `reply_burst`
//! + `reply_rate` × T. Cut answers are counted (`replies_limited`).

use std::time::{Duration, Instant};

/// Least bytes charged per entry taken (about a conntrackd TCP flow
/// message).
pub(super) const MIN_RESERVE: u64 = 96;

#[derive(Debug)]
pub(super) struct ReplyBudget {
    /// Bytes that may still be sent again.
    credit: u64,
    /// Time up to which the time refill has been credited.
    at: Instant,
    /// Bytes charged per entry taken: the largest message sent so far.
    reserve: u64,
    /// Part of a NACKed (or skipped) range not taken yet: `[lo, hi]`.
    pub(super) owed: Option<(u64, u64)>,
}

impl ReplyBudget {
    pub(super) fn new(burst: u64, now: Instant) -> Self {
        ReplyBudget {
            credit: burst,
            at: now,
            reserve: MIN_RESERVE,
            owed: None,
        }
    }

    /// Adds the time refill up to `now` (`rate` bytes per second), capped
    /// at `burst`.
    pub(super) fn refill(&mut self, now: Instant, rate: u64, burst: u64) {
        let dt = now.saturating_duration_since(self.at);
        if self.credit >= burst || rate == 0 {
            self.credit = self.credit.min(burst);
            self.at = now;
            return;
        }
        let micros = u64::try_from(dt.as_micros()).unwrap_or(u64::MAX);
        let add = micros.saturating_mul(rate) / 1_000_000;
        if add == 0 {
            return;
        }
        // Only the time the credited bytes stand for is used up, so
        // frequent calls lose no fraction.
        self.at += Duration::from_micros(add.saturating_mul(1_000_000) / rate);
        self.credit = self.credit.saturating_add(add).min(burst);
        if self.credit == burst {
            self.at = now;
        }
    }

    /// Adds `bytes` (received times the factor, or acknowledged), capped
    /// at `burst`.
    pub(super) fn earn(&mut self, bytes: u64, burst: u64) {
        self.credit = self.credit.saturating_add(bytes).min(burst);
    }

    /// How many entries the budget covers now.
    pub(super) fn entries(&self) -> usize {
        usize::try_from(self.credit / self.reserve).unwrap_or(usize::MAX)
    }

    /// Charges `n` entries taken.
    pub(super) fn spend(&mut self, n: usize) {
        let cost = (n as u64).saturating_mul(self.reserve);
        self.credit = self.credit.saturating_sub(cost);
    }

    /// A message of `len` bytes was sent: entries are charged at least
    /// that from now on.
    pub(super) fn saw_message(&mut self, len: usize) {
        self.reserve = self.reserve.max(len as u64);
    }

    /// Adds `[lo, hi]` to what is owed (merged into one range).
    pub(super) fn owe(&mut self, lo: u64, hi: u64) {
        self.owed = Some(match self.owed {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }

    /// When the budget will cover one more entry, if something is owed
    /// (`None` with `rate` 0: only received bytes refill it then).
    pub(super) fn next_refill(&self, rate: u64) -> Option<Instant> {
        self.owed?;
        if rate == 0 {
            return None;
        }
        let short = self.reserve.saturating_sub(self.credit);
        Some(self.at + Duration::from_micros(short.saturating_mul(1_000_000).div_ceil(rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_with_time_and_input_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(1000, t0);
        assert_eq!(b.entries(), 10); // 1000 / 96
        b.spend(10);
        assert_eq!(b.credit, 40);
        // 1000 bytes/s: 1 ms is one byte, credited without losing the
        // fraction over many small steps.
        for k in 1..=100u64 {
            b.refill(t0 + Duration::from_micros(100 * k), 1000, 1000);
        }
        assert_eq!(b.credit, 50);
        b.earn(5000, 1000);
        assert_eq!(b.credit, 1000);
        b.saw_message(200);
        assert_eq!(b.entries(), 5);
        b.spend(5);
        assert_eq!(b.entries(), 0);
        b.owe(7, 9);
        b.owe(3, 5);
        assert_eq!(b.owed, Some((3, 9)));
        let at = b.next_refill(1000).unwrap();
        b.refill(at, 1000, 1000);
        assert_eq!(b.entries(), 1);
    }
}
