//! From a parsed packet (`FlowKey` + `PacketFacts`) to the tuple conntrack looks up.

use super::frag::FragTracker;
use super::tcp::{TcpInvalid, TcpSegment, WindowScale};
use super::tuple::{Addr, Family, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, Tuple};
use encap::flowkey::{FRAG_ANY, FRAG_LATER, FlowKey};

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

/// Packet details conntrack needs that `FlowKey` does not hold. Fill what applies to the
/// packet; `Default` is fine for everything else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketFacts {
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// Raw TCP window field.
    pub tcp_window: u16,
    /// Window-scale option of a SYN; leave `NotParsed` if options are not parsed.
    pub tcp_wscale: WindowScale,
    /// L4 payload bytes (TCP data length).
    pub l4_payload_len: u32,
    /// ICMP/ICMPv6 echo identifier (echo request/reply only).
    pub icmp_id: u16,
    /// For ICMP errors: the header embedded in the error.
    pub icmp_inner: Option<InnerTuple>,
    /// IPv4 identification or IPv6 fragment-header id, for fragments.
    pub ip_id: u32,
    /// Where the L4 payload starts in the frame given to `process_frame` (0: not given). The
    /// FTP ALG reads `l4_payload_len` bytes from there.
    pub payload_offset: u32,
}

/// The IP + L4 header embedded in an ICMP error, as it appears in the packet. For an
/// embedded ICMP echo, set both ports to the echo identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerTuple {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// Why a packet is `+inv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// Not IPv4 or IPv6.
    NotIp,
    /// An ICMP type conntrack does not track (only echo and errors are).
    IcmpType,
    /// An ICMP error whose embedded header matches no connection (or is missing).
    IcmpErrorUnrelated,
    /// An echo reply with no request seen.
    IcmpReplyWithoutRequest,
    /// An echo request travelling in its connection's reply direction, or an echo reply in
    /// its original direction: the identifier matches, the type does not (Linux and Open
    /// vSwitch key the type, request one way and reply the other).
    IcmpEchoWrongDirection,
    Tcp(TcpInvalid),
    /// A non-first fragment whose first fragment was not seen.
    FragmentUnknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Other,
    IcmpEcho { request: bool },
}

pub(crate) enum Extracted {
    Conn {
        tuple: Tuple,
        kind: Kind,
        later_frag: bool,
    },
    IcmpError {
        /// The embedded tuple as carried in the packet.
        inner: Tuple,
        outer_src: Addr,
        outer_dst: Addr,
    },
}

enum IcmpClass {
    Echo { request: bool },
    Error,
    Other,
}

fn icmp_class(family: Family, ty: u8) -> IcmpClass {
    match (family, ty) {
        (Family::V4, 8) | (Family::V6, 128) => IcmpClass::Echo { request: true },
        (Family::V4, 0) | (Family::V6, 129) => IcmpClass::Echo { request: false },
        (Family::V4, 3 | 4 | 5 | 11 | 12) | (Family::V6, 1..=4) => IcmpClass::Error,
        _ => IcmpClass::Other,
    }
}

/// The TCP segment of this packet (flags from the key, numbers from the facts).
pub(crate) fn tcp_segment(key: &FlowKey, facts: &PacketFacts) -> TcpSegment {
    TcpSegment {
        flags: key.tcp_flags & 0x0fff,
        seq: facts.tcp_seq,
        ack: facts.tcp_ack,
        window: facts.tcp_window,
        wscale: facts.tcp_wscale,
        payload_len: facts.l4_payload_len,
    }
}

pub(crate) fn extract(
    key: &FlowKey,
    facts: &PacketFacts,
    zone: u16,
    frags: &mut FragTracker,
    now: u64,
) -> Result<Extracted, InvalidReason> {
    let (family, src, dst) = match key.eth_type {
        ETH_IPV4 => (Family::V4, Addr::v4(key.nw_src), Addr::v4(key.nw_dst)),
        ETH_IPV6 => (Family::V6, Addr(key.ipv6_src), Addr(key.ipv6_dst)),
        _ => return Err(InvalidReason::NotIp),
    };
    let proto = key.nw_proto;
    let is_icmp = proto == PROTO_ICMP && family == Family::V4
        || proto == PROTO_ICMPV6 && family == Family::V6;
    let mut tuple = Tuple {
        src,
        dst,
        sport: 0,
        dport: 0,
        zone,
        proto,
        family,
    };

    if key.nw_frag & FRAG_LATER != 0 {
        let (sport, dport) = frags
            .lookup(zone, family, src, dst, proto, facts.ip_id, now)
            .ok_or(InvalidReason::FragmentUnknown)?;
        tuple.sport = sport;
        tuple.dport = dport;
        let kind = if proto == PROTO_TCP {
            Kind::Tcp
        } else {
            Kind::Other
        };
        return Ok(Extracted::Conn {
            tuple,
            kind,
            later_frag: true,
        });
    }

    let kind = if is_icmp {
        match icmp_class(family, key.icmp_type) {
            IcmpClass::Echo { request } => {
                tuple.sport = facts.icmp_id;
                tuple.dport = facts.icmp_id;
                Kind::IcmpEcho { request }
            }
            IcmpClass::Error => {
                let inner = facts.icmp_inner.ok_or(InvalidReason::IcmpErrorUnrelated)?;
                let inner = Tuple {
                    src: inner.src,
                    dst: inner.dst,
                    sport: inner.sport,
                    dport: inner.dport,
                    zone,
                    proto: inner.proto,
                    family,
                };
                return Ok(Extracted::IcmpError {
                    inner,
                    outer_src: src,
                    outer_dst: dst,
                });
            }
            IcmpClass::Other => return Err(InvalidReason::IcmpType),
        }
    } else {
        tuple.sport = key.tp_src;
        tuple.dport = key.tp_dst;
        if proto == PROTO_TCP {
            Kind::Tcp
        } else {
            Kind::Other
        }
    };

    if key.nw_frag & FRAG_ANY != 0 {
        frags.remember(
            zone,
            family,
            src,
            dst,
            proto,
            facts.ip_id,
            (tuple.sport, tuple.dport),
            now,
        );
    }
    Ok(Extracted::Conn {
        tuple,
        kind,
        later_frag: false,
    })
}

/// For an ICMP error (not a later fragment): the header it carries, which names the
/// connection it is about.
pub(crate) fn error_inner(key: &FlowKey, facts: &PacketFacts) -> Option<InnerTuple> {
    let family = match key.eth_type {
        ETH_IPV4 if key.nw_proto == PROTO_ICMP => Family::V4,
        ETH_IPV6 if key.nw_proto == PROTO_ICMPV6 => Family::V6,
        _ => return None,
    };
    if key.nw_frag & FRAG_LATER != 0 {
        return None;
    }
    match icmp_class(family, key.icmp_type) {
        IcmpClass::Error => facts.icmp_inner,
        _ => None,
    }
}
