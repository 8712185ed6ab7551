//! A megaflow's masked key in the style of `ovs-appctl dpctl/dump-flows`:
//! `recirc_id(0),in_port(1),eth(dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(dst=10.0.0.0/255.255.255.0)`.
//!
//! A field no bit of which is in the mask is left out (the megaflow does not look at it); a
//! field the mask covers whole prints as `name=value`, a partly masked one as `name=value/mask`.

use std::net::{Ipv4Addr, Ipv6Addr};

use encap::flowkey::{FRAG_ANY, FRAG_LATER, FlowKey};

/// Fields of one `group(...)`.
struct Group<'a> {
    out: &'a mut Vec<String>,
    name: &'static str,
    parts: Vec<String>,
}

impl Group<'_> {
    fn field<T: PartialEq + Default + Copy>(
        &mut self,
        name: &str,
        value: T,
        mask: T,
        full: T,
        show: impl Fn(T) -> String,
    ) {
        if mask == T::default() {
            return;
        }
        if mask == full {
            self.parts.push(format!("{name}={}", show(value)));
        } else {
            self.parts
                .push(format!("{name}={}/{}", show(value), show(mask)));
        }
    }

    fn done(self) {
        if !self.parts.is_empty() {
            self.out
                .push(format!("{}({})", self.name, self.parts.join(",")));
        }
    }
}

fn group<'a>(out: &'a mut Vec<String>, name: &'static str) -> Group<'a> {
    Group {
        out,
        name,
        parts: Vec::new(),
    }
}

fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn ip4(a: u32) -> String {
    Ipv4Addr::from(a).to_string()
}

fn ip6(a: [u8; 16]) -> String {
    Ipv6Addr::from(a).to_string()
}

fn hex<T: std::fmt::LowerHex>(v: T) -> String {
    format!("{v:#x}")
}

fn dec<T: std::fmt::Display>(v: T) -> String {
    v.to_string()
}

/// A one-value group like `in_port(3)` or `eth_type(0x0800)`, masked like the fields.
fn single<T: PartialEq + Default + Copy>(
    out: &mut Vec<String>,
    name: &'static str,
    value: T,
    mask: T,
    full: T,
    show: impl Fn(T) -> String,
) {
    if mask == T::default() {
        return;
    }
    if mask == full {
        out.push(format!("{name}({})", show(value)));
    } else {
        out.push(format!("{name}({}/{})", show(value), show(mask)));
    }
}

