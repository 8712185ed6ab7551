//! `sample`, `dec_ttl(ids)`, `resubmit(,T,ct)`, `write_actions` and `clear_actions`: parsed and
//! printed as ovs-ofctl 3.1 prints them (expected strings recorded from
//! `ovs-ofctl -O OpenFlow13 parse-flow`), and the table's checks on them.

use std::time::Instant;

use flowtable::table::{Pipeline, TableError};
use flowtable::text::{ParseError, parse_flow, print_instructions};

fn printed(flow: &str) -> String {
    let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    print_instructions(&fm.instructions)
}

#[test]
fn printed_like_ovs_ofctl() {
    let cases = [
        (
            "actions=sample(probability=100,collector_set_id=1,obs_domain_id=2,obs_point_id=3)",
            "sample(probability=100,collector_set_id=1,obs_domain_id=2,obs_point_id=3)",
        ),
        (
            "actions=sample(obs_point_id=3,collector_set_id=0x10,probability=0xffff,obs_domain_id=2,sampling_port=5,egress)",
            "sample(probability=65535,collector_set_id=16,obs_domain_id=2,obs_point_id=3,sampling_port=5,egress)",
        ),
        (
            "actions=sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,sampling_port=LOCAL,ingress),output:2",
            "sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,sampling_port=LOCAL,ingress),output:2",
        ),
        (
            "actions=sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,sampling_port=IN_PORT)",
            "sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,sampling_port=IN_PORT)",
        ),
        (
            "actions=sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,egress,ingress)",
            "sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,ingress)",
        ),
        (
            "actions=sample(probability=7)",
            "sample(probability=7,collector_set_id=0,obs_domain_id=0,obs_point_id=0)",
        ),
        (
            "actions=sample(probability=7,sampling_port=NONE)",
            "sample(probability=7,collector_set_id=0,obs_domain_id=0,obs_point_id=0)",
        ),
        ("ip,actions=dec_ttl(1,2,3)", "dec_ttl(1,2,3)"),
        ("ip,actions=dec_ttl(4 5)", "dec_ttl(4,5)"),
        ("ip,actions=dec_ttl()", "dec_ttl"),
        ("ip,actions=dec_ttl(0),dec_ttl", "dec_ttl(0),dec_ttl"),
        (
            "ct_state=+trk+est,ip,actions=resubmit(,2,ct)",
            "resubmit(,2,ct)",
        ),
        (
            "ct_state=+trk-inv,ip,actions=resubmit(3,4,ct)",
            "resubmit(3,4,ct)",
        ),
        (
            "ct_state=+new,actions=resubmit(,2,),output:1",
            "resubmit(,2),output:1",
        ),
        (
            "actions=write_actions(output:3),goto_table:1",
            "write_actions(output:3),goto_table:1",
        ),
        (
            "actions=clear_actions,write_actions(set_field:1->reg0,group:2)",
            "clear_actions,write_actions(set_field:0x1->reg0,group:2)",
        ),
        (
            "ip,actions=output:1,clear_actions,write_actions(mod_nw_dst:10.0.0.1,dec_ttl(3),pop_vlan,CONTROLLER:10),write_metadata:0x1/0xff,goto_table:4",
            "output:1,clear_actions,write_actions(set_field:10.0.0.1->ip_dst,dec_ttl(3),pop_vlan,CONTROLLER:10),write_metadata:0x1/0xff,goto_table:4",
        ),
        (
            "actions=meter:1,write_actions(resubmit(,2))",
            "meter:1,write_actions(resubmit(,2))",
        ),
        (
            "actions=write_actions(mod_dl_src:00:00:00:00:00:01,strip_vlan,mod_vlan_vid:4)",
            "write_actions(set_field:00:00:00:00:00:01->eth_src,pop_vlan,push_vlan:0x8100,set_field:4100->vlan_vid)",
        ),
        // An empty action set is no instruction at all.
        ("actions=write_actions()", "drop"),
        (
            "actions=output:2,write_actions(drop),goto_table:1",
            "output:2,goto_table:1",
        ),
    ];
    for (flow, want) in cases {
        assert_eq!(printed(flow), want, "{flow}");
        // What it prints reads back to the same flow.
        let back = parse_flow(&format!("actions={want}")).map(|f| f.instructions);
        let fm = parse_flow(flow).unwrap();
        if !flow.contains("ct_state") && !flow.starts_with("ip,") {
            assert_eq!(back.unwrap(), fm.instructions, "{want}");
        }
    }
}

