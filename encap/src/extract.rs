//! One-pass flow-key extraction: frame bytes -> [`FlowKey`] L2..L4 fields + [`Parsed`] offsets.
//!
//! The parser reads each header once, at most two VLAN tags, and IPv6 extension headers up to
//! the transport header. It never allocates and never panics: a malformed frame yields a key
//! holding whatever could be parsed before the fault, and `Parsed::error` names the fault.
//! The L2..L4 part of the key is zeroed first, so a key can be reused from packet to packet;
//! the pipeline metadata, tunnel and conntrack fields are left to the caller.

use crate::flowkey::{FRAG_ANY, FRAG_LATER, FlowKey, VLAN_PRESENT};
use crate::wire::ipv6::skip_extension_headers;
use crate::wire::{IpProtocol, WireError};

const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const MAX_VLAN_TAGS: u8 = 2;
const ARP_LEN: usize = 28;
const IPV4_MIN_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_MIN_LEN: usize = 20;
const UDP_LEN: usize = 8;
const ICMP_LEN: usize = 8;

const ETH_TYPE_IPV4: u16 = 0x0800;
const ETH_TYPE_ARP: u16 = 0x0806;
/// Reverse ARP: the ARP packet format, parsed alike (as Open vSwitch's `flow_extract`).
const ETH_TYPE_RARP: u16 = 0x8035;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const ETH_TYPE_VLAN: u16 = 0x8100;
const ETH_TYPE_QINQ: u16 = 0x88a8;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;
/// The SCTP common header: ports, verification tag, CRC32c.
const SCTP_LEN: usize = 12;

/// Word index of `eth_dst` in `FlowKey::words()`: everything from there on is L2..L4.
const L2_FIRST_WORD: usize = core::mem::offset_of!(FlowKey, eth_dst) / 8;
const _: () = assert!(core::mem::offset_of!(FlowKey, eth_dst).is_multiple_of(8));
/// Word index of `nw_src`: everything from there on is L3..L4.
const L3_FIRST_WORD: usize = core::mem::offset_of!(FlowKey, nw_src) / 8;
const _: () = assert!(core::mem::offset_of!(FlowKey, nw_src).is_multiple_of(8));

/// What was wrong with an IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Fault {
    /// The version nibble is not 4.
    Version,
    /// IHL below 5 words.
    Ihl,
    /// Total length below the header length.
    TotalLen,
}

/// Why parsing stopped early. The key holds every field parsed before the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than an Ethernet header (14 bytes).
    #[error("frame shorter than an Ethernet header")]
    Runt,
    /// An EtherType announced a VLAN tag but fewer than 4 bytes follow.
    #[error("VLAN tag cut short")]
    TruncatedVlan,
    /// An IPv4-over-Ethernet ARP packet shorter than 28 bytes.
    #[error("ARP packet cut short")]
    TruncatedArp,
    /// Fewer bytes than the IPv4 header or its total length announce.
    #[error("IPv4 packet cut short")]
    TruncatedIpv4,
    #[error("bad IPv4 header: {0:?}")]
    BadIpv4Header(Ipv4Fault),
    /// Fewer bytes than the IPv6 header or its payload length announce.
    #[error("IPv6 packet cut short")]
    TruncatedIpv6,
    /// EtherType 0x86dd with a version nibble other than 6.
    #[error("bad IPv6 version")]
    BadIpv6Version,
    /// An IPv6 extension header runs past the end of the payload.
    #[error("IPv6 extension header cut short")]
    TruncatedIpv6Ext,
    /// The TCP, UDP or ICMP header is cut short.
    #[error("transport header cut short")]
    TruncatedL4,
    /// TCP data offset below 5 words or past the end of the segment.
    #[error("bad TCP data offset")]
    BadTcpOffset,
}

/// Which network-layer header `Parsed::l3_offset` points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L3Kind {
    /// No network header recognised (unknown EtherType, runt, truncated VLAN).
    #[default]
    None,
    Ipv4,
    Ipv6,
    Arp,
}

/// Offsets found while extracting a key, so that actions never re-parse.
///
/// Offsets are from the start of the frame. `l3_offset` is where the header after the VLAN
/// tags starts (for any EtherType). `l4_offset` is set when the IP header was valid and the
/// packet is not a later fragment. `payload_offset` is set when the TCP/UDP/ICMP header was
/// complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    l3: u32,
    l4: u32,
    payload: u32,
    /// End of the network packet (IPv4 total length / IPv6 payload length), Ethernet padding
    /// excluded; 0 when unknown.
    l3_end: u32,
    /// Number of VLAN tags parsed (0..=2).
    pub vlans: u8,
    pub l3_kind: L3Kind,
    /// The transport protocol when `l4_offset` is set (IPv6: after extension headers).
    pub l4_proto: u8,
    pub error: Option<ParseError>,
    /// The IPv6 Fragment header's identification (0 without one).
    ipv6_frag_id: u32,
}

