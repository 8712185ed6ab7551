//! `publish`: turns the tables' journal into classifier changes and swaps the new datapath
//! snapshot in.

use std::sync::Arc;

use flowtable::classifier::ClassifierBuilder;
use flowtable::table::JournalEntry;
use flowtable::{FlowEntry, Match};
use hashbrown::HashMap;

use super::{BridgeCtl, Installed, OFPRR_DELETE};
use crate::datapath::meter::MeterEntry;
use crate::events::{AsyncEvent, PacketInHub};
use crate::pipeline::{FlowStats, GroupEntry, Pipeline, PortInfo, RuleRef, TableClassifier};

/// Brings the datapath's snapshot in line with the control state and swaps it in.
///
/// Only what the tables' journal says changed is re-installed: a classifier rule is removed or
/// inserted per changed flow, only the touched tables get a new classifier snapshot, and the
/// other tables' snapshots are shared with the previous pipeline. A table set of another
/// lineage (replace-flows builds a fresh one) is installed from scratch.
pub(super) fn publish(b: &mut BridgeCtl) {
    b.version += 1;
    let previous = b.pipeline.load_full();
    let mut dirty: std::collections::BTreeSet<u8> = std::collections::BTreeSet::new();
    // Flow changes for flow monitors: (old, new) per changed flow, only while some connection
    // monitors (the work is skipped otherwise).
    let monitoring = b.async_hub.as_ref().is_some_and(|h| h.has_flow_monitors());
    let mut changes: Vec<(Option<FlowEntry>, Option<FlowEntry>)> = Vec::new();
    let inst = &mut b.installed;
    if inst.lineage != b.tables.lineage() {
        let old = std::mem::replace(
            inst,
            Installed {
                lineage: b.tables.lineage(),
                ..Installed::default()
            },
        );
        for e in b.tables.flows() {
            // A flow that was installed before keeps its counters.
            let was = old
                .builders
                .get(&e.table_id)
                .and_then(|t| t.find_exact(&e.match_.value, &e.match_.mask, u32::from(e.priority)));
            if monitoring {
                changes.push((was.map(|r| r.payload().entry.clone()), Some(e.clone())));
            }
            let stats = was.map(|r| r.payload().stats.clone()).unwrap_or_default();
            install_rule(inst, e, stats);
            dirty.insert(e.table_id);
        }
        if monitoring {
            for t in old.builders.values() {
                for r in t.iter() {
                    let e = &r.payload().entry;
                    if b.tables.get(e.table_id, &e.match_, e.priority).is_none() {
                        changes.push((Some(e.clone()), None));
                    }
                }
            }
        }
        for g in b.tables.groups() {
            let entry = GroupEntry::replacing(g.clone(), previous.groups.get(&g.id).map(|e| &**e));
            inst.groups.insert(g.id, Arc::new(entry));
        }
        for m in b.tables.meters() {
            let entry = meter_entry(m, previous.meters.get(&m.id));
            inst.meters.insert(m.id, entry);
        }
        // Tables that had flows before and have none now must be emptied too.
        dirty.extend((0..previous.tables.len()).map(|t| t as u8));
    } else {
        // In journal order, duplicates included: re-installing a key twice is harmless and
        // cheaper than de-duplicating large keys. The journal is read in place (its keys are
        // large) while the other fields of `b` change.
        let tables = &b.tables;
        let mut seen = SeenFilter::new(tables.journal_len());
        for c in tables.journal() {
            match c {
                JournalEntry::Flow {
                    table,
                    match_,
                    priority,
                    was_present,
                    reset_counts,
                } => {
                    // A key's first journal entry tells whether it was installed; only then,
                    // or when the key may have come up earlier in this pass, look for its
                    // rule (a table holds one flow per (match, priority), as does its
                    // classifier, so the rule is found by its masked value).
                    let may_be_installed = seen.check_and_set(table, match_, priority);
                    // The replaced rule's counters go to its successor (an add over a flow or a
                    // modify keeps them, as in Open vSwitch, unless `reset_counts`).
                    let mut replaced = None;
                    if (was_present || may_be_installed)
                        && let Some(builder) = inst.builders.get_mut(&table)
                        && let Some(id) = builder
                            .find_exact(&match_.value, &match_.mask, u32::from(priority))
                            .map(|r| r.id())
                    {
                        replaced = builder.remove(id);
                    }
                    let now = tables.get(table, match_, priority);
                    if monitoring {
                        changes.push((
                            replaced.as_ref().map(|r| r.payload().entry.clone()),
                            now.cloned(),
                        ));
                    }
                    if let Some(e) = now {
                        // Unless the key held no flow just before this change: deleted and
                        // added again before this publish, it is a new flow, counted from 0
                        // (the rule found was put in earlier in this pass, from the tables
                        // as they are now, with the deleted flow's counters).
                        let stats = replaced.filter(|_| was_present).map(|r| {
                            let old = &r.payload().stats;
                            if reset_counts {
                                Arc::new(FlowStats::counts_reset(old))
                            } else {
                                old.clone()
                            }
                        });
                        install_rule(inst, e, stats.unwrap_or_default());
                    }
                    dirty.insert(table);
                }
                JournalEntry::Group { id, was_present } => match tables.group(id) {
                    Some(g) => {
                        let entry = match inst.groups.get(&id) {
                            Some(e) if e.group == *g && was_present => e.clone(),
                            old => {
                                let e = GroupEntry::replacing(g.clone(), old.map(|e| &**e));
                                // Added (again): its duration and counters start now.
                                Arc::new(if was_present { e } else { e.added_anew() })
                            }
                        };
                        inst.groups.insert(id, entry);
                    }
                    None => {
                        inst.groups.remove(&id);
                    }
                },
                JournalEntry::Meter(id) => match tables.meter(id) {
                    Some(m) => {
                        let entry = meter_entry(m, inst.meters.get(&id));
                        inst.meters.insert(id, entry);
                    }
                    None => {
                        inst.meters.remove(&id);
                    }
                },
            }
        }
    }
    b.tables.clear_journal();
    let empty: Arc<TableClassifier> = ClassifierBuilder::new().snapshot();
    let max_table = inst
        .builders
        .iter()
        .filter(|(_, bl)| !bl.is_empty())
        .map(|(t, _)| *t as usize + 1)
        .max()
        .unwrap_or(0);
    let mut tables: Vec<Arc<TableClassifier>> = (0..max_table)
        .map(|t| {
            previous
                .tables
                .get(t)
                .cloned()
                .unwrap_or_else(|| empty.clone())
        })
        .collect();
    for t in dirty {
        if let Some(slot) = tables.get_mut(t as usize) {
            // No builder: the table has no flows in a replaced set (replace-flows), and its
            // slot still holds the old set's rules.
            *slot = match inst.builders.get_mut(&t) {
                Some(builder) => builder.snapshot(),
                None => empty.clone(),
            };
        }
    }
    // An emptied table's builder still holds its last snapshot (the deleted rules): drop it
    // now rather than on the table's next change.
    inst.builders.retain(|_, bl| !bl.is_empty());
    let meters = inst.meters.clone();
    let mut ports = HashMap::new();
    for p in b.ports.values() {
        let tunnel = p.spec.tunnel.as_ref();
        ports.insert(
            p.ofport,
            PortInfo {
                ofport: p.ofport,
                dp_id: p.dp_id as u32,
                name: p.spec.name.clone(),
                kind: p.spec.kind,
                remote_ip: tunnel.map(|t| t.remote_ip),
                key: tunnel.map(|t| t.key),
                // Open vSwitch's `may_enable` for a port without CFM/BFD/LACP is its carrier,
                // which `mod-port down` takes away (the device goes administratively down), as
                // does the interface losing its link (a pod's end set down; the port watcher
                // notices within a second).
                live: p.config & openflow::switch::port_config::PORT_DOWN == 0
                    && p.iface_seen.is_none_or(|s| s.running)
                    && !p.tunnel_waits,
                vlan: p.spec.vlan.role(),
            },
        );
    }
    // Select groups leave out the buckets whose watched port or group is dead: rebuilt when
    // that changed (a port went down or up, a watched group changed).
    let relived: Vec<(u32, Arc<GroupEntry>)> = inst
        .groups
        .iter()
        .filter_map(|(id, e)| Some((*id, Arc::new(e.relive(&ports, &inst.groups)?))))
        .collect();
    inst.groups.extend(relived);
    let groups = inst.groups.clone();
    let port_order = b.ports.keys().copied().collect();
    let vlan_roles = ports.values().any(|p| !p.vlan.is_plain_trunk());
    let replaced = b.pipeline.swap(Arc::new(Pipeline {
        version: b.version,
        tables,
        groups,
        meters,
        ports,
        port_order,
        vlan_roles,
        packet_out: None,
        table_counts: previous.table_counts.clone(),
    }));
    // The replaced pipeline holds the changed tables' old classifier snapshots: free them here,
    // once the forwarding threads are out of their bursts, not on a forwarding thread.
    drop(previous);
    flowtable::grace::drop_after_readers(replaced, flowtable::grace::PATIENCE);
    if let Some(hub) = b.async_hub.as_ref().filter(|_| !changes.is_empty()) {
        report_flow_changes(hub, &b.name, changes, &b.removal_reasons);
    }
    b.removal_reasons.clear();
}

