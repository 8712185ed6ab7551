//! Flow entries and flow-mod requests.

use std::sync::Arc;
use std::time::Instant;

use crate::action::Instructions;
use crate::match_::Match;
use crate::port::OfPort;

/// Default flow priority (`OFP_DEFAULT_PRIORITY`).
pub const DEFAULT_PRIORITY: u16 = 0x8000;
/// Table id meaning "all tables" in modify/delete requests (`OFPTT_ALL`).
pub const TABLE_ALL: u8 = 0xff;
/// Highest usable table id.
pub const TABLE_MAX: u8 = 254;
/// Group id meaning "any group" in the `out_group` filter (`OFPG_ANY`).
pub const GROUP_ANY: u32 = 0xffff_ffff;

/// `OFPFF_*` flow-mod flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowFlags(pub u16);

impl FlowFlags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;

    /// (bit, ovs-ofctl name) in printing order.
    pub const NAMES: [(u16, &'static str); 5] = [
        (Self::SEND_FLOW_REM, "send_flow_rem"),
        (Self::CHECK_OVERLAP, "check_overlap"),
        (Self::RESET_COUNTS, "reset_counts"),
        (Self::NO_PKT_COUNTS, "no_packet_counts"),
        (Self::NO_BYT_COUNTS, "no_byte_counts"),
    ];

    pub fn contains(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// `OFPFC_*` flow-mod commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FlowModCommand {
    #[default]
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

/// A flow-mod request (OpenFlow `OFPT_FLOW_MOD`), as parsed from text or decoded from the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowMod {
    pub command: FlowModCommand,
    /// Target table; [`TABLE_ALL`] is allowed for modify/delete.
    pub table_id: u8,
    pub cookie: u64,
    /// For modify/delete: only flows with `cookie & cookie_mask == self.cookie & cookie_mask`.
    pub cookie_mask: u64,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: FlowFlags,
    /// Delete filter: only flows that output to this port ([`OfPort::ANY`] = no filter).
    pub out_port: OfPort,
    /// Delete filter: only flows that use this group ([`GROUP_ANY`] = no filter).
    pub out_group: u32,
    pub match_: Match,
    pub instructions: Instructions,
}

impl Default for FlowMod {
    fn default() -> Self {
        FlowMod {
            command: FlowModCommand::Add,
            table_id: 0,
            cookie: 0,
            cookie_mask: 0,
            priority: DEFAULT_PRIORITY,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: FlowFlags::default(),
            out_port: OfPort::ANY,
            out_group: GROUP_ANY,
            match_: Match::any(),
            instructions: Instructions::default(),
        }
    }
}

/// One installed flow. Cheap to clone (instructions are shared), so a table snapshot can copy
/// entries freely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    pub table_id: u8,
    pub priority: u16,
    pub match_: Match,
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: FlowFlags,
    pub instructions: Arc<Instructions>,
    pub packets: u64,
    pub bytes: u64,
    /// When the flow was added (for `duration=`).
    pub created: Instant,
    /// When the flow was added, last modified (`mod-flows`, a replacing add) or learned again
    /// by a `learn` action: its hard timeout counts from here (Open vSwitch's `modified`).
    pub modified: Instant,
}

impl FlowEntry {
    /// A fresh entry built from an add request.
    pub fn from_mod(fm: &FlowMod, now: Instant) -> FlowEntry {
        FlowEntry {
            table_id: fm.table_id,
            priority: fm.priority,
            match_: fm.match_,
            cookie: fm.cookie,
            idle_timeout: fm.idle_timeout,
            hard_timeout: fm.hard_timeout,
            // Kept as Open vSwitch keeps it (`OFPUTIL_FF_STATE`): flow stats carry it and
            // ovs-ofctl prints `check_overlap priority=1 actions=drop`.
            flags: fm.flags,
            instructions: Arc::new(fm.instructions.clone()),
            packets: 0,
            bytes: 0,
            created: now,
            modified: now,
        }
    }

    /// Whether this flow is the one a `learn` built as `fm` (same cookie, timeouts,
    /// `send_flow_rem` and actions; the caller found it by match and priority): learning it
    /// again is only a refresh (Open vSwitch's `ofproto_flow_mod_init_for_learn`).
    pub fn is_learned_as(&self, fm: &FlowMod) -> bool {
        let state = FlowFlags::SEND_FLOW_REM;
        self.idle_timeout == fm.idle_timeout
            && self.hard_timeout == fm.hard_timeout
            && self.cookie == fm.cookie
            && self.flags.0 & state == fm.flags.0 & state
            && *self.instructions == fm.instructions
    }
}
