//! AF_XDP ports on an existing interface (made for the switch side of a veth pair).
//!
//! Why: with an AF_PACKET port the kernel builds an skb for every received frame and runs the
//! receive path (RPS-steered to the switch's core) before the ring may refuse it, so under
//! overload the switch's core spends itself on frames it then drops (receive livelock). Here
//! a native XDP program on the interface redirects every frame into the port's XSK socket
//! (`crate::xdpprog`): on a veth that runs in the veth's NAPI poll, on the sender's CPU, and a
//! full rx ring (or an empty fill ring) drops the frame right there, counted by the kernel
//! (`XDP_STATISTICS`, read into `rx_kernel_drops`).
//!
//! Copy mode (`XDP_COPY`, what veth offers): the kernel copies each frame into a UMEM chunk
//! the fill ring gave it; the port copies it on into the batch and hands the chunk straight
//! back. Transmit: frames are copied into free UMEM chunks, posted on the tx ring, and one
//! `sendto` per 32 frames makes the kernel build the skbs and send them (`XDP_USE_NEED_WAKEUP`:
//! only when the ring says it needs the kick); chunks come back on the completion ring.
//! Batches, fixed rings and a preallocated free list: nothing is allocated per packet.
//!
//! Limits: one receive queue (interfaces with more are refused); frames up to the UMEM chunk
//! (MTU up to 3800); no super-frames (the kernel turns the peer's GSO off while the program is
//! attached). XDP carries no checksum state: a frame a pod sent with a partial checksum (tx
//! checksum offload on) is recognised from its bytes (`encap::partial_csum`: the field holds
//! exactly the pseudo-header sum and does not verify) and marked `csum_not_ready`, so the
//! output finishes it; every frame goes to the switch, none to the host stack, so
//! interfaces with a host address are refused. Another forwarding thread sends through an
//! AF_PACKET socket on the same interface ([`Port::try_clone_tx`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::buf::Batch;
use crate::iface::{self, IfaceError};
use crate::port::{Port, PortStats, TxDropReason, TxReport, impl_mio_source};
use crate::sockopt;
use crate::xdpprog::XdpRedirect;
use crate::xskring::{Umem, XskRing};

