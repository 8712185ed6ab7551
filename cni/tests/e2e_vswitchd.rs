//! The plugin end to end as root with the real `vswitchd --config node.toml` running in a node
//! namespace: containers are namespaces made with `ip netns add`, the plugin runs in the node
//! namespace (where the runtime would run it) with the reference `host-local` IPAM.
//!
//! Checked: pods ping each other and the gateway with every reply; CHECK; `list-pods` agrees;
//! DEL twice; 20 parallel ADDs then 20 parallel DELs, no pod lost or duplicated, no veth left;
//! failed ADDs (IPAM exhausted, a MAC the kernel refuses, a MAC vswitchd refuses) leave no veth,
//! no pod and no reserved address.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn address(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_string()
}

#[test]
fn pods_ping_each_other_and_the_gateway() {
    let Some(node) = Node::start("pods_ping_each_other_and_the_gateway", "ping") else {
        return;
    };
    let conf = node.conf("172.16.1.10", "172.16.1.50");
    let pods: Vec<Netns> = (0..2)
        .map(|i| Netns::new(&unique(&format!("ping{i}"))).expect("pod ns"))
        .collect();
    let atts: Vec<Attach> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| node.attach(&format!("ping{i}-{}", std::process::id()), p))
        .collect();
    let results: Vec<Value> = atts
        .iter()
        .map(|a| {
            let out = a.run(Some(node.ns.name()), "ADD", &conf, "");
            assert!(out.ok, "ADD: {out:?}\n{}", node.daemon.log());
            out.json()
        })
        .collect();
    let ips: Vec<String> = results.iter().map(address).collect();

    for (pod, dst) in [
        (0, GW.to_string()),
        (1, GW.to_string()),
        (0, ips[1].clone()),
        (1, ips[0].clone()),
    ] {
        let (ok, text) = ping_all(pods[pod].name(), &dst, 5);
        assert!(
            ok,
            "pod {pod} -> {dst} lost replies:\n{text}\n{}",
            node.daemon.log()
        );
    }

    // vswitchd knows both, under names DEL can find, with the ports and addresses ADD reported.
    let listed = node.pods();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (a, r) in atts.iter().zip(&results) {
        let line = listed
            .iter()
            .find(|l| l[0] == format!("{}:eth0", a.id))
            .unwrap_or_else(|| panic!("{} not in {listed:?}", a.id));
        assert_eq!(
            line[1],
            r["interfaces"][0]["name"].as_str().unwrap_or_default()
        );
        assert_eq!(line[2], address(r));
        assert_eq!(
            line[3].to_ascii_lowercase(),
            r["interfaces"][1]["mac"].as_str().unwrap_or_default()
        );
    }

    for (a, r) in atts.iter().zip(&results) {
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = r.clone();
        a.run(Some(node.ns.name()), "CHECK", &with_prev, "")
            .assert_ok("CHECK");
    }
    for a in &atts {
        for _ in 0..2 {
            a.run(Some(node.ns.name()), "DEL", &conf, "")
                .assert_ok("DEL");
        }
    }
    node.assert_clean("after DEL");
    // CHECK after DEL notices the pod is gone.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = results[0].clone();
    assert!(
        !atts[0]
            .run(Some(node.ns.name()), "CHECK", &with_prev, "")
            .ok
    );
}

