//! Network address translation: source NAT (`nat src`), destination NAT
//! (`nat dst`) and masquerade of IPv4 flows and of IPv6 flows (NAT66), decided on a flow's first packet and applied
//! to every packet of both directions.
//!
//! - The rules ([`NatRule`]) come from the rule file (`nat ...` lines, parsed
//!   with the filter rules; see [`crate::acl::parse_rules`]). The first
//!   matching rule translates a new flow; filter rules see packets as they
//!   arrive (before translation, as nftables' prerouting DNAT is not: see
//!   ARCHITECTURE.md).
//! - [`alloc`] chooses the translation: addresses from the rule's range,
//!   and the source port (or ICMP identifier) such that the reply tuple is
//!   unique in the shard and steers to the same worker (and, with cluster
//!   buckets, the same bucket) as the original.
//! - The shard stores the translated reply tuple ([`crate::flow::FlowExtras`]
//!   `reply`) and indexes it, so that replies find the flow.
//! - [`rewrite`] rewrites frames with incremental checksum updates (RFC
//!   1624), ICMP errors' embedded packets included.

pub mod alloc;
pub mod rewrite;
pub mod seqadj;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::net::IpAddr;

use crate::acl::{AclInput, PortRange, Rule};
use crate::flow::{has_ports, CtState, Tuple};

/// Which side of a flow a rule translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Source NAT: the original direction's source address (and port).
    Src,
    /// Destination NAT: the original direction's destination address (and port).
    Dst,
    /// Source NAT to the address the output port sends from (routed mode).
    Masquerade,
}

impl NatKind {
    /// The word in rule files.
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Src => "src",
            NatKind::Dst => "dst",
            NatKind::Masquerade => "masquerade",
        }
    }
}

/// One `nat` line: match conditions (those of a filter rule) and where to
/// translate to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatRule {
    /// Source or destination NAT.
    pub kind: NatKind,
    /// What the rule matches (`in`, `zone`, `proto`, `from`/`saddr`,
    /// `daddr`, `sport`, `dport`, `icmp-type`); its verb is unused.
    pub matches: Rule,
    /// Output port the packet leaves through (`out NAME`), with its name.
    pub out_port: Option<(u16, String)>,
    /// First address of the translation range (IPv4 or IPv6; for
    /// `masquerade`, unused and unspecified).
    pub addr_lo: IpAddr,
    /// Last address of the translation range (`addr_lo` for one address;
    /// the same family).
    pub addr_hi: IpAddr,
    /// Port range: source ports for `src` (default: 1024-65535, keeping
    /// the original port when it fits), destination ports for `dst`
    /// (default: unchanged).
    pub ports: Option<PortRange>,
}

impl NatRule {
    /// Whether this rule translates the first packet of a flow with tuple
    /// `t` that entered on `in_port` in `zone` and leaves through
    /// `out_port`: a `src` or `dst` rule translates flows of its target's
    /// family; a `masquerade` rule, of either (its address is the output
    /// port's of the flow's family).
    pub fn matches(&self, in_port: u16, out_port: Option<u16>, zone: u16, t: &Tuple) -> bool {
        (self.kind == NatKind::Masquerade || self.addr_lo.is_ipv6() == t.v6)
            && self
                .out_port
                .as_ref()
                .is_none_or(|(p, _)| Some(*p) == out_port)
            && self.matches.matches(&AclInput {
                in_port,
                zone,
                tuple: t,
                ct: CtState::New,
            })
    }

    /// Where a `src` or `dst` rule translates to.
    pub fn target(&self) -> Target {
        Target {
            kind: self.kind,
            addr_lo: self.addr_lo,
            addr_hi: self.addr_hi,
            ports: self.ports,
        }
    }

    /// Where a rule translates to with the source address `a` (what a
    /// `masquerade` rule becomes once the output port's address is known).
    pub fn target_at(&self, a: IpAddr) -> Target {
        Target {
            kind: NatKind::Src,
            addr_lo: a,
            addr_hi: a,
            ports: self.ports,
        }
    }

