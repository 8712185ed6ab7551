//! The management plane: runs a typed [`MgmtCommand`] against the switch and its node agent.
//!
//! This is where the two meet: bridge and port commands go to the [`Switch`], node
//! configuration and pods to the [`Agent`], which itself calls the switch. Neither knows of
//! this module.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flowtable::flow::FlowModCommand;
use flowtable::group::GroupModCommand;
use flowtable::text::{self, PrintOpts};

use crate::agent::Agent;
use crate::bridge::{PortCtl, dpid, flow_selected, with_live_counters};
use crate::command::{LimitSetting, MgmtCommand};
use crate::datapath::CacheStats;
use crate::switch::Switch;
use crate::views::{CtLimitsView, OutputFormat, SourceLimitView, ZoneLimitView};

mod listing;

type CmdResult = Result<String, String>;

/// Why a management command failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The command line does not parse (clap's message, with usage).
    #[error("{0}")]
    Usage(String),
    /// The command ran and was refused.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for ControlError {
    fn from(s: String) -> ControlError {
        ControlError::Failed(s)
    }
}

/// The switch and its agent, as the management socket sees them.
pub struct Control {
    pub switch: Arc<Switch>,
    pub agent: Agent,
}

impl Control {
    pub fn new(switch: Arc<Switch>) -> Control {
        Control {
            switch,
            agent: Agent::default(),
        }
    }

    /// Parses `words` (`["add-br", "br0"]`) and runs the command.
    pub fn command<S: AsRef<str>>(&self, words: &[S]) -> Result<String, ControlError> {
        let cmd = MgmtCommand::parse_words(words)
            .map_err(|e| ControlError::Usage(e.render().to_string().trim_end().to_string()))?;
        self.run(cmd)
    }

    /// Runs one management command and prints its result in `format`.
    pub fn run_as(&self, cmd: MgmtCommand, format: OutputFormat) -> Result<String, ControlError> {
        match format {
            OutputFormat::Text => self.run(cmd),
            OutputFormat::Json => self.run_json(cmd),
        }
    }

