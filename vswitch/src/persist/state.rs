//! Capturing the switch's configuration into a [`StateFile`] and putting it back.
//!
//! Restoring parses and checks the whole file before it changes anything; then the node agent
//! re-applies its inputs with its saved numbering (so it recompiles the same pipeline and
//! knows what it installed), then every bridge gets its saved ports and, in one transaction,
//! exactly its saved groups and flows (flows added with `ovs-ofctl` or `vswitchctl` included).

use std::time::Instant;

use flowtable::FlowMod;
use flowtable::flow::FlowModCommand;
use flowtable::group::GroupModCommand;
use flowtable::table::{Pipeline as FlowTables, TableError};
use flowtable::text;

use openflow::switch::port_config;

use super::format::{SavedBridge, SavedCtLimits, SavedPort, StateFile};
use crate::bridge::Commit;
use crate::control::Control;
use crate::portspec::{PortSpec, PortSpecError};
use crate::switch::Switch;

/// The configuration of `control`'s switch and agent as a state file.
pub fn capture(control: &Control) -> StateFile {
    let agent = control.agent.saved();
    let bridges = control
        .switch
        .lock()
        .values()
        .map(|b| SavedBridge {
            name: b.name.clone(),
            ports: b
                .ports
                .values()
                .map(|p| {
                    let spec = PortSpec {
                        ofport: Some(p.ofport),
                        ..p.spec.clone()
                    };
                    SavedPort {
                        name: p.spec.name.clone(),
                        args: spec.to_args(),
                        mod_port: mod_port_words(p.config),
                        moved: p.moved.clone(),
                    }
                })
                .collect(),
            groups: b
                .tables()
                .groups()
                .map(|g| text::print_group_full(g).trim_start().to_string())
                .collect(),
            meters: b.tables().meters().map(text::print_meter_line).collect(),
            flows: b
                .tables()
                .flows()
                .iter()
                .map(|e| text::print_flow_mod(&adding(e)))
                .collect(),
        })
        .collect();
    StateFile::new(bridges, agent).with_ct_limits(ct_limits(control))
}

/// The `mod-port` words of a port's `OFPPC_*` bits, and back.
const MOD_PORT_WORDS: [(u32, &str); 3] = [
    (port_config::PORT_DOWN, "down"),
    (port_config::NO_RECV, "no-receive"),
    (port_config::NO_FWD, "no-forward"),
];

fn mod_port_words(config: u32) -> Vec<String> {
    MOD_PORT_WORDS
        .iter()
        .filter(|(bit, _)| config & bit != 0)
        .map(|(_, w)| (*w).to_string())
        .collect()
}

fn mod_port_bits(words: &[String]) -> Result<u32, String> {
    words.iter().try_fold(0, |acc, w| {
        MOD_PORT_WORDS
            .iter()
            .find(|(_, name)| name == w)
            .map(|(bit, _)| acc | bit)
            .ok_or_else(|| format!("unknown mod_port setting '{w}' (down, no-receive, no-forward)"))
    })
}

/// The `ct-set-limits` settings in force (`None`: none set).
fn ct_limits(control: &Control) -> Option<SavedCtLimits> {
    let ct = &control.switch.dp.ct;
    let zones: std::collections::BTreeMap<u16, u32> =
        ct.zone_limits().iter().map(|z| (z.zone, z.limit)).collect();
    let default = ct.default_zone_limit();
    (default != 0 || !zones.is_empty()).then_some(SavedCtLimits { default, zones })
}

/// One bridge of the file, parsed and checked.
struct Planned {
    name: String,
    ports: Vec<SavedPort>,
    tables: FlowTables,
}

