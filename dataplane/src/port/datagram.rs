//! Batches of UDP datagrams for the sync link: one `sendmmsg` or
//! `recvmmsg` system call moves up to [`SYSCALL_BATCH`] datagrams.
//!
//! The sync thread (and `ftfw-lab bench sync`) queues the datagrams its
//! engines produce in one iteration in a [`DatagramBatch`] and sends them
//! with [`send_batch`]; it reads what waits on its socket with
//! [`recv_batch`] into a [`RecvBatch`]. Each datagram stays a datagram of
//! its own on the wire: batching changes the number of system calls, not
//! what the peer receives.
//!
//! Errors are per datagram, as with one `sendto` each: `sendmmsg` stops at
//! the first datagram that fails and returns how many went before it (the
//! kernel keeps that datagram's error and returns it on the next call), so
//! [`send_batch`] returns either a count of datagrams sent (at least one)
//! or the error of the first datagram, none sent. The caller counts that
//! one, skips it and calls again for the rest.
//!
//! `sendmmsg` goes through rustix (safe); `recvmmsg` has no rustix wrapper
//! and is the one `unsafe` FFI call here (with its `// SAFETY:` note).

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most datagrams one system call moves (the kernel allows 1,024).
pub const SYSCALL_BATCH: usize = 64;

/// Datagrams waiting to be sent, back to back in one buffer.
#[derive(Debug, Default, Clone)]
pub struct DatagramBatch {
    bytes: Vec<u8>,
    /// End offset of each datagram in `bytes`.
    ends: Vec<usize>,
}

impl DatagramBatch {
    /// An empty batch with room for `datagrams` of `size` bytes (it grows
    /// beyond that if asked).
    pub fn with_capacity(datagrams: usize, size: usize) -> DatagramBatch {
        DatagramBatch {
            bytes: Vec::with_capacity(datagrams.saturating_mul(size)),
            ends: Vec::with_capacity(datagrams),
        }
    }

    /// Appends one datagram.
    pub fn push(&mut self, datagram: &[u8]) {
        self.bytes.extend_from_slice(datagram);
        self.ends.push(self.bytes.len());
    }

    /// Datagrams in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no datagram.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Datagram `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..end)
    }

    /// Where datagram `i` starts in `bytes` (the end of the batch for
    /// `i == len`).
    fn offset(&self, i: usize) -> usize {
        match i {
            0 => 0,
            i => self.ends.get(i - 1).copied().unwrap_or(self.bytes.len()),
        }
    }

    /// Forgets the first `n` datagrams (those sent), keeping the rest in
    /// order.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        if n == self.ends.len() {
            self.clear();
            return;
        }
        let cut = self.ends[n - 1];
        self.bytes.drain(..cut);
        self.ends.drain(..n);
        for e in &mut self.ends {
            *e -= cut;
        }
    }

    /// Empties the batch (keeping its memory).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Whether [`send_batch`] hands runs of equal-sized datagrams to the
/// kernel as one UDP segmentation offload (GSO) send each.
///
/// With `On`, a run of datagrams of one size (and at most one shorter one
/// after them) goes down as one buffer with a `UDP_SEGMENT` control
/// message: the kernel (or the NIC) cuts it back into the same datagrams,
/// each with its own UDP header, so the peer receives exactly what one
/// send per datagram would have given it. The stack is walked once per
/// run instead of once per datagram. FT-FW datagrams of a steady stream of
/// updates are mostly one size (the engine fills each to the MTU with
/// messages that are alike), so runs are long.
///
/// A kernel or route that refuses segmentation (`EIO`, `EINVAL`, ...) turns
/// it `Off` for good; the datagrams then go one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segmentation {
    /// One `sendmmsg` entry per datagram.
    Off,
    /// One `sendmmsg` entry per run of equal-sized datagrams.
    On,
}

impl Segmentation {
    /// `On` when `on`.
    pub fn when(on: bool) -> Segmentation {
        if on {
            Segmentation::On
        } else {
            Segmentation::Off
        }
    }
}

