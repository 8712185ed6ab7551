//! Applying a compiled configuration: diff against what the agent installed last time and
//! change only that, flows and groups in one all-or-nothing batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use flowtable::FlowMod;
use flowtable::flow::FlowModCommand;
use flowtable::group::{GroupMod, GroupModCommand};
use flowtable::text;

use super::compile::{self, AGENT_COOKIE, Desired, FlowKey, Numbering, PortPlan, Runtime};
use super::model::{Mac, Mode, NodeConfig, PodPortKind};
use crate::switch::{BridgeCtl, Switch, publish};

/// What the agent installed on one switch.
#[derive(Debug, Default, Clone)]
pub struct Installed {
    pub bridge: String,
    pub numbering: Numbering,
    pub ports: Vec<PortPlan>,
    pub flows: HashMap<FlowKey, String>,
    pub groups: BTreeMap<u32, String>,
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

/// Agent state per switch (keyed by the switch's address: one daemon has one switch, tests
/// may have several).
static INSTALLED: Mutex<Option<HashMap<usize, Installed>>> = Mutex::new(None);

/// Validates, compiles and applies `cfg` to `switch`. Nothing changes when any step before
/// the final batch fails.
pub fn apply_config(switch: &Switch, cfg: &NodeConfig) -> Result<(Changes, Vec<String>), String> {
    let mut all = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    let key = switch as *const Switch as usize;
    let mut prev = all
        .get_or_insert_with(HashMap::new)
        .get(&key)
        .cloned()
        .unwrap_or_default();
    if prev.bridge != cfg.bridge {
        // A different bridge starts from nothing (the old one is left as it is).
        prev = Installed {
            bridge: cfg.bridge.clone(),
            ..Installed::default()
        };
    }
    check_interfaces(cfg)?;
    let rt = Runtime {
        uplink_mac: match (&cfg.mode, &cfg.underlay_interface) {
            (Mode::Route { .. }, Some(ifname)) => tap_io::iface::mac(ifname).ok().map(Mac),
            _ => None,
        },
    };
    let mut numbering = prev.numbering.clone();
    let desired = compile::compile(cfg, &mut numbering, rt)?;
    let batch = Batch::plan(&prev, &desired)?;

    let exists = switch
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&cfg.bridge);
    if !exists {
        switch.add_br(&cfg.bridge)?;
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
    for p in &desired.ports {
        let changed = stale.iter().any(|s| s.name == p.name);
        if changed {
            switch.del_port(&cfg.bridge, &p.name)?;
            changes.ports_removed += 1;
        }
        if changed || !on_bridge.contains(&p.name) {
            switch.add_port(&cfg.bridge, &p.name, &p.args)?;
            changes.ports_added += 1;
        }
    }
    {
        let mut state = switch.state.lock().unwrap_or_else(|e| e.into_inner());
        let b = state
            .get_mut(&cfg.bridge)
            .ok_or_else(|| format!("bridge {} vanished during apply", cfg.bridge))?;
        batch.run(b)?;
    }
    // Ports gone from the file go last, once no flow outputs to them.
    for old in stale {
        if !desired.ports.iter().any(|p| p.name == old.name) {
            switch.del_port(&cfg.bridge, &old.name)?;
            changes.ports_removed += 1;
        }
    }
    let warnings = desired.warnings.clone();
    all.get_or_insert_with(HashMap::new).insert(
        key,
        Installed {
            bridge: cfg.bridge.clone(),
            numbering,
            ports: desired.ports,
            flows: desired.flows,
            groups: desired.groups,
        },
    );
    Ok((changes, warnings))
}

fn port_names(switch: &Switch, br: &str) -> Vec<String> {
    let state = switch.state.lock().unwrap_or_else(|e| e.into_inner());
    state
        .get(br)
        .map(|b| b.ports.values().map(|p| p.spec.name.clone()).collect())
        .unwrap_or_default()
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
    if let (Mode::Route { .. }, Some(ifname)) = (&cfg.mode, &cfg.underlay_interface)
        && !exists(ifname)
    {
        return Err(format!(
            "node.underlay_interface: no interface named '{ifname}'"
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
    /// Re-install everything: the bridge lost agent flows behind the agent's back.
    pub changes: Changes,
}

impl Batch {
    /// Diffs `desired` against `prev`.
    pub fn plan(prev: &Installed, desired: &Desired) -> Result<Batch, String> {
        let mut b = Batch {
            group_adds: Vec::new(),
            flow_dels: Vec::new(),
            flow_adds: Vec::new(),
            group_dels: Vec::new(),
            changes: Changes::default(),
        };
        for (id, g) in &desired.groups {
            let cmd = match prev.groups.get(id) {
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
        for k in prev.flows.keys() {
            if !desired.flows.contains_key(k) {
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
        for (k, line) in &desired.flows {
            match prev.flows.get(k) {
                Some(old) if old == line => continue,
                Some(_) => b.changes.flows_modified += 1,
                None => b.changes.flows_added += 1,
            }
            b.flow_adds.push(parse(line, FlowModCommand::Add)?);
        }
        for id in prev.groups.keys() {
            if !desired.groups.contains_key(id) {
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
    pub fn run(&self, b: &mut BridgeCtl) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut next = b.tables.clone();
        for gm in &self.group_adds {
            next.group_mod(gm)
                .map_err(|e| format!("group {}: {e}", gm.group.id))?;
        }
        for fm in self.flow_dels.iter().chain(&self.flow_adds) {
            next.flow_mod(fm, now)
                .map_err(|e| format!("flow '{}': {e}", text::print_flow_mod(fm)))?;
        }
        for gm in &self.group_dels {
            next.group_mod(gm)
                .map_err(|e| format!("group {}: {e}", gm.group.id))?;
        }
        b.tables = next;
        publish(b);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.group_adds.is_empty()
            && self.flow_dels.is_empty()
            && self.flow_adds.is_empty()
            && self.group_dels.is_empty()
    }
}

fn parse(line: &str, cmd: FlowModCommand) -> Result<FlowMod, String> {
    text::parse_flow_mod(line, cmd).map_err(|e| format!("compiled flow '{line}': {e}"))
}
