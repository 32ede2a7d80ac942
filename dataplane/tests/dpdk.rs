//! The DPDK backend over in-process `net_ring` devices: frames cross
//! intact, the worker pipeline runs over DPDK ports, and every mbuf goes
//! back to its pool.
//!
//! Needs DPDK (built with `--features dpdk`) and EAL, which these tests run
//! without hugepages (`--no-huge`); EAL still wants root for its memory and
//! device setup, so they are ignored by default and run by `.ci/run`.
#![cfg(feature = "dpdk")]
#![allow(clippy::cast_possible_truncation)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use ftfw_dataplane::acl;
use ftfw_dataplane::conntrack::ConntrackConfig;
use ftfw_dataplane::packet::{FrameSpec, L4Spec};
use ftfw_dataplane::port::dpdk::{self, DeviceConfig, DpdkPort, MbufBurst};
use ftfw_dataplane::port::{PacketBuf, Port, BURST};
use ftfw_dataplane::worker::{ActiveRules, Worker, WorkerSpec};

fn eal() {
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-pci",
        "--no-huge",
        "-m",
        "256",
        "--log-level=lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    dpdk::init(&args).expect("EAL init");
}

fn udp(i: u16, reply: bool) -> Vec<u8> {
    let (a, b) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    );
    let (sp, dp) = (40000 + i, 53);
    let spec = FrameSpec {
        src_ip: if reply { b } else { a },
        dst_ip: if reply { a } else { b },
        l4: L4Spec::Udp {
            src_port: if reply { dp } else { sp },
            dst_port: if reply { sp } else { dp },
        },
        payload_len: 18 + usize::from(i % 200),
        ..FrameSpec::default()
    };
    spec.to_vec().expect("frame")
}

fn open(name: &str) -> DpdkPort {
    DpdkPort::open(&DeviceConfig::new(name, 1), 0).expect("open ring port")
}

#[test]
#[ignore = "needs root: DPDK EAL"]
fn ring_wire_moves_frames_intact_and_returns_every_mbuf() {
    eal();
    let (na, nb) = dpdk::ring::wire("rt_a", "rt_b", 1024).unwrap();
    assert_eq!(na, "net_ring_rt_a");
    let mut a = open(&na);
    let mut b = open(&nb);
    assert_eq!(a.link_up(), Some(true));
    assert_eq!(a.device().driver(), "net_ring");
    let start = (a.device().pool().in_use(), b.device().pool().in_use());

    let mut sent_frames = Vec::new();
    let mut got_frames = Vec::new();
    let mut rx: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    for round in 0..20u16 {
        let mut out: Vec<PacketBuf> = (0..BURST as u16)
            .map(|k| {
                let mut p = PacketBuf::new();
                p.set(&udp(round * 32 + k, false));
                p
            })
            .collect();
        sent_frames.extend(out.iter().map(|p| p.data.clone()));
        assert_eq!(a.tx_burst(&mut out), BURST);
        let n = b.rx_burst(&mut rx);
        assert_eq!(n, BURST);
        got_frames.extend(rx[..n].iter().map(|p| p.data.clone()));
    }
    assert_eq!(got_frames, sent_frames);
    // Nothing more waits.
    assert_eq!(b.rx_burst(&mut rx), 0);
    // A receive into fewer buffers than frames leaves the rest queued.
    let mut out: Vec<PacketBuf> = (0..4)
        .map(|k| {
            let mut p = PacketBuf::new();
            p.set(&udp(1000 + k, true));
            p
        })
        .collect();
    assert_eq!(b.tx_burst(&mut out), 4);
    assert_eq!(a.rx_burst(&mut rx[..3]), 3);
    assert_eq!(a.rx_burst(&mut rx), 1);
    assert_eq!(rx[0].data, udp(1003, true));

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.tx_packets, sb.rx_packets), (640, 640));
    assert_eq!((sb.tx_packets, sa.rx_packets), (4, 4));
    assert_eq!(
        sa.tx_bytes,
        sent_frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(sa.rx_missed + sa.rx_errors + sa.tx_errors, 0);
    let dev = a.device().stats().unwrap();
    assert_eq!((dev.tx_packets, dev.rx_packets), (640, 4));

    // Received frames live in their mbufs until the buffers let go of them;
    // then every mbuf is back: the pools are where they started.
    assert!(rx[0].data.in_mbuf());
    for p in &mut rx {
        p.data.clear();
    }
    assert_eq!(
        (a.device().pool().in_use(), b.device().pool().in_use()),
        start
    );
}

