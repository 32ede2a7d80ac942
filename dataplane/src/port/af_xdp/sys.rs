//! System calls of the AF_XDP backend: the eBPF map and program that send
//! an interface's frames to our sockets, and the XDP socket with its UMEM
//! and rings. Every function maps the C convention (-1 and `errno`) to
//! [`std::io::Result`]; all `unsafe` here is FFI or a mapping's lifetime.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub(super) use crate::port::af_packet::sys::Mmap;
use crate::port::af_packet::sys::{check, setsockopt, socklen_of};

/// `bpf(2)` commands (linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_MAP_TYPE_XSKMAP`: queue index to XDP socket.
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`: the attach type of an XDP link.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, in the kernel's receive path.
pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver.
pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// A `union bpf_attr`, zeroed, written field by field at the offsets of
/// linux/bpf.h. 128 bytes hold every command used here; the kernel
/// accepts a shorter or longer attribute as long as the rest is zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn name(&mut self, at: usize, name: &str) -> &mut Attr {
        let n = name.len().min(15);
        self.0[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a valid, writable 128-byte attribute for the whole
    // call; any pointers written into it (instructions, license, log, key,
    // value) point to memory the caller keeps alive across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            size_of::<Attr>() as libc::c_ulong,
        )
    };
    check(libc::c_int::try_from(ret).unwrap_or(-1))
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel to this thread, is valid
    // and owned by nobody else, so `OwnedFd` may close it on drop.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An `XSKMAP` with `entries` queue slots.
pub(super) fn xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4) // key: the queue index
        .u32(8, 4) // value: the socket's descriptor
        .u32(12, entries)
        .name(28, "ftfw_xsks");
    bpf(BPF_MAP_CREATE, &mut a).map(owned)
}

/// Sets `map[key] = xsk` (the socket that receives queue `key`).
pub(super) fn xskmap_set(map: BorrowedFd<'_>, key: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
    let value =
        u32::try_from(xsk.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut a = Attr::new();
    a.u32(0, u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX))
        .u64(8, std::ptr::addr_of!(key) as u64)
        .u64(16, std::ptr::addr_of!(value) as u64)
        .u64(24, 0); // BPF_ANY
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// One eBPF instruction: opcode, registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf | (src & 0xf) << 4) << 8
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

/// The XDP program: `return bpf_redirect_map(&map, ctx->rx_queue_index,
/// XDP_PASS)`. A frame of a queue with a socket goes to that socket; one
/// of a queue without (none bound yet, or closing) goes on to the kernel.
pub(super) fn redirect_program(map: BorrowedFd<'_>) -> [u64; 6] {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const PSEUDO_MAP_FD: u8 = 1;
    const RX_QUEUE_INDEX: i16 = 16; // offsetof(struct xdp_md, rx_queue_index)
    const REDIRECT_MAP: i32 = 51; // BPF_FUNC_redirect_map
    const XDP_PASS: i32 = 2;
    [
        insn(LDX_W, 2, 1, RX_QUEUE_INDEX, 0),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map.as_raw_fd()),
        0,
        insn(MOV64_K, 3, 0, 0, XDP_PASS),
        insn(CALL, 0, 0, 0, REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// Loads `prog` as an XDP program. A refusal carries the verifier's log.
pub(super) fn load_xdp(prog: &[u64]) -> io::Result<OwnedFd> {
    const LICENSE: &[u8] = b"Dual MIT/GPL\0";
    let mut log = vec![0u8; 4096];
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, u32::try_from(prog.len()).unwrap_or(0))
        .u64(8, prog.as_ptr() as u64)
        .u64(16, LICENSE.as_ptr() as u64)
        .u32(24, 1) // log level
        .u32(28, u32::try_from(log.len()).unwrap_or(0))
        .u64(32, log.as_mut_ptr() as u64)
        .name(48, "ftfw_xsk")
        .u32(68, BPF_XDP);
    bpf(BPF_PROG_LOAD, &mut a).map(owned).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        if last.is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e}; verifier: {last}"))
        }
    })
}

