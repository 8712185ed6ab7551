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
    let c = node.adopt_tap_pod("p1c", "tp1c", "10.10.0.3/24", "02:00:00:00:01:03");
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
            5001,
            300_000,
        );
        assert_eq!(got, 300_000, "TCP transfer {from} -> {to} lost bytes");
    }
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// A node with two veth pods on ofports 1 and 2 (10.10.0.1 and 10.10.0.2).
fn two_pod_node(tag: &str) -> Node {
    let mut node = Node::new(tag);
    node.start_switch(BR);
    node.add_veth_pod(
        &format!("{tag}a"),
        "vpa",
        "10.10.0.1/24",
        "02:00:00:00:02:01",
    );
    node.add_veth_pod(
        &format!("{tag}b"),
        "vpb",
        "10.10.0.2/24",
        "02:00:00:00:02:02",
    );
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1"]);
    d.ctl(&["add-port", BR, "vpb", "ofport=2"]);
    node
}

/// A pod's veth deleted and created again under the same name while vswitchd runs (a CNI
/// DEL and ADD reusing the name, a node's network reloaded): the port, bound to the old
/// interface, is reopened on the new one within seconds, with its ofport and flows.
#[test]
fn a_port_follows_its_interface_deleted_and_created_again() {
    if !require_root("a_port_follows_its_interface_deleted_and_created_again") {
        return;
    }
    let node = two_pod_node("rc");
    let (a, b) = (node.pod(0), node.pod(1));
    assert_ping(a.name(), &b.ip, 2);
    ns_sh(
        node.name(),
        &format!(
            "ip link del vpb && ip link add vpb type veth peer name eth0 netns {pod} && \
             sysctl -qw net.ipv6.conf.vpb.disable_ipv6=1 && ip link set vpb up",
            pod = b.name()
        ),
    );
    configure_pod_eth0(b.name(), "10.10.0.2/24", "02:00:00:00:02:02");
    ns_sh(b.name(), "ethtool -K eth0 tso off gso off >/dev/null");
    // Reopened within the next second or two (the check runs every second).
    assert!(
        ping_until(a.name(), &b.ip, 15),
        "no reply from the recreated pod interface:\n{}",
        node.daemon().log_text()
    );
    assert_ping(a.name(), &b.ip, 3);
    let log = node.daemon().log_text();
    assert!(log.contains("port reopened on it"), "{log}");
    let ports = node.daemon().ctl(&["list-ports", BR]);
    assert_eq!(ports, "vpa\nvpb\n");
}

/// A fast-failover group watches the link of its port, not only its `mod-port` bit: a pod's
/// end set down makes the port dead within a second or two (the port watcher), the group
/// fails over to its next bucket, and comes back when the link returns (Open vSwitch's
/// `may_enable`). PORT_DESC says LINK_DOWN meanwhile.
#[test]
fn fast_failover_follows_the_link_of_its_watched_port() {
    if !require_root("fast_failover_follows_the_link_of_its_watched_port") {
        return;
    }
    let node = two_pod_node("ff");
    let d = node.daemon();
    let (a, b) = (node.pod(0), node.pod(1));
    d.ctl(&["del-flows", BR]);
    d.ctl(&[
        "add-group",
        BR,
        "group_id=1,type=ff,bucket=watch_port:2,actions=resubmit(,10),bucket=watch_port:1,actions=resubmit(,11)",
    ]);
    for flow in [
        "priority=10,in_port=1,actions=group:1",
        "priority=10,in_port=2,actions=output:1",
        "table=10,priority=0,actions=output:2",
        "table=11,priority=0,actions=drop",
    ] {
        d.ctl(&["add-flow", BR, flow]);
    }
    assert_ping(a.name(), &b.ip, 2);
    let spare = |d: &Daemon| d.flow_packets(BR, "table=11");
    assert_eq!(spare(d), 0, "the spare bucket was used while port 2 was up");

    ns_sh(b.name(), "ip link set eth0 down");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while spare(d) == 0 && std::time::Instant::now() < deadline {
        let _ = ping_with(a.name(), &b.ip, 1, &["-W", "1"]);
    }
    assert!(
        spare(d) > 0,
        "frames still went to the dead port:\n{}\n{}",
        d.ctl(&["dump-flows", BR]),
        d.ctl(&["dump-ports-desc", BR])
    );
    assert!(d.ctl(&["dump-ports-desc", BR]).contains("LINK_DOWN"));

    ns_sh(b.name(), "ip link set eth0 up");
    assert!(
        ping_until(a.name(), &b.ip, 15),
        "no failback once the link came back:\n{}",
        d.log_text()
    );
    let after = spare(d);
    assert_ping(a.name(), &b.ip, 3);
    assert_eq!(
        spare(d),
        after,
        "the spare bucket was still used after the failback"
    );

    // The pod's interface deleted (its namespace gone before a CNI DEL): dead as well.
    ns_sh(b.name(), "ip link del eth0");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while spare(d) == after && std::time::Instant::now() < deadline {
        let _ = ping_with(a.name(), &b.ip, 1, &["-W", "1"]);
    }
    assert!(
        spare(d) > after,
        "frames still went to the deleted interface's port:\n{}",
        d.ctl(&["dump-flows", BR])
    );
}

/// Port-to-port flows instead of NORMAL; deleting one direction stops the traffic at once
/// (no stale cached forwarding) and the misses are counted as `no_match`.
#[test]
fn explicit_port_flows_and_deletion() {
    if !require_root("explicit_port_flows_and_deletion") {
        return;
    }
    let node = two_pod_node("n2");
    let d = node.daemon();
    let (a, b) = (node.pod(0), node.pod(1));
    d.ctl(&["del-flows", BR]);
    assert_eq!(d.ctl(&["dump-flows", BR, "--no-stats"]), "");
    // Nothing forwards now.
    let r = ping(a.name(), &b.ip, 2);
    assert!(
        r.none_replied(),
        "ping crossed a bridge without flows:\n{}",
        r.output()
    );
    // ARP and IP alike: everything from one port goes to the other.
    d.ctl(&["add-flow", BR, "priority=10,in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", BR, "priority=10,in_port=2,actions=output:1"]);
    assert_ping(a.name(), &b.ip, 5);
    assert_ping(b.name(), &a.ip, 3);
    assert!(
        d.flow_packets(BR, "in_port=1") >= 8,
        "in_port=1 flow did not count:\n{}",
        d.ctl(&["dump-flows", BR])
    );
    assert!(d.flow_packets(BR, "in_port=2") >= 8);

    // The caches hold the a->b walk now; deleting the flow must stop it immediately.
    let miss_before = d.drops(BR, "no_match");
    d.ctl(&["del-flows", BR, "in_port=1"]);
    assert!(
        d.ctl(&["dump-flows", BR, "--no-stats"])
            .lines()
            .all(|l| !l.contains("in_port=1"))
    );
    let r = ping(a.name(), &b.ip, 5);
    assert!(
        r.transmitted == 5 && r.none_replied(),
        "traffic still flows after del-flows:\n{}",
        r.output()
    );
    let miss_after = d.drops(BR, "no_match");
    assert!(
        miss_after >= miss_before + 5,
        "no_match went from {miss_before} to {miss_after} for 5 dropped pings"
    );
    // The other direction still forwards: b's requests reach a (its replies die at the switch).
    let to_a = d.flow_packets(BR, "in_port=2");
    let _ = ping(b.name(), &a.ip, 2);
    assert!(d.flow_packets(BR, "in_port=2") >= to_a + 2);
}

