//! OpenFlow 1.3 flow-mod and group-mod semantics over per-table flow maps.
//!
//! [`Pipeline`] is the control-plane state: tables 0..=254, each a map keyed by
//! (match, priority), plus the group table. It applies `FLOW_MOD` / `GROUP_MOD` requests the way
//! OpenFlow 1.3 (§6.4, §6.5) says and answers with [`TableError`]s that map to `OFPT_ERROR`
//! type/code pairs. Entries share their instructions through `Arc`, so a datapath snapshot is a
//! cheap copy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::action::{Action, Instructions};
use crate::fields::FieldId;
use crate::flow::{FlowEntry, FlowFlags, FlowMod, FlowModCommand, GROUP_ANY, TABLE_ALL, TABLE_MAX};
use crate::group::{GROUP_ALL, GROUP_MAX, Group, GroupMod, GroupModCommand, GroupType};
use crate::match_::{Match, MatchError};
use crate::meter::{
    BAND_DROP, MAX_BANDS, MAX_METERS, METER_ALL, METER_CONTROLLER, METER_MAX, Meter, MeterFlags,
    MeterMod, MeterModCommand,
};
use crate::port::OfPort;

/// Open vSwitch's `TBL_INTERNAL`: hidden and read-only to controllers.
const TABLE_READ_ONLY: u8 = 254;

/// `OFPET_*` error types used here.
pub const OFPET_BAD_REQUEST: u16 = 1;
pub const OFPET_BAD_ACTION: u16 = 2;
pub const OFPET_BAD_INSTRUCTION: u16 = 3;
pub const OFPET_BAD_MATCH: u16 = 4;
pub const OFPET_FLOW_MOD_FAILED: u16 = 5;
pub const OFPET_GROUP_MOD_FAILED: u16 = 6;
pub const OFPET_METER_MOD_FAILED: u16 = 12;

/// Why a flow-mod or group-mod was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// `OFPFMFC_BAD_TABLE_ID`: table 255 (or beyond) used where one table is needed.
    #[error("OFPFMFC_BAD_TABLE_ID: table {0} does not exist (tables are 0..254)")]
    BadTableId(u8),
    /// `OFPFMFC_OVERLAP`: `check_overlap` found a same-priority flow that overlaps.
    #[error("OFPFMFC_OVERLAP: an overlapping flow with the same priority exists")]
    Overlap,
    /// `OFPBMC_BAD_PREREQ` (or another bad-match reason).
    #[error("OFPBMC_BAD_PREREQ: {0}")]
    BadMatch(MatchError),
    /// `OFPBAC_BAD_OUT_GROUP`: an action names a group that does not exist.
    #[error("OFPBAC_BAD_OUT_GROUP: group {0} does not exist")]
    BadOutGroup(u32),
    /// `OFPMMFC_METER_EXISTS`: add of a meter id in use.
    #[error("OFPMMFC_METER_EXISTS: meter {0} already exists")]
    MeterExists(u32),
    /// `OFPMMFC_INVALID_METER`: a reserved meter id, or a flow naming a meter that does not
    /// exist (Open vSwitch answers a flow-mod so).
    #[error("OFPMMFC_INVALID_METER: {0}")]
    InvalidMeter(String),
    /// `OFPMMFC_UNKNOWN_METER`: modify of a meter that does not exist.
    #[error("OFPMMFC_UNKNOWN_METER: meter {0} does not exist")]
    UnknownMeter(u32),
    /// `OFPMMFC_BAD_FLAGS`: not exactly one of kbps/pktps, or unknown flags.
    #[error("OFPMMFC_BAD_FLAGS: {0}")]
    BadMeterFlags(String),
    /// `OFPMMFC_BAD_RATE`: a band with rate 0.
    #[error("OFPMMFC_BAD_RATE: band {0} has rate 0")]
    BadMeterRate(usize),
    /// `OFPMMFC_BAD_BAND`: a band type other than drop.
    #[error("OFPMMFC_BAD_BAND: band type {0} is not supported (only drop bands)")]
    BadMeterBand(u16),
    /// `OFPMMFC_OUT_OF_BANDS`: no band, or more than the switch holds.
    #[error("OFPMMFC_OUT_OF_BANDS: {0} bands (1..=8 allowed)")]
    OutOfBands(usize),
    /// `OFPMMFC_OUT_OF_METERS`: the meter table is full.
    #[error("OFPMMFC_OUT_OF_METERS: the bridge holds {0} meters already")]
    OutOfMeters(u32),
    /// `OFPBAC_BAD_OUT_PORT`: output to a port number that can never exist.
    #[error("OFPBAC_BAD_OUT_PORT: port {0} is not a valid output port")]
    BadOutPort(u32),
    /// `OFPBIC_BAD_TABLE_ID`: goto_table must go forward to an existing table.
    #[error(
        "OFPBIC_BAD_TABLE_ID: goto_table:{to} from table {from} (must be greater, at most 254)"
    )]
    BadGotoTable { from: u8, to: u8 },
    /// `OFPGMFC_GROUP_EXISTS`.
    #[error("OFPGMFC_GROUP_EXISTS: group {0} already exists")]
    GroupExists(u32),
    /// `OFPGMFC_INVALID_GROUP`: the id is reserved.
    #[error("OFPGMFC_INVALID_GROUP: group id {0} is reserved")]
    InvalidGroup(u32),
    /// `OFPGMFC_UNKNOWN_GROUP`: modify of a group that does not exist.
    #[error("OFPGMFC_UNKNOWN_GROUP: group {0} does not exist")]
    UnknownGroup(u32),
    /// `OFPGMFC_INVALID_GROUP`: an indirect group without exactly one bucket (Open vSwitch's
    /// `ofputil_check_group_mod`; ovs-ofctl refuses more than one itself).
    #[error("OFPGMFC_INVALID_GROUP: {0}")]
    IndirectBuckets(String),
    /// `OFPGMFC_BAD_WATCH`: a fast-failover bucket without watch_port/watch_group.
    #[error("OFPGMFC_BAD_WATCH: fast_failover bucket {0} needs watch_port or watch_group")]
    BadWatch(usize),
    /// `OFPBRC_EPERM`: an add or modify in table 254, which Open vSwitch keeps for itself
    /// (hidden, read-only).
    #[error("OFPBRC_EPERM: table {0} is read-only (Open vSwitch keeps it for itself)")]
    ReadOnlyTable(u8),
    /// `OFPGMFC_WATCH_UNSUPPORTED`: a watch_port/watch_group on a bucket of an `all` or
    /// `indirect` group, which never looks at liveness (Open vSwitch's
    /// `ofputil_check_group_mod`).
    #[error(
        "OFPGMFC_WATCH_UNSUPPORTED: bucket {0} of an all or indirect group has watch_port or watch_group"
    )]
    WatchUnsupported(usize),
    /// `OFPGMFC_INVALID_GROUP`: a bucket weight in a group that is not `select` (Open
    /// vSwitch's `ofputil_check_group_mod`).
    #[error("OFPGMFC_INVALID_GROUP: bucket {0} has a weight, which only select groups take")]
    WeightUnsupported(usize),
    /// `OFPGMFC_BAD_WATCH`: a bucket's watch_port Open vSwitch cannot represent
    /// (0xff00..=0xfffffeff, [`OfPort::is_representable`]).
    #[error(
        "OFPGMFC_BAD_WATCH: watch_port {0:#x} is outside the supported range 0 through 0xfeff \
         or 0xffffff00 through 0xffffffff"
    )]
    BadWatchPort(u32),
    /// `OFPGMFC_LOOP`: a group that (indirectly) sends to itself.
    #[error("OFPGMFC_LOOP: group {0} would forward to itself")]
    GroupLoop(u32),
    /// `NXBAC_BAD_CONJUNCTION`: `conjunction` mixed with actions other than `note`.
    #[error(
        "NXBAC_BAD_CONJUNCTION: \"conjunction\" actions may be used along with \"note\" but not any other kind of action"
    )]
    BadConjunction,
    /// `OFPBAC_BAD_ARGUMENT`: `ct(alg=..)` with a port that has no application-layer gateway
    /// (only ftp, 21, and tftp, 69, have one; ovs-ofctl names no other).
    #[error("OFPBAC_BAD_ARGUMENT: ct(alg={0}) is not supported (only ftp and tftp have an ALG)")]
    UnsupportedAlg(u16),
    /// `OFPBAC_BAD_SET_ARGUMENT`: a write to a read-only field.
    #[error("OFPBAC_BAD_SET_ARGUMENT: destination field {0} is not writable")]
    ReadOnlyField(&'static str),
    /// `OFPBAC_BAD_SET_ARGUMENT`: a value the field may not be set to (`vlan_vid` without
    /// its VLAN-present bit).
    #[error("OFPBAC_BAD_SET_ARGUMENT: {0}")]
    BadSetArgument(String),
    /// `OFPBAC_MATCH_INCONSISTENT`: an action reads or writes a field the flow's match does
    /// not make present (see [`crate::check`]), or a `learn`'s learned match lacks a field's
    /// prerequisite.
    #[error("OFPBAC_MATCH_INCONSISTENT: {0}")]
    MatchInconsistent(String),
    /// `OFPBAC_BAD_TAG`: a `push_vlan` onto two tags (Open vSwitch keeps two).
    #[error("OFPBAC_BAD_TAG: push_vlan onto a flow that already has two VLAN tags")]
    BadTag,
    /// `OFPBAC_BAD_ARGUMENT`: `ct(exec(..))` may only set `ct_mark` and `ct_label`, and those
    /// two may only be set there (`cannot set CT fields outside of ct action`).
    #[error("OFPBAC_BAD_ARGUMENT: {0}")]
    BadCtNesting(String),
    /// `OFPBAC_BAD_ARGUMENT`: an action argument the switch's decoder refuses (a
    /// `bundle_load` destination narrower than 16 bits).
    #[error("OFPBAC_BAD_ARGUMENT: {0}")]
    BadArgument(String),
    /// `OFPBAC_BAD_TYPE`: an action Open vSwitch does not admit in an action set
    /// (`write_actions`): "disallowed action in action set".
    #[error("OFPBAC_BAD_TYPE: disallowed action in action set: {0}")]
    ActionSetDisallowed(String),
}

