//! The management commands, typed once: `vswitchctl` parses its command line into a
//! [`MgmtCommand`] with clap, sends it as JSON, and the daemon dispatches on the same enum.
//! Older clients' `{"args":[...]}` requests go through the same clap parser, so there is one
//! grammar for every way in.

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// A management command (`vswitchctl CMD ...` for everything that is not OpenFlow).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[command(rename_all = "kebab-case")]
pub enum MgmtCommand {
    /// Create a bridge (an L2 learning switch: priority=0,actions=NORMAL).
    AddBr {
        bridge: String,
        /// Succeed if the bridge already exists.
        #[arg(long)]
        #[serde(default)]
        may_exist: bool,
    },
    /// Delete a bridge and its ports.
    DelBr {
        bridge: String,
        /// Succeed if there is no such bridge.
        #[arg(long)]
        #[serde(default)]
        if_exists: bool,
    },
    /// List the bridges.
    ListBr,
    /// Exit 0 if the bridge exists, else fail.
    BrExists { bridge: String },
    /// Add a port: an existing interface (AF_PACKET), or `type=tap|internal|vxlan|geneve`, with
    /// `ofport=N`, VLAN role (`tag=N`, `trunks=N,N`, `vlan_mode=MODE`) and `options:K=V` settings.
    AddPort {
        bridge: String,
        port: String,
        /// type=..., ofport=N, tag=N, trunks=LIST, vlan_mode=MODE, options:K=V
        settings: Vec<String>,
        /// Succeed if a port of that name is already on the bridge.
        #[arg(long)]
        #[serde(default)]
        may_exist: bool,
    },
    /// Remove a port from a bridge.
    DelPort {
        bridge: String,
        port: String,
        /// Succeed if there is no such port.
        #[arg(long)]
        #[serde(default)]
        if_exists: bool,
    },
    /// Change a port's VLAN role for NORMAL, as `ovs-vsctl set port`: tag=N,
    /// trunks=N,N..., vlan_mode=access|trunk|native-tagged|native-untagged; an empty value
    /// (`tag=`) clears that setting. The bridge's learned MACs are forgotten.
    SetPort {
        bridge: String,
        port: String,
        /// tag=N, trunks=LIST, vlan_mode=MODE
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// List a bridge's ports by name.
    ListPorts { bridge: String },
    /// Add one flow (ovs-ofctl syntax).
    AddFlow { bridge: String, flow: String },
    /// Add flows, one per line (all or nothing).
    AddFlows { bridge: String, flows: String },
    /// Modify the actions of the flows a match selects.
    ModFlows {
        bridge: String,
        flow: String,
        #[arg(long)]
        #[serde(default)]
        strict: bool,
    },
    /// Delete the flows a match selects (all flows without one).
    DelFlows {
        bridge: String,
        #[serde(default)]
        flow: Option<String>,
        #[arg(long)]
        #[serde(default)]
        strict: bool,
    },
    /// Replace every flow with the given ones, one per line.
    ReplaceFlows { bridge: String, flows: String },
    /// Print the flows (ovs-ofctl's format).
    DumpFlows {
        bridge: String,
        #[serde(default)]
        filter: Option<String>,
        #[arg(long)]
        #[serde(default)]
        no_stats: bool,
    },
    /// Add one group.
    AddGroup { bridge: String, group: String },
    /// Add groups, one per line.
    AddGroups { bridge: String, groups: String },
    /// Modify a group.
    ModGroup { bridge: String, group: String },
    /// Delete groups (all without a selection).
    DelGroups {
        bridge: String,
        #[serde(default)]
        group: Option<String>,
    },
    /// Print the groups.
    DumpGroups { bridge: String },
    /// Port counters (with the kernel ring's drops in `drop=`).
    DumpPorts {
        bridge: String,
        #[serde(default)]
        port: Option<String>,
    },
    /// Why packets died, by name, plus cache and conntrack counters.
    DumpDrops { bridge: String },
    /// Packets `sample(...)` actions sampled, per collector set id.
    DumpSamples { bridge: String },
    /// The connection table (`zone=N` selects one zone).
    DumpConntrack {
        #[serde(default)]
        bridge: Option<String>,
        /// zone=N
        #[arg(value_parser = parse_zone)]
        #[serde(default)]
        zone: Option<u16>,
    },
    /// Forget every connection.
    FlushConntrack {
        #[serde(default)]
        bridge: Option<String>,
    },
    /// Set connection limits of conntrack zones (`ovs-appctl dpctl/ct-set-limits`):
    /// default=N (zones without a limit of their own) and zone=Z,limit=N; 0 is unlimited.
    CtSetLimits {
        bridge: String,
        /// default=N, zone=Z,limit=N
        #[arg(required = true, value_parser = parse_limit_setting)]
        limits: Vec<LimitSetting>,
    },
    /// Print the default zone limit, then zone=Z,limit=N,count=C for the zones with a limit
    /// of their own (or the zones asked for), then the per-source (per-pod) limits.
    CtGetLimits {
        bridge: String,
        /// zone=Z[,Z...]
        #[arg(value_parser = parse_zone_list)]
        #[serde(default)]
        zones: Option<ZoneList>,
    },
    /// Remove zones' own limits: they take the default limit again.
    CtDelLimits {
        bridge: String,
        /// zone=Z[,Z...]
        #[arg(value_parser = parse_zone_list)]
        zones: ZoneList,
    },
    /// Copy a port's traffic into a pcap file (count=N, seconds=S).
    Capture {
        bridge: String,
        port: String,
        file: String,
        /// count=N seconds=S
        #[serde(default)]
        options: Vec<String>,
    },
    /// How far a running `capture` on the port got: `frames=N wanted=M` (what `capture`'s
    /// progress line reads).
    CaptureStatus { bridge: String, port: String },
    /// Run a packet described in flow syntax through the tables and explain.
    Trace { bridge: String, flow: String },
    /// Without a bridge: the whole switch on one screen (bridges, ports with type, ofport and
    /// options, sockets), like `ovs-vsctl show`. With one: its features and ports, like
    /// `ovs-ofctl show`.
    Show {
        #[serde(default)]
        bridge: Option<String>,
    },
    /// The megaflow cache: each entry's masked key (dpctl/dump-flows style), hits and actions.
    DumpMegaflows { bridge: String },
    /// The MAC learning table.
    #[command(alias = "dump-macs")]
    #[serde(alias = "dump-macs")]
    FdbShow { bridge: String },
    /// Forget the bridge's learned MACs (`ovs-appctl fdb/flush`).
    FdbFlush { bridge: String },
    /// Apply a node configuration (file contents, or a path the daemon can read).
    Apply { config: String },
    /// Add a pod to the node configuration at run time: port=IFACE ip=ADDR mac=MAC
    /// [type=afpacket|tap] [ofport=N] [allow_from=CIDR,...] [conntrack_limit=N]
    /// [vlan=N security_groups=G,.. eip=A].
    AddPod {
        name: String,
        /// port=IFACE ip=ADDR mac=MAC [type=afpacket|tap] [ofport=N] [allow_from=CIDR,..]
        /// [conntrack_limit=N] [vlan=N] [security_groups=G,..] [eip=ADDR] (mode eni)
        settings: Vec<String>,
    },
    /// Remove a pod added with add-pod.
    DelPod {
        name: String,
        /// Succeed if there is no such pod.
        #[arg(long)]
        #[serde(default)]
        if_exists: bool,
    },
    /// The pods added at run time: NAME PORT IP MAC ofport=N.
    ListPods,
    /// Mode eni: bind elastic IP EIP to pod POD at run time (replacing the one it had; a pod
    /// of the node file or one added with add-pod).
    SetEip { pod: String, eip: String },
    /// Mode eni: unbind the pod's elastic IP at run time.
    DelEip {
        pod: String,
        /// Succeed if the pod has no EIP.
        #[arg(long)]
        #[serde(default)]
        if_exists: bool,
    },
    /// Add or replace a Service at run time: a `[[services]]` entry as a TOML inline table,
    /// e.g. '{ name = "web", cluster_ip = "10.247.0.10", port = 80, backends = [{ ip = "172.16.1.11" }] }'.
    SetService { spec: String },
    /// Replace a Service's backends: IP[:PORT][@WEIGHT]... (none: refuse new connections).
    SetBackends {
        name: String,
        #[serde(default)]
        backends: Vec<String>,
    },
    /// Remove a Service set at run time.
    DelService {
        name: String,
        /// Succeed if there is no such Service.
        #[arg(long)]
        #[serde(default)]
        if_exists: bool,
    },
    /// The Services set at run time: NAME FRONTEND:PORT backends=N.
    ListServices,
    /// The node's pod network as JSON (name, bridge, mode, pod_cidr, gateway_ip, gateway_mac,
    /// service_cidr, mtu).
    NodeInfo,
    /// Print vswitchd's log filter, or set it: a level (off, error, warn, info, debug,
    /// trace) or a RUST_LOG-style filter such as info,vswitch::ofserver=debug.
    LogLevel {
        #[serde(default)]
        filter: Option<String>,
    },
}

/// One `ct-set-limits` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitSetting {
    /// `default=N`: the limit of zones without one of their own.
    Default(u32),
    /// `zone=Z,limit=N`.
    Zone { zone: u16, limit: u32 },
}

