//! OXM/NXM match TLVs, `ofp_match`, and the mapping to the shared [`FlowKey`].
//!
//! A decoded [`Match`] keeps the TLVs in wire order with their wire class, so re-encoding
//! reproduces the request byte for byte. [`Match::to_flow`] turns it into the value+mask
//! [`FlowKey`] pair the classifier uses (after duplicate, mask and prerequisite checks), and
//! [`Match::from_flow`] goes back in the canonical order `ovs-vswitchd`/`ovs-ofctl` use, which
//! is what flow-stats replies and the CLI must send.

use encap::flowkey::FlowKey;

use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};

/// OXM classes this codec understands.
pub mod class {
    /// Nicira NXM_OF_* (OpenFlow 1.0 fields in NXM form).
    pub const NXM0: u16 = 0x0000;
    /// Nicira NXM_NX_* extensions.
    pub const NXM1: u16 = 0x0001;
    /// OpenFlow basic.
    pub const OPENFLOW_BASIC: u16 = 0x8000;
    /// Experimenter OXM (8-byte header); not supported.
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// A match field, independent of the class used to carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    InPort,
    Metadata,
    EthDst,
    EthSrc,
    EthType,
    /// OXM VLAN_VID: 12-bit VID plus the 0x1000 "present" bit.
    VlanVid,
    VlanPcp,
    /// NXM_OF_VLAN_TCI: the whole TCI with the CFI bit meaning "present".
    VlanTci,
    IpDscp,
    IpEcn,
    IpProto,
    Ipv4Src,
    Ipv4Dst,
    TcpSrc,
    TcpDst,
    UdpSrc,
    UdpDst,
    SctpSrc,
    SctpDst,
    Icmpv4Type,
    Icmpv4Code,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Flabel,
    Icmpv6Type,
    Icmpv6Code,
    TunnelId,
    /// NXM_NX_REG0..7.
    Reg(u8),
    TunSrc,
    TunDst,
    CtState,
    CtZone,
    CtMark,
    TcpFlags,
    IpFrag,
    NwTtl,
}

/// One row of the field table: how a field appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub class: u16,
    pub id: u8,
    /// Value width in bytes.
    pub width: u8,
    pub field: Field,
    pub maskable: bool,
}

const fn spec(class: u16, id: u8, width: u8, field: Field, maskable: bool) -> FieldSpec {
    FieldSpec {
        class,
        id,
        width,
        field,
        maskable,
    }
}

use class::{NXM0, NXM1, OPENFLOW_BASIC as OXM};

