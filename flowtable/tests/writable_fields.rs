//! Which fields an action may write: Open vSwitch's `Access: read-only` fields are refused at
//! install with `OFPBAC_BAD_SET_ARGUMENT` ("destination field .. is not writable"), never
//! accepted and then dropping every packet; its read/write fields are taken.

use std::time::Instant;

use flowtable::table::{Pipeline, TableError};
use flowtable::text::parse_flow;

fn add(flow: &str) -> Result<(), TableError> {
    let fm = parse_flow(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    Pipeline::new().flow_mod(&fm, Instant::now()).map(|_| ())
}

#[test]
fn packet_kind_fields_are_read_only() {
    for (flow, field) in [
        ("ip,actions=set_field:0x86dd->eth_type", "eth_type"),
        ("actions=load:0x800->NXM_OF_ETH_TYPE[]", "eth_type"),
        ("ip,actions=set_field:17->nw_proto", "nw_proto"),
        ("ip,actions=load:17->NXM_OF_IP_PROTO[]", "nw_proto"),
        (
            "ip,actions=move:NXM_NX_REG0[0..7]->NXM_OF_IP_PROTO[]",
            "nw_proto",
        ),
        ("ip,actions=load:1->NXM_NX_IP_FRAG[]", "nw_frag"),
        ("tcp,actions=set_field:0x2->tcp_flags", "tcp_flags"),
        ("tcp,actions=load:2->NXM_NX_TCP_FLAGS[]", "tcp_flags"),
    ] {
        let e = add(flow).expect_err(flow);
        assert!(
            matches!(e, TableError::ReadOnlyField(f) if f == field),
            "{flow}: {e}"
        );
        // OFPET_BAD_ACTION / OFPBAC_BAD_SET_ARGUMENT, as Open vSwitch answers.
        assert_eq!(e.ofp_error(), (2, 15), "{flow}");
        assert!(e.to_string().contains("not writable"), "{e}");
    }
    // Read from, they are fine.
    add("ip,actions=move:NXM_OF_IP_PROTO[]->NXM_NX_REG0[0..7]").unwrap();
}

#[test]
fn l4_ports_and_icmpv6_type_code_are_writable() {
    for flow in [
        "tcp,actions=set_field:8080->tp_dst,output:2",
        "udp,actions=set_field:53->tp_src,output:2",
        "sctp,actions=set_field:9->tp_dst,output:2",
        "icmp6,actions=set_field:129->icmpv6_type,set_field:0->icmpv6_code,output:2",
    ] {
        add(flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
    // Printed (and sent over OpenFlow) as the port of the protocol matched, as Open vSwitch
    // prints its aliases and as `mod_tp_dst` does.
    for (flow, printed) in [
        (
            "tcp,actions=set_field:8080->tp_dst",
            "set_field:8080->tcp_dst",
        ),
        ("udp6,actions=set_field:53->tp_src", "set_field:53->udp_src"),
        ("sctp,actions=set_field:9->tp_dst", "set_field:9->sctp_dst"),
    ] {
        let fm = parse_flow(flow).unwrap();
        assert_eq!(
            flowtable::text::print_instructions(&fm.instructions),
            printed
        );
    }
    // The generic port still needs an L4 protocol in the match.
    assert!(matches!(
        add("ip,actions=set_field:80->tp_dst"),
        Err(TableError::MatchInconsistent(_))
    ));
}
