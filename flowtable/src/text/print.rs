//! Printing in the exact normalized form of `ovs-ofctl -O OpenFlow13 dump-flows` (OVS 3.1).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use encap::flowkey::VLAN_PRESENT;

use crate::action::{Action, CtZone, Instructions, Nat, NatKind, PacketInReason, SubField};
use crate::fields::FieldId;
use crate::flow::{DEFAULT_PRIORITY, FlowEntry, FlowFlags, FlowMod};
use crate::match_::{ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, IPPROTO_TCP, Match};
use crate::port::OfPort;

use super::value::{
    CT_STATE_NAMES, TCP_FLAG_NAMES, cidr_len, format_field_masked, format_flag_list, format_flags,
    format_frag, format_hex_bytes, format_mac, hex_c,
};

/// Printing options.
#[derive(Clone, Copy, Default)]
pub struct PrintOpts<'a> {
    /// Include the `cookie=.., duration=.., table=.., n_packets=.., n_bytes=..,` statistics.
    pub stats: bool,
    /// Print `duration=<T>` instead of the real duration (for golden comparisons).
    pub mask_durations: bool,
    /// The time durations are measured to (defaults to now).
    pub now: Option<Instant>,
    /// Port names (`--names`): maps a port number to its name.
    pub port_names: Option<&'a dyn Fn(OfPort) -> Option<String>>,
}

impl PrintOpts<'_> {
    fn port(&self, p: OfPort) -> String {
        if let Some(n) = self.port_names.and_then(|f| f(p)) {
            return n;
        }
        p.to_string()
    }
}

/// A duration of whole milliseconds as Open vSwitch's `ofp_print_duration` writes it: `5.250s`,
/// and `5s` on a whole second (the switch reports milliseconds, as Open vSwitch does).
pub fn duration_ms(ms: u128) -> String {
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        frac => format!("{}.{frac:03}s", ms / 1000),
    }
}

/// One `dump-flows` line, with its leading space.
pub fn print_flow(e: &FlowEntry, opts: &PrintOpts) -> String {
    let mut s = String::from(" ");
    if opts.stats || e.cookie != 0 {
        let _ = write!(s, "cookie=0x{:x}, ", e.cookie);
    }
    if opts.stats {
        if opts.mask_durations {
            s.push_str("duration=<T>, ");
        } else {
            let now = opts.now.unwrap_or_else(Instant::now);
            let d = now.saturating_duration_since(e.created);
            let _ = write!(s, "duration={}, ", duration_ms(d.as_millis()));
        }
    }
    if opts.stats || e.table_id != 0 {
        let _ = write!(s, "table={}, ", e.table_id);
    }
    if opts.stats {
        let _ = write!(s, "n_packets={}, n_bytes={}, ", e.packets, e.bytes);
    }
    if e.idle_timeout != 0 {
        let _ = write!(s, "idle_timeout={}, ", e.idle_timeout);
    }
    if e.hard_timeout != 0 {
        let _ = write!(s, "hard_timeout={}, ", e.hard_timeout);
    }
    push_flags(&mut s, e.flags);
    let m = match_text(&e.match_, e.priority, opts);
    s.push_str(&m);
    if !m.is_empty() {
        s.push(' ');
    }
    s.push_str("actions=");
    s.push_str(&instructions_text(&e.instructions, opts));
    s
}

fn push_flags(s: &mut String, flags: FlowFlags) {
    if flags.0 == 0 {
        return;
    }
    let names: Vec<&str> = FlowFlags::NAMES
        .iter()
        .filter(|(b, _)| flags.contains(*b))
        .map(|(_, n)| *n)
        .collect();
    s.push_str(&names.join(" "));
    s.push(' ');
}

/// A flow-mod as add-flow text (what `parse_flow` reads back to the same request).
pub fn print_flow_mod(fm: &FlowMod) -> String {
    let mut parts = Vec::new();
    if fm.table_id != 0 {
        parts.push(format!("table={}", fm.table_id));
    }
    if fm.cookie != 0 || fm.cookie_mask != 0 {
        if fm.cookie_mask != 0 {
            parts.push(format!("cookie=0x{:x}/0x{:x}", fm.cookie, fm.cookie_mask));
        } else {
            parts.push(format!("cookie=0x{:x}", fm.cookie));
        }
    }
    if fm.idle_timeout != 0 {
        parts.push(format!("idle_timeout={}", fm.idle_timeout));
    }
    if fm.hard_timeout != 0 {
        parts.push(format!("hard_timeout={}", fm.hard_timeout));
    }
    for (b, n) in FlowFlags::NAMES {
        if fm.flags.contains(b) {
            parts.push(n.to_string());
        }
    }
    if fm.out_port != OfPort::ANY {
        parts.push(format!("out_port={}", fm.out_port));
    }
    if fm.out_group != crate::flow::GROUP_ANY {
        parts.push(format!("out_group={}", fm.out_group));
    }
    let m = match_text(&fm.match_, fm.priority, &PrintOpts::default());
    if !m.is_empty() {
        parts.push(m);
    }
    parts.push(format!("actions={}", print_instructions(&fm.instructions)));
    parts.join(",")
}

