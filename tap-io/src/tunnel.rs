//! `TunnelPort`: a datagram tunnel (VXLAN) as a batch [`Port`].
//!
//! The underlay is a datagram back end ([`Datagrams`]): the kernel UDP socket
//! ([`UdpTunnelSocket`]) in the switch, an in-memory queue ([`MemDatagrams`]) in tests and
//! fuzzing. The kernel builds and strips the outer IP/UDP headers; the port handles the tunnel
//! header in front of each inner frame, through a [`TunnelHeader`] (the byte format lives in
//! `encap`; `vswitch::datapath::vxlan::Vxlan` is the VXLAN one):
//!
//! - receive: each datagram's header is checked ([`TunnelHeader::check`]); datagrams from an
//!   IPv6 peer, from another remote than a fixed-remote port's, or with another VNI than a
//!   fixed-key port's are refused; the header is stripped (the inner frame is pulled forward
//!   in place) and an inner frame shorter than [`TunnelHeader::MIN_INNER`] is refused. The
//!   accepted frames carry `meta.tunnel` = (VNI, outer source, local address). The outer ECN
//!   field is applied to the inner packet (`encap::ecn::decapsulate`, RFC 6040): an outer CE
//!   marks an ECN-capable inner packet CE, and a Not-ECT one is refused. Refusals are
//!   counted per reason in [`PortStats`] (`rx_tunnel_short`, `rx_tunnel_bad_header`,
//!   `rx_tunnel_unknown`, `rx_tunnel_ce_not_ect`).
//! - transmit: each frame's `meta.tunnel` names the VNI and the remote; the header is pushed
//!   into the buffer's headroom and the datagram sent to `(remote, dst_port)` with the outer
//!   ECN field taken from the inner packet's (`encap::ecn::encapsulate`: CE leaves as ECT(0),
//!   not IP as Not-ECT; the DSCP is 0), from the UDP source port of its inner flow where the
//!   back end varies it (`encap::hash::frame_flow_hash`, [`Datagrams::source_port`]). A frame
//!   without `meta.tunnel` is dropped as `Unreachable`, one without headroom as `Other`.
//!
//! Nothing is allocated per packet.

use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buf::{Batch, Gso, GsoKind, MAX_BATCH, PacketBuf, TunnelMeta};
use crate::port::{Port, PortStats, TxDropReason, TxReport};
use crate::udp::UdpTunnelSocket;

/// Why a received datagram was refused by its tunnel header check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelRxDrop {
    /// Too short for the header (or, after it, for an inner frame).
    Short,
    /// The header's flags are not what the tunnel accepts.
    BadHeader,
}

/// The tunnel header format: checked and stripped on receive, pushed on transmit.
pub trait TunnelHeader {
    /// Length in bytes of the header pushed on transmit (a received one may be longer:
    /// options).
    const LEN: usize;
    /// Shortest inner frame accepted after the header.
    const MIN_INNER: usize;
    /// Checks the header at the front of `payload` (the inner frame's length is checked by
    /// the port, after its remote/VNI filters); returns the VNI and the header's length (the
    /// inner frame starts there).
    fn check(payload: &[u8]) -> Result<(u32, usize), TunnelRxDrop>;
    /// Writes the header for `vni` into `header` (exactly [`TunnelHeader::LEN`] bytes).
    fn write(header: &mut [u8], vni: u32);
}

/// A datagram underlay moving payloads with their peer addresses and outer TOS bytes in
/// batches.
pub trait Datagrams {
    /// Receives payloads into the batch's spare slots; the payload appended at batch index
    /// `k` came from `srcs[k]` with the outer TOS byte `tos[k]` (`tos` is as long as `srcs`).
    /// Returns how many were appended; fewer than the room (bounded by `srcs`) means drained.
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        srcs: &mut [SocketAddr],
        tos: &mut [u8],
    ) -> io::Result<usize>;
    /// Sends payload `k` to `dsts[k]` with the outer TOS byte `tos[k]`, from the source port
    /// of its inner flow's hash `flows[k]` where the back end varies it, and empties the batch.
    fn send_batch(
        &mut self,
        batch: &mut Batch,
        dsts: &[SocketAddr],
        tos: &[u8],
        flows: &[u32],
    ) -> TxReport;
    /// The UDP source port a datagram of the flow with this hash leaves from, where the back
    /// end varies it by flow; `None`: one port for all.
    fn source_port(&self, _flow: u32) -> Option<u16> {
        None
    }
    /// Whether the back end uses the flow hashes (else the port does not compute them).
    fn varies_source_port(&self) -> bool {
        false
    }
    /// The descriptor to register for read readiness, if any.
    fn fd(&self) -> Option<RawFd>;
    /// Counters since the back end was opened.
    fn stats(&self) -> PortStats;
    /// A second handle for another thread to send through.
    fn try_clone(&self) -> io::Result<Self>
    where
        Self: Sized;
}