/// Errors of opening an AF_XDP port.
#[derive(Debug, Error)]
pub enum AfXdpError {
    /// A step failed; `what` names it (e.g. "XDP_UMEM_REG", "BPF_LINK_CREATE (native XDP)").
    #[error("AF_XDP {what} on {ifname:?} failed: {source}")]
    Sys {
        what: &'static str,
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// The interface is not one an AF_XDP port can take.
    #[error("AF_XDP port on {ifname:?} refused: {why}")]
    Refused { ifname: String, why: String },
    /// Looking up the interface failed (no such device, bad name).
    #[error(transparent)]
    Iface(#[from] IfaceError),
}

/// How often a port whose link went down asks whether it runs again.
const LINK_RECHECK: Duration = Duration::from_millis(100);

impl AfXdpError {
    /// The kernel found the queue or the XDP hook taken (`EBUSY`).
    pub fn is_busy(&self) -> bool {
        matches!(self, AfXdpError::Sys { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }
}

/// How to open an AF_XDP port.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    /// Interface name.
    pub ifname: String,
    /// UMEM chunks for receiving (= fill ring and rx ring size); a power of two. Default 2048.
    pub rx_frames: u32,
    /// UMEM chunks for sending (= tx and completion ring size); a power of two. Default 2048.
    pub tx_frames: u32,
    /// Refuse an interface with an address of the host's own (default true): the port takes
    /// every frame, the host stack gets none.
    pub refuse_host_address: bool,
    /// How frames leave (default [`XdpTx::Xsk`]; `TAP_IO_AFXDP_TX=afpacket` picks the other).
    pub tx: XdpTx,
}

/// The transmit path of an AF_XDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpTx {
    /// The XSK's own tx ring (copy mode: each frame copied into UMEM, then into an skb the
    /// kernel builds in `sendto`; no offloads).
    Xsk,
    /// An AF_PACKET socket pair on the same interface with virtio-net headers: consecutive
    /// TCP segments leave merged into super-frames (software GRO) and partial checksums are
    /// handed on, as from an AF_PACKET port. Receiving stays on the XSK.
    AfPacket,
}

/// Environment variable choosing [`XdpTx`] for A/B runs: `xsk` (default) or `afpacket`.
/// Measured (docs/benchmarks.md, 2026-12-06): `afpacket` gives TCP through a Service VIP 1.5×,
/// and costs 7–10 % of the 64-byte UDP capacity; not the default until a quiet run decides.
pub const TX_ENV: &str = "TAP_IO_AFXDP_TX";

impl XdpTx {
    fn from_env() -> XdpTx {
        match std::env::var(TX_ENV).as_deref() {
            Ok("afpacket") => XdpTx::AfPacket,
            _ => XdpTx::Xsk,
        }
    }
}

impl AfXdpConfig {
    pub fn new(ifname: &str) -> Self {
        Self {
            ifname: ifname.to_owned(),
            rx_frames: 2048,
            tx_frames: 2048,
            refuse_host_address: true,
            tx: XdpTx::from_env(),
        }
    }
}

/// Headroom the kernel keeps in front of a received frame in its chunk (`XDP_PACKET_HEADROOM`).
const XDP_HEADROOM: usize = 256;
/// The kernel sends at most this many tx descriptors per `sendto` in copy mode.
const TX_PER_KICK: usize = 32;

/// An AF_XDP port.
pub struct AfXdpPort {
    name: String,
    ifindex: u32,
    mtu: usize,
    // The program leaves the interface first, then the rings go, then the socket, then UMEM.
    /// `None` once [`AfXdpPort::detach_program`] took the program off the interface.
    xdp: Option<XdpRedirect>,
    rx: XskRing<libc::xdp_desc>,
    fill: XskRing<u64>,
    tx: XskRing<libc::xdp_desc>,
    comp: XskRing<u64>,
    fd: OwnedFd,
    umem: Umem,
    /// Chunks free for sending (preallocated to hold them all).
    tx_free: Vec<u64>,
    stats: PortStats,
    /// Kernel drops already counted when the statistics were last read.
    kernel_drops: u64,
    /// With [`XdpTx::AfPacket`]: the sockets frames leave through.
    packet_tx: Option<crate::afpacket::AfPacketTx>,
    /// The last kick found the link down: nothing more is posted (it would wait in the ring
    /// to leave, late, when the link comes back) until the interface runs again, asked at
    /// most every 100 ms (the time of the next question).
    link_down: Option<Instant>,
}

// SAFETY: the rings and UMEM are mappings owned exclusively by this port (raw pointers into
// them are never handed out beyond a borrow of the port); nothing is shared with another
// thread, so moving the port between threads is sound.
unsafe impl Send for AfXdpPort {}

impl std::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("mtu", &self.mtu)
            .finish()
    }
}

/// Receive queues of the interface (`ETHTOOL_GCHANNELS`: rx + combined); `None` when the
/// driver does not say.
fn rx_queues(name: &str) -> Option<u32> {
    /// `struct ethtool_channels`.
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    iface::ethtool(name, &mut ch).ok()?;
    Some(ch.rx_count + ch.combined_count)
}

