//! Applying a compiled configuration: diff against what the agent installed last time and
//! change only that, flows and groups in one all-or-nothing batch.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::sync::Arc;

use flowtable::FlowMod;
use flowtable::flow::FlowModCommand;
use flowtable::group::{GroupMod, GroupModCommand};
use flowtable::text;

use super::compile::{
    self, AGENT_COOKIE, Desired, FlowKey, Numbering, PortPlan, Runtime, ServiceOut,
};
use super::model::{Mac, NodeConfig, PodPortKind};
use crate::bridge::{BridgeCtl, Commit};
use crate::switch::Switch;

/// What the agent installed on one switch.
#[derive(Debug, Default, Clone)]
pub struct Installed {
    pub bridge: String,
    pub numbering: Numbering,
    pub desired: Desired,
    /// The kernel's side of the host port.
    pub host: super::host::HostState,
    /// Whether the host firewall table is installed.
    pub firewall: bool,
    /// What the last apply read from the running system (one-Service changes compile with it).
    pub runtime: Runtime,
}

/// Counts of what one apply changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub flows_added: usize,
    pub flows_modified: usize,
    pub flows_removed: usize,
    pub groups_added: usize,
    pub groups_modified: usize,
    pub groups_removed: usize,
    pub ports_added: usize,
    pub ports_removed: usize,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flows +{} ~{} -{}, groups +{} ~{} -{}, ports +{} -{}",
            self.flows_added,
            self.flows_modified,
            self.flows_removed,
            self.groups_added,
            self.groups_modified,
            self.groups_removed,
            self.ports_added,
            self.ports_removed
        )
    }
}

/// Applies `cfg`; `installed` becomes the new state on success. On failure only its
/// numbering may have moved on (a cache: numbers never installed are harmless).
pub fn apply_on(
    switch: &Switch,
    cfg: &NodeConfig,
    installed: &mut Installed,
) -> Result<(Changes, Vec<String>), String> {
    apply_with(switch, cfg, installed, false)
}

