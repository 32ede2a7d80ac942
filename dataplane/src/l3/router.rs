//! The per-frame decisions a worker takes in routed mode, in two halves
//! around the stateful filter:
//!
//! 1. [`Router::ingress`]: ARP and NS for our addresses are answered (port
//!    addresses always, virtual addresses only while active), neighbors
//!    are learned, pings of our addresses are answered, anything else for
//!    us or not addressed to our MAC is dropped and counted; a backup drops
//!    what it would route. What is left goes to conntrack and the ACL.
//! 2. [`Router::forward`], for what the filter accepted: TTL check (ICMP
//!    time exceeded from the ingress port's address), route lookup,
//!    neighbor lookup (a miss solicits the next hop, rate-limited, and
//!    holds a copy of the packet, as Linux queues packets for an
//!    unresolved neighbor: [`HOLD_SLOTS`] per worker for at most
//!    [`HOLD_FOR`], sent by [`Router::release_held`] once the neighbor is
//!    learned, dropped and counted when full or expired), TTL decrement
//!    and MAC rewrite.
//!
//! Output: the frame itself (rewritten in place) and/or one frame written
//! into the worker's scratch buffer, each to a port ([`Emit`]). Bounded
//! work per frame: a scan of the ports' addresses, of the routes, one hash
//! probe of the neighbor table; no allocation (the held packets' buffers
//! are allocated with the router).

use std::sync::Arc;
use std::time::Instant;

use crate::flow::proto;
use crate::meta::PacketMeta;
use crate::packet::arp::{OP_REPLY, OP_REQUEST};
use crate::packet::ethernet::{ethertype, MacAddr};
use crate::packet::icmpv6::msg_type;
use crate::packet::Error;
use crate::port::{PacketBuf, FRAME_CAPACITY};
use crate::worker::WorkerCounters;

use super::arp;
use super::forward;
use super::nd::{self, NdInfo};
use super::neighbor::{Neighbor, NeighborTable, NeighborUpdate, SolicitLimiter, REFRESH_AFTER};
use super::prefix::IpKey;
use super::{L3Config, L3Shared};

/// Where the output of one frame goes (appliance-wide port indices).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Emit {
    /// Send the (rewritten) frame out of this port.
    pub frame: Option<u16>,
    /// Send the scratch buffer's frame out of this port.
    pub scratch: Option<u16>,
}

impl Emit {
    /// Nothing to send: the frame is dropped (the reason counted).
    pub const DROP: Emit = Emit {
        frame: None,
        scratch: None,
    };

    fn frame(port: u16) -> Emit {
        Emit {
            frame: Some(port),
            scratch: None,
        }
    }

    fn scratch(port: Option<u16>) -> Emit {
        Emit {
            frame: None,
            scratch: port,
        }
    }
}

/// What [`Router::ingress`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// A packet to route: filter it, then [`Router::forward`] it.
    Route,
    /// Handled here.
    Done(Emit),
}

/// ICMP errors (time exceeded, network and host unreachable) a worker
/// sends per second at most, and at once: Linux's global limits
/// (`icmp_msgs_per_sec`, `icmp_msgs_burst`). The rest are dropped without
/// an answer and counted (`icmp_errors_limited`), so packets aimed at a
/// missing route cannot turn the firewall into a reflector.
pub const ICMP_ERRORS_PER_SEC: u64 = 1000;
/// See [`ICMP_ERRORS_PER_SEC`].
pub const ICMP_ERRORS_BURST: u64 = 50;

/// ICMP errors one destination gets at once, then one a second: Linux's
/// per-destination limit (`icmp_ratelimit` 1000 ms, burst factor 6), so a
/// host that sends a stream of packets that each earn an error (a scan of
/// rejected ports, a loop) gets a trickle, not one answer per packet.
pub const ICMP_ERRORS_PER_DESTINATION_BURST: u32 = 6;

/// Destinations tracked for [`ICMP_ERRORS_PER_DESTINATION_BURST`]: a
/// direct-mapped table; a destination that takes another's slot starts
/// with a full burst (the global limit still holds).
const ICMP_DESTINATIONS: usize = 256;

/// Milliseconds of credit one error costs a destination (one a second).
const DESTINATION_COST_MS: u32 = 1000;

/// One destination's credit, in milliseconds (Linux's `inet_peer` token).
#[derive(Clone, Copy, Debug)]
struct DestinationCredit {
    v6: bool,
    addr: crate::flow::Addr,
    credit_ms: u32,
    last: Instant,
}

