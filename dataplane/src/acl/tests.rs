//! Tests for parsing and for both classifiers.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::flow::{proto, CtState, CtStateSet, Tuple};

fn ports(name: &str) -> Option<u16> {
    match name {
        "outside" => Some(0),
        "inside" => Some(1),
        "dmz" => Some(2),
        _ => None,
    }
}

fn parse(text: &str) -> RuleSet {
    match parse_rules(text, "rules.conf", 1, &ports) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn err(text: &str) -> String {
    match parse_rules(text, "rules.conf", 1, &ports) {
        Ok(s) => panic!("parsed: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn tuple(src: &str, dst: &str, p: u8, sport: u16, dport: u16) -> Tuple {
    let s: IpAddr = src.parse().unwrap();
    let d: IpAddr = dst.parse().unwrap();
    Tuple::new(s, d, p, sport, dport)
}

/// Classifies with both classifiers, checks they agree, returns the verdict.
fn both(set: &RuleSet, in_port: u16, zone: u16, t: &Tuple, ct: CtState) -> Verdict {
    let input = AclInput {
        in_port,
        zone,
        tuple: t,
        ct,
    };
    let a = set.linear().classify(&input);
    let b = set.compile().classify(&input);
    assert_eq!(a, b, "linear vs compiled for {t} ct {ct:?}");
    a
}

const EXAMPLE: &str = r#"# ftfw rules
policy drop
accept ct established,related
accept in outside proto tcp from 192.0.2.0/24,198.51.100.7 to 203.0.113.10 dport 80,443,8000-8080 ct new
reject proto tcp dport 23
log proto icmp icmp-type 8
accept proto icmp icmp-type 8 ct new
accept zone 3 proto udp sport 53

drop ct invalid   # trailing comment
accept proto icmpv6 comment "ND and friends # not a comment"
"#;

fn verdict(action: Action, rule: Option<u32>, log: Option<u32>) -> Verdict {
    Verdict { action, rule, log }
}

#[test]
fn example_file_parses_and_classifies() {
    let set = parse(EXAMPLE);
    assert_eq!(set.len(), 8);
    assert_eq!(set.policy(), Action::Drop);
    assert_eq!(set.policy_line(), Some(2));
    let web = tuple("192.0.2.9", "203.0.113.10", proto::TCP, 40000, 8080);
    assert_eq!(
        both(&set, 0, 0, &web, CtState::New),
        verdict(Action::Accept, Some(1), None)
    );
    // Wrong input port: falls through to the policy.
    assert_eq!(
        both(&set, 1, 0, &web, CtState::New),
        verdict(Action::Drop, None, None)
    );
    // Established: first rule wins even though rule 1 also matches later.
    assert_eq!(
        both(&set, 0, 0, &web, CtState::Established),
        verdict(Action::Accept, Some(0), None)
    );
    let host = tuple("198.51.100.7", "203.0.113.10", proto::TCP, 40000, 443);
    assert_eq!(
        both(&set, 0, 0, &host, CtState::New),
        verdict(Action::Accept, Some(1), None)
    );
    let host_wrong = tuple("198.51.100.8", "203.0.113.10", proto::TCP, 40000, 443);
    assert_eq!(
        both(&set, 0, 0, &host_wrong, CtState::New),
        verdict(Action::Drop, None, None)
    );
    let telnet = tuple("10.0.0.1", "10.0.0.2", proto::TCP, 40000, 23);
    assert_eq!(
        both(&set, 2, 0, &telnet, CtState::New),
        verdict(Action::Reject, Some(2), None)
    );
}

#[test]
fn log_is_non_terminal_and_reported() {
    let set = parse(EXAMPLE);
    let ping = tuple("10.0.0.1", "10.0.0.2", proto::ICMP, 7, 8 << 8);
    assert_eq!(
        both(&set, 0, 0, &ping, CtState::New),
        verdict(Action::Accept, Some(4), Some(3))
    );
    // Logged, then no terminal rule: the policy decides, log still reported.
    assert_eq!(
        both(&set, 0, 0, &ping, CtState::Related),
        verdict(Action::Accept, Some(0), None)
    );
    let set = parse("policy reject\nlog proto icmp\nlog\n");
    assert_eq!(
        both(&set, 0, 0, &ping, CtState::New),
        verdict(Action::Reject, None, Some(0))
    );
    // A log rule after the deciding rule is not reached.
    let set = parse("accept proto icmp\nlog\n");
    assert_eq!(
        both(&set, 0, 0, &ping, CtState::New),
        verdict(Action::Accept, Some(0), None)
    );
}

#[test]
fn ct_state_matching() {
    let set = parse("accept ct new,related\ndrop ct invalid\nreject ct established\n");
    let t = tuple("10.0.0.1", "10.0.0.2", proto::UDP, 1, 2);
    assert_eq!(both(&set, 0, 0, &t, CtState::New).rule, Some(0));
    assert_eq!(both(&set, 0, 0, &t, CtState::Related).rule, Some(0));
    assert_eq!(
        both(&set, 0, 0, &t, CtState::Invalid),
        verdict(Action::Drop, Some(1), None)
    );
    assert_eq!(
        both(&set, 0, 0, &t, CtState::Established),
        verdict(Action::Reject, Some(2), None)
    );
}

#[test]
fn policy_when_nothing_matches() {
    let t = tuple("10.0.0.1", "10.0.0.2", proto::UDP, 1, 2);
    for (p, a) in [
        ("accept", Action::Accept),
        ("drop", Action::Drop),
        ("reject", Action::Reject),
    ] {
        let set = parse(&format!("policy {p}\naccept proto tcp\n"));
        assert_eq!(both(&set, 0, 0, &t, CtState::New), verdict(a, None, None));
    }
    // No policy line: drop. No rules at all: policy.
    let set = parse("# nothing\n\n");
    assert!(set.is_empty());
    assert_eq!(
        both(&set, 0, 0, &t, CtState::New),
        verdict(RuleSet::DEFAULT_POLICY, None, None)
    );
}

#[test]
fn port_ranges_and_lists() {
    let set = parse(
        "accept proto tcp sport 1024-65535 dport 80, 443, 8000-8080\ndrop proto udp dport 0-10\n",
    );
    let t = |sp, dp, p| tuple("10.0.0.1", "10.0.0.2", p, sp, dp);
    for (sp, dp, p, want) in [
        (1024, 80, proto::TCP, Some(0)),
        (65535, 443, proto::TCP, Some(0)),
        (5000, 8000, proto::TCP, Some(0)),
        (5000, 8080, proto::TCP, Some(0)),
        (5000, 8081, proto::TCP, None),
        (5000, 7999, proto::TCP, None),
        (1023, 80, proto::TCP, None),
        (5000, 80, proto::UDP, None),
        (5000, 0, proto::UDP, Some(1)),
        (5000, 10, proto::UDP, Some(1)),
        (5000, 11, proto::UDP, None),
    ] {
        assert_eq!(
            both(&set, 0, 0, &t(sp, dp, p), CtState::New).rule,
            want,
            "{sp} {dp} {p}"
        );
    }
}

#[test]
fn ipv6_prefixes_and_families() {
    let set = parse(
        "accept from 2001:db8:1::/48 to 2001:db8::1\n\
         drop from 2001:db8::/32\n\
         reject to 10.0.0.0/8,2001:db8:ff::/64\n\
         accept from ::/0\n",
    );
    let v6 = |s, d| tuple(s, d, proto::UDP, 1, 2);
    assert_eq!(
        both(
            &set,
            0,
            0,
            &v6("2001:db8:1:2::5", "2001:db8::1"),
            CtState::New
        )
        .rule,
        Some(0)
    );
    assert_eq!(
        both(
            &set,
            0,
            0,
            &v6("2001:db8:1:2::5", "2001:db8::2"),
            CtState::New
        )
        .rule,
        Some(1)
    );
    assert_eq!(
        both(
            &set,
            0,
            0,
            &v6("2001:db9::5", "2001:db8:ff::9"),
            CtState::New
        )
        .rule,
        Some(2)
    );
    assert_eq!(
        both(
            &set,
            0,
            0,
            &v6("2001:db9::5", "2001:db8:fe::9"),
            CtState::New
        )
        .rule,
        Some(3)
    );
    // IPv4 packets: ::/0 is IPv6 only; the IPv4 part of rule 2 matches.
    let v4 = tuple("10.1.1.1", "10.2.2.2", proto::UDP, 1, 2);
    assert_eq!(both(&set, 0, 0, &v4, CtState::New).rule, Some(2));
    let v4 = tuple("10.1.1.1", "11.2.2.2", proto::UDP, 1, 2);
    assert_eq!(both(&set, 0, 0, &v4, CtState::New).rule, None);
    // An IPv4-mapped-looking IPv4 packet never matches an IPv6-only rule.
    let set = parse("accept from ::/0\n");
    assert_eq!(
        both(
            &set,
            0,
            0,
            &tuple("0.0.0.0", "0.0.0.0", 0, 0, 0),
            CtState::New
        )
        .rule,
        None
    );
}

#[test]
fn ipv4_prefix_edges() {
    let set = parse(
        "accept from 10.0.0.0/8 to 0.0.0.0/0\naccept from 255.255.255.255\naccept to 0.0.0.0\n",
    );
    let t = |s, d| tuple(s, d, proto::TCP, 1, 2);
    assert_eq!(
        both(&set, 0, 0, &t("10.255.255.255", "1.2.3.4"), CtState::New).rule,
        Some(0)
    );
    assert_eq!(
        both(&set, 0, 0, &t("11.0.0.0", "1.2.3.4"), CtState::New).rule,
        None
    );
    assert_eq!(
        both(&set, 0, 0, &t("9.255.255.255", "1.2.3.4"), CtState::New).rule,
        None
    );
    assert_eq!(
        both(&set, 0, 0, &t("255.255.255.255", "1.2.3.4"), CtState::New).rule,
        Some(1)
    );
    assert_eq!(
        both(&set, 0, 0, &t("1.1.1.1", "0.0.0.0"), CtState::New).rule,
        Some(2)
    );
    // Host bits beyond the length are cleared.
    let set = parse("accept from 10.1.2.3/8\n");
    assert_eq!(
        set.rules().next().unwrap().rule.src,
        vec![Prefix::v4(0x0a00_0000, 8)]
    );
}

#[test]
fn icmp_type_and_code() {
    let set = parse(
        "accept proto icmp icmp-type 3/4\n\
         drop proto icmp icmp-type 3\n\
         accept proto icmpv6 icmp-type 128\n\
         reject proto icmp\n",
    );
    let icmp = |ty: u16, code: u16| tuple("10.0.0.1", "10.0.0.2", proto::ICMP, 1, ty << 8 | code);
    assert_eq!(
        both(&set, 0, 0, &icmp(3, 4), CtState::Related).rule,
        Some(0)
    );
    assert_eq!(
        both(&set, 0, 0, &icmp(3, 1), CtState::Related).rule,
        Some(1)
    );
    assert_eq!(
        both(&set, 0, 0, &icmp(3, 255), CtState::Related).rule,
        Some(1)
    );
    assert_eq!(both(&set, 0, 0, &icmp(8, 0), CtState::New).rule, Some(3));
    let v6 = |ty: u16| tuple("2001:db8::1", "2001:db8::2", proto::ICMPV6, 1, ty << 8);
    assert_eq!(both(&set, 0, 0, &v6(128), CtState::New).rule, Some(2));
    assert_eq!(both(&set, 0, 0, &v6(129), CtState::New).rule, None);
}

#[test]
fn zone_in_port_and_proto_numbers() {
    let set = parse("accept zone 3 proto udp sport 53\naccept in dmz proto 47\ndrop proto gre\n");
    let dns = tuple("10.0.0.1", "10.0.0.2", proto::UDP, 53, 5555);
    assert_eq!(both(&set, 0, 3, &dns, CtState::New).rule, Some(0));
    assert_eq!(both(&set, 0, 2, &dns, CtState::New).rule, None);
    let gre = tuple("10.0.0.1", "10.0.0.2", proto::GRE, 0, 0);
    assert_eq!(both(&set, 2, 0, &gre, CtState::New).rule, Some(1));
    assert_eq!(
        both(&set, 1, 0, &gre, CtState::New),
        verdict(Action::Drop, Some(2), None)
    );
}

#[test]
fn parse_errors_name_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "\n\n\n\n\n\naccept proto tpc\n",
            "rules.conf:7: unknown protocol \"tpc\"",
        ),
        (
            "# c\n\naccept dport 80\n",
            "rules.conf:3: dport needs proto tcp, udp, sctp or udplite",
        ),
        (
            "\n\naccept proto icmp sport 80\n",
            "rules.conf:3: sport needs proto tcp, udp, sctp or udplite",
        ),
        (
            "\n\n\naccept from 10.0.0.0/33\n",
            "rules.conf:4: invalid prefix \"10.0.0.0/33\"",
        ),
        (
            "accept to 2001:db8::/129\n",
            "rules.conf:1: invalid prefix \"2001:db8::/129\"",
        ),
        (
            "accept from 10.0.0.300\n",
            "rules.conf:1: invalid prefix \"10.0.0.300\"",
        ),
        (
            "\n\n\n\n\n\n\n\naccept in eth9\n",
            "rules.conf:9: unknown interface \"eth9\"",
        ),
        (
            "accept\naccept from 10.0.0.0/8 to 2001:db8::/32\n",
            "rules.conf:2: from and to: address families can never match",
        ),
        (
            "accept proto icmpv6 to 10.0.0.1\n",
            "rules.conf:1: proto icmpv6 with IPv4 addresses: address families can never match",
        ),
        (
            "accept proto tcp dport 80 dport 81\n",
            "rules.conf:1: duplicate keyword \"dport\"",
        ),
        (
            "accept proto tcp proto udp\n",
            "rules.conf:1: duplicate keyword \"proto\"",
        ),
        (
            "\naccept icmp-type 8\n",
            "rules.conf:2: icmp-type needs proto icmp or icmpv6",
        ),
        (
            "accept proto tcp icmp-type 8\n",
            "rules.conf:1: icmp-type needs proto icmp or icmpv6",
        ),
        (
            "policy drop\naccept\npolicy accept\n",
            "rules.conf:3: second policy line (first on line 1)",
        ),
        (
            "policy maybe\n",
            "rules.conf:1: policy must be accept, drop or reject",
        ),
        (
            "policy\n",
            "rules.conf:1: policy must be accept, drop or reject",
        ),
        (
            "allow proto tcp\n",
            "rules.conf:1: unknown action \"allow\" (expected accept, drop, reject, log or policy)",
        ),
        ("accept port 80\n", "rules.conf:1: unknown keyword \"port\""),
        ("accept proto\n", "rules.conf:1: proto needs a value"),
        (
            "accept proto tcp dport 90-80\n",
            "rules.conf:1: invalid port \"90-80\"",
        ),
        (
            "accept proto tcp dport 65536\n",
            "rules.conf:1: invalid port \"65536\"",
        ),
        (
            "accept proto udp sport 1,,2\n",
            "rules.conf:1: invalid port \"\"",
        ),
        (
            "accept proto icmp icmp-type 300\n",
            "rules.conf:1: invalid icmp-type \"300\"",
        ),
        (
            "accept ct new,bogus\n",
            "rules.conf:1: unknown ct state \"bogus\"",
        ),
        ("accept zone -1\n", "rules.conf:1: invalid zone \"-1\""),
        (
            "accept comment \"x\" proto tcp\n",
            "rules.conf:1: unexpected \"proto\" after comment",
        ),
        (
            "accept comment x\n",
            "rules.conf:1: comment needs a quoted string",
        ),
        ("accept comment \"x\n", "rules.conf:1: unterminated quote"),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "for {text:?}");
    }
}

