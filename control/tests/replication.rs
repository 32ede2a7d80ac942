//! Two appliances in one process replicating over FT-FW on loopback UDP
//! (127.0.0.1 and 127.0.0.2, both local on Linux): console-added flows and
//! flows from real traffic reach the peer's external cache, a commit moves
//! them into the peer's shards without echoing them back, deletes
//! propagate, a restarted peer catches up through RESYNC, direct mode
//! injects into the shards, and garbage on the sync port is counted. No
//! root needed.

use std::net::UdpSocket;
use std::time::Duration;

use ftfw_control::appliance::Appliance;
use ftfw_control::config;
use ftfw_control::console::proto::{FlowFilter, Payload, Request, Response, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::flow::{proto, FlowState};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::port::mem::{self, FanoutHost};
use ftfw_testkit::flows::{essences, flow, sample_flows, tuple};
use ftfw_testkit::mem::{
    assert_no_echo, external, free_port, internal, ok, recv, send, start_mem, tcp, MemNode,
    MEM_BRIDGE,
};

const WAIT: Duration = Duration::from_secs(10);

/// Waits until `f` returns true, or panics with `what` after [`WAIT`].
fn wait_until(what: &str, f: impl FnMut() -> bool) {
    ftfw_testkit::wait_until(what, WAIT, f);
}

type Node = MemNode;

fn node(name: &str, local: &str, peer: &str, port: u16, extra_sync: &str) -> Node {
    node_with(name, local, peer, port, extra_sync, 8192)
}

fn node_with(
    name: &str,
    local: &str,
    peer: &str,
    port: u16,
    extra_sync: &str,
    delta_ring: usize,
) -> Node {
    let dir = std::env::temp_dir().join(format!("ftfw-repl-{name}-{}-{port}", std::process::id()));
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\ndelta_ring = {delta_ring}\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\n{extra_sync}\n"
    );
    start_mem(name, dir, &text)
}

/// The next frame `port` receives; fails the test after [`WAIT`].
fn forwarded(port: &mut FanoutHost) -> Vec<u8> {
    recv(port, WAIT).expect("frame not forwarded")
}

/// Node A (no startup resync: a late RESYNC answer would legitimately
/// send B's committed flows back to A) and node B with `extra_b`.
fn pair(extra_b: &str) -> (Node, Node, u16) {
    let port = free_port();
    let a = node(
        "a",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "startup_resync = false\n",
    );
    let b = node("b", "127.0.0.2", "127.0.0.1", port, extra_b);
    (a, b, port)
}

fn sync_status(n: &mut Node) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

#[test]
fn console_flows_replicate_commit_and_delete() {
    let (mut a, mut b, _) = pair("startup_resync = false\n");
    let flows = sample_flows();
    for fj in &flows {
        ok(a.app.handle(Request::FlowsAdd { flow: fj.clone() }));
    }
    wait_until("B's external cache to hold A's 7 flows", || {
        external(&mut b).total == 7
    });
    // Same identities, NAT reply tuples, states, zones and marks.
    let want = essences(&internal(&mut a));
    let got = essences(&external(&mut b));
    assert_eq!(got, want);
    assert!(external(&mut b)
        .flows
        .iter()
        .all(|f| f.active_secs.is_some()));

    // Nothing is in B's shards until the commit; then all of it is, and
    // nothing is echoed back into A's external cache.
    assert_eq!(internal(&mut b).total, 0);
    let Payload::Committed(c) = ok(b.app.handle(Request::Commit)) else {
        panic!()
    };
    assert_eq!((c.committed, c.refused), (7, 0));
    let got = essences(&internal(&mut b));
    assert_eq!(got, want);
    assert_no_echo(&mut a, &mut b, WAIT, "a commit must not echo back");

    // A delete on A removes the flow from B's external cache only.
    let Payload::FlowsDeleted { deleted } = ok(a.app.handle(Request::FlowsDelete {
        filter: FlowFilter {
            zone: Some(7),
            ..FlowFilter::default()
        },
    })) else {
        panic!()
    };
    assert_eq!(deleted, 1);
    wait_until("the DESTROY to reach B", || external(&mut b).total == 6);
    assert_eq!(internal(&mut b).total, 7);

    // Both sides saw a clean link.
    let sa = sync_status(&mut a);
    let sb = sync_status(&mut b);
    for s in [&sa, &sb] {
        assert_eq!(
            (
                s.malformed,
                s.malformed_payload,
                s.lost,
                s.foreign_datagrams
            ),
            (0, 0, 0, 0),
            "{s:?}"
        );
        assert_eq!(s.peer_state, "up");
        assert_eq!(s.hello, "done");
    }
    assert!(sa.msgs_out >= 8 && sb.msgs_in >= 8, "{sa:?} {sb:?}");

    // Flush empties the external cache.
    let Payload::ExternalFlushed { flushed } = ok(b.app.handle(Request::FlushExternal)) else {
        panic!()
    };
    assert_eq!(flushed, 6);
    assert_eq!(external(&mut b).total, 0);
}