#[test]
#[ignore = "needs root: DPDK EAL"]
fn owned_mbufs_free_on_drop_and_transmit_consumes_them() {
    eal();
    let (na, nb) = dpdk::ring::wire("mb_a", "mb_b", 256).unwrap();
    let mut a = open(&na);
    let mut b = open(&nb);
    let pool_a = a.device().clone();
    let before = pool_a.pool().in_use();
    {
        let m = pool_a.pool().alloc().expect("mbuf");
        assert_eq!(pool_a.pool().in_use(), before + 1);
        drop(m);
    }
    assert_eq!(pool_a.pool().in_use(), before);

    let mut burst = MbufBurst::new();
    assert!(pool_a.pool().alloc_bulk(&mut burst, 8));
    assert!(
        !pool_a.pool().alloc_bulk(&mut burst, BURST),
        "more than a burst"
    );
    for i in 0..8 {
        assert!(burst.get_mut(i).unwrap().append(&udp(i as u16, false)));
    }
    assert_eq!(pool_a.pool().in_use(), before + 8);
    let sent = a.tx_mbufs(&mut burst);
    assert_eq!((sent, burst.len()), (8, 0));
    // In the ring now: still in use until the other end takes them.
    assert_eq!(pool_a.pool().in_use(), before + 8);
    let mut got = MbufBurst::new();
    assert_eq!(b.rx_mbufs(&mut got), 8);
    assert_eq!(got.get(7).unwrap().data(), &udp(7, false)[..]);
    drop(got);
    assert_eq!(pool_a.pool().in_use(), before);

    // An mbuf that does not fit its frame is refused, unchanged.
    let mut m = pool_a.pool().alloc().unwrap();
    assert!(!m.append(&vec![0u8; m.tailroom() + 1]));
    assert_eq!(m.pkt_len(), 0);
}

#[test]
#[ignore = "needs root: DPDK EAL"]
fn worker_pipeline_over_dpdk_ports_forwards_and_leaks_no_mbuf() {
    eal();
    let (c, o) = dpdk::ring::wire("wp_client", "wp_outside", 1024).unwrap();
    let (i, s) = dpdk::ring::wire("wp_inside", "wp_server", 1024).unwrap();
    let mut client = open(&c);
    let mut server = open(&s);
    let outside = open(&o);
    let inside = open(&i);
    let pools = [
        client.device().clone(),
        server.device().clone(),
        outside.device().clone(),
        inside.device().clone(),
    ];
    let start: Vec<u32> = pools.iter().map(|d| d.pool().in_use()).collect();

    let rules = acl::parse_rules(
        "policy drop\naccept ct established,related\naccept in outside proto udp dport 53 ct new\n",
        "test",
        1,
        &|n| match n {
            "outside" => Some(0),
            "inside" => Some(1),
            _ => None,
        },
    )
    .unwrap();
    let active = Arc::new(ArcSwap::from_pointee(ActiveRules {
        generation: 1,
        classifier: rules.compile(),
        sync: Default::default(),
        nat: Default::default(),
        helpers: Default::default(),
    }));
    let spec = WorkerSpec::bridged_pair(
        Box::new(outside),
        Box::new(inside),
        ConntrackConfig {
            capacity: 4096,
            ..ConntrackConfig::default()
        },
        4096,
    );
    let mut worker = Worker::new(spec, active, None);

    let mut sink: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let burst = |first: u16, reply: bool| -> Vec<PacketBuf> {
        (0..BURST as u16)
            .map(|k| {
                let mut p = PacketBuf::new();
                p.set(&udp(first + k, reply));
                p
            })
            .collect()
    };
    let (mut to_server, mut to_client, mut dropped) = (0usize, 0usize, 0usize);
    for round in 0..50u16 {
        // Requests from the client (new flows, allowed), their replies from
        // the server (established), and frames from the server that open
        // nothing (dropped by the policy).
        assert_eq!(client.tx_burst(&mut burst(round % 8 * 32, false)), BURST);
        worker.poll_once(Instant::now());
        to_server += server.rx_burst(&mut sink);
        assert_eq!(server.tx_burst(&mut burst(round % 8 * 32, true)), BURST);
        worker.poll_once(Instant::now());
        to_client += client.rx_burst(&mut sink);
        assert_eq!(server.tx_burst(&mut burst(5000 + round, false)), BURST);
        worker.poll_once(Instant::now());
        dropped += client.rx_burst(&mut sink);
    }
    assert_eq!((to_server, to_client, dropped), (1600, 1600, 0));
    worker.publish();
    let c = worker.shared().counters.load();
    assert_eq!(c.flows, 256, "{c:?}");
    assert!(c.fast_path > 0, "{c:?}");
    assert_eq!(c.dropped_by_rule, 1600, "{c:?}");
    assert_eq!(c.tx_dropped, 0, "{c:?}");

    // After the run every pool is back at its starting occupancy (the
    // sink's buffers hold the last frames received until cleared).
    drop(worker);
    for p in &mut sink {
        p.data.clear();
    }
    let end: Vec<u32> = pools.iter().map(|d| d.pool().in_use()).collect();
    assert_eq!(end, start);
}

