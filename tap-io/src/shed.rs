//! An AF_PACKET port that sheds a flood before the kernel's receive path.
//!
//! A packet socket sees a frame only after the kernel has received it: the softirq that builds
//! the skb, steers it (RPS) and runs the packet tap costs ~0.7 µs per frame on the core that
//! receives it, before a full ring refuses the frame. Under a flood that core is the
//! forwarder's, and those softirqs preempt the forwarding thread, so the more is offered the
//! less is forwarded (a receive livelock: 16–21 % of capacity at the Service harness's flood).
//! An XDP program on the interface drops at a full AF_XDP ring before any skb exists, and the
//! receive work runs in the sender's NAPI; but on a veth any attached program turns the peer's
//! TSO off, which costs pods their TCP super-frames. So the port is AF_PACKET while it keeps
//! up, and attaches an AF_XDP socket only while the kernel drops frames for a full ring:
//! the flood is shed at the driver, and the pods get their TSO back once it has passed.
//!
//! Frames always leave through the AF_PACKET socket (virtio-net headers, GSO). While the XDP
//! socket exists the port has two descriptors to wait on ([`Port::rx_fds`]); the poll loop
//! registers both (one epoll hop: a nested epoll instance would add one to every idle round
//! trip).

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::afpacket::AfPacketPort;
use crate::afxdp::{AfXdpConfig, AfXdpPort};
use crate::buf::Batch;
use crate::port::{Offloads, Port, PortStats};

/// When the port switches to XDP and back. Rates are frames per second, measured between two
/// calls of [`Port::refresh_stats`] (the poll loop calls it every 100 ms).
#[derive(Clone, Debug)]
pub struct ShedConfig {
    /// Ring drops per second that attach the XDP socket, when they are also at least
    /// `attach_share` of the frames offered: a ring that overflows now and then at a high rate
    /// (1 % of 1.4M frames/s) is no livelock, and the XDP socket's copies cost more per frame.
    pub attach_drops: u64,
    pub attach_share: f64,
    /// Detach once the XDP socket's own drops stayed below this rate for `calm_for`: the
    /// flood is over, or the port keeps up with it without the XDP socket's help. (Not the
    /// frame rate: a pod's TCP stream without TSO is as many frames as a flood, but it does
    /// not overrun the ring.)
    pub calm_drops: u64,
    pub calm_for: Duration,
    /// Stay attached at least this long (a flood in bursts does not toggle the peer's TSO).
    /// Doubled, up to `max_hold`, each time the ring overruns again within `hold` of a
    /// detach: a flood the XDP socket keeps up with but the ring does not would otherwise
    /// toggle the port every few seconds.
    pub hold: Duration,
    pub max_hold: Duration,
    /// After a failed attach, try again only after this long.
    pub retry_after: Duration,
}

impl Default for ShedConfig {
    fn default() -> Self {
        ShedConfig {
            attach_drops: 20_000,
            attach_share: 0.1,
            calm_drops: 5_000,
            calm_for: Duration::from_secs(1),
            hold: Duration::from_secs(2),
            max_hold: Duration::from_secs(120),
            retry_after: Duration::from_secs(60),
        }
    }
}

/// How long after a detach a failed attach is retried at every check instead of after
/// `retry_after`.
const REBIND_WINDOW: Duration = Duration::from_secs(2);

/// An AF_PACKET port that attaches an AF_XDP socket while a flood overruns its ring.
pub struct SheddingPort {
    packet: AfPacketPort,
    xdp: Option<AfXdpPort>,
    /// An XDP socket whose program already left the interface: read until the next check, so
    /// the frames in its ring are forwarded, then closed.
    draining: Option<AfXdpPort>,
    xdp_cfg: AfXdpConfig,
    cfg: ShedConfig,
    /// Changes whenever the descriptors to wait on do ([`Port::rx_fds`]).
    fds_version: u64,
    /// Receive counters of XDP sockets already detached.
    detached: PortStats,
    /// Combined counters at the last check, and when it was (`None` before the first check:
    /// drops from before the port was polled do not count).
    last: Option<(u64, u64, Instant)>,
    /// When the XDP socket was attached.
    attached: Option<Instant>,
    /// When it was last detached, and the hold the next attach gets.
    detached_at: Option<Instant>,
    hold: Duration,
    calm_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// What changed since the operator's log last asked ([`Port::take_notice`]).
    notice: Option<String>,
}

impl SheddingPort {
    pub fn new(packet: AfPacketPort, cfg: ShedConfig) -> Self {
        // Frames leave through the AF_PACKET socket: the XDP socket's tx ring stays unused
        // (the smallest the kernel takes), and no send sockets of its own.
        let xdp_cfg = AfXdpConfig {
            tx_frames: 64,
            tx: crate::afxdp::XdpTx::Xsk,
            ..AfXdpConfig::new(packet.name())
        };
        let hold = cfg.hold;
        SheddingPort {
            packet,
            xdp: None,
            draining: None,
            xdp_cfg,
            cfg,
            fds_version: 0,
            detached: PortStats::default(),
            last: None,
            attached: None,
            detached_at: None,
            hold,
            calm_since: None,
            retry_at: None,
            notice: None,
        }
    }

