//! AF_PACKET ports on an existing interface: an mmap receive ring (TPACKET_V2 by default,
//! TPACKET_V3 as an option, see `crate::rxring`) and batched transmit with `sendmmsg` on a
//! second, send-only socket.
//!
//! Receive: frames are copied out of the ring into the batch's buffers (re-inserting the VLAN
//! tag the kernel stripped into the frame header) and their memory is given back as soon as
//! they were taken. A batch may stop anywhere; the position is kept for the next call.
//!
//! - V2 (default): one MTU-sized slot per frame, ours as soon as the kernel wrote it, so a
//!   lone frame costs no wait (V3 made every hop wait for its block retire timer, 1 ms or
//!   more). Frames longer than a slot (GSO super-frames) are queued whole on the socket as
//!   well (`PACKET_COPY_THRESH`); their slot says `TP_STATUS_COPY` and the port reads the
//!   frame with `recvmsg` in ring order.
//! - V3: blocks sized from the MTU hold many frames and are handed over when full or when
//!   the retire timer fires: fewer wakeups and cheaper per frame under flood, a timer's wait
//!   at low load.
//!
//! A frame still cut (`tp_snaplen < tp_len`: a V3 block too small, the V2 copy queue full)
//! is counted in `rx_truncated` and dropped.
//!
//! Virtio-net headers (`vnet_hdr`, on by default): with `PACKET_VNET_HDR` on both sockets the
//! kernel writes a `struct virtio_net_hdr` in front of every frame in the ring (at
//! `tp_mac - 10`, verified against a TSO sender on a veth; in front of the data `recvmsg`
//! returns for V2 copies) and reads one in front of every frame sent. TSO/GSO super-frames
//! (up to 64 KiB, larger than the MTU) then arrive whole with `meta.gso` and leave whole (the
//! kernel or the peer segments them); partial checksums come with their position
//! (`meta.csum_start/offset`) and are finished by the kernel on send. V3 blocks are then
//! 128 KiB (one super-frame each) and the ring has at least 64 of them. The batches need
//! [`crate::GSO_FRAME_ROOM`] buffers, or super-frames are counted in `rx_truncated` and dropped.
//!
//! Host stack: by default ([`HostRx::Auto`]) a port on an interface without an address of the
//! host's own ends the kernel's processing of each received frame right after the port's
//! socket copied it (a drop filter on tc ingress, `crate::hostrx`), as on a bridge port.
//!
//! Transmit: `sendmmsg` (64 frames per call) on sockets bound with protocol 0 (so they never
//! queue received frames) with `PACKET_QDISC_BYPASS`. With vnet headers there are two: frames
//! with offload work (a GSO super-frame, a partial checksum) go through one with
//! `PACKET_VNET_HDR`, two iovecs per message (the header built from the buffer's meta, and the
//! frame: no copy); every other frame through one without, one iovec per message, which spares
//! the kernel a header copy and parse and keeps it on its single-segment path (about 10 % of
//! the forwarder's CPU per 64-byte frame). A batch goes out in order, in runs per socket. The receive socket sets
//! `PACKET_IGNORE_OUTGOING`, so the port does not see its own transmitted frames.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

use crate::buf::{Batch, GSO_FRAME_ROOM, MAX_BATCH};
use crate::iface::{self, IfaceError};
use crate::port::{Offloads, Port, PortStats, TxDropReason, TxReport, impl_mio_source};
use crate::rxring::{BlockRing, FrameRing, Mapping, Next, RxRing};
use crate::sockopt;
use crate::vnet::{VNET_HDR_LEN, VnetHdr};

