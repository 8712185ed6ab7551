//! Restart, upgrade and crash: the configuration (bridges, ports, flows, groups, the node
//! agent's pods and Services) comes back from the state file, TAP devices and their addresses
//! survive, a graceful restart hands the connection table over so that an established TCP
//! connection through a ClusterIP keeps flowing, and a corrupt state file is refused. Root
//! only, each test in namespaces of its own.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// What must be equal before and after a restart, command by command.
/// (`show` lists the ports' MACs as they were when added; the agent changes the host port's
/// afterwards, so it is compared only where no agent runs.)
fn config_view(d: &Daemon, bridges: &[&str], with_show: bool) -> Vec<(String, String)> {
    let mut out = vec![("list-br".to_string(), d.ctl(&["list-br"]))];
    for br in bridges {
        let sorted = |text: String| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort();
            lines.join("\n")
        };
        out.push((format!("list-ports {br}"), d.ctl(&["list-ports", br])));
        out.push((
            format!("dump-flows {br}"),
            sorted(d.ctl(&["dump-flows", br, "--no-stats"])),
        ));
        out.push((format!("dump-groups {br}"), d.ctl(&["dump-groups", br])));
        if with_show {
            out.push((format!("show {br}"), d.ctl(&["show", br])));
        }
    }
    out
}

fn assert_same_view(before: &[(String, String)], after: &[(String, String)], when: &str) {
    assert_eq!(before.len(), after.len());
    for ((cmd, b), (_, a)) in before.iter().zip(after) {
        assert_eq!(b, a, "{cmd} differs after {when}");
    }
}

/// `ip -o` line of a device in `ns` (ifindex, name, addresses), or None when it is gone.
fn device(ns: &str, dev: &str) -> Option<(String, String)> {
    let link = ns_run(
        ns,
        &["ip", "-o", "link", "show", "dev", dev],
        Duration::from_secs(5),
    );
    if !link.ok {
        return None;
    }
    let index = link
        .stdout
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let addr = ns_sh(
        ns,
        &format!("ip -o -4 addr show dev {dev} | awk '{{print $4}}'"),
    );
    Some((index, addr.trim().to_string()))
}