/// Parses and checks a saved bridge without touching the switch.
fn plan(b: &SavedBridge) -> Result<Planned, String> {
    let ctx = |what: &str, e: &dyn std::fmt::Display| format!("bridge {}: {what}: {e}", b.name);
    let mut ports = Vec::with_capacity(b.ports.len());
    for p in &b.ports {
        mod_port_bits(&p.mod_port).map_err(|e| ctx(&format!("port {}", p.name), &e))?;
        match PortSpec::parse(&p.name, &p.args) {
            Ok(_) => ports.push(p.clone()),
            // Saved by a version that took an `ofport=` above 65279 (which Open vSwitch
            // cannot represent): left out rather than keeping the switch from starting.
            Err(e @ PortSpecError::BadOfport(_)) => {
                tracing::warn!(bridge = %b.name, port = %p.name, error = %e, "saved port left out");
            }
            Err(e) => return Err(ctx(&format!("port {}", p.name), &e)),
        }
    }
    let mut tables = FlowTables::new();
    // A group may send to a group with a higher id (chained groups), so the groups go in
    // rounds: each round adds those whose targets are in, until a round adds none.
    let mut pending = Vec::new();
    let mut left_out = std::collections::BTreeSet::new();
    for g in &b.groups {
        let gm = text::parse_group_mod(g, GroupModCommand::Add)
            .map_err(|e| ctx(&format!("group '{g}'"), &e))?;
        pending.push((g, gm));
    }
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for (g, mut gm) in pending {
            let mut added = tables.group_mod(&gm);
            if matches!(
                added,
                Err(TableError::WatchUnsupported(_) | TableError::WeightUnsupported(_))
            ) {
                // A group saved with a watch or weight its type never looks at (Open vSwitch
                // refuses them, earlier versions took them): restored without them.
                use flowtable::group::GroupType;
                let t = gm.group.group_type;
                for bucket in &mut gm.group.buckets {
                    if matches!(t, GroupType::All | GroupType::Indirect) {
                        bucket.watch_port = flowtable::OfPort::ANY;
                        bucket.watch_group = flowtable::group::GROUP_ANY;
                    }
                    if t != GroupType::Select {
                        bucket.weight = 0;
                    }
                }
                tracing::warn!(bridge = %b.name, group = %g, "saved group restored without the watch_port/watch_group/weight its type ignores");
                added = tables.group_mod(&gm);
            }
            match added {
                Ok(_) => {}
                Err(TableError::BadOutGroup(_)) => waiting.push((g, gm)),
                // Saved by a version that took what Open vSwitch refuses (see the flows
                // below): left out, with the flows that use it.
                Err(
                    e @ (TableError::BadArgument(_)
                    | TableError::BadSetArgument(_)
                    | TableError::BadOutPort(_)
                    | TableError::BadWatchPort(_)),
                ) => {
                    left_out.insert(gm.group.id);
                    tracing::warn!(bridge = %b.name, group = %g, error = %e, "saved group left out");
                }
                Err(e) => return Err(ctx(&format!("group '{g}'"), &e)),
            }
        }
        if waiting.len() == before {
            // They send to a group that was deleted after them: Open vSwitch's delete
            // leaves such buckets behind. Left out, with the flows that use them.
            for (g, gm) in &waiting {
                left_out.insert(gm.group.id);
                tracing::warn!(bridge = %b.name, group = %g, "saved group left out: it sends to a deleted group");
            }
            break;
        }
        pending = waiting;
    }
    for m in &b.meters {
        let mm = text::parse_meter_mod(m, flowtable::MeterModCommand::Add)
            .map_err(|e| ctx(&format!("meter '{m}'"), &e))?;
        tables
            .meter_mod(&mm)
            .map_err(|e| ctx(&format!("meter '{m}'"), &e))?;
    }
    let now = Instant::now();
    for f in &b.flows {
        // Likewise a flow whose text this version refuses (an `in_port` above 65279).
        let fm = match text::parse_flow_mod_exact(f, FlowModCommand::Add) {
            Ok(fm) => fm,
            Err(e) => {
                tracing::warn!(bridge = %b.name, flow = %f, error = %e, "saved flow left out");
                continue;
            }
        };
        let mut added = tables.flow_mod(&fm, now);
        if matches!(added, Err(TableError::Overlap)) {
            // A `check_overlap` flow (the flag is kept on the flow, as in Open vSwitch) that a
            // flow added after it without the flag overlaps: it was in the table, so it comes
            // back (without the flag, which only mattered when it was added).
            let mut unchecked = fm.clone();
            unchecked.flags.0 &= !flowtable::flow::FlowFlags::CHECK_OVERLAP;
            added = tables.flow_mod(&unchecked, now);
        }
        match added {
            Ok(_) => {}
            // Saved by a version that took actions inconsistent with their match (as Open
            // vSwitch does not): left out rather than keeping the switch from starting.
            Err(e @ (TableError::MatchInconsistent(_) | TableError::BadTag)) => {
                tracing::warn!(bridge = %b.name, flow = %f, error = %e, "saved flow left out");
            }
            // Likewise what Open vSwitch refuses and earlier versions took: a `ct` without
            // `commit` holding a NAT range or `exec(..)`, a write of `ct_mark`/`ct_label`
            // outside `ct`, an output to a port Open vSwitch cannot represent.
            Err(
                e @ (TableError::BadArgument(_)
                | TableError::BadSetArgument(_)
                | TableError::BadOutPort(_)
                | TableError::ReadOnlyTable(_)),
            ) => {
                tracing::warn!(bridge = %b.name, flow = %f, error = %e, "saved flow left out");
            }
            // Uses a group left out above.
            Err(e @ TableError::BadOutGroup(id)) if left_out.contains(&id) => {
                tracing::warn!(bridge = %b.name, flow = %f, error = %e, "saved flow left out");
            }
            Err(e) => return Err(ctx(&format!("flow '{f}'"), &e)),
        }
    }
    Ok(Planned {
        name: b.name.clone(),
        ports,
        tables,
    })
}

