//! In-place header rewrites on a parsed frame, with incremental checksum updates (RFC 1624):
//! the building blocks of `set_field` and NAT actions. They use the offsets in [`Parsed`], so
//! they never re-parse, and they fail with a named reason instead of touching a frame whose
//! headers are not what the action needs.
//!
//! The L4 checksum is handled according to [`L4Checksum`]:
//! - `Complete`: the field holds a finished checksum. Address and port rewrites update it.
//!   For UDP over IPv4 a zero field means "no checksum" and is left at zero; an update that
//!   would yield zero writes 0xffff instead.
//! - `Partial` ("checksum not ready", partial checksum offload): the field holds only the
//!   non-complemented pseudo-header sum, to be finished by the NIC or kernel. Address rewrites
//!   update that partial sum (addresses are in the pseudo-header); port rewrites leave it alone
//!   (ports are not).
//!
//! The IPv4 header checksum is always a complete checksum and is always updated.
//! Fragments: a later fragment carries no L4 header, so only the IP header changes; the L4
//! checksum of a fragmented datagram cannot be fixed fragment by fragment.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::extract::{L3Kind, Parsed};
use crate::wire::{EthernetAddress, arp, icmpv4, icmpv6, ipv4, ipv6, tcp, udp};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_SCTP: u8 = 132;

/// What the L4 checksum field holds; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Checksum {
    /// A finished checksum.
    #[default]
    Complete,
    /// Only the pseudo-header sum, not complemented ("checksum not ready").
    Partial,
}

/// Why a rewrite was refused. The frame is left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("not an IPv4 packet with a valid header")]
    NotIpv4,
    #[error("not an IP packet with a valid header")]
    NotIp,
    #[error("no complete TCP or UDP header to rewrite ports in")]
    NoPorts,
    #[error("the frame is shorter than the parsed offsets say (was it parsed from this frame?)")]
    FrameTooShort,
    #[error("TTL or hop limit would reach zero")]
    TtlExpired,
    #[error("not an ICMPv4 message with a complete header")]
    NotIcmpv4,
    #[error("not an ICMPv4 echo request or reply")]
    NotIcmpv4Echo,
    #[error("not an ICMPv4 error quoting an IPv4 header")]
    NoQuotedHeader,
    #[error("not an ICMPv6 message with a complete header")]
    NotIcmpv6,
    #[error("not an ICMPv6 echo request or reply")]
    NotIcmpv6Echo,
    #[error("not an ICMPv6 error quoting an IPv6 header")]
    NoQuotedIpv6Header,
    #[error("not an IPv4-over-Ethernet ARP packet")]
    NotArp,
    #[error("not an IPv6 neighbor solicitation or advertisement with its target")]
    NotNd,
    #[error("the neighbor discovery message has no such link-layer address option first")]
    NoNdOption,
}

#[inline]
fn ipv4_l3(frame: &[u8], parsed: &Parsed) -> Result<usize, RewriteError> {
    match (parsed.l3_kind, parsed.l3_offset(), parsed.l3_end()) {
        (L3Kind::Ipv4, Some(l3), Some(_)) if frame.len() >= l3 + ipv4::MIN_HEADER_LEN => Ok(l3),
        (L3Kind::Ipv4, Some(_), Some(_)) => Err(RewriteError::FrameTooShort),
        _ => Err(RewriteError::NotIpv4),
    }
}

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Offset of the TCP/UDP checksum field when the L4 header is complete, with the protocol.
#[inline]
fn l4_checksum_at(frame: &[u8], parsed: &Parsed) -> Option<(usize, u8)> {
    let l4 = parsed.l4_offset()?;
    parsed.payload_offset()?;
    let at = match parsed.l4_proto {
        PROTO_TCP => l4 + tcp::CHECKSUM_OFFSET,
        PROTO_UDP => l4 + udp::CHECKSUM_OFFSET,
        _ => return None,
    };
    (frame.len() >= at + 2).then_some((at, parsed.l4_proto))
}

