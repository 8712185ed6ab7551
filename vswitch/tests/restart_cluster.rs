//! Established TCP connections across a graceful restart and an upgrade of both nodes of a
//! two-node cluster (tunnel mode, VXLAN between them), for the three kinds of NAT the node
//! agent sets up:
//!
//! - egress SNAT: pod a (node 1) to a public host, masqueraded to node 1's underlay address;
//! - a NodePort from outside: a client on the public host to node 1's address, the backend on
//!   node 2 (policy "cluster": DNAT and SNAT to node 1's gateway, then VXLAN);
//! - a ClusterIP whose backend is on another node: pod a to a Service whose only backend is
//!   pod b on node 2.
//!
//! Each connection sends a numbered line every 10 ms for the whole test and its peer answers
//! with the line and the address:port it sees the connection come from: the connection must
//! carry on without a reset or an error, every reply must name the same address:port (the
//! NAT binding is kept), and the conntrack entries must be the same before, between and after.
//! The longest pause between two replies is printed. Root only.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{
    GW_MAC, OUTSIDE_CLIENT, PUBLIC_HOST, PUBLIC_MAC, pod_eth0, pod_veth, public_host, underlay,
    underlay_node,
};
use common::*;

const VIP: &str = "10.247.0.10";
const POD_A: &str = "172.16.1.11";
const POD_B: &str = "172.16.2.11";
/// Pod b's servers: the ClusterIP's and the NodePort's backends.
const CLUSTER_PORT: u16 = 8080;
const NODE_PORT_TARGET: u16 = 8081;
const NODE_PORT: u16 = 30080;
/// The public host's server (egress SNAT).
const PUBLIC_PORT: u16 = 9000;

/// Node `n`'s node file: pod a on node 1, pod b on node 2; node 1 has the uplink (egress
/// SNAT, outside clients); both know the ClusterIP and the NodePort, whose backend is pod b.
fn node_config(n: usize) -> String {
    let mut s = format!(
        "[node]\nname = \"node{n}\"\nunderlay_ip = \"192.168.0.{ip}\"\npod_cidr = \"172.16.{n}.0/24\"\n\
         gateway_ip = \"172.16.{n}.1\"\ngateway_mac = \"{GW_MAC}\"\nmode = \"tunnel\"\n",
        ip = 10 + n
    );
    if n == 1 {
        s.push_str(&format!(
            "underlay_interface = \"eth1\"\n[tunnel]\nvni = 100\n\
             [egress]\nsnat = true\nnext_hop_mac = \"{PUBLIC_MAC}\"\n"
        ));
    } else {
        s.push_str("[tunnel]\nvni = 100\n");
    }
    let p = 3 - n;
    s.push_str(&format!(
        "[[peers]]\nname = \"node{p}\"\nunderlay_ip = \"192.168.0.{}\"\npod_cidr = \"172.16.{p}.0/24\"\n",
        10 + p
    ));
    let (name, port, ip, mac) = if n == 1 {
        ("a", "pa", POD_A, "0a:58:0c:01:00:0b")
    } else {
        ("b", "pb", POD_B, "0a:58:0c:02:00:0b")
    };
    s.push_str(&format!(
        "[[pods]]\nname = \"{name}\"\nport = \"{port}\"\ntype = \"afpacket\"\nip = \"{ip}\"\nmac = \"{mac}\"\n"
    ));
    s.push_str(&format!(
        "[[services]]\nname = \"web\"\ncluster_ip = \"{VIP}\"\nport = 80\ntarget_port = {CLUSTER_PORT}\n\
         backends = [{{ ip = \"{POD_B}\" }}]\n\
         [[services]]\nname = \"np\"\ntype = \"NodePort\"\nnode_port = {NODE_PORT}\nport = 80\n\
         target_port = {NODE_PORT_TARGET}\nbackends = [{{ ip = \"{POD_B}\" }}]\n"
    ));
    s
}

/// Two nodes, two pods, the public host on one underlay bridge; a vswitchd per node; the echo
/// servers running (for 90 s at most).
struct Cluster {
    /// Declared first: servers and daemons go before the namespaces.
    servers: Vec<Spawned>,
    daemons: Vec<Daemon>,
    configs: Vec<PathBuf>,
    helper: PathBuf,
    pods: Vec<Netns>,
    nodes: Vec<Netns>,
    public: Netns,
    _underlay: Netns,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.servers.clear();
        self.daemons.clear();
        for p in &self.configs {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.helper);
    }
}

