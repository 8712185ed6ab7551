//! Meter text as `ovs-ofctl add-meter`/`dump-meters` read and print it (Open vSwitch 3.1,
//! `lib/ofp-meter.c`): `meter=1,pktps,burst,stats,bands=type=drop,rate=10,burst_size=5`.
//!
//! The parser follows ovs-ofctl token for token (its separators, its keywords, its checks and
//! its error messages), so a line either tool accepts means the same meter in both.

use std::fmt::Write as _;

use crate::meter::{
    BAND_DROP, BAND_DSCP_REMARK, METER_ALL, METER_CONTROLLER, METER_MAX, METER_SLOWPATH, Meter,
    MeterBand, MeterFlags, MeterMod, MeterModCommand,
};

use super::ParseError;

fn err(msg: impl Into<String>) -> ParseError {
    ParseError::Meter(msg.into())
}

/// Tokens split at any of `seps` (ovs-ofctl's `strtok_r` loop: empty tokens vanish).
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn next(&mut self, seps: &[char]) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(|c| seps.contains(&c));
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let end = s.find(|c| seps.contains(&c)).unwrap_or(s.len());
        let tok = &s[..end];
        // strtok_r consumes the one separator that ended the token.
        self.rest = s[end..]
            .char_indices()
            .nth(1)
            .map_or("", |(i, _)| &s[end + i..]);
        Some(tok)
    }
}

const NAME_SEPS: &[char] = &['=', ',', ' ', '\t', '\r', '\n'];
const VALUE_SEPS: &[char] = &[',', ' ', '\t', '\r', '\n'];

/// `str_to_u32`: decimal, `0x` hex or leading-zero octal, as `strtoull(.., 0)` reads them.
fn parse_u32(v: &str) -> Result<u32, ParseError> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if v.len() > 1 && v.starts_with('0') {
        u64::from_str_radix(&v[1..], 8).ok()
    } else {
        v.parse::<u64>().ok()
    };
    match n {
        Some(n) if n <= u64::from(u32::MAX) => Ok(n as u32),
        _ => Err(err(format!("invalid numeric format {v}"))),
    }
}

fn parse_meter_id(v: &str) -> Result<u32, ParseError> {
    Ok(match v {
        "all" => METER_ALL,
        "controller" => METER_CONTROLLER,
        "slowpath" => METER_SLOWPATH,
        _ => {
            let id = parse_u32(v)?;
            if id == 0 || id > METER_MAX {
                return Err(err("invalid value for meter"));
            }
            id
        }
    })
}

/// Which parts a command takes (`parse_ofp_meter_mod_str__`'s `fields`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// `meter=` only: delete, and the filter of dump-meters/meter-stats.
    Id,
    /// `meter=`, flags and `bands=`: add and modify.
    All,
}

/// Parses a meter for `add-meter` (`Add`), `mod-meter` (`Modify`) or `del-meter` (`Delete`,
/// `meter=` only).
pub fn parse_meter_mod(s: &str, command: MeterModCommand) -> Result<MeterMod, ParseError> {
    let fields = if command == MeterModCommand::Delete {
        Fields::Id
    } else {
        Fields::All
    };
    let meter = parse(s, fields)?;
    Ok(MeterMod { command, meter })
}

/// The `meter=N` (or `meter=all`) filter of `dump-meters` and `meter-stats`.
pub fn parse_meter_filter(s: &str) -> Result<u32, ParseError> {
    Ok(parse(s, Fields::Id)?.id)
}

