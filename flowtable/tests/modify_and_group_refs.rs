//! Flow-mod details checked against Open vSwitch's `ofproto.c`: a modify restarts the hard
//! timeout (`modified`) and keeps the flow's age (`created`); every group a flow names, in
//! `clone(...)` too, counts as used by it.

use std::time::{Duration, Instant};

use flowtable::flow::{FlowModCommand, GROUP_ANY};
use flowtable::group::GroupModCommand;
use flowtable::table::{Pipeline, TableError};
use flowtable::text::{parse_flow_mod, parse_group_mod};

fn apply(p: &mut Pipeline, c: FlowModCommand, s: &str, now: Instant) {
    p.flow_mod(&parse_flow_mod(s, c).unwrap(), now).unwrap();
}

/// mod-flows sets `modified` (the hard timeout counts from there), keeps `created`.
#[test]
fn modify_restarts_the_hard_timeout_and_keeps_the_age() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(5);
    let t2 = t0 + Duration::from_secs(7);
    let mut p = Pipeline::new();
    apply(
        &mut p,
        FlowModCommand::Add,
        "priority=5,hard_timeout=10,ip,actions=output:1",
        t0,
    );
    apply(&mut p, FlowModCommand::Modify, "ip,actions=output:2", t1);
    let e = p.flows()[0].clone();
    assert_eq!(e.created, t0);
    assert_eq!(e.modified, t1);
    assert_eq!(e.hard_timeout, 10);
    apply(
        &mut p,
        FlowModCommand::ModifyStrict,
        "priority=5,ip,actions=output:3",
        t2,
    );
    let e = p.flows()[0].clone();
    assert_eq!((e.created, e.modified), (t0, t2));
}

fn group(p: &mut Pipeline, c: GroupModCommand, s: &str) -> Result<usize, TableError> {
    p.group_mod(&parse_group_mod(s, c).unwrap())
        .map(|v| v.len())
}

/// A flow with `clone(group:1,group:2)` uses both groups: deleting group 2 deletes it (no
/// dangling `group:2`), and an `out_group=2` filter selects it.
#[test]
fn every_group_inside_clone_counts() {
    let now = Instant::now();
    let mut p = Pipeline::new();
    for g in [
        "group_id=1,type=all,bucket=output:1",
        "group_id=2,type=all,bucket=output:2",
    ] {
        group(&mut p, GroupModCommand::Add, g).unwrap();
    }
    apply(
        &mut p,
        FlowModCommand::Add,
        "priority=5,ip,actions=clone(group:1,group:2)",
        now,
    );
    let e = p.flows()[0].clone();
    assert!(e.instructions.uses_group(1));
    assert!(e.instructions.uses_group(2));
    let groups: Vec<u32> = e.instructions.actions().flat_map(|a| a.groups()).collect();
    assert_eq!(groups, [1, 2]);
    // out_group=2 selects it.
    let mut fm = parse_flow_mod("ip", FlowModCommand::Delete).unwrap();
    fm.out_group = 2;
    let mut q = p.clone();
    assert_eq!(q.flow_mod(&fm, now).unwrap().removed.len(), 1);
    fm.out_group = GROUP_ANY;
    // Deleting group 2 takes the flow with it.
    assert_eq!(group(&mut p, GroupModCommand::Delete, "group_id=2"), Ok(1));
    assert!(p.flows().is_empty());
}