#[test]
fn first_line_offsets_and_per_string_lines() {
    let e = parse_rules("accept\n\naccept proto x\n", "ftfw.toml", 40, &ports).unwrap_err();
    assert_eq!(e.to_string(), "ftfw.toml:42: unknown protocol \"x\"");
    assert_eq!((e.file.as_str(), e.line), ("ftfw.toml", 42));
    assert_eq!(e.reason, Reason::UnknownProtocol("x".into()));
    let lines = [
        (10, "policy accept"),
        (11, "drop proto tcp dport 22"),
        (13, "accept in lan"),
    ];
    let e = parse_rule_lines(lines, "ftfw.toml", &ports).unwrap_err();
    assert_eq!(e.to_string(), "ftfw.toml:13: unknown interface \"lan\"");
    let set = parse_rule_lines(lines[..2].iter().copied(), "ftfw.toml", &ports).unwrap();
    assert_eq!(set.policy(), Action::Accept);
    assert_eq!(set.rules().map(|r| r.line).collect::<Vec<_>>(), vec![11]);
    assert_eq!(set.source(), "ftfw.toml");
}

#[test]
fn bad_file_is_rejected_whole() {
    let good = parse(EXAMPLE);
    let mut bad = EXAMPLE.to_owned();
    bad.push_str("accept proto tcp dport 80 from 10.0.0.0/40\n");
    let r = parse_rules(&bad, "rules.conf", 1, &ports);
    assert_eq!(
        r.unwrap_err().to_string(),
        "rules.conf:12: invalid prefix \"10.0.0.0/40\""
    );
    // The caller's pattern: keep the old set on error.
    let mut running = good.clone();
    if let Ok(new) = parse_rules(&bad, "rules.conf", 1, &ports) {
        running = new;
    }
    assert_eq!(running, good);
}

