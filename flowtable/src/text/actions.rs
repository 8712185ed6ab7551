//! Action-list text (`output:2,set_field:..->..,ct(...)`) to [`Instructions`].

use std::net::IpAddr;

use crate::action::{
    Action, Controller, Ct, CtZone, Instructions, Nat, NatKind, PacketInReason, SubField,
};
use crate::fields::FieldId;
use crate::match_::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Match};
use crate::port::OfPort;

use super::value::{
    parse_field_value, parse_hex_bytes, parse_port, parse_port_number, parse_uint, parse_uint_bits,
};
use super::{ParseError, split_top, suggest};

/// Actions ovs-ofctl accepts that this switch refuses (named precisely in the error).
const UNSUPPORTED: &[&str] = &[
    "enqueue",
    "pop_queue",
    "set_mpls_label",
    "set_mpls_tc",
    "set_mpls_ttl",
    "dec_mpls_ttl",
    "push_mpls",
    "pop_mpls",
    "encap",
    "decap",
    "dec_nsh_ttl",
    "set_nw_ttl",
    "stack_push",
    "stack_pop",
    "debug_recirc",
    "debug_slow",
    "delete_field",
    "set_vlan_vid",
    "set_vlan_pcp",
    "set_field_masked",
];

const KNOWN: &[&str] = &[
    "output",
    "controller",
    "drop",
    "normal",
    "flood",
    "all",
    "local",
    "in_port",
    "mod_dl_src",
    "mod_dl_dst",
    "mod_nw_src",
    "mod_nw_dst",
    "mod_nw_tos",
    "mod_nw_ecn",
    "mod_nw_ttl",
    "set_queue",
    "mod_tp_src",
    "mod_tp_dst",
    "mod_vlan_vid",
    "mod_vlan_pcp",
    "strip_vlan",
    "pop_vlan",
    "push_vlan",
    "set_field",
    "load",
    "move",
    "push",
    "pop",
    "set_tunnel",
    "set_tunnel64",
    "dec_ttl",
    "resubmit",
    "meter",
    "goto_table",
    "write_metadata",
    "clear_actions",
    "group",
    "ct",
    "ct_clear",
    "note",
    "conjunction",
    "clone",
    "exit",
    "check_pkt_larger",
    "learn",
    "fin_timeout",
    "multipath",
    "bundle",
    "bundle_load",
    "sample",
    "write_actions",
];

pub(super) fn bad(action: &str, text: &str, reason: impl Into<String>) -> ParseError {
    ParseError::BadAction {
        action: action.into(),
        text: text.into(),
        reason: reason.into(),
    }
}

/// Parses the text after `actions=`. `m` is the flow's match, needed by legacy actions whose
/// OpenFlow 1.3 form depends on it (`mod_tp_dst`, `mod_vlan_vid`). An empty list (`actions=`)
/// is `drop`, as in ovs-ofctl.
pub fn parse_actions(s: &str, m: &Match) -> Result<Instructions, ParseError> {
    let mut ins = Instructions::default();
    let mut drop = false;
    // 0 = meter, 1 = apply actions, then 2 clear, 3 write_actions, 4 write_metadata,
    // 5 goto_table.
    let mut stage = 0u8;
    // A `write_actions` was given (an empty one leaves no instruction, as in ovs-ofctl).
    let mut written = false;
    for tok in split_top(s, &[','])? {
        let (name, _) = split_name(tok);
        let lname = name.to_ascii_lowercase();
        let next_stage = match lname.as_str() {
            "meter" => 0,
            "clear_actions" => 2,
            "write_actions" => 3,
            "write_metadata" => 4,
            "goto_table" => 5,
            _ => 1,
        };
        let repeated = next_stage == stage
            && next_stage != 1
            && (any_stage(&ins, stage) || (next_stage == 3 && written));
        if next_stage < stage || repeated {
            return Err(ParseError::InstructionOrder(tok.into()));
        }
        stage = next_stage;
        match lname.as_str() {
            "drop" => drop = true,
            "meter" => {
                let arg = arg_of(tok, "meter")?;
                let id = parse_uint_bits(arg, 32)
                    .filter(|id| *id != 0)
                    .ok_or_else(|| bad("meter", tok, "expected a meter id (1 or more)"))?;
                ins.meter = Some(id as u32);
            }
            "clear_actions" => ins.clear_actions = true,
            "write_actions" => {
                written = true;
                ins.write_actions = parse_write_actions(tok, m)?;
            }
            "write_metadata" => ins.write_metadata = Some(parse_write_metadata(tok)?),
            "goto_table" => {
                let arg = arg_of(tok, "goto_table")?;
                let t = parse_uint_bits(arg, 8)
                    .filter(|t| *t < 255)
                    .ok_or_else(|| bad("goto_table", tok, "expected a table 0..254"))?;
                ins.goto_table = Some(t as u8);
            }
            _ => parse_action(tok, m, &mut ins.apply)?,
        }
    }
    if drop && (ins != Instructions::default()) {
        return Err(ParseError::DropWithOthers);
    }
    Ok(ins)
}

