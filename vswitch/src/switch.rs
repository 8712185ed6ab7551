//! The control plane: bridges, ports and flow tables, and the commands that change them.
//!
//! All state lives behind one mutex (changes are rare and must be serialized anyway). Each
//! change ends with `publish`, which builds an immutable [`Pipeline`] snapshot and swaps it in
//! for the datapath.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use flowtable::classifier::ClassifierBuilder;
use flowtable::flow::FlowModCommand;
use flowtable::table::{JournalEntry, Pipeline as FlowTables};
use flowtable::text::{self, PrintOpts};
use flowtable::{FlowEntry, FlowMod, Match};
use hashbrown::HashMap;

use crate::datapath::counters::PortCounters;
use crate::datapath::drops::DropCounters;
use crate::datapath::ports::{DpPort, PortIo, TunnelMeta, VxlanIo};
use crate::datapath::{BATCH, CacheStats, DatapathHandle};
use crate::pipeline::{FlowStats, GroupEntry, Pipeline, PortInfo, RuleRef, TableClassifier};
use crate::portspec::{FromFlow, PortKind, PortSpec};

/// One port as the control side knows it.
pub struct PortCtl {
    pub spec: PortSpec,
    pub ofport: u32,
    pub dp_id: usize,
    pub counters: Arc<PortCounters>,
    pub mac: [u8; 6],
}

pub struct BridgeCtl {
    pub name: String,
    pub dp_index: usize,
    pub tables: FlowTables,
    pub ports: BTreeMap<u32, PortCtl>,
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    pub drops: Arc<DropCounters>,
    /// One per forwarding thread.
    pub cache_stats: Vec<Arc<CacheStats>>,
    pub version: u64,
    pub created: Instant,
    /// The datapath's view, kept in step with `tables` change by change (see `publish`).
    pub installed: Installed,
    /// Where FLOW_REMOVED messages go (shared with the switch).
    pub async_hub: Option<Arc<PacketInHub>>,
}

/// What `publish` has turned into classifiers and group entries so far.
#[derive(Default)]
pub struct Installed {
    /// `tables.lineage()` these were built from; another lineage means a full rebuild.
    lineage: u64,
    builders: BTreeMap<u8, ClassifierBuilder<Arc<RuleRef>>>,
    groups: HashMap<u32, Arc<GroupEntry>>,
}

/// An asynchronous OpenFlow message for the connections that asked for them.
#[derive(Debug, Clone)]
pub enum AsyncEvent {
    PacketIn(crate::datapath::PacketInEvent),
    /// A flow with `send_flow_rem` went away; `reason` is OFPRR_* (0 idle, 1 hard, 2 delete).
    FlowRemoved {
        entry: Box<FlowEntry>,
        reason: u8,
    },
    /// A port was added (`reason` 0) or deleted (1).
    PortStatus {
        reason: u8,
        ofport: u32,
        name: String,
        mac: [u8; 6],
    },
    /// A flow was added, deleted or modified (for flow monitors; only sent while some
    /// connection monitors). `event` is `NXFME_*`.
    FlowUpdate {
        event: u16,
        /// For DELETED: `OFPRR_*` (idle, hard, delete).
        reason: u8,
        entry: Arc<FlowEntry>,
    },
}

/// Fans packet-ins and flow-removed messages out to the OpenFlow connections that asked.
#[derive(Default)]
pub struct PacketInHub {
    /// Bridge datapath index → name.
    names: Mutex<HashMap<usize, String>>,
    subscribers: Mutex<HashMap<String, Vec<crossbeam_channel::Sender<AsyncEvent>>>>,
    /// Connections with flow monitors: publish reports flow changes only while there are some.
    flow_monitors: std::sync::atomic::AtomicUsize,
}

impl PacketInHub {
    /// A connection started (`true`) or stopped monitoring flows.
    pub fn monitoring(&self, on: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if on {
            self.flow_monitors.fetch_add(1, Relaxed);
        } else {
            self.flow_monitors.fetch_sub(1, Relaxed);
        }
    }

    fn has_flow_monitors(&self) -> bool {
        self.flow_monitors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// Asynchronous messages of bridge `br` from now on, until the receiver is dropped.
    pub fn subscribe(&self, br: &str) -> crossbeam_channel::Receiver<AsyncEvent> {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(br.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Delivers one packet-in; false when nobody took it.
    fn dispatch(&self, ev: crate::datapath::PacketInEvent) -> bool {
        let Some(name) = self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ev.bridge)
            .cloned()
        else {
            return false;
        };
        self.send(&name, AsyncEvent::PacketIn(ev))
    }

    /// Delivers an event to every subscriber of bridge `br`; false when there is none.
    pub fn send(&self, br: &str, ev: AsyncEvent) -> bool {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = subs.get_mut(br) else {
            return false;
        };
        list.retain(|s| {
            !matches!(
                s.try_send(ev.clone()),
                Err(crossbeam_channel::TrySendError::Disconnected(_))
            )
        });
        !list.is_empty()
    }
}

pub struct Switch {
    pub dp: DatapathHandle,
    pub rundir: PathBuf,
    pub state: Mutex<BTreeMap<String, BridgeCtl>>,
    pub packet_ins: Arc<PacketInHub>,
    /// Per-bridge OpenFlow sockets, opened and closed with the bridges.
    pub openflow: crate::ofserver::Registry,
}

type CmdResult = Result<String, String>;

fn flag(args: &mut Vec<String>, name: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != name);
    args.len() != before
}

impl Switch {
    pub fn new(dp: DatapathHandle, rundir: PathBuf) -> Switch {
        Switch {
            dp,
            rundir,
            state: Mutex::new(BTreeMap::new()),
            packet_ins: Arc::new(PacketInHub::default()),
            openflow: crate::ofserver::Registry::default(),
        }
    }

