//! OpenFlow 1.3 actions and the Nicira (vendor 0x00002320) extension actions ovs-ofctl uses.
//!
//! [`Action`] is the wire-faithful form: decode → encode reproduces ovs-ofctl's bytes (e.g.
//! `resubmit(,2)` stays NXAST_RESUBMIT_TABLE, `set_field:0xab/0xff->reg1` stays NXAST_REG_LOAD).
//! Anything else is refused with the precise `OFPET_BAD_ACTION` code.

mod sample;

pub use sample::{SAMPLE_NO_PORT, SampleAction};

use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};
use super::oxm::{OxmHeader, OxmTlv};
use flowtable::fields::FieldId;

/// `ofp_action_type` values.
pub mod action_type {
    pub const OUTPUT: u16 = 0;
    pub const COPY_TTL_OUT: u16 = 11;
    pub const COPY_TTL_IN: u16 = 12;
    pub const SET_MPLS_TTL: u16 = 15;
    pub const DEC_MPLS_TTL: u16 = 16;
    pub const PUSH_VLAN: u16 = 17;
    pub const POP_VLAN: u16 = 18;
    pub const PUSH_MPLS: u16 = 19;
    pub const POP_MPLS: u16 = 20;
    pub const SET_QUEUE: u16 = 21;
    pub const GROUP: u16 = 22;
    pub const SET_NW_TTL: u16 = 23;
    pub const DEC_NW_TTL: u16 = 24;
    pub const SET_FIELD: u16 = 25;
    pub const PUSH_PBB: u16 = 26;
    pub const POP_PBB: u16 = 27;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// Nicira vendor id.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;

/// Nicira action subtypes (`NXAST_*`).
pub mod nx_subtype {
    pub const RESUBMIT: u16 = 1;
    pub const REG_MOVE: u16 = 6;
    pub const REG_LOAD: u16 = 7;
    pub const NOTE: u16 = 8;
    pub const MULTIPATH: u16 = 10;
    pub const BUNDLE: u16 = 12;
    pub const BUNDLE_LOAD: u16 = 13;
    pub const OUTPUT_REG: u16 = 15;
    pub const OUTPUT_TRUNC: u16 = 39;
    pub const RESUBMIT_TABLE: u16 = 14;
    pub const LEARN: u16 = 16;
    pub const LEARN2: u16 = 45;
    pub const DEC_TTL: u16 = 18;
    pub const FIN_TIMEOUT: u16 = 19;
    pub const CONTROLLER: u16 = 20;
    pub const REG_LOAD2: u16 = 33;
    pub const STACK_PUSH: u16 = 27;
    pub const STACK_POP: u16 = 28;
    pub const CONJUNCTION: u16 = 34;
    pub const CT: u16 = 35;
    pub const NAT: u16 = 36;
    pub const CONTROLLER2: u16 = 37;
    pub const CT_CLEAR: u16 = 43;
    pub const EXIT: u16 = 17;
    pub const CLONE: u16 = 42;
    pub const CHECK_PKT_LARGER: u16 = 49;
    pub const RESUBMIT_TABLE_CT: u16 = 44;
    pub const SAMPLE: u16 = super::sample::SAMPLE;
    pub const SAMPLE2: u16 = super::sample::SAMPLE2;
    pub const SAMPLE3: u16 = super::sample::SAMPLE3;
    pub const DEC_TTL_CNT_IDS: u16 = super::sample::DEC_TTL_CNT_IDS;
}

/// Reserved port numbers (`ofp_port_no`).
pub mod port {
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
}

/// `max_len` meaning "send the whole packet, do not buffer".
pub const CONTROLLER_NO_BUFFER: u16 = 0xffff;

/// `ct` flags.
pub const CT_COMMIT: u16 = 0x0001;
pub const CT_FORCE: u16 = 0x0002;
/// `ct` recirc_table meaning "do not recirculate".
pub const CT_NO_RECIRC: u8 = 0xff;

/// `nat` flags.
pub const NAT_SRC: u16 = 0x0001;
pub const NAT_DST: u16 = 0x0002;
pub const NAT_PERSISTENT: u16 = 0x0004;
pub const NAT_PROTO_HASH: u16 = 0x0008;
pub const NAT_PROTO_RANDOM: u16 = 0x0010;

/// One action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// OFPAT_OUTPUT (`max_len` matters only for CONTROLLER).
    Output {
        port: u32,
        max_len: u16,
    },
    /// OFPAT_GROUP.
    Group(u32),
    /// OFPAT_SET_FIELD with an unmasked TLV (any class, e.g. NXM_NX_REG0 or TUN_IPV4_DST).
    SetField(OxmTlv),
    /// OFPAT_PUSH_VLAN with its TPID (0x8100 or 0x88a8).
    PushVlan(u16),
    PopVlan,
    DecNwTtl,
    /// NXAST_RESUBMIT (`table: None`) or NXAST_RESUBMIT_TABLE; `in_port` 0xfff8 = the packet's.
    Resubmit {
        in_port: u16,
        table: Option<u8>,
    },
    /// NXAST_REG_LOAD: write `value` into bits `ofs..ofs+n_bits` of field `dst`.
    RegLoad {
        dst: OxmHeader,
        ofs: u16,
        n_bits: u16,
        value: u64,
    },
    /// NXAST_REG_LOAD2: masked set-field.
    RegLoad2(OxmTlv),
    /// NXAST_REG_MOVE: copy `n_bits` from `src[src_ofs..]` to `dst[dst_ofs..]`.
    RegMove {
        src: OxmHeader,
        dst: OxmHeader,
        src_ofs: u16,
        dst_ofs: u16,
        n_bits: u16,
    },
    /// NXAST_NOTE: opaque bytes (including ovs-ofctl's zero padding).
    Note(Vec<u8>),
    /// NXAST_CT.
    Ct(CtAction),
    /// NXAST_NAT (inside `ct`).
    Nat(NatAction),
    CtClear,
    /// NXAST_CONTROLLER.
    Controller {
        max_len: u16,
        controller_id: u16,
        reason: u8,
    },
    /// NXAST_CONTROLLER2.
    Controller2(Controller2),
    /// NXAST_DEC_TTL.
    NxDecTtl,
    /// NXAST_CONJUNCTION.
    Conjunction {
        id: u32,
        clause: u8,
        n_clauses: u8,
    },
    /// NXAST_LEARN.
    Learn(Learn),
    /// NXAST_FIN_TIMEOUT.
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// OFPAT_SET_QUEUE.
    SetQueue(u32),
    /// OFPAT_SET_NW_TTL (`mod_nw_ttl`).
    SetNwTtl(u8),
    /// NXAST_STACK_PUSH (`pop`: NXAST_STACK_POP): `field[ofs..ofs+n_bits]` onto (off) the
    /// walk's stack.
    Stack {
        pop: bool,
        field: OxmHeader,
        ofs: u16,
        n_bits: u16,
    },
    /// NXAST_OUTPUT_TRUNC: output the first `max_len` bytes (at least 14) to `port`, an
    /// OpenFlow 1.0 (16-bit) port number.
    OutputTrunc {
        port: u16,
        max_len: u32,
    },
    /// NXAST_OUTPUT_REG: output to the port number in `src[ofs..ofs+n_bits]`.
    OutputReg {
        src: OxmHeader,
        ofs: u16,
        n_bits: u16,
        max_len: u16,
    },
    /// NXAST_CLONE: the nested actions run on a copy of the packet.
    Clone(Vec<Action>),
    /// NXAST_EXIT.
    Exit,
    /// NXAST_CHECK_PKT_LARGER: 1 into bit `ofs` of `dst` when the packet is longer than
    /// `pkt_len`, else 0.
    CheckPktLarger {
        pkt_len: u16,
        dst: OxmHeader,
        ofs: u16,
    },
    /// NXAST_MULTIPATH.
    Multipath(Multipath),
    /// NXAST_BUNDLE (`dst: None`) or NXAST_BUNDLE_LOAD.
    Bundle(Bundle),
    /// NXAST_SAMPLE, NXAST_SAMPLE2 or NXAST_SAMPLE3.
    Sample(SampleAction),
    /// NXAST_DEC_TTL_CNT_IDS: `dec_ttl` with the controller ids of its TTL-expiry packet-in.
    DecTtlCntIds(Vec<u16>),
    /// NXAST_RESUBMIT_TABLE_CT: `resubmit(port,table,ct)`; `table` 255 = the current table.
    ResubmitCt {
        in_port: u16,
        table: u8,
    },
}

