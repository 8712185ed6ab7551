//! What ovs-vswitchd 3.1 refuses at flow-mod and group-mod time, refused by vswitchd the same
//! way whether the flow comes as text through vswitchctl or over the wire (from ovs-ofctl, or
//! a controller's raw message), with Open vSwitch's error type and code, and nothing
//! installed: what vswitchd accepts must be something ovs-ofctl can decode in a dump. Also
//! what Open vSwitch accepts and this switch refused (ARP fields on RARP, an empty action
//! list).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Output;
use std::time::Duration;

use common::ofctl::{Switch, have_ofctl, text};
use openflow::{Message, convert, decode, encode};

fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// The `OFPT_ERROR` line vswitchctl or ovs-ofctl printed, from its `: ` on (`: OFPBAC_..`).
fn error_name(o: &Output) -> Option<String> {
    stderr(o)
        .lines()
        .find(|l| l.starts_with("OFPT_ERROR"))
        .and_then(|l| l.split_once("): "))
        .map(|(_, e)| e.to_string())
}

fn read_msg(s: &mut UnixStream) -> Vec<u8> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).expect("a message header");
    let len = u16::from_be_bytes([h[2], h[3]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(8)];
    s.read_exact(&mut body).expect("a message body");
    let mut m = h.to_vec();
    m.extend(body);
    m
}

/// Sends `msg` over a raw OpenFlow 1.3 connection to br0, then a barrier: the switch's error
/// (type, code) when it refused the message, `None` when the barrier answered first.
fn raw(d: &Switch, msg: Message) -> Option<(u16, u16)> {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    read_msg(&mut s);
    s.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    s.write_all(&encode(&msg, 2).unwrap()).unwrap();
    s.write_all(&encode(&Message::BarrierRequest, 3).unwrap())
        .unwrap();
    loop {
        match decode(&read_msg(&mut s))
            .expect("a message the switch sent")
            .1
        {
            Message::Error(e) => return Some((e.err_type, e.code)),
            Message::BarrierReply => return None,
            _ => {}
        }
    }
}

/// `flow` (text) as a raw FLOW_MOD ADD: what a controller sends when its own library does not
/// check what ovs-ofctl checks before sending.
fn raw_flow(d: &Switch, flow: &str) -> Option<(u16, u16)> {
    let fm = flowtable::text::parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    raw(d, Message::FlowMod(convert::flow_mod_out(&fm).unwrap()))
}

fn raw_group(d: &Switch, group: &str) -> Option<(u16, u16)> {
    let gm = flowtable::text::parse_group_mod(group, flowtable::group::GroupModCommand::Add)
        .unwrap_or_else(|e| panic!("{group}: {e}"));
    raw(d, Message::GroupMod(convert::group_mod_out(&gm).unwrap()))
}

/// Flows and groups as ovs-ofctl dumps them (it must be able to decode the replies).
fn dumps(d: &Switch) -> (String, String) {
    (
        d.ofctl_ok(&["--no-stats"], "dump-flows", &[]),
        d.ofctl_ok(&[], "dump-groups", &[]),
    )
}

/// A `ct` without `commit` may hold only a plain `nat` (it un-NATs connections NATed before):
/// with a NAT range or `exec(..)` Open vSwitch refuses it, OFPBAC_BAD_ARGUMENT ("CT action
/// requires commit flag if actions other than NAT without arguments are specified"). Before,
/// this switch installed it and `ovs-ofctl dump-flows` could not decode the whole reply.
#[test]
fn ct_without_commit_refused_like_open_vswitch() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ovs-refusals");
    let before = dumps(&d);
    for flow in [
        "ip,actions=ct(table=1,nat(src=10.0.0.1))",
        "ip,actions=ct(nat(dst=10.0.0.2:80))",
        "ip,actions=ct(exec(set_field:0x1->ct_mark))",
    ] {
        let theirs = d.ofctl(&[], "add-flow", &[flow]);
        assert_eq!(theirs.status.code(), Some(1), "{flow}");
        assert_eq!(
            error_name(&theirs).as_deref(),
            Some("OFPBAC_BAD_ARGUMENT"),
            "{flow}: {}",
            stderr(&theirs)
        );
        let ours = d.ctl(&["add-flow", "br0", flow]);
        assert_eq!(ours.status.code(), Some(1), "{flow}");
        assert_eq!(
            error_name(&ours).as_deref(),
            Some("OFPBAC_BAD_ARGUMENT"),
            "{flow}: {}",
            stderr(&ours)
        );
    }
    for group in [
        "group_id=1,type=all,bucket=actions=ct(table=1,nat(src=10.0.0.1))",
        "group_id=2,type=select,bucket=actions=ct(exec(set_field:0x1->ct_mark))",
    ] {
        for out in [
            d.ofctl(&[], "add-group", &[group]),
            d.ctl(&["add-group", "br0", group]),
        ] {
            assert_eq!(out.status.code(), Some(1), "{group}");
            assert_eq!(
                error_name(&out).as_deref(),
                Some("OFPBAC_BAD_ARGUMENT"),
                "{group}: {}",
                stderr(&out)
            );
        }
    }
    assert_eq!(dumps(&d), before, "nothing installed");
    // A plain nat, or a commit, is fine; ovs-ofctl reads the dump.
    d.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=3,ip,actions=ct(table=1,zone=5,nat)",
    ]);
    d.ofctl_ok(&[], "add-flow", &["priority=4,ip,actions=ct(nat)"]);
    d.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=5,ip,actions=ct(commit,nat(src=10.0.0.1),exec(set_field:0x1->ct_mark))",
    ]);
    d.ctl_ok(&[
        "add-group",
        "br0",
        "group_id=3,type=all,bucket=actions=ct(table=1,nat)",
    ]);
    let (flows, groups) = dumps(&d);
    assert!(
        flows.contains("ip actions=ct(table=1,zone=5,nat)"),
        "{flows}"
    );
    assert!(flows.contains("ip actions=ct(nat)"), "{flows}");
    assert!(
        flows.contains("ip actions=ct(commit,nat(src=10.0.0.1),exec(set_field:0x1->ct_mark))"),
        "{flows}"
    );
    assert!(
        groups.contains("bucket=actions=ct(table=1,nat)"),
        "{groups}"
    );
}

