use super::*;
use crate::build::FrameBuilder;
use crate::wire::tcp::flags;

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn key_of(frame: &[u8]) -> (FlowKey, Parsed) {
    let mut key = FlowKey::default();
    let parsed = extract(frame, &mut key);
    (key, parsed)
}

#[test]
fn eth_ipv4_tcp() {
    let f = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tos(0xb8)
        .ttl(63)
        .tcp(12345, 80, flags::SYN | flags::ACK)
        .payload(b"hi")
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(k.eth_src, A);
    assert_eq!(k.eth_dst, B);
    assert_eq!(k.eth_type, 0x0800);
    assert_eq!(k.vlan_tci, 0);
    assert_eq!(k.nw_src, 0x0a00_0001);
    assert_eq!(k.nw_dst, 0x0a00_0002);
    assert_eq!(k.nw_proto, 6);
    assert_eq!(k.nw_tos, 0xb8);
    assert_eq!(k.nw_ttl, 63);
    assert_eq!(k.nw_frag, 0);
    assert_eq!((k.tp_src, k.tp_dst), (12345, 80));
    assert_eq!(k.tcp_flags, flags::SYN | flags::ACK);
    assert_eq!(p.l3_kind, L3Kind::Ipv4);
    assert_eq!(p.l3_offset(), Some(14));
    assert_eq!(p.l4_offset(), Some(34));
    assert_eq!(p.payload_offset(), Some(54));
    assert_eq!(p.l3_end(), Some(f.len()));
    assert_eq!(p.l4_proto, 6);
    assert_eq!(p.vlans, 0);
}

#[test]
fn ipv4_options_move_l4() {
    let f = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .ipv4_options(&[0x94, 0x04, 0, 0, 1, 1, 1, 0])
        .udp(53, 5353)
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(p.l4_offset(), Some(14 + 28));
    assert_eq!((k.tp_src, k.tp_dst), (53, 5353));
}

#[test]
fn one_and_two_vlan_tags() {
    let f = FrameBuilder::eth(A, B)
        .vlan(0x2064)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .udp(1, 2)
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(k.vlan_tci, 0x2064 | VLAN_PRESENT);
    assert_eq!(k.eth_type, 0x0800);
    assert_eq!(p.vlans, 1);
    assert_eq!(p.l3_offset(), Some(18));
    assert_eq!((k.tp_src, k.tp_dst), (1, 2));

    let f = FrameBuilder::eth(A, B)
        .tag(0x88a8, 100)
        .vlan(10)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .udp(1, 2)
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(k.vlan_tci, 100 | VLAN_PRESENT, "outermost tag is kept");
    assert_eq!(p.vlans, 2);
    assert_eq!(p.l3_offset(), Some(22));
    assert_eq!(k.nw_dst, 0x0202_0202);

    // A third tag is not parsed: the key shows its TPID as the EtherType.
    let f = FrameBuilder::eth(A, B)
        .vlan(1)
        .vlan(2)
        .vlan(3)
        .ethertype(0x0800)
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(k.eth_type, 0x8100);
    assert_eq!(p.l3_kind, L3Kind::None);
}

