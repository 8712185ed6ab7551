//! The batch port trait, transmit reports and port counters.
//!
//! # Readiness and the edge-triggered drain rule
//!
//! Ports that have a file descriptor are registered with `mio`, which is always
//! edge-triggered: an event comes when new data arrives, not while data remains. A caller must
//! therefore keep calling [`Port::rx_batch`] until it returns fewer packets than the batch had
//! room for (that is the port's "would block"). If a per-port budget makes it stop earlier, it
//! must remember the port as *still ready* and come back to it without waiting for an event,
//! or the packets left behind sit there until the next arrival.

use std::io;
use std::os::fd::RawFd;

use crate::buf::Batch;

/// Why a packet handed to [`Port::tx_batch`] was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum TxDropReason {
    /// Larger than the port's MTU allows (`EMSGSIZE`).
    TooBig = 0,
    /// The device or socket queue was full (`ENOBUFS`, `EAGAIN`).
    QueueFull = 1,
    /// The interface is down or gone (`ENETDOWN`, `ENXIO`, `ENODEV`).
    LinkDown = 2,
    /// The destination could not be reached (UDP ports: `ENETUNREACH`, `EHOSTUNREACH`, ...).
    Unreachable = 3,
    /// Any other error.
    Other = 4,
}

impl TxDropReason {
    /// Every reason, in counter order.
    pub const ALL: [TxDropReason; 5] = [
        Self::TooBig,
        Self::QueueFull,
        Self::LinkDown,
        Self::Unreachable,
        Self::Other,
    ];

    /// A short name for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooBig => "too_big",
            Self::QueueFull => "queue_full",
            Self::LinkDown => "link_down",
            Self::Unreachable => "unreachable",
            Self::Other => "other",
        }
    }

    /// The reason a send error stands for.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EMSGSIZE => Self::TooBig,
            libc::ENOBUFS | libc::EAGAIN => Self::QueueFull,
            libc::ENETDOWN | libc::ENXIO | libc::ENODEV | libc::EIO => Self::LinkDown,
            libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ECONNREFUSED | libc::EADDRNOTAVAIL => {
                Self::Unreachable
            }
            _ => Self::Other,
        }
    }
}

/// Counts per [`TxDropReason`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DropCounts(pub [u64; 5]);

impl DropCounts {
    /// Adds `n` drops for `reason`.
    #[inline]
    pub fn add(&mut self, reason: TxDropReason, n: u64) {
        self.0[reason as usize] += n;
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: TxDropReason) -> u64 {
        self.0[reason as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &DropCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// The outcome of one [`Port::tx_batch`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxReport {
    /// Packets handed to the kernel (or queue).
    pub sent: usize,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Packets not sent, per reason.
    pub dropped: DropCounts,
}

impl TxReport {
    /// Packets dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.total()
    }
}

/// Port counters since the port was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames longer than the buffer or ring slot (counted and dropped).
    pub rx_truncated: u64,
    /// Frames the kernel dropped because the ring/socket was full.
    pub rx_kernel_drops: u64,
    /// Receive calls that failed with an error other than "would block".
    pub rx_errors: u64,
    /// Frames whose L4 checksum was left partial by the sender (`TP_STATUS_CSUMNOTREADY`).
    pub rx_csum_not_ready: u64,
    /// GSO super-frames received (ports with virtio-net headers).
    pub rx_gso: u64,
    /// Frames dropped because their virtio-net header asked for an offload we cannot handle.
    pub rx_bad_vnet: u64,
    /// Tunnel ports: datagrams too short for the tunnel header plus an inner Ethernet header.
    pub rx_tunnel_short: u64,
    /// Tunnel ports: datagrams whose tunnel header flags were refused (VXLAN: not exactly I).
    pub rx_tunnel_bad_header: u64,
    /// Tunnel ports: datagrams from a peer or with a VNI the port does not accept.
    pub rx_tunnel_unknown: u64,
    /// Tunnel ports: datagrams whose outer ECN field is CE around an inner packet that is not
    /// ECN-capable (RFC 6040: dropped).
    pub rx_tunnel_ce_not_ect: u64,
    pub tx_packets: u64,
    /// GSO super-frames handed to the kernel whole.
    pub tx_gso: u64,
    pub tx_bytes: u64,
    /// Frames not sent, per reason.
    pub tx_dropped: DropCounts,
}

impl PortStats {
    /// Adds a transmit report to the counters.
    pub fn account_tx(&mut self, r: &TxReport) {
        self.tx_packets += r.sent as u64;
        self.tx_bytes += r.bytes;
        self.tx_dropped.merge(&r.dropped);
    }
}

/// What a port's transmit path finishes for the sender (the kernel does it, from the
/// virtio-net header the port builds out of [`crate::RxMeta`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// Sends GSO super-frames (`meta.gso`) whole; without it they must be segmented first.
    pub gso: bool,
    /// Completes partial L4 checksums (`meta.csum_not_ready`); without it they must be
    /// completed first.
    pub csum: bool,
}