/// `OFPET_EXPERIMENTER`: the type of Nicira-extension errors (experimenter 0x2320).
pub const OFPET_EXPERIMENTER: u16 = 0xffff;

impl TableError {
    /// The OpenFlow 1.3 (type, code) for an `OFPT_ERROR` reply.
    pub fn ofp_error(&self) -> (u16, u16) {
        match self {
            TableError::BadTableId(_) => (OFPET_FLOW_MOD_FAILED, 2),
            TableError::Overlap => (OFPET_FLOW_MOD_FAILED, 3),
            TableError::BadMatch(MatchError::Prereq { .. }) => (OFPET_BAD_MATCH, 9),
            TableError::BadMatch(MatchError::NotMaskable(_)) => (OFPET_BAD_MATCH, 8),
            TableError::BadMatch(MatchError::ValueTooWide { .. }) => (OFPET_BAD_MATCH, 7),
            TableError::BadOutGroup(_) => (OFPET_BAD_ACTION, 9),
            TableError::BadOutPort(_) => (OFPET_BAD_ACTION, 4),
            TableError::MeterExists(_) => (OFPET_METER_MOD_FAILED, 1),
            TableError::InvalidMeter(_) => (OFPET_METER_MOD_FAILED, 2),
            TableError::UnknownMeter(_) => (OFPET_METER_MOD_FAILED, 3),
            TableError::BadMeterFlags(_) => (OFPET_METER_MOD_FAILED, 5),
            TableError::BadMeterRate(_) => (OFPET_METER_MOD_FAILED, 6),
            TableError::BadMeterBand(_) => (OFPET_METER_MOD_FAILED, 8),
            TableError::OutOfMeters(_) => (OFPET_METER_MOD_FAILED, 10),
            TableError::OutOfBands(_) => (OFPET_METER_MOD_FAILED, 11),
            TableError::BadGotoTable { .. } => (OFPET_BAD_INSTRUCTION, 2),
            TableError::GroupExists(_) => (OFPET_GROUP_MOD_FAILED, 0),
            TableError::InvalidGroup(_) => (OFPET_GROUP_MOD_FAILED, 1),
            TableError::GroupLoop(_) => (OFPET_GROUP_MOD_FAILED, 7),
            TableError::UnknownGroup(_) => (OFPET_GROUP_MOD_FAILED, 8),
            TableError::IndirectBuckets(_) => (OFPET_GROUP_MOD_FAILED, 1),
            TableError::ReadOnlyTable(_) => (OFPET_BAD_REQUEST, 5),
            TableError::WatchUnsupported(_) => (OFPET_GROUP_MOD_FAILED, 6),
            TableError::WeightUnsupported(_) => (OFPET_GROUP_MOD_FAILED, 1),
            TableError::BadWatch(_) | TableError::BadWatchPort(_) => (OFPET_GROUP_MOD_FAILED, 13),
            TableError::BadConjunction => (OFPET_EXPERIMENTER, 15),
            TableError::ReadOnlyField(_) => (OFPET_BAD_ACTION, 15),
            TableError::BadSetArgument(_) => (OFPET_BAD_ACTION, 15),
            TableError::UnsupportedAlg(_) => (OFPET_BAD_ACTION, 5),
            TableError::BadCtNesting(_) => (OFPET_BAD_ACTION, 5),
            TableError::BadArgument(_) => (OFPET_BAD_ACTION, 5),
            TableError::MatchInconsistent(_) => (OFPET_BAD_ACTION, 10),
            TableError::BadTag => (OFPET_BAD_ACTION, 12),
            TableError::ActionSetDisallowed(_) => (OFPET_BAD_ACTION, 0),
        }
    }
}

