//! The datapath: one poll-loop thread that owns every port and moves packets in batches.
//!
//! ```text
//! port rx (batch ≤ 64) ─► FlowKey (encap::extract) ─► EMC ─► megaflow cache ─► slow path (xlate)
//!      ─► execute the cached datapath actions ─► per-port tx batches, flushed once per burst
//! ```
//!
//! The control side never touches this thread's state directly: it sends jobs (closures) through
//! a channel and wakes the poll with a `mio::Waker`; flow tables reach it as immutable pipeline
//! snapshots swapped in with `ArcSwap`, loaded once per batch.

pub mod actions;
pub mod cache;
pub mod capture;
pub mod counters;
pub mod csum;
pub mod ct;
pub mod drops;
pub mod exec;
pub mod icmp;
pub mod mac_learning;
pub mod ports;
pub mod xlate;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Poll, Token, Waker};
use tap_io::Batch;
use tracing::warn;

use crate::conntrack::Conntrack;
use crate::pipeline::Pipeline;
use cache::{Emc, MegaflowCache};
use counters::PortCounters;
use drops::DropCounters;
use mac_learning::MacTable;
pub use ports::{DpPort, PortIo};

#[derive(Default)]
pub struct Options {
    pub busy_poll_us: u64,
    /// Connection tracking: table size, timeouts, TCP checks.
    pub conntrack: crate::conntrack::Config,
}

type Job = Box<dyn FnOnce(&mut Datapath) + Send>;

/// The control side's handle on the datapath thread.
#[derive(Clone)]
pub struct DatapathHandle {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
    /// The datapath clock's zero: flow `used_ns` stamps are relative to it.
    pub start: Instant,
}

impl DatapathHandle {
    /// Runs `f` on the datapath thread between two batches and returns its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Datapath) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |dp| {
            let _ = tx.send(f(dp));
        });
        self.jobs
            .send(job)
            .expect("the datapath thread outlives its handles");
        let _ = self.waker.wake();
        rx.recv().expect("the datapath thread answers every job")
    }

    /// Asks the thread to stop after its current batch.
    pub fn stop(&self) {
        let _ = self.jobs.send(Box::new(|dp: &mut Datapath| dp.stop = true));
        let _ = self.waker.wake();
    }
}

const WAKER: Token = Token(usize::MAX);
/// Largest rx batch asked of a port.
pub const BATCH: usize = 32;
/// Batches taken from one port before others get a turn.
const BATCHES_PER_TURN: usize = 4;
/// Resubmit/goto/recirculation depth after which a packet is dropped as looping.
pub const MAX_DEPTH: usize = 64;

/// Per-bridge datapath state.
pub struct DpBridge {
    pub name: String,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub drops: Arc<DropCounters>,
    pub(crate) cache_version: u64,
    pub(crate) emc: Emc<xlate::CachedFlow>,
    pub(crate) megaflows: MegaflowCache<xlate::CachedFlow>,
    pub(crate) mac: MacTable,
    /// Counters of cache behaviour, for `dump-drops` and benchmarks.
    pub stats: Arc<CacheStats>,
}

