//! The dump and list commands as typed views (`--format json`), and the two listings that are
//! new in text as well: `show` without a bridge (the whole switch, like `ovs-vsctl show`) and
//! `dump-megaflows` (the megaflow cache, like `ovs-appctl dpctl/dump-flows`).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use flowtable::flow::FlowModCommand;
use flowtable::text;

use super::{Control, ControlError, fmt_mac};
use crate::bridge::{BridgeCtl, PortCtl, dpid, flow_selected, with_live_counters};
use crate::command::MgmtCommand;
use crate::datapath::actions::DpAction;
use crate::datapath::megaflow_dump::MegaflowSnapshot;
use crate::pipeline::FromFlow;
use crate::views::*;

impl Control {
    /// Runs a dump or list command and answers its JSON document; other commands list
    /// nothing and are refused rather than answered with text.
    pub(super) fn run_json(&self, cmd: MgmtCommand) -> Result<String, ControlError> {
        use MgmtCommand as C;
        let sw = &self.switch;
        let json = match cmd {
            C::ListBr => to_json(&BridgeList {
                bridges: sw.lock().keys().cloned().collect(),
            }),
            C::ListPorts { bridge } => to_json(&sw.with_bridge(&bridge, |b| {
                Ok(PortList {
                    bridge: b.name.clone(),
                    ports: port_views(b, &sw.dp),
                })
            })?),
            C::Show { bridge: None } => to_json(&self.switch_view()),
            C::DumpFlows { bridge, filter, .. } => {
                to_json(&self.flow_dump(&bridge, filter.as_deref())?)
            }
            C::DumpGroups { bridge } => to_json(&sw.with_bridge(&bridge, |b| {
                Ok(GroupDump {
                    groups: b.tables().groups().map(GroupView::of).collect(),
                })
            })?),
            C::DumpPorts { bridge, port } => to_json(&self.port_stats(&bridge, port.as_deref())?),
            C::DumpDrops { bridge } => to_json(&self.drops_view(&bridge)?),
            C::DumpSamples { bridge } => to_json(&sw.with_bridge(&bridge, |b| {
                Ok(SamplesView {
                    bridge: b.name.clone(),
                    collector_sets: b
                        .samples
                        .snapshot()
                        .into_iter()
                        .map(|(id, packets)| (id.to_string(), packets))
                        .collect(),
                    other: b.samples.other(),
                })
            })?),
            C::DumpConntrack { bridge, zone } => to_json(&ConntrackDump {
                connections: self
                    .connections(bridge, zone)?
                    .iter()
                    .map(ConnView::of)
                    .collect(),
            }),
            C::CtGetLimits { bridge, zones } => {
                to_json(&self.ct_limits(&bridge, zones.as_ref().map(|z| z.0.as_slice()))?)
            }
            C::FdbShow { bridge } => to_json(&self.fdb_dump(&bridge)?),
            C::DumpMegaflows { bridge } => to_json(&self.megaflow_dump(&bridge)?),
            C::ListPods => to_json(&self.agent.pod_list()),
            C::ListServices => to_json(&self.agent.service_list()),
            C::NodeInfo => self.agent.node_info()?,
            other => {
                return Err(ControlError::Usage(format!(
                    "--format json is not available for {}: only dump and list commands \
                     (and show, node-info) print JSON",
                    other.name()
                )));
            }
        };
        Ok(json)
    }

