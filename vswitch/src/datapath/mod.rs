//! The datapath: poll-loop forwarding threads (one by default, `--threads N`) that move packets
//! in batches; each thread receives on the ports assigned to it and holds a transmit copy of
//! every port.
//!
//! ```text
//! port rx (batch ≤ 32) ─► FlowKey (encap::extract) ─► EMC ─► megaflow cache ─► slow path (xlate)
//!      ─► execute the cached datapath actions ─► per-port tx batches, flushed once per burst
//! ```
//!
//! The control side never touches a thread's state directly: it sends jobs (closures) through
//! a channel and wakes the poll with a `mio::Waker`; flow tables reach it as immutable pipeline
//! snapshots swapped in with `ArcSwap`, loaded once per batch.

pub mod action_set;
pub mod actions;
pub mod cache;
pub mod capture;
pub mod counters;
pub mod ct;
pub mod ct_orig;
pub mod drops;
pub mod exec;
pub mod geneve;
pub mod housekeeping_time;
pub mod icmp;
pub mod mac_learning;
pub mod megaflow_dump;
pub mod meter;
pub mod nx_hash;
pub mod ports;
pub mod sample;
pub mod vxlan;
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

use crate::pipeline::Pipeline;
use cache::{Emc, MegaflowCache};
use conntrack::Sharded;
use drops::DropCounters;
use housekeeping_time::Housekeeping;
use mac_learning::MacTable;
pub use ports::{DpPort, PortIo};

#[derive(Default)]
pub struct Options {
    pub busy_poll_us: u64,
    /// `--rx-wait block`: always block in `poll` when nothing is ready (the default,
    /// adaptive, naps under load; see [`LoadMeter`]).
    pub rx_wait_block: bool,
    /// Forwarding threads (0 or 1: one). Each port is polled by one of them (by several with
    /// `options:n_rxq`, one receive queue each); any thread sends out of any port.
    pub threads: usize,
    /// Connection tracking: table size, timeouts, TCP checks.
    pub conntrack: conntrack::Config,
    /// Shards of the connection table (0: one for one forwarding thread, else
    /// [`DEFAULT_CT_SHARDS`]).
    pub ct_shards: usize,
}

/// Shards of the connection table with several forwarding threads: a thread's lookup meets
/// another thread's in the same shard with a probability of about threads/shards. One thread
/// alone gets one shard: shards would only cost it (a NAT reply misses in its own shard and
/// is run again in the owner's, found through the shared reply index).
pub const DEFAULT_CT_SHARDS: usize = 16;

type Job = Box<dyn FnOnce(&mut Datapath) + Send>;

/// One forwarding thread as the control side sees it.
struct ThreadHandle {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
}

/// Which thread polls which datapath port (control-side bookkeeping).
#[derive(Default)]
struct Placement {
    /// Per datapath port id, the threads that receive from it (empty: none, a free id).
    pollers: Vec<Vec<usize>>,
}

/// The control side's handle on the forwarding threads.
#[derive(Clone)]
pub struct DatapathHandle {
    threads: Arc<[ThreadHandle]>,
    /// Serialises changes that every thread must apply in the same order (bridges, ports),
    /// so that indices agree across threads.
    placement: Arc<std::sync::Mutex<Placement>>,
    /// The datapath clock's zero: flow `used_ns` stamps are relative to it.
    pub start: Instant,
    /// The connection table the threads share (read by metrics scrapes, which lock it once).
    pub ct: Arc<Sharded>,
    /// Busy and idle time of each forwarding thread, by thread index.
    pub thread_stats: Arc<[Arc<ThreadStats>]>,
}

