//! FTP control-message parser: finds the data-connection endpoint an FTP control packet
//! announces (RFC 959 `PORT` / `227`, RFC 2428 `EPRT` / `229`).
//!
//! It reads untrusted bytes, so it never panics, never allocates, and looks only at the first
//! line of the payload, at most [`WINDOW`] bytes (an FTP command or reply that announces a
//! port is one short line; Open vSwitch looks at 128 bytes). What it recognises:
//! - IPv4: `PORT h1,h2,h3,h4,p1,p2`, `EPRT |1|a.b.c.d|port|`,
//!   `227 <text>h1,h2,h3,h4,p1,p2<text>`, `229 <text>(|||port|)`;
//! - IPv6: `EPRT |2|v6addr|port|`, `229 <text>(|||port|)` (like Open vSwitch, `PORT` and
//!   `227` are not looked at over IPv6).
//!
//! Keywords are case-insensitive. A line that starts like one of those but does not parse is
//! [`FtpMsg::Invalid`] (Open vSwitch marks the packet `+inv`); anything else is
//! [`FtpMsg::Other`]. The address span is reported so NAT can rewrite it in place.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::tuple::{Addr, Family};

/// Bytes of payload looked at.
pub const WINDOW: usize = 256;

/// Which end announces the data port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpMode {
    /// `PORT` / `EPRT` from the client: the server connects to the client.
    Active,
    /// `227` / `229` from the server: the client connects to the server.
    Passive,
}

/// How the address is written, for a rewrite in the same style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrStyle {
    /// `h1,h2,h3,h4` (`PORT`, `227`).
    Commas,
    /// Dotted IPv4 or IPv6 text (`EPRT`).
    Text,
}

/// An announced data endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FtpEndpoint {
    pub mode: FtpMode,
    /// The announced address, `None` for `229` (the control connection's server address).
    pub addr: Option<Addr>,
    pub port: u16,
    /// Where the address text sits in the payload (`start..end`), for a rewrite.
    pub addr_span: (usize, usize),
    pub style: AddrStyle,
}

/// What a control packet's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpMsg {
    /// Not a message that announces a data port.
    Other,
    /// Starts like one but is malformed (or announces port 0).
    Invalid,
    Endpoint(FtpEndpoint),
}

/// Parses one control packet's payload.
pub fn parse(payload: &[u8], family: Family) -> FtpMsg {
    let line = first_line(payload);
    let v4 = family == Family::V4;
    let r = if v4 && starts_with_ci(line, b"PORT") {
        port_cmd(line)
    } else if starts_with_ci(line, b"EPRT") {
        eprt(line, family)
    } else if v4 && line.starts_with(b"227") {
        pasv_reply(line)
    } else if line.starts_with(b"229") {
        epsv_reply(line)
    } else {
        return FtpMsg::Other;
    };
    match r {
        Some(e) if e.port != 0 => FtpMsg::Endpoint(e),
        _ => FtpMsg::Invalid,
    }
}

fn first_line(payload: &[u8]) -> &[u8] {
    let w = &payload[..payload.len().min(WINDOW)];
    match w.iter().position(|&b| b == b'\n' || b == 0) {
        Some(i) => &w[..i],
        None => w,
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A decimal number of at most `max_digits` digits at `at`: (value, end).
fn number(s: &[u8], at: usize, max_digits: usize) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    let mut i = at;
    while i < s.len() && s[i].is_ascii_digit() {
        if i - at == max_digits {
            return None;
        }
        v = v * 10 + u32::from(s[i] - b'0');
        i += 1;
    }
    (i > at).then_some((v, i))
}

/// Six comma-separated numbers 0..=255 at `at` (`h1,h2,h3,h4,p1,p2`): address, port, span.
fn six_numbers(s: &[u8], at: usize) -> Option<(Addr, u16, (usize, usize))> {
    let mut v = [0u8; 6];
    let mut i = at;
    let mut addr_end = at;
    for (k, slot) in v.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
        let (n, end) = number(s, i, 3)?;
        *slot = u8::try_from(n).ok()?;
        i = end;
        if k == 3 {
            addr_end = i;
        }
    }
    let addr = Addr::from(Ipv4Addr::new(v[0], v[1], v[2], v[3]));
    Some((addr, u16::from_be_bytes([v[4], v[5]]), (at, addr_end)))
}

