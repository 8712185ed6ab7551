//! `vswitchctl` as an OpenFlow 1.3 client, checked against the real `ovs-ofctl -O OpenFlow13`
//! on the same switch: what one writes the other reads back identically, both print the same
//! text, and errors read the same. No root needed (bridges without ports).
//!
//! Without ovs-ofctl the tests print a skip message, unless CI=true (then they fail).

mod common;

use std::process::Output;

use common::ofctl::{Switch, have_ofctl, text};

fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Durations masked: two dumps a few ms apart differ only there.
fn mask_durations(text: &str) -> String {
    text.lines()
        .map(|l| {
            l.split([',', ' '])
                .map(|w| {
                    if w.starts_with("duration=") {
                        "duration=T"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join("_")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const FLOWS: &str = "# a mixed flow set\n\
    priority=100,in_port=1,dl_src=00:00:00:00:00:01,actions=output:2\n\
    priority=900,tcp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,table=1,zone=1,nat(dst=10.0.0.5:8080))\n\
    priority=600,dl_vlan=100,actions=pop_vlan,resubmit(,2)\n\
    table=1,priority=100,ct_state=+new+trk,ip,actions=ct(commit,zone=1,nat(src=10.0.0.1:1000-2000)),output:2\n\
    table=2,priority=10,reg0=0x1,metadata=0x5/0xff,actions=group:1\n\
    table=2,cookie=0x1234,idle_timeout=300,priority=5,ip,actions=set_field:00:00:00:00:00:aa->eth_src,dec_ttl,output:3\n\
    table=2,priority=4,in_port=2,actions=push_vlan:0x8100,set_field:4196->vlan_vid,set_field:192.168.0.9->tun_dst,set_field:0x7->tun_id,output:1\n";

const GROUP: &str = "group_id=1,type=select,bucket=weight:100,actions=set_field:10.0.0.1->ip_dst,output:1,bucket=weight:50,actions=output:2";

#[test]
fn ovs_ofctl_writes_vswitchctl_reads_the_same() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let f = d.file("flows.txt", FLOWS);
    d.ofctl_ok(&[], "add-group", &[GROUP]);
    d.ofctl_ok(&[], "add-flows", &[&f]);
    // Every dump, byte for byte (durations aside), header lines included.
    for (cmd, opts) in [
        ("dump-flows", &[][..]),
        ("dump-flows", &["--no-stats"][..]),
        ("dump-aggregate", &[][..]),
        ("dump-groups", &[][..]),
        ("dump-group-stats", &[][..]),
        ("dump-tables", &[][..]),
        ("dump-ports", &[][..]),
        ("dump-ports-desc", &[][..]),
        ("show", &[][..]),
    ] {
        let theirs = d.ofctl_ok(opts, cmd, &[]);
        let mut args = vec![cmd, "br0"];
        args.extend_from_slice(opts);
        let ours = d.ctl_ok(&args);
        assert_eq!(
            mask_durations(&ours),
            mask_durations(&theirs),
            "{cmd} {opts:?}\nvswitchctl:\n{ours}\novs-ofctl:\n{theirs}"
        );
    }
    // A filtered dump.
    let theirs = d.ofctl_ok(&["--no-stats"], "dump-flows", &["table=2,ip"]);
    let ours = d.ctl_ok(&["dump-flows", "br0", "--no-stats", "table=2,ip"]);
    assert_eq!(ours, theirs);
    assert_eq!(ours.lines().count(), 1, "{ours}");
}

/// `dump-tables` byte for byte as ovs-ofctl: runs of equal tables collapse into `table N:
/// ditto` / `tables N...M: ditto` lines, each followed by a blank line when a table comes
/// after it, and no blank line at the very end.
#[test]
fn dump_tables_ditto_runs_read_as_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    for flow in [
        "table=3,priority=1,tcp,actions=drop",
        "table=3,priority=2,udp,actions=drop",
        "table=4,priority=1,tcp,actions=drop",
        "table=4,priority=2,udp,actions=drop",
        "table=9,priority=1,actions=drop",
    ] {
        d.ctl_ok(&["add-flow", "br0", flow]);
    }
    let theirs = d.ofctl_ok(&[], "dump-tables", &[]);
    assert!(
        theirs.contains("  table 2: ditto\n\n  table 3:\n")
            && theirs.contains("  tables 6...8: ditto\n\n  table 9:\n")
            && theirs.ends_with(
                "  table 10:\n    active=0, lookup=0, matched=0\n\n  tables 11...253: ditto\n"
            ),
        "{theirs}"
    );
    assert_eq!(d.ctl_ok(&["dump-tables", "br0"]), theirs);
}

/// Table lookup counters count what the walks looked up: two packets run table 0 (a match
/// that resubmits) and table 1 (no flows: a miss), table 2 is never looked at.
#[test]
fn dump_tables_counts_lookups_and_matches() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    d.ctl_ok(&["del-flows", "br0"]);
    d.ctl_ok(&[
        "add-flow",
        "br0",
        "table=0,priority=10,udp,actions=resubmit(,1)",
    ]);
    d.ctl_ok(&["add-flow", "br0", "table=0,priority=5,actions=drop"]);
    d.packet_out_udp("output:TABLE", 2);
    let theirs = d.ofctl_ok(&[], "dump-tables", &[]);
    assert!(
        theirs.contains(
            "  table 0:\n    active=2, lookup=2, matched=2\n\n  \
             table 1:\n    active=0, lookup=2, matched=0\n\n  \
             table 2:\n    active=0, lookup=0, matched=0\n\n  tables 3...253: ditto\n"
        ),
        "{theirs}"
    );
    assert_eq!(d.ctl_ok(&["dump-tables", "br0"]), theirs);
}

#[test]
fn vswitchctl_writes_ovs_ofctl_reads_the_same() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let f = d.file("flows.txt", FLOWS);
    d.ctl_ok(&["add-group", "br0", GROUP]);
    d.ctl_ok(&["del-flows", "br0"]);
    d.ctl_ok(&["add-flows", "br0", &f]);
    d.ctl_ok(&["add-flow", "br0", "priority=7,arp,actions=NORMAL"]);
    d.ctl_ok(&["mod-flows", "br0", "arp,actions=output:3"]);
    d.ctl_ok(&["--strict", "del-flows", "br0", "priority=600,dl_vlan=100"]);
    let theirs = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert_eq!(theirs.lines().count(), 7, "{theirs}");
    assert!(
        theirs.contains(" priority=7,arp actions=output:3\n"),
        "{theirs}"
    );
    assert!(!theirs.contains("dl_vlan"), "{theirs}");
    // ovs-ofctl's reading equals the file we wrote.
    let out = d.ofctl(&[], "diff-flows", &[&f]);
    let mut diff: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    diff.sort();
    assert_eq!(
        diff,
        [
            "+priority=600,dl_vlan=100 actions=pop_vlan,resubmit(,2)",
            "-priority=7,arp actions=output:3"
        ]
    );
    let groups = d.ofctl_ok(&[], "dump-groups", &[]);
    assert_eq!(groups, d.ctl_ok(&["dump-groups", "br0"]));
    assert!(
        groups.contains(" group_id=1,type=select,bucket=weight:100,"),
        "{groups}"
    );
    d.ctl_ok(&["del-groups", "br0", "group_id=1"]);
    assert!(!d.ofctl_ok(&[], "dump-groups", &[]).contains("group_id=1"));
}

#[test]
fn unix_and_tcp_targets() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start_with("cli-ofctl", true);
    let tcp = format!("tcp:127.0.0.1:{}", d.tcp_port.unwrap());
    let unix = d.target();
    d.ctl_ok(&["add-flow", &unix, "priority=3,udp,actions=drop"]);
    d.ctl_ok(&["add-flow", &tcp, "priority=4,icmp,actions=NORMAL"]);
    let via_unix = d.ctl_ok(&["dump-flows", &unix, "--no-stats"]);
    let via_tcp = d.ctl_ok(&["--no-stats", "dump-flows", &tcp]);
    let via_name = d.ctl_ok(&["dump-flows", "br0", "--no-stats"]);
    assert_eq!(via_unix, via_tcp);
    assert_eq!(via_unix, via_name);
    assert_eq!(
        via_unix,
        " priority=4,icmp actions=NORMAL\n priority=3,udp actions=drop\n priority=0 actions=NORMAL\n"
    );
    // A bridge that does not exist: a clear error, exit 1.
    let out = d.ctl(&["dump-flows", "nobr"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("vswitchctl: unix:") && err.contains("nobr.mgmt: cannot connect"),
        "{err}"
    );
}

#[test]
fn diff_flows_exit_codes_and_text() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let want = d.file(
        "want.txt",
        "priority=7,tcp,tp_dst=80,actions=drop\ntable=1,cookie=0x9,priority=8,udp,actions=NORMAL\n",
    );
    let ours = d.ctl(&["diff-flows", "br0", &want]);
    let theirs = d.ofctl(&[], "diff-flows", &[&want]);
    assert_eq!(ours.status.code(), Some(2), "differences exit 2");
    assert_eq!(theirs.status.code(), Some(2));
    let sorted = |o: &Output| {
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&ours), sorted(&theirs));
    assert_eq!(sorted(&ours).len(), 3, "{:?}", sorted(&ours));

    d.ctl_ok(&["replace-flows", "br0", &want]);
    let out = d.ctl(&["diff-flows", "br0", &want]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    assert!(d.ofctl(&[], "diff-flows", &[&want]).status.success());
    // Two files.
    let other = d.file("other.txt", "priority=7,tcp,tp_dst=80,actions=drop\n");
    let out = d.ctl(&["diff-flows", &want, &other]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-table=1 priority=8,udp cookie=0x9 actions=NORMAL\n"
    );
}

#[test]
fn bundle_applies_all_or_nothing() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let good = d.file(
        "good.txt",
        "priority=7,tcp,actions=drop\npriority=8,udp,actions=NORMAL\n",
    );
    d.ctl_ok(&["--bundle", "add-flows", "br0", &good]);
    let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert!(
        dump.contains("priority=7,tcp") && dump.contains("priority=8,udp"),
        "{dump}"
    );

    let bad = d.file(
        "bad.txt",
        "priority=20,icmp,actions=drop\npriority=21,actions=group:77\n",
    );
    let out = d.ctl(&["add-flows", "br0", &bad, "--bundle"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("OFPBAC_BAD_OUT_GROUP")
            && err.contains("OFPT_FLOW_MOD (OF1.3) (xid=0x7): ADD priority=21 actions=group:77"),
        "{err}"
    );
    let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert!(
        !dump.contains("icmp"),
        "a failed bundle must change nothing: {dump}"
    );
    // A line that does not parse, far into a bundled file: the bundle is discarded.
    let mut text_in = String::new();
    for i in 0..3000 {
        text_in.push_str(&format!(
            "priority=30,udp,tp_dst={},actions=drop\n",
            1000 + i
        ));
    }
    text_in.push_str("priority=31,nw_dts=1.2.3.4,actions=drop\n");
    let unparsable = d.file("unparsable.txt", &text_in);
    let out = d.ctl(&["--bundle", "add-flows", "br0", &unparsable]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("vswitchctl: line 3001: "),
        "{}",
        stderr(&out)
    );
    let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert!(
        !dump.contains("priority=30"),
        "a discarded bundle must change nothing: {dump}"
    );
    // Without --bundle a file is parsed whole (on several threads past 4096 lines) before
    // anything is sent: the first bad line, by number, is reported and nothing changes.
    let mut text_in = String::new();
    for i in 0..6000 {
        if i == 1000 || i == 5000 {
            text_in.push_str("priority=41,tp_dst=80,actions=drop\n");
        } else {
            text_in.push_str(&format!("priority=40,udp,tp_dst={i},actions=drop\n"));
        }
    }
    let big_bad = d.file("big-bad.txt", &text_in);
    for bundle in [false, true] {
        let out = if bundle {
            d.ctl(&["--bundle", "add-flows", "br0", &big_bad])
        } else {
            d.ctl(&["add-flows", "br0", &big_bad])
        };
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).starts_with("vswitchctl: line 1001: "),
            "bundle {bundle}: {}",
            stderr(&out)
        );
        let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
        assert!(
            !dump.contains("priority=40"),
            "bundle {bundle}: a file with a bad line must change nothing: {dump}"
        );
    }
    // Without --bundle the good line of the same file is applied, the bad one refused.
    let out = d.ctl(&["add-flows", "br0", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert!(dump.contains("priority=20,icmp"), "{dump}");
}

#[test]
fn errors_read_like_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    // A flow pointing at a missing group: the switch's OFPT_ERROR, decoded identically.
    let ours = d.ctl(&["add-flow", "br0", "in_port=1,actions=group:99"]);
    let theirs = d.ofctl(&[], "add-flow", &["in_port=1,actions=group:99"]);
    assert_eq!(ours.status.code(), Some(1));
    assert_eq!(stderr(&ours), stderr(&theirs));
    assert_eq!(
        stderr(&ours),
        "OFPT_ERROR (OF1.3) (xid=0x6): OFPBAC_BAD_OUT_GROUP\n\
         OFPT_FLOW_MOD (OF1.3) (xid=0x6): ADD in_port=1 actions=group:99\n"
    );
    // A group added twice: OFPGMFC_GROUP_EXISTS.
    d.ctl_ok(&["add-group", "br0", "group_id=5,type=all,bucket=output:1"]);
    let ours = d.ctl(&["add-group", "br0", "group_id=5,type=all,bucket=output:1"]);
    let theirs = d.ofctl(&[], "add-group", &["group_id=5,type=all,bucket=output:1"]);
    assert_eq!(ours.status.code(), Some(1));
    assert_eq!(theirs.status.code(), Some(1));
    let first = |o: &Output| stderr(o).lines().next().unwrap_or_default().to_string();
    assert_eq!(first(&ours), first(&theirs));
    assert_eq!(
        first(&ours),
        "OFPT_ERROR (OF1.3) (xid=0x6): OFPGMFC_GROUP_EXISTS"
    );
    // Bad flow text never reaches the switch.
    let out = d.ctl(&["add-flow", "br0", "priority=1,nw_dts=1.2.3.4,actions=drop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("vswitchctl: "), "{}", stderr(&out));
}

/// Actions inconsistent with the flow's match: ovs-ofctl refuses them before sending (its
/// `ofpacts_check` is the one ovs-vswitchd runs on a flow-mod); vswitchctl sends them and the
/// switch answers what ovs-vswitchd answers, installing nothing.
#[test]
fn inconsistent_actions_refused_like_open_vswitch() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let before = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    for (flow, error) in [
        (
            "ip,actions=set_field:80->tcp_dst",
            "OFPBAC_MATCH_INCONSISTENT",
        ),
        (
            "actions=load:1->NXM_OF_TCP_DST[]",
            "OFPBAC_MATCH_INCONSISTENT",
        ),
        ("arp,actions=dec_ttl", "OFPBAC_MATCH_INCONSISTENT"),
        ("ip,actions=pop_vlan", "OFPBAC_MATCH_INCONSISTENT"),
        ("arp,actions=ct(commit)", "OFPBAC_MATCH_INCONSISTENT"),
        (
            "dl_vlan=5,actions=push_vlan:0x8100,push_vlan:0x8100",
            "OFPBAC_BAD_TAG",
        ),
    ] {
        let theirs = d.ofctl(&[], "add-flow", &[flow]);
        assert_eq!(theirs.status.code(), Some(1), "{flow}");
        let t = stderr(&theirs);
        // The kinds only OpenFlow 1.0 allows: ovs-ofctl finds no 1.3 flow format for them
        // (a 1.3 switch answers MATCH_INCONSISTENT).
        let only_of10 = t.contains("none of the usable flow formats (OpenFlow10,NXM)");
        assert!(
            t.contains(error) || (only_of10 && error == "OFPBAC_MATCH_INCONSISTENT"),
            "{flow}: ovs-ofctl said {t}"
        );
        let ours = d.ctl(&["add-flow", "br0", flow]);
        assert_eq!(ours.status.code(), Some(1), "{flow}");
        let first = stderr(&ours).lines().next().unwrap_or_default().to_string();
        assert_eq!(
            first,
            format!("OFPT_ERROR (OF1.3) (xid=0x6): {error}"),
            "{flow}"
        );
    }
    // Nothing was installed; the consistent forms are.
    assert_eq!(d.ofctl_ok(&["--no-stats"], "dump-flows", &[]), before);
    d.ctl_ok(&["add-flow", "br0", "tcp,actions=set_field:80->tcp_dst"]);
    d.ctl_ok(&["add-flow", "br0", "dl_vlan=5,actions=pop_vlan"]);
    let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert_eq!(dump.lines().count(), before.lines().count() + 2, "{dump}");
}

/// A packet-out's actions are checked against the packet, as Open vSwitch does: the
/// errors ovs-ofctl printed against ovs-vswitchd 3.1 for the same requests.
#[test]
fn packet_out_actions_checked_against_the_packet() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let packet = "020000000002020000000001080045000024000100004011f9c60a0000010a00000203e80035001000006869206865726520";
    let decoded = "udp,vlan_tci=0x0000,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_tos=0,nw_ecn=0,nw_ttl=64,nw_frag=no,tp_src=1000,tp_dst=53 udp_csum:0\n";
    for (actions, error) in [
        ("set_field:80->tcp_dst", "OFPBAC_MATCH_INCONSISTENT"),
        ("pop_vlan", "OFPBAC_MATCH_INCONSISTENT"),
        (
            "push_vlan:0x8100,push_vlan:0x8100,push_vlan:0x8100",
            "OFPBAC_BAD_TAG",
        ),
    ] {
        let out = d.ofctl(
            &[],
            "packet-out",
            &[&format!("in_port=1 packet={packet} actions={actions}")],
        );
        assert_eq!(out.status.code(), Some(1), "{actions}");
        assert_eq!(
            stderr(&out),
            format!(
                "OFPT_ERROR (OF1.3) (xid=0x6): {error}\n\
                 OFPT_PACKET_OUT (OF1.3) (xid=0x6): in_port=1 actions={actions} data_len=50\n\
                 {decoded}"
            ),
            "{actions}"
        );
        // vswitchctl prints the refused packet-out as ovs-ofctl does, packet included.
        let ours = d.ctl(&["packet-out", "br0", "1", actions, packet]);
        assert_eq!(ours.status.code(), Some(1), "{actions}");
        assert_eq!(stderr(&ours), stderr(&out), "{actions}");
    }
    // The consistent form goes through.
    d.ofctl_ok(
        &[],
        "packet-out",
        &[&format!(
            "in_port=1 packet={packet} actions=set_field:80->udp_dst,output:1"
        )],
    );
}

