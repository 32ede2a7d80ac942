//! `[sync] defer = true`: two appliances in one process over loopback UDP
//! (as in `replication.rs`). The first packet of a new flow leaves the
//! active node only once the peer holds the flow; with the peer gone it
//! leaves at once. No root needed.

use std::time::Duration;

use ftfw_control::console::proto::{FlowsListing, Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{
    external, external_state, free_port, ok, recv, send, start_mem, stat, tcp, MemNode, MEM_BRIDGE,
};

const WAIT: Duration = Duration::from_secs(10);

fn node(name: &str, local: &str, peer: &str, port: u16) -> MemNode {
    node_with(name, local, peer, port, "defer = true")
}

/// [`node`] with another write mode line (`write = "sync"`).
fn node_with(name: &str, local: &str, peer: &str, port: u16, write: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-defer-{name}-{}-{port}", std::process::id()));
    // A long defer timeout: a packet released by the timeout is a failure
    // here, never a slow machine.
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\n\
         startup_resync = false\n{write}\ndefer_timeout_ms = 1000\n"
    );
    start_mem(name, dir, &text)
}

fn sync_status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

/// Waits until `f` returns true, or panics with `what` after [`WAIT`].
fn wait_until(what: &str, f: impl FnMut() -> bool) {
    ftfw_testkit::wait_until(what, WAIT, f);
}

fn has_sport(l: &FlowsListing, sport: u16) -> bool {
    l.flows.iter().any(|fl| fl.original.sport == Some(sport))
}

#[test]
fn first_packet_leaves_once_the_peer_holds_the_flow() {
    let port = free_port();
    let mut a = node("a", "127.0.0.1", "127.0.0.2", port);
    let mut b = node("b", "127.0.0.2", "127.0.0.1", port);
    wait_until("defer active on A", || {
        sync_status(&mut a).defer == "active"
    });

    for i in 0..5u16 {
        let sport = 41000 + i;
        let syn = tcp("10.0.0.1", "10.0.1.1", sport, 80, f::SYN, 1000, 0);
        send(&mut a.client, &syn);
        let out = recv(&mut a.server, WAIT).expect("SYN forwarded");
        assert_eq!(out, syn);
        // No waiting: B acknowledged the flow before A released the SYN.
        assert!(
            has_sport(&external(&mut b), sport),
            "flow {sport} not in B's external cache when its SYN left A"
        );
    }
    wait_until("counters published", || {
        stat(&mut a.app, "defer_released") >= 5
    });
    assert_eq!(stat(&mut a.app, "deferred"), 5);
    assert_eq!(stat(&mut a.app, "defer_timeouts"), 0);
    let s = sync_status(&mut a);
    assert_eq!(
        (s.defer_held, s.defer_released, s.defer_timeouts),
        (5, 5, 0)
    );
    let s = sync_status(&mut b);
    assert_eq!(s.defer, "active", "both nodes of the pair defer");

    // The peer stops: defer goes inactive and first packets leave at once.
    drop(b);
    wait_until("defer inactive on A", || sync_status(&mut a).defer == "on");
    let syn = tcp("10.0.0.1", "10.0.1.1", 42000, 80, f::SYN, 1000, 0);
    send(&mut a.client, &syn);
    assert_eq!(recv(&mut a.server, WAIT).expect("SYN forwarded"), syn);
    assert_eq!(
        stat(&mut a.app, "deferred"),
        5,
        "not deferred without a peer"
    );
    assert_eq!(stat(&mut a.app, "defer_timeouts"), 0);
}

/// `write = "sync"`: not only the first packet, every packet that changes
/// replicated state (the SYN/ACK, the handshake's last ACK) leaves A only
/// once B holds the state it caused.
#[test]
fn with_synchronous_writes_every_state_change_waits_for_the_peer() {
    let port = free_port();
    let mut a = node_with("sa", "127.0.0.1", "127.0.0.2", port, "write = \"sync\"");
    let mut b = node("sb", "127.0.0.2", "127.0.0.1", port);
    wait_until("defer active on A", || {
        sync_status(&mut a).defer == "active"
    });
    let (c, s, sport) = ("10.0.0.1", "10.0.1.1", 42000u16);
    let steps = [
        (true, tcp(c, s, sport, 80, f::SYN, 1000, 0), "SYN_SENT"),
        (
            false,
            tcp(s, c, 80, sport, f::SYN | f::ACK, 5000, 1001),
            "SYN_RECV",
        ),
        (
            true,
            tcp(c, s, sport, 80, f::ACK, 1001, 5001),
            "ESTABLISHED",
        ),
    ];
    for (from_client, frame, state) in steps {
        if from_client {
            send(&mut a.client, &frame);
            assert!(recv(&mut a.server, WAIT).is_some(), "{state}: forwarded");
        } else {
            send(&mut a.server, &frame);
            assert!(recv(&mut a.client, WAIT).is_some(), "{state}: forwarded");
        }
        // No waiting: B acknowledged the change before A released the packet.
        assert_eq!(
            external_state(&mut b, sport).as_deref(),
            Some(state),
            "when the packet left A"
        );
    }
    wait_until("counters published", || {
        stat(&mut a.app, "defer_released") >= 3
    });
    assert_eq!(stat(&mut a.app, "deferred"), 3);
    assert_eq!(stat(&mut a.app, "defer_timeouts"), 0);
    // A data segment changes nothing replicated: it is not held.
    send(
        &mut a.client,
        &tcp(c, s, sport, 80, f::ACK | f::PSH, 1001, 5001),
    );
    assert!(recv(&mut a.server, WAIT).is_some());
    wait_until("counters published", || stat(&mut a.app, "tx") >= 4);
    assert_eq!(stat(&mut a.app, "deferred"), 3);
}

