//! The single-producer, single-consumer rings an XDP socket shares with
//! the kernel (Documentation/networking/af_xdp.rst).
//!
//! A ring is a power-of-two array of entries behind two free-running u32
//! indexes, `producer` and `consumer`, and a `flags` word. Entry `i` is at
//! `i & mask`. The producer writes entries, then publishes them by storing
//! `producer` with release ordering; the consumer loads `producer` with
//! acquire ordering before reading them, and hands the slots back by
//! storing `consumer` with release ordering. We produce on the fill and TX
//! rings and consume the RX and completion rings; the kernel does the
//! opposite. Each side caches the other's index and reloads it only when
//! the cached value says the ring is full (or empty).

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One ring, seen from our side. `T` is `u64` (fill and completion: frame
/// addresses in the UMEM) or [`libc::xdp_desc`] (RX and TX).
#[derive(Debug)]
pub(super) struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    /// The index we own (`producer` on our producing rings, `consumer` on
    /// the others), as far as we advanced it.
    own: u32,
    /// The other side's index as last loaded.
    seen: u32,
    _entries: PhantomData<T>,
}

// SAFETY: a ring is a view into a mapping owned by the same port; the port
// is used by one thread at a time, and the kernel side is synchronised
// through the atomic indexes.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// The ring whose parts lie at these offsets of `base`, with `size`
    /// entries (a power of two).
    ///
    /// # Safety
    /// `base + producer`, `base + consumer` and `base + flags` must be
    /// aligned u32s, and `base + entries` an aligned array of `size` `T`s,
    /// all inside one mapping that outlives the ring and that no one else
    /// in this process writes.
    pub(super) unsafe fn new(base: *mut u8, off: &libc::xdp_ring_offset, size: u32) -> Ring<T> {
        debug_assert!(size.is_power_of_two());
        let at = |o: u64| base.wrapping_add(usize::try_from(o).unwrap_or(usize::MAX));
        // SAFETY: the caller guarantees every offset is inside the mapping,
        // which is never at address 0.
        let (producer, consumer, flags, entries) = unsafe {
            (
                NonNull::new_unchecked(at(off.producer).cast::<AtomicU32>()),
                NonNull::new_unchecked(at(off.consumer).cast::<AtomicU32>()),
                NonNull::new_unchecked(at(off.flags).cast::<AtomicU32>()),
                NonNull::new_unchecked(at(off.desc).cast::<T>()),
            )
        };
        let mut r = Ring {
            producer,
            consumer,
            flags,
            entries,
            mask: size - 1,
            own: 0,
            seen: 0,
            _entries: PhantomData,
        };
        r.own = r.consumer().load(Ordering::Relaxed);
        r.seen = r.producer().load(Ordering::Acquire);
        r
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: aligned and inside the live mapping (see `new`).
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: aligned and inside the live mapping (see `new`).
        unsafe { self.consumer.as_ref() }
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: `index & mask` < size, so the slot is inside the array.
        unsafe { self.entries.as_ptr().add((index & self.mask) as usize) }
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Whether the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`).
    pub(super) fn needs_wakeup(&self) -> bool {
        // SAFETY: aligned and inside the live mapping (see `new`).
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- Our producing rings (fill, TX) ---

    /// Makes this a producing ring: our index is `producer`.
    pub(super) fn into_producer(mut self) -> Ring<T> {
        self.own = self.producer().load(Ordering::Relaxed);
        self.seen = self.consumer().load(Ordering::Acquire);
        self
    }

    /// Free slots, reloading the consumer's index when fewer than `want`
    /// seem free.
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let free = self.size() - self.own.wrapping_sub(self.seen);
        if free >= want {
            return free;
        }
        self.seen = self.consumer().load(Ordering::Acquire);
        self.size() - self.own.wrapping_sub(self.seen)
    }

    /// Writes the `i`-th entry after those already produced; the caller
    /// checked with [`Ring::free`] that it is free.
    pub(super) fn write(&mut self, i: u32, v: T) {
        // SAFETY: the slot is ours until we publish it (`free` said so), and
        // it lies inside the array.
        unsafe { self.slot(self.own.wrapping_add(i)).write(v) };
    }

    /// Publishes `n` written entries to the kernel.
    pub(super) fn submit(&mut self, n: u32) {
        self.own = self.own.wrapping_add(n);
        self.producer().store(self.own, Ordering::Release);
    }

    // --- Our consuming rings (RX, completion) ---

    /// Entries ready to read, reloading the producer's index if none seem
    /// ready.
    pub(super) fn ready(&mut self) -> u32 {
        let n = self.seen.wrapping_sub(self.own);
        if n > 0 {
            return n;
        }
        self.seen = self.producer().load(Ordering::Acquire);
        self.seen.wrapping_sub(self.own)
    }

    /// Reads the `i`-th ready entry; the caller checked [`Ring::ready`].
    pub(super) fn read(&self, i: u32) -> T {
        // SAFETY: the kernel published the slot (acquire in `ready`) and
        // does not write it until we release it.
        unsafe { self.slot(self.own.wrapping_add(i)).read() }
    }

    /// Hands `n` read entries back to the kernel.
    pub(super) fn release(&mut self, n: u32) {
        self.own = self.own.wrapping_add(n);
        self.consumer().store(self.own, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring laid out in heap memory as the kernel lays it out in a
    /// mapping: producer, consumer and flags words, then the entries.
    struct Heap {
        mem: Vec<u64>,
        off: libc::xdp_ring_offset,
        size: u32,
    }

    impl Heap {
        fn new(size: u32) -> Heap {
            Heap {
                mem: vec![0; 2 + size as usize],
                off: libc::xdp_ring_offset {
                    producer: 0,
                    consumer: 4,
                    flags: 8,
                    desc: 16,
                },
                size,
            }
        }

        /// Two views of the ring: ours as producer, the "kernel's" as
        /// consumer.
        fn pair(&mut self) -> (Ring<u64>, Ring<u64>) {
            let base = self.mem.as_mut_ptr().cast::<u8>();
            // SAFETY: the offsets are aligned and inside `mem`, which
            // outlives both views in every test.
            unsafe {
                (
                    Ring::new(base, &self.off, self.size).into_producer(),
                    Ring::new(base, &self.off, self.size),
                )
            }
        }
    }

    #[test]
    fn entries_come_out_in_order_across_many_wraps() {
        let mut h = Heap::new(8);
        let (mut p, mut c) = h.pair();
        let mut next_out = 0u64;
        for round in 0u32..100 {
            let n = round % 8 + 1;
            assert!(p.free(n) >= n);
            for i in 0..n {
                p.write(i, u64::from(round * 100 + i));
            }
            p.submit(n);
            let ready = c.ready();
            assert_eq!(ready, n);
            for i in 0..ready {
                assert_eq!(c.read(i), u64::from(round * 100 + i));
            }
            c.release(ready);
            next_out += u64::from(ready);
        }
        assert_eq!(c.ready(), 0);
        assert!(next_out > 8 * 4, "the indexes wrapped the ring many times");
    }

    #[test]
    fn a_full_ring_has_no_free_slot_until_the_consumer_releases() {
        let mut h = Heap::new(4);
        let (mut p, mut c) = h.pair();
        assert_eq!(p.free(1), 4);
        for i in 0..4 {
            p.write(i, u64::from(i));
        }
        p.submit(4);
        assert_eq!(p.free(1), 0);
        assert_eq!(c.ready(), 4);
        c.release(1);
        // Cached: still 0 free until asked for more than it knows of.
        assert_eq!(p.free(1), 1);
        c.release(3);
        assert_eq!(p.free(4), 4);
    }

    #[test]
    fn indexes_wrap_around_u32() {
        let mut h = Heap::new(4);
        // Both indexes just below the u32 wrap.
        h.mem[0] = u64::from(u32::MAX - 1) | u64::from(u32::MAX - 1) << 32;
        let (mut p, mut c) = h.pair();
        assert_eq!(p.free(4), 4);
        for i in 0..3 {
            p.write(i, 7 + u64::from(i));
        }
        p.submit(3);
        assert_eq!(c.ready(), 3);
        assert_eq!((c.read(0), c.read(1), c.read(2)), (7, 8, 9));
        c.release(3);
        assert_eq!(p.free(4), 4);
    }

    #[test]
    fn need_wakeup_reads_the_flags_word() {
        let mut h = Heap::new(4);
        let (p, _) = h.pair();
        assert!(!p.needs_wakeup());
        h.mem[1] = u64::from(libc::XDP_RING_NEED_WAKEUP);
        let (p, _) = h.pair();
        assert!(p.needs_wakeup());
    }
}
