//! Packet generator for the pipeline benchmark: prebuilt frames for a set of
//! established flows (both directions), and first packets (SYN or UDP) of
//! ever-new flows made by patching a template in place with incremental
//! checksum updates, so generating a packet costs a copy and a few stores.

use std::net::{IpAddr, Ipv4Addr};

use ftfw_dataplane::flow::{proto, Tuple};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{
    checksum, ethernet, ipv4, FrameSpec, Ipv4Packet, L4Spec, TcpPacket, UdpPacket,
};

/// Server port every lab flow talks to.
pub const SERVER_PORT: u16 = 80;
/// Smallest frame (without FCS) the generator makes: a 64-byte packet.
pub const MIN_FRAME: usize = 60;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// The `i`-th lab flow of a space: clients in 192.0.2.0/24, servers in
/// `server_net` (198.51.100.0/24 for established flows, 203.0.113.0/24 for
/// new ones), unique for 4 billion flows.
pub fn flow_addrs(i: u64, server_net: [u8; 3]) -> (Ipv4Addr, u16, Ipv4Addr) {
    let client = Ipv4Addr::new(192, 0, 2, (1 + i % 250) as u8);
    let sport = 1024 + ((i / 250) % 64000) as u16;
    let server = Ipv4Addr::new(
        server_net[0],
        server_net[1],
        server_net[2],
        (1 + (i / (250 * 64000)) % 250) as u8,
    );
    (client, sport, server)
}

/// The tuple of the `i`-th flow.
pub fn flow_tuple(i: u64, udp: bool, server_net: [u8; 3]) -> Tuple {
    let (c, sp, s) = flow_addrs(i, server_net);
    Tuple::new(
        IpAddr::V4(c),
        IpAddr::V4(s),
        if udp { proto::UDP } else { proto::TCP },
        sp,
        SERVER_PORT,
    )
}

/// Client and server initial sequence numbers of every lab flow.
const CLIENT_ISN: u32 = 1_000;
const SERVER_ISN: u32 = 900_000;

fn spec(t: &Tuple, reply: bool, l4: L4Spec, frame_len: usize) -> FrameSpec {
    let (src, dst) = if reply {
        (t.dst_ip(), t.src_ip())
    } else {
        (t.src_ip(), t.dst_ip())
    };
    let mut s = FrameSpec {
        src_mac: if reply { SERVER_MAC } else { CLIENT_MAC },
        dst_mac: if reply { CLIENT_MAC } else { SERVER_MAC },
        src_ip: src,
        dst_ip: dst,
        l4,
        ..FrameSpec::default()
    };
    s.payload_len = 0;
    let hdr = s.frame_len();
    s.payload_len = frame_len.saturating_sub(hdr);
    s
}

fn tcp(t: &Tuple, reply: bool, flags: u8, seq: u32, ack: u32) -> L4Spec {
    let (sp, dp) = if reply {
        (t.dst_port, t.src_port)
    } else {
        (t.src_port, t.dst_port)
    };
    L4Spec::tcp(sp, dp, flags, seq, ack)
}

/// Writes one frame of flow `t` into `out` (cleared first).
fn write(out: &mut Vec<u8>, s: &FrameSpec) {
    let start = out.len();
    out.resize(start + s.frame_len().max(MIN_FRAME), 0);
    let n = s.write(&mut out[start..]).expect("lab frame fits");
    out.truncate(start + n.max(MIN_FRAME));
}

/// Frames that open flow `t` (TCP handshake, or one UDP exchange), in order,
/// each with whether it travels in the reply direction.
pub fn opening(t: &Tuple) -> Vec<(bool, Vec<u8>)> {
    let mut v = Vec::new();
    let mut push = |reply: bool, l4: L4Spec, payload: bool| {
        let mut b = Vec::new();
        write(
            &mut b,
            &spec(t, reply, l4, if payload { MIN_FRAME } else { 0 }),
        );
        v.push((reply, b));
    };
    if t.proto == proto::TCP {
        push(false, tcp(t, false, f::SYN, CLIENT_ISN, 0), false);
        push(
            true,
            tcp(t, true, f::SYN | f::ACK, SERVER_ISN, CLIENT_ISN + 1),
            false,
        );
        push(
            false,
            tcp(t, false, f::ACK, CLIENT_ISN + 1, SERVER_ISN + 1),
            false,
        );
    } else {
        push(
            false,
            L4Spec::Udp {
                src_port: t.src_port,
                dst_port: t.dst_port,
            },
            true,
        );
        push(
            true,
            L4Spec::Udp {
                src_port: t.dst_port,
                dst_port: t.src_port,
            },
            true,
        );
    }
    v
}

