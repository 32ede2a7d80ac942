//! AF_PACKET backend: TPACKET_V3 mmap rings on a Linux interface.
//!
//! One [`AfPacketPort`] is one `AF_PACKET`/`SOCK_RAW`/`ETH_P_ALL` socket
//! bound to one interface, with a `PACKET_RX_RING` and a `PACKET_TX_RING`
//! (both `TPACKET_V3`) mapped into one region. Receive and transmit copy
//! between the rings and the worker's [`PacketBuf`]s; the only system calls
//! on the packet path are one `send(fd, NULL, 0, MSG_DONTWAIT)` per transmit
//! burst (the TX kick) and `poll(2)` in [`Port::wait_rx`] when the worker is
//! idle.
//!
//! # Workers and flow affinity (fanout)
//!
//! With `W` workers, each worker opens one socket per interface and every
//! socket of an interface joins that interface's `PACKET_FANOUT` group (one
//! group id per interface) in `PACKET_FANOUT_CBPF` mode, with our classic
//! BPF program ([`super::steer::fanout_program`]). The kernel then delivers
//! each frame to group member `hash % W`, where
//!
//! - the hash is [`super::steer::steering_hash`]: symmetric (the same for
//!   both directions of a flow), independent of the interface, and known to
//!   userspace, so the control side commits a flow that arrives without a
//!   packet (a takeover, a cluster bucket, `flows add`) into the worker its
//!   packets will reach ([`super::steer::worker_of`]; the kernel's own
//!   `PACKET_FANOUT_HASH` uses a per-boot seed userspace cannot know);
//! - the member index is the socket's position in the group, which is the
//!   order in which sockets joined. When a member leaves, the last member
//!   moves into its slot, so after closing any port all ports of all groups
//!   must be reopened, worker by worker, to restore the alignment.
//!
//! So if worker `i` is the `i`-th to join *every* group (open the ports
//! worker by worker, in the same order for each interface, and keep them
//! open), the forward direction of a flow arriving on interface A and the
//! reply arriving on interface B land on the same worker `i`, which can then
//! own that flow's conntrack state without locks. The integration test
//! checks this symmetry across two veth pairs, and that the worker is the
//! one `worker_of` computes.
//!
//! Fragments: the symmetric hash of an IPv4/IPv6 fragment (first or not)
//! covers addresses and protocol only, not ports, so without help the
//! fragments of a datagram all go to one worker, but not necessarily the
//! worker of their flow. With [`AfPacketConfig::fanout_defrag`] (the default,
//! `PACKET_FANOUT_FLAG_DEFRAG`) the kernel reassembles IPv4 datagrams before
//! hashing, so they follow their flow, **but the socket then receives the
//! reassembled datagram as one frame instead of the fragments** (observed on
//! Linux 6.18, see the `fanout_defrag_*` integration test). A reassembled
//! datagram larger than the egress MTU cannot be transmitted as is (the
//! kernel rejects it and `PACKET_LOSS` skips it), and one larger than
//! [`FRAME_CAPACITY`] is truncated. A forwarding worker must therefore
//! re-fragment such frames, or the deployment turns `fanout_defrag` off and
//! handles fragments on whichever worker gets them. IPv6 fragments are
//! never reassembled by the flag.
//!
//! Joining a group needs a bound socket, and a bound socket receives every
//! frame of the interface. So a port that will join a group first attaches
//! a drop-all BPF filter, binds, joins, then detaches the filter: its ring
//! never holds a frame that another member also got. The cost is that
//! frames the group assigns to the new member during that one
//! `setsockopt(SO_DETACH_FILTER)` call are dropped.
//!
//! # Receive path details
//!
//! - Blocks are handed to us when full or after `block_timeout_ms`, so that
//!   timeout bounds the added latency at low rates.
//! - The kernel strips the outer VLAN tag into metadata (software untag in
//!   `__netif_receive_skb_core` happens before packet taps, so this is the
//!   norm, not just with NIC offload). We put it back (`TP_STATUS_VLAN_VALID`,
//!   TPID from `TP_STATUS_VLAN_TPID_VALID`), because a bump in the wire must
//!   forward the frame as it was on the wire.
//! - Frames whose skb was `CHECKSUM_PARTIAL` (the sender relied on checksum
//!   offload: locally generated traffic, veth peers, virtio) arrive with
//!   `TP_STATUS_CSUMNOTREADY` and a TCP/UDP checksum field that holds only
//!   the pseudo-header sum. We complete the checksum in software before
//!   returning the frame (counted by [`AfPacketPort::checksums_completed`]),
//!   so forwarding never puts a bad checksum on the wire. `PACKET_VNET_HDR`
//!   stays off. No `ethtool` is needed (it is not installed on the test
//!   machine).
//! - GRO/LRO can hand the socket super-frames far larger than the MTU; they
//!   are truncated to [`FRAME_CAPACITY`] and counted in `truncated`, which
//!   corrupts them. Turn GRO/LRO off on interfaces this port serves
//!   (`ethtool -K <if> gro off lro off`).
//! - Kernel drops (ring full) come from `PACKET_STATISTICS`, read when
//!   [`Port::stats`] is called and whenever a block arrives flagged
//!   `TP_STATUS_LOSING`; never per packet.
//! - `PACKET_IGNORE_OUTGOING` (Linux 4.20+) keeps frames transmitted on the
//!   interface, by us or by other workers' sockets, out of our ring.
//!
//! # Transmit path details
//!
//! [`Transmit`] picks one of two paths; `Auto` (the default) uses `Copy`
//! on veth and `Ring` elsewhere. `Copy` sends each burst with one
//! `sendmmsg(2)` (`MSG_DONTWAIT`, no TX ring mapped): every frame is
//! taken, and one the kernel refuses (full socket buffer, link down, too
//! long) counts in `tx_dropped`. The rest of this section is the ring.
//!
//! `TPACKET_V3` TX rings work since Linux 4.11 (fixed-size slots, no block
//! descriptors; the kernel rejects a V3 TX ring with a block timeout, private
//! area or feature word, so those are zero). A burst fills free slots in ring
//! order, marks them `TP_STATUS_SEND_REQUEST` and kicks once. A full ring
//! stops the burst (the rest count as `tx_dropped` and are returned to the
//! caller as not accepted). `PACKET_LOSS` is set so a frame the kernel
//! rejects (e.g. larger than the MTU) is skipped instead of stalling the
//! ring in `TP_STATUS_WRONG_FORMAT`; such frames cannot be counted. With
//! `qdisc_bypass` the frames skip the qdisc layer (and packet taps such as
//! tcpdump on that interface no longer see them).