/// `NX_HASH_FIELDS_*` values Open vSwitch 3.1 knows (eth_src .. symmetric_l3).
pub const NX_HASH_FIELDS_MAX: u16 = 6;
/// `NX_MP_ALG_*` values (modulo_n, hash_threshold, hrw, iter_hash).
pub const NX_MP_ALG_MAX: u16 = 3;
/// `NX_BD_ALG_*` values (active_backup, hrw).
pub const NX_BD_ALG_MAX: u16 = 1;
/// The only bundle member type: `NXM_OF_IN_PORT`'s header (16-bit port numbers).
pub const NX_BUNDLE_MEMBER_TYPE: u32 = 0x0000_0002;
/// Most members of a bundle (Open vSwitch's `BUNDLE_MAX_MEMBERS`).
pub const NX_BUNDLE_MAX_MEMBERS: usize = 2048;

/// `multipath(...)`: the hash of `fields` picks a link 0..=max_link, written to
/// `dst[ofs..ofs+n_bits]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Multipath {
    pub fields: u16,
    pub basis: u16,
    pub algorithm: u16,
    pub max_link: u16,
    pub arg: u32,
    pub dst: OxmHeader,
    pub ofs: u16,
    pub n_bits: u16,
}

/// `bundle(...)` / `bundle_load(...)`: chooses one of `members` (16-bit port numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub algorithm: u16,
    pub fields: u16,
    pub basis: u16,
    /// `bundle_load`'s destination (field, ofs, n_bits).
    pub dst: Option<(OxmHeader, u16, u16)>,
    pub members: Vec<u16>,
}

/// How deep NXAST_CLONE may nest in a decoded action list (bounds recursion on hostile input).
pub const MAX_CLONE_DEPTH: usize = 16;

thread_local! {
    static CLONE_DEPTH: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// `learn(...)`: a flow template installed when the action runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learn {
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub cookie: u64,
    /// `NX_LEARN_F_*` bits.
    pub flags: u16,
    pub table_id: u8,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    /// NXAST_LEARN2 (`limit`, `result_dst`) rather than NXAST_LEARN.
    pub learn2: bool,
    /// NXAST_LEARN2: most flows with this cookie in the learned table (0: no limit).
    pub limit: u32,
    /// NXAST_LEARN2 with `NX_LEARN_F_WRITE_RESULT`: the one-bit result's field and offset.
    pub result_dst: Option<(OxmHeader, u16)>,
    pub specs: Vec<LearnSpec>,
}

/// `NX_LEARN_F_WRITE_RESULT`: NXAST_LEARN2 carries `result_dst`.
pub const LEARN_F_WRITE_RESULT: u16 = 1 << 2;

/// One `flow_mod_spec` of a `learn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnSpec {
    pub n_bits: u16,
    pub src: LearnSrc,
    pub dst: LearnDst,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnSrc {
    /// Bits of a field of the packet being processed.
    Field { header: OxmHeader, ofs: u16 },
    /// A constant, `2 * ceil(n_bits / 16)` bytes, big-endian.
    Immediate(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnDst {
    /// Match on bits of a field in the learned flow.
    Match { header: OxmHeader, ofs: u16 },
    /// Load into bits of a field in the learned flow's actions.
    Load { header: OxmHeader, ofs: u16 },
    /// Output to the port number taken from `src`.
    Output,
}

/// `ct(...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtAction {
    /// [`CT_COMMIT`] | [`CT_FORCE`].
    pub flags: u16,
    /// Field supplying the zone (`zone=NXM_NX_REG6[0..15]`), or `None` for an immediate zone.
    pub zone_src: Option<OxmHeader>,
    /// Immediate zone, or the `ofs << 6 | (n_bits - 1)` of `zone_src`.
    pub zone: u16,
    /// Table to recirculate to, [`CT_NO_RECIRC`] for none.
    pub recirc_table: u8,
    /// ALG port (0 = none).
    pub alg: u16,
    /// Nested actions (`exec(...)` set-fields and `nat`).
    pub actions: Vec<Action>,
}

/// `nat(...)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatAction {
    /// `NAT_*` flags.
    pub flags: u16,
    pub ipv4_min: Option<u32>,
    pub ipv4_max: Option<u32>,
    pub ipv6_min: Option<[u8; 16]>,
    pub ipv6_max: Option<[u8; 16]>,
    pub proto_min: Option<u16>,
    pub proto_max: Option<u16>,
}

/// `controller(...)` in its property-based form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller2 {
    pub max_len: u16,
    pub controller_id: u16,
    /// `ofp_packet_in_reason` (0 no_match, 1 action, 2 invalid_ttl).
    pub reason: u8,
    pub userdata: Vec<u8>,
    pub pause: bool,
    pub meter_id: Option<u32>,
}

impl Default for Controller2 {
    fn default() -> Self {
        Controller2 {
            max_len: CONTROLLER_NO_BUFFER,
            controller_id: 0,
            reason: 1,
            userdata: Vec::new(),
            pause: false,
            meter_id: None,
        }
    }
}

/// Decodes a list of actions filling all of `bytes`.
pub fn decode_actions(bytes: &[u8]) -> Result<Vec<Action>, OfError> {
    decode_action_list(bytes, false)
}

/// `in_ct`: decoding the nested list of a `ct` (which may not nest another `ct`; this also
/// bounds recursion on hostile input).
fn decode_action_list(bytes: &[u8], in_ct: bool) -> Result<Vec<Action>, OfError> {
    let mut r = Reader::new(bytes, ErrorCode::BadActionBadLen);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(decode_action(&mut r, in_ct)?);
    }
    Ok(out)
}

/// Encodes a list of actions.
pub fn encode_actions(actions: &[Action], out: &mut Vec<u8>) {
    for a in actions {
        a.encode(out);
    }
}

/// Total encoded size of `actions`.
pub fn actions_len(actions: &[Action]) -> usize {
    let mut v = Vec::new();
    encode_actions(actions, &mut v);
    v.len()
}