/// Whether the instruction of `stage` (see `parse_actions`) was given already: a second one
/// is out of order. Apply actions (stage 1) may repeat.
fn any_stage(ins: &Instructions, stage: u8) -> bool {
    match stage {
        0 => ins.meter.is_some(),
        2 => ins.clear_actions,
        3 => ins.write_actions.is_some(),
        4 => ins.write_metadata.is_some(),
        5 => ins.goto_table.is_some(),
        _ => false,
    }
}

/// Splits `name:arg`, `name(args)` or `name`; returns (name, rest-with-delimiter).
fn split_name(tok: &str) -> (&str, &str) {
    let end = tok.find([':', '(', '=']).unwrap_or(tok.len());
    (tok[..end].trim(), &tok[end..])
}

fn arg_of<'a>(tok: &'a str, action: &str) -> Result<&'a str, ParseError> {
    let (_, rest) = split_name(tok);
    if let Some(a) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('=')) {
        return Ok(a.trim());
    }
    if let Some(a) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        return Ok(a.trim());
    }
    Err(bad(action, tok, "missing argument"))
}

pub(super) fn paren_args<'a>(tok: &'a str, action: &str) -> Result<&'a str, ParseError> {
    let (_, rest) = split_name(tok);
    rest.strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(action, tok, "expected '(...)'"))
}

/// The arguments of an action that may also be written bare, as ovs-ofctl reads it: `ct` is
/// `ct()`, `clone` is `clone(drop)`, `learn` is `learn(table=1)`, `write_actions` writes nothing.
pub(super) fn optional_paren_args<'a>(tok: &'a str, action: &str) -> Result<&'a str, ParseError> {
    if split_name(tok).1.is_empty() {
        Ok("")
    } else {
        paren_args(tok, action)
    }
}

/// `write_actions(...)`: the actions written into the action set, run at the end of the
/// pipeline (`None` when empty: ovs-ofctl sends no instruction then).
fn parse_write_actions(tok: &str, m: &Match) -> Result<Option<Vec<Action>>, ParseError> {
    let inner = optional_paren_args(tok, "write_actions")?;
    if inner.trim().is_empty() {
        return Ok(None);
    }
    let nested = parse_actions(inner, m)?;
    if nested != Instructions::apply(nested.apply.clone()) {
        return Err(ParseError::NotAllowed(
            "instructions inside write_actions".into(),
        ));
    }
    Ok((!nested.apply.is_empty()).then_some(nested.apply))
}

fn parse_write_metadata(tok: &str) -> Result<(u64, u64), ParseError> {
    let arg = arg_of(tok, "write_metadata")?;
    let (v, m) = match arg.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (arg, None),
    };
    let num = |x: &str| {
        parse_uint_bits(x, 64)
            .map(|x| x as u64)
            .ok_or_else(|| bad("write_metadata", tok, "expected a 64-bit number"))
    };
    let value = num(v)?;
    let mask = match m {
        Some(m) => num(m)?,
        None => u64::MAX,
    };
    // Kept as written, as ovs-ofctl does (`write_metadata:0x1/0` stays `0x1/0`): the
    // instruction writes only the mask's bits.
    Ok((value, mask))
}

fn set_field(field: FieldId, value: u128) -> Action {
    Action::SetField {
        field,
        value,
        mask: field.info().full_mask(),
    }
}

