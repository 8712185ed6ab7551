//! `mod-port` and port names in flow text, with the real `ovs-ofctl -O OpenFlow13` beside
//! `vswitchctl` on the same switch: both set a port down/up, no-receive, no-forward, the
//! packets show it (pings between two veth pods in a namespace), both print the same port
//! descriptions, and both refuse what the ports cannot do. Root (namespaces, veth pairs).
//!
//! Without ovs-ofctl the tests print a skip message, unless CI=true (then they fail).

mod common;

use std::path::Path;
use std::process::Output;

use common::ofctl::{have_ofctl, ofctl_at, ofctl_ok_at};
use common::{Node, ping, ping_until, require_root};

/// A switch (bridge br0, NORMAL) with pods A 10.79.0.1 on vethA (ofport 1) and B 10.79.0.2
/// on vethB (ofport 2).
fn node(tag: &str) -> Node {
    let mut node = Node::new(tag);
    node.start_switch_with("br0", &[]);
    node.add_veth_pod(
        &format!("{tag}a"),
        "vethA",
        "10.79.0.1/24",
        "02:00:00:00:79:01",
    );
    node.add_veth_pod(
        &format!("{tag}b"),
        "vethB",
        "10.79.0.2/24",
        "02:00:00:00:79:02",
    );
    let d = node.daemon();
    d.ctl(&["add-port", "br0", "vethA", "ofport=1"]);
    d.ctl(&["add-port", "br0", "vethB", "ofport=2"]);
    assert!(
        ping_until(node.pod(0).name(), "10.79.0.2", 5),
        "no path A -> B at start"
    );
    node
}

fn ofctl(rundir: &Path, cmd: &str, args: &[&str]) -> Output {
    ofctl_at(rundir, &[], cmd, args)
}

fn ofctl_ok(rundir: &Path, cmd: &str, args: &[&str]) -> String {
    ofctl_ok_at(rundir, &[], cmd, args)
}

/// The `config:`/`state:` lines of one port in a `dump-ports-desc`.
fn port_lines(desc: &str, name: &str) -> String {
    let mut lines = desc
        .lines()
        .skip_while(|l| !l.contains(&format!("({name})")));
    let mut out = String::new();
    for l in lines.by_ref().take(5) {
        if l.trim_start().starts_with("config:") || l.trim_start().starts_with("state:") {
            out.push_str(l.trim());
            out.push('\n');
        }
    }
    out
}

