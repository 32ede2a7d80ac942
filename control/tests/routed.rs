//! Routed mode end to end in one process: the appliance assembled from a
//! routed config with `mem` ports; the test plays a client host on port
//! `outside` (192.0.2.0/24) and a server host on port `inside`
//! (198.51.100.0/24, 2001:db8:2::/64). ARP, neighbor resolution, routing
//! through conntrack and the ACL with TTL decrement and MAC rewrite, ICMP
//! time exceeded, pings of our addresses, virtual addresses answered only
//! while active, and the takeover's gratuitous announcements. No root.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ftfw_control::appliance::Appliance;
use ftfw_control::config;
use ftfw_control::console::proto::{NotifyState, Payload, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::buckets::BucketSet;
use ftfw_dataplane::l3::arp::{self, ArpRepr};
use ftfw_dataplane::l3::nd::{self, NdInfo};
use ftfw_dataplane::l3::{derived_mac, IpKey};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::arp::{OP_REPLY, OP_REQUEST};
use ftfw_dataplane::packet::{l4_checksum_valid, parse_frame, FrameSpec, L4Spec};
use ftfw_dataplane::port::mem::FanoutHost;
use ftfw_dataplane::port::{PacketBuf, Port};
use ftfw_testkit::mem::{arp_frame, ok, recv, send, start_on_mem, stat, wait_stat};
use ftfw_testkit::wait_until;

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 2];
const FW_OUT: [u8; 4] = [192, 0, 2, 253];
const VIP_OUT: [u8; 4] = [192, 0, 2, 254];

struct Rig {
    app: Appliance,
    client: FanoutHost,
    server: FanoutHost,
    dir: std::path::PathBuf,
    out_mac: [u8; 6],
    in_mac: [u8; 6],
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.app.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RULES: &str = "policy drop\naccept ct established,related\ndrop ct invalid\naccept in outside proto tcp dport 80 ct new\naccept proto icmp\naccept proto ipv6-icmp\n";

fn rig(workers: usize) -> Rig {
    rig_with(workers, "")
}

/// The rig with `extra` appended to the configuration.
fn rig_with(workers: usize, extra: &str) -> Rig {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-routed-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.conf"), RULES).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n[dataplane]\nworkers = {workers}\nmode = \"routed\"\n\n\
         [[port]]\nname = \"outside\"\nbackend = \"mem\"\naddresses = [\"192.0.2.253/24\"]\n\n\
         [[port]]\nname = \"inside\"\nbackend = \"mem\"\naddresses = [\"198.51.100.253/24\", \"2001:db8:2::fd/64\"]\n\n\
         [[route]]\nto = \"203.0.113.0/25\"\nvia = \"198.51.100.9\"\n\n\
         [[virtual_address]]\nport = \"outside\"\naddress = \"192.0.2.254/24\"\n\n\
         [[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n\n\
         [[virtual_address]]\nport = \"inside\"\naddress = \"2001:db8:2::fe/64\"\n\n\
         [conntrack]\ncapacity = 65536\n\n[rules]\nfile = \"rules.conf\"\n{extra}"
    );
    std::fs::write(dir.join("ftfwd.toml"), text).unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let (app, hosts) = start_on_mem(cfg, "host", 1024).unwrap();
    let mut it = hosts.into_iter();
    Rig {
        app,
        client: it.next().unwrap(),
        server: it.next().unwrap(),
        dir,
        out_mac: derived_mac("outside"),
        in_mac: derived_mac("inside"),
    }
}

/// Waits (bounded) for a frame on `port` that `pred` accepts, skipping others.
fn expect(port: &mut FanoutHost, what: &str, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut b = [PacketBuf::new()];
    let mut skipped = Vec::new();
    loop {
        if port.rx_burst(&mut b) == 1 {
            if pred(&b[0].data) {
                return b[0].data.to_vec();
            }
            skipped.push(b[0].data.clone());
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "no {what}; skipped {} frame(s): {skipped:02x?}",
            skipped.len()
        );
        port.wait_rx(Duration::from_millis(5));
    }
}

