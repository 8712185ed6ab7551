//! The fast path: classify a received batch through the caches and execute datapath actions.

use std::net::Ipv4Addr;
use std::sync::Arc;

use encap::FlowKey;
use encap::rewrite::{ArpField, L4Checksum};
use tap_io::{Batch, PacketBuf};

use super::actions::DpAction;
use super::cache::hash_key;
use super::counters::PortCounters;
use super::drops::DropReason;
use super::ports::DpPort;
use super::xlate::{CachedFlow, META_WORDS, Xlate};
use super::{Datapath, DpBridge};
use crate::pipeline::{FlowStats, Pipeline};

mod normal;

/// Recirculations (ct with table=) one packet may take.
const MAX_RECIRC: usize = 8;

/// Reusable buffers so that the fast path never allocates.
pub struct Scratch {
    icmp: Vec<u8>,
    /// This thread's budget of ICMP error replies (`icmp::reply_limit`).
    icmp_limit: crate::ratelimit::TokenBucket,
    /// Held fragments released by conntrack are copied here, then run again.
    held_frame: Vec<u8>,
    held_pkt: Option<PacketBuf>,
    /// Packet copies for [`DpAction::Clone`], one per nesting level, reused.
    clones: Vec<PacketBuf>,
    hits: FlowHits,
    /// EMC hits, megaflow hits and misses of the batch, added to the thread's `CacheStats`
    /// when it ends.
    cache: [u64; 3],
    /// `sample`: this thread's random generator and the batch's counts.
    samples: super::sample::SampleTally,
    /// Packets run through conntrack this poll turn, added to the table's count at its end.
    ct_packets: u64,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            icmp: Vec::with_capacity(1600),
            icmp_limit: super::icmp::reply_limit(),
            held_frame: Vec::new(),
            held_pkt: None,
            clones: Vec::new(),
            hits: FlowHits::default(),
            cache: [0; 3],
            samples: super::sample::SampleTally::default(),
            ct_packets: 0,
        }
    }

    /// Adds what the turn's batches counted in shared counters (rules, flows, the connection
    /// table's packet count): once per poll turn, before the thread runs control-side jobs or
    /// waits, so a reader that synchronises with the thread sees every packet counted.
    pub(super) fn end_turn(&mut self, ct: &conntrack::Sharded, now_ns: u64) {
        self.hits.flush(now_ns);
        if self.ct_packets != 0 {
            ct.add_packets(std::mem::take(&mut self.ct_packets));
        }
    }
}

/// Rule and flow counters gathered over a poll turn (up to 4 batches per ready port): a rule's
/// counters (shared by every forwarding thread, so each update moves a cache line between
/// cores) are updated once per turn and rule, a cached flow's (this thread's own) once per
/// window and flow. A batch holds few
/// distinct rules but, with per-connection megaflows, many distinct flows: flows are summed in
/// a small window and each one leaving it adds to its rules' sums, never to the rules
/// themselves. Counts reach `dump-flows` when the turn ends (before the thread runs control-side
/// jobs or waits for packets).
struct FlowHits {
    flows: Vec<(Arc<CachedFlow>, u64, u64)>,
    /// A rule as (a cached flow of this thread that hit it, its index in the flow's rules):
    /// no reference count of the rule itself (shared) is touched.
    rules: Vec<(Arc<CachedFlow>, usize, u64, u64)>,
    /// Counters a packet adds to by the branch it takes (a select group's bucket in the
    /// datapath, a `check_pkt_larger`): one reference count write per counter and turn.
    branches: Vec<(Arc<FlowStats>, u64, u64)>,
}

/// Distinct cached flows summed at once (more just move on to the rules' sums early).
const FLOW_HITS: usize = 8;
/// Distinct rules summed at once (more flush early: a batch rarely hits this many).
const RULE_HITS: usize = 64;
/// Distinct branch counters summed at once (a select group's buckets, typically).
const BRANCH_HITS: usize = 32;

impl Default for FlowHits {
    fn default() -> Self {
        FlowHits {
            flows: Vec::with_capacity(FLOW_HITS),
            rules: Vec::with_capacity(RULE_HITS),
            branches: Vec::with_capacity(BRANCH_HITS),
        }
    }
}

impl FlowHits {
    #[inline]
    fn add(&mut self, flow: &Arc<CachedFlow>, bytes: u64, now_ns: u64) {
        if let Some(f) = self.flows.iter_mut().find(|f| Arc::ptr_eq(&f.0, flow)) {
            f.1 += 1;
            f.2 += bytes;
            return;
        }
        if self.flows.len() == FLOW_HITS {
            self.fold_flows(now_ns);
        }
        self.flows.push((flow.clone(), 1, bytes));
    }

    /// Adds the window's flows to their own counters and their counts to their rules' sums.
    fn fold_flows(&mut self, now_ns: u64) {
        for (flow, packets, bytes) in self.flows.drain(..) {
            flow.stats.hit(packets, bytes, now_ns);
            for (i, r) in flow.rules.iter().enumerate() {
                match self
                    .rules
                    .iter_mut()
                    .find(|e| Arc::ptr_eq(&e.0.rules[e.1], r))
                {
                    Some(e) => {
                        e.2 += packets;
                        e.3 += bytes;
                    }
                    None => {
                        if self.rules.len() == RULE_HITS {
                            Self::fold_rules(&mut self.rules, now_ns);
                        }
                        self.rules.push((flow.clone(), i, packets, bytes));
                    }
                }
            }
        }
    }

    fn fold_rules(rules: &mut Vec<(Arc<CachedFlow>, usize, u64, u64)>, now_ns: u64) {
        for (flow, i, packets, bytes) in rules.drain(..) {
            flow.rules[i].hit(packets, bytes, now_ns);
        }
    }

