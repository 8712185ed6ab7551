//! `clone`, `exit`, `check_pkt_larger`, `load` into `NXM_OF_VLAN_TCI` and the IPv6 ND fields
//! through the in-memory datapath (no root, no Open vSwitch; the differential suite compares
//! them with Open vSwitch). Packets of one flow but different lengths share a megaflow, so
//! `check_pkt_larger` must choose its branch per packet, on cache hits too.

use encap::build::FrameBuilder;
use vswitch::datapath;

mod common;

const A: [u8; 6] = [0, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0, 0, 0, 0, 0, 2];

fn bench(n: u32) -> common::MemBridge {
    common::MemBridge::new(n, datapath::Options::default())
}

fn udp4(payload: usize) -> Vec<u8> {
    FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1234, 53)
        .payload(&vec![0x55; payload])
        .build()
}

/// Which ports `1..=n` sent how many frames since the last call.
fn counts(b: &mut common::MemBridge, n: u32) -> Vec<(u32, usize)> {
    (1..=n)
        .map(|p| (p, b.received(p).len()))
        .filter(|(_, c)| *c > 0)
        .collect()
}

/// `n_packets` of the flows of `dump-flows`, in its order.
fn n_packets(b: &common::MemBridge) -> Vec<u64> {
    b.command(&["dump-flows", "br0"])
        .lines()
        .filter_map(|l| l.split("n_packets=").nth(1))
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn check_pkt_larger_picks_per_packet_and_counts_each_branch() {
    let mut b = bench(3);
    b.flows(
        "table=0,actions=check_pkt_larger(100)->NXM_NX_REG0[0],resubmit(,1)\n\
         table=1,priority=10,reg0=1,actions=output:2\n\
         table=1,priority=0,actions=output:3",
    );
    // Small, large, small, large: the second pair comes from the caches.
    for round in 0..2 {
        b.send(1, &udp4(8));
        assert_eq!(counts(&mut b, 3), vec![(3, 1)], "round {round} small");
        b.send(1, &udp4(200));
        assert_eq!(counts(&mut b, 3), vec![(2, 1)], "round {round} large");
    }
    // The check's own flow saw 4, each table 1 flow only the packets its branch took.
    assert_eq!(n_packets(&b), vec![4, 2, 2]);
}

#[test]
fn check_pkt_larger_changes_are_undone_for_the_caller() {
    let mut b = bench(4);
    b.flows(
        "table=0,actions=resubmit(,1),resubmit(,2)\n\
         table=1,actions=check_pkt_larger(60)->NXM_NX_REG0[0],mod_dl_dst:0a:00:00:00:00:09,resubmit(,3)\n\
         table=3,reg0=1,actions=output:2\n\
         table=2,reg0=1,actions=output:4\n\
         table=2,priority=0,actions=output:3",
    );
    let big = udp4(100);
    b.send(1, &big);
    let two = b.received(2);
    assert_eq!(two.len(), 1);
    assert_eq!(&two[0][..6], &[0x0a, 0, 0, 0, 0, 9]);
    // Table 2 sees reg0 as it was, and the packet without the branch's rewrite.
    assert_eq!(b.received(3), vec![big]);
    assert_eq!(counts(&mut b, 4), vec![]);
}

#[test]
fn clone_works_on_a_copy_and_exit_ends_the_walk() {
    let mut b = bench(4);
    b.flows(
        "table=0,actions=clone(load:1->NXM_NX_REG0[],mod_dl_dst:0a:00:00:00:00:66,resubmit(,1)),resubmit(,1),exit,output:4\n\
         table=1,reg0=1,actions=output:2\n\
         table=1,priority=0,actions=output:3",
    );
    let pkt = udp4(8);
    for _ in 0..2 {
        b.send(1, &pkt);
        let two = b.received(2);
        assert_eq!(two.len(), 1);
        assert_eq!(&two[0][..6], &[0x0a, 0, 0, 0, 0, 0x66]);
        assert_eq!(b.received(3), vec![pkt.clone()]);
        assert_eq!(counts(&mut b, 4), vec![]);
    }
}

#[test]
fn load_into_vlan_tci_pushes_rewrites_and_pops() {
    let mut b = bench(3);
    b.flows(
        "in_port=1,actions=load:0x1005->NXM_OF_VLAN_TCI[],output:2\n\
         in_port=2,actions=load:0->NXM_OF_VLAN_TCI[],output:3",
    );
    let untagged = udp4(8);
    b.send(1, &untagged);
    let tagged = b.received(2);
    assert_eq!(tagged.len(), 1);
    assert_eq!(&tagged[0][12..16], &[0x81, 0x00, 0x00, 0x05]);
    assert_eq!(&tagged[0][16..], &untagged[12..]);
    // A tag already there is rewritten, not stacked.
    let mut vlan7 = tagged[0].clone();
    vlan7[15] = 7;
    b.send(1, &vlan7);
    assert_eq!(b.received(2), tagged);
    // No CFI bit: the tag goes.
    b.send(2, &tagged[0]);
    assert_eq!(b.received(3), vec![untagged]);
}
