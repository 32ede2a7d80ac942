//! AF_PACKET port on veth pairs inside a private network namespace.
//!
//! Needs root (network namespaces, AF_PACKET) and iproute2; run with
//! `cargo test -p ftfw-dataplane --test af_packet -- --include-ignored`.
//! Every test creates its own namespace `ftfwt-<pid>-<tag>` and deletes it
//! when done, also on failure. Nothing is routed out of the namespace.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ftfw_dataplane::port::af_packet::{
    interface_exists, mac_address, AfPacketConfig, AfPacketPort, Transmit,
};
use ftfw_dataplane::port::{PacketBuf, Port, BURST};

#[path = "af_packet/transmit.rs"]
mod transmit;

#[path = "common/netns.rs"]
mod netns;
use netns::*;

const ROOT: &str = "needs root: network namespaces and AF_PACKET";

fn open(iface: &str, group: Option<u16>) -> AfPacketPort {
    let mut cfg = AfPacketConfig::new(iface);
    cfg.fanout_group = group;
    AfPacketPort::open(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// Ethernet + IPv4 or IPv6 + UDP (17) or TCP (6, an ACK segment) with a
/// valid L4 checksum. `src` and `dst` must be the same IP version.
fn l4_frame(src: (IpAddr, u16), dst: (IpAddr, u16), proto: u8, payload: &[u8]) -> Vec<u8> {
    let l4_len = if proto == 17 { 8 } else { 20 } + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    let mut sum = 0;
    match (src.0, dst.0) {
        (IpAddr::V4(s4), IpAddr::V4(d4)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = u16::try_from(20 + l4_len).unwrap();
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&s4.octets());
            ip.extend_from_slice(&d4.octets());
            let mut h = 0;
            csum_add(&mut h, &ip);
            let c = !csum_fold(h);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
            csum_add(&mut sum, &ip[12..20]);
        }
        (IpAddr::V6(s6), IpAddr::V6(d6)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s6.octets());
            f.extend_from_slice(&d6.octets());
            csum_add(&mut sum, &s6.octets());
            csum_add(&mut sum, &d6.octets());
        }
        _ => panic!("mixed IP versions"),
    }
    let l4 = f.len();
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    let csum_at = if proto == 17 {
        f.extend_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        l4 + 6
    } else {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 5 << 4, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        l4 + 16
    };
    f.extend_from_slice(payload);
    sum += u32::from(proto) + u32::try_from(l4_len).unwrap();
    csum_add(&mut sum, &f[l4..]);
    let c = match !csum_fold(sum) {
        0 if proto == 17 => 0xffff,
        c => c,
    };
    f[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// A destination unreachable (`code`) about `quoted`, from 203.0.113.`h`.
fn unreachable_about(quoted: &[u8], code: u8, h: u8) -> Vec<u8> {
    use ftfw_dataplane::packet::icmp_error::{write_answer, Answer};
    let m = ftfw_dataplane::packet::parse_frame(quoted).unwrap();
    let mut out = vec![0u8; 1600];
    let answer = Answer {
        msg_type: 3,
        code,
        src: IpAddr::V4(Ipv4Addr::new(203, 0, 113, h)),
        ttl: 64,
        eth_src: MAC_B,
        eth_dst: MAC_A,
    };
    let n = write_answer(quoted, &m, &answer, &mut out).unwrap();
    out.truncate(n);
    out
}

/// The bytes after `MAGIC`, if the frame carries it.
fn tagged_payload(frame: &[u8]) -> Option<&[u8]> {
    let at = frame.windows(MAGIC.len()).position(|w| w == MAGIC)?;
    Some(&frame[at + MAGIC.len()..])
}

/// Payload of [`marker_frame`] (no [`MAGIC`]: not one of the numbered
/// frames).
const MARKER: &[u8] = b"marker: everything before me has arrived";

/// A frame sent after the frames under test so that its arrival proves
/// theirs (or their absence) had its chance: packet sockets deliver in
/// order.
fn marker_frame() -> Vec<u8> {
    udp_frame(&[], ([192, 0, 2, 9], 9), ([203, 0, 113, 9], 9), MARKER)
}

fn is_marker(frame: &[u8]) -> bool {
    frame.windows(MARKER.len()).any(|w| w == MARKER)
}

/// Transmits all `frames` on `port`, retrying while the ring is full, and
/// calls `between` after every burst (to drain receivers). Bounded: panics
/// after 5 s.
fn send_all(port: &mut AfPacketPort, frames: &[Vec<u8>], mut between: impl FnMut()) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let mut sent = 0;
    while sent < frames.len() {
        assert!(
            Instant::now() < deadline,
            "sent only {sent}/{} frames",
            frames.len()
        );
        let chunk = &frames[sent..frames.len().min(sent + BURST)];
        for (b, f) in bufs.iter_mut().zip(chunk) {
            assert!(b.set(f));
        }
        let n = port.tx_burst(&mut bufs[..chunk.len()]);
        sent += n;
        between();
        if n < chunk.len() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Receives from every port until `want` frames were counted (`seen`
/// returns whether it counts a frame) or 5 s pass; `seen` gets the port
/// index and the frame. Returns the count.
fn receive_until(
    ports: &mut [&mut AfPacketPort],
    want: usize,
    mut seen: impl FnMut(usize, &[u8]) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let mut count = 0;
    while count < want && Instant::now() < deadline {
        let mut got = 0;
        for (i, p) in ports.iter_mut().enumerate() {
            let n = p.rx_burst(&mut bufs);
            for b in &bufs[..n] {
                count += usize::from(seen(i, &b.data));
            }
            got += n;
        }
        if got == 0 {
            ports[0].wait_rx(Duration::from_millis(2));
        }
    }
    count
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn tx_rx_in_order_intact_and_ignore_outgoing() {
    in_order_intact_and_ignore_outgoing("order", Transmit::Ring);
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn sendmmsg_transmit_in_order_intact_and_ignore_outgoing() {
    in_order_intact_and_ignore_outgoing("ordercp", Transmit::Copy);
}

fn in_order_intact_and_ignore_outgoing(name: &str, transmit: Transmit) {
    let _ = ROOT;
    let ns = Netns::new(name);
    ns.veth("a0", "a1");
    ns.enter(|| {
        assert!(interface_exists("a0") && interface_exists("a1"));
        assert!(mac_address("a0").is_some());
        assert_ne!(mac_address("a0"), mac_address("a1"));

        let mut tx = AfPacketPort::open(&AfPacketConfig {
            transmit,
            ..AfPacketConfig::new("a0")
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tx.transmit(), transmit);
        // A second socket on the sending interface: without
        // PACKET_IGNORE_OUTGOING it would see everything `tx` sends.
        let mut watcher = open("a0", None);
        let mut rx = open("a1", None);

        const N: u32 = 1000;
        let frames: Vec<Vec<u8>> = (0..N)
            .map(|i| {
                let mut payload = MAGIC.to_vec();
                payload.extend_from_slice(&i.to_be_bytes());
                // Sizes from minimal to a full 1500-byte MTU.
                let fill =
                    usize::try_from(if i % 50 == 49 { 1500 - 28 - 8 } else { i % 200 }).unwrap();
                payload.resize(payload.len() + fill, u8::try_from(i % 251).unwrap());
                let vlans: &[(u16, u16)] = match i % 10 {
                    3 => &[(0x8100, 100)],
                    7 => &[(0x88a8, 200), (0x8100, 300)],
                    _ => &[],
                };
                udp_frame(
                    vlans,
                    ([192, 0, 2, 1], 40000),
                    ([198, 51, 100, 2], 7),
                    &payload,
                )
            })
            .collect();

        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut stray = 0;
        let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        send_all(&mut tx, &frames, || {
            let n = rx.rx_burst(&mut bufs);
            got.extend(
                bufs[..n]
                    .iter()
                    .filter(|b| tagged_payload(&b.data).is_some())
                    .map(|b| b.data.to_vec()),
            );
        });
        let want = frames.len();
        let already = got.len();
        receive_until(
            &mut [&mut rx, &mut tx, &mut watcher],
            want - already,
            |port, f| match (port, tagged_payload(f)) {
                (0, Some(_)) => {
                    got.push(f.to_vec());
                    true
                }
                (_, Some(_)) => {
                    stray += 1;
                    false
                }
                _ => false,
            },
        );
        assert_eq!(got.len(), want, "received {} of {want} frames", got.len());
        for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
            assert_eq!(g, f, "frame {i} differs (or arrived out of order)");
        }

        // An echo of our own frames would be queued on a0's sockets before
        // anything that arrives later: once a marker sent back from a1 has
        // reached both of them, they have had every chance to show one.
        send_all(&mut rx, &[marker_frame()], || {});
        let mut marked = [false; 2];
        receive_until(&mut [&mut tx, &mut watcher], 2, |port, f| {
            stray += usize::from(tagged_payload(f).is_some());
            let first = is_marker(f) && !marked[port];
            marked[port] |= first;
            first
        });
        assert_eq!(
            marked,
            [true, true],
            "the marker did not reach a0's sockets"
        );
        assert_eq!(
            stray, 0,
            "the sending interface's sockets received our own frames"
        );

        let ts = tx.stats();
        assert_eq!(ts.tx_packets, u64::from(N));
        assert_eq!(ts.tx_dropped, 0);
        let rs = rx.stats();
        assert!(rs.rx_packets >= u64::from(N));
        assert_eq!(rs.rx_dropped, 0);
        assert_eq!(rs.truncated, 0);
        eprintln!("tx {ts:?}\nrx {rs:?}");
    });
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn partial_checksums_from_the_kernel_are_completed() {
    let ns = Netns::new("csum");
    ns.veth("c0", "c1");
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "c0"]);
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "02:00:00:00:00:0b",
        "dev",
        "c0",
        "nud",
        "permanent",
    ]);
    ns.enter(|| {
        let mut rx = open("c1", None);
        // A kernel UDP socket: with veth's default checksum offload its
        // datagrams leave c0 as CHECKSUM_PARTIAL.
        let sock = std::net::UdpSocket::bind("192.0.2.1:0").expect("bind udp");
        const N: usize = 20;
        for i in 0..N {
            let mut payload = MAGIC.to_vec();
            payload.resize(payload.len() + 10 + i, u8::try_from(i).unwrap());
            sock.send_to(&payload, "192.0.2.2:9").expect("send_to");
        }
        let mut got = Vec::new();
        receive_until(&mut [&mut rx], N, |_, f| {
            let ours = tagged_payload(f).is_some();
            if ours {
                got.push(f.to_vec());
            }
            ours
        });
        assert_eq!(got.len(), N);
        for f in &got {
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            assert_ne!(&f[14 + 26..14 + 28], &[0, 0], "UDP checksum left empty");
            assert!(udp4_checksum_ok(f, 14), "bad UDP checksum in {f:02x?}");
        }
        eprintln!(
            "checksums completed in software: {}",
            rx.checksums_completed()
        );
        assert!(
            rx.checksums_completed() >= N as u64,
            "expected CHECKSUM_PARTIAL frames from veth"
        );
    });
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn fanout_keeps_both_directions_of_a_flow_on_one_worker() {
    let ns = Netns::new("fanout");
    ns.veth("a0", "a1");
    ns.veth("b0", "b1");
    ns.enter(|| {
        const WORKERS: usize = 2;
        const FLOWS: u16 = 64;
        const PER_FLOW: u16 = 4;
        // Worker by worker, each joins the a1 group, then the b1 group: the
        // same join order in both groups.
        let mut wa = Vec::new();
        let mut wb = Vec::new();
        for _ in 0..WORKERS {
            wa.push(open("a1", Some(0x4101)));
            wb.push(open("b1", Some(0x4102)));
        }
        let mut ta = open("a0", None);
        let mut tb = open("b0", None);

        // A mix of IPv4/IPv6 and UDP/TCP flows (f % 4 picks the kind).
        let client = |f: u16| -> (IpAddr, u16) {
            let host = u8::try_from(10 + f % 50).unwrap();
            let addr = if f % 4 < 2 {
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
            } else {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(host)))
            };
            (addr, 20000 + f * 7)
        };
        let server = |f: u16| -> (IpAddr, u16) {
            let host = u8::try_from(1 + f % 5).unwrap();
            let addr = if f % 4 < 2 {
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, host))
            } else {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, u16::from(host)))
            };
            (addr, [53, 80, 443, 8080][usize::from(f % 4)])
        };
        let frame = |f: u16, dir: u8, k: u16| {
            let mut payload = MAGIC.to_vec();
            payload.extend_from_slice(&f.to_be_bytes());
            payload.push(dir);
            payload.extend_from_slice(&k.to_be_bytes());
            let proto = [17, 6][usize::from(f & 1)];
            if dir == 0 {
                l4_frame(client(f), server(f), proto, &payload)
            } else {
                l4_frame(server(f), client(f), proto, &payload)
            }
        };
        let fwd: Vec<Vec<u8>> = (0..FLOWS)
            .flat_map(|f| (0..PER_FLOW).map(move |k| (f, k)))
            .map(|(f, k)| frame(f, 0, k))
            .collect();
        let rev: Vec<Vec<u8>> = (0..FLOWS)
            .flat_map(|f| (0..PER_FLOW).map(move |k| (f, k)))
            .map(|(f, k)| frame(f, 1, k))
            .collect();
        let v6 = fwd.iter().filter(|f| f[12..14] == [0x86, 0xdd]).count();
        assert_eq!(
            v6,
            usize::from(FLOWS / 2 * PER_FLOW),
            "half the flows are IPv6"
        );
        send_all(&mut ta, &fwd, || {});
        send_all(&mut tb, &rev, || {});

        // (flow, direction) -> frames seen per worker index.
        let mut seen: HashMap<(u16, u8), [usize; WORKERS]> = HashMap::new();
        let want = fwd.len() + rev.len();
        let (wa0, wa1) = wa.split_at_mut(1);
        let (wb0, wb1) = wb.split_at_mut(1);
        let mut ports = [&mut wa0[0], &mut wa1[0], &mut wb0[0], &mut wb1[0]];
        let total = receive_until(&mut ports, want, |port, f| {
            let Some(p) = tagged_payload(f) else {
                return false;
            };
            let flow = u16::from_be_bytes([p[0], p[1]]);
            let dir = p[2];
            // Ports 0,1 are a1's workers (forward), 2,3 are b1's (reverse).
            assert_eq!(
                usize::from(dir),
                port / WORKERS,
                "frame on the wrong interface"
            );
            seen.entry((flow, dir)).or_default()[port % WORKERS] += 1;
            true
        });
        assert_eq!(total, want, "received {total} of {want} frames");

        let mut per_worker = [0usize; WORKERS];
        for f in 0..FLOWS {
            let worker = |dir: u8| {
                let counts = seen[&(f, dir)];
                let used: Vec<usize> = (0..WORKERS).filter(|&w| counts[w] > 0).collect();
                assert_eq!(
                    used.len(),
                    1,
                    "flow {f} dir {dir} split across workers: {counts:?}"
                );
                assert_eq!(counts[used[0]], usize::from(PER_FLOW));
                used[0]
            };
            let (w_fwd, w_rev) = (worker(0), worker(1));
            assert_eq!(
                w_fwd, w_rev,
                "flow {f}: forward on worker {w_fwd}, reverse on worker {w_rev}"
            );
            // The worker the control side computes for the flow (where a
            // takeover commits it) is the one its packets reach.
            let t = ftfw_dataplane::packet::parse_frame(&frame(f, 0, 0))
                .unwrap()
                .tuple;
            assert_eq!(
                ftfw_dataplane::port::steer::worker_of(&t, WORKERS),
                w_fwd,
                "flow {f}: steered to worker {w_fwd}, computed otherwise"
            );
            per_worker[w_fwd] += 1;
        }
        eprintln!("flows per worker: {per_worker:?}");
        // 64 flows all hashing to one of two workers has odds 2^-63.
        assert!(
            per_worker.iter().all(|&n| n > 0),
            "fanout did not spread flows: {per_worker:?}"
        );
    });
}