fn parse_action(tok: &str, m: &Match, out: &mut Vec<Action>) -> Result<(), ParseError> {
    let (name, rest) = split_name(tok);
    let lname = name.to_ascii_lowercase();
    // A bare port number or reserved port name is an output action. ovs-ofctl reads a bare
    // number as a plain output, whose max_len is 0 (`65533` is `CONTROLLER:0`); the name
    // `CONTROLLER` is its controller action (all of the packet).
    if rest.is_empty()
        && let Some(port) = parse_port_number(name)
    {
        let numeric = OfPort::from_reserved_name(name).is_none();
        let max_len = if numeric && port == OfPort::CONTROLLER {
            0
        } else {
            u16::MAX
        };
        out.push(output(port, max_len));
        return Ok(());
    }
    // Not an action's name: a port's, as ovs-ofctl reads it (an output action).
    if rest.is_empty()
        && !KNOWN.contains(&lname.as_str())
        && !UNSUPPORTED.contains(&lname.as_str())
        && let Some(port) = parse_port(name)
    {
        out.push(output(port, u16::MAX));
        return Ok(());
    }
    let action = match lname.as_str() {
        // ovs-ofctl's test: both words anywhere in the argument.
        "output"
            if arg_of(tok, "output")?.contains("port")
                && arg_of(tok, "output")?.contains("max_len") =>
        {
            parse_output_trunc(tok)?
        }
        "output" if arg_of(tok, "output")?.contains('[') => {
            let src = parse_subfield(arg_of(tok, "output")?, "output", tok)?;
            at_most_64_bits(&src, "output", tok)?;
            Action::OutputReg {
                src,
                max_len: u16::MAX,
            }
        }
        "output" => {
            let arg = arg_of(tok, "output")?;
            let port = parse_port(arg)
                .ok_or_else(|| bad("output", tok, "expected a port number or name"))?;
            output(port, u16::MAX)
        }
        "controller" => parse_controller(tok)?,
        "mod_dl_src" | "mod_dl_dst" => {
            let f = if lname == "mod_dl_src" {
                FieldId::EthSrc
            } else {
                FieldId::EthDst
            };
            set_field(f, value_arg(tok, name, f)?)
        }
        "mod_nw_src" | "mod_nw_dst" => {
            let f = if lname == "mod_nw_src" {
                FieldId::Ipv4Src
            } else {
                FieldId::Ipv4Dst
            };
            set_field(f, value_arg(tok, name, f)?)
        }
        // As ovs-ofctl: a set-field of `nw_ecn` (printed so).
        "mod_nw_ecn" => set_field(FieldId::IpEcn, value_arg(tok, name, FieldId::IpEcn)?),
        "mod_nw_tos" => {
            let tos = value_arg(tok, name, FieldId::NwTos)?;
            if tos & 3 != 0 {
                return Err(bad(name, tok, "the ECN bits (low 2) must be zero"));
            }
            set_field(FieldId::IpDscp, tos >> 2)
        }
        "mod_nw_ttl" => Action::SetNwTtl(value_arg(tok, name, FieldId::NwTtl)? as u8),
        "set_queue" => {
            let q = parse_uint_bits(arg_of(tok, name)?, 32)
                .ok_or_else(|| bad(name, tok, "expected a queue id"))?;
            Action::SetQueue(q as u32)
        }
        "mod_tp_src" | "mod_tp_dst" => {
            let src = lname == "mod_tp_src";
            let f = l4_port_field(m, src)
                .ok_or_else(|| bad(name, tok, "the flow must match tcp, udp or sctp"))?;
            set_field(f, value_arg(tok, name, f)?)
        }
        "mod_vlan_vid" => {
            let vid = parse_uint_bits(arg_of(tok, name)?, 12)
                .ok_or_else(|| bad(name, tok, "expected a VLAN id 0..4095"))?;
            if !m.has_vlan() {
                out.push(Action::PushVlan(0x8100));
            }
            set_field(FieldId::VlanVid, vid | 0x1000)
        }
        "mod_vlan_pcp" => {
            let pcp = parse_uint_bits(arg_of(tok, name)?, 3)
                .ok_or_else(|| bad(name, tok, "expected a priority 0..7"))?;
            if !m.has_vlan() {
                out.push(Action::PushVlan(0x8100));
            }
            set_field(FieldId::DlVlanPcp, (pcp << 1) | 1)
        }
        "strip_vlan" | "pop_vlan" => no_arg(tok, name, Action::PopVlan)?,
        "push_vlan" => {
            let t = parse_uint_bits(arg_of(tok, name)?, 16)
                .filter(|t| *t == 0x8100 || *t == 0x88a8)
                .ok_or_else(|| bad(name, tok, "expected ethertype 0x8100 or 0x88a8"))?;
            Action::PushVlan(t as u16)
        }
        "set_field" => l4_port_of_match(parse_set_field(tok)?, m),
        "load" => parse_load(tok)?,
        "move" => parse_move(tok)?,
        "push" => Action::StackPush(parse_subfield(arg_of(tok, name)?, name, tok)?),
        "pop" => Action::StackPop(parse_subfield(arg_of(tok, name)?, name, tok)?),
        "set_tunnel" | "set_tunnel64" => {
            set_field(FieldId::TunId, value_arg(tok, name, FieldId::TunId)?)
        }
        "dec_ttl" if paren_args(tok, name).is_ok_and(|a| !a.trim().is_empty()) => {
            super::sample::parse_dec_ttl_ids(tok)?
        }
        "dec_ttl" if rest == "()" => Action::DecTtl,
        "dec_ttl" => no_arg(tok, name, Action::DecTtl)?,
        "sample" => super::sample::parse_sample(tok)?,
        "resubmit" => parse_resubmit(tok)?,
        "group" => {
            let g = parse_uint_bits(arg_of(tok, name)?, 32)
                .ok_or_else(|| bad(name, tok, "expected a group id"))?;
            Action::Group(g as u32)
        }
        "ct" => Action::Ct(parse_ct(tok, m)?),
        "ct_clear" => no_arg(tok, name, Action::CtClear)?,
        "note" => {
            let mut bytes = parse_hex_bytes(arg_of(tok, name)?)
                .ok_or_else(|| bad(name, tok, "expected hex bytes like de.ad.be.ef"))?;
            // The Nicira note action pads its 10-byte header + note to a multiple of 8.
            bytes.resize((10 + bytes.len()).div_ceil(8) * 8 - 10, 0);
            Action::Note(bytes)
        }
        "conjunction" => parse_conjunction(tok)?,
        "clone" => parse_clone(tok, m)?,
        "exit" => no_arg(tok, name, Action::Exit)?,
        "check_pkt_larger" => parse_check_pkt_larger(tok)?,
        // An instruction, only valid first in a flow's own action list (not in a group
        // bucket, `write_actions` or `ct(exec(..))`).
        "meter" => {
            return Err(bad(
                name,
                tok,
                "meter is an instruction: it may only come first in a flow's actions",
            ));
        }
        "learn" => Action::Learn(Box::new(super::learn::parse_learn(tok)?)),
        "fin_timeout" => parse_fin_timeout(tok)?,
        "multipath" => Action::Multipath(super::multipath::parse_multipath(tok)?),
        "bundle" => Action::Bundle(Box::new(super::multipath::parse_bundle(tok, false)?)),
        "bundle_load" => Action::Bundle(Box::new(super::multipath::parse_bundle(tok, true)?)),
        _ if UNSUPPORTED.contains(&lname.as_str()) => {
            return Err(ParseError::UnsupportedAction(name.into()));
        }
        _ => {
            return Err(ParseError::UnknownAction {
                name: name.into(),
                suggestion: suggest(&lname, KNOWN.iter().copied()),
            });
        }
    };
    out.push(action);
    Ok(())
}

