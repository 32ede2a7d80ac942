//! Authenticated replication (`[sync] psk_file`) between two appliances in
//! one process on loopback UDP (127.0.0.1 and 127.0.0.2): flows replicate;
//! forged (wrong key, or plain conntrackd format), replayed and
//! bit-flipped datagrams from the peer's address change nothing and are
//! counted; a forged future sequence number cannot stall replication at
//! all; keys rotate by editing the key file, without a restart. No root
//! needed.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_control::console::proto::{FlowFilter, Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::keyring::Keyring;
use ftfw_control::replication::auth::{unix_micros, SyncAuth};
use ftfw_sync::wire::{flags, Header, MsgType};
use ftfw_testkit::flows::{essences, sample_flows};
use ftfw_testkit::mem::{external, free_port, internal, ok, start_mem, MemNode};

const WAIT: Duration = Duration::from_secs(10);

const KEY1: &str = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const KEY2: &str = "2 f0e0d0c0b0a090807060504030201000f1e1d1c1b1a191817161514131211101\n";

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    ftfw_testkit::wait_until(what, WAIT, f);
}

fn dir(name: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("ftfw-auth-{name}-{}-{port}", std::process::id()))
}

/// A node whose `[sync] psk_file` is `keys` (written to its directory).
fn node(name: &str, local: &str, peer: &str, port: u16, keys: &str) -> MemNode {
    let d = dir(name, port);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("sync.keys"), keys).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\n\
         startup_resync = false\npsk_file = \"sync.keys\"\n",
        ftfw_testkit::mem::MEM_BRIDGE
    );
    start_mem(name, d, &text)
}

fn pair(keys: &str) -> (MemNode, MemNode, u16) {
    let port = free_port();
    let a = node("a", "127.0.0.1", "127.0.0.2", port, keys);
    let b = node("b", "127.0.0.2", "127.0.0.1", port, keys);
    (a, b, port)
}

fn sync_status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

fn a_addr() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// A datagram sealed as A would seal it, with `keys`.
fn sealed_as_a(keys: &str, plain: &[u8]) -> Vec<u8> {
    let mut s = SyncAuth::new(Keyring::parse(keys).unwrap(), a_addr(), unix_micros());
    let mut out = Vec::new();
    s.seal(plain, unix_micros(), &mut out);
    out
}

/// Rewrites a key file (a new name renamed over it: never half written).
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn forged_replayed_and_flipped_datagrams_change_nothing_and_are_counted() {
    let (mut a, mut b, port) = pair(KEY1);
    let flows = sample_flows();
    ok(a.app.handle(Request::FlowsAdd {
        flow: flows[0].clone(),
    }));
    wait_until("the first flow at B", || external(&mut b).total == 1);
    wait_until("B's handshake", || sync_status(&mut b).hello == "done");
    let s = sync_status(&mut b);
    assert!(s.authenticated && s.key_id == 1, "{s:?}");
    let seq_in = s.seq_in.expect("B heard A");

    // From A's own address (127.0.0.1): a forged far-future sequence number,
    // plain (conntrackd's format) and sealed with a wrong key; a datagram
    // sealed with a key id B does not have.
    let liar = UdpSocket::bind("127.0.0.1:0").unwrap();
    let forged_seq = seq_in.wrapping_add(1 << 30);
    let future = Header::new(MsgType::Ctl, flags::ALIVE, 8, forged_seq).to_bytes();
    let wrong_key = "1 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n";
    let unknown_id = "9 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    liar.send_to(&future, ("127.0.0.2", port)).unwrap();
    liar.send_to(&sealed_as_a(wrong_key, &future), ("127.0.0.2", port))
        .unwrap();
    liar.send_to(&sealed_as_a(unknown_id, &future), ("127.0.0.2", port))
        .unwrap();
    // A genuine datagram (the right key, A's address), then the same bytes
    // again, then with one bit changed: an ALIVE at B's expected number.
    let genuine = sealed_as_a(
        KEY1,
        &Header::new(MsgType::Ctl, flags::ALIVE, 8, seq_in).to_bytes(),
    );
    liar.send_to(&genuine, ("127.0.0.2", port)).unwrap();
    liar.send_to(&genuine, ("127.0.0.2", port)).unwrap();
    let mut flipped = genuine.clone();
    flipped[24] ^= 0x04;
    liar.send_to(&flipped, ("127.0.0.2", port)).unwrap();
    liar.send_to(&[], ("127.0.0.2", port)).unwrap();
    wait_until("B to count them", || {
        let s = sync_status(&mut b);
        s.auth_failed >= 4 && s.unknown_key_id >= 1 && s.replayed >= 1
    });
    let s = sync_status(&mut b);
    assert_eq!(
        (s.auth_failed, s.unknown_key_id, s.replayed),
        (4, 1, 1),
        "plain, wrong key, flipped, empty; unknown id; replay: {s:?}"
    );
    assert_ne!(s.seq_in, Some(forged_seq), "the forgery reached the engine");
    assert_eq!(s.malformed, 0, "{s:?}");

    // Replication goes on at once: no stall, no out-of-sync recovery.
    ok(a.app.handle(Request::FlowsDelete {
        filter: FlowFilter::default(),
    }));
    for fj in &flows[1..4] {
        ok(a.app.handle(Request::FlowsAdd { flow: fj.clone() }));
    }
    let want = essences(&internal(&mut a));
    wait_until("B's external cache to equal A's table", || {
        essences(&external(&mut b)) == want
    });
    let s = sync_status(&mut b);
    // Stale: only the genuine ALIVE we sent (a number B had taken).
    assert_eq!((s.stale, s.out_of_sync_resyncs), (1, 0), "{s:?}");
    assert!(!s.out_of_sync);
    assert_eq!(s.peer_state, "up");
    assert_eq!(sync_status(&mut a).auth_failed, 0);
}