/// Attaches `prog` to interface `ifindex` through a BPF link (`flags`:
/// [`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]). The program stays
/// attached while the link's descriptor is open, so it goes with the
/// process however that ends.
pub(super) fn link_xdp(prog: BorrowedFd<'_>, ifindex: i32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX))
        .u32(4, u32::try_from(ifindex).unwrap_or(0))
        .u32(8, BPF_XDP)
        .u32(12, flags);
    bpf(BPF_LINK_CREATE, &mut a).map(owned)
}

/// `socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)`.
pub(super) fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain FFI call with integer arguments.
    let fd = check(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    Ok(owned(fd))
}

/// Registers `umem` as the socket's UMEM, cut in `chunk`-byte frames.
pub(super) fn register_umem(fd: BorrowedFd<'_>, umem: &Mmap, chunk: u32) -> io::Result<()> {
    let reg = libc::xdp_umem_reg {
        addr: umem.as_ptr() as u64,
        len: umem.len() as u64,
        chunk_size: chunk,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    // The kernel pins the pages; `umem` outlives the socket (see the port).
    setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
}

/// Sets the size of ring `which` (`XDP_RX_RING`, `XDP_UMEM_FILL_RING`...).
pub(super) fn ring_size(fd: BorrowedFd<'_>, which: libc::c_int, entries: u32) -> io::Result<()> {
    setsockopt(fd, libc::SOL_XDP, which, &entries)
}

/// `getsockopt(SOL_XDP, XDP_MMAP_OFFSETS)`: where each ring's producer,
/// consumer, flags and descriptors sit in its mapping.
pub(super) fn mmap_offsets(fd: BorrowedFd<'_>) -> io::Result<libc::xdp_mmap_offsets> {
    getsockopt_xdp(fd, libc::XDP_MMAP_OFFSETS)
}

/// `getsockopt(SOL_XDP, XDP_STATISTICS)`: counters since the socket opened.
pub(super) fn statistics(fd: BorrowedFd<'_>) -> io::Result<libc::xdp_statistics> {
    getsockopt_xdp(fd, libc::XDP_STATISTICS)
}

/// `T` must be a C struct of integers the kernel fills for `name`.
fn getsockopt_xdp<T: Copy>(fd: BorrowedFd<'_>, name: libc::c_int) -> io::Result<T> {
    let mut v = MaybeUninit::<T>::zeroed();
    let mut len = socklen_of::<T>()?;
    // SAFETY: `v` has room for `len` bytes and `len` is a valid in/out
    // length; the kernel writes at most `len` bytes.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            v.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    })?;
    // SAFETY: zero-initialised plain integers; any prefix the kernel wrote
    // leaves the value fully initialised.
    Ok(unsafe { v.assume_init() })
}

/// Binds the socket to queue `queue` of `ifindex` in copy mode, with the
/// need-wakeup flags.
pub(super) fn bind_xdp(fd: BorrowedFd<'_>, ifindex: i32, queue: u32) -> io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: u16::try_from(libc::AF_XDP).unwrap_or(44),
        sxdp_flags: libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP,
        sxdp_ifindex: u32::try_from(ifindex).unwrap_or(0),
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    let len = socklen_of::<libc::sockaddr_xdp>()?;
    // SAFETY: `sa` is a valid sockaddr_xdp of `len` bytes, read by the
    // kernel only during the call.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_xdp).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(())
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: the kernel sends what the TX ring
/// holds (copy mode transmits only inside this call, a batch at a time).
/// `EAGAIN`/`EBUSY`/`ENOBUFS` mean frames are left for the next kick.
pub(super) fn kick(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no buffer is passed (NULL, length 0), nor an address.
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`: wakes the kernel to refill from
/// the fill ring when it said it needs a wake-up.
pub(super) fn wake_rx(fd: BorrowedFd<'_>) {
    // SAFETY: no buffer is passed (NULL, length 0), nor an address.
    let _ = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}
