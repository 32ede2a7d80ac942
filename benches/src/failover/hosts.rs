//! The client and server hosts: just enough TCP (and a UDP protocol) for
//! HTTP-like downloads through the firewalls, and the wire between the
//! hosts and the firewalls.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{parse_frame, FrameSpec, L4Spec, TcpOptions};
use ftfw_dataplane::port::{PacketBuf, Port};
use ftfw_dataplane::rng::splitmix64;

use super::node::Node;
use super::{
    BASE_PORT, CLIENT_MAC, MSS, REQ_LEN, RTO, SERVER_IP, SERVER_MAC, SERVER_PORT, UDP_PORT,
    UDP_WINDOW, WINDOW, WINDOW_SEGS,
};

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum St {
    Idle,
    SynSent,
    Established,
    Done,
    Broken,
}

/// One transfer: the client's and the server's ends of it.
pub(super) struct Transfer {
    pub(super) cip: Ipv4Addr,
    pub(super) sport: u16,
    /// Over UDP (see [`udp_len`]) instead of TCP.
    pub(super) udp: bool,
    pub(super) st: St,
    pub(super) reset: bool,
    // Client.
    pub(super) c_iss: u32,
    /// Next server sequence number the client expects.
    pub(super) c_rcv_nxt: u32,
    pub(super) got: usize,
    pub(super) req_acked: bool,
    pub(super) c_last_tx: Instant,
    pub(super) last_progress: Instant,
    pub(super) established_at_crash: bool,
    /// First segment fw2 forwarded to the client after the crash.
    pub(super) resumed_at: Option<Instant>,
    /// When the client sent its first SYN.
    pub(super) opened_at: Instant,
    /// First SYN to the SYN-ACK at the client (connection set-up time).
    pub(super) setup: Option<Duration>,
    // Server.
    pub(super) s_open: bool,
    pub(super) s_iss: u32,
    /// Request received.
    pub(super) s_req: bool,
    /// Offsets (0..=size+1, size is the FIN) acknowledged and sent next.
    pub(super) s_una: usize,
    pub(super) s_nxt: usize,
    pub(super) s_timer: Instant,
}

impl Transfer {
    /// Whether the transfer was established at the crash and still
    /// needed a firewall: not one that completed on frames forwarded
    /// before the crash (its last data already on the wire) without one
    /// frame through the survivor. Only such transfers say anything about
    /// recovery, and counting the others as recovered made the lab's
    /// negative control (backup flushed at the crash) fail now and then.
    pub(super) fn needed_a_firewall_after_the_crash(&self) -> bool {
        self.established_at_crash && !(self.st == St::Done && self.resumed_at.is_none())
    }

    /// Of those, whether it completed (through the survivor).
    pub(super) fn recovered(&self) -> bool {
        self.needed_a_firewall_after_the_crash() && self.st == St::Done
    }

    pub(super) fn live(&self) -> bool {
        matches!(self.st, St::SynSent | St::Established)
    }
}

pub(super) fn seg(
    cip: Ipv4Addr,
    from_client: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
) -> Vec<u8> {
    let (src_ip, dst_ip, src_mac, dst_mac, src_port, dst_port) = if from_client {
        (cip, SERVER_IP, CLIENT_MAC, SERVER_MAC, sport, SERVER_PORT)
    } else {
        (SERVER_IP, cip, SERVER_MAC, CLIENT_MAC, SERVER_PORT, sport)
    };
    FrameSpec {
        src_mac,
        dst_mac,
        src_ip: IpAddr::V4(src_ip),
        dst_ip: IpAddr::V4(dst_ip),
        l4: L4Spec::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window: WINDOW,
            options: TcpOptions::default(),
        },
        payload_len: len,
        ..FrameSpec::default()
    }
    .to_vec()
    .expect("a valid TCP frame")
}