fn bufs_of(frames: &[Vec<u8>]) -> Vec<PacketBuf> {
    frames
        .iter()
        .map(|f| {
            let mut b = PacketBuf::new();
            assert!(b.set(f));
            b
        })
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn full_tx_ring_accepts_a_prefix_and_pending_frames_go_out_later() {
    let ns = Netns::new("txfull");
    ns.veth("t0", "t1");
    ns.enter(|| {
        let mut cfg = AfPacketConfig::new("t0");
        cfg.transmit = Transmit::Ring;
        // Two slots: one 4 KiB block holds one 2112-byte slot.
        cfg.tx_ring.block_size = 4096;
        cfg.tx_ring.block_count = 2;
        let mut tx = AfPacketPort::open(&cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tx.tx_slots(), 2);
        let mut rx = open("t1", None);

        // While the link is down the kernel refuses the kick, so the slots
        // stay queued and the ring is full after two frames.
        ns.ip(&["link", "set", "t0", "down"]);
        let frames = numbered(5);
        let mut bufs = bufs_of(&frames);
        assert_eq!(tx.tx_burst(&mut bufs), 2);
        assert_eq!(tx.tx_burst(&mut bufs[2..]), 0);
        let st = tx.stats();
        assert_eq!(st.tx_packets, 2);
        assert_eq!(st.tx_dropped, 3 + 3);

        // Once the link is back, an idle wait retries the kick.
        ns.ip(&["link", "set", "t0", "up"]);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut rbufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        while got.len() < 2 && Instant::now() < deadline {
            tx.wait_rx(Duration::from_millis(1));
            let n = rx.rx_burst(&mut rbufs);
            got.extend(
                rbufs[..n]
                    .iter()
                    .filter(|b| tagged_payload(&b.data).is_some())
                    .map(|b| b.data.clone()),
            );
        }
        assert_eq!(got, frames[..2]);
        // The slots are free again.
        let mut bufs = bufs_of(&frames[2..]);
        assert_eq!(tx.tx_burst(&mut bufs[..2]), 2);
    });
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn kernel_drops_on_a_full_rx_ring_are_counted() {
    let ns = Netns::new("rxdrop");
    ns.veth("d0", "d1");
    ns.enter(|| {
        let mut tx = open("d0", None);
        let mut cfg = AfPacketConfig::new("d1");
        // Two 4 KiB blocks: room for a few dozen small frames.
        cfg.rx_ring.block_size = 4096;
        cfg.rx_ring.block_count = 2;
        let mut rx = AfPacketPort::open(&cfg).unwrap_or_else(|e| panic!("{e}"));

        const N: u32 = 500;
        send_all(&mut tx, &numbered(N), || {});
        // Nothing read yet: the ring overflows and the kernel counts drops.
        let deadline = Instant::now() + Duration::from_secs(5);
        while rx.stats().rx_dropped == 0 {
            assert!(Instant::now() < deadline, "no kernel drop counted");
            rx.wait_rx(Duration::from_millis(2));
        }
        // Then every frame of ours is received or dropped (the ring may
        // also drop some IPv6 noise, hence >=): read until that holds.
        let mut ours = 0u64;
        let mut last = None;
        let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ours + rx.stats().rx_dropped < u64::from(N) {
            assert!(
                Instant::now() < deadline,
                "frames neither received nor dropped"
            );
            let n = rx.rx_burst(&mut bufs);
            if n == 0 {
                rx.wait_rx(Duration::from_millis(2));
            }
            for b in &bufs[..n] {
                if let Some(p) = tagged_payload(&b.data) {
                    let seq = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    assert!(last < Some(seq), "out of order: {seq} after {last:?}");
                    last = Some(seq);
                    ours += 1;
                }
            }
        }
        let st = rx.stats();
        eprintln!("received {ours} of {N}; {st:?}");
        assert!(ours > 0 && ours < u64::from(N));
        assert!(st.rx_dropped > 0, "kernel drops not counted: {st:?}");
        // Every frame of ours was either received or dropped (the ring may
        // also have dropped some IPv6 noise, hence >=).
        assert!(ours + st.rx_dropped >= u64::from(N), "{ours} + {st:?}");
    });
}

/// Splits an Ethernet+IPv4 frame (no VLAN) into IPv4 fragments whose
/// payloads are at most `chunk` bytes (a multiple of 8).
fn fragment(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let body = &frame[14 + 20..];
    body.chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut f = frame[..14 + 20].to_vec();
            let total = u16::try_from(20 + part.len()).unwrap();
            f[16..18].copy_from_slice(&total.to_be_bytes());
            let more = if (i + 1) * chunk < body.len() {
                0x2000
            } else {
                0
            };
            let off = u16::try_from(i * chunk / 8).unwrap() | more;
            f[20..22].copy_from_slice(&off.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let mut s = 0;
            csum_add(&mut s, &f[14..34]);
            let c = !csum_fold(s);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(part);
            f
        })
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn fanout_defrag_delivers_reassembled_datagrams_and_plain_fanout_the_fragments() {
    let ns = Netns::new("frag");
    ns.veth("f0", "f1");
    ns.veth("g0", "g1");
    ns.enter(|| {
        let group = |iface: &str, id: u16, defrag: bool| -> Vec<AfPacketPort> {
            (0..2)
                .map(|_| {
                    let mut cfg = AfPacketConfig::new(iface);
                    cfg.fanout_group = Some(id);
                    cfg.fanout_defrag = defrag;
                    AfPacketPort::open(&cfg).unwrap_or_else(|e| panic!("{e}"))
                })
                .collect()
        };
        let mut with = group("f1", 0x4103, true);
        let mut without = group("g1", 0x4104, false);
        let mut payload = MAGIC.to_vec();
        payload.resize(1200, 0x5a);
        let whole = udp_frame(
            &[],
            ([192, 0, 2, 1], 40000),
            ([198, 51, 100, 2], 7),
            &payload,
        );
        let frags = fragment(&whole, 512);
        assert_eq!(frags.len(), 3);
        // Each burst of fragments is followed by a marker (see `collect`).
        let then_marker: Vec<Vec<u8>> = frags.iter().cloned().chain([marker_frame()]).collect();
        send_all(&mut open("f0", None), &then_marker, || {});
        send_all(&mut open("g0", None), &then_marker, || {});

        let ours = |f: &[u8]| f.len() > 34 && f[12..14] == [8, 0] && f[30..34] == [198, 51, 100, 2];
        // Everything of ours arrives before the marker sent after it: read
        // until the marker, then take what the rings still hold.
        let collect = |ports: &mut Vec<AfPacketPort>| {
            let mut got: Vec<(usize, Vec<u8>)> = Vec::new();
            let (p0, p1) = ports.split_at_mut(1);
            let mut marked = false;
            receive_until(&mut [&mut p0[0], &mut p1[0]], 1, |i, f| {
                if ours(f) {
                    got.push((i, f.to_vec()));
                }
                marked |= is_marker(f);
                is_marker(f)
            });
            assert!(marked, "the marker after the fragments never arrived");
            let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
            for (i, p) in [&mut p0[0], &mut p1[0]].into_iter().enumerate() {
                let n = p.rx_burst(&mut bufs);
                got.extend(
                    bufs[..n]
                        .iter()
                        .filter(|b| ours(&b.data))
                        .map(|b| (i, b.data.to_vec())),
                );
            }
            got
        };

        // With FLAG_DEFRAG: one reassembled frame, not three fragments.
        let got = collect(&mut with);
        assert_eq!(got.len(), 1, "{got:?}");
        let f = &got[0].1;
        assert_eq!(f.len(), whole.len());
        assert_eq!(
            u16::from_be_bytes([f[20], f[21]]) & 0x3fff,
            0,
            "not a fragment any more"
        );
        assert_eq!(f[34..], whole[34..], "same UDP datagram");

        // Without: the three fragments as sent, all on one worker.
        let got = collect(&mut without);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got.iter().all(|(w, _)| *w == got[0].0),
            "fragments split across workers"
        );
        let frames: Vec<Vec<u8>> = got.into_iter().map(|(_, f)| f).collect();
        assert_eq!(frames, frags);
    });
}

/// The kernel's fanout program steers ICMP errors by their outer
/// addresses and IPv6 packets with extension headers by addresses alone:
/// each lands on `worker_of(kernel_tuple(..))`, the worker the `mem`
/// ports model and the hand-off corrects (`worker/handoff.rs`).
#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn fanout_steers_errors_and_extension_headers_as_kernel_tuple_says() {
    use ftfw_dataplane::packet::parse_frame;
    use ftfw_dataplane::port::steer::{kernel_tuple, steered_apart, worker_of};
    const WORKERS: usize = 2;
    let ns = Netns::new("steerapart");
    ns.veth("a0", "a1");
    ns.enter(|| {
        let mut wa: Vec<AfPacketPort> = (0..WORKERS).map(|_| open("a1", Some(0x4103))).collect();
        let mut ta = open("a0", None);
        let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let mut frames = Vec::new();
        for h in 1..=32u8 {
            // A distinct quoted packet per error, so each frame is unique.
            let quoted = l4_frame(
                (client, 20000 + u16::from(h)),
                (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 53),
                17,
                MAGIC,
            );
            frames.push(unreachable_about(&quoted, 4, h));
        }
        for k in 0..32u16 {
            let mut f = l4_frame(
                (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 10)),
                    30000 + k,
                ),
                (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
                    53,
                ),
                17,
                MAGIC,
            );
            let l3 = 14;
            f[l3 + 6] = 60;
            let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) + 8;
            f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
            f.splice(l3 + 40..l3 + 40, [17, 0, 1, 4, 0, 0, 0, 0]);
            frames.push(f);
        }
        let mut apart_from_flow = 0;
        let want: HashMap<Vec<u8>, usize> = frames
            .iter()
            .map(|f| {
                let m = parse_frame(f).unwrap();
                assert!(steered_apart(&m));
                let flow = m.icmp_error.unwrap_or(m.tuple);
                let w = worker_of(&kernel_tuple(&m), WORKERS);
                apart_from_flow += usize::from(w != worker_of(&flow, WORKERS));
                (f.clone(), w)
            })
            .collect();
        assert!(
            apart_from_flow > 0,
            "some frames land apart from their flow"
        );
        send_all(&mut ta, &frames, || {});
        let mut ports: Vec<&mut AfPacketPort> = wa.iter_mut().collect();
        let got = receive_until(&mut ports, frames.len(), |port, f| match want.get(f) {
            Some(&w) => {
                assert_eq!(port, w, "steered to worker {port}, kernel_tuple says {w}");
                true
            }
            None => false,
        });
        assert_eq!(got, frames.len());
    });
}

