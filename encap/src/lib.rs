//! Wire formats for the switch: zero-copy typed header views and builders, one-pass flow-key
//! extraction, checksums, in-place rewrites and VXLAN encapsulation.
//!
//! - [`wire`]: one view per protocol (`Packet<T: AsRef<[u8]>>`, smoltcp style).
//! - [`flowkey`]: the shared `FlowKey` layout; [`extract()`] fills it in one pass and returns
//!   [`Parsed`] offsets.
//! - [`checksum`]: full and incremental (RFC 1624) Internet checksums.
//! - [`rewrite`]: address / port / TTL rewrites on a parsed frame with checksum updates.
//! - [`vxlan`]: per-tunnel precomputed outer header, encap into headroom, decap.
//! - [`geneve`]: the Geneve header (RFC 8926): receive check with options, header to push.
//! - [`ecn`]: the ECN field across a tunnel (RFC 6040): outer from inner, CE back onto inner.
//! - [`gso`]: software segmentation of TSO/GSO super-frames, partial checksum completion.
//! - [`gro`]: coalescing of consecutive TCP segments into a super-frame.
//! - [`partial_csum`]: recognising a TCP/UDP checksum a sender left partial (no offload state).
//! - [`hash`]: the 5-tuple flow hash.
//! - [`build`]: a frame builder for tests.

#![forbid(unsafe_code)]

pub mod build;
pub mod checksum;
pub mod ecn;
pub mod extract;
pub mod flowkey;
pub mod geneve;
pub mod gro;
pub mod gso;
pub mod hash;
pub mod partial_csum;
pub mod rewrite;
pub mod vxlan;
pub mod wire;

pub use extract::{L3Kind, ParseError, Parsed, extract};
pub use flowkey::FlowKey;
pub use hash::flow_hash;