/// `zone=Z[,Z...]`: the zones `ct-get-limits` and `ct-del-limits` act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ZoneList(pub Vec<u16>);

fn limit_value(key: &str, v: &str) -> Result<u32, String> {
    v.parse().map_err(|_| {
        format!("{key}={v}: expected a number of connections (0..4294967295, 0 is unlimited)")
    })
}

fn zone_value(v: &str) -> Result<u16, String> {
    v.parse()
        .map_err(|_| format!("zone={v}: expected a zone number (0..65535)"))
}

/// `default=N` or `zone=Z,limit=N` (either order), as `ovs-appctl dpctl/ct-set-limits` takes.
pub fn parse_limit_setting(s: &str) -> Result<LimitSetting, String> {
    if let Some(v) = s.strip_prefix("default=") {
        return limit_value("default", v).map(LimitSetting::Default);
    }
    let (mut zone, mut limit) = (None, None);
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("zone", v)) if zone.is_none() => zone = Some(zone_value(v)?),
            Some(("limit", v)) if limit.is_none() => limit = Some(limit_value("limit", v)?),
            _ => {
                return Err(format!("'{s}': expected default=N or zone=Z,limit=N"));
            }
        }
    }
    match (zone, limit) {
        (Some(zone), Some(limit)) => Ok(LimitSetting::Zone { zone, limit }),
        _ => Err(format!("'{s}': expected default=N or zone=Z,limit=N")),
    }
}

