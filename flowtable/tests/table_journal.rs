//! The change journal of `table::Pipeline`: what changed, and undoing a failed batch.

use std::time::Instant;

use flowtable::flow::FlowModCommand;
use flowtable::table::{Changed, Pipeline};
use flowtable::text::{parse_flow_mod, parse_group_mod, print_flow};

fn apply(p: &mut Pipeline, text: &str, cmd: FlowModCommand) {
    p.flow_mod(&parse_flow_mod(text, cmd).unwrap(), Instant::now())
        .unwrap();
}

fn dump(p: &Pipeline) -> Vec<String> {
    let opts = flowtable::text::PrintOpts::default();
    p.flows().iter().map(|e| print_flow(e, &opts)).collect()
}

#[test]
fn journal_lists_every_changed_key() {
    let mut p = Pipeline::new();
    apply(
        &mut p,
        "priority=1,in_port=1,actions=output:2",
        FlowModCommand::Add,
    );
    apply(
        &mut p,
        "priority=1,in_port=2,actions=output:1",
        FlowModCommand::Add,
    );
    p.clear_journal();
    apply(&mut p, "in_port=1,actions=output:3", FlowModCommand::Modify);
    apply(&mut p, "in_port=2", FlowModCommand::Delete);
    p.group_mod(
        &parse_group_mod(
            "group_id=7,type=all,bucket=actions=output:1",
            flowtable::group::GroupModCommand::Add,
        )
        .unwrap(),
    )
    .unwrap();
    let changes: Vec<Changed> = p.changes().collect();
    assert_eq!(changes.len(), 3);
    assert!(matches!(changes[0], Changed::Flow { priority: 1, .. }));
    assert!(matches!(changes[2], Changed::Group(7)));
    p.clear_journal();
    assert_eq!(p.changes().count(), 0);
}

#[test]
fn rollback_restores_the_tables_exactly() {
    let mut p = Pipeline::new();
    apply(
        &mut p,
        "priority=1,in_port=1,actions=output:2",
        FlowModCommand::Add,
    );
    apply(&mut p, "priority=5,ip,actions=drop", FlowModCommand::Add);
    p.clear_journal();
    let before = dump(&p);
    apply(
        &mut p,
        "priority=1,in_port=1,actions=output:9",
        FlowModCommand::Add,
    );
    apply(
        &mut p,
        "priority=3,in_port=3,actions=output:1",
        FlowModCommand::Add,
    );
    apply(&mut p, "ip", FlowModCommand::Delete);
    apply(&mut p, "in_port=3,actions=output:4", FlowModCommand::Modify);
    assert_ne!(dump(&p), before);
    p.rollback();
    assert_eq!(dump(&p), before);
    assert_eq!(p.changes().count(), 0);
}

#[test]
fn clones_share_a_lineage_new_tables_do_not() {
    let p = Pipeline::new();
    assert_eq!(p.clone().lineage(), p.lineage());
    assert_ne!(Pipeline::new().lineage(), p.lineage());
}

/// `timed_flows` (what expiry scans) always lists exactly the flows with a timeout, through
/// adds, replacements, strict and loose deletes and a rollback.
#[test]
fn timed_flows_follow_every_change() {
    let mut p = Pipeline::new();
    let timed = |p: &Pipeline| {
        let mut v: Vec<String> = p
            .timed_flows()
            .map(|e| format!("{}/{}", e.priority, e.idle_timeout + e.hard_timeout))
            .collect();
        v.sort();
        let all = p
            .flows()
            .iter()
            .filter(|e| e.idle_timeout != 0 || e.hard_timeout != 0)
            .count();
        assert_eq!(v.len(), all, "timed_flows disagrees with the table");
        v
    };
    assert!(timed(&p).is_empty());
    apply(
        &mut p,
        "priority=1,in_port=1,idle_timeout=5,actions=drop",
        FlowModCommand::Add,
    );
    apply(
        &mut p,
        "priority=2,in_port=1,hard_timeout=7,actions=drop",
        FlowModCommand::Add,
    );
    apply(
        &mut p,
        "priority=3,in_port=1,actions=drop",
        FlowModCommand::Add,
    );
    apply(
        &mut p,
        "table=1,priority=3,in_port=1,idle_timeout=9,actions=drop",
        FlowModCommand::Add,
    );
    assert_eq!(timed(&p), ["1/5", "2/7", "3/9"]);
    p.clear_journal();
    // Replace a timed flow by an untimed one and the reverse.
    apply(
        &mut p,
        "priority=1,in_port=1,actions=drop",
        FlowModCommand::Add,
    );
    apply(
        &mut p,
        "priority=3,in_port=1,hard_timeout=4,actions=drop",
        FlowModCommand::Add,
    );
    assert_eq!(timed(&p), ["2/7", "3/4", "3/9"]);
    apply(&mut p, "priority=2,in_port=1", FlowModCommand::DeleteStrict);
    apply(&mut p, "table=1", FlowModCommand::Delete);
    assert_eq!(timed(&p), ["3/4"]);
    p.rollback();
    assert_eq!(timed(&p), ["1/5", "2/7", "3/9"]);
}