/// Every field header this codec decodes. The first entry for a [`Field`] is the one used
/// when encoding from a [`FlowKey`] (what ovs-ofctl sends in OpenFlow 1.3).
pub const FIELDS: &[FieldSpec] = &[
    spec(OXM, 0, 4, Field::InPort, false),
    spec(OXM, 2, 8, Field::Metadata, true),
    spec(OXM, 3, 6, Field::EthDst, true),
    spec(OXM, 4, 6, Field::EthSrc, true),
    spec(OXM, 5, 2, Field::EthType, false),
    spec(OXM, 6, 2, Field::VlanVid, true),
    spec(OXM, 7, 1, Field::VlanPcp, false),
    spec(OXM, 8, 1, Field::IpDscp, false),
    spec(OXM, 9, 1, Field::IpEcn, false),
    spec(OXM, 10, 1, Field::IpProto, false),
    spec(OXM, 11, 4, Field::Ipv4Src, true),
    spec(OXM, 12, 4, Field::Ipv4Dst, true),
    spec(OXM, 13, 2, Field::TcpSrc, true),
    spec(OXM, 14, 2, Field::TcpDst, true),
    spec(OXM, 15, 2, Field::UdpSrc, true),
    spec(OXM, 16, 2, Field::UdpDst, true),
    spec(OXM, 17, 2, Field::SctpSrc, true),
    spec(OXM, 18, 2, Field::SctpDst, true),
    spec(OXM, 19, 1, Field::Icmpv4Type, false),
    spec(OXM, 20, 1, Field::Icmpv4Code, false),
    spec(OXM, 21, 2, Field::ArpOp, false),
    spec(OXM, 22, 4, Field::ArpSpa, true),
    spec(OXM, 23, 4, Field::ArpTpa, true),
    spec(OXM, 24, 6, Field::ArpSha, true),
    spec(OXM, 25, 6, Field::ArpTha, true),
    spec(OXM, 26, 16, Field::Ipv6Src, true),
    spec(OXM, 27, 16, Field::Ipv6Dst, true),
    spec(OXM, 28, 4, Field::Ipv6Flabel, true),
    spec(OXM, 29, 1, Field::Icmpv6Type, false),
    spec(OXM, 30, 1, Field::Icmpv6Code, false),
    spec(OXM, 38, 8, Field::TunnelId, true),
    spec(NXM1, 0, 4, Field::Reg(0), true),
    spec(NXM1, 1, 4, Field::Reg(1), true),
    spec(NXM1, 2, 4, Field::Reg(2), true),
    spec(NXM1, 3, 4, Field::Reg(3), true),
    spec(NXM1, 4, 4, Field::Reg(4), true),
    spec(NXM1, 5, 4, Field::Reg(5), true),
    spec(NXM1, 6, 4, Field::Reg(6), true),
    spec(NXM1, 7, 4, Field::Reg(7), true),
    spec(NXM1, 31, 4, Field::TunSrc, true),
    spec(NXM1, 32, 4, Field::TunDst, true),
    spec(NXM1, 105, 4, Field::CtState, true),
    spec(NXM1, 106, 2, Field::CtZone, false),
    spec(NXM1, 107, 4, Field::CtMark, true),
    spec(NXM1, 34, 2, Field::TcpFlags, true),
    spec(NXM1, 26, 1, Field::IpFrag, true),
    spec(NXM1, 29, 1, Field::NwTtl, false),
    // Alternative (NXM) spellings of fields above: decoded, re-encoded as received.
    spec(NXM1, 16, 8, Field::TunnelId, true),
    spec(NXM1, 17, 6, Field::ArpSha, true),
    spec(NXM1, 18, 6, Field::ArpTha, true),
    spec(NXM1, 19, 16, Field::Ipv6Src, true),
    spec(NXM1, 20, 16, Field::Ipv6Dst, true),
    spec(NXM1, 21, 1, Field::Icmpv6Type, false),
    spec(NXM1, 22, 1, Field::Icmpv6Code, false),
    spec(NXM1, 27, 4, Field::Ipv6Flabel, true),
    spec(NXM1, 28, 1, Field::IpEcn, false),
    spec(NXM0, 0, 2, Field::InPort, false),
    spec(NXM0, 1, 6, Field::EthDst, true),
    spec(NXM0, 2, 6, Field::EthSrc, true),
    spec(NXM0, 3, 2, Field::EthType, false),
    spec(NXM0, 4, 2, Field::VlanTci, true),
    spec(NXM0, 6, 1, Field::IpProto, false),
    spec(NXM0, 7, 4, Field::Ipv4Src, true),
    spec(NXM0, 8, 4, Field::Ipv4Dst, true),
    spec(NXM0, 9, 2, Field::TcpSrc, true),
    spec(NXM0, 10, 2, Field::TcpDst, true),
    spec(NXM0, 11, 2, Field::UdpSrc, true),
    spec(NXM0, 12, 2, Field::UdpDst, true),
    spec(NXM0, 13, 1, Field::Icmpv4Type, false),
    spec(NXM0, 14, 1, Field::Icmpv4Code, false),
    spec(NXM0, 15, 2, Field::ArpOp, false),
    spec(NXM0, 16, 4, Field::ArpSpa, true),
    spec(NXM0, 17, 4, Field::ArpTpa, true),
];

impl Field {
    /// The preferred (OpenFlow 1.3 / ovs-ofctl) wire spelling of this field.
    pub fn spec(self) -> FieldSpec {
        // An index built once: this runs several times per match field encoded or decoded.
        static FIRST: std::sync::OnceLock<[Option<FieldSpec>; FIELD_SLOTS]> =
            std::sync::OnceLock::new();
        let first = FIRST.get_or_init(|| {
            let mut t = [None; FIELD_SLOTS];
            for s in FIELDS {
                if let Some(i) = s.field.slot() {
                    t[i].get_or_insert(*s);
                }
            }
            t
        });
        self.slot()
            .and_then(|i| first[i])
            .or_else(|| FIELDS.iter().copied().find(|s| s.field == self))
            .unwrap_or(FIELDS[0])
    }

