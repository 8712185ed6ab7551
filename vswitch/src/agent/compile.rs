//! The pipeline compiler: a validated [`NodeConfig`] → the ports, groups and flows it needs.
//!
//! Flows are produced as the same text a user would give `vswitchctl add-flow`, so one syntax
//! (and one parser, `flowtable::text`) serves both. Tables are named (see [`Table`] and
//! `docs/pipeline.md`); every agent flow carries [`AGENT_COOKIE`], so flows a user adds by
//! hand (other cookies) are never touched by the agent.

use std::collections::BTreeMap;

use hashbrown::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::model::*;

/// Cookie of every flow the agent installs ("a9e0" ≈ "agent").
pub const AGENT_COOKIE: u64 = 0xa9e0_0000_0000_0000;
/// The agent's groups are numbered from here up (one per Service with backends).
pub const GROUP_BASE: u32 = 1_000_000;
/// The VXLAN port (tunnel mode).
pub const TUNNEL_OFPORT: u32 = 1000;
/// The AF_PACKET uplink on the underlay interface (route mode, and tunnel mode when
/// `underlay_interface` is given).
pub const UPLINK_OFPORT: u32 = 1001;
/// The host port (the node's own way into the pod network, see `docs/config.md`).
pub const HOST_OFPORT: u32 = 1002;
/// The group serving a Service's outside clients (those arriving on the uplink) is the
/// Service's group id plus this.
pub const OUTSIDE_GROUP_OFFSET: u32 = 1 << 30;
/// `ct_mark` of a Service connection whose client is source-NATed to the gateway address
/// (outside client, `external_traffic_policy = "cluster"`).
pub const MASQUERADE_MARK: u32 = 0x2;
/// `ct_mark` bit of a connection whose first packet a security group or `allow_from` refused.
/// It is committed anyway (table 30 may have committed it already, with its NAT), so that
/// none of its later packets passes as established: a packet from the refused side's peer
/// would otherwise find the entry in the reply direction and make it `+est`.
pub const REFUSED_MARK: u32 = 0x4;
/// Priority of the table-30 flow that drops every packet of a refused connection.
pub const REFUSED_PRIORITY: u16 = 250;
/// Source ports of egress masquerade: above the NodePort range (a reply never looks like a
/// NodePort request) and above Linux's default ephemeral range (the node's own connections
/// never share a port with a masqueraded one, so a firewall rule can drop exactly these).
pub const MASQUERADE_PORTS: (u16, u16) = (61000, 65535);
/// Mode eni source-NATs to the node's address in two zones (the pods' masquerade in the pods'
/// zone; the node's Service connections and outside clients in the next one), and a NAT
/// allocation looks only into its own zone: so each zone takes its own part of the range, or
/// both could give one port to two connections with the same peer.
pub const ENI_POD_MASQUERADE_PORTS: (u16, u16) = (61000, 63999);
pub const ENI_NODE_SNAT_PORTS: (u16, u16) = (64000, 65535);
/// Pods get ofports below this.
pub const POD_OFPORT_MAX: u32 = 999;

/// The pipeline's tables, in the order a packet visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    Classifier = 0,
    SpoofGuard = 10,
    Conntrack = 20,
    HairpinUnsnat = 21,
    ServiceLb = 30,
    OutsideSnat = 35,
    L3Forward = 40,
    SgEgress = 41,
    VpcRoute = 42,
    SgIngress = 44,
    PeerOutput = 50,
    Egress = 60,
    EgressOut = 65,
    LocalDelivery = 70,
    HairpinOut = 71,
}

impl Table {
    pub const ALL: [Table; 15] = [
        Table::Classifier,
        Table::SpoofGuard,
        Table::Conntrack,
        Table::HairpinUnsnat,
        Table::ServiceLb,
        Table::OutsideSnat,
        Table::L3Forward,
        Table::SgEgress,
        Table::VpcRoute,
        Table::SgIngress,
        Table::PeerOutput,
        Table::Egress,
        Table::EgressOut,
        Table::LocalDelivery,
        Table::HairpinOut,
    ];

    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Classifier => "classifier",
            Table::SpoofGuard => "spoof-guard",
            Table::Conntrack => "conntrack",
            Table::HairpinUnsnat => "hairpin-unsnat",
            Table::ServiceLb => "service-lb",
            Table::OutsideSnat => "outside-snat",
            Table::L3Forward => "l3-forward",
            Table::SgEgress => "sg-egress",
            Table::VpcRoute => "vpc-route",
            Table::SgIngress => "sg-ingress",
            Table::PeerOutput => "peer-output",
            Table::Egress => "egress",
            Table::EgressOut => "egress-out",
            Table::LocalDelivery => "local-delivery",
            Table::HairpinOut => "hairpin-out",
        }
    }
}

/// One port the agent wants on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    pub name: String,
    pub ofport: u32,
    /// `add-port` arguments after the name (`type=..`, `ofport=..`, `options:..`).
    pub args: Vec<String>,
}

/// Identity of a flow: what OpenFlow's strict delete matches on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub table: u8,
    pub priority: u16,
    pub match_text: String,
}

/// What one Service compiles to (memoized across applies while the Service is unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceOut {
    pub flows: Vec<(FlowKey, String)>,
    /// Group ids and `add-group` texts (none when the Service has no backends).
    pub groups: Vec<(u32, String)>,
    pub warning: Option<String>,
}

