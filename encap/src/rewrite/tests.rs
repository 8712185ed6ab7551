use super::*;
use crate::FlowKey;
use crate::build::FrameBuilder;
use crate::extract::extract;
use crate::wire::{ipv4, tcp, udp};
use proptest::prelude::*;

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn parse(f: &[u8]) -> Parsed {
    let mut k = FlowKey::default();
    extract(f, &mut k)
}

/// Full recomputation: IPv4 header checksum and L4 checksum both verify.
fn checksums_verify(f: &[u8]) -> bool {
    let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
    if !ip.verify_checksum() {
        return false;
    }
    match ip.protocol() {
        crate::wire::IpProtocol::Tcp => tcp::Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
        crate::wire::IpProtocol::Udp => udp::Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
        _ => true,
    }
}

fn tcp_frame() -> Vec<u8> {
    FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40000, 80, 0x12)
        .payload(b"data!")
        .build()
}

#[test]
fn nat_rewrite_keeps_checksums_valid() {
    let mut f = tcp_frame();
    let p = parse(&f);
    set_ipv4_src(
        &mut f,
        &p,
        Ipv4Addr::new(192, 168, 7, 9),
        L4Checksum::Complete,
    )
    .unwrap();
    set_ipv4_dst(
        &mut f,
        &p,
        Ipv4Addr::new(172, 16, 0, 1),
        L4Checksum::Complete,
    )
    .unwrap();
    set_l4_src_port(&mut f, &p, 1024, L4Checksum::Complete).unwrap();
    set_l4_dst_port(&mut f, &p, 8080, L4Checksum::Complete).unwrap();
    assert_eq!(dec_ttl(&mut f, &p), Ok(63));
    assert!(checksums_verify(&f));
    let mut k = FlowKey::default();
    extract(&f, &mut k);
    assert_eq!(
        (k.nw_src, k.nw_dst, k.tp_src, k.tp_dst, k.nw_ttl),
        (0xc0a8_0709, 0xac10_0001, 1024, 8080, 63)
    );
}