#[test]
fn traffic_state_follows_to_the_peer_and_restart_resyncs() {
    let (mut a, b, port) = pair("startup_resync = false\n");
    let (c, s) = ("192.0.2.10", "198.51.100.20");
    send(&mut a.client, &tcp(c, s, 41000, 80, f::SYN, 1, 0));
    forwarded(&mut a.server);
    send(
        &mut a.server,
        &tcp(s, c, 80, 41000, f::SYN | f::ACK, 900, 2),
    );
    forwarded(&mut a.client);
    send(&mut a.client, &tcp(c, s, 41000, 80, f::ACK, 2, 901));
    forwarded(&mut a.server);
    let mut b = b;
    wait_until("the established flow in B's external cache", || {
        external(&mut b)
            .flows
            .iter()
            .any(|f| f.state.as_deref() == Some("ESTABLISHED"))
    });

    // B dies; A gets more flows meanwhile; a new B asks for a resync at
    // start and receives A's whole table.
    drop(b);
    for i in 0..50u16 {
        let fj = flow(
            "tcp",
            tuple("192.0.2.30", "198.51.100.30", Some(20000 + i), Some(443)),
            Some("ESTABLISHED"),
        );
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    let mut b2 = node("b2", "127.0.0.2", "127.0.0.1", port, "");
    assert!(!sync_status(&mut b2).resync_complete);
    wait_until("the restarted peer to hold A's 51 flows", || {
        external(&mut b2).total == 51
    });
    // The peer went idle after its answer: the resync is known complete.
    wait_until("the resync to be known complete", || {
        sync_status(&mut b2).resync_complete
    });
    let sa = sync_status(&mut a);
    assert!(sa.resyncs_in >= 1 && sa.exports >= 1, "{sa:?}");
    assert!(sa.peer_restarts >= 1, "{sa:?}");

    // And the other way: B2 asks again on request.
    ok(b2.app.handle(Request::FlushExternal));
    let Payload::ResyncRequested { queued } = ok(b2.app.handle(Request::Resync)) else {
        panic!()
    };
    assert!(queued);
    wait_until("a requested resync to refill the cache", || {
        external(&mut b2).total == 51
    });
}

#[test]
fn direct_mode_injects_into_the_shards() {
    let (mut a, mut b, _) = pair("mode = \"direct\"\nstartup_resync = false\n");
    for fj in sample_flows() {
        ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    }
    wait_until("B's shards to hold A's flows", || {
        internal(&mut b).total == 7
    });
    assert_eq!(external(&mut b).total, 0);
    let want = essences(&internal(&mut a));
    let got = essences(&internal(&mut b));
    assert_eq!(got, want);
    assert_no_echo(
        &mut a,
        &mut b,
        WAIT,
        "injected flows are not replicated back",
    );
    ok(a.app.handle(Request::FlowsDelete {
        filter: FlowFilter {
            proto: Some(proto::UDP),
            ..FlowFilter::default()
        },
    }));
    wait_until("deletes to reach B's shards", || {
        internal(&mut b).total == 5
    });
    assert!(sync_status(&mut b).injected >= 9);
}

#[test]
fn garbage_on_the_sync_port_is_counted_and_ignored() {
    let (mut a, mut b, port) = pair("startup_resync = false\n");
    // From the peer's address: decoded, found malformed, counted.
    let liar = UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        &[0u8; 3][..],
        &[0x1a, 0x00, 0x00, 0x40, 0, 0, 0, 1][..],
        &[0xff; 64][..],
    ] {
        liar.send_to(junk, ("127.0.0.2", port)).unwrap();
    }
    // From a stranger: dropped before decoding.
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    stranger.send_to(&[0u8; 16], ("127.0.0.2", port)).unwrap();
    wait_until("B to count the garbage", || {
        let s = sync_status(&mut b);
        s.malformed >= 2 && s.foreign_datagrams == 1
    });
    // Replication still works.
    ok(a.app.handle(Request::FlowsAdd {
        flow: sample_flows().remove(0),
    }));
    wait_until("a flow after the garbage", || external(&mut b).total == 1);
}

