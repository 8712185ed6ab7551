//! One bridge's control side: its flow tables, its ports as the control plane knows them, and
//! the datapath's view of the tables, kept in step by [`publish`](BridgeCtl::publish).
//!
//! Every change of the tables goes through one [`transaction`](BridgeCtl::transaction):
//! apply the changes, roll the tables' journal back when an all-or-nothing batch fails,
//! send FLOW_REMOVED for deleted flows that asked for it, publish. OpenFlow sessions, the node
//! agent, management commands and flow expiry all use it, so they cannot drift apart.

mod absent_port;
mod expiry;
mod learn;
mod port_factory;
mod publish;
mod transaction;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use flowtable::classifier::ClassifierBuilder;
use flowtable::table::Pipeline as FlowTables;
use flowtable::{FlowEntry, FlowMod};
use hashbrown::HashMap;

use crate::datapath::CacheStats;
use crate::datapath::counters::PortCounters;
use crate::datapath::drops::DropCounters;
use crate::datapath::meter::MeterEntry;
use crate::events::{AsyncEvent, PacketInHub};
use crate::pipeline::{FlowStats, GroupEntry, Pipeline, RuleRef};
use crate::portspec::PortSpec;

pub use absent_port::AbsentPort;
pub use port_factory::{Opened, open_port, underlay_iface, underlay_mtu};
pub use transaction::{Commit, FlowModCounts, Transaction};

/// One port as the control side knows it.
pub struct PortCtl {
    pub spec: PortSpec,
    pub ofport: u32,
    pub dp_id: usize,
    pub counters: Arc<PortCounters>,
    pub mac: [u8; 6],
    /// `OFPPC_*` bits set by `mod-port` (reported in PORT_DESC).
    pub config: u32,
    /// TAP ports: a second handle on the device, to see where it went and to delete it.
    pub tap: Option<tap_io::TapPort>,
    /// Where the TAP device lives when it is not in the switch's namespace (state file).
    pub moved: Option<crate::persist::format::MovedTap>,
    /// Where it was last seen (`Switch::refresh_tap_whereabouts` acts on changes only).
    pub tap_seen: Option<tap_io::tap::TapWhereabouts>,
    /// Ports on an existing interface (afpacket): the interface as the port opened it, so
    /// that `Switch::reattach_changed_interfaces` sees it recreated or its MTU changed.
    pub iface_seen: Option<IfaceSeen>,
    /// Tunnel ports with a local address: the underlay interface that had it when the port
    /// opened (its super-frames are redirected to that interface, its MTU bounds them).
    pub underlay_seen: Option<(String, IfaceSeen)>,
    /// A tunnel port that could not open yet (a fixed remote with no route to it or a
    /// `local_ip` on no interface; a port for any remote only when restored; a reopen on a
    /// changed underlay that failed): down, its I/O an `AbsentPort`, opened by
    /// `Switch::reattach_changed_interfaces` once it can.
    pub tunnel_waits: bool,
}

impl PortCtl {
    /// The port as OpenFlow describes it (`OFPST_PORT_DESC`, `show`): its `mod-port` bits,
    /// and `LINK_DOWN` when it is set down or its interface is not running (a pod's end set
    /// down, the interface deleted), else `LIVE`.
    pub fn desc(&self) -> openflow::switch::Port {
        use openflow::switch::{port_config, port_state};
        let link_down = self.config & port_config::PORT_DOWN != 0
            || self.tunnel_waits
            || (self.iface_seen.is_some()
                && !matches!(tap_io::iface::is_running(&self.spec.name), Ok(true)));
        openflow::switch::Port {
            port_no: self.ofport,
            hw_addr: self.mac,
            name: openflow::buf::FixedStr::new(&self.spec.name),
            config: self.config,
            state: if link_down {
                port_state::LINK_DOWN
            } else {
                port_state::LIVE
            },
            ..openflow::switch::Port::default()
        }
    }
}

/// An interface's identity and MTU when a port opened on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceSeen {
    pub ifindex: u32,
    pub mtu: usize,
    /// Up with a carrier (`IFF_RUNNING`): the port is live only then (Open vSwitch's
    /// `may_enable` for a port without CFM/BFD/LACP).
    pub running: bool,
}

impl IfaceSeen {
    /// No interface: what a port waiting for its interface saw (no interface has index 0, so
    /// any that appears under the name is new to it).
    pub const ABSENT: IfaceSeen = IfaceSeen {
        ifindex: 0,
        mtu: 0,
        running: false,
    };