    /// `show` without a bridge.
    pub(super) fn switch_view(&self) -> SwitchView {
        let rundir = &self.switch.rundir;
        let bridges = self
            .switch
            .lock()
            .values()
            .map(|b| BridgeView {
                name: b.name.clone(),
                dpid: format!("{:016x}", dpid(&b.name)),
                openflow_socket: crate::rundir::bridge_socket(rundir, &b.name)
                    .display()
                    .to_string(),
                flows: b.tables().flows().len(),
                groups: b.tables().groups().count(),
                ports: port_views(b, &self.switch.dp),
            })
            .collect();
        SwitchView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            rundir: rundir.display().to_string(),
            management_socket: crate::rundir::mgmt_socket(rundir).display().to_string(),
            forwarding_threads: self.switch.dp.thread_count(),
            bridges,
        }
    }

    pub(super) fn show_switch_text(&self) -> String {
        let v = self.switch_view();
        let mut out = format!(
            "vswitchd {} (rundir {}, {} forwarding thread{})\n    Manager \"punix:{}\"\n",
            v.version,
            v.rundir,
            v.forwarding_threads,
            if v.forwarding_threads == 1 { "" } else { "s" },
            v.management_socket
        );
        for b in &v.bridges {
            out.push_str(&format!(
                "    Bridge {}\n        Controller \"punix:{}\"\n        datapath_id: \"{}\"\n        flows: {}, groups: {}\n",
                b.name, b.openflow_socket, b.dpid, b.flows, b.groups
            ));
            for p in &b.ports {
                out.push_str(&format!("        Port {}\n", p.name));
                // As `ovs-vsctl show`: the VLAN settings a port has.
                if let Some(tag) = p.tag {
                    out.push_str(&format!("            tag: {tag}\n"));
                }
                if !p.trunks.is_empty() {
                    let list: Vec<String> = p.trunks.iter().map(u16::to_string).collect();
                    out.push_str(&format!("            trunks: [{}]\n", list.join(", ")));
                }
                if p.vlan_mode != "access" && p.vlan_mode != "trunk" {
                    out.push_str(&format!("            vlan_mode: {}\n", p.vlan_mode));
                }
                out.push_str(&format!(
                    "            Interface {name}\n                type: {}\n                ofport: {}\n                mac: \"{}\"\n",
                    p.kind,
                    p.ofport,
                    p.mac,
                    name = p.name
                ));
                if !p.options.is_empty() {
                    let opts: Vec<String> = p
                        .options
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{v}\""))
                        .collect();
                    out.push_str(&format!(
                        "                options: {{{}}}\n",
                        opts.join(", ")
                    ));
                }
            }
        }
        out
    }

    fn flow_dump(&self, br: &str, filter: Option<&str>) -> Result<FlowDump, String> {
        let filter = match filter {
            Some(f) if !f.trim().is_empty() => {
                Some(text::parse_flow_mod(f, FlowModCommand::Delete).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        self.switch.with_bridge(br, |b| {
            let now = Instant::now();
            let flows = b
                .tables()
                .flows()
                .into_iter()
                .filter(|e| filter.as_ref().is_none_or(|f| flow_selected(e, f)))
                .map(|e| FlowView::of(&with_live_counters(b, e), now))
                .collect();
            Ok(FlowDump { flows })
        })
    }

    fn port_stats(&self, br: &str, only: Option<&str>) -> Result<PortStatsDump, String> {
        self.switch.with_bridge(br, |b| {
            let ports = b
                .ports
                .values()
                .filter(|p| only.is_none_or(|o| o == p.spec.name || o == p.ofport.to_string()))
                .map(|p| {
                    let c = p.counters.snapshot();
                    PortStatsView {
                        port_no: p.ofport,
                        rx_packets: Some(c.rx_packets),
                        rx_bytes: Some(c.rx_bytes),
                        rx_dropped: Some(c.rx_dropped),
                        rx_errors: Some(c.rx_errors),
                        tx_packets: Some(c.tx_packets),
                        tx_bytes: Some(c.tx_bytes),
                        tx_dropped: Some(c.tx_dropped),
                        tx_errors: Some(c.tx_errors),
                        duration_secs: c.duration_secs,
                    }
                })
                .collect();
            Ok(PortStatsDump { ports })
        })
    }

    fn drops_view(&self, br: &str) -> Result<DropsView, String> {
        use crate::datapath::drops::DropReason;
        use std::sync::atomic::Ordering::Relaxed;
        let sw = &self.switch;
        let mut view = sw.with_bridge(br, |b| {
            let drops: BTreeMap<String, u64> = DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), b.drops.get(*r)))
                .collect();
            let sum = |f: fn(&crate::datapath::CacheStats) -> &std::sync::atomic::AtomicU64| {
                b.cache_stats.iter().map(|s| f(s).load(Relaxed)).sum()
            };
            let kernel_ring_drops: BTreeMap<String, u64> = b
                .ports
                .values()
                .map(|p| (p.spec.name.clone(), p.counters.snapshot().rx_dropped))
                .collect();
            Ok(DropsView {
                bridge: b.name.clone(),
                total_dropped: b.drops.total_dropped(),
                drops,
                counted_not_dropped: DropReason::ALL
                    .iter()
                    .filter(|r| !r.drops_packet())
                    .map(|r| r.name().to_string())
                    .collect(),
                caches: CacheCounters {
                    emc_hits: sum(|s| &s.emc_hits),
                    megaflow_hits: sum(|s| &s.megaflow_hits),
                    misses: sum(|s| &s.misses),
                },
                kernel_ring_drops_total: kernel_ring_drops.values().sum(),
                kernel_ring_drops,
                conntrack_connections: 0,
                conntrack_counters: BTreeMap::new(),
            })
        })?;
        let (n, counters) = sw.dp.call(|dp| {
            let ct = dp.conntrack();
            let counters: BTreeMap<String, u64> = ct
                .counters()
                .iter()
                .map(|(name, n)| (name.to_string(), n))
                .collect();
            (ct.len(), counters)
        });
        view.conntrack_connections = n;
        view.conntrack_counters = counters;
        Ok(view)
    }

    /// The connections `dump-conntrack [BR] [zone=N]` selects.
    pub(super) fn connections(
        &self,
        bridge: Option<String>,
        zone: Option<u16>,
    ) -> Result<Vec<conntrack::ConnEntry>, String> {
        let sw = &self.switch;
        // `dump-conntrack zone=N` without a bridge.
        let (bridge, zone) = match bridge.as_deref().and_then(|b| b.strip_prefix("zone=")) {
            Some(z) => (
                None,
                Some(z.parse().map_err(|_| format!("bad zone '{z}'"))?),
            ),
            None => (bridge, zone),
        };
        // Conntrack is shared by every bridge of the datapath; the bridge names the switch.
        if let Some(br) = &bridge {
            sw.with_bridge(br, |_| Ok(()))?;
        }
        Ok(sw.dp.call(move |dp| {
            let now = dp.now_ns();
            let mut all = dp.conntrack().dump(now);
            all.retain(|e| zone.is_none_or(|z| e.zone == z));
            all
        }))
    }

    pub(super) fn fdb_dump(&self, br: &str) -> Result<FdbDump, String> {
        let idx = self.switch.with_bridge(br, |b| Ok(b.dp_index))?;
        let rows = self.switch.dp.call(move |dp| dp.mac_table_dump(idx));
        Ok(FdbDump {
            bridge: br.to_string(),
            entries: rows
                .into_iter()
                .map(|(vlan, mac, port, age)| FdbEntry {
                    port,
                    vlan,
                    mac: fmt_mac(&mac),
                    age_secs: age,
                })
                .collect(),
        })
    }

    pub(super) fn megaflow_dump(&self, br: &str) -> Result<MegaflowDump, String> {
        let sw = &self.switch;
        let idx = sw.with_bridge(br, |b| Ok(b.dp_index))?;
        // Datapath port ids are switch-wide: name them from every bridge.
        let names: HashMap<usize, String> = sw
            .lock()
            .values()
            .flat_map(|b| b.ports.values().map(|p| (p.dp_id, p.spec.name.clone())))
            .collect();
        let now_ns = sw.dp.start.elapsed().as_nanos() as u64;
        let megaflows = sw
            .dp
            .dump_megaflows(idx)
            .iter()
            .map(|m| megaflow_view(m, &names, now_ns))
            .collect();
        Ok(MegaflowDump {
            bridge: br.to_string(),
            megaflows,
        })
    }

    pub(super) fn dump_megaflows_text(&self, br: &str) -> Result<String, String> {
        let dump = self.megaflow_dump(br)?;
        let threads = self.switch.dp.thread_count();
        let mut out = String::new();
        let mut thread = None;
        for m in &dump.megaflows {
            // Like OVS with several PMD threads: one heading per thread's cache.
            if threads > 1 && thread != Some(m.thread) {
                out.push_str(&format!("flow-dump from thread {}:\n", m.thread));
                thread = Some(m.thread);
            }
            let used = match m.used_secs {
                Some(s) => format!("{s:.3}s"),
                None => "never".into(),
            };
            out.push_str(&format!(
                "{}, packets:{}, bytes:{}, used:{used}, actions:{}\n",
                m.match_, m.packets, m.bytes, m.actions
            ));
        }
        Ok(out)
    }
}