/// The match as ovs-ofctl prints it (without priority).
pub fn print_match(m: &Match) -> String {
    match_text(m, DEFAULT_PRIORITY, &PrintOpts::default())
}

fn be16_masked(out: &mut Vec<String>, name: &str, v: u128, m: u128, full: u128) {
    if m == 0 {
        return;
    }
    if m == full {
        out.push(format!("{name}={v}"));
    } else {
        out.push(format!("{name}=0x{v:x}/0x{m:x}"));
    }
}

fn c_hex_masked(out: &mut Vec<String>, name: &str, v: u128, m: u128, full: u128) {
    if m == 0 {
        return;
    }
    if m == full {
        out.push(format!("{name}={}", hex_c(v)));
    } else {
        out.push(format!("{name}={}/{}", hex_c(v), hex_c(m)));
    }
}

fn ip_masked(out: &mut Vec<String>, name: &str, v: u128, m: u128) {
    if m == 0 {
        return;
    }
    let a = Ipv4Addr::from(v as u32);
    if m == 0xffff_ffff {
        out.push(format!("{name}={a}"));
    } else if let Some(l) = cidr_len(m, 32) {
        out.push(format!("{name}={a}/{l}"));
    } else {
        out.push(format!("{name}={a}/{}", Ipv4Addr::from(m as u32)));
    }
}

fn ipv6_masked(out: &mut Vec<String>, name: &str, v: u128, m: u128) {
    if m == 0 {
        return;
    }
    let a = Ipv6Addr::from(v);
    if m == u128::MAX {
        out.push(format!("{name}={a}"));
    } else if let Some(l) = cidr_len(m, 128) {
        out.push(format!("{name}={a}/{l}"));
    } else {
        out.push(format!("{name}={a}/{}", Ipv6Addr::from(m)));
    }
}

fn eth_masked(out: &mut Vec<String>, name: &str, v: u128, m: u128) {
    if m == 0 {
        return;
    }
    if m == 0xffff_ffff_ffff {
        out.push(format!("{name}={}", format_mac(v)));
    } else {
        out.push(format!("{name}={}/{}", format_mac(v), format_mac(m)));
    }
}