#[test]
fn console_answers_without_sync_configured() {
    // Requests that need replication say so instead of failing obscurely.
    let dir = std::env::temp_dir().join(format!("ftfw-repl-nosync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ftfwd.toml"),
        "[[port]]\nname = \"a\"\nbackend = \"mem\"\n[[port]]\nname = \"b\"\nbackend = \"mem\"\n\
         [[bridge]]\nports = [\"a\", \"b\"]\n",
    )
    .unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let mut app = Appliance::start(cfg, &mut |_, p, _, _| {
        let (_, port) = mem::wire(&p.name, "peer", 16);
        Ok(Box::new(port))
    })
    .unwrap();
    for req in [Request::SyncStatus, Request::Commit, Request::Resync] {
        let Response::Error(e) = app.handle(req) else {
            panic!("expected an error")
        };
        assert!(e.contains("no [sync] section"), "{e}");
    }
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn delta_ring_overflow_is_repaired_by_a_re_export() {
    // A 16-slot ring cannot hold the deltas of a 3000-flow import: the
    // worker counts the loss and marks its shard, and the sync thread
    // re-exports the whole shard so the peer still gets every flow.
    let port = free_port();
    let a = node_with(
        "ra",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "startup_resync = false\n",
        16,
    );
    let mut b = node(
        "rb",
        "127.0.0.2",
        "127.0.0.1",
        port,
        "startup_resync = false\n",
    );
    let states: Vec<FlowState> = (0..3000u16)
        .map(|i| {
            let mut fj = flow(
                "tcp",
                tuple("192.0.2.40", "198.51.100.40", Some(10000 + i), Some(80)),
                Some("ESTABLISHED"),
            );
            fj.timeout = 600;
            FlowState::try_from(fj).unwrap()
        })
        .collect();
    assert_eq!(a.app.import_flows_with(states, true), Ok((3000, 0)));
    wait_until("every flow at the peer", || external(&mut b).total == 3000);
    let mut a = a;
    let s = sync_status(&mut a);
    assert!(s.ring_overflows > 0, "{s:?}");
    assert!(s.exports >= 1 && s.exported_flows >= 3000 - 16, "{s:?}");
}

#[test]
fn keepalived_takeover_keeps_an_established_connection() {
    use ftfw_control::console::proto::NotifyState;
    let port = free_port();
    let mut a = node(
        "ka",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "startup_resync = false\n",
    );
    // B under keepalived: a backup until notified.
    let text = "startup_resync = false\n\n[failover]\nmode = \"keepalived\"\n";
    let mut b = node("kb", "127.0.0.2", "127.0.0.1", port, text);
    let (c, s) = ("192.0.2.11", "198.51.100.21");
    // The connection is set up through A and replicated to B.
    send(&mut a.client, &tcp(c, s, 42000, 80, f::SYN, 10, 0));
    forwarded(&mut a.server);
    send(
        &mut a.server,
        &tcp(s, c, 80, 42000, f::SYN | f::ACK, 700, 11),
    );
    forwarded(&mut a.client);
    send(&mut a.client, &tcp(c, s, 42000, 80, f::ACK, 11, 701));
    forwarded(&mut a.server);
    wait_until("the connection in B's external cache", || {
        external(&mut b)
            .flows
            .iter()
            .any(|f| f.state.as_deref() == Some("ESTABLISHED"))
    });
    let Payload::Status(st) = ok(b.app.handle(Request::Status)) else {
        panic!()
    };
    assert_eq!(
        (st.role.as_str(), st.failover.as_str()),
        ("backup", "keepalived")
    );

    // A dies. While B is a backup it forwards nothing.
    drop(a);
    send(
        &mut b.client,
        &tcp(c, s, 42000, 80, f::ACK | f::PSH, 11, 701),
    );
    assert!(recv(&mut b.server, Duration::from_millis(200)).is_none());

    // keepalived makes B master: commit, then forward.
    let Payload::Notified(change) = ok(b.app.handle(Request::Notify {
        state: NotifyState::Master,
    })) else {
        panic!()
    };
    assert_eq!(change.role, "active");
    assert_eq!(change.flows_committed, 1);
    let names: Vec<&str> = change.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(&names[..3], ["commit", "forward", "announce"]);
    // Mid-stream segments of the old connection pass both ways: no reset.
    send(
        &mut b.client,
        &tcp(c, s, 42000, 80, f::ACK | f::PSH, 11, 701),
    );
    let got = forwarded(&mut b.server);
    assert_eq!(
        ftfw_dataplane::packet::parse_frame(&got).unwrap().tcp.flags,
        f::ACK | f::PSH
    );
    send(&mut b.server, &tcp(s, c, 80, 42000, f::ACK, 701, 12));
    forwarded(&mut b.client);
    let Payload::Status(st) = ok(b.app.handle(Request::Status)) else {
        panic!()
    };
    assert_eq!(st.role, "active");
    assert_eq!(st.last_takeover.map(|t| t.flows_committed), Some(1));
    let Payload::Stats(stats) = ok(b.app.handle(Request::Stats)) else {
        panic!()
    };
    let field = |n: &str| {
        stats
            .total
            .fields()
            .into_iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v)
    };
    assert!(field("standby_dropped") >= Some(1));
    assert_eq!(field("invalid"), Some(0));

    // Back to backup: forwarding stops again.
    let Payload::Notified(change) = ok(b.app.handle(Request::Notify {
        state: NotifyState::Backup,
    })) else {
        panic!()
    };
    assert_eq!(change.role, "backup");
    send(&mut b.client, &tcp(c, s, 42000, 80, f::ACK, 12, 702));
    assert!(recv(&mut b.server, Duration::from_millis(200)).is_none());
}

