//! The flow-state model shared by conntrack, the ACL, the console and (later)
//! replication.
//!
//! A flow is identified by its *original* tuple plus its conntrack zone. The
//! reply tuple is the inverse of the original unless NAT applies; NAT, master
//! (related-flow) and the rarely used attributes live in [`FlowExtras`] so that
//! the hot table entry stays small. Everything the conntrackd 1.4.7 wire format
//! can carry (ftfw-wire.md sections 5 and 6) has a home here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the trackers know by name.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// DCCP.
    pub const DCCP: u8 = 33;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}

/// Conntrack status bits, with the values of Linux's `ip_conntrack_status`
/// (ftfw-wire.md 6.1). Only the low 16 bits are defined.
pub mod status {
    /// Flow is an expected (related) connection.
    pub const EXPECTED: u32 = 0x1;
    /// Traffic has been seen in both directions.
    pub const SEEN_REPLY: u32 = 0x2;
    /// Flow is assured: it will not be early-dropped.
    pub const ASSURED: u32 = 0x4;
    /// Flow is in the table (always set on tracked flows).
    pub const CONFIRMED: u32 = 0x8;
    /// Source NAT applies.
    pub const SRC_NAT: u32 = 0x10;
    /// Destination NAT applies.
    pub const DST_NAT: u32 = 0x20;
    /// Sequence adjustment applies.
    pub const SEQ_ADJUST: u32 = 0x40;
    /// Source NAT was set up.
    pub const SRC_NAT_DONE: u32 = 0x80;
    /// Destination NAT was set up.
    pub const DST_NAT_DONE: u32 = 0x100;
    /// Flow is being destroyed.
    pub const DYING: u32 = 0x200;
    /// Timeout is fixed and not refreshed by traffic.
    pub const FIXED_TIMEOUT: u32 = 0x400;
    /// Template entry.
    pub const TEMPLATE: u32 = 0x800;
    /// Untracked.
    pub const UNTRACKED: u32 = 0x1000;
    /// A helper is attached.
    pub const HELPER: u32 = 0x2000;
    /// Software offload.
    pub const OFFLOAD: u32 = 0x4000;
    /// Hardware offload.
    pub const HW_OFFLOAD: u32 = 0x8000;
}

/// TCP conntrack states with Linux's `tcp_conntrack` numbering (ftfw-wire.md 6.2).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[repr(u8)]
pub enum TcpState {
    /// No state yet.
    #[default]
    None = 0,
    /// SYN seen in the original direction.
    SynSent = 1,
    /// SYN/ACK seen in the reply direction.
    SynRecv = 2,
    /// Three-way handshake completed.
    Established = 3,
    /// FIN seen.
    FinWait = 4,
    /// FIN seen in one direction, ACKed.
    CloseWait = 5,
    /// FIN seen in both directions.
    LastAck = 6,
    /// Last ACK seen after both FINs.
    TimeWait = 7,
    /// RST seen.
    Close = 8,
    /// Simultaneous open: SYN seen in both directions.
    SynSent2 = 9,
}

impl TcpState {
    /// All states, in numeric order.
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// Decodes Linux's numeric value.
    pub fn from_u8(v: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(v)).copied()
    }

    /// The name `conntrack -L` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// Parses the name `conntrack -L` prints (case-insensitive).
    pub fn from_name(s: &str) -> Option<TcpState> {
        TcpState::ALL
            .iter()
            .copied()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Direction of a packet relative to the flow that tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// Same direction as the packet that created the flow.
    Original = 0,
    /// The answering direction.
    Reply = 1,
}

impl Dir {
    /// Index 0 for original, 1 for reply.
    pub fn index(self) -> usize {
        self as usize
    }
    /// The other direction.
    pub fn flip(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// The conntrack state a packet is classified into, as the ACL sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    /// First packet of a flow that is not yet in the table.
    New,
    /// Packet of a tracked flow.
    Established,
    /// Packet related to a tracked flow (ICMP error about it).
    Related,
    /// Packet that fits no flow or breaks the protocol state machine.
    Invalid,
}

impl CtState {
    /// Bit for this state in a [`CtStateSet`].
    pub fn bit(self) -> u8 {
        match self {
            CtState::New => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::Invalid => 8,
        }
    }
    /// Lower-case name as used in rule files.
    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
        }
    }
}

/// A set of [`CtState`]s as a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtStateSet(pub u8);

impl CtStateSet {
    /// Every state.
    pub const ANY: CtStateSet = CtStateSet(0x0f);
    /// Whether `s` is in the set.
    pub fn contains(self, s: CtState) -> bool {
        self.0 & s.bit() != 0
    }
    /// Adds `s`.
    pub fn insert(&mut self, s: CtState) {
        self.0 |= s.bit();
    }
}