#[test]
fn mod_port_down_up_receive_forward_by_both_tools() {
    if !require_root("mod_port_down_up_receive_forward_by_both_tools") || !have_ofctl() {
        return;
    }
    let node = node("ofport");
    let d = node.daemon();
    let a = node.pod(0).name().to_string();
    let desc = || {
        let ours = d.ctl(&["dump-ports-desc", "br0"]);
        let theirs = ofctl_ok(&d.rundir, "dump-ports-desc", &[]);
        assert_eq!(ours, theirs, "dump-ports-desc differs between the tools");
        ours
    };
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     0\nstate:      LIVE\n"
    );

    // Down by ovs-ofctl: nothing crosses, the desc says so, the drops are named.
    ofctl_ok(&d.rundir, "mod-port", &["vethB", "down"]);
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     PORT_DOWN\nstate:      LINK_DOWN\n"
    );
    // The management socket's `show BR` says the same.
    let show = vswitch::mgmt::call_command(
        &d.rundir,
        &vswitch::command::MgmtCommand::Show {
            bridge: Some("br0".into()),
        },
    )
    .expect("management show");
    assert_eq!(
        port_lines(&show.output, "vethB"),
        "config:     PORT_DOWN\nstate:      LINK_DOWN\n",
        "{}",
        show.output
    );
    let before = d.drops("br0", "port_down");
    assert!(
        ping(&a, "10.79.0.2", 3).none_replied(),
        "a down port passed traffic"
    );
    assert!(
        d.drops("br0", "port_down") > before,
        "output to the down port not counted"
    );
    // Up by vswitchctl (by number): traffic again.
    d.ctl(&["mod-port", "br0", "2", "up"]);
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     0\nstate:      LIVE\n"
    );
    assert!(ping_until(&a, "10.79.0.2", 5) && ping(&a, "10.79.0.2", 3).all_replied());

    // no-forward on B: A's requests never leave through it.
    d.ctl(&["mod-port", "br0", "vethB", "no-forward"]);
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     NO_FWD\nstate:      LIVE\n"
    );
    let before = d.drops("br0", "port_no_fwd");
    assert!(ping(&a, "10.79.0.2", 3).none_replied());
    assert!(d.drops("br0", "port_no_fwd") > before);
    ofctl_ok(&d.rundir, "mod-port", &["vethB", "forward"]);
    assert!(ping_until(&a, "10.79.0.2", 5));

    // no-receive on B: B's replies are dropped as they arrive.
    ofctl_ok(&d.rundir, "mod-port", &["vethB", "no-receive"]);
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     NO_RECV\nstate:      LIVE\n"
    );
    let before = d.drops("br0", "port_no_recv");
    assert!(ping(&a, "10.79.0.2", 3).none_replied());
    assert!(d.drops("br0", "port_no_recv") >= before + 3);
    d.ctl(&["mod-port", "br0", "vethB", "receive"]);
    assert!(ping_until(&a, "10.79.0.2", 5) && ping(&a, "10.79.0.2", 3).all_replied());
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     0\nstate:      LIVE\n"
    );
    // The pod's end set down takes the link from the port: both tools say so.
    common::ns_sh(node.pod(1).name(), "ip link set eth0 down");
    assert_eq!(
        port_lines(&desc(), "vethB"),
        "config:     0\nstate:      LINK_DOWN\n"
    );
    common::ns_sh(node.pod(1).name(), "ip link set eth0 up");
}

#[test]
fn mod_port_refusals_read_alike() {
    if !require_root("mod_port_refusals_read_alike") || !have_ofctl() {
        return;
    }
    let node = node("ofprefuse");
    let d = node.daemon();
    // no-packet-in: the switch refuses it, both tools print the same OFPT_ERROR.
    let theirs = ofctl(&d.rundir, "mod-port", &["vethA", "no-packet-in"]);
    assert!(!theirs.status.success());
    let theirs = String::from_utf8_lossy(&theirs.stderr).into_owned();
    assert!(theirs.contains("OFPPMFC_BAD_CONFIG"), "{theirs}");
    let ours = d.ctl_run(&["mod-port", "br0", "vethA", "no-packet-in"]);
    assert!(!ours.ok);
    assert!(
        ours.stderr.contains("OFPPMFC_BAD_CONFIG"),
        "{}",
        ours.stderr
    );
    // OpenFlow 1.0-only settings: vswitchctl says so (ovs-ofctl sends an empty change).
    let r = d.ctl_run(&["mod-port", "br0", "vethA", "no-flood"]);
    assert!(
        !r.ok && r.stderr.contains("OpenFlow 1.0 only"),
        "{}",
        r.stderr
    );
    let r = d.ctl_run(&["mod-port", "br0", "vethA", "sideways"]);
    assert!(
        !r.ok && r.stderr.contains("unknown mod-port command 'sideways'"),
        "{}",
        r.stderr
    );
    let r = d.ctl_run(&["mod-port", "br0", "nosuch", "down"]);
    assert!(!r.ok && r.stderr.contains("nosuch"), "{}", r.stderr);
    // Nothing changed.
    assert!(ping(node.pod(0).name(), "10.79.0.2", 3).all_replied());
}

