//! Cluster: the filter a port applies to drop another member's frames
//! before they reach the worker (see `worker/bucket_filter.rs`).
//!
//! AF_PACKET ports give the kernel [`BucketFilter::program`], a classic BPF
//! socket filter; `mem` ports apply [`BucketFilter::keeps`], the same
//! decision in native code (as the kernel runs the program compiled), so
//! the in-process labs and benches model what the kernel does. The two are
//! held equal by a property test, and the program is checked against the
//! real kernel by a root test (`dataplane/tests/af_packet.rs`).

use crate::buckets::BucketSet;
use crate::packet::ethernet::MacAddr;

use super::steer::{bucket_filter_program, Insn, PORTED};

/// The buckets a member owns, as its ports filter them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketFilter {
    owned: BucketSet,
    shared_mac: Option<MacAddr>,
}

fn be(f: &[u8], at: usize, len: usize) -> Option<u32> {
    let b = f.get(at..at.checked_add(len)?)?;
    Some(b.iter().fold(0u32, |v, &c| v << 8 | u32::from(c)))
}

impl BucketFilter {
    /// Keeps the frames of `owned` buckets and every frame the worker
    /// buckets otherwise; in routed mode (`shared_mac`), every frame not
    /// sent to the shared MAC too.
    pub fn new(owned: BucketSet, shared_mac: Option<MacAddr>) -> BucketFilter {
        BucketFilter { owned, shared_mac }
    }

    /// The classic BPF program for a packet socket
    /// ([`bucket_filter_program`]); `None` when it would be longer than
    /// the kernel takes.
    pub fn program(&self) -> Option<Vec<Insn>> {
        bucket_filter_program(&self.owned, self.shared_mac)
    }

    /// Whether the program keeps `frame` (as it reaches a `mem` port: a
    /// VLAN tag still in it, where the kernel would have moved it out).
    /// A load past the end drops the frame, as in the kernel.
    pub fn keeps(&self, frame: &[u8]) -> bool {
        self.decide(frame).unwrap_or(false)
    }

    fn decide(&self, f: &[u8]) -> Option<bool> {
        if let Some(m) = self.shared_mac {
            if be(f, 0, 4)? != u32::from_be_bytes([m[0], m[1], m[2], m[3]])
                || be(f, 4, 2)? != u32::from(u16::from_be_bytes([m[4], m[5]]))
            {
                return Some(true);
            }
        }
        let (ethertype, n) = match be(f, 12, 2) {
            Some(0x8100 | 0x88a8) => (be(f, 16, 2)?, 18),
            Some(e) => (e, 14),
            // Shorter than an Ethernet header (the kernel delivers none):
            // the worker counts it malformed.
            None => return Some(true),
        };
        let h = match ethertype {
            0x0800 => {
                if be(f, n + 6, 2)? & 0x3fff != 0 {
                    // A fragment.
                    return Some(true);
                }
                let addrs = be(f, n + 12, 4)? ^ be(f, n + 16, 4)?;
                let proto = u8::try_from(be(f, n + 9, 1)?).unwrap_or(0);
                let ihl = 4 * (be(f, n, 1)? as usize & 0xf);
                if PORTED.contains(&proto) {
                    let ports = be(f, n + ihl, 4)?;
                    addrs ^ (ports >> 16) ^ (ports & 0xffff)
                } else if proto == 1 {
                    match be(f, n + ihl, 1)? {
                        0 | 8 => addrs ^ be(f, n + ihl + 4, 2)?,
                        // Errors go by the flow they quote.
                        _ => return Some(true),
                    }
                } else {
                    addrs
                }
            }
            0x86dd => {
                let mut addrs = 0;
                for k in (8..40).step_by(4) {
                    addrs ^= be(f, n + k, 4)?;
                }
                let next = u8::try_from(be(f, n + 6, 1)?).unwrap_or(0);
                if !PORTED.contains(&next) {
                    // Extension headers, ICMPv6 and the rest.
                    return Some(true);
                }
                let ports = be(f, n + 40, 4)?;
                addrs ^ (ports >> 16) ^ (ports & 0xffff)
            }
            _ => return Some(true),
        };
        // The steering hash, then its bucket, as `bucket_of_tuple`.
        let b = crate::buckets::bucket_of_steering(super::steer::mix(h), self.owned.universe());
        Some(self.owned.contains(b))
    }
}