    /// Runs one management command (text output).
    pub fn run(&self, cmd: MgmtCommand) -> Result<String, ControlError> {
        use MgmtCommand as C;
        let sw = &self.switch;
        let out = match cmd {
            C::AddBr { bridge, may_exist } => {
                if may_exist && sw.lock().contains_key(&bridge) {
                    return Ok(String::new());
                }
                sw.add_br(&bridge)
            }
            C::DelBr { bridge, if_exists } => {
                if if_exists && !sw.lock().contains_key(&bridge) {
                    return Ok(String::new());
                }
                sw.del_br(&bridge)
            }
            C::ListBr => Ok(sw.lock().keys().map(|k| format!("{k}\n")).collect()),
            C::BrExists { bridge } => sw.with_bridge(&bridge, |_| Ok(String::new())),
            C::AddPort {
                bridge,
                port,
                settings,
                may_exist,
            } => {
                if may_exist && self.has_port(&bridge, &port)? {
                    return Ok(String::new());
                }
                sw.add_port(&bridge, &port, &settings)
            }
            C::DelPort {
                bridge,
                port,
                if_exists,
            } => {
                if if_exists && !self.has_port(&bridge, &port)? {
                    return Ok(String::new());
                }
                sw.del_port(&bridge, &port)
            }
            C::SetPort {
                bridge,
                port,
                settings,
            } => sw.set_port_vlan(&bridge, &port, &settings),
            C::ListPorts { bridge } => sw.with_bridge(&bridge, |b| {
                let mut names: Vec<&str> = b.ports.values().map(|p| p.spec.name.as_str()).collect();
                names.sort();
                Ok(names.iter().map(|n| format!("{n}\n")).collect())
            }),
            C::AddFlow { bridge, flow } => sw.flow_mods(&bridge, &flow, FlowModCommand::Add, false),
            C::AddFlows { bridge, flows } => {
                sw.flow_mods(&bridge, &flows, FlowModCommand::Add, true)
            }
            C::ModFlows {
                bridge,
                flow,
                strict,
            } => {
                let c = if strict {
                    FlowModCommand::ModifyStrict
                } else {
                    FlowModCommand::Modify
                };
                sw.flow_mods(&bridge, &flow, c, false)
            }
            C::DelFlows {
                bridge,
                flow,
                strict,
            } => {
                let c = if strict {
                    FlowModCommand::DeleteStrict
                } else {
                    FlowModCommand::Delete
                };
                sw.flow_mods(&bridge, flow.as_deref().unwrap_or(""), c, false)
            }
            C::ReplaceFlows { bridge, flows } => sw.replace_flows(&bridge, &flows),
            C::DumpFlows {
                bridge,
                filter,
                no_stats,
            } => self.dump_flows(&bridge, filter.as_deref(), !no_stats),
            C::AddGroup { bridge, group } => sw.group_mods(&bridge, GroupModCommand::Add, &group),
            C::AddGroups { bridge, groups } => {
                sw.group_mods(&bridge, GroupModCommand::Add, &groups)
            }
            C::ModGroup { bridge, group } => {
                sw.group_mods(&bridge, GroupModCommand::Modify, &group)
            }
            C::DelGroups { bridge, group } => sw.group_mods(
                &bridge,
                GroupModCommand::Delete,
                group.as_deref().unwrap_or(""),
            ),
            C::DumpGroups { bridge } => sw.with_bridge(&bridge, |b| {
                let mut out = String::from("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n");
                for g in b.tables().groups() {
                    out.push_str(&format!(" {}\n", text::print_group(g).trim_start()));
                }
                Ok(out)
            }),
            C::DumpPorts { bridge, port } => self.dump_ports(&bridge, port.as_deref()),
            C::DumpDrops { bridge } => self.dump_drops(&bridge),
            C::DumpSamples { bridge } => sw.with_bridge(&bridge, |b| Ok(b.samples.format())),
            C::DumpConntrack { bridge, zone } => self
                .connections(bridge, zone)
                .map(|conns| conns.iter().map(|e| format!("{e}\n")).collect()),
            C::FlushConntrack { bridge } => {
                if let Some(br) = &bridge {
                    sw.with_bridge(br, |_| Ok(()))?;
                }
                let n = sw.dp.call(|dp| dp.conntrack().flush(None));
                Ok(format!("flushed {n} connections\n"))
            }
            C::CtSetLimits { bridge, limits } => self.ct_set_limits(&bridge, &limits),
            C::CtGetLimits { bridge, zones } => self
                .ct_limits(&bridge, zones.as_ref().map(|z| z.0.as_slice()))
                .map(|v| v.text()),
            C::CtDelLimits { bridge, zones } => self.ct_del_limits(&bridge, &zones.0),
            C::Capture {
                bridge,
                port,
                file,
                options,
            } => {
                let opts: Vec<&str> = options.iter().map(|s| s.as_str()).collect();
                sw.capture(&bridge, &port, &file, &opts)
            }
            C::CaptureStatus { bridge, port } => sw.capture_status(&bridge, &port),
            C::Trace { bridge, flow } => sw.with_bridge(&bridge, |b| crate::trace::trace(b, &flow)),
            C::Show {
                bridge: Some(bridge),
            } => self.show(&bridge),
            C::Show { bridge: None } => Ok(self.show_switch_text()),
            C::DumpMegaflows { bridge } => self.dump_megaflows_text(&bridge),
            C::FdbShow { bridge } => self.fdb_show(&bridge),
            C::FdbFlush { bridge } => sw.flush_macs(&bridge),
            C::Apply { config } => {
                // The file's contents, or (one line, no '=') a path the daemon can read.
                if config.contains(['\n', '=']) {
                    self.agent.apply_text(sw, &config)
                } else {
                    self.agent.apply_file(sw, Path::new(&config))
                }
            }
            C::AddPod { name, settings } => self.agent.add_pod(sw, &name, &settings),
            C::DelPod { name, if_exists } => self.agent.del_pod(sw, &name, if_exists),
            C::SetEip { pod, eip } => self.agent.set_eip(sw, &pod, Some(&eip), false),
            C::DelEip { pod, if_exists } => self.agent.set_eip(sw, &pod, None, if_exists),
            C::ListPods => Ok(self.agent.list_pods()),
            C::NodeInfo => self.agent.node_info(),
            C::SetService { spec } => self.agent.set_service(sw, &spec),
            C::SetBackends { name, backends } => self.agent.set_backends(sw, &name, &backends),
            C::DelService { name, if_exists } => self.agent.del_service(sw, &name, if_exists),
            C::ListServices => Ok(self.agent.list_services()),
            C::LogLevel { filter } => match filter {
                Some(f) => crate::logging::set_filter(&f)
                    .map(|old| format!("log filter: {} (was {old})\n", f.trim())),
                None => crate::logging::current_filter().map(|f| format!("{f}\n")),
            },
        };
        out.map_err(ControlError::Failed)
    }