/// [`apply_on`]; `only_pods_changed` says the Services and node settings are those of the
/// last apply, so the Services' output is reused as it is (unless the runtime moved).
pub fn apply_with(
    switch: &Switch,
    cfg: &NodeConfig,
    installed: &mut Installed,
    only_pods_changed: bool,
) -> Result<(Changes, Vec<String>), String> {
    if installed.bridge.is_empty() {
        installed.bridge = cfg.bridge.clone();
    } else if installed.bridge != cfg.bridge {
        // The pods' ports, the uplink and the tunnel port are on the old bridge (a port
        // name is one port in the whole switch), and the agent's numbering is that bridge's.
        return Err(format!(
            "node.bridge changed from {} to {}: the node's bridge cannot be renamed while \
             vswitchd runs (stop it, start it with --fresh and the new file)",
            installed.bridge, cfg.bridge
        ));
    }
    check_interfaces(cfg)?;
    let rt = Runtime {
        uplink_mac: match &cfg.uplink {
            Some(u) if u.mac.is_none() => tap_io::iface::mac(&u.interface).ok().map(Mac),
            _ => None,
        },
        next_hop_mac: match (&cfg.uplink, cfg.underlay_gateway, cfg.egress.next_hop_mac) {
            (Some(u), Some(gw), None) => Some(super::neighbor::resolve(&u.interface, gw)?),
            _ => None,
        },
        uplink_rx_queues: switch.dp.thread_count(),
    };
    let services = if only_pods_changed && rt == installed.runtime {
        compile::ServicesFrom::Previous(&installed.desired.services)
    } else {
        compile::ServicesFrom::Config
    };
    let desired = compile::compile_with(cfg, &mut installed.numbering, rt, services)?;
    installed.runtime = rt;
    let exists = switch.lock().contains_key(&cfg.bridge);
    if !exists {
        // The bridge is gone (`del-br` behind the agent's back): everything goes in again.
        installed.desired = compile::Desired::default();
    }
    let prev = &installed.desired;
    let batch = Batch::plan(installed, &desired)?;

    if !exists {
        switch.add_br(&cfg.bridge)?;
        // A new bridge is a NORMAL L2 switch: make it drop everything until the pipeline is
        // in, so pod ports added below never forward unguarded.
        let drop_all = parse(
            &format!("table=0,priority=0,cookie={AGENT_COOKIE:#x},actions=drop"),
            FlowModCommand::Add,
        )?;
        switch.with_bridge(&cfg.bridge, |b| {
            b.transaction(Commit::Atomic, |tx| tx.flow_mod(&drop_all))
                .map_err(|e| e.to_string())
        })?;
    }
    let mut changes = batch.changes;
    // New ports first (with no flows yet they drop everything they receive).
    let on_bridge = port_names(switch, &cfg.bridge);
    let mut stale: Vec<&PortPlan> = Vec::new();
    for old in &prev.ports {
        if !desired.ports.contains(old) && on_bridge.contains(&old.name) {
            stale.push(old);
        }
    }
    let mut added: Vec<&str> = Vec::new();
    let undo = |added: &[&str]| {
        // A failed apply leaves the node as it was: ports added by it go, and so does a
        // bridge it created.
        for name in added {
            let _ = switch.del_port(&cfg.bridge, name);
        }
        if !exists {
            let _ = switch.del_br(&cfg.bridge);
        }
    };
    for p in &desired.ports {
        let changed = stale.iter().any(|s| s.name == p.name);
        if changed {
            switch.del_port(&cfg.bridge, &p.name)?;
            changes.ports_removed += 1;
        }
        if changed || !on_bridge.contains(&p.name) {
            if let Err(e) = switch.add_port(&cfg.bridge, &p.name, &p.args) {
                undo(&added);
                return Err(e);
            }
            added.push(&p.name);
            changes.ports_added += 1;
        }
    }
    {
        let ran = switch
            .with_bridge(&cfg.bridge, |b| Ok(batch.run(b)))
            .unwrap_or_else(|_| Err(format!("bridge {} vanished during apply", cfg.bridge)));
        if let Err(e) = ran {
            undo(&added);
            return Err(e);
        }
    }
    // Ports gone from the file go last, once no flow outputs to them.
    for old in stale {
        if !desired.ports.iter().any(|p| p.name == old.name) {
            switch.del_port(&cfg.bridge, &old.name)?;
            changes.ports_removed += 1;
        }
    }
    let mut warnings: Vec<String> = desired.warnings().iter().map(|w| w.to_string()).collect();
    warnings.extend(compile::unmasqueraded_backends(cfg));
    installed.desired = desired;
    // The node's side of the host port: a failure is reported, not undone (the pipeline
    // itself is in place and the kernel's side is retried by every apply).
    match super::host::configure(cfg, &installed.host) {
        Ok(host) => installed.host = host,
        Err(e) => warnings.push(e),
    }
    // The host port's TAP was created with a MAC of the kernel's choosing and has just been
    // given its own: the port reports the one it has now (`show`, PORT_DESC).
    if cfg.host.is_some() {
        switch.refresh_port_macs();
    }
    // The host firewall, likewise: retried by every apply.
    warnings.extend(refresh_firewall(cfg, installed));
    set_pod_conn_limits(switch, cfg);
    Ok((changes, warnings))
}

/// Installs `cfg`'s host firewall table, or removes the one installed when `cfg` needs none;
/// a failure is returned as a warning (the next apply retries).
pub fn refresh_firewall(cfg: &NodeConfig, installed: &mut Installed) -> Option<String> {
    let guard = super::firewall::ruleset(cfg).is_some();
    if !guard && !installed.firewall {
        return None;
    }
    match super::firewall::install(cfg) {
        Ok(()) => {
            installed.firewall = guard;
            None
        }
        Err(e) => Some(e),
    }
}

/// Each pod's connection limit, as a source limit in the pods' zone: pods send only from their
/// own address (the spoof guard of table 10), so their connections are those it opens.
/// Replaces every source limit (they are the agent's alone).
fn set_pod_conn_limits(switch: &Switch, cfg: &NodeConfig) {
    use conntrack::tuple::{Addr, Family};
    let wanted: Vec<(u16, Family, Addr, u32)> = cfg
        .pod_conn_limits()
        .into_iter()
        .map(|(ip, limit)| (cfg.ct_zone, Family::V4, Addr::v4(u32::from(ip)), limit))
        .collect();
    switch.dp.ct.set_source_limits(&wanted);
}

