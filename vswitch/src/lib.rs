//! The node switch: datapath, OpenFlow server, node agent.
pub mod conntrack;
pub mod lb;