fn megaflow_view(
    m: &MegaflowSnapshot,
    names: &HashMap<usize, String>,
    now_ns: u64,
) -> MegaflowView {
    let port = |p: u32| {
        names
            .get(&(p as usize))
            .cloned()
            .unwrap_or_else(|| format!("dp{p}"))
    };
    let actions: Vec<String> = m
        .actions
        .iter()
        .map(|a| match a {
            DpAction::Output(p) => format!("output:{}", port(*p)),
            DpAction::Tunnel {
                port: p,
                dst,
                vni,
                proto,
            } => {
                let name = proto.name();
                format!("tnl_push({name}(vni={vni},dst={dst})),output:{}", port(*p))
            }
            DpAction::OutputTrunc(t) => {
                let tunnel = t.tunnel.map_or(String::new(), |(dst, vni)| {
                    format!("tnl_push({}(vni={vni},dst={dst})),", t.proto.name())
                });
                format!("trunc({}),{tunnel}output:{}", t.max_len, port(t.port))
            }
            other => other.to_string(),
        })
        .collect();
    MegaflowView {
        thread: m.thread,
        match_: crate::megaflow_text::format_megaflow(&m.key, &m.mask),
        packets: m.packets,
        bytes: m.bytes,
        used_secs: (m.packets > 0).then(|| now_ns.saturating_sub(m.used_ns) as f64 / 1e9),
        actions: actions.join(","),
    }
}