fn arp_of(frame: &[u8]) -> Option<ArpRepr> {
    let m = parse_frame(frame).ok()?;
    arp::parse(frame, usize::from(m.l3_offset)).ok()
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    macs: ([u8; 6], [u8; 6]),
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    ttl: u8,
) -> Vec<u8> {
    FrameSpec {
        src_mac: macs.0,
        dst_mac: macs.1,
        src_ip: ip(src),
        dst_ip: ip(dst),
        ttl,
        l4: L4Spec::tcp(ports.0, ports.1, flags, seq, ack),
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// Drives the control loop's neighbor publication until `ip` is known.
fn wait_neighbor(app: &mut Appliance, ip: IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let key = IpKey::from(ip);
    loop {
        app.drain(1024);
        if app.l3().unwrap().neighbors().get(&key).is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "neighbor {ip} never learned");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The server answers the firewall's ARP request; the firewall learns it.
fn server_answers(r: &mut Rig) {
    send(
        &mut r.server,
        &arp_frame(
            OP_REPLY,
            SERVER_MAC,
            SERVER,
            r.in_mac,
            r.in_mac,
            [198, 51, 100, 253],
        ),
    );
    wait_neighbor(&mut r.app, ip(SERVER));
}

/// The client resolves the firewall, the firewall resolves the server.
fn resolve_both(r: &mut Rig) {
    send(
        &mut r.client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], VIP_OUT),
    );
    let rep = expect(&mut r.client, "ARP reply for the VIP", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REPLY)
    });
    let a = arp_of(&rep).unwrap();
    assert_eq!(
        (a.sha, a.spa, a.tha, a.tpa),
        (r.out_mac, VIP_OUT, CLIENT_MAC, CLIENT)
    );
    assert_eq!(&rep[..12], &[CLIENT_MAC, r.out_mac].concat()[..]);
    wait_neighbor(&mut r.app, ip(CLIENT));
}

