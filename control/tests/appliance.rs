//! The appliance assembled from a config with `mem` ports, driven through
//! its console handler: forwarding and filtering end to end, the console's
//! flow operations, and rule reloads (good and broken). No root needed.

use std::time::Duration;

use ftfw_control::console::proto::{FlowFilter, FlowJson, Payload, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::flow::{proto, status, Counters, FlowKey, FlowState, TcpState, Tuple};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::parse_frame;
use ftfw_testkit::mem::{ok, recv, send, start_mem, stat, tcp, wait_stat, MemNode, MEM_BRIDGE};

type Rig = MemNode;

fn rig(rules: &str) -> Rig {
    rig_workers(rules, 1)
}

fn rig_workers(rules: &str, workers: usize) -> Rig {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-appliance-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.conf"), rules).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n[dataplane]\nworkers = {workers}\n\n\
                {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n[rules]\nfile = \"rules.conf\"\n"
    );
    start_mem("host", dir, &text)
}

const RULES: &str = "policy drop\naccept ct established,related\ndrop ct invalid\naccept in outside proto tcp dport 80 ct new\nreject in outside proto tcp dport 23\n";

#[test]
fn filters_statefully_and_lists_flows() {
    let mut r = rig(RULES);
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    // Handshake through the bridge.
    send(&mut r.client, &tcp(c, s, 40000, 80, f::SYN, 100, 0));
    let got = recv(&mut r.server, Duration::from_secs(5)).expect("SYN forwarded");
    assert_eq!(parse_frame(&got).unwrap().tcp.flags, f::SYN);
    send(
        &mut r.server,
        &tcp(s, c, 80, 40000, f::SYN | f::ACK, 500, 101),
    );
    assert!(
        recv(&mut r.client, Duration::from_secs(5)).is_some(),
        "SYN/ACK forwarded"
    );
    send(&mut r.client, &tcp(c, s, 40000, 80, f::ACK, 101, 501));
    assert!(
        recv(&mut r.server, Duration::from_secs(5)).is_some(),
        "ACK forwarded"
    );

    // The console lists it ESTABLISHED and assured.
    let filter = FlowFilter {
        proto: Some(proto::TCP),
        dport: Some(80),
        ..FlowFilter::default()
    };
    let Payload::Flows(l) = ok(r.app.handle(Request::FlowsList {
        filter: filter.clone(),
        limit: None,
    })) else {
        panic!()
    };
    assert_eq!(l.total, 1);
    assert_eq!(l.flows[0].state.as_deref(), Some("ESTABLISHED"));
    assert!(
        l.flows[0].status_names.iter().any(|n| n == "ASSURED"),
        "{:?}",
        l.flows[0]
    );

    // The handshake's three changes (created, SYN_RECV, ESTABLISHED) are
    // consumed as deltas (by the state keeper of this standalone node, the
    // control thread when no state file is kept; the test drains on
    // demand), except those the worker merged into a newer change of the
    // flow in the same loop iteration.
    ftfw_testkit::wait_until(
        "the handshake's deltas consumed",
        Duration::from_secs(5),
        || {
            r.app.drain(1024);
            let Payload::Status(st) = ok(r.app.handle(Request::Status)) else {
                panic!()
            };
            st.deltas_consumed + stat(&mut r.app, "deltas_merged") >= 3
        },
    );

    // A port no rule allows: dropped and counted.
    let before = stat(&mut r.app, "dropped_by_rule");
    send(&mut r.client, &tcp(c, s, 40001, 8080, f::SYN, 7, 0));
    assert_eq!(
        wait_stat(&mut r.app, "dropped_by_rule", before + 1),
        before + 1
    );
    assert!(recv(&mut r.server, Duration::from_millis(50)).is_none());

    // A rejected port: the client gets a RST back, the server nothing.
    send(&mut r.client, &tcp(c, s, 40002, 23, f::SYN, 9, 0));
    let rst = recv(&mut r.client, Duration::from_secs(5)).expect("RST sent back");
    let m = parse_frame(&rst).unwrap();
    assert_ne!(m.tcp.flags & f::RST, 0);
    assert_eq!(m.tuple.src_port, 23);
    assert!(recv(&mut r.server, Duration::from_millis(50)).is_none());

    // An ACK for no connection: invalid, dropped.
    let inv = stat(&mut r.app, "invalid");
    send(&mut r.client, &tcp(c, s, 40003, 80, f::ACK, 1, 1));
    assert_eq!(wait_stat(&mut r.app, "invalid", inv + 1), inv + 1);
    assert!(recv(&mut r.server, Duration::from_millis(50)).is_none());

    // Non-IP (an ARP-like frame) passes untouched.
    let mut arp = tcp(c, s, 1, 2, f::SYN, 0, 0);
    arp[12] = 0x08;
    arp[13] = 0x06;
    send(&mut r.client, &arp);
    assert_eq!(
        recv(&mut r.server, Duration::from_secs(5)).as_deref(),
        Some(&arp[..])
    );

    // flows delete removes it; traffic of the deleted flow is now invalid.
    let Payload::FlowsDeleted { deleted } = ok(r.app.handle(Request::FlowsDelete { filter }))
    else {
        panic!()
    };
    assert_eq!(deleted, 1);
    send(&mut r.client, &tcp(c, s, 40000, 80, f::ACK, 101, 501));
    assert!(recv(&mut r.server, Duration::from_millis(100)).is_none());
}

