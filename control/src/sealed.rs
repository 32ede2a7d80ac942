//! Authenticated datagrams: what the election's and the cluster
//! coordinator's wire formats share.
//!
//! Both are `header (magic, version, type, sender u32, counter u64) | body
//! | tag`, where the tag is the first [`TAG_LEN`] bytes of
//! HMAC-SHA256(pre-shared key, everything before it), and a receiver takes
//! a sender's message only if its counter is above the last one it took
//! from that sender. [`Sealer`] holds the keys, our counter and the
//! per-sender counters. Keys rotate (issue 16) as the sync's do: a key
//! file of `ID HEX` lines ([`crate::keyring`]) gives several keys;
//! senders tag with the newest (highest id), receivers take a tag made
//! with any of them (the wire carries no key id: each key is tried,
//! newest first, a handful of HMACs at most for these low-rate messages); [`Reader`] is the checked big-endian reader both
//! body decoders use. The formats themselves (magic, bodies) stay in
//! `election::wire` and `cluster::wire`.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Tag length (truncated HMAC-SHA256).
pub const TAG_LEN: usize = 16;
/// Shortest pre-shared key accepted.
pub const MIN_KEY_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The key is shorter than [`MIN_KEY_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pre-shared key must be at least {MIN_KEY_LEN} bytes")]
pub struct KeyTooShort;

/// One node's key, send counter and the counters it took from others.
#[derive(Clone)]
pub struct Sealer {
    node: u32,
    /// The keys' MACs, newest (highest id) first; never empty.
    macs: Vec<HmacSha256>,
    next_counter: u64,
    last_seen: HashMap<u32, u64>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("node", &self.node)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `node`; its first message carries `initial_counter + 1`
    /// (a restarted node passes a larger base, e.g. its start time in
    /// microseconds, so that its peers take its messages again).
    pub fn new(node: u32, key: &[u8], initial_counter: u64) -> Result<Sealer, KeyTooShort> {
        Ok(Sealer {
            node,
            macs: vec![mac_of(key)?],
            next_counter: initial_counter.saturating_add(1),
            last_seen: HashMap::new(),
        })
    }

    /// Takes the keys of `ring` (see the module docs); the counters stay.
    pub fn set_keys(&mut self, ring: &crate::keyring::Keyring) -> Result<(), KeyTooShort> {
        let mut macs = Vec::new();
        for id in ring.ids().into_iter().rev() {
            macs.push(mac_of(ring.get(id).unwrap_or_default())?);
        }
        if macs.is_empty() {
            return Err(KeyTooShort);
        }
        self.macs = macs;
        Ok(())
    }

    /// This node.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The counter for the next message (and moves past it).
    pub fn take_counter(&mut self) -> u64 {
        let c = self.next_counter;
        self.next_counter = self.next_counter.saturating_add(1);
        c
    }

    /// The counter the next message will carry.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Appends the tag of `out` (header and body) to it.
    pub fn seal(&self, out: &mut Vec<u8>) {
        let Some(mac) = self.macs.first() else {
            return;
        };
        let mut mac = mac.clone();
        mac.update(out);
        let full = mac.finalize().into_bytes();
        out.extend_from_slice(&full[..TAG_LEN]);
    }

    /// The signed part of `bytes` if its tag is right (constant time);
    /// `None` for a bad tag or a datagram shorter than a tag.
    pub fn open<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let cut = bytes.len().checked_sub(TAG_LEN)?;
        let (signed, tag) = bytes.split_at(cut);
        self.macs.iter().find_map(|m| {
            let mut mac = m.clone();
            mac.update(signed);
            mac.verify_truncated_left(tag).ok().map(|()| signed)
        })
    }

    /// Takes `counter` from `sender` if it is another node's and above the
    /// last one taken from it (and records it); false for a replay or our
    /// own message coming back. Call only for a datagram that passed every
    /// other check, so that a forged one cannot block a genuine one.
    pub fn accept(&mut self, sender: u32, counter: u64) -> bool {
        if sender == self.node || self.last_seen.get(&sender).is_some_and(|&l| counter <= l) {
            return false;
        }
        self.last_seen.insert(sender, counter);
        true
    }
}

fn mac_of(key: &[u8]) -> Result<HmacSha256, KeyTooShort> {
    if key.len() < MIN_KEY_LEN {
        return Err(KeyTooShort);
    }
    HmacSha256::new_from_slice(key).map_err(|_| KeyTooShort)
}

/// A body ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Short;

/// A checked big-endian reader: every accessor fails instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.buf.len() < n {
            return Err(Short);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Short> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, Short> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_datagrams_open_only_untouched_and_counters_only_grow() {
        let mut a = Sealer::new(1, &[7; 16], 100).unwrap();
        let mut b = Sealer::new(2, &[7; 16], 0).unwrap();
        assert_eq!(a.take_counter(), 101);
        let mut d = b"header and body".to_vec();
        a.seal(&mut d);
        assert_eq!(b.open(&d), Some(&b"header and body"[..]));
        let mut bad = d.clone();
        bad[3] ^= 1;
        assert_eq!(b.open(&bad), None);
        assert_eq!(b.open(&d[..5]), None);
        let other = Sealer::new(2, &[8; 16], 0).unwrap();
        assert_eq!(other.open(&d), None);
        assert!(b.accept(1, 101));
        assert!(!b.accept(1, 101), "a replay");
        assert!(!b.accept(1, 50), "an older counter");
        assert!(b.accept(1, 102));
        assert!(!b.accept(2, 999), "our own message");
        assert_eq!(Sealer::new(1, &[0; 15], 0).unwrap_err(), KeyTooShort);
    }

    #[test]
    fn keys_rotate_newest_sends_any_opens() {
        use crate::keyring::Keyring;
        let k1 = format!("1 {}\n", "07".repeat(16));
        let k12 = format!("{k1}2 {}\n", "08".repeat(16));
        let mut old = Sealer::new(1, &[7; 16], 0).unwrap();
        let mut new = Sealer::new(2, &[0; 16], 0).unwrap();
        new.set_keys(&Keyring::parse(&k12).unwrap()).unwrap();
        // The new node tags with key 2, which the old one does not have.
        let mut d = b"from the new node".to_vec();
        new.seal(&mut d);
        assert_eq!(old.open(&d), None);
        // It takes the old node's key 1 tags.
        let mut e = b"from the old node".to_vec();
        old.seal(&mut e);
        assert_eq!(new.open(&e), Some(&b"from the old node"[..]));
        // The old node gets key 2 (file edited): both open both.
        old.set_keys(&Keyring::parse(&k12).unwrap()).unwrap();
        assert_eq!(old.open(&d), Some(&b"from the new node"[..]));
        // Key 1 removed: a key-1 tag no longer opens.
        new.set_keys(&Keyring::parse(&format!("2 {}\n", "08".repeat(16))).unwrap())
            .unwrap();
        assert_eq!(new.open(&e), None);
        let mut f = b"again".to_vec();
        old.seal(&mut f);
        assert_eq!(new.open(&f), Some(&b"again"[..]));
    }

    #[test]
    fn the_reader_fails_instead_of_panicking() {
        let mut r = Reader::new(&[1, 0, 0, 0, 2, 9]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u32(), Ok(2));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u64(), Err(Short));
        assert_eq!(r.u8(), Ok(9));
        assert_eq!(r.u8(), Err(Short));
    }
}
