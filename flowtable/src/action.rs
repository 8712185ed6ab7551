//! Actions and instructions of an OpenFlow 1.3 flow (plus the Nicira extensions Open vSwitch
//! users rely on: `resubmit`, `ct`, `load`/`move`, `note`, `conjunction`, ...).
//!
//! Legacy text forms are normalized when parsed (`mod_dl_src` becomes a `SetField`,
//! `strip_vlan` becomes `PopVlan`), so the model holds one form per operation.

use std::net::IpAddr;

use crate::fields::FieldId;
use crate::port::OfPort;

/// A bit range of a field: `NXM_NX_REG1[0..15]` is `{Reg1, ofs: 0, n_bits: 16}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubField {
    pub field: FieldId,
    pub ofs: u8,
    pub n_bits: u8,
}

impl SubField {
    /// The width of `field` as a subfield: its width, but 16 bits for `in_port` (Open
    /// vSwitch's `NXM_OF_IN_PORT`, the name subfields use, is 16 bits wide).
    pub fn field_bits(field: FieldId) -> u8 {
        if field == FieldId::InPort {
            16
        } else {
            field.info().bits
        }
    }

    /// The whole field (`NXM_NX_REG0[]`).
    pub fn whole(field: FieldId) -> SubField {
        SubField {
            field,
            ofs: 0,
            n_bits: SubField::field_bits(field),
        }
    }

    /// True when the range covers the whole field.
    pub fn is_whole(&self) -> bool {
        self.ofs == 0 && self.n_bits == SubField::field_bits(self.field)
    }

    /// The field-width mask selecting this range.
    pub fn mask(&self) -> u128 {
        let ones = if self.n_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.n_bits) - 1
        };
        ones << self.ofs
    }
}

/// Where `ct` takes its zone from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtZone {
    Imm(u16),
    Field(SubField),
}

/// Source or destination NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    Src,
    Dst,
}

/// The `nat(...)` clause of a `ct` action. `kind == None` is plain `nat`: apply the NAT of
/// an existing connection (un-NAT replies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Nat {
    pub kind: Option<NatKind>,
    /// Address range, inclusive (both of one family).
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// Port range, inclusive.
    pub ports: Option<(u16, u16)>,
    pub persistent: bool,
    pub hash: bool,
    pub random: bool,
}

/// The `ct(...)` action: send the packet through connection tracking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ct {
    pub commit: bool,
    pub force: bool,
    /// Recirculate into this table after conntrack (`None` = continue the action list).
    pub table: Option<u8>,
    /// `None` means zone 0.
    pub zone: Option<CtZone>,
    pub nat: Option<Nat>,
    /// Actions applied to the committed connection (`exec(set_field:..->ct_mark)`).
    pub exec: Vec<Action>,
    /// Application-layer gateway port (`alg=21`).
    pub alg: Option<u16>,
}

/// Why a packet goes to the controller (`OFPR_*` with OVS' text names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PacketInReason {
    NoMatch,
    #[default]
    Action,
    InvalidTtl,
    ActionSet,
    Group,
    PacketOut,
}

impl PacketInReason {
    pub const ALL: [PacketInReason; 6] = [
        PacketInReason::NoMatch,
        PacketInReason::Action,
        PacketInReason::InvalidTtl,
        PacketInReason::ActionSet,
        PacketInReason::Group,
        PacketInReason::PacketOut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PacketInReason::NoMatch => "no_match",
            PacketInReason::Action => "action",
            PacketInReason::InvalidTtl => "invalid_ttl",
            PacketInReason::ActionSet => "action_set",
            PacketInReason::Group => "group",
            PacketInReason::PacketOut => "packet_out",
        }
    }
}

/// The `controller` action (plain `CONTROLLER:max_len` or `controller(...)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Controller {
    pub max_len: u16,
    pub reason: PacketInReason,
    pub id: u16,
    pub userdata: Vec<u8>,
    pub pause: bool,
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            max_len: u16::MAX,
            reason: PacketInReason::Action,
            id: 0,
            userdata: Vec::new(),
            pause: false,
        }
    }
}

