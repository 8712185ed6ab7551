//! `FlowKey`: every field the flow table can match on, extracted in one pass.
//!
//! The key is grouped the way Open vSwitch groups `struct flow`: pipeline metadata, tunnel,
//! conntrack, L2, L3, L4. It is `repr(C)`, 8-byte aligned and free of implicit padding, so it can
//! be viewed as `[u64; FlowKey::WORDS]` and a masked compare (or a masked hash) is a loop over
//! words. A `FlowKey` used as a *mask* has the same layout: a set bit means "this bit matters".
//!
//! Numeric fields are stored in host byte order (so `tp_dst == 80` reads naturally); MAC
//! addresses and IPv6 addresses are stored as wire bytes.
//!
//! Field conventions (shared with `flowtable`):
//! - `vlan_tci`: the 802.1Q TCI of the outermost tag with the CFI bit (`0x1000`) set when a tag
//!   is present — the OpenFlow `OFPVID_PRESENT` convention; 0 means "no tag".
//! - `eth_type`: the type after any VLAN tags.
//! - `nw_frag`: [`FRAG_ANY`] when the packet is a fragment, plus [`FRAG_LATER`] when it is not
//!   the first fragment (then L4 fields are zero).
//! - ARP and RARP: `arp_op`, `arp_spa`, `arp_tpa`, `arp_sha`, `arp_tha` (IPv4 over Ethernet only).
//! - ICMPv4/ICMPv6: `icmp_type`, `icmp_code`; `tp_src`/`tp_dst` stay zero.
//! - IPv6 neighbor discovery (ICMPv6 type 135/136, code 0): `nd_target`, and the source /
//!   target link-layer address options in `arp_sha` / `arp_tha` (`nd_sll` / `nd_tll`), which
//!   ARP and ND never both use — Open vSwitch's `struct flow` shares them the same way.
//! - `ct_state`: the `CT_*` bits below, set by the conntrack stage, zero before it.

use bytemuck::{Pod, Zeroable};

/// `ct_state` bits, with the values Open vSwitch uses on the wire (NXM_NX_CT_STATE).
pub const CT_NEW: u8 = 0x01;
pub const CT_EST: u8 = 0x02;
pub const CT_REL: u8 = 0x04;
pub const CT_RPL: u8 = 0x08;
pub const CT_INV: u8 = 0x10;
pub const CT_TRK: u8 = 0x20;
pub const CT_SNAT: u8 = 0x40;
pub const CT_DNAT: u8 = 0x80;

/// `nw_frag` bits (OVS `FLOW_NW_FRAG_ANY` / `FLOW_NW_FRAG_LATER`).
pub const FRAG_ANY: u8 = 0x01;
pub const FRAG_LATER: u8 = 0x02;

/// `vlan_tci` bit meaning "a VLAN tag is present" (OpenFlow `OFPVID_PRESENT`).
pub const VLAN_PRESENT: u16 = 0x1000;