    /// A dense index for the lookup table (`None` for registers beyond reg7).
    fn slot(self) -> Option<usize> {
        Some(match self {
            Field::InPort => 0,
            Field::Metadata => 1,
            Field::EthDst => 2,
            Field::EthSrc => 3,
            Field::EthType => 4,
            Field::VlanVid => 5,
            Field::VlanPcp => 6,
            Field::VlanTci => 7,
            Field::IpDscp => 8,
            Field::IpEcn => 9,
            Field::IpProto => 10,
            Field::Ipv4Src => 11,
            Field::Ipv4Dst => 12,
            Field::TcpSrc => 13,
            Field::TcpDst => 14,
            Field::UdpSrc => 15,
            Field::UdpDst => 16,
            Field::SctpSrc => 17,
            Field::SctpDst => 18,
            Field::Icmpv4Type => 19,
            Field::Icmpv4Code => 20,
            Field::ArpOp => 21,
            Field::ArpSpa => 22,
            Field::ArpTpa => 23,
            Field::ArpSha => 24,
            Field::ArpTha => 25,
            Field::Ipv6Src => 26,
            Field::Ipv6Dst => 27,
            Field::Ipv6Flabel => 28,
            Field::Icmpv6Type => 29,
            Field::Icmpv6Code => 30,
            Field::TunnelId => 31,
            Field::TunSrc => 32,
            Field::TunDst => 33,
            Field::CtState => 34,
            Field::CtZone => 35,
            Field::CtMark => 36,
            Field::TcpFlags => 37,
            Field::IpFrag => 38,
            Field::NwTtl => 39,
            Field::Reg(n) if usize::from(n) < 8 => 40 + usize::from(n),
            Field::Reg(_) => return None,
        })
    }

    /// Bits of the wire value that carry meaning; a mask equal to this is an exact match.
    pub fn full_mask(self) -> u128 {
        match self {
            Field::VlanVid => 0x1fff,
            Field::VlanPcp => 0x07,
            Field::IpDscp => 0x3f,
            Field::IpEcn => 0x03,
            Field::Ipv6Flabel => 0x000f_ffff,
            Field::CtState => 0xff,
            Field::TcpFlags => 0x0fff,
            Field::IpFrag => 0x03,
            _ => width_mask(self.spec().width),
        }
    }
}

/// Size of [`Field::spec`]'s table: the unit variants, then reg0..reg7.
const FIELD_SLOTS: usize = 40 + 8;

/// All-ones value of `width` bytes.
pub fn width_mask(width: u8) -> u128 {
    if width >= 16 {
        u128::MAX
    } else {
        (1u128 << (u32::from(width) * 8)) - 1
    }
}

/// Looks a wire header up in [`FIELDS`].
pub fn lookup(class: u16, id: u8) -> Option<FieldSpec> {
    FIELDS
        .iter()
        .copied()
        .find(|s| s.class == class && s.id == id)
}

/// A 32-bit OXM/NXM header as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OxmHeader(pub u32);

impl OxmHeader {
    pub fn new(class: u16, id: u8, hasmask: bool, len: u8) -> OxmHeader {
        OxmHeader(
            (u32::from(class) << 16)
                | (u32::from(id) << 9)
                | (u32::from(hasmask) << 8)
                | u32::from(len),
        )
    }
    pub fn class(self) -> u16 {
        (self.0 >> 16) as u16
    }
    pub fn id(self) -> u8 {
        ((self.0 >> 9) & 0x7f) as u8
    }
    pub fn hasmask(self) -> bool {
        self.0 & 0x100 != 0
    }
    /// Payload length (value, plus mask when `hasmask`).
    pub fn payload_len(self) -> u8 {
        self.0 as u8
    }
    /// The header of the same field, without the mask bit and with the unmasked length
    /// (the form NXAST_REG_LOAD/REG_MOVE name fields by).
    pub fn spec(self) -> Option<FieldSpec> {
        lookup(self.class(), self.id())
    }
}

/// One match (or set-field) TLV: a field, its value and an optional mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OxmTlv {
    /// Which wire spelling carried it (class + id + width).
    pub spec: FieldSpec,
    /// Big-endian value, right-aligned.
    pub value: u128,
    /// `None` = exact match.
    pub mask: Option<u128>,
}

