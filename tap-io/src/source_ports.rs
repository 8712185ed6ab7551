//! The tunnel's UDP source ports: one per inner flow, from a small set of send-only sockets.
//!
//! RFC 7348 §5 (VXLAN) and RFC 8926 §3.3 (Geneve) ask a sender to derive the outer UDP source
//! port from the inner flow, so
//! that the underlay's ECMP and the receiver's RSS (both hash the outer 4-tuple) spread one
//! pair of nodes' traffic by flow; Linux's vxlan device does (`udp_flow_src_port`). A UDP
//! socket sends from its bound port only, so the set is [`SourcePorts::LANES_DEFAULT`]
//! sockets on the tunnel's local address, each on a port the kernel picks from its ephemeral
//! range (`ip_local_port_range`, as the vxlan device's default range is), and a datagram
//! leaves through the lane its inner flow hashes to: every datagram of one flow from one
//! port, so the path keeps its order.
//!
//! The lanes only send. Each has a socket filter that drops whatever reaches its port (no
//! peer sends there; a stray datagram costs no buffer) and the smallest receive buffer. The
//! set is shared by every tunnel port of the process on the same local address and by their
//! threads (`sendmmsg` on one socket from several threads is safe), so a node with a port per
//! peer holds one set, not one per port.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};

use crate::sockopt;

/// One send-only socket and the port it sends from.
#[derive(Debug)]
struct Lane {
    fd: OwnedFd,
    port: u16,
}

/// The send-only sockets of one local address; see the module docs.
#[derive(Debug)]
pub struct SourcePorts {
    local: IpAddr,
    lanes: Vec<Lane>,
}

type Registry = HashMap<(IpAddr, usize), Weak<SourcePorts>>;

static SHARED: Mutex<Option<Registry>> = Mutex::new(None);

impl SourcePorts {
    /// Lanes per local address unless told otherwise (`VSWITCH_TUNNEL_SRC_PORTS` in the
    /// switch): enough for a receiver's RSS to use most of a NIC's usual 4–8 queues, few
    /// enough to keep the batching that matters at 64 bytes: datagrams of different lanes
    /// cannot share a UDP GSO message, so a batch of many flows costs up to one message per
    /// lane (docs/benchmarks.md, *Twenty-fourth session*).
    pub const LANES_DEFAULT: usize = 8;
    /// The most lanes a set may have.
    pub const LANES_MAX: usize = 64;

    /// The set of `lanes` sockets on `local` (its port ignored), shared with every other
    /// caller asking for the same address and size while one holds it.
    pub fn shared(local: IpAddr, lanes: usize) -> io::Result<Arc<SourcePorts>> {
        let mut reg = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let reg = reg.get_or_insert_with(HashMap::new);
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(set) = reg.get(&(local, lanes)).and_then(Weak::upgrade) {
            return Ok(set);
        }
        let set = Arc::new(Self::open(local, lanes)?);
        reg.insert((local, lanes), Arc::downgrade(&set));
        Ok(set)
    }

    /// Opens `lanes` (1 to [`SourcePorts::LANES_MAX`]) sockets bound to `local` on ports the
    /// kernel picks.
    pub fn open(local: IpAddr, lanes: usize) -> io::Result<SourcePorts> {
        if !(1..=Self::LANES_MAX).contains(&lanes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{lanes} source ports: 1 to {} wanted", Self::LANES_MAX),
            ));
        }
        let lanes = (0..lanes)
            .map(|_| open_lane(local))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(SourcePorts { local, lanes })
    }

    /// How many lanes (distinct source ports) the set has.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Always false: a set has at least one lane.
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// The address the lanes are bound to.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// The lane of a flow hash: the hash scaled onto the lanes (its high bits, as the
    /// vxlan device scales it onto its port range).
    #[inline]
    pub fn lane_of(&self, flow_hash: u32) -> usize {
        ((u64::from(flow_hash) * self.lanes.len() as u64) >> 32) as usize
    }

    /// The UDP port lane `lane` sends from.
    #[inline]
    pub fn port(&self, lane: usize) -> u16 {
        self.lanes[lane].port
    }

    /// The source port a datagram of a flow with this hash leaves from.
    #[inline]
    pub fn port_of(&self, flow_hash: u32) -> u16 {
        self.port(self.lane_of(flow_hash))
    }

    /// Lane `lane`'s descriptor.
    #[inline]
    pub(crate) fn fd(&self, lane: usize) -> RawFd {
        self.lanes[lane].fd.as_raw_fd()
    }
}

/// A nonblocking UDP socket bound to `(local, 0)` that drops everything it receives.
fn open_lane(local: IpAddr) -> io::Result<Lane> {
    let fd = crate::udp::udp_socket(local)?;
    // Classic BPF "ret #0": every datagram is dropped before it is queued. Attached before
    // bind, so none is queued in between.
    let drop_all = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_ptr().cast_mut(),
    };
    sockopt::set(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
    // The kernel raises 0 to its minimum.
    let _ = sockopt::set(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &0 as &libc::c_int);
    // Best effort, as the tunnel socket's: a bigger buffer only absorbs bursts.
    let _ = sockopt::set(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        &(4 << 20) as &libc::c_int,
    );
    crate::udp::bind_fd(&fd, SocketAddr::new(local, 0))?;
    let port = crate::udp::bound_addr(&fd)?.port();
    Ok(Lane { fd, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn lanes_have_distinct_ports_and_spread_hashes() {
        let set = SourcePorts::open(IpAddr::V4(Ipv4Addr::LOCALHOST), 8).expect("lanes");
        let mut ports: Vec<u16> = (0..8).map(|l| set.port(l)).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8, "lanes share a port: {ports:?}");
        assert!(ports.iter().all(|&p| p != 0));
        let mut used = [0u32; 8];
        for h in 0..4096u32 {
            used[set.lane_of(h.wrapping_mul(0x9e37_79b9))] += 1;
        }
        assert!(used.iter().all(|&n| n > 300), "uneven lanes: {used:?}");
        assert_eq!(set.lane_of(u32::MAX), 7);
        assert_eq!(set.lane_of(0), 0);
    }

    #[test]
    fn one_set_per_address_while_held() {
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = SourcePorts::shared(local, 3).expect("lanes");
        let b = SourcePorts::shared(local, 3).expect("lanes");
        assert!(Arc::ptr_eq(&a, &b));
        let port = a.port(0);
        drop((a, b));
        // Released with the last holder: its ports are free again.
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).expect("lane port released");
        let c = SourcePorts::shared(local, 3).expect("lanes");
        assert_eq!(c.len(), 3);
        assert!(SourcePorts::open(local, 0).is_err());
        assert!(SourcePorts::open(local, SourcePorts::LANES_MAX + 1).is_err());
    }
}