/// Plays a VLAN-100 endpoint on a pod's `eth0` (this kernel has no 8021q module for an
/// `eth0.100` subinterface): answers tagged ARP requests and ICMP echo requests for its address
/// with tagged replies, counts untagged frames, and prints "answered untagged" at the end.
const VLAN_RESPONDER: &str = r#"
import socket, struct, sys, time
ifname, myip, mymac, vid, limit = sys.argv[1], socket.inet_aton(sys.argv[2]), bytes.fromhex(sys.argv[3].replace(':', '')), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA: the tag the kernel moved out of the frame
s.settimeout(0.2)
end = time.time() + limit

def csum(b):
    if len(b) % 2:
        b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return (~t) & 0xffff

answered = untagged = 0
while time.time() < end:
    try:
        f, anc, _, addr = s.recvmsg(65535, 256)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    tci = None
    if len(f) >= 18 and f[12:14] == b'\x81\x00':
        tci = struct.unpack('!H', f[14:16])[0]
        f = f[:12] + f[16:]
    for lvl, typ, data in anc:
        if lvl == 263 and typ == 8 and len(data) >= 20:
            status, _, _, _, _, atci, _ = struct.unpack('IIIHHHH', data[:20])
            if status & 0x10:
                tci = atci
    if tci is None or tci & 0xfff != vid:
        untagged += 1
        continue
    src, et, p = f[6:12], f[12:14], f[14:]
    tag = b'\x81\x00' + struct.pack('!H', tci)
    if et == b'\x08\x06' and len(p) >= 28 and p[6:8] == b'\x00\x01' and p[24:28] == myip:
        arp = p[0:6] + b'\x00\x02' + mymac + myip + p[8:14] + p[14:18]
        s.send(src + mymac + tag + et + arp)
    elif et == b'\x08\x00' and len(p) >= 28 and p[9] == 1 and p[16:20] == myip:
        ihl = (p[0] & 15) * 4
        tot = struct.unpack('!H', p[2:4])[0]
        icmp = bytearray(p[ihl:tot])
        if icmp[0] != 8:
            continue
        icmp[0] = 0
        icmp[2:4] = b'\0\0'
        icmp[2:4] = struct.pack('!H', csum(bytes(icmp)))
        ip = bytearray(p[:ihl])
        ip[12:16], ip[16:20], ip[8] = p[16:20], p[12:16], 64
        ip[10:12] = b'\0\0'
        ip[10:12] = struct.pack('!H', csum(bytes(ip)))
        s.send(src + mymac + tag + et + bytes(ip) + bytes(icmp))
        answered += 1
print(answered, untagged)
"#;