fn port_names(switch: &Switch, br: &str) -> Vec<String> {
    switch
        .lock()
        .get(br)
        .map(|b| b.ports.values().map(|p| p.spec.name.clone()).collect())
        .unwrap_or_default()
}

/// Applies one Service's new output (`None`: the Service is gone) under group id `group`, as
/// one all-or-nothing batch; `installed` follows on success. Nothing else is looked at: the
/// caller validated and compiled the Service against the configuration in force.
pub fn apply_service(
    switch: &Switch,
    installed: &mut Installed,
    group: u32,
    out: Option<Arc<ServiceOut>>,
) -> Result<(Changes, Option<String>), String> {
    let old = installed.desired.services.get(&group);
    let batch = Batch::between(old.map(|o| &**o), out.as_deref())?;
    switch.with_bridge(&installed.bridge, |b| batch.run(b))?;
    let warning = out.as_ref().and_then(|o| o.warning.clone());
    let services = Arc::make_mut(&mut installed.desired.services);
    match out {
        Some(out) => services.insert(group, out),
        None => services.remove(&group),
    };
    Ok((batch.changes, warning))
}

/// AF_PACKET ports need an existing interface: checked before anything changes.
fn check_interfaces(cfg: &NodeConfig) -> Result<(), String> {
    let exists = |name: &str| std::path::Path::new("/sys/class/net").join(name).exists();
    for (i, p) in cfg.pods.iter().enumerate() {
        if p.kind == PodPortKind::AfPacket && !exists(&p.port) {
            return Err(format!(
                "pods[{i}].port: no interface named '{}' (create the pod's veth first, or use type = \"tap\")",
                p.port
            ));
        }
    }
    if let Some(u) = &cfg.uplink
        && !exists(&u.interface)
    {
        return Err(format!(
            "node.underlay_interface: no interface named '{}'",
            u.interface
        ));
    }
    Ok(())
}

/// The flow and group changes of one apply, parsed up front so that a bad line is found
/// before the bridge is touched.
pub struct Batch {
    group_adds: Vec<GroupMod>,
    flow_dels: Vec<FlowMod>,
    flow_adds: Vec<FlowMod>,
    group_dels: Vec<GroupMod>,
    pub changes: Changes,
}

impl Batch {
    /// Diffs `desired` against `prev`. Services whose compiled output is the very same (the
    /// compiler reuses it while a Service is unchanged) are skipped without a look inside.
    pub fn plan(prev: &Installed, desired: &Desired) -> Result<Batch, String> {
        let before = &prev.desired;
        // The candidates: every node-wide flow, and the flows/groups of changed Services.
        let mut old_flows: HashMap<&FlowKey, &str> =
            before.flows.iter().map(|(k, l)| (k, l.as_str())).collect();
        let mut new_flows: HashMap<&FlowKey, &str> =
            desired.flows.iter().map(|(k, l)| (k, l.as_str())).collect();
        let mut old_groups: BTreeMap<u32, &str> = BTreeMap::new();
        let mut new_groups: BTreeMap<u32, &str> = BTreeMap::new();
        // Reused as a whole (only pods changed): nothing to look at.
        let same_services = Arc::ptr_eq(&before.services, &desired.services);
        for (name, out) in desired.services.iter().filter(|_| !same_services) {
            match before.services.get(name) {
                Some(old) if Arc::ptr_eq(old, out) || old == out => continue,
                Some(old) => {
                    add_service(old, &mut old_flows, &mut old_groups);
                    add_service(out, &mut new_flows, &mut new_groups);
                }
                None => add_service(out, &mut new_flows, &mut new_groups),
            }
        }
        for (name, old) in before.services.iter().filter(|_| !same_services) {
            if !desired.services.contains_key(name) {
                add_service(old, &mut old_flows, &mut old_groups);
            }
        }
        Batch::diff(&old_flows, &new_flows, &old_groups, &new_groups)
    }

