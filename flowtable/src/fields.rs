//! The match-field table: one row per OpenFlow/Nicira field we support.
//!
//! Each row says how the field is named in ovs-ofctl text (name + aliases), how it is identified
//! on the wire (OXM and/or NXM class/field/length), whether it may carry a mask, which other
//! fields must be matched first (prerequisites), how its value is written in text, and where its
//! bits live in [`FlowKey`]. Parsing, printing and the OXM codec are all driven from [`FIELDS`]:
//! the `openflow` crate takes field identity, wire ids and lengths, maskability, prerequisites,
//! the preferred encoding and the `FlowKey` accessors from here ([`FieldInfo::match_wire`],
//! [`FieldInfo::wire_get`], [`FieldId::from_wire`], ...) and keeps only the TLV framing.
//!
//! Values are carried as `u128` (wide enough for IPv6 addresses); MACs and IPv6 addresses are
//! big-endian numbers of their wire bytes.

use encap::flowkey::FlowKey;

/// Every field the flow model can match on or set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldId {
    InPort,
    Metadata,
    Reg0,
    Reg1,
    Reg2,
    Reg3,
    Reg4,
    Reg5,
    Reg6,
    Reg7,
    Reg8,
    Reg9,
    Reg10,
    Reg11,
    Reg12,
    Reg13,
    Reg14,
    Reg15,
    /// `xreg<N>`: `reg<2N>` (high half) and `reg<2N+1>` as one 64-bit field.
    Xreg0,
    Xreg1,
    Xreg2,
    Xreg3,
    Xreg4,
    Xreg5,
    Xreg6,
    Xreg7,
    /// `xxreg<N>`: `reg<4N>` (most significant) .. `reg<4N+3>` as one 128-bit field.
    Xxreg0,
    Xxreg1,
    Xxreg2,
    Xxreg3,
    TunId,
    TunSrc,
    TunDst,
    /// `pkt_mark`: packet metadata (the Linux skb mark).
    PktMark,
    /// `conj_id`: the id of a completed conjunctive match (read-only, set by the classifier).
    ConjId,
    CtState,
    CtZone,
    CtMark,
    /// `ct_label`: the connection's 128-bit label.
    CtLabel,
    /// The original-direction tuple of the packet's connection (read-only).
    CtNwSrc,
    CtNwDst,
    CtIpv6Src,
    CtIpv6Dst,
    CtNwProto,
    CtTpSrc,
    CtTpDst,
    EthSrc,
    EthDst,
    EthType,
    /// The whole 802.1Q TCI with the CFI/present bit (Nicira `vlan_tci`).
    VlanTci,
    /// OpenFlow 1.2+ `vlan_vid`: 12-bit VID plus the `0x1000` present bit.
    VlanVid,
    /// OpenFlow 1.0-style `dl_vlan`: the VID; "present" is implied.
    DlVlan,
    /// `dl_vlan_pcp` / `vlan_pcp`: the priority code point; "present" is implied.
    DlVlanPcp,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    Ipv4Src,
    Ipv4Dst,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    IpProto,
    /// DSCP as a 6-bit number (OXM `ip_dscp`).
    IpDscp,
    /// DSCP written as the TOS byte with ECN bits clear (`nw_tos`).
    NwTos,
    IpEcn,
    NwTtl,
    IpFrag,
    /// Generic L4 ports: `tp_src`/`tp_dst` (TCP, UDP or SCTP).
    TpSrc,
    TpDst,
    TcpSrc,
    TcpDst,
    UdpSrc,
    UdpDst,
    SctpSrc,
    SctpDst,
    TcpFlags,
    IcmpType,
    IcmpCode,
    Icmpv6Type,
    Icmpv6Code,
    /// `nd_target`: the target address of an IPv6 neighbor solicitation/advertisement.
    NdTarget,
    /// `nd_sll`: the source link-layer address option of a neighbor solicitation (stored in
    /// `arp_sha`, as Open vSwitch does).
    NdSll,
    /// `nd_tll`: the target link-layer address option of a neighbor advertisement (stored in
    /// `arp_tha`).
    NdTll,
}

/// What must already be matched for a field to be meaningful (OpenFlow 1.3 §7.2.3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prereq {
    None,
    /// A VLAN tag is present (`vlan_tci` CFI bit matched as 1).
    Vlan,
    Ipv4,
    Ipv6,
    /// IPv4 or IPv6.
    Ip,
    Arp,
    /// IPv4 or IPv6 with `nw_proto=6`.
    Tcp,
    Udp,
    Sctp,
    /// TCP, UDP or SCTP.
    L4,
    Icmp,
    Icmpv6,
    /// An IPv6 neighbor solicitation or advertisement: ICMPv6 with `icmp_type` 135 or 136
    /// and `icmp_code` 0 (a code left unmatched counts as 0, as in Open vSwitch).
    Nd,
    /// A neighbor solicitation (`icmp_type=135`).
    NdSolicit,
    /// A neighbor advertisement (`icmp_type=136`).
    NdAdvert,
    /// A valid conntrack entry: `ct_state` matches one of `+new`, `+est`, `+rel`, `+rpl`,
    /// `+snat`, `+dnat`, or `+trk-inv` (Open vSwitch's `MFP_CT_VALID`).
    Ct,
    /// [`Prereq::Ct`] and IPv4.
    CtIpv4,
    /// [`Prereq::Ct`] and IPv6.
    CtIpv6,
}

impl Prereq {
    /// The shorthand a user should add to satisfy the prerequisite (for error messages).
    pub fn hint(self) -> &'static str {
        match self {
            Prereq::None => "",
            Prereq::Vlan => "dl_vlan=<vid> or vlan_tci=0x1000/0x1000",
            Prereq::Ipv4 => "ip",
            Prereq::Ipv6 => "ipv6",
            Prereq::Ip => "ip or ipv6",
            Prereq::Arp => "arp",
            Prereq::Tcp => "tcp or tcp6",
            Prereq::Udp => "udp or udp6",
            Prereq::Sctp => "sctp or sctp6",
            Prereq::L4 => "tcp, udp or sctp (or their v6 forms)",
            Prereq::Icmp => "icmp",
            Prereq::Icmpv6 => "icmp6",
            Prereq::Nd => "icmp6,icmp_type=135 or icmp6,icmp_type=136 (with icmp_code 0)",
            Prereq::NdSolicit => "icmp6,icmp_type=135 (with icmp_code 0)",
            Prereq::NdAdvert => "icmp6,icmp_type=136 (with icmp_code 0)",
            Prereq::Ct => "ct_state=+trk-inv (or +new, +est, +rel, +rpl, +snat, +dnat)",
            Prereq::CtIpv4 => "ct_state=+trk-inv (or +new, +est, ...) and ip",
            Prereq::CtIpv6 => "ct_state=+trk-inv (or +new, +est, ...) and ipv6",
        }
    }
}