fn decode_action(r: &mut Reader<'_>, in_ct: bool) -> Result<Action, OfError> {
    let mut hr = r.clone();
    let ty = hr.u16("action type")?;
    let len = usize::from(hr.u16("action length")?);
    if len < 8 || len % 8 != 0 {
        return err(
            ErrorCode::BadActionBadLen,
            format!("action type {ty} has length {len}"),
        );
    }
    if len > r.remaining() {
        return err(
            ErrorCode::BadActionBadLen,
            format!(
                "action type {ty} length {len} exceeds the {} bytes left",
                r.remaining()
            ),
        );
    }
    let body = &r.bytes(len, "action")?[4..];
    let mut b = Reader::new(body, ErrorCode::BadActionBadLen);
    use action_type as t;
    let fixed = |want: usize| -> Result<(), OfError> {
        if len != want {
            return err(
                ErrorCode::BadActionBadLen,
                format!("action type {ty}: length {len}, want {want}"),
            );
        }
        Ok(())
    };
    let a = match ty {
        t::OUTPUT => {
            fixed(16)?;
            let port = b.u32("output port")?;
            let max_len = b.u16("output max_len")?;
            check_output_port(port)?;
            Action::Output { port, max_len }
        }
        t::GROUP => {
            fixed(8)?;
            Action::Group(b.u32("group id")?)
        }
        t::PUSH_VLAN => {
            fixed(8)?;
            let tpid = b.u16("push_vlan ethertype")?;
            if tpid != 0x8100 && tpid != 0x88a8 {
                return err(
                    ErrorCode::BadActionBadArgument,
                    format!("push_vlan ethertype {tpid:#06x}"),
                );
            }
            Action::PushVlan(tpid)
        }
        t::POP_VLAN => {
            fixed(8)?;
            Action::PopVlan
        }
        t::DEC_NW_TTL => {
            fixed(8)?;
            Action::DecNwTtl
        }
        t::SET_FIELD => Action::SetField(decode_set_field(body, false)?),
        t::SET_QUEUE => {
            fixed(8)?;
            Action::SetQueue(b.u32("set_queue queue id")?)
        }
        t::SET_NW_TTL => {
            fixed(8)?;
            Action::SetNwTtl(b.u8("set_nw_ttl ttl")?)
        }
        t::EXPERIMENTER => decode_nx(&mut b, len, in_ct)?,
        t::COPY_TTL_OUT
        | t::COPY_TTL_IN
        | t::SET_MPLS_TTL
        | t::DEC_MPLS_TTL
        | t::PUSH_MPLS
        | t::POP_MPLS
        | t::PUSH_PBB
        | t::POP_PBB => {
            return err(
                ErrorCode::BadActionBadType,
                format!("action type {ty} is not supported"),
            );
        }
        _ => {
            return err(
                ErrorCode::BadActionBadType,
                format!("unknown action type {ty}"),
            );
        }
    };
    Ok(a)
}

/// Open vSwitch's `ofputil_port_from_ofp11` and `ofpact_check_output_port`: 0xff00..=0xfffffeff
/// is no port it can represent, 0xffffff00..=0xfffffff7 no reserved port it names; ANY no port
/// to send to. Port 0 passes, as in Open vSwitch (an output to a port that is not there).
fn check_output_port(p: u32) -> Result<(), OfError> {
    if p == port::ANY || (0xff00..port::IN_PORT).contains(&p) {
        return err(
            ErrorCode::BadActionBadOutPort,
            format!("output to invalid port {p:#x}"),
        );
    }
    Ok(())
}

/// The TLV inside a set-field: one OXM, zero padding after it.
fn decode_set_field(body: &[u8], masked_ok: bool) -> Result<OxmTlv, OfError> {
    let mut r = Reader::new(body, ErrorCode::BadActionBadSetLen);
    if let Some(tlv) = decode_set_nw_tos(body)? {
        return Ok(tlv);
    }
    let tlv = OxmTlv::decode(&mut r).map_err(|e| {
        let code = match e.code {
            ErrorCode::BadMatchBadField => ErrorCode::BadActionBadSetType,
            ErrorCode::BadMatchBadLen | ErrorCode::BadActionBadSetLen => {
                ErrorCode::BadActionBadSetLen
            }
            _ => ErrorCode::BadActionBadSetArgument,
        };
        OfError::new(code, format!("set_field: {}", e.detail))
    })?;
    if tlv.mask.is_some() && !masked_ok {
        return err(
            ErrorCode::BadActionBadSetArgument,
            "set_field with a mask (use NXAST_REG_LOAD2)",
        );
    }
    if tlv
        .field
        .clears_vlan_present(tlv.value, tlv.mask.unwrap_or(u128::MAX))
    {
        return err(
            ErrorCode::BadActionBadSetArgument,
            format!(
                "Invalid value for set field vlan_vid: {} (the VLAN-present bit 0x1000 is not set)",
                tlv.value
            ),
        );
    }
    if r.rest().iter().any(|&b| b != 0) || r.remaining() >= 8 {
        return err(
            ErrorCode::BadActionBadSetLen,
            "set_field: bytes after the field are not padding",
        );
    }
    Ok(tlv)
}

/// A set-field of NXM_OF_IP_TOS (`set_field:16->nw_tos`, as ovs-ofctl sends it): the TOS byte
/// with the ECN bits zero (else `OFPBAC_BAD_SET_ARGUMENT`, as Open vSwitch's "not a valid
/// value for field nw_tos"). `None` for any other field.
fn decode_set_nw_tos(body: &[u8]) -> Result<Option<OxmTlv>, OfError> {
    let Some(wire) = FieldId::NwTos.info().nxm else {
        return Ok(None);
    };
    let header = OxmHeader::new(wire.class, wire.field, false, wire.len);
    if body.len() < 5 || body[..4] != header.0.to_be_bytes() {
        return Ok(None);
    }
    if body[5..].iter().any(|&b| b != 0) || body.len() >= 5 + 8 {
        return err(
            ErrorCode::BadActionBadSetLen,
            "set_field: bytes after the field are not padding",
        );
    }
    let tos = body[4];
    if tos & 0x03 != 0 {
        return err(
            ErrorCode::BadActionBadSetArgument,
            format!("{tos} is not a valid value for field nw_tos (the ECN bits must be zero)"),
        );
    }
    Ok(Some(OxmTlv {
        field: FieldId::NwTos,
        wire,
        value: u128::from(tos),
        mask: None,
    }))
}

fn field_header(raw: u32, what: &str) -> Result<OxmHeader, OfError> {
    let h = OxmHeader(raw);
    if h.field().is_none() {
        return err(
            ErrorCode::BadActionBadArgument,
            format!("{what}: unknown field header {raw:#010x}"),
        );
    }
    Ok(h)
}

fn field_bits(h: OxmHeader) -> u32 {
    h.field().map_or(0, |(_, w)| u32::from(w.len) * 8)
}

