//! AF_XDP backend: an XDP socket per worker on one queue of a Linux
//! interface, fed by a small eBPF program in the driver.
//!
//! # How frames flow
//! The first port opened on an interface loads an XDP program and
//! attaches it through a BPF link (native mode where the driver has it,
//! as veth does; else generic). The program sends each frame of queue `q`
//! to the socket in slot `q` of its `XSKMAP`, and passes frames of queues
//! without a socket on to the kernel. Every worker opens its own socket on
//! queue `worker`, so an interface served by N workers may have at most N
//! receive queues (veth: `numrxqueues`). The device picks a frame's queue,
//! so the port does not steer by flow ([`Port::steers_by_flow`]): a worker
//! hands each frame whose flow it does not hold to the flow's worker. The
//! program is
//! shared by the ports on the interface and detached when the last one
//! closes, or when the process ends however it ends (the link dies with
//! its descriptor).
//!
//! Each socket has its own UMEM of [`FRAMES`] frames of [`CHUNK`] bytes:
//! half circulate between the fill and RX rings, half between the TX and
//! completion rings. Sockets are bound in copy mode (the kernel copies a
//! frame into the UMEM on receive and out of it on transmit): zero-copy
//! needs driver support that veth and most 1GbE NICs lack.
//!
//! Compared with AF_PACKET on veth, a received frame skips the packet
//! taps and the socket buffer clone, and a transmitted one skips the
//! qdisc, the taps and the per-frame `sendmmsg` headers: one `sendto`
//! kicks a burst out of the TX ring.
//!
//! # Limits
//! - Frames longer than `CHUNK` minus the kernel's XDP headroom (about
//!   1,790 bytes) are dropped by the kernel and counted in `rx_dropped`.
//! - A VLAN tag the kernel moved out of the frame (receive VLAN offload)
//!   is not in what XDP sees, so it is lost in forwarding; AF_PACKET
//!   re-inserts it from the ring header.
//! - No checksum status comes with a frame: the worker verifies the L4
//!   checksums of the packets that change state.
//! - No bucket filter: a cluster member's worker judges every frame.

#![allow(unsafe_code)]

mod ring;
mod sys;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use super::{PacketBuf, Port, PortStats};
use ring::Ring;

/// Bytes per UMEM frame.
pub const CHUNK: u32 = 2048;
/// UMEM frames per socket (8 MiB): half for receive, half for transmit.
pub const FRAMES: u32 = 4096;
/// Entries of each of the four rings.
const RING: u32 = FRAMES / 2;
/// Queue slots in an interface's socket map: the most workers an
/// interface can be served by.
pub const MAX_QUEUES: u32 = 64;

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the kernel's generic receive path (`XDP_FLAGS_SKB_MODE`): any
    /// interface, slower.
    Generic,
    /// Native if the driver has it, else generic.
    Auto,
}

impl XdpMode {
    /// The name operators see (`native`, `generic`, `auto`).
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        }
    }
}

/// How to open an [`AfXdpPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Interface name.
    pub interface: String,
    /// Receive queue of the interface this socket serves (the worker).
    pub queue: u32,
    /// Where the program runs.
    pub mode: XdpMode,
    /// How many sockets serve the interface, on queues 0 to `served - 1`
    /// (one per worker). Opening fails if the interface has more receive
    /// queues: their frames would skip the firewall.
    pub served: u32,
}

impl AfXdpConfig {
    /// Queue 0 of `interface`, native mode where possible.
    pub fn new(interface: impl Into<String>) -> AfXdpConfig {
        AfXdpConfig {
            interface: interface.into(),
            queue: 0,
            mode: XdpMode::Auto,
            served: 1,
        }
    }
}

/// Why an AF_XDP port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// No interface has that name.
    #[error("no interface named {interface:?}")]
    NoSuchInterface {
        /// The name.
        interface: String,
    },
    /// The queue is beyond what the socket map holds.
    #[error("interface {interface}: queue {queue} is beyond the {MAX_QUEUES} an interface can have served")]
    QueueTooHigh {
        /// The interface.
        interface: String,
        /// The queue.
        queue: u32,
    },
    /// The interface has receive queues no socket would serve.
    #[error("interface {interface} has {queues} receive queues but {served} worker(s) serve it: one worker per queue is needed (more workers, or fewer queues: `ethtool -L {interface} combined {served}`, or for veth `numrxqueues {served}` when creating it)")]
    QueuesUnserved {
        /// The interface.
        interface: String,
        /// Its receive queues.
        queues: u32,
        /// Sockets that would serve it.
        served: u32,
    },
    /// A system call failed.
    #[error("interface {interface}: {step}: {error}")]
    Os {
        /// The interface.
        interface: String,
        /// The failing step, e.g. `bind (queue 1)`.
        step: String,
        /// The error.
        #[source]
        error: io::Error,
    },
}

