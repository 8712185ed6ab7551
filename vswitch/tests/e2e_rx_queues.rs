//! A port received by several forwarding threads (`options:n_rxq=N`): one AF_PACKET socket
//! per thread in a flow-hashed fanout group. Real pods in namespaces send many UDP flows; both
//! threads receive some (the per-thread counters in the metrics), every datagram arrives once
//! and each flow in order; TCP passes; the setting is refused where it cannot hold and kept
//! across a restart. Root only.

mod common;

use std::time::Duration;

use common::*;

const BR: &str = "br0";
const METRICS: &str = "127.0.0.1:9483";
const FLOWS: u16 = 64;
const EACH: u32 = 20;

/// Sends `EACH` datagrams on each of `FLOWS` flows (source ports 41000..), interleaved, with
/// the flow's sequence number in each; paced so no socket buffer on the way overflows.
const SENDER: &str = r#"
import socket, sys, time
dst, flows, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 41000 + i))
    socks.append(s)
for seq in range(each):
    for s in socks:
        s.sendto(b"%d" % seq, (dst, 5001))
    time.sleep(0.002)
"#;

/// Receives until `want` datagrams arrived or `secs` passed; prints "total N", then one line per
/// flow that came out of order or twice.
const RECEIVER: &str = r#"
import socket, sys, time
want, secs = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5001))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.settimeout(0.5)
print("ready", flush=True)
seen = {}
total = 0
end = time.time() + secs
while total < want and time.time() < end:
    try:
        data, (ip, port) = s.recvfrom(64)
    except socket.timeout:
        continue
    seen.setdefault(port, []).append(int(data))
    total += 1
print("total", total)
for port, seqs in sorted(seen.items()):
    if seqs != sorted(set(seqs)):
        print("disorder", port, seqs)
"#;

/// `vswitch_thread_rx_packets_total` of each forwarding thread, read from the metrics in the
/// node's namespace.
fn thread_rx(node: &str) -> Vec<u64> {
    let r = ns_run(
        node,
        &[
            "curl",
            "-s",
            "-m",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
        Duration::from_secs(8),
    );
    let mut per_thread = Vec::new();
    for t in 0.. {
        let prefix = format!("vswitch_thread_rx_packets_total{{thread=\"{t}\"}} ");
        match r
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
        {
            Some(v) => per_thread.push(v.trim().parse().expect("a counter value")),
            None => break,
        }
    }
    assert!(
        !per_thread.is_empty(),
        "no per-thread counters in:\n{}",
        r.stdout
    );
    per_thread
}

/// Sends the `FLOWS` × `EACH` datagrams from pod namespace `from` to the receiver in `to`
/// (10.21.0.2), which waits up to `secs` for `want` of them; returns what it printed.
fn udp_flows(from: &str, to: &str, want: u32, secs: u32) -> String {
    let receiver_script = temp_script("rxq-recv.py", RECEIVER);
    let sender_script = temp_script("rxq-send.py", SENDER);
    let mut recv = Spawned::start(
        to,
        "rxq-recv",
        &[
            "python3",
            receiver_script.to_str().unwrap(),
            &want.to_string(),
            &secs.to_string(),
        ],
    );
    wait_listening(to, "udp", 5001);
    let send = ns_run(
        from,
        &[
            "python3",
            sender_script.to_str().unwrap(),
            "10.21.0.2",
            &FLOWS.to_string(),
            &EACH.to_string(),
        ],
        Duration::from_secs(20),
    );
    assert!(send.ok, "sender: {}{}", send.stdout, send.stderr);
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(secs) + 4);
    while recv.alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    recv.output()
}

/// Port `name` in `list-ports --format json`.
fn listed(d: &Daemon, name: &str) -> serde_json::Value {
    let listed = d.ctl(&["--format", "json", "list-ports", BR]);
    let v: serde_json::Value = serde_json::from_str(&listed).expect("list-ports JSON");
    v["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} listed: {listed}"))
        .clone()
}

/// `options.n_rxq` of port `name` in `list-ports --format json`.
fn n_rxq_listed(d: &Daemon, name: &str) -> Option<String> {
    listed(d, name)["options"]["n_rxq"]
        .as_str()
        .map(str::to_string)
}

/// `rx_threads` of port `name` in `list-ports --format json` (the threads receiving now).
fn rx_threads_listed(d: &Daemon, name: &str) -> serde_json::Value {
    listed(d, name)["rx_threads"].clone()
}

