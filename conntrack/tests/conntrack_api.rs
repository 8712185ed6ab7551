//! Conntrack behaviour through its public API: states, NAT, ICMP relation, limits, expiry.

use conntrack::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use conntrack::*;
use encap::flowkey::{
    CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK, FRAG_ANY, FRAG_LATER, FlowKey,
};
mod common;

use common::*;
use std::time::Duration;

fn ct(max_conns: usize) -> Conntrack {
    table_with(max_conns, 42)
}

fn nat(zone: u16, spec: &NatSpec) -> CtAction<'_> {
    CtAction {
        zone,
        commit: true,
        nat: Some(spec),
        ..CtAction::default()
    }
}

#[test]
fn tcp_handshake_data_and_fin_teardown() {
    let mut ct = ct(16);
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    let r = ct.process(&tcp(c, 40000, s, 80, TCP_SYN), &seg(100, 0), &commit(0), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert!(r.conn.is_some() && r.drop.is_none());
    assert_eq!(
        dump_lines(&ct, 0),
        [
            "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=40000),protoinfo=(state=SYN_SENT)"
        ]
    );
    // Retransmitted SYN: still new (no reply yet).
    let r = ct.process(&tcp(c, 40000, s, 80, TCP_SYN), &seg(100, 0), &track(0), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    let r = ct.process(
        &tcp(s, 80, c, 40000, TCP_SYN | TCP_ACK),
        &seg(900, 101),
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    let r = ct.process(
        &tcp(c, 40000, s, 80, TCP_ACK),
        &seg(101, 901),
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    assert!(dump_lines(&ct, SEC)[0].ends_with("protoinfo=(state=ESTABLISHED)"));
    let mut data = seg(101, 901);
    data.l4_payload_len = 500;
    let r = ct.process(&tcp(c, 40000, s, 80, TCP_ACK), &data, &track(0), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    let r = ct.process(
        &tcp(s, 80, c, 40000, TCP_ACK),
        &seg(901, 601),
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);

    // Client closes, server closes, client acks: TIME_WAIT with the short timeout.
    ct.process(
        &tcp(c, 40000, s, 80, TCP_FIN | TCP_ACK),
        &seg(601, 901),
        &track(0),
        SEC,
    );
    assert!(dump_lines(&ct, SEC)[0].ends_with("protoinfo=(state=CLOSING)"));
    ct.process(
        &tcp(s, 80, c, 40000, TCP_FIN | TCP_ACK),
        &seg(901, 602),
        &track(0),
        SEC,
    );
    let r = ct.process(
        &tcp(c, 40000, s, 80, TCP_ACK),
        &seg(602, 902),
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    assert!(dump_lines(&ct, SEC)[0].ends_with("protoinfo=(state=TIME_WAIT)"));
    let e = ct.dump(SEC).next().unwrap();
    assert_eq!(
        e.expires_in_ns,
        Timeouts::default().tcp_closed.as_nanos() as u64
    );

    // A new SYN on the closed connection reopens it as a fresh connection.
    let old = r.conn.unwrap();
    let r = ct.process(
        &tcp(c, 40000, s, 80, TCP_SYN),
        &seg(7777, 0),
        &commit(0),
        2 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_ne!(r.conn.unwrap(), old);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.counters().get(Counter::Reopened), 1);
}

#[test]
fn rst_moves_to_closed_timeout() {
    let mut ct = ct(16);
    ct.process(
        &tcp("1.1.1.1", 1, "2.2.2.2", 2, TCP_SYN),
        &seg(10, 0),
        &commit(0),
        0,
    );
    ct.process(
        &tcp("2.2.2.2", 2, "1.1.1.1", 1, TCP_RST | TCP_ACK),
        &seg(0, 11),
        &track(0),
        0,
    );
    let e = ct.dump(0).next().unwrap();
    assert_eq!(e.tcp_state, Some(TcpState::TimeWait));
    assert_eq!(e.expires_in_ns, 30 * SEC);
}

#[test]
fn uncommitted_connections_leave_no_trace() {
    let mut ct = ct(16);
    for t in 0..3 {
        let r = ct.process(
            &udp("10.0.0.1", 5000, "10.0.0.2", 53),
            &PacketFacts::default(),
            &track(0),
            t,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_NEW);
        assert!(r.conn.is_none());
    }
    assert!(ct.is_empty());
    // And the reply to an uncommitted connection is itself just new.
    let r = ct.process(
        &udp("10.0.0.2", 53, "10.0.0.1", 5000),
        &PacketFacts::default(),
        &track(0),
        3,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
}

#[test]
fn udp_states_and_timeouts() {
    let mut ct = ct(16);
    let f = PacketFacts::default();
    let r = ct.process(&udp("10.0.0.1", 5000, "10.0.0.2", 53), &f, &commit(0), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_eq!(ct.dump(0).next().unwrap().expires_in_ns, 60 * SEC);
    let r = ct.process(&udp("10.0.0.1", 5000, "10.0.0.2", 53), &f, &track(0), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW, "no reply yet");
    let r = ct.process(
        &udp("10.0.0.2", 53, "10.0.0.1", 5000),
        &f,
        &track(0),
        2 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    assert_eq!(ct.dump(2 * SEC).next().unwrap().expires_in_ns, 30 * SEC);
    let r = ct.process(
        &udp("10.0.0.1", 5000, "10.0.0.2", 53),
        &f,
        &track(0),
        3 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
}

#[test]
fn zones_separate_connections() {
    let mut ct = ct(16);
    let f = PacketFacts::default();
    ct.process(&udp("10.0.0.1", 5000, "10.0.0.2", 53), &f, &commit(1), 0);
    let r = ct.process(&udp("10.0.0.2", 53, "10.0.0.1", 5000), &f, &track(2), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW, "other zone knows nothing");
    let r = ct.process(&udp("10.0.0.2", 53, "10.0.0.1", 5000), &f, &track(1), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    assert_eq!(r.ct_zone, 1);
}

#[test]
fn dnat_service_reply_is_un_nated_and_found_by_one_lookup() {
    let mut ct = ct(16);
    let spec =
        NatSpec::dnat(NatRange::new(addr("172.16.1.5"), addr("172.16.1.5"), 8080, 8080).unwrap());
    let act = CtAction {
        mark: Some((1, u32::MAX)),
        ..nat(1, &spec)
    };
    let syn = tcp("172.16.1.2", 40000, "10.247.0.10", 80, TCP_SYN);
    let r = ct.process(&syn, &seg(1, 0), &act, 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_DNAT);
    assert_eq!(r.ct_mark, 1);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.src, rw.sport), (addr("172.16.1.2"), 40000));
    assert_eq!((rw.dst, rw.dport), (addr("172.16.1.5"), 8080));

    // The reply as the backend sends it, looked up with one hash probe.
    let reply = Tuple {
        src: addr("172.16.1.5"),
        dst: addr("172.16.1.2"),
        sport: 8080,
        dport: 40000,
        zone: 1,
        proto: 6,
        family: Family::V4,
    };
    let (entry, is_reply) = ct.lookup(&reply, 0).unwrap();
    assert!(is_reply);
    assert_eq!(Some(entry.id), r.conn);

    let back = tcp("172.16.1.5", 8080, "172.16.1.2", 40000, TCP_SYN | TCP_ACK);
    let plain_nat = NatSpec::default();
    let r2 = ct.process(&back, &seg(500, 2), &nat(1, &plain_nat), 0);
    assert_eq!(
        r2.ct_state,
        CT_TRK | CT_EST | CT_RPL | CT_SNAT,
        "un-DNAT rewrites the source"
    );
    let rw = r2.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (addr("10.247.0.10"), 80, addr("172.16.1.2"), 40000)
    );
    assert_eq!(r2.ct_mark, 1);

    // Without `nat` in the action the packet is tracked but not rewritten.
    let r3 = ct.process(
        &tcp("172.16.1.2", 40000, "10.247.0.10", 80, TCP_ACK),
        &seg(2, 501),
        &track(1),
        0,
    );
    assert_eq!(r3.ct_state, CT_TRK | CT_EST);
    assert!(r3.rewrite.is_none());

    assert_eq!(
        dump_lines(&ct, 0),
        [
            "tcp,orig=(src=172.16.1.2,dst=10.247.0.10,sport=40000,dport=80),reply=(src=172.16.1.5,dst=172.16.1.2,sport=8080,dport=40000),zone=1,mark=1,protoinfo=(state=ESTABLISHED)"
        ]
    );
}

#[test]
fn snat_masquerade_and_reverse() {
    let mut ct = ct(16);
    let spec = NatSpec::snat(NatRange::addr(addr("192.168.0.10")));
    let f = PacketFacts::default();
    let r = ct.process(
        &udp("10.1.0.5", 33000, "8.8.8.8", 53),
        &f,
        &nat(0, &spec),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.sport),
        (addr("192.168.0.10"), 33000),
        "port kept when free"
    );
    let r = ct.process(
        &udp("8.8.8.8", 53, "192.168.0.10", 33000),
        &f,
        &nat(0, &NatSpec::default()),
        1,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.dst, rw.dport, rw.src, rw.sport),
        (addr("10.1.0.5"), 33000, addr("8.8.8.8"), 53)
    );

    // A second pod using the same source port gets another port.
    let r = ct.process(
        &udp("10.1.0.6", 33000, "8.8.8.8", 53),
        &f,
        &nat(0, &spec),
        2,
    );
    let rw = r.rewrite.unwrap();
    assert_eq!(rw.src, addr("192.168.0.10"));
    assert_ne!(rw.sport, 33000);
    let r = ct.process(
        &udp("8.8.8.8", 53, "192.168.0.10", rw.sport),
        &f,
        &nat(0, &NatSpec::default()),
        3,
    );
    assert_eq!(r.rewrite.unwrap().dst, addr("10.1.0.6"));
}

#[test]
fn hairpin_dnat_then_snat_in_two_zones() {
    // Pod A calls a service VIP whose backend is pod B on the same node: zone 1 DNATs to the
    // backend, zone 2 SNATs to the gateway so B replies through the switch.
    let mut ct = ct(16);
    let dnat =
        NatSpec::dnat(NatRange::new(addr("10.0.0.3"), addr("10.0.0.3"), 8080, 8080).unwrap());
    let snat = NatSpec::snat(NatRange::addr(addr("10.0.0.1")));
    let syn = tcp("10.0.0.2", 40000, "10.96.0.10", 80, TCP_SYN);
    let r1 = ct.process(&syn, &seg(1, 0), &nat(1, &dnat), 0);
    let w1 = r1.rewrite.unwrap();
    let after_dnat = tcp("10.0.0.2", 40000, "10.0.0.3", w1.dport, TCP_SYN);
    assert_eq!(w1.dst, addr("10.0.0.3"));
    let r2 = ct.process(&after_dnat, &seg(1, 0), &nat(2, &snat), 0);
    assert_eq!(r2.ct_state, CT_TRK | CT_NEW | CT_SNAT);
    let w2 = r2.rewrite.unwrap();
    assert_eq!(
        (w2.src, w2.dst, w2.dport),
        (addr("10.0.0.1"), addr("10.0.0.3"), 8080)
    );

    // B's SYN-ACK to the gateway walks back through zone 2 then zone 1.
    let back = tcp("10.0.0.3", 8080, "10.0.0.1", w2.sport, TCP_SYN | TCP_ACK);
    let plain = NatSpec::default();
    let b2 = ct.process(&back, &seg(9, 2), &nat(2, &plain), 0);
    assert_eq!(b2.ct_state, CT_TRK | CT_EST | CT_RPL | CT_DNAT);
    let bw2 = b2.rewrite.unwrap();
    assert_eq!((bw2.dst, bw2.dport), (addr("10.0.0.2"), 40000));
    let back1 = tcp("10.0.0.3", 8080, "10.0.0.2", 40000, TCP_SYN | TCP_ACK);
    let b1 = ct.process(&back1, &seg(9, 2), &nat(1, &plain), 0);
    assert_eq!(b1.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT);
    let bw1 = b1.rewrite.unwrap();
    assert_eq!(
        (bw1.src, bw1.sport, bw1.dst, bw1.dport),
        (addr("10.96.0.10"), 80, addr("10.0.0.2"), 40000)
    );
}

#[test]
fn both_nats_in_one_commit() {
    let mut ct = ct(16);
    let spec = NatSpec {
        src: Some(NatRange::addr(addr("10.0.0.1"))),
        dst: Some(NatRange::addr(addr("10.0.0.3"))),
        ..NatSpec::default()
    };
    let r = ct.process(
        &udp("10.0.0.2", 1000, "10.96.0.10", 53),
        &PacketFacts::default(),
        &nat(0, &spec),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.src, rw.dst), (addr("10.0.0.1"), addr("10.0.0.3")));
    let r = ct.process(
        &udp("10.0.0.3", 53, "10.0.0.1", rw.sport),
        &PacketFacts::default(),
        &nat(0, &NatSpec::default()),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (addr("10.96.0.10"), 53, addr("10.0.0.2"), 1000)
    );
}

fn icmp_error(outer_src: &str, outer_dst: &str, inner: InnerTuple) -> (FlowKey, PacketFacts) {
    let k = FlowKey {
        eth_type: 0x0800,
        nw_src: ip(outer_src),
        nw_dst: ip(outer_dst),
        nw_proto: 1,
        icmp_type: 3,
        icmp_code: 3,
        ..FlowKey::default()
    };
    (
        k,
        PacketFacts {
            icmp_inner: Some(inner),
            ..PacketFacts::default()
        },
    )
}

#[test]
fn icmp_error_is_related_and_its_embedded_header_is_un_nated() {
    let mut ct = ct(16);
    let spec = NatSpec::snat(
        NatRange::new(addr("192.168.0.10"), addr("192.168.0.10"), 2000, 2000).unwrap(),
    );
    let r = ct.process(
        &udp("10.1.0.5", 33000, "8.8.8.8", 53),
        &PacketFacts::default(),
        &nat(0, &spec),
        0,
    );
    assert_eq!(r.rewrite.unwrap().sport, 2000);

    // 8.8.8.8 answers "port unreachable" about the datagram it received (after SNAT).
    let inner = InnerTuple {
        src: addr("192.168.0.10"),
        dst: addr("8.8.8.8"),
        proto: 17,
        sport: 2000,
        dport: 53,
    };
    let (k, f) = icmp_error("8.8.8.8", "192.168.0.10", inner);
    let r = ct.process(&k, &f, &nat(0, &NatSpec::default()), 1);
    assert_eq!(r.ct_state, CT_TRK | CT_REL | CT_RPL | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.dst),
        (addr("8.8.8.8"), addr("10.1.0.5")),
        "outer destination un-SNATed"
    );
    let inner = rw.inner.unwrap();
    assert_eq!(
        (inner.src, inner.sport, inner.dst, inner.dport),
        (addr("10.1.0.5"), 33000, addr("8.8.8.8"), 53)
    );
    assert_eq!(ct.counters().get(Counter::Related), 1);

    // Without nat the error is still related, just not rewritten.
    let r = ct.process(&k, &f, &track(0), 1);
    assert_eq!(r.ct_state, CT_TRK | CT_REL | CT_RPL);
    assert!(r.rewrite.is_none());

    // An error about an unknown flow is invalid.
    let other = InnerTuple {
        src: addr("192.168.0.10"),
        dst: addr("8.8.4.4"),
        proto: 17,
        sport: 2000,
        dport: 53,
    };
    let (k, f) = icmp_error("8.8.4.4", "192.168.0.10", other);
    let r = ct.process(&k, &f, &track(0), 1);
    assert_eq!(r.ct_state, CT_TRK | CT_INV);
    assert_eq!(r.invalid, Some(InvalidReason::IcmpErrorUnrelated));
}

#[test]
fn icmp_error_about_a_dnat_connection_rewrites_outer_source() {
    let mut ct = ct(16);
    let spec =
        NatSpec::dnat(NatRange::new(addr("10.0.0.3"), addr("10.0.0.3"), 8080, 8080).unwrap());
    ct.process(
        &udp("10.0.0.2", 5000, "10.96.0.10", 80),
        &PacketFacts::default(),
        &nat(0, &spec),
        0,
    );
    let inner = InnerTuple {
        src: addr("10.0.0.2"),
        dst: addr("10.0.0.3"),
        proto: 17,
        sport: 5000,
        dport: 8080,
    };
    let (k, f) = icmp_error("10.0.0.3", "10.0.0.2", inner);
    let r = ct.process(&k, &f, &nat(0, &NatSpec::default()), 1);
    assert_eq!(r.ct_state, CT_TRK | CT_REL | CT_RPL | CT_SNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.src, rw.dst), (addr("10.96.0.10"), addr("10.0.0.2")));
    let i = rw.inner.unwrap();
    assert_eq!(
        (i.src, i.sport, i.dst, i.dport),
        (addr("10.0.0.2"), 5000, addr("10.96.0.10"), 80)
    );
}

fn echo(src: &str, dst: &str, ty: u8, id: u16) -> (FlowKey, PacketFacts) {
    let k = FlowKey {
        eth_type: 0x0800,
        nw_src: ip(src),
        nw_dst: ip(dst),
        nw_proto: 1,
        icmp_type: ty,
        ..FlowKey::default()
    };
    (
        k,
        PacketFacts {
            icmp_id: id,
            ..PacketFacts::default()
        },
    )
}

#[test]
fn icmp_echo_tracking_and_id_nat() {
    let mut ct = ct(16);
    let (k, f) = echo("10.1.0.5", "1.1.1.1", 0, 7);
    let r = ct.process(&k, &f, &commit(0), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_INV, "echo reply without request");
    assert_eq!(r.invalid, Some(InvalidReason::IcmpReplyWithoutRequest));

    let spec =
        NatSpec::snat(NatRange::new(addr("192.168.0.10"), addr("192.168.0.10"), 100, 100).unwrap());
    let (k, f) = echo("10.1.0.5", "1.1.1.1", 8, 7);
    let r = ct.process(&k, &f, &nat(0, &spec), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.sport, rw.dport),
        (addr("192.168.0.10"), 100, 100),
        "id mapped"
    );
    let (k, f) = echo("1.1.1.1", "192.168.0.10", 0, 100);
    let r = ct.process(&k, &f, &nat(0, &NatSpec::default()), 1);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.dst, rw.sport), (addr("10.1.0.5"), 7));
    assert_eq!(
        dump_lines(&ct, 1),
        [
            "icmp,orig=(src=10.1.0.5,dst=1.1.1.1,id=7,type=8,code=0),reply=(src=1.1.1.1,dst=192.168.0.10,id=100,type=0,code=0)"
        ]
    );
    let (mut k, f) = echo("10.1.0.5", "1.1.1.1", 13, 7);
    k.icmp_type = 13; // timestamp: not tracked
    assert_eq!(
        ct.process(&k, &f, &track(0), 1).invalid,
        Some(InvalidReason::IcmpType)
    );
}