/// `ct_mark` and `ct_label` are set only inside `ct(exec(..))`: a `set_field`, `load` or
/// `move` to one elsewhere (flow, `clone`, group bucket) is OFPBAC_BAD_SET_ARGUMENT ("cannot
/// set CT fields outside of ct action"). ovs-ofctl refuses such text before sending; over the
/// wire (a raw flow-mod) and through vswitchctl the switch refuses it.
#[test]
fn ct_fields_written_outside_ct_refused_like_open_vswitch() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ovs-refusals");
    let before = dumps(&d);
    for flow in [
        "actions=set_field:0x1->ct_mark",
        "actions=load:0x1->NXM_NX_CT_MARK[]",
        "actions=move:NXM_NX_REG0[]->NXM_NX_CT_MARK[]",
        "actions=move:NXM_NX_REG0[]->NXM_NX_CT_LABEL[0..31]",
        "actions=set_field:0x1->ct_label",
        "actions=clone(set_field:0x1->ct_mark)",
    ] {
        let theirs = d.ofctl(&[], "add-flow", &[flow]);
        assert_eq!(theirs.status.code(), Some(1), "{flow}");
        assert!(
            stderr(&theirs).contains("cannot set CT fields outside of ct action"),
            "{flow}: {}",
            stderr(&theirs)
        );
        let ours = d.ctl(&["add-flow", "br0", flow]);
        assert_eq!(ours.status.code(), Some(1), "{flow}");
        assert_eq!(
            error_name(&ours).as_deref(),
            Some("OFPBAC_BAD_SET_ARGUMENT"),
            "{flow}: {}",
            stderr(&ours)
        );
        assert_eq!(raw_flow(&d, flow), Some((2, 15)), "{flow}");
    }
    let group = "group_id=1,type=all,bucket=actions=set_field:0x1->ct_mark";
    let ours = d.ctl(&["add-group", "br0", group]);
    assert_eq!(
        error_name(&ours).as_deref(),
        Some("OFPBAC_BAD_SET_ARGUMENT"),
        "{}",
        stderr(&ours)
    );
    assert_eq!(raw_group(&d, group), Some((2, 15)));
    assert_eq!(dumps(&d), before, "nothing installed");
    d.ctl_ok(&[
        "add-flow",
        "br0",
        "ip,actions=move:NXM_NX_CT_MARK[]->NXM_NX_REG0[],ct(commit,exec(set_field:0x1->ct_mark))",
    ]);
    dumps(&d);
}