/// An address of either family stored in 16 bytes; IPv4 uses the first four
/// bytes and the tuple's `v6` flag says which.
pub type Addr = [u8; 16];

/// A flow tuple: addresses, protocol and ports. For ICMP and ICMPv6 the
/// `src_port` holds the identifier and `dst_port` holds `type << 8 | code`,
/// as Linux does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tuple {
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source port, or the ICMP identifier.
    pub src_port: u16,
    /// Destination port, or ICMP `type << 8 | code`.
    pub dst_port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Whether the addresses are IPv6.
    pub v6: bool,
}

impl Tuple {
    /// Builds a tuple from std addresses; both must be the same family.
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, src_port: u16, dst_port: u16) -> Tuple {
        let v6 = src.is_ipv6();
        Tuple {
            src: addr_bytes(src),
            dst: addr_bytes(dst),
            src_port,
            dst_port,
            proto,
            v6,
        }
    }
    /// Source as a std address.
    pub fn src_ip(&self) -> IpAddr {
        addr_ip(&self.src, self.v6)
    }
    /// Destination as a std address.
    pub fn dst_ip(&self) -> IpAddr {
        addr_ip(&self.dst, self.v6)
    }
    /// The tuple with source and destination swapped.
    pub fn inverse(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            v6: self.v6,
        }
    }
    /// The tuple of the answers to this tuple's packets when no NAT applies:
    /// addresses and ports swapped, and for ICMP queries the same identifier
    /// with the answer's type (echo request 8 is answered by echo reply 0).
    pub fn reply(&self) -> Tuple {
        if self.is_icmp() {
            let t = self.icmp_type();
            let rt = icmp_reply_type(self.v6, t).unwrap_or(t);
            Tuple {
                src: self.dst,
                dst: self.src,
                src_port: self.src_port,
                dst_port: u16::from(rt) << 8 | u16::from(self.icmp_code()),
                proto: self.proto,
                v6: self.v6,
            }
        } else {
            self.inverse()
        }
    }

    /// Whether the protocol is ICMP or ICMPv6.
    pub fn is_icmp(&self) -> bool {
        (self.proto == proto::ICMP && !self.v6) || (self.proto == proto::ICMPV6 && self.v6)
    }
    /// ICMP type (meaningful only when [`Tuple::is_icmp`]).
    pub fn icmp_type(&self) -> u8 {
        (self.dst_port >> 8) as u8
    }
    /// ICMP code (meaningful only when [`Tuple::is_icmp`]).
    pub fn icmp_code(&self) -> u8 {
        (self.dst_port & 0xff) as u8
    }
    /// ICMP identifier (meaningful only when [`Tuple::is_icmp`]).
    pub fn icmp_id(&self) -> u16 {
        self.src_port
    }
}

impl fmt::Debug for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for Tuple {
    /// `conntrack -L` style: `src=.. dst=.. sport=.. dport=..` or the ICMP fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src={} dst={}", self.src_ip(), self.dst_ip())?;
        if self.is_icmp() {
            write!(
                f,
                " type={} code={} id={}",
                self.icmp_type(),
                self.icmp_code(),
                self.icmp_id()
            )
        } else if has_ports(self.proto) {
            write!(f, " sport={} dport={}", self.src_port, self.dst_port)
        } else {
            Ok(())
        }
    }
}

/// ICMP (v4) query types that open a flow, with the type of their answer.
const ICMP4_QUERIES: [(u8, u8); 4] = [(8, 0), (13, 14), (15, 16), (17, 18)];
/// ICMPv6 query types that open a flow, with the type of their answer.
const ICMP6_QUERIES: [(u8, u8); 2] = [(128, 129), (139, 140)];

fn icmp_queries(v6: bool) -> &'static [(u8, u8)] {
    if v6 {
        &ICMP6_QUERIES
    } else {
        &ICMP4_QUERIES
    }
}

/// The answer type of an ICMP query type, if `t` is a query.
pub fn icmp_reply_type(v6: bool, t: u8) -> Option<u8> {
    icmp_queries(v6)
        .iter()
        .find(|(q, _)| *q == t)
        .map(|(_, r)| *r)
}

/// The query type `t` belongs to: itself for queries and other types, the
/// query it answers for answer types.
pub fn icmp_query_of(v6: bool, t: u8) -> u8 {
    icmp_queries(v6)
        .iter()
        .find(|(_, r)| *r == t)
        .map_or(t, |(q, _)| *q)
}

/// Whether a protocol's tuple carries ports.
pub fn has_ports(p: u8) -> bool {
    matches!(
        p,
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP | proto::DCCP
    )
}