/// Field order and shorthands follow OVS `match_format()`.
fn match_text(m: &Match, priority: u16, opts: &PrintOpts) -> String {
    let mut o: Vec<String> = Vec::new();
    let g = |f: FieldId| m.get(f);
    if priority != DEFAULT_PRIORITY {
        o.push(format!("priority={priority}"));
    }
    let (v, mk) = g(FieldId::PktMark);
    c_hex_masked(&mut o, "pkt_mark", v, mk, 0xffff_ffff);
    if m.has(FieldId::ConjId) {
        o.push(format!("conj_id={}", m.value.conj_id));
    }
    let (v, mk) = g(FieldId::CtState);
    if mk == 0xff {
        // Every flag matched: as Open vSwitch's format_flags, the set ones joined by '|'.
        o.push(format!("ct_state={}", format_flag_list(v, &CT_STATE_NAMES)));
    } else if mk != 0 {
        o.push(format!("ct_state={}", format_flags(v, mk, &CT_STATE_NAMES)));
    }
    be16_masked(
        &mut o,
        "ct_zone",
        g(FieldId::CtZone).0,
        g(FieldId::CtZone).1,
        0xffff,
    );
    let (v, mk) = g(FieldId::CtMark);
    c_hex_masked(&mut o, "ct_mark", v, mk, 0xffff_ffff);
    let (v, mk) = g(FieldId::CtLabel);
    c_hex_masked(&mut o, "ct_label", v, mk, u128::MAX);
    let (v, mk) = g(FieldId::CtNwSrc);
    ip_masked(&mut o, "ct_nw_src", v, mk);
    let (v, mk) = g(FieldId::CtIpv6Src);
    ipv6_masked(&mut o, "ct_ipv6_src", v, mk);
    let (v, mk) = g(FieldId::CtNwDst);
    ip_masked(&mut o, "ct_nw_dst", v, mk);
    let (v, mk) = g(FieldId::CtIpv6Dst);
    ipv6_masked(&mut o, "ct_ipv6_dst", v, mk);
    if m.has(FieldId::CtNwProto) {
        o.push(format!("ct_nw_proto={}", m.value.ct_nw_proto));
    }
    let (v, mk) = g(FieldId::CtTpSrc);
    be16_masked(&mut o, "ct_tp_src", v, mk, 0xffff);
    let (v, mk) = g(FieldId::CtTpDst);
    be16_masked(&mut o, "ct_tp_dst", v, mk, 0xffff);

    let eth_type = m.eth_type();
    let proto = m.nw_proto();
    let mut skip_type = true;
    let mut skip_proto = false;
    match eth_type {
        Some(ETH_TYPE_IP) => {
            let name = match proto {
                Some(1) => Some("icmp"),
                // `igmp` is read but not printed: ovs-ofctl prints (and only reads)
                // `ip,nw_proto=2`.
                Some(6) => Some("tcp"),
                Some(17) => Some("udp"),
                Some(132) => Some("sctp"),
                _ => None,
            };
            skip_proto = name.is_some();
            o.push(name.unwrap_or("ip").to_string());
        }
        Some(ETH_TYPE_IPV6) => {
            let name = match proto {
                Some(58) => Some("icmp6"),
                Some(6) => Some("tcp6"),
                Some(17) => Some("udp6"),
                Some(132) => Some("sctp6"),
                _ => None,
            };
            skip_proto = name.is_some();
            o.push(name.unwrap_or("ipv6").to_string());
        }
        Some(ETH_TYPE_ARP) => o.push("arp".into()),
        Some(0x8035) => o.push("rarp".into()),
        _ => skip_type = false,
    }
    // A match on `xreg`/`xxreg` is a match on its registers, printed as those (as OVS does).
    for (i, f) in FieldId::REGS.into_iter().enumerate() {
        let (v, mk) = g(f);
        c_hex_masked(&mut o, &format!("reg{i}"), v, mk, 0xffff_ffff);
    }
    let (v, mk) = g(FieldId::TunId);
    c_hex_masked(&mut o, "tun_id", v, mk, u64::MAX as u128);
    let (v, mk) = g(FieldId::TunSrc);
    ip_masked(&mut o, "tun_src", v, mk);
    let (v, mk) = g(FieldId::TunDst);
    ip_masked(&mut o, "tun_dst", v, mk);
    let (v, mk) = g(FieldId::Metadata);
    c_hex_masked(&mut o, "metadata", v, mk, u64::MAX as u128);
    if m.has(FieldId::InPort) {
        o.push(format!("in_port={}", opts.port(OfPort(m.value.in_port))));
    }
    push_vlan(&mut o, m);
    let (v, mk) = g(FieldId::EthSrc);
    eth_masked(&mut o, "dl_src", v, mk);
    let (v, mk) = g(FieldId::EthDst);
    eth_masked(&mut o, "dl_dst", v, mk);
    if !skip_type && m.mask.eth_type != 0 {
        o.push(format!("dl_type=0x{:04x}", m.value.eth_type));
    }
    if eth_type == Some(ETH_TYPE_IPV6) {
        let (v, mk) = g(FieldId::Ipv6Src);
        ipv6_masked(&mut o, "ipv6_src", v, mk);
        let (v, mk) = g(FieldId::Ipv6Dst);
        ipv6_masked(&mut o, "ipv6_dst", v, mk);
        let (v, mk) = g(FieldId::Ipv6Label);
        if mk == 0xfffff {
            o.push(format!("ipv6_label=0x{v:05x}"));
        } else if mk != 0 {
            o.push(format!("ipv6_label=0x{v:05x}/0x{mk:05x}"));
        }
    } else if eth_type == Some(ETH_TYPE_ARP) || eth_type == Some(0x8035) {
        let (v, mk) = g(FieldId::ArpSpa);
        ip_masked(&mut o, "arp_spa", v, mk);
        let (v, mk) = g(FieldId::ArpTpa);
        ip_masked(&mut o, "arp_tpa", v, mk);
    } else {
        let (v, mk) = g(FieldId::Ipv4Src);
        ip_masked(&mut o, "nw_src", v, mk);
        let (v, mk) = g(FieldId::Ipv4Dst);
        ip_masked(&mut o, "nw_dst", v, mk);
    }
    if m.has(FieldId::ArpOp) {
        o.push(format!("arp_op={}", m.value.arp_op));
    }
    if !skip_proto && m.mask.nw_proto != 0 {
        o.push(format!("nw_proto={}", m.value.nw_proto));
    }
    // (In an IPv6 flow these bits are the ND link-layer address options, printed below.)
    if eth_type != Some(ETH_TYPE_IPV6) {
        let (v, mk) = g(FieldId::ArpSha);
        eth_masked(&mut o, "arp_sha", v, mk);
        let (v, mk) = g(FieldId::ArpTha);
        eth_masked(&mut o, "arp_tha", v, mk);
    }
    if m.mask.nw_tos & 0xfc != 0 {
        o.push(format!("nw_tos={}", m.value.nw_tos & 0xfc));
    }
    if m.mask.nw_tos & 0x03 != 0 {
        o.push(format!("nw_ecn={}", m.value.nw_tos & 0x03));
    }
    if m.mask.nw_ttl != 0 {
        o.push(format!("nw_ttl={}", m.value.nw_ttl));
    }
    if m.mask.nw_frag != 0 {
        o.push(format!(
            "nw_frag={}",
            format_frag(m.value.nw_frag as u128, m.mask.nw_frag as u128)
        ));
    }
    if m.mask.icmp_type != 0 {
        o.push(format!("icmp_type={}", m.value.icmp_type));
    }
    if m.mask.icmp_code != 0 {
        o.push(format!("icmp_code={}", m.value.icmp_code));
    }
    if eth_type == Some(ETH_TYPE_IPV6) {
        let (v, mk) = g(FieldId::NdTarget);
        ipv6_masked(&mut o, "nd_target", v, mk);
        let (v, mk) = g(FieldId::NdSll);
        eth_masked(&mut o, "nd_sll", v, mk);
        let (v, mk) = g(FieldId::NdTll);
        eth_masked(&mut o, "nd_tll", v, mk);
    }
    let (v, mk) = g(FieldId::TpSrc);
    be16_masked(&mut o, "tp_src", v, mk, 0xffff);
    let (v, mk) = g(FieldId::TpDst);
    be16_masked(&mut o, "tp_dst", v, mk, 0xffff);
    let (v, mk) = g(FieldId::TcpFlags);
    if mk != 0 {
        if mk == 0xfff {
            // As Open vSwitch's format_flags: the set flags joined by '|', or 0.
            o.push(format!(
                "tcp_flags={}",
                format_flag_list(v, &TCP_FLAG_NAMES)
            ));
        } else if proto != Some(IPPROTO_TCP) {
            o.push(format!("tcp_flags=0x{v:03x}/0x{mk:03x}"));
        } else {
            o.push(format!(
                "tcp_flags={}",
                format_flags(v, mk, &TCP_FLAG_NAMES)
            ));
        }
    }
    o.join(",")
}

