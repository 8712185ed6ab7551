//! Groups (`OFPT_GROUP_MOD`): all, select, indirect and fast-failover buckets.

use crate::action::Action;
use crate::port::OfPort;

/// Largest usable group id (`OFPG_MAX`).
pub const GROUP_MAX: u32 = 0xffff_ff00;
/// "All groups" in a delete request (`OFPG_ALL`).
pub const GROUP_ALL: u32 = 0xffff_fffc;
/// "No group" (`OFPG_ANY`), e.g. an unused `watch_group`.
pub const GROUP_ANY: u32 = 0xffff_ffff;

/// `OFPGT_*` group types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupType {
    All = 0,
    Select = 1,
    Indirect = 2,
    FastFailover = 3,
}

impl GroupType {
    /// The name ovs-ofctl prints.
    pub fn name(self) -> &'static str {
        match self {
            GroupType::All => "all",
            GroupType::Select => "select",
            GroupType::Indirect => "indirect",
            GroupType::FastFailover => "ff",
        }
    }

    /// Parses `all`, `select`, `indirect`, `ff` / `fast_failover`.
    pub fn from_name(s: &str) -> Option<GroupType> {
        Some(match s {
            "all" => GroupType::All,
            "select" => GroupType::Select,
            "indirect" => GroupType::Indirect,
            "ff" | "fast_failover" => GroupType::FastFailover,
            _ => return None,
        })
    }

    /// The weight a bucket gets when none is given (1 for select, else 0).
    pub fn default_weight(self) -> u16 {
        if self == GroupType::Select { 1 } else { 0 }
    }
}

/// One bucket of a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Relative share for select groups.
    pub weight: u16,
    /// Fast-failover liveness port ([`OfPort::ANY`] = none).
    pub watch_port: OfPort,
    /// Fast-failover liveness group ([`GROUP_ANY`] = none).
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Bucket {
    pub fn new(actions: Vec<Action>) -> Bucket {
        Bucket {
            weight: 0,
            watch_port: OfPort::ANY,
            watch_group: GROUP_ANY,
            actions,
        }
    }
}

/// A group as installed in the switch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    pub id: u32,
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
}

/// `OFPGC_*` commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupModCommand {
    Add,
    Modify,
    Delete,
}

/// A group-mod request. For `Delete`, only `group.id` matters (may be [`GROUP_ALL`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group: Group,
}
