//! The `learn(...)` action's text: parsed and printed as Open vSwitch 3.1 does
//! (`ovs-actions(7)`, "The learn action"; `lib/learn.c`).

use std::fmt::Write as _;

use crate::action::{Learn, LearnSpec, LearnSrc, SubField};
use crate::fields::FieldId;

use super::actions::{bad, optional_paren_args, parse_subfield};
use super::value::{format_field_value, parse_field_value, parse_uint, parse_uint_bits};
use super::{ParseError, split_top, suggest};

fn err(tok: &str, reason: impl Into<String>) -> ParseError {
    bad("learn", tok, reason)
}

/// Splits one argument as ovs-ofctl's key-value reader does: the key ends at the first
/// `=`, `:` or `(`.
fn key_value(arg: &str) -> (&str, &str) {
    match arg.find(['=', ':', '(']) {
        Some(i) if arg.as_bytes()[i] == b'(' => {
            let v = &arg[i + 1..];
            (arg[..i].trim(), v.strip_suffix(')').unwrap_or(v).trim())
        }
        Some(i) => (arg[..i].trim(), arg[i + 1..].trim()),
        None => (arg.trim(), ""),
    }
}

/// A field name alone (`eth_type`, `NXM_OF_ETH_SRC`: the whole field) or with a bit range.
fn learn_subfield(s: &str, tok: &str) -> Result<SubField, ParseError> {
    let s = s.trim();
    if s.contains('[') {
        return parse_subfield(s, "learn", tok);
    }
    FieldId::from_name(s)
        .or_else(|| FieldId::from_nxm_name(s))
        // Open vSwitch's tp_src/tp_dst are other names of tcp_src/tcp_dst.
        .map(|f| match f {
            FieldId::TpSrc => FieldId::TcpSrc,
            FieldId::TpDst => FieldId::TcpDst,
            f => f,
        })
        .map(SubField::whole)
        .ok_or_else(|| ParseError::UnknownField {
            name: s.into(),
            suggestion: suggest(s, FieldId::all_names()),
        })
}

fn u16_arg(v: &str, what: &str, tok: &str) -> Result<u16, ParseError> {
    parse_uint_bits(v, 16)
        .map(|v| v as u16)
        .ok_or_else(|| err(tok, format!("{what} must be 0..65535")))
}

/// Parses `learn(...)` (the whole token).
pub(crate) fn parse_learn(tok: &str) -> Result<Learn, ParseError> {
    let mut l = Learn::default();
    for arg in split_top(optional_paren_args(tok, "learn")?, &[','])? {
        let (k, v) = key_value(arg);
        match k {
            "table" => {
                let t = parse_uint_bits(v, 8).ok_or_else(|| err(tok, "table must be 0..254"))?;
                if t == 255 {
                    return Err(err(tok, "table id 255 not valid for `learn' action"));
                }
                l.table = t as u8;
            }
            "priority" => l.priority = u16_arg(v, "priority", tok)?,
            "idle_timeout" => l.idle_timeout = u16_arg(v, "idle_timeout", tok)?,
            "hard_timeout" => l.hard_timeout = u16_arg(v, "hard_timeout", tok)?,
            "fin_idle_timeout" => l.fin_idle_timeout = u16_arg(v, "fin_idle_timeout", tok)?,
            "fin_hard_timeout" => l.fin_hard_timeout = u16_arg(v, "fin_hard_timeout", tok)?,
            "cookie" => {
                l.cookie = parse_uint_bits(v, 64)
                    .ok_or_else(|| err(tok, "cookie must be a 64-bit number"))?
                    as u64
            }
            "send_flow_rem" => l.send_flow_rem = true,
            "delete_learned" => l.delete_learned = true,
            "limit" => l.limit = atoi_u32(v),
            "result_dst" => {
                let dst = parse_subfield(v, "learn", tok)?;
                if crate::table::is_read_only(dst.field) {
                    return Err(err(tok, format!("{v} is read-only")));
                }
                if dst.n_bits != 1 {
                    return Err(err(
                        tok,
                        "result_dst in 'learn' action must be a single bit",
                    ));
                }
                l.result_dst = Some(dst);
            }
            "load" => l.specs.push(parse_load_spec(v, tok)?),
            "output" => {
                let src = learn_subfield(v, tok)?;
                l.specs.push(LearnSpec::Output { src });
            }
            _ => l.specs.push(parse_match_spec(k, v, tok)?),
        }
    }
    Ok(l)
}