fn set_ipv4_addr(
    frame: &mut [u8],
    parsed: &Parsed,
    field_offset: usize,
    new: Ipv4Addr,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    let l3 = ipv4_l3(frame, parsed)?;
    let at = l3 + field_offset;
    let old = u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    let new = u32::from(new);
    if old == new {
        return Ok(());
    }
    let csum_at = l3 + ipv4::CHECKSUM_OFFSET;
    let c = checksum::update_u32(rd16(frame, csum_at), old, new);
    wr16(frame, csum_at, c);
    frame[at..at + 4].copy_from_slice(&new.to_be_bytes());

    if let Some((l4c, proto)) = l4_checksum_at(frame, parsed) {
        let cur = rd16(frame, l4c);
        let updated = match mode {
            L4Checksum::Partial => checksum::update_partial_u32(cur, old, new),
            L4Checksum::Complete if proto == PROTO_UDP && cur == 0 => 0,
            L4Checksum::Complete if proto == PROTO_UDP => {
                checksum::udp_nonzero(checksum::update_u32(cur, old, new))
            }
            L4Checksum::Complete => checksum::update_u32(cur, old, new),
        };
        wr16(frame, l4c, updated);
    }
    Ok(())
}

/// Rewrites the IPv4 source address, updating the IP and the TCP/UDP checksums.
pub fn set_ipv4_src(
    frame: &mut [u8],
    parsed: &Parsed,
    new: Ipv4Addr,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    set_ipv4_addr(frame, parsed, ipv4::SRC_ADDR_OFFSET, new, mode)
}

/// Rewrites the IPv4 destination address, updating the IP and the TCP/UDP checksums.
pub fn set_ipv4_dst(
    frame: &mut [u8],
    parsed: &Parsed,
    new: Ipv4Addr,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    set_ipv4_addr(frame, parsed, ipv4::DST_ADDR_OFFSET, new, mode)
}

fn set_port(
    frame: &mut [u8],
    parsed: &Parsed,
    field_offset: usize,
    new: u16,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    if parsed.l4_proto == PROTO_SCTP {
        return set_sctp_port(frame, parsed, field_offset, new);
    }
    let Some((l4c, proto)) = l4_checksum_at(frame, parsed) else {
        return Err(
            if parsed.l4_offset().is_some() && frame.len() < parsed.payload_offset().unwrap_or(0) {
                RewriteError::FrameTooShort
            } else {
                RewriteError::NoPorts
            },
        );
    };
    // Both port fields precede the checksum field, so `l4c` in bounds covers them.
    let at = parsed.l4_offset().unwrap_or(0) + field_offset;
    let old = rd16(frame, at);
    if old == new {
        return Ok(());
    }
    wr16(frame, at, new);
    if mode == L4Checksum::Complete {
        let cur = rd16(frame, l4c);
        let updated = if proto == PROTO_UDP {
            // Over IPv6 a zero UDP checksum is invalid anyway; keep the "none" meaning for v4.
            if cur == 0 {
                0
            } else {
                checksum::udp_nonzero(checksum::update_u16(cur, old, new))
            }
        } else {
            checksum::update_u16(cur, old, new)
        };
        wr16(frame, l4c, updated);
    }
    Ok(())
}

/// SCTP ports: the CRC32c covers the whole SCTP packet. As Open vSwitch does, the field
/// keeps whatever error it had: new = old ^ crc(before) ^ crc(after).
fn set_sctp_port(
    frame: &mut [u8],
    parsed: &Parsed,
    field_offset: usize,
    new: u16,
) -> Result<(), RewriteError> {
    let (Some(l4), Some(_)) = (parsed.l4_offset(), parsed.payload_offset()) else {
        return Err(RewriteError::NoPorts);
    };
    let end = parsed.l3_end().unwrap_or(frame.len()).min(frame.len());
    if end < l4 + 12 {
        return Err(RewriteError::FrameTooShort);
    }
    let seg = &mut frame[l4..end];
    if rd16(seg, field_offset) == new {
        return Ok(());
    }
    let old_csum = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
    seg[8..12].fill(0);
    let before = checksum::crc32c(seg);
    wr16(seg, field_offset, new);
    let after = checksum::crc32c(seg);
    seg[8..12].copy_from_slice(&(old_csum ^ before ^ after).to_le_bytes());
    Ok(())
}

/// Rewrites the TCP/UDP source port (IPv4 or IPv6), updating the checksum in `Complete` mode.
pub fn set_l4_src_port(
    frame: &mut [u8],
    parsed: &Parsed,
    new: u16,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    set_port(frame, parsed, tcp::SRC_PORT_OFFSET, new, mode)
}

