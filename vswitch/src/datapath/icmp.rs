//! What conntrack needs from ICMP and TCP headers, and the "fragmentation needed" (IPv4) and
//! "Packet Too Big" (IPv6) replies for oversized tunnel traffic: the byte work is in `encap`
//! (`wire::tcp::options`, `wire::icmpv4::{Packet::quoted_header, emit_frag_needed}`,
//! `wire::icmpv6::emit_packet_too_big`); this maps it to the datapath's and conntrack's types.
//! The replies are rate-limited per forwarding thread ([`REPLIES_PER_SEC`], [`REPLY_BURST`]).

use encap::Parsed;
use encap::wire::{icmpv4, icmpv6, tcp};

use conntrack::InnerTuple;
use conntrack::tcp::WindowScale;
use conntrack::tuple::Addr;

/// ICMP errors one forwarding thread sends per second, after a burst of [`REPLY_BURST`]:
/// Linux's `icmp_msgs_per_sec` and `icmp_msgs_burst` defaults. A flood of oversized frames
/// then gets a bounded trickle of replies (counted `icmp_rate_limited` beyond it), while a
/// sender doing path MTU discovery still hears back at once.
pub const REPLIES_PER_SEC: u64 = 1000;
/// See [`REPLIES_PER_SEC`].
pub const REPLY_BURST: u64 = 50;

/// The per-thread limit on the ICMP errors the datapath generates.
pub fn reply_limit() -> crate::ratelimit::TokenBucket {
    crate::ratelimit::TokenBucket::new(REPLIES_PER_SEC, REPLY_BURST)
}

/// The window-scale option of a SYN (conntrack needs it to judge windows); `NotParsed` when
/// the segment is not a SYN or its options are not all in the frame.
pub fn tcp_wscale(frame: &[u8], l4: usize, data_off: usize, flags: u16) -> WindowScale {
    if flags & tcp::flags::SYN == 0 {
        return WindowScale::NotParsed;
    }
    let Some(opts) = frame.get(l4 + tcp::MIN_HEADER_LEN..l4 + data_off) else {
        return WindowScale::NotParsed;
    };
    for opt in tcp::options(opts) {
        match opt {
            Ok(tcp::TcpOption::WindowScale(shift)) => return WindowScale::Shift(shift.min(14)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    WindowScale::Absent
}

/// The IP + L4 header quoted in an ICMPv4 error (`frame[l4..end]` is the ICMP message).
pub fn embedded_tuple(frame: &[u8], l4: usize, end: usize) -> Option<InnerTuple> {
    let q = icmpv4::Packet::new_checked(frame.get(l4..end)?)
        .ok()?
        .quoted_header()?;
    Some(InnerTuple {
        src: Addr::v4(q.src_addr.into()),
        dst: Addr::v4(q.dst_addr.into()),
        proto: q.protocol,
        sport: q.src_port,
        dport: q.dst_port,
    })
}

/// [`embedded_tuple`] for an ICMPv6 error (the message at `frame[l4..end]`): the quoted
/// packet's addresses, upper-layer protocol (past its extension headers) and ports or echo
/// identifier.
pub fn embedded_tuple_v6(frame: &[u8], l4: usize, end: usize) -> Option<InnerTuple> {
    let q = encap::wire::icmpv6::Packet::new_checked(frame.get(l4..end)?)
        .ok()?
        .quoted_header()?;
    Some(InnerTuple {
        src: Addr(q.src_addr.octets()),
        dst: Addr(q.dst_addr.octets()),
        proto: q.protocol,
        sport: q.src_port,
        dport: q.dst_port,
    })
}

/// Builds, into `out`, an ICMPv4 "fragmentation needed" answering `frame`, addressed back to
/// its sender, advertising `mtu`. False when the frame is not IPv4 with DF.
pub fn frag_needed(frame: &[u8], parsed: &Parsed, mtu: u16, out: &mut Vec<u8>) -> bool {
    let (Some(l3), Some(end)) = (parsed.l3_offset(), parsed.l3_end()) else {
        return false;
    };
    parsed.l3_kind == encap::L3Kind::Ipv4 && icmpv4::emit_frag_needed(frame, l3, end, mtu, out)
}

/// Builds, into `out`, an ICMPv6 "Packet Too Big" answering `frame`, addressed back to its
/// sender from its destination, advertising `mtu` (at least 1280). False when the frame is
/// not IPv6, or is itself an ICMPv6 error message (never answered, RFC 4443 2.4), or has no
/// unicast addresses to answer between.
pub fn packet_too_big(frame: &[u8], parsed: &Parsed, mtu: u32, out: &mut Vec<u8>) -> bool {
    let (Some(l3), Some(end)) = (parsed.l3_offset(), parsed.l3_end()) else {
        return false;
    };
    let icmp_error = parsed.l4_proto == 58
        && parsed
            .l4_offset()
            .and_then(|l4| frame.get(l4))
            .is_some_and(|t| *t < 128);
    parsed.l3_kind == encap::L3Kind::Ipv6
        && !icmp_error
        && icmpv6::emit_packet_too_big(frame, l3, end, mtu, out)
}