    /// One packet of `bytes` through a branch whose walk went through `counters`.
    #[inline]
    fn add_branch(&mut self, counters: &[Arc<FlowStats>], bytes: u64, now_ns: u64) {
        for c in counters {
            let full = self.branches.len() == BRANCH_HITS;
            match self.branches.iter_mut().find(|e| Arc::ptr_eq(&e.0, c)) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += bytes;
                }
                // A full window keeps the counters it has (more packets of this turn are
                // likely theirs) and this one is added to at once: with more branches in play
                // than it holds, each costs one shared update, not a fold and a clone.
                None if full => c.hit(1, bytes, now_ns),
                None => self.branches.push((c.clone(), 1, bytes)),
            }
        }
    }

    fn fold_branches(branches: &mut Vec<(Arc<FlowStats>, u64, u64)>, now_ns: u64) {
        for (c, packets, bytes) in branches.drain(..) {
            c.hit(packets, bytes, now_ns);
        }
    }

    fn flush(&mut self, now_ns: u64) {
        self.fold_flows(now_ns);
        Self::fold_rules(&mut self.rules, now_ns);
        Self::fold_branches(&mut self.branches, now_ns);
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything one packet's execution may touch, borrowed disjointly from the datapath.
struct Ctx<'a> {
    ports: &'a mut [Option<DpPort>],
    bridge: &'a mut DpBridge,
    /// The connection table: a shard is locked for one `ct` at a time (`ct::run` lets it go);
    /// the cursor counts the batch's packets and adds them to the table when dropped.
    ct: &'a conntrack::Sharded,
    ct_cur: conntrack::Cursor<'a>,
    /// PACKET_OUT with its own actions: translate without touching the caches.
    uncached: bool,
    pipeline: &'a Pipeline,
    scratch: &'a mut Scratch,
    now_ns: u64,
    in_dp: usize,
    /// The key this packet had when it first went through conntrack in a zone: later `ct`
    /// actions in the same zone must find the same connection even after NAT rewrote the
    /// packet (the kernel keeps this on the skb; a retransmitted SYN relies on it).
    ct_first: Option<(u16, FlowKey)>,
    /// The bytes the packet's cached flow was counted with (its length when it was looked up):
    /// a branch taken further on counts the same, whatever the actions before it changed.
    hit_bytes: u64,
    packet_in: Option<&'a crossbeam_channel::Sender<super::PacketInEvent>>,
    learn: Option<&'a crossbeam_channel::Sender<super::LearnEvent>>,
    bridge_index: usize,
    /// While NORMAL sends the frame tagged otherwise than it came: its outer tag as it came,
    /// (TPID, TCI) or `None` for untagged, which an ICMP error about the frame carries back.
    normal_came: Option<Option<(u16, u16)>>,
}

/// Processes `dp.rx`, received on port `port_id` of bridge `bridge`.
pub(super) fn process_batch(dp: &mut Datapath, bridge: usize, port_id: usize) {
    let now_ns = dp.now_ns();
    let mut rx = std::mem::replace(&mut dp.rx, Batch::new(0, 0, 0));
    let Datapath {
        ports,
        bridges,
        ct,
        scratch,
        packet_in,
        learn,
        ..
    } = dp;
    if let Some(Some(b)) = bridges.get_mut(bridge) {
        // A guard, not a clone: no write to the snapshot's reference count, which every
        // forwarding thread shares.
        let pipeline = b.pipeline.load();
        if b.cache_version != pipeline.version {
            // The turn's counts go to the flows they were taken on before revalidation
            // replaces them (a kept flow takes its old counters over).
            scratch.hits.flush(now_ns);
        }
        revalidate(b, &pipeline);
        let (ofport, tun) = match ports.get(port_id).and_then(|p| p.as_ref()) {
            Some(p) => (p.ofport, p.is_tunnel()),
            None => (0, false),
        };
        let mut ctx = Ctx {
            ports,
            bridge: b,
            ct,
            ct_cur: conntrack::Cursor::default(),
            uncached: false,
            pipeline: &pipeline,
            scratch,
            now_ns,
            in_dp: port_id,
            ct_first: None,
            hit_bytes: 0,
            packet_in: packet_in.as_ref(),
            learn: learn.as_ref(),
            bridge_index: bridge,
            normal_came: None,
        };
        let mut held = LastFlow::default();
        for i in 0..rx.len() {
            let pkt = &mut rx[i];
            let mut key = FlowKey {
                in_port: ofport,
                ..FlowKey::default()
            };
            if tun && let Some(t) = pkt.meta.tunnel {
                key.tun_id = t.vni as u64;
                key.tun_src = u32::from(t.src);
                key.tun_dst = u32::from(t.dst);
            }
            ctx.ct_first = None;
            run_packet_held(&mut ctx, pkt, key, 0, &mut held);
            run_released_fragments(&mut ctx);
        }
        // Rule counters and the conntrack packet count are shared by every thread: they are
        // added once per poll turn (`end_turn`), not per batch.
        ctx.scratch.ct_packets += ctx.ct_cur.take_packets();
        fold_cache_stats(ctx.bridge, &mut ctx.scratch.cache);
        ctx.scratch.samples.flush(&ctx.bridge.samples);
    }
    rx.clear();
    dp.rx = rx;
}

/// Runs a frame given by the control side (PACKET_OUT) as if received on `in_port`.
pub(super) fn inject(
    dp: &mut Datapath,
    bridge: usize,
    in_port: u32,
    frame: &[u8],
    meta: tap_io::RxMeta,
    one_shot: Option<Arc<Pipeline>>,
) {
    let now_ns = dp.now_ns();
    let Datapath {
        ports,
        bridges,
        ct,
        scratch,
        packet_in,
        learn,
        ..
    } = dp;
    let Some(Some(b)) = bridges.get_mut(bridge) else {
        return;
    };
    let uncached = one_shot.is_some();
    // Fragments conntrack releases on the way were not the packet-out's: they run through
    // the bridge's own pipeline, never the packet-out's actions.
    let own = uncached.then(|| b.pipeline.load_full());
    let pipeline = match one_shot {
        Some(p) => p,
        None => {
            let p = b.pipeline.load_full();
            revalidate(b, &p);
            p
        }
    };
    let mut pkt = buf_with_room(None, frame.len());
    if pkt.set_frame(frame).is_err() {
        b.drops.add(DropReason::TooBig, 1);
        return;
    }
    pkt.meta = meta;
    let in_dp = pipeline
        .ports
        .get(&in_port)
        .map(|p| p.dp_id as usize)
        .unwrap_or(usize::MAX);
    let mut ctx = Ctx {
        ports,
        bridge: b,
        ct,
        ct_cur: conntrack::Cursor::default(),
        uncached,
        pipeline: &pipeline,
        scratch,
        now_ns,
        in_dp,
        ct_first: None,
        hit_bytes: 0,
        packet_in: packet_in.as_ref(),
        learn: learn.as_ref(),
        bridge_index: bridge,
        normal_came: None,
    };
    let key = FlowKey {
        in_port,
        ..FlowKey::default()
    };
    run_packet(&mut ctx, &mut pkt, key, 0);
    if let Some(own) = own.as_deref() {
        ctx.pipeline = own;
    }
    run_released_fragments(&mut ctx);
    ctx.scratch.hits.flush(now_ns);
    fold_cache_stats(ctx.bridge, &mut ctx.scratch.cache);
    ctx.scratch.samples.flush(&ctx.bridge.samples);
}