fn build() -> Cluster {
    let underlay = underlay("rcu");
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for n in 1..=2usize {
        let ns = underlay_node(&underlay, &format!("rcn{n}"), n);
        let pod = Netns::new(&unique(&format!("rcp{n}"))).expect("pod ns");
        let (port, ip, mac) = if n == 1 {
            ("pa", POD_A, "0a:58:0c:01:00:0b")
        } else {
            ("pb", POD_B, "0a:58:0c:02:00:0b")
        };
        pod_veth(ns.name(), port, pod.name());
        pod_eth0(pod.name(), n, ip, mac, 1450, true);
        nodes.push(ns);
        pods.push(pod);
    }
    let public = public_host(&underlay, "rcpub");
    let helper = temp_script("restart-cluster.py", ECHO_HELPER);
    let mut c = Cluster {
        servers: Vec::new(),
        daemons: Vec::new(),
        configs: Vec::new(),
        helper,
        pods,
        nodes,
        public,
        _underlay: underlay,
    };
    for n in 1..=2usize {
        let config = temp_script(&format!("restart-cluster-node{n}.toml"), &node_config(n));
        let rundir = std::env::temp_dir().join(format!("{}-run", c.nodes[n - 1].name()));
        let d = Daemon::start_with(
            c.nodes[n - 1].name(),
            &rundir,
            &["--config", config.to_str().unwrap()],
        );
        c.configs.push(config);
        c.daemons.push(d);
    }
    let helper = c.helper.to_str().unwrap().to_string();
    for (ns, port) in [
        (c.pods[1].name().to_string(), CLUSTER_PORT),
        (c.pods[1].name().to_string(), NODE_PORT_TARGET),
        (c.public.name().to_string(), PUBLIC_PORT),
    ] {
        let p = port.to_string();
        c.servers.push(Spawned::start(
            &ns,
            &format!("srv{port}"),
            &["python3", &helper, "serve", &p, "90"],
        ));
        wait_listening(&ns, "tcp", port);
    }
    c
}

impl Cluster {
    /// Node `n`'s configuration file (for restarts).
    fn config(&self, n: usize) -> String {
        self.configs[n - 1].to_str().unwrap().to_string()
    }

    /// Both nodes' conntrack tables.
    fn conntrack(&self) -> [String; 2] {
        [
            self.daemons[0].ctl(&["dump-conntrack"]),
            self.daemons[1].ctl(&["dump-conntrack"]),
        ]
    }

    /// Stops node `n` (SIGTERM) and starts `bin` on its run directory and node file;
    /// returns the time from SIGTERM to the new process's socket.
    fn restart(&mut self, n: usize, bin: &Path) -> Duration {
        let config = self.config(n);
        let d = &mut self.daemons[n - 1];
        let t0 = Instant::now();
        let st = d.stop_gracefully();
        assert!(st.success(), "node {n} exit {st}:\n{}", d.log_text());
        d.start_again_from(bin, &["--config", &config]);
        t0.elapsed()
    }

    fn logs(&self) -> String {
        format!(
            "node 1:\n{}\nnode 2:\n{}",
            self.daemons[0].log_text(),
            self.daemons[1].log_text()
        )
    }
}

/// One long-lived connection: who runs it and where to.
struct Conn {
    what: &'static str,
    ns: String,
    dst: String,
    port: u16,
    src: &'static str,
}

fn start_client(helper: &Path, c: &Conn, secs: u32) -> std::thread::JoinHandle<Run> {
    let (ns, dst, port, src) = (c.ns.clone(), c.dst.clone(), c.port.to_string(), c.src);
    let helper = helper.to_str().unwrap().to_string();
    std::thread::spawn(move || {
        ns_run(
            &ns,
            &[
                "python3",
                &helper,
                "client",
                &dst,
                &port,
                &secs.to_string(),
                src,
            ],
            Duration::from_secs(u64::from(secs) + 30),
        )
    })
}