impl DatapathHandle {
    /// Runs `f` on the first forwarding thread between two batches and returns its result.
    /// State shared by all threads (conntrack, MAC tables) is reachable from any of them.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Datapath) -> R + Send + 'static,
    ) -> R {
        self.call_on(0, f)
    }

    /// Runs `f` on forwarding thread `t`.
    pub fn call_on<R: Send + 'static>(
        &self,
        t: usize,
        f: impl FnOnce(&mut Datapath) -> R + Send + 'static,
    ) -> R {
        let th = &self.threads[t.min(self.threads.len() - 1)];
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |dp| {
            let _ = tx.send(f(dp));
        });
        th.jobs
            .send(job)
            .expect("the datapath thread outlives its handles");
        let _ = th.waker.wake();
        rx.recv().expect("the datapath thread answers every job")
    }

    /// Runs `f` on every thread in turn (thread 0 first) and returns their results.
    fn each<R: Send + 'static>(
        &self,
        f: impl Fn(usize, &mut Datapath) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let f = Arc::new(f);
        (0..self.threads.len())
            .map(|t| {
                let f = f.clone();
                self.call_on(t, move |dp| f(t, dp))
            })
            .collect()
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        self.placement.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many forwarding threads run.
    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// The threads that receive from datapath port `dp_id`, in thread order.
    pub fn port_threads(&self, dp_id: usize) -> Vec<usize> {
        self.placement()
            .pollers
            .get(dp_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a bridge on every thread (one MAC table shared by all). Returns its index and
    /// each thread's cache counters.
    pub fn add_bridge(
        &self,
        name: &str,
        pipeline: Arc<ArcSwap<Pipeline>>,
        drops: Arc<DropCounters>,
        samples: Arc<sample::SampleCounters>,
    ) -> (usize, Vec<Arc<CacheStats>>) {
        let _order = self.placement();
        let mac = Arc::new(std::sync::RwLock::new(MacTable::new(
            mac_learning::DEFAULT_MAX_ENTRIES,
            mac_learning::DEFAULT_AGING_SECS,
        )));
        let name = name.to_string();
        let added = self.each(move |_, dp| {
            dp.add_bridge(
                &name,
                pipeline.clone(),
                drops.clone(),
                samples.clone(),
                mac.clone(),
            )
        });
        let idx = added[0].0;
        debug_assert!(added.iter().all(|(i, _)| *i == idx));
        (idx, added.into_iter().map(|(_, s)| s).collect())
    }

    pub fn del_bridge(&self, idx: usize) {
        let mut placement = self.placement();
        let ports = self.call(move |dp| dp.bridge_ports(idx));
        for p in ports {
            if let Some(o) = placement.pollers.get_mut(p) {
                o.clear();
            }
        }
        self.each(move |_, dp| dp.del_bridge(idx));
    }

    /// Hands an opened port to the threads: `rx_queues` of them receive from it (`thread`, or
    /// the one polling the fewest ports, first; then the next least loaded), each through a
    /// receive queue of its own (`DpPort::try_clone_rx`: a further socket in the port's
    /// fanout group); every other thread gets a transmit-only copy. A port that has one
    /// queue only (a back end without a fanout group, an absent interface) is polled by the
    /// first thread. Returns the port's datapath id and its first polling thread.
    pub fn add_port(
        &self,
        port: DpPort,
        thread: Option<usize>,
        rx_queues: usize,
    ) -> io::Result<(usize, usize)> {
        let mut placement = self.placement();
        let n = self.threads.len();
        if let Some(t) = thread.filter(|t| *t >= n) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("thread {t} does not exist (the datapath runs {n})"),
            ));
        }
        let load = |t: usize| placement.pollers.iter().filter(|p| p.contains(&t)).count();
        let mut by_load: Vec<usize> = (0..n).collect();
        by_load.sort_by_key(|t| (load(*t), *t));
        let mut rx_threads: Vec<usize> = thread.into_iter().collect();
        for t in by_load {
            if rx_threads.len() >= rx_queues.clamp(1, n) {
                break;
            }
            if !rx_threads.contains(&t) {
                rx_threads.push(t);
            }
        }
        let owner = rx_threads[0];
        let mut copies: Vec<Option<(DpPort, bool)>> = Vec::with_capacity(n);
        let mut polled_by = vec![owner];
        for t in 0..n {
            copies.push(if t == owner {
                None
            } else if rx_threads.contains(&t)
                && let Some(rx) = port.try_clone_rx()
            {
                match rx {
                    Ok(rx) => {
                        polled_by.push(t);
                        Some((rx, true))
                    }
                    // One queue fewer rather than no port (a reopen would lose it).
                    Err(e) => {
                        warn!(port = %port.name, thread = t,
                            "options:n_rxq: a further receive queue failed to open, the thread only sends: {e}");
                        Some((port.try_clone_tx()?, false))
                    }
                }
            } else {
                Some((port.try_clone_tx()?, false))
            });
        }
        copies[owner] = Some((port, true));
        let mut ids = Vec::with_capacity(n);
        for (t, copy) in copies.into_iter().enumerate() {
            let (copy, polled) = copy.expect("one copy per thread");
            match self.call_on(t, move |dp| dp.add_port(copy, polled)) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    // Undo on the threads that took it, so they stay in step.
                    for (u, id) in ids.into_iter().enumerate() {
                        self.call_on(u, move |dp| dp.del_port(id));
                    }
                    return Err(e);
                }
            }
        }
        let id = ids[0];
        debug_assert!(ids.iter().all(|i| *i == id));
        if placement.pollers.len() <= id {
            placement.pollers.resize(id + 1, Vec::new());
        }
        polled_by.sort_unstable();
        placement.pollers[id] = polled_by;
        Ok((id, owner))
    }

    pub fn del_port(&self, dp_id: usize) {
        let mut placement = self.placement();
        if let Some(o) = placement.pollers.get_mut(dp_id) {
            o.clear();
        }
        self.each(move |_, dp| dp.del_port(dp_id));
    }

    /// Sends every thread's `controller` packets to `sink`.
    pub fn set_packet_in_sink(&self, sink: crossbeam_channel::Sender<PacketInEvent>) {
        self.each(move |_, dp| dp.set_packet_in_sink(sink.clone()));
    }

    /// Sends every thread's `learn` and `fin_timeout` requests to `sink`.
    pub fn set_learn_sink(&self, sink: crossbeam_channel::Sender<LearnEvent>) {
        self.each(move |_, dp| dp.learn = Some(sink.clone()));
    }

    /// Captures up to `count` frames on a port: what its polling thread receives and what any
    /// thread sends out of it.
    pub fn start_capture(&self, dp_id: usize, count: usize) -> bool {
        self.each(move |_, dp| dp.start_capture(dp_id, count))
            .into_iter()
            .all(|ok| ok)
    }

    /// `mod-port`: the port's `OFPPC_*` bits, on every thread's copy of it.
    pub fn set_port_config(&self, dp_id: usize, config: u32) {
        self.each(move |_, dp| {
            if let Some(Some(p)) = dp.ports.get_mut(dp_id) {
                p.config = config;
            }
        });
    }

    pub fn capture_full(&self, dp_id: usize) -> bool {
        let (taken, want) = self.capture_progress(dp_id);
        taken >= want
    }

    /// Frames a running capture has taken on all threads, and how many it wants (0: none runs).
    pub fn capture_progress(&self, dp_id: usize) -> (usize, usize) {
        let taken: usize = self
            .each(move |_, dp| dp.capture_len(dp_id))
            .into_iter()
            .sum();
        let want = self.call(move |dp| dp.capture_want(dp_id));
        (taken.min(want), want)
    }

    /// Stops a capture and returns its frames in time order, at most the count asked.
    pub fn stop_capture(&self, dp_id: usize) -> Vec<capture::Captured> {
        let want = self.call(move |dp| dp.capture_want(dp_id));
        let mut frames: Vec<capture::Captured> = self
            .each(move |_, dp| dp.stop_capture(dp_id))
            .into_iter()
            .flatten()
            .collect();
        frames.sort_by_key(|f| f.time);
        frames.truncate(want);
        frames
    }

    /// Asks every thread to stop after its current batch.
    pub fn stop(&self) {
        for th in self.threads.iter() {
            let _ = th.jobs.send(Box::new(|dp: &mut Datapath| dp.stop = true));
            let _ = th.waker.wake();
        }
    }
}