#[test]
fn an_echo_request_the_way_replies_go_is_not_established() {
    // A pinged B (request A→B, reply B→A). An echo request B→A with the same identifier
    // matches the connection's reply key, but it is no reply: Linux and Open vSwitch key the
    // echo type. Let through as +est+rpl it would pass the rules that drop B's +new (and,
    // under SNAT, be un-NATed into A). Likewise a reply A→B.
    let mut ct = ct(16);
    let spec =
        NatSpec::snat(NatRange::new(addr("192.168.0.10"), addr("192.168.0.10"), 100, 100).unwrap());
    let (k, f) = echo("10.1.0.5", "1.1.1.1", 8, 7);
    assert_eq!(
        ct.process(&k, &f, &nat(0, &spec), 0).ct_state,
        CT_TRK | CT_NEW | CT_SNAT
    );
    let (k, f) = echo("1.1.1.1", "192.168.0.10", 0, 100);
    assert_eq!(
        ct.process(&k, &f, &nat(0, &NatSpec::default()), 1).ct_state,
        CT_TRK | CT_EST | CT_RPL | CT_DNAT
    );
    let (k, f) = echo("1.1.1.1", "192.168.0.10", 8, 100);
    let r = ct.process(&k, &f, &nat(0, &NatSpec::default()), 2);
    assert_eq!(r.ct_state, CT_TRK | CT_INV, "{r:?}");
    assert_eq!(r.invalid, Some(InvalidReason::IcmpEchoWrongDirection));
    assert!(r.rewrite.is_none(), "not un-NATed");
    let (k, f) = echo("10.1.0.5", "1.1.1.1", 0, 7);
    let r = ct.process(&k, &f, &nat(0, &NatSpec::default()), 2);
    assert_eq!(r.ct_state, CT_TRK | CT_INV, "{r:?}");
    assert_eq!(ct.counters().get(Counter::InvalidIcmpEchoDirection), 2);
    // The same for ICMPv6 (128 request, 129 reply), without NAT.
    let v6 = |src: &str, dst: &str, ty: u8| {
        let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let k = FlowKey {
            eth_type: 0x86dd,
            ipv6_src: a(src),
            ipv6_dst: a(dst),
            nw_proto: 58,
            icmp_type: ty,
            ..FlowKey::default()
        };
        let f = PacketFacts {
            icmp_id: 9,
            ..PacketFacts::default()
        };
        (k, f)
    };
    let (k, f) = v6("fd00::1", "fd00::2", 128);
    assert_eq!(ct.process(&k, &f, &commit(0), 3).ct_state, CT_TRK | CT_NEW);
    let (k, f) = v6("fd00::2", "fd00::1", 129);
    assert_eq!(
        ct.process(&k, &f, &commit(0), 3).ct_state,
        CT_TRK | CT_EST | CT_RPL
    );
    let (k, f) = v6("fd00::2", "fd00::1", 128);
    assert_eq!(ct.process(&k, &f, &commit(0), 4).ct_state, CT_TRK | CT_INV);
    // The connection itself goes on: requests one way, replies the other.
    let (k, f) = v6("fd00::1", "fd00::2", 128);
    assert_eq!(ct.process(&k, &f, &commit(0), 5).ct_state, CT_TRK | CT_EST);
    assert_eq!(ct.counters().get(Counter::InvalidIcmpEchoDirection), 3);
}