/// Issue 16, item 1: one datagram from the peer's address with a sequence
/// number far ahead used to make B drop every genuine message of A as
/// stale, for good, while `sync status` said `up`. Now B notices within a
/// few ALIVE intervals, re-bases, asks A for a RESYNC (counted) and
/// replication resumes; a delete on A meanwhile reaches B too.
#[test]
fn a_forged_future_sequence_number_stalls_only_a_few_alive_intervals() {
    use ftfw_sync::wire::{flags, Header, MsgType};
    let (mut a, mut b, port) = pair("startup_resync = false\n");
    let flows = sample_flows();
    ok(a.app.handle(Request::FlowsAdd {
        flow: flows[0].clone(),
    }));
    wait_until("the first flow at B", || external(&mut b).total == 1);
    wait_until("B's handshake", || sync_status(&mut b).hello == "done");

    let seq_in = sync_status(&mut b).seq_in.expect("B heard A");
    let forged_seq = seq_in.wrapping_add(1 << 30);
    let forged = Header::new(MsgType::Ctl, flags::ALIVE, 8, forged_seq).to_bytes();
    let liar = UdpSocket::bind("127.0.0.1:0").unwrap();
    liar.send_to(&forged, ("127.0.0.2", port)).unwrap();
    wait_until("B to take the forgery", || {
        sync_status(&mut b).seq_in == Some(forged_seq)
    });

    // Meanwhile A deletes the first flow and adds more; B drops it all as
    // stale at first, says so, then recovers on its own.
    ok(a.app.handle(Request::FlowsDelete {
        filter: FlowFilter::default(),
    }));
    for fj in &flows[1..4] {
        ok(a.app.handle(Request::FlowsAdd { flow: fj.clone() }));
    }
    let mut seen_out_of_sync = false;
    wait_until("B to resynchronise", || {
        let s = sync_status(&mut b);
        seen_out_of_sync |= s.out_of_sync && s.peer_state == "out_of_sync";
        s.out_of_sync_resyncs >= 1
    });
    let want = essences(&internal(&mut a));
    wait_until("B's external cache to equal A's table", || {
        essences(&external(&mut b)) == want
    });
    let s = sync_status(&mut b);
    assert!(s.stale >= 1, "{s:?}");
    assert_eq!(s.out_of_sync_resyncs, 1, "{s:?}");
    assert!(!s.out_of_sync, "{s:?}");
    assert_eq!(s.peer_state, "up");
    assert!(sync_status(&mut a).resyncs_in >= 1);
    // 50 ms ALIVE interval: the recovery took a few of them. (The
    // transient state is asserted by the engine's test with a clock.)
    eprintln!("out_of_sync seen in sync status: {seen_out_of_sync}");

    // Replication goes on.
    ok(a.app.handle(Request::FlowsAdd {
        flow: flows[4].clone(),
    }));
    let want = essences(&internal(&mut a));
    wait_until("a flow after the recovery", || {
        essences(&external(&mut b)) == want
    });
}