/// VLAN push towards a pod that only speaks VLAN 100, pop on the way back.
#[test]
fn vlan_push_pop_to_tagged_pod() {
    if !require_root("vlan_push_pop_to_tagged_pod") {
        return;
    }
    let node = two_pod_node("n3");
    let d = node.daemon();
    let (a, b) = (node.pod(0), node.pod(1));
    // Pod b's kernel must stay out of it: no address on eth0.
    ns_sh(b.name(), "ip addr flush dev eth0");
    let script = std::env::temp_dir().join(format!("{}-vlan.py", node.name()));
    std::fs::write(&script, VLAN_RESPONDER).expect("write responder");
    d.ctl(&["del-flows", BR]);
    let flows = "priority=10,in_port=1,actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2\n\
                 priority=10,in_port=2,dl_vlan=100,actions=pop_vlan,output:1\n";
    let file = std::env::temp_dir().join(format!("{}-flows.txt", node.name()));
    std::fs::write(&file, flows).expect("write flows");
    d.ctl(&["add-flows", BR, file.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&file);

    let (pod_b, script_path) = (
        b.name().to_string(),
        script.to_str().expect("utf-8").to_string(),
    );
    let responder = std::thread::spawn(move || {
        ns_run(
            &pod_b,
            &[
                "python3",
                &script_path,
                "eth0",
                "10.10.0.2",
                "02:00:00:00:02:02",
                "100",
                "6",
            ],
            Duration::from_secs(10),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let cap = Capture::start(node.name(), "vpb", 4, "vlan 100 and icmp");
    assert_ping(a.name(), &b.ip, 4);
    let seen = cap.finish(Duration::from_secs(2));
    let r = responder.join().expect("responder thread");
    let _ = std::fs::remove_file(&script);
    assert!(r.ok, "responder failed: {}{}", r.stdout, r.stderr);
    let counts: Vec<u64> = r
        .stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] >= 5,
        "responder answered too little: {}",
        r.stdout
    );
    assert_eq!(counts[1], 0, "untagged frames reached the VLAN-only pod");
    assert!(
        seen.contains("vlan 100"),
        "no tagged ICMP on the tagged pod's port:\n{seen}"
    );
    // The replies came back through the pop flow, and pod a saw them untagged (ping worked).
    assert!(d.flow_packets(BR, "in_port=2,dl_vlan=100") >= 5);
}

/// Node A runs vswitchd with pod A (172.16.0.1) and a VXLAN port (VNI 100) to node B; node B
/// is plain Linux: kernel vxlan + Linux bridge + pod B (172.16.0.2). Underlay: a veth pair
/// 192.168.0.11/24 (A, `ula`) <-> 192.168.0.12/24 (B, `ulb`).
struct TwoNodes {
    /// Declared first: the switch and its namespaces go before node B's.
    a: Node,
    b_pod: Netns,
    b: Netns,
}

fn two_nodes(tag: &str) -> TwoNodes {
    let mut a = Node::new(&format!("{tag}A"));
    let b = Netns::new(&unique(&format!("{tag}B"))).expect("node B namespace");
    let b_pod = Netns::new(&unique(&format!("{tag}Bp"))).expect("pod B namespace");
    ns_sh(
        a.name(),
        &format!(
            "ip link add ula type veth peer name ulb netns {b} && \
             ip addr add 192.168.0.11/24 dev ula && ip link set ula up",
            b = b.name()
        ),
    );
    kernel_vxlan_peer(b.name(), b_pod.name());
    a.start_switch(BR);
    a.add_veth_pod(
        &format!("{tag}Ap"),
        "vpa",
        "172.16.0.1/16",
        "02:00:00:00:0a:01",
    );
    let d = a.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1"]);
    d.ctl(&[
        "add-port",
        BR,
        "vx0",
        "type=vxlan",
        "ofport=2",
        "options:remote_ip=192.168.0.12",
        "options:key=100",
        "options:local_ip=192.168.0.11",
    ]);
    TwoNodes { a, b_pod, b }
}

/// Pod-to-pod over VXLAN to a kernel VXLAN node; the underlay carries VNI 100 to UDP 4789;
/// an oversized DF packet is dropped as `tunnel_too_big` and answered with frag-needed.
#[test]
fn vxlan_to_plain_linux_node() {
    if !require_root("vxlan_to_plain_linux_node") {
        return;
    }
    let t = two_nodes("v4");
    let d = t.a.daemon();
    let pod_a = t.a.pod(0).name();
    let cap = Capture::start(
        t.b.name(),
        "ulb",
        4,
        "udp dst port 4789 and src host 192.168.0.11",
    );
    assert_ping(pod_a, "172.16.0.2", 4);
    let seen = cap.finish(Duration::from_secs(2));
    assert!(
        seen.contains("192.168.0.12.4789:"),
        "no UDP/4789 from node A on the underlay:\n{seen}"
    );
    assert!(
        seen.contains("vni 100"),
        "no VNI 100 on the underlay:\n{seen}"
    );
    assert_ping(t.b_pod.name(), "172.16.0.1", 3);
    let ports = d.ports(BR);
    assert!(
        ports[&2].tx_packets >= 8 && ports[&2].rx_packets >= 8,
        "vxlan port counters: {ports:?}"
    );

    // 1472 + 28 = a 1500-byte IP packet: does not fit 1500 - 50 after encapsulation.
    let too_big_before = d.drops(BR, "tunnel_too_big");
    let r = ping_with(pod_a, "172.16.0.2", 2, &["-M", "do", "-s", "1472"]);
    let out = r.output();
    assert!(
        r.none_replied(),
        "an oversized DF ping crossed the tunnel:\n{out}"
    );
    assert!(
        d.drops(BR, "tunnel_too_big") > too_big_before,
        "tunnel_too_big not counted"
    );
    assert!(
        out.contains("Frag needed") || out.contains("mtu = 1450") || out.contains("mtu=1450"),
        "pod A got no fragmentation-needed answer:\n{out}"
    );
    // And what fits still goes through.
    let r = ping_with(pod_a, "172.16.0.2", 2, &["-M", "do", "-s", "1422"]);
    assert!(
        r.all_replied(),
        "a 1450-byte DF ping did not cross the tunnel (both wanted):\n{}",
        r.output()
    );
}

/// Pod to pod over Geneve between two vswitchd nodes (the kernel here has no `geneve` device:
/// tcpdump decodes the header on the underlay): pings, TCP both ways with the pods' offloads on
/// (super-frames through the UDP-tunnel GSO TAP where the kernel has it), bytes intact. Then
/// datagrams from node B's kernel UDP stack: an ICMP echo for pod A behind a header with an
/// option reaches pod A (the option skipped); the same with the C bit (a critical option) is
/// refused and counted.
#[test]
fn geneve_between_two_nodes() {
    if !require_root("geneve_between_two_nodes") {
        return;
    }
    let mut a = Node::new("gnA");
    let mut b = Node::new("gnB");
    ns_sh(
        a.name(),
        &format!(
            "ip link add ula type veth peer name ulb netns {b} && \
             ip addr add 192.168.0.11/24 dev ula && ip link set ula up",
            b = b.name()
        ),
    );
    ns_sh(
        b.name(),
        "ip addr add 192.168.0.12/24 dev ulb && ip link set ulb up",
    );
    for (node, me, peer, pod, ip, mac) in [
        (
            &mut a,
            "192.168.0.11",
            "192.168.0.12",
            "gnAp",
            "172.16.0.1/16",
            "02:00:00:00:0a:01",
        ),
        (
            &mut b,
            "192.168.0.12",
            "192.168.0.11",
            "gnBp",
            "172.16.0.2/16",
            "02:00:00:00:0b:02",
        ),
    ] {
        node.start_switch(BR);
        node.add_veth_pod(pod, "vp", ip, mac);
        let d = node.daemon();
        d.ctl(&["add-port", BR, "vp", "ofport=1"]);
        d.ctl(&[
            "add-port",
            BR,
            "gnv0",
            "type=geneve",
            "ofport=2",
            &format!("options:remote_ip={peer}"),
            "options:key=100",
            &format!("options:local_ip={me}"),
        ]);
        d.ctl(&["add-flow", BR, "in_port=1,actions=output:2"]);
        d.ctl(&["add-flow", BR, "in_port=2,actions=output:1"]);
    }
    let (pod_a, pod_b) = (a.pod(0).name(), b.pod(0).name());
    let trace = a
        .daemon()
        .ctl(&["trace", BR, "in_port=1,ip,nw_dst=172.16.0.2"]);
    assert!(
        trace.contains("Geneve encap vni=100") && trace.contains("tnl_push(geneve(vni=100"),
        "{trace}"
    );
    let cap = Capture::start(
        b.name(),
        "ulb",
        4,
        "udp dst port 6081 and src host 192.168.0.11",
    );
    assert_ping(pod_a, "172.16.0.2", 4);
    let seen = cap.finish(Duration::from_secs(2));
    assert!(
        seen.contains("192.168.0.12.6081:") && seen.contains("Geneve"),
        "no Geneve to UDP/6081 from node A on the underlay:\n{seen}"
    );
    assert!(
        seen.contains("vni 0x64"),
        "no VNI 100 on the underlay:\n{seen}"
    );
    assert_ping(pod_b, "172.16.0.1", 3);
    assert_eq!(
        tcp_transfer(pod_a, pod_b, "172.16.0.2", 5301, 8 << 20),
        8 << 20,
        "TCP from A's pod"
    );
    assert_eq!(
        tcp_transfer(pod_b, pod_a, "172.16.0.1", 5302, 8 << 20),
        8 << 20,
        "TCP to A's pod"
    );

    // Hand-made datagrams from node B's UDP stack: Geneve with one option (class 0x0102,
    // type 0x01, one word), then the same with the C bit; each carries an ICMP echo from pod B
    // to pod A with its own identifier.
    let mac_a = ns_sh(pod_a, "cat /sys/class/net/eth0/address");
    let send = |id: u16, critical: bool| {
        let script = format!(
            "import socket, struct\n\
             def csum(b):\n\
             \x20   s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n\
             \x20   s = (s >> 16) + (s & 0xffff); s += s >> 16\n\
             \x20   return ~s & 0xffff\n\
             icmp = struct.pack('!BBHHH', 8, 0, 0, {id}, 1) + b'geneve-options'\n\
             icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]\n\
             ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,\n\
             \x20   socket.inet_aton('172.16.0.2'), socket.inet_aton('172.16.0.1'))\n\
             ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]\n\
             eth = bytes.fromhex('{dst}') + bytes.fromhex('02000000 0b02'.replace(' ', '')) + b'\\x08\\x00'\n\
             gnv = bytes([0x02, {flags}, 0x65, 0x58, 0, 0, 100, 0, 0x01, 0x02, 0x01, 0x01, 1, 2, 3, 4])\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.sendto(gnv + eth + ip + icmp, ('192.168.0.11', 6081))\n",
            dst = mac_a.trim().replace(':', ""),
            flags = if critical { "0x40" } else { "0x00" },
        );
        let r = ns_run(
            b.name(),
            &["python3", "-c", &script],
            Duration::from_secs(5),
        );
        assert!(r.ok, "sender: {}{}", r.stdout, r.stderr);
    };
    let d = a.daemon();
    let bad_before = d.drops(BR, "vxlan_bad_flags");
    let cap = Capture::start(
        pod_a,
        "eth0",
        1,
        "icmp[icmptype] == 8 and icmp[4:2] == 0x4242",
    );
    send(0x4242, false);
    let seen = cap.finish(Duration::from_secs(3));
    assert!(
        seen.contains("172.16.0.2 > 172.16.0.1: ICMP echo request"),
        "the echo behind a Geneve option did not reach pod A:\n{seen}"
    );
    send(0x4343, true);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while d.drops(BR, "vxlan_bad_flags") == bad_before {
        assert!(
            std::time::Instant::now() < deadline,
            "a critical option was not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The outer UDP source port of each VXLAN datagram node A sent, by the inner flow's source
/// port (`tcpdump -vv` prints the outer and the inner header on consecutive lines).
fn outer_ports_by_inner_port(seen: &str, inner: &str) -> Vec<(u16, u16)> {
    let port_after = |line: &str, host: &str| -> Option<u16> {
        let rest = &line[line.find(host)? + host.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut out = Vec::new();
    let mut outer = None;
    for line in seen.lines() {
        if line.contains("> 192.168.0.12.4789:") {
            outer = port_after(line, "192.168.0.11.");
        } else if let (Some(o), true) = (outer, line.contains(inner)) {
            if let Some(i) = port_after(line, inner) {
                out.push((i, o));
            }
            outer = None;
        }
    }
    out
}

/// RFC 7348 §5: the outer UDP source port follows the inner flow, so the underlay's ECMP and
/// the receiver's RSS spread one pair of nodes' traffic by flow. Sixteen UDP flows from pod A
/// leave from several source ports, each flow from one; a TCP transfer with the pods'
/// offloads on (its super-frames through the UDP-tunnel GSO TAP where the kernel has it, its
/// handshake through the socket) leaves from one port too; the kernel's VXLAN peer takes
/// them all.
#[test]
fn vxlan_source_port_follows_the_inner_flow() {
    if !require_root("vxlan_source_port_follows_the_inner_flow") {
        return;
    }
    let t = two_nodes("vs");
    let pod_a = t.a.pod(0).name();
    assert_ping(pod_a, "172.16.0.2", 2);
    // Every datagram one size larger than the one before: none of them are sent together as
    // one UDP GSO message, which the capture would see as one packet.
    let cap = Capture::start(
        t.b.name(),
        "ulb",
        32,
        "udp dst port 4789 and src host 192.168.0.11",
    );
    let send = ns_run(
        pod_a,
        &[
            "python3",
            "-c",
            "import socket\n\
             for p in range(5001, 5017):\n\
             \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             \x20   s.bind(('172.16.0.1', p))\n\
             \x20   for k in range(2): s.sendto(b'x' * (2 * p + k - 10000), ('172.16.0.2', 7000))\n\
             \x20   s.close()",
        ],
        Duration::from_secs(5),
    );
    assert!(send.ok, "UDP sender: {}{}", send.stdout, send.stderr);
    let seen = cap.finish(Duration::from_secs(3));
    let pairs = outer_ports_by_inner_port(&seen, "172.16.0.1.");
    let flows: std::collections::BTreeMap<u16, std::collections::BTreeSet<u16>> =
        pairs.iter().fold(Default::default(), |mut m, &(i, o)| {
            m.entry(i).or_default().insert(o);
            m
        });
    assert_eq!(
        flows.len(),
        16,
        "not every flow seen on the underlay:\n{seen}"
    );
    assert!(
        flows.values().all(|o| o.len() == 1),
        "a flow left from two source ports: {flows:?}"
    );
    let ports: std::collections::BTreeSet<u16> = flows.values().flatten().copied().collect();
    assert!(
        ports.len() >= 4,
        "16 flows from only {} source ports: {flows:?}",
        ports.len()
    );
    assert!(
        !ports.contains(&4789),
        "a datagram left from the tunnel's own port: {ports:?}"
    );

    let cap = Capture::start(
        t.b.name(),
        "ulb",
        400,
        "udp dst port 4789 and src host 192.168.0.11",
    );
    let got = tcp_transfer(pod_a, t.b_pod.name(), "172.16.0.2", 5201, 4 << 20);
    assert_eq!(got, 4 << 20, "TCP transfer across the tunnel");
    let seen = cap.finish(Duration::from_secs(2));
    let tcp: std::collections::BTreeSet<u16> = outer_ports_by_inner_port(&seen, "172.16.0.1.")
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        tcp.len(),
        1,
        "one TCP connection left from several source ports: {tcp:?}\n{}",
        &seen[..seen.len().min(4000)]
    );
}

/// Node A (vswitchd, pod 172.16.0.1) with one VXLAN port per peer on the same UDP port, as
/// an Open vSwitch user builds an overlay: `vx1` to node B (192.168.0.12), `vx2` to node C
/// (192.168.0.13), both kernel VXLAN + bridge nodes with a pod (172.16.0.2, 172.16.0.3). The
/// underlay is a Linux bridge in its own namespace. Each peer's datagrams enter through its
/// own port; B's and C's pods reach each other through A (in on one tunnel port, out on the
/// other, by flows); a third port for B's address is refused, and taken once `vx1` is deleted.
#[test]
fn vxlan_ports_share_udp_4789_one_per_remote() {
    if !require_root("vxlan_ports_share_udp_4789_one_per_remote") {
        return;
    }
    let mut a = Node::new("vsA");
    let u = Netns::new(&unique("vsU")).expect("underlay namespace");
    let peers: Vec<(Netns, Netns)> = ["B", "C"]
        .iter()
        .map(|n| {
            (
                Netns::new(&unique(&format!("vs{n}"))).expect("node namespace"),
                Netns::new(&unique(&format!("vs{n}p"))).expect("pod namespace"),
            )
        })
        .collect();
    ns_sh(
        u.name(),
        &format!(
            "ip link add ul type bridge && ip link set ul up && \
             ip link add ua type veth peer name ula netns {a} && ip link set ua master ul && ip link set ua up",
            a = a.name()
        ),
    );
    ns_sh(
        a.name(),
        "ip addr add 192.168.0.11/24 dev ula && ip link set ula up",
    );
    for (i, (node, pod)) in peers.iter().enumerate() {
        let host = 12 + i;
        ns_sh(
            u.name(),
            &format!(
                "ip link add u{i} type veth peer name ul netns {n} && ip link set u{i} master ul && ip link set u{i} up",
                n = node.name()
            ),
        );
        ns_sh(
            node.name(),
            &format!(
                "ip addr add 192.168.0.{host}/24 dev ul && ip link set ul up && \
                 ip link add vx0 type vxlan id 100 local 192.168.0.{host} remote 192.168.0.11 dstport 4789 dev ul && \
                 ip link add brn type bridge && ip link set vx0 master brn && \
                 ip link add vp type veth peer name eth0 netns {pod} && ip link set vp master brn && \
                 ip link set vx0 up && ip link set vp up && ip link set brn up",
                pod = pod.name()
            ),
        );
        configure_pod_eth0(
            pod.name(),
            &format!("172.16.0.{}/16", 2 + i),
            &format!("02:00:00:00:0b:0{}", 2 + i),
        );
    }
    a.start_switch(BR);
    a.add_veth_pod("vsAp", "vpa", "172.16.0.1/16", "02:00:00:00:0a:01");
    let d = a.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1"]);
    let vxlan_to = |name: &str, ofport: &str, remote: &str| {
        d.ctl_run(&[
            "add-port",
            BR,
            name,
            "type=vxlan",
            ofport,
            &format!("options:remote_ip={remote}"),
            "options:key=100",
            "options:local_ip=192.168.0.11",
        ])
    };
    for (name, ofport, remote) in [
        ("vx1", "ofport=2", "192.168.0.12"),
        ("vx2", "ofport=3", "192.168.0.13"),
    ] {
        let r = vxlan_to(name, ofport, remote);
        assert!(r.ok, "add-port {name}: {}{}", r.stdout, r.stderr);
    }
    let r = vxlan_to("vx9", "ofport=9", "192.168.0.12");
    assert!(
        !r.ok && r.stderr.contains("port vx1 already receives"),
        "a second port for 192.168.0.12 on UDP 4789: {}{}",
        r.stdout,
        r.stderr
    );

    let pod_a = a.pod(0).name();
    let rx = |p: u32| d.ports(BR)[&p].rx_packets;
    // A datagram handed to the socket of the other peer's port would be refused there
    // (each port accepts its own remote only) and counted: the pings would fail.
    let misdelivered = || d.drops(BR, "vxlan_unknown_tunnel");
    assert_ping(pod_a, "172.16.0.2", 3);
    let (b_rx, c_rx) = (rx(2), rx(3));
    assert!(
        b_rx >= 3,
        "node B's replies did not enter through vx1 ({b_rx})"
    );
    assert_ping(pod_a, "172.16.0.3", 3);
    assert!(
        rx(3) >= c_rx + 3,
        "node C's replies did not enter through vx2"
    );
    // B's pod to C's pod: in through vx1, out through vx2, and back (NORMAL keeps what
    // comes from the overlay out of it: explicit flows).
    d.ctl(&["add-flow", BR, "priority=10,in_port=2,actions=output:3"]);
    d.ctl(&["add-flow", BR, "priority=10,in_port=3,actions=output:2"]);
    assert_ping(peers[0].1.name(), "172.16.0.3", 3);
    assert_eq!(misdelivered(), 0, "{}", d.ctl(&["dump-drops", BR]));

    d.ctl(&["del-port", BR, "vx1"]);
    let r = vxlan_to("vx9", "ofport=9", "192.168.0.12");
    assert!(
        r.ok,
        "vx1's remote after its deletion: {}{}",
        r.stdout, r.stderr
    );
    assert_ping(pod_a, "172.16.0.2", 2);
    assert!(rx(9) >= 2, "node B's replies did not enter through vx9");
}

/// The underlay's MTU raised while vswitchd runs: the tunnel port, which bounds what it
/// encapsulates by the MTU it opened with, is reopened within seconds and carries the larger
/// packets.
#[test]
fn a_tunnel_port_follows_its_underlay_interface() {
    if !require_root("a_tunnel_port_follows_its_underlay_interface") {
        return;
    }
    let t = two_nodes("vm");
    let pod_a = t.a.pod(0).name();
    assert_ping(pod_a, "172.16.0.2", 2);
    let full = |n: u32| ping_with(pod_a, "172.16.0.2", n, &["-M", "do", "-s", "1472"]);
    ns_sh(t.a.name(), "ip link set ula mtu 9000");
    ns_sh(
        t.b.name(),
        "ip link set ulb mtu 9000 && ip link set vx0 mtu 1500",
    );
    // Not before the port is reopened (the watcher looks every second): a packet the tunnel
    // could not take would teach pod A a path MTU of 1450.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !t.a.daemon().log_text().contains("port reopened on it")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = full(3);
    assert!(
        r.all_replied(),
        "1500-byte packets over a 9000-byte underlay:\n{}\n{}\n{}\n{}",
        r.output(),
        ns_sh(pod_a, "ip route get 172.16.0.2; ip link show eth0"),
        t.a.daemon().ctl(&["dump-drops", BR]),
        t.a.daemon().log_text()
    );
    let log = t.a.daemon().log_text();
    assert!(log.contains("port reopened on it"), "{log}");
}

/// From a pod: 20 IPv4 frames with no IP header at all, 20 truncated IPv4 headers, 20 IPv4
/// headers claiming more bytes than they carry; broadcast, so NORMAL floods them.
/// (No runts: the kernel refuses to send a frame shorter than an Ethernet header.)
const BAD_FRAMES: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
src = bytes.fromhex(sys.argv[2].replace(':', ''))
eth = b'\xff' * 6 + src + b'\x08\x00'
for _ in range(20):
    s.send(eth)
    s.send(eth + b'\x45\x00\x00\x54\x00\x00')
    s.send(eth + b'\x4f\x00\x03\xe8' + b'\x00' * 16)
"#;

/// From node B's underlay: 10 VXLAN headers without the I flag, 10 datagrams shorter than a
/// VXLAN header, 10 VXLAN headers with no inner frame, 10 VNI-200 packets (no such tunnel).
const BAD_VXLAN: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('192.168.0.12', 0))
dst = ('192.168.0.11', 4789)
inner = b'\xff' * 6 + b'\x02\x00\x00\x00\x0b\x09' + b'\x88\xb5' + b'\x00' * 46
for _ in range(10):
    s.sendto(b'\x00\x00\x00\x00\x00\x00\x64\x00' + inner, dst)
    s.sendto(b'\x08\x00\x00', dst)
    s.sendto(b'\x08\x00\x00\x00\x00\x00\x64\x00', dst)
    s.sendto(b'\x08\x00\x00\x00\x00\x00\xc8\x00' + inner, dst)
"#;

/// Garbage from a pod and from the underlay: the switch keeps forwarding and names the drops.
#[test]
fn bad_input_is_counted_and_survived() {
    if !require_root("bad_input_is_counted_and_survived") {
        return;
    }
    let mut t = two_nodes("v5");
    let pod_a = t.a.pod(0).name().to_string();
    assert_ping(&pod_a, "172.16.0.2", 2);
    let d = t.a.daemon();
    let names = ["vxlan_bad_flags", "vxlan_short", "vxlan_unknown_tunnel"];
    let before: Vec<u64> = names.iter().map(|n| d.drops(BR, n)).collect();
    let rx_before = d.ports(BR)[&1].rx_packets;

    let r = ns_run(
        &pod_a,
        &["python3", "-c", BAD_FRAMES, "eth0", "02:00:00:00:0a:01"],
        Duration::from_secs(10),
    );
    assert!(r.ok, "bad frame sender failed: {}", r.stderr);
    let r = ns_run(
        t.b.name(),
        &["python3", "-c", BAD_VXLAN],
        Duration::from_secs(10),
    );
    assert!(r.ok, "bad VXLAN sender failed: {}", r.stderr);
    std::thread::sleep(Duration::from_millis(300));

    let after: Vec<u64> = names.iter().map(|n| d.drops(BR, n)).collect();
    let grew = |i: usize| after[i] - before[i];
    // The pod's 60 frames all reached the switch. As in Open vSwitch, a header that lies
    // about its length adds nothing to the key (datapath/exec.rs): they are matched on their
    // Ethernet header, here by the bridge's NORMAL flow (flooded, as Open vSwitch would).
    assert!(
        d.ports(BR)[&1].rx_packets >= rx_before + 60,
        "the switch did not see the bad frames"
    );
    assert!(
        grew(0) >= 10,
        "vxlan_bad_flags grew by {} (want >= 10)",
        grew(0)
    );
    assert!(
        grew(1) >= 20,
        "vxlan_short grew by {} (want >= 20)",
        grew(1)
    );
    assert!(
        grew(2) >= 10,
        "vxlan_unknown_tunnel grew by {} (want >= 10)",
        grew(2)
    );

    assert_ping(&pod_a, "172.16.0.2", 3);
    assert_ping(t.b_pod.name(), "172.16.0.1", 2);
    let d = t.a.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// From a pod: `argv[3]` UDP datagrams to `argv[1]`:9 with the TOS byte `argv[2]`.
const SEND_TOS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[2]))
for _ in range(int(sys.argv[3])):
    s.sendto(b'ecn', (sys.argv[1], 9))
"#;

/// In pod A: prints `got TAG TOS` for each datagram to 172.16.0.1:`argv[1]` until `argv[2]`
/// seconds pass without one.
const RECV_TOS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, getattr(socket, 'IP_RECVTOS', 13), 1)
s.bind(('172.16.0.1', int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
try:
    while True:
        data, anc, _, _ = s.recvmsg(64, 64)
        tos = [c[2][0] for c in anc if c[0] == socket.IPPROTO_IP and c[1] == socket.IP_TOS]
        print('got', data.decode(), tos[0] if tos else -1, flush=True)
except socket.timeout:
    pass
"#;

/// From node B's underlay: VXLAN (VNI 100) to node A around an IPv4 UDP datagram from pod B
/// to pod A (172.16.0.1:`argv[1]`), one per `TAG:OUTER:INNER` argument: outer TOS OUTER
/// (the sending socket's IP_TOS), inner TOS INNER, payload TAG; inner header checksum valid.
const SEND_VXLAN_ECN: &str = r#"
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!10H', b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('192.168.0.12', 0))
for arg in sys.argv[2:]:
    tag, outer, inner = arg.split(':')
    data = tag.encode()
    udp = struct.pack('!HHHH', 40000, port, 8 + len(data), 0) + data
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, int(inner), 20 + len(udp), 1, 0x4000, 64, 17, 0,
                     socket.inet_aton('172.16.0.2'), socket.inet_aton('172.16.0.1'))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    eth = bytes.fromhex('02000000' '0a01' '02000000' '0b02' '0800')
    vxlan = bytes.fromhex('08000000' '00006400')
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(outer))
    s.sendto(vxlan + eth + ip + udp, ('192.168.0.11', 4789))
"#;

/// ECN across the tunnel to and from a kernel VXLAN node (RFC 6040, as Linux's vxlan does):
/// the outer ECN field is the inner packet's, an inner CE leaving as ECT(0); an outer CE
/// reaches pod A on an ECN-capable packet (whose IPv4 checksum stays valid: the pod's kernel
/// takes it) and drops a Not-ECT one as `tunnel_ecn_ce_not_ect`; super-frames sent whole
/// through the GSO TAP carry the outer ECN too.
#[test]
fn vxlan_carries_ecn_both_ways() {
    if !require_root("vxlan_carries_ecn_both_ways") {
        return;
    }
    let mut t = two_nodes("ve");
    let pod_a = t.a.pod(0).name();
    assert_ping(pod_a, "172.16.0.2", 2);

    // Encapsulation, seen on node B's underlay. Inner byte: UDP 8 + VXLAN 8 + Ethernet 14 + 1.
    // (Datagrams of one UDP GSO send cross the veth as one packet: count packets, not sends.)
    let from_a = "udp dst port 4789 and src host 192.168.0.11";
    for (inner, inner_ecn) in [(0xb8 | 2, 2), (3, 3)] {
        let cap = Capture::start(
            t.b.name(),
            "ulb",
            1,
            &format!("{from_a} and ip[1] = 2 and udp[31] & 3 = {inner_ecn}"),
        );
        let r = ns_run(
            pod_a,
            &[
                "python3",
                "-c",
                SEND_TOS,
                "172.16.0.2",
                &inner.to_string(),
                "3",
            ],
            Duration::from_secs(10),
        );
        assert!(r.ok, "sender failed: {}", r.stderr);
        let seen = cap.finish(Duration::from_secs(2));
        assert!(
            seen.contains("vni 100"),
            "inner TOS {inner:#x}: want the outer TOS exactly ECT(0) (DSCP 0):\n{seen}"
        );
    }

    // Decapsulation: datagrams crafted on node B with the outer TOS set by their socket.
    let d = t.a.daemon();
    let dropped = d.drops(BR, "tunnel_ecn_ce_not_ect");
    let mut rx = Spawned::start(pod_a, "ecnrx", &["python3", "-c", RECV_TOS, "7000", "3"]);
    wait_listening(pod_a, "udp", 7000);
    let cases = [
        ("ce-ect0", 3, 2, Some(3)),
        ("ce-ect1", 3, 1, Some(3)),
        ("ce-notect", 3, 0, None),
        ("ect0-ce", 2, 3, Some(3)),
        ("notect-ect0", 0, 2, Some(2)),
        ("ce-dscp", 0xb8 | 3, 0x28 | 2, Some(0x28 | 3)),
    ];
    let mut args = vec!["python3", "-c", SEND_VXLAN_ECN, "7000"];
    let specs: Vec<String> = cases
        .iter()
        .map(|(tag, o, i, _)| format!("{tag}:{o}:{i}"))
        .collect();
    args.extend(specs.iter().map(String::as_str));
    let r = ns_run(t.b.name(), &args, Duration::from_secs(10));
    assert!(r.ok, "VXLAN sender failed: {}", r.stderr);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rx.alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = rx.output();
    for (tag, _, _, want) in cases {
        let got = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("got {tag} ")));
        assert_eq!(
            got.map(|t| t.trim().parse::<i32>().unwrap_or(-2)),
            want,
            "{tag}: TOS pod A received (None: not received):\n{out}"
        );
    }
    assert_eq!(d.drops(BR, "tunnel_ecn_ce_not_ect"), dropped + 1);

    // Super-frames through the UDP-tunnel GSO TAP (kernel 6.17+): ECN-capable TCP from pod A
    // with its offloads on leaves as whole datagrams above the underlay MTU, ECT(0) outside.
    let tap = ns_run(
        t.a.name(),
        &["ip", "link", "show", "gso-vx0"],
        Duration::from_secs(5),
    );
    if tap.ok {
        for ns in [pod_a, t.b_pod.name()] {
            ns_sh(ns, "sysctl -qw net.ipv4.tcp_ecn=1");
        }
        ns_sh(pod_a, "ethtool -K eth0 tx on tso on gso on >/dev/null");
        let cap = Capture::start(
            t.b.name(),
            "ulb",
            3,
            &format!("{from_a} and greater 3000 and ip[1] = 2"),
        );
        let got = tcp_transfer(pod_a, t.b_pod.name(), "172.16.0.2", 5301, 2_000_000);
        let seen = cap.finish(Duration::from_secs(2));
        assert!(
            seen.matches("vni 100").count() >= 1,
            "no ECT(0) super-frame on the underlay ({got} bytes crossed):\n{seen}"
        );
    } else {
        eprintln!("no UDP-tunnel GSO TAP: the super-frame part is skipped");
    }
    let d = t.a.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// Flow tables change under a ping flood: the daemon survives, every lost ping is a counted
/// drop, forwarding follows the last table, and once the forwarding flows are gone nothing
/// crosses.
#[test]
fn flow_churn_under_traffic() {
    if !require_root("flow_churn_under_traffic") {
        return;
    }
    let mut node = two_pod_node("n6");
    let (pod_a, ip_b) = (node.pod(0).name().to_string(), node.pod(1).ip.clone());
    let d = node.daemon();
    let file = std::env::temp_dir().join(format!("{}-flows.txt", node.name()));
    std::fs::write(
        &file,
        "priority=10,in_port=1,actions=output:2\n\
         priority=10,in_port=2,actions=output:1\n\
         priority=5,ip,nw_dst=10.99.0.0/16,actions=drop\n",
    )
    .expect("write flows");
    let flows = file.to_str().expect("utf-8 path").to_string();
    d.ctl(&["del-flows", BR]);
    d.ctl(&["add-flows", BR, &flows]);
    assert_ping(&pod_a, &ip_b, 2);

    let no_match_before = d.drops(BR, "no_match");
    let (ns, dst) = (pod_a.clone(), ip_b.clone());
    let flood = std::thread::spawn(move || {
        ns_run(
            &ns,
            &[
                "ping", "-n", "-q", "-c", "300", "-i", "0.01", "-W", "1", &dst,
            ],
            Duration::from_secs(10),
        )
    });
    let start = std::time::Instant::now();
    let mut rounds = 0;
    while !flood.is_finished() && rounds < 60 && start.elapsed() < Duration::from_secs(8) {
        d.ctl(&["del-flows", BR]);
        d.ctl(&["add-flows", BR, &flows]);
        d.ctl(&[
            "add-flow",
            BR,
            "priority=20,icmp,in_port=1,actions=output:2",
        ]);
        d.ctl(&["mod-flows", BR, "in_port=2,actions=output:1"]);
        d.ctl(&["del-flows", BR, "icmp"]);
        d.ctl(&["del-flows", BR, "in_port=2"]);
        d.ctl(&["add-flow", BR, "priority=10,in_port=2,actions=output:1"]);
        rounds += 1;
    }
    let r = flood.join().expect("flood thread");
    assert!(
        rounds >= 5,
        "only {rounds} rounds of flow changes during the flood"
    );
    let (sent, received) = ping_summary(&r.stdout)
        .unwrap_or_else(|| panic!("no ping summary:\n{}{}", r.stdout, r.stderr));
    assert_eq!(sent, 300, "the flood did not finish:\n{}", r.stdout);
    // Loss is part of this test: each round leaves two windows with no forwarding path (from
    // `del-flows BR` until `add-flows` lands, both directions; from `del-flows in_port=2` until
    // its re-add, the replies), 2 of the round's 7 control commands, so about 2/7 of the
    // requests are lost (measured: 213-221 of 300 answered, 71-74 %). Two honest checks:
    // - every lost ping is a drop the switch names: its request or its reply was counted as
    //   `no_match` (a packet that vanished without a reason, e.g. lost in revalidation, fails);
    // - at least half are answered: well under the ~71 % the windows allow (the ratio depends on
    //   the commands' relative, not absolute, durations, so a slow machine keeps it), and far
    //   over what a datapath that stopped forwarding after some change would give.
    let lost = u64::from(sent - received);
    let no_match = d.drops(BR, "no_match") - no_match_before;
    assert!(
        no_match >= lost,
        "{lost} pings lost but only {no_match} no_match drops during the churn:\n{}",
        d.ctl(&["dump-drops", BR])
    );
    assert!(
        received * 2 >= sent,
        "only {received} of {sent} pings answered during the churn (at least half wanted):\n{}",
        r.stdout
    );
    let dm = node.daemon.as_mut().expect("daemon");
    assert!(
        dm.alive(),
        "vswitchd died under flow churn:\n{}",
        dm.log_text()
    );
    let d = node.daemon();
    // The table ends as the file says: forwarding works.
    assert_ping(&pod_a, &ip_b, 3);
    // Without the forwarding flows nothing crosses, cached walks included.
    let miss_before = d.drops(BR, "no_match");
    d.ctl(&["del-flows", BR, "in_port=1"]);
    d.ctl(&["del-flows", BR, "in_port=2"]);
    let r = ping(&pod_a, &ip_b, 3);
    assert!(
        r.transmitted == 3 && r.none_replied(),
        "traffic crossed after del-flows:\n{}",
        r.output()
    );
    assert!(d.drops(BR, "no_match") >= miss_before + 3);
    let _ = std::fs::remove_file(&file);
    eprintln!("flow churn: {rounds} rounds, {received}/300 flood replies");
}

/// `--threads 2`: pods' ports polled by different forwarding threads. Every pair still talks
/// (frames cross threads: one thread receives, the other's port sends), and conntrack is one
/// table: a connection opened through a port of thread 0 is `+est` for its replies arriving on
/// a port of thread 1, while new connections from that side are refused.
#[test]
fn two_forwarding_threads_share_ports_and_conntrack() {
    if !require_root("two_forwarding_threads_share_ports_and_conntrack") {
        return;
    }
    let mut node = Node::new("mt");
    node.start_switch_with(BR, &["--threads", "2"]);
    let a = node.add_veth_pod("mta", "vpa", "10.10.0.1/24", "02:00:00:00:03:01");
    let b = node.add_veth_pod("mtb", "vpb", "10.10.0.2/24", "02:00:00:00:03:02");
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1", "options:thread=0"]);
    d.ctl(&["add-port", BR, "vpb", "ofport=2", "options:thread=1"]);
    d.ctl(&[
        "add-port",
        BR,
        "tmtc",
        "type=tap",
        "ofport=3",
        "options:thread=1",
    ]);
    let bad = d.ctl_run(&["add-port", BR, "vx", "options:thread=2"]);
    assert!(
        !bad.ok && bad.stderr.contains("thread 2 does not exist"),
        "a port on a missing thread must be refused: {bad:?}"
    );
    // Move the switch-created TAP into its pod and configure it there.
    let c = node.adopt_tap_pod("mtc", "tmtc", "10.10.0.3/24", "02:00:00:00:03:03");
    let d = node.daemon();
    let log = d.log_text();
    for (port, t) in [("vpa", 0), ("vpb", 1), ("tmtc", 1)] {
        assert!(
            log.lines()
                .any(|l| l.contains("polled by forwarding thread")
                    && l.contains(&format!("port={port}"))
                    && l.contains(&format!("thread={t}"))),
            "no placement of {port} on thread {t} in the log:\n{log}"
        );
    }

    for (x, y) in [(a, b), (a, c), (b, c), (c, a)] {
        assert_ping(node.pod(x).name(), &node.pod(y).ip, 2);
    }
    let got = tcp_transfer(
        node.pod(a).name(),
        node.pod(b).name(),
        &node.pod(b).ip,
        5001,
        300_000,
    );
    assert_eq!(got, 300_000, "TCP across threads lost bytes");

    // A stateful rule set: port 1 may open connections, everyone else may only answer.
    d.ctl(&["del-flows", BR]);
    for f in [
        "priority=100,ip,actions=ct(table=1)",
        "priority=10,actions=NORMAL",
        "table=1,priority=100,ct_state=+new+trk,ip,in_port=1,actions=ct(commit),NORMAL",
        "table=1,priority=90,ct_state=+est+trk,ip,actions=NORMAL",
        "table=1,priority=0,actions=drop",
    ] {
        d.ctl(&["add-flow", BR, f]);
    }
    assert_ping(node.pod(a).name(), &node.pod(b).ip, 2);
    let got = tcp_transfer(
        node.pod(a).name(),
        node.pod(c).name(),
        &node.pod(c).ip,
        5001,
        200_000,
    );
    assert_eq!(
        got, 200_000,
        "replies on thread 1 must find thread 0's connection"
    );
    let refused = ping(node.pod(b).name(), &node.pod(a).ip, 1);
    assert!(
        refused.none_replied(),
        "a new connection from port 2 got through:\n{}",
        refused.output()
    );
    let conns = d.ctl(&["dump-conntrack", BR]);
    assert!(
        conns.contains("src=10.10.0.1,dst=10.10.0.3"),
        "the TCP connection is not in the shared table:\n{conns}"
    );
    // dump-drops ends with conntrack's own counters: the pings and the TCP connection were
    // committed, the refused ping never was.
    let drops = d.ctl(&["dump-drops", BR]);
    let ct_line = drops
        .lines()
        .find(|l| l.starts_with("conntrack: connections="))
        .unwrap_or_else(|| panic!("no conntrack line in dump-drops:\n{drops}"));
    let committed: u64 = ct_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("committed="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no committed= in {ct_line}"));
    assert!(committed >= 2, "{ct_line}");
    assert!(
        !conns.contains("orig=(src=10.10.0.2"),
        "a refused connection was committed:\n{conns}"
    );
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// CPU time (ns) each thread of `pid` has run, by thread name.
fn thread_runtimes(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .flatten()
    {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push((comm.trim().to_string(), ns));
    }
    out
}

/// The scheduler slice the kernel reports for the forwarding thread (`se.slice`).
fn datapath_slice(pid: u32) -> Option<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        if std::fs::read_to_string(t.path().join("comm")).ok()?.trim() != "datapath" {
            continue;
        }
        let s = std::fs::read_to_string(t.path().join("sched")).ok()?;
        let line = s.lines().find(|l| l.starts_with("se.slice"))?;
        return line.split(':').nth(1)?.trim().parse().ok();
    }
    None
}

/// An idle switch sleeps (the default receive wait blocks when there is no traffic: well under
/// 5 % of a core over 2 s with its ports up) and still answers the first frame after the pause;
/// its forwarding thread asked for the short scheduler slice that lets a wake-up preempt.
#[test]
fn idle_switch_sleeps_and_wakes_for_traffic() {
    if !require_root("idle_switch_sleeps_and_wakes_for_traffic") {
        return;
    }
    let node = two_pod_node("idle");
    let (a, b) = (node.pods[0].name().to_string(), node.pods[1].ip.clone());
    assert_ping(&a, &b, 3);
    let pid = node.daemon().pid();
    let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = osrelease
        .trim()
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12)
        && let Some(slice) = datapath_slice(pid)
    {
        assert_eq!(slice, 100_000, "forwarding thread's scheduler slice");
    }
    let before: u64 = thread_runtimes(pid).iter().map(|(_, ns)| ns).sum();
    std::thread::sleep(Duration::from_secs(2));
    let after = thread_runtimes(pid);
    let used: u64 = after.iter().map(|(_, ns)| ns).sum::<u64>() - before;
    assert!(
        used < 100_000_000,
        "idle vswitchd used {} ms of CPU in 2 s: {after:?}",
        used / 1_000_000
    );
    // After the pause, a burst at 10 ms: every frame forwarded.
    let p = ping_with(&a, &b, 50, &["-i", "0.01"]);
    assert!(p.all_replied(), "{}", p.output());
}
