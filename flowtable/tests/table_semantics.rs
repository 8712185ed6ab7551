//! OpenFlow 1.3 flow-mod and group-mod semantics of `Pipeline`.

use std::time::Instant;

use flowtable::flow::FlowModCommand;
use flowtable::group::{GroupMod, GroupModCommand};
use flowtable::table::{Pipeline, TableError};
use flowtable::text::{parse_flow, parse_flow_mod, parse_group_mod, print_instructions};

fn add(p: &mut Pipeline, s: &str) -> Result<(), TableError> {
    p.flow_mod(&parse_flow(s).unwrap(), Instant::now())
        .map(|_| ())
}

fn try_cmd(
    p: &mut Pipeline,
    c: FlowModCommand,
    s: &str,
) -> Result<flowtable::table::FlowModResult, TableError> {
    p.flow_mod(&parse_flow_mod(s, c).unwrap(), Instant::now())
}

fn cmd(p: &mut Pipeline, c: FlowModCommand, s: &str) -> flowtable::table::FlowModResult {
    try_cmd(p, c, s).unwrap()
}

fn group(p: &mut Pipeline, c: GroupModCommand, s: &str) -> Result<usize, TableError> {
    let gm: GroupMod = parse_group_mod(s, c).unwrap();
    p.group_mod(&gm).map(|v| v.len())
}

#[test]
fn add_replaces_identical_flow_and_keeps_counters_unless_reset() {
    let mut p = Pipeline::new();
    add(&mut p, "priority=5,ip,actions=output:1").unwrap();
    let e = p.flows()[0].clone();
    p.credit(0, &e.match_, 5, 2, 200);
    add(&mut p, "priority=5,ip,actions=output:2").unwrap();
    assert_eq!(p.flows().len(), 1);
    assert_eq!((p.flows()[0].packets, p.flows()[0].bytes), (2, 200));
    assert_eq!(print_instructions(&p.flows()[0].instructions), "output:2");
    add(&mut p, "reset_counts,priority=5,ip,actions=output:3").unwrap();
    assert_eq!(p.flows()[0].packets, 0);
    // Same match, other priority: a second flow.
    add(&mut p, "priority=6,ip,actions=output:3").unwrap();
    assert_eq!(p.flows().len(), 2);
    assert_eq!(p.flows()[0].priority, 6);
}

#[test]
fn check_overlap_refuses_same_priority_overlap() {
    let mut p = Pipeline::new();
    add(&mut p, "priority=5,ip,actions=drop").unwrap();
    let e = add(&mut p, "check_overlap,priority=5,tcp,actions=drop").unwrap_err();
    assert_eq!(e, TableError::Overlap);
    assert_eq!(e.ofp_error(), (5, 3));
    add(&mut p, "check_overlap,priority=4,tcp,actions=drop").unwrap();
    add(&mut p, "check_overlap,priority=5,arp,actions=drop").unwrap();
}

#[test]
fn modify_loose_strict_and_cookie_filter() {
    let mut p = Pipeline::new();
    add(&mut p, "priority=5,cookie=0x1,tcp,actions=output:1").unwrap();
    add(&mut p, "priority=6,cookie=0x2,udp,actions=output:1").unwrap();
    add(&mut p, "priority=7,cookie=0x2,arp,actions=output:1").unwrap();
    let r = cmd(&mut p, FlowModCommand::Modify, "ip,actions=output:9");
    assert_eq!(r.modified, 2);
    let r = cmd(
        &mut p,
        FlowModCommand::Modify,
        "cookie=0x2/0xff,actions=output:8",
    );
    assert_eq!(r.modified, 2);
    let r = cmd(
        &mut p,
        FlowModCommand::ModifyStrict,
        "priority=6,udp,actions=output:7",
    );
    assert_eq!(r.modified, 1);
    let r = cmd(
        &mut p,
        FlowModCommand::ModifyStrict,
        "priority=99,udp,actions=output:7",
    );
    assert_eq!(r.modified, 0, "OF1.3 modify never adds");
    let outs: Vec<String> = p
        .flows()
        .iter()
        .map(|e| print_instructions(&e.instructions))
        .collect();
    assert_eq!(outs, ["output:8", "output:7", "output:9"]);
}

