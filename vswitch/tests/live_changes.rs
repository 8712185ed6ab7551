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

#[test]
fn pods_and_services_change_live_and_survive_a_reapplied_file() {
    if !tap_io::netns::require_root("pods_and_services_change_live_and_survive_a_reapplied_file") {
        return;
    }
    // A namespace of our own: the TAP devices and the host port's routes go with it.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
    let lo = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(lo.success());
    let (dp, _threads) = datapath::spawn(datapath::Options::default()).expect("datapath");
    let dir = std::env::temp_dir().join(format!("vswitch-live-{}", std::process::id()));
    let sw = Arc::new(Switch::new(dp, dir.clone()));
    let ctl = Control::new(sw.clone());

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

    // The node file applied again (SIGHUP, vswitchctl apply): run-time changes stay.
    ctl.command(&["apply", NODE]).expect("re-apply");
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

    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
