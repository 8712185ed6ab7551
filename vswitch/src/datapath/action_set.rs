//! The OpenFlow 1.3 action set (`write_actions`, `clear_actions`), run when the walk ends,
//! ordered as Open vSwitch 3.1's `ofpacts_execute_action_set` orders it:
//!
//! - one of each of `pop_vlan`, `push_vlan`, `dec_ttl` (the last written), in that order;
//! - then every field write (`set_field`, `load`, `move`, `mod_nw_ttl`, `set_queue`) in the
//!   order written;
//! - then one final action: `group` over `output` over `resubmit` over `ct_clear` over `ct`
//!   (the last written of that kind).
//!
//! Without a final action the set does nothing at all. The flow tables admit only these
//! actions in a set (`Action::allowed_in_action_set`; others get OFPBAC_BAD_TYPE).

use flowtable::action::Action;

/// The slots run first, in this order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    PopVlan,
    PushVlan,
    DecTtl,
}

/// Final actions by priority: a later one in this order wins.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Final {
    Ct,
    CtClear,
    Resubmit,
    Output,
    Group,
}

enum Class {
    Slot(Slot),
    Final(Final),
    SetOrMove,
}

fn classify(a: &Action) -> Option<Class> {
    Some(match a {
        Action::PopVlan => Class::Slot(Slot::PopVlan),
        Action::PushVlan(_) => Class::Slot(Slot::PushVlan),
        Action::DecTtl | Action::DecTtlIds(_) => Class::Slot(Slot::DecTtl),
        Action::Ct(_) => Class::Final(Final::Ct),
        Action::CtClear => Class::Final(Final::CtClear),
        Action::Resubmit { .. } | Action::ResubmitCt { .. } => Class::Final(Final::Resubmit),
        Action::Output { .. } | Action::Controller(_) => Class::Final(Final::Output),
        Action::Group(_) => Class::Final(Final::Group),
        Action::SetField { .. }
        | Action::RegLoad { .. }
        | Action::Move { .. }
        | Action::SetNwTtl(_)
        | Action::SetQueue(_) => Class::SetOrMove,
        _ => return None,
    })
}

/// The action list the set `set` (actions in the order written) runs as.
pub fn ordered(set: &[Action]) -> Vec<Action> {
    let mut slots: [Option<&Action>; 3] = [None; 3];
    let mut writes: Vec<&Action> = Vec::new();
    let mut last: Option<(Final, &Action)> = None;
    for a in set {
        match classify(a) {
            Some(Class::Slot(s)) => slots[s as usize] = Some(a),
            Some(Class::Final(f)) if last.is_none_or(|(g, _)| f >= g) => last = Some((f, a)),
            Some(Class::Final(_)) => {}
            Some(Class::SetOrMove) => writes.push(a),
            None => {}
        }
    }
    let Some((_, last)) = last else {
        return Vec::new();
    };
    slots
        .into_iter()
        .flatten()
        .chain(writes)
        .chain(std::iter::once(last))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtable::text::{parse_actions, print_actions};

    fn order(text: &str) -> String {
        let m = flowtable::Match::any();
        print_actions(&ordered(&parse_actions(text, &m).unwrap().apply))
    }

    #[test]
    fn ordered_as_open_vswitch() {
        assert_eq!(
            order(
                "output:2,set_field:1->reg0,dec_ttl,push_vlan:0x8100,pop_vlan,load:2->NXM_NX_REG1[]"
            ),
            "pop_vlan,push_vlan:0x8100,dec_ttl,set_field:0x1->reg0,load:0x2->NXM_NX_REG1[],output:2"
        );
        // One final action: group over output over resubmit over ct; the last of a kind.
        assert_eq!(order("group:1,output:2,output:3"), "group:1");
        assert_eq!(
            order("output:2,resubmit(,3),output:4,ct(commit)"),
            "output:4"
        );
        assert_eq!(order("ct(commit),ct_clear"), "ct_clear");
        // The last of a slot.
        assert_eq!(
            order("push_vlan:0x88a8,push_vlan:0x8100,output:1"),
            "push_vlan:0x8100,output:1"
        );
        // No final action: nothing runs.
        assert_eq!(order("set_field:1->reg0,dec_ttl"), "drop");
    }
}
