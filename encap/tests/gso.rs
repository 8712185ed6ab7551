//! Software segmentation: property tests against a full recompute, and checksum completion.

use encap::build::FrameBuilder;
use encap::checksum;
use encap::gso::{GsoError, GsoInfo, GsoKind, GsoPlan, complete_checksum, segment};
use proptest::prelude::*;

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Offsets of a built frame: (l3, l4, is_v4, is_tcp).
fn offsets(f: &[u8]) -> (usize, usize, bool, bool) {
    let mut l3 = 14;
    while f[l3 - 2..l3] == [0x81, 0x00] {
        l3 += 4;
    }
    let v4 = f[l3 - 2..l3] == [0x08, 0x00];
    let (l4, proto) = if v4 {
        (l3 + usize::from(f[l3] & 15) * 4, f[l3 + 9])
    } else {
        (l3 + 40, f[l3 + 6])
    };
    (l3, l4, v4, proto == 6)
}

fn pseudo(f: &[u8], l3: usize, l4: usize, v4: bool, proto: u8) -> u32 {
    let len = f.len() - l4;
    if v4 {
        let a = |o: usize| [f[o], f[o + 1], f[o + 2], f[o + 3]].into();
        checksum::pseudo_header_v4(a(l3 + 12), a(l3 + 16), proto, len as u16)
    } else {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&f[l3 + 8..l3 + 24]);
        d.copy_from_slice(&f[l3 + 24..l3 + 40]);
        checksum::pseudo_header_v6(&s.into(), &d.into(), proto, len as u32)
    }
}

/// A super-frame as a sender with TSO hands it over: the L4 checksum field holds the folded
/// pseudo-header sum only.
fn super_frame(v4: bool, tcp: bool, vlan: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = FrameBuilder::eth(A, B);
    if vlan {
        b = b.vlan(100);
    }
    b = if v4 {
        b.ipv4([10, 0, 0, 1], [10, 0, 0, 2]).ident(0xfff0)
    } else {
        b.ipv6(
            "fd00::1".parse::<std::net::Ipv6Addr>().unwrap(),
            "fd00::2".parse::<std::net::Ipv6Addr>().unwrap(),
        )
    };
    b = if tcp {
        b.tcp(40000, 5201, u16::from(flags))
    } else {
        b.udp(40000, 4789)
    };
    let mut f = b.payload(payload).build();
    let (l3, l4, v4, tcp) = offsets(&f);
    let field = if tcp { l4 + 16 } else { l4 + 6 };
    if tcp {
        f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    }
    let p = checksum::fold(pseudo(&f, l3, l4, v4, if tcp { 6 } else { 17 }));
    f[field..field + 2].copy_from_slice(&p.to_be_bytes());
    f
}

fn l4_valid(seg: &[u8]) -> bool {
    let (l3, l4, v4, tcp) = offsets(seg);
    let p = pseudo(seg, l3, l4, v4, if tcp { 6 } else { 17 });
    checksum::fold(checksum::sum(p, &seg[l4..])) == 0xffff
}

