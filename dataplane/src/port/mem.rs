//! `mem` ports: in-process rings for tests, the simulator and benches.
//!
//! [`wire`] makes two connected ports, like the two ends of a cable. Frames
//! travel as buffers through bounded lock-free queues; each direction owns a
//! fixed pool of buffers that transmit swaps in for the frames it takes, and
//! receive swaps out, so after construction nothing is allocated or copied.
//! A full queue refuses the rest of a burst, which the sender counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::sync::{Parker, Unparker};

use super::{PacketBuf, Port, PortStats, BURST, FRAME_CAPACITY};

/// One direction of a wire.
#[derive(Debug)]
struct Channel {
    frames: ArrayQueue<Vec<u8>>,
    spare: ArrayQueue<Vec<u8>>,
    sleeping: AtomicBool,
    unparker: Unparker,
    /// Frames refused because the queue was full.
    overruns: AtomicU64,
}

/// One end of an in-process wire.
#[derive(Debug)]
pub struct MemPort {
    name: String,
    rx: Arc<Channel>,
    tx: Arc<Channel>,
    parker: Parker,
    stats: PortStats,
    /// Cluster: frames this filter does not keep are dropped on receive,
    /// as the kernel drops them for an AF_PACKET socket.
    filter: Option<super::bucket_filter::BucketFilter>,
    /// Frames the filter dropped.
    filtered: u64,
}

fn channel(slots: usize, parker: &Parker) -> Arc<Channel> {
    let slots = slots.max(BURST);
    let spare = ArrayQueue::new(slots + 2 * BURST);
    for _ in 0..slots + 2 * BURST {
        let _ = spare.push(Vec::with_capacity(FRAME_CAPACITY));
    }
    Arc::new(Channel {
        frames: ArrayQueue::new(slots),
        spare,
        sleeping: AtomicBool::new(false),
        unparker: parker.unparker().clone(),
        overruns: AtomicU64::new(0),
    })
}

/// Two connected ports named `a` and `b`; each direction queues up to `slots`
/// frames.
pub fn wire(a: &str, b: &str, slots: usize) -> (MemPort, MemPort) {
    let pa = Parker::new();
    let pb = Parker::new();
    let to_a = channel(slots, &pa);
    let to_b = channel(slots, &pb);
    (
        MemPort {
            name: a.to_string(),
            rx: to_a.clone(),
            tx: to_b.clone(),
            parker: pa,
            stats: PortStats::default(),
            filter: None,
            filtered: 0,
        },
        MemPort {
            name: b.to_string(),
            rx: to_b,
            tx: to_a,
            parker: pb,
            stats: PortStats::default(),
            filter: None,
            filtered: 0,
        },
    )
}

impl MemPort {
    /// Frames waiting to be received on this end.
    pub fn rx_pending(&self) -> usize {
        self.rx.frames.len()
    }

    /// Frames the peer could not queue towards this end because it was full.
    pub fn rx_overruns(&self) -> u64 {
        self.rx.overruns.load(Ordering::Relaxed)
    }

