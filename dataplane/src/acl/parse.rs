//! The rule-file parser. One rule per line, `#` starts a comment, blank lines
//! are ignored:
//!
//! ```text
//! policy drop
//! accept ct established,related
//! accept in outside proto tcp from 192.0.2.0/24,198.51.100.7 to 203.0.113.10 dport 80,443,8000-8080 ct new
//! log proto icmp icmp-type 8 comment "pings"
//! ```
//!
//! A line is `VERB {KEYWORD VALUE}... [comment "TEXT"]` with VERB one of
//! `accept`, `drop`, `reject`, `log`, or `policy accept|drop|reject`. Lists are
//! comma separated (blanks after a comma are allowed). Any error rejects the
//! whole input.

use std::net::IpAddr;

use crate::flow::{proto, CtState, CtStateSet};

use super::rule::{Action, Entry, IcmpMatch, PortRange, Prefix, Rule, RuleSet, Verb};
use crate::nat::{NatKind, NatRule};

/// Why a rule file was rejected, with the file and line it happened on.
/// Displays as `FILE:LINE: REASON`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct AclError {
    /// File name (as given by the caller).
    pub file: String,
    /// Line number.
    pub line: usize,
    /// What was wrong.
    pub reason: Reason,
}

/// What was wrong with a rule line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The first word is not a verb.
    #[error("unknown action \"{0}\" (expected accept, drop, reject, log or policy)")]
    UnknownAction(String),
    /// `policy` with a bad or missing value, or extra words.
    #[error("policy must be accept, drop or reject")]
    BadPolicy,
    /// A second `policy` line.
    #[error("second policy line (first on line {0})")]
    DuplicatePolicy(usize),
    /// A word that is not a match keyword.
    #[error("unknown keyword \"{0}\"")]
    UnknownKeyword(String),
    /// A keyword repeated within one rule.
    #[error("duplicate keyword \"{0}\"")]
    DuplicateKeyword(&'static str),
    /// A keyword at the end of the line without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// Words after the trailing comment.
    #[error("unexpected \"{0}\" after comment")]
    AfterComment(String),
    /// `comment` not followed by a quoted string.
    #[error("comment needs a quoted string")]
    CommentNotQuoted,
    /// A quote that is never closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// A quoted string where a keyword value was expected.
    #[error("unexpected quoted string")]
    UnexpectedQuote,
    /// `in` names an interface the resolver does not know.
    #[error("unknown interface \"{0}\"")]
    UnknownInterface(String),
    /// `zone` is not a number in 0..=65535.
    #[error("invalid zone \"{0}\"")]
    InvalidZone(String),
    /// `proto` is neither a known name nor a number in 0..=255.
    #[error("unknown protocol \"{0}\"")]
    UnknownProtocol(String),
    /// A prefix that does not parse or has a too-long length.
    #[error("invalid prefix \"{0}\"")]
    InvalidPrefix(String),
    /// A port or port range that does not parse or is reversed.
    #[error("invalid port \"{0}\"")]
    InvalidPort(String),
    /// `sport`/`dport` without a port-carrying protocol.
    #[error("{0} needs proto tcp, udp, sctp or udplite")]
    PortsNeedProto(&'static str),
    /// `icmp-type` is not `TYPE` or `TYPE/CODE` with 0..=255 numbers.
    #[error("invalid icmp-type \"{0}\"")]
    InvalidIcmpType(String),
    /// `icmp-type` without `proto icmp` or `proto icmpv6`.
    #[error("icmp-type needs proto icmp or icmpv6")]
    IcmpTypeNeedsProto,
    /// `sync` with something other than full, established or none.
    #[error("unknown sync level \"{0}\" (expected full, established or none)")]
    InvalidSyncLevel(String),
    /// `helper` with a name that is not a helper.
    #[error("unknown helper \"{0}\" (expected ftp or tftp)")]
    UnknownHelper(String),
    /// `helper` on a rule that lets no flow in.
    #[error("helper applies to accept rules only (it is attached to the accepted flow)")]
    HelperNeedsAccept,
    /// `helper` on a rule without the helper's protocol.
    #[error("helper {0} needs proto {1} on the rule")]
    HelperNeedsProto(&'static str, &'static str),
    /// `sync` on a rule that lets no flow in.
    #[error("sync applies to accept rules only (it sets how the accepted flow is replicated)")]
    SyncNeedsAccept,
    /// `ct` lists something other than new, established, related, invalid.
    #[error("unknown ct state \"{0}\"")]
    UnknownCtState(String),
    /// `from` and `to` (or the protocol) have no address family in common.
    #[error("{0}: address families can never match")]
    FamilyMismatch(&'static str),
    /// More rules than a `u32` index can name.
    #[error("too many rules")]
    TooManyRules,
    /// `nat` not followed by `src`, `dst` or `masquerade`.
    #[error("nat needs src, dst or masquerade, not \"{0}\"")]
    NatKind(String),
    /// `nat masquerade` where ports have no addresses (transparent mode).
    #[error("nat masquerade needs routed mode (ports with addresses)")]
    MasqueradeNeedsRouted,
    /// `nat masquerade ... to ADDRESS`.
    #[error(
        "masquerade translates to the output port's address: it takes no \"to\" (use nat src)"
    )]
    MasqueradeTo,
    /// A `nat` rule without `to ADDRESS`.
    #[error("nat needs \"to ADDRESS[-ADDRESS][:PORT[-PORT]]\"")]
    NatNeedsTarget,
    /// A translation target that does not parse.
    #[error("invalid nat target \"{0}\" (expected ADDRESS[-ADDRESS][:PORT[-PORT]])")]
    InvalidNatTarget(String),
    /// An IPv6 address in a `nat` rule.
    #[error("nat mixes IPv4 and IPv6 (its matches, protocol and target must be of one family)")]
    NatFamily,
    /// A keyword that has no meaning on a `nat` rule.
    #[error("{0} does not apply to nat rules")]
    NatKeyword(&'static str),
}

/// Parses a whole rule file. `source` names the file in error messages and
/// `first_line` is the line number of the first line of `text` (1 for a
/// whole file; larger when the rules are embedded in a bigger file).
/// `ports` resolves an `in` interface name to a port index.
pub fn parse_rules(
    text: &str,
    source: &str,
    first_line: usize,
    ports: &dyn Fn(&str) -> Option<u16>,
) -> Result<RuleSet, AclError> {
    parse_rule_lines(
        text.lines().enumerate().map(|(i, l)| (first_line + i, l)),
        source,
        ports,
    )
}

/// Parses rules given one per string with their own line numbers (for
/// example from a TOML array). Same syntax and errors as [`parse_rules`].
pub fn parse_rule_lines<'a>(
    lines: impl IntoIterator<Item = (usize, &'a str)>,
    source: &str,
    ports: &dyn Fn(&str) -> Option<u16>,
) -> Result<RuleSet, AclError> {
    let mut set = RuleSet {
        source: source.to_owned(),
        entries: Vec::new(),
        policy: RuleSet::DEFAULT_POLICY,
        policy_line: None,
        nat: Vec::new(),
    };
    for (line, text) in lines {
        let err = |reason| AclError {
            file: source.to_owned(),
            line,
            reason,
        };
        let (tokens, body) = tokenize(text).map_err(err)?;
        let Some(first) = tokens.first() else {
            continue;
        };
        if first.text == "policy" && !first.quoted {
            if let Some(prev) = set.policy_line {
                return Err(err(Reason::DuplicatePolicy(prev)));
            }
            let action = match tokens.get(1..) {
                Some([t]) if !t.quoted => parse_action(&t.text),
                _ => None,
            };
            set.policy = action.ok_or_else(|| err(Reason::BadPolicy))?;
            set.policy_line = Some(line);
            continue;
        }
        if first.text == "nat" && !first.quoted {
            let rule = parse_nat(&tokens, ports).map_err(err)?;
            set.nat.push((rule, line));
            continue;
        }
        let rule = parse_rule(&tokens, ports).map_err(err)?;
        if u32::try_from(set.entries.len()).is_err() {
            return Err(err(Reason::TooManyRules));
        }
        set.entries.push(Entry {
            rule,
            line,
            text: body.to_owned(),
        });
    }
    Ok(set)
}

fn parse_action(s: &str) -> Option<Action> {
    match s {
        "accept" => Some(Action::Accept),
        "drop" => Some(Action::Drop),
        "reject" => Some(Action::Reject),
        _ => None,
    }
}

#[derive(Debug)]
struct Token<'a> {
    text: std::borrow::Cow<'a, str>,
    quoted: bool,
}

