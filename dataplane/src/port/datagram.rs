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

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::net::addr::SocketAddrArg;
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};

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

/// Sends datagrams `from..` of `batch` on `fd` (to `dest`, or to the
/// socket's connected peer when `None`), at most [`SYSCALL_BATCH`] in one
/// `sendmmsg`. Returns how many were sent, at least one when `from` is
/// below the batch's length (0 when nothing was left), or the error of
/// datagram `from`, which was not sent (`WouldBlock`: the socket buffer is
/// full).
pub fn send_batch(
    fd: BorrowedFd<'_>,
    dest: Option<SocketAddr>,
    batch: &DatagramBatch,
    from: usize,
) -> io::Result<usize> {
    let n = batch.len().saturating_sub(from).min(SYSCALL_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let iovs: Vec<[IoSlice<'_>; 1]> = (from..from + n)
        .map(|i| [IoSlice::new(batch.get(i).unwrap_or_default())])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        (0..n).map(|_| SendAncillaryBuffer::default()).collect();
    let addr = dest.map(|d| d.as_any());
    let mut msgs: Vec<MMsgHdr<'_>> = iovs
        .iter()
        .zip(controls.iter_mut())
        .map(|(iov, ctl)| match &addr {
            Some(a) => MMsgHdr::new_with_addr(a, iov, ctl),
            None => MMsgHdr::new(iov, ctl),
        })
        .collect();
    loop {
        match sendmmsg(fd, &mut msgs, SendFlags::DONTWAIT) {
            Ok(sent) => return Ok(sent),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Buffers for up to [`SYSCALL_BATCH`] received datagrams.
pub struct RecvBatch {
    /// `slots` buffers of `slot` bytes, back to back.
    bufs: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    addrs: Vec<Option<SocketAddr>>,
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
            count: 0,
        }
    }

    /// Datagrams the last [`recv_batch`] received.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last [`recv_batch`] received nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last receive, writable (authenticated sync
    /// opens it in place), with its source address (`None` for an
    /// address family other than IPv4 and IPv6).
    pub fn get_mut(&mut self, i: usize) -> Option<(&mut [u8], Option<SocketAddr>)> {
        if i >= self.count {
            return None;
        }
        let start = i * self.slot;
        let len = self.lens[i].min(self.slot);
        let addr = self.addrs[i];
        Some((self.bufs.get_mut(start..start + len)?, addr))
    }

    /// Whether datagram `i` was longer than a slot (its tail is lost).
    pub fn truncated(&self, i: usize) -> bool {
        i < self.count && self.truncated[i]
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

/// Receives up to `max` datagrams (at most the batch's number of slots)
/// waiting on `fd` with one `recvmmsg` (`MSG_WAITFORONE`: a blocking
/// socket waits for the first, as `recv` would, then takes only what is
/// already there). Returns how many arrived (also [`RecvBatch::len`]);
/// `WouldBlock` when nothing waits on a non-blocking socket.
pub fn recv_batch(fd: BorrowedFd<'_>, batch: &mut RecvBatch, max: usize) -> io::Result<usize> {
    batch.count = 0;
    let slots = batch.lens.len().min(max);
    if slots == 0 {
        return Ok(0);
    }
    let slot = batch.slot;
    // SAFETY: sockaddr_storage is plain integers; all-zero is valid.
    let mut names: [libc::sockaddr_storage; SYSCALL_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [MaybeUninit<libc::iovec>; SYSCALL_BATCH] =
        [MaybeUninit::uninit(); SYSCALL_BATCH];
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
    }
    let got = loop {
        // SAFETY: `hdrs[..slots]` are initialised above: each points to one
        // iovec over its own `slot`-byte chunk of `batch.bufs` and to its
        // own sockaddr_storage, all of which outlive the call and are not
        // otherwise borrowed during it; the kernel writes at most
        // `iov_len` bytes into each chunk, at most `msg_namelen` bytes of
        // address, and the `msg_len`/`msg_flags`/`msg_namelen` fields.
        // A null timeout is allowed.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                // At most SYSCALL_BATCH.
                libc::c_uint::try_from(slots).unwrap_or(1),
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    for (i, h) in hdrs.iter().enumerate().take(got.min(slots)) {
        batch.lens[i] = h.msg_len as usize;
        batch.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        batch.addrs[i] = to_socket_addr(&names[i], h.msg_hdr.msg_namelen);
    }
    batch.count = got.min(slots);
    Ok(batch.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
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
            let n = send_batch(a.as_fd(), Some(dest), &batch, from).unwrap();
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
            from += send_batch(a.as_fd(), None, &batch, from).unwrap();
        }
        assert_eq!(send_batch(a.as_fd(), None, &batch, from).unwrap(), 0);
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
        assert!(send_batch(a.as_fd(), Some(dest), &batch, 0).is_err());
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
