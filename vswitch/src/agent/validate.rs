//! Turns the file as written into a [`NodeConfig`], or says which key is wrong and why.
//!
//! Validation is complete before anything touches the switch: a bad file never leaves a
//! node half-configured.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use super::config::*;
use super::model::*;

/// NodePorts live in this range, as in Kubernetes.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot parse the configuration: {0}")]
    Syntax(String),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Parses and validates a configuration file's text.
pub fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    validate(&raw)
}

fn ipv4(key: &str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(key, format!("'{s}' is not an IPv4 address")))
}

fn cidr(key: &str, s: &str) -> Result<Cidr, ConfigError> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| invalid(key, format!("'{s}' is not a prefix (expected A.B.C.D/LEN)")))?;
    let addr = ipv4(key, a)?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| invalid(key, format!("'{l}' is not a prefix length 0..32")))?;
    let c = Cidr { addr, len };
    if u32::from(addr) & !c.mask() != 0 {
        return Err(invalid(
            key,
            format!(
                "'{s}' has host bits set (did you mean {}/{len}?)",
                Ipv4Addr::from(u32::from(addr) & c.mask())
            ),
        ));
    }
    Ok(c)
}

fn mac(key: &str, s: &str) -> Result<Mac, ConfigError> {
    let bad = || {
        invalid(
            key,
            format!("'{s}' is not a MAC address (expected xx:xx:xx:xx:xx:xx)"),
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m[0] & 1 != 0 || m == [0; 6] {
        return Err(invalid(key, format!("'{s}' is not a unicast MAC address")));
    }
    Ok(Mac(m))
}

fn ifname(key: &str, s: &str) -> Result<String, ConfigError> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', ':']) {
        return Err(invalid(
            key,
            format!("'{s}' is not an interface name (1 to 15 characters, no '/', ' ' or ':')"),
        ));
    }
    Ok(s.to_string())
}

pub fn validate(raw: &RawConfig) -> Result<NodeConfig, ConfigError> {
    validate_with(raw, &mut ServiceMemo::default())
}

/// Services validated by the previous call, by name: an entry that is the very same text
/// (and Service CIDR) is not validated again, so one changed Service among 10k costs one
/// Service's work plus the cross-checks.
#[derive(Debug, Default)]
pub struct ServiceMemo {
    cidr: Option<Cidr>,
    services: HashMap<String, Memoized>,
    /// Every frontend in force and the position (in `NodeConfig::services`) of its Service:
    /// what a one-Service change is checked against without walking the others.
    frontends: HashMap<Frontend, usize>,
}

/// A frontend: address, port and protocol.
type Frontend = (Ipv4Addr, u16, Protocol);

#[derive(Debug)]
struct Memoized {
    raw: Arc<RawService>,
    service: Arc<Service>,
    /// Where the Service sits in `NodeConfig::services`.
    position: usize,
}

/// A Service validated on its own against a node already validated (see [`validate_one`]).
pub struct OneService {
    pub service: Arc<Service>,
    /// The position of the Service it replaces, if one of that name is in force.
    pub replaces: Option<usize>,
}

impl ServiceMemo {
    /// Records a one-Service change that was applied: `cfg.services` is updated to match.
    pub fn set_one(&mut self, cfg: &mut NodeConfig, raw: Arc<RawService>, one: OneService) {
        let position = match one.replaces {
            Some(p) => {
                self.forget_frontends(cfg, p);
                cfg.services[p] = one.service.clone();
                p
            }
            None => {
                cfg.services.push(one.service.clone());
                cfg.services.len() - 1
            }
        };
        for (ip, port) in one.service.frontends(cfg.underlay_ip) {
            self.frontends
                .insert((ip, port, one.service.protocol), position);
        }
        self.services.insert(
            raw.name.clone(),
            Memoized {
                raw,
                service: one.service,
                position,
            },
        );
    }

    /// Records the removal of Service `name`: `cfg.services` is updated to match.
    pub fn remove_one(&mut self, cfg: &mut NodeConfig, name: &str) {
        let Some(gone) = self.services.remove(name) else {
            return;
        };
        let p = gone.position;
        self.forget_frontends(cfg, p);
        cfg.services.swap_remove(p);
        // The last Service moved into the hole: its positions follow.
        if let Some(moved) = cfg.services.get(p) {
            for (ip, port) in moved.frontends(cfg.underlay_ip) {
                self.frontends.insert((ip, port, moved.protocol), p);
            }
            if let Some(m) = self.services.get_mut(&moved.name) {
                m.position = p;
            }
        }
    }

    /// The position of Service `name` in force, if any.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.services.get(name).map(|m| m.position)
    }

    fn forget_frontends(&mut self, cfg: &NodeConfig, position: usize) {
        let old = &cfg.services[position];
        for (ip, port) in old.frontends(cfg.underlay_ip) {
            self.frontends.remove(&(ip, port, old.protocol));
        }
    }
}