/// `zone=Z[,Z...]`.
pub fn parse_zone_list(s: &str) -> Result<ZoneList, String> {
    let list = s
        .strip_prefix("zone=")
        .ok_or_else(|| format!("'{s}': expected zone=Z[,Z...]"))?;
    list.split(',')
        .map(zone_value)
        .collect::<Result<Vec<_>, _>>()
        .map(ZoneList)
}

fn parse_zone(s: &str) -> Result<u16, String> {
    let z = s.strip_prefix("zone=").unwrap_or(s);
    z.parse()
        .map_err(|_| format!("'{s}': expected zone=N (0..65535)"))
}

/// The command line of a management command, for clap.
#[derive(Debug, Parser)]
#[command(
    name = "vswitchctl",
    no_binary_name = true,
    disable_version_flag = true
)]
struct CommandLine {
    #[command(subcommand)]
    command: MgmtCommand,
}

impl MgmtCommand {
    /// Parses `add-br br0`-style words (no program name). The error is clap's, ready to print.
    pub fn parse_words<S: AsRef<str>>(words: &[S]) -> Result<MgmtCommand, clap::Error> {
        CommandLine::try_parse_from(words.iter().map(|w| w.as_ref())).map(|c| c.command)
    }

    /// Every management command as clap describes it (for help, completions and man pages).
    pub fn clap_commands() -> Vec<clap::Command> {
        use clap::CommandFactory;
        CommandLine::command().get_subcommands().cloned().collect()
    }

