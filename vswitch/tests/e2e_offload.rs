//! Segmentation and checksum offload through the switch: pods keep TSO/GSO and tx checksum
//! offload ON. AF_PACKET ports carry virtio-net headers, so TCP super-frames cross the switch
//! whole between veth pods; towards a TAP pod (no offloads) and into a VXLAN tunnel the switch
//! segments them itself. Root only.

mod common;

use common::*;

const BR: &str = "br0";

fn offloads_on(ns: &str) {
    ns_sh(ns, "ethtool -K eth0 tso on gso on tx on >/dev/null");
}

#[test]
fn tso_super_frames_cross_whole_or_get_segmented() {
    if !require_root("tso_super_frames_cross_whole_or_get_segmented") {
        return;
    }
    let mut node = Node::new("off");
    node.start_switch(BR);
    let a = node.add_veth_pod("offa", "vpa", "10.20.0.1/24", "02:00:00:00:03:01");
    let b = node.add_veth_pod("offb", "vpb", "10.20.0.2/24", "02:00:00:00:03:02");
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vpa", "ofport=1"]);
    d.ctl(&["add-port", BR, "vpb", "ofport=2"]);
    d.ctl(&["add-port", BR, "toffc", "type=tap", "ofport=3"]);
    // Move the switch-created TAP into its pod and configure it there.
    let c = node.adopt_tap_pod("offc", "toffc", "10.20.0.3/24", "02:00:00:00:03:03");
    for p in [a, b] {
        offloads_on(node.pod(p).name());
    }
    assert_ping(node.pod(a).name(), &node.pod(b).ip, 2);
    assert_ping(node.pod(a).name(), &node.pod(c).ip, 2);

    const BYTES: usize = 8 << 20;
    let before = node.daemon().ports(BR);
    let got = tcp_transfer(
        node.pod(a).name(),
        node.pod(b).name(),
        &node.pod(b).ip,
        5101,
        BYTES,
    );
    assert_eq!(got, BYTES, "veth -> veth with TSO lost bytes");
    let after = node.daemon().ports(BR);
    let rx_pkts = after[&1].rx_packets - before[&1].rx_packets;
    let rx_bytes = after[&1].rx_bytes - before[&1].rx_bytes;
    assert!(
        rx_bytes / rx_pkts.max(1) > 3000,
        "no super-frames arrived from the TSO pod ({rx_bytes} bytes in {rx_pkts} frames): \
         the GSO path was not exercised"
    );

    // veth (TSO) -> TAP without offloads: the switch segments.
    let got = tcp_transfer(
        node.pod(a).name(),
        node.pod(c).name(),
        &node.pod(c).ip,
        5102,
        BYTES,
    );
    assert_eq!(got, BYTES, "veth (TSO) -> TAP lost bytes");
    let d = node.daemon();
    assert_eq!(
        d.drops(BR, "too_big"),
        0,
        "super-frames were dropped instead of segmented"
    );
    assert_eq!(d.drops(BR, "malformed"), 0);
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}
