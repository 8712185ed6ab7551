//! The container network models on a VPC fabric: two subnets (10: 192.168.0.0/24 and
//! 20: 192.168.1.0/24, a Linux bridge each: the test kernel has no VLAN filtering), a router
//! namespace routes between them, to an "internet" namespace (an outside client 198.51.100.10 and a
//! public host 203.0.113.10) and, as the VPC's route table, each node's pod CIDR to that node.
//!
//! Route mode (`vpc_route_mode`): node 1 and node 2 share subnet 10, node 3 sits in subnet 20.
//! Checked with real kernel traffic: pods across nodes (node 1 ↔ node 2 directly by MAC, node
//! 1/2 ↔ node 3 through the router), an outside client and a VPC host reach pods directly and
//! the pods see their own addresses, a pod reaches the VPC host with its own address
//! (`egress.no_snat_cidrs`) and the public host masqueraded to its node's address, the
//! router's MAC resolved by ARP (`node.underlay_gateway`) on nodes 1 and 3. Root only.

mod common;

use std::time::Duration;

use common::vpc::*;
use common::*;

const GW_MAC: &str = "0a:58:0c:00:00:fe";
const ROUTER_MAC10: &str = "02:00:c0:a8:00:01";
const ROUTER_MAC20: &str = "02:00:c0:a8:01:01";
/// Route mode: a ClusterIP on each node whose only backend is that node's pod.
const SELF_VIP: &str = "10.247.0.11";

/// A node: its subnet's VLAN, underlay address and MAC.
struct NodeDef {
    vlan: u16,
    ip: &'static str,
    mac: &'static str,
    gw: &'static str,
}

const NODES: [NodeDef; 3] = [
    NodeDef {
        vlan: 10,
        ip: "192.168.0.11",
        mac: "02:00:c0:a8:00:0b",
        gw: "192.168.0.1",
    },
    NodeDef {
        vlan: 10,
        ip: "192.168.0.12",
        mac: "02:00:c0:a8:00:0c",
        gw: "192.168.0.1",
    },
    NodeDef {
        vlan: 20,
        ip: "192.168.1.13",
        mac: "02:00:c0:a8:01:0d",
        gw: "192.168.1.1",
    },
];

/// The VPC: the VLAN-aware bridge, the router, the internet and a VPC host.
struct Fabric {
    fabric: Netns,
    router: Netns,
    internet: Netns,
    vpc_host: Netns,
}

impl Fabric {
    fn new(tag: &str) -> Fabric {
        let fabric = Netns::new(&unique(&format!("{tag}fab"))).expect("fabric ns");
        let router = Netns::new(&unique(&format!("{tag}rtr"))).expect("router ns");
        let vpc_host = Netns::new(&unique(&format!("{tag}vpch"))).expect("vpc host ns");
        // One bridge per subnet: this kernel has neither VLAN filtering nor 802.1Q devices
        // (CONFIG_BRIDGE_VLAN_FILTERING, CONFIG_VLAN_8021Q), so the subnets are two segments.
        ns_sh(
            fabric.name(),
            &format!(
                "ip link add br10 type bridge && ip link set br10 up && \
                 ip link add br20 type bridge && ip link set br20 up && \
                 ip link add u10 type veth peer name v10 netns {r} && ip link set u10 master br10 up && \
                 ip link add u20 type veth peer name v20 netns {r} && ip link set u20 master br20 up",
                r = router.name()
            ),
        );
        ns_sh(
            router.name(),
            &format!(
                "sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv4.conf.all.send_redirects=0 && \
                 sysctl -qw net.ipv4.conf.default.send_redirects=0 && \
                 ip link set v10 address {ROUTER_MAC10} && ip link set v20 address {ROUTER_MAC20} && \
                 ip addr add 192.168.0.1/24 dev v10 && ip addr add 192.168.1.1/24 dev v20 && \
                 ip link set v10 up && ip link set v20 up && \
                 sysctl -qw net.ipv4.conf.v10.send_redirects=0 && \
                 sysctl -qw net.ipv4.conf.v20.send_redirects=0"
            ),
        );
        let internet = internet(router.name(), tag);
        let f = Fabric {
            fabric,
            router,
            internet,
            vpc_host,
        };
        f.attach(f.vpc_host.name(), "eth1", 10, "02:00:c0:a8:00:32");
        ns_sh(
            f.vpc_host.name(),
            &format!(
                "ip addr add {VPC_HOST}/24 dev eth1 && ip link set eth1 up && \
                 ip route add default via 192.168.0.1"
            ),
        );
        f
    }