#[test]
fn a_port_received_by_two_threads_spreads_flows_and_keeps_each_in_order() {
    if !require_root("a_port_received_by_two_threads_spreads_flows_and_keeps_each_in_order") {
        return;
    }
    let mut node = Node::new("rxq");
    let a = node.add_veth_pod("rxqa", "vqa", "10.21.0.1/24", "02:00:00:00:21:01");
    let b = node.add_veth_pod("rxqb", "vqb", "10.21.0.2/24", "02:00:00:00:21:02");
    node.start_switch_with(BR, &["--threads", "2", "--metrics-address", METRICS]);
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vqa", "ofport=1", "options:n_rxq=2"]);
    d.ctl(&["add-port", BR, "vqb", "ofport=2"]);
    d.ctl(&["add-flow", BR, "in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", BR, "in_port=2,actions=output:1"]);
    assert_eq!(n_rxq_listed(d, "vqa"), Some("2".to_string()));
    assert_eq!(rx_threads_listed(d, "vqa"), serde_json::json!([0, 1]));
    assert_eq!(n_rxq_listed(d, "vqb"), None);
    assert_eq!(rx_threads_listed(d, "vqb"), serde_json::Value::Null);
    assert!(
        d.log_text()
            .contains("port received by several forwarding threads"),
        "{}",
        d.log_text()
    );
    let (pa, pb) = (
        node.pod(a).ns.name().to_string(),
        node.pod(b).ns.name().to_string(),
    );
    let (pa, pb) = (pa.as_str(), pb.as_str());
    assert_ping(pa, "10.21.0.2", 3);

    let before = thread_rx(node.name());
    assert_eq!(before.len(), 2, "two forwarding threads");
    let want = u32::from(FLOWS) * EACH;
    let got = udp_flows(pa, pb, want, 8);
    assert!(
        got.contains(&format!("total {want}")),
        "every datagram arrives once: {got}"
    );
    assert!(!got.contains("disorder"), "each flow in order: {got}");
    let after = thread_rx(node.name());
    let share: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    let total: u64 = share.iter().sum();
    assert!(total >= u64::from(want), "{share:?}");
    // 64 flows hashed over two sockets: each gets some (a 10 % floor fails only when the
    // frames do not spread at all).
    for (t, n) in share.iter().enumerate() {
        assert!(
            *n * 10 >= total,
            "thread {t} received {n} of {total} frames: {share:?}"
        );
    }

    // TCP (one flow: one thread) in both directions.
    assert_eq!(tcp_transfer(pa, pb, "10.21.0.2", 5002, 1 << 22), 1 << 22);
    assert_eq!(tcp_transfer(pb, pa, "10.21.0.1", 5003, 1 << 22), 1 << 22);

    // Refused where it cannot hold.
    for (args, says) in [
        (
            &["options:n_rxq=3"][..],
            "more receive queues than forwarding threads",
        ),
        (&["options:n_rxq=2", "options:xdp=on"][..], "n_rxq"),
        (&["type=tap", "options:n_rxq=2"][..], "only afpacket ports"),
        (&["options:n_rxq=0"][..], "from 1 to 64"),
    ] {
        let mut cmd = vec!["add-port", BR, "vqx"];
        cmd.extend_from_slice(args);
        let r = d.ctl_run(&cmd);
        assert!(
            !r.ok && r.stderr.contains(says),
            "{args:?}: {}{}",
            r.stdout,
            r.stderr
        );
    }

    // The state file keeps it, and the port's mod-port setting holds on every queue: with
    // `no-receive` saved, none of the 64 flows passes after the restart, whichever thread's
    // socket the kernel hands it to.
    d.ctl(&["mod-port", BR, "vqa", "no-receive"]);
    let d = node.daemon.as_mut().expect("daemon");
    d.stop_gracefully();
    d.start_again(&["--threads", "2", "--metrics-address", METRICS]);
    assert_eq!(n_rxq_listed(d, "vqa"), Some("2".to_string()));
    let spread = d
        .log_text()
        .matches("port received by several forwarding threads")
        .count();
    assert_eq!(spread, 2, "restored spread: {}", d.log_text());
    let before = thread_rx(node.name());
    let got = udp_flows(pa, pb, 1, 2);
    assert!(got.contains("total 0"), "no-receive on every queue: {got}");
    let share: Vec<u64> = thread_rx(node.name())
        .iter()
        .zip(&before)
        .map(|(x, y)| x - y)
        .collect();
    assert!(
        share.iter().all(|n| *n > 0),
        "both threads received (and dropped): {share:?}"
    );
    let d = node.daemon();
    d.ctl(&["mod-port", BR, "vqa", "receive"]);
    assert_ping(pa, "10.21.0.2", 3);

    // Restarted with one thread, the saved n_rxq=2 fits it (one queue) instead of refusing
    // the whole state.
    let d = node.daemon.as_mut().expect("daemon");
    d.stop_gracefully();
    d.start_again(&["--metrics-address", METRICS]);
    assert_eq!(n_rxq_listed(d, "vqa"), Some("1".to_string()));
    assert_eq!(rx_threads_listed(d, "vqa"), serde_json::json!([0]));
    assert!(
        d.log_text()
            .contains("saved options:n_rxq is more than this vswitchd's threads")
    );
    assert_ping(pa, "10.21.0.2", 3);
}
