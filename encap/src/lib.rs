//! Wire formats for the switch: zero-copy typed header views and builders, one-pass flow-key
//! extraction, checksums and VXLAN encapsulation.

pub mod flowkey;

pub use flowkey::FlowKey;