/// Validates one Service against `cfg` (validated with `memo`): what [`validate_with`] would
/// check for it, the frontends of every other Service included, without walking them.
pub fn validate_one(
    cfg: &NodeConfig,
    raw: &RawService,
    memo: &ServiceMemo,
) -> Result<OneService, ConfigError> {
    let replaces = memo.position(&raw.name);
    let i = replaces.unwrap_or(cfg.services.len());
    let service = match memo.services.get(&raw.name) {
        Some(m) if *m.raw == *raw => m.service.clone(),
        _ => Arc::new(service(i, raw, cfg.service_cidr)?),
    };
    check_mode(i, cfg.mode, &service)?;
    for (ip, port) in service.frontends(cfg.underlay_ip) {
        check_frontend(
            i,
            cfg.mode,
            cfg.underlay_ip,
            &service,
            (ip, port, service.protocol),
        )?;
        // Another Service's health check listens there (a Service with a health check of
        // its own goes through the whole-file check).
        if ip == cfg.underlay_ip
            && service.protocol == Protocol::Tcp
            && cfg
                .services
                .iter()
                .any(|o| o.name != service.name && o.health_check_node_port == Some(port))
        {
            return Err(invalid(
                format!("services[{i}]"),
                format!("{ip}:{port}/tcp is the health check port of another Service"),
            ));
        }
        if let Some(&other) = memo.frontends.get(&(ip, port, service.protocol))
            && Some(other) != replaces
        {
            return Err(taken(i, (ip, port, service.protocol)));
        }
    }
    Ok(OneService { service, replaces })
}

/// A frontend must not be the node's VXLAN port; an external address must not be the node's
/// own (the node's firewall guards only the NodePort range there: the kernel would answer the
/// clients' packets too, with resets, or take them on a port it listens on).
fn check_frontend(
    i: usize,
    mode: Mode,
    underlay_ip: Ipv4Addr,
    service: &Service,
    f: Frontend,
) -> Result<(), ConfigError> {
    if let Mode::Tunnel { dst_port, .. } = mode
        && f == (underlay_ip, dst_port, Protocol::Udp)
    {
        return Err(invalid(
            format!("services[{i}]"),
            format!("{}:{}/udp is the VXLAN port", f.0, f.1),
        ));
    }
    if service.external_ip == Some(underlay_ip) {
        return Err(invalid(
            format!("services[{i}].external_ip"),
            format!(
                "{underlay_ip} is node.underlay_ip itself: use a NodePort (type = \"NodePort\") to serve on the node's address"
            ),
        ));
    }
    Ok(())
}

fn taken(i: usize, (ip, port, protocol): Frontend) -> ConfigError {
    invalid(
        format!("services[{i}]"),
        format!(
            "{ip}:{port}/{} is already a frontend of another Service",
            protocol.as_str()
        ),
    )
}