#[test]
fn packet_out_and_names() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let frame =
        "0001020304050a0b0c0d0e0f08004500001c000100004011f9ce0a0000010a000002003500350008ffff";
    // output:TABLE runs the bridge's own table 0: the default NORMAL flow counts it.
    d.ctl_ok(&["packet-out", "br0", "CONTROLLER", "TABLE", frame]);
    let dump = d.ctl_ok(&["dump-flows", "br0"]);
    assert!(
        dump.contains("n_packets=1, n_bytes=42, priority=0 actions=NORMAL"),
        "{dump}"
    );
    // Management commands still go to the management socket.
    assert_eq!(d.ctl_ok(&["list-br"]), "br0\n");
    let names = d.ctl_ok(&["dump-flows", "br0", "--names", "--no-stats"]);
    // The tables are unnamed (as Open vSwitch's), so ovs-ofctl prints numbers, as vswitchctl.
    let theirs = d.ofctl_ok(&["--names", "--no-stats"], "dump-flows", &[]);
    assert_eq!(names, theirs);
}

#[test]
fn desc_and_group_features_print_as_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    for cmd in ["dump-desc", "dump-group-features"] {
        let ours = d.ctl_ok(&[cmd, "br0"]);
        let theirs = d.ofctl_ok(&[], cmd, &[]);
        assert_eq!(ours, theirs, "{cmd}");
    }
    let desc = d.ctl_ok(&["dump-desc", "br0"]);
    assert!(
        desc.starts_with("OFPST_DESC reply (OF1.3) (xid=0x2):\n"),
        "{desc}"
    );
    assert!(desc.ends_with("DP Description: br0\n"), "{desc}");
    let gf = d.ctl_ok(&["dump-group-features", "br0"]);
    for t in ["all", "select", "indirect", "fast failover"] {
        assert!(gf.contains(&format!("    {t} group:\n")), "{gf}");
    }
}

