//! The plugin against the CNI specification's calling convention, without vswitchd and
//! without root: VERSION, the error object and its codes (1 incompatible version, also for a
//! command the configuration's version lacks; 2 unsupported field, 4 invalid environment, 6
//! undecodable input, 7 invalid configuration, 11 try again later (also from a vswitchd
//! without node configuration), 50 not available), DEL of
//! what was never added (twice), CHECK without prevResult, GC.

mod common;

use common::*;
use serde_json::json;

fn base_env<'a>(cmd: &'a str, bin: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", bin),
    ]
}

#[test]
fn version_lists_the_supported_versions() {
    let out = run_plugin(
        None,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"1.0.0"}"#,
    );
    out.assert_ok("VERSION");
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.0.0");
    let s: Vec<&str> = v["supportedVersions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    for want in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(s.contains(&want), "{want} missing from {v}");
    }
    // No input at all (older runtimes): still an answer.
    let out = run_plugin(None, &[("CNI_COMMAND", "VERSION")], "");
    out.assert_ok("VERSION without input");
    assert!(out.json()["supportedVersions"].is_array());
}

#[test]
fn invalid_environment_is_code_4() {
    let conf =
        json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"}})
            .to_string();
    assert_eq!(run_plugin(None, &[], &conf).code(), 4, "no CNI_COMMAND");
    assert_eq!(
        run_plugin(None, &[("CNI_COMMAND", "FROB")], &conf).code(),
        4,
        "unknown command"
    );
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
        let env: Vec<_> = base_env("ADD", "/usr/lib/cni")
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let out = run_plugin(None, &env, &conf);
        assert_eq!(out.code(), 4, "ADD without {missing}: {out:?}");
        assert!(
            out.json()["msg"]
                .as_str()
                .unwrap_or_default()
                .contains(missing)
        );
    }
    let mut env = base_env("ADD", "/usr/lib/cni");
    env[1] = ("CNI_CONTAINERID", "-bad id");
    assert_eq!(run_plugin(None, &env, &conf).code(), 4, "bad container id");
    let mut env = base_env("ADD", "/usr/lib/cni");
    env[3] = ("CNI_IFNAME", "much-too-long-name");
    assert_eq!(run_plugin(None, &env, &conf).code(), 4, "bad ifname");
    let mut env = base_env("ADD", "/usr/lib/cni");
    env[2] = ("CNI_NETNS", "/nonexistent/netns");
    assert_eq!(run_plugin(None, &env, &conf).code(), 4, "missing netns");
    let mut env = base_env("ADD", "/usr/lib/cni");
    env.push(("CNI_ARGS", "MAC=zz:00:00:00:00:01"));
    assert_eq!(
        run_plugin(None, &env, &conf).code(),
        4,
        "bad MAC in CNI_ARGS"
    );
}

#[test]
fn bad_configuration_is_code_6_7_or_1() {
    let env = base_env("ADD", "/usr/lib/cni");
    let out = run_plugin(None, &env, "this is not json");
    assert_eq!(out.code(), 6, "undecodable");
    let cases = [
        json!({"cniVersion":"1.0.0","type":"vswitch-cni","ipam":{"type":"host-local"}}),
        json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni"}),
        json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"},"mtu":"big"}),
        json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"},"mtu":100}),
        json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"},"rundir":"relative"}),
        json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"},"runtimeConfig":{"mac":"nope"}}),
    ];
    for c in cases {
        let out = run_plugin(None, &env, &c.to_string());
        assert_eq!(out.code(), 7, "{c}: {out:?}");
        assert_eq!(out.json()["cniVersion"], "1.0.0");
    }
    // A field the plugin does not implement (a typo, or a well-known key such as dns): 2,
    // the message naming it.
    for (key, value) in [
        ("mut", json!(1400)),
        ("dns", json!({"nameservers": ["10.96.0.10"]})),
    ] {
        let mut c = json!({"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"}});
        c[key] = value;
        let out = run_plugin(None, &env, &c.to_string());
        assert_eq!(out.code(), 2, "{c}: {out:?}");
        assert!(
            out.json()["msg"].as_str().unwrap_or_default().contains(key),
            "{out:?}"
        );
    }
    let old =
        json!({"cniVersion":"0.2.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"}});
    assert_eq!(run_plugin(None, &env, &old.to_string()).code(), 1);
    let future =
        json!({"cniVersion":"9.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"}});
    assert_eq!(run_plugin(None, &env, &future.to_string()).code(), 1);
}