/// The flow-mod that adds flow `e` again as it is (what the state file saves of a flow).
fn adding(e: &flowtable::FlowEntry) -> FlowMod {
    FlowMod {
        table_id: e.table_id,
        priority: e.priority,
        match_: e.match_,
        cookie: e.cookie,
        idle_timeout: e.idle_timeout,
        hard_timeout: e.hard_timeout,
        flags: e.flags,
        instructions: (*e.instructions).clone(),
        ..FlowMod::default()
    }
}

/// Replaces the node agent's flows (its cookie) in `tables` with those bridge `br` holds now.
fn keep_agents_flows(sw: &Switch, br: &str, tables: &mut FlowTables) -> Result<(), String> {
    let cookie = crate::agent::compile::AGENT_COOKIE;
    let now = Instant::now();
    let current: Vec<FlowMod> = sw.with_bridge(br, |b| {
        Ok(b.tables()
            .flows()
            .iter()
            .filter(|e| e.cookie == cookie)
            .map(|e| adding(e))
            .collect())
    })?;
    let delete = FlowMod {
        command: FlowModCommand::Delete,
        table_id: flowtable::flow::TABLE_ALL,
        cookie,
        cookie_mask: u64::MAX,
        ..FlowMod::default()
    };
    let bridge = |e: &dyn std::fmt::Display| format!("bridge {br}: {e}");
    tables.flow_mod(&delete, now).map_err(|e| bridge(&e))?;
    for fm in &current {
        tables.flow_mod(fm, now).map_err(|e| bridge(&e))?;
    }
    Ok(())
}

/// Checks every bridge of `state` (ports, groups, flows) the way a restore does, without a
/// switch.
pub fn check(state: &StateFile) -> Result<(), String> {
    state.bridges.iter().try_for_each(|b| plan(b).map(|_| ()))
}

/// What a restore brought back, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub bridges: usize,
    pub ports: usize,
    pub flows: usize,
    pub groups: usize,
    pub meters: usize,
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bridges, {} ports, {} flows, {} groups, {} meters",
            self.bridges, self.ports, self.flows, self.groups, self.meters
        )
    }
}