/// `PORT h1,h2,h3,h4,p1,p2`.
fn port_cmd(line: &[u8]) -> Option<FtpEndpoint> {
    let mut i = 4;
    if line.get(i) != Some(&b' ') {
        return None;
    }
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let (addr, port, span) = six_numbers(line, i)?;
    Some(FtpEndpoint {
        mode: FtpMode::Active,
        addr: Some(addr),
        port,
        addr_span: span,
        style: AddrStyle::Commas,
    })
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).`: the numbers start at the first digit
/// after the code (RFC 959 leaves the text around them free).
fn pasv_reply(line: &[u8]) -> Option<FtpEndpoint> {
    if line.get(3) != Some(&b' ') {
        return None;
    }
    let start = 4 + line[4..].iter().position(u8::is_ascii_digit)?;
    let (addr, port, span) = six_numbers(line, start)?;
    Some(FtpEndpoint {
        mode: FtpMode::Passive,
        addr: Some(addr),
        port,
        addr_span: span,
        style: AddrStyle::Commas,
    })
}

/// `EPRT <d><af><d><addr><d><port><d>`, any printable delimiter `d`.
fn eprt(line: &[u8], family: Family) -> Option<FtpEndpoint> {
    let mut i = 4;
    if line.get(i) != Some(&b' ') {
        return None;
    }
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let d = *line.get(i).filter(|c| (33..=126).contains(*c))?;
    let af = line.get(i + 1)?;
    if line.get(i + 2) != Some(&d) {
        return None;
    }
    let want = match family {
        Family::V4 => b'1',
        Family::V6 => b'2',
    };
    if *af != want {
        return None;
    }
    let a_start = i + 3;
    let a_len = line[a_start..].iter().position(|&c| c == d)?;
    let a_end = a_start + a_len;
    let text = std::str::from_utf8(&line[a_start..a_end]).ok()?;
    let addr = match family {
        Family::V4 => Addr::from(text.parse::<Ipv4Addr>().ok()?),
        Family::V6 => Addr::from(text.parse::<Ipv6Addr>().ok()?),
    };
    let (port, p_end) = number(line, a_end + 1, 5)?;
    if line.get(p_end) != Some(&d) {
        return None;
    }
    Some(FtpEndpoint {
        mode: FtpMode::Active,
        addr: Some(addr),
        port: u16::try_from(port).ok()?,
        addr_span: (a_start, a_end),
        style: AddrStyle::Text,
    })
}

/// `229 Entering Extended Passive Mode (<d><d><d><port><d>)`.
fn epsv_reply(line: &[u8]) -> Option<FtpEndpoint> {
    if line.get(3) != Some(&b' ') {
        return None;
    }
    let open = line.iter().position(|&c| c == b'(')?;
    let d = *line.get(open + 1).filter(|c| (33..=126).contains(*c))?;
    if line.get(open + 2) != Some(&d) || line.get(open + 3) != Some(&d) {
        return None;
    }
    let (port, end) = number(line, open + 4, 5)?;
    if line.get(end) != Some(&d) {
        return None;
    }
    Some(FtpEndpoint {
        mode: FtpMode::Passive,
        addr: None,
        port: u16::try_from(port).ok()?,
        addr_span: (0, 0),
        style: AddrStyle::Text,
    })
}

/// Longest address text a rewrite writes (a full IPv6 address).
pub const MAX_ADDR_TEXT: usize = 40;

/// The text for `addr` in `style`, into `out`; returns its length.
pub fn addr_text(
    addr: Addr,
    family: Family,
    style: AddrStyle,
    out: &mut [u8; MAX_ADDR_TEXT],
) -> usize {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut out[..]);
    let _ = match (family, style) {
        (Family::V4, AddrStyle::Commas) => {
            let [a, b, c, d] = addr.v4_host().to_be_bytes();
            write!(cur, "{a},{b},{c},{d}")
        }
        (Family::V4, AddrStyle::Text) => write!(cur, "{}", Ipv4Addr::from(addr.v4_host())),
        (Family::V6, _) => write!(cur, "{}", Ipv6Addr::from(addr.0)),
    };
    cur.position() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> Addr {
        Addr::from(Ipv4Addr::from(a))
    }

    fn ep(s: &str, f: Family) -> FtpEndpoint {
        match parse(s.as_bytes(), f) {
            FtpMsg::Endpoint(e) => e,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn port_command() {
        let s = "PORT 10,0,0,1,4,1\r\n";
        let e = ep(s, Family::V4);
        assert_eq!(e.mode, FtpMode::Active);
        assert_eq!(e.addr, Some(v4([10, 0, 0, 1])));
        assert_eq!(e.port, 1025);
        assert_eq!(&s[e.addr_span.0..e.addr_span.1], "10,0,0,1");
        assert_eq!(
            ep("port  192,168,200,17,255,255\r\n", Family::V4).port,
            65535
        );
    }

    #[test]
    fn pasv_reply_finds_the_numbers_in_free_text() {
        let s = "227 Entering Passive Mode (172,16,5,9,200,10).\r\n";
        let e = ep(s, Family::V4);
        assert_eq!(e.mode, FtpMode::Passive);
        assert_eq!(e.addr, Some(v4([172, 16, 5, 9])));
        assert_eq!(e.port, 200 * 256 + 10);
        assert_eq!(&s[e.addr_span.0..e.addr_span.1], "172,16,5,9");
        assert_eq!(ep("227 =1,2,3,4,0,21\r\n", Family::V4).port, 21);
    }

    #[test]
    fn extended_forms() {
        let s = "EPRT |1|132.235.1.2|6275|\r\n";
        let e = ep(s, Family::V4);
        assert_eq!((e.addr, e.port), (Some(v4([132, 235, 1, 2])), 6275));
        assert_eq!(&s[e.addr_span.0..e.addr_span.1], "132.235.1.2");
        let s6 = "EPRT !2!fd00::1:2!5282!\r\n";
        let e6 = ep(s6, Family::V6);
        assert_eq!(
            e6.addr,
            Some(Addr::from("fd00::1:2".parse::<Ipv6Addr>().unwrap()))
        );
        assert_eq!(e6.port, 5282);
        for f in [Family::V4, Family::V6] {
            let p = ep("229 Entering Extended Passive Mode (|||6446|)\r\n", f);
            assert_eq!((p.mode, p.addr, p.port), (FtpMode::Passive, None, 6446));
        }
    }

    #[test]
    fn other_lines_are_ignored() {
        for s in [
            "USER anonymous\r\n",
            "230 Login successful.\r\n",
            "",
            "PASV\r\n",
            "EPSV\r\n",
            "RETR file\r\n",
        ] {
            assert_eq!(parse(s.as_bytes(), Family::V4), FtpMsg::Other, "{s:?}");
        }
        // PORT and 227 carry IPv4 addresses only: over IPv6 they are not looked at.
        assert_eq!(parse(b"PORT 1,2,3,4,5,6\r\n", Family::V6), FtpMsg::Other);
    }

    #[test]
    fn malformed_announcements_are_invalid() {
        for s in [
            "PORT 10,0,0,1,4\r\n",
            "PORT 10,0,0,256,4,1\r\n",
            "PORT 10,0,0,1,4,1000\r\n",
            "PORTX 10,0,0,1,4,1\r\n",
            "PORT 10,0,0,1,0,0\r\n",
            "227 no numbers here\r\n",
            "EPRT |2|1.2.3.4|80|\r\n",
            "EPRT |1|1.2.3.4|70000|\r\n",
            "EPRT |1|1.2.3.999|80|\r\n",
            "EPRT |1|1.2.3.4|80\r\n",
            "229 Entering Extended Passive Mode (|||6446)\r\n",
            "229 Entering Extended Passive Mode |||6446|\r\n",
            "227 (1,2,3,4,5\r\n",
        ] {
            assert_eq!(parse(s.as_bytes(), Family::V4), FtpMsg::Invalid, "{s:?}");
        }
    }

    #[test]
    fn only_the_first_line_counts() {
        assert_eq!(
            parse(b"NOOP\r\nPORT 1,2,3,4,5,6\r\n", Family::V4),
            FtpMsg::Other
        );
        let mut long = b"227 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', WINDOW));
        long.extend(b"(1,2,3,4,5,6)\r\n");
        assert_eq!(parse(&long, Family::V4), FtpMsg::Invalid);
    }

    #[test]
    fn address_text_in_each_style() {
        let mut b = [0u8; MAX_ADDR_TEXT];
        let n = addr_text(v4([192, 168, 1, 20]), Family::V4, AddrStyle::Commas, &mut b);
        assert_eq!(&b[..n], b"192,168,1,20");
        let n = addr_text(v4([10, 0, 0, 1]), Family::V4, AddrStyle::Text, &mut b);
        assert_eq!(&b[..n], b"10.0.0.1");
        let full = Addr([
            0xfd, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        let n = addr_text(full, Family::V6, AddrStyle::Text, &mut b);
        assert_eq!(&b[..n], b"fd12:3456:789a:bcde:102:304:506:708");
        let max = Addr([0xff; 16]);
        assert_eq!(addr_text(max, Family::V6, AddrStyle::Text, &mut b), 39);
    }

    #[test]
    fn never_panics_on_prefixes_of_valid_messages() {
        for s in [
            "PORT 10,0,0,1,4,1\r\n",
            "EPRT |1|132.235.1.2|6275|\r\n",
            "EPRT |2|fd00::1|6275|\r\n",
            "227 Entering Passive Mode (172,16,5,9,200,10).\r\n",
            "229 Entering Extended Passive Mode (|||6446|)\r\n",
        ] {
            for n in 0..=s.len() {
                for f in [Family::V4, Family::V6] {
                    let _ = parse(&s.as_bytes()[..n], f);
                }
            }
        }
    }
}
