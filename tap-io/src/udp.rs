//! `UdpTunnelSocket`: the VXLAN underlay socket, batched with `recvmmsg`/`sendmmsg`.
//!
//! It moves UDP *payloads* (VXLAN header + inner frame) with their peer addresses; the kernel
//! builds the outer IP/UDP headers, so the Linux `vxlan` device talks to it as to any VXLAN
//! peer on port 4789. Payloads are received at the buffers' headroom, so the datapath can
//! `pull_front(8)` the VXLAN header and keep working on the inner frame in place.
//!
//! UDP GSO on send (on by default, [`UdpTunnelSocket::set_tx_gso`]): consecutive payloads of
//! one batch to the same destination with the same length (the last of a run may be shorter)
//! go out as *one* message with one iovec per payload (no copy) and a `UDP_SEGMENT` cmsg; the
//! kernel builds one skb and splits it into the same datagrams late (or the NIC does), which
//! saves most of the per-datagram cost of the stack. At most 64 datagrams and 64000 bytes per
//! message; a message the kernel refuses is resent datagram by datagram.
//!
//! UDP GRO on receive (on by default, [`UdpTunnelSocket::set_rx_gro`]): a run that arrives as
//! one GSO skb (a peer using UDP GSO over a veth or loopback) is received as one coalesced
//! message into one of 8 held buffers and split back into one payload per buffer, in order,
//! with its source; what does not fit the batch waits for the next call. A message that is one
//! datagram (a tunnel super-frame sent whole, or a lone datagram) is not copied: its held
//! buffer is swapped into the batch, which gives a spare back in its place.
//!
//! The source port by flow ([`UdpTunnelSocket::send_batch_flows`] with
//! [`UdpTunnelSocket::set_source_ports`]): each payload leaves through the lane of
//! [`SourcePorts`] its inner flow hash picks, one `sendmmsg` run per lane in batch order, the
//! GSO runs formed within a lane.
//!
//! The outer TOS byte (the tunnel's ECN, RFC 6040): [`UdpTunnelSocket::send_batch_flows`] sends
//! each payload with its own (an `IP_TOS` cmsg when not 0, the socket's default; a UDP GSO run
//! never mixes two), [`UdpTunnelSocket::recv_batch_tos`] reports the one each datagram came
//! with (`IP_RECVTOS`; a coalesced message has one, the kernel's GRO never merges two).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use thiserror::Error;

use crate::buf::{Batch, MAX_BATCH, PacketBuf};
use crate::port::{PortStats, TxDropReason, TxReport, impl_mio_source};
use crate::sockopt;
use crate::source_ports::SourcePorts;
use crate::udp_share::{self, Claim};

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

/// Errors of opening the tunnel socket.
#[derive(Debug, Error)]
pub enum UdpError {
    /// A socket call failed; `what` names the step.
    #[error("UDP tunnel socket {what} for {addr} failed: {source}")]
    Sys {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Another tunnel port of this switch already receives these datagrams
    /// ([`UdpTunnelSocket::bind_tunnel`]).
    #[error(
        "port {owner} already receives the tunnel datagrams from {remote} on {addr} (one port per remote and UDP port, and one for any remote)"
    )]
    Taken {
        addr: SocketAddr,
        remote: String,
        owner: String,
    },
    /// The kernel could not tell this port's datagrams from another tunnel port's on the
    /// same UDP port ([`UdpTunnelSocket::bind_tunnel`]).
    #[error("port {owner} shares UDP {addr} in a way the kernel cannot part from this port: {why}")]
    Unparted {
        addr: SocketAddr,
        owner: String,
        why: String,
    },
}

/// Whether the socket has the UDP port to itself or shares it with other tunnel ports.
#[derive(Clone, Copy)]
enum Sharing {
    Alone,
    /// `SO_REUSEPORT`, connected to `remote` when there is one.
    Shared {
        remote: Option<IpAddr>,
    },
}

/// An error a connected socket reports once for an ICMP message about an earlier datagram
/// (port or host unreachable, ...): no fault of the call that returns it, which may be
/// repeated.
fn is_icmp_report(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::ENOPROTOOPT
            | libc::EPROTO
            // Fragmentation needed (path MTU discovery is on), IPv6's administratively
            // prohibited.
            | libc::EMSGSIZE
            | libc::EACCES
    )
}

/// What one `recvmmsg` call gave.
enum Received {
    Got(usize),
    /// Interrupted: call again.
    Again,
    /// Nothing waiting.
    Drained,
    Failed(io::Error),
}

/// One nonblocking `recvmmsg` into `msgs[..n]`; errors other than "would block" and
/// "interrupted" are counted in `stats.rx_errors`.
///
/// # Safety
/// `msgs[..n]` must be initialised, pointing at buffers that stay live and unaliased for the
/// call.
unsafe fn recv_msgs(
    fd: RawFd,
    msgs: &mut [libc::mmsghdr],
    n: usize,
    stats: &mut PortStats,
) -> Received {
    let n = n.min(msgs.len());
    // SAFETY: the caller vouches for msgs[..n]; the kernel writes at most n of them.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc >= 0 {
        return Received::Got(rc as usize);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Received::Drained,
        Some(libc::EINTR) => Received::Again,
        // Consumed by this call: the next one reads the datagrams waiting.
        Some(errno) if is_icmp_report(errno) => Received::Again,
        _ => {
            stats.rx_errors += 1;
            Received::Failed(e)
        }
    }
}

