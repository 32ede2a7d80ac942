//! Property test: the pipeline (parser, rule compiler, conntrack, verdict
//! cache) gives every packet the verdict nftables would, checked against a
//! reference written here from the nftables rules alone: per packet, the
//! rules in order, first terminal match wins, `log` continues, with the
//! packet's conntrack state (NEW in the original direction until a reply
//! has passed conntrack, ESTABLISHED after and for replies; a flow exists
//! once its first packet was accepted).

use std::collections::HashMap;
use std::net::IpAddr;

use proptest::prelude::*;

use crate::packet::{FrameSpec, L4Spec};

use super::pipeline::Decision;
use super::pipeline_tests::{compile, Rig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Accept,
    Drop,
    Reject,
    Log,
}

/// One rule of the model; `None` fields match everything.
#[derive(Clone, Debug)]
struct MRule {
    verb: Verb,
    in_port: Option<u16>,
    /// 17 (UDP, what the traffic is) or 6 (TCP, matches nothing here).
    proto: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
    /// (new, established) allowed; `None`: no ct match.
    ct: Option<(bool, bool)>,
}

#[derive(Clone, Debug)]
struct MSet {
    rules: Vec<MRule>,
    accept_policy: bool,
}

const PORT_NAMES: [&str; 2] = ["outside", "inside"];
/// Client ports (outside) and server ports (inside) of the four flows.
const CPORTS: [u16; 2] = [1000, 1001];
const SPORTS: [u16; 2] = [53, 80];
const PORTS: [u16; 4] = [1000, 1001, 53, 80];

impl MSet {
    /// The rule file nftables and ftfw read.
    fn text(&self) -> String {
        let mut s = format!(
            "policy {}\n",
            if self.accept_policy { "accept" } else { "drop" }
        );
        for r in &self.rules {
            s.push_str(match r.verb {
                Verb::Accept => "accept",
                Verb::Drop => "drop",
                Verb::Reject => "reject",
                Verb::Log => "log",
            });
            if let Some(p) = r.in_port {
                s.push_str(&format!(" in {}", PORT_NAMES[usize::from(p)]));
            }
            if let Some(p) = r.proto {
                s.push_str(if p == 17 { " proto udp" } else { " proto tcp" });
                if let Some(sp) = r.sport {
                    s.push_str(&format!(" sport {sp}"));
                }
                if let Some(dp) = r.dport {
                    s.push_str(&format!(" dport {dp}"));
                }
            }
            match r.ct {
                Some((true, true)) => s.push_str(" ct new,established"),
                Some((true, false)) => s.push_str(" ct new"),
                Some((false, true)) => s.push_str(" ct established"),
                _ => {}
            }
            s.push('\n');
        }
        s
    }

    /// The reference verdict and whether a log rule matched.
    fn judge(&self, p: &Pkt, new: bool) -> (Decision, bool) {
        let mut logged = false;
        for r in &self.rules {
            let proto_ok = r.proto.is_none_or(|x| x == 17);
            let ports_ok = r.proto.is_none()
                || (r.sport.is_none_or(|x| x == p.sport) && r.dport.is_none_or(|x| x == p.dport));
            let m = r.in_port.is_none_or(|x| x == p.in_port)
                && proto_ok
                && ports_ok
                && r.ct.is_none_or(|(n, e)| if new { n } else { e });
            if !m {
                continue;
            }
            match r.verb {
                Verb::Log => logged = true,
                Verb::Accept => return (Decision::Forward, logged),
                Verb::Drop => return (Decision::Drop, logged),
                Verb::Reject => return (Decision::Reject, logged),
            }
        }
        let d = if self.accept_policy {
            Decision::Forward
        } else {
            Decision::Drop
        };
        (d, logged)
    }
}

/// One UDP packet of flow `flow`, client to server unless `back`.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    in_port: u16,
    sport: u16,
    dport: u16,
    back: bool,
    flow: (u16, u16),
}

#[derive(Clone, Debug)]
enum Event {
    Packet { flow: usize, back: bool, port: u16 },
    Reload(usize),
}