/// [`validate`], reusing (and then replacing) `memo`.
pub fn validate_with(raw: &RawConfig, memo: &mut ServiceMemo) -> Result<NodeConfig, ConfigError> {
    let n = &raw.node;
    if n.name.trim().is_empty() {
        return Err(invalid("node.name", "must not be empty"));
    }
    let bridge = ifname("node.bridge", n.bridge.as_deref().unwrap_or("br-int"))?;
    let underlay_ip = ipv4("node.underlay_ip", &n.underlay_ip)?;
    let pod_cidr = cidr("node.pod_cidr", &n.pod_cidr)?;
    if pod_cidr.len > 30 {
        return Err(invalid("node.pod_cidr", "must be /30 or larger"));
    }
    let gateway_ip = ipv4("node.gateway_ip", &n.gateway_ip)?;
    if !pod_cidr.contains(gateway_ip) {
        return Err(invalid(
            "node.gateway_ip",
            format!("{gateway_ip} is outside node.pod_cidr {pod_cidr}"),
        ));
    }
    let gateway_mac = mac("node.gateway_mac", &n.gateway_mac)?;
    let service_cidr = cidr(
        "node.service_cidr",
        n.service_cidr.as_deref().unwrap_or("10.247.0.0/16"),
    )?;
    if service_cidr.overlaps(pod_cidr) {
        return Err(invalid(
            "node.service_cidr",
            format!("{service_cidr} overlaps node.pod_cidr {pod_cidr}"),
        ));
    }
    let ct_zone = n.ct_zone.unwrap_or(1);
    if ct_zone == u16::MAX {
        return Err(invalid(
            "node.ct_zone",
            "must be below 65535 (the next zone holds hairpin connections)",
        ));
    }
    let underlay_interface = n
        .underlay_interface
        .as_deref()
        .map(|s| ifname("node.underlay_interface", s))
        .transpose()?;
    let underlay_mac = n
        .underlay_mac
        .as_deref()
        .map(|s| mac("node.underlay_mac", s))
        .transpose()?;

    let mode = match n.mode.as_str() {
        "tunnel" => {
            let t = raw.tunnel.as_ref().ok_or_else(|| {
                invalid("tunnel", "mode \"tunnel\" needs a [tunnel] table with vni")
            })?;
            if t.vni == 0 || t.vni >= 1 << 24 {
                return Err(invalid(
                    "tunnel.vni",
                    format!("{} is not a VNI 1..16777215", t.vni),
                ));
            }
            let dst_port = t.dst_port.unwrap_or(4789);
            if dst_port == 0 {
                return Err(invalid("tunnel.dst_port", "must not be 0"));
            }
            Mode::Tunnel {
                vni: t.vni,
                dst_port,
            }
        }
        "route" => {
            if underlay_interface.is_none() {
                return Err(invalid(
                    "node.underlay_interface",
                    "mode \"route\" needs the underlay interface (the uplink port)",
                ));
            }
            if raw.tunnel.is_some() {
                return Err(invalid("tunnel", "only allowed with mode \"tunnel\""));
            }
            Mode::Route
        }
        "eni" => {
            if underlay_interface.is_none() {
                return Err(invalid(
                    "node.underlay_interface",
                    "mode \"eni\" needs the underlay interface (the trunk carrying the pods' VLANs)",
                ));
            }
            if raw.tunnel.is_some() {
                return Err(invalid("tunnel", "only allowed with mode \"tunnel\""));
            }
            if !raw.peers.is_empty() {
                return Err(invalid(
                    "peers",
                    "mode \"eni\" has no peers (the VPC routes between the pods' sub-ENIs)",
                ));
            }
            Mode::Eni
        }
        other => {
            return Err(invalid(
                "node.mode",
                format!("unknown mode '{other}' (expected \"tunnel\", \"route\" or \"eni\")"),
            ));
        }
    };
    let route = matches!(mode, Mode::Route);
    let eni = matches!(mode, Mode::Eni);
    if !eni && !raw.security_groups.is_empty() {
        return Err(invalid(
            "security_groups",
            "only used in mode \"eni\" (pods are sub-ENIs there)",
        ));
    }
    let security_groups = security_groups_of(&raw.security_groups)?;
    if underlay_mac.is_some() && underlay_interface.is_none() {
        return Err(invalid(
            "node.underlay_mac",
            "only used with node.underlay_interface (the uplink's source MAC)",
        ));
    }
    let uplink = underlay_interface.clone().map(|interface| Uplink {
        interface,
        mac: underlay_mac,
    });
    let underlay_gateway = n
        .underlay_gateway
        .as_deref()
        .map(|s| ipv4("node.underlay_gateway", s))
        .transpose()?;
    if let Some(gw) = underlay_gateway {
        if uplink.is_none() {
            return Err(invalid(
                "node.underlay_gateway",
                "only used with node.underlay_interface (the uplink's next hop)",
            ));
        }
        if gw == underlay_ip {
            return Err(invalid(
                "node.underlay_gateway",
                format!("{gw} is node.underlay_ip itself"),
            ));
        }
    }
    // Frames for a peer without an underlay MAC go to the underlay's router.
    let next_hop_known = underlay_gateway.is_some()
        || raw
            .egress
            .as_ref()
            .is_some_and(|e| e.next_hop_mac.is_some());

    let mut peers = Vec::new();
    let mut peer_names = HashSet::new();
    let mut cidrs = vec![("node.pod_cidr".to_string(), pod_cidr)];
    for (i, p) in raw.peers.iter().enumerate() {
        let k = |f: &str| format!("peers[{i}].{f}");
        if p.name.trim().is_empty() {
            return Err(invalid(k("name"), "must not be empty"));
        }
        if p.name == n.name || !peer_names.insert(p.name.clone()) {
            return Err(invalid(k("name"), format!("'{}' is used twice", p.name)));
        }
        let ip = ipv4(&k("underlay_ip"), &p.underlay_ip)?;
        if ip == underlay_ip || peers.iter().any(|q: &Peer| q.underlay_ip == ip) {
            return Err(invalid(k("underlay_ip"), format!("{ip} is used twice")));
        }
        let c = cidr(&k("pod_cidr"), &p.pod_cidr)?;
        if let Some((other, _)) = cidrs.iter().find(|(_, o)| o.overlaps(c)) {
            return Err(invalid(k("pod_cidr"), format!("{c} overlaps {other}")));
        }
        if c.overlaps(service_cidr) {
            return Err(invalid(
                k("pod_cidr"),
                format!("{c} overlaps node.service_cidr"),
            ));
        }
        cidrs.push((k("pod_cidr"), c));
        let m = p
            .underlay_mac
            .as_deref()
            .map(|s| mac(&k("underlay_mac"), s))
            .transpose()?;
        if !route && m.is_some() {
            return Err(invalid(
                k("underlay_mac"),
                "only used in mode \"route\" (in tunnel mode the node's kernel addresses the VXLAN \
                 datagrams to underlay_ip)",
            ));
        }
        if route && m.is_none() && !next_hop_known {
            return Err(invalid(
                k("underlay_mac"),
                "mode \"route\" needs each peer's underlay MAC (frames go to it directly), \
                 or a next hop to route through (node.underlay_gateway or egress.next_hop_mac)",
            ));
        }
        let inner_mac = p
            .inner_mac
            .as_deref()
            .map(|s| mac(&k("inner_mac"), s))
            .transpose()?;
        if route && inner_mac.is_some() {
            return Err(invalid(k("inner_mac"), "only used in mode \"tunnel\""));
        }
        peers.push(Peer {
            name: p.name.clone(),
            underlay_ip: ip,
            pod_cidr: c,
            underlay_mac: m,
            inner_mac,
        });
    }

    let net = PodNet {
        pod_cidr,
        gateway_ip,
        gateway_mac,
        bridge: &bridge,
        uplink: &uplink,
        eni,
        groups: &security_groups,
        underlay_ip,
    };
    let mut pods = pods_of(&raw.pods, &net)?;

    let mut services: Vec<Arc<Service>> = Vec::with_capacity(raw.services.len());
    let mut frontends: HashMap<Frontend, usize> = HashMap::with_capacity(raw.services.len());
    let mut service_names: HashSet<&str> = HashSet::with_capacity(raw.services.len());
    if memo.cidr != Some(service_cidr) {
        memo.services.clear();
    }
    // (raw, validated, position): new entries of the memo, and positions of reused ones.
    let mut validated: Vec<(Arc<RawService>, Arc<Service>, usize)> = Vec::new();
    let mut moved: Vec<(&str, usize)> = Vec::new();
    for (i, s) in raw.services.iter().enumerate() {
        let svc = match memo.services.get(&s.name) {
            Some(m) if Arc::ptr_eq(&m.raw, s) || *m.raw == **s => {
                if m.position != i {
                    moved.push((&s.name, i));
                }
                m.service.clone()
            }
            _ => {
                let svc = Arc::new(service(i, s, service_cidr)?);
                validated.push((s.clone(), svc.clone(), i));
                svc
            }
        };
        check_mode(i, mode, &svc)?;
        if !service_names.insert(s.name.as_str()) {
            return Err(invalid(
                format!("services[{i}].name"),
                format!("'{}' is used twice", svc.name),
            ));
        }
        for (ip, port) in svc.frontends(underlay_ip) {
            let f = (ip, port, svc.protocol);
            check_frontend(i, mode, underlay_ip, &svc, f)?;
            if frontends.insert(f, i).is_some() {
                return Err(taken(i, f));
            }
        }
        services.push(svc);
    }
    // Health-check ports are TCP listeners on underlay_ip: one Service each, and not a
    // frontend the switch answers itself.
    let mut health_ports = HashSet::new();
    for (i, svc) in services.iter().enumerate() {
        let Some(hc) = svc.health_check_node_port else {
            continue;
        };
        if !health_ports.insert(hc) {
            return Err(invalid(
                format!("services[{i}].health_check_node_port"),
                format!("{hc} is the health check port of another Service"),
            ));
        }
        if frontends.contains_key(&(underlay_ip, hc, Protocol::Tcp)) {
            return Err(invalid(
                format!("services[{i}].health_check_node_port"),
                format!("{underlay_ip}:{hc}/tcp is a Service frontend"),
            ));
        }
    }

    let egress = match &raw.egress {
        None => Egress {
            snat: false,
            next_hop_mac: None,
            no_snat_cidrs: Vec::new(),
        },
        Some(e) => {
            let next_hop_mac = e
                .next_hop_mac
                .as_deref()
                .map(|s| mac("egress.next_hop_mac", s))
                .transpose()?;
            if next_hop_mac.is_some() && uplink.is_none() {
                return Err(invalid(
                    "egress.next_hop_mac",
                    "only used with node.underlay_interface (the uplink's next hop)",
                ));
            }
            if e.snat && uplink.is_none() {
                return Err(invalid(
                    "egress.snat",
                    "masquerading needs node.underlay_interface (traffic leaves through the uplink)",
                ));
            }
            if e.snat && next_hop_mac.is_none() && underlay_gateway.is_none() {
                return Err(invalid(
                    "egress.next_hop_mac",
                    "egress.snat needs the underlay's next hop: its MAC here, or node.underlay_gateway",
                ));
            }
            let no_snat_cidrs = e
                .no_snat_cidrs
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, s)| cidr(&format!("egress.no_snat_cidrs[{j}]"), s))
                .collect::<Result<Vec<_>, _>>()?;
            if !no_snat_cidrs.is_empty() {
                if !route && !eni {
                    return Err(invalid(
                        "egress.no_snat_cidrs",
                        "only used in modes \"route\" and \"eni\" (where the network routes pod addresses)",
                    ));
                }
                if next_hop_mac.is_none() && underlay_gateway.is_none() {
                    return Err(invalid(
                        "egress.no_snat_cidrs",
                        "needs the underlay's next hop: egress.next_hop_mac or node.underlay_gateway",
                    ));
                }
            }
            Egress {
                snat: e.snat,
                next_hop_mac,
                no_snat_cidrs,
            }
        }
    };

    let host = host_port(n, &net, &pods)?;
    add_host_port(&mut pods, &host);

    // The memo keeps what this call validated and forgets Services no longer there.
    memo.cidr = Some(service_cidr);
    for (name, position) in moved {
        if let Some(m) = memo.services.get_mut(name) {
            m.position = position;
        }
    }
    for (raw, service, position) in validated {
        let memoized = Memoized {
            raw,
            service,
            position,
        };
        memo.services.insert(memoized.raw.name.clone(), memoized);
    }
    if memo.services.len() > raw.services.len() {
        memo.services
            .retain(|name, _| service_names.contains(name.as_str()));
    }
    memo.frontends = frontends;
    Ok(NodeConfig {
        name: n.name.clone(),
        bridge,
        underlay_ip,
        uplink,
        underlay_gateway,
        pod_cidr,
        gateway_ip,
        gateway_mac,
        service_cidr,
        ct_zone,
        mode,
        peers,
        pods,
        services,
        egress,
        host,
        security_groups,
        per_pod_conn_limit: raw
            .conntrack
            .as_ref()
            .and_then(|c| c.per_pod_limit)
            .unwrap_or(0),
    })
}