#[test]
fn udp_without_checksum_stays_without() {
    let mut f = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1, 2)
        .without_udp_checksum()
        .build();
    let p = parse(&f);
    set_ipv4_src(&mut f, &p, Ipv4Addr::new(1, 2, 3, 4), L4Checksum::Complete).unwrap();
    set_l4_dst_port(&mut f, &p, 999, L4Checksum::Complete).unwrap();
    assert_eq!(&f[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
    assert!(checksums_verify(&f));
}

#[test]
fn partial_checksum_mode() {
    let mut f = tcp_frame();
    let l4c = 14 + 20 + 16;
    let seg_len = (f.len() - 34) as u16;
    let partial = |src: [u8; 4], dst: [u8; 4]| {
        checksum::fold(checksum::pseudo_header_v4(
            src.into(),
            dst.into(),
            6,
            seg_len,
        ))
    };
    f[l4c..l4c + 2].copy_from_slice(&partial([10, 0, 0, 1], [10, 0, 0, 2]).to_be_bytes());
    let p = parse(&f);
    set_ipv4_src(&mut f, &p, Ipv4Addr::new(9, 9, 9, 9), L4Checksum::Partial).unwrap();
    let after_addr = rd16(&f, l4c);
    assert_eq!(
        after_addr,
        partial([9, 9, 9, 9], [10, 0, 0, 2]),
        "address rewrite updates the pseudo sum"
    );
    set_l4_src_port(&mut f, &p, 5555, L4Checksum::Partial).unwrap();
    assert_eq!(
        rd16(&f, l4c),
        after_addr,
        "port rewrite leaves the partial sum alone"
    );
    assert_eq!(rd16(&f, 34), 5555);
    assert!(
        ipv4::Packet::new_checked(&f[14..])
            .unwrap()
            .verify_checksum()
    );
}

#[test]
fn refusals_are_named_and_leave_the_frame_alone() {
    let arp = FrameBuilder::eth(A, B)
        .arp(1, A, [1, 1, 1, 1], B, [2, 2, 2, 2])
        .build();
    let p = parse(&arp);
    let mut g = arp.clone();
    assert_eq!(
        set_ipv4_src(&mut g, &p, Ipv4Addr::LOCALHOST, L4Checksum::Complete),
        Err(RewriteError::NotIpv4)
    );
    assert_eq!(dec_ttl(&mut g, &p), Err(RewriteError::NotIp));
    assert_eq!(g, arp);

    let icmp = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .icmp(8, 0)
        .ttl(1)
        .build();
    let p = parse(&icmp);
    let mut g = icmp.clone();
    assert_eq!(
        set_l4_src_port(&mut g, &p, 1, L4Checksum::Complete),
        Err(RewriteError::NoPorts)
    );
    assert_eq!(dec_ttl(&mut g, &p), Err(RewriteError::TtlExpired));
    assert_eq!(g, icmp);

    let f = tcp_frame();
    let p = parse(&f);
    let mut short = f[..20].to_vec();
    assert_eq!(
        set_ipv4_src(&mut short, &p, Ipv4Addr::LOCALHOST, L4Checksum::Complete),
        Err(RewriteError::FrameTooShort)
    );
}

#[test]
fn ipv6_ports_and_hop_limit() {
    let src: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut f = FrameBuilder::eth(A, B)
        .ipv6(src, dst)
        .udp(7, 9)
        .payload(b"x")
        .build();
    let p = parse(&f);
    set_l4_dst_port(&mut f, &p, 4789, L4Checksum::Complete).unwrap();
    assert_eq!(dec_ttl(&mut f, &p), Ok(63));
    let seg = &f[54..];
    let sum = checksum::sum(
        checksum::pseudo_header_v6(&src.into(), &dst.into(), 17, seg.len() as u32),
        seg,
    );
    assert_eq!(checksum::fold(sum), 0xffff);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rewrites_match_full_recompute(
        udp in any::<bool>(),
        src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        new_src in any::<u32>(), new_dst in any::<u32>(), new_sport in any::<u16>(), new_dport in any::<u16>(),
        ttl in 2u8..=255,
    ) {
        let b = FrameBuilder::eth(A, B).ipv4(src, dst).ttl(ttl).payload(&payload);
        let mut f = if udp { b.udp(sport, dport) } else { b.tcp(sport, dport, 0x18) }.build();
        let p = parse(&f);
        set_ipv4_src(&mut f, &p, new_src.into(), L4Checksum::Complete).unwrap();
        set_ipv4_dst(&mut f, &p, new_dst.into(), L4Checksum::Complete).unwrap();
        set_l4_src_port(&mut f, &p, new_sport, L4Checksum::Complete).unwrap();
        set_l4_dst_port(&mut f, &p, new_dport, L4Checksum::Complete).unwrap();
        dec_ttl(&mut f, &p).unwrap();
        prop_assert!(checksums_verify(&f));
        // Compare field by field with a frame built directly with the new values.
        let b = FrameBuilder::eth(A, B).ipv4(new_src, new_dst).ttl(ttl - 1).payload(&payload);
        let want = if udp { b.udp(new_sport, new_dport) } else { b.tcp(new_sport, new_dport, 0x18) }.build();
        let same = |a: u16, b: u16| a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0);
        prop_assert!(same(rd16(&f, 24), rd16(&want, 24)), "IPv4 checksum");
        let l4c = if udp { 34 + 6 } else { 34 + 16 };
        prop_assert!(same(rd16(&f, l4c), rd16(&want, l4c)), "L4 checksum");
        prop_assert_eq!(&f[..24], &want[..24]);
        prop_assert_eq!(&f[26..l4c], &want[26..l4c]);
    }
}

/// The ICMP checksum of the message in an IPv4 frame verifies by full recompute.
fn icmp_verifies(f: &[u8]) -> bool {
    let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
    ip.verify_checksum()
        && crate::wire::icmpv4::Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum()
}

