//! Zero-copy typed views of protocol headers, one file per protocol, in the smoltcp `wire` shape.
//!
//! Every view is a `Packet<T: AsRef<[u8]>>` (or `Frame` for Ethernet) over a buffer. Construct it
//! with `new_checked`, which runs `check_len`; after that no accessor can panic. `new_unchecked`
//! skips the check (accessors may then panic on a short buffer: use it only on buffers whose
//! length you have already checked). Setters exist when `T: AsMut<[u8]>`. Byte ranges live in a
//! private `mod field` per file. Where a header has a useful owned form there is a `Repr` with
//! `parse`, `emit` and `buffer_len`.
//!
//! Protocol numbers are enums that keep unknown values (`EtherType::Unknown(0x1234)`), so a
//! round trip through the enum never loses information.

pub mod arp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use arp::{ArpOperation, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetRepr};
pub use ip::IpProtocol;
pub use ipv4::Ipv4Repr;
pub use ipv6::Ipv6Repr;
pub use tcp::TcpRepr;
pub use udp::UdpRepr;
pub use vlan::VlanRepr;
pub use vxlan::VxlanRepr;

/// Why a buffer could not be viewed or parsed as a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than the length the header announces).
    #[error("buffer too short for the header")]
    Truncated,
    /// A header field holds a value the format does not allow (bad version, length, flags, ...).
    #[error("header field holds a value the format does not allow")]
    Malformed,
}

/// Reads a big-endian `u16` at `at`. Callers have checked the length.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian `u32` at `at`. Callers have checked the length.
#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Declares a protocol-number enum that keeps unknown values.
macro_rules! enum_with_unknown {
    (
        $(#[$m:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vm:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vm])* $variant, )+
            /// A value this crate has no name for, kept as is.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;
