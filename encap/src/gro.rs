//! Receive coalescing in software (GRO): consecutive TCP segments of one flow, queued for the
//! same port, become one super-frame that the port hands to the kernel whole (a virtio-net
//! header with `GSO_TCPV4`/`GSO_TCPV6` and a partial checksum). The receiving stack then
//! processes one packet instead of dozens, as after the kernel's own GRO.
//!
//! The rules are the kernel's `tcp_gro_receive`: same addresses, ports, IP fields (TOS/traffic
//! class, TTL/hop limit, DF), same ACK number, window and TCP options; the new segment starts
//! where the super-frame's payload ends; every segment but the last carries exactly one segment
//! size (`mss`, the first segment's payload); flags are ACK, plus PSH on the segment that ends
//! the super-frame. SYN, FIN, RST, URG, CWR/ECE, IP options, fragments, IPv6 extension headers
//! and empty payloads are never merged. A segment's checksum is verified before its bytes join
//! a super-frame (whose checksum is then recomputed by whoever completes the partial sum), so a
//! corrupted segment is never given a fresh checksum: it is forwarded on its own, as it came.
//!
//! ```text
//! let head = TcpSegment::parse(queued)?;                    // the frame already queued
//! let seg = TcpSegment::parse(next)?;                       // the frame to add
//! if continues(queued, &head, next, &seg, mss) && seg.checksum_ok(next) {
//!     buf[head.end()..][..seg.payload_len()].copy_from_slice(seg.payload(next));
//!     let head = head.grown_by(seg.payload_len());
//!     finish_super_frame(buf, &head, seg.psh(next));         // lengths, IP and partial L4 sums
//! }
//! ```

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::gso::l3_of;

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Largest IP packet a super-frame may grow to (IPv4 total length / IPv6 payload length + 40
/// are 16-bit fields; the kernel's `GSO_LEGACY_MAX_SIZE` is 65536 for the whole skb).
pub const MAX_IP_LEN: usize = 65_535 - 40;

/// A TCP segment that may take part in coalescing: its header offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    v4: bool,
    /// IP header start.
    l3: usize,
    /// TCP header start.
    l4: usize,
    /// Payload start (end of all headers).
    hdr_len: usize,
    /// End of the IP packet (Ethernet padding lies behind it).
    end: usize,
}

impl TcpSegment {
    /// The offsets of `frame` if it is a TCP segment that may be coalesced: IPv4 without
    /// options and not a fragment, or IPv6 without extension headers; flags ACK or ACK|PSH;
    /// a non-empty payload. `None` for anything else (cheap for non-TCP frames: two loads).
    #[inline]
    pub fn parse(frame: &[u8]) -> Option<TcpSegment> {
        let (l3, ethertype) = l3_of(frame)?;
        let (v4, l4, end) = match ethertype {
            0x0800 => {
                let ip = frame.get(l3..l3 + 20)?;
                // Version 4, IHL 5 (no options), TCP, not a fragment (MF clear, offset 0).
                if ip[0] != 0x45 || ip[9] != 6 || ip[6] & 0x3f != 0 || ip[7] != 0 {
                    return None;
                }
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                if total < 20 {
                    return None;
                }
                (true, l3 + 20, l3 + total)
            }
            0x86dd => {
                let ip = frame.get(l3..l3 + 40)?;
                if ip[0] >> 4 != 6 || ip[6] != 6 {
                    return None;
                }
                let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                (false, l3 + 40, l3 + 40 + plen)
            }
            _ => return None,
        };
        let tcp = frame.get(l4..l4 + 20)?;
        let doff = usize::from(tcp[12] >> 4) * 4;
        // Only ACK, optionally PSH; reserved bits (and the old NS bit) clear.
        if doff < 20 || tcp[12] & 0x0f != 0 || tcp[13] & !TCP_PSH != TCP_ACK {
            return None;
        }
        let hdr_len = l4 + doff;
        if end > frame.len() || hdr_len >= end {
            return None;
        }
        Some(TcpSegment {
            v4,
            l3,
            l4,
            hdr_len,
            end,
        })
    }

    /// TCP over IPv4 (else IPv6).
    pub fn is_v4(&self) -> bool {
        self.v4
    }

    /// Where the TCP header starts (the checksum's `csum_start`).
    pub fn l4_offset(&self) -> usize {
        self.l4
    }

    /// Length of all headers in front of the payload.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// End of the IP packet within the frame.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Payload bytes.
    pub fn payload_len(&self) -> usize {
        self.end - self.hdr_len
    }

