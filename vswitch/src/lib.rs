//! The node switch: datapath, conntrack/NAT/LB, OpenFlow server, management socket, node agent.
//!
//! See `docs/architecture.md` for the packet's walk through these modules.

pub mod agent;
pub mod daemon;
pub mod datapath;
pub mod mgmt;
pub mod ofclient;
pub mod ofserver;
pub mod pipeline;
pub mod portspec;
pub mod switch;