fn push_vlan(o: &mut Vec<String>, m: &Match) {
    let tci = m.value.vlan_tci;
    let mask = m.mask.vlan_tci;
    if mask == 0 {
        return;
    }
    let vid_mask = mask & 0x0fff;
    let pcp_mask = mask & 0xe000;
    let cfi = mask & VLAN_PRESENT != 0;
    if cfi
        && tci & VLAN_PRESENT != 0
        && (vid_mask == 0 || vid_mask == 0x0fff)
        && (pcp_mask == 0 || pcp_mask == 0xe000)
        && (vid_mask != 0 || pcp_mask != 0)
    {
        if vid_mask != 0 {
            o.push(format!("dl_vlan={}", tci & 0x0fff));
        }
        if pcp_mask != 0 {
            o.push(format!("dl_vlan_pcp={}", tci >> 13));
        }
    } else if mask == 0xffff {
        o.push(format!("vlan_tci=0x{tci:04x}"));
    } else {
        o.push(format!("vlan_tci=0x{tci:04x}/0x{mask:04x}"));
    }
}

/// The instruction set as ovs-ofctl prints it after `actions=`.
pub fn print_instructions(ins: &Instructions) -> String {
    instructions_text(ins, &PrintOpts::default())
}

fn instructions_text(ins: &Instructions, opts: &PrintOpts) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = ins.meter {
        parts.push(format!("meter:{m}"));
    }
    if !ins.apply.is_empty() {
        parts.push(actions_text(&ins.apply, opts));
    }
    if ins.clear_actions {
        parts.push("clear_actions".into());
    }
    if let Some(w) = &ins.write_actions {
        parts.push(format!("write_actions({})", actions_text(w, opts)));
    }
    if let Some((v, m)) = ins.write_metadata {
        if m == u64::MAX {
            parts.push(format!("write_metadata:{}", hex_c(v as u128)));
        } else {
            parts.push(format!(
                "write_metadata:{}/{}",
                hex_c(v as u128),
                hex_c(m as u128)
            ));
        }
    }
    if let Some(t) = ins.goto_table {
        parts.push(format!("goto_table:{t}"));
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

/// An action list as ovs-ofctl prints it (`drop` when empty).
pub fn print_actions(actions: &[Action]) -> String {
    actions_text(actions, &PrintOpts::default())
}

pub(crate) fn actions_text(actions: &[Action], opts: &PrintOpts) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    let v: Vec<String> = actions.iter().map(|a| action_text(a, opts)).collect();
    v.join(",")
}

