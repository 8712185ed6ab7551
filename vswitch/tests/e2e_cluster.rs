//! The node agent end to end: three node namespaces on one underlay bridge, each running
//! `vswitchd --config node.toml`, pods on veth (AF_PACKET) and TAP ports, in tunnel mode
//! (VXLAN) and in route mode (AF_PACKET uplink, no encapsulation).
//!
//! Checked with real kernel traffic: pod↔pod on one node and across nodes (ping and TCP),
//! the gateway answering ARP and ping, a spoofed source dropped and counted by the spoof
//! guard, a ClusterIP Service reached from pods on every node and by its own backend
//! (hairpin), an incremental re-apply (`vswitchctl apply` / SIGHUP) that adds a Service
//! without disturbing an open connection, a refused bad file; tunnel mode: a plain Linux
//! node with a kernel vxlan device. In both modes node 1 has an uplink on the underlay
//! interface: egress SNAT to a public host (ports 61000-65535), and an outside client behind
//! it reaches a NodePort, a LoadBalancer IP and a shared DNAT address with backends on node 1
//! and on other nodes (policy "cluster": masqueraded to node 1's gateway) and a NodePort with
//! policy "local" (node 1's backend only, the client's address kept). Root only.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{
    GW_MAC, OUTSIDE_CLIENT, PUBLIC_HOST, PUBLIC_MAC, attach_underlay, pod_eth0, pod_veth,
    public_host, underlay, underlay_mac, underlay_node,
};
use common::*;

const VIP: &str = "10.247.0.10";
const VIP2: &str = "10.247.0.20";
/// A Service whose only backend is pod b.
const VIP_SELF: &str = "10.247.0.30";
/// A LoadBalancer IP and a shared DNAT address, routed by the public host to node 1.
const LB_IP: &str = "198.18.0.5";
const DNAT_IP: &str = "198.18.0.6";
/// Pods' second server: answers "TAG CLIENT-ADDRESS" (who served, whom it saw).
const WHO_PORT: u16 = 8081;
/// The public host's server: answers "CLIENT-ADDRESS CLIENT-PORT".
const PUBLIC_PORT: u16 = 9000;
/// The MAC of the kernel VXLAN device of the plain Linux node (tunnel mode).
const KERNEL_VXLAN_MAC: &str = "02:00:00:00:04:01";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Tunnel,
    Route,
}

struct PodDef {
    tag: &'static str,
    node: usize,
    port: &'static str,
    tap: bool,
    ip: &'static str,
    mac: &'static str,
}

const PODS: [PodDef; 6] = [
    PodDef {
        tag: "a",
        node: 1,
        port: "pa",
        tap: false,
        ip: "172.16.1.11",
        mac: "0a:58:0c:01:00:0b",
    },
    PodDef {
        tag: "b",
        node: 1,
        port: "tpb",
        tap: true,
        ip: "172.16.1.12",
        mac: "0a:58:0c:01:00:0c",
    },
    PodDef {
        tag: "c",
        node: 2,
        port: "pc",
        tap: false,
        ip: "172.16.2.11",
        mac: "0a:58:0c:02:00:0b",
    },
    PodDef {
        tag: "f",
        node: 2,
        port: "pf",
        tap: false,
        ip: "172.16.2.12",
        mac: "0a:58:0c:02:00:0c",
    },
    PodDef {
        tag: "d",
        node: 3,
        port: "pd",
        tap: false,
        ip: "172.16.3.11",
        mac: "0a:58:0c:03:00:0b",
    },
    PodDef {
        tag: "e",
        node: 3,
        port: "tpe",
        tap: true,
        ip: "172.16.3.12",
        mac: "0a:58:0c:03:00:0c",
    },
];

