//! Thin, checked wrappers over the system calls the AF_PACKET backend makes.
//!
//! Every function maps the C convention (-1 and `errno`) to
//! [`std::io::Result`] in one place. All `unsafe` here is FFI.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// Maps a C return value of -1 to the thread's `errno`.
pub(in crate::port) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(in crate::port) fn socklen_of<T>() -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `ETH_P_ALL` in network byte order, as `socket(2)`/`bind(2)` want it.
pub(super) fn eth_p_all_be() -> u16 {
    // ETH_P_ALL is 0x0003; the constant is a c_int in libc.
    u16::try_from(libc::ETH_P_ALL).unwrap_or(3).to_be()
}

/// `socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, protocol)`.
pub(super) fn packet_socket(protocol_be: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain FFI call with integer arguments; no memory is shared.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol_be),
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2), is valid and is owned by
    // nobody else, so `OwnedFd` may take ownership and close it on drop.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A plain `AF_INET` datagram socket, only used as an ioctl handle.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain FFI call with integer arguments.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
///
/// `T` must be a plain C value type (integers or `#[repr(C)]` structs of
/// them) matching what the kernel expects for `name`.
pub(in crate::port) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = socklen_of::<T>()?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the
    // call; the kernel copies them (and anything they point to, which the
    // caller keeps alive across the call) and keeps no reference.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    })?;
    Ok(())
}

/// Attaches a classic BPF program that drops every frame (`ret #0`).
pub(super) fn attach_drop_all_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    const BPF_RET_K: u16 = 0x06;
    let mut insn = [libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: insn.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `insn` outlives it.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// `PACKET_FANOUT_CBPF` (linux/if_packet.h): the group runs a classic BPF
/// program to pick the member.
pub(super) const PACKET_FANOUT_CBPF: u32 = 6;
/// `PACKET_FANOUT_DATA`: sets that program.
const PACKET_FANOUT_DATA: libc::c_int = 22;

/// Sets the fanout group's steering program (`PACKET_FANOUT_DATA`); the
/// socket must have joined a `PACKET_FANOUT_CBPF` group.
pub(super) fn attach_fanout_program(
    fd: BorrowedFd<'_>,
    prog: &[crate::port::steer::Insn],
) -> io::Result<()> {
    attach_program(fd, libc::SOL_PACKET, PACKET_FANOUT_DATA, prog)
}

/// Sets (or replaces) the socket's filter (`SO_ATTACH_FILTER`).
pub(super) fn attach_filter(
    fd: BorrowedFd<'_>,
    prog: &[crate::port::steer::Insn],
) -> io::Result<()> {
    attach_program(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, prog)
}

fn attach_program(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    prog: &[crate::port::steer::Insn],
) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = prog
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(insns.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        filter: insns.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `insns` outlives it.
    setsockopt(fd, level, name, &fprog)
}

/// Removes the socket's BPF filter.
pub(super) fn detach_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    let zero: libc::c_int = 0;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &zero)
}

/// `getsockopt(SOL_PACKET, PACKET_STATISTICS)`: packets and drops since the
/// previous call (the kernel resets the counters on every read).
pub(super) fn packet_statistics(fd: BorrowedFd<'_>) -> io::Result<libc::tpacket_stats_v3> {
    let mut st = MaybeUninit::<libc::tpacket_stats_v3>::zeroed();
    let mut len = socklen_of::<libc::tpacket_stats_v3>()?;
    // SAFETY: `st` has room for `len` bytes and `len` is a valid in/out
    // length; the kernel writes at most `len` bytes.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            st.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    })?;
    // SAFETY: the struct was zero-initialised and is plain integers, so any
    // prefix written by the kernel leaves it fully initialised.
    Ok(unsafe { st.assume_init() })
}

/// `bind(2)` to an interface index for `protocol_be` (network order).
pub(super) fn bind_ll(
    fd: BorrowedFd<'_>,
    ifindex: libc::c_int,
    protocol_be: u16,
) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain integers; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
    sll.sll_protocol = protocol_be;
    sll.sll_ifindex = ifindex;
    let len = socklen_of::<libc::sockaddr_ll>()?;
    // SAFETY: `sll` is a valid sockaddr_ll of `len` bytes, read by the
    // kernel only during the call.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(())
}