    /// The same interface with the same MTU (its link may have gone down or up meanwhile).
    pub fn same_device(&self, other: &IfaceSeen) -> bool {
        self.ifindex == other.ifindex && self.mtu == other.mtu
    }

    /// The interface `name` now, if it exists.
    pub fn of(name: &str) -> Option<IfaceSeen> {
        Some(IfaceSeen {
            ifindex: tap_io::iface::ifindex(name).ok()?,
            mtu: tap_io::iface::mtu(name).ok()?,
            running: matches!(tap_io::iface::is_running(name), Ok(true)),
        })
    }
}

/// One bridge: its flow tables (the control state) and the datapath's view of them.
///
/// The tables change only inside [`BridgeCtl::transaction`], which publishes, rolls back and
/// reports removed flows the same way for every caller (OpenFlow sessions, the node agent,
/// management commands, flow expiry).
pub struct BridgeCtl {
    pub name: String,
    pub dp_index: usize,
    tables: FlowTables,
    pub ports: BTreeMap<u32, PortCtl>,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub drops: Arc<DropCounters>,
    /// Packets `sample` actions sampled, by collector set (the datapath's counters).
    pub samples: Arc<crate::datapath::sample::SampleCounters>,
    /// One per forwarding thread.
    pub cache_stats: Vec<Arc<CacheStats>>,
    version: u64,
    pub created: Instant,
    /// The datapath's view, kept in step with `tables` change by change (see `publish`).
    installed: Installed,
    /// Where FLOW_REMOVED messages go (shared with the switch).
    async_hub: Option<Arc<PacketInHub>>,
    /// Flows deleted for another reason than a delete flow-mod (expiry, group deletion), by
    /// key, until the next publish reports them to flow monitors with it (only kept while
    /// some connection monitors).
    removal_reasons: HashMap<FlowKeyOf, u8>,
    /// Flow-mods the tables took, by command and outcome (kept by `transaction`).
    pub flow_mod_counts: FlowModCounts,
    /// Rung after every publish (the state file's writer listens; see `Switch::changes`).
    pub on_change: Option<crossbeam_channel::Sender<()>>,
}

/// What `publish` has turned into classifiers and group entries so far.
#[derive(Default)]
pub struct Installed {
    /// `tables.lineage()` these were built from; another lineage means a full rebuild.
    lineage: u64,
    builders: BTreeMap<u8, ClassifierBuilder<Arc<RuleRef>>>,
    groups: HashMap<u32, Arc<GroupEntry>>,
    meters: HashMap<u32, Arc<MeterEntry>>,
}

impl BridgeCtl {
    /// A bridge with empty tables; nothing is published until the first transaction.
    pub fn new(
        name: &str,
        dp_index: usize,
        pipeline: Arc<ArcSwap<Pipeline>>,
        drops: Arc<DropCounters>,
        cache_stats: Vec<Arc<CacheStats>>,
        async_hub: Option<Arc<PacketInHub>>,
    ) -> BridgeCtl {
        BridgeCtl {
            name: name.to_string(),
            dp_index,
            tables: FlowTables::new(),
            ports: BTreeMap::new(),
            pipeline,
            drops,
            samples: Arc::default(),
            cache_stats,
            version: 0,
            created: Instant::now(),
            installed: Installed::default(),
            async_hub,
            removal_reasons: HashMap::new(),
            flow_mod_counts: FlowModCounts::default(),
            on_change: None,
        }
    }

    /// The flow tables as the control plane holds them (changes since the last publish included).
    pub fn tables(&self) -> &FlowTables {
        &self.tables
    }

    /// Whether changes wait for a publish (a deferred transaction left them).
    pub fn has_unpublished(&self) -> bool {
        self.tables.changes().next().is_some()
    }

    /// Publishes what deferred transactions changed (nothing to do when they changed nothing).
    pub fn publish_pending(&mut self) {
        if self.has_unpublished() {
            self.publish();
        }
    }

    /// The session-affinity memory of each select group that has one, by group id (what a
    /// graceful restart hands over).
    pub fn affinity_tables(&self) -> Vec<(u32, Arc<conntrack::lb::AffinityTable>)> {
        self.installed
            .groups
            .iter()
            .filter_map(|(id, e)| Some((*id, e.affinity.as_ref()?.0.clone())))
            .collect()
    }

    /// The datapath's entry of group `id` (when it was added), as last published.
    pub fn group_entry(&self, id: u32) -> Option<&Arc<GroupEntry>> {
        self.installed.groups.get(&id)
    }

