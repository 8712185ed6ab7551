//! ALGs through the public API: `ct(commit,alg=tftp|ftp)` control connections announce data
//! connections, which are `+rel`, report their control connection's tuple, mark and label, and
//! are NATed like it; FTP under NAT rewrites the announced address and shifts the sequence
//! numbers; expectations are bounded, expire, are counted and keyed per zone.

use conntrack::tcp::{TCP_ACK, TCP_SYN};
use conntrack::*;
use encap::flowkey::{CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK, FlowKey};
mod common;

use common::*;
use std::time::Duration;

/// Bytes before the payload in the frames given to conntrack (it reads only the payload).
const HDR: usize = 54;

fn table(cfg: Config) -> Conntrack {
    Conntrack::new(Config {
        hash_seed: Some(42),
        ..cfg
    })
    .unwrap()
}

/// One packet with `payload`, through `process_frame`.
fn send(
    ct: &mut Conntrack,
    key: &FlowKey,
    seq: u32,
    ack: u32,
    payload: &[u8],
    act: &CtAction<'_>,
    now: u64,
) -> CtResult {
    let mut frame = vec![0u8; HDR];
    frame.extend_from_slice(payload);
    let facts = PacketFacts {
        l4_payload_len: payload.len() as u32,
        payload_offset: HDR as u32,
        ..seg(seq, ack)
    };
    ct.process_frame(key, &facts, act, now, &frame, key)
}

fn udp_send(ct: &mut Conntrack, key: &FlowKey, act: &CtAction<'_>, now: u64) -> CtResult {
    send(ct, key, 0, 0, b"\x00\x01file\x00octet\x00", act, now)
}

fn with_alg(act: CtAction<'_>, alg: Alg) -> CtAction<'_> {
    CtAction {
        alg: Some(alg),
        ..act
    }
}

fn orig_of(r: &CtResult) -> Tuple {
    r.orig.expect("a tuple").0
}

fn tuple(proto: u8, src: &str, sport: u16, dst: &str, dport: u16, zone: u16) -> Tuple {
    Tuple {
        src: addr(src),
        dst: addr(dst),
        sport,
        dport,
        zone,
        proto,
        family: Family::V4,
    }
}

#[test]
fn tftp_answer_from_any_port_is_related_and_tracked() {
    let mut ct = table(Config::default());
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    let master = CtAction {
        mark: Some((7, u32::MAX)),
        ..with_alg(commit(3), Alg::Tftp)
    };
    let r = udp_send(&mut ct, &udp(c, 3000, s, 69), &master, 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_eq!(ct.expectations(), 1);
    assert_eq!(ct.counters().get(Counter::AlgExpected), 1);
    assert!(dump_lines(&ct, 0)[0].ends_with(",zone=3,mark=7,helper=tftp"));

    // The answer comes from another port: related, with the request's tuple and mark.
    let answer = udp(s, 4444, c, 3000);
    let r = udp_send(&mut ct, &answer, &track(3), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL);
    assert_eq!(orig_of(&r), tuple(17, c, 3000, s, 69, 3));
    assert_eq!(r.ct_mark, 7);
    // In another zone it is nothing of the kind.
    let r = udp_send(&mut ct, &answer, &track(4), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_eq!(orig_of(&r), tuple(17, s, 4444, c, 3000, 4));

    // Committed (its own mark is ignored, as in Open vSwitch), it is tracked as related.
    let data = CtAction {
        mark: Some((9, u32::MAX)),
        ..commit(3)
    };
    let r = udp_send(&mut ct, &answer, &data, SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL);
    assert_eq!(r.ct_mark, 7);
    assert_eq!(ct.counters().get(Counter::AlgRelated), 1);
    assert_eq!(ct.expectations(), 0, "used up");
    let r = udp_send(&mut ct, &udp(c, 3000, s, 4444), &track(3), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_REL);
    assert_eq!(orig_of(&r), tuple(17, c, 3000, s, 69, 3));
    assert_eq!(r.ct_mark, 7);
    let lines = dump_lines(&ct, SEC);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "udp,orig=(src=10.0.0.2,dst=10.0.0.1,sport=4444,dport=3000),reply=(src=10.0.0.1,dst=10.0.0.2,sport=3000,dport=4444),zone=3,mark=7"
        ) && !l.contains("helper")),
        "{lines:?}"
    );
}