/// One action of an action list. An empty list means "drop".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send to a port (numbered or reserved, except CONTROLLER which is [`Action::Controller`]).
    Output {
        port: OfPort,
        max_len: u16,
    },
    /// OpenFlow set-field; `mask` is the field's full mask unless set partially.
    SetField {
        field: FieldId,
        value: u128,
        mask: u128,
    },
    /// Nicira `load:value->dst[range]`.
    RegLoad {
        dst: SubField,
        value: u128,
    },
    /// Nicira `move:src[range]->dst[range]` (same width).
    Move {
        src: SubField,
        dst: SubField,
    },
    /// Nicira `push:src[range]` (NXAST_STACK_PUSH): the bits onto the walk's stack.
    StackPush(SubField),
    /// Nicira `pop:dst[range]` (NXAST_STACK_POP): the top of the walk's stack into the bits.
    StackPop(SubField),
    /// Push an 802.1Q tag with this TPID (0x8100 or 0x88a8).
    PushVlan(u16),
    PopVlan,
    DecTtl,
    /// Nicira `resubmit(port,table)`: re-run lookup with a different in_port and/or table.
    Resubmit {
        in_port: Option<OfPort>,
        table: Option<u8>,
    },
    Group(u32),
    Ct(Ct),
    CtClear,
    Controller(Controller),
    /// Nicira `note`: opaque bytes, padded as on the wire.
    Note(Vec<u8>),
    /// `set_queue:N` (OFPAT_SET_QUEUE): selects the output queue. The switch has no queues
    /// (as Open vSwitch's userspace datapath on ports without QoS): recorded, no effect on the
    /// packet.
    SetQueue(u32),
    /// `mod_nw_ttl:N` (OFPAT_SET_NW_TTL): the IPv4 TTL / IPv6 hop limit.
    SetNwTtl(u8),
    /// `output(port=P,max_len=N)` (NXAST_OUTPUT_TRUNC): sends the packet's first `max_len`
    /// bytes (at least an Ethernet header's 14) to `port`, a numbered port, `LOCAL` or
    /// `IN_PORT` in text; a packet no longer than that goes whole. The actions after it see
    /// the packet whole.
    OutputTrunc {
        port: OfPort,
        max_len: u32,
    },
    /// `output:FIELD[range]` (NXAST_OUTPUT_REG): output to the port number the bits hold.
    OutputReg {
        src: SubField,
        max_len: u16,
    },
    /// `conjunction(id, clause/n_clauses)`; `clause` is 1-based as in text.
    Conjunction {
        id: u32,
        clause: u8,
        n_clauses: u8,
    },
    /// `clone(...)` (NXAST_CLONE): the actions run on a copy of the packet and of its
    /// pipeline state; the original goes on unchanged after it.
    Clone(Vec<Action>),
    /// `exit` (NXAST_EXIT): stops the walk, the callers of `resubmit` included; what was
    /// done so far (outputs) stands.
    Exit,
    /// `check_pkt_larger(N)->DST` (NXAST_CHECK_PKT_LARGER): writes 1 into the one-bit `dst`
    /// when the packet is longer than `pkt_len` bytes (its Ethernet frame without padding),
    /// else 0, for the rest of the action list.
    CheckPktLarger {
        pkt_len: u16,
        dst: SubField,
    },
    /// Nicira `learn(...)`: installs (or refreshes) a flow built from the packet.
    Learn(Box<Learn>),
    /// Nicira `fin_timeout(idle_timeout=I,hard_timeout=H)`: on a TCP FIN or RST, shortens
    /// this flow's timeouts to these (0 = leave that one alone).
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// Nicira `multipath(...)`: hashes the packet's fields, picks a link and writes it to a
    /// field.
    Multipath(Multipath),
    /// Nicira `bundle(...)` (outputs to the chosen member) and `bundle_load(...)` (writes the
    /// chosen member's port number to a field).
    Bundle(Box<Bundle>),
    /// `sample(...)` (NXAST_SAMPLE, SAMPLE2, SAMPLE3): counts the packet for its collector set
    /// with probability `probability / 65535`; the packet itself is unchanged.
    Sample(Sample),
    /// `dec_ttl(id1,id2,...)` (NXAST_DEC_TTL_CNT_IDS): `dec_ttl` whose TTL-expiry packet-in
    /// (reason `invalid_ttl`) goes to the controllers with these ids.
    DecTtlIds(Vec<u16>),
    /// `resubmit(port,table,ct)` (NXAST_RESUBMIT_TABLE_CT): as `resubmit`, but the lookup
    /// sees the connection's original tuple (`ct_nw_src`, `ct_tp_dst`, ...) in place of the
    /// packet's addresses, protocol and ports.
    ResubmitCt {
        in_port: Option<OfPort>,
        table: Option<u8>,
    },
}

