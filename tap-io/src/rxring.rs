//! The two AF_PACKET receive ring layouts and how to walk them.
//!
//! - TPACKET_V3 (`BlockRing`): the kernel packs variable-length frames into fixed-size blocks
//!   and hands over a whole block when it is full or when the retire timer fires. Few wakeups
//!   and dense packing, but at low load every frame waits for the timer (up to
//!   `retire_tov_ms`).
//! - TPACKET_V2 (`FrameRing`): fixed-size frame slots, each with its own status word. A frame
//!   is ours as soon as the kernel wrote it: no timer, so no added latency. Every slot must hold
//!   the largest frame (a 64 KiB super-frame with virtio-net headers), so the ring holds fewer
//!   frames for the same memory.
//!
//! Both return frames one by one as a [`RawFrame`] and give memory back to the kernel once the
//! caller asked for the next frame (or called `release_done`).

use std::sync::atomic::{AtomicU32, Ordering};

/// One received frame as the ring describes it; `bytes` borrows the ring slot.
pub(crate) struct RawFrame<'a> {
    /// `tp_status` (`TP_STATUS_*` flags).
    pub status: u32,
    /// Length on the wire (`tp_len`); longer than `bytes` when the slot cut the frame.
    pub wire_len: usize,
    /// The frame as stored (`tp_snaplen` bytes from `tp_mac`).
    pub bytes: &'a [u8],
    /// The `VNET_HDR_LEN` bytes in front of the frame (where the kernel writes the
    /// virtio-net header), or `None` if the slot has no room for them.
    pub before: Option<&'a [u8]>,
    /// TPID and TCI the kernel stripped (`TP_STATUS_VLAN_VALID`).
    pub vlan: Option<(u16, u16)>,
}

/// What the ring has next.
pub(crate) enum Next<'a> {
    Frame(RawFrame<'a>),
    /// A header pointed outside its block or slot: skipped, count it as an error.
    Corrupt,
    /// Nothing ready.
    Empty,
}

/// Bytes in front of a frame that `before` returns.
const BEFORE: usize = crate::vnet::VNET_HDR_LEN;

fn vlan_of(status: u32, tci: u16, tpid: u16) -> Option<(u16, u16)> {
    (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            tpid
        } else {
            0x8100
        };
        (tpid, tci)
    })
}

/// The mmap'ed ring memory (unmapped on drop).
pub(crate) struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Reads `[off, off + n)` of `base` as a slice if it lies within `limit`.
///
/// # Safety
/// `base..base + limit` must be mapped, user-owned memory for the lifetime `'a`.
unsafe fn slice_in<'a>(base: *const u8, limit: usize, off: usize, n: usize) -> Option<&'a [u8]> {
    let end = off.checked_add(n)?;
    if end > limit {
        return None;
    }
    // SAFETY: [off, end) is inside the mapped, user-owned range (checked above, caller's
    // contract for the range).
    Some(unsafe { std::slice::from_raw_parts(base.add(off), n) })
}

/// What a frame's header (V2 or V3) says about it.
struct FrameHead {
    status: u32,
    wire_len: usize,
    /// Offset of the frame from the start of its block or slot.
    mac: usize,
    snaplen: usize,
    vlan: Option<(u16, u16)>,
}

impl FrameHead {
    /// The frame inside `base..base + limit`, or `None` if the header points outside it.
    ///
    /// # Safety
    /// As [`slice_in`]: `base..base + limit` is mapped, user-owned memory for `'a`.
    unsafe fn frame_in<'a>(self, base: *const u8, limit: usize) -> Option<RawFrame<'a>> {
        // SAFETY: the caller's contract, passed on.
        let bytes = unsafe { slice_in(base, limit, self.mac, self.snaplen) }?;
        Some(RawFrame {
            status: self.status,
            wire_len: self.wire_len,
            bytes,
            // SAFETY: as above.
            before: self
                .mac
                .checked_sub(BEFORE)
                .and_then(|o| unsafe { slice_in(base, limit, o, BEFORE) }),
            vlan: self.vlan,
        })
    }
}

