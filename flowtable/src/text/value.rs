//! Field values in text: numbers, addresses, flag sets, port names.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::fields::{FieldId, Format};
use crate::port::OfPort;

use super::ParseError;

/// `ct_state` bit names, low bit first (OVS order).
pub const CT_STATE_NAMES: [&str; 8] = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];
/// TCP flag names, low bit first.
pub const TCP_FLAG_NAMES: [&str; 12] = [
    "fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[200]", "[400]", "[800]",
];

/// Parses an unsigned number: `0x` hex or decimal.
pub fn parse_uint(s: &str) -> Option<u128> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() {
            return None;
        }
        u128::from_str_radix(h, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

/// Parses a number that must fit in `bits` bits.
pub fn parse_uint_bits(s: &str, bits: u32) -> Option<u128> {
    let v = parse_uint(s)?;
    (bits >= 128 || v >> bits == 0).then_some(v)
}

fn parse_mac(s: &str) -> Option<u128> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut v = 0u128;
    for p in parts {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        v = (v << 8) | u8::from_str_radix(p, 16).ok()? as u128;
    }
    Some(v)
}

/// Formats a 48-bit number as a MAC address.
pub fn format_mac(v: u128) -> String {
    let b = (v as u64).to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// Resolves a port name to its number (set once by a client that can ask the switch).
pub type PortNameLookup = dyn Fn(&str) -> Option<u32> + Send + Sync;

static PORT_NAMES: std::sync::OnceLock<Box<PortNameLookup>> = std::sync::OnceLock::new();

/// Lets [`parse_port`] accept port names (`in_port=vethA`, `output:vethA`), as ovs-ofctl does
/// after asking the switch for its ports. Process-wide and set once (vswitchctl sets it for
/// the switch it talks to); without it a name is refused. `false` if one was set already.
pub fn set_port_name_lookup(f: Box<PortNameLookup>) -> bool {
    PORT_NAMES.set(f).is_ok()
}

/// Parses a port number or reserved name (`LOCAL`, `in_port`, ...), never a port's name.
/// A decimal number is read as ovs-ofctl reads it: OpenFlow 1.0's reserved numbers name
/// their ports (`65534` is `LOCAL`). A hex number, which ovs-ofctl refuses, is the OpenFlow
/// 1.3 port as written (how a port numbered 0xff00..0xffff prints).
pub fn parse_port_number(s: &str) -> Option<OfPort> {
    if let Some(p) = OfPort::from_reserved_name(s) {
        return Some(p);
    }
    let v = parse_uint_bits(s, 32)? as u32;
    if s.bytes().all(|b| b.is_ascii_digit()) {
        Some(OfPort::from_text_number(v))
    } else {
        Some(OfPort(v))
    }
}

/// Parses a port number, reserved name (`LOCAL`, `in_port`, ...) or, when a lookup is set
/// ([`set_port_name_lookup`]), a port name.
pub fn parse_port(s: &str) -> Option<OfPort> {
    if let Some(p) = parse_port_number(s) {
        return Some(p);
    }
    let lookup = PORT_NAMES.get()?;
    // Names as ovs-ofctl takes them: optionally in double quotes.
    let name = s
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(s);
    lookup(name).map(OfPort)
}

fn parse_flags(s: &str, names: &[&str]) -> Result<(u128, u128), String> {
    let mut value = 0u128;
    let mut mask = 0u128;
    let mut rest = s;
    while !rest.is_empty() {
        let set = match rest.as_bytes()[0] {
            b'+' => true,
            b'-' => false,
            _ => {
                return Err(format!(
                    "expected '+' or '-' before a flag name at '{rest}'"
                ));
            }
        };
        rest = &rest[1..];
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let name = &rest[..end];
        let bit = names.iter().position(|n| *n == name).ok_or_else(|| {
            format!(
                "unknown flag '{name}' (expected one of {})",
                names.join(", ")
            )
        })?;
        if mask & (1 << bit) != 0 {
            return Err(format!("flag '{name}' given twice"));
        }
        mask |= 1 << bit;
        if set {
            value |= 1 << bit;
        }
        rest = &rest[end..];
    }
    Ok((value, mask))
}

/// Formats flags as ovs-ofctl does: `+name` / `-name` for each masked bit, low bit first.
/// Formats exactly matched flags as Open vSwitch does: the names of the set bits joined by
/// `|` (`syn|ack`), `0` when none is set.
pub fn format_flag_list(value: u128, names: &[&str]) -> String {
    let set: Vec<&str> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| value & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "0".into()
    } else {
        set.join("|")
    }
}

/// Parses the `syn|ack` form of exactly matched flags.
fn parse_flag_list(s: &str, names: &[&str]) -> Result<u128, String> {
    let mut value = 0u128;
    for name in s.split('|') {
        let bit = names.iter().position(|n| *n == name).ok_or_else(|| {
            format!(
                "unknown flag '{name}' (expected one of {})",
                names.join(", ")
            )
        })?;
        value |= 1 << bit;
    }
    Ok(value)
}