#[derive(Debug, Default)]
pub struct CacheStats {
    pub emc_hits: std::sync::atomic::AtomicU64,
    pub megaflow_hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

/// A packet the pipeline sends to the controller (`controller` action), for the OpenFlow
/// connections that asked for packet-ins.
#[derive(Debug, Clone)]
pub struct PacketInEvent {
    pub bridge: usize,
    pub in_port: u32,
    pub table: u8,
    pub cookie: u64,
    pub reason: u8,
    /// The whole frame's length; `frame` holds at most `max_len` bytes of it.
    pub total_len: u32,
    pub frame: Vec<u8>,
}

pub struct Datapath {
    poll: Poll,
    /// Where `controller` actions go; `None` until the control side listens.
    pub(crate) packet_in: Option<crossbeam_channel::Sender<PacketInEvent>>,
    pub(crate) ports: Vec<Option<DpPort>>,
    pub(crate) bridges: Vec<Option<DpBridge>>,
    pub(crate) ct: Conntrack,
    rx: Batch,
    /// Ports that still had packets when their turn ended (edge-triggered readiness).
    still_ready: Vec<usize>,
    stop: bool,
    busy_poll: Duration,
    start: Instant,
    last_housekeeping: Instant,
    pub(crate) scratch: exec::Scratch,
}

pub fn spawn(opts: Options) -> io::Result<(DatapathHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let start = Instant::now();
    let mut dp = Datapath {
        poll,
        ports: Vec::new(),
        bridges: Vec::new(),
        ct: Conntrack::new(opts.conntrack).map_err(|e| io::Error::other(e.to_string()))?,
        rx: Batch::new(BATCH, tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM),
        still_ready: Vec::new(),
        packet_in: None,
        stop: false,
        busy_poll: Duration::from_micros(opts.busy_poll_us),
        start,
        last_housekeeping: Instant::now(),
        scratch: exec::Scratch::new(),
    };
    let thread = std::thread::Builder::new()
        .name("datapath".into())
        .spawn(move || dp.run(rx))?;
    Ok((
        DatapathHandle {
            jobs: tx,
            waker,
            start,
        },
        thread,
    ))
}

impl Datapath {
    fn run(&mut self, jobs: Receiver<Job>) {
        let mut events = Events::with_capacity(256);
        let mut ready: Vec<usize> = Vec::with_capacity(64);
        let mut idle_since = Instant::now();
        while !self.stop {
            let timeout = if !self.still_ready.is_empty() || idle_since.elapsed() < self.busy_poll {
                Some(Duration::ZERO)
            } else {
                Some(Duration::from_millis(100))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!("poll failed: {e}");
            }
            ready.clear();
            ready.append(&mut self.still_ready);
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                if !ready.contains(&ev.token().0) {
                    ready.push(ev.token().0);
                }
            }
            if !ready.is_empty() {
                idle_since = Instant::now();
            }
            for &port in &ready {
                self.service_port(port);
            }
            while let Ok(job) = jobs.try_recv() {
                job(self);
            }
            if self.last_housekeeping.elapsed() >= Duration::from_millis(100) {
                self.housekeeping();
            }
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Drains up to a few batches from one port, then flushes every port that has output.
    fn service_port(&mut self, port_id: usize) {
        for turn in 0..BATCHES_PER_TURN {
            self.rx.clear();
            let (bridge, got) = {
                let Some(port) = self.ports.get_mut(port_id).and_then(|p| p.as_mut()) else {
                    return;
                };
                match port.receive(&mut self.rx) {
                    Ok(n) => (port.bridge, n),
                    Err(e) => {
                        PortCounters::add(&port.counters.rx_errors, 1);
                        if e.kind() != io::ErrorKind::WouldBlock {
                            warn!(port = %port.name, "receive failed: {e}");
                        }
                        return;
                    }
                }
            };
            if got > 0 {
                exec::process_batch(self, bridge, port_id);
            }
            if got < BATCH {
                break; // drained: the next edge will tell us when there is more
            }
            if turn + 1 == BATCHES_PER_TURN {
                self.still_ready.push(port_id);
            }
        }
        self.flush_all();
    }

    pub(crate) fn flush_all(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            port.flush();
        }
    }

    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        let now = self.now_ns();
        self.ct.expire(now, 4096);
        for b in self.bridges.iter_mut().flatten() {
            b.mac.expire(now);
        }
    }

