//! The counter cases of issue 16 through ftfwd's own socket: one
//! appliance (127.0.0.1) and datagrams sent from its peer's address
//! (127.0.0.2), each counted exactly once in `sync status`: an empty
//! datagram is `malformed`; a 9-byte message is `malformed_payload` only;
//! a far-ahead sequence number is one `seq_jumps` (before, `lost` reached
//! 221,816,098,441); a message before it is `stale`. The engine's every
//! counter is audited in `sync/tests/counter_audit.rs`. Datagrams without
//! an FT-FW message do not count as hearing from the peer. No root needed.

use std::net::UdpSocket;
use std::time::Duration;

use ftfw_control::console::proto::{Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_sync::wire::{flags, Header, MsgType};
use ftfw_testkit::mem::{free_port, ok, start_mem, MemNode};

fn sync_status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

fn alive(seq: u32) -> Vec<u8> {
    Header::new(MsgType::Ctl, flags::ALIVE, 8, seq)
        .to_bytes()
        .to_vec()
}

/// (datagrams_in, msgs_in, malformed, malformed_payload, lost, seq_jumps,
/// stale)
fn counts(s: &SyncStatusInfo) -> [u64; 7] {
    [
        s.datagrams_in,
        s.msgs_in,
        s.malformed,
        s.malformed_payload,
        s.lost,
        s.seq_jumps,
        s.stale,
    ]
}

fn node(name: &str, port: u16) -> (MemNode, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("ftfw-sync-counters-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {}[conntrack]\ncapacity = 1024\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"127.0.0.1\"\npeer = \"127.0.0.2\"\nport = {port}\n\
         alive_interval_ms = 50\nstartup_resync = false\n",
        ftfw_testkit::mem::MEM_BRIDGE
    );
    (start_mem(name, dir.clone(), &text), dir)
}

#[test]
fn each_bad_datagram_from_the_peer_counts_once_in_sync_status() {
    let port = free_port();
    let (mut a, dir) = node("synccounters", port);
    let peer = UdpSocket::bind(("127.0.0.2", port)).unwrap();
    let to = ("127.0.0.1", port);
    // Each step: a datagram, and the exact counts after it.
    let nine = {
        let mut m = Header::new(MsgType::CtNew, 0, 9, 101).to_bytes().to_vec();
        m.push(0);
        m
    };
    let steps: [(&str, Vec<u8>, [u64; 7]); 5] = [
        ("an ALIVE", alive(100), [1, 1, 0, 0, 0, 0, 0]),
        ("an empty datagram", Vec::new(), [2, 1, 1, 0, 0, 0, 0]),
        ("a 9-byte CT_NEW", nine, [3, 2, 1, 1, 0, 0, 0]),
        (
            "a far-ahead number",
            alive(102u32.wrapping_add(0x4000_0000)),
            [4, 3, 1, 1, 0, 1, 0],
        ),
        ("a message before it", alive(102), [5, 4, 1, 1, 0, 1, 1]),
    ];
    for (what, d, want) in steps {
        peer.send_to(&d, to).unwrap();
        ftfw_testkit::wait_until(what, Duration::from_secs(10), || {
            sync_status(&mut a).datagrams_in >= want[0]
        });
        assert_eq!(counts(&sync_status(&mut a)), want, "after {what}");
    }
    a.app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Empty and garbage datagrams from the peer's address are counted but
/// are not the peer speaking: it stays `unknown` (never heard), and the
/// first real message makes it `up`.
#[test]
fn datagrams_without_a_message_do_not_make_the_peer_heard() {
    let port = free_port();
    let (mut a, dir) = node("syncheard", port);
    let peer = UdpSocket::bind(("127.0.0.2", port)).unwrap();
    let to = ("127.0.0.1", port);
    for (i, d) in [Vec::new(), vec![0xff; 3], vec![0u8; 7]].iter().enumerate() {
        peer.send_to(d, to).unwrap();
        ftfw_testkit::wait_until("the datagram counted", Duration::from_secs(10), || {
            sync_status(&mut a).datagrams_in > i as u64
        });
        let s = sync_status(&mut a);
        assert_eq!(s.malformed, i as u64 + 1);
        assert_eq!(s.peer_last_heard_ms, None);
        assert_eq!(s.peer_state, "unknown");
    }
    peer.send_to(&alive(100), to).unwrap();
    ftfw_testkit::wait_until("the ALIVE heard", Duration::from_secs(10), || {
        sync_status(&mut a).peer_last_heard_ms.is_some()
    });
    assert_eq!(sync_status(&mut a).peer_state, "up");
    a.app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
