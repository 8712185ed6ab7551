//! OpenFlow match fields and actions of issue 15, executed on packets through the in-memory
//! datapath (no root): conjunctive matching, `ct(force)`, `pkt_mark`, `multipath` and
//! `bundle` (their exact choices are compared with Open vSwitch by the differential suite), and
//! the refusals of what the switch does not execute (`ct(alg=..)` without its protocol or on a
//! port without an ALG, writes to `conj_id`).

use encap::build::FrameBuilder;
use vswitch::datapath;

mod common;

const A_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const B_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0c];

fn bench(n: u32) -> common::MemBridge {
    common::MemBridge::new(n, datapath::Options::default())
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    FrameBuilder::eth(A_MAC, B_MAC)
        .ipv4(src, dst)
        .tcp(sport, dport, 0x02)
        .build()
}

fn udp(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let dst_mac = if src_mac == A_MAC { B_MAC } else { A_MAC };
    FrameBuilder::eth(src_mac, dst_mac)
        .ipv4(src, dst)
        .udp(sport, dport)
        .payload(b"conntrack")
        .build()
}

/// A NetworkPolicy-style rule: sources {10.0.0.1, 10.0.0.3} x ports {80, 443} allowed (to
/// port 2), everything else to the default (port 3).
const POLICY: &str = "\
priority=200,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)
priority=200,ip,nw_src=10.0.0.3,actions=conjunction(7,1/2)
priority=200,tcp,tp_dst=80,actions=conjunction(7,2/2)
priority=200,tcp,tp_dst=443,actions=conjunction(7,2/2)
priority=200,conj_id=7,ip,actions=output:2
priority=0,actions=output:3";

#[test]
fn conjunction_matches_only_when_every_dimension_matches() {
    let mut b = bench(3);
    b.flows(POLICY);
    // Each case twice: the second packet comes from the caches (megaflow/EMC), which must be
    // as exact as the slow path.
    let cases = [
        ([10, 0, 0, 1], 80, 2),
        ([10, 0, 0, 3], 443, 2),
        ([10, 0, 0, 1], 81, 3),
        ([10, 0, 0, 2], 80, 3),
        ([10, 0, 0, 3], 80, 2),
        ([10, 0, 0, 2], 443, 3),
    ];
    for round in 0..2 {
        for (src, dport, want) in cases {
            b.send(1, &tcp(src, [10, 0, 1, 1], 40000, dport));
            assert_eq!(
                b.outputs(3),
                vec![(want, 1)],
                "round {round}: {src:?} -> port {dport}"
            );
        }
    }
}

#[test]
fn conjunction_loses_to_a_higher_priority_flow_and_falls_back_to_identical_lower_ones() {
    let mut b = bench(5);
    b.flows(&format!(
        "{POLICY}
priority=300,ip,nw_src=10.0.0.3,tcp,tp_dst=443,actions=output:4
priority=100,ip,nw_src=10.0.0.1,actions=output:1"
    ));
    // A hard match above the conjunction wins.
    b.send(5, &tcp([10, 0, 0, 3], [10, 0, 1, 1], 1, 443));
    assert_eq!(b.outputs(5), vec![(4, 1)]);
    // The conjunction completes: it wins over the priority-100 flow.
    b.send(5, &tcp([10, 0, 0, 1], [10, 0, 1, 1], 1, 80));
    assert_eq!(b.outputs(5), vec![(2, 1)]);
    // Incomplete: OVS drops back to the lower-priority flow with the identical match.
    b.send(5, &tcp([10, 0, 0, 1], [10, 0, 1, 1], 1, 22));
    assert_eq!(b.outputs(5), vec![(1, 1)]);
}

#[test]
fn conjunction_with_a_missing_dimension_never_matches() {
    let mut b = bench(3);
    // Three dimensions declared, only two ever present.
    b.flows(
        "priority=200,ip,nw_src=10.0.0.1,actions=conjunction(9,1/3)
priority=200,tcp,tp_dst=80,actions=conjunction(9,2/3)
priority=200,conj_id=9,actions=output:2
priority=0,actions=output:3",
    );
    b.send(1, &tcp([10, 0, 0, 1], [10, 0, 1, 1], 1, 80));
    assert_eq!(b.outputs(3), vec![(3, 1)]);
}