/// A UDP datagram of a UDP transfer with `len` bytes of payload.
pub(super) fn dgram(cip: Ipv4Addr, from_client: bool, sport: u16, len: usize) -> Vec<u8> {
    let (src_ip, dst_ip, src_mac, dst_mac, src_port, dst_port) = if from_client {
        (cip, SERVER_IP, CLIENT_MAC, SERVER_MAC, sport, UDP_PORT)
    } else {
        (SERVER_IP, cip, SERVER_MAC, CLIENT_MAC, UDP_PORT, sport)
    };
    FrameSpec {
        src_mac,
        dst_mac,
        src_ip: IpAddr::V4(src_ip),
        dst_ip: IpAddr::V4(dst_ip),
        l4: L4Spec::Udp { src_port, dst_port },
        payload_len: len,
        ..FrameSpec::default()
    }
    .to_vec()
    .expect("a valid UDP frame")
}

/// UDP transfers carry no header of their own: datagram `k` of an object
/// is `1000 + k % 256` bytes long (the last one is what remains), so its
/// length tells the receiver which one it is; with 16 in flight that is
/// unambiguous. The client acknowledges every datagram with a datagram of
/// `1 + next % 256` bytes (`next`: the index it expects), the request is 16
/// bytes. The server goes back to the first unacknowledged datagram after
/// an RTO without progress; the client repeats its request, or its last
/// acknowledgement, after an RTO without data.
pub(super) fn udp_len(k: usize) -> usize {
    1000 + k % 256
}

/// Byte offset of UDP datagram `k`.
pub(super) fn udp_offset(k: usize) -> usize {
    let (laps, r) = (k / 256, k % 256);
    1000 * k + laps * (255 * 256 / 2) + r * r.saturating_sub(1) / 2
}

/// Payload length of a UDP frame (`None`: not UDP from/to our ports).
pub(super) fn udp_payload(m: &ftfw_dataplane::meta::PacketMeta) -> usize {
    let ip_hdr = usize::from(m.l4_offset.saturating_sub(m.l3_offset));
    usize::from(m.ip_len).saturating_sub(ip_hdr + 8)
}

/// The run's state apart from the cluster.
pub(super) struct Hosts {
    pub(super) t: Vec<Transfer>,
    pub(super) size: usize,
    pub(super) to_server: VecDeque<Vec<u8>>,
    pub(super) to_client: VecDeque<Vec<u8>>,
    pub(super) crash: Option<Instant>,
    pub(super) recovered_at: Option<Instant>,
    /// Client address of this traffic phase.
    pub(super) cip: Ipv4Addr,
    pub(super) retransmitted: u64,
    pub(super) delivered: usize,
}

impl Hosts {
    /// `n` idle transfers of `size` bytes from client address `cip`, a
    /// `udp_share` of them over UDP (spread evenly: every k-th), initial
    /// sequence numbers from `rng`.
    pub(super) fn new(
        cip: Ipv4Addr,
        n: usize,
        size: usize,
        udp_share: f64,
        rng: &mut u64,
        t0: Instant,
    ) -> Hosts {
        let t = (0..n)
            .map(|i| Transfer {
                cip,
                sport: BASE_PORT + u16::try_from(i).unwrap_or(u16::MAX),
                udp: udp_share > 0.0
                    && ((i + 1) as f64 * udp_share).floor() > (i as f64 * udp_share).floor(),
                st: St::Idle,
                reset: false,
                c_iss: splitmix64(rng) as u32,
                c_rcv_nxt: 0,
                got: 0,
                req_acked: false,
                c_last_tx: t0,
                last_progress: t0,
                established_at_crash: false,
                resumed_at: None,
                opened_at: t0,
                setup: None,
                s_open: false,
                s_iss: 0,
                s_req: false,
                s_una: 0,
                s_nxt: 0,
                s_timer: t0,
            })
            .collect();
        Hosts {
            t,
            size,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            crash: None,
            recovered_at: None,
            cip,
            retransmitted: 0,
            delivered: 0,
        }
    }

    /// Opens transfer `i`: its SYN (or UDP request) goes to the server.
    pub(super) fn open(&mut self, i: usize, now: Instant) {
        let Some(x) = self.t.get_mut(i) else { return };
        x.st = St::SynSent;
        x.c_last_tx = now;
        x.last_progress = now;
        x.opened_at = now;
        self.to_server.push_back(if x.udp {
            x.c_rcv_nxt = 0;
            dgram(x.cip, true, x.sport, REQ_LEN as usize)
        } else {
            seg(x.cip, true, x.sport, x.c_iss, 0, f::SYN, 0)
        });
    }

