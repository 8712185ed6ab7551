//! The CNI plugin's parts, as a library so that the fuzz target reaches its parsers (the
//! runtime's configuration, `CNI_ARGS`, the IPAM plugin's result, vswitchd's pod list). The
//! plugin itself is `main.rs`.
#![forbid(unsafe_code)]

pub mod args;
pub mod error;
pub mod ipam;
pub mod link;
pub mod switch;