    /// `ct-set-limits`: conntrack is the datapath's, shared by its bridges; the bridge names it.
    fn ct_set_limits(&self, br: &str, limits: &[LimitSetting]) -> CmdResult {
        self.switch.with_bridge(br, |_| Ok(()))?;
        let ct = &self.switch.dp.ct;
        for l in limits {
            match *l {
                LimitSetting::Default(n) => ct.set_default_zone_limit(n),
                LimitSetting::Zone { zone, limit } => ct.set_zone_limit(zone, limit),
            }
        }
        // Kept in the state file.
        self.switch.mark_changed();
        Ok(String::new())
    }

    /// `ct-del-limits`: the zones take the default limit again.
    fn ct_del_limits(&self, br: &str, zones: &[u16]) -> CmdResult {
        self.switch.with_bridge(br, |_| Ok(()))?;
        let ct = &self.switch.dp.ct;
        for &z in zones {
            ct.del_zone_limit(z);
        }
        self.switch.mark_changed();
        Ok(String::new())
    }

    /// `ct-get-limits`: the default, the zones asked for (else those with a limit of their
    /// own), and the source limits of those zones (of all zones when none was asked for).
    pub(crate) fn ct_limits(
        &self,
        br: &str,
        zones: Option<&[u16]>,
    ) -> Result<CtLimitsView, String> {
        self.switch.with_bridge(br, |_| Ok(()))?;
        let ct = &self.switch.dp.ct;
        let zone_views = match zones {
            Some(list) => list.iter().map(|&z| ct.zone_limit(z)).collect(),
            None => ct.zone_limits(),
        };
        Ok(CtLimitsView {
            default_limit: ct.default_zone_limit(),
            zones: zone_views
                .iter()
                .map(|z| ZoneLimitView {
                    zone: z.zone,
                    limit: z.limit,
                    count: z.count,
                })
                .collect(),
            sources: ct
                .source_limits()
                .iter()
                .filter(|s| zones.is_none_or(|list| list.contains(&s.zone)))
                .map(|s| SourceLimitView {
                    zone: s.zone,
                    src: s.src_text(),
                    limit: s.limit,
                    count: s.count,
                })
                .collect(),
        })
    }

    fn has_port(&self, br: &str, port: &str) -> Result<bool, String> {
        self.switch
            .with_bridge(br, |b| Ok(b.ports.values().any(|p| p.spec.name == port)))
    }

