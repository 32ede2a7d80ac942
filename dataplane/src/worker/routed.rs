//! The worker loop's routed-mode burst: the same parse, warm and
//! [`Pipeline::decide`](super::Pipeline::decide) as transparent mode,
//! wrapped by [`Router`]'s ingress and forward halves, with one transmit
//! burst per egress port instead of the bridge peer.
//!
//! Buffers: every frame sent is swapped into its egress port's burst (a
//! routed or answered frame from the receive burst, or the scratch buffer a
//! reply or solicitation was written into), so nothing is copied or
//! allocated; a burst that fills up is sent at once.

use std::sync::Arc;
use std::time::Instant;

use crate::flow::proto;
use crate::l3::nd::NdInfo;
use crate::l3::router::{Emit, Ingress};
use crate::l3::{arp, IpKey, L3Config, L3Shared, Router};
use crate::meta::PacketMeta;
use crate::packet::arp::OP_REQUEST;
use crate::packet::ethernet::ethertype;
use crate::packet::icmpv6::msg_type;
use crate::port::{Burst, PacketBuf};

use super::{ActiveRules, Decision, Pipeline, Worker, WorkerPort};

/// A worker's routed-mode state.
pub(super) struct Routed {
    router: Router,
    /// One transmit burst per port position.
    out: Vec<Burst>,
    scratch: PacketBuf,
    /// Port position by appliance-wide port index.
    pos: Vec<Option<usize>>,
}

impl Routed {
    /// Empties the output bursts (see [`Burst::release`]).
    pub(super) fn release(&mut self) {
        for b in &mut self.out {
            b.release();
        }
        self.scratch.data.clear();
    }

    /// The cluster's shared MAC (frames sent to it go by bucket).
    pub(super) fn shared_mac(&self) -> Option<crate::packet::ethernet::MacAddr> {
        self.router.load().0.shared_mac
    }

    /// Whether packets wait for their next hop.
    #[inline]
    pub(super) fn holding(&self) -> bool {
        self.router.holding()
    }

    pub(super) fn new(shared: Arc<L3Shared>, ports: &[WorkerPort]) -> Routed {
        let max = ports
            .iter()
            .map(|p| usize::from(p.index))
            .max()
            .unwrap_or(0);
        let mut pos = vec![None; max + 1];
        for (i, p) in ports.iter().enumerate() {
            pos[usize::from(p.index)] = Some(i);
        }
        Routed {
            router: Router::new(shared),
            out: ports.iter().map(|_| Burst::new()).collect(),
            scratch: PacketBuf::new(),
            pos,
        }
    }
}

/// Sends what is queued for port position `p`.
fn flush(ports: &mut [WorkerPort], out: &mut [Burst], p: usize, c: &mut super::WorkerCounters) {
    let b = &mut out[p];
    if b.len == 0 {
        return;
    }
    let sent = ports[p].port.tx_burst(&mut b.bufs[..b.len]);
    c.tx += sent as u64;
    c.tx_dropped += (b.len - sent) as u64;
    b.len = 0;
}

/// Queues `buf` (swapped, not copied) for port index `index`.
fn push(
    ports: &mut [WorkerPort],
    out: &mut [Burst],
    pos: &[Option<usize>],
    index: u16,
    buf: &mut PacketBuf,
    c: &mut super::WorkerCounters,
) {
    let Some(p) = pos.get(usize::from(index)).copied().flatten() else {
        c.tx_dropped += 1;
        return;
    };
    if out[p].len == out[p].bufs.len() {
        flush(ports, out, p, c);
    }
    let b = &mut out[p];
    std::mem::swap(buf, &mut b.bufs[b.len]);
    b.len += 1;
}

/// Routed cluster: whether a parsed frame is for the cluster as a whole
/// (and so for the owner of its bucket only): sent to the shared MAC, or an
/// ARP request or neighbor solicitation for a virtual address.
fn for_the_cluster(cfg: &L3Config, frame: &[u8], meta: &PacketMeta) -> bool {
    if cfg
        .shared_mac
        .is_some_and(|m| frame.get(..6) == Some(&m[..]))
    {
        return true;
    }
    if meta.ethertype == ethertype::ARP {
        return arp::parse(frame, usize::from(meta.l3_offset))
            .is_ok_and(|a| a.op == OP_REQUEST && cfg.is_virtual(&IpKey::v4(a.tpa)));
    }
    let t = &meta.tuple;
    meta.is_ip()
        && t.v6
        && t.proto == proto::ICMPV6
        && meta.icmp_error.is_none()
        && t.icmp_type() == msg_type::NEIGHBOR_SOLICIT
        && NdInfo::parse(frame, meta).is_ok_and(|m| cfg.is_virtual(&IpKey::v6(m.target)))
}

