//! `MemPort`: an in-memory port for tests that need no root and no kernel.
//!
//! Two ports made by [`MemPort::pair`] are wired back to back: what one sends, the other
//! receives. A lone port can be fed with [`MemPort::inject`] and read with
//! [`MemPort::take_sent`]. Queues are bounded; a full queue drops with `QueueFull`, a port set
//! down drops with `LinkDown`, and frames larger than the MTU allows drop with `TooBig`, so
//! pipeline tests see the same drop reasons as with real ports.
//!
//! Offloads ([`MemPort::with_offloads`], default none) make it behave like a port with
//! virtio-net headers: the meta travels with each frame ([`MemPort::inject_with_meta`],
//! [`MemPort::take_sent_with_meta`]) and GSO super-frames may exceed the MTU. Without offloads
//! the meta is dropped on send, as a real port without vnet headers would.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buf::{Batch, RxMeta};
use crate::port::{Offloads, Port, PortStats, TxDropReason, TxReport};

#[derive(Debug)]
struct Queue {
    frames: VecDeque<(Vec<u8>, RxMeta)>,
    limit: usize,
}

type SharedQueue = Arc<Mutex<Queue>>;

fn lock(q: &SharedQueue) -> MutexGuard<'_, Queue> {
    // A panic in another test thread must not poison this one's view of the frames.
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// An in-memory port.
#[derive(Debug)]
pub struct MemPort {
    name: String,
    rx: SharedQueue,
    tx: SharedQueue,
    mtu: usize,
    up: bool,
    offloads: Offloads,
    stats: PortStats,
}

impl MemPort {
    /// A lone port whose queues hold up to `limit` frames each.
    pub fn new(name: &str, limit: usize) -> Self {
        let q = || {
            Arc::new(Mutex::new(Queue {
                frames: VecDeque::new(),
                limit,
            }))
        };
        Self {
            name: name.to_owned(),
            rx: q(),
            tx: q(),
            mtu: 1500,
            up: true,
            offloads: Offloads::default(),
            stats: PortStats::default(),
        }
    }

    /// Two ports wired back to back.
    pub fn pair(a: &str, b: &str, limit: usize) -> (Self, Self) {
        let pa = Self::new(a, limit);
        let pb = Self {
            name: b.to_owned(),
            rx: pa.tx.clone(),
            tx: pa.rx.clone(),
            mtu: pa.mtu,
            up: true,
            offloads: Offloads::default(),
            stats: PortStats::default(),
        };
        (pa, pb)
    }

    /// Sets the MTU (default 1500).
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Sets what the port reports in [`Port::offloads`] and honours on send.
    pub fn with_offloads(mut self, offloads: Offloads) -> Self {
        self.offloads = offloads;
        self
    }

    /// Sets the link state; a down port receives nothing and drops what it is asked to send.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// Queues a frame for this port to receive; false when the queue is full.
    pub fn inject(&self, frame: &[u8]) -> bool {
        self.inject_with_meta(frame, &RxMeta::default())
    }

    /// Queues a frame with receive metadata (offload state: `gso`, `csum_*`); `in_port` and
    /// `wire_len` are set on receive. False when the queue is full.
    pub fn inject_with_meta(&self, frame: &[u8], meta: &RxMeta) -> bool {
        let mut q = lock(&self.rx);
        if q.frames.len() >= q.limit {
            return false;
        }
        q.frames.push_back((frame.to_vec(), *meta));
        true
    }

