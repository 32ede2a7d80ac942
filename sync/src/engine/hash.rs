//! The hasher of the engine's flow table.
//!
//! The engine hashes a [`FlowKey`] several times per message sent (queue,
//! encode, commit, acknowledge); std's SipHash-1-3 over the derived `Hash`
//! (nine small writes) was a quarter of the sync core's time. This is a
//! seeded folded-multiply hash in the style of foldhash: 16 bytes per
//! 64x64->128-bit multiply, small integers packed losslessly into one word
//! and mixed in at the end. The seeds are random per engine (taken from
//! std's `RandomState`), so tuples chosen by someone on the data path cannot
//! be aimed at one bucket without knowing them.
//!
//! Public so the receiving side can key its tables the same way (the
//! external cache of `ftfw-control` applies every received flow with one
//! lookup; SipHash there was a fifth of a bulk receiver's time).
//!
//! [`FlowKey`]: ftfw_dataplane::flow::FlowKey

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`KeyHasher`]s with this engine's random seeds.
#[derive(Clone, Debug)]
pub struct KeyState {
    k: [u64; 4],
}

impl KeyState {
    /// Fresh random seeds.
    pub fn new() -> KeyState {
        let r = RandomState::new();
        let mut k = [0u64; 4];
        for (i, s) in (0u64..).zip(k.iter_mut()) {
            // Odd multipliers keep the low bits alive.
            *s = r.hash_one(i) | 1;
        }
        KeyState { k }
    }
}

impl Default for KeyState {
    fn default() -> Self {
        KeyState::new()
    }
}

impl BuildHasher for KeyState {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            h: self.k[2],
            small: 0,
            k: self.k,
        }
    }
}

/// The hasher; see the module docs.
#[derive(Clone, Debug)]
pub struct KeyHasher {
    h: u64,
    small: u64,
    k: [u64; 4],
}

#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    // The two halves of the 128-bit product, folded: the point of the cast.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (p as u64, (p >> 64) as u64);
    lo ^ hi
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, a: u64, b: u64) {
        self.h = folded_mul(self.h ^ a ^ self.k[0], b ^ self.k[1]);
    }

    #[inline]
    fn small(&mut self, bits: u32, x: u64) {
        self.small = self.small.rotate_left(bits) ^ x;
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let (a, b) = c.split_at(8);
            let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
            let b = u64::from_le_bytes(b.try_into().unwrap_or_default());
            self.mix(a, b);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut t = [0u8; 16];
            t[..rest.len()].copy_from_slice(rest);
            let (a, b) = t.split_at(8);
            let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
            let b = u64::from_le_bytes(b.try_into().unwrap_or_default());
            self.mix(a, b ^ rest.len() as u64);
        }
    }

    #[inline]
    fn write_u8(&mut self, x: u8) {
        self.small(8, u64::from(x));
    }

    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.small(16, u64::from(x));
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.small(32, u64::from(x));
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.mix(x, self.small);
        self.small = 0;
    }

    /// Slice length prefixes come through here: packed like the small
    /// integers, no multiply.
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.small(64, x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_mul(self.h ^ self.small ^ self.k[2], self.k[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{proto, FlowKey, Tuple};
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    fn key(i: u32, port: u16, zone: u16) -> FlowKey {
        FlowKey {
            orig: Tuple::new(
                Ipv4Addr::from(0x0a00_0000 + i).into(),
                Ipv4Addr::new(192, 0, 2, 1).into(),
                proto::TCP,
                port,
                443,
            ),
            zone,
        }
    }

    #[test]
    fn every_field_changes_the_hash_and_buckets_spread() {
        let s = KeyState::new();
        let base = s.hash_one(key(1, 40000, 0));
        assert_ne!(base, s.hash_one(key(2, 40000, 0)));
        assert_ne!(base, s.hash_one(key(1, 40001, 0)));
        assert_ne!(base, s.hash_one(key(1, 40000, 1)));
        let mut k = key(1, 40000, 0);
        k.orig.proto = proto::UDP;
        assert_ne!(base, s.hash_one(k));
        k = key(1, 40000, 0);
        k.orig.dst_port = 80;
        assert_ne!(base, s.hash_one(k));
        // Sequential addresses fill low and high bits alike (hashbrown uses
        // both): 4096 keys into 256 low buckets and 128 top-7-bit tags.
        let hs: Vec<u64> = (0..4096).map(|i| s.hash_one(key(i, 40000, 0))).collect();
        let low: HashSet<u64> = hs.iter().map(|h| h & 0xff).collect();
        let top: HashSet<u64> = hs.iter().map(|h| h >> 57).collect();
        assert_eq!(low.len(), 256);
        assert_eq!(top.len(), 128);
        assert_eq!(hs.iter().collect::<HashSet<_>>().len(), 4096);
        // Another engine, other seeds.
        assert_ne!(KeyState::new().hash_one(key(1, 40000, 0)), base);
    }
}