impl Worker {
    /// Turns this worker into a router over `shared` (routed mode).
    pub fn set_routed(&mut self, shared: Arc<L3Shared>) {
        self.routed = Some(Routed::new(shared, &self.ports));
    }

    /// Sends `frames` out of the port with appliance-wide index `port`
    /// (a console command, not the packet path); returns how many the port
    /// accepted.
    pub(super) fn transmit(&mut self, port: u16, frames: &[Vec<u8>]) -> usize {
        let Some(p) = self.ports.iter().position(|x| x.index == port) else {
            return 0;
        };
        let mut sent = 0;
        for chunk in frames.chunks(self.tx.bufs.len()) {
            for (b, f) in self.tx.bufs.iter_mut().zip(chunk) {
                b.set(f);
            }
            let s = self.ports[p]
                .port
                .tx_burst(&mut self.tx.bufs[..chunk.len()]);
            self.pipeline.counters.tx += s as u64;
            self.pipeline.counters.tx_dropped += (chunk.len() - s) as u64;
            sent += s;
        }
        sent
    }

    /// Routed mode: sends the packets held for next hops learned since
    /// (and drops those held too long, or all of them once the node stops
    /// forwarding). Called every loop iteration while some are held; the
    /// learned neighbors reach the shared table through the control
    /// thread, so a packet is released an iteration or two after the
    /// answer to its solicitation.
    pub(super) fn release_held(&mut self, r: &mut Routed, now: Instant, forwarding: bool) {
        let (cfg, nb) = r.router.load();
        let (c, icmp) = (&mut self.pipeline.counters, &mut self.pipeline.icmp);
        let ports = &mut self.ports;
        let (out, pos) = (&mut r.out, &r.pos);
        let mut pushed = super::WorkerCounters::default();
        let done = r
            .router
            .release_held(&cfg, &nb, (now, icmp), !forwarding, |egress, buf| {
                push(ports, out, pos, egress, buf, &mut pushed);
            });
        c.add(&pushed);
        c.neighbor_released += done.sent;
        c.routed += done.sent;
        c.neighbor_hold_expired += done.expired;
        c.neighbor_unreachable += done.unreachable;
        c.icmp_errors_limited += done.limited;
        for p in 0..r.out.len() {
            flush(&mut self.ports, &mut r.out, p, &mut self.pipeline.counters);
        }
    }

