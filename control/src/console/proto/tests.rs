//! Round trips and validation of the console protocol.

use ftfw_dataplane::flow::{proto, status, Counters, FlowState, TcpState, Tuple};

use super::*;

fn tcp_flow() -> FlowState {
    let orig = Tuple::new(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
        proto::TCP,
        40000,
        80,
    );
    FlowState {
        mark: 7,
        counters: [
            Counters {
                packets: 3,
                bytes: 180,
            },
            Counters {
                packets: 2,
                bytes: 120,
            },
        ],
        ..FlowState::established_tcp(orig, 431999)
    }
}

#[test]
fn request_wire_format() {
    let r: Request = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
    assert_eq!(r, Request::Status);
    let r: Request = serde_json::from_str(
        r#"{"cmd":"flows_list","filter":{"proto":"tcp","dport":80,"state":"established"}}"#,
    )
    .unwrap();
    let Request::FlowsList {
        filter,
        limit: None,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(filter.proto, Some(6));
    assert_eq!(filter.state, Some(TcpState::Established));
    let r: Request =
        serde_json::from_str(r#"{"cmd":"flows_delete","filter":{"proto":17}}"#).unwrap();
    assert_eq!(
        r,
        Request::FlowsDelete {
            filter: FlowFilter {
                proto: Some(17),
                ..Default::default()
            }
        }
    );
    assert_eq!(
        serde_json::to_string(&Request::RulesReload).unwrap(),
        r#"{"cmd":"rules_reload"}"#
    );
    assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    assert!(
        serde_json::from_str::<Request>(r#"{"cmd":"flows_list","filter":{"proto":"xyz"}}"#)
            .is_err()
    );
    assert!(
        serde_json::from_str::<Request>(r#"{"cmd":"flows_list","filter":{"color":1}}"#).is_err()
    );
}

#[test]
fn response_wire_format() {
    let ok = Response::Ok(Payload::FlowsDeleted { deleted: 3 });
    let line = ok.to_line();
    assert_eq!(line, r#"{"ok":true,"kind":"flows_deleted","deleted":3}"#);
    assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), ok);
    let err = Response::error("no such thing");
    assert_eq!(err.to_line(), r#"{"ok":false,"error":"no such thing"}"#);
    assert_eq!(
        serde_json::from_str::<Response>(&err.to_line()).unwrap(),
        err
    );
    let stats = Response::Ok(Payload::Stats(StatsInfo::new(
        vec![
            WorkerStats {
                rx: 1,
                ..Default::default()
            },
            WorkerStats {
                rx: 2,
                tx: 5,
                ..Default::default()
            },
        ],
        vec![PortCounters {
            name: "outside".into(),
            stats: PortStats {
                rx_packets: 9,
                ..Default::default()
            },
        }],
    )));
    let back: Response = serde_json::from_str(&stats.to_line()).unwrap();
    assert_eq!(back, stats);
    let Response::Ok(Payload::Stats(s)) = back else {
        panic!()
    };
    assert_eq!(s.total.rx, 3);
    assert_eq!(s.total.tx, 5);
}

#[test]
fn flow_json_round_trip() {
    let f = tcp_flow();
    let j = FlowJson::from(&f);
    assert_eq!(j.proto, "tcp");
    assert_eq!(j.state.as_deref(), Some("ESTABLISHED"));
    assert_eq!(j.status_names, ["SEEN_REPLY", "ASSURED", "CONFIRMED"]);
    assert_eq!(j.reply.as_ref().unwrap().sport, Some(80));
    let text = serde_json::to_string(&j).unwrap();
    let back: FlowJson = serde_json::from_str(&text).unwrap();
    assert_eq!(FlowState::try_from(back).unwrap(), f);
}

#[test]
fn flow_json_icmp() {
    let j: FlowJson = serde_json::from_str(
        r#"{"proto":"icmp","original":{"src":"192.0.2.1","dst":"192.0.2.2","type":8,"code":0,"id":77},"timeout":30}"#,
    )
    .unwrap();
    let f = FlowState::try_from(j).unwrap();
    assert_eq!(f.key.orig.icmp_type(), 8);
    assert_eq!(f.key.orig.icmp_id(), 77);
    assert_eq!(f.status, status::CONFIRMED);
    let back = FlowJson::from(&f);
    assert_eq!(back.original.icmp_type, Some(8));
    assert_eq!(back.original.sport, None);
}

#[test]
fn flow_json_validation() {
    let bad = |s: &str| {
        FlowState::try_from(serde_json::from_str::<FlowJson>(s).unwrap())
            .unwrap_err()
            .to_string()
    };
    assert!(bad(r#"{"proto":"tcp","original":{"src":"192.0.2.1","dst":"2001:db8::1","sport":1,"dport":2},"state":"ESTABLISHED","timeout":5}"#).contains("different families"));
    assert!(bad(r#"{"proto":"gre","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5}"#).contains("no ports"));
    assert!(bad(r#"{"proto":"tcp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"state":"OPEN","timeout":5}"#).contains("unknown TCP state"));
    assert!(bad(r#"{"proto":"tcp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5}"#).contains("required for tcp"));
    assert!(bad(r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"state":"ESTABLISHED","timeout":5}"#).contains("tcp and sctp only"));
    assert!(bad(
        r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1},"timeout":5}"#
    )
    .contains("needs sport and dport"));
    assert!(bad(r#"{"proto":"icmp","original":{"src":"2001:db8::1","dst":"2001:db8::2","type":128},"timeout":5}"#).contains("use icmpv6"));
    assert!(bad(
        r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2}}"#
    )
    .contains("timeout"));
    assert!(bad(r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5,"status_names":["BOGUS"]}"#).contains("BOGUS"));
    assert!(bad(r#"{"proto":"udp","family":"ipv6","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5}"#).contains("family"));
}

#[test]
fn filter_matches() {
    let f = tcp_flow();
    let yes = |flt: FlowFilter| assert!(flt.matches(&f), "{flt:?}");
    let no = |flt: FlowFilter| assert!(!flt.matches(&f), "{flt:?}");
    yes(FlowFilter::default());
    yes(FlowFilter {
        proto: Some(6),
        dport: Some(80),
        sport: Some(40000),
        ..Default::default()
    });
    yes(FlowFilter {
        src: Some("192.0.2.1".parse().unwrap()),
        dst: Some("198.51.100.2".parse().unwrap()),
        ..Default::default()
    });
    yes(FlowFilter {
        state: Some(TcpState::Established),
        zone: Some(0),
        mark: Some(7),
        ..Default::default()
    });
    no(FlowFilter {
        proto: Some(17),
        ..Default::default()
    });
    no(FlowFilter {
        src: Some("198.51.100.2".parse().unwrap()),
        ..Default::default()
    });
    no(FlowFilter {
        dport: Some(443),
        ..Default::default()
    });
    no(FlowFilter {
        state: Some(TcpState::TimeWait),
        ..Default::default()
    });
    no(FlowFilter {
        zone: Some(1),
        ..Default::default()
    });
    no(FlowFilter {
        mark: Some(0),
        ..Default::default()
    });
}

#[test]
fn flow_json_carries_what_conntrack_shows() {
    use ftfw_dataplane::flow::FlowExtras;
    // SCTP state and tags, labels, a helper and a master, and window
    // scales: out to JSON and back unchanged.
    let orig = Tuple::new(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
        proto::SCTP,
        5000,
        5001,
    );
    let sctp = FlowState {
        extras: FlowExtras {
            sctp: Some((4, 0x1234_5678, 0x9abc_def0)),
            labels: Some([1 << 1, 0, 0, 1 << 31]),
            helper: Some("ftp".into()),
            master: Some(tcp_flow().key.orig),
            ..FlowExtras::default()
        }
        .into(),
        ..FlowState::established_tcp(orig, 60)
    };
    let sctp = FlowState {
        tcp_state: TcpState::None,
        ..sctp
    };
    let j = FlowJson::from(&sctp);
    assert_eq!(j.state.as_deref(), Some("ESTABLISHED"));
    assert_eq!(j.vtags, Some([0x1234_5678, 0x9abc_def0]));
    assert_eq!(j.labels, [1, 127]);
    assert_eq!(j.helper.as_deref(), Some("ftp"));
    let m = j.master.as_ref().unwrap();
    assert_eq!((m.proto.as_str(), m.original.dport), ("tcp", Some(80)));
    assert_eq!(j.window_scale, None);
    let back: FlowJson = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
    assert_eq!(FlowState::try_from(back).unwrap(), sctp);
    let mut tcp = tcp_flow();
    tcp.wscale = [7, 14];
    let j = FlowJson::from(&tcp);
    assert_eq!(j.window_scale, Some([7, 14]));
    assert_eq!(FlowState::try_from(j).unwrap(), tcp);
    // What is refused, by field.
    let bad = |edit: &dyn Fn(&mut FlowJson)| {
        let mut j = FlowJson::from(&sctp);
        edit(&mut j);
        FlowState::try_from(j).unwrap_err().to_string()
    };
    assert!(bad(&|j| j.state = Some("LISTEN".into())).contains("unknown SCTP state"));
    assert!(bad(&|j| j.labels = vec![128]).contains("labels are bits 0 to 127"));
    assert!(bad(&|j| j.helper = Some("a-very-long-helper".into())).contains("not a helper name"));
    assert!(bad(&|j| j.window_scale = Some([1, 1])).contains("applies to tcp only"));
    let mut j = FlowJson::from(&tcp);
    j.window_scale = Some([15, 0]);
    assert!(FlowState::try_from(j)
        .unwrap_err()
        .to_string()
        .contains("0 to 14"));
    let mut j = FlowJson::from(&tcp);
    j.vtags = Some([1, 2]);
    assert!(FlowState::try_from(j)
        .unwrap_err()
        .to_string()
        .contains("sctp only"));
}
