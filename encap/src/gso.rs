//! Software segmentation offload (GSO) and checksum completion, for super-frames that must
//! leave through a port that cannot take them whole (a TAP without vnet headers, the VXLAN
//! tunnel): what a NIC's TSO engine or the kernel's `skb_gso_segment` would do.
//!
//! A *super-frame* is one set of Ethernet/IP/L4 headers followed by a payload larger than one
//! segment; its L4 checksum field holds only the pseudo-header partial sum. [`GsoPlan`]
//! validates the headers once (the sender's `hdr_len` is only a hint and is not trusted) and
//! then writes segment `i` into any buffer the caller provides ([`GsoPlan::write`]), so the
//! datapath can segment straight into its transmit buffers; [`segment`] is the convenience
//! loop over a reusable scratch buffer. Nothing is allocated per segment.
//!
//! Per TCP segment: headers copied; IPv4 total length, identification (+i) and header
//! checksum, or IPv6 payload length; sequence number + payload offset; FIN and PSH only on the
//! last segment, CWR only on the first; the full TCP checksum. UDP (`GSO_UDP_L4`): each
//! segment is a datagram with its own UDP length and checksum.
//!
//! [`complete_checksum`] finishes a partial checksum (virtio `NEEDS_CSUM`) given where the
//! checksummed area starts and where the field is: the canonical helper for that job.

use thiserror::Error;

use crate::checksum;

/// What the super-frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4.
    Tcp4,
    /// TCP over IPv6.
    Tcp6,
    /// UDP datagrams of `mss` payload bytes each, over IPv4 or IPv6.
    Udp,
}

/// The segmentation request that came with a super-frame (virtio-net header fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GsoInfo {
    pub kind: GsoKind,
    /// Payload bytes per segment (TCP MSS or UDP payload size).
    pub mss: u16,
    /// Length of the headers as the sender gave it; only a hint (the headers are parsed).
    pub hdr_len: u16,
}

/// Why a super-frame cannot be segmented or a checksum completed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// The frame ends inside its headers.
    #[error("frame too short for its headers ({len} bytes)")]
    TooShort { len: usize },
    /// The EtherType is not IPv4/IPv6 (after up to two VLAN tags), or not the one `kind` needs.
    #[error("GSO {kind:?} frame does not carry the matching IP version")]
    WrongL3 { kind: GsoKind },
    /// The IP header's next protocol is not the one `kind` needs (or IPv6 extension headers).
    #[error("GSO {kind:?} frame carries IP protocol {proto}")]
    WrongL4 { kind: GsoKind, proto: u8 },
    /// Header lengths that make no sense (IPv4 IHL < 5, TCP data offset < 5, ...).
    #[error("malformed {what} header")]
    BadHeader { what: &'static str },
    /// The IP length claims more bytes than the frame has.
    #[error("IP length says {ip_end} bytes, frame has {len}")]
    LengthMismatch { ip_end: usize, len: usize },
    /// A segment size of zero.
    #[error("GSO segment size is 0")]
    ZeroMss,
    /// The buffer given for a segment is smaller than the segment.
    #[error("segment needs {need} bytes, buffer has {have}")]
    BufferTooSmall { need: usize, have: usize },
    /// `csum_start`/`csum_offset` point outside the frame.
    #[error("checksum position {start}+{offset} is outside the {len}-byte frame")]
    BadCsumPosition {
        start: usize,
        offset: usize,
        len: usize,
    },
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Where the L3 header starts and which EtherType it has, after up to two VLAN tags.
pub(crate) fn l3_of(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    for _ in 0..3 {
        let t = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        if t == 0x8100 || t == 0x88a8 {
            off += 4;
            continue;
        }
        return Some((off + 2, t));
    }
    None
}

/// A validated super-frame: header offsets and segment count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsoPlan {
    v4: bool,
    tcp: bool,
    l3: usize,
    l4: usize,
    /// End of all headers: the payload starts here.
    hdr_len: usize,
    /// End of the IP packet (Ethernet padding, if any, lies behind it).
    end: usize,
    mss: usize,
    segments: usize,
}

