//! FTP through an appliance with two workers on `mem` ports, under
//! `policy drop` with `accept ct established,related`: the data
//! connections a PASV reply announced pass as related on whichever worker
//! they land on, `ftfwctl expect list` shows the expectation until then,
//! and an unannounced data connection is dropped.

use std::time::Duration;

use ftfw_control::console::proto::{Payload, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{FrameSpec, L4Spec};
use ftfw_testkit::mem::{
    free_port, ok, recv, send, start_mem, stat, tcp, through, wait_stat, MemNode, MEM_BRIDGE,
};

const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";

fn node(name: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-helpers-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rules.conf"),
        "policy drop\naccept ct established,related\n\
         accept in outside proto tcp dport 21 helper ftp\n",
    )
    .unwrap();
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

#[test]
fn pasv_data_connections_pass_as_related_and_unannounced_ones_are_dropped() {
    let mut n = node("pasv");
    // The control connection and the server's PASV answer.
    through(
        &mut n,
        true,
        &tcp(CLIENT, SERVER, 40000, 21, f::SYN, 100, 0),
    );
    through(
        &mut n,
        false,
        &tcp(SERVER, CLIENT, 21, 40000, f::SYN | f::ACK, 500, 101),
    );
    through(
        &mut n,
        true,
        &tcp(CLIENT, SERVER, 40000, 21, f::ACK, 101, 501),
    );
    let mut s_seq = 501;
    let mut c_seq = 101;
    // Eight transfers, each announced by its own PASV reply; their data
    // connections hash to either worker.
    for i in 0..8u16 {
        let pasv = with_data(CLIENT, SERVER, 40000, 21, c_seq, s_seq, b"PASV\r\n");
        through(&mut n, true, &pasv);
        c_seq += 6;
        let port = 50000 + i;
        let reply = format!(
            "227 Entering Passive Mode (198,51,100,20,{},{}).\r\n",
            port >> 8,
            port & 0xff
        );
        let fr = with_data(SERVER, CLIENT, 21, 40000, s_seq, c_seq, reply.as_bytes());
        through(&mut n, false, &fr);
        s_seq += u32::try_from(reply.len()).unwrap();
        // `expect list` shows it: master, expected tuple, helper, time left.
        let Payload::Expectations(l) = ok(n.app.handle(Request::ExpectList)) else {
            panic!("not an expectation listing")
        };
        assert_eq!(l.expectations.len(), 1, "{l:?}");
        let e = &l.expectations[0];
        assert_eq!(e.helper, "ftp");
        assert_eq!(e.expected.dport, Some(port));
        assert_eq!(e.expected.sport, None);
        assert_eq!(e.expected.dst.to_string(), SERVER);
        assert_eq!(e.master.original.sport, Some(40000));
        assert!(e.timeout > 0 && e.timeout <= 300, "{}", e.timeout);
        let text = ftfw_control::console::render::payload(&Payload::Expectations(l.clone()));
        assert!(text.contains("helper=ftp"), "{text}");
        assert!(
            text.contains(&format!("sport=any dport={port} master:")),
            "{text}"
        );
        // The data connection passes, and its answer.
        let dsport = 41000 + i * 7;
        through(
            &mut n,
            true,
            &tcp(CLIENT, SERVER, dsport, port, f::SYN, 9, 0),
        );
        through(
            &mut n,
            false,
            &tcp(SERVER, CLIENT, port, dsport, f::SYN | f::ACK, 70, 10),
        );
    }
    assert!(stat(&mut n.app, "expectations_matched") >= 8);
    // A data connection nobody announced is dropped by the policy.
    let dropped = stat(&mut n.app, "dropped_by_rule");
    send(
        &mut n.client,
        &tcp(CLIENT, SERVER, 42000, 50100, f::SYN, 9, 0),
    );
    wait_stat(&mut n.app, "dropped_by_rule", dropped + 1);
    assert!(recv(&mut n.server, Duration::ZERO).is_none());
    // The flows list shows the data connections' master and the control
    // connection's helper.
    let Payload::Flows(fl) = ok(n.app.handle(Request::FlowsList {
        filter: Default::default(),
        limit: None,
    })) else {
        panic!("not flows")
    };
    assert!(fl
        .flows
        .iter()
        .any(|x| x.original.dport == Some(21) && x.helper.as_deref() == Some("ftp")));
    assert_eq!(
        fl.flows
            .iter()
            .filter(|x| x
                .master
                .as_ref()
                .is_some_and(|m| m.original.sport == Some(40000)))
            .count(),
        8
    );
}