#[test]
fn arp_fields() {
    let mut f = FrameBuilder::eth(A, B)
        .arp(1, A, [1, 1, 1, 1], B, [2, 2, 2, 2])
        .build();
    let p = parse(&f);
    set_arp(&mut f, &p, ArpField::Operation(2)).unwrap();
    set_arp(&mut f, &p, ArpField::SenderMac(B)).unwrap();
    set_arp(&mut f, &p, ArpField::SenderIp(Ipv4Addr::new(2, 2, 2, 2))).unwrap();
    set_arp(&mut f, &p, ArpField::TargetMac(A)).unwrap();
    set_arp(&mut f, &p, ArpField::TargetIp(Ipv4Addr::new(1, 1, 1, 1))).unwrap();
    let want = FrameBuilder::eth(A, B)
        .arp(2, B, [2, 2, 2, 2], A, [1, 1, 1, 1])
        .build();
    assert_eq!(f, want);
    let mut t = tcp_frame();
    let p = parse(&t);
    assert_eq!(
        set_arp(&mut t, &p, ArpField::Operation(2)),
        Err(RewriteError::NotArp)
    );
}

#[test]
fn icmp_refusals() {
    let mut t = tcp_frame();
    let p = parse(&t);
    let before = t.clone();
    assert_eq!(
        set_icmpv4_type_code(&mut t, &p, Some(0), None),
        Err(RewriteError::NotIcmpv4)
    );
    let mut unreach = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .icmp(3, 1)
        .build();
    let p = parse(&unreach);
    assert_eq!(
        set_icmpv4_echo_id(&mut unreach, &p, 9),
        Err(RewriteError::NotIcmpv4Echo)
    );
    assert_eq!(
        set_icmpv4_quoted(&mut unreach, &p, [1; 4].into(), [2; 4].into(), 1, 2),
        Err(RewriteError::NoQuotedHeader)
    );
    assert_eq!(t, before);
}

#[test]
fn quoted_header_rewrite() {
    // An ICMP error quoting a TCP segment 10.0.0.1:40000 -> 10.0.0.2:80 (header + 8 bytes).
    let inner = tcp_frame();
    let quote = &inner[14..14 + 28];
    let mut f = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 9], [10, 0, 0, 1])
        .icmp(3, 4)
        .payload(quote)
        .build();
    let p = parse(&f);
    set_icmpv4_quoted(
        &mut f,
        &p,
        Ipv4Addr::new(192, 168, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        1234,
        80,
    )
    .unwrap();
    assert!(icmp_verifies(&f));
    let q = crate::wire::icmpv4::Packet::new_checked(&f[34..])
        .unwrap()
        .quoted_header()
        .unwrap();
    assert_eq!(q.src_addr, Ipv4Addr::new(192, 168, 0, 1));
    assert_eq!(q.dst_addr, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!((q.protocol, q.src_port, q.dst_port), (6, 1234, 80));
    // The quoted IPv4 header's checksum (its total length runs past the quote).
    assert_eq!(checksum::fold(checksum::sum(0, &f[42..62])), 0xffff);

    // Quoting a later fragment (offset 8 bytes): addresses rewritten, its data left alone.
    let mut later_quote = quote.to_vec();
    later_quote[6..8].copy_from_slice(&[0x00, 0x01]);
    let mut g = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 9], [10, 0, 0, 1])
        .icmp(3, 4)
        .payload(&later_quote)
        .build();
    let data = g[42 + 20..42 + 28].to_vec();
    let p = parse(&g);
    set_icmpv4_quoted(
        &mut g,
        &p,
        Ipv4Addr::new(192, 168, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        1234,
        80,
    )
    .unwrap();
    assert!(icmp_verifies(&g));
    assert_eq!(&g[42 + 12..42 + 16], &[192, 168, 0, 1]);
    assert_eq!(&g[42 + 20..42 + 28], &data[..], "the fragment's data");
}