#[test]
fn tftp_answer_is_translated_like_its_request() {
    let mut ct = table(Config::default());
    let (c, s, n) = ("10.0.0.1", "198.51.100.7", "192.0.2.9");
    let snat = NatSpec::snat(NatRange::addr(addr(n)));
    let plain = NatSpec::default();
    let master = CtAction {
        nat: Some(&snat),
        ..with_alg(commit(0), Alg::Tftp)
    };
    let r = udp_send(&mut ct, &udp(c, 3000, s, 69), &master, 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT);
    assert_eq!(r.rewrite.unwrap().src, addr(n));

    // The server answers the translated address; committing with `nat` translates it back.
    let answer = udp(s, 4444, n, 3000);
    let data = CtAction {
        nat: Some(&plain),
        ..commit(0)
    };
    let r = udp_send(&mut ct, &answer, &data, SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (addr(s), 4444, addr(c), 3000)
    );
    assert_eq!(orig_of(&r), tuple(17, c, 3000, s, 69, 0));
    // The client's next block acknowledgment goes back out translated.
    let track_nat = CtAction {
        nat: Some(&plain),
        ..track(0)
    };
    let r = udp_send(&mut ct, &udp(c, 3000, s, 4444), &track_nat, SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_REL | CT_SNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (addr(n), 3000, addr(s), 4444)
    );
}

/// A control connection from `c:40000` to `s:21` (seen by the server as from `n`), through its
/// handshake: client sequence numbers start at 101, the server's at 901.
fn ftp_control(
    ct: &mut Conntrack,
    c: &str,
    s: &str,
    n: &str,
    first: &CtAction<'_>,
    later: &CtAction<'_>,
) {
    handshake(
        ct,
        |flags| tcp(c, 40000, s, 21, flags),
        |flags| tcp(s, 21, n, 40000, flags),
        first,
        later,
    );
}

/// An FTP control connection's actions under NAT: `ct(commit,alg=ftp,nat(NAT))` for its first
/// packet, `ct(nat)` (`plain`: a `nat` without a range) for the others.
fn ftp_nat<'a>(nat: &'a NatSpec, plain: &'a NatSpec) -> (CtAction<'a>, CtAction<'a>) {
    let master = CtAction {
        nat: Some(nat),
        ..with_alg(commit(0), Alg::Ftp)
    };
    let tracked = CtAction {
        nat: Some(plain),
        ..track(0)
    };
    (master, tracked)
}

/// A TCP handshake: the client's SYN (its packets keyed by `client(flags)`) with `first`, the
/// server's SYN-ACK (keyed by `server(flags)`) and the client's ACK with `later`. Client
/// sequence numbers start at 101, the server's at 901.
fn handshake(
    ct: &mut Conntrack,
    client: impl Fn(u16) -> FlowKey,
    server: impl Fn(u16) -> FlowKey,
    first: &CtAction<'_>,
    later: &CtAction<'_>,
) {
    let r = send(ct, &client(TCP_SYN), 100, 0, b"", first, 0);
    assert_eq!(r.ct_state & (CT_NEW | CT_INV), CT_NEW);
    let r = send(ct, &server(TCP_SYN | TCP_ACK), 900, 101, b"", later, 0);
    assert_eq!(r.ct_state & (CT_EST | CT_RPL), CT_EST | CT_RPL);
    let r = send(ct, &client(TCP_ACK), 101, 901, b"", later, 0);
    assert_eq!(r.ct_state & (CT_EST | CT_INV), CT_EST);
}

