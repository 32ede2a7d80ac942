//! The two alternatives to FT-FW that the failover lab compares it with
//! (FT-FW paper, section 7.2): `transport = "udp-best-effort"` (conntrackd
//! NOTRACK over UDP) and `transport = "tcp"` (NOTRACK over TCP). Two
//! appliances in one process on 127.0.0.1 and 127.0.0.2: flows reach the
//! peer's external cache field by field, deletes propagate, commit works,
//! a restarted peer catches up, and bad connections are refused or closed
//! without harm. No root needed.

use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use ftfw_control::console::proto::{
    FlowFilter, FlowJson, Payload, Request, SyncStatusInfo, TcpLinkInfo,
};
use ftfw_control::console::ConsoleHandler;
use ftfw_testkit::flows::{essences, flow, sample_flows, tuple};
use ftfw_testkit::mem::{assert_no_echo, external, internal, ok, start_mem, MemNode, MEM_BRIDGE};

const WAIT: Duration = Duration::from_secs(10);

/// Waits until `f` returns true, or panics with `what` after [`WAIT`].
fn wait_until(what: &str, f: impl FnMut() -> bool) {
    ftfw_testkit::wait_until(what, WAIT, f);
}

/// A port free for TCP and UDP on both 127.0.0.1 and 127.0.0.2.
fn free_port() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        let ok = TcpListener::bind(("127.0.0.2", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.2", port)).is_ok();
        if ok {
            return port;
        }
    }
}

fn node(name: &str, local: &str, peer: &str, port: u16, transport: &str, extra: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-tr-{name}-{transport}-{}-{port}",
        std::process::id()
    ));
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\n\
         transport = \"{transport}\"\n{extra}\n"
    );
    start_mem(name, dir, &text)
}

/// A on 127.0.0.1 and B on 127.0.0.2, neither asking for a resync at start.
fn pair(transport: &str) -> (MemNode, MemNode, u16) {
    let port = free_port();
    let no_resync = "startup_resync = false\n";
    let a = node("a", "127.0.0.1", "127.0.0.2", port, transport, no_resync);
    let b = node("b", "127.0.0.2", "127.0.0.1", port, transport, no_resync);
    (a, b, port)
}

fn status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

fn tcp_status(n: &mut MemNode) -> TcpLinkInfo {
    status(n).tcp.expect("tcp link status")
}

fn many(n: u16, base: u16) -> Vec<FlowJson> {
    (0..n)
        .map(|i| {
            flow(
                "tcp",
                tuple("192.0.2.30", "198.51.100.30", Some(base + i), Some(443)),
                Some("ESTABLISHED"),
            )
        })
        .collect()
}