impl Parsed {
    #[inline]
    fn opt(v: u32) -> Option<usize> {
        if v == 0 { None } else { Some(v as usize) }
    }

    #[inline]
    pub fn l3_offset(&self) -> Option<usize> {
        Self::opt(self.l3)
    }

    #[inline]
    pub fn l4_offset(&self) -> Option<usize> {
        Self::opt(self.l4)
    }

    #[inline]
    pub fn payload_offset(&self) -> Option<usize> {
        Self::opt(self.payload)
    }

    /// End of the IP packet within the frame (padding excluded), when an IP header was valid.
    #[inline]
    pub fn l3_end(&self) -> Option<usize> {
        Self::opt(self.l3_end)
    }

    /// The identification of an IPv6 fragment (its Fragment header's, 32 bits): with the
    /// addresses it names the datagram, as the IPv4 header's identification does. 0 for a
    /// packet without a Fragment header.
    #[inline]
    pub fn ipv6_frag_id(&self) -> u32 {
        self.ipv6_frag_id
    }

    #[inline]
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

#[inline(always)]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn mac(b: &[u8], at: usize) -> [u8; 6] {
    [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]
}

/// Fills the L2..L4 fields of `key` from `frame` and returns the offsets (and the fault, if
/// any). Leaves `in_port`, `recirc_id`, `metadata`, `regs`, `tun_*` and `ct_*` untouched.
///
/// A faulty layer contributes nothing, as in Open vSwitch's `miniflow_extract`: an IPv4/IPv6
/// header that is cut short or inconsistent leaves every L3 and L4 field zero (the EtherType
/// and VLAN stay), a cut-short transport header leaves the L4 fields zero. Such a packet is
/// matched on what was parsed; its offsets stop before the faulty layer, so rewrites of that
/// layer leave it alone.
#[inline]
pub fn extract(frame: &[u8], key: &mut FlowKey) -> Parsed {
    for w in &mut key.words_mut()[L2_FIRST_WORD..] {
        *w = 0;
    }
    let mut parsed = Parsed::default();
    if frame.len() < ETH_HEADER_LEN {
        parsed.error = Some(ParseError::Runt);
        return parsed;
    }
    key.eth_dst = mac(frame, 0);
    key.eth_src = mac(frame, 6);
    let mut eth_type = rd16(frame, 12);
    let mut off = ETH_HEADER_LEN;

    while (eth_type == ETH_TYPE_VLAN || eth_type == ETH_TYPE_QINQ) && parsed.vlans < MAX_VLAN_TAGS {
        if frame.len() < off + VLAN_TAG_LEN {
            parsed.error = Some(ParseError::TruncatedVlan);
            return parsed;
        }
        if parsed.vlans == 0 {
            key.vlan_tci = rd16(frame, off) | VLAN_PRESENT;
        }
        eth_type = rd16(frame, off + 2);
        off += VLAN_TAG_LEN;
        parsed.vlans += 1;
    }
    key.eth_type = eth_type;
    parsed.l3 = off as u32;

    match eth_type {
        ETH_TYPE_IPV4 => parse_ipv4(frame, off, key, &mut parsed),
        ETH_TYPE_IPV6 => parse_ipv6(frame, off, key, &mut parsed),
        ETH_TYPE_ARP | ETH_TYPE_RARP => parse_arp(frame, off, key, &mut parsed),
        _ => {}
    }
    match parsed.error {
        None => {}
        Some(
            ParseError::TruncatedIpv4
            | ParseError::BadIpv4Header(_)
            | ParseError::TruncatedIpv6
            | ParseError::BadIpv6Version,
        ) => {
            for w in &mut key.words_mut()[L3_FIRST_WORD..] {
                *w = 0;
            }
            parsed.l4 = 0;
            parsed.payload = 0;
            parsed.l3_end = 0;
        }
        Some(_) => {
            key.tp_src = 0;
            key.tp_dst = 0;
            key.tcp_flags = 0;
            key.icmp_type = 0;
            key.icmp_code = 0;
            parsed.payload = 0;
        }
    }
    parsed
}