/// The limits on ICMP errors: the token bucket of [`ICMP_ERRORS_PER_SEC`]
/// and [`ICMP_ERRORS_PER_DESTINATION_BURST`] per destination, one
/// limiter per worker (its pipeline holds it), spent by routed mode's
/// time exceeded and unreachable answers and by ICMP rejects in either
/// mode (TCP resets are not limited, as in Linux).
#[derive(Debug)]
pub struct IcmpLimiter {
    tokens: u64,
    last: Instant,
    /// `None`: the slot is free.
    destinations: Box<[Option<DestinationCredit>]>,
}

impl IcmpLimiter {
    /// Full buckets at `now`.
    pub fn new(now: Instant) -> IcmpLimiter {
        IcmpLimiter {
            tokens: ICMP_ERRORS_BURST,
            last: now,
            destinations: vec![None; ICMP_DESTINATIONS].into_boxed_slice(),
        }
    }

    /// Whether an ICMP error may go to `to` (the address of the packet's
    /// sender; `v6` for IPv6) at `now`; spends from both limits if so.
    pub fn allow(&mut self, now: Instant, v6: bool, to: &crate::flow::Addr) -> bool {
        let slot = destination_slot(v6, to);
        let full = DESTINATION_COST_MS * ICMP_ERRORS_PER_DESTINATION_BURST;
        let credit = match self.destinations[slot] {
            Some(d) if d.v6 == v6 && d.addr == *to => {
                let ms = u32::try_from(now.saturating_duration_since(d.last).as_millis())
                    .unwrap_or(u32::MAX);
                d.credit_ms.saturating_add(ms).min(full)
            }
            _ => full,
        };
        if credit < DESTINATION_COST_MS || !self.allow_global(now) {
            return false;
        }
        self.destinations[slot] = Some(DestinationCredit {
            v6,
            addr: *to,
            credit_ms: credit - DESTINATION_COST_MS,
            last: now,
        });
        true
    }

    /// The global bucket: whether an error may go at `now`; takes its
    /// token if so.
    fn allow_global(&mut self, now: Instant) -> bool {
        let ms =
            u64::try_from(now.saturating_duration_since(self.last).as_millis()).unwrap_or(u64::MAX);
        let refill = ms.saturating_mul(ICMP_ERRORS_PER_SEC) / 1000;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(ICMP_ERRORS_BURST);
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The route `meta`'s packet leaves by: none at TTL (hop limit) 1 (as in
/// Linux, an expiring packet is not looked up) or without a route.
fn route_of<'a>(cfg: &'a L3Config, meta: &PacketMeta) -> Option<&'a crate::l3::route::Route> {
    if meta.ttl <= 1 {
        return None;
    }
    cfg.routes.lookup(&IpKey {
        v6: meta.tuple.v6,
        addr: meta.tuple.dst,
    })
}

/// The table slot of a destination (a multiplicative hash of its bytes).
fn destination_slot(v6: bool, addr: &crate::flow::Addr) -> usize {
    let mut h = u64::from(v6);
    for c in addr.chunks_exact(8) {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    // The top bits of the product are the best mixed.
    usize::try_from(h >> 56).unwrap_or(0) % ICMP_DESTINATIONS
}

/// Packets a worker holds for unresolved next hops.
pub const HOLD_SLOTS: usize = 16;
/// How long a held packet waits for its next hop's address (Linux gives
/// up resolving after about 3 s too).
pub const HOLD_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// A packet waiting for its next hop's link address.
#[derive(Debug)]
struct Held {
    /// In use.
    used: bool,
    next: IpKey,
    /// Where it came in (where a host unreachable goes back out).
    ingress: u16,
    egress: u16,
    meta: PacketMeta,
    since: Instant,
    buf: PacketBuf,
}

/// What [`Router::release_held`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Held packets routed (their next hop is known now).
    pub sent: u64,
    /// Held packets dropped: [`HOLD_FOR`] passed.
    pub expired: u64,
    /// Host unreachable answers sent for the expired ones.
    pub unreachable: u64,
    /// Answers not sent: over [`ICMP_ERRORS_PER_SEC`].
    pub limited: u64,
}

/// A worker's routed-mode state.
#[derive(Debug)]
pub struct Router {
    shared: Arc<L3Shared>,
    limiter: SolicitLimiter,
    held: Vec<Held>,
    /// Slots in use.
    holding: usize,
    /// Where a host unreachable for an expired packet is built.
    answer: PacketBuf,
}

