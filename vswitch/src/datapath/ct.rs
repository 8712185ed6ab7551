//! Glue between the datapath and conntrack: gather what conntrack needs from the packet, run
//! it, and write the NAT it decides into the packet.

use encap::rewrite::L4Checksum;
use encap::{FlowKey, Parsed};
use tap_io::PacketBuf;

use super::actions::CtAction;
use super::drops::DropReason;
use conntrack::tuple::Addr;
use conntrack::{CtDrop, Cursor, PacketFacts, Sharded};

/// An IPv4 header whose checksum does not sum to all ones (Open vSwitch's conntrack checks it
/// unless the port vouched for it). Every header the switch rewrites gets its checksum
/// updated and every one it builds (merged segments) a new one, so a wrong one came so from
/// the wire (a merge checks the TCP checksums of its segments, not their IPv4 headers').
fn bad_ipv4_header_checksum(frame: &[u8], parsed: &Parsed) -> bool {
    if parsed.l3_kind != encap::L3Kind::Ipv4 {
        return false;
    }
    let Some(l3) = parsed.l3_offset() else {
        return false;
    };
    let ihl = frame.get(l3).map_or(0, |b| usize::from(b & 0x0f) * 4);
    frame
        .get(l3..l3 + ihl)
        .is_some_and(|h| encap::checksum::fold(encap::checksum::sum(0, h)) != 0xffff)
}

/// What conntrack makes of a packet's L4 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChecksumVerdict {
    Good,
    Bad,
    /// Nothing to verify: another protocol (SCTP's CRC32c is not checked), a fragment, an
    /// IPv4 UDP datagram without a checksum, headers that could not be read whole.
    NotJudged,
}

/// Verifies a whole TCP, UDP or ICMP (IPv4) or TCP, UDP or ICMPv6 (IPv6) packet's checksum,
/// as the kernel's and Open vSwitch's conntrack do.
fn l4_checksum(frame: &[u8], key: &FlowKey, parsed: &Parsed) -> ChecksumVerdict {
    use encap::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum};
    let (Some(l3), Some(l4), Some(end)) = (parsed.l3_offset(), parsed.l4_offset(), parsed.l3_end())
    else {
        return ChecksumVerdict::NotJudged;
    };
    let proto = parsed.l4_proto;
    let judged = match parsed.l3_kind {
        encap::L3Kind::Ipv4 => matches!(proto, 1 | 6 | 17),
        encap::L3Kind::Ipv6 => matches!(proto, 6 | 17 | 58),
        _ => false,
    };
    let segment = frame.get(l4..end).filter(|_| judged && key.nw_frag == 0);
    let Some(segment) = segment else {
        return ChecksumVerdict::NotJudged;
    };
    let len = segment.len();
    // The addresses as the frame has them (the header was read whole to find l4).
    let pseudo = match (parsed.l3_kind, frame.get(l3..l4)) {
        (encap::L3Kind::Ipv4, _) if proto == 1 => 0,
        (encap::L3Kind::Ipv4, _) if proto == 17 && segment.get(6..8) == Some(&[0, 0]) => {
            return ChecksumVerdict::NotJudged;
        }
        (encap::L3Kind::Ipv4, Some(h)) if h.len() >= 20 => pseudo_header_v4(
            [h[12], h[13], h[14], h[15]].into(),
            [h[16], h[17], h[18], h[19]].into(),
            proto,
            len as u16,
        ),
        // The fixed header's addresses (with a Routing header, as the kernel and Open vSwitch
        // take them too, the first hop's rather than the final destination).
        (encap::L3Kind::Ipv6, Some(h)) if h.len() >= 40 => {
            let src: [u8; 16] = h[8..24].try_into().unwrap_or_default();
            let dst: [u8; 16] = h[24..40].try_into().unwrap_or_default();
            pseudo_header_v6(&src.into(), &dst.into(), proto, len as u32)
        }
        _ => return ChecksumVerdict::NotJudged,
    };
    if fold(sum(pseudo, segment)) == 0xffff {
        ChecksumVerdict::Good
    } else {
        ChecksumVerdict::Bad
    }
}

/// The key of a packet conntrack refuses before any lookup: `+trk+inv`, nothing committed.
fn invalid(key: &FlowKey, act: &CtAction) -> FlowKey {
    let mut next = *key;
    next.ct_state = encap::flowkey::CT_TRK | encap::flowkey::CT_INV;
    next.ct_zone = act.zone;
    next.ct_mark = 0;
    next
}

