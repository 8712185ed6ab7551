//! Mode `"eni"` (Cloud Native Network 2.0): each pod is a sub-ENI, a VLAN id on the trunk
//! uplink with the pod's own MAC and VPC address; the VPC routes between sub-ENIs.
//!
//! The switch pushes the pod's tag on everything the pod sends to the VPC and pops it from
//! everything the VPC sends on that tag, which is delivered to that pod only (`reg5` carries
//! the tag a frame arrived with through conntrack). It answers nothing on the VPC's behalf:
//! the pod's ARP goes to the VPC tagged, the VPC's ARP for the pod comes back tagged. Node
//! traffic on the uplink stays untagged and never reaches a pod except as the reply of a
//! masqueraded connection.
//!
//! Security groups are compiled into conjunctive matches (`conjunction(id,k/n)` clauses and a
//! `conj_id=id` flow per rule), so the classifier masks of tables 41 and 44 depend on the
//! prefix lengths and port ranges in use, not on pods × rules (see `docs/concepts.md`).

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;

use super::compile::{
    Builder, Desired, ENI_NODE_SNAT_PORTS, ENI_POD_MASQUERADE_PORTS, HOST_OFPORT, MASQUERADE_MARK,
    MASQUERADE_PORTS, Numbering, ServiceOut, Table, UPLINK_OFPORT, drop_refused, hairpin_flows,
    masquerade_flows, refuse_new,
};
use super::model::*;

/// The register carrying the VLAN a frame arrived with on the uplink (0: not from a sub-ENI).
pub const VLAN_REG: &str = "reg5";
/// Priority of the flows that drop a new connection no security-group rule allows: what
/// `dump-drops` sums as `secgroup_denied` (tables 41 and 44).
pub const SG_DENY_PRIORITY: u16 = 50;
/// Priority of the egress refusals of connections table 30 already committed (to the VPC and
/// the cluster): marked refused there (`compile::refuse_new`). Counted with the others.
pub const SG_DENY_COMMITTED_PRIORITY: u16 = 51;
/// Priority of the conjunction clauses and `conj_id` flows.
const SG_RULE_PRIORITY: u16 = 100;
/// Priority of rules that need no conjunction (one dimension only).
const SG_PLAIN_PRIORITY: u16 = 101;

/// Distinct rules a security group may have: [`conj_id`] keeps 12 bits for the rule's place.
pub const MAX_RULES_PER_GROUP: usize = (1 << 12) - 1;

/// The conjunction id of rule `j` of group `g` (stable while groups and rules keep their
/// places in the file).
pub fn conj_id(g: usize, j: usize) -> u32 {
    (((g as u32) + 1) << 12) | ((j as u32) + 1)
}

/// `lo..=hi` as value/mask prefixes (at most 2 × 16 - 2 of them).
pub fn port_prefixes(lo: u16, hi: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (lo as u32, hi as u32);
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        let mask = (!(size - 1)) & 0xffff;
        out.push((lo as u16, mask as u16));
        lo += size;
    }
    out
}

/// Conjunction clauses by flow identity: the same match may be a clause of many rules.
#[derive(Default)]
struct Clauses {
    flows: BTreeMap<(u8, String), Vec<String>>,
}

impl Clauses {
    fn add(&mut self, table: Table, match_text: String, id: u32, k: usize, n: usize) {
        self.flows
            .entry((table.id(), match_text))
            .or_default()
            .push(format!("conjunction({id},{k}/{n})"));
    }
}

