//! The immutable pipeline snapshot the datapath reads: classifiers per table, groups, ports.
//!
//! The control side builds a new `Pipeline` after every batch of changes and swaps it in with
//! `ArcSwap::store`; the datapath loads it once per batch. A packet therefore sees either all
//! of a change or none of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use flowtable::classifier::{Classifier, Conjunction};
use flowtable::{Bucket, FlowEntry, Group, GroupType, OfPort};
use hashbrown::HashMap;

use conntrack::lb::AffinityTable;
use conntrack::lb::maglev::{Backend, Maglev};

/// Counters of one OpenFlow rule, shared by every snapshot that holds the rule.
#[derive(Debug, Default)]
pub struct FlowStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Datapath clock (ns) of the last hit, for idle timeouts.
    pub used_ns: AtomicU64,
}

impl FlowStats {
    #[inline]
    pub fn hit(&self, packets: u64, bytes: u64, now_ns: u64) {
        self.packets.fetch_add(packets, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        self.used_ns.store(now_ns, Relaxed);
    }

    /// (packets, bytes) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.packets.load(Relaxed), self.bytes.load(Relaxed))
    }

    /// Fresh counts with `old`'s idle timer (`reset_counts`: Open vSwitch resets only the
    /// packet and byte counts).
    pub fn counts_reset(old: &FlowStats) -> FlowStats {
        let fresh = FlowStats::default();
        fresh.used_ns.store(old.used_ns.load(Relaxed), Relaxed);
        fresh
    }

    /// Takes over another entry's counts (a revalidated megaflow keeps its history).
    pub fn carry_over(&self, old: &FlowStats) {
        self.packets.store(old.packets.load(Relaxed), Relaxed);
        self.bytes.store(old.bytes.load(Relaxed), Relaxed);
        self.used_ns.store(old.used_ns.load(Relaxed), Relaxed);
    }
}

/// A rule as the datapath sees it: the flow entry and its live counters.
#[derive(Debug)]
pub struct RuleRef {
    pub entry: FlowEntry,
    pub stats: Arc<FlowStats>,
    /// Its `conjunction(..)` actions: non-empty makes it one clause of a conjunctive match.
    pub conj: Box<[Conjunction]>,
}

impl RuleRef {
    pub fn new(entry: FlowEntry, stats: Arc<FlowStats>) -> RuleRef {
        let conj = entry
            .instructions
            .apply
            .iter()
            .filter_map(|a| match a {
                flowtable::Action::Conjunction {
                    id,
                    clause,
                    n_clauses,
                } => Some(Conjunction {
                    id: *id,
                    clause: clause.saturating_sub(1),
                    n_clauses: *n_clauses,
                }),
                _ => None,
            })
            .collect();
        RuleRef { entry, stats, conj }
    }

    /// The classifier's view of [`RuleRef::conj`].
    pub fn conjunctions(rule: &Arc<RuleRef>) -> &[Conjunction] {
        &rule.conj
    }
}

/// What the datapath needs to know about a port of the bridge.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub ofport: u32,
    pub dp_id: u32,
    pub name: String,
    pub kind: PortKind,
    pub remote_ip: Option<FromFlow<std::net::IpAddr>>,
    pub key: Option<FromFlow<u32>>,
    pub live: bool,
    /// Its VLAN role for NORMAL (`tag=`, `trunks=`, `vlan_mode=`).
    pub vlan: crate::port_vlan::VlanRole,
}

pub type TableClassifier = Classifier<Arc<RuleRef>>;

/// A group as the datapath uses it: select groups carry a Maglev table over their buckets, so
/// adding or removing a backend moves only about 1/N of the flows (established connections keep
/// their backend anyway: conntrack remembers the DNAT).
#[derive(Debug)]
pub struct GroupEntry {
    pub group: Group,
    pub maglev: Option<Maglev>,
    /// Per bucket, its identity: a hash of its actions (what Maglev and affinity know it by).
    pub bucket_ids: Vec<u64>,
    /// Per bucket, the weight a select group chooses it with: its own, or 0 while the port or
    /// group it watches is not live (Open vSwitch skips dead buckets). Set when the pipeline
    /// is published ([`GroupEntry::replacing_live`]); the bucket keeps its id, so only a dead
    /// bucket's flows move.
    pub weights: Vec<u16>,
    /// A select group some bucket of which watches a port or a group.
    watches: bool,
    /// `affinity_timeout`: the clients' remembered buckets (kept across group changes) and the
    /// timeout in ns.
    pub affinity: Option<(Arc<AffinityTable>, u64)>,
    /// When the group was added (its OpenFlow group stats' duration). A modified group keeps
    /// it, as in Open vSwitch (`modify_group_start`); a deleted and re-added one starts anew.
    pub created: std::time::Instant,
    /// Its packet and byte counters and its buckets'. They survive a publish that leaves the
    /// group as it is (a bucket's liveness changing included); a group modified into another
    /// one, or deleted and added again, counts from 0, as Open vSwitch's new group does.
    pub counts: Arc<GroupCounts>,
}

