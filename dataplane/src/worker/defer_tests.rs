//! Deferred first packets, driven one iteration at a time over mem ports
//! with a fake release (what the sync thread publishes).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::*;
use crate::acl::{Action, RuleSet};
use crate::meta::tcp_flags;
use crate::packet::tcp_opt::TcpOptions;
use crate::packet::{FrameSpec, L4Spec};
use crate::port::mem::{self, MemPort};
use crate::port::PacketBuf;

struct Rig {
    w: Worker,
    client: MemPort,
    server: MemPort,
}

fn rig() -> Rig {
    let (client, outside) = mem::wire("client", "outside", 4096);
    let (inside, server) = mem::wire("inside", "server", 4096);
    let rules = Arc::new(ArcSwap::from_pointee(ActiveRules {
        generation: 1,
        classifier: RuleSet::from_rules(Vec::new(), Action::Accept).compile(),
        sync: Default::default(),
        nat: Default::default(),
        helpers: Default::default(),
    }));
    let spec = WorkerSpec::bridged_pair(
        Box::new(outside),
        Box::new(inside),
        ConntrackConfig {
            capacity: 8192,
            ..ConntrackConfig::default()
        },
        8192,
    );
    Rig {
        w: Worker::new(spec, rules, None),
        client,
        server,
    }
}

fn tcp(sport: u16, flags: u8) -> Vec<u8> {
    segment(true, sport, flags, 1000, 0)
}