fn decode_nx(b: &mut Reader<'_>, len: usize, in_ct: bool) -> Result<Action, OfError> {
    let vendor = b.u32("experimenter id")?;
    if vendor != NX_VENDOR_ID {
        return err(
            ErrorCode::BadActionBadExperimenter,
            format!("action experimenter {vendor:#010x}"),
        );
    }
    let sub = b.u16("nicira subtype")?;
    let fixed = |want: usize| -> Result<(), OfError> {
        if len != want {
            return err(
                ErrorCode::BadActionBadLen,
                format!("NXAST {sub}: length {len}, want {want}"),
            );
        }
        Ok(())
    };
    use nx_subtype as s;
    let a = match sub {
        s::RESUBMIT | s::RESUBMIT_TABLE => {
            fixed(16)?;
            let in_port = b.u16("resubmit in_port")?;
            let table = b.u8("resubmit table")?;
            if sub == s::RESUBMIT {
                Action::Resubmit {
                    in_port,
                    table: None,
                }
            } else {
                Action::Resubmit {
                    in_port,
                    table: Some(table),
                }
            }
        }
        s::REG_LOAD => {
            fixed(24)?;
            let ofs_nbits = b.u16("reg_load ofs_nbits")?;
            let dst = field_header(b.u32("reg_load dst")?, "reg_load")?;
            let value = b.u64("reg_load value")?;
            let (ofs, n_bits) = (ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1);
            if u32::from(ofs) + u32::from(n_bits) > field_bits(dst) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "reg_load: bit range outside the field",
                );
            }
            if n_bits < 64 && value >> n_bits != 0 {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "reg_load: value wider than the bit range",
                );
            }
            let bits = (u128::from(u64::MAX) >> (64 - n_bits)) << ofs;
            if dst
                .field()
                .is_some_and(|(f, _)| f.clears_vlan_present(u128::from(value) << ofs, bits))
            {
                return err(
                    ErrorCode::BadActionBadSetArgument,
                    "reg_load: clears the VLAN-present bit 0x1000 of vlan_vid",
                );
            }
            Action::RegLoad {
                dst,
                ofs,
                n_bits,
                value,
            }
        }
        s::REG_LOAD2 => Action::RegLoad2(decode_set_field(b.rest(), true)?),
        s::OUTPUT_REG => {
            fixed(24)?;
            let ofs_nbits = b.u16("output_reg ofs_nbits")?;
            let src = field_header(b.u32("output_reg src")?, "output_reg")?;
            let max_len = b.u16("output_reg max_len")?;
            if b.take_rest().iter().any(|&x| x != 0) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "output_reg: non-zero padding",
                );
            }
            let (ofs, n_bits) = (ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1);
            if u32::from(ofs) + u32::from(n_bits) > field_bits(src) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "output_reg: bit range outside the field",
                );
            }
            Action::OutputReg {
                src,
                ofs,
                n_bits,
                max_len,
            }
        }
        s::OUTPUT_TRUNC => {
            fixed(16)?;
            let port = b.u16("output_trunc port")?;
            let max_len = b.u32("output_trunc max_len")?;
            // As Open vSwitch: shorter than an Ethernet header is refused.
            if max_len < 14 {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "output_trunc: max_len below 14",
                );
            }
            Action::OutputTrunc { port, max_len }
        }
        s::STACK_PUSH | s::STACK_POP => {
            fixed(24)?;
            let ofs = b.u16("stack offset")?;
            let field = field_header(b.u32("stack field")?, "stack")?;
            let n_bits = b.u16("stack n_bits")?;
            if b.take_rest().iter().any(|&x| x != 0) {
                return err(ErrorCode::BadActionBadArgument, "stack: non-zero padding");
            }
            if n_bits == 0 || u32::from(ofs) + u32::from(n_bits) > field_bits(field) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "stack: bit range outside the field",
                );
            }
            Action::Stack {
                pop: sub == s::STACK_POP,
                field,
                ofs,
                n_bits,
            }
        }
        s::REG_MOVE => {
            fixed(24)?;
            let n_bits = b.u16("reg_move n_bits")?;
            let src_ofs = b.u16("reg_move src_ofs")?;
            let dst_ofs = b.u16("reg_move dst_ofs")?;
            let src = field_header(b.u32("reg_move src")?, "reg_move src")?;
            let dst = field_header(b.u32("reg_move dst")?, "reg_move dst")?;
            if n_bits == 0
                || u32::from(src_ofs) + u32::from(n_bits) > field_bits(src)
                || u32::from(dst_ofs) + u32::from(n_bits) > field_bits(dst)
            {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "reg_move: bit range outside a field",
                );
            }
            Action::RegMove {
                src,
                dst,
                src_ofs,
                dst_ofs,
                n_bits,
            }
        }
        s::NOTE => Action::Note(b.take_rest().to_vec()),
        s::CT if in_ct => return err(ErrorCode::BadActionBadArgument, "ct nested inside ct"),
        s::CT => decode_ct(b)?,
        s::NAT => decode_nat(b)?,
        s::CT_CLEAR => {
            fixed(16)?;
            Action::CtClear
        }
        s::DEC_TTL => {
            fixed(16)?;
            Action::NxDecTtl
        }
        s::CONTROLLER => {
            fixed(16)?;
            let max_len = b.u16("controller max_len")?;
            let controller_id = b.u16("controller id")?;
            let reason = b.u8("controller reason")?;
            Action::Controller {
                max_len,
                controller_id,
                reason,
            }
        }
        s::CONTROLLER2 => decode_controller2(b)?,
        s::CONJUNCTION => {
            fixed(16)?;
            let clause = b.u8("conjunction clause")?;
            let n_clauses = b.u8("conjunction n_clauses")?;
            let id = b.u32("conjunction id")?;
            if !(2..=64).contains(&n_clauses) || clause >= n_clauses {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "conjunction: bad clause numbers",
                );
            }
            Action::Conjunction {
                id,
                clause,
                n_clauses,
            }
        }
        s::LEARN => decode_learn(b, false)?,
        s::LEARN2 => decode_learn(b, true)?,
        s::EXIT => {
            fixed(16)?;
            Action::Exit
        }
        s::CLONE => {
            b.skip(6, "clone pad")?;
            let depth = CLONE_DEPTH.with(|d| d.get());
            if depth >= MAX_CLONE_DEPTH {
                return err(
                    ErrorCode::BadActionBadArgument,
                    format!("clone nested more than {MAX_CLONE_DEPTH} deep"),
                );
            }
            CLONE_DEPTH.with(|d| d.set(depth + 1));
            let inner = decode_action_list(b.take_rest(), in_ct);
            CLONE_DEPTH.with(|d| d.set(depth));
            Action::Clone(inner?)
        }
        s::CHECK_PKT_LARGER => {
            fixed(24)?;
            let pkt_len = b.u16("check_pkt_larger pkt_len")?;
            let ofs = b.u16("check_pkt_larger offset")?;
            let dst = field_header(b.u32("check_pkt_larger dst")?, "check_pkt_larger")?;
            if b.take_rest().iter().any(|&x| x != 0) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "check_pkt_larger: non-zero padding",
                );
            }
            if u32::from(ofs) >= field_bits(dst) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "check_pkt_larger: bit outside the field",
                );
            }
            Action::CheckPktLarger { pkt_len, dst, ofs }
        }
        s::SAMPLE | s::SAMPLE2 | s::SAMPLE3 => sample::decode_sample(b, sub, len)?,
        s::DEC_TTL_CNT_IDS => sample::decode_dec_ttl_cnt_ids(b)?,
        s::RESUBMIT_TABLE_CT => {
            fixed(16)?;
            let in_port = b.u16("resubmit in_port")?;
            let table = b.u8("resubmit table")?;
            if b.take_rest().iter().any(|&x| x != 0) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    "resubmit: non-zero padding",
                );
            }
            Action::ResubmitCt { in_port, table }
        }
        s::FIN_TIMEOUT => {
            fixed(16)?;
            Action::FinTimeout {
                idle_timeout: b.u16("fin_timeout idle_timeout")?,
                hard_timeout: b.u16("fin_timeout hard_timeout")?,
            }
        }
        s::MULTIPATH => {
            fixed(32)?;
            decode_multipath(b)?
        }
        s::BUNDLE | s::BUNDLE_LOAD => decode_bundle(b, len, sub == s::BUNDLE_LOAD)?,
        _ => {
            return err(
                ErrorCode::BadActionBadExpType,
                format!("unknown Nicira action subtype {sub}"),
            );
        }
    };
    Ok(a)
}

