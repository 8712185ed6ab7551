//! `Match`: a value and a mask over [`FlowKey`], in the layout the classifier uses directly.
//!
//! Invariant: `value == value & mask` (bits outside the mask are zero), so two matches that
//! select the same packets compare and hash equal.

use encap::flowkey::FlowKey;

use crate::fields::{FieldId, FieldInfo, Prereq};

/// Errors from building a match field by field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The value has bits beyond the field's width.
    #[error("value 0x{value:x} does not fit in {field} ({bits} bits)")]
    ValueTooWide {
        field: &'static str,
        value: u128,
        bits: u8,
    },
    /// A mask was given for a field OpenFlow does not allow masking.
    #[error("field {0} cannot be masked")]
    NotMaskable(&'static str),
    /// The field's prerequisite is not matched.
    #[error("field {field} needs a match on {needs} first")]
    Prereq {
        field: &'static str,
        needs: &'static str,
    },
}

/// An OpenFlow match: `value` and `mask` have the [`FlowKey`] layout; a set mask bit means
/// "this bit must equal the value's bit".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub value: FlowKey,
    pub mask: FlowKey,
}

pub const ETH_TYPE_IP: u16 = 0x0800;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const ETH_TYPE_RARP: u16 = 0x8035;
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
/// ICMPv6 neighbor solicitation / advertisement.
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;

impl Match {
    /// The match-everything match.
    pub fn any() -> Match {
        Match::default()
    }

    /// True when nothing is matched.
    pub fn is_catchall(&self) -> bool {
        self.mask == FlowKey::default()
    }

    /// Matches `field` against `value` under `mask` (`None` = exact). The mask is clipped to
    /// the field width and the value to the mask.
    pub fn set(
        &mut self,
        field: FieldId,
        value: u128,
        mask: Option<u128>,
    ) -> Result<(), MatchError> {
        let info = field.info();
        let full = info.full_mask();
        if value & !full != 0 {
            return Err(MatchError::ValueTooWide {
                field: info.name,
                value,
                bits: info.bits,
            });
        }
        let mask = match mask {
            Some(m) if m & full != full && !info.maskable => {
                return Err(MatchError::NotMaskable(info.name));
            }
            Some(m) => m & full,
            None => full,
        };
        (info.set)(&mut self.mask, mask);
        (info.set)(&mut self.value, value & mask);
        Ok(())
    }

    /// The field's (value, mask); a zero mask means "not matched".
    pub fn get(&self, field: FieldId) -> (u128, u128) {
        let info = field.info();
        ((info.get)(&self.value), (info.get)(&self.mask))
    }

    /// True when any bit of the field is matched.
    pub fn has(&self, field: FieldId) -> bool {
        (field.info().get)(&self.mask) != 0
    }

    /// Un-matches the field entirely.
    pub fn clear(&mut self, field: FieldId) {
        let info = field.info();
        (info.set)(&mut self.mask, 0);
        (info.set)(&mut self.value, 0);
    }

    /// The exactly matched Ethernet type, if any.
    pub fn eth_type(&self) -> Option<u16> {
        (self.mask.eth_type == 0xffff).then_some(self.value.eth_type)
    }

    /// The exactly matched IP protocol, if any (only meaningful for IP flows).
    pub fn nw_proto(&self) -> Option<u8> {
        (self.mask.nw_proto == 0xff).then_some(self.value.nw_proto)
    }

    /// True when the match requires a VLAN tag (CFI/present bit matched as 1).
    pub fn has_vlan(&self) -> bool {
        self.mask.vlan_tci & encap::flowkey::VLAN_PRESENT != 0
            && self.value.vlan_tci & encap::flowkey::VLAN_PRESENT != 0
    }

