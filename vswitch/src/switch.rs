//! The switch: bridges and their ports, and the operations on them that are not OpenFlow
//! sessions (those live in `ofserver`) or node configuration (`agent`), both of which call in
//! here, never the reverse.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use flowtable::FlowMod;
use flowtable::flow::FlowModCommand;
use flowtable::group::GroupModCommand;
use flowtable::table::Pipeline as FlowTables;
use flowtable::text;

use crate::bridge::{AbsentPort, BridgeCtl, Commit, IfaceSeen, Opened, PortCtl, open_port};
use crate::datapath::counters::PortCounters;
use crate::datapath::drops::DropCounters;
use crate::datapath::ports::{DpPort, PortIo};
use crate::datapath::{DatapathHandle, LearnEvent};
use crate::events::{AsyncEvent, PacketInHub};
use crate::persist::format::MovedTap;
use crate::pipeline::{Pipeline, PortKind};
use crate::portspec::PortSpec;

/// Told when bridges come and go (the OpenFlow server opens and closes their sockets).
pub trait BridgeObserver: Send + Sync {
    fn bridge_added(&self, name: &str);
    fn bridge_removed(&self, name: &str);
}

/// The switch: its bridges (one mutex: changes are rare and must be serialized anyway), the
/// datapath they run on, and the hub of asynchronous OpenFlow events.
pub struct Switch {
    pub dp: DatapathHandle,
    pub rundir: PathBuf,
    state: Mutex<BTreeMap<String, BridgeCtl>>,
    pub packet_ins: Arc<PacketInHub>,
    observers: Mutex<Vec<Arc<dyn BridgeObserver>>>,
    /// Rung after every change of bridges, ports, flows or groups (the state file's writer
    /// listens); a full channel means a save is already due.
    changes: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    /// Port name -> where its TAP device was moved, for the ports a restore is about to add.
    moved_taps: Mutex<HashMap<String, MovedTap>>,
    /// The queue of `learn` requests, once `start_learning` ran (for `settle_learning`).
    learn_tx: Mutex<Option<crossbeam_channel::Sender<LearnEvent>>>,
    /// The last reason each waiting tunnel port's open failed, so that a new one is logged
    /// once rather than every second.
    wait_errors: Mutex<HashMap<String, String>>,
}

type CmdResult = Result<String, String>;