/// Splits a line into tokens and returns them with the line's text minus
/// comments and outer blanks. Quoted strings are single tokens; a `#`
/// outside quotes ends the line; a token ending in `,` absorbs the next one
/// so that `80, 443` reads as `80,443`.
fn tokenize(line: &str) -> Result<(Vec<Token<'_>>, &str), Reason> {
    let mut tokens: Vec<Token<'_>> = Vec::new();
    let mut rest = line;
    let mut end = line.len();
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else { break };
        let at = line.len() - rest.len();
        if c == '#' {
            end = at;
            break;
        }
        if c == '"' {
            let inner = &rest[1..];
            let close = inner.find('"').ok_or(Reason::UnterminatedQuote)?;
            tokens.push(Token {
                text: inner[..close].into(),
                quoted: true,
            });
            rest = &inner[close + 1..];
            continue;
        }
        let stop = rest
            .find(|c: char| c.is_whitespace() || c == '#' || c == '"')
            .unwrap_or(rest.len());
        let word = &rest[..stop];
        rest = &rest[stop..];
        match tokens.last_mut() {
            Some(prev) if !prev.quoted && prev.text.ends_with(',') => {
                prev.text.to_mut().push_str(word)
            }
            _ => tokens.push(Token {
                text: word.into(),
                quoted: false,
            }),
        }
    }
    Ok((tokens, line[..end].trim()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kw {
    In,
    Zone,
    Proto,
    From,
    To,
    Sport,
    Dport,
    IcmpType,
    Ct,
    Sync,
    Helper,
}

impl Kw {
    const ALL: [(&'static str, Kw); 11] = [
        ("in", Kw::In),
        ("zone", Kw::Zone),
        ("proto", Kw::Proto),
        ("from", Kw::From),
        ("to", Kw::To),
        ("sport", Kw::Sport),
        ("dport", Kw::Dport),
        ("icmp-type", Kw::IcmpType),
        ("ct", Kw::Ct),
        ("sync", Kw::Sync),
        ("helper", Kw::Helper),
    ];
}

fn parse_rule(tokens: &[Token<'_>], ports: &dyn Fn(&str) -> Option<u16>) -> Result<Rule, Reason> {
    let (first, mut rest) = tokens
        .split_first()
        .ok_or(Reason::UnknownAction(String::new()))?;
    if first.quoted {
        return Err(Reason::UnexpectedQuote);
    }
    let verb = match &*first.text {
        "log" => Verb::Log,
        s => Verb::Act(parse_action(s).ok_or_else(|| Reason::UnknownAction(s.to_owned()))?),
    };
    let mut rule = Rule::new(verb);
    let mut seen: u16 = 0;
    while let Some((kw_tok, after)) = rest.split_first() {
        if kw_tok.quoted {
            return Err(Reason::UnexpectedQuote);
        }
        if kw_tok.text == "comment" {
            match after {
                [c] if c.quoted => rule.comment = Some(c.text.to_string()),
                [c, next, ..] if c.quoted => {
                    return Err(Reason::AfterComment(next.text.to_string()))
                }
                _ => return Err(Reason::CommentNotQuoted),
            }
            break;
        }
        let (name, kw) = Kw::ALL
            .iter()
            .copied()
            .find(|(n, _)| *n == kw_tok.text)
            .ok_or_else(|| Reason::UnknownKeyword(kw_tok.text.to_string()))?;
        let bit = 1u16 << (kw as u16);
        if seen & bit != 0 {
            return Err(Reason::DuplicateKeyword(name));
        }
        seen |= bit;
        let (val, after) = after.split_first().ok_or(Reason::MissingValue(name))?;
        if val.quoted {
            return Err(Reason::UnexpectedQuote);
        }
        let v: &str = &val.text;
        match kw {
            Kw::In => {
                let idx = ports(v).ok_or_else(|| Reason::UnknownInterface(v.to_owned()))?;
                rule.in_port = Some((idx, v.to_owned()));
            }
            Kw::Zone => rule.zone = Some(v.parse().map_err(|_| Reason::InvalidZone(v.to_owned()))?),
            Kw::Proto => {
                rule.proto =
                    Some(parse_proto(v).ok_or_else(|| Reason::UnknownProtocol(v.to_owned()))?)
            }
            Kw::From => rule.src = parse_list(v, parse_prefix)?,
            Kw::To => rule.dst = parse_list(v, parse_prefix)?,
            Kw::Sport => rule.sport = parse_list(v, parse_port_range)?,
            Kw::Dport => rule.dport = parse_list(v, parse_port_range)?,
            Kw::IcmpType => {
                rule.icmp =
                    Some(parse_icmp(v).ok_or_else(|| Reason::InvalidIcmpType(v.to_owned()))?)
            }
            Kw::Ct => rule.ct = Some(parse_ct(v)?),
            Kw::Sync => {
                rule.sync = Some(
                    crate::flow::SyncLevel::parse(v)
                        .ok_or_else(|| Reason::InvalidSyncLevel(v.to_owned()))?,
                )
            }
            Kw::Helper => {
                rule.helper = Some(
                    crate::helper::Helper::parse(v)
                        .ok_or_else(|| Reason::UnknownHelper(v.to_owned()))?,
                )
            }
        }
        rest = after;
    }
    check(&rule)?;
    Ok(rule)
}

/// A `nat src|dst MATCHES... to TARGET [ports RANGE] [out PORT]` line.
/// The match keywords are the filter rules' (`saddr` and `daddr` are
/// accepted for `from` and the destination match, since `to` names the
/// target here); `ct` and `sync` do not apply.
fn parse_nat(tokens: &[Token<'_>], ports: &dyn Fn(&str) -> Option<u16>) -> Result<NatRule, Reason> {
    let kind = match tokens.get(1) {
        Some(t) if t.quoted => return Err(Reason::UnexpectedQuote),
        Some(t) if t.text == "src" => NatKind::Src,
        Some(t) if t.text == "dst" => NatKind::Dst,
        Some(t) if t.text == "masquerade" => NatKind::Masquerade,
        Some(t) => return Err(Reason::NatKind(t.text.to_string())),
        None => return Err(Reason::NatKind(String::new())),
    };
    let word = |s: &'static str| Token {
        text: s.into(),
        quoted: false,
    };
    let mut acl = vec![word("accept")];
    let (mut to, mut port_kw, mut out) = (None, None, None);
    let mut i = 2;
    while let Some(t) = tokens.get(i) {
        if t.quoted {
            return Err(Reason::UnexpectedQuote);
        }
        let kw: &str = &t.text;
        let name = match kw {
            "to" => "to",
            "ports" => "ports",
            "out" => "out",
            "ct" => return Err(Reason::NatKeyword("ct")),
            "sync" => return Err(Reason::NatKeyword("sync")),
            "comment" => {
                acl.extend(tokens[i..].iter().map(|t| Token {
                    text: t.text.clone(),
                    quoted: t.quoted,
                }));
                break;
            }
            _ => {
                let mapped = match kw {
                    "saddr" => word("from"),
                    "daddr" => word("to"),
                    _ => Token {
                        text: t.text.clone(),
                        quoted: false,
                    },
                };
                acl.push(mapped);
                if let Some(v) = tokens.get(i + 1) {
                    acl.push(Token {
                        text: v.text.clone(),
                        quoted: v.quoted,
                    });
                }
                i += 2;
                continue;
            }
        };
        let v = tokens.get(i + 1).ok_or(Reason::MissingValue(name))?;
        if v.quoted {
            return Err(Reason::UnexpectedQuote);
        }
        let slot = match name {
            "to" => &mut to,
            "ports" => &mut port_kw,
            _ => &mut out,
        };
        if slot.replace(v.text.to_string()).is_some() {
            return Err(Reason::DuplicateKeyword(name));
        }
        i += 2;
    }
    let mut matches = parse_rule(&acl, ports)?;
    matches.verb = Verb::Act(Action::Accept);
    let (addr_lo, addr_hi, to_ports) = match (kind, to) {
        (NatKind::Masquerade, Some(_)) => return Err(Reason::MasqueradeTo),
        (NatKind::Masquerade, None) => (
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            None,
        ),
        (_, Some(target)) => parse_nat_target(&target)?,
        (_, None) => return Err(Reason::NatNeedsTarget),
    };
    // One family: the target's, or for a masquerade whatever the
    // matches name (none: both).
    let family = |v6: bool| {
        let prefixes = matches.src.iter().chain(&matches.dst);
        let icmp = if v6 { proto::ICMP } else { proto::ICMPV6 };
        !prefixes.clone().any(|p| p.is_v6() != v6) && matches.proto != Some(icmp)
    };
    let one_family = match kind {
        NatKind::Masquerade => family(true) || family(false),
        _ => family(addr_lo.is_ipv6()),
    };
    if !one_family {
        return Err(Reason::NatFamily);
    }
    let ports_range = match (to_ports, port_kw) {
        (Some(_), Some(_)) => return Err(Reason::DuplicateKeyword("ports")),
        (Some(p), None) => Some(p),
        (None, Some(p)) => Some(parse_port_range(&p)?),
        (None, None) => None,
    };
    if kind == NatKind::Dst
        && ports_range.is_some()
        && !matches!(
            matches.proto,
            Some(proto::TCP | proto::UDP | proto::SCTP | proto::UDPLITE | proto::DCCP)
        )
    {
        return Err(Reason::PortsNeedProto("a nat dst port"));
    }
    let out_port = match out {
        Some(n) => Some((
            ports(&n).ok_or_else(|| Reason::UnknownInterface(n.clone()))?,
            n,
        )),
        None => None,
    };
    Ok(NatRule {
        kind,
        matches,
        out_port,
        addr_lo,
        addr_hi,
        ports: ports_range,
    })
}

/// `ADDR[-ADDR][:PORT[-PORT]]` (IPv4), or IPv6 as nftables writes it:
/// `ADDR[-ADDR]`, or in brackets before a port, `[ADDR[-ADDR]]:PORT[-PORT]`.
fn parse_nat_target(v: &str) -> Result<(IpAddr, IpAddr, Option<PortRange>), Reason> {
    let bad = || Reason::InvalidNatTarget(v.to_owned());
    let (addrs, port) = if let Some(rest) = v.strip_prefix('[') {
        let (a, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (a, None),
            _ => (a, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match v.split_once(':') {
            // Two or more colons: an IPv6 address without a port.
            Some((a, p)) if !p.contains(':') => (a, Some(p)),
            Some(_) => (v, None),
            None => (v, None),
        }
    };
    let (lo, hi) = addrs.split_once('-').unwrap_or((addrs, addrs));
    let ip = |s: &str| s.parse::<IpAddr>().map_err(|_| bad());
    let (lo, hi) = (ip(lo)?, ip(hi)?);
    if lo.is_ipv6() != hi.is_ipv6() {
        return Err(Reason::NatFamily);
    }
    if lo > hi {
        return Err(bad());
    }
    let port = match port {
        Some(p) => Some(parse_port_range(p).map_err(|_| bad())?),
        None => None,
    };
    Ok((lo, hi, port))
}

/// Cross-field checks once the whole rule is known.
fn check(rule: &Rule) -> Result<(), Reason> {
    let ported = matches!(
        rule.proto,
        Some(proto::TCP | proto::UDP | proto::SCTP | proto::UDPLITE)
    );
    if !rule.sport.is_empty() && !ported {
        return Err(Reason::PortsNeedProto("sport"));
    }
    if !rule.dport.is_empty() && !ported {
        return Err(Reason::PortsNeedProto("dport"));
    }
    if rule.icmp.is_some() && !matches!(rule.proto, Some(proto::ICMP | proto::ICMPV6)) {
        return Err(Reason::IcmpTypeNeedsProto);
    }
    if rule.sync.is_some() && rule.verb != Verb::Act(Action::Accept) {
        return Err(Reason::SyncNeedsAccept);
    }
    if let Some(h) = rule.helper {
        if rule.verb != Verb::Act(Action::Accept) {
            return Err(Reason::HelperNeedsAccept);
        }
        if rule.proto != Some(h.proto()) {
            return Err(Reason::HelperNeedsProto(
                h.name(),
                if h.proto() == proto::TCP {
                    "tcp"
                } else {
                    "udp"
                },
            ));
        }
    }
    // Families as a bit mask: 1 = IPv4, 2 = IPv6.
    let fam = |ps: &[Prefix]| {
        if ps.is_empty() {
            3
        } else {
            ps.iter()
                .fold(0u8, |m, p| m | if p.is_v6() { 2 } else { 1 })
        }
    };
    let addr = fam(&rule.src) & fam(&rule.dst);
    if addr == 0 {
        return Err(Reason::FamilyMismatch("from and to"));
    }
    match rule.proto {
        Some(proto::ICMP) if addr & 1 == 0 => {
            Err(Reason::FamilyMismatch("proto icmp with IPv6 addresses"))
        }
        Some(proto::ICMPV6) if addr & 2 == 0 => {
            Err(Reason::FamilyMismatch("proto icmpv6 with IPv4 addresses"))
        }
        _ => Ok(()),
    }
}

fn parse_list<T>(v: &str, item: fn(&str) -> Result<T, Reason>) -> Result<Vec<T>, Reason> {
    v.split(',').map(item).collect()
}

fn parse_proto(v: &str) -> Option<u8> {
    Some(match v {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        "icmp" => proto::ICMP,
        "icmpv6" | "ipv6-icmp" => proto::ICMPV6,
        "sctp" => proto::SCTP,
        "gre" => proto::GRE,
        "udplite" => proto::UDPLITE,
        "dccp" => proto::DCCP,
        _ => return v.parse().ok(),
    })
}

/// `ADDR` (a host) or `ADDR/LEN`; host bits beyond the length are cleared.
fn parse_prefix(v: &str) -> Result<Prefix, Reason> {
    let bad = || Reason::InvalidPrefix(v.to_owned());
    let (a, len) = match v.split_once('/') {
        Some((a, l)) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            (a, Some(l.parse::<u8>().map_err(|_| bad())?))
        }
        Some(_) => return Err(bad()),
        None => (v, None),
    };
    match a.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V4(a) => match len.unwrap_or(32) {
            l @ 0..=32 => Ok(Prefix::v4(u32::from(a), l)),
            _ => Err(bad()),
        },
        IpAddr::V6(a) => match len.unwrap_or(128) {
            l @ 0..=128 => Ok(Prefix::v6(u128::from(a), l)),
            _ => Err(bad()),
        },
    }
}

fn parse_port_range(v: &str) -> Result<PortRange, Reason> {
    let bad = || Reason::InvalidPort(v.to_owned());
    let num = |s: &str| {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u16>().ok()
        } else {
            None
        }
    };
    let (lo, hi) = match v.split_once('-') {
        Some((a, b)) => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?),
        None => {
            let p = num(v).ok_or_else(bad)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok(PortRange { lo, hi })
}

fn parse_icmp(v: &str) -> Option<IcmpMatch> {
    match v.split_once('/') {
        Some((t, c)) => Some(IcmpMatch {
            ty: t.parse().ok()?,
            code: Some(c.parse().ok()?),
        }),
        None => Some(IcmpMatch {
            ty: v.parse().ok()?,
            code: None,
        }),
    }
}

fn parse_ct(v: &str) -> Result<CtStateSet, Reason> {
    let mut set = CtStateSet::default();
    for s in v.split(',') {
        let st = match s {
            "new" => CtState::New,
            "established" => CtState::Established,
            "related" => CtState::Related,
            "invalid" => CtState::Invalid,
            _ => return Err(Reason::UnknownCtState(s.to_owned())),
        };
        set.insert(st);
    }
    Ok(set)
}