fn ipv4_valid(seg: &[u8]) -> bool {
    let (l3, l4, v4, _) = offsets(seg);
    !v4 || checksum::fold(checksum::sum(0, &seg[l3..l4])) == 0xffff
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn segments_rebuild_the_payload_with_valid_headers(
        v4 in any::<bool>(),
        tcp in any::<bool>(),
        vlan in any::<bool>(),
        seq in any::<u32>(),
        flags in prop::sample::select(vec![0x10u8, 0x18, 0x19, 0x98, 0x90, 0x11]),
        len in 0usize..20000,
        mss in 1u16..3000,
        fill in any::<u8>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ fill).collect();
        let f = super_frame(v4, tcp, vlan, seq, flags, &payload);
        let (_, l4, _, _) = offsets(&f);
        let hdr_len = l4 + if tcp { 20 } else { 8 };
        let kind = match (tcp, v4) {
            (false, _) => GsoKind::Udp,
            (true, true) => GsoKind::Tcp4,
            (true, false) => GsoKind::Tcp6,
        };
        // The sender's hdr_len is only a hint: give a wrong one.
        let gso = GsoInfo { kind, mss, hdr_len: 7 };
        let mut scratch = Vec::new();
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let n = segment(&f, &gso, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        prop_assert_eq!(n, segs.len());
        prop_assert_eq!(n, len.div_ceil(usize::from(mss)).max(1));
        let mut joined = Vec::new();
        let mut next_seq = seq;
        for (i, s) in segs.iter().enumerate() {
            prop_assert!(s.len() <= hdr_len + usize::from(mss));
            prop_assert_eq!(&s[..12], &f[..12]);
            prop_assert!(ipv4_valid(s), "IPv4 header checksum of segment {}", i);
            prop_assert!(l4_valid(s), "L4 checksum of segment {}", i);
            let (l3, l4, v4, _) = offsets(s);
            if v4 {
                prop_assert_eq!(usize::from(u16::from_be_bytes([s[l3 + 2], s[l3 + 3]])), s.len() - l3);
                prop_assert_eq!(u16::from_be_bytes([s[l3 + 4], s[l3 + 5]]), 0xfff0u16.wrapping_add(i as u16));
            } else {
                prop_assert_eq!(usize::from(u16::from_be_bytes([s[l3 + 4], s[l3 + 5]])), s.len() - l3 - 40);
            }
            if tcp {
                let sq = u32::from_be_bytes([s[l4 + 4], s[l4 + 5], s[l4 + 6], s[l4 + 7]]);
                prop_assert_eq!(sq, next_seq, "seq of segment {}", i);
                next_seq = sq.wrapping_add((s.len() - hdr_len) as u32);
                let fl = s[l4 + 13];
                let last = i + 1 == n;
                prop_assert_eq!(fl & 0x09, if last { flags & 0x09 } else { 0 });
                prop_assert_eq!(fl & 0x80, if i == 0 { flags & 0x80 } else { 0 });
                prop_assert_eq!(fl & 0x10, flags & 0x10);
            } else {
                prop_assert_eq!(usize::from(u16::from_be_bytes([s[l4 + 4], s[l4 + 5]])), s.len() - l4);
            }
            joined.extend_from_slice(&s[hdr_len..]);
        }
        prop_assert_eq!(joined, payload);
    }

    #[test]
    fn completing_a_partial_checksum_equals_a_full_recompute(
        v4 in any::<bool>(),
        tcp in any::<bool>(),
        len in 0usize..3000,
        pad in 0usize..20,
    ) {
        let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
        let mut f = super_frame(v4, tcp, false, 7, 0x18, &payload);
        let want = {
            // A one-segment "segmentation" writes the full checksum.
            let kind = match (tcp, v4) {
                (false, _) => GsoKind::Udp,
                (true, true) => GsoKind::Tcp4,
                (true, false) => GsoKind::Tcp6,
            };
            let gso = GsoInfo { kind, mss: 9000, hdr_len: 0 };
            let mut out = Vec::new();
            segment(&f, &gso, &mut Vec::new(), |s| out = s.to_vec()).unwrap();
            out
        };
        let (_, l4, _, _) = offsets(&f);
        // Ethernet padding behind the IP packet must not enter the sum.
        f.extend(std::iter::repeat_n(0xee, pad));
        complete_checksum(&mut f, l4, if tcp { 16 } else { 6 }).unwrap();
        prop_assert!(l4_valid(&f[..f.len() - pad]));
        prop_assert_eq!(&f[..f.len() - pad], &want[..]);
    }
}

#[test]
fn wrong_or_short_headers_are_refused() {
    let f = super_frame(true, true, false, 1, 0x10, &[0; 100]);
    let tcp6 = GsoInfo {
        kind: GsoKind::Tcp6,
        mss: 10,
        hdr_len: 54,
    };
    assert_eq!(
        GsoPlan::new(&f, &tcp6),
        Err(GsoError::WrongL3 {
            kind: GsoKind::Tcp6
        })
    );
    let udp = GsoInfo {
        kind: GsoKind::Udp,
        ..tcp6
    };
    assert_eq!(
        GsoPlan::new(&f, &udp),
        Err(GsoError::WrongL4 {
            kind: GsoKind::Udp,
            proto: 6
        })
    );
    let tcp4 = GsoInfo {
        kind: GsoKind::Tcp4,
        ..tcp6
    };
    assert!(matches!(
        GsoPlan::new(&f[..60], &tcp4),
        Err(GsoError::LengthMismatch { .. })
    ));
    assert_eq!(
        GsoPlan::new(&f, &GsoInfo { mss: 0, ..tcp4 }),
        Err(GsoError::ZeroMss)
    );
    let plan = GsoPlan::new(&f, &tcp4).unwrap();
    assert_eq!(plan.segments(), 10);
    assert_eq!(plan.hdr_len(), 54);
    let mut small = [0u8; 60];
    assert_eq!(
        plan.write(&f, 0, &mut small),
        Err(GsoError::BufferTooSmall { need: 64, have: 60 })
    );
    let mut short = f.clone();
    assert!(matches!(
        complete_checksum(&mut short, 150, 16),
        Err(GsoError::BadCsumPosition { .. })
    ));
    // Every prefix is refused or segmented, never a panic.
    for cut in 0..f.len() {
        let _ = GsoPlan::new(&f[..cut], &tcp4);
        let mut p = f[..cut].to_vec();
        let _ = complete_checksum(&mut p, 34, 16);
    }
}