#![allow(unsafe_code)]

mod csum;
mod ring;
pub(in crate::port) mod sys;

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::{PacketBuf, Port, PortStats, FRAME_CAPACITY};
use csum::{complete_l4_checksum, CsumOutcome};
use ring::{Push, RxRing, TxRing};

/// `tp_status` bit: the kernel (or the NIC, for it) validated the L4
/// checksum (linux/if_packet.h; not in the libc crate).
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

/// Largest total mapping we agree to create (both rings), to catch typos
/// like a block count of 100000 before the kernel tries to allocate it.
pub const MAX_RING_BYTES: u64 = 1 << 30;

/// Shape of one packet ring: `block_count` blocks of `block_size` bytes,
/// carved into `frame_size` slots (TX) or used for variable-size frames
/// (RX, where `frame_size` only has to satisfy the kernel's checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// Bytes per block; a multiple of the page size.
    pub block_size: u32,
    /// Number of blocks.
    pub block_count: u32,
    /// Bytes per frame slot; a multiple of 16, at most `block_size`.
    pub frame_size: u32,
}

impl RingGeometry {
    /// Default receive ring: 4 MiB as 64 blocks of 64 KiB.
    pub const DEFAULT_RX: RingGeometry = RingGeometry {
        block_size: 1 << 16,
        block_count: 64,
        frame_size: 2048,
    };

    /// Default transmit ring: 1 MiB as 16 blocks of 64 KiB, 2112-byte slots
    /// (31 per block, 496 in all), each holding a [`FRAME_CAPACITY`] frame
    /// behind its 48-byte header.
    pub const DEFAULT_TX: RingGeometry = RingGeometry {
        block_size: 1 << 16,
        block_count: 16,
        frame_size: 2112,
    };