/// Adds a batch's cache hits and misses to the thread's counters (three adds per batch).
fn fold_cache_stats(b: &DpBridge, cache: &mut [u64; 3]) {
    use std::sync::atomic::Ordering::Relaxed;
    let [emc, megaflow, miss] = std::mem::take(cache);
    if emc != 0 {
        b.stats.emc_hits.fetch_add(emc, Relaxed);
    }
    if megaflow != 0 {
        b.stats.megaflow_hits.fetch_add(megaflow, Relaxed);
    }
    if miss != 0 {
        b.stats.misses.fetch_add(miss, Relaxed);
    }
}

/// Runs again, from table 0 and as received, the fragments conntrack held until their first
/// fragment passed (the packet just run may have been that first fragment). Cheap when there
/// are none: the cursor knows whether a shard it used has any.
fn run_released_fragments(ctx: &mut Ctx) {
    if !ctx.ct_cur.has_released_fragments() {
        return;
    }
    let mut frame = std::mem::take(&mut ctx.scratch.held_frame);
    let mut pkt = ctx.scratch.held_pkt.take();
    let saved_in_dp = ctx.in_dp;
    while let Some(held) = ctx.ct.take_released_fragment(&mut ctx.ct_cur, &mut frame) {
        let buf = buf_with_room(pkt.take(), frame.len());
        let pkt = pkt.insert(buf);
        if pkt.set_frame(&frame).is_err() {
            ctx.bridge.drops.add(DropReason::TooBig, 1);
            continue;
        }
        let key = FlowKey {
            in_port: held.in_port,
            tun_id: held.tun_id,
            tun_src: held.tun_src,
            tun_dst: held.tun_dst,
            ..FlowKey::default()
        };
        ctx.in_dp = ctx
            .pipeline
            .ports
            .get(&held.in_port)
            .map_or(usize::MAX, |p| p.dp_id as usize);
        ctx.ct_first = None;
        run_packet(ctx, pkt, key, 0);
    }
    ctx.ct_cur.release();
    ctx.in_dp = saved_in_dp;
    ctx.scratch.held_frame = frame;
    ctx.scratch.held_pkt = pkt;
}

/// A buffer for a copy of a `len`-byte frame: `kept` (a buffer kept for reuse) when it has the
/// room, else a new one: jumbo-sized, or with room for a GSO super-frame when the frame is
/// longer. A kept buffer therefore grows once, the first time a super-frame needs it, and is
/// reused after that: no allocation per packet.
fn buf_with_room(kept: Option<PacketBuf>, len: usize) -> PacketBuf {
    use tap_io::buf::{DEFAULT_FRAME_ROOM, DEFAULT_HEADROOM, GSO_FRAME_ROOM};
    match kept {
        Some(b) if b.frame_room() >= len => b,
        _ if len <= DEFAULT_FRAME_ROOM => PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_FRAME_ROOM),
        _ => PacketBuf::new(DEFAULT_HEADROOM, GSO_FRAME_ROOM.max(len)),
    }
}

/// Above this many megaflows a pipeline change flushes instead of re-checking each one: the
/// re-check runs on the datapath thread and must stay short.
const REVALIDATE_MAX: usize = 4096;

/// Brings the caches in line with a new pipeline version: every megaflow is re-translated from
/// the key that created it and kept only if the new walk gives the same actions under a mask
/// no wider than the cached one (so it is still right for every packet it covers). The EMC is
/// cleared; it refills from the megaflows.
fn revalidate(b: &mut DpBridge, pipeline: &Pipeline) {
    if b.cache_version == pipeline.version {
        return;
    }
    b.emc.clear();
    b.cache_version = pipeline.version;
    if b.megaflows.len() > REVALIDATE_MAX {
        b.megaflows.clear();
        note_cache_size(b);
        return;
    }
    b.megaflows.revalidate(|mask, old| {
        let table = old.origin.recirc_id.saturating_sub(1) as u8;
        let (mut fresh, wc) = Xlate::new(pipeline, &old.origin, None).run(table);
        let covered = wc
            .words()
            .iter()
            .zip(mask.words())
            .all(|(w, m)| w & !m == 0);
        // Metadata writes produce no actions but ride into a recirculation: compare them too.
        let same_meta = fresh.recirc_written == old.recirc_written
            && fresh.recirc_meta.masked(&fresh.recirc_written)
                == old.recirc_meta.masked(&old.recirc_written);
        (covered && same_meta && fresh.actions == old.actions).then(|| {
            fresh.stats.carry_over(&old.stats);
            // The megaflow keeps its mask: the fresh walk read no more than it (`covered`).
            fresh.pinned = super::cache::Pinned::new(&old.origin, mask);
            Arc::new(fresh)
        })
    });
    note_cache_size(b);
}

/// Publishes the megaflow cache's size for readers on other threads (metrics).
fn note_cache_size(b: &DpBridge) {
    use std::sync::atomic::Ordering::Relaxed;
    b.stats.megaflows.store(b.megaflows.len() as u64, Relaxed);
    b.stats
        .megaflow_masks
        .store(b.megaflows.n_masks() as u64, Relaxed);
}

/// The cached flow the previous packet of a batch used, and its key. A run of packets of one
/// flow (a burst of one connection) is classified by one compare of the key with the last
/// one's, without hashing it and probing the EMC, and takes a reference to the flow once, not
/// one clone and one drop (two atomic writes) per packet. Valid within one batch: the caches
/// change their answer for a key only when the pipeline changes, between batches.
#[derive(Default)]
struct LastFlow {
    key: FlowKey,
    hash: u64,
    flow: Option<Arc<CachedFlow>>,
    /// The EMC gave `flow` (else the megaflow cache or a translation did, and the next packet
    /// of the run asks the EMC again: it may have entered it since, and the megaflow hit
    /// counters and its draw into the EMC stay as they were per packet).
    from_emc: bool,
}

