//! The slow path: walk the OpenFlow tables for one packet key and compile the walk into
//! datapath actions, recording every key bit consulted (un-wildcarding) so the result can be
//! cached as a megaflow that is correct for every packet agreeing on those bits.
//!
//! Semantics follow Open vSwitch where OpenFlow is silent: output to the input port by number
//! is skipped (use `IN_PORT`), a table miss drops, `resubmit`, `goto_table` and groups nest up
//! to [`MAX_DEPTH`] (and run `MAX_RESUBMITS` times in all), `ct(table=T)` ends the current
//! walk and the packet continues in table T after conntrack (recirculation), select groups
//! pick a live bucket by a hash of the 5-tuple.
//!
//! Un-wildcarding follows Open vSwitch: a megaflow pins only what a classifier lookup, a
//! field prerequisite or an action really read. `in_port` and the recirculation id are always
//! exact; registers, metadata and tunnel fields only when read. Conntrack and NAT run in the
//! datapath on the packet itself, so `ct` reads nothing of the key; the first select group of a
//! walk is resolved by the datapath from a hash it takes per packet ([`SelectAction`]: the slow
//! path translates every bucket), so a Service's megaflows do not pin the 5-tuple either.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use encap::FlowKey;
use flowtable::action::{Action, CtZone, Instructions, Nat, NatKind, SubField};
use flowtable::fields::FieldId;
use flowtable::{GroupType, OfPort};

use super::MAX_DEPTH;
use super::actions::{
    CheckPktLen, CtAction, DpAction, MeterAction, SelectAction, TruncOutput, TunnelProto, WalkMeta,
};
use super::cache::{EmcValue, Pinned};
use super::drops::DropReason;
use crate::pipeline::FromFlow;
use crate::pipeline::{
    FlowStats, GroupEntry, MAX_LIVENESS_BUCKETS, Pipeline, RuleRef, TableCounts,
};
use conntrack::{NatRange, NatSpec, PortSelect, tuple::Addr};

/// A 16-bit (OpenFlow 1.0) port number as a port: 0xff00.. are the reserved ports.
fn port16(p: u16) -> OfPort {
    if p >= 0xff00 {
        OfPort(u32::from(p) | 0xffff_0000)
    } else {
        OfPort(u32::from(p))
    }
}

/// The compiled result of one slow-path walk, shared by the EMC and the megaflow cache.
#[derive(Debug)]
pub struct CachedFlow {
    pub actions: Vec<DpAction>,
    /// Counters of every rule, group, group bucket and table lookup the walk went through (a
    /// select group resolved in the datapath and what follows it are counted by the branch a
    /// packet takes, see [`SelectAction`]).
    pub rules: Vec<Arc<FlowStats>>,
    /// The working key at a `ct(table=..)` (registers, metadata, tunnel fields to carry over).
    pub recirc_meta: FlowKey,
    /// The metadata bits the walk wrote before that `ct`: the next pass takes these bits from
    /// `recirc_meta` and every other metadata bit from the packet's own key (the megaflow does
    /// not pin metadata the walk never read, so the packet's values must ride along).
    pub recirc_written: FlowKey,
    /// The key the walk started from, so a pipeline change can re-run it (revalidation).
    pub origin: FlowKey,
    /// Packets that used this entry (cache hits and the miss that made it), added once per
    /// batch; for `dump-megaflows`.
    pub stats: FlowStats,
    /// The words the walk's megaflow pins, with `origin`'s values: the keys this flow is
    /// right for (the EMC checks a key against these instead of keeping a copy of it).
    pub pinned: Pinned,
}

impl EmcValue for CachedFlow {
    #[inline]
    fn covers(&self, key: &FlowKey) -> bool {
        self.pinned.covers(key)
    }
}

/// Values one walk's stack holds at most (`push:` beyond it pushes nothing; a table that
/// pushes in a loop is bounded by the resubmit limit anyway).
const MAX_STACK: usize = 1024;

/// Metadata words (in_port .. conj_id): not packet bytes; a recirculation carries them over.
pub const META_WORDS: usize = core::mem::offset_of!(encap::FlowKey, ct_mark) / 8;

/// Buckets of a select group up to which the datapath chooses the bucket (each is translated
/// once per megaflow); larger groups pin the 5-tuple and pick in the slow path.
const MAX_DP_SELECT_BUCKETS: usize = 256;

/// Table lookups and groups one walk may run in all (Open vSwitch's `MAX_RESUBMITS`):
/// [`MAX_DEPTH`] bounds how deep they nest, this how many there are (each level of `all`
/// groups whose two buckets name the same next group doubles the work).
const MAX_RESUBMITS: usize = MAX_DEPTH * MAX_DEPTH;

/// The first select group of a walk, resolved in the datapath once the walk is done.
struct Fork {
    /// Actions emitted before the group (common to every bucket).
    prefix: usize,
    /// Counters taken before the group (common to every bucket): the ones after are the
    /// group's, the chosen bucket's and its tail's, counted per branch in the datapath.
    counters_at: usize,
    group_id: u32,
    entry: Arc<GroupEntry>,
}

pub struct Xlate<'a> {
    pipeline: &'a Pipeline,
    key: FlowKey,
    wc: FlowKey,
    out: Vec<DpAction>,
    rules: Vec<Arc<FlowStats>>,
    depth: usize,
    /// Groups being translated, one inside the other: they count towards [`MAX_DEPTH`] with
    /// `depth` (kept apart so that a trace's indentation stays that of the tables).
    group_depth: usize,
    /// Table lookups and groups run so far (bounded by [`MAX_RESUBMITS`]).
    resubmits: usize,
    /// The walk was ended for nesting too deep or running too long.
    too_deep: bool,
    stopped: bool,
    recirc_meta: FlowKey,
    recirc_written: FlowKey,
    /// Metadata bits written so far.
    written: FlowKey,
    origin: FlowKey,
    start_table: u8,
    /// A select group was met (only the first is resolved in the datapath).
    select_seen: bool,
    /// A `ct` was emitted: later select groups hash the pre-NAT key, as the datapath cannot.
    ct_emitted: bool,
    /// Re-translation of one bucket of the first select group (set by [`Fork`] handling).
    forced_bucket: Option<usize>,
    fork: Option<Fork>,
    /// The bucket this key takes at the first select group (for `trace`).
    chosen: Option<usize>,
    /// The table and cookie of the rule being executed (for PACKET_IN).
    cur_table: u8,
    cur_cookie: u64,
    /// The rule being executed (`fin_timeout` changes its timeouts).
    cur_rule: Option<Arc<RuleRef>>,
    /// Why the packet goes nowhere if the walk ends without sending it: a table miss, an
    /// output to a missing port, a fast-failover group without a live bucket. None of these
    /// stops the walk (Open vSwitch goes on with the next action); the drop is counted only
    /// when nothing was sent.
    soft_drop: Option<DropReason>,
    /// Nesting depth of group buckets being translated: a select group inside a bucket is
    /// resolved here (its bucket pinned), not forked into the datapath.
    bucket_depth: usize,
    /// An `exit` ran: no further action or lookup of this walk (a group bucket's own exit
    /// ends only the bucket).
    exited: bool,
    /// A `dec_ttl` met a TTL of 0 or 1, or a `group:` a missing group: the rest of the action
    /// list being run is skipped (with the rule's instructions after it); its callers go on.
    ttl_expired: bool,
    /// The OpenFlow action set (`write_actions`), run when the walk ends (see
    /// [`super::action_set`]).
    action_set: Vec<Action>,
    /// The values `push:` put on the walk's stack (`pop:` takes them back), shared by the
    /// resubmits of one walk; a `clone` works on a copy.
    stack: Vec<u128>,
    trace: Option<&'a mut String>,
    /// A PACKET_OUT's one-rule pseudo-table (`Pipeline::packet_out`) until the walk's first
    /// lookup takes it in table 0's place.
    packet_out: Option<&'a crate::pipeline::TableClassifier>,
}

impl<'a> Xlate<'a> {
    pub fn new(pipeline: &'a Pipeline, key: &FlowKey, trace: Option<&'a mut String>) -> Self {
        let wc = FlowKey {
            in_port: u32::MAX,
            recirc_id: u32::MAX,
            ..FlowKey::default()
        };
        let written = FlowKey {
            in_port: u32::MAX,
            ..FlowKey::default()
        };
        Xlate {
            pipeline,
            key: *key,
            wc,
            out: Vec::new(),
            rules: Vec::new(),
            depth: 0,
            group_depth: 0,
            resubmits: 0,
            too_deep: false,
            stopped: false,
            recirc_meta: *key,
            recirc_written: written,
            written,
            origin: *key,
            start_table: 0,
            select_seen: false,
            ct_emitted: false,
            forced_bucket: None,
            fork: None,
            chosen: None,
            cur_table: 0,
            cur_cookie: 0,
            cur_rule: None,
            soft_drop: None,
            bucket_depth: 0,
            exited: false,
            ttl_expired: false,
            action_set: Vec::new(),
            stack: Vec::new(),
            trace,
            packet_out: None,
        }
    }

    /// Walks the pipeline from `table` and returns the compiled flow and its megaflow mask.
    pub fn run(self, table: u8) -> (CachedFlow, FlowKey) {
        let (flow, wc, _) = self.run_with_choice(table);
        (flow, wc)
    }