#[test]
fn routes_a_handshake_through_arp_conntrack_and_ttl() {
    let mut r = rig(1);
    // The firewall's own address is answered.
    send(
        &mut r.client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], FW_OUT),
    );
    let rep = expect(&mut r.client, "ARP reply", |f| arp_of(f).is_some());
    let a = arp_of(&rep).unwrap();
    assert_eq!((a.op, a.sha, a.spa), (OP_REPLY, r.out_mac, FW_OUT));
    resolve_both(&mut r);

    // A SYN to the server: the next hop is unknown, so the firewall asks.
    let syn = tcp(
        CLIENT,
        SERVER,
        (CLIENT_MAC, r.out_mac),
        (40000, 80),
        f::SYN,
        100,
        0,
        64,
    );
    send(&mut r.client, &syn);
    let req = expect(&mut r.server, "ARP request for the server", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REQUEST)
    });
    let a = arp_of(&req).unwrap();
    assert_eq!(&req[..6], &[0xff; 6]);
    assert_eq!(
        (a.sha, a.spa, a.tpa),
        (r.in_mac, [198, 51, 100, 253], SERVER)
    );
    assert_eq!(wait_stat(&mut r.app, "neighbor_miss", 1), 1);
    assert_eq!(wait_stat(&mut r.app, "neighbor_held", 1), 1);
    // The server answers; once it is learned, the held SYN is routed
    // (no retransmission needed).
    server_answers(&mut r);
    let got = expect(&mut r.server, "routed SYN", |f| {
        parse_frame(f).is_ok_and(|m| m.is_ip())
    });
    let m = parse_frame(&got).unwrap();
    assert_eq!(m.tcp.flags, f::SYN);
    assert_eq!(m.ttl, 63);
    assert_eq!((&got[..6], &got[6..12]), (&SERVER_MAC[..], &r.in_mac[..]));
    assert_eq!(l4_checksum_valid(&got, &m), Some(true));
    assert_eq!(wait_stat(&mut r.app, "neighbor_released", 1), 1);
    // The rest of the handshake, both ways.
    send(
        &mut r.server,
        &tcp(
            SERVER,
            CLIENT,
            (SERVER_MAC, r.in_mac),
            (80, 40000),
            f::SYN | f::ACK,
            500,
            101,
            64,
        ),
    );
    let got = expect(&mut r.client, "routed SYN/ACK", |f| {
        parse_frame(f).is_ok_and(|m| m.is_ip())
    });
    let m = parse_frame(&got).unwrap();
    assert_eq!((m.tcp.flags, m.ttl), (f::SYN | f::ACK, 63));
    assert_eq!((&got[..6], &got[6..12]), (&CLIENT_MAC[..], &r.out_mac[..]));
    send(
        &mut r.client,
        &tcp(
            CLIENT,
            SERVER,
            (CLIENT_MAC, r.out_mac),
            (40000, 80),
            f::ACK,
            101,
            501,
            64,
        ),
    );
    let got = expect(&mut r.server, "routed ACK", |f| {
        parse_frame(f).is_ok_and(|m| m.is_ip())
    });
    assert_eq!(parse_frame(&got).unwrap().tcp.flags, f::ACK);
    assert_eq!(wait_stat(&mut r.app, "routed", 3), 3);

    // TTL 1: not forwarded; time exceeded from the ingress port's address.
    let last = tcp(
        CLIENT,
        SERVER,
        (CLIENT_MAC, r.out_mac),
        (40000, 80),
        f::ACK,
        101,
        501,
        1,
    );
    send(&mut r.client, &last);
    let te = expect(&mut r.client, "time exceeded", |f| {
        parse_frame(f).is_ok_and(|m| m.tuple.proto == 1)
    });
    let m = parse_frame(&te).unwrap();
    assert_eq!((m.tuple.icmp_type(), m.tuple.icmp_code()), (11, 0));
    assert_eq!(m.tuple.src_ip(), ip(FW_OUT));
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    assert_eq!(m.icmp_error, Some(parse_frame(&last).unwrap().tuple));
    assert_eq!(l4_checksum_valid(&te, &m), Some(true));
    assert_eq!(wait_stat(&mut r.app, "ttl_exceeded", 1), 1);

    // A ping of the firewall is answered; other traffic to it is dropped.
    let ping = FrameSpec {
        src_mac: CLIENT_MAC,
        dst_mac: r.out_mac,
        src_ip: ip(CLIENT),
        dst_ip: ip(FW_OUT),
        l4: L4Spec::Icmp {
            msg_type: 8,
            code: 0,
            ident: 9,
            seq_no: 1,
        },
        payload_len: 32,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap();
    send(&mut r.client, &ping);
    let pong = expect(&mut r.client, "echo reply", |f| {
        parse_frame(f).is_ok_and(|m| m.tuple.proto == 1 && m.tuple.icmp_type() == 0)
    });
    let m = parse_frame(&pong).unwrap();
    assert_eq!((m.tuple.src_ip(), m.tuple.icmp_id()), (ip(FW_OUT), 9));
    assert_eq!(l4_checksum_valid(&pong, &m), Some(true));
    send(
        &mut r.client,
        &tcp(
            CLIENT,
            FW_OUT,
            (CLIENT_MAC, r.out_mac),
            (40001, 22),
            f::SYN,
            1,
            0,
            64,
        ),
    );
    assert_eq!(wait_stat(&mut r.app, "local_dropped", 1), 1);

    // No route (the static route covers only 203.0.113.0/25): dropped,
    // counted, and answered with network unreachable from the ingress
    // port's address, as a Linux router answers; and, as there, it opens
    // no flow (routing comes before the filter).
    let created = stat(&mut r.app, "flows_created");
    let lost = tcp(
        CLIENT,
        [203, 0, 113, 200],
        (CLIENT_MAC, r.out_mac),
        (40002, 80),
        f::SYN,
        1,
        0,
        64,
    );
    send(&mut r.client, &lost);
    let un = expect(&mut r.client, "network unreachable", |f| {
        parse_frame(f).is_ok_and(|m| m.tuple.proto == 1)
    });
    let m = parse_frame(&un).unwrap();
    assert_eq!((m.tuple.icmp_type(), m.tuple.icmp_code()), (3, 0));
    assert_eq!(m.tuple.src_ip(), ip(FW_OUT));
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    assert_eq!(m.icmp_error, Some(parse_frame(&lost).unwrap().tuple));
    assert_eq!(l4_checksum_valid(&un, &m), Some(true));
    assert_eq!(wait_stat(&mut r.app, "no_route", 1), 1);
    assert_eq!(stat(&mut r.app, "flows_created"), created);

    // The console lists the neighbors and routes.
    let Payload::Neighbors(n) = ok(r.app.handle(Request::Neighbors)) else {
        panic!()
    };
    let ips: Vec<&str> = n.neighbors.iter().map(|e| e.ip.as_str()).collect();
    assert_eq!(ips, ["192.0.2.1", "198.51.100.2"]);
    assert_eq!(n.neighbors[1].port, "inside");
    assert_eq!(n.neighbors[1].mac, "52:54:00:00:00:02");
    let Payload::Routes(rt) = ok(r.app.handle(Request::Routes)) else {
        panic!()
    };
    let st = rt
        .routes
        .iter()
        .find(|x| x.kind == "static")
        .expect("static route");
    assert_eq!(
        (st.to.as_str(), st.via.as_deref(), st.port.as_str()),
        ("203.0.113.0/25", Some("198.51.100.9"), "inside")
    );
    assert!(rt
        .routes
        .iter()
        .any(|x| x.to == "2001:db8:2::/64" && x.kind == "connected"));
}