    fn dump_drops(&self, br: &str) -> CmdResult {
        let sw = &self.switch;
        let out = sw.with_bridge(br, |b| {
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
            // Frames the kernel dropped before the switch saw them (a full AF_PACKET ring).
            let mut line = String::from("kernel ring drops:");
            let mut total = 0;
            for p in b.ports.values() {
                let n = p.counters.snapshot().rx_dropped;
                total += n;
                if n > 0 {
                    line.push_str(&format!(" {}={n}", p.spec.name));
                }
            }
            out.push_str(&format!("{line} total={total}\n"));
            // The node agent's security groups (mode eni) drop refused new connections with
            // flows of their own: their packets, one named counter.
            let denied: u64 = [
                crate::agent::compile::Table::SgEgress,
                crate::agent::compile::Table::SgIngress,
            ]
            .iter()
            .flat_map(|t| b.tables().table_flows(t.id()))
            .filter(|e| {
                e.cookie == crate::agent::compile::AGENT_COOKIE
                    && [
                        crate::agent::eni::SG_DENY_PRIORITY,
                        crate::agent::eni::SG_DENY_COMMITTED_PRIORITY,
                    ]
                    .contains(&e.priority)
            })
            .map(|e| crate::bridge::with_live_counters(b, e).packets)
            .sum();
            out.push_str(&format!(
                "  {:<22} {:>12}  {}\n",
                "secgroup_denied",
                denied,
                "new connections (packets) refused by a security group (node agent, mode eni)"
            ));
            Ok(out)
        })?;
        // Conntrack is shared by the switch's bridges: its own counters, one line.
        let ct = sw.dp.call(|dp| {
            let ct = dp.conntrack();
            let mut line = format!("conntrack: connections={}", ct.len());
            for (name, n) in ct.counters().iter() {
                line.push_str(&format!(" {name}={n}"));
            }
            line
        });
        Ok(format!("{out}{ct}\n"))
    }

    fn fdb_show(&self, br: &str) -> CmdResult {
        let mut out = String::from(" port  VLAN  MAC                Age\n");
        for e in self.fdb_dump(br)?.entries {
            out.push_str(&format!(
                "{:>5}  {:>4}  {}  {:>3}\n",
                e.port, e.vlan, e.mac, e.age_secs
            ));
        }
        Ok(out)
    }

    pub fn dump_flows(&self, br: &str, filter: Option<&str>, stats: bool) -> CmdResult {
        let filter = match filter {
            Some(f) if !f.trim().is_empty() => {
                Some(text::parse_flow_mod(f, FlowModCommand::Delete).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        self.switch.with_bridge(br, |b| {
            let now = Instant::now();
            let mut out = String::new();
            if stats {
                out.push_str("OFPST_FLOW reply (OF1.3) (xid=0x2):\n");
            }
            for e in b.tables().flows() {
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
        self.switch.with_bridge(br, |b| {
            let selected: Vec<&PortCtl> = b
                .ports
                .values()
                .filter(|p| only.is_none_or(|o| o == p.spec.name || o == p.ofport.to_string()))
                .collect();
            let mut out = format!("OFPST_PORT reply (OF1.3) (xid=0x2): {} ports\n", selected.len());
            for p in selected {
                let c = p.counters.snapshot();
                out.push_str(&format!(
                    "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}, frame=?, over=?, crc=?\n           tx pkts={}, bytes={}, drop={}, errs={}, coll=?\n           duration={}\n",
                    p.ofport, c.rx_packets, c.rx_bytes, c.rx_dropped, c.rx_errors, c.tx_packets, c.tx_bytes, c.tx_dropped, c.tx_errors,
                    flowtable::text::duration_ms((c.duration_secs * 1000.0) as u128)
                ));
            }
            Ok(out)
        })
    }

    fn show(&self, br: &str) -> CmdResult {
        self.switch.with_bridge(br, |b| {
            let mut out = format!(
                "OFPT_FEATURES_REPLY (OF1.3) (xid=0x2): dpid:{:016x}\nn_tables:254, n_buffers:0\ncapabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS\n",
                dpid(&b.name)
            );
            let ports: Vec<openflow::switch::Port> = b.ports.values().map(PortCtl::desc).collect();
            out.push_str(&crate::ofclient::print::port_desc(&ports, 3));
            out.push_str("OFPT_GET_CONFIG_REPLY (OF1.3) (xid=0x5): frags=normal miss_send_len=0\n");
            Ok(out)
        })
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