/// Rewrites the TCP/UDP destination port (IPv4 or IPv6), updating the checksum in `Complete`
/// mode.
pub fn set_l4_dst_port(
    frame: &mut [u8],
    parsed: &Parsed,
    new: u16,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    set_port(frame, parsed, tcp::DST_PORT_OFFSET, new, mode)
}

/// Decrements the IPv4 TTL (updating the header checksum) or the IPv6 hop limit, and returns
/// the new value. `TtlExpired` (frame unchanged) when the value is 0 or 1: the packet must not
/// be forwarded.
pub fn dec_ttl(frame: &mut [u8], parsed: &Parsed) -> Result<u8, RewriteError> {
    let (at, csum_at) = match (parsed.l3_kind, parsed.l3_offset(), parsed.l3_end()) {
        (L3Kind::Ipv4, Some(l3), Some(_)) => {
            (l3 + ipv4::TTL_OFFSET, Some(l3 + ipv4::CHECKSUM_OFFSET))
        }
        (L3Kind::Ipv6, Some(l3), Some(_)) => (l3 + ipv6::HOP_LIMIT_OFFSET, None),
        _ => return Err(RewriteError::NotIp),
    };
    if frame.len() < at + 1 || csum_at.is_some_and(|c| frame.len() < c + 2) {
        return Err(RewriteError::FrameTooShort);
    }
    let ttl = frame[at];
    if ttl <= 1 {
        return Err(RewriteError::TtlExpired);
    }
    frame[at] = ttl - 1;
    if let Some(c) = csum_at {
        // TTL is the high byte of the word it shares with the protocol field.
        let old_word = u16::from_be_bytes([ttl, frame[at + 1]]);
        let new_word = u16::from_be_bytes([ttl - 1, frame[at + 1]]);
        let updated = checksum::update_u16(rd16(frame, c), old_word, new_word);
        wr16(frame, c, updated);
    }
    Ok(ttl - 1)
}

/// Rewrites one byte of the IPv4 header with an incremental header checksum update.
fn set_ipv4_byte(
    frame: &mut [u8],
    parsed: &Parsed,
    offset: usize,
    value: u8,
) -> Result<(), RewriteError> {
    let l3 = ipv4_l3(frame, parsed)?;
    let word = l3 + (offset & !1);
    let old = rd16(frame, word);
    frame[l3 + offset] = value;
    let new = rd16(frame, word);
    let csum_at = l3 + ipv4::CHECKSUM_OFFSET;
    let c = checksum::update_u16(rd16(frame, csum_at), old, new);
    wr16(frame, csum_at, c);
    Ok(())
}

/// Rewrites the IPv4 TOS byte (DSCP and ECN), updating the header checksum.
pub fn set_ipv4_tos(frame: &mut [u8], parsed: &Parsed, tos: u8) -> Result<(), RewriteError> {
    set_ipv4_byte(frame, parsed, ipv4::TOS_OFFSET, tos)
}

/// Sets the IPv4 TTL, updating the header checksum (see [`dec_ttl`] to decrement it).
pub fn set_ipv4_ttl(frame: &mut [u8], parsed: &Parsed, ttl: u8) -> Result<(), RewriteError> {
    set_ipv4_byte(frame, parsed, ipv4::TTL_OFFSET, ttl)
}

#[inline]
fn ipv6_l3(frame: &[u8], parsed: &Parsed) -> Result<usize, RewriteError> {
    match (parsed.l3_kind, parsed.l3_offset(), parsed.l3_end()) {
        (L3Kind::Ipv6, Some(l3), Some(_)) if frame.len() >= l3 + 40 => Ok(l3),
        (L3Kind::Ipv6, Some(_), Some(_)) => Err(RewriteError::FrameTooShort),
        _ => Err(RewriteError::NotIp),
    }
}