/// A flood of packets that each earn an ICMP error (TTL 1 here) gets at
/// most a burst of answers: from one sender 6 (then one a second), from
/// many the worker's burst; the rest are counted, not answered.
#[test]
fn icmp_errors_are_rate_limited() {
    use ftfw_dataplane::l3::router::{ICMP_ERRORS_BURST, ICMP_ERRORS_PER_DESTINATION_BURST};
    let mut r = rig(1);
    let answers = |r: &mut Rig| {
        let mut n = 0u64;
        while let Some(f) = recv(&mut r.client, Duration::from_millis(100)) {
            if parse_frame(&f).is_ok_and(|m| m.tuple.icmp_type() == 11) {
                n += 1;
            }
        }
        n
    };
    let flood = |r: &mut Rig, sent: u16, src: &dyn Fn(u16) -> [u8; 4]| {
        for i in 0..sent {
            let last = tcp(
                src(i),
                SERVER,
                (CLIENT_MAC, r.out_mac),
                (42000 + i, 80),
                f::SYN,
                1,
                0,
                1,
            );
            send(&mut r.client, &last);
        }
    };
    // One sender.
    flood(&mut r, 200, &|_| CLIENT);
    wait_until("every packet judged", Duration::from_secs(5), || {
        stat(&mut r.app, "ttl_exceeded") == 200
    });
    assert_eq!(
        answers(&mut r),
        u64::from(ICMP_ERRORS_PER_DESTINATION_BURST)
    );
    assert_eq!(
        stat(&mut r.app, "icmp_errors_limited"),
        200 - u64::from(ICMP_ERRORS_PER_DESTINATION_BURST)
    );
    // 200 senders, one packet each (their own per-destination bursts are
    // full): the worker's bucket, refilled by the time that passed.
    let limited_before = stat(&mut r.app, "icmp_errors_limited");
    flood(&mut r, 200, &|i| [192, 0, 2, 20 + u8::try_from(i).unwrap()]);
    wait_until("every packet judged", Duration::from_secs(5), || {
        stat(&mut r.app, "ttl_exceeded") == 400
    });
    let limited = stat(&mut r.app, "icmp_errors_limited") - limited_before;
    let answered = answers(&mut r);
    assert!(
        limited > 0 && answered >= ICMP_ERRORS_BURST - u64::from(ICMP_ERRORS_PER_DESTINATION_BURST),
        "{answered} answers, {limited} limited"
    );
    assert_eq!(answered + limited, 200);
    // Expiring packets (a traceroute's probes) leave no flows behind.
    assert_eq!(stat(&mut r.app, "flows_created"), 0);
}