#[test]
fn sort_and_rsort_order_flows_as_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let flows = "priority=5,ip,nw_src=10.0.0.3,actions=drop\n\
        priority=7,ip,nw_src=10.0.0.1,actions=drop\n\
        priority=9,tcp,tp_dst=80,actions=drop\n\
        priority=3,ip,nw_src=10.0.0.2/31,actions=drop\n\
        priority=8,in_port=3,actions=drop\n\
        priority=6,in_port=1,ip,nw_src=10.0.0.9,actions=drop\n\
        table=1,priority=4,reg0=0x7,actions=drop\n";
    let file = d.file("sort.flows", flows);
    d.ctl_ok(&["add-flows", "br0", &file]);
    // Priorities are distinct, so a sort that ends in priority has no ties: same text. A
    // field alone leaves the flows without it tied, in an order ovs-ofctl leaves to qsort:
    // the flows with the field must come first in the same order, then the same others.
    let cases: [(&[&str], Option<&str>); 10] = [
        (&["--sort"], None),
        (&["--rsort"], None),
        (&["--sort=priority"], None),
        (&["--sort=nw_src"], Some("nw_src=")),
        (&["--rsort=nw_src"], Some("nw_src=")),
        (&["--sort=in_port"], Some("in_port=")),
        (&["--rsort=tp_dst"], Some("tp_dst=")),
        (&["--sort=reg0"], Some("reg0=")),
        (&["--sort=in_port", "--rsort=priority"], None),
        (&["--rsort=nw_src", "--sort=priority"], None),
    ];
    for (opts, field) in cases {
        let mut ours_args = vec!["dump-flows", "br0"];
        ours_args.extend_from_slice(opts);
        let ours = mask_durations(&d.ctl_ok(&ours_args));
        let theirs = mask_durations(&d.ofctl_ok(opts, "dump-flows", &[]));
        match field {
            None => assert_eq!(ours, theirs, "{opts:?}"),
            Some(f) => {
                let split = |t: &str| -> (Vec<String>, Vec<String>) {
                    let lines: Vec<String> = t.lines().map(String::from).collect();
                    let n = lines.iter().take_while(|l| l.contains(f)).count();
                    assert!(lines[n..].iter().all(|l| !l.contains(f)), "{opts:?}: {t}");
                    let (with, mut rest) = (lines[..n].to_vec(), lines[n..].to_vec());
                    rest.sort();
                    (with, rest)
                };
                let (ours_with, ours_rest) = split(&ours);
                assert!(!ours_with.is_empty(), "{opts:?}: no flow has {f}");
                assert_eq!((ours_with, ours_rest), split(&theirs), "{opts:?}");
            }
        }
        // Flags before the command too.
        let mut before: Vec<&str> = opts.to_vec();
        before.extend(["dump-flows", "br0"]);
        assert_eq!(mask_durations(&d.ctl_ok(&before)), ours, "{opts:?}");
    }
    let sorted = d.ctl_ok(&["dump-flows", "br0", "--rsort", "--no-stats"]);
    let prios: Vec<&str> = sorted
        .lines()
        .map(|l| {
            l.split("priority=")
                .nth(1)
                .unwrap()
                .split([',', ' '])
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(prios, ["9", "8", "7", "6", "5", "4", "3", "0"]);
    let bad = d.ctl(&["dump-flows", "br0", "--sort=nw_sorc"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("nw_sorc: unknown field"),
        "{}",
        stderr(&bad)
    );
}

/// Flow and group files read as ovs-ofctl reads them (`ds_get_preprocessed_line`): a `#`
/// anywhere in a line starts a comment, blank and comment-only lines are skipped, and a
/// trailing backslash joins nothing (both refuse the line). The same file through either tool
/// installs the same flows, and `replace-flows`, `diff-flows` and `add-groups` read it alike.
#[test]
fn flow_files_with_comments_read_as_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    let flows = "# full-line comment\n\
        priority=10,ip,nw_dst=10.0.0.1,actions=output:1 # a trailing comment\n\
        \n\
        \t  \n\
        table=1,priority=20,tcp,tp_dst=80 actions=drop#no space before it\n   \
        # an indented comment\n\
        priority=30,arp,actions=NORMAL\n";
    let f = d.file("commented.txt", flows);
    d.ofctl_ok(&[], "del-flows", &[]);
    d.ofctl_ok(&[], "add-flows", &[&f]);
    let theirs = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert_eq!(theirs.lines().count(), 3, "{theirs}");
    d.ctl_ok(&["del-flows", "br0"]);
    d.ctl_ok(&["add-flows", "br0", &f]);
    assert_eq!(d.ofctl_ok(&["--no-stats"], "dump-flows", &[]), theirs);
    // Bundled: the same reader.
    d.ctl_ok(&["del-flows", "br0"]);
    d.ctl_ok(&["--bundle", "add-flows", "br0", &f]);
    assert_eq!(d.ofctl_ok(&["--no-stats"], "dump-flows", &[]), theirs);
    // diff-flows against the switch: nothing differs; replace-flows changes nothing.
    let out = d.ctl(&["diff-flows", &f, "br0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "");
    d.ctl_ok(&["add-flow", "br0", "priority=99,udp,actions=drop"]);
    d.ctl_ok(&["replace-flows", "br0", &f]);
    assert_eq!(d.ofctl_ok(&["--no-stats"], "dump-flows", &[]), theirs);
    // Groups: the same reading.
    let groups = d.file(
        "groups.txt",
        "# groups\ngroup_id=1,type=all,bucket=output:1 # first\n\n\
         group_id=2,type=all,bucket=output:2\n",
    );
    d.ofctl_ok(&[], "add-groups", &[&groups]);
    let theirs = d.ofctl_ok(&[], "dump-groups", &[]);
    d.ctl_ok(&["del-groups", "br0"]);
    d.ctl_ok(&["add-groups", "br0", &groups]);
    assert_eq!(d.ofctl_ok(&[], "dump-groups", &[]), theirs);
    assert!(theirs.contains("group_id=2"), "{theirs}");
    // A trailing backslash continues nothing: ovs-ofctl refuses the line, and so do we.
    let cont = d.file(
        "continued.txt",
        "priority=5,ip,\\\nnw_src=1.2.3.4,actions=drop\n",
    );
    let theirs = d.ofctl(&[], "add-flows", &[&cont]);
    let ours = d.ctl(&["add-flows", "br0", &cont]);
    assert_eq!(theirs.status.code(), Some(1), "{}", stderr(&theirs));
    assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
}

/// Keywords ovs-ofctl does not take in a dump or delete match (`parse_ofp_str__`'s fields:
/// no priority unless strict, no timeouts, no flags, no actions, no cookie without a mask) and
/// `out_port` in a modify: refused with ovs-ofctl's message and exit code 1, never ignored.
#[test]
fn dump_and_delete_matches_refuse_what_ovs_ofctl_refuses() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-ofctl");
    d.ctl_ok(&["add-flow", "br0", "priority=100,ip,actions=drop"]);
    d.ctl_ok(&["add-flow", "br0", "priority=50,arp,actions=drop"]);
    let before = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    let message = |o: &Output| {
        let e = stderr(o);
        let e = e.trim_end();
        e.strip_prefix("ovs-ofctl: ")
            .or_else(|| e.strip_prefix("vswitchctl: "))
            .unwrap_or(e)
            .to_string()
    };
    for (opts, cmd, arg, want) in [
        (
            &[][..],
            "dump-flows",
            "priority=100",
            "unknown keyword priority",
        ),
        (
            &[][..],
            "dump-flows",
            "ip,priority=100",
            "unknown keyword priority",
        ),
        (
            &[][..],
            "dump-flows",
            "idle_timeout=5",
            "unknown keyword idle_timeout",
        ),
        (
            &[][..],
            "dump-flows",
            "hard_timeout=5",
            "unknown keyword hard_timeout",
        ),
        (
            &[][..],
            "dump-flows",
            "actions=drop",
            "unknown keyword actions",
        ),
        (
            &[][..],
            "dump-flows",
            "send_flow_rem",
            "field send_flow_rem missing value",
        ),
        (
            &[][..],
            "dump-flows",
            "cookie=5",
            "cannot set cookie (to match on a cookie, specify a mask, e.g. cookie=5/-1)",
        ),
        (
            &[][..],
            "dump-aggregate",
            "priority=100",
            "unknown keyword priority",
        ),
        (
            &[][..],
            "del-flows",
            "priority=100",
            "unknown keyword priority",
        ),
        (
            &[][..],
            "del-flows",
            "idle_timeout=5",
            "unknown keyword idle_timeout",
        ),
        (
            &[][..],
            "del-flows",
            "ip,actions=drop",
            "unknown keyword actions",
        ),
        (
            &["--strict"][..],
            "del-flows",
            "priority=100,hard_timeout=1",
            "unknown keyword hard_timeout",
        ),
        (
            &["--strict"][..],
            "del-flows",
            "priority=100,ip,actions=drop",
            "unknown keyword actions",
        ),
        (
            &[][..],
            "mod-flows",
            "out_port=1,actions=drop",
            "unknown keyword out_port",
        ),
        (
            &[][..],
            "add-flow",
            "out_port=1,actions=drop",
            "unknown keyword out_port",
        ),
        (
            &["--strict"][..],
            "mod-flows",
            "out_group=1,actions=drop",
            "unknown keyword out_group",
        ),
    ] {
        let theirs = d.ofctl(opts, cmd, &[arg]);
        let mut args = opts.to_vec();
        args.extend([cmd, "br0", arg]);
        let ours = d.ctl(&args);
        assert_eq!(theirs.status.code(), Some(1), "ovs-ofctl {cmd} {arg}");
        assert_eq!(ours.status.code(), Some(1), "vswitchctl {cmd} {arg}");
        assert_eq!(message(&theirs), want, "ovs-ofctl {cmd} {arg}");
        assert_eq!(message(&ours), want, "vswitchctl {cmd} {arg}");
        assert_eq!(text(&ours.stdout), "", "vswitchctl {cmd} {arg}");
    }
    // Nothing was deleted or modified.
    assert_eq!(d.ofctl_ok(&["--no-stats"], "dump-flows", &[]), before);
    // The mask ovs-ofctl's message suggests works in both.
    assert_eq!(
        d.ctl_ok(&["dump-flows", "br0", "--no-stats", "cookie=0/-1"]),
        d.ofctl_ok(&["--no-stats"], "dump-flows", &["cookie=0/-1"])
    );
    // With --strict, priority is part of the match; mod-flows takes it.
    d.ctl_ok(&["mod-flows", "br0", "priority=1,arp,actions=NORMAL"]);
    d.ctl_ok(&["--strict", "del-flows", "br0", "priority=100,ip"]);
    let after = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    assert!(!after.contains("priority=100"), "{after}");
    assert!(after.contains(" priority=50,arp actions=NORMAL"), "{after}");
}

/// "No VLAN tag" written either way, by either tool, is one flow, `vlan_tci=0x0000/0x1fff`, as
/// Open vSwitch stores it (before: vswitchctl's `dl_vlan=0xffff` and `vlan_tci=0` made a second
/// flow with the whole TCI masked, which a strict delete from ovs-ofctl did not find).
#[test]
fn no_vlan_tag_is_one_flow_from_either_tool() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("cli-novlan");
    d.ctl_ok(&["add-flow", "br0", "dl_vlan=0xffff,actions=output:1"]);
    d.ctl_ok(&["add-flow", "br0", "vlan_tci=0,actions=output:2"]);
    d.ofctl_ok(&[], "add-flow", &["dl_vlan=0xffff,actions=output:3"]);
    d.ofctl_ok(&[], "add-flow", &["vlan_tci=0,actions=output:4"]);
    let dump = d.ofctl_ok(&["--no-stats"], "dump-flows", &[]);
    let flows: Vec<&str> = dump
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("priority=0 "))
        .collect();
    assert_eq!(flows, ["vlan_tci=0x0000/0x1fff actions=output:4"], "{dump}");
    d.ctl_ok(&["--strict", "del-flows", "br0", "dl_vlan=0xffff"]);
    let dump = d.ctl_ok(&["dump-flows", "br0"]);
    assert!(!dump.contains("vlan_tci"), "{dump}");
}