/// Puts `state` back on `control`'s (empty) switch. The file is checked whole first; an
/// error after that (a port that cannot be opened) leaves the caller to stop.
pub fn restore(control: &Control, state: &StateFile) -> Result<Restored, String> {
    let plans = state
        .bridges
        .iter()
        .map(plan)
        .collect::<Result<Vec<_>, _>>()?;
    let sw = &control.switch;
    // TAP devices moved into pods' namespaces are reattached there, whoever adds the port
    // (the node agent's pods, or the bridges' saved ports below).
    sw.expect_moved_taps(
        state
            .bridges
            .iter()
            .flat_map(|b| &b.ports)
            .filter_map(|p| Some((p.name.clone(), p.moved.clone()?)))
            .collect(),
    );
    if let Some(l) = &state.ct_limits {
        let ct = &sw.dp.ct;
        ct.set_default_zone_limit(l.default);
        for (&zone, &limit) in &l.zones {
            ct.set_zone_limit(zone, limit);
        }
    }
    let mut forgotten = Vec::new();
    if let Some(agent) = &state.agent {
        forgotten = control
            .agent
            .restore(sw, agent)
            .map_err(|e| format!("node agent: {e}"))?;
    }
    let mut done = Restored::default();
    for p in plans {
        if !sw.lock().contains_key(&p.name) {
            sw.add_br(&p.name)?;
        }
        done.bridges += 1;
        done.ports += p.ports.len();
        done.flows += p.tables.flows().len();
        done.groups += p.tables.groups().count();
        done.meters += p.tables.meters().count();
        // The saved tables before the ports: a port forwards from the moment it is added,
        // and a new bridge's `NORMAL` flow must not carry what the saved flows drop.
        let mut tables = p.tables;
        if !forgotten.is_empty() {
            // Run-time pods were forgotten: the saved flows of the node agent still serve
            // them, those it has just installed do not. Its own are the ones to keep.
            keep_agents_flows(sw, &p.name, &mut tables)?;
        }
        sw.with_bridge(&p.name, |b| {
            b.transaction(Commit::Atomic, |tx| {
                tx.replace_all(tables);
                Ok::<(), String>(())
            })
        })?;
        for port in p
            .ports
            .iter()
            .filter(|port| !forgotten.contains(&port.name))
        {
            let present = sw.with_bridge(&p.name, |b| {
                Ok(b.ports.values().any(|q| q.spec.name == port.name))
            })?;
            let config = mod_port_bits(&port.mod_port)?;
            if !present {
                let args = fit_to_threads(&port.name, &port.args, sw.dp.thread_count());
                let args = &args;
                if let Err(e) = sw.add_port_with_config(&p.name, &port.name, args, config) {
                    // An interface deleted while the switch was down, a tunnel's underlay not up
                    // yet: the port waits for it rather than the whole state being refused.
                    sw.add_port_awaiting_interface(&p.name, &port.name, args, config)
                        .map_err(|_| format!("bridge {}: {e}", p.name))?;
                    tracing::warn!(bridge = %p.name, port = %port.name,
                        "the port cannot open now: it is kept, down, and opened when its interface appears (a tunnel: tried every second) ({e})");
                }
            } else if config != 0 {
                sw.set_port_config(&p.name, &port.name, config)?;
            }
        }
    }
    Ok(done)
}