/// The XDP program and socket map on one interface, shared by the ports
/// open on it; dropping the last one detaches the program.
#[derive(Debug)]
struct Attachment {
    ifindex: i32,
    mode: XdpMode,
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

/// Interfaces with our program attached, by network namespace (the inode
/// of the calling thread's) and interface index.
static ATTACHED: Mutex<Vec<(AttachKey, Weak<Attachment>)>> = Mutex::new(Vec::new());

/// The network namespace's inode and the interface index.
type AttachKey = (u64, i32);

/// The program on `ifindex` of the calling thread's network namespace:
/// the one already attached by another port of this process, or a new
/// one in `mode`.
fn attach(ifindex: i32, mode: XdpMode) -> Result<Arc<Attachment>, (String, io::Error)> {
    use std::os::unix::fs::MetadataExt;
    let netns = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| ("stat /proc/thread-self/ns/net".to_owned(), e))?
        .ino();
    let key = (netns, ifindex);
    let mut all = ATTACHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.retain(|(_, w)| w.strong_count() > 0);
    if let Some(a) = all
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(a);
    }
    let step = |s: &'static str| move |e: io::Error| (s.to_owned(), e);
    let map = sys::xskmap(MAX_QUEUES).map_err(step("bpf(BPF_MAP_CREATE, XSKMAP)"))?;
    let prog = sys::load_xdp(&sys::redirect_program(map.as_fd()))
        .map_err(step("bpf(BPF_PROG_LOAD, XDP)"))?;
    let tries: &[(XdpMode, u32)] = match mode {
        XdpMode::Native => &[(XdpMode::Native, sys::XDP_FLAGS_DRV_MODE)],
        XdpMode::Generic => &[(XdpMode::Generic, sys::XDP_FLAGS_SKB_MODE)],
        XdpMode::Auto => &[
            (XdpMode::Native, sys::XDP_FLAGS_DRV_MODE),
            (XdpMode::Generic, sys::XDP_FLAGS_SKB_MODE),
        ],
    };
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for &(m, flags) in tries {
        match sys::link_xdp(prog.as_fd(), ifindex, flags) {
            Ok(link) => {
                let a = Arc::new(Attachment {
                    ifindex,
                    mode: m,
                    map,
                    _prog: prog,
                    _link: link,
                });
                all.push((key, Arc::downgrade(&a)));
                return Ok(a);
            }
            Err(e) => last = e,
        }
    }
    Err((format!("bpf(BPF_LINK_CREATE, XDP, {})", mode.name()), last))
}

/// One XDP socket on one queue of an interface. See the module
/// documentation.
#[derive(Debug)]
pub struct AfXdpPort {
    // Field order is drop order: the rings point into their mappings, which
    // are unmapped before the socket closes; the socket closes (leaving the
    // map) before the program may be detached.
    rx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    tx: Ring<libc::xdp_desc>,
    completion: Ring<u64>,
    _rings: [sys::Mmap; 4],
    fd: OwnedFd,
    umem: sys::Mmap,
    attachment: Arc<Attachment>,
    /// UMEM frames free for transmit.
    tx_free: Vec<u64>,
    name: String,
    queue: u32,
    stats: PortStats,
    /// A TX kick was refused for now (`EAGAIN`, `ENOBUFS`...): frames
    /// wait in the ring; kick again.
    kick_pending: bool,
}

