//! Console tuples and flows, as the replication tests add and compare them.

use ftfw_control::console::proto::{FlowJson, TupleJson};

/// A console tuple.
pub fn tuple(src: &str, dst: &str, sport: Option<u16>, dport: Option<u16>) -> TupleJson {
    TupleJson {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport,
        dport,
        icmp_type: None,
        code: None,
        id: None,
    }
}

/// A console flow of protocol `p`, seen both ways and assured.
pub fn flow(p: &str, orig: TupleJson, state: Option<&str>) -> FlowJson {
    FlowJson {
        proto: p.into(),
        proto_num: None,
        family: None,
        original: orig,
        reply: None,
        zone: 0,
        state: state.map(str::to_string),
        status: 0,
        status_names: vec!["SEEN_REPLY".into(), "ASSURED".into()],
        timeout: 300,
        mark: 0,
        counters: Default::default(),
        active_secs: None,
    }
}