const WAKER: Token = Token(usize::MAX);
/// Largest rx batch asked of a port.
pub const BATCH: usize = 32;
/// Batches taken from one port before others get a turn.
const BATCHES_PER_TURN: usize = 4;
/// Receive waiting (`--rx-wait adaptive`): how busy a thread was over the last
/// [`LOAD_WINDOW`] decides how it waits for the next frames.
/// - below [`MODERATE_PER_MS`] frames per ms (super-frames counted by size, [`load_units`]): it blocks in `poll` and the first frame wakes it
///   (idle latency is the kernel's wake-up alone);
/// - from there, whenever its ports are drained: it naps before polling for as long as its
///   last window's rate takes to bring [`NAP_FRAMES`] ([`LoadMeter::nap`], within
///   [`COALESCE_NAP`]..[`COALESCE_NAP_MAX`]), so a turn serves a batch instead of a frame or
///   two, and the sender's softirq finds nobody to wake. At a Service's new-connection rate
///   (~120 frames/ms) a fixed 30 µs nap gathered ~4 frames over four ports: a `sendmmsg` per
///   port per turn, a timer interrupt per nap. It never spins: polling an empty ring again at
///   once made every turn (a `poll`, a `sendmmsg`) carry one or two frames and cost ~10 % more
///   CPU per frame when the switch keeps up with its load. A saturated switch never naps (its
///   ports are never drained; a flood's excess is shed at the port, `tap_io::SheddingPort`).
/// - under a stream of GSO super-frames ([`Load::Bulk`]: TCP between pods with offloads on),
///   it first polls once without waiting and naps only if that finds nothing: what its own
///   sends produced (the receiving pod's ACK, the sending pod's next super-frame) leaves in
///   the next turn instead of after a nap. Per-frame costs do not matter at 64 KiB a frame.
const LOAD_WINDOW: Duration = Duration::from_millis(1);
const MODERATE_PER_MS: u64 = 50;
const COALESCE_NAP: Duration = Duration::from_micros(30);
/// The longest nap: what a frame may wait at a moderate rate, on top of its wake-up.
const COALESCE_NAP_MAX: Duration = Duration::from_micros(100);
/// Frames a nap waits for, at the thread's recent rate: one receive batch.
const NAP_FRAMES: u64 = BATCH as u64;
/// A busy thread whose frames average at least this many full-size frames of work is
/// serving a stream of GSO super-frames ([`Load::Bulk`]).
const BULK_UNITS_PER_FRAME: u64 = 4;
/// The forwarding thread's scheduler slice (`tap_io::sched::set_slice`): woken by a frame, it
/// preempts whatever CPU-bound task shares its CPU instead of waiting up to a tick for it.
const WAKE_SLICE_NS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Idle,
    Busy,
    /// Busy with a stream of GSO super-frames (TCP between pods with offloads on).
    Bulk,
}

/// What a forwarding thread does before it polls its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BeforePoll {
    /// Poll at once (idle: the first frame wakes the thread; or work is left over).
    Nothing,
    /// Let a few frames gather instead of being woken for each one.
    Nap,
    /// Look once without waiting, nap only if nothing is there: under a super-frame stream our
    /// own sends made work for our own ports (the receiving pod's ACK, the sender's next
    /// segments: both pods' TCP runs in our sendmmsg's softirq), and a nap on it would add
    /// 30 µs to every round trip of a window of a few super-frames.
    PollThenNap,
}

fn before_poll(adaptive_wait: bool, level: Load, drained: bool) -> BeforePoll {
    match level {
        _ if !adaptive_wait || !drained => BeforePoll::Nothing,
        Load::Idle => BeforePoll::Nothing,
        Load::Busy => BeforePoll::Nap,
        Load::Bulk => BeforePoll::PollThenNap,
    }
}

/// Bytes of a full-size frame (MTU 1500 and its Ethernet header): the unit of work the load
/// meter counts.
const LOAD_UNIT_BYTES: u64 = 1514;

/// Work received, in frames, with a longer frame (a GSO super-frame of up to 64 KiB) counted
/// as the full-size frames it carries: a TCP stream between pods with offloads on arrives as
/// ~20 super-frames per ms at 12 Gbit/s, as much work to wake up for as ~1000 frames.
fn load_units(frames: usize, bytes: u64) -> u64 {
    (frames as u64).max(bytes / LOAD_UNIT_BYTES)
}

/// Frames per [`LOAD_WINDOW`] (in [`load_units`]), classified at the end of each window.
struct LoadMeter {
    level: Load,
    /// Work per ms over the last full window (in [`load_units`]).
    per_ms: u64,
    since: Instant,
    /// Work in [`load_units`] and frames received in this window.
    units: u64,
    frames: u64,
}

impl LoadMeter {
    fn new(now: Instant) -> Self {
        Self {
            level: Load::Idle,
            per_ms: 0,
            since: now,
            units: 0,
            frames: 0,
        }
    }

    fn add(&mut self, got: Received, now: Instant) {
        self.units += got.units;
        self.frames += got.frames;
        let span = now.saturating_duration_since(self.since);
        if span >= LOAD_WINDOW {
            self.per_ms = per_ms(self.units, span);
            self.level = classify(self.units, self.frames, span);
            self.since = now;
            self.units = 0;
            self.frames = 0;
        }
    }

