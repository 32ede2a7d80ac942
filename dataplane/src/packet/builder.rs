//! Writes complete Ethernet + IPv4/IPv6 + TCP/UDP/ICMP frames with correct
//! lengths and checksums, for tests and the packet generator. Writing into a
//! caller's `&mut [u8]` does not allocate; [`FrameSpec::to_vec`] does.

use std::net::{IpAddr, Ipv4Addr};

use super::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use super::icmp::IcmpPacket;
use super::icmpv6::Icmpv6Packet;
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::{self, TcpPacket};
use super::tcp_opt::TcpOptions;
use super::udp::{self, UdpPacket};
use super::vlan::{self, VlanTag};
use super::{icmp, Error};
use crate::flow::proto;

/// The transport part of a [`FrameSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Spec {
    /// A TCP segment.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Flags byte ([`crate::meta::tcp_flags`]).
        flags: u8,
        /// Window.
        window: u16,
        /// Options (MSS, window scale, SACK-permitted, timestamps).
        options: TcpOptions,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An ICMP message (ICMPv6 when the addresses are IPv6). The identifier
    /// and sequence fill bytes 4..8 (zero them for error messages).
    Icmp {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Identifier (bytes 4..6).
        ident: u16,
        /// Sequence number (bytes 6..8).
        seq_no: u16,
    },
    /// Any other protocol: the payload follows the IP header directly.
    Raw {
        /// IP protocol number.
        proto: u8,
    },
}

impl L4Spec {
    /// A TCP header with the largest unscaled window (65535) and no
    /// options: the plain segment tests and traffic generators send.
    pub fn tcp(src_port: u16, dst_port: u16, flags: u8, seq: u32, ack: u32) -> L4Spec {
        L4Spec::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window: u16::MAX,
            options: TcpOptions::default(),
        }
    }

    /// L4 header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        match self {
            L4Spec::Tcp { options, .. } => tcp::HEADER_LEN + options.len(),
            L4Spec::Udp { .. } => udp::HEADER_LEN,
            L4Spec::Icmp { .. } => icmp::HEADER_LEN,
            L4Spec::Raw { .. } => 0,
        }
    }
}

/// Everything needed to write one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN id (a single C-tag, priority 0), if any.
    pub vlan: Option<u16>,
    /// Source address; its family selects IPv4 or IPv6.
    pub src_ip: IpAddr,
    /// Destination address; must be the same family as `src_ip`.
    pub dst_ip: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ip_id: u16,
    /// IPv4 don't-fragment flag (ignored for IPv6).
    pub dont_frag: bool,
    /// Transport header.
    pub l4: L4Spec,
    /// Payload length for [`FrameSpec::write`] (payload bytes are zero).
    pub payload_len: usize,
}

impl Default for FrameSpec {
    fn default() -> Self {
        FrameSpec {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            vlan: None,
            src_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ttl: 64,
            ip_id: 0,
            dont_frag: true,
            l4: L4Spec::Udp {
                src_port: 0,
                dst_port: 0,
            },
            payload_len: 0,
        }
    }
}

impl FrameSpec {
    /// L2 header length (14, or 18 with a VLAN tag).
    #[inline]
    pub fn l2_len(&self) -> usize {
        ethernet::HEADER_LEN
            + if self.vlan.is_some() {
                vlan::HEADER_LEN
            } else {
                0
            }
    }

    /// IP header length (20 or 40).
    #[inline]
    pub fn l3_header_len(&self) -> usize {
        if self.src_ip.is_ipv6() {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        }
    }

    /// IP packet length with a payload of `payload_len` bytes.
    #[inline]
    pub fn ip_len(&self, payload_len: usize) -> usize {
        self.l3_header_len() + self.l4.header_len() + payload_len
    }

    /// Frame length [`FrameSpec::write`] produces.
    #[inline]
    pub fn frame_len(&self) -> usize {
        self.l2_len() + self.ip_len(self.payload_len)
    }