    /// The changes from one Service's output to another (`None`: no such Service).
    pub fn between(old: Option<&ServiceOut>, new: Option<&ServiceOut>) -> Result<Batch, String> {
        let (mut old_flows, mut new_flows) = (HashMap::new(), HashMap::new());
        let (mut old_groups, mut new_groups) = (BTreeMap::new(), BTreeMap::new());
        if let Some(old) = old {
            add_service(old, &mut old_flows, &mut old_groups);
        }
        if let Some(new) = new {
            add_service(new, &mut new_flows, &mut new_groups);
        }
        Batch::diff(&old_flows, &new_flows, &old_groups, &new_groups)
    }

    fn diff(
        old_flows: &HashMap<&FlowKey, &str>,
        new_flows: &HashMap<&FlowKey, &str>,
        old_groups: &BTreeMap<u32, &str>,
        new_groups: &BTreeMap<u32, &str>,
    ) -> Result<Batch, String> {
        let mut b = Batch {
            group_adds: Vec::new(),
            flow_dels: Vec::new(),
            flow_adds: Vec::new(),
            group_dels: Vec::new(),
            changes: Changes::default(),
        };
        for (id, g) in new_groups {
            let cmd = match old_groups.get(id) {
                Some(old) if old == g => continue,
                Some(_) => {
                    b.changes.groups_modified += 1;
                    GroupModCommand::Modify
                }
                None => {
                    b.changes.groups_added += 1;
                    GroupModCommand::Add
                }
            };
            b.group_adds.push(
                text::parse_group_mod(g, cmd).map_err(|e| format!("compiled group '{g}': {e}"))?,
            );
        }
        for k in old_flows.keys() {
            if !new_flows.contains_key(k) {
                let mut del = format!("table={},priority={}", k.table, k.priority);
                if !k.match_text.is_empty() {
                    del.push(',');
                    del.push_str(&k.match_text);
                }
                let mut fm = parse(&del, FlowModCommand::DeleteStrict)?;
                fm.cookie = AGENT_COOKIE;
                fm.cookie_mask = u64::MAX;
                b.flow_dels.push(fm);
                b.changes.flows_removed += 1;
            }
        }
        for (k, line) in new_flows {
            match old_flows.get(k) {
                Some(old) if old == line => continue,
                Some(_) => b.changes.flows_modified += 1,
                None => b.changes.flows_added += 1,
            }
            b.flow_adds.push(parse(line, FlowModCommand::Add)?);
        }
        for id in old_groups.keys() {
            if !new_groups.contains_key(id) {
                b.group_dels.push(
                    text::parse_group_mod(&format!("group_id={id}"), GroupModCommand::Delete)
                        .map_err(|e| e.to_string())?,
                );
                b.changes.groups_removed += 1;
            }
        }
        Ok(b)
    }

    /// Applies the batch to a bridge: all of it, or (on error) nothing.
    /// Applies the batch as one all-or-nothing bridge transaction.
    pub fn run(&self, b: &mut BridgeCtl) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        b.transaction(Commit::Atomic, |tx| {
            for gm in &self.group_adds {
                tx.group_mod(gm)
                    .map_err(|e| format!("group {}: {e}", gm.group.id))?;
            }
            for fm in self.flow_dels.iter().chain(&self.flow_adds) {
                tx.flow_mod(fm)
                    .map_err(|e| format!("flow '{}': {e}", text::print_flow_mod(fm)))?;
            }
            for gm in &self.group_dels {
                tx.group_mod(gm)
                    .map_err(|e| format!("group {}: {e}", gm.group.id))?;
            }
            Ok(())
        })
    }

    pub fn is_empty(&self) -> bool {
        self.group_adds.is_empty()
            && self.flow_dels.is_empty()
            && self.flow_adds.is_empty()
            && self.group_dels.is_empty()
    }
}

fn add_service<'a>(
    out: &'a ServiceOut,
    flows: &mut HashMap<&'a FlowKey, &'a str>,
    groups: &mut BTreeMap<u32, &'a str>,
) {
    flows.extend(out.flows.iter().map(|(k, l)| (k, l.as_str())));
    for (id, g) in &out.groups {
        groups.insert(*id, g.as_str());
    }
}

fn parse(line: &str, cmd: FlowModCommand) -> Result<FlowMod, String> {
    text::parse_flow_mod(line, cmd).map_err(|e| format!("compiled flow '{line}': {e}"))
}