/// `send(fd, NULL, 0, MSG_DONTWAIT)`: asks the kernel to transmit every
/// TX-ring slot marked `TP_STATUS_SEND_REQUEST`.
pub(super) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer is the documented way
    // to flush a PACKET_TX_RING; the kernel reads no user memory through it.
    let ret = unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Most frames one [`send_frames`] call hands to `sendmmsg(2)`.
pub(super) const SEND_BATCH: usize = 64;

/// Sends `frames[..]` (at most [`SEND_BATCH`]) with one `sendmmsg(2)`,
/// `MSG_DONTWAIT`, on a bound packet socket without a TX ring: each frame
/// is copied into a socket buffer by the kernel. Returns how many were
/// sent; an error with none sent is returned as `Err`.
pub(super) fn send_frames(fd: BorrowedFd<'_>, frames: &[&[u8]]) -> io::Result<usize> {
    let n = frames.len().min(SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: iovec and mmsghdr are plain C structs of integers and
    // pointers; all-zero (null pointers, zero lengths) is a valid value.
    let mut iov: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for ((v, m), f) in iov.iter_mut().zip(msgs.iter_mut()).zip(frames) {
        v.iov_base = f.as_ptr().cast_mut().cast::<libc::c_void>();
        v.iov_len = f.len();
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let count = libc::c_uint::try_from(n).unwrap_or(0);
    // SAFETY: `msgs[..n]` each point at one iovec in `iov`, which points
    // into a frame borrowed for the whole call; the kernel only reads them
    // (no msg_name: the socket is bound to its interface) and writes
    // `msg_len`, inside `msgs`.
    let ret =
        unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), count, libc::MSG_DONTWAIT) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(ret).unwrap_or(0))
    }
}

/// An `mmap(2)`ed region (a socket's rings, or anonymous memory shared
/// with the kernel as an XDP UMEM); unmapped on drop.
#[derive(Debug)]
pub(in crate::port) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; the
// struct only owns it (unmaps on drop) and hands out a raw pointer.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of the packet socket's rings, read-write, shared.
    pub(super) fn packet_rings(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mmap> {
        Mmap::new(len, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    }

    /// `len` bytes of zeroed anonymous memory, populated up front.
    pub(in crate::port) fn anonymous(len: usize) -> io::Result<Mmap> {
        Mmap::new(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    }

    /// `len` bytes of socket `fd`'s rings at byte offset `off`, shared,
    /// populated up front.
    pub(in crate::port) fn socket_ring(
        fd: BorrowedFd<'_>,
        len: usize,
        off: u64,
    ) -> io::Result<Mmap> {
        let off =
            libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        Mmap::new(
            len,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            off,
        )
    }

    fn new(len: usize, flags: libc::c_int, fd: libc::c_int, off: libc::off_t) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping at an address the kernel chooses, so no
        // existing Rust memory is aliased; for a socket the kernel checks
        // `len` and `off` against its rings. The result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        Ok(Mmap { ptr, len })
    }

    /// Start of the mapping.
    pub(in crate::port) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub(in crate::port) fn len(&self) -> usize {
        self.len
    }

    /// `len` bytes at `at`, if they lie inside the mapping.
    ///
    /// The caller must own that part of the mapping at the moment (an XDP
    /// frame the kernel handed over on the RX ring and that is not back on
    /// the fill ring yet), so the kernel does not write it meanwhile.
    pub(in crate::port) fn bytes(&self, at: u64, len: usize) -> Option<&[u8]> {
        let at = usize::try_from(at).ok()?;
        if at.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above) of a live mapping; the kernel
        // leaves the bytes alone while user space owns them (see above).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), len) })
    }

    /// Mutable [`Mmap::bytes`], for a frame about to go on a TX ring.
    pub(in crate::port) fn bytes_mut(&mut self, at: u64, len: usize) -> Option<&mut [u8]> {
        let at = usize::try_from(at).ok()?;
        if at.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: as in `bytes`, and `&mut self` makes the slice the only
        // reference into the mapping from this process.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), len) })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in
        // `new`, and nothing borrows it any more (the rings that point into
        // it are dropped with their owner before or with this).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast::<libc::c_void>(), self.len);
        }
    }
}

