//! IEEE 802.1Q / 802.1ad VLAN tag: the 4 bytes after an EtherType of 0x8100 or 0x88a8.
//!
//! The view covers the tag control information (TCI) and the EtherType that follows it; a frame
//! with two tags (QinQ) is two views in a row.

use super::{EtherType, WireError, be16, put16};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Length of one tag (TCI + inner EtherType).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of one VLAN tag.
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

    /// The whole 16-bit tag control information.
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI.start)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (formerly CFI).
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType after this tag.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_tci(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::TCI.start, value);
    }

    pub fn set_ethertype(&mut self, value: EtherType) {
        put16(self.buffer.as_mut(), field::ETHERTYPE.start, value.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// One VLAN tag as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanRepr {
    pub tci: u16,
    pub ethertype: EtherType,
}

impl VlanRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<VlanRepr, WireError> {
        packet.check_len()?;
        Ok(VlanRepr {
            tci: packet.tci(),
            ethertype: packet.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(self.tci);
        packet.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ethernet::Frame;
    use super::*;

    /// An Ethernet frame with two tags: S-tag VID 100 PCP 5, C-tag VID 10, then IPv4.
    static QINQ_BYTES: [u8; 22] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination broadcast
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source
        0x88, 0xa8, // EtherType 802.1ad
        0xa0, 0x64, // TCI: PCP 5, DEI 0, VID 100
        0x81, 0x00, // EtherType 802.1Q
        0x00, 0x0a, // TCI: PCP 0, VID 10
        0x08, 0x00, // EtherType IPv4
    ];

    #[test]
    fn test_deconstruct() {
        let eth = Frame::new_checked(&QINQ_BYTES[..]).unwrap();
        assert_eq!(eth.ethertype(), EtherType::QinQ);
        let outer = Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(outer.pcp(), 5);
        assert!(!outer.dei());
        assert_eq!(outer.vid(), 100);
        assert_eq!(outer.ethertype(), EtherType::Vlan);
        let inner = Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.vid(), 10);
        assert_eq!(inner.ethertype(), EtherType::Ipv4);
        assert!(inner.payload().is_empty());
        assert_eq!(
            VlanRepr::parse(&inner).unwrap(),
            VlanRepr {
                tci: 10,
                ethertype: EtherType::Ipv4
            }
        );
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 8];
        let mut outer = Packet::new_unchecked(&mut bytes[..]);
        VlanRepr {
            tci: 0xa064,
            ethertype: EtherType::Vlan,
        }
        .emit(&mut outer);
        let mut inner = Packet::new_unchecked(outer.payload_mut());
        VlanRepr {
            tci: 10,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut inner);
        assert_eq!(bytes, QINQ_BYTES[14..]);
    }

    #[test]
    fn short_tag_is_rejected() {
        assert_eq!(
            Packet::new_checked(&[0u8; 3][..]).unwrap_err(),
            WireError::Truncated
        );
    }
}