/// Data frames of an established flow `t` of `frame_len` bytes: one per
/// direction. Replaying them is in window (the same segments again).
pub fn data_frames(t: &Tuple, frame_len: usize) -> [Vec<u8>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    if t.proto == proto::TCP {
        let s0 = spec(
            t,
            false,
            tcp(t, false, f::ACK | f::PSH, CLIENT_ISN + 1, SERVER_ISN + 1),
            frame_len,
        );
        let sent = s0.payload_len as u32;
        let s1 = spec(
            t,
            true,
            tcp(t, true, f::ACK, SERVER_ISN + 1, CLIENT_ISN + 1 + sent),
            frame_len,
        );
        write(&mut out[0], &s0);
        write(&mut out[1], &s1);
    } else {
        write(
            &mut out[0],
            &spec(
                t,
                false,
                L4Spec::Udp {
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                },
                frame_len,
            ),
        );
        write(
            &mut out[1],
            &spec(
                t,
                true,
                L4Spec::Udp {
                    src_port: t.dst_port,
                    dst_port: t.src_port,
                },
                frame_len,
            ),
        );
    }
    out
}

/// Makes first packets of new flows by patching a template.
#[derive(Debug, Clone)]
pub struct NewFlowGen {
    template: Vec<u8>,
    udp: bool,
    next: u64,
}

impl NewFlowGen {
    /// Generator of new TCP SYNs (or UDP first packets) of `frame_len` bytes
    /// towards 203.0.113.0/24.
    pub fn new(udp: bool, frame_len: usize) -> NewFlowGen {
        let t = flow_tuple(0, udp, [203, 0, 113]);
        let l4 = if udp {
            L4Spec::Udp {
                src_port: t.src_port,
                dst_port: t.dst_port,
            }
        } else {
            tcp(&t, false, f::SYN, CLIENT_ISN, 0)
        };
        let mut template = Vec::new();
        write(&mut template, &spec(&t, false, l4, frame_len));
        NewFlowGen {
            template,
            udp,
            next: 0,
        }
    }

    /// Writes the next new flow's first packet into `out`.
    pub fn next_into(&mut self, out: &mut Vec<u8>) {
        let (c, sport, s) = flow_addrs(self.next, [203, 0, 113]);
        self.next += 1;
        out.clear();
        out.extend_from_slice(&self.template);
        // The template has no VLAN tag and no IP options.
        let Some(frame) = out.get_mut(ethernet::HEADER_LEN..) else {
            return;
        };
        let (hdr, seg) = frame.split_at_mut(ipv4::HEADER_LEN.min(frame.len()));
        let mut ip = Ipv4Packet::new_unchecked(hdr);
        let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
        let (new_src, new_dst) = (c.octets(), s.octets());
        // Both checksums cover the addresses (the L4 one through the
        // pseudo-header): update them incrementally.
        let addrs = |sum: u16| {
            let sum = checksum::update_bytes(sum, &old_src, &new_src);
            checksum::update_bytes(sum, &old_dst, &new_dst)
        };
        let ip_sum = addrs(ip.checksum());
        ip.set_src_addr(new_src);
        ip.set_dst_addr(new_dst);
        ip.set_checksum(ip_sum);
        if self.udp {
            let mut u = UdpPacket::new_unchecked(seg);
            let l4_sum = checksum::update_u16(addrs(u.checksum()), u.src_port(), sport);
            u.set_src_port(sport);
            u.set_checksum(l4_sum);
        } else {
            let mut t = TcpPacket::new_unchecked(seg);
            let l4_sum = checksum::update_u16(addrs(t.checksum()), t.src_port(), sport);
            t.set_src_port(sport);
            t.set_checksum(l4_sum);
        }
    }

    /// New flows generated so far.
    pub fn generated(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::packet::{l4_checksum_valid, parse_frame};

    #[test]
    fn generated_frames_parse_with_valid_checksums() {
        for udp in [false, true] {
            let mut g = NewFlowGen::new(udp, 60);
            let mut b = Vec::new();
            for i in 0..300u64 {
                g.next_into(&mut b);
                let m = parse_frame(&b).unwrap();
                assert_eq!(m.tuple, flow_tuple(i, udp, [203, 0, 113]));
                assert_eq!(l4_checksum_valid(&b, &m), Some(true));
                assert_eq!(b.len(), 60);
            }
            let t = flow_tuple(12345, udp, [198, 51, 100]);
            for (reply, fr) in opening(&t) {
                let m = parse_frame(&fr).unwrap();
                assert_eq!(m.tuple, if reply { t.inverse() } else { t });
            }
            for (k, fr) in data_frames(&t, 128).iter().enumerate() {
                let m = parse_frame(fr).unwrap();
                assert_eq!(fr.len(), 128);
                assert_eq!(m.tuple, if k == 1 { t.inverse() } else { t });
            }
        }
    }
}