impl OxmTlv {
    /// An exact TLV in the preferred spelling of `field`.
    pub fn exact(field: Field, value: u128) -> OxmTlv {
        OxmTlv {
            spec: field.spec(),
            value,
            mask: None,
        }
    }

    pub fn masked(field: Field, value: u128, mask: u128) -> OxmTlv {
        OxmTlv {
            spec: field.spec(),
            value,
            mask: Some(mask),
        }
    }

    pub fn field(&self) -> Field {
        self.spec.field
    }

    /// Size on the wire (header + value + mask).
    pub fn wire_len(&self) -> usize {
        let w = usize::from(self.spec.width);
        4 + if self.mask.is_some() { 2 * w } else { w }
    }

    pub fn header(&self) -> OxmHeader {
        let w = self.spec.width;
        let len = if self.mask.is_some() { 2 * w } else { w };
        OxmHeader::new(self.spec.class, self.spec.id, self.mask.is_some(), len)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.header().0);
        put_be(out, self.value, self.spec.width);
        if let Some(m) = self.mask {
            put_be(out, m, self.spec.width);
        }
    }

    /// Decodes one TLV; checks the header, the length, mask bits and value ranges.
    pub fn decode(r: &mut Reader<'_>) -> Result<OxmTlv, OfError> {
        let header = OxmHeader(r.u32("oxm header")?);
        if header.class() == class::EXPERIMENTER {
            return err(
                ErrorCode::BadMatchBadField,
                "experimenter OXM fields are not supported",
            );
        }
        let Some(spec) = header.spec() else {
            return err(
                ErrorCode::BadMatchBadField,
                format!(
                    "unknown match field class {:#06x} field {}",
                    header.class(),
                    header.id()
                ),
            );
        };
        let w = spec.width;
        let want = if header.hasmask() { 2 * w } else { w };
        if header.payload_len() != want {
            return err(
                ErrorCode::BadMatchBadLen,
                format!(
                    "{:?}: payload length {} should be {}",
                    spec.field,
                    header.payload_len(),
                    want
                ),
            );
        }
        let value = get_be(r.bytes(usize::from(w), "oxm value")?);
        let mask = if header.hasmask() {
            if !spec.maskable {
                return err(
                    ErrorCode::BadMatchBadMask,
                    format!("{:?} cannot be masked", spec.field),
                );
            }
            Some(get_be(r.bytes(usize::from(w), "oxm mask")?))
        } else {
            None
        };
        let tlv = OxmTlv { spec, value, mask };
        tlv.check_value()?;
        Ok(tlv)
    }

    fn check_value(&self) -> Result<(), OfError> {
        let f = self.field();
        let full = f.full_mask();
        if self.value & !full != 0 {
            return err(
                ErrorCode::BadMatchBadValue,
                format!(
                    "{f:?}: value {:#x} has bits outside {:#x}",
                    self.value, full
                ),
            );
        }
        if let Some(m) = self.mask
            && self.value & !m != 0
        {
            return err(
                ErrorCode::BadMatchBadWildcards,
                format!(
                    "{f:?}: value {:#x} has bits set outside mask {m:#x}",
                    self.value
                ),
            );
        }
        Ok(())
    }

    /// The effective mask (all meaningful bits when exact).
    pub fn effective_mask(&self) -> u128 {
        self.mask.unwrap_or_else(|| self.field().full_mask()) & self.field().full_mask()
    }
}

fn put_be(out: &mut Vec<u8>, v: u128, width: u8) {
    let b = v.to_be_bytes();
    out.extend_from_slice(&b[16 - usize::from(width)..]);
}

fn get_be(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x))
}

/// `ofp_match` type values.
pub const OFPMT_STANDARD: u16 = 0;
pub const OFPMT_OXM: u16 = 1;

/// An OpenFlow 1.3 `ofp_match` (OXM type): the TLVs in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    pub fields: Vec<OxmTlv>,
}

impl Match {
    /// The match that matches everything.
    pub fn any() -> Match {
        Match::default()
    }

    /// Size of the encoded `ofp_match` including its padding.
    pub fn wire_len(&self) -> usize {
        (4 + self.oxm_len()).next_multiple_of(8)
    }