/// Open vSwitch's `learn_check`: every source field's prerequisites hold in the flow's match,
/// and every learned match field's prerequisites hold in the learned match built so far (from
/// the immediate values before it).
pub fn check_learn(l: &crate::action::Learn, flow: &Match) -> Result<(), TableError> {
    use crate::action::{LearnSpec, LearnSrc};
    let mut learned = Match::any();
    let bad = |what: &str, f: FieldId| {
        TableError::MatchInconsistent(format!(
            "learn: {what} field {} lacks its prerequisites ({})",
            f.info().name,
            f.info().prereq.hint()
        ))
    };
    for spec in &l.specs {
        let src = match spec {
            LearnSpec::Match { src, .. } | LearnSpec::Load { src, .. } => *src,
            LearnSpec::Output { src } => LearnSrc::Field(*src),
        };
        if let LearnSrc::Field(sf) = src
            && !flow.satisfies(sf.field.info().prereq)
        {
            return Err(bad("source", sf.field));
        }
        if let LearnSpec::Match { src, dst } = spec {
            if !learned.satisfies(dst.field.info().prereq) {
                return Err(bad("learned", dst.field));
            }
            if let LearnSrc::Imm(v) = src {
                let info = dst.field.info();
                let (ov, om) = ((info.get)(&learned.value), (info.get)(&learned.mask));
                (info.set)(&mut learned.mask, om | dst.mask());
                (info.set)(
                    &mut learned.value,
                    (ov & !dst.mask()) | ((v << dst.ofs) & dst.mask()),
                );
            }
        }
    }
    Ok(())
}

/// Open vSwitch's `is_ct_valid` on a match: it requires a conntrack state bit that implies a
/// connection, or an explicit `+trk-inv`.
fn ct_state_valid(m: &Match) -> bool {
    use encap::flowkey::{CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK};
    let (v, mask) = (m.value.ct_state & m.mask.ct_state, m.mask.ct_state);
    v & (CT_NEW | CT_EST | CT_REL | CT_RPL | CT_SNAT | CT_DNAT) != 0
        || (v & CT_TRK != 0 && mask & CT_INV != 0 && v & CT_INV == 0)
}

/// Fields a flow may match on but never write (OVS: `Access: read-only`); `ct_label` is
/// written only inside `ct(commit,exec(..))`: `set_field`, `load` and `move` are checked by
/// [`check_ct_field_dst`] first (both CT fields, as Open vSwitch); this refuses `ct_label` as
/// the destination of `multipath`, `bundle_load`, `check_pkt_larger` and `learn` too, which
/// Open vSwitch takes.
fn check_writable(field: FieldId, in_ct: bool) -> Result<(), TableError> {
    match field {
        _ if is_read_only(field) => Err(TableError::ReadOnlyField(field.info().name)),
        FieldId::CtLabel if !in_ct => Err(TableError::BadCtNesting(
            "cannot set CT fields outside of ct action".into(),
        )),
        FieldId::CtMark | FieldId::CtLabel => Ok(()),
        _ if in_ct => Err(TableError::BadCtNesting(format!(
            "ct action doesn't support nested modification of {}",
            field.info().name
        ))),
        _ => Ok(()),
    }
}

/// Open vSwitch's `ofpacts_verify_nested`: `ct_mark` and `ct_label` are the connection's, set
/// only by `ct(commit,exec(..))`; a `set_field`, `load` or `move` to one anywhere else (the
/// flow's actions, `clone(..)`, `write_actions(..)`, a group bucket) is refused with
/// `OFPBAC_BAD_SET_ARGUMENT`, "cannot set CT fields outside of ct action".
fn check_ct_field_dst(field: FieldId) -> Result<(), TableError> {
    if matches!(field, FieldId::CtMark | FieldId::CtLabel) {
        return Err(TableError::BadSetArgument(
            "cannot set CT fields outside of ct action".into(),
        ));
    }
    Ok(())
}

/// Open vSwitch's `decode_NXAST_RAW_CT`: a `ct` without `commit` may hold only a `nat` without
/// arguments (plain `nat`, which un-NATs the packets of connections NATed before); a `nat`
/// with a range or flags, or `exec(..)` actions, need `commit` (`OFPBAC_BAD_ARGUMENT`).
fn check_ct_commit(ct: &crate::action::Ct) -> Result<(), TableError> {
    let nat_args = ct.nat.as_ref().is_some_and(|n| {
        n.kind.is_some() || n.addrs.is_some() || n.persistent || n.hash || n.random
    });
    if !ct.commit && (nat_args || !ct.exec.is_empty()) {
        return Err(TableError::BadArgument(
            "CT action requires commit flag if actions other than NAT without arguments are \
             specified."
                .into(),
        ));
    }
    Ok(())
}

/// A value Open vSwitch's decoder refuses to set: `vlan_vid` without its VLAN-present bit.
fn check_set_value(field: FieldId, value: u128, mask: u128) -> Result<(), TableError> {
    if field == FieldId::NwTos && value & mask & 0x03 != 0 {
        return Err(TableError::BadSetArgument(format!(
            "{} is not a valid value for field nw_tos",
            value & mask
        )));
    }
    if field.clears_vlan_present(value, mask) {
        return Err(TableError::BadSetArgument(format!(
            "Invalid value for set field {}: {} (the VLAN-present bit 0x1000 is not set)",
            field.info().name,
            value & mask
        )));
    }
    Ok(())
}

/// Open vSwitch's `bundle_check` (and its decoder's width check): every member is a port a
/// packet can go out of (or `NONE`, never chosen as an output), not `CONTROLLER`; a
/// `bundle_load` destination is writable and at least 16 bits wide (a port number).
fn check_bundle(b: &crate::action::Bundle) -> Result<(), TableError> {
    if let Some(dst) = &b.dst {
        if dst.n_bits < 16 {
            return Err(TableError::BadArgument(
                "bundle_load action requires at least 16 bit destination.".into(),
            ));
        }
        check_writable(dst.field, false)?;
    }
    for m in &b.members {
        let ok = m.0 < 0xff00
            || *m == OfPort::ANY
            || (m.reserved_name().is_some() && *m != OfPort::CONTROLLER);
        if !ok {
            return Err(TableError::BadOutPort(m.0));
        }
    }
    Ok(())
}

/// Fields no action may write (Open vSwitch's `Access: read-only`): what the classifier or
/// conntrack sets, and the fields that say what the packet is (`eth_type`, `nw_proto`,
/// `nw_frag`, `tcp_flags`), which the datapath has no rewrite for.
pub fn is_read_only(field: FieldId) -> bool {
    matches!(
        field,
        FieldId::ConjId
            | FieldId::EthType
            | FieldId::IpProto
            | FieldId::IpFrag
            | FieldId::TcpFlags
            | FieldId::CtState
            | FieldId::CtZone
            | FieldId::CtNwSrc
            | FieldId::CtNwDst
            | FieldId::CtIpv6Src
            | FieldId::CtIpv6Dst
            | FieldId::CtNwProto
            | FieldId::CtTpSrc
            | FieldId::CtTpDst
    )
}

/// What this switch cannot execute of a `controller` action, refused rather than accepted
/// and ignored: `pause` (the packet would wait for an NXT_RESUME, which this switch does not
/// implement). Looks inside `clone` too; for packet-outs, whose actions reach no table.
pub fn check_controller_actions<'a>(
    actions: impl Iterator<Item = &'a Action>,
) -> Result<(), TableError> {
    for a in actions {
        match a {
            Action::Controller(c) if c.pause => {
                return Err(TableError::BadArgument(
                    "controller(pause) is not supported: this switch does not resume paused \
                     packets (NXT_RESUME)"
                        .into(),
                ));
            }
            Action::Clone(inner) => check_controller_actions(inner.iter())?,
            _ => {}
        }
    }
    Ok(())
}