    /// Total bytes of the ring.
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.block_size) * u64::from(self.block_count)
    }

    /// Frame slots per block.
    pub fn frames_per_block(&self) -> u32 {
        self.block_size.checked_div(self.frame_size).unwrap_or(0)
    }

    /// Frame slots in the whole ring (`tp_frame_nr`).
    pub fn frame_count(&self) -> u32 {
        self.frames_per_block().saturating_mul(self.block_count)
    }

    /// Checks what the kernel's `packet_set_ring` checks for a TPACKET_V3
    /// ring, so a bad configuration is reported by name instead of as a bare
    /// `EINVAL`. `page_size` is the system page size.
    pub fn validate(&self, page_size: u32) -> Result<(), String> {
        let hdr = u32::try_from(libc::TPACKET3_HDRLEN).unwrap_or(u32::MAX);
        // The V3 RX block descriptor, 8-aligned (BLK_PLUS_PRIV(0)).
        let block_hdr =
            u32::try_from(std::mem::size_of::<libc::tpacket_block_desc>().next_multiple_of(8))
                .unwrap_or(u32::MAX);
        let g = self;
        if g.block_size == 0 || g.block_size.checked_rem(page_size) != Some(0) {
            return Err(format!(
                "block size {} is not a multiple of the page size {page_size}",
                g.block_size
            ));
        }
        if i32::try_from(g.block_size).is_err() {
            return Err(format!("block size {} is too large", g.block_size));
        }
        if g.block_count == 0 {
            return Err("block count is 0".into());
        }
        if g.frame_size < hdr || g.frame_size & 15 != 0 {
            return Err(format!(
                "frame size {} must be a multiple of 16 and at least {hdr}",
                g.frame_size
            ));
        }
        if g.frame_size > g.block_size || g.block_size < block_hdr + hdr {
            return Err(format!(
                "frame size {} does not fit block size {}",
                g.frame_size, g.block_size
            ));
        }
        if u64::from(g.frames_per_block()) * u64::from(g.block_count) > u64::from(u32::MAX) {
            return Err("too many frames".into());
        }
        if g.size_bytes() > MAX_RING_BYTES {
            return Err(format!(
                "ring of {} bytes exceeds {MAX_RING_BYTES}",
                g.size_bytes()
            ));
        }
        Ok(())
    }

    fn req3(&self, block_timeout_ms: u32) -> libc::tpacket_req3 {
        libc::tpacket_req3 {
            tp_block_size: self.block_size,
            tp_block_nr: self.block_count,
            tp_frame_size: self.frame_size,
            tp_frame_nr: self.frame_count(),
            tp_retire_blk_tov: block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        }
    }
}

/// How an [`AfPacketPort`] transmits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A mapped `PACKET_TX_RING`: frames are copied into the shared ring
    /// and one `send` per burst asks the kernel to send them, which it does
    /// straight out of the ring's pages (zero copy). Best on a NIC.
    Ring,
    /// `sendmmsg(2)`, one call per burst of up to 64 frames: the kernel
    /// copies each frame into a new socket buffer. Best on veth, where the
    /// ring's zero-copy pages are copied again (page by page, into newly
    /// allocated pages) when the frame crosses into the peer's namespace.
    Copy,
    /// `Copy` on veth interfaces, `Ring` on every other.
    Auto,
}

impl Transmit {
    /// The mode `Auto` means for an interface driven by `driver`
    /// (`ethtool -i`'s driver name, if known).
    pub fn resolve(self, driver: Option<&str>) -> Transmit {
        match self {
            Transmit::Auto if driver == Some("veth") => Transmit::Copy,
            Transmit::Auto => Transmit::Ring,
            other => other,
        }
    }
}

