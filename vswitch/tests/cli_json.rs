//! The operator's CLI surface against a live switch with real traffic: `--format json` on every
//! dump and list command (parsed back with serde into the typed views, and once with jq),
//! `show`, `dump-megaflows`, `--may-exist`/`--if-exists`. Root only (namespaces).

mod common;

use std::time::Duration;

use common::*;
use vswitch::views::*;

const BR: &str = "br0";

fn json<T: serde::de::DeserializeOwned>(d: &Daemon, args: &[&str]) -> T {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = d.ctl(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

#[test]
fn json_show_and_megaflows_on_a_live_switch() {
    if !require_root("json_show_and_megaflows_on_a_live_switch") {
        return;
    }
    let mut node = Node::new("cj");
    node.start_switch(BR);
    let a = node.add_veth_pod("cja", "vja", "10.31.0.1/24", "02:00:00:00:31:01");
    let b = node.add_veth_pod("cjb", "vjb", "10.31.0.2/24", "02:00:00:00:31:02");
    let d = node.daemon();
    d.ctl(&["add-port", BR, "vja", "ofport=1"]);
    d.ctl(&["add-port", BR, "vjb", "ofport=2"]);
    // ICMP through conntrack, so dump-conntrack has something to show; requests from pod a
    // by an explicit output (megaflows then name the port), replies by NORMAL.
    d.ctl(&[
        "add-flow",
        BR,
        "priority=20,icmp,in_port=1,actions=ct(commit),output:2",
    ]);
    d.ctl(&["add-flow", BR, "priority=10,icmp,actions=ct(commit),NORMAL"]);
    d.ctl(&["add-group", BR, "group_id=7,type=all,bucket=output:1"]);

    // --may-exist / --if-exists: same semantics as ovs-vsctl.
    assert!(!d.ctl_run(&["add-br", BR]).ok, "a second add-br must fail");
    d.ctl(&["add-br", BR, "--may-exist"]);
    assert!(!d.ctl_run(&["add-port", BR, "vja"]).ok);
    d.ctl(&["add-port", BR, "vja", "--may-exist"]);
    assert!(!d.ctl_run(&["del-br", "nosuch"]).ok);
    d.ctl(&["del-br", "nosuch", "--if-exists"]);
    assert!(!d.ctl_run(&["del-port", BR, "nosuch"]).ok);
    d.ctl(&["del-port", BR, "nosuch", "--if-exists"]);

    assert_ping(node.pod(a).name(), &node.pod(b).ip, 3);

    // Bridges, ports, show.
    let brs: BridgeList = json(d, &["list-br"]);
    assert_eq!(brs.bridges, vec![BR.to_string()]);
    let ports: PortList = json(d, &["list-ports", BR]);
    let names: Vec<&str> = ports.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["vja", "vjb"]);
    assert_eq!(ports.ports[0].ofport, 1);
    assert_eq!(ports.ports[0].kind, "afpacket");
    let show: SwitchView = json(d, &["show"]);
    assert_eq!(show.bridges.len(), 1);
    assert_eq!(show.bridges[0].name, BR);
    assert_eq!(show.bridges[0].ports, ports.ports);
    assert!(show.bridges[0].openflow_socket.ends_with("br0.mgmt"));
    assert_eq!(show.bridges[0].flows, 3, "NORMAL + the two ct flows");
    assert_eq!(show.bridges[0].groups, 1);
    let text = d.ctl(&["show"]);
    for want in [
        "Bridge br0",
        "Port vja",
        "ofport: 2",
        "type: afpacket",
        "punix:",
    ] {
        assert!(text.contains(want), "{want} not in show:\n{text}");
    }
    // `show BR` stays ovs-ofctl's.
    assert!(d.ctl(&["show", BR]).starts_with("OFPT_FEATURES_REPLY"));

    // Flows, groups, ports over OpenFlow; the text stays as it was.
    let flows: FlowDump = json(d, &["dump-flows", BR]);
    let ct = flows
        .flows
        .iter()
        .find(|f| f.priority == 10)
        .expect("the ct flow");
    assert_eq!(ct.match_, "icmp");
    assert!(ct.actions.starts_with("ct(commit)"), "{}", ct.actions);
    assert!(ct.packets >= 3, "3 echo replies: {}", ct.packets);
    assert!(d.ctl(&["dump-flows", BR]).starts_with("OFPST_FLOW reply"));
    let groups: GroupDump = json(d, &["dump-groups", BR]);
    assert_eq!(groups.groups.len(), 1);
    assert_eq!(groups.groups[0].group_id, 7);
    assert_eq!(groups.groups[0].kind, "all");
    assert_eq!(
        groups.groups[0].buckets,
        vec!["actions=output:1".to_string()]
    );
    // One 50-byte frame through group 7 (its bucket sends it to pod a): the group's counters.
    d.ctl(&[
        "packet-out",
        BR,
        "CONTROLLER",
        "group:7",
        "020000000002020000000001080045000024000100004011f9c60a0000010a00000203e80035001000006869206865726520",
    ]);
    let gs: GroupStatsDump = json(d, &["dump-group-stats", BR]);
    assert_eq!(gs.groups.len(), 1);
    let g = &gs.groups[0];
    assert_eq!((g.group_id, g.ref_count, g.packets, g.bytes), (7, 0, 1, 50));
    assert_eq!(
        g.buckets,
        vec![CountsView {
            packets: 1,
            bytes: 50
        }]
    );
    // Every lookup in table 0 found a flow (NORMAL at priority 0 takes what the rest do not).
    let tables: TableStatsDump = json(d, &["dump-tables", BR]);
    assert_eq!(tables.tables.len(), 254);
    let t0 = tables.tables[0];
    assert_eq!((t0.table, t0.active), (0, 3));
    assert!(t0.lookups >= 6 && t0.matched == t0.lookups, "{t0:?}");
    assert_eq!(tables.tables[1].lookups, 0);
    // The flag after the command works as well.
    let out = d.ctl(&["dump-ports", BR, "--format=json"]);
    let stats: PortStatsDump = serde_json::from_str(&out).expect("dump-ports json");
    let p1 = stats.ports.iter().find(|p| p.port_no == 1).expect("port 1");
    assert!(p1.rx_packets.unwrap_or(0) >= 3, "{out}");

    // Diagnostics.
    let drops: DropsView = json(d, &["dump-drops", BR]);
    // The events whose packet went on are counted among the reasons but not in the total.
    assert!(
        drops
            .counted_not_dropped
            .contains(&"learn_queue_full".to_string())
    );
    assert!(drops.drops.contains_key("learn_queue_full"));
    let dropped: u64 = drops
        .drops
        .iter()
        .filter(|(name, _)| !drops.counted_not_dropped.contains(*name))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(drops.total_dropped, dropped);
    assert!(drops.drops.contains_key("no_match"));
    assert!(drops.caches.misses >= 1);
    assert_eq!(drops.kernel_ring_drops.len(), 2);
    let conns: ConntrackDump = json(d, &["dump-conntrack", BR]);
    let icmp = conns
        .connections
        .iter()
        .find(|c| c.proto == "icmp" && c.orig.src == "10.31.0.1")
        .unwrap_or_else(|| panic!("no icmp connection: {conns:?}"));
    assert_eq!(icmp.orig.dst, "10.31.0.2");
    assert_eq!(icmp.reply.src, "10.31.0.2");
    let fdb: FdbDump = json(d, &["fdb-show", BR]);
    let macs: Vec<&str> = fdb.entries.iter().map(|e| e.mac.as_str()).collect();
    assert!(
        macs.contains(&"02:00:00:00:31:01") && macs.contains(&"02:00:00:00:31:02"),
        "{macs:?}"
    );
    let pods: PodList = json(d, &["list-pods"]);
    assert!(pods.pods.is_empty());
    let services: ServiceList = json(d, &["list-services"]);
    assert!(services.services.is_empty());

    // The megaflow cache: entries with hits, masks and named ports.
    let mf: MegaflowDump = json(d, &["dump-megaflows", BR]);
    let to_b = mf
        .megaflows
        .iter()
        .find(|m| m.match_.contains("in_port(1)") && m.actions.contains("output:vjb"))
        .unwrap_or_else(|| panic!("no megaflow from port 1 to vjb: {mf:?}"));
    assert!(to_b.packets >= 1 && to_b.bytes >= 42, "{to_b:?}");
    assert!(to_b.used_secs.is_some());
    assert!(to_b.match_.starts_with("recirc_id("), "{}", to_b.match_);
    let text = d.ctl(&["dump-megaflows", BR]);
    assert!(
        text.lines()
            .any(|l| l.contains("in_port(1)") && l.contains("packets:") && l.contains("actions:")),
        "{text}"
    );

    // A command that lists nothing refuses JSON rather than printing text.
    let r = d.ctl_run(&["--format", "json", "add-br", "br9"]);
    assert!(!r.ok && r.stderr.contains("not available"), "{}", r.stderr);
    let r = d.ctl_run(&["--format", "json", "dump-meters", BR]);
    assert!(!r.ok && r.stderr.contains("not available"), "{}", r.stderr);
    assert!(!d.ctl(&["list-br"]).contains("br9"));

    // One check with a real JSON tool, as a script would.
    let script = format!(
        "{} --rundir {} --format json show | jq -e '.bridges[0].ports | map(.name) == [\"vja\",\"vjb\"]'",
        env!("CARGO_BIN_EXE_vswitchctl"),
        d.rundir.display()
    );
    let r = run_timeout(
        std::process::Command::new("sh").args(["-c", &script]),
        Duration::from_secs(10),
    );
    assert!(r.ok, "jq: {}{}", r.stdout, r.stderr);
}