/// The members' addresses of group `g`: this node's pods in it and the ones listed.
fn members(cfg: &NodeConfig, g: usize) -> Vec<std::net::Ipv4Addr> {
    let mut v: Vec<_> = cfg
        .pods
        .iter()
        .filter(|p| p.security_groups.contains(&g))
        .map(|p| p.ip)
        .chain(cfg.security_groups[g].members.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One rule's clauses: local side (the group's pods on this node), remote side, protocol and
/// ports. Returns false when the group has no member here (nothing to install).
fn compile_rule(
    cfg: &NodeConfig,
    ofports: &BTreeMap<String, u32>,
    b: &mut Builder,
    clauses: &mut Clauses,
    g: usize,
    j: usize,
    r: &SecurityRule,
) {
    let (table, next, local_key, remote_key) = match r.direction {
        Direction::Ingress => (Table::SgIngress, Table::LocalDelivery, "nw_dst", "nw_src"),
        Direction::Egress => (Table::SgEgress, Table::VpcRoute, "in_port", "nw_dst"),
    };
    let locals: Vec<String> = cfg
        .pods
        .iter()
        .filter(|p| p.security_groups.contains(&g))
        .map(|p| match r.direction {
            Direction::Ingress => format!("{local_key}={}", p.ip),
            Direction::Egress => format!("{local_key}={}", ofports[&p.port]),
        })
        .collect();
    if locals.is_empty() {
        return;
    }
    let remotes: Option<Vec<String>> = match r.remote {
        Remote::Cidr(c) if c.len == 0 => None,
        Remote::Cidr(c) => Some(vec![format!("{remote_key}={c}")]),
        Remote::Group(rg) => Some(
            members(cfg, rg)
                .into_iter()
                .map(|ip| format!("{remote_key}={ip}"))
                .collect(),
        ),
    };
    let protos: Option<Vec<String>> = match r.protocol {
        RuleProtocol::Any => None,
        RuleProtocol::Icmp => Some(vec!["icmp".into()]),
        RuleProtocol::Tcp(lo, hi) | RuleProtocol::Udp(lo, hi) => {
            let name = if matches!(r.protocol, RuleProtocol::Tcp(..)) {
                "tcp"
            } else {
                "udp"
            };
            if (lo, hi) == (1, 65535) {
                Some(vec![name.to_string()])
            } else {
                Some(
                    port_prefixes(lo, hi)
                        .into_iter()
                        .map(|(v, m)| {
                            if m == 0xffff {
                                format!("{name},tp_dst={v}")
                            } else {
                                format!("{name},tp_dst={v:#x}/{m:#x}")
                            }
                        })
                        .collect(),
                )
            }
        }
    };
    // A remote group without members allows nothing.
    if remotes.as_ref().is_some_and(|v| v.is_empty()) {
        return;
    }
    let new = "ct_state=+new+trk";
    let dims: Vec<Vec<String>> = [Some(locals), remotes, protos]
        .into_iter()
        .flatten()
        .collect();
    if dims.len() == 1 {
        // Everything from/to these pods: no conjunction needed.
        for l in &dims[0] {
            b.flow(
                table,
                SG_PLAIN_PRIORITY,
                &format!("{new},ip,{l}"),
                &format!("goto_table:{}", next.id()),
            );
        }
        return;
    }
    let id = conj_id(g, j);
    let n = dims.len();
    for (k, dim) in dims.iter().enumerate() {
        for m in dim {
            // Protocol clauses carry their own prerequisite (tcp/udp/icmp); the others
            // match IP.
            let m = if m.starts_with("tcp") || m.starts_with("udp") || m.starts_with("icmp") {
                format!("{new},{m}")
            } else {
                format!("{new},ip,{m}")
            };
            clauses.add(table, m, id, k + 1, n);
        }
    }
    b.flow(
        table,
        SG_RULE_PRIORITY,
        &format!("conj_id={id},ip"),
        &format!("goto_table:{}", next.id()),
    );
}

/// The pipeline of mode eni (see `docs/pipeline.md` and `docs/concepts.md`).
pub(super) fn compile_eni(
    cfg: &NodeConfig,
    numbering: &Numbering,
    mut b: Builder,
    services: Arc<HashMap<u32, Arc<ServiceOut>>>,
    own: Mac,
    next_hop: Option<Mac>,
) -> Desired {
    let zone = cfg.ct_zone;
    let gw_mac = cfg.gateway_mac;
    let of = |p: &Pod| numbering.ofports[&p.port];
    let eni_pods: Vec<&Pod> = cfg.pods.iter().filter(|p| p.vlan.is_some()).collect();

    // Table 0: a pod's port, or the uplink: tagged (a sub-ENI's VLAN) or untagged (the node).
    for p in &eni_pods {
        let (of, vlan) = (of(p), p.vlan.unwrap_or_default());
        b.flow(
            Table::Classifier,
            100,
            &format!("in_port={of}"),
            "goto_table:10",
        );
        // The VPC's ARP for the pod and its answers to the pod's: to the pod as they are.
        b.flow(
            Table::Classifier,
            110,
            &format!("arp,in_port={UPLINK_OFPORT},dl_vlan={vlan}"),
            &format!("pop_vlan,output:{of}"),
        );
        b.flow(
            Table::Classifier,
            100,
            &format!("ip,in_port={UPLINK_OFPORT},dl_vlan={vlan}"),
            &format!("pop_vlan,load:{vlan}->NXM_NX_REG5[],goto_table:20"),
        );
    }
    if let Some(h) = &cfg.host {
        // The host port: the node's own connections to Services, from its address.
        b.flow(
            Table::Classifier,
            100,
            &format!("in_port={HOST_OFPORT}"),
            "goto_table:10",
        );
        b.flow(
            Table::SpoofGuard,
            100,
            &format!(
                "ip,in_port={HOST_OFPORT},dl_src={},nw_src={},nw_dst={}",
                h.mac, cfg.underlay_ip, cfg.service_cidr
            ),
            "goto_table:20",
        );
    }
    let outside_clients = cfg
        .services
        .iter()
        .any(|s| !s.passthrough && (s.node_port.is_some() || s.external_ip.is_some()));
    if cfg.egress.snat || cfg.host.is_some() || outside_clients {
        // Replies to connections source-NATed to the node's address (masquerade, the host
        // port's and outside clients' to other nodes' backends).
        b.flow(
            Table::Classifier,
            90,
            &format!(
                "ip,in_port={UPLINK_OFPORT},vlan_tci=0x0000/0x1fff,nw_dst={}",
                cfg.underlay_ip
            ),
            "goto_table:20",
        );
    }
    b.flow(Table::Classifier, 0, "", "drop");

    // Table 10: a pod sends only with its own MAC and IP; its ARP goes to the VPC tagged.
    for p in &eni_pods {
        let (of, vlan) = (of(p), p.vlan.unwrap_or_default());
        b.flow(
            Table::SpoofGuard,
            100,
            &format!("ip,in_port={of},dl_src={},nw_src={}", p.mac, p.ip),
            "goto_table:20",
        );
        b.flow(Table::SpoofGuard, 10, &format!("ip,in_port={of}"), "drop");
        b.flow(
            Table::SpoofGuard,
            110,
            &format!(
                "arp,in_port={of},dl_src={mac},arp_spa={ip},arp_sha={mac}",
                mac = p.mac,
                ip = p.ip
            ),
            &format!("mod_vlan_vid:{vlan},output:{UPLINK_OFPORT}"),
        );
    }
    b.flow(Table::SpoofGuard, 0, "", "drop");

    // Table 20: conntrack.
    b.flow(
        Table::Conntrack,
        100,
        "ip",
        &format!("ct(table=30,zone={zone},nat)"),
    );
    // Replies to connections source-NATed in the hairpin zone (zone + 1): a pod reaching
    // itself through a Service (NATed to the gateway address) and outside clients of NodePort
    // and DNAT Services (NATed to the node's address). Their NAT is undone there first, then
    // the Service's DNAT in the pod zone; other traffic to these addresses finds no entry in
    // the hairpin zone and goes on unchanged.
    let hairpin_zone = zone + 1;
    for to in [cfg.gateway_ip, cfg.underlay_ip] {
        b.flow(
            Table::Conntrack,
            110,
            &format!("ip,nw_dst={to}"),
            &format!("ct(table=21,zone={hairpin_zone},nat)"),
        );
    }
    b.flow(Table::Conntrack, 0, "", "drop");
    b.flow(
        Table::HairpinUnsnat,
        0,
        // `ct` needs an IP match (Open vSwitch refuses it otherwise: MATCH_INCONSISTENT).
        "ip",
        &format!("ct(table=30,zone={zone},nat)"),
    );

    // Table 30: Services (their own flows), EIPs in, then commit what stays in the VPC.
    // Connections a security group refused are dropped first, whichever side sends.
    b.out.services = services;
    drop_refused(&mut b, cfg);
    for p in &eni_pods {
        if let Some(eip) = p.eip {
            b.flow(
                Table::ServiceLb,
                150,
                &format!(
                    "ct_state=+new+trk,ip,{VLAN_REG}={},nw_dst={eip}",
                    p.vlan.unwrap_or_default()
                ),
                &format!("ct(commit,table=40,zone={zone},nat(dst={}))", p.ip),
            );
        }
    }
    let mut inside: Vec<String> = vec![
        cfg.pod_cidr.to_string(),
        cfg.service_cidr.to_string(),
        cfg.underlay_ip.to_string(),
    ];
    inside.extend(cfg.egress.no_snat_cidrs.iter().map(|c| c.to_string()));
    for c in &inside {
        b.flow(
            Table::ServiceLb,
            100,
            &format!("ct_state=+new+trk,ip,nw_dst={c}"),
            &format!("ct(commit,table=40,zone={zone})"),
        );
    }
    // New connections from the uplink to the node's address are the kernel's; anything else
    // new from the uplink is not ours either.
    super::compile::drop_new_from_uplink_to_node(&mut b, cfg);
    b.flow(
        Table::ServiceLb,
        99,
        &format!("ct_state=+new+trk,ip,in_port={UPLINK_OFPORT}"),
        "drop",
    );
    // A pod's new connection out of the VPC: committed with its NAT in table 60.
    b.flow(
        Table::ServiceLb,
        98,
        "ct_state=+new+trk,ip",
        "goto_table:40",
    );
    for state in ["+est", "+rel"] {
        b.flow(
            Table::ServiceLb,
            90,
            &format!("ct_state={state}+trk,ip"),
            "goto_table:40",
        );
    }
    b.flow(Table::ServiceLb, 80, "ct_state=+inv+trk,ip", "drop");
    b.flow(Table::ServiceLb, 0, "", "drop");

    // Table 35: outside clients of NodePort and DNAT Services (their group marked the
    // connection) are source-NATed to the node's address in the hairpin zone, on every packet
    // of the original direction, so that a backend on any node answers through this one; the
    // mark is set on that entry too, for tables 60 and 65.
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
            "ct(commit,table=40,zone={hairpin_zone},nat(src={}:{}-{}),exec(set_field:{MASQUERADE_MARK:#x}->ct_mark))",
            cfg.underlay_ip, ENI_NODE_SNAT_PORTS.0, ENI_NODE_SNAT_PORTS.1
        ),
    );
    b.flow(Table::OutsideSnat, 0, "", "drop");

    // Table 40: on to the egress check (41) when the source is a pod of this node.
    b.flow(Table::L3Forward, 0, "", "goto_table:41");

    // Tables 41 (egress) and 44 (ingress): security groups, on new connections only.
    let mut clauses = Clauses::default();
    for (g, group) in cfg.security_groups.iter().enumerate() {
        for (j, r) in group.rules.iter().enumerate() {
            compile_rule(cfg, &numbering.ofports, &mut b, &mut clauses, g, j, r);
        }
    }
    for ((table, m), conj) in clauses.flows {
        let table = if table == Table::SgEgress.id() {
            Table::SgEgress
        } else {
            Table::SgIngress
        };
        b.flow(table, SG_RULE_PRIORITY, &m, &conj.join(","));
    }
    for p in &eni_pods {
        if p.security_groups.is_empty() {
            continue;
        }
        // Egress: restricted only when one of the pod's groups has egress rules (a group
        // without any allows all egress, as the cloud's default rule does).
        let restricted = p.security_groups.iter().all(|&g| {
            cfg.security_groups[g]
                .rules
                .iter()
                .any(|r| r.direction == Direction::Egress)
        });
        if restricted {
            // Connections out of the VPC are not committed yet (table 60 does it with their
            // NAT): a plain drop leaves no entry to charge against the pod's limits.
            b.flow(
                Table::SgEgress,
                SG_DENY_PRIORITY,
                &format!("ct_state=+new+trk,ip,in_port={}", of(p)),
                "drop",
            );
            for c in &inside {
                b.flow(
                    Table::SgEgress,
                    SG_DENY_COMMITTED_PRIORITY,
                    &format!("ct_state=+new+trk,ip,in_port={},nw_dst={c}", of(p)),
                    &refuse_new(cfg),
                );
            }
            // The pod's answers to the node (kubelet's probes are connections the node opens,
            // so only new connections to the node need this).
            b.flow(
                Table::SgEgress,
                SG_PLAIN_PRIORITY + 1,
                &format!(
                    "ct_state=+new+trk,ip,in_port={},nw_dst={}",
                    of(p),
                    cfg.underlay_ip
                ),
                "goto_table:42",
            );
        }
        // Ingress: denied unless a rule allows it (the node itself is let in below).
        b.flow(
            Table::SgIngress,
            SG_DENY_PRIORITY,
            &format!("ct_state=+new+trk,ip,nw_dst={}", p.ip),
            &refuse_new(cfg),
        );
    }
    // The node itself always may connect to its pods (kubelet's probes). Not by source
    // address alone: the switch source-NATs others to the node's address too (masqueraded
    // pods reaching an EIP, outside clients of NodePorts), from the masquerade ports, which
    // the node's own connections never use (Linux's ephemeral ports end below them). Only
    // TCP and UDP: other protocols from the node's address follow the groups.
    for proto in ["tcp", "udp"] {
        for (value, mask) in port_prefixes(0, MASQUERADE_PORTS.0 - 1) {
            b.flow(
                Table::SgIngress,
                SG_PLAIN_PRIORITY + 1,
                &format!(
                    "ct_state=+new+trk,{proto},nw_src={},tp_src={value:#x}/{mask:#x}",
                    cfg.underlay_ip
                ),
                "goto_table:70",
            );
        }
    }
    b.flow(Table::SgEgress, 0, "", "goto_table:42");

    // Table 42: a pod of this node (ingress check, then delivery), or the VPC / the world.
    for p in &eni_pods {
        b.flow(
            Table::VpcRoute,
            100,
            &format!("ip,nw_dst={}", p.ip),
            "goto_table:44",
        );
    }
    if let Some(h) = &cfg.host {
        // Replies to the node's Service connections (their DNAT undone: from a Service
        // address) go back through the host port.
        b.flow(
            Table::VpcRoute,
            110,
            &format!("ip,nw_src={},nw_dst={}", cfg.service_cidr, cfg.underlay_ip),
            &format!(
                "set_field:{gw_mac}->eth_src,set_field:{}->eth_dst,output:{HOST_OFPORT}",
                h.mac
            ),
        );
    }
    b.flow(Table::VpcRoute, 0, "", "goto_table:60");
    b.flow(Table::SgIngress, 0, "", "goto_table:70");

    // Table 60: leaving the node. From the uplink nothing leaves again; pods' new connections
    // to the VPC keep their address, those to the world leave as the pod's EIP or masqueraded
    // to the node's address.
    b.flow(
        Table::Egress,
        120,
        &format!("ip,in_port={UPLINK_OFPORT}"),
        "drop",
    );
    // Except outside clients' NodePort/DNAT connections: to a backend on another node and
    // back to the client, untagged through the node's next hop (table 65).
    b.flow(
        Table::Egress,
        125,
        &format!("ct_state=+trk,ct_mark={MASQUERADE_MARK:#x},ip"),
        "goto_table:65",
    );
    if cfg.host.is_some() {
        // The node's Service connections to a backend on another node: source-NATed to the
        // node's address in the hairpin zone, from the masquerade ports (the node's kernel,
        // which sees the replies on the uplink too, drops those), so the replies come back
        // here and not to a socket the kernel does not have.
        b.flow(
            Table::Egress,
            116,
            &format!("ct_state=+new+trk,ip,in_port={HOST_OFPORT}"),
            &format!(
                "ct(commit,table=65,zone={hairpin_zone},nat(src={}:{}-{}))",
                cfg.underlay_ip, ENI_NODE_SNAT_PORTS.0, ENI_NODE_SNAT_PORTS.1
            ),
        );
        b.flow(
            Table::Egress,
            115,
            &format!("ip,in_port={HOST_OFPORT}"),
            &format!("ct(table=65,zone={hairpin_zone},nat)"),
        );
    }
    for c in &inside {
        b.flow(
            Table::Egress,
            110,
            &format!("ct_state=+new+trk,ip,nw_dst={c}"),
            "goto_table:65",
        );
    }
    for p in &eni_pods {
        if let Some(eip) = p.eip {
            b.flow(
                Table::Egress,
                101,
                &format!("ct_state=+new+trk,ip,in_port={}", of(p)),
                &format!("ct(commit,table=65,zone={zone},nat(src={eip}))"),
            );
        }
    }
    if cfg.egress.snat && next_hop.is_some() {
        masquerade_flows(&mut b, cfg, ENI_POD_MASQUERADE_PORTS);
    }
    for state in ["+est", "+rel"] {
        b.flow(
            Table::Egress,
            90,
            &format!("ct_state={state}+trk,ip"),
            "goto_table:65",
        );
    }
    b.flow(Table::Egress, 0, "", "drop");

    // Table 65: masqueraded traffic leaves untagged as the node's; everything else of a pod
    // leaves on its sub-ENI, to the VPC's gateway.
    if let Some(nh) = next_hop {
        let set = format!("set_field:{own}->eth_src,set_field:{nh}->eth_dst");
        // Outside clients' connections (marked in table 35): back out of the uplink they
        // came in by, or from a local backend's reply.
        b.flow(
            Table::EgressOut,
            120,
            &format!("ct_state=+trk,ct_mark={MASQUERADE_MARK:#x},ip,in_port={UPLINK_OFPORT}"),
            &format!("{set},output:in_port"),
        );
        b.flow(
            Table::EgressOut,
            119,
            &format!("ct_state=+trk,ct_mark={MASQUERADE_MARK:#x},ip"),
            &format!("{set},output:{UPLINK_OFPORT}"),
        );
        b.flow(
            Table::EgressOut,
            110,
            &format!("ip,nw_src={}", cfg.underlay_ip),
            &format!("set_field:{own}->eth_src,set_field:{nh}->eth_dst,output:{UPLINK_OFPORT}"),
        );
    }
    for p in &eni_pods {
        b.flow(
            Table::EgressOut,
            100,
            &format!("ip,in_port={}", of(p)),
            &format!(
                "set_field:{}->eth_src,set_field:{gw_mac}->eth_dst,mod_vlan_vid:{},output:{UPLINK_OFPORT}",
                p.mac,
                p.vlan.unwrap_or_default()
            ),
        );
    }
    b.flow(Table::EgressOut, 0, "", "drop");

    // Table 70: to a pod of this node: from this node's pods or masqueraded replies (no tag),
    // or from the VPC on the pod's own VLAN only.
    for p in &eni_pods {
        let deliver = format!(
            "set_field:{gw_mac}->eth_src,set_field:{}->eth_dst,output:{}",
            p.mac,
            of(p)
        );
        for tag in [0, p.vlan.unwrap_or_default()] {
            b.flow(
                Table::LocalDelivery,
                100,
                &format!("ip,{VLAN_REG}={tag},nw_dst={}", p.ip),
                &deliver,
            );
        }
    }
    for p in &eni_pods {
        hairpin_flows(&mut b, cfg, of(p), p.ip, p.mac, hairpin_zone);
    }
    b.flow(Table::LocalDelivery, 0, "", "drop");
    b.flow(Table::HairpinOut, 0, "", "drop");
    b.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_prefixes_cover_exactly_the_range() {
        for (lo, hi) in [
            (1u16, 65535u16),
            (80, 80),
            (8000, 8999),
            (1, 1),
            (1024, 2047),
            (3, 17),
        ] {
            let pf = port_prefixes(lo, hi);
            assert!(pf.len() <= 30, "{lo}-{hi}: {pf:?}");
            for port in 0..=65535u16 {
                let hits = pf.iter().filter(|(v, m)| port & m == *v).count();
                let want = (lo..=hi).contains(&port) as usize;
                assert_eq!(hits, want, "{lo}-{hi} port {port}");
            }
        }
    }
}
