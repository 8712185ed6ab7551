//! IPv4 header (RFC 791), options included.

use core::net::Ipv4Addr;

use super::{IpProtocol, WireError, be16, be32, put16, put32};
use crate::checksum;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;
/// Byte offset of the header checksum (for incremental updates on a frame).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;
pub const SRC_ADDR_OFFSET: usize = field::SRC_ADDR.start;
pub const DST_ADDR_OFFSET: usize = field::DST_ADDR.start;
pub const TTL_OFFSET: usize = field::TTL;
pub const TOS_OFFSET: usize = field::TOS;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
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

    /// `Truncated` when the buffer is shorter than 20 bytes, the header length or the total
    /// length; `Malformed` when the version is not 4, IHL < 5 or total length < header length.
    /// The buffer may be longer than the total length (Ethernet padding).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = self.header_len() as usize;
        let total_len = self.total_len() as usize;
        if header_len < MIN_HEADER_LEN || total_len < header_len {
            return Err(WireError::Malformed);
        }
        if len < header_len || len < total_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The whole TOS byte (DSCP << 2 | ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN.start)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FRAG_OFFSET_MASK) << 3
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buffer.as_ref(), field::SRC_ADDR.start))
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buffer.as_ref(), field::DST_ADDR.start))
    }

    /// The option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len() as usize]
    }

    /// True when the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(
            0,
            &self.buffer.as_ref()[..self.header_len() as usize],
        )) == 0xffff
    }

    /// The payload, bounded by the total length (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) & 0x0f);
    }

    pub fn set_tos(&mut self, value: u8) {
        self.buffer.as_mut()[field::TOS] = value;
    }

    pub fn set_total_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::TOTAL_LEN.start, value);
    }

    pub fn set_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::IDENT.start, value);
    }

    /// Sets DF, MF and the fragment offset (in bytes, a multiple of 8) at once.
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        put16(self.buffer.as_mut(), field::FLAGS_FRAG.start, v);
    }

    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        put32(self.buffer.as_mut(), field::SRC_ADDR.start, value.into());
    }

    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        put32(self.buffer.as_mut(), field::DST_ADDR.start, value.into());
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len() as usize;
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// Recomputes the header checksum over the whole header (options included).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len() as usize;
        let c = checksum::ipv4_header(&self.buffer.as_ref()[..len]);
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len() as usize, self.total_len() as usize);
        &mut self.buffer.as_mut()[start..end]
    }
}

/// An IPv4 header without options, as plain values (DF set, not a fragment, ident 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    pub payload_len: usize,
    pub ttl: u8,
    pub tos: u8,
}

impl Ipv4Repr {
    /// Parses a checked packet. Options are skipped, fragments and bad checksums are `Malformed`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        if packet.more_frags() || packet.frag_offset() != 0 || !packet.verify_checksum() {
            return Err(WireError::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len() as usize,
            ttl: packet.ttl(),
            tos: packet.tos(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes a 20-byte header with DF set and a valid checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_and_header_len(MIN_HEADER_LEN as u8);
        packet.set_tos(self.tos);
        packet.set_total_len((MIN_HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        packet.set_frag(true, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 with one 4-byte option (router alert), UDP, 4 payload bytes, 2 bytes Ethernet padding.
    static PACKET_BYTES: [u8; 30] = [
        0x46, // version 4, IHL 6 (24 bytes)
        0xb8, // TOS: DSCP 46 (EF), ECN 0
        0x00, 0x1c, // total length 28
        0x12, 0x34, // identification
        0x40, 0x00, // flags DF, fragment offset 0
        0x40, // TTL 64
        0x11, // protocol UDP
        0x7e, 0xde, // header checksum
        0x0a, 0x00, 0x00, 0x01, // source 10.0.0.1
        0x0a, 0x00, 0x00, 0x02, // destination 10.0.0.2
        0x94, 0x04, 0x00, 0x00, // option: router alert
        0xde, 0xad, 0xbe, 0xef, // payload
        0x00, 0x00, // padding beyond total length
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.checksum(), 0x7ede);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 30];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_version_and_header_len(24);
        p.set_tos(0xb8);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_frag(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(IpProtocol::Udp);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.options_mut().copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 1, 1),
            dst_addr: Ipv4Addr::new(192, 168, 1, 2),
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 3,
            tos: 0,
        };
        let mut bytes = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        repr.emit(&mut p);
        assert!(p.verify_checksum());
        assert_eq!(
            Ipv4Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap(),
            repr
        );
    }

    #[test]
    fn bad_headers_are_named() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&PACKET_BYTES[..19]), Err(WireError::Truncated));
        assert_eq!(check(&PACKET_BYTES[..27]), Err(WireError::Truncated)); // total len 28
        let mut v6 = PACKET_BYTES;
        v6[0] = 0x66;
        assert_eq!(check(&v6), Err(WireError::Malformed));
        let mut ihl4 = PACKET_BYTES;
        ihl4[0] = 0x44;
        assert_eq!(check(&ihl4), Err(WireError::Malformed));
        let mut short_total = PACKET_BYTES;
        short_total[3] = 20; // below the 24-byte header
        assert_eq!(check(&short_total), Err(WireError::Malformed));
    }
}
