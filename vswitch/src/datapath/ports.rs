//! A port as the datapath holds it: its I/O back end, its tx batch and its counters.

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;

use mio::{Registry, Token};
use tap_io::{Batch, Offloads, PacketBuf, Port, PortStats, RxMeta};

use super::BATCH;
use super::counters::PortCounters;
use super::drops::DropReason;
use crate::pipeline::PortKind;

use openflow::switch::port_config;

/// Outer IPv4 + UDP + VXLAN headers in front of an inner frame.
const TUNNEL_OUTER_LEN: usize = 20 + 8 + 8;
/// Headroom a frame needs to leave through the GSO TAP: the VXLAN header, the outer Ethernet,
/// IPv4 and UDP headers and the TAP's virtio-net header (`tap_io::tunnel_gso`).
const TUNNEL_TAP_HEADROOM: usize = 8 + 14 + 20 + 8 + tap_io::tunnel_gso::TUNNEL_VNET_HDR_LEN;

pub enum PortIo {
    /// A frame port (AF_PACKET, TAP, in-memory).
    Dev(Box<dyn Port + Send>),
    /// A VXLAN tunnel port (`datapath::vxlan::VxlanPort`): received frames carry
    /// `meta.tunnel`, frames to send must.
    Tunnel(Box<dyn Port + Send>),
}

pub struct DpPort {
    pub name: String,
    pub bridge: usize,
    pub ofport: u32,
    pub kind: PortKind,
    pub io: PortIo,
    pub tx: Batch,
    pub counters: Arc<PortCounters>,
    /// Largest frame accepted for output (MTU + Ethernet + one VLAN tag).
    pub max_frame: usize,
    /// What the port's back end finishes itself (GSO, partial checksums).
    pub offloads: Offloads,
    /// A running `vswitchctl capture`, if any.
    pub capture: Option<Box<super::capture::CaptureTap>>,
    /// The bridge's drop counters: frames the kernel refused to send are counted there too.
    pub drops: Arc<super::drops::DropCounters>,
    /// Whether this thread receives from the port (else it only sends through its copy).
    pub polled: bool,
    /// The forwarding thread holding this copy: its transmit counters' slot.
    pub thread: usize,
    /// `OFPPC_*` bits set by `mod-port` (down, no-receive, no-forward): frames received are
    /// dropped as `port_no_recv`, output as `port_down` / `port_no_fwd`.
    pub config: u32,
    /// The back end's counters as last folded into `counters`/`drops` (tunnel refusals).
    seen: PortStats,
    /// Receive errors repeat as long as their cause lasts: one warning per interval.
    pub(crate) rx_warn: crate::ratelimit::RateLimit,
    /// The descriptors registered with the poll loop, and their set's version.
    registered: (u64, [Option<std::os::fd::RawFd>; 2]),
    /// The descriptor set whose registration failed last (reported once).
    failed_registration: Option<u64>,
}

impl DpPort {
    pub fn new(
        name: &str,
        bridge: usize,
        ofport: u32,
        kind: PortKind,
        io: PortIo,
        counters: Arc<PortCounters>,
        drops: Arc<super::drops::DropCounters>,
    ) -> DpPort {
        let (mtu, offloads) = match &io {
            PortIo::Dev(p) | PortIo::Tunnel(p) => (p.mtu(), p.offloads()),
        };
        // Only ports that take GSO super-frames whole need 64 KiB transmit buffers.
        let room = if offloads.gso {
            tap_io::GSO_FRAME_ROOM
        } else {
            tap_io::buf::DEFAULT_FRAME_ROOM
        };
        DpPort {
            name: name.to_string(),
            bridge,
            ofport,
            kind,
            io,
            tx: Batch::new(BATCH, tap_io::buf::DEFAULT_HEADROOM, room),
            counters,
            max_frame: mtu + 18,
            offloads,
            capture: None,
            drops,
            polled: true,
            thread: 0,
            config: 0,
            seen: PortStats::default(),
            rx_warn: crate::ratelimit::RateLimit::default(),
            registered: (0, [None, None]),
            failed_registration: None,
        }
    }

