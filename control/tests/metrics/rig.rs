//! The bridged rig the metrics tests share: two workers, a rule set that
//! accepts, rejects, drops and logs, and a traffic scenario.

use std::time::Duration;

use ftfw_control::console::ConsoleHandler;
use ftfw_control::metrics::Snapshot;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{handshake, recv, send, start_mem, tcp, MemNode, MEM_BRIDGE};

const RULES: &str = "policy drop\naccept ct established,related\ndrop ct invalid\n\
    log in outside proto tcp dport 8080\n\
    accept in outside proto tcp dport 80 ct new\nreject in outside proto tcp dport 23\n";

pub(crate) fn rig(tag: &str, failover: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-metrics-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.conf"), RULES).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n[dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n[rules]\nfile = \"rules.conf\"\n\n{failover}"
    );
    let n = start_mem(tag, dir, &text);
    // busy_cpu_ns is counted when asked for, as the lab does.
    n.app.set_cpu_accounting(true);
    n
}

/// Keepalived decides the role; replication to a peer that never
/// answers (the sync metrics are exported all the same).
pub(crate) fn keepalived() -> String {
    format!(
        "[sync]\nlocal = \"127.0.0.1\"\npeer = \"127.0.0.2\"\nport = {}\n\n[failover]\nmode = \"keepalived\"\n",
        ftfw_testkit::mem::free_port()
    )
}

pub(crate) fn snapshot(n: &mut MemNode) -> Snapshot {
    Snapshot::collect(|r| Ok(n.app.handle(r))).unwrap()
}

/// Some traffic: a handshake (accepted, fast path), a rejected and a
/// dropped SYN, an INVALID segment, a logged one, junk frames.
pub(crate) fn drive(n: &mut MemNode) {
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    handshake(n, c, s, 40000, 80);
    send(&mut n.client, &tcp(c, s, 40001, 23, f::SYN, 1, 0));
    assert!(
        recv(&mut n.client, Duration::from_secs(10)).is_some(),
        "RST back"
    );
    send(&mut n.client, &tcp(c, s, 40002, 25, f::SYN, 1, 0));
    send(&mut n.client, &tcp(c, s, 40003, 80, f::ACK, 1, 1));
    send(&mut n.client, &tcp(c, s, 40004, 8080, f::SYN, 1, 0));
}