/// Mode eni: a LoadBalancer's load balancer sends straight to the pods (`passthrough =
/// true`); NodePort and DNAT frontends serve outside clients from any node's pods
/// (`external_traffic_policy = "cluster"` only: the pod subnet is shared by the nodes, so
/// "this node's backends" cannot be told from the addresses).
fn check_mode(i: usize, mode: Mode, svc: &Service) -> Result<(), ConfigError> {
    let eni = mode == Mode::Eni;
    if svc.passthrough && !eni {
        return Err(invalid(
            format!("services[{i}].passthrough"),
            "only used in mode \"eni\" (where the VPC routes the load balancer's traffic to the pods)",
        ));
    }
    if eni {
        if svc.kind != ServiceKind::ClusterIp && svc.external_traffic_policy == TrafficPolicy::Local
        {
            return Err(invalid(
                format!("services[{i}].external_traffic_policy"),
                "mode \"eni\" supports only \"cluster\" (outside clients are source-NATed to the node address; the pod subnet is shared by the nodes)",
            ));
        }
        let problem = match svc.kind {
            ServiceKind::LoadBalancer if !svc.passthrough || svc.node_port.is_some() => Some(
                "mode \"eni\": a LoadBalancer needs passthrough = true and no node_port (the load balancer sends straight to the pod addresses)",
            ),
            _ => None,
        };
        if let Some(p) = problem {
            return Err(invalid(format!("services[{i}].type"), p));
        }
    }
    Ok(())
}