impl Offloads {
    /// A port carrying virtio-net headers (`vnet_hdr`) gets both offloads from the kernel;
    /// without them, neither.
    pub fn virtio(vnet_hdr: bool) -> Offloads {
        Offloads {
            gso: vnet_hdr,
            csum: vnet_hdr,
        }
    }
}

/// A network port that moves packets in batches.
pub trait Port {
    /// The port's name (usually the interface name).
    fn name(&self) -> &str;

    /// Receives into the batch's spare slots (appending after its current packets) and returns
    /// how many packets were added. Fewer than [`Batch::room`] means the port is drained; `Ok(0)`
    /// is "would block". Errors other than "would block" are returned once and counted.
    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize>;

    /// Sends every packet of the batch and empties it (buffers stay as spares). Never fails as
    /// a whole: packets that could not be sent are counted per reason in the report.
    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport;

    /// The descriptor to register for read readiness, if the port has one.
    fn fd(&self) -> Option<RawFd>;

    /// Every descriptor to wait on for this port's receive, with a number that changes
    /// whenever the set does (a shedding port adds its XDP socket's while it has one): the
    /// poll loop registers them all, again when the number changes. Default: [`Port::fd`].
    fn rx_fds(&self) -> (u64, [Option<RawFd>; 2]) {
        (0, [self.fd(), None])
    }

    /// Counters since the port was opened.
    fn stats(&self) -> PortStats;

    /// Brings counters the kernel keeps for the port into [`Port::stats`] (AF_PACKET:
    /// `rx_kernel_drops` from `PACKET_STATISTICS`, which the kernel resets on every read, so
    /// the port accumulates). One system call: call it periodically, not per batch. Default:
    /// nothing to read.
    fn refresh_stats(&mut self) {}

    /// The interface MTU (largest L3 payload; frames may be 14 + 4 bytes longer).
    fn mtu(&self) -> usize;

    /// What the transmit path offloads; received packets may carry `gso`/`csum_not_ready`
    /// meta only on ports that report offloads. Default: none.
    fn offloads(&self) -> Offloads {
        Offloads::default()
    }

    /// A transmit-only handle on the same device, for another thread to send through while
    /// this one keeps receiving. `None`: the back end cannot be shared that way.
    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        None
    }

    /// Another receive queue of the same device, for another thread to poll (it sends as
    /// well): an AF_PACKET port opened with a fanout group gives a further socket in it.
    /// `None`: the back end has one receive queue.
    fn try_clone_rx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        None
    }

    /// Something the port changed by itself since the last call, for the operator's log (a
    /// shedding port attaching its XDP socket). Default: never.
    fn take_notice(&mut self) -> Option<String> {
        None
    }
}

impl<P: Port + ?Sized> Port for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        (**self).rx_batch(batch)
    }
    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        (**self).tx_batch(batch)
    }
    fn fd(&self) -> Option<RawFd> {
        (**self).fd()
    }
    fn rx_fds(&self) -> (u64, [Option<RawFd>; 2]) {
        (**self).rx_fds()
    }
    fn stats(&self) -> PortStats {
        (**self).stats()
    }
    fn refresh_stats(&mut self) {
        (**self).refresh_stats()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn offloads(&self) -> Offloads {
        (**self).offloads()
    }
    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        (**self).try_clone_tx()
    }
    fn try_clone_rx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        (**self).try_clone_rx()
    }
    fn take_notice(&mut self) -> Option<String> {
        (**self).take_notice()
    }
}

/// Implements `mio::event::Source` for a type with an `fn raw_fd(&self) -> RawFd`.
macro_rules! impl_mio_source {
    ($t:ty) => {
        impl mio::event::Source for $t {
            fn register(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interests: mio::Interest,
            ) -> std::io::Result<()> {
                mio::unix::SourceFd(&self.raw_fd()).register(registry, token, interests)
            }
            fn reregister(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interests: mio::Interest,
            ) -> std::io::Result<()> {
                mio::unix::SourceFd(&self.raw_fd()).reregister(registry, token, interests)
            }
            fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
                mio::unix::SourceFd(&self.raw_fd()).deregister(registry)
            }
        }
    };
}
pub(crate) use impl_mio_source;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_reasons() {
        assert_eq!(
            TxDropReason::from_errno(libc::EMSGSIZE),
            TxDropReason::TooBig
        );
        assert_eq!(
            TxDropReason::from_errno(libc::ENOBUFS),
            TxDropReason::QueueFull
        );
        assert_eq!(
            TxDropReason::from_errno(libc::ENETDOWN),
            TxDropReason::LinkDown
        );
        assert_eq!(
            TxDropReason::from_errno(libc::EHOSTUNREACH),
            TxDropReason::Unreachable
        );
        assert_eq!(TxDropReason::from_errno(libc::EPERM), TxDropReason::Other);
        let mut d = DropCounts::default();
        d.add(TxDropReason::LinkDown, 3);
        d.add(TxDropReason::TooBig, 1);
        assert_eq!(d.total(), 4);
        assert_eq!(d.get(TxDropReason::LinkDown), 3);
    }
}
