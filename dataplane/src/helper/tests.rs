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
        nat: None,
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

#[test]
fn announce_spans_cover_the_text_a_rewrite_replaces_and_write_back_the_same() {
    use super::ftp::{parse_line_span, write_announce, Form, MAX_ANNOUNCE_TEXT};
    let cases: [(&[u8], bool, &str, Form); 5] = [
        (
            b"PORT 192,0,2,10,195,80\r\n",
            true,
            "192,0,2,10,195,80",
            Form::Rfc959,
        ),
        (
            b"EPRT |1|192.0.2.10|50000|\r\n",
            true,
            "|1|192.0.2.10|50000|",
            Form::Eprt(b'|'),
        ),
        (
            b"EPRT !2!2001:db8::7!5282!\r\n",
            true,
            "!2!2001:db8::7!5282!",
            Form::Eprt(b'!'),
        ),
        (
            b"227 Entering Passive Mode (198,51,100,7,195,80).\r\n",
            false,
            "198,51,100,7,195,80",
            Form::Rfc959,
        ),
        (
            b"229 Entering Extended Passive Mode (|||50001|)\r\n",
            false,
            "|||50001|",
            Form::Epsv(b'|'),
        ),
    ];
    for (line, from_client, text, form) in cases {
        let (l, span) = parse_line_span(line, from_client);
        let Line::Announce(a) = l else {
            panic!("{l:?}")
        };
        let s = span.unwrap();
        assert_eq!(&line[s.start..s.end], text.as_bytes());
        assert_eq!(s.form, form);
        let mut out = [0u8; MAX_ANNOUNCE_TEXT];
        let n = write_announce(form, a.addr, a.port, &mut out).unwrap();
        assert_eq!(&out[..n], text.as_bytes());
    }
    // The longest texts fit; forms that cannot carry the address refuse.
    let mut out = [0u8; MAX_ANNOUNCE_TEXT];
    let v6: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
    let n = write_announce(Form::Eprt(b'|'), Some(v6), 65535, &mut out).unwrap();
    assert_eq!(n, 5 + 39 + 5);
    let v4: IpAddr = "255.255.255.255".parse().unwrap();
    assert_eq!(
        write_announce(Form::Rfc959, Some(v4), 65535, &mut out),
        Some(23)
    );
    assert_eq!(write_announce(Form::Rfc959, Some(v6), 1, &mut out), None);
    assert_eq!(
        write_announce(Form::Epsv(b'|'), Some(v4), 1, &mut out),
        None
    );
}

#[test]
fn spans_are_given_in_the_segment_only_for_lines_that_start_in_it() {
    let mut c = Carry::default();
    let mut got = Vec::new();
    let seg = b"NOOP\r\nPORT 192,0,2,10,4,1\r\nPORT 192,0,2";
    ftp::lines_spans(&mut c, 1, seg, true, |a, s| got.push((a, s)));
    assert_eq!(got.len(), 1);
    let s = got[0].1.unwrap();
    assert_eq!(&seg[s.start..s.end], b"192,0,2,10,4,1");
    got.clear();
    // The rest of the split line: found, but not rewritable here.
    let rest = b",10,4,2\r\n";
    let next = 1 + u32::try_from(seg.len()).unwrap();
    ftp::lines_spans(&mut c, next, rest, true, |a, s| got.push((a, s)));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.port, 1026);
    assert_eq!(got[0].1, None);
}

/// The translation of the expectation of `master` and `helper` in `t`.
fn nat_of(t: &ExpectTable, master: &FlowKey, helper: Helper) -> Option<super::ExpectNat> {
    t.iter()
        .find(|e| e.master == *master && e.helper == helper)
        .and_then(|e| e.nat)
}

#[test]
fn translated_expectations_keep_their_translation_until_taken_and_stay_bounded() {
    use super::ExpectNat;
    let nat = |p: u16| ExpectNat {
        reply_src: crate::flow::addr_bytes("192.0.2.10".parse().unwrap()),
        reply_src_port: p,
        reply_dst: crate::flow::addr_bytes("198.51.100.7".parse().unwrap()),
    };
    let data = |dport: u16| {
        Tuple::new(
            "192.0.2.10".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            proto::TCP,
            33000,
            dport,
        )
    };
    let mut t = ExpectTable::new(2);
    assert!(t.insert(
        0,
        Expectation {
            nat: Some(nat(1)),
            ..exp(40000, 50000, 300)
        }
    ));
    assert_eq!(nat_of(&t, &key(40000), Helper::Ftp), Some(nat(1)));
    // Another master waiting at the same tuple clashes; the same does not.
    assert!(t.clashes(0, &data(50000), &key(40001)));
    assert!(!t.clashes(0, &data(50000), &key(40000)));
    assert!(!t.clashes(0, &data(50001), &key(40001)));
    // A newer announce of the same master replaces the translation; one
    // without translation forgets it.
    assert!(t.insert(
        0,
        Expectation {
            nat: Some(nat(2)),
            ..exp(40000, 50000, 300)
        }
    ));
    assert_eq!(nat_of(&t, &key(40000), Helper::Ftp), Some(nat(2)));
    assert!(t.insert(
        0,
        Expectation {
            nat: None,
            ..exp(40000, 50000, 300)
        }
    ));
    assert_eq!(nat_of(&t, &key(40000), Helper::Ftp), None);
    // A plain insert (a peer's expectation) carries no translation.
    assert!(t.insert(
        0,
        Expectation {
            nat: Some(nat(4)),
            ..exp(40000, 50000, 300)
        }
    ));
    assert!(t.insert(0, exp(40000, 50000, 300)));
    assert_eq!(nat_of(&t, &key(40000), Helper::Ftp), None);
    assert!(t.insert(
        0,
        Expectation {
            nat: Some(nat(3)),
            ..exp(40000, 50000, 300)
        }
    ));
    let e = t.take(1, &data(50000), 0).unwrap();
    assert_eq!((e.master, e.nat), (key(40000), Some(nat(3))));
    assert_eq!(nat_of(&t, &key(40000), Helper::Ftp), None, "taken with it");
    // A translation goes with its expectation when it times out: the
    // table never holds more than its capacity.
    for round in 0..10u16 {
        let now = u32::from(round) * 400;
        for m in 0..2 {
            let mut x = exp(41000 + round * 2 + m, 50000 + m, now + 300);
            x.expires = now + 300;
            assert!(t.insert(
                now,
                Expectation {
                    nat: Some(nat(m)),
                    ..x
                }
            ));
        }
    }
    assert_eq!(t.len(), 2);
    assert!(nat_of(&t, &key(41018), Helper::Ftp).is_some());
    assert!(nat_of(&t, &key(41000), Helper::Ftp).is_none(), "pruned");
}