/// A nonblocking UDP socket moving datagram payloads in batches.
pub struct UdpTunnelSocket {
    fd: OwnedFd,
    local: SocketAddr,
    stats: PortStats,
    iov: Box<[libc::iovec; MAX_BATCH]>,
    msgs: Box<[libc::mmsghdr; MAX_BATCH]>,
    names: Box<[libc::sockaddr_storage; MAX_BATCH]>,
    /// Per message: on send a `UDP_SEGMENT` and an `IP_TOS` control message, on receive the
    /// `IP_TOS` one the kernel gives.
    cmsgs: Box<[[u64; CMSG_WORDS]; MAX_BATCH]>,
    /// Per message: the batch range `[first, end)` of the payloads it carries.
    runs: Box<[(usize, usize); MAX_BATCH]>,
    tx_gso: bool,
    /// An IPv6 socket: its TOS is the traffic class (`IPV6_TCLASS`).
    v6: bool,
    /// Receive-side GRO state, when turned on.
    gro: Option<Box<GroRx>>,
    /// A port's claim on its share of a UDP port ([`UdpTunnelSocket::bind_tunnel`]), kept
    /// while any handle on the socket is.
    claim: Option<Arc<Claim>>,
    /// The remote the socket is connected to: the kernel gives it that sender's datagrams
    /// only.
    connected: Option<IpAddr>,
    /// Sockets that send a flow's datagrams from a port of its own ([`SourcePorts`]).
    source_ports: Option<Arc<SourcePorts>>,
    /// Send scratch, kept for the next batch: the payloads in lane order, each one's lane.
    order: Vec<usize>,
    lane_of: Vec<u8>,
}

/// `SOL_UDP` option / cmsg type: receive coalesced datagrams with their segment size.
const UDP_GRO: libc::c_int = 104;
/// Coalesced messages taken per `recvmmsg` with GRO on.
const GRO_MSGS: usize = 8;
/// Room for one coalesced message (the kernel coalesces at most 64 KiB).
const GRO_MSG_LEN: usize = 65536;
/// Control buffer per message, in u64 words (a `UDP_GRO` and an `IP_TOS` cmsg, 24 bytes each).
const GRO_CMSG_WORDS: usize = 8;

/// Coalesced messages received but not yet split into a batch.
struct GroRx {
    /// One buffer per message, shaped like the batch's buffers (so that a whole datagram is
    /// swapped into the batch instead of copied) with room for a 64 KiB message; allocated
    /// at the first receive, when the batch's shape is known.
    bufs: Vec<PacketBuf>,
    cmsgs: [[u64; GRO_CMSG_WORDS]; GRO_MSGS],
    /// Per received message: its length, segment size, source and TOS.
    len: [usize; GRO_MSGS],
    seg: [usize; GRO_MSGS],
    src: [Option<SocketAddr>; GRO_MSGS],
    tos: [u8; GRO_MSGS],
    /// Messages held, the one being split and the offset in it.
    n: usize,
    cur: usize,
    off: usize,
}

impl GroRx {
    fn new() -> Self {
        Self {
            bufs: Vec::new(),
            cmsgs: [[0; GRO_CMSG_WORDS]; GRO_MSGS],
            len: [0; GRO_MSGS],
            seg: [0; GRO_MSGS],
            src: [None; GRO_MSGS],
            tos: [0; GRO_MSGS],
            n: 0,
            cur: 0,
            off: 0,
        }
    }

    /// Makes the held buffers the shape of `like` (a batch's spare, reset), with room for a
    /// whole message; allocates only when the shape changes (once per port in practice).
    fn shape_like(&mut self, like: &PacketBuf) {
        let (headroom, room) = (like.headroom(), like.frame_room().max(GRO_MSG_LEN));
        let fits = |b: &PacketBuf| b.headroom() == headroom && b.frame_room() == room;
        if self.bufs.len() != GRO_MSGS || !self.bufs.iter().all(fits) {
            self.bufs = (0..GRO_MSGS)
                .map(|_| PacketBuf::new(headroom, room))
                .collect();
        }
    }
}

/// `SOL_UDP` option / cmsg type: segment the datagram into this many payload bytes each.
const UDP_SEGMENT: libc::c_int = 103;
/// The kernel's limit of segments per UDP GSO send (`UDP_MAX_SEGMENTS`, 64 before 6.10).
const MAX_GSO_SEGMENTS: usize = 64;
/// Payload bytes per UDP GSO send, below the 65507 an IPv4 datagram can carry.
const MAX_GSO_BYTES: usize = 64000;
/// `CMSG_SPACE(sizeof(u16)) + CMSG_SPACE(sizeof(int))` in u64 words: a `UDP_SEGMENT` and an
/// `IP_TOS` control message, each a 16-byte cmsghdr and its value, 8-aligned.
const CMSG_WORDS: usize = 6;
const _: () = assert!(2 * (size_of::<libc::cmsghdr>() + 8) <= CMSG_WORDS * 8);