fn node_config(n: usize, mode: Mode, extra_service: bool) -> String {
    let mut s = format!(
        "[node]\nname = \"node{n}\"\nunderlay_ip = \"192.168.0.{ip}\"\npod_cidr = \"172.16.{n}.0/24\"\n\
         gateway_ip = \"172.16.{n}.1\"\ngateway_mac = \"{GW_MAC}\"\n",
        ip = 10 + n
    );
    match mode {
        // Node 1 has an uplink in tunnel mode too (outside clients, egress).
        Mode::Tunnel if n == 1 => {
            s.push_str("mode = \"tunnel\"\nunderlay_interface = \"eth1\"\n[tunnel]\nvni = 100\n")
        }
        Mode::Tunnel => s.push_str("mode = \"tunnel\"\n[tunnel]\nvni = 100\n"),
        Mode::Route => s.push_str("mode = \"route\"\nunderlay_interface = \"eth1\"\n"),
    }
    if n == 1 {
        // Pods of node 1 reach the public host masqueraded to 192.168.0.11.
        s.push_str(&format!(
            "[egress]\nsnat = true\nnext_hop_mac = \"{PUBLIC_MAC}\"\n"
        ));
    }
    for p in (1..=3).filter(|p| *p != n) {
        s.push_str(&format!(
            "[[peers]]\nname = \"node{p}\"\nunderlay_ip = \"192.168.0.{}\"\npod_cidr = \"172.16.{p}.0/24\"\n",
            10 + p
        ));
        if mode == Mode::Route {
            s.push_str(&format!("underlay_mac = \"{}\"\n", underlay_mac(p)));
        }
    }
    if n == 1 && mode == Mode::Tunnel {
        // A plain Linux node (kernel vxlan device) on the same VNI.
        s.push_str(&format!(
            "[[peers]]\nname = \"linux\"\nunderlay_ip = \"192.168.0.14\"\npod_cidr = \"172.16.4.0/24\"\n\
             inner_mac = \"{KERNEL_VXLAN_MAC}\"\n"
        ));
    }
    for p in PODS.iter().filter(|p| p.node == n) {
        s.push_str(&format!(
            "[[pods]]\nname = \"{}\"\nport = \"{}\"\ntype = \"{}\"\nip = \"{}\"\nmac = \"{}\"\n",
            p.tag,
            p.port,
            if p.tap { "tap" } else { "afpacket" },
            p.ip,
            p.mac
        ));
    }
    s.push_str(&format!(
        "[[services]]\nname = \"web\"\ncluster_ip = \"{VIP}\"\nport = 80\ntarget_port = 8080\n\
         backends = [{{ ip = \"172.16.1.12\" }}, {{ ip = \"172.16.2.12\" }}, {{ ip = \"172.16.3.12\" }}]\n"
    ));
    s.push_str(&format!(
        "[[services]]\nname = \"self\"\ncluster_ip = \"{VIP_SELF}\"\nport = 80\ntarget_port = 8080\n\
         backends = [{{ ip = \"172.16.1.12\" }}]\n"
    ));
    // Outside clients reach these through node 1's uplink. Policy "cluster" (default): every
    // backend, on any node; policy "local": node 1's backend b only.
    let who = |name: &str, head: &str, backends: &str| {
        format!(
            "[[services]]\nname = \"{name}\"\n{head}\ntarget_port = {WHO_PORT}\nbackends = [{backends}]\n"
        )
    };
    let b_f = "{ ip = \"172.16.1.12\" }, { ip = \"172.16.2.12\" }";
    s.push_str(&who(
        "np",
        "type = \"NodePort\"\nnode_port = 30080\nport = 80",
        b_f,
    ));
    s.push_str(&who(
        "np-local",
        "type = \"NodePort\"\nnode_port = 30081\nport = 80\nexternal_traffic_policy = \"local\"",
        b_f,
    ));
    s.push_str(&who(
        "lb",
        &format!("type = \"LoadBalancer\"\nexternal_ip = \"{LB_IP}\"\nport = 80"),
        b_f,
    ));
    // One public address, two ports, different pods.
    s.push_str(&who(
        "dnat-ac",
        &format!("type = \"DNAT\"\nexternal_ip = \"{DNAT_IP}\"\nport = 8000"),
        "{ ip = \"172.16.1.11\" }, { ip = \"172.16.2.11\" }",
    ));
    s.push_str(&who(
        "dnat-e",
        &format!("type = \"DNAT\"\nexternal_ip = \"{DNAT_IP}\"\nport = 8001"),
        "{ ip = \"172.16.3.12\" }",
    ));
    if extra_service {
        s.push_str(&format!(
            "[[services]]\nname = \"echo\"\ncluster_ip = \"{VIP2}\"\nport = 7\ntarget_port = 8080\n\
             backends = [{{ ip = \"172.16.3.11\" }}]\n"
        ));
    }
    s
}