#[inline(always)]
fn parse_arp(frame: &[u8], off: usize, key: &mut FlowKey, parsed: &mut Parsed) {
    parsed.l3_kind = L3Kind::Arp;
    if frame.len() < off + ARP_LEN {
        parsed.error = Some(ParseError::TruncatedArp);
        return;
    }
    let a = &frame[off..off + ARP_LEN];
    // Only IPv4 over Ethernet has a meaning for the arp_* fields.
    if rd16(a, 0) == 1 && rd16(a, 2) == ETH_TYPE_IPV4 && a[4] == 6 && a[5] == 4 {
        key.arp_op = rd16(a, 6);
        key.arp_sha = mac(a, 8);
        key.arp_spa = rd32(a, 14);
        key.arp_tha = mac(a, 18);
        key.arp_tpa = rd32(a, 24);
    }
}

#[inline(always)]
fn parse_ipv4(frame: &[u8], off: usize, key: &mut FlowKey, parsed: &mut Parsed) {
    parsed.l3_kind = L3Kind::Ipv4;
    if frame.len() < off + IPV4_MIN_LEN {
        parsed.error = Some(ParseError::TruncatedIpv4);
        return;
    }
    let h = &frame[off..off + IPV4_MIN_LEN];
    let ver_ihl = h[0];
    if ver_ihl >> 4 != 4 {
        parsed.error = Some(ParseError::BadIpv4Header(Ipv4Fault::Version));
        return;
    }
    key.nw_tos = h[1];
    key.nw_ttl = h[8];
    key.nw_proto = h[9];
    key.nw_src = rd32(h, 12);
    key.nw_dst = rd32(h, 16);
    let frag = rd16(h, 6);
    let later = frag & 0x1fff != 0;
    if later || frag & 0x2000 != 0 {
        key.nw_frag = if later {
            FRAG_ANY | FRAG_LATER
        } else {
            FRAG_ANY
        };
    }

    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_LEN {
        parsed.error = Some(ParseError::BadIpv4Header(Ipv4Fault::Ihl));
        return;
    }
    let total_len = rd16(h, 2) as usize;
    if frame.len() < off + ihl {
        parsed.error = Some(ParseError::TruncatedIpv4);
        return;
    }
    if total_len < ihl {
        parsed.error = Some(ParseError::BadIpv4Header(Ipv4Fault::TotalLen));
        return;
    }
    let end = off + total_len;
    if frame.len() < end {
        parsed.error = Some(ParseError::TruncatedIpv4);
        return;
    }
    parsed.l3_end = end as u32;
    if later {
        return;
    }
    let l4 = off + ihl;
    parsed.l4 = l4 as u32;
    parsed.l4_proto = key.nw_proto;
    parse_l4(&frame[..end], l4, key.nw_proto, PROTO_ICMP, key, parsed);
}

#[inline(always)]
fn parse_ipv6(frame: &[u8], off: usize, key: &mut FlowKey, parsed: &mut Parsed) {
    parsed.l3_kind = L3Kind::Ipv6;
    if frame.len() < off + IPV6_HEADER_LEN {
        parsed.error = Some(ParseError::TruncatedIpv6);
        return;
    }
    let h = &frame[off..off + IPV6_HEADER_LEN];
    let vtf = rd32(h, 0);
    if vtf >> 28 != 6 {
        parsed.error = Some(ParseError::BadIpv6Version);
        return;
    }
    key.nw_tos = (vtf >> 20) as u8;
    key.ipv6_label = vtf & 0x000f_ffff;
    key.nw_ttl = h[7];
    key.ipv6_src.copy_from_slice(&h[8..24]);
    key.ipv6_dst.copy_from_slice(&h[24..40]);
    let next = h[6];
    key.nw_proto = next;
    let start = off + IPV6_HEADER_LEN;
    let end = start + rd16(h, 4) as usize;
    if frame.len() < end {
        parsed.error = Some(ParseError::TruncatedIpv6);
        return;
    }
    parsed.l3_end = end as u32;

    let mut l4 = start;
    let mut proto = next;
    if IpProtocol::from(next).is_ipv6_extension() {
        match skip_extension_headers(&frame[start..end], IpProtocol::from(next)) {
            Ok(upper) => {
                proto = upper.protocol.into();
                key.nw_proto = proto;
                if upper.fragment {
                    key.nw_frag = if upper.later_fragment {
                        FRAG_ANY | FRAG_LATER
                    } else {
                        FRAG_ANY
                    };
                    parsed.ipv6_frag_id = upper.fragment_id;
                }
                if upper.later_fragment {
                    return;
                }
                l4 = start + upper.offset;
            }
            Err(WireError::Truncated | WireError::Malformed) => {
                parsed.error = Some(ParseError::TruncatedIpv6Ext);
                return;
            }
        }
    }
    parsed.l4 = l4 as u32;
    parsed.l4_proto = proto;
    parse_l4(&frame[..end], l4, proto, PROTO_ICMPV6, key, parsed);
}