#[test]
fn ftp_active_port_command_opens_the_servers_connection() {
    let mut ct = table(Config::default());
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    let master = CtAction {
        label: Some((0xabc, u128::MAX)),
        ..with_alg(commit(0), Alg::Ftp)
    };
    ftp_control(&mut ct, c, s, c, &master, &track(0));
    let port = b"PORT 10,0,0,1,19,137\r\n";
    let r = send(
        &mut ct,
        &tcp(c, 40000, s, 21, TCP_ACK),
        101,
        901,
        port,
        &track(0),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    assert_eq!(r.tcp_fix, None, "no NAT, nothing to rewrite");
    assert_eq!(ct.expectations(), 1);

    // The server connects from port 20 to the announced port.
    let syn = tcp(s, 20, c, 5001, TCP_SYN);
    let r = send(&mut ct, &syn, 500, 0, b"", &commit(0), SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL);
    assert_eq!(orig_of(&r), tuple(6, c, 40000, s, 21, 0));
    assert_eq!(r.ct_label, 0xabc);
    let r = send(
        &mut ct,
        &tcp(c, 5001, s, 20, TCP_SYN | TCP_ACK),
        700,
        501,
        b"",
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_REL);
    // Another port of the client is not announced.
    let r = send(
        &mut ct,
        &tcp(s, 20, c, 5002, TCP_SYN),
        500,
        0,
        b"",
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    let lines = dump_lines(&ct, SEC);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("dport=21") && l.ends_with("helper=ftp")),
        "{lines:?}"
    );
}

#[test]
fn ftp_passive_and_extended_passive_replies() {
    for (reply, port) in [
        (
            &b"227 Entering Passive Mode (10,0,0,2,117,48).\r\n"[..],
            30000,
        ),
        (
            &b"229 Entering Extended Passive Mode (|||6446|)\r\n"[..],
            6446,
        ),
    ] {
        let mut ct = table(Config::default());
        let (c, s) = ("10.0.0.1", "10.0.0.2");
        ftp_control(&mut ct, c, s, c, &with_alg(commit(0), Alg::Ftp), &track(0));
        let r = send(
            &mut ct,
            &tcp(s, 21, c, 40000, TCP_ACK),
            901,
            101,
            reply,
            &track(0),
            0,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
        let r = send(
            &mut ct,
            &tcp(c, 50000, s, port, TCP_SYN),
            300,
            0,
            b"",
            &commit(0),
            SEC,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL, "{port}");
        assert_eq!(orig_of(&r), tuple(6, c, 40000, s, 21, 0));
    }
}

#[test]
fn ftp_eprt_over_ipv6() {
    let mut ct = table(Config::default());
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let k = |src: &str, sport, dst: &str, dport, flags| FlowKey {
        eth_type: 0x86dd,
        ipv6_src: v6(src),
        ipv6_dst: v6(dst),
        nw_proto: 6,
        tp_src: sport,
        tp_dst: dport,
        tcp_flags: flags,
        ..FlowKey::default()
    };
    let (c, s) = ("fd00::1", "fd00::2");
    handshake(
        &mut ct,
        |flags| k(c, 40000, s, 21, flags),
        |flags| k(s, 21, c, 40000, flags),
        &with_alg(commit(0), Alg::Ftp),
        &track(0),
    );
    let r = send(
        &mut ct,
        &k(c, 40000, s, 21, TCP_ACK),
        101,
        901,
        b"EPRT |2|fd00::1|5282|\r\n",
        &track(0),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    let r = send(
        &mut ct,
        &k(s, 20, c, 5282, TCP_SYN),
        1,
        0,
        b"",
        &track(0),
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL);
}

#[test]
fn ftp_port_through_source_nat_is_rewritten_and_sequence_numbers_follow() {
    let mut ct = table(Config::default());
    let (c, s, n) = ("10.0.0.1", "198.51.100.7", "192.0.2.9");
    let snat = NatSpec::snat(NatRange::addr(addr(n)));
    let plain = NatSpec::default();
    let (master, tracked) = ftp_nat(&snat, &plain);
    ftp_control(&mut ct, c, s, n, &master, &tracked);

    let port = b"PORT 10,0,0,1,19,137\r\n";
    let client = |flags| tcp(c, 40000, s, 21, flags);
    let server = |flags| tcp(s, 21, n, 40000, flags);
    let r = send(&mut ct, &client(TCP_ACK), 101, 901, port, &tracked, 0);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_SNAT);
    let fix = r.tcp_fix.expect("a rewrite");
    assert_eq!((fix.seq_delta, fix.ack_delta), (0, 0));
    let edit = fix.edit.unwrap();
    assert_eq!(
        (edit.offset, edit.old_len, edit.text()),
        (5, 8, &b"192,0,2,9"[..])
    );
    assert_eq!(edit.delta(), 1);

    // The server acknowledges one byte more than the client sent: tracked as valid, and its
    // acknowledgment shifted back.
    let r = send(&mut ct, &server(TCP_ACK), 901, 124, b"", &tracked, 0);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_DNAT);
    let fix = r.tcp_fix.unwrap();
    assert_eq!((fix.seq_delta, fix.ack_delta, fix.edit), (0, -1, None));
    // The client's next segment moves up by one.
    let r = send(
        &mut ct,
        &client(TCP_ACK),
        123,
        901,
        b"LIST\r\n",
        &tracked,
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_SNAT);
    assert_eq!(r.tcp_fix.unwrap().seq_delta, 1);
    // A retransmission of the PORT segment is rewritten alike, the shift counted once.
    let r = send(&mut ct, &client(TCP_ACK), 101, 901, port, &tracked, 0);
    let fix = r.tcp_fix.unwrap();
    assert_eq!((fix.seq_delta, fix.edit.unwrap().delta()), (0, 1));
    let r = send(&mut ct, &client(TCP_ACK), 129, 901, b"", &tracked, 0);
    assert_eq!(r.tcp_fix.unwrap().seq_delta, 1);
    // Without `nat` in the action, Open vSwitch does no ALG rewriting either.
    let r = send(&mut ct, &client(TCP_ACK), 129, 901, b"", &track(0), 0);
    assert_eq!(r.tcp_fix, None);

    // The server connects to the translated address; `ct(commit,nat)` sends it to the client.
    let data = CtAction {
        nat: Some(&plain),
        ..commit(0)
    };
    let r = send(
        &mut ct,
        &tcp(s, 20, n, 5001, TCP_SYN),
        500,
        0,
        b"",
        &data,
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.dst, rw.dport), (addr(c), 5001));
    let r = send(
        &mut ct,
        &tcp(c, 5001, s, 20, TCP_SYN | TCP_ACK),
        700,
        501,
        b"",
        &tracked,
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_REL | CT_SNAT);
    assert_eq!(r.rewrite.unwrap().src, addr(n));
}