fn output(port: OfPort, max_len: u16) -> Action {
    if port == OfPort::CONTROLLER {
        Action::Controller(Controller {
            max_len,
            ..Controller::default()
        })
    } else {
        Action::Output { port, max_len }
    }
}

/// `output(port=P,max_len=N)`, with ovs-ofctl's checks: a numbered port, `LOCAL` or
/// `IN_PORT`; `max_len` at least an Ethernet header (Open vSwitch refuses less when it
/// decodes the action, `OFPBAC_BAD_ARGUMENT`).
fn parse_output_trunc(tok: &str) -> Result<Action, ParseError> {
    let (mut port, mut max_len) = (None, None);
    for arg in split_top(arg_of(tok, "output")?, &[','])? {
        // `key=value` or `key:value`, as ovs-ofctl reads them.
        let (k, v) = arg
            .split_once(['=', ':'])
            .map_or((arg, ""), |(k, v)| (k.trim(), v.trim()));
        match k {
            "port" => {
                let p = parse_port(v).ok_or_else(|| {
                    bad(
                        "output",
                        tok,
                        format!("output to unknown truncate port: {v}"),
                    )
                })?;
                if p.0 >= 0xff00 && p != OfPort::LOCAL && p != OfPort::IN_PORT {
                    return Err(bad(
                        "output",
                        tok,
                        format!("output to unsupported truncate port: {v}"),
                    ));
                }
                port = Some(p);
            }
            "max_len" => {
                let n = parse_uint_bits(v, 32)
                    .ok_or_else(|| bad("output", tok, "max_len must be a 32-bit number"))?
                    as u32;
                if n < TRUNC_MIN_LEN {
                    return Err(bad(
                        "output",
                        tok,
                        format!("max_len {n} is less than the minimum value {TRUNC_MIN_LEN}"),
                    ));
                }
                max_len = Some(n);
            }
            _ => {
                return Err(bad(
                    "output",
                    tok,
                    format!("invalid key '{k}' in output_trunc argument"),
                ));
            }
        }
    }
    match (port, max_len) {
        (Some(port), Some(max_len)) => Ok(Action::OutputTrunc { port, max_len }),
        _ => Err(bad("output", tok, "expected port=P,max_len=N")),
    }
}

/// The shortest `max_len` of `output(port=P,max_len=N)`: an Ethernet header.
pub const TRUNC_MIN_LEN: u32 = 14;

fn no_arg(tok: &str, name: &str, a: Action) -> Result<Action, ParseError> {
    if split_name(tok).1.is_empty() {
        Ok(a)
    } else {
        Err(bad(name, tok, "takes no argument"))
    }
}

fn value_arg(tok: &str, name: &str, f: FieldId) -> Result<u128, ParseError> {
    let arg = arg_of(tok, name)?;
    let (v, mask) = parse_field_value(f, arg)?;
    if mask.is_some() {
        return Err(bad(name, tok, "a mask is not allowed here"));
    }
    Ok(v)
}

fn parse_controller(tok: &str) -> Result<Action, ParseError> {
    let (_, rest) = split_name(tok);
    let mut c = Controller::default();
    if rest.is_empty() {
        return Ok(Action::Controller(c));
    }
    if let Some(n) = rest.strip_prefix(':') {
        c.max_len = parse_uint_bits(n, 16)
            .ok_or_else(|| bad("controller", tok, "expected a max_len 0..65535"))?
            as u16;
        return Ok(Action::Controller(c));
    }
    for arg in split_top(paren_args(tok, "controller")?, &[','])? {
        let (k, v) = arg
            .split_once('=')
            .map_or((arg, ""), |(k, v)| (k.trim(), v.trim()));
        match k {
            "reason" => {
                c.reason = PacketInReason::ALL
                    .into_iter()
                    .find(|r| r.name() == v)
                    .ok_or_else(|| bad("controller", tok, format!("unknown reason '{v}'")))?;
            }
            "max_len" => {
                c.max_len = parse_uint_bits(v, 16)
                    .ok_or_else(|| bad("controller", tok, "max_len must be 0..65535"))?
                    as u16;
            }
            "id" => {
                c.id = parse_uint_bits(v, 16)
                    .ok_or_else(|| bad("controller", tok, "id must be 0..65535"))?
                    as u16;
            }
            "userdata" => {
                c.userdata = parse_hex_bytes(v)
                    .ok_or_else(|| bad("controller", tok, "userdata must be hex bytes"))?;
            }
            "pause" if v.is_empty() => c.pause = true,
            _ => return Err(bad("controller", tok, format!("unknown argument '{arg}'"))),
        }
    }
    Ok(Action::Controller(c))
}