    /// "No VLAN tag" as Open vSwitch keeps it: a match on the present bit as 0 with every other
    /// matched bit 0 keeps only the VID and present bit (`vlan_tci=0` is `0x0000/0x1fff`; an untagged
    /// frame's TCI is all zero, and OpenFlow 1.3 carries no PCP without a VID). Every way a flow
    /// comes in (text, OpenFlow, a saved state) then names the same flow.
    pub fn untagged_as_open_vswitch(&self) -> Option<Match> {
        let (v, m) = (self.value.vlan_tci, self.mask.vlan_tci);
        if m & encap::flowkey::VLAN_PRESENT == 0 || v & m != 0 || m & !0x1fff == 0 {
            return None;
        }
        let mut out = *self;
        out.mask.vlan_tci = m & 0x1fff;
        out.value.vlan_tci = 0;
        Some(out)
    }

    /// True when `p` is satisfied by what this match pins down.
    pub fn satisfies(&self, p: Prereq) -> bool {
        let et = self.eth_type();
        let ip4 = et == Some(ETH_TYPE_IP);
        let ip6 = et == Some(ETH_TYPE_IPV6);
        let ip = ip4 || ip6;
        let proto = self.nw_proto();
        match p {
            Prereq::None => true,
            Prereq::Vlan => self.has_vlan(),
            Prereq::Ipv4 => ip4,
            Prereq::Ipv6 => ip6,
            Prereq::Ip => ip,
            // RARP frames carry the ARP fields too (Open vSwitch parses both alike).
            Prereq::Arp => matches!(et, Some(ETH_TYPE_ARP | ETH_TYPE_RARP)),
            Prereq::Tcp => ip && proto == Some(IPPROTO_TCP),
            Prereq::Udp => ip && proto == Some(IPPROTO_UDP),
            Prereq::Sctp => ip && proto == Some(IPPROTO_SCTP),
            Prereq::L4 => ip && matches!(proto, Some(IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)),
            Prereq::Icmp => ip4 && proto == Some(IPPROTO_ICMP),
            Prereq::Icmpv6 => ip6 && proto == Some(IPPROTO_ICMPV6),
            // As Open vSwitch's is_nd(): the type and code values, 0 when not matched.
            Prereq::Nd | Prereq::NdSolicit | Prereq::NdAdvert => {
                ip6 && proto == Some(IPPROTO_ICMPV6)
                    && self.value.icmp_code == 0
                    && match p {
                        Prereq::NdSolicit => self.value.icmp_type == ND_NEIGHBOR_SOLICIT,
                        Prereq::NdAdvert => self.value.icmp_type == ND_NEIGHBOR_ADVERT,
                        _ => matches!(
                            self.value.icmp_type,
                            ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT
                        ),
                    }
            }
            Prereq::Ct | Prereq::CtIpv4 | Prereq::CtIpv6 => {
                crate::fields::ct_state_valid(self.value.ct_state, self.mask.ct_state)
                    && match p {
                        Prereq::CtIpv4 => ip4,
                        Prereq::CtIpv6 => ip6,
                        _ => true,
                    }
            }
        }
    }

    /// Whether field `f`'s prerequisite holds (or `f` is not matched).
    fn prereq_holds(&self, f: &FieldInfo) -> bool {
        if f.prereq == Prereq::None || (f.get)(&self.mask) == 0 || self.satisfies(f.prereq) {
            return true;
        }
        // Generic and protocol-specific L4 ports share storage: accept whichever protocol the
        // flow actually names. `tcp_flags` has bits of its own and is TCP's alone.
        if matches!(f.prereq, Prereq::Tcp | Prereq::Udp | Prereq::Sctp)
            && f.id != FieldId::TcpFlags
            && self.satisfies(Prereq::L4)
        {
            return true;
        }
        // ICMPv4 and ICMPv6 type/code share storage too.
        if matches!(f.prereq, Prereq::Icmp | Prereq::Icmpv6)
            && (self.satisfies(Prereq::Icmp) || self.satisfies(Prereq::Icmpv6))
        {
            return true;
        }
        // The ARP hardware addresses and the ND link-layer address options share storage: an
        // IPv6 flow's bits are nd_sll/nd_tll (checked on their own rows), an ARP flow's are
        // arp_sha/arp_tha.
        (matches!(f.id, FieldId::ArpSha | FieldId::ArpTha)
            && self.eth_type() == Some(ETH_TYPE_IPV6))
            || (matches!(f.id, FieldId::NdSll | FieldId::NdTll) && self.satisfies(Prereq::Arp))
    }