    /// Frames the bucket filter dropped on receive.
    pub fn filtered(&self) -> u64 {
        self.filtered
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut n = 0;
        while n < bufs.len() {
            let Some(mut frame) = self.rx.frames.pop() else {
                break;
            };
            if self.filter.as_ref().is_some_and(|f| !f.keeps(&frame)) {
                self.filtered += 1;
                frame.clear();
                let _ = self.rx.spare.push(frame);
                continue;
            }
            bufs[n].data.swap_vec(&mut frame);
            // A memory wire vouches for nothing.
            bufs[n].csum_verified = false;
            frame.clear();
            // The pool is sized for every buffer of this channel; if the
            // caller handed us a foreign buffer it simply drops here.
            let _ = self.rx.spare.push(frame);
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += bufs[n].data.len() as u64;
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut sent = 0;
        for buf in bufs.iter_mut() {
            if self.tx.frames.is_full() {
                break;
            }
            let Some(mut empty) = self.tx.spare.pop() else {
                break;
            };
            buf.data.swap_vec(&mut empty);
            let len = empty.len();
            if let Err(mut back) = self.tx.frames.push(empty) {
                // Lost a race with nobody (single producer); restore anyway.
                buf.data.swap_vec(&mut back);
                let _ = self.tx.spare.push(back);
                break;
            }
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += len as u64;
            sent += 1;
        }
        let refused = (bufs.len() - sent) as u64;
        if refused > 0 {
            self.stats.tx_dropped += refused;
            self.tx.overruns.fetch_add(refused, Ordering::Relaxed);
        }
        if sent > 0 && self.tx.sleeping.load(Ordering::Acquire) {
            self.tx.unparker.unpark();
        }
        sent
    }

    fn wait_rx(&mut self, timeout: Duration) {
        self.rx.sleeping.store(true, Ordering::Release);
        if self.rx.frames.is_empty() {
            self.parker.park_timeout(timeout);
        }
        self.rx.sleeping.store(false, Ordering::Release);
    }

    fn set_bucket_filter(
        &mut self,
        filter: Option<&super::bucket_filter::BucketFilter>,
    ) -> std::io::Result<bool> {
        self.filter = filter.cloned();
        Ok(true)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_order_and_overflow_is_counted() {
        let (mut a, mut b) = wire("a", "b", 64);
        let mut out: Vec<PacketBuf> = (0..BURST)
            .map(|i| {
                let mut p = PacketBuf::new();
                p.set(&[i as u8; 60]);
                p
            })
            .collect();
        assert_eq!(a.tx_burst(&mut out), BURST);
        assert_eq!(b.rx_pending(), BURST);
        let mut inb: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        assert_eq!(b.rx_burst(&mut inb), BURST);
        for (i, p) in inb.iter().enumerate() {
            assert_eq!(p.data, vec![i as u8; 60]);
        }
        // Fill: 64 slots, then refusals are counted.
        for p in out.iter_mut() {
            p.set(&[1; 60]);
        }
        assert_eq!(a.tx_burst(&mut out), BURST);
        for p in out.iter_mut() {
            p.set(&[1; 60]);
        }
        assert_eq!(a.tx_burst(&mut out), BURST);
        for p in out.iter_mut() {
            p.set(&[1; 60]);
        }
        assert_eq!(a.tx_burst(&mut out), 0);
        assert_eq!(a.stats().tx_dropped, BURST as u64);
        assert_eq!(b.rx_overruns(), BURST as u64);
        // Buffers keep their capacity: nothing reallocates.
        assert!(inb.iter().all(|p| p.data.capacity() >= FRAME_CAPACITY));
    }

    #[test]
    fn fanout_steers_both_directions_of_a_flow_to_one_worker() {
        use crate::flow::Tuple;
        use crate::packet::{FrameSpec, L4Spec};
        let (mut cl, ce) = fanout("client", "outside", 4, 64);
        let (sv, _se) = fanout("server", "inside", 4, 64);
        let mut used = [false; 4];
        for sp in 1000..1100u16 {
            let t = Tuple::new(
                "192.0.2.1".parse().unwrap(),
                "198.51.100.2".parse().unwrap(),
                17,
                sp,
                53,
            );
            let fwd = FrameSpec {
                src_ip: t.src_ip(),
                dst_ip: t.dst_ip(),
                l4: L4Spec::Udp {
                    src_port: sp,
                    dst_port: 53,
                },
                ..FrameSpec::default()
            };
            let rev = FrameSpec {
                src_ip: t.dst_ip(),
                dst_ip: t.src_ip(),
                l4: L4Spec::Udp {
                    src_port: 53,
                    dst_port: sp,
                },
                ..FrameSpec::default()
            };
            let (a, b) = (
                cl.worker_for(&fwd.to_vec().unwrap()),
                sv.worker_for(&rev.to_vec().unwrap()),
            );
            assert_eq!(a, b, "flow {t} split over workers");
            used[a] = true;
            let mut one = [PacketBuf::new()];
            one[0].set(&fwd.to_vec().unwrap());
            assert_eq!(cl.tx_burst(&mut one), 1);
        }
        assert!(
            used.iter().all(|u| *u),
            "100 flows did not reach all 4 workers"
        );
        // Every frame sent landed on a worker end.
        assert_eq!(ce.iter().map(MemPort::rx_pending).sum::<usize>(), 100);
        // Non-IP goes to worker 0.
        assert_eq!(cl.worker_for(&[0u8; 60]), 0);
    }

    #[test]
    fn a_bucket_filter_drops_on_receive_what_it_does_not_keep() {
        use crate::buckets::BucketSet;
        use crate::packet::{FrameSpec, L4Spec};
        use crate::port::bucket_filter::BucketFilter;
        let (mut a, mut b) = wire("a", "b", 64);
        let none = BucketFilter::new(BucketSet::empty(64), None);
        assert!(b.set_bucket_filter(Some(&none)).unwrap());
        let mut out: Vec<PacketBuf> = (0..8u16)
            .map(|k| {
                let mut p = PacketBuf::new();
                p.set(
                    &FrameSpec {
                        l4: L4Spec::Udp {
                            src_port: 1000 + k,
                            dst_port: 53,
                        },
                        ..FrameSpec::default()
                    }
                    .to_vec()
                    .unwrap(),
                );
                p
            })
            .collect();
        // Not IP: passes whatever is owned.
        out[7].set(&[0u8; 60]);
        assert_eq!(a.tx_burst(&mut out), 8);
        let mut inb: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        assert_eq!(b.rx_burst(&mut inb), 1);
        assert_eq!(inb[0].data, vec![0u8; 60]);
        assert_eq!((b.filtered(), b.stats().rx_packets), (7, 1));
        // Removed: everything passes.
        assert!(b.set_bucket_filter(None).unwrap());
        for p in out.iter_mut().take(7) {
            p.set(&[1; 60]);
        }
        assert_eq!(a.tx_burst(&mut out[..7]), 7);
        assert_eq!(b.rx_burst(&mut inb), 7);
    }

    #[test]
    fn wait_rx_wakes_on_traffic() {
        let (mut a, mut b) = wire("a", "b", 64);
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut bufs = vec![PacketBuf::new()];
            loop {
                if b.rx_burst(&mut bufs) == 1 {
                    return true;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    return false;
                }
                b.wait_rx(Duration::from_secs(5));
            }
        });
        let mut f = vec![PacketBuf::new()];
        f[0].set(&[7; 64]);
        assert_eq!(a.tx_burst(&mut f), 1);
        assert!(t.join().unwrap());
    }
}