/// The static routes of the configuration file, reloaded (SIGHUP runs
/// `reload_routes`): taken whole and used by the workers at once, or
/// refused whole with the file and line while the running routes stay.
#[test]
fn static_routes_reload_whole_or_not_at_all() {
    let mut r = rig(1);
    let path = r.dir.join("ftfwd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let statics = |app: &mut Appliance| {
        let Payload::Routes(rt) = ok(app.handle(Request::Routes)) else {
            panic!()
        };
        rt.routes
            .into_iter()
            .filter(|x| x.kind == "static")
            .map(|x| format!("{} via {}", x.to, x.via.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let reload_error = |app: &mut Appliance| {
        let Payload::Status(st) = ok(app.handle(Request::Status)) else {
            panic!()
        };
        st.last_reload_error
    };
    assert_eq!(statics(&mut r.app), ["203.0.113.0/25 via 198.51.100.9"]);
    let to_200 = tcp(
        CLIENT,
        [203, 0, 113, 200],
        (CLIENT_MAC, r.out_mac),
        (40003, 80),
        f::SYN,
        1,
        0,
        64,
    );

    // The console's `routes reload` needs the file ftfwd started from.
    let refused = |app: &mut Appliance| match app.handle(Request::RoutesReload) {
        ftfw_control::console::proto::Response::Error(e) => e,
        other => panic!("{other:?}"),
    };
    assert!(refused(&mut r.app).contains("not started from a configuration file"));
    r.app.set_config_path(&path);

    // The route widened to /24 (`ftfwctl routes reload`, which answers
    // with the table now in force): 203.0.113.200 goes to the next hop now
    // (ftfwd asks for it), no longer answered as unreachable.
    std::fs::write(&path, text.replace("203.0.113.0/25", "203.0.113.0/24")).unwrap();
    let Payload::Routes(now) = ok(r.app.handle(Request::RoutesReload)) else {
        panic!()
    };
    assert!(now
        .routes
        .iter()
        .any(|x| x.kind == "static" && x.to == "203.0.113.0/24"));
    assert_eq!(statics(&mut r.app), ["203.0.113.0/24 via 198.51.100.9"]);
    send(&mut r.client, &to_200);
    let who = expect(&mut r.server, "ARP request for the next hop", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REQUEST && a.tpa == [198, 51, 100, 9])
    });
    assert!(!who.is_empty());
    assert_eq!(wait_stat(&mut r.app, "neighbor_miss", 1), 1);
    assert_eq!(stat(&mut r.app, "no_route"), 0);
    assert_eq!(reload_error(&mut r.app), None);

    // A file that does not parse, and one whose next hop is on no
    // connected subnet: refused, the /24 stays, the status says why.
    for (bad, says) in [
        (
            text.replace("203.0.113.0/25", "203.0.113.0/33"),
            "ftfwd.toml:",
        ),
        (text.replace("198.51.100.9", "203.0.113.9"), "route[0].via"),
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = r.app.reload_routes(&path).unwrap_err();
        assert!(e.0.contains(says), "{e:?}");
        let e = refused(&mut r.app);
        assert!(e.contains(says), "{e}");
        assert_eq!(statics(&mut r.app), ["203.0.113.0/24 via 198.51.100.9"]);
        let shown = reload_error(&mut r.app).expect("a failed reload is shown");
        assert!(
            shown.starts_with("routes: ") && shown.contains(says),
            "{shown}"
        );
    }

    // Back to the original file: taken, and the error is gone.
    std::fs::write(&path, &text).unwrap();
    assert_eq!(r.app.reload_routes(&path), Ok(1));
    assert_eq!(statics(&mut r.app), ["203.0.113.0/25 via 198.51.100.9"]);
    assert_eq!(reload_error(&mut r.app), None);
}

/// Packets for a next hop that is not resolved wait in the worker's hold
/// slots (the rest are counted as `neighbor_hold_full`), and are dropped
/// after `HOLD_FOR` when the next hop never answers: nothing reaches the
/// server, everything is counted.
#[test]
fn packets_for_an_unresolved_next_hop_are_held_bounded_and_expire() {
    use ftfw_dataplane::l3::router::{HOLD_FOR, HOLD_SLOTS};
    let mut r = rig(1);
    // The client knows the firewall; the server stays unknown.
    resolve_both(&mut r);
    let extra = 4u16;
    let slots = u16::try_from(HOLD_SLOTS).unwrap();
    // From as many senders (each is owed its own answer: the limit per
    // destination does not hide one).
    for i in 0..slots + extra {
        let syn = tcp(
            [192, 0, 2, 100 + u8::try_from(i).unwrap()],
            SERVER,
            (CLIENT_MAC, r.out_mac),
            (41000 + i, 80),
            f::SYN,
            100,
            0,
            64,
        );
        send(&mut r.client, &syn);
    }
    let total = u64::from(slots + extra);
    assert_eq!(wait_stat(&mut r.app, "neighbor_miss", total), total);
    assert_eq!(stat(&mut r.app, "neighbor_held"), u64::from(slots));
    assert_eq!(stat(&mut r.app, "neighbor_hold_full"), u64::from(extra));
    let held_at = Instant::now();
    let expired = wait_stat(&mut r.app, "neighbor_hold_expired", u64::from(slots));
    assert_eq!(expired, u64::from(slots));
    assert!(held_at.elapsed() + Duration::from_millis(100) >= HOLD_FOR);
    assert_eq!(stat(&mut r.app, "neighbor_released"), 0);
    assert_eq!(stat(&mut r.app, "routed"), 0);
    // Each held packet is answered with host unreachable, as Linux answers
    // what it queued for a neighbour that failed: from the ingress port's
    // address, quoting the packet.
    assert_eq!(stat(&mut r.app, "neighbor_unreachable"), u64::from(slots));
    let mut quoted = Vec::new();
    while quoted.len() < HOLD_SLOTS {
        let un = expect(&mut r.client, "host unreachable", |f| {
            parse_frame(f).is_ok_and(|m| m.tuple.proto == 1)
        });
        let m = parse_frame(&un).unwrap();
        assert_eq!((m.tuple.icmp_type(), m.tuple.icmp_code()), (3, 1));
        assert_eq!(m.tuple.src_ip(), ip(FW_OUT));
        assert_eq!(l4_checksum_valid(&un, &m), Some(true));
        quoted.push(m.icmp_error.expect("quotes the packet").src_port);
    }
    quoted.sort_unstable();
    assert_eq!(quoted, (41000..41000 + slots).collect::<Vec<_>>());
    // Only the (rate-limited) solicitations went to the server's side.
    while let Some(f) = recv(&mut r.server, Duration::from_millis(50)) {
        assert!(
            arp_of(&f).is_some_and(|a| a.op == OP_REQUEST),
            "a packet got through"
        );
    }
}

#[test]
fn virtual_addresses_follow_the_role() {
    let mut r = rig(2);
    resolve_both(&mut r);

    // Backup: the VIP is not answered, the port address still is, and
    // nothing is routed.
    let Payload::Notified(c) = ok(r.app.handle(Request::Notify {
        state: NotifyState::Backup,
    })) else {
        panic!()
    };
    assert_eq!(c.role, "backup");
    let consumed = stat(&mut r.app, "l3_consumed");
    send(
        &mut r.client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], VIP_OUT),
    );
    assert_eq!(
        wait_stat(&mut r.app, "l3_consumed", consumed + 1),
        consumed + 1
    );
    send(
        &mut r.client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], FW_OUT),
    );
    let rep = expect(&mut r.client, "ARP reply for the port address", |f| {
        arp_of(f).is_some()
    });
    // The VIP request got no answer: the first answer is for FW_OUT.
    assert_eq!(arp_of(&rep).unwrap().spa, FW_OUT);
    let standby = stat(&mut r.app, "standby_dropped");
    send(
        &mut r.client,
        &tcp(
            CLIENT,
            SERVER,
            (CLIENT_MAC, r.out_mac),
            (40000, 80),
            f::SYN,
            1,
            0,
            64,
        ),
    );
    assert_eq!(
        wait_stat(&mut r.app, "standby_dropped", standby + 1),
        standby + 1
    );

    // Takeover: one announcement per VIP, on its port.
    let Payload::Notified(c) = ok(r.app.handle(Request::Notify {
        state: NotifyState::Master,
    })) else {
        panic!()
    };
    let announce = c.steps.iter().find(|s| s.step == "announce").unwrap();
    assert_eq!(announce.note, "3 gratuitous ARP / unsolicited NA sent");
    let g = expect(&mut r.client, "gratuitous ARP", |f| {
        arp_of(f).is_some_and(|a| a.is_gratuitous())
    });
    let a = arp_of(&g).unwrap();
    assert_eq!((a.op, a.sha, a.spa), (OP_REQUEST, r.out_mac, VIP_OUT));
    assert_eq!(&g[..12], &[[0xff; 6], r.out_mac].concat()[..]);
    let g = expect(&mut r.server, "gratuitous ARP", |f| {
        arp_of(f).is_some_and(|a| a.is_gratuitous())
    });
    assert_eq!(arp_of(&g).unwrap().spa, [198, 51, 100, 254]);
    let na = expect(&mut r.server, "unsolicited NA", |f| {
        parse_frame(f).is_ok_and(|m| m.tuple.v6 && m.tuple.icmp_type() == 136)
    });
    let info = NdInfo::parse(&na, &parse_frame(&na).unwrap()).unwrap();
    assert_eq!(
        info.target,
        "2001:db8:2::fe"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(info.flags & nd::FLAG_OVERRIDE, nd::FLAG_OVERRIDE);
    assert_eq!(info.lla, Some(r.in_mac));

    // Active again: the VIP is answered, and an NS for the IPv6 VIP too.
    send(
        &mut r.client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], VIP_OUT),
    );
    let rep = expect(&mut r.client, "ARP reply for the VIP", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REPLY)
    });
    assert_eq!(arp_of(&rep).unwrap().spa, VIP_OUT);
    let server6: [u8; 16] = "2001:db8:2::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let vip6: [u8; 16] = "2001:db8:2::fe"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let mut ns = vec![0u8; 128];
    let n = nd::write_ns(&mut ns, SERVER_MAC, &server6, &vip6).unwrap();
    send(&mut r.server, &ns[..n]);
    let na = expect(&mut r.server, "solicited NA", |f| {
        parse_frame(f).is_ok_and(|m| m.tuple.v6 && m.tuple.icmp_type() == 136)
    });
    let info = NdInfo::parse(&na, &parse_frame(&na).unwrap()).unwrap();
    assert_eq!((info.target, info.dst), (vip6, server6));
    assert_eq!(info.flags & nd::FLAG_SOLICITED, nd::FLAG_SOLICITED);
    assert_eq!(&na[..6], &SERVER_MAC);
    wait_neighbor(&mut r.app, IpAddr::from(server6));
}