impl AfXdpPort {
    /// Opens a port on an existing interface: UMEM, rings, the socket bound to queue 0 in copy
    /// mode, then the XDP program that feeds it.
    /// [`open`](Self::open), tried again for up to `patience` while the kernel says the
    /// interface's queue or XDP hook is busy (`EBUSY`): it releases a closed AF_XDP socket's
    /// queue asynchronously, so a port deleted and added again at once (or a restart) finds
    /// it taken for a moment.
    pub fn open_patiently(cfg: &AfXdpConfig, patience: Duration) -> Result<Self, AfXdpError> {
        let deadline = Instant::now() + patience;
        loop {
            match Self::open(cfg) {
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    pub fn open(cfg: &AfXdpConfig) -> Result<Self, AfXdpError> {
        let name = cfg.ifname.clone();
        let sys = |what: &'static str| {
            let ifname = name.clone();
            move |source: io::Error| AfXdpError::Sys {
                what,
                ifname,
                source,
            }
        };
        let refused = |why: String| AfXdpError::Refused {
            ifname: name.clone(),
            why,
        };
        let ifindex = iface::ifindex(&name)?;
        let mtu = iface::mtu(&name)?;
        if let Some(q) = rx_queues(&name).filter(|&q| q > 1) {
            return Err(refused(format!(
                "{q} receive queues; an AF_XDP port takes single-queue interfaces only"
            )));
        }
        if cfg.refuse_host_address && crate::hostrx::has_host_address(&name).unwrap_or(false) {
            return Err(refused(
                "it has an address of the host's own; an AF_XDP port would take every frame \
                 from the host stack"
                    .into(),
            ));
        }
        let (rx_n, tx_n) = (cfg.rx_frames, cfg.tx_frames);
        if !rx_n.is_power_of_two() || !tx_n.is_power_of_two() {
            return Err(refused("ring sizes must be powers of two".into()));
        }
        // A frame with a VLAN tag, after the kernel's headroom, must fit one chunk.
        let chunk = if mtu + 18 + XDP_HEADROOM <= 2048 {
            2048
        } else {
            4096
        };
        if mtu + 18 + XDP_HEADROOM > chunk {
            return Err(refused(format!(
                "MTU {mtu} is larger than a UMEM chunk allows (3822)"
            )));
        }

        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket")(io::Error::last_os_error()));
        }
        // SAFETY: raw was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut umem = Umem::new((rx_n + tx_n) as usize, chunk).map_err(sys("UMEM mmap"))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.addr(),
            len: umem.len() as u64,
            chunk_size: chunk as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        sockopt::set(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).map_err(sys("XDP_UMEM_REG"))?;
        sockopt::set(&fd, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &rx_n)
            .map_err(sys("XDP_UMEM_FILL_RING"))?;
        sockopt::set(&fd, libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING, &tx_n)
            .map_err(sys("XDP_UMEM_COMPLETION_RING"))?;
        sockopt::set(&fd, libc::SOL_XDP, libc::XDP_RX_RING, &rx_n).map_err(sys("XDP_RX_RING"))?;
        sockopt::set(&fd, libc::SOL_XDP, libc::XDP_TX_RING, &tx_n).map_err(sys("XDP_TX_RING"))?;
        // Copy-mode transmit holds an skb per frame in flight against the send buffer.
        let sndbuf: libc::c_int = 4 << 20;
        let _ = sockopt::set(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &sndbuf);

        // SAFETY: xdp_mmap_offsets is plain data; all-zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        sockopt::get_into(&fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS, &mut off)
            .map_err(sys("XDP_MMAP_OFFSETS"))?;
        let rx = XskRing::map(&fd, &off.rx, rx_n, libc::XDP_PGOFF_RX_RING)
            .map_err(sys("rx ring mmap"))?;
        let tx = XskRing::map(&fd, &off.tx, tx_n, libc::XDP_PGOFF_TX_RING)
            .map_err(sys("tx ring mmap"))?;
        let mut fill = XskRing::map(&fd, &off.fr, rx_n, libc::XDP_UMEM_PGOFF_FILL_RING as i64)
            .map_err(sys("fill ring mmap"))?;
        let comp = XskRing::map(
            &fd,
            &off.cr,
            tx_n,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
        )
        .map_err(sys("completion ring mmap"))?;

        // Chunks [0, rx_n) receive, [rx_n, rx_n + tx_n) send.
        for i in 0..rx_n {
            fill.write(i, u64::from(i) * chunk as u64);
        }
        fill.submit(rx_n);
        let mut tx_free = Vec::with_capacity(tx_n as usize);
        tx_free.extend(
            (rx_n..rx_n + tx_n)
                .rev()
                .map(|i| u64::from(i) * chunk as u64),
        );
        // Touch the tx chunks' memory once so the first sends do not fault.
        for &a in &tx_free {
            if let Some(f) = umem.frame_mut(a, 1) {
                f[0] = 0;
            }
        }

        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: sxdp is a valid sockaddr_xdp of the stated length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sxdp as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(sys("bind (queue 0, copy mode)")(io::Error::last_os_error()));
        }
        let xdp = XdpRedirect::attach(ifindex, fd.as_raw_fd()).map_err(|e| AfXdpError::Sys {
            what: e.what,
            ifname: name.clone(),
            source: e.source,
        })?;
        let packet_tx = match cfg.tx {
            XdpTx::Xsk => None,
            XdpTx::AfPacket => Some(
                crate::afpacket::AfPacketTx::open_offloading(&name, ifindex, mtu)
                    .map_err(sys("AF_PACKET transmit socket"))?,
            ),
        };
        Ok(Self {
            name,
            ifindex,
            mtu,
            packet_tx,
            xdp: Some(xdp),
            rx,
            fill,
            tx,
            comp,
            fd,
            umem,
            tx_free,
            stats: PortStats::default(),
            kernel_drops: 0,
            link_down: None,
        })
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The socket's descriptor (for `mio` and `poll`: readable when the rx ring has frames).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Takes the XDP program off the interface: new frames go to the kernel's stack (and any
    /// packet socket) again, while the frames already in this socket's ring can still be read.
    pub fn detach_program(&mut self) {
        self.xdp = None;
    }

    /// Reads the kernel's counters (`XDP_STATISTICS`, cumulative): frames dropped because the
    /// rx ring was full or the fill ring empty go to `rx_kernel_drops`, descriptors the kernel
    /// found invalid to `rx_errors` / `tx_dropped` (other).
    pub fn poll_kernel_stats(&mut self) {
        // SAFETY: xdp_statistics is plain data; all-zero is valid.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        if sockopt::get_into(&self.fd, libc::SOL_XDP, libc::XDP_STATISTICS, &mut st).is_ok() {
            let total = st.rx_dropped + st.rx_ring_full;
            self.stats.rx_kernel_drops += total.saturating_sub(self.kernel_drops);
            self.kernel_drops = total;
        }
    }

    /// Takes the chunks of sent frames back from the completion ring.
    fn reclaim(&mut self) {
        let n = self.comp.available();
        for i in 0..n {
            let addr = self.comp.peek(i);
            self.tx_free.push(self.umem.chunk_of(addr));
        }
        self.comp.release(n);
    }

    /// Makes the kernel send what the tx ring holds (up to 32 frames per call); counts the
    /// frames it could not hand to the device.
    fn kick(&mut self, posted: usize, r: &mut TxReport) {
        for _ in 0..posted.div_ceil(TX_PER_KICK) + 2 {
            // Copy mode: the kernel sends only from inside this call (the ring's need-wakeup
            // flag stays set), so every posted frame needs one.
            if self.tx.drained() {
                return;
            }
            // SAFETY: a zero-length send with no buffer: only triggers the kernel's transmit.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                continue;
            }
            match io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                libc::EINTR | libc::EAGAIN => {
                    // The completion ring may be what is full: make room and go on.
                    self.reclaim();
                }
                libc::EBUSY => {
                    // The device refused one frame (veth: the peer's queue was full).
                    // (Its bytes stay counted: the descriptor is gone, its length with it.)
                    r.sent = r.sent.saturating_sub(1);
                    r.dropped.add(TxDropReason::QueueFull, 1);
                }
                libc::ENETDOWN | libc::ENXIO | libc::ENODEV => {
                    // The frames of this batch the kernel did not take are not sent (they
                    // wait in the ring, and leave if the link comes back).
                    let left = (self.tx.pending() as usize).min(posted);
                    r.sent = r.sent.saturating_sub(left);
                    r.dropped.add(TxDropReason::LinkDown, left as u64);
                    self.link_down = Some(Instant::now() + LINK_RECHECK);
                    return;
                }
                // No buffers: the frames stay in the ring and go with a later kick (or their
                // chunks run out and new frames are counted `queue_full`).
                _ => return,
            }
        }
    }
}

