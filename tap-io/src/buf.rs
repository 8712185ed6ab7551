//! Packet buffers, batches and the buffer pool.
//!
//! A [`PacketBuf`] is one preallocated byte array with *headroom* in front of the frame, so
//! encapsulation (VXLAN's 50-byte outer header, an 802.1Q tag) is prepended in place, and room
//! behind it for jumbo frames. A [`Batch`] is a fixed set of buffer *slots*: packets live in
//! slots `0..len`, the slots past `len` are spare buffers that receive into or copy into.
//! Moving a packet between batches swaps buffers, so in steady state nothing is allocated.

use std::net::Ipv4Addr;

use thiserror::Error;

/// Default headroom: room for VXLAN over IPv6 (70 bytes) plus two VLAN tags, cache-line rounded.
pub const DEFAULT_HEADROOM: usize = 128;
/// Default room for the frame itself: a 9000-byte MTU jumbo frame plus Ethernet and VLAN headers.
pub const DEFAULT_FRAME_ROOM: usize = 9216;
/// Largest batch a port is asked to move in one call.
pub const MAX_BATCH: usize = 64;

/// Errors of buffer operations.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BufError {
    /// Prepending needs more headroom than is left in front of the data.
    #[error("not enough headroom: need {need} bytes, {have} left")]
    NoHeadroom { need: usize, have: usize },
    /// Growing the data needs more room than is left behind it.
    #[error("not enough tailroom: need {need} bytes, {have} left")]
    NoTailroom { need: usize, have: usize },
    /// Removing more bytes than the packet holds.
    #[error("packet too short: need {need} bytes, packet has {have}")]
    TooShort { need: usize, have: usize },
}

/// Frame room for buffers of ports with virtio-net headers on: a 64 KiB GSO super-frame
/// (IP total length up to 65535) plus Ethernet and two VLAN tags.
pub const GSO_FRAME_ROOM: usize = 65535 + 14 + 8;

/// What kind of segmentation offload a super-frame asks for (virtio-net `gso_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4 (`VIRTIO_NET_HDR_GSO_TCPV4`).
    Tcp4,
    /// TCP over IPv6 (`VIRTIO_NET_HDR_GSO_TCPV6`).
    Tcp6,
    /// UDP segmentation by payload size, one datagram per segment (`VIRTIO_NET_HDR_GSO_UDP_L4`).
    Udp,
}

/// Segmentation offload of a super-frame: the frame holds one set of headers followed by a
/// payload that must leave as segments of at most `size` payload bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gso {
    pub kind: GsoKind,
    /// Payload bytes per segment (TCP MSS, or UDP datagram payload size).
    pub size: u16,
    /// Length of all headers (Ethernet .. L4) in front of the payload, as the sender gave it
    /// (a hint: recompute from the headers before trusting it).
    pub hdr_len: u16,
    /// The sender set ECN's CWR on the super-frame (`VIRTIO_NET_HDR_GSO_ECN`).
    pub ecn: bool,
}

