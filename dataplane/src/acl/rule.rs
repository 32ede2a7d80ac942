//! The rule model: what one rule matches, what it does, and the ordered
//! [`RuleSet`] a rule file compiles into.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::{proto, CtState, CtStateSet, Tuple};

use super::AclInput;

/// What a terminal rule or the policy does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward the packet.
    Accept,
    /// Discard the packet silently.
    Drop,
    /// Discard the packet; the caller answers with a TCP RST or an ICMP
    /// unreachable.
    Reject,
}

impl Action {
    /// The keyword used in rule files.
    pub fn name(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Drop => "drop",
            Action::Reject => "reject",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a rule does when it matches: a terminal [`Action`], or `Log`, which
/// only records the match and lets classification continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Terminal: decide the packet with this action.
    Act(Action),
    /// Non-terminal: flag the packet for logging and go on to the next rule.
    Log,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verb::Act(a) => a.fmt(f),
            Verb::Log => f.write_str("log"),
        }
    }
}

/// An IPv4 or IPv6 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// IPv4 network and prefix length (0..=32).
    V4 {
        /// Network address, host bits zero.
        addr: u32,
        /// Prefix length.
        len: u8,
    },
    /// IPv6 network and prefix length (0..=128).
    V6 {
        /// Network address, host bits zero.
        addr: u128,
        /// Prefix length.
        len: u8,
    },
}

impl Prefix {
    /// An IPv4 prefix; host bits are cleared and `len` is clamped to 32.
    pub fn v4(addr: u32, len: u8) -> Prefix {
        let len = len.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Prefix::V4 {
            addr: addr & mask,
            len,
        }
    }

    /// An IPv6 prefix; host bits are cleared and `len` is clamped to 128.
    pub fn v6(addr: u128, len: u8) -> Prefix {
        let len = len.min(128);
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Prefix::V6 {
            addr: addr & mask,
            len,
        }
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_v6(&self) -> bool {
        matches!(self, Prefix::V6 { .. })
    }

    /// First and last IPv4 address covered, if this is an IPv4 prefix.
    pub fn range_v4(&self) -> Option<(u32, u32)> {
        match *self {
            Prefix::V4 { addr, len } => {
                let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                Some((addr, addr | host))
            }
            Prefix::V6 { .. } => None,
        }
    }

    /// First and last IPv6 address covered, if this is an IPv6 prefix.
    pub fn range_v6(&self) -> Option<(u128, u128)> {
        match *self {
            Prefix::V6 { addr, len } => {
                let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                Some((addr, addr | host))
            }
            Prefix::V4 { .. } => None,
        }
    }

    /// Whether the 16-byte address `a` of family `v6` lies in this prefix.
    pub fn contains(&self, a: &[u8; 16], v6: bool) -> bool {
        if v6 {
            self.range_v6()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&v6_key(a)))
        } else {
            self.range_v4()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&v4_key(a)))
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Prefix::V4 { addr, len: 32 } => write!(f, "{}", Ipv4Addr::from(addr)),
            Prefix::V4 { addr, len } => write!(f, "{}/{}", Ipv4Addr::from(addr), len),
            Prefix::V6 { addr, len: 128 } => write!(f, "{}", Ipv6Addr::from(addr)),
            Prefix::V6 { addr, len } => write!(f, "{}/{}", Ipv6Addr::from(addr), len),
        }
    }
}

/// The IPv4 address in a tuple's 16-byte form as a host-order integer.
pub(crate) fn v4_key(a: &[u8; 16]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}

/// The IPv6 address in a tuple's 16-byte form as a host-order integer.
pub(crate) fn v6_key(a: &[u8; 16]) -> u128 {
    u128::from_be_bytes(*a)
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (>= `lo`).
    pub hi: u16,
}

impl PortRange {
    /// Whether `p` is in the range.
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An ICMP or ICMPv6 type with an optional code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// ICMP type.
    pub ty: u8,
    /// ICMP code; `None` matches every code.
    pub code: Option<u8>,
}