    /// The command's name as typed (`add-br`).
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(serde_json::Value::Object(m)) => m.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Whether `word` names a management command (so vswitchctl sends it to vswitchd.ctl).
    pub fn is_management(word: &str) -> bool {
        use clap::CommandFactory;
        CommandLine::command()
            .get_subcommands()
            .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_json_give_the_same_command() {
        let c = MgmtCommand::parse_words(&["del-flows", "br0", "in_port=1", "--strict"]).unwrap();
        assert_eq!(
            c,
            MgmtCommand::DelFlows {
                bridge: "br0".into(),
                flow: Some("in_port=1".into()),
                strict: true
            }
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<MgmtCommand>(&json).unwrap(), c);
        let z = MgmtCommand::parse_words(&["dump-conntrack", "br0", "zone=7"]).unwrap();
        assert_eq!(
            z,
            MgmtCommand::DumpConntrack {
                bridge: Some("br0".into()),
                zone: Some(7)
            }
        );
    }

    #[test]
    fn ct_limit_commands_parse_like_ovs_appctl() {
        let c = MgmtCommand::parse_words(&[
            "ct-set-limits",
            "br0",
            "default=10",
            "zone=1,limit=5",
            "limit=0,zone=65535",
        ])
        .unwrap();
        assert_eq!(
            c,
            MgmtCommand::CtSetLimits {
                bridge: "br0".into(),
                limits: vec![
                    LimitSetting::Default(10),
                    LimitSetting::Zone { zone: 1, limit: 5 },
                    LimitSetting::Zone {
                        zone: 65535,
                        limit: 0
                    },
                ]
            }
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<MgmtCommand>(&json).unwrap(), c);
        let g = MgmtCommand::parse_words(&["ct-get-limits", "br0", "zone=1,4,5"]).unwrap();
        assert_eq!(
            g,
            MgmtCommand::CtGetLimits {
                bridge: "br0".into(),
                zones: Some(ZoneList(vec![1, 4, 5]))
            }
        );
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<MgmtCommand>(&json).unwrap(), g);
        assert!(MgmtCommand::parse_words(&["ct-del-limits", "br0", "zone=3"]).is_ok());
        for bad in [
            &["ct-set-limits", "br0"][..],
            &["ct-set-limits", "br0", "zone=1"],
            &["ct-set-limits", "br0", "zone=1,limit=5,limit=6"],
            &["ct-set-limits", "br0", "zone=70000,limit=5"],
            &["ct-set-limits", "br0", "zone=1,limit=-1"],
            &["ct-set-limits", "br0", "default=x"],
            &["ct-set-limits", "br0", "zone=1,limit=5,mark=1"],
            &["ct-get-limits", "br0", "1,2"],
            &["ct-get-limits", "br0", "zone=1,,2"],
            &["ct-del-limits", "br0"],
        ] {
            let e = MgmtCommand::parse_words(bad).unwrap_err();
            assert!(!e.to_string().is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn bad_words_are_refused_with_a_message() {
        let e = MgmtCommand::parse_words(&["add-br"]).unwrap_err();
        assert!(e.to_string().contains("<BRIDGE>"), "{e}");
        let e = MgmtCommand::parse_words(&["frobnicate"]).unwrap_err();
        assert!(e.to_string().contains("frobnicate"), "{e}");
        assert!(MgmtCommand::is_management("dump-macs"));
        assert!(!MgmtCommand::is_management("dump-tables"));
    }

    #[test]
    fn show_takes_an_optional_bridge_and_old_requests_still_parse() {
        let all = MgmtCommand::parse_words(&["show"]).unwrap();
        assert_eq!(all, MgmtCommand::Show { bridge: None });
        assert_eq!(all.name(), "show");
        let old: MgmtCommand = serde_json::from_str(r#"{"show":{"bridge":"br0"}}"#).unwrap();
        assert_eq!(
            old,
            MgmtCommand::Show {
                bridge: Some("br0".into())
            }
        );
        assert_eq!(MgmtCommand::ListBr.name(), "list-br");
    }
}
