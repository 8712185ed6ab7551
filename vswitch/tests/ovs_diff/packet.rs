//! Test packets from a one-line description in the words of `ovs-ofctl` flows, e.g.
//! `tcp,in=1,vlan=10,nw_src=10.0.0.1,tp_dst=80,flags=S,payload=20`, or `hex=...` for raw bytes.
//! Built by hand (checksums included) so that malformed variants are one key away:
//! `trunc=N` cuts the frame, `ihl=`, `totlen=`, `bad_csum`, `frag=` bend the IP header.
//! `data_hex=...` gives the L4 payload bytes (`payload=N` makes N filler bytes).

use std::net::{Ipv4Addr, Ipv6Addr};

/// One packet to send: the ofport it arrives on and its bytes.
#[derive(Debug, Clone)]
pub struct TestPacket {
    pub in_port: u32,
    pub frame: Vec<u8>,
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC {s}"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s}"))?;
    }
    Ok(m)
}

fn num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("bad number {s}"))
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("bad hex {s}")))
        .collect()
}

/// The Internet checksum of `data` folded onto `init`.
fn csum(init: u32, data: &[u8]) -> u16 {
    let mut sum = init;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for c in src.chunks(2).chain(dst.chunks(2)) {
        s += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    s + proto as u32 + (len as u32 & 0xffff) + ((len as u32) >> 16)
}

/// The keys of one description, in order, with `key` alone for flags.
struct Keys(Vec<(String, String)>);

impl Keys {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(a, _)| a == k)
    }
    fn num_or(&self, k: &str, d: u64) -> Result<u64, String> {
        self.get(k).map(num).unwrap_or(Ok(d))
    }
    fn v4(&self, k: &str, d: &str) -> Result<[u8; 4], String> {
        let s = self.get(k).unwrap_or(d);
        s.parse::<Ipv4Addr>()
            .map(|a| a.octets())
            .map_err(|_| format!("bad IPv4 {s}"))
    }
    fn v6(&self, k: &str, d: &str) -> Result<[u8; 16], String> {
        let s = self.get(k).unwrap_or(d);
        s.parse::<Ipv6Addr>()
            .map(|a| a.octets())
            .map_err(|_| format!("bad IPv6 {s}"))
    }
    fn mac(&self, k: &str, d: &str) -> Result<[u8; 6], String> {
        mac(self.get(k).unwrap_or(d))
    }
}

const KNOWN: &[&str] = &[
    "in",
    "hex",
    "eth",
    "arp",
    "ip",
    "tcp",
    "udp",
    "icmp",
    "sctp",
    "ipv6",
    "tcp6",
    "udp6",
    "icmp6",
    "dl_src",
    "dl_dst",
    "dl_type",
    "vlan",
    "pcp",
    "cfi",
    "vlan2",
    "pcp2",
    "tpid",
    "nw_src",
    "nw_dst",
    "nw_ttl",
    "nw_tos",
    "nw_proto",
    "ip_id",
    "frag",
    "df",
    "ihl",
    "totlen",
    "bad_csum",
    "ipv6_src",
    "ipv6_dst",
    "ipv6_label",
    "tp_src",
    "tp_dst",
    "flags",
    "seq",
    "icmp_type",
    "icmp_code",
    "nd_target",
    "nd_sll",
    "nd_tll",
    "arp_op",
    "arp_spa",
    "arp_tpa",
    "arp_sha",
    "arp_tha",
    "payload",
    "data_hex",
    "trunc",
    "pad",
    "bad_l4_csum",
    "udp_len",
    "tcp_off",
    "zero_l4_csum",
    "ip_opts",
    "ack",
];

/// Parses one packet description (see the module doc).
pub fn parse(desc: &str) -> Result<TestPacket, String> {
    let mut keys = Vec::new();
    for tok in desc.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
        if !KNOWN.contains(&k) {
            return Err(format!("unknown packet key {k:?} in {desc:?}"));
        }
        keys.push((k.to_string(), v.to_string()));
    }
    let keys = Keys(keys);
    let in_port = keys.num_or("in", 1)? as u32;
    let frame = match keys.get("hex") {
        Some(h) => hex(h)?,
        None => build(&keys)?,
    };
    Ok(TestPacket { in_port, frame })
}

fn tcp_flags(s: &str) -> Result<u16, String> {
    if let Ok(n) = num(s) {
        return Ok(n as u16);
    }
    let mut f = 0u16;
    for c in s.chars() {
        f |= match c {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'C' => 0x80,
            'N' => 0x100,
            _ => return Err(format!("bad tcp flag {c}")),
        };
    }
    Ok(f)
}

