//! Pieces of the node-agent cluster tests (`e2e_cluster.rs`, `restart_cluster.rs`): node
//! namespaces on one underlay bridge (192.168.0.0/24), the public host that is also the
//! underlay's router, and pods on veths behind their node's gateway 172.16.N.1.

use super::{Netns, ns_sh, unique};

/// The pods' gateway MAC on every node.
pub const GW_MAC: &str = "0a:58:0c:00:00:fe";
/// The underlay router / public host (192.168.0.1, [`PUBLIC_HOST`]).
pub const PUBLIC_MAC: &str = "02:00:cb:00:71:0a";
pub const PUBLIC_HOST: &str = "203.0.113.10";
/// An outside client (on the public host) of node 1's NodePorts and external IPs.
pub const OUTSIDE_CLIENT: &str = "198.51.100.10";

/// Node `n`'s underlay MAC (its address is 192.168.0.(10 + n)).
pub fn underlay_mac(n: usize) -> String {
    format!("02:00:c0:a8:00:{:02x}", 10 + n)
}

/// The underlay: namespace `unique(tag)` with bridge br0.
pub fn underlay(tag: &str) -> Netns {
    let underlay = Netns::new(&unique(tag)).expect("underlay ns");
    ns_sh(
        underlay.name(),
        "ip link add br0 type bridge && ip link set br0 up",
    );
    underlay
}

/// A veth from the underlay's bridge (port `u{index}`) to `eth1` of `ns`.
pub fn attach_underlay(underlay: &Netns, index: usize, ns: &str) {
    ns_sh(
        underlay.name(),
        &format!(
            "ip link add u{index} type veth peer name eth1 netns {ns} && \
             ip link set u{index} master br0 up"
        ),
    );
}

/// Node `n`: namespace `unique(tag)` whose `eth1` ([`underlay_mac`], 192.168.0.(10 + n)/24,
/// offloads off) is on the underlay.
pub fn underlay_node(underlay: &Netns, tag: &str, n: usize) -> Netns {
    let ns = Netns::new(&unique(tag)).expect("node ns");
    attach_underlay(underlay, n, ns.name());
    ns_sh(
        ns.name(),
        &format!(
            "ip link set lo up && ip link set eth1 address {mac} && \
             ip addr add 192.168.0.{ip}/24 dev eth1 && ip link set eth1 up && \
             (ethtool -K eth1 tso off gso off gro off >/dev/null 2>&1; true)",
            mac = underlay_mac(n),
            ip = 10 + n
        ),
    );
    ns
}

/// The underlay's router `unique(tag)`, which is also the public host [`PUBLIC_HOST`] and the
/// outside client [`OUTSIDE_CLIENT`]. It has no route to the pod CIDRs: it can only answer
/// pods whose traffic was masqueraded to a node address. It routes 198.18.0.0/24 (external
/// addresses: LoadBalancer, DNAT) to node 1.
pub fn public_host(underlay: &Netns, tag: &str) -> Netns {
    let ns = Netns::new(&unique(tag)).expect("public host ns");
    attach_underlay(underlay, 9, ns.name());
    ns_sh(
        ns.name(),
        &format!(
            "ip link set lo up && ip link set eth1 address {PUBLIC_MAC} && \
             ip addr add 192.168.0.1/24 dev eth1 && ip addr add {PUBLIC_HOST}/32 dev eth1 && \
             ip addr add {OUTSIDE_CLIENT}/32 dev eth1 && \
             ip link set eth1 up && ip route add 198.18.0.0/24 via 192.168.0.11 && \
             (ethtool -K eth1 tso off gso off gro off >/dev/null 2>&1; true)"
        ),
    );
    ns
}

/// A veth from `port` in `node` to `eth0` of `pod`; the node end up, without IPv6 (the node's
/// kernel must not talk on a switch port).
pub fn pod_veth(node: &str, port: &str, pod: &str) {
    ns_sh(
        node,
        &format!(
            "ip link add {port} type veth peer name eth0 netns {pod} && \
             sysctl -qw net.ipv6.conf.{port}.disable_ipv6=1 && ip link set {port} up"
        ),
    );
}

/// A pod's `eth0` behind node `node`'s gateway 172.16.`node`.1: `mac`, `mtu`, `ip`/32, the
/// gateway's route and the default route through it, offloads off. `static_gw`: a permanent
/// neighbour entry for the gateway ([`GW_MAC`]); otherwise the pod resolves it by ARP.
pub fn pod_eth0(pod: &str, node: usize, ip: &str, mac: &str, mtu: u32, static_gw: bool) {
    let neigh = if static_gw {
        format!("ip neigh replace 172.16.{node}.1 lladdr {GW_MAC} dev eth0 nud permanent && ")
    } else {
        String::new()
    };
    ns_sh(
        pod,
        &format!(
            "ip link set lo up && ip link set eth0 address {mac} && ip link set eth0 mtu {mtu} up && \
             ip addr add {ip}/32 dev eth0 && ip route add 172.16.{node}.1 dev eth0 && \
             ip route add default via 172.16.{node}.1 && {neigh}\
             (ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1; true)"
        ),
    );
}