/// Everything the agent wants installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub ports: Vec<PortPlan>,
    /// Flows that do not belong to one Service: identity → `add-flow` text.
    pub flows: HashMap<FlowKey, String>,
    /// Per Service, keyed by its group id (stable while the Service keeps its name): its
    /// flows and groups. A number, not the name: 10 000 Services are hashed and compared on
    /// every apply.
    pub services: Arc<HashMap<u32, Arc<ServiceOut>>>,
}

impl Desired {
    /// Every flow in dump order (table, priority high first, match text), one per line.
    pub fn flow_lines(&self) -> Vec<&str> {
        let mut v: Vec<(&FlowKey, &String)> = self.flows.iter().collect();
        for out in self.services.values() {
            v.extend(out.flows.iter().map(|(k, l)| (k, l)));
        }
        v.sort_by(|a, b| {
            (a.0.table, std::cmp::Reverse(a.0.priority), &a.0.match_text).cmp(&(
                b.0.table,
                std::cmp::Reverse(b.0.priority),
                &b.0.match_text,
            ))
        });
        v.into_iter().map(|(_, l)| l.as_str()).collect()
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len() + self.services.values().map(|o| o.flows.len()).sum::<usize>()
    }

    /// Every group: id → `add-group` text.
    pub fn groups(&self) -> BTreeMap<u32, &str> {
        self.services
            .values()
            .flat_map(|o| o.groups.iter().map(|(id, g)| (*id, g.as_str())))
            .collect()
    }

    /// Things configured but not (yet) enforced, for the operator.
    pub fn warnings(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .services
            .values()
            .filter_map(|o| o.warning.as_deref())
            .collect();
        v.sort_unstable();
        v
    }
}

/// A compiled Service and what it was compiled from.
#[derive(Debug, Clone)]
struct Memo {
    service: Arc<Service>,
    context: ServiceContext,
    out: Arc<ServiceOut>,
}

/// The node settings a Service's flows depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServiceContext {
    group: u32,
    zone: u16,
    node_ip: std::net::Ipv4Addr,
    /// Outside clients arrive on the uplink.
    uplink: bool,
    /// Mode eni: outside clients arrive untagged (the node's own traffic, not a sub-ENI's).
    eni: bool,
    /// Replies to outside clients can leave (the uplink and its next hop are known).
    egress_out: bool,
    pod_cidr: Cidr,
}

impl ServiceContext {
    fn of(cfg: &NodeConfig, rt: Runtime, group: u32) -> ServiceContext {
        let own_mac = cfg.uplink.as_ref().and_then(|u| u.mac.or(rt.uplink_mac));
        ServiceContext {
            group,
            zone: cfg.ct_zone,
            node_ip: cfg.underlay_ip,
            uplink: cfg.uplink.is_some(),
            eni: cfg.mode == Mode::Eni,
            egress_out: own_mac.is_some() && cfg.egress.next_hop_mac.or(rt.next_hop_mac).is_some(),
            pod_cidr: cfg.pod_cidr,
        }
    }
}

/// A Service's output: the memoized one while the Service and its context are unchanged.
fn compile_memoized(
    memo: &mut HashMap<u32, Memo>,
    s: &Arc<Service>,
    context: ServiceContext,
) -> Arc<ServiceOut> {
    match memo.get(&context.group) {
        Some(m) if m.context == context && (Arc::ptr_eq(&m.service, s) || *m.service == **s) => {
            m.out.clone()
        }
        _ => {
            let out = Arc::new(compile_service(s, context));
            memo.insert(
                context.group,
                Memo {
                    service: s.clone(),
                    context,
                    out: out.clone(),
                },
            );
            out
        }
    }
}

/// Compiles one Service of a node compiled before with `numbering` and `rt` (a one-Service
/// change): its group id (kept, or the next free one) and its output. The full [`compile`]
/// of the changed configuration gives the same.
pub fn compile_one(
    cfg: &NodeConfig,
    numbering: &mut Numbering,
    rt: Runtime,
    s: &Arc<Service>,
) -> (u32, Arc<ServiceOut>) {
    let group = match numbering.groups.get(&s.name) {
        Some(&g) => g,
        None => {
            let next = numbering
                .groups
                .values()
                .max()
                .map_or(GROUP_BASE, |m| m + 1);
            numbering.groups.insert(s.name.clone(), next);
            next
        }
    };
    let context = ServiceContext::of(cfg, rt, group);
    (group, compile_memoized(&mut numbering.memo, s, context))
}

impl Numbering {
    /// Forgets Service `name` (removed by a one-Service change): its group id, if it had one.
    pub fn forget_service(&mut self, name: &str) -> Option<u32> {
        let group = self.groups.remove(name)?;
        self.memo.remove(&group);
        Some(group)
    }
}

/// Stable numbers: a pod keeps its ofport and a Service its group across re-applies, so that
/// one change in the file changes only the flows that depend on it.
#[derive(Debug, Clone, Default)]
pub struct Numbering {
    pub ofports: BTreeMap<String, u32>,
    pub groups: HashMap<String, u32>,
    /// Services compiled last time (by group id), reused while unchanged.
    memo: HashMap<u32, Memo>,
}

