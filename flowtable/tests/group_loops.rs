//! OFPGMFC_LOOP: a group-mod after which a group would reach itself through the `group:`
//! actions of buckets (directly, through other groups, inside `clone(...)`) is refused, on add
//! and on modify, and leaves the tables as they were.

use flowtable::group::GroupModCommand;
use flowtable::table::{Pipeline, TableError};
use flowtable::text::parse_group_mod;

fn group(p: &mut Pipeline, c: GroupModCommand, s: &str) -> Result<usize, TableError> {
    p.group_mod(&parse_group_mod(s, c).unwrap())
        .map(|v| v.len())
}

fn add(p: &mut Pipeline, s: &str) -> Result<usize, TableError> {
    group(p, GroupModCommand::Add, s)
}

fn modify(p: &mut Pipeline, s: &str) -> Result<usize, TableError> {
    group(p, GroupModCommand::Modify, s)
}

fn bucket_text(p: &Pipeline, id: u32) -> String {
    flowtable::text::print_group(p.group(id).unwrap())
}

/// The review's case: 2 → output, 1 → 2, then 2 modified to go back to 1.
#[test]
fn a_modify_closing_a_two_group_cycle_is_refused() {
    let mut p = Pipeline::new();
    add(&mut p, "group_id=2,type=indirect,bucket=actions=output:2").unwrap();
    add(&mut p, "group_id=1,type=indirect,bucket=actions=group:2").unwrap();
    let before = bucket_text(&p, 2);
    let err = modify(&mut p, "group_id=2,type=indirect,bucket=actions=group:1").unwrap_err();
    assert_eq!(err, TableError::GroupLoop(2));
    assert_eq!(
        err.ofp_error(),
        (6, 7),
        "OFPET_GROUP_MOD_FAILED / OFPGMFC_LOOP"
    );
    assert_eq!(
        bucket_text(&p, 2),
        before,
        "the refused modify changed nothing"
    );
}

/// A longer cycle, closed inside a `clone(...)` of an `all` group's second bucket.
#[test]
fn a_cycle_through_three_groups_and_a_clone_is_refused() {
    let mut p = Pipeline::new();
    add(&mut p, "group_id=3,type=all,bucket=actions=output:3").unwrap();
    add(&mut p, "group_id=2,type=select,bucket=actions=group:3").unwrap();
    add(&mut p, "group_id=1,type=indirect,bucket=actions=group:2").unwrap();
    assert_eq!(
        modify(
            &mut p,
            "group_id=3,type=all,bucket=actions=output:3,bucket=actions=clone(output:4,group:1)"
        ),
        Err(TableError::GroupLoop(3))
    );
    // Sending to a group that leads elsewhere is fine.
    add(&mut p, "group_id=4,type=all,bucket=actions=output:4").unwrap();
    modify(
        &mut p,
        "group_id=3,type=all,bucket=actions=output:3,bucket=actions=clone(output:4,group:4)",
    )
    .unwrap();
}

/// A group whose bucket names a deleted group stays; adding that group again with a bucket
/// back to the first closes a cycle on add.
#[test]
fn an_add_closing_a_cycle_is_refused() {
    let mut p = Pipeline::new();
    add(&mut p, "group_id=2,type=indirect,bucket=actions=output:2").unwrap();
    add(&mut p, "group_id=1,type=indirect,bucket=actions=group:2").unwrap();
    assert_eq!(group(&mut p, GroupModCommand::Delete, "group_id=2"), Ok(0));
    assert!(p.group(1).is_some(), "the group naming it stays");
    assert_eq!(
        add(&mut p, "group_id=2,type=indirect,bucket=actions=group:1"),
        Err(TableError::GroupLoop(2))
    );
    assert!(p.group(2).is_none());
    add(&mut p, "group_id=2,type=indirect,bucket=actions=output:2").unwrap();
}

/// A group naming itself is still refused first (before "no such group" on add).
#[test]
fn a_group_naming_itself_is_refused() {
    let mut p = Pipeline::new();
    assert_eq!(
        add(
            &mut p,
            "group_id=1,type=all,bucket=actions=output:1,bucket=actions=group:1"
        ),
        Err(TableError::GroupLoop(1))
    );
}

/// Sharing is no loop: a diamond (1 → 2, 1 → 3, 2 → 4, 3 → 4) and a long chain of `all`
/// groups whose two buckets both name the next are accepted (translation bounds them).
#[test]
fn shared_groups_without_a_cycle_are_accepted() {
    let mut p = Pipeline::new();
    add(&mut p, "group_id=4,type=indirect,bucket=actions=output:4").unwrap();
    add(&mut p, "group_id=3,type=indirect,bucket=actions=group:4").unwrap();
    add(&mut p, "group_id=2,type=indirect,bucket=actions=group:4").unwrap();
    add(
        &mut p,
        "group_id=1,type=all,bucket=actions=group:2,bucket=actions=group:3",
    )
    .unwrap();
    add(&mut p, "group_id=100,type=all,bucket=actions=output:1").unwrap();
    for id in 101..=140u32 {
        let prev = id - 1;
        add(
            &mut p,
            &format!(
                "group_id={id},type=all,bucket=actions=group:{prev},bucket=actions=group:{prev}"
            ),
        )
        .unwrap();
    }
    // Closing the chain at its far end is a loop.
    assert_eq!(
        modify(&mut p, "group_id=100,type=all,bucket=actions=group:140"),
        Err(TableError::GroupLoop(100))
    );
}
