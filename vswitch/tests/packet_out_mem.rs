//! PACKET_OUT through an in-process OpenFlow session on an in-memory bridge (no root, no
//! sockets): the packet-out's actions run once, at the start of the packet's walk; a
//! `resubmit(,0)` or a `ct(table=0)` among them meets the bridge's own table 0, as in Open
//! vSwitch, not the packet-out's actions again.

use std::sync::Arc;

use encap::build::FrameBuilder;
use openflow::{Message, PacketOut, encode};
use vswitch::ofserver::session::Session;

mod common;

/// A negotiated OpenFlow 1.3 session on `br0`.
fn session(b: &common::MemBridge) -> Session {
    let mut s = Session::new(Arc::downgrade(&b.switch), "br0".to_string());
    let mut out = Vec::new();
    assert!(s.input(&[4, 0, 0, 8, 0, 0, 0, 1], &mut out).open);
    assert!(out.is_empty(), "{out:02x?}");
    s
}

/// Sends a PACKET_OUT of `frame` from `in_port` with `actions` (flow syntax); the session
/// must answer nothing (no error).
fn packet_out(s: &mut Session, in_port: u32, actions: &str, frame: &[u8]) {
    let ins = flowtable::text::parse_actions(actions, &flowtable::Match::any()).unwrap();
    let msg = Message::PacketOut(PacketOut {
        buffer_id: openflow::flow::NO_BUFFER,
        in_port,
        actions: openflow::convert::actions_out(&ins.apply).unwrap(),
        data: frame.to_vec(),
    });
    let mut out = Vec::new();
    assert!(s.input(&encode(&msg, 7).unwrap(), &mut out).open);
    assert!(out.is_empty(), "{actions}: answered {out:02x?}");
}

fn udp() -> Vec<u8> {
    FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(40000, 53)
        .payload(b"packet-out")
        .build()
}

#[test]
fn packet_out_resubmit_and_recirculation_reach_the_bridges_table_0() {
    let mut b = common::MemBridge::new(3, vswitch::datapath::Options::default());
    b.flows(
        "priority=10,ct_state=+trk,ip,actions=output:2\n\
         priority=0,actions=output:3\n\
         table=1,priority=0,actions=resubmit(,0)",
    );
    let mut s = session(&b);
    let frame = udp();

    // ct(table=0): the packet comes back tracked into the bridge's table 0.
    packet_out(&mut s, 1, "ct(table=0)", &frame);
    assert_eq!(b.outputs(3), vec![(2, 1)], "ct(table=0)");

    // resubmit(,0), directly or from a flow of another table: the bridge's table 0 (the
    // packet is not tracked there).
    packet_out(&mut s, 1, "resubmit(,0)", &frame);
    assert_eq!(b.outputs(3), vec![(3, 1)], "resubmit(,0)");
    packet_out(&mut s, 1, "resubmit(,1)", &frame);
    assert_eq!(b.outputs(3), vec![(3, 1)], "resubmit(,1) -> resubmit(,0)");

    // Actions after the resubmit still run, once.
    packet_out(&mut s, 1, "resubmit(,0),output:2", &frame);
    assert_eq!(b.outputs(3), vec![(2, 1), (3, 1)], "resubmit(,0),output:2");

    assert_eq!(b.drops("loop"), 0, "no walk ran into the resubmit limit");
}
