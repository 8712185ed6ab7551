//! End-to-end: pods on AF_XDP ports (`add-port ... options:xdp=on`), vswitchd in a node
//! namespace, real kernel traffic (ping, TCP) between AF_XDP pods and an AF_PACKET pod; the
//! XDP program is on the interface while the port exists and gone after `del-port`; an
//! interface AF_XDP refuses falls back to AF_PACKET with the reason in the log; pods with
//! transmit checksum offload on (partial checksums, no state for XDP to carry) still talk
//! TCP and UDP through AF_XDP ports. Root only.

mod common;

use std::time::Duration;

use common::*;

const BR: &str = "br0";

fn xdp_attached(node: &str, ifname: &str) -> bool {
    // `ip link` prints "xdp" (native: "prog/xdp id N") for an interface with a program.
    ns_sh(node, &format!("ip -d link show {ifname}")).contains("prog/xdp")
}

/// A node with three pods: `vpa` and `vpb` on AF_XDP ports 1 and 2, `vpc` on an AF_PACKET port
/// 3, each pod's transmit checksum offload set to `tx` ("on" or "off").
fn three_pod_node(tag: &str, mac_byte: u8, tx: &str) -> (Node, [usize; 3]) {
    let mut node = Node::new(tag);
    node.start_switch(BR);
    let pods = [("a", "vpa", 1), ("b", "vpb", 2), ("c", "vpc", 3)].map(|(x, host_if, n)| {
        node.add_veth_pod(
            &format!("{tag}{x}"),
            host_if,
            &format!("10.10.0.{n}/24"),
            &format!("02:00:00:00:{mac_byte:02x}:{n:02x}"),
        )
    });
    for p in pods {
        ns_sh(
            node.pod(p).name(),
            &format!("ethtool -K eth0 tx {tx} >/dev/null"),
        );
    }
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1", "options:xdp=on"]);
    d.ctl(&["add-port", BR, "vpb", "ofport=2", "options:xdp=on"]);
    d.ctl(&["add-port", BR, "vpc", "ofport=3"]);
    let node_ns = node.name().to_string();
    assert!(xdp_attached(&node_ns, "vpa") && xdp_attached(&node_ns, "vpb"));
    (node, pods)
}

