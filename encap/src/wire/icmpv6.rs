//! ICMPv6 (RFC 4443): the common header, the header an error message quotes
//! ([`Packet::quoted_header`]) and the "Packet Too Big" reply for a packet too large for a
//! tunnel ([`emit_packet_too_big`]). Its checksum covers the IPv6 pseudo-header.

use core::net::Ipv6Addr;

use super::{IpProtocol, WireError, be16, enum_with_unknown, put16};
use crate::checksum;

enum_with_unknown! {
    /// ICMPv6 message type.
    pub enum Icmpv6Type(u8) {
        DestUnreachable = 1,
        PacketTooBig = 2,
        TimeExceeded = 3,
        EchoRequest = 128,
        EchoReply = 129,
        RouterSolicit = 133,
        RouterAdvert = 134,
        NeighborSolicit = 135,
        NeighborAdvert = 136,
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

/// Length of the header (type, code, checksum, 4 bytes of message body).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of an ICMPv6 message.
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

    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type::from(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ.start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// True when the checksum (with the pseudo-header of `src`/`dst`) is right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let pseudo =
            checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6.into(), b.len() as u32);
        checksum::fold(checksum::sum(pseudo, b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: Icmpv6Type) {
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

    /// Computes the checksum over the whole buffer with the pseudo-header of `src`/`dst`.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::l4_v6(src, dst, IpProtocol::Icmpv6.into(), self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// Is an ICMPv6 type an error that quotes the offending packet (destination unreachable,
/// packet too big, time exceeded, parameter problem: RFC 4443)?
pub fn is_error_type(msg_type: u8) -> bool {
    matches!(msg_type, 1..=4)
}

/// Extension headers a quote may carry before the upper-layer header, at most (a longer chain
/// is not followed: the quote then has no ports).
const MAX_QUOTED_EXTENSIONS: usize = 8;

/// The header an ICMPv6 error quotes: the offending packet's addresses, its upper-layer
/// protocol (past any extension headers), and where that protocol's header starts in the
/// quote with its ports (TCP/UDP/SCTP) or echo identifier (ICMPv6 echo, in both port fields); ports
/// 0 when the quote is too short for them or the protocol has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedHeader {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the quoted IPv6 header.
    pub l4_offset: usize,
    pub src_port: u16,
    pub dst_port: u16,
    /// False for a quoted later fragment: what follows its headers is data, not the
    /// upper-layer header (ports are then 0).
    pub first_fragment: bool,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The quoted IPv6 header of an error message (see [`is_error_type`]); `None` for other
    /// types, or when the payload holds no whole IPv6 header.
    pub fn quoted_header(&self) -> Option<QuotedHeader> {
        let b = self.buffer.as_ref();
        if !is_error_type(*b.get(field::TYPE)?) {
            return None;
        }
        let ip = b.get(field::PAYLOAD)?;
        if ip.len() < 40 || ip[0] >> 4 != 6 {
            return None;
        }
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[at..at + 16]);
            Ipv6Addr::from(a)
        };
        let (mut next, mut at) = (ip[6], 40usize);
        let mut first_fragment = true;
        for _ in 0..MAX_QUOTED_EXTENSIONS {
            let len = match next {
                // Hop-by-hop, routing, destination options: (length + 1) * 8 bytes.
                0 | 43 | 60 => (usize::from(*ip.get(at + 1)?) + 1) * 8,
                // Fragment: 8 bytes; a later fragment (offset ≠ 0) carries no upper-layer
                // header, so no ports.
                44 => {
                    let offset = u16::from_be_bytes([*ip.get(at + 2)?, *ip.get(at + 3)?]) >> 3;
                    first_fragment &= offset == 0;
                    8
                }
                // Authentication header: (length + 2) * 4 bytes.
                51 => (usize::from(*ip.get(at + 1)?) + 2) * 4,
                _ => break,
            };
            next = *ip.get(at)?;
            at += len;
        }
        let (src_port, dst_port) = match next {
            _ if !first_fragment => (0, 0),
            // TCP, UDP, SCTP: the ports open the header.
            6 | 17 | 132 if ip.len() >= at + 4 => (be16(ip, at), be16(ip, at + 2)),
            58 if ip.len() >= at + 8 && matches!(ip[at], 128 | 129) => {
                (be16(ip, at + 4), be16(ip, at + 4))
            }
            _ => (0, 0),
        };
        Some(QuotedHeader {
            src_addr: addr(8),
            dst_addr: addr(24),
            protocol: next,
            l4_offset: at,
            src_port,
            dst_port,
            first_fragment,
        })
    }
}

/// The smallest MTU an IPv6 link may have (RFC 8200): a Packet Too Big never advertises less,
/// and the whole error message fits in it.
pub const MIN_MTU: u32 = 1280;

/// Builds, into `out` (cleared first), the Ethernet frame of an ICMPv6 "Packet Too Big" (type 2,
/// RFC 4443 3.2) answering the IPv6 packet at `frame[l3..l3_end]` (`l3` after the Ethernet
/// header and any VLAN tags, which the reply keeps), as [`super::icmpv4::emit_frag_needed`]
/// does for IPv4: Ethernet addresses swapped; IPv6 from the packet's destination to its
/// source, hop limit 64; `mtu` (raised to [`MIN_MTU`]) in the message; the quote is as much of
/// the packet as keeps the reply within [`MIN_MTU`]; the checksum covers the pseudo-header.
/// False, with `out` untouched, when the packet is not a whole IPv6 header inside `frame`, or
/// its addresses cannot be swapped (an unspecified or multicast source, a multicast
/// destination: no unicast address to answer from). Whether the packet is itself an ICMPv6
/// error (never answered, RFC 4443 2.4) is the caller's to check: it needs the extension
/// headers walked.
pub fn emit_packet_too_big(
    frame: &[u8],
    l3: usize,
    l3_end: usize,
    mtu: u32,
    out: &mut Vec<u8>,
) -> bool {
    if l3 < 14 || l3_end > frame.len() || l3_end < l3 + 40 {
        return false;
    }
    let ip = &frame[l3..l3_end];
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let (src, dst) = (addr(8), addr(24));
    if ip[0] >> 4 != 6 || src.is_unspecified() || src.is_multicast() || dst.is_multicast() {
        return false;
    }
    let quoted = &ip[..ip.len().min(MIN_MTU as usize - 40 - HEADER_LEN)];
    out.clear();
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[0..6]);
    out.extend_from_slice(&frame[12..l3]);
    let payload_len = ((HEADER_LEN + quoted.len()) as u16).to_be_bytes();
    // version 6, traffic class and flow label 0, payload length, next header ICMPv6, hop limit
    out.extend_from_slice(&[0x60, 0, 0, 0, payload_len[0], payload_len[1], 58, 64]);
    // From the original destination (the path "router" is the tunnel endpoint behind it).
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&src.octets());
    let i = out.len();
    out.extend_from_slice(&[Icmpv6Type::PacketTooBig.into(), 0, 0, 0]);
    out.extend_from_slice(&mtu.max(MIN_MTU).to_be_bytes());
    out.extend_from_slice(quoted);
    let c = checksum::l4_v6(&dst, &src, IpProtocol::Icmpv6.into(), &out[i..]);
    put16(out, i + 2, c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    static ECHO_BYTES: [u8; 8] = [
        0x80, // type echo request (128)
        0x00, // code
        0x73, 0x83, // checksum (pseudo-header fd00::1 -> fd00::2)
        0x12, 0x34, // identifier
        0x00, 0x01, // sequence number
    ];

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
    }

    #[test]
    fn test_deconstruct() {
        let (src, dst) = addrs();
        let p = Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Type::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &"fd00::3".parse().unwrap()));
    }

    #[test]
    fn test_construct() {
        let (src, dst) = addrs();
        let mut bytes = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Icmpv6Type::EchoRequest);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(1);
        p.fill_checksum(&src, &dst);
        assert_eq!(bytes, ECHO_BYTES);
    }

    #[test]
    fn an_error_quotes_addresses_protocol_and_ports_past_extension_headers() {
        let (src, dst) = addrs();
        // Packet too big (type 2), quoting a UDP datagram behind a destination-options header.
        let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00];
        let mut ip = vec![0x60, 0, 0, 0, 0, 16, 60, 64];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest options: next UDP, 8 bytes
        ip.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]); // UDP 12345 -> 53
        m.extend_from_slice(&ip);
        let q = Packet::new_checked(&m[..])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!((q.src_addr, q.dst_addr), (src, dst));
        assert_eq!((q.protocol, q.l4_offset), (17, 48));
        assert_eq!((q.src_port, q.dst_port), (12345, 53));
        // The same quote as a later fragment (fragment header, offset 8): no ports.
        let mut frag = m.clone();
        frag[8 + 6] = 44;
        frag[8 + 40..8 + 48].copy_from_slice(&[17, 0, 0, 8, 0, 0, 0, 1]);
        let q = Packet::new_checked(&frag[..])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!((q.protocol, q.src_port, q.dst_port), (17, 0, 0));
        frag[8 + 43] = 0; // offset 0: the first fragment, ports read
        let q = Packet::new_checked(&frag[..])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!((q.src_port, q.dst_port), (12345, 53));
        // Cut inside the extension header: no ports, no panic.
        let q = Packet::new_checked(&m[..8 + 44])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!((q.src_port, q.dst_port), (0, 0));
        // Not an error, or no whole IPv6 header: nothing.
        assert!(
            Packet::new_checked(&ECHO_BYTES[..])
                .unwrap()
                .quoted_header()
                .is_none()
        );
        assert!(
            Packet::new_checked(&m[..8 + 39])
                .unwrap()
                .quoted_header()
                .is_none()
        );
    }

    #[test]
    fn an_error_quoting_sctp_gives_its_ports() {
        // Conntrack relates the error to an SCTP connection (and NAT rewrites the quote) by
        // these ports, which open the SCTP common header as they open TCP's and UDP's.
        let (src, dst) = addrs();
        let mut m = vec![1u8, 4, 0, 0, 0, 0, 0, 0]; // destination unreachable, port
        let mut ip = vec![0x60, 0, 0, 0, 0, 12, 132, 64];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[0x9c, 0x40, 0x23, 0x28, 1, 2, 3, 4, 0, 0, 0, 0]); // 40000 -> 9000
        m.extend_from_slice(&ip);
        let q = Packet::new_checked(&m[..])
            .unwrap()
            .quoted_header()
            .unwrap();
        assert_eq!((q.protocol, q.l4_offset), (132, 40));
        assert_eq!((q.src_port, q.dst_port), (40000, 9000));
    }

    #[test]
    fn short_message_is_rejected() {
        assert_eq!(
            Packet::new_checked(&ECHO_BYTES[..7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn packet_too_big_answers_from_the_destination_quoting_within_1280_bytes() {
        let (src, dst) = addrs();
        let big = crate::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .vlan(7)
            .ipv6(src, dst)
            .udp(40000, 53)
            .payload(&[0x5a; 1500])
            .build();
        let l3 = 18;
        let mut out = Vec::new();
        assert!(emit_packet_too_big(&big, l3, big.len(), 1450, &mut out));
        assert_eq!(out.len(), l3 + 1280, "the reply is a 1280-byte IPv6 packet");
        assert_eq!(&out[0..6], &big[6..12]);
        assert_eq!(&out[6..12], &big[0..6]);
        assert_eq!(&out[12..18], &big[12..18], "the VLAN tag is kept");
        let ip = &out[l3..];
        assert_eq!((ip[0] >> 4, u16::from_be_bytes([ip[4], ip[5]])), (6, 1240));
        assert_eq!((ip[6], ip[7]), (58, 64));
        assert_eq!(&ip[8..24], &dst.octets(), "from the original destination");
        assert_eq!(&ip[24..40], &src.octets());
        let p = Packet::new_checked(&ip[40..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (Icmpv6Type::PacketTooBig, 0));
        assert_eq!(&ip[44..48], &1450u32.to_be_bytes());
        assert!(p.verify_checksum(&dst, &src));
        assert_eq!(p.payload(), &big[l3..l3 + 1232]);
        let q = p.quoted_header().unwrap();
        assert_eq!((q.src_addr, q.dst_addr, q.dst_port), (src, dst, 53));

        // A small packet is quoted whole; the MTU is never below 1280.
        let small = crate::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst)
            .udp(40000, 53)
            .payload(b"hi")
            .build();
        assert!(emit_packet_too_big(&small, 14, small.len(), 1000, &mut out));
        assert_eq!(out.len(), 14 + 40 + 8 + small.len() - 14);
        assert_eq!(&out[14 + 44..14 + 48], &MIN_MTU.to_be_bytes());
        let p = Packet::new_checked(&out[54..]).unwrap();
        assert!(p.verify_checksum(&dst, &src));

        // Nothing to answer from or to: out untouched.
        out.clear();
        let mut refused = |f: &[u8], end: usize| !emit_packet_too_big(f, 14, end, 1450, &mut out);
        let mut mcast = small.clone();
        mcast[14 + 24] = 0xff;
        assert!(refused(&mcast, small.len()));
        let mut unspecified = small.clone();
        unspecified[14 + 8..14 + 24].fill(0);
        assert!(refused(&unspecified, small.len()));
        assert!(refused(&small, small.len() + 1));
        assert!(out.is_empty());
    }
}