#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FlowKey {
    // --- pipeline metadata (set by the caller / the OpenFlow pipeline) ---
    pub in_port: u32,
    /// Recirculation id: 0 for a packet fresh from a port, else the id of the `ct(table=..)`
    /// recirculation it comes back from.
    pub recirc_id: u32,
    pub metadata: u64,
    /// `reg0`..`reg15` (`xreg<N>` is `reg<2N>`:`reg<2N+1>`, `xxreg<N>` four of them, high first).
    pub regs: [u32; 16],
    // --- tunnel metadata (set by VXLAN decap or by set_field) ---
    pub tun_id: u64,
    /// Outer IPv4 source/destination (host order). IPv6 underlay would add fields here.
    pub tun_src: u32,
    pub tun_dst: u32,
    /// Packet mark (`pkt_mark`, the skb mark in Linux terms): pipeline metadata, 0 on receive.
    pub pkt_mark: u32,
    /// The conjunction id a conjunctive match found (`conj_id`); only set by the classifier
    /// during the lookup that follows a completed conjunction, 0 in every packet's key.
    pub conj_id: u32,
    // --- conntrack ---
    pub ct_mark: u32,
    pub ct_zone: u16,
    pub ct_state: u8,
    /// The connection's original-direction tuple (`ct_nw_proto`, `ct_nw_src`/`ct_nw_dst` or
    /// `ct_ipv6_src`/`ct_ipv6_dst`, `ct_tp_src`/`ct_tp_dst`: ICMP type and code for ICMP), set
    /// by the conntrack stage for a tracked packet that is not invalid, zero otherwise.
    pub ct_nw_proto: u8,
    pub ct_nw_src: u32,
    pub ct_nw_dst: u32,
    pub ct_tp_src: u16,
    pub ct_tp_dst: u16,
    pub _pad0: u32,
    /// The connection's 128-bit label (`ct_label`), as big-endian bytes.
    pub ct_label: [u8; 16],
    pub ct_ipv6_src: [u8; 16],
    pub ct_ipv6_dst: [u8; 16],
    // --- L2 ---
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub eth_type: u16,
    pub vlan_tci: u16,
    // --- L3 ---
    pub nw_src: u32,
    pub nw_dst: u32,
    pub ipv6_src: [u8; 16],
    pub ipv6_dst: [u8; 16],
    pub ipv6_label: u32,
    pub nw_proto: u8,
    /// The whole IPv4 TOS / IPv6 traffic-class byte (DSCP << 2 | ECN).
    pub nw_tos: u8,
    pub nw_ttl: u8,
    pub nw_frag: u8,
    pub arp_spa: u32,
    pub arp_tpa: u32,
    pub arp_sha: [u8; 6],
    pub arp_tha: [u8; 6],
    pub arp_op: u16,
    // --- L4 ---
    pub tp_src: u16,
    pub tp_dst: u16,
    /// TCP flags, low 12 bits of the TCP header's offset/flags word.
    pub tcp_flags: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub _pad1: [u8; 2],
    /// The target address of an IPv6 neighbor solicitation/advertisement (`nd_target`).
    pub nd_target: [u8; 16],
}

/// Compares word by word (the derive compares field by field, with many branches).
impl PartialEq for FlowKey {
    #[inline]
    fn eq(&self, other: &FlowKey) -> bool {
        self.words() == other.words()
    }
}

impl Eq for FlowKey {}

/// Hashes the key as its 36 words in one go: much cheaper than a field-by-field derive (tables
/// keyed by matches hash two keys per entry).
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write(bytemuck::bytes_of(self));
    }
}

impl FlowKey {
    /// Size of the key in 64-bit words.
    pub const WORDS: usize = core::mem::size_of::<FlowKey>() / 8;

    /// The key as words, for masked compares and hashes.
    #[inline]
    pub fn words(&self) -> &[u64; Self::WORDS] {
        bytemuck::cast_ref(self)
    }

    #[inline]
    pub fn words_mut(&mut self) -> &mut [u64; Self::WORDS] {
        bytemuck::cast_mut(self)
    }

    /// A mask with every bit set ("exact match on everything").
    pub fn exact_mask() -> FlowKey {
        bytemuck::cast([u64::MAX; Self::WORDS])
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn masked(&self, mask: &FlowKey) -> FlowKey {
        let mut out = *self;
        for (o, m) in out.words_mut().iter_mut().zip(mask.words()) {
            *o &= *m;
        }
        out
    }

    /// True when `self` and `other` agree on every bit set in `mask`.
    #[inline]
    pub fn matches_masked(&self, other: &FlowKey, mask: &FlowKey) -> bool {
        self.words()
            .iter()
            .zip(other.words())
            .zip(mask.words())
            .all(|((a, b), m)| (a ^ b) & m == 0)
    }
}

const _: () = assert!(core::mem::size_of::<FlowKey>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<FlowKey>() == 288);