#[test]
fn flows_add_lets_mid_stream_traffic_through() {
    let mut r = rig(RULES);
    let key = FlowKey {
        orig: Tuple::new(
            "192.0.2.9".parse().unwrap(),
            "198.51.100.9".parse().unwrap(),
            proto::TCP,
            41000,
            443,
        ),
        zone: 0,
    };
    let st = FlowState {
        key,
        tcp_state: TcpState::Established,
        status: status::SEEN_REPLY | status::ASSURED,
        timeout_secs: 600,
        mark: 0,
        wscale: [0, 0],
        counters: [Counters::default(); 2],
        extras: Default::default(),
    };
    ok(r.app.handle(Request::FlowsAdd {
        flow: FlowJson::from(&st),
    }));
    // Port 443 has no rule for new flows, but the added flow is established.
    send(
        &mut r.client,
        &tcp(
            "192.0.2.9",
            "198.51.100.9",
            41000,
            443,
            f::ACK | f::PSH,
            5555,
            7777,
        ),
    );
    assert!(
        recv(&mut r.server, Duration::from_secs(5)).is_some(),
        "added flow's traffic forwarded"
    );
    send(
        &mut r.server,
        &tcp("198.51.100.9", "192.0.2.9", 443, 41000, f::ACK, 7777, 5555),
    );
    assert!(
        recv(&mut r.client, Duration::from_secs(5)).is_some(),
        "reply forwarded"
    );
}

#[test]
fn reload_swaps_whole_sets_and_keeps_the_old_one_on_error() {
    let mut r = rig(RULES);
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    // Open a flow on port 80.
    send(&mut r.client, &tcp(c, s, 40000, 80, f::SYN, 100, 0));
    assert!(recv(&mut r.server, Duration::from_secs(5)).is_some());
    send(
        &mut r.server,
        &tcp(s, c, 80, 40000, f::SYN | f::ACK, 500, 101),
    );
    assert!(recv(&mut r.client, Duration::from_secs(5)).is_some());

    // A broken file is refused whole, with file and line; the old set stays.
    std::fs::write(
        r.dir.join("rules.conf"),
        "policy drop\naccept ct established\naccept proto tcp dport 99999\n",
    )
    .unwrap();
    let Response::Error(e) = r.app.handle(Request::RulesReload) else {
        panic!("broken rules accepted")
    };
    assert!(e.contains("rules.conf:3"), "{e}");
    let Payload::Status(st) = ok(r.app.handle(Request::Status)) else {
        panic!()
    };
    assert_eq!(st.rules.count, 4);
    assert!(st.last_reload_error.is_some());
    send(&mut r.client, &tcp(c, s, 40000, 80, f::ACK, 101, 501));
    assert!(
        recv(&mut r.server, Duration::from_secs(5)).is_some(),
        "traffic stopped after a refused reload"
    );

    // A good set that no longer allows established traffic applies to the
    // existing flow too: flows are re-checked when the rules change.
    std::fs::write(r.dir.join("rules.conf"), "policy drop\naccept proto udp\n").unwrap();
    let Payload::Reloaded(res) = ok(r.app.handle(Request::RulesReload)) else {
        panic!()
    };
    assert_eq!(res.rules.count, 1);
    assert_eq!(res.previous_count, 4);
    send(&mut r.client, &tcp(c, s, 40000, 80, f::ACK, 101, 501));
    assert!(
        recv(&mut r.server, Duration::from_millis(200)).is_none(),
        "old flow still passes after its rule went"
    );
    let Payload::Rules(info) = ok(r.app.handle(Request::RulesShow)) else {
        panic!()
    };
    assert_eq!(info.rules.len(), 1);
    assert_eq!(info.rules[0].text, "accept proto udp");
}