#[test]
fn complete_partial_checksums() {
    for udp in [false, true] {
        let b = FrameBuilder::eth(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .payload(b"hello");
        let good = if udp { b.udp(1, 2) } else { b.tcp(1, 2, 0x18) }.build();
        let p = parse(&good);
        let at = 34 + if udp { 6 } else { 16 };
        let mut f = good.clone();
        f[at..at + 2].copy_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(&[0; 6]); // Ethernet padding is not part of the segment
        complete_l4_checksum(&mut f, &p).unwrap();
        assert_eq!(&f[..good.len()], &good[..]);
    }
    let mut arp = FrameBuilder::eth(A, B)
        .arp(1, A, [1, 1, 1, 1], B, [2, 2, 2, 2])
        .build();
    let p = parse(&arp);
    assert!(complete_l4_checksum(&mut arp, &p).is_err());
}

/// An SCTP packet whose CRC32c a sender left to the device (veth offloads it: the field is
/// 0, `csum_offset` 8): both completions write the CRC32c, little-endian, as SCTP does, and
/// leave Ethernet padding out of it.
#[test]
fn complete_partial_sctp_crc() {
    // IPv4 (proto 132) + SCTP common header + a DATA chunk of 20 bytes.
    let mut good = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .payload(&[0u8; 12 + 20])
        .build();
    good[14 + 9] = 132;
    let l4 = 34;
    good[l4..l4 + 4].copy_from_slice(&[0x9c, 0x40, 0x0b, 0x59]); // ports 40000 -> 2905
    good[l4 + 4..l4 + 8].copy_from_slice(&[1, 2, 3, 4]); // verification tag
    good[l4 + 12] = 0; // DATA
    good[l4 + 14..l4 + 16].copy_from_slice(&20u16.to_be_bytes());
    for (i, b) in good[l4 + 16..].iter_mut().enumerate() {
        *b = i as u8 * 3 + 1;
    }
    let mut ip = good[14..34].to_vec();
    ip[10..12].fill(0);
    let c = crate::checksum::ipv4_header(&ip);
    good[24..26].copy_from_slice(&c.to_be_bytes());
    let crc = checksum::crc32c(&good[l4..]);
    assert_ne!(crc, 0);
    let mut sent = good.clone();
    sent[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
    // From the parsed offsets, with Ethernet padding after the packet.
    let mut f = good.clone();
    f.extend_from_slice(&[0xee; 6]);
    let p = parse(&f);
    complete_l4_checksum(&mut f, &p).unwrap();
    assert_eq!(&f[..sent.len()], &sent[..]);
    // From the port's csum_start / csum_offset.
    let mut g = good.clone();
    crate::gso::complete_checksum(&mut g, l4, 8).unwrap();
    assert_eq!(g, sent);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// TOS and TTL rewrites (RFC 1624 incremental) leave the same header checksum as a frame
    /// built with the new values (full recompute).
    #[test]
    fn ipv4_tos_ttl_match_full_recompute(
        src in any::<u32>(), dst in any::<u32>(), tos in any::<u8>(), ttl in any::<u8>(),
        new_tos in any::<u8>(), new_ttl in any::<u8>(), ident in any::<u16>(),
    ) {
        let b = |tos: u8, ttl: u8| FrameBuilder::eth(A, B).ipv4(src, dst).tos(tos).ttl(ttl)
            .ident(ident).udp(1, 2).build();
        let mut f = b(tos, ttl);
        let p = parse(&f);
        set_ipv4_tos(&mut f, &p, new_tos).unwrap();
        set_ipv4_ttl(&mut f, &p, new_ttl).unwrap();
        let want = b(new_tos, new_ttl);
        prop_assert!(ipv4::Packet::new_checked(&f[14..]).unwrap().verify_checksum());
        let same = |a: u16, b: u16| a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0);
        prop_assert!(same(rd16(&f, 24), rd16(&want, 24)));
        prop_assert_eq!(&f[..24], &want[..24]);
        prop_assert_eq!(&f[26..], &want[26..]);
    }

    /// ICMP type/code and echo identifier rewrites against a frame built with the new values.
    #[test]
    fn icmp_rewrites_match_full_recompute(
        ty in prop_oneof![Just(0u8), Just(8u8)], code in any::<u8>(), new_ty in prop_oneof![Just(0u8), Just(8u8)],
        new_code in any::<u8>(), id in any::<u16>(), new_id in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        // The reference: built with the new values, ICMP checksum recomputed in full.
        let build = |ty: u8, code: u8, id: u16| {
            let mut f = FrameBuilder::eth(A, B).ipv4([1, 1, 1, 1], [2, 2, 2, 2]).icmp(ty, code)
                .payload(&payload).build();
            f[38..40].copy_from_slice(&id.to_be_bytes());
            f[36..38].copy_from_slice(&[0, 0]);
            let c = checksum::icmpv4(&f[34..]);
            f[36..38].copy_from_slice(&c.to_be_bytes());
            f
        };
        let mut f = build(ty, code, id);
        let p = parse(&f);
        set_icmpv4_echo_id(&mut f, &p, new_id).unwrap();
        set_icmpv4_type_code(&mut f, &p, Some(new_ty), None).unwrap();
        set_icmpv4_type_code(&mut f, &p, None, Some(new_code)).unwrap();
        prop_assert!(icmp_verifies(&f));
        let want = build(new_ty, new_code, new_id);
        let same = |a: u16, b: u16| a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0);
        prop_assert!(same(rd16(&f, 36), rd16(&want, 36)));
        prop_assert_eq!(&f[..36], &want[..36]);
        prop_assert_eq!(&f[38..], &want[38..]);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// SCTP port rewrite against what Open vSwitch 3.1 sent for `set_field:9->sctp_dst` (from the
/// differential suite): the CRC32c field keeps its error (here the sender's zero).
#[test]
fn sctp_port_rewrite_matches_open_vswitch() {
    let before = hex(
        "000000000002000000000001080045000028123400004084541c0a0000010a00000204d20050000000010000000041484f565d646b72",
    );
    let ovs = hex(
        "000000000002000000000001080045000028123400004084541c0a0000010a00000204d200090000000187837ff941484f565d646b72",
    );
    let mut f = before.clone();
    let mut k = FlowKey::default();
    let p = extract(&f, &mut k);
    assert_eq!((k.tp_src, k.tp_dst), (1234, 80));
    set_l4_dst_port(&mut f, &p, 9, L4Checksum::Complete).unwrap();
    assert_eq!(f, ovs);
    // With a right checksum the result is right too: rewrite back and forth.
    set_l4_dst_port(&mut f, &p, 80, L4Checksum::Complete).unwrap();
    assert_eq!(f, before);
}

#[test]
fn ipv6_address_rewrite_keeps_the_l4_checksum_valid() {
    let src: [u8; 16] = "2001:db8::1"
        .parse::<core::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let dst: [u8; 16] = "2001:db8::2"
        .parse::<core::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let new: [u8; 16] = "fd00::1".parse::<core::net::Ipv6Addr>().unwrap().octets();
    for proto in [6u8, 17, 58] {
        let build = |s: [u8; 16]| {
            let b = FrameBuilder::eth(A, B).ipv6(s, dst);
            match proto {
                6 => b.tcp(1, 2, 0x02),
                17 => b.udp(1, 2),
                _ => b.icmp(128, 0),
            }
            .payload(b"abcdefgh")
            .build()
        };
        let mut f = build(src);
        let p = parse(&f);
        set_ipv6_addr(&mut f, &p, true, new, L4Checksum::Complete).unwrap();
        assert_eq!(f, build(new), "proto {proto}");
    }
}

/// An IPv6 neighbor discovery frame (ICMPv6 `ty`/`code`, then `body`: flags, target,
/// options) with a right checksum.
fn nd_frame(ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let src = core::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let dst = core::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 9);
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(body);
    let c = checksum::l4_v6(&src, &dst, 58, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&B);
    f.extend_from_slice(&A);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

fn icmpv6_verifies(f: &[u8]) -> bool {
    let src = core::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap());
    let dst = core::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
    let mut zeroed = f[54..].to_vec();
    let sent = u16::from_be_bytes([zeroed[2], zeroed[3]]);
    zeroed[2..4].fill(0);
    checksum::l4_v6(&src, &dst, 58, &zeroed) == sent
}

const TARGET: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];