/// Converts a std address into the 16-byte form.
pub fn addr_bytes(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// Converts the 16-byte form back into a std address.
pub fn addr_ip(b: &Addr, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// Identity of a flow: its original tuple and its conntrack zone.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowKey {
    /// Original-direction tuple.
    pub orig: Tuple,
    /// Conntrack zone (0 is the default zone).
    pub zone: u16,
}

/// NAT sequence adjustment (ftfw-wire.md attribute 16), per direction:
/// correction position, offset before, offset after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SeqAdj {
    /// Original direction: correction_pos, offset_before, offset_after.
    pub orig: [u32; 3],
    /// Reply direction: correction_pos, offset_before, offset_after.
    pub reply: [u32; 3],
}

/// The rarely present parts of a flow, kept out of the hot entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FlowExtras {
    /// Reply tuple when it is not the inverse of the original (NAT).
    pub reply: Option<Tuple>,
    /// The master flow's original tuple, for related (expected) flows.
    pub master: Option<Tuple>,
    /// NAT sequence adjustment.
    pub seq_adj: Option<SeqAdj>,
    /// Conntrack helper name (at most 11 bytes on the wire).
    pub helper: Option<String>,
    /// Connlabels, 128 bits as four words (bit b of word w = label 32w+b).
    pub labels: Option<[u32; 4]>,
    /// SYN proxy values: its, isn, tsoff.
    pub synproxy: Option<[u32; 3]>,
    /// SCTP state and verification tags (orig, reply).
    pub sctp: Option<(u8, u32, u32)>,
    /// DCCP state and role.
    pub dccp: Option<(u8, u8)>,
}

impl FlowExtras {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        // Field by field: comparing with a built default costs the sync
        // thread about 5 % of its time (every delta asks).
        let FlowExtras {
            reply,
            master,
            seq_adj,
            helper,
            labels,
            synproxy,
            sctp,
            dccp,
        } = self;
        reply.is_none()
            && master.is_none()
            && seq_adj.is_none()
            && helper.is_none()
            && labels.is_none()
            && synproxy.is_none()
            && sctp.is_none()
            && dccp.is_none()
    }
}

/// What an [`Extras`] without any reads as.
static NO_EXTRAS: FlowExtras = FlowExtras {
    reply: None,
    master: None,
    seq_adj: None,
    helper: None,
    labels: None,
    synproxy: None,
    sctp: None,
    dccp: None,
};

/// A flow's [`FlowExtras`] behind a pointer that stays null for the
/// common flow that has none. A [`FlowState`] is what the sync thread
/// decodes, queues and moves into the external cache by the million: with
/// the 184-byte extras inline it was 280 bytes, with this pointer 96.
///
/// Reads see the empty set when there is none (`st.extras.reply`);
/// writes through `&mut` allocate it on first use. Equality is that of
/// the sets: an allocated empty set equals none.
#[derive(Clone, Debug, Default)]
pub struct Extras(Option<Box<FlowExtras>>);

impl Extras {
    /// The set, if one was ever allocated (it may still be empty).
    pub fn get(&self) -> Option<&FlowExtras> {
        self.0.as_deref()
    }

    /// The boxed set, `None` if there is none or it is empty: what a
    /// [`crate::conntrack::Delta`] carries.
    pub fn into_boxed(self) -> Option<Box<FlowExtras>> {
        self.0.filter(|x| !x.is_empty())
    }