/// Waits until the state file mentions `needle` (the writer settles changes for 50 ms).
fn wait_saved(rundir: &Path, needle: &str) {
    let db = rundir.join("vswitchd.db");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&db).is_ok_and(|t| t.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "{needle} never reached the state file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the daemon (SIGTERM, or SIGKILL with `kill`), starts the next one and waits until it
/// logs that it is ready (its socket exists before the state is restored).
fn restart_until_ready(d: &mut Daemon, kill: bool) {
    let ready = |d: &Daemon| d.log_text().matches("vswitchd ready").count();
    let before = ready(d);
    if kill {
        d.kill_hard();
    } else {
        assert!(d.stop_gracefully().success(), "{}", d.log_text());
    }
    d.start_again(&[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(d) <= before {
        assert!(Instant::now() < deadline, "not ready:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs vswitchd on `rundir` (with `extra` arguments) expecting it to refuse to start;
/// returns its stderr.
fn refused_start(ns: &str, rundir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        env!("CARGO_BIN_EXE_vswitchd"),
        "--rundir",
        rundir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = ns_run(ns, &args, Duration::from_secs(15));
    assert!(
        !r.ok && !r.timed_out,
        "vswitchd started: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        !rundir.join("vswitchd.ctl").exists(),
        "a refused start left its socket"
    );
    r.stderr
}

#[test]
fn configuration_survives_restart_crash_and_refuses_a_corrupt_state_file() {
    if !require_root("configuration_survives_restart_crash_and_refuses_a_corrupt_state_file") {
        return;
    }
    let node = Node::new("rcfg");
    let ns = node.name().to_string();
    ns_sh(
        &ns,
        "ip link add rv0 type veth peer name rv1 && ip link set rv0 up && ip link set rv1 up",
    );
    let rundir = std::env::temp_dir().join(format!("{ns}-run"));
    let mut d = Daemon::start(&ns, &rundir);
    for br in ["br0", "br1", "brgone"] {
        d.ctl(&["add-br", br]);
    }
    d.ctl(&["add-port", "br0", "rv0", "ofport=4"]);
    d.ctl(&["add-port", "br0", "rtap0", "type=tap", "ofport=5"]);
    d.ctl(&[
        "add-port",
        "br0",
        "rvx0",
        "type=vxlan",
        "options:remote_ip=flow",
        "options:key=flow",
        "options:dst_port=47999",
        "ofport=9",
    ]);
    d.ctl(&["add-port", "br1", "rv1"]);
    d.ctl(&["add-port", "br1", "rgone", "type=tap"]);
    d.ctl(&[
        "add-group",
        "br0",
        "group_id=7,type=select,bucket=weight:3,actions=output:4,bucket=actions=output:5",
    ]);
    let flows = rundir.join("flows.txt");
    std::fs::write(
        &flows,
        "table=0,priority=100,cookie=0x1234,idle_timeout=300,hard_timeout=600,send_flow_rem,ip,nw_dst=10.1.0.0/16,actions=group:7\n\
         table=0,priority=90,tcp,tp_dst=80,actions=ct(commit,zone=3,nat(dst=10.2.0.1:8080)),output:4\n\
         table=1,priority=5,arp,actions=NORMAL\n",
    )
    .unwrap();
    d.ctl(&["add-flows", "br0", flows.to_str().unwrap()]);
    // Flows and deletions from Open vSwitch's own tool persist too (when it is installed).
    let ofctl = std::process::Command::new("ovs-ofctl")
        .args([
            "-O",
            "OpenFlow13",
            "add-flow",
            &format!("unix:{}", rundir.join("br1.mgmt").display()),
            "table=2,priority=9,cookie=0x99,udp,actions=drop",
        ])
        .output();
    if !ofctl.is_ok_and(|o| o.status.success()) {
        d.ctl(&[
            "add-flow",
            "br1",
            "table=2,priority=9,cookie=0x99,udp,actions=drop",
        ]);
    }
    d.ctl(&["del-flows", "br0", "priority=0", "--strict"]);
    d.ctl(&["del-port", "br1", "rgone"]);
    d.ctl(&["del-br", "brgone"]);
    ns_sh(&ns, "ip addr add 10.99.0.1/24 dev rtap0");
    let tap_before = device(&ns, "rtap0").expect("TAP created");
    assert_eq!(tap_before.1, "10.99.0.1/24");
    assert!(device(&ns, "rgone").is_none(), "a deleted port's TAP stays");
    let before = config_view(&d, &["br0", "br1"], true);
    assert!(before[2].1.contains("cookie=0x1234"), "{}", before[2].1);

    // A graceful restart: the same configuration, the same TAP device with its address.
    let st = d.stop_gracefully();
    assert!(st.success(), "exit {st}:\n{}", d.log_text());
    assert!(
        !rundir.join("br0.mgmt").exists(),
        "a bridge socket left behind"
    );
    assert_eq!(device(&ns, "rtap0"), Some(tap_before.clone()), "TAP lost");
    let db = std::fs::read_to_string(rundir.join("vswitchd.db")).expect("state file");
    assert!(db.contains("\"format\": \"vswitchd-state\""), "{db}");
    d.start_again(&[]);
    let after = config_view(&d, &["br0", "br1"], true);
    assert_same_view(&before, &after, "a graceful restart");
    assert!(d.ctl(&["list-br"]).lines().all(|b| b != "brgone"));
    assert_eq!(device(&ns, "rtap0"), Some(tap_before.clone()));

    // A crash right after a change: the change is in the state file and comes back.
    d.ctl(&["add-flow", "br1", "priority=50,in_port=1,actions=drop"]);
    wait_saved(&rundir, "priority=50,in_port=1");
    let before = config_view(&d, &["br0", "br1"], true);
    d.kill_hard();
    d.start_again(&[]);
    assert_same_view(&before, &config_view(&d, &["br0", "br1"], true), "kill -9");
    assert_eq!(device(&ns, "rtap0"), Some(tap_before));

    // A damaged state file is refused by name, and nothing starts.
    d.stop_gracefully();
    let db = rundir.join("vswitchd.db");
    let good = std::fs::read_to_string(&db).unwrap();
    std::fs::write(&db, &good[..good.len() / 2]).unwrap();
    let err = refused_start(&ns, &rundir, &[]);
    assert!(err.contains("corrupt or truncated"), "{err}");
    std::fs::write(&db, "[node]\nname = \"x\"\n").unwrap();
    let err = refused_start(&ns, &rundir, &[]);
    assert!(err.contains("not a vswitchd-state file"), "{err}");
    std::fs::write(&db, good.replace("\"version\": 1", "\"version\": 99")).unwrap();
    let err = refused_start(&ns, &rundir, &[]);
    assert!(err.contains("version 99"), "{err}");

    // --fresh starts empty and replaces the file: the next start is empty too.
    d.start_again(&["--fresh"]);
    assert_eq!(d.ctl(&["list-br"]), "");
    d.stop_gracefully();
    d.start_again(&[]);
    assert_eq!(d.ctl(&["list-br"]), "");
    // --db puts the state elsewhere.
    let elsewhere = rundir.join("elsewhere.db");
    d.stop_gracefully();
    d.start_again(&["--db", elsewhere.to_str().unwrap()]);
    d.ctl(&["add-br", "brdb"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&elsewhere).is_ok_and(|t| t.contains("brdb")) {
        assert!(Instant::now() < deadline, "--db file never written");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const NODE: &str = r#"
[node]
name = "rst"
underlay_ip = "127.0.0.1"
pod_cidr = "172.16.1.0/24"
gateway_ip = "172.16.1.1"
gateway_mac = "0a:58:0c:00:00:fe"
mode = "tunnel"
[tunnel]
vni = 7
dst_port = 47891
"#;

/// A node (namespace) with a client and a server pod behind ClusterIP 10.247.0.10:80
/// (session affinity 300 s), the echo server running (for 60 s at most).
struct ServiceNode {
    _node: Node,
    ns: String,
    cli: String,
    srv: String,
    d: Daemon,
    helper: String,
    server: std::process::Child,
}

impl Drop for ServiceNode {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl ServiceNode {
    fn new(tag: &str) -> ServiceNode {
        let mut node = Node::new(tag);
        let ns = node.name().to_string();
        // Pod namespaces named after the node: tests run in parallel.
        let cli = node.add_veth_pod(
            &format!("{tag}c"),
            "vcli",
            "172.16.1.11/32",
            "0a:58:0c:01:00:0b",
        );
        let srv = node.add_veth_pod(
            &format!("{tag}s"),
            "vsrv",
            "172.16.1.12/32",
            "0a:58:0c:01:00:0c",
        );
        let (cli, srv) = (
            node.pod(cli).name().to_string(),
            node.pod(srv).name().to_string(),
        );
        for pod in [&cli, &srv] {
            ns_sh(
                pod,
                "ip route add 172.16.1.1 dev eth0 && ip route add default via 172.16.1.1 dev eth0",
            );
        }
        let rundir = std::env::temp_dir().join(format!("{ns}-run"));
        let d = Daemon::start(&ns, &rundir);
        d.ctl(&["apply", NODE]);
        d.ctl(&[
            "add-pod",
            "cli",
            "port=vcli",
            "ip=172.16.1.11",
            "mac=0a:58:0c:01:00:0b",
        ]);
        d.ctl(&[
            "add-pod",
            "srv",
            "port=vsrv",
            "ip=172.16.1.12",
            "mac=0a:58:0c:01:00:0c",
        ]);
        d.ctl(&[
            "set-service",
            r#"{ name = "web", cluster_ip = "10.247.0.10", port = 80, target_port = 8080, session_affinity_seconds = 300, backends = [{ ip = "172.16.1.12" }] }"#,
        ]);
        assert_ping(&cli, "172.16.1.12", 3);
        let helper = std::env::temp_dir().join(format!("{ns}-helper.py"));
        std::fs::write(&helper, ECHO_HELPER).unwrap();
        let helper = helper.to_str().unwrap().to_string();
        let server = std::process::Command::new("ip")
            .args([
                "netns", "exec", &srv, "python3", &helper, "serve", "8080", "60",
            ])
            .spawn()
            .expect("server");
        wait_listening(&srv, "tcp", 8080);
        ServiceNode {
            _node: node,
            ns,
            cli,
            srv,
            d,
            helper,
            server,
        }
    }

    /// Starts the client: one connection to the ClusterIP, a line every 10 ms for `secs`;
    /// returns once conntrack has it established.
    fn client(&self, secs: u32) -> std::thread::JoinHandle<Run> {
        let (cli, helper) = (self.cli.clone(), self.helper.clone());
        let h = std::thread::spawn(move || {
            ns_run(
                &cli,
                &[
                    "python3",
                    &helper,
                    "client",
                    "10.247.0.10",
                    "80",
                    &secs.to_string(),
                ],
                Duration::from_secs(u64::from(secs) + 30),
            )
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .d
            .ctl(&["dump-conntrack"])
            .lines()
            .any(|l| l.starts_with("tcp,") && l.contains("dport=80") && l.contains("ESTABLISHED"))
        {
            assert!(
                Instant::now() < deadline,
                "the client's connection never showed up established"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }
}

/// The client's report, checked: no error, replies all along.
fn client_report(run: Run, d: &Daemon) -> serde_json::Value {
    let res: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|_| panic!("client: {}{}", run.stdout, run.stderr));
    assert!(
        res.get("err").is_none(),
        "connection broke: {res}\n{}",
        d.log_text()
    );
    assert!(res["echoed"].as_u64().unwrap() > 100, "{res}");
    // The server saw the connection come from one address:port all along.
    assert_eq!(res["peers"].as_array().map(Vec::len), Some(1), "{res}");
    res
}

/// The conntrack line of the client's connection (by its source port).
fn conn_line(dump: &str, port: u64) -> Option<String> {
    dump.lines()
        .find(|l| l.contains(&format!("sport={port},dport=80")))
        .map(str::to_string)
}

#[test]
fn a_service_connection_and_the_pods_survive_a_graceful_restart_and_an_upgrade() {
    if !require_root("a_service_connection_and_the_pods_survive_a_graceful_restart_and_an_upgrade")
    {
        return;
    }
    let mut s = ServiceNode::new("rsvc");
    let client = s.client(14);
    // A ping stream between the pods measures the data-plane gap of the first restart: 5 ms
    // apart, 3 s at most (the restart is 1.5 s in), bounded.
    let pinger = {
        let cli = s.cli.clone();
        std::thread::spawn(move || ping_with(&cli, "172.16.1.12", 600, &["-i", "0.005", "-w", "8"]))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let d = &mut s.d;
    let conns_before = d.ctl(&["dump-conntrack"]);
    let view_before = config_view(d, &["br-int"], false);
    let pods_before = d.ctl(&["list-pods"]);
    let services_before = d.ctl(&["list-services"]);
    let t0 = Instant::now();
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    d.start_again(&[]);
    let restart = t0.elapsed();
    let conns_after = d.ctl(&["dump-conntrack"]);
    let ping = pinger.join().unwrap();
    // The client connected once: its remembered backend was handed over too.
    assert!(
        d.log_text()
            .contains("session affinity taken over clients=1"),
        "{}",
        d.log_text()
    );

    // An upgrade: another binary (a copy at another path stands for a rebuilt one) takes over
    // from this one, while the same connection keeps flowing.
    let next = std::env::temp_dir().join(format!("{}-vswitchd-next", s.ns));
    std::fs::copy(env!("CARGO_BIN_EXE_vswitchd"), &next).unwrap();
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    d.start_again_from(&next, &[]);
    let conns_upgraded = d.ctl(&["dump-conntrack"]);
    let _ = std::fs::remove_file(&next);

    // A start that fails (a configuration file that is not there) keeps the handover for the
    // next one, which takes the connection over; a used handover is deleted.
    let handover = d.rundir.join("vswitchd.handover");
    assert!(!handover.exists(), "a used handover was left behind");
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    assert!(handover.exists(), "a graceful stop wrote no handover");
    refused_start(&s.ns, &d.rundir, &["--config", "/nonexistent/node.toml"]);
    assert!(handover.exists(), "a failed start lost the handover");
    d.start_again(&[]);
    let conns_retried = d.ctl(&["dump-conntrack"]);
    assert!(!handover.exists(), "a used handover was left behind");

    let res = client_report(client.join().unwrap(), d);
    // The same NAT binding, in the same state, before and after.
    let port = res["local_port"].as_u64().unwrap();
    let was = conn_line(&conns_before, port).unwrap_or_else(|| panic!("{conns_before}"));
    assert!(
        was.contains("src=172.16.1.12,dst=172.16.1.11,sport=8080"),
        "{was}"
    );
    assert_eq!(
        conn_line(&conns_after, port),
        Some(was.clone()),
        "{conns_after}"
    );
    assert_eq!(
        conn_line(&conns_upgraded, port),
        Some(was.clone()),
        "{conns_upgraded}"
    );
    assert_eq!(
        conn_line(&conns_retried, port),
        Some(was),
        "{conns_retried}"
    );
    assert!(
        d.log_text()
            .contains("connections taken over from the handover")
    );
    // Pods, Services and the whole pipeline came back as they were.
    assert_eq!(d.ctl(&["list-pods"]), pods_before);
    assert_eq!(d.ctl(&["list-services"]), services_before);
    assert_same_view(
        &view_before,
        &config_view(d, &["br-int"], false),
        "a graceful restart and an upgrade",
    );
    let lost = ping.transmitted.saturating_sub(ping.received);
    let gap_ms = lost * 5;
    println!(
        "restart took {} ms (SIGTERM to socket); ping gap ~{gap_ms} ms ({lost} of {} lost); TCP max reply gap {} ms",
        restart.as_millis(),
        ping.transmitted,
        res["max_gap_ms"]
    );
    assert!(ping.received > 0, "{}", ping.output());
    let _ = &s.srv;
}

/// `kill -9`: the connection table comes back from the last periodic checkpoint (at most 2 s
/// old; TCP windows are learned again), so an established connection through the ClusterIP
/// keeps flowing with the same NAT binding.
#[test]
fn a_service_connection_survives_kill_9_through_the_checkpoint() {
    if !require_root("a_service_connection_survives_kill_9_through_the_checkpoint") {
        return;
    }
    let mut s = ServiceNode::new("rck");
    let client = s.client(8);
    // A second connection stays idle (queued behind the first at the one-at-a-time server):
    // after the crash only the checkpoint can know it, no packet of it re-creates it.
    let mut idle = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &s.cli,
            "timeout",
            "30",
            "socat",
            "-",
            "TCP:10.247.0.10:80",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("socat");
    let established = |d: &Daemon| {
        d.ctl(&["dump-conntrack"])
            .lines()
            .filter(|l| {
                l.starts_with("tcp,") && l.contains("dport=80") && l.contains("ESTABLISHED")
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while established(&s.d) < 2 {
        assert!(
            Instant::now() < deadline,
            "the idle connection never showed up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past one checkpoint (every 2 s) with both connections in it, and traffic after it.
    std::thread::sleep(Duration::from_millis(3500));
    let d = &mut s.d;
    let conns_before = d.ctl(&["dump-conntrack"]);
    assert!(d.rundir.join("vswitchd.checkpoint").exists());
    d.kill_hard();
    d.start_again(&[]);
    let conns_after = d.ctl(&["dump-conntrack"]);
    let idle_back = established(d);
    let _ = idle.kill();
    let _ = idle.wait();
    assert_eq!(
        idle_back, 2,
        "the idle connection is not back:\n{conns_after}"
    );
    let res = client_report(client.join().unwrap(), d);
    let port = res["local_port"].as_u64().unwrap();
    let was = conn_line(&conns_before, port).unwrap_or_else(|| panic!("{conns_before}"));
    let now = conn_line(&conns_after, port).unwrap_or_else(|| panic!("{conns_after}"));
    // The same binding (the timeout column may differ).
    let binding = |l: &str| {
        l.split(',')
            .filter(|f| f.contains("src=") || f.contains("dst=") || f.contains("port="))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(binding(&now), binding(&was), "{was}\n{now}");
    assert!(
        d.log_text()
            .contains("connections taken over from the last checkpoint"),
        "{}",
        d.log_text()
    );
    println!("after kill -9: TCP max reply gap {} ms", res["max_gap_ms"]);
}

/// Zone connection limits of `ct-set-limits` and port settings of `mod-port` are kept in the
/// state file: equal after a graceful restart and after `kill -9`, and in force (a port set
/// down still passes nothing).
#[test]
fn ct_limits_and_mod_port_settings_survive_restart_and_crash() {
    if !require_root("ct_limits_and_mod_port_settings_survive_restart_and_crash") {
        return;
    }
    let mut node = Node::new("rlim");
    node.start_switch("br0");
    node.add_veth_pod("rlima", "vlA", "10.79.1.1/24", "02:00:00:00:79:11");
    node.add_veth_pod("rlimb", "vlB", "10.79.1.2/24", "02:00:00:00:79:12");
    node.add_veth_pod("rlimc", "vlC", "10.79.1.3/24", "02:00:00:00:79:13");
    let a = node.pod(0).name().to_string();
    let d = node.daemon.as_mut().unwrap();
    d.ctl(&["add-port", "br0", "vlA", "ofport=1"]);
    d.ctl(&["add-port", "br0", "vlB", "ofport=2"]);
    d.ctl(&["add-port", "br0", "vlC", "ofport=3"]);
    assert!(ping_until(&a, "10.79.1.2", 5), "no path A -> B at start");
    assert!(ping_until(&a, "10.79.1.3", 5), "no path A -> C at start");
    d.ctl(&[
        "ct-set-limits",
        "br0",
        "default=1000",
        "zone=3,limit=5",
        "zone=9,limit=0",
        "zone=12,limit=40",
    ]);
    d.ctl(&["ct-del-limits", "br0", "zone=12"]);
    d.ctl(&["mod-port", "br0", "vlB", "down"]);
    d.ctl(&["mod-port", "br0", "vlC", "no-forward"]);
    d.ctl(&["mod-port", "br0", "vlC", "no-receive"]);
    let view = |d: &Daemon| {
        (
            d.ctl(&["ct-get-limits", "br0"]),
            d.ctl(&["dump-ports-desc", "br0"]),
        )
    };
    let before = view(d);
    assert!(before.0.contains("default limit=1000"), "{}", before.0);
    assert!(before.0.contains("zone=3,limit=5"), "{}", before.0);
    assert!(!before.0.contains("zone=12"), "{}", before.0);
    assert!(before.1.contains("PORT_DOWN"), "{}", before.1);
    assert!(before.1.contains("NO_RECV NO_FWD"), "{}", before.1);
    wait_saved(&d.rundir, "no-forward");

    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    d.start_again(&[]);
    assert_eq!(view(d), before, "after a graceful restart");
    // In force, not only shown: B is down, C forwards nothing.
    assert!(ping(&a, "10.79.1.2", 2).none_replied(), "B is up again");
    assert!(ping(&a, "10.79.1.3", 2).none_replied(), "C forwards again");

    // A change after the restart, then a crash: the change is kept too.
    d.ctl(&["mod-port", "br0", "vlC", "forward"]);
    d.ctl(&["mod-port", "br0", "vlC", "receive"]);
    d.ctl(&["ct-set-limits", "br0", "zone=4,limit=7"]);
    wait_saved(&d.rundir, "\"4\": 7");
    let before = view(d);
    assert!(!before.1.contains("NO_FWD"), "{}", before.1);
    d.kill_hard();
    d.start_again(&[]);
    assert_eq!(view(d), before, "after kill -9");
    assert!(ping_until(&a, "10.79.1.3", 5), "C forwards no more");
    assert!(ping(&a, "10.79.1.2", 2).none_replied(), "B is up again");
}

/// A TAP port whose device was moved into a pod's namespace (and renamed `eth0` there) is
/// reattached in that namespace after a graceful restart and after `kill -9`: the same
/// device (ifindex, address), the pod keeps talking to a veth pod, no stray TAP appears in
/// the node's namespace; deleting the port deletes the device in the pod's namespace.
#[test]
fn a_tap_moved_into_a_pod_is_reattached_there_after_restart_and_crash() {
    if !require_root("a_tap_moved_into_a_pod_is_reattached_there_after_restart_and_crash") {
        return;
    }
    let mut node = Node::new("rmv");
    node.start_switch("br0");
    let ns = node.name().to_string();
    node.add_veth_pod("rmvv", "vmv", "10.79.2.2/24", "02:00:00:00:79:22");
    let d = node.daemon.as_mut().unwrap();
    d.ctl(&["add-port", "br0", "vmv", "ofport=1"]);
    d.ctl(&["add-port", "br0", "tmv0", "type=tap", "ofport=2"]);
    // Changes every 300 ms while the TAP moves: the look for moved TAPs must not wait for a
    // quiet second (it did, and a crash then lost the move).
    let churn_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, rundir) = (churn_stop.clone(), d.rundir.clone());
        std::thread::spawn(move || {
            for cookie in 1..=100 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let flow = format!("table=9,priority=1,cookie={cookie},actions=drop");
                let _ = run_timeout(
                    std::process::Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
                        .arg("--rundir")
                        .arg(&rundir)
                        .args(["add-flow", "br0", &flow]),
                    Duration::from_secs(5),
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let tap_pod = node.adopt_tap_pod("rmvt", "tmv0", "10.79.2.1/24", "02:00:00:00:79:21");
    let pod = node.pod(tap_pod).name().to_string();
    let d = node.daemon.as_mut().unwrap();
    assert!(ping_until(&pod, "10.79.2.2", 5), "no path at start");
    let before = device(&pod, "eth0").expect("eth0 in the pod");
    assert!(
        device(&ns, "tmv0").is_none(),
        "the TAP is still in the node"
    );
    // Seen moved within a second and saved, so that a crash knows too.
    wait_saved(&d.rundir, "\"ifname\": \"eth0\"");
    churn_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();

    restart_until_ready(d, false);
    assert!(
        d.log_text().contains("TAP device reattached"),
        "{}",
        d.log_text()
    );
    assert!(
        device(&ns, "tmv0").is_none(),
        "a new TAP was created in the node"
    );
    assert_eq!(
        device(&pod, "eth0"),
        Some(before.clone()),
        "the pod's eth0 changed"
    );
    let r = ping(&pod, "10.79.2.2", 3);
    assert!(r.all_replied(), "after a graceful restart:\n{}", r.output());

    restart_until_ready(d, true);
    assert_eq!(
        d.log_text().matches("TAP device reattached").count(),
        2,
        "{}",
        d.log_text()
    );
    assert!(
        device(&ns, "tmv0").is_none(),
        "a new TAP was created in the node"
    );
    assert_eq!(device(&pod, "eth0"), Some(before), "the pod's eth0 changed");
    assert!(ping_until(&pod, "10.79.2.2", 5), "after kill -9: no reply");
    let r = ping(&pod, "10.79.2.2", 3);
    assert!(r.all_replied(), "after kill -9:\n{}", r.output());

    // Deleting the port deletes the device where it is.
    d.ctl(&["del-port", "br0", "tmv0"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while device(&pod, "eth0").is_some() {
        assert!(Instant::now() < deadline, "the moved TAP outlived its port");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(device(&ns, "tmv0").is_none());
}

/// A pod added at run time (as the CNI plugin adds it) whose veth the runtime deleted while
/// vswitchd was stopped (its DEL found no vswitchd) is forgotten at the next start, with a
/// warning: the start and the other pods go on.
#[test]
fn a_pod_whose_veth_went_while_stopped_is_forgotten_at_start() {
    if !require_root("a_pod_whose_veth_went_while_stopped_is_forgotten_at_start") {
        return;
    }
    let mut node = Node::new("rgone");
    let ns = node.name().to_string();
    node.add_veth_pod("rgonea", "vgonea", "172.16.1.11/32", "0a:58:0c:01:00:0b");
    node.add_veth_pod("rgoneb", "vgoneb", "172.16.1.12/32", "0a:58:0c:01:00:0c");
    let rundir = std::env::temp_dir().join(format!("{ns}-run"));
    let mut d = Daemon::start(&ns, &rundir);
    d.ctl(&["apply", NODE]);
    for (name, port, ip, mac) in [
        ("a", "vgonea", "172.16.1.11", "0a:58:0c:01:00:0b"),
        ("b", "vgoneb", "172.16.1.12", "0a:58:0c:01:00:0c"),
    ] {
        d.ctl(&[
            "add-pod",
            name,
            &format!("port={port}"),
            &format!("ip={ip}"),
            &format!("mac={mac}"),
        ]);
    }
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    ns_sh(&ns, "ip link del vgonea");
    d.start_again(&[]);
    let pods = d.ctl(&["list-pods"]);
    assert!(
        !pods.contains("vgonea") && pods.contains("vgoneb"),
        "{pods}"
    );
    assert!(
        d.log_text().contains("run-time pod forgotten"),
        "{}",
        d.log_text()
    );
    // None of its flows came back with the saved tables.
    let flows = d.ctl(&["dump-flows", "br-int"]);
    assert!(!flows.contains("172.16.1.11"), "{flows}");
    assert!(flows.contains("172.16.1.12"), "{flows}");
    // While it runs: b's veth goes too; a Service change (a full apply: NodePort) forgets b
    // instead of being refused for it.
    ns_sh(&ns, "ip link del vgoneb");
    d.ctl(&[
        "set-service",
        r#"{ name = "np", type = "NodePort", port = 80, node_port = 30080, backends = [] }"#,
    ]);
    assert!(d.ctl(&["list-pods"]).trim().is_empty());
}

/// A port added with `add-port` whose interface was deleted while the switch was stopped (a
/// pod gone, a node rebooted before its pods are back): the switch starts, with the port kept,
/// down, and its flows in place, and opens it once an interface of that name appears.
#[test]
fn a_port_whose_interface_went_while_stopped_waits_for_it() {
    if !require_root("a_port_whose_interface_went_while_stopped_waits_for_it") {
        return;
    }
    let mut node = Node::new("rwait");
    let ns = node.name().to_string();
    node.add_veth_pod("rwaita", "vwa", "10.44.0.1/24", "02:00:00:00:44:01");
    node.add_veth_pod("rwaitb", "vwb", "10.44.0.2/24", "02:00:00:00:44:02");
    let rundir = std::env::temp_dir().join(format!("{ns}-run"));
    let mut d = Daemon::start(&ns, &rundir);
    d.ctl(&["add-br", "br0"]);
    d.ctl(&["add-port", "br0", "vwa", "ofport=1"]);
    d.ctl(&["add-port", "br0", "vwb", "ofport=2"]);
    d.ctl(&["add-flow", "br0", "in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", "br0", "in_port=2,actions=output:1"]);
    wait_saved(&rundir, "in_port=2");
    let pod_a = node.pod(0).name().to_string();
    assert_ping(&pod_a, "10.44.0.2", 2);

    let ready = |d: &Daemon| d.log_text().matches("vswitchd ready").count();
    let before = ready(&d);
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    ns_sh(&ns, "ip link del vwb");
    d.start_again(&[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&d) <= before {
        assert!(Instant::now() < deadline, "not ready:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.alive(), "vswitchd refused to start:\n{}", d.log_text());
    assert!(d.ctl(&["list-ports", "br0"]).contains("vwb"));
    let desc = d.ctl(&["dump-ports-desc", "br0"]);
    let vwb = desc.split(" 2(vwb)").nth(1).unwrap_or_default();
    assert!(vwb.contains("LINK_DOWN"), "{desc}");
    assert!(d.ctl(&["dump-flows", "br0"]).contains("in_port=2"));
    assert!(
        d.log_text()
            .contains("the port cannot open now: it is kept"),
        "{}",
        d.log_text()
    );

    // The pod comes back (a new namespace, the same host-side name): the port opens on it.
    node.add_veth_pod("rwaitc", "vwb", "10.44.0.2/24", "02:00:00:00:44:02");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("port reopened on it") {
        assert!(
            Instant::now() < deadline,
            "never reopened:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ping(&pod_a, "10.44.0.2", 3);
}

/// The state of VXLAN port `ofport` in `dump-ports-desc`: true when `LINK_DOWN`.
fn port_down(d: &Daemon, ofport: u32, name: &str) -> bool {
    let desc = d.ctl(&["dump-ports-desc", "br0"]);
    let head = format!(" {ofport}({name}):");
    // Its lines: from its head to the next port's (" N(name):").
    desc.lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .any(|l| l.contains("LINK_DOWN"))
}

/// Waits up to 10 s for `cond`.
fn eventually(what: &str, d: &Daemon, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node whose underlay is not up yet (a boot): a VXLAN port to a remote it has no route to
/// is added down, beside a port for any remote on the same UDP port (which an unconnected
/// socket would keep off), and opens by itself once the route exists; a port with a local
/// address restored while that address is gone starts down too and opens when it is back.
/// Traffic crosses to a kernel VXLAN node each time.
#[test]
fn a_tunnel_port_waits_for_its_underlay() {
    if !require_root("a_tunnel_port_waits_for_its_underlay") {
        return;
    }
    let mut node = Node::new("rtun");
    let ns = node.name().to_string();
    let b = Netns::new(&unique("rtunB")).expect("node B namespace");
    let b_pod = Netns::new(&unique("rtunBp")).expect("pod B namespace");
    ns_sh(
        &ns,
        &format!(
            "ip link add ula type veth peer name ulb netns {b} && ip link set ula up",
            b = b.name()
        ),
    );
    kernel_vxlan_peer(b.name(), b_pod.name());
    node.add_veth_pod("rtunA", "vpa", "172.16.0.1/16", "02:00:00:00:0a:01");
    let pod_a = node.pod(0).name().to_string();
    let rundir = std::env::temp_dir().join(format!("{ns}-run"));
    let mut d = Daemon::start(&ns, &rundir);
    d.ctl(&["add-br", "br0"]);
    d.ctl(&["add-port", "br0", "vpa", "ofport=1"]);
    d.ctl(&[
        "add-port",
        "br0",
        "vx0",
        "type=vxlan",
        "ofport=2",
        "options:remote_ip=192.168.0.12",
        "options:key=100",
    ]);
    assert!(
        port_down(&d, 2, "vx0"),
        "a port without a route is up:\n{}\n{}",
        d.ctl(&["dump-ports-desc", "br0"]),
        d.log_text()
    );
    // Another port for the same remote would take its datagrams once it opens: refused.
    let twin = d.ctl_run(&[
        "add-port",
        "br0",
        "vx9",
        "type=vxlan",
        "options:remote_ip=192.168.0.12",
        "options:key=200",
    ]);
    assert!(
        !twin.ok && twin.stderr.contains("waiting for its underlay"),
        "{}{}",
        twin.stdout,
        twin.stderr
    );
    // A port for any remote on the same UDP port is taken meanwhile.
    d.ctl(&[
        "add-port",
        "br0",
        "vxf",
        "type=vxlan",
        "ofport=3",
        "options:remote_ip=flow",
        "options:key=flow",
    ]);
    // NORMAL's flood passes the waiting port by without counting it; an output to it counts.
    assert!(ping_with(&pod_a, "172.16.0.2", 2, &["-W", "1"]).none_replied());
    assert_eq!(
        d.drops("br0", "port_down"),
        0,
        "{}",
        d.ctl(&["dump-drops", "br0"])
    );
    d.ctl(&["add-flow", "br0", "in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", "br0", "in_port=2,actions=output:1"]);
    assert!(ping_with(&pod_a, "172.16.0.2", 1, &["-W", "1"]).none_replied());
    assert!(
        d.drops("br0", "port_down") > 0,
        "{}",
        d.ctl(&["dump-drops", "br0"])
    );

    ns_sh(&ns, "ip addr add 192.168.0.11/24 dev ula");
    eventually("the port never opened", &d, || !port_down(&d, 2, "vx0"));
    assert!(
        ping_until(&pod_a, "172.16.0.2", 10),
        "no ping over the tunnel"
    );

    // A port with a local address; restarted while the address is gone.
    d.ctl(&["del-port", "br0", "vxf"]);
    d.ctl(&["del-port", "br0", "vx0"]);
    d.ctl(&[
        "add-port",
        "br0",
        "vx0",
        "type=vxlan",
        "ofport=2",
        "options:remote_ip=192.168.0.12",
        "options:key=100",
        "options:local_ip=192.168.0.11",
    ]);
    assert!(
        ping_until(&pod_a, "172.16.0.2", 10),
        "no ping over the tunnel"
    );
    wait_saved(&rundir, "local_ip=192.168.0.11");
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    ns_sh(&ns, "ip addr del 192.168.0.11/24 dev ula");
    d.start_again(&[]);
    eventually("not serving", &d, || {
        d.ctl_run(&["list-ports", "br0"]).stdout.contains("vx0")
    });
    assert!(d.alive(), "vswitchd refused to start:\n{}", d.log_text());
    assert!(
        port_down(&d, 2, "vx0"),
        "restored without its address, yet up"
    );
    ns_sh(&ns, "ip addr add 192.168.0.11/24 dev ula");
    eventually("the restored port never opened", &d, || {
        !port_down(&d, 2, "vx0")
    });
    assert!(
        ping_until(&pod_a, "172.16.0.2", 10),
        "no ping after the restore"
    );
}

/// A graceful stop that cannot write its handover (here: a directory in its place) keeps the
/// last checkpoint, so the next start still has the connections of two seconds before.
#[test]
fn a_handover_that_cannot_be_written_keeps_the_checkpoint() {
    if !require_root("a_handover_that_cannot_be_written_keeps_the_checkpoint") {
        return;
    }
    let node = Node::new("rnohand");
    let ns = node.name().to_string();
    let rundir = std::env::temp_dir().join(format!("{ns}-run"));
    let mut d = Daemon::start(&ns, &rundir);
    let checkpoint = rundir.join("vswitchd.checkpoint");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !checkpoint.exists() {
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::create_dir(rundir.join("vswitchd.handover")).unwrap();
    assert!(d.stop_gracefully().success(), "{}", d.log_text());
    assert!(
        d.log_text().contains("cannot write the handover"),
        "{}",
        d.log_text()
    );
    assert!(
        checkpoint.exists(),
        "the checkpoint went with the failed handover"
    );
    std::fs::remove_dir(rundir.join("vswitchd.handover")).unwrap();
}
