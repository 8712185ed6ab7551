//! Typed results of the dump and list commands, for `vswitchctl --format json`: each command
//! answers one JSON document made of these structs (serde), the same data its text shows.
//! They deserialise too, so scripts in Rust (and the tests) read them back typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a command's result is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// The human (and `ovs-ofctl`/`ovs-vsctl`-compatible) text.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Serialises a view as one JSON document (with a final newline, like the text).
pub fn to_json<T: Serialize>(view: &T) -> String {
    let mut s = serde_json::to_string_pretty(view).expect("views serialise");
    s.push('\n');
    s
}

/// `list-br`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeList {
    pub bridges: Vec<String>,
}

/// A port as `show` and `list-ports` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    pub ofport: u32,
    /// afpacket, tap, vxlan, geneve or internal.
    #[serde(rename = "type")]
    pub kind: String,
    /// The `options:K=V` that shape it (tunnel endpoints, thread, ...).
    pub options: BTreeMap<String, String>,
    pub mac: String,
    /// The VLAN role NORMAL gives it (`access`, `trunk`, `native-tagged`, `native-untagged`)
    /// and, where set, its `tag` and `trunks`.
    #[serde(default = "trunk")]
    pub vlan_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<u16>,
    /// With `options:n_rxq`: the forwarding threads that receive from the port now (fewer
    /// than asked when a receive queue could not open).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rx_threads: Vec<usize>,
}

/// Older daemons' ports: trunks of every VLAN.
fn trunk() -> String {
    "trunk".to_string()
}

/// `list-ports BR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortList {
    pub bridge: String,
    pub ports: Vec<PortView>,
}

/// One bridge in `show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeView {
    pub name: String,
    /// Datapath id, 16 hex digits.
    pub dpid: String,
    /// The bridge's OpenFlow socket (`ovs-ofctl ... unix:PATH`).
    pub openflow_socket: String,
    pub flows: usize,
    pub groups: usize,
    pub ports: Vec<PortView>,
}

/// `show`: the whole switch on one screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchView {
    pub version: String,
    pub rundir: String,
    pub management_socket: String,
    pub forwarding_threads: usize,
    pub bridges: Vec<BridgeView>,
}

/// One flow of `dump-flows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowView {
    pub table: u8,
    pub priority: u16,
    pub cookie: u64,
    pub duration_secs: f64,
    pub packets: u64,
    pub bytes: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// `ovs-ofctl` match syntax, without `priority=`.
    #[serde(rename = "match")]
    pub match_: String,
    /// `ovs-ofctl` action syntax.
    pub actions: String,
}

impl FlowView {
    pub fn of(e: &flowtable::FlowEntry, now: std::time::Instant) -> FlowView {
        FlowView {
            table: e.table_id,
            priority: e.priority,
            cookie: e.cookie,
            duration_secs: now.saturating_duration_since(e.created).as_secs_f64(),
            packets: e.packets,
            bytes: e.bytes,
            idle_timeout: e.idle_timeout,
            hard_timeout: e.hard_timeout,
            match_: flowtable::text::print_match(&e.match_),
            actions: flowtable::text::print_instructions(&e.instructions),
        }
    }
}

/// `dump-flows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDump {
    pub flows: Vec<FlowView>,
}

/// One group of `dump-groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    pub group_id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// Each bucket in `ovs-ofctl` syntax (`weight:100,actions=output:1`).
    pub buckets: Vec<String>,
}

impl GroupView {
    pub fn of(g: &flowtable::group::Group) -> GroupView {
        let text = flowtable::text::print_group(g);
        let buckets = text.split(",bucket=").skip(1).map(str::to_string).collect();
        GroupView {
            group_id: g.id,
            kind: g.group_type.name().to_string(),
            buckets,
        }
    }
}

/// `dump-groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDump {
    pub groups: Vec<GroupView>,
}

/// One port's counters in `dump-ports` (`null`: the port does not keep that counter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortStatsView {
    /// The port number (`LOCAL` is 4294967294).
    pub port_no: u32,
    pub rx_packets: Option<u64>,
    pub rx_bytes: Option<u64>,
    pub rx_dropped: Option<u64>,
    pub rx_errors: Option<u64>,
    pub tx_packets: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_dropped: Option<u64>,
    pub tx_errors: Option<u64>,
    pub duration_secs: f64,
}

/// `dump-ports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortStatsDump {
    pub ports: Vec<PortStatsView>,
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CountsView {
    pub packets: u64,
    pub bytes: u64,
}

/// One group's counters (`dump-group-stats`): the group's and each bucket's, in bucket order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatsView {
    pub group_id: u32,
    pub duration_secs: f64,
    /// Flows that name the group.
    pub ref_count: u32,
    pub packets: u64,
    pub bytes: u64,
    pub buckets: Vec<CountsView>,
}

/// `dump-group-stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatsDump {
    pub groups: Vec<GroupStatsView>,
}

/// One table's counters (`dump-tables`): its flows, the packets looked up in it and those that
/// matched a flow there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TableStatsView {
    pub table: u8,
    pub active: u32,
    pub lookups: u64,
    pub matched: u64,
}

/// `dump-tables`: every table the switch has, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStatsDump {
    pub tables: Vec<TableStatsView>,
}

/// One direction of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TupleView {
    pub src: String,
    pub dst: String,
    /// Ports (TCP/UDP/SCTP) or the echo id (ICMP); 0 otherwise.
    pub sport: u16,
    pub dport: u16,
}