#[test]
fn table_full_refuses_new_connections_but_keeps_existing_ones() {
    let mut ct = ct(2);
    let f = PacketFacts::default();
    for p in [1000, 1001] {
        assert!(
            ct.process(&udp("10.0.0.1", p, "10.0.0.2", 53), &f, &commit(0), 0)
                .drop
                .is_none()
        );
        // Answered: established, so a full table does not remove it.
        ct.process(&udp("10.0.0.2", 53, "10.0.0.1", p), &f, &track(0), 0);
    }
    let r = ct.process(&udp("10.0.0.1", 1002, "10.0.0.2", 53), &f, &commit(0), 0);
    assert_eq!(r.drop, Some(CtDrop::TableFull));
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_eq!(ct.counters().get(Counter::DropTableFull), 1);
    assert_eq!(ct.len(), 2);
    for p in [1000, 1001] {
        let r = ct.process(&udp("10.0.0.2", 53, "10.0.0.1", p), &f, &commit(0), 1);
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
        assert!(r.drop.is_none());
    }
    // Once an entry has expired, a commit reclaims it on the spot.
    let later = 100 * SEC;
    let r = ct.process(
        &udp("10.0.0.1", 1002, "10.0.0.2", 53),
        &f,
        &commit(0),
        later,
    );
    assert!(r.drop.is_none());
    assert!(ct.len() <= 2);
}