/// The packet fields `multipath` and `bundle` hash (`NX_HASH_FIELDS_*`, in wire order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashFields {
    EthSrc,
    SymmetricL4,
    SymmetricL3L4,
    SymmetricL3L4Udp,
    NwSrc,
    NwDst,
    SymmetricL3,
}

impl HashFields {
    pub const ALL: [HashFields; 7] = [
        HashFields::EthSrc,
        HashFields::SymmetricL4,
        HashFields::SymmetricL3L4,
        HashFields::SymmetricL3L4Udp,
        HashFields::NwSrc,
        HashFields::NwDst,
        HashFields::SymmetricL3,
    ];

    /// The name ovs-ofctl reads and prints.
    pub fn name(self) -> &'static str {
        match self {
            HashFields::EthSrc => "eth_src",
            HashFields::SymmetricL4 => "symmetric_l4",
            HashFields::SymmetricL3L4 => "symmetric_l3l4",
            HashFields::SymmetricL3L4Udp => "symmetric_l3l4+udp",
            HashFields::NwSrc => "nw_src",
            HashFields::NwDst => "nw_dst",
            HashFields::SymmetricL3 => "symmetric_l3",
        }
    }

    /// Parses a name, case-insensitively (as ovs-ofctl's `strcasecmp`).
    pub fn from_name(s: &str) -> Option<HashFields> {
        HashFields::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// The `NX_HASH_FIELDS_*` wire value.
    pub fn wire(self) -> u16 {
        self as u16
    }

    pub fn from_wire(v: u16) -> Option<HashFields> {
        HashFields::ALL.get(usize::from(v)).copied()
    }
}

/// How `multipath` turns the hash into a link (`NX_MP_ALG_*`, in wire order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MultipathAlgorithm {
    ModuloN,
    HashThreshold,
    Hrw,
    IterHash,
}

impl MultipathAlgorithm {
    pub const ALL: [MultipathAlgorithm; 4] = [
        MultipathAlgorithm::ModuloN,
        MultipathAlgorithm::HashThreshold,
        MultipathAlgorithm::Hrw,
        MultipathAlgorithm::IterHash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MultipathAlgorithm::ModuloN => "modulo_n",
            MultipathAlgorithm::HashThreshold => "hash_threshold",
            MultipathAlgorithm::Hrw => "hrw",
            MultipathAlgorithm::IterHash => "iter_hash",
        }
    }

    pub fn from_name(s: &str) -> Option<MultipathAlgorithm> {
        MultipathAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }

    pub fn wire(self) -> u16 {
        self as u16
    }

    pub fn from_wire(v: u16) -> Option<MultipathAlgorithm> {
        MultipathAlgorithm::ALL.get(usize::from(v)).copied()
    }
}

/// `multipath(fields, basis, algorithm, n_links, arg, dst)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Multipath {
    pub fields: HashFields,
    pub basis: u16,
    pub algorithm: MultipathAlgorithm,
    /// The number of links minus one (links are 0..=max_link).
    pub max_link: u16,
    /// `iter_hash`'s modulus (ignored by the other algorithms).
    pub arg: u32,
    pub dst: SubField,
}

/// How `bundle` chooses a member (`NX_BD_ALG_*` wire values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BundleAlgorithm {
    /// The first live member.
    ActiveBackup,
    /// Highest random weight over the live members.
    Hrw,
}

