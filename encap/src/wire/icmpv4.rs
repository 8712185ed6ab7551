//! ICMPv4 (RFC 792): the common 8-byte header (type, code, checksum, rest of header), the
//! header an error message quotes ([`Packet::quoted_header`]), and the "fragmentation needed"
//! reply a router sends for a too-big packet with DF ([`emit_frag_needed`], RFC 1191).

use core::net::Ipv4Addr;

use super::{WireError, be16, enum_with_unknown, put16};
use crate::checksum;

enum_with_unknown! {
    /// ICMPv4 message type.
    pub enum Icmpv4Type(u8) {
        EchoReply = 0,
        DestUnreachable = 3,
        EchoRequest = 8,
        TimeExceeded = 11,
    }
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type::from(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Echo identifier (meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ.start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// True when the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(0, self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: Icmpv4Type) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT.start, value);
    }

    pub fn set_echo_seq_no(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQ.start, value);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }

    /// Computes the checksum over the whole buffer (the message must span all of it).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::icmpv4(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// Destination-unreachable code "fragmentation needed and DF set" (RFC 792, RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;

/// Is an ICMPv4 type an error that quotes the offending packet (destination unreachable,
/// source quench, redirect, time exceeded, parameter problem)?
pub fn is_error_type(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

/// The header an ICMPv4 error quotes: the offending packet's IPv4 addresses and protocol,
/// and its ports (TCP/UDP/SCTP) or echo identifier (ICMP, in both port fields); 0 when the quote is
/// too short for them or the protocol has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedHeader {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The quoted IPv4 header of an error message (see [`is_error_type`]); `None` for other
    /// types, or when the payload holds no IPv4 header of at least 20 bytes (IHL 5 or more).
    /// Ports are 0 for a quoted later fragment (its data holds none).
    pub fn quoted_header(&self) -> Option<QuotedHeader> {
        let b = self.buffer.as_ref();
        if !is_error_type(*b.get(field::TYPE)?) {
            return None;
        }
        let ip = b.get(field::PAYLOAD)?;
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = (ip[0] & 0x0f) as usize * 4;
        if ihl < 20 {
            return None;
        }
        let protocol = ip[9];
        // A quoted later fragment carries data, not the L4 header: no ports in it.
        let later_fragment = be16(ip, 6) & 0x1fff != 0;
        let (src_port, dst_port) = match protocol {
            _ if later_fragment => (0, 0),
            // TCP, UDP, SCTP: the ports open the header.
            6 | 17 | 132 if ip.len() >= ihl + 4 => (be16(ip, ihl), be16(ip, ihl + 2)),
            1 if ip.len() >= ihl + 8 => (be16(ip, ihl + 4), be16(ip, ihl + 4)),
            _ => (0, 0),
        };
        Some(QuotedHeader {
            src_addr: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst_addr: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            protocol,
            src_port,
            dst_port,
        })
    }
}

/// Builds, into `out` (cleared first), the Ethernet frame of an ICMPv4 "fragmentation needed"
/// (type 3 code 4) answering the IPv4 packet at `frame[l3..l3_end]` (`l3` after the Ethernet
/// header and any VLAN tags, which the reply keeps): Ethernet addresses swapped; IPv4 from the
/// packet's destination to its source, DF, TTL 64, ident 0; the next-hop `mtu` in the ICMP
/// header (RFC 1191); the quote is the packet's IP header plus the first 8 bytes of its data
/// (RFC 792). False, with `out` untouched, when the packet is not an IPv4 packet with DF set
/// that lies inside `frame`.
pub fn emit_frag_needed(
    frame: &[u8],
    l3: usize,
    l3_end: usize,
    mtu: u16,
    out: &mut Vec<u8>,
) -> bool {
    if l3 < 14 || l3_end > frame.len() || l3_end < l3 + 20 {
        return false;
    }
    let ip = &frame[l3..l3_end];
    if ip[0] >> 4 != 4 || be16(ip, 6) & 0x4000 == 0 {
        return false;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let quoted = &ip[..(ihl + 8).min(ip.len())];
    out.clear();
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[0..6]);
    out.extend_from_slice(&frame[12..l3]);
    let h = out.len();
    let total = (20 + HEADER_LEN + quoted.len()) as u16;
    let t = total.to_be_bytes();
    // version/IHL, TOS, total length, ident 0, DF, TTL 64, protocol ICMP, checksum (below)
    out.extend_from_slice(&[0x45, 0, t[0], t[1], 0, 0, 0x40, 0, 64, 1, 0, 0]);
    // From the original destination (the path "router" is the tunnel endpoint behind it).
    out.extend_from_slice(&ip[16..20]);
    out.extend_from_slice(&ip[12..16]);
    let c = checksum::ipv4_header(&out[h..h + 20]);
    put16(out, h + 10, c);
    let i = out.len();
    out.extend_from_slice(&[3, CODE_FRAG_NEEDED, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quoted);
    let c = checksum::icmpv4(&out[i..]);
    put16(out, i + 2, c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    static ECHO_BYTES: [u8; 12] = [
        0x08, // type echo request
        0x00, // code 0
        0x8e, 0xfe, // checksum
        0x12, 0x34, // identifier
        0xab, 0xcd, // sequence number
        0xaa, 0x00, 0x00, 0xff, // payload
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Type::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x8efe);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 0xabcd);
        assert_eq!(p.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Icmpv4Type::EchoRequest);
        p.set_msg_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(0xabcd);
        p.payload_mut().copy_from_slice(&[0xaa, 0x00, 0x00, 0xff]);
        p.fill_checksum();
        assert_eq!(bytes, ECHO_BYTES);
    }

    #[test]
    fn short_message_is_rejected() {
        assert_eq!(
            Packet::new_checked(&ECHO_BYTES[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(Icmpv4Type::from(42), Icmpv4Type::Unknown(42));
    }

    /// Ethernet + IPv4 (DF) + UDP + 8 bytes: the packet too big for a tunnel.
    static TOO_BIG: [u8; 50] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src MAC
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x24, // v4, IHL 5, TOS 0, total length 36
        0x12, 0x34, 0x40, 0x00, // ident 0x1234, DF
        0x40, 0x11, 0x14, 0x93, // TTL 64, UDP, header checksum
        0x0a, 0x00, 0x00, 0x01, // 10.0.0.1
        0x0a, 0x00, 0x00, 0x02, // 10.0.0.2
        0x9c, 0x40, 0x00, 0x35, // UDP 40000 -> 53
        0x00, 0x10, 0x00, 0x00, // length 16, no checksum
        b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', // data (not quoted)
    ];

    /// The reply to `TOO_BIG` advertising MTU 1450.
    static FRAG_NEEDED: [u8; 70] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst MAC: the sender
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src MAC
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x38, // v4, IHL 5, TOS 0, total length 56
        0x00, 0x00, 0x40, 0x00, // ident 0, DF
        0x40, 0x01, 0x26, 0xc3, // TTL 64, ICMP, header checksum
        0x0a, 0x00, 0x00, 0x02, // from the original destination
        0x0a, 0x00, 0x00, 0x01, // to the original source
        0x03, 0x04, 0x5a, 0xcc, // destination unreachable, fragmentation needed, checksum
        0x00, 0x00, 0x05, 0xaa, // unused, next-hop MTU 1450
        0x45, 0x00, 0x00, 0x24, 0x12, 0x34, 0x40, 0x00, // quote: the IP header ...
        0x40, 0x11, 0x14, 0x93, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x02, //
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x10, 0x00, 0x00, // ... and the first 8 data bytes
    ];

    #[test]
    fn test_construct_frag_needed() {
        let mut out = Vec::new();
        assert!(emit_frag_needed(&TOO_BIG, 14, 50, 1450, &mut out));
        assert_eq!(out, FRAG_NEEDED);
        let icmp = Packet::new_checked(&out[34..]).unwrap();
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn test_deconstruct_quoted_header() {
        let p = Packet::new_checked(&FRAG_NEEDED[34..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Type::DestUnreachable);
        assert_eq!(p.msg_code(), CODE_FRAG_NEEDED);
        assert_eq!(
            p.quoted_header(),
            Some(QuotedHeader {
                src_addr: Ipv4Addr::new(10, 0, 0, 1),
                dst_addr: Ipv4Addr::new(10, 0, 0, 2),
                protocol: 17,
                src_port: 40000,
                dst_port: 53,
            })
        );
        // Not an error type, a quote too short for ports, too short for an IP header.
        assert_eq!(
            Packet::new_checked(&ECHO_BYTES[..])
                .unwrap()
                .quoted_header(),
            None
        );
        let q = Packet::new_checked(&FRAG_NEEDED[34..34 + 8 + 22])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!((q.protocol, q.src_port, q.dst_port), (17, 0, 0));
        assert_eq!(
            Packet::new_checked(&FRAG_NEEDED[34..34 + 8 + 19])
                .unwrap()
                .quoted_header(),
            None
        );
        // A quoted later fragment (offset 8 bytes): addresses, but no ports in its data.
        let mut later = FRAG_NEEDED;
        later[34 + 8 + 6..34 + 8 + 8].copy_from_slice(&[0x40, 0x01]);
        let q = Packet::new_checked(&later[34..])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!(
            (q.src_addr, q.src_port, q.dst_port),
            (Ipv4Addr::new(10, 0, 0, 1), 0, 0)
        );
        // IHL below 5: no IPv4 header.
        let mut short_ihl = FRAG_NEEDED;
        short_ihl[34 + 8] = 0x44;
        assert_eq!(
            Packet::new_checked(&short_ihl[34..])
                .unwrap()
                .quoted_header(),
            None
        );
    }

    #[test]
    fn frag_needed_refusals() {
        let mut out = vec![7];
        let mut no_df = TOO_BIG;
        no_df[20] = 0;
        assert!(!emit_frag_needed(&no_df, 14, 50, 1450, &mut out));
        assert!(!emit_frag_needed(&TOO_BIG, 14, 51, 1450, &mut out));
        assert!(!emit_frag_needed(&TOO_BIG, 14, 33, 1450, &mut out));
        let mut v6 = TOO_BIG;
        v6[14] = 0x65;
        assert!(!emit_frag_needed(&v6, 14, 50, 1450, &mut out));
        assert_eq!(out, [7]);
        // A quote shorter than header + 8 when the packet is shorter.
        assert!(emit_frag_needed(&TOO_BIG, 14, 38, 1450, &mut out));
        assert_eq!(out.len(), 14 + 20 + 8 + 24);
    }
}
