//! Console tuples and flows, as the replication tests add and compare them.

use ftfw_control::console::proto::{FlowJson, FlowsListing, TupleJson};
use ftfw_dataplane::flow::FlowState;

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
        window_scale: None,
        vtags: None,
        labels: Vec::new(),
        helper: None,
        master: None,
    }
}

/// Seven flows that cover what replication carries: TCP, UDP with a mark,
/// ICMP, IPv6, SNAT, DNAT and a zone (7, the last one).
pub fn sample_flows() -> Vec<FlowJson> {
    let mut v = Vec::new();
    v.push(flow(
        "tcp",
        tuple("192.0.2.1", "198.51.100.1", Some(40000), Some(80)),
        Some("ESTABLISHED"),
    ));
    let mut udp = flow(
        "udp",
        tuple("192.0.2.3", "198.51.100.53", Some(5353), Some(53)),
        None,
    );
    udp.mark = 42;
    v.push(udp);
    let mut icmp = flow("icmp", tuple("192.0.2.6", "198.51.100.1", None, None), None);
    icmp.original.icmp_type = Some(8);
    icmp.original.code = Some(0);
    icmp.original.id = Some(4660);
    v.push(icmp);
    v.push(flow(
        "tcp",
        tuple("2001:db8::1", "2001:db8:1::1", Some(40003), Some(22)),
        Some("ESTABLISHED"),
    ));
    let mut snat = flow(
        "tcp",
        tuple("192.0.2.2", "198.51.100.10", Some(40001), Some(443)),
        Some("ESTABLISHED"),
    );
    snat.reply = Some(tuple(
        "198.51.100.10",
        "203.0.113.5",
        Some(443),
        Some(61000),
    ));
    snat.status_names
        .extend(["SRC_NAT".to_string(), "SRC_NAT_DONE".to_string()]);
    v.push(snat);
    let mut dnat = flow(
        "tcp",
        tuple("192.0.2.2", "203.0.113.5", Some(40002), Some(8080)),
        Some("ESTABLISHED"),
    );
    dnat.reply = Some(tuple("192.0.2.99", "192.0.2.2", Some(80), Some(40002)));
    dnat.status_names
        .extend(["DST_NAT".to_string(), "DST_NAT_DONE".to_string()]);
    v.push(dnat);
    let mut zoned = flow(
        "udp",
        tuple("192.0.2.5", "198.51.100.5", Some(1000), Some(2000)),
        None,
    );
    zoned.zone = 7;
    v.push(zoned);
    v
}

/// What replication must carry of a flow, for comparing listings: (key,
/// NAT reply, state, zone, mark, status names, timeout > 0).
pub type Essence = (String, String, Option<String>, u16, u32, String, bool);

/// The essences of a listing, sorted.
pub fn essences(l: &FlowsListing) -> Vec<Essence> {
    let mut v: Vec<Essence> = l
        .flows
        .iter()
        .map(|j| {
            let st = FlowState::try_from(j.clone()).unwrap();
            (
                format!("{:?}", st.key),
                format!("{:?}", st.extras.reply),
                j.state.clone(),
                j.zone,
                j.mark,
                j.status_names.join(","),
                j.timeout > 0,
            )
        })
        .collect();
    v.sort();
    v
}