    /// Starts delivering the datapath's packet-ins to subscribed OpenFlow connections.
    pub fn start_packet_in_dispatch(self: &Arc<Self>) {
        let (tx, rx) = crossbeam_channel::bounded::<crate::datapath::PacketInEvent>(4096);
        self.dp.set_packet_in_sink(tx);
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("packet-in".into())
            .spawn(move || {
                for ev in rx {
                    let Some(sw) = me.upgrade() else { break };
                    let bridge = ev.bridge;
                    if !sw.packet_ins.dispatch(ev) {
                        let state = sw.lock();
                        if let Some(b) = state.values().find(|b| b.dp_index == bridge) {
                            b.drops
                                .add(crate::datapath::drops::DropReason::ControllerNone, 1);
                        }
                    }
                }
            });
    }

    /// Removes flows whose idle or hard timeout has passed (OpenFlow 1.3 §6.5), publishing the
    /// change like any flow-mod. Returns how many were removed. Called about once a second.
    pub fn expire_flows(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        let dp_now_ns = now.duration_since(self.dp.start).as_nanos() as u64;
        let mut removed = 0;
        let mut state = self.lock();
        for b in state.values_mut() {
            let mut expired = Vec::new();
            let mut expiring: Vec<(FlowEntry, u8)> = Vec::new();
            // Once a second under the switch lock: only tables holding timed flows are read.
            for e in b.tables.timed_flows() {
                let age = now.duration_since(e.created);
                let hard = e.hard_timeout != 0 && age.as_secs() >= e.hard_timeout as u64;
                let idle = e.idle_timeout != 0 && {
                    let used = b
                        .flow_stats(e)
                        .map(|s| s.used_ns.load(Relaxed))
                        .unwrap_or(0);
                    let idle_for = if used == 0 {
                        age
                    } else {
                        std::time::Duration::from_nanos(dp_now_ns.saturating_sub(used)).min(age)
                    };
                    idle_for.as_secs() >= e.idle_timeout as u64
                };
                if hard || idle {
                    expiring.push((
                        e.clone(),
                        if hard {
                            OFPRR_HARD_TIMEOUT
                        } else {
                            OFPRR_IDLE_TIMEOUT
                        },
                    ));
                    expired.push(FlowMod {
                        command: FlowModCommand::DeleteStrict,
                        table_id: e.table_id,
                        priority: e.priority,
                        match_: e.match_,
                        ..FlowMod::default()
                    });
                }
            }
            if expired.is_empty() {
                continue;
            }
            removed += expired.len();
            for (e, reason) in &expiring {
                report_removed(b, vec![e.clone()], *reason);
            }
            // The deletes themselves are not reported again as OFPRR_DELETE.
            let hub = b.async_hub.take();
            let mods: Vec<(usize, FlowMod)> = expired.into_iter().map(|fm| (0, fm)).collect();
            let _ = apply_flow_mods(b, &mods);
            // Flow monitors hear of them with their real reason.
            if let Some(h) = hub.as_ref().filter(|h| h.has_flow_monitors()) {
                for (e, reason) in expiring {
                    h.send(
                        &b.name,
                        AsyncEvent::FlowUpdate {
                            event: openflow::monitor::event::DELETED,
                            reason,
                            entry: Arc::new(e),
                        },
                    );
                }
            }
            b.async_hub = hub;
        }
        removed
    }