impl LastFlow {
    /// Whether `key` is the last packet's: all words compared without an early exit (a few
    /// vector instructions for the ~270 bytes, and keys of a run are equal).
    #[inline]
    fn same(&self, key: &FlowKey) -> bool {
        self.flow.is_some()
            && self
                .key
                .words()
                .iter()
                .zip(key.words())
                .fold(0, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn run_packet(ctx: &mut Ctx, pkt: &mut PacketBuf, key: FlowKey, recirc: usize) {
    run_packet_held(ctx, pkt, key, recirc, &mut LastFlow::default());
}

/// [`run_packet`], with `held` the flow the previous packet used (kept when this one's is the
/// same, replaced otherwise).
fn run_packet_held(
    ctx: &mut Ctx,
    pkt: &mut PacketBuf,
    mut key: FlowKey,
    recirc: usize,
    held: &mut LastFlow,
) {
    // Offloaded checksums (csum_not_ready) and GSO super-frames travel through the pipeline as
    // they are: rewrites keep the partial sum right, and each output port finishes whatever its
    // back end cannot (ports.rs `queue`).
    let mut parsed = encap::extract(pkt.data(), &mut key);
    // A frame with a cut-short or inconsistent header goes on, as in Open vSwitch, matched on
    // the layers before the fault (the key holds nothing of the faulty layer, and rewrites of
    // it leave the frame alone); conntrack marks it +inv. Only a frame without a whole
    // Ethernet header is dropped.
    if parsed.error == Some(encap::ParseError::Runt) {
        ctx.bridge.drops.add(DropReason::Runt, 1);
        return;
    }
    lookup_held(ctx, &key, held);
    let Some(flow) = held.flow.as_ref() else {
        return;
    };
    ctx.hit_bytes = pkt.len() as u64;
    ctx.scratch.hits.add(flow, ctx.hit_bytes, ctx.now_ns);
    execute(ctx, pkt, &mut key, &mut parsed, flow, recirc);
}

/// The cached flow for `key` into `held`: the last packet's key again costs a compare and
/// counts as an EMC hit; an EMC hit on the flow `held` already has costs no reference count
/// write.
fn lookup_held(ctx: &mut Ctx, key: &FlowKey, held: &mut LastFlow) {
    if ctx.uncached {
        held.flow = Some(lookup(ctx, key));
        return;
    }
    let h = if held.same(key) {
        if held.from_emc {
            ctx.scratch.cache[0] += 1;
            return;
        }
        held.hash
    } else {
        let h = hash_key(key);
        held.key = *key;
        held.hash = h;
        h
    };
    if let Some(f) = ctx.bridge.emc.get(key, h) {
        ctx.scratch.cache[0] += 1;
        if !held.flow.as_ref().is_some_and(|x| Arc::ptr_eq(x, f)) {
            held.flow = Some(f.clone());
        }
        held.from_emc = true;
    } else {
        held.flow = Some(lookup_below_emc(ctx, key, h));
        held.from_emc = false;
    }
}

fn lookup(ctx: &mut Ctx, key: &FlowKey) -> Arc<CachedFlow> {
    if ctx.uncached {
        let table = key.recirc_id.saturating_sub(1) as u8;
        return Arc::new(Xlate::new(ctx.pipeline, key, None).run(table).0);
    }
    let b = &mut *ctx.bridge;
    let h = hash_key(key);
    if let Some(f) = b.emc.get(key, h) {
        ctx.scratch.cache[0] += 1;
        return f.clone();
    }
    lookup_below_emc(ctx, key, h)
}

/// The megaflow cache, then translation, for a key the EMC does not hold (`h`: its hash).
fn lookup_below_emc(ctx: &mut Ctx, key: &FlowKey, h: u64) -> Arc<CachedFlow> {
    let b = &mut *ctx.bridge;
    if let Some(f) = b.megaflows.lookup(key, ctx.now_ns) {
        ctx.scratch.cache[1] += 1;
        b.emc.insert_sometimes(key, h, &f);
        return f;
    }
    ctx.scratch.cache[2] += 1;
    let table = key.recirc_id.saturating_sub(1) as u8;
    let (flow, wc) = Xlate::new(ctx.pipeline, key, None).run(table);
    let flow = Arc::new(flow);
    b.megaflows.insert(key, &wc, flow.clone(), ctx.now_ns);
    b.emc.insert(key, h, flow.clone());
    note_cache_size(b);
    flow
}

/// Runs a flow's actions on a packet that nothing reads afterwards (its last output may take
/// the buffer instead of a copy, see [`output_owned`]).
fn execute(
    ctx: &mut Ctx,
    pkt: &mut PacketBuf,
    key: &mut FlowKey,
    parsed: &mut encap::Parsed,
    flow: &CachedFlow,
    recirc: usize,
) {
    execute_list(ctx, pkt, key, parsed, flow, &flow.actions, recirc, true);
}

/// `last`: nothing reads the packet after this list (the caller returns right after it).
#[allow(clippy::too_many_arguments)]
fn execute_list(
    ctx: &mut Ctx,
    pkt: &mut PacketBuf,
    key: &mut FlowKey,
    parsed: &mut encap::Parsed,
    flow: &CachedFlow,
    actions: &[DpAction],
    recirc: usize,
    last: bool,
) {
    for (i, action) in actions.iter().enumerate() {
        // This action is the packet's last use: an output may take its buffer.
        let tail = last && i + 1 == actions.len();
        match action {
            DpAction::Output(dp_id) if tail => output_owned(ctx, *dp_id as usize, pkt),
            DpAction::Output(dp_id) => output(ctx, *dp_id as usize, pkt),
            DpAction::Tunnel { port, dst, vni, .. } => {
                tunnel(ctx, *port as usize, pkt, parsed, (*dst, *vni), tail)
            }
            DpAction::OutputTrunc(t) => output_trunc(ctx, pkt, parsed, t),
            // The in_port and tunnel fields the walk wrote (not in the packet's key).
            DpAction::Normal(m) if m.is_empty() => normal::run(ctx, pkt, key, parsed, tail),
            DpAction::Normal(m) => normal::run(ctx, pkt, &m.apply(key), parsed, tail),
            DpAction::Flood { meta, .. } if meta.is_empty() => flood(ctx, pkt, key, parsed),
            DpAction::Flood { meta, .. } => flood(ctx, pkt, &meta.apply(key), parsed),
            // Only new connections reach a select group: one clock read and one store each.
            DpAction::AffinityTouch(t) => t.touch(conntrack::lb::affinity::clock_ns()),
            DpAction::SetEthSrc(mac) => {
                if let Some(d) = pkt.data_mut().get_mut(6..12) {
                    d.copy_from_slice(mac);
                }
                key.eth_src = *mac;
            }
            DpAction::SetEthDst(mac) => {
                if let Some(d) = pkt.data_mut().get_mut(0..6) {
                    d.copy_from_slice(mac);
                }
                key.eth_dst = *mac;
            }
            DpAction::SetIpv4Src(ip) => {
                let mode = csum_mode(pkt, parsed);
                let _ = encap::rewrite::set_ipv4_src(pkt.data_mut(), parsed, *ip, mode);
                key.nw_src = u32::from(*ip);
            }
            DpAction::SetIpv4Dst(ip) => {
                let mode = csum_mode(pkt, parsed);
                let _ = encap::rewrite::set_ipv4_dst(pkt.data_mut(), parsed, *ip, mode);
                key.nw_dst = u32::from(*ip);
            }
            DpAction::SetIpv6Src(a) => {
                let mode = csum_mode(pkt, parsed);
                let _ = encap::rewrite::set_ipv6_addr(pkt.data_mut(), parsed, true, *a, mode);
                key.ipv6_src = *a;
            }
            DpAction::SetIpv6Dst(a) => {
                let mode = csum_mode(pkt, parsed);
                let _ = encap::rewrite::set_ipv6_addr(pkt.data_mut(), parsed, false, *a, mode);
                key.ipv6_dst = *a;
            }
            DpAction::SetIpv6Label(l) => {
                let _ = encap::rewrite::set_ipv6_label(pkt.data_mut(), parsed, *l);
                key.ipv6_label = *l;
            }
            DpAction::SetTpSrc(p) => {
                let mode = csum_mode(pkt, parsed);
                let _ = encap::rewrite::set_l4_src_port(pkt.data_mut(), parsed, *p, mode);
                key.tp_src = *p;
            }
            DpAction::SetTpDst(p) => {
                let mode = csum_mode(pkt, parsed);
                let _ = encap::rewrite::set_l4_dst_port(pkt.data_mut(), parsed, *p, mode);
                key.tp_dst = *p;
            }
            DpAction::SetIpTos(tos) => {
                let _ = if parsed.l3_kind == encap::L3Kind::Ipv6 {
                    encap::rewrite::set_ipv6_tclass(pkt.data_mut(), parsed, *tos)
                } else {
                    encap::rewrite::set_ipv4_tos(pkt.data_mut(), parsed, *tos)
                };
                key.nw_tos = *tos;
            }
            DpAction::SetIpTtl(ttl) => {
                let _ = if parsed.l3_kind == encap::L3Kind::Ipv6 {
                    encap::rewrite::set_ipv6_hlim(pkt.data_mut(), parsed, *ttl)
                } else {
                    encap::rewrite::set_ipv4_ttl(pkt.data_mut(), parsed, *ttl)
                };
                key.nw_ttl = *ttl;
            }
            DpAction::PushVlan { tpid, tci } => {
                // A frame with two tags already (all the parser reads, and all the flow key
                // holds) would get a third that hides its IP header from every later action
                // (rewrites silently fail, dec_ttl drops it as expired): refused, as the install
                // check refuses a push onto a match with two tags. Decided here, per packet, on
                // the frame's own tags (the key knows only the outer one): nothing cached
                // depends on it.
                if parsed.vlans >= 2 || pkt.insert_vlan_tag(*tpid, *tci).is_err() {
                    ctx.bridge.drops.add(DropReason::VlanMismatch, 1);
                    return;
                }
                shift_offload_offsets(pkt, 4);
                *parsed = reparse(pkt, key);
                key.vlan_tci = *tci | encap::flowkey::VLAN_PRESENT;
            }
            DpAction::PopVlan => {
                if !pop_vlan(pkt) {
                    ctx.bridge.drops.add(DropReason::VlanMismatch, 1);
                    return;
                }
                shift_offload_offsets(pkt, -4);
                *parsed = reparse(pkt, key);
                key.vlan_tci = 0;
            }
            DpAction::SetVlanTci(tci) => {
                let d = pkt.data_mut();
                if d.len() >= 16 && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8) {
                    d[14..16].copy_from_slice(&tci.to_be_bytes());
                    key.vlan_tci = *tci | encap::flowkey::VLAN_PRESENT;
                }
            }
            DpAction::DecTtl => {
                if encap::rewrite::dec_ttl(pkt.data_mut(), parsed).is_err() {
                    ctx.bridge.drops.add(DropReason::TtlExpired, 1);
                    return;
                }
                key.nw_ttl = key.nw_ttl.saturating_sub(1);
            }
            DpAction::SetArpOp(op) => {
                let _ = encap::rewrite::set_arp(pkt.data_mut(), parsed, ArpField::Operation(*op));
                key.arp_op = *op;
            }
            DpAction::SetArpSha(mac) => {
                let _ = encap::rewrite::set_arp(pkt.data_mut(), parsed, ArpField::SenderMac(*mac));
                key.arp_sha = *mac;
            }
            DpAction::SetArpSpa(ip) => {
                let _ = encap::rewrite::set_arp(pkt.data_mut(), parsed, ArpField::SenderIp(*ip));
                key.arp_spa = u32::from(*ip);
            }
            DpAction::SetArpTha(mac) => {
                let _ = encap::rewrite::set_arp(pkt.data_mut(), parsed, ArpField::TargetMac(*mac));
                key.arp_tha = *mac;
            }
            DpAction::SetArpTpa(ip) => {
                let _ = encap::rewrite::set_arp(pkt.data_mut(), parsed, ArpField::TargetIp(*ip));
                key.arp_tpa = u32::from(*ip);
            }
            DpAction::SetIcmpType(t) => {
                set_icmp_type_code(pkt, parsed, Some(*t), None);
                key.icmp_type = *t;
            }
            DpAction::SetNdTarget(t) => {
                let _ = encap::rewrite::set_nd_target(pkt.data_mut(), parsed, *t);
                key.nd_target = *t;
            }
            DpAction::SetNdSll(mac) => {
                let _ = encap::rewrite::set_nd_lla(pkt.data_mut(), parsed, false, *mac);
                key.arp_sha = *mac;
            }
            DpAction::SetNdTll(mac) => {
                let _ = encap::rewrite::set_nd_lla(pkt.data_mut(), parsed, true, *mac);
                key.arp_tha = *mac;
            }
            DpAction::SetIcmpCode(c) => {
                set_icmp_type_code(pkt, parsed, None, Some(*c));
                key.icmp_code = *c;
            }
            DpAction::Ct(ct) => {
                // A second `ct` in the same zone sees the packet after the first one's NAT and
                // ALG fix: the fix (sequence shift) must not be applied twice.
                let first_pass = !matches!(ctx.ct_first, Some((zone, _)) if zone == ct.zone);
                let lookup_key = match ctx.ct_first {
                    Some((zone, first)) if zone == ct.zone => first,
                    _ => {
                        ctx.ct_first = Some((ct.zone, *key));
                        *key
                    }
                };
                let now_ns = ctx.now_ns;
                let mut resized = false;
                let next = match super::ct::run(
                    ctx.ct,
                    &mut ctx.ct_cur,
                    now_ns,
                    pkt,
                    &lookup_key,
                    key,
                    parsed,
                    ct,
                    first_pass,
                    &mut resized,
                ) {
                    Ok(Some(next)) => next,
                    Ok(None) => return,
                    Err(reason) => {
                        ctx.bridge.drops.add(reason, 1);
                        return;
                    }
                };
                if resized {
                    // An FTP ALG rewrote the payload: the IP end moved.
                    *parsed = reparse(pkt, &next);
                }
                if let Some(table) = ct.recirc_table {
                    if recirc >= MAX_RECIRC {
                        ctx.bridge.drops.add(DropReason::LoopDetected, 1);
                        return;
                    }
                    // Carry the walk's metadata writes (registers, tunnel fields) into the new
                    // pass; the metadata it did not write stays the packet's own.
                    let mut k = next;
                    let written = &flow.recirc_written.words()[..META_WORDS];
                    let walk = &flow.recirc_meta.words()[..META_WORDS];
                    for ((w, m), bits) in k.words_mut().iter_mut().zip(walk).zip(written) {
                        *w = (*w & !bits) | (m & bits);
                    }
                    k.recirc_id = table as u32 + 1;
                    k.ct_state = next.ct_state;
                    k.ct_zone = next.ct_zone;
                    k.ct_mark = next.ct_mark;
                    run_packet_recirc(ctx, pkt, k, recirc + 1, last);
                    return;
                }
                *key = next;
            }
            DpAction::Controller(pi) => {
                let sent = ctx.packet_in.as_ref().is_some_and(|sink| {
                    // A copy per packet-in: the controller path is a slow path by nature, and
                    // a full queue drops (counted) rather than stalling the datapath.
                    sink.try_send(pi.event(ctx.bridge_index, pkt.data()))
                        .is_ok()
                });
                if !sent {
                    ctx.bridge.drops.add(DropReason::ControllerNone, 1);
                }
            }
            DpAction::Learn(req) => {
                // An atomic check per packet; a send (no allocation: the channel is a bounded
                // array) when first used and then once per refresh interval.
                if req.claim(ctx.now_ns) {
                    let ev = super::LearnEvent::Learn {
                        bridge: ctx.bridge_index,
                        req: req.clone(),
                    };
                    if !send_learn_event(ctx, ev) {
                        req.unclaim();
                    }
                }
            }
            DpAction::FinTimeout(req) => {
                const TCP_FIN: u16 = 0x01;
                const TCP_RST: u16 = 0x04;
                if key.nw_proto == 6
                    && key.tcp_flags & (TCP_FIN | TCP_RST) != 0
                    && req.claim(ctx.now_ns)
                {
                    let ev = super::LearnEvent::FinTimeout {
                        bridge: ctx.bridge_index,
                        req: req.clone(),
                    };
                    if !send_learn_event(ctx, ev) {
                        req.unclaim();
                    }
                }
            }
            DpAction::Sample {
                probability,
                collector_set_id,
            } => {
                if ctx.scratch.samples.sampled(*probability) {
                    ctx.scratch
                        .samples
                        .count(*collector_set_id, &ctx.bridge.samples);
                }
            }
            DpAction::Drop(reason) => {
                ctx.bridge.drops.add(*reason, 1);
                return;
            }
            DpAction::Meter(m) => {
                if !m.meter.admit(ctx.now_ns, pkt.len()) {
                    ctx.bridge.drops.add(DropReason::MeterDrop, 1);
                    return;
                }
            }
            DpAction::Select(sel) => {
                let (branch, counters) = sel.branch(key);
                let (bytes, now_ns) = (ctx.hit_bytes, ctx.now_ns);
                ctx.scratch.hits.add_branch(counters, bytes, now_ns);
                execute_list(ctx, pkt, key, parsed, flow, branch, recirc, last);
                return;
            }
            DpAction::CheckPktLen(c) => {
                let len = checked_len(pkt, parsed);
                let (branch, rules) = c.branch(len);
                let (bytes, now_ns) = (ctx.hit_bytes, ctx.now_ns);
                ctx.scratch.hits.add_branch(rules, bytes, now_ns);
                execute_list(ctx, pkt, key, parsed, flow, branch, recirc, tail);
            }
            DpAction::Clone(inner) => {
                // Buffers are kept for reuse: no allocation once every nesting level has one
                // (big enough for a super-frame once one came by).
                let mut copy = buf_with_room(ctx.scratch.clones.pop(), pkt.len());
                if copy.set_frame(pkt.data()).is_ok() {
                    copy.meta = pkt.meta;
                    let (mut k, mut p) = (*key, *parsed);
                    let saved_first = ctx.ct_first;
                    execute_list(ctx, &mut copy, &mut k, &mut p, flow, inner, recirc, false);
                    ctx.ct_first = saved_first;
                } else {
                    ctx.bridge.drops.add(DropReason::TooBig, 1);
                }
                ctx.scratch.clones.push(copy);
            }
        }
    }
}

/// The length `check_pkt_larger` compares, as Open vSwitch's datapath measures it: the
/// frame's length without the Ethernet padding after the IP packet; for a GSO super-frame, the
/// length of the segments it stands for (its headers and one segment's payload, as the
/// kernel's `skb_gso_validate_mac_len`), not the whole super-frame's.
fn checked_len(pkt: &PacketBuf, parsed: &encap::Parsed) -> usize {
    let len = parsed.l3_end().unwrap_or(pkt.len()).min(pkt.len());
    match pkt.meta.gso {
        Some(g) => {
            let headers = parsed.payload_offset().unwrap_or(usize::from(g.hdr_len));
            len.min(headers + usize::from(g.size))
        }
        None => len,
    }
}

/// Queues a `learn`/`fin_timeout` request for the control side. A full queue loses the
/// request (counted as `learn_queue_full`; the packet goes on, and a later packet of the
/// megaflow asks again).
fn send_learn_event(ctx: &mut Ctx, ev: super::LearnEvent) -> bool {
    let Some(tx) = ctx.learn else {
        return false;
    };
    let sent = tx.try_send(ev).is_ok();
    if !sent {
        ctx.bridge.drops.add(DropReason::LearnQueueFull, 1);
    }
    sent
}

/// Re-classifies a packet after conntrack: the key's packet fields are re-read (NAT may have
/// rewritten them), its metadata comes from the walk that sent it to conntrack.
/// `last`: nothing reads the packet after this pass (see [`execute_list`]).
fn run_packet_recirc(ctx: &mut Ctx, pkt: &mut PacketBuf, key: FlowKey, recirc: usize, last: bool) {
    let mut fresh = key;
    let mut parsed = encap::extract(pkt.data(), &mut fresh);
    let flow = lookup(ctx, &fresh);
    let outer_hit_bytes = std::mem::replace(&mut ctx.hit_bytes, pkt.len() as u64);
    ctx.scratch.hits.add(&flow, ctx.hit_bytes, ctx.now_ns);
    let actions = &flow.actions;
    execute_list(
        ctx,
        pkt,
        &mut fresh,
        &mut parsed,
        &flow,
        actions,
        recirc,
        last,
    );
    ctx.hit_bytes = outer_hit_bytes;
}

/// `icmp_type`/`icmp_code` (ICMP) or `icmpv6_type`/`icmpv6_code` (ICMPv6), by the packet's
/// family; the checksum follows. A packet that is neither is left alone.
fn set_icmp_type_code(
    pkt: &mut PacketBuf,
    parsed: &encap::Parsed,
    msg_type: Option<u8>,
    code: Option<u8>,
) {
    let _ = if parsed.l3_kind == encap::L3Kind::Ipv6 {
        encap::rewrite::set_icmpv6_type_code(pkt.data_mut(), parsed, msg_type, code)
    } else {
        encap::rewrite::set_icmpv4_type_code(pkt.data_mut(), parsed, msg_type, code)
    };
}

/// Offsets after a VLAN push/pop moved the L3 header (the key itself stays as the walk left it).
fn reparse(pkt: &PacketBuf, key: &FlowKey) -> encap::Parsed {
    let mut scratch = *key;
    encap::extract(pkt.data(), &mut scratch)
}

/// How rewrites must treat the checksum field of the packet's L4 header (`parsed`'s):
/// `Partial` only when the checksum the sender left unfinished (`csum_not_ready`) is that
/// header's, i.e. starts where it does. A pod's own tunnel traffic (VXLAN: the outer UDP
/// checksum 0 or complete, the inner TCP's left partial) has it further in: the outer one is
/// then complete and updated as such (a UDP checksum of 0 stays 0). A port that gave no
/// position (AF_PACKET without virtio-net headers) means the packet's own L4 header.
pub(super) fn csum_mode(pkt: &PacketBuf, parsed: &encap::Parsed) -> L4Checksum {
    let ours = pkt
        .meta
        .csum_start
        .is_none_or(|start| parsed.l4_offset() == Some(usize::from(start)));
    if pkt.meta.csum_not_ready && ours {
        L4Checksum::Partial
    } else {
        L4Checksum::Complete
    }
}

/// Keeps the offload offsets pointing at the same bytes after the frame grew or shrank in front.
fn shift_offload_offsets(pkt: &mut PacketBuf, by: i32) {
    if let Some(start) = pkt.meta.csum_start {
        pkt.meta.csum_start = Some((start as i32 + by).max(0) as u16);
    }
    if let Some(g) = pkt.meta.gso.as_mut() {
        g.hdr_len = (g.hdr_len as i32 + by).max(0) as u16;
    }
}

fn pop_vlan(pkt: &mut PacketBuf) -> bool {
    let d = pkt.data_mut();
    if d.len() < 18 || !matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8) {
        return false;
    }
    d.copy_within(0..12, 4);
    pkt.pull_front(4).is_ok()
}

/// Queues a copy of the packet on a port's tx batch (flushing it first when full).
fn output(ctx: &mut Ctx, dp_id: usize, pkt: &PacketBuf) {
    let Some(Some(port)) = ctx.ports.get_mut(dp_id) else {
        ctx.bridge.drops.add(DropReason::PortDown, 1);
        return;
    };
    if let Err(reason) = port.queue(pkt.data(), &pkt.meta) {
        ctx.bridge.drops.add(reason, 1);
        PortCounters::add(&port.counters.tx(port.thread).dropped, 1);
    }
}

/// [`output`] as the packet's last use: the port may take the buffer itself instead of a copy
/// (`DpPort::queue_owned`), after which `pkt` is an empty buffer.
fn output_owned(ctx: &mut Ctx, dp_id: usize, pkt: &mut PacketBuf) {
    let Some(Some(port)) = ctx.ports.get_mut(dp_id) else {
        ctx.bridge.drops.add(DropReason::PortDown, 1);
        return;
    };
    if let Err(reason) = port.queue_owned(pkt) {
        ctx.bridge.drops.add(reason, 1);
        PortCounters::add(&port.counters.tx(port.thread).dropped, 1);
    }
}

/// `output(port=P,max_len=N)`: a packet longer than `max_len` leaves as a plain frame of its
/// first `max_len` bytes, without the offload work the whole one carried (a cut super-frame
/// or partial checksum means nothing; Open vSwitch does not fix a cut packet's checksums
/// either); a shorter one as an output would send it.
fn output_trunc(
    ctx: &mut Ctx,
    pkt: &mut PacketBuf,
    parsed: &encap::Parsed,
    t: &super::actions::TruncOutput,
) {
    let dp_id = t.port as usize;
    if pkt.len() <= t.max_len as usize {
        match t.tunnel {
            Some(target) => tunnel(ctx, dp_id, pkt, parsed, target, false),
            None => output(ctx, dp_id, pkt),
        }
        return;
    }
    let Some(Some(port)) = ctx.ports.get_mut(dp_id) else {
        ctx.bridge.drops.add(DropReason::PortDown, 1);
        return;
    };
    let cut = &pkt.data()[..t.max_len as usize];
    let meta = tap_io::RxMeta {
        gso: None,
        csum_not_ready: false,
        csum_valid: false,
        csum_start: None,
        csum_offset: None,
        ..pkt.meta
    };
    let queued = match t.tunnel {
        Some((dst, vni)) => port.queue_tunnel(cut, &meta, dst, vni),
        None => port.queue(cut, &meta),
    };
    if let Err(reason) = queued {
        ctx.bridge.drops.add(reason, 1);
        PortCounters::add(&port.counters.tx(port.thread).dropped, 1);
    }
}

/// `last`: the packet's last use (a super-frame leaving whole may take its buffer).
fn tunnel(
    ctx: &mut Ctx,
    dp_id: usize,
    pkt: &mut PacketBuf,
    parsed: &encap::Parsed,
    (dst, vni): (Ipv4Addr, u32),
    last: bool,
) {
    let Some(Some(port)) = ctx.ports.get_mut(dp_id) else {
        ctx.bridge.drops.add(DropReason::PortDown, 1);
        return;
    };
    let queued = if last {
        port.queue_tunnel_owned(pkt, dst, vni)
    } else {
        port.queue_tunnel(pkt.data(), &pkt.meta, dst, vni)
    };
    match queued {
        Ok(()) => {}
        Err(DropReason::TunnelTooBig) => {
            ctx.bridge.drops.add(DropReason::TunnelTooBig, 1);
            PortCounters::add(&port.counters.tx(port.thread).dropped, 1);
            // What this frame's network-layer packet may carry: the inner MTU, less 4 bytes
            // for a second VLAN tag (one tag has its allowance).
            let mtu = parsed.l3_offset().map_or(port.tunnel_inner_mtu(), |l3| {
                port.tunnel_max_frame(pkt.data()).saturating_sub(l3)
            });
            // Tell the sender, as a router on the path would (IPv4 with DF; IPv6 always, as
            // Linux's vxlan does: IPv6 is never fragmented on the way).
            let icmp = &mut ctx.scratch.icmp;
            let told = super::icmp::frag_needed(pkt.data(), parsed, mtu as u16, icmp)
                || super::icmp::packet_too_big(pkt.data(), parsed, mtu as u32, icmp);
            // A flood of oversized frames gets a bounded number of replies; the rest are only
            // counted (the batch's clock: no clock read per packet).
            if told && !ctx.scratch.icmp_limit.allow(ctx.now_ns) {
                ctx.bridge.drops.add(DropReason::IcmpRateLimited, 1);
            } else if told {
                if let Some(came) = ctx.normal_came {
                    normal::tag_reply(icmp, came);
                }
                let in_dp = ctx.in_dp;
                if let Some(Some(inp)) = ctx.ports.get_mut(in_dp) {
                    let _ = inp.queue(icmp, &tap_io::RxMeta::default());
                }
            }
        }
        Err(reason) => {
            ctx.bridge.drops.add(reason, 1);
            PortCounters::add(&port.counters.tx(port.thread).dropped, 1);
        }
    }
}

/// `parsed` describes `pkt`: a tunnel output needs it to answer an oversized DF packet.
/// `last`: the packet's last use ([`output_owned`]). False when nothing was sent because the
/// port is a flow-based tunnel and the packet has no `tun_dst` (a flood passes such ports by;
/// a unicast counts it).
fn output_port(
    ctx: &mut Ctx,
    info: &crate::pipeline::PortInfo,
    pkt: &mut PacketBuf,
    key: &FlowKey,
    parsed: &encap::Parsed,
    last: bool,
) -> bool {
    let dp_id = info.dp_id as usize;
    if info.kind.is_tunnel() {
        let Some(target) = tunnel_target(info, key) else {
            return false;
        };
        tunnel(ctx, dp_id, pkt, parsed, target, last);
    } else if last {
        output_owned(ctx, dp_id, pkt);
    } else {
        output(ctx, dp_id, pkt);
    }
    true
}

fn tunnel_target(info: &crate::pipeline::PortInfo, key: &FlowKey) -> Option<(Ipv4Addr, u32)> {
    use crate::pipeline::FromFlow;
    let dst = match info.remote_ip? {
        FromFlow::Fixed(std::net::IpAddr::V4(ip)) => ip,
        FromFlow::Flow if key.tun_dst != 0 => Ipv4Addr::from(key.tun_dst),
        _ => return None,
    };
    let vni = match info.key {
        Some(FromFlow::Fixed(k)) => k,
        _ => key.tun_id as u32 & 0xff_ffff,
    };
    Some((dst, vni))
}

/// FLOOD and ALL: every port of the bridge but `key.in_port`, tunnels included, the frame as
/// it is, as Open vSwitch floods; ports set down or no-forward (`mod-port`) are passed by
/// without counting a drop. (NORMAL floods in `normal.rs`.)
fn flood(ctx: &mut Ctx, pkt: &mut PacketBuf, key: &FlowKey, parsed: &encap::Parsed) {
    let pipeline = ctx.pipeline;
    for ofport in &pipeline.port_order {
        match pipeline.ports.get(ofport) {
            Some(info) if *ofport != key.in_port && may_send(ctx, info) => {
                output_port(ctx, info, pkt, key, parsed, false);
            }
            _ => {}
        }
    }
}

/// Whether a flood may send to the port: not when it is down or no-forward, nor to a tunnel
/// port still waiting for its underlay (not live: nothing to count; an explicit output still
/// counts it).
fn may_send(ctx: &Ctx, info: &crate::pipeline::PortInfo) -> bool {
    if info.kind.is_tunnel() && !info.live {
        return false;
    }
    !matches!(ctx.ports.get(info.dp_id as usize), Some(Some(port)) if port.may_send().is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More branch counters in play than the window holds: the first ones are summed, the
    /// rest added to at once, and after the flush every counter has every packet it took.
    #[test]
    fn branch_counts_are_exact_past_the_window() {
        let counters: Vec<Arc<FlowStats>> = (0..BRANCH_HITS + 8).map(|_| Arc::default()).collect();
        let mut hits = FlowHits::default();
        let mut want = vec![0u64; counters.len()];
        for p in 0..1000usize {
            // A group counter on every packet, then a bucket's, as a select branch has.
            let bucket = 1 + (p * 7) % (counters.len() - 1);
            hits.add_branch(&[counters[0].clone(), counters[bucket].clone()], 60, 1);
            want[0] += 1;
            want[bucket] += 1;
        }
        assert_eq!(hits.branches.len(), BRANCH_HITS, "the window filled");
        hits.flush(2);
        assert!(hits.branches.is_empty());
        for (i, c) in counters.iter().enumerate() {
            assert_eq!(c.counts(), (want[i], want[i] * 60), "counter {i}");
        }
    }
}
