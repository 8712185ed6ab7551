//! Flow text (`table=0,priority=10,ip,nw_src=10.0.0.0/8,actions=...`) to a [`FlowMod`].

use crate::action::Instructions;
use crate::fields::FieldId;
use crate::flow::{FlowFlags, FlowMod, FlowModCommand, TABLE_ALL, TABLE_MAX};
use crate::match_::{
    ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, ETH_TYPE_RARP, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Match,
};

use super::value::{parse_field_value, parse_port, parse_uint, parse_uint_bits};
use super::{ParseError, parse_actions, split_top, suggest};

/// Protocol shorthands: (name, eth_type, nw_proto).
const SHORTHANDS: [(&str, u16, Option<u8>); 14] = [
    ("ip", ETH_TYPE_IP, None),
    ("ipv6", ETH_TYPE_IPV6, None),
    ("arp", ETH_TYPE_ARP, None),
    ("rarp", ETH_TYPE_RARP, None),
    ("icmp", ETH_TYPE_IP, Some(IPPROTO_ICMP)),
    // Printed for `ip,nw_proto=2`, as ovs-ofctl does (and reads).
    ("igmp", ETH_TYPE_IP, Some(2)),
    ("tcp", ETH_TYPE_IP, Some(IPPROTO_TCP)),
    ("udp", ETH_TYPE_IP, Some(IPPROTO_UDP)),
    ("sctp", ETH_TYPE_IP, Some(IPPROTO_SCTP)),
    // ovs-ofctl's other name for `ipv6` (printed as `ipv6`).
    ("ip6", ETH_TYPE_IPV6, None),
    ("icmp6", ETH_TYPE_IPV6, Some(IPPROTO_ICMPV6)),
    ("tcp6", ETH_TYPE_IPV6, Some(IPPROTO_TCP)),
    ("udp6", ETH_TYPE_IPV6, Some(IPPROTO_UDP)),
    ("sctp6", ETH_TYPE_IPV6, Some(IPPROTO_SCTP)),
];

/// The statistics `dump-flows` prints: ovs-ofctl skips them, whatever their value, so its
/// output can be fed back.
const STATISTICS: [&str; 5] = ["duration", "n_packets", "n_bytes", "idle_age", "hard_age"];

const SETTINGS: [&str; 8] = [
    "table",
    "priority",
    "cookie",
    "idle_timeout",
    "hard_timeout",
    "out_port",
    "out_group",
    "importance",
];

/// Parses an add-flow line.
pub fn parse_flow(s: &str) -> Result<FlowMod, ParseError> {
    parse_flow_mod(s, FlowModCommand::Add)
}

/// Finds `actions=` outside parentheses; returns (match part, actions part). As ovs-ofctl
/// (`ofp_extract_actions`), it need not start a token: ovn-kubernetes writes
/// `nw_src=10.244.0.0/24actions=...`.
fn split_actions(s: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let bytes = s.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ if depth == 0 && bytes[i..].starts_with(b"actions=") => {
                return (&s[..i], Some(&s[i + "actions=".len()..]));
            }
            _ => {}
        }
    }
    (s, None)
}

fn setting<T: TryFrom<u128>>(what: &str, v: &str, max: u128) -> Result<T, ParseError> {
    parse_uint(v)
        .filter(|x| *x <= max)
        .and_then(|x| T::try_from(x).ok())
        .ok_or_else(|| ParseError::BadSetting {
            what: what.into(),
            value: v.into(),
            expected: format!("a number 0..{max}"),
        })
}

/// Parses a flow-mod line for `command` (add, mod or del syntax), as `ovs-ofctl` reads it: a
/// `ct_nw_proto` of 0, and the original-tuple ports with it, are dropped, because its encoder
/// sends them only with a non-zero `ct_nw_proto`.
pub fn parse_flow_mod(s: &str, command: FlowModCommand) -> Result<FlowMod, ParseError> {
    parse_flow_mod_as(s, command, true)
}

/// Parses a flow-mod line keeping every match field as written: for text this program printed
/// itself (saved state), where a flow a controller installed with `ct_nw_proto=0` must come back
/// with it.
pub fn parse_flow_mod_exact(s: &str, command: FlowModCommand) -> Result<FlowMod, ParseError> {
    parse_flow_mod_as(s, command, false)
}

