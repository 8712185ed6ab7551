//! What Open vSwitch 3.1 refuses (and accepts) at flow-mod and group-mod time, found by
//! comparing flows against a real ovs-vswitchd: a `ct` without `commit` holding more than a
//! plain `nat`, writes to `ct_mark`/`ct_label` outside `ct(exec(..))`, port numbers Open
//! vSwitch cannot represent, ARP fields on RARP flows, and the empty action list. What a flow
//! here accepts, ovs-ofctl must be able to decode from a dump (`dump-flows`, `dump-groups`).

use std::time::Instant;

use flowtable::Instructions;
use flowtable::group::GroupModCommand;
use flowtable::table::{Pipeline, TableError};
use flowtable::text::{parse_flow, parse_group_mod, print_instructions, print_match};

fn add(flow: &str) -> Result<(), TableError> {
    let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    Pipeline::new().flow_mod(&fm, Instant::now()).map(|_| ())
}

fn add_group(group: &str) -> Result<(), TableError> {
    let gm =
        parse_group_mod(group, GroupModCommand::Add).unwrap_or_else(|e| panic!("{group}: {e}"));
    Pipeline::new().group_mod(&gm).map(|_| ())
}

/// Open vSwitch's `decode_NXAST_RAW_CT`: "CT action requires commit flag if actions other than
/// NAT without arguments are specified", OFPBAC_BAD_ARGUMENT. A plain `nat` without `commit`
/// is fine: it un-NATs the packets of connections NATed before.
#[test]
fn ct_without_commit_holds_only_a_plain_nat() {
    for flow in [
        "ip,actions=ct(table=1,nat(src=10.0.0.1))",
        "ip,actions=ct(nat(src=10.0.0.1))",
        "ip,actions=ct(zone=5,nat(dst=10.0.0.2:80))",
        "ipv6,actions=ct(nat(dst=[2001:db8::1]))",
        "ip,actions=ct(table=1,nat(src=10.0.0.1-10.0.0.9,persistent))",
        "ip,actions=ct(exec(set_field:0x1->ct_mark))",
        "ip,actions=ct(table=2,exec(load:0x1->NXM_NX_CT_LABEL[0..7]))",
        "ip,actions=clone(ct(nat(src=10.0.0.1)))",
    ] {
        let e = add(flow).expect_err(flow);
        assert_eq!(e.ofp_error(), (2, 5), "{flow}: {e}");
        assert!(
            e.to_string().contains(
                "CT action requires commit flag if actions other than NAT without arguments"
            ),
            "{flow}: {e}"
        );
    }
    for flow in [
        "ip,actions=ct(nat)",
        "ip,actions=ct(table=1,zone=5,nat)",
        "ipv6,actions=ct(table=3,nat)",
        "ip,actions=ct(commit,nat(src=10.0.0.1))",
        "ip,actions=ct(commit,exec(set_field:0x1->ct_mark))",
        "ip,actions=ct(commit,table=1,nat(dst=10.0.0.2:80),exec(set_field:0x1->ct_mark))",
        // An empty exec(..) is no action (ovs-ofctl prints `ct(table=1)`).
        "ip,actions=ct(table=1,exec())",
    ] {
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
    // In a group bucket too (ovs-vswitchd decodes its actions alike).
    let e =
        add_group("group_id=1,type=all,bucket=actions=ct(table=1,nat(src=10.0.0.1))").unwrap_err();
    assert_eq!(e.ofp_error(), (2, 5), "{e}");
    let e = add_group("group_id=1,type=select,bucket=actions=ct(exec(set_field:0x1->ct_mark))")
        .unwrap_err();
    assert_eq!(e.ofp_error(), (2, 5), "{e}");
    add_group("group_id=1,type=all,bucket=actions=ct(table=1,nat)").unwrap();
    add_group("group_id=1,type=all,bucket=actions=ct(commit,table=1,nat(src=10.0.0.1))").unwrap();
}

/// Open vSwitch's `ofpacts_verify_nested`: `ct_mark` and `ct_label` are set only inside
/// `ct(exec(..))`; a `set_field`, `load` or `move` to one anywhere else is "cannot set CT
/// fields outside of ct action", OFPBAC_BAD_SET_ARGUMENT.
#[test]
fn ct_fields_are_set_only_inside_ct() {
    for flow in [
        "actions=set_field:0x1->ct_mark",
        "ip,actions=set_field:0x1/0xff->ct_mark,output:1",
        "actions=load:0x1->NXM_NX_CT_MARK[]",
        "actions=load:0x1->NXM_NX_CT_MARK[0..3]",
        "actions=move:NXM_NX_REG0[]->NXM_NX_CT_MARK[]",
        "actions=set_field:0x1->ct_label",
        "actions=load:0x1->NXM_NX_CT_LABEL[0..63]",
        "actions=move:NXM_NX_REG0[]->NXM_NX_CT_LABEL[0..31]",
        "actions=clone(set_field:0x1->ct_mark)",
        "actions=write_actions(set_field:0x1->ct_mark)",
        // A learned flow that would load one: refused with the flow that learns it, not
        // accepted and then failing at each learned flow.
        "actions=learn(table=1,load:NXM_NX_REG0[]->NXM_NX_CT_MARK[])",
    ] {
        let e = add(flow).expect_err(flow);
        assert_eq!(e.ofp_error(), (2, 15), "{flow}: {e}");
        assert!(
            e.to_string()
                .contains("cannot set CT fields outside of ct action"),
            "{flow}: {e}"
        );
    }
    for group in [
        "group_id=1,type=all,bucket=actions=set_field:0x1->ct_mark",
        "group_id=1,type=select,bucket=actions=move:NXM_NX_REG0[]->NXM_NX_CT_MARK[]",
        "group_id=1,type=indirect,bucket=actions=load:0x1->NXM_NX_CT_MARK[]",
    ] {
        let e = add_group(group).expect_err(group);
        assert_eq!(e.ofp_error(), (2, 15), "{group}: {e}");
    }
    // Reading them, and writing them where they belong, are fine.
    for flow in [
        "actions=move:NXM_NX_CT_MARK[]->NXM_NX_REG0[]",
        "ct_state=+trk+est,ct_mark=0x1,ip,actions=output:1",
        "ip,actions=ct(commit,exec(set_field:0x1->ct_mark,load:0x2->NXM_NX_CT_LABEL[0..7]))",
    ] {
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
}

/// Open vSwitch keeps OpenFlow 1.0's 16-bit port numbers inside (`ofputil_port_from_ofp11`):
/// an OpenFlow 1.3 port in 0xff00..=0xfffffeff is none it can represent, and
/// 0xffffff00..=0xfffffff7 (OpenFlow 1.0's 0xff00..0xfff7, text `65280`) none it outputs to
/// (`ofpact_check_output_port`): OFPBAC_BAD_OUT_PORT, also in a group bucket.
#[test]
fn output_ports_open_vswitch_cannot_represent_are_refused() {
    for flow in [
        "priority=5,actions=output:0xfff0",
        "priority=5,actions=output:0xff00",
        "priority=5,actions=output:0x10000",
        "priority=5,actions=output:0xfffffeff",
        "priority=5,actions=65280",
        "priority=5,actions=output:65527",
        "priority=5,actions=output:0xffffff00",
        "priority=5,actions=clone(output:0xfff0)",
    ] {
        let e = add(flow).expect_err(flow);
        assert_eq!(e.ofp_error(), (2, 4), "{flow}: {e}");
    }
    for flow in [
        "priority=5,actions=output:65279",
        "priority=5,actions=output:0xfeff",
        "priority=5,actions=LOCAL,IN_PORT,NORMAL,FLOOD,ALL,CONTROLLER",
        "priority=5,actions=output:4294967294",
    ] {
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
    let e = add_group("group_id=1,type=all,bucket=actions=output:0xfff0").unwrap_err();
    assert_eq!(e.ofp_error(), (2, 4), "{e}");
    // A watch_port: OFPGMFC_BAD_WATCH, as Open vSwitch's bucket decoder answers.
    let e = add_group("group_id=1,type=ff,bucket=watch_port:0xfff0,actions=output:1").unwrap_err();
    assert_eq!(e.ofp_error(), (6, 13), "{e}");
    add_group("group_id=1,type=ff,bucket=watch_port:65279,actions=output:1").unwrap();
    // An in_port match or write is refused when the text is read, as ovs-ofctl does ("invalid
    // or unknown port for in_port"); OpenFlow 1.0's reserved numbers stay what they were.
    for flow in [
        "in_port=0xfff0,actions=drop",
        "in_port=0xff00,actions=drop",
        "in_port=0xfffffeff,actions=drop",
        "actions=set_field:0xfff0->in_port",
    ] {
        let e = parse_flow(flow).expect_err(flow).to_string();
        assert!(e.contains("for in_port"), "{flow}: {e}");
    }
    for flow in [
        "in_port=65280,actions=drop",
        "in_port=65279,actions=drop",
        "in_port=0xfffffff0,actions=drop",
        "in_port=LOCAL,actions=drop",
    ] {
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
}

/// RARP (0x8035) has ARP's packet format: ovs-vswitchd takes the ARP fields on it (their
/// prerequisite is eth_type 0x0806 or 0x8035) and ovs-ofctl prints `rarp,arp_op=3`.
#[test]
fn arp_fields_match_and_set_on_rarp() {
    for (flow, want) in [
        ("rarp,arp_op=3,actions=drop", "rarp,arp_op=3"),
        ("dl_type=0x8035,arp_op=3,actions=drop", "rarp,arp_op=3"),
        (
            "rarp,arp_spa=10.0.0.1,actions=drop",
            "rarp,arp_spa=10.0.0.1",
        ),
        (
            "rarp,arp_tpa=10.0.0.0/8,actions=drop",
            "rarp,arp_tpa=10.0.0.0/8",
        ),
        (
            "rarp,arp_sha=00:11:22:33:44:55,actions=drop",
            "rarp,arp_sha=00:11:22:33:44:55",
        ),
        (
            "rarp,arp_tha=00:11:22:33:44:55,actions=drop",
            "rarp,arp_tha=00:11:22:33:44:55",
        ),
        // ovs-ofctl's OpenFlow 1.0 aliases, as on ARP.
        ("rarp,nw_src=10.0.0.1,actions=drop", "rarp,arp_spa=10.0.0.1"),
        ("rarp,nw_proto=4,actions=drop", "rarp,arp_op=4"),
    ] {
        let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
        assert_eq!(print_match(&fm.match_), want, "{flow}");
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
    for flow in [
        "rarp,actions=set_field:4->arp_op",
        "rarp,actions=set_field:10.0.0.1->arp_spa",
        "rarp,actions=load:0x4->NXM_OF_ARP_OP[]",
        "rarp,actions=move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]",
    ] {
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
    // Still no ARP field without ARP or RARP.
    assert!(parse_flow("ip,arp_op=3,actions=drop").is_err());
    assert!(add("ip,actions=set_field:4->arp_op").is_err());
}

/// An empty action list is `drop`, as in ovs-ofctl (`actions=` prints `actions=drop`), in a
/// flow and in a bucket; a flow without `actions=` at all is still refused.
#[test]
fn an_empty_action_list_is_drop() {
    for flow in ["actions=", "priority=5,ip,actions=", "actions= "] {
        let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
        assert_eq!(fm.instructions, Instructions::default(), "{flow}");
        assert_eq!(print_instructions(&fm.instructions), "drop", "{flow}");
        add(flow).unwrap();
    }
    let gm = parse_group_mod("group_id=1,type=all,bucket=actions=", GroupModCommand::Add).unwrap();
    assert_eq!(gm.group.buckets.len(), 1);
    assert!(gm.group.buckets[0].actions.is_empty());
    add_group("group_id=1,type=all,bucket=actions=").unwrap();
    assert_eq!(
        parse_flow("in_port=1").unwrap_err().to_string(),
        "must specify an action (e.g. 'actions=drop')"
    );
}