    /// Takes every frame this port has sent (on a lone port; on a pair the peer receives them).
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        lock(&self.tx).frames.drain(..).map(|(f, _)| f).collect()
    }

    /// Takes every frame this port has sent with the meta it was sent with (all default
    /// unless the port has offloads).
    pub fn take_sent_with_meta(&self) -> Vec<(Vec<u8>, RxMeta)> {
        lock(&self.tx).frames.drain(..).collect()
    }

    /// A handle that sends into this port's transmit queue and never receives.
    pub fn clone_tx(&self) -> MemPort {
        MemPort {
            name: self.name.clone(),
            rx: Arc::new(Mutex::new(Queue {
                frames: VecDeque::new(),
                limit: 0,
            })),
            tx: self.tx.clone(),
            mtu: self.mtu,
            up: self.up,
            offloads: self.offloads,
            stats: PortStats::default(),
        }
    }

    /// Frames waiting to be received.
    pub fn pending_rx(&self) -> usize {
        lock(&self.rx).frames.len()
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        if !self.up {
            return Ok(0);
        }
        let mut q = lock(&self.rx);
        let mut n = 0;
        while let Some(buf) = batch.spare() {
            let Some((frame, meta)) = q.frames.pop_front() else {
                break;
            };
            let room = buf.frame_room();
            let keep = frame.len().min(room);
            // keep <= frame_room, so this cannot fail.
            let _ = buf.set_frame(&frame[..keep]);
            buf.meta = RxMeta {
                in_port: 0,
                wire_len: frame.len() as u32,
                ..meta
            };
            if keep < frame.len() {
                self.stats.rx_truncated += 1;
                continue;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += keep as u64;
            batch.commit();
            n += 1;
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        let mut r = TxReport::default();
        {
            let mut q = lock(&self.tx);
            for p in batch.iter() {
                if !self.up {
                    r.dropped.add(TxDropReason::LinkDown, 1);
                } else if p.len() > self.mtu + 18 && !(self.offloads.gso && p.meta.gso.is_some()) {
                    r.dropped.add(TxDropReason::TooBig, 1);
                } else if q.frames.len() >= q.limit {
                    r.dropped.add(TxDropReason::QueueFull, 1);
                } else {
                    // What a real port would carry: the offload meta only with vnet headers.
                    let meta = if self.offloads.gso || self.offloads.csum {
                        RxMeta {
                            gso: p.meta.gso.filter(|_| self.offloads.gso),
                            csum_not_ready: p.meta.csum_not_ready && self.offloads.csum,
                            csum_start: p.meta.csum_start.filter(|_| self.offloads.csum),
                            csum_offset: p.meta.csum_offset.filter(|_| self.offloads.csum),
                            ..RxMeta::default()
                        }
                    } else {
                        RxMeta::default()
                    };
                    self.stats.tx_gso += u64::from(meta.gso.is_some());
                    q.frames.push_back((p.data().to_vec(), meta));
                    r.sent += 1;
                    r.bytes += p.len() as u64;
                }
            }
        }
        batch.clear();
        self.stats.account_tx(&r);
        r
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
        self.offloads
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Some(Ok(Box::new(self.clone_tx()) as Box<dyn Port + Send>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_delivers_in_order_and_reports_drain() {
        let (mut a, mut b) = MemPort::pair("a", "b", 100);
        let mut out = Batch::new(32, 128, 2048);
        for i in 0..40u8 {
            assert!(out.push_copy(&[i; 64]) || i >= 32);
        }
        let r = a.tx_batch(&mut out);
        assert_eq!(r.sent, 32);
        assert!(out.is_empty());
        let mut inb = Batch::new(20, 128, 2048);
        assert_eq!(b.rx_batch(&mut inb).unwrap(), 20, "full batch: maybe more");
        assert_eq!(inb[19].data(), &[19; 64]);
        inb.clear();
        assert_eq!(
            b.rx_batch(&mut inb).unwrap(),
            12,
            "fewer than room: drained"
        );
        assert_eq!(inb[0].data(), &[20; 64]);
        inb.clear();
        assert_eq!(b.rx_batch(&mut inb).unwrap(), 0);
        assert_eq!(a.stats().tx_packets, 32);
        assert_eq!(b.stats().rx_packets, 32);
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let (mut a, _b) = MemPort::pair("a", "b", 2);
        let mut out = Batch::new(8, 128, 2048);
        out.push_copy(&[0; 60]);
        out.push_copy(&[0; 2000]);
        out.push_copy(&[0; 60]);
        out.push_copy(&[0; 60]);
        let r = a.tx_batch(&mut out);
        assert_eq!(r.sent, 2);
        assert_eq!(r.dropped.get(TxDropReason::TooBig), 1);
        assert_eq!(r.dropped.get(TxDropReason::QueueFull), 1);
        a.set_up(false);
        out.push_copy(&[0; 60]);
        let r = a.tx_batch(&mut out);
        assert_eq!(r.dropped.get(TxDropReason::LinkDown), 1);
        assert_eq!(a.stats().tx_dropped.total(), 3);
    }

    #[test]
    fn offloads_carry_gso_meta_and_allow_super_frames() {
        use crate::buf::{GSO_FRAME_ROOM, Gso, GsoKind};
        let meta = RxMeta {
            csum_not_ready: true,
            csum_start: Some(34),
            csum_offset: Some(16),
            gso: Some(Gso {
                kind: GsoKind::Tcp4,
                size: 1448,
                hdr_len: 66,
                ecn: false,
            }),
            ..RxMeta::default()
        };
        let both = Offloads {
            gso: true,
            csum: true,
        };
        let (a, b) = MemPort::pair("a", "b", 8);
        let (mut a, mut b) = (a.with_offloads(both), b.with_offloads(both));
        assert_eq!(a.offloads(), both);
        let mut out = Batch::new(4, 128, GSO_FRAME_ROOM);
        out.push_copy_with_meta(&vec![1; 30000], &meta);
        assert_eq!(a.tx_batch(&mut out).sent, 1);
        let mut inb = Batch::new(4, 128, GSO_FRAME_ROOM);
        assert_eq!(b.rx_batch(&mut inb).unwrap(), 1);
        assert_eq!(inb[0].len(), 30000);
        assert_eq!(
            (inb[0].meta.gso, inb[0].meta.csum_start),
            (meta.gso, Some(34))
        );
        // Without offloads the super-frame is too big and plain frames lose the meta.
        let mut plain = MemPort::new("p", 8);
        out.push_copy_with_meta(&vec![1; 30000], &meta);
        out.push_copy_with_meta(&[1; 100], &meta);
        let r = plain.tx_batch(&mut out);
        assert_eq!((r.sent, r.dropped.get(TxDropReason::TooBig)), (1, 1));
        assert_eq!(plain.take_sent_with_meta()[0].1, RxMeta::default());
    }

    #[test]
    fn oversize_injected_frame_is_counted_as_truncated() {
        let mut p = MemPort::new("p", 8);
        p.inject(&[1; 3000]);
        p.inject(&[2; 100]);
        let mut b = Batch::new(4, 128, 2048);
        assert_eq!(p.rx_batch(&mut b).unwrap(), 1);
        assert_eq!(b[0].data(), &[2; 100]);
        assert_eq!(p.stats().rx_truncated, 1);
    }
}
