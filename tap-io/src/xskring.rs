//! The four rings of an AF_XDP socket and its UMEM, mapped into our memory.
//!
//! Each ring is a power-of-two array shared with the kernel, with a producer and a consumer
//! index (free-running u32s) and a flags word. We produce into the fill ring (empty frames for
//! the kernel to receive into) and the tx ring, and consume the rx ring (received frames) and
//! the completion ring (sent frames, free again). Indices are read with acquire and published
//! with release ordering, as in the kernel's `xsk_queue.h`.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::rxring::Mapping;
use crate::sockopt;

/// A mapped ring of `T` (`u64` frame addresses, or `libc::xdp_desc`).
pub(crate) struct XskRing<T> {
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    /// Our side's index: the next slot we fill (producer rings) or read (consumer rings).
    local: u32,
}

impl<T: Copy> XskRing<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of the socket.
    pub fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: i64,
    ) -> io::Result<Self> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = sockopt::map_shared(fd, len, pgoff)?;
        let base = map.ptr;
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this socket and lie inside the
        // `len` bytes just mapped; the index words are u32-aligned there.
        let (producer, consumer, flags, descs) = unsafe {
            (
                base.add(off.producer as usize).cast::<AtomicU32>(),
                base.add(off.consumer as usize).cast::<AtomicU32>(),
                base.add(off.flags as usize).cast::<AtomicU32>(),
                base.add(off.desc as usize).cast::<T>(),
            )
        };
        let mut ring = Self {
            _map: map,
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            local: 0,
        };
        // A fresh ring starts at 0 on both sides, but read what the kernel says.
        ring.local = ring.prod().load(Ordering::Relaxed);
        Ok(ring)
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping owned by self; the kernel accesses it atomically.
        unsafe { &*self.producer }
    }

    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as for `prod`.
        unsafe { &*self.consumer }
    }

    /// Whether the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `prod`.
        let f = unsafe { &*self.flags };
        f.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask` < size, so the slot lies inside the mapped descriptor array.
        unsafe { self.descs.add((idx & self.mask) as usize) }
    }

    // --- consumer side (rx, completion) ---

    /// Entries the kernel has produced that we have not read.
    pub fn available(&self) -> u32 {
        self.prod().load(Ordering::Acquire).wrapping_sub(self.local)
    }

    /// The `i`-th unread entry (`i < available()`).
    pub fn peek(&self, i: u32) -> T {
        // SAFETY: the kernel published this slot (acquire load in `available`) and does not
        // touch it until we move the consumer index past it.
        unsafe { self.slot(self.local.wrapping_add(i)).read_volatile() }
    }

    /// Hands `n` read entries back to the kernel.
    pub fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.cons().store(self.local, Ordering::Release);
    }

    // --- producer side (fill, tx) ---

    /// Slots we may fill before the kernel consumes more (`size` = `mask + 1`).
    pub fn free(&self) -> u32 {
        (self.mask + 1) - self.local.wrapping_sub(self.cons().load(Ordering::Acquire))
    }

    /// Writes the `i`-th slot after the last submitted one (`i < free()`).
    pub fn write(&mut self, i: u32, v: T) {
        // SAFETY: the slot is ours until `submit` publishes it (checked by the caller with
        // `free`), and it lies inside the mapping.
        unsafe { self.slot(self.local.wrapping_add(i)).write_volatile(v) }
    }

    /// Publishes `n` written slots to the kernel.
    pub fn submit(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.prod().store(self.local, Ordering::Release);
    }

    /// Submitted slots the kernel has not consumed yet.
    pub fn pending(&self) -> u32 {
        self.local.wrapping_sub(self.cons().load(Ordering::Acquire))
    }

    /// Whether the kernel has consumed everything we submitted.
    pub fn drained(&self) -> bool {
        self.cons().load(Ordering::Acquire) == self.local
    }
}

/// The UMEM: one anonymous mapping cut in equal chunks, one frame each.
pub(crate) struct Umem {
    map: Mapping,
    pub chunk: usize,
}

impl Umem {
    /// `frames` chunks of `chunk` bytes, populated up front.
    pub fn new(frames: usize, chunk: usize) -> io::Result<Self> {
        let len = frames * chunk;
        // SAFETY: a private anonymous mapping; the result is checked and owned by `Mapping`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            map: Mapping {
                ptr: ptr.cast(),
                len,
            },
            chunk,
        })
    }

    pub fn addr(&self) -> u64 {
        self.map.ptr as u64
    }

    pub fn len(&self) -> usize {
        self.map.len
    }

    /// The bytes `[addr, addr + len)` if they lie inside one chunk.
    pub fn frame(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (start, end) = self.span(addr, len)?;
        // SAFETY: [start, end) lies inside the mapping (checked by `span`); the kernel wrote
        // this frame before publishing its descriptor and does not touch it until we give the
        // chunk back through the fill ring.
        Some(unsafe { std::slice::from_raw_parts(self.map.ptr.add(start), end - start) })
    }

    /// Writable bytes `[addr, addr + len)` if they lie inside one chunk.
    pub fn frame_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let (start, end) = self.span(addr, len)?;
        // SAFETY: inside the mapping (checked by `span`); the chunk is on our free list, so
        // the kernel does not read it until we submit its descriptor.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.ptr.add(start), end - start) })
    }

    fn span(&self, addr: u64, len: usize) -> Option<(usize, usize)> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len)?;
        let same_chunk = len == 0 || start / self.chunk == (end - 1) / self.chunk;
        (end <= self.map.len && same_chunk).then_some((start, end))
    }

    /// The start of the chunk holding `addr`.
    pub fn chunk_of(&self, addr: u64) -> u64 {
        addr - addr % self.chunk as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_never_cross_a_chunk_or_the_end() {
        let u = Umem::new(4, 2048).unwrap();
        assert!(u.frame(0, 2048).is_some());
        assert!(u.frame(2048 + 256, 1792).is_some());
        assert!(u.frame(2048 + 256, 1793).is_none());
        assert!(u.frame(3 * 2048, 2049).is_none());
        assert!(u.frame(4 * 2048, 1).is_none());
        assert!(u.frame(u64::MAX, 2).is_none());
        assert_eq!(u.chunk_of(2048 + 300), 2048);
    }
}