#[test]
fn ftp_pasv_reply_from_a_dnat_backend_names_the_service() {
    let mut ct = table(Config::default());
    let (c, vip, be) = ("10.0.0.1", "10.96.0.10", "10.244.1.15");
    let dnat = NatSpec::dnat(NatRange::addr(addr(be)));
    let plain = NatSpec::default();
    let (master, tracked) = ftp_nat(&dnat, &plain);
    // The backend answers from its own address: the reply key of the DNAT binding.
    handshake(
        &mut ct,
        |flags| tcp(c, 40000, vip, 21, flags),
        |flags| tcp(be, 21, c, 40000, flags),
        &master,
        &tracked,
    );
    send(
        &mut ct,
        &tcp(c, 40000, vip, 21, TCP_ACK),
        101,
        901,
        b"PASV\r\n",
        &tracked,
        0,
    );
    let pasv = b"227 Entering Passive Mode (10,244,1,15,117,48).\r\n";
    let r = send(
        &mut ct,
        &tcp(be, 21, c, 40000, TCP_ACK),
        901,
        107,
        pasv,
        &tracked,
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT);
    let edit = r.tcp_fix.unwrap().edit.unwrap();
    assert_eq!((edit.text(), edit.delta()), (&b"10,96,0,10"[..], -1));
    // The client acknowledges one byte less than the server sent.
    let acked = 901 + pasv.len() as u32 - 1;
    let r = send(
        &mut ct,
        &tcp(c, 40000, vip, 21, TCP_ACK),
        107,
        acked,
        b"",
        &tracked,
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_DNAT);
    let fix = r.tcp_fix.unwrap();
    assert_eq!((fix.seq_delta, fix.ack_delta), (0, 1));

    let data = CtAction {
        nat: Some(&plain),
        ..commit(0)
    };
    let r = send(
        &mut ct,
        &tcp(c, 50000, vip, 30000, TCP_SYN),
        1,
        0,
        b"",
        &data,
        SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL | CT_DNAT);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.dst, rw.dport), (addr(be), 30000));
}

