//! Authenticated, encrypted sync datagrams (`[sync] psk` / `psk_file`).
//!
//! Each FT-FW datagram travels as
//! `"FS" | version 1 | key id | incarnation u32 | counter u64 | ciphertext
//! | tag (16)`, sealed with AES-256-GCM (`ring`'s implementation: AES-NI,
//! VAES and carry-less multiply over several blocks at once where the CPU
//! has them, about four times the `aes-gcm` crate's speed on a full
//! datagram, which issue 16's throughput target needed): the 16-byte
//! header is the associated data, its last 12 bytes (incarnation and
//! counter) the nonce. The incarnation is
//! random per start, so that even a clock set back across a restart never
//! repeats a nonce. The AEAD key of a sender is derived from the
//! pre-shared key and the sender's address on the sync link
//! (HMAC-SHA256(psk, "ftfw sync v1" | id | address)), so the two ends of a
//! pair (or every cluster member) never share a nonce space, and a datagram
//! replayed from another address does not open.
//!
//! The counter is `max(last + 1, Unix time in µs)`: it only grows, across
//! restarts too. A receiver keeps a window per sender (the highest counter
//! and a 64-bit bitmap below it) and takes a counter once; the first one
//! it takes from a sender must be no older than [`CLOCK_SLACK_US`] before
//! its own start (so that datagrams recorded before a restart cannot be
//! replayed to the new process). Forged, bit-flipped and replayed
//! datagrams change nothing: they are dropped and counted before the
//! protocol engine sees them. Sans-IO: times are passed in.

use std::collections::HashMap;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::Sha256;

use crate::keyring::Keyring;

/// Header (nonce and associated data) length.
pub const HEADER_LEN: usize = 16;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to the plain one.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// How far before our start the first counter taken from a sender may be
/// (the nodes' clocks must agree within this).
pub const CLOCK_SLACK_US: u64 = 300_000_000;
/// Counters below the highest taken that the window still remembers.
const WINDOW: u64 = 64;

const MAGIC: [u8; 2] = *b"FS";
const VERSION: u8 = 1;

/// What authentication dropped, and key reloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthCounters {
    /// Datagrams that did not open: too short, not our format, a wrong key
    /// or a changed bit.
    pub auth_failed: u64,
    /// Datagrams whose counter was taken before (or too old to tell).
    pub replayed: u64,
    /// Datagrams sealed with a key id we do not have.
    pub unknown_key_id: u64,
    /// Key rings taken that differ from the one in use (the key file's
    /// refusals are counted by its watch).
    pub key_reloads: u64,
}

/// One sender's replay window.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Highest counter taken.
    top: u64,
    /// Bit `i`: counter `top - i` was taken.
    seen: u64,
}

impl Window {
    fn fresh(&self, c: u64) -> bool {
        if c > self.top {
            return true;
        }
        let back = self.top - c;
        back < WINDOW && self.seen & (1 << back) == 0
    }

    fn take(&mut self, c: u64) {
        if c > self.top {
            let shift = c - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = c;
        } else {
            self.seen |= 1 << (self.top - c);
        }
    }
}

/// Our keys, our counter and the peers' windows.
pub struct SyncAuth {
    keys: Keyring,
    /// Our address on the link (our datagrams' key is derived from it).
    local: IpAddr,
    /// AEADs by key id and sender address.
    ciphers: HashMap<(u8, IpAddr), LessSafeKey>,
    last_counter: u64,
    /// Random per start (the nonce's first 4 bytes).
    incarnation: [u8; 4],
    windows: HashMap<IpAddr, Window>,
    /// Lowest counter a new sender's first datagram may carry.
    floor: u64,
    /// What was dropped.
    pub counters: AuthCounters,
}

