//! A standalone node keeps its flow table in its state file: a new
//! process started after a crash (the file as it was at that instant) or
//! after a planned restart continues the established connections that
//! strict TCP pickup would otherwise drop. No root needed (`mem` ports);
//! `benches/tests/netns_restart.rs` does the same with `kill -9` and
//! `ftfwctl restart` on real processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_control::console::proto::{FlowFilter, Payload, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::keeper::file;
use ftfw_dataplane::flow::TcpState;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{ok, recv, send, start_mem, stat, tcp, MemNode, MEM_BRIDGE};
use ftfw_testkit::wait_until;

const RULES: &str =
    "policy drop\naccept ct established,related\naccept in outside proto tcp dport 80 ct new\n";
const C: &str = "192.0.2.1";
const S: &str = "198.51.100.2";

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ftfw-keeper-{}-{name}", std::process::id()))
}

/// Starts a node in `dir`; `state` is the `[daemon] state_file` line.
fn node(tag: &str, dir: &Path, state: &str) -> MemNode {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("rules.conf"), RULES).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n{state}\n\n[dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[rules]\nfile = \"rules.conf\"\n"
    );
    start_mem(tag, dir.to_path_buf(), &text)
}

fn handshake(n: &mut MemNode, sport: u16) {
    ftfw_testkit::mem::handshake(n, C, S, sport, 80);
}

/// Mid-connection segments both ways; returns (client's passed, server's passed).
fn data_passes(n: &mut MemNode, sport: u16) -> (bool, bool) {
    send(
        &mut n.client,
        &tcp(C, S, sport, 80, f::ACK | f::PSH, 101, 501),
    );
    let up = recv(&mut n.server, Duration::from_millis(500)).is_some();
    send(&mut n.server, &tcp(S, C, 80, sport, f::ACK, 501, 101));
    let down = recv(&mut n.client, Duration::from_millis(500)).is_some();
    (up, down)
}

fn restored(n: &mut MemNode) -> ftfw_control::keeper::RestoreReport {
    let Payload::Status(st) = ok(n.app.handle(Request::Status)) else {
        panic!("status")
    };
    st.state_keeper
        .expect("a standalone node keeps a state file")
        .restored
        .expect("restore ran")
}

/// What `kill -9` leaves behind: the state file as it is while the node
/// runs, once the keeper has written the established flow.
fn crash_image(n: &MemNode, sports: &[u16]) -> Vec<u8> {
    let path = n.dir.join("ftfwd.state");
    let mut image = Vec::new();
    wait_until(
        "the state file holds the established flows",
        Duration::from_secs(5),
        || {
            let Ok(bytes) = std::fs::read(&path) else {
                return false;
            };
            let Some(r) = file::parse(&bytes) else {
                return false;
            };
            let est = r
                .flows
                .values()
                .filter(|(_, f)| {
                    sports.contains(&f.key.orig.src_port) && f.tcp_state == TcpState::Established
                })
                .count();
            image = bytes;
            est == sports.len()
        },
    );
    image
}

#[test]
fn established_connections_survive_a_crash_through_the_state_file() {
    let d = dir("crash");
    let ports = [40000, 40001, 40002];
    let image = {
        let mut a = node("keeper-crash-a", &d, "");
        for p in ports {
            handshake(&mut a, p);
        }
        crash_image(&a, &ports)
        // `a` stops here and its directory goes: only the image remains.
    };
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ftfwd.state"), &image).unwrap();
    let mut b = node("keeper-crash-b", &d, "");
    let r = restored(&mut b);
    assert_eq!(
        (r.found, r.restored, r.expired, r.bad_records),
        (3, 3, 0, 0),
        "{r:?}"
    );
    for p in ports {
        assert_eq!(data_passes(&mut b, p), (true, true), "connection {p}");
    }
    // Nothing went through the new-flow rule: the flows were known.
    assert_eq!(stat(&mut b.app, "invalid"), 0);
}

#[test]
fn without_the_state_file_strict_pickup_drops_the_same_connection() {
    // The negative control of the test above: same traffic, no state file.
    let d = dir("none");
    {
        let mut a = node("keeper-none-a", &d, "state_file = \"\"");
        handshake(&mut a, 40000);
        assert!(!d.join("ftfwd.state").exists());
    }
    let mut b = node("keeper-none-b", &d, "state_file = \"\"");
    assert_eq!(data_passes(&mut b, 40000), (false, false));
    assert!(stat(&mut b.app, "invalid") >= 1);
}

#[test]
fn a_planned_restart_hands_the_whole_table_over() {
    let d = dir("planned");
    let mut a = node("keeper-planned-a", &d, "");
    for p in [41000, 41001] {
        handshake(&mut a, p);
    }
    // A connection that was reset: handed over in its CLOSE state, so it
    // stays closed in the new process.
    handshake(&mut a, 41002);
    send(&mut a.client, &tcp(C, S, 41002, 80, f::RST, 101, 0));
    assert!(recv(&mut a.server, Duration::from_secs(5)).is_some(), "RST");
    let handed = a.app.prepare_restart().expect("restart snapshot");
    assert_eq!(handed, 3);
    // The new process: same directory, same state file.
    let image = std::fs::read(d.join("ftfwd.state")).unwrap();
    drop(a);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ftfwd.state"), image).unwrap();
    let mut b = node("keeper-planned-b", &d, "");
    let r = restored(&mut b);
    assert_eq!((r.found, r.restored), (3, 3), "{r:?}");
    for p in [41000, 41001] {
        assert_eq!(data_passes(&mut b, p), (true, true), "connection {p}");
    }
    let Payload::Flows(l) = ok(b.app.handle(Request::FlowsList {
        filter: FlowFilter {
            sport: Some(41002),
            ..FlowFilter::default()
        },
        limit: None,
    })) else {
        panic!("flows")
    };
    assert_eq!(l.total, 1);
    assert_eq!(
        l.flows[0].state.as_deref(),
        Some("CLOSE"),
        "the reset connection"
    );
}

#[test]
fn a_file_that_is_not_ours_is_moved_aside_and_the_node_starts_empty() {
    let d = dir("foreign");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ftfwd.state"), b"not a state file").unwrap();
    let mut b = node("keeper-foreign", &d, "");
    let r = restored(&mut b);
    assert_eq!(r.found, 0);
    assert_eq!(
        std::fs::read(d.join("ftfwd.state.bad")).unwrap(),
        b"not a state file"
    );
    // The node works and keeps a fresh file.
    handshake(&mut b, 42000);
    crash_image(&b, &[42000]);
}