/// Errors of opening an AF_PACKET port.
#[derive(Debug, Error)]
pub enum AfPacketError {
    /// A socket call failed; `what` names the step (e.g. "PACKET_RX_RING").
    #[error("AF_PACKET {what} on {ifname:?} failed: {source}")]
    Sys {
        what: &'static str,
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Looking up the interface failed (no such device, bad name).
    #[error(transparent)]
    Iface(#[from] IfaceError),
}

/// Layout of the receive ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// TPACKET_V2: a fixed-size slot per frame, visible to us as soon as the kernel wrote it.
    /// No added latency; every slot holds the largest frame, so fewer frames per MiB.
    V2,
    /// TPACKET_V3: variable-length frames packed in blocks, handed over when a block is full
    /// or `retire_tov_ms` passed. Dense, but a lone frame waits up to `retire_tov_ms`.
    V3,
}

/// How to open an AF_PACKET port.
#[derive(Debug, Clone)]
pub struct AfPacketConfig {
    /// Interface name.
    pub ifname: String,
    /// Receive ring layout; default [`RingKind::V2`] (no retire timer, low latency), or what
    /// the environment variable [`RING_ENV`] says (`v2`/`v3`), so a program that opens ports
    /// with the defaults (vswitchd) can be switched without a rebuild.
    pub ring: RingKind,
    /// Receive ring size in bytes (rounded to whole blocks). A small ring keeps frames
    /// cache-warm under overload; default 2 MiB. With `vnet_hdr` the ring has at least 64
    /// blocks (8 MiB of 128 KiB blocks), so a burst of 64 KiB super-frames fits.
    pub ring_bytes: usize,
    /// V3 block size; `None` sizes it from the MTU (at least 64 KiB).
    pub block_size: Option<usize>,
    /// V3: how long the kernel may hold a partly filled block before handing it over, in ms.
    pub retire_tov_ms: u32,
    /// V2 frame slot size; `None` sizes it from the MTU. A longer frame (a GSO super-frame)
    /// still arrives whole: the kernel marks its slot `TP_STATUS_COPY` and queues the whole
    /// frame on the socket (`PACKET_COPY_THRESH`), where the port reads it with `recvmsg`.
    pub frame_size: Option<usize>,
    /// V2 number of frame slots; `None`: `ring_bytes / frame_size`, at least 2048.
    pub frame_nr: Option<usize>,
    /// V2: receive buffer for the frames too long for a slot, in bytes (`SO_RCVBUFFORCE`);
    /// default 8 MiB, about 120 super-frames queued at once. A frame that finds it full is
    /// cut to the slot and counted `rx_truncated`.
    pub copy_rcvbuf: usize,
    /// Send with `PACKET_QDISC_BYPASS` (skip the device's qdisc).
    pub qdisc_bypass: bool,
    /// Put the interface in promiscuous mode while the port is open.
    pub promisc: bool,
    /// Exchange a virtio-net header with every frame (`PACKET_VNET_HDR` on both sockets):
    /// receive TSO/GSO super-frames whole (up to 64 KiB, `meta.gso`) and partial checksums
    /// with their position, and send them so; the kernel (or the NIC) segments and checksums.
    /// Receiving super-frames needs batches with [`crate::GSO_FRAME_ROOM`] buffers.
    pub vnet_hdr: bool,
    /// Have the kernel keep IPv4 UDP datagrams to this destination port out of the receive
    /// ring (a classic BPF filter on the socket): an uplink sharing the underlay with a kernel
    /// UDP tunnel socket (VXLAN, 4789) then never copies the tunnel's traffic to userspace.
    pub skip_udp_dst_port: Option<u16>,
    /// Whether the host's network stack still receives the frames the port receives (see
    /// [`HostRx`]); default [`HostRx::Auto`].
    pub host_rx: HostRx,
    /// Spread the interface's frames over several receive sockets by flow: the port opens a
    /// `PACKET_FANOUT_HASH` group, and each [`Port::try_clone_rx`] adds a socket (its own
    /// ring) to it, for another thread to read. The kernel picks a frame's socket by the
    /// symmetric hash of its flow, so a connection's frames stay on one socket, in order.
    /// Default off.
    pub fanout: bool,
}

/// What the host stack does with frames arriving on a port's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRx {
    /// [`HostRx::Drop`] unless the interface has an address the host uses (IPv4, or IPv6
    /// other than link-local) when the port opens: a pod-facing veth is the switch's alone, an
    /// uplink with the node's address keeps its host traffic. A failure to install the filter
    /// (no `CAP_BPF`) leaves the host stack on and is reported by [`AfPacketPort::host_rx_error`].
    Auto,
    /// Frames go on to the host stack after the port's socket took its copy (the kernel's
    /// default for a packet socket).
    Keep,
    /// Frames end after the port's socket took its copy (a `cls_bpf` drop on the clsact
    /// ingress hook, removed when the port closes), as on a Linux bridge port: no route
    /// lookup, no ARP answer, no wasted softirq time per frame under overload.
    Drop,
}

impl AfPacketConfig {
    /// Defaults: a TPACKET_V2 ring of 2 MiB (at least 128 slots of 64 KiB with virtio-net
    /// headers), qdisc bypass, promiscuous, virtio-net headers on. For V3: blocks sized from the
    /// MTU (or for 64 KiB super-frames), 1 ms retire timeout.
    pub fn new(ifname: &str) -> Self {
        Self {
            ifname: ifname.to_owned(),
            ring: default_ring(),
            ring_bytes: 2 << 20,
            block_size: None,
            retire_tov_ms: 1,
            frame_size: None,
            frame_nr: None,
            copy_rcvbuf: 8 << 20,
            qdisc_bypass: true,
            promisc: true,
            vnet_hdr: true,
            skip_udp_dst_port: None,
            host_rx: HostRx::Auto,
            fanout: false,
        }
    }
}

/// A classic BPF program that accepts every frame except untagged IPv4 UDP (first fragments
/// and unfragmented datagrams) to destination port `port`.
fn skip_udp_port_filter(port: u16) -> [libc::sock_filter; 11] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    use libc::{
        BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX,
        BPF_MSH, BPF_RET,
    };
    [
        op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 12), // EtherType
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 8, 0x0800),
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 23), // IP protocol
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 6, 17),
        op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 20), // fragment offset: later fragments pass
        op(BPF_JMP | BPF_JSET | BPF_K, 4, 0, 0x1fff),
        op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14), // X = IPv4 header length
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 16),  // UDP destination port (14 + X + 2)
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(port)),
        op(BPF_RET | BPF_K, 0, 0, 0),           // drop
        op(BPF_RET | BPF_K, 0, 0, 0x0004_0000), // accept (whole frame)
    ]
}

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: a classic BPF load of the frame's `pkt_type`.
const LOAD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
/// `pkt_type` of a frame the host sends (a tap's copy of it).
const PACKET_OUTGOING: u32 = 4;

/// Takes nothing (a further socket of a fanout group until it is in the group).
const DROP_ALL: [libc::sock_filter; 1] = [libc::sock_filter {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
}];

/// The receive socket's filter: UDP to `skip_udp` kept out, and with `outgoing` also frames
/// the host sends. A fanout group has `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` for that, but
/// kernels before 6.2 take the flag and do nothing with it, and inside a group the socket's
/// own `PACKET_IGNORE_OUTGOING` no longer counts. `None`: the socket takes every frame.
fn receive_filter(skip_udp: Option<u16>, outgoing: bool) -> Option<Vec<libc::sock_filter>> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    use libc::{BPF_ABS, BPF_H, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET};
    let mut prog = Vec::new();
    if outgoing {
        prog.extend([
            op(BPF_LD | BPF_H | BPF_ABS, 0, 0, LOAD_PKTTYPE),
            op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, PACKET_OUTGOING),
            op(BPF_RET | BPF_K, 0, 0, 0),
        ]);
    }
    match skip_udp {
        Some(port) => prog.extend(skip_udp_port_filter(port)),
        None if outgoing => prog.push(op(BPF_RET | BPF_K, 0, 0, 0x0004_0000)),
        None => return None,
    }
    Some(prog)
}