    /// How long a busy thread naps before polling its drained ports: the time its last
    /// window's rate takes to bring [`NAP_FRAMES`], within
    /// [`COALESCE_NAP`]..[`COALESCE_NAP_MAX`].
    fn nap(&self) -> Duration {
        let us = (NAP_FRAMES * 1000).checked_div(self.per_ms).unwrap_or(0);
        Duration::from_micros(us).clamp(COALESCE_NAP, COALESCE_NAP_MAX)
    }
}

fn per_ms(units: u64, span: Duration) -> u64 {
    units * 1_000_000 / (span.as_micros() as u64).max(1) / 1000
}

/// What a turn received: frames, and their work in [`load_units`].
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    units: u64,
    frames: u64,
}

impl Received {
    fn add(&mut self, other: Received) {
        self.units += other.units;
        self.frames += other.frames;
    }
}

/// The load level of `units` of work in `frames` received over `span`.
fn classify(units: u64, frames: u64, span: Duration) -> Load {
    if per_ms(units, span) < MODERATE_PER_MS {
        Load::Idle
    } else if units >= BULK_UNITS_PER_FRAME * frames.max(1) {
        Load::Bulk
    } else {
        Load::Busy
    }
}

/// Megaflow slots examined per housekeeping tick for idle aging (the whole default cache every
/// ~1.6 s at 10 ticks/s, in steps of a few tens of microseconds).
const MEGAFLOW_SWEEP: usize = 4096;
/// Resubmit/goto/recirculation depth after which a packet is dropped as looping.
pub const MAX_DEPTH: usize = 64;

/// Per-bridge datapath state.
pub struct DpBridge {
    pub name: String,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub drops: Arc<DropCounters>,
    /// Packets `sample` actions sampled, by collector set (shared by every thread's copy).
    pub samples: Arc<sample::SampleCounters>,
    pub(crate) cache_version: u64,
    pub(crate) emc: Emc<xlate::CachedFlow>,
    pub(crate) megaflows: MegaflowCache<xlate::CachedFlow>,
    /// Shared by every thread's copy of the bridge (learning on one port, lookups on all);
    /// read-locked per frame, write-locked only when learning changes it.
    pub(crate) mac: Arc<std::sync::RwLock<MacTable>>,
    /// Counters of cache behaviour, for `dump-drops` and benchmarks.
    pub stats: Arc<CacheStats>,
}

/// One thread's (written per batch by that thread only): on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CacheStats {
    pub emc_hits: std::sync::atomic::AtomicU64,
    pub megaflow_hits: std::sync::atomic::AtomicU64,
    /// Megaflow misses: each one is an upcall (a slow-path translation).
    pub misses: std::sync::atomic::AtomicU64,
    /// Megaflows and distinct masks in this thread's cache, stored when the cache changes
    /// (after an upcall or a revalidation), so readers need not visit the thread.
    pub megaflows: std::sync::atomic::AtomicU64,
    pub megaflow_masks: std::sync::atomic::AtomicU64,
}

/// Where a forwarding thread's time goes: waiting in `poll` (idle) or handling what it
/// returned (busy: packets, control-side jobs, housekeeping). Two clock reads per loop turn
/// (one turn is up to 4 batches per ready port), none per packet. On cache lines of its own:
/// the threads' stats are allocated together, and each thread writes its own every turn.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ThreadStats {
    pub busy_ns: std::sync::atomic::AtomicU64,
    pub idle_ns: std::sync::atomic::AtomicU64,
    /// Frames the thread received from the ports it polls (added once per poll turn).
    pub rx_frames: std::sync::atomic::AtomicU64,
}

/// A packet the pipeline sends to the controller (`controller` action), for the OpenFlow
/// connections that asked for packet-ins.
#[derive(Debug, Clone)]
pub struct PacketInEvent {
    pub bridge: usize,
    /// The action that sent it: reason, table, cookie, controller id, userdata, metadata.
    pub action: Arc<PacketInAction>,
    /// The whole frame's length; `frame` holds at most `max_len` bytes of it.
    pub total_len: u32,
    pub frame: Vec<u8>,
}

/// A translated `controller` action: everything its packet-ins say besides the packet, fixed
/// when the flow is translated (the megaflow pins every field `metadata` reports, so each
/// packet it serves has the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketInAction {
    pub max_len: u16,
    /// `OFPR_*` as the action says (a connection's format may report it otherwise).
    pub reason: u8,
    pub cookie: u64,
    pub table: u8,
    /// `controller(id=N)`: only connections with controller id N get these packet-ins.
    pub controller_id: u16,
    /// `controller(userdata=...)`, empty when none.
    pub userdata: Vec<u8>,
    /// The pipeline fields at the action, as Open vSwitch's `flow_get_metadata` reports them:
    /// `in_port` always; tunnel fields, `metadata`, registers, `pkt_mark` and the conntrack
    /// fields when not zero (the original-direction tuple with `eth_type` when `ct_state` says
    /// the connection is valid). `mask` marks the fields present.
    pub metadata: flowtable::Match,
}

impl PacketInAction {
    /// The packet-in of `frame`, cut to `max_len`.
    pub fn event(self: &Arc<Self>, bridge: usize, frame: &[u8]) -> PacketInEvent {
        let take = frame.len().min(usize::from(self.max_len));
        PacketInEvent {
            bridge,
            action: self.clone(),
            total_len: frame.len() as u32,
            frame: frame[..take].to_vec(),
        }
    }

