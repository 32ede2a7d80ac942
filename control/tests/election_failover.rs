//! Two appliances in one process with the built-in election and FT-FW
//! replication over loopback UDP (127.0.0.1 and 127.0.0.2), mem ports in
//! transparent mode: the higher priority node becomes primary and forwards;
//! after it crashes the backup takes over by itself, committing the
//! replicated flows before forwarding, so an established connection goes
//! on with no reset; the old primary returns as a backup. No root needed.

use std::time::{Duration, Instant};

use ftfw_control::console::proto::{FlowFilter, Payload, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::election_driver::ElectionDriver;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::parse_frame;
use ftfw_testkit::mem::{free_port, ok, recv, send, start_mem, stat, tcp, MemNode, MEM_BRIDGE};

const KEY: &str = "000102030405060708090a0b0c0d0e0f1011121314151617";

/// An appliance with its election driver (`None` once crashed).
struct Node {
    mem: MemNode,
    driver: Option<ElectionDriver>,
}

impl std::ops::Deref for Node {
    type Target = MemNode;
    fn deref(&self) -> &MemNode {
        &self.mem
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut MemNode {
        &mut self.mem
    }
}

#[allow(clippy::too_many_arguments)]
fn node(
    tag: &str,
    id: u32,
    priority: u8,
    local: &str,
    peer: &str,
    peer_id: u32,
    sync_port: u16,
    election_port: u16,
) -> Node {
    node_extra(
        tag,
        id,
        priority,
        local,
        peer,
        peer_id,
        sync_port,
        election_port,
        "",
    )
}

/// [`node`] with more `[failover]` lines (`[failover.health]`).
#[allow(clippy::too_many_arguments)]
fn node_extra(
    tag: &str,
    id: u32,
    priority: u8,
    local: &str,
    peer: &str,
    peer_id: u32,
    sync_port: u16,
    election_port: u16,
    extra: &str,
) -> Node {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-elect-{tag}-{}-{sync_port}",
        std::process::id()
    ));
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport 80 ct new\"]\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {sync_port}\nalive_interval_ms = 50\n\n\
         [failover]\nmode = \"election\"\nnode = {id}\npriority = {priority}\nkey = \"{KEY}\"\n\
         port = {election_port}\ncheck_interval_ms = 50\n\n\
         [[failover.peer]]\nnode = {peer_id}\naddress = \"{peer}\"\n{extra}"
    );
    let mem = start_mem(tag, dir, &text);
    let driver = ElectionDriver::new(mem.app.config(), Instant::now()).unwrap();
    Node {
        mem,
        driver: Some(driver),
    }
}