fn parse_flow_mod_as(
    s: &str,
    command: FlowModCommand,
    like_ovs_ofctl: bool,
) -> Result<FlowMod, ParseError> {
    let is_add = command == FlowModCommand::Add;
    let mut fm = FlowMod {
        command,
        table_id: if is_add { 0 } else { TABLE_ALL },
        ..FlowMod::default()
    };
    let deleting = matches!(
        command,
        FlowModCommand::Delete | FlowModCommand::DeleteStrict
    );
    let (match_text, actions_text) = split_actions(s);
    let mut table_given = false;
    let mut seen: Vec<FieldId> = Vec::new();
    for tok in split_top(match_text, &[',', ' ', '\t'])? {
        let (key, val) = match tok.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (tok, None),
        };
        if let Some(&(_, et, proto)) = SHORTHANDS.iter().find(|(n, _, _)| *n == key) {
            if val.is_some() {
                return Err(ParseError::NotAllowed(tok.into()));
            }
            fm.match_.set(FieldId::EthType, et as u128, None)?;
            if let Some(p) = proto {
                fm.match_.set(FieldId::IpProto, p as u128, None)?;
            }
            continue;
        }
        if let Some(&(bit, _)) = FlowFlags::NAMES.iter().find(|(_, n)| *n == key) {
            if deleting {
                // ovs-ofctl reads flags only where they are set (add, modify).
                return Err(match val {
                    Some(_) => ParseError::UnknownKeyword(key.into()),
                    None => ParseError::MissingValue(key.into()),
                });
            }
            if val.is_some() {
                return Err(ParseError::NotAllowed(tok.into()));
            }
            fm.flags.0 |= bit;
            continue;
        }
        if STATISTICS.contains(&key) {
            if val.is_none() {
                return Err(ParseError::BadSetting {
                    what: key.into(),
                    value: String::new(),
                    expected: "a value, as dump-flows prints it (the value is ignored)".into(),
                });
            }
            continue;
        }
        let Some(val) = val else {
            let suggestion = suggest(key, crate::fields::FieldId::all_names());
            return Err(ParseError::UnknownField {
                name: key.into(),
                suggestion,
            });
        };
        if SETTINGS.contains(&key) {
            if !takes_setting(command, key) {
                // ovs-ofctl looks for the actions of a modify before its keywords.
                if !deleting && actions_text.is_none() {
                    return Err(ParseError::MissingActions);
                }
                return Err(ParseError::UnknownKeyword(key.into()));
            }
            if deleting && key == "cookie" && !val.contains('/') {
                return Err(ParseError::CookieWithoutMask(val.into()));
            }
            apply_setting(&mut fm, key, val, &mut table_given)?;
            continue;
        }
        let field = resolve_field(&fm.match_, key)?;
        if seen.contains(&field) {
            return Err(ParseError::DuplicateField(key.into()));
        }
        seen.push(field);
        set_match_field(&mut fm.match_, field, val)?;
    }
    fm.match_.check_prereqs()?;
    if let Some(m) = fm.match_.untagged_as_open_vswitch() {
        fm.match_ = m;
    }
    // ovs-ofctl sends ct_nw_proto and the original-tuple ports only with a non-zero
    // ct_nw_proto.
    if like_ovs_ofctl && fm.match_.value.ct_nw_proto & fm.match_.mask.ct_nw_proto == 0 {
        for f in [FieldId::CtNwProto, FieldId::CtTpSrc, FieldId::CtTpDst] {
            (f.info().set)(&mut fm.match_.value, 0);
            (f.info().set)(&mut fm.match_.mask, 0);
        }
    }
    if is_add && fm.cookie_mask != 0 {
        return Err(ParseError::NotAllowed(
            "cookie mask (only mod-flows/del-flows filter by cookie)".into(),
        ));
    }
    if is_add && fm.table_id == TABLE_ALL {
        return Err(ParseError::BadSetting {
            what: "table".into(),
            value: "255".into(),
            expected: format!("a table 0..{TABLE_MAX} for add-flow"),
        });
    }
    match actions_text {
        // ovs-ofctl reads `actions` in a delete (or dump) match as an unknown keyword.
        Some(_) if deleting => return Err(ParseError::UnknownKeyword("actions".into())),
        Some(a) => fm.instructions = parse_actions(a, &fm.match_)?,
        None if deleting => fm.instructions = Instructions::default(),
        None => return Err(ParseError::MissingActions),
    }
    Ok(fm)
}