/// Rewrites the IPv6 source (`src`) or destination address, updating the TCP, UDP or ICMPv6
/// checksum (the addresses are in their pseudo-header).
pub fn set_ipv6_addr(
    frame: &mut [u8],
    parsed: &Parsed,
    src: bool,
    new: [u8; 16],
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    let l3 = ipv6_l3(frame, parsed)?;
    let at = l3 + if src { 8 } else { 24 };
    let mut old = [0u8; 16];
    old.copy_from_slice(&frame[at..at + 16]);
    if old == new {
        return Ok(());
    }
    frame[at..at + 16].copy_from_slice(&new);
    let (o, n) = (
        core::net::Ipv6Addr::from(old),
        core::net::Ipv6Addr::from(new),
    );
    let l4c = match l4_checksum_at(frame, parsed) {
        Some(x) => Some(x),
        None => parsed
            .l4_offset()
            .filter(|l4| parsed.l4_proto == 58 && frame.len() >= l4 + 4)
            .map(|l4| (l4 + 2, 58)),
    };
    if let Some((l4c, proto)) = l4c {
        let cur = rd16(frame, l4c);
        let updated = match mode {
            L4Checksum::Partial => !checksum::update_addr_v6(!cur, &o, &n),
            L4Checksum::Complete if proto == PROTO_UDP && cur == 0 => 0,
            L4Checksum::Complete if proto == PROTO_UDP => {
                checksum::udp_nonzero(checksum::update_addr_v6(cur, &o, &n))
            }
            L4Checksum::Complete => checksum::update_addr_v6(cur, &o, &n),
        };
        wr16(frame, l4c, updated);
    }
    Ok(())
}

/// Sets the IPv6 traffic class (the whole byte: DSCP and ECN).
pub fn set_ipv6_tclass(frame: &mut [u8], parsed: &Parsed, tc: u8) -> Result<(), RewriteError> {
    let l3 = ipv6_l3(frame, parsed)?;
    frame[l3] = (frame[l3] & 0xf0) | (tc >> 4);
    frame[l3 + 1] = (frame[l3 + 1] & 0x0f) | (tc << 4);
    Ok(())
}

/// Sets the 20-bit IPv6 flow label.
pub fn set_ipv6_label(frame: &mut [u8], parsed: &Parsed, label: u32) -> Result<(), RewriteError> {
    let l3 = ipv6_l3(frame, parsed)?;
    frame[l3 + 1] = (frame[l3 + 1] & 0xf0) | ((label >> 16) as u8 & 0x0f);
    frame[l3 + 2] = (label >> 8) as u8;
    frame[l3 + 3] = label as u8;
    Ok(())
}

/// Sets the IPv6 hop limit.
pub fn set_ipv6_hlim(frame: &mut [u8], parsed: &Parsed, hlim: u8) -> Result<(), RewriteError> {
    let l3 = ipv6_l3(frame, parsed)?;
    frame[l3 + 7] = hlim;
    Ok(())
}

/// Offset of an ICMPv4 message's header when the frame holds all 8 bytes of it.
fn icmpv4_l4(frame: &[u8], parsed: &Parsed) -> Result<usize, RewriteError> {
    match (parsed.l3_kind, parsed.l4_proto, parsed.l4_offset()) {
        (L3Kind::Ipv4, 1, Some(l4)) if frame.len() >= l4 + icmpv4::HEADER_LEN => Ok(l4),
        _ => Err(RewriteError::NotIcmpv4),
    }
}

/// Writes an ICMP or ICMPv6 message's type and/or code at `l4`, updating its checksum (the
/// two bytes are in the checksummed message, never in a pseudo-header).
fn write_type_code(frame: &mut [u8], l4: usize, msg_type: Option<u8>, code: Option<u8>) {
    let old = rd16(frame, l4);
    if let Some(t) = msg_type {
        frame[l4] = t;
    }
    if let Some(c) = code {
        frame[l4 + 1] = c;
    }
    let new = rd16(frame, l4);
    let c = checksum::update_u16(rd16(frame, l4 + 2), old, new);
    wr16(frame, l4 + 2, c);
}

/// Rewrites the ICMPv4 type and/or code, updating the ICMP checksum.
pub fn set_icmpv4_type_code(
    frame: &mut [u8],
    parsed: &Parsed,
    msg_type: Option<u8>,
    code: Option<u8>,
) -> Result<(), RewriteError> {
    let l4 = icmpv4_l4(frame, parsed)?;
    write_type_code(frame, l4, msg_type, code);
    Ok(())
}

/// Rewrites the identifier of an ICMPv4 echo request or reply (conntrack's "port" for ICMP,
/// changed by NAT), updating the ICMP checksum.
pub fn set_icmpv4_echo_id(frame: &mut [u8], parsed: &Parsed, id: u16) -> Result<(), RewriteError> {
    let l4 = icmpv4_l4(frame, parsed)?;
    if !matches!(frame[l4], 0 | 8) {
        return Err(RewriteError::NotIcmpv4Echo);
    }
    write_echo_id(frame, l4, id);
    Ok(())
}

