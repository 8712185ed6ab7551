//! Live pod and Service changes through the management plane (the CNI plugin's and a Service
//! feeder's way in): `add-pod`/`del-pod`, `set-service`/`set-backends`/`del-service`, each an
//! incremental change of the node agent that survives a re-applied node file. Root only (the
//! switch creates TAP devices), in a network namespace of this test's own.

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
