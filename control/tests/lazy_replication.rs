//! Bayes lazy replication (`[sync.lazy]`) between two appliances in one
//! process over loopback UDP: once A has learned that a service's
//! connections are short, their handshakes and closes are not replicated
//! (only the state they rest in reaches B), while a connection that stays
//! established past the barrier does reach B and survives a takeover.
//! No root needed.

use std::time::Duration;

use ftfw_control::console::proto::{Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{
    external_state, free_port, ok, recv, send, start_mem, tcp, through, MemNode, MEM_BRIDGE,
};
use ftfw_testkit::wait_until;

const C: &str = "192.0.2.1";
const S: &str = "198.51.100.2";
const WAIT: Duration = Duration::from_secs(10);

fn node(name: &str, local: &str, peer: &str, port: u16, extra_sync: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-lazy-{name}-{}-{port}", std::process::id()));
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\nstartup_resync = false\n{extra_sync}\n"
    );
    start_mem(name, dir, &text)
}

fn sync_status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

fn handshake(n: &mut MemNode, sport: u16) {
    ftfw_testkit::mem::handshake(n, C, S, sport, 80);
}

/// Handshake and close within milliseconds: the flow rests in TIME_WAIT.
fn short_connection(n: &mut MemNode, sport: u16) {
    handshake(n, sport);
    through(n, true, &tcp(C, S, sport, 80, f::FIN | f::ACK, 101, 501));
    through(n, false, &tcp(S, C, 80, sport, f::FIN | f::ACK, 501, 102));
    through(n, true, &tcp(C, S, sport, 80, f::ACK, 102, 502));
}

#[test]
fn learned_short_connections_cost_one_message_and_long_ones_still_replicate() {
    let port = free_port();
    let mut a = node(
        "a",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "[sync.lazy]\nbarrier_ms = 100\n",
    );
    let mut b = node("b", "127.0.0.2", "127.0.0.1", port, "");

    // Training: short connections, each given time to rest past the barrier.
    for i in 0..8u16 {
        short_connection(&mut a, 40000 + i);
    }
    // Five state changes each (SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT,
    // TIME_WAIT): each is predicted by A's sync thread, unless the worker
    // merged it into a newer change of the same flow in the same loop
    // iteration (a segment that arrives while the worker is still on the
    // burst of the segment before it).
    let changes = |s: &SyncStatusInfo| {
        let l = s.lazy.as_ref().expect("lazy on");
        l.predicted_transitional + l.predicted_stable + s.deltas_merged
    };
    wait_until(
        "the training connections rested past the barrier",
        WAIT,
        || {
            changes(&sync_status(&mut a)) >= 8 * 5
                && external_state(&mut b, 40007).as_deref() == Some("TIME_WAIT")
        },
    );
    let before_status = sync_status(&mut a);
    let before = before_status.lazy.expect("lazy on");

    // Learned: the next ten cost their handshakes and closes nothing.
    for i in 0..10u16 {
        short_connection(&mut a, 41000 + i);
    }
    wait_until("the new connections reached B in TIME_WAIT", WAIT, || {
        (0..10).all(|i| external_state(&mut b, 41000 + i).as_deref() == Some("TIME_WAIT"))
    });
    let after_status = sync_status(&mut a);
    let after = after_status.lazy.expect("lazy on");
    let held = after.predicted_transitional - before.predicted_transitional;
    let saved = after.saved_msgs - before.saved_msgs;
    let merged = after_status.deltas_merged - before_status.deltas_merged;
    // Of each connection's five changes all but the resting one (four, at
    // least three of them held by the predictor in a run) cost no message:
    // held and saved by the predictor, or merged by the worker.
    assert!(
        held + merged >= 10 * 3,
        "held {held}, merged {merged}: {after:?}"
    );
    assert!(
        saved + merged >= 10 * 3,
        "saved {saved}, merged {merged}: {after:?}"
    );

    // A connection that stays ESTABLISHED: held at first, sent once it has
    // rested past the barrier, so B can take it over.
    handshake(&mut a, 42000);
    wait_until("the long connection reached B", WAIT, || {
        external_state(&mut b, 42000).as_deref() == Some("ESTABLISHED")
    });
    let late = sync_status(&mut a).lazy.expect("lazy on");
    assert!(late.delayed > after.delayed, "sent late: {late:?}");
    let Payload::Committed(c) = ok(b.app.handle(Request::Commit)) else {
        panic!("commit")
    };
    assert!(c.committed >= 1);
    // B forwards the long connection's data without a handshake.
    ok(b.app.handle(Request::Notify {
        state: ftfw_control::console::proto::NotifyState::Master,
    }));
    send(
        &mut b.client,
        &tcp(C, S, 42000, 80, f::ACK | f::PSH, 101, 501),
    );
    assert!(recv(&mut b.server, WAIT).is_some(), "taken over");
}
