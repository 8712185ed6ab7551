//! Datapath actions: what the slow path compiles an OpenFlow walk into, and what caches store.
//!
//! They are deliberately lower level than OpenFlow actions (like the kernel datapath's ODP
//! actions): ports are resolved to datapath port indices, tables and resubmits are gone,
//! select groups have already picked a bucket, and field writes carry final values.

use std::net::Ipv4Addr;

use super::drops::DropReason;

/// Index of a port in the datapath's port table.
pub type DpPortId = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtAction {
    pub zone: u16,
    pub commit: bool,
    /// The `nat(...)` clause, already in conntrack's terms.
    pub nat: Option<crate::conntrack::NatSpec>,
    /// `exec(set_field:V/M->ct_mark)`.
    pub mark: Option<(u32, u32)>,
    /// `table=T`: recirculate into table T with ct fields filled in.
    pub recirc_table: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpAction {
    Output(DpPortId),
    /// Encapsulate and send through a VXLAN port to `dst` with `vni`.
    Tunnel {
        port: DpPortId,
        dst: Ipv4Addr,
        vni: u32,
    },
    /// MAC learning + forwarding, resolved per packet (learning changes faster than flows).
    Normal,
    /// Every port of the bridge but the input port (FLOOD) or including it (ALL).
    Flood {
        include_in_port: bool,
    },
    SetEthSrc([u8; 6]),
    SetEthDst([u8; 6]),
    SetIpv4Src(Ipv4Addr),
    SetIpv4Dst(Ipv4Addr),
    SetTpSrc(u16),
    SetTpDst(u16),
    SetIpTos(u8),
    SetIpTtl(u8),
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
    /// Rewrite the VID (and PCP) of the outermost tag.
    SetVlanTci(u16),
    DecTtl,
    /// ARP (IPv4 over Ethernet) field writes, for ARP responders written as flows.
    SetArpOp(u16),
    SetArpSpa(Ipv4Addr),
    SetArpTpa(Ipv4Addr),
    SetArpSha([u8; 6]),
    SetArpTha([u8; 6]),
    /// ICMPv4 type/code writes (ICMP checksum updated), for echo responders written as flows.
    SetIcmpType(u8),
    SetIcmpCode(u8),
    Ct(CtAction),
    Controller {
        max_len: u16,
        reason: u8,
        cookie: u64,
        table: u8,
    },
    /// Dropping on purpose, with the reason counted.
    Drop(DropReason),
}