    /// Takes the set out, leaving none.
    pub fn take(&mut self) -> FlowExtras {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

impl std::ops::Deref for Extras {
    type Target = FlowExtras;

    fn deref(&self) -> &FlowExtras {
        self.0.as_deref().unwrap_or(&NO_EXTRAS)
    }
}

impl std::ops::DerefMut for Extras {
    fn deref_mut(&mut self) -> &mut FlowExtras {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Extras {
    fn eq(&self, other: &Extras) -> bool {
        **self == **other
    }
}

impl Eq for Extras {}

impl From<FlowExtras> for Extras {
    fn from(x: FlowExtras) -> Extras {
        Extras((!x.is_empty()).then(|| Box::new(x)))
    }
}

impl From<Option<Box<FlowExtras>>> for Extras {
    fn from(x: Option<Box<FlowExtras>>) -> Extras {
        Extras(x)
    }
}

/// Per-direction packet and byte counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes (L3 length).
    pub bytes: u64,
}

/// A complete, self-contained description of one flow: what the console
/// lists, what `flows add` inserts and what replication carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowState {
    /// Identity.
    pub key: FlowKey,
    /// TCP state (NONE for other protocols).
    pub tcp_state: TcpState,
    /// Status bits ([`status`]).
    pub status: u32,
    /// Seconds left until expiry.
    pub timeout_secs: u32,
    /// Connection mark.
    pub mark: u32,
    /// TCP window scale, original and reply direction.
    pub wscale: [u8; 2],
    /// Counters, original and reply direction.
    pub counters: [Counters; 2],
    /// NAT, master and other rarely present attributes.
    pub extras: Extras,
}

impl FlowState {
    /// An established TCP connection as conntrack holds it after the
    /// handshake (`SEEN_REPLY | ASSURED | CONFIRMED`) with `timeout_secs`
    /// left: zone 0, no mark, no window scaling, counters at zero, no
    /// extras. What an import, a sync message or a listing starts from.
    pub fn established_tcp(orig: Tuple, timeout_secs: u32) -> FlowState {
        FlowState {
            key: FlowKey { orig, zone: 0 },
            tcp_state: TcpState::Established,
            status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED,
            timeout_secs,
            mark: 0,
            wscale: [0, 0],
            counters: [Counters::default(); 2],
            extras: Extras::default(),
        }
    }

    /// The reply tuple: NAT's if present, else the inverse of the original.
    pub fn reply_tuple(&self) -> Tuple {
        self.extras.reply.unwrap_or_else(|| self.key.orig.reply())
    }
}

/// How much of a flow is replicated (the a-priori paper's sync levels):
/// set per rule (`sync established` on an accept rule), per zone or by
/// default in `[sync]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SyncLevel {
    /// Every state change (the default).
    #[default]
    Full = 0,
    /// Only once the flow is assured (TCP: handshake complete; others:
    /// traffic seen both ways), and its end.
    Established = 1,
    /// Never.
    None = 2,
}

impl SyncLevel {
    /// The name as written in rule and config files.
    pub fn name(self) -> &'static str {
        match self {
            SyncLevel::Full => "full",
            SyncLevel::Established => "established",
            SyncLevel::None => "none",
        }
    }

    /// Parses a name written by [`SyncLevel::name`].
    pub fn parse(s: &str) -> Option<SyncLevel> {
        match s {
            "full" => Some(SyncLevel::Full),
            "established" => Some(SyncLevel::Established),
            "none" => Some(SyncLevel::None),
            _ => None,
        }
    }

    /// From the two bits a shard entry keeps (3 reads as full).
    pub fn from_bits(b: u8) -> SyncLevel {
        match b & 3 {
            1 => SyncLevel::Established,
            2 => SyncLevel::None,
            _ => SyncLevel::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_state_numbering_matches_linux() {
        assert_eq!(TcpState::None as u8, 0);
        assert_eq!(TcpState::Established as u8, 3);
        assert_eq!(TcpState::SynSent2 as u8, 9);
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_u8(s as u8), Some(s));
            assert_eq!(TcpState::from_name(s.name()), Some(s));
        }
        assert_eq!(TcpState::from_u8(10), None);
    }

    #[test]
    fn extras_are_absent_until_written_and_compare_as_sets() {
        let t = Tuple::new(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            proto::TCP,
            40000,
            80,
        );
        let mut st = FlowState::established_tcp(t, 60);
        // No allocation for a flow without extras, and reads see none.
        assert!(st.extras.get().is_none());
        assert!(st.extras.is_empty() && st.extras.reply.is_none());
        assert_eq!(st.reply_tuple(), t.reply());
        // The state the sync thread moves by the million stays small.
        assert!(std::mem::size_of::<FlowState>() <= 96);
        // A write allocates; the set then reads back and is carried on.
        let nat = Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "203.0.113.1".parse().unwrap(),
            proto::TCP,
            80,
            1024,
        );
        st.extras.reply = Some(nat);
        assert_eq!(st.reply_tuple(), nat);
        let boxed = st.extras.clone().into_boxed().expect("a set");
        assert_eq!(boxed.reply, Some(nat));
        // Equality is of the sets: an allocated empty set equals none.
        let mut emptied = st.clone();
        emptied.extras.reply = None;
        assert!(emptied.extras.get().is_some());
        assert_eq!(emptied, FlowState::established_tcp(t, 60));
        assert_ne!(st, emptied);
        assert!(emptied.extras.clone().into_boxed().is_none());
        // Taking leaves none.
        assert_eq!(st.extras.take().reply, Some(nat));
        assert!(st.extras.get().is_none());
        assert_eq!(Extras::from(FlowExtras::default()).get(), None);
    }

    #[test]
    fn tuple_display_and_inverse() {
        let t = Tuple::new(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            proto::TCP,
            40000,
            80,
        );
        assert_eq!(
            t.to_string(),
            "src=192.0.2.1 dst=198.51.100.2 sport=40000 dport=80"
        );
        assert_eq!(t.inverse().inverse(), t);
        assert_eq!(t.inverse().src_port, 80);
        let i = Tuple::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            proto::ICMPV6,
            0x1234,
            128 << 8,
        );
        assert_eq!(
            i.to_string(),
            "src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=4660"
        );
    }
}
