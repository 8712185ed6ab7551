//! The validated node configuration: typed addresses, defaults filled in, cross-checked.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 prefix with its host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len as u32)
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Peers' pod CIDRs over VXLAN (one flow-based tunnel port, `tun_dst` set per peer).
    Tunnel { vni: u32, dst_port: u16 },
    /// Peers' pod CIDRs straight onto the underlay through the AF_PACKET uplink port.
    Route,
    /// Cloud Native Network 2.0: pods are sub-ENIs (a VLAN each on the trunk uplink) with
    /// addresses of the VPC subnet (`pod_cidr`); the VPC routes between them.
    Eni,
}

/// The AF_PACKET port on the underlay interface: peers (route mode), outside clients of
/// NodePorts/external IPs and egress (both modes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub interface: String,
    /// Our own underlay MAC; `None` = read from the interface when applying.
    pub mac: Option<Mac>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPortKind {
    AfPacket,
    Tap,
}

impl PodPortKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPortKind::AfPacket => "afpacket",
            PodPortKind::Tap => "tap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
    pub underlay_mac: Option<Mac>,
    /// Tunnel mode: inner destination MAC for this peer (a kernel VXLAN device's MAC); our
    /// own nodes route by IP and ignore it.
    pub inner_mac: Option<Mac>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub port: String,
    pub kind: PodPortKind,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub ofport: Option<u32>,
    /// `None`: every source may open connections to the pod.
    pub allow_from: Option<Vec<Cidr>>,
    /// Mode eni: the sub-ENI's VLAN id on the uplink (the host port has none).
    pub vlan: Option<u16>,
    /// Mode eni: indexes into `NodeConfig::security_groups`, sorted, no duplicates.
    pub security_groups: Vec<usize>,
    /// Mode eni: the elastic IP mapped 1:1 to the pod.
    pub eip: Option<Ipv4Addr>,
    /// Most connections the pod may open (its own `conntrack_limit`; `None`: the node's
    /// `conntrack.per_pod_limit`).
    pub conntrack_limit: Option<u32>,
}

/// Which way a security-group rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

/// What a security-group rule matches above IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleProtocol {
    Any,
    Tcp(u16, u16),
    Udp(u16, u16),
    Icmp,
}

/// The far side of a rule: a prefix, or the members of a group (an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Remote {
    Cidr(Cidr),
    Group(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityRule {
    pub direction: Direction,
    pub protocol: RuleProtocol,
    pub remote: Remote,
}

/// A named group of stateful rules: ingress denied unless a rule allows it; egress allowed
/// unless the group has egress rules (then only what they allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub name: String,
    pub rules: Vec<SecurityRule>,
    /// Members on other nodes (this node's members are the pods that list the group).
    pub members: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    ClusterIp,
    NodePort,
    LoadBalancer,
    Dnat,
}

/// Which backends serve clients from outside the cluster (Kubernetes'
/// `externalTrafficPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// Any backend, on any node; the client is source-NATed to this node's gateway address
    /// so that replies come back through this node.
    #[default]
    Cluster,
    /// This node's backends only; the backend sees the client's own address.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub kind: ServiceKind,
    pub cluster_ip: Option<Ipv4Addr>,
    pub node_port: Option<u16>,
    pub external_ip: Option<Ipv4Addr>,
    pub protocol: Protocol,
    pub port: u16,
    pub session_affinity_seconds: Option<u32>,
    pub external_traffic_policy: TrafficPolicy,
    /// Policy `local` only: the TCP port on `underlay_ip` where an HTTP health check tells
    /// external load balancers whether this node has backends of the Service
    /// (Kubernetes' `healthCheckNodePort`).
    pub health_check_node_port: Option<u16>,
    /// A LoadBalancer whose external load balancer sends to the pod addresses itself (mode
    /// eni): its `external_ip` is not a frontend here.
    pub passthrough: bool,
    pub backends: Vec<Backend>,
}

impl Service {
    /// Every (address, port) the Service answers on.
    pub fn frontends(&self, node_ip: Ipv4Addr) -> impl Iterator<Item = (Ipv4Addr, u16)> {
        [
            self.cluster_ip.map(|ip| (ip, self.port)),
            self.node_port.map(|np| (node_ip, np)),
            self.external_ip
                .filter(|_| !self.passthrough)
                .map(|ip| (ip, self.port)),
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    pub snat: bool,
    pub next_hop_mac: Option<Mac>,
    /// Destinations the network routes pod addresses back from (the VPC, peered networks):
    /// pods reach them with their own address, never masqueraded.
    pub no_snat_cidrs: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub bridge: String,
    pub underlay_ip: Ipv4Addr,
    /// The uplink port (required in route mode, optional in tunnel mode).
    pub uplink: Option<Uplink>,
    /// The underlay's router (its MAC resolved by ARP when `egress.next_hop_mac` is not
    /// given): next hop of egress, of replies to outside clients, and of peers listed
    /// without an underlay MAC (route mode: nodes in other subnets).
    pub underlay_gateway: Option<std::net::Ipv4Addr>,
    pub pod_cidr: Cidr,
    pub gateway_ip: Ipv4Addr,
    pub gateway_mac: Mac,
    pub service_cidr: Cidr,
    pub ct_zone: u16,
    pub mode: Mode,
    pub peers: Vec<Peer>,
    pub pods: Vec<Pod>,
    /// Shared with the validation memo and the compiler's: unchanged Services are not copied.
    pub services: Vec<std::sync::Arc<Service>>,
    pub egress: Egress,
    /// The node's own way into the pod network (also listed in `pods`, as the last one).
    pub host: Option<HostPort>,
    /// Mode eni: the security groups pods refer to (by index).
    pub security_groups: Vec<SecurityGroup>,
    /// `conntrack.per_pod_limit`: most connections a pod without a limit of its own may
    /// open (0: none).
    pub per_pod_conn_limit: u32,
}

/// The host port: a TAP the switch creates in the node's namespace, through which the node's
/// kernel reaches pods, Services and peers' pods, and pods reach the node. It is wired like a
/// pod (address `ip` in the pod CIDR, MAC `mac`), at ofport [`super::compile::HOST_OFPORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub interface: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

impl NodeConfig {
    /// The connection limits of the pods (host port left out), as (pod address, limit);
    /// pods whose limit is 0 are not limited.
    pub fn pod_conn_limits(&self) -> Vec<(Ipv4Addr, u32)> {
        let host = self.host.as_ref().map(|h| h.ip);
        self.pods
            .iter()
            .filter(|p| Some(p.ip) != host)
            .map(|p| (p.ip, p.conntrack_limit.unwrap_or(self.per_pod_conn_limit)))
            .filter(|&(_, limit)| limit > 0)
            .collect()
    }

    /// Whether the underlay has a next hop (configured MAC or a gateway to resolve).
    pub fn has_next_hop(&self) -> bool {
        self.egress.next_hop_mac.is_some() || self.underlay_gateway.is_some()
    }

    /// Destinations that stay inside the cluster (never masqueraded).
    pub fn cluster_cidrs(&self) -> Vec<Cidr> {
        let mut v = vec![self.pod_cidr, self.service_cidr];
        v.extend(self.peers.iter().map(|p| p.pod_cidr));
        v
    }
}