impl Datagrams for UdpTunnelSocket {
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        srcs: &mut [SocketAddr],
        tos: &mut [u8],
    ) -> io::Result<usize> {
        UdpTunnelSocket::recv_batch_tos(self, batch, srcs, tos)
    }
    fn send_batch(
        &mut self,
        batch: &mut Batch,
        dsts: &[SocketAddr],
        tos: &[u8],
        flows: &[u32],
    ) -> TxReport {
        UdpTunnelSocket::send_batch_flows(self, batch, dsts, tos, flows)
    }
    fn source_port(&self, flow: u32) -> Option<u16> {
        self.source_ports().map(|p| p.port_of(flow))
    }
    fn varies_source_port(&self) -> bool {
        self.source_ports().is_some()
    }
    fn fd(&self) -> Option<RawFd> {
        Some(self.raw_fd())
    }
    fn stats(&self) -> PortStats {
        UdpTunnelSocket::stats(self)
    }
    fn try_clone(&self) -> io::Result<Self> {
        UdpTunnelSocket::try_clone(self)
    }
}

/// A datagram as (peer, outer TOS byte, inner flow hash (sent ones), payload).
type Datagram = (SocketAddr, u8, u32, Vec<u8>);
type DatagramQueue = Arc<Mutex<VecDeque<Datagram>>>;

fn lock(q: &DatagramQueue) -> MutexGuard<'_, VecDeque<Datagram>> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// An in-memory datagram underlay for tests and fuzzing: [`MemDatagrams::inject`] queues a
/// payload to receive from a peer, [`MemDatagrams::take_sent`] takes what was sent (the `_tos`
/// variants with the outer TOS byte, the `_flows` one with the inner flow hash the port gave
/// each). Clones share the queues. Payloads larger than a buffer
/// are counted `rx_truncated` and dropped, as the UDP socket does.
#[derive(Debug, Clone, Default)]
pub struct MemDatagrams {
    rx: DatagramQueue,
    tx: DatagramQueue,
    stats: PortStats,
    /// Asks the port for flow hashes ([`MemDatagrams::recording_flows`]).
    flows: bool,
}

impl MemDatagrams {
    /// An empty underlay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the port for each datagram's inner flow hash and keeps it
    /// ([`MemDatagrams::take_sent_with_flows`]), as a socket with source ports does.
    pub fn recording_flows(mut self) -> Self {
        self.flows = true;
        self
    }

    /// Queues `payload` as received from `src` (outer TOS 0).
    pub fn inject(&self, src: SocketAddr, payload: &[u8]) {
        self.inject_with_tos(src, 0, payload);
    }

    /// Queues `payload` as received from `src` with the outer TOS byte `tos`.
    pub fn inject_with_tos(&self, src: SocketAddr, tos: u8, payload: &[u8]) {
        lock(&self.rx).push_back((src, tos, 0, payload.to_vec()));
    }

    /// Takes every datagram sent, with its destination.
    pub fn take_sent(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        lock(&self.tx)
            .drain(..)
            .map(|(a, _, _, d)| (a, d))
            .collect()
    }

    /// Takes every datagram sent, with its destination and outer TOS byte.
    pub fn take_sent_with_tos(&self) -> Vec<(SocketAddr, u8, Vec<u8>)> {
        lock(&self.tx)
            .drain(..)
            .map(|(a, t, _, d)| (a, t, d))
            .collect()
    }

    /// Takes every datagram sent, with its destination and the inner flow hash it was sent
    /// with (what picks its UDP source port on a socket).
    pub fn take_sent_with_flows(&self) -> Vec<(SocketAddr, u32, Vec<u8>)> {
        lock(&self.tx)
            .drain(..)
            .map(|(a, _, f, d)| (a, f, d))
            .collect()
    }