    fn oxm_len(&self) -> usize {
        self.fields.iter().map(OxmTlv::wire_len).sum()
    }

    /// Encodes `ofp_match` (header, TLVs, zero padding to 8).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(OFPMT_OXM);
        out.put_u16((4 + self.oxm_len()) as u16);
        for f in &self.fields {
            f.encode(out);
        }
        out.pad_to_8_from(start);
    }

    /// Decodes `ofp_match` and its padding from `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Match, OfError> {
        let mut hr = Reader::new(r.rest(), ErrorCode::BadMatchBadLen);
        let ty = hr.u16("ofp_match type")?;
        let len = usize::from(hr.u16("ofp_match length")?);
        if ty != OFPMT_OXM {
            return err(
                ErrorCode::BadMatchBadType,
                format!("ofp_match type {ty} is not OXM (1)"),
            );
        }
        if len < 4 {
            return err(
                ErrorCode::BadMatchBadLen,
                format!("ofp_match length {len} below 4"),
            );
        }
        let padded = len.next_multiple_of(8);
        if r.remaining() < padded {
            return err(
                ErrorCode::BadMatchBadLen,
                format!(
                    "ofp_match length {len} (padded {padded}) exceeds the {} bytes left",
                    r.remaining()
                ),
            );
        }
        let all = r.bytes(padded, "ofp_match")?;
        let m = Match {
            fields: decode_oxm_list(&all[4..len])?,
        };
        m.validate()?;
        Ok(m)
    }

    /// The first TLV for `field`, if any.
    pub fn get(&self, field: Field) -> Option<&OxmTlv> {
        self.fields.iter().find(|t| t.field() == field)
    }

    /// Checks duplicates and prerequisites (OpenFlow 1.3 §7.2.3.6).
    pub fn validate(&self) -> Result<(), OfError> {
        for (i, t) in self.fields.iter().enumerate() {
            if self.fields[..i].iter().any(|o| o.field() == t.field()) {
                return err(
                    ErrorCode::BadMatchDupField,
                    format!("{:?} appears twice", t.field()),
                );
            }
        }
        for t in &self.fields {
            self.check_prereq(t.field())?;
        }
        Ok(())
    }

    fn exact_value(&self, field: Field) -> Option<u128> {
        self.get(field)
            .filter(|t| t.effective_mask() == field.full_mask())
            .map(|t| t.value)
    }

    fn check_prereq(&self, field: Field) -> Result<(), OfError> {
        use Field::*;
        let eth = self.exact_value(EthType);
        let proto = self.exact_value(IpProto);
        let is_ip4 = eth == Some(0x0800);
        let is_ip6 = eth == Some(0x86dd);
        let ok = match field {
            VlanPcp => self
                .get(VlanVid)
                .is_some_and(|t| t.value & 0x1000 != 0 && t.effective_mask() & 0x1000 != 0),
            IpDscp | IpEcn | IpProto | NwTtl | IpFrag => is_ip4 || is_ip6,
            Ipv4Src | Ipv4Dst => is_ip4,
            Ipv6Src | Ipv6Dst | Ipv6Flabel => is_ip6,
            ArpOp | ArpSpa | ArpTpa | ArpSha | ArpTha => eth == Some(0x0806) || eth == Some(0x8035),
            TcpSrc | TcpDst | TcpFlags => (is_ip4 || is_ip6) && proto == Some(6),
            UdpSrc | UdpDst => (is_ip4 || is_ip6) && proto == Some(17),
            SctpSrc | SctpDst => (is_ip4 || is_ip6) && proto == Some(132),
            Icmpv4Type | Icmpv4Code => is_ip4 && proto == Some(1),
            Icmpv6Type | Icmpv6Code => is_ip6 && proto == Some(58),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            err(
                ErrorCode::BadMatchBadPrereq,
                format!("{field:?} is used without its prerequisites"),
            )
        }
    }

    /// Validates and converts to the classifier's `(value, mask)` pair.
    pub fn to_flow(&self) -> Result<(FlowKey, FlowKey), OfError> {
        self.validate()?;
        let mut value = FlowKey::default();
        let mut mask = FlowKey::default();
        for t in &self.fields {
            let m = t.effective_mask();
            let (v, m) = if t.field() == Field::InPort && t.spec.class == NXM0 {
                (of10_port_to_of13(t.value as u16).into(), width_mask(4))
            } else {
                (t.value & m, m)
            };
            key_set(t.field(), &mut value, v);
            key_set(t.field(), &mut mask, m);
        }
        Ok((value, mask))
    }

    /// Builds the canonical OpenFlow 1.3 match for a classifier `(value, mask)` pair, in the
    /// order ovs-vswitchd and ovs-ofctl emit fields.
    pub fn from_flow(value: &FlowKey, mask: &FlowKey) -> Match {
        use Field::*;
        let mut out = Match::default();
        let mut put = |f: Field| {
            // Most fields are wildcarded: skip them before looking the field up.
            let raw = key_get(f, mask);
            if raw == 0 {
                return;
            }
            let full = f.full_mask();
            let m = raw & full;
            if m == 0 {
                return;
            }
            let v = key_get(f, value) & m;
            out.fields.push(if m == full {
                OxmTlv::exact(f, v)
            } else {
                OxmTlv::masked(f, v, m)
            });
        };
        put(InPort);
        put(EthSrc);
        put(EthDst);
        put(EthType);
        put(VlanVid);
        if value.vlan_tci & 0x1000 != 0 {
            put(VlanPcp);
        }
        let eth = value.eth_type & mask.eth_type;
        if eth == 0x0800 || eth == 0x86dd {
            if eth == 0x0800 {
                put(Ipv4Src);
                put(Ipv4Dst);
            } else {
                put(Ipv6Src);
                put(Ipv6Dst);
            }
            put(IpFrag);
            put(IpDscp);
            put(IpEcn);
            put(NwTtl);
            if eth == 0x86dd {
                put(Ipv6Flabel);
            }
            if mask.nw_proto != 0 {
                put(IpProto);
                match value.nw_proto {
                    6 => {
                        put(TcpSrc);
                        put(TcpDst);
                        put(TcpFlags);
                    }
                    17 => {
                        put(UdpSrc);
                        put(UdpDst);
                    }
                    132 => {
                        put(SctpSrc);
                        put(SctpDst);
                    }
                    1 if eth == 0x0800 => {
                        put(Icmpv4Type);
                        put(Icmpv4Code);
                    }
                    58 if eth == 0x86dd => {
                        put(Icmpv6Type);
                        put(Icmpv6Code);
                    }
                    _ => {}
                }
            }
        } else if eth == 0x0806 || eth == 0x8035 {
            put(ArpOp);
            put(ArpSpa);
            put(ArpTpa);
            put(ArpSha);
            put(ArpTha);
        }
        put(TunnelId);
        put(TunSrc);
        put(TunDst);
        for i in 0..8 {
            put(Reg(i));
        }
        put(CtState);
        put(CtZone);
        put(CtMark);
        put(Metadata);
        out
    }
}