/// The `[[security_groups]]` table: names unique, rules well formed, remote groups known.
fn security_groups_of(raw: &[RawSecurityGroup]) -> Result<Vec<SecurityGroup>, ConfigError> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, g) in raw.iter().enumerate() {
        if g.name.trim().is_empty() {
            return Err(invalid(
                format!("security_groups[{i}].name"),
                "must not be empty",
            ));
        }
        if names.insert(g.name.as_str(), i).is_some() {
            return Err(invalid(
                format!("security_groups[{i}].name"),
                format!("'{}' is used twice", g.name),
            ));
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, g) in raw.iter().enumerate() {
        let mut rules = Vec::with_capacity(g.rules.len());
        for (j, r) in g.rules.iter().enumerate() {
            let k = |f: &str| format!("security_groups[{i}].rules[{j}].{f}");
            let direction = match r.direction.as_str() {
                "ingress" => Direction::Ingress,
                "egress" => Direction::Egress,
                other => {
                    return Err(invalid(
                        k("direction"),
                        format!("unknown direction '{other}' (expected \"ingress\" or \"egress\")"),
                    ));
                }
            };
            let ports = match &r.ports {
                None => (1, 65535),
                Some(p) => port_range(&k("ports"), p)?,
            };
            let protocol = match r.protocol.as_deref().unwrap_or("any") {
                "tcp" => RuleProtocol::Tcp(ports.0, ports.1),
                "udp" => RuleProtocol::Udp(ports.0, ports.1),
                "icmp" => RuleProtocol::Icmp,
                "any" => RuleProtocol::Any,
                other => {
                    return Err(invalid(
                        k("protocol"),
                        format!("unknown protocol '{other}' (expected tcp, udp, icmp or any)"),
                    ));
                }
            };
            if r.ports.is_some() && matches!(protocol, RuleProtocol::Any | RuleProtocol::Icmp) {
                return Err(invalid(k("ports"), "only used with protocol tcp or udp"));
            }
            let remote = match (&r.remote_cidr, &r.remote_group) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        k("remote_group"),
                        "give remote_cidr or remote_group, not both",
                    ));
                }
                (Some(c), None) => Remote::Cidr(cidr(&k("remote_cidr"), c)?),
                (None, Some(name)) => {
                    Remote::Group(*names.get(name.as_str()).ok_or_else(|| {
                        invalid(
                            k("remote_group"),
                            format!("no security group named '{name}'"),
                        )
                    })?)
                }
                (None, None) => Remote::Cidr(Cidr {
                    addr: Ipv4Addr::UNSPECIFIED,
                    len: 0,
                }),
            };
            let rule = SecurityRule {
                direction,
                protocol,
                remote,
            };
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        // A rule's conjunction id keeps 12 bits for its place in the group.
        if rules.len() > super::eni::MAX_RULES_PER_GROUP {
            return Err(invalid(
                format!("security_groups[{i}].rules"),
                format!("{} distinct rules: at most {} per group", rules.len(), 4095),
            ));
        }
        let members = g
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| ipv4(&format!("security_groups[{i}].members[{j}]"), m))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(SecurityGroup {
            name: g.name.clone(),
            rules,
            members,
        });
    }
    Ok(out)
}

/// `N` or `LO-HI`, 1..65535.
fn port_range(key: &str, s: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        invalid(
            key,
            format!("'{s}' is not a port or a range LO-HI within 1..65535"),
        )
    };
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>(), b.trim().parse::<u16>()),
        None => (s.trim().parse::<u16>(), s.trim().parse::<u16>()),
    };
    match (lo, hi) {
        (Ok(lo), Ok(hi)) if lo >= 1 && lo <= hi => Ok((lo, hi)),
        _ => Err(bad()),
    }
}