/// A TCP segment with a window scale option (SYN and SYN/ACK).
fn tcp_ws(
    src: &str,
    dst: &str,
    ports: (u16, u16),
    flags: u8,
    seq_ack: (u32, u32),
    ws: u8,
) -> Vec<u8> {
    use ftfw_dataplane::packet::{FrameSpec, L4Spec, TcpOptions};
    FrameSpec {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        l4: L4Spec::Tcp {
            src_port: ports.0,
            dst_port: ports.1,
            seq: seq_ack.0,
            ack: seq_ack.1,
            flags,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                wscale: Some(ws),
                ..TcpOptions::default()
            },
        },
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

#[test]
fn window_scales_replicate_and_survive_a_commit() {
    let (mut a, mut b, _) = pair("startup_resync = false\n");
    let (c, s) = ("192.0.2.11", "198.51.100.21");
    send(&mut a.client, &tcp_ws(c, s, (41100, 80), f::SYN, (1, 0), 7));
    forwarded(&mut a.server);
    send(
        &mut a.server,
        &tcp_ws(s, c, (80, 41100), f::SYN | f::ACK, (900, 2), 9),
    );
    forwarded(&mut a.client);
    send(&mut a.client, &tcp(c, s, 41100, 80, f::ACK, 2, 901));
    forwarded(&mut a.server);
    let ours = internal(&mut a);
    assert_eq!(ours.flows[0].window_scale, Some([7, 9]), "{ours:?}");
    // Sent as attributes 25 and 26, kept by the peer...
    wait_until("the established flow with its window scales at B", || {
        external(&mut b)
            .flows
            .iter()
            .any(|f| f.state.as_deref() == Some("ESTABLISHED") && f.window_scale == Some([7, 9]))
    });
    // ...and in its shard after a commit (a takeover).
    ok(b.app.handle(Request::Commit));
    wait_until("the committed flow with its window scales", || {
        internal(&mut b)
            .flows
            .iter()
            .any(|f| f.window_scale == Some([7, 9]))
    });
    // Without window tracking the scales are not sent (conntrackd's
    // `TCPWindowTracking off`).
    let port = free_port();
    let mut a2 = node(
        "a3",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "startup_resync = false\ntcp_window_tracking = false\n",
    );
    let mut b2 = node(
        "b3",
        "127.0.0.2",
        "127.0.0.1",
        port,
        "startup_resync = false\n",
    );
    send(
        &mut a2.client,
        &tcp_ws(c, s, (41101, 80), f::SYN, (1, 0), 7),
    );
    forwarded(&mut a2.server);
    wait_until("the new flow at B without window scales", || {
        external(&mut b2)
            .flows
            .iter()
            .any(|f| f.original.sport == Some(41101) && f.window_scale == Some([0, 0]))
    });
}

#[test]
fn sctp_state_tags_labels_and_marks_replicate_as_added() {
    let (mut a, mut b, _) = pair("startup_resync = false\n");
    let mut fj = flow(
        "sctp",
        tuple("192.0.2.40", "198.51.100.40", Some(5000), Some(5001)),
        Some("ESTABLISHED"),
    );
    fj.vtags = Some([0x1234_5678, 0x9abc_def0]);
    fj.labels = vec![3, 127];
    fj.mark = u32::MAX;
    ok(a.app.handle(Request::FlowsAdd { flow: fj }));
    wait_until("the SCTP flow with its tags and labels at B", || {
        external(&mut b).flows.iter().any(|f| {
            f.state.as_deref() == Some("ESTABLISHED")
                && f.vtags == Some([0x1234_5678, 0x9abc_def0])
                && f.labels == [3, 127]
                && f.mark == u32::MAX
        })
    });
}

/// Issue 16 item 7: flows created while the peer is down reach it after it
/// restarts, without a resync asked by anyone (B2 has startup resync off):
/// its HELLO shows a new incarnation and A exports its table to it, once
/// (counted; here the unacknowledged messages are also sent again, so the
/// counter is what shows the export ran).
#[test]
fn a_restarted_peer_gets_what_it_missed_without_a_resync() {
    let (mut a, b, port) = pair("startup_resync = false\n");
    let flows = sample_flows();
    let mut b = b;
    ok(a.app.handle(Request::FlowsAdd {
        flow: flows[0].clone(),
    }));
    wait_until("the first flow at B", || external(&mut b).total == 1);
    wait_until("A to know B", || sync_status(&mut a).peer_state == "up");
    // B acknowledged the first flow, so only an export can give it to B2;
    // and B's HELLO run is over by then (a restart during the run with a
    // sequence number after the run's cannot be told from the run going
    // on: B and B2 start their sequences at the Unix second).
    wait_until("B to acknowledge the first flow", || {
        sync_status(&mut a).resend_queue == 0
    });
    drop(b);
    for fj in &flows[1..4] {
        ok(a.app.handle(Request::FlowsAdd { flow: fj.clone() }));
    }
    let mut b2 = node(
        "b2r",
        "127.0.0.2",
        "127.0.0.1",
        port,
        "startup_resync = false\n",
    );
    let want = essences(&internal(&mut a));
    wait_until("the restarted peer to hold every flow of A", || {
        essences(&external(&mut b2)) == want
    });
    let sa = sync_status(&mut a);
    assert_eq!((sa.restart_exports, sa.resyncs_in), (1, 0), "{sa:?}");
    assert_eq!(sync_status(&mut b2).resyncs_in, 0);
}