/// `n` frames received on `from` (sent from its peer `to_from` as heap
/// frames), so each is lent its mbuf.
fn received(to_from: &mut DpdkPort, from: &mut DpdkPort, first: u16, n: usize) -> Vec<PacketBuf> {
    let mut out: Vec<PacketBuf> = (0..n as u16)
        .map(|k| {
            let mut p = PacketBuf::new();
            p.set(&udp(first + k, false));
            p
        })
        .collect();
    let mut got: Vec<PacketBuf> = (0..n).map(|_| PacketBuf::new()).collect();
    let mut sent = 0;
    while sent < n {
        let k = to_from.tx_burst(&mut out[sent..(sent + BURST).min(n)]);
        assert!(k > 0, "the ring takes the frames");
        assert_eq!(from.rx_burst(&mut got[sent..sent + k]), k);
        sent += k;
    }
    assert!(got.iter().all(|p| p.data.in_mbuf()), "lent, not copied");
    got
}

#[test]
#[ignore = "needs root: DPDK EAL"]
fn received_frames_are_rewritten_and_sent_in_their_own_mbufs() {
    eal();
    let (na, nb) = dpdk::ring::wire("zc_a", "zc_b", 64).unwrap();
    let (nc, nd) = dpdk::ring::wire("zc_c", "zc_d", 1024).unwrap();
    let (mut a, mut b) = (open(&na), open(&nb));
    let (mut c, mut d) = (open(&nc), open(&nd));
    let in_use = |p: &DpdkPort| p.device().pool().in_use();
    let start = [in_use(&a), in_use(&b), in_use(&c), in_use(&d)];

    // A frame received on d is rewritten in its mbuf and sent on by b
    // without taking an mbuf from b's pool.
    let mut fwd = received(&mut c, &mut d, 0, 1);
    fwd[0].data[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x42]);
    let mut want = udp(0, false);
    want[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x42]);
    let b_before = in_use(&b);
    assert_eq!(b.tx_burst(&mut fwd), 1);
    assert_eq!(in_use(&b), b_before, "no mbuf taken to transmit it");
    assert!(fwd[0].data.is_empty(), "the mbuf went to the driver");
    let mut rx: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    assert_eq!(a.rx_burst(&mut rx), 1);
    assert_eq!(rx[0].data, want);
    // A heap frame (a frame the worker built) is copied into one of b's.
    let mut built = vec![PacketBuf::new()];
    built[0].set(&udp(7, true));
    assert_eq!(b.tx_burst(&mut built), 1);
    assert_eq!(in_use(&b), b_before + 1);
    assert_eq!(a.rx_burst(&mut rx[1..]), 1);
    assert_eq!(rx[1].data, udp(7, true));
    assert_eq!(b.stats().tx_packets, 2);
    assert_eq!(
        b.stats().tx_bytes,
        (udp(0, false).len() + udp(7, true).len()) as u64
    );

    // A lengthened frame leaves its mbuf for heap memory, intact.
    let mut grown = received(&mut c, &mut d, 20, 1);
    grown[0].data.extend_from_slice(&[0xee; 4]);
    assert!(!grown[0].data.in_mbuf());
    let mut want = udp(20, false);
    want.extend_from_slice(&[0xee; 4]);
    assert_eq!(grown[0].data, want);
    // Cut shorter, it stays in its mbuf.
    let mut short = received(&mut c, &mut d, 40, 1);
    let len = short[0].data.len();
    short[0].data.truncate(len - 3);
    assert!(short[0].data.in_mbuf());
    assert_eq!(*short[0].data, udp(40, false)[..len - 3]);

    // The a/b ring takes 63 frames: of 64 lent ones, the last is refused
    // and gets its mbuf back, frame intact.
    let mut many = received(&mut c, &mut d, 100, 64);
    assert_eq!(b.tx_burst(&mut many[..32]), 32);
    assert_eq!(b.tx_burst(&mut many[32..]), 31);
    assert!(many[63].data.in_mbuf());
    assert_eq!(many[63].data, udp(163, false));
    assert!(many[..63].iter().all(|p| p.data.is_empty()));
    assert_eq!(b.stats().tx_dropped, 1);
    let mut drained = 0;
    loop {
        let n = a.rx_burst(&mut rx);
        if n == 0 {
            break;
        }
        drained += n;
        assert!(rx[..n].iter().all(|p| p.data.in_mbuf()));
    }
    assert_eq!(drained, 63);

    // Every mbuf is back once the buffers let go.
    for p in rx
        .iter_mut()
        .chain(&mut many)
        .chain(&mut grown)
        .chain(&mut short)
    {
        p.data.clear();
    }
    assert_eq!([in_use(&a), in_use(&b), in_use(&c), in_use(&d)], start);
}
