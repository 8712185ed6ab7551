//! The network side of the plugin as root, against a stand-in for vswitchd's management
//! socket (this test answers node-info, add-pod, del-pod and list-pods itself): ADD creates
//! the veth pair in a node namespace, configures the container end as the node's pods are
//! configured (MAC, /32, the gateway route, the default route, MTU), registers the pod;
//! CHECK passes and then notices a missing route; a refused registration leaves nothing
//! behind (no veth, the address released); DEL twice succeeds and removes everything. In a
//! chain, ADD passes an earlier plugin's `prevResult` on with its own result appended; an IPAM
//! result without an IPv4 address is refused and its reservation released.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};

type Pods = Arc<Mutex<BTreeMap<String, (String, String, String)>>>;

/// Serves the registration contract on `<rundir>/vswitchd.ctl` from a thread; a pod whose MAC
/// is the gateway's is refused, like the real daemon refuses it.
fn fake_switch(rundir: &Path, mode: &str, mtu: u32) -> Pods {
    std::fs::create_dir_all(rundir).expect("rundir");
    let listener = UnixListener::bind(rundir.join("vswitchd.ctl")).expect("bind");
    let pods: Pods = Arc::default();
    let state = pods.clone();
    let info = json!({"name":"node1","bridge":"br-int","mode":mode,"pod_cidr":"172.16.1.0/24",
        "gateway_ip":GW,"gateway_mac":GW_MAC,"mtu":mtu})
    .to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            let mut line = String::new();
            if BufReader::new(&s).read_line(&mut line).is_err() {
                continue;
            }
            let req: Value = serde_json::from_str(&line).unwrap_or_default();
            let args: Vec<String> = serde_json::from_value(req["args"].clone()).unwrap_or_default();
            let mut pods = state.lock().expect("lock");
            let kv = |k: &str| {
                args.iter()
                    .find_map(|a| a.strip_prefix(&format!("{k}=")).map(str::to_string))
                    .unwrap_or_default()
            };
            let reply: Result<String, String> = match args.first().map(String::as_str) {
                Some("node-info") => Ok(info.clone()),
                Some("add-pod") if kv("mac") == GW_MAC => Err("mac: the gateway's MAC".into()),
                Some("add-pod") if pods.contains_key(&args[1]) => Err("duplicate name".into()),
                Some("add-pod") => {
                    pods.insert(args[1].clone(), (kv("port"), kv("ip"), kv("mac")));
                    Ok(String::new())
                }
                Some("del-pod") => match pods.remove(&args[1]) {
                    Some(_) => Ok(String::new()),
                    None if args.iter().any(|a| a == "--if-exists") => Ok(String::new()),
                    None => Err("no such pod".into()),
                },
                Some("list-pods") => Ok(pods
                    .iter()
                    .enumerate()
                    .map(|(i, (n, (p, ip, m)))| format!("{n} {p} {ip} {m} ofport={}\n", i + 1))
                    .collect()),
                _ => Err("unknown command".into()),
            };
            let (ok, output) = match reply {
                Ok(o) => (true, o),
                Err(o) => (false, o),
            };
            let mut text = json!({"ok": ok, "output": output}).to_string();
            text.push('\n');
            let _ = (&s).write_all(text.as_bytes());
        }
    });
    pods
}