/// The conntrack lines of `dump` that belong to `conn` (by its original destination), sorted;
/// the timeout column is left out.
fn entries(dump: &str, needles: &[String]) -> Vec<String> {
    let mut v: Vec<String> = dump
        .lines()
        .filter(|l| l.starts_with("tcp,") && needles.iter().all(|n| l.contains(n.as_str())))
        .map(|l| {
            l.split(',')
                .filter(|f| !f.starts_with("timeout="))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn snat_node_port_and_remote_cluster_ip_connections_survive_restart_and_upgrade() {
    if !require_root("snat_node_port_and_remote_cluster_ip_connections_survive_restart_and_upgrade")
    {
        return;
    }
    let mut c = build();
    let (pod_a, pod_b) = (c.pods[0].name().to_string(), c.pods[1].name().to_string());
    // Everything reachable before: pod to pod over VXLAN, the public host.
    assert_ping(&pod_a, POD_B, 2);
    assert!(
        ping_until(&pod_a, PUBLIC_HOST, 5),
        "pod a -> public host: no reply\n{}",
        c.logs()
    );
    let conns = [
        Conn {
            what: "egress SNAT",
            ns: pod_a.clone(),
            dst: PUBLIC_HOST.to_string(),
            port: PUBLIC_PORT,
            src: "-",
        },
        Conn {
            what: "NodePort from outside",
            ns: c.public.name().to_string(),
            dst: "192.168.0.11".to_string(),
            port: NODE_PORT,
            src: OUTSIDE_CLIENT,
        },
        Conn {
            what: "ClusterIP, backend on node 2",
            ns: pod_a.clone(),
            dst: VIP.to_string(),
            port: 80,
            src: "-",
        },
    ];
    const SECS: u32 = 16;
    let clients: Vec<_> = conns
        .iter()
        .map(|k| start_client(&c.helper, k, SECS))
        .collect();
    // All three established in node 1's conntrack (by their original destinations).
    let needles: [Vec<String>; 3] = [
        vec![
            format!("dst={PUBLIC_HOST},"),
            format!("dport={PUBLIC_PORT})"),
        ],
        vec![
            format!("src={OUTSIDE_CLIENT},"),
            format!("dport={NODE_PORT})"),
        ],
        vec![format!("dst={VIP},"), "dport=80)".to_string()],
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ct = c.daemons[0].ctl(&["dump-conntrack"]);
        let up = needles
            .iter()
            .all(|n| entries(&ct, n).iter().any(|l| l.contains("ESTABLISHED")));
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every connection established:\n{ct}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let before = c.conntrack();
    let vswitchd = PathBuf::from(env!("CARGO_BIN_EXE_vswitchd"));
    // Graceful restart of node 1 (which holds every NAT binding), then node 2.
    let r1 = c.restart(1, &vswitchd);
    std::thread::sleep(Duration::from_millis(1500));
    let r2 = c.restart(2, &vswitchd);
    std::thread::sleep(Duration::from_millis(1500));
    let restarted = c.conntrack();
    // An upgrade of both: another binary (a copy at another path stands for a rebuilt one).
    let next = std::env::temp_dir().join(format!("{}-vswitchd-next", c.nodes[0].name()));
    std::fs::copy(&vswitchd, &next).unwrap();
    let u1 = c.restart(1, &next);
    std::thread::sleep(Duration::from_millis(1500));
    let u2 = c.restart(2, &next);
    let upgraded = c.conntrack();
    let _ = std::fs::remove_file(&next);

    let mut report = Vec::new();
    for ((k, client), needle) in conns.iter().zip(clients).zip(&needles) {
        let run = client.join().unwrap();
        let res: serde_json::Value = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|_| panic!("{} client: {}{}", k.what, run.stdout, run.stderr));
        assert!(
            res.get("err").is_none(),
            "{} connection broke: {res}\n{}",
            k.what,
            c.logs()
        );
        // Over the whole test at 10 ms a line: most of them answered.
        assert!(res["echoed"].as_u64().unwrap() > 300, "{}: {res}", k.what);
        // The peer saw the connection come from one address:port all along.
        let peers = res["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1, "{}: the peer saw {peers:?}", k.what);
        let seen = peers[0].as_str().unwrap().to_string();
        // The same entries on node 1 before, between and after.
        let was = entries(&before[0], needle);
        assert!(!was.is_empty(), "{}: no entry in\n{}", k.what, before[0]);
        assert_eq!(
            entries(&restarted[0], needle),
            was,
            "{}: after the restart",
            k.what
        );
        assert_eq!(
            entries(&upgraded[0], needle),
            was,
            "{}: after the upgrade",
            k.what
        );
        report.push(format!(
            "{}: peer saw {seen}, {} replies, longest pause {:.0} ms",
            k.what,
            res["echoed"],
            res["max_gap_ms"].as_f64().unwrap_or_default()
        ));
    }
    // What each peer saw: the masquerade address (SNAT), node 1's gateway (NodePort,
    // policy "cluster"), pod a itself (ClusterIP).
    assert!(
        report[0].contains("peer saw 192.168.0.11:"),
        "{}",
        report[0]
    );
    assert!(report[1].contains("peer saw 172.16.1.1:"), "{}", report[1]);
    assert!(
        report[2].contains(&format!("peer saw {POD_A}:")),
        "{}",
        report[2]
    );
    // Node 2's entries of the two connections to pod b are the same too.
    let b_needle = vec![format!("dst={POD_B},")];
    let was = entries(&before[1], &b_needle);
    assert_eq!(
        entries(&restarted[1], &b_needle),
        was,
        "node 2 after restart"
    );
    assert_eq!(
        entries(&upgraded[1], &b_needle),
        was,
        "node 2 after upgrade"
    );
    for d in &c.daemons {
        assert!(
            d.log_text()
                .contains("connections taken over from the handover"),
            "{}",
            d.log_text()
        );
    }
    println!(
        "restarts (SIGTERM to socket): node 1 {} ms, node 2 {} ms; upgrades: node 1 {} ms, node 2 {} ms",
        r1.as_millis(),
        r2.as_millis(),
        u1.as_millis(),
        u2.as_millis()
    );
    for line in &report {
        println!("{line}");
    }
    let _ = pod_b;
}