fn nd_body(flags: [u8; 4], opts: &[&[u8]]) -> Vec<u8> {
    let mut b = flags.to_vec();
    b.extend_from_slice(&TARGET);
    for o in opts {
        b.extend_from_slice(o);
    }
    b
}

fn key_nd(f: &[u8]) -> FlowKey {
    let mut k = FlowKey::default();
    extract(f, &mut k);
    k
}

#[test]
fn nd_fields_are_extracted_as_open_vswitch_does() {
    let sll: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 1];
    let tll: &[u8] = &[2, 1, 0, 0, 0, 0, 0, 2];
    let nonce: &[u8] = &[14, 1, 1, 2, 3, 4, 5, 6];
    // A solicitation with an unknown option before the source address.
    let k = key_nd(&nd_frame(135, 0, &nd_body([0; 4], &[nonce, sll])));
    assert_eq!((k.icmp_type, k.icmp_code), (135, 0));
    assert_eq!(k.nd_target, TARGET);
    assert_eq!((k.arp_sha, k.arp_tha), ([0, 0, 0, 0, 0, 1], [0; 6]));
    // An advertisement carrying both options: both are read.
    let k = key_nd(&nd_frame(136, 0, &nd_body([0x60, 0, 0, 0], &[tll, sll])));
    assert_eq!(
        (k.arp_sha, k.arp_tha),
        ([0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 2])
    );
    // An address option twice: the message is invalid, nothing of it is read.
    let k = key_nd(&nd_frame(135, 0, &nd_body([0; 4], &[sll, sll])));
    assert_eq!((k.nd_target, k.arp_sha), ([0; 16], [0; 6]));
    assert_eq!(k.icmp_type, 135);
    // A zero-length option ends the walk; what came before stays.
    let k = key_nd(&nd_frame(
        135,
        0,
        &nd_body([0; 4], &[&[1, 0, 0, 0, 0, 0, 0, 7], sll]),
    ));
    assert_eq!((k.nd_target, k.arp_sha), (TARGET, [0; 6]));
    // An option longer than what is left ends the walk too.
    let k = key_nd(&nd_frame(
        135,
        0,
        &nd_body([0; 4], &[&[1, 2, 0, 0, 0, 0, 0, 7]]),
    ));
    assert_eq!((k.nd_target, k.arp_sha), (TARGET, [0; 6]));
    // Too short for the target: no ND fields.
    let k = key_nd(&nd_frame(135, 0, &[0, 0, 0, 0, 0xfe, 0x80, 0, 0]));
    assert_eq!(k.nd_target, [0; 16]);
    // Code 1, or another ICMPv6 type: not ND.
    let k = key_nd(&nd_frame(135, 1, &nd_body([0; 4], &[sll])));
    assert_eq!((k.nd_target, k.arp_sha), ([0; 16], [0; 6]));
    let k = key_nd(&nd_frame(128, 0, &nd_body([0; 4], &[sll])));
    assert_eq!((k.nd_target, k.arp_sha), ([0; 16], [0; 6]));
}