/// A full table makes room from closed TCP connections (TIME_WAIT), oldest first, as the
/// kernel's conntrack does; established ones are never evicted.
#[test]
fn table_full_evicts_closed_tcp_connections_but_no_established_one() {
    let mut ct = ct(3);
    let f = PacketFacts::default();
    // Two connections reset (closed: TIME_WAIT for 30 s), the older first, and one UDP flow.
    for port in [1, 2] {
        ct.process(
            &tcp("1.1.1.1", port, "2.2.2.2", 80, TCP_SYN),
            &seg(10, 0),
            &commit(0),
            0,
        );
        ct.process(
            &tcp("2.2.2.2", 80, "1.1.1.1", port, TCP_RST | TCP_ACK),
            &seg(0, 11),
            &track(0),
            u64::from(port),
        );
    }
    let live = udp("10.0.0.1", 1000, "10.0.0.2", 53);
    assert!(ct.process(&live, &f, &commit(0), 5).drop.is_none());
    let reply = udp("10.0.0.2", 53, "10.0.0.1", 1000);
    ct.process(&reply, &f, &track(0), 5);
    assert_eq!(ct.len(), 3);

    // Full: a new connection takes the oldest closed one's place.
    let r = ct.process(&udp("10.0.0.1", 1001, "10.0.0.2", 53), &f, &commit(0), 6);
    assert_eq!(r.drop, None);
    assert_eq!(ct.counters().get(Counter::ClosedEvicted), 1);
    let ports: Vec<u16> = ct
        .dump(6)
        .filter(|e| e.tcp_state.is_some())
        .map(|e| e.orig.sport)
        .collect();
    assert_eq!(ports, vec![2], "the older closed connection went first");

    // Then the other closed one; after that only established connections are left (each
    // answered), and a new one is refused and counted, as before.
    let r = ct.process(&udp("10.0.0.1", 1002, "10.0.0.2", 53), &f, &commit(0), 7);
    assert_eq!(r.drop, None);
    for p in [1001, 1002] {
        ct.process(&udp("10.0.0.2", 53, "10.0.0.1", p), &f, &track(0), 7);
    }
    let r = ct.process(&udp("10.0.0.1", 1003, "10.0.0.2", 53), &f, &commit(0), 8);
    assert_eq!(r.drop, Some(CtDrop::TableFull));
    assert_eq!(ct.counters().get(Counter::ClosedEvicted), 2);
    assert_eq!(ct.counters().get(Counter::UnestablishedEvicted), 0);
    assert_eq!(ct.counters().get(Counter::DropTableFull), 1);
    assert_eq!(ct.len(), 3);
    let r = ct.process(&reply, &f, &track(0), 9);
    assert_eq!(
        r.ct_state,
        CT_TRK | CT_EST | CT_RPL,
        "the live flow is still tracked"
    );
}