impl std::fmt::Debug for SyncAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncAuth")
            .field("keys", &self.keys)
            .field("local", &self.local)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn derive(key: &[u8], id: u8, sender: IpAddr) -> LessSafeKey {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"ftfw sync v1");
    mac.update(&[id]);
    match sender {
        IpAddr::V4(a) => mac.update(&a.octets()),
        IpAddr::V6(a) => mac.update(&a.octets()),
    }
    let k = mac.finalize().into_bytes();
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &k).expect("HMAC-SHA256 gives AES-256's key length"),
    )
}

impl SyncAuth {
    /// Authentication with `keys` for a node at `local` that starts at
    /// `start_us` (Unix time in µs).
    pub fn new(keys: Keyring, local: IpAddr, start_us: u64) -> SyncAuth {
        SyncAuth {
            keys,
            local,
            ciphers: HashMap::new(),
            last_counter: 0,
            incarnation: incarnation(start_us),
            windows: HashMap::new(),
            floor: start_us.saturating_sub(CLOCK_SLACK_US),
            counters: AuthCounters::default(),
        }
    }

    /// The key id our datagrams use.
    pub fn key_id(&self) -> u8 {
        self.keys.newest().0
    }

    /// Takes a new key ring (a reloaded key file): senders switch to its
    /// newest key, receivers accept its keys only.
    pub fn set_keys(&mut self, keys: Keyring) {
        if keys != self.keys {
            self.keys = keys;
            self.ciphers.clear();
            self.counters.key_reloads += 1;
        }
    }

    fn cipher(&mut self, id: u8, sender: IpAddr) -> Option<&LessSafeKey> {
        if !self.ciphers.contains_key(&(id, sender)) {
            let c = derive(self.keys.get(id)?, id, sender);
            self.ciphers.insert((id, sender), c);
        }
        self.ciphers.get(&(id, sender))
    }

    /// Seals `plain` into `out` (cleared first) at `now_us` (Unix µs).
    pub fn seal(&mut self, plain: &[u8], now_us: u64, out: &mut Vec<u8>) {
        let counter = now_us.max(self.last_counter.saturating_add(1));
        self.last_counter = counter;
        let id = self.key_id();
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(id);
        out.extend_from_slice(&self.incarnation);
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(plain);
        let local = self.local;
        let cipher = self
            .cipher(id, local)
            .expect("the newest key is in the ring");
        let (head, body) = out.split_at_mut(HEADER_LEN);
        let tag = cipher
            .seal_in_place_separate_tag(nonce(head), Aad::from(&*head), body)
            .expect("a datagram is far below the AEAD's length limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens the datagram in `buf` from `sender`: on success the plain
    /// datagram is moved to the front of `buf` and its length returned;
    /// otherwise it is counted and `None` returned.
    pub fn open(&mut self, sender: IpAddr, buf: &mut [u8]) -> Option<usize> {
        let n = buf.len();
        if n < OVERHEAD || buf[..2] != MAGIC || buf[2] != VERSION {
            self.counters.auth_failed += 1;
            return None;
        }
        let id = buf[3];
        let mut c = [0u8; 8];
        c.copy_from_slice(&buf[8..16]);
        let counter = u64::from_be_bytes(c);
        let floor = self.floor;
        let fresh = match self.windows.get(&sender) {
            Some(w) => w.fresh(counter),
            None => counter >= floor,
        };
        let Some(cipher) = self.cipher(id, sender) else {
            self.counters.unknown_key_id += 1;
            return None;
        };
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&buf[..HEADER_LEN]);
        // Opens the ciphertext and tag behind the header and moves the
        // plain datagram to the front of `buf`.
        if cipher
            .open_within(nonce(&head), Aad::from(&head), buf, HEADER_LEN..)
            .is_err()
        {
            self.counters.auth_failed += 1;
            return None;
        }
        // Only an authentic datagram moves the window (a forged one
        // cannot block the genuine ones).
        if !fresh {
            self.counters.replayed += 1;
            return None;
        }
        self.windows
            .entry(sender)
            .or_insert(Window { top: 0, seen: 0 })
            .take(counter);
        Some(n - OVERHEAD)
    }
}

/// The nonce of a datagram: its header's last 12 bytes.
fn nonce(head: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n.copy_from_slice(&head[4..HEADER_LEN]);
    Nonce::assume_unique_for_key(n)
}

/// Four random bytes from the kernel (the start time's low bits mixed in
/// if it has none to give).
fn incarnation(start_us: u64) -> [u8; 4] {
    use std::io::Read;
    let mut b = [0u8; 4];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if got.is_err() {
        let t = (start_us ^ u64::from(std::process::id())).to_be_bytes();
        b.copy_from_slice(&t[4..]);
    }
    b
}

/// The current Unix time in µs.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000_000;

