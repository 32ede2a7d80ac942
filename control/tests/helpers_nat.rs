//! FTP under NAT through an appliance with two workers on `mem` ports:
//! active mode (PORT) through SNAT and passive mode (PASV) to a DNATed
//! server. The announce leaves rewritten to the translated address, the
//! sequence numbers after it move (and acknowledgements move back), and
//! the data connection opens to the translated address and is translated
//! to the announcer's own, on whichever worker it lands.

use std::time::Duration;

use ftfw_control::console::proto::{Payload, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::{tcp_flags as f, PacketMeta};
use ftfw_dataplane::packet::{parse_frame, FrameSpec, L4Spec};
use ftfw_testkit::mem::{
    free_port, ok, recv, send, start_mem, tcp, wait_stat, MemNode, MEM_BRIDGE,
};

const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";
const PUBLIC: &str = "203.0.113.1";
const VIP: &str = "203.0.113.5";

fn node(name: &str, rules: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-helpers-nat-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.conf"), rules).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         [dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[rules]\nfile = \"rules.conf\"\n"
    );
    start_mem(name, dir, &text)
}

fn with_data(src: &str, dst: &str, sp: u16, dp: u16, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        l4: L4Spec::tcp(sp, dp, f::ACK | f::PSH, seq, ack),
        ..FrameSpec::default()
    };
    let mut v = vec![0u8; 2048];
    let n = spec.write_with_payload(data, &mut v).unwrap();
    v.truncate(n);
    v
}

/// Sends `frame` from the client (`from_client`) or the server and
/// returns what comes out at the other end, parsed, with its checksums
/// checked whole.
fn pass(n: &mut MemNode, from_client: bool, frame: &[u8]) -> (PacketMeta, Vec<u8>) {
    let (tx, rx) = if from_client {
        (&mut n.client, &mut n.server)
    } else {
        (&mut n.server, &mut n.client)
    };
    send(tx, frame);
    let out = recv(rx, Duration::from_secs(10)).expect("forwarded");
    let m = parse_frame(&out).expect("parses");
    assert_eq!(
        ftfw_dataplane::packet::l4_checksum_valid(&out, &m),
        Some(true)
    );
    let end = usize::from(m.l3_offset) + usize::from(m.ip_len);
    let payload = out[end - m.tcp.payload_len as usize..end].to_vec();
    (m, payload)
}