#[test]
fn delete_with_out_port_out_group_and_strict() {
    let mut p = Pipeline::new();
    group(
        &mut p,
        GroupModCommand::Add,
        "group_id=1,type=all,bucket=actions=output:1",
    )
    .unwrap();
    add(&mut p, "priority=5,tcp,actions=output:1").unwrap();
    add(&mut p, "priority=6,tcp,actions=group:1").unwrap();
    add(&mut p, "table=3,priority=6,tcp,actions=output:2").unwrap();
    add(&mut p, "priority=6,udp,actions=output:2").unwrap();
    assert_eq!(
        cmd(&mut p, FlowModCommand::DeleteStrict, "priority=5,ip")
            .removed
            .len(),
        0
    );
    assert_eq!(
        cmd(&mut p, FlowModCommand::Delete, "out_group=1")
            .removed
            .len(),
        1
    );
    assert_eq!(
        cmd(&mut p, FlowModCommand::Delete, "table=0,out_port=2")
            .removed
            .len(),
        1
    );
    assert_eq!(
        cmd(&mut p, FlowModCommand::DeleteStrict, "priority=5,tcp")
            .removed
            .len(),
        1
    );
    assert_eq!(p.flows().len(), 1);
    assert_eq!(p.flows()[0].table_id, 3);
    assert_eq!(cmd(&mut p, FlowModCommand::Delete, "").removed.len(), 1);
}

#[test]
fn instruction_and_action_checks() {
    let mut p = Pipeline::new();
    let e = add(&mut p, "table=3,actions=goto_table:2").unwrap_err();
    assert_eq!(e, TableError::BadGotoTable { from: 3, to: 2 });
    assert_eq!(e.ofp_error(), (3, 2));
    assert_eq!(
        add(&mut p, "actions=group:7").unwrap_err(),
        TableError::BadOutGroup(7)
    );
    // Inside ct's exec only ct_mark and ct_label writes are allowed, as in Open vSwitch:
    // a group there is refused for its place before its group id is looked at.
    let e = add(&mut p, "ip,actions=ct(exec(group:7))").unwrap_err();
    assert!(
        matches!(&e, TableError::BadCtNesting(m) if m.contains("group:7")),
        "{e:?}"
    );
    assert_eq!(e.ofp_error(), (2, 5));
    // Port 0 is taken, as Open vSwitch takes it (no port has it); 0xff00 is no port at all.
    add(&mut p, "actions=output:0").unwrap();
    assert_eq!(
        add(&mut p, "actions=output:65280").unwrap_err().ofp_error(),
        (2, 4)
    );
}

#[test]
fn group_add_modify_delete_errors_and_cascade() {
    let mut p = Pipeline::new();
    let a = GroupModCommand::Add;
    group(
        &mut p,
        a,
        "group_id=1,type=select,bucket=weight:5,actions=output:1",
    )
    .unwrap();
    let e = group(&mut p, a, "group_id=1,type=all,bucket=actions=output:1").unwrap_err();
    assert_eq!(
        (e.clone(), e.ofp_error()),
        (TableError::GroupExists(1), (6, 0))
    );
    let e = group(
        &mut p,
        GroupModCommand::Modify,
        "group_id=2,type=all,bucket=actions=output:1",
    )
    .unwrap_err();
    assert_eq!(
        (e.clone(), e.ofp_error()),
        (TableError::UnknownGroup(2), (6, 8))
    );
    let e = group(
        &mut p,
        a,
        "group_id=3,type=fast_failover,bucket=actions=output:1",
    )
    .unwrap_err();
    assert_eq!(e.ofp_error(), (6, 13));
    // As Open vSwitch's `ofputil_check_group_mod`: a watch on an all or indirect bucket
    // (WATCH_UNSUPPORTED), a weight outside a select group (INVALID_GROUP); select takes both.
    for (text, want) in [
        (
            "group_id=4,type=all,bucket=watch_port:2,actions=output:1",
            (6, 6),
        ),
        (
            "group_id=4,type=all,bucket=watch_group:9,actions=output:1",
            (6, 6),
        ),
        (
            "group_id=4,type=indirect,bucket=watch_port:2,actions=output:1",
            (6, 6),
        ),
        (
            "group_id=4,type=all,bucket=weight:5,actions=output:1",
            (6, 1),
        ),
        (
            "group_id=4,type=fast_failover,bucket=weight:5,watch_port:2,actions=output:1",
            (6, 1),
        ),
    ] {
        let e = group(&mut p, a, text).unwrap_err();
        assert_eq!(e.ofp_error(), want, "{text}: {e}");
    }
    group(
        &mut p,
        a,
        "group_id=7,type=select,bucket=weight:5,watch_port:2,actions=output:1",
    )
    .unwrap();
    let e = group(
        &mut p,
        a,
        "group_id=4,type=indirect,bucket=actions=output:1,bucket=actions=output:2",
    )
    .unwrap_err();
    assert_eq!(e.ofp_error(), (6, 1));
    assert_eq!(
        group(&mut p, a, "group_id=5,type=all,bucket=actions=group:9").unwrap_err(),
        TableError::BadOutGroup(9)
    );
    group(
        &mut p,
        GroupModCommand::Modify,
        "group_id=1,type=all,bucket=actions=output:3",
    )
    .unwrap();
    assert_eq!(p.group(1).unwrap().buckets[0].weight, 0);
    add(&mut p, "priority=1,actions=group:1").unwrap();
    add(&mut p, "priority=2,actions=output:1").unwrap();
    assert_eq!(
        group(&mut p, GroupModCommand::Delete, "group_id=1").unwrap(),
        1,
        "flows using the group go too"
    );
    assert_eq!(p.flows().len(), 1);
    assert!(p.group(1).is_none());
}