    /// A copy of this port for another forwarding thread: it shares the counters and sends
    /// through a duplicate of the back end's descriptor, but never receives (the owning
    /// thread polls the original).
    pub fn try_clone_tx(&self) -> io::Result<DpPort> {
        let io = match &self.io {
            PortIo::Dev(p) => PortIo::Dev(p.try_clone_tx().unwrap_or_else(|| {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this port type cannot be shared between forwarding threads",
                ))
            })?),
            PortIo::Tunnel(p) => PortIo::Tunnel(p.try_clone_tx().unwrap_or_else(|| {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this tunnel port cannot be shared between forwarding threads",
                ))
            })?),
        };
        Ok(self.copy_with(io))
    }

    /// A further receive queue of this port for another forwarding thread (which sends
    /// through it too), sharing the counters; `None` when the back end has one queue.
    pub fn try_clone_rx(&self) -> Option<io::Result<DpPort>> {
        let PortIo::Dev(p) = &self.io else {
            return None;
        };
        Some(p.try_clone_rx()?.map(|io| self.copy_with(PortIo::Dev(io))))
    }

    /// Another thread's copy of this port over `io`: the same counters, drops, frame limit
    /// and `mod-port` bits.
    fn copy_with(&self, io: PortIo) -> DpPort {
        let mut port = DpPort::new(
            &self.name,
            self.bridge,
            self.ofport,
            self.kind,
            io,
            self.counters.clone(),
            self.drops.clone(),
        );
        port.max_frame = self.max_frame;
        port.config = self.config;
        port
    }

    pub fn is_tunnel(&self) -> bool {
        matches!(self.io, PortIo::Tunnel(_))
    }

    fn port(&self) -> Option<&(dyn Port + Send)> {
        match &self.io {
            PortIo::Dev(p) | PortIo::Tunnel(p) => Some(&**p),
        }
    }

    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.port().and_then(|p| p.fd())
    }

    /// Registers every descriptor the port receives through ([`tap_io::Port::rx_fds`]) under
    /// `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let (version, fds) = match &self.io {
            PortIo::Dev(p) | PortIo::Tunnel(p) => p.rx_fds(),
        };
        let mut done = [None, None];
        for (slot, fd) in fds.into_iter().enumerate() {
            let Some(fd) = fd else { continue };
            let added = registry.register(
                &mut mio::unix::SourceFd(&fd),
                token,
                mio::Interest::READABLE,
            );
            if let Err(e) = added {
                // Keep the old version, so the next sync tries again, and what did go in, so
                // that `deregister` takes it out first.
                self.registered.1 = done;
                return Err(e);
            }
            done[slot] = Some(fd);
        }
        self.registered = (version, done);
        Ok(())
    }

    pub fn deregister(&mut self, registry: &Registry) {
        // A descriptor closed since is gone from epoll already (an error, ignored).
        for fd in self.registered.1.into_iter().flatten() {
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
        self.registered = (self.registered.0, [None, None]);
    }

    /// Registers the port's descriptors again when their set changed (a shedding port
    /// attached or closed its XDP socket). By version, not by number: a new socket may reuse
    /// a closed one's number.
    /// A failure is retried at every call but returned only once per set, so the caller's
    /// warning is not repeated every housekeeping tick.
    pub fn sync_registration(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let version = match &self.io {
            PortIo::Dev(p) | PortIo::Tunnel(p) => p.rx_fds().0,
        };
        if !self.polled || version == self.registered.0 {
            return Ok(());
        }
        self.deregister(registry);
        match self.register(registry, token) {
            Err(e) if self.failed_registration != Some(version) => {
                self.failed_registration = Some(version);
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Receives a batch into `rx`; tunnel ports check and strip the tunnel header (their
    /// count includes the datagrams they refused, which are counted as drops by reason).
    /// Returns the count and the bytes of the frames kept in `rx`.
    pub fn receive(&mut self, rx: &mut Batch) -> io::Result<(usize, u64)> {
        let n = match &mut self.io {
            PortIo::Dev(p) => p.rx_batch(rx)?,
            PortIo::Tunnel(p) => {
                let n = p.rx_batch(rx)?;
                if n > rx.len() {
                    self.fold_tunnel_drops();
                }
                n
            }
        };
        let mut bytes = 0;
        if n > 0 {
            if let Some(tap) = self.capture.as_mut() {
                rx.iter().for_each(|p| tap.take(p.data()));
            }
            bytes = rx.iter().map(|p| p.len() as u64).sum();
            PortCounters::add(&self.counters.rx(self.thread).packets, n as u64);
            PortCounters::add(&self.counters.rx(self.thread).bytes, bytes);
            if self.config & (port_config::PORT_DOWN | port_config::NO_RECV) != 0 {
                self.drops.add(DropReason::PortNoRecv, rx.len() as u64);
                rx.clear();
            }
        }
        Ok((n, bytes))
    }

    /// Queues a copy of `frame` for transmission. Offloads the port lacks are done here: GSO
    /// super-frames are segmented, partial checksums completed (into the copy, never the
    /// original, which other outputs may still send as is). Towards a port that takes
    /// super-frames, a TCP segment that continues the last queued one is appended to it
    /// (software GRO, [`encap::gro`]): the kernel behind the port gets one super-frame.
    pub fn queue(&mut self, frame: &[u8], meta: &RxMeta) -> Result<(), DropReason> {
        self.may_send()?;
        if self.is_tunnel() {
            return Err(DropReason::TunnelNoRoute);
        }
        if let Some(gso) = meta.gso.filter(|_| !self.offloads.gso) {
            let mut info = gso_info(&gso);
            info.mss = fit_segment_size(frame, &gso, self.max_frame)?;
            if gso.kind == tap_io::GsoKind::Udp && info.mss < gso.size {
                return Err(DropReason::TooBig); // datagrams larger than the port takes
            }
            let plan = encap::gso::GsoPlan::new(frame, &info).map_err(|_| DropReason::Malformed)?;
            for i in 0..plan.segments() {
                let buf = self.spare()?;
                let n = plan
                    .write(frame, i, buf.rx_space())
                    .map_err(|_| DropReason::TooBig)?;
                buf.set_len(n).map_err(|_| DropReason::TooBig)?;
                self.tx.commit();
            }
            return Ok(());
        }
        if meta.gso.is_none() && frame.len() > self.max_frame {
            return Err(DropReason::TooBig);
        }
        if self.offloads.gso
            && meta.gso.is_none()
            && !self.tx.is_empty()
            && self.coalesce(frame, meta)
        {
            return Ok(());
        }
        // A port with checksum offload still needs the checksum's position to finish it.
        if meta.csum_not_ready && (!self.offloads.csum || meta.csum_start.is_none()) {
            self.push(frame, None)?;
            let last = self.tx.len() - 1;
            finish_checksum(self.tx[last].data_mut(), meta);
            return Ok(());
        }
        let keep = meta.gso.is_some() || meta.csum_not_ready;
        self.push(frame, keep.then_some(meta))?;
        // A checksum already verified is not summed again when the next segment joins it.
        let last = self.tx.len() - 1;
        self.tx[last].meta.csum_valid = meta.csum_valid;
        self.fit_last_gso();
        Ok(())
    }

    /// A super-frame queued whole must not announce segments larger than this port's MTU:
    /// one received whole from a tunnel carries a segment size inferred from the tunnel's
    /// inner MTU, which may exceed the receiving pod's (the kernel behind the port would
    /// segment at it, or forward it, with frames the link refuses).
    fn fit_last_gso(&mut self) {
        let Some(last) = self.tx.len().checked_sub(1) else {
            return;
        };
        let max_frame = self.max_frame;
        let p = &mut self.tx[last];
        if let Some(g) = p.meta.gso.filter(|g| g.kind != tap_io::GsoKind::Udp)
            && let Ok(size) = fit_segment_size(p.data(), &g, max_frame)
            && let Some(g) = p.meta.gso.as_mut()
        {
            g.size = size;
        }
    }

    /// [`DpPort::queue`] for a packet that nothing reads afterwards (its last output): when it
    /// would be queued as it is (no segmentation, no checksum to finish, no coalescing with
    /// the frame queued before it), its buffer is swapped into the transmit batch instead of
    /// copied — a 64 KiB super-frame going from one offloading port to another costs no copy
    /// here. `pkt` is then left holding an empty buffer. Anything else is [`DpPort::queue`].
    pub fn queue_owned(&mut self, pkt: &mut PacketBuf) -> Result<(), DropReason> {
        let meta = &pkt.meta;
        let as_is = self.config == 0
            && !self.is_tunnel()
            && (meta.gso.is_some() || pkt.len() <= self.max_frame)
            && (meta.gso.is_none() || self.offloads.gso)
            && !(meta.csum_not_ready && (!self.offloads.csum || meta.csum_start.is_none()))
            // A plain frame may be appended to the last queued one (software GRO).
            && !(self.offloads.gso && meta.gso.is_none() && !self.tx.is_empty());
        if !as_is {
            return self.queue(pkt.data(), &pkt.meta);
        }
        let keep = meta.gso.is_some() || meta.csum_not_ready;
        if self.tx.is_full() {
            self.flush();
        }
        if !self.tx.push_swap(pkt) {
            // Buffers of another size (this port's batch is not for super-frames): copy.
            return self.push(pkt.data(), keep.then_some(&pkt.meta));
        }
        if !keep {
            // As a plain copy would: no offload request in the virtio-net header.
            let last = self.tx.len() - 1;
            self.tx[last].meta = RxMeta {
                csum_valid: self.tx[last].meta.csum_valid,
                ..RxMeta::default()
            };
        }
        self.fit_last_gso();
        Ok(())
    }

    /// Appends the TCP segment `frame` to the last queued frame when it continues it
    /// ([`append_segment`]). False: nothing changed, queue the frame on its own.
    fn coalesce(&mut self, frame: &[u8], meta: &RxMeta) -> bool {
        let last = self.tx.len() - 1;
        append_segment(&mut self.tx[last], frame, meta)
    }

    /// The next spare transmit buffer (the batch flushed first when full).
    fn spare(&mut self) -> Result<&mut tap_io::PacketBuf, DropReason> {
        if self.tx.is_full() {
            self.flush();
        }
        self.tx.spare().ok_or(DropReason::NoBuffer)
    }

    /// Whether `mod-port` lets frames out (not down, not no-forward).
    #[inline]
    pub(crate) fn may_send(&self) -> Result<(), DropReason> {
        if self.config == 0 {
            Ok(())
        } else if self.config & port_config::PORT_DOWN != 0 {
            Err(DropReason::PortDown)
        } else if self.config & port_config::NO_FWD != 0 {
            Err(DropReason::PortNoFwd)
        } else {
            Ok(())
        }
    }

    fn push(&mut self, frame: &[u8], meta: Option<&RxMeta>) -> Result<(), DropReason> {
        if self.tx.is_full() {
            self.flush();
        }
        let ok = match meta {
            Some(m) => self.tx.push_copy_with_meta(frame, m),
            None => self.tx.push_copy(frame),
        };
        if ok {
            Ok(())
        } else {
            Err(DropReason::NoBuffer)
        }
    }

    /// Folds the frames the kernel dropped before we could read them (AF_PACKET ring full:
    /// `PACKET_STATISTICS` `tp_drops`, read and accumulated by the port) into the port's
    /// `rx_dropped` counter, and the frames the port itself refused on receive (cut to its
    /// buffer, a virtio-net header it cannot follow) into `rx_dropped` and their drop reasons;
    /// failed receive calls go to `rx_errors`. Called from the poll loop's 100 ms
    /// housekeeping, by the thread that receives from the port.
    pub fn fold_kernel_drops(&mut self) {
        if !self.polled {
            return;
        }
        let (PortIo::Dev(p) | PortIo::Tunnel(p)) = &mut self.io;
        p.refresh_stats();
        if let Some(notice) = p.take_notice() {
            tracing::info!(port = %self.name, "{notice}");
        }
        let now = p.stats();
        let new = |now: u64, seen: u64| now.saturating_sub(seen);
        let kernel = new(now.rx_kernel_drops, self.seen.rx_kernel_drops);
        let truncated = new(now.rx_truncated, self.seen.rx_truncated);
        let bad_vnet = new(now.rx_bad_vnet, self.seen.rx_bad_vnet);
        let errors = new(now.rx_errors, self.seen.rx_errors);
        if kernel + truncated + bad_vnet > 0 {
            PortCounters::add(
                &self.counters.rx(self.thread).dropped,
                kernel + truncated + bad_vnet,
            );
        }
        if truncated > 0 {
            self.drops.add(DropReason::RxTruncated, truncated);
        }
        if bad_vnet > 0 {
            self.drops.add(DropReason::RxBadVnet, bad_vnet);
        }
        if errors > 0 {
            PortCounters::add(&self.counters.rx(self.thread).errors, errors);
        }
        self.seen.rx_kernel_drops = now.rx_kernel_drops;
        self.seen.rx_truncated = now.rx_truncated;
        self.seen.rx_bad_vnet = now.rx_bad_vnet;
        self.seen.rx_errors = now.rx_errors;
    }

    /// Adds the tunnel port's refusals since the last call to the bridge's drop counters.
    fn fold_tunnel_drops(&mut self) {
        let Some(s) = self.port().map(|p| p.stats()) else {
            return;
        };
        for (now, seen, reason) in [
            (
                s.rx_tunnel_short,
                self.seen.rx_tunnel_short,
                DropReason::VxlanShort,
            ),
            (
                s.rx_tunnel_bad_header,
                self.seen.rx_tunnel_bad_header,
                DropReason::VxlanBadFlags,
            ),
            (
                s.rx_tunnel_unknown,
                self.seen.rx_tunnel_unknown,
                DropReason::VxlanUnknownTunnel,
            ),
            (
                s.rx_tunnel_ce_not_ect,
                self.seen.rx_tunnel_ce_not_ect,
                DropReason::TunnelEcnCeNotEct,
            ),
        ] {
            if now > seen {
                self.drops.add(reason, now - seen);
            }
        }
        self.seen.rx_tunnel_short = s.rx_tunnel_short;
        self.seen.rx_tunnel_bad_header = s.rx_tunnel_bad_header;
        self.seen.rx_tunnel_unknown = s.rx_tunnel_unknown;
        self.seen.rx_tunnel_ce_not_ect = s.rx_tunnel_ce_not_ect;
    }

    /// Largest inner frame's IP packet that fits the underlay after encapsulation.
    pub fn tunnel_inner_mtu(&self) -> usize {
        self.port().map_or(0, |p| p.mtu())
    }

    /// The longest inner frame like `frame` the tunnel takes: its IP packet at most the inner
    /// MTU behind the Ethernet header, plus 4 bytes when the frame is VLAN-tagged (one tag's
    /// allowance, as `max_frame` and `fit_segment_size` give; a second tag gets none, as
    /// Linux's MTU check allows one `VLAN_HLEN`).
    pub(crate) fn tunnel_max_frame(&self, frame: &[u8]) -> usize {
        self.tunnel_inner_mtu() + 14 + if is_tagged(frame) { 4 } else { 0 }
    }

    /// Queues `frame` VXLAN-encapsulated towards `dst` with `vni`. The underlay socket has no
    /// offloads: GSO super-frames are segmented (straight into the transmit buffers, so that
    /// the socket's UDP GSO sends each run as one message) and partial checksums completed.
    pub fn queue_tunnel(
        &mut self,
        frame: &[u8],
        meta: &RxMeta,
        dst: Ipv4Addr,
        vni: u32,
    ) -> Result<(), DropReason> {
        self.may_send()?;
        // A tunnel with UDP-tunnel GSO (tap_io::tunnel_gso) takes the super-frame whole, as
        // long as it fits one outer IPv4 packet (outer IPv4 + UDP + VXLAN = 36 bytes).
        if let Some(gso) = meta.gso.filter(|_| {
            self.offloads.gso && frame.len() + TUNNEL_OUTER_LEN <= usize::from(u16::MAX)
        }) {
            if !matches!(self.io, PortIo::Tunnel(_)) {
                return Err(DropReason::PortDown);
            }
            let size = self.tunnel_segment_size(frame, &gso)?;
            self.push(frame, Some(meta))?;
            let last = self.tx.len() - 1;
            if let Some(g) = self.tx[last].meta.gso.as_mut() {
                g.size = size;
            }
            self.tx[last].meta.tunnel = Some(tap_io::TunnelMeta {
                vni,
                src: Ipv4Addr::UNSPECIFIED,
                dst,
            });
            return Ok(());
        }
        if let Some(gso) = meta.gso {
            // Segments cut to fit the tunnel, as on the whole-frame path (TCP; UDP refused).
            let mut info = gso_info(&gso);
            info.mss = self.tunnel_segment_size(frame, &gso)?;
            let plan = encap::gso::GsoPlan::new(frame, &info).map_err(|_| DropReason::Malformed)?;
            if plan.max_segment_len() > self.tunnel_max_frame(frame) {
                return Err(DropReason::TunnelTooBig);
            }
            if !matches!(self.io, PortIo::Tunnel(_)) {
                return Err(DropReason::PortDown);
            }
            for i in 0..plan.segments() {
                let buf = self.spare()?;
                let n = plan
                    .write(frame, i, buf.rx_space())
                    .map_err(|_| DropReason::TooBig)?;
                buf.set_len(n).map_err(|_| DropReason::TooBig)?;
                buf.meta.tunnel = Some(tap_io::TunnelMeta {
                    vni,
                    src: Ipv4Addr::UNSPECIFIED,
                    dst,
                });
                self.tx.commit();
            }
            return Ok(());
        }
        // Segments of one TCP flow from a pod without offloads: merged into one super-frame
        // (software GRO, as towards a pod), which then leaves whole through the GSO TAP and
        // reaches the peer node as one datagram.
        if self.offloads.gso
            && !self.tx.is_empty()
            && frame.len() <= self.tunnel_max_frame(frame)
            && self.coalesce_tunnel(frame, meta, dst, vni)
        {
            return Ok(());
        }
        self.push_tunnel(frame, meta.csum_not_ready.then_some(meta), dst, vni)
    }

    /// [`DpPort::queue_tunnel`] for a packet's last use: a super-frame that leaves whole
    /// through the GSO TAP has its buffer swapped into the transmit batch (the VXLAN and outer
    /// headers go into its headroom) instead of copied; `pkt` is then an empty buffer.
    pub fn queue_tunnel_owned(
        &mut self,
        pkt: &mut PacketBuf,
        dst: Ipv4Addr,
        vni: u32,
    ) -> Result<(), DropReason> {
        let whole = self.config == 0
            && self.offloads.gso
            && pkt.meta.gso.is_some()
            && pkt.len() + TUNNEL_OUTER_LEN <= usize::from(u16::MAX)
            && pkt.headroom() >= TUNNEL_TAP_HEADROOM
            && matches!(self.io, PortIo::Tunnel(_));
        if let Some(gso) = pkt.meta.gso.filter(|_| whole) {
            let size = self.tunnel_segment_size(pkt.data(), &gso)?;
            if self.tx.is_full() {
                self.flush();
            }
            if self.tx.push_swap(pkt) {
                let last = self.tx.len() - 1;
                self.tx[last].meta.tunnel = Some(tap_io::TunnelMeta {
                    vni,
                    src: Ipv4Addr::UNSPECIFIED,
                    dst,
                });
                if let Some(g) = self.tx[last].meta.gso.as_mut() {
                    g.size = size;
                }
                return Ok(());
            }
        }
        self.queue_tunnel(pkt.data(), &pkt.meta, dst, vni)
    }

    /// The segment size a super-frame sent whole into the tunnel (UDP-tunnel GSO) is cut at:
    /// its segments must fit the tunnel's inner MTU, as the socket path's must (the outer
    /// header says DF). TCP segments are made smaller (still valid TCP); UDP ones are the
    /// sender's datagrams and are refused.
    fn tunnel_segment_size(&self, frame: &[u8], gso: &tap_io::Gso) -> Result<u16, DropReason> {
        let size = fit_segment_size(frame, gso, self.tunnel_inner_mtu() + 14 + 4)?;
        if gso.kind == tap_io::GsoKind::Udp && size < gso.size {
            return Err(DropReason::TunnelTooBig);
        }
        Ok(size)
    }

    /// Appends the TCP segment `frame` to the last frame queued for the same tunnel
    /// destination when it continues it ([`append_segment`]), as long as the result still
    /// fits one outer IPv4 packet. False: nothing changed.
    fn coalesce_tunnel(&mut self, frame: &[u8], meta: &RxMeta, dst: Ipv4Addr, vni: u32) -> bool {
        let last = self.tx.len() - 1;
        let head = &mut self.tx[last];
        let same = head
            .meta
            .tunnel
            .is_some_and(|t| t.dst == dst && t.vni == vni);
        same && head.len() + frame.len() + TUNNEL_OUTER_LEN <= usize::from(u16::MAX)
            && append_segment(head, frame, meta)
    }

    fn push_tunnel(
        &mut self,
        frame: &[u8],
        finish_csum: Option<&RxMeta>,
        dst: Ipv4Addr,
        vni: u32,
    ) -> Result<(), DropReason> {
        // The inner frame's L3 part must fit the underlay MTU minus the outer headers.
        if frame.len() > self.tunnel_max_frame(frame) {
            return Err(DropReason::TunnelTooBig);
        }
        if self.tx.is_full() {
            self.flush();
        }
        if !matches!(self.io, PortIo::Tunnel(_)) {
            return Err(DropReason::PortDown);
        }
        let Some(buf) = self.tx.spare() else {
            return Err(DropReason::NoBuffer);
        };
        if buf.set_frame(frame).is_err() {
            return Err(DropReason::TooBig);
        }
        if let Some(meta) = finish_csum {
            finish_checksum(buf.data_mut(), meta);
        }
        // The port pushes the VXLAN header when it sends (into the headroom, no copy).
        buf.meta.tunnel = Some(tap_io::TunnelMeta {
            vni,
            src: Ipv4Addr::UNSPECIFIED,
            dst,
        });
        self.tx.commit();
        Ok(())
    }

    /// Sends whatever is queued.
    pub fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        // Tunnel ports show the inner frame: the header is pushed by tx_batch.
        if let Some(tap) = self.capture.as_mut() {
            self.tx.iter().for_each(|p| tap.take(p.data()));
        }
        let report = match &mut self.io {
            PortIo::Dev(p) | PortIo::Tunnel(p) => p.tx_batch(&mut self.tx),
        };
        self.tx.clear();
        let tx = self.counters.tx(self.thread);
        PortCounters::add(&tx.packets, report.sent as u64);
        PortCounters::add(&tx.bytes, report.bytes);
        for reason in tap_io::TxDropReason::ALL {
            let n = report.dropped.get(reason);
            if n > 0 {
                self.drops.add(
                    match reason {
                        tap_io::TxDropReason::TooBig => DropReason::TooBig,
                        tap_io::TxDropReason::QueueFull => DropReason::TxQueueFull,
                        tap_io::TxDropReason::LinkDown => DropReason::PortDown,
                        tap_io::TxDropReason::Unreachable | tap_io::TxDropReason::Other => {
                            DropReason::TxError
                        }
                    },
                    n,
                );
            }
        }
        let dropped = report.dropped_total();
        if dropped > 0 {
            PortCounters::add(&self.counters.tx(self.thread).dropped, dropped);
        }
    }
}

/// Appends the TCP segment `frame` (with `meta`) to the frame in `head_buf` when it continues
/// it (same flow, next sequence number, see [`encap::gro::continues`]) and its checksum is
/// good (or still partial: the sender offloaded it), turning that frame into a super-frame:
/// `meta.gso` with the first segment's payload as the segment size, the TCP checksum partial.
/// False: nothing changed.
fn append_segment(head_buf: &mut PacketBuf, frame: &[u8], meta: &RxMeta) -> bool {
    use encap::gro::{TcpSegment, continues, finish_super_frame};
    let Some(seg) = TcpSegment::parse(frame) else {
        return false;
    };
    let Some(head) = TcpSegment::parse(head_buf.data()) else {
        return false;
    };
    let kind = if head.is_v4() {
        tap_io::GsoKind::Tcp4
    } else {
        tap_io::GsoKind::Tcp6
    };
    let (mss, plain) = match head_buf.meta.gso {
        Some(g) if g.kind == kind && !g.ecn => (usize::from(g.size), false),
        Some(_) => return false,
        None => (head.payload_len(), true),
    };
    // Room behind the IP packet (Ethernet padding behind it is cut off first).
    if !continues(head_buf.data(), &head, frame, &seg, mss)
        || head_buf.tailroom() + (head_buf.len() - head.end()) < seg.payload_len()
    {
        return false;
    }
    // Never give a damaged segment a fresh checksum: verify what is complete (unless the
    // kernel or conntrack already did).
    if !(meta.csum_not_ready || meta.csum_valid || seg.checksum_ok(frame)) {
        return false;
    }
    let vouched = head_buf.meta.csum_not_ready || head_buf.meta.csum_valid;
    if plain && !(vouched || head.checksum_ok(head_buf.data())) {
        return false;
    }
    head_buf.truncate(head.end());
    if head_buf.extend_from_slice(seg.payload(frame)).is_err() {
        return false;
    }
    let grown = head.grown_by(seg.payload_len());
    finish_super_frame(head_buf.data_mut(), &grown, seg.psh(frame));
    let m = &mut head_buf.meta;
    m.gso = Some(tap_io::Gso {
        kind,
        size: mss as u16,
        hdr_len: head.hdr_len() as u16,
        ecn: false,
    });
    m.csum_not_ready = true;
    m.csum_start = Some(head.l4_offset() as u16);
    m.csum_offset = Some(16);
    true
}

/// Software GRO on receive, for what a tunnel port received: consecutive TCP segments of one
/// flow from the same tunnel (a peer's segmented super-frame, sent as one UDP GSO run and
/// received as one UDP GRO message) are merged into one super-frame before the pipeline, as
/// the kernel's GRO does behind a NIC. The pipeline then runs once for up to 64 KiB, and a
/// port that takes super-frames gets it without a further copy. Same rules as
/// [`append_segment`]; a run's IP length, header checksum and partial TCP sum are written
/// once, when it ends. Returns the frames merged away. The port counters have already
/// counted what arrived.
pub fn coalesce_received(rx: &mut Batch) -> usize {
    let n = rx.len();
    if n < 2 {
        return 0;
    }
    let pkts = rx.packets_mut();
    let mut run: Option<RxRun> = None;
    let mut merged = 0;
    for r in 0..n {
        if let Some(cur) = run.as_mut() {
            let (front, back) = pkts.split_at_mut(r);
            let (h, s) = (&mut front[cur.head], &mut back[0]);
            if cur.extend(h, s) {
                s.truncate(0);
                merged += 1;
                continue;
            }
            cur.close(h);
        }
        run = RxRun::open(r, &pkts[r]);
    }
    if let Some(cur) = run {
        cur.close(&mut pkts[cur.head]);
    }
    if merged > 0 {
        rx.retain(|p| !p.is_empty());
    }
    merged
}

/// A run of received segments being merged into the frame at `head`.
struct RxRun {
    head: usize,
    /// The head's headers with the payload appended so far.
    seg: encap::gro::TcpSegment,
    /// The segment size: the head's payload.
    mss: usize,
    /// The last segment appended carried PSH: the run is over.
    psh: bool,
    /// Something was appended (and the head's checksum was verified).
    grown: bool,
}

impl RxRun {
    fn open(head: usize, pkt: &PacketBuf) -> Option<RxRun> {
        if pkt.meta.gso.is_some() {
            return None;
        }
        let seg = encap::gro::TcpSegment::parse(pkt.data())?;
        Some(RxRun {
            head,
            seg,
            mss: seg.payload_len(),
            psh: false,
            grown: false,
        })
    }

    /// Appends `s` to the head `h` when it continues the run (see [`append_segment`]).
    fn extend(&mut self, h: &mut PacketBuf, s: &PacketBuf) -> bool {
        use encap::gro::{TcpSegment, continues};
        if self.psh || s.meta.gso.is_some() || s.meta.tunnel != h.meta.tunnel {
            return false;
        }
        let frame = s.data();
        let Some(seg) = TcpSegment::parse(frame) else {
            return false;
        };
        if !continues(h.data(), &self.seg, frame, &seg, self.mss)
            || h.tailroom() + (h.len() - self.seg.end()) < seg.payload_len()
        {
            return false;
        }
        // Never give a damaged segment a fresh checksum: verify what is complete.
        if !(s.meta.csum_not_ready || seg.checksum_ok(frame)) {
            return false;
        }
        // The head's own checksum, once, before the first append.
        if !(self.grown || h.meta.csum_not_ready || self.seg.checksum_ok(h.data())) {
            return false;
        }
        h.truncate(self.seg.end());
        if h.extend_from_slice(seg.payload(frame)).is_err() {
            return false;
        }
        self.seg = self.seg.grown_by(seg.payload_len());
        self.psh = seg.psh(frame);
        self.grown = true;
        true
    }

    /// Writes the merged frame's headers and offload metadata (nothing when nothing merged).
    fn close(&self, h: &mut PacketBuf) {
        if !self.grown {
            return;
        }
        encap::gro::finish_super_frame(h.data_mut(), &self.seg, self.psh);
        let m = &mut h.meta;
        m.gso = Some(tap_io::Gso {
            kind: if self.seg.is_v4() {
                tap_io::GsoKind::Tcp4
            } else {
                tap_io::GsoKind::Tcp6
            },
            size: self.mss as u16,
            hdr_len: self.seg.hdr_len() as u16,
            ecn: false,
        });
        m.csum_not_ready = true;
        m.csum_start = Some(self.seg.l4_offset() as u16);
        m.csum_offset = Some(16);
    }
}

/// The segment size for a super-frame (`frame`, described by `gso`) leaving through a port
/// whose largest frame is `max_frame` (MTU + Ethernet + one VLAN tag): `gso.size`, or less
/// when segments of that size would not fit. Smaller segments are still valid TCP; a UDP
/// super-frame's segments are the sender's datagrams, which callers never split. The headers'
/// length is measured in the frame: the sender's `hdr_len` is only a hint.
fn fit_segment_size(frame: &[u8], gso: &tap_io::Gso, max_frame: usize) -> Result<u16, DropReason> {
    let hdr_len = encap::gso::GsoPlan::new(frame, &gso_info(gso))
        .map_err(|_| DropReason::Malformed)?
        .hdr_len();
    let room = max_frame - if is_tagged(frame) { 0 } else { 4 };
    Ok(match room.checked_sub(hdr_len) {
        Some(fit) if fit > 0 && fit < usize::from(gso.size) => fit as u16,
        _ => gso.size,
    })
}

/// Whether `frame` carries a VLAN tag (802.1Q or 802.1ad) after its Ethernet addresses.
fn is_tagged(frame: &[u8]) -> bool {
    frame.len() >= 14 && matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x8100 | 0x88a8)
}

fn gso_info(gso: &tap_io::Gso) -> encap::gso::GsoInfo {
    encap::gso::GsoInfo {
        kind: match gso.kind {
            tap_io::GsoKind::Tcp4 => encap::gso::GsoKind::Tcp4,
            tap_io::GsoKind::Tcp6 => encap::gso::GsoKind::Tcp6,
            tap_io::GsoKind::Udp => encap::gso::GsoKind::Udp,
        },
        mss: gso.size,
        hdr_len: gso.hdr_len,
    }
}

/// Completes an offloaded L4 checksum in place, from the port's offsets when it gave them,
/// else from the parsed headers.
fn finish_checksum(frame: &mut [u8], meta: &RxMeta) {
    match (meta.csum_start, meta.csum_offset) {
        (Some(start), Some(offset)) => {
            let _ = encap::gso::complete_checksum(frame, start as usize, offset as usize);
        }
        _ => {
            let mut key = encap::FlowKey::default();
            let parsed = encap::extract(frame, &mut key);
            let _ = encap::rewrite::complete_l4_checksum(frame, &parsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that drops what it is given (no flush happens in these tests: the batches hold
    /// fewer than `BATCH` frames) and whose kernel drop counter grows by `drop_step` per
    /// `refresh_stats`, as AF_PACKET's accumulated `tp_drops` would.
    struct StubPort {
        mtu: usize,
        gso: bool,
        drops: u64,
        drop_step: u64,
    }

    impl StubPort {
        fn sink(mtu: usize, gso: bool) -> StubPort {
            StubPort {
                mtu,
                gso,
                drops: 0,
                drop_step: 0,
            }
        }

        fn dropping() -> StubPort {
            StubPort {
                drop_step: 5,
                ..StubPort::sink(1500, false)
            }
        }
    }

    impl Port for StubPort {
        fn name(&self) -> &str {
            "stub"
        }
        fn rx_batch(&mut self, _: &mut Batch) -> io::Result<usize> {
            Ok(0)
        }
        fn tx_batch(&mut self, batch: &mut Batch) -> tap_io::TxReport {
            batch.clear();
            tap_io::TxReport::default()
        }
        fn fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
        fn stats(&self) -> PortStats {
            // Each refusal of the port's own grows with the kernel's drops, at its own rate.
            PortStats {
                rx_kernel_drops: self.drops,
                rx_truncated: self.drops / 5,
                rx_bad_vnet: self.drops / 5 * 2,
                rx_errors: self.drops / 5 * 3,
                ..PortStats::default()
            }
        }
        fn refresh_stats(&mut self) {
            self.drops += self.drop_step;
        }
        fn mtu(&self) -> usize {
            self.mtu
        }
        fn offloads(&self) -> Offloads {
            Offloads {
                gso: self.gso,
                csum: self.gso,
            }
        }
    }

    /// A TCP super-frame and its segments as a tunnel delivers them (full checksums).
    fn tunnel_segments(payload: &[u8], mss: u16) -> (Vec<u8>, Vec<Vec<u8>>) {
        let sup = encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .ident(7)
            .tcp(40000, 5201, 0x10)
            .payload(payload)
            .build();
        let info = encap::gso::GsoInfo {
            kind: encap::gso::GsoKind::Tcp4,
            mss,
            hdr_len: 54,
        };
        let mut segs = Vec::new();
        let mut scratch = Vec::new();
        encap::gso::segment(&sup, &info, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        (sup, segs)
    }

    fn rx_batch(frames: &[(Vec<u8>, u32)]) -> Batch {
        let mut b = Batch::new(32, 128, tap_io::GSO_FRAME_ROOM);
        for (f, vni) in frames {
            let meta = RxMeta {
                tunnel: Some(tap_io::TunnelMeta {
                    vni: *vni,
                    src: Ipv4Addr::new(192, 168, 0, 2),
                    dst: Ipv4Addr::new(192, 168, 0, 1),
                }),
                ..RxMeta::default()
            };
            assert!(b.push_copy_with_meta(f, &meta));
        }
        b
    }

    /// Segments a super-frame the way an output without offloads would.
    fn resegment(pkt: &PacketBuf) -> Vec<Vec<u8>> {
        let g = pkt.meta.gso.expect("a super-frame");
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        encap::gso::segment(pkt.data(), &gso_info(&g), &mut scratch, |s| {
            out.push(s.to_vec())
        })
        .unwrap();
        out
    }

    #[test]
    fn received_tunnel_segments_merge_into_the_super_frame_they_came_from() {
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let (_, segs) = tunnel_segments(&payload, 1400);
        assert_eq!(segs.len(), 15);
        let mut rx = rx_batch(&segs.iter().map(|s| (s.clone(), 42)).collect::<Vec<_>>());
        assert_eq!(coalesce_received(&mut rx), 14);
        assert_eq!(rx.len(), 1);
        let m = rx[0].meta;
        assert_eq!(
            m.gso.map(|g| (g.kind, g.size)),
            Some((tap_io::GsoKind::Tcp4, 1400))
        );
        assert!(m.csum_not_ready, "the TCP checksum is left partial");
        assert_eq!(m.csum_start, Some(34));
        assert!(
            m.tunnel.is_some(),
            "the tunnel metadata stays for the pipeline"
        );
        // Segmented again, it gives back the very segments that arrived.
        assert_eq!(resegment(&rx[0]), segs);
    }

    #[test]
    fn received_tunnel_segments_merge_only_what_may_be_merged() {
        let payload: Vec<u8> = (0..8_000u32).map(|i| (i * 13) as u8).collect();
        let (_, segs) = tunnel_segments(&payload, 1000);
        assert_eq!(segs.len(), 8);
        let mut bad = segs[5].clone();
        let n = bad.len();
        bad[n - 1] ^= 0x40; // a damaged payload byte: its checksum no longer matches
        let frames = vec![
            (segs[0].clone(), 42),
            (segs[1].clone(), 42),
            (segs[2].clone(), 7), // another tunnel
            (segs[3].clone(), 42),
            (segs[4].clone(), 42),
            (bad.clone(), 42),
            (segs[6].clone(), 42),
            (segs[7].clone(), 42),
        ];
        let mut rx = rx_batch(&frames);
        assert_eq!(coalesce_received(&mut rx), 3);
        let lens: Vec<usize> = rx.iter().map(|p| p.len()).collect();
        assert_eq!(rx.len(), 5, "{lens:?}");
        // [0+1] [2 from vni 7] [3+4] [5 damaged, alone] [6+7]: order kept, the damaged
        // segment left exactly as it came, never given a fresh checksum.
        assert_eq!(resegment(&rx[0]), segs[0..2].to_vec());
        assert_eq!(rx[1].data(), &segs[2][..]);
        assert_eq!(rx[1].meta.tunnel.map(|t| t.vni), Some(7));
        assert!(rx[1].meta.gso.is_none());
        assert_eq!(resegment(&rx[2]), segs[3..5].to_vec());
        assert_eq!(rx[3].data(), &bad[..]);
        assert!(rx[3].meta.gso.is_none() && !rx[3].meta.csum_not_ready);
        assert_eq!(resegment(&rx[4]), segs[6..8].to_vec());
        // Nothing to merge: nothing changes.
        let mut one = rx_batch(&[(segs[0].clone(), 42)]);
        assert_eq!(coalesce_received(&mut one), 0);
        assert_eq!(one[0].data(), &segs[0][..]);
    }

    fn sink_port(tunnel: bool, mtu: usize, gso: bool) -> DpPort {
        let sink = Box::new(StubPort::sink(mtu, gso));
        DpPort::new(
            "p",
            0,
            1,
            if tunnel {
                PortKind::Vxlan
            } else {
                PortKind::AfPacket
            },
            if tunnel {
                PortIo::Tunnel(sink)
            } else {
                PortIo::Dev(sink)
            },
            Arc::new(PortCounters::default()),
            Arc::new(super::super::drops::DropCounters::default()),
        )
    }

    const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

    #[test]
    fn pod_segments_into_a_gso_tunnel_leave_as_one_super_frame() {
        // What a pod without offloads sends: MTU-sized segments with full checksums.
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 11 + 5) as u8).collect();
        let (_, segs) = tunnel_segments(&payload, 1396);
        assert_eq!(segs.len(), 15);
        let mut bad = segs[10].clone();
        let n = bad.len();
        bad[n - 3] ^= 0x08; // damaged: must not be merged (nor given a fresh checksum)
        let mut vx = sink_port(true, 1450, true);
        let plain = RxMeta::default();
        for s in &segs[..4] {
            vx.queue_tunnel(s, &plain, PEER, 42).unwrap();
        }
        // Another remote: a frame of its own, and the run ends there.
        vx.queue_tunnel(&segs[4], &plain, Ipv4Addr::new(192, 168, 0, 3), 42)
            .unwrap();
        for s in &segs[5..10] {
            vx.queue_tunnel(s, &plain, PEER, 42).unwrap();
        }
        vx.queue_tunnel(&bad, &plain, PEER, 42).unwrap();
        for s in &segs[11..] {
            vx.queue_tunnel(s, &plain, PEER, 7).unwrap();
        }
        let lens: Vec<usize> = vx.tx.iter().map(|p| p.len()).collect();
        assert_eq!(vx.tx.len(), 5, "{lens:?}");
        assert_eq!(resegment(&vx.tx[0]), segs[..4].to_vec());
        assert_eq!(vx.tx[1].data(), &segs[4][..]);
        assert_eq!(
            vx.tx[1].meta.tunnel.map(|t| t.dst),
            Some(Ipv4Addr::new(192, 168, 0, 3))
        );
        assert_eq!(resegment(&vx.tx[2]), segs[5..10].to_vec());
        assert_eq!(vx.tx[3].data(), &bad[..]);
        assert!(vx.tx[3].meta.gso.is_none());
        // The last four went to VNI 7: merged among themselves only.
        assert_eq!(resegment(&vx.tx[4]), segs[11..].to_vec());
        let t = vx.tx[4].meta.tunnel.unwrap();
        assert_eq!((t.dst, t.vni), (PEER, 7));
        let m = vx.tx[0].meta;
        assert_eq!(m.gso.map(|g| g.size), Some(1396));
        assert!(m.csum_not_ready && m.csum_start == Some(34) && m.csum_offset == Some(16));

        // A long run stays within one outer IPv4 packet.
        let long: Vec<u8> = (0..65_000u32).map(|i| (i * 3) as u8).collect();
        let (_, segs) = tunnel_segments(&long, 1396);
        assert_eq!(segs.len(), 47);
        let mut vx = sink_port(true, 1450, true);
        for s in &segs {
            vx.queue_tunnel(s, &plain, PEER, 42).unwrap();
        }
        assert_eq!(vx.tx.len(), 1);
        assert!(vx.tx[0].len() + TUNNEL_OUTER_LEN <= usize::from(u16::MAX));
        assert_eq!(resegment(&vx.tx[0]), segs);

        // A tunnel without the GSO TAP keeps every segment a datagram of its own.
        let mut vx = sink_port(true, 1450, false);
        for s in &segs[..5] {
            vx.queue_tunnel(s, &plain, PEER, 42).unwrap();
        }
        assert_eq!(vx.tx.len(), 5);
    }

    #[test]
    fn a_super_frame_into_a_gso_tunnel_is_moved_not_copied() {
        let payload: Vec<u8> = (0..30_000u32).map(|i| i as u8).collect();
        let (sup, _) = tunnel_segments(&payload, 1396);
        let gso_meta = RxMeta {
            gso: Some(tap_io::Gso {
                kind: tap_io::GsoKind::Tcp4,
                size: 1396,
                hdr_len: 54,
                ecn: false,
            }),
            ..RxMeta::default()
        };
        let mut vx = sink_port(true, 1450, true);
        let mut pkt = PacketBuf::new(tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM);
        pkt.set_frame(&sup).unwrap();
        pkt.meta = gso_meta;
        let at = pkt.data().as_ptr();
        vx.queue_tunnel_owned(&mut pkt, PEER, 42).unwrap();
        assert_eq!(vx.tx.len(), 1);
        assert_eq!(vx.tx[0].data().as_ptr(), at, "the same memory, not a copy");
        assert_eq!(vx.tx[0].data(), &sup[..]);
        assert_eq!(vx.tx[0].meta.gso, gso_meta.gso);
        assert_eq!(
            vx.tx[0].meta.tunnel.map(|t| (t.dst, t.vni)),
            Some((PEER, 42))
        );
        assert!(pkt.is_empty(), "the caller is left an empty buffer");

        // Too little headroom for the outer headers: copied, the packet left as it was.
        let mut pkt = PacketBuf::new(tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM);
        pkt.set_frame(&[]).unwrap();
        pkt.push_front(tap_io::buf::DEFAULT_HEADROOM - 40).unwrap();
        pkt.truncate(0);
        pkt.extend_from_slice(&sup).unwrap();
        pkt.meta = gso_meta;
        assert!(pkt.headroom() < TUNNEL_TAP_HEADROOM);
        vx.queue_tunnel_owned(&mut pkt, PEER, 42).unwrap();
        assert_eq!(vx.tx.len(), 2);
        assert_ne!(vx.tx[1].data().as_ptr(), pkt.data().as_ptr());
        assert_eq!(vx.tx[1].data(), &sup[..]);
        assert_eq!(pkt.data(), &sup[..]);

        // A pod's MSS larger than the tunnel's inner MTU allows (1448 over 1450: 1410): the
        // super-frame still goes whole, announcing segments that fit, by either path.
        let (big, _) = tunnel_segments(&payload, 1448);
        let big_meta = RxMeta {
            gso: Some(tap_io::Gso {
                size: 1448,
                ..gso_meta.gso.unwrap()
            }),
            ..RxMeta::default()
        };
        let mut vx = sink_port(true, 1450, true);
        vx.queue_tunnel(&big, &big_meta, PEER, 42).unwrap();
        let mut pkt = PacketBuf::new(tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM);
        pkt.set_frame(&big).unwrap();
        pkt.meta = big_meta;
        vx.queue_tunnel_owned(&mut pkt, PEER, 42).unwrap();
        for p in vx.tx.iter() {
            assert_eq!(p.meta.gso.map(|g| g.size), Some(1410));
        }
        // A UDP super-frame's segments are datagrams: refused, not split.
        let udp_meta = RxMeta {
            gso: Some(tap_io::Gso {
                kind: tap_io::GsoKind::Udp,
                size: 1448,
                hdr_len: 42,
                ecn: false,
            }),
            ..RxMeta::default()
        };
        let dgrams = encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(40000, 5201)
            .payload(&payload[..4 * 1448])
            .build();
        assert_eq!(
            vx.queue_tunnel(&dgrams, &udp_meta, PEER, 42),
            Err(DropReason::TunnelTooBig)
        );

        // Without the GSO TAP the same super-frame is segmented here, at the size that fits.
        let mut vx = sink_port(true, 1450, false);
        vx.queue_tunnel(&big, &big_meta, PEER, 42).unwrap();
        assert!(vx.tx.len() > 1);
        for p in vx.tx.iter() {
            assert!(p.len() <= 1450 + 14, "{} bytes", p.len());
        }

        // A tunnel without the GSO TAP segments it (a copy per segment), as before.
        let mut vx = sink_port(true, 1450, false);
        let mut pkt = PacketBuf::new(tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM);
        pkt.set_frame(&sup).unwrap();
        pkt.meta = gso_meta;
        vx.queue_tunnel_owned(&mut pkt, PEER, 42).unwrap();
        assert_eq!(vx.tx.len(), 22);
        assert_eq!(pkt.data(), &sup[..]);
    }

    /// A super-frame received whole from a tunnel announces the segment size the tunnel's
    /// inner MTU allows (1410 bytes of payload for 1450); a pod behind a smaller MTU (1400)
    /// must get segments that fit it.
    #[test]
    fn super_frames_are_cut_to_the_output_port_mtu() {
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 5 + 1) as u8).collect();
        let (sup, _) = tunnel_segments(&payload, 1410);
        let meta = RxMeta {
            gso: Some(tap_io::Gso {
                kind: tap_io::GsoKind::Tcp4,
                size: 1410,
                hdr_len: 54,
                ecn: false,
            }),
            ..RxMeta::default()
        };
        // A port without offloads: segmented here, every segment within 1400 + 14 bytes,
        // each a valid TCP segment, together the whole payload.
        let mut pod = sink_port(false, 1400, false);
        pod.queue(&sup, &meta).unwrap();
        let mut got = Vec::new();
        for p in pod.tx.iter() {
            assert!(p.len() <= 1400 + 14, "{} bytes", p.len());
            let seg = encap::gro::TcpSegment::parse(p.data()).unwrap();
            assert!(seg.checksum_ok(p.data()));
            got.extend_from_slice(seg.payload(p.data()));
        }
        assert_eq!(got, payload);
        assert_eq!(pod.tx.len(), payload.len().div_ceil(1400 - 40));
        // A port that takes super-frames: handed whole, with the segment size it allows.
        let mut pod = sink_port(false, 1400, true);
        pod.queue(&sup, &meta).unwrap();
        assert_eq!(pod.tx[0].meta.gso.map(|g| g.size), Some(1360));
        let mut pkt = PacketBuf::new(tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM);
        pkt.set_frame(&sup).unwrap();
        pkt.meta = meta;
        pod.queue_owned(&mut pkt).unwrap();
        assert_eq!(pod.tx[1].meta.gso.map(|g| g.size), Some(1360));
        // Where it fits, nothing changes.
        let mut pod = sink_port(false, 1500, true);
        pod.queue(&sup, &meta).unwrap();
        assert_eq!(pod.tx[0].meta.gso.map(|g| g.size), Some(1410));
        let mut pod = sink_port(false, 1500, false);
        pod.queue(&sup, &meta).unwrap();
        assert_eq!(pod.tx.len(), payload.len().div_ceil(1410));
    }

    #[test]
    fn kernel_drops_are_folded_into_rx_dropped_once() {
        let counters = Arc::new(PortCounters::default());
        let mut p = DpPort::new(
            "d",
            0,
            1,
            PortKind::AfPacket,
            PortIo::Dev(Box::new(StubPort::dropping())),
            counters.clone(),
            Arc::new(super::super::drops::DropCounters::default()),
        );
        p.fold_kernel_drops();
        // 5 kernel drops, 1 frame cut, 2 with a bad virtio-net header.
        assert_eq!(counters.snapshot().rx_dropped, 8);
        p.fold_kernel_drops();
        p.fold_kernel_drops();
        assert_eq!(counters.snapshot().rx_dropped, 24, "deltas, not totals");
        // A transmit-only copy on another thread does not count them again.
        p.polled = false;
        p.fold_kernel_drops();
        assert_eq!(counters.snapshot().rx_dropped, 24);
    }

    #[test]
    fn frames_the_port_refused_are_named_drops_and_failed_reads_errors() {
        let counters = Arc::new(PortCounters::default());
        let drops = Arc::new(super::super::drops::DropCounters::default());
        let mut p = DpPort::new(
            "d",
            0,
            1,
            PortKind::AfPacket,
            PortIo::Dev(Box::new(StubPort::dropping())),
            counters.clone(),
            drops.clone(),
        );
        p.fold_kernel_drops();
        p.fold_kernel_drops();
        assert_eq!(drops.get(DropReason::RxTruncated), 2);
        assert_eq!(drops.get(DropReason::RxBadVnet), 4);
        assert_eq!(counters.snapshot().rx_errors, 6);
    }

    /// An untagged frame's IP packet must fit the tunnel's inner MTU (1450 over a 1500-byte
    /// underlay); a VLAN-tagged frame gets the tag's 4 bytes on top, a second tag nothing
    /// more. With and without the GSO TAP (where a frame may be merged into the one queued
    /// before it).
    #[test]
    fn tunnel_mtu_check_counts_the_vlan_tag_only_when_there_is_one() {
        let frame = |tags: &[u16], ip_len: usize| {
            let mut b = encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            for (i, tci) in tags.iter().enumerate() {
                b = b.tag(if i + 1 < tags.len() { 0x88a8 } else { 0x8100 }, *tci);
            }
            let f = b
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
                .udp(40000, 5201)
                .payload(&vec![7u8; ip_len - 28])
                .build();
            assert_eq!(f.len(), 14 + 4 * tags.len() + ip_len);
            f
        };
        let meta = RxMeta::default();
        for gso in [false, true] {
            let mut vx = sink_port(true, 1450, gso);
            // Something queued first: with GSO the frames below may be merged into it.
            vx.queue_tunnel(&frame(&[], 100), &meta, PEER, 42).unwrap();
            for (tags, ip_len, fits) in [
                (&[][..], 1450, true),
                (&[][..], 1451, false),
                (&[][..], 1454, false),
                (&[5][..], 1450, true), // 1454 bytes after the Ethernet header
                (&[5][..], 1451, false),
                (&[5, 6][..], 1446, true),
                (&[5, 6][..], 1447, false),
            ] {
                let got = vx.queue_tunnel(&frame(tags, ip_len), &meta, PEER, 42);
                let want = if fits {
                    Ok(())
                } else {
                    Err(DropReason::TunnelTooBig)
                };
                assert_eq!(got, want, "gso {gso}, tags {tags:?}, IP {ip_len} bytes");
            }
        }
    }
}
