//! Zone and source connection limits through the public API (`ct-set-limits` semantics).

use conntrack::tcp::TCP_SYN;
use conntrack::*;
use encap::flowkey::{CT_EST, CT_NEW, CT_RPL, CT_TRK, FlowKey};
mod common;

use common::*;

fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    FlowKey {
        nw_proto: 6,
        tcp_flags: TCP_SYN,
        ..udp(src, sport, dst, dport)
    }
}

fn ct(max_conns: usize) -> Conntrack {
    table_with(max_conns, 7)
}

fn open(ct: &mut Conntrack, zone: u16, src: &str, sport: u16, now: u64) -> Option<CtDrop> {
    ct.process(
        &udp(src, sport, "10.0.9.9", 53),
        &PacketFacts::default(),
        &commit(zone),
        now,
    )
    .drop
}

fn v4(s: &str) -> (Family, Addr) {
    (Family::V4, Addr::v4(ip(s)))
}

#[test]
fn zone_limit_refuses_new_connections_of_that_zone_only() {
    let mut ct = ct(1000);
    ct.set_zone_limit(1, 3);
    for p in 0..3 {
        assert_eq!(open(&mut ct, 1, "10.0.0.1", 1000 + p, 0), None);
    }
    let r = ct.process(
        &udp("10.0.0.1", 2000, "10.0.9.9", 53),
        &PacketFacts::default(),
        &commit(1),
        0,
    );
    assert_eq!(r.drop, Some(CtDrop::ZoneLimit));
    assert_eq!(r.ct_state, CT_TRK | CT_NEW, "refused, not invalid");
    assert!(r.conn.is_none(), "nothing committed");
    assert_eq!(ct.counters().get(Counter::DropZoneLimit), 1);
    assert_eq!(
        ct.zone_limit(1),
        ZoneLimit {
            zone: 1,
            limit: 3,
            count: 3
        }
    );
    // Other zones are unlimited (default 0) and unaffected.
    for p in 0..10 {
        assert_eq!(open(&mut ct, 2, "10.0.0.1", 1000 + p, 0), None);
    }
    // Existing connections of the full zone keep working, replies included.
    let r = ct.process(
        &udp("10.0.9.9", 53, "10.0.0.1", 1000),
        &PacketFacts::default(),
        &commit(1),
        SEC,
    );
    assert_eq!(r.drop, None);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL);
    // Tracking without commit is never refused.
    let r = ct.process(
        &udp("10.0.0.1", 3000, "10.0.9.9", 53),
        &PacketFacts::default(),
        &CtAction {
            zone: 1,
            ..CtAction::default()
        },
        SEC,
    );
    assert_eq!((r.drop, r.ct_state), (None, CT_TRK | CT_NEW));
    // Once one ends (flush of the zone here), one more fits.
    assert_eq!(ct.flush(Some(1)), 3);
    assert_eq!(ct.zone_limit(1).count, 0);
    assert_eq!(open(&mut ct, 1, "10.0.0.1", 2000, SEC), None);
}

#[test]
fn default_limit_zero_and_delete_follow_ovs() {
    let mut ct = ct(1000);
    assert_eq!(ct.default_zone_limit(), 0, "unlimited at first");
    ct.set_default_zone_limit(2);
    ct.set_zone_limit(5, 0); // its own: unlimited whatever the default
    ct.set_zone_limit(6, 4);
    assert_eq!(
        ct.zone_limit(9).limit,
        2,
        "a zone without its own takes the default"
    );
    assert_eq!(ct.zone_limit(5).limit, 0);
    for p in 0..2 {
        assert_eq!(open(&mut ct, 9, "10.0.0.1", p, 0), None);
    }
    assert_eq!(open(&mut ct, 9, "10.0.0.1", 99, 0), Some(CtDrop::ZoneLimit));
    for p in 0..20 {
        assert_eq!(open(&mut ct, 5, "10.0.0.1", p, 0), None);
    }
    assert_eq!(
        ct.zone_limits(),
        vec![
            ZoneLimit {
                zone: 5,
                limit: 0,
                count: 20
            },
            ZoneLimit {
                zone: 6,
                limit: 4,
                count: 0
            }
        ]
    );
    assert!(ct.del_zone_limit(5));
    assert!(!ct.del_zone_limit(5), "deleting twice finds nothing");
    assert_eq!(ct.zone_limit(5).limit, 2, "back to the default");
    assert_eq!(open(&mut ct, 5, "10.0.0.1", 99, 0), Some(CtDrop::ZoneLimit));
    // A new default reaches zones without their own, not the others.
    ct.set_default_zone_limit(0);
    assert_eq!(ct.zone_limit(5).limit, 0);
    assert_eq!(ct.zone_limit(6).limit, 4);
    assert_eq!(open(&mut ct, 5, "10.0.0.1", 99, 0), None);
}