#[test]
fn active_mode_through_snat_rewrites_port_and_the_data_connection_reaches_the_client() {
    let mut n = node(
        "active",
        "policy drop\naccept ct established,related\n\
         accept in outside proto tcp dport 21 helper ftp\n\
         nat src in outside from 192.0.2.0/24 to 203.0.113.1\n",
    );
    let (m, _) = pass(
        &mut n,
        true,
        &tcp(CLIENT, SERVER, 40000, 21, f::SYN, 100, 0),
    );
    assert_eq!(m.tuple.src_ip().to_string(), PUBLIC);
    let cport = m.tuple.src_port;
    pass(
        &mut n,
        false,
        &tcp(SERVER, PUBLIC, 21, cport, f::SYN | f::ACK, 500, 101),
    );
    pass(
        &mut n,
        true,
        &tcp(CLIENT, SERVER, 40000, 21, f::ACK, 101, 501),
    );
    // The PORT command leaves with the public address (one byte longer).
    let port = b"PORT 192,0,2,10,195,80\r\n";
    let (m, text) = pass(
        &mut n,
        true,
        &with_data(CLIENT, SERVER, 40000, 21, 101, 501, port),
    );
    assert_eq!(text, b"PORT 203,0,113,1,195,80\r\n");
    assert_eq!(m.tcp.seq, 101);
    // The server acknowledges 25 bytes; the client is told 24.
    let (m, _) = pass(
        &mut n,
        false,
        &with_data(SERVER, PUBLIC, 21, cport, 501, 126, b"200 ok\r\n"),
    );
    assert_eq!(m.tcp.ack, 125);
    // The server's data connection to the announced public address and
    // port reaches the client's own.
    let (m, _) = pass(
        &mut n,
        false,
        &tcp(SERVER, PUBLIC, 20, 50000, f::SYN, 900, 0),
    );
    assert_eq!(m.tuple.dst_ip().to_string(), CLIENT);
    assert_eq!(m.tuple.dst_port, 50000);
    assert_eq!(m.tuple.src_ip().to_string(), SERVER);
    // (Its source port may be remapped so that the answer reaches the
    // worker that owns the flow.)
    let sport = m.tuple.src_port;
    let (m, _) = pass(
        &mut n,
        true,
        &tcp(CLIENT, SERVER, 50000, sport, f::SYN | f::ACK, 70, 901),
    );
    assert_eq!(m.tuple.src_ip().to_string(), PUBLIC);
    assert_eq!((m.tuple.src_port, m.tuple.dst_port), (50000, 20));
    // The client's next command moves forward by one.
    let (m, _) = pass(
        &mut n,
        true,
        &with_data(CLIENT, SERVER, 40000, 21, 125, 509, b"QUIT\r\n"),
    );
    assert_eq!(m.tcp.seq, 126);
    assert!(wait_stat(&mut n.app, "helper_rewritten", 1) >= 1);
    assert!(wait_stat(&mut n.app, "seq_adjusted", 2) >= 2);
    assert!(wait_stat(&mut n.app, "expectations_matched", 1) >= 1);
    // The control connection shows its adjustment.
    let Payload::Flows(fl) = ok(n.app.handle(Request::FlowsList {
        filter: Default::default(),
        limit: None,
    })) else {
        panic!("not flows")
    };
    assert!(fl
        .flows
        .iter()
        .any(|x| x.original.dport == Some(21) && x.status_names.iter().any(|s| s == "SEQ_ADJUST")));
}

#[test]
fn passive_mode_to_a_dnated_server_rewrites_227_and_the_data_connection_reaches_the_server() {
    let mut n = node(
        "passive",
        "policy drop\naccept ct established,related\n\
         accept in outside proto tcp to 203.0.113.5 dport 21 helper ftp\n\
         nat dst in outside proto tcp daddr 203.0.113.5 dport 21 to 198.51.100.20\n",
    );
    let (m, _) = pass(&mut n, true, &tcp(CLIENT, VIP, 40000, 21, f::SYN, 100, 0));
    assert_eq!(m.tuple.dst_ip().to_string(), SERVER);
    let cport = m.tuple.src_port;
    pass(
        &mut n,
        false,
        &tcp(SERVER, CLIENT, 21, cport, f::SYN | f::ACK, 500, 101),
    );
    pass(&mut n, true, &tcp(CLIENT, VIP, 40000, 21, f::ACK, 101, 501));
    pass(
        &mut n,
        true,
        &with_data(CLIENT, VIP, 40000, 21, 101, 501, b"PASV\r\n"),
    );
    let pasv = b"227 Entering Passive Mode (198,51,100,20,195,81).\r\n";
    let (m, text) = pass(
        &mut n,
        false,
        &with_data(SERVER, CLIENT, 21, cport, 501, 107, pasv),
    );
    assert_eq!(text, b"227 Entering Passive Mode (203,0,113,5,195,81).\r\n");
    assert_eq!(m.tuple.src_ip().to_string(), VIP);
    // The client's data connection to the public address reaches the
    // server's announced port.
    let (m, _) = pass(&mut n, true, &tcp(CLIENT, VIP, 45000, 50001, f::SYN, 9, 0));
    assert_eq!(m.tuple.dst_ip().to_string(), SERVER);
    assert_eq!(m.tuple.dst_port, 50001);
    let sport = m.tuple.src_port;
    let (m, _) = pass(
        &mut n,
        false,
        &tcp(SERVER, CLIENT, 50001, sport, f::SYN | f::ACK, 70, 10),
    );
    assert_eq!(m.tuple.src_ip().to_string(), VIP);
    assert_eq!((m.tuple.src_port, m.tuple.dst_port), (50001, 45000));
    // "198,51,100,20" became "203,0,113,5": the client got two bytes
    // fewer than the server sent, and acknowledges what it got.
    let next = 501 + u32::try_from(pasv.len()).unwrap();
    let (m, _) = pass(
        &mut n,
        true,
        &with_data(CLIENT, VIP, 40000, 21, 107, next - 2, b"LIST\r\n"),
    );
    assert_eq!(m.tuple.dst_ip().to_string(), SERVER, "{m:?}");
    assert_eq!(m.tcp.ack, next);
    // The server's next segment moves back by two.
    let (m, _) = pass(
        &mut n,
        false,
        &with_data(SERVER, CLIENT, 21, cport, next, 113, b"150 ok\r\n"),
    );
    assert_eq!(m.tcp.seq, next - 2);
    assert!(wait_stat(&mut n.app, "helper_rewritten", 1) >= 1);
}