#[test]
fn keys_rotate_by_editing_the_key_file() {
    let (mut a, mut b, port) = pair(KEY1);
    let flows = sample_flows();
    ok(a.app.handle(Request::FlowsAdd {
        flow: flows[0].clone(),
    }));
    wait_until("the first flow at B", || external(&mut b).total == 1);
    let (fa, fb) = (
        dir("a", port).join("sync.keys"),
        dir("b", port).join("sync.keys"),
    );

    // B learns key 2 first, then A starts using it.
    rewrite(&fb, &format!("{KEY1}{KEY2}"));
    wait_until("B to take key 2", || sync_status(&mut b).key_reloads == 1);
    assert_eq!(sync_status(&mut b).key_id, 2, "B sends with its newest key");
    rewrite(&fa, &format!("{KEY1}{KEY2}"));
    wait_until("A to take key 2", || sync_status(&mut a).key_id == 2);
    // Key 1 retired on both.
    rewrite(&fb, KEY2);
    rewrite(&fa, KEY2);
    wait_until("both to drop key 1", || {
        sync_status(&mut a).key_reloads == 2 && sync_status(&mut b).key_reloads == 2
    });
    // A broken file is refused; the keys in use stay.
    rewrite(&fa, "2 00\n");
    wait_until("A to refuse it", || {
        sync_status(&mut a).key_reload_errors == 1
    });
    assert_eq!(sync_status(&mut a).key_id, 2);

    for fj in &flows[1..4] {
        ok(a.app.handle(Request::FlowsAdd { flow: fj.clone() }));
    }
    let want = essences(&internal(&mut a));
    wait_until("flows under the new key", || {
        essences(&external(&mut b)) == want
    });
    let s = sync_status(&mut b);
    assert_eq!((s.auth_failed, s.unknown_key_id), (0, 0), "{s:?}");
}

#[test]
fn a_plain_peer_is_not_heard_by_an_authenticated_one() {
    let port = free_port();
    let d = dir("plain", port);
    let mut a = start_mem(
        "plain",
        d,
        &format!(
            "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
             {}[conntrack]\ncapacity = 65536\n\n[rules]\npolicy = \"accept\"\n\n\
             [sync]\nlocal = \"127.0.0.1\"\npeer = \"127.0.0.2\"\nport = {port}\n\
             alive_interval_ms = 50\nstartup_resync = false\n",
            ftfw_testkit::mem::MEM_BRIDGE
        ),
    );
    let mut b = node("b", "127.0.0.2", "127.0.0.1", port, KEY1);
    ok(a.app.handle(Request::FlowsAdd {
        flow: sample_flows().remove(0),
    }));
    wait_until("B to refuse A's plain datagrams", || {
        sync_status(&mut b).auth_failed >= 3
    });
    assert_eq!(external(&mut b).total, 0);
    assert_eq!(sync_status(&mut b).msgs_in, 0);
}