#[test]
fn lowering_a_limit_evicts_nothing() {
    let mut ct = ct(1000);
    for p in 0..5 {
        assert_eq!(open(&mut ct, 1, "10.0.0.1", p, 0), None);
    }
    ct.set_zone_limit(1, 2);
    assert_eq!(ct.len(), 5);
    assert_eq!(ct.zone_limit(1).count, 5);
    assert_eq!(open(&mut ct, 1, "10.0.0.1", 99, 0), Some(CtDrop::ZoneLimit));
}

#[test]
fn expired_connections_are_reaped_at_the_limit() {
    let mut ct = ct(1000);
    ct.set_zone_limit(1, 2);
    // SYNs only: tcp_first times out after 30 s.
    for p in 0..2 {
        let r = ct.process(
            &syn("10.0.0.1", 40000 + p, "10.0.9.9", 80),
            &PacketFacts::default(),
            &commit(1),
            0,
        );
        assert_eq!(r.drop, None);
    }
    let refused = ct.process(
        &syn("10.0.0.1", 40009, "10.0.9.9", 80),
        &PacketFacts::default(),
        &commit(1),
        SEC,
    );
    assert_eq!(refused.drop, Some(CtDrop::ZoneLimit));
    // 31 s later the first two have expired: the commit reaps them and fits.
    let r = ct.process(
        &syn("10.0.0.1", 40009, "10.0.9.9", 80),
        &PacketFacts::default(),
        &commit(1),
        31 * SEC,
    );
    assert_eq!(r.drop, None);
    assert_eq!(ct.zone_limit(1).count, 1);
}

#[test]
fn source_limit_bounds_one_address_and_leaves_the_others() {
    let mut ct = ct(1000);
    let (fa, a) = v4("10.0.0.1");
    let (fb, b) = v4("10.0.0.2");
    ct.set_source_limits(&[(1, fa, a, 3), (1, fb, b, 3)]);
    for p in 0..3 {
        assert_eq!(open(&mut ct, 1, "10.0.0.1", p, 0), None);
    }
    for p in 3..50 {
        assert_eq!(
            open(&mut ct, 1, "10.0.0.1", p, 0),
            Some(CtDrop::SourceLimit)
        );
    }
    assert_eq!(ct.counters().get(Counter::DropSourceLimit), 47);
    // Source B of the same zone still opens its own.
    for p in 0..3 {
        assert_eq!(open(&mut ct, 1, "10.0.0.2", p, 0), None);
    }
    // An address without a limit, and A in another zone, are not limited.
    for p in 0..10 {
        assert_eq!(open(&mut ct, 1, "10.0.0.3", p, 0), None);
        assert_eq!(open(&mut ct, 2, "10.0.0.1", p, 0), None);
    }
    let counts: Vec<(String, u32, u32)> = ct
        .source_limits()
        .iter()
        .map(|l| (l.src_text(), l.limit, l.count))
        .collect();
    assert_eq!(
        counts,
        [("10.0.0.1".into(), 3, 3), ("10.0.0.2".into(), 3, 3)]
    );
    // Replies to A's connections do not count as A's (they are the same connections).
    let r = ct.process(
        &udp("10.0.9.9", 53, "10.0.0.1", 0),
        &PacketFacts::default(),
        &commit(1),
        1,
    );
    assert_eq!((r.drop, r.ct_state), (None, CT_TRK | CT_EST | CT_RPL));
    // One of A's ends: one more fits.
    assert_eq!(ct.flush(Some(1)), 3 + 3 + 10);
    assert_eq!(ct.source_limits()[0].count, 0);
    assert_eq!(open(&mut ct, 1, "10.0.0.1", 77, 1), None);
}