/// A segment of the connection from 10.0.0.1:`sport` to 10.0.1.1:80,
/// sent by the client or by the server.
fn segment(from_client: bool, sport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let (client, server) = (
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)),
    );
    let ((src_ip, src_port), (dst_ip, dst_port)) = if from_client {
        ((client, sport), (server, 80))
    } else {
        ((server, 80), (client, sport))
    };
    let spec = FrameSpec {
        src_ip,
        dst_ip,
        ttl: 64,
        l4: L4Spec::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window: 64240,
            options: TcpOptions::default(),
        },
        ..FrameSpec::default()
    };
    let mut buf = vec![0u8; 256];
    let n = spec.write(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn udp(sport: u16) -> Vec<u8> {
    let spec = FrameSpec {
        src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)),
        ttl: 64,
        l4: L4Spec::Udp {
            src_port: sport,
            dst_port: 53,
        },
        payload_len: 8,
        ..FrameSpec::default()
    };
    let mut buf = vec![0u8; 256];
    let n = spec.write(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

impl Rig {
    fn send(&mut self, frames: &[Vec<u8>]) {
        for chunk in frames.chunks(crate::port::BURST) {
            let mut bufs: Vec<PacketBuf> = chunk
                .iter()
                .map(|f| {
                    let mut b = PacketBuf::new();
                    b.set(f);
                    b
                })
                .collect();
            assert_eq!(self.client.tx_burst(&mut bufs), chunk.len());
        }
    }

    /// Runs iterations until the ports are drained, then returns what the
    /// server received.
    fn run(&mut self, now: Instant) -> Vec<Vec<u8>> {
        while self.w.poll_once(now) > 0 {}
        let mut out = Vec::new();
        let mut bufs: Vec<PacketBuf> = (0..crate::port::BURST).map(|_| PacketBuf::new()).collect();
        loop {
            let n = self.server.rx_burst(&mut bufs);
            if n == 0 {
                return out;
            }
            out.extend(bufs[..n].iter().map(|b| b.data.to_vec()));
        }
    }

    fn counters(&mut self) -> WorkerCounters {
        self.w.publish();
        self.w.shared().counters.load()
    }

    fn ring_pushed(&self) -> u64 {
        self.w.pipeline().shard.stats().deltas
    }
}

#[test]
fn a_syn_waits_for_the_release_of_its_tag() {
    let mut r = rig();
    r.w.shared().set_defer_active(true);
    let t0 = Instant::now();
    let syn = tcp(40000, tcp_flags::SYN);
    r.send(std::slice::from_ref(&syn));
    assert!(r.run(t0).is_empty(), "held until released");
    let tag = r.ring_pushed();
    assert!(tag > 0, "the NEW delta was pushed");
    assert_eq!(r.w.shared().deferred_wanted(), tag);
    assert_eq!(r.counters().deferred, 1);
    r.w.shared().release_deferred(tag - 1);
    assert!(r.run(t0).is_empty(), "an older release does not free it");
    r.w.shared().release_deferred(tag);
    assert_eq!(r.run(t0), vec![syn]);
    let c = r.counters();
    assert_eq!((c.defer_released, c.defer_timeouts), (1, 0));
    assert_eq!(r.w.deferred_len(), 0);
}

#[test]
fn held_packets_go_out_at_the_timeout_in_order() {
    let mut r = rig();
    r.w.shared().set_defer_active(true);
    r.w.shared().set_defer_timeout(Duration::from_millis(10));
    let t0 = Instant::now();
    // A new UDP flow, a second datagram of it (waits behind), a new TCP flow.
    let frames = vec![udp(5000), udp(5000), tcp(40001, tcp_flags::SYN)];
    r.send(&frames);
    assert!(r.run(t0).is_empty());
    assert_eq!(r.counters().deferred, 3);
    assert!(r.run(t0 + Duration::from_millis(9)).is_empty());
    assert_eq!(r.run(t0 + Duration::from_millis(10)), frames);
    let c = r.counters();
    assert_eq!((c.defer_timeouts, c.defer_released), (3, 0));
}

#[test]
fn a_full_queue_transmits_at_once_and_counts() {
    let mut r = rig();
    r.w.shared().set_defer_active(true);
    let t0 = Instant::now();
    let extra = 5;
    let n = u16::try_from(DEFER_QUEUE + extra).unwrap();
    let frames: Vec<Vec<u8>> = (0..n).map(|i| tcp(10000 + i, tcp_flags::SYN)).collect();
    r.send(&frames);
    let out = r.run(t0);
    assert_eq!(out.len(), extra);
    let c = r.counters();
    assert_eq!(c.deferred, DEFER_QUEUE as u64);
    assert_eq!(c.defer_overflow, extra as u64);
    r.w.shared().release_deferred(r.ring_pushed());
    assert_eq!(r.run(t0).len(), DEFER_QUEUE);
    assert_eq!(r.counters().defer_released, DEFER_QUEUE as u64);
}

#[test]
fn not_deferred_when_inactive_and_flushed_when_turned_off() {
    let mut r = rig();
    let t0 = Instant::now();
    let syn = tcp(40000, tcp_flags::SYN);
    r.send(std::slice::from_ref(&syn));
    assert_eq!(r.run(t0), vec![syn], "defer inactive: out at once");
    assert_eq!(r.counters().deferred, 0);
    // Held, then defer goes inactive (peer lost): out without an ACK.
    r.w.shared().set_defer_active(true);
    let syn2 = tcp(40002, tcp_flags::SYN);
    r.send(std::slice::from_ref(&syn2));
    assert!(r.run(t0).is_empty());
    r.w.shared().set_defer_active(false);
    assert_eq!(r.run(t0), vec![syn2]);
    assert_eq!(r.counters().defer_timeouts, 1);
}

#[test]
fn a_backup_drops_held_packets() {
    let mut r = rig();
    r.w.shared().set_defer_active(true);
    let t0 = Instant::now();
    r.send(&[tcp(40000, tcp_flags::SYN)]);
    assert!(r.run(t0).is_empty());
    r.w.shared().set_forwarding(false);
    assert!(r.run(t0 + Duration::from_secs(1)).is_empty());
    let c = r.counters();
    assert_eq!(c.standby_dropped, 1);
    assert_eq!(r.w.deferred_len(), 0);
}

/// The server's answer to `tcp(sport, SYN)`.
fn syn_ack(sport: u16) -> Vec<u8> {
    segment(false, sport, tcp_flags::SYN | tcp_flags::ACK, 5000, 1001)
}

#[test]
fn one_iteration_replicates_each_flow_once_with_its_newest_state() {
    let mut r = rig();
    // Two SYNs from the client and one answer from the server wait on the
    // ports; one iteration takes both bursts.
    r.send(&[tcp(40000, tcp_flags::SYN), tcp(40001, tcp_flags::SYN)]);
    let mut answer = PacketBuf::new();
    answer.set(&syn_ack(40000));
    assert_eq!(r.server.tx_burst(std::slice::from_mut(&mut answer)), 1);
    assert_eq!(r.w.poll_once(Instant::now()), 3);
    let ring = r.w.shared().deltas.clone();
    let got: Vec<_> = std::iter::from_fn(|| ring.pop())
        .map(|d| (d.kind, d.key.orig.src_port, d.tcp_state))
        .collect();
    use crate::conntrack::DeltaKind::Created;
    use crate::flow::TcpState;
    assert_eq!(
        got,
        vec![
            (Created, 40000, TcpState::SynRecv),
            (Created, 40001, TcpState::SynSent)
        ]
    );
    assert_eq!(r.counters().deltas_merged, 1);
}
