//! Fuzzes authenticated replication's envelope (`[sync] psk_file`,
//! `control/src/replication/auth.rs`):
//! - the raw bytes, as a datagram from the peer's address: `open` never
//!   panics, a refused datagram is counted exactly once (`auth_failed`,
//!   `replayed` or `unknown_key_id`), an opened one is its length less the
//!   envelope;
//! - the bytes as a plain datagram, sealed by the peer: it opens to
//!   exactly those bytes once; the same datagram again is a replay; from
//!   another address, or with any one bit flipped (position and bit taken
//!   from the input), it does not open.
//!
//! The two ends live across inputs (their counters only grow, as on a
//! real link). Run with `fuzz/run.sh 60 sync_auth`.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, OnceLock};

use ftfw_control::keyring::Keyring;
use ftfw_control::replication::auth::{AuthCounters, SyncAuth, OVERHEAD};
use libfuzzer_sys::fuzz_target;

/// The seeds' key ring (ids 1 and 2; the sender uses 2).
pub const KEYS: &str = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\
                        2 f0e0d0c0b0a090807060504030201000f1e1d1c1b1a191817161514131211101\n";
/// Both ends "start" then (Unix µs): the seeds are sealed after it.
pub const START: u64 = 1_800_000_000_000_000;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const US: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));

struct Ends {
    peer: SyncAuth,
    us: SyncAuth,
    now: u64,
}

fn refused(c: &AuthCounters) -> u64 {
    c.auth_failed + c.replayed + c.unknown_key_id
}

fn ends() -> &'static Mutex<Ends> {
    static E: OnceLock<Mutex<Ends>> = OnceLock::new();
    E.get_or_init(|| {
        let keys = Keyring::parse(KEYS).expect("the fuzz keys parse");
        Mutex::new(Ends {
            peer: SyncAuth::new(keys.clone(), PEER, START),
            us: SyncAuth::new(keys, US, START),
            // Above the seeds' counters (sealed at START + 1000 and on,
            // the only authentic raw inputs), which move our window.
            now: START + 1_000_000,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut guard = ends().lock().unwrap_or_else(|p| p.into_inner());
    let e = &mut *guard;

    // The raw bytes from the peer's address.
    let mut buf = data.to_vec();
    let before = refused(&e.us.counters);
    match e.us.open(PEER, &mut buf) {
        Some(n) => {
            assert_eq!(n + OVERHEAD, data.len(), "opened length");
            assert_eq!(refused(&e.us.counters), before);
        }
        None => assert_eq!(refused(&e.us.counters), before + 1, "counted once"),
    }

    // The bytes sealed by the peer.
    e.now += 1;
    let mut sealed = Vec::new();
    e.peer.seal(data, e.now, &mut sealed);
    assert_eq!(sealed.len(), data.len() + OVERHEAD);
    let mut copy = sealed.clone();
    assert_eq!(e.us.open(PEER, &mut copy), Some(data.len()), "a sealed datagram opens");
    assert_eq!(&copy[..data.len()], data, "to exactly what was sealed");
    let replayed = e.us.counters.replayed;
    let mut again = sealed.clone();
    assert_eq!(e.us.open(PEER, &mut again), None, "a replay opened");
    assert_eq!(e.us.counters.replayed, replayed + 1);
    let mut other = sealed.clone();
    assert_eq!(e.us.open(OTHER, &mut other), None, "opened from another address");
    let pick = data.iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
    let mut flipped = sealed;
    let i = pick % flipped.len();
    flipped[i] ^= 1 << (pick / flipped.len() % 8);
    let before = refused(&e.us.counters);
    assert_eq!(e.us.open(PEER, &mut flipped), None, "a flipped bit at {i} opened");
    assert_eq!(refused(&e.us.counters), before + 1);
});