impl Numbering {
    /// Numbers the pods' ports: keeps the ports still configured, then numbers the new ones.
    fn assign_ofports(&mut self, cfg: &NodeConfig) -> Result<(), String> {
        // A pod removed by this apply keeps its port until the new pipeline is in (it goes
        // last), so its number is not given to a pod this apply adds.
        let mut released = HashSet::new();
        self.ofports.retain(|name, of| {
            let kept = cfg.pods.iter().any(|p| &p.port == name);
            if !kept {
                released.insert(*of);
            }
            kept
        });
        // Pinned ofports first, so an allocated one never steals a pinned number.
        for p in &cfg.pods {
            if let Some(of) = p.ofport {
                self.ofports.insert(p.port.clone(), of);
            }
        }
        for p in &cfg.pods {
            if p.ofport.is_none() && !self.ofports.contains_key(&p.port) {
                let used: HashSet<u32> = self.ofports.values().copied().collect();
                let free = |n: &u32| !used.contains(n);
                let of = (1..=POD_OFPORT_MAX)
                    .find(|n| free(n) && !released.contains(n))
                    .or_else(|| (1..=POD_OFPORT_MAX).find(free))
                    .ok_or("more than 999 pods on one node")?;
                self.ofports.insert(p.port.clone(), of);
            }
        }
        let mut seen = HashSet::new();
        for (port, of) in &self.ofports {
            if !seen.insert(*of) {
                return Err(format!("ofport {of} of pod port {port} is used twice"));
            }
        }
        Ok(())
    }

    /// Numbers the Services (keeps the names still configured, then numbers the new ones):
    /// each configured Service's group id, in file order.
    fn assign_groups(&mut self, cfg: &NodeConfig) -> Vec<u32> {
        // One lookup per Service in the common case (names are unique after validation):
        // stale names exist only when fewer configured names are known than are numbered.
        let mut ids: Vec<Option<u32>> = cfg
            .services
            .iter()
            .map(|s| self.groups.get(&s.name).copied())
            .collect();
        let known = ids.iter().filter(|id| id.is_some()).count();
        if known < self.groups.len() {
            let names: HashSet<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
            self.groups.retain(|name, _| names.contains(name.as_str()));
        }
        let mut next = self.groups.values().max().map_or(GROUP_BASE, |m| m + 1);
        for (s, id) in cfg.services.iter().zip(ids.iter_mut()) {
            if id.is_none() {
                self.groups.insert(s.name.clone(), next);
                *id = Some(next);
                next += 1;
            }
        }
        ids.into_iter().map(|id| id.unwrap_or_default()).collect()
    }
}

/// One flow line with its identity.
fn flow_line(table: Table, priority: u16, match_text: &str, actions: &str) -> (FlowKey, String) {
    let mut line = format!(
        "table={},priority={priority},cookie={AGENT_COOKIE:#x}",
        table.id()
    );
    if !match_text.is_empty() {
        let _ = write!(line, ",{match_text}");
    }
    let _ = write!(line, ",actions={actions}");
    (
        FlowKey {
            table: table.id(),
            priority,
            match_text: match_text.to_string(),
        },
        line,
    )
}

/// Table 60's masquerade of the pods' new connections to `node.underlay_ip`: TCP and UDP
/// ports and ICMP echo identifiers from the masquerade range (two pods pinging one host with
/// the same identifier must not clash); other protocols just get the address.
/// Hairpin for the pod on port `of`: a pod reaching itself through a Service gets the gateway
/// address as source (its kernel drops packets from its own address) and the frame back out of
/// its port (OpenFlow's `output:P` skips the input port); the replies come back on that port.
pub(super) fn hairpin_flows(
    b: &mut Builder,
    cfg: &NodeConfig,
    of: impl std::fmt::Display,
    ip: impl std::fmt::Display,
    mac: impl std::fmt::Display,
    hairpin_zone: impl std::fmt::Display,
) {
    let back = format!(
        "set_field:{}->eth_src,set_field:{mac}->eth_dst,output:in_port",
        cfg.gateway_mac
    );
    let same = format!("ip,in_port={of},nw_src={ip},nw_dst={ip}");
    b.flow(
        Table::LocalDelivery,
        130,
        &format!("ct_state=+new+trk,{same}"),
        &format!(
            "ct(commit,table=71,zone={hairpin_zone},nat(src={}))",
            cfg.gateway_ip
        ),
    );
    b.flow(
        Table::LocalDelivery,
        129,
        &same,
        &format!("ct(table=71,zone={hairpin_zone},nat)"),
    );
    b.flow(
        Table::LocalDelivery,
        105,
        &format!("ip,in_port={of},nw_dst={ip}"),
        &back,
    );
    b.flow(Table::HairpinOut, 100, &format!("ip,in_port={of}"), &back);
}

/// Warnings for Service backends outside the cluster on a node that masquerades its pods:
/// the Service's DNAT and the masquerade would share one conntrack zone, where a connection
/// takes one source and one destination rewrite when it is first committed, so the
/// connection leaves with the pod's address, which the backend may not route back.
pub fn unmasqueraded_backends(cfg: &NodeConfig) -> Vec<String> {
    if !cfg.egress.snat {
        return Vec::new();
    }
    // The cluster, and the networks that route the pod CIDRs back (`no_snat_cidrs`).
    let mut inside = cfg.cluster_cidrs();
    inside.extend(cfg.egress.no_snat_cidrs.iter().copied());
    let mut out = Vec::new();
    for s in &cfg.services {
        let outside: Vec<String> = s
            .backends
            .iter()
            .filter(|b| !inside.iter().any(|c| c.contains(b.ip)))
            .map(|b| b.ip.to_string())
            .collect();
        if !outside.is_empty() {
            out.push(format!(
                "Service {}: backend {} is outside the cluster: pods reach it with their own \
                 address (egress.snat does not apply to Service connections), so it must route \
                 {} back to this node",
                s.name,
                outside.join(", "),
                cfg.pod_cidr
            ));
        }
    }
    out
}

