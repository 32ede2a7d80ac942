//! The FTP parser (valid, split, malformed, hostile) and the expectation
//! table (bounds, timeouts, replacement).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::expect::{ExpectTable, Expectation};
use super::ftp::{self, parse_line, Carry, FtpAnnounce, Line, MAX_LINE};
use super::Helper;
use crate::flow::{proto, FlowKey, Tuple};

fn ann(a: [u8; 4], port: u16) -> Line {
    Line::Announce(FtpAnnounce {
        addr: Some(IpAddr::V4(Ipv4Addr::from(a))),
        port,
    })
}

#[test]
fn port_eprt_pasv_epsv_parse() {
    assert_eq!(
        parse_line(b"PORT 192,0,2,10,4,1\r\n", true),
        ann([192, 0, 2, 10], 1025)
    );
    assert_eq!(
        parse_line(b"port 192,0,2,10,0,21\r\n", true),
        ann([192, 0, 2, 10], 21)
    );
    assert_eq!(
        parse_line(b"EPRT |1|192.0.2.10|6446|\r\n", true),
        ann([192, 0, 2, 10], 6446)
    );
    assert_eq!(
        parse_line(b"EPRT !2!2001:db8::7!5282!\r\n", true),
        Line::Announce(FtpAnnounce {
            addr: Some(IpAddr::V6("2001:db8::7".parse::<Ipv6Addr>().unwrap())),
            port: 5282
        })
    );
    assert_eq!(
        parse_line(
            b"227 Entering Passive Mode (198,51,100,7,195,80).\r\n",
            false
        ),
        ann([198, 51, 100, 7], 50000)
    );
    // Without the parenthesis (some servers).
    assert_eq!(
        parse_line(b"227 Entering Passive Mode 198,51,100,7,195,80\r\n", false),
        ann([198, 51, 100, 7], 50000)
    );
    assert_eq!(
        parse_line(b"229 Entering Extended Passive Mode (|||50001|)\r\n", false),
        Line::Announce(FtpAnnounce {
            addr: None,
            port: 50001
        })
    );
}

#[test]
fn other_lines_and_wrong_direction_are_not_ours() {
    assert_eq!(parse_line(b"USER anonymous\r\n", true), Line::Other);
    assert_eq!(parse_line(b"220 ready\r\n", false), Line::Other);
    // A reply sent by the client, a command sent by the server: ignored.
    assert_eq!(parse_line(b"227 (192,0,2,1,4,1)\r\n", true), Line::Other);
    assert_eq!(parse_line(b"PORT 192,0,2,1,4,1\r\n", false), Line::Other);
    // A 227 continuation line ("227-") is not the final reply.
    assert_eq!(parse_line(b"227-(192,0,2,1,4,1)\r\n", false), Line::Other);
}

#[test]
fn malformed_and_hostile_lines_are_malformed() {
    for l in [
        &b"PORT 192,0,2,10,4\r\n"[..],
        b"PORT 192,0,2,256,4,1\r\n",
        b"PORT 192,0,2,10,4,1000\r\n",
        b"PORT 0192,0,2,10,4,1\r\n",
        b"PORT 192,0,2,10,0,0\r\n",
        b"PORT ,,,,,\r\n",
        b"PORT 99999999999999999999,0,2,10,4,1\r\n",
        b"PORT \r\n",
        b"EPRT |3|192.0.2.1|5|\r\n",
        b"EPRT |1|2001:db8::1|5|\r\n",
        b"EPRT |1|192.0.2.1|65536|\r\n",
        b"EPRT |1|192.0.2.1|5\r\n",
        b"EPRT 1|192.0.2.1|5|\r\n",
        b"EPRT |1|192.0.2.1|0|\r\n",
        b"EPRT ",
    ] {
        assert_eq!(
            parse_line(l, true),
            Line::Malformed,
            "{:?}",
            String::from_utf8_lossy(l)
        );
    }
    for l in [
        &b"227 Entering Passive Mode\r\n"[..],
        b"227 (198,51,100,7,195)\r\n",
        b"229 Entering Extended Passive Mode\r\n",
        b"229 (||50001|)\r\n",
        b"229 (|||50001)\r\n",
        b"229 (|||0|)\r\n",
        b"229 (|||123456|)\r\n",
        b"229 (111501|)\r\n",
    ] {
        assert_eq!(
            parse_line(l, false),
            Line::Malformed,
            "{:?}",
            String::from_utf8_lossy(l)
        );
    }
}

fn run(carry: &mut Carry, seq: u32, payload: &[u8]) -> (Vec<FtpAnnounce>, u32) {
    let mut v = Vec::new();
    let r = ftp::lines(carry, seq, payload, true, |a| v.push(a));
    (v, r.malformed)
}

