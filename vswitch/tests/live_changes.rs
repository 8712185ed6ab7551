//! Live pod and Service changes through the management plane (the CNI plugin's and a Service
//! feeder's way in): `add-pod`/`del-pod`, `set-service`/`set-backends`/`del-service`, each an
//! incremental change of the node agent that survives a re-applied node file. Root only (the
//! switch creates TAP devices), in a network namespace of this test's own.

mod common;

use std::sync::Arc;

use vswitch::control::Control;
use vswitch::datapath;
use vswitch::switch::Switch;

const NODE: &str = r#"
[node]
name = "live"
underlay_ip = "127.0.0.1"
pod_cidr = "172.16.1.0/24"
gateway_ip = "172.16.1.1"
gateway_mac = "0a:58:0c:00:00:fe"
mode = "tunnel"
[tunnel]
vni = 7
dst_port = 47890
[[pods]]
port = "tfile"
type = "tap"
ip = "172.16.1.10"
mac = "0a:58:0c:01:00:0a"
[[services]]
name = "web"
cluster_ip = "10.247.0.10"
port = 80
target_port = 8080
backends = [{ ip = "172.16.1.10" }]
"#;

fn flows(ctl: &Control) -> String {
    ctl.command(&["dump-flows", "br-int", "--no-stats"])
        .expect("dump-flows")
}

/// The switch's nftables table in this thread's namespace ("" when there is none).
fn host_firewall() -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "vswitchd"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A switch with its datapath in a network namespace of the calling thread's own (the TAP
/// devices and the host port's routes go with it), its rundir tagged `tag`.
fn switch_in_own_netns(tag: &str) -> (Arc<Switch>, Control, std::path::PathBuf, impl Sized) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
    let lo = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(lo.success());
    let (dp, threads) = datapath::spawn(datapath::Options::default()).expect("datapath");
    let dir = std::env::temp_dir().join(format!("vswitch-{tag}-{}", std::process::id()));
    let sw = Arc::new(Switch::new(dp, dir.clone()));
    let ctl = Control::new(sw.clone());
    (sw, ctl, dir, threads)
}