impl IcmpMatch {
    /// The inclusive range of `type << 8 | code` values this matches, the
    /// form a [`Tuple`] keeps in `dst_port`.
    pub fn dst_port_range(&self) -> PortRange {
        let base = u16::from(self.ty) << 8;
        match self.code {
            Some(c) => PortRange {
                lo: base | u16::from(c),
                hi: base | u16::from(c),
            },
            None => PortRange {
                lo: base,
                hi: base | 0xff,
            },
        }
    }
}

impl fmt::Display for IcmpMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{}/{}", self.ty, c),
            None => write!(f, "{}", self.ty),
        }
    }
}

/// One rule: a conjunction of optional field matches and a [`Verb`]. A field
/// that is `None` or an empty list matches everything; a list matches when any
/// element does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What the rule does.
    pub verb: Verb,
    /// Input port index, with the name it was written as.
    pub in_port: Option<(u16, String)>,
    /// Conntrack zone.
    pub zone: Option<u16>,
    /// IP protocol number.
    pub proto: Option<u8>,
    /// Source prefixes.
    pub src: Vec<Prefix>,
    /// Destination prefixes.
    pub dst: Vec<Prefix>,
    /// Source port ranges (only with a port-carrying protocol).
    pub sport: Vec<PortRange>,
    /// Destination port ranges (only with a port-carrying protocol).
    pub dport: Vec<PortRange>,
    /// ICMP type and code (only with ICMP or ICMPv6).
    pub icmp: Option<IcmpMatch>,
    /// Conntrack states.
    pub ct: Option<CtStateSet>,
    /// Replication level of the flows this (accept) rule lets in
    /// (`sync full|established|none`); `None`: the zone's or the default.
    pub sync: Option<crate::flow::SyncLevel>,
    /// The helper attached to the flows this (accept) rule lets in
    /// (`helper ftp|tftp`).
    pub helper: Option<crate::helper::Helper>,
    /// Free text from `comment "..."`.
    pub comment: Option<String>,
}

impl Rule {
    /// A rule with this verb that matches every packet.
    pub fn new(verb: Verb) -> Rule {
        Rule {
            verb,
            in_port: None,
            zone: None,
            proto: None,
            src: Vec::new(),
            dst: Vec::new(),
            sport: Vec::new(),
            dport: Vec::new(),
            icmp: None,
            ct: None,
            sync: None,
            helper: None,
            comment: None,
        }
    }

    /// Whether the rule matches `input`. This is the reference semantics the
    /// compiled classifier reproduces.
    pub fn matches(&self, input: &AclInput<'_>) -> bool {
        let t: &Tuple = input.tuple;
        self.in_port
            .as_ref()
            .is_none_or(|(p, _)| *p == input.in_port)
            && self.zone.is_none_or(|z| z == input.zone)
            && self.proto.is_none_or(|p| p == t.proto)
            && self.ct.is_none_or(|s| s.contains(input.ct))
            && (self.src.is_empty() || self.src.iter().any(|p| p.contains(&t.src, t.v6)))
            && (self.dst.is_empty() || self.dst.iter().any(|p| p.contains(&t.dst, t.v6)))
            && (self.sport.is_empty() || self.sport.iter().any(|r| r.contains(t.src_port)))
            && (self.dport.is_empty() || self.dport.iter().any(|r| r.contains(t.dst_port)))
            && self
                .icmp
                .is_none_or(|i| i.dst_port_range().contains(t.dst_port))
    }
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, kw: &str, items: &[T]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    write!(f, " {kw} ")?;
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        it.fmt(f)?;
    }
    Ok(())
}

/// The protocol's rule-file name, if it has one.
pub fn proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        proto::SCTP => "sctp",
        proto::GRE => "gre",
        proto::UDPLITE => "udplite",
        proto::DCCP => "dccp",
        _ => return None,
    })
}