pub fn format_flags(value: u128, mask: u128, names: &[&str]) -> String {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        if mask & (1 << i) != 0 {
            s.push(if value & (1 << i) != 0 { '+' } else { '-' });
            s.push_str(n);
        }
    }
    s
}

/// The names `nw_frag` reads, as (name, value, mask): Open vSwitch's `all_frags` (its first
/// entry of a name is the one it reads: `no` is `0/0x3`, as ovs-ofctl sends it).
const FRAG_NAMES: [(&str, u128, u128); 5] = [
    ("no", 0, 3),
    ("first", 1, 3),
    ("later", 3, 3),
    ("yes", 1, 1),
    ("not_later", 0, 2),
];

/// Formats `nw_frag` (value, mask) as a name when the name reads back as that pair (as
/// ovs-ofctl prints them: `no` is `0/0x3`, what ovs-ofctl sends for it), else as numbers,
/// which read back as themselves: `0x2/0x3` (ovs-ofctl prints `<error>`), and `0/0x1` and
/// `0x2/0x2`, which only a controller sends (ovs-ofctl prints `no` and `later`, which it reads
/// as `0/0x3` and `0x3/0x3`).
pub fn format_frag(value: u128, mask: u128) -> String {
    match FRAG_NAMES
        .iter()
        .find(|(_, v, m)| *v == value && *m == mask)
    {
        Some((n, _, _)) => (*n).to_string(),
        None => format!("0x{value:x}/0x{mask:x}"),
    }
}

fn prefix_mask(bits: u32, len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        let ones = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        (ones >> (bits - len)) << (bits - len)
    }
}

/// If `mask` is a CIDR prefix of a `bits`-wide field, its length.
pub fn cidr_len(mask: u128, bits: u32) -> Option<u32> {
    (0..=bits).find(|&l| prefix_mask(bits, l) == mask)
}

fn bad(field: FieldId, value: &str, expected: &str) -> ParseError {
    ParseError::BadValue {
        field: field.info().name.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Parses `text` as a value (and optional `/mask`) of `field`. Returns `(value, mask)`, with
/// `None` mask meaning "exact". Special formats (`dl_vlan`, `dl_vlan_pcp`) return the stored
/// encoding (present bit included).
pub fn parse_field_value(field: FieldId, text: &str) -> Result<(u128, Option<u128>), ParseError> {
    let info = field.info();
    let bits = info.bits as u32;
    let (v, m) = match text.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (text, None),
    };
    if m.is_some() && !info.maskable {
        return Err(ParseError::NotMaskable(info.name.to_string()));
    }
    match info.format {
        Format::Decimal | Format::Hex => {
            let what = format!("a number of at most {bits} bits");
            let value = parse_uint_bits(v, bits).ok_or_else(|| bad(field, v, &what))?;
            let mask = match m {
                Some(m) => Some(parse_uint_bits(m, bits).ok_or_else(|| bad(field, m, &what))?),
                None => None,
            };
            Ok((value, mask))
        }
        Format::Port => {
            let p = parse_port(v).ok_or_else(|| bad(field, v, "a port number or name"))?;
            // As ovs-ofctl: a port Open vSwitch cannot represent is not a port.
            if !p.is_representable() {
                return Err(bad(
                    field,
                    v,
                    "a port below 0xff00 or from 0xffffff00 on (0xff00..0xfffffeff cannot be \
                     represented by Open vSwitch)",
                ));
            }
            Ok((p.0 as u128, None))
        }
        Format::Ipv4 => {
            let a: Ipv4Addr = v.parse().map_err(|_| bad(field, v, "an IPv4 address"))?;
            let mask = match m {
                None => None,
                Some(m) if !m.contains('.') => {
                    let len = parse_uint_bits(m, 8)
                        .filter(|l| *l <= 32)
                        .ok_or_else(|| bad(field, m, "a prefix length 0..32"))?;
                    Some(prefix_mask(32, len as u32))
                }
                Some(m) => {
                    let a: Ipv4Addr = m.parse().map_err(|_| bad(field, m, "an IPv4 mask"))?;
                    Some(u32::from(a) as u128)
                }
            };
            Ok((u32::from(a) as u128, mask))
        }
        Format::Ipv6 => {
            let a: Ipv6Addr = v.parse().map_err(|_| bad(field, v, "an IPv6 address"))?;
            let mask = match m {
                None => None,
                Some(m) if !m.contains(':') => {
                    let len = parse_uint_bits(m, 8)
                        .filter(|l| *l <= 128)
                        .ok_or_else(|| bad(field, m, "a prefix length 0..128"))?;
                    Some(prefix_mask(128, len as u32))
                }
                Some(m) => {
                    let a: Ipv6Addr = m.parse().map_err(|_| bad(field, m, "an IPv6 mask"))?;
                    Some(u128::from(a))
                }
            };
            Ok((u128::from(a), mask))
        }
        Format::Mac => {
            let value =
                parse_mac(v).ok_or_else(|| bad(field, v, "a MAC address xx:xx:xx:xx:xx:xx"))?;
            let mask = match m {
                Some(m) => Some(parse_mac(m).ok_or_else(|| bad(field, m, "a MAC mask"))?),
                None => None,
            };
            Ok((value, mask))
        }
        Format::CtState | Format::TcpFlags => {
            let names: &[&str] = if info.format == Format::CtState {
                &CT_STATE_NAMES
            } else {
                &TCP_FLAG_NAMES
            };
            if v.starts_with(['+', '-']) && m.is_none() {
                let (value, mask) = parse_flags(v, names).map_err(|e| bad(field, v, &e))?;
                return Ok((value, Some(mask)));
            }
            // The exact form Open vSwitch prints and reads: `syn|ack`, `new|trk`.
            if m.is_none() && v.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') {
                let value = parse_flag_list(v, names).map_err(|e| bad(field, v, &e))?;
                return Ok((value, None));
            }
            let what = format!("+flag-flag... or a number of at most {bits} bits");
            let value = parse_uint_bits(v, bits).ok_or_else(|| bad(field, v, &what))?;
            let mask = match m {
                Some(m) => Some(parse_uint_bits(m, bits).ok_or_else(|| bad(field, m, &what))?),
                None => None,
            };
            Ok((value, mask))
        }
        Format::Frag => {
            const WANT: &str = "one of no, yes, first, later, not_later (or 0xV/0xM of 2 bits)";
            if let Some(&(_, val, mask)) = FRAG_NAMES.iter().find(|(n, _, _)| *n == v) {
                if m.is_some() {
                    return Err(bad(field, text, WANT));
                }
                return Ok((val, Some(mask)));
            }
            // The value/mask pairs without a name (`0x2/0x3`: "later" without "fragment"),
            // which a controller may send as NXM_NX_IP_FRAG and `format_frag` prints so.
            let bits = |s: &str| parse_uint_bits(s, 2).ok_or_else(|| bad(field, text, WANT));
            Ok((bits(v)?, m.map(bits).transpose()?))
        }
        Format::DlVlan => {
            let vid = parse_uint_bits(v, 16).ok_or_else(|| bad(field, v, "a VLAN id 0..4095"))?;
            if vid > 0xfff {
                return Err(bad(field, v, "a VLAN id 0..4095"));
            }
            Ok((vid | 0x1000, None))
        }
        Format::DlVlanPcp => {
            let pcp = parse_uint_bits(v, 3).ok_or_else(|| bad(field, v, "a priority 0..7"))?;
            Ok(((pcp << 1) | 1, None))
        }
    }
}