#[test]
fn bad_text_is_refused_with_ovs_ofctl_words() {
    for (flow, want) in [
        (
            "actions=sample(probability=0,collector_set_id=1)",
            "invalid probability value \"0\"",
        ),
        (
            "actions=sample(collector_set_id=1)",
            "non-zero \"probability\" must be specified on sample",
        ),
        ("actions=sample(probability=65536)", "probability must be"),
        (
            "actions=sample(probability=1,foo=2)",
            "invalid key \"foo\" in \"sample\" argument",
        ),
        (
            "actions=sample(probability=1,sampling_port=nowhere)",
            "unknown port",
        ),
        ("ip,actions=dec_ttl(a)", "bad controller id"),
        ("actions=resubmit(,2,xyz)", "unknown parameter"),
        ("actions=resubmit(1,,ct)", "needs a table"),
        (
            "actions=write_actions(output:2),write_actions(output:3)",
            "invalid instruction ordering",
        ),
        (
            "actions=write_actions(output:2),output:3",
            "invalid instruction ordering",
        ),
        (
            "actions=write_actions(output:2),clear_actions",
            "invalid instruction ordering",
        ),
        ("actions=write_actions(goto_table:2)", "not allowed"),
    ] {
        let e = parse_flow(flow).unwrap_err().to_string();
        assert!(e.contains(want), "{flow}: {e}");
    }
    // `resubmit` with neither port nor table, with or without `ct`.
    assert_eq!(
        parse_flow("actions=resubmit(,,ct)").unwrap_err(),
        ParseError::ResubmitNeedsPortOrTable
    );
}

fn add(flow: &str) -> Result<(), TableError> {
    let mut p = Pipeline::new();
    p.flow_mod(&parse_flow(flow).unwrap(), Instant::now())
        .map(|_| ())
}

#[test]
fn the_table_checks_action_sets_and_resubmit_ct() {
    // Open vSwitch admits only these in an action set; anything else is OFPBAC_BAD_TYPE.
    for ok in [
        "ip,actions=write_actions(set_field:1->reg0,load:1->NXM_NX_REG1[],move:NXM_NX_REG0[]->NXM_NX_REG2[],mod_nw_ttl:5,set_queue:3,pop_vlan,push_vlan:0x8100,dec_ttl,ct(commit),ct_clear,resubmit(,2),output:3,CONTROLLER:100)",
        "ip,actions=write_actions(dec_ttl(1,2))",
    ] {
        add(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "actions=write_actions(controller(id=1))",
        "actions=write_actions(output:NXM_NX_REG0[0..15])",
        "actions=write_actions(note:01)",
        "actions=write_actions(sample(probability=1,collector_set_id=1,obs_domain_id=1,obs_point_id=1))",
        "actions=write_actions(clone(output:1))",
        "actions=write_actions(exit)",
    ] {
        let e = add(bad).unwrap_err();
        assert!(
            matches!(e, TableError::ActionSetDisallowed(_)),
            "{bad}: {e}"
        );
        assert_eq!(e.ofp_error(), (2, 0), "{bad}: OFPBAC_BAD_TYPE");
    }
    // resubmit(..,ct) needs a flow matching a valid conntrack state (Open vSwitch's
    // `is_ct_valid`), also inside write_actions.
    for ok in [
        "ct_state=+trk+est,ip,actions=resubmit(,2,ct)",
        "ct_state=+trk-inv,ip,actions=resubmit(3,4,ct)",
        "ct_state=+dnat,ip,actions=write_actions(resubmit(,2,ct))",
    ] {
        add(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "ip,actions=resubmit(,2,ct)",
        "ct_state=+trk,ip,actions=resubmit(,2,ct)",
        "ct_state=+trk+inv,ip,actions=resubmit(,2,ct)",
        "ip,actions=write_actions(resubmit(,2,ct))",
    ] {
        let e = add(bad).unwrap_err();
        assert_eq!(
            e.ofp_error(),
            (2, 10),
            "{bad}: OFPBAC_MATCH_INCONSISTENT, got {e}"
        );
    }
}