fn parse(s: &str, fields: Fields) -> Result<Meter, ParseError> {
    let mut m = Meter {
        id: 0,
        flags: MeterFlags(0),
        bands: Vec::new(),
    };
    let (head, band_str) = if fields == Fields::All {
        let at = s.find("band").ok_or_else(|| err("must specify bands"))?;
        let after = &s[at + 1..];
        let eq = after.find('=').ok_or_else(|| err("must specify bands"))?;
        (&s[..at], Some(&after[eq + 1..]))
    } else {
        (s, None)
    };
    let mut t = Tokens { rest: head };
    while let Some(name) = t.next(NAME_SEPS) {
        let flag = MeterFlags::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .filter(|_| fields == Fields::All);
        if let Some((bit, _)) = flag {
            m.flags.0 |= bit;
            continue;
        }
        let value = t
            .next(VALUE_SEPS)
            .ok_or_else(|| err(format!("field {name} missing value")))?;
        if name == "meter" {
            m.id = parse_meter_id(value)?;
        } else {
            return Err(err(format!("unknown keyword {name}")));
        }
    }
    if m.id == 0 {
        return Err(err("must specify 'meter'"));
    }
    let Some(band_str) = band_str else {
        return Ok(m);
    };
    if m.flags.0 == 0 {
        return Err(err("meter must specify either 'kbps' or 'pktps'"));
    }
    let mut t = Tokens { rest: band_str };
    while let Some(name) = t.next(NAME_SEPS) {
        let value = t
            .next(VALUE_SEPS)
            .ok_or_else(|| err(format!("field {name} missing value")))?;
        if name == "type" {
            let band_type = match value {
                "drop" => BAND_DROP,
                "dscp_remark" => BAND_DSCP_REMARK,
                _ => return Err(err(format!("field {name} unknown value {value}"))),
            };
            m.bands.push(MeterBand {
                band_type,
                rate: 0,
                burst_size: 0,
                prec_level: 0,
            });
            continue;
        }
        let Some(band) = m.bands.last_mut() else {
            return Err(err("band must start with the 'type' keyword"));
        };
        match name {
            "rate" => band.rate = parse_u32(value)?,
            "burst_size" => band.burst_size = parse_u32(value)?,
            "prec_level" => {
                band.prec_level = parse_u32(value)
                    .ok()
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| err(format!("invalid {name} \"{value}\"")))?
            }
            _ => return Err(err(format!("unknown keyword {name}"))),
        }
    }
    if m.bands.is_empty() {
        return Err(err("meter must have bands"));
    }
    for b in &m.bands {
        if b.band_type == BAND_DSCP_REMARK {
            if b.prec_level == 0 {
                return Err(err("'dscp_remark' band must have 'prec_level'"));
            }
        } else if b.prec_level != 0 {
            return Err(err("Only 'dscp_remark' band may have 'prec_level'"));
        }
        if b.rate == 0 {
            return Err(err("band must have 'rate'"));
        }
        if m.flags.contains(MeterFlags::BURST) {
            if b.burst_size == 0 {
                return Err(err("band must have 'burst_size' when 'burst' flag is set"));
            }
        } else if b.burst_size != 0 {
            return Err(err(
                "band may have 'burst_size' only when 'burst' flag is set",
            ));
        }
    }
    Ok(m)
}

/// `meter=1` / `meter:1` (`sep`), `meter=all`, `meter=controller`, ... as ovs-ofctl names ids.
pub fn meter_id_text(id: u32, sep: char) -> String {
    if id <= METER_MAX {
        return format!("meter{sep}{id}");
    }
    let name = match id {
        METER_SLOWPATH => "slowpath",
        METER_CONTROLLER => "controller",
        METER_ALL => "all",
        _ => "unknown",
    };
    format!("meter{sep}{name}")
}

/// One meter as `dump-meters` prints it (`ofputil_format_meter_config`), newline-terminated:
/// `meter=1 pktps burst stats bands=\ntype=drop rate=10 burst_size=5\n`.
pub fn print_meter(m: &Meter) -> String {
    let mut s = meter_id_text(m.id, '=');
    s.push(' ');
    for (bit, name) in MeterFlags::NAMES {
        if m.flags.contains(bit) {
            s.push_str(name);
            s.push(' ');
        }
    }
    let other = m.flags.0 & !MeterFlags::ALL;
    if other != 0 {
        let _ = write!(s, "flags:{other:#x} ");
    }
    s.push_str("bands=");
    for b in &m.bands {
        s.push_str("\ntype=");
        match b.band_type {
            BAND_DROP => s.push_str("drop"),
            BAND_DSCP_REMARK => s.push_str("dscp_remark"),
            t => {
                let _ = write!(s, "{t}");
            }
        }
        let _ = write!(s, " rate={}", b.rate);
        if m.flags.contains(MeterFlags::BURST) {
            let _ = write!(s, " burst_size={}", b.burst_size);
        }
        if b.band_type == BAND_DSCP_REMARK {
            let _ = write!(s, " prec_level={}", b.prec_level);
        }
    }
    s.push('\n');
    s
}

