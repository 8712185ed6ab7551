//! Header writes as Open vSwitch executes them, on in-memory ports: `tp_src`/`tp_dst` and the
//! ICMPv6 type and code are rewritten (not dropped as unsupported), a write whose
//! prerequisites a packet does not meet is skipped for that packet (a group bucket's
//! `tcp_dst` on a UDP packet), and VLAN pushes and pops on packets with too few or too many
//! tags. Every case runs twice, in both orders, so that a megaflow made by one packet must
//! not serve the other.

use encap::build::FrameBuilder;
use encap::{FlowKey, checksum};
use vswitch::datapath;

mod common;

const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const POD2_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0c];

fn bench(n: u32) -> common::MemBridge {
    common::MemBridge::new(n, datapath::Options::default())
}

fn key_of(frame: &[u8]) -> FlowKey {
    let mut k = FlowKey::default();
    let parsed = encap::extract(frame, &mut k);
    assert!(parsed.is_ok(), "malformed frame: {:?}", parsed.error);
    k
}

fn tcp_to(port: u16) -> Vec<u8> {
    FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40000, port, 0x02)
        .payload(b"hello")
        .build()
}

fn udp_to(port: u16) -> Vec<u8> {
    FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(40000, port)
        .payload(b"query")
        .build()
}

/// The TCP or UDP checksum of an IPv4 frame (no options) verifies.
fn l4_checksum_ok(f: &[u8]) -> bool {
    let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let mut seg = f[34..].to_vec();
    let at = if f[23] == 6 { 16 } else { 6 };
    let sent = u16::from_be_bytes([seg[at], seg[at + 1]]);
    seg[at..at + 2].fill(0);
    let c = checksum::l4_v4(src, dst, f[23], &seg);
    sent == c || (f[23] == 17 && sent == checksum::udp_nonzero(c))
}

/// `tp_src`/`tp_dst` are the L4 port of whichever of TCP, UDP and SCTP the flow matches:
/// rewritten like `tcp_dst`/`udp_src`, checksum updated (they were taken at install and then
/// dropped every packet as `unsupported`).
#[test]
fn tp_src_and_tp_dst_rewrite_the_l4_port() {
    let mut b = bench(2);
    b.flows(
        "tcp,in_port=1,actions=set_field:8080->tp_dst,output:2\n\
         udp,in_port=1,actions=set_field:5353->tp_src,output:2",
    );
    let unsupported = b.drops("unsupported");
    b.send(1, &tcp_to(80));
    b.send(1, &udp_to(53));
    let out = b.received(2);
    assert_eq!(out.len(), 2, "both sent, none dropped");
    let (t, u) = (key_of(&out[0]), key_of(&out[1]));
    assert_eq!((t.nw_proto, t.tp_src, t.tp_dst), (6, 40000, 8080));
    assert_eq!((u.nw_proto, u.tp_src, u.tp_dst), (17, 5353, 53));
    assert!(out.iter().all(|f| l4_checksum_ok(f)));
    assert_eq!(b.drops("unsupported"), unsupported);

    // In a group bucket (no match to take the protocol from) the generic port stays: the
    // port of whichever of TCP and UDP the packet is, and nothing for ICMP.
    for tcp_first in [true, false] {
        let mut b = bench(2);
        b.command(&[
            "add-group",
            "br0",
            "group_id=1,type=all,bucket=actions=set_field:5353->tp_src,output:2",
        ]);
        b.command(&["add-flow", "br0", "ip,in_port=1,actions=group:1"]);
        let icmp = FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .icmp(8, 0)
            .build();
        let frames = if tcp_first {
            [tcp_to(80), udp_to(53), icmp.clone()]
        } else {
            [icmp.clone(), udp_to(53), tcp_to(80)]
        };
        for f in &frames {
            for _ in 0..2 {
                b.send(1, f);
                let out = b.received(2);
                assert_eq!(out.len(), 1, "tcp_first={tcp_first}");
                let k = key_of(&out[0]);
                if k.nw_proto == 1 {
                    assert_eq!(out[0], icmp);
                } else {
                    assert_eq!(k.tp_src, 5353, "tcp_first={tcp_first}");
                    assert!(l4_checksum_ok(&out[0]));
                }
            }
        }
        assert_eq!(b.drops("unsupported"), 0);
    }
}

/// `icmpv6_type`/`icmpv6_code` are rewritten with the ICMPv6 checksum (they dropped every
/// packet as `unsupported`).
#[test]
fn icmpv6_type_and_code_are_rewritten() {
    let mut b = bench(2);
    b.flows(
        "icmp6,icmpv6_type=128,in_port=1,actions=set_field:129->icmpv6_type,set_field:0->icmpv6_code,output:2",
    );
    let (a, z): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    let echo = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv6(a, z)
        .icmp(128, 0)
        .payload(b"ping")
        .build();
    b.send(1, &echo);
    let out = b.received(2);
    assert_eq!(out.len(), 1);
    let k = key_of(&out[0]);
    assert_eq!((k.icmp_type, k.icmp_code), (129, 0));
    let mut body = out[0][54..].to_vec();
    let sent = u16::from_be_bytes([body[2], body[3]]);
    body[2..4].fill(0);
    assert_eq!(checksum::l4_v6(&a, &z, 58, &body), sent, "ICMPv6 checksum");
}

