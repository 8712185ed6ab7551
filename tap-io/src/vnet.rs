//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that AF_PACKET sockets with
//! `PACKET_VNET_HDR` and TAP devices with `IFF_VNET_HDR` put in front of every frame: it
//! carries segmentation offload (GSO) and checksum offload between the kernel and us.
//!
//! Layout (host byte order, as both drivers use it without `TUNSETVNETLE/BE`):
//! `flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16, csum_offset: u16`.

use thiserror::Error;

use crate::buf::{Gso, GsoKind, RxMeta};

/// Size of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the L4 checksum must be completed from `csum_start`, stored at `+csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already validated.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` flag: the super-frame has CWR set (segments after the first must not).
pub const GSO_ECN: u8 = 0x80;

/// Why a received virtio-net header was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum VnetError {
    /// A `gso_type` we cannot segment (legacy UFO, or unknown); the frame must be dropped.
    #[error("unsupported virtio-net gso_type {0:#x}")]
    UnsupportedGso(u8),
    /// GSO with a zero segment size.
    #[error("virtio-net header asks for GSO with gso_size 0")]
    ZeroGsoSize,
}

/// A decoded virtio-net header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from its 10 bytes.
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> Self {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Writes the header as its 10 bytes.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Fills the offload fields of `meta` from this header. `shift` is added to the frame
    /// offsets (4 when the port re-inserted a VLAN tag the kernel had stripped).
    pub fn to_meta(&self, meta: &mut RxMeta, shift: u16) -> Result<(), VnetError> {
        let kind = match self.gso_type & !GSO_ECN {
            GSO_NONE => None,
            GSO_TCPV4 => Some(GsoKind::Tcp4),
            GSO_TCPV6 => Some(GsoKind::Tcp6),
            GSO_UDP_L4 => Some(GsoKind::Udp),
            other => return Err(VnetError::UnsupportedGso(other)),
        };
        meta.gso = match kind {
            None => None,
            Some(_) if self.gso_size == 0 => return Err(VnetError::ZeroGsoSize),
            Some(kind) => Some(Gso {
                kind,
                size: self.gso_size,
                hdr_len: self.hdr_len.saturating_add(shift),
                ecn: self.gso_type & GSO_ECN != 0,
            }),
        };
        if self.flags & F_NEEDS_CSUM != 0 {
            meta.csum_not_ready = true;
            meta.csum_start = Some(self.csum_start.saturating_add(shift));
            meta.csum_offset = Some(self.csum_offset);
        } else if self.flags & F_DATA_VALID != 0 {
            meta.csum_valid = true;
        }
        Ok(())
    }

    /// The header to send a frame with this meta: GSO fields from `meta.gso`, `NEEDS_CSUM`
    /// when the checksum is partial and its position known; all zeros otherwise.
    pub fn from_meta(meta: &RxMeta) -> Self {
        let mut h = Self::default();
        if let Some(g) = meta.gso {
            h.gso_type = match g.kind {
                GsoKind::Tcp4 => GSO_TCPV4,
                GsoKind::Tcp6 => GSO_TCPV6,
                GsoKind::Udp => GSO_UDP_L4,
            } | if g.ecn { GSO_ECN } else { 0 };
            h.gso_size = g.size;
            h.hdr_len = g.hdr_len;
        }
        if let (true, Some(start), Some(off)) =
            (meta.csum_not_ready, meta.csum_start, meta.csum_offset)
        {
            h.flags = F_NEEDS_CSUM;
            h.csum_start = start;
            h.csum_offset = off;
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_the_kernel_verified_is_marked_valid() {
        let h = VnetHdr {
            flags: F_DATA_VALID,
            ..VnetHdr::default()
        };
        let mut m = RxMeta::default();
        h.to_meta(&mut m, 0).unwrap();
        assert!(m.csum_valid && !m.csum_not_ready);
        assert_eq!(VnetHdr::from_meta(&m), VnetHdr::default(), "never sent on");
        let mut m = RxMeta::default();
        VnetHdr::default().to_meta(&mut m, 0).unwrap();
        assert!(!m.csum_valid);
    }

    #[test]
    fn tso_header_round_trips_through_meta() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.emit()), h);
        let mut m = RxMeta::default();
        h.to_meta(&mut m, 0).unwrap();
        assert!(m.csum_not_ready);
        assert_eq!((m.csum_start, m.csum_offset), (Some(34), Some(16)));
        assert_eq!(
            m.gso,
            Some(Gso {
                kind: GsoKind::Tcp4,
                size: 1448,
                hdr_len: 66,
                ecn: true
            })
        );
        assert_eq!(VnetHdr::from_meta(&m), h);
    }

    #[test]
    fn vlan_shift_moves_offsets_and_plain_frames_get_zeros() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        let mut m = RxMeta::default();
        h.to_meta(&mut m, 4).unwrap();
        assert_eq!(m.csum_start, Some(58));
        assert_eq!(m.gso.unwrap().hdr_len, 90);
        assert_eq!(VnetHdr::from_meta(&RxMeta::default()), VnetHdr::default());
        assert_eq!(VnetHdr::default().emit(), [0; 10]);
    }

    #[test]
    fn unsupported_gso_is_refused() {
        let mut m = RxMeta::default();
        let ufo = VnetHdr {
            gso_type: GSO_UDP,
            gso_size: 1400,
            ..VnetHdr::default()
        };
        assert_eq!(ufo.to_meta(&mut m, 0), Err(VnetError::UnsupportedGso(3)));
        let zero = VnetHdr {
            gso_type: GSO_TCPV4,
            ..VnetHdr::default()
        };
        assert_eq!(zero.to_meta(&mut m, 0), Err(VnetError::ZeroGsoSize));
    }
}
