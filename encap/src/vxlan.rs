//! VXLAN (RFC 7348) as the switch runs it: the tunnel port is a kernel UDP socket, so the
//! kernel builds and strips the outer Ethernet/IP/UDP headers and the switch handles only the
//! 8-byte VXLAN header in front of each inner frame. [`check_header`] is the receive check
//! (`tap_io::TunnelPort` strips what it accepts), [`Header`] the header pushed on transmit.
//!
//! The header bytes themselves are the [`crate::wire::vxlan`] view; this module adds the
//! switch's acceptance rule and the underlay arithmetic.

use crate::wire::vxlan::{Packet, VxlanRepr};

pub use crate::wire::vxlan::{FLAG_VNI_VALID, HEADER_LEN, VNI_MAX};

/// IANA-assigned VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// What an IPv4 underlay adds in front of the inner frame: IPv4 (20) + UDP (8) + VXLAN (8).
pub const UNDERLAY_OVERHEAD_V4: usize = 20 + 8 + HEADER_LEN;
/// The shortest inner frame accepted: an Ethernet header.
pub const MIN_INNER_LEN: usize = 14;

/// Why a datagram's VXLAN header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    #[error("datagram shorter than a VXLAN header")]
    Short,
    #[error("VXLAN flags {0:#04x} are not exactly the I (VNI valid) flag")]
    BadFlags(u8),
}

/// Checks the VXLAN header a UDP payload starts with and returns its VNI. The flags byte must
/// be exactly the I flag: a clear I flag violates RFC 7348, and other bits mean an extension
/// (GBP, GPE) this switch does not speak. The reserved bytes are ignored, as RFC 7348 asks.
/// The inner frame's length is the caller's to check (after its own filters), against
/// [`MIN_INNER_LEN`].
#[inline]
pub fn check_header(payload: &[u8]) -> Result<u32, VxlanError> {
    let p = Packet::new_checked(payload).map_err(|_| VxlanError::Short)?;
    match p.flags() {
        FLAG_VNI_VALID => Ok(p.vni()),
        other => Err(VxlanError::BadFlags(other)),
    }
}

/// The VXLAN header of one VNI, as pushed in front of an inner frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header([u8; HEADER_LEN]);

impl Header {
    /// The header for `vni` (its low 24 bits): I flag, reserved bytes zero.
    #[inline]
    pub fn new(vni: u32) -> Header {
        let mut bytes = [0u8; HEADER_LEN];
        VxlanRepr { vni }.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        Header(bytes)
    }

    /// The 8 bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests;