// SAFETY: the iovec/mmsghdr scratch arrays hold pointers only during one recv/send call and
// point into the batch passed to that call or into `names`, owned by the socket itself.
unsafe impl Send for UdpTunnelSocket {}

impl std::fmt::Debug for UdpTunnelSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTunnelSocket")
            .field("local", &self.local)
            .finish()
    }
}

/// Writes `addr` into `ss`; returns the length to pass to the kernel.
fn to_sockaddr(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads an address the kernel wrote into `ss`.
fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A nonblocking, close-on-exec UDP socket of `ip`'s family.
pub(crate) fn udp_socket(ip: IpAddr) -> io::Result<OwnedFd> {
    let family = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `bind(2)` of `fd` to `addr`.
pub(crate) fn bind_fd(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = to_sockaddr(&addr, &mut ss);
    // SAFETY: ss holds a valid address of length len.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The address `fd` is bound to (`getsockname(2)`), with the port the kernel picked.
pub(crate) fn bound_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss and len are valid for writes of the stated size.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    from_sockaddr(&ss).ok_or_else(|| io::Error::other("not an IP socket"))
}

impl UdpTunnelSocket {
    /// Binds a nonblocking socket to `local` (e.g. `192.0.2.1:4789`; port 0 picks one).
    pub fn bind(local: SocketAddr) -> Result<Self, UdpError> {
        Self::open(local, Sharing::Alone)
    }

    /// The socket of a tunnel port, named `owner`, that receives from `remote` (`None`: from
    /// any remote) on `local`, a UDP port other tunnel ports of this process may share: each
    /// remote's datagrams reach the socket connected to it, the rest the one taking any
    /// (`udp_share`). Refused when another port already receives the same datagrams, when
    /// the kernel could not part them, or when another program holds the port. A socket with
    /// no route to its remote yet stays unconnected ([`UdpTunnelSocket::connected_remote`]
    /// says `None`): it then takes any sender's datagrams, as a port alone on its UDP port
    /// did before ports shared one.
    pub fn bind_tunnel(
        local: SocketAddr,
        remote: Option<IpAddr>,
        owner: &str,
    ) -> Result<Self, UdpError> {
        if local.port() == 0 {
            return Self::bind(local);
        }
        let (mut sock, claim) = udp_share::claim(local, remote, owner, |first_on_port| {
            if first_on_port {
                // Bound without SO_REUSEPORT, then closed: fails as a plain bind would if
                // another program holds the port (or joins it through its own SO_REUSEPORT).
                std::net::UdpSocket::bind(local).map_err(|source| UdpError::Sys {
                    what: "bind",
                    addr: local,
                    source,
                })?;
            }
            let sock = Self::open(local, Sharing::Shared { remote })?;
            let connected = sock.connected.is_some();
            Ok((sock, connected))
        })?;
        sock.claim = Some(Arc::new(claim));
        Ok(sock)
    }

    fn open(local: SocketAddr, sharing: Sharing) -> Result<Self, UdpError> {
        let sys = |what: &'static str| {
            move |source: io::Error| UdpError::Sys {
                what,
                addr: local,
                source,
            }
        };
        let fd = udp_socket(local.ip()).map_err(sys("socket"))?;
        let buf: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // Best effort: bigger buffers only absorb bursts.
            let _ = sockopt::set(&fd, libc::SOL_SOCKET, opt, &buf);
        }
        if let Sharing::Shared { .. } = sharing {
            sockopt::set(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                &1 as &libc::c_int,
            )
            .map_err(sys("SO_REUSEPORT"))?;
        }
        bind_fd(&fd, local).map_err(sys("bind"))?;
        let mut connected = None;
        if let Sharing::Shared {
            remote: Some(remote),
        } = sharing
        {
            // Port 0: the kernel then matches the sender's address only. Sends still name
            // their destination (sendmmsg with an address on a connected socket).
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = to_sockaddr(&SocketAddr::new(remote, 0), &mut ss);
            // SAFETY: ss holds a valid address of length len.
            let rc = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&ss as *const libc::sockaddr_storage).cast(),
                    len,
                )
            };
            if rc == 0 {
                connected = Some(remote);
            } else {
                let e = io::Error::last_os_error();
                // No route to the remote yet: unconnected (see `bind_tunnel`).
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN)
                ) {
                    return Err(sys("connect to the remote")(e));
                }
            }
        }
        let local = bound_addr(&fd).map_err(sys("getsockname"))?;
        let (level, opt) = if local.is_ipv4() {
            (libc::IPPROTO_IP, libc::IP_RECVTOS)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS)
        };
        // Best effort (every Linux has it): without it every datagram reads as TOS 0, so an
        // outer CE is not carried onto the inner packet.
        let _ = sockopt::set(&fd, level, opt, &1 as &libc::c_int);
        let mut sock = Self::with_fd(fd, local, true);
        sock.connected = connected;
        // Best effort: a kernel without UDP_GRO (before 5.0) just delivers datagrams singly.
        let _ = sock.set_rx_gro(true);
        Ok(sock)
    }

    /// A second handle on the same socket (a duplicated descriptor, its own scratch) for
    /// another thread to send through; receiving stays with the original.
    pub fn try_clone(&self) -> io::Result<UdpTunnelSocket> {
        let mut clone = Self::with_fd(self.fd.try_clone()?, self.local, self.tx_gso);
        clone.claim = self.claim.clone();
        clone.connected = self.connected;
        clone.source_ports = self.source_ports.clone();
        Ok(clone)
    }

    /// A socket around a bound descriptor, with fresh batch scratch and GRO off.
    fn with_fd(fd: OwnedFd, local: SocketAddr, tx_gso: bool) -> UdpTunnelSocket {
        // SAFETY: iovec, mmsghdr and sockaddr_storage are plain C structs; all-zero is valid.
        let (iov, msgs, names) = unsafe {
            (
                Box::new(std::mem::zeroed()),
                Box::new(std::mem::zeroed()),
                Box::new(std::mem::zeroed()),
            )
        };
        Self {
            fd,
            local,
            stats: PortStats::default(),
            iov,
            msgs,
            names,
            cmsgs: Box::new([[0; CMSG_WORDS]; MAX_BATCH]),
            runs: Box::new([(0, 0); MAX_BATCH]),
            tx_gso,
            v6: local.is_ipv6(),
            gro: None,
            claim: None,
            connected: None,
            source_ports: None,
            order: Vec::with_capacity(MAX_BATCH),
            lane_of: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// The remote a tunnel port's socket is connected to ([`UdpTunnelSocket::bind_tunnel`]).
    pub fn connected_remote(&self) -> Option<IpAddr> {
        self.connected
    }

    /// The bound address (with the port the kernel picked, if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The descriptor (for `mio` and `poll`).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Turns `UDP_GRO` on or off (on after `bind` where the kernel has it): the kernel may hand over runs of datagrams from one sender coalesced
    /// (up to 64 KiB, when they arrive as one GSO skb, e.g. from a peer using UDP GSO over a
    /// veth); [`UdpTunnelSocket::recv_batch`] splits them back into one payload per buffer.
    /// Costs 8 held 64 KiB buffers; the datagrams of a coalesced run are copied once more
    /// (held buffer to batch buffer), a message of one datagram is not.
    pub fn set_rx_gro(&mut self, on: bool) -> io::Result<()> {
        let v: libc::c_int = on.into();
        sockopt::set(&self.fd, libc::SOL_UDP, UDP_GRO, &v)?;
        self.gro = on.then(|| Box::new(GroRx::new()));
        Ok(())
    }

    /// Turns UDP GSO batching of sends on or off (default on).
    pub fn set_tx_gso(&mut self, on: bool) {
        self.tx_gso = on;
    }

    /// Counters since the socket was opened (`tx_gso`: messages that carried several
    /// datagrams).
    pub fn stats(&self) -> PortStats {
        self.stats
    }

    /// Receives datagram payloads into the batch's spare slots. The payload appended at batch
    /// index `k` came from `srcs[k]` (so `srcs` is indexed like the batch). Returns how many
    /// were added; fewer than the room means drained. Datagrams larger than a buffer are
    /// counted in `rx_truncated` and dropped.
    pub fn recv_batch(&mut self, batch: &mut Batch, srcs: &mut [SocketAddr]) -> io::Result<usize> {
        self.recv_batch_tos(batch, srcs, &mut [])
    }

    /// [`UdpTunnelSocket::recv_batch`], also writing the TOS byte (IPv6: traffic class) each
    /// datagram arrived with to `tos[k]`, as far as `tos` reaches.
    pub fn recv_batch_tos(
        &mut self,
        batch: &mut Batch,
        srcs: &mut [SocketAddr],
        tos: &mut [u8],
    ) -> io::Result<usize> {
        if self.gro.is_some() {
            return self.recv_batch_gro(batch, srcs, tos);
        }
        let mut added = 0;
        loop {
            let base = batch.len();
            let want = batch
                .room()
                .min(srcs.len().saturating_sub(base))
                .min(MAX_BATCH);
            if want == 0 {
                return Ok(added);
            }
            let mut ptrs = [std::ptr::null_mut::<u8>(); MAX_BATCH];
            for (i, slot) in batch.spares_mut().iter_mut().take(want).enumerate() {
                let space = slot.rx_space();
                ptrs[i] = space.as_mut_ptr();
                self.iov[i] = libc::iovec {
                    iov_base: space.as_mut_ptr().cast(),
                    iov_len: space.len(),
                };
                let hdr = &mut self.msgs[i].msg_hdr;
                hdr.msg_iov = &mut self.iov[i];
                hdr.msg_iovlen = 1;
                hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
                hdr.msg_controllen = size_of::<[u64; CMSG_WORDS]>();
                hdr.msg_flags = 0;
            }
            // SAFETY: msgs[..want] are initialised above and point into the batch's spare
            // buffers, `names` and `cmsgs`, all live and exclusively borrowed for the call.
            let got = match unsafe {
                recv_msgs(
                    self.fd.as_raw_fd(),
                    &mut self.msgs[..],
                    want,
                    &mut self.stats,
                )
            } {
                Received::Got(n) => n,
                Received::Again => continue,
                Received::Drained => return Ok(added),
                Received::Failed(e) => return if added > 0 { Ok(added) } else { Err(e) },
            };
            // Keep the good ones, in order, compacting over truncated datagrams.
            let mut kept = 0;
            for i in 0..got {
                let len = self.msgs[i].msg_len as usize;
                let truncated = self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                let src = from_sockaddr(&self.names[i]);
                match (truncated, src) {
                    (false, Some(src)) => {
                        let slots = batch.spares_mut();
                        if kept != i {
                            slots.swap(kept, i);
                        }
                        let b = &mut slots[kept];
                        // len <= the buffer's frame room (not truncated), so this cannot fail.
                        let _ = b.set_len(len);
                        b.meta.wire_len = len as u32;
                        srcs[base + kept] = src;
                        if let Some(t) = tos.get_mut(base + kept) {
                            *t = rx_cmsgs(&self.msgs[i].msg_hdr).tos;
                        }
                        self.stats.rx_packets += 1;
                        self.stats.rx_bytes += len as u64;
                        kept += 1;
                    }
                    (true, _) => self.stats.rx_truncated += 1,
                    (false, None) => self.stats.rx_errors += 1,
                }
            }
            batch.commit_n(kept);
            added += kept;
            if got < want {
                return Ok(added);
            }
        }
    }

    /// [`UdpTunnelSocket::recv_batch`] with GRO on: coalesced messages are received into the
    /// scratch and split into the batch, one datagram per buffer; what does not fit waits for
    /// the next call (the batch is then full, so the caller comes back).
    fn recv_batch_gro(
        &mut self,
        batch: &mut Batch,
        srcs: &mut [SocketAddr],
        tos: &mut [u8],
    ) -> io::Result<usize> {
        let Some(g) = self.gro.as_deref_mut() else {
            return Ok(0);
        };
        let mut added = 0;
        loop {
            // Split what is held.
            while g.cur < g.n {
                let base = batch.len();
                if base >= srcs.len() {
                    return Ok(added);
                }
                let (len, seg) = (g.len[g.cur], g.seg[g.cur]);
                let Some(src) = g.src[g.cur] else {
                    self.stats.rx_errors += 1;
                    g.cur += 1;
                    g.off = 0;
                    continue;
                };
                if g.off >= len {
                    g.cur += 1;
                    g.off = 0;
                    continue;
                }
                let take = seg.min(len - g.off);
                let held = &mut g.bufs[g.cur];
                if g.off == 0 && take == len {
                    // One datagram: move the held buffer into the batch (no copy).
                    held.meta.wire_len = len as u32;
                    if batch.push_swap(held) {
                        g.off = len;
                        srcs[base] = src;
                        if let Some(t) = tos.get_mut(base) {
                            *t = g.tos[g.cur];
                        }
                        self.stats.rx_packets += 1;
                        self.stats.rx_bytes += len as u64;
                        added += 1;
                        continue;
                    }
                }
                let Some(b) = batch.spare() else {
                    return Ok(added);
                };
                let at = g.off;
                g.off += take;
                if b.set_frame(&held.data()[at..at + take]).is_err() {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                b.meta.wire_len = take as u32;
                srcs[base] = src;
                if let Some(t) = tos.get_mut(base) {
                    *t = g.tos[g.cur];
                }
                batch.commit();
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += take as u64;
                added += 1;
            }
            if batch.room() == 0 || batch.len() >= srcs.len() {
                return Ok(added);
            }
            // Receive more into the held buffers.
            if let Some(like) = batch.spare() {
                g.shape_like(like);
            }
            for i in 0..GRO_MSGS {
                let region = g.bufs[i].rx_space();
                self.iov[i] = libc::iovec {
                    iov_base: region.as_mut_ptr().cast(),
                    iov_len: region.len(),
                };
                let hdr = &mut self.msgs[i].msg_hdr;
                hdr.msg_iov = &mut self.iov[i];
                hdr.msg_iovlen = 1;
                hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdr.msg_control = g.cmsgs[i].as_mut_ptr().cast();
                hdr.msg_controllen = size_of::<[u64; GRO_CMSG_WORDS]>();
                hdr.msg_flags = 0;
            }
            // SAFETY: msgs[..GRO_MSGS] point into the held buffers, `names` and the control
            // buffers, all owned by the socket and exclusively borrowed for the call.
            let got = match unsafe {
                recv_msgs(
                    self.fd.as_raw_fd(),
                    &mut self.msgs[..],
                    GRO_MSGS,
                    &mut self.stats,
                )
            } {
                Received::Got(n) => n,
                Received::Again => continue,
                Received::Drained => return Ok(added),
                Received::Failed(e) => return if added > 0 { Ok(added) } else { Err(e) },
            };
            g.n = 0;
            g.cur = 0;
            g.off = 0;
            for i in 0..got {
                let m = &self.msgs[i];
                if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                let len = m.msg_len as usize;
                let c = rx_cmsgs(&m.msg_hdr);
                let seg = c.gro_segment.unwrap_or(len).max(1);
                self.stats.rx_gso += u64::from(len > seg);
                let k = g.n;
                if k != i {
                    g.bufs.swap(k, i);
                }
                // len <= the held buffer's room (not truncated), so this cannot fail.
                let _ = g.bufs[k].set_len(len);
                g.len[k] = len;
                g.seg[k] = seg;
                g.src[k] = from_sockaddr(&self.names[i]);
                g.tos[k] = c.tos;
                g.n += 1;
            }
            if got < GRO_MSGS && g.n == 0 {
                return Ok(added);
            }
        }
    }

    /// Sends each payload `batch[k]` to `dsts[k]` and empties the batch. Payloads without a
    /// destination (`dsts` shorter than the batch) are dropped as `Unreachable`. Runs of
    /// equal-size payloads to one destination go out as one UDP GSO message (module docs).
    pub fn send_batch(&mut self, batch: &mut Batch, dsts: &[SocketAddr]) -> TxReport {
        self.send_batch_tos(batch, dsts, &[])
    }

    /// [`UdpTunnelSocket::send_batch`] with payload `k` sent with the TOS byte (IPv6: traffic
    /// class) `tos[k]` (0, the socket's default, past the end of `tos`).
    pub fn send_batch_tos(
        &mut self,
        batch: &mut Batch,
        dsts: &[SocketAddr],
        tos: &[u8],
    ) -> TxReport {
        self.send_batch_flows(batch, dsts, tos, &[])
    }

    /// Spreads what this socket sends over `ports` ([`SourcePorts`]): a payload given a flow
    /// hash leaves from that flow's port instead of the socket's own. `None`: every payload
    /// leaves from the socket's port. Refused unless the set is bound to the socket's own
    /// address (the outer source address a peer filters on, and the same family).
    pub fn set_source_ports(&mut self, ports: Option<Arc<SourcePorts>>) -> io::Result<()> {
        if let Some(p) = &ports
            && p.local() != self.local.ip()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "source ports on {} for a socket on {}",
                    p.local(),
                    self.local.ip()
                ),
            ));
        }
        self.source_ports = ports;
        Ok(())
    }

    /// The source ports sends are spread over, if any.
    pub fn source_ports(&self) -> Option<&Arc<SourcePorts>> {
        self.source_ports.as_ref()
    }

    /// [`UdpTunnelSocket::send_batch_tos`] with payload `k` sent from the source port of the
    /// flow hash `flows[k]` (0 past the end of `flows`) where the socket has source ports
    /// ([`UdpTunnelSocket::set_source_ports`]); with `flows` empty or without source ports,
    /// from the socket's own port. The payloads of one lane go in one `sendmmsg` run, in
    /// their batch order.
    pub fn send_batch_flows(
        &mut self,
        batch: &mut Batch,
        dsts: &[SocketAddr],
        tos: &[u8],
        flows: &[u32],
    ) -> TxReport {
        let mut r = TxReport::default();
        let total = batch.len();
        let routed = total.min(dsts.len());
        r.dropped
            .add(TxDropReason::Unreachable, (total - routed) as u64);
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        match self.source_ports.take() {
            Some(ports) if !flows.is_empty() => {
                // A stable counting sort of the payloads by lane.
                let mut lane = std::mem::take(&mut self.lane_of);
                lane.clear();
                let mut starts = [0usize; SourcePorts::LANES_MAX + 1];
                for k in 0..routed {
                    let l = ports.lane_of(flows.get(k).copied().unwrap_or(0));
                    lane.push(l as u8);
                    starts[l + 1] += 1;
                }
                for l in 0..ports.len() {
                    starts[l + 1] += starts[l];
                }
                order.resize(routed, 0);
                let mut next = starts;
                for (k, &l) in lane.iter().enumerate() {
                    order[next[usize::from(l)]] = k;
                    next[usize::from(l)] += 1;
                }
                for l in 0..ports.len() {
                    let run = &order[starts[l]..starts[l + 1]];
                    if !run.is_empty() {
                        self.send_in_order(ports.fd(l), batch, run, dsts, tos, &mut r);
                    }
                }
                self.lane_of = lane;
                self.source_ports = Some(ports);
            }
            ports => {
                self.source_ports = ports;
                order.extend(0..routed);
                let fd = self.fd.as_raw_fd();
                self.send_in_order(fd, batch, &order, dsts, tos, &mut r);
            }
        }
        self.order = order;
        batch.clear();
        self.stats.account_tx(&r);
        r
    }

    /// Sends the payloads `batch[order[..]]`, in that order, through `fd`; adds to `r`.
    fn send_in_order(
        &mut self,
        fd: RawFd,
        batch: &Batch,
        order: &[usize],
        dsts: &[SocketAddr],
        tos: &[u8],
        r: &mut TxReport,
    ) {
        let tos_of = |k: usize| tos.get(k).copied().unwrap_or(0);
        let routed = order.len();
        let mut start = 0;
        // Payloads before this index are sent one per message (after a refused GSO send).
        let mut plain_until = 0;
        'chunks: while start < routed {
            let n = (routed - start).min(MAX_BATCH);
            let mut m = 0;
            let mut i = 0;
            while i < n {
                let first = i;
                let seg = batch[order[start + i]].len();
                let dst = &dsts[order[start + i]];
                let run_tos = tos_of(order[start + i]);
                let mut bytes = seg;
                i += 1;
                if self.tx_gso && seg > 0 && start + first >= plain_until {
                    // One message has one outer header: a run keeps one TOS.
                    while i < n
                        && i - first < MAX_GSO_SEGMENTS
                        && dsts[order[start + i]] == *dst
                        && tos_of(order[start + i]) == run_tos
                    {
                        let len = batch[order[start + i]].len();
                        if len == 0 || len > seg || bytes + len > MAX_GSO_BYTES {
                            break;
                        }
                        bytes += len;
                        i += 1;
                        if len < seg {
                            break; // only the last datagram of a run may be shorter
                        }
                    }
                }
                for k in first..i {
                    let d = batch[order[start + k]].data();
                    self.iov[k] = libc::iovec {
                        iov_base: d.as_ptr().cast_mut().cast(),
                        iov_len: d.len(),
                    };
                }
                let namelen = to_sockaddr(dst, &mut self.names[m]);
                let hdr = &mut self.msgs[m].msg_hdr;
                hdr.msg_iov = &mut self.iov[first];
                hdr.msg_iovlen = i - first;
                hdr.msg_name = (&mut self.names[m] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = namelen;
                hdr.msg_flags = 0;
                let segment = (i - first > 1).then_some(seg as u16);
                if segment.is_some() || run_tos != 0 {
                    let c = &mut self.cmsgs[m];
                    hdr.msg_controllen = write_tx_cmsgs(c, segment, run_tos, self.v6);
                    hdr.msg_control = c.as_mut_ptr().cast();
                } else {
                    hdr.msg_control = std::ptr::null_mut();
                    hdr.msg_controllen = 0;
                }
                self.runs[m] = (first, i);
                m += 1;
            }
            let mut done = 0;
            // A connected socket's report of an ICMP message fails one send: retried once.
            let mut retried = usize::MAX;
            while done < m {
                // SAFETY: msgs[done..m] are initialised above and point into the batch's
                // buffers, `iov`, `names` and `cmsgs`, live and unchanged for the call; the
                // kernel only reads them.
                let rc = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.msgs.as_mut_ptr().add(done),
                        (m - done) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc > 0 {
                    for msg in done..done + rc as usize {
                        let (a, b) = self.runs[msg];
                        r.sent += b - a;
                        self.stats.tx_gso += u64::from(b - a > 1);
                        for k in a..b {
                            r.bytes += batch[order[start + k]].len() as u64;
                        }
                    }
                    done += rc as usize;
                    continue;
                }
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if errno == libc::EINTR {
                    continue;
                }
                if is_icmp_report(errno) && retried != done {
                    retried = done;
                    continue;
                }
                let (a, b) = self.runs[done];
                if b - a > 1 && !matches!(errno, libc::EAGAIN | libc::ENOBUFS) {
                    // The kernel refused the GSO message (e.g. a segment above the path
                    // MTU): resend that run datagram by datagram, from a fresh chunk.
                    plain_until = start + b;
                    start += a;
                    continue 'chunks;
                }
                r.dropped
                    .add(TxDropReason::from_errno(errno), (b - a) as u64);
                done += 1;
            }
            start += n;
        }
    }
}

