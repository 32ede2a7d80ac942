//! NAT in routed mode on `mem` ports: `nat masquerade` translates to the
//! output port's address and the replies, addressed to the router itself,
//! are routed back translated (IPv4, and IPv6 with the same rule); a
//! masquerade rule in transparent mode is refused at load with file and
//! line.

use std::net::IpAddr;
use std::time::Duration;

use ftfw_control::appliance::check;
use ftfw_control::config;
use ftfw_dataplane::l3::{derived_mac, nd};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::arp::{OP_REPLY, OP_REQUEST};
use ftfw_dataplane::packet::{l4_checksum_valid, parse_frame, FrameSpec, L4Spec};
use ftfw_testkit::mem::{arp_frame, recv, send, start_on_mem};

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 2];
const FW_OUT: [u8; 4] = [192, 0, 2, 253];
const FW_IN: [u8; 4] = [198, 51, 100, 253];
const WAIT: Duration = Duration::from_secs(10);

/// A frame between two addresses of one family (`[u8; 4]` or `[u8; 16]`).
fn frame(
    macs: ([u8; 6], [u8; 6]),
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    l4: L4Spec,
) -> Vec<u8> {
    FrameSpec {
        src_mac: macs.0,
        dst_mac: macs.1,
        src_ip: src.into(),
        dst_ip: dst.into(),
        l4,
        payload_len: 8,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

#[test]
fn masquerade_translates_to_the_output_port_address_and_replies_route_back() {
    let dir = std::env::temp_dir().join(format!("ftfw-nat-routed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n\
        [dataplane]\nworkers = 1\nmode = \"routed\"\n\n\
        [[port]]\nname = \"outside\"\nbackend = \"mem\"\naddresses = [\"192.0.2.253/24\"]\n\n\
        [[port]]\nname = \"inside\"\nbackend = \"mem\"\naddresses = [\"198.51.100.253/24\"]\n\n\
        [rules]\npolicy = \"accept\"\nrules = [\"nat masquerade out inside\"]\n";
    std::fs::write(dir.join("ftfwd.toml"), text).unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let (mut app, hosts) = start_on_mem(cfg, "nat-routed", 1024).unwrap();
    let mut it = hosts.into_iter();
    let (mut client, mut server) = (it.next().unwrap(), it.next().unwrap());
    let (out_mac, in_mac) = (derived_mac("outside"), derived_mac("inside"));
    // The client asks for the router (which learns the client).
    send(
        &mut client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], FW_OUT),
    );
    assert!(recv(&mut client, WAIT).is_some(), "ARP reply");
    let syn = frame(
        (CLIENT_MAC, out_mac),
        CLIENT,
        SERVER,
        L4Spec::tcp(40000, 80, f::SYN, 1, 0),
    );
    send(&mut client, &syn);
    assert!(
        recv(&mut server, WAIT).is_some(),
        "ARP request for the server"
    );
    send(
        &mut server,
        &arp_frame(OP_REPLY, SERVER_MAC, SERVER, in_mac, in_mac, FW_IN),
    );
    // The SYN was held while the router asked; it goes once learned.
    let mut got = None;
    ftfw_testkit::wait_until("the held SYN routed to the server", WAIT, || {
        app.drain(1024);
        got = recv(&mut server, Duration::from_millis(50));
        got.is_some()
    });
    let m = parse_frame(&got.unwrap()).unwrap();
    assert_eq!(m.tuple.src_ip(), IpAddr::from(FW_IN), "masqueraded");
    assert_eq!(m.tuple.dst_port, 80);
    let port = m.tuple.src_port;
    // The server answers the router's address: routed back, translated.
    send(
        &mut server,
        &frame(
            (SERVER_MAC, in_mac),
            SERVER,
            FW_IN,
            L4Spec::tcp(80, port, f::SYN | f::ACK, 9, 2),
        ),
    );
    let back = parse_frame(&recv(&mut client, WAIT).expect("SYN/ACK routed back")).unwrap();
    assert_eq!(back.tuple.dst_ip(), IpAddr::from(CLIENT));
    assert_eq!((back.tuple.src_port, back.tuple.dst_port), (80, 40000));
    // A ping through, and its answer back.
    let ping = |ty: u8, id: u16| L4Spec::Icmp {
        msg_type: ty,
        code: 0,
        ident: id,
        seq_no: 1,
    };
    send(
        &mut client,
        &frame((CLIENT_MAC, out_mac), CLIENT, SERVER, ping(8, 77)),
    );
    let req = parse_frame(&recv(&mut server, WAIT).expect("echo request")).unwrap();
    assert_eq!(req.tuple.src_ip(), IpAddr::from(FW_IN));
    send(
        &mut server,
        &frame(
            (SERVER_MAC, in_mac),
            SERVER,
            FW_IN,
            ping(0, req.tuple.icmp_id()),
        ),
    );
    let rep = parse_frame(&recv(&mut client, WAIT).expect("echo reply")).unwrap();
    assert_eq!(rep.tuple.dst_ip(), IpAddr::from(CLIENT));
    assert_eq!(rep.tuple.icmp_id(), 77);
    // A ping of the router itself is still answered by it.
    send(
        &mut client,
        &frame((CLIENT_MAC, out_mac), CLIENT, FW_OUT, ping(8, 5)),
    );
    let own = parse_frame(&recv(&mut client, WAIT).expect("own echo reply")).unwrap();
    assert_eq!(own.tuple.src_ip(), IpAddr::from(FW_OUT));
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn masquerade_in_transparent_mode_is_refused_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("ftfw-nat-masq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rules.conf"),
        "policy accept\nnat src to 203.0.113.1\nnat masquerade out inside\n",
    )
    .unwrap();
    let text = "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
        [[port]]\nname = \"outside\"\nbackend = \"mem\"\n\n\
        [[port]]\nname = \"inside\"\nbackend = \"mem\"\n\n\
        [[bridge]]\nports = [\"outside\", \"inside\"]\n\n\
        [rules]\nfile = \"rules.conf\"\n";
    std::fs::write(dir.join("ftfwd.toml"), text).unwrap();
    let e = check(&dir.join("ftfwd.toml")).unwrap_err().to_string();
    assert!(
        e.ends_with("rules.conf:3: nat masquerade needs routed mode (ports with addresses)"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// NAT66: one `nat masquerade` rule translates IPv6 flows to the output
/// port's IPv6 address (and IPv4 flows to its IPv4 one); the server's
/// answers to the router's address are routed back to the client,
/// checksums valid.
#[test]
fn masquerade_translates_ipv6_flows_to_the_output_ports_ipv6_address() {
    let dir = std::env::temp_dir().join(format!("ftfw-nat66-routed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n\
        [dataplane]\nworkers = 1\nmode = \"routed\"\n\n\
        [[port]]\nname = \"outside\"\nbackend = \"mem\"\naddresses = [\"2001:db8:1::fd/64\"]\n\n\
        [[port]]\nname = \"inside\"\nbackend = \"mem\"\naddresses = [\"198.51.100.253/24\", \"2001:db8:2::fd/64\"]\n\n\
        [rules]\npolicy = \"accept\"\nrules = [\"nat masquerade out inside\"]\n";
    std::fs::write(dir.join("ftfwd.toml"), text).unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let (mut app, hosts) = start_on_mem(cfg, "nat66-routed", 1024).unwrap();
    let mut it = hosts.into_iter();
    let (mut client, mut server) = (it.next().unwrap(), it.next().unwrap());
    let (out_mac, in_mac) = (derived_mac("outside"), derived_mac("inside"));
    let (client6, server6) = (v6("2001:db8:1::1"), v6("2001:db8:2::2"));
    let (fw_out6, fw_in6) = (v6("2001:db8:1::fd"), v6("2001:db8:2::fd"));
    // Each host solicits the router's address on its side: the router
    // answers and learns the host.
    let mut ns = vec![0u8; 128];
    let n = nd::write_ns(&mut ns, CLIENT_MAC, &client6, &fw_out6).unwrap();
    send(&mut client, &ns[..n]);
    assert!(recv(&mut client, WAIT).is_some(), "neighbor advertisement");
    let n = nd::write_ns(&mut ns, SERVER_MAC, &server6, &fw_in6).unwrap();
    send(&mut server, &ns[..n]);
    assert!(recv(&mut server, WAIT).is_some(), "neighbor advertisement");
    let syn = frame(
        (CLIENT_MAC, out_mac),
        client6,
        server6,
        L4Spec::tcp(40000, 80, f::SYN, 1, 0),
    );
    let mut got = None;
    ftfw_testkit::wait_until("the SYN routed to the server", WAIT, || {
        send(&mut client, &syn);
        app.drain(1024);
        got = recv(&mut server, Duration::from_millis(50))
            .filter(|fr| parse_frame(fr).is_ok_and(|m| m.tuple.proto == 6));
        got.is_some()
    });
    let got = got.unwrap();
    let m = parse_frame(&got).unwrap();
    assert_eq!(m.tuple.src_ip(), IpAddr::from(fw_in6), "masqueraded");
    assert_eq!(
        (m.tuple.dst_ip(), m.tuple.dst_port),
        (IpAddr::from(server6), 80)
    );
    assert_eq!(l4_checksum_valid(&got, &m), Some(true));
    let port = m.tuple.src_port;
    send(
        &mut server,
        &frame(
            (SERVER_MAC, in_mac),
            server6,
            fw_in6,
            L4Spec::tcp(80, port, f::SYN | f::ACK, 9, 2),
        ),
    );
    let back = recv(&mut client, WAIT).expect("SYN/ACK routed back");
    let b = parse_frame(&back).unwrap();
    assert_eq!(b.tuple.dst_ip(), IpAddr::from(client6));
    assert_eq!((b.tuple.src_port, b.tuple.dst_port), (80, 40000));
    assert_eq!(l4_checksum_valid(&back, &b), Some(true));
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
