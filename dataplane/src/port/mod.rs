//! Ports: burst receive and transmit of Ethernet frames.
//!
//! A [`Port`] moves frames in bursts of at most [`BURST`] between the wire
//! (or an in-process ring) and [`PacketBuf`]s that the worker owns. Buffers
//! are allocated once, when a worker starts; receive fills them and transmit
//! may swap them for empty ones of the same capacity, so the steady state
//! allocates nothing.
//!
//! Backends: [`mem`] (in-process rings for tests, the simulator and benches),
//! [`af_packet`] (TPACKET_V3 mmap rings on a Linux interface), [`af_xdp`]
//! (XDP sockets fed by an eBPF program in the driver) and, with the
//! cargo feature `dpdk`, `dpdk` (DPDK poll-mode drivers). [`rss`] is the
//! software Toeplitz hash the DPDK backend programs into NICs. [`datagram`]
//! batches the sync link's UDP datagrams (`sendmmsg`, `recvmmsg`).

pub mod af_packet;
pub mod af_xdp;
pub mod bucket_filter;
pub mod datagram;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod frame;
pub mod mem;
pub mod rss;
pub mod steer;

use std::time::Duration;

/// Frames per burst.
pub const BURST: usize = 32;

/// Largest frame a buffer holds (a 1500-byte MTU frame with two VLAN tags
/// fits; jumbo frames are truncated by the backend and counted).
pub const FRAME_CAPACITY: usize = 2048;

pub use frame::Frame;

/// One frame buffer. `data.len()` is the frame length; its heap capacity is
/// [`FRAME_CAPACITY`] and never changes after creation (a DPDK port may
/// lend it the received mbuf instead: see [`frame`]).
#[derive(Debug, Clone)]
pub struct PacketBuf {
    /// Frame bytes.
    pub data: Frame,
    /// The port vouches for the frame's L4 checksum (the NIC or kernel
    /// verified it, or the port computed it for a locally sent frame), so
    /// the pipeline need not verify it again. Ports that cannot tell leave
    /// it false.
    pub csum_verified: bool,
}

impl PacketBuf {
    /// An empty buffer with [`FRAME_CAPACITY`] bytes reserved.
    pub fn new() -> PacketBuf {
        PacketBuf {
            data: Frame::with_capacity(FRAME_CAPACITY),
            csum_verified: false,
        }
    }

    /// Replaces the contents with `frame`, truncated to the capacity.
    /// Returns whether the frame fit.
    pub fn set(&mut self, frame: &[u8]) -> bool {
        let n = frame.len().min(FRAME_CAPACITY);
        // Cleared first: a frame held in an mbuf is let go, not copied.
        self.data.clear();
        self.data.vec_mut().extend_from_slice(&frame[..n]);
        self.csum_verified = false;
        n == frame.len()
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        PacketBuf::new()
    }
}

/// A burst of buffers: the unit a worker moves through its pipeline.
#[derive(Debug)]
pub struct Burst {
    /// The buffers; only `[..len]` hold frames.
    pub bufs: Vec<PacketBuf>,
    /// How many buffers hold frames.
    pub len: usize,
}

impl Burst {
    /// A burst with [`BURST`] preallocated buffers.
    pub fn new() -> Burst {
        Burst {
            bufs: (0..BURST).map(|_| PacketBuf::new()).collect(),
            len: 0,
        }
    }

    /// Empties every buffer, giving back the mbufs DPDK ports lent them
    /// (before the ports close).
    pub fn release(&mut self) {
        for b in &mut self.bufs {
            b.data.clear();
        }
        self.len = 0;
    }
}

impl Default for Burst {
    fn default() -> Self {
        Burst::new()
    }
}

/// Counters a port keeps itself, summed by the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames the backend dropped on receive (ring overrun, kernel drops).
    pub rx_dropped: u64,
    /// Frames that could not be transmitted (ring full, send error).
    pub tx_dropped: u64,
    /// Frames truncated to [`FRAME_CAPACITY`].
    pub truncated: u64,
    /// Frames the device missed on receive (its queues were full: DPDK
    /// `imissed`). Device-wide: only one queue of a device reports it.
    #[serde(default)]
    pub rx_missed: u64,
    /// Receive errors the device counted (bad frames, no buffer).
    /// Device-wide, like `rx_missed`.
    #[serde(default)]
    pub rx_errors: u64,
    /// Transmit errors the device counted. Device-wide, like `rx_missed`.
    #[serde(default)]
    pub tx_errors: u64,
}

