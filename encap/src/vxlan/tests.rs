use super::*;
use crate::build::FrameBuilder;
use crate::extract::extract;
use crate::wire::ipv4;

const LOCAL_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const NEXT_HOP_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];

fn tunnel() -> VxlanTunnel {
    VxlanTunnel::new(TunnelConfig::new(
        LOCAL_MAC,
        NEXT_HOP_MAC,
        IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2)),
        4242,
    ))
    .unwrap()
}

/// The outer header for a 64-byte inner frame and flow hash 0x12345678.
static OUTER_BYTES: [u8; 50] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, // Ethernet destination: next hop
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, // Ethernet source: this node
    0x08, 0x00, // EtherType IPv4
    0x45, 0x00, // version 4, IHL 5, TOS 0
    0x00, 0x64, // total length 100 = 20 + 8 + 8 + 64
    0x00, 0x00, 0x40, 0x00, // ident 0, DF
    0x40, 0x11, // TTL 64, protocol UDP
    0xb9, 0x35, // header checksum
    0xc0, 0xa8, 0x00, 0x01, // source 192.168.0.1
    0xc0, 0xa8, 0x00, 0x02, // destination 192.168.0.2
    0xc4, 0x4c, // UDP source port 50252 (from the flow hash)
    0x12, 0xb5, // UDP destination port 4789
    0x00, 0x50, // UDP length 80
    0x00, 0x00, // UDP checksum: none
    0x08, 0x00, 0x00, 0x00, // VXLAN flags: I
    0x00, 0x10, 0x92, 0x00, // VNI 4242
];

#[test]
fn test_construct_outer_header() {
    let mut out = [0u8; OUTER_HEADER_LEN];
    tunnel().write_header(&mut out, 64, 0x1234_5678).unwrap();
    assert_eq!(out, OUTER_BYTES);
    assert!(
        ipv4::Packet::new_checked(&out[14..34]).is_err(),
        "total length covers the inner frame"
    );
    let mut whole = out.to_vec();
    whole.resize(50 + 64, 0);
    assert!(
        ipv4::Packet::new_checked(&whole[14..])
            .unwrap()
            .verify_checksum()
    );
}

#[test]
fn source_port_is_ephemeral_and_spread() {
    let mut seen = std::collections::HashSet::new();
    for h in 0..100_000u32 {
        let p = source_port(h.wrapping_mul(0x9e37_79b9));
        assert!(p >= 49152);
        seen.insert(p);
    }
    assert!(seen.len() > 16000, "{} distinct ports", seen.len());
}

#[test]
fn encap_in_headroom_then_decap_round_trips() {
    let inner = FrameBuilder::eth([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 2])
        .ipv4([10, 244, 1, 5], [10, 244, 2, 7])
        .tcp(40000, 80, 0x02)
        .build();
    let mut buf = vec![0u8; 128 + inner.len()];
    buf[128..].copy_from_slice(&inner);
    let t = tunnel();
    let mut key = FlowKey::default();
    extract(&inner, &mut key);
    let hash = crate::flow_hash(&key);
    let outer = t.encap(&mut buf, 128..128 + inner.len(), hash).unwrap();
    assert_eq!(outer, 78..128 + inner.len());
    let frame = &buf[outer];
    let ip = ipv4::Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.total_len() as usize, frame.len() - 14);

    let d = decap(frame, VXLAN_PORT).unwrap();
    assert_eq!(&frame[d.inner.clone()], &inner[..]);
    assert_eq!(d.vni, 4242);
    assert_eq!(d.outer_src, IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)));
    assert_eq!(d.outer_dst, IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2)));
    assert_eq!(d.outer_ttl, 64);
    assert_eq!(d.udp_src_port, source_port(hash));
    let mut k = FlowKey::default();
    d.set_tunnel_metadata(&mut k);
    assert_eq!(
        (k.tun_id, k.tun_src, k.tun_dst),
        (4242, 0xc0a8_0001, 0xc0a8_0002)
    );
}

#[test]
fn encap_refusals() {
    let t = tunnel();
    let mut buf = [0u8; 100];
    assert_eq!(
        t.encap(&mut buf, 49..100, 0),
        Err(VxlanError::NoHeadroom { need: 50, have: 49 })
    );
    assert_eq!(
        t.encap(&mut buf, 60..101, 0),
        Err(VxlanError::BadInnerRange {
            start: 60,
            end: 101
        })
    );
    let mut out = [0u8; 50];
    assert_eq!(
        t.write_header(&mut out, 70_000, 0),
        Err(VxlanError::InnerTooLong(70_000))
    );
    let v6: IpAddr = "fd00::1".parse().unwrap();
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(
        VxlanTunnel::new(TunnelConfig::new([0; 6], [0; 6], v6, v6, 1)).unwrap_err(),
        VxlanError::Ipv6Underlay
    );
    assert_eq!(
        VxlanTunnel::new(TunnelConfig::new([0; 6], [0; 6], v4, v6, 1)).unwrap_err(),
        VxlanError::MixedFamilies
    );
    assert_eq!(
        VxlanTunnel::new(TunnelConfig::new([0; 6], [0; 6], v4, v4, 1 << 24)).unwrap_err(),
        VxlanError::VniOutOfRange(1 << 24)
    );
}

fn good_frame() -> Vec<u8> {
    let mut f = OUTER_BYTES.to_vec();
    f.extend_from_slice(
        &FrameBuilder::eth([1; 6], [2; 6])
            .ethertype(0x1234)
            .payload(&[0; 50])
            .build(),
    );
    f
}

#[test]
fn decap_errors_are_named() {
    let f = good_frame();
    assert!(decap(&f, VXLAN_PORT).is_ok());
    assert_eq!(decap(&f[..49], VXLAN_PORT), Err(VxlanError::Short));
    assert_eq!(decap(&f[..f.len() - 1], VXLAN_PORT), Err(VxlanError::Short));
    assert_eq!(decap(&f, 8472), Err(VxlanError::WrongPort(4789)));
    let mutate = |at: usize, v: u8| {
        let mut g = f.clone();
        g[at] = v;
        decap(&g, VXLAN_PORT)
    };
    assert_eq!(mutate(13, 0xdd), Err(VxlanError::NotIpv4(0x08dd)));
    assert_eq!(mutate(14, 0x65), Err(VxlanError::BadOuterIpv4));
    assert_eq!(mutate(14, 0x44), Err(VxlanError::BadOuterIpv4));
    assert_eq!(mutate(20, 0x20), Err(VxlanError::OuterFragment));
    assert_eq!(mutate(23, 6), Err(VxlanError::NotUdp(6)));
    assert_eq!(mutate(39, 15), Err(VxlanError::BadUdpLength));
    assert_eq!(mutate(39, 0xff), Err(VxlanError::BadUdpLength));
    assert_eq!(mutate(42, 0x00), Err(VxlanError::BadFlags(0)));
    assert_eq!(mutate(39, 16 + 13), Err(VxlanError::InnerTooShort));
}

#[test]
fn decap_accepts_an_outer_vlan_tag() {
    let f = good_frame();
    let mut tagged = f[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    tagged.extend_from_slice(&f[12..]);
    let d = decap(&tagged, VXLAN_PORT).unwrap();
    assert_eq!(d.inner, 54..tagged.len());
    assert_eq!(d.vni, 4242);
}
