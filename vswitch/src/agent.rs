//! The node agent: compiles a declarative node configuration (TOML, `docs/config.md`) into
//! bridges, ports, groups and flows (`docs/pipeline.md`), and applies only what changed.
//!
//! `config` is the file as written, `validate` turns it into the typed `model` (or names the
//! wrong key), `compile` builds the desired ports/groups/flows, `apply` diffs and installs.
//!
//! [`Agent`] holds what one switch's agent knows: the node file as last applied, the pods added
//! at run time (`add-pod`, the CNI plugin's way in), and what it installed. Every change, a new
//! file or one pod, is the same step: merge, validate, compile, diff, apply; so a pod added at
//! run time survives a re-applied file, and adding one pod touches only that pod's flows.

pub mod apply;
pub mod compile;
pub mod config;
pub mod eni;
pub mod firewall;
pub mod health;
pub mod host;
pub mod model;
pub mod neighbor;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::switch::Switch;
use config::{RawBackend, RawConfig, RawPod, RawService};
use model::{Mode, NodeConfig};
use validate::ConfigError;

/// The largest node file the agent reads (a node file is a few kB; 10k Services ~ 2 MB).
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// One switch's node agent.
#[derive(Default)]
pub struct Agent {
    state: Mutex<AgentState>,
}

#[derive(Default)]
struct AgentState {
    installed: apply::Installed,
    /// The node file as last applied (without the run-time pods).
    file: Option<Arc<RawConfig>>,
    /// Its text (what the state file keeps).
    file_text: Option<Arc<str>>,
    /// Pods added at run time, by name.
    live_pods: BTreeMap<String, RawPod>,
    /// EIPs bound (`Some`) or unbound (`None`) at run time, by pod name: they win over the
    /// pod's own `eip` (file or `add-pod`).
    live_eips: BTreeMap<String, Option<String>>,
    /// Services set at run time, by name; one named like a Service of the file replaces it.
    live_services: BTreeMap<String, Arc<RawService>>,
    /// The configuration in force (file + run-time pods).
    current: Option<NodeConfig>,
    /// Services validated last time (one change among 10k validates one).
    memo: validate::ServiceMemo,
    /// `memo` and `installed` describe `current` exactly, so one Service can change alone.
    in_force: bool,
    /// The Services' health-check listeners (`health_check_node_port`).
    health: health::HealthChecks,
}

/// One Service as metrics see it: where clients reach it and which backends serve it.
#[derive(Debug, Clone)]
pub struct ServiceEndpoints {
    pub name: String,
    /// The conntrack zone its connections are tracked in.
    pub zone: u16,
    /// (address, port, IP protocol number) of each frontend.
    pub frontends: Vec<(std::net::Ipv4Addr, u16, u8)>,
    pub backends: Vec<(std::net::Ipv4Addr, u16)>,
}

/// A change of one Service, applied on its own when the state allows.
enum ServiceChange<'a> {
    Set(Arc<RawService>),
    Remove(&'a str),
}

