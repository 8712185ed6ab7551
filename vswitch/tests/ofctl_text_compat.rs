//! Flows whose wire form or text differed from Open vSwitch 3.1's (an audit of ~600 flows
//! through both switches), checked with the real `ovs-ofctl -O OpenFlow13` on a vswitchd:
//! `set_field:..->in_port` in flow-stats and group-desc replies, durations, zero values,
//! `nw_frag`, `check_overlap`, `nat`, `write_metadata`, `ip,nw_proto=2`, and a bucket's
//! `set_field:..->tp_dst`. No root needed (a bridge without ports).
//!
//! Without ovs-ofctl the tests print a skip message, unless CI=true (then they fail).

mod common;

use common::ofctl::{Switch, have_ofctl};

/// Flows whose text ovs-ofctl 3.1 prints back unchanged (`dump-flows --no-stats` of Open
/// vSwitch after `add-flows` of this file), in its order.
const FLOWS: &str = "check_overlap priority=7 actions=drop\n\
    priority=5 actions=set_field:0->reg0,set_field:0->metadata,set_field:0->tun_id\n\
    priority=6,ip,nw_frag=no actions=drop\n\
    priority=8,ip actions=ct(commit,nat(src))\n\
    priority=9,ipv6 actions=ct(commit,nat(src=2001:db8::1))\n\
    priority=14,ipv6 actions=ct(commit,nat(dst=[2001:db8::2]:80))\n\
    priority=10 actions=write_metadata:0x1/0\n\
    priority=11,ip,nw_proto=2 actions=drop\n\
    priority=12 actions=set_field:LOCAL->in_port\n\
    priority=13 actions=set_field:3->in_port\n";

fn sorted(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(String::from).collect();
    v.sort();
    v
}

/// What either tool adds, both tools dump identically, and as Open vSwitch dumps it.
#[test]
fn flows_written_by_either_tool_dump_identically() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ofctl-text-compat");
    let f = d.file("flows.txt", FLOWS);
    let want: Vec<String> = sorted(&FLOWS.lines().map(|l| format!(" {l}\n")).collect::<String>());
    for writer in ["ovs-ofctl", "vswitchctl"] {
        d.ctl_ok(&["del-flows", "br0"]);
        if writer == "ovs-ofctl" {
            d.ofctl_ok(&[], "add-flows", &[&f]);
        } else {
            d.ctl_ok(&["add-flows", "br0", &f]);
        }
        // ovs-ofctl decodes the whole reply (one flow it refuses fails the dump).
        let theirs = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
        let ours = d.ctl_ok(&["dump-flows", "br0", "--no-stats"]);
        assert_eq!(
            sorted(&theirs),
            want,
            "{writer} wrote, ovs-ofctl read:\n{theirs}"
        );
        assert_eq!(
            sorted(&ours),
            want,
            "{writer} wrote, vswitchctl read:\n{ours}"
        );
    }
}

/// A group bucket's `set_field:..->in_port` (group-desc reply) and `set_field:..->tp_dst`
/// (which vswitchctl refused: "field tp_dst has no wire form"; ovs-ofctl sends and prints it
/// as `tcp_dst`, Open vSwitch's field of that name).
#[test]
fn bucket_set_fields_reach_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ofctl-text-compat-groups");
    d.ctl_ok(&[
        "add-group",
        "br0",
        "group_id=1,type=all,bucket=actions=set_field:3->in_port,output:1",
    ]);
    d.ctl_ok(&[
        "add-group",
        "br0",
        "group_id=2,type=all,bucket=actions=set_field:80->tp_dst,output:1",
    ]);
    d.ofctl_ok(
        &[],
        "add-group",
        &["group_id=3,type=all,bucket=actions=set_field:80->tp_dst,output:1"],
    );
    let theirs = d.ofctl_ok(&[], "dump-groups", &[]);
    let ours = d.ctl_ok(&["dump-groups", "br0"]);
    assert_eq!(ours, theirs);
    for line in [
        " group_id=1,type=all,bucket=actions=set_field:3->in_port,output:1\n",
        " group_id=2,type=all,bucket=actions=set_field:80->tcp_dst,output:1\n",
        " group_id=3,type=all,bucket=actions=set_field:80->tcp_dst,output:1\n",
    ] {
        assert!(theirs.contains(line), "{line} missing:\n{theirs}");
    }
}

/// The `duration=` values of a dump: ovs-ofctl prints the decimals a reply carries (all nine
/// for nanoseconds), vswitchctl three.
fn durations(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|w| w.strip_prefix("duration="))
        .map(String::from)
        .collect()
}

/// Whole milliseconds: `4s` or `4.135s`.
fn milliseconds(d: &str) -> bool {
    let Some(n) = d.strip_suffix('s') else {
        return false;
    };
    let (sec, frac) = n.split_once('.').unwrap_or((n, "000"));
    !sec.is_empty()
        && sec.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == 3
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Flow-stats durations are whole milliseconds, as Open vSwitch's (`calc_duration`): ovs-ofctl
/// prints `duration=4.135s`, not `4.135166054s`; vswitchctl prints as before.
#[test]
fn flow_durations_are_milliseconds() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ofctl-text-compat-durations");
    for p in 1..=5 {
        d.ctl_ok(&["add-flow", "br0", &format!("priority={p},actions=drop")]);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let theirs = durations(&d.ofctl_ok(&[], "dump-flows", &[]));
    let ours = durations(&d.ctl_ok(&["dump-flows", "br0"]));
    // The five, and the bridge's own flows.
    assert!(theirs.len() >= 5, "{theirs:?}");
    assert_eq!(ours.len(), theirs.len(), "{ours:?}");
    assert!(theirs.iter().all(|d| milliseconds(d)), "{theirs:?}");
    assert!(
        ours.iter().all(|d| milliseconds(d) && d.contains('.')),
        "{ours:?}"
    );
}

/// Port-stats durations too (root: a veth port in a namespace of its own).
#[test]
fn port_durations_are_milliseconds() {
    if !common::require_root("port_durations_are_milliseconds") || !have_ofctl() {
        return;
    }
    let mut node = common::Node::new("ofdur");
    node.start_switch_with("br0", &[]);
    node.add_veth_pod("ofdura", "vethD", "10.78.0.1/24", "02:00:00:00:78:01");
    let d = node.daemon();
    d.ctl(&["add-port", "br0", "vethD", "ofport=1"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let ports = common::ofctl::ofctl_ok_at(&d.rundir, &[], "dump-ports", &[]);
    let theirs = durations(&ports);
    assert_eq!(theirs.len(), 1, "{ports}");
    assert!(theirs.iter().all(|d| milliseconds(d)), "{ports}");
}