/// Linux's `UDP_SEGMENT` socket option and control message (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
/// Linux's `UDP_GRO` socket option and control message (linux/udp.h).
const UDP_GRO: libc::c_int = 104;
/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS`
/// was 64 until Linux 6.2).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one segmented send: what fits in one IPv4 or IPv6
/// packet's length field with the headers.
const MAX_SEGMENTED_BYTES: usize = 65_000;

/// The datagrams `from..` of `batch` that one `sendmmsg` entry carries:
/// one datagram, or with `seg` a run of datagrams of the same size
/// followed by at most one shorter one. Returns the run's end and its
/// segment size (`None`: one datagram, no control message).
fn run_at(batch: &DatagramBatch, from: usize, seg: Segmentation) -> (usize, Option<u16>) {
    let size = batch.get(from).map_or(0, <[u8]>::len);
    let gso = u16::try_from(size).ok().filter(|&s| s > 0);
    let (Segmentation::On, Some(gso)) = (seg, gso) else {
        return (from + 1, None);
    };
    let (mut end, mut bytes) = (from + 1, size);
    while end < batch.len() && end - from < MAX_SEGMENTS {
        let len = batch.get(end).map_or(0, <[u8]>::len);
        if len == 0 || len > size || bytes + len > MAX_SEGMENTED_BYTES {
            break;
        }
        end += 1;
        bytes += len;
        if len < size {
            // Only the last segment may be shorter.
            break;
        }
    }
    (end, (end - from > 1).then_some(gso))
}

/// A `UDP_SEGMENT` control message, laid out as `CMSG_SPACE(2)` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    pad: [u8; 6],
}

/// `dest` as a C socket address.
// AF_INET and AF_INET6 fit sa_family_t; the lengths are small constants.
#[allow(clippy::cast_possible_truncation)]
fn c_sockaddr(dest: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain integers; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match dest {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger and at least as aligned
            // as sockaddr_in; the write covers only that prefix.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain integers; all-zero is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Sends datagrams `from..` of `batch` on `fd` (to `dest`, or to the
/// socket's connected peer when `None`), at most [`SYSCALL_BATCH`]
/// `sendmmsg` entries in one call: one per datagram, or with `seg` on one
/// per run of equal-sized datagrams (see [`Segmentation`]). Returns how
/// many datagrams were sent, at least one when `from` is below the
/// batch's length (0 when nothing was left), or the error of datagram
/// `from`, which was not sent (`WouldBlock`: the socket buffer is full).
/// A run is sent whole or not at all. When the kernel refuses a
/// segmented send, `seg` turns [`Segmentation::Off`] and the datagrams go
/// one by one.
pub fn send_batch(
    fd: BorrowedFd<'_>,
    dest: Option<SocketAddr>,
    batch: &DatagramBatch,
    from: usize,
    seg: &mut Segmentation,
) -> io::Result<usize> {
    if from >= batch.len() {
        return Ok(0);
    }
    // Run ends and segment sizes, one per sendmmsg entry.
    let mut runs: [(usize, Option<u16>); SYSCALL_BATCH] = [(0, None); SYSCALL_BATCH];
    let mut n = 0;
    let mut at = from;
    while n < SYSCALL_BATCH && at < batch.len() {
        runs[n] = run_at(batch, at, *seg);
        at = runs[n].0;
        n += 1;
    }
    let mut iovs: [MaybeUninit<libc::iovec>; SYSCALL_BATCH] =
        [MaybeUninit::uninit(); SYSCALL_BATCH];
    // SAFETY: cmsghdr is plain integers; all-zero is valid.
    let mut cmsgs: [SegmentCmsg; SYSCALL_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: mmsghdr is plain integers and pointers; all-zero (null
    // pointers, zero lengths) is a valid value.
    let mut hdrs: [libc::mmsghdr; SYSCALL_BATCH] = unsafe { std::mem::zeroed() };
    let mut name = dest.map(c_sockaddr);
    let mut start = from;
    for i in 0..n {
        let (end, gso) = runs[i];
        let first = batch.offset(start);
        let bytes = &batch.bytes[first..batch.offset(end)];
        iovs[i].write(libc::iovec {
            // The kernel only reads through this pointer.
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        });
        let h = &mut hdrs[i].msg_hdr;
        if let Some((ss, len)) = name.as_mut() {
            h.msg_name = (ss as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = *len;
        }
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        if let Some(size) = gso {
            let c = &mut cmsgs[i];
            // SAFETY: CMSG_LEN and CMSG_SPACE only compute sizes.
            let (len, space) = unsafe { (libc::CMSG_LEN(2), libc::CMSG_SPACE(2)) };
            debug_assert_eq!(space as usize, std::mem::size_of::<SegmentCmsg>());
            c.hdr.cmsg_len = len as _;
            c.hdr.cmsg_level = libc::SOL_UDP;
            c.hdr.cmsg_type = UDP_SEGMENT;
            c.size = size;
            h.msg_control = (c as *mut SegmentCmsg).cast();
            h.msg_controllen = space as _;
        }
        start = end;
    }
    let sent = retrying(|| {
        // SAFETY: `hdrs[..n]` are initialised above: each points to one
        // iovec over bytes of `batch` (read only), to the one destination
        // address (or none) and to its own control message (or none), all
        // of which outlive the call and are not written during it.
        unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                // At most SYSCALL_BATCH.
                libc::c_uint::try_from(n).unwrap_or(1),
                libc::MSG_DONTWAIT,
            )
        }
    });
    let sent = match sent {
        Ok(sent) => sent,
        Err(e)
            if runs[0].1.is_some()
                && matches!(
                    e.raw_os_error(),
                    Some(
                        libc::EIO
                            | libc::EINVAL
                            | libc::EMSGSIZE
                            | libc::ENOPROTOOPT
                            | libc::EOPNOTSUPP
                    )
                ) =>
        {
            // Segmentation refused: from now on one datagram each.
            *seg = Segmentation::Off;
            return send_batch(fd, dest, batch, from, seg);
        }
        Err(e) => return Err(e),
    };
    // Entries sent -> datagrams sent.
    Ok(match sent.min(n) {
        0 => 0,
        k => runs[k - 1].0 - from,
    })
}

/// Runs the system call `call` again while it is interrupted (`EINTR`);
/// its non-negative result, or the error it set.
fn retrying(mut call: impl FnMut() -> libc::c_int) -> io::Result<usize> {
    loop {
        let r = call();
        if let Ok(n) = usize::try_from(r) {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Turns coalesced receive (`UDP_GRO`) on or off for `fd`: the kernel may
/// then hand several datagrams of one sender, all of one size but the
/// last, to one read; [`recv_batch`] splits them again. The receive
/// batch's slots must hold 65,535 bytes, or a coalesced read is cut short.
pub fn set_coalesced_receive(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let v = libc::c_int::from(on);
    // SAFETY: the option value is a valid c_int of the size passed, read
    // by the kernel during the call only.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&raw const v).cast(),
            // The size of a c_int (4).
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Buffers for up to [`SYSCALL_BATCH`] received reads, each one datagram
/// or, with [`set_coalesced_receive`], a run of datagrams the kernel
/// coalesced (split again here: callers see datagrams either way).
pub struct RecvBatch {
    /// `slots` buffers of `slot` bytes, back to back.
    bufs: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    addrs: Vec<Option<SocketAddr>>,
    /// The datagrams of the last receive: slot, offset in it, length.
    segs: Vec<(usize, usize, usize)>,
    count: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.lens.len())
            .field("slot", &self.slot)
            .field("count", &self.count)
            .finish()
    }
}

impl Default for RecvBatch {
    /// No slots (allocates nothing): a placeholder to swap a batch with.
    fn default() -> RecvBatch {
        RecvBatch {
            bufs: Vec::new(),
            slot: 1,
            lens: Vec::new(),
            truncated: Vec::new(),
            addrs: Vec::new(),
            segs: Vec::new(),
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Room for `slots` datagrams (at most [`SYSCALL_BATCH`], at least 1)
    /// of up to `slot` bytes each; a longer datagram is truncated and
    /// flagged (see [`RecvBatch::truncated`]).
    pub fn new(slots: usize, slot: usize) -> RecvBatch {
        let slots = slots.clamp(1, SYSCALL_BATCH);
        let slot = slot.max(1);
        RecvBatch {
            bufs: vec![0u8; slots * slot],
            slot,
            lens: vec![0; slots],
            truncated: vec![false; slots],
            addrs: vec![None; slots],
            segs: Vec::with_capacity(slots),
            count: 0,
        }
    }

    /// Datagrams the last [`recv_batch`] received.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Reads the last [`recv_batch`] made: its datagrams, or fewer when
    /// the kernel coalesced some (see [`set_coalesced_receive`]).
    pub fn reads(&self) -> usize {
        self.segs.last().map_or(0, |&(slot, ..)| slot + 1)
    }

    /// Whether the last [`recv_batch`] received nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last receive, writable (authenticated sync
    /// opens it in place), with its source address (`None` for an
    /// address family other than IPv4 and IPv6).
    pub fn get_mut(&mut self, i: usize) -> Option<(&mut [u8], Option<SocketAddr>)> {
        let &(slot, at, len) = self.segs.get(i)?;
        let start = slot * self.slot + at;
        let addr = self.addrs[slot];
        Some((self.bufs.get_mut(start..start + len)?, addr))
    }

    /// Whether datagram `i` was longer than a slot (its tail is lost; with
    /// coalesced receive, the tail of its read).
    pub fn truncated(&self, i: usize) -> bool {
        self.segs
            .get(i)
            .is_some_and(|&(slot, ..)| self.truncated[slot])
    }

    /// Records the reads of the last receive as datagrams: read `i` is
    /// `lens[i]` bytes, cut every `gso[i]` bytes when the kernel coalesced
    /// it.
    fn split(&mut self, reads: usize, gso: &[usize]) {
        self.segs.clear();
        for i in 0..reads {
            let len = self.lens[i].min(self.slot);
            match gso.get(i).copied().filter(|&g| g > 0 && g < len) {
                Some(g) => {
                    let mut at = 0;
                    while at < len {
                        self.segs.push((i, at, g.min(len - at)));
                        at += g;
                    }
                }
                None => self.segs.push((i, 0, len)),
            }
        }
        self.count = self.segs.len();
    }
}

/// Room for any source address (sockaddr_storage is 128 bytes).
#[allow(clippy::cast_possible_truncation)]
const NAME_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

fn to_socket_addr(sa: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match libc::c_int::from(sa.ss_family) {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, the
            // kernel wrote at least that many bytes, and sockaddr_storage
            // is larger and at least as aligned as sockaddr_in.
            let a = unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(a.sin_addr.s_addr).into(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Control-message room per read: one `UDP_GRO` message (an int) fits
/// in `CMSG_SPACE(4)` = 24 bytes on 64-bit Linux.
type CmsgBuf = [u64; 4];

/// The segment size of a coalesced read, from its `UDP_GRO` control
/// message (0: one datagram).
fn gro_size(h: &libc::msghdr) -> usize {
    let mut size = 0;
    // SAFETY: `h` is a msghdr the kernel filled: its control pointer and
    // length describe our own CmsgBuf (or are null/0), within which
    // CMSG_FIRSTHDR/CMSG_NXTHDR only return headers that fit; the data of
    // a UDP_GRO message is one int, read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                size = usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    size
}

/// Receives what waits on `fd` with one `recvmmsg` (`MSG_WAITFORONE`: a
/// blocking socket waits for the first, as `recv` would, then takes only
/// what is already there): up to `max` reads (at most the batch's number
/// of slots), each one datagram, or with [`set_coalesced_receive`] a run
/// of them, split again. Returns how many datagrams arrived (also
/// [`RecvBatch::len`]; with coalesced reads it can exceed `max`);
/// `WouldBlock` when nothing waits on a non-blocking socket.
pub fn recv_batch(fd: BorrowedFd<'_>, batch: &mut RecvBatch, max: usize) -> io::Result<usize> {
    batch.count = 0;
    batch.segs.clear();
    let slots = batch.lens.len().min(max);
    if slots == 0 {
        return Ok(0);
    }
    let slot = batch.slot;
    // SAFETY: sockaddr_storage is plain integers; all-zero is valid.
    let mut names: [libc::sockaddr_storage; SYSCALL_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [MaybeUninit<libc::iovec>; SYSCALL_BATCH] =
        [MaybeUninit::uninit(); SYSCALL_BATCH];
    let mut cmsgs: [CmsgBuf; SYSCALL_BATCH] = [[0; 4]; SYSCALL_BATCH];
    // SAFETY: mmsghdr is plain integers and pointers; all-zero (null
    // pointers, zero lengths) is a valid value.
    let mut hdrs: [libc::mmsghdr; SYSCALL_BATCH] = unsafe { std::mem::zeroed() };
    for (i, chunk) in batch.bufs.chunks_exact_mut(slot).take(slots).enumerate() {
        iovs[i].write(libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: slot,
        });
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = NAME_LEN;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        h.msg_control = cmsgs[i].as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
    }
    let got = retrying(|| {
        // SAFETY: `hdrs[..slots]` are initialised above: each points to one
        // iovec over its own `slot`-byte chunk of `batch.bufs`, to its own
        // sockaddr_storage and to its own control buffer, all of which
        // outlive the call and are not otherwise borrowed during it; the
        // kernel writes at most `iov_len` bytes into each chunk, at most
        // `msg_namelen` bytes of address, at most `msg_controllen` bytes
        // of control messages, and the `msg_len`/`msg_flags`/
        // `msg_namelen`/`msg_controllen` fields. A null timeout is allowed.
        unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                // At most SYSCALL_BATCH.
                libc::c_uint::try_from(slots).unwrap_or(1),
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        }
    })?;
    let reads = got.min(slots);
    let mut gso = [0usize; SYSCALL_BATCH];
    for (i, h) in hdrs.iter().enumerate().take(reads) {
        batch.lens[i] = h.msg_len as usize;
        batch.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        batch.addrs[i] = to_socket_addr(&names[i], h.msg_hdr.msg_namelen);
        gso[i] = gro_size(&h.msg_hdr);
    }
    batch.split(reads, &gso[..reads]);
    Ok(batch.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        pair_on("127.0.0.1:0")
    }

    fn pair_on(addr: &str) -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind(addr).unwrap();
        let b = UdpSocket::bind(addr).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        (a, b)
    }

    #[test]
    fn a_batch_keeps_its_datagrams_apart_and_in_order() {
        let mut b = DatagramBatch::default();
        b.push(b"one");
        b.push(b"");
        b.push(b"three");
        assert_eq!(b.len(), 3);
        assert_eq!(b.get(0), Some(&b"one"[..]));
        assert_eq!(b.get(1), Some(&b""[..]));
        assert_eq!(b.get(2), Some(&b"three"[..]));
        assert_eq!(b.get(3), None);
        b.consume(1);
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(0), Some(&b""[..]));
        assert_eq!(b.get(1), Some(&b"three"[..]));
        b.consume(5);
        assert!(b.is_empty());
    }

    /// 150 datagrams of different lengths go out in calls of at most
    /// SYSCALL_BATCH and arrive as 150 datagrams, each intact, in order,
    /// from the sender's address; the receive batch takes several at once.
    #[test]
    fn batched_datagrams_arrive_one_by_one_intact() {
        let (a, b) = pair();
        let dest = b.local_addr().unwrap();
        let mut batch = DatagramBatch::default();
        let sent: Vec<Vec<u8>> = (0..150u32)
            .map(|i| {
                (0..(i % 97 + 1))
                    .map(|j| u8::try_from((i + j) % 256).unwrap())
                    .collect()
            })
            .collect();
        for d in &sent {
            batch.push(d);
        }
        let mut from = 0;
        let mut calls = 0;
        while from < batch.len() {
            let n =
                send_batch(a.as_fd(), Some(dest), &batch, from, &mut Segmentation::Off).unwrap();
            assert!((1..=SYSCALL_BATCH).contains(&n), "{n}");
            from += n;
            calls += 1;
        }
        assert!(calls >= 3, "150 datagrams need at least three calls");
        let mut rx = RecvBatch::new(SYSCALL_BATCH, 2048);
        let mut got = Vec::new();
        let mut most = 0;
        while got.len() < sent.len() {
            let n = recv_batch(b.as_fd(), &mut rx, usize::MAX).unwrap();
            most = most.max(n);
            for i in 0..n {
                assert!(!rx.truncated(i));
                let (d, addr) = rx.get_mut(i).unwrap();
                assert_eq!(addr, Some(a.local_addr().unwrap()));
                got.push(d.to_vec());
            }
        }
        assert_eq!(got, sent);
        assert!(most > 1, "the receive batch took several datagrams at once");
    }

    /// A connected socket sends without an address; a datagram longer than
    /// a receive slot is flagged truncated.
    #[test]
    fn connected_send_and_truncation() {
        let (a, b) = pair();
        a.connect(b.local_addr().unwrap()).unwrap();
        let mut batch = DatagramBatch::default();
        batch.push(&[7u8; 100]);
        batch.push(&[8u8; 10]);
        let mut from = 0;
        while from < batch.len() {
            from += send_batch(a.as_fd(), None, &batch, from, &mut Segmentation::Off).unwrap();
        }
        assert_eq!(
            send_batch(a.as_fd(), None, &batch, from, &mut Segmentation::On).unwrap(),
            0
        );
        let mut rx = RecvBatch::new(4, 16);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let n = recv_batch(b.as_fd(), &mut rx, usize::MAX).unwrap();
            for i in 0..n {
                let t = rx.truncated(i);
                let (d, _) = rx.get_mut(i).unwrap();
                seen.push((d.len(), t));
            }
        }
        assert_eq!(seen, vec![(16, true), (10, false)]);
    }

    /// The error of the first datagram comes back, none sent: an IPv6
    /// destination on an IPv4 socket fails every datagram.
    #[test]
    fn an_error_is_the_first_datagrams_and_nothing_is_sent() {
        let (a, _b) = pair();
        let mut batch = DatagramBatch::default();
        batch.push(b"x");
        batch.push(b"y");
        let dest: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        assert!(send_batch(a.as_fd(), Some(dest), &batch, 0, &mut Segmentation::Off).is_err());
    }

    fn batch_of(sizes: &[usize]) -> (DatagramBatch, Vec<Vec<u8>>) {
        let mut batch = DatagramBatch::default();
        let sent: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (0..n)
                    .map(|j| u8::try_from((i * 7 + j) % 251).unwrap())
                    .collect()
            })
            .collect();
        for d in &sent {
            batch.push(d);
        }
        (batch, sent)
    }

    /// Runs: equal sizes plus at most one shorter one, capped by segment
    /// count and bytes; a longer or empty datagram starts a new entry;
    /// with segmentation off every datagram is its own entry.
    #[test]
    fn a_run_is_equal_sizes_then_at_most_one_shorter() {
        let (b, _) = batch_of(&[10, 10, 10, 5, 10, 12, 12, 0, 3]);
        let on = Segmentation::On;
        assert_eq!(run_at(&b, 0, on), (4, Some(10)));
        assert_eq!(run_at(&b, 4, on), (5, None));
        assert_eq!(run_at(&b, 5, on), (7, Some(12)));
        assert_eq!(run_at(&b, 7, on), (8, None));
        assert_eq!(run_at(&b, 8, on), (9, None));
        assert_eq!(run_at(&b, 0, Segmentation::Off), (1, None));
        let (b, _) = batch_of(&[100; 70]);
        assert_eq!(run_at(&b, 0, on), (MAX_SEGMENTS, Some(100)));
        let (b, _) = batch_of(&[1400; 60]);
        assert_eq!(run_at(&b, 0, on), (46, Some(1400)), "46 * 1400 <= 65,000");
    }

    fn send_all(a: &UdpSocket, dest: SocketAddr, batch: &DatagramBatch, seg: &mut Segmentation) {
        let mut from = 0;
        while from < batch.len() {
            from += send_batch(a.as_fd(), Some(dest), batch, from, seg).unwrap();
        }
    }

    /// Receives `n` datagrams; returns them and the reads they took.
    fn recv_n(b: &UdpSocket, rx: &mut RecvBatch, n: usize) -> (Vec<Vec<u8>>, usize) {
        let (mut got, mut reads) = (Vec::new(), 0);
        while got.len() < n {
            let k = recv_batch(b.as_fd(), rx, usize::MAX).unwrap();
            reads += rx.reads();
            for i in 0..k {
                assert!(!rx.truncated(i));
                got.push(rx.get_mut(i).unwrap().0.to_vec());
            }
        }
        (got, reads)
    }

    /// Segmented sends reach a plain receiver as the same datagrams, in
    /// order; a receiver with coalesced receive gets them in fewer reads
    /// and splits them back into the same datagrams (IPv4 and IPv6).
    #[test]
    fn segmented_runs_arrive_as_the_same_datagrams() {
        // Small enough to sit in a default receive buffer all at once.
        let mut sizes = vec![200; 60];
        sizes.push(90);
        sizes.extend([150; 20]);
        sizes.extend([200, 250, 200]);
        let (batch, sent) = batch_of(&sizes);
        for (coalesce, addr) in [
            (false, "127.0.0.1:0"),
            (true, "127.0.0.1:0"),
            (true, "[::1]:0"),
        ] {
            let (a, b) = pair_on(addr);
            set_coalesced_receive(b.as_fd(), coalesce).unwrap();
            let mut seg = Segmentation::On;
            send_all(&a, b.local_addr().unwrap(), &batch, &mut seg);
            assert_eq!(seg, Segmentation::On, "loopback takes segmented sends");
            let mut rx = RecvBatch::new(SYSCALL_BATCH, 65_536);
            let (got, reads) = recv_n(&b, &mut rx, sent.len());
            assert_eq!(got, sent);
            if coalesce {
                assert!(reads < sent.len() / 2, "{reads} reads for {}", sent.len());
            } else {
                assert_eq!(reads, sent.len());
            }
        }
    }

    /// A socket that may not segment (no UDP checksums: the kernel refuses
    /// GSO with EINVAL) turns segmentation off and still sends everything.
    #[test]
    fn a_refused_segmentation_turns_off_and_sends_one_by_one() {
        let (a, b) = pair();
        let one: libc::c_int = 1;
        // SAFETY: a valid c_int option value of the size passed.
        let r = unsafe {
            libc::setsockopt(
                a.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const one).cast(),
                4,
            )
        };
        assert_eq!(r, 0);
        let (batch, sent) = batch_of(&[900; 20]);
        let mut seg = Segmentation::On;
        send_all(&a, b.local_addr().unwrap(), &batch, &mut seg);
        assert_eq!(seg, Segmentation::Off);
        let mut rx = RecvBatch::new(SYSCALL_BATCH, 2048);
        assert_eq!(recv_n(&b, &mut rx, sent.len()).0, sent);
    }

    /// A non-blocking socket with nothing waiting says WouldBlock.
    #[test]
    fn an_empty_non_blocking_socket_would_block() {
        let (_a, b) = pair();
        b.set_nonblocking(true).unwrap();
        let mut rx = RecvBatch::new(8, 64);
        let e = recv_batch(b.as_fd(), &mut rx, usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(rx.is_empty());
    }
}