/// The host side of a multi-worker `mem` link: one wire per worker, and a
/// transmit that steers each frame to a worker by the same symmetric flow
/// hash the shards use, so both directions of a flow reach one worker (the
/// software counterpart of PACKET_FANOUT_HASH and symmetric RSS). Frames
/// that are not IP or do not parse go to worker 0.
#[derive(Debug)]
pub struct FanoutHost {
    name: String,
    wires: Vec<MemPort>,
    next_rx: usize,
    stats: PortStats,
    one: Vec<PacketBuf>,
}

/// A host port fanned out over `workers` wires, and the worker ends (one per
/// worker, in worker order) to give the workers.
pub fn fanout(host: &str, port: &str, workers: usize, slots: usize) -> (FanoutHost, Vec<MemPort>) {
    let mut wires = Vec::with_capacity(workers.max(1));
    let mut ends = Vec::with_capacity(workers.max(1));
    for w in 0..workers.max(1) {
        let (h, p) = wire(&format!("{host}.{w}"), &format!("{port}.{w}"), slots);
        wires.push(h);
        ends.push(p);
    }
    let host = FanoutHost {
        name: host.to_string(),
        wires,
        next_rx: 0,
        stats: PortStats::default(),
        one: vec![PacketBuf::new()],
    };
    (host, ends)
}

impl FanoutHost {
    /// The worker a frame is steered to.
    pub fn worker_for(&self, frame: &[u8]) -> usize {
        let n = self.wires.len() as u64;
        match crate::packet::parse_frame(frame) {
            Ok(m) if m.is_ip() => {
                // As the AF_PACKET steering program sends them: ICMP
                // errors by their outer addresses, fragments and IPv6
                // packets with extension headers by addresses alone (the
                // workers hand such frames to their flow's worker).
                let t = super::steer::kernel_tuple(&m);
                super::steer::worker_of(&t, usize::try_from(n).unwrap_or(1))
            }
            _ => 0,
        }
    }
}

impl Port for FanoutHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut n = 0;
        for _ in 0..self.wires.len() {
            let w = self.next_rx;
            self.next_rx = (self.next_rx + 1) % self.wires.len();
            n += self.wires[w].rx_burst(&mut bufs[n..]);
            if n == bufs.len() {
                break;
            }
        }
        self.stats.rx_packets += n as u64;
        self.stats.rx_bytes += bufs[..n].iter().map(|b| b.data.len() as u64).sum::<u64>();
        n
    }

    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut sent = 0;
        for buf in bufs.iter_mut() {
            let w = self.worker_for(&buf.data);
            let len = buf.data.len() as u64;
            // Hand the wire a one-frame burst; it may swap in an empty buffer.
            std::mem::swap(&mut self.one[0], buf);
            let ok = self.wires[w].tx_burst(&mut self.one) == 1;
            std::mem::swap(&mut self.one[0], buf);
            if !ok {
                break;
            }
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += len;
            sent += 1;
        }
        self.stats.tx_dropped += (bufs.len() - sent) as u64;
        sent
    }

    fn wait_rx(&mut self, timeout: Duration) {
        let per = timeout / u32::try_from(self.wires.len()).unwrap_or(1).max(1);
        for w in &mut self.wires {
            if w.rx_pending() > 0 {
                return;
            }
            w.wait_rx(per);
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