    fn attach(&mut self, offered: f64, now: Instant) {
        match AfXdpPort::open(&self.xdp_cfg) {
            Ok(x) => {
                // Overrun again soon after a detach: the flood never stopped, hold longer.
                self.hold = match self.detached_at {
                    Some(t) if now.duration_since(t) < self.hold => {
                        (self.hold * 2).min(self.cfg.max_hold)
                    }
                    _ => self.cfg.hold,
                };
                self.xdp = Some(x);
                self.fds_version += 1;
                self.attached = Some(now);
                self.calm_since = None;
                self.notice = Some(format!(
                    "receive ring overrun ({offered:.0} frames/s offered): shedding the excess \
                     through an AF_XDP socket until the rate falls (the peer's TSO is off \
                     meanwhile)"
                ));
            }
            // Just after a detach the queue may still be bound to the closing socket (the
            // kernel tears it down later): try again at the next checks, quietly.
            Err(_)
                if self
                    .detached_at
                    .is_some_and(|t| now.duration_since(t) < REBIND_WINDOW) => {}
            Err(e) => {
                self.notice = Some(format!(
                    "receive ring overrun ({offered:.0} frames/s offered), but no AF_XDP socket \
                     to shed it ({e}); trying again in {} s",
                    self.cfg.retry_after.as_secs()
                ));
                self.retry_at = Some(now + self.cfg.retry_after);
            }
        }
    }

    /// Takes the program off the interface; the socket drains until the next check.
    fn detach(&mut self) {
        let Some(mut x) = self.xdp.take() else { return };
        x.detach_program();
        self.close_drained();
        self.draining = Some(x);
        self.attached = None;
        self.detached_at = Some(Instant::now());
        self.calm_since = None;
        self.notice = Some("the flood has passed: AF_XDP socket detached, AF_PACKET only".into());
    }

    /// Closes the socket a detach left draining, keeping its counters.
    fn close_drained(&mut self) {
        let Some(mut x) = self.draining.take() else {
            return;
        };
        x.refresh_stats();
        add_rx(&mut self.detached, &x.stats());
        self.fds_version += 1;
    }

    /// Decides, from the counters since the last call, whether to attach or detach.
    fn steer(&mut self, now: Instant) {
        self.close_drained();
        let s = self.stats();
        let last = self.last.replace((s.rx_packets, s.rx_kernel_drops, now));
        let Some((rx0, drops0, t0)) = last else {
            return;
        };
        let secs = now.duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let drops = s.rx_kernel_drops.saturating_sub(drops0) as f64 / secs;
        let offered = s.rx_packets.saturating_sub(rx0) as f64 / secs + drops;
        match self.attached {
            None => {
                let may_try = self.retry_at.is_none_or(|t| now >= t);
                let overrun = drops >= self.cfg.attach_drops as f64
                    && drops >= offered * self.cfg.attach_share;
                if overrun && may_try {
                    self.attach(offered, now);
                }
            }
            Some(since) => {
                if drops >= self.cfg.calm_drops as f64 {
                    self.calm_since = None;
                    return;
                }
                let calm_since = *self.calm_since.get_or_insert(now);
                if now.duration_since(calm_since) >= self.cfg.calm_for
                    && now.duration_since(since) >= self.hold
                {
                    self.detach();
                }
            }
        }
    }
}

/// Adds `b`'s receive counters to `a`.
fn add_rx(a: &mut PortStats, b: &PortStats) {
    a.rx_packets += b.rx_packets;
    a.rx_bytes += b.rx_bytes;
    a.rx_truncated += b.rx_truncated;
    a.rx_kernel_drops += b.rx_kernel_drops;
    a.rx_errors += b.rx_errors;
    a.rx_csum_not_ready += b.rx_csum_not_ready;
}

impl Port for SheddingPort {
    fn name(&self) -> &str {
        self.packet.name()
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        // Oldest first: what a detached socket still holds, then the ring (frames it took
        // before the XDP socket came, or since it went), then the XDP socket.
        let mut n = 0;
        if let Some(x) = self.draining.as_mut() {
            n += x.rx_batch(batch)?;
        }
        if batch.room() > 0 {
            n += self.packet.rx_batch(batch)?;
        }
        if let Some(x) = self.xdp.as_mut().filter(|_| batch.room() > 0) {
            n += x.rx_batch(batch)?;
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> crate::port::TxReport {
        self.packet.tx_batch(batch)
    }

    fn fd(&self) -> Option<RawFd> {
        self.packet.fd()
    }

    fn rx_fds(&self) -> (u64, [Option<RawFd>; 2]) {
        let xdp = self.xdp.as_ref().or(self.draining.as_ref());
        (
            self.fds_version,
            [self.packet.fd(), xdp.and_then(|x| x.fd())],
        )
    }

    fn stats(&self) -> PortStats {
        let mut s = self.packet.stats();
        add_rx(&mut s, &self.detached);
        for x in [self.xdp.as_ref(), self.draining.as_ref()]
            .into_iter()
            .flatten()
        {
            add_rx(&mut s, &x.stats());
        }
        s
    }

    fn refresh_stats(&mut self) {
        self.packet.refresh_stats();
        if let Some(x) = self.xdp.as_mut() {
            x.refresh_stats();
        }
        self.steer(Instant::now());
    }

    fn mtu(&self) -> usize {
        self.packet.mtu()
    }

    fn offloads(&self) -> Offloads {
        self.packet.offloads()
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Port::try_clone_tx(&self.packet)
    }

    fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }
}

impl Drop for SheddingPort {
    fn drop(&mut self) {
        // The program leaves the interface with the XDP socket, before the packet socket goes.
        self.detach();
        self.close_drained();
    }
}