impl_mio_source!(AfXdpPort);

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let avail = self.rx.available().min(batch.room() as u32);
        let mut n = 0;
        for i in 0..avail {
            let d = self.rx.peek(i);
            // The chunk goes back to the kernel whatever happens to the frame.
            self.fill.write(i, self.umem.chunk_of(d.addr));
            let Some(buf) = batch.spare() else { continue };
            let len = d.len as usize;
            let space = buf.rx_space();
            match self.umem.frame(d.addr, len) {
                Some(f) if len <= space.len() && len >= 14 => {
                    space[..len].copy_from_slice(f);
                    // len <= space.len(), so set_len cannot fail.
                    let _ = buf.set_len(len);
                    buf.meta.wire_len = len as u32;
                    // XDP carries no checksum state: a pod with tx checksum offload on sent
                    // a partial one, recognisable only from its bytes.
                    if buf.mark_partial_checksum() {
                        self.stats.rx_csum_not_ready += 1;
                    }
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += len as u64;
                    batch.commit();
                    n += 1;
                }
                Some(_) => self.stats.rx_truncated += 1,
                None => self.stats.rx_errors += 1,
            }
        }
        if avail > 0 {
            self.rx.release(avail);
            // The fill ring holds every rx chunk, so it always has room for those given back.
            self.fill.submit(avail);
            if self.fill.needs_wakeup() {
                // SAFETY: a zero-length receive with no buffer: only wakes the driver.
                unsafe {
                    libc::recvfrom(
                        self.fd.as_raw_fd(),
                        std::ptr::null_mut(),
                        0,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
            }
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        if let Some(t) = self.packet_tx.as_mut() {
            let r = t.tx_batch(batch);
            self.stats.account_tx(&r);
            return r;
        }
        let mut r = TxReport::default();
        if let Some(next) = self.link_down {
            let now = Instant::now();
            if now >= next && matches!(crate::iface::is_running(&self.name), Ok(true)) {
                self.link_down = None;
            } else {
                if now >= next {
                    self.link_down = Some(now + LINK_RECHECK);
                }
                r.dropped.add(TxDropReason::LinkDown, batch.len() as u64);
                batch.clear();
                self.stats.account_tx(&r);
                return r;
            }
        }
        self.reclaim();
        let max = self.mtu + 18;
        let room = self.tx.free() as usize;
        let mut posted = 0usize;
        for p in batch.iter() {
            let d = p.data();
            if d.len() > max {
                r.dropped.add(TxDropReason::TooBig, 1);
                continue;
            }
            let addr = match self.tx_free.pop() {
                Some(a) if posted < room => a,
                Some(a) => {
                    self.tx_free.push(a);
                    r.dropped.add(TxDropReason::QueueFull, 1);
                    continue;
                }
                None => {
                    r.dropped.add(TxDropReason::QueueFull, 1);
                    continue;
                }
            };
            match self.umem.frame_mut(addr, d.len()) {
                Some(f) => f.copy_from_slice(d),
                None => {
                    self.tx_free.push(addr);
                    r.dropped.add(TxDropReason::TooBig, 1);
                    continue;
                }
            }
            self.tx.write(
                posted as u32,
                libc::xdp_desc {
                    addr,
                    len: d.len() as u32,
                    options: 0,
                },
            );
            posted += 1;
            r.sent += 1;
            r.bytes += d.len() as u64;
        }
        if posted > 0 {
            self.tx.submit(posted as u32);
            self.kick(posted, &mut r);
        }
        batch.clear();
        self.stats.account_tx(&r);
        r
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Some(
            match &self.packet_tx {
                Some(t) => t.try_clone(),
                None => crate::afpacket::AfPacketTx::open(&self.name, self.ifindex, self.mtu),
            }
            .map(|t| Box::new(t) as Box<dyn Port + Send>),
        )
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
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

    fn offloads(&self) -> crate::Offloads {
        self.packet_tx
            .as_ref()
            .map_or(crate::Offloads::default(), |t| t.offloads())
    }
}
