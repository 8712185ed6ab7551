//! RARP (EtherType 0x8035) frames carry ARP's packet format: as in Open vSwitch, their ARP
//! fields are extracted, matched (`rarp,arp_op=3`) and written (`set_field:4->arp_op`), in a
//! flow's actions and in a group bucket (which checks the field's prerequisite per packet).
//! What a flow accepts is what the datapath runs. On in-memory ports; every case runs in both
//! orders, so that a megaflow one packet made must not serve the other.

use encap::FlowKey;
use encap::build::FrameBuilder;
use vswitch::datapath;

mod common;

const HOST: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const SERVER: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0c];

/// A reverse ARP frame (op 3 is a request, 4 a reply) from HOST to the broadcast address.
fn rarp(op: u16) -> Vec<u8> {
    let mut f = FrameBuilder::eth(HOST, [0xff; 6])
        .arp(op, HOST, [0, 0, 0, 0], HOST, [0, 0, 0, 0])
        .build();
    f[12..14].copy_from_slice(&0x8035u16.to_be_bytes());
    f
}

fn key_of(frame: &[u8]) -> FlowKey {
    let mut k = FlowKey::default();
    let parsed = encap::extract(frame, &mut k);
    assert!(parsed.is_ok(), "malformed frame: {:?}", parsed.error);
    k
}

#[test]
fn rarp_frames_match_and_set_arp_fields() {
    for request_first in [true, false] {
        let mut b = common::MemBridge::new(3, datapath::Options::default());
        b.command(&[
            "add-group",
            "br0",
            "group_id=1,type=all,bucket=actions=set_field:6->arp_op,set_field:02:00:00:00:00:99->arp_sha,output:2",
        ]);
        b.flows(
            "priority=10,rarp,in_port=1,arp_op=3,actions=set_field:4->arp_op,\
             set_field:10.0.0.9->arp_tpa,set_field:0a:58:0c:01:00:0c->arp_tha,output:2\n\
             priority=10,rarp,in_port=1,arp_op=5,actions=group:1\n\
             priority=5,rarp,in_port=1,actions=output:3",
        );
        let order: [u16; 3] = if request_first { [3, 4, 5] } else { [5, 4, 3] };
        for op in order {
            b.send(1, &rarp(op));
        }
        let to2: Vec<FlowKey> = b.received(2).iter().map(|f| key_of(f)).collect();
        let to3: Vec<FlowKey> = b.received(3).iter().map(|f| key_of(f)).collect();
        // op 4 matched none of the arp_op flows: out of port 3 as it was.
        assert_eq!(to3.len(), 1, "request_first={request_first}");
        assert_eq!((to3[0].eth_type, to3[0].arp_op), (0x8035, 4));
        assert_eq!(to2.len(), 2, "request_first={request_first}");
        let by_op = |op: u16| {
            *to2.iter()
                .find(|k| k.arp_op == op)
                .unwrap_or_else(|| panic!("no op {op} out of port 2: {to2:?}"))
        };
        // op 3 rewritten by the flow.
        let reply = by_op(4);
        assert_eq!(reply.eth_type, 0x8035);
        assert_eq!(reply.arp_tpa, 0x0a00_0009);
        assert_eq!(reply.arp_tha, SERVER);
        assert_eq!(reply.arp_sha, HOST);
        // op 5 rewritten by the bucket (its prerequisite checked on the packet).
        let bucket = by_op(6);
        assert_eq!(bucket.eth_type, 0x8035);
        assert_eq!(bucket.arp_sha, [2, 0, 0, 0, 0, 0x99]);
    }
}