/// Runs every live node's election driver for `d`.
fn pump(nodes: &mut [&mut Node], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for n in nodes.iter_mut() {
            if let Some(drv) = &mut n.driver {
                drv.poll(Instant::now(), &mut n.mem.app);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Pumps until `f` holds (panics after 10 s, naming `what`).
fn pump_until(nodes: &mut [&mut Node], what: &str, mut f: impl FnMut(&mut [&mut Node]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    eprintln!("waiting for {what}");
    while !f(nodes) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        pump(nodes, Duration::from_millis(5));
    }
}

/// A TCP handshake from `c` to `s:80` (source port `sport`) through node
/// `n`, each segment checked at the far side.
fn handshake(n: &mut Node, c: &str, s: &str, sport: u16) {
    send(&mut n.client, &tcp(c, s, sport, 80, f::SYN, 1, 0));
    assert!(recv(&mut n.server, Duration::from_secs(5)).is_some(), "SYN");
    send(
        &mut n.server,
        &tcp(s, c, 80, sport, f::SYN | f::ACK, 500, 2),
    );
    assert!(
        recv(&mut n.client, Duration::from_secs(5)).is_some(),
        "SYN/ACK"
    );
    send(&mut n.client, &tcp(c, s, sport, 80, f::ACK, 2, 501));
    assert!(recv(&mut n.server, Duration::from_secs(5)).is_some(), "ACK");
}

fn role(n: &mut Node) -> String {
    let Payload::Status(s) = ok(n.app.handle(Request::Status)) else {
        panic!()
    };
    s.role
}

fn external_total(n: &mut Node) -> u64 {
    let Payload::ExternalFlows(l) = ok(n.app.handle(Request::ExternalList {
        filter: FlowFilter::default(),
        limit: None,
    })) else {
        panic!()
    };
    l.total
}

#[test]
fn backup_takes_over_from_a_crashed_primary_without_resetting_connections() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FTFW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let (sp, ep) = (free_port(), free_port());
    let mut n1 = node("n1", 1, 200, "127.0.0.1", "127.0.0.2", 2, sp, ep);
    let mut n2 = node("n2", 2, 100, "127.0.0.2", "127.0.0.1", 1, sp, ep);

    // The higher priority node becomes primary and is the only one forwarding.
    pump_until(&mut [&mut n1, &mut n2], "node 1 to become primary", |ns| {
        role(ns[0]) == "active" && role(ns[1]) == "backup"
    });
    pump(&mut [&mut n1, &mut n2], Duration::from_millis(300));
    assert_eq!(
        (role(&mut n1).as_str(), role(&mut n2).as_str()),
        ("active", "backup")
    );

    // A connection through node 1, replicated to node 2.
    let (c, s) = ("192.0.2.10", "198.51.100.20");
    handshake(&mut n1, c, s, 43000);
    pump_until(&mut [&mut n1, &mut n2], "the flow at node 2", |ns| {
        external_total(ns[1]) == 1
    });

    // Node 1 crashes: no SVC_SHUTDOWN, no more messages of any kind.
    n1.driver = None;
    n1.app.stop();
    let crashed = Instant::now();
    pump_until(&mut [&mut n2], "node 2 to take over", |ns| {
        role(ns[0]) == "active"
    });
    let took = crashed.elapsed();
    let Payload::Status(st) = ok(n2.app.handle(Request::Status)) else {
        panic!()
    };
    let t = st.last_takeover.expect("a takeover is recorded");
    assert_eq!(t.flows_committed, 1);
    let names: Vec<&str> = t.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(&names[..2], ["commit", "forward"], "{names:?}");
    eprintln!("takeover {took:?} after the crash; steps {:?}", t.steps);

    // The connection goes on through node 2: mid-stream segments pass both
    // ways, nothing is invalid.
    send(
        &mut n2.client,
        &tcp(c, s, 43000, 80, f::ACK | f::PSH, 2, 501),
    );
    let got = recv(&mut n2.server, Duration::from_secs(5)).expect("forwarded by node 2");
    assert_eq!(parse_frame(&got).unwrap().tcp.flags, f::ACK | f::PSH);
    send(&mut n2.server, &tcp(s, c, 80, 43000, f::ACK, 501, 3));
    assert!(recv(&mut n2.client, Duration::from_secs(5)).is_some());
    assert_eq!(stat(&mut n2.app, "invalid"), 0);

    // Node 1 comes back: it stays a backup (no preemption) and learns node
    // 2's table through a resync; node 2 keeps forwarding.
    drop(n1);
    let mut n1 = node("n1b", 1, 200, "127.0.0.1", "127.0.0.2", 2, sp, ep);
    pump_until(
        &mut [&mut n1, &mut n2],
        "node 1 to hold node 2's flow",
        |ns| external_total(ns[0]) >= 1,
    );
    pump(&mut [&mut n1, &mut n2], Duration::from_millis(500));
    assert_eq!(
        (role(&mut n1).as_str(), role(&mut n2).as_str()),
        ("backup", "active")
    );
    send(&mut n2.client, &tcp(c, s, 43000, 80, f::ACK, 3, 502));
    assert!(recv(&mut n2.server, Duration::from_secs(5)).is_some());
    let Payload::Status(st) = ok(n1.app.handle(Request::Status)) else {
        panic!()
    };
    let e = st.election.expect("election status");
    assert_eq!(e["master"], 2, "{e}");
}

fn flows_total(n: &mut Node) -> u64 {
    let Payload::Flows(l) = ok(n.app.handle(Request::FlowsList {
        filter: FlowFilter::default(),
        limit: None,
    })) else {
        panic!()
    };
    l.total
}

#[test]
fn migrate_hands_the_primary_role_over_with_no_flow_lost() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FTFW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let (sp, ep) = (free_port(), free_port());
    let mut n1 = node("m1", 1, 200, "127.0.0.1", "127.0.0.2", 2, sp, ep);
    let mut n2 = node("m2", 2, 100, "127.0.0.2", "127.0.0.1", 1, sp, ep);
    pump_until(
        &mut [&mut n1, &mut n2],
        "node 1 primary, node 2 synced",
        |ns| {
            let Payload::Status(s) = ok(ns[1].app.handle(Request::Status)) else {
                panic!()
            };
            role(ns[0]) == "active"
                && s.election
                    .is_some_and(|e| e["freshness"]["synced"] == true && e["master"] == 1)
        },
    );
    // A connection through node 1 and 500 flows added by the operator.
    let (c, s) = ("192.0.2.10", "198.51.100.20");
    handshake(&mut n1, c, s, 44000);
    // (Added in one bulk import: a long run of console requests without
    // pumping the drivers would starve the election, as a busy control
    // thread would.)
    let states: Vec<ftfw_dataplane::flow::FlowState> = (0..500u16)
        .map(|i| ftfw_dataplane::flow::FlowState {
            key: ftfw_dataplane::flow::FlowKey {
                orig: ftfw_dataplane::flow::Tuple::new(
                    "192.0.2.50".parse().unwrap(),
                    "198.51.100.50".parse().unwrap(),
                    ftfw_dataplane::flow::proto::UDP,
                    10000 + i,
                    53,
                ),
                zone: 0,
            },
            tcp_state: ftfw_dataplane::flow::TcpState::None,
            status: ftfw_dataplane::flow::status::SEEN_REPLY,
            timeout_secs: 600,
            mark: 0,
            wscale: [0, 0],
            counters: Default::default(),
            extras: Default::default(),
        })
        .collect();
    assert_eq!(n1.app.import_flows_with(states, true), Ok((500, 0)));
    pump(&mut [&mut n1, &mut n2], Duration::from_millis(200));
    let before = flows_total(&mut n1);
    assert_eq!(before, 501);

    // Only a configured peer, and only from the primary.
    assert!(matches!(
        n1.app.handle(Request::Migrate { to: 9 }),
        Response::Error(_)
    ));
    assert!(matches!(
        n2.app.handle(Request::Migrate { to: 1 }),
        Response::Error(_)
    ));
    pump_until(
        &mut [&mut n1, &mut n2],
        "node 2 listed live and synced by node 1",
        |ns| {
            let Payload::Status(s) = ok(ns[0].app.handle(Request::Status)) else {
                panic!()
            };
            s.election
                .is_some_and(|e| e["peers"][0]["dead"] == false && e["peers"][0]["synced"] == true)
        },
    );
    let Payload::MigrationStarted { to } = ok(n1.app.handle(Request::Migrate { to: 2 })) else {
        panic!()
    };
    assert_eq!(to, 2);
    pump_until(&mut [&mut n1, &mut n2], "the roles to swap", |ns| {
        role(ns[0]) == "backup" && role(ns[1]) == "active"
    });
    pump_until(&mut [&mut n1, &mut n2], "the migration to finish", |ns| {
        let Payload::Status(s) = ok(ns[0].app.handle(Request::Status)) else {
            panic!()
        };
        s.migration.is_some_and(|m| m.contains("done"))
    });
    // Every flow made it: node 2 committed all of node 1's table.
    assert_eq!(flows_total(&mut n2), before);
    // The connection goes on through node 2.
    send(
        &mut n2.client,
        &tcp(c, s, 44000, 80, f::ACK | f::PSH, 2, 501),
    );
    assert!(recv(&mut n2.server, Duration::from_secs(5)).is_some());
    // Node 1 stays a backup of node 2.
    pump(&mut [&mut n1, &mut n2], Duration::from_millis(400));
    assert_eq!(
        (role(&mut n1).as_str(), role(&mut n2).as_str()),
        ("backup", "active")
    );
    let Payload::Status(st) = ok(n1.app.handle(Request::Status)) else {
        panic!()
    };
    assert_eq!(st.election.expect("election")["master"], 2);
}

/// Proactive migration (hFT-FW V): the primary's memory controller reports
/// an uncorrectable error (a fake EDAC counter under the configured root);
/// it hands its role to the backup with the planned handover before it
/// fails, and the established connection goes on through the backup.
#[test]
fn a_fake_edac_error_hands_the_primary_role_over_with_no_flow_lost() {
    let root = std::env::temp_dir().join(format!("ftfw-health-root-{}", std::process::id()));
    let ue = root.join("devices/system/edac/mc/mc0/ue_count");
    std::fs::create_dir_all(ue.parent().unwrap()).unwrap();
    std::fs::write(&ue, "0\n").unwrap();
    let health = format!(
        "\n[failover.health]\nroot = \"{}\"\ninterval_ms = 20\n",
        root.display()
    );
    let (sp, ep) = (free_port(), free_port());
    let mut n1 = node_extra("h1", 1, 200, "127.0.0.1", "127.0.0.2", 2, sp, ep, &health);
    let mut n2 = node("h2", 2, 100, "127.0.0.2", "127.0.0.1", 1, sp, ep);
    pump_until(
        &mut [&mut n1, &mut n2],
        "node 1 primary, node 2 listed live and synced by node 1",
        |ns| {
            let Payload::Status(s) = ok(ns[0].app.handle(Request::Status)) else {
                panic!()
            };
            role(ns[0]) == "active"
                && s.election.is_some_and(|e| {
                    e["peers"][0]["dead"] == false
                        && e["peers"][0]["synced"] == true
                        && e["health"]["last"]["uncorrected"] == 0
                })
        },
    );
    let (c, s) = ("192.0.2.10", "198.51.100.20");
    handshake(&mut n1, c, s, 45000);

    // The error: node 1 migrates on its own.
    std::fs::write(&ue, "1\n").unwrap();
    pump_until(&mut [&mut n1, &mut n2], "the roles to swap", |ns| {
        role(ns[0]) == "backup" && role(ns[1]) == "active"
    });
    let Payload::Status(st) = ok(n1.app.handle(Request::Status)) else {
        panic!()
    };
    // The planned handover ran (its progress replaces the health note).
    let note = st.migration.unwrap_or_default();
    assert!(note.starts_with("to node 2"), "{note}");
    assert_eq!(
        st.election.expect("election")["health"]["trigger"],
        "1 uncorrectable memory error(s) (EDAC)"
    );
    // The connection goes on through node 2.
    send(
        &mut n2.client,
        &tcp(c, s, 45000, 80, f::ACK | f::PSH, 2, 501),
    );
    assert!(
        recv(&mut n2.server, Duration::from_secs(5)).is_some(),
        "continues via node 2"
    );
    let _ = std::fs::remove_dir_all(&root);
}