/// Whether a `ct_state` value/mask pins down a valid conntrack entry (Open vSwitch's
/// `is_ct_valid`): one of `+new +est +rel +rpl +snat +dnat` required, or `+trk-inv`.
pub fn ct_state_valid(value: u8, mask: u8) -> bool {
    use encap::flowkey::{CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK};
    let v = value & mask;
    v & (CT_NEW | CT_EST | CT_REL | CT_RPL | CT_SNAT | CT_DNAT) != 0
        || (v & CT_TRK != 0 && mask & CT_INV != 0 && v & CT_INV == 0)
}

/// How a field's value is written in ovs-ofctl text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Decimal,
    Hex,
    Ipv4,
    Ipv6,
    Mac,
    /// An OpenFlow port number or name (`LOCAL`, `IN_PORT`, ...).
    Port,
    /// `+trk+new-est` flags or a number.
    CtState,
    /// `+syn-ack` flags or a number.
    TcpFlags,
    /// `no`, `yes`, `first`, `later`, `not_later`.
    Frag,
    /// `dl_vlan`: a VID, stored with the present bit.
    DlVlan,
    /// `dl_vlan_pcp`: a PCP, stored with the present bit.
    DlVlanPcp,
}

/// A wire identity of a field: OXM/NXM class, field number and payload length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireId {
    pub class: u16,
    pub field: u8,
    pub len: u8,
}

/// OXM class of the OpenFlow basic fields.
pub const OXM_CLASS_BASIC: u16 = 0x8000;
/// OXM class of OpenFlow 1.5's packet registers (`OFPXMC_PACKET_REGS`: `xreg<N>`).
pub const OXM_CLASS_PACKET_REGS: u16 = 0x8001;
/// Experimenter OXM class: the header is followed by a 32-bit experimenter id, counted in the
/// header's length. The only experimenter fields carried are the ONF ones
/// ([`ONF_EXPERIMENTER_ID`]) Open vSwitch uses in OpenFlow 1.3.
pub const OXM_CLASS_EXPERIMENTER: u16 = 0xffff;
/// The Open Networking Foundation's experimenter id (`ONF_VENDOR_ID`, "ONF\0").
pub const ONF_EXPERIMENTER_ID: u32 = 0x4f4e_4600;
/// `ONFOXM_ET_TCP_FLAGS`: how `ovs-ofctl -O OpenFlow13` and `ovs-vswitchd` carry `tcp_flags`
/// in OpenFlow 1.3 (OpenFlow 1.5 made it the basic field 42).
pub const ONFOXM_ET_TCP_FLAGS: u8 = 42;
/// NXM class 0 (`NXM_OF_*`) and 1 (`NXM_NX_*`).
pub const NXM_CLASS_OF: u16 = 0x0000;
pub const NXM_CLASS_NX: u16 = 0x0001;

/// What the OpenFlow codec needs beyond a row's wire ids, for the few rows whose wire form is
/// not simply the row's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// Whether the codec carries the field in matches and set-field actions (decodes its wire
    /// ids, encodes it in [`FieldInfo::match_wire`]). `false` for `nw_tos`: the codec carries
    /// DSCP as OXM_OF_IP_DSCP, and NXM_OF_IP_TOS only names `load:`/`move:` subfields on the
    /// way out ([`FieldInfo::subfield_wire`]).
    pub decoded: bool,
    /// Low bits of the row's value the wire payload leaves out: `vlan_pcp` is stored as the
    /// PCP above the VLAN present bit, OXM_OF_VLAN_PCP carries the 3-bit PCP alone.
    pub shift: u8,
    /// The prerequisite checked on a decoded match when it differs from [`FieldInfo::prereq`]:
    /// `vlan_pcp`'s text form implies the tag, on the wire a VLAN_VID with the present bit must
    /// be matched (OpenFlow 1.3 §7.2.3.8).
    pub prereq: Option<Prereq>,
}

impl Codec {
    /// The wire payload is the row's value, with the row's prerequisite.
    pub const PLAIN: Codec = Codec {
        decoded: true,
        shift: 0,
        prereq: None,
    };
}

/// One row of the field table.
#[derive(Clone, Copy)]
pub struct FieldInfo {
    pub id: FieldId,
    /// Canonical name (used by `set_field:...->NAME`).
    pub name: &'static str,
    /// Other names accepted by the parser.
    pub aliases: &'static [&'static str],
    /// Nicira-style name used in `load:`/`move:` subfields (`NXM_NX_REG0`, `OXM_OF_METADATA`).
    pub nxm_name: &'static str,
    /// Standard OXM identity, when OpenFlow 1.3 has one.
    pub oxm: Option<WireId>,
    /// Nicira NXM identity, when there is one.
    pub nxm: Option<WireId>,
    /// Width of the value in bits.
    pub bits: u8,
    /// Whether a mask may be given.
    pub maskable: bool,
    pub prereq: Prereq,
    pub format: Format,
    /// How the OpenFlow codec carries the field (almost always [`Codec::PLAIN`]).
    pub codec: Codec,
    /// Reads the field's bits from a key (value or mask).
    pub get: fn(&FlowKey) -> u128,
    /// Writes the field's bits into a key, leaving other bits alone.
    pub set: fn(&mut FlowKey, u128),
}

impl core::fmt::Debug for FieldInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name)
    }
}

