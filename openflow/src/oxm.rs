//! OXM/NXM match TLVs, `ofp_match`, and the mapping to the shared [`FlowKey`].
//!
//! Which fields exist, their wire ids and lengths, maskability, prerequisites and where they
//! live in a [`FlowKey`] all come from the one field table, [`flowtable::fields::FIELDS`]; this
//! module only frames TLVs. A decoded [`Match`] keeps the TLVs in wire order with the spelling
//! (OXM or NXM class) they came in, so re-encoding reproduces the request byte for byte.
//! [`Match::to_flow`] turns it into the value+mask [`FlowKey`] pair the classifier uses (after
//! duplicate, mask and prerequisite checks), and [`Match::from_flow`] goes back in the
//! canonical order `ovs-vswitchd`/`ovs-ofctl` use, which is what flow-stats replies and the CLI
//! must send.

use encap::flowkey::FlowKey;
use flowtable::fields::{FieldId, NXM_CLASS_OF, ONF_EXPERIMENTER_ID, Prereq, WireId};

use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};

/// Experimenter OXM class (8-byte header: the OXM header, then the experimenter id, which the
/// header's length counts). Only the ONF fields of the field table are carried
/// (`ONFOXM_ET_TCP_FLAGS`, as Open vSwitch sends `tcp_flags` in OpenFlow 1.3).
pub use flowtable::fields::OXM_CLASS_EXPERIMENTER;

/// Bytes an experimenter id adds after the header of a TLV in `class`.
fn experimenter_len(class: u16) -> u8 {
    if class == OXM_CLASS_EXPERIMENTER {
        4
    } else {
        0
    }
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
    /// The field this header names and the spelling (with its unmasked length) it uses, when
    /// the field table has one the codec carries.
    pub fn field(self) -> Option<(FieldId, WireId)> {
        FieldId::from_wire(self.class(), self.id())
    }
    /// The header NXAST_REG_LOAD/REG_MOVE and `ct(zone=...)` name `field` by (unmasked, NXM
    /// spelling preferred), or `None` when it has no wire form.
    pub fn for_subfield(field: FieldId) -> Option<OxmHeader> {
        let w = field.info().subfield_wire()?;
        Some(OxmHeader::new(w.class, w.field, false, w.len))
    }
}

/// One match (or set-field) TLV: a field, its value and an optional mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OxmTlv {
    pub field: FieldId,
    /// Which wire spelling carried it (class + field number + value length).
    pub wire: WireId,
    /// Big-endian value, right-aligned.
    pub value: u128,
    /// `None` = exact match.
    pub mask: Option<u128>,
}

impl OxmTlv {
    /// A TLV in the preferred spelling of `field` ([`flowtable::fields::FieldInfo::match_wire`]),
    /// or `None` when the codec does not carry the field.
    pub fn new(field: FieldId, value: u128, mask: Option<u128>) -> Option<OxmTlv> {
        Some(OxmTlv {
            field,
            wire: field.info().match_wire()?,
            value,
            mask,
        })
    }

    /// Size on the wire (header + value + mask).
    pub fn wire_len(&self) -> usize {
        let w = usize::from(self.wire.len);
        4 + usize::from(experimenter_len(self.wire.class))
            + if self.mask.is_some() { 2 * w } else { w }
    }