    /// A veth from subnet `vlan`'s bridge to `ns`'s `iface` with `mac`.
    fn attach(&self, ns: &str, iface: &str, vlan: u16, mac: &str) {
        attach(self.fabric.name(), &format!("br{vlan}"), ns, iface, mac);
    }

    /// The VPC's route table: `cidr` to the node at `via`.
    fn route(&self, cidr: &str, via: &str) {
        ns_sh(
            self.router.name(),
            &format!("ip route add {cidr} via {via}"),
        );
    }
}

/// Route mode's node file for node `n` (1-based).
fn route_config(n: usize) -> String {
    let me = &NODES[n - 1];
    let mut s = format!(
        "[node]\nname = \"node{n}\"\nunderlay_ip = \"{}\"\nunderlay_interface = \"eth1\"\n\
         pod_cidr = \"172.16.{n}.0/24\"\ngateway_ip = \"172.16.{n}.1\"\ngateway_mac = \"{GW_MAC}\"\n\
         mode = \"route\"\n",
        me.ip
    );
    // Nodes 1 and 3 resolve their router by ARP, node 2 is given its MAC.
    if n != 2 {
        s.push_str(&format!("underlay_gateway = \"{}\"\n", me.gw));
    }
    for p in (1..=3).filter(|p| *p != n) {
        let peer = &NODES[p - 1];
        s.push_str(&format!(
            "[[peers]]\nname = \"node{p}\"\nunderlay_ip = \"{}\"\npod_cidr = \"172.16.{p}.0/24\"\n",
            peer.ip
        ));
        // Node 1 reaches node 2 straight on their shared subnet; everything else is routed.
        if n == 1 && p == 2 {
            s.push_str(&format!("underlay_mac = \"{}\"\n", peer.mac));
        }
    }
    s.push_str(&format!(
        "[[pods]]\nname = \"p{n}\"\nport = \"pod{n}\"\nip = \"172.16.{n}.11\"\nmac = \"0a:58:0c:0{n}:00:0b\"\n"
    ));
    // A ClusterIP whose only backend is this node's pod (the pod reaching it is a hairpin),
    // and one whose backend is node 3's pod.
    s.push_str(&format!(
        "[[services]]\nname = \"self\"\ncluster_ip = \"{SELF_VIP}\"\nport = 80\ntarget_port = {WHO_PORT}\n\
         backends = [{{ ip = \"172.16.{n}.11\" }}]\n"
    ));
    s.push_str("[egress]\nsnat = true\nno_snat_cidrs = [\"192.168.0.0/16\"]\n");
    if n == 2 {
        s.push_str(&format!("next_hop_mac = \"{ROUTER_MAC10}\"\n"));
    }
    s
}