impl FieldInfo {
    /// All-ones value of the field's width.
    pub fn full_mask(&self) -> u128 {
        if self.bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.bits) - 1
        }
    }

    /// The spelling the codec encodes matches and set-field actions in: OXM when OpenFlow 1.3
    /// has one, else NXM (what `ovs-ofctl -O OpenFlow13` sends). `None` when the codec does
    /// not carry the field.
    pub fn match_wire(&self) -> Option<WireId> {
        if self.codec.decoded {
            self.oxm.or(self.nxm)
        } else {
            None
        }
    }

    /// The spelling `load:`/`move:` (NXAST_REG_LOAD/REG_MOVE) and `ct(zone=...)` name the
    /// field by on the wire: NXM when there is one, else OXM.
    pub fn subfield_wire(&self) -> Option<WireId> {
        self.nxm.or(self.oxm)
    }

    /// All-ones value of the wire payload's meaningful bits (an exact match's mask).
    pub fn wire_full_mask(&self) -> u128 {
        self.full_mask() >> self.codec.shift
    }

    /// Reads the field from a key in wire units (right-aligned payload).
    pub fn wire_get(&self, k: &FlowKey) -> u128 {
        (self.get)(k) >> self.codec.shift
    }

    /// Writes the field into a key from wire units; bits the wire leaves out keep their value.
    pub fn wire_set(&self, k: &mut FlowKey, v: u128) {
        let shift = self.codec.shift;
        if shift == 0 {
            (self.set)(k, v);
        } else {
            let low = (self.get)(k) & ((1u128 << shift) - 1);
            (self.set)(k, (v << shift) | low);
        }
    }

    /// The prerequisite the codec checks on a decoded match.
    pub fn wire_prereq(&self) -> Prereq {
        self.codec.prereq.unwrap_or(self.prereq)
    }
}

const fn w(class: u16, field: u8, len: u8) -> Option<WireId> {
    Some(WireId { class, field, len })
}

fn mac_get(b: &[u8; 6]) -> u128 {
    b.iter().fold(0u128, |acc, &x| (acc << 8) | x as u128)
}
fn mac_set(b: &mut [u8; 6], v: u128) {
    for (i, x) in b.iter_mut().enumerate() {
        *x = (v >> (8 * (5 - i))) as u8;
    }
}
fn v6_get(b: &[u8; 16]) -> u128 {
    u128::from_be_bytes(*b)
}
fn v6_set(b: &mut [u8; 16], v: u128) {
    *b = v.to_be_bytes();
}

/// Builds a row for a field that occupies a whole `FlowKey` member.
macro_rules! row {
    ($id:ident, $name:expr, [$($alias:expr),*], $nxm_name:expr, $oxm:expr, $nxm:expr,
     $bits:expr, $maskable:expr, $prereq:ident, $format:ident, $member:ident, $ty:ty) => {
        FieldInfo {
            id: FieldId::$id,
            name: $name,
            aliases: &[$($alias),*],
            nxm_name: $nxm_name,
            oxm: $oxm,
            nxm: $nxm,
            bits: $bits,
            maskable: $maskable,
            prereq: Prereq::$prereq,
            format: Format::$format,
            codec: Codec::PLAIN,
            get: |k| k.$member as u128,
            set: |k, v| k.$member = v as $ty,
        }
    };
}

/// Builds a row for a bit range `[shift, shift+bits)` of a `FlowKey` member.
macro_rules! bits_row {
    ($id:ident, $name:expr, [$($alias:expr),*], $nxm_name:expr, $oxm:expr, $nxm:expr,
     $bits:expr, $maskable:expr, $prereq:ident, $format:ident, $member:ident, $ty:ty, $shift:expr) => {
        FieldInfo {
            id: FieldId::$id,
            name: $name,
            aliases: &[$($alias),*],
            nxm_name: $nxm_name,
            oxm: $oxm,
            nxm: $nxm,
            bits: $bits,
            maskable: $maskable,
            prereq: Prereq::$prereq,
            format: Format::$format,
            codec: Codec::PLAIN,
            get: |k| ((k.$member >> $shift) as u128) & ((1u128 << $bits) - 1),
            set: |k, v| {
                let m: $ty = (((1u128 << $bits) - 1) as $ty) << $shift;
                k.$member = (k.$member & !m) | (((v as $ty) << $shift) & m);
            },
        }
    };
}

/// Builds a row for `n` consecutive registers from `first` read as one field, the first the
/// most significant: a register, or an `xreg`/`xxreg` view of several.
macro_rules! regs_row {
    ($id:ident, $name:expr, $nxm_name:expr, $oxm:expr, $nxm:expr, $first:expr, $n:expr) => {
        FieldInfo {
            id: FieldId::$id,
            name: $name,
            aliases: &[],
            nxm_name: $nxm_name,
            oxm: $oxm,
            nxm: $nxm,
            bits: 32 * $n,
            maskable: true,
            prereq: Prereq::None,
            format: Format::Hex,
            codec: Codec::PLAIN,
            get: |k| regs_get(&k.regs[$first..$first + $n]),
            set: |k, v| regs_set(&mut k.regs[$first..$first + $n], v),
        }
    };
}

/// `reg<N>`: a 32-bit Nicira register (`NXM_NX_REG<N>`).
macro_rules! reg_row {
    ($id:ident, $name:expr, $nxm_name:expr, $i:expr) => {
        regs_row!($id, $name, $nxm_name, None, w(NXM_CLASS_NX, $i, 4), $i, 1)
    };
}

/// `xreg<N>`: OpenFlow 1.5's 64-bit packet register (`OXM_OF_PKT_REG<N>`, which Open vSwitch
/// also carries in OpenFlow 1.3), stored as two 32-bit registers, the high half first.
macro_rules! xreg_row {
    ($id:ident, $name:expr, $nxm_name:expr, $i:expr) => {
        regs_row!(
            $id,
            $name,
            $nxm_name,
            w(OXM_CLASS_PACKET_REGS, $i, 8),
            None,
            2 * $i,
            2
        )
    };
}

/// `xxreg<N>`: Open vSwitch's 128-bit register (`NXM_NX_XXREG<N>`), four 32-bit registers.
macro_rules! xxreg_row {
    ($id:ident, $name:expr, $nxm_name:expr, $i:expr) => {
        regs_row!(
            $id,
            $name,
            $nxm_name,
            None,
            w(NXM_CLASS_NX, 111 + $i, 16),
            4 * $i,
            4
        )
    };
}

/// Registers read as one number, the first the most significant.
fn regs_get(regs: &[u32]) -> u128 {
    regs.iter().fold(0u128, |acc, &r| (acc << 32) | r as u128)
}
fn regs_set(regs: &mut [u32], v: u128) {
    let n = regs.len();
    for (i, r) in regs.iter_mut().enumerate() {
        *r = (v >> (32 * (n - 1 - i))) as u32;
    }
}