#[test]
fn rules_reproduce_source_lines() {
    let set = parse(EXAMPLE);
    let shown: Vec<(u32, usize, &str)> = set.rules().map(|r| (r.index, r.line, r.text)).collect();
    assert_eq!(
        shown,
        vec![
            (0, 3, "accept ct established,related"),
            (
                1,
                4,
                "accept in outside proto tcp from 192.0.2.0/24,198.51.100.7 to 203.0.113.10 dport 80,443,8000-8080 ct new"
            ),
            (2, 5, "reject proto tcp dport 23"),
            (3, 6, "log proto icmp icmp-type 8"),
            (4, 7, "accept proto icmp icmp-type 8 ct new"),
            (5, 8, "accept zone 3 proto udp sport 53"),
            (6, 10, "drop ct invalid"),
            (7, 11, "accept proto icmpv6 comment \"ND and friends # not a comment\""),
        ]
    );
    let first = set.rules().nth(2).unwrap().to_string();
    assert_eq!(first, "    2 line 5: reject proto tcp dport 23");
    let comment = &set.rules().nth(7).unwrap().rule.comment;
    assert_eq!(comment.as_deref(), Some("ND and friends # not a comment"));
    // The canonical Display form parses back to the same rules.
    let canon: String = set.rules().map(|r| format!("{}\n", r.rule)).collect();
    let again = parse(&canon);
    let a: Vec<&Rule> = set.rules().map(|r| r.rule).collect();
    let b: Vec<&Rule> = again.rules().map(|r| r.rule).collect();
    assert_eq!(a, b);
}