/// A flow with `conjunction` actions is one dimension of a conjunctive match: its only
/// other action may be `note` (OVS `ofpacts_verify`).
fn check_conjunction(ins: &Instructions) -> Result<(), TableError> {
    if !ins
        .actions()
        .any(|a| matches!(a, Action::Conjunction { .. }))
    {
        return Ok(());
    }
    let only_conj = ins
        .apply
        .iter()
        .all(|a| matches!(a, Action::Conjunction { .. } | Action::Note(_)));
    if only_conj
        && ins.write_actions.is_none()
        && !ins.clear_actions
        && ins.meter.is_none()
        && ins.write_metadata.is_none()
        && ins.goto_table.is_none()
    {
        Ok(())
    } else {
        Err(TableError::BadConjunction)
    }
}

/// What a flow-mod changed.
#[derive(Debug, Default)]
pub struct FlowModResult {
    pub added: usize,
    pub modified: usize,
    /// Entries removed by delete (for `OFPT_FLOW_REMOVED` when `send_flow_rem` is set).
    pub removed: Vec<FlowEntry>,
    /// The former instructions of flows this change replaced (an add over the same match
    /// and priority) or modified, when they held a `learn(..., delete_learned)`: that learn's
    /// flows may have lost their last learning flow (Open vSwitch's learned cookies).
    pub replaced_learning: Vec<Arc<Instructions>>,
}

/// Whether `ins` holds a `learn(..., delete_learned)`.
fn learns_with_delete(ins: &Instructions) -> bool {
    ins.actions()
        .any(|a| matches!(a, Action::Learn(l) if l.delete_learned))
}

#[derive(Clone, Debug)]
struct Slot {
    entry: FlowEntry,
    /// Insertion order, to dump flows of equal priority in the order they were added.
    seq: u64,
}

/// One table's flows, keyed by (match, priority) taken from the slot itself: the large key is
/// stored once, and the table proper holds the key's hash and a pointer, so growing it moves
/// 16 bytes per flow and hashes nothing again.
#[derive(Clone, Debug, Default)]
struct FlowTable {
    slots: hashbrown::HashTable<(u64, Box<Slot>)>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Flows with an idle or hard timeout, so that expiry scans can skip tables without any.
    timed: usize,
}

fn is_timed(e: &FlowEntry) -> bool {
    e.idle_timeout != 0 || e.hard_timeout != 0
}

impl FlowTable {
    fn hash(&self, m: &Match, priority: u16) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((m, priority))
    }

    fn is(s: &Slot, m: &Match, priority: u16) -> bool {
        s.entry.priority == priority && s.entry.match_ == *m
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional, |(h, _)| *h);
    }

    fn get(&self, m: &Match, priority: u16) -> Option<&Slot> {
        let h = self.hash(m, priority);
        self.slots
            .find(h, |(sh, s)| *sh == h && Self::is(s, m, priority))
            .map(|(_, s)| &**s)
    }

    fn get_mut(&mut self, m: &Match, priority: u16) -> Option<&mut Slot> {
        let h = self.hash(m, priority);
        self.slots
            .find_mut(h, |(sh, s)| *sh == h && Self::is(s, m, priority))
            .map(|(_, s)| &mut **s)
    }

    /// Puts `slot` in; returns the slot it replaced (same match and priority).
    fn insert(&mut self, slot: Box<Slot>) -> Option<Box<Slot>> {
        let h = self.hash(&slot.entry.match_, slot.entry.priority);
        self.timed += usize::from(is_timed(&slot.entry));
        let entry = self.slots.entry(
            h,
            |(sh, s)| *sh == h && Self::is(s, &slot.entry.match_, slot.entry.priority),
            |(sh, _)| *sh,
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let old = std::mem::replace(&mut o.get_mut().1, slot);
                self.timed -= usize::from(is_timed(&old.entry));
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert((h, slot));
                None
            }
        }
    }

    fn remove(&mut self, m: &Match, priority: u16) -> Option<Box<Slot>> {
        let h = self.hash(m, priority);
        let old = self
            .slots
            .find_entry(h, |(sh, s)| *sh == h && Self::is(s, m, priority))
            .ok()
            .map(|e| e.remove().0.1)?;
        self.timed -= usize::from(is_timed(&old.entry));
        Some(old)
    }

    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().map(|(_, s)| &**s)
    }
}

/// One entry of the change journal: what a key held before a change.
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived journal entries; flows dominate"
)]
enum Undo {
    Flow {
        table: u8,
        key: (Match, u16),
        /// Boxed: most journal entries are adds (no old value) and should stay small.
        old: Option<Box<Slot>>,
        /// The change reset the flow's counters (`reset_counts`).
        reset_counts: bool,
    },
    Group {
        id: u32,
        old: Option<Group>,
    },
    Meter {
        id: u32,
        old: Option<Meter>,
    },
}

/// What changed since the journal was last cleared (flows by table/match/priority, groups by id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[expect(clippy::large_enum_variant, reason = "a plain key; flows dominate")]
pub enum Changed {
    Flow {
        table: u8,
        match_: Match,
        priority: u16,
    },
    Group(u32),
    Meter(u32),
}

/// One journal entry, borrowed (flow keys are large): what [`Pipeline::journal`] yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalEntry<'a> {
    Flow {
        table: u8,
        match_: &'a Match,
        priority: u16,
        /// Whether the key held a flow just before this change. For the first entry of a key
        /// since the journal was cleared, that is whether it held one at the clear.
        was_present: bool,
        /// The change reset the flow's counters (`reset_counts` on a modify, or on an add
        /// that replaced the flow): a consumer keeping counters of its own starts them anew.
        reset_counts: bool,
    },
    Group {
        id: u32,
        /// Whether the group existed just before this change (false for an add, also one
        /// that re-adds a group deleted earlier in the same batch).
        was_present: bool,
    },
    Meter(u32),
}

/// The flow tables, the group table and the meter table of one bridge.
///
/// Every change is journaled with the value it replaced, so that a consumer can apply just the
/// changes to a derived structure (`changes` + `clear_journal`, as the switch does to keep its
/// classifiers in step) and a failed batch can be undone (`rollback`) without copying the tables.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Slots are boxed: table growth then moves keys and pointers, not whole entries.
    tables: BTreeMap<u8, FlowTable>,
    groups: BTreeMap<u32, Group>,
    meters: BTreeMap<u32, Meter>,
    seq: u64,
    version: u64,
    journal: Vec<Undo>,
    /// Identifies this table set; clones keep it, `new` draws a fresh one.
    lineage: u64,
    /// A `learn` is installing a flow (its `fin_timeout` needs no TCP match).
    learning: bool,
}