    /// Runs `expire_flows` every second while the switch lives.
    pub fn start_flow_expiry(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("flow-expiry".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let Some(sw) = me.upgrade() else { break };
                    sw.expire_flows();
                }
            });
    }

    pub fn shutdown(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for n in names {
            let _ = self.del_br(&n);
        }
        self.dp.stop();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BridgeCtl>> {
        // A panic in one command must not wedge every later one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one management command.
    pub fn command(&self, args: &[String]) -> CmdResult {
        let mut args: Vec<String> = args.to_vec();
        let strict = flag(&mut args, "--strict");
        let no_stats = flag(&mut args, "--no-stats");
        let Some(cmd) = args.first().cloned() else {
            return Err("missing command".into());
        };
        let a: Vec<&str> = args.iter().skip(1).map(|s| s.as_str()).collect();
        let need = |n: usize| -> Result<(), String> {
            if a.len() < n {
                Err(format!("'{cmd}' needs at least {n} argument(s)"))
            } else {
                Ok(())
            }
        };
        match cmd.as_str() {
            "add-br" => {
                need(1)?;
                self.add_br(a[0])
            }
            "del-br" => {
                need(1)?;
                self.del_br(a[0])
            }
            "list-br" => Ok(self.lock().keys().map(|k| format!("{k}\n")).collect()),
            "br-exists" => {
                need(1)?;
                if self.lock().contains_key(a[0]) {
                    Ok(String::new())
                } else {
                    Err(format!("no bridge named {}", a[0]))
                }
            }
            "add-port" => {
                need(2)?;
                let rest: Vec<String> = a[2..].iter().map(|s| s.to_string()).collect();
                self.add_port(a[0], a[1], &rest)
            }
            "del-port" => {
                need(2)?;
                self.del_port(a[0], a[1])
            }
            "list-ports" => {
                need(1)?;
                self.with_bridge(a[0], |b| {
                    let mut names: Vec<&str> =
                        b.ports.values().map(|p| p.spec.name.as_str()).collect();
                    names.sort();
                    Ok(names.iter().map(|n| format!("{n}\n")).collect())
                })
            }
            "add-flow" => {
                need(2)?;
                self.flow_mods(a[0], a[1], FlowModCommand::Add, false)
            }
            "add-flows" => {
                need(2)?;
                self.flow_mods(a[0], a[1], FlowModCommand::Add, true)
            }
            "mod-flows" => {
                need(2)?;
                let c = if strict {
                    FlowModCommand::ModifyStrict
                } else {
                    FlowModCommand::Modify
                };
                self.flow_mods(a[0], a[1], c, false)
            }
            "del-flows" => {
                need(1)?;
                let c = if strict {
                    FlowModCommand::DeleteStrict
                } else {
                    FlowModCommand::Delete
                };
                self.flow_mods(a[0], a.get(1).copied().unwrap_or(""), c, false)
            }
            "apply" => {
                need(1)?;
                // The file's contents, or (one line, no '=') a path the daemon can read.
                let text = if a[0].contains(['\n', '=']) {
                    a[0].to_string()
                } else {
                    std::fs::read_to_string(a[0]).map_err(|e| format!("{}: {e}", a[0]))?
                };
                crate::agent::apply_text(self, &text)
            }
            "replace-flows" => {
                need(2)?;
                self.replace_flows(a[0], a[1])
            }
            "dump-flows" => {
                need(1)?;
                self.dump_flows(a[0], a.get(1).copied(), !no_stats)
            }
            "add-group" | "add-groups" | "mod-group" | "del-groups" => {
                need(1)?;
                self.group_mods(a[0], &cmd, a.get(1).copied().unwrap_or(""))
            }
            "dump-groups" => {
                need(1)?;
                self.with_bridge(a[0], |b| {
                    let mut out = String::from("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n");
                    for g in b.tables.groups() {
                        out.push_str(&format!(" {}\n", text::print_group(g).trim_start()));
                    }
                    Ok(out)
                })
            }
            "dump-ports" => {
                need(1)?;
                self.dump_ports(a[0], a.get(1).copied())
            }
            "dump-drops" => {
                need(1)?;
                let out = self.with_bridge(a[0], |b| {
                    use std::sync::atomic::Ordering::Relaxed;
                    let mut out = b.drops.format();
                    let sum = |f: fn(&CacheStats) -> &std::sync::atomic::AtomicU64| {
                        b.cache_stats
                            .iter()
                            .map(|s| f(s).load(Relaxed))
                            .sum::<u64>()
                    };
                    out.push_str(&format!(
                        "caches: emc_hits={} megaflow_hits={} misses={}\n",
                        sum(|s| &s.emc_hits),
                        sum(|s| &s.megaflow_hits),
                        sum(|s| &s.misses)
                    ));
                    Ok(out)
                })?;
                // Conntrack is shared by the switch's bridges: its own counters, one line.
                let ct = self.dp.call(|dp| {
                    let ct = dp.conntrack();
                    let mut line = format!("conntrack: connections={}", ct.len());
                    for (name, n) in ct.counters().iter() {
                        line.push_str(&format!(" {name}={n}"));
                    }
                    line
                });
                Ok(format!("{out}{ct}\n"))
            }
            "dump-conntrack" => {
                // Conntrack is shared by every bridge of the datapath; the bridge names the switch.
                if let Some(br) = a.first() {
                    self.with_bridge(br, |_| Ok(()))?;
                }
                let zone: Option<u16> = a
                    .iter()
                    .find_map(|x| x.strip_prefix("zone=").and_then(|z| z.parse().ok()));
                let lines = self.dp.call(move |dp| {
                    let now = dp.now_ns();
                    dp.conntrack()
                        .dump(now)
                        .filter(|e| zone.is_none_or(|z| e.zone == z))
                        .map(|e| format!("{e}\n"))
                        .collect::<String>()
                });
                Ok(lines)
            }
            "flush-conntrack" => {
                let n = self.dp.call(|dp| dp.conntrack().flush(None));
                Ok(format!("flushed {n} connections\n"))
            }
            "capture" => {
                need(3)?;
                self.capture(a[0], a[1], a[2], &a[3..])
            }
            "trace" => {
                need(2)?;
                self.trace(a[0], a[1])
            }
            "show" => {
                need(1)?;
                self.show(a[0])
            }
            "fdb-show" | "dump-macs" => {
                need(1)?;
                let idx = self.with_bridge(a[0], |b| Ok(b.dp_index))?;
                let rows = self.dp.call(move |dp| dp.mac_table_dump(idx));
                let mut out = String::from(" port  VLAN  MAC                Age\n");
                for (vlan, mac, port, age) in rows {
                    out.push_str(&format!(
                        "{port:>5}  {vlan:>4}  {}  {age:>3}\n",
                        fmt_mac(&mac)
                    ));
                }
                Ok(out)
            }
            other => Err(format!("unknown command '{other}'; see vswitchctl --help")),
        }
    }

    fn with_bridge<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut BridgeCtl) -> Result<R, String>,
    ) -> Result<R, String> {
        let mut state = self.lock();
        let b = state
            .get_mut(name)
            .ok_or_else(|| format!("no bridge named {name}"))?;
        f(b)
    }

    pub fn add_br(&self, name: &str) -> CmdResult {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
            return Err(format!(
                "bad bridge name '{name}' (1 to 15 characters, no '/', ' ' or ':')"
            ));
        }
        let mut state = self.lock();
        if state.contains_key(name) {
            return Err(format!("a bridge named {name} already exists"));
        }
        let pipeline = Arc::new(ArcSwap::from_pointee(Pipeline::empty()));
        let drops = Arc::new(DropCounters::default());
        let (dp_index, cache_stats) = self.dp.add_bridge(name, pipeline.clone(), drops.clone());
        let mut b = BridgeCtl {
            name: name.to_string(),
            dp_index,
            tables: FlowTables::new(),
            ports: BTreeMap::new(),
            pipeline,
            drops,
            cache_stats,
            version: 0,
            created: Instant::now(),
            installed: Installed::default(),
            async_hub: Some(self.packet_ins.clone()),
        };
        // A new bridge is an L2 learning switch, as in Open vSwitch.
        let normal = text::parse_flow("priority=0,actions=NORMAL").map_err(|e| e.to_string())?;
        b.tables
            .flow_mod(&normal, Instant::now())
            .map_err(|e| e.to_string())?;
        publish(&mut b);
        self.packet_ins
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(b.dp_index, name.to_string());
        state.insert(name.to_string(), b);
        drop(state);
        self.openflow.bridge_added(&self.rundir, name);
        Ok(String::new())
    }

    pub fn del_br(&self, name: &str) -> CmdResult {
        let b = self
            .lock()
            .remove(name)
            .ok_or_else(|| format!("no bridge named {name}"))?;
        self.openflow.bridge_removed(name);
        let idx = b.dp_index;
        self.packet_ins
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&idx);
        self.dp.del_bridge(idx);
        Ok(String::new())
    }

    pub fn add_port(&self, br: &str, name: &str, args: &[String]) -> CmdResult {
        let spec = PortSpec::parse(name, args).map_err(|e| e.to_string())?;
        let to_open = spec.clone();
        self.attach_port(br, spec, move |drops| open_port(&to_open, drops))
    }

    /// Adds a port whose I/O the caller provides (in-memory ports in tests, for instance).
    pub fn add_port_with_io(&self, br: &str, spec: PortSpec, io: tap_io::MemPort) -> CmdResult {
        self.attach_port(br, spec, move |_| Ok((PortIo::Dev(Box::new(io)), [0; 6])))
    }

    fn attach_port(
        &self,
        br: &str,
        spec: PortSpec,
        open: impl FnOnce(&Arc<DropCounters>) -> Result<(PortIo, [u8; 6]), String>,
    ) -> CmdResult {
        let name = spec.name.clone();
        let mut state = self.lock();
        if state
            .values()
            .any(|b| b.ports.values().any(|p| p.spec.name == spec.name))
        {
            return Err(format!("a port named {name} already exists"));
        }
        let b = state
            .get_mut(br)
            .ok_or_else(|| format!("no bridge named {br}"))?;
        let ofport = match spec.ofport {
            Some(n) if b.ports.contains_key(&n) => {
                return Err(format!("ofport {n} is already in use on {br}"));
            }
            Some(n) => n,
            None => (1..).find(|n| !b.ports.contains_key(n)).unwrap_or(1),
        };
        let threads = self.dp.thread_count();
        if let Some(t) = spec.thread.filter(|t| *t >= threads) {
            return Err(format!(
                "options:thread={t}: thread {t} does not exist (vswitchd runs {threads} forwarding thread{})",
                if threads == 1 { "" } else { "s" }
            ));
        }
        let counters = Arc::new(PortCounters::default());
        let (io, mac) = open(&b.drops).map_err(|e| format!("cannot open port {name}: {e}"))?;
        let port = DpPort::new(
            &name,
            b.dp_index,
            ofport,
            spec.kind,
            io,
            counters.clone(),
            b.drops.clone(),
        );
        let (dp_id, thread) = self
            .dp
            .add_port(port, spec.thread)
            .map_err(|e| format!("cannot poll port {name}: {e}"))?;
        if self.dp.thread_count() > 1 {
            tracing::info!(port = %name, thread, "port polled by forwarding thread");
        }
        b.ports.insert(
            ofport,
            PortCtl {
                spec,
                ofport,
                dp_id,
                counters,
                mac,
            },
        );
        publish(b);
        self.packet_ins.send(
            br,
            AsyncEvent::PortStatus {
                reason: 0,
                ofport,
                name,
                mac,
            },
        );
        Ok(String::new())
    }

    /// Runs `frame` through bridge `br` as if received on `in_port` (PACKET_OUT, tests).
    pub fn inject(&self, br: &str, in_port: u32, frame: &[u8]) -> Result<(), String> {
        let idx = self.with_bridge(br, |b| Ok(b.dp_index))?;
        let frame = frame.to_vec();
        self.dp.call(move |dp| dp.inject(idx, in_port, &frame));
        Ok(())
    }

    pub fn del_port(&self, br: &str, name: &str) -> CmdResult {
        let mut state = self.lock();
        let b = state
            .get_mut(br)
            .ok_or_else(|| format!("no bridge named {br}"))?;
        let ofport = b
            .ports
            .iter()
            .find(|(_, p)| p.spec.name == name)
            .map(|(n, _)| *n)
            .ok_or_else(|| format!("bridge {br} has no port named {name}"))?;
        let p = b.ports.remove(&ofport).expect("found above");
        let dp_id = p.dp_id;
        publish(b);
        self.packet_ins.send(
            br,
            AsyncEvent::PortStatus {
                reason: 1,
                ofport,
                name: p.spec.name.clone(),
                mac: p.mac,
            },
        );
        self.dp.del_port(dp_id);
        Ok(String::new())
    }

    /// Applies flow-mods given as text (one per line for `add-flows`), all or nothing.
    pub fn flow_mods(
        &self,
        br: &str,
        text_in: &str,
        command: FlowModCommand,
        many: bool,
    ) -> CmdResult {
        let mods = parse_flow_mods(text_in, command, many)?;
        self.with_bridge(br, |b| apply_flow_mods(b, &mods).map(|_| String::new()))
    }

    fn replace_flows(&self, br: &str, text_in: &str) -> CmdResult {
        let mods = parse_flow_mods(text_in, FlowModCommand::Add, true)?;
        self.with_bridge(br, |b| {
            let mut next = FlowTables::new();
            for g in b.tables.groups() {
                let gm = flowtable::group::GroupMod {
                    command: flowtable::group::GroupModCommand::Add,
                    group: g.clone(),
                };
                next.group_mod(&gm).map_err(|e| e.to_string())?;
            }
            let now = Instant::now();
            for (line, fm) in &mods {
                next.flow_mod(fm, now)
                    .map_err(|e| format!("line {line}: {e}"))?;
            }
            // Counters live with the installed rules and move to a rule's replacement with
            // the same (table, match, priority): flows that survive keep theirs, as in OVS.
            b.tables = next;
            publish(b);
            Ok(String::new())
        })
    }

    fn group_mods(&self, br: &str, cmd: &str, text_in: &str) -> CmdResult {
        use flowtable::group::GroupModCommand;
        let command = match cmd {
            "mod-group" => GroupModCommand::Modify,
            "del-groups" => GroupModCommand::Delete,
            _ => GroupModCommand::Add,
        };
        let mut mods = Vec::new();
        if command == GroupModCommand::Delete && text_in.trim().is_empty() {
            mods.push(text::parse_group_mod("group_id=all", command).map_err(|e| e.to_string())?);
        } else {
            for (i, line) in text_in.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                mods.push(
                    text::parse_group_mod(line, command)
                        .map_err(|e| format!("line {}: {e}", i + 1))?,
                );
            }
        }
        self.with_bridge(br, |b| {
            let mut next = b.tables.clone();
            for gm in &mods {
                next.group_mod(gm).map_err(|e| e.to_string())?;
            }
            b.tables = next;
            publish(b);
            Ok(String::new())
        })
    }

    pub fn dump_flows(&self, br: &str, filter: Option<&str>, stats: bool) -> CmdResult {
        let filter = match filter {
            Some(f) if !f.trim().is_empty() => {
                Some(text::parse_flow_mod(f, FlowModCommand::Delete).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        self.with_bridge(br, |b| {
            let now = Instant::now();
            let mut out = String::new();
            if stats {
                out.push_str("OFPST_FLOW reply (OF1.3) (xid=0x2):\n");
            }
            for e in b.tables.flows() {
                if let Some(f) = &filter
                    && !flow_selected(e, f)
                {
                    continue;
                }
                let e = with_live_counters(b, e);
                let opts = PrintOpts {
                    stats,
                    now: Some(now),
                    ..PrintOpts::default()
                };
                out.push_str(&text::print_flow(&e, &opts));
                out.push('\n');
            }
            Ok(out)
        })
    }

    fn dump_ports(&self, br: &str, only: Option<&str>) -> CmdResult {
        self.with_bridge(br, |b| {
            let selected: Vec<&PortCtl> = b
                .ports
                .values()
                .filter(|p| only.is_none_or(|o| o == p.spec.name || o == p.ofport.to_string()))
                .collect();
            let mut out = format!("OFPST_PORT reply (OF1.3) (xid=0x2): {} ports\n", selected.len());
            for p in selected {
                let c = p.counters.snapshot();
                out.push_str(&format!(
                    "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}, frame=?, over=?, crc=?\n           tx pkts={}, bytes={}, drop={}, errs={}, coll=?\n           duration={:.3}s\n",
                    p.ofport, c.rx_packets, c.rx_bytes, c.rx_dropped, c.rx_errors, c.tx_packets, c.tx_bytes, c.tx_dropped, c.tx_errors, c.duration_secs
                ));
            }
            Ok(out)
        })
    }

    fn show(&self, br: &str) -> CmdResult {
        self.with_bridge(br, |b| {
            let mut out = format!(
                "OFPT_FEATURES_REPLY (OF1.3) (xid=0x2): dpid:{:016x}\nn_tables:254, n_buffers:0\ncapabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS\n",
                dpid(&b.name)
            );
            out.push_str("OFPST_PORT_DESC reply (OF1.3) (xid=0x3):\n");
            for p in b.ports.values() {
                out.push_str(&format!(
                    " {}({}): addr:{}\n     config:     0\n     state:      LIVE\n     speed: 0 Mbps now, 0 Mbps max\n",
                    p.ofport,
                    p.spec.name,
                    fmt_mac(&p.mac)
                ));
            }
            out.push_str("OFPT_GET_CONFIG_REPLY (OF1.3) (xid=0x5): frags=normal miss_send_len=0\n");
            Ok(out)
        })
    }

    /// `trace BR FLOW`: runs a packet described in flow syntax through the tables and explains.
    pub fn trace(&self, br: &str, flow: &str) -> CmdResult {
        let m = text::parse_match(flow).map_err(|e| e.to_string())?;
        self.with_bridge(br, |b| {
            let pipeline = b.pipeline.load_full();
            let key = m.value;
            let mut log = String::new();
            log.push_str(&format!(
                "Flow: {}\n\nbridge(\"{}\")\n-------------\n",
                text::print_match(&m),
                b.name
            ));
            let mut key = key;
            let mut table = 0u8;
            let mut all_actions = Vec::new();
            // Follow recirculations the way ofproto/trace does: the packet comes back from
            // conntrack as a new connection (+trk+new) unless the input says otherwise.
            for pass in 0..8 {
                let (flow, wc) =
                    crate::datapath::xlate::Xlate::new(&pipeline, &key, Some(&mut log)).run(table);
                log.push_str(&format!(
                    "\nMegaflow: {}\n",
                    text::print_match(&Match {
                        value: key.masked(&wc),
                        mask: wc
                    })
                ));
                all_actions.extend(flow.actions.iter().cloned());
                let recirc = flow.actions.iter().find_map(|a| match a {
                    crate::datapath::actions::DpAction::Ct(ct) => ct.recirc_table.map(|t| (t, ct)),
                    _ => None,
                });
                let Some((next_table, ct)) = recirc else { break };
                let zone = ct.zone;
                let mut next = flow.recirc_meta;
                // A committing NAT takes the first address/port of its range, as a new
                // connection would.
                if let Some(nat) = ct.nat.as_ref().filter(|_| ct.commit) {
                    let v4 = |a: &conntrack::tuple::Addr| {
                        u32::from_be_bytes([a.0[12], a.0[13], a.0[14], a.0[15]])
                    };
                    if let Some(r) = &nat.dst {
                        next.nw_dst = v4(&r.addr_min);
                        if r.port_min != 0 {
                            next.tp_dst = r.port_min;
                        }
                        next.ct_state |= encap::flowkey::CT_DNAT;
                    }
                    if let Some(r) = &nat.src {
                        next.nw_src = v4(&r.addr_min);
                        if r.port_min != 0 {
                            next.tp_src = r.port_min;
                        }
                        next.ct_state |= encap::flowkey::CT_SNAT;
                    }
                }
                next.recirc_id = next_table as u32 + 1;
                next.ct_zone = zone;
                let nat_bits = next.ct_state & (encap::flowkey::CT_SNAT | encap::flowkey::CT_DNAT);
                next.ct_state = if pass == 0 && key.ct_state == 0 {
                    encap::flowkey::CT_TRK | encap::flowkey::CT_NEW
                } else {
                    key.ct_state | encap::flowkey::CT_TRK
                } | nat_bits;
                log.push_str(&format!(
                    "\nrecirc(table={next_table}): resuming after conntrack (zone={zone}) with ct_state={}\n----------------------------------------------------------------\n",
                    ct_state_text(next.ct_state)
                ));
                key = next;
                table = next_table;
            }
            log.push_str(&format!(
                "Datapath actions: {}\n",
                format_dp_actions(&all_actions, &pipeline)
            ));
            Ok(log)
        })
    }

    /// `capture BR PORT FILE [count=N] [seconds=S]`: copies what the port receives and sends
    /// into a pcap file, until N frames (default 100) or S seconds (default 10, at most 300).
    pub fn capture(&self, br: &str, port: &str, file: &str, opts: &[&str]) -> CmdResult {
        let mut count = 100usize;
        let mut seconds = 10u64;
        for o in opts {
            match o.split_once('=') {
                Some(("count", v)) => {
                    count = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("bad count '{v}' (a positive number)"))?
                }
                Some(("seconds", v)) => {
                    seconds = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=300).contains(n))
                        .ok_or_else(|| format!("bad seconds '{v}' (1 to 300)"))?
                }
                _ => return Err(format!("unexpected argument '{o}' (count=N or seconds=S)")),
            }
        }
        let dp_id = self.with_bridge(br, |b| {
            b.ports
                .values()
                .find(|p| p.spec.name == port || p.ofport.to_string() == port)
                .map(|p| p.dp_id)
                .ok_or_else(|| format!("bridge {br} has no port {port}"))
        })?;
        if !self.dp.start_capture(dp_id, count) {
            return Err(format!("port {port} is gone"));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
        while Instant::now() < deadline && !self.dp.capture_full(dp_id) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let frames = self.dp.stop_capture(dp_id);
        crate::datapath::capture::write_pcap(Path::new(file), &frames)?;
        Ok(format!("{} frames written to {file}\n", frames.len()))
    }

    pub fn apply_config_file(&self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        crate::agent::apply(self, &text)
    }
}