    fn ring(ids: &[u8]) -> Keyring {
        let text: String = ids
            .iter()
            .map(|i| format!("{i} {}\n", format!("{i:02x}").repeat(32)))
            .collect();
        Keyring::parse(&text).unwrap()
    }

    fn a() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }
    fn b() -> IpAddr {
        "192.0.2.2".parse().unwrap()
    }

    fn sealed(s: &mut SyncAuth, plain: &[u8], now: u64) -> Vec<u8> {
        let mut out = Vec::new();
        s.seal(plain, now, &mut out);
        out
    }

    fn open(r: &mut SyncAuth, from: IpAddr, d: &[u8]) -> Option<Vec<u8>> {
        let mut buf = d.to_vec();
        r.open(from, &mut buf).map(|n| buf[..n].to_vec())
    }

    /// The bytes a build with the `aes-gcm` crate sealed (before the
    /// switch to `ring`): nodes of both builds read each other.
    #[test]
    fn sealing_is_byte_for_byte_what_earlier_builds_sent() {
        const EARLIER: &str = "465301010a0b0c0d0006651728988000\
                               e397c331601067c7968b6be1fd\
                               da31d76be88d88bf6ab8f5c9467f4c50";
        let mut tx = SyncAuth::new(ring(&[1]), a(), T0);
        tx.incarnation = [0xa, 0xb, 0xc, 0xd];
        let d = sealed(&mut tx, b"ft-fw message", T0);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, EARLIER);
        let mut rx = SyncAuth::new(ring(&[1]), b(), T0);
        assert_eq!(
            open(&mut rx, a(), &d).as_deref(),
            Some(&b"ft-fw message"[..])
        );
    }

    #[test]
    fn sealed_datagrams_open_once_and_only_untouched() {
        let mut tx = SyncAuth::new(ring(&[1]), a(), T0);
        let mut rx = SyncAuth::new(ring(&[1]), b(), T0);
        let d = sealed(&mut tx, b"ft-fw message", T0);
        assert_eq!(d.len(), 13 + OVERHEAD);
        assert!(!d.windows(13).any(|w| w == b"ft-fw message"), "encrypted");
        assert_eq!(
            open(&mut rx, a(), &d).as_deref(),
            Some(&b"ft-fw message"[..])
        );
        assert_eq!(open(&mut rx, a(), &d), None, "a replay");
        assert_eq!(rx.counters.replayed, 1);
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x10;
            assert_eq!(open(&mut rx, a(), &bad), None, "bit flipped at {i}");
        }
        assert_eq!(
            rx.counters.auth_failed + rx.counters.unknown_key_id,
            d.len() as u64
        );
        assert_eq!(rx.counters.unknown_key_id, 1, "the flipped key id");
        // From another address the key differs: it does not open.
        let d2 = sealed(&mut tx, b"x", T0);
        assert_eq!(open(&mut rx, b(), &d2), None);
        assert_eq!(open(&mut rx, a(), &d2).as_deref(), Some(&b"x"[..]));
        // Too short, empty, plain conntrackd messages.
        assert_eq!(open(&mut rx, a(), &[]), None);
        assert_eq!(open(&mut rx, a(), &[0; OVERHEAD - 1]), None);
        let before = rx.counters.auth_failed;
        assert_eq!(
            open(&mut rx, a(), &[1, 0, 0, 40, 0, 0, 0, 9].repeat(5)),
            None
        );
        assert_eq!(rx.counters.auth_failed, before + 1);
    }

    #[test]
    fn the_window_takes_reordered_counters_once_and_forgets_old_ones() {
        let mut tx = SyncAuth::new(ring(&[1]), a(), T0);
        let mut rx = SyncAuth::new(ring(&[1]), b(), T0);
        let ds: Vec<Vec<u8>> = (0..100).map(|i| sealed(&mut tx, &[i], T0)).collect();
        // Counters T0..T0+99; take them out of order.
        assert!(open(&mut rx, a(), &ds[50]).is_some());
        assert!(open(&mut rx, a(), &ds[10]).is_some(), "40 back: inside");
        assert!(open(&mut rx, a(), &ds[10]).is_none(), "taken");
        assert!(open(&mut rx, a(), &ds[99]).is_some());
        assert!(open(&mut rx, a(), &ds[36]).is_some(), "63 back: inside");
        assert!(open(&mut rx, a(), &ds[35]).is_none(), "64 back: too old");
        assert!(
            open(&mut rx, a(), &ds[50]).is_none(),
            "taken before the jump"
        );
        assert_eq!(rx.counters.replayed, 3);
        assert_eq!(rx.counters.auth_failed, 0);
    }

    #[test]
    fn a_restarted_receiver_refuses_datagrams_from_before_its_start() {
        let mut tx = SyncAuth::new(ring(&[1]), a(), T0);
        let old = sealed(&mut tx, b"old", T0);
        let later = T0 + CLOCK_SLACK_US + 1_000_000;
        let mut rx = SyncAuth::new(ring(&[1]), b(), later);
        assert_eq!(open(&mut rx, a(), &old), None);
        assert_eq!(rx.counters.replayed, 1);
        // The sender's counter follows its clock: new datagrams are taken.
        let new = sealed(&mut tx, b"new", later);
        assert_eq!(open(&mut rx, a(), &new).as_deref(), Some(&b"new"[..]));
        // A restarted sender's counters continue above the old ones.
        let mut tx2 = SyncAuth::new(ring(&[1]), a(), later + 5);
        assert!(open(&mut rx, a(), &sealed(&mut tx2, b"again", later + 5)).is_some());
    }

    #[test]
    fn keys_rotate_senders_use_the_newest_and_receivers_any() {
        let mut tx = SyncAuth::new(ring(&[1]), a(), T0);
        let mut rx = SyncAuth::new(ring(&[1]), b(), T0);
        let d1 = sealed(&mut tx, b"one", T0);
        assert_eq!(d1[3], 1);
        // The receiver learns key 2 first, then the sender.
        rx.set_keys(ring(&[1, 2]));
        assert_eq!(rx.counters.key_reloads, 1);
        rx.set_keys(ring(&[1, 2]));
        assert_eq!(rx.counters.key_reloads, 1, "unchanged: not a reload");
        assert!(open(&mut rx, a(), &d1).is_some());
        tx.set_keys(ring(&[1, 2]));
        let d2 = sealed(&mut tx, b"two", T0);
        assert_eq!(d2[3], 2);
        assert!(open(&mut rx, a(), &d2).is_some());
        // Key 1 retired: its datagrams are an unknown id.
        rx.set_keys(ring(&[2]));
        tx.set_keys(ring(&[1]));
        let d3 = sealed(&mut tx, b"old key", T0);
        assert_eq!(open(&mut rx, a(), &d3), None);
        assert_eq!(rx.counters.unknown_key_id, 1);
        // A wrong key under a known id fails authentication.
        let other = Keyring::single(2, vec![0xab; 32]).unwrap();
        let mut forger = SyncAuth::new(other, a(), T0);
        assert_eq!(
            open(&mut rx, a(), &sealed(&mut forger, b"f", T0 + 99)),
            None
        );
        assert_eq!(rx.counters.auth_failed, 1);
    }
}