/// The datapath entry for meter `m`: the installed one while its configuration is the same
/// (buckets and counters go on), else a fresh one that keeps the old one's age, as Open
/// vSwitch sets a modified meter up anew in its datapath but keeps its duration.
fn meter_entry(m: &flowtable::Meter, old: Option<&Arc<MeterEntry>>) -> Arc<MeterEntry> {
    match old {
        Some(e) if e.meter == *m => e.clone(),
        old => Arc::new(MeterEntry::new(
            m.clone(),
            old.map_or_else(std::time::Instant::now, |e| e.created),
        )),
    }
}

/// Turns (before, after) pairs of changed flows into flow-monitor events. A flow whose
/// actions and cookie did not change (re-installed as is) is no event. A deleted flow's
/// reason is `delete` unless `reasons` has another for it (expiry, group deletion).
fn report_flow_changes(
    hub: &PacketInHub,
    bridge: &str,
    changes: Vec<(Option<FlowEntry>, Option<FlowEntry>)>,
    reasons: &HashMap<super::FlowKeyOf, u8>,
) {
    use openflow::monitor::event;
    for (old, new) in changes {
        let reason = match (&old, &new) {
            (Some(old), None) => reasons
                .get(&super::key_of(old))
                .copied()
                .unwrap_or(OFPRR_DELETE),
            _ => OFPRR_DELETE,
        };
        let (ev, entry) = match (old, new) {
            (None, Some(new)) => (event::ADDED, new),
            (Some(old), None) => (event::DELETED, old),
            (Some(old), Some(new))
                if old.instructions != new.instructions || old.cookie != new.cookie =>
            {
                (event::MODIFIED, new)
            }
            _ => continue,
        };
        hub.send(
            bridge,
            AsyncEvent::FlowUpdate {
                event: ev,
                reason,
                entry: Arc::new(entry),
            },
        );
    }
}

