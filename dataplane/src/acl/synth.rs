//! Deterministic synthetic rule sets and packets for tests and benchmarks.
//!
//! [`synthetic_rules`] writes a realistic rule file (a conntrack shortcut
//! first, then rules over varied /16../32 IPv4 and some IPv6 prefixes,
//! well-known ports, lists and ranges, a few protocols, ct states, input
//! ports and zones) and parses it, so the rules carry source text too.
//! [`synthetic_inputs`] makes packets that mostly fall inside some rule's
//! fields (so they hit a mix of early, late and shadowed rules) and partly
//! at random (so some reach the policy).

// Truncating casts are how this generator slices random words.
#![allow(clippy::cast_possible_truncation)]

use std::fmt::Write as _;

use crate::flow::{addr_bytes, proto, CtState, Tuple};
use crate::rng::SplitMix64;

use super::rule::RuleSet;
use super::{parse_rules, AclInput};

/// [`SplitMix64`] with the draws the synthesiser needs.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (`n > 0`; 0 when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        let i = usize::try_from(self.below(xs.len() as u64)).unwrap_or(0);
        xs[i.min(xs.len() - 1)]
    }
    fn u16(&mut self) -> u16 {
        (self.next() >> 48) as u16
    }
}

/// Port names the synthetic rules use: `p0`..`p7` resolve to 0..7.
pub fn synthetic_port_names(name: &str) -> Option<u16> {
    name.strip_prefix('p')?.parse().ok().filter(|i| *i < 8)
}

const WELL_KNOWN: [u16; 20] = [
    22, 25, 53, 80, 110, 123, 143, 161, 443, 465, 587, 993, 995, 1194, 3306, 3389, 5432, 6379,
    8080, 8443,
];

fn v4_prefix(r: &mut Rng) -> String {
    let len = r.pick(&[16u8, 20, 22, 24, 24, 24, 26, 28, 30, 32, 32, 32]);
    let addr: u32 = match r.below(4) {
        0 => 0x0a00_0000 | ((r.below(64) as u32) << 16) | (r.next() as u32 & 0xffff),
        1 => 0xac10_0000 | ((r.below(16) as u32) << 16) | (r.next() as u32 & 0xffff),
        2 => 0xc0a8_0000 | (r.next() as u32 & 0xffff),
        _ => 0xcb00_0000 | (r.next() as u32 & 0x00ff_ffff),
    };
    let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    let net = std::net::Ipv4Addr::from(addr & !host);
    if len == 32 {
        net.to_string()
    } else {
        format!("{net}/{len}")
    }
}

fn v6_prefix(r: &mut Rng) -> String {
    let len = r.pick(&[32u8, 48, 56, 64, 64, 128]);
    let addr: u128 =
        (0x2001_0db8u128 << 96) | (u128::from(r.below(256)) << 80) | (u128::from(r.next()) >> 8);
    let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    let net = std::net::Ipv6Addr::from(addr & !host);
    if len == 128 {
        net.to_string()
    } else {
        format!("{net}/{len}")
    }
}