impl BundleAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            BundleAlgorithm::ActiveBackup => "active_backup",
            BundleAlgorithm::Hrw => "hrw",
        }
    }

    pub fn from_name(s: &str) -> Option<BundleAlgorithm> {
        [BundleAlgorithm::ActiveBackup, BundleAlgorithm::Hrw]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }

    pub fn wire(self) -> u16 {
        match self {
            BundleAlgorithm::ActiveBackup => 0,
            BundleAlgorithm::Hrw => 1,
        }
    }

    pub fn from_wire(v: u16) -> Option<BundleAlgorithm> {
        match v {
            0 => Some(BundleAlgorithm::ActiveBackup),
            1 => Some(BundleAlgorithm::Hrw),
            _ => None,
        }
    }
}

/// Most members a bundle may have (Open vSwitch's `BUNDLE_MAX_MEMBERS`).
pub const BUNDLE_MAX_MEMBERS: usize = 2048;

/// `bundle(...)` / `bundle_load(...)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bundle {
    pub fields: HashFields,
    pub basis: u16,
    pub algorithm: BundleAlgorithm,
    /// `bundle_load`'s destination; `None` for `bundle` (output to the member).
    pub dst: Option<SubField>,
    /// Ports below 0xff00 or reserved (OpenFlow 1.0 numbers widened to 32 bits).
    pub members: Vec<OfPort>,
}

/// Which way a sampled packet was going, for the IPFIX record (`ingress`, `egress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SampleDirection {
    #[default]
    Default,
    Ingress,
    Egress,
}

/// The `sample(...)` action (Open vSwitch `ovs-actions(7)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sample {
    /// Packets sampled out of 65535 (1 or more).
    pub probability: u16,
    pub collector_set_id: u32,
    pub obs_domain_id: u32,
    pub obs_point_id: u32,
    /// `sampling_port=`: the port the sample describes (`None`: OFPP_NONE).
    pub sampling_port: Option<OfPort>,
    pub direction: SampleDirection,
}

/// Where a `learn` spec takes its bits from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnSrc {
    /// Bits of the packet's (working) key.
    Field(SubField),
    /// A constant, right-aligned (as wide as the destination range).
    Imm(u128),
}

/// One spec of a `learn` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnSpec {
    /// The learned flow matches `dst` on the source's bits.
    Match { src: LearnSrc, dst: SubField },
    /// The learned flow loads the source's bits into `dst`.
    Load { src: LearnSrc, dst: SubField },
    /// The learned flow outputs to the port number the source's bits hold.
    Output { src: SubField },
}

impl LearnSpec {
    /// The number of bits the spec moves.
    pub fn n_bits(&self) -> u8 {
        match self {
            LearnSpec::Match { dst, .. } | LearnSpec::Load { dst, .. } => dst.n_bits,
            LearnSpec::Output { src } => src.n_bits,
        }
    }
}

/// The `learn(...)` action (Open vSwitch `ovs-actions(7)`). Timeouts of 0 are permanent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Learn {
    pub table: u8,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    pub cookie: u64,
    pub send_flow_rem: bool,
    /// Delete the flows learned (same table and cookie) when the last flow holding this
    /// learn goes.
    pub delete_learned: bool,
    /// `limit=N` (NXAST_LEARN2): learn no new flow while the learned table holds `N` flows
    /// with this learn's cookie (0: no limit); refreshing an identical flow still works.
    pub limit: u32,
    /// `result_dst=FIELD[bit]` (NXAST_LEARN2): set to 1 when the flow was learned (or was
    /// there already), to 0 when the limit stopped it.
    pub result_dst: Option<SubField>,
    /// Encoded as NXAST_LEARN2 even without `limit` or `result_dst` (as it came in).
    pub learn2: bool,
    pub specs: Vec<LearnSpec>,
}

impl Default for Learn {
    fn default() -> Self {
        Learn {
            table: 1,
            priority: crate::flow::DEFAULT_PRIORITY,
            idle_timeout: 0,
            hard_timeout: 0,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            cookie: 0,
            send_flow_rem: false,
            delete_learned: false,
            limit: 0,
            result_dst: None,
            learn2: false,
            specs: Vec::new(),
        }
    }
}

