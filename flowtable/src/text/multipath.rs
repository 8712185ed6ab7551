//! The `multipath(...)`, `bundle(...)` and `bundle_load(...)` actions' text, read and printed
//! as Open vSwitch 3.1 does (`lib/multipath.c`, `lib/bundle.c`): arguments split like C's
//! `strtok_r`, numbers read like `atoi`, and ovs-ofctl's error messages.

use std::fmt::Write as _;

use crate::action::{
    BUNDLE_MAX_MEMBERS, Bundle, BundleAlgorithm, HashFields, Multipath, MultipathAlgorithm,
    SubField,
};
use crate::fields::FieldId;
use crate::port::OfPort;

use super::ParseError;
use super::actions::{bad, paren_args, parse_subfield};
use super::value::{parse_port, parse_uint_bits};

/// C's `strtok_r` over a string: each call skips leading delimiters, returns the token up to
/// the next delimiter and consumes that one delimiter. The delimiters may change per call.
struct Strtok<'a> {
    rest: &'a str,
}

impl<'a> Strtok<'a> {
    fn next(&mut self, delims: &str) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(|c| delims.contains(c));
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        match s.find(|c| delims.contains(c)) {
            Some(i) => {
                self.rest = &s[i + 1..];
                Some(&s[..i])
            }
            None => {
                self.rest = "";
                Some(s)
            }
        }
    }
}

/// C's `atoi`: leading white space, a sign, digits up to the first other character; no
/// digits read as 0. Out of range values saturate as glibc's `strtol` does before the cast.
fn atoi(s: &str) -> i32 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    (if neg { -v } else { v }) as i32
}

/// A destination as `mf_parse_subfield` reads it: `FIELD[]`, `FIELD[a..b]`, `FIELD[a]`, or a
/// bare field name (the whole field); it must have an NXM header.
fn parse_dst(s: &str, action: &str, tok: &str, args: &str) -> Result<SubField, ParseError> {
    let sf = if s.contains('[') {
        parse_subfield(s, action, tok)?
    } else {
        let f = FieldId::from_nxm_name(s)
            .or_else(|| FieldId::from_name(s))
            .ok_or_else(|| ParseError::UnknownField {
                name: s.into(),
                suggestion: None,
            })?;
        SubField::whole(f)
    };
    super::actions::at_most_64_bits(&sf, action, tok)?;
    if sf.field.info().nxm.is_none() && sf.field.info().oxm.is_none() {
        return Err(bad(
            action,
            tok,
            format!("{args}: experimenter OXM field '{s}' not supported"),
        ));
    }
    Ok(sf)
}

/// Parses `multipath(fields, basis, algorithm, n_links, arg, dst)` (the whole token).
pub(crate) fn parse_multipath(tok: &str) -> Result<Multipath, ParseError> {
    const NAME: &str = "multipath";
    let args = paren_args(tok, NAME)?;
    let mut t = Strtok { rest: args };
    let fields = t.next(", ");
    let basis = t.next(", ");
    let algorithm = t.next(", ");
    let n_links = t.next(", ");
    let arg = t.next(", ");
    let dst = t.next(", ");
    let (Some(fields), Some(basis), Some(algorithm), Some(n_links), Some(arg), Some(dst)) =
        (fields, basis, algorithm, n_links, arg, dst)
    else {
        return Err(bad(
            NAME,
            tok,
            format!("{args}: not enough arguments to multipath action"),
        ));
    };
    let fields = HashFields::from_name(fields)
        .ok_or_else(|| bad(NAME, tok, format!("{args}: unknown fields `{fields}'")))?;
    let algorithm = MultipathAlgorithm::from_name(algorithm).ok_or_else(|| {
        bad(
            NAME,
            tok,
            format!("{args}: unknown algorithm `{algorithm}'"),
        )
    })?;
    let n = atoi(n_links);
    if !(1..=65536).contains(&n) {
        return Err(bad(
            NAME,
            tok,
            format!("{args}: n_links {n} is not in valid range 1 to 65536"),
        ));
    }
    let dst = parse_dst(dst, NAME, tok, args)?;
    if dst.n_bits < 16 && n > 1 << dst.n_bits {
        return Err(bad(
            NAME,
            tok,
            format!(
                "{args}: {}-bit destination field has {} possible values, less than specified n_links {n}",
                dst.n_bits,
                1u32 << dst.n_bits
            ),
        ));
    }
    Ok(Multipath {
        fields,
        basis: atoi(basis) as u16,
        algorithm,
        max_link: (n - 1) as u16,
        arg: atoi(arg) as u32,
        dst,
    })
}

