//! Packet buffers: a mempool of mbufs, an owned [`Mbuf`] that frees itself
//! on drop, and a fixed-size [`MbufBurst`] that owns up to
//! [`BURST`](crate::port::BURST) of them.

use std::ffi::{c_uint, CString};
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::ffi::{self, DpdkError};
use crate::port::BURST;

/// A pool of packet buffers in DPDK memory (hugepages unless EAL runs with
/// `--no-huge`), shared by the queues of one port.
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
    name: String,
    size: u32,
}

// SAFETY: a mempool created by rte_pktmbuf_pool_create uses the default
// multi-producer/multi-consumer ring ops, so get and put from any thread are
// safe; the struct itself is only a handle.
unsafe impl Send for Mempool {}
// SAFETY: as for Send: every operation through &Mempool is thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with a per-lcore cache of `cache`
    /// and `data_room` bytes of buffer (headroom included) each, on NUMA
    /// `socket` (`None`: any).
    pub fn new(
        name: &str,
        size: u32,
        cache: u32,
        data_room: u16,
        socket: Option<i32>,
    ) -> Result<Mempool, DpdkError> {
        super::eal::require()?;
        let cname = CString::new(name)
            .map_err(|_| DpdkError::Usage(format!("mempool name {name:?} contains NUL")))?;
        let socket = socket.unwrap_or(sys::SOCKET_ID_ANY);
        // SAFETY: EAL is initialised; cname is NUL-terminated and copied by
        // DPDK; the other arguments are plain values it validates.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, data_room, socket)
        };
        let raw = ffi::non_null("rte_pktmbuf_pool_create", p)?;
        Ok(Mempool {
            raw,
            name: name.to_string(),
            size,
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs in the pool.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Mbufs free (in the pool and in the lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: raw is a live mempool; counting is thread-safe.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs allocated and not yet freed (held by us, a driver or a ring).
    pub fn in_use(&self) -> u32 {
        // SAFETY: raw is a live mempool; counting is thread-safe.
        unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    pub(super) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// One mbuf, empty, or `None` if the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: raw is a live mempool of packet mbufs.
        let m = unsafe { sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(|raw| Mbuf { raw })
    }

    /// Appends `n` empty mbufs to `burst`, all or none: returns false (and
    /// leaves `burst` as it was) if the pool cannot supply them all or the
    /// burst has no room.
    pub fn alloc_bulk(&self, burst: &mut MbufBurst, n: usize) -> bool {
        if n > BURST - burst.len {
            return false;
        }
        let Ok(count) = c_uint::try_from(n) else {
            return false;
        };
        let slots = &mut burst.ptrs[burst.len..burst.len + n];
        // SAFETY: slots has room for n pointers; on success DPDK writes n
        // valid mbufs there and they become owned by the burst.
        let r =
            unsafe { sys::rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), slots.as_mut_ptr(), count) };
        if r == 0 {
            burst.len += n;
            true
        } else {
            false
        }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use == 0 {
            // SAFETY: no mbuf of the pool exists (in_use is 0, and every live
            // Mbuf counts as in use), the device that used it is closed (the
            // device owns the pool and closes first), and nothing else holds
            // the pointer.
            unsafe { sys::rte_mempool_free(self.raw.as_ptr()) };
        } else {
            // Freeing now would leave those mbufs dangling: keep the memory.
            tracing::warn!(
                pool = %self.name,
                in_use,
                "mempool still has mbufs out; not freed"
            );
        }
    }
}

/// One packet buffer, owned: freed back to its pool on drop, or handed to
/// the driver by transmit.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf; freeing it from another
// thread goes to its pool, whose operations are thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid packet mbuf that nothing else owns or frees.
    pub unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership without freeing.
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    fn m(&self) -> &sys::rte_mbuf {
        // SAFETY: raw is a valid mbuf we own exclusively.
        unsafe { self.raw.as_ref() }
    }

    /// Length of the whole packet (all segments).
    pub fn pkt_len(&self) -> usize {
        self.m().pkt_len as usize
    }

    /// Segments in the packet.
    pub fn segments(&self) -> u16 {
        self.m().nb_segs
    }

    /// Whether the NIC verified the L4 checksum and found it good
    /// (`RTE_MBUF_F_RX_L4_CKSUM_GOOD` in `ol_flags`; a NIC that did not
    /// look reports UNKNOWN, which is not good).
    pub fn l4_csum_good(&self) -> bool {
        /// `RTE_MBUF_F_RX_L4_CKSUM_MASK` (rte_mbuf_core.h).
        const MASK: u64 = (1 << 3) | (1 << 8);
        /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`.
        const GOOD: u64 = 1 << 8;
        self.m().ol_flags & MASK == GOOD
    }

    /// The first segment's data.
    pub fn data(&self) -> &[u8] {
        seg_data(self.m())
    }

    /// Whether the mbuf's buffer is ours alone: one reference, not
    /// attached to another mbuf's buffer or to external memory. Only then
    /// may its data be written.
    fn exclusive(&self) -> bool {
        /// `RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL` (rte_mbuf_core.h).
        const ATTACHED: u64 = (1 << 62) | (1 << 61);
        let m = self.m();
        m.refcnt == 1 && m.ol_flags & ATTACHED == 0
    }

    /// The first segment's data, to rewrite in place; empty when the
    /// buffer is shared (see [`Mbuf::lendable`]).
    pub fn data_mut(&mut self) -> &mut [u8] {
        if !self.exclusive() {
            return &mut [];
        }
        // SAFETY: we own the mbuf and its buffer is referenced by no one
        // else (checked just above); buf_addr + data_off points at data_len
        // initialised bytes inside its buffer, borrowed mutably through
        // `self` for the slice's lifetime.
        unsafe {
            let m = self.raw.as_mut();
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Cuts a one-segment packet whose buffer is ours alone to `len`
    /// bytes (no effect if it is not longer, has more segments or is
    /// shared).
    pub fn truncate(&mut self, len: usize) {
        if self.segments() != 1 || !self.exclusive() || len >= usize::from(self.m().data_len) {
            return;
        }
        // SAFETY: we own the mbuf alone (checked above); shortening the
        // only segment's length keeps data_off + data_len inside the
        // buffer.
        let m = unsafe { self.raw.as_mut() };
        m.data_len = u16::try_from(len).unwrap_or(0);
        m.pkt_len = u32::from(m.data_len);
    }

    /// Whether a received mbuf can carry its frame through the worker and
    /// out again without a copy: one segment of at most `max` bytes, a
    /// buffer of its own (not attached to another mbuf's or to external
    /// memory), referenced only by us.
    pub fn lendable(&self, max: usize) -> bool {
        let m = self.m();
        m.nb_segs == 1 && self.exclusive() && m.pkt_len as usize <= max
    }

    /// Readies a received mbuf for transmit: forgets its receive offload
    /// flags (none of ours asks the device for a transmit offload).
    pub fn reset_offloads(&mut self) {
        // SAFETY: we own the mbuf; ol_flags is a plain field. The attach
        // bits are clear (a lent mbuf passed `lendable`).
        unsafe { self.raw.as_mut().ol_flags = 0 };
    }

    /// Bytes that can still be appended to the (single-segment) mbuf.
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        usize::from(m.buf_len)
            .saturating_sub(usize::from(m.data_off))
            .saturating_sub(usize::from(m.data_len))
    }

    /// Appends `bytes` to an mbuf of one segment whose buffer is ours
    /// alone; false (and unchanged) if they do not fit or it is shared.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        if self.segments() != 1 || !self.exclusive() || bytes.len() > self.tailroom() {
            return false;
        }
        let Ok(add) = u16::try_from(bytes.len()) else {
            return false;
        };
        // SAFETY: we own the mbuf and its buffer alone (checked above); the
        // region from data_off + data_len of length bytes.len() is inside
        // the buffer (tailroom checked above) and does not overlap `bytes`
        // (a Rust slice we were lent, not the mbuf's tail, which nothing
        // else references).
        unsafe {
            let m = self.raw.as_mut();
            let at = m
                .buf_addr
                .cast::<u8>()
                .add(usize::from(m.data_off) + usize::from(m.data_len));
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len());
            m.data_len += add;
            m.pkt_len += u32::from(add);
        }
        true
    }

    /// Copies the packet (all segments) into `out`, at most `cap` bytes;
    /// returns whether it fit. `out` does not allocate if its capacity is
    /// at least `cap`.
    pub fn copy_into(&self, out: &mut Vec<u8>, cap: usize) -> bool {
        out.clear();
        let mut seg: *const sys::rte_mbuf = self.raw.as_ptr();
        while !seg.is_null() {
            // SAFETY: seg is this packet's first segment or a `next` link of
            // it; the chain belongs to the mbuf we own.
            let s = unsafe { &*seg };
            let d = seg_data(s);
            let room = cap - out.len();
            out.extend_from_slice(&d[..d.len().min(room)]);
            if d.len() > room {
                return false;
            }
            seg = s.next;
        }
        true
    }
}

fn seg_data(m: &sys::rte_mbuf) -> &[u8] {
    // SAFETY: for a valid mbuf segment, buf_addr + data_off points at
    // data_len initialised bytes inside its buffer, which lives as long as
    // the segment (borrowed through `m`).
    unsafe {
        std::slice::from_raw_parts(
            m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
            usize::from(m.data_len),
        )
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed once, here.
        unsafe { sys::rte_pktmbuf_free(self.raw.as_ptr()) };
    }
}

/// Up to [`BURST`] owned mbufs in a fixed array: what receive fills and
/// transmit drains. Mbufs left in it are freed (in bulk) by [`clear`]
/// or on drop.
///
/// [`clear`]: MbufBurst::clear
#[derive(Debug)]
pub struct MbufBurst {
    ptrs: [*mut sys::rte_mbuf; BURST],
    len: usize,
}

// SAFETY: the burst owns its mbufs exclusively (see Mbuf's Send).
unsafe impl Send for MbufBurst {}

impl Default for MbufBurst {
    fn default() -> Self {
        MbufBurst::new()
    }
}

impl MbufBurst {
    /// An empty burst.
    pub fn new() -> MbufBurst {
        MbufBurst {
            ptrs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }

    /// Mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub fn room(&self) -> usize {
        BURST - self.len
    }

    /// Adds an mbuf; gives it back if the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last mbuf.
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        let p = std::mem::replace(&mut self.ptrs[self.len], std::ptr::null_mut());
        // SAFETY: every pointer in [..len] is a valid mbuf the burst owns;
        // this one leaves the burst, so ownership moves to the Mbuf.
        NonNull::new(p).map(|raw| unsafe { Mbuf::from_raw(raw) })
    }

    /// Borrows mbuf `i`.
    pub fn get(&self, i: usize) -> Option<&Mbuf> {
        if i >= self.len {
            return None;
        }
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, which has
        // the layout of *mut rte_mbuf;
        // ptrs[i] is a valid non-null mbuf the burst owns, and the reference
        // lives no longer than &self, so it is neither freed nor moved.
        Some(unsafe { &*std::ptr::from_ref(&self.ptrs[i]).cast::<Mbuf>() })
    }

    /// Borrows mbuf `i` mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Mbuf> {
        if i >= self.len {
            return None;
        }
        // SAFETY: as in `get`, with exclusive access through &mut self.
        Some(unsafe { &mut *std::ptr::from_mut(&mut self.ptrs[i]).cast::<Mbuf>() })
    }

    /// Takes every mbuf held, in order, leaving the burst empty.
    pub fn drain(&mut self) -> impl Iterator<Item = Mbuf> + '_ {
        let n = std::mem::replace(&mut self.len, 0);
        self.ptrs[..n].iter_mut().filter_map(|p| {
            let raw = std::mem::replace(p, std::ptr::null_mut());
            // SAFETY: ptrs[..n] were valid mbufs the burst owned; len is
            // already 0, so each leaves the burst exactly once, here (one
            // not taken because the iterator is dropped early is leaked,
            // never freed twice).
            NonNull::new(raw).map(|raw| unsafe { Mbuf::from_raw(raw) })
        })
    }

    /// Frees every mbuf held (one bulk call).
    pub fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = c_uint::try_from(self.len).unwrap_or(0);
        // SAFETY: ptrs[..len] are valid mbufs the burst owns; they are freed
        // once, here, and forgotten by setting len to 0.
        unsafe { sys::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), n) };
        self.len = 0;
    }

    /// Raw access for receive: the free slots, to be filled by the driver,
    /// and a function to record how many were.
    pub(super) fn spare_ptr(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        let len = self.len;
        // SAFETY: len <= BURST, so the pointer is within (or one past) ptrs.
        (unsafe { self.ptrs.as_mut_ptr().add(len) }, BURST - len)
    }

    /// Records that the driver filled `n` more slots.
    ///
    /// # Safety
    /// The `n` slots after the current ones must hold valid mbufs that the
    /// burst now owns.
    pub(super) unsafe fn filled(&mut self, n: usize) {
        debug_assert!(self.len + n <= BURST);
        self.len = (self.len + n).min(BURST);
    }

    /// Raw access for transmit: the held mbufs.
    pub(super) fn held_ptr(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        (self.ptrs.as_mut_ptr(), self.len)
    }

    /// Records that the driver took the first `n` mbufs; the rest move to
    /// the front.
    ///
    /// # Safety
    /// The driver must have taken ownership of exactly the first `n`.
    pub(super) unsafe fn consumed(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl Drop for MbufBurst {
    fn drop(&mut self) {
        self.clear();
    }
}