    /// Checks every matched field's prerequisite (OpenFlow `OFPBMC_BAD_PREREQ`).
    pub fn check_prereqs(&self) -> Result<(), MatchError> {
        for f in crate::fields::FIELDS {
            if !self.prereq_holds(f) {
                return Err(MatchError::Prereq {
                    field: f.name,
                    needs: f.prereq.hint(),
                });
            }
        }
        Ok(())
    }

    /// The megaflow of packet `key` under wildcards `wc` as a valid flow match (what
    /// `trace` prints): a field the packet does not have (`arp_op` of a TCP packet, the ports
    /// of an ICMP one: a lookup in another protocol's subtable looks at them, and they are 0)
    /// is left out, and a field the packet has brings the packet's Ethernet type, IP protocol
    /// (and ICMP type/code for ND fields) along when the wildcards left them out.
    pub fn from_megaflow(key: &FlowKey, wc: &FlowKey) -> Match {
        let packet = Match {
            value: *key,
            mask: FlowKey::exact_mask(),
        };
        let mut m = Match {
            value: key.masked(wc),
            mask: *wc,
        };
        // Clearing or widening one field can change another's prerequisite: repeat until
        // nothing changes (the prerequisites are at most a few levels deep).
        for _ in 0..4 {
            let mut changed = false;
            for f in crate::fields::FIELDS {
                if m.prereq_holds(f) {
                    continue;
                }
                changed = true;
                if packet.prereq_holds(f) {
                    let mask = &mut m.mask;
                    match f.prereq {
                        Prereq::None => {}
                        Prereq::Vlan => mask.vlan_tci |= encap::flowkey::VLAN_PRESENT,
                        Prereq::Ipv4 | Prereq::Ipv6 | Prereq::Ip | Prereq::Arp => {
                            mask.eth_type = u16::MAX
                        }
                        Prereq::Tcp
                        | Prereq::Udp
                        | Prereq::Sctp
                        | Prereq::L4
                        | Prereq::Icmp
                        | Prereq::Icmpv6 => (mask.eth_type, mask.nw_proto) = (u16::MAX, u8::MAX),
                        Prereq::Nd | Prereq::NdSolicit | Prereq::NdAdvert => {
                            (mask.eth_type, mask.nw_proto) = (u16::MAX, u8::MAX);
                            (mask.icmp_type, mask.icmp_code) = (u8::MAX, u8::MAX);
                        }
                        Prereq::Ct => mask.ct_state = u8::MAX,
                        Prereq::CtIpv4 | Prereq::CtIpv6 => {
                            (mask.ct_state, mask.eth_type) = (u8::MAX, u16::MAX)
                        }
                    }
                    m.value = key.masked(&m.mask);
                }
                if !m.prereq_holds(f) {
                    (f.set)(&mut m.mask, 0);
                    m.value = key.masked(&m.mask);
                }
            }
            if !changed {
                break;
            }
        }
        m
    }

    /// True when every packet this match accepts is also accepted by `wider`
    /// (OpenFlow "loose" matching: `wider` is the filter).
    pub fn is_subset_of(&self, wider: &Match) -> bool {
        self.mask
            .words()
            .iter()
            .zip(wider.mask.words())
            .zip(self.value.words().iter().zip(wider.value.words()))
            .all(|((sm, wm), (sv, wv))| wm & !sm == 0 && (sv & wm) == *wv)
    }