/// The multicast MAC of the routed cluster below.
const SHARED_MAC: [u8; 6] = [0x03, 0x00, 0x5e, 0x00, 0x00, 0x01];
/// Its bucket count.
const BUCKETS: u32 = 64;

/// Node 1 of a two-member routed cluster (the peer at 127.0.0.2 never
/// runs; no coordinator runs either: the test sets the buckets owned),
/// with its workers judging every frame (`kernel_filter = false`) or its
/// ports dropping other members' frames first.
fn cluster_rig_with(kernel_filter: bool) -> Rig {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    rig_with(
        1,
        &format!(
            "\n[sync]\nlocal = \"127.0.0.1\"\nport = {port}\nalive_interval_ms = 50\n\n\
             [cluster]\nnode = 1\nbuckets = {BUCKETS}\nport = {}\nkey = \"00112233445566778899aabbccddeeff\"\n\
             shared_mac = \"03:00:5e:00:00:01\"\nkernel_filter = {kernel_filter}\n\
             [[cluster.member]]\nid = 1\naddress = \"127.0.0.1\"\n\
             [[cluster.member]]\nid = 2\naddress = \"127.0.0.2\"\n",
            port.wrapping_add(1).max(1024)
        ),
    )
}

fn cluster_rig() -> Rig {
    cluster_rig_with(false)
}