/// Keys already met in one `publish` pass, approximately: a bitmap of key hashes. "No" is
/// exact (the key was not met), "yes" may be a collision, which only costs a lookup.
struct SeenFilter {
    bits: Vec<u64>,
}

impl SeenFilter {
    fn new(n: usize) -> SeenFilter {
        // ~16 bits per key keeps collisions rare; at least one word.
        let words = (n * 16 / 64).next_power_of_two().max(1);
        SeenFilter {
            bits: vec![0; words],
        }
    }

    /// Whether the key may have been met before; marks it as met.
    fn check_and_set(&mut self, table: u8, m: &Match, priority: u16) -> bool {
        let mut h = (u64::from(table) << 16 | u64::from(priority)) ^ 0x9e37_79b9_7f4a_7c15;
        for (v, k) in m.value.words().iter().zip(m.mask.words()) {
            h = (h ^ v ^ k.rotate_left(32)).wrapping_mul(0x100_0000_01b3);
            h ^= h >> 29;
        }
        let bit = (h as usize) & (self.bits.len() * 64 - 1);
        let (w, b) = (bit / 64, 1u64 << (bit % 64));
        let was = self.bits[w] & b != 0;
        self.bits[w] |= b;
        was
    }
}

fn install_rule(inst: &mut Installed, e: &FlowEntry, stats: Arc<FlowStats>) {
    inst.builders.entry(e.table_id).or_default().insert(
        &e.match_.value,
        &e.match_.mask,
        e.priority as u32,
        Arc::new(RuleRef::new(e.clone(), stats)),
    );
}