fn attach_filter(fd: &OwnedFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    sockopt::set(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Environment variable that overrides the default ring layout: `v2` or `v3`.
pub const RING_ENV: &str = "TAP_IO_AFPACKET_RING";

fn default_ring() -> RingKind {
    match std::env::var(RING_ENV).as_deref() {
        Ok("v3") | Ok("V3") => RingKind::V3,
        _ => RingKind::V2,
    }
}

/// `SOL_PACKET` option: prepend a `struct virtio_net_hdr` to every frame.
const PACKET_VNET_HDR: libc::c_int = 15;

/// Fewest ring blocks with virtio-net headers on (64 x 128 KiB = 8 MiB).
const MIN_VNET_BLOCKS: usize = 64;

/// Room in a block for the block descriptor and one frame's headers besides the frame.
const BLOCK_OVERHEAD: usize = 256;

/// Room in a V2 slot for its header, the virtio-net header and the kernel's alignment
/// padding in front of the frame (the frame starts at offset 76 with vnet headers, 66 without).
const SLOT_OVERHEAD: usize = 128;

/// Fewest V2 slots (a TCP window of MTU frames must fit: with 128, iperf3 without pod
/// offloads saw 370k retransmits in 8 s).
const MIN_FRAMES: usize = 2048;

/// `SOL_PACKET` option: queue frames too long for a V2 slot on the socket as well.
const PACKET_COPY_THRESH: libc::c_int = 7;

/// An AF_PACKET port.
pub struct AfPacketPort {
    name: String,
    ifindex: u32,
    mtu: usize,
    ring: RxRing,
    // Declared after `ring` so the mapping goes before the socket closes.
    rx_fd: OwnedFd,
    tx: Sender,
    stats: PortStats,
    vnet_hdr: bool,
    /// The ingress drop filter, while the host stack is kept off the port's frames.
    host_drop: Option<crate::hostrx::HostRxDrop>,
    /// Why `HostRx::Auto` left the host stack on although it meant to drop.
    host_rx_error: Option<String>,
    /// How the port was opened, and the fanout group its receive socket is in: what a
    /// further receive socket ([`Port::try_clone_rx`]) is opened with.
    cfg: AfPacketConfig,
    fanout_id: Option<u16>,
    /// Why the port has no fanout group although `cfg.fanout` asked for one.
    fanout_error: Option<String>,
}

/// The transmit half: protocol-0 packet sockets and the `sendmmsg` scratch arrays.
struct Sender {
    /// Frames that need no offload work: no virtio-net header, one iovec per message.
    fd: OwnedFd,
    /// Frames with offload work (a GSO super-frame, a partial checksum), sent with their
    /// virtio-net header; `None` when the port has vnet headers off.
    vnet_fd: Option<OwnedFd>,
    /// The interface had TCP segmentation offload on when the port opened.
    tso: bool,
    /// Per message: the frame, or the virtio-net header and the frame.
    iov: Box<[[libc::iovec; 2]; MAX_BATCH]>,
    msgs: Box<[libc::mmsghdr; MAX_BATCH]>,
    /// Per message: whether it goes out through `vnet_fd`.
    with_vnet: Box<[bool; MAX_BATCH]>,
    /// The virtio-net headers of the messages being sent.
    vnet: Box<[[u8; VNET_HDR_LEN]; MAX_BATCH]>,
}

/// A transmit-only handle on an AF_PACKET port ([`AfPacketPort::try_clone_tx`]): another
/// thread's way to send out of the port while the owner keeps receiving from its ring.
pub struct AfPacketTx {
    name: String,
    mtu: usize,
    tx: Sender,
    stats: PortStats,
}

// SAFETY: the iovec/mmsghdr scratch arrays only hold pointers into a batch for the duration
// of one `send` call; nothing is shared with another thread.
unsafe impl Send for AfPacketTx {}

// SAFETY: the ring mapping is owned exclusively by this port, and the iovec/mmsghdr scratch
// arrays only hold pointers into a batch for the duration of one `tx_batch` call; nothing is
// shared with another thread, so moving the port between threads is sound.
unsafe impl Send for AfPacketPort {}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("mtu", &self.mtu)
            .field("ring", &self.ring_geometry())
            .finish()
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: nothing is queued to the socket until it is bound with a protocol.
    // SAFETY: plain socket(2) call; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn bind_to(fd: &OwnedFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the stated length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Block size that holds one frame of this MTU with headers (with `vnet`, one 64 KiB GSO
/// super-frame and its virtio-net header): a power of two, at least 64 KiB.
fn block_size_for_mtu(mtu: usize, vnet: bool) -> usize {
    let frame = if vnet {
        (mtu + 14 + 4).max(GSO_FRAME_ROOM) + VNET_HDR_LEN
    } else {
        mtu + 14 + 4
    };
    (frame + BLOCK_OVERHEAD).next_power_of_two().max(1 << 16)
}

/// Maps the ring the kernel just allocated for `fd`.
fn map_ring(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
    sockopt::map_shared(fd, len, 0)
}

const PAGE: usize = 4096;

/// A TPACKET_V3 ring: blocks sized from the MTU, `ring_bytes` of them (with vnet at least 64).
fn setup_v3(fd: &OwnedFd, cfg: &AfPacketConfig, mtu: usize) -> io::Result<BlockRing> {
    let block_size = cfg
        .block_size
        .map(|b| b.next_multiple_of(PAGE).max(PAGE))
        .unwrap_or_else(|| block_size_for_mtu(mtu, cfg.vnet_hdr));
    // With vnet a block holds about one super-frame: keep room for a TCP burst of them
    // (with 16 blocks, 60k retransmits per 8 s of iperf3; with 64, none).
    let min_blocks = if cfg.vnet_hdr { MIN_VNET_BLOCKS } else { 4 };
    let block_nr = (cfg.ring_bytes / block_size).max(min_blocks);
    let frame_size = libc::TPACKET_ALIGNMENT * 128; // 2048: only checked, not used, by V3
    let req = libc::tpacket_req3 {
        tp_block_size: block_size as u32,
        tp_block_nr: block_nr as u32,
        tp_frame_size: frame_size as u32,
        tp_frame_nr: (block_size / frame_size * block_nr) as u32,
        tp_retire_blk_tov: cfg.retire_tov_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    sockopt::set(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
    let map = map_ring(fd, block_size * block_nr)?;
    Ok(BlockRing::new(map, block_size, block_nr))
}

/// V2 slot size for this MTU: a full frame (with a VLAN tag) plus the headers the kernel
/// puts in front of it, 16-aligned. Longer frames go through the socket queue.
fn frame_size_for_mtu(mtu: usize) -> usize {
    (mtu + 14 + 4 + SLOT_OVERHEAD).next_multiple_of(libc::TPACKET_ALIGNMENT)
}

/// V2 block size for a slot size: the kernel allocates blocks in power-of-two pages and slots
/// never straddle blocks, so a power of two holding about 16 slots wastes little (< 7%).
fn v2_block_size(frame_size: usize) -> usize {
    (frame_size * 16).next_power_of_two().max(PAGE)
}

/// A TPACKET_V2 ring of fixed slots.
fn setup_v2(fd: &OwnedFd, cfg: &AfPacketConfig, mtu: usize) -> io::Result<FrameRing> {
    let frame_size = cfg
        .frame_size
        .map(|f| f.next_multiple_of(libc::TPACKET_ALIGNMENT).max(256))
        .unwrap_or_else(|| frame_size_for_mtu(mtu));
    let block_size = v2_block_size(frame_size);
    let per_block = block_size / frame_size;
    let wanted = cfg
        .frame_nr
        .unwrap_or_else(|| (cfg.ring_bytes / frame_size).max(MIN_FRAMES))
        .max(1);
    let one: libc::c_int = 1;
    sockopt::set(fd, libc::SOL_PACKET, PACKET_COPY_THRESH, &one)?;
    let rcvbuf = libc::c_int::try_from(cfg.copy_rcvbuf / 2).unwrap_or(libc::c_int::MAX);
    // The kernel doubles the value; FORCE passes rmem_max (we run with CAP_NET_ADMIN, but
    // fall back to the capped option without it).
    if sockopt::set(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
        sockopt::set(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf)?;
    }
    let block_nr = wanted.div_ceil(per_block);
    let frame_nr = block_nr * per_block;
    let req = libc::tpacket_req {
        tp_block_size: block_size as u32,
        tp_block_nr: block_nr as u32,
        tp_frame_size: frame_size as u32,
        tp_frame_nr: frame_nr as u32,
    };
    sockopt::set(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
    let map = map_ring(fd, block_size * block_nr)?;
    Ok(FrameRing::new(map, block_size, frame_size, frame_nr))
}

/// A send-only packet socket on `ifindex` (bound with protocol 0, so it never queues received
/// frames), with `PACKET_VNET_HDR` when `vnet`.
fn tx_socket(ifindex: u32, vnet: bool, qdisc_bypass: bool) -> io::Result<OwnedFd> {
    let fd = packet_socket()?;
    let one: libc::c_int = 1;
    if vnet {
        sockopt::set(&fd, libc::SOL_PACKET, PACKET_VNET_HDR, &one)?;
    }
    if qdisc_bypass {
        sockopt::set(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)?;
    }
    let sndbuf: libc::c_int = 4 << 20;
    // Best effort: a larger send buffer only avoids ENOBUFS under bursts.
    let _ = sockopt::set(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf);
    bind_to(&fd, ifindex, 0)?;
    Ok(fd)
}

/// Puts a bound receive socket in a flow-hashed fanout group: a new one (`join` = `None`,
/// the kernel picks a free id) or the group `join`. Returns the group's id. Frames the
/// interface sends stay out of the group's sockets, as `PACKET_IGNORE_OUTGOING` keeps them
/// out of a lone socket (the group's hook replaces the socket's own).
fn join_fanout(fd: &OwnedFd, join: Option<u16>) -> io::Result<u16> {
    let mut flags = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    if join.is_none() {
        flags |= libc::PACKET_FANOUT_FLAG_UNIQUEID;
    }
    let arg = u32::from(join.unwrap_or(0)) | (flags << 16);
    sockopt::set(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
    let mut got: u32 = 0;
    sockopt::get_into(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &mut got)?;
    Ok((got & 0xffff) as u16)
}

/// Takes the next frame from the socket queue (where the kernel puts frames too long for a
/// V2 slot): the virtio-net header into `vnet` (when on), the frame into `room`. Returns the
/// frame's full length, which is more than `room` when it was cut.
fn recv_copy(
    fd: &OwnedFd,
    vnet_on: bool,
    vnet: &mut [u8; VNET_HDR_LEN],
    room: &mut [u8],
) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: vnet.as_mut_ptr().cast(),
            iov_len: VNET_HDR_LEN,
        },
        libc::iovec {
            iov_base: room.as_mut_ptr().cast(),
            iov_len: room.len(),
        },
    ];
    let skip = usize::from(!vnet_on);
    // SAFETY: msghdr is plain data; all-zero is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov[skip..].as_mut_ptr();
    msg.msg_iovlen = 2 - skip;
    // A pending socket error (ENETDOWN once the interface went down, even after it came back)
    // is reported by the first read instead of the frame, and cleared by it: read once more,
    // or this slot takes the frame of the next one from then on.
    let mut pending_error_read = false;
    loop {
        // SAFETY: the iovecs point at `vnet` and `room`, both live and writable for the call;
        // MSG_TRUNC only changes the returned length, the kernel writes within the iovecs.
        let rc = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if rc >= 0 {
            // With vnet the length includes the header.
            return Ok((rc as usize).saturating_sub(if vnet_on { VNET_HDR_LEN } else { 0 }));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Err(e),
            _ if !pending_error_read => pending_error_read = true,
            _ => return Err(e),
        }
    }
}

impl AfPacketPort {
    /// Opens a port on an existing interface.
    pub fn open(cfg: &AfPacketConfig) -> Result<Self, AfPacketError> {
        Self::open_in(cfg, None)
    }

    /// Opens the port, its receive socket in fanout group `join` when given (a further
    /// receive socket of a port), else in a new group when `cfg.fanout`.
    fn open_in(cfg: &AfPacketConfig, join: Option<u16>) -> Result<Self, AfPacketError> {
        let name = cfg.ifname.clone();
        let sys = |what: &'static str| {
            let ifname = name.clone();
            move |source: io::Error| AfPacketError::Sys {
                what,
                ifname,
                source,
            }
        };
        let ifindex = iface::ifindex(&name)?;
        let mtu = iface::mtu(&name)?;
        // Without TSO on the interface the kernel drops super-frames we send: say we take none.
        let tso = !cfg.vnet_hdr || iface::tso_enabled(&name).unwrap_or(true);

        let rx_fd = packet_socket().map_err(sys("socket"))?;
        let version = match cfg.ring {
            RingKind::V2 => libc::tpacket_versions::TPACKET_V2,
            RingKind::V3 => libc::tpacket_versions::TPACKET_V3,
        } as libc::c_int;
        sockopt::set(&rx_fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(sys("PACKET_VERSION"))?;
        let one: libc::c_int = 1;
        sockopt::set(&rx_fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(sys("PACKET_IGNORE_OUTGOING"))?;
        if cfg.vnet_hdr {
            // Must come before the ring is set up (the kernel refuses it afterwards).
            sockopt::set(&rx_fd, libc::SOL_PACKET, PACKET_VNET_HDR, &one)
                .map_err(sys("PACKET_VNET_HDR (rx)"))?;
        }
        let ring = match cfg.ring {
            RingKind::V3 => {
                RxRing::Blocks(setup_v3(&rx_fd, cfg, mtu).map_err(sys("rx ring (V3)"))?)
            }
            RingKind::V2 => {
                RxRing::Frames(setup_v2(&rx_fd, cfg, mtu).map_err(sys("rx ring (V2)"))?)
            }
        };
        let member = cfg.fanout || join.is_some();
        let filter = receive_filter(cfg.skip_udp_dst_port, member);
        // Attached before bind, so no unfiltered frame reaches the ring. A further socket of
        // a group takes nothing until it is in the group: alone it would get a copy of every
        // frame the group gets too.
        match (&filter, join) {
            (_, Some(_)) => attach_filter(&rx_fd, &DROP_ALL),
            (Some(f), None) => attach_filter(&rx_fd, f),
            (None, None) => Ok(()),
        }
        .map_err(sys("SO_ATTACH_FILTER"))?;
        bind_to(&rx_fd, ifindex, libc::ETH_P_ALL as u16).map_err(sys("bind (rx)"))?;
        if cfg.promisc {
            let mr = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            sockopt::set(&rx_fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)
                .map_err(sys("PACKET_ADD_MEMBERSHIP promisc"))?;
        }
        // After bind: the kernel takes only a running socket into a group (before Linux 6.13
        // an interface that is down has none). A port that cannot open its group runs with
        // one receive queue and says why; a further socket that cannot join fails.
        let mut fanout_error = None;
        let fanout_id = match (member, join) {
            (false, _) => None,
            (true, Some(id)) => {
                let id = join_fanout(&rx_fd, Some(id)).map_err(sys("PACKET_FANOUT"))?;
                if let Some(f) = &filter {
                    attach_filter(&rx_fd, f).map_err(sys("SO_ATTACH_FILTER"))?;
                }
                Some(id)
            }
            (true, None) => match join_fanout(&rx_fd, None) {
                Ok(id) => Some(id),
                Err(e) => {
                    fanout_error = Some(format!(
                        "PACKET_FANOUT: {e} (is {name} down? it must be up for a fanout group before Linux 6.13)"
                    ));
                    None
                }
            },
        };

        // Two send sockets: frames with offload work (GSO, a partial checksum) go with a
        // virtio-net header, all others without one (one iovec per message: the kernel's
        // single-segment path, and no header to copy in and parse per frame).
        let tx_fd = tx_socket(ifindex, false, cfg.qdisc_bypass).map_err(sys("tx socket"))?;
        let tx_vnet_fd = if cfg.vnet_hdr {
            Some(tx_socket(ifindex, true, cfg.qdisc_bypass).map_err(sys("tx socket (vnet)"))?)
        } else {
            None
        };

        // After the rx socket is bound: its tap comes before the ingress hook, so from here on
        // every frame reaches the ring whatever the filter does.
        let (host_drop, host_rx_error) = match cfg.host_rx {
            HostRx::Keep => (None, None),
            HostRx::Drop => (
                Some(
                    crate::hostrx::HostRxDrop::attach(ifindex)
                        .map_err(sys("host_rx drop filter"))?,
                ),
                None,
            ),
            HostRx::Auto => match crate::hostrx::has_host_address(&name) {
                Ok(true) => (None, None),
                Ok(false) => match crate::hostrx::HostRxDrop::attach(ifindex) {
                    Ok(f) => (Some(f), None),
                    Err(e) => (None, Some(format!("host_rx drop filter: {e}"))),
                },
                Err(e) => (None, Some(format!("interface addresses: {e}"))),
            },
        };

        Ok(Self {
            name,
            ifindex,
            mtu,
            ring,
            rx_fd,
            tx: Sender::new(tx_fd, tx_vnet_fd, tso),
            stats: PortStats::default(),
            vnet_hdr: cfg.vnet_hdr,
            host_drop,
            host_rx_error,
            cfg: cfg.clone(),
            fanout_id,
            fanout_error,
        })
    }

    /// Another receive socket of the port, in its fanout group, with its own ring and send
    /// sockets: for another thread, which gets the flows the kernel's hash gives it. The
    /// host stack's handling stays the first socket's (`HostRx::Keep` here: the first one
    /// installed or left the filter). Fails unless the port was opened with `fanout`.
    pub fn try_clone_rx(&self) -> Result<AfPacketPort, AfPacketError> {
        let id = self.fanout_id.ok_or_else(|| AfPacketError::Sys {
            what: "PACKET_FANOUT",
            ifname: self.name.clone(),
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "the port was opened without a fanout group",
            ),
        })?;
        let cfg = AfPacketConfig {
            host_rx: HostRx::Keep,
            ..self.cfg.clone()
        };
        Self::open_in(&cfg, Some(id))
    }

    /// The fanout group of the port's receive socket, if it has one.
    pub fn fanout_id(&self) -> Option<u16> {
        self.fanout_id
    }

    /// Why the port runs with one receive queue although it was opened with `fanout`.
    pub fn fanout_error(&self) -> Option<&str> {
        self.fanout_error.as_deref()
    }

    /// True while the host stack is kept off the port's frames (the ingress drop filter is on).
    pub fn host_rx_dropped(&self) -> bool {
        self.host_drop.is_some()
    }

    /// Why [`HostRx::Auto`] could not keep the host stack off the port's frames, if it failed.
    pub fn host_rx_error(&self) -> Option<&str> {
        self.host_rx_error.as_deref()
    }

    /// A transmit-only handle on the same interface (a duplicate of the send socket, with its
    /// own scratch), for a thread other than the one receiving from the ring.
    pub fn try_clone_tx(&self) -> io::Result<AfPacketTx> {
        Ok(AfPacketTx {
            name: self.name.clone(),
            mtu: self.mtu,
            tx: self.tx.try_clone()?,
            stats: PortStats::default(),
        })
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The receive descriptor (for `mio` and `poll`).
    pub fn raw_fd(&self) -> RawFd {
        self.rx_fd.as_raw_fd()
    }

    /// Ring geometry: (block size, number of blocks, frame slot size or 0 for V3).
    pub fn ring_geometry(&self) -> (usize, usize, usize) {
        match &self.ring {
            RxRing::Blocks(r) => (r.block_size, r.block_nr, 0),
            RxRing::Frames(r) => (r.block_size, r.frame_nr / r.frames_per_block, r.frame_size),
        }
    }

    /// Adds the kernel's drop counter (frames lost because the ring was full) to the stats.
    /// The kernel resets it on every read.
    pub fn poll_kernel_stats(&mut self) {
        // SAFETY: tpacket_stats_v3 is plain data; all-zero is valid.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        if sockopt::get_into(
            &self.rx_fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st,
        )
        .is_ok()
        {
            self.stats.rx_kernel_drops += u64::from(st.tp_drops);
        }
    }

    /// The pending socket error (e.g. `ENETDOWN` after the interface went down), if any;
    /// reading it clears it. Call it when `poll` reports an error condition on the fd.
    pub fn take_error(&mut self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let rc = sockopt::get_into(&self.rx_fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut err);
        if rc.is_ok() && err != 0 {
            self.stats.rx_errors += 1;
            return Some(io::Error::from_raw_os_error(err));
        }
        None
    }
}

impl_mio_source!(AfPacketPort);

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let mut n = 0;
        let mut losing = false;
        while batch.room() > 0 {
            let f = match self.ring.next_frame() {
                Next::Empty => break,
                Next::Corrupt => {
                    self.stats.rx_errors += 1;
                    continue;
                }
                Next::Frame(f) => f,
            };
            losing |= f.status & libc::TP_STATUS_LOSING != 0;
            let Some(buf) = batch.spare() else { break };
            let space = buf.rx_space();
            let tag = f.vlan.map_or(0, |_| 4);
            let mut raw_vnet = [0u8; VNET_HDR_LEN];
            let total = if f.status & libc::TP_STATUS_COPY != 0 {
                // Too long for a slot (a super-frame): the whole frame waits on the socket
                // queue, in ring order; take it from there (always, to stay in step).
                let room = space.get_mut(tag..).unwrap_or_default();
                match recv_copy(&self.rx_fd, self.vnet_hdr, &mut raw_vnet, room) {
                    Ok(len) if len >= 12 && len <= room.len() => len + tag,
                    Ok(_) => {
                        self.stats.rx_truncated += 1;
                        continue;
                    }
                    Err(_) => {
                        self.stats.rx_errors += 1;
                        continue;
                    }
                }
            } else {
                // With PACKET_VNET_HDR the kernel writes the virtio-net header right in front
                // of the frame (at tp_mac - 10), inside the space it reserved for it.
                if self.vnet_hdr {
                    match f.before {
                        Some(b) if b.len() == VNET_HDR_LEN => raw_vnet.copy_from_slice(b),
                        _ => {
                            self.stats.rx_errors += 1;
                            continue;
                        }
                    }
                }
                let (frame, snap) = (f.bytes, f.bytes.len());
                if snap < f.wire_len || snap + tag > space.len() || snap < 12 {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                // Leave the tag's room after the MAC addresses; it is filled in below.
                space[..12].copy_from_slice(&frame[..12]);
                space[12 + tag..snap + tag].copy_from_slice(&frame[12..]);
                snap + tag
            };
            if let Some((tpid, tci)) = f.vlan {
                if tag > 0 && f.status & libc::TP_STATUS_COPY != 0 {
                    // recv_copy wrote the frame 4 bytes in: move the MAC addresses up.
                    space.copy_within(4..16, 0);
                }
                space[12..14].copy_from_slice(&tpid.to_be_bytes());
                space[14..16].copy_from_slice(&tci.to_be_bytes());
            }
            let vh = self.vnet_hdr.then(|| VnetHdr::parse(&raw_vnet));
            // total <= space.len(), so set_len cannot fail.
            let _ = buf.set_len(total);
            buf.meta.wire_len = total as u32;
            buf.meta.vlan_tci = f.vlan.map(|(_, tci)| tci);
            if let Some(vh) = vh {
                if vh.to_meta(&mut buf.meta, tag as u16).is_err() {
                    self.stats.rx_bad_vnet += 1;
                    continue;
                }
                if buf.meta.gso.is_some() {
                    self.stats.rx_gso += 1;
                }
            }
            if f.status & libc::TP_STATUS_CSUMNOTREADY != 0 {
                buf.meta.csum_not_ready = true;
            } else if f.status & libc::TP_STATUS_CSUM_VALID != 0 {
                buf.meta.csum_valid = true;
            }
            if buf.meta.csum_not_ready {
                self.stats.rx_csum_not_ready += 1;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += total as u64;
            batch.commit();
            n += 1;
        }
        // Give finished memory back now rather than on the next call.
        self.ring.release_done();
        if losing {
            self.poll_kernel_stats();
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        self.tx.send(batch, &mut self.stats, &self.name)
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Some(AfPacketPort::try_clone_tx(self).map(|t| Box::new(t) as Box<dyn Port + Send>))
    }

    fn try_clone_rx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        self.fanout_id?;
        Some(
            AfPacketPort::try_clone_rx(self)
                .map(|p| Box::new(p) as Box<dyn Port + Send>)
                .map_err(io::Error::other),
        )
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.rx_fd.as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn refresh_stats(&mut self) {
        self.poll_kernel_stats();
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn offloads(&self) -> Offloads {
        self.tx.offloads()
    }
}

impl Sender {
    /// Super-frames only where the interface segments them (TSO on); partial checksums
    /// wherever the virtio-net header is on.
    fn offloads(&self) -> Offloads {
        let vnet = self.vnet_fd.is_some();
        Offloads {
            gso: vnet && self.tso,
            csum: vnet,
        }
    }

    fn new(fd: OwnedFd, vnet_fd: Option<OwnedFd>, tso: bool) -> Sender {
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let (iov, msgs) = unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
        Sender {
            fd,
            vnet_fd,
            tso,
            iov,
            msgs,
            with_vnet: Box::new([false; MAX_BATCH]),
            vnet: Box::new([[0u8; VNET_HDR_LEN]; MAX_BATCH]),
        }
    }

    /// The same sockets (duplicated descriptors) with scratch of its own.
    fn try_clone(&self) -> io::Result<Sender> {
        let vnet_fd = match &self.vnet_fd {
            Some(fd) => Some(fd.try_clone()?),
            None => None,
        };
        Ok(Sender::new(self.fd.try_clone()?, vnet_fd, self.tso))
    }

    fn send(&mut self, batch: &mut Batch, stats: &mut PortStats, ifname: &str) -> TxReport {
        let mut r = TxReport::default();
        for chunk in batch.packets().chunks(MAX_BATCH) {
            let n = chunk.len();
            for (i, p) in chunk.iter().enumerate() {
                let d = p.data();
                let frame = libc::iovec {
                    iov_base: d.as_ptr().cast_mut().cast(),
                    iov_len: d.len(),
                };
                let vh = VnetHdr::from_meta(&p.meta);
                // A frame without offload work has an all-zero header: it means nothing to
                // the kernel, so the frame goes through the header-less socket.
                let with_vnet = self.vnet_fd.is_some() && vh != VnetHdr::default();
                self.with_vnet[i] = with_vnet;
                let iovlen = if with_vnet {
                    self.vnet[i] = vh.emit();
                    if p.meta.gso.is_some() {
                        stats.tx_gso += 1;
                    }
                    self.iov[i] = [
                        libc::iovec {
                            iov_base: self.vnet[i].as_mut_ptr().cast(),
                            iov_len: VNET_HDR_LEN,
                        },
                        frame,
                    ];
                    2
                } else {
                    self.iov[i][0] = frame;
                    1
                };
                let hdr = &mut self.msgs[i].msg_hdr;
                hdr.msg_iov = self.iov[i].as_mut_ptr();
                hdr.msg_iovlen = iovlen;
                hdr.msg_name = std::ptr::null_mut();
                hdr.msg_namelen = 0;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
            }
            // Runs of messages for the same socket, in order: frames leave in batch order.
            let mut start = 0;
            while start < n {
                let with_vnet = self.with_vnet[start];
                let end = (start + 1..n)
                    .find(|&j| self.with_vnet[j] != with_vnet)
                    .unwrap_or(n);
                let fd = match (&self.vnet_fd, with_vnet) {
                    (Some(v), true) => v.as_raw_fd(),
                    _ => self.fd.as_raw_fd(),
                };
                send_run(
                    fd,
                    &mut self.msgs[start..end],
                    &chunk[start..end],
                    ifname,
                    &mut r,
                );
                start = end;
            }
        }
        batch.clear();
        stats.account_tx(&r);
        r
    }
}

/// Sends `msgs` (built for `frames`) with as few `sendmmsg` calls as the kernel allows,
/// counting what went and what was refused into `r`.
fn send_run(
    fd: RawFd,
    msgs: &mut [libc::mmsghdr],
    frames: &[crate::PacketBuf],
    ifname: &str,
    r: &mut TxReport,
) {
    let n = msgs.len();
    let mut done = 0;
    // Asked once per run, on the first refusal only.
    let mut running: Option<bool> = None;
    while done < n {
        // SAFETY: msgs[done..n] are initialised by the caller and point (via their iovecs)
        // into the batch's buffers and the sender's header scratch, which are borrowed and
        // unchanged for the call; the kernel only reads them (and writes msg_len).
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr().add(done),
                (n - done) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if rc > 0 {
            let k = rc as usize;
            r.sent += k;
            r.bytes += frames[done..done + k]
                .iter()
                .map(|p| p.len() as u64)
                .sum::<u64>();
            done += k;
            continue;
        }
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if errno == libc::EINTR {
            continue;
        }
        let mut reason = TxDropReason::from_errno(errno);
        // With the qdisc bypassed, an interface without carrier (a veth whose pod end is down)
        // refuses every frame with ENOBUFS, as a full queue would: ask the interface which.
        if reason == TxDropReason::QueueFull
            && !*running.get_or_insert_with(|| !matches!(iface::is_running(ifname), Ok(false)))
        {
            reason = TxDropReason::LinkDown;
        }
        if reason == TxDropReason::LinkDown {
            // Every following frame would fail the same way: one syscall is enough.
            r.dropped.add(reason, (n - done) as u64);
            done = n;
        } else {
            r.dropped.add(reason, 1);
            done += 1;
        }
    }
}

impl AfPacketTx {
    /// A send-only AF_PACKET handle on `ifindex` (no virtio-net header, qdisc bypass), for a
    /// port of another kind (AF_XDP) that cannot share its own transmit ring between threads.
    pub(crate) fn open(name: &str, ifindex: u32, mtu: usize) -> io::Result<AfPacketTx> {
        Ok(AfPacketTx {
            name: name.to_owned(),
            mtu,
            tx: Sender::new(tx_socket(ifindex, false, true)?, None, false),
            stats: PortStats::default(),
        })
    }
}

impl AfPacketTx {
    /// A send-only handle with virtio-net headers (GSO super-frames when the interface has
    /// TSO on, partial checksums always), qdisc bypass: the transmit half of an AF_XDP port
    /// whose frames should leave with the offloads an AF_PACKET port would give them.
    pub(crate) fn open_offloading(name: &str, ifindex: u32, mtu: usize) -> io::Result<AfPacketTx> {
        let tso = iface::tso_enabled(name).unwrap_or(true);
        Ok(AfPacketTx {
            name: name.to_owned(),
            mtu,
            tx: Sender::new(
                tx_socket(ifindex, false, true)?,
                Some(tx_socket(ifindex, true, true)?),
                tso,
            ),
            stats: PortStats::default(),
        })
    }

    /// Another handle on the same sockets, with scratch of its own (another thread's).
    pub(crate) fn try_clone(&self) -> io::Result<AfPacketTx> {
        Ok(AfPacketTx {
            name: self.name.clone(),
            mtu: self.mtu,
            tx: self.tx.try_clone()?,
            stats: PortStats::default(),
        })
    }
}

impl Port for AfPacketTx {
    fn name(&self) -> &str {
        &self.name
    }

    /// Never receives: the owning [`AfPacketPort`] does.
    fn rx_batch(&mut self, _batch: &mut Batch) -> io::Result<usize> {
        Ok(0)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        self.tx.send(batch, &mut self.stats, &self.name)
    }

    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn offloads(&self) -> Offloads {
        self.tx.offloads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter every fanout member gets drops the host's outgoing frames by itself
    /// (kernels before 6.2 take the group's flag and ignore it): a lone socket with it and
    /// without `PACKET_IGNORE_OUTGOING` sees a frame arriving on the interface but not one
    /// sent out of it; without the filter it sees both.
    #[test]
    fn the_member_filter_keeps_sent_frames_out() {
        use crate::netns::{RawEth, in_private_netns, require_root, sh, test_frame};
        if !require_root("the_member_filter_keeps_sent_frames_out") {
            return;
        }
        in_private_netns(|| {
            sh("ip link add va type veth peer name vb && ip link set va up && ip link set vb up")
                .unwrap();
            let out_of_va = RawEth::bind("va").unwrap();
            let into_va = RawEth::bind("vb").unwrap();
            let ifindex = crate::iface::ifindex("va").unwrap();
            for filtered in [false, true] {
                let fd = packet_socket().unwrap();
                if filtered {
                    attach_filter(&fd, &receive_filter(None, true).unwrap()).unwrap();
                }
                bind_to(&fd, ifindex, libc::ETH_P_ALL as u16).unwrap();
                out_of_va.send(&test_frame([2; 6], [1; 6], 10, 60)).unwrap();
                into_va.send(&test_frame([1; 6], [2; 6], 20, 60)).unwrap();
                let mut seen = Vec::new();
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
                let mut buf = [0u8; 2048];
                while std::time::Instant::now() < deadline {
                    // SAFETY: buf is writable for its length for the call.
                    let n = unsafe {
                        libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    if n >= 15 && buf[12..14] == [0x88, 0xb5] {
                        seen.push(buf[14]);
                    } else if n < 0 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
                let want: &[u8] = if filtered { &[20] } else { &[10, 20] };
                assert_eq!(seen, want, "filtered: {filtered}");
            }
        })
        .unwrap();
    }

    #[test]
    fn blocks_hold_a_full_frame() {
        assert_eq!(block_size_for_mtu(1500, false), 1 << 16);
        assert_eq!(block_size_for_mtu(9000, false), 1 << 16);
        assert_eq!(block_size_for_mtu(65536, false), 1 << 17);
        // A 64 KiB super-frame plus its virtio-net header needs the next size up.
        assert_eq!(block_size_for_mtu(1500, true), 1 << 17);
    }

    #[test]
    fn v2_slots_hold_a_full_frame_and_fill_their_blocks() {
        for mtu in [1500, 9000, 65535] {
            let slot = frame_size_for_mtu(mtu);
            let room = mtu + 18;
            // The frame starts at most 80 bytes into the slot (header, vnet header, padding).
            assert!(
                slot >= room + 80 && slot.is_multiple_of(libc::TPACKET_ALIGNMENT),
                "{mtu}"
            );
            let block = v2_block_size(slot);
            assert!(block.is_power_of_two() && block >= PAGE);
            let wasted = block % slot;
            assert!(wasted * 14 < block, "{mtu}: {wasted} of {block} unused");
        }
    }
}