/// A saved port's thread settings fitted to the threads this process runs (a restart with a
/// smaller `--threads`): `options:thread=K` beyond them is dropped (the least loaded thread
/// polls the port), `options:n_rxq=M` cut to their number, each with a warning, rather than
/// the port refused and the whole state with it.
fn fit_to_threads(port: &str, args: &[String], threads: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        if let Some(k) = arg
            .strip_prefix("options:thread=")
            .and_then(|v| v.parse::<usize>().ok())
            && k >= threads
        {
            tracing::warn!(
                port,
                thread = k,
                threads,
                "saved options:thread names a thread this vswitchd does not run: the least loaded one polls the port"
            );
            continue;
        }
        if let Some(n) = arg
            .strip_prefix("options:n_rxq=")
            .and_then(|v| v.parse::<usize>().ok())
            && n > threads
        {
            tracing::warn!(
                port,
                n_rxq = n,
                threads,
                "saved options:n_rxq is more than this vswitchd's threads: one receive queue per thread"
            );
            out.push(format!("options:n_rxq={threads}"));
            continue;
        }
        out.push(arg.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_thread_settings_fit_the_threads_that_run() {
        let args: Vec<String> = ["type=afpacket", "options:thread=3", "options:n_rxq=4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            fit_to_threads("p", &args, 2),
            ["type=afpacket", "options:n_rxq=2"]
        );
        assert_eq!(fit_to_threads("p", &args, 4), args);
        assert_eq!(fit_to_threads("p", &args, 8), args);
    }

    /// A flow an earlier version saved although its actions do not fit its match (the node
    /// agent's hairpin table had `priority=0 actions=ct(...)` without `ip`) is left out; the
    /// rest of the file comes back. Other refusals still fail the file.
    #[test]
    fn inconsistent_saved_flows_are_left_out() {
        let bridge = |flows: &[&str]| SavedBridge {
            name: "br0".into(),
            flows: flows.iter().map(|f| f.to_string()).collect(),
            ..SavedBridge::default()
        };
        let planned = plan(&bridge(&[
            "table=21,priority=0,actions=ct(table=30,zone=1,nat)",
            "table=21,priority=1,ip,actions=ct(table=30,zone=1,nat)",
        ]))
        .expect("plan");
        let flows = planned.tables.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].priority, 1);
        assert!(plan(&bridge(&["actions=group:9"])).is_err());
    }

    /// What earlier versions took and Open vSwitch refuses (a `ct` without `commit` holding a
    /// NAT range, a `ct_mark` write outside `ct`, an output or watch_port Open vSwitch cannot
    /// represent) is left out of a saved bridge, with the flows that use such a group; the
    /// rest comes back.
    #[test]
    fn saved_flows_open_vswitch_refuses_are_left_out() {
        let planned = plan(&SavedBridge {
            name: "br0".into(),
            groups: vec![
                "group_id=1,type=ff,bucket=watch_port:0xfff0,actions=output:1".into(),
                "group_id=2,type=all,bucket=actions=set_field:0x1->ct_mark".into(),
                "group_id=3,type=all,bucket=actions=output:1".into(),
            ],
            flows: vec![
                "priority=1,ip,actions=ct(table=1,nat(src=10.0.0.1))".into(),
                "priority=2,actions=set_field:0x1->ct_mark".into(),
                "priority=3,actions=output:0xfff0".into(),
                "priority=4,actions=group:1".into(),
                "priority=5,ip,actions=ct(table=1,nat),group:3".into(),
            ],
            ..SavedBridge::default()
        })
        .expect("plan");
        let flows = planned.tables.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].priority, 5);
        let groups: Vec<u32> = planned.tables.groups().map(|g| g.id).collect();
        assert_eq!(groups, [3]);
    }

    /// An `all`/`indirect` group an earlier version saved with a watch or a weight (which Open
    /// vSwitch refuses: `OFPGMFC_WATCH_UNSUPPORTED`, `OFPGMFC_INVALID_GROUP`) comes back
    /// without them, with the flows using it.
    #[test]
    fn saved_watch_on_an_all_group_is_dropped_not_the_group() {
        let planned = plan(&SavedBridge {
            name: "br0".into(),
            groups: vec![
                "group_id=1,type=all,bucket=watch_port:2,actions=output:1".into(),
                "group_id=2,type=indirect,bucket=watch_group:1,actions=output:2".into(),
                "group_id=3,type=all,bucket=weight:5,actions=output:3".into(),
                // A fast-failover bucket keeps the watch it needs, loses only the weight.
                "group_id=4,type=ff,bucket=weight:5,watch_port:2,actions=output:4".into(),
            ],
            flows: vec!["priority=4,actions=group:1,group:2".into()],
            ..SavedBridge::default()
        })
        .expect("plan");
        assert_eq!(planned.tables.flows().len(), 1);
        let groups: Vec<_> = planned.tables.groups().collect();
        assert_eq!(groups.len(), 4);
        for g in &groups[..3] {
            assert_eq!(g.buckets[0].weight, 0);
            assert_eq!(g.buckets[0].watch_port, flowtable::OfPort::ANY);
            assert_eq!(g.buckets[0].watch_group, flowtable::group::GROUP_ANY);
        }
        assert_eq!(groups[3].buckets[0].weight, 0);
        assert_eq!(groups[3].buckets[0].watch_port, flowtable::OfPort(2));
    }

    /// A port and a flow an earlier version took with a number Open vSwitch cannot represent
    /// (`ofport=` / `in_port=` above 65279) are left out; the rest of the bridge comes back.
    #[test]
    fn saved_ports_and_flows_this_version_refuses_are_left_out() {
        let port = |name: &str, args: &[&str]| SavedPort {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            mod_port: Vec::new(),
            moved: None,
        };
        let planned = plan(&SavedBridge {
            name: "br0".into(),
            ports: vec![port("big", &["ofport=70000"]), port("small", &["ofport=5"])],
            flows: vec![
                "priority=1,in_port=70000,actions=drop".into(),
                "priority=2,in_port=5,actions=drop".into(),
            ],
            ..SavedBridge::default()
        })
        .expect("plan");
        let names: Vec<&str> = planned.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["small"]);
        let flows = planned.tables.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].priority, 2);
        // Anything else wrong with a saved port still refuses the file.
        let bad = plan(&SavedBridge {
            name: "br0".into(),
            ports: vec![port("odd", &["type=bogus"])],
            ..SavedBridge::default()
        });
        assert!(bad.is_err_and(|e| e.contains("port odd")));
    }

    /// Group 1 sends to group 2 (saved after it): both come back. Group 3 sends to a group
    /// deleted after it was added: it is left out with the flow that uses it, and the rest
    /// of the bridge comes back.
    #[test]
    fn chained_groups_come_back_and_dangling_ones_are_left_out() {
        let planned = plan(&SavedBridge {
            name: "br0".into(),
            groups: vec![
                "group_id=1,type=all,bucket=actions=group:2".into(),
                "group_id=2,type=all,bucket=actions=output:1".into(),
                "group_id=3,type=all,bucket=actions=group:7".into(),
            ],
            flows: vec![
                "priority=1,actions=group:1".into(),
                "priority=2,actions=group:3".into(),
            ],
            ..SavedBridge::default()
        })
        .expect("plan");
        assert_eq!(
            planned.tables.groups().map(|g| g.id).collect::<Vec<_>>(),
            [1, 2]
        );
        let flows = planned.tables.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].priority, 1);
    }

    /// A controller may install `ct_nw_proto=0` (with original-tuple ports) over OpenFlow,
    /// which ovs-ofctl's text syntax drops; the state file must bring the flow back whole.
    #[test]
    fn saved_flows_keep_a_zero_ct_nw_proto() {
        use flowtable::fields::FieldId;
        let mut fm = text::parse_flow("priority=7,ct_state=+trk-inv,actions=drop").unwrap();
        fm.match_.set(FieldId::CtNwProto, 0, None).unwrap();
        fm.match_.set(FieldId::CtTpSrc, 5, None).unwrap();
        let saved = text::print_flow_mod(&fm);
        let planned = plan(&SavedBridge {
            name: "br0".into(),
            flows: vec![saved.clone()],
            ..SavedBridge::default()
        })
        .expect("plan");
        let flows = planned.tables.flows();
        assert_eq!(flows.len(), 1, "{saved}");
        assert_eq!(flows[0].match_, fm.match_, "{saved}");
        assert_eq!(flows[0].match_.mask.ct_nw_proto, 0xff, "{saved}");
    }

    /// A `check_overlap` flow stays on the table with its flag (as in Open vSwitch), and a
    /// flow without the flag may overlap it later: saved in the other order, both come back.
    #[test]
    fn a_saved_check_overlap_flow_comes_back_beside_one_overlapping_it() {
        let planned = plan(&SavedBridge {
            name: "br0".into(),
            flows: vec![
                "priority=5,ip,actions=drop".into(),
                "check_overlap priority=5,tcp actions=output:1".into(),
            ],
            ..SavedBridge::default()
        })
        .expect("plan");
        assert_eq!(planned.tables.flows().len(), 2);
    }
}