#[test]
fn a_command_split_over_segments_is_found_once() {
    let mut c = Carry::default();
    let (a, m) = run(&mut c, 100, b"USER x\r\nPORT 192,0,2");
    assert!(a.is_empty());
    assert_eq!(m, 0);
    let (a, m) = run(&mut c, 120, b",10,4,1\r\nNOOP\r\n");
    assert_eq!(m, 0);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].port, 1025);
    // A retransmission of the second segment is not read again.
    let (a, _) = run(&mut c, 120, b",10,4,1\r\nNOOP\r\n");
    assert!(a.is_empty());
}

#[test]
fn after_a_gap_text_inside_a_line_is_not_a_command() {
    let mut c = Carry::default();
    run(&mut c, 0, b"NOOP\r\n");
    // Bytes 6..20 were never seen: the segment starts inside a line, and
    // "PORT ..." before its first line feed must not be taken.
    let (a, _) = run(
        &mut c,
        20,
        b"PORT 192,0,2,10,4,1\r\nPORT 192,0,2,10,4,2\r\n",
    );
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].port, 1026);
}

#[test]
fn overlong_lines_are_bounded_and_counted() {
    let mut c = Carry::default();
    let mut big = b"PORT ".to_vec();
    big.resize(MAX_LINE + 10, b'1');
    let (a, m) = run(&mut c, 0, &big);
    assert!(a.is_empty());
    assert_eq!(m, 1);
    assert!(c.bytes.is_empty(), "nothing of an overlong line is kept");
    // Its end, in the next segment, is skipped; the line after is read.
    let seq = u32::try_from(big.len()).unwrap();
    let (a, m) = run(&mut c, seq, b",4,1\r\nPORT 192,0,2,10,4,3\r\n");
    assert_eq!(m, 0);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].port, 1027);
    // A long line that is not a command is not malformed.
    let mut c = Carry::default();
    let mut long = b"RETR ".to_vec();
    long.resize(MAX_LINE * 2, b'a');
    long.extend_from_slice(b"\r\n");
    assert_eq!(run(&mut c, 0, &long).1, 0);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x1234_5678_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let alphabet = b"PORTEPRT227229 (|,.:0123456789\r\n";
    let mut c = Carry::default();
    let mut seq = 0u32;
    for _ in 0..2000 {
        let len = (next() % 80) as usize;
        let p: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() as usize) % alphabet.len()])
            .collect();
        ftp::lines(&mut c, seq, &p, next() % 2 == 0, |a| assert_ne!(a.port, 0));
        assert!(c.bytes.len() <= MAX_LINE);
        seq = seq.wrapping_add(u32::try_from(len).unwrap());
    }
}

fn key(port: u16) -> FlowKey {
    FlowKey {
        orig: Tuple::new(
            "192.0.2.10".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            proto::TCP,
            port,
            21,
        ),
        zone: 0,
    }
}

fn exp(master_port: u16, data_port: u16, expires: u32) -> Expectation {
    Expectation {
        master: key(master_port),
        tuple: Tuple::new(
            "192.0.2.10".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            proto::TCP,
            0,
            data_port,
        ),
        helper: Helper::Ftp,
        expires,
    }
}

#[test]
fn expectations_match_once_time_out_and_are_bounded() {
    let mut t = ExpectTable::new(2);
    assert!(t.insert(0, exp(40000, 50000, 300)));
    assert!(t.insert(0, exp(40001, 50001, 10)));
    // Full: a third master's expectation is refused and counted.
    assert!(!t.insert(0, exp(40002, 50002, 300)));
    assert_eq!(t.stats().table_full, 1);
    assert_eq!(t.len(), 2);
    // The same master's newer announce replaces its older one.
    assert!(t.insert(1, exp(40000, 50005, 300)));
    assert_eq!(t.len(), 2);
    let data = |sport: u16, dport: u16| {
        Tuple::new(
            "192.0.2.10".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            proto::TCP,
            sport,
            dport,
        )
    };
    assert!(t.take(2, &data(33000, 50000), 0).is_none(), "replaced");
    assert!(t.take(2, &data(33000, 50005), 1).is_none(), "other zone");
    let e = t.take(2, &data(33000, 50005), 0).expect("expected");
    assert_eq!(e.master, key(40000));
    assert!(t.take(2, &data(33001, 50005), 0).is_none(), "matches once");
    // The second one times out at 10: it matches nothing after, and
    // expire removes it.
    assert!(t.take(10, &data(33000, 50001), 0).is_none());
    assert_eq!(t.expire(10), 1);
    assert_eq!(t.stats().expired, 1);
    assert!(t.is_empty());
    assert_eq!(t.stats().matched, 1);
    // Room again after expiry.
    assert!(t.insert(11, exp(40002, 50002, 300)));
}