#[test]
fn synthetic_rules_parse_and_classifiers_agree() {
    let set = synthetic_rules(2000, 7);
    assert_eq!(set.len(), 2000);
    let text = synthetic_rule_text(2000, 7);
    assert_eq!(
        parse_rules(&text, "synthetic", 1, &synthetic_port_names).unwrap(),
        set
    );
    let (lin, comp) = (set.linear(), set.compile());
    let inputs = synthetic_inputs(&set, 10_000, 11);
    let mut policy = 0;
    let mut hit = std::collections::HashSet::new();
    let mut logged = 0;
    for i in &inputs {
        let v = lin.classify(&i.as_input());
        assert_eq!(comp.classify(&i.as_input()), v, "{:?}", i);
        match v.rule {
            None => policy += 1,
            Some(r) => {
                hit.insert(r);
            }
        }
        logged += usize::from(v.log.is_some());
    }
    // A realistic mix: the policy, many distinct rules, some logging.
    assert!(policy > 100 && policy < 9000, "policy {policy}");
    assert!(hit.len() > 500, "distinct rules hit {}", hit.len());
    assert!(logged > 10, "logged {logged}");
}

// ---- property test: compiled == linear ----

fn arb_prefix(v6: bool) -> impl Strategy<Value = Prefix> {
    // Few distinct networks so that prefixes nest and overlap often.
    let nets4 = prop::sample::select(vec![
        0x0a00_0000u32,
        0x0a01_0000,
        0x0a01_0100,
        0xc0a8_0000,
        0xffff_fff0,
        0,
    ]);
    let nets6 = prop::sample::select(vec![
        0x2001_0db8u128 << 96,
        (0x2001_0db8u128 << 96) | (1 << 80),
        u128::MAX,
        0,
    ]);
    if v6 {
        (nets6, 0u8..=128, any::<u16>())
            .prop_map(|(n, l, x)| Prefix::v6(n ^ u128::from(x), l))
            .boxed()
    } else {
        (nets4, 0u8..=32, any::<u8>())
            .prop_map(|(n, l, x)| Prefix::v4(n ^ u32::from(x), l))
            .boxed()
    }
}