/// C's `%#x`: `0` for zero, else `0x..`.
pub fn hex_c(v: u128) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("0x{v:x}")
    }
}

/// Formats a value of `field` the way `set_field:` prints it (OVS `mf_format`; a hex field
/// through `ds_put_hex`, which prints zero as `0`: `set_field:0->reg0`).
pub fn format_field_value(field: FieldId, value: u128) -> String {
    let info = field.info();
    match info.format {
        Format::Decimal => value.to_string(),
        Format::Hex | Format::CtState | Format::TcpFlags => hex_c(value),
        Format::Ipv4 => Ipv4Addr::from(value as u32).to_string(),
        Format::Ipv6 => Ipv6Addr::from(value).to_string(),
        Format::Mac => format_mac(value),
        Format::Port => OfPort(value as u32).to_string(),
        Format::Frag => format_frag(value, 3),
        Format::DlVlan => (value & 0xfff).to_string(),
        Format::DlVlanPcp => (value >> 1).to_string(),
    }
}

/// Formats a masked value (`value/mask`, or just the value when the mask is full).
pub fn format_field_masked(field: FieldId, value: u128, mask: u128) -> String {
    let info = field.info();
    if mask == info.full_mask() {
        return format_field_value(field, value);
    }
    match info.format {
        Format::Ipv4 | Format::Ipv6 => {
            let bits = info.bits as u32;
            match cidr_len(mask, bits) {
                Some(l) => format!("{}/{l}", format_field_value(field, value)),
                None => format!(
                    "{}/{}",
                    format_field_value(field, value),
                    format_field_value(field, mask)
                ),
            }
        }
        Format::Mac => format!("{}/{}", format_mac(value), format_mac(mask)),
        // `mf_format_integer_string`: the value in the field's base (a port as a number), the
        // mask in hex, both through `ds_put_hex` (zero is `0`).
        Format::Decimal | Format::Port => format!("{value}/{}", hex_c(mask)),
        _ => format!("{}/{}", hex_c(value), hex_c(mask)),
    }
}

/// Parses dotted hex bytes (`01.02.03`, also accepts plain hex pairs).
pub fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| *c != '.').collect();
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// Formats bytes as dotted hex (`de.ad.be.ef`).
pub fn format_hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(".")
}
