//! The TPACKET_V3 receive and transmit rings inside the socket's mapping.
//!
//! Ownership protocol (Documentation/networking/packet_mmap.rst): a status
//! word in shared memory says who owns a block (RX) or a slot (TX). The
//! side that owns it may read and write the rest freely; it hands it over
//! by storing the new status with release ordering, and the other side
//! reads the status with acquire ordering before touching the contents.
//!
//! RX ring: `block_count` blocks of `block_size` bytes, each opening with a
//! `tpacket_block_desc`; once the kernel retires a block (full, or after the
//! block timeout) its `block_status` has `TP_STATUS_USER` and it holds
//! `num_pkts` frames chained by `tp_next_offset`, each behind a
//! `tpacket3_hdr`. We return it by storing `TP_STATUS_KERNEL`.
//!
//! TX ring: fixed-size slots, `frame_size` bytes each, `block_size /
//! frame_size` per block (no block header), each opening with a
//! `tpacket3_hdr` followed by the frame at [`TX_DATA_OFFSET`]. The kernel
//! walks the slots in order from index 0, so we fill them in order too.

use std::mem::{offset_of, size_of};
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the frame starts inside a TX slot: the kernel uses
/// `tp_hdrlen - sizeof(struct sockaddr_ll)` when `PACKET_TX_HAS_OFF` is off.
pub(super) const TX_DATA_OFFSET: usize = libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>();

/// Offset of `bh1.block_status` in `tpacket_block_desc`.
const BLOCK_STATUS_OFFSET: usize = offset_of!(libc::tpacket_block_desc, hdr);

/// Size of the fixed part of a frame header that we read.
const HDR3_LEN: usize = size_of::<libc::tpacket3_hdr>();

/// One received frame, still in the ring.
#[derive(Debug)]
pub(super) struct RxFrame<'a> {
    /// The captured bytes (`tp_snaplen` of them), starting at the MAC header.
    pub(super) data: &'a [u8],
    /// Length on the wire (`tp_len`); larger than `data.len()` if the ring
    /// truncated the frame.
    pub(super) wire_len: usize,
    /// `tp_status` of the frame (`TP_STATUS_CSUMNOTREADY`, `_VLAN_VALID`...).
    pub(super) status: u32,
    /// The VLAN tag the kernel stripped, if any: (TPID, TCI).
    pub(super) vlan: Option<(u16, u16)>,
}

/// Cursor over the RX ring.
#[derive(Debug)]
pub(super) struct RxRing {
    base: *mut u8,
    block_size: usize,
    block_count: usize,
    /// Block the cursor is in (or waits for).
    block: usize,
    /// Whether we own `block` and are walking it.
    open: bool,
    /// Frames of the open block not yet consumed.
    left: u32,
    /// Offset of the next frame header inside the open block.
    offset: usize,
    /// Set when a block arrived with `TP_STATUS_LOSING`: the kernel dropped
    /// frames since the statistics were last read.
    pub(super) losing: bool,
    /// Frames skipped because their ring header was inconsistent.
    pub(super) corrupt: u64,
}

// SAFETY: the ring only points into a mapping owned by the same port; it is
// used by one thread at a time (the port is `Send`, not `Sync`), and the
// kernel side synchronises only through the status words.
unsafe impl Send for RxRing {}

impl RxRing {
    /// # Safety
    /// `base` must point to `block_size * block_count` bytes of a live
    /// PACKET_RX_RING mapping (TPACKET_V3 with those parameters) that
    /// outlives the returned ring, and nothing else may walk it.
    pub(super) unsafe fn new(base: *mut u8, block_size: usize, block_count: usize) -> RxRing {
        RxRing {
            base,
            block_size,
            block_count,
            block: 0,
            open: false,
            left: 0,
            offset: 0,
            losing: false,
            corrupt: 0,
        }
    }

    fn block_ptr(&self, i: usize) -> *mut u8 {
        // In bounds: i < block_count, so the offset stays in the mapping.
        self.base.wrapping_add(i * self.block_size)
    }

