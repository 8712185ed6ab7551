//! Port I/O for the switch: packet buffers with headroom, batches, a buffer pool, a small batch
//! [`Port`] trait and its back ends (AF_PACKET, AF_XDP, TAP, a UDP tunnel socket, an in-memory port and
//! a pcap-recording wrapper), interface helpers, and test support for network namespaces.
//!
//! All `unsafe` of the switch lives in this crate, each block with a `// SAFETY:` comment.

pub mod afpacket;
pub mod afxdp;
pub mod buf;
pub mod env;
pub mod hostrx;
pub mod iface;
pub mod mem;
pub mod netns;
pub mod pcap;
pub mod port;
mod rxring;
pub mod sched;
pub mod shed;
mod sockopt;
pub mod source_ports;
pub mod tap;
pub mod tunnel;
pub mod tunnel_gso;
pub mod udp;
mod udp_share;
pub mod vnet;
mod xdpprog;
mod xskring;

pub use afpacket::{AfPacketConfig, AfPacketPort, HostRx, RingKind};
pub use afxdp::{AfXdpConfig, AfXdpError, AfXdpPort, XdpTx};
pub use buf::{
    Batch, BufError, BufferPool, GSO_FRAME_ROOM, Gso, GsoKind, PacketBuf, RxMeta, TunnelMeta,
};
pub use mem::MemPort;
pub use pcap::{Capture, PcapPort};
pub use port::{DropCounts, Offloads, Port, PortStats, TxDropReason, TxReport};
pub use shed::{ShedConfig, SheddingPort};
pub use source_ports::SourcePorts;
pub use tap::{TapConfig, TapPort};
pub use tunnel::{Datagrams, MemDatagrams, TunnelConfig, TunnelHeader, TunnelPort, TunnelRxDrop};
pub use tunnel_gso::TunnelGsoTx;
pub use udp::{UdpTunnelSocket, VXLAN_PORT};
