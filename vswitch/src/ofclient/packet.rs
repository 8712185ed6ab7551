//! A frame as `ovs-ofctl` prints it under a packet-in or packet-out: Open vSwitch's
//! `ofp_packet_to_string`, that is `flow_extract` of the bytes, `flow_format` of the flow
//! (`match_format` with the masks `flow_wildcards_init_for_packet` gives a packet: every
//! header field the packet has, zero context fields left out) and the L4 checksum
//! (` tcp_csum:`, ` udp_csum:`, ` sctp_csum:`, ` icmp_csum:`, ` icmp6_csum:`, in hex).
//!
//! Standalone on purpose: it follows OVS's parser to the byte (what a short or malformed
//! header leaves zero, which VLAN tags and MPLS labels it reads, the ND options), which the
//! datapath's own parser need not. Checked against `ovs-ofctl ofp-print` of packet-ins.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

const ETH_TYPE_IP: u16 = 0x0800;
const ETH_TYPE_ARP: u16 = 0x0806;
const ETH_TYPE_RARP: u16 = 0x8035;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const ETH_TYPE_MPLS: u16 = 0x8847;
const ETH_TYPE_MPLS_MCAST: u16 = 0x8848;
/// `FLOW_DL_TYPE_NONE`: an 802.2 frame without a SNAP Ethernet type.
const DL_TYPE_NONE: u16 = 0x05ff;
const VLAN_CFI: u16 = 0x1000;
/// `FLOW_MAX_VLAN_HEADERS`, `FLOW_MAX_MPLS_LABELS`.
const MAX_VLANS: usize = 2;
const MAX_MPLS: usize = 3;
const MPLS_BOS: u32 = 1 << 8;

const FRAG_ANY: u8 = 1;
const FRAG_LATER: u8 = 2;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_IGMP: u8 = 2;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_SCTP: u8 = 132;

const ND_NEIGHBOR_SOLICIT: u16 = 135;
const ND_NEIGHBOR_ADVERT: u16 = 136;

/// The fields of OVS's `struct flow` a frame fills in (all zero when absent).
#[derive(Default)]
struct Flow {
    dl_dst: [u8; 6],
    dl_src: [u8; 6],
    dl_type: u16,
    /// TCIs with the CFI bit set for a tag that is there; 0: none.
    vlans: [u16; MAX_VLANS],
    mpls: [u32; MAX_MPLS],
    nw_src: u32,
    nw_dst: u32,
    ipv6_src: [u8; 16],
    ipv6_dst: [u8; 16],
    ipv6_label: u32,
    nw_frag: u8,
    nw_tos: u8,
    nw_ttl: u8,
    /// Also the ARP opcode's low byte.
    nw_proto: u8,
    tp_src: u16,
    tp_dst: u16,
    tcp_flags: u16,
    /// Also ND's source and target link-layer addresses.
    arp_sha: [u8; 6],
    arp_tha: [u8; 6],
    nd_target: [u8; 16],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&b[..6]);
    m
}

fn addr6(b: &[u8]) -> [u8; 16] {
    let mut a = [0; 16];
    a.copy_from_slice(&b[..16]);
    a
}