/// TPACKET_V3: blocks of variable-length frames.
pub(crate) struct BlockRing {
    pub map: Mapping,
    pub block_size: usize,
    pub block_nr: usize,
    /// Block being read (or to be read next).
    cur: usize,
    /// True while `cur` is owned by us and not yet given back.
    held: bool,
    /// Frames left to read in `cur`.
    left: u32,
    /// Offset of the next frame header from the start of `cur`.
    next: usize,
}

impl BlockRing {
    pub fn new(map: Mapping, block_size: usize, block_nr: usize) -> Self {
        Self {
            map,
            block_size,
            block_nr,
            cur: 0,
            held: false,
            left: 0,
            next: 0,
        }
    }

    fn block(&self, i: usize) -> *mut u8 {
        // SAFETY: i < block_nr, so the offset stays inside the mapping.
        unsafe { self.map.ptr.add(i * self.block_size) }
    }

    fn block_status(&self, i: usize) -> &AtomicU32 {
        let bd = self.block(i).cast::<libc::tpacket_block_desc>();
        // SAFETY: the block descriptor lies at the start of the block, 8-aligned (page aligned
        // mapping, page-multiple block size); the kernel writes block_status concurrently, which
        // is why it is accessed only atomically. The reference lives no longer than `self`,
        // which owns the mapping.
        unsafe { AtomicU32::from_ptr(&raw mut (*bd).hdr.bh1.block_status) }
    }

    /// Gives the current block back to the kernel once all its frames were taken.
    pub fn release_done(&mut self) {
        if self.held && self.left == 0 {
            self.block_status(self.cur)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.held = false;
            self.cur = (self.cur + 1) % self.block_nr;
        }
    }

    pub fn next_frame(&mut self) -> Next<'_> {
        if self.left == 0 {
            // Done with the current block (if any): hand it back, look at the next.
            self.release_done();
            let status = self.block_status(self.cur).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                return Next::Empty;
            }
            let bd = self.block(self.cur).cast::<libc::tpacket_block_desc>();
            // SAFETY: the block is user-owned (acquire above), so the kernel no longer
            // writes its descriptor; bd points at the start of a block in the mapping.
            let (num, first) = unsafe {
                let h = &(*bd).hdr.bh1;
                (h.num_pkts, h.offset_to_first_pkt as usize)
            };
            self.held = true;
            self.left = num;
            self.next = first;
            if num == 0 {
                return Next::Corrupt;
            }
        }
        let block = self.block(self.cur);
        let at = self.next;
        if at + std::mem::size_of::<libc::tpacket3_hdr>() > self.block_size {
            // A corrupt offset would take us outside the block: drop the rest of it.
            self.left = 0;
            return Next::Corrupt;
        }
        // SAFETY: at + header size is inside the user-owned block (checked above). The kernel
        // aligns frame headers to TPACKET_ALIGNMENT, but `at` comes from its offsets, which
        // the check above does not trust either: read unaligned.
        let h = unsafe { std::ptr::read_unaligned(block.add(at).cast::<libc::tpacket3_hdr>()) };
        self.left -= 1;
        self.next += h.tp_next_offset as usize;
        let mac = at + h.tp_mac as usize;
        let head = FrameHead {
            status: h.tp_status,
            wire_len: h.tp_len as usize,
            mac,
            snaplen: h.tp_snaplen as usize,
            vlan: vlan_of(h.tp_status, h.hv1.tp_vlan_tci as u16, h.hv1.tp_vlan_tpid),
        };
        // SAFETY: the block is user-owned until release_done, which needs &mut self, so the
        // returned slices (borrowing self) cannot outlive our ownership of it.
        match unsafe { head.frame_in(block, self.block_size) } {
            Some(f) => Next::Frame(f),
            None => {
                self.left = 0;
                Next::Corrupt
            }
        }
    }
}

/// How many slots ahead of the one being read [`FrameRing`] prefetches.
const PREFETCH_AHEAD: usize = 3;

/// TPACKET_V2: fixed-size frame slots, each with its own status.
pub(crate) struct FrameRing {
    pub map: Mapping,
    pub block_size: usize,
    pub frame_size: usize,
    pub frames_per_block: usize,
    pub frame_nr: usize,
    /// Offset of each slot in the mapping (precomputed: the block/slot division would cost a
    /// few integer divisions per frame).
    offsets: Box<[usize]>,
    /// Slot to read next.
    cur: usize,
    /// The slot handed out last and not yet given back.
    held: Option<usize>,
}

