//! DPDK backend: ports on DPDK poll-mode drivers (cargo feature `dpdk`).
//!
//! Any device DPDK drives works: a NIC bound to `vfio-pci` (PCI address) or
//! a virtual device (`net_af_packet`, `net_tap`, `net_ring`, `net_pcap`),
//! which lets tests and benchmarks run without NICs.
//!
//! # Shape
//!
//! - [`init`] initialises EAL once per process ([`eal`]). The PMD directory
//!   found at build time is passed with `-d`; the calling thread's CPU
//!   affinity is restored afterwards.
//! - A [`Device`] is one Ethernet port, opened once per process and shared
//!   by the workers ([`Device::open_shared`]): one RX/TX queue pair per
//!   worker, a mempool of its own, the symmetric Toeplitz RSS key
//!   ([`rss::SYMMETRIC_KEY`](super::rss::SYMMETRIC_KEY)) when it has more
//!   than one queue and the driver does RSS, promiscuous mode, started.
//!   When the last [`DpdkPort`] of a device is dropped the device is
//!   stopped, closed, detached if we attached it, and its pool freed once
//!   every mbuf is back.
//! - A [`DpdkPort`] is one worker's queue pair, implementing [`Port`]. The
//!   first burst on a thread registers the thread as an EAL lcore, so the
//!   mempool's per-lcore cache serves it.
//!
//! # Packet path
//!
//! Zero copy. Receive takes up to a burst of mbufs into a fixed
//! [`MbufBurst`] and lends each to the worker's [`PacketBuf`] (its
//! [`Frame`](super::frame::Frame) then reads and writes the mbuf's data);
//! the worker parses and rewrites the frame in place, and transmit hands
//! the same mbuf to the driver. Only frames the worker built or lengthened
//! (reject answers, helper rewrites) and frames parked beyond a burst
//! (held first packets, hand-offs) live in heap memory: transmit copies
//! those into mbufs taken from the pool in one bulk call. An mbuf that
//! cannot be lent (chained, shared, attached, too long) is copied on
//! receive. The driver owns the mbufs it accepted; the rest go back to
//! their buffers, or to the pool. Nothing is allocated per packet. Mbufs
//! never leak: after traffic stops, the pool's in-use count is back to
//! what the driver holds in its receive rings (the integration tests check
//! it).
//!
//! # Counters
//!
//! Each queue counts its own frames and bytes. Device-wide counters
//! (`imissed`, `ierrors` + `rx_nombuf`, `oerrors`) are reported by queue 0
//! only, so summing a port's queues counts them once.
//!
//! # Idle
//!
//! Most vdevs have no receive interrupts, so [`Port::wait_rx`] sleeps
//! (at most [`MAX_IDLE_SLEEP`]) instead of waiting on an event.
//!
//! `unsafe` lives in this module and `dpdk-sys` only; every block says why
//! it is sound.

#![allow(unsafe_code)]

pub mod device;
pub mod eal;
mod ffi;
pub mod mbuf;
pub mod ring;

use std::sync::Arc;
use std::time::Duration;

use dpdk_sys as sys;

pub use device::{Device, DeviceConfig, DeviceStats, Link};
pub use eal::{init, is_initialized};
pub use ffi::DpdkError;
pub use mbuf::{Mbuf, MbufBurst, Mempool};

use super::{PacketBuf, Port, PortStats, BURST, FRAME_CAPACITY};

/// Longest sleep of [`Port::wait_rx`] on a DPDK port.
pub const MAX_IDLE_SLEEP: Duration = Duration::from_micros(500);

/// The DPDK runtime's version string (`DPDK 22.11.x`).
pub fn version() -> String {
    // SAFETY: rte_version returns a static NUL-terminated string.
    let p = unsafe { sys::ftfw_rte_version() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, static and NUL-terminated (above).
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// One worker's RX/TX queue pair on a DPDK device.
pub struct DpdkPort {
    dev: Arc<Device>,
    /// The queue pair (its number is `q.queue`).
    q: Queue,
    name: String,
    rx: MbufBurst,
    tx: MbufBurst,
    /// Scratch burst: empty mbufs for the heap frames of a transmit burst;
    /// on receive, the mbufs the buffers gave back, freed in bulk.
    fresh: MbufBurst,
    stats: PortStats,
}

impl std::fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPort")
            .field("device", &self.dev.name())
            .field("queue", &self.q.queue)
            .finish()
    }
}

impl DpdkPort {
    /// Opens (or joins) the device of `config` and takes queue pair
    /// `queue` of it. `config.queues` must be the same for every worker.
    pub fn open(config: &DeviceConfig, queue: u16) -> Result<DpdkPort, DpdkError> {
        let dev = Device::open_shared(config)?;
        dev.take_queue(queue)?;
        Ok(DpdkPort {
            name: if dev.queues() > 1 {
                format!("{}/q{queue}", dev.name())
            } else {
                dev.name().to_string()
            },
            q: Queue {
                port_id: dev.port_id(),
                queue,
            },
            dev,
            rx: MbufBurst::new(),
            tx: MbufBurst::new(),
            fresh: MbufBurst::new(),
            stats: PortStats::default(),
        })
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// The queue pair this port uses.
    pub fn queue(&self) -> u16 {
        self.q.queue
    }

    /// Receives up to `out.room()` mbufs into `out` and returns how many.
    pub fn rx_mbufs(&mut self, out: &mut MbufBurst) -> usize {
        self.q.rx(out, BURST)
    }

    /// Transmits the mbufs of `burst`, in order; the driver takes the ones
    /// it accepts (returned count), the rest stay in `burst`.
    pub fn tx_mbufs(&mut self, burst: &mut MbufBurst) -> usize {
        self.q.tx(burst)
    }
}

/// The device queue pair a [`DpdkPort`] owns. Only its port holds it, so
/// the bursts below run on the queue from one thread at a time; a copy of
/// its two numbers lets the port lend its own bursts to it.
#[derive(Clone, Copy, Debug)]
struct Queue {
    port_id: u16,
    queue: u16,
}

impl Queue {
    /// Receives up to `max` mbufs (at most `out`'s room) into `out`.
    fn rx(self, out: &mut MbufBurst, max: usize) -> usize {
        eal::register_thread();
        let (ptr, room) = out.spare_ptr();
        let room = u16::try_from(room.min(max)).unwrap_or(0);
        if room == 0 {
            return 0;
        }
        // SAFETY: the port holding this queue owns it exclusively
        // (take_queue) and calls it from its one thread; ptr has room for
        // `room` pointers.
        let n = unsafe { sys::rte_eth_rx_burst(self.port_id, self.queue, ptr, room) };
        let n = usize::from(n);
        // SAFETY: the driver wrote n valid mbufs, now owned by `out`.
        unsafe { out.filled(n) };
        n
    }