/// A bridge's ports, by ofport, with the options that shaped them.
fn port_views(b: &BridgeCtl, dp: &crate::datapath::DatapathHandle) -> Vec<PortView> {
    b.ports.values().map(|p| port_view(p, dp)).collect()
}

fn port_view(p: &PortCtl, dp: &crate::datapath::DatapathHandle) -> PortView {
    let mut options = BTreeMap::new();
    let s = &p.spec;
    if let Some(t) = &s.tunnel {
        let from_flow = |v: &FromFlow<String>| match v {
            FromFlow::Fixed(x) => x.clone(),
            FromFlow::Flow => "flow".to_string(),
        };
        let remote = match &t.remote_ip {
            FromFlow::Fixed(ip) => FromFlow::Fixed(ip.to_string()),
            FromFlow::Flow => FromFlow::Flow,
        };
        let key = match &t.key {
            FromFlow::Fixed(k) => FromFlow::Fixed(k.to_string()),
            FromFlow::Flow => FromFlow::Flow,
        };
        options.insert("remote_ip".to_string(), from_flow(&remote));
        options.insert("key".to_string(), from_flow(&key));
        if let Some(l) = t.local_ip {
            options.insert("local_ip".to_string(), l.to_string());
        }
        options.insert("dst_port".to_string(), t.dst_port.to_string());
    }
    if let Some(t) = s.thread {
        options.insert("thread".to_string(), t.to_string());
    }
    if let Some(n) = s.n_rxq {
        options.insert("n_rxq".to_string(), n.to_string());
    }
    if let Some(d) = s.skip_udp_dport {
        options.insert("rx_skip_udp_dport".to_string(), d.to_string());
    }
    if let Some(h) = s.host_rx {
        options.insert("host_rx".to_string(), h.to_string());
    }
    if let Some(mode) = s.xdp {
        options.insert("xdp".to_string(), mode.as_str().to_string());
    }
    PortView {
        name: s.name.clone(),
        ofport: p.ofport,
        kind: s.kind.as_str().to_string(),
        options,
        mac: fmt_mac(&p.mac),
        vlan_mode: s.vlan.effective_mode().as_str().to_string(),
        tag: s.vlan.tag,
        trunks: s.vlan.trunks.clone(),
        rx_threads: match s.n_rxq {
            Some(_) => dp.port_threads(p.dp_id),
            None => Vec::new(),
        },
    }
}