fn format_dp_actions(actions: &[crate::datapath::actions::DpAction], p: &Pipeline) -> String {
    // Datapath port ids mean nothing to users: show the OpenFlow port number instead.
    let text: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
    let mut out = text.join(",");
    for info in p.ports.values() {
        out = out.replace(
            &format!("output:dp{}", info.dp_id),
            &format!("output:{}", info.ofport),
        );
    }
    out
}

fn ct_state_text(state: u8) -> String {
    use encap::flowkey::*;
    let names = [
        (CT_NEW, "new"),
        (CT_EST, "est"),
        (CT_REL, "rel"),
        (CT_RPL, "rpl"),
        (CT_INV, "inv"),
        (CT_TRK, "trk"),
        (CT_SNAT, "snat"),
        (CT_DNAT, "dnat"),
    ];
    names
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub(crate) fn dpid(name: &str) -> u64 {
    // Stable per bridge name, like OVS deriving it from a MAC.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) & 0xffff_ffff_ffff
}

/// Parses flow-mod text: one flow, or one per line (`#` comments and blank lines skipped).
pub fn parse_flow_mods(
    text_in: &str,
    command: FlowModCommand,
    many: bool,
) -> Result<Vec<(usize, FlowMod)>, String> {
    if !many {
        return text::parse_flow_mod(text_in, command)
            .map(|fm| vec![(1, fm)])
            .map_err(|e| e.to_string());
    }
    let mut mods = Vec::new();
    for (i, line) in text_in.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fm = text::parse_flow_mod(line, command).map_err(|e| format!("line {}: {e}", i + 1))?;
        mods.push((i + 1, fm));
    }
    Ok(mods)
}