/// Three nodes on the fabric, a pod on each (`172.16.N.11`), every node's `vswitchd
/// --config` running. Fields drop in order: daemons first, then the namespaces.
struct Cluster {
    daemons: Vec<Daemon>,
    pods: Vec<Netns>,
    _nodes: Vec<Netns>,
    fab: Fabric,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.daemons.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build(tag: &str, config: fn(usize) -> String, mtu: u32) -> Cluster {
    let fab = Fabric::new(tag);
    let dir = std::env::temp_dir().join(unique(&format!("{tag}vpc")));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for (i, nd) in NODES.iter().enumerate() {
        let n = i + 1;
        let ns = Netns::new(&unique(&format!("{tag}n{n}"))).expect("node ns");
        fab.attach(ns.name(), "eth1", nd.vlan, nd.mac);
        ns_sh(
            ns.name(),
            &format!(
                "ip addr add {}/24 dev eth1 && ip link set eth1 up && ip route add default via {}",
                nd.ip, nd.gw
            ),
        );
        fab.route(&format!("172.16.{n}.0/24"), nd.ip);
        let pod = veth_pod(
            ns.name(),
            &format!("{tag}p{n}"),
            &format!("pod{n}"),
            &format!("172.16.{n}.11"),
            &format!("0a:58:0c:0{n}:00:0b"),
            &format!("172.16.{n}.1"),
            Some(GW_MAC),
        );
        ns_sh(pod.name(), &format!("ip link set eth0 mtu {mtu}"));
        pods.push(pod);
        nodes.push(ns);
    }
    let daemons = start_nodes(&nodes, &dir, config);
    Cluster {
        daemons,
        pods,
        _nodes: nodes,
        fab,
        dir,
    }
}

/// Tunnel mode on the same fabric (VXLAN between the nodes' underlay addresses, routed by
/// the router for node 3), for the throughput comparison.
fn tunnel_config(n: usize) -> String {
    let me = &NODES[n - 1];
    let mut s = format!(
        "[node]\nname = \"node{n}\"\nunderlay_ip = \"{}\"\npod_cidr = \"172.16.{n}.0/24\"\n\
         gateway_ip = \"172.16.{n}.1\"\ngateway_mac = \"{GW_MAC}\"\nmode = \"tunnel\"\n\
         [tunnel]\nvni = 100\n",
        me.ip
    );
    for p in (1..=3).filter(|p| *p != n) {
        s.push_str(&format!(
            "[[peers]]\nname = \"node{p}\"\nunderlay_ip = \"{}\"\npod_cidr = \"172.16.{p}.0/24\"\n",
            NODES[p - 1].ip
        ));
    }
    s.push_str(&format!(
        "[[pods]]\nname = \"p{n}\"\nport = \"pod{n}\"\nip = \"172.16.{n}.11\"\nmac = \"0a:58:0c:0{n}:00:0b\"\n"
    ));
    s
}

#[test]
fn vpc_route_mode() {
    if !require_root("vpc_route_mode") {
        return;
    }
    let c = build("r", route_config, 1500);
    let (daemons, pods, fab) = (&c.daemons, &c.pods, &c.fab);
    let mut servers = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        servers.push(who_server(p.name(), &format!("p{}", i + 1), WHO_PORT, 50));
    }
    servers.push(who_server(fab.vpc_host.name(), "vpchost", WHO_PORT, 50));
    servers.push(who_server(fab.internet.name(), "public", WHO_PORT, 50));
    let dump = |i: usize| {
        format!(
            "node{}:\n{}\n{}\n{}",
            i + 1,
            daemons[i].ctl(&["dump-flows", "br-int"]),
            daemons[i].ctl(&["dump-conntrack", "br-int"]),
            daemons[i].ctl(&["dump-drops", "br-int"])
        )
    };