/// An OpenFlow 1.2+ OXM name (`OXM_OF_ETH_SRC`, `OXM_OF_IPV4_DST`) for a field known here by
/// its NXM name, as ovs-ofctl takes either.
fn oxm_alias(name: &str) -> Option<FieldId> {
    let rest = name.strip_prefix("OXM_OF_")?;
    let ip = rest.strip_prefix("IPV4_").map(|r| format!("NXM_OF_IP_{r}"));
    [format!("NXM_OF_{rest}"), format!("NXM_NX_{rest}")]
        .into_iter()
        .chain(ip)
        .find_map(|n| FieldId::from_nxm_name(&n))
}

/// NXAST_OUTPUT_REG, NXAST_MULTIPATH and NXAST_BUNDLE_LOAD carry a bit count of 1..64: a
/// wider range (`NXM_NX_XXREG0[]`) is refused rather than cut on the wire (Open vSwitch
/// wraps it, `[0..64]` into `[1]`).
pub(crate) fn at_most_64_bits(sf: &SubField, action: &str, tok: &str) -> Result<(), ParseError> {
    if sf.n_bits > 64 {
        return Err(bad(
            action,
            tok,
            format!("{} bits of a field, at most 64 fit this action", sf.n_bits),
        ));
    }
    Ok(())
}

/// Parses `NAME[]`, `NAME[a..b]`, `NAME[a]` or a bare `NAME` (NAME: NXM, OXM or field name).
pub(crate) fn parse_subfield(s: &str, action: &str, tok: &str) -> Result<SubField, ParseError> {
    let s = s.trim();
    // A bare field name is the whole field, as `mf_parse_subfield` reads it (`move:tun_src->tun_dst`).
    let (name, range) = match s.split_once('[') {
        None => (s, ""),
        Some((n, r)) => (
            n,
            r.strip_suffix(']').ok_or_else(|| {
                bad(
                    action,
                    tok,
                    format!("expected FIELD[] or FIELD[start..end] at '{s}'"),
                )
            })?,
        ),
    };
    let field = FieldId::from_nxm_name(name)
        .or_else(|| FieldId::from_name(name))
        .or_else(|| oxm_alias(name))
        .ok_or_else(|| ParseError::UnknownField {
            name: name.into(),
            suggestion: suggest(name, crate::fields::FIELDS.iter().map(|f| f.nxm_name)),
        })?;
    let bits = SubField::field_bits(field);
    let (ofs, end) = if range.is_empty() {
        (0, bits - 1)
    } else {
        let (a, b) = range.split_once("..").unwrap_or((range, range));
        let a = parse_uint_bits(a, 8);
        let b = parse_uint_bits(b, 8);
        match (a, b) {
            (Some(a), Some(b)) if a <= b && b < bits as u128 => (a as u8, b as u8),
            _ => {
                return Err(bad(
                    action,
                    tok,
                    format!("bit range [{range}] is outside {name} ({bits} bits)"),
                ));
            }
        }
    };
    Ok(SubField {
        field,
        ofs,
        n_bits: end - ofs + 1,
    })
}

/// `set_field:..->tp_src`/`tp_dst` (Open vSwitch's aliases of the L4 ports) becomes the port
/// of the protocol the flow matches, as `mod_tp_src`/`mod_tp_dst` do: printed and sent over
/// OpenFlow as that field. Without a protocol in the match (a group bucket) it stays the
/// generic port, which the datapath rewrites in whichever of TCP, UDP and SCTP a packet is
/// (and skips for a packet that is none of them).
fn l4_port_of_match(a: Action, m: &Match) -> Action {
    let Action::SetField { field, value, mask } = a else {
        return a;
    };
    let src = match field {
        FieldId::TpSrc => true,
        FieldId::TpDst => false,
        _ => return a,
    };
    let field = l4_port_field(m, src).unwrap_or(field);
    Action::SetField { field, value, mask }
}

/// The source or destination port field of the L4 protocol `m` matches (TCP, UDP, SCTP).
fn l4_port_field(m: &Match, src: bool) -> Option<FieldId> {
    Some(match (m.nw_proto()?, src) {
        (IPPROTO_TCP, true) => FieldId::TcpSrc,
        (IPPROTO_TCP, false) => FieldId::TcpDst,
        (IPPROTO_UDP, true) => FieldId::UdpSrc,
        (IPPROTO_UDP, false) => FieldId::UdpDst,
        (IPPROTO_SCTP, true) => FieldId::SctpSrc,
        (IPPROTO_SCTP, false) => FieldId::SctpDst,
        _ => return None,
    })
}