/// Runs `ct` on one packet. `lookup` is the key conntrack identifies the connection by (the
/// packet's key before any NAT of this zone), `key` the packet as it is now. Returns the key as
/// the next pipeline pass sees it (ct fields set, NAT applied), `None` when conntrack kept the
/// packet (a fragment ahead of its first fragment: it comes back through
/// `Sharded::take_released_fragment`, with `key` as its metadata), or why it must be dropped.
/// Shards are locked through `cur`, and let go before this returns. An FTP ALG's fix is
/// applied on the packet's first pass through this zone only (`first_pass`); when it resized
/// the payload, `*resized` is set: the caller's offsets past the L4 header (and the IP end)
/// must be parsed again.
#[allow(clippy::too_many_arguments)]
pub fn run<'a>(
    ct: &'a Sharded,
    cur: &mut Cursor<'a>,
    now: u64,
    pkt: &mut PacketBuf,
    lookup: &FlowKey,
    key: &FlowKey,
    parsed: &Parsed,
    act: &CtAction,
    first_pass: bool,
    resized: &mut bool,
) -> Result<Option<FlowKey>, DropReason> {
    if parsed.error.is_some() || bad_ipv4_header_checksum(pkt.data(), parsed) {
        // A cut-short or inconsistent header, or an IPv4 header whose checksum is wrong:
        // conntrack cannot trust it to identify a connection, the packet is invalid (Open
        // vSwitch: +trk+inv), nothing is committed.
        ct.note_malformed(cur);
        return Ok(Some(invalid(key, act)));
    }
    let m = &pkt.meta;
    if !(m.csum_valid || m.csum_not_ready || m.gso.is_some()) {
        // Neither verified by the port nor left to offload by a local sender (a tunnel's
        // inner packet, a packet-out, an AF_XDP port): a corrupt TCP flag byte must not close
        // a connection the endpoint will never see closed (the kernel's conntrack and Open
        // vSwitch's check it too).
        match l4_checksum(pkt.data(), key, parsed) {
            ChecksumVerdict::Bad => {
                ct.note_bad_l4_checksum(cur);
                return Ok(Some(invalid(key, act)));
            }
            // Verified once: a later `ct` of this packet (after a recirculation) and the
            // software GRO of its output port do not sum it again; every rewrite keeps the
            // checksum right.
            ChecksumVerdict::Good => pkt.meta.csum_valid = true,
            ChecksumVerdict::NotJudged => {}
        }
    }
    let facts = facts(pkt.data(), key, parsed);
    let res = ct.process_frame(
        cur,
        lookup,
        &facts,
        &conntrack::CtAction {
            zone: act.zone,
            commit: act.commit,
            nat: act.nat.as_ref(),
            mark: act.mark,
            label: act.label,
            force: act.force,
            alg: act.alg,
        },
        now,
        Some((pkt.data(), key)),
    );
    // The shard goes at once rather than when the next packet needs another: held across the
    // rest of this packet's pipeline, it would make another thread that needs it wait (spin,
    // then sleep on the futex) about one packet in sixteen. Locking it again for this
    // packet's next `ct` costs two uncontended atomics.
    cur.release();
    if res.held {
        return Ok(None);
    }
    if let Some(d) = res.drop {
        return Err(match d {
            CtDrop::TableFull => DropReason::CtTableFull,
            CtDrop::ZoneLimit => DropReason::CtZoneLimit,
            CtDrop::SourceLimit => DropReason::CtSourceLimit,
            CtDrop::NatExhausted | CtDrop::TupleClash => DropReason::NatExhausted,
        });
    }
    let mut next = *key;
    next.ct_state = res.ct_state;
    next.ct_mark = res.ct_mark;
    next.ct_zone = res.ct_zone;
    set_orig_tuple(&mut next, res.ct_label, res.orig);
    if let Some(rw) = res.rewrite {
        let mode = super::exec::csum_mode(pkt, parsed);
        let frame = pkt.data_mut();
        if key.eth_type == 0x86dd {
            if rw.src.0 != key.ipv6_src {
                let _ = encap::rewrite::set_ipv6_addr(frame, parsed, true, rw.src.0, mode);
                next.ipv6_src = rw.src.0;
            }
            if rw.dst.0 != key.ipv6_dst {
                let _ = encap::rewrite::set_ipv6_addr(frame, parsed, false, rw.dst.0, mode);
                next.ipv6_dst = rw.dst.0;
            }
        } else {
            let (src, dst) = (v4(rw.src), v4(rw.dst));
            if src != key.nw_src {
                let _ = encap::rewrite::set_ipv4_src(frame, parsed, src.into(), mode);
                next.nw_src = src;
            }
            if dst != key.nw_dst {
                let _ = encap::rewrite::set_ipv4_dst(frame, parsed, dst.into(), mode);
                next.nw_dst = dst;
            }
        }
        if key.nw_proto == 1 && matches!(key.icmp_type, 0 | 8) {
            // ICMP echo: the identifier is the "port" NAT allocates (both tuple ports hold it).
            let _ = encap::rewrite::set_icmpv4_echo_id(frame, parsed, rw.sport);
        }
        if key.nw_proto == 58 && matches!(key.icmp_type, 128 | 129) {
            let _ = encap::rewrite::set_icmpv6_echo_id(frame, parsed, rw.sport);
        }
        // TCP, UDP and SCTP (conntrack allocates SCTP ports as well; the SCTP rewrite keeps
        // the CRC32c right, and one left to offload is computed from scratch later anyway).
        if matches!(key.nw_proto, 6 | 17 | 132) {
            if rw.sport != key.tp_src {
                let _ = encap::rewrite::set_l4_src_port(frame, parsed, rw.sport, mode);
                next.tp_src = rw.sport;
            }
            if rw.dport != key.tp_dst {
                let _ = encap::rewrite::set_l4_dst_port(frame, parsed, rw.dport, mode);
                next.tp_dst = rw.dport;
            }
        }
        if let Some(inner) = rw.inner.filter(|_| key.eth_type == 0x86dd) {
            let _ = encap::rewrite::set_icmpv6_quoted(
                frame,
                parsed,
                inner.src.0,
                inner.dst.0,
                inner.sport,
                inner.dport,
            );
        }
        if let Some(inner) = rw.inner.filter(|_| key.eth_type == 0x0800) {
            let _ = encap::rewrite::set_icmpv4_quoted(
                frame,
                parsed,
                v4(inner.src).into(),
                v4(inner.dst).into(),
                inner.sport,
                inner.dport,
            );
        }
    }
    if let Some(fix) = res.tcp_fix.filter(|_| key.nw_proto == 6 && first_pass) {
        *resized = apply_tcp_fix(pkt, parsed, key.eth_type == 0x86dd, &fix)
            .ok_or(DropReason::AlgNoRoom)?;
    }
    Ok(Some(next))
}

