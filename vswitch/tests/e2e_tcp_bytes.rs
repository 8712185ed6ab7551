//! Bounded TCP transfers of a random file through the switch, checked byte for byte
//! (sha256), with the pods' offloads off (MTU frames with full checksums, which the switch
//! coalesces into super-frames towards the receiving pod) and on (TSO super-frames from the
//! sender): pod to pod on one node, and pod to pod across two nodes over VXLAN (the sender's
//! super-frames segmented into the tunnel, the receiver's segments coalesced again). Root only.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const BR: &str = "br0";
const BYTES: usize = 12 << 20;

/// A random file of `BYTES` bytes and its sha256, removed on drop.
struct Payload {
    path: PathBuf,
    sha: String,
}

impl Payload {
    fn new(tag: &str) -> Payload {
        let path = std::env::temp_dir().join(format!("vse{}-{tag}.bin", std::process::id()));
        let p = path.display().to_string();
        let r = run_timeout(
            std::process::Command::new("sh").args([
                "-c",
                &format!("head -c {BYTES} /dev/urandom > {p} && sha256sum {p}"),
            ]),
            Duration::from_secs(20),
        );
        assert!(r.ok, "cannot write the payload: {}", r.stderr);
        let sha = r.stdout.split_whitespace().next().unwrap_or("").to_string();
        Payload { path, sha }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends the payload from `src_ns` to `dst_ip:port` (nc listening in `dst_ns`); returns the
/// sha256 and length of what arrived.
fn transfer(
    payload: &Payload,
    src_ns: &str,
    dst_ns: &str,
    dst_ip: &str,
    port: u16,
) -> (String, usize) {
    let dst = dst_ns.to_string();
    let listen = format!("timeout 30 nc -l -n {port} | tee >(wc -c >&2) | sha256sum");
    let receiver =
        std::thread::spawn(move || ns_run(&dst, &["bash", "-c", &listen], Duration::from_secs(35)));
    wait_listening(dst_ns, "tcp", port);
    let send = ns_run(
        src_ns,
        &[
            "sh",
            "-c",
            &format!(
                "timeout 25 nc -N -n -w 5 {dst_ip} {port} < {}",
                payload.path.display()
            ),
        ],
        Duration::from_secs(30),
    );
    let recv = receiver.join().expect("receiver thread");
    assert!(
        send.ok || !recv.stdout.is_empty(),
        "TCP sender failed: {}{}",
        send.stdout,
        send.stderr
    );
    let sha = recv
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let len = recv.stderr.trim().parse().unwrap_or(0);
    (sha, len)
}

/// Whether the switch opened its UDP-tunnel GSO TAP `tap` in `node`; under CI the kernel
/// (6.17+) must have it.
fn tunnel_gso_tap(node: &str, tap: &str) -> bool {
    let r = ns_run(node, &["ip", "link", "show", tap], Duration::from_secs(5));
    let new_enough = kernel_at_least(6, 17);
    if std::env::var("CI").is_ok_and(|v| v == "true") && new_enough {
        assert!(
            r.ok,
            "kernel 6.17+ but no UDP-tunnel GSO TAP {tap}: {}",
            r.stderr
        );
    }
    r.ok
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

fn set_offloads(ns: &str, on: bool) {
    if on {
        ns_sh(ns, "ethtool -K eth0 tx on tso on gso on >/dev/null");
    } else {
        // As the shared packet harness does for "pods without offloads".
        ns_sh(ns, "ethtool -K eth0 tx off >/dev/null");
    }
}

#[test]
fn tcp_pod_to_pod_bytes_intact_with_and_without_offloads() {
    if !require_root("tcp_pod_to_pod_bytes_intact_with_and_without_offloads") {
        return;
    }
    let payload = Payload::new("tcpb1");
    let mut node = Node::new("tcb");
    node.start_switch(BR);
    let a = node.add_veth_pod("tcba", "tba", "10.31.0.1/24", "02:00:00:00:31:01");
    let b = node.add_veth_pod("tcbb", "tbb", "10.31.0.2/24", "02:00:00:00:31:02");
    let d = node.daemon();
    d.ctl(&["add-port", BR, "tba", "ofport=1"]);
    d.ctl(&["add-port", BR, "tbb", "ofport=2"]);
    assert_ping(node.pod(a).name(), &node.pod(b).ip, 2);
    for (i, on) in [false, true].into_iter().enumerate() {
        for p in [a, b] {
            set_offloads(node.pod(p).name(), on);
        }
        let before = node.daemon().ports(BR);
        let (sha, len) = transfer(
            &payload,
            node.pod(a).name(),
            node.pod(b).name(),
            &node.pod(b).ip,
            5201 + i as u16,
        );
        assert_eq!(len, BYTES, "offloads {on}: bytes lost");
        assert_eq!(sha, payload.sha, "offloads {on}: bytes changed");
        let after = node.daemon().ports(BR);
        let rx = after[&1].rx_packets - before[&1].rx_packets;
        let tx = after[&2].tx_packets - before[&2].tx_packets;
        // Without offloads the sender's MTU segments leave towards pod b coalesced.
        if !on {
            assert!(
                tx * 2 < rx,
                "no coalescing towards pod b: {rx} frames in, {tx} out"
            );
        }
    }
    let d = node.daemon();
    assert_eq!(d.drops(BR, "too_big"), 0);
    assert_eq!(d.drops(BR, "malformed"), 0);
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

#[test]
fn tcp_across_vxlan_bytes_intact_with_and_without_offloads() {
    if !require_root("tcp_across_vxlan_bytes_intact_with_and_without_offloads") {
        return;
    }
    let payload = Payload::new("tcpb2");
    let mut n1 = Node::new("tcv1");
    let mut n2 = Node::new("tcv2");
    ns_sh(
        n1.name(),
        &format!(
            "ip link add tvu1 type veth peer name tvu2 netns {n2} && ip link set tvu1 mtu 1600 && \
             ip addr add 192.168.231.1/24 dev tvu1 && ip link set tvu1 up",
            n2 = n2.name()
        ),
    );
    ns_sh(
        n2.name(),
        "ip link set tvu2 mtu 1600 && ip addr add 192.168.231.2/24 dev tvu2 && ip link set tvu2 up",
    );
    let mut pods = Vec::new();
    for (i, node) in [&mut n1, &mut n2].into_iter().enumerate() {
        let k = i + 1;
        node.start_switch(BR);
        let p = node.add_veth_pod(
            &format!("tcvp{k}"),
            &format!("tvp{k}"),
            &format!("10.32.0.{k}/24"),
            &format!("02:00:00:00:32:0{k}"),
        );
        let d = node.daemon();
        d.ctl(&["add-port", BR, &format!("tvp{k}"), "ofport=1"]);
        d.ctl(&[
            "add-port",
            BR,
            &format!("tvx{k}"),
            "type=vxlan",
            "ofport=2",
            &format!("options:remote_ip=192.168.231.{}", 3 - k),
            &format!("options:local_ip=192.168.231.{k}"),
            "options:key=42",
        ]);
        d.ctl(&["del-flows", BR]);
        d.ctl(&["add-flow", BR, "priority=100,in_port=1,actions=output:2"]);
        d.ctl(&["add-flow", BR, "priority=100,in_port=2,actions=output:1"]);
        pods.push(p);
    }
    let (pa, pb) = (n1.pod(pods[0]).name(), n2.pod(pods[1]).name());
    assert_ping(pa, "10.32.0.2", 2);
    // The sending node's tunnel port has its UDP-tunnel GSO TAP where the kernel offers it.
    let tunnel_gso = tunnel_gso_tap(n1.name(), "gso-tvx1");
    for (i, on) in [false, true].into_iter().enumerate() {
        set_offloads(pa, on);
        set_offloads(pb, on);
        let before = n2.daemon().ports(BR);
        let flow_before = n2.daemon().flow_packets(BR, "in_port=2");
        let (sha, len) = transfer(&payload, pa, pb, "10.32.0.2", 5301 + i as u16);
        assert_eq!(len, BYTES, "VXLAN, offloads {on}: bytes lost");
        assert_eq!(sha, payload.sha, "VXLAN, offloads {on}: bytes changed");
        let after = n2.daemon().ports(BR);
        let rx = after[&2].rx_packets - before[&2].rx_packets;
        let rx_bytes = after[&2].rx_bytes - before[&2].rx_bytes;
        let tx = after[&1].tx_packets - before[&1].tx_packets;
        if !on && tunnel_gso {
            // The sending node merges its pod's MTU segments into super-frames (software
            // GRO towards the GSO TAP), which cross whole: datagrams far larger than the
            // underlay MTU, on average.
            assert!(
                rx_bytes > rx * 4 * 1500,
                "offloads {on}: the pod's segments were not merged before the tunnel: \
                 {rx} datagrams, {rx_bytes} bytes"
            );
        } else if !on {
            // The receiving node coalesces the tunnel's segments towards its pod.
            assert!(
                tx * 2 < rx,
                "offloads {on}: no coalescing after decapsulation: {rx} in, {tx} out"
            );
        } else if tunnel_gso {
            // The sender's super-frames leave whole (UDP-tunnel GSO through the node's TAP)
            // and nothing segments them over the veth underlay: the receiving tunnel port
            // gets datagrams far larger than the underlay MTU, on average.
            assert!(
                rx_bytes > rx * 4 * 1500,
                "super-frames did not cross whole: {rx} datagrams, {rx_bytes} bytes"
            );
        } else {
            // Without it they cross as UDP GSO runs, and the receiving node merges each run
            // before its pipeline (software GRO on receive): the flow from the tunnel counts
            // merged frames, far fewer than the datagrams.
            let through_flow = n2.daemon().flow_packets(BR, "in_port=2") - flow_before;
            assert!(
                through_flow * 2 < rx,
                "no merging on receive from the tunnel: {rx} datagrams, {through_flow} frames \
                 through the pipeline"
            );
        }
    }
    for n in [&n1, &n2] {
        let d = n.daemon();
        assert_eq!(d.drops(BR, "tunnel_too_big"), 0);
        assert_eq!(d.drops(BR, "malformed"), 0);
    }
    for n in [&mut n1, &mut n2] {
        let d = n.daemon.as_mut().expect("daemon");
        assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
    }
}

/// The peer node is the kernel's own VXLAN device (no switch there). Over a veth underlay the
/// kernel hands a TSO super-frame to the tunnel whole (UDP-tunnel GSO) and nothing segments
/// it on the way: vswitchd's tunnel socket receives *one* datagram carrying the whole inner
/// super-frame, its TCP checksum still partial. Both directions, the pods' offloads off and on.
#[test]
fn tcp_with_kernel_vxlan_peer_bytes_intact() {
    if !require_root("tcp_with_kernel_vxlan_peer_bytes_intact") {
        return;
    }
    let payload = Payload::new("tcpb3");
    let kn = Node::new("tck1");
    let mut n2 = Node::new("tck2");
    ns_sh(
        kn.name(),
        &format!(
            "ip link set lo up && ip link add tku1 type veth peer name tku2 netns {n2} && \
             ip addr add 192.168.232.1/24 dev tku1 && ip link set tku1 up && \
             ip link add eth0 type vxlan id 43 dstport 4789 local 192.168.232.1 \
               remote 192.168.232.2 dev tku1 && \
             ip link set eth0 address 02:00:00:00:33:01 mtu 1450 && \
             ip addr add 10.33.0.1/24 dev eth0 && ip link set eth0 up",
            n2 = n2.name()
        ),
    );
    ns_sh(
        n2.name(),
        "ip addr add 192.168.232.2/24 dev tku2 && ip link set tku2 up",
    );
    n2.start_switch(BR);
    let p = n2.add_veth_pod("tckp2", "tkp2", "10.33.0.2/24", "02:00:00:00:33:02");
    let d = n2.daemon();
    d.ctl(&["add-port", BR, "tkp2", "ofport=1"]);
    d.ctl(&[
        "add-port",
        BR,
        "tkx2",
        "type=vxlan",
        "ofport=2",
        "options:remote_ip=192.168.232.1",
        "options:local_ip=192.168.232.2",
        "options:key=43",
    ]);
    d.ctl(&["del-flows", BR]);
    d.ctl(&["add-flow", BR, "priority=100,in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", BR, "priority=100,in_port=2,actions=output:1"]);
    let (ka, pb) = (kn.name(), n2.pod(p).name());
    ns_sh(pb, "ip link set eth0 mtu 1450");
    assert_ping(ka, "10.33.0.2", 2);
    let mut port = 5401;
    for on in [false, true] {
        set_offloads(ka, on);
        set_offloads(pb, on);
        for (src, dst, ip, what) in [
            (ka, pb, "10.33.0.2", "kernel VXLAN -> vswitchd"),
            (pb, ka, "10.33.0.1", "vswitchd -> kernel VXLAN"),
        ] {
            eprintln!("{what}, offloads {on}");
            let (sha, len) = transfer(&payload, src, dst, ip, port);
            port += 1;
            if len != BYTES {
                let d = n2.daemon();
                eprintln!(
                    "{}\n{}\n{}\n{}",
                    d.ctl(&["dump-ports", BR]),
                    ns_sh(
                        pb,
                        "nstat -az | grep -E 'IpIn|IpExtIn|TcpIn|Csum|Drop|Trunc|Err' | grep -v ' 0 '"
                    ),
                    ns_sh(
                        ka,
                        "nstat -az | grep -E 'Udp|IpOut|TcpOut|TcpRetrans' | grep -v ' 0 '"
                    ),
                    ns_sh(
                        n2.name(),
                        "ip -s link; nstat -az | grep -E 'Udp' | grep -v ' 0 '"
                    )
                );
            }
            assert_eq!(len, BYTES, "{what}, offloads {on}: bytes lost");
            assert_eq!(sha, payload.sha, "{what}, offloads {on}: bytes changed");
        }
    }
    let d = n2.daemon();
    assert_eq!(d.drops(BR, "tunnel_too_big"), 0);
    assert_eq!(d.drops(BR, "malformed"), 0);
    let d = n2.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}