/// Writes the echo identifier of the ICMP or ICMPv6 header at `l4` and updates its checksum
/// (the identifier is in neither pseudo-header).
fn write_echo_id(frame: &mut [u8], l4: usize, id: u16) {
    let old = rd16(frame, l4 + 4);
    if old != id {
        wr16(frame, l4 + 4, id);
        let c = checksum::update_u16(rd16(frame, l4 + 2), old, id);
        wr16(frame, l4 + 2, c);
    }
}

#[inline]
fn icmpv6_l4(frame: &[u8], parsed: &Parsed) -> Option<usize> {
    match (parsed.l3_kind, parsed.l4_proto, parsed.l4_offset()) {
        (L3Kind::Ipv6, 58, Some(l4)) if frame.len() >= l4 + icmpv6::HEADER_LEN => Some(l4),
        _ => None,
    }
}

/// Rewrites the identifier of an ICMPv6 echo request or reply (conntrack's "port" for ICMPv6,
/// changed by NAT), updating the ICMPv6 checksum.
pub fn set_icmpv6_echo_id(frame: &mut [u8], parsed: &Parsed, id: u16) -> Result<(), RewriteError> {
    let l4 = icmpv6_l4(frame, parsed)
        .filter(|&l4| matches!(frame[l4], 128 | 129))
        .ok_or(RewriteError::NotIcmpv6Echo)?;
    write_echo_id(frame, l4, id);
    Ok(())
}

/// Rewrites the ICMPv6 type and/or code, updating the ICMPv6 checksum (the two bytes are in
/// the checksummed message, not in the pseudo-header).
pub fn set_icmpv6_type_code(
    frame: &mut [u8],
    parsed: &Parsed,
    msg_type: Option<u8>,
    code: Option<u8>,
) -> Result<(), RewriteError> {
    let l4 = icmpv6_l4(frame, parsed).ok_or(RewriteError::NotIcmpv6)?;
    write_type_code(frame, l4, msg_type, code);
    Ok(())
}

/// Rewrites the header an ICMPv6 error quotes (addresses; TCP/UDP/SCTP ports or the echo
/// identifier, as far as the quote holds them) for NAT, and recomputes the ICMPv6 checksum
/// with the packet's own pseudo-header. As for ICMPv4, the quoted L4 checksum is left alone.
pub fn set_icmpv6_quoted(
    frame: &mut [u8],
    parsed: &Parsed,
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
) -> Result<(), RewriteError> {
    let (Some(l4), Some(l3), Some(end)) = (
        icmpv6_l4(frame, parsed),
        parsed.l3_offset(),
        parsed.l3_end(),
    ) else {
        return Err(RewriteError::NoQuotedIpv6Header);
    };
    let end = end.min(frame.len());
    let q = icmpv6::Packet::new_checked(&frame[l4..end])
        .ok()
        .and_then(|p| p.quoted_header())
        .ok_or(RewriteError::NoQuotedIpv6Header)?;
    let ip = l4 + icmpv6::HEADER_LEN;
    frame[ip + 8..ip + 24].copy_from_slice(&src);
    frame[ip + 24..ip + 40].copy_from_slice(&dst);
    let at = ip + q.l4_offset;
    // A quoted later fragment has no ports: its data is left as it is.
    let first = q.first_fragment;
    if first && matches!(q.protocol, PROTO_TCP | PROTO_UDP | PROTO_SCTP) && end >= at + 4 {
        wr16(frame, at, src_port);
        wr16(frame, at + 2, dst_port);
    } else if first && q.protocol == 58 && end >= at + 8 && matches!(frame[at], 128 | 129) {
        wr16(frame, at + 4, src_port);
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&frame[at..at + 16]);
        core::net::Ipv6Addr::from(a)
    };
    let (outer_src, outer_dst) = (addr(l3 + 8), addr(l3 + 24));
    wr16(frame, l4 + 2, 0);
    let c = checksum::l4_v6(&outer_src, &outer_dst, 58, &frame[l4..end]);
    wr16(frame, l4 + 2, c);
    Ok(())
}