/// What the control messages of a received message say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RxCmsgs {
    /// The segment size of a coalesced message (`UDP_GRO`).
    gro_segment: Option<usize>,
    /// The TOS byte (IPv6: traffic class) it arrived with; 0 when not told.
    tos: u8,
}

/// Reads the `UDP_GRO` and `IP_TOS` / `IPV6_TCLASS` control messages of a received message.
fn rx_cmsgs(hdr: &libc::msghdr) -> RxCmsgs {
    let mut out = RxCmsgs::default();
    // SAFETY: hdr is a msghdr the kernel just filled: msg_control/msg_controllen describe
    // the valid control data, which the CMSG_* walkers stay within; each value read is
    // within its cmsg (IP_TOS carries one byte, the others an int).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_UDP, UDP_GRO) => {
                    let v = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    out.gro_segment = usize::try_from(v).ok().filter(|&v| v > 0);
                }
                (libc::IPPROTO_IP, libc::IP_TOS) => out.tos = *data,
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                    out.tos = std::ptr::read_unaligned(data.cast::<libc::c_int>()) as u8;
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    out
}

/// Writes one control message carrying `value` at byte `at` of `buf` (8-aligned); returns
/// where the next one goes (`CMSG_SPACE`).
fn put_cmsg(
    buf: &mut [u64; CMSG_WORDS],
    at: usize,
    level: libc::c_int,
    ty: libc::c_int,
    value: &[u8],
) -> usize {
    let head = size_of::<libc::cmsghdr>();
    let next = at + head + value.len().next_multiple_of(8);
    assert!(
        at.is_multiple_of(8) && next <= CMSG_WORDS * 8,
        "control buffer too small"
    );
    let hdr = libc::cmsghdr {
        // CMSG_LEN: the header and the value, without trailing padding.
        cmsg_len: head + value.len(),
        cmsg_level: level,
        cmsg_type: ty,
    };
    // SAFETY: checked above: the header (alignment 8) and the value right behind it
    // (CMSG_DATA) lie within `buf`, whose start is 8-aligned, as is `at`.
    unsafe {
        let p = buf.as_mut_ptr().cast::<u8>().add(at);
        std::ptr::write(p.cast::<libc::cmsghdr>(), hdr);
        std::ptr::copy_nonoverlapping(value.as_ptr(), p.add(head), value.len());
    }
    next
}