/// Writes a frame into `scratch` with `f`; false if it could not be built.
fn build(scratch: &mut Vec<u8>, f: impl FnOnce(&mut [u8]) -> Result<usize, Error>) -> bool {
    scratch.clear();
    scratch.resize(FRAME_CAPACITY, 0);
    match f(scratch) {
        Ok(n) => {
            scratch.truncate(n);
            true
        }
        Err(_) => {
            scratch.clear();
            false
        }
    }
}

fn mac_at(frame: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    if let Some(s) = frame.get(at..at + 6) {
        m.copy_from_slice(s);
    }
    m
}

impl Router {
    /// A router over the shared L3 state.
    pub fn new(shared: Arc<L3Shared>) -> Router {
        Router {
            shared,
            limiter: SolicitLimiter::default(),
            held: (0..HOLD_SLOTS)
                .map(|_| Held {
                    used: false,
                    next: IpKey::default(),
                    ingress: 0,
                    egress: 0,
                    meta: PacketMeta::default(),
                    since: Instant::now(),
                    buf: PacketBuf::new(),
                })
                .collect(),
            holding: 0,
            answer: PacketBuf::new(),
        }
    }

    /// Whether packets wait for their next hop ([`Router::release_held`]).
    #[inline]
    pub fn holding(&self) -> bool {
        self.holding > 0
    }

    /// Keeps a copy of `frame` until `next` on `egress` is learned; false
    /// (nothing kept) when every slot is in use.
    fn hold(
        &mut self,
        next: IpKey,
        (ingress, egress): (u16, u16),
        frame: &[u8],
        meta: &PacketMeta,
        now: Instant,
    ) -> bool {
        let Some(h) = self.held.iter_mut().find(|h| !h.used) else {
            return false;
        };
        h.used = true;
        h.next = next;
        h.ingress = ingress;
        h.egress = egress;
        h.meta = *meta;
        h.since = now;
        h.buf.set(frame);
        self.holding += 1;
        true
    }

