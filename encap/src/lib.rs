//! Wire formats for the switch: zero-copy typed header views and builders, one-pass flow-key
//! extraction, checksums and VXLAN encapsulation.
//!
//! - [`wire`]: one view per protocol (`Packet<T: AsRef<[u8]>>`, smoltcp style).
//! - [`flowkey`]: the shared `FlowKey` layout.
//! - [`checksum`]: full and incremental (RFC 1624) Internet checksums.

pub mod checksum;
pub mod flowkey;
pub mod rewrite;
pub mod wire;

pub use flowkey::FlowKey;
pub mod build;
pub mod extract;

pub use extract::{L3Kind, ParseError, Parsed, extract};