impl Switch {
    pub fn new(dp: DatapathHandle, rundir: PathBuf) -> Switch {
        Switch {
            dp,
            rundir,
            state: Mutex::new(BTreeMap::new()),
            packet_ins: Arc::new(PacketInHub::default()),
            observers: Mutex::new(Vec::new()),
            changes: crossbeam_channel::bounded(1),
            moved_taps: Mutex::new(HashMap::new()),
            learn_tx: Mutex::new(None),
            wait_errors: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that the configuration changed (a save of the state file becomes due).
    pub fn mark_changed(&self) {
        let _ = self.changes.0.try_send(());
    }

    /// Where change notices arrive (one pending notice stands for any number of changes).
    pub fn changes(&self) -> crossbeam_channel::Receiver<()> {
        self.changes.1.clone()
    }

    /// Registers `o` for bridge additions and removals from now on.
    pub fn observe_bridges(&self, o: Arc<dyn BridgeObserver>) {
        self.observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(o);
    }

    fn observers(&self) -> Vec<Arc<dyn BridgeObserver>> {
        self.observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// Starts applying the datapath's `learn` and `fin_timeout` requests to the bridges'
    /// tables (one thread; a full queue makes the datapath try again on a later packet).
    pub fn start_learning(self: &Arc<Self>) {
        let (tx, rx) = crossbeam_channel::bounded::<LearnEvent>(4096);
        self.dp.set_learn_sink(tx.clone());
        *self.learn_tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("learn".into())
            .spawn(move || {
                for ev in rx {
                    let Some(sw) = me.upgrade() else { break };
                    sw.apply_learn_event(ev);
                }
            });
    }

    fn apply_learn_event(&self, ev: LearnEvent) {
        match ev {
            LearnEvent::Learn { bridge, req } => {
                let mut state = self.lock();
                if let Some(b) = state.values_mut().find(|b| b.dp_index == bridge)
                    && let Err(e) = b.apply_learned(&req.fm, req.limit)
                {
                    tracing::warn!(bridge = %b.name, error = %e, "learn: flow not installed");
                }
            }
            LearnEvent::FinTimeout { bridge, req } => {
                let mut state = self.lock();
                if let Some(b) = state.values_mut().find(|b| b.dp_index == bridge) {
                    b.apply_fin_timeout(
                        req.table,
                        &req.match_,
                        req.priority,
                        req.idle_timeout,
                        req.hard_timeout,
                    );
                }
            }
            LearnEvent::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Waits until every `learn`/`fin_timeout` request queued so far has been applied (for
    /// tests: the next packet then sees the learned flows). No-op without `start_learning`.
    pub fn settle_learning(&self) {
        let tx = self
            .learn_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            if tx.send(LearnEvent::Barrier(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
            }
        }
    }

    /// Removes flows whose idle or hard timeout has passed (OpenFlow 1.3 §6.5), publishing the
    /// change like any flow-mod. Returns how many were removed. Called about once a second.
    pub fn expire_flows(&self) -> usize {
        let now = Instant::now();
        let dp_now_ns = now.duration_since(self.dp.start).as_nanos() as u64;
        self.lock()
            .values_mut()
            .map(|b| b.expire_flows(now, dp_now_ns))
            .sum()
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
                    sw.reattach_changed_interfaces();
                    sw.refresh_port_macs();
                }
            });
    }

    /// Removes every bridge (and the TAP devices of their ports) and stops the datapath.
    pub fn shutdown(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for n in names {
            let _ = self.del_br(&n);
        }
        self.dp.stop();
    }

    /// Stops for a restart: the bridges' OpenFlow sockets close and the datapath stops, but
    /// the interfaces stay (TAP devices are persistent) for the next process to reattach.
    pub fn stop_keeping_interfaces(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for name in &names {
            for o in self.observers() {
                o.bridge_removed(name);
            }
        }
        self.dp.stop();
    }

    /// The bridges, under the switch lock.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BridgeCtl>> {
        // A panic in one command must not wedge every later one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on bridge `name` under the switch lock.
    pub fn with_bridge<R>(
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
        let samples = Arc::new(crate::datapath::sample::SampleCounters::default());
        let (dp_index, cache_stats) =
            self.dp
                .add_bridge(name, pipeline.clone(), drops.clone(), samples.clone());
        let mut b = BridgeCtl::new(
            name,
            dp_index,
            pipeline,
            drops,
            cache_stats,
            Some(self.packet_ins.clone()),
        );
        b.on_change = Some(self.changes.0.clone());
        b.samples = samples;
        // A new bridge is an L2 learning switch, as in Open vSwitch.
        let normal = text::parse_flow("priority=0,actions=NORMAL").map_err(|e| e.to_string())?;
        b.transaction(Commit::Atomic, |tx| tx.flow_mod(&normal))
            .map_err(|e| e.to_string())?;
        self.packet_ins.bridge_added(b.dp_index, name);
        state.insert(name.to_string(), b);
        drop(state);
        for o in self.observers() {
            o.bridge_added(name);
        }
        Ok(String::new())
    }

    pub fn del_br(&self, name: &str) -> CmdResult {
        let b = self
            .lock()
            .remove(name)
            .ok_or_else(|| format!("no bridge named {name}"))?;
        for o in self.observers() {
            o.bridge_removed(name);
        }
        self.packet_ins.bridge_removed(b.dp_index);
        self.dp.del_bridge(b.dp_index);
        for p in b.ports.values() {
            remove_device(p);
        }
        self.mark_changed();
        Ok(String::new())
    }

    pub fn add_port(&self, br: &str, name: &str, args: &[String]) -> CmdResult {
        self.add_port_with_config(br, name, args, 0)
    }

    /// [`Switch::add_port`] with OpenFlow port config bits (`port_down`, `no_fwd`, ...) in
    /// force from its first frame (a restore: a port saved down never forwards).
    pub fn add_port_with_config(
        &self,
        br: &str,
        name: &str,
        args: &[String],
        config: u32,
    ) -> CmdResult {
        let spec = PortSpec::parse(name, args).map_err(|e| e.to_string())?;
        let to_open = spec.clone();
        let moved = self
            .moved_taps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if spec.xdp == Some(crate::portspec::XdpMode::On) {
            // Its open may wait up to 2 s for a busy queue: not under the switch lock.
            let opened = open_port(&to_open, moved.as_ref());
            return self.attach_port(br, spec, config, true, move || opened);
        }
        self.attach_port(br, spec, config, true, move || {
            open_port(&to_open, moved.as_ref())
        })
    }

    /// A saved AF_PACKET port whose interface does not exist now (deleted while the switch was
    /// down, not back yet after a reboot): added without I/O (`AbsentPort`: receives nothing,
    /// drops what is sent to it as a link down), its link down, with its ofport, flows and
    /// `mod-port` bits. The interface watcher opens it once an interface of that name appears,
    /// as it reopens a port whose interface is deleted and created again while the switch runs.
    /// A saved tunnel port whose `local_ip` is on no interface yet (the underlay not up: a
    /// boot) is added the same way and tried again every second (`Opened::tunnel_waits`).
    /// Refused for another kind of port, or when the interface (the address) exists.
    pub fn add_port_awaiting_interface(
        &self,
        br: &str,
        name: &str,
        args: &[String],
        config: u32,
    ) -> CmdResult {
        let spec = PortSpec::parse(name, args).map_err(|e| e.to_string())?;
        if spec.kind.is_tunnel() {
            let local = spec.tunnel.as_ref().and_then(|t| match t.local_ip {
                Some(std::net::IpAddr::V4(ip)) => Some(ip),
                _ => None,
            });
            if local.is_none_or(|ip| crate::bridge::underlay_iface(ip).is_some()) {
                return Err(format!(
                    "port {name}: not a tunnel port whose local address is missing"
                ));
            }
            let name = name.to_string();
            return self.attach_port(br, spec, config, true, move || {
                Ok(Opened::waiting_tunnel(&name))
            });
        }
        if spec.kind != PortKind::AfPacket || IfaceSeen::of(name).is_some() {
            return Err(format!(
                "port {name}: not an AF_PACKET port without its interface"
            ));
        }
        let io = AbsentPort::new(name);
        self.attach_port(br, spec, config, true, move || {
            Ok(Opened::plain(PortIo::Dev(Box::new(io)), [0; 6]))
        })
    }

    /// Where the TAP devices of ports about to be restored were moved (the state file's
    /// `moved`): the port of that name reattaches there when it is added.
    pub fn expect_moved_taps(&self, moved: HashMap<String, MovedTap>) {
        *self.moved_taps.lock().unwrap_or_else(|e| e.into_inner()) = moved;
    }

    /// Notes where TAP devices went since they were last looked at (moved into another
    /// namespace, renamed there), so that the state file says where to reattach them; a
    /// change makes a save due. A few system calls per TAP port: run every few seconds, not
    /// per packet.
    pub fn refresh_tap_whereabouts(&self) {
        let Ok(home) = tap_io::tap::NetnsId::current() else {
            return;
        };
        let mut changed = false;
        for b in self.lock().values_mut() {
            for p in b.ports.values_mut() {
                let Some(Ok(seen)) = p.tap.as_ref().map(|t| t.whereabouts()) else {
                    continue;
                };
                if p.tap_seen.as_ref() == Some(&seen) {
                    continue;
                }
                let moved = if seen.netns == home {
                    None
                } else {
                    let known = p.moved.as_ref().map(|m| m.netns.clone()).filter(|path| {
                        tap_io::tap::NetnsId::of_path(Path::new(path))
                            .is_ok_and(|id| id == seen.netns)
                    });
                    match known.or_else(|| seen.netns.named_path().map(|p| p.display().to_string()))
                    {
                        Some(netns) => Some(MovedTap {
                            netns,
                            ifname: seen.name.clone(),
                        }),
                        None => {
                            tracing::warn!(port = %p.spec.name, ifname = %seen.name,
                                "the TAP device is in a network namespace without a name under /run/netns: it cannot be reattached after a restart");
                            None
                        }
                    }
                };
                if moved != p.moved {
                    tracing::info!(port = %p.spec.name, ifname = %seen.name,
                        netns = moved.as_ref().map_or("(the switch's)", |m| m.netns.as_str()),
                        "TAP device moved");
                    p.moved = moved;
                    changed = true;
                }
                p.tap_seen = Some(seen);
            }
        }
        if changed {
            self.mark_changed();
        }
    }

    /// Reopens the ports on existing interfaces (afpacket) whose interface was deleted and
    /// created again under the same name (another ifindex) since the port opened: a packet
    /// socket stays bound to the interface it opened on, so the port would never receive
    /// again. The new sockets open first (a failed open is logged and tried again on the next
    /// call), then the port's I/O is swapped under one lock, keeping its ofport, counters and
    /// current spec and `mod-port` bits; a port changed meanwhile (deleted, added again) is
    /// left alone. An MTU changed under a port is warned about (the port's frame size follows
    /// the MTU it opened with; `del-port` and `add-port` apply the new one). A tunnel port is
    /// reopened when the underlay interface with its local address is created again, another,
    /// or has another MTU (its super-frames are redirected to that interface and its packets
    /// bounded by its MTU); its socket holds the address, so the old one closes first, and a
    /// failed open is retried every call. The system calls run outside the switch lock, a
    /// few per port: run every second, not per packet.
    pub fn reattach_changed_interfaces(&self) {
        let watched: Vec<Watched> = self
            .lock()
            .iter()
            .flat_map(|(br, b)| {
                b.ports
                    .values()
                    .filter(|p| {
                        p.iface_seen.is_some() || p.underlay_seen.is_some() || p.tunnel_waits
                    })
                    .map(|p| Watched {
                        br: br.clone(),
                        spec: p.spec.clone(),
                        dp_id: p.dp_id,
                        iface: p.iface_seen,
                        underlay: p.underlay_seen.clone(),
                        tunnel_waits: p.tunnel_waits,
                    })
            })
            .collect();
        for w in watched {
            let name = w.spec.name.as_str();
            if w.tunnel_waits {
                // Tried every second: a bind and a connect, the TAP only once it opens.
                match open_port(&w.spec, None) {
                    Ok(opened) if !opened.tunnel_waits => self.swap_port_io(&w, Some(opened)),
                    Ok(_) => {}
                    // Said once per new reason: the operator's why a port stays down.
                    Err(e) if self.note_wait_error(name, &e) => {
                        tracing::warn!(port = %name, "tunnel port still cannot open (tried every second): {e}");
                    }
                    Err(_) => {}
                }
                continue;
            }
            // The underlay's link going down or up changes nothing for the tunnel socket: only
            // another interface or another MTU reopens it.
            if let Some(seen) = &w.underlay
                && let Some(now) = underlay_of(&w.spec)
                    .filter(|now| now.0 != seen.0 || !now.1.same_device(&seen.1))
            {
                tracing::debug!(port = %name, ?seen, ?now, "underlay changed");
                self.swap_port_io(&w, None);
                continue;
            }
            let Some(seen) = w.iface else {
                continue;
            };
            let Some(now) = IfaceSeen::of(name) else {
                // Deleted (a pod's namespace removed before its CNI DEL): the port is dead
                // until an interface of that name comes back.
                if seen.running {
                    self.note_iface_change(
                        &w,
                        IfaceSeen {
                            running: false,
                            ..seen
                        },
                        true,
                    );
                }
                continue;
            };
            if now.ifindex != seen.ifindex {
                match open_port(&w.spec, None) {
                    Ok(opened) => self.swap_port_io(&w, Some(opened)),
                    Err(e) => tracing::warn!(port = %name,
                        "interface created again, reopening the port failed (tried again in a second): {e}"),
                }
            } else if now != seen {
                if now.mtu != seen.mtu {
                    tracing::warn!(port = %name, from = seen.mtu, to = now.mtu,
                        "interface MTU changed under the port: del-port and add-port it to follow (frames above the old MTU are dropped as too_big)");
                }
                self.note_iface_change(&w, now, seen.running != now.running);
            }
        }
    }

    /// Follows MAC addresses changed under ports (`ip link set dev X address ...`; the node
    /// agent gives its host port a MAC of its own after creating it): a port whose interface
    /// in the switch's namespace now has another MAC than the port reports takes it (`show`,
    /// `list-ports`, PORT_DESC), and OpenFlow connections get a PORT_STATUS MODIFY, as Open
    /// vSwitch reports a netdev's changed address. A TAP device moved into another namespace
    /// (a pod's) is not looked at: the port keeps the MAC it had. The system calls run
    /// outside the switch lock, one per port: run every second (and by the agent after it
    /// set the host port's MAC).
    pub fn refresh_port_macs(&self) {
        let home = tap_io::tap::NetnsId::current().ok();
        // (bridge, dp_id, interface name, MAC the port reports)
        let watched: Vec<(String, usize, String, [u8; 6])> = self
            .lock()
            .iter()
            .flat_map(|(br, b)| {
                b.ports.values().filter_map(|p| {
                    let name = match p.spec.kind {
                        PortKind::AfPacket => p.spec.name.clone(),
                        PortKind::Tap | PortKind::Internal => {
                            let seen = p.tap_seen.as_ref()?;
                            if p.moved.is_some() || Some(seen.netns) != home {
                                return None;
                            }
                            seen.name.clone()
                        }
                        PortKind::Vxlan | PortKind::Geneve => return None,
                    };
                    Some((br.clone(), p.dp_id, name, p.mac))
                })
            })
            .collect();
        for (br, dp_id, name, known) in watched {
            let Ok(mac) = tap_io::iface::mac(&name) else {
                continue; // gone (moved, deleted): nothing to follow
            };
            if mac == known || mac == [0; 6] {
                continue;
            }
            let mut state = self.lock();
            let Some(b) = state.get_mut(&br) else {
                continue;
            };
            let Some(p) = b.ports.values_mut().find(|p| {
                p.dp_id == dp_id
                    && (!matches!(p.spec.kind, PortKind::AfPacket) || p.spec.name == name)
            }) else {
                continue; // deleted or added again meanwhile
            };
            // A TAP device read by name: still the port's own, in the switch's namespace.
            if let Some(tap) = &p.tap
                && !tap
                    .whereabouts()
                    .is_ok_and(|w| Some(w.netns) == home && w.name == name)
            {
                continue;
            }
            tracing::info!(port = %p.spec.name, from = %fmt_mac(&p.mac), to = %fmt_mac(&mac),
                "port MAC changed");
            p.mac = mac;
            let desc = p.desc();
            drop(state);
            self.packet_ins.send(
                &br,
                AsyncEvent::PortStatus {
                    reason: openflow::switch::port_reason::MODIFY,
                    port: desc,
                },
            );
        }
    }

    /// Records what the port `w`'s interface looks like now. When its link went down or up,
    /// the port's liveness changed: the pipeline is published again (fast-failover groups,
    /// select groups' watched buckets and bundles choose by it, and the datapath revalidates
    /// what it cached) and OpenFlow connections get a PORT_STATUS.
    fn note_iface_change(&self, w: &Watched, now: IfaceSeen, link_changed: bool) {
        let mut state = self.lock();
        let Some(b) = state.get_mut(&w.br) else {
            return;
        };
        let Some(p) = b.ports.values_mut().find(|p| p.dp_id == w.dp_id) else {
            return;
        };
        p.iface_seen = Some(now);
        if !link_changed {
            return;
        }
        tracing::info!(port = %w.spec.name, running = now.running, "port link changed");
        // As the pipeline now sees it (a second look at the interface could disagree).
        let mut desc = p.desc();
        desc.state = if now.running && p.config & openflow::switch::port_config::PORT_DOWN == 0 {
            openflow::switch::port_state::LIVE
        } else {
            openflow::switch::port_state::LINK_DOWN
        };
        b.publish();
        self.packet_ins.send(
            &w.br,
            AsyncEvent::PortStatus {
                reason: openflow::switch::port_reason::MODIFY,
                port: desc,
            },
        );
    }

    /// Gives the port `w` looked at new I/O (`opened`, or for a tunnel opened here once the
    /// old socket is closed), under one lock: only if it is still that port.
    fn swap_port_io(&self, w: &Watched, opened: Option<Opened>) {
        let name = w.spec.name.as_str();
        let mut state = self.lock();
        let Some(b) = state.get_mut(&w.br) else {
            return;
        };
        let Some(ofport) = b
            .ports
            .iter()
            .find(|(_, p)| p.spec.name == name && p.dp_id == w.dp_id && p.spec == w.spec)
            .map(|(n, _)| *n)
        else {
            return; // deleted or added again meanwhile: not ours to touch
        };
        let old = b.ports.remove(&ofport).expect("found above");
        self.dp.del_port(old.dp_id);
        let mut spec = old.spec.clone();
        spec.ofport = Some(ofport);
        let opened = match opened.map_or_else(|| open_port(&spec, None), Ok) {
            Ok(o) => o,
            Err(e) => {
                // Only a tunnel gets here (an interface port opened before): its old socket
                // is closed, so it waits, down, and is tried again every second.
                tracing::error!(port = %name, "reopening the tunnel port on its new underlay failed (tried again every second): {e}");
                Opened::waiting_tunnel(name)
            }
        };
        let now_waits = opened.tunnel_waits;
        let tap_seen = opened.tap.as_ref().and_then(|t| t.whereabouts().ok());
        let mut port = DpPort::new(
            name,
            b.dp_index,
            ofport,
            spec.kind,
            opened.io,
            old.counters.clone(),
            b.drops.clone(),
        );
        port.config = old.config;
        match self.dp.add_port(port, spec.thread, spec.rx_queues()) {
            Ok((dp_id, _)) => {
                if now_waits {
                    // Said above, or by `open_port`'s caller.
                } else if w.tunnel_waits {
                    tracing::info!(port = %name, "tunnel port opened: its underlay is ready (a route to its remote, its local address)");
                } else {
                    tracing::info!(port = %name, "the interface under the port changed (created again, or the tunnel's underlay moved or has another MTU): port reopened on it");
                }
                b.ports.insert(
                    ofport,
                    PortCtl {
                        // Gone again already: watched for the next one.
                        iface_seen: (spec.kind == PortKind::AfPacket)
                            .then(|| IfaceSeen::of(name).unwrap_or(IfaceSeen::ABSENT)),
                        underlay_seen: underlay_of(&spec),
                        spec,
                        ofport,
                        dp_id,
                        counters: old.counters,
                        mac: opened.mac,
                        config: old.config,
                        tap: opened.tap,
                        moved: opened.moved,
                        tap_seen,
                        tunnel_waits: opened.tunnel_waits,
                    },
                );
            }
            Err(e) => {
                tracing::error!(port = %name, "reopening the port failed, it is gone: cannot poll it: {e}")
            }
        }
        b.publish();
        // Its link and MAC as the new interface has them (a port that waited for its
        // interface was announced down, without a MAC).
        if let Some(p) = b.ports.get(&ofport) {
            let desc = p.desc();
            drop(state);
            self.packet_ins.send(
                &w.br,
                AsyncEvent::PortStatus {
                    reason: openflow::switch::port_reason::MODIFY,
                    port: desc,
                },
            );
        }
    }

    /// Records `err` as waiting port `name`'s reason; true when it is new for the port.
    fn note_wait_error(&self, name: &str, err: &str) -> bool {
        let mut seen = self.wait_errors.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|n, _| self.has_port_named(n) || n == name);
        if seen.get(name).is_some_and(|e| e == err) {
            return false;
        }
        seen.insert(name.to_string(), err.to_string());
        true
    }

    fn has_port_named(&self, name: &str) -> bool {
        self.lock()
            .values()
            .any(|b| b.ports.values().any(|p| p.spec.name == name))
    }

    /// Adds a port whose I/O the caller provides (in-memory ports in tests, for instance).
    pub fn add_port_with_io(&self, br: &str, spec: PortSpec, io: tap_io::MemPort) -> CmdResult {
        self.attach_port(br, spec, 0, false, move || {
            Ok(Opened::plain(PortIo::Dev(Box::new(io)), [0; 6]))
        })
    }

    /// Attaches a port with any back end (benchmarks: in-memory frame generators).
    pub fn add_port_with_dev(
        &self,
        br: &str,
        spec: PortSpec,
        io: Box<dyn tap_io::Port + Send>,
    ) -> CmdResult {
        self.attach_port(br, spec, 0, false, move || {
            Ok(Opened::plain(PortIo::Dev(io), [0; 6]))
        })
    }

    /// `by_name`: the port's I/O is opened on the interface of its name (not given by a test),
    /// so an AF_PACKET port whose interface cannot be seen is watched for one to appear.
    fn attach_port(
        &self,
        br: &str,
        mut spec: PortSpec,
        config: u32,
        by_name: bool,
        open: impl FnOnce() -> Result<Opened, String>,
    ) -> CmdResult {
        let name = spec.name.clone();
        let mut state = self.lock();
        if state
            .values()
            .any(|b| b.ports.values().any(|p| p.spec.name == spec.name))
        {
            return Err(format!("a port named {name} already exists"));
        }
        // A waiting tunnel port holds no share of its UDP port yet: one that would take the
        // same datagrams is refused here as the socket's claim would refuse it.
        if let Some(t) = &spec.tunnel
            && let Some(w) = state.values().flat_map(|b| b.ports.values()).find(|p| {
                p.tunnel_waits
                    && p.spec.tunnel.as_ref().is_some_and(|u| {
                        u.local_ip == t.local_ip
                            && u.dst_port == t.dst_port
                            && u.remote_ip == t.remote_ip
                    })
            })
        {
            return Err(format!(
                "port {} (waiting for its underlay) already takes the tunnel datagrams from that remote on UDP {}",
                w.spec.name, t.dst_port
            ));
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
        if spec.rx_queues() > threads {
            return Err(format!(
                "options:n_rxq={}: more receive queues than forwarding threads (vswitchd runs {threads}; see --threads)",
                spec.rx_queues()
            ));
        }
        let counters = Arc::new(PortCounters::default());
        let Opened {
            io,
            mac,
            tap,
            moved,
            xdp_refused,
            tunnel_waits,
        } = open().map_err(|e| format!("cannot open port {name}: {e}"))?;
        if xdp_refused {
            spec.xdp = None;
        }
        if tunnel_waits {
            tracing::warn!(port = %name,
                "tunnel port added down: no route to its remote or no local address yet (tried every second)");
        }
        let tap_seen = tap.as_ref().and_then(|t| t.whereabouts().ok());
        // An interface gone already (or never there: `add_port_awaiting_interface`) is
        // watched for one of its name to appear.
        let iface_seen = (spec.kind == PortKind::AfPacket)
            .then(|| IfaceSeen::of(&name).or(by_name.then_some(IfaceSeen::ABSENT)))
            .flatten();
        let underlay_seen = underlay_of(&spec);
        let mut port = DpPort::new(
            &name,
            b.dp_index,
            ofport,
            spec.kind,
            io,
            counters.clone(),
            b.drops.clone(),
        );
        port.config = config;
        let (dp_id, thread) = self
            .dp
            .add_port(port, spec.thread, spec.rx_queues())
            .map_err(|e| format!("cannot poll port {name}: {e}"))?;
        let pollers = self.dp.port_threads(dp_id);
        if pollers.len() > 1 {
            tracing::info!(port = %name, threads = ?pollers,
                "port received by several forwarding threads (one socket each, flows hashed)");
        } else if self.dp.thread_count() > 1 {
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
                config,
                tap,
                moved,
                tap_seen,
                iface_seen,
                underlay_seen,
                tunnel_waits,
            },
        );
        b.publish();
        let desc = b.ports[&ofport].desc();
        self.packet_ins.send(
            br,
            AsyncEvent::PortStatus {
                reason: openflow::switch::port_reason::ADD,
                port: desc,
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
        b.publish();
        self.packet_ins.send(
            br,
            AsyncEvent::PortStatus {
                reason: openflow::switch::port_reason::DELETE,
                port: p.desc(),
            },
        );
        self.dp.del_port(dp_id);
        remove_device(&p);
        Ok(String::new())
    }

    /// Sets a port's `mod-port` bits (`OFPPC_*`) on the control side and on every forwarding
    /// thread (a restore; OpenFlow PORT_MOD checks its request first, then does the same).
    pub fn set_port_config(&self, br: &str, name: &str, config: u32) -> CmdResult {
        let (dp_id, changed) = self.with_bridge(br, |b| {
            let p = b
                .ports
                .values_mut()
                .find(|p| p.spec.name == name)
                .ok_or_else(|| format!("bridge {br} has no port named {name}"))?;
            let liveness_changed =
                (config ^ p.config) & openflow::switch::port_config::PORT_DOWN != 0;
            let changed = p.config != config;
            p.config = config;
            let (dp_id, desc) = (p.dp_id, p.desc());
            if liveness_changed {
                // Liveness is part of the pipeline (fast-failover groups, bundles).
                b.publish();
            }
            Ok((dp_id, changed.then_some(desc)))
        })?;
        if let Some(port) = changed {
            self.packet_ins.send(
                br,
                AsyncEvent::PortStatus {
                    reason: openflow::switch::port_reason::MODIFY,
                    port,
                },
            );
        }
        self.dp.set_port_config(dp_id, config);
        self.mark_changed();
        Ok(String::new())
    }

    /// `set-port BR PORT tag=.. trunks=.. vlan_mode=..`: each setting given replaces the
    /// port's (an empty value clears it); the result is checked as `add-port` checks it. As
    /// Open vSwitch, the bridge's learned MACs are forgotten: they were learned in VLANs the
    /// port may no longer carry.
    pub fn set_port_vlan(&self, br: &str, name: &str, settings: &[String]) -> CmdResult {
        let changed = self.with_bridge(br, |b| {
            let p = b
                .ports
                .values_mut()
                .find(|p| p.spec.name == name)
                .ok_or_else(|| format!("bridge {br} has no port named {name}"))?;
            let mut vlan = p.spec.vlan.clone();
            for arg in settings {
                let (key, value) = arg
                    .split_once('=')
                    .ok_or_else(|| format!("expected KEY=VALUE, got '{arg}'"))?;
                match (key, value) {
                    ("tag", "") => vlan.tag = None,
                    ("trunks", "") => vlan.trunks.clear(),
                    ("vlan_mode", "") => vlan.mode = None,
                    _ => {
                        if !vlan.take_arg(key, value).map_err(|e| e.to_string())? {
                            return Err(format!(
                                "unknown port setting '{key}' (expected tag, trunks or vlan_mode)"
                            ));
                        }
                    }
                }
            }
            vlan.check().map_err(|e| e.to_string())?;
            if vlan == p.spec.vlan {
                return Ok(None);
            }
            p.spec.vlan = vlan;
            b.publish();
            Ok(Some(b.dp_index))
        })?;
        if let Some(idx) = changed {
            self.dp.call(move |dp| dp.flush_macs(idx));
            self.mark_changed();
        }
        Ok(String::new())
    }

    /// `fdb-flush BR`: forgets every MAC the bridge learned.
    pub fn flush_macs(&self, br: &str) -> CmdResult {
        let idx = self.with_bridge(br, |b| Ok(b.dp_index))?;
        self.dp.call(move |dp| dp.flush_macs(idx));
        Ok("table successfully flushed\n".to_string())
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
        self.with_bridge(br, |b| {
            b.transaction(Commit::Atomic, |tx| {
                for (line, fm) in &mods {
                    tx.flow_mod(fm).map_err(|e| match mods.len() {
                        1 => e.to_string(),
                        _ => format!("line {line}: {e}"),
                    })?;
                }
                Ok(String::new())
            })
        })
    }

    pub fn replace_flows(&self, br: &str, text_in: &str) -> CmdResult {
        let mods = parse_flow_mods(text_in, FlowModCommand::Add, true)?;
        self.with_bridge(br, |b| {
            let mut next = FlowTables::new();
            for g in b.tables().groups() {
                let gm = flowtable::group::GroupMod {
                    command: flowtable::group::GroupModCommand::Add,
                    group: g.clone(),
                };
                next.group_mod(&gm).map_err(|e| e.to_string())?;
            }
            // Meters stay too (flows may name them).
            for m in b.tables().meters() {
                let mm = flowtable::MeterMod {
                    command: flowtable::MeterModCommand::Add,
                    meter: m.clone(),
                };
                next.meter_mod(&mm).map_err(|e| e.to_string())?;
            }
            let now = Instant::now();
            for (line, fm) in &mods {
                next.flow_mod(fm, now)
                    .map_err(|e| format!("line {line}: {e}"))?;
            }
            b.transaction(Commit::Atomic, |tx| {
                tx.replace_all(next);
                Ok(String::new())
            })
        })
    }

    /// Applies group-mods given as text, one per line (an empty delete deletes every group),
    /// all or nothing.
    pub fn group_mods(&self, br: &str, command: GroupModCommand, text_in: &str) -> CmdResult {
        let mut mods = Vec::new();
        if command == GroupModCommand::Delete && text_in.trim().is_empty() {
            mods.push(text::parse_group_mod("group_id=all", command).map_err(|e| e.to_string())?);
        } else {
            for (n, line) in text::file_lines(text_in) {
                mods.push(
                    text::parse_group_mod(line, command).map_err(|e| format!("line {n}: {e}"))?,
                );
            }
        }
        self.with_bridge(br, |b| {
            b.transaction(Commit::Atomic, |tx| {
                for gm in &mods {
                    tx.group_mod(gm).map_err(|e| e.to_string())?;
                }
                Ok(String::new())
            })
        })
    }

    /// `capture BR PORT FILE [count=N] [seconds=S]`: copies what the port receives and sends
    /// into a pcap file, until N frames (default 100, at most [`CAPTURE_MAX_FRAMES`]) or S
    /// seconds (default 10, at most 300). It waits on a control-plane worker, the ones that
    /// also serve OpenFlow: at most [`CAPTURES_AT_ONCE`] run at once.
    pub fn capture(&self, br: &str, port: &str, file: &str, opts: &[&str]) -> CmdResult {
        let mut count = 100usize;
        let mut seconds = 10u64;
        for o in opts {
            match o.split_once('=') {
                Some(("count", v)) => {
                    count = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=CAPTURE_MAX_FRAMES).contains(n))
                        .ok_or_else(|| format!("bad count '{v}' (1 to {CAPTURE_MAX_FRAMES})"))?
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
        let dp_id = self.capture_port(br, port)?;
        let Some(_slot) = CaptureSlot::take() else {
            return Err(format!(
                "{CAPTURES_AT_ONCE} captures are running already: wait for one to end"
            ));
        };
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
}

/// Most frames one capture keeps (they are held in memory until it ends).
pub const CAPTURE_MAX_FRAMES: usize = 100_000;
/// Captures running at once.
pub const CAPTURES_AT_ONCE: usize = 2;

/// One of the [`CAPTURES_AT_ONCE`] places, given back when dropped.
struct CaptureSlot;

static CAPTURES_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl CaptureSlot {
    fn take() -> Option<CaptureSlot> {
        use std::sync::atomic::Ordering;
        CAPTURES_RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < CAPTURES_AT_ONCE).then_some(n + 1)
            })
            .ok()
            .map(|_| CaptureSlot)
    }
}

impl Drop for CaptureSlot {
    fn drop(&mut self) {
        CAPTURES_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Switch {
    fn capture_port(&self, br: &str, port: &str) -> Result<usize, String> {
        self.with_bridge(br, |b| {
            b.ports
                .values()
                .find(|p| p.spec.name == port || p.ofport.to_string() == port)
                .map(|p| p.dp_id)
                .ok_or_else(|| format!("bridge {br} has no port {port}"))
        })
    }

    /// `capture-status BR PORT`: `frames=N wanted=M` of the capture running on the port
    /// (`wanted=0`: none runs).
    pub fn capture_status(&self, br: &str, port: &str) -> CmdResult {
        let dp_id = self.capture_port(br, port)?;
        let (taken, wanted) = self.dp.capture_progress(dp_id);
        Ok(format!("frames={taken} wanted={wanted}\n"))
    }
}

/// Deletes the TAP device a port created (they are persistent, to survive restarts),
/// wherever it is now (moved into a pod's namespace too): it is made non-persistent through
/// the port's own handle, so it goes when the port's descriptors close.
/// A port `reattach_changed_interfaces` looks at, as it was under the lock.
struct Watched {
    br: String,
    spec: PortSpec,
    dp_id: usize,
    iface: Option<IfaceSeen>,
    underlay: Option<(String, IfaceSeen)>,
    tunnel_waits: bool,
}

/// A tunnel port's underlay interface (the one with its local address) as it is now.
fn underlay_of(spec: &PortSpec) -> Option<(String, IfaceSeen)> {
    let Some(std::net::IpAddr::V4(local)) = spec.tunnel.as_ref()?.local_ip else {
        return None;
    };
    let name = crate::bridge::underlay_iface(local)?;
    let seen = IfaceSeen::of(&name)?;
    Some((name, seen))
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn remove_device(p: &PortCtl) {
    let spec = &p.spec;
    if !matches!(
        spec.kind,
        crate::portspec::PortKind::Tap | crate::portspec::PortKind::Internal
    ) {
        return;
    }
    let done = match &p.tap {
        Some(t) => t.set_persist(false),
        None => tap_io::tap::remove_persistent(&spec.name),
    };
    if let Err(e) = done {
        tracing::warn!(port = %spec.name, "cannot remove the TAP device: {e}");
    }
}

/// Parses flow-mod text: one flow, or one per line (read as ovs-ofctl reads a flow file:
/// `#` comments anywhere in a line and blank lines skipped).
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
    for (n, line) in text::file_lines(text_in) {
        let fm = text::parse_flow_mod(line, command).map_err(|e| format!("line {n}: {e}"))?;
        mods.push((n, fm));
    }
    Ok(mods)
}