#[test]
fn replacing_source_limits_keeps_counts_and_counts_existing_connections() {
    let mut ct = ct(1000);
    let (fa, a) = v4("10.0.0.1");
    let (fb, b) = v4("10.0.0.2");
    // B has 4 connections before any limit exists.
    for p in 0..4 {
        assert_eq!(open(&mut ct, 1, "10.0.0.2", p, 0), None);
    }
    ct.set_source_limits(&[(1, fa, a, 2)]);
    for p in 0..2 {
        assert_eq!(open(&mut ct, 1, "10.0.0.1", p, 0), None);
    }
    // Adding B: its existing connections are counted, A keeps its count and gets a new limit.
    ct.set_source_limits(&[(1, fa, a, 5), (1, fb, b, 4)]);
    let l = ct.source_limits();
    assert_eq!((l[0].limit, l[0].count), (5, 2));
    assert_eq!((l[1].limit, l[1].count), (4, 4));
    assert_eq!(
        open(&mut ct, 1, "10.0.0.2", 99, 0),
        Some(CtDrop::SourceLimit)
    );
    // Removing A: its connections no longer count anywhere; re-adding counts them again.
    ct.set_source_limits(&[(1, fb, b, 4)]);
    assert_eq!(ct.source_limits().len(), 1);
    for p in 10..20 {
        assert_eq!(open(&mut ct, 1, "10.0.0.1", p, 0), None);
    }
    ct.set_source_limits(&[(1, fb, b, 4), (1, fa, a, 0)]);
    let l = ct.source_limits();
    assert_eq!(
        (l[0].limit, l[0].count),
        (0, 12),
        "0 counts without refusing"
    );
    assert_eq!(open(&mut ct, 1, "10.0.0.1", 99, 0), None);
    assert_eq!(ct.source_limits()[0].count, 13);
    // Removing all: nothing is looked up any more, and deletes of old connections are harmless.
    ct.set_source_limits(&[]);
    assert!(ct.source_limits().is_empty());
    ct.flush(None);
    assert_eq!(ct.zone_limit(1).count, 0);
}

#[test]
fn zone_counts_follow_every_way_out() {
    // Commit, reply-direction force, TCP reopen, expiry and flush all keep the count right.
    let mut ct = ct(1000);
    let f = PacketFacts::default();
    let r = ct.process(&syn("10.0.0.1", 1, "10.0.0.2", 80), &f, &commit(3), 0);
    assert!(r.drop.is_none());
    assert_eq!(ct.zone_limit(3).count, 1);
    // `force` from the reply direction replaces the connection: still one.
    let r = ct.process(&udp("10.0.0.5", 9, "10.0.0.6", 9), &f, &commit(3), 0);
    assert!(r.drop.is_none());
    let r = ct.process(
        &udp("10.0.0.6", 9, "10.0.0.5", 9),
        &f,
        &CtAction {
            zone: 3,
            commit: true,
            force: true,
            ..CtAction::default()
        },
        0,
    );
    assert!(r.drop.is_none());
    assert_eq!(ct.zone_limit(3).count, 2);
    assert_eq!(ct.len(), 2);
    ct.expire(100 * SEC, 100);
    assert_eq!(ct.zone_limit(3).count, 0);
    assert!(ct.is_empty());
}

