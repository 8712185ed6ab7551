//! Flow text printed as `ovs-ofctl -O OpenFlow13` (Open vSwitch 3.1) prints it, in the corners
//! an audit against the real tool found different: zero values (`ds_put_hex` prints `0`), a
//! masked set-field, `write_metadata` bits outside the mask, `nw_frag`, `ip,nw_proto=2`,
//! `check_overlap` and `nat`. Expected text recorded from `ovs-ofctl -O OpenFlow13
//! parse-flow` / `dump-flows` (a masked set-field from `ovs-ofctl ofp-print` of the
//! NXAST_REG_LOAD2 this switch sends for it).

use std::time::Instant;

use flowtable::action::Action;
use flowtable::fields::FieldId;
use flowtable::flow::FlowEntry;
use flowtable::text::{PrintOpts, parse_flow, print_flow, print_instructions, print_match};

fn printed(flow: &str) -> String {
    let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    let m = print_match(&fm.match_);
    let a = print_instructions(&fm.instructions);
    if m.is_empty() { a } else { format!("{m} {a}") }
}

fn check(cases: &[(&str, &str)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(flow, want)| printed(flow) != *want)
        .map(|(flow, want)| {
            format!(
                "{flow}\n  ovs-ofctl: {want}\n  ours:      {}",
                printed(flow)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn zero_values_print_as_ovs_ofctl() {
    check(&[
        ("actions=set_field:0->reg0", "set_field:0->reg0"),
        ("actions=set_field:0x0->reg0", "set_field:0->reg0"),
        ("actions=set_field:0->metadata", "set_field:0->metadata"),
        ("actions=set_field:0->tun_id", "set_field:0->tun_id"),
        ("actions=set_field:0->pkt_mark", "set_field:0->pkt_mark"),
        ("actions=set_field:0->vlan_tci", "set_field:0->vlan_tci"),
        ("actions=set_tunnel:0", "set_field:0->tun_id"),
        ("actions=load:0->NXM_NX_REG0[]", "load:0->NXM_NX_REG0[]"),
        ("actions=write_metadata:0", "write_metadata:0"),
        ("actions=write_metadata:0/0xff", "write_metadata:0/0xff"),
        ("reg0=0,actions=drop", "reg0=0 drop"),
        ("reg0=0/0x1,actions=drop", "reg0=0/0x1 drop"),
        ("metadata=0,actions=drop", "metadata=0 drop"),
        ("tun_id=0/0xff,actions=drop", "tun_id=0/0xff drop"),
    ]);
    // A masked set-field (NXAST_REG_LOAD2 on the wire): `mf_format`, the value in the
    // field's base, the mask in hex.
    let masked = |field, value, mask| {
        let ins = flowtable::Instructions::apply(vec![Action::SetField { field, value, mask }]);
        print_instructions(&ins)
    };
    assert_eq!(
        masked(FieldId::Reg0, 0, 0xff00ff),
        "set_field:0/0xff00ff->reg0"
    );
    assert_eq!(
        masked(FieldId::Reg0, 0x10001, 0xff00ff),
        "set_field:0x10001/0xff00ff->reg0"
    );
    assert_eq!(
        masked(FieldId::Metadata, 0, 0xff),
        "set_field:0/0xff->metadata"
    );
    assert_eq!(
        masked(FieldId::TcpDst, 0x101, 0xf0f),
        "set_field:257/0xf0f->tcp_dst"
    );
}

#[test]
fn write_metadata_keeps_value_bits_outside_the_mask() {
    check(&[
        ("actions=write_metadata:0x1/0x0", "write_metadata:0x1/0"),
        ("actions=write_metadata:0/0", "write_metadata:0/0"),
        ("actions=write_metadata:0xff/0xf", "write_metadata:0xff/0xf"),
    ]);
}

#[test]
fn nw_frag_prints_as_ovs_ofctl() {
    check(&[
        ("ip,nw_frag=no,actions=drop", "ip,nw_frag=no drop"),
        ("ip,nw_frag=yes,actions=drop", "ip,nw_frag=yes drop"),
        ("ip,nw_frag=first,actions=drop", "ip,nw_frag=first drop"),
        ("ip,nw_frag=later,actions=drop", "ip,nw_frag=later drop"),
        (
            "ip,nw_frag=not_later,actions=drop",
            "ip,nw_frag=not_later drop",
        ),
        // What ovs-ofctl sends for `nw_frag=no` (NXM_NX_IP_FRAG, exact 0).
        ("ip,nw_frag=0x0/0x3,actions=drop", "ip,nw_frag=no drop"),
        // Pairs no name reads back as (ovs-ofctl prints `<error>`, `no` and `later`, the last
        // two read as 0/0x3 and 0x3/0x3): kept as numbers, which read back.
        ("ip,nw_frag=0x2/0x3,actions=drop", "ip,nw_frag=0x2/0x3 drop"),
        ("ip,nw_frag=0x0/0x1,actions=drop", "ip,nw_frag=0x0/0x1 drop"),
        ("ip,nw_frag=0x2/0x2,actions=drop", "ip,nw_frag=0x2/0x2 drop"),
    ]);
    // `no` reads as ovs-ofctl reads it (its first `all_frags` entry), so a flow added by
    // either tool is the same flow (`del-flows --strict` finds it).
    assert_eq!(
        parse_flow("ip,nw_frag=no,actions=drop").unwrap().match_,
        parse_flow("ip,nw_frag=0x0/0x3,actions=drop")
            .unwrap()
            .match_
    );
}

#[test]
fn ip_protocol_2_prints_as_ovs_ofctl() {
    check(&[
        ("ip,nw_proto=2,actions=drop", "ip,nw_proto=2 drop"),
        // Still read (ovs-ofctl does not), printed as ovs-ofctl prints the flow.
        ("igmp,actions=drop", "ip,nw_proto=2 drop"),
    ]);
}

#[test]
fn check_overlap_is_kept_on_the_flow() {
    // ovs-ofctl dump-flows --no-stats of Open vSwitch 3.1 after `add-flow check_overlap,...`.
    for (flow, dumped) in [
        (
            "check_overlap,priority=1,actions=drop",
            " check_overlap priority=1 actions=drop",
        ),
        (
            "send_flow_rem,check_overlap,reset_counts,priority=1,actions=drop",
            " send_flow_rem check_overlap reset_counts priority=1 actions=drop",
        ),
    ] {
        let e = FlowEntry::from_mod(&parse_flow(flow).unwrap(), Instant::now());
        assert_eq!(print_flow(&e, &PrintOpts::default()), dumped, "{flow}");
    }
}

#[test]
fn nat_prints_as_ovs_ofctl() {
    check(&[
        (
            "ipv6,actions=ct(commit,nat(src=2001:db8::1))",
            "ipv6 ct(commit,nat(src=2001:db8::1))",
        ),
        (
            "ipv6,actions=ct(commit,nat(src=[2001:db8::1]))",
            "ipv6 ct(commit,nat(src=2001:db8::1))",
        ),
        (
            "ipv6,actions=ct(commit,nat(src=[2001:db8::1]:80))",
            "ipv6 ct(commit,nat(src=[2001:db8::1]:80))",
        ),
        (
            "ipv6,actions=ct(commit,nat(dst=2001:db8::1-2001:db8::2))",
            "ipv6 ct(commit,nat(dst=2001:db8::1-2001:db8::2))",
        ),
        (
            "ipv6,actions=ct(commit,nat(dst=[2001:db8::1]-[2001:db8::2]:80-90,random))",
            "ipv6 ct(commit,nat(dst=[2001:db8::1]-[2001:db8::2]:80-90,random))",
        ),
        (
            "ipv6,actions=ct(commit,nat(dst=2001:db8::1,persistent))",
            "ipv6 ct(commit,nat(dst=2001:db8::1,persistent))",
        ),
        ("ip,actions=ct(commit,nat(src))", "ip ct(commit,nat(src))"),
        ("ip,actions=ct(commit,nat(dst))", "ip ct(commit,nat(dst))"),
        ("ip,actions=ct(commit,nat(src=))", "ip ct(commit,nat(src))"),
        // Without an address Open vSwitch prints no flags either.
        (
            "ip,actions=ct(commit,nat(src,persistent))",
            "ip ct(commit,nat(src))",
        ),
        (
            "ip,actions=ct(commit,nat(src=10.0.0.1:80,hash))",
            "ip ct(commit,nat(src=10.0.0.1:80,hash))",
        ),
        ("ip,actions=ct(nat)", "ip ct(nat)"),
    ]);
}

/// Actions ovs-ofctl also reads bare, without their parentheses (`ovs-ofctl -O OpenFlow13
/// parse-flow`); the ones it refuses bare stay refused.
#[test]
fn bare_actions_read_as_ovs_ofctl() {
    check(&[
        ("ip,actions=ct", "ip ct()"),
        ("ip,actions=ct,output:2", "ip ct(),output:2"),
        ("ip,actions=ct()", "ip ct()"),
        ("ip,actions=clone", "ip clone(drop)"),
        ("ip,actions=clone()", "ip clone(drop)"),
        ("ip,actions=learn", "ip learn(table=1)"),
        ("ip,actions=learn()", "ip learn(table=1)"),
        ("ip,actions=write_actions", "ip drop"),
        ("ip,actions=write_actions()", "ip drop"),
    ]);
    for refused in [
        "ip,actions=conjunction",
        "ip,actions=check_pkt_larger",
        "ip,actions=multipath",
        "ip,actions=bundle",
        "ip,actions=sample",
        "ip,actions=resubmit",
    ] {
        assert!(parse_flow(refused).is_err(), "{refused}");
    }
}

/// A partial set-field of a field with only an OXM header (`metadata`, `xreg`) is a `load:` as
/// ovs-ofctl makes it; what ovs-ofctl or this switch cannot carry is refused, not changed.
#[test]
fn partial_set_fields_and_wide_subfields_as_ovs_ofctl() {
    check(&[
        (
            "actions=set_field:1/1->metadata",
            "load:0x1->OXM_OF_METADATA[0]",
        ),
        (
            "actions=set_field:0x100/0xff00->xreg1",
            "load:0x1->OXM_OF_PKT_REG1[8..15]",
        ),
        ("ip,actions=set_field:16->nw_tos", "ip set_field:16->nw_tos"),
    ]);
    for refused in [
        // ovs-ofctl: "17 is not a valid value for field nw_tos".
        "ip,actions=set_field:17->nw_tos",
        // Wider than the 64 bits NXAST_OUTPUT_REG / MULTIPATH / BUNDLE_LOAD carry (Open
        // vSwitch wraps these on the wire: `[0..64]` becomes `[1]`).
        "actions=output:NXM_NX_XXREG0[]",
        "actions=output:NXM_NX_XXREG0[0..64]",
        "actions=multipath(eth_src,50,modulo_n,2,0,NXM_NX_XXREG1[])",
        "actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_XXREG1[],members:1,2)",
    ] {
        assert!(parse_flow(refused).is_err(), "{refused}");
    }
    assert!(parse_flow("actions=output:NXM_NX_XXREG0[0..63]").is_ok());
}

/// `ct_state` with every flag matched reads and prints as Open vSwitch's flag list
/// (`new|trk`, `0`), as `tcp_flags` does (`ovs-ofctl -O OpenFlow13 parse-flow`).
#[test]
fn exact_ct_state_as_ovs_ofctl() {
    check(&[
        ("ct_state=trk,actions=drop", "ct_state=trk drop"),
        ("ct_state=new|trk,actions=drop", "ct_state=new|trk drop"),
        ("ct_state=0x21,actions=drop", "ct_state=new|trk drop"),
        ("ct_state=0/0xff,actions=drop", "ct_state=0 drop"),
        (
            "ct_state=0xff,actions=drop",
            "ct_state=new|est|rel|rpl|inv|trk|snat|dnat drop",
        ),
        ("ct_state=0x21/0x21,actions=drop", "ct_state=+new+trk drop"),
        (
            "ct_state=0x1/0xfe,actions=drop",
            "ct_state=-est-rel-rpl-inv-trk-snat-dnat drop",
        ),
    ]);
    assert!(parse_flow("ct_state=bogus,actions=drop").is_err());
}

/// Text real add-ons write that ovs-ofctl reads (found running ~900 flows of Antrea, OVN and
/// ovn-kubernetes through both): `ip6`, a bare field name as a whole subfield, `mod_nw_ecn`,
/// `actions=` right after a value, spaces between `ct` arguments.
#[test]
fn add_on_text_ovs_ofctl_reads() {
    check(&[
        ("ip6,actions=drop", "ipv6 drop"),
        (
            "actions=move:tun_src->tun_dst",
            "move:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[]",
        ),
        (
            "actions=move:NXM_NX_REG0->NXM_NX_REG1[]",
            "move:NXM_NX_REG0[]->NXM_NX_REG1[]",
        ),
        ("actions=load:1->reg0", "load:0x1->NXM_NX_REG0[]"),
        ("ip,actions=mod_nw_ecn:1", "ip set_field:1->nw_ecn"),
        (
            "ip,nw_src=10.244.0.0/24actions=drop",
            "ip,nw_src=10.244.0.0/24 drop",
        ),
        (
            "tcp,actions=ct(zone=64003 nat,table=7)",
            "tcp ct(table=7,zone=64003,nat)",
        ),
        ("ip,actions=ct(commit zone=5)", "ip ct(commit,zone=5)"),
    ]);
    // NXAST_STACK_PUSH / POP, as OVN saves in_port around a resubmit.
    check(&[(
        "actions=push:NXM_OF_IN_PORT[],load:0xffff->NXM_OF_IN_PORT[],resubmit(,65),pop:NXM_OF_IN_PORT[]",
        "push:NXM_OF_IN_PORT[],load:0xffff->NXM_OF_IN_PORT[],resubmit(,65),pop:NXM_OF_IN_PORT[]",
    )]);
}