    // Nodes 1 and 3 resolved their router's MAC by ARP: frames to node 3's pods go to it.
    let flows1 = daemons[0].ctl(&["dump-flows", "br-int"]);
    assert!(
        flows1
            .lines()
            .any(|l| l.contains("nw_dst=172.16.3.0/24") && l.contains(ROUTER_MAC10)),
        "{flows1}"
    );
    let flows3 = daemons[2].ctl(&["dump-flows", "br-int"]);
    assert!(flows3.contains(ROUTER_MAC20), "{flows3}");
    // Node 2 runs two forwarding threads: both receive from its uplink.
    let ports2 = daemons[1].ctl(&["--format", "json", "list-ports", "br-int"]);
    let ports2: serde_json::Value = serde_json::from_str(&ports2).expect("list-ports JSON");
    let uplink2 = ports2["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "eth1"))
        .expect("node 2's uplink");
    assert_eq!(uplink2["options"]["n_rxq"], "2", "{uplink2}");
    assert_eq!(
        uplink2["rx_threads"],
        serde_json::json!([0, 1]),
        "{uplink2}"
    );
    assert!(
        daemons[1]
            .log_text()
            .contains("port received by several forwarding threads"),
        "node 2's uplink runs with two queues: {}",
        daemons[1].log_text()
    );
    let ports1 = daemons[0].ctl(&["--format", "json", "list-ports", "br-int"]);
    assert!(!ports1.contains("n_rxq"), "one thread, one queue: {ports1}");

    // Pods across nodes: node 1 ↔ node 2 on one subnet, both ↔ node 3 through the router;
    // each pod sees the other's own address.
    for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)] {
        let got = who_retry(
            pods[from - 1].name(),
            None,
            &format!("172.16.{to}.11"),
            WHO_PORT,
        );
        assert_eq!(
            got.as_deref(),
            Some(format!("p{to} 172.16.{from}.11").as_str()),
            "pod {from} -> pod {to}\n{}\n{}",
            dump(from - 1),
            dump(to - 1)
        );
    }

    // An outside client and a VPC host reach every pod directly; the pod sees them as they are.
    for n in 1..=3 {
        let pod_ip = format!("172.16.{n}.11");
        let got = who_retry(fab.internet.name(), Some(OUTSIDE_CLIENT), &pod_ip, WHO_PORT);
        assert_eq!(
            got.as_deref(),
            Some(format!("p{n} {OUTSIDE_CLIENT}").as_str()),
            "outside client -> pod {n}\n{}",
            dump(n - 1)
        );
        let got = who_retry(fab.vpc_host.name(), None, &pod_ip, WHO_PORT);
        assert_eq!(
            got.as_deref(),
            Some(format!("p{n} {VPC_HOST}").as_str()),
            "VPC host -> pod {n}\n{}",
            dump(n - 1)
        );
    }

    // Pods reach the VPC host with their own address (no_snat_cidrs) and the public host
    // masqueraded to their node's address.
    for n in 1..=3 {
        let got = who_retry(pods[n - 1].name(), None, VPC_HOST, WHO_PORT);
        assert_eq!(
            got.as_deref(),
            Some(format!("vpchost 172.16.{n}.11").as_str()),
            "pod {n} -> VPC host\n{}",
            dump(n - 1)
        );
        let got = who_retry(pods[n - 1].name(), None, PUBLIC_HOST, WHO_PORT);
        assert_eq!(
            got.as_deref(),
            Some(format!("public {}", NODES[n - 1].ip).as_str()),
            "pod {n} -> public host\n{}",
            dump(n - 1)
        );
    }
    // The pod connections to the VPC host were committed without NAT by table 60's
    // no-SNAT flow, and the masqueraded ones by the SNAT flow.
    let flows1 = daemons[0].ctl(&["dump-flows", "br-int"]);
    let count = |needle: &str| -> u64 {
        flows1
            .lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split("n_packets=").nth(1))
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no flow with {needle}:\n{flows1}"))
    };
    assert!(count("nw_dst=192.168.0.0/16 actions=ct(commit,table=65") >= 1);
    assert!(count("tcp,nw_src=172.16.1.0/24 actions=ct(commit,table=65,zone=1,nat") >= 1);

    // Hairpin: each pod reaches itself through its node's ClusterIP, seen from the gateway.
    for n in 1..=3 {
        let got = who_retry(pods[n - 1].name(), None, SELF_VIP, 80);
        assert_eq!(
            got.as_deref(),
            Some(format!("p{n} 172.16.{n}.1").as_str()),
            "pod {n} -> itself through a ClusterIP\n{}",
            dump(n - 1)
        );
    }
    drop(servers);
}