/// What a pod is checked against: the node's pod network and the ports it cannot take.
struct PodNet<'a> {
    pod_cidr: Cidr,
    gateway_ip: Ipv4Addr,
    gateway_mac: Mac,
    bridge: &'a str,
    uplink: &'a Option<Uplink>,
    eni: bool,
    groups: &'a [SecurityGroup],
    underlay_ip: Ipv4Addr,
}

/// The pods of a node, each checked on its own and against the others.
fn pods_of(raw_pods: &[RawPod], net: &PodNet<'_>) -> Result<Vec<Pod>, ConfigError> {
    let PodNet {
        pod_cidr,
        gateway_ip,
        gateway_mac,
        bridge,
        uplink,
        eni,
        groups,
        ..
    } = *net;
    let mut pods: Vec<Pod> = Vec::new();
    for (i, p) in raw_pods.iter().enumerate() {
        let k = |f: &str| format!("pods[{i}].{f}");
        let port = ifname(&k("port"), &p.port)?;
        if pods.iter().any(|q| q.port == port)
            || uplink.as_ref().is_some_and(|u| u.interface == port)
            || port == bridge
        {
            return Err(invalid(k("port"), format!("'{port}' is used twice")));
        }
        let kind = match p.kind.as_deref().unwrap_or("afpacket") {
            "afpacket" => PodPortKind::AfPacket,
            "tap" => PodPortKind::Tap,
            other => {
                return Err(invalid(
                    k("type"),
                    format!("unknown pod port type '{other}' (expected \"afpacket\" or \"tap\")"),
                ));
            }
        };
        let ip = ipv4(&k("ip"), &p.ip)?;
        if !pod_cidr.contains(ip) {
            return Err(invalid(
                k("ip"),
                format!("{ip} is outside node.pod_cidr {pod_cidr}"),
            ));
        }
        let bcast = Ipv4Addr::from(u32::from(pod_cidr.addr) | !pod_cidr.mask());
        if ip == gateway_ip || ip == pod_cidr.addr || ip == bcast {
            return Err(invalid(
                k("ip"),
                format!("{ip} is the gateway, network or broadcast address"),
            ));
        }
        if pods.iter().any(|q| q.ip == ip) {
            return Err(invalid(k("ip"), format!("{ip} is used by two pods")));
        }
        let m = mac(&k("mac"), &p.mac)?;
        if m == gateway_mac || pods.iter().any(|q| q.mac == m) {
            return Err(invalid(k("mac"), format!("{m} is used twice")));
        }
        if let Some(of) = p.ofport {
            if !(1..=999).contains(&of) {
                return Err(invalid(
                    k("ofport"),
                    format!("{of} is outside 1..999 (1000 and up are the agent's)"),
                ));
            }
            if pods.iter().any(|q| q.ofport == Some(of)) {
                return Err(invalid(k("ofport"), format!("{of} is used twice")));
            }
        }
        let allow_from = match &p.allow_from {
            None => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(j, s)| cidr(&format!("pods[{i}].allow_from[{j}]"), s))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        if eni && allow_from.is_some() {
            return Err(invalid(
                k("allow_from"),
                "mode \"eni\" filters with security_groups",
            ));
        }
        let only_eni = |key: &str, set: bool| {
            if set && !eni {
                Err(invalid(k(key), "only used in mode \"eni\""))
            } else {
                Ok(())
            }
        };
        only_eni("vlan", p.vlan.is_some())?;
        only_eni("security_groups", p.security_groups.is_some())?;
        only_eni("eip", p.eip.is_some())?;
        let vlan = match p.vlan {
            None if eni => {
                return Err(invalid(
                    k("vlan"),
                    "mode \"eni\" needs the pod's sub-ENI VLAN id (1..4094)",
                ));
            }
            Some(v) if !(1..=4094).contains(&v) => {
                return Err(invalid(k("vlan"), format!("{v} is outside 1..4094")));
            }
            Some(v) if pods.iter().any(|q| q.vlan == Some(v)) => {
                return Err(invalid(k("vlan"), format!("{v} is used by two pods")));
            }
            v => v,
        };
        let mut security_groups = Vec::new();
        for (j, name) in p.security_groups.iter().flatten().enumerate() {
            let g = groups.iter().position(|g| &g.name == name).ok_or_else(|| {
                invalid(
                    format!("pods[{i}].security_groups[{j}]"),
                    format!("no security group named '{name}'"),
                )
            })?;
            if !security_groups.contains(&g) {
                security_groups.push(g);
            }
        }
        security_groups.sort_unstable();
        let eip = p.eip.as_deref().map(|e| ipv4(&k("eip"), e)).transpose()?;
        if let Some(e) = eip {
            if pod_cidr.contains(e) {
                return Err(invalid(
                    k("eip"),
                    format!("{e} is inside node.pod_cidr {pod_cidr} (an EIP is a public address)"),
                ));
            }
            if pods.iter().any(|q| q.eip == Some(e)) {
                return Err(invalid(k("eip"), format!("{e} is bound to two pods")));
            }
        }
        pods.push(Pod {
            name: p.name.clone().unwrap_or_else(|| port.clone()),
            port,
            kind,
            ip,
            mac: m,
            ofport: p.ofport,
            allow_from,
            vlan,
            security_groups,
            eip,
            conntrack_limit: p.conntrack_limit,
        });
    }
    Ok(pods)
}