fn payload(keys: &Keys) -> Result<Vec<u8>, String> {
    // Literal L4 payload bytes (an FTP command: commas cannot appear in a description).
    if let Some(h) = keys.get("data_hex") {
        return hex(h);
    }
    let n = keys.num_or("payload", 8)? as usize;
    Ok((0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(0x41))
        .collect())
}

/// The L4 bytes (header + payload) of an IP packet, checksum computed over `pseudo`.
fn l4(keys: &Keys, proto: u8, v6: bool, src: &[u8], dst: &[u8]) -> Result<Vec<u8>, String> {
    let body = payload(keys)?;
    let mut h = Vec::new();
    let csum_at = match proto {
        6 => {
            let flags = tcp_flags(keys.get("flags").unwrap_or("A"))?;
            let off = keys.num_or("tcp_off", 5)? as u16;
            h.extend_from_slice(&(keys.num_or("tp_src", 1234)? as u16).to_be_bytes());
            h.extend_from_slice(&(keys.num_or("tp_dst", 80)? as u16).to_be_bytes());
            h.extend_from_slice(&(keys.num_or("seq", 1000)? as u32).to_be_bytes());
            let ack = keys.num_or("ack", if flags & 0x10 != 0 { 2000 } else { 0 })? as u32;
            h.extend_from_slice(&ack.to_be_bytes());
            h.extend_from_slice(&((off << 12) | flags).to_be_bytes());
            h.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            Some(16)
        }
        17 => {
            let len = keys.num_or("udp_len", (8 + body.len()) as u64)? as u16;
            h.extend_from_slice(&(keys.num_or("tp_src", 1234)? as u16).to_be_bytes());
            h.extend_from_slice(&(keys.num_or("tp_dst", 53)? as u16).to_be_bytes());
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            Some(6)
        }
        132 => {
            h.extend_from_slice(&(keys.num_or("tp_src", 1234)? as u16).to_be_bytes());
            h.extend_from_slice(&(keys.num_or("tp_dst", 80)? as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            None
        }
        1 | 58 => {
            let (t, c) = if proto == 1 { (8, 0) } else { (128, 0) };
            h.push(keys.num_or("icmp_type", t)? as u8);
            h.push(keys.num_or("icmp_code", c)? as u8);
            h.extend_from_slice(&[0, 0]);
            let ty = h[0];
            if proto == 58 && (ty == 135 || ty == 136) {
                // Neighbor solicitation / advertisement: flags, target, options.
                h.extend_from_slice(&[if ty == 136 { 0x60 } else { 0 }, 0, 0, 0]);
                h.extend_from_slice(&keys.v6("nd_target", "fe80::2")?);
                if let Some(m) = keys.get("nd_sll") {
                    h.extend_from_slice(&[1, 1]);
                    h.extend_from_slice(&mac(m)?);
                }
                if let Some(m) = keys.get("nd_tll") {
                    h.extend_from_slice(&[2, 1]);
                    h.extend_from_slice(&mac(m)?);
                }
            } else {
                h.extend_from_slice(&[0x12, 0x34, 0, 1]);
            }
            Some(2)
        }
        _ => None,
    };
    let nd = proto == 58 && matches!(h[0], 135 | 136);
    if !nd {
        h.extend_from_slice(&body);
    }
    if let Some(at) = csum_at {
        let init = if proto == 1 {
            0
        } else {
            pseudo_sum(src, dst, proto, h.len())
        };
        let mut c = csum(init, &h);
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        if keys.has("zero_l4_csum") {
            c = 0;
        }
        if keys.has("bad_l4_csum") {
            c ^= 0x5a5a;
        }
        h[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let _ = v6;
    Ok(h)
}

fn build(keys: &Keys) -> Result<Vec<u8>, String> {
    let (l3, ethertype): (Vec<u8>, u16) = if keys.has("arp") {
        let mut a = vec![0, 1, 8, 0, 6, 4];
        a.extend_from_slice(&(keys.num_or("arp_op", 1)? as u16).to_be_bytes());
        a.extend_from_slice(&keys.mac("arp_sha", "00:00:00:00:00:01")?);
        a.extend_from_slice(&keys.v4("arp_spa", "10.0.0.1")?);
        a.extend_from_slice(&keys.mac("arp_tha", "00:00:00:00:00:00")?);
        a.extend_from_slice(&keys.v4("arp_tpa", "10.0.0.2")?);
        (a, 0x0806)
    } else if ["ip", "tcp", "udp", "icmp", "sctp"]
        .iter()
        .any(|k| keys.has(k))
    {
        let proto = if keys.has("tcp") {
            6
        } else if keys.has("udp") {
            17
        } else if keys.has("icmp") {
            1
        } else if keys.has("sctp") {
            132
        } else {
            keys.num_or("nw_proto", 253)? as u8
        };
        let src = keys.v4("nw_src", "10.0.0.1")?;
        let dst = keys.v4("nw_dst", "10.0.0.2")?;
        let body = l4(keys, proto, false, &src, &dst)?;
        let opts = keys.num_or("ip_opts", 0)? as usize;
        let ihl = keys.num_or("ihl", 5 + opts as u64 / 4)? as u8;
        let tot = keys.num_or("totlen", (20 + opts + body.len()) as u64)? as u16;
        let mut frag: u16 = match keys.get("frag") {
            None | Some("no") => 0,
            Some("first") => 0x2000,
            Some("later") => 0x0010,
            Some("last") => 0x0020,
            Some(o) => return Err(format!("bad frag {o}")),
        };
        if keys.has("df") {
            frag |= 0x4000;
        }
        let mut h = vec![0x40 | (ihl & 0xf), keys.num_or("nw_tos", 0)? as u8];
        h.extend_from_slice(&tot.to_be_bytes());
        h.extend_from_slice(&(keys.num_or("ip_id", 0x1234)? as u16).to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.push(keys.num_or("nw_ttl", 64)? as u8);
        h.push(proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        // NOPs then an end-of-options byte.
        h.extend((0..opts).map(|i| if i + 1 == opts { 0 } else { 1 }));
        let mut c = csum(0, &h);
        if keys.has("bad_csum") {
            c ^= 0x5a5a;
        }
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(&body);
        (h, 0x0800)
    } else if ["ipv6", "tcp6", "udp6", "icmp6"]
        .iter()
        .any(|k| keys.has(k))
    {
        let proto = if keys.has("tcp6") {
            6
        } else if keys.has("udp6") {
            17
        } else if keys.has("icmp6") {
            58
        } else {
            keys.num_or("nw_proto", 59)? as u8
        };
        let src = keys.v6("ipv6_src", "2001:db8::1")?;
        let dst = keys.v6("ipv6_dst", "2001:db8::2")?;
        let body = l4(keys, proto, true, &src, &dst)?;
        let tc = keys.num_or("nw_tos", 0)? as u32;
        let label = keys.num_or("ipv6_label", 0)? as u32;
        let first = (6u32 << 28) | (tc << 20) | (label & 0xfffff);
        let mut h = first.to_be_bytes().to_vec();
        let plen = keys.num_or("totlen", body.len() as u64)? as u16;
        h.extend_from_slice(&plen.to_be_bytes());
        h.push(proto);
        h.push(keys.num_or("nw_ttl", 64)? as u8);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&body);
        (h, 0x86dd)
    } else {
        (payload(keys)?, keys.num_or("dl_type", 0x88b5)? as u16)
    };
    let mut f = Vec::new();
    f.extend_from_slice(&keys.mac("dl_dst", "00:00:00:00:00:02")?);
    f.extend_from_slice(&keys.mac("dl_src", "00:00:00:00:00:01")?);
    if let Some(vid) = keys.get("vlan") {
        let tci = (num(vid)? as u16 & 0xfff)
            | ((keys.num_or("pcp", 0)? as u16) << 13)
            | ((keys.num_or("cfi", 0)? as u16) << 12);
        f.extend_from_slice(&(keys.num_or("tpid", 0x8100)? as u16).to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    if let Some(vid) = keys.get("vlan2") {
        let tci = (num(vid)? as u16 & 0xfff) | ((keys.num_or("pcp2", 0)? as u16) << 13);
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&l3);
    if let Some(p) = keys.get("pad") {
        f.resize(f.len() + num(p)? as usize, 0);
    }
    if let Some(t) = keys.get("trunc") {
        f.truncate(num(t)? as usize);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_verifies() {
        let p = parse("tcp,nw_src=10.1.2.3,tp_dst=443,flags=SA").unwrap();
        assert_eq!(csum(0, &p.frame[14..34]), 0);
        assert_eq!(p.frame.len(), 14 + 20 + 20 + 8);
    }
}