/// A node of a replicating pair with the SNAT rules of the active-mode
/// test.
fn pair_node(name: &str, local: &str, peer: &str, port: u16, extra: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-helpers-nat-{name}-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rules.conf"),
        "policy drop\naccept ct established,related\n\
         accept in outside proto tcp dport 21 helper ftp\n\
         nat src in outside from 192.0.2.0/24 to 203.0.113.1\n",
    )
    .unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         [dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[rules]\nfile = \"rules.conf\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\nalive_interval_ms = 50\n\
         startup_resync = false\n{extra}\n"
    );
    start_mem(name, dir, &text)
}

/// A replicating pair of SNAT nodes (`extra`: more `[sync]` keys); B is
/// the keepalived-driven backup.
fn pair(name: &str, extra: &str) -> (MemNode, MemNode) {
    let port = free_port();
    let a = pair_node(&format!("{name}-a"), "127.0.0.1", "127.0.0.2", port, extra);
    let b = pair_node(
        &format!("{name}-b"),
        "127.0.0.2",
        "127.0.0.1",
        port,
        &format!("{extra}\n[failover]\nmode = \"keepalived\"\n"),
    );
    (a, b)
}

/// B becomes master (A is gone): it commits what A replicated.
fn take_over(b: &mut MemNode) {
    let Payload::Notified(change) = ok(b.app.handle(Request::Notify {
        state: ftfw_control::console::proto::NotifyState::Master,
    })) else {
        panic!("not a notify answer")
    };
    assert!(change.flows_committed >= 1);
}

/// The active-mode control connection of the SNAT tests through `a`: the
/// handshake, then a PORT for 192.0.2.10:50000 that leaves with the public
/// address. Returns the control connection's translated source port.
fn control_connection_with_port(a: &mut MemNode) -> u16 {
    let (m, _) = pass(a, true, &tcp(CLIENT, SERVER, 40000, 21, f::SYN, 100, 0));
    let cport = m.tuple.src_port;
    pass(
        a,
        false,
        &tcp(SERVER, PUBLIC, 21, cport, f::SYN | f::ACK, 500, 101),
    );
    pass(a, true, &tcp(CLIENT, SERVER, 40000, 21, f::ACK, 101, 501));
    let port = b"PORT 192,0,2,10,195,80\r\n";
    let (_, text) = pass(
        a,
        true,
        &with_data(CLIENT, SERVER, 40000, 21, 101, 501, port),
    );
    assert_eq!(text, b"PORT 203,0,113,1,195,80\r\n");
    cport
}