/// A destination subfield as Open vSwitch's `mf_check_dst` takes it: a known field
/// (`OFPBAC_BAD_SET_TYPE`), the bits inside it (`OFPBAC_BAD_SET_LEN`).
fn check_dst(h: OxmHeader, ofs: u16, n_bits: u16, what: &str) -> Result<(), OfError> {
    if u32::from(ofs) + u32::from(n_bits) > field_bits(h) {
        return err(
            ErrorCode::BadActionBadSetLen,
            format!("{what}: bits {ofs}+{n_bits} outside the destination field"),
        );
    }
    Ok(())
}

fn known_dst(raw: u32, what: &str) -> Result<OxmHeader, OfError> {
    let h = OxmHeader(raw);
    if h.field().is_none() {
        return err(
            ErrorCode::BadActionBadSetType,
            format!("{what}: unknown destination field {raw:#010x}"),
        );
    }
    Ok(h)
}

/// NXAST_MULTIPATH, checked as Open vSwitch's `decode_NXAST_RAW_MULTIPATH`.
fn decode_multipath(b: &mut Reader<'_>) -> Result<Action, OfError> {
    let fields = b.u16("multipath fields")?;
    let basis = b.u16("multipath basis")?;
    b.skip(2, "multipath pad")?;
    let algorithm = b.u16("multipath algorithm")?;
    let max_link = b.u16("multipath max_link")?;
    let arg = b.u32("multipath arg")?;
    b.skip(2, "multipath pad")?;
    let ofs_nbits = b.u16("multipath ofs_nbits")?;
    let dst = known_dst(b.u32("multipath dst")?, "multipath")?;
    let (ofs, n_bits) = (ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1);
    let n_links = u32::from(max_link) + 1;
    // log2 rounded up: the bits the largest link needs.
    let min_bits = 32 - (n_links - 1).leading_zeros();
    if fields > NX_HASH_FIELDS_MAX {
        return err(
            ErrorCode::BadActionBadArgument,
            format!("multipath: unsupported fields {fields}"),
        );
    }
    if algorithm > NX_MP_ALG_MAX {
        return err(
            ErrorCode::BadActionBadArgument,
            format!("multipath: unsupported algorithm {algorithm}"),
        );
    }
    if u32::from(n_bits) < min_bits {
        return err(
            ErrorCode::BadActionBadArgument,
            format!("multipath action requires at least {min_bits} bits for {n_links} links"),
        );
    }
    check_dst(dst, ofs, n_bits, "multipath")?;
    Ok(Action::Multipath(Multipath {
        fields,
        basis,
        algorithm,
        max_link,
        arg,
        dst,
        ofs,
        n_bits,
    }))
}

/// NXAST_BUNDLE / NXAST_BUNDLE_LOAD, checked as Open vSwitch's `decode_bundle` and
/// `bundle_check`.
fn decode_bundle(b: &mut Reader<'_>, len: usize, load: bool) -> Result<Action, OfError> {
    let algorithm = b.u16("bundle algorithm")?;
    let fields = b.u16("bundle fields")?;
    let basis = b.u16("bundle basis")?;
    let member_type = b.u32("bundle member_type")?;
    let n_members = usize::from(b.u16("bundle n_members")?);
    let ofs_nbits = b.u16("bundle ofs_nbits")?;
    let dst_raw = b.u32("bundle dst")?;
    let zero = b.bytes(4, "bundle zero")?;
    let bad_arg = |detail: String| err(ErrorCode::BadActionBadArgument, detail);
    let mut error = if fields > NX_HASH_FIELDS_MAX {
        bad_arg(format!("bundle: unsupported fields {fields}"))
    } else if n_members > NX_BUNDLE_MAX_MEMBERS {
        bad_arg("bundle: too many members".into())
    } else if algorithm > NX_BD_ALG_MAX {
        bad_arg(format!("bundle: unsupported algorithm {algorithm}"))
    } else if member_type != NX_BUNDLE_MEMBER_TYPE {
        bad_arg(format!("bundle: unsupported member type {member_type:#x}"))
    } else {
        Ok(())
    };
    if zero.iter().any(|&x| x != 0) {
        error = bad_arg("bundle: reserved field is nonzero".into());
    }
    let (ofs, n_bits) = (ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1);
    let dst = if load {
        let h = known_dst(dst_raw, "bundle_load")?;
        if n_bits < 16 {
            error = bad_arg("bundle_load action requires at least 16 bit destination.".into());
        }
        Some((h, ofs, n_bits))
    } else {
        if ofs_nbits != 0 || dst_raw != 0 {
            error = bad_arg("bundle action has nonzero reserved fields".into());
        }
        None
    };
    let space = len.saturating_sub(32);
    let mut members = Vec::new();
    if space < n_members * 2 {
        error = err(
            ErrorCode::BadActionBadLen,
            format!(
                "bundle: {space} bytes for members, {} bytes are required for {n_members} members",
                n_members * 2
            ),
        );
    } else {
        members.reserve(n_members);
        for _ in 0..n_members {
            members.push(b.u16("bundle member")?);
        }
    }
    error?;
    if let Some((h, ofs, n_bits)) = dst {
        check_dst(h, ofs, n_bits, "bundle_load")?;
    }
    for &m in &members {
        // `ofpact_check_output_port`: a port below 0xff00 or a reserved port; NONE is
        // allowed (never live), CONTROLLER is not (no max_len to give it).
        let ok = m < 0xff00 || (m >= 0xfff8 && m != 0xfffd);
        if !ok {
            return err(
                ErrorCode::BadActionBadOutPort,
                format!("bundle: invalid member {m:#x}"),
            );
        }
    }
    Ok(Action::Bundle(Bundle {
        algorithm,
        fields,
        basis,
        dst,
        members,
    }))
}

fn decode_ct(b: &mut Reader<'_>) -> Result<Action, OfError> {
    let flags = b.u16("ct flags")?;
    let zone_src_raw = b.u32("ct zone_src")?;
    let zone = b.u16("ct zone")?;
    let recirc_table = b.u8("ct recirc_table")?;
    b.skip(3, "ct pad")?;
    let alg = b.u16("ct alg")?;
    if flags & !(CT_COMMIT | CT_FORCE) != 0 {
        return err(
            ErrorCode::BadActionBadArgument,
            format!("ct: unknown flags {flags:#x}"),
        );
    }
    let zone_src = if zone_src_raw == 0 {
        None
    } else {
        Some(field_header(zone_src_raw, "ct zone")?)
    };
    let actions = decode_action_list(b.take_rest(), true)?;
    for a in &actions {
        if !matches!(
            a,
            Action::SetField(_)
                | Action::RegLoad { .. }
                | Action::RegLoad2(_)
                | Action::RegMove { .. }
                | Action::Nat(_)
        ) {
            return err(
                ErrorCode::BadActionBadArgument,
                "ct: only set_field/load/move/nat may be nested",
            );
        }
    }
    Ok(Action::Ct(CtAction {
        flags,
        zone_src,
        zone,
        recirc_table,
        alg,
        actions,
    }))
}