#[test]
fn a_new_flow_whose_level_skips_its_new_is_not_held() {
    // Level established: a SYN pushes no delta, so there is nothing for
    // the peer to acknowledge and the SYN leaves at once (it used to wait
    // for whatever other flows had pending).
    let port = free_port();
    let mut a = node_with(
        "lvl-a",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "write = \"defer\"\nlevel = \"established\"",
    );
    let mut b = node("lvl-b", "127.0.0.2", "127.0.0.1", port);
    wait_until("defer active on A", || {
        sync_status(&mut a).defer == "active"
    });
    for i in 0..3u16 {
        let sport = 43000 + i;
        let syn = tcp("192.0.2.1", "198.51.100.2", sport, 80, f::SYN, 1000, 0);
        send(&mut a.client, &syn);
        let out = recv(&mut a.server, WAIT).expect("SYN forwarded");
        assert_eq!(out, syn);
    }
    assert_eq!(stat(&mut a.app, "deferred"), 0, "a SYN was held");
    assert!(sync_status(&mut a).level_skipped >= 3);
    assert!(!has_sport(&external(&mut b), 43000));
}

/// The state A's own table holds for the flow from `sport`.
fn internal_state(n: &mut MemNode, sport: u16) -> Option<String> {
    ftfw_testkit::mem::internal(n)
        .flows
        .into_iter()
        .find(|fl| fl.original.sport == Some(sport))
        .and_then(|fl| fl.state)
}

/// `write = "sync"` with `level = "established"` (the lab's levels run
/// that counted defer timeouts): nothing of a handshake is held until the
/// flow is established; from then on every packet that changed replicated
/// state leaves A only once B holds that state, and all of them are
/// released by B's acknowledgement, none by the timeout, also with many
/// flows interleaved.
#[test]
fn synchronous_writes_at_level_established_wait_for_the_peer_never_the_timeout() {
    let port = free_port();
    let mut a = node_with(
        "se-a",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "write = \"sync\"\nlevel = \"established\"",
    );
    let mut b = node("se-b", "127.0.0.2", "127.0.0.1", port);
    wait_until("defer active on A", || {
        sync_status(&mut a).defer == "active"
    });
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    let flows = 20u16;
    let sport = |i: u16| 44000 + i;
    // Every handshake first, interleaved: none of it is held.
    for i in 0..flows {
        send(&mut a.client, &tcp(c, s, sport(i), 80, f::SYN, 1000, 0));
    }
    for _ in 0..flows {
        assert!(recv(&mut a.server, WAIT).is_some(), "SYN forwarded");
    }
    for i in 0..flows {
        send(
            &mut a.server,
            &tcp(s, c, 80, sport(i), f::SYN | f::ACK, 5000, 1001),
        );
    }
    for _ in 0..flows {
        assert!(recv(&mut a.client, WAIT).is_some(), "SYN/ACK forwarded");
    }
    wait_until("counters published", || stat(&mut a.app, "tx") >= 40);
    assert_eq!(
        stat(&mut a.app, "deferred"),
        0,
        "a handshake packet was held"
    );
    assert!(!has_sport(&external(&mut b), sport(0)));

    // The handshake's last ACK establishes the flow: its first replicated
    // change. Then the client's FIN. Each leaves A once B holds the state.
    let steps = [
        (f::ACK, 1001, "ESTABLISHED"),
        (f::FIN | f::ACK, 1001, "FIN_WAIT"),
    ];
    for (flags, seq, state) in steps {
        for i in 0..flows {
            send(&mut a.client, &tcp(c, s, sport(i), 80, flags, seq, 5001));
        }
        for i in 0..flows {
            assert!(recv(&mut a.server, WAIT).is_some(), "{state}: forwarded");
            // Frames leave in order; B must hold at least this flow's state.
            assert_eq!(
                external_state(&mut b, sport(i)),
                internal_state(&mut a, sport(i)),
                "flow {i} left A before B held its state"
            );
        }
        assert_eq!(
            internal_state(&mut a, sport(0)).as_deref(),
            Some(state),
            "the step's state"
        );
    }
    let held = 2 * u64::from(flows);
    wait_until("counters published", || {
        stat(&mut a.app, "defer_released") >= held
    });
    assert_eq!(stat(&mut a.app, "deferred"), held);
    assert_eq!(stat(&mut a.app, "defer_timeouts"), 0);
    let st = sync_status(&mut a);
    assert_eq!(
        (st.defer_held, st.defer_released, st.defer_timeouts),
        (held, held, 0)
    );
}