    /// Routes the held packets whose next hop is in `nb` now (TTL
    /// decremented, MACs rewritten; `send` takes each buffer and its
    /// egress port, swapping in an empty one), and drops those held longer
    /// than [`HOLD_FOR`], answering each with a host unreachable out of its
    /// ingress port (also through `send`). `drop_all`: drop every held
    /// packet without an answer (the node stopped forwarding), counted as
    /// expired.
    pub fn release_held(
        &mut self,
        cfg: &L3Config,
        nb: &NeighborTable,
        (now, icmp): (Instant, &mut IcmpLimiter),
        drop_all: bool,
        mut send: impl FnMut(u16, &mut PacketBuf),
    ) -> Released {
        let mut r = Released::default();
        let answer = &mut self.answer;
        for h in self.held.iter_mut().filter(|h| h.used) {
            let ready = (!drop_all)
                .then(|| nb.get(&h.next).filter(|n| n.port == h.egress))
                .flatten()
                .zip(cfg.ports.get(usize::from(h.egress)));
            if let Some((n, p)) = ready {
                if forward::decrement_ttl(&mut h.buf.data, &h.meta).is_ok()
                    && forward::rewrite_macs(&mut h.buf.data, p.mac, n.mac).is_ok()
                {
                    send(h.egress, &mut h.buf);
                    r.sent += 1;
                } else {
                    r.expired += 1;
                }
            } else if drop_all {
                r.expired += 1;
            } else if now.saturating_duration_since(h.since) >= HOLD_FOR {
                r.expired += 1;
                if !icmp.allow(now, h.meta.tuple.v6, &h.meta.tuple.src) {
                    r.limited += 1;
                } else if unreachable(cfg, h, answer) {
                    send(h.ingress, answer);
                    r.unreachable += 1;
                }
            } else {
                continue;
            }
            h.used = false;
            self.holding -= 1;
        }
        r
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<L3Shared> {
        &self.shared
    }

    /// Loads the configuration and neighbor snapshots for one burst
    /// (lock-free, no allocation).
    #[inline]
    pub fn load(
        &self,
    ) -> (
        arc_swap::Guard<Arc<L3Config>>,
        arc_swap::Guard<Arc<NeighborTable>>,
    ) {
        (self.shared.config.load(), self.shared.neighbors.load())
    }

    #[allow(clippy::too_many_arguments)]
    fn learn(
        &self,
        cfg: &L3Config,
        nb: &NeighborTable,
        port: u16,
        ip: IpKey,
        mac: MacAddr,
        now: Instant,
        c: &mut WorkerCounters,
    ) {
        if ip.is_unspecified()
            || ip.is_multicast_or_broadcast()
            || mac[0] & 1 != 0
            || !cfg.on_link(port, &ip)
            || cfg.is_local(&ip, true)
        {
            return;
        }
        let neighbor = Neighbor {
            mac,
            port,
            updated: now,
        };
        if nb.needs_update(&ip, &neighbor) && !self.shared.learn(NeighborUpdate { ip, neighbor }) {
            c.learn_ring_full += 1;
        }
    }

    /// Writes a solicitation (ARP request or NS) for `target` out of
    /// `port` into `scratch`, unless one went out less than a second ago.
    fn solicit(
        &mut self,
        cfg: &L3Config,
        port: u16,
        target: &IpKey,
        now: Instant,
        scratch: &mut Vec<u8>,
        c: &mut WorkerCounters,
    ) -> Option<u16> {
        let p = cfg.ports.get(usize::from(port))?;
        let src = IpKey::from(cfg.source_for(port, target)?);
        if !self.limiter.allow(target, now) {
            return None;
        }
        let ok = build(scratch, |out| {
            if target.v6 {
                nd::write_ns(out, p.mac, &src.addr, &target.addr)
            } else {
                arp::write_request(out, p.mac, src.octets4(), target.octets4())
            }
        });
        if ok {
            c.arp_nd_solicits += 1;
            Some(port)
        } else {
            None
        }
    }

    /// First half: see the module documentation. `active`: whether the node
    /// forwards (answers for virtual addresses, routes). `tracked`: the
    /// packet belongs to a flow in the shard: to one of our addresses, that
    /// is the reply of a flow NAT translated to it (masquerade), routed.
    #[allow(clippy::too_many_arguments)]
    pub fn ingress(
        &mut self,
        cfg: &L3Config,
        nb: &NeighborTable,
        in_port: u16,
        frame: &mut [u8],
        meta: &PacketMeta,
        tracked: bool,
        active: bool,
        now: Instant,
        scratch: &mut Vec<u8>,
        c: &mut WorkerCounters,
    ) -> Ingress {
        let Some(port) = cfg.ports.get(usize::from(in_port)) else {
            c.l3_ignored += 1;
            return Ingress::Done(Emit::DROP);
        };
        let our_mac = port.mac;
        let eth_dst = mac_at(frame, 0);
        let eth_src = mac_at(frame, 6);
        if meta.ethertype == ethertype::ARP {
            return Ingress::Done(self.arp(cfg, nb, in_port, frame, meta, active, now, scratch, c));
        }
        if !meta.is_ip() {
            c.l3_ignored += 1;
            return Ingress::Done(Emit::DROP);
        }
        let t = &meta.tuple;
        if t.v6 && t.proto == proto::ICMPV6 && meta.icmp_error.is_none() {
            let ty = t.icmp_type();
            if ty == msg_type::NEIGHBOR_SOLICIT || ty == msg_type::NEIGHBOR_ADVERT {
                return Ingress::Done(self.nd(
                    cfg, nb, in_port, frame, meta, active, now, scratch, c, eth_src,
                ));
            }
            if crate::conntrack::l4::icmpv6_is_link_control(ty) {
                // Router/redirect messages and MLD: not ours to act on.
                c.l3_ignored += 1;
                return Ingress::Done(Emit::DROP);
            }
        }
        let dst = IpKey {
            v6: t.v6,
            addr: t.dst,
        };
        if !cfg.accepts_mac(our_mac, eth_dst) || dst.is_multicast_or_broadcast() {
            c.l3_ignored += 1;
            return Ingress::Done(Emit::DROP);
        }
        if cfg.is_local(&dst, active) && !tracked {
            if forward::is_echo_request(meta)
                && forward::echo_reply_in_place(frame, meta, our_mac).is_ok()
            {
                c.echo_replies += 1;
                return Ingress::Done(Emit::frame(in_port));
            }
            c.local_dropped += 1;
            return Ingress::Done(Emit::DROP);
        }
        if !active {
            c.standby_dropped += 1;
            return Ingress::Done(Emit::DROP);
        }
        Ingress::Route
    }

    #[allow(clippy::too_many_arguments)]
    fn arp(
        &mut self,
        cfg: &L3Config,
        nb: &NeighborTable,
        in_port: u16,
        frame: &[u8],
        meta: &PacketMeta,
        active: bool,
        now: Instant,
        scratch: &mut Vec<u8>,
        c: &mut WorkerCounters,
    ) -> Emit {
        let Ok(a) = arp::parse(frame, usize::from(meta.l3_offset)) else {
            c.malformed += 1;
            return Emit::DROP;
        };
        let spa = IpKey::v4(a.spa);
        let tpa = IpKey::v4(a.tpa);
        if a.op == OP_REQUEST && !a.is_gratuitous() && cfg.answers_on(in_port, &tpa, active) {
            self.learn(cfg, nb, in_port, spa, a.sha, now, c);
            let mac = cfg.ports[usize::from(in_port)].mac;
            let at = cfg.answer_mac(in_port, &tpa).unwrap_or(mac);
            if build(scratch, |out| arp::write_reply(out, mac, at, &a)) {
                c.arp_nd_answers += 1;
                return Emit::scratch(Some(in_port));
            }
            return Emit::DROP;
        }
        // Answers to our requests, and announcements of neighbors we know.
        if (a.op == OP_REPLY && cfg.answers_on(in_port, &tpa, true)) || nb.get(&spa).is_some() {
            self.learn(cfg, nb, in_port, spa, a.sha, now, c);
            c.l3_consumed += 1;
        } else {
            c.l3_ignored += 1;
        }
        Emit::DROP
    }

    #[allow(clippy::too_many_arguments)]
    fn nd(
        &mut self,
        cfg: &L3Config,
        nb: &NeighborTable,
        in_port: u16,
        frame: &[u8],
        meta: &PacketMeta,
        active: bool,
        now: Instant,
        scratch: &mut Vec<u8>,
        c: &mut WorkerCounters,
        eth_src: MacAddr,
    ) -> Emit {
        let Ok(m) = NdInfo::parse(frame, meta) else {
            c.malformed += 1;
            return Emit::DROP;
        };
        let target = IpKey::v6(m.target);
        if m.kind == msg_type::NEIGHBOR_SOLICIT {
            if !cfg.answers_on(in_port, &target, active) {
                c.l3_ignored += 1;
                return Emit::DROP;
            }
            if let Some(lla) = m.lla {
                self.learn(cfg, nb, in_port, IpKey::v6(m.src), lla, now, c);
            }
            let mac = cfg.ports[usize::from(in_port)].mac;
            let at = cfg.answer_mac(in_port, &target).unwrap_or(mac);
            if build(scratch, |out| {
                nd::write_solicited_na(out, mac, at, &m, eth_src)
            }) {
                c.arp_nd_answers += 1;
                return Emit::scratch(Some(in_port));
            }
            return Emit::DROP;
        }
        self.learn(cfg, nb, in_port, target, m.lla.unwrap_or(eth_src), now, c);
        c.l3_consumed += 1;
        Emit::DROP
    }

    /// Whether [`Router::forward`] would find `meta`'s packet a route: its
    /// TTL is above 1 and a route covers its destination.
    pub fn routable(&self, cfg: &L3Config, meta: &PacketMeta) -> bool {
        route_of(cfg, meta).is_some()
    }

    /// Second half, for a packet the filter accepted: see the module
    /// documentation.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        cfg: &L3Config,
        nb: &NeighborTable,
        in_port: u16,
        frame: &mut [u8],
        meta: &PacketMeta,
        (now, icmp): (Instant, &mut IcmpLimiter),
        scratch: &mut Vec<u8>,
        c: &mut WorkerCounters,
    ) -> Emit {
        let t = &meta.tuple;
        let dst = IpKey {
            v6: t.v6,
            addr: t.dst,
        };
        let Some(route) = route_of(cfg, meta) else {
            let kind = if meta.ttl <= 1 {
                c.ttl_exceeded += 1;
                forward::RouterError::TimeExceeded
            } else {
                c.no_route += 1;
                forward::RouterError::NoRoute
            };
            if !icmp.allow(now, t.v6, &t.src) {
                c.icmp_errors_limited += 1;
                return Emit::DROP;
            }
            return answer(cfg, in_port, frame, meta, scratch, kind);
        };
        let egress = route.port;
        let next = route.next_hop(&dst);
        let Some(p) = cfg.ports.get(usize::from(egress)) else {
            c.no_route += 1;
            return Emit::DROP;
        };
        let Some(n) = nb.get(&next).filter(|n| n.port == egress) else {
            c.neighbor_miss += 1;
            let s = self.solicit(cfg, egress, &next, now, scratch, c);
            if self.hold(next, (in_port, egress), frame, meta, now) {
                c.neighbor_held += 1;
            } else {
                c.neighbor_hold_full += 1;
            }
            return Emit::scratch(s);
        };
        if forward::decrement_ttl(frame, meta).is_err()
            || forward::rewrite_macs(frame, p.mac, n.mac).is_err()
        {
            c.malformed += 1;
            return Emit::DROP;
        }
        c.routed += 1;
        // Still forwarding to it, probe a neighbor nobody confirmed lately.
        let probe = if now.saturating_duration_since(n.updated) >= REFRESH_AFTER {
            self.solicit(cfg, egress, &next, now, scratch, c)
        } else {
            None
        };
        Emit {
            frame: Some(egress),
            scratch: probe,
        }
    }
}

