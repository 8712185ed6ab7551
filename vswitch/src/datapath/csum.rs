//! Checksum chores of the datapath that `encap::rewrite` does not cover.

use encap::{L3Kind, Parsed, checksum};

/// Finishes an L4 checksum the sender offloaded (`csum_not_ready`): the field holds only the
/// pseudo-header sum, so compute the whole checksum over the segment.
pub fn complete_l4(frame: &mut [u8], parsed: &Parsed) {
    let (Some(l3), Some(l4), Some(end)) = (parsed.l3_offset(), parsed.l4_offset(), parsed.l3_end())
    else {
        return;
    };
    let end = end.min(frame.len());
    let field = match parsed.l4_proto {
        6 => 16,
        17 => 6,
        _ => return,
    };
    if end < l4 + field + 2 {
        return;
    }
    frame[l4 + field..l4 + field + 2].copy_from_slice(&[0, 0]);
    let c = match parsed.l3_kind {
        L3Kind::Ipv4 => {
            let ip = &frame[l3..];
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            checksum::l4_v4(src, dst, parsed.l4_proto, &frame[l4..end])
        }
        L3Kind::Ipv6 => {
            let ip = &frame[l3..];
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            checksum::l4_v6(&s.into(), &d.into(), parsed.l4_proto, &frame[l4..end])
        }
        _ => return,
    };
    let c = if parsed.l4_proto == 17 {
        checksum::udp_nonzero(c)
    } else {
        c
    };
    frame[l4 + field..l4 + field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Rewrites the IPv4 TOS byte (DSCP+ECN) with an incremental header checksum update.
pub fn set_ip_tos(frame: &mut [u8], parsed: &Parsed, tos: u8) {
    if parsed.l3_kind != L3Kind::Ipv4 {
        return;
    }
    let Some(l3) = parsed.l3_offset() else { return };
    if frame.len() < l3 + 20 {
        return;
    }
    let old = u16::from_be_bytes([frame[l3], frame[l3 + 1]]);
    frame[l3 + 1] = tos;
    let new = u16::from_be_bytes([frame[l3], frame[l3 + 1]]);
    let c = checksum::update_u16(
        u16::from_be_bytes([frame[l3 + 10], frame[l3 + 11]]),
        old,
        new,
    );
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Sets the IPv4 TTL with an incremental header checksum update.
pub fn set_ip_ttl(frame: &mut [u8], parsed: &Parsed, ttl: u8) {
    if parsed.l3_kind != L3Kind::Ipv4 {
        return;
    }
    let Some(l3) = parsed.l3_offset() else { return };
    if frame.len() < l3 + 20 {
        return;
    }
    let old = u16::from_be_bytes([frame[l3 + 8], frame[l3 + 9]]);
    frame[l3 + 8] = ttl;
    let new = u16::from_be_bytes([frame[l3 + 8], frame[l3 + 9]]);
    let c = checksum::update_u16(
        u16::from_be_bytes([frame[l3 + 10], frame[l3 + 11]]),
        old,
        new,
    );
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Writes `bytes` at `offset` inside an IPv4-over-Ethernet ARP packet (no checksum to fix).
pub fn set_arp(frame: &mut [u8], parsed: &Parsed, offset: usize, bytes: &[u8]) {
    if parsed.l3_kind != L3Kind::Arp {
        return;
    }
    let Some(l3) = parsed.l3_offset() else { return };
    if let Some(dst) = frame.get_mut(l3 + offset..l3 + offset + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Rewrites the ICMPv4 type and/or code with an incremental checksum update.
pub fn set_icmp_type_code(frame: &mut [u8], parsed: &Parsed, ty: Option<u8>, code: Option<u8>) {
    if parsed.l3_kind != L3Kind::Ipv4 || parsed.l4_proto != 1 {
        return;
    }
    let Some(l4) = parsed.l4_offset() else { return };
    if frame.len() < l4 + 4 {
        return;
    }
    let old = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
    if let Some(t) = ty {
        frame[l4] = t;
    }
    if let Some(c) = code {
        frame[l4 + 1] = c;
    }
    let new = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
    let c = checksum::update_u16(u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]), old, new);
    frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
}

/// Rewrites the identifier of an ICMPv4 echo request or reply (conntrack's "port" for ICMP,
/// changed by NAT), updating the ICMP checksum.
pub fn set_icmp_echo_id(frame: &mut [u8], parsed: &Parsed, id: u16) {
    if parsed.l3_kind != L3Kind::Ipv4 || parsed.l4_proto != 1 {
        return;
    }
    let Some(l4) = parsed.l4_offset() else { return };
    if frame.len() < l4 + 6 || !matches!(frame[l4], 0 | 8) {
        return;
    }
    let old = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]);
    if old == id {
        return;
    }
    frame[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
    let c = checksum::update_u16(u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]), old, id);
    frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
}