/// Flows added on A reach B's external cache field by field; a commit
/// moves them into B's shards without echoing them; a delete propagates.
fn replicate_commit_delete(transport: &str) -> (MemNode, MemNode, u16) {
    let (mut a, mut b, port) = pair(transport);
    let flows = sample_flows();
    let n = flows.len() as u64;
    for fj in flows {
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    wait_until("B's external cache to hold A's flows", || {
        external(&mut b).total == n
    });
    let want = essences(&internal(&mut a));
    assert_eq!(essences(&external(&mut b)), want);
    assert_eq!(internal(&mut b).total, 0);
    let Payload::Committed(c) = ok(b.app.handle(Request::Commit)) else {
        panic!("not a commit answer")
    };
    assert_eq!((c.committed, c.refused), (n, 0));
    assert_eq!(essences(&internal(&mut b)), want);
    assert_no_echo(&mut a, &mut b, WAIT, "a commit must not echo back");
    let Payload::FlowsDeleted { deleted } = ok(a.app.handle(Request::FlowsDelete {
        filter: FlowFilter {
            zone: Some(7),
            ..FlowFilter::default()
        },
    })) else {
        panic!("not a delete answer")
    };
    assert_eq!(deleted, 1);
    wait_until("the DESTROY to reach B", || external(&mut b).total == n - 1);
    assert!(!external(&mut b).flows.iter().any(|f| f.zone == 7));
    assert_eq!(internal(&mut b).total, n, "committed flows stay");
    for s in [status(&mut a), status(&mut b)] {
        assert_eq!(s.transport, transport);
        assert!(!s.reliable, "{s:?}");
        // Best effort: nothing kept, nothing resent, nothing lost here.
        assert_eq!(
            (s.resend_queue, s.retransmitted, s.lost, s.malformed),
            (0, 0, 0, 0),
            "{s:?}"
        );
        assert_eq!((s.peer_state.as_str(), s.hello.as_str()), ("up", "done"));
    }
    (a, b, port)
}

#[test]
fn udp_best_effort_replicates_commits_and_deletes() {
    let (mut a, mut b, _) = replicate_commit_delete("udp-best-effort");
    let sa = status(&mut a);
    assert_eq!(sa.link, "udp");
    assert_eq!(sa.udp_offload, "on", "the default, taken by loopback");
    assert!(sa.tcp.is_none());
    // Best effort over UDP: nothing NACKed, nothing resent either way.
    let sb = status(&mut b);
    assert!(sb.msgs_in >= 7, "{sb:?}");
    assert_eq!((sa.nacks_in, sb.nacks_in, sa.retransmitted), (0, 0, 0));
}

#[test]
fn udp_best_effort_restarted_peer_resyncs() {
    let (mut a, b, port) = pair("udp-best-effort");
    for fj in sample_flows() {
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    drop(b);
    for fj in many(40, 20000) {
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    // A new B asks for A's table at start (RESYNC survives best effort).
    let mut b2 = node("b2", "127.0.0.2", "127.0.0.1", port, "udp-best-effort", "");
    wait_until("the restarted peer to hold A's 47 flows", || {
        external(&mut b2).total == 47
    });
    assert_eq!(essences(&external(&mut b2)), essences(&internal(&mut a)));
    wait_until("the resync to be known complete", || {
        status(&mut b2).resync_complete
    });
    assert!(status(&mut a).resyncs_in >= 1);
}

#[test]
fn tcp_replicates_commits_and_deletes() {
    let (mut a, mut b, _) = replicate_commit_delete("tcp");
    for n in [&mut a, &mut b] {
        let s = status(n);
        assert_eq!(s.link, "tcp");
        assert_eq!(s.udp_offload, "");
        let t = s.tcp.expect("tcp status");
        assert!(t.out_up && t.in_up, "{t:?}");
        assert!(t.connects >= 1 && t.accepted >= 1, "{t:?}");
        assert_eq!((t.refused, t.framing_errors, t.send_drops), (0, 0, 0));
        assert_eq!(t.buffer_capacity, 4 << 20);
    }
    assert_eq!(
        tcp_status(&mut b)
            .in_from
            .as_deref()
            .map(|f| f.starts_with("127.0.0.1:")),
        Some(true)
    );
}

#[test]
fn tcp_peer_restart_reconnects_and_resyncs() {
    let (mut a, mut b, port) = pair("tcp");
    for fj in sample_flows() {
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    wait_until("B to hold A's flows", || external(&mut b).total == 7);
    // B stops: A loses both connections and keeps trying.
    drop(b);
    wait_until("A to notice the peer is gone", || {
        let t = tcp_status(&mut a);
        !t.out_up && !t.in_up && t.disconnects >= 1
    });
    for fj in many(40, 20000) {
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    // Retries while down; and the peer is no longer up for A (not heard
    // for three
    // alive intervals), so the restarted peer's HELLO is not taken for a
    // late copy of the old one's (which a restart within one alive
    // interval would be).
    wait_until("A to retry and see the peer down", || {
        let s = status(&mut a);
        s.peer_state != "up" && s.tcp.is_some_and(|t| t.connect_failures >= 1)
    });
    // A new B on the same port: A reconnects, B's startup RESYNC brings
    // the whole table across.
    let mut b2 = node("b2", "127.0.0.2", "127.0.0.1", port, "tcp", "");
    wait_until("the restarted peer to hold A's 47 flows", || {
        external(&mut b2).total == 47
    });
    assert_eq!(essences(&external(&mut b2)), essences(&internal(&mut a)));
    wait_until("both connections up again", || {
        let t = tcp_status(&mut a);
        t.out_up && t.in_up && t.connects >= 2
    });
    wait_until("the resync to be known complete", || {
        status(&mut b2).resync_complete
    });
    let sa = status(&mut a);
    assert!(sa.resyncs_in >= 1 && sa.exports >= 1, "{sa:?}");
    // `ftfwctl resync` works over TCP as well.
    ok(b2.app.handle(Request::FlushExternal));
    let Payload::ResyncRequested { queued } = ok(b2.app.handle(Request::Resync)) else {
        panic!("not a resync answer")
    };
    assert!(queued);
    wait_until("a requested resync to refill the cache", || {
        external(&mut b2).total == 47
    });
    // Later changes still flow.
    ok(a.app.handle(Request::FlowsDelete {
        filter: FlowFilter {
            zone: Some(7),
            ..FlowFilter::default()
        },
    }));
    wait_until("the DESTROY to reach B2", || external(&mut b2).total == 46);
}

/// A TCP connection from `from` (any port) to B's sync port.
fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 2], port)).into())
        .unwrap();
    sock.into()
}

