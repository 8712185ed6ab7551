//! Geneve (RFC 8926) as the switch runs it: like VXLAN, the tunnel port is a kernel UDP socket
//! and the switch handles only the Geneve header in front of each inner Ethernet frame.
//!
//! ```text
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//! ```
//!
//! Received: version 0, protocol type 0x6558 (Transparent Ethernet Bridging), options skipped
//! (their length is `Opt Len` × 4 bytes). The switch understands no option, so a header with
//! the C bit (a critical option present) is refused, as RFC 8926 §3.5 asks of an endpoint that
//! does not understand one; so is a control packet (the O bit), whose payload a tunnel
//! endpoint must not forward (§3.4) and which the switch has no use for. Sent: the 8-byte
//! header without options, O and C clear.

/// IANA-assigned Geneve UDP port.
pub const GENEVE_PORT: u16 = 6081;
/// The fixed part of the header; options follow it.
pub const HEADER_LEN: usize = 8;
/// The longest header: `Opt Len` is 6 bits of 4-byte words.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + 63 * 4;
/// The shortest inner frame accepted: an Ethernet header.
pub const MIN_INNER_LEN: usize = 14;
/// Transparent Ethernet Bridging: the inner frame is Ethernet.
pub const PROTO_ETHERNET: u16 = 0x6558;
/// The O bit: an OAM frame.
pub const FLAG_OAM: u8 = 0x80;
/// The C bit: critical options present.
pub const FLAG_CRITICAL: u8 = 0x40;

/// Why a datagram's Geneve header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeneveError {
    #[error("datagram shorter than its Geneve header")]
    Short,
    #[error("Geneve version {0}: only version 0 is defined")]
    Version(u8),
    #[error("Geneve protocol type {0:#06x}: only Ethernet (0x6558) is carried")]
    Protocol(u16),
    #[error("Geneve critical options present, none understood")]
    Critical,
    #[error("Geneve control packet (O bit): its payload is not forwarded")]
    Control,
}

/// Checks the Geneve header a UDP payload starts with; returns the VNI and the header's length
/// with its options (the inner frame starts there). The inner frame's length is the caller's to
/// check.
#[inline]
pub fn check_header(payload: &[u8]) -> Result<(u32, usize), GeneveError> {
    let h = payload.get(..HEADER_LEN).ok_or(GeneveError::Short)?;
    let version = h[0] >> 6;
    if version != 0 {
        return Err(GeneveError::Version(version));
    }
    let len = HEADER_LEN + usize::from(h[0] & 0x3f) * 4;
    if payload.len() < len {
        return Err(GeneveError::Short);
    }
    let proto = u16::from_be_bytes([h[2], h[3]]);
    if proto != PROTO_ETHERNET {
        return Err(GeneveError::Protocol(proto));
    }
    if h[1] & FLAG_CRITICAL != 0 {
        return Err(GeneveError::Critical);
    }
    if h[1] & FLAG_OAM != 0 {
        return Err(GeneveError::Control);
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    Ok((vni, len))
}

/// The Geneve header of one VNI as pushed in front of an inner frame: no options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header([u8; HEADER_LEN]);

impl Header {
    /// The header for `vni` (its low 24 bits).
    #[inline]
    pub fn new(vni: u32) -> Header {
        let v = (vni & 0x00ff_ffff).to_be_bytes();
        let p = PROTO_ETHERNET.to_be_bytes();
        Header([0, 0, p[0], p[1], v[1], v[2], v[3], 0])
    }

    /// The 8 bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header::new(0x12_3456);
        assert_eq!(h.as_bytes(), &[0, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0]);
        let mut d = h.as_bytes().to_vec();
        d.extend_from_slice(&[0xaa; 14]);
        assert_eq!(check_header(&d), Ok((0x12_3456, 8)));
        // Only the low 24 bits of the VNI.
        assert_eq!(Header::new(0xff12_3456), h);
    }

    #[test]
    fn options_are_skipped_unless_critical() {
        // Two words of options (a class, a type, a length of 1 word, one word of data).
        let mut d = vec![0x02, 0x00, 0x65, 0x58, 0, 0, 7, 0];
        d.extend_from_slice(&[0x01, 0x02, 0x03, 0x01, 9, 9, 9, 9]);
        d.extend_from_slice(&[0xee; 14]);
        assert_eq!(check_header(&d), Ok((7, 16)));
        // The same with the C bit: refused.
        d[1] = FLAG_CRITICAL;
        assert_eq!(check_header(&d), Err(GeneveError::Critical));
        // The O bit: a control packet, not forwarded.
        d[1] = FLAG_OAM;
        assert_eq!(check_header(&d), Err(GeneveError::Control));
        // Options longer than the datagram.
        d[0] = 0x3f;
        assert_eq!(check_header(&d), Err(GeneveError::Short));
    }

    #[test]
    fn refusals() {
        assert_eq!(check_header(&[0; 7]), Err(GeneveError::Short));
        let good = Header::new(1).as_bytes().to_vec();
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert_eq!(check_header(&v1), Err(GeneveError::Version(1)));
        let mut ipv4 = good.clone();
        ipv4[2..4].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(check_header(&ipv4), Err(GeneveError::Protocol(0x0800)));
        // Never out of bounds, whatever the bytes.
        for len in 0..=16 {
            for first in [0x00, 0x01, 0x3f, 0xff] {
                let mut d = vec![0u8; len];
                if let Some(b) = d.first_mut() {
                    *b = first;
                }
                let _ = check_header(&d);
            }
        }
    }
}