/// How a port can be waited on, from [`Port::prepare_wait`].
#[derive(Debug)]
pub enum WaitOn<'a> {
    /// Frames are waiting: do not sleep.
    Ready,
    /// Readable when frames arrive.
    Fd(std::os::fd::BorrowedFd<'a>),
    /// Only [`Port::wait_rx`] can wait on this port.
    Unsupported,
}

/// Sleeps until one of `fds` is readable or `timeout` passes. An
/// interrupted or failed poll returns early: the caller polls its ports
/// next either way.
pub fn wait_any(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut set: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let t = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let _ = poll(&mut set, Some(&t));
}

/// Burst receive/transmit of Ethernet frames.
///
/// A port is owned by exactly one worker thread; it is `Send` so it can be
/// built on the control thread and moved there.
pub trait Port: Send {
    /// Name for logs and the console (interface name or ring name).
    fn name(&self) -> &str;

    /// Receives up to `bufs.len()` frames into `bufs[0..n]` and returns `n`.
    /// Never blocks.
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize;

    /// Transmits the frames in `bufs`, in order, and returns how many were
    /// accepted; the rest are not sent and the caller counts them dropped.
    /// The port may swap accepted buffers for empty ones of the same
    /// capacity. Never blocks.
    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize;

    /// Sleeps until the port may have frames to receive or `timeout`
    /// passes, whichever is first. Used by the adaptive poll mode. By
    /// default through [`Port::prepare_wait`]: no sleep when frames wait,
    /// a poll on its descriptor otherwise; ports that cannot be polled
    /// implement it themselves.
    fn wait_rx(&mut self, timeout: Duration) {
        if let WaitOn::Fd(fd) = self.prepare_wait() {
            wait_any(&[fd], timeout);
        }
    }

    /// Prepares to sleep with the other ports of the worker: finishes
    /// pending work (a deferred transmit kick) and says how to wait.
    /// `Ready` means frames are already waiting; `Fd` gives a descriptor
    /// that polls readable when frames arrive, so the worker sleeps on all
    /// its ports at once ([`wait_any`]); `Unsupported` (the default) makes
    /// the worker sleep on one port at a time with [`Port::wait_rx`].
    fn prepare_wait(&mut self) -> WaitOn<'_> {
        WaitOn::Unsupported
    }

    /// The port's own counters.
    fn stats(&self) -> PortStats;

    /// Whether both directions of every flow reach the same worker through
    /// this port (AF_PACKET's fanout program, symmetric RSS, the lab's
    /// fanout). `false` when the device picks the queue by other means
    /// (AF_XDP: the queue the frame arrived on), so that a worker must hand
    /// each frame whose flow it does not hold to the flow's worker.
    fn steers_by_flow(&self) -> bool {
        true
    }

    /// Whether the link is up, for link checks; `None` when the backend
    /// cannot tell.
    fn link_up(&self) -> Option<bool> {
        None
    }

    /// How the device spreads flows over the workers' queues when that is
    /// its own (DPDK with symmetric RSS), for NAT to agree with; `None`:
    /// the workers' software steering (`steer::worker_of`) decides.
    fn rss_model(&self) -> Option<rss::RssModel> {
        None
    }

    /// Cluster: drops the frames `filter` does not keep before they reach
    /// the worker (AF_PACKET: in the kernel), or stops filtering (`None`).
    /// `Ok(false)`: this backend cannot filter (the default), and the
    /// worker judges every frame itself.
    fn set_bucket_filter(
        &mut self,
        _filter: Option<&bucket_filter::BucketFilter>,
    ) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;

    /// A readable descriptor anywhere in the set ends the wait, long
    /// before its timeout; with none readable the wait lasts its timeout.
    #[test]
    fn wait_any_wakes_on_any_readable_descriptor() {
        let (a, a_peer) = UnixDatagram::pair().unwrap();
        let (b, b_peer) = UnixDatagram::pair().unwrap();
        let started = Instant::now();
        wait_any(&[a.as_fd(), b.as_fd()], Duration::from_millis(30));
        assert!(started.elapsed() >= Duration::from_millis(25));

        b_peer.send(b"x").unwrap();
        let started = Instant::now();
        wait_any(&[a.as_fd(), b.as_fd()], Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(30));
        drop(a_peer);
    }
}