fn parse_set_field(tok: &str) -> Result<Action, ParseError> {
    let arg = arg_of(tok, "set_field")?;
    let (v, f) = arg
        .rsplit_once("->")
        .ok_or_else(|| bad("set_field", tok, "expected VALUE->FIELD"))?;
    let field = FieldId::from_name(f.trim()).ok_or_else(|| ParseError::UnknownField {
        name: f.trim().into(),
        suggestion: suggest(f.trim(), FieldId::all_names()),
    })?;
    let info = field.info();
    let (value, mask) = parse_field_value(field, v.trim())?;
    if field == FieldId::NwTos && value & 0x03 != 0 {
        return Err(bad(
            "set_field",
            tok,
            format!("{value} is not a valid value for field nw_tos (the ECN bits must be zero)"),
        ));
    }
    let full = info.full_mask();
    let mask = mask.unwrap_or(full) & full;
    if field.clears_vlan_present(value, mask) {
        return Err(bad(
            "set_field",
            tok,
            format!(
                "invalid value for set field vlan_vid: {} (the VLAN-present bit 0x1000 must be \
                 set, as in {} for VLAN {}; pop_vlan removes a tag)",
                v.trim(),
                (value & 0xfff) | 0x1000,
                value & 0xfff
            ),
        ));
    }
    if mask == full {
        return Ok(Action::SetField { field, value, mask });
    }
    // A partial set_field goes on the wire as a Nicira reg_load when the mask is one run of
    // bits; ovs-ofctl then prints it back as `load:`.
    let ofs = mask.trailing_zeros();
    let run = mask >> ofs;
    // (As OVS: any field `load` can name, OXM-only ones such as `xreg` and `metadata` too.)
    if run & (run + 1) == 0
        && info
            .subfield_wire()
            .is_some_and(|w| w.class != crate::fields::OXM_CLASS_EXPERIMENTER)
    {
        let n_bits = run.count_ones() as u8;
        let dst = SubField {
            field,
            ofs: ofs as u8,
            n_bits,
        };
        return Ok(Action::RegLoad {
            dst,
            value: (value & mask) >> ofs,
        });
    }
    Ok(Action::SetField {
        field,
        value: value & mask,
        mask,
    })
}

fn parse_load(tok: &str) -> Result<Action, ParseError> {
    let arg = arg_of(tok, "load")?;
    let (v, d) = arg
        .split_once("->")
        .ok_or_else(|| bad("load", tok, "expected VALUE->FIELD[range]"))?;
    let dst = parse_subfield(d, "load", tok)?;
    let value = parse_uint(v.trim()).ok_or_else(|| bad("load", tok, "expected a number"))?;
    if dst.n_bits < 128 && value >> dst.n_bits != 0 {
        return Err(bad(
            "load",
            tok,
            format!("value does not fit in {} bits", dst.n_bits),
        ));
    }
    if dst.field.clears_vlan_present(value << dst.ofs, dst.mask()) {
        return Err(bad(
            "load",
            tok,
            "it would clear the VLAN-present bit 0x1000 of vlan_vid (load the VLAN id into \
             OXM_OF_VLAN_VID[0..11]; pop_vlan removes a tag)",
        ));
    }
    Ok(Action::RegLoad { dst, value })
}

fn parse_move(tok: &str) -> Result<Action, ParseError> {
    let arg = arg_of(tok, "move")?;
    let (s, d) = arg
        .split_once("->")
        .ok_or_else(|| bad("move", tok, "expected SRC[range]->DST[range]"))?;
    let src = parse_subfield(s, "move", tok)?;
    let dst = parse_subfield(d, "move", tok)?;
    if src.n_bits != dst.n_bits {
        return Err(bad(
            "move",
            tok,
            format!(
                "source is {} bits but destination is {} bits",
                src.n_bits, dst.n_bits
            ),
        ));
    }
    Ok(Action::Move { src, dst })
}

/// How deep `clone(...)` may nest (bounds the parser's recursion on hostile input).
const MAX_CLONE_NESTING: usize = 16;

/// `clone(ACTIONS)`: a plain action list (`drop` or empty = nothing); instructions are not
/// allowed inside, as in ovs-ofctl.
fn parse_clone(tok: &str, m: &Match) -> Result<Action, ParseError> {
    let inner = optional_paren_args(tok, "clone")?;
    if tok.matches("clone(").count() > MAX_CLONE_NESTING {
        return Err(bad(
            "clone",
            tok,
            format!("clone nests more than {MAX_CLONE_NESTING} deep"),
        ));
    }
    let mut actions = Vec::new();
    let parts = split_top(inner, &[','])?;
    let only_drop = parts.len() == 1 && parts[0].eq_ignore_ascii_case("drop");
    if !only_drop {
        for t in parts {
            let (n, _) = split_name(t);
            let n = n.to_ascii_lowercase();
            if matches!(
                n.as_str(),
                "goto_table" | "write_metadata" | "clear_actions" | "drop"
            ) {
                return Err(bad(
                    "clone",
                    tok,
                    format!("{n} is not allowed inside clone"),
                ));
            }
            parse_action(t, m, &mut actions)?;
        }
    }
    Ok(Action::Clone(actions))
}

/// `check_pkt_larger(LEN)->DST[bit]`: a 16-bit length and a one-bit destination.
fn parse_check_pkt_larger(tok: &str) -> Result<Action, ParseError> {
    const NAME: &str = "check_pkt_larger";
    let (_, rest) = split_name(tok);
    let (len, dst) = rest
        .strip_prefix('(')
        .and_then(|r| r.split_once(")->"))
        .ok_or_else(|| bad(NAME, tok, "expected check_pkt_larger(LEN)->FIELD[bit]"))?;
    let pkt_len = parse_uint_bits(len.trim(), 16)
        .ok_or_else(|| bad(NAME, tok, "expected a length 0..65535"))?;
    let dst = parse_subfield(dst, NAME, tok)?;
    if dst.n_bits != 1 {
        return Err(bad(NAME, tok, "Only 1-bit destination field is allowed"));
    }
    Ok(Action::CheckPktLarger {
        pkt_len: pkt_len as u16,
        dst,
    })
}