#[test]
fn nd_rewrites_keep_the_icmpv6_checksum() {
    let sll: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 1];
    let tll: &[u8] = &[2, 1, 0, 0, 0, 0, 0, 2];
    let mut f = nd_frame(136, 0, &nd_body([0x60, 0, 0, 0], &[tll, sll]));
    let p = parse(&f);
    let new_target = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77];
    set_nd_target(&mut f, &p, new_target).unwrap();
    set_nd_lla(&mut f, &p, true, [0xa, 0, 0, 0, 0, 0x99]).unwrap();
    // The first address option is the target's: the source one is left alone.
    assert_eq!(
        set_nd_lla(&mut f, &p, false, [0xa, 0, 0, 0, 0, 0x98]),
        Err(RewriteError::NoNdOption)
    );
    assert!(icmpv6_verifies(&f));
    let k = key_nd(&f);
    assert_eq!(k.nd_target, new_target);
    assert_eq!(k.arp_tha, [0xa, 0, 0, 0, 0, 0x99]);
    assert_eq!(k.arp_sha, [0, 0, 0, 0, 0, 1]);
    // No option at all: nothing to rewrite; the target still is.
    let mut f = nd_frame(135, 0, &nd_body([0; 4], &[]));
    let p = parse(&f);
    assert_eq!(
        set_nd_lla(&mut f, &p, false, [1; 6]),
        Err(RewriteError::NoNdOption)
    );
    set_nd_target(&mut f, &p, [0xff; 16]).unwrap();
    assert!(icmpv6_verifies(&f));
    // Not ND: refused, frame unchanged.
    let mut f = nd_frame(128, 0, &nd_body([0; 4], &[sll]));
    let before = f.clone();
    let p = parse(&f);
    assert_eq!(set_nd_target(&mut f, &p, [1; 16]), Err(RewriteError::NotNd));
    assert_eq!(f, before);
}

