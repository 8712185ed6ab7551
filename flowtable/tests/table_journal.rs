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