/// Connects from the peer's address (which replaces A's connection to B)
/// and sends `bytes`; B must count one framing error. A reconnects each
/// time and its new connection replaces ours in turn, so if that happens
/// before B read our bytes (a race on a loaded machine) we try again.
fn bad_framing(a: &mut MemNode, b: &mut MemNode, port: u16, bytes: &[u8]) {
    let before = tcp_status(b).framing_errors;
    for _ in 0..5 {
        wait_until("A's connection to B up", || {
            tcp_status(a).out_up && tcp_status(b).in_up
        });
        let mut liar = connect_from([127, 0, 0, 1], port);
        liar.write_all(bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let t = tcp_status(b);
            if t.framing_errors > before {
                assert_eq!(t.framing_errors, before + 1, "{t:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("B never counted the framing error");
}

#[test]
fn tcp_refuses_strangers_and_closes_bad_framing() {
    let (mut a, mut b, port) = pair("tcp");
    wait_until("the link up", || {
        let t = tcp_status(&mut b);
        t.in_up && t.out_up
    });
    // A stranger's connection is refused (closed at once).
    let mut stranger = connect_from([127, 0, 0, 3], port);
    let _ = stranger.write_all(&[0x1a, 0x10, 0x00, 0x08, 0, 0, 0, 1]);
    wait_until("B to refuse the stranger", || {
        tcp_status(&mut b).refused == 1
    });

    // From the peer's address: one good ALIVE, then a length below the
    // header: a framing error, the connection closed, nothing crashes.
    bad_framing(
        &mut a,
        &mut b,
        port,
        &[
            0x1a, 0x10, 0x00, 0x08, 0, 0, 0, 1, 0x10, 0x00, 0x00, 0x04, 0, 0, 0, 2,
        ],
    );
    assert!(status(&mut b).malformed >= 1);
    // And a length above the largest message.
    bad_framing(&mut a, &mut b, port, &[0x10, 0x00, 0xff, 0xf0, 0, 0, 0, 2]);
    // Replication still works: A's replaced connection is re-established.
    ok(a.app.handle(Request::FlowsAdd {
        flow: sample_flows().remove(0),
    }));
    wait_until("a flow after the garbage", || external(&mut b).total == 1);
    wait_until("A's connection back", || tcp_status(&mut b).in_up);
    let t = tcp_status(&mut b);
    assert!(t.accepted >= 3 && t.in_closed >= 2, "{t:?}");
}
