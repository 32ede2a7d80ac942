//! Translated flows replicate and keep translating after a takeover: two
//! appliances on `mem` ports with two workers each and the same SNAT rule;
//! connections made through A are committed on B under keepalived and
//! their packets are translated by B exactly as A translated them.

use std::time::Duration;

use ftfw_control::console::proto::{NotifyState, Payload, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::parse_frame;
use ftfw_dataplane::port::mem::FanoutHost;
use ftfw_testkit::mem::{external, free_port, ok, recv, send, start_mem, tcp, MemNode, MEM_BRIDGE};

const WAIT: Duration = Duration::from_secs(10);
const PUBLIC: &str = "203.0.113.1";
const SERVER: &str = "198.51.100.21";

fn node(name: &str, local: &str, peer: &str, port: u16, extra: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-nat-{name}-{}-{port}", std::process::id()));
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         [dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n\
         rules = [\"nat src in outside from 192.0.2.0/24 to 203.0.113.1 ports 20000-29999\"]\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\n\
         startup_resync = false\n{extra}\n"
    );
    start_mem(name, dir, &text)
}

fn forwarded(port: &mut FanoutHost) -> Vec<u8> {
    recv(port, WAIT).expect("frame not forwarded")
}

/// (source address, source port) of a frame.
fn source(frame: &[u8]) -> (String, u16) {
    let m = parse_frame(frame).unwrap();
    (m.tuple.src_ip().to_string(), m.tuple.src_port)
}

fn counter(n: &mut MemNode, name: &str) -> u64 {
    let Payload::Stats(s) = ok(n.app.handle(Request::Stats)) else {
        panic!("not stats")
    };
    s.total
        .fields()
        .into_iter()
        .find(|(k, _)| *k == name)
        .map_or(0, |(_, v)| v)
}

#[test]
fn snat_flows_replicate_and_translate_identically_after_a_takeover() {
    let port = free_port();
    let mut a = node("a", "127.0.0.1", "127.0.0.2", port, "");
    let mut b = node(
        "b",
        "127.0.0.2",
        "127.0.0.1",
        port,
        "\n[failover]\nmode = \"keepalived\"\n",
    );
    // Connections from eight clients through A; the server sees each from
    // the public address with a port A chose.
    let clients: Vec<(String, u16)> = (0..8u16)
        .map(|i| (format!("192.0.2.{}", 10 + i), 41000 + i))
        .collect();
    let mut public = Vec::new();
    for (c, sp) in &clients {
        send(&mut a.client, &tcp(c, SERVER, *sp, 80, f::SYN, 10, 0));
        let (src, pport) = source(&forwarded(&mut a.server));
        assert_eq!(src, PUBLIC);
        assert!((20000..=29999).contains(&pport), "{pport}");
        send(
            &mut a.server,
            &tcp(SERVER, PUBLIC, 80, pport, f::SYN | f::ACK, 700, 11),
        );
        let back = parse_frame(&forwarded(&mut a.client)).unwrap();
        assert_eq!(
            (back.tuple.dst_ip().to_string(), back.tuple.dst_port),
            (c.clone(), *sp)
        );
        send(&mut a.client, &tcp(c, SERVER, *sp, 80, f::ACK, 11, 701));
        forwarded(&mut a.server);
        public.push(pport);
    }
    // B's external cache holds them with their translated reply tuples.
    ftfw_testkit::wait_until("the translated flows in B's external cache", WAIT, || {
        let l = external(&mut b);
        clients.iter().zip(&public).all(|((c, sp), pp)| {
            l.flows.iter().any(|fl| {
                fl.original.src.to_string() == *c
                    && fl.original.sport == Some(*sp)
                    && fl.state.as_deref() == Some("ESTABLISHED")
                    && fl
                        .reply
                        .as_ref()
                        .is_some_and(|r| r.dst.to_string() == PUBLIC && r.dport == Some(*pp))
            })
        })
    });
    // A dies; keepalived makes B master: commit, then forward.
    drop(a);
    let Payload::Notified(change) = ok(b.app.handle(Request::Notify {
        state: NotifyState::Master,
    })) else {
        panic!("not a notify answer")
    };
    assert_eq!(change.flows_committed, 8);
    // Each connection goes on through B translated as A translated it,
    // both ways.
    for ((c, sp), pp) in clients.iter().zip(&public) {
        send(
            &mut b.client,
            &tcp(c, SERVER, *sp, 80, f::ACK | f::PSH, 11, 701),
        );
        assert_eq!(
            source(&forwarded(&mut b.server)),
            (PUBLIC.to_string(), *pp),
            "client {c}"
        );
        send(
            &mut b.server,
            &tcp(SERVER, PUBLIC, 80, *pp, f::ACK, 701, 12),
        );
        let back = parse_frame(&forwarded(&mut b.client)).unwrap();
        assert_eq!(
            (back.tuple.dst_ip().to_string(), back.tuple.dst_port),
            (c.clone(), *sp)
        );
    }
    // B made no translation of its own and found every packet's flow.
    ftfw_testkit::wait_until("B's NAT counters", WAIT, || {
        counter(&mut b, "nat_translated") >= 16
    });
    assert_eq!(counter(&mut b, "nat_flows"), 0);
    assert_eq!(counter(&mut b, "invalid"), 0);
}