fn parse_resubmit(tok: &str) -> Result<Action, ParseError> {
    let (_, rest) = split_name(tok);
    let port_of = |p: &str| -> Result<Option<OfPort>, ParseError> {
        if p.is_empty() {
            return Ok(None);
        }
        parse_port(p)
            .map(Some)
            .ok_or_else(|| bad("resubmit", tok, format!("bad port '{p}'")))
    };
    if let Some(p) = rest.strip_prefix(':') {
        let port = port_of(p.trim())?;
        return match port {
            Some(_) => Ok(Action::Resubmit {
                in_port: port,
                table: None,
            }),
            None => Err(ParseError::ResubmitNeedsPortOrTable),
        };
    }
    let args = paren_args(tok, "resubmit")?;
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    let with_ct = match parts.get(2).copied() {
        None | Some("") if parts.len() <= 3 => false,
        Some("ct") if parts.len() == 3 => true,
        _ => {
            return Err(bad(
                "resubmit",
                tok,
                format!("{}: unknown parameter", parts[2..].join(",")),
            ));
        }
    };
    let in_port = port_of(parts[0])?;
    let table = match parts.get(1).copied().unwrap_or("") {
        "" => None,
        t => {
            let t = parse_uint_bits(t, 8)
                .ok_or_else(|| bad("resubmit", tok, "expected a table 0..254"))?;
            (t != 255).then_some(t as u8)
        }
    };
    if in_port.is_none() && table.is_none() {
        return Err(ParseError::ResubmitNeedsPortOrTable);
    }
    if with_ct {
        // ovs-ofctl prints this one as `resubmit:PORT`, which reads back without `ct`:
        // refused rather than dumped as something else.
        if table.is_none() {
            return Err(bad(
                "resubmit",
                tok,
                "resubmit(PORT,,ct) needs a table (it would print as resubmit:PORT)",
            ));
        }
        return Ok(Action::ResubmitCt { in_port, table });
    }
    Ok(Action::Resubmit { in_port, table })
}

fn parse_fin_timeout(tok: &str) -> Result<Action, ParseError> {
    let (mut idle, mut hard) = (0u16, 0u16);
    for arg in split_top(paren_args(tok, "fin_timeout")?, &[','])? {
        let (k, v) = arg.split_once('=').unwrap_or((arg, ""));
        let v = parse_uint_bits(v.trim(), 16)
            .map(|v| v as u16)
            .ok_or_else(|| bad("fin_timeout", tok, format!("{} must be 0..65535", k.trim())));
        match k.trim() {
            "idle_timeout" => idle = v?,
            "hard_timeout" => hard = v?,
            k => {
                return Err(bad(
                    "fin_timeout",
                    tok,
                    format!("invalid key '{k}' in 'fin_timeout' argument"),
                ));
            }
        }
    }
    Ok(Action::FinTimeout {
        idle_timeout: idle,
        hard_timeout: hard,
    })
}

fn parse_conjunction(tok: &str) -> Result<Action, ParseError> {
    let args = paren_args(tok, "conjunction")?;
    let err = || {
        bad(
            "conjunction",
            tok,
            "expected conjunction(id,k/n) with 1 <= k <= n and 2 <= n <= 64",
        )
    };
    let (id, kn) = args.split_once(',').ok_or_else(err)?;
    let (k, n) = kn.split_once('/').ok_or_else(err)?;
    let id = parse_uint_bits(id.trim(), 32).ok_or_else(err)? as u32;
    let k = parse_uint_bits(k.trim(), 8).ok_or_else(err)? as u8;
    let n = parse_uint_bits(n.trim(), 8).ok_or_else(err)? as u8;
    // OVS' own limits: a conjunction has 2..64 dimensions.
    if n < 2 {
        return Err(bad(
            "conjunction",
            tok,
            "conjunction must have at least 2 clauses",
        ));
    }
    if n > 64 || k == 0 || k > n {
        return Err(err());
    }
    Ok(Action::Conjunction {
        id,
        clause: k,
        n_clauses: n,
    })
}