impl Agent {
    fn lock(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a node file (TOML text); returns a summary of the changes and any warnings.
    pub fn apply_text(&self, switch: &Switch, text: &str) -> Result<String, String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()).to_string())?;
        let mut st = self.lock();
        let (gone, _) = prune_vanished(&mut st, switch);
        let (pods, services) = (st.live_pods.clone(), st.live_services.clone());
        let out = apply_merged(&mut st, switch, &raw, &pods, &services, None)?;
        // A run-time EIP binding goes with its pod: a pod of that name added later starts
        // with its own `eip`.
        st.live_eips.retain(|name, _| {
            pods.contains_key(name) || raw.pods.iter().any(|p| pod_name(p) == name)
        });
        let out = out + &gone;
        st.file = Some(Arc::new(raw));
        st.file_text = Some(Arc::from(text));
        switch.mark_changed();
        Ok(out)
    }

    /// Reads and applies a node file (`--config`, SIGHUP).
    pub fn apply_file(&self, switch: &Switch, path: &std::path::Path) -> Result<String, String> {
        let text = read_config(path)?;
        self.apply_text(switch, &text)
    }

    /// Adds one pod (`settings`: port=, ip=, mac=, type=, ofport=, allow_from=).
    pub fn add_pod(
        &self,
        switch: &Switch,
        name: &str,
        settings: &[String],
    ) -> Result<String, String> {
        let pod = pod_from_settings(name, settings)?;
        let mut st = self.lock();
        let Some(file) = st.file.clone() else {
            return Err(
                "no node configuration: start vswitchd with --config (or vswitchctl apply) first"
                    .into(),
            );
        };
        if st.live_pods.contains_key(name) || file.pods.iter().any(|p| pod_name(p) == name) {
            return Err(format!("a pod named {name} already exists"));
        }
        prune_vanished(&mut st, switch);
        let mut live = st.live_pods.clone();
        live.insert(name.to_string(), pod);
        apply_pods(&mut st, switch, &file, &live, Some(name))?;
        st.live_pods = live;
        switch.mark_changed();
        let ofport = st
            .installed
            .numbering
            .ofports
            .get(&st.live_pods[name].port)
            .map(|n| format!(" ofport={n}"))
            .unwrap_or_default();
        Ok(format!("pod {name} added{ofport}\n"))
    }

    /// Removes a pod added at run time.
    pub fn del_pod(&self, switch: &Switch, name: &str, if_exists: bool) -> Result<String, String> {
        let mut st = self.lock();
        if !st.live_pods.contains_key(name) {
            let in_file = st
                .file
                .as_ref()
                .is_some_and(|f| f.pods.iter().any(|p| pod_name(p) == name));
            return match (in_file, if_exists) {
                (true, _) => Err(format!(
                    "pod {name} comes from the node file; edit the file to remove it"
                )),
                (false, true) => Ok(String::new()),
                (false, false) => Err(format!("no pod named {name}")),
            };
        }
        let file = st
            .file
            .clone()
            .expect("run-time pods exist only with a file");
        prune_vanished(&mut st, switch);
        let mut live = st.live_pods.clone();
        live.remove(name);
        apply_pods(&mut st, switch, &file, &live, None)?;
        st.live_pods = live;
        // A pod added again later under this name starts with its own `eip`.
        st.live_eips.remove(name);
        switch.mark_changed();
        Ok(format!("pod {name} removed\n"))
    }

    /// Binds (`Some`) or unbinds (`None`) pod `name`'s elastic IP at run time (`set-eip`,
    /// `del-eip`, mode eni): only that pod's EIP flows change.
    pub fn set_eip(
        &self,
        switch: &Switch,
        name: &str,
        eip: Option<&str>,
        if_exists: bool,
    ) -> Result<String, String> {
        let mut st = self.lock();
        prune_vanished(&mut st, switch);
        let Some(file) = st.file.clone() else {
            return Err(
                "no node configuration: start vswitchd with --config (or vswitchctl apply) first"
                    .into(),
            );
        };
        if st.current.as_ref().is_some_and(|c| c.mode != Mode::Eni) {
            return Err("EIPs are bound to pods in mode \"eni\" only".into());
        }
        let Some(pod) = file
            .pods
            .iter()
            .chain(st.live_pods.values())
            .find(|p| pod_name(p) == name)
        else {
            return Err(format!("no pod named {name}"));
        };
        let had = match st.live_eips.get(name) {
            Some(e) => e.is_some(),
            None => pod.eip.is_some(),
        };
        if eip.is_none() && !had {
            return if if_exists {
                Ok(String::new())
            } else {
                Err(format!("pod {name} has no EIP"))
            };
        }
        let previous = st
            .live_eips
            .insert(name.to_string(), eip.map(str::to_string));
        let live = st.live_pods.clone();
        if let Err(e) = apply_pods(&mut st, switch, &file, &live, Some(name)) {
            match previous {
                Some(p) => st.live_eips.insert(name.to_string(), p),
                None => st.live_eips.remove(name),
            };
            return Err(e);
        }
        switch.mark_changed();
        Ok(match eip {
            Some(e) => format!("pod {name} eip={e}\n"),
            None => format!("pod {name} eip removed\n"),
        })
    }

    /// Adds or replaces a Service at run time. `spec` is a `[[services]]` entry as a TOML
    /// inline table: `{ name = "web", cluster_ip = "10.247.0.10", port = 80, backends = [...] }`.
    /// A Service of the node file with the same name is replaced while this one is set.
    pub fn set_service(&self, switch: &Switch, spec: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct One {
            service: RawService,
        }
        let one: One = toml::from_str(&format!("service = {spec}"))
            .map_err(|e| format!("cannot parse the Service: {e}"))?;
        self.change_service(switch, Arc::new(one.service))
    }

    /// Replaces the backends of Service `name` (set at run time or from the file):
    /// `IP[:PORT][@WEIGHT]` each (none: the Service refuses new connections).
    pub fn set_backends(
        &self,
        switch: &Switch,
        name: &str,
        backends: &[String],
    ) -> Result<String, String> {
        let parsed = backends
            .iter()
            .map(|b| parse_backend(b))
            .collect::<Result<Vec<_>, _>>()?;
        // Read and changed under one hold of the lock: a set-service or del-service of the
        // same Service in between must not be undone by this one.
        let mut st = self.lock();
        let current = st.live_services.get(name).cloned().or_else(|| {
            st.file
                .as_ref()
                .and_then(|f| f.services.iter().find(|s| s.name == name).cloned())
        });
        let current = current.ok_or_else(|| format!("no Service named {name}"))?;
        let mut svc = RawService::clone(&current);
        svc.backends = parsed;
        change_service_locked(&mut st, switch, Arc::new(svc))
    }

    fn change_service(&self, switch: &Switch, svc: Arc<RawService>) -> Result<String, String> {
        change_service_locked(&mut self.lock(), switch, svc)
    }

    /// Removes a Service set at run time (a file Service it replaced comes back).
    pub fn del_service(
        &self,
        switch: &Switch,
        name: &str,
        if_exists: bool,
    ) -> Result<String, String> {
        let mut st = self.lock();
        prune_vanished(&mut st, switch);
        if !st.live_services.contains_key(name) {
            return if if_exists {
                Ok(String::new())
            } else {
                Err(format!("no Service named {name} was set at run time"))
            };
        }
        let file = st
            .file
            .clone()
            .expect("run-time Services exist only with a file");
        // The file's Service of that name, if any, comes back.
        let change = match file.services.iter().find(|s| s.name == name) {
            Some(from_file) => ServiceChange::Set(from_file.clone()),
            None => ServiceChange::Remove(name),
        };
        let out = match apply_one_service(&mut st, switch, change) {
            Some(out) => out?,
            None => {
                let mut services = st.live_services.clone();
                services.remove(name);
                let pods = st.live_pods.clone();
                apply_merged(&mut st, switch, &file, &pods, &services, None)?
            }
        };
        st.live_services.remove(name);
        switch.mark_changed();
        Ok(out)
    }

    /// The Services set at run time, one line each: `NAME FRONTEND backends=N`.
    pub fn list_services(&self) -> String {
        self.service_list()
            .services
            .iter()
            .map(|s| {
                format!(
                    "{} {}:{} backends={}\n",
                    s.name,
                    s.frontend.as_deref().unwrap_or("-"),
                    s.port,
                    s.backends
                )
            })
            .collect()
    }

    /// The run-time Services, typed (`list-services --format json`).
    pub fn service_list(&self) -> crate::views::ServiceList {
        let st = self.lock();
        let services = st
            .live_services
            .values()
            .map(|s| crate::views::ServiceView {
                name: s.name.clone(),
                frontend: s.cluster_ip.clone().or_else(|| s.external_ip.clone()),
                port: s.port,
                backends: s.backends.len(),
            })
            .collect();
        crate::views::ServiceList { services }
    }

    /// The run-time pods, one line each: `NAME PORT IP MAC ofport=N`.
    pub fn list_pods(&self) -> String {
        self.pod_list()
            .pods
            .iter()
            .map(|p| {
                let of = p
                    .ofport
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into());
                format!("{} {} {} {} ofport={of}\n", p.name, p.port, p.ip, p.mac)
            })
            .collect()
    }

    /// The run-time pods, typed (`list-pods --format json`).
    pub fn pod_list(&self) -> crate::views::PodList {
        let st = self.lock();
        let pods = st
            .live_pods
            .iter()
            .map(|(name, p)| crate::views::PodView {
                name: name.clone(),
                port: p.port.clone(),
                ip: p.ip.to_string(),
                mac: p.mac.to_lowercase(),
                ofport: st.installed.numbering.ofports.get(&p.port).copied(),
            })
            .collect();
        crate::views::PodList { pods }
    }

    /// The Services in force, with their frontends and backends (for metrics).
    pub fn service_endpoints(&self) -> Vec<ServiceEndpoints> {
        let st = self.lock();
        let Some(cfg) = &st.current else {
            return Vec::new();
        };
        cfg.services
            .iter()
            .map(|s| {
                let proto = match s.protocol {
                    model::Protocol::Tcp => 6,
                    model::Protocol::Udp => 17,
                };
                ServiceEndpoints {
                    name: s.name.clone(),
                    zone: cfg.ct_zone,
                    frontends: s
                        .frontends(cfg.underlay_ip)
                        .map(|(ip, port)| (ip, port, proto))
                        .collect(),
                    backends: s.backends.iter().map(|b| (b.ip, b.port)).collect(),
                }
            })
            .collect()
    }

    /// Whether a node configuration has been applied.
    pub fn configured(&self) -> bool {
        self.lock().current.is_some()
    }

    /// Undoes what lives outside the switch (the host firewall table, the health-check
    /// listeners); the switch's own state goes with its bridges. Called when vswitchd stops.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.health.close_all();
        if st.installed.firewall {
            match firewall::remove() {
                Ok(()) => st.installed.firewall = false,
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// What the state file keeps of the agent: its inputs and numbering (`None`: no node file
    /// was ever applied).
    pub fn saved(&self) -> Option<crate::persist::format::SavedAgent> {
        let st = self.lock();
        let text = st.file_text.as_ref()?;
        let n = &st.installed.numbering;
        Some(crate::persist::format::SavedAgent {
            node_file: Some(text.to_string()),
            pods: st.live_pods.clone(),
            services: st
                .live_services
                .values()
                .map(|s| RawService::clone(s))
                .collect(),
            bridge: st.installed.bridge.clone(),
            ofports: n.ofports.clone(),
            groups: n.groups.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            eips: st.live_eips.clone(),
        })
    }

    /// Re-applies what [`saved`](Agent::saved) kept, with the same numbering, so that the
    /// pipeline it compiles is the one the previous process installed. Returns the ports of
    /// run-time pods forgotten because their interface is gone (the bridge's saved ports
    /// leave them out too).
    pub fn restore(
        &self,
        switch: &Switch,
        saved: &crate::persist::format::SavedAgent,
    ) -> Result<Vec<String>, String> {
        let Some(text) = &saved.node_file else {
            return Ok(Vec::new());
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()).to_string())?;
        let services: BTreeMap<String, Arc<RawService>> = saved
            .services
            .iter()
            .map(|s| (s.name.clone(), Arc::new(s.clone())))
            .collect();
        let mut st = self.lock();
        st.installed.bridge = saved.bridge.clone();
        st.installed.numbering.ofports = saved.ofports.clone();
        st.installed.numbering.groups = saved.groups.clone().into_iter().collect();
        st.live_eips = saved.eips.clone();
        st.live_pods = saved.pods.clone();
        let (_, gone) = prune_vanished(&mut st, switch);
        let pods = st.live_pods.clone();
        apply_merged(&mut st, switch, &raw, &pods, &services, None)?;
        st.file = Some(Arc::new(raw));
        st.file_text = Some(Arc::from(text.as_str()));
        st.live_services = services;
        Ok(gone)
    }

    /// The node's pod network, as JSON, for the CNI plugin.
    pub fn node_info(&self) -> Result<String, String> {
        let st = self.lock();
        let cfg = st.current.as_ref().ok_or(
            "no node configuration: start vswitchd with --config (or vswitchctl apply) first",
        )?;
        let mode = match cfg.mode {
            Mode::Tunnel { .. } => "tunnel",
            Mode::Route => "route",
            Mode::Eni => "eni",
        };
        let mtu = host::pod_mtu(cfg);
        let info = serde_json::json!({
            "name": cfg.name,
            "bridge": cfg.bridge,
            "mode": mode,
            "pod_cidr": cfg.pod_cidr.to_string(),
            "gateway_ip": cfg.gateway_ip.to_string(),
            "gateway_mac": cfg.gateway_mac.to_string(),
            "service_cidr": cfg.service_cidr.to_string(),
            "mtu": mtu,
        });
        Ok(format!("{info}\n"))
    }
}