    fn block_status(&self, i: usize) -> &AtomicU32 {
        let p = self
            .block_ptr(i)
            .wrapping_add(BLOCK_STATUS_OFFSET)
            .cast::<u32>();
        // SAFETY: `p` is inside block `i` of the live mapping, 4-byte
        // aligned (blocks are page aligned, the offset is 8), and the word is
        // only ever accessed atomically by us and by the kernel.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// Whether a frame is ready without asking the kernel.
    pub(super) fn has_frames(&self) -> bool {
        self.open
            || self.block_status(self.block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Gives the current block back to the kernel and moves to the next.
    fn release(&mut self) {
        self.block_status(self.block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.open = false;
        self.left = 0;
        self.block = (self.block + 1) % self.block_count;
    }

    /// Opens the current block if the kernel has retired it to us.
    fn open_block(&mut self) -> bool {
        // At most block_count empty blocks are skipped per call.
        for _ in 0..self.block_count {
            let status = self.block_status(self.block).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                return false;
            }
            if status & libc::TP_STATUS_LOSING != 0 {
                self.losing = true;
            }
            let desc = self
                .block_ptr(self.block)
                .cast::<libc::tpacket_block_desc>();
            // SAFETY: we own the block (status USER, read with acquire), the
            // descriptor lies at its start, and the union's only variant is
            // bh1; reading plain integers through raw places is sound.
            let (num, first) = unsafe {
                (
                    addr_of!((*desc).hdr.bh1.num_pkts).read(),
                    addr_of!((*desc).hdr.bh1.offset_to_first_pkt).read(),
                )
            };
            if num == 0 {
                self.release();
                continue;
            }
            self.open = true;
            self.left = num;
            self.offset = usize::try_from(first).unwrap_or(usize::MAX);
            return true;
        }
        false
    }

    /// The next frame, or `None` if the kernel has none for us. The frame
    /// stays valid until [`RxRing::advance`].
    pub(super) fn peek(&mut self) -> Option<RxFrame<'_>> {
        loop {
            if !self.open && !self.open_block() {
                return None;
            }
            match self.frame_at(self.offset) {
                Some(hdr) => {
                    let block = self.block_ptr(self.block);
                    // SAFETY: `frame_at` checked that `hdr.mac + snaplen`
                    // lies inside the block, which we own until `release`;
                    // the kernel does not write to it while we own it.
                    let data = unsafe {
                        std::slice::from_raw_parts(block.add(self.offset + hdr.mac), hdr.snaplen)
                    };
                    return Some(RxFrame {
                        data,
                        wire_len: hdr.len,
                        status: hdr.status,
                        vlan: hdr.vlan,
                    });
                }
                None => {
                    // Inconsistent header: drop the rest of the block.
                    self.corrupt += u64::from(self.left);
                    self.release();
                }
            }
        }
    }

    /// Consumes the frame [`RxRing::peek`] returned; returns the block to
    /// the kernel after its last frame.
    pub(super) fn advance(&mut self) {
        if !self.open {
            return;
        }
        self.left -= 1;
        if self.left == 0 {
            self.release();
            return;
        }
        let next = self.frame_at(self.offset).map_or(0, |h| h.next);
        if next == 0 {
            // More frames announced but no chain: the block is inconsistent.
            self.corrupt += u64::from(self.left);
            self.release();
        } else {
            self.offset += next;
        }
    }

    /// Reads and bounds-checks the frame header at `offset` in the open block.
    fn frame_at(&self, offset: usize) -> Option<Hdr> {
        let end = offset.checked_add(HDR3_LEN)?;
        if end > self.block_size || offset & 3 != 0 {
            return None;
        }
        let h = self
            .block_ptr(self.block)
            .wrapping_add(offset)
            .cast::<libc::tpacket3_hdr>();
        // SAFETY: the header lies inside the block we own (checked above),
        // 4-byte aligned (checked; the kernel aligns to 16), and is plain
        // integers written by the kernel before it released the block.
        let (next, snaplen, len, status, mac, tci, tpid) = unsafe {
            (
                addr_of!((*h).tp_next_offset).read(),
                addr_of!((*h).tp_snaplen).read(),
                addr_of!((*h).tp_len).read(),
                addr_of!((*h).tp_status).read(),
                addr_of!((*h).tp_mac).read(),
                addr_of!((*h).hv1.tp_vlan_tci).read(),
                addr_of!((*h).hv1.tp_vlan_tpid).read(),
            )
        };
        let snaplen = usize::try_from(snaplen).ok()?;
        let mac = usize::from(mac);
        let data_end = offset.checked_add(mac)?.checked_add(snaplen)?;
        if data_end > self.block_size || mac < HDR3_LEN {
            return None;
        }
        let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                tpid
            } else {
                0x8100
            };
            // The TCI is 16 bits carried in a u32 field.
            (tpid, u16::try_from(tci & 0xffff).unwrap_or(0))
        });
        Some(Hdr {
            next: usize::try_from(next).ok()?,
            snaplen,
            len: usize::try_from(len).ok()?,
            status,
            mac,
            vlan,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Hdr {
    next: usize,
    snaplen: usize,
    len: usize,
    status: u32,
    mac: usize,
    vlan: Option<(u16, u16)>,
}

/// Result of offering a frame to the TX ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Push {
    /// Copied into a slot and marked for sending.
    Queued,
    /// The next slot is still owned by the kernel.
    Full,
    /// The frame cannot be sent (shorter than an Ethernet header or larger
    /// than a slot); nothing was written.
    Invalid,
}

/// Producer side of the TX ring.
#[derive(Debug)]
pub(super) struct TxRing {
    base: *mut u8,
    block_size: usize,
    frame_size: usize,
    frames_per_block: usize,
    frame_count: usize,
    /// Next slot to fill; mirrors the kernel's `tx_ring.head`.
    head: usize,
    /// Slots found in `TP_STATUS_WRONG_FORMAT` and reclaimed.
    pub(super) wrong_format: u64,
}

// SAFETY: as for `RxRing`: points into a mapping owned by the same port,
// used by one thread at a time, synchronised with the kernel through the
// status words only.
unsafe impl Send for TxRing {}

impl TxRing {
    /// # Safety
    /// `base` must point to `block_size * block_count` bytes of a live
    /// PACKET_TX_RING mapping (TPACKET_V3, `frame_size` slots) that outlives
    /// the returned ring, and nothing else may fill it.
    pub(super) unsafe fn new(
        base: *mut u8,
        block_size: usize,
        block_count: usize,
        frame_size: usize,
    ) -> TxRing {
        let frames_per_block = block_size / frame_size;
        TxRing {
            base,
            block_size,
            frame_size,
            frames_per_block,
            frame_count: frames_per_block * block_count,
            head: 0,
            wrong_format: 0,
        }
    }

    /// Largest frame a slot holds.
    pub(super) fn max_frame(&self) -> usize {
        self.frame_size - TX_DATA_OFFSET
    }

    fn slot(&self, i: usize) -> *mut u8 {
        let (block, within) = (i / self.frames_per_block, i % self.frames_per_block);
        // In bounds: i < frame_count, so block < block_count and the slot
        // ends within its block.
        self.base
            .wrapping_add(block * self.block_size + within * self.frame_size)
    }

    fn status(&self, slot: *mut u8) -> &AtomicU32 {
        let p = slot
            .wrapping_add(offset_of!(libc::tpacket3_hdr, tp_status))
            .cast::<u32>();
        // SAFETY: `p` is the tp_status word of a slot inside the live
        // mapping, 4-byte aligned (slots are 16-byte aligned), and only
        // accessed atomically by us and by the kernel.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// Copies `frame` into the next free slot and marks it for sending.
    /// The caller kicks the kernel once per burst.
    pub(super) fn push(&mut self, frame: &[u8]) -> Push {
        let slot = self.slot(self.head);
        match self.status(slot).load(Ordering::Acquire) {
            libc::TP_STATUS_AVAILABLE => {}
            libc::TP_STATUS_WRONG_FORMAT => {
                // Only without PACKET_LOSS; reclaim so the ring cannot stall.
                self.wrong_format += 1;
            }
            _ => return Push::Full,
        }
        if frame.len() < 14 || frame.len() > self.max_frame() {
            return Push::Invalid;
        }
        let Ok(len) = u32::try_from(frame.len()) else {
            return Push::Invalid;
        };
        let h = slot.cast::<libc::tpacket3_hdr>();
        // SAFETY: the slot is ours (status AVAILABLE, read with acquire);
        // the header and `frame.len() <= max_frame()` bytes after
        // TX_DATA_OFFSET lie inside the slot, which lies inside the mapping;
        // `frame` is ordinary memory and cannot overlap the mapping.
        unsafe {
            addr_of_mut!((*h).tp_next_offset).write(0);
            addr_of_mut!((*h).tp_len).write(len);
            addr_of_mut!((*h).tp_snaplen).write(len);
            addr_of_mut!((*h).tp_mac).write(0);
            addr_of_mut!((*h).tp_net).write(0);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(TX_DATA_OFFSET), frame.len());
        }
        self.status(slot)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.head = (self.head + 1) % self.frame_count;
        Push::Queued
    }

    /// Number of slots.
    pub(super) fn slots(&self) -> usize {
        self.frame_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants() {
        // tpacket3_hdr is 48 bytes, so frames start 48 bytes into a slot.
        assert_eq!(HDR3_LEN, 48);
        assert_eq!(TX_DATA_OFFSET, 48);
        // bh1 starts at 8, block_status is its first field.
        assert_eq!(BLOCK_STATUS_OFFSET, 8);
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_status), 20);
    }

    /// Builds a fake retired RX block in ordinary memory and walks it.
    #[test]
    fn walks_a_synthetic_block() {
        let block_size = 4096;
        let mut mem = vec![0u64; block_size * 2 / 8]; // two blocks, 8-aligned
        let base = mem.as_mut_ptr().cast::<u8>();
        let put32 = |p: *mut u8, off: usize, v: u32| {
            // SAFETY: test-only writes inside `mem`, 4-byte aligned offsets.
            unsafe { p.add(off).cast::<u32>().write(v) }
        };
        let put16 = |p: *mut u8, off: usize, v: u16| {
            // SAFETY: test-only writes inside `mem`, 2-byte aligned offsets.
            unsafe { p.add(off).cast::<u16>().write(v) }
        };
        // Block 0: two frames at 48 and 48 + 128.
        put32(base, 8, libc::TP_STATUS_USER);
        put32(base, 12, 2);
        put32(base, 16, 48);
        for (i, off) in [48usize, 176].into_iter().enumerate() {
            put32(base, off, if i == 0 { 128 } else { 0 });
            put32(base, off + 12, 20); // snaplen
            put32(base, off + 16, 20); // len
            put32(
                base,
                off + 20,
                if i == 1 {
                    libc::TP_STATUS_VLAN_VALID
                } else {
                    0
                },
            );
            put16(base, off + 24, 64); // mac
            put32(base, off + 32, 0x0123);
            let tag = u8::try_from(i).unwrap() + 1;
            // SAFETY: writes inside `mem`.
            unsafe { std::ptr::write_bytes(base.add(off + 64), tag, 20) };
        }
        // SAFETY: `mem` outlives the ring and holds two blocks.
        let mut rx = unsafe { RxRing::new(base, block_size, 2) };
        let f = rx.peek().unwrap();
        assert_eq!(f.data, &[1u8; 20][..]);
        assert_eq!(f.vlan, None);
        rx.advance();
        let f = rx.peek().unwrap();
        assert_eq!(f.data, &[2u8; 20][..]);
        assert_eq!(f.vlan, Some((0x8100, 0x0123)));
        rx.advance();
        assert!(rx.peek().is_none());
        // Block 0 was handed back; the cursor waits on block 1.
        assert_eq!(
            rx.block_status(0).load(Ordering::Relaxed),
            libc::TP_STATUS_KERNEL
        );
        assert_eq!(rx.block, 1);
        assert_eq!(rx.corrupt, 0);
    }

    #[test]
    fn corrupt_header_drops_the_block() {
        let block_size = 4096;
        let mut mem = vec![0u64; block_size / 8];
        let base = mem.as_mut_ptr().cast::<u8>();
        // SAFETY: test-only writes inside `mem`.
        unsafe {
            base.add(8).cast::<u32>().write(libc::TP_STATUS_USER);
            base.add(12).cast::<u32>().write(3);
            base.add(16).cast::<u32>().write(48);
            base.add(48 + 12).cast::<u32>().write(100_000); // snaplen past the block
            base.add(48 + 24).cast::<u16>().write(64);
        }
        // SAFETY: `mem` outlives the ring and holds one block.
        let mut rx = unsafe { RxRing::new(base, block_size, 1) };
        assert!(rx.peek().is_none());
        assert_eq!(rx.corrupt, 3);
    }

    #[test]
    fn tx_ring_fills_in_order_and_reports_full() {
        let (block_size, frame_size) = (4096, 2048);
        let mut mem = vec![0u64; block_size * 2 / 8];
        let base = mem.as_mut_ptr().cast::<u8>();
        // SAFETY: `mem` outlives the ring and holds two blocks.
        let mut tx = unsafe { TxRing::new(base, block_size, 2, frame_size) };
        assert_eq!(tx.slots(), 4);
        assert_eq!(tx.max_frame(), 2000);
        assert_eq!(tx.push(&[0u8; 13]), Push::Invalid);
        assert_eq!(tx.push(&[0u8; 2001]), Push::Invalid);
        for i in 0..4u8 {
            assert_eq!(tx.push(&[i; 60]), Push::Queued);
        }
        assert_eq!(tx.push(&[9; 60]), Push::Full);
        // Slot 2 is the first slot of block 1.
        let s2 = tx.slot(2);
        assert_eq!(s2 as usize - base as usize, 4096);
        assert_eq!(
            tx.status(s2).load(Ordering::Relaxed),
            libc::TP_STATUS_SEND_REQUEST
        );
        // SAFETY: reads inside `mem`.
        unsafe {
            assert_eq!(s2.add(16).cast::<u32>().read(), 60);
            assert_eq!(*s2.add(TX_DATA_OFFSET), 2);
        }
        // The kernel sends slot 0; the ring accepts one more frame there.
        tx.status(tx.slot(0))
            .store(libc::TP_STATUS_AVAILABLE, Ordering::Release);
        assert_eq!(tx.push(&[7; 60]), Push::Queued);
        assert_eq!(tx.push(&[7; 60]), Push::Full);
    }
}