    /// Number of addresses in the range (at most `u32::MAX`).
    pub fn addr_count(&self) -> u32 {
        self.target().addr_count()
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub(crate) fn addr_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for NatRule {
    /// The canonical rule-file form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nat {}", self.kind.name())?;
        // The filter rule's form of the matches, `to` (its destination
        // match) written `daddr` since `to` is the target here.
        let m = self.matches.to_string();
        let m = m.strip_prefix("accept").unwrap_or(&m);
        let (m, comment) = match m.find(" comment \"") {
            Some(i) => (&m[..i], &m[i..]),
            None => (m, ""),
        };
        f.write_str(&m.replace(" to ", " daddr "))?;
        if let Some((_, n)) = &self.out_port {
            write!(f, " out {n}")?;
        }
        if self.kind != NatKind::Masquerade {
            write!(f, " to {}", self.addr_lo)?;
            if self.addr_hi != self.addr_lo {
                write!(f, "-{}", self.addr_hi)?;
            }
            // (The ports, if any, follow as `ports LO-HI`: no brackets
            // needed around an IPv6 range.)
        }
        if let Some(p) = self.ports {
            write!(f, " ports {p}")?;
        }
        f.write_str(comment)
    }
}

/// What a translation is made of, once any masquerade address is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// [`NatKind::Src`] or [`NatKind::Dst`] (a masquerade is a `Src`).
    pub kind: NatKind,
    /// First address of the range.
    pub addr_lo: IpAddr,
    /// Last address of the range (the same family).
    pub addr_hi: IpAddr,
    /// Port range (see [`NatRule::ports`]).
    pub ports: Option<PortRange>,
}

impl Target {
    /// Number of addresses in the range (at most `u32::MAX`: a range as
    /// large as an IPv6 prefix is used from its start).
    pub fn addr_count(&self) -> u32 {
        let span = addr_value(self.addr_hi).saturating_sub(addr_value(self.addr_lo));
        u32::try_from(span)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
    }

    /// The `i`-th address of the range, written into a tuple's address
    /// field (IPv4 in its first 4 bytes).
    pub(crate) fn write_addr(&self, i: u32, out: &mut [u8; 16]) {
        let v = addr_value(self.addr_lo).wrapping_add(u128::from(i));
        match self.addr_lo {
            IpAddr::V4(_) => {
                out[..4].copy_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes());
            }
            IpAddr::V6(_) => *out = v.to_be_bytes(),
        }
    }
}

/// The NAT rules of a rule set, in file order, with their lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatRules {
    rules: Vec<(NatRule, usize)>,
}

impl NatRules {
    /// Rules in order, with the line each was written on.
    pub fn new(rules: Vec<(NatRule, usize)>) -> NatRules {
        NatRules { rules }
    }

    /// Whether there are none (the pipeline then skips NAT entirely).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules with their lines.
    pub fn iter(&self) -> impl Iterator<Item = (&NatRule, usize)> {
        self.rules.iter().map(|(r, l)| (r, *l))
    }

    /// The first rule that translates this flow's first packet.
    pub fn first_match(
        &self,
        in_port: u16,
        out_port: Option<u16>,
        zone: u16,
        t: &Tuple,
    ) -> Option<&NatRule> {
        self.rules
            .iter()
            .map(|(r, _)| r)
            .find(|r| r.matches(in_port, out_port, zone, t))
    }
}

/// The tuple of an original-direction packet after translation, for a flow
/// with original tuple `orig` and (translated) reply tuple `reply`: what
/// the far side sees. For ICMP queries, the identifier is the reply's and
/// the type the original's.
pub fn translated_original(orig: &Tuple, reply: &Tuple) -> Tuple {
    let mut t = Tuple {
        src: reply.dst,
        dst: reply.src,
        proto: orig.proto,
        v6: orig.v6,
        ..Tuple::default()
    };
    if orig.is_icmp() {
        t.src_port = reply.src_port;
        t.dst_port = orig.dst_port;
    } else if has_ports(orig.proto) {
        t.src_port = reply.dst_port;
        t.dst_port = reply.src_port;
    }
    t
}

/// The tuple of a reply-direction packet after translation (what the
/// original side sees): the inverse of the original tuple, with the reply's
/// ICMP type.
pub fn translated_reply(orig: &Tuple, reply: &Tuple) -> Tuple {
    let mut t = Tuple {
        src: orig.dst,
        dst: orig.src,
        proto: orig.proto,
        v6: orig.v6,
        ..Tuple::default()
    };
    if orig.is_icmp() {
        t.src_port = orig.src_port;
        t.dst_port = reply.dst_port;
    } else if has_ports(orig.proto) {
        t.src_port = orig.dst_port;
        t.dst_port = orig.src_port;
    }
    t
}

/// Status bits of a translated flow, as Linux sets them.
pub fn status_bits(src: bool, dst: bool) -> u32 {
    use crate::flow::status::*;
    let mut s = SRC_NAT_DONE | DST_NAT_DONE;
    if src {
        s |= SRC_NAT;
    }
    if dst {
        s |= DST_NAT;
    }
    s
}
