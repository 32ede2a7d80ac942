//! [`PacketMeta`]: the facts the parser extracts from one frame, in the form
//! the conntrack and ACL stages consume. Filled by [`crate::packet::parse_frame`]
//! without allocation; `Copy` so a burst can hold 32 of them on the stack.

use crate::flow::Tuple;

/// What the frame carries at layer 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum L3Kind {
    /// Not IP (ARP, LLDP, anything else): passed through in transparent mode.
    #[default]
    NonIp,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// Fragment position of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fragment {
    /// Not a fragment.
    #[default]
    None,
    /// First fragment (offset 0, more fragments follow): carries the L4 header.
    First,
    /// A later fragment: no L4 header, ports unknown.
    Later,
}

/// A fragment's header fields (all zero for a packet that is no fragment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragFacts {
    /// Identification (IPv4's 16 bits, IPv6's 32).
    pub ident: u32,
    /// Offset in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

/// TCP header flag bits as in the header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// TCP facts needed by the TCP state tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFacts {
    /// Flags byte ([`tcp_flags`]).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Raw (unscaled) window.
    pub window: u16,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Window scale option, if present (value as sent, not clamped).
    pub wscale: Option<u8>,
    /// SACK-permitted option present.
    pub sack_perm: bool,
}

/// Everything the pipeline needs to know about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PacketMeta {
    /// Ethertype after any 802.1Q tags.
    pub ethertype: u16,
    /// VLAN id of the outermost 802.1Q tag, if any.
    pub vlan: Option<u16>,
    /// Layer 3 kind.
    pub l3: L3Kind,
    /// Offset of the IP header in the frame.
    pub l3_offset: u16,
    /// Offset of the L4 header in the frame (after IPv4 options or IPv6
    /// extension headers); equals the end of the IP header for later fragments.
    pub l4_offset: u16,
    /// IP total length (IPv4 total length, IPv6 payload length + 40).
    pub ip_len: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Fragment position.
    pub fragment: Fragment,
    /// Fragment header fields (for virtual reassembly).
    pub frag: FragFacts,
    /// The packet's tuple as seen on the wire (addresses, final protocol,
    /// ports, or ICMP id and type/code). Ports are zero for later fragments.
    pub tuple: Tuple,
    /// TCP facts (meaningful only for TCP).
    pub tcp: TcpFacts,
    /// For ICMP/ICMPv6 error messages (destination unreachable, time
    /// exceeded, parameter problem, source quench, packet too big): the tuple
    /// of the embedded packet that caused the error, as that packet was sent.
    pub icmp_error: Option<Tuple>,
    /// IPv6 with a type-0 routing header (RFC 5095 deprecates it; dropped).
    pub rh0: bool,
    /// The L4 checksum was verified and is wrong (set by the pipeline's
    /// parse step, not by [`crate::packet::parse_frame`]).
    pub l4_csum_bad: bool,
}

impl PacketMeta {
    /// Whether this is an IP packet.
    pub fn is_ip(&self) -> bool {
        self.l3 != L3Kind::NonIp
    }
}