/// The text of megaflow `key` under `mask`.
pub fn format_megaflow(key: &FlowKey, mask: &FlowKey) -> String {
    let (k, m) = (key, mask);
    let mut out = Vec::new();
    // Metadata is matched exactly in every megaflow: recirc_id always shows, like OVS.
    out.push(format!("recirc_id({})", k.recirc_id));
    single(&mut out, "in_port", k.in_port, m.in_port, u32::MAX, dec);
    single(&mut out, "metadata", k.metadata, m.metadata, u64::MAX, hex);
    for (i, (v, mk)) in k.regs.iter().zip(m.regs.iter()).enumerate() {
        if *mk != 0 {
            let shown = if *mk == u32::MAX {
                hex(*v)
            } else {
                format!("{}/{}", hex(*v), hex(*mk))
            };
            out.push(format!("reg{i}({shown})"));
        }
    }
    let mut g = group(&mut out, "tunnel");
    g.field("tun_id", k.tun_id, m.tun_id, u64::MAX, hex);
    g.field("src", k.tun_src, m.tun_src, u32::MAX, ip4);
    g.field("dst", k.tun_dst, m.tun_dst, u32::MAX, ip4);
    g.done();
    single(&mut out, "ct_state", k.ct_state, m.ct_state, u8::MAX, hex);
    single(&mut out, "ct_zone", k.ct_zone, m.ct_zone, u16::MAX, dec);
    single(&mut out, "ct_mark", k.ct_mark, m.ct_mark, u32::MAX, hex);
    let mut g = group(&mut out, "eth");
    g.field("src", k.eth_src, m.eth_src, [0xff; 6], mac);
    g.field("dst", k.eth_dst, m.eth_dst, [0xff; 6], mac);
    g.done();
    let mut g = group(&mut out, "vlan");
    g.field("tci", k.vlan_tci, m.vlan_tci, u16::MAX, hex);
    g.done();
    single(
        &mut out,
        "eth_type",
        k.eth_type,
        m.eth_type,
        u16::MAX,
        |t| format!("0x{t:04x}"),
    );
    // Only the fields of the entry's own protocols print: a packet's lookup in another
    // protocol's subtable looks at fields this packet does not have (the ICMP type of a TCP
    // packet, the ARP opcode of an IP one), all 0, and OVS's datapath key has no place for
    // them. An entry that does not pin its Ethernet type or IP protocol prints what it
    // looks at under the generic `ipv4(...)`/`l4(...)` groups.
    let eth_type = (m.eth_type == u16::MAX).then_some(k.eth_type);
    let proto = (m.nw_proto == u8::MAX).then_some(k.nw_proto);
    match eth_type {
        Some(0x0806 | 0x8035) => arp_group(&mut out, k, m),
        Some(0x0800) => ip_group(&mut out, "ipv4", k, m, false),
        Some(0x86dd) => ip_group(&mut out, "ipv6", k, m, true),
        Some(_) => {}
        None => {
            ip_group(&mut out, "ipv4", k, m, true);
            l4_group(&mut out, "l4", k, m, true, true);
            single(&mut out, "tcp_flags", k.tcp_flags, m.tcp_flags, 0x0fff, hex);
        }
    }
    let ip = matches!(eth_type, Some(0x0800 | 0x86dd));
    if ip {
        let v6 = eth_type == Some(0x86dd);
        match proto {
            Some(6) => l4_group(&mut out, "tcp", k, m, true, false),
            Some(17) => l4_group(&mut out, "udp", k, m, true, false),
            Some(132) => l4_group(&mut out, "sctp", k, m, true, false),
            Some(1) if !v6 => l4_group(&mut out, "icmp", k, m, false, true),
            Some(58) if v6 => {
                l4_group(&mut out, "icmpv6", k, m, false, true);
                let mut g = group(&mut out, "nd");
                g.field("target", k.nd_target, m.nd_target, [0xff; 16], ip6);
                g.field("sll", k.arp_sha, m.arp_sha, [0xff; 6], mac);
                g.field("tll", k.arp_tha, m.arp_tha, [0xff; 6], mac);
                g.done();
            }
            Some(_) => {}
            None => l4_group(&mut out, "l4", k, m, true, true),
        }
        if matches!(proto, Some(6) | None) {
            single(&mut out, "tcp_flags", k.tcp_flags, m.tcp_flags, 0x0fff, hex);
        }
    }
    out.join(",")
}

fn arp_group(out: &mut Vec<String>, k: &FlowKey, m: &FlowKey) {
    let mut g = group(out, "arp");
    g.field("sip", k.arp_spa, m.arp_spa, u32::MAX, ip4);
    g.field("tip", k.arp_tpa, m.arp_tpa, u32::MAX, ip4);
    g.field("op", k.arp_op, m.arp_op, u16::MAX, dec);
    g.field("sha", k.arp_sha, m.arp_sha, [0xff; 6], mac);
    g.field("tha", k.arp_tha, m.arp_tha, [0xff; 6], mac);
    g.done();
}

/// `ipv4(...)` or `ipv6(...)`: the addresses of `v6` too when it is set (the IPv6 group, or
/// an entry whose Ethernet type is unknown), the IPv4 ones unless the entry is IPv6.
fn ip_group(out: &mut Vec<String>, name: &'static str, k: &FlowKey, m: &FlowKey, v6: bool) {
    let mut g = group(out, name);
    if name != "ipv6" {
        g.field("src", k.nw_src, m.nw_src, u32::MAX, ip4);
        g.field("dst", k.nw_dst, m.nw_dst, u32::MAX, ip4);
    }
    if v6 {
        g.field("src", k.ipv6_src, m.ipv6_src, [0xff; 16], ip6);
        g.field("dst", k.ipv6_dst, m.ipv6_dst, [0xff; 16], ip6);
        g.field("label", k.ipv6_label, m.ipv6_label, u32::MAX, hex);
    }
    g.field("proto", k.nw_proto, m.nw_proto, u8::MAX, dec);
    g.field("tos", k.nw_tos, m.nw_tos, u8::MAX, hex);
    g.field("ttl", k.nw_ttl, m.nw_ttl, u8::MAX, dec);
    if m.nw_frag != 0 {
        let frag = match (k.nw_frag & FRAG_ANY != 0, k.nw_frag & FRAG_LATER != 0) {
            (false, _) => "no",
            (true, false) => "first",
            (true, true) => "later",
        };
        g.parts.push(format!("frag={frag}"));
    }
    g.done();
}