    /// Transmits `burst` in order; the rest stay in it.
    fn tx(self, burst: &mut MbufBurst) -> usize {
        eal::register_thread();
        let (ptr, len) = burst.held_ptr();
        let len = u16::try_from(len).unwrap_or(0);
        if len == 0 {
            return 0;
        }
        // SAFETY: exclusive queue (as in rx); ptr holds `len` valid mbufs
        // owned by `burst`.
        let n = unsafe { sys::rte_eth_tx_burst(self.port_id, self.queue, ptr, len) };
        let n = usize::from(n);
        // SAFETY: the driver took ownership of exactly the first n.
        unsafe { burst.consumed(n) };
        n
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        self.rx.clear();
        self.tx.clear();
        self.fresh.clear();
        self.dev.release_queue(self.q.queue);
    }
}

impl Port for DpdkPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rss_model(&self) -> Option<crate::port::rss::RssModel> {
        self.dev.rss_model()
    }

    /// Zero copy: each received mbuf is lent to its buffer
    /// ([`Frame`](super::frame::Frame)), which the worker rewrites in place.
    /// An mbuf that cannot be lent (several segments, a shared or attached
    /// buffer, longer than [`FRAME_CAPACITY`]) is copied and freed.
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let n = self.q.rx(&mut self.rx, bufs.len());
        // Mbufs the buffers still hold (frames the worker dropped) go back
        // to their pools in one bulk call.
        self.fresh.clear();
        for b in &mut bufs[..n] {
            if let Some(old) = b.data.take_mbuf() {
                let _ = self.fresh.push(old);
            }
        }
        self.fresh.clear();
        for (b, m) in bufs.iter_mut().zip(self.rx.drain()) {
            b.csum_verified = m.l4_csum_good();
            self.stats.rx_bytes += m.pkt_len() as u64;
            if m.lendable(FRAME_CAPACITY) {
                b.data.lend(m);
            } else if !m.copy_into(b.data.vec_mut(), FRAME_CAPACITY) {
                self.stats.truncated += 1;
            }
        }
        self.stats.rx_packets += n as u64;
        n
    }

    /// Zero copy: a frame held in an mbuf is transmitted in that mbuf;
    /// only heap frames (answers the worker built, frames that changed
    /// length) are copied into mbufs taken from the pool in one bulk call.
    /// Frames the driver does not accept get their mbufs back.
    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let n = bufs.len().min(BURST);
        if n == 0 {
            return 0;
        }
        let copies = bufs[..n].iter().filter(|b| !b.data.in_mbuf()).count();
        self.fresh.clear();
        if copies > 0 && !self.dev.pool().alloc_bulk(&mut self.fresh, copies) {
            self.stats.tx_dropped += bufs.len() as u64;
            return 0;
        }
        self.tx.clear();
        let mut lent = 0u64;
        let mut lens = [0u32; BURST];
        for (i, b) in bufs[..n].iter_mut().enumerate() {
            let m = match b.data.take_mbuf() {
                Some(mut m) => {
                    m.reset_offloads();
                    lent |= 1 << i;
                    m
                }
                None => {
                    let Some(mut m) = self.fresh.pop() else { break };
                    m.append(&b.data[..b.data.len().min(FRAME_CAPACITY)]);
                    m
                }
            };
            lens[i] = u32::try_from(m.pkt_len()).unwrap_or(u32::MAX);
            if self.tx.push(m).is_err() {
                break;
            }
        }
        let sent = self.q.tx(&mut self.tx);
        for (i, m) in (sent..n).zip(self.tx.drain()) {
            if lent & (1 << i) != 0 {
                bufs[i].data.lend(m);
            }
        }
        self.stats.tx_bytes += lens[..sent].iter().map(|&l| u64::from(l)).sum::<u64>();
        self.stats.tx_packets += sent as u64;
        self.stats.tx_dropped += (bufs.len() - sent) as u64;
        sent
    }

    fn wait_rx(&mut self, timeout: Duration) {
        std::thread::sleep(timeout.min(MAX_IDLE_SLEEP));
    }

    fn stats(&self) -> PortStats {
        let mut s = self.stats;
        if self.q.queue == 0 {
            if let Ok(d) = self.dev.stats() {
                s.rx_missed = d.rx_missed;
                s.rx_errors = d.rx_errors + d.rx_nombuf;
                s.tx_errors = d.tx_errors;
            }
        }
        s
    }

    fn link_up(&self) -> Option<bool> {
        self.dev.link().ok().map(|l| l.up)
    }
}