    /// [`run`](Self::run), plus the bucket this key takes at a select group resolved in the
    /// datapath (what `trace` narrates).
    pub fn run_with_choice(mut self, table: u8) -> (CachedFlow, FlowKey, Option<usize>) {
        self.start_table = table;
        // A packet-out's actions stand for table 0 at the start of its walk only (not in a
        // recirculation, which comes back with a recirc_id).
        let first = table == 0 && self.key.recirc_id == 0;
        self.packet_out = self.pipeline.packet_out.as_deref().filter(|_| first);
        self.run_table(table, None);
        self.run_action_set();
        if self.too_deep {
            // As Open vSwitch ("Datapath actions: drop"): a walk ended for looping sends the
            // packet nowhere, not even where it went before the limit.
            self.out.clear();
            self.out.push(DpAction::Drop(DropReason::LoopDetected));
        }
        let drop_reason = self.drop_reason();
        finish_actions(&mut self.out, drop_reason);
        if let Some(fork) = self.fork.take() {
            if self.too_deep {
                // Every bucket's walk would run to the limit again: this key's bucket decides.
                self.pin_5tuple();
            } else {
                self.resolve_fork(fork);
            }
        }
        (
            CachedFlow {
                actions: self.out,
                rules: self.rules,
                recirc_meta: self.recirc_meta,
                recirc_written: self.recirc_written,
                origin: self.origin,
                stats: FlowStats::default(),
                pinned: Pinned::new(&self.origin, &self.wc),
            },
            self.wc,
            self.chosen,
        )
    }

    /// Turns the walk's tail after the first select group into a [`SelectAction`]: every
    /// bucket is translated from the origin key, and the megaflow pins the union of what those
    /// walks read (not the 5-tuple the hash is taken over). Each branch keeps the counters of
    /// its tail (the group's and the bucket's, and those of the rules, groups and table lookups
    /// after them), which the datapath adds to when a packet takes it. When the buckets' walks differ before the group (actions,
    /// counters) or in the metadata carried into a recirculation, the group is picked here
    /// instead and the 5-tuple pinned.
    fn resolve_fork(&mut self, fork: Fork) {
        let n = fork.entry.group.buckets.len();
        let mut branches = Vec::with_capacity(n);
        let mut counted = Vec::with_capacity(n);
        let mut wc = self.wc;
        let common = fork.counters_at;
        for i in 0..n {
            let mut x = Xlate::new(self.pipeline, &self.origin, None);
            x.forced_bucket = Some(i);
            let (f, w) = x.run(self.start_table);
            let same = f.actions.len() >= fork.prefix
                && f.actions[..fork.prefix] == self.out[..fork.prefix]
                && f.rules.len() >= common
                && f.rules[..common]
                    .iter()
                    .zip(&self.rules[..common])
                    .all(|(a, b)| Arc::ptr_eq(a, b))
                && f.recirc_written == self.recirc_written
                && f.recirc_meta.masked(&f.recirc_written)
                    == self.recirc_meta.masked(&self.recirc_written);
            if !same {
                self.pin_5tuple();
                return;
            }
            wc.words_mut()
                .iter_mut()
                .zip(w.words())
                .for_each(|(a, b)| *a |= b);
            branches.push(f.actions[fork.prefix..].to_vec());
            counted.push(f.rules[common..].into());
        }
        self.wc = wc;
        self.out.truncate(fork.prefix);
        self.rules.truncate(common);
        self.out.push(DpAction::Select(SelectAction {
            group_id: fork.group_id,
            group: fork.entry,
            branches,
            counted,
        }));
    }

    fn note(&mut self, text: std::fmt::Arguments) {
        if let Some(t) = self.trace.as_deref_mut() {
            for _ in 0..self.depth {
                t.push_str("    ");
            }
            let _ = t.write_fmt(text);
            t.push('\n');
        }
    }

    /// Looks `table` up (with `in_port` in place of the packet's, for `resubmit(PORT,T)`) and
    /// runs the rule found. As in Open vSwitch the rule's actions see the packet's own in_port:
    /// the resubmit's port only takes part in the lookup.
    fn run_table(&mut self, table: u8, in_port: Option<u32>) {
        self.run_table_with(table, in_port, false);
    }

    /// [`run_table`](Self::run_table); `ct_orig`: `resubmit(..,ct)`, the lookup sees the
    /// connection's original tuple in place of the packet's (Open vSwitch's `tuple_swap`).
    fn run_table_with(&mut self, table: u8, in_port: Option<u32>, ct_orig: bool) {
        if self.stopped || self.exited {
            return;
        }
        if !self.resource_check() {
            return;
        }
        let packet_out = self.packet_out.take();
        // A packet-out's own actions are no table: only the bridge's tables count lookups.
        let pipeline = self.pipeline;
        let counts = packet_out.is_none().then_some(&*pipeline.table_counts);
        let Some(cls) = packet_out.or_else(|| self.pipeline.table(table)) else {
            self.note(format_args!("{table}. No match (table has no flows): drop"));
            self.count_lookup(counts, table, false);
            self.miss();
            return;
        };
        let own_in_port = self.key.in_port;
        if let Some(p) = in_port {
            self.key.in_port = p;
        }
        let found = if ct_orig {
            let swapped = super::ct_orig::swapped_key(&self.key);
            let mut wc = FlowKey::default();
            let found = cls.lookup_conjunctive(&swapped, &mut wc, RuleRef::conjunctions);
            super::ct_orig::unswap_mask(&mut self.wc, &wc);
            found
        } else {
            cls.lookup_conjunctive(&self.key, &mut self.wc, RuleRef::conjunctions)
        };
        self.key.in_port = own_in_port;
        let Some(rule) = found else {
            self.note(format_args!("{table}. No match: drop"));
            self.count_lookup(counts, table, false);
            self.miss();
            return;
        };
        self.count_lookup(counts, table, true);
        let rule = rule.payload().clone();
        self.rules.push(rule.stats.clone());
        let (saved_table, saved_cookie) = (self.cur_table, self.cur_cookie);
        let saved_rule = self.cur_rule.replace(rule.clone());
        self.cur_table = table;
        self.cur_cookie = rule.entry.cookie;
        if self.trace.is_some() {
            let text =
                flowtable::text::print_flow(&rule.entry, &flowtable::text::PrintOpts::default());
            self.note(format_args!("{table}. {text}"));
        }
        self.depth += 1;
        let ins = rule.entry.instructions.clone();
        if let Some(id) = ins.meter {
            // Every packet of the megaflow passes the meter: the cached actions carry it.
            match self.pipeline.meters.get(&id) {
                Some(m) => self.out.push(DpAction::Meter(MeterAction {
                    id,
                    meter: m.clone(),
                })),
                // The tables refuse a flow naming a missing meter and delete a meter's flows
                // with it; like Open vSwitch's datapath, a missing meter passes the packet.
                None => self.note(format_args!("    meter:{id} does not exist: not metered")),
            }
        }
        if !self.actions_then(&ins.apply, Some(&ins)) {
            self.instructions_tail(&ins);
        }
        self.depth -= 1;
        (self.cur_table, self.cur_cookie) = (saved_table, saved_cookie);
        self.cur_rule = saved_rule;
    }

    /// Open vSwitch's `xlate_resubmit_resource_check`, before a table lookup or a group: the
    /// walk may go on unless it is [`MAX_DEPTH`] deep (resubmits, gotos and groups together)
    /// or has run [`MAX_RESUBMITS`] of them; then the packet is dropped as looping and the
    /// walk ends.
    fn resource_check(&mut self) -> bool {
        if self.depth + self.group_depth >= MAX_DEPTH {
            self.note(format_args!(">>>> too many resubmits/gotos: dropping"));
        } else if self.resubmits >= MAX_RESUBMITS {
            self.note(format_args!(
                ">>>> over {MAX_RESUBMITS} resubmits/gotos/groups: dropping"
            ));
        } else {
            self.resubmits += 1;
            return true;
        }
        self.out.push(DpAction::Drop(DropReason::LoopDetected));
        self.stopped = true;
        self.too_deep = true;
        false
    }

    /// Counts the walk's packets to table `table`'s lookups, matched or not.
    fn count_lookup(&mut self, counts: Option<&TableCounts>, table: u8, matched: bool) {
        if let Some(c) = counts {
            let of = if matched { &c.matched } else { &c.missed };
            self.rules.push(of[usize::from(table)].clone());
        }
    }

    /// A table miss ends this lookup only: after a `resubmit` the walk goes on with the next
    /// action. Counted as a drop when the packet is sent nowhere.
    fn miss(&mut self) {
        self.soft_drop(DropReason::NoMatch);
    }

    fn soft_drop(&mut self, reason: DropReason) {
        self.soft_drop.get_or_insert(reason);
    }

    /// Why a packet the flows send nowhere is dropped, when it is more than "the flows said
    /// so": a reason noted on the way, or conntrack's `+inv` when the flows looked at it (only
    /// then: the reason must not split the megaflow).
    fn drop_reason(&self) -> Option<DropReason> {
        use encap::flowkey::CT_INV;
        self.soft_drop.or_else(|| {
            (self.wc.ct_state & self.key.ct_state & CT_INV != 0).then_some(DropReason::CtInvalid)
        })
    }