fn subfield_text(sf: &SubField) -> String {
    let name = sf.field.info().nxm_name;
    if sf.is_whole() {
        format!("{name}[]")
    } else if sf.n_bits == 1 {
        format!("{name}[{}]", sf.ofs)
    } else {
        format!(
            "{name}[{}..{}]",
            sf.ofs,
            sf.ofs as u32 + sf.n_bits as u32 - 1
        )
    }
}

fn action_text(a: &Action, opts: &PrintOpts) -> String {
    match a {
        Action::Output { port, .. } => match port.reserved_name() {
            Some(n) => n.to_string(),
            None => format!("output:{}", opts.port(*port)),
        },
        Action::SetField { field, value, mask } => {
            format!(
                "set_field:{}->{}",
                format_field_masked(*field, *value, *mask),
                field.info().name
            )
        }
        // C's `%#x`, as ovs-ofctl: `load:0->` (the zero pieces of a split wide load).
        Action::RegLoad { dst, value } => {
            format!("load:{}->{}", hex_c(*value), subfield_text(dst))
        }
        Action::Move { src, dst } => format!("move:{}->{}", subfield_text(src), subfield_text(dst)),
        Action::StackPush(sf) => format!("push:{}", subfield_text(sf)),
        Action::StackPop(sf) => format!("pop:{}", subfield_text(sf)),
        Action::PushVlan(t) => format!("push_vlan:0x{t:x}"),
        Action::PopVlan => "pop_vlan".into(),
        Action::DecTtl => "dec_ttl".into(),
        Action::SetQueue(q) => format!("set_queue:{q}"),
        Action::SetNwTtl(t) => format!("mod_nw_ttl:{t}"),
        Action::OutputReg { src, .. } => format!("output:{}", subfield_text(src)),
        Action::OutputTrunc { port, max_len } => {
            format!("output(port={},max_len={max_len})", opts.port(*port))
        }
        Action::Resubmit { in_port, table } => match (in_port, table) {
            (Some(p), None) => format!("resubmit:{}", opts.port(*p)),
            (p, t) => format!(
                "resubmit({},{})",
                p.map(|p| opts.port(p)).unwrap_or_default(),
                t.map(|t| t.to_string()).unwrap_or_default()
            ),
        },
        Action::Group(g) => format!("group:{g}"),
        Action::Ct(ct) => {
            let mut s = String::from("ct(");
            if ct.commit {
                s.push_str("commit,");
            }
            if ct.force {
                s.push_str("force,");
            }
            if let Some(t) = ct.table {
                let _ = write!(s, "table={t},");
            }
            match &ct.zone {
                Some(CtZone::Field(sf)) => {
                    let _ = write!(s, "zone={},", subfield_text(sf));
                }
                Some(CtZone::Imm(z)) if *z != 0 => {
                    let _ = write!(s, "zone={z},");
                }
                _ => {}
            }
            if let Some(nat) = &ct.nat {
                s.push_str(&nat_text(nat));
                s.push(',');
            }
            if !ct.exec.is_empty() {
                let _ = write!(s, "exec({}),", actions_text(&ct.exec, opts));
            }
            match ct.alg {
                Some(21) => s.push_str("alg=ftp,"),
                Some(69) => s.push_str("alg=tftp,"),
                Some(p) => {
                    let _ = write!(s, "alg={p},");
                }
                None => {}
            }
            if s.ends_with(',') {
                s.pop();
            }
            s.push(')');
            s
        }
        Action::CtClear => "ct_clear".into(),
        Action::Controller(c) => {
            if c.reason == PacketInReason::Action && c.id == 0 && c.userdata.is_empty() && !c.pause
            {
                return format!("CONTROLLER:{}", c.max_len);
            }
            let mut parts = Vec::new();
            if c.reason != PacketInReason::Action {
                parts.push(format!("reason={}", c.reason.name()));
            }
            if c.max_len != u16::MAX {
                parts.push(format!("max_len={}", c.max_len));
            }
            if c.id != 0 {
                parts.push(format!("id={}", c.id));
            }
            if !c.userdata.is_empty() {
                parts.push(format!("userdata={}", format_hex_bytes(&c.userdata)));
            }
            if c.pause {
                parts.push("pause".into());
            }
            format!("controller({})", parts.join(","))
        }
        Action::Note(b) => format!("note:{}", format_hex_bytes(b)),
        Action::Learn(l) => super::learn::learn_text(l, subfield_text),
        Action::Multipath(mp) => super::multipath::multipath_text(mp, subfield_text),
        Action::Bundle(b) => super::multipath::bundle_text(b, subfield_text, &|p| opts.port(p)),
        Action::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            let mut parts = Vec::new();
            if *idle_timeout != 0 {
                parts.push(format!("idle_timeout={idle_timeout}"));
            }
            if *hard_timeout != 0 {
                parts.push(format!("hard_timeout={hard_timeout}"));
            }
            format!("fin_timeout({})", parts.join(","))
        }
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            format!("conjunction({id},{clause}/{n_clauses})")
        }
        Action::Clone(inner) => format!("clone({})", actions_text(inner, opts)),
        Action::Exit => "exit".into(),
        Action::CheckPktLarger { pkt_len, dst } => {
            format!("check_pkt_larger({pkt_len})->{}", subfield_text(dst))
        }
        Action::Sample(s) => super::sample::sample_text(s, |p| opts.port(p)),
        Action::DecTtlIds(ids) => super::sample::dec_ttl_ids_text(ids),
        // As ovs-ofctl: a port without a table prints as `resubmit:PORT` (the `ct` is
        // only in the wire form then).
        Action::ResubmitCt {
            in_port: Some(p),
            table: None,
        } => format!("resubmit:{}", opts.port(*p)),
        Action::ResubmitCt { in_port, table } => format!(
            "resubmit({},{},ct)",
            in_port.map(|p| opts.port(p)).unwrap_or_default(),
            table.map(|t| t.to_string()).unwrap_or_default()
        ),
    }
}

