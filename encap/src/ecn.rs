//! ECN across a tunnel (RFC 6040, "normal mode"), as Linux's `INET_ECN_encapsulate` /
//! `INET_ECN_decapsulate` (used by its vxlan device) and Open vSwitch's `tnl_port_send` /
//! `tnl_port_receive` do it, so that congestion marks survive the underlay:
//!
//! - encapsulation: the outer ECN field is the inner IPv4/IPv6 packet's, except that an inner
//!   CE leaves as ECT(0) (CE outside would tell the far end the underlay was congested); an
//!   inner frame that is not IP leaves Not-ECT ([`encapsulate`]);
//! - decapsulation: an outer CE (the underlay marked it) is copied onto an inner ECT(0)/ECT(1)
//!   packet; around a Not-ECT packet it cannot be passed on, so the packet is dropped (as Linux
//!   and Open vSwitch drop it); anything else leaves the inner packet unchanged
//!   ([`decapsulate`]).
//!
//! The inner packet is found behind the inner Ethernet header and up to two VLAN tags (0x8100 /
//! 0x88a8), as `extract` parses them. A few loads and at most two stores per packet; nothing
//! is allocated.

use crate::checksum;

/// The ECN field (low two bits of the IPv4 TOS / IPv6 traffic class).
pub const MASK: u8 = 0x03;
/// Not ECN-capable transport.
pub const NOT_ECT: u8 = 0;
/// ECN-capable transport (1).
pub const ECT_1: u8 = 1;
/// ECN-capable transport (0).
pub const ECT_0: u8 = 2;
/// Congestion experienced.
pub const CE: u8 = 3;

/// The inner packet is IPv4 or IPv6, at this offset of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ip {
    V4(usize),
    V6(usize),
}

/// Where the frame's IP header starts (behind up to two VLAN tags), when it has a whole one
/// (IPv4: 20 bytes and version 4; IPv6: 40 bytes and version 6).
#[inline]
fn ip_header(frame: &[u8]) -> Option<Ip> {
    let ethertype = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let mut at = 12;
    let mut ty = ethertype(at)?;
    for _ in 0..2 {
        if ty != 0x8100 && ty != 0x88a8 {
            break;
        }
        at += 4;
        ty = ethertype(at)?;
    }
    let l3 = at + 2;
    let version = frame.get(l3).map(|b| b >> 4);
    match ty {
        0x0800 if frame.len() >= l3 + 20 && version == Some(4) => Some(Ip::V4(l3)),
        0x86dd if frame.len() >= l3 + 40 && version == Some(6) => Some(Ip::V6(l3)),
        _ => None,
    }
}

/// The inner packet's ECN field; `None` when the frame is not IP.
#[inline]
pub fn inner_ecn(frame: &[u8]) -> Option<u8> {
    match ip_header(frame)? {
        Ip::V4(l3) => Some(frame[l3 + 1] & MASK),
        // The traffic class straddles bytes 0 and 1: its ECN bits are bits 4-5 of byte 1.
        Ip::V6(l3) => Some((frame[l3 + 1] >> 4) & MASK),
    }
}

/// The outer TOS byte for the inner `frame`: `tos`'s DSCP with the inner packet's ECN field,
/// CE sent as ECT(0), Not-ECT for a frame that is not IP (`INET_ECN_encapsulate`).
#[inline]
pub fn encapsulate(tos: u8, frame: &[u8]) -> u8 {
    let ecn = match inner_ecn(frame) {
        Some(CE) => ECT_0,
        Some(e) => e,
        None => NOT_ECT,
    };
    (tos & !MASK) | ecn
}

/// Why [`decapsulate`] refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CeOnNotEct;