impl Action {
    /// True when this action (or a nested one) outputs to `port`.
    pub fn outputs_to(&self, port: OfPort) -> bool {
        match self {
            // Not `output(port=P,max_len=N)`: Open vSwitch's `ofpact_outputs_to_port` leaves
            // it out (an `out_port` filter does not find it).
            Action::Output { port: p, .. } => *p == port,
            Action::Controller(_) => port == OfPort::CONTROLLER,
            Action::Ct(ct) => ct.exec.iter().any(|a| a.outputs_to(port)),
            Action::Clone(inner) => inner.iter().any(|a| a.outputs_to(port)),
            _ => false,
        }
    }

    /// Whether Open vSwitch admits this action in an action set (`write_actions`): the
    /// actions `ofpacts_execute_action_set` knows how to order; anything else is refused
    /// with OFPBAC_BAD_TYPE. `output:CONTROLLER` is an output; `controller(...)` is not.
    pub fn allowed_in_action_set(&self) -> bool {
        match self {
            Action::Controller(c) => {
                c.reason == PacketInReason::Action && c.id == 0 && c.userdata.is_empty() && !c.pause
            }
            Action::Output { .. }
            | Action::Group(_)
            | Action::Resubmit { .. }
            | Action::ResubmitCt { .. }
            | Action::Ct(_)
            | Action::CtClear
            | Action::PopVlan
            | Action::PushVlan(_)
            | Action::DecTtl
            | Action::DecTtlIds(_)
            | Action::SetField { .. }
            | Action::RegLoad { .. }
            | Action::Move { .. }
            | Action::StackPush(_)
            | Action::StackPop(_)
            | Action::SetNwTtl(_)
            | Action::SetQueue(_) => true,
            _ => false,
        }
    }

    /// Every group this action sends to: `group:N`, and each one inside `clone(...)`, in
    /// order (a flow holds a reference to each, as in Open vSwitch).
    pub fn groups(&self) -> Vec<u32> {
        let mut v = Vec::new();
        self.each_group(&mut |g| v.push(g));
        v
    }

    /// Whether this action sends to group `g` (itself, or inside `clone(...)`).
    pub fn uses_group(&self, g: u32) -> bool {
        match self {
            Action::Group(id) => *id == g,
            Action::Clone(inner) => inner.iter().any(|a| a.uses_group(g)),
            _ => false,
        }
    }

    fn each_group(&self, f: &mut impl FnMut(u32)) {
        match self {
            Action::Group(g) => f(*g),
            Action::Clone(inner) => inner.iter().for_each(|a| a.each_group(f)),
            _ => {}
        }
    }
}

/// The instruction set of a flow, in the order OpenFlow 1.3 executes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Instructions {
    /// `OFPIT_METER`: the meter every packet of the flow passes before its actions.
    pub meter: Option<u32>,
    /// `OFPIT_APPLY_ACTIONS` (what ovs-ofctl shows as the plain action list).
    pub apply: Vec<Action>,
    /// `OFPIT_CLEAR_ACTIONS`.
    pub clear_actions: bool,
    /// `OFPIT_WRITE_ACTIONS`.
    pub write_actions: Option<Vec<Action>>,
    /// `OFPIT_WRITE_METADATA` (value, mask).
    pub write_metadata: Option<(u64, u64)>,
    /// `OFPIT_GOTO_TABLE`.
    pub goto_table: Option<u8>,
}

impl Instructions {
    /// Apply-actions only.
    pub fn apply(actions: Vec<Action>) -> Instructions {
        Instructions {
            apply: actions,
            ..Instructions::default()
        }
    }

    /// Every action in apply and write lists.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.apply.iter().chain(self.write_actions.iter().flatten())
    }

    /// True when some action outputs to `port` (the `out_port` filter).
    pub fn outputs_to(&self, port: OfPort) -> bool {
        self.actions().any(|a| a.outputs_to(port))
    }

    /// True when the flow passes its packets through meter `id`.
    pub fn uses_meter(&self, id: u32) -> bool {
        self.meter == Some(id)
    }

    /// True when some action sends to group `g` (the `out_group` filter), in `clone(...)`
    /// too.
    pub fn uses_group(&self, g: u32) -> bool {
        self.actions().any(|a| a.uses_group(g))
    }
}