/// A member port as `ofputil_port_from_string` reads it: a 16-bit number (0xff00 and up are
/// the OpenFlow 1.0 reserved range, widened), 0xffffff00 and up, or a name. Whether the port
/// is one a bundle may use is checked with the flow (`OFPBAC_BAD_OUT_PORT`).
fn parse_member(s: &str) -> Option<OfPort> {
    if let Some(v) = parse_uint_bits(s, 32) {
        let v = v as u32;
        return match v {
            0..0xff00 => Some(OfPort(v)),
            0xff00..=0xffff => Some(OfPort(v | 0xffff_0000)),
            0xffff_ff00.. => Some(OfPort(v)),
            _ => None,
        };
    }
    parse_port(s)
}

/// Parses `bundle(fields, basis, algorithm, ofport, members:P,...)` or, with `load`,
/// `bundle_load(fields, basis, algorithm, ofport, dst, members:P,...)` (the whole token).
pub(crate) fn parse_bundle(tok: &str, load: bool) -> Result<Bundle, ParseError> {
    let name = if load { "bundle_load" } else { "bundle" };
    let args = paren_args(tok, name)?;
    let mut t = Strtok { rest: args };
    let fields = t.next(", ");
    let basis = t.next(", ");
    let algorithm = t.next(", ");
    let member_type = t.next(", ");
    let dst = if load { t.next(", ") } else { None };
    let delim = t.next(": ");
    let (Some(fields), Some(basis), Some(algorithm), Some(member_type), Some(delim)) =
        (fields, basis, algorithm, member_type, delim)
    else {
        return Err(bad(
            name,
            tok,
            format!("{args}: not enough arguments to bundle action"),
        ));
    };
    if !delim.eq_ignore_ascii_case("members") && !delim.eq_ignore_ascii_case("slaves") {
        return Err(bad(
            name,
            tok,
            format!("{args}: missing member delimiter, expected `members', got `{delim}'"),
        ));
    }
    let mut members = Vec::new();
    while members.len() < BUNDLE_MAX_MEMBERS {
        let Some(m) = t.next(", []") else { break };
        members
            .push(parse_member(m).ok_or_else(|| bad(name, tok, format!("{m}: bad port number")))?);
    }
    let fields = HashFields::from_name(fields)
        .ok_or_else(|| bad(name, tok, format!("{args}: unknown fields `{fields}'")))?;
    let algorithm = BundleAlgorithm::from_name(algorithm).ok_or_else(|| {
        bad(
            name,
            tok,
            format!("{args}: unknown algorithm `{algorithm}'"),
        )
    })?;
    if !member_type.eq_ignore_ascii_case("ofport") {
        return Err(bad(
            name,
            tok,
            format!("{args}: unknown member_type `{member_type}'"),
        ));
    }
    let dst = dst.map(|d| parse_dst(d, name, tok, args)).transpose()?;
    Ok(Bundle {
        fields,
        basis: atoi(basis) as u16,
        algorithm,
        dst,
        members,
    })
}

/// `multipath(...)` as ovs-ofctl prints it.
pub(crate) fn multipath_text(mp: &Multipath, subfield: fn(&SubField) -> String) -> String {
    format!(
        "multipath({},{},{},{},{},{})",
        mp.fields.name(),
        mp.basis,
        mp.algorithm.name(),
        u32::from(mp.max_link) + 1,
        mp.arg,
        subfield(&mp.dst)
    )
}

/// `bundle(...)` / `bundle_load(...)` as ovs-ofctl prints it; `port` names a member.
pub(crate) fn bundle_text(
    b: &Bundle,
    subfield: fn(&SubField) -> String,
    port: &dyn Fn(OfPort) -> String,
) -> String {
    let mut s = format!(
        "{}({},{},{},ofport,",
        if b.dst.is_some() {
            "bundle_load"
        } else {
            "bundle"
        },
        b.fields.name(),
        b.basis,
        b.algorithm.name()
    );
    if let Some(d) = &b.dst {
        let _ = write!(s, "{},", subfield(d));
    }
    s.push_str("members:");
    let names: Vec<String> = b.members.iter().map(|p| port(*p)).collect();
    s.push_str(&names.join(","));
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtok_and_atoi_behave_like_c() {
        let mut t = Strtok { rest: ", a,,b c:d" };
        assert_eq!(t.next(", "), Some("a"));
        assert_eq!(t.next(", "), Some("b"));
        assert_eq!(t.next(": "), Some("c"));
        assert_eq!(t.next(", "), Some("d"));
        assert_eq!(t.next(", "), None);
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi(" -3"), -3);
        assert_eq!(atoi("70000") as u16, 4464);
    }
}
