//! Cloud Native Network 2.0 (`mode = "eni"`) on an emulated VPC: three nodes whose uplinks
//! are trunks on one plain Linux bridge, pods as sub-ENIs (a VLAN each), a VPC router.
//!
//! The test kernel has neither the `8021q` module nor bridge VLAN filtering, so the VPC
//! side of the sub-ENIs cannot be kernel VLAN interfaces. The fabric is a plain bridge
//! (it forwards 802.1Q frames untouched) and the VPC router is a namespace whose kernel
//! routes between one interface per sub-ENI: TAPs that a second `vswitchd` (the "trunk",
//! programmed by hand with two OpenFlow flows per VLAN, independent of the node agent)
//! connects to the router's trunk port, popping and pushing the tags. The router's kernel
//! answers the pods' ARP for their gateway and resolves the pods by ARP on their VLAN, as
//! the VPC would; the tags on the wire are checked with tcpdump on the bridge.
//!
//! Checked with real kernel traffic: pods on VLANs across the nodes and on one node,
//! security groups (a remote group, CIDRs, a port, egress restricted to a group; the
//! refusals counted as `secgroup_denied`), the node reaching its pods, a VPC host, an EIP
//! (inbound to the pod, the pod's egress seen as the EIP), masquerade of a pod without an
//! EIP, a ClusterIP, a passthrough load balancer (straight to a pod address, no NodePort,
//! no SNAT) and a pod added and removed at run time (`add-pod ... vlan=N`). Root only.

mod common;

use std::time::Duration;

use common::vpc::*;
use common::*;

/// The VPC gateway of the pod subnet, as the pods see it (every sub-ENI interface of the
/// router has this MAC and 192.168.64.1).
const VPC_GW_MAC: &str = "02:00:c0:a8:40:01";
const ROUTER_MAC: &str = "02:00:c0:a8:00:01";
const ELB: &str = "192.168.0.60";
const EIP_A: &str = "100.100.0.11";
const LB_VIP: &str = "100.100.0.100";
/// An EIP bound to c at run time (`set-eip`).
const EIP_C: &str = "100.100.0.21";
/// A DNAT Service's public address on node 1 (the VPC routes it to node 1's address).
const DNAT_IP: &str = "100.100.0.50";
/// Node 1's NodePorts: to c (on node 2) and to a (on node 1).
const NP_REMOTE: u16 = 30080;
const NP_LOCAL: u16 = 30081;
/// A ClusterIP on node 1 whose only backend is a (a reaching it is a hairpin).
const SELF_A: &str = "10.247.0.11";
/// A second server port on pod c that the security groups do not open.
const CLOSED_PORT: u16 = 8082;
/// The trunk switch's port on the router's fabric interface.
const TRUNK_UPLINK: u32 = 1000;

/// A pod: name, node (1-based), address, VLAN.
struct PodDef {
    name: &'static str,
    node: usize,
    ip: &'static str,
    vlan: u16,
    groups: &'static str,
}

const PODS: [PodDef; 4] = [
    PodDef {
        name: "a",
        node: 1,
        ip: "192.168.64.11",
        vlan: 101,
        groups: "web",
    },
    PodDef {
        name: "b",
        node: 1,
        ip: "192.168.64.12",
        vlan: 102,
        groups: "web",
    },
    PodDef {
        name: "c",
        node: 2,
        ip: "192.168.64.21",
        vlan: 201,
        groups: "web",
    },
    PodDef {
        name: "d",
        node: 3,
        ip: "192.168.64.31",
        vlan: 301,
        groups: "locked",
    },
];

fn node_ip(n: usize) -> String {
    format!("192.168.0.1{n}")
}

fn pod_mac(vlan: u16) -> String {
    format!("0a:58:40:00:{:02x}:{:02x}", vlan >> 8, vlan & 0xff)
}

/// The VPC: the fabric bridge, the router with its trunk switch, the internet, a VPC host
/// and the external load balancer.
struct Vpc {
    trunk: Daemon,
    fabric: Netns,
    router: Netns,
    internet: Netns,
    vpc_host: Netns,
    elb: Netns,
}

