//! End-to-end datapath tests: vswitchd in a node namespace, pods in their own namespaces wired
//! by veth pairs (AF_PACKET ports) or moved TAP devices, real kernel traffic (ping, TCP, VXLAN
//! to a plain-Linux node). Root only; run with `--test-threads=1` to keep timings honest.

mod common;

use std::time::Duration;

use common::*;

const BR: &str = "br0";

/// Three pods on one node: two veth/AF_PACKET pods and one TAP pod whose device, created by
/// the switch, is moved into the pod namespace while the switch keeps its file descriptor.
#[test]
fn three_pods_normal_switching() {
    if !require_root("three_pods_normal_switching") {
        return;
    }
    let mut node = Node::new("n1");
    node.start_switch(BR);
    let a = node.add_veth_pod("p1a", "vpa", "10.10.0.1/24", "02:00:00:00:01:01");
    let b = node.add_veth_pod("p1b", "vpb", "10.10.0.2/24", "02:00:00:00:01:02");
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1"]);
    d.ctl(&["add-port", BR, "vpb", "ofport=2"]);
    d.ctl(&["add-port", BR, "tp1c", "type=tap", "ofport=3"]);
    // Move the switch-created TAP into its pod and configure it there.
    let pod_c = Netns::new(&unique("p1c")).expect("pod namespace");
    ns_sh(
        node.name(),
        &format!("ip link set tp1c netns {}", pod_c.name()),
    );
    ns_sh(pod_c.name(), "ip link set tp1c name eth0");
    configure_pod_eth0(pod_c.name(), "10.10.0.3/24", "02:00:00:00:01:03");
    let c = node.adopt_pod(pod_c, "10.10.0.3");
    let d = node.daemon();
    assert_eq!(d.ctl(&["list-ports", BR]), "tp1c\nvpa\nvpb\n");

    let before = d.ports(BR);
    for (x, y) in [(a, b), (a, c), (b, c), (b, a), (c, a), (c, b)] {
        assert_ping(node.pod(x).name(), &node.pod(y).ip, 3);
    }
    let after = d.ports(BR);
    // Each pod sent at least 2 × (1 + 3) echo requests or replies in each direction it took part.
    for port in 1..=3u32 {
        let rx = after[&port].rx_packets - before.get(&port).map_or(0, |s| s.rx_packets);
        let tx = after[&port].tx_packets - before.get(&port).map_or(0, |s| s.tx_packets);
        assert!(
            rx >= 16,
            "port {port} received only {rx} packets:\n{after:?}"
        );
        assert!(tx >= 16, "port {port} sent only {tx} packets:\n{after:?}");
    }

    // TCP: AF_PACKET pod -> TAP pod and AF_PACKET pod -> AF_PACKET pod.
    for (from, to) in [(a, c), (a, b)] {
        let got = tcp_transfer(
            node.pod(from).name(),
            node.pod(to).name(),
            &node.pod(to).ip,
            300_000,
        );
        assert_eq!(got, 300_000, "TCP transfer {from} -> {to} lost bytes");
    }
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// Sends `bytes` over TCP from `src_ns` to `dst_ip` (listening in `dst_ns`); bytes received.
fn tcp_transfer(src_ns: &str, dst_ns: &str, dst_ip: &str, bytes: usize) -> usize {
    let dst = dst_ns.to_string();
    let receiver = std::thread::spawn(move || {
        ns_run(
            &dst,
            &["sh", "-c", "timeout 8 nc -l -n 5001 | wc -c"],
            Duration::from_secs(10),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let send = ns_run(
        src_ns,
        &[
            "sh",
            "-c",
            &format!("head -c {bytes} /dev/zero | timeout 6 nc -N -n -w 3 {dst_ip} 5001"),
        ],
        Duration::from_secs(8),
    );
    let recv = receiver.join().expect("receiver thread");
    assert!(send.ok, "TCP sender failed: {}{}", send.stdout, send.stderr);
    recv.stdout.trim().parse().unwrap_or(0)
}