/// Applies a batch atomically: on any error nothing changes.
pub fn apply_flow_mods(b: &mut BridgeCtl, mods: &[(usize, FlowMod)]) -> Result<(), String> {
    // Changes applied but not yet published (an OpenFlow session publishes lazily) are
    // published first, so that a rollback below undoes this batch and nothing else.
    if b.tables.changes().next().is_some() {
        publish(b);
    }
    let now = Instant::now();
    let mut removed = Vec::new();
    for (line, fm) in mods {
        match b.tables.flow_mod(fm, now) {
            Ok(r) => removed.extend(r.removed),
            Err(e) => {
                b.tables.rollback();
                return Err(if mods.len() > 1 {
                    format!("line {line}: {e}")
                } else {
                    e.to_string()
                });
            }
        }
    }
    report_removed(b, removed, OFPRR_DELETE);
    publish(b);
    Ok(())
}

pub const OFPRR_IDLE_TIMEOUT: u8 = 0;
pub const OFPRR_HARD_TIMEOUT: u8 = 1;
pub const OFPRR_DELETE: u8 = 2;

/// Sends FLOW_REMOVED for the removed flows that asked for it (`send_flow_rem`), with their
/// final counters.
pub fn report_removed(b: &BridgeCtl, removed: Vec<FlowEntry>, reason: u8) {
    let Some(hub) = &b.async_hub else { return };
    for e in removed {
        if !e.flags.contains(flowtable::flow::FlowFlags::SEND_FLOW_REM) {
            continue;
        }
        let e = with_live_counters(b, &e);
        hub.send(
            &b.name,
            AsyncEvent::FlowRemoved {
                entry: Box::new(e),
                reason,
            },
        );
    }
}