    fn actions(&mut self, list: &[Action]) {
        self.actions_then(list, None);
    }

    /// Runs `list`; `tail` is the rule whose apply-actions these are (its `write_metadata` and
    /// `goto_table` follow them). Returns true when a `check_pkt_larger` took the rest of the
    /// list and the tail into its two branches (they must not run again).
    fn actions_then(&mut self, list: &[Action], tail: Option<&Instructions>) -> bool {
        for (i, a) in list.iter().enumerate() {
            if self.stopped || self.exited {
                return false;
            }
            if let Action::CheckPktLarger { pkt_len, dst } = a {
                self.check_pkt_larger(*pkt_len, dst, &list[i + 1..], tail);
                return true;
            }
            self.action(a);
            if std::mem::take(&mut self.ttl_expired) {
                return true;
            }
        }
        false
    }

    /// The instructions after a rule's apply-actions.
    fn instructions_tail(&mut self, ins: &Instructions) {
        if self.stopped || self.exited {
            return;
        }
        if ins.clear_actions {
            self.action_set.clear();
        }
        if let Some(w) = &ins.write_actions {
            // As Open vSwitch: appended; the last of each kind counts when the set runs.
            self.action_set.extend(w.iter().cloned());
        }
        if let Some((value, mask)) = ins.write_metadata {
            self.key.metadata = (self.key.metadata & !mask) | (value & mask);
            self.written.metadata |= mask;
        }
        if let Some(next) = ins.goto_table {
            self.run_table(next, None);
        }
    }

    /// `check_pkt_larger(N)->DST`, as Open vSwitch translates it for a datapath with
    /// `check_pkt_len`: the rest of the action list (and the rule's `write_metadata` and
    /// `goto_table`) is translated twice, with DST = 1 and DST = 0, into the two branches of
    /// one datapath action that picks per packet by its length. What the branches change is
    /// undone after it (the callers of a `resubmit` go on with the state from before), and
    /// each branch counts the rules it hits itself.
    fn check_pkt_larger(
        &mut self,
        pkt_len: u16,
        dst: &SubField,
        rest: &[Action],
        tail: Option<&Instructions>,
    ) {
        let (key, written, stopped) = (self.key, self.written, self.stopped);
        let recirc = (self.recirc_meta, self.recirc_written);
        let set = self.action_set.clone();
        let (start, rules_start) = (self.out.len(), self.rules.len());
        let mut branches: [(Vec<DpAction>, Vec<Arc<FlowStats>>); 2] = Default::default();
        let mut recircs = [recirc; 2];
        let mut greater_exited = false;
        // A select group inside a branch is resolved here (its bucket pinned), not forked.
        self.bucket_depth += 1;
        for (bit, (b, r)) in [1u128, 0]
            .into_iter()
            .zip(branches.iter_mut().zip(&mut recircs))
        {
            (self.key, self.written, self.stopped) = (key, written, stopped);
            (self.recirc_meta, self.recirc_written) = recirc;
            self.exited = false;
            self.note(format_args!(
                "check_pkt_larger({pkt_len}): {} {pkt_len} bytes",
                if bit == 1 { "longer than" } else { "at most" }
            ));
            self.set_field(dst.field, bit << dst.ofs, dst.mask());
            if !self.actions_then(rest, tail)
                && let Some(t) = tail
            {
                self.instructions_tail(t);
            }
            // As Open vSwitch 3.1: each branch ends by running the action set it has and
            // emptying it, so the "at most" branch starts with an empty set (only what it
            // writes itself); the walk runs the set from before the check again when it ends.
            self.run_action_set();
            self.action_set.clear();
            *b = (self.out.split_off(start), self.rules.split_off(rules_start));
            *r = (self.recirc_meta, self.recirc_written);
            if bit == 1 {
                greater_exited = self.exited;
            }
        }
        self.bucket_depth -= 1;
        (self.key, self.written, self.stopped) = (key, written, stopped);
        self.action_set = set;
        // As Open vSwitch: an `exit` met translating the "larger" branch ends the walk after
        // the check (whatever the packet's length); one in the other branch does not.
        self.exited = greater_exited;
        let [(greater, greater_rules), (le, le_rules)] = branches;
        // One recirculation state per cached flow: two branches that both send the packet
        // through ct(table=..) with different metadata cannot share it.
        let [g, l] = recircs;
        if g != recirc && l != recirc && g != l {
            self.note(format_args!(
                "check_pkt_larger: both branches recirculate with different metadata: dropping"
            ));
            self.out.push(DpAction::Drop(DropReason::UnsupportedAction));
            self.stopped = true;
            return;
        }
        (self.recirc_meta, self.recirc_written) = if g != recirc { g } else { l };
        let copy = greater.iter().chain(&le).any(DpAction::changes_packet);
        let check = DpAction::CheckPktLen(Box::new(CheckPktLen {
            pkt_len,
            greater,
            le,
            greater_rules,
            le_rules,
        }));
        // The actions after it (a resubmit's caller) see the packet as it was.
        self.out.push(if copy {
            DpAction::Clone(vec![check])
        } else {
            check
        });
    }

    fn action(&mut self, a: &Action) {
        match a {
            Action::Output { port, max_len } => self.output(*port, *max_len),
            Action::OutputTrunc { port, max_len } => self.output_trunc(*port, *max_len),
            Action::OutputReg { src, max_len } => {
                // As Open vSwitch: a value above 16 bits names no port; 0xff00.. are the
                // OpenFlow 1.0 reserved ports.
                let v = self.read_subfield(src);
                if let Ok(p) = u16::try_from(v) {
                    let port = if p >= 0xff00 {
                        u32::from(p) | 0xffff_0000
                    } else {
                        u32::from(p)
                    };
                    self.output(OfPort(port), *max_len);
                }
            }
            // No queues: the queue id would pick a queue on output; the packet is unchanged.
            Action::SetQueue(_) => {}
            Action::SetNwTtl(ttl) => {
                self.wc.eth_type = u16::MAX;
                if matches!(self.key.eth_type, 0x0800 | 0x86dd) {
                    self.set_field(FieldId::NwTtl, u128::from(*ttl), 0xff);
                }
            }
            Action::SetField { field, value, mask } => self.set_field(*field, *value, *mask),
            Action::RegLoad { dst, value } => {
                self.set_field(dst.field, value << dst.ofs, dst.mask());
            }
            Action::Move { src, dst } => {
                if !self.packet_prereq_ok(dst.field) || !self.packet_prereq_ok(src.field) {
                    return;
                }
                let v = self.read_subfield(src);
                self.set_field(dst.field, v << dst.ofs, dst.mask());
            }
            Action::StackPush(src) => {
                if self.stack.len() >= MAX_STACK {
                    self.note(format_args!(
                        "push: stack full ({MAX_STACK}), nothing pushed"
                    ));
                } else {
                    let v = self.read_subfield(src);
                    self.stack.push(v);
                }
            }
            Action::StackPop(dst) => match self.stack.pop() {
                // As Open vSwitch: an empty stack leaves the field alone.
                None => self.note(format_args!("pop: empty stack, nothing popped")),
                Some(v) => {
                    if self.packet_prereq_ok(dst.field) {
                        self.set_field(dst.field, (v << dst.ofs) & dst.mask(), dst.mask());
                    }
                }
            },
            Action::PushVlan(tpid) => {
                // The pushed tag copies the VID/PCP of an existing tag, else zero (OF1.3).
                let tci = (self.key.vlan_tci & !encap::flowkey::VLAN_PRESENT)
                    | encap::flowkey::VLAN_PRESENT;
                self.wc.vlan_tci = u16::MAX;
                self.key.vlan_tci = tci;
                self.out.push(DpAction::PushVlan {
                    tpid: *tpid,
                    tci: tci & !encap::flowkey::VLAN_PRESENT,
                });
            }
            Action::PopVlan => {
                // As Open vSwitch: on a packet without a tag (a group bucket or an action set,
                // which the install check does not hold to the match), nothing to pop. The
                // tag's presence is pinned either way.
                self.wc.vlan_tci = u16::MAX;
                if self.key.vlan_tci & encap::flowkey::VLAN_PRESENT == 0 {
                    self.note(format_args!("pop_vlan: no VLAN tag: nothing to pop"));
                    return;
                }
                self.key.vlan_tci = 0;
                self.out.push(DpAction::PopVlan);
            }
            // `dec_ttl(ids)` names the controllers of its `invalid_ttl` packet-in; Open vSwitch
            // sends that packet-in only to connections that enabled the reason through
            // set-async (off by default in OpenFlow 1.3), which this switch's connections
            // cannot: the TTL handling is the same as plain `dec_ttl`.
            Action::DecTtl | Action::DecTtlIds(_) => self.dec_ttl(),
            Action::Sample(s) => self.sample(s),
            Action::ResubmitCt { in_port, table } => {
                let lookup_port = in_port.filter(|p| *p != OfPort::IN_PORT).map(|p| p.0);
                let t = table.unwrap_or(self.cur_table);
                self.note(format_args!(
                    "resubmit({},{t},ct)",
                    in_port.map(|p| p.0.to_string()).unwrap_or_default()
                ));
                // Open vSwitch: no lookup for a packet without a conntrack tuple or not IP.
                self.wc.eth_type = u16::MAX;
                self.wc.ct_nw_proto = u8::MAX;
                if self.key.ct_nw_proto == 0 || !matches!(self.key.eth_type, 0x0800 | 0x86dd) {
                    self.note(format_args!(
                        "    resubmit(ct) with non-tracked or non-IP packet: skipped"
                    ));
                    return;
                }
                self.run_table_with(t, lookup_port, true);
            }
            Action::Resubmit { in_port, table } => {
                let lookup_port = in_port.filter(|p| *p != OfPort::IN_PORT).map(|p| p.0);
                // No table: the table of the rule being executed (OVS table 255).
                let t = table.unwrap_or(self.cur_table);
                self.note(format_args!(
                    "resubmit({},{t})",
                    in_port.map(|p| p.0.to_string()).unwrap_or_default()
                ));
                self.run_table(t, lookup_port);
            }
            Action::Group(id) => self.group(*id),
            Action::Ct(ct) => self.ct(ct),
            Action::CtClear => {
                self.key.ct_state = 0;
                self.key.ct_zone = 0;
                self.key.ct_mark = 0;
                super::ct::set_orig_tuple(&mut self.key, 0, None);
            }
            Action::Controller(c) => self.controller(c),
            Action::Note(_) => {}
            // A conjunctive flow never wins a lookup (the classifier only counts its clause),
            // so its actions are never walked.
            Action::Conjunction { .. } => {}
            // As Open vSwitch: the clone works on a copy of the packet and of the pipeline
            // state (fields, registers, metadata); an `exit` inside it ends the whole walk.
            // Its action set starts as a copy of the walk's and runs at the clone's end.
            Action::Clone(inner) => {
                let (written, stopped) = (self.written, self.stopped);
                let set = self.action_set.clone();
                let stack = self.stack.clone();
                self.note(format_args!("clone"));
                self.bucket_then(inner, true);
                self.action_set = set;
                self.stack = stack;
                self.written = written;
                self.stopped = stopped;
            }
            Action::Exit => {
                self.note(format_args!("exit"));
                self.exited = true;
            }
            // Handled by `actions_then` (it takes the rest of the list).
            Action::CheckPktLarger { .. } => {}
            Action::Learn(l) => self.learn(l),
            Action::Multipath(mp) => self.multipath(mp),
            Action::Bundle(b) => self.bundle(b),
            Action::FinTimeout {
                idle_timeout,
                hard_timeout,
            } => {
                // As Open vSwitch: the packet's TCP flags are looked at in the datapath (not
                // pinned in the megaflow); a flow without a timeout to give is left alone.
                if let Some(rule) = &self.cur_rule
                    && (*idle_timeout != 0 || *hard_timeout != 0)
                {
                    let e = &rule.entry;
                    self.out.push(DpAction::FinTimeout(Arc::new(
                        super::actions::FinTimeoutRequest::new(
                            e.table_id,
                            e.priority,
                            e.match_,
                            *idle_timeout,
                            *hard_timeout,
                        ),
                    )));
                }
            }
        }
    }