/// A meter as the one-line text `add-meter` reads back (what the state file keeps):
/// `meter=1,pktps,burst,stats,bands=type=drop,rate=10,burst_size=5`.
pub fn print_meter_line(m: &Meter) -> String {
    let mut s = meter_id_text(m.id, '=');
    for (bit, name) in MeterFlags::NAMES {
        if m.flags.contains(bit) {
            s.push(',');
            s.push_str(name);
        }
    }
    s.push_str(",bands=");
    let bands: Vec<String> = m
        .bands
        .iter()
        .map(|b| {
            let mut t = match b.band_type {
                BAND_DROP => "type=drop".to_string(),
                BAND_DSCP_REMARK => "type=dscp_remark".to_string(),
                t => format!("type={t}"),
            };
            let _ = write!(t, ",rate={}", b.rate);
            if b.burst_size != 0 {
                let _ = write!(t, ",burst_size={}", b.burst_size);
            }
            if b.prec_level != 0 {
                let _ = write!(t, ",prec_level={}", b.prec_level);
            }
            t
        })
        .collect();
    s.push_str(&bands.join(" "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(s: &str) -> Result<Meter, String> {
        parse_meter_mod(s, MeterModCommand::Add)
            .map(|m| m.meter)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_what_ovs_ofctl_parses() {
        let m = add("meter=1,pktps,burst,stats,bands=type=drop,rate=10,burst_size=5").unwrap();
        assert_eq!(m.id, 1);
        assert_eq!(
            m.flags.0,
            MeterFlags::PKTPS | MeterFlags::BURST | MeterFlags::STATS
        );
        assert_eq!(m.bands, vec![MeterBand::drop(10, 5)]);
        let m = add("meter=3,kbps,stats,bands=type=drop,rate=1000 type=drop,rate=2000").unwrap();
        assert_eq!(
            m.bands,
            vec![MeterBand::drop(1000, 0), MeterBand::drop(2000, 0)]
        );
        let m = add("meter=0x10 kbps band=type=drop rate=7").unwrap();
        assert_eq!((m.id, m.bands[0].rate), (16, 7));
        let m = add("meter=4,pktps,bands=type=dscp_remark,rate=10,prec_level=1").unwrap();
        assert_eq!(m.bands[0].band_type, BAND_DSCP_REMARK);
        let d = parse_meter_mod("meter=all", MeterModCommand::Delete).unwrap();
        assert_eq!(d.meter.id, METER_ALL);
        assert_eq!(parse_meter_filter("meter=5").unwrap(), 5);
    }

    #[test]
    fn refuses_with_ovs_ofctl_messages() {
        for (text, msg) in [
            ("meter=1,kbps", "must specify bands"),
            ("meter=1,kbps,bands", "must specify bands"),
            ("kbps,bands=type=drop,rate=1", "must specify 'meter'"),
            (
                "meter=0,kbps,bands=type=drop,rate=1",
                "invalid value for meter",
            ),
            (
                "meter=4294901761,kbps,bands=type=drop,rate=1",
                "invalid value for meter",
            ),
            (
                "meter=1,bands=type=drop,rate=1",
                "meter must specify either 'kbps' or 'pktps'",
            ),
            ("meter=1,kbps,bands=", "meter must have bands"),
            (
                "meter=1,kbps,bands=rate=1",
                "band must start with the 'type' keyword",
            ),
            (
                "meter=1,kbps,bands=type=foo,rate=1",
                "field type unknown value foo",
            ),
            ("meter=1,kbps,bands=type=drop", "band must have 'rate'"),
            ("meter=1,kbps,bands=type", "field type missing value"),
            (
                "meter=1,kbps,bands=type=drop,rate=1,prec_level=300",
                "invalid prec_level \"300\"",
            ),
            (
                "meter=1,kbps,bands=type=drop,rate",
                "field rate missing value",
            ),
            (
                "meter=1,kbps,bands=type=drop,burst_size=3",
                "band must have 'rate'",
            ),
            (
                "meter=1,kbps,bands=type=drop,rate=1,burst_size=3",
                "band may have 'burst_size' only when 'burst' flag is set",
            ),
            (
                "meter=1,kbps,burst,bands=type=drop,rate=1",
                "band must have 'burst_size' when 'burst' flag is set",
            ),
            (
                "meter=1,kbps,bands=type=drop,rate=1,prec_level=2",
                "Only 'dscp_remark' band may have 'prec_level'",
            ),
            (
                "meter=1,kbps,bands=type=dscp_remark,rate=1",
                "'dscp_remark' band must have 'prec_level'",
            ),
            (
                "meter=1,foo=2,kbps,bands=type=drop,rate=1",
                "unknown keyword foo",
            ),
            (
                "meter=x,kbps,bands=type=drop,rate=1",
                "invalid numeric format x",
            ),
        ] {
            assert_eq!(add(text).unwrap_err(), msg, "{text}");
        }
        assert!(parse_meter_mod("meter=1,kbps", MeterModCommand::Delete).is_err());
    }

    #[test]
    fn prints_like_dump_meters() {
        let m = add("meter=1,pktps,burst,stats,bands=type=drop,rate=10,burst_size=5").unwrap();
        assert_eq!(
            print_meter(&m),
            "meter=1 pktps burst stats bands=\ntype=drop rate=10 burst_size=5\n"
        );
        let m = add("meter=3,kbps,stats,bands=type=drop,rate=1000 type=drop,rate=2000").unwrap();
        assert_eq!(
            print_meter(&m),
            "meter=3 kbps stats bands=\ntype=drop rate=1000\ntype=drop rate=2000\n"
        );
        assert_eq!(meter_id_text(METER_ALL, '='), "meter=all");
        assert_eq!(meter_id_text(7, ':'), "meter:7");
    }

    #[test]
    fn one_line_text_reads_back() {
        for text in [
            "meter=1,pktps,burst,stats,bands=type=drop,rate=10,burst_size=5",
            "meter=3,kbps,stats,bands=type=drop,rate=1000 type=drop,rate=2000",
            "meter=9,kbps,bands=type=dscp_remark,rate=5,prec_level=3",
        ] {
            let m = add(text).unwrap();
            assert_eq!(print_meter_line(&m), text);
            assert_eq!(add(&print_meter_line(&m)).unwrap(), m);
        }
    }
}
