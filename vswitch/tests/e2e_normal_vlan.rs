//! NORMAL with the ports' VLAN roles (`add-port ... tag=`, `trunks=`, `vlan_mode=`,
//! `set-port`) with real kernel endpoints: pods on access ports of two bridges joined by a
//! veth pair as a trunk, so every frame between them crosses a link carrying 802.1Q tags
//! (this kernel has no VLAN devices: the far ends of the trunk are the switch's own). Root only.

mod common;

use std::time::Duration;

use common::*;

const BR: &str = "br0";
const BR1: &str = "br1";

/// br0: pa (VLAN 10, 10.20.10.1), pb (VLAN 10, 10.20.10.2), pc (VLAN 20: 10.20.10.3, VLAN 10's
/// subnet but not its VLAN, and 10.20.20.3), trunk `tr0` of VLANs 10 and 20.
/// br1: trunk `tr1` of every VLAN, pd (VLAN 10, 10.20.10.4), pe (VLAN 20, 10.20.20.4),
/// pf (VLAN 30, 10.20.30.4).
#[test]
fn access_and_trunk_ports_keep_vlans_apart() {
    if !require_root("access_and_trunk_ports_keep_vlans_apart") {
        return;
    }
    let mut node = Node::new("nv");
    node.start_switch(BR);
    node.daemon().ctl(&["add-br", BR1]);
    let pods = [
        ("nva", "vpa", "10.20.10.1/24"),
        ("nvb", "vpb", "10.20.10.2/24"),
        ("nvc", "vpc", "10.20.10.3/24"),
        ("nvd", "vpd", "10.20.10.4/24"),
        ("nve", "vpe", "10.20.20.4/24"),
        ("nvf", "vpf", "10.20.30.4/24"),
    ];
    let names: Vec<String> = pods
        .iter()
        .enumerate()
        .map(|(i, (tag, host, ip))| {
            let p = node.add_veth_pod(tag, host, ip, &format!("02:00:00:00:0a:{:02x}", i + 1));
            node.pod(p).name().to_string()
        })
        .collect();
    let [pa, pb, pc, pd, pe, pf] = [0, 1, 2, 3, 4, 5].map(|i| names[i].as_str());
    ns_sh(pc, "ip addr add 10.20.20.3/24 dev eth0");
    ns_sh(
        node.name(),
        "ip link add tr0 type veth peer name tr1 && \
         sysctl -qw net.ipv6.conf.tr0.disable_ipv6=1 net.ipv6.conf.tr1.disable_ipv6=1 && \
         ip link set tr0 up && ip link set tr1 up",
    );
    let d = node.daemon();
    for args in [
        [BR, "vpa", "ofport=1", "tag=10"],
        [BR, "vpb", "ofport=2", "tag=10"],
        [BR, "vpc", "ofport=3", "tag=20"],
        [BR, "tr0", "ofport=4", "trunks=10,20"],
        [BR1, "tr1", "ofport=1", "vlan_mode=trunk"],
        [BR1, "vpd", "ofport=2", "tag=10"],
        [BR1, "vpe", "ofport=3", "tag=20"],
        [BR1, "vpf", "ofport=4", "tag=30"],
    ] {
        d.ctl(&[&["add-port"][..], &args[..]].concat());
    }
    let refused = d.ctl_run(&["add-port", BR, "vpx", "tag=5", "trunks=6"]);
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains("trunks= applies to trunk and native ports"),
        "{}{}",
        refused.stdout,
        refused.stderr
    );

    // Within VLAN 10 on one bridge, and across the trunk; VLAN 20 across the trunk.
    assert_ping(pa, "10.20.10.2", 3);
    let cap = Capture::start(node.name(), "tr0", 2, "vlan 10 and icmp");
    assert_ping(pa, "10.20.10.4", 3);
    let seen = cap.finish(Duration::from_secs(2));
    assert!(
        seen.contains("vlan 10"),
        "no VLAN 10 tag on the trunk:\n{seen}"
    );
    assert_ping(pb, "10.20.10.4", 2);
    assert_ping(pc, "10.20.20.4", 3);
    assert_ping(pe, "10.20.20.3", 1);
    // pc has VLAN 10's subnet but sits in VLAN 20: nothing between it and VLAN 10.
    for (from, to) in [(pa, "10.20.10.3"), (pc, "10.20.10.2"), (pc, "10.20.10.4")] {
        assert!(
            ping_with(from, to, 2, &["-W", "1"]).none_replied(),
            "{from} reached {to} across VLANs"
        );
    }
    let fdb = d.ctl(&["fdb-show", BR]);
    assert!(
        fdb.lines()
            .any(|l| l.contains("02:00:00:00:0a:01") && l.split_whitespace().nth(1) == Some("10")),
        "pa's MAC not learned in VLAN 10:\n{fdb}"
    );

    // VLAN 30 leaves br1 tagged and is not in tr0's trunks: br0 refuses it and counts it.
    let before = d.drops(BR, "normal_vlan_refused");
    assert!(ping_with(pf, "10.20.30.9", 2, &["-W", "1"]).none_replied());
    assert!(
        d.drops(BR, "normal_vlan_refused") >= before + 2,
        "{}",
        d.ctl(&["dump-drops", BR])
    );

    // TCP with the pods' offloads on: super-frames get their tag put on and taken off.
    for p in [pa, pd] {
        ns_sh(p, "ethtool -K eth0 tso on gso on tx on >/dev/null");
    }
    const BYTES: usize = 4 << 20;
    let before = d.ports(BR);
    assert_eq!(tcp_transfer(pa, pd, "10.20.10.4", 5301, BYTES), BYTES);
    assert_eq!(tcp_transfer(pd, pa, "10.20.10.1", 5302, BYTES), BYTES);
    let after = d.ports(BR);
    let (rx, rx_bytes) = (
        after[&1].rx_packets - before[&1].rx_packets,
        after[&1].rx_bytes - before[&1].rx_bytes,
    );
    assert!(
        rx_bytes / rx.max(1) > 3000,
        "no super-frames from pa ({rx_bytes} bytes in {rx} frames)"
    );

    // Moved into VLAN 10 at run time: pc reaches pa and pd, no longer pe. The MACs learned
    // under the old roles are forgotten (the pods are quiet now: none is learned again).
    let learned = |d: &Daemon| d.ctl(&["fdb-show", BR]).lines().count() - 1;
    let before = learned(d);
    d.ctl(&["set-port", BR, "vpc", "tag=10"]);
    let fdb = d.ctl(&["fdb-show", BR]);
    assert!(
        before >= 4 && learned(d) < before && !fdb.contains("02:00:00:00:0a:01"),
        "set-port kept the bridge's learned MACs ({before} before), pa's among them:\n{fdb}"
    );
    assert!(ping_until(pc, "10.20.10.1", 10), "pc did not join VLAN 10");
    assert_ping(pc, "10.20.10.4", 2);
    assert!(ping_with(pc, "10.20.20.4", 2, &["-W", "1"]).none_replied());
    let ports = d.ctl(&["--format", "json", "list-ports", BR]);
    let ports: serde_json::Value = serde_json::from_str(&ports).expect("list-ports JSON");
    let port = |name: &str| {
        ports["ports"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {ports}"))
    };
    assert_eq!(port("vpc")["tag"], 10);
    assert_eq!(port("vpc")["vlan_mode"], "access");
    assert_eq!(port("tr0")["trunks"], serde_json::json!([10, 20]));
    assert_eq!(port("tr0")["vlan_mode"], "trunk");
    let show = d.ctl(&["show"]);
    assert!(
        show.contains("Port vpc\n            tag: 10\n")
            && show.contains("Port tr0\n            trunks: [10, 20]\n"),
        "{show}"
    );

    // Native VLAN 10 on br0's end only: VLAN 10 leaves untagged and br1 takes it as VLAN 0.
    d.ctl(&["set-port", BR, "tr0", "vlan_mode=native-untagged", "tag=10"]);
    assert!(ping_with(pa, "10.20.10.4", 2, &["-W", "1"]).none_replied());
    assert_ping(pb, "10.20.10.1", 1);
    // On both ends: VLAN 10 crosses untagged, VLAN 20 still tagged.
    d.ctl(&[
        "set-port",
        BR1,
        "tr1",
        "vlan_mode=native-untagged",
        "tag=10",
    ]);
    let cap = Capture::start(node.name(), "tr0", 2, "icmp and not vlan");
    assert!(
        ping_until(pa, "10.20.10.4", 10),
        "native VLAN 10 not carried untagged"
    );
    let seen = cap.finish(Duration::from_secs(2));
    assert!(
        seen.contains("10.20.10.4"),
        "no untagged ICMP on the trunk:\n{seen}"
    );
    d.ctl(&["set-port", BR, "vpc", "tag=20"]);
    assert!(
        ping_until(pc, "10.20.20.4", 10),
        "VLAN 20 lost on the native trunk"
    );
    let d = node.daemon.as_mut().expect("daemon");
    assert!(d.alive(), "vswitchd died:\n{}", d.log_text());
}