#[test]
fn add_check_del_configure_the_pod_like_the_demo() {
    if !require_root("add_check_del_configure_the_pod_like_the_demo") {
        return;
    }
    let Some(bin) = cni_bin_dir("add_check_del_configure_the_pod_like_the_demo") else {
        return;
    };
    let dir = TempDir::new("fake");
    let rundir = dir.path().join("run");
    let data = dir.path().join("ipam");
    let pods = fake_switch(&rundir, "tunnel", 1450);
    let node = Netns::new(&unique("fnode")).expect("node ns");
    let pod = Netns::new(&unique("fpod")).expect("pod ns");
    let conf = netconf(&rundir, &data, "172.16.1.10", "172.16.1.20");
    let a = Attach {
        id: format!("ctr-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod.name()),
        ifname: "eth0".into(),
        bin,
    };

    let out = a.run(Some(node.name()), "ADD", &conf, "");
    out.assert_ok("ADD");
    let r = out.json();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"][0]["address"], "172.16.1.10/32", "{r}");
    assert_eq!(r["ips"][0]["gateway"], GW);
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["mac"], "0a:58:ac:10:01:0a");
    assert_eq!(r["interfaces"][1]["sandbox"], a.netns.as_str());
    let host = r["interfaces"][0]["name"]
        .as_str()
        .expect("host name")
        .to_string();
    assert!(host.len() <= 15 && host.starts_with("vs"), "{host}");
    assert_eq!(host_ends(node.name()), vec![host.clone()]);
    assert_eq!(reserved(&data, "vswitch-test"), vec!["172.16.1.10"]);

    // The container side, as scripts/demo.sh configures a pod.
    let link = ns_sh(pod.name(), "ip -o link show eth0");
    assert!(
        link.contains("mtu 1450") && link.contains("0a:58:ac:10:01:0a") && link.contains(",UP"),
        "{link}"
    );
    let addr = ns_sh(pod.name(), "ip -o -4 addr show dev eth0");
    assert!(addr.contains("172.16.1.10/32"), "{addr}");
    let routes = ns_sh(pod.name(), "ip -4 route show");
    assert!(
        routes.contains("default via 172.16.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("172.16.1.1 dev eth0 scope link"),
        "{routes}"
    );
    let hl = ns_sh(node.name(), &format!("ip -o link show {host}"));
    assert!(hl.contains("mtu 1450") && hl.contains(",UP"), "{hl}");
    let v6 = ns_sh(
        node.name(),
        &format!("cat /proc/sys/net/ipv6/conf/{host}/disable_ipv6 2>/dev/null || echo 1"),
    );
    assert_eq!(v6.trim(), "1", "the host end must not speak IPv6");
    {
        let p = pods.lock().expect("lock");
        let (port, ip, mac) = p.get(&format!("{}:eth0", a.id)).expect("registered");
        assert_eq!(
            (port.as_str(), ip.as_str(), mac.as_str()),
            (host.as_str(), "172.16.1.10", "0a:58:ac:10:01:0a")
        );
    }

    // CHECK with the ADD's result passes; with the default route gone it fails (103).
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    a.run(Some(node.name()), "CHECK", &with_prev, "")
        .assert_ok("CHECK");
    ns_sh(pod.name(), "ip route del default");
    assert_eq!(
        a.run(Some(node.name()), "CHECK", &with_prev, "").code(),
        103
    );

    // A second container whose registration is refused: nothing of it remains.
    let pod2 = Netns::new(&unique("fpod2")).expect("pod2 ns");
    let b = Attach {
        id: format!("ctr2-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod2.name()),
        ifname: "eth0".into(),
        bin: a.bin.clone(),
    };
    let out = b.run(
        Some(node.name()),
        "ADD",
        &conf,
        &format!("IgnoreUnknown=1;MAC={GW_MAC}"),
    );
    assert_eq!(out.code(), 101, "{out:?}");
    assert_eq!(
        host_ends(node.name()),
        vec![host.clone()],
        "the refused pod's veth remains"
    );
    assert!(
        ns_sh(pod2.name(), "ip -o link show")
            .lines()
            .all(|l| !l.contains("eth0"))
    );
    assert_eq!(
        reserved(&data, "vswitch-test"),
        vec!["172.16.1.10"],
        "its address was not released"
    );
    assert_eq!(pods.lock().expect("lock").len(), 1);

    // DEL, twice: everything goes.
    for _ in 0..2 {
        a.run(Some(node.name()), "DEL", &conf, "").assert_ok("DEL");
    }
    assert!(host_ends(node.name()).is_empty());
    assert!(reserved(&data, "vswitch-test").is_empty());
    assert!(pods.lock().expect("lock").is_empty());
}

#[test]
fn configured_mtu_overrides_the_nodes() {
    if !require_root("configured_mtu_overrides_the_nodes") {
        return;
    }
    let Some(bin) = cni_bin_dir("configured_mtu_overrides_the_nodes") else {
        return;
    };
    let dir = TempDir::new("mtu");
    let rundir = dir.path().join("run");
    let pods = fake_switch(&rundir, "route", 1500);
    let node = Netns::new(&unique("mnode")).expect("node ns");
    let pod = Netns::new(&unique("mpod")).expect("pod ns");
    let a = Attach {
        id: format!("m-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod.name()),
        ifname: "net1".into(),
        bin,
    };
    let conf = netconf(
        &rundir,
        &dir.path().join("ipam"),
        "172.16.1.30",
        "172.16.1.31",
    );
    a.run(Some(node.name()), "ADD", &conf, "").assert_ok("ADD");
    assert!(ns_sh(pod.name(), "ip -o link show net1").contains("mtu 1500"));
    a.run(Some(node.name()), "DEL", &conf, "").assert_ok("DEL");
    let mut small = conf.clone();
    small["mtu"] = 1400.into();
    a.run(Some(node.name()), "ADD", &small, "")
        .assert_ok("ADD mtu 1400");
    assert!(ns_sh(pod.name(), "ip -o link show net1").contains("mtu 1400"));
    a.run(Some(node.name()), "DEL", &small, "").assert_ok("DEL");
    assert!(host_ends(node.name()).is_empty());

    // A DEL whose IPAM plugin is not there fails (102) at the IPAM step only: the pod is
    // unregistered and its veth deleted all the same; a DEL with the plugin releases the rest.
    a.run(Some(node.name()), "ADD", &conf, "").assert_ok("ADD");
    assert_eq!(pods.lock().expect("lock").len(), 1);
    let mut no_ipam = conf.clone();
    no_ipam["ipam"]["type"] = "no-such-ipam".into();
    let out = a.run(Some(node.name()), "DEL", &no_ipam, "");
    assert_eq!(out.code(), 102, "{out:?}");
    assert!(
        pods.lock().expect("lock").is_empty(),
        "the pod is still registered"
    );
    assert!(host_ends(node.name()).is_empty(), "the veth is still there");
    a.run(Some(node.name()), "DEL", &conf, "").assert_ok("DEL");
}

#[test]
fn add_appends_to_an_earlier_plugins_result() {
    if !require_root("add_appends_to_an_earlier_plugins_result") {
        return;
    }
    let Some(bin) = cni_bin_dir("add_appends_to_an_earlier_plugins_result") else {
        return;
    };
    let dir = TempDir::new("chain");
    let rundir = dir.path().join("run");
    let _pods = fake_switch(&rundir, "tunnel", 1450);
    let node = Netns::new(&unique("cnode")).expect("node ns");
    let pod = Netns::new(&unique("cpod")).expect("pod ns");
    let a = Attach {
        id: format!("chain-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod.name()),
        ifname: "eth0".into(),
        bin,
    };
    let mut conf = netconf(
        &rundir,
        &dir.path().join("ipam"),
        "172.16.1.40",
        "172.16.1.41",
    );
    let earlier = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "dummy0", "mac": "02:00:00:00:00:09", "sandbox": a.netns}],
        "ips": [{"address": "192.0.2.9/24", "interface": 0}],
        "routes": [{"dst": "192.0.2.0/24"}],
        "dns": {"nameservers": ["192.0.2.53"]},
    });
    conf["prevResult"] = earlier.clone();
    let out = a.run(Some(node.name()), "ADD", &conf, "");
    out.assert_ok("ADD with prevResult");
    let r = out.json();
    // The earlier plugin's entries first, unchanged; ours after them, indexes shifted.
    assert_eq!(r["interfaces"][0], earlier["interfaces"][0], "{r}");
    assert_eq!(r["interfaces"][2]["name"], "eth0", "{r}");
    assert_eq!(r["ips"][0], earlier["ips"][0], "{r}");
    assert_eq!(r["ips"][1]["address"], "172.16.1.40/32", "{r}");
    assert_eq!(r["ips"][1]["interface"], 2, "{r}");
    assert_eq!(r["routes"][0], earlier["routes"][0], "{r}");
    assert!(
        r["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .any(|rt| rt["dst"] == "0.0.0.0/0"),
        "{r}"
    );
    assert_eq!(r["dns"], earlier["dns"], "{r}");
    // CHECK finds our interface in the merged result.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    a.run(Some(node.name()), "CHECK", &with_prev, "")
        .assert_ok("CHECK");
    a.run(Some(node.name()), "DEL", &conf, "").assert_ok("DEL");
    assert!(host_ends(node.name()).is_empty());
}

#[test]
fn an_ipam_result_without_ipv4_is_released() {
    if !require_root("an_ipam_result_without_ipv4_is_released") {
        return;
    }
    let Some(bin) = cni_bin_dir("an_ipam_result_without_ipv4_is_released") else {
        return;
    };
    let dir = TempDir::new("v6only");
    let rundir = dir.path().join("run");
    let data = dir.path().join("ipam");
    let _pods = fake_switch(&rundir, "tunnel", 1450);
    let node = Netns::new(&unique("v6node")).expect("node ns");
    let pod = Netns::new(&unique("v6pod")).expect("pod ns");
    let a = Attach {
        id: format!("v6-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod.name()),
        ifname: "eth0".into(),
        bin,
    };
    let mut conf = netconf(&rundir, &data, "172.16.1.50", "172.16.1.51");
    conf["ipam"]["ranges"] = json!([[{"subnet": "fd00:16::/120"}]]);
    let out = a.run(Some(node.name()), "ADD", &conf, "");
    assert_eq!(out.code(), 102, "{out:?}");
    let held = reserved(&data, "vswitch-test");
    assert!(held.is_empty(), "still reserved: {held:?}");
    assert!(host_ends(node.name()).is_empty());
}