/// An L4 group: the ports (TCP, UDP, SCTP) and/or the ICMP type and code.
fn l4_group(
    out: &mut Vec<String>,
    name: &'static str,
    k: &FlowKey,
    m: &FlowKey,
    ports: bool,
    icmp: bool,
) {
    let mut g = group(out, name);
    if ports {
        g.field("src", k.tp_src, m.tp_src, u16::MAX, dec);
        g.field("dst", k.tp_dst, m.tp_dst, u16::MAX, dec);
    }
    if icmp {
        g.field("type", k.icmp_type, m.icmp_type, u8::MAX, dec);
        g.field("code", k.icmp_code, m.icmp_code, u8::MAX, dec);
    }
    g.done();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_only_the_bits_the_megaflow_looks_at() {
        let key = FlowKey {
            in_port: 3,
            eth_type: 0x0800,
            nw_dst: u32::from(Ipv4Addr::new(10, 0, 0, 0)),
            nw_proto: 6,
            tp_dst: 80,
            ..Default::default()
        };
        let mask = FlowKey {
            in_port: u32::MAX,
            recirc_id: u32::MAX,
            eth_type: u16::MAX,
            nw_dst: 0xffff_ff00,
            nw_proto: u8::MAX,
            tp_dst: u16::MAX,
            ..Default::default()
        };
        assert_eq!(
            format_megaflow(&key, &mask),
            "recirc_id(0),in_port(3),eth_type(0x0800),ipv4(dst=10.0.0.0/255.255.255.0,proto=6),tcp(dst=80)"
        );
    }

    #[test]
    fn arp_and_macs_print_in_their_own_groups() {
        let key = FlowKey {
            eth_dst: [2, 0, 0, 0, 0, 2],
            eth_type: 0x0806,
            arp_tpa: u32::from(Ipv4Addr::new(10, 0, 0, 1)),
            ..Default::default()
        };
        let mask = FlowKey {
            eth_dst: [0xff; 6],
            eth_type: u16::MAX,
            arp_tpa: u32::MAX,
            ..Default::default()
        };
        assert_eq!(
            format_megaflow(&key, &mask),
            "recirc_id(0),eth(dst=02:00:00:00:00:02),eth_type(0x0806),arp(tip=10.0.0.1)"
        );
    }

    /// A TCP packet's lookup in an ICMP or ARP subtable looks at its (zero) ICMP type and ARP
    /// opcode: they are no fields of a TCP entry and do not print. Nor do an ICMP entry's
    /// ports.
    #[test]
    fn fields_of_other_protocols_are_left_out() {
        let mask = FlowKey {
            recirc_id: u32::MAX,
            eth_type: u16::MAX,
            nw_proto: u8::MAX,
            tp_src: u16::MAX,
            tp_dst: u16::MAX,
            icmp_type: u8::MAX,
            icmp_code: u8::MAX,
            arp_op: u16::MAX,
            arp_sha: [0xff; 6],
            tcp_flags: 0x0fff,
            ..Default::default()
        };
        let tcp = FlowKey {
            eth_type: 0x0800,
            nw_proto: 6,
            tp_dst: 80,
            tcp_flags: 2,
            ..Default::default()
        };
        assert_eq!(
            format_megaflow(&tcp, &mask),
            "recirc_id(0),eth_type(0x0800),ipv4(proto=6),tcp(src=0,dst=80),tcp_flags(0x2)"
        );
        let icmp = FlowKey {
            eth_type: 0x0800,
            nw_proto: 1,
            icmp_type: 8,
            ..Default::default()
        };
        assert_eq!(
            format_megaflow(&icmp, &mask),
            "recirc_id(0),eth_type(0x0800),ipv4(proto=1),icmp(type=8,code=0)"
        );
        let tcp6 = FlowKey {
            eth_type: 0x86dd,
            nw_proto: 6,
            tp_src: 1,
            ..Default::default()
        };
        assert_eq!(
            format_megaflow(&tcp6, &mask),
            "recirc_id(0),eth_type(0x86dd),ipv6(proto=6),tcp(src=1,dst=0),tcp_flags(0x0)"
        );
        let arp = FlowKey {
            eth_type: 0x0806,
            arp_op: 1,
            ..Default::default()
        };
        assert_eq!(
            format_megaflow(&arp, &mask),
            "recirc_id(0),eth_type(0x0806),arp(op=1,sha=00:00:00:00:00:00)"
        );
    }
}