/// The uplink's copies of new connections to the node's own address (SSH, the kubelet's
/// API) are the kernel's (it got the frame too): dropped before table 30 commits anything, so
/// they take no conntrack entry; the Services' NodePort flows are above.
pub(super) fn drop_new_from_uplink_to_node(b: &mut Builder, cfg: &NodeConfig) {
    b.flow(
        Table::ServiceLb,
        101,
        &format!(
            "ct_state=+new+trk,ip,in_port={UPLINK_OFPORT},nw_dst={}",
            cfg.underlay_ip
        ),
        "drop",
    );
}

/// The action refusing a new connection: marked as refused in the pods' zone, and dropped.
pub(super) fn refuse_new(cfg: &NodeConfig) -> String {
    format!(
        "ct(commit,zone={},exec(set_field:{REFUSED_MARK:#x}->ct_mark))",
        cfg.ct_zone
    )
}

/// Table 30: the refused side's further packets of a refused connection are dropped. A
/// packet from the other side (the direction of replies) starts a connection of its own,
/// judged as new by that side's rules (as a stateful cloud security group does: the pod's
/// own connection to a peer that was refused is not blocked by that refusal).
pub(super) fn drop_refused(b: &mut Builder, cfg: &NodeConfig) {
    let refused = format!("ct_mark={REFUSED_MARK:#x}/{REFUSED_MARK:#x},ip");
    b.flow(
        Table::ServiceLb,
        REFUSED_PRIORITY,
        &format!("ct_state=+trk-rpl,{refused}"),
        "drop",
    );
    b.flow(
        Table::ServiceLb,
        REFUSED_PRIORITY,
        &format!("ct_state=+trk+rpl,{refused}"),
        &format!("ct(commit,force,zone={},table=30)", cfg.ct_zone),
    );
}

pub(super) fn masquerade_flows(b: &mut Builder, cfg: &NodeConfig, ports: (u16, u16)) {
    let zone = cfg.ct_zone;
    for proto in ["tcp", "udp", "icmp"] {
        b.flow(
            Table::Egress,
            100,
            &format!("ct_state=+new+trk,{proto},nw_src={}", cfg.pod_cidr),
            &format!(
                "ct(commit,table=65,zone={zone},nat(src={}:{}-{}))",
                cfg.underlay_ip, ports.0, ports.1
            ),
        );
    }
    b.flow(
        Table::Egress,
        99,
        &format!("ct_state=+new+trk,ip,nw_src={}", cfg.pod_cidr),
        &format!(
            "ct(commit,table=65,zone={zone},nat(src={}))",
            cfg.underlay_ip
        ),
    );
}

pub(super) struct Builder {
    pub(super) out: Desired,
}

impl Builder {
    pub(super) fn flow(&mut self, table: Table, priority: u16, match_text: &str, actions: &str) {
        let (k, l) = flow_line(table, priority, match_text, actions);
        self.out.flows.insert(k, l);
    }
}

/// Where a select group's buckets send the connection after committing its DNAT.
#[derive(Clone, Copy)]
enum Commit {
    /// On to routing (table 40).
    Route,
    /// Marked for masquerade, on to the outside-SNAT table (35).
    Masquerade,
}

/// A select group over `backends` committing the DNAT, or `None` when there are none. With
/// session affinity it hashes the client address only, so a client keeps its backend.
fn select_group(
    gid: u32,
    zone: u16,
    backends: &[&Backend],
    commit: Commit,
    affinity: Option<u32>,
) -> Option<String> {
    if backends.is_empty() {
        return None;
    }
    let (table, exec) = match commit {
        Commit::Route => (Table::L3Forward.id(), String::new()),
        Commit::Masquerade => (
            Table::OutsideSnat.id(),
            format!(",exec(set_field:{MASQUERADE_MARK:#x}->ct_mark)"),
        ),
    };
    let mut g = String::with_capacity(32 + backends.len() * 80);
    let _ = write!(g, "group_id={gid},type=select");
    if let Some(secs) = affinity {
        // Hash the client address (most clients stay put when backends change) and remember
        // each client's backend for `secs` after its last new connection (none move).
        let _ = write!(
            g,
            ",selection_method=hash,fields(ip_src),affinity_timeout={secs}"
        );
    }
    for be in backends {
        let _ = write!(
            g,
            ",bucket=weight:{},actions=ct(commit,table={table},zone={zone},nat(dst={}:{}){exec})",
            be.weight, be.ip, be.port
        );
    }
    Some(g)
}