/// Rewrites the header an ICMPv4 error quotes (addresses; TCP/UDP/SCTP ports or the ICMP echo
/// identifier, as far as the quote holds them) for NAT, recomputing the quoted IPv4 header
/// checksum and the ICMP checksum. The quoted L4 checksum is left alone: it covers bytes that
/// were cut off, so receivers do not check it.
pub fn set_icmpv4_quoted(
    frame: &mut [u8],
    parsed: &Parsed,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
) -> Result<(), RewriteError> {
    let (Some(l4), Some(end)) = (parsed.l4_offset(), parsed.l3_end()) else {
        return Err(RewriteError::NotIcmpv4);
    };
    let end = end.min(frame.len());
    let ip = l4 + icmpv4::HEADER_LEN;
    if end < ip + ipv4::MIN_HEADER_LEN {
        return Err(RewriteError::NoQuotedHeader);
    }
    let ihl = (frame[ip] & 0x0f) as usize * 4;
    if end < ip + ihl || ihl < ipv4::MIN_HEADER_LEN {
        return Err(RewriteError::NoQuotedHeader);
    }
    frame[ip + ipv4::SRC_ADDR_OFFSET..][..4].copy_from_slice(&src.octets());
    frame[ip + ipv4::DST_ADDR_OFFSET..][..4].copy_from_slice(&dst.octets());
    wr16(frame, ip + ipv4::CHECKSUM_OFFSET, 0);
    let c = checksum::ipv4_header(&frame[ip..ip + ihl]);
    wr16(frame, ip + ipv4::CHECKSUM_OFFSET, c);
    let proto = frame[ip + 9];
    let q = ip + ihl;
    // A quoted later fragment has no ports: its data is left as it is.
    let first = rd16(frame, ip + 6) & 0x1fff == 0;
    if first && matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) && end >= q + 4 {
        wr16(frame, q, src_port);
        wr16(frame, q + 2, dst_port);
    } else if first && proto == 1 && end >= q + icmpv4::HEADER_LEN {
        wr16(frame, q + 4, src_port);
    }
    wr16(frame, l4 + 2, 0);
    let c = checksum::icmpv4(&frame[l4..end]);
    wr16(frame, l4 + 2, c);
    Ok(())
}

/// Finishes a TCP/UDP checksum the sender left partial (`csum_not_ready`) from the parsed
/// offsets: the full checksum over pseudo-header and segment (Ethernet padding excluded), 0
/// written as 0xffff for UDP; for SCTP the CRC32c of the packet. For frames whose port gave the checksum's position,
/// [`crate::gso::complete_checksum`] does the same without the parse.
pub fn complete_l4_checksum(frame: &mut [u8], parsed: &Parsed) -> Result<(), RewriteError> {
    let (Some(l3), Some(l4), Some(end)) = (parsed.l3_offset(), parsed.l4_offset(), parsed.l3_end())
    else {
        return Err(RewriteError::NoPorts);
    };
    let end = end.min(frame.len());
    let field = match parsed.l4_proto {
        PROTO_TCP => tcp::CHECKSUM_OFFSET,
        PROTO_UDP => udp::CHECKSUM_OFFSET,
        // SCTP's CRC32c (veth offloads it as well), 4 bytes little-endian at offset 8.
        PROTO_SCTP if end >= l4 + 12 => {
            frame[l4 + 8..l4 + 12].fill(0);
            let crc = checksum::crc32c(&frame[l4..end]);
            frame[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
            return Ok(());
        }
        PROTO_SCTP => return Err(RewriteError::FrameTooShort),
        _ => return Err(RewriteError::NoPorts),
    };
    if end < l4 + field + 2 {
        return Err(RewriteError::FrameTooShort);
    }
    wr16(frame, l4 + field, 0);
    let c = match parsed.l3_kind {
        L3Kind::Ipv4 if frame.len() >= l3 + ipv4::MIN_HEADER_LEN => {
            let ip = &frame[l3..];
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            checksum::l4_v4(src, dst, parsed.l4_proto, &frame[l4..end])
        }
        L3Kind::Ipv6 if frame.len() >= l3 + 40 => {
            let ip = &frame[l3..];
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            checksum::l4_v6(&s.into(), &d.into(), parsed.l4_proto, &frame[l4..end])
        }
        _ => return Err(RewriteError::NotIp),
    };
    let c = if parsed.l4_proto == PROTO_UDP {
        checksum::udp_nonzero(c)
    } else {
        c
    };
    wr16(frame, l4 + field, c);
    Ok(())
}

/// The ARP fields [`set_arp`] writes (IPv4 over Ethernet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpField {
    Operation(u16),
    SenderMac([u8; 6]),
    SenderIp(Ipv4Addr),
    TargetMac([u8; 6]),
    TargetIp(Ipv4Addr),
}