/// The host port takes part in the pipeline as one more (TAP) pod.
fn add_host_port(pods: &mut Vec<Pod>, host: &Option<HostPort>) {
    if let Some(h) = host {
        pods.push(Pod {
            name: "host".into(),
            port: h.interface.clone(),
            kind: PodPortKind::Tap,
            ip: h.ip,
            mac: h.mac,
            ofport: Some(super::compile::HOST_OFPORT),
            allow_from: None,
            vlan: None,
            security_groups: Vec::new(),
            eip: None,
            conntrack_limit: None,
        });
    }
}

/// The pods of `cfg`'s node (validated before) when only its pods change: what
/// [`validate_with`] checks for them, host port included, without the Services.
pub fn validate_pods(
    node: &RawNode,
    raw_pods: &[RawPod],
    cfg: &NodeConfig,
) -> Result<Vec<Pod>, ConfigError> {
    let net = PodNet {
        pod_cidr: cfg.pod_cidr,
        gateway_ip: cfg.gateway_ip,
        gateway_mac: cfg.gateway_mac,
        bridge: &cfg.bridge,
        uplink: &cfg.uplink,
        eni: cfg.mode == Mode::Eni,
        groups: &cfg.security_groups,
        underlay_ip: cfg.underlay_ip,
    };
    let mut pods = pods_of(raw_pods, &net)?;
    let host = host_port(node, &net, &pods)?;
    add_host_port(&mut pods, &host);
    Ok(pods)
}

/// The host port (on unless `node.host_port = false`): its interface, address and MAC.
fn host_port(n: &RawNode, net: &PodNet<'_>, pods: &[Pod]) -> Result<Option<HostPort>, ConfigError> {
    let PodNet {
        pod_cidr,
        gateway_ip,
        gateway_mac,
        bridge,
        uplink,
        eni,
        ..
    } = *net;
    if eni && n.host_ip.is_some() {
        // The node reaches its pods through the VPC (node address → pod address), as any
        // VPC host does; the host port carries only its connections to Services, from the
        // node's own address.
        return Err(invalid(
            "node.host_ip",
            "mode \"eni\": the host port uses node.underlay_ip (it carries the node's connections to Services only)",
        ));
    }
    if n.host_port == Some(false) {
        for (key, set) in [
            ("node.host_interface", n.host_interface.is_some()),
            ("node.host_ip", n.host_ip.is_some()),
        ] {
            if set {
                return Err(invalid(key, "set, but node.host_port = false"));
            }
        }
        return Ok(None);
    }
    let interface = ifname(
        "node.host_interface",
        n.host_interface.as_deref().unwrap_or("vswhost0"),
    )?;
    if pods.iter().any(|p| p.port == interface)
        || uplink.as_ref().is_some_and(|u| u.interface == interface)
        || interface == bridge
    {
        return Err(invalid(
            "node.host_interface",
            format!("'{interface}' is already a pod port, the uplink or the bridge"),
        ));
    }
    let bcast = u32::from(pod_cidr.addr) | !pod_cidr.mask();
    if eni {
        let o = net.underlay_ip.octets();
        let mac = Mac([0x0e, 0x76, 0x73, o[1], o[2], o[3]]);
        return Ok(Some(HostPort {
            interface,
            ip: net.underlay_ip,
            mac,
        }));
    }
    let ip = match &n.host_ip {
        Some(s) => ipv4("node.host_ip", s)?,
        // The last usable address of the pod CIDR (the gateway usually takes the first).
        None => Ipv4Addr::from(bcast - 1),
    };
    if !pod_cidr.contains(ip) || ip == gateway_ip || ip == pod_cidr.addr || u32::from(ip) == bcast {
        return Err(invalid(
            "node.host_ip",
            format!(
                "{ip} must be a free address of node.pod_cidr {pod_cidr} (not the gateway, network or broadcast)"
            ),
        ));
    }
    if let Some(p) = pods.iter().find(|p| p.ip == ip) {
        return Err(invalid(
            "node.host_ip",
            format!(
                "{ip} is pod {}'s address (set node.host_ip to a free one)",
                p.name
            ),
        ));
    }
    // A locally administered MAC of its own ("vs" + the address's low bytes).
    let o = ip.octets();
    let mac = Mac([0x0e, 0x76, 0x73, o[1], o[2], o[3]]);
    if mac == gateway_mac || pods.iter().any(|p| p.mac == mac) {
        return Err(invalid(
            "node.host_ip",
            format!("the host port's MAC {mac} is taken by a pod or the gateway"),
        ));
    }
    Ok(Some(HostPort { interface, ip, mac }))
}

