//! A port as the datapath holds it: its I/O back end, its tx batch and its counters.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use mio::{Registry, Token};
use tap_io::{Batch, Offloads, Port, RxMeta};

use super::BATCH;
use super::counters::PortCounters;
use super::drops::DropReason;
use crate::portspec::PortKind;

/// Bytes VXLAN adds in front of the inner frame on the underlay IP packet: IPv4 + UDP + VXLAN.
pub const VXLAN_OVERHEAD: usize = 20 + 8 + 8;

/// Tunnel metadata of one received VXLAN packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelMeta {
    pub vni: u32,
    pub src: u32,
    pub dst: u32,
}

pub enum PortIo {
    /// A frame port (AF_PACKET, TAP, in-memory).
    Dev(Box<dyn Port + Send>),
    /// A VXLAN port over a kernel UDP socket.
    Vxlan(Box<VxlanIo>),
}

pub struct VxlanIo {
    pub sock: tap_io::UdpTunnelSocket,
    pub local: Ipv4Addr,
    pub dst_port: u16,
    /// Accept only from this remote (fixed-remote ports).
    pub remote: Option<Ipv4Addr>,
    /// Accept only this VNI (fixed-key ports).
    pub vni: Option<u32>,
    /// Largest underlay IP packet (the underlay interface's MTU).
    pub underlay_mtu: usize,
    pub rx_meta: [TunnelMeta; BATCH],
    pub rx_src: Vec<std::net::SocketAddr>,
    pub tx_dst: Vec<std::net::SocketAddr>,
    pub drops: Arc<super::drops::DropCounters>,
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
        let mtu = match &io {
            PortIo::Dev(p) => p.mtu(),
            PortIo::Vxlan(v) => v.underlay_mtu.saturating_sub(VXLAN_OVERHEAD + 14),
        };
        let offloads = match &io {
            PortIo::Dev(p) => p.offloads(),
            PortIo::Vxlan(_) => Offloads::default(),
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
            PortIo::Vxlan(v) => PortIo::Vxlan(Box::new(VxlanIo {
                sock: v.sock.try_clone()?,
                local: v.local,
                dst_port: v.dst_port,
                remote: v.remote,
                vni: v.vni,
                underlay_mtu: v.underlay_mtu,
                rx_meta: [TunnelMeta::default(); BATCH],
                rx_src: v.rx_src.clone(),
                tx_dst: Vec::with_capacity(BATCH),
                drops: v.drops.clone(),
            })),
        };
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
        Ok(port)
    }

    pub fn is_tunnel(&self) -> bool {
        matches!(self.io, PortIo::Vxlan(_))
    }

    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.io {
            PortIo::Dev(p) => p.fd(),
            PortIo::Vxlan(v) => Some(v.sock.raw_fd()),
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self.fd() {
            Some(fd) => registry.register(
                &mut mio::unix::SourceFd(&fd),
                token,
                mio::Interest::READABLE,
            ),
            None => Ok(()),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        if let Some(fd) = self.fd() {
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
    }

    pub fn rx_tunnel_meta(&self, i: usize) -> TunnelMeta {
        match &self.io {
            PortIo::Vxlan(v) => v.rx_meta.get(i).copied().unwrap_or_default(),
            PortIo::Dev(_) => TunnelMeta::default(),
        }
    }

    /// Receives a batch into `rx`; VXLAN ports strip and validate the VXLAN header.
    pub fn receive(&mut self, rx: &mut Batch) -> io::Result<usize> {
        let n = match &mut self.io {
            PortIo::Dev(p) => p.rx_batch(rx)?,
            PortIo::Vxlan(v) => v.receive(rx)?,
        };
        if n > 0 {
            if let Some(tap) = self.capture.as_mut() {
                rx.iter().for_each(|p| tap.take(p.data()));
            }
            let bytes: u64 = rx.iter().map(|p| p.len() as u64).sum();
            PortCounters::add(&self.counters.rx_packets, n as u64);
            PortCounters::add(&self.counters.rx_bytes, bytes);
        }
        Ok(n)
    }

    /// Queues a copy of `frame` for transmission. Offloads the port lacks are done here: GSO
    /// super-frames are segmented, partial checksums completed (into the copy, never the
    /// original, which other outputs may still send as is).
    pub fn queue(
        &mut self,
        frame: &[u8],
        meta: &RxMeta,
        scratch: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        if self.is_tunnel() {
            return Err(DropReason::TunnelNoRoute);
        }
        if let Some(gso) = meta.gso.filter(|_| !self.offloads.gso) {
            let mut result = Ok(());
            let info = gso_info(&gso);
            let segmented = encap::gso::segment(frame, &info, scratch, |seg| {
                if result.is_ok() {
                    result = self.push(seg, None);
                }
            });
            return segmented.map_err(|_| DropReason::Malformed).and(result);
        }
        if meta.gso.is_none() && frame.len() > self.max_frame {
            return Err(DropReason::TooBig);
        }
        // A port with checksum offload still needs the checksum's position to finish it.
        if meta.csum_not_ready && (!self.offloads.csum || meta.csum_start.is_none()) {
            self.push(frame, None)?;
            let last = self.tx.len() - 1;
            finish_checksum(self.tx[last].data_mut(), meta);
            return Ok(());
        }
        let keep = meta.gso.is_some() || meta.csum_not_ready;
        self.push(frame, keep.then_some(meta))
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

    /// Largest inner frame's IP packet that fits the underlay after encapsulation.
    pub fn tunnel_inner_mtu(&self) -> usize {
        match &self.io {
            PortIo::Vxlan(v) => v.underlay_mtu.saturating_sub(VXLAN_OVERHEAD + 14),
            PortIo::Dev(p) => p.mtu(),
        }
    }

    /// Queues `frame` VXLAN-encapsulated towards `dst` with `vni`. The underlay socket has no
    /// offloads: GSO super-frames are segmented and partial checksums completed first.
    pub fn queue_tunnel(
        &mut self,
        frame: &[u8],
        meta: &RxMeta,
        dst: Ipv4Addr,
        vni: u32,
        scratch: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        if let Some(gso) = meta.gso {
            let mut result = Ok(());
            let info = gso_info(&gso);
            let segmented = encap::gso::segment(frame, &info, scratch, |seg| {
                if result.is_ok() {
                    result = self.push_tunnel(seg, None, dst, vni);
                }
            });
            return segmented.map_err(|_| DropReason::Malformed).and(result);
        }
        self.push_tunnel(frame, meta.csum_not_ready.then_some(meta), dst, vni)
    }

    fn push_tunnel(
        &mut self,
        frame: &[u8],
        finish_csum: Option<&RxMeta>,
        dst: Ipv4Addr,
        vni: u32,
    ) -> Result<(), DropReason> {
        // The inner frame's L3 part must fit the underlay MTU minus the outer headers.
        if frame.len().saturating_sub(14) > self.tunnel_inner_mtu() + 4 {
            return Err(DropReason::TunnelTooBig);
        }
        if self.tx.is_full() {
            self.flush();
        }
        let PortIo::Vxlan(v) = &mut self.io else {
            return Err(DropReason::PortDown);
        };
        let Some(buf) = self.tx.spare() else {
            return Err(DropReason::NoBuffer);
        };
        if buf.set_frame(frame).is_err() {
            return Err(DropReason::TooBig);
        }
        if let Some(meta) = finish_csum {
            finish_checksum(buf.data_mut(), meta);
        }
        let Ok(hdr) = buf.push_front(8) else {
            return Err(DropReason::NoBuffer);
        };
        // RFC 7348: flags with the I bit, 24 reserved bits, the VNI, 8 reserved bits.
        let id = vni.to_be_bytes();
        hdr.copy_from_slice(&[0x08, 0, 0, 0, id[1], id[2], id[3], 0]);
        self.tx.commit();
        v.tx_dst.push(SocketAddrV4::new(dst, v.dst_port).into());
        Ok(())
    }

    /// Sends whatever is queued.
    pub fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        // Tunnel ports show the inner frame, without the VXLAN header.
        let skip = if self.is_tunnel() { 8 } else { 0 };
        if let Some(tap) = self.capture.as_mut() {
            self.tx
                .iter()
                .for_each(|p| tap.take(p.data().get(skip..).unwrap_or_default()));
        }
        let report = match &mut self.io {
            PortIo::Dev(p) => p.tx_batch(&mut self.tx),
            PortIo::Vxlan(v) => {
                let r = v.sock.send_batch(&mut self.tx, &v.tx_dst);
                v.tx_dst.clear();
                r
            }
        };
        self.tx.clear();
        PortCounters::add(&self.counters.tx_packets, report.sent as u64);
        PortCounters::add(&self.counters.tx_bytes, report.bytes);
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
            PortCounters::add(&self.counters.tx_dropped, dropped);
        }
    }
}