    /// The datapath's entry of meter `id` (its counters), as last published.
    pub fn meter_entry(&self, id: u32) -> Option<&Arc<MeterEntry>> {
        self.installed.meters.get(&id)
    }

    /// Publishes the current tables (port changes use it: the pipeline carries the ports).
    pub fn publish(&mut self) {
        publish::publish(self);
        if let Some(tx) = &self.on_change {
            let _ = tx.try_send(());
        }
    }
}

pub const OFPRR_IDLE_TIMEOUT: u8 = 0;
pub const OFPRR_HARD_TIMEOUT: u8 = 1;
pub const OFPRR_DELETE: u8 = 2;
/// OpenFlow 1.3: the flow went with the group it sends to.
pub const OFPRR_GROUP_DELETE: u8 = 3;

/// A flow's key in its table: (table, priority, match).
type FlowKeyOf = (u8, u16, flowtable::Match);

fn key_of(e: &FlowEntry) -> FlowKeyOf {
    (e.table_id, e.priority, e.match_)
}

impl BridgeCtl {
    /// Flow monitors are to hear of these flows' deletion (in the next publish) with `reason`
    /// rather than `delete`.
    fn note_removal_reasons<'a>(&mut self, flows: impl Iterator<Item = &'a FlowEntry>, reason: u8) {
        if self
            .async_hub
            .as_ref()
            .is_some_and(|h| h.has_flow_monitors())
        {
            for e in flows {
                self.removal_reasons.insert(key_of(e), reason);
            }
        }
    }
}

/// Sends FLOW_REMOVED for the removed flows that asked for it (`send_flow_rem`), with their
/// final counters. None is lost (see `crate::events`).
fn report_removed(b: &BridgeCtl, removed: Vec<FlowEntry>, reason: u8) {
    let Some(hub) = b.async_hub.as_ref().filter(|h| h.has_subscribers(&b.name)) else {
        return;
    };
    for e in removed {
        if !e.flags.contains(flowtable::flow::FlowFlags::SEND_FLOW_REM) {
            continue;
        }
        let e = with_live_counters(b, &e);
        if let Some(msg) = crate::events::flow_removed_message(&e, reason) {
            hub.send(&b.name, AsyncEvent::FlowRemoved(msg));
        }
    }
}

/// Whether flow `e` is selected by the match, table and cookie of `f` (dump filters).
pub fn flow_selected(e: &FlowEntry, f: &FlowMod) -> bool {
    if f.table_id != flowtable::flow::TABLE_ALL && f.table_id != e.table_id {
        return false;
    }
    e.match_.is_subset_of(&f.match_)
        && (f.cookie_mask == 0 || (e.cookie & f.cookie_mask) == (f.cookie & f.cookie_mask))
}

/// A copy of `e` with the datapath's counters added in.
pub fn with_live_counters(b: &BridgeCtl, e: &FlowEntry) -> FlowEntry {
    use std::sync::atomic::Ordering::Relaxed;
    let mut e = e.clone();
    if let Some(s) = b.flow_stats(&e) {
        e.packets += s.packets.load(Relaxed);
        e.bytes += s.bytes.load(Relaxed);
    }
    e
}

impl BridgeCtl {
    /// Per table: the number of rules and of classifier subtables (distinct masks) the
    /// datapath looks up, as of the last publish.
    pub fn subtables(&self) -> BTreeMap<u8, (usize, usize)> {
        self.installed
            .builders
            .iter()
            .map(|(t, b)| (*t, (b.len(), b.n_subtables())))
            .collect()
    }

    /// The datapath counters of a flow: those of its installed rule (as of the last publish).
    pub fn flow_stats(&self, e: &FlowEntry) -> Option<&Arc<FlowStats>> {
        self.installed
            .builders
            .get(&e.table_id)?
            .find_exact(&e.match_.value, &e.match_.mask, u32::from(e.priority))
            .map(|r| &r.payload().stats)
    }
}