impl AfXdpPort {
    /// Attaches the program to `cfg.interface` (if no port of this process
    /// did), opens a socket with its UMEM and rings, binds it to
    /// `cfg.queue` and puts it in the map. Never panics.
    pub fn open(cfg: &AfXdpConfig) -> Result<AfXdpPort, AfXdpError> {
        let iface = cfg.interface.as_str();
        let os = |step: &str| {
            let step = step.to_owned();
            move |error: io::Error| AfXdpError::Os {
                interface: iface.to_owned(),
                step,
                error,
            }
        };
        if cfg.queue >= MAX_QUEUES {
            return Err(AfXdpError::QueueTooHigh {
                interface: iface.into(),
                queue: cfg.queue,
            });
        }
        let ifindex = crate::port::af_packet::sys::if_index(iface).ok_or_else(|| {
            AfXdpError::NoSuchInterface {
                interface: iface.into(),
            }
        })?;
        if let Some(queues) = crate::port::af_packet::sys::rx_queues(iface) {
            if queues > cfg.served {
                return Err(AfXdpError::QueuesUnserved {
                    interface: iface.into(),
                    queues,
                    served: cfg.served,
                });
            }
        }
        let fd = sys::xdp_socket().map_err(os("socket(AF_XDP)"))?;
        let s = fd.as_fd();
        let umem = sys::Mmap::anonymous((FRAMES * CHUNK) as usize).map_err(os("mmap (UMEM)"))?;
        sys::register_umem(s, &umem, CHUNK).map_err(os("setsockopt(XDP_UMEM_REG)"))?;
        for (which, what) in [
            (libc::XDP_UMEM_FILL_RING, "setsockopt(XDP_UMEM_FILL_RING)"),
            (
                libc::XDP_UMEM_COMPLETION_RING,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (libc::XDP_RX_RING, "setsockopt(XDP_RX_RING)"),
            (libc::XDP_TX_RING, "setsockopt(XDP_TX_RING)"),
        ] {
            sys::ring_size(s, which, RING).map_err(os(what))?;
        }
        let off = sys::mmap_offsets(s).map_err(os("getsockopt(XDP_MMAP_OFFSETS)"))?;
        let len = |o: &libc::xdp_ring_offset, entry: usize| {
            usize::try_from(o.desc).unwrap_or(usize::MAX / 2) + RING as usize * entry
        };
        let desc = std::mem::size_of::<libc::xdp_desc>();
        let map_ring = |o: &libc::xdp_ring_offset, entry: usize, pgoff: u64, what: &str| {
            sys::Mmap::socket_ring(s, len(o, entry), pgoff).map_err(os(what))
        };
        let rx_map = map_ring(
            &off.rx,
            desc,
            libc::XDP_PGOFF_RX_RING as u64,
            "mmap (RX ring)",
        )?;
        let tx_map = map_ring(
            &off.tx,
            desc,
            libc::XDP_PGOFF_TX_RING as u64,
            "mmap (TX ring)",
        )?;
        let fill_map = map_ring(
            &off.fr,
            8,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            "mmap (fill ring)",
        )?;
        let comp_map = map_ring(
            &off.cr,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap (completion ring)",
        )?;
        // SAFETY: each mapping is the kernel's ring of `RING` entries laid
        // out at the offsets it reported, mapped just above with the length
        // those offsets imply; the port keeps the mappings alive for as
        // long as the rings, and no other part of this process touches them.
        let (rx, tx, mut fill, completion) = unsafe {
            (
                Ring::<libc::xdp_desc>::new(rx_map.as_ptr(), &off.rx, RING),
                Ring::<libc::xdp_desc>::new(tx_map.as_ptr(), &off.tx, RING).into_producer(),
                Ring::<u64>::new(fill_map.as_ptr(), &off.fr, RING).into_producer(),
                Ring::<u64>::new(comp_map.as_ptr(), &off.cr, RING),
            )
        };
        // The first half of the UMEM waits for frames on the fill ring.
        let n = fill.free(RING);
        for i in 0..n {
            fill.write(i, u64::from(i) * u64::from(CHUNK));
        }
        fill.submit(n);
        let tx_free = (RING..FRAMES)
            .rev()
            .map(|i| u64::from(i) * u64::from(CHUNK))
            .collect();

        let attachment = attach(ifindex, cfg.mode).map_err(|(step, e)| os(&step)(e))?;
        sys::bind_xdp(s, ifindex, cfg.queue).map_err(os(&format!("bind (queue {})", cfg.queue)))?;
        sys::xskmap_set(attachment.map.as_fd(), cfg.queue, s)
            .map_err(os("bpf(BPF_MAP_UPDATE_ELEM, XSKMAP)"))?;
        Ok(AfXdpPort {
            rx,
            fill,
            tx,
            completion,
            _rings: [rx_map, tx_map, fill_map, comp_map],
            fd,
            umem,
            attachment,
            tx_free,
            name: cfg.interface.clone(),
            queue: cfg.queue,
            stats: PortStats::default(),
            kick_pending: false,
        })
    }

    /// Where the interface's XDP program runs (`Native` or `Generic`).
    pub fn mode(&self) -> XdpMode {
        self.attachment.mode
    }

    /// The queue this socket serves.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.attachment.ifindex
    }

    fn kick(&mut self) {
        self.kick_pending = sys::kick(self.fd.as_fd()).is_err();
    }