/// Ports Open vSwitch cannot represent (0xff00..=0xfffffeff: it keeps OpenFlow 1.0's 16-bit
/// ports) and OpenFlow 1.0's unnamed reserved ones (text `65280`, 0xffffff00): an output to
/// one is OFPBAC_BAD_OUT_PORT, a watch_port OFPGMFC_BAD_WATCH, an in_port match
/// OFPBMC_BAD_VALUE over the wire (as text it is refused before sending, as ovs-ofctl does).
#[test]
fn ports_open_vswitch_cannot_represent_refused() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ovs-refusals");
    let before = dumps(&d);
    for flow in [
        "priority=5,actions=output:0xfff0",
        "priority=5,actions=output:0x10000",
        "priority=5,actions=65280",
    ] {
        let ours = d.ctl(&["add-flow", "br0", flow]);
        assert_eq!(ours.status.code(), Some(1), "{flow}");
        assert_eq!(
            error_name(&ours).as_deref(),
            Some("OFPBAC_BAD_OUT_PORT"),
            "{flow}: {}",
            stderr(&ours)
        );
        assert_eq!(raw_flow(&d, flow), Some((2, 4)), "{flow}");
    }
    // ovs-ofctl sends 65280 as 0xffffff00 (and refuses it itself, as ovs-vswitchd does).
    let theirs = d.ofctl(&[], "add-flow", &["priority=5,actions=65280"]);
    assert_eq!(theirs.status.code(), Some(1));
    assert!(
        stderr(&theirs).contains("OFPBAC_BAD_OUT_PORT"),
        "{}",
        stderr(&theirs)
    );
    let group = "group_id=1,type=all,bucket=actions=output:0xfff0";
    assert_eq!(
        error_name(&d.ctl(&["add-group", "br0", group])).as_deref(),
        Some("OFPBAC_BAD_OUT_PORT")
    );
    assert_eq!(raw_group(&d, group), Some((2, 4)));
    let group = "group_id=1,type=ff,bucket=watch_port:0xfff0,actions=output:1";
    assert_eq!(
        error_name(&d.ctl(&["add-group", "br0", group])).as_deref(),
        Some("OFPGMFC_BAD_WATCH")
    );
    assert_eq!(raw_group(&d, group), Some((6, 13)));
    // An in_port match: text refused by vswitchctl; the wire refused by vswitchd.
    let out = d.ctl(&["add-flow", "br0", "in_port=0xfff0,actions=drop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("for in_port"), "{}", stderr(&out));
    let mut fm = flowtable::text::parse_flow("actions=drop").unwrap();
    fm.match_
        .set(flowtable::FieldId::InPort, 0xfff0, None)
        .unwrap();
    let msg = Message::FlowMod(convert::flow_mod_out(&fm).unwrap());
    assert_eq!(raw(&d, msg), Some((4, 7)), "OFPBMC_BAD_VALUE");
    assert_eq!(dumps(&d), before, "nothing installed");
    // The highest numbered port, and OpenFlow 1.0's reserved in_port numbers, are fine.
    d.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=6,in_port=65280,actions=output:65279",
    ]);
    let (flows, _) = dumps(&d);
    assert!(
        flows.contains("priority=6,in_port=65280 actions=output:65279"),
        "{flows}"
    );
}

/// Open vSwitch takes the ARP fields on RARP (eth_type 0x8035) flows, over the wire and as
/// text, and prints them so (`rarp,arp_op=3`).
#[test]
fn arp_fields_on_rarp_accepted_like_open_vswitch() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ovs-refusals");
    d.ctl_ok(&["add-flow", "br0", "priority=1,rarp,arp_op=3,actions=drop"]);
    d.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=2,rarp,nw_src=10.0.0.1,actions=set_field:4->arp_op,NORMAL",
    ]);
    d.ofctl_ok(
        &[],
        "add-flow",
        &["priority=3,dl_type=0x8035,arp_op=4,actions=drop"],
    );
    d.ofctl_ok(
        &[],
        "add-flow",
        &["priority=4,rarp,arp_sha=00:11:22:33:44:55,actions=drop"],
    );
    let (flows, _) = dumps(&d);
    for want in [
        "priority=1,rarp,arp_op=3 actions=drop",
        "priority=2,rarp,arp_spa=10.0.0.1 actions=set_field:4->arp_op,NORMAL",
        "priority=3,rarp,arp_op=4 actions=drop",
        "priority=4,rarp,arp_sha=00:11:22:33:44:55 actions=drop",
    ] {
        assert!(flows.contains(want), "{want} in\n{flows}");
    }
}

/// An empty action list is `drop`, as in Open vSwitch: `actions=` in a flow and
/// `bucket=actions=` in a group (ovs-ofctl dumps them as `actions=drop`).
#[test]
fn empty_action_list_is_drop_like_open_vswitch() {
    if !have_ofctl() {
        return;
    }
    let d = Switch::start("ovs-refusals");
    d.ctl_ok(&["add-flow", "br0", "priority=7,ip,actions="]);
    d.ctl_ok(&["add-group", "br0", "group_id=1,type=all,bucket=actions="]);
    let (flows, groups) = dumps(&d);
    assert!(flows.contains("priority=7,ip actions=drop"), "{flows}");
    assert!(
        groups.contains("group_id=1,type=all,bucket=actions=drop"),
        "{groups}"
    );
    // Without `actions=` at all, still refused.
    let out = d.ctl(&["add-flow", "br0", "priority=8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("must specify an action"),
        "{}",
        stderr(&out)
    );
}