/// Applies an FTP ALG's fix to a TCP packet (after its NAT): sequence and acknowledgment
/// numbers shifted by what earlier rewrites added, then the announced address replaced in the
/// payload (the frame grows or shrinks behind it, the IP length follows) and the TCP checksum
/// computed again (or, for a checksum left to offload, its pseudo-header part). Returns whether
/// the frame's length changed, or `None` when the rewrite does not fit (a GSO frame, or no
/// tailroom): conntrack has already shifted the connection's sequence numbers by it, so the
/// frame is dropped and its retransmission, which conntrack recognises, is rewritten instead.
fn apply_tcp_fix(
    pkt: &mut PacketBuf,
    parsed: &Parsed,
    v6: bool,
    fix: &conntrack::TcpFix,
) -> Option<bool> {
    const TCP_ACK: u8 = 0x10;
    let (Some(l3), Some(l4), Some(end)) = (parsed.l3_offset(), parsed.l4_offset(), parsed.l3_end())
    else {
        return Some(false);
    };
    let mut end = end.min(pkt.len());
    if end < l4 + 20 {
        return Some(false);
    }
    let f = pkt.data_mut();
    let seq = rd32(f, l4 + 4).wrapping_add(fix.seq_delta as u32);
    f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    if f[l4 + 13] & TCP_ACK != 0 {
        let ack = rd32(f, l4 + 8).wrapping_add(fix.ack_delta as u32);
        f[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
    }
    let data = l4 + usize::from(f[l4 + 12] >> 4) * 4;
    let mut resized = false;
    if let Some(edit) = fix.edit {
        let at = data + usize::from(edit.offset);
        let old_end = at + usize::from(edit.old_len);
        let text = edit.text();
        let new_end = (end as i64 + i64::from(edit.delta())) as usize;
        if pkt.meta.gso.is_none() && old_end <= end && new_end <= pkt.len() + pkt.tailroom() {
            if new_end > pkt.len() {
                let _ = pkt.set_len(new_end);
            }
            let f = pkt.data_mut();
            f.copy_within(old_end..end, at + text.len());
            f[at..at + text.len()].copy_from_slice(text);
            // Ethernet padding behind the IP packet goes: the frame ends with the packet.
            pkt.truncate(new_end);
            let f = pkt.data_mut();
            if v6 {
                let plen = (new_end - (l3 + 40)) as u16;
                f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
            } else {
                let tot = (new_end - l3) as u16;
                f[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
                let ihl = usize::from(f[l3] & 0x0f) * 4;
                f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
                let c = encap::checksum::ipv4_header(&f[l3..l3 + ihl]);
                f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            }
            end = new_end;
            resized = true;
        } else {
            return None;
        }
    }
    let partial = super::exec::csum_mode(pkt, parsed) == L4Checksum::Partial;
    let f = pkt.data_mut();
    let l4_len = end - l4;
    let pseudo = if v6 {
        let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
        s.copy_from_slice(&f[l3 + 8..l3 + 24]);
        d.copy_from_slice(&f[l3 + 24..l3 + 40]);
        encap::checksum::pseudo_header_v6(&s.into(), &d.into(), 6, l4_len as u32)
    } else {
        let a = |at: usize| std::net::Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
        encap::checksum::pseudo_header_v4(a(l3 + 12), a(l3 + 16), 6, l4_len as u16)
    };
    let csum = if partial {
        encap::checksum::fold(pseudo)
    } else {
        f[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
        encap::checksum::finish(pseudo, &f[l4..end])
    };
    f[l4 + 16..l4 + 18].copy_from_slice(&csum.to_be_bytes());
    Some(resized)
}

/// Writes `ct_label` and the original-direction tuple fields (`ct_nw_src` ... `ct_tp_dst`) as
/// Open vSwitch does: ICMP carries its type and code in the port fields; no connection, all
/// zero.
pub fn set_orig_tuple(
    k: &mut FlowKey,
    label: u128,
    orig: Option<(conntrack::tuple::Tuple, (u8, u8))>,
) {
    k.ct_label = label.to_be_bytes();
    k.ct_nw_src = 0;
    k.ct_nw_dst = 0;
    k.ct_ipv6_src = [0; 16];
    k.ct_ipv6_dst = [0; 16];
    k.ct_nw_proto = 0;
    k.ct_tp_src = 0;
    k.ct_tp_dst = 0;
    let Some((t, (icmp_type, icmp_code))) = orig else {
        return;
    };
    match t.family {
        conntrack::tuple::Family::V4 => {
            k.ct_nw_src = v4(t.src);
            k.ct_nw_dst = v4(t.dst);
        }
        conntrack::tuple::Family::V6 => {
            k.ct_ipv6_src = t.src.0;
            k.ct_ipv6_dst = t.dst.0;
        }
    }
    k.ct_nw_proto = t.proto;
    if t.is_icmp() {
        k.ct_tp_src = icmp_type.into();
        k.ct_tp_dst = icmp_code.into();
    } else {
        k.ct_tp_src = t.sport;
        k.ct_tp_dst = t.dport;
    }
}

fn v4(a: Addr) -> u32 {
    u32::from_be_bytes([a.0[12], a.0[13], a.0[14], a.0[15]])
}

fn rd16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

fn rd32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// The per-packet facts conntrack needs beyond the key.
fn facts(frame: &[u8], key: &FlowKey, parsed: &Parsed) -> PacketFacts {
    let mut f = PacketFacts::default();
    // The datagram a fragment belongs to (with its addresses): IPv4's identification, or the
    // IPv6 Fragment header's (0 for a packet that has none, which is no fragment).
    if let Some(l3) = parsed.l3_offset()
        && key.eth_type == 0x0800
    {
        f.ip_id = rd16(frame, l3 + 4) as u32;
    } else if key.eth_type == 0x86dd {
        f.ip_id = parsed.ipv6_frag_id();
    }
    let Some(l4) = parsed.l4_offset() else {
        return f;
    };
    let end = parsed.l3_end().unwrap_or(frame.len()).min(frame.len());
    match key.nw_proto {
        6 => {
            f.tcp_seq = rd32(frame, l4 + 4);
            f.tcp_ack = rd32(frame, l4 + 8);
            f.tcp_window = rd16(frame, l4 + 14);
            let data_off = frame
                .get(l4 + 12)
                .map(|b| (b >> 4) as usize * 4)
                .unwrap_or(20);
            f.l4_payload_len = end.saturating_sub(l4 + data_off) as u32;
            f.payload_offset = (l4 + data_off) as u32;
            f.tcp_wscale = super::icmp::tcp_wscale(frame, l4, data_off, key.tcp_flags);
        }
        17 => f.l4_payload_len = end.saturating_sub(l4 + 8) as u32,
        1 if key.eth_type == 0x0800 => {
            f.icmp_id = rd16(frame, l4 + 4);
            f.icmp_inner = super::icmp::embedded_tuple(frame, l4, end);
        }
        58 if key.eth_type == 0x86dd => {
            f.icmp_id = rd16(frame, l4 + 4);
            f.icmp_inner = super::icmp::embedded_tuple_v6(frame, l4, end);
        }
        _ => {}
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use encap::build::FrameBuilder;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn judged(frame: &[u8]) -> ChecksumVerdict {
        let mut key = FlowKey::default();
        let parsed = encap::extract(frame, &mut key);
        l4_checksum(frame, &key, &parsed)
    }

    /// Flips a bit of the last byte (payload or checksum alike).
    fn corrupt(mut f: Vec<u8>) -> Vec<u8> {
        *f.last_mut().unwrap() ^= 1;
        f
    }

    #[test]
    fn l4_checksums_are_judged_as_the_kernel_judges_them() {
        let v4 = || FrameBuilder::eth(MAC, MAC).ipv4([10, 0, 0, 1], [10, 0, 0, 2]);
        let v6 = || {
            FrameBuilder::eth(MAC, MAC)
                .ipv6([0xfd00, 0, 0, 0, 0, 0, 0, 1], [0xfd00, 0, 0, 0, 0, 0, 0, 2])
        };
        let tagged = || {
            FrameBuilder::eth(MAC, MAC)
                .tag(0x8100, 7)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        };
        let frames = [
            v4().tcp(1, 2, 0x02).payload(b"abc").build(),
            v4().udp(1, 2).payload(b"abc").build(),
            v4().icmp(8, 0).payload(b"abc").build(),
            tagged().udp(1, 2).payload(b"abc").build(),
            v4().ipv4_options(&[1, 1, 1, 1])
                .tcp(1, 2, 0x10)
                .payload(b"abc")
                .build(),
            v6().tcp(1, 2, 0x04).payload(b"abc").build(),
            v6().udp(1, 2).payload(b"abc").build(),
            v6().icmp(128, 0).payload(b"abc").build(),
        ];
        for f in frames {
            assert_eq!(judged(&f), ChecksumVerdict::Good, "built right: {f:02x?}");
            assert_eq!(
                judged(&corrupt(f.clone())),
                ChecksumVerdict::Bad,
                "one bit off: {f:02x?}"
            );
            // Ethernet padding behind the IP packet is no part of the segment.
            let mut padded = f.clone();
            padded.extend_from_slice(&[0xee; 20]);
            assert_eq!(judged(&padded), ChecksumVerdict::Good, "padded: {f:02x?}");
        }
        // UDP over IPv4 without a checksum has none to judge; over IPv6 a 0 does not verify.
        let mut none4 = v4().udp(1, 2).payload(b"abc").build();
        none4[14 + 20 + 6..14 + 20 + 8].fill(0);
        assert_eq!(judged(&corrupt(none4)), ChecksumVerdict::NotJudged);
        let mut none6 = v6().udp(1, 2).payload(b"abc").build();
        none6[14 + 40 + 6..14 + 40 + 8].fill(0);
        assert_eq!(judged(&none6), ChecksumVerdict::Bad);
        // Not judged: a fragment, a frame cut short, ICMPv6's number over IPv4 and ICMP's over
        // IPv6 (no checksum is defined so; conntrack tracks them as other protocols).
        let frag = v4().fragment(true, 0).udp(1, 2).payload(b"abc").build();
        assert_eq!(judged(&corrupt(frag)), ChecksumVerdict::NotJudged);
        let mut cut = v4().tcp(1, 2, 0x10).payload(b"abcdef").build();
        cut.truncate(cut.len() - 3);
        assert_eq!(judged(&cut), ChecksumVerdict::NotJudged);
        let mut icmp6_in_v4 = v4().icmp(8, 0).payload(b"abc").build();
        icmp6_in_v4[14 + 9] = 58;
        assert_eq!(judged(&icmp6_in_v4), ChecksumVerdict::NotJudged);
        let mut icmp_in_v6 = v6().icmp(128, 0).payload(b"abc").build();
        icmp_in_v6[14 + 6] = 1;
        assert_eq!(judged(&icmp_in_v6), ChecksumVerdict::NotJudged);
    }
}