#[test]
fn ftp_bounce_and_malformed_announcements_are_invalid() {
    let mut ct = table(Config::default());
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    ftp_control(&mut ct, c, s, c, &with_alg(commit(0), Alg::Ftp), &track(0));
    let mut seq = 101;
    for line in [&b"PORT 10,0,0,99,19,137\r\n"[..], b"PORT 10,0,0,1,19\r\n"] {
        let r = send(
            &mut ct,
            &tcp(c, 40000, s, 21, TCP_ACK),
            seq,
            901,
            line,
            &track(0),
            0,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_INV);
        seq += line.len() as u32;
    }
    assert_eq!(ct.counters().get(Counter::AlgFtpInvalid), 2);
    assert_eq!(ct.expectations(), 0);
    // Without the ALG, the same payload is just data.
    let mut plain = table(Config::default());
    ftp_control(&mut plain, c, s, c, &commit(0), &track(0));
    let r = send(
        &mut plain,
        &tcp(c, 40000, s, 21, TCP_ACK),
        101,
        901,
        b"PORT 10,0,0,99,19,137\r\n",
        &track(0),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
    assert_eq!(plain.expectations(), 0);
}

#[test]
fn expectations_are_bounded_expire_and_leave_with_their_control_connection() {
    let mut ct = table(Config {
        max_expectations: 2,
        expectation_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    let tftp = with_alg(commit(0), Alg::Tftp);
    for port in [3000, 3001, 3002] {
        udp_send(&mut ct, &udp("10.0.0.1", port, "10.0.0.2", 69), &tftp, 0);
    }
    assert_eq!(ct.expectations(), 2);
    assert_eq!(ct.counters().get(Counter::AlgExpectFull), 1);
    // A repeated request refreshes its expectation (at 5 s, so it lives to 15 s).
    udp_send(
        &mut ct,
        &udp("10.0.0.1", 3000, "10.0.0.2", 69),
        &tftp,
        5 * SEC,
    );
    assert_eq!(ct.counters().get(Counter::AlgExpected), 2);
    // At 12 s the other one has expired: the answer to it is not related.
    let r = udp_send(
        &mut ct,
        &udp("10.0.0.2", 7000, "10.0.0.1", 3001),
        &track(0),
        12 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_eq!(ct.counters().get(Counter::AlgExpectRemoved), 1);
    let r = udp_send(
        &mut ct,
        &udp("10.0.0.2", 7000, "10.0.0.1", 3000),
        &track(0),
        12 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL);
    // The expiry sweep and a flush remove the rest.
    assert_eq!(ct.expectations(), 1);
    ct.flush(Some(0));
    assert_eq!(ct.expectations(), 0);
    let r = udp_send(
        &mut ct,
        &udp("10.0.0.2", 7000, "10.0.0.1", 3000),
        &track(0),
        12 * SEC,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    // A control connection that times out takes its expectations along.
    udp_send(
        &mut ct,
        &udp("10.0.0.1", 3005, "10.0.0.2", 69),
        &tftp,
        20 * SEC,
    );
    assert_eq!(ct.expectations(), 1);
    let removed = ct.counters().get(Counter::AlgExpectRemoved);
    assert!(ct.expire(1000 * SEC, 100) >= 1);
    assert_eq!(ct.expectations(), 0);
    assert_eq!(ct.counters().get(Counter::AlgExpectRemoved), removed + 1);
}

#[test]
fn uncommitted_control_connection_announces_nothing() {
    let mut ct = table(Config::default());
    let r = udp_send(
        &mut ct,
        &udp("10.0.0.1", 3000, "10.0.0.2", 69),
        &with_alg(track(0), Alg::Tftp),
        0,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    assert_eq!(ct.expectations(), 0);
    // `alg=ftp` on a UDP connection does nothing either.
    udp_send(
        &mut ct,
        &udp("10.0.0.1", 3000, "10.0.0.2", 69),
        &with_alg(commit(0), Alg::Ftp),
        0,
    );
    assert_eq!(ct.expectations(), 0);
    assert!(!dump_lines(&ct, 0)[0].contains("helper"));
}

#[test]
fn related_connection_across_shards_with_nat() {
    let ct = Sharded::new(
        Config {
            hash_seed: Some(7),
            ..Config::default()
        },
        8,
    )
    .unwrap();
    let snat = NatSpec::snat(NatRange::addr(addr("192.0.2.9")));
    let plain = NatSpec::default();
    let master = CtAction {
        nat: Some(&snat),
        ..with_alg(commit(0), Alg::Tftp)
    };
    let data = CtAction {
        nat: Some(&plain),
        ..commit(0)
    };
    for i in 0..16u32 {
        let c = format!("10.0.0.{}", i + 1);
        let s = format!("198.51.100.{}", i + 1);
        let mut cur = Cursor::default();
        let frame = [0u8; HDR + 4];
        let facts = PacketFacts {
            l4_payload_len: 4,
            payload_offset: HDR as u32,
            ..PacketFacts::default()
        };
        let req = udp(&c, 3000, &s, 69);
        let r = ct.process_frame(&mut cur, &req, &facts, &master, 0, Some((&frame, &req)));
        assert_eq!(r.ct_state & CT_SNAT, CT_SNAT);
        let answer = udp(&s, 4444, "192.0.2.9", r.rewrite.unwrap().sport);
        let r = ct.process_frame(&mut cur, &answer, &facts, &data, 0, Some((&frame, &answer)));
        assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_REL | CT_DNAT, "{c} {s}");
        assert_eq!(r.rewrite.unwrap().dst, addr(&c));
        let back = udp(&c, 3000, &s, 4444);
        let track_nat = CtAction {
            nat: Some(&plain),
            ..track(0)
        };
        let r = ct.process_frame(
            &mut cur,
            &back,
            &facts,
            &track_nat,
            0,
            Some((&frame, &back)),
        );
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_REL | CT_SNAT);
    }
    assert_eq!(ct.counters().get(Counter::AlgRelated), 16);
    assert_eq!(ct.expectations(), 0);
}

mod arbitrary_payloads {
    //! What the fuzz target `ftp_alg` checks, run as a property test: any control payload
    //! (random bytes, or an announcement with bytes changed) never panics, and a rewrite it
    //! asks for lies inside the payload.
    use super::*;
    use conntrack::alg::ftp::{self, FtpMsg};
    use proptest::prelude::*;

    fn payloads() -> impl Strategy<Value = Vec<u8>> {
        let seeds: Vec<&'static [u8]> = vec![
            b"PORT 10,0,0,1,19,137\r\n",
            b"227 Entering Passive Mode (10,0,0,2,117,48).\r\n",
            b"EPRT |1|10.0.0.1|5282|\r\n",
            b"229 Entering Extended Passive Mode (|||6446|)\r\n",
        ];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            (
                prop::sample::select(seeds),
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(seed, changes, cut)| {
                    let mut v = seed.to_vec();
                    for (at, b) in changes {
                        let i = at.index(v.len());
                        v[i] = b;
                    }
                    v.truncate(cut.index(v.len() + 1));
                    v
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parser_and_alg_never_panic(data in payloads()) {
            for family in [Family::V4, Family::V6] {
                if let FtpMsg::Endpoint(e) = ftp::parse(&data, family) {
                    let (a, b) = e.addr_span;
                    prop_assert!(a <= b && b <= data.len().min(ftp::WINDOW));
                    prop_assert_eq!(e.addr.is_some(), b > a);
                    prop_assert_ne!(e.port, 0);
                }
            }
            let mut ct = table(Config { max_conns: 16, max_expectations: 4, ..Config::default() });
            let (c, s, n) = ("10.0.0.1", "10.0.0.2", "192.0.2.9");
            let snat = NatSpec::snat(NatRange::addr(addr(n)));
            let plain = NatSpec::default();
            let (master, tracked) = ftp_nat(&snat, &plain);
            ftp_control(&mut ct, c, s, n, &master, &tracked);
            for (k, seq, ack) in [
                (tcp(c, 40000, s, 21, TCP_ACK), 101, 901),
                (tcp(s, 21, n, 40000, TCP_ACK), 901, 101),
            ] {
                let r = send(&mut ct, &k, seq, ack, &data, &tracked, 0);
                if let Some(edit) = r.tcp_fix.and_then(|f| f.edit) {
                    let end = usize::from(edit.offset) + usize::from(edit.old_len);
                    prop_assert!(end <= data.len().min(ftp::WINDOW));
                    prop_assert_eq!(edit.delta(), edit.text().len() as i32 - i32::from(edit.old_len));
                }
            }
        }
    }
}