    /// [`PacketInAction::metadata`] for a packet whose pipeline fields are `key`.
    pub fn metadata_of(key: &encap::FlowKey) -> flowtable::Match {
        use encap::flowkey::{CT_INV, CT_TRK};
        let mut m = flowtable::Match::default();
        let (v, k) = (&mut m.value, &mut m.mask);
        v.in_port = key.in_port;
        k.in_port = u32::MAX;
        macro_rules! if_set {
            ($($f:ident: $t:ty),*) => {$(
                if key.$f != 0 {
                    v.$f = key.$f;
                    k.$f = <$t>::MAX;
                }
            )*};
        }
        if_set!(tun_id: u64, tun_src: u32, tun_dst: u32, metadata: u64, pkt_mark: u32);
        if_set!(ct_zone: u16, ct_mark: u32);
        for i in 0..key.regs.len() {
            if key.regs[i] != 0 {
                v.regs[i] = key.regs[i];
                k.regs[i] = u32::MAX;
            }
        }
        if key.ct_label != [0; 16] {
            v.ct_label = key.ct_label;
            k.ct_label = [0xff; 16];
        }
        if key.ct_state != 0 {
            v.ct_state = key.ct_state;
            k.ct_state = u8::MAX;
            // Open vSwitch adds the eth_type the conntrack fields are read with.
            v.eth_type = key.eth_type;
            k.eth_type = u16::MAX;
            let valid = key.ct_state & CT_TRK != 0 && key.ct_state & CT_INV == 0;
            if valid && key.ct_nw_proto != 0 {
                v.ct_nw_proto = key.ct_nw_proto;
                k.ct_nw_proto = u8::MAX;
                v.ct_tp_src = key.ct_tp_src;
                k.ct_tp_src = u16::MAX;
                v.ct_tp_dst = key.ct_tp_dst;
                k.ct_tp_dst = u16::MAX;
                if key.eth_type == 0x0800 {
                    v.ct_nw_src = key.ct_nw_src;
                    k.ct_nw_src = u32::MAX;
                    v.ct_nw_dst = key.ct_nw_dst;
                    k.ct_nw_dst = u32::MAX;
                } else if key.eth_type == 0x86dd {
                    v.ct_ipv6_src = key.ct_ipv6_src;
                    k.ct_ipv6_src = [0xff; 16];
                    v.ct_ipv6_dst = key.ct_ipv6_dst;
                    k.ct_ipv6_dst = [0xff; 16];
                }
            }
        }
        m
    }

    /// The key fields [`PacketInAction::metadata_of`] reads, as a mask (what the megaflow of
    /// a flow sending packet-ins must pin).
    pub fn metadata_mask() -> encap::FlowKey {
        let mut k = encap::FlowKey {
            in_port: u32::MAX,
            tun_id: u64::MAX,
            tun_src: u32::MAX,
            tun_dst: u32::MAX,
            metadata: u64::MAX,
            regs: [u32::MAX; 16],
            pkt_mark: u32::MAX,
            ct_zone: u16::MAX,
            ct_mark: u32::MAX,
            ct_label: [0xff; 16],
            ct_state: u8::MAX,
            eth_type: u16::MAX,
            ..encap::FlowKey::default()
        };
        k.ct_nw_proto = u8::MAX;
        k.ct_tp_src = u16::MAX;
        k.ct_tp_dst = u16::MAX;
        k.ct_nw_src = u32::MAX;
        k.ct_nw_dst = u32::MAX;
        k.ct_ipv6_src = [0xff; 16];
        k.ct_ipv6_dst = [0xff; 16];
        k
    }
}

/// A side effect on the flow tables the datapath asks the control side for.
#[derive(Debug)]
pub enum LearnEvent {
    /// A `learn` ran on bridge `bridge` (datapath index).
    Learn {
        bridge: usize,
        req: Arc<actions::LearnRequest>,
    },
    /// A `fin_timeout` saw a FIN or RST.
    FinTimeout {
        bridge: usize,
        req: Arc<actions::FinTimeoutRequest>,
    },
    /// Answered once every event queued before it has been applied (tests, `settle`).
    Barrier(crossbeam_channel::Sender<()>),
}

pub struct Datapath {
    /// This thread's index (0 runs the shared housekeeping).
    thread: usize,
    poll: Poll,
    /// Where `controller` actions go; `None` until the control side listens.
    pub(crate) packet_in: Option<crossbeam_channel::Sender<PacketInEvent>>,
    /// Where `learn` and `fin_timeout` requests go; `None` until the control side listens.
    pub(crate) learn: Option<crossbeam_channel::Sender<LearnEvent>>,
    pub(crate) ports: Vec<Option<DpPort>>,
    pub(crate) bridges: Vec<Option<DpBridge>>,
    /// One connection table for all threads (a connection's two directions may arrive on
    /// ports of different threads), in shards locked one at a time.
    pub(crate) ct: Arc<Sharded>,
    rx: Batch,
    /// Some frame port of this thread takes super-frames: worth merging what a tunnel port
    /// received into super-frames (`ports::coalesce_received`); without one they would only
    /// be segmented again.
    gso_out: bool,
    /// Ports that still had packets when their turn ended (edge-triggered readiness).
    still_ready: Vec<usize>,
    stop: bool,
    busy_poll: Duration,
    /// `--rx-wait adaptive`: nap by load (see [`LoadMeter`]) instead of blocking always.
    adaptive_wait: bool,
    start: Instant,
    last_housekeeping: Instant,
    pub(crate) scratch: exec::Scratch,
    time: Arc<ThreadStats>,
}