/// `miniflow_extract` of an Ethernet frame: the flow and the L4 bytes (`dp_packet_l4`, up to
/// the IP length; `None` when the frame has no IPv4/IPv6 payload OVS reached).
fn extract(frame: &[u8]) -> (Flow, Option<&[u8]>) {
    let mut f = Flow::default();
    if frame.len() < 14 {
        return (f, None);
    }
    f.dl_dst = mac(&frame[0..]);
    f.dl_src = mac(&frame[6..]);
    let mut d = &frame[12..];
    // parse_vlan: a tag counts when the tag and the type after it are there.
    let mut n = 0;
    while n < MAX_VLANS && matches!(be16(d, 0), 0x8100 | 0x88a8) && d.len() >= 6 {
        f.vlans[n] = be16(d, 2) | VLAN_CFI;
        d = &d[4..];
        n += 1;
    }
    // parse_ethertype: an 802.2 length takes the type of an Ethernet SNAP header.
    let mut dl_type = be16(d, 0);
    d = &d[2..];
    if dl_type < 0x600 {
        dl_type = DL_TYPE_NONE;
        if d.len() >= 8 && d[..6] == [0xaa, 0xaa, 0x03, 0, 0, 0] {
            let t = be16(d, 6);
            d = &d[8..];
            if t >= 0x600 {
                dl_type = t;
            }
        }
    }
    f.dl_type = dl_type;
    if matches!(dl_type, ETH_TYPE_MPLS | ETH_TYPE_MPLS_MCAST) {
        let mut count = 0;
        for lse in d.chunks_exact(4) {
            count += 1;
            if be32(lse, 0) & MPLS_BOS != 0 {
                break;
            }
        }
        for (i, lse) in d.chunks_exact(4).take(count.min(MAX_MPLS)).enumerate() {
            f.mpls[i] = be32(lse, 0);
        }
        return (f, None);
    }
    let (nw_tos, nw_ttl, mut nw_proto, mut nw_frag);
    match dl_type {
        ETH_TYPE_IP => {
            // ipv4_sanity_check
            if d.len() < 20 {
                return (f, None);
            }
            let ihl = usize::from(d[0] & 0x0f) * 4;
            if ihl < 20 || d.len() < ihl {
                return (f, None);
            }
            let tot_len = usize::from(be16(d, 2));
            if tot_len > d.len() || ihl > tot_len {
                return (f, None);
            }
            d = &d[..tot_len];
            f.nw_src = be32(d, 12);
            f.nw_dst = be32(d, 16);
            nw_tos = d[1];
            nw_ttl = d[8];
            nw_proto = d[9];
            let frag_off = be16(d, 6);
            nw_frag = 0;
            if frag_off & 0x3fff != 0 {
                nw_frag = FRAG_ANY;
                if frag_off & 0x1fff != 0 {
                    nw_frag |= FRAG_LATER;
                }
            }
            d = &d[ihl..];
        }
        ETH_TYPE_IPV6 => {
            // ipv6_sanity_check
            if d.len() < 40 {
                return (f, None);
            }
            let plen = usize::from(be16(d, 4));
            if plen + 40 > d.len() {
                return (f, None);
            }
            f.ipv6_src = addr6(&d[8..]);
            f.ipv6_dst = addr6(&d[24..]);
            let tc_flow = be32(d, 0);
            nw_tos = (tc_flow >> 20) as u8;
            nw_ttl = d[7];
            nw_proto = d[6];
            nw_frag = 0;
            d = &d[40..40 + plen];
            // parse_ipv6_ext_hdrs: a header that does not fit leaves the rest zero.
            loop {
                if !matches!(
                    nw_proto,
                    IPPROTO_HOPOPTS
                        | IPPROTO_ROUTING
                        | IPPROTO_DSTOPTS
                        | IPPROTO_AH
                        | IPPROTO_FRAGMENT
                ) {
                    break;
                }
                if d.len() < 8 {
                    return (f, None);
                }
                let len = match nw_proto {
                    IPPROTO_AH => (usize::from(d[1]) + 2) * 4,
                    IPPROTO_FRAGMENT => 8,
                    _ => (usize::from(d[1]) + 1) * 8,
                };
                let next = d[0];
                let offlg = be16(d, 2);
                let fragment = nw_proto == IPPROTO_FRAGMENT;
                nw_proto = next;
                if d.len() < len {
                    return (f, None);
                }
                d = &d[len..];
                if fragment && offlg != 0 {
                    nw_frag = FRAG_ANY;
                    if offlg & 0xfff8 != 0 {
                        nw_frag |= FRAG_LATER;
                        nw_proto = IPPROTO_FRAGMENT;
                        break;
                    }
                }
            }
            f.ipv6_label = tc_flow & 0x000f_ffff;
        }
        ETH_TYPE_ARP | ETH_TYPE_RARP => {
            if d.len() >= 28
                && be16(d, 0) == 1
                && be16(d, 2) == ETH_TYPE_IP
                && d[4] == 6
                && d[5] == 4
            {
                f.nw_src = be32(d, 14);
                f.nw_dst = be32(d, 24);
                let op = be16(d, 6);
                if op <= 0xff {
                    f.nw_proto = op as u8;
                }
                f.arp_sha = mac(&d[8..]);
                f.arp_tha = mac(&d[18..]);
            }
            return (f, None);
        }
        _ => return (f, None),
    }
    f.nw_tos = nw_tos;
    f.nw_ttl = nw_ttl;
    f.nw_proto = nw_proto;
    f.nw_frag = nw_frag;
    let l4 = d;
    if nw_frag & FRAG_LATER == 0 {
        match nw_proto {
            IPPROTO_TCP if d.len() >= 20 => {
                let hdr_len = usize::from(d[12] >> 4) * 4;
                if hdr_len >= 20 && d.len() >= hdr_len {
                    f.tcp_flags = be16(d, 12) & 0x0fff;
                    f.tp_src = be16(d, 0);
                    f.tp_dst = be16(d, 2);
                }
            }
            IPPROTO_UDP if d.len() >= 8 => {
                f.tp_src = be16(d, 0);
                f.tp_dst = be16(d, 2);
            }
            IPPROTO_SCTP if d.len() >= 12 => {
                f.tp_src = be16(d, 0);
                f.tp_dst = be16(d, 2);
            }
            IPPROTO_ICMP | IPPROTO_IGMP if d.len() >= 8 => {
                f.tp_src = u16::from(d[0]);
                f.tp_dst = u16::from(d[1]);
            }
            IPPROTO_ICMPV6 if d.len() >= 8 => {
                f.tp_src = u16::from(d[0]);
                f.tp_dst = u16::from(d[1]);
                if d[1] == 0 && matches!(u16::from(d[0]), ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT)
                {
                    parse_nd(&mut f, &d[8..]);
                }
            }
            _ => {}
        }
    }
    (f, Some(l4))
}