    /// Datagrams waiting to be received.
    pub fn pending_rx(&self) -> usize {
        lock(&self.rx).len()
    }
}

impl Datagrams for MemDatagrams {
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        srcs: &mut [SocketAddr],
        tos: &mut [u8],
    ) -> io::Result<usize> {
        let mut q = lock(&self.rx);
        let mut n = 0;
        while batch.len() < srcs.len() {
            let k = batch.len();
            let Some(buf) = batch.spare() else { break };
            let Some((src, outer_tos, _, payload)) = q.pop_front() else {
                break;
            };
            if buf.set_frame(&payload).is_err() {
                self.stats.rx_truncated += 1;
                continue;
            }
            buf.meta.wire_len = payload.len() as u32;
            srcs[k] = src;
            if let Some(t) = tos.get_mut(k) {
                *t = outer_tos;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += payload.len() as u64;
            batch.commit();
            n += 1;
        }
        Ok(n)
    }

    fn send_batch(
        &mut self,
        batch: &mut Batch,
        dsts: &[SocketAddr],
        tos: &[u8],
        flows: &[u32],
    ) -> TxReport {
        let mut r = TxReport::default();
        let mut q = lock(&self.tx);
        for (i, p) in batch.iter().enumerate() {
            match dsts.get(i) {
                Some(dst) => {
                    let t = tos.get(i).copied().unwrap_or(0);
                    let f = flows.get(i).copied().unwrap_or(0);
                    q.push_back((*dst, t, f, p.data().to_vec()));
                    r.sent += 1;
                    r.bytes += p.len() as u64;
                }
                None => r.dropped.add(TxDropReason::Unreachable, 1),
            }
        }
        batch.clear();
        self.stats.account_tx(&r);
        r
    }

    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn varies_source_port(&self) -> bool {
        self.flows
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(MemDatagrams {
            rx: Arc::new(Mutex::new(VecDeque::new())),
            tx: self.tx.clone(),
            stats: PortStats::default(),
            flows: self.flows,
        })
    }
}

/// What a tunnel port accepts and where it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The local underlay address (recorded as the outer destination of received frames).
    pub local: Ipv4Addr,
    /// The UDP port datagrams are sent to (4789 for VXLAN).
    pub dst_port: u16,
    /// Accept only from this remote (fixed-remote ports).
    pub remote: Option<Ipv4Addr>,
    /// Accept only this VNI (fixed-key ports).
    pub vni: Option<u32>,
    /// Largest underlay IP packet (the underlay interface's MTU).
    pub underlay_mtu: usize,
}

/// A datagram tunnel port; see the module docs.
pub struct TunnelPort<D, H> {
    name: String,
    io: D,
    cfg: TunnelConfig,
    /// Sources and outer TOS bytes of the datagrams of one receive, indexed like the batch.
    srcs: Vec<SocketAddr>,
    rx_tos: Vec<u8>,
    /// Destinations and outer TOS bytes of one transmit, indexed like the batch.
    dsts: Vec<SocketAddr>,
    tx_tos: Vec<u8>,
    /// The inner flow hash of each frame of one transmit (its UDP source port where the back
    /// end varies it).
    tx_flows: Vec<u32>,
    /// Receive refusals and header-push drops (merged into the back end's stats).
    own: PortStats,
    /// Whole super-frames to the underlay through a TAP (UDP-tunnel GSO), where the kernel
    /// has it; `None`: every super-frame is segmented before the socket.
    gso_tx: Option<crate::TunnelGsoTx>,
    header: PhantomData<fn() -> H>,
}

impl<D: Datagrams, H: TunnelHeader> TunnelPort<D, H> {
    /// A tunnel port over `io`.
    pub fn new(name: &str, io: D, cfg: TunnelConfig) -> Self {
        TunnelPort {
            name: name.to_owned(),
            io,
            cfg,
            srcs: vec![SocketAddr::from(([0, 0, 0, 0], 0)); MAX_BATCH],
            rx_tos: vec![0; MAX_BATCH],
            dsts: Vec::with_capacity(MAX_BATCH),
            tx_tos: Vec::with_capacity(MAX_BATCH),
            tx_flows: Vec::with_capacity(MAX_BATCH),
            own: PortStats::default(),
            gso_tx: None,
            header: PhantomData,
        }
    }