/// Starts the forwarding threads (`opts.threads`, at least one).
pub fn spawn(opts: Options) -> io::Result<(DatapathHandle, Vec<JoinHandle<()>>)> {
    let n = opts.threads.max(1);
    let start = Instant::now();
    let shards = match opts.ct_shards {
        0 if n == 1 => 1,
        0 => DEFAULT_CT_SHARDS,
        s => s,
    };
    let ct = Sharded::new(opts.conntrack, shards).map_err(|e| io::Error::other(e.to_string()))?;
    ct.prefault();
    let ct = Arc::new(ct);
    let mut handles = Vec::with_capacity(n);
    let mut joins = Vec::with_capacity(n);
    let thread_stats: Arc<[Arc<ThreadStats>]> =
        (0..n).map(|_| Arc::new(ThreadStats::default())).collect();
    for t in 0..n {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut dp = Datapath {
            thread: t,
            poll,
            ports: Vec::new(),
            bridges: Vec::new(),
            ct: ct.clone(),
            rx: Batch::new(BATCH, tap_io::buf::DEFAULT_HEADROOM, tap_io::GSO_FRAME_ROOM),
            gso_out: false,
            still_ready: Vec::new(),
            packet_in: None,
            learn: None,
            stop: false,
            busy_poll: Duration::from_micros(opts.busy_poll_us),
            adaptive_wait: !opts.rx_wait_block,
            start,
            last_housekeeping: Instant::now(),
            scratch: exec::Scratch::new(),
            time: thread_stats[t].clone(),
        };
        let name = if n == 1 {
            "datapath".to_string()
        } else {
            format!("datapath-{t}")
        };
        joins.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || dp.run(rx))?,
        );
        handles.push(ThreadHandle { jobs: tx, waker });
    }
    Ok((
        DatapathHandle {
            threads: handles.into(),
            placement: Arc::default(),
            start,
            ct,
            thread_stats,
        },
        joins,
    ))
}

impl Datapath {
    fn run(&mut self, jobs: Receiver<Job>) {
        let mut events = Events::with_capacity(256);
        let mut ready: Vec<usize> = Vec::with_capacity(64);
        let mut idle_since = Instant::now();
        let mut turn_end = Instant::now();
        let mut poll_warn = crate::ratelimit::RateLimit::default();
        let mut load = LoadMeter::new(turn_end);
        let mut housekeeping_deferred = false;
        if let Err(e) = tap_io::sched::set_slice(WAKE_SLICE_NS) {
            warn!("cannot ask for a short scheduler slice: {e}");
        }
        if self.adaptive_wait {
            // The coalescing naps are a few tens of µs: the default 50 µs slack would double them.
            let _ = tap_io::sched::set_timer_slack(1000);
        }
        while !self.stop {
            let mut polled = false;
            match before_poll(self.adaptive_wait, load.level, self.still_ready.is_empty()) {
                BeforePoll::Nothing => {}
                BeforePoll::Nap => std::thread::sleep(load.nap()),
                BeforePoll::PollThenNap => {
                    let _ = self.poll.poll(&mut events, Some(Duration::ZERO));
                    polled = !events.is_empty();
                    if !polled {
                        std::thread::sleep(COALESCE_NAP);
                    }
                }
            }
            let timeout = if !self.still_ready.is_empty()
                || housekeeping_deferred
                || idle_since.elapsed() < self.busy_poll
            {
                Some(Duration::ZERO)
            } else {
                Some(Duration::from_millis(100))
            };
            if !polled
                && let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
                && let Some(suppressed) = poll_warn.allow(Instant::now())
            {
                warn!(suppressed, "poll failed: {e}");
            }
            let woke = Instant::now();
            add_ns(&self.time.idle_ns, woke - turn_end);
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
            let mut got = Received::default();
            for &port in &ready {
                got.add(self.service_port(port));
            }
            // Once for all the ports served: what several of them sent to one port leaves in
            // one send call (a full transmit batch is sent at once as it fills).
            self.flush_all();
            if got.frames > 0 {
                self.time
                    .rx_frames
                    .fetch_add(got.frames, std::sync::atomic::Ordering::Relaxed);
                idle_since = woke;
                let now = self.now_ns();
                self.scratch.end_turn(&self.ct, now);
            }
            while let Ok(job) = jobs.try_recv() {
                job(self);
            }
            let since = self.last_housekeeping.elapsed();
            let when = housekeeping_time::decide(since, got.units, load.level != Load::Idle);
            if when == Housekeeping::Now {
                self.housekeeping();
            }
            housekeeping_deferred = when == Housekeeping::Deferred;
            turn_end = Instant::now();
            load.add(got, turn_end);
            add_ns(&self.time.busy_ns, turn_end - woke);
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Drains up to a few batches from one port (the caller flushes what they sent).
    /// Returns the frames received and their work in [`load_units`].
    fn service_port(&mut self, port_id: usize) -> Received {
        let mut total = Received::default();
        for turn in 0..BATCHES_PER_TURN {
            self.rx.clear();
            let (bridge, got) = {
                let Some(port) = self.ports.get_mut(port_id).and_then(|p| p.as_mut()) else {
                    return total;
                };
                match port.receive(&mut self.rx) {
                    Ok((n, bytes)) => {
                        if self.gso_out && port.is_tunnel() {
                            ports::coalesce_received(&mut self.rx);
                        }
                        total.add(Received {
                            units: load_units(n, bytes),
                            frames: n as u64,
                        });
                        (port.bridge, n)
                    }
                    Err(e) => {
                        // Counted by the port itself (its `rx_errors`, folded in housekeeping).
                        if e.kind() != io::ErrorKind::WouldBlock
                            && let Some(suppressed) = port.rx_warn.allow(Instant::now())
                        {
                            warn!(port = %port.name, suppressed, "receive failed: {e}");
                        }
                        return total;
                    }
                }
            };
            if got > 0 && !self.rx.is_empty() {
                exec::process_batch(self, bridge, port_id);
            }
            if got < BATCH {
                break; // drained: the next edge will tell us when there is more
            }
            if turn + 1 == BATCHES_PER_TURN {
                self.still_ready.push(port_id);
            }
        }
        total
    }

    pub(crate) fn flush_all(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            port.flush();
        }
    }

    /// Expiry of shared state (connections, MAC entries): thread 0's job.
    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        // Each thread for the ports it receives from: kernel ring drops into rx_dropped (a
        // shedding port may attach or close its XDP socket there: its descriptors follow).
        for (idx, port) in self.ports.iter_mut().enumerate() {
            let Some(port) = port else { continue };
            port.fold_kernel_drops();
            if let Err(e) = port.sync_registration(self.poll.registry(), Token(idx)) {
                tracing::warn!(port = %port.name, "cannot wait on the port's new socket: {e}");
            }
        }
        // This thread's megaflows: idle ones go, a bounded slice of the cache per tick.
        let now = self.now_ns();
        for b in self.bridges.iter_mut().flatten() {
            b.megaflows.sweep(now, MEGAFLOW_SWEEP);
        }
        if self.thread != 0 {
            return;
        }
        self.conntrack().expire(now, 4096);
        for b in self.bridges.iter_mut().flatten() {
            write(&b.mac).expire(now);
        }
    }