#[test]
fn icmpv6_echo_id_and_quoted_header_for_nat() {
    let (a, z, n): (
        core::net::Ipv6Addr,
        core::net::Ipv6Addr,
        core::net::Ipv6Addr,
    ) = (
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        "fd00::100".parse().unwrap(),
    );
    let icmp6_ok = |f: &[u8]| {
        let ip = crate::wire::ipv6::Packet::new_checked(&f[14..]).unwrap();
        crate::wire::icmpv6::Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(&ip.src_addr(), &ip.dst_addr())
    };
    // Echo request: the identifier changes, the checksum follows.
    let mut echo = FrameBuilder::eth(A, B).ipv6(a, z).icmp(128, 0).build();
    let p = parse(&echo);
    set_icmpv6_echo_id(&mut echo, &p, 0x0400).unwrap();
    assert_eq!(&echo[54 + 4..54 + 6], &[0x04, 0x00]);
    assert!(icmp6_ok(&echo));
    // Packet Too Big quoting a UDP datagram from the NAT address: the quote is put back to
    // the pod's address and port.
    let udp = FrameBuilder::eth(A, B).ipv6(n, z).udp(1024, 53).build();
    let mut ptb = FrameBuilder::eth(B, A)
        .ipv6(z, a)
        .icmp(2, 0)
        .payload(&udp[14..])
        .build();
    let p = parse(&ptb);
    set_icmpv6_quoted(&mut ptb, &p, a.octets(), z.octets(), 40000, 53).unwrap();
    let quote = &ptb[54 + 8..];
    assert_eq!(&quote[8..24], &a.octets());
    assert_eq!(&quote[24..40], &z.octets());
    assert_eq!(&quote[40..44], &[0x9c, 0x40, 0x00, 0x35]);
    assert!(icmp6_ok(&ptb));
    // Quoting a later fragment (a fragment header, offset 8 bytes): the addresses are put
    // back, the fragment's data is left alone.
    let mut frag = udp[14..54].to_vec();
    frag[6] = 44;
    frag.extend_from_slice(&[17, 0, 0x00, 0x08, 0, 0, 0, 7]);
    frag.extend_from_slice(&udp[54..]);
    let mut ptb = FrameBuilder::eth(B, A)
        .ipv6(z, a)
        .icmp(2, 0)
        .payload(&frag)
        .build();
    let data = ptb[54 + 8 + 48..].to_vec();
    let p = parse(&ptb);
    set_icmpv6_quoted(&mut ptb, &p, a.octets(), z.octets(), 40000, 53).unwrap();
    assert_eq!(&ptb[54 + 8 + 8..54 + 8 + 24], &a.octets());
    assert_eq!(&ptb[54 + 8 + 48..], &data[..], "the fragment's data");
    assert!(icmp6_ok(&ptb));
    // Refused, frame untouched: an echo is no error, a TCP segment no echo.
    let before = echo.clone();
    let p = parse(&echo);
    assert_eq!(
        set_icmpv6_quoted(&mut echo, &p, a.octets(), z.octets(), 1, 2),
        Err(RewriteError::NoQuotedIpv6Header)
    );
    assert_eq!(echo, before);
    let mut t = FrameBuilder::eth(A, B).ipv6(a, z).tcp(1, 2, 0x02).build();
    let p = parse(&t);
    assert_eq!(
        set_icmpv6_echo_id(&mut t, &p, 9),
        Err(RewriteError::NotIcmpv6Echo)
    );
}

#[test]
fn icmpv6_type_and_code_rewrites_keep_the_checksum() {
    let (a, z): (core::net::Ipv6Addr, core::net::Ipv6Addr) =
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    let mut f = FrameBuilder::eth(A, B)
        .ipv6(a, z)
        .icmp(128, 0)
        .payload(b"ping")
        .build();
    assert!(icmpv6_verifies(&f));
    let p = parse(&f);
    set_icmpv6_type_code(&mut f, &p, Some(129), None).unwrap();
    set_icmpv6_type_code(&mut f, &p, None, Some(3)).unwrap();
    assert_eq!(&f[54..56], &[129, 3]);
    assert!(icmpv6_verifies(&f));
    // Not ICMPv6: refused, frame unchanged.
    let mut t = FrameBuilder::eth(A, B).ipv6(a, z).tcp(1, 2, 0x02).build();
    let before = t.clone();
    let p = parse(&t);
    assert_eq!(
        set_icmpv6_type_code(&mut t, &p, Some(1), None),
        Err(RewriteError::NotIcmpv6)
    );
    assert_eq!(t, before);
}