fn decode_learn(b: &mut Reader<'_>, learn2: bool) -> Result<Action, OfError> {
    let mut l = Learn {
        idle_timeout: b.u16("learn idle_timeout")?,
        hard_timeout: b.u16("learn hard_timeout")?,
        priority: b.u16("learn priority")?,
        cookie: b.u64("learn cookie")?,
        flags: b.u16("learn flags")?,
        table_id: b.u8("learn table_id")?,
        learn2,
        ..Learn::default()
    };
    b.skip(1, "learn pad")?;
    l.fin_idle_timeout = b.u16("learn fin_idle_timeout")?;
    l.fin_hard_timeout = b.u16("learn fin_hard_timeout")?;
    if l.table_id == 0xff {
        return err(ErrorCode::BadActionBadArgument, "learn: table 255");
    }
    if learn2 {
        // As Open vSwitch's decode_NXAST_RAW_LEARN2.
        l.limit = b.u32("learn2 limit")?;
        let ofs = b.u16("learn2 result_dst_ofs")?;
        if b.u16("learn2 pad")? != 0 {
            return err(ErrorCode::BadActionBadArgument, "learn2: pad must be zero");
        }
        if l.flags & LEARN_F_WRITE_RESULT != 0 {
            let header = field_header(b.u32("learn2 result_dst")?, "learn2 result_dst")?;
            if u32::from(ofs) >= field_bits(header) {
                return err(
                    ErrorCode::BadActionBadArgument,
                    format!("learn2: result_dst bit {ofs} beyond its field"),
                );
            }
            l.result_dst = Some((header, ofs));
        } else if ofs != 0 {
            return err(
                ErrorCode::BadActionBadArgument,
                "learn2: result_dst_ofs without NX_LEARN_F_WRITE_RESULT",
            );
        }
    } else if l.flags & LEARN_F_WRITE_RESULT != 0 {
        return err(
            ErrorCode::BadActionBadArgument,
            "learn: NX_LEARN_F_WRITE_RESULT needs NXAST_LEARN2",
        );
    }
    while b.remaining() >= 2 {
        let h = b.u16("learn spec header")?;
        if h == 0 {
            break;
        }
        let n_bits = h & 0x3ff;
        let src_imm = h & 0x2000 != 0;
        let dst_kind = (h >> 11) & 3;
        if h & 0xc400 != 0 || dst_kind == 3 || n_bits == 0 {
            return err(
                ErrorCode::BadActionBadArgument,
                format!("learn: bad spec header {h:#06x}"),
            );
        }
        let src = if src_imm {
            let n = 2 * usize::from(n_bits.div_ceil(16));
            LearnSrc::Immediate(b.bytes(n, "learn immediate")?.to_vec())
        } else {
            let header = field_header(b.u32("learn src field")?, "learn src")?;
            LearnSrc::Field {
                header,
                ofs: b.u16("learn src ofs")?,
            }
        };
        let dst = match dst_kind {
            0 | 1 => {
                let header = field_header(b.u32("learn dst field")?, "learn dst")?;
                let ofs = b.u16("learn dst ofs")?;
                if dst_kind == 0 {
                    LearnDst::Match { header, ofs }
                } else {
                    LearnDst::Load { header, ofs }
                }
            }
            _ => LearnDst::Output,
        };
        l.specs.push(LearnSpec { n_bits, src, dst });
    }
    if b.take_rest().iter().any(|&x| x != 0) {
        return err(
            ErrorCode::BadActionBadArgument,
            "learn: bytes after the end marker",
        );
    }
    Ok(Action::Learn(l))
}

fn encode_learn(l: &Learn, out: &mut Vec<u8>) {
    out.put_u16(l.idle_timeout);
    out.put_u16(l.hard_timeout);
    out.put_u16(l.priority);
    out.put_u64(l.cookie);
    out.put_u16(l.flags);
    out.put_u8(l.table_id);
    out.put_u8(0);
    out.put_u16(l.fin_idle_timeout);
    out.put_u16(l.fin_hard_timeout);
    if l.learn2 {
        out.put_u32(l.limit);
        out.put_u16(l.result_dst.map_or(0, |(_, ofs)| ofs));
        out.put_u16(0);
        if let Some((header, _)) = l.result_dst {
            out.put_u32(header.0);
        }
    }
    for s in &l.specs {
        let src_bit = if matches!(s.src, LearnSrc::Immediate(_)) {
            0x2000
        } else {
            0
        };
        let dst_bits = match s.dst {
            LearnDst::Match { .. } => 0,
            LearnDst::Load { .. } => 1 << 11,
            LearnDst::Output => 2 << 11,
        };
        out.put_u16(src_bit | dst_bits | (s.n_bits & 0x3ff));
        match &s.src {
            LearnSrc::Field { header, ofs } => {
                out.put_u32(header.0);
                out.put_u16(*ofs);
            }
            LearnSrc::Immediate(v) => out.extend_from_slice(v),
        }
        if let LearnDst::Match { header, ofs } | LearnDst::Load { header, ofs } = &s.dst {
            out.put_u32(header.0);
            out.put_u16(*ofs);
        }
    }
}

const NAT_RANGE_IPV4_MIN: u16 = 0x01;
const NAT_RANGE_IPV4_MAX: u16 = 0x02;
const NAT_RANGE_IPV6_MIN: u16 = 0x04;
const NAT_RANGE_IPV6_MAX: u16 = 0x08;
const NAT_RANGE_PROTO_MIN: u16 = 0x10;
const NAT_RANGE_PROTO_MAX: u16 = 0x20;

fn decode_nat(b: &mut Reader<'_>) -> Result<Action, OfError> {
    b.skip(2, "nat pad")?;
    let flags = b.u16("nat flags")?;
    let present = b.u16("nat range_present")?;
    if flags & NAT_SRC != 0 && flags & NAT_DST != 0 {
        return err(ErrorCode::BadActionBadArgument, "nat: both src and dst");
    }
    if present & !0x3f != 0 {
        return err(
            ErrorCode::BadActionBadArgument,
            format!("nat: unknown range bits {present:#x}"),
        );
    }
    let mut n = NatAction {
        flags,
        ..NatAction::default()
    };
    if present & NAT_RANGE_IPV4_MIN != 0 {
        n.ipv4_min = Some(b.u32("nat ipv4_min")?);
    }
    if present & NAT_RANGE_IPV4_MAX != 0 {
        n.ipv4_max = Some(b.u32("nat ipv4_max")?);
    }
    if present & NAT_RANGE_IPV6_MIN != 0 {
        n.ipv6_min = Some(b.array("nat ipv6_min")?);
    }
    if present & NAT_RANGE_IPV6_MAX != 0 {
        n.ipv6_max = Some(b.array("nat ipv6_max")?);
    }
    if present & NAT_RANGE_PROTO_MIN != 0 {
        n.proto_min = Some(b.u16("nat proto_min")?);
    }
    if present & NAT_RANGE_PROTO_MAX != 0 {
        n.proto_max = Some(b.u16("nat proto_max")?);
    }
    check_nat(&n)?;
    Ok(Action::Nat(n))
}