fn rule() -> impl Strategy<Value = MRule> {
    let verb = prop_oneof![
        Just(Verb::Accept),
        Just(Verb::Drop),
        Just(Verb::Reject),
        Just(Verb::Log)
    ];
    let port = prop::option::of(prop::sample::select(PORTS.to_vec()));
    let ct = prop::option::of(prop_oneof![
        Just((true, false)),
        Just((false, true)),
        Just((true, true))
    ]);
    (
        verb,
        prop::option::of(0u16..2),
        prop::option::of(prop_oneof![Just(17u8), Just(6u8)]),
        port.clone(),
        port,
        ct,
    )
        .prop_map(|(verb, in_port, proto, sport, dport, ct)| MRule {
            verb,
            in_port,
            proto,
            sport,
            dport,
            ct,
        })
}

fn set() -> impl Strategy<Value = MSet> {
    (prop::collection::vec(rule(), 0..8), any::<bool>()).prop_map(|(rules, accept_policy)| MSet {
        rules,
        accept_policy,
    })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => (0usize..4, any::<bool>(), 0u16..2)
            .prop_map(|(flow, back, port)| Event::Packet { flow, back, port }),
        1 => (0usize..3).prop_map(Event::Reload),
    ]
}

fn frame(p: &Pkt) -> Vec<u8> {
    let c: IpAddr = "192.0.2.1".parse().unwrap();
    let s: IpAddr = "198.51.100.1".parse().unwrap();
    let (src_ip, dst_ip) = if p.back { (s, c) } else { (c, s) };
    FrameSpec {
        src_ip,
        dst_ip,
        l4: L4Spec::Udp {
            src_port: p.sport,
            dst_port: p.dport,
        },
        payload_len: 4,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// The reference conntrack: per flow, which way its first accepted packet
/// went, and whether a packet the other way has been seen since.
#[derive(Default)]
struct RefTable {
    flows: HashMap<(u16, u16), (bool, bool)>,
}

impl RefTable {
    /// The packet's ct state (true: NEW) before the rules run; a packet of
    /// the reply direction marks the flow replied, as conntrack does before
    /// the filter sees it.
    fn state(&mut self, p: &Pkt) -> bool {
        match self.flows.get_mut(&p.flow) {
            Some((orig_back, replied)) => {
                if *orig_back == p.back {
                    !*replied
                } else {
                    *replied = true;
                    false
                }
            }
            None => true,
        }
    }

    fn accepted(&mut self, p: &Pkt) {
        self.flows.entry(p.flow).or_insert((p.back, false));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_verdicts_match_the_reference(
        sets in prop::collection::vec(set(), 3),
        events in prop::collection::vec(event(), 1..48),
    ) {
        let mut rig = Rig::new(&sets[0].text());
        let mut current = 0usize;
        let mut table = RefTable::default();
        for (i, ev) in events.iter().enumerate() {
            match *ev {
                Event::Reload(k) => {
                    let g = rig.rules.generation + 1;
                    rig.rules = compile(&sets[k].text(), g);
                    current = k;
                }
                Event::Packet { flow, back, port } => {
                    let (cp, sp) = (CPORTS[flow % 2], SPORTS[flow / 2]);
                    let p = Pkt {
                        in_port: port,
                        sport: if back { sp } else { cp },
                        dport: if back { cp } else { sp },
                        back,
                        flow: (cp, sp),
                    };
                    let existed = table.flows.contains_key(&p.flow);
                    let new = table.state(&p);
                    let (want, want_log) = sets[current].judge(&p, new);
                    if !existed && want == Decision::Forward {
                        table.accepted(&p);
                    }
                    let logged = rig.p.counters.logged;
                    let got = rig.send(port, &frame(&p));
                    prop_assert_eq!(
                        got, want,
                        "event {} {:?} (ct {}) under rules:\n{}",
                        i, p, if new { "new" } else { "established" }, sets[current].text()
                    );
                    prop_assert_eq!(rig.p.counters.logged - logged, u64::from(want_log), "log of event {}", i);
                }
            }
        }
    }
}