    /// Adds this thread's copy of a bridge (see [`DatapathHandle::add_bridge`]).
    pub fn add_bridge(
        &mut self,
        name: &str,
        pipeline: Arc<ArcSwap<Pipeline>>,
        drops: Arc<DropCounters>,
        samples: Arc<sample::SampleCounters>,
        mac: Arc<std::sync::RwLock<MacTable>>,
    ) -> (usize, Arc<CacheStats>) {
        let stats = Arc::new(CacheStats::default());
        let bridge = DpBridge {
            name: name.to_string(),
            pipeline,
            drops,
            samples,
            cache_version: u64::MAX,
            emc: Emc::default(),
            megaflows: MegaflowCache::new(65536),
            mac,
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

    /// Datapath ids of a bridge's ports.
    pub fn bridge_ports(&self, idx: usize) -> Vec<usize> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().filter(|p| p.bridge == idx).map(|_| i))
            .collect()
    }

    pub fn del_bridge(&mut self, idx: usize) {
        for p in self.bridge_ports(idx) {
            self.del_port(p);
        }
        if let Some(b) = self.bridges.get_mut(idx) {
            *b = None;
        }
    }

    /// Takes ownership of an opened port (this thread's copy of it) and, when `polled`,
    /// starts receiving from it. Returns its datapath id.
    pub fn add_port(&mut self, mut port: DpPort, polled: bool) -> io::Result<usize> {
        let idx = self
            .ports
            .iter()
            .position(|p| p.is_none())
            .unwrap_or(self.ports.len());
        port.polled = polled;
        port.thread = self.thread;
        if polled {
            port.register(self.poll.registry(), Token(idx))?;
        }
        if idx == self.ports.len() {
            self.ports.push(Some(port));
        } else {
            self.ports[idx] = Some(port);
        }
        if polled {
            // A new port may already hold packets that arrived before registration.
            self.still_ready.push(idx);
        }
        self.note_gso_out();
        Ok(idx)
    }

    fn note_gso_out(&mut self) {
        self.gso_out = self
            .ports
            .iter()
            .flatten()
            .any(|p| p.offloads.gso && !p.is_tunnel());
    }

    pub fn del_port(&mut self, idx: usize) {
        if let Some(Some(mut port)) = self.ports.get_mut(idx).map(|p| p.take()) {
            if port.polled {
                port.deregister(self.poll.registry());
            }
            if let Some(Some(b)) = self.bridges.get_mut(port.bridge) {
                write(&b.mac).flush_port(port.ofport);
                b.cache_version = u64::MAX;
            }
        }
        self.still_ready.retain(|p| *p != idx);
        self.note_gso_out();
    }

    /// Forgets every MAC the bridge learned (a port's VLAN role changed).
    pub fn flush_macs(&mut self, bridge: usize) {
        if let Some(Some(b)) = self.bridges.get_mut(bridge) {
            // Shared by every thread: one flush does. NORMAL reads it per packet (nothing cached).
            write(&b.mac).flush();
        }
    }

    /// Runs a packet given by the control side (PACKET_OUT, `trace --inject`) through a bridge.
    pub fn inject(&mut self, bridge: usize, in_port: u32, frame: &[u8]) {
        self.inject_with_meta(bridge, in_port, frame, tap_io::RxMeta::default());
    }

    /// [`inject`](Self::inject) with the receive metadata a port would have given the frame
    /// (offload state: a GSO super-frame, a partial checksum), as in tests of the offload paths.
    pub fn inject_with_meta(
        &mut self,
        bridge: usize,
        in_port: u32,
        frame: &[u8],
        meta: tap_io::RxMeta,
    ) {
        exec::inject(self, bridge, in_port, frame, meta, None);
        self.flush_all();
    }