#[test]
fn afxdp_ports_forward_ping_and_tcp_and_detach_on_delete() {
    if !require_root("afxdp_ports_forward_ping_and_tcp_and_detach_on_delete") {
        return;
    }
    // Finished checksums here; partial ones in the test below.
    let (mut node, [a, b, c]) = three_pod_node("xd", 0x05, "off");
    let d = node.daemon();
    let node_ns = node.name().to_string();
    assert!(
        !xdp_attached(&node_ns, "vpc"),
        "an AF_PACKET port has no XDP"
    );
    let log = d.log_text();
    assert!(
        !log.contains("falls back to AF_PACKET"),
        "AF_XDP was refused:\n{log}"
    );
    let listed = d.ctl(&["--format", "json", "list-ports", BR]);
    let compact: String = listed.split_whitespace().collect();
    assert!(compact.contains("\"xdp\":\"on\""), "{listed}");

    let before = d.ports(BR);
    for (x, y) in [(a, b), (b, a), (a, c), (c, b)] {
        assert_ping(node.pod(x).name(), &node.pod(y).ip, 3);
    }
    for (from, to) in [(a, b), (c, a)] {
        let got = tcp_transfer(
            node.pod(from).name(),
            node.pod(to).name(),
            &node.pod(to).ip,
            5001,
            2_000_000,
        );
        assert_eq!(got, 2_000_000, "TCP {from} -> {to} over AF_XDP lost bytes");
    }
    let after = d.ports(BR);
    for port in [1u32, 2] {
        let rx = after[&port].rx_packets - before.get(&port).map_or(0, |s| s.rx_packets);
        // Sent: bytes, not frames (a pod's segments leave merged into super-frames).
        let tx = after[&port].tx_bytes - before.get(&port).map_or(0, |s| s.tx_bytes);
        assert!(
            rx >= 100 && tx >= 2_000_000,
            "port {port}: rx {rx} frames, tx {tx} bytes"
        );
    }

    // Deleting the port takes the program off the interface.
    d.ctl(&["del-port", BR, "vpa"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while xdp_attached(&node_ns, "vpa") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !xdp_attached(&node_ns, "vpa"),
        "XDP left on vpa after del-port"
    );

    // An interface AF_XDP refuses (it carries a host address) falls back to AF_PACKET.
    ns_sh(&node_ns, "ip addr add 192.0.2.1/24 dev vpa");
    d.ctl(&["add-port", BR, "vpa", "ofport=1", "options:xdp=on"]);
    assert!(!xdp_attached(&node_ns, "vpa"));
    let log = d.log_text();
    assert!(
        log.lines().any(|l| l.contains("falls back to AF_PACKET")
            && l.contains("vpa")
            && l.contains("address of the host's own")),
        "no fallback reason in the log:\n{log}"
    );
    // What runs is listed: the fallen-back port carries no `xdp` option, the others keep it.
    let listed: String = d
        .ctl(&["--format", "json", "list-ports", BR])
        .split_whitespace()
        .collect();
    let vpa = listed
        .split("\"name\":\"vpa\"")
        .nth(1)
        .and_then(|rest| rest.split("\"name\":").next())
        .expect("vpa listed");
    assert!(
        !vpa.contains("\"xdp\""),
        "vpa fell back but is listed with xdp: {listed}"
    );
    assert!(
        listed.contains("\"xdp\":\"on\""),
        "vpb lost its xdp option: {listed}"
    );
    ns_sh(&node_ns, "ip addr del 192.0.2.1/24 dev vpa");
    assert_ping(node.pod(a).name(), &node.pod(b).ip, 2);

    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// `--threads 2`: AF_XDP ports polled by different threads; each thread sends out of the other
/// thread's port through an AF_PACKET handle on the same interface (`try_clone_tx`).
#[test]
fn afxdp_ports_on_two_forwarding_threads() {
    if !require_root("afxdp_ports_on_two_forwarding_threads") {
        return;
    }
    let mut node = Node::new("xt");
    node.start_switch_with(BR, &["--threads", "2"]);
    let a = node.add_veth_pod("xta", "vpa", "10.10.0.1/24", "02:00:00:00:06:01");
    let b = node.add_veth_pod("xtb", "vpb", "10.10.0.2/24", "02:00:00:00:06:02");
    for p in [a, b] {
        ns_sh(node.pod(p).name(), "ethtool -K eth0 tx off >/dev/null");
    }
    let d = node.daemon();
    let node_ns = node.name().to_string();
    d.ctl(&[
        "add-port",
        BR,
        "vpa",
        "ofport=1",
        "options:xdp=on",
        "options:thread=0",
    ]);
    d.ctl(&[
        "add-port",
        BR,
        "vpb",
        "ofport=2",
        "options:xdp=on",
        "options:thread=1",
    ]);
    assert!(xdp_attached(&node_ns, "vpa") && xdp_attached(&node_ns, "vpb"));
    for (x, y) in [(a, b), (b, a)] {
        assert_ping(node.pod(x).name(), &node.pod(y).ip, 3);
    }
    let got = tcp_transfer(
        node.pod(a).name(),
        node.pod(b).name(),
        &node.pod(b).ip,
        5001,
        1_000_000,
    );
    assert_eq!(got, 1_000_000, "TCP across threads over AF_XDP lost bytes");
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// Sends `count` UDP datagrams of 100 bytes from `src_ns` to `dst_ip:port`; the bytes the
/// receiver's socket got (a datagram with a bad checksum never reaches it).
fn udp_transfer(src_ns: &str, dst_ns: &str, dst_ip: &str, port: u16, count: usize) -> usize {
    let dst = dst_ns.to_string();
    let listen = format!("timeout 4 nc -u -l -n {port} | wc -c");
    let receiver =
        std::thread::spawn(move || ns_run(&dst, &["sh", "-c", &listen], Duration::from_secs(6)));
    wait_listening(dst_ns, "udp", port);
    // One datagram per write: nc -u sends each read as one datagram.
    let line = format!(
        "for i in $(seq {count}); do printf '%0100d' 0; sleep 0.01; done | timeout 3 nc -u -n -q 1 {dst_ip} {port}"
    );
    ns_run(src_ns, &["sh", "-c", &line], Duration::from_secs(5));
    let recv = receiver.join().expect("receiver thread");
    recv.stdout.trim().parse().unwrap_or(0)
}

/// Pods with transmit checksum offload on (the veth default) send TCP and UDP with partial
/// checksums; XDP carries no `CHECKSUM_PARTIAL`, so the AF_XDP port recognises them from the
/// field and the switch finishes them (or hands them on partial to an AF_PACKET port with
/// virtio-net headers). Without that the receiver drops every segment (`TcpInCsumErrors`).
#[test]
fn afxdp_ports_carry_tcp_and_udp_from_pods_with_checksum_offload_on() {
    if !require_root("afxdp_ports_carry_tcp_and_udp_from_pods_with_checksum_offload_on") {
        return;
    }
    let (mut node, [a, b, c]) = three_pod_node("xo", 0x07, "on");
    for p in [a, b, c] {
        let pod = node.pod(p).name().to_string();
        let k = ns_sh(&pod, "ethtool -k eth0");
        assert!(
            k.lines()
                .any(|l| l.trim_start().starts_with("tx-checksumming: on")),
            "{pod}: tx checksum offload did not turn on:\n{k}"
        );
    }
    assert_ping(node.pod(a).name(), &node.pod(b).ip, 2);
    // AF_XDP to AF_XDP, both ways; AF_XDP to AF_PACKET and back.
    for (i, (from, to)) in [(a, b), (b, a), (a, c), (c, a)].into_iter().enumerate() {
        let got = tcp_transfer(
            node.pod(from).name(),
            node.pod(to).name(),
            &node.pod(to).ip,
            5101 + i as u16,
            2_000_000,
        );
        assert_eq!(
            got, 2_000_000,
            "TCP {from} -> {to} with tx checksum offload on lost bytes"
        );
    }
    for (i, (from, to)) in [(a, b), (a, c)].into_iter().enumerate() {
        let got = udp_transfer(
            node.pod(from).name(),
            node.pod(to).name(),
            &node.pod(to).ip,
            5201 + i as u16,
            20,
        );
        assert_eq!(got, 2000, "UDP {from} -> {to} with tx checksum offload on");
    }
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// Sends `count` 18-byte UDP datagrams from `ns` to `dst_ip:9` as fast as Python can.
fn udp_burst(ns: &str, dst_ip: &str, count: usize) {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range({count}):\n    try:\n        s.sendto(b'x' * 18, ('{dst_ip}', 9))\n    \
         except OSError:\n        pass\n"
    );
    ns_run(ns, &["python3", "-c", &script], Duration::from_secs(20));
}

fn tso(ns: &str) -> String {
    ns_sh(ns, "ethtool -k eth0 | grep '^tcp-segmentation-offload'")
        .trim()
        .to_string()
}

/// A default AF_PACKET port whose ring overruns (here: frames sent while the switch is
/// stopped) attaches an AF_XDP socket, so a flood is shed before the kernel's receive path;
/// traffic goes on through it, and once no frame is dropped for a while the program leaves
/// the interface again and the pod gets its TSO back.
#[test]
fn afpacket_ports_shed_an_overrun_through_xdp_and_detach_when_calm() {
    if !require_root("afpacket_ports_shed_an_overrun_through_xdp_and_detach_when_calm") {
        return;
    }
    let mut node = Node::new("sh");
    node.start_switch(BR);
    let [a, b] = [("a", "vsa", 1), ("b", "vsb", 2)].map(|(x, host_if, n)| {
        node.add_veth_pod(
            &format!("sh{x}"),
            host_if,
            &format!("10.10.0.{n}/24"),
            &format!("02:00:00:00:07:{n:02x}"),
        )
    });
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vsa", "ofport=1"]);
    d.ctl(&["add-port", BR, "vsb", "ofport=2"]);
    let node_ns = node.name().to_string();
    let (pa, pb) = (
        node.pod(a).name().to_string(),
        node.pod(b).name().to_string(),
    );
    let ip_b = node.pod(b).ip.clone();
    assert_ping(&pa, &ip_b, 2);
    assert!(!xdp_attached(&node_ns, "vsa"), "XDP before any overrun");
    ns_sh(&pa, "ethtool -K eth0 tx on tso on >/dev/null");
    let tso_before = tso(&pa);
    assert!(tso_before.ends_with(": on"), "pod TSO: {tso_before}");

    // The switch stops; the pod's burst fills the ring and the rest is dropped by the kernel.
    let pid = d.pid().to_string();
    let signal = |sig: &str| {
        let r = run_timeout(
            std::process::Command::new("kill").args([sig, &pid]),
            Duration::from_secs(2),
        );
        assert!(r.ok, "kill {sig}: {}", r.stderr);
    };
    signal("-STOP");
    udp_burst(&pa, &ip_b, 60_000);
    signal("-CONT");

    let logged = |what: &str| {
        d.log_text()
            .lines()
            .any(|l| l.contains(what) && l.contains("vsa"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !(xdp_attached(&node_ns, "vsa") && logged("shedding the excess"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        xdp_attached(&node_ns, "vsa") && logged("shedding the excess"),
        "no XDP after the overrun:\n{}",
        d.log_text()
    );
    assert!(!xdp_attached(&node_ns, "vsb"), "vsb never overran");
    assert!(
        tso(&pa).ends_with(": off"),
        "TSO while shedding: {}",
        tso(&pa)
    );

    // Traffic goes on through the AF_XDP socket, and the port counts what it received.
    let before = d.ports(BR)[&1].rx_packets;
    assert_ping(&pa, &ip_b, 3);
    assert_ping(&pb, &node.pod(a).ip, 3);
    let got = tcp_transfer(&pa, &pb, &ip_b, 5003, 1_000_000);
    assert_eq!(got, 1_000_000, "TCP through the shedding port lost bytes");
    assert!(
        d.ports(BR)[&1].rx_packets >= before + 6,
        "frames received through XDP not counted"
    );

    // No drops for the calm period (after the minimum hold): back to AF_PACKET only.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while (xdp_attached(&node_ns, "vsa") || !logged("the flood has passed"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !xdp_attached(&node_ns, "vsa") && logged("the flood has passed"),
        "XDP still on after the calm period:\n{}",
        d.log_text()
    );
    assert_eq!(tso(&pa), tso_before, "the pod's TSO did not come back");
    assert_ping(&pa, &ip_b, 3);

    // `options:xdp=off`: the same overrun leaves the port AF_PACKET only.
    d.ctl(&["del-port", BR, "vsb"]);
    d.ctl(&["add-port", BR, "vsb", "ofport=2", "options:xdp=off"]);
    assert_ping(&pb, &node.pod(a).ip, 2);
    let dropped = d.ports(BR)[&2].rx_dropped;
    signal("-STOP");
    udp_burst(&pb, &node.pod(a).ip, 60_000);
    signal("-CONT");
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        d.ports(BR)[&2].rx_dropped > dropped + 1000,
        "the burst did not overrun vsb's ring"
    );
    assert!(!xdp_attached(&node_ns, "vsb"), "xdp=off port attached XDP");
    let listed: String = d
        .ctl(&["--format", "json", "list-ports", BR])
        .split_whitespace()
        .collect();
    assert!(listed.contains("\"xdp\":\"off\""), "{listed}");

    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}