/// Open vSwitch's checks of a NAT action (`decode_NXAST_RAW_NAT`): flags and ranges the
/// datapath could not run are refused with the flow-mod, not turned into a drop of every packet
/// the flow matches (or silently narrowed).
fn check_nat(n: &NatAction) -> Result<(), OfError> {
    const KNOWN: u16 = NAT_SRC | NAT_DST | NAT_PERSISTENT | NAT_PROTO_HASH | NAT_PROTO_RANDOM;
    let bad = |m: String| err(ErrorCode::BadActionBadArgument, format!("nat: {m}"));
    if n.flags & !KNOWN != 0 {
        return bad(format!("unknown flags {:#x}", n.flags & !KNOWN));
    }
    if n.flags & NAT_PROTO_HASH != 0 && n.flags & NAT_PROTO_RANDOM != 0 {
        return bad("both hash and random port selection".into());
    }
    let v6 = |a: Option<[u8; 16]>| a.map(u128::from_be_bytes);
    let has_v4 = n.ipv4_min.is_some() || n.ipv4_max.is_some();
    let has_v6 = n.ipv6_min.is_some() || n.ipv6_max.is_some();
    if has_v4 && has_v6 {
        return bad("an IPv4 and an IPv6 range together".into());
    }
    for (what, min, max) in [
        (
            "ipv4",
            n.ipv4_min.map(u128::from),
            n.ipv4_max.map(u128::from),
        ),
        ("ipv6", v6(n.ipv6_min), v6(n.ipv6_max)),
        (
            "port",
            n.proto_min.map(u128::from),
            n.proto_max.map(u128::from),
        ),
    ] {
        match (min, max) {
            (None, Some(_)) => return bad(format!("{what} maximum without a minimum")),
            (Some(0), _) => return bad(format!("{what} minimum 0")),
            (Some(lo), Some(hi)) if hi < lo => {
                return bad(format!("{what} range ends below its start"));
            }
            _ => {}
        }
    }
    if n.proto_min.is_some() && !has_v4 && !has_v6 {
        return bad("a port range without an address range".into());
    }
    Ok(())
}

mod c2prop {
    pub const MAX_LEN: u16 = 0;
    pub const CONTROLLER_ID: u16 = 1;
    pub const REASON: u16 = 2;
    pub const USERDATA: u16 = 3;
    pub const PAUSE: u16 = 4;
    pub const METER_ID: u16 = 5;
}

fn decode_controller2(b: &mut Reader<'_>) -> Result<Action, OfError> {
    b.skip(6, "controller2 pad")?;
    let mut c = Controller2::default();
    for (ty, val) in decode_props(b.take_rest(), ErrorCode::BadActionBadLen)? {
        let mut v = Reader::new(val, ErrorCode::BadActionBadLen);
        match ty {
            c2prop::MAX_LEN => c.max_len = v.u16("controller2 max_len")?,
            c2prop::CONTROLLER_ID => c.controller_id = v.u16("controller2 id")?,
            c2prop::REASON => c.reason = v.u8("controller2 reason")?,
            c2prop::USERDATA => c.userdata = val.to_vec(),
            c2prop::PAUSE => c.pause = true,
            c2prop::METER_ID => c.meter_id = Some(v.u32("controller2 meter_id")?),
            _ => {
                return err(
                    ErrorCode::BadActionBadArgument,
                    format!("controller2: unknown property {ty}"),
                );
            }
        }
    }
    Ok(Action::Controller2(c))
}

/// Splits OpenFlow properties (type u16, length u16, value, padding to 8). For fixed-width
/// properties written with padding inside `length` (ovs's u16 form), the value is returned
/// with that padding; readers take only the bytes they need.
pub(crate) fn decode_props(bytes: &[u8], short: ErrorCode) -> Result<Vec<(u16, &[u8])>, OfError> {
    let mut r = Reader::new(bytes, short);
    let mut out = Vec::new();
    while !r.is_empty() {
        let ty = r.u16("property type")?;
        let len = usize::from(r.u16("property length")?);
        if len < 4 {
            return err(short, format!("property {ty} length {len} below 4"));
        }
        let val = r.bytes(len - 4, "property value")?;
        let pad = len.next_multiple_of(8) - len;
        r.skip(pad.min(r.remaining()), "property padding")?;
        out.push((ty, val));
    }
    Ok(out)
}

/// Writes one property with `value`, padded to 8 (length excludes the padding).
pub(crate) fn put_prop(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let start = out.len();
    out.put_u16(ty);
    out.put_u16((4 + value.len()) as u16);
    out.extend_from_slice(value);
    out.pad_to_8_from(start);
}

/// Starts an NX action header; returns the offset of the action for [`finish`].
fn nx_start(out: &mut Vec<u8>, sub: u16) -> usize {
    let start = out.len();
    out.put_u16(action_type::EXPERIMENTER);
    out.put_u16(0);
    out.put_u32(NX_VENDOR_ID);
    out.put_u16(sub);
    start
}

/// Pads the action started at `start` to 8 bytes and fills in its length.
fn finish(out: &mut Vec<u8>, start: usize) {
    out.pad_to_8_from(start);
    let len = (out.len() - start) as u16;
    out.patch_u16(start + 2, len);
}

fn std_start(out: &mut Vec<u8>, ty: u16) -> usize {
    let start = out.len();
    out.put_u16(ty);
    out.put_u16(0);
    start
}

