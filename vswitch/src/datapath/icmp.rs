//! ICMP pieces of the datapath: "fragmentation needed" replies for oversized tunnel traffic,
//! and the header embedded in ICMP errors (read for conntrack, rewritten for NAT).

use encap::Parsed;
use encap::checksum;

use conntrack::InnerTuple;
use conntrack::tcp::WindowScale;
use conntrack::tuple::Addr;

fn rd16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

/// The window-scale option of a SYN (conntrack needs it to judge windows).
pub fn tcp_wscale(frame: &[u8], l4: usize, data_off: usize, flags: u16) -> WindowScale {
    if flags & 0x02 == 0 {
        return WindowScale::NotParsed;
    }
    let Some(opts) = frame.get(l4 + 20..l4 + data_off) else {
        return WindowScale::NotParsed;
    };
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                if len < 2 {
                    break;
                }
                if kind == 3 && len == 3 {
                    return opts
                        .get(i + 2)
                        .map_or(WindowScale::NotParsed, |s| WindowScale::Shift((*s).min(14)));
                }
                i += len as usize;
            }
        }
    }
    WindowScale::Absent
}

/// Is this ICMPv4 type an error that embeds the offending packet's header?
fn is_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// The IP + L4 header embedded in an ICMPv4 error.
pub fn embedded_tuple(frame: &[u8], l4: usize, end: usize, icmp_type: u8) -> Option<InnerTuple> {
    if !is_error(icmp_type) {
        return None;
    }
    let ip = l4 + 8;
    let b = frame.get(ip..end)?;
    if b.len() < 20 || b[0] >> 4 != 4 {
        return None;
    }
    let ihl = (b[0] & 0x0f) as usize * 4;
    let proto = b[9];
    let src = Addr::v4(u32::from_be_bytes([b[12], b[13], b[14], b[15]]));
    let dst = Addr::v4(u32::from_be_bytes([b[16], b[17], b[18], b[19]]));
    let (sport, dport) = match proto {
        6 | 17 if b.len() >= ihl + 4 => (rd16(b, ihl), rd16(b, ihl + 2)),
        1 if b.len() >= ihl + 8 => (rd16(b, ihl + 4), rd16(b, ihl + 4)),
        _ => (0, 0),
    };
    Some(InnerTuple {
        src,
        dst,
        proto,
        sport,
        dport,
    })
}

/// Rewrites the header embedded in an ICMPv4 error (addresses, ports) and fixes the inner IP
/// checksum and the ICMP checksum. The embedded L4 checksum is left alone: it usually covers
/// bytes that were cut off, so receivers do not check it.
pub fn rewrite_embedded(
    frame: &mut [u8],
    parsed: &Parsed,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
) {
    let (Some(l4), Some(end)) = (parsed.l4_offset(), parsed.l3_end()) else {
        return;
    };
    let end = end.min(frame.len());
    let ip = l4 + 8;
    if end < ip + 20 {
        return;
    }
    let ihl = (frame[ip] & 0x0f) as usize * 4;
    if end < ip + ihl {
        return;
    }
    frame[ip + 12..ip + 16].copy_from_slice(&src.to_be_bytes());
    frame[ip + 16..ip + 20].copy_from_slice(&dst.to_be_bytes());
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let c = checksum::ipv4_header(&frame[ip..ip + ihl]);
    frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let proto = frame[ip + 9];
    if matches!(proto, 6 | 17) && end >= ip + ihl + 4 {
        frame[ip + ihl..ip + ihl + 2].copy_from_slice(&sport.to_be_bytes());
        frame[ip + ihl + 2..ip + ihl + 4].copy_from_slice(&dport.to_be_bytes());
    } else if proto == 1 && end >= ip + ihl + 8 {
        frame[ip + ihl + 4..ip + ihl + 6].copy_from_slice(&sport.to_be_bytes());
    }
    frame[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
    let c = checksum::icmpv4(&frame[l4..end]);
    frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
}

/// Builds, into `out`, an ICMPv4 "fragmentation needed" (type 3 code 4) answering `frame`,
/// addressed back to its sender, advertising `mtu`. False when the frame is not IPv4 with DF.
pub fn frag_needed(frame: &[u8], parsed: &Parsed, mtu: u16, out: &mut Vec<u8>) -> bool {
    let (Some(l3), Some(end)) = (parsed.l3_offset(), parsed.l3_end()) else {
        return false;
    };
    if parsed.l3_kind != encap::L3Kind::Ipv4 || end > frame.len() || end < l3 + 20 {
        return false;
    }
    let ip = &frame[l3..end];
    let df = rd16(ip, 6) & 0x4000 != 0;
    if !df {
        return false;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    // RFC 792: the original header plus the first 8 bytes of its data.
    let quoted = &ip[..(ihl + 8).min(ip.len())];
    out.clear();
    // Ethernet: swap addresses; keep any VLAN tags of the original.
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[0..6]);
    out.extend_from_slice(&frame[12..l3]);
    let total = (20 + 8 + quoted.len()) as u16;
    let h = out.len();
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0]);
    out[h + 2..h + 4].copy_from_slice(&total.to_be_bytes());
    // From the original destination (the path "router" is the tunnel endpoint behind it).
    out.extend_from_slice(&ip[16..20]);
    out.extend_from_slice(&ip[12..16]);
    let c = checksum::ipv4_header(&out[h..h + 20]);
    out[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
    let i = out.len();
    out.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quoted);
    let c = checksum::icmpv4(&out[i..]);
    out[i + 2..i + 4].copy_from_slice(&c.to_be_bytes());
    true
}
