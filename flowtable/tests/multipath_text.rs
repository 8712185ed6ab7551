//! `multipath(...)`, `bundle(...)` and `bundle_load(...)`: read and printed as ovs-ofctl 3.1
//! does (its output in Open vSwitch's tests/bundle.at and tests/ofp-actions.at), refused with
//! its messages, and checked with the flow as Open vSwitch checks them.

use std::time::Instant;

use flowtable::table::{Pipeline, TableError};
use flowtable::text::{parse_flow, print_instructions};

fn printed(flow: &str) -> String {
    let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    print_instructions(&fm.instructions)
}

fn refused(flow: &str) -> String {
    parse_flow(flow)
        .map(|fm| format!("accepted: {}", print_instructions(&fm.instructions)))
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn prints_like_ovs_ofctl() {
    for (input, want) in [
        (
            "actions=multipath(eth_src, 50, modulo_n, 1, 0, NXM_NX_REG0[])",
            "multipath(eth_src,50,modulo_n,1,0,NXM_NX_REG0[])",
        ),
        (
            "actions=multipath(SYMMETRIC_L4,1024,HRW,2,0,reg0[0..1])",
            "multipath(symmetric_l4,1024,hrw,2,0,NXM_NX_REG0[0..1])",
        ),
        (
            "actions=multipath(symmetric_l3l4+udp,70000,iter_hash,65536,4294967295,NXM_NX_REG1[0..15])",
            "multipath(symmetric_l3l4+udp,4464,iter_hash,65536,4294967295,NXM_NX_REG1[0..15])",
        ),
        (
            "actions=multipath(nw_dst,7,hash_threshold,3,junk,NXM_NX_REG2[5..6]),output:1",
            "multipath(nw_dst,7,hash_threshold,3,0,NXM_NX_REG2[5..6]),output:1",
        ),
        (
            "in_port=1,actions=bundle(eth_src,0,hrw,ofport,members:2,3)",
            "bundle(eth_src,0,hrw,ofport,members:2,3)",
        ),
        (
            "actions=bundle(symmetric_l4,0,hrw,ofport,members:[1,2,3,4,5,6,7,8,9,10])",
            "bundle(symmetric_l4,0,hrw,ofport,members:1,2,3,4,5,6,7,8,9,10)",
        ),
        (
            "actions=bundle(symmetric_l3,60,active_backup,ofport,slaves:1, 2,LOCAL)",
            "bundle(symmetric_l3,60,active_backup,ofport,members:1,2,LOCAL)",
        ),
        (
            "actions=bundle_load(eth_src,50,hrw,ofport,OXM_OF_ETH_SRC[0..15],members:1,2)",
            "bundle_load(eth_src,50,hrw,ofport,NXM_OF_ETH_SRC[0..15],members:1,2)",
        ),
        (
            "actions=bundle_load(nw_src,1,active_backup,ofport,NXM_NX_REG0[],members:IN_PORT,65535)",
            "bundle_load(nw_src,1,active_backup,ofport,NXM_NX_REG0[],members:IN_PORT,ANY)",
        ),
        (
            "actions=bundle(eth_src,0,hrw,ofport,members:)",
            "bundle(eth_src,0,hrw,ofport,members:)",
        ),
    ] {
        let got = printed(input);
        assert_eq!(got, want, "{input}");
        // What is printed reads back to the same actions.
        assert_eq!(printed(&format!("actions={got}")), want, "{input}");
    }
}

#[test]
fn refused_with_ovs_ofctl_messages() {
    for (input, want) in [
        (
            "actions=bundle(xyzzy,60,hrw,ofport,members:1,2)",
            "xyzzy,60,hrw,ofport,members:1,2: unknown fields `xyzzy'",
        ),
        (
            "actions=bundle(symmetric_l4,60,fubar,ofport,members:1,2)",
            "symmetric_l4,60,fubar,ofport,members:1,2: unknown algorithm `fubar'",
        ),
        (
            "actions=bundle(symmetric_l4,60,hrw,robot,members:1,2)",
            "symmetric_l4,60,hrw,robot,members:1,2: unknown member_type `robot'",
        ),
        (
            "actions=bundle(symmetric_l4,60,hrw,ofport,robot:1,2)",
            "missing member delimiter, expected `members', got `robot'",
        ),
        (
            "actions=bundle(symmetric_l4,60,hrw)",
            "not enough arguments to bundle action",
        ),
        (
            "actions=bundle(eth_src,0,hrw,ofport,members:1,70000)",
            "70000: bad port number",
        ),
        (
            "actions=multipath(eth_src,50,modulo_n,1,0)",
            "not enough arguments to multipath action",
        ),
        (
            "actions=multipath(eth_dst,50,modulo_n,1,0,NXM_NX_REG0[])",
            "unknown fields `eth_dst'",
        ),
        (
            "actions=multipath(eth_src,50,random,1,0,NXM_NX_REG0[])",
            "unknown algorithm `random'",
        ),
        (
            "actions=multipath(eth_src,50,modulo_n,0,0,NXM_NX_REG0[])",
            "n_links 0 is not in valid range 1 to 65536",
        ),
        (
            "actions=multipath(eth_src,50,modulo_n,65537,0,NXM_NX_REG0[])",
            "n_links 65537 is not in valid range 1 to 65536",
        ),
        (
            "actions=multipath(eth_src,50,modulo_n,5,0,NXM_NX_REG0[0..1])",
            "2-bit destination field has 4 possible values, less than specified n_links 5",
        ),
        (
            "actions=multipath(eth_src,50,modulo_n,5,0,NXM_NX_REG16[])",
            "unknown field 'NXM_NX_REG16'",
        ),
    ] {
        let got = refused(input);
        assert!(got.contains(want), "{input}: {got}");
    }
}

fn add(flow: &str) -> Result<(), TableError> {
    let mut p = Pipeline::new();
    let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    p.flow_mod(&fm, Instant::now()).map(|_| ())
}

#[test]
fn checked_with_the_flow_as_open_vswitch_does() {
    add("actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[0..15],members:1,2)").unwrap();
    add("actions=multipath(eth_src,0,modulo_n,4,0,NXM_NX_REG0[0..1])").unwrap();
    add("actions=bundle(eth_src,0,hrw,ofport,members:1,IN_PORT,NONE,LOCAL)").unwrap();
    // The switch's decoder wants a 16-bit destination (a port number).
    let e =
        add("actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[0..7],members:1)").unwrap_err();
    assert_eq!(e.ofp_error(), (2, 5), "{e}");
    // CONTROLLER (no max_len to give it) and the OpenFlow 1.0 reserved range are no members.
    for m in ["CONTROLLER", "65280"] {
        let e = add(&format!(
            "actions=bundle(eth_src,0,hrw,ofport,members:1,{m})"
        ))
        .unwrap_err();
        assert_eq!(e.ofp_error(), (2, 4), "{m}: {e}");
    }
    // Read-only destinations.
    let e = add("actions=multipath(eth_src,0,modulo_n,4,0,NXM_NX_CT_ZONE[])").unwrap_err();
    assert_eq!(e.ofp_error(), (2, 15), "{e}");
    let e =
        add("actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_CT_ZONE[],members:1)").unwrap_err();
    assert_eq!(e.ofp_error(), (2, 15), "{e}");
}