/// A flood of handshakes that never complete (SYNs from spoofed sources, answered by a
/// backend or not) fills the table; with no closed connection to remove, a new connection
/// takes the place of the oldest one not established (the kernel's `early_drop`), so the
/// flood locks no new client out. Established connections stay.
#[test]
fn table_full_of_unestablished_connections_makes_room_for_a_new_one() {
    let mut ct = ct(4);
    let f = PacketFacts::default();
    // Established: a completed handshake, and a UDP flow answered.
    let est = tcp("10.0.0.9", 5000, "10.0.0.2", 80, TCP_SYN);
    ct.process(&est, &seg(100, 0), &commit(0), 0);
    ct.process(
        &tcp("10.0.0.2", 80, "10.0.0.9", 5000, TCP_SYN | TCP_ACK),
        &seg(500, 101),
        &track(0),
        0,
    );
    ct.process(
        &tcp("10.0.0.9", 5000, "10.0.0.2", 80, TCP_ACK),
        &seg(101, 501),
        &track(0),
        0,
    );
    ct.process(&udp("10.0.0.9", 53, "10.0.0.2", 53), &f, &commit(0), 0);
    ct.process(&udp("10.0.0.2", 53, "10.0.0.9", 53), &f, &track(0), 0);
    // The flood: a SYN the backend answered (waiting for an ACK that never comes), then a SYN
    // nobody answered, a second later.
    ct.process(
        &tcp("6.6.6.1", 1, "10.0.0.2", 80, TCP_SYN),
        &seg(7, 0),
        &commit(0),
        SEC,
    );
    ct.process(
        &tcp("10.0.0.2", 80, "6.6.6.1", 1, TCP_SYN | TCP_ACK),
        &seg(900, 8),
        &track(0),
        SEC,
    );
    ct.process(
        &tcp("6.6.6.2", 2, "10.0.0.2", 80, TCP_SYN),
        &seg(7, 0),
        &commit(0),
        2 * SEC,
    );
    assert_eq!(ct.len(), 4);

    // A new client takes the place of the oldest handshake, then of the next one.
    for (n, port) in [(1, 6001u16), (2, 6002)] {
        let r = ct.process(
            &tcp("10.0.0.7", port, "10.0.0.2", 80, TCP_SYN),
            &seg(1, 0),
            &commit(0),
            3 * SEC,
        );
        assert_eq!(r.drop, None, "client {port}");
        assert_eq!(ct.counters().get(Counter::UnestablishedEvicted), n);
        assert_eq!(ct.len(), 4);
    }
    let flood = [addr("6.6.6.1"), addr("6.6.6.2")];
    assert!(
        !ct.dump(3 * SEC).any(|e| flood.contains(&e.orig.src)),
        "the flood's entries went first"
    );
    assert_eq!(
        ct.dump(3 * SEC)
            .filter(|e| e.orig.src == addr("10.0.0.7"))
            .count(),
        2
    );
    // The oldest not established is now the first new client's handshake: a third client
    // replaces it, and the established connections are still there.
    let r = ct.process(
        &tcp("10.0.0.7", 6003, "10.0.0.2", 80, TCP_SYN),
        &seg(1, 0),
        &commit(0),
        4 * SEC,
    );
    assert_eq!(r.drop, None);
    let mut ports: Vec<u16> = ct
        .dump(4 * SEC)
        .filter(|e| e.orig.src == addr("10.0.0.7"))
        .map(|e| e.orig.sport)
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![6002, 6003], "6001 was the oldest handshake");
    let r = ct.process(
        &tcp("10.0.0.2", 80, "10.0.0.9", 5000, TCP_ACK),
        &seg(501, 101),
        &track(0),
        4 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    let r = ct.process(&udp("10.0.0.2", 53, "10.0.0.9", 53), &f, &track(0), 4 * SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    assert_eq!(ct.counters().get(Counter::DropTableFull), 0);
}

/// "Oldest" is the one heard from the longest ago, whatever its class's timeout: a UDP flow
/// heard at 0 s (expiring at 60 s) goes before a SYN heard at 1 s (expiring at 31 s).
#[test]
fn the_connection_not_established_heard_from_longest_ago_goes_first() {
    let mut ct = ct(2);
    let f = PacketFacts::default();
    ct.process(&udp("10.0.0.1", 1000, "10.0.0.2", 53), &f, &commit(0), 0);
    ct.process(
        &tcp("10.0.0.1", 2000, "10.0.0.2", 80, TCP_SYN),
        &seg(1, 0),
        &commit(0),
        SEC,
    );
    let r = ct.process(
        &udp("10.0.0.1", 1001, "10.0.0.2", 53),
        &f,
        &commit(0),
        2 * SEC,
    );
    assert_eq!(r.drop, None);
    let mut ports: Vec<u16> = ct.dump(2 * SEC).map(|e| e.orig.sport).collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![1001, 2000], "the UDP flow was heard from first");
}