    /// Runs a packet through `pipeline` instead of the bridge's own (PACKET_OUT with
    /// actions), bypassing the caches so nothing of it stays behind.
    pub fn inject_with(
        &mut self,
        bridge: usize,
        in_port: u32,
        frame: &[u8],
        pipeline: Arc<Pipeline>,
    ) {
        exec::inject(
            self,
            bridge,
            in_port,
            frame,
            tap_io::RxMeta::default(),
            Some(pipeline),
        );
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

    /// Frames this thread's copy of the port has captured so far.
    pub fn capture_len(&self, dp_id: usize) -> usize {
        self.ports
            .get(dp_id)
            .and_then(|p| p.as_ref())
            .and_then(|p| p.capture.as_ref())
            .map_or(0, |c| c.frames.len())
    }

    /// Frames the running capture asked for (0 when none runs).
    pub fn capture_want(&self, dp_id: usize) -> usize {
        self.ports
            .get(dp_id)
            .and_then(|p| p.as_ref())
            .and_then(|p| p.capture.as_ref())
            .map_or(0, |c| c.wanted())
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

    /// The connection table (shared by every thread).
    pub fn conntrack(&self) -> &Sharded {
        &self.ct
    }

    /// Bridge `bridge`'s MAC table as `(vlan, mac, port, age_ns)`.
    pub fn mac_table_export(&self, bridge: usize) -> Vec<(u16, [u8; 6], u32, u64)> {
        let now = self.now_ns();
        self.bridges
            .get(bridge)
            .and_then(|b| b.as_ref())
            .map(|b| read(&b.mac).export(now))
            .unwrap_or_default()
    }

    /// Puts exported entries back into bridge `bridge`'s MAC table.
    pub fn mac_table_import(&self, bridge: usize, entries: &[(u16, [u8; 6], u32, u64)]) {
        let now = self.now_ns();
        if let Some(b) = self.bridges.get(bridge).and_then(|b| b.as_ref()) {
            write(&b.mac).import(entries, now);
        }
    }

    pub fn mac_table_dump(&self, bridge: usize) -> Vec<(u16, [u8; 6], u32, u64)> {
        let now = self.now_ns();
        self.bridges
            .get(bridge)
            .and_then(|b| b.as_ref())
            .map(|b| read(&b.mac).dump(now))
            .unwrap_or_default()
    }
}

fn add_ns(counter: &std::sync::atomic::AtomicU64, d: Duration) {
    counter.fetch_add(d.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Locks shared datapath state; a thread that panicked while holding it cannot have left it
/// half-updated in a way that matters more than stopping forwarding would.
pub(crate) fn read<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod load_tests {
    use super::*;

    #[test]
    fn a_super_frame_counts_as_the_full_size_frames_it_carries() {
        // 32 frames of 64 bytes: one unit each, as before.
        assert_eq!(load_units(32, 32 * 64), 32);
        // One 64 KiB TSO super-frame: 43 full-size frames of work.
        assert_eq!(load_units(1, 65_160), 43);
        assert_eq!(load_units(0, 0), 0);
    }

    #[test]
    fn a_tcp_stream_of_super_frames_is_bulk() {
        // ~12 Gbit/s of 64 KiB super-frames: ~23 per ms, under MODERATE_PER_MS as frames.
        let now = Instant::now();
        let mut by_frames = LoadMeter::new(now);
        by_frames.add(received(23, 23 * 64), now + LOAD_WINDOW);
        assert_eq!(by_frames.level, Load::Idle);
        let mut by_size = LoadMeter::new(now);
        by_size.add(received(23, 23 * 65_160), now + LOAD_WINDOW);
        assert_eq!(by_size.level, Load::Bulk);
        // A few pings stay idle (the first frame wakes the thread at once).
        let mut idle = LoadMeter::new(now);
        idle.add(received(2, 2 * 98), now + LOAD_WINDOW);
        assert_eq!(idle.level, Load::Idle);
    }

    #[test]
    fn the_nap_waits_for_a_batch_at_the_recent_rate_within_bounds() {
        let now = Instant::now();
        let at = |frames: u64| {
            let mut m = LoadMeter::new(now);
            let got = Received {
                units: frames,
                frames,
            };
            m.add(got, now + LOAD_WINDOW);
            m.nap()
        };
        // ~120 frames/ms (a Service's new connections): 32 frames take 266 µs, capped at 100.
        assert_eq!(at(120), COALESCE_NAP_MAX);
        // 640 frames/ms: 50 µs brings a batch.
        assert_eq!(at(640), Duration::from_micros(50));
        // From ~1070 frames/ms (64-byte forwarding, a TCP stream): the shortest nap.
        assert_eq!(at(1100), COALESCE_NAP);
        assert_eq!(at(5000), COALESCE_NAP);
        // No window measured yet: the shortest nap.
        assert_eq!(LoadMeter::new(now).nap(), COALESCE_NAP);
    }

    #[test]
    fn only_a_super_frame_stream_looks_before_it_naps() {
        assert_eq!(before_poll(true, Load::Idle, true), BeforePoll::Nothing);
        assert_eq!(before_poll(true, Load::Busy, true), BeforePoll::Nap);
        assert_eq!(before_poll(true, Load::Bulk, true), BeforePoll::PollThenNap);
        // Work left over from the last turn, or `--rx-wait block`: no nap at all.
        for level in [Load::Idle, Load::Busy, Load::Bulk] {
            assert_eq!(before_poll(true, level, false), BeforePoll::Nothing);
            assert_eq!(before_poll(false, level, true), BeforePoll::Nothing);
        }
    }

    fn received(frames: usize, bytes: u64) -> Received {
        Received {
            units: load_units(frames, bytes),
            frames: frames as u64,
        }
    }

    #[test]
    fn only_a_stream_of_super_frames_is_bulk() {
        let now = Instant::now();
        // 1000 full-size frames per ms (TCP without offloads): busy, not bulk.
        let mut mtu = LoadMeter::new(now);
        mtu.add(received(1000, 1000 * 1514), now + LOAD_WINDOW);
        assert_eq!(mtu.level, Load::Busy);
        // 23 super-frames and as many ACKs per ms: still a super-frame stream.
        let mut acked = LoadMeter::new(now);
        acked.add(received(23, 23 * 65_160), now);
        acked.add(received(23, 23 * 66), now + LOAD_WINDOW);
        assert_eq!(acked.level, Load::Bulk);
        // Small frames at a high rate with an odd super-frame: busy.
        let mut mixed = LoadMeter::new(now);
        mixed.add(received(500, 500 * 64 + 65_160), now + LOAD_WINDOW);
        assert_eq!(mixed.level, Load::Busy);
    }
}