/// `parse_icmpv6` of a neighbor solicitation or advertisement (after its first 8 bytes): the
/// target and the link-layer address options; the same option twice voids them all.
fn parse_nd(f: &mut Flow, mut d: &[u8]) {
    if d.len() < 16 {
        return;
    }
    f.nd_target = addr6(d);
    d = &d[16..];
    while d.len() >= 8 {
        let opt_len = usize::from(d[1]) * 8;
        if opt_len == 0 || opt_len > d.len() {
            return;
        }
        if opt_len == 8 && (d[0] == 1 || d[0] == 2) {
            let slot = if d[0] == 1 {
                &mut f.arp_sha
            } else {
                &mut f.arp_tha
            };
            if *slot != [0; 6] {
                f.nd_target = [0; 16];
                f.arp_sha = [0; 6];
                f.arp_tha = [0; 6];
                return;
            }
            *slot = mac(&d[2..]);
        }
        d = &d[opt_len..];
    }
}

fn eth_text(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// An IPv6 address as glibc's `inet_ntop` writes it (what Open vSwitch prints): the first
/// longest run of two or more zero groups as `::`, and the last 32 bits dotted after six zero
/// groups (`::10.0.0.2`) or five and `ffff` (`::ffff:10.0.0.1`).
pub fn ipv6_text(a: &[u8; 16]) -> String {
    let w: Vec<u16> = a.chunks_exact(2).map(|c| be16(c, 0)).collect();
    // Zero runs as (first group, length).
    type Run = Option<(usize, usize)>;
    let (mut best, mut cur): (Run, Run) = (None, None);
    for (i, &word) in w.iter().enumerate() {
        if word == 0 {
            cur = Some(cur.map_or((i, 1), |(b, l)| (b, l + 1)));
        } else if let Some(run) = cur.take()
            && best.is_none_or(|(_, l)| run.1 > l)
        {
            best = Some(run);
        }
    }
    if let Some(run) = cur
        && best.is_none_or(|(_, l)| run.1 > l)
    {
        best = Some(run);
    }
    let best = best.filter(|&(_, l)| l >= 2);
    let mut s = String::new();
    for i in 0..8 {
        if let Some((b, l)) = best
            && (b..b + l).contains(&i)
        {
            if i == b {
                s.push(':');
            }
            continue;
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && (best == Some((0, 6)) || (best == Some((0, 5)) && w[5] == 0xffff)) {
            let _ = write!(s, "{}", Ipv4Addr::new(a[12], a[13], a[14], a[15]));
            break;
        }
        let _ = write!(s, "{:x}", w[i]);
    }
    if best.is_some_and(|(b, l)| b + l == 8) {
        s.push(':');
    }
    s
}

/// `match_format` of `flow` with the masks of a packet (`flow_format`), without trailing
/// newline.
fn format(f: &Flow) -> String {
    let mut o: Vec<String> = Vec::new();
    let ip = f.dl_type == ETH_TYPE_IP;
    let ip6 = f.dl_type == ETH_TYPE_IPV6;
    let arp = matches!(f.dl_type, ETH_TYPE_ARP | ETH_TYPE_RARP);
    let mpls = matches!(f.dl_type, ETH_TYPE_MPLS | ETH_TYPE_MPLS_MCAST);
    let mut skip_type = true;
    let mut skip_proto = false;
    let keyword = match f.dl_type {
        ETH_TYPE_IP => {
            let name = match f.nw_proto {
                IPPROTO_ICMP => Some("icmp"),
                IPPROTO_TCP => Some("tcp"),
                IPPROTO_UDP => Some("udp"),
                IPPROTO_SCTP => Some("sctp"),
                _ => None,
            };
            skip_proto = name.is_some();
            name.unwrap_or("ip")
        }
        ETH_TYPE_IPV6 => {
            let name = match f.nw_proto {
                IPPROTO_ICMPV6 => Some("icmp6"),
                IPPROTO_TCP => Some("tcp6"),
                IPPROTO_UDP => Some("udp6"),
                IPPROTO_SCTP => Some("sctp6"),
                _ => None,
            };
            skip_proto = name.is_some();
            name.unwrap_or("ipv6")
        }
        ETH_TYPE_ARP => "arp",
        ETH_TYPE_RARP => "rarp",
        ETH_TYPE_MPLS => "mpls",
        ETH_TYPE_MPLS_MCAST => "mplsm",
        _ => {
            skip_type = false;
            ""
        }
    };
    if skip_type {
        o.push(keyword.to_string());
    }
    // Every tag there is, and the first absent one (as `vlan_tci=0x0000`).
    for (i, &tci) in f.vlans.iter().enumerate() {
        if i > 0 && f.vlans[i - 1] == 0 {
            break;
        }
        let n = if i == 0 { String::new() } else { i.to_string() };
        if tci & VLAN_CFI != 0 {
            o.push(format!("dl_vlan{n}={}", tci & 0x0fff));
            o.push(format!("dl_vlan_pcp{n}={}", tci >> 13));
        } else {
            o.push(format!("vlan_tci{n}=0x{tci:04x}"));
        }
    }
    o.push(format!("dl_src={}", eth_text(&f.dl_src)));
    o.push(format!("dl_dst={}", eth_text(&f.dl_dst)));
    if !skip_type {
        o.push(format!("dl_type=0x{:04x}", f.dl_type));
    }
    if ip6 {
        o.push(format!("ipv6_src={}", ipv6_text(&f.ipv6_src)));
        o.push(format!("ipv6_dst={}", ipv6_text(&f.ipv6_dst)));
        o.push(format!("ipv6_label=0x{:05x}", f.ipv6_label));
    } else if arp {
        o.push(format!("arp_spa={}", Ipv4Addr::from(f.nw_src)));
        o.push(format!("arp_tpa={}", Ipv4Addr::from(f.nw_dst)));
    } else if ip {
        o.push(format!("nw_src={}", Ipv4Addr::from(f.nw_src)));
        o.push(format!("nw_dst={}", Ipv4Addr::from(f.nw_dst)));
    }
    if !skip_proto && (ip || ip6 || arp) {
        let name = if arp { "arp_op" } else { "nw_proto" };
        o.push(format!("{name}={}", f.nw_proto));
    }
    if arp {
        o.push(format!("arp_sha={}", eth_text(&f.arp_sha)));
        o.push(format!("arp_tha={}", eth_text(&f.arp_tha)));
    }
    if ip || ip6 {
        o.push(format!("nw_tos={}", f.nw_tos & 0xfc));
        o.push(format!("nw_ecn={}", f.nw_tos & 0x03));
        o.push(format!("nw_ttl={}", f.nw_ttl));
    }
    if mpls {
        let lse = f.mpls[0];
        o.push(format!("mpls_label={}", lse >> 12));
        o.push(format!("mpls_tc={}", (lse >> 9) & 7));
        o.push(format!("mpls_ttl={}", lse & 0xff));
        o.push(format!("mpls_bos={}", (lse >> 8) & 1));
        // The labels after the first, up to the bottom of the stack.
        for i in 1..MAX_MPLS {
            if f.mpls[i - 1] & MPLS_BOS != 0 {
                break;
            }
            o.push(format!("mpls_lse{i}={}", f.mpls[i]));
        }
    }
    if ip || ip6 {
        let frag = match f.nw_frag & (FRAG_ANY | FRAG_LATER) {
            0 => "no",
            FRAG_ANY => "first",
            _ => "later",
        };
        o.push(format!("nw_frag={frag}"));
        let has_ports = f.nw_frag & FRAG_LATER == 0
            && matches!(
                f.nw_proto,
                IPPROTO_ICMP
                    | IPPROTO_ICMPV6
                    | IPPROTO_TCP
                    | IPPROTO_UDP
                    | IPPROTO_SCTP
                    | IPPROTO_IGMP
            );
        if has_ports {
            if ip && f.nw_proto == IPPROTO_ICMP || ip6 && f.nw_proto == IPPROTO_ICMPV6 {
                o.push(format!("icmp_type={}", f.tp_src));
                o.push(format!("icmp_code={}", f.tp_dst));
                let nd = ip6
                    && f.tp_dst == 0
                    && matches!(f.tp_src, ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT);
                if nd {
                    o.push(format!("nd_target={}", ipv6_text(&f.nd_target)));
                    o.push(format!("nd_sll={}", eth_text(&f.arp_sha)));
                    o.push(format!("nd_tll={}", eth_text(&f.arp_tha)));
                }
            } else {
                o.push(format!("tp_src={}", f.tp_src));
                o.push(format!("tp_dst={}", f.tp_dst));
            }
            if f.nw_proto == IPPROTO_TCP {
                o.push(format!("tcp_flags={}", tcp_flags_text(f.tcp_flags)));
            }
        }
    }
    o.join(",")
}

/// TCP flags as `format_flags` with `packet_tcp_flag_to_string` writes them: lowest bit
/// first, `|` between, `0` for none.
fn tcp_flags_text(flags: u16) -> String {
    const NAMES: [&str; 12] = [
        "fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[200]", "[400]", "[800]",
    ];
    if flags == 0 {
        return "0".into();
    }
    NAMES
        .iter()
        .enumerate()
        .filter(|&(i, _)| flags & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

/// `ofp_packet_to_string`: the frame's flow and its L4 checksum, one line without newline.
pub fn packet_to_string(frame: &[u8]) -> String {
    let (f, l4) = extract(frame);
    let mut s = format(&f);
    let l4 = l4.unwrap_or_default();
    // By the flow's nw_proto alone, as OVS (a later fragment's bytes too).
    match f.nw_proto {
        IPPROTO_TCP if l4.len() >= 20 => {
            let _ = write!(s, " tcp_csum:{:x}", be16(l4, 16));
        }
        IPPROTO_UDP if l4.len() >= 8 => {
            let _ = write!(s, " udp_csum:{:x}", be16(l4, 6));
        }
        IPPROTO_SCTP if l4.len() >= 12 => {
            let _ = write!(s, " sctp_csum:{:x}", be32(l4, 8));
        }
        IPPROTO_ICMP if l4.len() >= 8 => {
            let _ = write!(s, " icmp_csum:{:x}", be16(l4, 2));
        }
        IPPROTO_ICMPV6 if l4.len() >= 4 => {
            let _ = write!(s, " icmp6_csum:{:x}", be16(l4, 2));
        }
        _ => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of tests/data/openflow/packet_text.tsv prints as ovs-ofctl printed it:
    /// TCP (flags), UDP, SCTP, ICMP, ICMPv6 and ND, ARP/RARP, IPv6 with extension headers and
    /// fragments, VLAN and QinQ tags, MPLS, 802.2/SNAP, and short or malformed headers.
    #[test]
    fn frames_print_as_ovs_ofctl_prints_them() {
        let cases = include_str!("../../tests/data/openflow/packet_text.tsv");
        let mut n = 0;
        for line in cases.lines().filter(|l| !l.starts_with('#')) {
            let mut cols = line.split('\t');
            let (name, hex, want) = (
                cols.next().unwrap(),
                cols.next().unwrap(),
                cols.next().unwrap(),
            );
            let frame: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(packet_to_string(&frame), want, "{name}");
            n += 1;
        }
        assert!(n >= 60, "{n} cases");
    }

    #[test]
    /// Expected texts: Python's `socket.inet_ntop` (glibc's).
    fn ipv6_addresses_read_as_inet_ntop_writes_them() {
        let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        for (addr, want) in [
            ("::", "::"),
            ("::1", "::1"),
            ("fd00::1", "fd00::1"),
            ("fd00:0:1::", "fd00:0:1::"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("1:0:2:0:3:0:4:0", "1:0:2:0:3:0:4:0"),
            ("::10.0.0.2", "::10.0.0.2"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
            ("::0:0:1:1", "::0.1.0.1"),
            ("fe80::1:2", "fe80::1:2"),
            ("::ffff:0:0", "::ffff:0.0.0.0"),
            ("0:0:0:0:1:ffff::", "::1:ffff:0:0"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
        ] {
            assert_eq!(ipv6_text(&a(addr)), want, "{addr}");
        }
    }
}