/// "No VLAN tag" given with the whole TCI masked (a controller's NXM_OF_VLAN_TCI, a saved
/// state of an earlier version) is kept as Open vSwitch keeps it, 0x0000/0x1fff: one flow,
/// which a strict delete in ovs-ofctl's form finds.
#[test]
fn no_vlan_tag_is_kept_as_open_vswitch_keeps_it() {
    let mut p = Pipeline::new();
    let mut fm = parse_flow("priority=7,actions=output:1").unwrap();
    fm.match_.value.vlan_tci = 0;
    fm.match_.mask.vlan_tci = 0xffff;
    p.flow_mod(&fm, Instant::now()).unwrap();
    add(&mut p, "priority=7,vlan_tci=0x0000/0x1fff,actions=output:2").unwrap();
    let flows = p.flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (
            flows[0].match_.value.vlan_tci,
            flows[0].match_.mask.vlan_tci
        ),
        (0, 0x1fff)
    );
    // Not a "no tag" match (a PCP asked of an untagged frame): kept as given.
    let mut odd = parse_flow("priority=8,actions=output:1").unwrap();
    odd.match_.value.vlan_tci = 0x6000;
    odd.match_.mask.vlan_tci = 0xf000;
    p.flow_mod(&odd, Instant::now()).unwrap();
    cmd(
        &mut p,
        FlowModCommand::DeleteStrict,
        "priority=7,vlan_tci=0x0000/0x1fff",
    );
    let left: Vec<u16> = p.flows().iter().map(|f| f.match_.mask.vlan_tci).collect();
    assert_eq!(left, [0xf000]);
}

/// Table 254 is Open vSwitch's own (hidden, read-only): an add or modify there is
/// `OFPBRC_EPERM`, as ovs-vswitchd answers; a delete finds nothing.
#[test]
fn table_254_is_read_only() {
    let mut p = Pipeline::new();
    let e = add(&mut p, "table=254,actions=drop").unwrap_err();
    assert_eq!(e.ofp_error(), (1, 5), "{e}");
    let e = try_cmd(&mut p, FlowModCommand::Modify, "table=254,actions=drop").unwrap_err();
    assert_eq!(e.ofp_error(), (1, 5), "{e}");
    add(&mut p, "table=253,actions=drop").unwrap();
    assert_eq!(p.flows().len(), 1);
}

/// Inside `ct(exec(..))` a `move` may write ct_mark or ct_label, as a set_field or load may
/// (Open vSwitch's `ofpact_get_mf_dst`); into anything else it is refused.
#[test]
fn ct_exec_takes_a_move_into_the_connections_fields() {
    let mut p = Pipeline::new();
    add(
        &mut p,
        "ip,actions=ct(commit,exec(move:NXM_NX_REG0[0..3]->NXM_NX_CT_MARK[0..3],move:NXM_OF_ETH_SRC[]->NXM_NX_CT_LABEL[0..47]))",
    )
    .unwrap();
    let e = add(
        &mut p,
        "ip,actions=ct(commit,exec(move:NXM_NX_REG0[]->NXM_NX_REG1[]))",
    )
    .unwrap_err();
    assert_eq!(e.ofp_error(), (2, 5), "{e}");
}

/// `pop:` writes its field: a read-only one is refused as a move into it is.
#[test]
fn pop_into_a_read_only_field_is_refused() {
    let mut p = Pipeline::new();
    add(&mut p, "actions=push:NXM_NX_REG0[],pop:NXM_NX_REG1[0..15]").unwrap();
    let e = add(&mut p, "actions=pop:NXM_NX_CT_STATE[]").unwrap_err();
    assert_eq!(e.ofp_error(), (2, 15), "{e}");
}