/// Decodes back-to-back OXM TLVs filling all of `bytes`.
pub fn decode_oxm_list(bytes: &[u8]) -> Result<Vec<OxmTlv>, OfError> {
    let mut r = Reader::new(bytes, ErrorCode::BadMatchBadLen);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(OxmTlv::decode(&mut r)?);
    }
    Ok(out)
}

/// OpenFlow 1.0 16-bit port numbers above 0xff00 are the reserved ports; in 1.3 they are
/// 0xffffff00 and up.
pub fn of10_port_to_of13(p: u16) -> u32 {
    if p >= 0xff00 {
        u32::from(p) | 0xffff_0000
    } else {
        u32::from(p)
    }
}

fn mac_to_u128(m: &[u8; 6]) -> u128 {
    get_be(m)
}

fn u128_to_mac(v: u128) -> [u8; 6] {
    let b = v.to_be_bytes();
    let mut out = [0u8; 6];
    out.copy_from_slice(&b[10..]);
    out
}

/// Reads `field` from a key in wire units (right-aligned).
pub fn key_get(field: Field, k: &FlowKey) -> u128 {
    use Field::*;
    match field {
        InPort => k.in_port.into(),
        Metadata => k.metadata.into(),
        EthDst => mac_to_u128(&k.eth_dst),
        EthSrc => mac_to_u128(&k.eth_src),
        EthType => k.eth_type.into(),
        VlanVid => (k.vlan_tci & 0x1fff).into(),
        VlanPcp => (k.vlan_tci >> 13).into(),
        VlanTci => k.vlan_tci.into(),
        IpDscp => (k.nw_tos >> 2).into(),
        IpEcn => (k.nw_tos & 3).into(),
        IpProto => k.nw_proto.into(),
        Ipv4Src => k.nw_src.into(),
        Ipv4Dst => k.nw_dst.into(),
        TcpSrc | UdpSrc | SctpSrc => k.tp_src.into(),
        TcpDst | UdpDst | SctpDst => k.tp_dst.into(),
        Icmpv4Type | Icmpv6Type => k.icmp_type.into(),
        Icmpv4Code | Icmpv6Code => k.icmp_code.into(),
        ArpOp => k.arp_op.into(),
        ArpSpa => k.arp_spa.into(),
        ArpTpa => k.arp_tpa.into(),
        ArpSha => mac_to_u128(&k.arp_sha),
        ArpTha => mac_to_u128(&k.arp_tha),
        Ipv6Src => u128::from_be_bytes(k.ipv6_src),
        Ipv6Dst => u128::from_be_bytes(k.ipv6_dst),
        Ipv6Flabel => k.ipv6_label.into(),
        TunnelId => k.tun_id.into(),
        Reg(i) => k.regs[usize::from(i & 7)].into(),
        TunSrc => k.tun_src.into(),
        TunDst => k.tun_dst.into(),
        CtState => k.ct_state.into(),
        CtZone => k.ct_zone.into(),
        CtMark => k.ct_mark.into(),
        TcpFlags => k.tcp_flags.into(),
        IpFrag => k.nw_frag.into(),
        NwTtl => k.nw_ttl.into(),
    }
}