fn nat_text(n: &Nat) -> String {
    let Some(kind) = n.kind else {
        return "nat".into();
    };
    let mut s = format!("nat({}", if kind == NatKind::Src { "src" } else { "dst" });
    // As Open vSwitch's `format_NAT`: without an address, `nat(src)` alone (the flags are
    // not printed either); an IPv6 address in brackets only when a port follows.
    let Some((a, b)) = n.addrs else {
        s.push(')');
        return s;
    };
    let bracket = n.ports.is_some();
    let fmt = |x: std::net::IpAddr| match x {
        std::net::IpAddr::V6(v) if bracket => format!("[{v}]"),
        x => x.to_string(),
    };
    s.push('=');
    s.push_str(&fmt(a));
    if a != b {
        s.push('-');
        s.push_str(&fmt(b));
    }
    if let Some((p1, p2)) = n.ports {
        let _ = write!(s, ":{p1}");
        if p1 != p2 {
            let _ = write!(s, "-{p2}");
        }
    }
    for (on, name) in [
        (n.persistent, "persistent"),
        (n.hash, "hash"),
        (n.random, "random"),
    ] {
        if on {
            s.push(',');
            s.push_str(name);
        }
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    /// As `ofp_print_duration` prints a whole-millisecond duration: no decimals on a whole
    /// second, else three.
    #[test]
    fn durations_print_as_ovs_ofctl_prints_them() {
        assert_eq!(duration_ms(5000), "5s");
        assert_eq!(duration_ms(5250), "5.250s");
        assert_eq!(duration_ms(7), "0.007s");
        assert_eq!(duration_ms(0), "0s");
    }
}