    /// `multipath`: Open vSwitch's hash of the packet's fields picks the link, written to the
    /// destination; the hashed fields become exact in the megaflow.
    fn multipath(&mut self, mp: &flowtable::action::Multipath) {
        use super::nx_hash;
        let hash = nx_hash::flow_hash_fields(&self.key, mp.fields, mp.basis);
        let n_links = u32::from(mp.max_link) + 1;
        let link = nx_hash::multipath_link(hash, mp.algorithm, n_links, mp.arg);
        nx_hash::mask_hash_fields(&self.key, &mut self.wc, mp.fields);
        self.note(format_args!(
            "multipath({},{}): link {link} of {n_links}",
            mp.fields.name(),
            mp.algorithm.name()
        ));
        let dst = mp.dst;
        self.set_field(
            dst.field,
            (u128::from(link) << dst.ofs) & dst.mask(),
            dst.mask(),
        );
    }

    /// Whether a bundle member may be chosen, as Open vSwitch's `member_enabled_cb`: the
    /// reserved ports that are not real ports are always live (`NONE` too), `CONTROLLER`
    /// never; a port is live when the bridge has it and it is up (not `mod-port down`).
    fn member_live(&self, port: OfPort) -> bool {
        match port {
            OfPort::IN_PORT | OfPort::TABLE | OfPort::NORMAL | OfPort::FLOOD | OfPort::ALL => true,
            OfPort::ANY => true,
            OfPort::CONTROLLER => false,
            p => self.pipeline.ports.get(&p.0).is_some_and(|i| i.live),
        }
    }

    /// `bundle` / `bundle_load` (Open vSwitch's `bundle_execute`): `active_backup` takes the
    /// first live member, `hrw` the live member of highest weight for the packet's hash (its
    /// fields exact in the megaflow when there is more than one member). No live member is
    /// `NONE`: nothing is sent, `bundle_load` writes 0xffff. A change of a port's liveness
    /// publishes a new pipeline, so cached choices are revalidated.
    fn bundle(&mut self, b: &flowtable::action::Bundle) {
        use super::nx_hash;
        use flowtable::action::BundleAlgorithm;
        let chosen = match b.algorithm {
            BundleAlgorithm::ActiveBackup => {
                b.members.iter().copied().find(|m| self.member_live(*m))
            }
            BundleAlgorithm::Hrw => {
                if b.members.len() > 1 {
                    nx_hash::mask_hash_fields(&self.key, &mut self.wc, b.fields);
                }
                let hash = nx_hash::flow_hash_fields(&self.key, b.fields, b.basis);
                let mut best: Option<(OfPort, u32)> = None;
                for (i, m) in b.members.iter().enumerate() {
                    if self.member_live(*m) {
                        let w = nx_hash::bundle_weight(i, hash);
                        if best.is_none_or(|(_, bw)| w > bw) {
                            best = Some((*m, w));
                        }
                    }
                }
                best.map(|(m, _)| m)
            }
        };
        let port = chosen.unwrap_or(OfPort::ANY);
        self.note(format_args!(
            "bundle({},{}): member {port}",
            b.fields.name(),
            b.algorithm.name()
        ));
        match &b.dst {
            Some(dst) => {
                // The OpenFlow 1.0 (16-bit) port number, as Open vSwitch loads it.
                let v = u128::from(if port.0 >= OfPort::MAX.0 {
                    port.0 & 0xffff
                } else {
                    port.0
                });
                self.set_field(dst.field, (v << dst.ofs) & dst.mask(), dst.mask());
            }
            None if port == OfPort::ANY => {
                self.soft_drop(DropReason::PortDown);
            }
            None => self.output(port, 0),
        }
    }

    /// A packet-in. With a controller meter (`meter=controller`), it passes that meter first
    /// and only the packet-in is dropped above its rate, as Open vSwitch does it
    /// (`clone(meter(..),userspace(..))`).
    ///
    /// The packet-in reports the pipeline fields as they are here (registers, metadata,
    /// tunnel and conntrack fields): the megaflow pins them all, so that every packet it
    /// serves reports its own.
    fn controller(&mut self, c: &flowtable::action::Controller) {
        let pinned = super::PacketInAction::metadata_mask();
        for (w, m) in self.wc.words_mut().iter_mut().zip(pinned.words()) {
            *w |= m;
        }
        let packet_in = DpAction::Controller(Arc::new(super::PacketInAction {
            max_len: c.max_len,
            reason: c.reason as u8,
            cookie: self.cur_cookie,
            table: self.cur_table,
            controller_id: c.id,
            userdata: c.userdata.clone(),
            metadata: super::PacketInAction::metadata_of(&self.key),
        }));
        let id = flowtable::meter::METER_CONTROLLER;
        match self.pipeline.meters.get(&id) {
            Some(m) => {
                let meter = DpAction::Meter(MeterAction {
                    id,
                    meter: m.clone(),
                });
                self.out.push(DpAction::Clone(vec![meter, packet_in]));
            }
            None => self.out.push(packet_in),
        }
    }

