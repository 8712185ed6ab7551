//! The node configuration file as written (TOML), before validation.
//!
//! Every address is kept as text here so that [`super::validate`] can name the key and the
//! problem when one is wrong; unknown keys are refused by serde (`deny_unknown_fields`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub node: RawNode,
    #[serde(default)]
    pub tunnel: Option<RawTunnel>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    #[serde(default)]
    pub pods: Vec<RawPod>,
    /// Shared: a configuration is copied for every run-time change, its Services are not.
    #[serde(default)]
    pub services: Vec<std::sync::Arc<RawService>>,
    #[serde(default)]
    pub egress: Option<RawEgress>,
    /// Mode `"eni"`: the security groups pods are bound to.
    #[serde(default)]
    pub security_groups: Vec<RawSecurityGroup>,
    #[serde(default)]
    pub conntrack: Option<RawConntrack>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityGroup {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<RawSecurityRule>,
    /// Addresses of the group's members on other nodes (this node's pods that list the group
    /// are members without being named here).
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityRule {
    pub direction: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub ports: Option<String>,
    #[serde(default)]
    pub remote_cidr: Option<String>,
    #[serde(default)]
    pub remote_group: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConntrack {
    /// Most connections one pod may open (0 or absent: no per-pod limit).
    #[serde(default)]
    pub per_pod_limit: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: String,
    #[serde(default)]
    pub bridge: Option<String>,
    pub underlay_ip: String,
    #[serde(default)]
    pub underlay_interface: Option<String>,
    #[serde(default)]
    pub underlay_mac: Option<String>,
    #[serde(default)]
    pub underlay_gateway: Option<String>,
    pub pod_cidr: String,
    pub gateway_ip: String,
    pub gateway_mac: String,
    pub mode: String,
    #[serde(default)]
    pub service_cidr: Option<String>,
    #[serde(default)]
    pub ct_zone: Option<u16>,
    #[serde(default)]
    pub host_port: Option<bool>,
    #[serde(default)]
    pub host_interface: Option<String>,
    #[serde(default)]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnel {
    pub vni: u32,
    #[serde(default)]
    pub dst_port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: String,
    pub underlay_ip: String,
    pub pod_cidr: String,
    #[serde(default)]
    pub underlay_mac: Option<String>,
    #[serde(default)]
    pub inner_mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPod {
    #[serde(default)]
    pub name: Option<String>,
    pub port: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub ip: String,
    pub mac: String,
    #[serde(default)]
    pub ofport: Option<u32>,
    #[serde(default)]
    pub allow_from: Option<Vec<String>>,
    /// Mode `"eni"`: the pod's sub-ENI VLAN id on the trunk uplink.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Mode `"eni"`: names of `[[security_groups]]` the pod is bound to.
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// Mode `"eni"`: an elastic IP mapped 1:1 to the pod.
    #[serde(default)]
    pub eip: Option<String>,
    #[serde(default)]
    pub conntrack_limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub cluster_ip: Option<String>,
    #[serde(default)]
    pub node_port: Option<u16>,
    #[serde(default)]
    pub external_ip: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<u16>,
    #[serde(default)]
    pub session_affinity_seconds: Option<u32>,
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    #[serde(default)]
    pub health_check_node_port: Option<u16>,
    /// LoadBalancer, mode `"eni"`: the external load balancer sends straight to the pod
    /// addresses (no frontend on this node for `external_ip`).
    #[serde(default)]
    pub passthrough: Option<bool>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub ip: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub weight: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    #[serde(default)]
    pub snat: bool,
    #[serde(default)]
    pub next_hop_mac: Option<String>,
    #[serde(default)]
    pub no_snat_cidrs: Option<Vec<String>>,
}