    pub fn add_bridge(
        &mut self,
        name: &str,
        pipeline: Arc<ArcSwap<Pipeline>>,
        drops: Arc<DropCounters>,
    ) -> (usize, Arc<CacheStats>) {
        let stats = Arc::new(CacheStats::default());
        let bridge = DpBridge {
            name: name.to_string(),
            pipeline,
            drops,
            cache_version: u64::MAX,
            emc: Emc::default(),
            megaflows: MegaflowCache::new(65536),
            mac: MacTable::new(
                mac_learning::DEFAULT_MAX_ENTRIES,
                mac_learning::DEFAULT_AGING_SECS,
            ),
            stats: stats.clone(),
        };
        let idx = match self.bridges.iter().position(|b| b.is_none()) {
            Some(i) => {
                self.bridges[i] = Some(bridge);
                i
            }
            None => {
                self.bridges.push(Some(bridge));
                self.bridges.len() - 1
            }
        };
        (idx, stats)
    }

    pub fn del_bridge(&mut self, idx: usize) {
        let ports: Vec<usize> = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().filter(|p| p.bridge == idx).map(|_| i))
            .collect();
        for p in ports {
            self.del_port(p);
        }
        if let Some(b) = self.bridges.get_mut(idx) {
            *b = None;
        }
    }

    /// Takes ownership of an opened port and starts polling it. Returns its datapath id.
    pub fn add_port(&mut self, mut port: DpPort) -> io::Result<usize> {
        let idx = self
            .ports
            .iter()
            .position(|p| p.is_none())
            .unwrap_or(self.ports.len());
        port.register(self.poll.registry(), Token(idx))?;
        if idx == self.ports.len() {
            self.ports.push(Some(port));
        } else {
            self.ports[idx] = Some(port);
        }
        // A new port may already hold packets that arrived before registration.
        self.still_ready.push(idx);
        Ok(idx)
    }

    pub fn del_port(&mut self, idx: usize) {
        if let Some(Some(mut port)) = self.ports.get_mut(idx).map(|p| p.take()) {
            port.deregister(self.poll.registry());
            if let Some(Some(b)) = self.bridges.get_mut(port.bridge) {
                b.mac.flush_port(port.ofport);
                b.cache_version = u64::MAX;
            }
        }
        self.still_ready.retain(|p| *p != idx);
    }

    /// Runs a packet given by the control side (PACKET_OUT, `trace --inject`) through a bridge.
    pub fn inject(&mut self, bridge: usize, in_port: u32, frame: &[u8]) {
        exec::inject(self, bridge, in_port, frame);
        self.flush_all();
    }

    /// Starts capturing up to `count` frames on a port (replacing a running capture).
    pub fn start_capture(&mut self, dp_id: usize, count: usize) -> bool {
        match self.ports.get_mut(dp_id).and_then(|p| p.as_mut()) {
            Some(p) => {
                p.capture = Some(Box::new(capture::CaptureTap::new(count)));
                true
            }
            None => false,
        }
    }

    /// Whether the port's capture has taken all the frames it wanted.
    pub fn capture_full(&self, dp_id: usize) -> bool {
        self.ports
            .get(dp_id)
            .and_then(|p| p.as_ref())
            .and_then(|p| p.capture.as_ref())
            .is_none_or(|c| c.is_full())
    }

    /// Stops a capture and returns what it took.
    pub fn stop_capture(&mut self, dp_id: usize) -> Vec<capture::Captured> {
        self.ports
            .get_mut(dp_id)
            .and_then(|p| p.as_mut())
            .and_then(|p| p.capture.take())
            .map(|c| c.frames)
            .unwrap_or_default()
    }

    /// Sends `controller` actions' packets to `sink` from now on.
    pub fn set_packet_in_sink(&mut self, sink: crossbeam_channel::Sender<PacketInEvent>) {
        self.packet_in = Some(sink);
    }

    pub fn conntrack(&mut self) -> &mut Conntrack {
        &mut self.ct
    }

    pub fn mac_table_dump(&self, bridge: usize) -> Vec<(u16, [u8; 6], u32, u64)> {
        let now = self.now_ns();
        self.bridges
            .get(bridge)
            .and_then(|b| b.as_ref())
            .map(|b| b.mac.dump(now))
            .unwrap_or_default()
    }
}