impl FrameRing {
    pub fn new(map: Mapping, block_size: usize, frame_size: usize, frame_nr: usize) -> Self {
        let frames_per_block = block_size / frame_size;
        let offsets = (0..frame_nr)
            .map(|i| (i / frames_per_block) * block_size + (i % frames_per_block) * frame_size)
            .collect();
        Self {
            map,
            block_size,
            frame_size,
            frames_per_block,
            frame_nr,
            offsets,
            cur: 0,
            held: None,
        }
    }

    fn slot(&self, i: usize) -> *mut u8 {
        // SAFETY: offsets[i] (i < frame_nr, bounds-checked by the index) is the start of slot
        // i, which lies inside the mapping: frame_nr = frames_per_block * block_nr and frames
        // never straddle blocks.
        unsafe { self.map.ptr.add(self.offsets[i]) }
    }

    fn slot_status(&self, i: usize) -> &AtomicU32 {
        let h = self.slot(i).cast::<libc::tpacket2_hdr>();
        // SAFETY: the header lies at the start of the slot, 16-aligned (page-aligned blocks,
        // frame size a multiple of TPACKET_ALIGNMENT); the kernel writes tp_status
        // concurrently, so it is accessed only atomically. The reference lives no longer
        // than `self`, which owns the mapping.
        unsafe { AtomicU32::from_ptr(&raw mut (*h).tp_status) }
    }

    /// Gives the slot handed out last back to the kernel.
    pub fn release_done(&mut self) {
        if let Some(i) = self.held.take() {
            self.slot_status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }

    /// Starts loading the slot `PREFETCH_AHEAD` after `i` (its header and the first 128 bytes
    /// after it, where a small frame lies) while frame `i` is copied out: under load the slots
    /// ahead are already written, by the kernel on another CPU, and each one's first read is a
    /// cache miss that the copy loop would otherwise wait for, one slot at a time.
    #[inline]
    fn prefetch_ahead(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let j = (i + PREFETCH_AHEAD) % self.frame_nr;
            let slot = self.slot(j);
            for line in [0, 64, 128] {
                // SAFETY: a prefetch only hints the cache: it reads nothing into the program
                // and never faults, whatever the address (here slot j of the mapping).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(slot.wrapping_add(line).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    pub fn next_frame(&mut self) -> Next<'_> {
        self.release_done();
        let i = self.cur;
        let status = self.slot_status(i).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return Next::Empty;
        }
        self.held = Some(i);
        self.cur = if i + 1 == self.frame_nr { 0 } else { i + 1 };
        self.prefetch_ahead(i);
        let slot = self.slot(i);
        // SAFETY: the slot is user-owned (acquire above) and starts with its header.
        let h = unsafe { std::ptr::read(slot.cast::<libc::tpacket2_hdr>()) };
        let mac = h.tp_mac as usize;
        let head = FrameHead {
            status: h.tp_status,
            wire_len: h.tp_len as usize,
            mac,
            snaplen: h.tp_snaplen as usize,
            vlan: vlan_of(h.tp_status, h.tp_vlan_tci, h.tp_vlan_tpid),
        };
        // SAFETY: the slot is user-owned until release_done, which needs &mut self, so the
        // returned slices (borrowing self) cannot outlive our ownership of it.
        match unsafe { head.frame_in(slot, self.frame_size) } {
            Some(f) => Next::Frame(f),
            None => Next::Corrupt,
        }
    }
}

/// The receive ring of a port, either layout.
pub(crate) enum RxRing {
    Blocks(BlockRing),
    Frames(FrameRing),
}

impl RxRing {
    pub fn next_frame(&mut self) -> Next<'_> {
        match self {
            Self::Blocks(r) => r.next_frame(),
            Self::Frames(r) => r.next_frame(),
        }
    }

    pub fn release_done(&mut self) {
        match self {
            Self::Blocks(r) => r.release_done(),
            Self::Frames(r) => r.release_done(),
        }
    }
}