fn parse_ct(tok: &str, m: &Match) -> Result<Ct, ParseError> {
    let mut ct = Ct::default();
    // Commas or spaces between arguments, as ovs-ofctl reads them (`ct(zone=64003 nat,table=7)`).
    for arg in split_top(optional_paren_args(tok, "ct")?, &[',', ' ', '\t'])? {
        let (k, rest) = split_name(arg);
        match k {
            "commit" => ct.commit = true,
            "force" => ct.force = true,
            "table" => {
                let t = parse_uint_bits(arg_of(arg, "ct")?, 8)
                    .ok_or_else(|| bad("ct", tok, "table must be 0..254"))?;
                ct.table = (t != 255).then_some(t as u8);
            }
            "zone" => {
                let z = arg_of(arg, "ct")?;
                ct.zone = if z.contains('[') {
                    Some(CtZone::Field(parse_zone_field(z, tok)?))
                } else {
                    let z = parse_uint_bits(z, 16)
                        .ok_or_else(|| bad("ct", tok, "zone must be 0..65535 or a FIELD[range]"))?;
                    (z != 0).then_some(CtZone::Imm(z as u16))
                };
            }
            // Open vSwitch runs only the last of several nats: the others would be ignored.
            "nat" if ct.nat.is_some() => {
                return Err(bad("ct", tok, "nat may be given only once"));
            }
            "nat" if rest.is_empty() => ct.nat = Some(Nat::default()),
            "nat" => ct.nat = Some(parse_nat(paren_args(arg, "nat")?, tok)?),
            // Several exec(...) make one list, as in ovs-ofctl.
            "exec" => ct.exec.extend(parse_exec(arg, tok, m)?),
            "alg" => {
                let a = arg_of(arg, "ct")?;
                ct.alg = Some(match a {
                    "ftp" => 21,
                    "tftp" => 69,
                    n => parse_uint_bits(n, 16)
                        .ok_or_else(|| bad("ct", tok, "alg must be ftp, tftp or a port"))?
                        as u16,
                });
            }
            _ => return Err(bad("ct", tok, format!("unknown argument '{arg}'"))),
        }
    }
    if ct.force && !ct.commit {
        // ovs-ofctl's own check.
        return Err(bad("ct", tok, "\"force\" flag requires \"commit\" flag."));
    }
    Ok(ct)
}

/// `zone=FIELD[range]`: exactly 16 bits, the zone's width (Open vSwitch refuses other
/// widths with OFPBAC_BAD_SET_LEN).
fn parse_zone_field(z: &str, tok: &str) -> Result<SubField, ParseError> {
    let sf = parse_subfield(z, "ct", tok)?;
    if sf.n_bits != 16 {
        return Err(bad(
            "ct",
            tok,
            format!(
                "zone={z} is {} bits: a zone is taken from exactly 16 bits",
                sf.n_bits
            ),
        ));
    }
    Ok(sf)
}

/// `exec(ACTIONS)`: a plain action list; an instruction inside would be lost, so it is
/// refused with ovs-ofctl's words.
fn parse_exec(arg: &str, tok: &str, m: &Match) -> Result<Vec<Action>, ParseError> {
    let inner = paren_args(arg, "exec")?;
    for t in split_top(inner, &[','])? {
        let n = split_name(t).0.to_ascii_lowercase();
        if matches!(
            n.as_str(),
            "meter" | "clear_actions" | "write_actions" | "write_metadata" | "goto_table"
        ) {
            return Err(bad(
                "ct",
                tok,
                format!("ct action doesn't support nested action {n}"),
            ));
        }
    }
    Ok(parse_actions(inner, m)?.apply)
}

fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

fn parse_nat(args: &str, tok: &str) -> Result<Nat, ParseError> {
    let mut nat = Nat::default();
    for arg in split_top(args, &[','])? {
        match arg {
            "persistent" => nat.persistent = true,
            "hash" => nat.hash = true,
            "random" => nat.random = true,
            _ => {
                // `src`/`dst` alone (or with nothing after `=`), as Open vSwitch reads them:
                // NAT of that kind without an address range.
                let (key, range) = arg.split_once('=').unwrap_or((arg, ""));
                let kind = match key {
                    "src" => NatKind::Src,
                    "dst" => NatKind::Dst,
                    _ => return Err(bad("ct", tok, format!("unknown nat argument '{arg}'"))),
                };
                if nat.kind.is_some() {
                    return Err(bad("ct", tok, "nat takes one of src= or dst="));
                }
                nat.kind = Some(kind);
                if range.is_empty() {
                    continue;
                }
                // Split "ADDRS[:PORTS]"; IPv6 addresses are bracketed when a port follows
                // (an unbracketed one is all address, as Open vSwitch scans it).
                let (addrs, ports) = if range.starts_with('[') {
                    match range.rfind("]:") {
                        Some(i) => (&range[..=i], Some(&range[i + 2..])),
                        None => (range, None),
                    }
                } else if range.matches(':').count() > 1 {
                    (range, None)
                } else {
                    match range.split_once(':') {
                        Some((a, p)) => (a, Some(p)),
                        None => (range, None),
                    }
                };
                let (a1, a2) = match addrs.split_once("-") {
                    Some((a, b)) => (a, b),
                    None => (addrs, addrs),
                };
                let (a1, a2) = match (parse_addr(a1), parse_addr(a2)) {
                    (Some(a), Some(b)) if a.is_ipv4() == b.is_ipv4() && a <= b => (a, b),
                    _ => return Err(bad("ct", tok, format!("bad nat address range '{addrs}'"))),
                };
                nat.addrs = Some((a1, a2));
                if let Some(p) = ports {
                    let (p1, p2) = p.split_once('-').unwrap_or((p, p));
                    match (parse_uint_bits(p1, 16), parse_uint_bits(p2, 16)) {
                        (Some(a), Some(b)) if a <= b && a > 0 => {
                            nat.ports = Some((a as u16, b as u16))
                        }
                        _ => return Err(bad("ct", tok, format!("bad nat port range '{p}'"))),
                    }
                }
            }
        }
    }
    if nat.kind.is_none() && (nat.persistent || nat.hash || nat.random) {
        return Err(bad("ct", tok, "nat flags need src= or dst="));
    }
    Ok(nat)
}