/// Per table, the packets whose lookup found a rule and those whose lookup found none (OpenFlow
/// table stats: `lookup` is their sum). A walk puts one of them in its cached flow's counters
/// for every lookup it makes, as Open vSwitch's translation cache does, so the datapath adds
/// to them once per turn like to a rule's.
#[derive(Debug)]
pub struct TableCounts {
    pub matched: Box<[Arc<FlowStats>]>,
    pub missed: Box<[Arc<FlowStats>]>,
}

impl Default for TableCounts {
    fn default() -> Self {
        let tables = || (0..=u8::MAX).map(|_| Arc::default()).collect();
        TableCounts {
            matched: tables(),
            missed: tables(),
        }
    }
}

impl TableCounts {
    /// (lookups, matches) of table `id`.
    pub fn of(&self, id: u8) -> (u64, u64) {
        let matched = self.matched[usize::from(id)].counts().0;
        (matched + self.missed[usize::from(id)].counts().0, matched)
    }
}

/// A group's traffic counters: the group's own and one per bucket. The slow path puts them in
/// a cached flow's counters like a rule's (`DpAction::Select` keeps each branch's), so the
/// datapath adds to them once per turn (a select branch's packets are first summed in the
/// forwarding thread's own window).
#[derive(Debug)]
pub struct GroupCounts {
    pub group: Arc<FlowStats>,
    pub buckets: Box<[Arc<FlowStats>]>,
}

impl GroupCounts {
    pub fn new(buckets: usize) -> GroupCounts {
        GroupCounts {
            group: Arc::default(),
            buckets: (0..buckets).map(|_| Arc::default()).collect(),
        }
    }
}

impl GroupEntry {
    pub fn new(group: Group) -> GroupEntry {
        GroupEntry::replacing(group, None)
    }

    /// The entry for `group`, keeping the affinity memory and the creation time of the entry
    /// it replaces.
    pub fn replacing(group: Group, old: Option<&GroupEntry>) -> GroupEntry {
        let live = vec![true; group.buckets.len()];
        GroupEntry::replacing_live(group, old, &live)
    }

    /// [`replacing`](Self::replacing), with the buckets `live` says are dead (false) left out
    /// of the selection.
    fn replacing_live(group: Group, old: Option<&GroupEntry>, live: &[bool]) -> GroupEntry {
        let bucket_ids = bucket_ids(&group);
        let weights: Vec<u16> = group
            .buckets
            .iter()
            .zip(live.iter().chain(std::iter::repeat(&true)))
            .map(|(b, l)| if *l { b.weight } else { 0 })
            .collect();
        let select = group.group_type == GroupType::Select;
        let watches = select
            && group.buckets.iter().any(|b| {
                b.watch_port != OfPort::ANY || b.watch_group != flowtable::group::GROUP_ANY
            });
        let maglev = select
            .then(|| build_maglev(&bucket_ids, &weights))
            .flatten();
        let affinity = group.affinity_timeout.filter(|_| select).map(|secs| {
            let table = old
                .and_then(|o| o.affinity.as_ref())
                .map(|(t, _)| t.clone())
                .unwrap_or_default();
            (table, u64::from(secs) * 1_000_000_000)
        });
        let counts = match old {
            Some(o) if o.group == group => o.counts.clone(),
            _ => Arc::new(GroupCounts::new(group.buckets.len())),
        };
        GroupEntry {
            group,
            maglev,
            bucket_ids,
            weights,
            watches,
            affinity,
            created: old.map_or_else(std::time::Instant::now, |o| o.created),
            counts,
        }
    }

    /// The entry of a group added (again): its duration and its counters start now.
    pub fn added_anew(mut self) -> GroupEntry {
        self.created = std::time::Instant::now();
        self.counts = Arc::new(GroupCounts::new(self.group.buckets.len()));
        self
    }