struct Cluster {
    /// Declared first: the daemons stop before the namespaces go.
    agents: Vec<Daemon>,
    servers: Vec<Child>,
    pods: Vec<Netns>,
    nodes: Vec<Netns>,
    linux: Option<Netns>,
    public: Netns,
    _underlay: Netns,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Each server is `timeout socat` in its own process group: kill the group, or socat
        // outlives a killed `timeout`.
        for s in &mut self.servers {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", s.id())])
                .status();
            let _ = s.kill();
            let _ = s.wait();
        }
        self.agents.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn pod_ns(&self, tag: &str) -> &str {
        let i = PODS.iter().position(|p| p.tag == tag).expect("pod tag");
        self.pods[i].name()
    }

    fn config_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("node{n}.toml"))
    }
}

fn build(mode: Mode) -> Cluster {
    let m = if mode == Mode::Tunnel { "t" } else { "r" };
    let underlay = underlay(&format!("{m}u"));
    let dir = std::env::temp_dir().join(unique(&format!("{m}cluster")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let nodes: Vec<Netns> = (1..=3)
        .map(|n| underlay_node(&underlay, &format!("{m}n{n}"), n))
        .collect();
    // Pods with veth ends exist before the agent starts; TAP pods are created by the agent.
    let mut pods = Vec::new();
    for p in &PODS {
        let ns = Netns::new(&unique(&format!("{m}p{}", p.tag))).expect("pod ns");
        if !p.tap {
            pod_veth(nodes[p.node - 1].name(), p.port, ns.name());
        }
        pods.push(ns);
    }
    let linux = (mode == Mode::Tunnel).then(|| linux_node(&underlay));
    // Named per mode: the two clusters may be built at the same time.
    let public = public_host(&underlay, &format!("{m}public"));
    // Node 1's kernel sees what its uplink sees (AF_PACKET copies): the switch's own nftables
    // table keeps it from answering NodePort SYNs or replies to masqueraded connections with
    // resets (checked in run_cluster: nothing is set up by hand here).
    let mut c = Cluster {
        agents: Vec::new(),
        servers: Vec::new(),
        pods,
        nodes,
        linux,
        public,
        _underlay: underlay,
        dir,
    };
    for n in 1..=3 {
        std::fs::write(c.config_path(n), node_config(n, mode, false)).expect("write config");
        let config = c.config_path(n);
        let agent = Daemon::start_with(
            c.nodes[n - 1].name(),
            &c.dir.join(format!("run{n}")),
            &["--config", config.to_str().expect("utf-8 path")],
        );
        c.agents.push(agent);
    }
    for (i, p) in PODS.iter().enumerate() {
        let pod = c.pods[i].name().to_string();
        if p.tap {
            // The control socket is up before the agent has applied its config: wait for the
            // TAP it creates.
            let node = c.nodes[p.node - 1].name().to_string();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ns_run(
                &node,
                &["ip", "link", "show", p.port],
                Duration::from_secs(2),
            )
            .ok
            {
                assert!(
                    Instant::now() < deadline,
                    "the agent never created {}",
                    p.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // Hand the agent-created TAP to its pod (the switch keeps the file descriptor).
            ns_sh(
                c.nodes[p.node - 1].name(),
                &format!("ip link set {} netns {pod}", p.port),
            );
            ns_sh(&pod, &format!("ip link set {} name eth0", p.port));
        }
        let mtu = if mode == Mode::Tunnel { 1450 } else { 1500 };
        // Pod a resolves the gateway by ARP (answered by flows); the others, like the demo's
        // pods, have a static entry.
        pod_eth0(&pod, p.node, p.ip, p.mac, mtu, p.tag != "a");
        let server = Command::new("ip")
            .args(["netns", "exec", &pod, "timeout", "50", "socat"])
            .arg("TCP-LISTEN:8080,fork,reuseaddr")
            .arg(format!("SYSTEM:echo {}", p.tag))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        c.servers.push(server);
        let who = Command::new("ip")
            .args(["netns", "exec", &pod, "timeout", "50", "socat"])
            .arg(format!("TCP-LISTEN:{WHO_PORT},fork,reuseaddr"))
            .arg(format!("SYSTEM:echo {} $SOCAT_PEERADDR", p.tag))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        c.servers.push(who);
    }
    {
        let server = Command::new("ip")
            .args(["netns", "exec", c.public.name(), "timeout", "50", "socat"])
            .arg(format!("TCP-LISTEN:{PUBLIC_PORT},fork,reuseaddr"))
            .arg("SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        c.servers.push(server);
    }
    std::thread::sleep(Duration::from_millis(300));
    c
}

/// A plain Linux node on the underlay whose kernel `vxlan` device (VNI 100, 172.16.4.1/24)
/// reaches node 1's pods: route via node 1's gateway, whose MAC the fdb maps to node 1. Its
/// tx checksum offload is off: the switch reads VXLAN from a UDP socket, where an inner
/// checksum left partial by the sender's kernel (veth) would arrive unfinished.
fn linux_node(underlay: &Netns) -> Netns {
    let ns = Netns::new(&unique("tlinux")).expect("linux node ns");
    attach_underlay(underlay, 4, ns.name());
    ns_sh(
        ns.name(),
        &format!(
            "ip link set lo up && ip link set eth1 address {mac4} && \
             ip addr add 192.168.0.14/24 dev eth1 && ip link set eth1 up && \
             ip link add vx0 type vxlan id 100 dstport 4789 local 192.168.0.14 nolearning && \
             ip link set vx0 address {KERNEL_VXLAN_MAC} mtu 1450 up && \
             ip addr add 172.16.4.1/24 dev vx0 && \
             ip neigh replace 172.16.1.1 lladdr {GW_MAC} dev vx0 nud permanent && \
             ip route add 172.16.1.0/24 via 172.16.1.1 dev vx0 onlink && \
             bridge fdb append {GW_MAC} dev vx0 dst 192.168.0.11 && \
             (ethtool -K vx0 tx off >/dev/null 2>&1; ethtool -K eth1 tx off >/dev/null 2>&1; true)",
            mac4 = underlay_mac(4)
        ),
    );
    ns
}

/// One TCP connection from `ns` to `ip:port`; the greeting line, if any.
fn tcp_hello(ns: &str, ip: &str, port: u16) -> Option<String> {
    let p = port.to_string();
    let r = ns_run(
        ns,
        &["timeout", "4", "nc", "-w", "2", ip, &p],
        Duration::from_secs(6),
    );
    let line = r.stdout.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// n_packets of the one flow whose dump line contains every part of `parts`.
fn flow_packets(agent: &Daemon, parts: &[&str]) -> u64 {
    let dump = agent.ctl(&["dump-flows", "br-int"]);
    let line = dump
        .lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no flow with {parts:?} in:\n{dump}"));
    line.split("n_packets=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no n_packets in {line}"))
}

/// One connection from the outside client to `ip:port`: "TAG SEEN-CLIENT" from the pod.
fn outside_hello(public: &Netns, ip: &str, port: u16) -> Option<String> {
    let p = port.to_string();
    let r = ns_run(
        public.name(),
        &[
            "timeout",
            "4",
            "nc",
            "-w",
            "2",
            "-s",
            OUTSIDE_CLIENT,
            ip,
            &p,
        ],
        Duration::from_secs(6),
    );
    let line = r.stdout.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// The outside client reaches node 1's NodePorts, LoadBalancer IP and shared DNAT address;
/// each backend answers (local and remote), and sees whom the policy says it should.
fn outside_clients(c: &Cluster, public: &Netns) {
    let gw = "172.16.1.1";
    let cases: [(&str, u16, &[&str], &str); 5] = [
        ("192.168.0.11", 30080, &["b", "f"], gw),
        (LB_IP, 80, &["b", "f"], gw),
        (DNAT_IP, 8000, &["a", "c"], gw),
        (DNAT_IP, 8001, &["e"], gw),
        // Policy "local": node 1's backend only, and it sees the client itself.
        ("192.168.0.11", 30081, &["b"], OUTSIDE_CLIENT),
    ];
    for (ip, port, backends, client) in cases {
        let mut seen = BTreeSet::new();
        for i in 0..24 {
            let hello = outside_hello(public, ip, port).unwrap_or_else(|| {
                panic!(
                    "outside -> {ip}:{port} (try {i}): no answer\n{}\n{}\n{}\nnode 2:\n{}\n{}",
                    c.agents[0].ctl(&["dump-flows", "br-int"]),
                    c.agents[0].ctl(&["dump-conntrack", "br-int"]),
                    c.agents[0].ctl(&["dump-drops", "br-int"]),
                    c.agents[1].ctl(&["dump-conntrack", "br-int"]),
                    c.agents[1].ctl(&["dump-drops", "br-int"]),
                )
            });
            let (tag, saw) = hello.split_once(' ').expect("tag and address");
            assert!(backends.contains(&tag), "{ip}:{port} answered by {tag}");
            assert_eq!(saw, client, "{ip}:{port}: backend {tag} saw {saw}");
            seen.insert(tag.to_string());
            if seen.len() == backends.len() && i >= 2 {
                break;
            }
        }
        assert_eq!(
            seen.len(),
            backends.len(),
            "{ip}:{port}: only {seen:?} answered"
        );
    }
    // Masqueraded outside connections: DNAT in zone 1 marked 2, SNAT to the gateway in zone 2.
    let ct = c.agents[0].ctl(&["dump-conntrack", "br-int"]);
    assert!(
        ct.lines()
            .any(|l| l.contains("dport=30080") && l.contains("mark=2")),
        "{ct}"
    );
    assert!(
        ct.lines()
            .any(|l| l.contains("zone=2") && l.contains(&format!("dst={gw},"))),
        "{ct}"
    );
}

fn run_cluster(mode: Mode) {
    let c = build(mode);
    // The gateway answers ARP (pod a has no static neighbor entry) and ping, from flows.
    assert_ping(c.pod_ns("a"), "172.16.1.1", 2);
    let neigh = ns_sh(c.pod_ns("a"), "ip neigh show 172.16.1.1");
    assert!(neigh.contains(GW_MAC), "gateway resolved to: {neigh}");
    assert_ping(c.pod_ns("e"), "172.16.3.1", 2);
    // Pod ↔ pod on one node (veth ↔ TAP) and across nodes, both directions.
    for (from, to) in [
        ("a", "172.16.1.12"),
        ("b", "172.16.1.11"),
        ("a", "172.16.2.11"),
        ("c", "172.16.1.11"),
        ("b", "172.16.3.12"),
        ("e", "172.16.2.11"),
    ] {
        assert_ping(c.pod_ns(from), to, 2);
    }
    for (from, to, name) in [
        ("a", "172.16.1.12", "b"),
        ("a", "172.16.3.11", "d"),
        ("d", "172.16.2.11", "c"),
    ] {
        assert_eq!(
            tcp_hello(c.pod_ns(from), to, 8080).as_deref(),
            Some(name),
            "TCP {from} -> {to}:8080"
        );
    }

    // The node's kernel reaches the pod network through its host port (vswhost0, the pod
    // CIDR's last address): its own pods and another node's (ping; TCP as kubelet's probes
    // do, the pod seeing the host port's address), a ClusterIP as a hostNetwork process
    // would; and pods reach the node's own underlay address and its host port address.
    let node1 = c.nodes[0].name();
    assert_ping(node1, "172.16.1.11", 2);
    assert_ping(node1, "172.16.2.11", 2);
    assert_ping(node1, "172.16.3.12", 2);
    assert_eq!(
        tcp_hello(node1, "172.16.1.11", WHO_PORT).as_deref(),
        Some("a 172.16.1.254"),
        "probe from node 1 to its pod a"
    );
    assert_eq!(
        tcp_hello(node1, "172.16.3.11", WHO_PORT).as_deref(),
        Some("d 172.16.1.254"),
        "probe from node 1 to node 3's pod d"
    );
    let via_vip = tcp_hello(node1, VIP, 80);
    assert!(
        matches!(via_vip.as_deref(), Some("b" | "f" | "e")),
        "node 1 -> ClusterIP {VIP}: {via_vip:?}"
    );
    // A NodePort on the node's own address, from the node itself (the host firewall DNATs it
    // into the host port): a backend on this node or another, the client seen as the host port.
    let via_node_port = tcp_hello(node1, "192.168.0.11", 30080);
    assert!(
        matches!(
            via_node_port.as_deref(),
            Some("b 172.16.1.254" | "f 172.16.1.254")
        ),
        "node 1 -> its own NodePort 192.168.0.11:30080: {via_node_port:?}"
    );
    assert_ping(c.pod_ns("a"), "192.168.0.11", 2);
    assert_ping(c.pod_ns("a"), "172.16.1.254", 2);
    assert_ping(c.pod_ns("c"), "172.16.1.254", 2);

    // The plain Linux node and node 1's pods reach each other over VXLAN (ping and TCP).
    if let Some(linux) = &c.linux {
        assert_ping(c.pod_ns("a"), "172.16.4.1", 2);
        assert_ping(linux.name(), "172.16.1.12", 2);
        assert_eq!(
            tcp_hello(linux.name(), "172.16.1.11", 8080).as_deref(),
            Some("a")
        );
    }

    // Egress SNAT from node 1's pods to the public host (who could not answer a pod
    // address), visible in conntrack, from the masquerade port range.
    if !ping_until(c.pod_ns("a"), PUBLIC_HOST, 5) {
        panic!(
            "pod a -> public host: no reply\n{}\n{}\n{}",
            c.agents[0].ctl(&["dump-flows", "br-int"]),
            c.agents[0].ctl(&["dump-conntrack", "br-int"]),
            c.agents[0].ctl(&["dump-drops", "br-int"]),
        );
    }
    assert_ping(c.pod_ns("a"), PUBLIC_HOST, 2);
    let ct = c.agents[0].ctl(&["dump-conntrack", "br-int"]);
    assert!(
        ct.lines()
            .any(|l| l.contains(PUBLIC_HOST) && l.contains("192.168.0.11")),
        "no masqueraded connection in:\n{ct}"
    );
    // The pings' echo identifier was translated into the masquerade range (and back, or the
    // pings above would have had no reply).
    let icmp_reply_id = ct
        .lines()
        .filter(|l| {
            l.starts_with("icmp,") && l.contains(PUBLIC_HOST) && l.contains("dst=192.168.0.11")
        })
        .find_map(|l| {
            let reply = l.split("reply=(").nth(1)?;
            reply
                .split(['=', ','])
                .skip_while(|w| *w != "id")
                .nth(1)?
                .parse::<u16>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no masqueraded ping in:\n{ct}"));
    assert!(
        (61000..=65535).contains(&icmp_reply_id),
        "echo id {icmp_reply_id} not from the masquerade range:\n{ct}"
    );
    for from in ["a", "b"] {
        let seen = tcp_hello(c.pod_ns(from), PUBLIC_HOST, PUBLIC_PORT)
            .unwrap_or_else(|| panic!("{from} -> public host: no answer"));
        let (addr, port) = seen.split_once(' ').expect("address and port");
        assert_eq!(addr, "192.168.0.11", "public host saw {seen}");
        let port: u16 = port.parse().expect("port");
        assert!(
            (61000..=65535).contains(&port),
            "masqueraded to port {port}"
        );
    }
    outside_clients(&c, &c.public);
    // The kernel's copies of those connections (NodePort SYNs, replies to masqueraded
    // connections) died in the switch's own nftables table on the uplink, not by hand.
    let table = ns_sh(c.nodes[0].name(), "nft list table inet vswitchd");
    let tcp_drops: u64 = table
        .lines()
        .find(|l| l.contains("tcp dport") && l.contains("30000-32767"))
        .and_then(|l| l.split("counter packets ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tcp rule in the host firewall:\n{table}"));
    assert!(tcp_drops > 0, "the host firewall dropped nothing:\n{table}");

    // Tunnel mode: the VXLAN datagrams reach the tunnel port through the kernel's UDP
    // socket, and the uplink's receive filter (options:rx_skip_udp_dport) keeps their copies
    // out of its ring: the table-0 flow that would drop them never sees one.
    if mode == Mode::Tunnel {
        let tunnelled = flow_packets(&c.agents[0], &["table=0", "in_port=1000 "]);
        assert!(tunnelled > 0, "no traffic arrived over VXLAN");
        let copies = flow_packets(&c.agents[0], &["table=0", "tp_dst=4789", "actions=drop"]);
        assert_eq!(
            copies, 0,
            "VXLAN copies reached the uplink despite its filter"
        );
    }

    // A spoofed source address is dropped by node 1's spoof guard and counted there.
    let guard = ["table=10", "priority=10", "in_port=1 "];
    let before = flow_packets(&c.agents[0], &guard);
    ns_sh(c.pod_ns("a"), "ip addr add 172.16.1.99/32 dev eth0");
    let r = ping_with(c.pod_ns("a"), "172.16.2.11", 3, &["-I", "172.16.1.99"]);
    assert!(
        r.none_replied(),
        "a spoofed ping got answers:\n{}",
        r.output()
    );
    let after = flow_packets(&c.agents[0], &guard);
    assert!(
        after >= before + 3,
        "spoof guard counted {before} -> {after}"
    );
    ns_sh(c.pod_ns("a"), "ip addr del 172.16.1.99/32 dev eth0");

    // The ClusterIP from a pod on every node, spread over the backends on all nodes.
    let mut seen = BTreeSet::new();
    for from in ["a", "c", "d"] {
        for i in 0..6 {
            let hello = tcp_hello(c.pod_ns(from), VIP, 80)
                .unwrap_or_else(|| panic!("{from} -> {VIP}:80 (try {i}) got no answer"));
            assert!(["b", "f", "e"].contains(&hello.as_str()), "{hello}");
            seen.insert(hello);
        }
    }
    assert!(seen.len() >= 2, "one backend only: {seen:?}");
    // Hairpin: pod b reaches a Service whose only backend is b itself (its kernel would drop
    // its own address as source: the switch masquerades to the gateway and sends it back).
    for i in 0..3 {
        assert_eq!(
            tcp_hello(c.pod_ns("b"), VIP_SELF, 80).as_deref(),
            Some("b"),
            "hairpin try {i}"
        );
    }

    // Incremental re-apply: an open connection (pod a -> pod c) survives while a Service is
    // added with `vswitchctl apply`; then the same again by SIGHUP changes nothing.
    let mut held = Command::new("ip")
        .args([
            "netns",
            "exec",
            c.pod_ns("a"),
            "timeout",
            "15",
            "socat",
            "-",
            "TCP:172.16.2.11:8080",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat client");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(c.config_path(1), node_config(1, mode, true)).expect("write config");
    let out = c.agents[0].ctl(&["apply", c.config_path(1).to_str().expect("utf-8 path")]);
    assert!(
        out.contains("flows +1 ~0 -0, groups +1 ~0 -0, ports +0 -0"),
        "{out}"
    );
    assert_eq!(tcp_hello(c.pod_ns("a"), VIP2, 7).as_deref(), Some("d"));
    // The connection opened before is still served (conntrack untouched): its reply arrived.
    drop(held.stdin.take());
    let out = held.wait_with_output().expect("socat client");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c");
    let flows_before = c.agents[0].ctl(&["dump-flows", "br-int", "--no-stats"]);
    let pid = c.agents[0].pid().to_string();
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    // The reload is logged within 300 ms on an idle machine; a loaded one may take longer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.agents[0].log_text().contains("flows +0 ~0 -0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        c.agents[0].log_text().contains("flows +0 ~0 -0"),
        "{}",
        c.agents[0].log_text()
    );
    assert_eq!(
        c.agents[0].ctl(&["dump-flows", "br-int", "--no-stats"]),
        flows_before
    );

    // A file with an error changes nothing and says what is wrong.
    let r = run_timeout(
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--rundir")
            .arg(&c.agents[0].rundir)
            .args([
                "apply",
                &node_config(1, mode, true).replace("172.16.1.11", "172.16.9.11"),
            ]),
        Duration::from_secs(10),
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("pods[0].ip"), "{}", r.stderr);
    assert_eq!(
        c.agents[0].ctl(&["dump-flows", "br-int", "--no-stats"]),
        flows_before
    );

    // A pod gone from the file loses its port and flows; back in the file, it is served again.
    let full = node_config(1, mode, true);
    let pod_a = "[[pods]]\nname = \"a\"\nport = \"pa\"\ntype = \"afpacket\"\nip = \"172.16.1.11\"\nmac = \"0a:58:0c:01:00:0b\"\n";
    assert!(full.contains(pod_a), "{full}");
    let path = c.config_path(1);
    let path = path.to_str().expect("utf-8 path");
    std::fs::write(path, full.replace(pod_a, "")).expect("write config");
    let out = c.agents[0].ctl(&["apply", path]);
    assert!(out.contains("ports +0 -1"), "{out}");
    assert!(!c.agents[0].ctl(&["list-ports", "br-int"]).contains("pa\n"));
    let r = ping(c.pod_ns("a"), "172.16.1.12", 1);
    assert!(r.none_replied(), "a removed pod answered:\n{}", r.output());
    std::fs::write(path, &full).expect("write config");
    let out = c.agents[0].ctl(&["apply", path]);
    assert!(out.contains("ports +1 -0"), "{out}");
    // The same flows as before (in another order among equal priorities: they were re-added).
    let sorted = |t: &str| {
        let mut v: Vec<String> = t.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&c.agents[0].ctl(&["dump-flows", "br-int", "--no-stats"])),
        sorted(&flows_before)
    );
    assert_ping(c.pod_ns("a"), "172.16.1.12", 2);
}

#[test]
fn tunnel_mode_cluster() {
    if require_root("tunnel_mode_cluster") {
        run_cluster(Mode::Tunnel);
    }
}

#[test]
fn route_mode_cluster() {
    if require_root("route_mode_cluster") {
        run_cluster(Mode::Route);
    }
}