/// `if_nametoindex(3)`; `None` if there is no such interface or the name is
/// not a valid C string.
pub(in crate::port) fn if_index(name: &str) -> Option<libc::c_int> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the whole call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    libc::c_int::try_from(idx).ok().filter(|&i| i > 0)
}

/// The interface name as an `ifr_name` array; `None` if it does not fit.
fn ifr_name(name: &str) -> Option<[libc::c_char; libc::IFNAMSIZ]> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return None;
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = libc::c_char::from_ne_bytes([b]);
    }
    Some(out)
}

/// The hardware address of `name` via `SIOCGIFHWADDR`, if it is Ethernet.
pub(super) fn hw_address(name: &str) -> Option<[u8; 6]> {
    let ifr_name = ifr_name(name)?;
    let sock = ioctl_socket().ok()?;
    // SAFETY: ifreq is a C struct of integers and a union of C structs;
    // all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = ifr_name;
    // SAFETY: SIOCGIFHWADDR reads `ifr_name` and writes `ifr_hwaddr` inside
    // the ifreq we pass, which lives for the whole call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
    if ret < 0 {
        return None;
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds ifru_hwaddr.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, c) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = c.to_ne_bytes()[0];
    }
    Some(mac)
}

/// `struct ethtool_drvinfo` (linux/ethtool.h; not in the libc crate).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `ETHTOOL_GDRVINFO`.
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// The driver of interface `name` (`veth`, `virtio_net`, `ixgbe`...) via
/// the `SIOCETHTOOL` `ETHTOOL_GDRVINFO` ioctl, as `ethtool -i` shows it;
/// `None` when the interface or the ioctl is missing.
pub(in crate::port) fn driver_name(name: &str) -> Option<String> {
    let ifr_name = ifr_name(name)?;
    let sock = ioctl_socket().ok()?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: ifreq is a C struct of integers and a union of C structs;
    // all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = ifr_name;
    ifr.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast::<libc::c_char>();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO reads `ifr_name` and the
    // command word of `info`, and writes at most size_of::<EthtoolDrvinfo>()
    // bytes into `info`; both live for the whole call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if ret < 0 {
        return None;
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `ETHTOOL_GCHANNELS`.
const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;

/// The receive queues of interface `name` (receive-only plus combined
/// channels, as `ethtool -l` shows them); `None` when the interface or
/// the ioctl is missing (a driver without channels has one queue).
pub(in crate::port) fn rx_queues(name: &str) -> Option<u32> {
    let ifr_name = ifr_name(name)?;
    let sock = ioctl_socket().ok()?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    // SAFETY: ifreq is a C struct of integers and a union of C structs;
    // all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = ifr_name;
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast::<libc::c_char>();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS reads `ifr_name` and the
    // command word of `ch`, and writes at most size_of::<EthtoolChannels>()
    // bytes into `ch`; both live for the whole call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if ret < 0 {
        return None;
    }
    Some(ch.rx_count + ch.combined_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifr_name_bounds() {
        assert!(ifr_name("").is_none());
        assert!(ifr_name("0123456789abcdef").is_none()); // 16 bytes: no room for NUL
        assert!(ifr_name("a\0b").is_none());
        let n = ifr_name("veth0").unwrap();
        assert_eq!(n[4], libc::c_char::from_ne_bytes([b'0']));
        assert_eq!(n[5], 0);
    }

    #[test]
    fn loopback_is_not_ethernet_but_exists() {
        // Every network namespace has `lo`; it has no Ethernet address.
        assert!(if_index("lo").is_some());
        assert!(hw_address("lo").is_none());
        assert!(driver_name("ftfw-no-such-if").is_none());
        assert!(rx_queues("ftfw-no-such-if").is_none());
        assert!(if_index("ftfw-no-such-if").is_none());
    }
}