#[test]
fn arp_request() {
    let f = FrameBuilder::eth(A, [0xff; 6])
        .arp(1, A, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(p.l3_kind, L3Kind::Arp);
    assert_eq!(k.eth_type, 0x0806);
    assert_eq!(k.arp_op, 1);
    assert_eq!(k.arp_sha, A);
    assert_eq!(k.arp_spa, 0x0a00_0001);
    assert_eq!(k.arp_tha, [0; 6]);
    assert_eq!(k.arp_tpa, 0x0a00_0002);
    assert_eq!(p.l4_offset(), None);
    let (_, p) = key_of(&f[..14 + 27]);
    assert_eq!(p.error, Some(ParseError::TruncatedArp));
}

/// RARP (EtherType 0x8035) has ARP's packet format: its fields are extracted as ARP's, as
/// Open vSwitch's `flow_extract` does (a flow `rarp,arp_op=3` is accepted, so it must match).
#[test]
fn rarp_fields_are_extracted_like_arp() {
    let mut f = FrameBuilder::eth(A, [0xff; 6])
        .arp(3, A, [0, 0, 0, 0], A, [0, 0, 0, 0])
        .build();
    f[12..14].copy_from_slice(&0x8035u16.to_be_bytes());
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(p.l3_kind, L3Kind::Arp);
    assert_eq!(k.eth_type, 0x8035);
    assert_eq!((k.arp_op, k.arp_sha, k.arp_tha), (3, A, A));
    f[20..22].copy_from_slice(&4u16.to_be_bytes());
    f[28..32].copy_from_slice(&[10, 0, 0, 9]);
    let (k, _) = key_of(&f);
    assert_eq!((k.arp_op, k.arp_spa), (4, 0x0a00_0009));
    let (_, p) = key_of(&f[..14 + 27]);
    assert_eq!(p.error, Some(ParseError::TruncatedArp));
}

#[test]
fn icmpv4_echo() {
    let f = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .icmp(8, 0)
        .build();
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!((k.icmp_type, k.icmp_code), (8, 0));
    assert_eq!((k.tp_src, k.tp_dst), (0, 0));
    assert_eq!(k.nw_proto, 1);
}

#[test]
fn ipv6_with_extension_headers_and_icmpv6() {
    // fd00::1 -> fd00::2, hop-by-hop (8 bytes) + destination options (16 bytes), ICMPv6 echo.
    let mut f = vec![];
    f.extend_from_slice(&B);
    f.extend_from_slice(&A);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x6b, 0x81, 0x23, 0x45, 0x00, 8 + 16 + 8, 0, 0x40]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> dest opts
    f.extend_from_slice(&[58, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // -> ICMPv6
    f.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]); // echo request
    let (k, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(p.l3_kind, L3Kind::Ipv6);
    assert_eq!(k.eth_type, 0x86dd);
    assert_eq!(k.nw_tos, 0xb8);
    assert_eq!(k.ipv6_label, 0x12345);
    assert_eq!(k.nw_ttl, 0x40);
    assert_eq!(k.ipv6_src[15], 1);
    assert_eq!(k.ipv6_dst[15], 2);
    assert_eq!(k.nw_proto, 58);
    assert_eq!((k.icmp_type, k.icmp_code), (128, 0));
    assert_eq!(p.l4_offset(), Some(14 + 40 + 24));
    assert_eq!(p.l4_proto, 58);
    assert_eq!(p.l3_end(), Some(f.len()));

    // Cut inside the destination options header.
    let mut cut = f[..14 + 40 + 12].to_vec();
    cut[14 + 5] = 12;
    let (k, p) = key_of(&cut);
    assert_eq!(p.error, Some(ParseError::TruncatedIpv6Ext));
    assert_eq!(k.ipv6_dst[15], 2, "the fixed header fields are kept");
}

#[test]
fn ipv6_fragments() {
    let base = |frag_word: [u8; 2]| {
        let mut f = vec![];
        f.extend_from_slice(&B);
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 16, 44, 64]);
        f.extend_from_slice(&[0u8; 32]);
        f.extend_from_slice(&[17, 0, frag_word[0], frag_word[1], 0x89, 0xab, 0xcd, 0xef]);
        f.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0, 8, 0, 0]);
        f
    };
    let (k, p) = key_of(&base([0x00, 0x01])); // offset 0, M=1
    assert_eq!(p.error, None);
    assert_eq!(k.nw_frag, FRAG_ANY);
    assert_eq!(k.nw_proto, 17);
    assert_eq!((k.tp_src, k.tp_dst), (1234, 53));
    assert_eq!(
        p.ipv6_frag_id(),
        0x89ab_cdef,
        "the datagram's identification"
    );
    let (k, p) = key_of(&base([0x00, 0x10])); // offset 16
    assert_eq!(p.error, None);
    assert_eq!(k.nw_frag, FRAG_ANY | FRAG_LATER);
    assert_eq!((k.tp_src, k.tp_dst), (0, 0));
    assert_eq!(p.l4_offset(), None);
    assert_eq!(p.ipv6_frag_id(), 0x89ab_cdef);
}

#[test]
fn ipv4_fragments() {
    let first = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .fragment(true, 0)
        .udp(7, 9)
        .build();
    let (k, p) = key_of(&first);
    assert_eq!(p.error, None);
    assert_eq!(k.nw_frag, FRAG_ANY);
    assert_eq!((k.tp_src, k.tp_dst), (7, 9));
    let later = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .fragment(false, 1480)
        .udp(7, 9)
        .build();
    let (k, p) = key_of(&later);
    assert_eq!(p.error, None);
    assert_eq!(k.nw_frag, FRAG_ANY | FRAG_LATER);
    assert_eq!((k.tp_src, k.tp_dst), (0, 0));
    assert_eq!(p.l4_offset(), None);
    assert_eq!(k.nw_proto, 17);
}