/// The field table. Order is the order of [`FieldId`].
pub static FIELDS: &[FieldInfo] = &[
    row!(
        InPort,
        "in_port",
        [],
        "NXM_OF_IN_PORT",
        w(OXM_CLASS_BASIC, 0, 4),
        w(NXM_CLASS_OF, 0, 2),
        32,
        false,
        None,
        Port,
        in_port,
        u32
    ),
    row!(
        Metadata,
        "metadata",
        [],
        "OXM_OF_METADATA",
        w(OXM_CLASS_BASIC, 2, 8),
        None,
        64,
        true,
        None,
        Hex,
        metadata,
        u64
    ),
    reg_row!(Reg0, "reg0", "NXM_NX_REG0", 0),
    reg_row!(Reg1, "reg1", "NXM_NX_REG1", 1),
    reg_row!(Reg2, "reg2", "NXM_NX_REG2", 2),
    reg_row!(Reg3, "reg3", "NXM_NX_REG3", 3),
    reg_row!(Reg4, "reg4", "NXM_NX_REG4", 4),
    reg_row!(Reg5, "reg5", "NXM_NX_REG5", 5),
    reg_row!(Reg6, "reg6", "NXM_NX_REG6", 6),
    reg_row!(Reg7, "reg7", "NXM_NX_REG7", 7),
    reg_row!(Reg8, "reg8", "NXM_NX_REG8", 8),
    reg_row!(Reg9, "reg9", "NXM_NX_REG9", 9),
    reg_row!(Reg10, "reg10", "NXM_NX_REG10", 10),
    reg_row!(Reg11, "reg11", "NXM_NX_REG11", 11),
    reg_row!(Reg12, "reg12", "NXM_NX_REG12", 12),
    reg_row!(Reg13, "reg13", "NXM_NX_REG13", 13),
    reg_row!(Reg14, "reg14", "NXM_NX_REG14", 14),
    reg_row!(Reg15, "reg15", "NXM_NX_REG15", 15),
    xreg_row!(Xreg0, "xreg0", "OXM_OF_PKT_REG0", 0),
    xreg_row!(Xreg1, "xreg1", "OXM_OF_PKT_REG1", 1),
    xreg_row!(Xreg2, "xreg2", "OXM_OF_PKT_REG2", 2),
    xreg_row!(Xreg3, "xreg3", "OXM_OF_PKT_REG3", 3),
    xreg_row!(Xreg4, "xreg4", "OXM_OF_PKT_REG4", 4),
    xreg_row!(Xreg5, "xreg5", "OXM_OF_PKT_REG5", 5),
    xreg_row!(Xreg6, "xreg6", "OXM_OF_PKT_REG6", 6),
    xreg_row!(Xreg7, "xreg7", "OXM_OF_PKT_REG7", 7),
    xxreg_row!(Xxreg0, "xxreg0", "NXM_NX_XXREG0", 0),
    xxreg_row!(Xxreg1, "xxreg1", "NXM_NX_XXREG1", 1),
    xxreg_row!(Xxreg2, "xxreg2", "NXM_NX_XXREG2", 2),
    xxreg_row!(Xxreg3, "xxreg3", "NXM_NX_XXREG3", 3),
    row!(
        TunId,
        "tun_id",
        ["tunnel_id"],
        "NXM_NX_TUN_ID",
        w(OXM_CLASS_BASIC, 38, 8),
        w(NXM_CLASS_NX, 16, 8),
        64,
        true,
        None,
        Hex,
        tun_id,
        u64
    ),
    row!(
        TunSrc,
        "tun_src",
        [],
        "NXM_NX_TUN_IPV4_SRC",
        None,
        w(NXM_CLASS_NX, 31, 4),
        32,
        true,
        None,
        Ipv4,
        tun_src,
        u32
    ),
    row!(
        TunDst,
        "tun_dst",
        [],
        "NXM_NX_TUN_IPV4_DST",
        None,
        w(NXM_CLASS_NX, 32, 4),
        32,
        true,
        None,
        Ipv4,
        tun_dst,
        u32
    ),
    row!(
        PktMark,
        "pkt_mark",
        [],
        "NXM_NX_PKT_MARK",
        None,
        w(NXM_CLASS_NX, 33, 4),
        32,
        true,
        None,
        Hex,
        pkt_mark,
        u32
    ),
    row!(
        ConjId,
        "conj_id",
        [],
        "NXM_NX_CONJ_ID",
        None,
        w(NXM_CLASS_NX, 37, 4),
        32,
        false,
        None,
        Decimal,
        conj_id,
        u32
    ),
    row!(
        CtState,
        "ct_state",
        [],
        "NXM_NX_CT_STATE",
        None,
        w(NXM_CLASS_NX, 105, 4),
        8,
        true,
        None,
        CtState,
        ct_state,
        u8
    ),
    row!(
        CtZone,
        "ct_zone",
        [],
        "NXM_NX_CT_ZONE",
        None,
        w(NXM_CLASS_NX, 106, 2),
        16,
        false,
        None,
        Decimal,
        ct_zone,
        u16
    ),
    row!(
        CtMark,
        "ct_mark",
        [],
        "NXM_NX_CT_MARK",
        None,
        w(NXM_CLASS_NX, 107, 4),
        32,
        true,
        None,
        Hex,
        ct_mark,
        u32
    ),
    FieldInfo {
        id: FieldId::CtLabel,
        name: "ct_label",
        aliases: &[],
        nxm_name: "NXM_NX_CT_LABEL",
        oxm: None,
        nxm: w(NXM_CLASS_NX, 108, 16),
        bits: 128,
        maskable: true,
        prereq: Prereq::None,
        format: Format::Hex,
        codec: Codec::PLAIN,
        get: |k| v6_get(&k.ct_label),
        set: |k, v| v6_set(&mut k.ct_label, v),
    },
    row!(
        CtNwSrc,
        "ct_nw_src",
        [],
        "NXM_NX_CT_NW_SRC",
        None,
        w(NXM_CLASS_NX, 120, 4),
        32,
        true,
        CtIpv4,
        Ipv4,
        ct_nw_src,
        u32
    ),
    row!(
        CtNwDst,
        "ct_nw_dst",
        [],
        "NXM_NX_CT_NW_DST",
        None,
        w(NXM_CLASS_NX, 121, 4),
        32,
        true,
        CtIpv4,
        Ipv4,
        ct_nw_dst,
        u32
    ),
    FieldInfo {
        id: FieldId::CtIpv6Src,
        name: "ct_ipv6_src",
        aliases: &[],
        nxm_name: "NXM_NX_CT_IPV6_SRC",
        oxm: None,
        nxm: w(NXM_CLASS_NX, 122, 16),
        bits: 128,
        maskable: true,
        prereq: Prereq::CtIpv6,
        format: Format::Ipv6,
        codec: Codec::PLAIN,
        get: |k| v6_get(&k.ct_ipv6_src),
        set: |k, v| v6_set(&mut k.ct_ipv6_src, v),
    },
    FieldInfo {
        id: FieldId::CtIpv6Dst,
        name: "ct_ipv6_dst",
        aliases: &[],
        nxm_name: "NXM_NX_CT_IPV6_DST",
        oxm: None,
        nxm: w(NXM_CLASS_NX, 123, 16),
        bits: 128,
        maskable: true,
        prereq: Prereq::CtIpv6,
        format: Format::Ipv6,
        codec: Codec::PLAIN,
        get: |k| v6_get(&k.ct_ipv6_dst),
        set: |k, v| v6_set(&mut k.ct_ipv6_dst, v),
    },
    row!(
        CtNwProto,
        "ct_nw_proto",
        [],
        "NXM_NX_CT_NW_PROTO",
        None,
        w(NXM_CLASS_NX, 119, 1),
        8,
        false,
        Ct,
        Decimal,
        ct_nw_proto,
        u8
    ),
    row!(
        CtTpSrc,
        "ct_tp_src",
        [],
        "NXM_NX_CT_TP_SRC",
        None,
        w(NXM_CLASS_NX, 124, 2),
        16,
        true,
        Ct,
        Decimal,
        ct_tp_src,
        u16
    ),
    row!(
        CtTpDst,
        "ct_tp_dst",
        [],
        "NXM_NX_CT_TP_DST",
        None,
        w(NXM_CLASS_NX, 125, 2),
        16,
        true,
        Ct,
        Decimal,
        ct_tp_dst,
        u16
    ),
    FieldInfo {
        id: FieldId::EthSrc,
        name: "eth_src",
        aliases: &["dl_src"],
        nxm_name: "NXM_OF_ETH_SRC",
        oxm: w(OXM_CLASS_BASIC, 4, 6),
        nxm: w(NXM_CLASS_OF, 2, 6),
        bits: 48,
        maskable: true,
        prereq: Prereq::None,
        format: Format::Mac,
        codec: Codec::PLAIN,
        get: |k| mac_get(&k.eth_src),
        set: |k, v| mac_set(&mut k.eth_src, v),
    },
    FieldInfo {
        id: FieldId::EthDst,
        name: "eth_dst",
        aliases: &["dl_dst"],
        nxm_name: "NXM_OF_ETH_DST",
        oxm: w(OXM_CLASS_BASIC, 3, 6),
        nxm: w(NXM_CLASS_OF, 1, 6),
        bits: 48,
        maskable: true,
        prereq: Prereq::None,
        format: Format::Mac,
        codec: Codec::PLAIN,
        get: |k| mac_get(&k.eth_dst),
        set: |k, v| mac_set(&mut k.eth_dst, v),
    },
    row!(
        EthType,
        "eth_type",
        ["dl_type"],
        "NXM_OF_ETH_TYPE",
        w(OXM_CLASS_BASIC, 5, 2),
        w(NXM_CLASS_OF, 3, 2),
        16,
        false,
        None,
        Hex,
        eth_type,
        u16
    ),
    row!(
        VlanTci,
        "vlan_tci",
        [],
        "NXM_OF_VLAN_TCI",
        None,
        w(NXM_CLASS_OF, 4, 2),
        16,
        true,
        None,
        Hex,
        vlan_tci,
        u16
    ),
    bits_row!(
        VlanVid,
        "vlan_vid",
        [],
        "OXM_OF_VLAN_VID",
        w(OXM_CLASS_BASIC, 6, 2),
        None,
        13,
        true,
        None,
        Decimal,
        vlan_tci,
        u16,
        0
    ),
    bits_row!(
        DlVlan,
        "dl_vlan",
        [],
        "OXM_OF_VLAN_VID",
        None,
        None,
        13,
        false,
        None,
        DlVlan,
        vlan_tci,
        u16,
        0
    ),
    // The PCP with the present bit below it; OXM_OF_VLAN_PCP carries the PCP alone and needs a
    // tagged VLAN_VID.
    FieldInfo {
        codec: Codec {
            shift: 1,
            prereq: Some(Prereq::Vlan),
            ..Codec::PLAIN
        },
        ..bits_row!(
            DlVlanPcp,
            "vlan_pcp",
            ["dl_vlan_pcp"],
            "OXM_OF_VLAN_PCP",
            w(OXM_CLASS_BASIC, 7, 1),
            None,
            4,
            false,
            None,
            DlVlanPcp,
            vlan_tci,
            u16,
            12
        )
    },
    row!(
        ArpOp,
        "arp_op",
        [],
        "NXM_OF_ARP_OP",
        w(OXM_CLASS_BASIC, 21, 2),
        w(NXM_CLASS_OF, 15, 2),
        16,
        false,
        Arp,
        Decimal,
        arp_op,
        u16
    ),
    row!(
        ArpSpa,
        "arp_spa",
        [],
        "NXM_OF_ARP_SPA",
        w(OXM_CLASS_BASIC, 22, 4),
        w(NXM_CLASS_OF, 16, 4),
        32,
        true,
        Arp,
        Ipv4,
        arp_spa,
        u32
    ),
    row!(
        ArpTpa,
        "arp_tpa",
        [],
        "NXM_OF_ARP_TPA",
        w(OXM_CLASS_BASIC, 23, 4),
        w(NXM_CLASS_OF, 17, 4),
        32,
        true,
        Arp,
        Ipv4,
        arp_tpa,
        u32
    ),
    FieldInfo {
        id: FieldId::ArpSha,
        name: "arp_sha",
        aliases: &[],
        nxm_name: "NXM_NX_ARP_SHA",
        oxm: w(OXM_CLASS_BASIC, 24, 6),
        nxm: w(NXM_CLASS_NX, 17, 6),
        bits: 48,
        maskable: true,
        prereq: Prereq::Arp,
        format: Format::Mac,
        codec: Codec::PLAIN,
        get: |k| mac_get(&k.arp_sha),
        set: |k, v| mac_set(&mut k.arp_sha, v),
    },
    FieldInfo {
        id: FieldId::ArpTha,
        name: "arp_tha",
        aliases: &[],
        nxm_name: "NXM_NX_ARP_THA",
        oxm: w(OXM_CLASS_BASIC, 25, 6),
        nxm: w(NXM_CLASS_NX, 18, 6),
        bits: 48,
        maskable: true,
        prereq: Prereq::Arp,
        format: Format::Mac,
        codec: Codec::PLAIN,
        get: |k| mac_get(&k.arp_tha),
        set: |k, v| mac_set(&mut k.arp_tha, v),
    },
    row!(
        Ipv4Src,
        "ip_src",
        ["nw_src"],
        "NXM_OF_IP_SRC",
        w(OXM_CLASS_BASIC, 11, 4),
        w(NXM_CLASS_OF, 7, 4),
        32,
        true,
        Ipv4,
        Ipv4,
        nw_src,
        u32
    ),
    row!(
        Ipv4Dst,
        "ip_dst",
        ["nw_dst"],
        "NXM_OF_IP_DST",
        w(OXM_CLASS_BASIC, 12, 4),
        w(NXM_CLASS_OF, 8, 4),
        32,
        true,
        Ipv4,
        Ipv4,
        nw_dst,
        u32
    ),
    FieldInfo {
        id: FieldId::Ipv6Src,
        name: "ipv6_src",
        aliases: &[],
        nxm_name: "NXM_NX_IPV6_SRC",
        oxm: w(OXM_CLASS_BASIC, 26, 16),
        nxm: w(NXM_CLASS_NX, 19, 16),
        bits: 128,
        maskable: true,
        prereq: Prereq::Ipv6,
        format: Format::Ipv6,
        codec: Codec::PLAIN,
        get: |k| v6_get(&k.ipv6_src),
        set: |k, v| v6_set(&mut k.ipv6_src, v),
    },
    FieldInfo {
        id: FieldId::Ipv6Dst,
        name: "ipv6_dst",
        aliases: &[],
        nxm_name: "NXM_NX_IPV6_DST",
        oxm: w(OXM_CLASS_BASIC, 27, 16),
        nxm: w(NXM_CLASS_NX, 20, 16),
        bits: 128,
        maskable: true,
        prereq: Prereq::Ipv6,
        format: Format::Ipv6,
        codec: Codec::PLAIN,
        get: |k| v6_get(&k.ipv6_dst),
        set: |k, v| v6_set(&mut k.ipv6_dst, v),
    },
    bits_row!(
        Ipv6Label,
        "ipv6_label",
        [],
        "NXM_NX_IPV6_LABEL",
        w(OXM_CLASS_BASIC, 28, 4),
        w(NXM_CLASS_NX, 27, 4),
        20,
        true,
        Ipv6,
        Hex,
        ipv6_label,
        u32,
        0
    ),
    row!(
        IpProto,
        "nw_proto",
        ["ip_proto"],
        "NXM_OF_IP_PROTO",
        w(OXM_CLASS_BASIC, 10, 1),
        w(NXM_CLASS_OF, 6, 1),
        8,
        false,
        Ip,
        Decimal,
        nw_proto,
        u8
    ),
    bits_row!(
        IpDscp,
        "ip_dscp",
        [],
        "OXM_OF_IP_DSCP",
        w(OXM_CLASS_BASIC, 8, 1),
        None,
        6,
        false,
        Ip,
        Decimal,
        nw_tos,
        u8,
        2
    ),
    FieldInfo {
        id: FieldId::NwTos,
        name: "nw_tos",
        aliases: &[],
        nxm_name: "NXM_OF_IP_TOS",
        oxm: None,
        nxm: w(NXM_CLASS_OF, 5, 1),
        bits: 8,
        maskable: false,
        prereq: Prereq::Ip,
        format: Format::Decimal,
        codec: Codec {
            decoded: false,
            ..Codec::PLAIN
        },
        get: |k| (k.nw_tos & 0xfc) as u128,
        set: |k, v| k.nw_tos = (k.nw_tos & 0x03) | (v as u8 & 0xfc),
    },
    bits_row!(
        IpEcn,
        "nw_ecn",
        ["ip_ecn"],
        "NXM_NX_IP_ECN",
        w(OXM_CLASS_BASIC, 9, 1),
        w(NXM_CLASS_NX, 28, 1),
        2,
        false,
        Ip,
        Decimal,
        nw_tos,
        u8,
        0
    ),
    row!(
        NwTtl,
        "nw_ttl",
        [],
        "NXM_NX_IP_TTL",
        None,
        w(NXM_CLASS_NX, 29, 1),
        8,
        false,
        Ip,
        Decimal,
        nw_ttl,
        u8
    ),
    bits_row!(
        IpFrag,
        "nw_frag",
        ["ip_frag"],
        "NXM_NX_IP_FRAG",
        None,
        w(NXM_CLASS_NX, 26, 1),
        2,
        true,
        Ip,
        Frag,
        nw_frag,
        u8,
        0
    ),
    row!(
        TpSrc,
        "tp_src",
        [],
        "NXM_OF_TCP_SRC",
        None,
        None,
        16,
        true,
        L4,
        Decimal,
        tp_src,
        u16
    ),
    row!(
        TpDst,
        "tp_dst",
        [],
        "NXM_OF_TCP_DST",
        None,
        None,
        16,
        true,
        L4,
        Decimal,
        tp_dst,
        u16
    ),
    row!(
        TcpSrc,
        "tcp_src",
        [],
        "NXM_OF_TCP_SRC",
        w(OXM_CLASS_BASIC, 13, 2),
        w(NXM_CLASS_OF, 9, 2),
        16,
        true,
        Tcp,
        Decimal,
        tp_src,
        u16
    ),
    row!(
        TcpDst,
        "tcp_dst",
        [],
        "NXM_OF_TCP_DST",
        w(OXM_CLASS_BASIC, 14, 2),
        w(NXM_CLASS_OF, 10, 2),
        16,
        true,
        Tcp,
        Decimal,
        tp_dst,
        u16
    ),
    row!(
        UdpSrc,
        "udp_src",
        [],
        "NXM_OF_UDP_SRC",
        w(OXM_CLASS_BASIC, 15, 2),
        w(NXM_CLASS_OF, 11, 2),
        16,
        true,
        Udp,
        Decimal,
        tp_src,
        u16
    ),
    row!(
        UdpDst,
        "udp_dst",
        [],
        "NXM_OF_UDP_DST",
        w(OXM_CLASS_BASIC, 16, 2),
        w(NXM_CLASS_OF, 12, 2),
        16,
        true,
        Udp,
        Decimal,
        tp_dst,
        u16
    ),
    row!(
        SctpSrc,
        "sctp_src",
        [],
        "OXM_OF_SCTP_SRC",
        w(OXM_CLASS_BASIC, 17, 2),
        None,
        16,
        true,
        Sctp,
        Decimal,
        tp_src,
        u16
    ),
    row!(
        SctpDst,
        "sctp_dst",
        [],
        "OXM_OF_SCTP_DST",
        w(OXM_CLASS_BASIC, 18, 2),
        None,
        16,
        true,
        Sctp,
        Decimal,
        tp_dst,
        u16
    ),
    bits_row!(
        TcpFlags,
        "tcp_flags",
        [],
        "NXM_NX_TCP_FLAGS",
        w(OXM_CLASS_EXPERIMENTER, ONFOXM_ET_TCP_FLAGS, 2),
        w(NXM_CLASS_NX, 34, 2),
        12,
        true,
        Tcp,
        TcpFlags,
        tcp_flags,
        u16,
        0
    ),
    row!(
        IcmpType,
        "icmp_type",
        ["icmpv4_type"],
        "NXM_OF_ICMP_TYPE",
        w(OXM_CLASS_BASIC, 19, 1),
        w(NXM_CLASS_OF, 13, 1),
        8,
        false,
        Icmp,
        Decimal,
        icmp_type,
        u8
    ),
    row!(
        IcmpCode,
        "icmp_code",
        ["icmpv4_code"],
        "NXM_OF_ICMP_CODE",
        w(OXM_CLASS_BASIC, 20, 1),
        w(NXM_CLASS_OF, 14, 1),
        8,
        false,
        Icmp,
        Decimal,
        icmp_code,
        u8
    ),
    row!(
        Icmpv6Type,
        "icmpv6_type",
        [],
        "NXM_NX_ICMPV6_TYPE",
        w(OXM_CLASS_BASIC, 29, 1),
        w(NXM_CLASS_NX, 21, 1),
        8,
        false,
        Icmpv6,
        Decimal,
        icmp_type,
        u8
    ),
    row!(
        Icmpv6Code,
        "icmpv6_code",
        [],
        "NXM_NX_ICMPV6_CODE",
        w(OXM_CLASS_BASIC, 30, 1),
        w(NXM_CLASS_NX, 22, 1),
        8,
        false,
        Icmpv6,
        Decimal,
        icmp_code,
        u8
    ),
    FieldInfo {
        id: FieldId::NdTarget,
        name: "nd_target",
        aliases: &[],
        nxm_name: "NXM_NX_ND_TARGET",
        oxm: w(OXM_CLASS_BASIC, 31, 16),
        nxm: w(NXM_CLASS_NX, 23, 16),
        bits: 128,
        maskable: true,
        prereq: Prereq::Nd,
        format: Format::Ipv6,
        codec: Codec::PLAIN,
        get: |k| v6_get(&k.nd_target),
        set: |k, v| v6_set(&mut k.nd_target, v),
    },
    FieldInfo {
        id: FieldId::NdSll,
        name: "nd_sll",
        aliases: &[],
        nxm_name: "NXM_NX_ND_SLL",
        oxm: w(OXM_CLASS_BASIC, 32, 6),
        nxm: w(NXM_CLASS_NX, 24, 6),
        bits: 48,
        maskable: true,
        prereq: Prereq::NdSolicit,
        format: Format::Mac,
        codec: Codec::PLAIN,
        get: |k| mac_get(&k.arp_sha),
        set: |k, v| mac_set(&mut k.arp_sha, v),
    },
    FieldInfo {
        id: FieldId::NdTll,
        name: "nd_tll",
        aliases: &[],
        nxm_name: "NXM_NX_ND_TLL",
        oxm: w(OXM_CLASS_BASIC, 33, 6),
        nxm: w(NXM_CLASS_NX, 25, 6),
        bits: 48,
        maskable: true,
        prereq: Prereq::NdAdvert,
        format: Format::Mac,
        codec: Codec::PLAIN,
        get: |k| mac_get(&k.arp_tha),
        set: |k, v| mac_set(&mut k.arp_tha, v),
    },
];