#[test]
fn nat_port_exhaustion_is_refused_cleanly_and_recovers() {
    let mut ct = ct(64);
    let spec = NatSpec::snat(
        NatRange::new(addr("192.168.0.10"), addr("192.168.0.10"), 5000, 5001).unwrap(),
    );
    let f = PacketFacts::default();
    let mut ports = vec![];
    for c in 1..=2 {
        let r = ct.process(
            &udp(&format!("10.1.0.{c}"), 4000, "8.8.8.8", 53),
            &f,
            &nat(0, &spec),
            0,
        );
        ports.push(r.rewrite.unwrap().sport);
    }
    ports.sort();
    assert_eq!(ports, [5000, 5001]);
    let r = ct.process(&udp("10.1.0.3", 4000, "8.8.8.8", 53), &f, &nat(0, &spec), 0);
    assert_eq!(r.drop, Some(CtDrop::NatExhausted));
    assert!(r.rewrite.is_none());
    assert_eq!(ct.counters().get(Counter::DropNatExhausted), 1);
    assert_eq!(ct.len(), 2);
    // Another destination has its own reply tuples, so the same ports are free there.
    let r = ct.process(&udp("10.1.0.3", 4000, "8.8.4.4", 53), &f, &nat(0, &spec), 0);
    assert!(r.drop.is_none());
    // After expiry the bindings come back.
    assert_eq!(ct.expire(61 * SEC, 100), 3);
    let r = ct.process(
        &udp("10.1.0.3", 4000, "8.8.8.8", 53),
        &f,
        &nat(0, &spec),
        61 * SEC,
    );
    assert!(r.drop.is_none());
}