/// The ports' VLAN roles are kept in the state file: a restart brings them back.
#[test]
fn vlan_roles_survive_a_restart() {
    if !require_root("vlan_roles_survive_a_restart") {
        return;
    }
    let mut node = Node::new("nvr");
    node.start_switch(BR);
    let a = node.add_veth_pod("nvra", "vpa", "10.20.10.1/24", "02:00:00:00:0b:01");
    let c = node.add_veth_pod("nvrc", "vpc", "10.20.10.3/24", "02:00:00:00:0b:03");
    let (pa, pc) = (
        node.pod(a).name().to_string(),
        node.pod(c).name().to_string(),
    );
    {
        let d = node.daemon();
        d.ctl(&["add-port", BR, "vpa", "ofport=1", "tag=10"]);
        d.ctl(&["add-port", BR, "vpc", "ofport=2", "tag=10"]);
        d.ctl(&["set-port", BR, "vpc", "tag=20"]);
    }
    assert!(ping_with(&pa, "10.20.10.3", 2, &["-W", "1"]).none_replied());
    let d = node.daemon.as_mut().expect("daemon");
    d.stop_gracefully();
    d.start_again(&[]);
    let listed = d.ctl(&["--format", "json", "list-ports", BR]);
    assert!(
        listed.contains("\"tag\": 20") && listed.contains("\"tag\": 10"),
        "{listed}"
    );
    assert!(ping_with(&pa, "10.20.10.3", 2, &["-W", "1"]).none_replied());
    d.ctl(&["set-port", BR, "vpc", "tag="]);
    let refused = d.ctl_run(&["set-port", BR, "vpc", "vlan_mode=native-tagged"]);
    assert!(
        !refused.ok && refused.stderr.contains("needs a tag"),
        "{}",
        refused.stderr
    );
    // Back to a trunk of every VLAN: pc's untagged frames are VLAN 0, pa's are VLAN 10.
    assert!(ping_with(&pc, "10.20.10.1", 2, &["-W", "1"]).none_replied());
    d.ctl(&["set-port", BR, "vpc", "tag=10"]);
    assert!(ping_until(&pa, "10.20.10.3", 10));
}
