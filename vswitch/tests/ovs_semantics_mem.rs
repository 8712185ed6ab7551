//! Open vSwitch semantics the differential suite (`ovs_differential.rs`) found us missing, checked
//! without root or Open vSwitch through the in-memory datapath: group buckets on their own copy
//! of the packet, `resubmit(PORT,T)`, a table miss or a missing port in the middle of a walk,
//! IPv6 rewrites, and the read-only conntrack fields. Each packet is sent twice: the second
//! comes from the caches, which must do what the slow path did.

use encap::build::FrameBuilder;
use vswitch::datapath;

mod common;

const A: [u8; 6] = [0, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0, 0, 0, 0, 0, 2];

fn bench(n: u32) -> common::MemBridge {
    common::MemBridge::new(n, datapath::Options::default())
}

fn udp4() -> Vec<u8> {
    FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1234, 53)
        .payload(b"payload!")
        .build()
}

/// What ports `1..=n` sent since the last call.
fn sent(b: &mut common::MemBridge, n: u32) -> Vec<(u32, Vec<Vec<u8>>)> {
    (1..=n)
        .map(|p| (p, b.received(p)))
        .filter(|(_, f)| !f.is_empty())
        .collect()
}

fn twice(b: &mut common::MemBridge, n: u32, frame: &[u8]) -> Vec<(u32, Vec<Vec<u8>>)> {
    b.send(1, frame);
    let first = sent(b, n);
    b.send(1, frame);
    assert_eq!(
        sent(b, n),
        first,
        "the cached path differs from the slow path"
    );
    first
}

fn with_dst_mac(frame: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[..6].copy_from_slice(&mac);
    f
}

#[test]
fn group_buckets_and_the_actions_after_the_group_see_the_packet_as_it_was() {
    let mut b = bench(4);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=all,bucket=mod_dl_dst:0a:00:00:00:00:99,output:2,bucket=output:3",
    ]);
    b.flows("actions=group:1,output:4");
    let pkt = udp4();
    let out = twice(&mut b, 4, &pkt);
    assert_eq!(
        out,
        vec![
            (2, vec![with_dst_mac(&pkt, [0x0a, 0, 0, 0, 0, 0x99])]),
            (3, vec![pkt.clone()]),
            (4, vec![pkt.clone()]),
        ]
    );
}

#[test]
fn a_bucket_whose_ttl_expires_stops_only_itself() {
    let mut b = bench(3);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=all,bucket=dec_ttl,output:2,bucket=output:3",
    ]);
    b.flows("ip,actions=group:1");
    let pkt = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .ttl(1)
        .udp(1234, 53)
        .build();
    assert_eq!(twice(&mut b, 3, &pkt), vec![(3, vec![pkt.clone()])]);
}

#[test]
fn resubmit_looks_up_with_the_given_port_and_runs_with_the_packets_own() {
    let mut b = bench(4);
    b.flows(
        "table=0,in_port=1,actions=resubmit(2,1)
table=1,in_port=2,actions=output:2,in_port
table=1,priority=0,actions=output:4",
    );
    let pkt = udp4();
    // Found with in_port=2; `output:2` is not the input port, `in_port` is port 1.
    assert_eq!(
        twice(&mut b, 4, &pkt),
        vec![(1, vec![pkt.clone()]), (2, vec![pkt.clone()])]
    );
    // `resubmit:PORT` without a table searches the current table.
    b.flows(
        "table=3,in_port=1,actions=resubmit:2
table=3,in_port=2,actions=output:3
table=0,actions=goto_table:3",
    );
    assert_eq!(twice(&mut b, 4, &pkt), vec![(3, vec![pkt.clone()])]);
}

#[test]
fn a_miss_or_a_missing_port_does_not_end_the_walk() {
    let mut b = bench(3);
    b.flows("table=0,actions=resubmit(,9),output:9,LOCAL,output:3");
    let pkt = udp4();
    assert_eq!(twice(&mut b, 3, &pkt), vec![(3, vec![pkt.clone()])]);
    // Sent nowhere: counted as a drop with the first reason met.
    b.flows("table=0,actions=resubmit(,9),output:9");
    let before = b.drops("no_match");
    assert!(twice(&mut b, 3, &pkt).is_empty());
    assert_eq!(b.drops("no_match"), before + 2);
}

#[test]
fn ipv6_fields_are_rewritten_with_the_l4_checksum() {
    let mut b = bench(2);
    b.flows(
        "ipv6,actions=set_field:2001:db8::99->ipv6_src,set_field:0x54321->ipv6_label,mod_nw_tos:32,set_field:3->nw_ttl,output:2",
    );
    let src: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let dst: [u8; 16] = "2001:db8::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let pkt = FrameBuilder::eth(A, B)
        .ipv6(src, dst)
        .udp(1234, 53)
        .payload(b"payload!")
        .build();
    let out = twice(&mut b, 2, &pkt);
    let new_src: [u8; 16] = "2001:db8::99"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let want = FrameBuilder::eth(A, B)
        .ipv6(new_src, dst)
        .flow_label(0x54321)
        .tos(32)
        .ttl(3)
        .udp(1234, 53)
        .payload(b"payload!")
        .build();
    assert_eq!(out, vec![(2, vec![want])]);
}

#[test]
fn ct_state_and_ct_zone_are_read_only() {
    let b = bench(1);
    for flow in [
        "ip,actions=set_field:0x21->ct_state,output:1",
        "ip,actions=load:1->NXM_NX_CT_ZONE[],output:1",
        "ip,actions=set_field:3->ct_zone,output:1",
    ] {
        let err = b
            .control
            .command(&["add-flow", "br0", flow])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not writable"), "{flow}: {err}");
    }
}