fn flow_selected(e: &FlowEntry, f: &FlowMod) -> bool {
    if f.table_id != flowtable::flow::TABLE_ALL && f.table_id != e.table_id {
        return false;
    }
    e.match_.is_subset_of(&f.match_)
        && (f.cookie_mask == 0 || (e.cookie & f.cookie_mask) == (f.cookie & f.cookie_mask))
}

fn with_live_counters(b: &BridgeCtl, e: &FlowEntry) -> FlowEntry {
    use std::sync::atomic::Ordering::Relaxed;
    let mut e = e.clone();
    if let Some(s) = b.flow_stats(&e) {
        e.packets += s.packets.load(Relaxed);
        e.bytes += s.bytes.load(Relaxed);
    }
    e
}

impl BridgeCtl {
    /// The datapath counters of a flow: those of its installed rule (as of the last publish).
    pub fn flow_stats(&self, e: &FlowEntry) -> Option<&Arc<FlowStats>> {
        self.installed
            .builders
            .get(&e.table_id)?
            .find_exact(&e.match_.value, &e.match_.mask, u32::from(e.priority))
            .map(|r| &r.payload().stats)
    }
}

/// Brings the datapath's snapshot in line with the control state and swaps it in.
///
/// Only what the tables' journal says changed is re-installed: a classifier rule is removed or
/// inserted per changed flow, only the touched tables get a new classifier snapshot, and the
/// other tables' snapshots are shared with the previous pipeline. A table set of another
/// lineage (replace-flows builds a fresh one) is installed from scratch.
pub fn publish(b: &mut BridgeCtl) {
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
                } => {
                    // A key's first journal entry tells whether it was installed; only then,
                    // or when the key may have come up earlier in this pass, look for its
                    // rule (a table holds one flow per (match, priority), as does its
                    // classifier, so the rule is found by its masked value).
                    let may_be_installed = seen.check_and_set(table, match_, priority);
                    // The replaced rule's counters go to its successor.
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
                        let stats = replaced.map(|r| r.payload().stats.clone());
                        install_rule(inst, e, stats.unwrap_or_default());
                    }
                    dirty.insert(table);
                }
                JournalEntry::Group(id) => match tables.group(id) {
                    Some(g) => {
                        let entry = match inst.groups.get(&id) {
                            Some(e) if e.group == *g => e.clone(),
                            old => Arc::new(GroupEntry::replacing(g.clone(), old.map(|e| &**e))),
                        };
                        inst.groups.insert(id, entry);
                    }
                    None => {
                        inst.groups.remove(&id);
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
        if let (Some(slot), Some(builder)) = (tables.get_mut(t as usize), inst.builders.get_mut(&t))
        {
            *slot = builder.snapshot();
        }
    }
    // An emptied table's builder still holds its last snapshot (the deleted rules): drop it
    // now rather than on the table's next change.
    inst.builders.retain(|_, bl| !bl.is_empty());
    let groups = inst.groups.clone();
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
                live: true,
            },
        );
    }
    let port_order = b.ports.keys().copied().collect();
    b.pipeline.store(Arc::new(Pipeline {
        version: b.version,
        tables,
        groups,
        ports,
        port_order,
    }));
    if let Some(hub) = b.async_hub.as_ref().filter(|_| !changes.is_empty()) {
        report_flow_changes(hub, &b.name, changes);
    }
}