/// Cluster: the bucket filter in the real kernel drops exactly the plain
/// frames of buckets the member does not own (TCP and UDP, IPv4 and IPv6,
/// VLAN-tagged too) before they reach the ring, passes every frame the
/// worker buckets otherwise (ICMP errors by the flow they quote, first
/// fragments), with one socket and with a two-socket fanout group, and
/// passes everything again once removed.
#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn the_bucket_filter_drops_other_members_frames_in_the_kernel() {
    use ftfw_dataplane::buckets::{bucket_of_tuple, BucketSet};
    use ftfw_dataplane::packet::parse_frame;
    use ftfw_dataplane::port::bucket_filter::BucketFilter;
    use ftfw_dataplane::port::steer::worker_of;
    const BUCKETS: u32 = 4096;
    let ns = Netns::new("bucketfilter");
    ns.veth("a0", "a1");
    let key = |f: &[u8]| {
        let m = parse_frame(f).unwrap();
        format!("{:?} {:?} {:?}", m.tuple, m.icmp_error, m.vlan)
    };
    let bucket = |f: &[u8]| bucket_of_tuple(&parse_frame(f).unwrap().tuple, BUCKETS);
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let server = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let (c6, s6) = (
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 10)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
    );
    // One marker per socket of a two-socket group (each socket's marker
    // shows that its ring holds everything sent before it).
    let markers: Vec<Vec<u8>> = (0..2)
        .map(|w| {
            (9..1000u16)
                .map(|p| udp_frame(&[], ([192, 0, 2, 9], p), ([203, 0, 113, 9], 9), MARKER))
                .find(|f| worker_of(&parse_frame(f).unwrap().tuple, 2) == w)
                .unwrap()
        })
        .collect();
    // Every other bucket, and the markers'.
    let mut owned = BucketSet::from_iter_in(BUCKETS, (0..BUCKETS).filter(|b| b % 2 == 0));
    for m in &markers {
        owned.insert(bucket(m));
    }
    let mut plain = Vec::new();
    for k in 0..128u16 {
        plain.push(l4_frame((client, 20000 + k), (server, 80), 6, MAGIC));
    }
    for k in 0..64u16 {
        plain.push(l4_frame((c6, 30000 + k), (s6, 53), 17, MAGIC));
    }
    for k in 0..32u16 {
        let mut f = l4_frame((client, 40000 + k), (server, 443), 6, MAGIC);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        plain.push(f);
    }
    // ICMP errors whose outer addresses fall in a bucket not owned and
    // whose quoted flow's is: a filter that read them as plain frames
    // would drop what the worker wants.
    let mut special = Vec::new();
    for h in 1..=250u8 {
        let quoted = l4_frame((client, 50000 + u16::from(h)), (server, 53), 17, MAGIC);
        let out = unreachable_about(&quoted, 3, h);
        let outer = parse_frame(&out).unwrap().tuple;
        if owned.contains(bucket(&quoted)) && !owned.contains(bucket_of_tuple(&outer, BUCKETS)) {
            special.push(out);
        }
    }
    assert!(special.len() >= 16, "{} errors", special.len());
    special.truncate(16);
    // First fragments (more fragments set) of flows not owned (one socket
    // only: a fanout group with defragmentation holds them for the rest
    // of their datagrams).
    let mut fragments = Vec::new();
    for k in 0..64u16 {
        let mut f = l4_frame((client, 60000 + k), (server, 80), 6, MAGIC);
        if owned.contains(bucket(&f)) {
            continue;
        }
        f[14 + 6] = 0x20;
        f[14 + 10..14 + 12].fill(0);
        let mut h = 0;
        csum_add(&mut h, &f[14..34]);
        let c = !csum_fold(h);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        fragments.push(f);
    }
    assert!(!fragments.is_empty());
    let owned_plain: Vec<&Vec<u8>> = plain.iter().filter(|f| owned.contains(bucket(f))).collect();
    assert!(owned_plain.len() > plain.len() / 4 && owned_plain.len() < plain.len() * 3 / 4);
    let filter = BucketFilter::new(owned.clone(), None);
    for group in [None, Some(0x4104)] {
        ns.enter(|| {
            let mut rx: Vec<AfPacketPort> = (0..if group.is_some() { 2 } else { 1 })
                .map(|_| open("a1", group))
                .collect();
            let mut tx = open("a0", None);
            for p in &mut rx {
                assert!(p.set_bucket_filter(Some(&filter)).unwrap());
            }
            let receive =
                |rx: &mut Vec<AfPacketPort>, tx: &mut AfPacketPort, frames: &[Vec<u8>]| {
                    let mut all = frames.to_vec();
                    all.extend(markers.iter().cloned());
                    send_all(tx, &all, || {});
                    let mut got = std::collections::HashSet::new();
                    let sockets = rx.len();
                    let mut ports: Vec<&mut AfPacketPort> = rx.iter_mut().collect();
                    // Until both markers came (in a group, one on each
                    // socket): frames reach a ring in order and its blocks
                    // are handed over in order, so then each socket has
                    // given us what it got before its marker.
                    let mut marked = vec![false; sockets];
                    let n = receive_until(&mut ports, markers.len(), |port, f| {
                        if tagged_payload(f).is_some() {
                            got.insert(key(f));
                        }
                        marked[port] |= is_marker(f);
                        is_marker(f)
                    });
                    assert_eq!(n, markers.len(), "both markers arrived");
                    assert!(marked.iter().all(|m| *m), "one on each socket");
                    got
                };
            let mut frames = plain.clone();
            let mut special = special.clone();
            if group.is_none() {
                special.extend(fragments.iter().cloned());
            }
            frames.extend(special.iter().cloned());
            let got = receive(&mut rx, &mut tx, &frames);
            let want: std::collections::HashSet<String> = owned_plain
                .iter()
                .map(|f| key(f))
                .chain(special.iter().map(|f| key(f)))
                .collect();
            let missing: Vec<&String> = want.difference(&got).collect();
            let extra: Vec<&String> = got.difference(&want).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "group {group:?}: missing {missing:?}, not filtered {extra:?}"
            );
            // Removed: every frame passes again.
            for p in &mut rx {
                assert!(p.set_bucket_filter(None).unwrap());
            }
            let got = receive(&mut rx, &mut tx, &plain);
            assert_eq!(
                got.len(),
                plain.len(),
                "group {group:?}: all pass unfiltered"
            );
        });
    }
}