/// Parses TCP, UDP or the ICMP of this IP version (`icmp_proto`) at `l4` in `packet` (the frame
/// cut at the end of the IP packet).
#[inline(always)]
fn parse_l4(
    packet: &[u8],
    l4: usize,
    proto: u8,
    icmp_proto: u8,
    key: &mut FlowKey,
    parsed: &mut Parsed,
) {
    let avail = packet.len() - l4;
    if proto == PROTO_TCP {
        if avail < TCP_MIN_LEN {
            parsed.error = Some(ParseError::TruncatedL4);
            return;
        }
        let t = &packet[l4..l4 + TCP_MIN_LEN];
        key.tp_src = rd16(t, 0);
        key.tp_dst = rd16(t, 2);
        let off_flags = rd16(t, 12);
        key.tcp_flags = off_flags & 0x0fff;
        let hlen = ((off_flags >> 12) as usize) * 4;
        if hlen < TCP_MIN_LEN || hlen > avail {
            parsed.error = Some(ParseError::BadTcpOffset);
            return;
        }
        parsed.payload = (l4 + hlen) as u32;
    } else if proto == PROTO_UDP {
        if avail < UDP_LEN {
            parsed.error = Some(ParseError::TruncatedL4);
            return;
        }
        key.tp_src = rd16(packet, l4);
        key.tp_dst = rd16(packet, l4 + 2);
        parsed.payload = (l4 + UDP_LEN) as u32;
    } else if proto == PROTO_SCTP {
        // As Open vSwitch: a cut-short SCTP header leaves the ports unset, nothing more.
        if avail >= SCTP_LEN {
            key.tp_src = rd16(packet, l4);
            key.tp_dst = rd16(packet, l4 + 2);
            parsed.payload = (l4 + SCTP_LEN) as u32;
        }
    } else if proto == icmp_proto {
        if avail < ICMP_LEN {
            parsed.error = Some(ParseError::TruncatedL4);
            return;
        }
        key.icmp_type = packet[l4];
        key.icmp_code = packet[l4 + 1];
        parsed.payload = (l4 + ICMP_LEN) as u32;
        if icmp_proto == PROTO_ICMPV6
            && key.icmp_code == 0
            && matches!(key.icmp_type, ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT)
        {
            parse_nd(packet, l4 + ICMP_LEN, key);
        }
    }
}

/// ICMPv6 neighbor solicitation / advertisement types.
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
/// ND options carrying an Ethernet address (RFC 4861 §4.6.1), 8 bytes each.
pub const ND_OPT_SOURCE_LINKADDR: u8 = 1;
pub const ND_OPT_TARGET_LINKADDR: u8 = 2;

/// Fills `nd_target` and the link-layer address options (`nd_sll` in `arp_sha`, `nd_tll` in
/// `arp_tha`) of a neighbor solicitation/advertisement whose target starts at `off`, as Open
/// vSwitch's `parse_icmpv6`: a message too short for the target leaves all three zero; the
/// options are walked while 8 bytes remain, stopping at a zero or overlong option length; an
/// Ethernet address option given twice makes the message invalid (all three zero).
#[inline]
fn parse_nd(packet: &[u8], off: usize, key: &mut FlowKey) {
    let Some(target) = packet.get(off..off + 16) else {
        return;
    };
    let mut lla = [[0u8; 6]; 2];
    let mut off = off + 16;
    while packet.len() - off >= 8 {
        let ty = packet[off];
        let len = usize::from(packet[off + 1]) * 8;
        if len == 0 || len > packet.len() - off {
            break;
        }
        if len == 8 && (ty == ND_OPT_SOURCE_LINKADDR || ty == ND_OPT_TARGET_LINKADDR) {
            let slot = &mut lla[usize::from(ty - 1)];
            if *slot != [0; 6] {
                return;
            }
            *slot = mac(packet, off + 2);
        }
        off += len;
    }
    key.nd_target.copy_from_slice(target);
    key.arp_sha = lla[0];
    key.arp_tha = lla[1];
}

#[cfg(test)]
mod tests;