#[test]
fn add_without_vswitchd_is_try_again_later_and_allocates_nothing() {
    let Some(bin) = cni_bin_dir("add_without_vswitchd") else {
        return;
    };
    let dir = TempDir::new("noswitch");
    let conf = netconf(
        &dir.path().join("run"),
        &dir.path().join("ipam"),
        "172.16.1.10",
        "172.16.1.20",
    );
    let out = run_plugin(None, &base_env("ADD", &bin), &conf.to_string());
    assert_eq!(out.code(), 11, "{out:?}");
    assert!(reserved(&dir.path().join("ipam"), "vswitch-test").is_empty());
    // The same answer for STATUS, as its own code.
    let mut conf11 = conf.clone();
    conf11["cniVersion"] = "1.1.0".into();
    let status = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", bin.as_str())];
    let out = run_plugin(None, &status, &conf11.to_string());
    assert_eq!(out.code(), 50, "{out:?}");
    // A 1.0.0 configuration has no STATUS (nor GC; CHECK came with 0.4.0): code 1, before
    // anything is asked of vswitchd or the IPAM plugin.
    let out = run_plugin(None, &status, &conf.to_string());
    assert_eq!(out.code(), 1, "{out:?}");
    let gc = [("CNI_COMMAND", "GC"), ("CNI_PATH", bin.as_str())];
    let mut gc_conf = conf.clone();
    gc_conf["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(run_plugin(None, &gc, &gc_conf.to_string()).code(), 1);
    let mut old = conf.clone();
    old["cniVersion"] = "0.3.1".into();
    old["prevResult"] = json!({"interfaces": [], "ips": []});
    let out = run_plugin(None, &base_env("CHECK", &bin), &old.to_string());
    assert_eq!(out.code(), 1, "{out:?}");
}

#[test]
fn del_of_what_was_never_added_succeeds_twice() {
    let Some(bin) = cni_bin_dir("del_never_added") else {
        return;
    };
    let dir = TempDir::new("delnever");
    let conf = netconf(
        &dir.path().join("run"),
        &dir.path().join("ipam"),
        "172.16.1.10",
        "172.16.1.20",
    );
    for _ in 0..2 {
        let out = run_plugin(None, &base_env("DEL", &bin), &conf.to_string());
        out.assert_ok("DEL");
        assert!(out.stdout.trim().is_empty(), "DEL printed {}", out.stdout);
    }
    // A key this plugin refuses on ADD does not stop DEL: an older plugin took the
    // configuration, so its pods must still come down.
    let mut with_dns = conf.clone();
    with_dns["dns"] = json!({"nameservers": ["10.96.0.10"]});
    run_plugin(None, &base_env("DEL", &bin), &with_dns.to_string()).assert_ok("DEL with dns");
    assert_eq!(
        run_plugin(None, &base_env("ADD", &bin), &with_dns.to_string()).code(),
        2,
        "ADD refuses it"
    );
    // Without CNI_NETNS (the namespace is gone): still fine.
    let env: Vec<_> = base_env("DEL", &bin)
        .into_iter()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    run_plugin(None, &env, &conf.to_string()).assert_ok("DEL without CNI_NETNS");
}

#[test]
fn check_needs_prev_result() {
    let Some(bin) = cni_bin_dir("check_needs_prev_result") else {
        return;
    };
    let dir = TempDir::new("check");
    let conf = netconf(
        &dir.path().join("run"),
        &dir.path().join("ipam"),
        "172.16.1.10",
        "172.16.1.20",
    );
    let out = run_plugin(None, &base_env("CHECK", &bin), &conf.to_string());
    assert_eq!(out.code(), 7, "{out:?}");
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "vs0", "mac": "02:00:00:00:00:01"},
                       {"name": "eth0", "mac": "0a:58:ac:10:01:0a", "sandbox": "/proc/self/ns/net"}],
        "ips": [{"address": "172.16.1.10/32", "gateway": GW, "interface": 1}],
    });
    // A dependency of the pod's connectivity (vswitchd) is missing: an error.
    let out = run_plugin(None, &base_env("CHECK", &bin), &with_prev.to_string());
    assert_eq!(out.code(), 11, "{out:?}");
}

#[test]
fn gc_needs_valid_attachments_and_tolerates_a_stopped_switch() {
    let Some(bin) = cni_bin_dir("gc") else {
        return;
    };
    let dir = TempDir::new("gc");
    let mut conf = netconf(
        &dir.path().join("run"),
        &dir.path().join("ipam"),
        "172.16.1.10",
        "172.16.1.20",
    );
    conf["cniVersion"] = "1.1.0".into();
    let env = [("CNI_COMMAND", "GC"), ("CNI_PATH", bin.as_str())];
    assert_eq!(run_plugin(None, &env, &conf.to_string()).code(), 7);
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "c0ffee", "ifname": "eth0"}]);
    run_plugin(None, &env, &conf.to_string()).assert_ok("GC");
}

#[test]
fn a_switch_without_node_configuration_is_try_again_later() {
    use std::io::{BufRead, BufReader, Write};
    let Some(bin) = cni_bin_dir("a_switch_without_node_configuration_is_try_again_later") else {
        return;
    };
    let dir = TempDir::new("nocfg");
    let rundir = dir.path().join("run");
    std::fs::create_dir_all(&rundir).expect("rundir");
    // vswitchd running without --config: it refuses node-info (and add-pod) so.
    let listener =
        std::os::unix::net::UnixListener::bind(rundir.join("vswitchd.ctl")).expect("bind");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
            let reply = json!({"ok": false, "output":
                "no node configuration: start vswitchd with --config (or vswitchctl apply) first"});
            let _ = (&s).write_all(format!("{reply}\n").as_bytes());
        }
    });
    let conf = netconf(
        &rundir,
        &dir.path().join("ipam"),
        "172.16.1.10",
        "172.16.1.20",
    );
    let out = run_plugin(None, &base_env("ADD", &bin), &conf.to_string());
    assert_eq!(out.code(), 11, "{out:?}");
    assert!(reserved(&dir.path().join("ipam"), "vswitch-test").is_empty());
}