impl Vpc {
    fn new(dir: &std::path::Path) -> Vpc {
        let fabric = Netns::new(&unique("efab")).expect("fabric ns");
        let router = Netns::new(&unique("ertr")).expect("router ns");
        let vpc_host = Netns::new(&unique("evpch")).expect("vpc host ns");
        let elb = Netns::new(&unique("eelb")).expect("elb ns");
        ns_sh(
            fabric.name(),
            "ip link add br0 type bridge && ip link set br0 up",
        );
        attach(&fabric, router.name(), "v0", ROUTER_MAC);
        ns_sh(
            router.name(),
            "sysctl -qw net.ipv4.ip_forward=1 && \
             for k in all default; do sysctl -qw net.ipv4.conf.$k.rp_filter=0; \
             sysctl -qw net.ipv4.conf.$k.send_redirects=0; done && \
             ip addr add 192.168.0.1/24 dev v0 && ip link set v0 up",
        );
        let internet = internet(router.name(), "e");
        for (ns, ip, mac) in [
            (&vpc_host, VPC_HOST, "02:00:c0:a8:00:32"),
            (&elb, ELB, "02:00:c0:a8:00:3c"),
        ] {
            attach(&fabric, ns.name(), "eth1", mac);
            ns_sh(
                ns.name(),
                &format!(
                    "ip addr add {ip}/24 dev eth1 && ip link set eth1 up && \
                     ip route add default via 192.168.0.1"
                ),
            );
        }
        // The VPC's view of the sub-ENIs: a switch on the router's trunk port that pops
        // each VLAN onto an interface of its own (and pushes it back).
        let trunk = Daemon::start(router.name(), &dir.join("trunk"));
        trunk.ctl(&["add-br", "trunk"]);
        trunk.ctl(&[
            "add-port",
            "trunk",
            "v0",
            "type=afpacket",
            &format!("ofport={TRUNK_UPLINK}"),
        ]);
        trunk.ctl(&["add-flow", "trunk", "table=0,priority=0,actions=drop"]);
        Vpc {
            trunk,
            fabric,
            router,
            internet,
            vpc_host,
            elb,
        }
    }

    /// The router's interface for sub-ENI `vlan` (pod `ip`), with the pod's route.
    fn sub_eni(&self, vlan: u16, ip: &str) {
        let tap = format!("e{vlan}");
        self.trunk.ctl(&[
            "add-port",
            "trunk",
            &tap,
            "type=tap",
            &format!("ofport={vlan}"),
        ]);
        self.trunk.ctl(&[
            "add-flow",
            "trunk",
            &format!(
                "table=0,priority=100,in_port={TRUNK_UPLINK},dl_vlan={vlan},actions=pop_vlan,output:{vlan}"
            ),
        ]);
        self.trunk.ctl(&[
            "add-flow",
            "trunk",
            &format!(
                "table=0,priority=100,in_port={vlan},actions=mod_vlan_vid:{vlan},output:{TRUNK_UPLINK}"
            ),
        ]);
        ns_sh(
            self.router.name(),
            &format!(
                "ip link set {tap} address {VPC_GW_MAC} && ip link set {tap} up && \
                 sysctl -qw net.ipv4.conf.{tap}.rp_filter=0 && \
                 sysctl -qw net.ipv6.conf.{tap}.disable_ipv6=1 && \
                 ip addr add 192.168.64.1/32 dev {tap} && ip route replace {ip}/32 dev {tap}"
            ),
        );
    }
}

/// A veth from the fabric bridge to `ns`'s `iface` with `mac`.
fn attach(fabric: &Netns, ns: &str, iface: &str, mac: &str) {
    common::vpc::attach(fabric.name(), "br0", ns, iface, mac);
}

/// A pod on a veth: `port` in `node`, `eth0` in a new namespace, default route through the
/// VPC gateway (resolved by ARP through the VPC: the switch does not answer it).
fn eni_pod(node: &str, tag: &str, port: &str, ip: &str, mac: &str) -> Netns {
    veth_pod(node, tag, port, ip, mac, "192.168.64.1", None)
}