/// How to open an [`AfPacketPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Interface name (`eth0`, `veth0`...), shorter than 16 bytes.
    pub interface: String,
    /// `PACKET_FANOUT` group to join (hash mode, with defragmentation), one
    /// id per interface; `None` to receive everything on this socket. The
    /// number of workers is the number of sockets that join the group.
    pub fanout_group: Option<u16>,
    /// Join the fanout group with `PACKET_FANOUT_FLAG_DEFRAG` (default:
    /// yes). The kernel then reassembles IPv4 fragments before choosing a
    /// member and delivers the *reassembled* datagram as one frame, not the
    /// fragments; see the module documentation for what that means when
    /// forwarding.
    pub fanout_defrag: bool,
    /// Receive ring shape.
    pub rx_ring: RingGeometry,
    /// Transmit ring shape.
    pub tx_ring: RingGeometry,
    /// Put the interface in promiscuous mode while the port is open
    /// (default: yes, the port is a bump in the wire).
    pub promiscuous: bool,
    /// Transmit with `PACKET_QDISC_BYPASS` (default: no).
    pub qdisc_bypass: bool,
    /// Milliseconds after which the kernel hands over a partly filled RX
    /// block (default 1, the minimum: bounds the added latency).
    pub block_timeout_ms: u32,
    /// How frames are transmitted (default `Auto`).
    pub transmit: Transmit,
}

impl AfPacketConfig {
    /// Defaults for `interface`: no fanout, 4 MiB RX ring, 1 MiB TX ring,
    /// promiscuous, no qdisc bypass, 1 ms block timeout.
    pub fn new(interface: impl Into<String>) -> AfPacketConfig {
        AfPacketConfig {
            interface: interface.into(),
            fanout_group: None,
            fanout_defrag: true,
            rx_ring: RingGeometry::DEFAULT_RX,
            tx_ring: RingGeometry::DEFAULT_TX,
            promiscuous: true,
            qdisc_bypass: false,
            block_timeout_ms: 1,
            transmit: Transmit::Auto,
        }
    }

    /// Checks the configuration without touching the system.
    pub fn validate(&self) -> Result<(), AfPacketError> {
        let bad = |reason: String| AfPacketError::Config {
            interface: self.interface.clone(),
            reason,
        };
        let name = &self.interface;
        if name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name.bytes().any(|b| b == 0 || b == b'/')
        {
            return Err(bad(format!(
                "interface name must be 1..{} bytes without NUL or '/'",
                libc::IFNAMSIZ - 1
            )));
        }
        let page = page_size();
        self.rx_ring
            .validate(page)
            .map_err(|e| bad(format!("rx ring: {e}")))?;
        self.tx_ring
            .validate(page)
            .map_err(|e| bad(format!("tx ring: {e}")))?;
        if self.tx_ring.frame_size < u32::try_from(ring::TX_DATA_OFFSET + 14).unwrap_or(u32::MAX) {
            return Err(bad(format!(
                "tx ring: frame size {} leaves no room for a frame",
                self.tx_ring.frame_size
            )));
        }
        if self.block_timeout_ms == 0 {
            return Err(bad("block timeout must be at least 1 ms".into()));
        }
        Ok(())
    }
}

/// Why opening an [`AfPacketPort`] failed; every variant names the
/// interface, and OS errors name the failing step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AfPacketError {
    /// The configuration is invalid.
    #[error("af_packet {interface}: invalid config: {reason}")]
    Config {
        /// Interface name.
        interface: String,
        /// What is wrong.
        reason: String,
    },
    /// No interface of that name in this network namespace.
    #[error("af_packet {interface}: no such interface")]
    NoSuchInterface {
        /// Interface name.
        interface: String,
    },
    /// A system call failed.
    #[error("af_packet {interface}: {step}: {error}")]
    Os {
        /// Interface name.
        interface: String,
        /// The failing call, e.g. `setsockopt(PACKET_RX_RING)`.
        step: &'static str,
        /// The OS error.
        error: io::Error,
    },
}

/// Whether an interface named `name` exists in the calling thread's network
/// namespace.
pub fn interface_exists(name: &str) -> bool {
    sys::if_index(name).is_some()
}

/// The Ethernet address of interface `name` (via `SIOCGIFHWADDR`, so it
/// follows the calling thread's network namespace, unlike `/sys`); `None` if
/// there is no such interface or it is not Ethernet.
pub fn mac_address(name: &str) -> Option<[u8; 6]> {
    sys::hw_address(name)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(p).unwrap_or(4096)
}