/// Writes `field` into a key (wire units); sub-byte fields keep their neighbours' bits.
pub fn key_set(field: Field, k: &mut FlowKey, v: u128) {
    use Field::*;
    match field {
        InPort => k.in_port = v as u32,
        Metadata => k.metadata = v as u64,
        EthDst => k.eth_dst = u128_to_mac(v),
        EthSrc => k.eth_src = u128_to_mac(v),
        EthType => k.eth_type = v as u16,
        VlanVid => k.vlan_tci = (k.vlan_tci & !0x1fff) | (v as u16 & 0x1fff),
        VlanPcp => k.vlan_tci = (k.vlan_tci & 0x1fff) | ((v as u16 & 7) << 13),
        VlanTci => k.vlan_tci = v as u16,
        IpDscp => k.nw_tos = (k.nw_tos & 3) | ((v as u8 & 0x3f) << 2),
        IpEcn => k.nw_tos = (k.nw_tos & 0xfc) | (v as u8 & 3),
        IpProto => k.nw_proto = v as u8,
        Ipv4Src => k.nw_src = v as u32,
        Ipv4Dst => k.nw_dst = v as u32,
        TcpSrc | UdpSrc | SctpSrc => k.tp_src = v as u16,
        TcpDst | UdpDst | SctpDst => k.tp_dst = v as u16,
        Icmpv4Type | Icmpv6Type => k.icmp_type = v as u8,
        Icmpv4Code | Icmpv6Code => k.icmp_code = v as u8,
        ArpOp => k.arp_op = v as u16,
        ArpSpa => k.arp_spa = v as u32,
        ArpTpa => k.arp_tpa = v as u32,
        ArpSha => k.arp_sha = u128_to_mac(v),
        ArpTha => k.arp_tha = u128_to_mac(v),
        Ipv6Src => k.ipv6_src = v.to_be_bytes(),
        Ipv6Dst => k.ipv6_dst = v.to_be_bytes(),
        Ipv6Flabel => k.ipv6_label = v as u32,
        TunnelId => k.tun_id = v as u64,
        Reg(i) => k.regs[usize::from(i & 7)] = v as u32,
        TunSrc => k.tun_src = v as u32,
        TunDst => k.tun_dst = v as u32,
        CtState => k.ct_state = v as u8,
        CtZone => k.ct_zone = v as u16,
        CtMark => k.ct_mark = v as u32,
        TcpFlags => k.tcp_flags = v as u16,
        IpFrag => k.nw_frag = v as u8,
        NwTtl => k.nw_ttl = v as u8,
    }
}