    /// `learn`: builds the learned flow from the bits of the working key the specs read
    /// (un-wildcarded, so the megaflow serves only packets that learn the same flow) and
    /// emits it as a request the datapath sends to the control side (Open vSwitch's
    /// `learn_execute` + `learn_mask`).
    fn learn(&mut self, l: &flowtable::action::Learn) {
        use flowtable::action::{LearnSpec, LearnSrc};
        let mut m = flowtable::Match::any();
        let mut ins = flowtable::Instructions::default();
        if l.fin_idle_timeout != 0 || l.fin_hard_timeout != 0 {
            ins.apply.push(Action::FinTimeout {
                idle_timeout: l.fin_idle_timeout,
                hard_timeout: l.fin_hard_timeout,
            });
        }
        for spec in &l.specs {
            let value = |x: &mut Self, src: &LearnSrc| match src {
                LearnSrc::Field(sf) => x.read_subfield(sf),
                LearnSrc::Imm(v) => *v,
            };
            match spec {
                LearnSpec::Match { src, dst } => {
                    let v = value(self, src);
                    let info = dst.field.info();
                    let (mut bits, mut mask) = (v << dst.ofs, dst.mask());
                    if dst.field == FieldId::InPort && dst.is_whole() {
                        // The 16-bit NXM_OF_IN_PORT: an exact port (reserved ones widened).
                        bits = u128::from(port16(v as u16).0);
                        mask = info.full_mask();
                    }
                    let old_v = (info.get)(&m.value);
                    let old_m = (info.get)(&m.mask);
                    (info.set)(&mut m.mask, old_m | mask);
                    (info.set)(&mut m.value, (old_v & !mask) | (bits & mask));
                }
                LearnSpec::Load { src, dst } => {
                    let v = value(self, src);
                    ins.apply.push(Action::RegLoad {
                        dst: *dst,
                        value: v,
                    });
                }
                LearnSpec::Output { src } => {
                    let v = self.read_subfield(src);
                    // Only a real port or IN_PORT, FLOOD, LOCAL, ALL (lib/learn.c).
                    if let Ok(p) = u16::try_from(v) {
                        let port = port16(p);
                        if p < 0xff00
                            || matches!(
                                port,
                                OfPort::IN_PORT | OfPort::FLOOD | OfPort::LOCAL | OfPort::ALL
                            )
                        {
                            ins.apply.push(Action::Output { port, max_len: 0 });
                        }
                    }
                }
            }
        }
        let fm = flowtable::FlowMod {
            table_id: l.table,
            priority: l.priority,
            cookie: l.cookie,
            idle_timeout: l.idle_timeout,
            hard_timeout: l.hard_timeout,
            flags: flowtable::flow::FlowFlags(if l.send_flow_rem {
                flowtable::flow::FlowFlags::SEND_FLOW_REM
            } else {
                0
            }),
            match_: m,
            instructions: ins,
            ..flowtable::FlowMod::default()
        };
        if self.trace.is_some() {
            let text = flowtable::text::print_flow_mod(&fm);
            self.note(format_args!("learn: {text}"));
        }
        let learned = l.limit == 0 || self.learn_has_room(&fm, l.limit);
        if learned {
            self.out.push(DpAction::Learn(Arc::new(
                super::actions::LearnRequest::new(fm, l.limit),
            )));
        } else {
            self.note(format_args!(
                "learn: limit {} reached, not learned",
                l.limit
            ));
        }
        // The result is part of the translation: a table change re-makes the megaflow.
        if let Some(dst) = &l.result_dst {
            self.set_field(dst.field, u128::from(learned) << dst.ofs, dst.mask());
        }
    }

    /// Whether `learn(limit=N)` may install `fm` (Open vSwitch's `ofproto_flow_mod_learn`):
    /// the identical flow is there already (a refresh), or the table holds fewer than `limit`
    /// flows with its cookie.
    fn learn_has_room(&self, fm: &flowtable::FlowMod, limit: u32) -> bool {
        let Some(t) = self.pipeline.table(fm.table_id) else {
            return true;
        };
        let (m, prio) = (&fm.match_, u32::from(fm.priority));
        if t.find_exact(&m.value, &m.mask, prio)
            .is_some_and(|r| r.payload().entry.is_learned_as(fm))
        {
            return true;
        }
        let same_cookie = t.iter().filter(|r| r.payload().entry.cookie == fm.cookie);
        same_cookie.take(limit as usize).count() < limit as usize
    }

    /// `dec_ttl`, decided here as Open vSwitch's `compose_dec_ttl` does (the TTL becomes part
    /// of the megaflow): a packet that is not IP is left alone; a TTL above 1 is decremented
    /// (in the datapath); a TTL of 0 or 1 ends the action list being run, and its `goto_table`,
    /// while the callers of a `resubmit` go on.
    fn dec_ttl(&mut self) {
        self.wc.eth_type = u16::MAX;
        if !matches!(self.key.eth_type, 0x0800 | 0x86dd) {
            return;
        }
        self.wc.nw_ttl = u8::MAX;
        if self.key.nw_ttl > 1 {
            self.key.nw_ttl -= 1;
            self.out.push(DpAction::DecTtl);
            return;
        }
        let ttl = self.key.nw_ttl;
        self.note(format_args!(
            "dec_ttl: TTL {ttl} expired: the rest of this action list is skipped"
        ));
        self.soft_drop(DropReason::TtlExpired);
        self.ttl_expired = true;
    }

    /// `sample`: counted in the datapath per packet. As Open vSwitch, a `sampling_port` that
    /// is neither the input port nor a port of the bridge (`LOCAL` is one in Open vSwitch)
    /// makes the action do nothing.
    fn sample(&mut self, s: &flowtable::action::Sample) {
        if let Some(p) = s.sampling_port
            && p.0 != self.key.in_port
            && p != OfPort::LOCAL
            && !self.pipeline.ports.contains_key(&p.0)
        {
            self.note(format_args!(
                "sample: can't use unknown port {p} in flow sample action"
            ));
            return;
        }
        self.note(format_args!(
            "sample(probability={},collector_set_id={})",
            s.probability, s.collector_set_id
        ));
        self.out.push(DpAction::Sample {
            probability: s.probability,
            collector_set_id: s.collector_set_id,
        });
    }

    /// Runs the action set (in Open vSwitch's order, see [`super::action_set::ordered`]) and
    /// empties it; nothing when an `exit` or a stop ended the walk.
    fn run_action_set(&mut self) {
        if self.action_set.is_empty() || self.stopped || self.exited {
            return;
        }
        let list = super::action_set::ordered(&std::mem::take(&mut self.action_set));
        if list.is_empty() {
            self.note(format_args!(
                "action set without output, group, resubmit or ct: nothing to run"
            ));
            return;
        }
        if self.trace.is_some() {
            let text = flowtable::text::print_actions(&list);
            self.note(format_args!("action set: {text}"));
        }
        self.actions(&list);
    }

    fn read_subfield(&mut self, sf: &SubField) -> u128 {
        if sf.field == FieldId::InPort && sf.ofs == 0 && sf.n_bits == 16 {
            // NXM_OF_IN_PORT is 16 bits: reserved ports read as their OpenFlow 1.0 numbers.
            self.wc.in_port = u32::MAX;
            let p = self.key.in_port;
            return u128::from(if p >= 0xffff_ff00 { p & 0xffff } else { p });
        }
        let info = sf.field.info();
        let consulted = (info.get)(&self.wc) | sf.mask();
        (info.set)(&mut self.wc, consulted);
        ((info.get)(&self.key) & sf.mask()) >> sf.ofs
    }

    /// Whether the packet has the field `field` (its prerequisites hold for this packet), as
    /// Open vSwitch checks a written or read field per packet and skips the action when they
    /// do not: a flow's own match was checked at install time (`flowtable::check`), but a
    /// group bucket, a learned flow, a resubmit chain or a `ct_clear` may bring a packet
    /// without the field to the action (`set_field:8080->tcp_dst` in a bucket meeting a UDP
    /// packet). Pins what decided it (`eth_type`, `nw_proto`, a later fragment, the ICMP type
    /// and code of ND, the connection state), so the megaflow serves only packets with the
    /// same answer. A VLAN tag is not looked at here (VLAN writes check the tag themselves).
    fn packet_prereq_ok(&mut self, field: FieldId) -> bool {
        use flowtable::fields::Prereq;
        const IP: &[u16] = &[0x0800, 0x86dd];
        let ok = match field.info().prereq {
            Prereq::None | Prereq::Vlan => return true,
            Prereq::Ipv4 => self.eth_type_in(&[0x0800]),
            Prereq::Ipv6 => self.eth_type_in(&[0x86dd]),
            Prereq::Ip => self.eth_type_in(IP),
            Prereq::Arp => self.eth_type_in(&[0x0806, 0x8035]),
            Prereq::Tcp => self.l4_in(&[6]),
            Prereq::Udp => self.l4_in(&[17]),
            Prereq::Sctp => self.l4_in(&[132]),
            Prereq::L4 => self.l4_in(&[6, 17, 132]),
            Prereq::Icmp => self.eth_type_in(&[0x0800]) && self.nw_proto_in(&[1]),
            Prereq::Icmpv6 => self.eth_type_in(&[0x86dd]) && self.nw_proto_in(&[58]),
            p @ (Prereq::Nd | Prereq::NdSolicit | Prereq::NdAdvert) => {
                let want: &[u8] = match p {
                    Prereq::NdSolicit => &[135],
                    Prereq::NdAdvert => &[136],
                    _ => &[135, 136],
                };
                self.eth_type_in(&[0x86dd]) && self.nw_proto_in(&[58]) && {
                    self.wc.icmp_type = u8::MAX;
                    self.wc.icmp_code = u8::MAX;
                    self.key.icmp_code == 0 && want.contains(&self.key.icmp_type)
                }
            }
            // The ct original-tuple fields: a valid connection (`is_ct_valid` on a packet),
            // which a `ct_clear` or a resubmit chain can take away after the install check.
            Prereq::Ct | Prereq::CtIpv4 | Prereq::CtIpv6 => {
                use encap::flowkey::{CT_EST, CT_NEW, CT_RPL};
                self.wc.ct_state |= CT_NEW | CT_EST | CT_RPL;
                self.key.ct_state & (CT_NEW | CT_EST | CT_RPL) != 0
            }
        };
        if !ok {
            self.note(format_args!(
                "{}: prerequisites not met, skipping",
                field.info().name
            ));
        }
        ok
    }

    /// Whether the packet's `eth_type` is one of `types` (pinned).
    fn eth_type_in(&mut self, types: &[u16]) -> bool {
        self.wc.eth_type = u16::MAX;
        types.contains(&self.key.eth_type)
    }