/// An interface served through TPACKET_V3 RX and TX rings. See the module
/// documentation.
#[derive(Debug)]
pub struct AfPacketPort {
    // Field order is drop order: the rings point into `map`, which is
    // unmapped before `fd` is closed.
    rx: RxRing,
    /// `None`: transmit with `sendmmsg` ([`Transmit::Copy`]).
    tx: Option<TxRing>,
    _map: sys::Mmap,
    fd: OwnedFd,
    name: String,
    ifindex: i32,
    stats: PortStats,
    /// Kernel drops read from PACKET_STATISTICS so far.
    kernel_drops: Cell<u64>,
    /// A TX kick failed (e.g. `ENOBUFS`); frames wait in the ring, retry.
    kick_pending: bool,
    checksums_completed: u64,
}

impl AfPacketPort {
    /// Opens a socket on `cfg.interface`, maps its rings, binds it, sets
    /// promiscuous mode and joins the fanout group. Never panics.
    pub fn open(cfg: &AfPacketConfig) -> Result<AfPacketPort, AfPacketError> {
        cfg.validate()?;
        let iface = cfg.interface.as_str();
        let os = |step: &'static str| {
            move |error: io::Error| AfPacketError::Os {
                interface: iface.to_owned(),
                step,
                error,
            }
        };
        let ifindex = sys::if_index(iface).ok_or_else(|| AfPacketError::NoSuchInterface {
            interface: iface.into(),
        })?;