#[test]
fn expiry_is_incremental_and_follows_timeouts() {
    let timeouts = Timeouts {
        other_first: Duration::from_secs(10),
        other_multiple: Duration::from_secs(10),
        ..Timeouts::default()
    };
    let mut ct = Conntrack::new(Config {
        max_conns: 100,
        timeouts,
        hash_seed: Some(1),
        ..Config::default()
    })
    .unwrap();
    let f = PacketFacts::default();
    for p in 0..10u16 {
        ct.process(
            &udp("10.0.0.1", 1000 + p, "10.0.0.2", 53),
            &f,
            &commit(0),
            p as u64 * SEC,
        );
    }
    assert_eq!(ct.expire(9 * SEC, 100), 0);
    assert_eq!(ct.expire(12 * SEC, 100), 3, "the ones created at 0,1,2 s");
    assert_eq!(ct.expire(30 * SEC, 4), 4, "budget respected");
    assert_eq!(ct.len(), 3);
    assert_eq!(ct.expire(30 * SEC, 100), 3);
    assert!(ct.is_empty());
    assert_eq!(ct.counters().get(Counter::Expired), 10);

    // Traffic keeps a connection alive.
    ct.process(
        &udp("10.0.0.1", 1, "10.0.0.2", 53),
        &f,
        &commit(0),
        100 * SEC,
    );
    for t in 101..130 {
        ct.process(&udp("10.0.0.1", 1, "10.0.0.2", 53), &f, &track(0), t * SEC);
        assert_eq!(ct.expire(t * SEC, 100), 0);
    }
    assert_eq!(ct.expire(138 * SEC, 100), 0);
    assert_eq!(ct.expire(141 * SEC, 100), 1);
}

#[test]
fn expired_but_unreaped_connection_is_not_found() {
    let mut ct = ct(16);
    let f = PacketFacts::default();
    ct.process(&udp("10.0.0.1", 1, "10.0.0.2", 2), &f, &commit(0), 0);
    let r = ct.process(&udp("10.0.0.2", 2, "10.0.0.1", 1), &f, &track(0), 61 * SEC);
    assert_eq!(
        r.ct_state,
        CT_TRK | CT_NEW,
        "old entry is gone, this is a new flow"
    );
    assert!(ct.is_empty());
}