    /// The header; for an experimenter field its length counts the experimenter id.
    pub fn header(&self) -> OxmHeader {
        let w = self.wire.len;
        let len = if self.mask.is_some() { 2 * w } else { w };
        OxmHeader::new(
            self.wire.class,
            self.wire.field,
            self.mask.is_some(),
            len + experimenter_len(self.wire.class),
        )
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.header().0);
        if self.wire.class == OXM_CLASS_EXPERIMENTER {
            out.put_u32(ONF_EXPERIMENTER_ID);
        }
        put_be(out, self.value, self.wire.len);
        if let Some(m) = self.mask {
            put_be(out, m, self.wire.len);
        }
    }

    /// Decodes one TLV; checks the header, the length, mask bits and value ranges.
    pub fn decode(r: &mut Reader<'_>) -> Result<OxmTlv, OfError> {
        let header = OxmHeader(r.u32("oxm header")?);
        let exp_len = experimenter_len(header.class());
        if exp_len != 0 {
            if header.payload_len() < exp_len {
                return err(
                    ErrorCode::BadMatchBadLen,
                    format!(
                        "experimenter OXM field {}: length {} leaves no room for the experimenter id",
                        header.id(),
                        header.payload_len()
                    ),
                );
            }
            let exp = r.u32("oxm experimenter id")?;
            if exp != ONF_EXPERIMENTER_ID {
                return err(
                    ErrorCode::BadMatchBadField,
                    format!(
                        "experimenter {exp:#010x} OXM field {} is not supported",
                        header.id()
                    ),
                );
            }
        }
        let Some((field, wire)) = header.field() else {
            return err(
                ErrorCode::BadMatchBadField,
                format!(
                    "unknown match field class {:#06x} field {}",
                    header.class(),
                    header.id()
                ),
            );
        };
        let info = field.info();
        let w = wire.len;
        let want = if header.hasmask() { 2 * w } else { w } + exp_len;
        if header.payload_len() != want {
            return err(
                ErrorCode::BadMatchBadLen,
                format!(
                    "{}: payload length {} should be {}",
                    info.name,
                    header.payload_len(),
                    want
                ),
            );
        }
        let value = get_be(r.bytes(usize::from(w), "oxm value")?);
        let mask = if header.hasmask() {
            if !info.maskable {
                return err(
                    ErrorCode::BadMatchBadMask,
                    format!("{} cannot be masked", info.name),
                );
            }
            Some(get_be(r.bytes(usize::from(w), "oxm mask")?))
        } else {
            None
        };
        let tlv = OxmTlv {
            field,
            wire,
            value,
            mask,
        };
        tlv.check_value()?;
        Ok(tlv)
    }

    fn check_value(&self) -> Result<(), OfError> {
        let info = self.field.info();
        let full = info.wire_full_mask();
        if self.value & !full != 0 {
            return err(
                ErrorCode::BadMatchBadValue,
                format!(
                    "{}: value {:#x} has bits outside {:#x}",
                    info.name, self.value, full
                ),
            );
        }
        // Open vSwitch's `mf_is_value_valid`: an OXM in_port it cannot represent
        // (0xff00..=0xfffffeff, `ofputil_port_from_ofp11`) is a bad value (a set-field's
        // decoder makes it OFPBAC_BAD_SET_ARGUMENT).
        if self.field == FieldId::InPort
            && self.wire.class != NXM_CLASS_OF
            && (0xff00..0xffff_ff00).contains(&self.value)
        {
            return err(
                ErrorCode::BadMatchBadValue,
                format!(
                    "in_port {:#x} is outside the supported range 0 through 0xfeff or \
                     0xffffff00 through 0xffffffff",
                    self.value
                ),
            );
        }
        if let Some(m) = self.mask
            && self.value & !m != 0
        {
            return err(
                ErrorCode::BadMatchBadWildcards,
                format!(
                    "{}: value {:#x} has bits set outside mask {m:#x}",
                    info.name, self.value
                ),
            );
        }
        Ok(())
    }

    /// The effective mask (all meaningful bits when exact).
    pub fn effective_mask(&self) -> u128 {
        let full = self.field.info().wire_full_mask();
        self.mask.unwrap_or(full) & full
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
    pub fn get(&self, field: FieldId) -> Option<&OxmTlv> {
        self.fields.iter().find(|t| t.field == field)
    }

    /// Checks duplicates and prerequisites (OpenFlow 1.3 §7.2.3.6).
    pub fn validate(&self) -> Result<(), OfError> {
        for (i, t) in self.fields.iter().enumerate() {
            if self.fields[..i].iter().any(|o| o.field == t.field) {
                return err(
                    ErrorCode::BadMatchDupField,
                    format!("{} appears twice", t.field.info().name),
                );
            }
        }
        // Two fields over the same bits (NXM_OF_VLAN_TCI and OXM_OF_VLAN_VID or VLAN_PCP,
        // IP_TOS and IP_DSCP, ...): the later would overwrite the earlier. Open vSwitch's
        // `nx_pull_raw` refuses a field whose bits an earlier one already matched.
        let mut matched = FlowKey::default();
        for t in &self.fields {
            let info = t.field.info();
            if info.wire_get(&matched) != 0 {
                return err(
                    ErrorCode::BadMatchDupField,
                    format!("{} overlaps a field matched before it", info.name),
                );
            }
            info.wire_set(&mut matched, t.effective_mask());
        }
        for t in &self.fields {
            let info = t.field.info();
            if !self.satisfies(info.wire_prereq()) {
                return err(
                    ErrorCode::BadMatchBadPrereq,
                    format!("{} is used without its prerequisites", info.name),
                );
            }
        }
        Ok(())
    }

    fn exact_value(&self, field: FieldId) -> Option<u128> {
        self.get(field)
            .filter(|t| t.effective_mask() == field.info().wire_full_mask())
            .map(|t| t.value)
    }

    /// Whether the TLVs pin down what `p` asks for. `Vlan` means a VLAN_VID with the present
    /// bit matched as 1; `Arp` accepts RARP (0x8035) too, as ovs-vswitchd does.
    fn satisfies(&self, p: Prereq) -> bool {
        let eth = self.exact_value(FieldId::EthType);
        let proto = self.exact_value(FieldId::IpProto);
        let ip4 = eth == Some(0x0800);
        let ip6 = eth == Some(0x86dd);
        let ip = ip4 || ip6;
        match p {
            Prereq::None => true,
            Prereq::Vlan => self
                .get(FieldId::VlanVid)
                .is_some_and(|t| t.value & 0x1000 != 0 && t.effective_mask() & 0x1000 != 0),
            Prereq::Ipv4 => ip4,
            Prereq::Ipv6 => ip6,
            Prereq::Ip => ip,
            Prereq::Arp => eth == Some(0x0806) || eth == Some(0x8035),
            Prereq::Tcp => ip && proto == Some(6),
            Prereq::Udp => ip && proto == Some(17),
            Prereq::Sctp => ip && proto == Some(132),
            Prereq::L4 => ip && matches!(proto, Some(6 | 17 | 132)),
            Prereq::Icmp => ip4 && proto == Some(1),
            Prereq::Icmpv6 => ip6 && proto == Some(58),
            // Open vSwitch's is_nd(): an unmatched type or code counts as 0.
            Prereq::Nd | Prereq::NdSolicit | Prereq::NdAdvert => {
                let ty = self.get(FieldId::Icmpv6Type).map_or(0, |t| t.value);
                let code = self.get(FieldId::Icmpv6Code).map_or(0, |t| t.value);
                ip6 && proto == Some(58)
                    && code == 0
                    && match p {
                        Prereq::NdSolicit => ty == 135,
                        Prereq::NdAdvert => ty == 136,
                        _ => ty == 135 || ty == 136,
                    }
            }
            Prereq::Ct | Prereq::CtIpv4 | Prereq::CtIpv6 => {
                self.get(FieldId::CtState).is_some_and(|t| {
                    flowtable::fields::ct_state_valid(t.value as u8, t.effective_mask() as u8)
                }) && match p {
                    Prereq::CtIpv4 => ip4,
                    Prereq::CtIpv6 => ip6,
                    _ => true,
                }
            }
        }
    }

    /// Validates and converts to the classifier's `(value, mask)` pair.
    pub fn to_flow(&self) -> Result<(FlowKey, FlowKey), OfError> {
        self.validate()?;
        let mut value = FlowKey::default();
        let mut mask = FlowKey::default();
        for t in &self.fields {
            let info = t.field.info();
            let m = t.effective_mask();
            let (v, m) = if t.field == FieldId::InPort && t.wire.class == NXM_CLASS_OF {
                (of10_port_to_of13(t.value as u16).into(), info.full_mask())
            } else {
                (t.value & m, m)
            };
            info.wire_set(&mut value, v);
            info.wire_set(&mut mask, m);
        }
        Ok((value, mask))
    }

    /// Builds the canonical OpenFlow 1.3 match for a classifier `(value, mask)` pair, in the
    /// order ovs-vswitchd and ovs-ofctl emit fields.
    pub fn from_flow(value: &FlowKey, mask: &FlowKey) -> Match {
        use FieldId::*;
        let mut out = Match::default();
        let mut put = |f: FieldId| {
            let info = f.info();
            // Most fields are wildcarded: skip them before anything else.
            let raw = info.wire_get(mask);
            if raw == 0 {
                return;
            }
            let full = info.wire_full_mask();
            let m = raw & full;
            if m == 0 {
                return;
            }
            let v = info.wire_get(value) & m;
            out.fields
                .extend(OxmTlv::new(f, v, (m != full).then_some(m)));
        };
        put(ConjId);
        put(InPort);
        put(EthSrc);
        put(EthDst);
        put(EthType);
        // OXM speaks of the VID with its present bit and of an exact PCP of a tagged frame. A
        // TCI match outside that (a PCP without the present bit matched as 1, a masked PCP)
        // travels as NXM_OF_VLAN_TCI, which OpenFlow 1.3 matches carry too, so nothing is lost.
        // A match on "no tag" (every matched bit 0, the present bit among them) goes as
        // VLAN_VID alone, as Open vSwitch encodes it (no PCP without a VID), so `vlan_tci=0`
        // from either tool is one flow (0x0000/0x1fff; `Match::untagged_as_open_vswitch`).
        let tci_mask = mask.vlan_tci;
        let pcp_mask = tci_mask & 0xe000;
        let tagged = value.vlan_tci & tci_mask & 0x1000 != 0;
        if tci_mask & 0x1000 != 0 && value.vlan_tci & tci_mask == 0 {
            put(VlanVid);
        } else if pcp_mask == 0 || (pcp_mask == 0xe000 && tagged) {
            put(VlanVid);
            put(DlVlanPcp);
        } else {
            put(VlanTci);
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
                put(Ipv6Label);
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
                        put(IcmpType);
                        put(IcmpCode);
                    }
                    58 if eth == 0x86dd => {
                        put(Icmpv6Type);
                        put(Icmpv6Code);
                        // As ovs-vswitchd: the ND fields of a solicitation/advertisement,
                        // nd_sll only for the one, nd_tll only for the other.
                        if value.icmp_code & mask.icmp_code == 0 {
                            match value.icmp_type & mask.icmp_type {
                                135 => {
                                    put(NdTarget);
                                    put(NdSll);
                                }
                                136 => {
                                    put(NdTarget);
                                    put(NdTll);
                                }
                                _ => {}
                            }
                        }
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
        put(TunId);
        put(TunSrc);
        put(TunDst);
        for r in FieldId::REGS {
            put(r);
        }
        put(PktMark);
        put(CtState);
        put(CtZone);
        put(CtMark);
        put(CtLabel);
        put(CtNwSrc);
        put(CtNwDst);
        put(CtIpv6Src);
        put(CtIpv6Dst);
        // ovs-vswitchd puts ct_nw_proto and the original-tuple ports only with a non-zero
        // ct_nw_proto, which loses `ct_nw_proto=0` and ports matched without a protocol (both
        // of which a controller may send and the classifier matches): put whatever is matched,
        // in the same order, so the usual case is byte for byte the same.
        put(CtNwProto);
        put(CtTpSrc);
        put(CtTpDst);
        put(Metadata);
        out
    }
}

/// `OXM_OF_PACKET_TYPE` (OpenFlow 1.5 basic field 44, 32 bits: namespace << 16 | type).
/// `ovs-ofctl -O OpenFlow13` sends `packet_type=(0,0)` (Ethernet) when a match's L2 fields
/// all fall away in OpenFlow 1.3 (`vlan_tci=0xe000/0xe000` has no OXM form, so the match
/// becomes "any Ethernet frame").
pub const OXM_PACKET_TYPE: OxmHeader = OxmHeader(0x8000_5804);

/// Decodes back-to-back OXM TLVs filling all of `bytes`. `packet_type=(0,0)` is accepted
/// and dropped: every frame this switch handles is Ethernet, so it matches everything, as in
/// Open vSwitch; any other packet type is refused (`OFPBMC_BAD_VALUE`).
pub fn decode_oxm_list(bytes: &[u8]) -> Result<Vec<OxmTlv>, OfError> {
    let mut r = Reader::new(bytes, ErrorCode::BadMatchBadLen);
    let mut out = Vec::new();
    let mut packet_type_seen = false;
    while !r.is_empty() {
        if r.rest().get(..4) == Some(&OXM_PACKET_TYPE.0.to_be_bytes()[..]) {
            r.u32("oxm header")?;
            let pt = r.u32("packet_type")?;
            if packet_type_seen {
                return err(ErrorCode::BadMatchDupField, "packet_type appears twice");
            }
            packet_type_seen = true;
            if pt != 0 {
                return err(
                    ErrorCode::BadMatchBadValue,
                    format!(
                        "packet_type=({},{:#x}): only Ethernet frames (0,0) are handled",
                        pt >> 16,
                        pt & 0xffff
                    ),
                );
            }
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    use flowtable::testgen::Rng;

    /// The values that make a prerequisite hold (or nearly), so generated matches reach the
    /// fields behind them often.
    fn interesting_value(rng: &mut Rng, field: FieldId, full: u128) -> Option<u128> {
        use flowtable::fields::FieldId::*;
        let pick: &[u128] = match field {
            EthType => &[0x0800, 0x86dd, 0x86dd, 0x0806, 0x8035, 0x88cc],
            IpProto => &[1, 6, 17, 132, 58, 58, 0, 47],
            Icmpv6Type => &[135, 136, 128, 0],
            Icmpv6Code | IcmpCode => &[0, 0, 1],
            CtState => &[0x21, 0x22, 0x24, 0x28, 0x20, 0x01, 0x61, 0xa2],
            CtNwProto => &[0, 6, 17, 1, 58],
            VlanVid | VlanTci => &[0x1000, 0x1005, 0x0000, 0x1fff, 0x0a80, 0xb005],
            _ => return None,
        };
        rng.chance(80).then(|| rng.pick(pick) & full)
    }

    /// One TLV for `field` in a random spelling with a random value and, when the field is
    /// maskable, sometimes a random mask.
    fn random_tlv(rng: &mut Rng, field: FieldId) -> OxmTlv {
        let info = field.info();
        let spellings: Vec<WireId> = [info.oxm, info.nxm].into_iter().flatten().collect();
        let wire = rng.pick(&spellings);
        // NXM_OF_IN_PORT is 16 bits wide; every other spelling holds the field.
        let width = u32::from(wire.len) * 8;
        let full = info.wire_full_mask() & (u128::MAX >> (128 - width));
        let mask = (info.maskable && rng.chance(40)).then(|| rng.bits(full));
        let mut value = interesting_value(rng, field, full).unwrap_or_else(|| rng.bits(full));
        // An OXM in_port Open vSwitch cannot represent (0xff00..=0xfffffeff) is a bad value.
        if field == FieldId::InPort && (0xff00..0xffff_ff00).contains(&value) {
            value &= 0xfeff;
        }
        OxmTlv {
            field,
            wire,
            value: value & mask.unwrap_or(full),
            mask,
        }
    }

    /// A random match that passes validation: random fields, then those whose
    /// prerequisites do not hold are dropped until all hold.
    fn random_match(rng: &mut Rng) -> Match {
        let carried: Vec<FieldId> = flowtable::fields::FIELDS
            .iter()
            .filter(|f| f.match_wire().is_some())
            .map(|f| f.id)
            .collect();
        let mut fields: Vec<OxmTlv> = Vec::new();
        for &f in &carried {
            let base = matches!(
                f,
                FieldId::EthType
                    | FieldId::IpProto
                    | FieldId::CtState
                    | FieldId::VlanVid
                    | FieldId::Icmpv6Type
            );
            if rng.chance(if base { 80 } else { 25 }) {
                fields.push(random_tlv(rng, f));
            }
        }
        // Shuffle: fields that share bits (vlan_tci, vlan_vid, vlan_pcp) meet in any order.
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.index(i + 1));
        }
        let mut m = Match { fields };
        loop {
            let before = m.fields.len();
            let keep: Vec<OxmTlv> = m
                .fields
                .iter()
                .filter(|t| m.satisfies(t.field.info().wire_prereq()))
                .copied()
                .collect();
            m.fields = keep;
            // A field over bits an earlier one matched is refused (DUP_FIELD): drop it.
            let mut matched = FlowKey::default();
            m.fields.retain(|t| {
                let info = t.field.info();
                let fresh = info.wire_get(&matched) == 0;
                if fresh {
                    info.wire_set(&mut matched, t.effective_mask());
                }
                fresh
            });
            if m.fields.len() == before {
                return m;
            }
        }
    }

    /// Property: every match a controller may send becomes a classifier pair that
    /// `from_flow` writes back so that it converts to the same pair (the trip a flow-mod
    /// makes through `flow_mod_in`/`flow_mod_out`, and a flow-stats reply through
    /// vswitchctl), and the match written back encodes and decodes to itself.
    #[test]
    fn every_accepted_match_survives_from_flow_and_back() {
        let mut rng = Rng(0x5eed_0ff1_0ec0_de42);
        let mut seen = std::collections::HashMap::<FieldId, usize>::new();
        let mut failures = Vec::new();
        for _ in 0..200_000 {
            let m = random_match(&mut rng);
            let (value, mask) = m
                .to_flow()
                .unwrap_or_else(|e| panic!("{m:?} validated but to_flow refused: {e}"));
            for t in &m.fields {
                *seen.entry(t.field).or_default() += 1;
            }
            let wire = Match::from_flow(&value, &mask);
            let back = wire.to_flow();
            // "No tag" goes without its PCP bits, as Open vSwitch encodes it.
            let (mut value, mut mask) = (value, mask);
            if mask.vlan_tci & 0x1000 != 0 && value.vlan_tci & mask.vlan_tci == 0 {
                mask.vlan_tci &= 0x1fff;
                value.vlan_tci &= 0x1fff;
            }
            if back.as_ref() != Ok(&(value, mask)) {
                let lost: Vec<String> = match &back {
                    Err(e) => vec![format!("refused: {e}")],
                    Ok((v, mk)) => flowtable::fields::FIELDS
                        .iter()
                        .filter(|f| ((f.get)(v), (f.get)(mk)) != ((f.get)(&value), (f.get)(&mask)))
                        .map(|f| {
                            format!(
                                "{}={:#x}/{:#x} became {:#x}/{:#x}",
                                f.name,
                                (f.get)(&value),
                                (f.get)(&mask),
                                (f.get)(v),
                                (f.get)(mk)
                            )
                        })
                        .collect(),
                };
                let kind: Vec<&str> = lost
                    .iter()
                    .map(|l| l.split('=').next().unwrap_or(l))
                    .collect();
                let kind = kind.join(",");
                if !failures.iter().any(|(k, _)| *k == kind) {
                    failures.push((kind, format!("{}\n    in {m:?}", lost.join("; "))));
                }
                continue;
            }
            let mut bytes = Vec::new();
            wire.encode(&mut bytes);
            let mut r = Reader::new(&bytes, ErrorCode::BadMatchBadLen);
            assert_eq!(Match::decode(&mut r).as_ref(), Ok(&wire), "{wire:?}");
        }
        let failures: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
        assert!(
            failures.is_empty(),
            "lossy matches:\n{}",
            failures.join("\n")
        );
        // Not vacuous: every field the codec carries was in many accepted matches.
        for f in flowtable::fields::FIELDS
            .iter()
            .filter(|f| f.match_wire().is_some())
        {
            let n = seen.get(&f.id).copied().unwrap_or(0);
            assert!(n > 200, "{}: only {n} accepted matches", f.name);
        }
    }

    /// Every TCI match survives the trip to a wire match and back, including those OXM cannot
    /// say (a fuzzer found `vlan_tci=0x0a80`, which lost its PCP bits on the way out).
    #[test]
    fn fields_over_the_same_bits_are_dup_field() {
        let tlv = |field: FieldId, value: u128, mask: Option<u128>| {
            let info = field.info();
            OxmTlv {
                field,
                wire: info.nxm.or(info.oxm).expect("a wire spelling"),
                value,
                mask,
            }
        };
        let tci = tlv(FieldId::VlanTci, 0x1005, None);
        let m = Match {
            fields: vec![tci, tlv(FieldId::VlanVid, 0x1007, None)],
        };
        assert_eq!(m.to_flow().unwrap_err().code, ErrorCode::BadMatchDupField);
        // Disjoint bits of the same word are two fields, as in Open vSwitch: OXM_OF_VLAN_VID
        // and OXM_OF_VLAN_PCP.
        let m = Match {
            fields: vec![
                tlv(FieldId::VlanVid, 0x1005, None),
                tlv(FieldId::DlVlanPcp, 3, None),
            ],
        };
        let (value, mask) = m.to_flow().expect("disjoint bits");
        assert_eq!((value.vlan_tci, mask.vlan_tci), (0x7005, 0xffff));
    }

    #[test]
    fn vlan_tci_matches_round_trip() {
        for (v, m) in [
            (0x0a80, 0xffff),
            (0x0000, 0x1fff),
            (0x1005, 0x1fff),
            (0x1000, 0x1000),
            (0x3005, 0xffff),
            (0x3000, 0xf000),
            (0x2000, 0xe000),
            (0x2000, 0x2000),
            (0x0000, 0xe000),
            (0x0005, 0x0fff),
        ] {
            let mut value = FlowKey::default();
            let mut mask = FlowKey::default();
            value.vlan_tci = v;
            mask.vlan_tci = m;
            let wire = Match::from_flow(&value, &mask);
            let back = wire.to_flow();
            assert_eq!(
                back.as_ref().map(|(v, m)| (v.vlan_tci, m.vlan_tci)),
                Ok((v, m)),
                "vlan_tci={v:#06x}/{m:#06x} became {wire:?}"
            );
        }
        // "No tag" goes as VLAN_VID alone, as Open vSwitch encodes it: the PCP bits of an
        // untagged match are not carried (`vlan_tci=0` reads back as 0x0000/0x1fff).
        for (v, m) in [(0x0000, 0xffff), (0x0000, 0xf000), (0x0000, 0x1fff)] {
            let mut value = FlowKey::default();
            let mut mask = FlowKey::default();
            value.vlan_tci = v;
            mask.vlan_tci = m;
            let wire = Match::from_flow(&value, &mask);
            assert_eq!(wire.fields.len(), 1, "{wire:?}");
            assert_eq!(wire.fields[0].field, FieldId::VlanVid, "{wire:?}");
            let back = wire.to_flow().map(|(v, mk)| (v.vlan_tci, mk.vlan_tci));
            assert_eq!(back, Ok((0, m & 0x1fff)), "vlan_tci={v:#06x}/{m:#06x}");
        }
    }
}