/// Writes the control messages of one sent message into `buf`: `SOL_UDP`/`UDP_SEGMENT` with
/// `segment`, and the TOS (`IP_TOS`, IPv6 `IPV6_TCLASS`) when not 0. Returns their length.
fn write_tx_cmsgs(buf: &mut [u64; CMSG_WORDS], segment: Option<u16>, tos: u8, v6: bool) -> usize {
    *buf = [0; CMSG_WORDS];
    let mut at = 0;
    if let Some(size) = segment {
        at = put_cmsg(buf, at, libc::SOL_UDP, UDP_SEGMENT, &size.to_ne_bytes());
    }
    if tos != 0 {
        let (level, ty) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
        } else {
            (libc::IPPROTO_IP, libc::IP_TOS)
        };
        at = put_cmsg(buf, at, level, ty, &libc::c_int::from(tos).to_ne_bytes());
    }
    at
}

impl_mio_source!(UdpTunnelSocket);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        for a in [
            "192.0.2.7:4789".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:4789".parse().unwrap(),
        ] {
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            to_sockaddr(&a, &mut ss);
            assert_eq!(from_sockaddr(&ss), Some(a));
        }
    }

    /// The control messages of a sent message, as the kernel's `CMSG_*` walk reads them: the
    /// segment size and the TOS, each only when there is one to send.
    #[test]
    fn tx_cmsgs_carry_the_segment_size_and_the_tos() {
        let walk = |buf: &mut [u64; CMSG_WORDS], len: usize| {
            // SAFETY: msghdr is plain data; all-zero is valid.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_control = buf.as_mut_ptr().cast();
            hdr.msg_controllen = len;
            let mut out = Vec::new();
            // SAFETY: the control data is `buf[..len]`, which the walkers stay within.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&hdr);
                while !c.is_null() {
                    let n = (*c).cmsg_len - size_of::<libc::cmsghdr>();
                    let data = std::slice::from_raw_parts(libc::CMSG_DATA(c), n).to_vec();
                    out.push(((*c).cmsg_level, (*c).cmsg_type, data));
                    c = libc::CMSG_NXTHDR(&hdr, c);
                }
            }
            out
        };
        let mut buf = [0u64; CMSG_WORDS];
        assert_eq!(write_tx_cmsgs(&mut buf, None, 0, false), 0);
        let len = write_tx_cmsgs(&mut buf, Some(1400), 0, false);
        assert_eq!(
            walk(&mut buf, len),
            vec![(libc::SOL_UDP, UDP_SEGMENT, 1400u16.to_ne_bytes().to_vec())]
        );
        let len = write_tx_cmsgs(&mut buf, Some(1400), 2, false);
        assert_eq!(len, CMSG_WORDS * 8);
        assert_eq!(
            walk(&mut buf, len),
            vec![
                (libc::SOL_UDP, UDP_SEGMENT, 1400u16.to_ne_bytes().to_vec()),
                (libc::IPPROTO_IP, libc::IP_TOS, 2i32.to_ne_bytes().to_vec()),
            ]
        );
        let len = write_tx_cmsgs(&mut buf, None, 3, true);
        assert_eq!(
            walk(&mut buf, len),
            vec![(
                libc::IPPROTO_IPV6,
                libc::IPV6_TCLASS,
                3i32.to_ne_bytes().to_vec()
            )]
        );
    }

    /// A lone 60000-byte datagram (a tunnel super-frame) reaches the batch in the very buffer
    /// the kernel wrote it into: no copy on the way.
    #[test]
    fn gro_lone_datagram_is_moved_not_copied() {
        let mut tx = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut rx = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        rx.set_rx_gro(true).unwrap();
        let to = rx.local_addr();
        let mut inb = Batch::new(4, 128, crate::buf::GSO_FRAME_ROOM);
        let mut srcs = vec![to; 4];
        // Nothing sent yet: the first call only shapes the held buffers.
        assert_eq!(rx.recv_batch(&mut inb, &mut srcs).unwrap(), 0);
        let held: Vec<*const u8> = rx
            .gro
            .as_deref_mut()
            .unwrap()
            .bufs
            .iter_mut()
            .map(|b| b.rx_space().as_ptr())
            .collect();
        let mut out = Batch::new(1, 128, crate::buf::GSO_FRAME_ROOM);
        let payload: Vec<u8> = (0..60000).map(|k| (k % 251) as u8).collect();
        assert!(out.push_copy(&payload));
        assert_eq!(tx.send_batch(&mut out, &[to]).sent, 1);
        let mut n = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while n == 0 && std::time::Instant::now() < deadline {
            n = rx.recv_batch(&mut inb, &mut srcs).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(n, 1);
        assert_eq!(inb[0].data(), &payload[..]);
        assert!(held.contains(&inb[0].data().as_ptr()), "moved, not copied");
        assert_eq!(rx.stats().rx_packets, 1);
    }
}