    /// Whether the packet's `nw_proto` is one of `protos` (pinned; the caller knows it is IP).
    fn nw_proto_in(&mut self, protos: &[u8]) -> bool {
        self.wc.nw_proto = u8::MAX;
        protos.contains(&self.key.nw_proto)
    }

    /// Whether the packet is IP with one of `protos` and has its L4 header (not a later
    /// fragment): Open vSwitch's TCP/UDP/SCTP prerequisites.
    fn l4_in(&mut self, protos: &[u8]) -> bool {
        use encap::flowkey::FRAG_LATER;
        if !self.eth_type_in(&[0x0800, 0x86dd]) || !self.nw_proto_in(protos) {
            return false;
        }
        self.wc.nw_frag |= FRAG_LATER;
        self.key.nw_frag & FRAG_LATER == 0
    }

    fn set_field(&mut self, field: FieldId, value: u128, mask: u128) {
        if !self.packet_prereq_ok(field) {
            return;
        }
        let info = field.info();
        let old = (info.get)(&self.key);
        let new = (old & !mask) | (value & mask);
        (info.set)(&mut self.key, new);
        // Remember which metadata bits the walk now decides (carried into a recirculation).
        let mut bits = FlowKey::default();
        (info.set)(&mut bits, mask & info.full_mask());
        for (w, b) in self.written.words_mut()[..META_WORDS]
            .iter_mut()
            .zip(&bits.words()[..META_WORDS])
        {
            *w |= b;
        }
        // Header rewrites become datapath actions; metadata only lives in the key.
        let out = match field {
            FieldId::EthSrc => Some(DpAction::SetEthSrc(mac(new))),
            FieldId::EthDst => Some(DpAction::SetEthDst(mac(new))),
            FieldId::Ipv4Src => Some(DpAction::SetIpv4Src(Ipv4Addr::from(new as u32))),
            FieldId::Ipv4Dst => Some(DpAction::SetIpv4Dst(Ipv4Addr::from(new as u32))),
            FieldId::Ipv6Src => Some(DpAction::SetIpv6Src(new.to_be_bytes())),
            FieldId::Ipv6Dst => Some(DpAction::SetIpv6Dst(new.to_be_bytes())),
            FieldId::Ipv6Label => Some(DpAction::SetIpv6Label(new as u32)),
            // `tp_src`/`tp_dst` are Open vSwitch's aliases of the L4 port of whichever of
            // TCP, UDP or SCTP the packet is (checked per packet above).
            FieldId::TcpSrc | FieldId::UdpSrc | FieldId::SctpSrc | FieldId::TpSrc => {
                Some(DpAction::SetTpSrc(new as u16))
            }
            FieldId::TcpDst | FieldId::UdpDst | FieldId::SctpDst | FieldId::TpDst => {
                Some(DpAction::SetTpDst(new as u16))
            }
            // As Open vSwitch's commit_vlan_action: writing the whole TCI (`load:..->
            // NXM_OF_VLAN_TCI[]`) pushes an 802.1Q tag onto an untagged packet when the new
            // value has the CFI/present bit, pops the tag when it has not, else rewrites it.
            FieldId::VlanTci => {
                let present = encap::flowkey::VLAN_PRESENT;
                let tci = self.key.vlan_tci & !present;
                self.wc.vlan_tci = u16::MAX;
                match (old as u16 & present != 0, new as u16 & present != 0) {
                    (true, true) => Some(DpAction::SetVlanTci(tci)),
                    (true, false) => Some(DpAction::PopVlan),
                    (false, true) => Some(DpAction::PushVlan { tpid: 0x8100, tci }),
                    (false, false) => None,
                }
            }
            FieldId::VlanVid | FieldId::DlVlan | FieldId::DlVlanPcp => Some(DpAction::SetVlanTci(
                self.key.vlan_tci & !encap::flowkey::VLAN_PRESENT,
            )),
            FieldId::IpDscp | FieldId::NwTos | FieldId::IpEcn => {
                Some(DpAction::SetIpTos(self.key.nw_tos))
            }
            FieldId::NwTtl => Some(DpAction::SetIpTtl(self.key.nw_ttl)),
            FieldId::ArpOp => Some(DpAction::SetArpOp(new as u16)),
            FieldId::ArpSpa => Some(DpAction::SetArpSpa(Ipv4Addr::from(new as u32))),
            FieldId::ArpTpa => Some(DpAction::SetArpTpa(Ipv4Addr::from(new as u32))),
            FieldId::ArpSha => Some(DpAction::SetArpSha(mac(new))),
            FieldId::ArpTha => Some(DpAction::SetArpTha(mac(new))),
            FieldId::NdTarget => Some(DpAction::SetNdTarget(new.to_be_bytes())),
            FieldId::NdSll => Some(DpAction::SetNdSll(mac(new))),
            FieldId::NdTll => Some(DpAction::SetNdTll(mac(new))),
            // ICMP or ICMPv6 by the packet's family (the datapath looks at the frame).
            FieldId::IcmpType | FieldId::Icmpv6Type => Some(DpAction::SetIcmpType(new as u8)),
            FieldId::IcmpCode | FieldId::Icmpv6Code => Some(DpAction::SetIcmpCode(new as u8)),
            FieldId::InPort
            | FieldId::Metadata
            | FieldId::Reg0
            | FieldId::Reg1
            | FieldId::Reg2
            | FieldId::Reg3
            | FieldId::Reg4
            | FieldId::Reg5
            | FieldId::Reg6
            | FieldId::Reg7
            | FieldId::Reg8
            | FieldId::Reg9
            | FieldId::Reg10
            | FieldId::Reg11
            | FieldId::Reg12
            | FieldId::Reg13
            | FieldId::Reg14
            | FieldId::Reg15
            | FieldId::Xreg0
            | FieldId::Xreg1
            | FieldId::Xreg2
            | FieldId::Xreg3
            | FieldId::Xreg4
            | FieldId::Xreg5
            | FieldId::Xreg6
            | FieldId::Xreg7
            | FieldId::Xxreg0
            | FieldId::Xxreg1
            | FieldId::Xxreg2
            | FieldId::Xxreg3
            | FieldId::TunId
            | FieldId::TunSrc
            | FieldId::TunDst
            | FieldId::PktMark
            | FieldId::CtMark => None,
            _ => {
                self.note(format_args!(
                    "set_field of {} is not supported by the datapath: dropping",
                    info.name
                ));
                self.stopped = true;
                Some(DpAction::Drop(DropReason::UnsupportedAction))
            }
        };
        if let Some(a) = out {
            if !matches!(a, DpAction::Drop(_)) {
                self.pin_kept_bits(field, mask);
            }
            self.out.push(a);
        }
    }

    /// A header rewrite carries the field's whole new value, so the bits a masked write keeps
    /// from the packet are read; VLAN and TOS writes carry the whole TCI / TOS byte.
    fn pin_kept_bits(&mut self, field: FieldId, mask: u128) {
        match field {
            FieldId::VlanVid | FieldId::VlanTci | FieldId::DlVlan | FieldId::DlVlanPcp => {
                self.wc.vlan_tci = u16::MAX;
            }
            FieldId::IpDscp | FieldId::NwTos | FieldId::IpEcn => self.wc.nw_tos = u8::MAX,
            _ => {
                let info = field.info();
                let kept = info.full_mask() & !mask;
                if kept != 0 {
                    let consulted = (info.get)(&self.wc) | kept;
                    (info.set)(&mut self.wc, consulted);
                }
            }
        }
    }

    fn output(&mut self, port: OfPort, max_len: u16) {
        let in_port = self.key.in_port;
        match port {
            OfPort::IN_PORT => self.output_ofport(in_port),
            OfPort::NORMAL => {
                self.note(format_args!("output: NORMAL"));
                let meta = self.walk_meta();
                self.out.push(DpAction::Normal(meta));
            }
            OfPort::FLOOD | OfPort::ALL => {
                self.note(format_args!(
                    "output: {}",
                    if port == OfPort::ALL { "ALL" } else { "FLOOD" }
                ));
                let meta = self.walk_meta();
                self.out.push(DpAction::Flood {
                    all: port == OfPort::ALL,
                    meta,
                })
            }
            OfPort::CONTROLLER => self.controller(&flowtable::action::Controller {
                max_len,
                ..Default::default()
            }),
            // As Open vSwitch: the packet, as it is now, goes through table 0 again.
            OfPort::TABLE => {
                self.note(format_args!("output: TABLE (table 0 again)"));
                self.run_table(0, None);
            }
            OfPort::LOCAL => self.output_ofport(OfPort::LOCAL.0),
            OfPort(p) if p == in_port => {
                self.note(format_args!("skipping output to input port {p}"));
            }
            OfPort(p) => self.output_ofport(p),
        }
    }