    /// Writes the frame with `payload_len` zero bytes of payload into `buf`;
    /// returns the frame length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.frame_len();
        let out = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        let pl_start = n - self.payload_len;
        out[pl_start..].fill(0);
        self.write_headers(out, self.payload_len)
    }

    /// Writes the frame with `payload` as payload (`payload_len` is ignored);
    /// returns the frame length.
    pub fn write_with_payload(&self, payload: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.l2_len() + self.ip_len(payload.len());
        let out = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        out[n - payload.len()..].copy_from_slice(payload);
        self.write_headers(out, payload.len())
    }

    /// Writes the frame into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; self.frame_len()];
        self.write(&mut v)?;
        Ok(v)
    }

    /// Writes L2 headers, then [`FrameSpec::write_ip_headers`]; the payload
    /// is already in place at the end of `out`, which is exactly the frame.
    fn write_headers(&self, out: &mut [u8], payload_len: usize) -> Result<usize, Error> {
        let l2 = self.l2_len();
        let ip_et = if self.src_ip.is_ipv6() {
            ethertype::IPV6
        } else {
            ethertype::IPV4
        };
        let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        match self.vlan {
            Some(vid) => {
                eth.set_ethertype(ethertype::VLAN);
                let mut tag = VlanTag::new_unchecked(&mut out[ethernet::HEADER_LEN..]);
                tag.set_fields(0, false, vid);
                tag.set_ethertype(ip_et);
            }
            None => eth.set_ethertype(ip_et),
        }
        self.write_ip_headers(&mut out[l2..], payload_len)?;
        Ok(out.len())
    }

    /// Writes IP and L4 headers and checksums into `ip`, which must be
    /// exactly the IP packet with the payload already in its last
    /// `payload_len` bytes. Used by [`super::reject`] to answer behind an
    /// arbitrary copied L2 header.
    pub fn write_ip_headers(&self, ip: &mut [u8], payload_len: usize) -> Result<(), Error> {
        if ip.len() != self.ip_len(payload_len) {
            return Err(Error::BufferTooSmall);
        }
        let l3h = self.l3_header_len();
        let p = match (self.l4, self.src_ip.is_ipv6()) {
            (L4Spec::Tcp { .. }, _) => proto::TCP,
            (L4Spec::Udp { .. }, _) => proto::UDP,
            (L4Spec::Icmp { .. }, false) => proto::ICMP,
            (L4Spec::Icmp { .. }, true) => proto::ICMPV6,
            (L4Spec::Raw { proto }, _) => proto,
        };
        let (l3, seg) = ip.split_at_mut(l3h);
        match (self.src_ip, self.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(l3h + seg.len()).map_err(|_| Error::Unsupported)?;
                let mut h = Ipv4Packet::new_unchecked(&mut l3[..]);
                h.set_header_len(ipv4::HEADER_LEN);
                h.set_tos(0);
                h.set_total_len(total);
                h.set_ident(self.ip_id);
                h.set_frag(self.dont_frag, false, 0);
                h.set_ttl(self.ttl);
                h.set_protocol(p);
                h.set_src_addr(s.octets());
                h.set_dst_addr(d.octets());
                h.fill_checksum();
                self.write_l4(seg, Addrs::V4(s.octets(), d.octets()))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let plen = u16::try_from(seg.len()).map_err(|_| Error::Unsupported)?;
                let mut h = Ipv6Packet::new_unchecked(&mut l3[..]);
                h.set_version_tc_flow(0, 0);
                h.set_payload_len(plen);
                h.set_next_header(p);
                h.set_hop_limit(self.ttl);
                h.set_src_addr(s.octets());
                h.set_dst_addr(d.octets());
                self.write_l4(seg, Addrs::V6(s.octets(), d.octets()))
            }
            _ => Err(Error::Malformed),
        }
    }

    /// Writes the L4 header (payload already in place) and its checksum.
    fn write_l4(&self, seg: &mut [u8], addrs: Addrs) -> Result<(), Error> {
        match self.l4 {
            L4Spec::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                options,
            } => {
                let mut t = TcpPacket::new_unchecked(&mut seg[..]);
                t.set_src_port(src_port);
                t.set_dst_port(dst_port);
                t.set_seq_number(seq);
                t.set_ack_number(ack);
                t.set_header_len(tcp::HEADER_LEN + options.len());
                t.set_flags(flags);
                t.set_window_len(window);
                t.set_urgent_ptr(0);
                options.emit(t.options_mut())?;
                match addrs {
                    Addrs::V4(s, d) => t.fill_checksum_v4(&s, &d),
                    Addrs::V6(s, d) => t.fill_checksum_v6(&s, &d),
                }
            }
            L4Spec::Udp { src_port, dst_port } => {
                let len = u16::try_from(seg.len()).map_err(|_| Error::Unsupported)?;
                let mut u = UdpPacket::new_unchecked(&mut seg[..]);
                u.set_src_port(src_port);
                u.set_dst_port(dst_port);
                u.set_len(len);
                match addrs {
                    Addrs::V4(s, d) => u.fill_checksum_v4(&s, &d),
                    Addrs::V6(s, d) => u.fill_checksum_v6(&s, &d),
                }
            }
            L4Spec::Icmp {
                msg_type,
                code,
                ident,
                seq_no,
            } => match addrs {
                Addrs::V4(..) => {
                    let mut m = IcmpPacket::new_unchecked(&mut seg[..]);
                    m.set_msg_type(msg_type);
                    m.set_msg_code(code);
                    m.set_ident(ident);
                    m.set_seq_no(seq_no);
                    m.fill_checksum();
                }
                Addrs::V6(s, d) => {
                    let mut m = Icmpv6Packet::new_unchecked(&mut seg[..]);
                    m.set_msg_type(msg_type);
                    m.set_msg_code(code);
                    m.set_ident(ident);
                    m.set_seq_no(seq_no);
                    m.fill_checksum(&s, &d);
                }
            },
            L4Spec::Raw { .. } => {}
        }
        Ok(())
    }
}

