//! VXLAN header (RFC 7348 section 5): 8 bytes after the outer UDP header.
//!
//! ```text
//! |R|R|R|R|I|R|R|R|            Reserved (24 bits)                 |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```

use super::{WireError, be32, put32};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const FLAGS: usize = 0;
    pub const VNI_RESERVED: Range<usize> = 4..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// The "I" flag: the VNI is valid. RFC 7348 requires it set.
pub const FLAG_VNI_VALID: u8 = 0x08;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// A view of a VXLAN header and the inner frame after it.
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

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VNI_RESERVED.start) >> 8
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte and zeroes the reserved bytes after it.
    pub fn set_flags(&mut self, value: u8) {
        let b = self.buffer.as_mut();
        b[field::FLAGS] = value;
        b[1..4].fill(0);
    }

    /// Sets the VNI (low 24 bits of `value`) and zeroes the reserved byte after it.
    pub fn set_vni(&mut self, value: u32) {
        put32(
            self.buffer.as_mut(),
            field::VNI_RESERVED.start,
            (value & VNI_MAX) << 8,
        );
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The VXLAN header as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanRepr {
    pub vni: u32,
}

impl VxlanRepr {
    /// Parses a header with the I flag set; a clear I flag is `Malformed`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<VxlanRepr, WireError> {
        packet.check_len()?;
        if packet.flags() & FLAG_VNI_VALID == 0 {
            return Err(WireError::Malformed);
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_VNI_VALID);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HEADER_BYTES: [u8; 10] = [
        0x08, // flags: I
        0x00, 0x00, 0x00, // reserved
        0x12, 0x34, 0x56, // VNI 0x123456
        0x00, // reserved
        0xaa, 0xbb, // start of the inner frame
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&HEADER_BYTES[..]).unwrap();
        assert_eq!(p.flags(), FLAG_VNI_VALID);
        assert_eq!(p.vni(), 0x123456);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert_eq!(VxlanRepr::parse(&p).unwrap(), VxlanRepr { vni: 0x123456 });
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0xffu8; 10];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        VxlanRepr { vni: 0x123456 }.emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, HEADER_BYTES);
    }

    #[test]
    fn missing_i_flag_and_short_header() {
        let mut no_i = HEADER_BYTES;
        no_i[0] = 0;
        let p = Packet::new_checked(&no_i[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&p).unwrap_err(), WireError::Malformed);
        assert_eq!(
            Packet::new_checked(&HEADER_BYTES[..7]).unwrap_err(),
            WireError::Truncated
        );
    }
}