/// A Service's flows: its frontends in table 30 and, when there is an uplink, its outside
/// frontends (NodePort, external IP) in the classifier with their own group.
fn compile_service(s: &Service, cx: ServiceContext) -> ServiceOut {
    let mut out = ServiceOut::default();
    let (gid, zone) = (cx.group, cx.zone);
    let proto = s.protocol.as_str();
    let all: Vec<&Backend> = s.backends.iter().collect();
    let affinity = s.session_affinity_seconds;
    let action = match select_group(gid, zone, &all, Commit::Route, affinity) {
        Some(g) => {
            out.groups.push((gid, g));
            format!("group:{gid}")
        }
        None => "drop".to_string(),
    };
    let outside_gid = gid + OUTSIDE_GROUP_OFFSET;
    let mut outside_action = None;
    for (ip, port) in s.frontends(cx.node_ip) {
        out.flows.push(flow_line(
            Table::ServiceLb,
            200,
            &format!("ct_state=+new+trk,{proto},nw_dst={ip},tp_dst={port}"),
            &action,
        ));
        if !cx.uplink || Some(ip) == s.cluster_ip {
            continue;
        }
        // Mode eni: only the node's untagged traffic (a sub-ENI's VLAN is a pod's).
        let untagged = if cx.eni {
            ",vlan_tci=0x0000/0x1fff"
        } else {
            ""
        };
        out.flows.push(flow_line(
            Table::Classifier,
            100,
            &format!("{proto},in_port={UPLINK_OFPORT}{untagged},nw_dst={ip},tp_dst={port}"),
            "goto_table:20",
        ));
        // Outside clients: policy "cluster" balances over every backend and masquerades the
        // client to the gateway address (a reply from another node comes back through this
        // one); policy "local" keeps the client's address, so only this node's backends.
        let a = outside_action.get_or_insert_with(|| {
            let g = match s.external_traffic_policy {
                TrafficPolicy::Cluster => {
                    select_group(outside_gid, zone, &all, Commit::Masquerade, affinity)
                }
                TrafficPolicy::Local => {
                    let local: Vec<&Backend> = s
                        .backends
                        .iter()
                        .filter(|b| cx.pod_cidr.contains(b.ip))
                        .collect();
                    select_group(outside_gid, zone, &local, Commit::Route, affinity)
                }
            };
            match g {
                Some(g) => {
                    out.groups.push((outside_gid, g));
                    format!("group:{outside_gid}")
                }
                None => "drop".to_string(),
            }
        });
        out.flows.push(flow_line(
            Table::ServiceLb,
            210,
            &format!("ct_state=+new+trk,{proto},in_port={UPLINK_OFPORT},nw_dst={ip},tp_dst={port}"),
            a,
        ));
        if cx.egress_out && ip != cx.node_ip {
            // Replies from an external IP leave through the uplink (the node address has one
            // node-wide flow).
            out.flows.push(flow_line(
                Table::Egress,
                90,
                &format!("ct_state=+est+trk,{proto},nw_src={ip},tp_src={port}"),
                "goto_table:65",
            ));
        }
    }
    if outside_action.is_some() && !cx.egress_out && !s.passthrough {
        out.warning = Some(format!(
            "Service {}: outside clients arriving on the uplink get no replies: the underlay's \
             next hop is not known (set node.underlay_gateway or egress.next_hop_mac)",
            s.name
        ));
    }
    out
}

/// Values the compiler needs from the running system (resolved before compiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runtime {
    /// Our underlay MAC (read from the uplink interface), when the file did not give it.
    pub uplink_mac: Option<Mac>,
    /// The MAC of `node.underlay_gateway` (resolved by ARP), when `egress.next_hop_mac` is
    /// not given.
    pub next_hop_mac: Option<Mac>,
    /// How many forwarding threads receive from the uplink (`options:n_rxq`): all of
    /// vswitchd's, so the node's busiest port is not one thread's alone. 0 or 1: one.
    pub uplink_rx_queues: usize,
}

/// Where the compiler takes the Services' output from.
pub enum ServicesFrom<'a> {
    /// Compiled from the configuration (memoized per Service).
    Config,
    /// Unchanged since this output was compiled with the same node settings and runtime
    /// (only pods changed): taken as it is, without a walk over the Services.
    Previous(&'a Arc<HashMap<u32, Arc<ServiceOut>>>),
}

/// The Services' compiled output: the previous one as it is, or compiled (memoized per
/// Service) from the configuration.
fn services_output(
    cfg: &NodeConfig,
    numbering: &mut Numbering,
    rt: Runtime,
    services: ServicesFrom<'_>,
    group_ids: &[u32],
) -> Arc<HashMap<u32, Arc<ServiceOut>>> {
    match services {
        ServicesFrom::Previous(previous) => previous.clone(),
        ServicesFrom::Config => {
            let mut memo = std::mem::take(&mut numbering.memo);
            let mut outs = HashMap::with_capacity(cfg.services.len());
            for (s, &group) in cfg.services.iter().zip(group_ids) {
                let context = ServiceContext::of(cfg, rt, group);
                outs.insert(group, compile_memoized(&mut memo, s, context));
            }
            memo.retain(|group, _| outs.contains_key(group));
            numbering.memo = memo;
            Arc::new(outs)
        }
    }
}

/// Compiles a configuration. `numbering` carries ofports and group ids across applies.
pub fn compile(
    cfg: &NodeConfig,
    numbering: &mut Numbering,
    rt: Runtime,
) -> Result<Desired, String> {
    compile_with(cfg, numbering, rt, ServicesFrom::Config)
}

