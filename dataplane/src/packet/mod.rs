//! Packet parsing and building.
//!
//! Two levels, in the smoltcp manner:
//! - zero-copy checked views, one per header ([`ethernet::EthernetFrame`],
//!   [`vlan::VlanTag`], [`arp::ArpPacket`], [`ipv4::Ipv4Packet`],
//!   [`ipv6::Ipv6Packet`] and its extension headers in [`ipv6_ext`],
//!   [`tcp::TcpPacket`] with [`tcp_opt`], [`udp::UdpPacket`],
//!   [`icmp::IcmpPacket`], [`icmpv6::Icmpv6Packet`]). `new_checked` validates
//!   every length an accessor relies on, so after it succeeds no getter can
//!   panic; setters exist when the buffer is `AsMut<[u8]>` (the shared
//!   boilerplate is declared by the macros of `view.rs`);
//! - validated `Repr`s with `parse`, `buffer_len` and `emit` (lengths and
//!   checksums filled) for the messages we originate: [`arp::ArpRepr`],
//!   [`ndisc::NdiscRepr`], [`icmp_error::IcmpErrorRepr`].
//!
//! [`walk`] is the one header walker (Ethernet, VLAN, IPv4/IPv6 and
//! extension headers to L4), shared by [`parse_frame`] (the hot-path entry
//! point that fills a [`PacketMeta`] without allocating), the AF_PACKET
//! checksum completion and the sync-datagram dissector. [`checksum`] is the
//! one Internet checksum: sums, pseudo-headers, RFC 1624 incremental updates
//! and [`checksum::verify_l4`]. [`builder`] writes complete frames (tests and
//! the packet generator); [`reject`] writes TCP RST and ICMP unreachable
//! answers for the ACL's `reject` action, the latter with
//! [`icmp_error::write_answer`], the one ICMP error builder (the router's
//! time exceeded uses it too).
//!
//! Invariant: no input makes anything here panic. Decoding uses explicit
//! bounds checks (`get`, length comparisons) before every index.

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod exercise;
pub mod icmp;
pub mod icmp_error;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod ndisc;
mod parse;
pub mod reject;
pub mod tcp;
pub mod tcp_opt;
pub mod udp;
mod view;
pub mod vlan;
pub mod walk;

#[cfg(test)]
pub(crate) mod golden;
#[cfg(test)]
mod proptests;

use std::fmt;

pub use crate::meta::PacketMeta;
pub use arp::ArpPacket;
pub use builder::{FrameSpec, L4Spec};
pub use ethernet::EthernetFrame;
pub use icmp::IcmpPacket;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use ipv6_ext::{ExtChain, FragInfo, Ipv6ExtHeader, Ipv6FragHeader, RoutingInfo};
pub use parse::{l4_checksum_valid, parse_frame, parse_frame_into, MAX_VLAN_TAGS};
pub use reject::{icmp_unreachable, tcp_rst};
pub use tcp::TcpPacket;
pub use tcp_opt::{TcpOption, TcpOptionIter, TcpOptions};
pub use udp::UdpPacket;
pub use vlan::VlanTag;

/// Why a frame could not be parsed or built. Small and `Copy`: the hot path
/// counts these per kind and drops the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before a header or a length field says it should.
    Truncated,
    /// A field has an impossible value (bad version, header length too
    /// small, malformed option or extension header chain).
    Malformed,
    /// The IPv4 header checksum is wrong.
    BadChecksum,
    /// Valid but not handled here (too many VLAN tags, too many IPv6
    /// extension headers, frames over 64 KiB, nothing to answer).
    Unsupported,
    /// A builder's output buffer is too small for what it has to write.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::BadChecksum => "bad IPv4 header checksum",
            Error::Unsupported => "unsupported packet",
            Error::BufferTooSmall => "output buffer too small",
        })
    }
}

impl std::error::Error for Error {}

/// Reads a big-endian u16 at `at`. Callers guarantee `at + 2 <= b.len()`.
#[inline]
pub(crate) fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian u32 at `at`. Callers guarantee `at + 4 <= b.len()`.
#[inline]
pub(crate) fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a big-endian u16 at `at`.
#[inline]
pub(crate) fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `at`.
#[inline]
pub(crate) fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Copies `N` bytes starting at `at` into an array.
#[inline]
pub(crate) fn rd_array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}