/// `limit=` read as Open vSwitch reads it (C `atoi` into an unsigned 32-bit field): leading
/// digits with an optional sign, anything else 0, `-1` the largest limit.
fn atoi_u32(v: &str) -> u32 {
    let v = v.trim_start();
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |acc, d| {
            acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    let n = if neg { -n } else { n };
    n as i32 as u32
}

/// `load:SRC[..]->DST[..]` or `load:VALUE->DST[..]`.
fn parse_load_spec(v: &str, tok: &str) -> Result<LearnSpec, ParseError> {
    let (s, d) = v
        .split_once("->")
        .ok_or_else(|| err(tok, format!("load: missing `->' in `{v}'")))?;
    let dst = learn_subfield(d, tok)?;
    let s = s.trim();
    let src = match parse_uint(s) {
        Some(value) => {
            if dst.n_bits < 128 && value >> dst.n_bits != 0 {
                return Err(err(
                    tok,
                    format!("{v}: value does not fit into {} bits", dst.n_bits),
                ));
            }
            LearnSrc::Imm(value)
        }
        None => {
            let src = learn_subfield(s, tok)?;
            if src.n_bits != dst.n_bits {
                return Err(err(
                    tok,
                    format!(
                        "source is {} bits but destination is {} bits",
                        src.n_bits, dst.n_bits
                    ),
                ));
            }
            LearnSrc::Field(src)
        }
    };
    Ok(LearnSpec::Load { src, dst })
}

/// `DST[..]`, `DST[..]=SRC[..]`, `FIELD=VALUE` or `DST[a..b]=NUMBER`.
fn parse_match_spec(k: &str, v: &str, tok: &str) -> Result<LearnSpec, ParseError> {
    let dst = learn_subfield(k, tok)?;
    if v.is_empty() {
        return Ok(LearnSpec::Match {
            src: LearnSrc::Field(dst),
            dst,
        });
    }
    let as_field = learn_subfield(v, tok);
    if let Ok(src) = as_field {
        if src.n_bits != dst.n_bits {
            return Err(err(
                tok,
                format!(
                    "bit widths of {k} ({}) and {v} ({}) differ",
                    dst.n_bits, src.n_bits
                ),
            ));
        }
        return Ok(LearnSpec::Match {
            src: LearnSrc::Field(src),
            dst,
        });
    }
    let value = if dst.is_whole() {
        let (mut value, mask) = parse_field_value(dst.field, v)?;
        if mask.is_some() {
            return Err(err(tok, format!("{k}: a mask is not allowed here")));
        }
        if dst.field == FieldId::InPort {
            // The 16-bit NXM_OF_IN_PORT: reserved ports by their OpenFlow 1.0 numbers.
            value = match value {
                v if v <= 0xffff => v,
                v if v >= 0xffff_ff00 => v & 0xffff,
                _ => return Err(err(tok, format!("{k}: port {v} does not fit in 16 bits"))),
            };
        }
        value
    } else {
        let value = parse_uint(v).ok_or_else(|| {
            err(
                tok,
                format!("{k} value {v} cannot be parsed as a subfield or an immediate value"),
            )
        })?;
        if dst.n_bits < 128 && value >> dst.n_bits != 0 {
            return Err(err(
                tok,
                format!("value {v} does not fit into {} bits", dst.n_bits),
            ));
        }
        value
    };
    Ok(LearnSpec::Match {
        src: LearnSrc::Imm(value),
        dst,
    })
}

/// `0` or `0x..` without leading zeros (Open vSwitch's `ds_put_hex`).
fn hex(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("0x{v:x}")
    }
}

/// Prints `learn(...)` as ovs-ofctl does.
pub(crate) fn learn_text(l: &Learn, subfield_text: impl Fn(&SubField) -> String) -> String {
    let mut s = format!("learn(table={}", l.table);
    if l.idle_timeout != 0 {
        let _ = write!(s, ",idle_timeout={}", l.idle_timeout);
    }
    if l.hard_timeout != 0 {
        let _ = write!(s, ",hard_timeout={}", l.hard_timeout);
    }
    if l.fin_idle_timeout != 0 {
        let _ = write!(s, ",fin_idle_timeout={}", l.fin_idle_timeout);
    }
    if l.fin_hard_timeout != 0 {
        let _ = write!(s, ",fin_hard_timeout={}", l.fin_hard_timeout);
    }
    if l.priority != crate::flow::DEFAULT_PRIORITY {
        let _ = write!(s, ",priority={}", l.priority);
    }
    if l.send_flow_rem {
        s.push_str(",send_flow_rem");
    }
    if l.delete_learned {
        s.push_str(",delete_learned");
    }
    if l.cookie != 0 {
        let _ = write!(s, ",cookie={:#x}", l.cookie);
    }
    if l.limit != 0 {
        let _ = write!(s, ",limit={}", l.limit);
    }
    if let Some(dst) = &l.result_dst {
        let _ = write!(s, ",result_dst={}", subfield_text(dst));
    }
    for spec in &l.specs {
        s.push(',');
        match spec {
            LearnSpec::Match {
                src: LearnSrc::Imm(v),
                dst,
            } if dst.is_whole() => {
                let info = dst.field.info();
                let text = match info.format {
                    crate::fields::Format::Hex => hex(*v),
                    crate::fields::Format::Port if *v >= 0xff00 => {
                        format_field_value(dst.field, *v | 0xffff_0000)
                    }
                    _ => format_field_value(dst.field, *v),
                };
                let _ = write!(s, "{}={text}", info.name);
            }
            LearnSpec::Match {
                src: LearnSrc::Imm(v),
                dst,
            } => {
                let _ = write!(s, "{}={}", subfield_text(dst), hex(*v));
            }
            LearnSpec::Match {
                src: LearnSrc::Field(src),
                dst,
            } => {
                s.push_str(&subfield_text(dst));
                if src.field != dst.field || src.ofs != dst.ofs {
                    let _ = write!(s, "={}", subfield_text(src));
                }
            }
            LearnSpec::Load {
                src: LearnSrc::Imm(v),
                dst,
            } => {
                let _ = write!(s, "load:{}->{}", hex(*v), subfield_text(dst));
            }
            LearnSpec::Load {
                src: LearnSrc::Field(src),
                dst,
            } => {
                let _ = write!(s, "load:{}->{}", subfield_text(src), subfield_text(dst));
            }
            LearnSpec::Output { src } => {
                let _ = write!(s, "output:{}", subfield_text(src));
            }
        }
    }
    s.push(')');
    s
}
