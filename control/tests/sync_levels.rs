//! Sync levels between two appliances in one process over loopback UDP:
//! with `[sync] level = "established"`, a flow whose handshake never
//! completes is never sent to the peer, while one that completes it is.
//! No root needed.

use std::time::Duration;

use ftfw_control::console::proto::{Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{
    external_state, free_port, ok, start_mem, tcp, through, MemNode, MEM_BRIDGE,
};
use ftfw_testkit::wait_until;

const C: &str = "192.0.2.1";
const S: &str = "198.51.100.2";
const WAIT: Duration = Duration::from_secs(10);

fn node(name: &str, local: &str, peer: &str, port: u16, extra_sync: &str) -> MemNode {
    let dir =
        std::env::temp_dir().join(format!("ftfw-levels-{name}-{}-{port}", std::process::id()));
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

#[test]
fn level_established_never_sends_a_flow_whose_handshake_never_completes() {
    let port = free_port();
    let mut a = node(
        "a",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "level = \"established\"\n",
    );
    let mut b = node("b", "127.0.0.2", "127.0.0.1", port, "");

    // Half-open: a SYN and its SYN-ACK, never the final ACK.
    through(&mut a, true, &tcp(C, S, 43000, 80, f::SYN, 100, 0));
    through(
        &mut a,
        false,
        &tcp(S, C, 80, 43000, f::SYN | f::ACK, 500, 101),
    );
    // A SYN nobody answers.
    through(&mut a, true, &tcp(C, S, 43002, 80, f::SYN, 100, 0));
    // Then a flow that completes its handshake: it reaches B.
    ftfw_testkit::mem::handshake(&mut a, C, S, 43001, 80);
    wait_until("the established flow reached B", WAIT, || {
        external_state(&mut b, 43001).as_deref() == Some("ESTABLISHED")
    });
    // The sync channel is in order: had the half-open flows been sent
    // (before the established one), B would have them now.
    assert_eq!(external_state(&mut b, 43000), None, "half-open flow sent");
    assert_eq!(external_state(&mut b, 43002), None, "unanswered SYN sent");
    // Workers publish their counters between bursts: wait for them.
    wait_until("skipped changes counted", WAIT, || {
        sync_status(&mut a).level_skipped >= 3
    });
}