    /// Sends batches holding GSO super-frames through `tx` (see [`crate::tunnel_gso`]); the
    /// port then takes super-frames whole ([`Port::offloads`]).
    pub fn with_gso_tx(mut self, tx: crate::TunnelGsoTx) -> Self {
        self.gso_tx = Some(tx);
        self
    }

    /// Whether super-frames leave whole (a TAP with UDP-tunnel GSO is attached).
    pub fn has_gso_tx(&self) -> bool {
        self.gso_tx.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &TunnelConfig {
        &self.cfg
    }

    /// The datagram back end.
    pub fn datagrams(&self) -> &D {
        &self.io
    }

    /// A transmit handle for another thread (a clone of the back end; it never receives).
    pub fn try_clone_tunnel(&self) -> io::Result<Self> {
        let mut p = TunnelPort::new(&self.name, self.io.try_clone()?, self.cfg);
        p.gso_tx = self.gso_tx.clone();
        Ok(p)
    }

    /// Sends the whole batch, in order, through the TAP: super-frames as tunnel GSO, the rest
    /// as plain datagrams (so that nothing of one flow overtakes what came before it).
    fn tx_batch_tap(&mut self, batch: &mut Batch) -> TxReport {
        let mut r = TxReport::default();
        let Some(tx) = self.gso_tx.as_mut() else {
            return r;
        };
        for p in batch.iter_mut() {
            let Some(t) = p.meta.tunnel else {
                r.dropped.add(TxDropReason::Unreachable, 1);
                continue;
            };
            let tos = encap::ecn::encapsulate(0, p.data());
            let src_port = if self.io.varies_source_port() {
                self.io.source_port(encap::hash::frame_flow_hash(p.data()))
            } else {
                None
            };
            let Ok(h) = p.push_front(H::LEN) else {
                r.dropped.add(TxDropReason::Other, 1);
                continue;
            };
            H::write(h, t.vni);
            if !crate::TunnelGsoTx::fits(p) {
                r.dropped.add(TxDropReason::TooBig, 1);
                continue;
            }
            match tx.send(p, H::LEN, t.dst, src_port, tos) {
                Ok(()) => {
                    r.sent += 1;
                    r.bytes += p.len() as u64;
                    self.own.tx_gso += u64::from(p.meta.gso.is_some());
                }
                Err(e) => r.dropped.add(
                    match e.raw_os_error() {
                        Some(libc::EAGAIN | libc::ENOBUFS) => TxDropReason::QueueFull,
                        Some(libc::EIO | libc::ENETDOWN | libc::ENODEV) => TxDropReason::LinkDown,
                        _ => TxDropReason::Other,
                    },
                    1,
                ),
            }
        }
        batch.clear();
        self.own.tx_packets += r.sent as u64;
        self.own.tx_bytes += r.bytes;
        self.own.tx_dropped.merge(&r.dropped);
        r
    }

    /// Checks and strips packet `i`; the tunnel metadata, or why it was refused.
    fn accept(&mut self, batch: &mut Batch, i: usize) -> Result<TunnelMeta, RxRefusal> {
        let src = match self.srcs[i] {
            SocketAddr::V4(a) => *a.ip(),
            SocketAddr::V6(_) => return Err(RxRefusal::Unknown),
        };
        let pkt = &mut batch.packets_mut()[i];
        let (vni, header_len) = H::check(pkt.data()).map_err(RxRefusal::Header)?;
        if self.cfg.remote.is_some_and(|r| r != src) || self.cfg.vni.is_some_and(|k| k != vni) {
            return Err(RxRefusal::Unknown);
        }
        if pkt.pull_front(header_len).is_err() || pkt.len() < H::MIN_INNER {
            return Err(RxRefusal::Header(TunnelRxDrop::Short));
        }
        // RFC 6040: congestion the underlay marked reaches the inner packet, or the packet
        // goes (a Not-ECT one cannot carry the mark).
        encap::ecn::decapsulate(self.rx_tos[i], pkt.data_mut()).map_err(|_| RxRefusal::CeNotEct)?;
        let inner_mtu = inner_mtu::<H>(self.cfg.underlay_mtu);
        if pkt.len() > inner_mtu + 14 + 4 {
            if mark_tunnel_super_frame(pkt, inner_mtu) {
                self.own.rx_gso += 1;
            }
        } else if pkt.mark_partial_checksum() {
            // A kernel sender with checksum offload leaves the inner checksum partial; over
            // a veth underlay nothing finishes it and a UDP socket is not told.
            self.own.rx_csum_not_ready += 1;
        }
        Ok(TunnelMeta {
            vni,
            src,
            dst: self.cfg.local,
        })
    }
}

enum RxRefusal {
    Header(TunnelRxDrop),
    Unknown,
    /// Outer CE around an inner packet that is not ECN-capable.
    CeNotEct,
}

/// The largest inner IP packet over an underlay of `underlay_mtu`: minus the outer IPv4 and
/// UDP headers, the tunnel header and the inner Ethernet header.
fn inner_mtu<H: TunnelHeader>(underlay_mtu: usize) -> usize {
    underlay_mtu.saturating_sub(20 + 8 + H::LEN + 14)
}

/// A datagram longer than the underlay MTU allows carries a whole inner TCP super-frame: the
/// sender's kernel encapsulated a TSO super-frame once (UDP-tunnel GSO, `SKB_GSO_UDP_TUNNEL`)
/// and nothing segmented it on the way, as over a veth underlay (a plain UDP socket takes such
/// a GSO skb whole, without a `UDP_GRO` segment size). Its TCP checksum is still the partial
/// pseudo-header sum, its IP length the whole frame's. Marks `pkt` as the super-frame it is
/// (`meta.gso` with the segment size the underlay allows, the checksum partial), as a port with
/// virtio-net headers would have received it; `false` (nothing changed) when the inner frame
/// is not such a TCP frame (untagged IPv4/IPv6, IP length = the frame's, no IPv4 options or
/// fragments, IPv6 without extension headers).
fn mark_tunnel_super_frame(pkt: &mut PacketBuf, inner_mtu: usize) -> bool {
    let f = pkt.data();
    let be16 = |at: usize| usize::from(u16::from_be_bytes([f[at], f[at + 1]]));
    let (kind, l3_len, ip_len) = match be16(12) {
        0x0800 if f.len() >= 14 + 20 => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let frag = be16(14 + 6) & 0x3fff;
            if f[14] >> 4 != 4 || ihl != 20 || f[14 + 9] != 6 || frag != 0 {
                return false;
            }
            (GsoKind::Tcp4, ihl, be16(14 + 2))
        }
        0x86dd if f.len() >= 14 + 40 => {
            if f[14] >> 4 != 6 || f[14 + 6] != 6 {
                return false;
            }
            (GsoKind::Tcp6, 40, 40 + be16(14 + 4))
        }
        _ => return false,
    };
    let l4 = 14 + l3_len;
    if ip_len != f.len() - 14 || f.len() < l4 + 20 {
        return false;
    }
    let tcp_len = usize::from(f[l4 + 12] >> 4) * 4;
    let hdr_len = l4 + tcp_len;
    let Some(mss) = inner_mtu.checked_sub(l3_len + tcp_len).filter(|&m| m > 0) else {
        return false;
    };
    if tcp_len < 20 || f.len() <= hdr_len {
        return false;
    }
    // CWR on the super-frame: the first segment only keeps it (`SKB_GSO_TCP_ECN`).
    let ecn = f[l4 + 13] & 0x80 != 0;
    // A kernel sender's TSO frame carries the partial sum; a peer's complete one is turned
    // into it (finished again later, it would be summed twice); a damaged one stays as it is.
    if !encap::partial_csum::make_tcp_partial(pkt.data_mut(), 14, l4) {
        return false;
    }
    pkt.meta.gso = Some(Gso {
        kind,
        size: mss.min(usize::from(u16::MAX)) as u16,
        hdr_len: hdr_len as u16,
        ecn,
    });
    pkt.meta.csum_not_ready = true;
    pkt.meta.csum_start = Some(l4 as u16);
    pkt.meta.csum_offset = Some(16);
    true
}