fn arb_ports() -> impl Strategy<Value = Vec<PortRange>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![0u16, 22, 53, 80, 443, 1024, 8080, 65535]),
            0u16..3000,
        )
            .prop_map(|(lo, w)| PortRange {
                lo,
                hi: lo.saturating_add(w % 4 * w / 3),
            }),
        0..3,
    )
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    let verb = prop::sample::select(vec![
        Verb::Act(Action::Accept),
        Verb::Act(Action::Drop),
        Verb::Act(Action::Reject),
        Verb::Log,
    ]);
    let proto = prop::option::weighted(
        0.7,
        prop::sample::select(vec![
            proto::TCP,
            proto::UDP,
            proto::ICMP,
            proto::ICMPV6,
            proto::GRE,
        ]),
    );
    (
        verb,
        proto,
        prop::option::weighted(0.2, 0u16..3),
        prop::option::weighted(0.1, 0u16..3),
        any::<bool>(),
        prop::collection::vec(arb_prefix(false), 0..3),
        prop::collection::vec(arb_prefix(true), 0..2),
        prop::collection::vec(arb_prefix(false), 0..3),
        arb_ports(),
        arb_ports(),
        prop::option::weighted(0.3, (0u8..16, prop::option::of(0u8..4))),
        prop::option::weighted(0.4, 1u8..16),
    )
        .prop_map(
            |(verb, proto, in_port, zone, six, s4, s6, d4, sp, dp, icmp, ct)| {
                let mut r = Rule::new(verb);
                r.proto = proto;
                r.in_port = in_port.map(|p| (p, format!("p{p}")));
                r.zone = zone;
                r.src = if six { s6 } else { s4.clone() };
                r.dst = if six { Vec::new() } else { d4 };
                if matches!(proto, Some(proto::TCP | proto::UDP)) {
                    r.sport = sp;
                    r.dport = dp;
                }
                if matches!(proto, Some(proto::ICMP | proto::ICMPV6)) {
                    r.icmp = icmp.map(|(ty, code)| IcmpMatch { ty, code });
                }
                r.ct = ct.map(CtStateSet);
                r
            },
        )
}