fn ports(r: &mut Rng) -> String {
    match r.below(10) {
        0..=5 => r.pick(&WELL_KNOWN).to_string(),
        6 | 7 => {
            let k = 2 + r.below(3);
            (0..k)
                .map(|_| r.pick(&WELL_KNOWN).to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => {
            let lo = 1024 + r.below(60000);
            let hi = (lo + r.below(1000)).min(65535);
            format!("{lo}-{hi}")
        }
    }
}

/// The text of a synthetic rule file with `n` rules (policy drop).
pub fn synthetic_rule_text(n: usize, seed: u64) -> String {
    let mut r = Rng(SplitMix64::new(seed));
    let mut out = String::from("# synthetic rules\npolicy drop\n");
    if n > 0 {
        out.push_str("accept ct established,related\n");
    }
    for _ in 1..n {
        let verb = match r.below(100) {
            0..=54 => "accept",
            55..=79 => "drop",
            80..=91 => "reject",
            _ => "log",
        };
        out.push_str(verb);
        let v6 = r.pct(10);
        if r.pct(15) {
            let _ = write!(out, " in p{}", r.below(4));
        }
        if r.pct(5) {
            let _ = write!(out, " zone {}", r.below(4));
        }
        let p = match r.below(100) {
            0..=49 => Some("tcp"),
            50..=79 => Some("udp"),
            80..=87 => Some(if v6 { "icmpv6" } else { "icmp" }),
            88..=92 => Some(r.pick(&["gre", "sctp", "47"])),
            _ => None,
        };
        if let Some(p) = p {
            let _ = write!(out, " proto {p}");
        }
        let prefixes = |r: &mut Rng, k: u64| {
            (0..1 + r.below(k))
                .map(|_| if v6 { v6_prefix(r) } else { v4_prefix(r) })
                .collect::<Vec<_>>()
                .join(",")
        };
        if r.pct(40) {
            let s = prefixes(&mut r, 3);
            let _ = write!(out, " from {s}");
        }
        // Every rule names a destination or a service port, as real rule
        // sets do; catch-alls would hide everything after them.
        let ported = matches!(p, Some("tcp" | "udp" | "sctp"));
        let dport = ported && r.pct(80);
        if !dport || r.pct(80) {
            let s = prefixes(&mut r, 2);
            let _ = write!(out, " to {s}");
        }
        match p {
            Some("tcp" | "udp" | "sctp") => {
                if r.pct(10) {
                    let s = if r.pct(50) {
                        "1024-65535".to_string()
                    } else {
                        ports(&mut r)
                    };
                    let _ = write!(out, " sport {s}");
                }
                if dport {
                    let s = ports(&mut r);
                    let _ = write!(out, " dport {s}");
                }
            }
            Some("icmp" | "icmpv6") if r.pct(70) => {
                let t = r.pick(&["8", "0", "3", "3/4", "11", "128", "129"]);
                let _ = write!(out, " icmp-type {t}");
            }
            _ => {}
        }
        match r.below(100) {
            0..=29 => out.push_str(" ct new"),
            30..=34 => out.push_str(" ct invalid"),
            35..=39 => out.push_str(" ct new,established"),
            _ => {}
        }
        if r.pct(5) {
            out.push_str(" comment \"synthetic\"");
        }
        out.push('\n');
    }
    out
}

/// A realistic, varied rule set of `n` rules, the same for the same seed.
pub fn synthetic_rules(n: usize, seed: u64) -> RuleSet {
    let text = synthetic_rule_text(n, seed);
    match parse_rules(&text, "synthetic", 1, &synthetic_port_names) {
        Ok(set) => set,
        // The generator only writes valid rules; an empty set keeps this
        // function total should that ever break (tests catch it).
        Err(_) => RuleSet::from_rules(Vec::new(), RuleSet::DEFAULT_POLICY),
    }
}

/// One owned classification input (see [`SyntheticInput::as_input`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticInput {
    /// Input port index.
    pub in_port: u16,
    /// Conntrack zone.
    pub zone: u16,
    /// Packet tuple.
    pub tuple: Tuple,
    /// Conntrack state.
    pub ct: CtState,
}

impl SyntheticInput {
    /// The borrowed form the classifiers take.
    pub fn as_input(&self) -> AclInput<'_> {
        AclInput {
            in_port: self.in_port,
            zone: self.zone,
            tuple: &self.tuple,
            ct: self.ct,
        }
    }
}

fn in_range_u32(r: &mut Rng, (lo, hi): (u32, u32)) -> u32 {
    lo.wrapping_add((r.next() as u32) & (hi - lo))
}

fn in_range_u128(r: &mut Rng, (lo, hi): (u128, u128)) -> u128 {
    let rnd = (u128::from(r.next()) << 64) | u128::from(r.next());
    lo.wrapping_add(rnd & (hi - lo))
}