#[test]
fn every_error_is_named() {
    let tcp = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .tcp(1, 2, 0)
        .build();
    assert_eq!(key_of(&tcp[..13]).1.error, Some(ParseError::Runt));
    assert_eq!(
        key_of(&tcp[..14 + 19]).1.error,
        Some(ParseError::TruncatedIpv4)
    );
    assert_eq!(
        key_of(&tcp[..tcp.len() - 1]).1.error,
        Some(ParseError::TruncatedIpv4)
    );

    let mut bad = tcp.clone();
    bad[14] = 0x55;
    assert_eq!(
        key_of(&bad).1.error,
        Some(ParseError::BadIpv4Header(Ipv4Fault::Version))
    );
    bad[14] = 0x44;
    assert_eq!(
        key_of(&bad).1.error,
        Some(ParseError::BadIpv4Header(Ipv4Fault::Ihl))
    );
    let mut bad = tcp.clone();
    bad[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(
        key_of(&bad).1.error,
        Some(ParseError::BadIpv4Header(Ipv4Fault::TotalLen))
    );
    let mut bad = tcp.clone();
    bad[14] = 0x4f; // IHL 60 bytes > what is there
    assert_eq!(key_of(&bad).1.error, Some(ParseError::TruncatedIpv4));

    // The IP total length says 39: the TCP header is one byte short.
    let mut short = tcp.clone();
    short[16..18].copy_from_slice(&39u16.to_be_bytes());
    let (k, p) = key_of(&short);
    assert_eq!(p.error, Some(ParseError::TruncatedL4));
    assert_eq!(k.nw_src, 0x0101_0101, "L3 fields survive an L4 fault");
    let mut bad_off = tcp.clone();
    bad_off[14 + 20 + 12] = 0x40;
    let (k, p) = key_of(&bad_off);
    assert_eq!(p.error, Some(ParseError::BadTcpOffset));
    assert_eq!(
        (k.tp_dst, k.nw_proto),
        (0, 6),
        "a faulty L4 header adds no L4 field"
    );
    assert_eq!(p.payload_offset(), None);

    let vlan = FrameBuilder::eth(A, B)
        .vlan(5)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .build();
    assert_eq!(key_of(&vlan[..17]).1.error, Some(ParseError::TruncatedVlan));

    let v6 = FrameBuilder::eth(A, B)
        .ipv6([0u8; 16], [1u8; 16])
        .udp(1, 2)
        .build();
    assert_eq!(key_of(&v6).1.error, None);
    assert_eq!(
        key_of(&v6[..14 + 39]).1.error,
        Some(ParseError::TruncatedIpv6)
    );
    assert_eq!(
        key_of(&v6[..v6.len() - 1]).1.error,
        Some(ParseError::TruncatedIpv6)
    );
    let mut bad = v6.clone();
    bad[14] = 0x40;
    assert_eq!(key_of(&bad).1.error, Some(ParseError::BadIpv6Version));
}

/// As Open vSwitch: a faulty IP header contributes no L3 or L4 field; L2 stays.
#[test]
fn a_faulty_ip_header_leaves_only_l2() {
    let tcp = FrameBuilder::eth(A, B)
        .vlan(5)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .tcp(1, 2, 0x02)
        .build();
    let (k, p) = key_of(&tcp[..tcp.len() - 1]);
    assert_eq!(p.error, Some(ParseError::TruncatedIpv4));
    assert_eq!((k.eth_type, k.vlan_tci & 0xfff), (0x0800, 5));
    assert_eq!((k.nw_src, k.nw_proto, k.nw_ttl, k.tp_dst), (0, 0, 0, 0));
    assert_eq!((p.l3_end(), p.l4_offset()), (None, None));
}

#[test]
fn key_is_reset_but_metadata_is_kept() {
    let mut key = FlowKey {
        in_port: 7,
        recirc_id: 3,
        metadata: 9,
        regs: [1; 16],
        tun_id: 42,
        tun_src: 5,
        tun_dst: 6,
        ct_state: 0x21,
        ct_zone: 4,
        ct_mark: 8,
        ..FlowKey::default()
    };
    let tcp = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .tcp(1, 2, 0)
        .build();
    extract(&tcp, &mut key);
    let arp = FrameBuilder::eth(A, B)
        .arp(2, A, [1, 1, 1, 1], B, [2, 2, 2, 2])
        .build();
    extract(&arp, &mut key);
    assert_eq!(
        (key.nw_src, key.tp_src, key.nw_proto),
        (0, 0, 0),
        "previous L3/L4 cleared"
    );
    assert_eq!(key.arp_op, 2);
    assert_eq!(
        (key.in_port, key.recirc_id, key.metadata, key.regs),
        (7, 3, 9, [1; 16])
    );
    assert_eq!((key.tun_id, key.tun_src, key.tun_dst), (42, 5, 6));
    assert_eq!((key.ct_state, key.ct_zone, key.ct_mark), (0x21, 4, 8));
}

#[test]
fn ethernet_padding_is_not_l4() {
    // A minimum-size frame: 60 bytes, UDP datagram of 8 bytes, padding after it.
    let mut f = FrameBuilder::eth(A, B)
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2])
        .udp(1, 2)
        .build();
    f.resize(60, 0);
    let (_, p) = key_of(&f);
    assert_eq!(p.error, None);
    assert_eq!(p.l3_end(), Some(14 + 28));
}