    /// Routed mode: handles the `n` frames just received on port position
    /// `i`. Bounded like the transparent burst (one decision per frame,
    /// at most two frames sent per frame received).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn routed_burst(
        &mut self,
        r: &mut Routed,
        i: usize,
        n: usize,
        now_secs: u32,
        now: Instant,
        rules: &ActiveRules,
        active: bool,
    ) {
        let (index, zone) = (self.ports[i].index, self.ports[i].zone);
        let (cfg, nb) = r.router.load();
        if !rules.nat.is_empty() {
            // NAT rules' `out` and masquerade look at the route.
            self.pipeline.set_l3(Some(Arc::clone(&cfg)));
        }
        for k in 0..n {
            self.parsed[k] = Pipeline::parse_headers(&self.rx.bufs[k].data, &mut self.metas[k]);
        }
        // Routed cluster: what hosts send to the shared MAC, and their
        // solicitations of a virtual address, go by bucket; frames for this
        // node's own MAC and addresses are its own. Another member's
        // frames are dropped with their checksums unverified.
        let buckets = self.shared.buckets.buckets();
        if buckets != 0 && cfg.shared_mac.is_some() {
            for k in 0..n {
                self.not_ours[k] = self.parsed[k]
                    && for_the_cluster(&cfg, &self.rx.bufs[k].data, &self.metas[k])
                    && !self.owns_frame(k, buckets);
            }
        } else {
            self.not_ours[..n].fill(false);
        }
        self.verify_checksums_of_ours(n);
        for k in 0..n {
            self.want[k] = active && self.parsed[k] && !self.not_ours[k] && self.metas[k].is_ip();
        }
        self.warm_burst(n, zone, true);
        for k in 0..n {
            // A later fragment for the cluster is ours only if its first
            // fragment was (see `foreign_later_fragment`).
            let foreign = self.not_ours[k]
                || (buckets != 0
                    && cfg.shared_mac.is_some()
                    && self.parsed[k]
                    && for_the_cluster(&cfg, &self.rx.bufs[k].data, &self.metas[k])
                    && self.foreign_later_fragment(k, zone, now_secs));
            let c = &mut self.pipeline.counters;
            if !self.parsed[k] {
                c.malformed += 1;
                continue;
            }
            if foreign {
                c.not_owner += 1;
                continue;
            }
            if self.handoff.is_some() && active && self.hand_off(k, i, now_secs) {
                continue;
            }
            let mut meta = self.metas[k];
            // A packet to one of our addresses is routed when it belongs to
            // a translated flow (a masquerade's reply) or opens a
            // connection a helper announced there.
            let tracked = (self.hints[k] != crate::conntrack::shard::HINT_NONE
                && self.pipeline.shard.nat_len() > 0)
                || (!self.pipeline.expect.is_empty()
                    && cfg.is_local(
                        &crate::l3::IpKey {
                            v6: meta.tuple.v6,
                            addr: meta.tuple.dst,
                        },
                        active,
                    )
                    && self.pipeline.expects(now_secs, &meta, zone));
            let c = &mut self.pipeline.counters;
            let frame = &mut self.rx.bufs[k].data;
            let emit = match r.router.ingress(
                &cfg,
                &nb,
                index,
                frame,
                &meta,
                tracked,
                active,
                now,
                r.scratch.data.vec_mut(),
                c,
            ) {
                Ingress::Done(e) => e,
                Ingress::Route => {
                    // As in Linux, routing comes before the forward filter:
                    // a packet that opens no known flow and cannot be
                    // routed (TTL 1, no route) skips the decision, gets
                    // its ICMP error from `forward` and leaves no flow
                    // behind (a scan of unrouted space or a traceroute does
                    // not fill the table). With NAT rules the route is the
                    // translated destination's, known only after the
                    // decision, so they take the usual path. Packets with
                    // a warm-up candidate (most of a known flow's) skip the
                    // check: their route is looked up once, in `forward`.
                    let unroutable = rules.nat.is_empty()
                        && self.hints[k] == crate::conntrack::shard::HINT_NONE
                        && !r.router.routable(&cfg, &meta)
                        && !self.pipeline.shard.holds_flow_of(&meta, zone);
                    let decision = if unroutable {
                        None
                    } else {
                        Some(self.pipeline.decide(
                            now_secs,
                            rules,
                            index,
                            zone,
                            true,
                            &meta,
                            self.hints[k],
                        ))
                    };
                    match decision {
                        // Translated first, so the route is the
                        // translated destination's.
                        Some(Decision::Forward)
                            if !self
                                .pipeline
                                .apply_nat(&mut self.rx.bufs[k].data, &mut meta) =>
                        {
                            Emit::DROP
                        }
                        None | Some(Decision::Forward) => r.router.forward(
                            &cfg,
                            &nb,
                            index,
                            &mut self.rx.bufs[k].data,
                            &meta,
                            (now, &mut self.pipeline.icmp),
                            r.scratch.data.vec_mut(),
                            &mut self.pipeline.counters,
                        ),
                        Some(Decision::Drop) => Emit::DROP,
                        Some(Decision::Reject) => {
                            let ok = self.pipeline.build_reject(
                                &self.rx.bufs[k].data,
                                &meta,
                                &mut r.scratch,
                                now,
                            );
                            Emit {
                                frame: None,
                                scratch: ok.then_some(index),
                            }
                        }
                    }
                }
            };
            let c = &mut self.pipeline.counters;
            if let Some(p) = emit.frame {
                push(
                    &mut self.ports,
                    &mut r.out,
                    &r.pos,
                    p,
                    &mut self.rx.bufs[k],
                    c,
                );
            }
            if let Some(p) = emit.scratch {
                push(&mut self.ports, &mut r.out, &r.pos, p, &mut r.scratch, c);
            }
        }
        for p in 0..r.out.len() {
            flush(&mut self.ports, &mut r.out, p, &mut self.pipeline.counters);
        }
    }
}
