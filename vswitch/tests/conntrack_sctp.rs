//! SCTP through conntrack's NAT on in-memory ports (no root): a Service's DNAT to another
//! port rewrites the SCTP ports (the CRC32c kept right) both ways, and an ICMP error quoting
//! the translated packet is related to its connection and translated back.

use encap::FlowKey;
use encap::build::FrameBuilder;
use encap::checksum;
use vswitch::datapath;

mod common;

const CLIENT_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 1, 7];
const GW_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0, 1];
const CLIENT: [u8; 4] = [10, 244, 1, 7];
const VIP: [u8; 4] = [10, 96, 0, 10];
const BACKEND: [u8; 4] = [10, 244, 2, 5];

/// Port 1: the client; port 2: the backend of SCTP Service 10.96.0.10:80 → 10.244.2.5:9000.
fn bridge() -> common::MemBridge {
    let b = common::MemBridge::new(2, datapath::Options::default());
    b.flows(
        "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
         table=1,priority=100,ct_state=+new+trk,sctp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,table=2,zone=1,nat(dst=10.244.2.5:9000))\n\
         table=1,priority=70,ct_state=+est+trk,ip,actions=resubmit(,2)\n\
         table=1,priority=70,ct_state=+rel+trk,ip,actions=resubmit(,2)\n\
         table=1,priority=60,ip,actions=drop\n\
         table=2,priority=10,in_port=1,ip,actions=output:2\n\
         table=2,priority=10,in_port=2,ip,actions=output:1",
    );
    b
}

/// An SCTP packet (common header + one 20-byte chunk) with a right CRC32c.
fn sctp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, chunk_type: u8) -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend_from_slice(&sport.to_be_bytes());
    seg.extend_from_slice(&dport.to_be_bytes());
    seg.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // verification tag
    seg.extend_from_slice(&[0; 4]); // CRC32c, below
    seg.extend_from_slice(&[chunk_type, 0, 0, 20]);
    seg.extend((0..16u8).map(|i| i * 7 + 1));
    let crc = checksum::crc32c(&seg);
    seg[8..12].copy_from_slice(&crc.to_le_bytes());
    let (smac, dmac) = if src == CLIENT {
        (CLIENT_MAC, GW_MAC)
    } else {
        (GW_MAC, CLIENT_MAC)
    };
    FrameBuilder::eth(smac, dmac)
        .ipv4(src, dst)
        .protocol(132)
        .payload(&seg)
        .build()
}

/// The frame's IPv4 addresses, SCTP ports, and whether its CRC32c is right.
fn seen(f: &[u8]) -> ([u8; 4], [u8; 4], u16, u16, bool) {
    let mut k = FlowKey::default();
    let p = encap::extract(f, &mut k);
    assert_eq!(k.nw_proto, 132);
    let l4 = p.l4_offset().unwrap();
    let end = p.l3_end().unwrap();
    let mut seg = f[l4..end].to_vec();
    let sent = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
    seg[8..12].fill(0);
    (
        k.nw_src.to_be_bytes(),
        k.nw_dst.to_be_bytes(),
        k.tp_src,
        k.tp_dst,
        checksum::crc32c(&seg) == sent,
    )
}

#[test]
fn sctp_dnat_rewrites_ports_with_a_right_crc32c_and_icmp_errors_relate() {
    let mut b = bridge();
    b.send(1, &sctp(CLIENT, VIP, 40000, 80, 1)); // INIT
    let out = b.received(2);
    assert_eq!(out.len(), 1, "the INIT must reach the backend");
    assert_eq!(
        seen(&out[0]),
        (CLIENT, BACKEND, 40000, 9000, true),
        "DNAT to backend:9000, CRC32c right"
    );
    assert_eq!(checksum::ipv4_header(&out[0][14..34]), 0);
    let translated = out[0].clone();

    // The backend's answer goes back from the Service's address and port.
    b.send(2, &sctp(BACKEND, CLIENT, 9000, 40000, 2)); // INIT ACK
    let back = b.received(1);
    assert_eq!(back.len(), 1, "the INIT ACK must reach the client");
    assert_eq!(seen(&back[0]), (VIP, CLIENT, 80, 40000, true));

    // A port unreachable from the backend quoting the translated INIT (its IP header and
    // first 8 bytes): related, and the client sees it about VIP:80.
    let quote = &translated[14..14 + 20 + 8];
    let err = FrameBuilder::eth(GW_MAC, CLIENT_MAC)
        .ipv4(BACKEND, CLIENT)
        .icmp(3, 3)
        .payload(quote)
        .build();
    b.send(2, &err);
    let back = b.received(1);
    assert_eq!(back.len(), 1, "the ICMP error must be related, not dropped");
    let f = &back[0];
    assert_eq!(&f[26..30], &VIP, "outer source un-DNATed");
    let q = 14 + 20 + 8;
    assert_eq!(&f[q + 16..q + 20], &VIP, "quoted destination un-DNATed");
    assert_eq!(u16::from_be_bytes([f[q + 20], f[q + 21]]), 40000);
    assert_eq!(
        u16::from_be_bytes([f[q + 22], f[q + 23]]),
        80,
        "quoted SCTP destination port un-DNATed"
    );
    assert_eq!(checksum::icmpv4(&f[34..]), 0, "ICMP checksum right");
}