/// A group bucket's `set_field:8080->tcp_dst` is checked per packet, as Open vSwitch does: a
/// UDP packet through the same flow and group leaves with its own port (the bucket was never
/// checked against a match, and the rewrite took whichever L4 header the packet had).
#[test]
fn a_bucket_port_write_skips_packets_without_the_field() {
    for tcp_first in [true, false] {
        let mut b = bench(2);
        b.command(&[
            "add-group",
            "br0",
            "group_id=1,type=all,bucket=actions=set_field:8080->tcp_dst,output:2",
        ]);
        b.command(&["add-flow", "br0", "ip,actions=group:1"]);
        let order: [(bool, Vec<u8>); 2] = if tcp_first {
            [(true, tcp_to(80)), (false, udp_to(53))]
        } else {
            [(false, udp_to(53)), (true, tcp_to(80))]
        };
        for (is_tcp, frame) in &order {
            // Twice: the second packet of each takes the cached flow.
            for _ in 0..2 {
                b.send(1, frame);
                let out = b.received(2);
                assert_eq!(out.len(), 1);
                let k = key_of(&out[0]);
                if *is_tcp {
                    assert_eq!((k.nw_proto, k.tp_dst), (6, 8080), "tcp_first={tcp_first}");
                } else {
                    assert_eq!((k.nw_proto, k.tp_dst), (17, 53), "tcp_first={tcp_first}");
                    assert_eq!(out[0], *frame, "the UDP datagram leaves unchanged");
                }
                assert!(l4_checksum_ok(&out[0]));
            }
        }
    }
}

/// `pop_vlan` on a packet without a tag does nothing, as in Open vSwitch (a group bucket or an
/// action set can bring one to it: neither is held to the flow's match); it dropped the packet
/// as `vlan_error`.
#[test]
fn pop_vlan_on_an_untagged_packet_does_nothing() {
    let untagged = udp_to(53);
    let tagged = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .vlan(5)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(40000, 53)
        .payload(b"query")
        .build();
    for tagged_first in [true, false] {
        let mut b = bench(3);
        b.command(&[
            "add-group",
            "br0",
            "group_id=1,type=indirect,bucket=actions=pop_vlan,output:2",
        ]);
        b.command(&[
            "add-flows",
            "br0",
            "in_port=1,actions=group:1\n\
             in_port=3,actions=write_actions(pop_vlan,output:2)",
        ]);
        let vlan_errors = b.drops("vlan_error");
        let order = if tagged_first {
            [&tagged, &untagged]
        } else {
            [&untagged, &tagged]
        };
        for in_port in [1, 3] {
            for frame in order {
                for _ in 0..2 {
                    b.send(in_port, frame);
                    let out = b.received(2);
                    assert_eq!(
                        out.len(),
                        1,
                        "in_port={in_port} tagged_first={tagged_first}"
                    );
                    assert_eq!(out[0], untagged, "the tag popped, or none to pop");
                }
            }
        }
        assert_eq!(b.drops("vlan_error"), vlan_errors);
    }
}

/// `push_vlan` onto a frame that has two tags already is refused (`vlan_error`): a third tag
/// is beyond what the parser reads, so the L3 header vanished for the actions after it and
/// `dec_ttl` dropped the packet as `ttl_expired`. One tag more on a single-tagged frame is fine.
#[test]
fn push_vlan_onto_two_tags_is_refused() {
    let single = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .vlan(5)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(40000, 53)
        .payload(b"query")
        .build();
    let double = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .tag(0x88a8, 7)
        .vlan(5)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(40000, 53)
        .payload(b"query")
        .build();
    for double_first in [true, false] {
        let mut b = bench(2);
        b.flows("ip,in_port=1,actions=push_vlan:0x88a8,dec_ttl,output:2");
        let (vlan_errors, expired) = (b.drops("vlan_error"), b.drops("ttl_expired"));
        let order = if double_first {
            [(&double, true), (&single, false)]
        } else {
            [(&single, false), (&double, true)]
        };
        let mut refused = 0;
        for (frame, two_tags) in order {
            for _ in 0..2 {
                b.send(1, frame);
                let out = b.received(2);
                if two_tags {
                    refused += 1;
                    assert!(out.is_empty(), "double_first={double_first}");
                } else {
                    assert_eq!(out.len(), 1);
                    let k = key_of(&out[0]);
                    assert_eq!(k.eth_type, 0x0800, "two tags, the IP header behind them");
                    assert_eq!(k.nw_ttl, 63);
                    assert_eq!(&out[0][12..14], &[0x88, 0xa8]);
                }
            }
        }
        assert_eq!(b.drops("vlan_error"), vlan_errors + refused);
        assert_eq!(b.drops("ttl_expired"), expired);
    }
}
