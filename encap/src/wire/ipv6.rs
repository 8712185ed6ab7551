//! IPv6 fixed header (RFC 8200) and a walker over the extension headers a switch must skip to
//! reach the transport header: hop-by-hop, routing, fragment and destination options.

use core::net::Ipv6Addr;

use super::{IpProtocol, WireError, be16, be32, put16, put32};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
pub const SRC_ADDR_OFFSET: usize = field::SRC_ADDR.start;
pub const DST_ADDR_OFFSET: usize = field::DST_ADDR.start;
pub const HOP_LIMIT_OFFSET: usize = field::HOP_LIMIT;

/// A view of an IPv6 packet.
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

    /// `Truncated` when the buffer is shorter than 40 bytes plus the payload length,
    /// `Malformed` when the version is not 6. Trailing bytes (padding) are allowed.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::Malformed);
        }
        if len < HEADER_LEN + self.payload_len() as usize {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    pub fn traffic_class(&self) -> u8 {
        (be32(self.buffer.as_ref(), field::VER_TC_FLOW.start) >> 20) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Everything after the fixed header, bounded by the payload length (extension headers
    /// included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label at once.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0x000f_ffff);
        put32(self.buffer.as_mut(), field::VER_TC_FLOW.start, v);
    }

    pub fn set_payload_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN.start, value);
    }

    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.into();
    }

    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    pub fn set_src_addr(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    pub fn set_dst_addr(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Where the extension-header chain ends: the upper-layer protocol, its offset from the start
/// of the IPv6 payload, and what a fragment header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header, relative to the start of the IPv6 payload.
    pub offset: usize,
    /// A fragment header was present.
    pub fragment: bool,
    /// ... and its offset was not zero (not the first fragment).
    pub later_fragment: bool,
    /// ... and its identification (0 without a fragment header): with the addresses, it
    /// names the datagram the fragment belongs to (RFC 8200 §4.5).
    pub fragment_id: u32,
}

/// Skips hop-by-hop, routing, fragment and destination-options headers in `payload` (the bytes
/// after the fixed header), starting with `next_header`. `Truncated` when a header runs past the
/// end of `payload`. The walk stops at a later fragment: what follows is not a header.
pub fn skip_extension_headers(
    payload: &[u8],
    mut next_header: IpProtocol,
) -> Result<UpperLayer, WireError> {
    let mut offset = 0usize;
    let mut fragment = false;
    let mut later_fragment = false;
    let mut fragment_id = 0;
    while next_header.is_ipv6_extension() {
        let rest = payload.get(offset..).unwrap_or(&[]);
        if rest.len() < 8 {
            return Err(WireError::Truncated);
        }
        let len = if next_header == IpProtocol::Ipv6Frag {
            // Fragment header: fixed 8 bytes; offset in bits 3.. of bytes 2-3.
            fragment = true;
            later_fragment = be16(rest, 2) & 0xfff8 != 0;
            fragment_id = be32(rest, 4);
            8
        } else {
            (rest[1] as usize + 1) * 8
        };
        if rest.len() < len {
            return Err(WireError::Truncated);
        }
        next_header = IpProtocol::from(rest[0]);
        offset += len;
        if later_fragment {
            break;
        }
    }
    Ok(UpperLayer {
        protocol: next_header,
        offset,
        fragment,
        later_fragment,
        fragment_id,
    })
}

/// The fixed IPv6 header as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Ipv6Repr, WireError> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv6, hop-by-hop (8 bytes), fragment header (first fragment, M=1), then UDP (8 bytes).
    static PACKET_BYTES: [u8; 64] = [
        0x6b, 0x81, 0x23, 0x45, // version 6, traffic class 0xb8, flow label 0x12345
        0x00, 0x18, // payload length 24
        0x00, // next header: hop-by-hop
        0x40, // hop limit 64
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source fd00::1
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // destination fd00::2
        0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00,
        0x00, // hop-by-hop: next fragment, len 0, PadN
        0x11, 0x00, 0x00, 0x01, 0xca, 0xfe, 0xba,
        0xbe, // fragment: next UDP, offset 0, M=1, id
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP 1234 -> 53, len 8, no checksum
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "fd00::2".parse::<Ipv6Addr>().unwrap());
        let upper = skip_extension_headers(p.payload(), p.next_header()).unwrap();
        assert_eq!(
            upper,
            UpperLayer {
                protocol: IpProtocol::Udp,
                offset: 16,
                fragment: true,
                later_fragment: false,
                fragment_id: 0xcafe_babe,
            }
        );
    }

    #[test]
    fn test_construct() {
        let repr = Ipv6Repr {
            src_addr: "fd00::1".parse().unwrap(),
            dst_addr: "fd00::2".parse().unwrap(),
            next_header: IpProtocol::HopByHop,
            payload_len: 24,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        };
        let mut bytes = [0u8; 64];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&PACKET_BYTES[40..]);
        assert_eq!(bytes, PACKET_BYTES);
        assert_eq!(
            Ipv6Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap(),
            repr
        );
    }

    #[test]
    fn extension_chain_errors() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        // The fragment header cut in half.
        assert_eq!(
            skip_extension_headers(&p.payload()[..12], IpProtocol::HopByHop),
            Err(WireError::Truncated)
        );
        // A routing header announcing more bytes than there are.
        let routing = [0x06, 0x05, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            skip_extension_headers(&routing, IpProtocol::Ipv6Route),
            Err(WireError::Truncated)
        );
        // A later fragment stops the walk.
        let later = [0x06, 0x00, 0x00, 0x10, 0, 0, 0, 1, 0xff];
        assert_eq!(
            skip_extension_headers(&later, IpProtocol::Ipv6Frag).unwrap(),
            UpperLayer {
                protocol: IpProtocol::Tcp,
                offset: 8,
                fragment: true,
                later_fragment: true,
                fragment_id: 1,
            }
        );
        // Truncated fixed header and payload length past the end.
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..39]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..63]).unwrap_err(),
            WireError::Truncated
        );
        let mut v4 = PACKET_BYTES;
        v4[0] = 0x4b;
        assert_eq!(
            Packet::new_checked(&v4[..]).unwrap_err(),
            WireError::Malformed
        );
    }
}
