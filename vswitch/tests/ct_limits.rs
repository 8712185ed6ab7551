//! Per-tenant connection limits: `vswitchctl ct-set-limits` / `ct-get-limits` /
//! `ct-del-limits` (Open vSwitch's `dpctl/ct-*-limits`) and the node agent's per-pod limits.
//!
//! - In memory (no root): zone limits refuse the commits over them, counted in `dump-drops`
//!   and in the metrics, and print in Open vSwitch's format.
//! - In namespaces (root): pod a floods new TCP connections (bounded: 400 connects, 4 s) up to
//!   its `per_pod_limit`, while pod b still opens new connections, long-lived connections of
//!   both keep flowing, `ct-get-limits` shows the counts and the drop counter moves.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A UDP frame from 10.0.0.1:`sport` to 10.0.0.2:`dport`.
fn udp_frame(sport: u16, dport: u16) -> Vec<u8> {
    udp_frame_between([10, 0, 0, 1], [10, 0, 0, 2], sport, dport)
}

#[test]
fn zone_limits_refuse_commits_and_print_like_ovs() {
    let mut b = MemBridge::new(2, vswitch::datapath::Options::default());
    b.flows(
        "table=0,priority=10,udp,tp_dst=53,actions=ct(commit,zone=5,table=1)\n\
         table=0,priority=10,udp,tp_dst=54,actions=ct(commit,zone=6,table=1)\n\
         table=1,actions=output:2",
    );
    assert_eq!(b.command(&["ct-set-limits", "br0", "zone=5,limit=3"]), "");
    assert_eq!(
        b.command(&["ct-get-limits", "br0"]),
        "default limit=0\nzone=5,limit=3,count=0\n"
    );
    for p in 0..10 {
        b.send(1, &udp_frame(1000 + p, 53));
    }
    assert_eq!(b.received(2).len(), 3, "three connections fit in zone 5");
    assert_eq!(b.drops("ct_zone_limit"), 7);
    // Zone 6 has no limit of its own and the default is unlimited.
    for p in 0..10 {
        b.send(1, &udp_frame(2000 + p, 54));
    }
    assert_eq!(b.received(2).len(), 10);
    // Established connections of the full zone still pass.
    b.send(1, &udp_frame(1000, 53));
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(
        b.command(&["ct-get-limits", "br0", "zone=5,6,7"]),
        "default limit=0\nzone=5,limit=3,count=3\nzone=6,limit=0,count=10\nzone=7,limit=0,count=0\n"
    );
    // A default reaches zones without their own limit; ct-del-limits gives zone 5 the default.
    b.command(&["ct-set-limits", "br0", "default=20", "zone=6,limit=10"]);
    b.command(&["ct-del-limits", "br0", "zone=5"]);
    assert_eq!(
        b.command(&["ct-get-limits", "br0", "zone=5,6"]),
        "default limit=20\nzone=5,limit=20,count=3\nzone=6,limit=10,count=10\n"
    );
    b.send(1, &udp_frame(1500, 53));
    assert_eq!(b.received(2).len(), 1, "zone 5 under the default now");
    let json: serde_json::Value = serde_json::from_str(
        &b.control
            .run_as(
                vswitch::command::MgmtCommand::parse_words(&["ct-get-limits", "br0"]).unwrap(),
                vswitch::views::OutputFormat::Json,
            )
            .expect("json"),
    )
    .expect("valid JSON");
    assert_eq!(json["default_limit"], 20);
    assert_eq!(json["zones"][0]["zone"], 6);
    assert_eq!(json["zones"][0]["count"], 10);
    assert_eq!(json["sources"], serde_json::json!([]));
    // The drop reason and conntrack's own counter reach dump-drops and the metrics.
    let drops = b.command(&["dump-drops", "br0"]);
    assert!(drops.contains(" drop_zone_limit=7"), "{drops}");
    let metrics = vswitch::observe::families::encode(vswitch::observe::gather::gather(&b.control));
    for want in [
        "vswitch_dropped_packets_total{bridge=\"br0\",reason=\"ct_zone_limit\"} 7",
        "vswitch_conntrack_events_total{event=\"drop_zone_limit\"} 7",
        "vswitch_conntrack_zone_limit{zone=\"default\"} 20",
        "vswitch_conntrack_zone_limit{zone=\"6\"} 10",
    ] {
        assert!(metrics.contains(want), "no {want} in:\n{metrics}");
    }
    // Bad input is refused with a message, not half-applied.
    for bad in [
        &["ct-set-limits", "br0", "zone=5"][..],
        &["ct-set-limits", "br0", "zone=5,limit=2", "zone=x,limit=1"],
        &["ct-set-limits", "nobr", "zone=5,limit=2"],
        &["ct-get-limits", "br0", "zone=99999"],
        &["ct-del-limits", "br0"],
    ] {
        assert!(b.control.command(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        b.command(&["ct-get-limits", "br0"]),
        "default limit=20\nzone=6,limit=10,count=10\n"
    );
}

const BR: &str = "br-int";
const GW: (&str, &str) = ("172.16.1.1", "0a:58:0c:00:00:fe");
const POD_A: &str = "172.16.1.11";
const POD_B: &str = "172.16.1.12";
const POD_C: &str = "172.16.1.13";
const METRICS: &str = "127.0.0.1:9481";

fn node_toml() -> String {
    let pod = |name: &str, ip: &str, mac: &str, extra: &str| {
        format!(
            "[[pods]]\nname = \"{name}\"\nport = \"l{name}\"\ntype = \"afpacket\"\nip = \"{ip}\"\nmac = \"{mac}\"\n{extra}"
        )
    };
    format!(
        "[node]\nname = \"lim\"\nunderlay_ip = \"127.0.0.1\"\npod_cidr = \"172.16.1.0/24\"\n\
         gateway_ip = \"{}\"\ngateway_mac = \"{}\"\nmode = \"tunnel\"\n\
         [tunnel]\nvni = 7\ndst_port = 47893\n\
         [conntrack]\nper_pod_limit = 40\n{}{}{}",
        GW.0,
        GW.1,
        pod("a", POD_A, "0a:58:0c:01:00:0b", ""),
        pod("b", POD_B, "0a:58:0c:01:00:0c", "conntrack_limit = 200\n"),
        pod("c", POD_C, "0a:58:0c:01:00:0d", ""),
    )
}

/// An echo server for many clients (one thread each), bounded in time.
const ECHO_SERVER: &str = r#"
import socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512); s.settimeout(1)
def serve(c):
    c.settimeout(30)
    try:
        while True:
            d = c.recv(4096)
            if not d: break
            c.sendall(d)
    except OSError: pass
    c.close()
end = time.time() + 120
while time.time() < end:
    try: c, _ = s.accept()
    except socket.timeout: continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A long-lived connection: one round trip every 50 ms for `secs`; prints `ok N` or `error`.
const KEEPER: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("up", flush=True)
end = time.time() + float(sys.argv[3]); n = 0
try:
    while time.time() < end:
        c.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            d = c.recv(5 - len(got))
            if not d: raise OSError("closed")
            got += d
        n += 1
        time.sleep(0.05)
    print("ok", n, flush=True)
except OSError as e:
    print("error", n, e, flush=True)
"#;

/// `count` non-blocking connects to HOST:PORT (new connections, one SYN each plus the
/// kernel's retries), all closed after `secs`: a bounded SYN flood without raw sockets.
const FLOOD: &str = r#"
import socket, sys, time
host, port, count, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for i in range(count):
    s = socket.socket(); s.setblocking(False)
    s.connect_ex((host, port)); socks.append(s)
time.sleep(secs)
for s in socks: s.close()
print("sent", len(socks), flush=True)
"#;

/// `count` new connections to HOST:PORT one after the other, each one round trip; prints how
/// many succeeded.
const CONNECTS: &str = r#"
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for i in range(count):
    try:
        c = socket.create_connection((host, port), timeout=2)
        c.sendall(b"hi"); ok += c.recv(2) == b"hi"; c.close()
    except OSError: pass
print(ok, flush=True)
"#;

fn py(ns: &str, script: &std::path::Path, args: &[&str], limit: Duration) -> String {
    let mut argv = vec!["python3", script.to_str().expect("utf-8 path")];
    argv.extend_from_slice(args);
    let r = ns_run(ns, &argv, limit);
    assert!(r.ok, "{argv:?} in {ns}: {}{}", r.stdout, r.stderr);
    r.stdout.trim().to_string()
}

/// The `count=` of the `ct-get-limits` line starting with `prefix`.
fn count_of(limits: &str, prefix: &str) -> u64 {
    limits
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once("count="))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} line in:\n{limits}"))
}