    /// Frames the kernel finished sending go back to the free list.
    fn reclaim(&mut self) {
        let n = self.completion.ready();
        for i in 0..n {
            let addr = self.completion.read(i) & !u64::from(CHUNK - 1);
            self.tx_free.push(addr);
        }
        self.completion.release(n);
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    /// Copies up to `bufs.len()` frames off the RX ring and gives their
    /// UMEM frames straight back on the fill ring. No system call unless
    /// the kernel asks to be woken.
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let n = self
            .rx
            .ready()
            .min(u32::try_from(bufs.len()).unwrap_or(u32::MAX));
        if n == 0 {
            return 0;
        }
        // Every frame on the RX ring came off the fill ring, so the fill
        // ring has room for all of them.
        let room = self.fill.free(n);
        let mut got = 0;
        for i in 0..n {
            let d = self.rx.read(i);
            if i < room {
                self.fill.write(i, d.addr & !u64::from(CHUNK - 1));
            }
            let Some(frame) = self.umem.bytes(d.addr, d.len as usize) else {
                // A descriptor outside the UMEM: the kernel never makes one.
                self.stats.rx_dropped += 1;
                continue;
            };
            let buf = &mut bufs[got];
            if !buf.set(frame) {
                self.stats.truncated += 1;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += buf.data.len() as u64;
            got += 1;
        }
        self.rx.release(n);
        self.fill.submit(n.min(room));
        if self.fill.needs_wakeup() {
            sys::wake_rx(self.fd.as_fd());
        }
        got
    }

    /// Copies frames into free UMEM frames, queues them on the TX ring and
    /// kicks the kernel once. Stops when no frame or slot is free (the
    /// rest are not accepted); frames shorter than an Ethernet header or
    /// longer than a UMEM frame are accepted and dropped (counted).
    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        self.reclaim();
        let want = u32::try_from(bufs.len()).unwrap_or(u32::MAX);
        let slots = self.tx.free(want);
        let mut queued = 0u32;
        let mut accepted = 0;
        for buf in bufs.iter() {
            let len = buf.data.len();
            if len < 14 || len > CHUNK as usize {
                self.stats.tx_dropped += 1;
                accepted += 1;
                continue;
            }
            if queued == slots {
                break;
            }
            let Some(addr) = self.tx_free.pop() else {
                break;
            };
            match self.umem.bytes_mut(addr, len) {
                Some(dst) => dst.copy_from_slice(&buf.data),
                None => {
                    // Only our own addresses are on the free list.
                    self.stats.tx_dropped += 1;
                    accepted += 1;
                    continue;
                }
            }
            self.tx.write(
                queued,
                libc::xdp_desc {
                    addr,
                    // At most CHUNK (checked above).
                    len: u32::try_from(len).unwrap_or(CHUNK),
                    options: 0,
                },
            );
            queued += 1;
            accepted += 1;
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += len as u64;
        }
        self.stats.tx_dropped += (bufs.len() - accepted) as u64;
        if queued > 0 {
            self.tx.submit(queued);
        }
        if queued > 0 || self.kick_pending {
            self.kick();
        }
        accepted
    }

    fn prepare_wait(&mut self) -> super::WaitOn<'_> {
        if self.kick_pending {
            self.kick();
        }
        if self.rx.ready() > 0 {
            return super::WaitOn::Ready;
        }
        super::WaitOn::Fd(self.fd.as_fd())
    }

    /// A frame comes to the socket of the queue it arrived on, which the
    /// device chose (veth: the sender's transmit queue).
    fn steers_by_flow(&self) -> bool {
        false
    }

    fn stats(&self) -> PortStats {
        let k = sys::statistics(self.fd.as_fd()).unwrap_or(libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        });
        PortStats {
            rx_dropped: self.stats.rx_dropped + k.rx_dropped + k.rx_ring_full + k.rx_invalid_descs,
            tx_dropped: self.stats.tx_dropped + k.tx_invalid_descs,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_redirects_by_queue_and_passes_what_has_no_socket() {
        // Any descriptor will do to look at the encoding.
        let f = std::fs::File::open("/dev/null").unwrap();
        let p = sys::redirect_program(f.as_fd());
        // r2 = *(u32 *)(r1 + 16): ctx->rx_queue_index.
        assert_eq!(p[0] & 0xff, 0x61);
        assert_eq!((p[0] >> 8) & 0xff, 0x12);
        assert_eq!((p[0] >> 16) & 0xffff, 16);
        // r1 = the map (a 16-byte load with the map's descriptor).
        assert_eq!(p[1] & 0xffff, 0x1118);
        use std::os::fd::AsRawFd;
        assert_eq!(p[1] >> 32, u64::from(f.as_raw_fd().unsigned_abs()));
        assert_eq!(p[2], 0);
        // r3 = XDP_PASS, call bpf_redirect_map, exit.
        assert_eq!((p[3] & 0xffff, p[3] >> 32), (0x03b7, 2));
        assert_eq!((p[4] & 0xff, p[4] >> 32), (0x85, 51));
        assert_eq!(p[5], 0x95);
    }

    #[test]
    fn opening_a_missing_interface_or_queue_says_which() {
        let e = AfXdpPort::open(&AfXdpConfig::new("ftfw-none0")).unwrap_err();
        assert!(matches!(e, AfXdpError::NoSuchInterface { .. }), "{e}");
        let e = AfXdpPort::open(&AfXdpConfig {
            queue: MAX_QUEUES,
            ..AfXdpConfig::new("lo")
        })
        .unwrap_err();
        assert!(e.to_string().contains("queue 64"), "{e}");
    }
}