/// Turns (before, after) pairs of changed flows into flow-monitor events. A flow whose
/// actions and cookie did not change (re-installed as is) is no event.
fn report_flow_changes(
    hub: &PacketInHub,
    bridge: &str,
    changes: Vec<(Option<FlowEntry>, Option<FlowEntry>)>,
) {
    use openflow::monitor::event;
    for (old, new) in changes {
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
                reason: OFPRR_DELETE,
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
        Arc::new(RuleRef {
            entry: e.clone(),
            stats,
        }),
    );
}

/// Opens the I/O back end of a port.
fn open_port(spec: &PortSpec, drops: &Arc<DropCounters>) -> Result<(PortIo, [u8; 6]), String> {
    match spec.kind {
        PortKind::AfPacket => {
            let mut cfg = tap_io::AfPacketConfig::new(&spec.name);
            cfg.skip_udp_dst_port = spec.skip_udp_dport;
            let port = tap_io::AfPacketPort::open(&cfg).map_err(|e| e.to_string())?;
            let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
            Ok((PortIo::Dev(Box::new(port)), mac))
        }
        PortKind::Tap | PortKind::Internal => {
            let port = tap_io::TapPort::open(&tap_io::TapConfig::new(&spec.name))
                .map_err(|e| e.to_string())?;
            let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
            Ok((PortIo::Dev(Box::new(port)), mac))
        }
        PortKind::Vxlan => {
            let t = spec
                .tunnel
                .as_ref()
                .ok_or("vxlan port without tunnel options")?;
            let local = match t.local_ip {
                Some(IpAddr::V4(ip)) => ip,
                Some(IpAddr::V6(_)) => return Err("IPv6 underlay is not supported yet".into()),
                None => Ipv4Addr::UNSPECIFIED,
            };
            let sock = tap_io::UdpTunnelSocket::bind(SocketAddr::from((local, t.dst_port)))
                .map_err(|e| e.to_string())?;
            let remote = match t.remote_ip {
                FromFlow::Fixed(IpAddr::V4(ip)) => Some(ip),
                FromFlow::Fixed(IpAddr::V6(_)) => {
                    return Err("IPv6 underlay is not supported yet".into());
                }
                FromFlow::Flow => None,
            };
            let vni = match t.key {
                FromFlow::Fixed(k) => Some(k),
                FromFlow::Flow => None,
            };
            let io = VxlanIo {
                sock,
                local,
                dst_port: t.dst_port,
                remote,
                vni,
                underlay_mtu: underlay_mtu(local),
                rx_meta: [TunnelMeta::default(); BATCH],
                rx_src: vec![SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
                tx_dst: Vec::with_capacity(BATCH),
                drops: drops.clone(),
            };
            Ok((PortIo::Vxlan(Box::new(io)), [0; 6]))
        }
    }
}

/// MTU of the interface that owns `local` (1500 when unknown or unspecified).
fn underlay_mtu(local: Ipv4Addr) -> usize {
    if local.is_unspecified() {
        return 1500;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return 1500;
    };
    for ifa in addrs {
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        if addr.ip() == local {
            return tap_io::iface::mtu(&ifa.interface_name).unwrap_or(1500);
        }
    }
    1500
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> BridgeCtl {
        BridgeCtl {
            name: "t".into(),
            dp_index: 0,
            tables: FlowTables::new(),
            ports: BTreeMap::new(),
            pipeline: Arc::new(ArcSwap::from_pointee(Pipeline::empty())),
            drops: Arc::new(DropCounters::default()),
            cache_stats: vec![Arc::new(CacheStats::default())],
            version: 0,
            created: Instant::now(),
            installed: Installed::default(),
            async_hub: None,
        }
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
            let Ok(fm) = text::parse_flow_mod(&text, cmd) else {
                continue;
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
                publish(&mut b);
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
