//! Memory for the big preallocated tables (the flow table's slab): an
//! anonymous mapping advised for transparent huge pages before it is first
//! touched, so that a table of a million flows (128 MB) sits in 2 MB pages
//! and its random accesses stop missing the TLB on almost every lookup.
//!
//! [`prefetch`] asks the CPU to start loading a cache line the worker will
//! need soon (the flow index's buckets and flow entries of a burst).
//!
//! This is the dataplane's one prefetch/hugepage helper (with `unsafe`). Below
//! [`HUGE_MIN_BYTES`], or where the mapping fails, the memory is an
//! ordinary heap allocation; where the kernel declines the advice (THP
//! off), the mapping still works with 4 KB pages. Explicit hugetlbfs pages
//! (`MAP_HUGETLB`) are left to DPDK, which needs the reserved ones.

#![allow(unsafe_code)]

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Tables smaller than this stay on the heap.
pub const HUGE_MIN_BYTES: usize = 2 << 20;

enum Storage<T> {
    Heap(Box<[T]>),
    Mapped {
        ptr: NonNull<T>,
        len: usize,
        map_len: usize,
    },
}

/// A fixed-length slice of `T`, filled with one value at creation.
pub struct HugeSlice<T: Copy> {
    storage: Storage<T>,
    advised: bool,
}

// SAFETY: a `Mapped` slice owns its mapping exclusively (nothing else holds
// the pointer), exactly as a `Box<[T]>` owns its allocation, so it may move
// to and be shared between threads whenever `T` may.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: as above; shared access only reads through `&[T]`.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> HugeSlice<T> {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        if bytes < HUGE_MIN_BYTES || std::mem::align_of::<T>() > 4096 {
            return HugeSlice::heap(len, fill);
        }
        let map_len = bytes.div_ceil(HUGE_MIN_BYTES) * HUGE_MIN_BYTES;
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return HugeSlice::heap(len, fill);
        }
        // SAFETY: `p` and `map_len` are exactly the mapping just made; the
        // advice changes how its pages are backed, not its contents.
        let advised = unsafe { libc::madvise(p, map_len, libc::MADV_HUGEPAGE) } == 0;
        let Some(ptr) = NonNull::new(p.cast::<T>()) else {
            return HugeSlice::heap(len, fill);
        };
        for i in 0..len {
            // SAFETY: the mapping is page-aligned (so aligned for `T`,
            // checked above) and `map_len >= len * size_of::<T>()`, so
            // element `i` lies inside it; writing initializes it.
            unsafe { ptr.as_ptr().add(i).write(fill) };
        }
        HugeSlice {
            storage: Storage::Mapped { ptr, len, map_len },
            advised,
        }
    }

    fn heap(len: usize, fill: T) -> HugeSlice<T> {
        HugeSlice {
            storage: Storage::Heap(vec![fill; len].into_boxed_slice()),
            advised: false,
        }
    }

    /// Whether the memory was mapped and advised for huge pages (the
    /// kernel still decides whether it gets them).
    pub fn huge_advised(&self) -> bool {
        self.advised
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Heap(b) => b,
            // SAFETY: `ptr` points to `len` initialized elements in a
            // mapping this value owns for as long as the borrow lasts.
            Storage::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Heap(b) => b,
            // SAFETY: as in `deref`, and `&mut self` makes the borrow
            // exclusive.
            Storage::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        if let Storage::Mapped { ptr, map_len, .. } = self.storage {
            // SAFETY: the mapping was made in `new` with this length and is
            // unmapped once; `T: Copy` needs no destructor.
            unsafe { libc::munmap(ptr.as_ptr().cast(), map_len) };
        }
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeSlice")
            .field("len", &self.len())
            .field("huge_advised", &self.advised)
            .finish()
    }
}

/// Transparent huge pages backing anonymous memory of this process, in KiB
/// (`AnonHugePages` of `/proc/self/smaps_rollup`); `None` where unreadable.
pub fn anon_huge_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts loading the cache line of `r` into all cache levels, without
/// waiting for it (a hint: it never faults and changes nothing visible).
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    prefetch_addr(std::ptr::from_ref(r).cast::<u8>());
}

/// Starts loading every cache line `r` spans: the one of its first byte
/// and, if `T` straddles a line boundary there, the one of its last.
#[inline(always)]
pub fn prefetch_all<T>(r: &T) {
    let first = std::ptr::from_ref(r).cast::<u8>();
    prefetch_addr(first);
    let last = first.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
    if (first as usize) / 64 != (last as usize) / 64 {
        prefetch_addr(last);
    }
}

#[inline(always)]
fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache; it does not dereference
    // the pointer architecturally (it cannot fault), and the pointers come
    // from live references (the first and last byte of one). SSE is part
    // of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_slices_hold_their_values() {
        let mut small = HugeSlice::new(100, 7u64);
        assert!(!small.huge_advised());
        small[99] = 8;
        assert_eq!((small.len(), small[0], small[99]), (100, 7, 8));
        // 4 MB of 128-byte values: mapped, every element filled.
        let mut big = HugeSlice::new(32_768, [3u64; 16]);
        assert_eq!(big.len(), 32_768);
        assert!(big.iter().all(|e| *e == [3u64; 16]));
        big[32_767][15] = 9;
        assert_eq!(big[32_767][15], 9);
        assert_eq!(big.iter().filter(|e| e[15] == 9).count(), 1);
        // Zero length works too.
        assert!(HugeSlice::new(0, 1u8).is_empty());
    }
}
