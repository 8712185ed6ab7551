//! Watching the switch: `vswitchd --metrics-address` scraped with curl and parsed by the
//! Prometheus project's own Python parser (`prometheus_client.parser`, Debian's
//! python3-prometheus-client), counters checked against real traffic in namespaces; `/healthz`;
//! the Services' `health_check_node_port` answered like kube-proxy's, updated live; and
//! `vswitchctl log-level` at run time. Root only.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const BR: &str = "br0";

/// Parses a scrape with prometheus_client and prints one JSON sample per line. Debian's
/// python3 (the package installs there, whatever python3 comes first on PATH).
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value}))
"#;

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: sample name -> samples.
struct Scrape(BTreeMap<String, Vec<Sample>>);

impl Scrape {
    /// The one sample `name` whose labels include every pair of `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .0
            .get(name)
            .into_iter()
            .flatten()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} {labels:?}: {} samples match; scrape has {:?}",
            found.len(),
            self.0.get(name)
        );
        found[0].value
    }
}

/// HTTP GET from namespace `ns`: (status code, body).
fn curl(ns: &str, url: &str) -> (u16, String) {
    let r = ns_run(
        ns,
        &["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url],
        Duration::from_secs(8),
    );
    let (body, code) = r.stdout.rsplit_once('\n').unwrap_or(("", &r.stdout));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Scrapes `/metrics` from namespace `ns` and parses it with prometheus_client.
fn scrape(ns: &str, addr: &str) -> Scrape {
    let (code, text) = curl(ns, &format!("http://{addr}/metrics"));
    assert_eq!(code, 200, "scrape failed: {text}");
    let script = temp_script("promparse.py", PARSER);
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (Debian's, with python3-prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("parser JSON");
        let labels = v["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        m.entry(v["name"].as_str().expect("name").to_string())
            .or_default()
            .push(Sample {
                family: v["family"].as_str().unwrap_or_default().to_string(),
                kind: v["type"].as_str().unwrap_or_default().to_string(),
                labels,
                value: v["value"].as_f64().expect("value"),
            });
    }
    assert!(!m.is_empty(), "no samples in:\n{text}");
    Scrape(m)
}

/// Metrics of a plain bridge move with real traffic: ports, caches and upcalls, drops by
/// reason, flows per table, flow-mods, conntrack, threads, OpenFlow sessions; `/healthz`
/// answers; `log-level` changes the daemon's filter at run time.
#[test]
fn metrics_move_with_traffic() {
    if !require_root("metrics_move_with_traffic") {
        return;
    }
    let addr = "127.0.0.1:9474";
    let mut node = Node::new("mtr");
    let a = node.add_veth_pod("mtra", "vma", "10.20.0.1/24", "02:00:00:00:20:01");
    let b = node.add_veth_pod("mtrb", "vmb", "10.20.0.2/24", "02:00:00:00:20:02");
    node.start_switch_with(BR, &["--metrics-address", addr, "--threads", "2"]);
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vma", "ofport=1"]);
    d.ctl(&["add-port", BR, "vmb", "ofport=2"]);
    let (a, b) = (node.pod(a), node.pod(b));

    let (code, body) = curl(node.name(), &format!("http://{addr}/healthz"));
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(health["status"], "ok");
    let (code, _) = curl(node.name(), &format!("http://{addr}/nothing"));
    assert_eq!(code, 404);

    let before = scrape(node.name(), addr);
    assert_eq!(before.get("vswitch_build_info", &[]), 1.0);
    let s = &before.0["vswitch_port_receive_packets_total"][0];
    assert_eq!(
        (s.family.as_str(), s.kind.as_str()),
        ("vswitch_port_receive_packets", "counter")
    );
    assert_eq!(
        before.get("vswitch_flows", &[("bridge", BR), ("table", "0")]),
        1.0
    );
    let port = |s: &Scrape, name: &str, p: &str| s.get(name, &[("bridge", BR), ("port", p)]);

    // Traffic: 20 pings a -> b, then the same again to a port a flow drops.
    assert_ping(a.name(), &b.ip, 20);
    d.ctl(&["add-flow", BR, "priority=10,udp,tp_dst=9,actions=drop"]);
    d.ctl(&[
        "add-group",
        BR,
        "group_id=7,type=indirect,bucket=actions=output:2",
    ]);
    d.ctl(&["add-flow", BR, "priority=10,udp,tp_dst=10,actions=group:7"]);
    // A refused flow-mod (no such group) and an OpenFlow session that gets an error back.
    assert!(
        !d.ctl_run(&["add-flow", BR, "priority=5,ip,actions=group:99"])
            .ok
    );
    let ofctl = ns_run(
        node.name(),
        &[
            "ovs-ofctl",
            "-O",
            "OpenFlow13",
            "add-flow",
            &format!("unix:{}", d.rundir.join(format!("{BR}.mgmt")).display()),
            "priority=6,ip,actions=group:98",
        ],
        Duration::from_secs(10),
    );
    assert!(!ofctl.ok, "ovs-ofctl accepted a flow to a missing group");
    ns_sh(
        a.name(),
        // Python, not `nc -u -w0`: nc's zero timeout can close before it reads stdin, and
        // then sends nothing (it did in about one run in three).
        &format!(
            "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             [s.sendto(b'x', ('{0}', 9)) for _ in range(5)]; [s.sendto(b'y', ('{0}', 10)) for _ in range(4)]\"",
            b.ip
        ),
    );
    // Conntrack: ICMP through ct(commit) in zone 5 between the two ports.
    d.ctl(&[
        "add-flow",
        BR,
        "priority=20,icmp,actions=ct(commit,zone=5),NORMAL",
    ]);
    assert_ping(a.name(), &b.ip, 3);

    let after = scrape(node.name(), addr);
    let grew = |name: &str, p: &str| port(&after, name, p) - port(&before, name, p);
    assert!(grew("vswitch_port_receive_packets_total", "vma") >= 23.0);
    assert!(grew("vswitch_port_transmit_packets_total", "vmb") >= 23.0);
    assert!(grew("vswitch_port_receive_bytes_total", "vma") >= 23.0 * 98.0);
    assert!(
        grew("vswitch_port_transmit_packets_total", "vma") >= 23.0,
        "replies"
    );
    assert_eq!(
        port(&after, "vswitch_port_receive_dropped_packets_total", "vma"),
        0.0
    );
    let br = [("bridge", BR)];
    let hits =
        after.get("vswitch_emc_hits_total", &br) + after.get("vswitch_megaflow_hits_total", &br);
    assert!(hits >= 20.0, "cache hits {hits}");
    assert!(after.get("vswitch_upcalls_total", &br) >= 2.0);
    assert_eq!(
        after.get("vswitch_upcalls_total", &br),
        after.get("vswitch_megaflow_misses_total", &br)
    );
    assert!(after.get("vswitch_megaflows", &br) >= 2.0);
    assert!(after.get("vswitch_megaflow_masks", &br) >= 1.0);
    let flow_drops = after.get(
        "vswitch_dropped_packets_total",
        &[("bridge", BR), ("reason", "flow_drop")],
    );
    assert!(
        flow_drops >= 5.0,
        "flow_drop {flow_drops}; vma received {} more; drops:\n{}",
        grew("vswitch_port_receive_packets_total", "vma"),
        d.ctl(&["dump-drops", BR])
    );
    assert_eq!(
        after.get(
            "vswitch_dropped_packets_total",
            &[("bridge", BR), ("reason", "ttl_expired")]
        ),
        0.0
    );
    assert_eq!(
        after.get("vswitch_flows", &[("bridge", BR), ("table", "0")]),
        4.0
    );
    // Four datagrams through group 7 (43-byte frames: 14 + 20 + 8 + 1).
    let group = [("bridge", BR), ("group", "7")];
    assert_eq!(after.get("vswitch_group_packets_total", &group), 4.0);
    assert_eq!(after.get("vswitch_group_bytes_total", &group), 4.0 * 43.0);
    let lookups = |result: &str| {
        after.get(
            "vswitch_table_lookups_total",
            &[("bridge", BR), ("table", "0"), ("result", result)],
        )
    };
    assert!(lookups("matched") >= 23.0 + 4.0, "{}", lookups("matched"));
    assert_eq!(lookups("missed"), 0.0, "table 0 has a flow for everything");
    let fm = |cmd: &str, res: &str| {
        after.get(
            "vswitch_flow_mods_total",
            &[("bridge", BR), ("command", cmd), ("result", res)],
        )
    };
    assert!(
        fm("add", "applied") >= 3.0,
        "add-br's flow and two add-flows"
    );
    assert_eq!(
        fm("add", "refused"),
        2.0,
        "one from vswitchctl, one over OpenFlow"
    );
    assert!(after.get("vswitch_openflow_sessions_opened_total", &br) >= 1.0);
    assert!(after.get("vswitch_openflow_errors_sent_total", &br) >= 1.0);
    // No OpenFlow connection fell behind: exported, and nothing lost.
    for what in ["packet_in", "monitor_update", "connection"] {
        let labels = [("bridge", BR), ("what", what)];
        assert_eq!(
            after.get("vswitch_openflow_async_dropped_total", &labels),
            0.0
        );
    }
    assert_eq!(after.get("vswitch_openflow_sessions", &br), 0.0);
    assert!(after.get("vswitch_conntrack_entries", &[]) >= 1.0);
    // The scrape's own cost, as measured by the previous scrape (there was one: `before`).
    let gather = after.get("vswitch_scrape_gather_seconds", &[]);
    let lock = after.get("vswitch_scrape_conntrack_lock_seconds", &[]);
    assert!(gather > 0.0 && gather < 5.0, "gather {gather}");
    assert!(
        lock > 0.0 && lock <= gather,
        "lock {lock} of gather {gather}"
    );
    assert_eq!(
        after.get("vswitch_conntrack_entries_limit", &[]),
        (1u64 << 18) as f64
    );
    assert!(after.get("vswitch_conntrack_zone_entries", &[("zone", "5")]) >= 1.0);
    assert!(after.get("vswitch_conntrack_packets_total", &[]) >= 6.0);
    assert!(after.get("vswitch_conntrack_events_total", &[("event", "committed")]) >= 1.0);
    assert_eq!(
        after.get("vswitch_conntrack_nat_allocation_failures_total", &[]),
        0.0
    );
    // Two forwarding threads, each with its time accounted.
    for t in ["0", "1"] {
        let busy = after.get("vswitch_thread_busy_seconds_total", &[("thread", t)]);
        let idle = after.get("vswitch_thread_idle_seconds_total", &[("thread", t)]);
        assert!(
            busy > 0.0 && idle > 0.0,
            "thread {t}: busy {busy} idle {idle}"
        );
    }
    assert!(
        after.get("vswitch_thread_busy_seconds_total", &[("thread", "0")])
            + after.get("vswitch_thread_idle_seconds_total", &[("thread", "0")])
            > before.get("vswitch_thread_busy_seconds_total", &[("thread", "0")])
                + before.get("vswitch_thread_idle_seconds_total", &[("thread", "0")])
    );

    // The log filter, at run time: debug shows an OpenFlow error the info level hid.
    assert_eq!(d.ctl(&["log-level"]).trim(), "info");
    let r = d.ctl_run(&["log-level", "loud"]);
    assert!(!r.ok, "log-level loud was accepted");
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("not a level"),
        "{r:?}"
    );
    d.ctl(&["log-level", "debug"]);
    assert_eq!(d.ctl(&["log-level"]).trim(), "debug");
    assert!(!d.log_text().contains("OpenFlow change refused"));
    let _ = ns_run(
        node.name(),
        &[
            "ovs-ofctl",
            "-O",
            "OpenFlow13",
            "add-flow",
            &format!("unix:{}", d.rundir.join(format!("{BR}.mgmt")).display()),
            "priority=6,ip,actions=group:97",
        ],
        Duration::from_secs(10),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.log_text().contains("OpenFlow change refused") {
        assert!(
            Instant::now() < deadline,
            "no debug line:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.ctl(&["log-level", "warn"]);
}

/// The gateway MAC of the configured node.
const GW_MAC: &str = "0a:58:0a:10:00:01";
const NODE_IP: &str = "192.0.2.10";
const HC_PORT: u16 = 31080;

fn node_file(hc_port: u16) -> String {
    format!(
        r#"
[node]
name = "hc"
underlay_ip = "{NODE_IP}"
pod_cidr = "172.16.1.0/24"
gateway_ip = "172.16.1.1"
gateway_mac = "{GW_MAC}"
mode = "tunnel"
[tunnel]
vni = 100
[[pods]]
name = "client"
port = "vhc"
ip = "172.16.1.10"
mac = "02:00:00:00:31:0a"
[[pods]]
name = "server"
port = "vhs"
ip = "172.16.1.11"
mac = "02:00:00:00:31:0b"
[[services]]
name = "web"
type = "NodePort"
cluster_ip = "10.247.0.10"
node_port = 30080
port = 80
target_port = 8080
external_traffic_policy = "local"
health_check_node_port = {hc_port}
backends = [{{ ip = "172.16.1.11" }}]
"#
    )
}

/// The health check of Service `web` as an outside client sees it: status and JSON body.
fn health(ns: &str, port: u16) -> (u16, serde_json::Value) {
    let (code, body) = curl(ns, &format!("http://{NODE_IP}:{port}/"));
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (code, v)
}

/// A configured node: `/healthz` ready, a `local` Service's health check on the node address
/// answering 200 with one local endpoint, then 503 when its backends move elsewhere, and
/// moving with a live `set-service`; connections per backend counted from conntrack.
#[test]
fn service_health_checks_and_backend_connections() {
    if !require_root("service_health_checks_and_backend_connections") {
        return;
    }
    let metrics = "127.0.0.1:9475";
    let mut node = Node::new("hcn");
    let outside = Netns::new(&unique("hco")).expect("outside namespace");
    // The node's underlay address, on a veth to an outside client.
    ns_sh(
        node.name(),
        &format!(
            "ip link add ul0 type veth peer name eth0 netns {o} && ip addr add {NODE_IP}/24 dev ul0 && ip link set ul0 up && ip link set lo up",
            o = outside.name()
        ),
    );
    ns_sh(
        outside.name(),
        "ip addr add 192.0.2.1/24 dev eth0 && ip link set eth0 up && ip link set lo up",
    );
    let c = node.add_routed_pod(
        "hcc",
        "vhc",
        "172.16.1.10",
        "02:00:00:00:31:0a",
        ("172.16.1.1", GW_MAC),
    );
    let s = node.add_routed_pod(
        "hcs",
        "vhs",
        "172.16.1.11",
        "02:00:00:00:31:0b",
        ("172.16.1.1", GW_MAC),
    );
    let config = temp_script("hc-node.toml", &node_file(HC_PORT));
    let rundir = std::env::temp_dir().join(format!("{}-run", node.name()));
    let d = Daemon::start_with(
        node.name(),
        &rundir,
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--metrics-address",
            metrics,
        ],
    );
    // 503 while the node file is applied, then 200.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let (code, body) = curl(node.name(), &format!("http://{metrics}/healthz"));
        if code == 200 || Instant::now() > deadline {
            break (code, body);
        }
        assert!(code == 503 || code == 0, "healthz answered {code}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 200, "{body}\n{}", d.log_text());
    let h: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(h["configured"], true);
    assert_eq!(h["bridges"], 1);

    // One local backend: 200, kube-proxy's body.
    let (code, v) = health(outside.name(), HC_PORT);
    assert_eq!(code, 200, "{v}\n{}", d.log_text());
    assert_eq!(v["service"]["name"], "web");
    assert_eq!(v["localEndpoints"], 1);
    assert_eq!(v["serviceProxyHealthy"], true);

    // A connection from the client pod through the ClusterIP, counted per backend.
    let _srv = Spawned::start(
        node.pod(s).name(),
        "hc-srv",
        &["timeout", "30", "nc", "-lk", "8080"],
    );
    wait_listening(node.pod(s).name(), "tcp", 8080);
    let conn = ns_run(
        node.pod(c).name(),
        &["nc", "-z", "-w", "3", "10.247.0.10", "80"],
        Duration::from_secs(6),
    );
    assert!(conn.ok, "no connection through the Service: {conn:?}");
    let m = scrape(node.name(), metrics);
    assert!(
        m.get(
            "vswitch_service_backend_connections",
            &[("service", "web"), ("backend", "172.16.1.11:8080")]
        ) >= 1.0
    );
    assert!(m.get("vswitch_port_receive_packets_total", &[("port", "vhc")]) >= 2.0);

    // Backends elsewhere only: 503, no local endpoint (live, through set-backends).
    d.ctl(&["set-backends", "web", "10.9.9.9:8080"]);
    let (code, v) = health(outside.name(), HC_PORT);
    assert_eq!(
        (code, v["localEndpoints"].clone()),
        (503, serde_json::json!(0)),
        "{v}"
    );
    let m = scrape(node.name(), metrics);
    assert_eq!(
        m.get(
            "vswitch_service_backend_connections",
            &[("service", "web"), ("backend", "10.9.9.9:8080")]
        ),
        0.0
    );

    // set-service moves the health check to another port; the old one closes.
    d.ctl(&[
        "set-service",
        r#"{ name = "web", type = "NodePort", cluster_ip = "10.247.0.10", node_port = 30080, port = 80, target_port = 8080, external_traffic_policy = "local", health_check_node_port = 31081, backends = [{ ip = "172.16.1.11" }, { ip = "172.16.1.12" }] }"#,
    ]);
    let (code, v) = health(outside.name(), 31081);
    assert_eq!(
        (code, v["localEndpoints"].clone()),
        (200, serde_json::json!(2)),
        "{v}"
    );
    let (code, _) = health(outside.name(), HC_PORT);
    assert_eq!(code, 0, "the old health check port still answers");

    // Refused: a health check without policy local, and a port taken by something else.
    let r = d.ctl_run(&[
        "set-service",
        r#"{ name = "api", type = "NodePort", cluster_ip = "10.247.0.20", node_port = 30081, port = 80, health_check_node_port = 31082 }"#,
    ]);
    assert!(
        !r.ok && format!("{}{}", r.stdout, r.stderr).contains("external_traffic_policy"),
        "{r:?}"
    );
    let _squatter = Spawned::start(
        node.name(),
        "hc-squat",
        &["timeout", "30", "nc", "-l", "31090"],
    );
    wait_listening(node.name(), "tcp", 31090);
    let r = d.ctl_run(&[
        "set-service",
        r#"{ name = "api", type = "NodePort", cluster_ip = "10.247.0.20", node_port = 30081, port = 80, external_traffic_policy = "local", health_check_node_port = 31090 }"#,
    ]);
    assert!(
        !r.ok && format!("{}{}", r.stdout, r.stderr).contains("cannot listen"),
        "{r:?}"
    );
    assert!(!d.ctl(&["list-services"]).contains("api"));
    drop(d);
}