    /// The payload bytes of `frame` (the frame this was parsed from).
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[self.hdr_len..self.end]
    }

    /// Whether the segment carries PSH (it then ends the super-frame it joins).
    pub fn psh(&self, frame: &[u8]) -> bool {
        frame[self.l4 + 13] & TCP_PSH != 0
    }

    /// The same super-frame after `n` more payload bytes were written behind it.
    pub fn grown_by(&self, n: usize) -> TcpSegment {
        TcpSegment {
            end: self.end + n,
            ..*self
        }
    }

    /// Whether the segment's TCP checksum is correct (full recompute over the pseudo-header
    /// and the segment).
    pub fn checksum_ok(&self, frame: &[u8]) -> bool {
        let l4_len = self.end - self.l4;
        let pseudo = self.pseudo(frame, l4_len);
        checksum::fold(checksum::sum(pseudo, &frame[self.l4..self.end])) == 0xffff
    }

    fn pseudo(&self, frame: &[u8], l4_len: usize) -> u32 {
        let l3 = self.l3;
        if self.v4 {
            let a = |o: usize| Ipv4Addr::new(frame[o], frame[o + 1], frame[o + 2], frame[o + 3]);
            checksum::pseudo_header_v4(a(l3 + 12), a(l3 + 16), 6, l4_len as u16)
        } else {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&frame[l3 + 8..l3 + 24]);
            d.copy_from_slice(&frame[l3 + 24..l3 + 40]);
            checksum::pseudo_header_v6(&Ipv6Addr::from(s), &Ipv6Addr::from(d), 6, l4_len as u32)
        }
    }
}

/// Whether `seg` (parsed from `frame`) may be appended to the super-frame `head` (parsed from
/// `head_frame`, whose segments carry `mss` payload bytes each): same flow and header fields,
/// contiguous sequence numbers, `head` not ended (its payload a multiple of `mss`, no PSH),
/// `seg` not longer than `mss`, and the result within [`MAX_IP_LEN`]. Checksums are not
/// looked at here ([`TcpSegment::checksum_ok`]).
pub fn continues(
    head_frame: &[u8],
    head: &TcpSegment,
    frame: &[u8],
    seg: &TcpSegment,
    mss: usize,
) -> bool {
    if head.v4 != seg.v4 || head.l3 != seg.l3 || head.hdr_len != seg.hdr_len || mss == 0 {
        return false;
    }
    let (h, s) = (head_frame, frame);
    let (l3, l4) = (head.l3, head.l4);
    let payload = head.payload_len();
    if !payload.is_multiple_of(mss)
        || seg.payload_len() > mss
        || head.end - l3 + seg.payload_len() > MAX_IP_LEN
        || h[l4 + 13] & TCP_PSH != 0
    {
        return false;
    }
    // Ethernet and VLAN headers.
    if h[..l3] != s[..l3] {
        return false;
    }
    if head.v4 {
        // TOS, DF, TTL, protocol, addresses (length, ID and header checksum may differ).
        if h[l3 + 1] != s[l3 + 1] || h[l3 + 6] != s[l3 + 6] || h[l3 + 8] != s[l3 + 8] {
            return false;
        }
        if h[l3 + 12..l3 + 20] != s[l3 + 12..l3 + 20] {
            return false;
        }
    } else {
        // Version, traffic class, flow label; hop limit; addresses.
        if h[l3..l3 + 4] != s[l3..l3 + 4] || h[l3 + 7] != s[l3 + 7] {
            return false;
        }
        if h[l3 + 8..l3 + 40] != s[l3 + 8..l3 + 40] {
            return false;
        }
    }
    // Ports; then the ACK number, data offset, window; then the options.
    if h[l4..l4 + 4] != s[l4..l4 + 4] || h[l4 + 8..l4 + 13] != s[l4 + 8..l4 + 13] {
        return false;
    }
    if h[l4 + 14..l4 + 16] != s[l4 + 14..l4 + 16]
        || h[l4 + 20..head.hdr_len] != s[l4 + 20..seg.hdr_len]
    {
        return false;
    }
    let seq = |b: &[u8]| u32::from_be_bytes([b[l4 + 4], b[l4 + 5], b[l4 + 6], b[l4 + 7]]);
    seq(s) == seq(h).wrapping_add(payload as u32)
}

/// Fixes the headers of the super-frame `head` in `frame` after payload was appended: IP
/// length (and the IPv4 header checksum), PSH when `psh`, and the TCP checksum field set to
/// the pseudo-header partial sum (virtio `NEEDS_CSUM`: the port completes it, or the kernel
/// per segment). `frame` must hold at least `head.end()` bytes.
pub fn finish_super_frame(frame: &mut [u8], head: &TcpSegment, psh: bool) {
    let (l3, l4) = (head.l3, head.l4);
    let l4_len = head.end - l4;
    if head.v4 {
        let total = (head.end - l3) as u16;
        frame[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        frame[l3 + 10..l3 + 12].fill(0);
        let c = checksum::ipv4_header(&frame[l3..l4]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        let plen = (head.end - l3 - 40) as u16;
        frame[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    }
    if psh {
        frame[l4 + 13] |= TCP_PSH;
    }
    let partial = checksum::fold(head.pseudo(frame, l4_len));
    frame[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
}