impl Action {
    /// Appends the wire form of this action.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use action_type as t;
        use nx_subtype as s;
        let start;
        match self {
            Action::Output { port, max_len } => {
                start = std_start(out, t::OUTPUT);
                out.put_u32(*port);
                out.put_u16(*max_len);
                out.put_zeros(6);
            }
            Action::Group(g) => {
                start = std_start(out, t::GROUP);
                out.put_u32(*g);
            }
            Action::SetField(tlv) => {
                start = std_start(out, t::SET_FIELD);
                tlv.encode(out);
            }
            Action::PushVlan(tpid) => {
                start = std_start(out, t::PUSH_VLAN);
                out.put_u16(*tpid);
                out.put_zeros(2);
            }
            Action::PopVlan => {
                start = std_start(out, t::POP_VLAN);
                out.put_zeros(4);
            }
            Action::DecNwTtl => {
                start = std_start(out, t::DEC_NW_TTL);
                out.put_zeros(4);
            }
            Action::SetQueue(q) => {
                start = std_start(out, t::SET_QUEUE);
                out.put_u32(*q);
            }
            Action::SetNwTtl(ttl) => {
                start = std_start(out, t::SET_NW_TTL);
                out.put_u8(*ttl);
                out.put_zeros(3);
            }
            Action::OutputReg {
                src,
                ofs,
                n_bits,
                max_len,
            } => {
                start = nx_start(out, s::OUTPUT_REG);
                out.put_u16((ofs << 6) | (n_bits.saturating_sub(1) & 0x3f));
                out.put_u32(src.0);
                out.put_u16(*max_len);
                out.put_zeros(6);
            }
            Action::OutputTrunc { port, max_len } => {
                start = nx_start(out, s::OUTPUT_TRUNC);
                out.put_u16(*port);
                out.put_u32(*max_len);
            }
            Action::Exit => {
                start = nx_start(out, s::EXIT);
            }
            Action::Clone(inner) => {
                start = nx_start(out, s::CLONE);
                out.put_zeros(6);
                encode_actions(inner, out);
            }
            Action::Multipath(m) => {
                start = nx_start(out, s::MULTIPATH);
                out.put_u16(m.fields);
                out.put_u16(m.basis);
                out.put_zeros(2);
                out.put_u16(m.algorithm);
                out.put_u16(m.max_link);
                out.put_u32(m.arg);
                out.put_zeros(2);
                out.put_u16((m.ofs << 6) | (m.n_bits.saturating_sub(1) & 0x3f));
                out.put_u32(m.dst.0);
            }
            Action::Bundle(bd) => {
                start = nx_start(
                    out,
                    if bd.dst.is_some() {
                        s::BUNDLE_LOAD
                    } else {
                        s::BUNDLE
                    },
                );
                out.put_u16(bd.algorithm);
                out.put_u16(bd.fields);
                out.put_u16(bd.basis);
                out.put_u32(NX_BUNDLE_MEMBER_TYPE);
                out.put_u16(bd.members.len() as u16);
                match bd.dst {
                    Some((h, ofs, n_bits)) => {
                        out.put_u16((ofs << 6) | (n_bits.saturating_sub(1) & 0x3f));
                        out.put_u32(h.0);
                    }
                    None => out.put_zeros(6),
                }
                out.put_zeros(4);
                for m in &bd.members {
                    out.put_u16(*m);
                }
            }
            Action::CheckPktLarger { pkt_len, dst, ofs } => {
                start = nx_start(out, s::CHECK_PKT_LARGER);
                out.put_u16(*pkt_len);
                out.put_u16(*ofs);
                out.put_u32(dst.0);
            }
            Action::Resubmit { in_port, table } => {
                start = nx_start(
                    out,
                    if table.is_some() {
                        s::RESUBMIT_TABLE
                    } else {
                        s::RESUBMIT
                    },
                );
                out.put_u16(*in_port);
                out.put_u8(table.unwrap_or(0));
                out.put_zeros(3);
            }
            Action::RegLoad {
                dst,
                ofs,
                n_bits,
                value,
            } => {
                start = nx_start(out, s::REG_LOAD);
                out.put_u16((ofs << 6) | (n_bits.saturating_sub(1) & 0x3f));
                out.put_u32(dst.0);
                out.put_u64(*value);
            }
            Action::RegLoad2(tlv) => {
                start = nx_start(out, s::REG_LOAD2);
                tlv.encode(out);
            }
            Action::Stack {
                pop,
                field,
                ofs,
                n_bits,
            } => {
                start = nx_start(out, if *pop { s::STACK_POP } else { s::STACK_PUSH });
                out.put_u16(*ofs);
                out.put_u32(field.0);
                out.put_u16(*n_bits);
                out.put_zeros(6);
            }
            Action::RegMove {
                src,
                dst,
                src_ofs,
                dst_ofs,
                n_bits,
            } => {
                start = nx_start(out, s::REG_MOVE);
                out.put_u16(*n_bits);
                out.put_u16(*src_ofs);
                out.put_u16(*dst_ofs);
                out.put_u32(src.0);
                out.put_u32(dst.0);
            }
            Action::Note(bytes) => {
                start = nx_start(out, s::NOTE);
                out.extend_from_slice(bytes);
            }
            Action::Ct(ct) => {
                start = nx_start(out, s::CT);
                out.put_u16(ct.flags);
                out.put_u32(ct.zone_src.map_or(0, |h| h.0));
                out.put_u16(ct.zone);
                out.put_u8(ct.recirc_table);
                out.put_zeros(3);
                out.put_u16(ct.alg);
                encode_actions(&ct.actions, out);
            }
            Action::Nat(n) => {
                start = nx_start(out, s::NAT);
                out.put_zeros(2);
                out.put_u16(n.flags);
                let present = [
                    (n.ipv4_min.is_some(), NAT_RANGE_IPV4_MIN),
                    (n.ipv4_max.is_some(), NAT_RANGE_IPV4_MAX),
                    (n.ipv6_min.is_some(), NAT_RANGE_IPV6_MIN),
                    (n.ipv6_max.is_some(), NAT_RANGE_IPV6_MAX),
                    (n.proto_min.is_some(), NAT_RANGE_PROTO_MIN),
                    (n.proto_max.is_some(), NAT_RANGE_PROTO_MAX),
                ]
                .iter()
                .filter(|(p, _)| *p)
                .fold(0, |acc, (_, bit)| acc | bit);
                out.put_u16(present);
                if let Some(v) = n.ipv4_min {
                    out.put_u32(v);
                }
                if let Some(v) = n.ipv4_max {
                    out.put_u32(v);
                }
                if let Some(v) = n.ipv6_min {
                    out.extend_from_slice(&v);
                }
                if let Some(v) = n.ipv6_max {
                    out.extend_from_slice(&v);
                }
                if let Some(v) = n.proto_min {
                    out.put_u16(v);
                }
                if let Some(v) = n.proto_max {
                    out.put_u16(v);
                }
            }
            Action::CtClear => {
                start = nx_start(out, s::CT_CLEAR);
            }
            Action::NxDecTtl => {
                start = nx_start(out, s::DEC_TTL);
            }
            Action::Controller {
                max_len,
                controller_id,
                reason,
            } => {
                start = nx_start(out, s::CONTROLLER);
                out.put_u16(*max_len);
                out.put_u16(*controller_id);
                out.put_u8(*reason);
            }
            Action::Controller2(c) => {
                start = nx_start(out, s::CONTROLLER2);
                out.put_zeros(6);
                // ovs writes 16/32-bit properties with their padding counted in the length.
                if c.max_len != CONTROLLER_NO_BUFFER {
                    put_prop(
                        out,
                        c2prop::MAX_LEN,
                        &[(c.max_len >> 8) as u8, c.max_len as u8, 0, 0],
                    );
                }
                if c.controller_id != 0 {
                    let id = c.controller_id;
                    put_prop(
                        out,
                        c2prop::CONTROLLER_ID,
                        &[(id >> 8) as u8, id as u8, 0, 0],
                    );
                }
                if c.reason != 1 {
                    put_prop(out, c2prop::REASON, &[c.reason]);
                }
                if !c.userdata.is_empty() {
                    put_prop(out, c2prop::USERDATA, &c.userdata);
                }
                if c.pause {
                    put_prop(out, c2prop::PAUSE, &[]);
                }
                if let Some(m) = c.meter_id {
                    put_prop(out, c2prop::METER_ID, &m.to_be_bytes());
                }
            }
            Action::Learn(l) => {
                start = nx_start(out, if l.learn2 { s::LEARN2 } else { s::LEARN });
                encode_learn(l, out);
            }
            Action::FinTimeout {
                idle_timeout,
                hard_timeout,
            } => {
                start = nx_start(out, s::FIN_TIMEOUT);
                out.put_u16(*idle_timeout);
                out.put_u16(*hard_timeout);
            }
            Action::Sample(x) => {
                start = nx_start(out, x.subtype);
                sample::encode_sample(x, out);
            }
            Action::DecTtlCntIds(ids) => {
                start = nx_start(out, s::DEC_TTL_CNT_IDS);
                sample::encode_dec_ttl_cnt_ids(ids, out);
            }
            Action::ResubmitCt { in_port, table } => {
                start = nx_start(out, s::RESUBMIT_TABLE_CT);
                out.put_u16(*in_port);
                out.put_u8(*table);
                out.put_zeros(3);
            }
            Action::Conjunction {
                id,
                clause,
                n_clauses,
            } => {
                start = nx_start(out, s::CONJUNCTION);
                out.put_u8(*clause);
                out.put_u8(*n_clauses);
                out.put_u32(*id);
            }
        }
        finish(out, start);
    }
}