/// Whether a flow-mod `command` takes setting `key`, as ovs-ofctl's `parse_ofp_str__` decides:
/// a delete (and a dump-flows or dump-aggregate match, read as one) takes no priority (but a
/// strict delete does), no timeouts and no importance; a modify takes no `out_port` or
/// `out_group` and no importance. ovs-ofctl refuses the others as unknown keywords rather than
/// ignoring them.
fn takes_setting(command: FlowModCommand, key: &str) -> bool {
    match command {
        FlowModCommand::Add => !matches!(key, "out_port" | "out_group"),
        FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
            !matches!(key, "out_port" | "out_group" | "importance")
        }
        FlowModCommand::Delete => !matches!(
            key,
            "priority" | "idle_timeout" | "hard_timeout" | "importance"
        ),
        FlowModCommand::DeleteStrict => {
            !matches!(key, "idle_timeout" | "hard_timeout" | "importance")
        }
    }
}

fn apply_setting(
    fm: &mut FlowMod,
    key: &str,
    val: &str,
    table_given: &mut bool,
) -> Result<(), ParseError> {
    match key {
        "table" => {
            fm.table_id = setting(key, val, 255)?;
            *table_given = true;
        }
        "priority" => fm.priority = setting(key, val, 0xffff)?,
        "idle_timeout" => fm.idle_timeout = setting(key, val, 0xffff)?,
        "hard_timeout" => fm.hard_timeout = setting(key, val, 0xffff)?,
        "importance" => {
            return Err(ParseError::NotAllowed(
                "importance (an OpenFlow 1.4 feature)".into(),
            ));
        }
        "cookie" => {
            let (v, m) = match val.split_once('/') {
                Some((v, m)) => (v, Some(m)),
                None => (val, None),
            };
            // As ovs-ofctl's strtoull: `-N` wraps (`cookie=5/-1`, the mask its own message
            // suggests, is all ones).
            let cookie = |what: &str, v: &str| match v.strip_prefix('-') {
                Some(n) => setting::<u64>(what, n, u64::MAX as u128).map(u64::wrapping_neg),
                None => setting(what, v, u64::MAX as u128),
            };
            fm.cookie = cookie(key, v)?;
            if let Some(m) = m {
                fm.cookie_mask = cookie("cookie mask", m)?;
            }
        }
        "out_port" => {
            fm.out_port = parse_port(val).ok_or_else(|| ParseError::BadSetting {
                what: key.into(),
                value: val.into(),
                expected: "a port number or name".into(),
            })?;
        }
        "out_group" => fm.out_group = setting(key, val, u32::MAX as u128)?,
        _ => unreachable!("SETTINGS lists only handled keys"),
    }
    Ok(())
}

/// Resolves a field name, applying ovs-ofctl's OpenFlow 1.0 aliases on ARP and RARP flows
/// (`nw_src` = `arp_spa`, `nw_dst` = `arp_tpa`, `nw_proto` = `arp_op`).
pub(crate) fn resolve_field(m: &Match, key: &str) -> Result<FieldId, ParseError> {
    let field = FieldId::from_name(key).ok_or_else(|| ParseError::UnknownField {
        name: key.into(),
        suggestion: suggest(
            key,
            FieldId::all_names().chain(SHORTHANDS.iter().map(|s| s.0)),
        ),
    })?;
    if matches!(m.eth_type(), Some(ETH_TYPE_ARP | ETH_TYPE_RARP)) {
        return Ok(match field {
            FieldId::Ipv4Src => FieldId::ArpSpa,
            FieldId::Ipv4Dst => FieldId::ArpTpa,
            FieldId::IpProto => FieldId::ArpOp,
            f => f,
        });
    }
    Ok(field)
}

fn set_match_field(m: &mut Match, field: FieldId, val: &str) -> Result<(), ParseError> {
    // dl_vlan=0xffff means "no VLAN tag": the VID and present bit are zero (Open vSwitch's
    // `match_set_dl_vlan`, `vlan_tci=0x0000/0x1fff`).
    if field == FieldId::DlVlan && parse_uint_bits(val, 16) == Some(0xffff) {
        m.set(FieldId::VlanTci, 0, Some(0x1fff))?;
        return Ok(());
    }
    let (v, mask) = parse_field_value(field, val)?;
    m.set(field, v, mask)?;
    Ok(())
}

/// Parses a bare match (no settings, no actions), e.g. for `dump-flows` filters.
pub fn parse_match(s: &str) -> Result<Match, ParseError> {
    let fm = parse_flow_mod(s, FlowModCommand::Delete)?;
    Ok(fm.match_)
}
