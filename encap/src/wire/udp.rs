//! UDP header (RFC 768).

use core::net::Ipv4Addr;

use super::{IpProtocol, WireError, be16, put16};
use crate::checksum;

mod field {
    use core::ops::{Range, RangeFrom};
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

pub const HEADER_LEN: usize = field::PAYLOAD.start;
pub const SRC_PORT_OFFSET: usize = field::SRC_PORT.start;
pub const DST_PORT_OFFSET: usize = field::DST_PORT.start;
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A view of a UDP datagram.
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

    /// `Truncated` when shorter than 8 bytes or than the length field; `Malformed` when the
    /// length field is below 8.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let field_len = self.len() as usize;
        if field_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len < field_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// True when the checksum is right or absent (0) over IPv4.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let seg = &self.buffer.as_ref()[..self.len() as usize];
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Udp.into(), seg.len() as u16);
        checksum::fold(checksum::sum(pseudo, seg)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    pub fn set_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the IPv4 checksum over header and payload (0 is sent as 0xffff).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let end = self.len() as usize;
        let c = checksum::l4_v4(
            src,
            dst,
            IpProtocol::Udp.into(),
            &self.buffer.as_ref()[..end],
        );
        self.set_checksum(checksum::udp_nonzero(c));
    }
}

/// The UDP header as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<UdpRepr, WireError> {
        packet.check_len()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for `payload_len` bytes of payload, with checksum 0 ("none").
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, payload_len: usize) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((HEADER_LEN + payload_len) as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DATAGRAM_BYTES: [u8; 12] = [
        0x30, 0x39, // source port 12345
        0x00, 0x35, // destination port 53
        0x00, 0x0c, // length 12
        0x1d, 0xc8, // checksum (pseudo-header 10.0.0.1 -> 10.0.0.2)
        0xde, 0xad, 0xbe, 0xef, // payload
    ];
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&DATAGRAM_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 12345);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x1dc8);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(DST, DST));
        assert_eq!(
            UdpRepr::parse(&p).unwrap(),
            UdpRepr {
                src_port: 12345,
                dst_port: 53
            }
        );
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        UdpRepr {
            src_port: 12345,
            dst_port: 53,
        }
        .emit(&mut p, 4);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(bytes, DATAGRAM_BYTES);
    }

    #[test]
    fn bad_lengths_are_named() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM_BYTES[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&DATAGRAM_BYTES[..11]).unwrap_err(),
            WireError::Truncated
        );
        let mut short = DATAGRAM_BYTES;
        short[5] = 7;
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            WireError::Malformed
        );
    }
}