        // Protocol 0: the socket receives nothing until bind(2) below, so
        // the ring only sees frames once it is fully set up.
        let fd = sys::packet_socket(0).map_err(os("socket(AF_PACKET, SOCK_RAW)"))?;
        let s = fd.as_fd();
        let one: libc::c_int = 1;
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_VERSION, &v3)
            .map_err(os("setsockopt(PACKET_VERSION)"))?;
        sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_LOSS, &one)
            .map_err(os("setsockopt(PACKET_LOSS)"))?;
        sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(os("setsockopt(PACKET_IGNORE_OUTGOING)"))?;
        if cfg.qdisc_bypass {
            sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)
                .map_err(os("setsockopt(PACKET_QDISC_BYPASS)"))?;
        }
        let rx_req = cfg.rx_ring.req3(cfg.block_timeout_ms);
        sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx_req)
            .map_err(os("setsockopt(PACKET_RX_RING)"))?;
        let transmit = cfg.transmit.resolve(sys::driver_name(iface).as_deref());
        if transmit == Transmit::Ring {
            let tx_req = cfg.tx_ring.req3(0);
            sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req)
                .map_err(os("setsockopt(PACKET_TX_RING)"))?;
        } else {
            // Room for a few bursts of frames in flight in socket buffers
            // (the default of about 200 KiB holds about 80); best effort.
            let bytes: libc::c_int = 4 << 20;
            if sys::setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &bytes).is_err() {
                let _ = sys::setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF, &bytes);
            }
        }

        // validate() capped both rings at MAX_RING_BYTES, so this fits usize.
        let too_big = || os("mmap")(io::Error::from_raw_os_error(libc::EOVERFLOW));
        let rx_len = usize::try_from(cfg.rx_ring.size_bytes()).map_err(|_| too_big())?;
        let tx_len = if transmit == Transmit::Ring {
            usize::try_from(cfg.tx_ring.size_bytes()).map_err(|_| too_big())?
        } else {
            0
        };
        let map = sys::Mmap::packet_rings(s, rx_len + tx_len).map_err(os("mmap"))?;
        debug_assert_eq!(map.len(), rx_len + tx_len);
        let block = |g: &RingGeometry| usize::try_from(g.block_size).unwrap_or(0);
        let count = |g: &RingGeometry| usize::try_from(g.block_count).unwrap_or(0);
        // SAFETY: the kernel lays the RX ring out first, then the TX ring,
        // each exactly `size_bytes()` long, in the mapping we just created;
        // the port keeps the mapping alive for as long as the rings and is
        // the only walker of either ring.
        let (rx, tx) = unsafe {
            (
                RxRing::new(map.as_ptr(), block(&cfg.rx_ring), count(&cfg.rx_ring)),
                (tx_len > 0).then(|| {
                    TxRing::new(
                        map.as_ptr().add(rx_len),
                        block(&cfg.tx_ring),
                        count(&cfg.tx_ring),
                        usize::try_from(cfg.tx_ring.frame_size).unwrap_or(usize::MAX),
                    )
                }),
            )
        };

        if cfg.fanout_group.is_some() {
            // Until the socket has joined its group, it would get a copy of
            // every frame on the interface, duplicating what other members
            // get. Drop everything until then.
            sys::attach_drop_all_filter(s).map_err(os("setsockopt(SO_ATTACH_FILTER)"))?;
        }
        sys::bind_ll(s, ifindex, sys::eth_p_all_be()).map_err(os("bind"))?;
        if cfg.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: u16::try_from(libc::PACKET_MR_PROMISC).unwrap_or(1),
                mr_alen: 0,
                mr_address: [0; 8],
            };
            // Dropped by the kernel when the socket closes.
            sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(os("setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)"))?;
        }
        if let Some(group) = cfg.fanout_group {
            // Must follow bind(2): the kernel only lets running sockets join.
            // Our own steering program, so that the control side knows
            // which worker a flow's packets reach (see `steer`).
            let mut mode = sys::PACKET_FANOUT_CBPF;
            if cfg.fanout_defrag {
                mode |= libc::PACKET_FANOUT_FLAG_DEFRAG;
            }
            let arg: u32 = u32::from(group) | (mode << 16);
            sys::setsockopt(s, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
                .map_err(os("setsockopt(PACKET_FANOUT)"))?;
            sys::attach_fanout_program(s, &super::steer::fanout_program())
                .map_err(os("setsockopt(PACKET_FANOUT_DATA)"))?;
            sys::detach_filter(s).map_err(os("setsockopt(SO_DETACH_FILTER)"))?;
        }
        Ok(AfPacketPort {
            rx,
            tx,
            _map: map,
            fd,
            name: cfg.interface.clone(),
            ifindex,
            stats: PortStats::default(),
            kernel_drops: Cell::new(0),
            kick_pending: false,
            checksums_completed: 0,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Frames whose partial TCP/UDP checksum was completed in software.
    pub fn checksums_completed(&self) -> u64 {
        self.checksums_completed
    }

    /// Slots in the transmit ring: the most frames that can be in flight
    /// (0 when transmitting with `sendmmsg`).
    pub fn tx_slots(&self) -> usize {
        self.tx.as_ref().map_or(0, TxRing::slots)
    }

    /// Largest frame a transmit takes.
    pub fn tx_max_frame(&self) -> usize {
        self.tx.as_ref().map_or(FRAME_CAPACITY, TxRing::max_frame)
    }

    /// How this port transmits (`Ring` or `Copy`, never `Auto`).
    pub fn transmit(&self) -> Transmit {
        if self.tx.is_some() {
            Transmit::Ring
        } else {
            Transmit::Copy
        }
    }

    /// Reads and resets the kernel's counters; accumulates drops.
    fn refresh_kernel_drops(&self) {
        if let Ok(st) = sys::packet_statistics(self.fd.as_fd()) {
            self.kernel_drops
                .set(self.kernel_drops.get() + u64::from(st.tp_drops));
        }
    }

    fn kick(&mut self) {
        self.kick_pending = self.tx.is_some() && sys::kick_tx(self.fd.as_fd()).is_err();
    }

    /// [`Transmit::Copy`]: `sendmmsg` in batches. Every frame is accepted;
    /// one the kernel refuses (full socket buffer, too long for the link,
    /// shorter than an Ethernet header) is counted in `tx_dropped`, and the
    /// batch goes on after it, so at most one call per frame.
    fn send_copies(&mut self, bufs: &[PacketBuf]) -> usize {
        let mut frames: [&[u8]; sys::SEND_BATCH] = [&[]; sys::SEND_BATCH];
        let mut at = 0;
        while at < bufs.len() {
            let mut n = 0;
            for b in &bufs[at..] {
                if n == sys::SEND_BATCH {
                    break;
                }
                frames[n] = &b.data;
                n += 1;
            }
            match sys::send_frames(self.fd.as_fd(), &frames[..n]) {
                Ok(k) if k > 0 => {
                    let k = k.min(n);
                    for b in &bufs[at..at + k] {
                        self.stats.tx_packets += 1;
                        self.stats.tx_bytes += b.data.len() as u64;
                    }
                    at += k;
                }
                _ => {
                    self.stats.tx_dropped += 1;
                    at += 1;
                }
            }
        }
        bufs.len()
    }
}

/// Copies a ring frame into `buf`, re-inserting a stripped VLAN tag.
/// Returns whether the whole frame fit.
fn copy_frame(buf: &mut PacketBuf, data: &[u8], vlan: Option<(u16, u16)>) -> bool {
    let Some((tpid, tci)) = vlan.filter(|_| data.len() >= 12) else {
        return buf.set(data);
    };
    let d = &mut buf.data;
    d.clear();
    d.extend_from_slice(&data[..12]);
    d.extend_from_slice(&tpid.to_be_bytes());
    d.extend_from_slice(&tci.to_be_bytes());
    let room = FRAME_CAPACITY - d.len();
    let rest = &data[12..];
    d.extend_from_slice(&rest[..rest.len().min(room)]);
    rest.len() <= room
}

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    /// Copies up to `bufs.len()` frames out of retired blocks; a block goes
    /// back to the kernel as soon as its last frame is copied, and a
    /// partly consumed block is resumed by the next call. No system call.
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut n = 0;
        while n < bufs.len() {
            let Some(frame) = self.rx.peek() else { break };
            let buf = &mut bufs[n];
            let fit = copy_frame(buf, frame.data, frame.vlan);
            let whole = fit && frame.data.len() == frame.wire_len;
            // The kernel or NIC verified the checksum, or the frame was sent
            // by a local stack that left it for us to fill in.
            buf.csum_verified = false;
            if !whole {
                self.stats.truncated += 1;
            } else if frame.status & libc::TP_STATUS_CSUMNOTREADY != 0 {
                if complete_l4_checksum(&mut buf.data) == CsumOutcome::Filled {
                    self.checksums_completed += 1;
                    buf.csum_verified = true;
                }
            } else {
                buf.csum_verified = frame.status & TP_STATUS_CSUM_VALID != 0;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += buf.data.len() as u64;
            self.rx.advance();
            n += 1;
        }
        if self.rx.losing {
            self.rx.losing = false;
            self.refresh_kernel_drops();
        }
        n
    }

    /// Copies frames into free TX slots in order and kicks the kernel once.
    /// Stops at the first busy slot (ring full); frames shorter than an
    /// Ethernet header or longer than a slot are accepted and dropped
    /// (counted in `tx_dropped`) so they cannot block the burst.
    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let Some(tx) = self.tx.as_mut() else {
            return self.send_copies(bufs);
        };
        let mut accepted = 0;
        let mut queued = 0;
        for buf in bufs.iter() {
            match tx.push(&buf.data) {
                Push::Queued => {
                    queued += 1;
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += buf.data.len() as u64;
                }
                Push::Invalid => self.stats.tx_dropped += 1,
                Push::Full => break,
            }
            accepted += 1;
        }
        self.stats.tx_dropped += (bufs.len() - accepted) as u64;
        if queued > 0 || self.kick_pending {
            self.kick();
        }
        accepted
    }

    fn prepare_wait(&mut self) -> super::WaitOn<'_> {
        if self.kick_pending {
            self.kick();
        }
        if self.rx.has_frames() {
            return super::WaitOn::Ready;
        }
        super::WaitOn::Fd(self.fd.as_fd())
    }

    fn set_bucket_filter(
        &mut self,
        filter: Option<&super::bucket_filter::BucketFilter>,
    ) -> io::Result<bool> {
        match filter {
            Some(f) => {
                let prog = f.program().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "bucket filter longer than the kernel takes",
                    )
                })?;
                sys::attach_filter(self.fd.as_fd(), &prog)?;
            }
            // No filter attached: nothing to remove.
            None => match sys::detach_filter(self.fd.as_fd()) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                r => r?,
            },
        }
        Ok(true)
    }

    fn stats(&self) -> PortStats {
        self.refresh_kernel_drops();
        PortStats {
            rx_dropped: self.stats.rx_dropped + self.kernel_drops.get() + self.rx.corrupt,
            tx_dropped: self.stats.tx_dropped + self.tx.as_ref().map_or(0, |t| t.wrong_format),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = AfPacketConfig::new("veth0");
        assert!(c.promiscuous);
        assert!(!c.qdisc_bypass);
        assert_eq!(c.fanout_group, None);
        assert!(c.fanout_defrag);
        assert_eq!(c.rx_ring.size_bytes(), 4 << 20);
        assert_eq!(c.tx_ring.size_bytes(), 1 << 20);
        assert_eq!(c.tx_ring.frame_count(), 496);
        assert!(c.tx_ring.frame_size as usize - ring::TX_DATA_OFFSET >= FRAME_CAPACITY);
        c.validate().unwrap();
    }

    #[test]
    fn geometry_validation() {
        let page = 4096;
        let ok = RingGeometry {
            block_size: 8192,
            block_count: 2,
            frame_size: 2048,
        };
        ok.validate(page).unwrap();
        assert_eq!(ok.frame_count(), 8);
        let cases = [
            (
                RingGeometry {
                    block_size: 5000,
                    ..ok
                },
                "page size",
            ),
            (
                RingGeometry {
                    block_size: 0,
                    ..ok
                },
                "page size",
            ),
            (
                RingGeometry {
                    block_count: 0,
                    ..ok
                },
                "block count",
            ),
            (
                RingGeometry {
                    frame_size: 2050,
                    ..ok
                },
                "multiple of 16",
            ),
            (
                RingGeometry {
                    frame_size: 32,
                    ..ok
                },
                "at least",
            ),
            (
                RingGeometry {
                    frame_size: 16384,
                    ..ok
                },
                "does not fit",
            ),
            (
                RingGeometry {
                    block_size: 1 << 20,
                    block_count: 2048,
                    frame_size: 2048,
                },
                "exceeds",
            ),
        ];
        for (g, want) in cases {
            let err = g.validate(page).unwrap_err();
            assert!(err.contains(want), "{g:?}: {err}");
        }
    }

    #[test]
    fn config_errors_name_the_interface() {
        let mut c = AfPacketConfig::new("veth0");
        c.rx_ring.block_count = 0;
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "af_packet veth0: invalid config: rx ring: block count is 0"
        );
        for bad in ["", "0123456789abcdef", "a/b"] {
            assert!(matches!(
                AfPacketConfig::new(bad).validate(),
                Err(AfPacketError::Config { .. })
            ));
        }
        let e = AfPacketConfig {
            block_timeout_ms: 0,
            ..AfPacketConfig::new("x")
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("block timeout"));
    }

    #[test]
    fn os_error_format() {
        let e = AfPacketError::Os {
            interface: "veth0".into(),
            step: "setsockopt(PACKET_RX_RING)",
            error: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(
            e.to_string(),
            "af_packet veth0: setsockopt(PACKET_RX_RING): Invalid argument (os error 22)"
        );
    }

    #[test]
    fn open_missing_interface_fails_cleanly() {
        let e = AfPacketPort::open(&AfPacketConfig::new("ftfw-nonexist")).unwrap_err();
        // Without root the socket call may fail first; either way no panic
        // and the interface is named.
        assert!(
            e.to_string().starts_with("af_packet ftfw-nonexist: "),
            "{e}"
        );
    }

    #[test]
    fn copy_frame_reinserts_vlan_and_truncates() {
        let frame: Vec<u8> = (0..60u8).collect();
        let mut b = PacketBuf::new();
        assert!(copy_frame(&mut b, &frame, Some((0x8100, 0x2005))));
        assert_eq!(&b.data[..12], &frame[..12]);
        assert_eq!(&b.data[12..16], &[0x81, 0x00, 0x20, 0x05]);
        assert_eq!(&b.data[16..], &frame[12..]);

        let big = vec![7u8; FRAME_CAPACITY];
        assert!(copy_frame(&mut b, &big, None));
        assert!(!copy_frame(&mut b, &big, Some((0x88a8, 1))));
        assert_eq!(b.data.len(), FRAME_CAPACITY);
        // A runt shorter than the MAC addresses is copied as is.
        assert!(copy_frame(&mut b, &[1, 2, 3], Some((0x8100, 1))));
        assert_eq!(*b.data, [1, 2, 3]);
    }

    #[test]
    fn interface_helpers() {
        assert!(interface_exists("lo"));
        assert!(!interface_exists("ftfw-nonexist"));
        assert_eq!(mac_address("ftfw-nonexist"), None);
    }
}