#[test]
fn conjunction_flows_are_validated_like_ovs() {
    let b = bench(1);
    let err = b
        .control
        .command(&[
            "add-flow",
            "br0",
            "ip,nw_src=10.0.0.1,actions=conjunction(1,1/2),output:1",
        ])
        .unwrap_err()
        .to_string();
    assert!(err.contains("NXBAC_BAD_CONJUNCTION"), "{err}");
    let err = b
        .control
        .command(&["add-flow", "br0", "ip,actions=conjunction(1,1/1)"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 2 clauses"), "{err}");
    let err = b
        .control
        .command(&["add-flow", "br0", "ip,actions=load:1->NXM_NX_CONJ_ID[]"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not writable"), "{err}");
    // conjunction with note is fine, and prints back as ovs-ofctl prints it.
    b.command(&[
        "add-flow",
        "br0",
        "priority=5,ip,actions=note:ab,conjunction(1,2/2)",
    ]);
    b.command(&["add-flow", "br0", "conj_id=1,ip,actions=drop"]);
    let dump = b.command(&["dump-flows", "br0", "--no-stats"]);
    assert!(
        dump.contains("priority=5,ip actions=note:ab.00.00.00.00.00,conjunction(1,2/2)"),
        "{dump}"
    );
    assert!(dump.contains("conj_id=1,ip actions=drop"), "{dump}");
}

#[test]
fn unexecuted_actions_are_refused_not_accepted() {
    let b = bench(1);
    for (flow, want) in [
        // An ALG needs its protocol in the match (Open vSwitch's check_CT).
        (
            "ip,actions=ct(commit,alg=ftp)",
            "needs a flow that matches tcp",
        ),
        (
            "tcp,actions=ct(commit,alg=tftp)",
            "needs a flow that matches udp",
        ),
        // Only ftp and tftp have an ALG.
        (
            "tcp,actions=ct(commit,alg=22)",
            "only ftp and tftp have an ALG",
        ),
        ("ip,actions=ct(force)", "requires \"commit\""),
        (
            "actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[0..7],members:1)",
            "at least 16 bit",
        ),
        (
            "actions=bundle(eth_src,0,hrw,ofport,members:1,CONTROLLER)",
            "OFPBAC_BAD_OUT_PORT",
        ),
        (
            "actions=multipath(eth_src,0,modulo_n,5,0,NXM_NX_REG0[0..1])",
            "less than specified n_links 5",
        ),
    ] {
        let err = b
            .control
            .command(&["add-flow", "br0", flow])
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{flow}: {err}");
    }
    let dump = b.command(&["dump-flows", "br0"]);
    assert_eq!(
        dump.matches("actions=").count(),
        1,
        "only the bridge's default flow is there:\n{dump}"
    );
}

/// `ct(commit,force)` on a reply tears the connection down and commits it again in the
/// reply's direction: the original side's next packet is then a reply.
#[test]
fn ct_force_recommits_the_connection_in_the_reply_direction() {
    let mut b = bench(4);
    let flows = |reply_actions: &str| {
        format!(
            "table=0,priority=10,ip,ct_state=-trk,actions=ct(table=1)
table=1,priority=10,ip,in_port=1,ct_state=+trk+new,actions=ct(commit),output:2
table=1,priority=10,ip,in_port=1,ct_state=+trk+est-rpl,actions=output:2
table=1,priority=10,ip,in_port=1,ct_state=+trk+est+rpl,actions=output:4
table=1,priority=10,ip,in_port=2,ct_state=+trk+rpl,actions={reply_actions},output:1"
        )
    };
    let a_to_b = udp(A_MAC, [10, 0, 0, 1], [10, 0, 0, 2], 5000, 53);
    let b_to_a = udp(B_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 53, 5000);

    // Without force the reply leaves the connection as it is.
    b.flows(&flows("ct(commit)"));
    b.send(1, &a_to_b);
    assert_eq!(b.outputs(4), vec![(2, 1)]);
    b.send(2, &b_to_a);
    assert_eq!(b.outputs(4), vec![(1, 1)]);
    b.send(1, &a_to_b);
    assert_eq!(b.outputs(4), vec![(2, 1)], "still the original direction");

    // With force (another 5-tuple, a fresh connection).
    let a_to_b = udp(A_MAC, [10, 0, 0, 1], [10, 0, 0, 2], 5001, 53);
    let b_to_a = udp(B_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 53, 5001);
    b.flows(&flows("ct(commit,force)"));
    b.send(1, &a_to_b);
    assert_eq!(b.outputs(4), vec![(2, 1)]);
    b.send(2, &b_to_a);
    assert_eq!(b.outputs(4), vec![(1, 1)]);
    b.send(1, &a_to_b);
    assert_eq!(
        b.outputs(4),
        vec![(4, 1)],
        "after force, the original side is the reply direction"
    );
}

#[test]
fn pkt_mark_is_set_matched_and_printed() {
    let mut b = bench(3);
    b.flows(
        "table=0,actions=set_field:0x2a->pkt_mark,resubmit(,1)
table=1,pkt_mark=0x2a/0xff,actions=output:2
table=1,priority=0,actions=output:3",
    );
    b.send(1, &tcp([10, 0, 0, 1], [10, 0, 1, 1], 1, 80));
    assert_eq!(b.outputs(3), vec![(2, 1)]);
    let dump = b.command(&["dump-flows", "br0", "--no-stats"]);
    assert!(
        dump.contains("table=1, pkt_mark=0x2a/0xff actions=output:2"),
        "{dump}"
    );
    assert!(
        dump.contains("actions=set_field:0x2a->pkt_mark,resubmit(,1)"),
        "{dump}"
    );
    // Packets arrive with mark 0.
    b.flows(
        "pkt_mark=0,actions=output:2
priority=0,actions=output:3",
    );
    b.send(1, &tcp([10, 0, 0, 1], [10, 0, 1, 1], 1, 80));
    assert_eq!(b.outputs(3), vec![(2, 1)]);
}

/// `multipath` spreads flows over its links by their addresses and ports, the same flow always
/// on the same link, cached or not; `bundle` skips a member that is down and takes it back
/// when it comes up, and `bundle_load` writes 0xffff when no member is live.
#[test]
fn multipath_and_bundle_choose_by_hash_and_liveness() {
    let mut b = bench(4);
    b.flows(
        "table=0,actions=multipath(symmetric_l4,0,modulo_n,3,0,NXM_NX_REG0[0..1]),resubmit(,1)
table=1,reg0=0,actions=output:2
table=1,reg0=1,actions=output:3
table=1,reg0=2,actions=output:4",
    );
    let mut seen = std::collections::BTreeSet::new();
    for sport in 1000..1040u16 {
        let frame = tcp([10, 0, 0, 1], [10, 0, 1, 1], sport, 80);
        b.send(1, &frame);
        let first = b.outputs(4);
        assert_eq!(first.len(), 1, "sport {sport}: {first:?}");
        b.send(1, &frame);
        assert_eq!(
            b.outputs(4),
            first,
            "sport {sport}: the cache chose another link"
        );
        seen.insert(first[0].0);
    }
    assert_eq!(seen.len(), 3, "40 flows over 3 links used {seen:?}");

    b.flows("actions=bundle(eth_src,0,active_backup,ofport,members:2,3,4)");
    let frame = tcp([10, 0, 0, 1], [10, 0, 1, 1], 1, 80);
    b.send(1, &frame);
    assert_eq!(b.outputs(4), vec![(2, 1)]);
    let down = openflow::switch::port_config::PORT_DOWN;
    b.switch.set_port_config("br0", "m2", down).unwrap();
    b.send(1, &frame);
    assert_eq!(b.outputs(4), vec![(3, 1)], "member 2 is down");
    b.switch.set_port_config("br0", "m2", 0).unwrap();
    b.send(1, &frame);
    assert_eq!(b.outputs(4), vec![(2, 1)], "member 2 is up again");

    b.flows(
        "table=0,actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:3),resubmit(,1)
table=1,reg0=3,actions=output:3
table=1,reg0=0xffff,actions=output:4",
    );
    b.send(1, &frame);
    assert_eq!(b.outputs(4), vec![(3, 1)]);
    b.switch.set_port_config("br0", "m3", down).unwrap();
    b.send(1, &frame);
    assert_eq!(b.outputs(4), vec![(4, 1)], "no live member: NONE is loaded");
}