/// Applies the outer TOS byte's ECN field to the inner `frame` on decapsulation: outer CE
/// makes an ECT(0)/ECT(1) inner packet CE (an IPv4 header checksum updated in place; IPv6 has
/// none), and refuses a Not-ECT one (the caller drops it). Otherwise, and for a frame that is
/// not IP, the frame is left as it is.
#[inline]
pub fn decapsulate(outer_tos: u8, frame: &mut [u8]) -> Result<(), CeOnNotEct> {
    if outer_tos & MASK != CE {
        return Ok(());
    }
    match ip_header(frame) {
        Some(Ip::V4(l3)) => {
            if frame[l3 + 1] & MASK == NOT_ECT {
                return Err(CeOnNotEct);
            }
            // RFC 1624 over the 16-bit word version/IHL + TOS.
            let old = u16::from_be_bytes([frame[l3], frame[l3 + 1]]);
            frame[l3 + 1] |= CE;
            let new = u16::from_be_bytes([frame[l3], frame[l3 + 1]]);
            let at = l3 + 10;
            let c = u16::from_be_bytes([frame[at], frame[at + 1]]);
            frame[at..at + 2].copy_from_slice(&checksum::update_u16(c, old, new).to_be_bytes());
        }
        Some(Ip::V6(l3)) => {
            if (frame[l3 + 1] >> 4) & MASK == NOT_ECT {
                return Err(CeOnNotEct);
            }
            frame[l3 + 1] |= CE << 4;
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use core::net::Ipv6Addr;

    use super::*;
    use crate::build::FrameBuilder;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn v4(tos: u8) -> Vec<u8> {
        FrameBuilder::eth(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tos(tos)
            .udp(1, 2)
            .payload(b"x")
            .build()
    }

    /// An IPv6 frame with traffic class `tc`, behind `tags` VLAN tags.
    fn v6(tc: u8, tags: usize) -> Vec<u8> {
        let mut f = FrameBuilder::eth(A, B);
        for i in 0..tags {
            f = f.tag(if i + 1 < tags { 0x88a8 } else { 0x8100 }, 7);
        }
        let (a, b) = (
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::LOCALHOST,
        );
        f.ipv6(a, b).tos(tc).udp(1, 2).payload(b"x").build()
    }

    fn ipv4_checksum_ok(f: &[u8]) -> bool {
        crate::checksum::ipv4_header(&f[14..34]) == 0
    }

    #[test]
    fn encapsulation_copies_the_inner_ecn_and_sends_ce_as_ect0() {
        // DSCP 46 (0xb8) on the inner packet: only its ECN field goes out.
        for (inner, outer) in [
            (NOT_ECT, NOT_ECT),
            (ECT_1, ECT_1),
            (ECT_0, ECT_0),
            (CE, ECT_0),
        ] {
            assert_eq!(
                encapsulate(0, &v4(0xb8 | inner)),
                outer,
                "IPv4 inner {inner}"
            );
            assert_eq!(
                encapsulate(0, &v6(0xb8 | inner, 0)),
                outer,
                "IPv6 inner {inner}"
            );
            assert_eq!(encapsulate(0, &v6(inner, 2)), outer, "tagged IPv6 {inner}");
            // The caller's DSCP is kept, its ECN bits replaced.
            assert_eq!(encapsulate(0x23, &v4(inner)), 0x20 | outer);
        }
        let arp = FrameBuilder::eth(A, [0xff; 6])
            .ethertype(0x0806)
            .payload(&[3; 28])
            .build();
        assert_eq!(encapsulate(0, &arp), NOT_ECT);
        // An IPv4 EtherType with a truncated header or another version: not IP.
        let mut short = v4(CE);
        short.truncate(14 + 19);
        assert_eq!(encapsulate(0, &short), NOT_ECT);
        let mut bad = v4(CE);
        bad[14] = 0x65;
        assert_eq!(encapsulate(0, &bad), NOT_ECT);
    }

    #[test]
    fn outer_ce_marks_an_ecn_capable_inner_packet() {
        for inner in [ECT_0, ECT_1, CE] {
            let mut f = v4(0xb8 | inner);
            assert!(ipv4_checksum_ok(&f));
            assert_eq!(decapsulate(0xb8 | CE, &mut f), Ok(()));
            assert_eq!(f[15], 0xb8 | CE, "IPv4 inner {inner}");
            assert!(ipv4_checksum_ok(&f), "IPv4 header checksum after CE");
            let mut f = v6(0xb8 | inner, 1);
            assert_eq!(decapsulate(CE, &mut f), Ok(()));
            assert_eq!(inner_ecn(&f), Some(CE));
            assert_eq!((f[18] & 0x0f, f[19] >> 4), (0xb, 0x8 | CE), "DSCP kept");
        }
    }

    #[test]
    fn outer_ce_around_a_not_ect_packet_is_refused() {
        let mut f = v4(0xb8);
        let before = f.clone();
        assert_eq!(decapsulate(CE, &mut f), Err(CeOnNotEct));
        assert_eq!(f, before, "left unchanged");
        let mut f = v6(0, 0);
        assert_eq!(decapsulate(CE, &mut f), Err(CeOnNotEct));
    }

    #[test]
    fn anything_else_leaves_the_inner_packet_alone() {
        for outer in [NOT_ECT, ECT_0, ECT_1, 0xb8 | ECT_0] {
            for inner in [NOT_ECT, ECT_1, ECT_0, CE] {
                let mut f = v4(inner);
                let before = f.clone();
                assert_eq!(decapsulate(outer, &mut f), Ok(()));
                assert_eq!(f, before, "outer {outer:#x}, inner {inner}");
            }
        }
        // Not IP: nothing to mark, nothing to refuse.
        let mut arp = FrameBuilder::eth(A, [0xff; 6])
            .ethertype(0x0806)
            .payload(&[3; 28])
            .build();
        let before = arp.clone();
        assert_eq!(decapsulate(CE, &mut arp), Ok(()));
        assert_eq!(arp, before);
        let mut runt = vec![0u8; 13];
        assert_eq!(decapsulate(CE, &mut runt), Ok(()));
    }
}