#[test]
fn twenty_parallel_adds_then_twenty_parallel_dels() {
    let Some(node) = Node::start("twenty_parallel_adds_then_twenty_parallel_dels", "par") else {
        return;
    };
    const N: usize = 20;
    let conf = node.conf("172.16.1.100", "172.16.1.199");
    let pods: Vec<Netns> = (0..N)
        .map(|i| Netns::new(&unique(&format!("p{i}"))).expect("pod ns"))
        .collect();
    let atts: Vec<Attach> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| node.attach(&format!("par{i:02}-{}", std::process::id()), p))
        .collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = atts
            .iter()
            .map(|a| s.spawn(|| a.run(Some(node.ns.name()), "ADD", &conf, "")))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let out = h.join().expect("ADD thread");
                assert!(out.ok, "parallel ADD: {out:?}\n{}", node.daemon.log());
                out.json()
            })
            .collect()
    });
    let ips: BTreeSet<String> = results.iter().map(address).collect();
    assert_eq!(ips.len(), N, "duplicate addresses: {ips:?}");
    let listed = node.pods();
    assert_eq!(listed.len(), N, "{listed:?}");
    let names: BTreeSet<&str> = listed.iter().map(|l| l[0].as_str()).collect();
    let want: BTreeSet<String> = atts.iter().map(|a| format!("{}:eth0", a.id)).collect();
    assert_eq!(names, want.iter().map(String::as_str).collect());
    let listed_ips: BTreeSet<String> = listed.iter().map(|l| l[2].clone()).collect();
    assert_eq!(listed_ips, ips);
    assert_eq!(host_ends(node.ns.name()).len(), N);
    // The first and the last pod reach each other through the switch.
    let (ok, text) = ping_all(pods[0].name(), &address(&results[N - 1]), 3);
    assert!(ok, "pod 0 -> pod {}: {text}", N - 1);

    std::thread::scope(|s| {
        let handles: Vec<_> = atts
            .iter()
            .map(|a| s.spawn(|| a.run(Some(node.ns.name()), "DEL", &conf, "")))
            .collect();
        for h in handles {
            h.join().expect("DEL thread").assert_ok("parallel DEL");
        }
    });
    node.assert_clean("after the parallel DELs");
}

#[test]
fn failed_adds_leave_nothing_behind() {
    let Some(node) = Node::start("failed_adds_leave_nothing_behind", "fail") else {
        return;
    };
    // One address to hand out.
    let conf = node.conf("172.16.1.60", "172.16.1.60");
    let pods: Vec<Netns> = (0..4)
        .map(|i| Netns::new(&unique(&format!("f{i}"))).expect("pod ns"))
        .collect();
    let atts: Vec<Attach> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| node.attach(&format!("fail{i}-{}", std::process::id()), p))
        .collect();
    let no_eth0 = |i: usize| {
        assert!(
            !ns_sh(pods[i].name(), "ip -o link show").contains("eth0"),
            "container {i} kept an eth0"
        )
    };

    atts[0]
        .run(Some(node.ns.name()), "ADD", &conf, "")
        .assert_ok("ADD");
    // IPAM exhausted.
    let out = atts[1].run(Some(node.ns.name()), "ADD", &conf, "");
    assert!(!out.ok, "ADD with no address left succeeded");
    out.code();
    no_eth0(1);
    assert_eq!(node.pods().len(), 1);
    assert_eq!(host_ends(node.ns.name()).len(), 1);
    atts[0]
        .run(Some(node.ns.name()), "DEL", &conf, "")
        .assert_ok("DEL");
    node.assert_clean("after the exhausted ADD");

    // A multicast MAC: the kernel refuses it after IPAM allocated the address.
    let out = atts[2].run(
        Some(node.ns.name()),
        "ADD",
        &conf,
        "IgnoreUnknown=1;MAC=01:00:5e:00:00:01",
    );
    assert_eq!(out.code(), 100, "{out:?}");
    no_eth0(2);
    node.assert_clean("after the refused MAC");

    // The gateway's MAC: vswitchd refuses the pod after the veth was configured.
    let out = atts[3].run(
        Some(node.ns.name()),
        "ADD",
        &conf,
        &format!("IgnoreUnknown=1;MAC={GW_MAC}"),
    );
    assert_eq!(out.code(), 101, "{out:?}");
    no_eth0(3);
    node.assert_clean("after the pod vswitchd refused");

    // The address is free again.
    atts[1]
        .run(Some(node.ns.name()), "ADD", &conf, "")
        .assert_ok("ADD after the failures");
    atts[1]
        .run(Some(node.ns.name()), "DEL", &conf, "")
        .assert_ok("DEL");
    node.assert_clean("at the end");
}