    /// `output(port=P,max_len=N)`, as Open vSwitch translates it: to a port of the bridge
    /// other than the input port; `IN_PORT` and `LOCAL` (this bridge has none) send nothing
    /// (the other reserved ports are refused at install).
    fn output_trunc(&mut self, port: OfPort, max_len: u32) {
        if port.0 == self.key.in_port {
            self.note(format_args!("output_trunc: skipping output to input port"));
            return;
        }
        if !port.is_physical() {
            self.note(format_args!(
                "output_trunc does not support port {port}: skipped"
            ));
            return;
        }
        let before = self.out.len();
        self.output_ofport(port.0);
        // The output just made (if any) becomes its cut form.
        let cut = |port, tunnel, proto| {
            DpAction::OutputTrunc(TruncOutput {
                port,
                max_len,
                tunnel,
                proto,
            })
        };
        match self.out.get(before..) {
            Some([DpAction::Output(p)]) => {
                self.out[before] = cut(*p, None, TunnelProto::Vxlan);
            }
            Some(
                [
                    DpAction::Tunnel {
                        port,
                        dst,
                        vni,
                        proto,
                    },
                ],
            ) => {
                self.out[before] = cut(*port, Some((*dst, *vni)), *proto);
            }
            _ => {}
        }
    }

    /// What NORMAL and FLOOD/ALL must use instead of the packet's own metadata: the input
    /// port and tunnel fields as the walk has written them so far (see [`WalkMeta`]).
    fn walk_meta(&self) -> WalkMeta {
        let (tun_id, tun_dst) = (self.written.tun_id, self.written.tun_dst);
        WalkMeta {
            in_port: (self.key.in_port != self.origin.in_port).then_some(self.key.in_port),
            tun_id: (self.key.tun_id & tun_id, tun_id),
            tun_dst: (self.key.tun_dst & tun_dst, tun_dst),
        }
    }

    fn output_ofport(&mut self, ofport: u32) {
        let Some(info) = self.pipeline.ports.get(&ofport) else {
            // Open vSwitch skips an output to a port it does not have and goes on.
            self.note(format_args!("output:{ofport}: no such port: skipped"));
            self.soft_drop(DropReason::PortDown);
            return;
        };
        if !info.kind.is_tunnel() {
            self.note(format_args!("output:{ofport} ({})", info.name));
            self.out.push(DpAction::Output(info.dp_id));
            return;
        }
        let dst = match info.remote_ip {
            Some(FromFlow::Fixed(IpAddr::V4(ip))) => Some(ip),
            Some(FromFlow::Flow) => {
                self.wc.tun_dst = u32::MAX;
                (self.key.tun_dst != 0).then(|| Ipv4Addr::from(self.key.tun_dst))
            }
            _ => None,
        };
        let vni = match info.key {
            Some(FromFlow::Fixed(k)) => k,
            _ => {
                self.wc.tun_id |= 0xff_ffff;
                (self.key.tun_id & 0xff_ffff) as u32
            }
        };
        match dst {
            Some(dst) => {
                let proto = TunnelProto::of(info.kind);
                self.note(format_args!(
                    "output:{ofport} ({}): {} encap vni={vni} dst={dst}",
                    info.name,
                    proto.label()
                ));
                self.out.push(DpAction::Tunnel {
                    port: info.dp_id,
                    dst,
                    vni,
                    proto,
                })
            }
            None => {
                // Skipped, as an output to a missing port: the actions after it still run.
                self.note(format_args!(
                    "output:{ofport} ({}): no tun_dst: skipped",
                    info.name
                ));
                self.soft_drop(DropReason::TunnelNoRoute);
            }
        }
    }

    fn group(&mut self, id: u32) {
        if !self.resource_check() {
            return;
        }
        let exited = self.exited;
        self.group_depth += 1;
        self.group_buckets(id);
        self.group_depth -= 1;
        // The fact that a bucket exits does not end the walk (Open vSwitch resets it too).
        self.exited = exited;
    }

    fn group_buckets(&mut self, id: u32) {
        let Some(entry) = self.pipeline.groups.get(&id).cloned() else {
            // As Open vSwitch: the rest of this action list is skipped (a sibling bucket and
            // the actions after a `resubmit` still run), a drop only if nothing was sent.
            self.note(format_args!("group:{id}: no such group"));
            self.soft_drop(DropReason::GroupMissing);
            self.ttl_expired = true;
            return;
        };
        let group = &entry.group;
        match group.group_type {
            GroupType::All => {
                self.count_group_and_buckets(&entry);
                for (i, b) in group.buckets.iter().enumerate() {
                    self.note(format_args!("group:{id} bucket {i}"));
                    self.bucket(&b.actions);
                }
            }
            GroupType::Indirect => {
                self.count_group_and_buckets(&entry);
                if let Some(b) = group.buckets.first() {
                    self.bucket(&b.actions);
                }
            }
            GroupType::FastFailover => {
                let mut budget = MAX_LIVENESS_BUCKETS;
                let (ports, groups) = (&self.pipeline.ports, &self.pipeline.groups);
                let live = group.buckets.iter().position(|b| {
                    crate::pipeline::bucket_live(ports, groups, group.group_type, b, 0, &mut budget)
                });
                match live {
                    Some(i) => {
                        self.note(format_args!("group:{id} fast_failover: bucket {i}"));
                        self.count_group(&entry);
                        self.count_bucket(&entry, i);
                        self.bucket(&group.buckets[i].actions);
                    }
                    None => {
                        self.note(format_args!("group:{id} fast_failover: no live bucket"));
                        self.soft_drop(DropReason::GroupMissing);
                    }
                }
            }
            GroupType::Select => {
                // Buckets whose watched port or group is dead have weight 0 in the entry.
                if entry.none_selectable() {
                    self.note(format_args!(
                        "group:{id} select: no live bucket with a weight"
                    ));
                    self.soft_drop(DropReason::GroupMissing);
                    return;
                }
                // A select group resolved in the datapath counts itself with the bucket, per
                // branch: a packet that ends before the group (a meter) counts to neither.
                let group_counter_at = self.rules.len();
                self.count_group(&entry);
                // The first select group of a walk without an earlier `ct` (NAT would change
                // what the datapath hashes) is resolved in the datapath: no 5-tuple pinned.
                let in_datapath = !self.select_seen
                    && !self.ct_emitted
                    && self.bucket_depth == 0
                    && group.selection.hash_fields().is_none()
                    && entry.affinity.is_none()
                    && group.buckets.len() <= MAX_DP_SELECT_BUCKETS;
                self.select_seen = true;
                let hash = match group.selection.hash_fields() {
                    Some(fields) => self.hash_fields(fields),
                    None if in_datapath => encap::hash::flow_hash(&self.key) as u64,
                    None => self.pin_5tuple() as u64,
                };
                let chosen = match self.forced_bucket.filter(|_| in_datapath) {
                    Some(i) => i,
                    None => entry.pick(hash).unwrap_or(0),
                };
                if in_datapath && self.forced_bucket.is_none() {
                    self.fork = Some(Fork {
                        prefix: self.out.len(),
                        counters_at: group_counter_at,
                        group_id: id,
                        entry: entry.clone(),
                    });
                    self.chosen = Some(chosen);
                }
                match group.selection.hash_fields() {
                    Some(fields) => self.note(format_args!(
                        "group:{id} select (hash of {}): bucket {chosen}",
                        field_names(fields)
                    )),
                    None if in_datapath => self.note(format_args!(
                        "group:{id} select: bucket {chosen} (hash taken in the datapath)"
                    )),
                    None => self.note(format_args!("group:{id} select: bucket {chosen}")),
                }
                let chosen = self.affinity(&entry, chosen);
                self.count_bucket(&entry, chosen);
                self.bucket(&group.buckets[chosen].actions);
            }
        }
    }

    /// Counts the walk's packets to the group (when a bucket of it runs, as Open vSwitch).
    fn count_group(&mut self, entry: &GroupEntry) {
        self.rules.push(entry.counts.group.clone());
    }

    /// Counts them to the group and every bucket: an `all` or `indirect` group runs them all.
    fn count_group_and_buckets(&mut self, entry: &GroupEntry) {
        self.count_group(entry);
        self.rules.extend(entry.counts.buckets.iter().cloned());
    }

    fn count_bucket(&mut self, entry: &GroupEntry, bucket: usize) {
        if let Some(c) = entry.counts.buckets.get(bucket) {
            self.rules.push(c.clone());
        }
    }

    /// Runs a group bucket on its own copy of the packet, as Open vSwitch does: what the
    /// bucket changes (fields, tags, TTL, NAT) is seen neither by the next bucket nor by the
    /// actions after `group:`, and a bucket that stops (TTL expired) stops only itself. A
    /// bucket that changes nothing needs no copy; a copy at the very end of the walk is
    /// dropped again by [`finish_actions`].
    fn bucket(&mut self, actions: &[Action]) {
        self.bucket_then(actions, false);
    }

    /// [`bucket`](Self::bucket); `run_set`: the walk's action set runs at its end (`clone`).
    fn bucket_then(&mut self, actions: &[Action], run_set: bool) {
        // The bucket's writes are rolled back with the key, and so is the note of them: a
        // later `ct(table=...)` must not carry a rolled-back register as written by the walk
        // (the cached flow would then give every packet the first one's value).
        let (saved, written) = (self.key, self.written);
        let start = self.out.len();
        self.bucket_depth += 1;
        self.actions(actions);
        if run_set {
            self.run_action_set();
        }
        self.bucket_depth -= 1;
        self.key = saved;
        self.written = written;
        if self.out[start..].iter().any(DpAction::changes_packet) {
            let inner = self.out.split_off(start);
            self.out.push(DpAction::Clone(inner));
        }
    }