/// The ICMP error `kind` answering the packet `frame`, sent back out of
/// its ingress port from that port's address; nothing when the port has
/// no address of the packet's family, or the packet is one not to answer
/// (an ICMP error, a later fragment).
fn answer(
    cfg: &L3Config,
    in_port: u16,
    frame: &[u8],
    meta: &PacketMeta,
    scratch: &mut Vec<u8>,
    kind: forward::RouterError,
) -> Emit {
    let src = IpKey {
        v6: meta.tuple.v6,
        addr: meta.tuple.src,
    };
    let (Some(from), Some(p)) = (
        cfg.source_for(in_port, &src),
        cfg.ports.get(usize::from(in_port)),
    ) else {
        return Emit::DROP;
    };
    let ok = build(scratch, |out| {
        forward::router_error(kind, frame, meta, from, p.mac, out)
    });
    Emit::scratch(ok.then_some(in_port))
}

/// Builds into `out` the host unreachable answering the held packet `h`
/// ([`answer`]); false when there is none to send.
fn unreachable(cfg: &L3Config, h: &Held, out: &mut PacketBuf) -> bool {
    let kind = forward::RouterError::HostUnreachable;
    let e = answer(
        cfg,
        h.ingress,
        &h.buf.data,
        &h.meta,
        out.data.vec_mut(),
        kind,
    );
    e.scratch.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn icmp_errors_go_in_bursts_of_50_then_1000_a_second() {
        // Every error to another destination: only the global bucket.
        let mut n = 0u32;
        let mut to = || {
            n += 1;
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&n.to_be_bytes());
            a
        };
        let t0 = Instant::now();
        let mut l = IcmpLimiter::new(t0);
        let burst = (0..100).filter(|_| l.allow(t0, false, &to())).count();
        assert_eq!(burst, 50);
        // One token a millisecond; a partial millisecond gives none.
        let t = t0 + Duration::from_micros(10_500);
        assert_eq!((0..100).filter(|_| l.allow(t, false, &to())).count(), 10);
        let t = t + Duration::from_micros(400);
        assert!(!l.allow(t, false, &to()));
        // A long quiet spell refills the burst, not more.
        let t = t + Duration::from_secs(5);
        assert_eq!((0..100).filter(|_| l.allow(t, false, &to())).count(), 50);
        // A clock that goes backwards gives nothing.
        assert!(!l.allow(t0, false, &to()));
    }

    #[test]
    fn one_destination_gets_a_burst_of_6_then_one_a_second() {
        let a: crate::flow::Addr = [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b: crate::flow::Addr = [192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let t0 = Instant::now();
        let mut l = IcmpLimiter::new(t0);
        let n = |l: &mut IcmpLimiter, t, v6, to| (0..20).filter(|_| l.allow(t, v6, to)).count();
        assert_eq!(n(&mut l, t0, false, &a), 6);
        // Another destination, and the same bytes as IPv6, have their own.
        assert_eq!(n(&mut l, t0, false, &b), 6);
        assert_eq!(n(&mut l, t0, true, &a), 6);
        // One more a second: none after 999 ms, one at 1 s, one at 2 s.
        assert_eq!(n(&mut l, t0 + Duration::from_millis(999), false, &a), 0);
        assert_eq!(n(&mut l, t0 + Duration::from_secs(1), false, &a), 1);
        assert_eq!(n(&mut l, t0 + Duration::from_secs(2), false, &a), 1);
        // A minute of quiet gives the burst back, not more.
        assert_eq!(n(&mut l, t0 + Duration::from_secs(62), false, &a), 6);
        // Destinations in other slots are unaffected throughout.
        assert!(l.allow(t0 + Duration::from_secs(62), false, &b));
    }
}