#[test]
fn the_sequence_adjustment_replicates_and_applies_after_a_takeover() {
    let (mut a, mut b) = pair("adj", "");
    let cport = control_connection_with_port(&mut a);
    // B's external cache gets the control connection with SEQ_ADJUST (the
    // adjustment travels in the NAT_SEQ_ADJ attribute).
    ftfw_testkit::wait_until(
        "the adjusted control connection in B's external cache",
        Duration::from_secs(10),
        || {
            ftfw_testkit::mem::external(&mut b).flows.iter().any(|fl| {
                fl.original.dport == Some(21) && fl.status_names.iter().any(|s| s == "SEQ_ADJUST")
            })
        },
    );
    drop(a);
    take_over(&mut b);
    // Through B: the client's next command moves forward by one, the
    // server's acknowledgement back by one, as A would have done.
    let (m, _) = pass(
        &mut b,
        true,
        &with_data(CLIENT, SERVER, 40000, 21, 125, 501, b"QUIT\r\n"),
    );
    assert_eq!(
        (m.tuple.src_ip().to_string(), m.tcp.seq),
        (PUBLIC.into(), 126)
    );
    let (m, _) = pass(
        &mut b,
        false,
        &with_data(SERVER, PUBLIC, 21, cport, 501, 132, b"221 bye\r\n"),
    );
    assert_eq!(
        (m.tuple.dst_ip().to_string(), m.tcp.ack),
        (CLIENT.into(), 131)
    );
    assert!(wait_stat(&mut b.app, "seq_adjusted", 2) >= 2);
}

fn expectations(n: &mut MemNode, r: Request) -> Vec<ftfw_control::console::proto::ExpectJson> {
    match ok(n.app.handle(r)) {
        Payload::Expectations(l) => l.expectations,
        _ => panic!("not expectations"),
    }
}

/// An active-mode data connection announced through A and opened after
/// B took over still follows the control connection's translation: the
/// expectation replicates with it (conntrackd's EXP_NAT attributes).
#[test]
fn a_data_connection_announced_before_a_takeover_follows_the_masters_translation_after_it() {
    let (mut a, mut b) = pair("exp", "expectations = true\n");
    control_connection_with_port(&mut a);
    // A's own expectation shows where the connection goes.
    let mine = expectations(&mut a, Request::ExpectList);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].translated_to.as_deref(), Some("192.0.2.10:50000"));
    assert_eq!(mine[0].translated_from.as_deref(), Some(SERVER));
    // B's external cache gets it with its translation, and the control
    // connection.
    ftfw_testkit::wait_until(
        "the translated expectation in B's external cache",
        Duration::from_secs(10),
        || {
            expectations(&mut b, Request::ExpectExternal)
                .iter()
                .any(|e| e.translated_to.as_deref() == Some("192.0.2.10:50000"))
        },
    );
    ftfw_testkit::wait_until(
        "the control connection in B's external cache",
        Duration::from_secs(10),
        || {
            ftfw_testkit::mem::external(&mut b)
                .flows
                .iter()
                .any(|fl| fl.original.dport == Some(21))
        },
    );
    drop(a);
    take_over(&mut b);
    // Through B: the server's data connection to the announced public
    // address and port reaches the client's own.
    let (m, _) = pass(
        &mut b,
        false,
        &tcp(SERVER, PUBLIC, 20, 50000, f::SYN, 900, 0),
    );
    assert_eq!(
        (m.tuple.dst_ip().to_string(), m.tuple.dst_port),
        (CLIENT.into(), 50000)
    );
    assert_eq!(m.tuple.src_ip().to_string(), SERVER);
    let sport = m.tuple.src_port;
    let (m, _) = pass(
        &mut b,
        true,
        &tcp(CLIENT, SERVER, 50000, sport, f::SYN | f::ACK, 70, 901),
    );
    assert_eq!(m.tuple.src_ip().to_string(), PUBLIC);
    assert_eq!((m.tuple.src_port, m.tuple.dst_port), (50000, 20));
    assert!(wait_stat(&mut b.app, "expectations_matched", 1) >= 1);
}
