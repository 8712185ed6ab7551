//! Recognising a TCP/UDP checksum a sender left partial, from the frame's bytes alone.
//!
//! Why: a Linux sender with transmit checksum offload (`CHECKSUM_PARTIAL`) writes into the L4
//! checksum field only the folded, *non-complemented* pseudo-header sum
//! (`__tcp_v4_send_check`, `__tcp_v6_send_check`, `udp4_hwcsum`, `udp6_set_csum`: the field is
//! `~csum_tcpudp_magic(src, dst, len, proto, 0)`, `len` the L4 length) and leaves the rest to
//! the device. Where the frame reaches the switch without that state (an AF_XDP port: XDP
//! carries no `ip_summed`; a VXLAN tunnel over a veth underlay), the field is the only trace.
//!
//! [`find`] takes the field for partial when it equals that sum *and* the checksum does not
//! verify as complete: a complete checksum that happens to equal the pseudo-header sum (1 in
//! 65,536) is left alone. A UDP field of 0 ("no checksum") never matches (the sum of a
//! non-zero pseudo-header never folds to 0). Cost: a pseudo-header sum per TCP/UDP frame, and
//! one pass over the segment only when the field matches. Completing a frame marked partial
//! (`gso::complete_checksum`) gives the checksum a sender without offload would have written.

use crate::checksum::{fold, sum};

/// Where a partial checksum sits: the L4 header's offset from the frame start (`csum_start`)
/// and the field's offset within it (`csum_offset`: 16 for TCP, 6 for UDP), as a virtio-net
/// header would say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialChecksum {
    pub start: u16,
    pub offset: u16,
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The partial TCP/UDP checksum of an Ethernet frame (untagged or with one 802.1Q/802.1ad
/// tag; IPv4 not fragmented, IPv6 without extension headers), or `None` when the frame has
/// none: not TCP/UDP, truncated, inconsistent lengths, or a field that is not the bare
/// pseudo-header sum or that verifies as complete.
pub fn find(frame: &[u8]) -> Option<PartialChecksum> {
    let be16 = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *frame.get(at)?,
            *frame.get(at + 1)?,
        ])))
    };
    let mut l3 = 14;
    let mut ethertype = be16(12)?;
    if matches!(ethertype, 0x8100 | 0x88a8) {
        ethertype = be16(16)?;
        l3 = 18;
    }
    let ip = frame.get(l3..)?;
    let (proto, l4, l4_len, pseudo) = match ethertype {
        0x0800 => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            // Not a fragment (MF clear, offset 0): the checksum covers this packet only.
            if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl || be16(l3 + 6)? & 0x3fff != 0 {
                return None;
            }
            let l4_len = be16(l3 + 2)?.checked_sub(ihl)?;
            let proto = ip[9];
            (proto, l3 + ihl, l4_len, sum(0, &ip[12..20]))
        }
        0x86dd if ip.len() >= 40 && ip[0] >> 4 == 6 => {
            let proto = ip[6];
            (proto, l3 + 40, be16(l3 + 4)?, sum(0, &ip[8..40]))
        }
        _ => return None,
    };
    let offset = match proto {
        TCP => 16,
        UDP => 6,
        _ => return None,
    };
    if l4_len < offset + 2 || frame.len() < l4 + l4_len || l4 + l4_len > usize::from(u16::MAX) {
        return None;
    }
    let field = u16::from_be_bytes([frame[l4 + offset], frame[l4 + offset + 1]]);
    // l4_len < 2^16 here (checked above), so the sum stays far from overflowing.
    let pseudo = pseudo + u32::from(proto) + l4_len as u32;
    if (proto == UDP && field == 0) || field != fold(pseudo) {
        return None;
    }
    // A complete checksum that happens to equal the partial sum verifies: leave it.
    if fold(sum(pseudo, &frame[l4..l4 + l4_len])) == 0xffff {
        return None;
    }
    Some(PartialChecksum {
        start: l4 as u16,
        offset: offset as u16,
    })
}