#[test]
fn pods_and_services_change_live_and_survive_a_reapplied_file() {
    if !tap_io::netns::require_root("pods_and_services_change_live_and_survive_a_reapplied_file") {
        return;
    }
    let (sw, ctl, dir, _threads) = switch_in_own_netns("live");

    // Without a node configuration there is nothing to add a pod to.
    let e = ctl
        .command(&[
            "add-pod",
            "p1",
            "port=tp1",
            "type=tap",
            "ip=172.16.1.11",
            "mac=0a:58:0c:01:00:0b",
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no node configuration"), "{e}");
    ctl.command(&["apply", NODE]).expect("apply");
    let info: serde_json::Value =
        serde_json::from_str(&ctl.command(&["node-info"]).unwrap()).expect("node-info JSON");
    assert_eq!(info["gateway_ip"], "172.16.1.1");
    assert_eq!(info["mode"], "tunnel");
    assert_eq!(info["pod_cidr"], "172.16.1.0/24");

    // One pod added: only its flows are new (the summary counts no modified or removed flow).
    let out = ctl
        .command(&[
            "add-pod",
            "p1",
            "port=tp1",
            "type=tap",
            "ip=172.16.1.11",
            "mac=0a:58:0c:01:00:0b",
        ])
        .expect("add-pod");
    assert!(out.contains("pod p1 added ofport="), "{out}");
    let before = flows(&ctl);
    let out = ctl
        .command(&[
            "add-pod",
            "p2",
            "port=tp2",
            "type=tap",
            "ip=172.16.1.12",
            "mac=0a:58:0c:01:00:0c",
        ])
        .expect("add-pod");
    assert!(out.contains("pod p2 added"), "{out}");
    let after = flows(&ctl);
    for line in before.lines() {
        assert!(
            after.contains(line),
            "add-pod p2 changed an existing flow: {line}"
        );
    }
    assert!(after.contains("nw_src=172.16.1.12"), "{after}");
    assert_eq!(
        ctl.command(&["list-pods"]).unwrap(),
        "p1 tp1 172.16.1.11 0a:58:0c:01:00:0b ofport=2\np2 tp2 172.16.1.12 0a:58:0c:01:00:0c ofport=3\n"
    );
    // Validation as for the file: a taken address, a duplicate name, a bad key.
    for (args, want) in [
        (
            vec![
                "add-pod",
                "p3",
                "port=tp3",
                "type=tap",
                "ip=172.16.1.11",
                "mac=0a:58:0c:01:00:0d",
            ],
            "used by two pods",
        ),
        (
            vec![
                "add-pod",
                "p1",
                "port=tp9",
                "type=tap",
                "ip=172.16.1.19",
                "mac=0a:58:0c:01:00:19",
            ],
            "already exists",
        ),
        (
            vec![
                "add-pod",
                "p4",
                "port=tp4",
                "ip=10.0.0.4",
                "mac=0a:58:0c:01:00:0e",
                "type=tap",
            ],
            "outside node.pod_cidr",
        ),
        (
            vec!["add-pod", "p5", "port=tp5", "colour=blue"],
            "unknown pod setting",
        ),
    ] {
        let e = ctl.command(&args).unwrap_err().to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert!(!flows(&ctl).contains("172.16.1.19"));

    // Services at run time: a new one, new backends for the file's, then removed again.
    ctl.command(&[
        "set-service",
        r#"{ name = "api", cluster_ip = "10.247.0.20", port = 443, target_port = 8443, backends = [{ ip = "172.16.1.11" }] }"#,
    ])
    .expect("set-service");
    assert!(flows(&ctl).contains("nw_dst=10.247.0.20,tp_dst=443"));
    ctl.command(&["set-backends", "web", "172.16.1.11:9090", "172.16.1.12@3"])
        .expect("set-backends");
    let groups = ctl.command(&["dump-groups", "br-int"]).unwrap();
    assert!(
        groups.contains("172.16.1.11:9090") && groups.contains("weight:3"),
        "{groups}"
    );
    assert!(!groups.contains("172.16.1.10:8080"), "{groups}");
    assert_eq!(
        ctl.command(&["list-services"]).unwrap(),
        "api 10.247.0.20:443 backends=1\nweb 10.247.0.10:80 backends=2\n"
    );
    let e = ctl
        .command(&["set-service", "{ name = \"bad\", port = 80 }"])
        .unwrap_err();
    assert!(e.to_string().contains("Service bad"), "{e}");

    // The node file applied again (SIGHUP, vswitchctl apply): run-time changes stay, and the
    // full apply finds nothing to change (one-Service changes reach the state it would).
    let reapplied = ctl.command(&["apply", NODE]).expect("re-apply");
    assert!(
        reapplied.contains("flows +0 ~0 -0, groups +0 ~0 -0"),
        "{reapplied}"
    );
    let again = flows(&ctl);
    assert!(
        again.contains("nw_src=172.16.1.11") && again.contains("nw_src=172.16.1.12"),
        "{again}"
    );
    assert!(again.contains("nw_dst=10.247.0.20"), "{again}");
    assert!(
        ctl.command(&["dump-groups", "br-int"])
            .unwrap()
            .contains("172.16.1.11:9090")
    );

    // Removal: the pod's flows and port go; deleting twice needs --if-exists.
    ctl.command(&["del-pod", "p1"]).expect("del-pod");
    let gone = flows(&ctl);
    assert!(
        !gone.contains("nw_src=172.16.1.11,") && gone.contains("nw_src=172.16.1.12"),
        "{gone}"
    );
    assert!(
        !ctl.command(&["list-ports", "br-int"])
            .unwrap()
            .contains("tp1")
    );
    assert!(ctl.command(&["del-pod", "p1"]).is_err());
    ctl.command(&["del-pod", "p1", "--if-exists"])
        .expect("idempotent delete");
    let e = ctl.command(&["del-pod", "tfile"]).unwrap_err().to_string();
    assert!(e.contains("node file"), "{e}");
    // The run-time Service goes; the file's Service gets its own backends back.
    ctl.command(&["del-service", "web"]).expect("del-service");
    ctl.command(&["del-service", "api"]).expect("del-service");
    assert!(!flows(&ctl).contains("10.247.0.20"));
    assert!(
        ctl.command(&["dump-groups", "br-int"])
            .unwrap()
            .contains("172.16.1.10:8080")
    );
    ctl.command(&["del-service", "api", "--if-exists"])
        .expect("idempotent");
    let reapplied = ctl.command(&["apply", NODE]).expect("re-apply");
    assert!(
        reapplied.contains("flows +0 ~0 -0, groups +0 ~0 -0"),
        "{reapplied}"
    );

    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One-Service changes take a path of their own (validated against an index of the frontends
/// in force, compiled and applied alone): a run of them, frontend conflicts included, must end
/// where the full apply of the same state would, and refuse what it would refuse.
#[test]
fn one_service_changes_reach_what_a_full_apply_would() {
    if !tap_io::netns::require_root("one_service_changes_reach_what_a_full_apply_would") {
        return;
    }
    let (sw, ctl, dir, _threads) = switch_in_own_netns("live1");
    let mut node = NODE.replace("dst_port = 47890", "dst_port = 47893");
    for i in 0..40 {
        node.push_str(&format!(
            "[[services]]\nname = \"s{i}\"\ncluster_ip = \"10.247.1.{i}\"\nport = 80\n\
             backends = [{{ ip = \"172.16.1.10\" }}]\n"
        ));
    }
    ctl.command(&["apply", &node]).expect("apply");
    let set = |spec: &str| ctl.command(&["set-service", spec]);
    let svc = |name: &str, ip: &str| {
        format!(
            "{{ name = \"{name}\", cluster_ip = \"{ip}\", port = 80, backends = [{{ ip = \"172.16.1.10\" }}] }}"
        )
    };

    // A file Service moves to a new address; its old one is free for another at once.
    set(&svc("s3", "10.247.2.3")).expect("move s3");
    set(&svc("n1", "10.247.1.3")).expect("n1 takes s3's old frontend");
    // Taken frontends are refused, naming the Service; the refused one changes nothing.
    for (name, ip) in [
        ("n2", "10.247.1.7"),
        ("s5", "10.247.2.3"),
        ("n3", "10.247.0.10"),
    ] {
        let e = set(&svc(name, ip)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("Service {name}")) && e.contains("already a frontend"),
            "{name}: {e}"
        );
    }
    // The VXLAN port is no frontend either.
    let e = set(
        "{ name = \"vx\", type = \"NodePort\", node_port = 47893, protocol = \"UDP\", port = 53, backends = [] }",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Service vx"), "{e}");
    // A Service set again unchanged changes nothing.
    let again = set(&svc("n1", "10.247.1.3")).expect("same again");
    assert!(again.contains("flows +0 ~0 -0, groups +0 ~0 -0"), "{again}");
    // Removals: a run-time Service goes (the last one moves into its place), a file Service
    // replaced at run time comes back, and their frontends are free again.
    set(&svc("n4", "10.247.3.4")).expect("n4");
    set(&svc("n5", "10.247.3.5")).expect("n5");
    ctl.command(&["del-service", "n4"]).expect("del n4");
    set(&svc("n6", "10.247.3.4")).expect("n4's frontend is free");
    ctl.command(&["set-backends", "n5", "172.16.1.10:81"])
        .expect("n5 moved in the list and still changes");
    // s3's file address is n1's now: s3 cannot come back until n1 goes.
    let e = ctl.command(&["del-service", "s3"]).unwrap_err().to_string();
    assert!(e.contains("already a frontend"), "{e}");
    ctl.command(&["del-service", "n1"]).expect("del n1");
    ctl.command(&["del-service", "s3"])
        .expect("s3 back from the file");
    let e = set(&svc("n7", "10.247.1.3")).unwrap_err().to_string();
    assert!(
        e.contains("already a frontend"),
        "s3 holds 10.247.1.3 again? {e}"
    );
    set(&svc("n7", "10.247.2.3")).expect("s3's run-time address is free");

    // A NodePort set at run time is reachable from the node itself: the host firewall's DNAT
    // rule (the node's own address is local to its kernel) follows the Service, and goes with it.
    set(
        "{ name = \"np1\", type = \"NodePort\", cluster_ip = \"10.247.4.1\", node_port = 30090, \
         port = 80, backends = [{ ip = \"172.16.1.10\" }] }",
    )
    .expect("np1");
    let table = host_firewall();
    assert!(
        table.contains("tcp dport 30090 dnat ip to 10.247.4.1:80"),
        "no DNAT for np1 in the host firewall:\n{table}"
    );
    ctl.command(&["del-service", "np1"]).expect("del np1");
    let table = host_firewall();
    assert!(!table.contains("30090"), "np1's rule stayed:\n{table}");

    let flows_now = flows(&ctl);
    let groups_now = ctl.command(&["dump-groups", "br-int"]).unwrap();
    assert!(flows_now.contains("nw_dst=10.247.1.3,"), "s3: {flows_now}");
    assert!(flows_now.contains("nw_dst=10.247.3.5,"), "{flows_now}");
    assert!(flows_now.contains("nw_dst=10.247.3.4,"), "n6: {flows_now}");
    assert!(flows_now.contains("nw_dst=10.247.2.3,"), "n7: {flows_now}");
    // The full apply of the same state changes nothing and leaves the same tables.
    let reapplied = ctl.command(&["apply", &node]).expect("re-apply");
    assert!(
        reapplied.contains("flows +0 ~0 -0, groups +0 ~0 -0"),
        "{reapplied}"
    );
    assert_eq!(flows(&ctl), flows_now);
    assert_eq!(ctl.command(&["dump-groups", "br-int"]).unwrap(), groups_now);
    assert_eq!(
        ctl.command(&["list-services"]).unwrap(),
        "n5 10.247.3.5:80 backends=1\nn6 10.247.3.4:80 backends=1\nn7 10.247.2.3:80 backends=1\n"
    );

    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The node's bridge deleted behind the agent's back (`del-br`): the next apply of the same
/// file puts the whole pipeline back, not just the bridge and its ports.
#[test]
fn an_apply_rebuilds_a_deleted_bridge_whole() {
    if !tap_io::netns::require_root("an_apply_rebuilds_a_deleted_bridge_whole") {
        return;
    }
    let (sw, ctl, dir, _threads) = switch_in_own_netns("rebuild");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, NODE).unwrap();
    let file = file.to_str().unwrap();
    ctl.command(&["apply", file]).expect("apply");
    let sorted = |text: String| {
        let mut v: Vec<String> = text.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let before = sorted(flows(&ctl));
    assert!(before.len() > 10, "{before:?}");
    ctl.command(&["del-br", "br-int"]).expect("del-br");
    let out = ctl.command(&["apply", file]).expect("apply again");
    assert_eq!(sorted(flows(&ctl)), before, "{out}");
    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pod deleted at run time takes its connections with it: none is left to be counted
/// against, or reached through, the next pod given its address; other pods' stay.
#[test]
fn a_deleted_pods_connections_go_with_it() {
    if !tap_io::netns::require_root("a_deleted_pods_connections_go_with_it") {
        return;
    }
    let (sw, ctl, dir, _threads) = switch_in_own_netns("ctgone");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, NODE).unwrap();
    ctl.command(&["apply", file.to_str().unwrap()])
        .expect("apply");
    let out = ctl
        .command(&[
            "add-pod",
            "p1",
            "port=tg1",
            "type=tap",
            "ip=172.16.1.11",
            "mac=0a:58:0c:01:00:0b",
        ])
        .expect("add-pod");
    let ofport: u32 = out
        .split("ofport=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // From the file's pod and from p1, one UDP datagram each to the other: two connections.
    let udp = |src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]| {
        encap::build::FrameBuilder::eth(src_mac, [0x0a, 0x58, 0x0c, 0, 0, 0xfe])
            .ipv4(src, dst)
            .udp(5000, 6000)
            .build()
    };
    sw.inject(
        "br-int",
        ofport,
        &udp(
            [0x0a, 0x58, 0x0c, 1, 0, 0x0b],
            [172, 16, 1, 11],
            [172, 16, 1, 10],
        ),
    )
    .unwrap();
    let file_pod_port = 1;
    sw.inject(
        "br-int",
        file_pod_port,
        &udp(
            [0x0a, 0x58, 0x0c, 1, 0, 0x0a],
            [172, 16, 1, 10],
            [172, 16, 1, 99],
        ),
    )
    .unwrap();
    let conns = || ctl.command(&["dump-conntrack", "br-int"]).unwrap();
    let before = conns();
    assert!(before.contains("src=172.16.1.11"), "{before}");
    assert!(
        before.contains("src=172.16.1.10,dst=172.16.1.99"),
        "{before}"
    );
    ctl.command(&["del-pod", "p1"]).expect("del-pod");
    let after = conns();
    assert!(!after.contains("172.16.1.11"), "{after}");
    assert!(after.contains("src=172.16.1.10,dst=172.16.1.99"), "{after}");
    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mode eni: an EIP bound at run time (`set-eip`) goes with its pod when a changed node file
/// drops the pod; a pod of that name added later does not inherit it.
#[test]
fn a_run_time_eip_goes_with_its_pod() {
    if !tap_io::netns::require_root("a_run_time_eip_goes_with_its_pod") {
        return;
    }
    // In a namespace of its own, whose /sys shows its interfaces (the uplink is checked).
    let node = common::Node::new("eipgone");
    let ns = node.name().to_string();
    common::ns_sh(
        &ns,
        "ip link add eth1 type veth peer name eth1p && ip link set eth1 up",
    );
    let rundir = std::env::temp_dir().join(format!("{ns}-run"));
    let d = common::Daemon::start(&ns, &rundir);
    let base = "[node]\nname = \"e\"\nunderlay_ip = \"192.168.0.11\"\nunderlay_interface = \"eth1\"\n\
                underlay_mac = \"02:00:00:00:00:0b\"\npod_cidr = \"192.168.64.0/24\"\n\
                gateway_ip = \"192.168.64.1\"\ngateway_mac = \"02:00:00:00:00:01\"\nmode = \"eni\"\n\
                [egress]\nnext_hop_mac = \"02:00:00:00:00:01\"\n";
    let db = "[[pods]]\nname = \"db\"\nport = \"tdb\"\ntype = \"tap\"\nip = \"192.168.64.11\"\n\
              mac = \"0a:58:00:00:00:0b\"\nvlan = 11\n";
    let apply = |text: &str| {
        let f = rundir.join("node.toml");
        std::fs::write(&f, text).unwrap();
        d.ctl(&["apply", f.to_str().unwrap()]);
    };
    let flows = || d.ctl(&["dump-flows", "br-int"]);
    apply(&format!("{base}{db}"));
    d.ctl(&["set-eip", "db", "198.51.100.7"]);
    assert!(flows().contains("198.51.100.7"));
    apply(base);
    assert!(!flows().contains("198.51.100.7"));
    d.ctl(&[
        "add-pod",
        "db",
        "port=tdb",
        "type=tap",
        "ip=192.168.64.11",
        "mac=0a:58:00:00:00:0b",
        "vlan=11",
    ]);
    let f = flows();
    assert!(
        !f.contains("198.51.100.7"),
        "the new pod db inherited the old one's EIP:\n{f}"
    );
}

/// A node file that replaces a pod by another with the same address (another port, another
/// name) takes the old pod's connections away with it.
#[test]
fn a_pod_replaced_at_the_same_address_starts_without_the_old_ones_connections() {
    if !tap_io::netns::require_root(
        "a_pod_replaced_at_the_same_address_starts_without_the_old_ones_connections",
    ) {
        return;
    }
    let (sw, ctl, dir, _threads) = switch_in_own_netns("ctswap");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, NODE).unwrap();
    ctl.command(&["apply", file.to_str().unwrap()])
        .expect("apply");
    let udp = encap::build::FrameBuilder::eth(
        [0x0a, 0x58, 0x0c, 1, 0, 0x0a],
        [0x0a, 0x58, 0x0c, 0, 0, 0xfe],
    )
    .ipv4([172, 16, 1, 10], [172, 16, 1, 99])
    .udp(5000, 6000)
    .build();
    sw.inject("br-int", 1, &udp).unwrap();
    let conns = || ctl.command(&["dump-conntrack", "br-int"]).unwrap();
    assert!(conns().contains("src=172.16.1.10"), "{}", conns());
    std::fs::write(&file, NODE.replace("port = \"tfile\"", "port = \"tfile2\"")).unwrap();
    ctl.command(&["apply", file.to_str().unwrap()])
        .expect("apply the replacement");
    assert!(!conns().contains("172.16.1.10"), "{}", conns());
    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The MAC `ip link show DEV` gives.
fn kernel_mac(dev: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "dev", dev])
        .output()
        .expect("ip");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev}: {text}"))
        .to_string()
}

/// The `mac:` `show` prints for port `port`.
fn shown_mac(ctl: &Control, port: &str) -> String {
    let show = ctl.command(&["show"]).expect("show");
    show.lines()
        .skip_while(|l| l.trim() != format!("Port {port}"))
        .find_map(|l| l.trim().strip_prefix("mac: "))
        .unwrap_or_else(|| panic!("no port {port} in {show}"))
        .trim_matches('"')
        .to_string()
}

/// What OpenFlow's PORT_DESC says port `ofport` of br-int's MAC is.
fn desc_mac(sw: &Switch, ofport: u32) -> String {
    let m = sw.lock()["br-int"].ports[&ofport].desc().hw_addr;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The host port, a TAP the agent creates and then gives a MAC of its own (`0e:76:73` + the
/// address's low bytes, what its flows use), reports that MAC (`show`, PORT_DESC), not the
/// one the kernel made the TAP with. A MAC changed under a port later is followed, and
/// OpenFlow connections get a PORT_STATUS MODIFY saying so.
#[test]
fn ports_report_the_mac_their_interface_has() {
    if !tap_io::netns::require_root("ports_report_the_mac_their_interface_has") {
        return;
    }
    let (sw, ctl, dir, _threads) = switch_in_own_netns("portmac");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, NODE).unwrap();
    ctl.command(&["apply", file.to_str().unwrap()])
        .expect("apply");
    let host = "0e:76:73:10:01:fe";
    assert_eq!(kernel_mac("vswhost0"), host);
    assert_eq!(shown_mac(&ctl, "vswhost0"), host);
    assert_eq!(desc_mac(&sw, 1002), host);

    // A MAC changed under a port (here the pod's TAP, still in the switch's namespace).
    let events = sw.packet_ins.subscribe("br-int");
    let ofport = *sw.lock()["br-int"]
        .ports
        .iter()
        .find(|(_, p)| p.spec.name == "tfile")
        .expect("pod port")
        .0;
    let new = "02:00:00:5e:00:01";
    let set = std::process::Command::new("ip")
        .args(["link", "set", "dev", "tfile", "address", new])
        .status()
        .expect("ip");
    assert!(set.success());
    sw.refresh_port_macs();
    assert_eq!(shown_mac(&ctl, "tfile"), new);
    assert_eq!(desc_mac(&sw, ofport), new);
    let status = std::iter::from_fn(|| events.try_recv()).find_map(|ev| match ev {
        vswitch::events::AsyncEvent::PortStatus { reason, port } => Some((reason, port)),
        _ => None,
    });
    let (reason, port) = status.expect("no PORT_STATUS for the changed MAC");
    assert_eq!(reason, openflow::switch::port_reason::MODIFY);
    assert_eq!(port.port_no, ofport);
    assert_eq!(port.hw_addr, [2, 0, 0, 0x5e, 0, 1]);
    // Nothing changed: nothing is reported again.
    sw.refresh_port_macs();
    assert!(
        !std::iter::from_fn(|| events.try_recv())
            .any(|ev| matches!(ev, vswitch::events::AsyncEvent::PortStatus { .. })),
        "a PORT_STATUS without a change"
    );
    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