/// Address pair for checksums.
#[derive(Clone, Copy)]
enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden;

    #[test]
    fn construct_tcp_syn() {
        let spec = golden::tcp_syn_spec();
        let mut b = [0u8; 128];
        let n = spec.write(&mut b).unwrap();
        assert_eq!(&b[..n], &golden::TCP_SYN[..]);
        assert_eq!(spec.to_vec().unwrap(), golden::TCP_SYN.to_vec());
    }

    #[test]
    fn construct_udp_dns() {
        let spec = golden::udp_dns_spec();
        let mut b = [0u8; 128];
        let n = spec
            .write_with_payload(&golden::UDP_DNS[42..], &mut b)
            .unwrap();
        assert_eq!(&b[..n], &golden::UDP_DNS[..]);
    }

    #[test]
    fn construct_icmp_echo() {
        let spec = golden::icmp_echo_spec();
        let mut b = [0u8; 128];
        let n = spec.write_with_payload(b"abcdefgh", &mut b).unwrap();
        assert_eq!(&b[..n], &golden::ICMP_ECHO[..]);
    }

    #[test]
    fn construct_icmpv6_echo() {
        let spec = golden::icmpv6_echo_spec();
        let mut b = [0u8; 128];
        let n = spec.write_with_payload(b"ping", &mut b).unwrap();
        assert_eq!(&b[..n], &golden::ICMPV6_ECHO[..]);
    }

    #[test]
    fn errors() {
        let mut spec = golden::tcp_syn_spec();
        assert_eq!(spec.write(&mut [0u8; 73]), Err(Error::BufferTooSmall));
        spec.dst_ip = "::1".parse().unwrap();
        assert_eq!(spec.write(&mut [0u8; 128]), Err(Error::Malformed));
        let big = FrameSpec {
            payload_len: 70_000,
            l4: L4Spec::Raw { proto: 99 },
            ..FrameSpec::default()
        };
        assert_eq!(big.to_vec(), Err(Error::Unsupported));
    }
}
