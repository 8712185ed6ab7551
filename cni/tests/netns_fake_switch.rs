//! The network side of the plugin as root, against a stand-in for vswitchd's management
//! socket (this test answers node-info, add-pod, del-pod and list-pods itself): ADD creates
//! the veth pair in a node namespace, configures the container end as the node's pods are
//! configured (MAC, /32, the gateway route, the default route, MTU), registers the pod;
//! CHECK passes and then notices a missing route; a refused registration leaves nothing
//! behind (no veth, the address released); DEL twice succeeds and removes everything. In a
//! chain, ADD passes an earlier plugin's `prevResult` on with its own result appended; an IPAM
//! result without an IPv4 address is refused and its reservation released. A host end that
//! does not come up (an `ip` stand-in fails it) is deleted with its pair; a second interface
//! (`net1`) leaves the namespace's default route alone; IPAM routes via another gateway are
//! error 7 before allocating; CHECK takes a MTU a later plugin set (held to a 1.1.0 result's
//! `mtu`); DEL without `CNI_PATH` fails only its IPAM step; GC releases addresses through an
//! IPAM plugin without GC by its DEL.

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

/// A pod namespace, a node namespace and an attachment in them, with a fake switch in a temp
/// dir: the common setup of the tests below.
struct Setup {
    pods: Pods,
    node: Netns,
    pod: Netns,
    dir: TempDir,
    a: Attach,
}

fn setup(test: &str, tag: &str, ifname: &str) -> Option<Setup> {
    if !require_root(test) {
        return None;
    }
    let bin = cni_bin_dir(test)?;
    let dir = TempDir::new(tag);
    let pods = fake_switch(&dir.path().join("run"), "tunnel", 1450);
    let node = Netns::new(&unique(&format!("{tag}n"))).expect("node ns");
    let pod = Netns::new(&unique(&format!("{tag}p"))).expect("pod ns");
    let a = Attach {
        id: format!("{tag}-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod.name()),
        ifname: ifname.into(),
        bin,
    };
    Some(Setup {
        pods,
        node,
        pod,
        dir,
        a,
    })
}

impl Setup {
    fn conf(&self, start: &str, end: &str) -> Value {
        netconf(&self.dir.path().join("run"), &self.data(), start, end)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("ipam")
    }

    fn with_prev(conf: &Value, result: &Value) -> Value {
        let mut c = conf.clone();
        c["prevResult"] = result.clone();
        c
    }
}

/// The real `ip`, for the stand-in below to pass on to.
fn real_ip() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("iproute2's ip")
}

#[test]
fn a_host_end_that_does_not_come_up_is_deleted() {
    let Some(s) = setup("a_host_end_that_does_not_come_up_is_deleted", "hup", "eth0") else {
        return;
    };
    // An `ip` first in PATH that fails to bring a host end (vs…) up, after the pair was
    // created; everything else goes to the real one.
    let fake = s.dir.path().join("fakebin");
    std::fs::create_dir_all(&fake).expect("fakebin");
    let script = fake.join("ip");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1 $2 $3 $5\" = \"link set dev up\" ]; then\n\
               case \"$4\" in vs*) echo 'RTNETLINK answers: injected failure' >&2; exit 2;; esac\n\
             fi\n\
             exec {} \"$@\"\n",
            real_ip()
        ),
    )
    .expect("fake ip");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", fake.display());
    let conf = s.conf("172.16.1.60", "172.16.1.61");
    let env = [
        ("PATH", path.as_str()),
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", s.a.id.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", s.a.netns.as_str()),
        ("CNI_PATH", s.a.bin.as_str()),
    ];
    let out = run_plugin(Some(s.node.name()), &env, &conf.to_string());
    assert_eq!(out.code(), 100, "{out:?}");
    assert!(out.stdout.contains("injected failure"), "{out:?}");
    assert!(
        host_ends(s.node.name()).is_empty(),
        "the veth pair is left: {:?}",
        host_ends(s.node.name())
    );
    assert!(
        !ns_sh(s.pod.name(), "ip -o link show").contains("eth0"),
        "the container end is left"
    );
    assert!(reserved(&s.data(), "vswitch-test").is_empty());
    assert!(s.pods.lock().expect("lock").is_empty());
}