    pub(super) fn index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(BASE_PORT)?);
        (i < self.t.len()).then_some(i)
    }

    /// A frame that reached the client host; `via_survivor`: from a
    /// firewall that did not crash (after a crash, that marks a resumed
    /// transfer).
    pub(super) fn client_rx(&mut self, frame: &[u8], via_survivor: bool, now: Instant) {
        let Ok(m) = parse_frame(frame) else { return };
        if m.tuple.proto == 17 {
            self.client_rx_udp(&m, via_survivor, now);
            return;
        }
        if m.tuple.proto != 6
            || m.tuple.src_port != SERVER_PORT
            || m.tuple.dst_ip() != IpAddr::V4(self.cip)
        {
            return;
        }
        let Some(i) = self.index(m.tuple.dst_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        let tcp = m.tcp;
        if via_survivor && x.established_at_crash && self.crash.is_some() && x.resumed_at.is_none()
        {
            x.resumed_at = Some(now);
        }
        if tcp.flags & f::RST != 0 {
            if x.live() {
                x.st = St::Broken;
                x.reset = true;
            }
            return;
        }
        let c_snd = x.c_iss.wrapping_add(1 + REQ_LEN);
        match x.st {
            St::SynSent => {
                if tcp.flags & (f::SYN | f::ACK) == f::SYN | f::ACK
                    && tcp.ack == x.c_iss.wrapping_add(1)
                {
                    x.c_rcv_nxt = tcp.seq.wrapping_add(1);
                    x.st = St::Established;
                    x.setup = Some(now.duration_since(x.opened_at));
                    x.last_progress = now;
                    x.c_last_tx = now;
                    let seq = x.c_iss.wrapping_add(1);
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        seq,
                        x.c_rcv_nxt,
                        f::ACK,
                        0,
                    ));
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        seq,
                        x.c_rcv_nxt,
                        f::ACK | f::PSH,
                        REQ_LEN as usize,
                    ));
                }
            }
            St::Established => {
                if tcp.flags & f::SYN != 0 {
                    // A duplicate SYN-ACK: acknowledge it again.
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        c_snd,
                        x.c_rcv_nxt,
                        f::ACK,
                        0,
                    ));
                    return;
                }
                if tcp.flags & f::ACK != 0 && tcp.ack == c_snd {
                    x.req_acked = true;
                }
                let len = tcp.payload_len as usize;
                if len > 0 {
                    if via_survivor
                        && x.established_at_crash
                        && self.crash.is_some()
                        && self.recovered_at.is_none()
                    {
                        self.recovered_at = Some(now);
                    }
                    if tcp.seq == x.c_rcv_nxt && x.got + len <= size {
                        x.c_rcv_nxt = x.c_rcv_nxt.wrapping_add(tcp.payload_len);
                        x.got += len;
                        self.delivered += len;
                        x.last_progress = now;
                    }
                }
                let mut flags = f::ACK;
                if tcp.flags & f::FIN != 0
                    && tcp.seq.wrapping_add(tcp.payload_len) == x.c_rcv_nxt
                    && x.got == size
                {
                    x.c_rcv_nxt = x.c_rcv_nxt.wrapping_add(1);
                    x.st = St::Done;
                    flags |= f::FIN;
                }
                if len > 0 || flags & f::FIN != 0 {
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        c_snd,
                        x.c_rcv_nxt,
                        flags,
                        0,
                    ));
                }
            }
            St::Done => {
                if tcp.flags & f::FIN != 0 {
                    // The server did not see our FIN-ACK: send it again.
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        c_snd,
                        x.c_rcv_nxt,
                        f::FIN | f::ACK,
                        0,
                    ));
                }
            }
            St::Idle | St::Broken => {}
        }
    }

    /// A frame that reached the server host.
    pub(super) fn server_rx(&mut self, frame: &[u8], now: Instant, rng: &mut u64) {
        let Ok(m) = parse_frame(frame) else { return };
        if m.tuple.proto == 17 {
            self.server_rx_udp(&m, now);
            return;
        }
        if m.tuple.proto != 6
            || m.tuple.dst_port != SERVER_PORT
            || m.tuple.src_ip() != IpAddr::V4(self.cip)
        {
            return;
        }
        let Some(i) = self.index(m.tuple.src_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        let tcp = m.tcp;
        if tcp.flags & f::RST != 0 {
            if x.live() {
                x.st = St::Broken;
                x.reset = true;
            }
            return;
        }
        let c_data = x.c_iss.wrapping_add(1);
        if tcp.flags & f::SYN != 0 {
            if !x.s_open {
                x.s_open = true;
                x.s_iss = splitmix64(rng) as u32;
            }
            if !x.s_req {
                self.to_client.push_back(seg(
                    x.cip,
                    false,
                    x.sport,
                    x.s_iss,
                    c_data,
                    f::SYN | f::ACK,
                    0,
                ));
            }
            return;
        }
        if !x.s_open {
            return;
        }
        if tcp.flags & f::ACK != 0 {
            let off = tcp.ack.wrapping_sub(x.s_iss.wrapping_add(1)) as usize;
            if off <= size + 1 && off > x.s_una {
                x.s_una = off;
                x.s_nxt = x.s_nxt.max(off);
                x.s_timer = now;
            }
        }
        if tcp.payload_len > 0 && tcp.seq == c_data && !x.s_req {
            x.s_req = true;
            x.s_timer = now;
        }
        if tcp.flags & f::FIN != 0 && x.s_req {
            let ack = c_data.wrapping_add(REQ_LEN + 1);
            let seq = x.s_iss.wrapping_add(2).wrapping_add(size as u32);
            self.to_client
                .push_back(seg(x.cip, false, x.sport, seq, ack, f::ACK, 0));
        }
    }

    /// A UDP datagram that reached the client host (`via_survivor` as in
    /// [`Hosts::client_rx`]).
    pub(super) fn client_rx_udp(
        &mut self,
        m: &ftfw_dataplane::meta::PacketMeta,
        via_survivor: bool,
        now: Instant,
    ) {
        if m.tuple.src_port != UDP_PORT || m.tuple.dst_ip() != IpAddr::V4(self.cip) {
            return;
        }
        let Some(i) = self.index(m.tuple.dst_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        if !x.udp {
            return;
        }
        if via_survivor && x.established_at_crash && self.crash.is_some() && x.resumed_at.is_none()
        {
            x.resumed_at = Some(now);
        }
        // c_rcv_nxt: the index of the datagram expected next.
        let k = x.c_rcv_nxt as usize;
        let want = udp_len(k).min(size - x.got);
        if matches!(x.st, St::SynSent | St::Established) && udp_payload(m) == want && want > 0 {
            x.got += want;
            x.c_rcv_nxt += 1;
            self.delivered += want;
            x.last_progress = now;
            x.st = if x.got == size {
                St::Done
            } else {
                St::Established
            };
        }
        if x.st != St::Broken {
            x.c_last_tx = now;
            self.to_server
                .push_back(dgram(x.cip, true, x.sport, 1 + x.c_rcv_nxt as usize % 256));
        }
    }

    /// A UDP datagram that reached the server host.
    pub(super) fn server_rx_udp(&mut self, m: &ftfw_dataplane::meta::PacketMeta, now: Instant) {
        if m.tuple.dst_port != UDP_PORT || m.tuple.src_ip() != IpAddr::V4(self.cip) {
            return;
        }
        let Some(i) = self.index(m.tuple.src_port) else {
            return;
        };
        let x = &mut self.t[i];
        if !x.udp {
            return;
        }
        let len = udp_payload(m);
        if len == REQ_LEN as usize {
            if !x.s_req {
                x.s_open = true;
                x.s_req = true;
                x.s_timer = now;
            }
            return;
        }
        if !x.s_req || !(1..=256).contains(&len) {
            return;
        }
        // The acknowledgement names the next index modulo 256; it lies in
        // s_una ..= s_nxt.
        let ahead = (len - 1 + 256 - x.s_una % 256) % 256;
        let next = x.s_una + ahead;
        if next > x.s_una && next <= x.s_nxt {
            x.s_una = next;
            x.s_timer = now;
        }
    }

    /// The server's sending and both hosts' timers.
    pub(super) fn tick(&mut self, now: Instant, stall: Duration) {
        let size = self.size;
        for x in &mut self.t {
            if !x.live() {
                continue;
            }
            if now.duration_since(x.last_progress) > stall {
                x.st = St::Broken;
                continue;
            }
            if x.udp {
                if now.duration_since(x.c_last_tx) > RTO {
                    x.c_last_tx = now;
                    let len = if x.got == 0 {
                        REQ_LEN as usize
                    } else {
                        1 + x.c_rcv_nxt as usize % 256
                    };
                    self.to_server.push_back(dgram(x.cip, true, x.sport, len));
                }
                if !x.s_req {
                    continue;
                }
                if x.s_una < x.s_nxt && now.duration_since(x.s_timer) > RTO {
                    x.s_nxt = x.s_una;
                    x.s_timer = now;
                    self.retransmitted += 1;
                }
                while x.s_nxt < x.s_una + UDP_WINDOW && udp_offset(x.s_nxt) < size {
                    let len = udp_len(x.s_nxt).min(size - udp_offset(x.s_nxt));
                    self.to_client.push_back(dgram(x.cip, false, x.sport, len));
                    x.s_nxt += 1;
                }
                continue;
            }
            // Client retransmissions: SYN and request.
            if now.duration_since(x.c_last_tx) > RTO {
                if x.st == St::SynSent {
                    x.c_last_tx = now;
                    self.to_server
                        .push_back(seg(x.cip, true, x.sport, x.c_iss, 0, f::SYN, 0));
                } else if !x.req_acked && x.got == 0 {
                    x.c_last_tx = now;
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        x.c_iss.wrapping_add(1),
                        x.c_rcv_nxt,
                        f::ACK | f::PSH,
                        REQ_LEN as usize,
                    ));
                }
            }
            if !x.s_req {
                continue;
            }
            // Server: go-back-N on timeout, then fill the window.
            if x.s_una < x.s_nxt && now.duration_since(x.s_timer) > RTO {
                x.s_nxt = x.s_una;
                x.s_timer = now;
                self.retransmitted += 1;
            }
            let ack = x.c_iss.wrapping_add(1 + REQ_LEN);
            while x.s_nxt <= size && x.s_nxt < x.s_una + WINDOW_SEGS * MSS {
                let seq = x.s_iss.wrapping_add(1).wrapping_add(x.s_nxt as u32);
                if x.s_nxt == size {
                    self.to_client.push_back(seg(
                        x.cip,
                        false,
                        x.sport,
                        seq,
                        ack,
                        f::FIN | f::ACK,
                        0,
                    ));
                    x.s_nxt = size + 1;
                    break;
                }
                let len = MSS.min(size - x.s_nxt);
                let flags = if x.s_nxt + len == size {
                    f::ACK | f::PSH
                } else {
                    f::ACK
                };
                self.to_client
                    .push_back(seg(x.cip, false, x.sport, seq, ack, flags, len));
                x.s_nxt += len;
            }
        }
    }
}