/// [`compile`], with the Services' output taken from `services`.
pub fn compile_with(
    cfg: &NodeConfig,
    numbering: &mut Numbering,
    rt: Runtime,
    services: ServicesFrom<'_>,
) -> Result<Desired, String> {
    numbering.assign_ofports(cfg)?;
    let group_ids = match services {
        ServicesFrom::Config => numbering.assign_groups(cfg),
        ServicesFrom::Previous(_) => Vec::new(),
    };
    let mut b = Builder {
        out: Desired::default(),
    };
    let zone = cfg.ct_zone;
    let gw_mac = cfg.gateway_mac;

    // Ports.
    for p in &cfg.pods {
        let of = numbering.ofports[&p.port];
        b.out.ports.push(PortPlan {
            name: p.port.clone(),
            ofport: of,
            args: vec![format!("type={}", p.kind.as_str()), format!("ofport={of}")],
        });
    }
    if let Mode::Tunnel { vni, dst_port } = cfg.mode {
        b.out.ports.push(PortPlan {
            name: format!("vxlan{vni}"),
            ofport: TUNNEL_OFPORT,
            args: vec![
                "type=vxlan".into(),
                format!("ofport={TUNNEL_OFPORT}"),
                "options:remote_ip=flow".into(),
                format!("options:key={vni}"),
                format!("options:local_ip={}", cfg.underlay_ip),
                format!("options:dst_port={dst_port}"),
            ],
        });
    }
    let own_mac = match &cfg.uplink {
        Some(uplink) => {
            // The uplink carries the node's own traffic too: its host stack stays on.
            let mut args = vec![
                "type=afpacket".into(),
                format!("ofport={UPLINK_OFPORT}"),
                "options:host_rx=true".into(),
            ];
            if let Mode::Tunnel { dst_port, .. } = cfg.mode {
                // The tunnel's datagrams go to the kernel's UDP socket; keep the uplink's
                // ring from copying them all (table 0 still drops any that slip through).
                args.push(format!("options:rx_skip_udp_dport={dst_port}"));
            }
            if rt.uplink_rx_queues > 1 {
                args.push(format!("options:n_rxq={}", rt.uplink_rx_queues));
            }
            b.out.ports.push(PortPlan {
                name: uplink.interface.clone(),
                ofport: UPLINK_OFPORT,
                args,
            });
            Some(uplink.mac.or(rt.uplink_mac).ok_or(
                "node.underlay_mac: not given and the underlay interface has no readable MAC",
            )?)
        }
        None => None,
    };
    // The underlay's router: egress, replies to outside clients, peers without a MAC.
    let next_hop = cfg.egress.next_hop_mac.or(rt.next_hop_mac);
    if cfg.uplink.is_some() && cfg.has_next_hop() && next_hop.is_none() {
        return Err(format!(
            "node.underlay_gateway: no MAC for {} (it did not answer ARP; set egress.next_hop_mac)",
            cfg.underlay_gateway
                .map(|g| g.to_string())
                .unwrap_or_default()
        ));
    }

    if cfg.mode == Mode::Eni {
        let own = own_mac.ok_or("mode eni needs the uplink's MAC")?;
        let services_out = services_output(cfg, numbering, rt, services, &group_ids);
        return Ok(super::eni::compile_eni(
            cfg,
            numbering,
            b,
            services_out,
            own,
            next_hop,
        ));
    }

    // Table 0: where did the packet come from?
    for p in &cfg.pods {
        let of = numbering.ofports[&p.port];
        b.flow(
            Table::Classifier,
            100,
            &format!("in_port={of}"),
            "goto_table:10",
        );
    }
    match cfg.mode {
        Mode::Tunnel { dst_port, .. } => {
            b.flow(
                Table::Classifier,
                100,
                &format!("in_port={TUNNEL_OFPORT}"),
                "goto_table:20",
            );
            if cfg.uplink.is_some() {
                // The uplink also sees the VXLAN datagrams the kernel hands to the tunnel
                // port's socket: one exact drop before anything looks up conntrack.
                b.flow(
                    Table::Classifier,
                    110,
                    &format!(
                        "udp,in_port={UPLINK_OFPORT},nw_dst={},tp_dst={dst_port}",
                        cfg.underlay_ip
                    ),
                    "drop",
                );
            }
        }
        Mode::Route | Mode::Eni => {
            b.flow(
                Table::Classifier,
                100,
                &format!("ip,in_port={UPLINK_OFPORT},nw_dst={}", cfg.pod_cidr),
                "goto_table:20",
            );
        }
    }
    if cfg.egress.snat {
        // Replies to masqueraded connections (conntrack turns them back to the pod).
        b.flow(
            Table::Classifier,
            90,
            &format!("ip,in_port={UPLINK_OFPORT},nw_dst={}", cfg.underlay_ip),
            "goto_table:20",
        );
    }
    b.flow(Table::Classifier, 0, "", "drop");

    // Table 10: a pod sends only with its own MAC and IP.
    for p in &cfg.pods {
        let of = numbering.ofports[&p.port];
        b.flow(
            Table::SpoofGuard,
            100,
            &format!("ip,in_port={of},dl_src={},nw_src={}", p.mac, p.ip),
            "goto_table:20",
        );
        // Spoofed IP traffic: its own flow, so `dump-flows` counts it apart from other drops.
        b.flow(Table::SpoofGuard, 10, &format!("ip,in_port={of}"), "drop");
        // The gateway answers the pod's ARP request for it and its pings, from flows: the
        // request is turned into the reply in place and sent back out of the pod's port.
        let (gw_ip, mac, ip) = (cfg.gateway_ip, p.mac, p.ip);
        b.flow(
            Table::SpoofGuard,
            110,
            &format!("arp,in_port={of},dl_src={mac},arp_op=1,arp_spa={ip},arp_tpa={gw_ip}"),
            &format!(
                "set_field:{mac}->eth_dst,set_field:{gw_mac}->eth_src,set_field:2->arp_op,\
                 set_field:{mac}->arp_tha,set_field:{gw_mac}->arp_sha,\
                 set_field:{ip}->arp_tpa,set_field:{gw_ip}->arp_spa,output:in_port"
            ),
        );
        b.flow(
            Table::SpoofGuard,
            110,
            &format!(
                "icmp,in_port={of},dl_src={mac},nw_src={ip},nw_dst={gw_ip},icmp_type=8,icmp_code=0"
            ),
            &format!(
                "set_field:{mac}->eth_dst,set_field:{gw_mac}->eth_src,\
                 set_field:{ip}->ip_dst,set_field:{gw_ip}->ip_src,set_field:0->icmp_type,output:in_port"
            ),
        );
    }
    if let Some(h) = &cfg.host {
        // The node answers pods from its own address too (a pod reached the node's IP).
        b.flow(
            Table::SpoofGuard,
            100,
            &format!(
                "ip,in_port={HOST_OFPORT},dl_src={},nw_src={}",
                h.mac, cfg.underlay_ip
            ),
            "goto_table:20",
        );
    }
    b.flow(Table::SpoofGuard, 0, "", "drop");

    // Table 20: conntrack (known connections get their NAT undone/redone here).
    b.flow(
        Table::Conntrack,
        100,
        "ip",
        &format!("ct(table=30,zone={zone},nat)"),
    );
    // Hairpin replies (a pod answering itself through a Service, seen from the gateway
    // address): undo the hairpin SNAT in its own zone first, then the Service's DNAT.
    let hairpin_zone = zone + 1;
    b.flow(
        Table::Conntrack,
        110,
        &format!("ip,nw_dst={}", cfg.gateway_ip),
        &format!("ct(table=21,zone={hairpin_zone},nat)"),
    );
    b.flow(Table::Conntrack, 0, "", "drop");
    b.flow(
        Table::HairpinUnsnat,
        0,
        // `ct` needs an IP match (Open vSwitch refuses it otherwise: MATCH_INCONSISTENT).
        "ip",
        &format!("ct(table=30,zone={zone},nat)"),
    );

    // Table 30: Service load balancing of new connections, then commit everything else.
    b.out.services = services_output(cfg, numbering, rt, services, &group_ids);
    if cfg.pods.iter().any(|p| p.allow_from.is_some()) {
        drop_refused(&mut b, cfg);
    }
    if cfg.egress.snat {
        // Connections leaving the cluster are committed later, with their SNAT (table 60);
        // those to the node itself (through the host port) stay inside and are committed now.
        let mut inside: Vec<String> = cfg.cluster_cidrs().iter().map(|c| c.to_string()).collect();
        if cfg.host.is_some() {
            inside.push(cfg.underlay_ip.to_string());
            if cfg.uplink.is_some() {
                drop_new_from_uplink_to_node(&mut b, cfg);
            }
        }
        for c in inside {
            b.flow(
                Table::ServiceLb,
                100,
                &format!("ct_state=+new+trk,ip,nw_dst={c}"),
                &format!("ct(commit,table=40,zone={zone})"),
            );
        }
        b.flow(
            Table::ServiceLb,
            99,
            "ct_state=+new+trk,ip",
            "goto_table:40",
        );
    } else {
        b.flow(
            Table::ServiceLb,
            100,
            "ct_state=+new+trk,ip",
            &format!("ct(commit,table=40,zone={zone})"),
        );
    }
    b.flow(
        Table::ServiceLb,
        90,
        "ct_state=+est+trk,ip",
        "goto_table:40",
    );
    b.flow(
        Table::ServiceLb,
        90,
        "ct_state=+rel+trk,ip",
        "goto_table:40",
    );
    b.flow(Table::ServiceLb, 80, "ct_state=+inv+trk,ip", "drop");
    b.flow(Table::ServiceLb, 0, "", "drop");

    // Table 35: outside clients of "cluster" Services (marked by their group) are
    // source-NATed to the gateway address in the hairpin zone, on every packet of the
    // original direction; replies to the gateway address are un-SNATed by table 20's rule.
    if cfg.uplink.is_some() {
        b.flow(
            Table::ServiceLb,
            95,
            &format!("ct_state=+est-rpl+trk,ct_mark={MASQUERADE_MARK:#x},ip"),
            "goto_table:35",
        );
        b.flow(
            Table::OutsideSnat,
            100,
            "ip",
            &format!(
                "ct(commit,table=40,zone={hairpin_zone},nat(src={}))",
                cfg.gateway_ip
            ),
        );
        b.flow(Table::OutsideSnat, 0, "", "drop");
    }

    // Table 40: which node owns the destination?
    b.flow(
        Table::L3Forward,
        100,
        &format!("ip,nw_dst={}", cfg.pod_cidr),
        "goto_table:70",
    );
    for p in &cfg.peers {
        b.flow(
            Table::L3Forward,
            100,
            &format!("ip,nw_dst={}", p.pod_cidr),
            "goto_table:50",
        );
    }
    if let Some(h) = &cfg.host {
        // Pods reach the node's own address through the host port; the uplink's copies of
        // traffic for it stay with the kernel (it got them from its own interface).
        if cfg.uplink.is_some() {
            b.flow(
                Table::L3Forward,
                106,
                &format!("ip,in_port={UPLINK_OFPORT},nw_dst={}", cfg.underlay_ip),
                "goto_table:60",
            );
        }
        b.flow(
            Table::L3Forward,
            105,
            &format!("ip,nw_dst={}", cfg.underlay_ip),
            "goto_table:70",
        );
        b.flow(
            Table::LocalDelivery,
            100,
            &format!("ip,nw_dst={}", cfg.underlay_ip),
            &format!(
                "set_field:{gw_mac}->eth_src,set_field:{}->eth_dst,output:{HOST_OFPORT}",
                h.mac
            ),
        );
    }
    b.flow(Table::L3Forward, 0, "", "goto_table:60");

    // Table 50: to a peer node, over VXLAN or straight onto the underlay.
    for p in &cfg.peers {
        // Route mode: straight to the peer on our segment, or through the router (a peer in
        // another subnet, whose pod CIDR the VPC routes to it).
        let actions = match (cfg.mode, own_mac, p.underlay_mac.or(next_hop)) {
            (Mode::Tunnel { .. }, _, _) => {
                let inner = match p.inner_mac {
                    Some(m) => format!("set_field:{gw_mac}->eth_src,set_field:{m}->eth_dst,"),
                    None => String::new(),
                };
                format!(
                    "{inner}set_field:{}->tun_dst,output:{TUNNEL_OFPORT}",
                    p.underlay_ip
                )
            }
            (Mode::Route, Some(own), Some(peer)) => {
                format!("set_field:{own}->eth_src,set_field:{peer}->eth_dst,output:{UPLINK_OFPORT}")
            }
            _ => {
                return Err(format!(
                    "peers '{}': no underlay MAC for route mode",
                    p.name
                ));
            }
        };
        b.flow(
            Table::PeerOutput,
            100,
            &format!("ip,nw_dst={}", p.pod_cidr),
            &actions,
        );
        if cfg.mode == Mode::Route {
            // An outside client's packet for a backend on the peer leaves by the port it
            // came in on: OpenFlow's `output:P` skips the input port, `output:in_port` not.
            b.flow(
                Table::PeerOutput,
                110,
                &format!("ip,in_port={UPLINK_OFPORT},nw_dst={}", p.pod_cidr),
                &actions.replace(&format!("output:{UPLINK_OFPORT}"), "output:in_port"),
            );
        }
    }
    b.flow(Table::PeerOutput, 0, "", "drop");

    // Table 60: leaving the cluster (through the uplink to the next hop): masquerade new
    // connections of pods to the node's address, and let out replies of connections to the
    // node's address (masqueraded ones, outside clients of NodePorts; external IPs have a
    // flow per frontend).
    if let (Some(own), Some(next_hop)) = (own_mac, next_hop) {
        if cfg.mode == Mode::Route {
            // The network routes pod addresses: replies of connections opened from outside
            // (a VPC host, an outside client) and every later packet of the pods' own
            // unmasqueraded connections leave with the pod's address. Masqueraded ones carry
            // the node address by now (table 20 applied the NAT).
            for state in ["+est", "+rel"] {
                b.flow(
                    Table::Egress,
                    90,
                    &format!("ct_state={state}+trk,ip,nw_src={}", cfg.pod_cidr),
                    "goto_table:65",
                );
            }
            // New connections to destinations that route pod addresses back keep the pod's
            // address (committed here unless table 30 already did).
            let commit = if cfg.egress.snat {
                format!("ct(commit,table=65,zone={zone})")
            } else {
                "goto_table:65".to_string()
            };
            for c in &cfg.egress.no_snat_cidrs {
                b.flow(
                    Table::Egress,
                    105,
                    &format!("ct_state=+new+trk,ip,nw_src={},nw_dst={c}", cfg.pod_cidr),
                    &commit,
                );
            }
        }
        if cfg.egress.snat {
            masquerade_flows(&mut b, cfg, MASQUERADE_PORTS);
        }
        b.flow(
            Table::Egress,
            90,
            &format!("ct_state=+est+trk,ip,nw_src={}", cfg.underlay_ip),
            "goto_table:65",
        );
        let set = format!("set_field:{own}->eth_src,set_field:{next_hop}->eth_dst");
        b.flow(
            Table::EgressOut,
            100,
            "ip",
            &format!("{set},output:{UPLINK_OFPORT}"),
        );
        if cfg.mode == Mode::Route {
            // A reply from a backend on a peer arrives on the uplink and leaves by it.
            b.flow(
                Table::EgressOut,
                110,
                &format!("ip,in_port={UPLINK_OFPORT}"),
                &format!("{set},output:in_port"),
            );
        }
    }
    b.flow(Table::Egress, 0, "", "drop");

    // Table 70: to a local pod, with the gateway as the previous hop.
    for p in &cfg.pods {
        let of = numbering.ofports[&p.port];
        let deliver = format!(
            "set_field:{gw_mac}->eth_src,set_field:{}->eth_dst,output:{of}",
            p.mac
        );
        b.flow(
            Table::LocalDelivery,
            100,
            &format!("ip,nw_dst={}", p.ip),
            &deliver,
        );
        if let Some(allow) = &p.allow_from {
            // New connections only from the allow-list; replies to the pod's own always pass.
            b.flow(
                Table::LocalDelivery,
                110,
                &format!("ct_state=+new+trk,ip,nw_dst={}", p.ip),
                &refuse_new(cfg),
            );
            // The node itself (kubelet's probes) is always allowed, as in Kubernetes.
            if let Some(h) = &cfg.host {
                b.flow(
                    Table::LocalDelivery,
                    120,
                    &format!("ct_state=+new+trk,ip,nw_src={},nw_dst={}", h.ip, p.ip),
                    &deliver,
                );
            }
            for c in allow {
                b.flow(
                    Table::LocalDelivery,
                    120,
                    &format!("ct_state=+new+trk,ip,nw_src={c},nw_dst={}", p.ip),
                    &deliver,
                );
            }
        }
    }
    for p in &cfg.pods {
        hairpin_flows(
            &mut b,
            cfg,
            numbering.ofports[&p.port],
            p.ip,
            p.mac,
            hairpin_zone,
        );
    }
    b.flow(Table::LocalDelivery, 0, "", "drop");
    b.flow(Table::HairpinOut, 0, "", "drop");
    Ok(b.out)
}