#[test]
fn a_second_interface_leaves_the_default_route_alone() {
    let Some(s) = setup(
        "a_second_interface_leaves_the_default_route_alone",
        "two",
        "eth0",
    ) else {
        return;
    };
    let conf = s.conf("172.16.1.70", "172.16.1.71");
    let net1 = Attach {
        id: s.a.id.clone(),
        netns: s.a.netns.clone(),
        ifname: "net1".into(),
        bin: s.a.bin.clone(),
    };
    let out = s.a.run(Some(s.node.name()), "ADD", &conf, "");
    out.assert_ok("ADD eth0");
    let r0 = out.json();
    assert!(
        r0["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == GW),
        "{r0}"
    );
    // Multus' net1 (a second network, or this one again): the namespace has a default route.
    let out = net1.run(Some(s.node.name()), "ADD", &conf, "");
    out.assert_ok("ADD net1");
    let r1 = out.json();
    assert!(
        r1["routes"]
            .as_array()
            .is_none_or(|rs| rs.iter().all(|r| r["dst"] != "0.0.0.0/0")),
        "net1's result reports a default route it did not add: {r1}"
    );
    let routes = ns_sh(s.pod.name(), "ip -4 route show");
    assert!(
        routes.contains("default via 172.16.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        !routes.contains("default via 172.16.1.1 dev net1"),
        "{routes}"
    );
    assert!(
        ns_sh(s.pod.name(), "ip -o -4 addr show dev net1").contains("172.16.1.71/32"),
        "net1 is not configured"
    );
    assert_eq!(s.pods.lock().expect("lock").len(), 2);
    // CHECK of each with its own result: net1's has no default route to look for.
    s.a.run(
        Some(s.node.name()),
        "CHECK",
        &Setup::with_prev(&conf, &r0),
        "",
    )
    .assert_ok("CHECK eth0");
    net1.run(
        Some(s.node.name()),
        "CHECK",
        &Setup::with_prev(&conf, &r1),
        "",
    )
    .assert_ok("CHECK net1");
    // Removing net1 leaves eth0's routes as they were.
    net1.run(Some(s.node.name()), "DEL", &conf, "")
        .assert_ok("DEL net1");
    let routes = ns_sh(s.pod.name(), "ip -4 route show");
    assert!(
        routes.contains("default via 172.16.1.1 dev eth0"),
        "{routes}"
    );
    s.a.run(
        Some(s.node.name()),
        "CHECK",
        &Setup::with_prev(&conf, &r0),
        "",
    )
    .assert_ok("CHECK eth0 after DEL net1");
    s.a.run(Some(s.node.name()), "DEL", &conf, "")
        .assert_ok("DEL eth0");
    assert!(host_ends(s.node.name()).is_empty());
    assert!(reserved(&s.data(), "vswitch-test").is_empty());
    assert!(s.pods.lock().expect("lock").is_empty());
}

#[test]
fn ipam_routes_via_another_gateway_are_invalid_config() {
    let Some(s) = setup(
        "ipam_routes_via_another_gateway_are_invalid_config",
        "rgw",
        "eth0",
    ) else {
        return;
    };
    let mut conf = s.conf("172.16.1.80", "172.16.1.81");
    conf["ipam"]["routes"] = json!([{"dst": "10.0.0.0/8", "gw": "172.16.1.254"}]);
    let out = s.a.run(Some(s.node.name()), "ADD", &conf, "");
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("172.16.1.254"),
        "{out:?}"
    );
    assert!(host_ends(s.node.name()).is_empty());
    assert!(reserved(&s.data(), "vswitch-test").is_empty());
    assert!(s.pods.lock().expect("lock").is_empty());
    // Without a gw (or with the node's), the route goes via the node's gateway.
    conf["ipam"]["routes"] = json!([{"dst": "10.0.0.0/8"}, {"dst": "10.1.0.0/16", "gw": GW}]);
    let out = s.a.run(Some(s.node.name()), "ADD", &conf, "");
    out.assert_ok("ADD with routes via the gateway");
    let routes = ns_sh(s.pod.name(), "ip -4 route show");
    assert!(
        routes.contains("10.0.0.0/8 via 172.16.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("10.1.0.0/16 via 172.16.1.1 dev eth0"),
        "{routes}"
    );
    s.a.run(Some(s.node.name()), "DEL", &conf, "")
        .assert_ok("DEL");
    assert!(reserved(&s.data(), "vswitch-test").is_empty());
}

#[test]
fn check_lets_a_later_plugin_change_the_mtu() {
    let Some(s) = setup("check_lets_a_later_plugin_change_the_mtu", "cmtu", "eth0") else {
        return;
    };
    // 1.0.0: the result has no MTU, so CHECK takes any (a tuning plugin may have set it).
    let conf = s.conf("172.16.1.90", "172.16.1.91");
    let out = s.a.run(Some(s.node.name()), "ADD", &conf, "");
    out.assert_ok("ADD");
    let r = out.json();
    assert!(r["interfaces"][1].get("mtu").is_none(), "{r}");
    ns_sh(s.pod.name(), "ip link set dev eth0 mtu 1400");
    s.a.run(
        Some(s.node.name()),
        "CHECK",
        &Setup::with_prev(&conf, &r),
        "",
    )
    .assert_ok("CHECK after a later plugin set the MTU");
    s.a.run(Some(s.node.name()), "DEL", &conf, "")
        .assert_ok("DEL");

    // 1.1.0: the result has the MTU, and CHECK holds the interface to the result's.
    let mut conf11 = conf.clone();
    conf11["cniVersion"] = "1.1.0".into();
    let out = s.a.run(Some(s.node.name()), "ADD", &conf11, "");
    out.assert_ok("ADD 1.1.0");
    let mut r = out.json();
    assert_eq!(r["interfaces"][1]["mtu"], 1450, "{r}");
    s.a.run(
        Some(s.node.name()),
        "CHECK",
        &Setup::with_prev(&conf11, &r),
        "",
    )
    .assert_ok("CHECK 1.1.0");
    ns_sh(s.pod.name(), "ip link set dev eth0 mtu 1400");
    assert_eq!(
        s.a.run(
            Some(s.node.name()),
            "CHECK",
            &Setup::with_prev(&conf11, &r),
            ""
        )
        .code(),
        103
    );
    // The final result of a chain whose later plugin set 1400 says so.
    r["interfaces"][1]["mtu"] = 1400.into();
    s.a.run(
        Some(s.node.name()),
        "CHECK",
        &Setup::with_prev(&conf11, &r),
        "",
    )
    .assert_ok("CHECK with the chain's MTU");
    s.a.run(Some(s.node.name()), "DEL", &conf11, "")
        .assert_ok("DEL");
    assert!(host_ends(s.node.name()).is_empty());
}

#[test]
fn del_without_cni_path_still_tears_down() {
    let Some(s) = setup("del_without_cni_path_still_tears_down", "nopath", "eth0") else {
        return;
    };
    let conf = s.conf("172.16.1.100", "172.16.1.101");
    s.a.run(Some(s.node.name()), "ADD", &conf, "")
        .assert_ok("ADD");
    assert_eq!(s.pods.lock().expect("lock").len(), 1);
    let no_path = Attach {
        bin: String::new(),
        id: s.a.id.clone(),
        netns: s.a.netns.clone(),
        ifname: s.a.ifname.clone(),
    };
    // Only the IPAM step needs CNI_PATH: it alone fails (4, naming it).
    let out = no_path.run(Some(s.node.name()), "DEL", &conf, "");
    assert_eq!(out.code(), 4, "{out:?}");
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("CNI_PATH"),
        "{out:?}"
    );
    assert!(
        s.pods.lock().expect("lock").is_empty(),
        "the pod is still registered"
    );
    assert!(
        host_ends(s.node.name()).is_empty(),
        "the veth is still there"
    );
    assert_eq!(reserved(&s.data(), "vswitch-test"), vec!["172.16.1.100"]);
    s.a.run(Some(s.node.name()), "DEL", &conf, "")
        .assert_ok("DEL with CNI_PATH");
    assert!(reserved(&s.data(), "vswitch-test").is_empty());
}

#[test]
fn gc_releases_addresses_through_an_ipam_plugin_without_gc() {
    let Some(s) = setup(
        "gc_releases_addresses_through_an_ipam_plugin_without_gc",
        "gcdel",
        "eth0",
    ) else {
        return;
    };
    let mut conf = s.conf("172.16.1.110", "172.16.1.111");
    conf["cniVersion"] = "1.1.0".into();
    let pod2 = Netns::new(&unique("gcdelp2")).expect("pod2 ns");
    let b = Attach {
        id: format!("gcdel2-{}", std::process::id()),
        netns: format!("/run/netns/{}", pod2.name()),
        ifname: "eth0".into(),
        bin: s.a.bin.clone(),
    };
    s.a.run(Some(s.node.name()), "ADD", &conf, "")
        .assert_ok("ADD a");
    b.run(Some(s.node.name()), "ADD", &conf, "")
        .assert_ok("ADD b");
    assert_eq!(
        reserved(&s.data(), "vswitch-test"),
        vec!["172.16.1.110", "172.16.1.111"]
    );
    // host-local before 1.5 has no GC (it stops at 1.0.0): GC runs its DEL for b.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": s.a.id, "ifname": "eth0"}]);
    let env = [("CNI_COMMAND", "GC"), ("CNI_PATH", s.a.bin.as_str())];
    run_plugin(Some(s.node.name()), &env, &gc.to_string()).assert_ok("GC");
    assert_eq!(
        s.pods
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec![format!("{}:eth0", s.a.id)]
    );
    assert_eq!(host_ends(s.node.name()).len(), 1);
    assert_eq!(
        reserved(&s.data(), "vswitch-test"),
        vec!["172.16.1.110"],
        "the collected attachment's address is still reserved"
    );
    s.a.run(Some(s.node.name()), "DEL", &conf, "")
        .assert_ok("DEL a");
    assert!(reserved(&s.data(), "vswitch-test").is_empty());
}