    /// The entry again, when the liveness of its buckets (see [`bucket_live`]) is no longer
    /// what its weights say: a select group some bucket of which watches a port or group,
    /// after a port went down or up or a watched group changed. The publish of a new pipeline
    /// asks every group, with the new pipeline's ports and groups.
    pub fn relive(
        &self,
        ports: &HashMap<u32, PortInfo>,
        groups: &HashMap<u32, Arc<GroupEntry>>,
    ) -> Option<GroupEntry> {
        if !self.watches {
            return None;
        }
        let g = &self.group;
        // A budget per bucket: every bucket is asked (a fast-failover group stops at the first
        // live one).
        let live: Vec<bool> = g
            .buckets
            .iter()
            .map(|b| {
                let mut budget = MAX_LIVENESS_BUCKETS;
                bucket_live(ports, groups, g.group_type, b, 0, &mut budget)
            })
            .collect();
        let same = g
            .buckets
            .iter()
            .zip(&live)
            .zip(&self.weights)
            .all(|((b, l), w)| *w == if *l { b.weight } else { 0 });
        (!same).then(|| GroupEntry::replacing_live(g.clone(), Some(self), &live))
    }

    /// The select bucket for a flow hash: Maglev's choice, or a plain weighted hash when no
    /// Maglev table could be built. `None` when no bucket has a weight. The slow path and the
    /// datapath (`DpAction::Select`) both choose through here, so they always agree.
    pub fn pick(&self, hash: u64) -> Option<usize> {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        if let Some(i) = self.maglev.as_ref().and_then(|m| m.pick(hash)) {
            return Some(i);
        }
        let h = hash % total;
        let mut acc = 0u64;
        Some(
            self.weights
                .iter()
                .position(|w| {
                    acc += u64::from(*w);
                    h < acc
                })
                .unwrap_or(0),
        )
    }

    /// No bucket can be chosen: every one has weight 0 or is dead.
    pub fn none_selectable(&self) -> bool {
        self.weights.iter().all(|w| *w == 0)
    }
}

/// Groups a bucket's liveness follows through `watch_group` (Open vSwitch's
/// `MAX_LIVENESS_RECURSION`).
const MAX_LIVENESS_DEPTH: u32 = 32;

/// Buckets one liveness question may look at through `watch_group` chains.
pub const MAX_LIVENESS_BUCKETS: u32 = 1024;

/// Open vSwitch's `bucket_is_alive`: a bucket is live when it watches nothing, when the port
/// it watches is live, or when the group it watches has a live bucket (followed at most
/// [`MAX_LIVENESS_DEPTH`] groups deep). A select bucket of weight 0 never is. `budget`
/// counts the buckets looked at: `watch_group` may form cycles (the group table refuses loops
/// only through actions) and a walk of every path would be exponential, so a walk that runs
/// out of it takes the bucket as dead.
pub fn bucket_live(
    ports: &HashMap<u32, PortInfo>,
    groups: &HashMap<u32, Arc<GroupEntry>>,
    group_type: GroupType,
    b: &Bucket,
    depth: u32,
    budget: &mut u32,
) -> bool {
    if *budget == 0
        || depth >= MAX_LIVENESS_DEPTH
        || (group_type == GroupType::Select && b.weight == 0)
    {
        return false;
    }
    *budget -= 1;
    let (port, group) = (
        b.watch_port != OfPort::ANY,
        b.watch_group != flowtable::group::GROUP_ANY,
    );
    (!port && !group)
        || (port && ports.get(&b.watch_port.0).is_some_and(|p| p.live))
        || (group
            && groups.get(&b.watch_group).is_some_and(|e| {
                e.group
                    .buckets
                    .iter()
                    .any(|w| bucket_live(ports, groups, e.group.group_type, w, depth + 1, budget))
            }))
}