/// A SYN from the client to the server at the cluster's shared MAC.
fn shared_mac_syn(sport: u16) -> Vec<u8> {
    tcp(
        CLIENT,
        SERVER,
        (CLIENT_MAC, SHARED_MAC),
        (sport, 80),
        f::SYN,
        100,
        0,
        64,
    )
}

/// The cluster bucket of an IP frame.
fn bucket_of(frame: &[u8]) -> u32 {
    ftfw_dataplane::buckets::bucket_of_tuple(&parse_frame(frame).unwrap().tuple, BUCKETS)
}

/// Nothing arrives on `port` within a short wait (what `not_owner`
/// already proved dropped).
fn nothing_on(port: &mut FanoutHost) -> bool {
    let mut b = [PacketBuf::new()];
    port.wait_rx(Duration::from_millis(50));
    port.rx_burst(&mut b) == 0
}

#[test]
fn a_routed_cluster_answers_and_routes_only_its_buckets_at_the_shared_mac() {
    let mut r = cluster_rig();
    let vip_req = arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], VIP_OUT);
    let vip_bucket = ftfw_dataplane::buckets::bucket_of_l2(&vip_req, BUCKETS);
    // No map yet: the virtual address is nobody's here...
    send(&mut r.client, &vip_req);
    assert_eq!(wait_stat(&mut r.app, "not_owner", 1), 1);
    assert!(nothing_on(&mut r.client));
    // ...but the node's own address is always its own, at its own MAC.
    send(
        &mut r.client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], FW_OUT),
    );
    let a = arp_of(&expect(
        &mut r.client,
        "ARP reply for the own address",
        |f| arp_of(f).is_some(),
    ))
    .unwrap();
    assert_eq!((a.op, a.sha, a.spa), (OP_REPLY, r.out_mac, FW_OUT));

    // Every bucket but the request's: still not answered.
    let mut most = BucketSet::full(BUCKETS);
    most.remove(vip_bucket);
    r.app.set_owned_buckets(&most);
    send(&mut r.client, &vip_req);
    assert_eq!(wait_stat(&mut r.app, "not_owner", 2), 2);
    assert!(nothing_on(&mut r.client));
    // Its bucket: answered at the shared MAC, sent from the port's MAC
    // (a multicast MAC is never a source).
    r.app
        .set_owned_buckets(&BucketSet::from_iter_in(BUCKETS, [vip_bucket]));
    send(&mut r.client, &vip_req);
    let rep = expect(&mut r.client, "ARP reply for the VIP", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REPLY)
    });
    let a = arp_of(&rep).unwrap();
    assert_eq!((a.sha, a.spa, a.tpa), (SHARED_MAC, VIP_OUT, CLIENT));
    assert_eq!(&rep[..12], &[CLIENT_MAC, r.out_mac].concat()[..]);
    wait_neighbor(&mut r.app, ip(CLIENT));

    // Transit traffic the client sends to the shared MAC: routed by the
    // owner of its flow's bucket only.
    r.app.set_owned_buckets(&BucketSet::full(BUCKETS));
    let (syn, bucket) = (shared_mac_syn, bucket_of);
    send(&mut r.client, &syn(40000));
    // The next hop is resolved from the node's own address and MAC.
    let req = expect(&mut r.server, "ARP request for the server", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REQUEST)
    });
    let a = arp_of(&req).unwrap();
    assert_eq!(
        (a.sha, a.spa, a.tpa),
        (r.in_mac, [198, 51, 100, 253], SERVER)
    );
    // The server's answer to the node's own MAC is taken whatever the
    // buckets: own none at all. The SYN held for it (accepted while its
    // bucket was ours) is routed then.
    r.app.set_owned_buckets(&BucketSet::empty(BUCKETS));
    server_answers(&mut r);
    let held = expect(&mut r.server, "the held SYN", |f| {
        parse_frame(f).is_ok_and(|m| m.is_ip())
    });
    assert_eq!(bucket(&held), bucket(&syn(40000)));
    let theirs = (40001..41000)
        .find(|p| bucket(&syn(*p)) != bucket(&syn(40000)))
        .unwrap();
    r.app
        .set_owned_buckets(&BucketSet::from_iter_in(BUCKETS, [bucket(&syn(40000))]));
    let before = stat(&mut r.app, "not_owner");
    send(&mut r.client, &syn(theirs));
    assert_eq!(wait_stat(&mut r.app, "not_owner", before + 1), before + 1);
    assert!(nothing_on(&mut r.server));
    send(&mut r.client, &syn(40000));
    let got = expect(&mut r.server, "routed SYN", |f| {
        parse_frame(f).is_ok_and(|m| m.is_ip())
    });
    let m = parse_frame(&got).unwrap();
    assert_eq!((m.tcp.flags, m.ttl, m.tuple.src_port), (f::SYN, 63, 40000));
    assert_eq!((&got[..6], &got[6..12]), (&SERVER_MAC[..], &r.in_mac[..]));
    // The held SYN and this one.
    assert_eq!(stat(&mut r.app, "routed"), 2);
    assert_eq!(stat(&mut r.app, "neighbor_released"), 1);
}