#[test]
fn port_names_in_flow_text_resolve_as_with_ovs_ofctl() {
    if !require_root("port_names_in_flow_text_resolve_as_with_ovs_ofctl") || !have_ofctl() {
        return;
    }
    let node = node("ofpnames");
    let d = node.daemon();
    // The same flows by name through both tools: the switch holds them by number.
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,in_port=vethA,actions=output:vethB",
    ]);
    ofctl_ok(
        &d.rundir,
        "add-flow",
        &["priority=10,in_port=vethB,actions=vethA"],
    );
    let ours = d.ctl(&["dump-flows", "br0", "--no-stats", "--sort"]);
    let theirs = ofctl_ok(
        &d.rundir,
        "dump-flows",
        &["--no-stats", "--no-names", "--sort"],
    );
    assert_eq!(ours, theirs);
    assert!(
        ours.contains("priority=10,in_port=1 actions=output:2"),
        "{ours}"
    );
    assert!(
        ours.contains("priority=10,in_port=2 actions=output:1"),
        "{ours}"
    );
    assert!(ping_until(node.pod(0).name(), "10.79.0.2", 5));
    // A filter by name, and names in the dump.
    let only_a = d.ctl(&["dump-flows", "br0", "in_port=vethA", "--no-stats"]);
    assert_eq!(only_a, " priority=10,in_port=1 actions=output:2\n");
    let named = d.ctl(&["dump-flows", "br0", "--names", "--no-stats", "--sort"]);
    let theirs = ofctl_ok(
        &d.rundir,
        "dump-flows",
        &["--names", "--no-stats", "--sort"],
    );
    assert_eq!(named, theirs);
    // A name the switch does not have is refused before anything is sent.
    let r = d.ctl_run(&["add-flow", "br0", "in_port=nosuch,actions=drop"]);
    assert!(
        !r.ok && r.stderr.starts_with("vswitchctl: ") && r.stderr.contains("nosuch"),
        "{}",
        r.stderr
    );
    assert_eq!(
        d.ctl(&["dump-flows", "br0", "--no-stats"]).lines().count(),
        2
    );
}

/// `--names` prints ports as ovs-ofctl does: a name that is not a letter followed by letters
/// and digits is quoted, in matches and actions alike (`in_port="aud-v1"`, `output:"aud-v2"`,
/// `resubmit("aud-v1",2)`), and the dump has no `OFPST_FLOW reply` header line.
#[test]
fn names_in_dumps_are_quoted_as_by_ovs_ofctl() {
    if !require_root("names_in_dumps_are_quoted_as_by_ovs_ofctl") || !have_ofctl() {
        return;
    }
    let mut node = Node::new("ofpquote");
    node.start_switch_with("br0", &[]);
    for (i, port) in ["aud-v1", "aud-v2", "plain3"].into_iter().enumerate() {
        node.add_veth_pod(
            &format!("ofpquote{i}"),
            port,
            &format!("10.79.1.{}/24", i + 1),
            &format!("02:00:00:00:79:1{i}"),
        );
    }
    let d = node.daemon();
    for (i, port) in ["aud-v1", "aud-v2", "plain3"].into_iter().enumerate() {
        d.ctl(&["add-port", "br0", port, &format!("ofport={}", i + 1)]);
    }
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,in_port=aud-v1,actions=output:aud-v2,output:plain3",
    ]);
    d.ctl(&[
        "add-flow",
        "br0",
        "table=1,priority=10,in_port=plain3,actions=resubmit(aud-v1,2),output:aud-v2",
    ]);
    let ours = d.ctl(&["dump-flows", "br0", "--names", "--no-stats"]);
    let theirs = ofctl_ok_at(&d.rundir, &["--names", "--no-stats"], "dump-flows", &[]);
    // The tables are unnamed (as Open vSwitch's): both print table numbers.
    assert_eq!(ours, theirs);
    assert!(
        ours.contains(" priority=10,in_port=\"aud-v1\" actions=output:\"aud-v2\",output:plain3\n")
            && ours.contains(
                " table=1, priority=10,in_port=plain3 actions=resubmit(\"aud-v1\",2),output:\"aud-v2\"\n"
            ),
        "{ours}"
    );
    // With statistics too, no header line (ovs-ofctl prints a named dump flow by flow).
    let ours = d.ctl(&["--names", "dump-flows", "br0"]);
    let theirs = ofctl_ok_at(&d.rundir, &["--names"], "dump-flows", &[]);
    assert!(
        ours.starts_with(" cookie=0x0, ") && theirs.starts_with(" cookie=0x0, "),
        "{ours}\n{theirs}"
    );
    assert_eq!(
        ours.lines().count(),
        theirs.lines().count(),
        "{ours}\n{theirs}"
    );
}