/// One connection of `dump-conntrack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnView {
    pub proto: String,
    pub orig: TupleView,
    pub reply: TupleView,
    pub zone: u16,
    pub mark: u32,
    /// `ct_label` in hex (`0x..`), absent when zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub src_nat: bool,
    pub dst_nat: bool,
    /// TCP state as OVS prints it; absent for other protocols.
    pub tcp_state: Option<String>,
    pub seen_reply: bool,
    pub expires_in_secs: f64,
}

impl ConnView {
    pub fn of(e: &conntrack::ConnEntry) -> ConnView {
        let addr = |a: &conntrack::tuple::Addr, family| {
            let mut s = String::new();
            let _ = a.fmt_family(family, &mut s);
            s
        };
        let tuple = |t: &conntrack::tuple::Tuple| TupleView {
            src: addr(&t.src, t.family),
            dst: addr(&t.dst, t.family),
            sport: t.sport,
            dport: t.dport,
        };
        ConnView {
            proto: conntrack::tuple::proto_name(e.orig.proto)
                .map(str::to_string)
                .unwrap_or_else(|| e.orig.proto.to_string()),
            orig: tuple(&e.orig),
            reply: tuple(&e.reply),
            zone: e.zone,
            mark: e.mark,
            label: (e.label != 0).then(|| format!("{:#x}", e.label)),
            src_nat: e.nat & conntrack::nat::NAT_SRC != 0,
            dst_nat: e.nat & conntrack::nat::NAT_DST != 0,
            tcp_state: e.tcp_state.map(|s| s.name().to_string()),
            seen_reply: e.seen_reply,
            expires_in_secs: e.expires_in_ns as f64 / 1e9,
        }
    }
}

/// `dump-conntrack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConntrackDump {
    pub connections: Vec<ConnView>,
}

/// One zone of `ct-get-limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneLimitView {
    pub zone: u16,
    /// The limit in force (its own or the default); 0 is unlimited.
    pub limit: u32,
    pub count: u32,
}

/// One source (pod) limit of `ct-get-limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLimitView {
    pub zone: u16,
    pub src: String,
    pub limit: u32,
    pub count: u32,
}

/// `ct-get-limits BR [zone=Z,...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtLimitsView {
    pub default_limit: u32,
    pub zones: Vec<ZoneLimitView>,
    pub sources: Vec<SourceLimitView>,
}

impl CtLimitsView {
    /// Open vSwitch's text (`default limit=N`, then `zone=Z,limit=N,count=C` lines), then
    /// one `zone=Z,src=ADDR,limit=N,count=C` line per source limit.
    pub fn text(&self) -> String {
        let mut out = format!("default limit={}\n", self.default_limit);
        for z in &self.zones {
            out.push_str(&format!(
                "zone={},limit={},count={}\n",
                z.zone, z.limit, z.count
            ));
        }
        for s in &self.sources {
            out.push_str(&format!(
                "zone={},src={},limit={},count={}\n",
                s.zone, s.src, s.limit, s.count
            ));
        }
        out
    }
}

/// Cache counters of a bridge, summed over the forwarding threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheCounters {
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    pub misses: u64,
}

/// `dump-drops BR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropsView {
    pub bridge: String,
    /// Packets dropped: the sum of `drops` but for the reasons in `counted_not_dropped`.
    pub total_dropped: u64,
    /// Every drop reason by name, zero or not.
    pub drops: BTreeMap<String, u64>,
    /// The reasons of `drops` that count an event whose packet went on (a learn request lost,
    /// a MAC address not learned): not in `total_dropped`.
    #[serde(default)]
    pub counted_not_dropped: Vec<String>,
    pub caches: CacheCounters,
    /// Frames each port's kernel ring dropped before the switch saw them.
    pub kernel_ring_drops: BTreeMap<String, u64>,
    pub kernel_ring_drops_total: u64,
    pub conntrack_connections: usize,
    pub conntrack_counters: BTreeMap<String, u64>,
}

/// `dump-samples BR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplesView {
    pub bridge: String,
    /// Sampled packets by collector set id (sets never sampled are absent).
    pub collector_sets: BTreeMap<String, u64>,
    /// Packets of collector sets beyond the 256 counted apart.
    pub other: u64,
}

/// One MAC learning entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub port: u32,
    pub vlan: u16,
    pub mac: String,
    pub age_secs: u64,
}

/// `fdb-show BR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbDump {
    pub bridge: String,
    pub entries: Vec<FdbEntry>,
}

/// One megaflow of `dump-megaflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MegaflowView {
    /// The forwarding thread whose cache holds it.
    pub thread: usize,
    /// The masked key in `ovs-appctl dpctl/dump-flows` style (`field=value/mask`, the mask
    /// left out where every bit counts, fields no bit of which counts left out).
    #[serde(rename = "match")]
    pub match_: String,
    pub packets: u64,
    pub bytes: u64,
    /// Seconds since a packet last used it; absent if none has.
    pub used_secs: Option<f64>,
    /// Datapath actions, ports by name.
    pub actions: String,
}

/// `dump-megaflows BR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MegaflowDump {
    pub bridge: String,
    pub megaflows: Vec<MegaflowView>,
}

/// One pod added at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodView {
    pub name: String,
    pub port: String,
    pub ip: String,
    pub mac: String,
    pub ofport: Option<u32>,
}

/// `list-pods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodList {
    pub pods: Vec<PodView>,
}

/// One Service set at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    /// The cluster IP (or external IP), absent if neither.
    pub frontend: Option<String>,
    pub port: u16,
    pub backends: usize,
}

/// `list-services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<ServiceView>,
}
