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

use common::*;

const GW_MAC: &str = "0a:58:0c:00:00:fe";
const ROUTER_MAC10: &str = "02:00:c0:a8:00:01";
const ROUTER_MAC20: &str = "02:00:c0:a8:01:01";
const OUTSIDE_CLIENT: &str = "198.51.100.10";
const PUBLIC_HOST: &str = "203.0.113.10";
const VPC_HOST: &str = "192.168.0.50";
/// Servers everywhere answer "TAG PEER-ADDRESS" on this port.
const WHO_PORT: u16 = 8081;

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
        let internet = Netns::new(&unique(&format!("{tag}inet"))).expect("internet ns");
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
                 sysctl -qw net.ipv4.conf.v20.send_redirects=0 && \
                 ip link add inet type veth peer name eth1 netns {i} && \
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
        let port = format!("p{}", &mac[12..].replace(':', ""));
        ns_sh(
            self.fabric.name(),
            &format!(
                "ip link add {port} type veth peer name {iface} netns {ns} && \
                 ip link set {port} master br{vlan} up"
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

    /// The VPC's route table: `cidr` to the node at `via`.
    fn route(&self, cidr: &str, via: &str) {
        ns_sh(
            self.router.name(),
            &format!("ip route add {cidr} via {via}"),
        );
    }
}

/// A "who are you" server: answers "TAG PEER-ADDRESS" on [`WHO_PORT`], for 50 s at most.
fn who_server(ns: &str, tag: &str) -> Spawned {
    let s = Spawned::start(
        ns,
        &format!("who-{tag}"),
        &[
            "timeout",
            "50",
            "socat",
            &format!("TCP-LISTEN:{WHO_PORT},fork,reuseaddr"),
            &format!("SYSTEM:echo {tag} $SOCAT_PEERADDR"),
        ],
    );
    wait_listening(ns, "tcp", WHO_PORT);
    s
}

/// One connection from `ns` (from `src`, if given) to `ip`'s who server: its answer.
fn who(ns: &str, src: Option<&str>, ip: &str) -> Option<String> {
    let port = WHO_PORT.to_string();
    let mut args = vec!["timeout", "4", "nc", "-w", "2"];
    if let Some(s) = src {
        args.extend(["-s", s]);
    }
    args.extend([ip, &port]);
    let r = ns_run(ns, &args, Duration::from_secs(6));
    let line = r.stdout.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// `who`, retried a few times (the first packets may wait for ARP on a loaded machine).
fn who_retry(ns: &str, src: Option<&str>, ip: &str) -> Option<String> {
    (0..3).find_map(|_| who(ns, src, ip))
}

/// A pod on a veth: the node end `port` in `node`, `eth0` in a new namespace.
fn veth_pod(node: &str, tag: &str, port: &str, ip: &str, mac: &str, gw: &str) -> Netns {
    let ns = Netns::new(&unique(tag)).expect("pod ns");
    ns_sh(
        node,
        &format!(
            "ip link add {port} type veth peer name eth0 netns {pod} && \
             sysctl -qw net.ipv6.conf.{port}.disable_ipv6=1 && ip link set {port} up",
            pod = ns.name()
        ),
    );
    ns_sh(
        ns.name(),
        &format!(
            "ip link set eth0 address {mac} && ip link set eth0 up && \
             ip addr add {ip}/32 dev eth0 && ip route add {gw} dev eth0 && \
             ip route add default via {gw} && \
             ip neigh replace {gw} lladdr {GW_MAC} dev eth0 nud permanent && \
             (ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1; true)"
        ),
    );
    ns
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
        );
        ns_sh(pod.name(), &format!("ip link set eth0 mtu {mtu}"));
        pods.push(pod);
        nodes.push(ns);
    }
    let mut daemons = Vec::new();
    for (i, ns) in nodes.iter().enumerate() {
        let path = dir.join(format!("node{}.toml", i + 1));
        std::fs::write(&path, config(i + 1)).expect("config");
        let rundir = dir.join(format!("run{}", i + 1));
        daemons.push(Daemon::start_with(
            ns.name(),
            &rundir,
            &["--config", path.to_str().expect("utf-8 path")],
        ));
    }
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
        servers.push(who_server(p.name(), &format!("p{}", i + 1)));
    }
    servers.push(who_server(fab.vpc_host.name(), "vpchost"));
    servers.push(who_server(fab.internet.name(), "public"));
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

    // Pods across nodes: node 1 ↔ node 2 on one subnet, both ↔ node 3 through the router;
    // each pod sees the other's own address.
    for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)] {
        let got = who_retry(pods[from - 1].name(), None, &format!("172.16.{to}.11"));
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
        let got = who_retry(fab.internet.name(), Some(OUTSIDE_CLIENT), &pod_ip);
        assert_eq!(
            got.as_deref(),
            Some(format!("p{n} {OUTSIDE_CLIENT}").as_str()),
            "outside client -> pod {n}\n{}",
            dump(n - 1)
        );
        let got = who_retry(fab.vpc_host.name(), None, &pod_ip);
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
        let got = who_retry(pods[n - 1].name(), None, VPC_HOST);
        assert_eq!(
            got.as_deref(),
            Some(format!("vpchost 172.16.{n}.11").as_str()),
            "pod {n} -> VPC host\n{}",
            dump(n - 1)
        );
        let got = who_retry(pods[n - 1].name(), None, PUBLIC_HOST);
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
    drop(servers);
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