/// With `kernel_filter` (the default) the ports drop a frame sent to the
/// shared MAC for another member's bucket before the worker sees it; a
/// frame the filter cannot bucket (ARP) still reaches the worker, which
/// drops it as `not_owner`.
#[test]
fn a_routed_members_ports_drop_other_members_frames_before_the_worker() {
    let mut r = cluster_rig_with(true);
    let (syn, bucket) = (shared_mac_syn, bucket_of);
    let vip_req = arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], VIP_OUT);
    let vip_bucket = ftfw_dataplane::buckets::bucket_of_l2(&vip_req, BUCKETS);
    let ours = (40000..41000)
        .find(|p| bucket(&syn(*p)) != vip_bucket)
        .unwrap();
    let theirs = (40000..41000)
        .find(|p| ![vip_bucket, bucket(&syn(ours))].contains(&bucket(&syn(*p))))
        .unwrap();
    r.app
        .set_owned_buckets(&BucketSet::from_iter_in(BUCKETS, [bucket(&syn(ours))]));
    wait_stat(&mut r.app, "bucket_filter_loads", 1);
    let rx = stat(&mut r.app, "rx");
    // Their SYN, then the request for a virtual address nobody here owns:
    // once the worker has counted the request, the SYN (queued before it)
    // was dropped on receive.
    send(&mut r.client, &syn(theirs));
    send(&mut r.client, &vip_req);
    assert_eq!(wait_stat(&mut r.app, "not_owner", 1), 1);
    assert_eq!(
        stat(&mut r.app, "rx"),
        rx + 1,
        "only the ARP request reached the worker"
    );
    assert!(nothing_on(&mut r.server));
    // Ours passes and is routed (the next hop is resolved first).
    send(&mut r.client, &syn(ours));
    let req = expect(&mut r.server, "ARP request for the server", |f| {
        arp_of(f).is_some_and(|a| a.op == OP_REQUEST)
    });
    assert_eq!(arp_of(&req).unwrap().tpa, SERVER);
    assert_eq!(stat(&mut r.app, "rx"), rx + 2);
    // `ftfwctl cluster status` says so.
    let Payload::Cluster(c) = ok(r.app.handle(Request::ClusterStatus)) else {
        panic!("not a cluster status")
    };
    let f = &c.kernel_filter;
    assert_eq!(f["configured"], true, "{f}");
    assert!(f["loads"].as_u64().is_some_and(|n| n >= 1), "{f}");
    assert_eq!(f["not_owner"], 1, "{f}");
}

#[test]
fn a_routed_cluster_announces_its_virtual_addresses_at_the_shared_mac() {
    let mut r = cluster_rig();
    r.app.set_owned_buckets(&BucketSet::full(BUCKETS));
    assert_eq!(r.app.announce_virtual_addresses().unwrap(), 3);
    let g = expect(&mut r.client, "gratuitous ARP", |f| {
        arp_of(f).is_some_and(|a| a.is_gratuitous())
    });
    let a = arp_of(&g).unwrap();
    assert_eq!((a.sha, a.spa), (SHARED_MAC, VIP_OUT));
    assert_eq!(&g[..12], &[[0xff; 6], r.out_mac].concat()[..]);
    let na = expect(&mut r.server, "unsolicited NA", |f| {
        parse_frame(f).is_ok_and(|m| m.tuple.v6)
    });
    let m = parse_frame(&na).unwrap();
    let info = NdInfo::parse(&na, &m).unwrap();
    assert_eq!(info.lla, Some(SHARED_MAC));
    assert_eq!(&na[6..12], &r.in_mac[..]);
}