/// Bucket ids come from the bucket's actions, so a bucket keeps its id (and its slots) when
/// other buckets come and go. Identical buckets are told apart by position. The hash is of
/// the actions' flow text with FNV-1a, defined bit for bit: the ids (and the session-affinity
/// memory handed over by them) stay the same across builds and toolchains, which std's
/// `DefaultHasher` and the derived `Hash` of the action types do not promise.
fn bucket_ids(group: &Group) -> Vec<u64> {
    let mut ids: Vec<u64> = Vec::with_capacity(group.buckets.len());
    for (i, b) in group.buckets.iter().enumerate() {
        let mut id = fnv1a(flowtable::text::print_actions(&b.actions).as_bytes());
        if ids.contains(&id) {
            id ^= (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        ids.push(id);
    }
    ids
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn build_maglev(ids: &[u64], weights: &[u16]) -> Option<Maglev> {
    let backends: Vec<Backend> = ids
        .iter()
        .zip(weights)
        .map(|(id, w)| Backend {
            id: *id,
            weight: u32::from(*w),
        })
        .collect();
    Maglev::new(&backends, maglev_size(backends.len())).ok()
}

/// Table size: a prime with at least ~128 slots per backend (Maglev's balance needs M >> N). It
/// must not change when a backend comes or goes (a new M reshuffles everything), so it moves in
/// coarse steps only; small groups stay small so that thousands of Services stay cheap.
fn maglev_size(n: usize) -> usize {
    match n {
        0..=8 => 1021,
        9..=64 => 8191,
        _ => conntrack::lb::maglev::DEFAULT_TABLE_SIZE,
    }
}

pub struct Pipeline {
    pub version: u64,
    /// Index = table id (0..=254); tables without flows share one empty classifier.
    pub tables: Vec<Arc<TableClassifier>>,
    pub groups: HashMap<u32, Arc<GroupEntry>>,
    /// Meters by id, with their buckets and counters.
    pub meters: HashMap<u32, Arc<crate::datapath::meter::MeterEntry>>,
    pub ports: HashMap<u32, PortInfo>,
    /// Ports in ofport order, for FLOOD/ALL.
    pub port_order: Vec<u32>,
    /// Some port has a VLAN role other than a trunk of every VLAN: NORMAL may retag frames.
    /// Without one it sends every frame as it came and skips the role checks.
    pub vlan_roles: bool,
    /// A PACKET_OUT's actions as a one-rule pseudo-table, in the one-off pipeline the packet
    /// runs through (`None` in every published one): it takes table 0's place for the walk's
    /// first lookup only, so a `resubmit(,0)`, `output:TABLE` or `ct(table=0)` of the walk
    /// meets the bridge's own table 0. No action can name it.
    pub packet_out: Option<Arc<TableClassifier>>,
    /// The bridge's table lookup counters, the same in every snapshot.
    pub table_counts: Arc<TableCounts>,
}

impl Pipeline {
    pub fn empty() -> Pipeline {
        Pipeline {
            version: 0,
            tables: Vec::new(),
            groups: HashMap::new(),
            meters: HashMap::new(),
            ports: HashMap::new(),
            port_order: Vec::new(),
            vlan_roles: false,
            packet_out: None,
            table_counts: Arc::default(),
        }
    }

    pub fn table(&self, id: u8) -> Option<&TableClassifier> {
        self.tables.get(id as usize).map(|t| &**t)
    }

    pub fn port_by_dp_id(&self, dp_id: u32) -> Option<&PortInfo> {
        self.ports.values().find(|p| p.dp_id == dp_id)
    }
}

/// The back end of a port (the datapath sends and receives differently for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// An existing kernel interface (a pod's veth end, an uplink) read through an AF_PACKET ring.
    AfPacket,
    /// A TAP device, created if it does not exist.
    Tap,
    /// A VXLAN tunnel port over the kernel's UDP stack.
    Vxlan,
    /// A Geneve tunnel port over the kernel's UDP stack (as VXLAN, another header).
    Geneve,
    /// The bridge's own kernel interface (a TAP device named like the port).
    Internal,
}

impl PortKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::AfPacket => "afpacket",
            PortKind::Tap => "tap",
            PortKind::Vxlan => "vxlan",
            PortKind::Geneve => "geneve",
            PortKind::Internal => "internal",
        }
    }

    /// A UDP tunnel (VXLAN, Geneve): frames carry tunnel metadata in and out.
    pub fn is_tunnel(self) -> bool {
        matches!(self, PortKind::Vxlan | PortKind::Geneve)
    }
}

/// A tunnel parameter fixed per port or taken per packet from the flow (`options:key=flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromFlow<T> {
    Fixed(T),
    Flow,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids are part of the handover (session affinity): pinned, so a change of hash,
    /// text or toolchain that would move them shows here.
    #[test]
    fn bucket_ids_are_stable_across_builds() {
        let gm = flowtable::text::parse_group_mod(
            "group_id=1,type=select,bucket=weight:1,actions=ct(commit,table=40,zone=1,nat(dst=172.16.1.12:8080)),bucket=weight:1,actions=output:2,bucket=weight:1,actions=output:2",
            flowtable::group::GroupModCommand::Add,
        )
        .unwrap();
        let ids = bucket_ids(&gm.group);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            ids[0],
            fnv1a(b"ct(commit,table=40,zone=1,nat(dst=172.16.1.12:8080))")
        );
        assert_eq!(ids[1], fnv1a(b"output:2"));
        assert_ne!(ids[2], ids[1], "identical buckets are told apart");
    }
}