#[test]
fn two_workers_keep_both_directions_of_each_flow_together() {
    let mut r = rig_workers(RULES, 2);
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    let flows = 40u16;
    for k in 0..flows {
        let sp = 42000 + k;
        send(&mut r.client, &tcp(c, s, sp, 80, f::SYN, 100, 0));
        assert!(
            recv(&mut r.server, Duration::from_secs(5)).is_some(),
            "SYN {k} forwarded"
        );
        // The SYN/ACK must reach the worker that saw the SYN, or it is
        // invalid there (no flow) and dropped.
        send(&mut r.server, &tcp(s, c, 80, sp, f::SYN | f::ACK, 500, 101));
        assert!(
            recv(&mut r.client, Duration::from_secs(5)).is_some(),
            "SYN/ACK {k} forwarded"
        );
        send(&mut r.client, &tcp(c, s, sp, 80, f::ACK, 101, 501));
        assert!(
            recv(&mut r.server, Duration::from_secs(5)).is_some(),
            "ACK {k} forwarded"
        );
    }
    // Counters are published when a worker goes idle: wait for the last
    // ACK's flow to show.
    wait_stat(&mut r.app, "flows", u64::from(flows));
    let Payload::Stats(st) = ok(r.app.handle(Request::Stats)) else {
        panic!()
    };
    assert_eq!(st.workers.len(), 2);
    assert_eq!(st.total.invalid, 0);
    assert!(
        st.workers.iter().all(|w| w.flows > 0),
        "flows not spread: {:?}",
        st.workers.iter().map(|w| w.flows).collect::<Vec<_>>()
    );
    assert_eq!(st.total.flows, u64::from(flows));
    // Listing and deleting reach every worker.
    let filter = FlowFilter {
        proto: Some(proto::TCP),
        state: Some(TcpState::Established),
        ..FlowFilter::default()
    };
    let Payload::Flows(l) = ok(r.app.handle(Request::FlowsList {
        filter: filter.clone(),
        limit: None,
    })) else {
        panic!()
    };
    assert_eq!(l.total, u64::from(flows));
    let Payload::FlowsDeleted { deleted } = ok(r.app.handle(Request::FlowsDelete { filter }))
    else {
        panic!()
    };
    assert_eq!(deleted, u64::from(flows));
}

#[test]
fn bulk_import_spreads_flows_over_workers_and_they_carry_traffic() {
    let mut r = rig_workers(RULES, 2);
    let states: Vec<FlowState> = (0..10_000u16)
        .map(|k| FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    "192.0.2.50".parse().unwrap(),
                    "198.51.100.50".parse().unwrap(),
                    proto::TCP,
                    10_000 + k,
                    443,
                ),
                zone: 0,
            },
            tcp_state: TcpState::Established,
            status: status::SEEN_REPLY | status::ASSURED,
            timeout_secs: 600,
            mark: 0,
            wscale: [0, 0],
            counters: [Counters::default(); 2],
            extras: Default::default(),
        })
        .collect();
    assert_eq!(r.app.import_flows(states), Ok((10_000, 0)));
    let Payload::Stats(st) = ok(r.app.handle(Request::Stats)) else {
        panic!()
    };
    assert_eq!(st.total.flows, 10_000);
    assert!(
        st.workers.iter().all(|w| w.flows > 3_000),
        "{:?}",
        st.workers.iter().map(|w| w.flows).collect::<Vec<_>>()
    );
    // An imported flow's mid-stream traffic passes in both directions,
    // reaching the worker that holds it.
    for k in [0u16, 1, 2, 9_999] {
        send(
            &mut r.client,
            &tcp("192.0.2.50", "198.51.100.50", 10_000 + k, 443, f::ACK, 1, 1),
        );
        assert!(
            recv(&mut r.server, Duration::from_secs(5)).is_some(),
            "flow {k} forward"
        );
        send(
            &mut r.server,
            &tcp("198.51.100.50", "192.0.2.50", 443, 10_000 + k, f::ACK, 1, 1),
        );
        assert!(
            recv(&mut r.client, Duration::from_secs(5)).is_some(),
            "flow {k} reply"
        );
    }
}