/// Opens a TCP connection `src:sport` → 10.0.9.9:80 in `zone` with a full handshake, closes
/// it with FINs from both sides (TIME_WAIT); the commit's drop, if refused.
fn open_and_close_tcp(
    ct: &mut Conntrack,
    zone: u16,
    src: &str,
    sport: u16,
    now: u64,
) -> Option<CtDrop> {
    use conntrack::tcp::{TCP_ACK, TCP_FIN};
    let s = "10.0.9.9";
    let r = ct.process(
        &tcp(src, sport, s, 80, TCP_SYN),
        &seg(100, 0),
        &commit(zone),
        now,
    );
    if r.drop.is_some() {
        return r.drop;
    }
    let steps = [
        (false, TCP_SYN | TCP_ACK, 900, 101),
        (true, TCP_ACK, 101, 901),
        (true, TCP_FIN | TCP_ACK, 101, 901),
        (false, TCP_FIN | TCP_ACK, 901, 102),
        (true, TCP_ACK, 102, 902),
    ];
    for (from_client, flags, seq, ack) in steps {
        let k = if from_client {
            tcp(src, sport, s, 80, flags)
        } else {
            tcp(s, 80, src, sport, flags)
        };
        let r = ct.process(&k, &seg(seq, ack), &commit(zone), now);
        assert_eq!(r.ct_state & CT_EST, CT_EST, "{flags:#x}: {r:?}");
    }
    let e = ct
        .dump(now)
        .find(|e| e.orig.sport == sport && e.orig.src == addr(src))
        .unwrap();
    assert_eq!(e.tcp_state, Some(TcpState::TimeWait));
    None
}

#[test]
fn closed_tcp_connections_do_not_hold_a_place_against_source_or_zone_limits() {
    // Linux's nf_conncount (connlimit, nft `ct count`, OVS kernel zone limits) skips closed
    // connections: three short connections closed by FIN must not refuse a fourth for the
    // 30 s of their TIME_WAIT.
    let mut ct = ct(1000);
    let (fa, a) = v4("10.0.0.1");
    ct.set_source_limits(&[(1, fa, a, 3)]);
    ct.set_zone_limit(2, 3);
    for p in 0..3 {
        assert_eq!(
            open_and_close_tcp(&mut ct, 1, "10.0.0.1", 40000 + p, 0),
            None
        );
        assert_eq!(
            open_and_close_tcp(&mut ct, 2, "10.0.0.2", 40000 + p, 0),
            None
        );
    }
    assert_eq!(ct.len(), 6, "the closed connections stay for late segments");
    assert_eq!(ct.source_limits()[0].count, 0);
    assert_eq!(ct.zone_limit(2).count, 0);
    assert_eq!(ct.zone_counts(), vec![(1, 3), (2, 3)], "still in the table");
    // A fourth (and more) fit, up to the limit of open ones.
    for p in 3..6 {
        assert_eq!(open(&mut ct, 1, "10.0.0.1", p, SEC), None);
        assert_eq!(open(&mut ct, 2, "10.0.0.2", p, SEC), None);
    }
    assert_eq!(
        open(&mut ct, 1, "10.0.0.1", 99, SEC),
        Some(CtDrop::SourceLimit)
    );
    assert_eq!(
        open(&mut ct, 2, "10.0.0.2", 99, SEC),
        Some(CtDrop::ZoneLimit)
    );
    assert_eq!(ct.source_limits()[0].count, 3);
    assert_eq!(ct.zone_limit(2).count, 3);
    // A source limit set later does not count the closed ones either.
    let (fb, b) = v4("10.0.0.2");
    ct.set_source_limits(&[(1, fa, a, 3), (2, fb, b, 5)]);
    assert_eq!(
        ct.source_limits()[1].count,
        3,
        "the three open UDP ones only"
    );
    // Removal of a closed connection does not count it out twice.
    assert_eq!(ct.expire(40 * SEC, 100), 6, "the TIME_WAITs");
    assert_eq!(ct.source_limits()[0].count, 3);
    assert_eq!(ct.zone_limit(2).count, 3);
    assert_eq!(ct.expire(100 * SEC, 100), 6, "the UDP ones");
    assert_eq!(ct.source_limits()[0].count, 0);
    assert_eq!(ct.zone_limit(2).count, 0);
    assert!(ct.zone_counts().is_empty());
}