impl fmt::Display for Rule {
    /// The canonical rule-file form (parses back to the same rule).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.verb.fmt(f)?;
        if let Some((_, name)) = &self.in_port {
            write!(f, " in {name}")?;
        }
        if let Some(z) = self.zone {
            write!(f, " zone {z}")?;
        }
        if let Some(p) = self.proto {
            match proto_name(p) {
                Some(n) => write!(f, " proto {n}")?,
                None => write!(f, " proto {p}")?,
            }
        }
        write_list(f, "from", &self.src)?;
        write_list(f, "to", &self.dst)?;
        write_list(f, "sport", &self.sport)?;
        write_list(f, "dport", &self.dport)?;
        if let Some(i) = self.icmp {
            write!(f, " icmp-type {i}")?;
        }
        if let Some(s) = self.ct {
            let names: Vec<&str> = [
                CtState::New,
                CtState::Established,
                CtState::Related,
                CtState::Invalid,
            ]
            .into_iter()
            .filter(|c| s.contains(*c))
            .map(CtState::name)
            .collect();
            write!(f, " ct {}", names.join(","))?;
        }
        if let Some(l) = self.sync {
            write!(f, " sync {}", l.name())?;
        }
        if let Some(h) = self.helper {
            write!(f, " helper {h}")?;
        }
        if let Some(c) = &self.comment {
            write!(f, " comment \"{c}\"")?;
        }
        Ok(())
    }
}

/// A rule with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) rule: Rule,
    pub(crate) line: usize,
    pub(crate) text: String,
}

/// An ordered, validated list of rules plus the default policy. Built by
/// [`super::parse_rules`] (or [`RuleSet::from_rules`]); compiled with
/// [`RuleSet::compile`] or scanned with [`RuleSet::linear`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub(crate) source: String,
    pub(crate) entries: Vec<Entry>,
    pub(crate) policy: Action,
    pub(crate) policy_line: Option<usize>,
    /// `nat` rules, in order, with their lines.
    pub(crate) nat: Vec<(crate::nat::NatRule, usize)>,
}

impl RuleSet {
    /// The policy used when a file has no `policy` line: drop (fail closed).
    pub const DEFAULT_POLICY: Action = Action::Drop;

    /// Builds a rule set from rules made in code. Each rule's text is its
    /// canonical [`Display`](fmt::Display) form and its line is its 1-based
    /// position. The rules are not validated beyond what their types enforce.
    pub fn from_rules(rules: Vec<Rule>, policy: Action) -> RuleSet {
        let entries = rules
            .into_iter()
            .enumerate()
            .map(|(i, rule)| Entry {
                text: rule.to_string(),
                line: i + 1,
                rule,
            })
            .collect();
        RuleSet {
            source: String::from("<built>"),
            entries,
            policy,
            policy_line: None,
            nat: Vec::new(),
        }
    }

    /// The `nat` rules, in order, as the workers apply them.
    pub fn nat_rules(&self) -> crate::nat::NatRules {
        crate::nat::NatRules::new(self.nat.clone())
    }

    /// Uses `policy` unless the rules set their own with a `policy` line
    /// (the configuration's default yields to the rules file).
    pub fn with_default_policy(mut self, policy: Action) -> RuleSet {
        if self.policy_line.is_none() {
            self.policy = policy;
        }
        self
    }

    /// The file name the rules were read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The default policy.
    pub fn policy(&self) -> Action {
        self.policy
    }

    /// The line of the `policy` statement, if there was one.
    pub fn policy_line(&self) -> Option<usize> {
        self.policy_line
    }

    /// Number of rules (the policy not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rules in order, with index, line and source text, for `rules show`.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = RuleView<'_>> + '_ {
        self.entries.iter().enumerate().map(|(i, e)| RuleView {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            line: e.line,
            text: &e.text,
            rule: &e.rule,
        })
    }

    /// The rule with index `i`.
    pub fn get(&self, i: u32) -> Option<&Rule> {
        self.entries.get(usize::try_from(i).ok()?).map(|e| &e.rule)
    }
}

/// One rule as `rules show` lists it. Displays as `INDEX line LINE: TEXT`.
#[derive(Clone, Copy, Debug)]
pub struct RuleView<'a> {
    /// Index of the rule (what [`super::Verdict::rule`] reports).
    pub index: u32,
    /// Line in the source file.
    pub line: usize,
    /// Source text, without `#` comments and surrounding blanks.
    pub text: &'a str,
    /// The parsed rule.
    pub rule: &'a Rule,
}

impl fmt::Display for RuleView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>5} line {}: {}", self.index, self.line, self.text)
    }
}