/// `n` packets for `set`: about three quarters are made to fall inside a
/// randomly chosen rule's fields, the rest are random in the same address
/// pools (many of those reach the policy). Deterministic for a seed.
pub fn synthetic_inputs(set: &RuleSet, n: usize, seed: u64) -> Vec<SyntheticInput> {
    let mut r = Rng(SplitMix64::new(seed ^ 0x5eed_5eed_5eed_5eed));
    let rules: Vec<_> = set.rules().map(|v| v.rule).collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let v6 = r.pct(10);
        let mut src: u128 = if v6 {
            0x2001_0db8u128 << 96 | u128::from(r.next())
        } else {
            u128::from(r.next() as u32 & 0x0a3f_ffff)
        };
        let mut dst: u128 = if v6 {
            0x2001_0db8u128 << 96 | u128::from(r.next())
        } else {
            u128::from(r.next() as u32 & 0xcb3f_ffff)
        };
        let mut inp = SyntheticInput {
            in_port: r.below(8) as u16,
            zone: if r.pct(80) { 0 } else { r.below(4) as u16 },
            tuple: Tuple::default(),
            ct: match r.below(100) {
                0..=79 => CtState::New,
                80..=89 => CtState::Established,
                90..=94 => CtState::Related,
                _ => CtState::Invalid,
            },
        };
        let mut p = r.pick(&[proto::TCP, proto::TCP, proto::UDP, proto::ICMP]);
        let mut sport = r.u16();
        let mut dport = if r.pct(50) {
            r.pick(&WELL_KNOWN)
        } else {
            r.u16()
        };
        let mut v6 = v6;
        if !rules.is_empty() && r.pct(75) {
            let rule = rules[usize::try_from(r.below(rules.len() as u64))
                .unwrap_or(0)
                .min(rules.len() - 1)];
            if let Some((i, _)) = &rule.in_port {
                inp.in_port = *i;
            }
            if let Some(z) = rule.zone {
                inp.zone = z;
            }
            if let Some(s) = rule.ct {
                let states = [
                    CtState::New,
                    CtState::Established,
                    CtState::Related,
                    CtState::Invalid,
                ];
                let ok: Vec<CtState> = states.into_iter().filter(|c| s.contains(*c)).collect();
                if !ok.is_empty() {
                    inp.ct = r.pick(&ok);
                }
            }
            let pfx = rule.src.first().or(rule.dst.first());
            if let Some(px) = pfx {
                v6 = px.is_v6();
            }
            let pick_addr = |r: &mut Rng, list: &[super::Prefix], dflt: u128| -> u128 {
                let fam: Vec<_> = list.iter().filter(|x| x.is_v6() == v6).collect();
                if fam.is_empty() {
                    return if v6 {
                        dflt | 0x2001_0db8u128 << 96
                    } else {
                        dflt & 0xffff_ffff
                    };
                }
                let px = fam[usize::try_from(r.below(fam.len() as u64))
                    .unwrap_or(0)
                    .min(fam.len() - 1)];
                match (px.range_v4(), px.range_v6()) {
                    (Some(rg), _) => u128::from(in_range_u32(r, rg)),
                    (_, Some(rg)) => in_range_u128(r, rg),
                    _ => dflt,
                }
            };
            src = pick_addr(&mut r, &rule.src, src);
            dst = pick_addr(&mut r, &rule.dst, dst);
            if let Some(pr) = rule.proto {
                p = pr;
            }
            if let Some(pr) = rule.sport.first() {
                sport = pr
                    .lo
                    .wrapping_add(r.u16() % (pr.hi - pr.lo).saturating_add(1).max(1));
            }
            if let Some(pr) = rule.dport.first() {
                dport = pr
                    .lo
                    .wrapping_add(r.u16() % (pr.hi - pr.lo).saturating_add(1).max(1));
            }
            if let Some(i) = rule.icmp {
                let rg = i.dst_port_range();
                dport = rg.lo + (r.u16() % (rg.hi - rg.lo + 1));
            }
        }
        if p == proto::ICMP && v6 {
            p = proto::ICMPV6;
        }
        let (s, d) = if v6 {
            (
                std::net::IpAddr::V6(src.into()),
                std::net::IpAddr::V6(dst.into()),
            )
        } else {
            (
                std::net::IpAddr::V4((src as u32).into()),
                std::net::IpAddr::V4((dst as u32).into()),
            )
        };
        inp.tuple = Tuple {
            src: addr_bytes(s),
            dst: addr_bytes(d),
            src_port: sport,
            dst_port: dport,
            proto: p,
            v6,
        };
        out.push(inp);
    }
    out
}