impl FieldId {
    /// `reg0`..`reg15`, in order.
    pub const REGS: [FieldId; 16] = [
        FieldId::Reg0,
        FieldId::Reg1,
        FieldId::Reg2,
        FieldId::Reg3,
        FieldId::Reg4,
        FieldId::Reg5,
        FieldId::Reg6,
        FieldId::Reg7,
        FieldId::Reg8,
        FieldId::Reg9,
        FieldId::Reg10,
        FieldId::Reg11,
        FieldId::Reg12,
        FieldId::Reg13,
        FieldId::Reg14,
        FieldId::Reg15,
    ];

    /// The field's table row.
    pub fn info(self) -> &'static FieldInfo {
        &FIELDS[self as usize]
    }

    /// Looks a field up by its text name or alias (`nw_src`, `ip_src`, `dl_type`, ...).
    pub fn from_name(name: &str) -> Option<FieldId> {
        FIELDS
            .iter()
            .find(|f| f.name == name || f.aliases.contains(&name))
            .map(|f| f.id)
    }

    /// Looks a field up by its NXM/OXM name (`NXM_NX_REG0`, `OXM_OF_METADATA`), as used in
    /// `load:`/`move:` subfields. Generic L4 ports and `dl_vlan` are skipped so that each
    /// NXM name maps to one field.
    pub fn from_nxm_name(name: &str) -> Option<FieldId> {
        FIELDS
            .iter()
            .filter(|f| !matches!(f.id, FieldId::TpSrc | FieldId::TpDst | FieldId::DlVlan))
            .find(|f| f.nxm_name.eq_ignore_ascii_case(name))
            .map(|f| f.id)
    }

    /// Looks a wire header (OXM or NXM class and field number) up among the fields the
    /// OpenFlow codec carries: the field and the spelling, with its length, that matched.
    pub fn from_wire(class: u16, field: u8) -> Option<(FieldId, WireId)> {
        FIELDS.iter().filter(|f| f.codec.decoded).find_map(|f| {
            [f.oxm, f.nxm]
                .into_iter()
                .flatten()
                .find(|w| w.class == class && w.field == field)
                .map(|w| (f.id, w))
        })
    }

    /// True for a write of `value` under `mask` that leaves `vlan_vid` without its
    /// VLAN-present bit (`OFPVID_PRESENT`, 0x1000). OpenFlow 1.3 sets a VID with the bit on,
    /// and Open vSwitch refuses one without it (`OFPBAC_BAD_SET_ARGUMENT`, "Invalid value for
    /// set field vlan_vid"): removing a tag is `pop_vlan`'s job.
    pub fn clears_vlan_present(self, value: u128, mask: u128) -> bool {
        const OFPVID_PRESENT: u128 = 0x1000;
        self == FieldId::VlanVid && mask & OFPVID_PRESENT != 0 && value & OFPVID_PRESENT == 0
    }

    /// All names the parser accepts, for "did you mean" suggestions.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        FIELDS
            .iter()
            .flat_map(|f| core::iter::once(f.name).chain(f.aliases.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_enum() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.id as usize, i, "row {i} is {:?}", f.name);
        }
        assert_eq!(FieldId::NdTll as usize + 1, FIELDS.len());
    }

    #[test]
    fn bit_range_accessors_touch_only_their_bits() {
        let mut k = FlowKey {
            vlan_tci: 0xffff,
            ..FlowKey::default()
        };
        (FieldId::VlanVid.info().set)(&mut k, 0);
        assert_eq!(k.vlan_tci, 0xe000);
        (FieldId::DlVlanPcp.info().set)(&mut k, 0b0111);
        assert_eq!(k.vlan_tci, 0x7000);
        assert_eq!((FieldId::DlVlanPcp.info().get)(&k), 0b0111);
        let mut k = FlowKey::default();
        (FieldId::EthSrc.info().set)(&mut k, 0x0011_2233_4455);
        assert_eq!(k.eth_src, [0, 0x11, 0x22, 0x33, 0x44, 0x55]);
    }

    #[test]
    fn names_resolve() {
        assert_eq!(FieldId::from_name("nw_src"), Some(FieldId::Ipv4Src));
        assert_eq!(FieldId::from_name("dl_vlan_pcp"), Some(FieldId::DlVlanPcp));
        assert_eq!(FieldId::from_nxm_name("NXM_NX_REG1"), Some(FieldId::Reg1));
        assert_eq!(
            FieldId::from_nxm_name("NXM_OF_TCP_SRC"),
            Some(FieldId::TcpSrc)
        );
        assert_eq!(
            FieldId::from_wire(OXM_CLASS_BASIC, 38),
            Some((
                FieldId::TunId,
                WireId {
                    class: OXM_CLASS_BASIC,
                    field: 38,
                    len: 8
                }
            ))
        );
        assert_eq!(
            FieldId::from_wire(NXM_CLASS_OF, 0).map(|(f, w)| (f, w.len)),
            Some((FieldId::InPort, 2))
        );
        // NXM_OF_IP_TOS only names load/move subfields; the codec does not decode it.
        assert_eq!(FieldId::from_wire(NXM_CLASS_OF, 5), None);
        assert_eq!(FieldId::NwTos.info().match_wire(), None);
        assert!(FieldId::NwTos.info().subfield_wire().is_some());
    }

    #[test]
    fn wire_ids_are_unique_and_fit_the_field() {
        let mut seen = std::collections::HashSet::new();
        for f in FIELDS {
            for w in [f.oxm, f.nxm].into_iter().flatten() {
                assert!(seen.insert((w.class, w.field)), "{f:?}: {w:?} twice");
            }
            // (NXM_OF_IN_PORT is the 16-bit OpenFlow 1.0 port, widened on decode.)
            if let Some(w) = f.match_wire() {
                assert!(
                    u32::from(f.bits) - u32::from(f.codec.shift) <= u32::from(w.len) * 8,
                    "{f:?} does not fit {w:?}"
                );
            }
        }
    }

    #[test]
    fn preferred_spellings() {
        let m = |id: FieldId| id.info().match_wire().map(|w| (w.class, w.field));
        assert_eq!(m(FieldId::TunId), Some((OXM_CLASS_BASIC, 38)));
        assert_eq!(m(FieldId::VlanTci), Some((NXM_CLASS_OF, 4)));
        assert_eq!(m(FieldId::Reg3), Some((NXM_CLASS_NX, 3)));
        assert_eq!(m(FieldId::TpSrc), None);
        // As ovs-ofctl -O OpenFlow13: the ONF experimenter OXM, not NXM_NX_TCP_FLAGS.
        assert_eq!(
            m(FieldId::TcpFlags),
            Some((OXM_CLASS_EXPERIMENTER, ONFOXM_ET_TCP_FLAGS))
        );
        let s = |id: FieldId| id.info().subfield_wire().map(|w| (w.class, w.field));
        assert_eq!(s(FieldId::TunId), Some((NXM_CLASS_NX, 16)));
        assert_eq!(s(FieldId::Metadata), Some((OXM_CLASS_BASIC, 2)));
        assert_eq!(s(FieldId::TcpFlags), Some((NXM_CLASS_NX, 34)));
    }

    #[test]
    fn vlan_pcp_wire_form_is_the_bare_pcp() {
        let pcp = FieldId::DlVlanPcp.info();
        assert_eq!(pcp.wire_full_mask(), 0x7);
        assert_eq!(pcp.wire_prereq(), Prereq::Vlan);
        assert_eq!(pcp.prereq, Prereq::None);
        let mut k = FlowKey {
            vlan_tci: 0x1000 | 42,
            ..FlowKey::default()
        };
        pcp.wire_set(&mut k, 5);
        assert_eq!(k.vlan_tci, 0xa000 | 0x1000 | 42);
        assert_eq!(pcp.wire_get(&k), 5);
        assert_eq!((pcp.get)(&k), 0b1011);
    }
}