fn service(i: usize, s: &RawService, service_cidr: Cidr) -> Result<Service, ConfigError> {
    let k = |f: &str| format!("services[{i}].{f}");
    if s.name.trim().is_empty() {
        return Err(invalid(k("name"), "must not be empty"));
    }
    let kind = match s.kind.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" => ServiceKind::ClusterIp,
        "NodePort" => ServiceKind::NodePort,
        "LoadBalancer" => ServiceKind::LoadBalancer,
        "DNAT" => ServiceKind::Dnat,
        other => {
            return Err(invalid(
                k("type"),
                format!(
                    "unknown Service type '{other}' (expected ClusterIP, NodePort, LoadBalancer or DNAT)"
                ),
            ));
        }
    };
    let protocol = match s.protocol.as_deref().unwrap_or("tcp") {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(invalid(
                k("protocol"),
                format!("unknown protocol '{other}' (expected \"tcp\" or \"udp\")"),
            ));
        }
    };
    if s.port == 0 {
        return Err(invalid(k("port"), "must be 1..65535"));
    }
    let cluster_ip = s
        .cluster_ip
        .as_deref()
        .map(|v| ipv4(&k("cluster_ip"), v))
        .transpose()?;
    if let Some(ip) = cluster_ip
        && !service_cidr.contains(ip)
    {
        return Err(invalid(
            k("cluster_ip"),
            format!("{ip} is outside node.service_cidr {service_cidr}"),
        ));
    }
    let external_ip = s
        .external_ip
        .as_deref()
        .map(|v| ipv4(&k("external_ip"), v))
        .transpose()?;
    if let Some(np) = s.node_port
        && !NODE_PORT_RANGE.contains(&np)
    {
        return Err(invalid(
            k("node_port"),
            format!("{np} is outside the NodePort range 30000..32767"),
        ));
    }
    match kind {
        ServiceKind::ClusterIp if cluster_ip.is_none() => {
            return Err(invalid(
                k("cluster_ip"),
                "a ClusterIP Service needs cluster_ip",
            ));
        }
        ServiceKind::ClusterIp if s.node_port.is_some() || external_ip.is_some() => {
            return Err(invalid(
                k("type"),
                "a ClusterIP Service takes no node_port or external_ip",
            ));
        }
        ServiceKind::NodePort if s.node_port.is_none() => {
            return Err(invalid(
                k("node_port"),
                "a NodePort Service needs node_port",
            ));
        }
        ServiceKind::LoadBalancer | ServiceKind::Dnat if external_ip.is_none() => {
            return Err(invalid(
                k("external_ip"),
                "LoadBalancer and DNAT Services need external_ip",
            ));
        }
        _ => {}
    }
    let target_port = s.target_port.unwrap_or(s.port);
    if target_port == 0 {
        return Err(invalid(k("target_port"), "must be 1..65535"));
    }
    if let Some(a) = s.session_affinity_seconds
        && !(1..=86400).contains(&a)
    {
        return Err(invalid(
            k("session_affinity_seconds"),
            format!("{a} is outside 1..86400"),
        ));
    }
    let external_traffic_policy = match s.external_traffic_policy.as_deref() {
        None | Some("cluster") => TrafficPolicy::Cluster,
        Some("local") => TrafficPolicy::Local,
        Some(other) => {
            return Err(invalid(
                k("external_traffic_policy"),
                format!("unknown policy '{other}' (expected \"cluster\" or \"local\")"),
            ));
        }
    };
    if s.external_traffic_policy.is_some() && kind == ServiceKind::ClusterIp {
        return Err(invalid(
            k("external_traffic_policy"),
            "a ClusterIP Service has no outside clients (NodePort, LoadBalancer and DNAT only)",
        ));
    }
    if let Some(hc) = s.health_check_node_port {
        if external_traffic_policy != TrafficPolicy::Local || s.external_traffic_policy.is_none() {
            return Err(invalid(
                k("health_check_node_port"),
                "only a Service with external_traffic_policy = \"local\" has a health check",
            ));
        }
        if hc == 0 {
            return Err(invalid(k("health_check_node_port"), "must be 1..65535"));
        }
    }
    let passthrough = s.passthrough.unwrap_or(false);
    if passthrough && kind != ServiceKind::LoadBalancer {
        return Err(invalid(
            k("passthrough"),
            "only a LoadBalancer Service passes through",
        ));
    }
    let mut backends: Vec<Backend> = Vec::new();
    for (j, b) in s.backends.iter().enumerate() {
        let bk = |f: &str| format!("services[{i}].backends[{j}].{f}");
        let ip = ipv4(&bk("ip"), &b.ip)?;
        let port = b.port.unwrap_or(target_port);
        if port == 0 {
            return Err(invalid(bk("port"), "must be 1..65535"));
        }
        let weight = b.weight.unwrap_or(1);
        if weight == 0 {
            return Err(invalid(
                bk("weight"),
                "must be at least 1 (remove the backend to stop using it)",
            ));
        }
        if backends.iter().any(|o| o.ip == ip && o.port == port) {
            return Err(invalid(bk("ip"), format!("{ip}:{port} is listed twice")));
        }
        backends.push(Backend { ip, port, weight });
    }
    Ok(Service {
        name: s.name.clone(),
        kind,
        cluster_ip,
        node_port: s.node_port,
        external_ip,
        protocol,
        port: s.port,
        session_affinity_seconds: s.session_affinity_seconds,
        external_traffic_policy,
        health_check_node_port: s.health_check_node_port,
        passthrough,
        backends,
    })
}