impl<D, H> Port for TunnelPort<D, H>
where
    D: Datagrams + Send + 'static,
    H: TunnelHeader + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    /// Appends the accepted inner frames; returns how many datagrams were *taken* (accepted
    /// or refused), so that "fewer than the room" still means drained.
    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        if self.srcs.len() < batch.capacity() {
            // Once per larger batch, not per packet.
            self.srcs
                .resize(batch.capacity(), SocketAddr::from(([0, 0, 0, 0], 0)));
            self.rx_tos.resize(batch.capacity(), 0);
        }
        let start = batch.len();
        let got = self
            .io
            .recv_batch(batch, &mut self.srcs, &mut self.rx_tos)?;
        let mut kept = start;
        for i in start..start + got {
            match self.accept(batch, i) {
                Ok(meta) => {
                    batch.packets_mut()[i].meta.tunnel = Some(meta);
                    if kept != i {
                        batch.packets_mut().swap(kept, i);
                    }
                    kept += 1;
                }
                Err(RxRefusal::Header(TunnelRxDrop::Short)) => self.own.rx_tunnel_short += 1,
                Err(RxRefusal::Header(TunnelRxDrop::BadHeader)) => {
                    self.own.rx_tunnel_bad_header += 1
                }
                Err(RxRefusal::Unknown) => self.own.rx_tunnel_unknown += 1,
                Err(RxRefusal::CeNotEct) => self.own.rx_tunnel_ce_not_ect += 1,
            }
        }
        // Drop the refused tail.
        let mut idx = 0;
        batch.retain(|_| {
            idx += 1;
            idx <= kept
        });
        Ok(got)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        if self.gso_tx.is_some() && batch.iter().any(|p| p.meta.gso.is_some()) {
            return self.tx_batch_tap(batch);
        }
        let mut dropped = crate::port::DropCounts::default();
        let dst_port = self.cfg.dst_port;
        let (dsts, tos, flows) = (&mut self.dsts, &mut self.tx_tos, &mut self.tx_flows);
        dsts.clear();
        tos.clear();
        flows.clear();
        let hash_flows = self.io.varies_source_port();
        batch.retain(|p| {
            p.meta.tunnel.is_some() || {
                dropped.add(TxDropReason::Unreachable, 1);
                false
            }
        });
        batch.retain(|p| {
            p.headroom() >= H::LEN || {
                dropped.add(TxDropReason::Other, 1);
                false
            }
        });
        for p in batch.iter_mut() {
            let Some(t) = p.meta.tunnel else { continue };
            tos.push(encap::ecn::encapsulate(0, p.data()));
            if hash_flows {
                flows.push(encap::hash::frame_flow_hash(p.data()));
            }
            if let Ok(h) = p.push_front(H::LEN) {
                H::write(h, t.vni);
            }
            dsts.push(SocketAddrV4::new(t.dst, dst_port).into());
        }
        let mut r = self.io.send_batch(batch, dsts, tos, flows);
        dsts.clear();
        r.dropped.merge(&dropped);
        self.own.tx_dropped.merge(&dropped);
        r
    }

    fn fd(&self) -> Option<RawFd> {
        self.io.fd()
    }

    fn stats(&self) -> PortStats {
        let mut s = self.io.stats();
        s.rx_tunnel_short = self.own.rx_tunnel_short;
        s.rx_tunnel_bad_header = self.own.rx_tunnel_bad_header;
        s.rx_tunnel_unknown = self.own.rx_tunnel_unknown;
        s.rx_tunnel_ce_not_ect = self.own.rx_tunnel_ce_not_ect;
        s.rx_gso += self.own.rx_gso;
        s.rx_csum_not_ready += self.own.rx_csum_not_ready;
        s.tx_packets += self.own.tx_packets;
        s.tx_bytes += self.own.tx_bytes;
        s.tx_gso += self.own.tx_gso;
        s.tx_dropped.merge(&self.own.tx_dropped);
        s
    }

    fn offloads(&self) -> crate::Offloads {
        crate::Offloads {
            gso: self.gso_tx.is_some(),
            csum: false,
        }
    }

    /// The largest inner IP packet: the underlay MTU minus the outer IPv4 and UDP headers,
    /// the tunnel header and the inner Ethernet header.
    fn mtu(&self) -> usize {
        inner_mtu::<H>(self.cfg.underlay_mtu)
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Some(
            self.try_clone_tunnel()
                .map(|p| Box::new(p) as Box<dyn Port + Send>),
        )
    }
}