/// Route mode with the uplinks' TSO/GSO off (as [`build`] leaves them) and the pods' on: the
/// pods' TCP super-frames (up to 64 KiB) must leave the uplink segmented (the AF_PACKET
/// qdisc bypass cannot segment them: the kernel would drop them, `tx_full`). 20 MB over TCP
/// to the pod on the same subnet and to the one behind the router, each within 30 s.
#[test]
fn route_mode_uplink_without_tso() {
    if !require_root("route_mode_uplink_without_tso") {
        return;
    }
    let c = build("g", route_config, 1500);
    for p in &c.pods {
        ns_sh(
            p.name(),
            "ethtool -K eth0 tso on gso on >/dev/null 2>&1; true",
        );
    }
    let tso = ns_sh(c.pods[0].name(), "ethtool -k eth0");
    assert!(
        tso.contains("tcp-segmentation-offload: on"),
        "pod without TSO: {tso}"
    );
    let uplink = ns_sh(c._nodes[0].name(), "ethtool -k eth1");
    assert!(
        uplink.contains("tcp-segmentation-offload: off")
            && uplink.contains("generic-segmentation-offload: off"),
        "uplink offloads: {uplink}"
    );
    for to in [2, 3] {
        let server = Spawned::start(
            c.pods[to - 1].name(),
            "iperf3",
            &["timeout", "40", "iperf3", "-s", "-1"],
        );
        wait_listening(c.pods[to - 1].name(), "tcp", 5201);
        let r = ns_run(
            c.pods[0].name(),
            &[
                "timeout",
                "30",
                "iperf3",
                "-c",
                &format!("172.16.{to}.11"),
                "-n",
                "20M",
                "-J",
            ],
            Duration::from_secs(35),
        );
        let diag = || {
            format!(
                "{}{}\n{}\n{}",
                r.stdout,
                r.stderr,
                c.daemons[0].ctl(&["dump-drops", "br-int"]),
                c.daemons[0].ctl(&["dump-ports", "br-int"])
            )
        };
        assert!(r.ok, "iperf3 -> pod {to}: {}", diag());
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("iperf3 json");
        let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
        // The server's count may stop short of the last segments: most of it is enough.
        let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(
            sent >= 20 << 20 && received >= 15 << 20,
            "pod 1 -> pod {to}: sent {sent}, received {received}\n{}",
            diag()
        );
        drop(server);
    }
    // The pod's frames reached the switch as super-frames (far above the MTU on average)
    // and left the uplink without a send drop.
    let ports = c.daemons[0].ports("br-int");
    let pod = ports.get(&1).copied().unwrap_or_default();
    assert!(
        pod.rx_packets > 0 && pod.rx_bytes / pod.rx_packets > 4000,
        "no super-frames from the pod: {pod:?}"
    );
    assert_eq!(c.daemons[0].drops("br-int", "tx_full"), 0);
    assert_eq!(ports.get(&1001).map(|p| p.tx_dropped), Some(0));
}

/// iperf3 TCP, 3 s after a 1 s warm-up, from pod 1 to pod 2 (same subnet) and to pod 3 (through the router):
/// Gbit/s per mode. A measurement, not a check: `cargo test --release -p vswitch --test
/// e2e_vpc -- --ignored --nocapture pod_to_pod_tcp_per_mode` (docs/benchmarks.md).
#[test]
#[ignore]
fn pod_to_pod_tcp_per_mode() {
    if !require_root("pod_to_pod_tcp_per_mode") {
        return;
    }
    for (tag, config, mtu) in [
        ("t", tunnel_config as fn(usize) -> String, 1450),
        ("r", route_config, 1500),
    ] {
        let c = build(tag, config, mtu);
        // Pods keep their offloads here, as real pods do (the switch exchanges virtio-net
        // headers with the kernel on AF_PACKET ports).
        // The uplink needs TSO/GSO on for super-frames: with them off, the kernel refuses
        // (the AF_PACKET qdisc bypass does not segment) and they count as tx_full.
        for (ns, dev) in c
            .pods
            .iter()
            .map(|p| (p, "eth0"))
            .chain(c._nodes.iter().map(|n| (n, "eth1")))
        {
            ns_sh(
                ns.name(),
                &format!("ethtool -K {dev} tso on gso on gro on >/dev/null 2>&1; true"),
            );
        }
        for to in [2, 3] {
            let server = Spawned::start(
                c.pods[to - 1].name(),
                "iperf3",
                &["timeout", "20", "iperf3", "-s", "-1"],
            );
            wait_listening(c.pods[to - 1].name(), "tcp", 5201);
            let r = ns_run(
                c.pods[0].name(),
                &[
                    "timeout",
                    "15",
                    "iperf3",
                    "-c",
                    &format!("172.16.{to}.11"),
                    "-t",
                    "3",
                    "-J",
                ],
                Duration::from_secs(20),
            );
            assert!(r.ok, "iperf3 {tag} -> pod {to}: {}{}", r.stdout, r.stderr);
            let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("iperf3 json");
            let bps = v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .expect("bits_per_second");
            println!(
                "mode {}: pod 1 -> pod {to} ({}): {:.2} Gbit/s",
                if tag == "t" { "tunnel" } else { "route" },
                if to == 2 {
                    "same subnet"
                } else {
                    "through the router"
                },
                bps / 1e9
            );
            if std::env::var("VPC_BENCH_DEBUG").is_ok() {
                println!("{}", c.daemons[0].ctl(&["dump-drops", "br-int"]));
                println!("{}", c.daemons[0].ctl(&["dump-ports", "br-int"]));
            }
            drop(server);
        }
    }
}