/// What the receiving port learned about a packet besides its bytes. Ports with offloads
/// (see [`crate::Port::offloads`]) also *use* `gso` and `csum_*` on transmit, so keep the meta
/// with the bytes when a packet is moved or copied ([`Batch::push_copy_with_meta`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// The port number the datapath assigned to the receiving port.
    pub in_port: u32,
    /// The L4 checksum holds only the pseudo-header partial sum (virtio-net
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`, or AF_PACKET `TP_STATUS_CSUMNOTREADY`: the sender
    /// offloaded it). It must be completed before the frame leaves through a port without
    /// checksum offload (`encap::gso::complete_checksum`); clear it once completed, or a port
    /// with offloads would ask the kernel to checksum it again.
    pub csum_not_ready: bool,
    /// The receiving device or the kernel verified the L4 checksum (AF_PACKET
    /// `TP_STATUS_CSUM_VALID`, virtio-net `VIRTIO_NET_HDR_F_DATA_VALID`): conntrack takes it
    /// as good instead of summing the packet again.
    pub csum_valid: bool,
    /// Where the checksummed L4 area starts, from the frame start, when the port knows it.
    pub csum_start: Option<u16>,
    /// Offset of the checksum field from `csum_start`, when the port knows it.
    pub csum_offset: Option<u16>,
    /// The 802.1Q TCI the kernel had stripped into aux data; the tag has been re-inserted into
    /// the frame, this records that it was.
    pub vlan_tci: Option<u16>,
    /// The frame was longer than what was captured (and the bytes here are a prefix).
    pub truncated: bool,
    /// Length of the frame on the wire, which differs from the data length only when truncated.
    pub wire_len: u32,
    /// The frame is a segmentation-offload super-frame (larger than the MTU allows); it must
    /// be segmented (`encap::gso::segment`) before leaving through a port without GSO.
    pub gso: Option<Gso>,
    /// Tunnel ports ([`crate::TunnelPort`]): on receive, the VNI and outer addresses the
    /// header was stripped from; on transmit, the VNI to push and where to send.
    pub tunnel: Option<TunnelMeta>,
}

/// Tunnel metadata of a frame (see [`RxMeta::tunnel`]); kept here with the other frame
/// metadata so that the tunnel port builds on buffers, not the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelMeta {
    /// The VNI (24 bits for VXLAN).
    pub vni: u32,
    /// Outer source: the remote on receive (the local address on transmit is the socket's).
    pub src: Ipv4Addr,
    /// Outer destination: the local address on receive, the remote to send to on transmit.
    pub dst: Ipv4Addr,
}

/// One packet buffer: `[headroom | data | tailroom]` inside a fixed allocation.
#[derive(Clone)]
pub struct PacketBuf {
    mem: Box<[u8]>,
    /// Where data starts in a reset buffer (the configured headroom).
    base: usize,
    start: usize,
    len: usize,
    /// Per-packet receive metadata.
    pub meta: RxMeta,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("capacity", &self.mem.len())
            .field("meta", &self.meta)
            .finish()
    }
}

impl PacketBuf {
    /// A buffer with `headroom` bytes in front and `frame_room` bytes for the frame.
    pub fn new(headroom: usize, frame_room: usize) -> Self {
        Self {
            mem: vec![0; headroom + frame_room].into_boxed_slice(),
            base: headroom,
            start: headroom,
            len: 0,
            meta: RxMeta::default(),
        }
    }

    /// Empties the buffer and restores the full headroom; keeps the allocation.
    #[inline]
    pub fn reset(&mut self) {
        self.start = self.base;
        self.len = 0;
        self.meta = RxMeta::default();
    }

    /// For a port that receives frames without the sender's checksum state (AF_XDP, a tunnel
    /// over a veth underlay): a TCP/UDP checksum field holding exactly the pseudo-header sum,
    /// and not verifying as complete, was left partial by a sender with checksum offload
    /// (`encap::partial_csum`). Marks the buffer `csum_not_ready` with the field's position,
    /// so the output finishes it (or hands it on to a port that offloads checksums).
    pub fn mark_partial_checksum(&mut self) -> bool {
        let Some(at) = encap::partial_csum::find(self.data()) else {
            return false;
        };
        self.meta.csum_not_ready = true;
        self.meta.csum_start = Some(at.start);
        self.meta.csum_offset = Some(at.offset);
        true
    }

    /// The frame bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// The frame bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.len]
    }

    /// Frame length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free behind the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.mem.len() - self.start - self.len
    }

    /// Largest frame this buffer can hold when started at its configured headroom.
    #[inline]
    pub fn frame_room(&self) -> usize {
        self.mem.len() - self.base
    }

    /// Grows the data by `n` bytes at the front and returns those bytes to fill in.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.start {
            return Err(BufError::NoHeadroom {
                need: n,
                have: self.start,
            });
        }
        self.start -= n;
        self.len += n;
        Ok(&mut self.mem[self.start..self.start + n])
    }

    /// Removes `n` bytes from the front (e.g. an outer header after decapsulation).
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len {
            return Err(BufError::TooShort {
                need: n,
                have: self.len,
            });
        }
        self.start += n;
        self.len -= n;
        Ok(())
    }

    /// Shortens the data to `len` bytes; does nothing when it is already shorter.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Sets the data length (growing exposes whatever bytes lie there).
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<(), BufError> {
        let have = self.mem.len() - self.start;
        if len > have {
            return Err(BufError::NoTailroom { need: len, have });
        }
        self.len = len;
        Ok(())
    }

    /// Appends bytes behind the data.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        let have = self.tailroom();
        if bytes.len() > have {
            return Err(BufError::NoTailroom {
                need: bytes.len(),
                have,
            });
        }
        let end = self.start + self.len;
        self.mem[end..end + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    /// Resets the buffer and copies `frame` in at the configured headroom.
    #[inline]
    pub fn set_frame(&mut self, frame: &[u8]) -> Result<(), BufError> {
        self.reset();
        self.extend_from_slice(frame)
    }

    /// Resets the buffer and returns the whole frame room to receive into; follow with
    /// [`PacketBuf::set_len`] once the length is known.
    #[inline]
    pub fn rx_space(&mut self) -> &mut [u8] {
        self.reset();
        &mut self.mem[self.base..]
    }

    /// Inserts a 4-byte 802.1Q tag (`tpid`, `tci`) after the two MAC addresses, moving the
    /// MACs into the headroom (12 bytes moved, not the payload).
    pub fn insert_vlan_tag(&mut self, tpid: u16, tci: u16) -> Result<(), BufError> {
        if self.len < 12 {
            return Err(BufError::TooShort {
                need: 12,
                have: self.len,
            });
        }
        self.push_front(4)?;
        let s = self.start;
        self.mem.copy_within(s + 4..s + 16, s);
        self.mem[s + 12..s + 14].copy_from_slice(&tpid.to_be_bytes());
        self.mem[s + 14..s + 16].copy_from_slice(&tci.to_be_bytes());
        Ok(())
    }
}

/// Frame room for an interface with this MTU: the frame plus Ethernet header and two VLAN
/// tags, at least 2048 bytes; with `gso`, at least [`GSO_FRAME_ROOM`].
pub fn frame_room_for(mtu: usize, gso: bool) -> usize {
    let room = (mtu + 14 + 8).max(2048);
    if gso { room.max(GSO_FRAME_ROOM) } else { room }
}

/// Preallocated buffers of one size, owned by one thread (a plain free list: no locking).
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<PacketBuf>,
    headroom: usize,
    frame_room: usize,
}

impl BufferPool {
    /// A pool of `count` buffers with the given headroom and frame room.
    pub fn new(count: usize, headroom: usize, frame_room: usize) -> Self {
        let free = (0..count)
            .map(|_| PacketBuf::new(headroom, frame_room))
            .collect();
        Self {
            free,
            headroom,
            frame_room,
        }
    }

    /// A pool with [`DEFAULT_HEADROOM`] and room for frames of an interface with this MTU
    /// (plus Ethernet header and two VLAN tags), at least 2048 bytes.
    pub fn for_mtu(count: usize, mtu: usize) -> Self {
        Self::new(count, DEFAULT_HEADROOM, frame_room_for(mtu, false))
    }

    /// Like [`BufferPool::for_mtu`], but with `gso` the buffers hold a 64 KiB GSO super-frame
    /// ([`GSO_FRAME_ROOM`]): needed for ports with virtio-net headers on. Memory: about
    /// 64 KiB per buffer (a pool of 1024 is 64 MiB) instead of 2 KiB.
    pub fn for_mtu_gso(count: usize, mtu: usize, gso: bool) -> Self {
        Self::new(count, DEFAULT_HEADROOM, frame_room_for(mtu, gso))
    }

    /// Takes a reset buffer, or `None` when the pool is exhausted.
    #[inline]
    pub fn take(&mut self) -> Option<PacketBuf> {
        let mut b = self.free.pop()?;
        b.reset();
        Some(b)
    }

    /// Gives a buffer back.
    #[inline]
    pub fn give(&mut self, buf: PacketBuf) {
        self.free.push(buf);
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Headroom of this pool's buffers.
    pub fn headroom(&self) -> usize {
        self.headroom
    }

    /// Frame room of this pool's buffers.
    pub fn frame_room(&self) -> usize {
        self.frame_room
    }

    /// A batch of `slots` buffers taken from this pool, or `None` when it has too few.
    pub fn batch(&mut self, slots: usize) -> Option<Batch> {
        if self.free.len() < slots {
            return None;
        }
        let at = self.free.len() - slots;
        let bufs: Vec<PacketBuf> = self.free.drain(at..).collect();
        Some(Batch {
            slots: bufs.into_boxed_slice(),
            len: 0,
        })
    }

    /// Returns a batch's buffers to the pool.
    pub fn give_batch(&mut self, batch: Batch) {
        self.free.extend(Vec::from(batch.slots));
    }
}

/// Up to `capacity()` packets; slots past `len()` hold spare buffers.
#[derive(Debug)]
pub struct Batch {
    slots: Box<[PacketBuf]>,
    len: usize,
}

impl Batch {
    /// A batch with its own freshly allocated buffers (tests and setup; the fast path takes
    /// batches from a [`BufferPool`]).
    pub fn new(slots: usize, headroom: usize, frame_room: usize) -> Self {
        let mut pool = BufferPool::new(slots, headroom, frame_room);
        pool.batch(slots).unwrap_or_else(|| Self {
            slots: Box::new([]),
            len: 0,
        })
    }

    /// Number of packets.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the batch holds no packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Free slots.
    #[inline]
    pub fn room(&self) -> usize {
        self.slots.len() - self.len
    }

    /// True when every slot holds a packet.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == self.slots.len()
    }

    /// Drops all packets (their buffers stay as spares).
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The packets.
    #[inline]
    pub fn packets(&self) -> &[PacketBuf] {
        &self.slots[..self.len]
    }

    /// The packets, writable.
    #[inline]
    pub fn packets_mut(&mut self) -> &mut [PacketBuf] {
        &mut self.slots[..self.len]
    }

    /// Iterates over the packets.
    pub fn iter(&self) -> std::slice::Iter<'_, PacketBuf> {
        self.packets().iter()
    }

    /// Iterates mutably over the packets.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, PacketBuf> {
        self.packets_mut().iter_mut()
    }

    /// The next spare buffer, reset, to fill in; `None` when the batch is full. It becomes a
    /// packet only after [`Batch::commit`].
    #[inline]
    pub fn spare(&mut self) -> Option<&mut PacketBuf> {
        let b = self.slots.get_mut(self.len)?;
        b.reset();
        Some(b)
    }

    /// The spare buffers (slots past `len()`), not reset, for ports that fill several per
    /// call and then [`Batch::commit_n`] the first ones.
    #[inline]
    pub(crate) fn spares_mut(&mut self) -> &mut [PacketBuf] {
        &mut self.slots[self.len..]
    }

    /// Turns the first `n` spare buffers into packets.
    #[inline]
    pub fn commit_n(&mut self, n: usize) {
        self.len = (self.len + n).min(self.slots.len());
    }

    /// Turns the spare buffer returned by [`Batch::spare`] into a packet.
    #[inline]
    pub fn commit(&mut self) {
        self.commit_n(1);
    }

    /// Copies `frame` into a spare buffer and adds it; false when full or it does not fit.
    pub fn push_copy(&mut self, frame: &[u8]) -> bool {
        let Some(b) = self.spare() else {
            return false;
        };
        if b.set_frame(frame).is_err() {
            return false;
        }
        self.commit();
        true
    }

    /// Copies `frame` with its metadata into a spare buffer and adds it; false when full or
    /// it does not fit. Use this rather than [`Batch::push_copy`] when the packet may leave
    /// through a port with offloads, which builds its virtio-net header from the metadata.
    pub fn push_copy_with_meta(&mut self, frame: &[u8], meta: &RxMeta) -> bool {
        let Some(b) = self.spare() else {
            return false;
        };
        if b.set_frame(frame).is_err() {
            return false;
        }
        b.meta = *meta;
        self.commit();
        true
    }

    /// Moves packet `i` of `from` into this batch by swapping buffers (no copy): `from`'s slot
    /// `i` gets this batch's spare buffer, so `from` must not use packet `i` afterwards.
    /// False when this batch is full or `i` is out of range.
    #[inline]
    pub fn take_from(&mut self, from: &mut Batch, i: usize) -> bool {
        if self.is_full() || i >= from.len {
            return false;
        }
        std::mem::swap(&mut self.slots[self.len], &mut from.slots[i]);
        self.len += 1;
        true
    }

    /// Adds `pkt` by swapping buffers with this batch's next spare (no copy): `pkt` is left
    /// holding that spare, reset. Only between buffers of one shape (same headroom and size),
    /// so that both sides keep buffers that hold what they were sized for (a 64 KiB receive
    /// buffer never ends up in an MTU-sized transmit batch, nor the other way round). False,
    /// and nothing changed, when the batch is full or the shapes differ.
    #[inline]
    pub fn push_swap(&mut self, pkt: &mut PacketBuf) -> bool {
        let Some(spare) = self.slots.get_mut(self.len) else {
            return false;
        };
        if spare.mem.len() != pkt.mem.len() || spare.base != pkt.base {
            return false;
        }
        std::mem::swap(spare, pkt);
        pkt.reset();
        self.len += 1;
        true
    }

    /// Keeps only the packets for which `keep` returns true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&PacketBuf) -> bool) {
        let mut w = 0;
        for r in 0..self.len {
            if keep(&self.slots[r]) {
                self.slots.swap(w, r);
                w += 1;
            }
        }
        self.len = w;
    }

    /// Removes the first `n` packets, keeping the order of the rest (after a partial send).
    pub fn remove_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.slots[..self.len].rotate_left(n);
        self.len -= n;
    }
}

impl std::ops::Index<usize> for Batch {
    type Output = PacketBuf;
    fn index(&self, i: usize) -> &PacketBuf {
        &self.packets()[i]
    }
}

impl std::ops::IndexMut<usize> for Batch {
    fn index_mut(&mut self, i: usize) -> &mut PacketBuf {
        &mut self.packets_mut()[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_front_move_the_start_without_copying_payload() {
        let mut b = PacketBuf::new(128, 2048);
        b.set_frame(&[1, 2, 3, 4]).unwrap();
        let hdr = b.push_front(50).unwrap();
        hdr.fill(0xaa);
        assert_eq!(b.len(), 54);
        assert_eq!(b.headroom(), 78);
        assert_eq!(&b.data()[50..], &[1, 2, 3, 4]);
        b.pull_front(50).unwrap();
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert_eq!(
            b.push_front(129),
            Err(BufError::NoHeadroom {
                need: 129,
                have: 128
            })
        );
        assert_eq!(
            b.pull_front(5),
            Err(BufError::TooShort { need: 5, have: 4 })
        );
    }

    #[test]
    fn jumbo_frame_fits_and_oversize_is_refused() {
        let mut b = PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_FRAME_ROOM);
        assert!(b.set_frame(&vec![7u8; 9018]).is_ok());
        assert_eq!(b.len(), 9018);
        b.truncate(100);
        assert_eq!(b.len(), 100);
        b.truncate(1000);
        assert_eq!(b.len(), 100);
        assert!(b.set_len(DEFAULT_FRAME_ROOM).is_ok());
        assert!(b.set_len(DEFAULT_FRAME_ROOM + 1).is_err());
        assert!(b.set_frame(&vec![7u8; DEFAULT_FRAME_ROOM + 1]).is_err());
    }

    #[test]
    fn vlan_tag_is_inserted_after_the_macs() {
        let mut b = PacketBuf::new(128, 2048);
        let frame: Vec<u8> = (0u8..20).collect();
        b.set_frame(&frame).unwrap();
        b.insert_vlan_tag(0x8100, 0x2064).unwrap();
        let d = b.data();
        assert_eq!(&d[..12], &frame[..12]);
        assert_eq!(&d[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&d[16..], &frame[12..]);
    }

    #[test]
    fn batch_moves_packets_by_swapping_buffers() {
        let mut pool = BufferPool::new(8, 128, 2048);
        let mut a = pool.batch(4).unwrap();
        let mut b = pool.batch(4).unwrap();
        assert_eq!(pool.available(), 0);
        assert!(pool.batch(1).is_none());
        for i in 0..4u8 {
            assert!(a.push_copy(&[i; 60]));
        }
        assert!(!a.push_copy(&[9; 60]), "full batch refuses");
        assert!(b.take_from(&mut a, 2));
        assert!(b.take_from(&mut a, 0));
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].data(), &[2; 60]);
        assert_eq!(b[1].data(), &[0; 60]);
        // Slots 0 and 2 now hold b's empty spares.
        a.retain(|p| matches!(p.data().first(), Some(1 | 3)));
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].data()[0], 1);
        assert_eq!(a[1].data()[0], 3);
        a.remove_front(1);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].data()[0], 3);
        pool.give_batch(a);
        pool.give_batch(b);
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn push_copy_with_meta_keeps_the_offload_meta() {
        let mut batch = Batch::new(2, 128, GSO_FRAME_ROOM);
        let meta = RxMeta {
            in_port: 3,
            csum_not_ready: true,
            csum_start: Some(34),
            csum_offset: Some(16),
            gso: Some(Gso {
                kind: GsoKind::Tcp4,
                size: 1448,
                hdr_len: 66,
                ecn: false,
            }),
            ..RxMeta::default()
        };
        assert!(batch.push_copy_with_meta(&vec![5u8; 60000], &meta));
        assert_eq!(batch[0].meta, meta);
        assert_eq!(batch[0].len(), 60000);
        assert!(batch.push_copy(&[1; 60]));
        assert_eq!(
            batch[1].meta,
            RxMeta::default(),
            "plain copy drops the meta"
        );
        assert_eq!(frame_room_for(1500, false), 2048);
        assert_eq!(frame_room_for(1500, true), GSO_FRAME_ROOM);
        assert_eq!(frame_room_for(9000, false), 9022);
    }

    #[test]
    fn push_swap_moves_the_buffer_only_between_equal_shapes() {
        let mut tx = Batch::new(1, 128, GSO_FRAME_ROOM);
        let mut pkt = PacketBuf::new(128, GSO_FRAME_ROOM);
        pkt.set_frame(&[7; 60000]).unwrap();
        pkt.meta.csum_not_ready = true;
        let ptr = pkt.data().as_ptr();
        assert!(tx.push_swap(&mut pkt));
        assert_eq!(tx.len(), 1);
        assert_eq!(tx[0].data().as_ptr(), ptr, "the same memory, not a copy");
        assert_eq!(tx[0].len(), 60000);
        assert!(tx[0].meta.csum_not_ready);
        assert_eq!(pkt.len(), 0, "the caller gets the spare, reset");
        assert!(!pkt.meta.csum_not_ready);
        assert_eq!(pkt.frame_room(), GSO_FRAME_ROOM);
        // Full: nothing changes.
        pkt.set_frame(&[1; 10]).unwrap();
        assert!(!tx.push_swap(&mut pkt));
        assert_eq!(pkt.len(), 10);
        // Another shape: nothing changes either.
        let mut small = Batch::new(1, 128, 2048);
        assert!(!small.push_swap(&mut pkt));
        assert_eq!((small.len(), pkt.len()), (0, 10));
        let mut other_headroom = Batch::new(1, 64, GSO_FRAME_ROOM + 64);
        assert!(!other_headroom.push_swap(&mut pkt));
    }

    #[test]
    fn spare_buffers_are_reset_before_reuse() {
        let mut batch = Batch::new(2, 128, 2048);
        let s = batch.spare().unwrap();
        s.set_frame(&[1; 10]).unwrap();
        s.push_front(4).unwrap();
        s.meta.truncated = true;
        batch.commit();
        batch.clear();
        let s = batch.spare().unwrap();
        assert_eq!(s.len(), 0);
        assert_eq!(s.headroom(), 128);
        assert!(!s.meta.truncated);
    }
}