#[test]
fn a_pods_syn_flood_takes_only_its_share_of_the_table() {
    if !require_root("a_pods_syn_flood_takes_only_its_share_of_the_table") {
        return;
    }
    let mut node = Node::new("lim");
    let a = node.add_routed_pod("lima", "la", POD_A, "0a:58:0c:01:00:0b", GW);
    let b = node.add_routed_pod("limb", "lb", POD_B, "0a:58:0c:01:00:0c", GW);
    let c = node.add_routed_pod("limc", "lc", POD_C, "0a:58:0c:01:00:0d", GW);
    let rundir = std::env::temp_dir().join(format!("{}-run", node.name()));
    node.daemon = Some(Daemon::start_with(
        node.name(),
        &rundir,
        &["--metrics-address", METRICS],
    ));
    let config = temp_script("lim-node.toml", &node_toml());
    let d = node.daemon();
    let out = d.ctl(&["apply", config.to_str().expect("utf-8 path")]);
    assert!(out.contains("node lim:"), "{out}");
    let (a, b, c) = (
        node.pod(a).name().to_string(),
        node.pod(b).name().to_string(),
        node.pod(c).name().to_string(),
    );
    let limits = d.ctl(&["ct-get-limits", BR]);
    assert_eq!(
        limits,
        format!(
            "default limit=0\nzone=1,src={POD_A},limit=40,count=0\nzone=1,src={POD_B},limit=200,count=0\nzone=1,src={POD_C},limit=40,count=0\n"
        )
    );

    let echo = temp_script("lim-echo.py", ECHO_SERVER);
    let keeper = temp_script("lim-keeper.py", KEEPER);
    let flood = temp_script("lim-flood.py", FLOOD);
    let connects = temp_script("lim-connects.py", CONNECTS);
    let _server = Spawned::start(&c, "echo", &["python3", echo.to_str().unwrap(), "8080"]);
    wait_listening(&c, "tcp", 8080);
    assert_eq!(
        py(
            &a,
            &connects,
            &[POD_C, "8080", "1"],
            Duration::from_secs(10)
        ),
        "1"
    );

    // Long-lived connections of a and b, open before the flood, run through it (10 s).
    let keep_a = Spawned::start(
        &a,
        "keep",
        &["python3", keeper.to_str().unwrap(), POD_C, "8080", "10"],
    );
    let keep_b = Spawned::start(
        &b,
        "keep",
        &["python3", keeper.to_str().unwrap(), POD_C, "8080", "10"],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(keep_a.output().starts_with("up") && keep_b.output().starts_with("up")) {
        assert!(
            Instant::now() < deadline,
            "keepers did not connect: {} / {}",
            keep_a.output(),
            keep_b.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused_before = d.drops(BR, "ct_source_limit");
    assert_eq!(refused_before, 0);

    // Pod a floods: 400 new connections to c's echo port, held 6 s. (Not to a closed port: a
    // connection the peer resets is closed and, as with Linux's connlimit, no longer counts.)
    let started = Instant::now();
    let mut flooder = Spawned::start(
        &a,
        "flood",
        &[
            "python3",
            flood.to_str().unwrap(),
            POD_C,
            "8080",
            "400",
            "6",
        ],
    );
    // a reaches its limit and stays there; b still opens new connections (20 of 20).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let limits = d.ctl(&["ct-get-limits", BR]);
        let n = count_of(&limits, &format!("zone=1,src={POD_A},"));
        assert!(n <= 40, "{limits}");
        if n == 40 && d.drops(BR, "ct_source_limit") >= 360 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a never reached its limit:\n{limits}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        py(
            &b,
            &connects,
            &[POD_C, "8080", "20"],
            Duration::from_secs(30)
        ),
        "20",
        "pod b could not open new connections during a's flood"
    );
    // a itself cannot open one more (its SYNs are refused: the connect times out).
    assert_eq!(
        py(
            &a,
            &connects,
            &[POD_C, "8080", "1"],
            Duration::from_secs(10)
        ),
        "0"
    );
    let refused = d.drops(BR, "ct_source_limit");
    assert!(
        refused >= 360,
        "only {refused} of a's 400 new connections refused"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while flooder.alive() {
        assert!(Instant::now() < deadline, "the flood did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        flooder.output().contains("sent 400"),
        "{}",
        flooder.output()
    );

    // The established connections kept flowing through the flood (about 20 round trips a
    // second each for 10 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut keep_a, mut keep_b) = (keep_a, keep_b);
    while keep_a.alive() || keep_b.alive() {
        assert!(Instant::now() < deadline, "keepers did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (who, k) in [("a", &keep_a), ("b", &keep_b)] {
        let out = k.output();
        let n: u32 = out
            .strip_prefix("up\nok ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("pod {who}'s long-lived connection broke: {out}"));
        assert!(n >= 60, "pod {who}: only {n} round trips in 10 s");
    }

    // The counts, and the metrics. Every connection has closed by now (FIN): closed ones stay
    // in the table for their TIME_WAIT but no longer count against the pods' limits.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let limits = d.ctl(&["ct-get-limits", BR]);
        let (na, nb) = (
            count_of(&limits, &format!("zone=1,src={POD_A},")),
            count_of(&limits, &format!("zone=1,src={POD_B},")),
        );
        assert!(na <= 40, "{limits}");
        if na == 0 && nb == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections still counted:\n{limits}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let json: serde_json::Value =
        serde_json::from_str(&d.ctl(&["ct-get-limits", BR, "--format", "json"])).expect("json");
    assert_eq!(json["sources"][0]["src"], POD_A);
    assert_eq!(json["sources"][0]["limit"], 40);
    let r = ns_run(
        node.name(),
        &[
            "curl",
            "-s",
            "-m",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
        Duration::from_secs(10),
    );
    let want =
        format!("vswitch_dropped_packets_total{{bridge=\"{BR}\",reason=\"ct_source_limit\"}} ");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no {want} in /metrics:\n{}", r.stdout));
    let n: f64 = line[want.len()..].trim().parse().expect("a number");
    assert!(n >= refused as f64, "{line}");
    assert!(
        r.stdout.contains(&format!(
            "vswitch_conntrack_source_limit{{zone=\"1\",src=\"{POD_A}\"}} 40"
        )),
        "{}",
        r.stdout
    );

    // A zone limit through vswitchctl on the running daemon: zone 1 at its count (one open
    // connection of b) refuses b too.
    let keep = Spawned::start(
        &b,
        "keep2",
        &["python3", keeper.to_str().unwrap(), POD_C, "8080", "8"],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !keep.output().starts_with("up") {
        assert!(Instant::now() < deadline, "keeper: {}", keep.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(count_of(&d.ctl(&["ct-get-limits", BR, "zone=1"]), "zone=1,limit=0,") >= 1);
    d.ctl(&["ct-set-limits", BR, "zone=1,limit=1"]);
    assert_eq!(
        py(
            &b,
            &connects,
            &[POD_C, "8080", "1"],
            Duration::from_secs(10)
        ),
        "0"
    );
    assert!(d.drops(BR, "ct_zone_limit") >= 1);
    d.ctl(&["ct-del-limits", BR, "zone=1"]);
    assert_eq!(
        py(
            &b,
            &connects,
            &[POD_C, "8080", "3"],
            Duration::from_secs(20)
        ),
        "3"
    );
    let _ = std::fs::remove_file(&config);
}
