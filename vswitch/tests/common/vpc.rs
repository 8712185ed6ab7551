//! Pieces of the VPC fabric tests (`e2e_vpc.rs`, `e2e_eni.rs`): fabric attachments, the
//! router's internet side, pods on veths, "who are you" servers and their clients, and the
//! nodes' `vswitchd --config`.

use std::path::Path;
use std::time::Duration;

use super::{Daemon, Netns, Spawned, ns_run, ns_sh, unique, wait_listening};

/// An outside client behind the router (in the internet namespace).
pub const OUTSIDE_CLIENT: &str = "198.51.100.10";
/// A public host behind the router (in the internet namespace).
pub const PUBLIC_HOST: &str = "203.0.113.10";
/// A host in the VPC's node subnet.
pub const VPC_HOST: &str = "192.168.0.50";
/// Servers everywhere answer "TAG PEER-ADDRESS" on this port.
pub const WHO_PORT: u16 = 8081;

/// A veth from `bridge` in the `fabric` namespace to `ns`'s `iface` with `mac`, offloads off.
pub fn attach(fabric: &str, bridge: &str, ns: &str, iface: &str, mac: &str) {
    let port = format!("p{}", &mac[12..].replace(':', ""));
    ns_sh(
        fabric,
        &format!(
            "ip link add {port} type veth peer name {iface} netns {ns} && \
             ip link set {port} master {bridge} up"
        ),
    );
    ns_sh(
        ns,
        &format!(
            "ip link set {iface} address {mac} && \
             (ethtool -K {iface} tso off gso off gro off >/dev/null 2>&1; true)"
        ),
    );
}

/// The internet behind `router`: a new namespace `TAG-inet` holding [`OUTSIDE_CLIENT`] and
/// [`PUBLIC_HOST`] on a /30 link (100.64.0.0/30) to the router, which routes both to it.
pub fn internet(router: &str, tag: &str) -> Netns {
    let internet = Netns::new(&unique(&format!("{tag}inet"))).expect("internet ns");
    ns_sh(
        router,
        &format!(
            "ip link add inet type veth peer name eth1 netns {i} && \
             ip addr add 100.64.0.1/30 dev inet && ip link set inet up && \
             ip route add {OUTSIDE_CLIENT}/32 via 100.64.0.2 && \
             ip route add {PUBLIC_HOST}/32 via 100.64.0.2",
            i = internet.name()
        ),
    );
    ns_sh(
        internet.name(),
        &format!(
            "ip addr add 100.64.0.2/30 dev eth1 && ip addr add {OUTSIDE_CLIENT}/32 dev eth1 && \
             ip addr add {PUBLIC_HOST}/32 dev eth1 && ip link set eth1 up && \
             ip route add default via 100.64.0.1"
        ),
    );
    internet
}

/// A pod on a veth: the node end `port` in `node`, `eth0` in a new namespace with `ip/32`, a
/// route to `gw` and the default route through it; `gw_mac`: a permanent neighbour entry for
/// the gateway (`None`: resolved by ARP). Offloads off.
pub fn veth_pod(
    node: &str,
    tag: &str,
    port: &str,
    ip: &str,
    mac: &str,
    gw: &str,
    gw_mac: Option<&str>,
) -> Netns {
    let ns = Netns::new(&unique(tag)).expect("pod ns");
    ns_sh(
        node,
        &format!(
            "ip link add {port} type veth peer name eth0 netns {pod} && \
             sysctl -qw net.ipv6.conf.{port}.disable_ipv6=1 && ip link set {port} up",
            pod = ns.name()
        ),
    );
    let neigh = gw_mac
        .map(|m| format!("ip neigh replace {gw} lladdr {m} dev eth0 nud permanent && "))
        .unwrap_or_default();
    ns_sh(
        ns.name(),
        &format!(
            "ip link set eth0 address {mac} && ip link set eth0 up && \
             ip addr add {ip}/32 dev eth0 && ip route add {gw} dev eth0 && \
             ip route add default via {gw} && {neigh}\
             (ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1; true)"
        ),
    );
    ns
}

/// A "who are you" server in `ns`: answers "TAG PEER-ADDRESS" on `port`, for `secs` at most.
pub fn who_server(ns: &str, tag: &str, port: u16, secs: u32) -> Spawned {
    let s = Spawned::start(
        ns,
        &format!("who-{tag}-{port}"),
        &[
            "timeout",
            &secs.to_string(),
            "socat",
            &format!("TCP-LISTEN:{port},fork,reuseaddr"),
            &format!("SYSTEM:echo {tag} $SOCAT_PEERADDR"),
        ],
    );
    wait_listening(ns, "tcp", port);
    s
}

/// One connection from `ns` (from source address `src`, if given) to `ip:port`: the who
/// server's answer, `None` when the connection failed (4 s at most).
pub fn who(ns: &str, src: Option<&str>, ip: &str, port: u16) -> Option<String> {
    let port = port.to_string();
    let mut args = vec!["timeout", "4", "nc", "-w", "2"];
    if let Some(s) = src {
        args.extend(["-s", s]);
    }
    args.extend([ip, &port]);
    let r = ns_run(ns, &args, Duration::from_secs(6));
    let line = r.stdout.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// [`who`], tried up to three times (the first packets may wait for ARP on a loaded machine).
pub fn who_retry(ns: &str, src: Option<&str>, ip: &str, port: u16) -> Option<String> {
    (0..3).find_map(|_| who(ns, src, ip, port))
}

/// Writes node `n`'s file (`config(n)`, 1-based) into `dir` and starts `vswitchd --config`
/// with it in `nodes[n - 1]`, for every node.
///
/// Node 2 runs two forwarding threads (the others one), so its uplink is received by both
/// (the agent gives it `options:n_rxq=2`) while every test's traffic crosses it.
pub fn start_nodes(nodes: &[Netns], dir: &Path, config: fn(usize) -> String) -> Vec<Daemon> {
    let mut daemons = Vec::new();
    for (i, ns) in nodes.iter().enumerate() {
        let path = dir.join(format!("node{}.toml", i + 1));
        std::fs::write(&path, config(i + 1)).expect("config");
        let mut args = vec!["--config", path.to_str().expect("utf-8 path")];
        if i == 1 {
            args.extend(["--threads", "2"]);
        }
        daemons.push(Daemon::start_with(
            ns.name(),
            &dir.join(format!("run{}", i + 1)),
            &args,
        ));
    }
    daemons
}