impl Default for Pipeline {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Pipeline {
            tables: BTreeMap::new(),
            groups: BTreeMap::new(),
            meters: BTreeMap::new(),
            seq: 0,
            version: 0,
            journal: Vec::new(),
            lineage: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            learning: false,
        }
    }
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Same for a pipeline and its clones; differs between independently created pipelines.
    pub fn lineage(&self) -> u64 {
        self.lineage
    }

    /// Keys changed since the journal was last cleared (a key may appear more than once).
    pub fn changes(&self) -> impl Iterator<Item = Changed> + '_ {
        self.journal.iter().map(|u| match u {
            Undo::Flow { table, key, .. } => Changed::Flow {
                table: *table,
                match_: key.0,
                priority: key.1,
            },
            Undo::Group { id, .. } => Changed::Group(*id),
            Undo::Meter { id, .. } => Changed::Meter(*id),
        })
    }

    /// The journal in order, borrowed: like [`changes`](Self::changes), without copying the
    /// keys, and with what each key held before its change.
    pub fn journal(&self) -> impl Iterator<Item = JournalEntry<'_>> + '_ {
        self.journal.iter().map(|u| match u {
            Undo::Flow {
                table,
                key,
                old,
                reset_counts,
            } => JournalEntry::Flow {
                table: *table,
                match_: &key.0,
                priority: key.1,
                was_present: old.is_some(),
                reset_counts: *reset_counts,
            },
            Undo::Group { id, old } => JournalEntry::Group {
                id: *id,
                was_present: old.is_some(),
            },
            Undo::Meter { id, .. } => JournalEntry::Meter(*id),
        })
    }

    /// Number of journal entries (an upper bound on the keys `changes` yields).
    pub fn journal_len(&self) -> usize {
        self.journal.len()
    }

    /// Makes room for `additional` more flows in `table` and as many journal entries, so a
    /// large batch does not grow (and copy) them step by step.
    pub fn reserve(&mut self, table: u8, additional: usize) {
        self.tables.entry(table).or_default().reserve(additional);
        self.journal.reserve(additional);
    }

    /// Forgets the journal: the changes so far are accepted.
    pub fn clear_journal(&mut self) {
        self.journal.clear();
    }

    /// Undoes every change since the journal was last cleared, newest first.
    pub fn rollback(&mut self) {
        while let Some(u) = self.journal.pop() {
            match u {
                Undo::Flow {
                    table, key, old, ..
                } => {
                    let t = self.tables.entry(table).or_default();
                    match old {
                        Some(slot) => {
                            t.insert(slot);
                        }
                        None => {
                            t.remove(&key.0, key.1);
                        }
                    }
                }
                Undo::Group { id, old } => match old {
                    Some(g) => {
                        self.groups.insert(id, g);
                    }
                    None => {
                        self.groups.remove(&id);
                    }
                },
                Undo::Meter { id, old } => match old {
                    Some(m) => {
                        self.meters.insert(id, m);
                    }
                    None => {
                        self.meters.remove(&id);
                    }
                },
            }
        }
        self.version += 1;
    }

    /// Number of flows in all tables.
    pub fn n_flows(&self) -> usize {
        self.tables.values().map(|t| t.len()).sum()
    }

    /// (table id, number of flows) of every table that has flows or had some.
    pub fn table_sizes(&self) -> impl Iterator<Item = (u8, usize)> + '_ {
        self.tables.iter().map(|(id, t)| (*id, t.len()))
    }

    /// Bumped on every change, so caches can tell when to revalidate.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The flows that have an idle or hard timeout, in no particular order; tables without
    /// any are skipped without being read (expiry runs every second under the switch lock).
    pub fn timed_flows(&self) -> impl Iterator<Item = &FlowEntry> {
        self.tables
            .values()
            .filter(|t| t.timed > 0)
            .flat_map(|t| t.values())
            .map(|s| &s.entry)
            .filter(|e| is_timed(e))
    }

    /// All flows in dump order: table, then priority (high first), then insertion order.
    pub fn flows(&self) -> Vec<&FlowEntry> {
        let mut v: Vec<&Slot> = self.tables.values().flat_map(|t| t.values()).collect();
        v.sort_by_key(|s| {
            (
                s.entry.table_id,
                core::cmp::Reverse(s.entry.priority),
                s.seq,
            )
        });
        v.into_iter().map(|s| &s.entry).collect()
    }

    /// True when some flow satisfies `f` (in no particular order, without sorting).
    pub fn any_flow(&self, mut f: impl FnMut(&FlowEntry) -> bool) -> bool {
        self.tables
            .values()
            .flat_map(|t| t.values())
            .any(|s| f(&s.entry))
    }

    /// Flows of one table, in dump order.
    pub fn table_flows(&self, table: u8) -> Vec<&FlowEntry> {
        self.flows()
            .into_iter()
            .filter(|e| e.table_id == table)
            .collect()
    }

    /// How many flows of `table` carry `cookie` (what a `learn(limit=N)` counts).
    pub fn count_cookie(&self, table: u8, cookie: u64) -> usize {
        self.tables.get(&table).map_or(0, |t| {
            t.slots
                .iter()
                .filter(|(_, s)| s.entry.cookie == cookie)
                .count()
        })
    }

    /// The flow with exactly this match and priority.
    pub fn get(&self, table: u8, m: &Match, priority: u16) -> Option<&FlowEntry> {
        self.tables.get(&table)?.get(m, priority).map(|s| &s.entry)
    }

    /// Marks the flow as learned again at `now` (its hard timeout restarts, as a `learn`
    /// refresh does in Open vSwitch). No change is journaled: the flow itself is unchanged.
    /// Returns whether the flow exists.
    pub fn refresh(&mut self, table: u8, m: &Match, priority: u16, now: Instant) -> bool {
        match self
            .tables
            .get_mut(&table)
            .and_then(|t| t.get_mut(m, priority))
        {
            Some(s) => {
                s.entry.modified = now;
                true
            }
            None => false,
        }
    }

    /// `fin_timeout`: lowers the flow's idle and hard timeouts to `idle` and `hard` where
    /// those are nonzero and the flow has none or a longer one. Returns whether anything
    /// changed.
    pub fn reduce_timeouts(
        &mut self,
        table: u8,
        m: &Match,
        priority: u16,
        idle: u16,
        hard: u16,
    ) -> bool {
        let Some(t) = self.tables.get_mut(&table) else {
            return false;
        };
        let Some(s) = t.get_mut(m, priority) else {
            return false;
        };
        let was_timed = is_timed(&s.entry);
        let reduce = |max: u16, timeout: &mut u16| {
            if max != 0 && (*timeout == 0 || *timeout > max) {
                *timeout = max;
                true
            } else {
                false
            }
        };
        let changed =
            reduce(idle, &mut s.entry.idle_timeout) | reduce(hard, &mut s.entry.hard_timeout);
        if !was_timed && is_timed(&s.entry) {
            t.timed += 1;
        }
        changed
    }

    /// Adds traffic to a flow's counters (from the datapath's per-thread stats).
    pub fn credit(&mut self, table: u8, m: &Match, priority: u16, packets: u64, bytes: u64) {
        if let Some(s) = self
            .tables
            .get_mut(&table)
            .and_then(|t| t.get_mut(m, priority))
        {
            if !s.entry.flags.contains(FlowFlags::NO_PKT_COUNTS) {
                s.entry.packets += packets;
            }
            if !s.entry.flags.contains(FlowFlags::NO_BYT_COUNTS) {
                s.entry.bytes += bytes;
            }
        }
    }

    /// Groups by id.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    pub fn group(&self, id: u32) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// Meters by id.
    pub fn meters(&self) -> impl Iterator<Item = &Meter> {
        self.meters.values()
    }

    pub fn meter(&self, id: u32) -> Option<&Meter> {
        self.meters.get(&id)
    }

    /// Every group the actions send to exists (`OFPBAC_BAD_OUT_GROUP`).
    fn check_groups<'a>(
        &self,
        actions: impl Iterator<Item = &'a Action>,
    ) -> Result<(), TableError> {
        for a in actions {
            match a {
                Action::Group(g) if !self.groups.contains_key(g) => {
                    return Err(TableError::BadOutGroup(*g));
                }
                Action::Clone(inner) => self.check_groups(inner.iter())?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The checks Open vSwitch makes when it decodes the actions (ports, writable fields,
    /// what `ct(exec(..))` may hold).
    fn check_actions<'a>(
        &self,
        actions: impl Iterator<Item = &'a Action>,
    ) -> Result<(), TableError> {
        for a in actions {
            match a {
                // Port 0, ANY, a port Open vSwitch cannot represent (0xff00..=0xfffffeff) and
                // the unnamed reserved ones (0xffffff00..=0xfffffff7).
                Action::Output { port, .. } if !port.is_output_port() => {
                    return Err(TableError::BadOutPort(port.0));
                }
                // Open vSwitch takes NORMAL, FLOOD, ALL, CONTROLLER and TABLE here and sends
                // nothing: refused instead, as nothing is taken that is not done (the text
                // form refuses them too, so a saved flow always reads back).
                Action::OutputTrunc { port, .. }
                    if port.0 >= 0xff00 && *port != OfPort::LOCAL && *port != OfPort::IN_PORT =>
                {
                    return Err(TableError::BadOutPort(port.0));
                }
                Action::Ct(ct) => {
                    for a in &ct.exec {
                        match a {
                            Action::SetField { field, .. } => check_writable(*field, true)?,
                            Action::RegLoad { dst, .. } => check_writable(dst.field, true)?,
                            // Open vSwitch's `ofpact_get_mf_dst` names a move's destination
                            // too: `exec(move:NXM_NX_REG0[0..3]->NXM_NX_CT_MARK[0..3])`.
                            Action::Move { dst, .. } => check_writable(dst.field, true)?,
                            other => {
                                return Err(TableError::BadCtNesting(format!(
                                    "ct action doesn't support nested action {}",
                                    crate::text::print_actions(std::slice::from_ref(other))
                                )));
                            }
                        }
                    }
                    check_ct_commit(ct)?;
                    if let Some(port) = ct.alg.filter(|p| !matches!(p, 21 | 69)) {
                        return Err(TableError::UnsupportedAlg(port));
                    }
                }
                Action::SetField { field, value, mask } => {
                    check_ct_field_dst(*field)?;
                    check_writable(*field, false)?;
                    check_set_value(*field, *value, *mask)?;
                }
                Action::RegLoad { dst, value } => {
                    check_ct_field_dst(dst.field)?;
                    check_writable(dst.field, false)?;
                    check_set_value(dst.field, value << dst.ofs, dst.mask())?;
                }
                Action::Move { dst, .. } => {
                    check_ct_field_dst(dst.field)?;
                    check_writable(dst.field, false)?;
                }
                Action::StackPop(dst) => {
                    check_ct_field_dst(dst.field)?;
                    check_writable(dst.field, false)?;
                }
                Action::CheckPktLarger { dst, .. } => check_writable(dst.field, false)?,
                Action::Clone(inner) => self.check_actions(inner.iter())?,
                Action::Controller(_) => check_controller_actions(std::iter::once(a))?,
                Action::Multipath(mp) => check_writable(mp.dst.field, false)?,
                Action::Bundle(b) => check_bundle(b)?,
                Action::Learn(l) => {
                    if let Some(dst) = &l.result_dst {
                        check_writable(dst.field, false)?;
                    }
                    for spec in &l.specs {
                        if let crate::action::LearnSpec::Load { dst, .. } = spec {
                            // The learned flow's load is checked as any flow's would be.
                            check_ct_field_dst(dst.field)?;
                            check_writable(dst.field, false)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_instructions(
        &self,
        table: u8,
        ins: &Instructions,
        m: &Match,
    ) -> Result<(), TableError> {
        // In Open vSwitch's order: what decoding checks, then the actions against the match
        // (`ofpacts_check_consistency`), then what the bridge holds (`ofproto_check_ofpacts`).
        if let Some(w) = &ins.write_actions
            && let Some(a) = w.iter().find(|a| !a.allowed_in_action_set())
        {
            return Err(TableError::ActionSetDisallowed(crate::text::print_actions(
                std::slice::from_ref(a),
            )));
        }
        self.check_actions(ins.actions())?;
        check_conjunction(ins)?;
        // A learned flow's actions are checked against nothing (see `flow_mod_learned`): its
        // `fin_timeout` needs no TCP match.
        if !self.learning {
            crate::check::check_consistency(ins, m)?;
        }
        for a in ins.actions() {
            match a {
                // Open vSwitch (`check_RESUBMIT`): the lookup takes the connection's original
                // tuple, so the flow must match a valid conntrack state.
                Action::ResubmitCt { .. } if !self.learning && !ct_state_valid(m) => {
                    return Err(TableError::MatchInconsistent(
                        "resubmit(..,ct) needs a flow that matches a tracked, valid ct_state \
                         (+new, +est, +rel, +rpl, +snat, +dnat, or +trk-inv)"
                            .into(),
                    ));
                }
                Action::Learn(l) => check_learn(l, m)?,
                _ => {}
            }
        }
        if let Some(to) = ins.goto_table
            && (to <= table || to > TABLE_MAX)
        {
            return Err(TableError::BadGotoTable { from: table, to });
        }
        // Open vSwitch answers a missing meter with INVALID_METER, and a flow may not name
        // the controller meter (`check_METER`).
        if let Some(m) = ins.meter
            && (m == 0 || m > METER_MAX || !self.meters.contains_key(&m))
        {
            return Err(TableError::InvalidMeter(format!(
                "meter {m} does not exist"
            )));
        }
        self.check_groups(ins.actions())?;
        Ok(())
    }

    /// Applies a flow-mod.
    /// [`flow_mod`](Self::flow_mod) for a flow a `learn` action built: as in Open vSwitch, its
    /// `fin_timeout` does not need the learned match to name TCP.
    pub fn flow_mod_learned(
        &mut self,
        fm: &FlowMod,
        now: Instant,
    ) -> Result<FlowModResult, TableError> {
        self.learning = true;
        let r = self.flow_mod(fm, now);
        self.learning = false;
        r
    }

    pub fn flow_mod(&mut self, fm: &FlowMod, now: Instant) -> Result<FlowModResult, TableError> {
        if let Some(m) = fm.match_.untagged_as_open_vswitch() {
            let fm = FlowMod {
                match_: m,
                ..fm.clone()
            };
            return self.flow_mod(&fm, now);
        }
        fm.match_.check_prereqs().map_err(TableError::BadMatch)?;
        let deletes = matches!(
            fm.command,
            FlowModCommand::Delete | FlowModCommand::DeleteStrict
        );
        if fm.table_id == TABLE_READ_ONLY && !deletes {
            return Err(TableError::ReadOnlyTable(fm.table_id));
        }
        match fm.command {
            FlowModCommand::Add => self.add(fm, now),
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => self.modify(fm, now),
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => Ok(self.delete(fm)),
        }
    }

    fn add(&mut self, fm: &FlowMod, now: Instant) -> Result<FlowModResult, TableError> {
        if fm.table_id > TABLE_MAX {
            return Err(TableError::BadTableId(fm.table_id));
        }
        self.check_instructions(fm.table_id, &fm.instructions, &fm.match_)?;
        let table = self.tables.entry(fm.table_id).or_default();
        if fm.flags.contains(FlowFlags::CHECK_OVERLAP)
            && table
                .values()
                .any(|s| s.entry.priority == fm.priority && s.entry.match_.overlaps(&fm.match_))
        {
            return Err(TableError::Overlap);
        }
        let entry = FlowEntry::from_mod(fm, now);
        let key = (fm.match_, fm.priority);
        self.seq += 1;
        // One lookup: the key is large, hashing and comparing it is most of an add.
        let mut old = table.insert(Box::new(Slot {
            entry,
            seq: self.seq,
        }));
        if let Some(prev) = &mut old
            && !fm.flags.contains(FlowFlags::RESET_COUNTS)
            && let Some(new) = table.get_mut(&key.0, key.1)
        {
            // Counters carry over from the replaced flow (rare: re-adding a flow).
            new.entry.packets = prev.entry.packets;
            new.entry.bytes = prev.entry.bytes;
        }
        let reset_counts = old.is_some() && fm.flags.contains(FlowFlags::RESET_COUNTS);
        let replaced_learning = old
            .as_ref()
            .map(|o| &o.entry.instructions)
            .filter(|ins| learns_with_delete(ins))
            .cloned()
            .into_iter()
            .collect();
        self.journal.push(Undo::Flow {
            table: fm.table_id,
            key,
            old,
            reset_counts,
        });
        self.version += 1;
        Ok(FlowModResult {
            added: 1,
            replaced_learning,
            ..FlowModResult::default()
        })
    }

    /// Tables a modify/delete request applies to.
    fn target_tables(&self, table_id: u8) -> Vec<u8> {
        if table_id == TABLE_ALL {
            self.tables.keys().copied().collect()
        } else {
            vec![table_id]
        }
    }

    fn selects(fm: &FlowMod, e: &FlowEntry) -> bool {
        let strict = matches!(
            fm.command,
            FlowModCommand::ModifyStrict | FlowModCommand::DeleteStrict
        );
        let match_ok = if strict {
            e.priority == fm.priority && e.match_ == fm.match_
        } else {
            e.match_.is_subset_of(&fm.match_)
        };
        match_ok && (e.cookie & fm.cookie_mask) == (fm.cookie & fm.cookie_mask)
    }

    /// As Open vSwitch's modify: new instructions, the flow's `created` (its duration) and
    /// timeouts kept, its `modified` set to `now` (the hard timeout starts again).
    fn modify(&mut self, fm: &FlowMod, now: Instant) -> Result<FlowModResult, TableError> {
        let tables = self.target_tables(fm.table_id);
        for t in &tables {
            self.check_instructions(*t, &fm.instructions, &fm.match_)?;
        }
        let ins = Arc::new(fm.instructions.clone());
        let mut modified = 0;
        let mut replaced_learning = Vec::new();
        for t in tables {
            let Some(table) = self.tables.get_mut(&t) else {
                continue;
            };
            for (_, s) in table.slots.iter_mut() {
                if Self::selects(fm, &s.entry) {
                    self.journal.push(Undo::Flow {
                        table: t,
                        key: (s.entry.match_, s.entry.priority),
                        old: Some(s.clone()),
                        reset_counts: fm.flags.contains(FlowFlags::RESET_COUNTS),
                    });
                    let old = std::mem::replace(&mut s.entry.instructions, Arc::clone(&ins));
                    s.entry.modified = now;
                    if learns_with_delete(&old) {
                        replaced_learning.push(old);
                    }
                    if fm.flags.contains(FlowFlags::RESET_COUNTS) {
                        s.entry.packets = 0;
                        s.entry.bytes = 0;
                    }
                    modified += 1;
                }
            }
        }
        if modified > 0 {
            self.version += 1;
        }
        Ok(FlowModResult {
            modified,
            replaced_learning,
            ..FlowModResult::default()
        })
    }

    fn delete(&mut self, fm: &FlowMod) -> FlowModResult {
        let mut removed = Vec::new();
        let targets = self.target_tables(fm.table_id);
        let journal = &mut self.journal;
        for t in targets {
            let Some(table) = self.tables.get_mut(&t) else {
                continue;
            };
            let FlowTable { slots, timed, .. } = table;
            slots.retain(|(_, s)| {
                let e = &s.entry;
                let hit = Self::selects(fm, e)
                    && (fm.out_port == OfPort::ANY || e.instructions.outputs_to(fm.out_port))
                    && (fm.out_group == GROUP_ANY || e.instructions.uses_group(fm.out_group));
                if hit {
                    *timed -= usize::from(is_timed(e));
                    removed.push(e.clone());
                    journal.push(Undo::Flow {
                        table: t,
                        key: (e.match_, e.priority),
                        old: Some(s.clone()),
                        reset_counts: false,
                    });
                }
                !hit
            });
        }
        if !removed.is_empty() {
            self.version += 1;
        }
        FlowModResult {
            removed,
            ..FlowModResult::default()
        }
    }

    fn check_group(&self, g: &Group) -> Result<(), TableError> {
        if g.id > GROUP_MAX {
            return Err(TableError::InvalidGroup(g.id));
        }
        if g.group_type == GroupType::Indirect && g.buckets.len() != 1 {
            return Err(TableError::IndirectBuckets(format!(
                "an indirect group needs exactly one bucket, got {}",
                g.buckets.len()
            )));
        }
        for (i, b) in g.buckets.iter().enumerate() {
            if g.group_type == GroupType::FastFailover
                && b.watch_port == OfPort::ANY
                && b.watch_group == crate::group::GROUP_ANY
            {
                return Err(TableError::BadWatch(i));
            }
            if b.weight != 0 && g.group_type != GroupType::Select {
                return Err(TableError::WeightUnsupported(i));
            }
            if matches!(g.group_type, GroupType::All | GroupType::Indirect)
                && (b.watch_port != OfPort::ANY || b.watch_group != crate::group::GROUP_ANY)
            {
                return Err(TableError::WatchUnsupported(i));
            }
            if b.actions.iter().any(|a| a.uses_group(g.id)) {
                return Err(TableError::GroupLoop(g.id));
            }
            self.check_actions(b.actions.iter())?;
            // Open vSwitch decodes a bucket's actions, then its watch_port.
            if !b.watch_port.is_representable() {
                return Err(TableError::BadWatchPort(b.watch_port.0));
            }
            self.check_groups(b.actions.iter())?;
        }
        // Through other groups (the self-reference above is refused before a missing group).
        if self.group_reaches_itself(g) {
            return Err(TableError::GroupLoop(g.id));
        }
        Ok(())
    }

    /// Whether `g`, installed as it is given, would send a packet back to itself: through its
    /// buckets' `group:` actions (in `clone(...)` too) and those of the groups they name,
    /// as installed (Open vSwitch's OFPGMFC_LOOP). The installed groups hold no loop (every
    /// add and modify is checked), so a new one can only pass through `g`; each group is
    /// looked at once.
    fn group_reaches_itself(&self, g: &Group) -> bool {
        let named = |b: &crate::group::Bucket| -> Vec<u32> {
            b.actions.iter().flat_map(Action::groups).collect()
        };
        let mut todo: Vec<u32> = g.buckets.iter().flat_map(named).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(id) = todo.pop() {
            if id == g.id {
                return true;
            }
            if seen.insert(id)
                && let Some(next) = self.groups.get(&id)
            {
                todo.extend(next.buckets.iter().flat_map(named));
            }
        }
        false
    }

    /// Applies a group-mod. Deleting a group also deletes the flows that use it (OF1.3 §6.5);
    /// those flows are returned (their FLOW_REMOVED reason is `OFPRR_GROUP_DELETE`).
    pub fn group_mod(&mut self, gm: &GroupMod) -> Result<Vec<FlowEntry>, TableError> {
        let g = &gm.group;
        match gm.command {
            GroupModCommand::Add => {
                self.check_group(g)?;
                if self.groups.contains_key(&g.id) {
                    return Err(TableError::GroupExists(g.id));
                }
                let old = self.groups.insert(g.id, g.clone());
                self.journal.push(Undo::Group { id: g.id, old });
            }
            GroupModCommand::Modify => {
                if !self.groups.contains_key(&g.id) {
                    return Err(TableError::UnknownGroup(g.id));
                }
                self.check_group(g)?;
                let old = self.groups.insert(g.id, g.clone());
                self.journal.push(Undo::Group { id: g.id, old });
            }
            GroupModCommand::Delete => {
                let ids: Vec<u32> = if g.id == GROUP_ALL {
                    self.groups.keys().copied().collect()
                } else {
                    self.groups
                        .contains_key(&g.id)
                        .then_some(g.id)
                        .into_iter()
                        .collect()
                };
                let mut removed = Vec::new();
                for id in ids {
                    let old = self.groups.remove(&id);
                    self.journal.push(Undo::Group { id, old });
                    let fm = FlowMod {
                        command: FlowModCommand::Delete,
                        table_id: TABLE_ALL,
                        out_group: id,
                        ..FlowMod::default()
                    };
                    removed.extend(self.delete(&fm).removed);
                }
                self.version += 1;
                return Ok(removed);
            }
        }
        self.version += 1;
        Ok(Vec::new())
    }
}

impl Pipeline {
    // What Open vSwitch's userspace datapath accepts as a meter configuration, checked in its
    // order (`handle_meter_mod`, then the lookup, then `dpif_meter_set` and
    // `dpif_netdev_meter_set`), so that the same request gets the same error.
    /// The checks `handle_meter_mod` makes before looking the meter up.
    fn check_meter_id(m: &Meter) -> Result<(), TableError> {
        // OFPM13_CONTROLLER rate-limits packet-ins, as in Open vSwitch. OFPM13_SLOWPATH
        // limits Open vSwitch's sampling upcalls (sFlow, IPFIX), which this switch does not
        // make: refused rather than accepted and never run.
        if m.id == 0 || (m.id > METER_MAX && m.id != METER_CONTROLLER) {
            return Err(TableError::InvalidMeter(format!(
                "meter id {:#x} is reserved (1..={METER_MAX:#x} or controller)",
                m.id
            )));
        }
        if m.bands.len() > MAX_BANDS {
            return Err(TableError::OutOfBands(m.bands.len()));
        }
        Ok(())
    }

    /// The checks the datapath makes when it sets the meter up.
    fn check_meter_config(m: &Meter) -> Result<(), TableError> {
        let f = m.flags;
        if f.contains(MeterFlags::KBPS) == f.contains(MeterFlags::PKTPS) {
            return Err(TableError::BadMeterFlags(
                "exactly one of kbps and pktps must be set".into(),
            ));
        }
        if m.bands.is_empty() {
            return Err(TableError::OutOfBands(0));
        }
        if let Some(i) = m.bands.iter().position(|b| b.rate == 0) {
            return Err(TableError::BadMeterRate(i));
        }
        if f.0 & !MeterFlags::ALL != 0 {
            return Err(TableError::BadMeterFlags(format!(
                "unknown flags {:#x}",
                f.0 & !MeterFlags::ALL
            )));
        }
        if let Some(b) = m.bands.iter().find(|b| b.band_type != BAND_DROP) {
            return Err(TableError::BadMeterBand(b.band_type));
        }
        Ok(())
    }

    /// Applies a meter-mod. Deleting a meter also deletes the flows that use it (OF1.3
    /// §6.6); those flows are returned.
    pub fn meter_mod(&mut self, mm: &MeterMod) -> Result<Vec<FlowEntry>, TableError> {
        let m = &mm.meter;
        match mm.command {
            MeterModCommand::Add => {
                Self::check_meter_id(m)?;
                if self.meters.contains_key(&m.id) {
                    return Err(TableError::MeterExists(m.id));
                }
                if self.meters.len() >= MAX_METERS as usize {
                    return Err(TableError::OutOfMeters(MAX_METERS));
                }
                Self::check_meter_config(m)?;
                let old = self.meters.insert(m.id, m.clone());
                self.journal.push(Undo::Meter { id: m.id, old });
            }
            MeterModCommand::Modify => {
                Self::check_meter_id(m)?;
                if !self.meters.contains_key(&m.id) {
                    return Err(TableError::UnknownMeter(m.id));
                }
                Self::check_meter_config(m)?;
                let old = self.meters.insert(m.id, m.clone());
                self.journal.push(Undo::Meter { id: m.id, old });
            }
            MeterModCommand::Delete => {
                // Meter 0 deletes nothing (OpenFlow has no meter 0), as in Open vSwitch.
                let ids: Vec<u32> = if m.id == METER_ALL {
                    self.meters.keys().copied().collect()
                } else {
                    self.meters
                        .contains_key(&m.id)
                        .then_some(m.id)
                        .into_iter()
                        .collect()
                };
                let mut removed = Vec::new();
                for id in ids {
                    let old = self.meters.remove(&id);
                    self.journal.push(Undo::Meter { id, old });
                    removed.extend(self.delete_where(|e| e.instructions.uses_meter(id)));
                }
                self.version += 1;
                return Ok(removed);
            }
        }
        self.version += 1;
        Ok(Vec::new())
    }

    /// Deletes every flow `pred` selects (in every table) and returns them.
    fn delete_where(&mut self, pred: impl Fn(&FlowEntry) -> bool) -> Vec<FlowEntry> {
        let mut removed = Vec::new();
        let journal = &mut self.journal;
        for (t, table) in self.tables.iter_mut() {
            let FlowTable { slots, timed, .. } = table;
            slots.retain(|(_, s)| {
                let e = &s.entry;
                let hit = pred(e);
                if hit {
                    *timed -= usize::from(is_timed(e));
                    removed.push(e.clone());
                    journal.push(Undo::Flow {
                        table: *t,
                        key: (e.match_, e.priority),
                        old: Some(s.clone()),
                        reset_counts: false,
                    });
                }
                !hit
            });
        }
        if !removed.is_empty() {
            self.version += 1;
        }
        removed
    }
}
