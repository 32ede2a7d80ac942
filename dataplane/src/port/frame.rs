//! The bytes of one frame in a [`PacketBuf`](super::PacketBuf).
//!
//! A frame lives in the buffer's own heap memory, or (DPDK) in the mbuf it
//! was received in: the DPDK port lends the received mbuf to the buffer,
//! the worker parses and rewrites the frame in place, and transmit hands
//! the same mbuf to the driver. Nothing is copied on that path.
//!
//! Anything that changes a frame's length beyond cutting it shorter (a
//! helper's payload rewrite, a reject answer built into a buffer) first
//! moves the frame into the heap memory ([`Frame::vec_mut`]): rare paths
//! pay the copy the fast path no longer does. So do frames parked for
//! longer than a burst (held first packets, hand-offs between workers),
//! which would otherwise keep mbufs from the device's pool
//! ([`Frame::detach`]).

use std::ops::{Deref, DerefMut};

#[cfg(feature = "dpdk")]
use super::dpdk::Mbuf;

/// One frame's bytes: `len()` is the frame length. See the module
/// documentation.
pub struct Frame {
    heap: Vec<u8>,
    /// The received mbuf holding the frame (one segment, not shared);
    /// `heap` is then empty and unused.
    #[cfg(feature = "dpdk")]
    mbuf: Option<Mbuf>,
}

impl Frame {
    /// An empty frame with `capacity` bytes of heap reserved.
    pub fn with_capacity(capacity: usize) -> Frame {
        Frame {
            heap: Vec::with_capacity(capacity),
            #[cfg(feature = "dpdk")]
            mbuf: None,
        }
    }

    /// The frame in heap memory, for changes of length: a frame held in
    /// an mbuf is copied there first and the mbuf freed.
    #[inline]
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.detach();
        &mut self.heap
    }

    /// Moves a frame held in an mbuf into heap memory and frees the mbuf
    /// (nothing to do for a heap frame).
    #[inline]
    pub fn detach(&mut self) {
        #[cfg(feature = "dpdk")]
        if let Some(m) = self.mbuf.take() {
            self.heap.clear();
            self.heap.extend_from_slice(m.data());
        }
    }

    /// Empties the frame (freeing an mbuf it held).
    #[inline]
    pub fn clear(&mut self) {
        #[cfg(feature = "dpdk")]
        {
            self.mbuf = None;
        }
        self.heap.clear();
    }

    /// Cuts the frame to `len` bytes (no effect if it is not longer).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        #[cfg(feature = "dpdk")]
        if let Some(m) = &mut self.mbuf {
            m.truncate(len);
            return;
        }
        self.heap.truncate(len);
    }

    /// Resizes the frame to `len` bytes, filling with `value`.
    pub fn resize(&mut self, len: usize, value: u8) {
        if len <= self.len() {
            self.truncate(len);
        } else {
            self.vec_mut().resize(len, value);
        }
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.vec_mut().extend_from_slice(bytes);
    }

    /// Bytes of heap memory reserved (an mbuf's room is not counted).
    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Exchanges the frame with the heap frame `v` (the `mem` port's
    /// zero-copy hand-over); a frame held in an mbuf is detached first.
    pub fn swap_vec(&mut self, v: &mut Vec<u8>) {
        self.detach();
        std::mem::swap(&mut self.heap, v);
    }

    /// Whether the frame is held in an mbuf.
    pub fn in_mbuf(&self) -> bool {
        #[cfg(feature = "dpdk")]
        {
            self.mbuf.is_some()
        }
        #[cfg(not(feature = "dpdk"))]
        {
            false
        }
    }

    /// Lends the frame the received mbuf `m` (one segment, owned by no one
    /// else), freeing an mbuf it held before.
    #[cfg(feature = "dpdk")]
    pub(super) fn lend(&mut self, m: Mbuf) {
        self.heap.clear();
        self.mbuf = Some(m);
    }

    /// Takes the mbuf the frame is held in, leaving the frame empty.
    #[cfg(feature = "dpdk")]
    pub(super) fn take_mbuf(&mut self) -> Option<Mbuf> {
        self.mbuf.take()
    }
}

impl Deref for Frame {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        #[cfg(feature = "dpdk")]
        if let Some(m) = &self.mbuf {
            return m.data();
        }
        &self.heap
    }
}

impl DerefMut for Frame {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        #[cfg(feature = "dpdk")]
        if let Some(m) = &mut self.mbuf {
            return m.data_mut();
        }
        &mut self.heap
    }
}

impl Clone for Frame {
    /// A heap copy, with the same capacity as a new buffer's.
    fn clone(&self) -> Frame {
        let mut heap = Vec::with_capacity(self.heap.capacity().max(self.len()));
        heap.extend_from_slice(self);
        Frame {
            heap,
            #[cfg(feature = "dpdk")]
            mbuf: None,
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.len())
            .field("in_mbuf", &self.in_mbuf())
            .finish()
    }
}

impl From<Vec<u8>> for Frame {
    fn from(heap: Vec<u8>) -> Frame {
        Frame {
            heap,
            #[cfg(feature = "dpdk")]
            mbuf: None,
        }
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        **self == **other
    }
}

impl Eq for Frame {}

impl PartialEq<[u8]> for Frame {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<Vec<u8>> for Frame {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_frame_behaves_as_its_bytes() {
        let mut f = Frame::with_capacity(64);
        f.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(f, vec![1, 2, 3, 4]);
        f[0] = 9;
        f.truncate(2);
        assert_eq!(&*f, &[9, 2]);
        f.resize(4, 7);
        assert_eq!(&*f, &[9, 2, 7, 7]);
        f.resize(1, 0);
        assert_eq!(&*f, &[9]);
        let mut v = vec![5, 6];
        f.swap_vec(&mut v);
        assert_eq!((&*f, v.as_slice()), (&[5u8, 6][..], &[9u8][..]));
        let c = f.clone();
        assert!(c.capacity() >= c.len() && c == f && !c.in_mbuf());
        f.clear();
        assert!(f.is_empty() && f.capacity() >= 2);
    }
}