/// The bridge's datapath id: stable per bridge name, like OVS deriving it from a MAC.
pub fn dpid(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) & 0xffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtable::flow::FlowModCommand;
    use flowtable::text::{self, PrintOpts};

    fn bridge() -> BridgeCtl {
        BridgeCtl::new(
            "t",
            0,
            Arc::new(ArcSwap::from_pointee(Pipeline::empty())),
            Arc::new(DropCounters::default()),
            vec![Arc::new(CacheStats::default())],
            None,
        )
    }

    fn apply_flow_mods(b: &mut BridgeCtl, mods: &[(usize, FlowMod)]) -> Result<(), String> {
        b.transaction(Commit::Atomic, |tx| {
            for (_, fm) in mods {
                tx.flow_mod(fm).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    /// The published classifiers hold exactly the flows of the tables, with their actions.
    fn assert_in_step(b: &BridgeCtl) {
        let p = b.pipeline.load();
        let mut published: Vec<(u8, u16, String)> = Vec::new();
        for (t, cls) in p.tables.iter().enumerate() {
            for r in cls.iter() {
                let e = &r.payload().entry;
                assert_eq!(e.table_id as usize, t);
                published.push((
                    e.table_id,
                    e.priority,
                    text::print_flow(e, &PrintOpts::default()),
                ));
            }
        }
        let mut expected: Vec<(u8, u16, String)> = b
            .tables
            .flows()
            .iter()
            .map(|e| {
                (
                    e.table_id,
                    e.priority,
                    text::print_flow(e, &PrintOpts::default()),
                )
            })
            .collect();
        published.sort();
        expected.sort();
        assert_eq!(published, expected);
        let installed: usize = b.installed.builders.values().map(|t| t.len()).sum();
        assert_eq!(installed, expected.len(), "stale or missing rules");
    }

    #[test]
    fn incremental_publish_matches_the_tables_through_random_changes() {
        let mut b = bridge();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let table = next(3);
            let port = next(6) + 1;
            let prio = 10 * (next(3) + 1);
            let text = match next(5) {
                0 | 1 => format!(
                    "table={table},priority={prio},in_port={port},actions=output:{}",
                    next(4) + 1
                ),
                2 => format!("table={table},in_port={port},actions=drop"),
                3 => format!("table={table},in_port={port}"),
                _ => format!(
                    "table={table},priority={prio},ip,nw_dst=10.0.0.{port},actions=output:1"
                ),
            };
            let cmd = match next(5) {
                0..=2 => FlowModCommand::Add,
                3 => FlowModCommand::Modify,
                _ => FlowModCommand::Delete,
            };
            // A delete names no actions, and a priority only when strict (as ovs-ofctl).
            let (text, cmd) = match cmd {
                FlowModCommand::Delete => {
                    let m = text.split(",actions=").next().unwrap_or(&text).to_string();
                    let strict = m.contains("priority=");
                    (
                        m,
                        if strict {
                            FlowModCommand::DeleteStrict
                        } else {
                            cmd
                        },
                    )
                }
                _ => (text, cmd),
            };
            let fm = match text::parse_flow_mod(&text, cmd) {
                Ok(fm) => fm,
                // An add or modify without actions is refused (as by ovs-ofctl): skipped.
                Err(_) if matches!(cmd, FlowModCommand::Add | FlowModCommand::Modify) => continue,
                Err(e) => panic!("round {round}: '{text}': {e}"),
            };
            let _ = apply_flow_mods(&mut b, &[(1, fm)]);
            if round % 50 == 49 {
                // A fresh table set (replace-flows) takes the full-rebuild path.
                let kept = b.tables.clone();
                b.tables = FlowTables::new();
                for e in kept.flows() {
                    let fm = FlowMod {
                        table_id: e.table_id,
                        priority: e.priority,
                        match_: e.match_,
                        instructions: (*e.instructions).clone(),
                        ..FlowMod::default()
                    };
                    b.tables.flow_mod(&fm, Instant::now()).unwrap();
                }
                b.publish();
            }
            assert_in_step(&b);
        }
    }

    #[test]
    fn a_failed_batch_changes_nothing() {
        let mut b = bridge();
        let ok = text::parse_flow_mod("priority=5,in_port=1,actions=output:2", FlowModCommand::Add)
            .unwrap();
        apply_flow_mods(&mut b, &[(1, ok)]).unwrap();
        let before: Vec<String> = b
            .tables
            .flows()
            .iter()
            .map(|e| text::print_flow(e, &PrintOpts::default()))
            .collect();
        let good =
            text::parse_flow_mod("priority=6,in_port=2,actions=output:1", FlowModCommand::Add)
                .unwrap();
        let bad =
            text::parse_flow_mod("priority=7,in_port=3,actions=group:99", FlowModCommand::Add)
                .unwrap();
        assert!(apply_flow_mods(&mut b, &[(1, good), (2, bad)]).is_err());
        let after: Vec<String> = b
            .tables
            .flows()
            .iter()
            .map(|e| text::print_flow(e, &PrintOpts::default()))
            .collect();
        assert_eq!(before, after);
        assert_in_step(&b);
    }
}
