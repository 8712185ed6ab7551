//! Groups (`OFPT_GROUP_MOD`): all, select, indirect and fast-failover buckets.

use crate::action::Action;
use crate::fields::FieldId;
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

/// How a select group picks its bucket.
///
/// Open vSwitch writes this `selection_method=hash,fields(ip_src,...)` and carries it only in
/// OpenFlow 1.5 (and Nicira 1.0) group-mods, as a Netronome experimenter property; OpenFlow
/// 1.3 has no place for it. Here it travels through the flow text and the node agent, and a
/// 1.3 GROUP_MOD or group-desc reply leaves it out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Selection {
    /// The switch's own choice: a hash of the 5-tuple (also what `selection_method=dp_hash`
    /// asks for).
    #[default]
    Default,
    /// `selection_method=hash,fields(..)`: a hash of exactly these fields, in this order. An
    /// empty list means `selection_method=hash` alone, which falls back to the default hash.
    Hash(Vec<FieldId>),
}

impl Selection {
    /// The fields to hash, when they are not the default 5-tuple.
    pub fn hash_fields(&self) -> Option<&[FieldId]> {
        match self {
            Selection::Hash(f) if !f.is_empty() => Some(f),
            _ => None,
        }
    }
}

/// A group as installed in the switch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    pub id: u32,
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
    /// Bucket choice of a select group ([`Selection::Default`] for the other types).
    pub selection: Selection,
    /// `affinity_timeout=SECS` (select groups, this switch's extension): a client address
    /// keeps the bucket it got while that bucket exists and the client opens a connection at
    /// least every SECS seconds (Kubernetes `sessionAffinity: ClientIP`). Like the selection
    /// method, OpenFlow 1.3 cannot carry it.
    pub affinity_timeout: Option<u32>,
}

impl Group {
    /// A group with the default bucket selection.
    pub fn new(id: u32, group_type: GroupType, buckets: Vec<Bucket>) -> Group {
        Group {
            id,
            group_type,
            buckets,
            selection: Selection::Default,
            affinity_timeout: None,
        }
    }
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