    /// True when `key` (a packet's flow key) is accepted.
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.matches_masked(&self.value, &self.mask)
    }

    /// True when some packet could match both `self` and `other` (for `check_overlap`).
    pub fn overlaps(&self, other: &Match) -> bool {
        let both = self.mask.masked(&other.mask);
        self.value.matches_masked(&other.value, &both)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clips_value_to_mask_and_checks_width() {
        let mut m = Match::any();
        m.set(FieldId::Reg1, 0x1234, Some(0xff)).unwrap();
        assert_eq!(m.get(FieldId::Reg1), (0x34, 0xff));
        assert!(m.set(FieldId::IpProto, 0x100, None).is_err());
        assert_eq!(
            m.set(FieldId::InPort, 1, Some(1)),
            Err(MatchError::NotMaskable("in_port"))
        );
    }

    #[test]
    fn subset_and_overlap() {
        let mut wide = Match::any();
        wide.set(FieldId::EthType, 0x0800, None).unwrap();
        let mut narrow = wide;
        narrow.set(FieldId::Ipv4Src, 0x0a00_0001, None).unwrap();
        assert!(narrow.is_subset_of(&wide));
        assert!(!wide.is_subset_of(&narrow));
        assert!(narrow.overlaps(&wide));
        let mut other = Match::any();
        other.set(FieldId::EthType, 0x0806, None).unwrap();
        assert!(!other.overlaps(&narrow));
    }

    #[test]
    fn tcp_flags_need_tcp_not_just_an_l4_protocol() {
        let mut m = Match::any();
        m.set(FieldId::EthType, 0x0800, None).unwrap();
        m.set(FieldId::IpProto, 17, None).unwrap();
        m.set(FieldId::TcpFlags, 2, Some(2)).unwrap();
        assert!(matches!(
            m.check_prereqs(),
            Err(MatchError::Prereq {
                field: "tcp_flags",
                ..
            })
        ));
        m.set(FieldId::IpProto, 6, None).unwrap();
        m.check_prereqs().unwrap();
    }

    #[test]
    fn prereqs_are_enforced() {
        let mut m = Match::any();
        m.set(FieldId::TpDst, 80, None).unwrap();
        assert!(m.check_prereqs().is_err());
        m.set(FieldId::EthType, 0x0800, None).unwrap();
        m.set(FieldId::IpProto, 17, None).unwrap();
        m.check_prereqs().unwrap();
    }

    /// A megaflow's wildcards may cover fields of other protocols (a TCP packet's lookup in
    /// an ARP subtable looks at its zero `arp_op`): the match made of them leaves those out,
    /// brings the prerequisites of the packet's own fields along, and is valid flow syntax.
    #[test]
    fn megaflow_matches_keep_only_the_packets_own_fields() {
        let tcp = FlowKey {
            in_port: 1,
            eth_type: ETH_TYPE_IP,
            nw_proto: IPPROTO_TCP,
            nw_dst: 0x0a00_0002,
            tp_dst: 80,
            tcp_flags: 2,
            ..Default::default()
        };
        let wc = FlowKey {
            in_port: u32::MAX,
            nw_dst: u32::MAX,
            arp_op: u16::MAX,
            icmp_type: u8::MAX,
            icmp_code: u8::MAX,
            tp_dst: u16::MAX,
            tcp_flags: 0x0fff,
            nd_target: [0xff; 16],
            ..Default::default()
        };
        let m = Match::from_megaflow(&tcp, &wc);
        m.check_prereqs().unwrap();
        let mut want = Match::any();
        for (f, v) in [
            (FieldId::InPort, 1),
            (FieldId::EthType, ETH_TYPE_IP as u128),
            (FieldId::IpProto, IPPROTO_TCP as u128),
            (FieldId::Ipv4Dst, 0x0a00_0002),
            (FieldId::TpDst, 80),
            (FieldId::TcpFlags, 2),
        ] {
            want.set(f, v, None).unwrap();
        }
        assert_eq!(m, want);

        let arp = FlowKey {
            eth_type: ETH_TYPE_ARP,
            arp_op: 1,
            ..Default::default()
        };
        let wc = FlowKey {
            eth_type: u16::MAX,
            nw_proto: u8::MAX,
            ..wc
        };
        let m = Match::from_megaflow(&arp, &wc);
        m.check_prereqs().unwrap();
        let mut want = Match::any();
        want.set(FieldId::InPort, 0, None).unwrap();
        want.set(FieldId::EthType, ETH_TYPE_ARP as u128, None)
            .unwrap();
        want.set(FieldId::ArpOp, 1, None).unwrap();
        assert_eq!(m, want);
    }
}