impl GsoPlan {
    /// Parses and checks the super-frame's headers against `gso`.
    pub fn new(frame: &[u8], gso: &GsoInfo) -> Result<Self, GsoError> {
        let too_short = GsoError::TooShort { len: frame.len() };
        if gso.mss == 0 {
            return Err(GsoError::ZeroMss);
        }
        let (l3, ethertype) = l3_of(frame).ok_or(too_short)?;
        let v4 = match (gso.kind, ethertype) {
            (GsoKind::Tcp4 | GsoKind::Udp, 0x0800) => true,
            (GsoKind::Tcp6 | GsoKind::Udp, 0x86dd) => false,
            _ => return Err(GsoError::WrongL3 { kind: gso.kind }),
        };
        let ip = frame.get(l3..).ok_or(too_short)?;
        let (l4, proto, end) = if v4 {
            if ip.len() < 20 {
                return Err(too_short);
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 {
                return Err(GsoError::BadHeader { what: "IPv4" });
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            (l3 + ihl, ip[9], l3 + total)
        } else {
            if ip.len() < 40 {
                return Err(too_short);
            }
            if ip[0] >> 4 != 6 {
                return Err(GsoError::BadHeader { what: "IPv6" });
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            (l3 + 40, ip[6], l3 + 40 + plen)
        };
        let tcp = gso.kind != GsoKind::Udp;
        let want = if tcp { 6 } else { 17 };
        if proto != want {
            return Err(GsoError::WrongL4 {
                kind: gso.kind,
                proto,
            });
        }
        if end > frame.len() {
            return Err(GsoError::LengthMismatch {
                ip_end: end,
                len: frame.len(),
            });
        }
        let l4_len = if tcp {
            let off = *frame.get(l4 + 12).ok_or(too_short)?;
            let doff = usize::from(off >> 4) * 4;
            if doff < 20 {
                return Err(GsoError::BadHeader { what: "TCP" });
            }
            doff
        } else {
            8
        };
        let hdr_len = l4 + l4_len;
        if hdr_len > end {
            return Err(too_short);
        }
        let mss = usize::from(gso.mss);
        let payload = end - hdr_len;
        Ok(Self {
            v4,
            tcp,
            l3,
            l4,
            hdr_len,
            end,
            mss,
            segments: payload.div_ceil(mss).max(1),
        })
    }

    /// Number of segments (at least 1, even for an empty payload).
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Length of all headers in front of the payload.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// Largest segment: headers plus one MSS.
    pub fn max_segment_len(&self) -> usize {
        self.hdr_len + self.mss.min(self.end - self.hdr_len)
    }

    /// Payload range of segment `i` within the super-frame.
    fn payload_range(&self, i: usize) -> (usize, usize) {
        let start = self.hdr_len + i * self.mss;
        (start, (start + self.mss).min(self.end))
    }

    /// Writes segment `i` (of [`GsoPlan::segments`]) of `frame` into the front of `dst` and
    /// returns its length. `frame` must be the frame the plan was made from.
    pub fn write(&self, frame: &[u8], i: usize, dst: &mut [u8]) -> Result<usize, GsoError> {
        if frame.len() < self.end {
            return Err(GsoError::LengthMismatch {
                ip_end: self.end,
                len: frame.len(),
            });
        }
        let i = i.min(self.segments - 1);
        let (p0, p1) = self.payload_range(i);
        let h = self.hdr_len;
        let seg_len = h + (p1 - p0);
        if dst.len() < seg_len {
            return Err(GsoError::BufferTooSmall {
                need: seg_len,
                have: dst.len(),
            });
        }
        let seg = &mut dst[..seg_len];
        seg[..h].copy_from_slice(&frame[..h]);
        seg[h..].copy_from_slice(&frame[p0..p1]);
        let (l3, l4) = (self.l3, self.l4);
        let l4_len = seg_len - l4;
        if self.v4 {
            let total = (seg_len - l3) as u16;
            seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            let id = u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]]).wrapping_add(i as u16);
            seg[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            seg[l3 + 10..l3 + 12].fill(0);
            let c = checksum::ipv4_header(&seg[l3..l4]);
            seg[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let plen = (seg_len - l3 - 40) as u16;
            seg[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let field = if self.tcp {
            let seq = u32::from_be_bytes([seg[l4 + 4], seg[l4 + 5], seg[l4 + 6], seg[l4 + 7]])
                .wrapping_add((p0 - h) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < self.segments {
                seg[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                seg[l4 + 13] &= !TCP_CWR;
            }
            l4 + 16
        } else {
            seg[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4 + 6
        };
        seg[field..field + 2].fill(0);
        let proto = if self.tcp { 6 } else { 17 };
        let pseudo = if self.v4 {
            let a = |o: usize| [seg[o], seg[o + 1], seg[o + 2], seg[o + 3]].into();
            checksum::pseudo_header_v4(a(l3 + 12), a(l3 + 16), proto, l4_len as u16)
        } else {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&seg[l3 + 8..l3 + 24]);
            d.copy_from_slice(&seg[l3 + 24..l3 + 40]);
            checksum::pseudo_header_v6(&s.into(), &d.into(), proto, l4_len as u32)
        };
        let mut c = checksum::finish(pseudo, &seg[l4..]);
        if !self.tcp {
            c = checksum::udp_nonzero(c);
        }
        seg[field..field + 2].copy_from_slice(&c.to_be_bytes());
        Ok(seg_len)
    }
}

/// Segments `frame` and calls `out` with each segment in order, built in `scratch` (grown
/// once to the largest segment, then reused). Returns the number of segments.
pub fn segment(
    frame: &[u8],
    gso: &GsoInfo,
    scratch: &mut Vec<u8>,
    mut out: impl FnMut(&[u8]),
) -> Result<usize, GsoError> {
    let plan = GsoPlan::new(frame, gso)?;
    let need = plan.max_segment_len();
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    for i in 0..plan.segments() {
        let n = plan.write(frame, i, scratch)?;
        out(&scratch[..n]);
    }
    Ok(plan.segments())
}

/// Where SCTP's checksum sits in its common header.
const SCTP_CRC_OFFSET: usize = 8;

/// Completes a partial L4 checksum (virtio `NEEDS_CSUM`, AF_PACKET `CSUMNOTREADY`): the field
/// at `csum_start + csum_offset` holds the pseudo-header sum; the one's-complement sum from
/// `csum_start` to the end of the IP packet (or of the frame, when no IP header is found) is
/// folded, complemented and stored there. A UDP result of 0 (`csum_offset` 6) is stored as
/// 0xffff. At `csum_offset` 8 (SCTP) the CRC32c of the packet is stored instead. This is the
/// canonical helper; [`crate::rewrite::complete_l4_checksum`] does the same from parsed
/// offsets.
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), GsoError> {
    let field = csum_start + csum_offset;
    let mut end = frame.len();
    if let Some((l3, t)) = l3_of(frame) {
        let ip_end = match t {
            0x0800 if frame.len() >= l3 + 4 => {
                Some(l3 + usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]])))
            }
            0x86dd if frame.len() >= l3 + 6 => {
                Some(l3 + 40 + usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]])))
            }
            _ => None,
        };
        // Trust the IP length only when it is consistent: it cuts Ethernet padding off.
        if let Some(e) = ip_end.filter(|&e| e <= frame.len() && e >= field + 2) {
            end = e;
        }
    }
    // Offset 8 is SCTP's CRC32c (the kernel's `csum_not_inet`: veth offloads it too), 4
    // bytes, stored little-endian; no Internet checksum sits at 8.
    let width = if csum_offset == SCTP_CRC_OFFSET { 4 } else { 2 };
    if field + width > end {
        return Err(GsoError::BadCsumPosition {
            start: csum_start,
            offset: csum_offset,
            len: frame.len(),
        });
    }
    if width == 4 {
        frame[field..field + 4].fill(0);
        let crc = checksum::crc32c(&frame[csum_start..end]);
        frame[field..field + 4].copy_from_slice(&crc.to_le_bytes());
        return Ok(());
    }
    let mut c = !checksum::fold(checksum::sum(0, &frame[csum_start..end]));
    if csum_offset == 6 {
        c = checksum::udp_nonzero(c);
    }
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}