/// Rewrites one field of an IPv4-over-Ethernet ARP packet (ARP has no checksum).
pub fn set_arp(frame: &mut [u8], parsed: &Parsed, value: ArpField) -> Result<(), RewriteError> {
    let l3 = match (parsed.l3_kind, parsed.l3_offset()) {
        (L3Kind::Arp, Some(l3)) if frame.len() >= l3 + arp::ETH_IPV4_LEN => l3,
        _ => return Err(RewriteError::NotArp),
    };
    let mut p = arp::Packet::new_unchecked(&mut frame[l3..]);
    match value {
        ArpField::Operation(op) => p.set_operation(op.into()),
        ArpField::SenderMac(m) => p.set_source_hardware_addr(EthernetAddress(m)),
        ArpField::SenderIp(ip) => p.set_source_protocol_addr(ip),
        ArpField::TargetMac(m) => p.set_target_hardware_addr(EthernetAddress(m)),
        ArpField::TargetIp(ip) => p.set_target_protocol_addr(ip),
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// Offset of an IPv6 neighbor solicitation/advertisement (ICMPv6 type 135 or 136, code 0)
/// and of the end of its IPv6 payload, when the 8-byte header and the 16-byte target are in
/// the frame.
fn nd_l4(frame: &[u8], parsed: &Parsed) -> Result<(usize, usize), RewriteError> {
    match (
        parsed.l3_kind,
        parsed.l4_proto,
        parsed.l4_offset(),
        parsed.l3_end(),
    ) {
        (L3Kind::Ipv6, 58, Some(l4), Some(end))
            if end >= l4 + 24
                && frame.len() >= end
                && matches!(frame[l4], 135 | 136)
                && frame[l4 + 1] == 0 =>
        {
            Ok((l4, end))
        }
        _ => Err(RewriteError::NotNd),
    }
}

/// Replaces `frame[at..at + new.len()]` (an even number of bytes at an even offset from the
/// ICMPv6 header at `l4`) and updates the ICMPv6 checksum word by word.
fn nd_write(frame: &mut [u8], l4: usize, at: usize, new: &[u8]) {
    let mut c = rd16(frame, l4 + 2);
    for (i, w) in new.chunks_exact(2).enumerate() {
        let old = rd16(frame, at + 2 * i);
        let n = u16::from_be_bytes([w[0], w[1]]);
        c = checksum::update_u16(c, old, n);
    }
    frame[at..at + new.len()].copy_from_slice(new);
    wr16(frame, l4 + 2, c);
}

/// Rewrites the target address of a neighbor solicitation/advertisement (`nd_target`),
/// updating the ICMPv6 checksum.
pub fn set_nd_target(
    frame: &mut [u8],
    parsed: &Parsed,
    target: [u8; 16],
) -> Result<(), RewriteError> {
    let (l4, _) = nd_l4(frame, parsed)?;
    if frame[l4 + 8..l4 + 24] != target {
        nd_write(frame, l4, l4 + 8, &target);
    }
    Ok(())
}

/// Rewrites the address in the source (`tll == false`, `nd_sll`) or target (`nd_tll`)
/// link-layer address option, updating the ICMPv6 checksum. As Open vSwitch's
/// `packet_set_nd`: only the first Ethernet address option of the message is looked at (a
/// message carries one); it is rewritten when it is of the kind asked for, else nothing is.
pub fn set_nd_lla(
    frame: &mut [u8],
    parsed: &Parsed,
    tll: bool,
    mac: [u8; 6],
) -> Result<(), RewriteError> {
    let (l4, end) = nd_l4(frame, parsed)?;
    let mut off = l4 + 24;
    while end - off >= 8 && frame[off + 1] != 0 {
        let ty = frame[off];
        if frame[off + 1] == 1 && (ty == 1 || ty == 2) {
            if (ty == 2) != tll {
                return Err(RewriteError::NoNdOption);
            }
            if frame[off + 2..off + 8] != mac {
                nd_write(frame, l4, off + 2, &mac);
            }
            return Ok(());
        }
        off += usize::from(frame[off + 1]) * 8;
        if off > end {
            break;
        }
    }
    Err(RewriteError::NoNdOption)
}