/// For a TCP super-frame about to be marked partial (one a tunnel delivered whole, longer than
/// the underlay's MTU; `l3`, `l4`: its IP and TCP offsets, the IP header already checked):
/// true when its checksum field holds the partial pseudo-header sum (a kernel sender's TSO
/// frame), or a complete checksum that verifies, which is then written back as the partial
/// sum, so that whoever finishes the frame sums it once; false when it is neither (a damaged
/// frame is not given a checksum that hides the damage). The full pass runs only in the
/// second case: a peer sent a complete frame larger than this node's underlay MTU allows.
pub fn make_tcp_partial(frame: &mut [u8], l3: usize, l4: usize) -> bool {
    let l4_len = frame.len().saturating_sub(l4);
    if l4_len < 20 || l4_len > usize::from(u16::MAX) {
        return false;
    }
    let addrs = if frame[l3] >> 4 == 4 {
        &frame[l3 + 12..l3 + 20]
    } else {
        &frame[l3 + 8..l3 + 40]
    };
    let pseudo = sum(0, addrs) + u32::from(TCP) + l4_len as u32;
    let partial = fold(pseudo);
    let at = l4 + 16;
    if u16::from_be_bytes([frame[at], frame[at + 1]]) == partial {
        return true;
    }
    if fold(sum(pseudo, &frame[l4..])) != 0xffff {
        return false;
    }
    frame[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use crate::checksum;
    use crate::gso::complete_checksum;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn a6() -> Ipv6Addr {
        "fd00::1".parse().unwrap()
    }
    fn b6() -> Ipv6Addr {
        "fd00::2".parse().unwrap()
    }

    const MA: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MB: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// The frames a sender without offload would send, complete, in each shape handled.
    fn complete_frames() -> Vec<(&'static str, Vec<u8>)> {
        let payload: Vec<u8> = (0..333u32).map(|i| (i * 7 + 3) as u8).collect();
        let eth = || FrameBuilder::eth(MA, MB);
        vec![
            (
                "tcp4",
                eth()
                    .ipv4(A4, B4)
                    .tcp(40000, 80, 0x18)
                    .payload(&payload)
                    .build(),
            ),
            (
                "udp4",
                eth().ipv4(A4, B4).udp(40000, 53).payload(&payload).build(),
            ),
            (
                "tcp6 odd length",
                eth()
                    .ipv6(a6(), b6())
                    .tcp(40000, 80, 0x10)
                    .payload(&payload[..331])
                    .build(),
            ),
            (
                "udp6",
                eth()
                    .ipv6(a6(), b6())
                    .udp(40000, 53)
                    .payload(&payload)
                    .build(),
            ),
            (
                "tcp4 vlan",
                eth()
                    .vlan(7)
                    .ipv4(A4, B4)
                    .tcp(1, 2, 0x10)
                    .payload(&payload[..10])
                    .build(),
            ),
        ]
    }

    /// Writes the folded pseudo-header sum into the field, as `__tcp_v4_send_check` does.
    fn make_partial(frame: &mut [u8], at: PartialChecksum) {
        let l4 = usize::from(at.start);
        let l3 = if frame[12] == 0x81 { 18 } else { 14 };
        let l4_len = frame.len() - l4;
        let proto = if at.offset == 16 { TCP } else { UDP };
        let pseudo = if frame[l3] >> 4 == 4 {
            let ip = &frame[l3..];
            checksum::pseudo_header_v4(
                Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
                proto,
                l4_len as u16,
            )
        } else {
            let s: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().unwrap();
            let d: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().unwrap();
            checksum::pseudo_header_v6(&s.into(), &d.into(), proto, l4_len as u32)
        };
        let field = l4 + usize::from(at.offset);
        frame[field..field + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
    }

    fn position(frame: &[u8]) -> PartialChecksum {
        let l3 = if frame[12] == 0x81 { 18 } else { 14 };
        let (l4, proto) = if frame[l3] >> 4 == 4 {
            (l3 + 20, frame[l3 + 9])
        } else {
            (l3 + 40, frame[l3 + 6])
        };
        PartialChecksum {
            start: l4 as u16,
            offset: if proto == TCP { 16 } else { 6 },
        }
    }

    #[test]
    fn partial_frames_are_found_and_complete_to_the_senders_checksum() {
        for (what, complete) in complete_frames() {
            let at = position(&complete);
            assert_eq!(
                find(&complete),
                None,
                "{what}: a complete frame is left alone"
            );
            let mut partial = complete.clone();
            make_partial(&mut partial, at);
            assert_ne!(partial, complete, "{what}");
            assert_eq!(find(&partial), Some(at), "{what}");
            complete_checksum(&mut partial, at.start.into(), at.offset.into()).unwrap();
            assert_eq!(
                partial, complete,
                "{what}: completion gives the full checksum"
            );
        }
    }

    /// A complete checksum equal to the pseudo-header sum (the 1-in-65,536 case): the frame
    /// verifies, so it is not taken for partial.
    #[test]
    fn a_complete_checksum_equal_to_the_pseudo_header_sum_is_left_alone() {
        for (what, mut frame) in complete_frames() {
            let at = position(&frame);
            let l4 = usize::from(at.start);
            let field = l4 + usize::from(at.offset);
            // Pick the last payload word so that the complete checksum equals the partial
            // sum: the checksum is ~(pseudo + rest), so rest must be ~2·pseudo (mod 0xffff).
            let mut partial = frame.clone();
            make_partial(&mut partial, at);
            let p = u16::from_be_bytes([partial[field], partial[field + 1]]);
            let n = frame.len();
            let last = n - 2 - (n - l4) % 2;
            frame[last..last + 2].fill(0);
            frame[field..field + 2].copy_from_slice(&p.to_be_bytes());
            // Sum of the segment with the field already holding p, plus the pseudo-header
            // (which is p): the last word must bring the total to 0xffff.
            let pseudo = u32::from(p);
            let s = fold(sum(pseudo, &frame[l4..]));
            let want = !s;
            frame[last..last + 2].copy_from_slice(&want.to_be_bytes());
            assert_eq!(
                fold(sum(pseudo, &frame[l4..])),
                0xffff,
                "{what}: the frame's checksum is complete and valid"
            );
            assert_eq!(
                u16::from_be_bytes([frame[field], frame[field + 1]]),
                p,
                "{what}: and equals the pseudo-header sum"
            );
            assert_eq!(find(&frame), None, "{what}");
        }
    }

    #[test]
    fn udp_without_checksum_and_other_frames_are_not_partial() {
        let udp = FrameBuilder::eth(MA, MB)
            .ipv4(A4, B4)
            .udp(1, 2)
            .payload(b"hello")
            .without_udp_checksum()
            .build();
        assert_eq!(find(&udp), None);
        let icmp = FrameBuilder::eth(MA, MB)
            .ipv4(A4, B4)
            .icmp(8, 0)
            .payload(b"ping")
            .build();
        assert_eq!(find(&icmp), None);
        assert_eq!(find(&[]), None);
        assert_eq!(find(&[0u8; 14]), None);
    }

    #[test]
    fn fragments_and_truncated_frames_are_not_partial() {
        let (_, mut frame) = complete_frames().remove(0);
        let at = position(&frame);
        make_partial(&mut frame, at);
        assert!(find(&frame).is_some());
        for cut in 0..frame.len() {
            assert_eq!(find(&frame[..cut]), None, "cut at {cut}");
        }
        // More fragments / a fragment offset: the checksum spans other packets.
        for (byte, bits) in [(20, 0x20), (21, 0x01)] {
            let mut f = frame.clone();
            f[byte] |= bits;
            assert_eq!(find(&f), None);
        }
        // Ethernet padding after the IP packet does not count.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0xaa; 6]);
        assert_eq!(find(&padded), Some(at));
    }

    /// A super-frame's TCP checksum as a tunnel hands it over: partial stays partial, a
    /// complete one becomes the partial sum (and completing it gives it back), a damaged one
    /// is refused and left as it is.
    #[test]
    fn a_complete_tcp_checksum_is_made_partial_and_a_damaged_one_is_refused() {
        for (name, frame) in complete_frames() {
            if !name.starts_with("tcp") || name.contains("vlan") {
                continue;
            }
            let l4 = if name.starts_with("tcp4") {
                14 + 20
            } else {
                14 + 40
            };
            let at = PartialChecksum {
                start: l4 as u16,
                offset: 16,
            };
            let mut f = frame.clone();
            assert!(make_tcp_partial(&mut f, 14, l4), "{name}");
            let mut partial = frame.clone();
            make_partial(&mut partial, at);
            assert_eq!(f, partial, "{name}: the field is the partial sum");
            assert!(make_tcp_partial(&mut f, 14, l4), "{name}: partial stays");
            assert_eq!(f, partial, "{name}");
            complete_checksum(&mut f, l4, 16).unwrap();
            assert_eq!(f, frame, "{name}: completed again, as sent");
            let mut damaged = frame.clone();
            *damaged.last_mut().unwrap() ^= 0x55;
            let before = damaged.clone();
            assert!(!make_tcp_partial(&mut damaged, 14, l4), "{name}");
            assert_eq!(damaged, before, "{name}: left as it is");
        }
    }
}