impl VxlanIo {
    fn receive(&mut self, rx: &mut Batch) -> io::Result<usize> {
        // `rx_src` keeps its BATCH slots: recv_batch fills one per datagram and takes no more
        // datagrams than there are slots (clearing it here made every receive return 0).
        let got = self.sock.recv_batch(rx, &mut self.rx_src)?;
        // Validate and strip the VXLAN header, compacting accepted packets to the front.
        let mut kept = 0;
        for i in 0..got {
            let src = match self.rx_src.get(i) {
                Some(std::net::SocketAddr::V4(a)) => *a.ip(),
                _ => {
                    self.drops.add(DropReason::VxlanUnknownTunnel, 1);
                    continue;
                }
            };
            let vni = match encap::wire::vxlan::Packet::new_checked(rx[i].data()) {
                Ok(h) if h.flags() == 0x08 => h.vni(),
                Ok(_) => {
                    self.drops.add(DropReason::VxlanBadFlags, 1);
                    continue;
                }
                Err(_) => {
                    self.drops.add(DropReason::VxlanShort, 1);
                    continue;
                }
            };
            if self.remote.is_some_and(|r| r != src) || self.vni.is_some_and(|k| k != vni) {
                self.drops.add(DropReason::VxlanUnknownTunnel, 1);
                continue;
            }
            if rx[i].pull_front(8).is_err() || rx[i].len() < 14 {
                self.drops.add(DropReason::VxlanShort, 1);
                continue;
            }
            self.rx_meta[kept] = TunnelMeta {
                vni,
                src: u32::from(src),
                dst: u32::from(self.local),
            };
            if kept != i {
                rx.packets_mut().swap(kept, i);
            }
            kept += 1;
        }
        // Drop the rejected tail; report the raw count so the caller's drain rule still holds.
        let mut idx = 0;
        rx.retain(|_| {
            idx += 1;
            idx <= kept
        });
        Ok(got)
    }
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