/// Frames on their way from a host to the firewalls, each with the time it
/// arrives (half the round-trip time after it was sent).
#[derive(Default)]
pub(super) struct HostWire {
    pub(super) q: VecDeque<(Instant, Vec<u8>)>,
}

impl HostWire {
    pub(super) fn send_all(&mut self, from: &mut VecDeque<Vec<u8>>, due: Instant) {
        self.q.extend(from.drain(..).map(|fr| (due, fr)));
    }

    /// Hands every frame that has arrived to the live nodes' ports on one
    /// side (only to fw1 while it lives when `mirror` is off); returns the
    /// copies dropped on full rings.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        nodes: &mut [Node],
        client_side: bool,
        mirror: bool,
    ) -> u64 {
        let mut drops = 0;
        let mut b = [PacketBuf::new()];
        while self.q.front().is_some_and(|(t, _)| *t <= now) {
            let Some((_, frame)) = self.q.pop_front() else {
                break;
            };
            let fw1_alive = nodes[0].alive;
            for (i, n) in nodes.iter_mut().enumerate() {
                if !n.alive || (!mirror && i > 0 && fw1_alive) {
                    continue;
                }
                b[0].set(&frame);
                let port = if client_side {
                    &mut n.client
                } else {
                    &mut n.server
                };
                if port.tx_burst(&mut b) != 1 {
                    drops += 1;
                }
            }
        }
        drops
    }
}