/// One Service set or removed on its own: validated against the Services in force (through
/// the memo's frontend index), compiled alone, and applied as one batch of its flows and
/// group. The full path would reach the same state (the tests check); this one does not walk
/// the other Services, so it costs the same with 10 or 10 000 of them. `None` when the
/// state does not allow it (no configuration in force, or the last full apply failed).
fn apply_one_service(
    st: &mut AgentState,
    switch: &Switch,
    change: ServiceChange<'_>,
) -> Option<Result<String, String>> {
    if !st.in_force {
        return None;
    }
    // Health-check listeners open and close on the full path (it checks their ports too).
    let has_health = |name: &str| {
        let in_force = st.memo.position(name).zip(st.current.as_ref());
        in_force
            .and_then(|(p, c)| c.services.get(p))
            .is_some_and(|s| s.health_check_node_port.is_some())
    };
    let touches_health = match &change {
        ServiceChange::Set(raw) => raw.health_check_node_port.is_some() || has_health(&raw.name),
        ServiceChange::Remove(name) => has_health(name),
    };
    if touches_health {
        return None;
    }
    // NodePorts are also reached from the node through the host firewall's DNAT rules.
    let has_node_port = |name: &str| {
        let in_force = st.memo.position(name).zip(st.current.as_ref());
        in_force
            .and_then(|(p, c)| c.services.get(p))
            .is_some_and(|s| s.node_port.is_some())
    };
    let touches_node_ports = match &change {
        ServiceChange::Set(raw) => raw.node_port.is_some() || has_node_port(&raw.name),
        ServiceChange::Remove(name) => has_node_port(name),
    };
    let AgentState {
        installed,
        current,
        memo,
        ..
    } = st;
    let cfg = current.as_mut()?;
    let done = |cfg: &NodeConfig,
                installed: &mut apply::Installed,
                changes: apply::Changes,
                warning: Option<String>| {
        let mut out = format!("node {}: {changes}\n", cfg.name);
        tracing::info!("{}", out.trim_end());
        let firewall = touches_node_ports
            .then(|| apply::refresh_firewall(cfg, installed))
            .flatten();
        for w in warning.into_iter().chain(firewall) {
            tracing::warn!("{w}");
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    };
    match change {
        ServiceChange::Set(raw) => {
            let one = match validate::validate_one(cfg, &raw, memo) {
                Ok(one) => one,
                Err(e) => return Some(Err(e.to_string())),
            };
            let (group, out) = compile::compile_one(
                cfg,
                &mut installed.numbering,
                installed.runtime,
                &one.service,
            );
            Some(
                apply::apply_service(switch, installed, group, Some(out)).map(
                    |(changes, warning)| {
                        memo.set_one(cfg, raw, one);
                        done(cfg, installed, changes, warning)
                    },
                ),
            )
        }
        ServiceChange::Remove(name) => {
            memo.position(name)?;
            let group = *installed.numbering.groups.get(name)?;
            Some(
                apply::apply_service(switch, installed, group, None).map(|(changes, _)| {
                    installed.numbering.forget_service(name);
                    memo.remove_one(cfg, name);
                    done(cfg, installed, changes, None)
                }),
            )
        }
    }
}

/// Sets Service `svc` at run time, under the agent's lock `st`.
fn change_service_locked(
    st: &mut AgentState,
    switch: &Switch,
    svc: Arc<RawService>,
) -> Result<String, String> {
    prune_vanished(st, switch);
    let Some(file) = st.file.clone() else {
        return Err(
            "no node configuration: start vswitchd with --config (or vswitchctl apply) first"
                .into(),
        );
    };
    let name = svc.name.clone();
    let out = match apply_one_service(st, switch, ServiceChange::Set(svc.clone())) {
        Some(out) => out,
        None => {
            let mut services = st.live_services.clone();
            services.insert(name.clone(), svc.clone());
            let pods = st.live_pods.clone();
            apply_merged(st, switch, &file, &pods, &services, None)
        }
    }
    .map_err(|e| format!("Service {name}: {e}"))?;
    st.live_services.insert(name, svc);
    switch.mark_changed();
    Ok(out)
}

/// Deletes the connections an apply leaves stale: those of the pods in `old` that are not in
/// `cfg` (by name and address). A pod that went leaves no connection behind to be counted
/// against, or reached through, the next pod given its address. The node's own address stays
/// (mode eni's host port has it: turning the port off must not cut the masqueraded and
/// outside clients' connections).
fn flush_stale_connections(switch: &Switch, old: &[model::Pod], cfg: &model::NodeConfig) {
    // Another pod given the same address in the same change is a new pod: the old one's
    // connections go too.
    let gone: Vec<&model::Pod> = old
        .iter()
        .filter(|p| p.ip != cfg.underlay_ip)
        .filter(|p| !cfg.pods.iter().any(|n| n.ip == p.ip && n.name == p.name))
        .collect();
    let addrs: Vec<conntrack::tuple::Addr> = gone.iter().map(|p| p.ip.into()).collect();
    let n = switch.dp.ct.flush_addresses(&addrs);
    if n > 0 {
        let names: Vec<&str> = gone.iter().map(|p| p.name.as_str()).collect();
        tracing::info!(pods = ?names, connections = n, "connections of removed pods deleted");
    }
}

/// Forgets the connections a security group or `allow_from` refused when the rules changed:
/// a refused connection's next packet is then judged again as new. One pass over the
/// connection table, so only when the rules (or which pods have them) differ.
fn forget_refused_if_rules_changed(
    switch: &Switch,
    old: Option<&model::NodeConfig>,
    cfg: &model::NodeConfig,
) {
    let rules = |c: &model::NodeConfig| {
        let allow: Vec<_> = c
            .pods
            .iter()
            .map(|p| (&p.name, &p.allow_from, &p.security_groups))
            .collect();
        format!("{:?}{allow:?}", c.security_groups)
    };
    if old.is_some_and(|o| rules(o) == rules(cfg)) {
        return;
    }
    let refused = switch
        .dp
        .ct
        .flush_marked(cfg.ct_zone, compile::REFUSED_MARK);
    if refused > 0 {
        tracing::info!(
            connections = refused,
            "refused connections forgotten (judged again)"
        );
    }
}

/// Whether a run-time pod's AF_PACKET interface is gone (a TAP the switch creates itself).
fn vanished(p: &RawPod) -> bool {
    let afpacket = p.kind.as_deref().unwrap_or("afpacket") == "afpacket";
    afpacket
        && !std::path::Path::new("/sys/class/net")
            .join(&p.port)
            .exists()
}

/// Forgets the run-time pods (`add-pod`, the CNI plugin) whose AF_PACKET interface is gone:
/// the runtime deleted the pod's veth while its DEL could not reach vswitchd (stopped, or
/// the request failed). Kept, they would refuse every later change, and a start. Their EIP
/// bindings and connections go with them. Runs first in every change of the pods; returns a
/// warning line per pod forgotten (also logged) and their ports.
fn prune_vanished(st: &mut AgentState, switch: &Switch) -> (String, Vec<String>) {
    let gone: Vec<(String, RawPod)> = st
        .live_pods
        .iter()
        .filter(|(_, p)| vanished(p))
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    let mut out = String::new();
    let mut addrs = Vec::new();
    for (name, p) in &gone {
        st.live_pods.remove(name);
        st.live_eips.remove(name);
        if let Ok(ip) = p.ip.parse::<std::net::Ipv4Addr>() {
            addrs.push(conntrack::tuple::Addr::from(ip));
        }
        tracing::warn!(pod = %name, port = %p.port, "run-time pod forgotten: its interface is gone");
        out.push_str(&format!(
            "warning: pod {name} forgotten: its interface {} is gone\n",
            p.port
        ));
    }
    switch.dp.ct.flush_addresses(&addrs);
    (out, gone.into_iter().map(|(_, p)| p.port).collect())
}

/// Validates `file` + `live` pods, applies the result, and remembers it. `new_pod` names the
/// pod being added, so that its validation errors name it rather than an index.
fn apply_merged(
    st: &mut AgentState,
    switch: &Switch,
    file: &RawConfig,
    live: &BTreeMap<String, RawPod>,
    live_services: &BTreeMap<String, Arc<RawService>>,
    new_pod: Option<&str>,
) -> Result<String, String> {
    let mut merged = file.clone();
    // Run-time Services replace the file's of the same name, in place (group ids stay).
    for s in merged.services.iter_mut() {
        if let Some(live) = live_services.get(&s.name) {
            *s = live.clone();
        }
    }
    for (name, s) in live_services {
        if !file.services.iter().any(|f| &f.name == name) {
            merged.services.push(s.clone());
        }
    }
    let first_live = merged.pods.len();
    merged.pods.extend(live.values().cloned());
    bind_eips(&mut merged.pods, &st.live_eips);
    // Until this apply is through, the memo may describe a configuration not in force.
    st.in_force = false;
    let cfg = validate::validate_with(&merged, &mut st.memo)
        .map_err(|e| name_pod_error(e, live, first_live, new_pod))?;
    // Listeners first: a health-check port that cannot be opened refuses the whole change.
    let health = st.health.prepare(&cfg)?;
    let (changes, warnings) = apply::apply_on(switch, &cfg, &mut st.installed)?;
    st.health.commit(health);
    let out = summary(&cfg, changes, warnings);
    let old_pods = st.current.as_ref().map_or(&[][..], |old| &old.pods[..]);
    flush_stale_connections(switch, old_pods, &cfg);
    forget_refused_if_rules_changed(switch, st.current.as_ref(), &cfg);
    st.current = Some(cfg);
    st.in_force = true;
    Ok(out)
}

/// Only the pods changed (`add-pod`, `del-pod`): the pods are validated against the node in
/// force and the Services' compiled output is reused without a walk over them (the full
/// path when the state does not allow it).
fn apply_pods(
    st: &mut AgentState,
    switch: &Switch,
    file: &RawConfig,
    live: &BTreeMap<String, RawPod>,
    new_pod: Option<&str>,
) -> Result<String, String> {
    let current = match &st.current {
        Some(current) if st.in_force => current,
        _ => {
            let services = st.live_services.clone();
            return apply_merged(st, switch, file, live, &services, new_pod);
        }
    };
    let mut raw_pods: Vec<RawPod> = file.pods.iter().chain(live.values()).cloned().collect();
    bind_eips(&mut raw_pods, &st.live_eips);
    let pods = validate::validate_pods(&file.node, &raw_pods, current)
        .map_err(|e| name_pod_error(e, live, file.pods.len(), new_pod))?;
    let mut cfg = st.current.take().expect("checked above");
    let old_pods = std::mem::replace(&mut cfg.pods, pods);
    // Until this apply is through, `installed` may describe a configuration not in force.
    st.in_force = false;
    match apply::apply_with(switch, &cfg, &mut st.installed, true) {
        Ok((changes, warnings)) => {
            let out = summary(&cfg, changes, warnings);
            flush_stale_connections(switch, &old_pods, &cfg);
            st.current = Some(cfg);
            st.in_force = true;
            Ok(out)
        }
        Err(e) => {
            cfg.pods = old_pods;
            st.current = Some(cfg);
            Err(e)
        }
    }
}

/// Errors about a run-time pod name it (its index means nothing to the caller).
fn name_pod_error(
    e: ConfigError,
    live: &BTreeMap<String, RawPod>,
    first_live: usize,
    new_pod: Option<&str>,
) -> String {
    let text = e.to_string();
    for (i, name) in live.keys().enumerate() {
        let key = format!("pods[{}]", first_live + i);
        if let Some(rest) = text.strip_prefix(&key) {
            return format!("pod {name}{rest}");
        }
    }
    if let Some(name) = new_pod {
        return format!("pod {name}: {text}");
    }
    text
}

/// What an apply reports: the changes, then each warning (also logged).
fn summary(cfg: &NodeConfig, changes: apply::Changes, warnings: Vec<String>) -> String {
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut out = format!("node {}: {changes}\n", cfg.name);
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    tracing::info!("{}", out.lines().next().unwrap_or_default());
    out
}

/// `IP[:PORT][@WEIGHT]`.
fn parse_backend(s: &str) -> Result<RawBackend, String> {
    let (addr, weight) = match s.split_once('@') {
        Some((a, w)) => (
            a,
            Some(w.parse().map_err(|_| format!("'{s}': bad weight '{w}'"))?),
        ),
        None => (s, None),
    };
    let (ip, port) = match addr.split_once(':') {
        Some((i, p)) => (
            i,
            Some(p.parse().map_err(|_| format!("'{s}': bad port '{p}'"))?),
        ),
        None => (addr, None),
    };
    Ok(RawBackend {
        ip: ip.to_string(),
        port,
        weight,
    })
}

/// The EIPs bound or unbound at run time, over the pods' own.
fn bind_eips(pods: &mut [RawPod], eips: &BTreeMap<String, Option<String>>) {
    if eips.is_empty() {
        return;
    }
    for p in pods {
        if let Some(e) = eips.get(pod_name(p)) {
            p.eip = e.clone();
        }
    }
}

fn pod_name(p: &RawPod) -> &str {
    p.name.as_deref().unwrap_or(&p.port)
}

/// `port=IFACE ip=ADDR mac=MAC [type=afpacket|tap] [ofport=N] [allow_from=CIDR,...]
/// [conntrack_limit=N]`.
fn pod_from_settings(name: &str, settings: &[String]) -> Result<RawPod, String> {
    if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_whitespace()) {
        return Err(format!(
            "bad pod name '{name}' (1 to 253 characters, no spaces)"
        ));
    }
    let mut pod = RawPod {
        name: Some(name.to_string()),
        port: String::new(),
        kind: None,
        ip: String::new(),
        mac: String::new(),
        ofport: None,
        allow_from: None,
        vlan: None,
        security_groups: None,
        eip: None,
        conntrack_limit: None,
    };
    for s in settings {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            format!(
                "'{s}': expected KEY=VALUE (port, ip, mac, type, ofport, allow_from, vlan, security_groups, eip, conntrack_limit)"
            )
        })?;
        match k {
            "port" => pod.port = v.to_string(),
            "ip" => pod.ip = v.to_string(),
            "mac" => pod.mac = v.to_string(),
            "type" => pod.kind = Some(v.to_string()),
            "ofport" => {
                pod.ofport = Some(
                    v.parse()
                        .map_err(|_| format!("ofport '{v}' is not a number"))?,
                )
            }
            "conntrack_limit" => {
                pod.conntrack_limit =
                    Some(v.parse().map_err(|_| {
                        format!("conntrack_limit '{v}' is not a number of connections")
                    })?)
            }
            "allow_from" => {
                pod.allow_from = Some(
                    v.split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect(),
                )
            }
            "vlan" => {
                pod.vlan = Some(
                    v.parse()
                        .map_err(|_| format!("vlan '{v}' is not a number"))?,
                )
            }
            "security_groups" => {
                pod.security_groups = Some(
                    v.split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect(),
                )
            }
            "eip" => pod.eip = Some(v.to_string()),
            other => {
                return Err(format!(
                    "unknown pod setting '{other}' (port, ip, mac, type, ofport, allow_from, vlan, security_groups, eip, conntrack_limit)"
                ));
            }
        }
    }
    for (key, v) in [("port", &pod.port), ("ip", &pod.ip), ("mac", &pod.mac)] {
        if v.is_empty() {
            return Err(format!("pod {name}: {key}= is required"));
        }
    }
    Ok(pod)
}

/// Reads a node file: regular files only, at most [`MAX_CONFIG_BYTES`] (a FIFO or /dev/zero
/// must not hang or exhaust the daemon).
pub fn read_config(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    let file = std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().read(true),
        nix::fcntl::OFlag::O_NONBLOCK.bits(),
    )
    .open(path)
    .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{shown}: larger than {MAX_CONFIG_BYTES} bytes"));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("{shown}: larger than {MAX_CONFIG_BYTES} bytes"));
    }
    Ok(text)
}