/// The security groups every node is given: `web` opens 8081 to its members, to the VPC's
/// node subnet (hosts, the load balancer) and to the outside client's network, and ICMP;
/// `locked` has no ingress rule and lets its pods out only to `web`'s members on 8000-8099.
/// Members on other nodes are listed (this node's are the pods that name the group).
fn groups(n: usize) -> String {
    let web_elsewhere: Vec<String> = PODS
        .iter()
        .filter(|p| p.groups == "web" && p.node != n)
        .map(|p| format!("\"{}\"", p.ip))
        .collect();
    format!(
        "[[security_groups]]\nname = \"web\"\nmembers = [{}]\nrules = [\n\
         {{ direction = \"ingress\", protocol = \"tcp\", ports = \"{WHO_PORT}\", remote_group = \"web\" }},\n\
         {{ direction = \"ingress\", protocol = \"tcp\", ports = \"{WHO_PORT}\", remote_cidr = \"192.168.0.0/24\" }},\n\
         {{ direction = \"ingress\", protocol = \"tcp\", ports = \"{WHO_PORT}\", remote_cidr = \"198.51.100.0/24\" }},\n\
         {{ direction = \"ingress\", protocol = \"icmp\" }},\n]\n\
         [[security_groups]]\nname = \"locked\"\nrules = [\n\
         {{ direction = \"egress\", protocol = \"tcp\", ports = \"8000-8099\", remote_group = \"web\" }},\n]\n",
        web_elsewhere.join(", ")
    )
}

/// Node `n`'s file (1-based).
fn eni_config(n: usize) -> String {
    let mut s = format!(
        "[node]\nname = \"node{n}\"\nunderlay_ip = \"{}\"\nunderlay_interface = \"eth1\"\n\
         underlay_gateway = \"192.168.0.1\"\npod_cidr = \"192.168.64.0/24\"\n\
         gateway_ip = \"192.168.64.1\"\ngateway_mac = \"{VPC_GW_MAC}\"\nmode = \"eni\"\n",
        node_ip(n)
    );
    for p in PODS.iter().filter(|p| p.node == n) {
        s.push_str(&format!(
            "[[pods]]\nname = \"{name}\"\nport = \"pod{name}\"\nip = \"{ip}\"\nmac = \"{mac}\"\n\
             vlan = {vlan}\nsecurity_groups = [\"{g}\"]\n",
            name = p.name,
            ip = p.ip,
            mac = pod_mac(p.vlan),
            vlan = p.vlan,
            g = p.groups
        ));
        if p.name == "a" {
            s.push_str(&format!("eip = \"{EIP_A}\"\n"));
        }
    }
    if n == 1 {
        s.push_str(&format!(
            "[[services]]\nname = \"web\"\ncluster_ip = \"10.247.0.10\"\nport = 80\n\
             target_port = 8081\nbackends = [{{ ip = \"192.168.64.21\" }}]\n\
             [[services]]\nname = \"self-a\"\ncluster_ip = \"{SELF_A}\"\nport = 80\n\
             target_port = 8081\nbackends = [{{ ip = \"192.168.64.11\" }}]\n\
             [[services]]\nname = \"np-remote\"\ntype = \"NodePort\"\nnode_port = {NP_REMOTE}\n\
             port = 80\ntarget_port = 8081\nbackends = [{{ ip = \"192.168.64.21\" }}]\n\
             [[services]]\nname = \"np-local\"\ntype = \"NodePort\"\nnode_port = {NP_LOCAL}\n\
             port = 80\ntarget_port = 8081\nbackends = [{{ ip = \"192.168.64.11\" }}]\n\
             [[services]]\nname = \"dnat\"\ntype = \"DNAT\"\nexternal_ip = \"{DNAT_IP}\"\n\
             port = 80\ntarget_port = 8081\nbackends = [{{ ip = \"192.168.64.21\" }}]\n"
        ));
    }
    if n == 2 {
        s.push_str(&format!(
            "[[services]]\nname = \"lb\"\ntype = \"LoadBalancer\"\nexternal_ip = \"{LB_VIP}\"\n\
             passthrough = true\nport = 80\ntarget_port = 8081\n\
             backends = [{{ ip = \"192.168.64.21\" }}]\n"
        ));
    }
    s.push_str(&groups(n));
    s.push_str("[egress]\nsnat = true\nno_snat_cidrs = [\"192.168.0.0/16\"]\n");
    s
}