#[test]
fn out_of_window_segment_is_invalid_and_harmless() {
    let mut ct = ct(16);
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    ct.process(&tcp(c, 1, s, 2, TCP_SYN), &seg(1000, 0), &commit(0), 0);
    ct.process(
        &tcp(s, 2, c, 1, TCP_SYN | TCP_ACK),
        &seg(5000, 1001),
        &track(0),
        0,
    );
    ct.process(&tcp(c, 1, s, 2, TCP_ACK), &seg(1001, 5001), &track(0), 0);
    let r = ct.process(
        &tcp(c, 1, s, 2, TCP_ACK),
        &seg(1001 + 50_000_000, 5001),
        &track(0),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_INV);
    assert_eq!(r.invalid, Some(InvalidReason::Tcp(TcpInvalid::OutOfWindow)));
    assert_eq!(ct.counters().get(Counter::InvalidTcpWindow), 1);
    let r = ct.process(&tcp(c, 1, s, 2, TCP_ACK), &seg(1001, 5001), &track(0), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    // Bad flags and a SYN-ACK opening nothing are invalid too.
    let r = ct.process(
        &tcp(c, 1, s, 2, TCP_SYN | TCP_FIN),
        &seg(1, 0),
        &commit(0),
        0,
    );
    assert_eq!(r.invalid, Some(InvalidReason::Tcp(TcpInvalid::BadFlags)));
    let r = ct.process(
        &tcp(c, 9, s, 9, TCP_SYN | TCP_ACK),
        &seg(1, 1),
        &commit(0),
        0,
    );
    assert_eq!(r.invalid, Some(InvalidReason::Tcp(TcpInvalid::NotNew)));
    assert_eq!(ct.len(), 1);
}

#[test]
fn set_mark_and_commit_marks() {
    let mut ct = ct(16);
    let f = PacketFacts::default();
    let act = CtAction {
        mark: Some((0x12, 0xff)),
        ..commit(0)
    };
    let r = ct.process(&udp("10.0.0.1", 1, "10.0.0.2", 2), &f, &act, 0);
    assert_eq!(r.ct_mark, 0x12);
    let id = r.conn.unwrap();
    assert!(ct.set_mark(id, 0x300, 0xf00));
    let r = ct.process(&udp("10.0.0.2", 2, "10.0.0.1", 1), &f, &track(0), 0);
    assert_eq!(r.ct_mark, 0x312);
    // A mark without commit is not applied.
    let act = CtAction {
        mark: Some((0, u32::MAX)),
        ..track(0)
    };
    assert_eq!(
        ct.process(&udp("10.0.0.1", 1, "10.0.0.2", 2), &f, &act, 0)
            .ct_mark,
        0x312
    );
    assert!(ct.dump(0).next().unwrap().to_string().contains(",mark=786"));
    ct.flush(None);
    assert!(!ct.set_mark(id, 1, 1), "stale handle refused");
}

#[test]
fn flush_marked_deletes_only_the_zones_connections_with_the_bit() {
    let mut ct = ct(16);
    let f = PacketFacts::default();
    let marked = |m: u32, zone: u16| CtAction {
        mark: Some((m, u32::MAX)),
        ..commit(zone)
    };
    ct.process(&udp("10.0.0.1", 1, "10.0.0.2", 2), &f, &marked(0x4, 0), 0);
    ct.process(&udp("10.0.0.1", 3, "10.0.0.2", 2), &f, &marked(0x6, 0), 0);
    ct.process(&udp("10.0.0.1", 4, "10.0.0.2", 2), &f, &marked(0x2, 0), 0);
    ct.process(&udp("10.0.0.1", 5, "10.0.0.2", 2), &f, &marked(0x4, 1), 0);
    assert_eq!(ct.flush_marked(0, 0x4), 2);
    let left: Vec<String> = ct.dump(0).map(|c| c.to_string()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|c| c.contains("sport=4,")), "{left:?}");
    assert!(left.iter().any(|c| c.contains("sport=5,")), "{left:?}");
}

#[test]
fn later_fragments_are_attributed_to_the_connection() {
    let mut ct = ct(16);
    let mut first = udp("10.0.0.1", 5000, "10.0.0.2", 53);
    first.nw_frag = FRAG_ANY;
    let f = PacketFacts {
        ip_id: 77,
        ..PacketFacts::default()
    };
    assert!(ct.process(&first, &f, &commit(0), 0).conn.is_some());
    let mut later = udp("10.0.0.1", 0, "10.0.0.2", 0);
    later.nw_frag = FRAG_ANY | FRAG_LATER;
    let r = ct.process(&later, &f, &track(0), 1);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert!(r.conn.is_some());
    let other = PacketFacts {
        ip_id: 78,
        ..PacketFacts::default()
    };
    let r = ct.process(&later, &other, &track(0), 1);
    assert_eq!(r.invalid, Some(InvalidReason::FragmentUnknown));
}

#[test]
fn non_ip_is_invalid() {
    let mut ct = ct(4);
    let k = FlowKey {
        eth_type: 0x0806,
        ..FlowKey::default()
    };
    let r = ct.process(&k, &PacketFacts::default(), &commit(0), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_INV);
    assert_eq!(ct.counters().get(Counter::InvalidNotIp), 1);
}

#[test]
fn ipv6_connections_track_and_dump() {
    let mut ct = ct(4);
    let a: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    let b: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
    let k = |s: std::net::Ipv6Addr, sp, d: std::net::Ipv6Addr, dp| FlowKey {
        eth_type: 0x86dd,
        ipv6_src: s.octets(),
        ipv6_dst: d.octets(),
        nw_proto: 17,
        tp_src: sp,
        tp_dst: dp,
        ..FlowKey::default()
    };
    let f = PacketFacts::default();
    ct.process(&k(a, 1, b, 2), &f, &commit(3), 0);
    let r = ct.process(&k(b, 2, a, 1), &f, &track(3), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    assert_eq!(
        dump_lines(&ct, 0),
        [
            "udp,orig=(src=fd00::1,dst=fd00::2,sport=1,dport=2),reply=(src=fd00::2,dst=fd00::1,sport=2,dport=1),zone=3"
        ]
    );
}

#[test]
fn force_commit_in_reply_direction_replaces_the_connection() {
    let mut ct = ct(4);
    let f = PacketFacts::default();
    let first = ct
        .process(&udp("10.0.0.1", 1, "10.0.0.2", 2), &f, &commit(0), 0)
        .conn
        .unwrap();
    let act = CtAction {
        force: true,
        ..commit(0)
    };
    let r = ct.process(&udp("10.0.0.2", 2, "10.0.0.1", 1), &f, &act, 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_ne!(r.conn.unwrap(), first);
    let e = ct.dump(0).next().unwrap();
    assert_eq!(e.orig.src, addr("10.0.0.2"));
}