    /// Session affinity (`affinity_timeout`): an IPv4 client that connected within the timeout
    /// gets the bucket it had, if that bucket still exists with a weight; otherwise `hashed` is
    /// remembered for it. The choice now depends on the client address, so that is exact in
    /// the megaflow; the entry used rides along as an [`DpAction::AffinityTouch`].
    fn affinity(&mut self, entry: &GroupEntry, hashed: usize) -> usize {
        let Some((table, timeout)) = entry.affinity.as_ref() else {
            return hashed;
        };
        // Looked at whatever the answer: an IPv6 packet's flow must not serve IPv4 ones.
        self.wc.eth_type = u16::MAX;
        if self.key.eth_type != 0x0800 {
            return hashed;
        }
        self.wc.nw_src = u32::MAX;
        let client = self.key.nw_src;
        let now = conntrack::lb::affinity::clock_ns();
        let recalled = table.recall(client, now, *timeout).and_then(|r| {
            let i = entry.bucket_ids.iter().position(|b| *b == r.bucket)?;
            (entry.weights[i] > 0).then_some((i, r))
        });
        let (chosen, remembered) = match recalled {
            Some((i, r)) => {
                self.note(format_args!(
                    "affinity: {} keeps bucket {i}",
                    Ipv4Addr::from(client)
                ));
                (i, Some(r))
            }
            None if self.trace.is_some() => {
                // A trace describes, it does not change what the next real packet gets.
                self.note(format_args!(
                    "affinity: {} would be remembered with bucket {hashed}",
                    Ipv4Addr::from(client)
                ));
                (hashed, None)
            }
            None => {
                let bucket = entry.bucket_ids.get(hashed).copied().unwrap_or_default();
                let r = table.remember(client, bucket, now, *timeout);
                self.note(format_args!(
                    "affinity: {} {} bucket {hashed}",
                    Ipv4Addr::from(client),
                    if r.is_some() {
                        "remembered with"
                    } else {
                        "not remembered (table full), takes"
                    }
                ));
                (hashed, r)
            }
        };
        if let Some(r) = remembered {
            self.out
                .push(DpAction::AffinityTouch(conntrack::lb::AffinityTouch(r)));
        }
        chosen
    }

    /// Hash of the fields a select group balances on (the 5-tuple, IPv4 or IPv6); they become
    /// part of the megaflow.
    fn pin_5tuple(&mut self) -> u32 {
        self.wc.eth_type = u16::MAX;
        if self.key.eth_type == 0x86dd {
            self.wc.ipv6_src = [u8::MAX; 16];
            self.wc.ipv6_dst = [u8::MAX; 16];
        } else {
            self.wc.nw_src = u32::MAX;
            self.wc.nw_dst = u32::MAX;
        }
        self.wc.nw_proto = u8::MAX;
        self.wc.tp_src = u16::MAX;
        self.wc.tp_dst = u16::MAX;
        encap::hash::flow_hash(&self.key)
    }

    /// Hash of only the fields a `selection_method=hash,fields(..)` group names (session
    /// affinity: `fields(ip_src)` keeps a client on one bucket whatever its ports). Only those
    /// fields become part of the megaflow.
    fn hash_fields(&mut self, fields: &[FieldId]) -> u64 {
        let mut h: u64 = 0x243f_6a88_85a3_08d3;
        for f in fields {
            let info = f.info();
            (info.set)(&mut self.wc, info.full_mask());
            let v = (info.get)(&self.key) & info.full_mask();
            h = encap::hash::fmix64(h ^ v as u64);
            h = encap::hash::fmix64(h ^ (v >> 64) as u64);
        }
        h
    }

    fn ct(&mut self, ct: &flowtable::action::Ct) {
        let zone = match ct.zone {
            None => 0,
            Some(CtZone::Imm(z)) => z,
            Some(CtZone::Field(sf)) => self.read_subfield(&sf) as u16,
        };
        // exec(...) writes, in order: set_field (maybe masked), load and move into ct_mark /
        // ct_label. A move reads the packet's field now (pinned in the megaflow), as Open
        // vSwitch runs the nested actions on the flow when it composes the ct action.
        let (mut mark, mut label) = (None::<(u128, u128)>, None::<(u128, u128)>);
        for a in &ct.exec {
            let (field, value, mask) = match a {
                Action::SetField { field, value, mask } => (*field, *value, *mask),
                Action::RegLoad { dst, value } => (dst.field, value << dst.ofs, dst.mask()),
                Action::Move { src, dst } => {
                    let v = self.read_subfield(src);
                    (dst.field, v << dst.ofs, dst.mask())
                }
                _ => continue,
            };
            let slot = match field {
                FieldId::CtMark => &mut mark,
                FieldId::CtLabel => &mut label,
                _ => continue,
            };
            let (v, m) = slot.unwrap_or((0, 0));
            *slot = Some(((v & !mask) | (value & mask), m | mask));
        }
        let mark = mark.map(|(v, m)| (v as u32, m as u32));
        let nat = match ct.nat.as_ref().map(nat_spec) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                self.note(format_args!("ct nat: {e}: dropping"));
                self.out.push(DpAction::Drop(DropReason::UnsupportedAction));
                self.stopped = true;
                return;
            }
            None => None,
        };
        if ct.table.is_some() && !self.action_set.is_empty() {
            // Open vSwitch carries the action set into the recirculated pass (and runs it on
            // the original too); the recirculation here carries metadata only.
            self.note(format_args!(
                "ct(table=..) with a non-empty action set (write_actions): not supported, dropping"
            ));
            self.out.push(DpAction::Drop(DropReason::UnsupportedAction));
            self.stopped = true;
            return;
        }
        // Conntrack and NAT run in the datapath on the packet itself: nothing of the key is
        // read here, so nothing is pinned (one megaflow serves every connection).
        self.ct_emitted = true;
        self.note(format_args!(
            "ct(zone={zone}{}{}{}{})",
            if ct.commit { ",commit" } else { "" },
            if ct.force { ",force" } else { "" },
            ct.table.map(|t| format!(",table={t}")).unwrap_or_default(),
            if ct.nat.is_some() { ",nat" } else { "" }
        ));
        self.out.push(DpAction::Ct(CtAction {
            zone,
            commit: ct.commit,
            force: ct.force,
            nat,
            mark,
            label,
            recirc_table: ct.table,
            // The flow table refuses any other port: only these two have an ALG.
            alg: ct.alg.and_then(conntrack::Alg::from_port),
        }));
        if ct.table.is_some() {
            self.recirc_meta = self.key;
            self.recirc_written = self.written;
            self.stopped = true;
        }
    }
}

/// Ends a walk's action list: a group-bucket copy with nothing after it runs on the packet
/// itself (no copy needed), and a packet sent nowhere is counted as a drop with the first
/// reason the walk met.
fn finish_actions(out: &mut Vec<DpAction>, soft_drop: Option<DropReason>) {
    unclone_tail(out);
    let before_last = out.len().saturating_sub(1);
    if out[..before_last].iter().any(DpAction::disposes) {
        return;
    }
    // A packet-length check that ends the walk: each branch on its own.
    if let Some(DpAction::CheckPktLen(c)) = out.last_mut() {
        finish_actions(&mut c.greater, soft_drop);
        finish_actions(&mut c.le, soft_drop);
        return;
    }
    if !out.last().is_some_and(DpAction::disposes) {
        out.push(DpAction::Drop(
            soft_drop.unwrap_or(DropReason::ExplicitDrop),
        ));
    }
}

fn unclone_tail(out: &mut Vec<DpAction>) {
    while let Some(DpAction::Clone(_)) = out.last() {
        if let Some(DpAction::Clone(inner)) = out.pop() {
            out.extend(inner);
        }
    }
    if let Some(DpAction::Select(sel)) = out.last_mut() {
        for b in &mut sel.branches {
            unclone_tail(b);
        }
    }
}

fn field_names(fields: &[FieldId]) -> String {
    let names: Vec<&str> = fields.iter().map(|f| f.info().name).collect();
    names.join(",")
}

fn mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Converts the model's `nat(...)` into conntrack's request.
fn nat_spec(n: &Nat) -> Result<NatSpec, String> {
    let mut spec = NatSpec {
        select: if n.random {
            PortSelect::Random
        } else {
            PortSelect::Hash
        },
        persistent: n.persistent,
        ..NatSpec::default()
    };
    let Some(kind) = n.kind else {
        return Ok(spec);
    };
    let (lo, hi) = match n.addrs {
        Some((IpAddr::V4(a), IpAddr::V4(b))) => (Addr::v4(u32::from(a)), Addr::v4(u32::from(b))),
        Some((IpAddr::V6(a), IpAddr::V6(b))) => (Addr(a.octets()), Addr(b.octets())),
        Some(_) => return Err("nat: a range mixes IPv4 and IPv6".into()),
        // `nat(src)` / `nat(dst)` without a range: a binding that keeps the address and
        // port (Linux's null binding, what Open vSwitch's datapath sets up): nothing to
        // translate, the connection is committed as it is.
        None => return Ok(spec),
    };
    let (pmin, pmax) = n.ports.unwrap_or((0, 0));
    let range = NatRange::new(lo, hi, pmin, pmax).map_err(|e| e.to_string())?;
    match kind {
        NatKind::Src => spec.src = Some(range),
        NatKind::Dst => spec.dst = Some(range),
    }
    Ok(spec)
}