/// Everything of one run; fields drop in order: daemons first, then the namespaces.
struct Cluster {
    daemons: Vec<Daemon>,
    pods: Vec<Netns>,
    nodes: Vec<Netns>,
    vpc: Vpc,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.daemons.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build(config: fn(usize) -> String) -> Cluster {
    let dir = std::env::temp_dir().join(unique("eni"));
    std::fs::create_dir_all(&dir).expect("dir");
    let vpc = Vpc::new(&dir);
    let mut nodes = Vec::new();
    for n in 1..=3 {
        let ns = Netns::new(&unique(&format!("en{n}"))).expect("node ns");
        attach(
            &vpc.fabric,
            ns.name(),
            "eth1",
            &format!("02:00:c0:a8:00:1{n}"),
        );
        ns_sh(
            ns.name(),
            &format!(
                "ip addr add {}/24 dev eth1 && ip link set eth1 up && ip route add default via 192.168.0.1",
                node_ip(n)
            ),
        );
        nodes.push(ns);
    }
    let mut pods = Vec::new();
    for p in &PODS {
        vpc.sub_eni(p.vlan, p.ip);
        pods.push(eni_pod(
            nodes[p.node - 1].name(),
            &format!("ep{}", p.name),
            &format!("pod{}", p.name),
            p.ip,
            &pod_mac(p.vlan),
        ));
    }
    ns_sh(
        vpc.router.name(),
        &format!(
            "ip route add {EIP_A}/32 via 192.168.64.11 dev e101 onlink && \
             ip route add {EIP_C}/32 via 192.168.64.21 dev e201 onlink && \
             ip route add {DNAT_IP}/32 via {}",
            node_ip(1)
        ),
    );
    let daemons = start_nodes(&nodes, &dir, config);
    Cluster {
        daemons,
        pods,
        nodes,
        vpc,
        dir,
    }
}

fn denied(d: &Daemon) -> u64 {
    d.drops("br-int", "secgroup_denied")
}

#[test]
fn eni_mode() {
    if !require_root("eni_mode") {
        return;
    }
    let c = build(eni_config);
    let (daemons, pods, vpc) = (&c.daemons, &c.pods, &c.vpc);
    let pod = |name: &str| {
        let i = PODS.iter().position(|p| p.name == name).expect("pod");
        (pods[i].name(), PODS[i].ip)
    };
    let mut servers = Vec::new();
    for (i, p) in PODS.iter().enumerate() {
        servers.push(who_server(pods[i].name(), p.name, WHO_PORT, 90));
    }
    servers.push(who_server(pod("c").0, "c", CLOSED_PORT, 90));
    servers.push(who_server(pod("a").0, "a", CLOSED_PORT, 90));
    servers.push(who_server(vpc.internet.name(), "public", WHO_PORT, 90));
    let dump = |n: usize| {
        format!(
            "node{n}:\n{}\n{}\n{}\ntrunk:\n{}",
            daemons[n - 1].ctl(&["dump-flows", "br-int"]),
            daemons[n - 1].ctl(&["dump-conntrack", "br-int"]),
            daemons[n - 1].ctl(&["dump-drops", "br-int"]),
            vpc.trunk.ctl(&["dump-flows", "trunk"])
        )
    };

    // Pods on VLANs across nodes: a (node 1) -> c (node 2) leaves node 1 tagged 101 (seen on
    // the bridge), the VPC router routes it onto c's VLAN 201.
    let cap = Capture::start(vpc.fabric.name(), "br0", 2, "vlan 101 and tcp port 8081");
    let got = who_retry(pod("a").0, None, pod("c").1, WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some("c 192.168.64.11"),
        "a -> c\n{}\n{}",
        dump(1),
        dump(2)
    );
    let wire = cap.finish(Duration::from_secs(3));
    assert!(
        wire.contains("vlan 101") && wire.contains("192.168.64.11"),
        "a's frames on the wire:\n{wire}"
    );
    for (from, to) in [("c", "a"), ("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")] {
        let got = who_retry(pod(from).0, None, pod(to).1, WHO_PORT);
        assert_eq!(
            got.as_deref(),
            Some(format!("{to} {}", pod(from).1).as_str()),
            "{from} -> {to}\n{}\n{}",
            dump(1),
            dump(2)
        );
    }
    // The switch answers nothing for the VPC: the pods resolved their gateway through it.
    let neigh = ns_sh(pod("a").0, "ip neigh show 192.168.64.1");
    assert!(neigh.contains(VPC_GW_MAC), "{neigh}");

    // Security groups. d (group "locked") is not a member of "web": a refuses it.
    let before = denied(&daemons[0]);
    assert_eq!(
        who(pod("d").0, None, pod("a").1, WHO_PORT),
        None,
        "d -> a passed"
    );
    assert!(denied(&daemons[0]) > before, "{}", dump(1));
    // c's group opens 8081 only: a's connection to 8082 is refused on node 2.
    let before = denied(&daemons[1]);
    assert_eq!(
        who(pod("a").0, None, pod("c").1, CLOSED_PORT),
        None,
        "a -> c:8082"
    );
    assert!(denied(&daemons[1]) > before, "{}", dump(2));
    // "locked" lets d out only to web's members: the public host is refused on node 3.
    let before = denied(&daemons[2]);
    assert_eq!(
        who(pod("d").0, None, PUBLIC_HOST, WHO_PORT),
        None,
        "d -> public"
    );
    assert!(denied(&daemons[2]) > before, "{}", dump(3));
    // Remote groups name members on other nodes: d's egress (node 3) resolves web's member c
    // (node 2) and lets the connection out; c's ingress on node 2 refuses d (not in web).
    let (before3, before2) = (denied(&daemons[2]), denied(&daemons[1]));
    assert_eq!(
        who(pod("d").0, None, pod("c").1, WHO_PORT),
        None,
        "d -> c passed"
    );
    assert_eq!(
        denied(&daemons[2]),
        before3,
        "d -> c refused on node 3\n{}",
        dump(3)
    );
    assert!(
        denied(&daemons[1]) > before2,
        "d -> c not refused on node 2\n{}",
        dump(2)
    );
    // A refused connection stays refused from both ends: the VPC host's datagram to d (no
    // ingress rule) is dropped, and d's datagrams back on the same ports, which would find
    // the connection in the reply direction, do not leave node 3 either.
    let before = denied(&daemons[2]);
    ns_sh(
        vpc.vpc_host.name(),
        &format!(
            "echo probe | timeout 2 socat -u - UDP:{}:6000,sourceport=5000",
            pod("d").1
        ),
    );
    // The probe's socket is gone: listen on its port for what d sends back.
    let receiver = {
        let host = vpc.vpc_host.name().to_string();
        std::thread::spawn(move || {
            ns_run(
                &host,
                &["timeout", "4", "socat", "-u", "UDP-RECV:5000", "STDOUT"],
                Duration::from_secs(6),
            )
            .stdout
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(denied(&daemons[2]) > before, "{}", dump(3));
    ns_sh(
        pod("d").0,
        &format!(
            "for i in 1 2 3; do echo reply | timeout 2 socat -u - UDP:{VPC_HOST}:5000,sourceport=6000; sleep 0.3; done"
        ),
    );
    let got = receiver.join().expect("receiver");
    assert!(
        !got.contains("reply"),
        "d answered through a refused connection: {got:?}\n{}",
        dump(3)
    );
    // A refusal binds the refused side only, as a stateful cloud group does: after the VPC
    // host's datagram to a (whose groups open no UDP) is refused, a's own datagrams to the
    // host on the same ports (a's egress is open) start a connection of their own and leave.
    let before = denied(&daemons[0]);
    ns_sh(
        vpc.vpc_host.name(),
        &format!(
            "echo probe | timeout 2 socat -u - UDP:{}:6001,sourceport=5001",
            pod("a").1
        ),
    );
    assert!(denied(&daemons[0]) > before, "{}", dump(1));
    let receiver = {
        let host = vpc.vpc_host.name().to_string();
        std::thread::spawn(move || {
            ns_run(
                &host,
                &["timeout", "4", "socat", "-u", "UDP-RECV:5001", "STDOUT"],
                Duration::from_secs(6),
            )
            .stdout
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    ns_sh(
        pod("a").0,
        &format!(
            "for i in 1 2 3; do echo hello | timeout 2 socat -u - UDP:{VPC_HOST}:5001,sourceport=6001; sleep 0.3; done"
        ),
    );
    let got = receiver.join().expect("receiver");
    assert!(
        got.contains("hello"),
        "a's own datagrams to a peer it refused did not leave: {got:?}\n{}",
        dump(1)
    );
    // The node's own address is let in through the host port only: b, masqueraded to the
    // node's address on its way to a's EIP, is not the node, and a's groups do not open 8082.
    let before = denied(&daemons[0]);
    assert_eq!(
        who(pod("b").0, None, EIP_A, CLOSED_PORT),
        None,
        "b -> a's EIP on a port a's groups do not open\n{}",
        dump(1)
    );
    assert!(denied(&daemons[0]) > before, "{}", dump(1));
    // A VPC host reaches a pod of "web"; the node reaches d, which has no ingress rule.
    let got = who_retry(vpc.vpc_host.name(), None, pod("a").1, WHO_PORT);
    assert_eq!(got.as_deref(), Some(format!("a {VPC_HOST}").as_str()));
    let got = who_retry(c.nodes[2].name(), None, pod("d").1, WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some(format!("d {}", node_ip(3)).as_str()),
        "node 3 -> d\n{}",
        dump(3)
    );

    // EIP: the outside client reaches a at its EIP and a sees the client; a's own
    // connections to the world leave as the EIP.
    let got = who_retry(vpc.internet.name(), Some(OUTSIDE_CLIENT), EIP_A, WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some(format!("a {OUTSIDE_CLIENT}").as_str()),
        "client -> EIP\n{}",
        dump(1)
    );
    let got = who_retry(pod("a").0, None, PUBLIC_HOST, WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some(format!("public {EIP_A}").as_str()),
        "a -> public\n{}",
        dump(1)
    );
    // c has no EIP: masqueraded to its node's address.
    let got = who_retry(pod("c").0, None, PUBLIC_HOST, WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some(format!("public {}", node_ip(2)).as_str()),
        "c -> public\n{}",
        dump(2)
    );

    // EIPs bound and unbound at run time: a's EIP removed refuses the client, bound again
    // serves it; c gets one (its connections out leave as it instead of masqueraded).
    let client_to = |eip: &str| who_retry(vpc.internet.name(), Some(OUTSIDE_CLIENT), eip, WHO_PORT);
    let out = daemons[0].ctl(&["del-eip", "a"]);
    assert!(out.contains("pod a eip removed"), "{out}");
    assert_eq!(
        who(vpc.internet.name(), Some(OUTSIDE_CLIENT), EIP_A, WHO_PORT),
        None,
        "client -> EIP after del-eip\n{}",
        dump(1)
    );
    let flows1 = daemons[0].ctl(&["dump-flows", "br-int"]);
    assert!(!flows1.contains(EIP_A), "{flows1}");
    daemons[0].ctl(&["set-eip", "a", EIP_A]);
    assert_eq!(
        client_to(EIP_A).as_deref(),
        Some(format!("a {OUTSIDE_CLIENT}").as_str()),
        "client -> EIP after set-eip\n{}",
        dump(1)
    );
    let out = daemons[1].ctl(&["set-eip", "c", EIP_C]);
    assert!(out.contains(&format!("pod c eip={EIP_C}")), "{out}");
    assert_eq!(
        client_to(EIP_C).as_deref(),
        Some(format!("c {OUTSIDE_CLIENT}").as_str()),
        "client -> c's new EIP\n{}",
        dump(2)
    );
    let got = who_retry(pod("c").0, None, PUBLIC_HOST, WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some(format!("public {EIP_C}").as_str()),
        "c -> public with its EIP\n{}",
        dump(2)
    );
    // Refused where it makes no sense.
    let r = daemons[1].ctl_run(&["set-eip", "nosuch", EIP_C]);
    assert!(
        !r.ok && r.stderr.contains("no pod named nosuch"),
        "{}",
        r.stderr
    );
    let r = daemons[1].ctl_run(&["set-eip", "c", "192.168.64.99"]);
    assert!(!r.ok && r.stderr.contains("eip"), "{}", r.stderr);
    daemons[1].ctl(&["del-eip", "c"]);

    // ClusterIP on node 1, backend c on node 2.
    let got = who_retry(pod("b").0, None, "10.247.0.10", 80);
    assert_eq!(
        got.as_deref(),
        Some(format!("c {}", pod("b").1).as_str()),
        "b -> ClusterIP\n{}\n{}",
        dump(1),
        dump(2)
    );

    // Hairpin: a reaches a ClusterIP whose only backend is itself (seen from the gateway
    // address); b, on the same node, reaches it too and is seen as itself.
    let got = who_retry(pod("a").0, None, SELF_A, 80);
    assert_eq!(
        got.as_deref(),
        Some("a 192.168.64.1"),
        "a -> itself through a ClusterIP\n{}",
        dump(1)
    );
    let got = who_retry(pod("b").0, None, SELF_A, 80);
    assert_eq!(
        got.as_deref(),
        Some(format!("a {}", pod("b").1).as_str()),
        "b -> a through a ClusterIP\n{}",
        dump(1)
    );

    // The node itself reaches ClusterIPs through its host port (from its own address): a
    // backend on another node (source-NATed to the node's address there and back) and one
    // on this node.
    for (vip, to) in [("10.247.0.10", "c"), (SELF_A, "a")] {
        let got = who_retry(c.nodes[0].name(), None, vip, 80);
        assert_eq!(
            got.as_deref(),
            Some(format!("{to} {}", node_ip(1)).as_str()),
            "node 1 -> ClusterIP {vip}\n{}\n{}",
            dump(1),
            dump(2)
        );
    }

    // NodePorts of node 1 from the outside client: to c on node 2 (through the VPC, c sees
    // node 1's address) and to a on node 1; a DNAT address routed to node 1, to c. Pods reach
    // the NodePort too.
    for (port, to, what) in [
        (NP_REMOTE, "c", "NodePort -> c (node 2)"),
        (NP_LOCAL, "a", "NodePort -> a (node 1)"),
    ] {
        let got = who_retry(vpc.internet.name(), Some(OUTSIDE_CLIENT), &node_ip(1), port);
        assert_eq!(
            got.as_deref(),
            Some(format!("{to} {}", node_ip(1)).as_str()),
            "{what}\n{}\n{}",
            dump(1),
            dump(2)
        );
    }
    let got = who_retry(vpc.internet.name(), Some(OUTSIDE_CLIENT), DNAT_IP, 80);
    assert_eq!(
        got.as_deref(),
        Some(format!("c {}", node_ip(1)).as_str()),
        "DNAT -> c\n{}\n{}",
        dump(1),
        dump(2)
    );
    let got = who_retry(pod("b").0, None, &node_ip(1), NP_REMOTE);
    assert_eq!(
        got.as_deref(),
        Some(format!("c {}", pod("b").1).as_str()),
        "b -> NodePort\n{}",
        dump(1)
    );

    // Passthrough load balancer: the ELB connects to the pod's own address; node 2 has no
    // frontend for the LoadBalancer address and the pod sees the ELB, not a node.
    let _elb = Spawned::start(
        vpc.elb.name(),
        "elb",
        &[
            "timeout",
            "60",
            "socat",
            "TCP-LISTEN:80,fork,reuseaddr",
            &format!("TCP:{}:{WHO_PORT}", pod("c").1),
        ],
    );
    wait_listening(vpc.elb.name(), "tcp", 80);
    let got = who_retry(vpc.internet.name(), None, ELB, 80);
    assert_eq!(
        got.as_deref(),
        Some(format!("c {ELB}").as_str()),
        "client -> ELB -> c\n{}",
        dump(2)
    );
    let flows2 = daemons[1].ctl(&["dump-flows", "br-int"]);
    assert!(!flows2.contains(LB_VIP), "{flows2}");

    // A pod added at run time on node 3 (group "web"): a reaches it, d does not; removed,
    // nothing does.
    let e = eni_pod(
        c.nodes[2].name(),
        "epe",
        "pode",
        "192.168.64.32",
        &pod_mac(302),
    );
    vpc.sub_eni(302, "192.168.64.32");
    daemons[2].ctl(&[
        "add-pod",
        "e",
        "port=pode",
        "ip=192.168.64.32",
        &format!("mac={}", pod_mac(302)),
        "vlan=302",
        "security_groups=web",
    ]);
    let _se = who_server(e.name(), "e", WHO_PORT, 90);
    let got = who_retry(pod("a").0, None, "192.168.64.32", WHO_PORT);
    assert_eq!(
        got.as_deref(),
        Some(format!("e {}", pod("a").1).as_str()),
        "a -> e\n{}",
        dump(3)
    );
    assert_eq!(
        who(pod("d").0, None, "192.168.64.32", WHO_PORT),
        None,
        "d -> e"
    );
    daemons[2].ctl(&["del-pod", "e"]);
    assert_eq!(
        who(pod("a").0, None, "192.168.64.32", WHO_PORT),
        None,
        "a -> removed e"
    );
    drop(servers);
}

/// iperf3 TCP, 3 s, from pod a (node 1) to pod c (node 2) through the VPC router, and to b
/// on the same node. A measurement, not a check: `cargo test --release -p vswitch --test
/// e2e_eni -- --ignored --nocapture eni_pod_to_pod_tcp` (docs/benchmarks.md).
#[test]
#[ignore]
fn eni_pod_to_pod_tcp() {
    if !require_root("eni_pod_to_pod_tcp") {
        return;
    }
    let c = build(eni_config);
    for (ns, dev) in c
        .pods
        .iter()
        .map(|p| (p, "eth0"))
        .chain(c.nodes.iter().map(|n| (n, "eth1")))
    {
        ns_sh(
            ns.name(),
            &format!("ethtool -K {dev} tso on gso on gro on >/dev/null 2>&1; true"),
        );
    }
    for (to, what) in [(2, "other node, through the VPC router"), (1, "same node")] {
        let server = Spawned::start(
            c.pods[to].name(),
            "iperf3",
            &["timeout", "20", "iperf3", "-s", "-1", "-p", "8081"],
        );
        wait_listening(c.pods[to].name(), "tcp", 8081);
        let r = ns_run(
            c.pods[0].name(),
            &[
                "timeout",
                "15",
                "iperf3",
                "-c",
                PODS[to].ip,
                "-p",
                "8081",
                "-t",
                "3",
                "-J",
            ],
            Duration::from_secs(20),
        );
        assert!(
            r.ok,
            "iperf3 -> {}: {}{}",
            PODS[to].name, r.stdout, r.stderr
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("iperf3 json");
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .expect("bits_per_second");
        println!(
            "mode eni: pod a -> pod {} ({what}): {:.2} Gbit/s",
            PODS[to].name,
            bps / 1e9
        );
        drop(server);
    }
}