fn arb_input() -> impl Strategy<Value = (u16, u16, Tuple, CtState)> {
    let addr4 = (
        prop::sample::select(vec![
            0x0a00_0000u32,
            0x0a01_0000,
            0x0a01_0100,
            0xc0a8_0000,
            0xffff_fff0,
            0,
        ]),
        any::<u16>(),
    )
        .prop_map(|(n, x)| {
            let a = n ^ u32::from(x % 512);
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.to_be_bytes());
            b
        });
    let addr6 = (
        prop::sample::select(vec![
            0x2001_0db8u128 << 96,
            (0x2001_0db8u128 << 96) | (1 << 80),
            u128::MAX,
            0,
        ]),
        any::<u32>(),
    )
        .prop_map(|(n, x)| (n ^ u128::from(x % 70000)).to_be_bytes());
    let port = prop_oneof![
        prop::sample::select(vec![0u16, 22, 53, 80, 443, 1024, 8080, 65535]),
        any::<u16>(),
        (0u16..16, 0u16..5).prop_map(|(t, c)| t << 8 | c)
    ];
    (
        0u16..4,
        0u16..4,
        any::<bool>(),
        (addr4.clone(), addr4),
        (addr6.clone(), addr6),
        prop::sample::select(vec![
            proto::TCP,
            proto::UDP,
            proto::ICMP,
            proto::ICMPV6,
            proto::GRE,
            0,
        ]),
        port.clone(),
        port,
        prop::sample::select(vec![
            CtState::New,
            CtState::Established,
            CtState::Related,
            CtState::Invalid,
        ]),
    )
        .prop_map(|(in_port, zone, v6, a4, a6, proto, sp, dp, ct)| {
            let (src, dst) = if v6 { a6 } else { a4 };
            (
                in_port,
                zone,
                Tuple {
                    src,
                    dst,
                    src_port: sp,
                    dst_port: dp,
                    proto,
                    v6,
                },
                ct,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn compiled_matches_linear(
        rules in prop::collection::vec(arb_rule(), 0..200),
        policy in prop::sample::select(vec![Action::Accept, Action::Drop, Action::Reject]),
        inputs in prop::collection::vec(arb_input(), 1..40),
    ) {
        let set = RuleSet::from_rules(rules, policy);
        let (lin, comp) = (set.linear(), set.compile());
        for (in_port, zone, t, ct) in &inputs {
            let input = AclInput { in_port: *in_port, zone: *zone, tuple: t, ct: *ct };
            prop_assert_eq!(comp.classify(&input), lin.classify(&input), "input {} ct {:?}", t, ct);
        }
    }
}

#[test]
fn sync_levels_on_accept_rules_parse_print_and_are_checked() {
    let set = parse("accept in outside proto tcp dport 80 ct new sync established\n");
    let r = set.rules().next().unwrap();
    assert_eq!(r.rule.sync, Some(crate::flow::SyncLevel::Established));
    assert_eq!(
        r.rule.to_string(),
        "accept in outside proto tcp dport 80 ct new sync established"
    );
    assert_eq!(
        parse(&format!("{}\n", r.rule)).rules().next().unwrap().rule,
        r.rule
    );
    assert!(err("accept proto udp sync sometimes\n").contains("unknown sync level \"sometimes\""));
    assert!(err("drop proto udp sync none\n").contains("sync applies to accept rules only"));
    assert!(err("accept sync none sync full\n").contains("sync"));
}

#[test]
fn helpers_on_accept_rules_parse_print_and_are_checked() {
    let set = parse("accept in outside proto tcp dport 21 helper ftp\n");
    let r = set.rules().next().unwrap();
    assert_eq!(r.rule.helper, Some(crate::helper::Helper::Ftp));
    assert_eq!(
        r.rule.to_string(),
        "accept in outside proto tcp dport 21 helper ftp"
    );
    assert_eq!(
        parse(&format!("{}\n", r.rule)).rules().next().unwrap().rule,
        r.rule
    );
    assert!(err("accept proto tcp helper sip\n").contains("unknown helper \"sip\""));
    assert!(
        err("drop proto tcp dport 21 helper ftp\n").contains("helper applies to accept rules only")
    );
    assert!(err("accept proto udp dport 21 helper ftp\n").contains("helper ftp needs proto tcp"));
    assert!(err("accept dport 69 proto udp helper tftp helper tftp\n").contains("helper"));
    assert!(err("accept proto tcp helper tftp\n").contains("helper tftp needs proto udp"));
}
