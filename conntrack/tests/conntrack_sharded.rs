//! The sharded table (`Sharded`, what forwarding threads share): replies of NAT bindings found
//! across shards, NAT bindings unique across shards, limits exact across shards and threads,
//! expiry, flush, snapshot and restore, running counts per zone and per DNAT binding.

use conntrack::*;
use encap::flowkey::{CT_DNAT, CT_EST, CT_NEW, CT_RPL, CT_SNAT, CT_TRK, FlowKey};
use std::net::Ipv4Addr;

mod common;
use common::seg;

const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap())
}

fn addr(s: &str) -> Addr {
    Addr::v4(ip(s))
}

fn udp(src: u32, sport: u16, dst: u32, dport: u16) -> FlowKey {
    FlowKey {
        eth_type: 0x0800,
        nw_src: src,
        nw_dst: dst,
        nw_proto: 17,
        tp_src: sport,
        tp_dst: dport,
        ..FlowKey::default()
    }
}

/// A TCP segment `src:sport` → `dst:dport` with `flags`.
fn tcp_key(src: u32, sport: u16, dst: u32, dport: u16, flags: u16) -> FlowKey {
    FlowKey {
        nw_proto: 6,
        tcp_flags: flags,
        ..udp(src, sport, dst, dport)
    }
}

fn table(max_conns: usize, shards: usize) -> Sharded {
    Sharded::new(
        Config {
            max_conns,
            hash_seed: Some(7),
            ..Config::default()
        },
        shards,
    )
    .unwrap()
}

fn run(t: &Sharded, key: &FlowKey, act: &CtAction<'_>, now: u64) -> CtResult {
    let mut cur = Cursor::default();
    t.process_frame(&mut cur, key, &PacketFacts::default(), act, now, None)
}

fn nat(zone: u16, spec: &NatSpec) -> CtAction<'_> {
    CtAction {
        zone,
        commit: true,
        nat: Some(spec),
        ..CtAction::default()
    }
}

/// Commits the UDP flow `key` and answers it (established: a full table never removes it);
/// the commit's result.
fn open_answered(t: &Sharded, key: &FlowKey, act: &CtAction<'_>, now: u64) -> CtResult {
    let r = run(t, key, act, now);
    if r.drop.is_none() {
        let reply = udp(key.nw_dst, key.tp_dst, key.nw_src, key.tp_src);
        let track = CtAction {
            zone: act.zone,
            ..CtAction::default()
        };
        assert_eq!(
            run(t, &reply, &track, now).ct_state,
            CT_TRK | CT_EST | CT_RPL
        );
    }
    r
}

/// Client `i` of a ClusterIP: its own address, so the clients spread over the shards.
fn client(i: u32) -> u32 {
    ip("10.1.0.0") + i
}

fn commit() -> CtAction<'static> {
    CtAction {
        zone: 0,
        commit: true,
        ..CtAction::default()
    }
}

/// A TCP connection `src:sport` → `server:80` opened and reset by the server, so it is closed
/// (kept only for late segments); the SYN's drop reason, if it was refused.
fn open_and_reset<'a>(
    t: &'a Sharded,
    cur: &mut Cursor<'a>,
    src: u32,
    sport: u16,
    server: u32,
) -> Option<CtDrop> {
    let (facts, tcp) = (seg, tcp_key);
    let (syn, rst) = (tcp::TCP_SYN, tcp::TCP_RST | tcp::TCP_ACK);
    let act = commit();
    let r = t.process_frame(
        cur,
        &tcp(src, sport, server, 80, syn),
        &facts(10, 0),
        &act,
        0,
        None,
    );
    t.process_frame(
        cur,
        &tcp(server, 80, src, sport, rst),
        &facts(0, 11),
        &act,
        1,
        None,
    );
    r.drop
}

#[test]
fn dnat_replies_are_found_in_the_owners_shard() {
    let t = table(4096, 16);
    let vip = ip("10.96.0.10");
    let backend =
        NatSpec::dnat(NatRange::new(addr("172.16.1.5"), addr("172.16.1.5"), 5353, 5353).unwrap());
    let undo = NatSpec::default();
    for i in 0..200 {
        let r = run(&t, &udp(client(i), 40000, vip, 53), &nat(1, &backend), 0);
        assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_DNAT, "client {i}");
    }
    assert_eq!(t.len(), 200);
    // One cursor for all replies, as a batch uses it.
    let mut cur = Cursor::default();
    for i in 0..200 {
        let reply = udp(ip("172.16.1.5"), 5353, client(i), 40000);
        let r = t.process_frame(
            &mut cur,
            &reply,
            &PacketFacts::default(),
            &nat(1, &undo),
            SEC,
            None,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT, "reply {i}");
        let rw = r.rewrite.unwrap();
        assert_eq!((rw.src, rw.sport), (Addr::v4(vip), 53));
        assert_eq!((rw.dst, rw.dport), (Addr::v4(client(i)), 40000));
        // A thread holds one shard at a time: let the cursor's go before another call.
        cur.release();
        let (e, is_reply) = t
            .lookup(
                &Tuple {
                    src: addr("172.16.1.5"),
                    dst: Addr::v4(client(i)),
                    sport: 5353,
                    dport: 40000,
                    zone: 1,
                    proto: 17,
                    family: Family::V4,
                },
                SEC,
            )
            .unwrap();
        assert!(is_reply && e.seen_reply);
    }
    drop(cur);
    assert_eq!(t.len(), 200, "replies created nothing");
    let c = t.counters();
    assert_eq!(
        c.get(Counter::Packets),
        400,
        "a redirected packet counts once"
    );
    assert_eq!(c.get(Counter::Committed), 200);
    // The running counts, without a walk of the table.
    assert_eq!(t.zone_counts(), vec![(1, 200)]);
    let d = t.dnat_counts();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].0.frontend,
            d[0].0.frontend_port,
            d[0].0.backend,
            d[0].0.backend_port,
            d[0].1
        ),
        (Addr::v4(vip), 53, addr("172.16.1.5"), 5353, 200)
    );
}

#[test]
fn snat_bindings_are_unique_across_shards() {
    // Ten ports for every pod: each pod's connection to the same server needs its own.
    let t = table(4096, 16);
    let range = NatRange::new(addr("192.168.0.10"), addr("192.168.0.10"), 20000, 20009).unwrap();
    let spec = NatSpec::snat(range);
    let server = ip("8.8.8.8");
    let mut ports = std::collections::HashSet::new();
    for i in 0..10 {
        let r = run(&t, &udp(client(i), 33000, server, 53), &nat(0, &spec), 0);
        assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT, "pod {i}");
        assert!(ports.insert(r.rewrite.unwrap().sport), "port reused");
    }
    let r = run(&t, &udp(client(10), 33000, server, 53), &nat(0, &spec), 0);
    assert_eq!(r.drop, Some(CtDrop::NatExhausted));
    // Every reply reaches its own pod.
    for &p in &ports {
        let r = run(
            &t,
            &udp(server, 53, ip("192.168.0.10"), p),
            &nat(0, &NatSpec::default()),
            SEC,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_DNAT);
    }
    // Once they expire, the ports are free again (and the reply index with them).
    let later = 3600 * SEC;
    assert_eq!(t.expire(later, 1000), 10);
    assert!(t.is_empty());
    for i in 20..30 {
        let r = run(
            &t,
            &udp(client(i), 33000, server, 53),
            &nat(0, &spec),
            later,
        );
        assert_eq!(
            r.ct_state,
            CT_TRK | CT_NEW | CT_SNAT,
            "pod {i} after expiry"
        );
    }
    assert_eq!(t.flush(None), 10);
    for i in 40..50 {
        let r = run(
            &t,
            &udp(client(i), 33000, server, 53),
            &nat(0, &spec),
            later,
        );
        assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT, "pod {i} after flush");
    }
}

#[test]
fn zone_source_and_table_limits_hold_across_threads() {
    let t = table(1500, 16);
    t.set_zone_limit(3, 700);
    t.set_source_limits(&[(4, Family::V4, addr("10.9.9.9"), 5)]);
    let commit = |zone| CtAction {
        zone,
        commit: true,
        ..CtAction::default()
    };
    std::thread::scope(|s| {
        for th in 0..2u32 {
            let t = &t;
            s.spawn(move || {
                let mut cur = Cursor::default();
                for i in 0..1000u32 {
                    let k = udp(client(th * 100_000 + i), 1000, ip("10.2.0.1"), 80);
                    t.process_frame(&mut cur, &k, &PacketFacts::default(), &commit(3), 0, None);
                    let k = udp(ip("10.9.9.9"), (th * 1000 + i) as u16, ip("10.2.0.1"), 80);
                    t.process_frame(&mut cur, &k, &PacketFacts::default(), &commit(4), 0, None);
                }
            });
        }
    });
    assert_eq!(t.zone_limit(3).count, 700, "zone limit exact");
    assert_eq!(t.source_limits()[0].count, 5, "source limit exact");
    assert_eq!(t.len(), 705);
    let c = t.counters();
    assert_eq!(c.get(Counter::DropZoneLimit), 1300);
    assert_eq!(c.get(Counter::DropSourceLimit), 1995);
    // The table's own limit, across shards: the 705 flows above were never answered, so
    // answered ones take their places, then the rest is refused.
    t.set_zone_limit(3, 0);
    for i in 0..2000 {
        open_answered(
            &t,
            &udp(client(500_000 + i), 1, ip("10.2.0.1"), 80),
            &commit(3),
            0,
        );
    }
    assert_eq!(t.len(), 1500);
    assert_eq!(t.counters().get(Counter::UnestablishedEvicted), 705);
    assert_eq!(t.counters().get(Counter::DropTableFull), 500);
}

#[test]
fn snapshot_restores_into_any_shard_count() {
    let t = table(4096, 16);
    let spec =
        NatSpec::dnat(NatRange::new(addr("172.16.1.7"), addr("172.16.1.7"), 8080, 8080).unwrap());
    for i in 0..100 {
        run(
            &t,
            &udp(client(i), 40000, ip("10.96.0.20"), 80),
            &nat(2, &spec),
            0,
        );
    }
    let saved = t.snapshot(SEC);
    assert_eq!(saved.len(), 100);
    for shards in [1, 4, 16] {
        let u = table(4096, shards);
        let r = u.restore_aged(&saved, 0, SEC);
        assert_eq!((r.restored, r.skipped), (100, 0), "{shards} shards");
        assert_eq!(u.dnat_counts()[0].1, 100);
        for i in 0..100 {
            let r = run(
                &u,
                &udp(ip("172.16.1.7"), 8080, client(i), 40000),
                &nat(2, &NatSpec::default()),
                SEC,
            );
            assert_eq!(
                r.ct_state,
                CT_TRK | CT_EST | CT_RPL | CT_SNAT,
                "{shards}: {i}"
            );
        }
        // Restoring again clashes with what is there: nothing doubles.
        let r = u.restore_aged(&saved, 0, SEC);
        assert_eq!((r.restored, r.skipped), (0, 100));
        assert_eq!(u.len(), 100);
    }
}

fn tuple(src: u32, sport: u16, dst: u32, dport: u16, zone: u16) -> Tuple {
    Tuple {
        src: Addr::v4(src),
        dst: Addr::v4(dst),
        sport,
        dport,
        zone,
        proto: 17,
        family: Family::V4,
    }
}

/// Clients whose DNAT reply key (backend → client) is homed in another shard than the
/// connection (client → VIP), and, for some, in a shard that is neither of the original
/// packet's before or after translation.
fn split_clients(t: &Sharded, vip: u32, backend: u32, n: usize) -> Vec<u32> {
    let v: Vec<u32> = (0..4096)
        .map(client)
        .filter(|&c| {
            let orig = t.home_shard(&tuple(c, 40000, vip, 53, 1));
            let reply = t.home_shard(&tuple(backend, 5353, c, 40000, 1));
            orig != reply
        })
        .take(n)
        .collect();
    assert_eq!(v.len(), n, "the hash spreads address pairs over the shards");
    v
}

#[test]
fn a_reply_key_in_another_shard_is_found_refreshed_and_expired_with_its_connection() {
    let t = table(4096, 16);
    let (vip, backend) = (ip("10.96.0.10"), ip("172.16.1.5"));
    let spec =
        NatSpec::dnat(NatRange::new(Addr::v4(backend), Addr::v4(backend), 5353, 5353).unwrap());
    let undo = NatSpec::default();
    let clients = split_clients(&t, vip, backend, 64);
    for &c in &clients {
        let r = run(&t, &udp(c, 40000, vip, 53), &nat(1, &spec), 0);
        assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_DNAT);
    }
    // The reply, looked up first in its own (other) shard, finds the connection in the owner's;
    // a reply with `commit` commits nothing new there.
    let commit_undo = nat(1, &undo);
    for &c in &clients {
        let r = run(&t, &udp(backend, 5353, c, 40000), &commit_undo, 50 * SEC);
        assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT);
        let rw = r.rewrite.unwrap();
        assert_eq!((rw.src, rw.sport, rw.dst), (Addr::v4(vip), 53, Addr::v4(c)));
    }
    assert_eq!(
        t.len(),
        clients.len(),
        "no connection created by the replies"
    );
    // Replies keep the connection alive: it would have expired at 60 s (first packet at 0),
    // the reply at 50 s moved that to 80 s.
    assert_eq!(t.expire(70 * SEC, 10_000), 0, "refreshed by the replies");
    // Once expired, the connection and its reply key go together: the reply tuple is a
    // connection of its own in its own shard, no longer a reply of the old one.
    let later = 3600 * SEC;
    assert_eq!(t.expire(later, 10_000), clients.len());
    assert!(t.is_empty());
    for &c in &clients {
        let r = run(&t, &udp(backend, 5353, c, 40000), &commit_undo, later);
        assert_eq!(r.ct_state, CT_TRK | CT_NEW, "a new connection, not a reply");
        let (e, is_reply) = t.lookup(&tuple(backend, 5353, c, 40000, 1), later).unwrap();
        assert!(!is_reply && e.nat == 0);
    }
    assert_eq!(t.len(), clients.len());
    assert!(
        t.dnat_counts().is_empty(),
        "the DNAT counts went with the connections"
    );
}

#[test]
fn replies_racing_commits_and_expiry_see_all_or_nothing_of_a_connection() {
    // One thread commits DNAT connections whose reply keys live in other shards while another
    // sends their replies (each sees either no connection yet, or the whole binding); then
    // one thread expires them while the other keeps sending replies.
    let t = table(1 << 14, 16);
    let (vip, backend) = (ip("10.96.0.10"), ip("172.16.1.5"));
    let spec =
        NatSpec::dnat(NatRange::new(Addr::v4(backend), Addr::v4(backend), 5353, 5353).unwrap());
    let undo = NatSpec::default();
    let clients = split_clients(&t, vip, backend, 512);
    // Replies un-NAT without committing (a reply with `commit` before its connection exists
    // would start a connection of its own, in one table as well).
    let reply_act = CtAction {
        zone: 1,
        nat: Some(&undo),
        ..CtAction::default()
    };
    let replied = |r: &CtResult, c: u32| {
        if r.ct_state == CT_TRK | CT_NEW {
            assert!(r.rewrite.is_none() && r.drop.is_none());
            return false;
        }
        assert_eq!(
            r.ct_state,
            CT_TRK | CT_EST | CT_RPL | CT_SNAT,
            "client {c:#x}"
        );
        let rw = r.rewrite.unwrap();
        assert_eq!((rw.src, rw.sport), (Addr::v4(vip), 53));
        assert_eq!((rw.dst, rw.dport), (Addr::v4(c), 40000));
        true
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut cur = Cursor::default();
            for (i, &c) in clients.iter().enumerate() {
                let k = udp(c, 40000, vip, 53);
                let r = t.process_frame(
                    &mut cur,
                    &k,
                    &PacketFacts::default(),
                    &nat(1, &spec),
                    0,
                    None,
                );
                assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_DNAT);
                if i % 16 == 15 {
                    cur = Cursor::default(); // a batch ends
                }
            }
        });
        s.spawn(|| {
            let mut seen = vec![false; clients.len()];
            let mut cur = Cursor::default();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while seen.iter().any(|s| !s) && std::time::Instant::now() < deadline {
                for (i, &c) in clients.iter().enumerate() {
                    let k = udp(backend, 5353, c, 40000);
                    let r =
                        t.process_frame(&mut cur, &k, &PacketFacts::default(), &reply_act, 0, None);
                    seen[i] |= replied(&r, c);
                }
                cur = Cursor::default();
            }
            assert!(seen.iter().all(|s| *s), "every reply found its connection");
        });
    });
    assert_eq!(t.len(), clients.len());
    let later = 3600 * SEC;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !t.is_empty() {
                t.expire(later, 7);
            }
        });
        s.spawn(|| {
            let mut cur = Cursor::default();
            for _ in 0..4 {
                for &c in &clients {
                    let k = udp(backend, 5353, c, 40000);
                    // Before the expiry's time: a connection not yet reaped still answers.
                    let r = t.process_frame(
                        &mut cur,
                        &k,
                        &PacketFacts::default(),
                        &reply_act,
                        SEC,
                        None,
                    );
                    replied(&r, c);
                }
                cur = Cursor::default();
            }
        });
    });
    assert!(t.is_empty());
    assert!(t.dnat_counts().is_empty() && t.zone_counts().is_empty());
    // Nothing of the bindings is left behind in the reply index: each reply tuple now starts
    // a connection of its own (in its own shard) instead of being sent to a departed owner.
    for &c in &clients {
        let r = run(&t, &udp(backend, 5353, c, 40000), &nat(1, &undo), later);
        assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    }
    let c = t.counters();
    assert_eq!(c.get(Counter::Expired), clients.len() as u64);
    assert_eq!(
        c.get(Counter::InvalidIcmpUnrelated),
        0,
        "no packet ran out of hops"
    );
}

#[test]
fn a_commit_at_the_table_limit_reaps_expired_connections_of_other_shards() {
    // The table is full of connections that have all expired, none of them in the shard the
    // new connections go to (one client, one server: one address pair, one shard). Each
    // commit must find room as in one table, not wait for the periodic expiry.
    let t = table(1000, 16);
    let (c0, server) = (client(100_000), ip("10.2.0.1"));
    let home = t.home_shard(&tuple(c0, 1, server, 80, 0));
    let commit = CtAction {
        zone: 0,
        commit: true,
        ..CtAction::default()
    };
    let mut i = 0;
    while t.len() < 1000 {
        let c = client(i);
        i += 1;
        if t.home_shard(&tuple(c, 1, server, 80, 0)) == home {
            continue;
        }
        let r = run(&t, &udp(c, 1, server, 80), &commit, 0);
        assert_eq!(r.drop, None);
    }
    let later = 3600 * SEC;
    for port in 0..1000u16 {
        let r = open_answered(&t, &udp(c0, 10_000 + port, server, 80), &commit, later);
        assert_eq!(
            r.drop, None,
            "connection {port} refused with the table full of dead ones"
        );
        assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    }
    assert_eq!(t.len(), 1000);
    assert_eq!(t.counters().get(Counter::Expired), 1000);
    assert_eq!(t.counters().get(Counter::DropTableFull), 0);
    // Full of live connections, the limit holds (refused and counted), at any rate of
    // attempts: the shards are reaped again only after a quiet interval.
    for port in 0..100u16 {
        let r = run(&t, &udp(c0, 30_000 + port, server, 80), &commit, later);
        assert_eq!(r.drop, Some(CtDrop::TableFull));
    }
    assert_eq!(t.counters().get(Counter::DropTableFull), 100);
    assert_eq!(t.len(), 1000);
}

/// Closed TCP connections make room in a full table with several shards too: each commit
/// evicts one of its own shard's, and clients spread over the shards find one there.
#[test]
fn a_full_table_of_closed_connections_takes_new_ones_in_every_shard() {
    let t = table(1000, 16);
    let server = ip("10.2.0.1");
    let commit = commit();
    let mut cur = Cursor::default();
    // 1000 clients open and are reset: the table is full of closed connections.
    for i in 0..1000 {
        assert_eq!(
            open_and_reset(&t, &mut cur, client(i), 1, server),
            None,
            "connection {i}"
        );
    }
    // The cursor holds a shard locked; the table's other methods lock shards too.
    drop(cur);
    assert_eq!(t.len(), 1000);
    // 500 other clients' UDP flows: every one is taken, each in place of a closed connection.
    for i in 0..500 {
        let r = run(&t, &udp(client(10_000 + i), 1, server, 53), &commit, 2);
        assert_eq!(r.drop, None, "flow {i} refused");
    }
    let c = t.counters();
    assert_eq!(c.get(Counter::ClosedEvicted), 500);
    assert_eq!(c.get(Counter::DropTableFull), 0);
    assert_eq!(t.len(), 1000);
}

/// One busy client's closed connections all live in its own shard; a full table of them still
/// takes other clients' new connections, whose shards evict one of that client's.
#[test]
fn closed_connections_of_one_shard_make_room_for_every_shard() {
    let t = table(1000, 16);
    let (busy, server) = (client(1), ip("10.2.0.1"));
    let commit = commit();
    let mut cur = Cursor::default();
    for port in 0..1000u16 {
        let sport = 1024 + port;
        assert_eq!(
            open_and_reset(&t, &mut cur, busy, sport, server),
            None,
            "connection {port}"
        );
    }
    drop(cur);
    assert_eq!(t.len(), 1000);
    // 200 other clients, nearly all homed in other shards than the busy one.
    for i in 0..200 {
        let r = open_answered(&t, &udp(client(10_000 + i), 1, server, 53), &commit, 2);
        assert_eq!(r.drop, None, "flow {i} refused");
    }
    let c = t.counters();
    assert_eq!(c.get(Counter::ClosedEvicted), 200);
    assert_eq!(c.get(Counter::DropTableFull), 0);
    assert_eq!(t.len(), 1000);
    // With only established connections left elsewhere, a new one is still refused and
    // counted.
    let mut refused = 0;
    for i in 0..1000 {
        let r = open_answered(&t, &udp(client(20_000 + i), 1, server, 53), &commit, 3);
        refused += u64::from(r.drop.is_some());
    }
    let c = t.counters();
    assert_eq!(c.get(Counter::ClosedEvicted), 1000);
    assert_eq!(refused, 200);
    assert_eq!(c.get(Counter::DropTableFull), 200);
}

/// A SYN flood from one spoofed address fills the table, all of it in that address pair's
/// shard; other clients, homed in shards with nothing of their own to remove, take the places
/// of the flood's oldest handshakes instead of being refused.
#[test]
fn a_flood_of_handshakes_in_one_shard_makes_room_for_every_shard() {
    let t = table(1000, 16);
    let (spoofed, server) = (ip("6.6.6.6"), ip("10.2.0.1"));
    let facts = seg(7, 0);
    let flood_home = t.home_shard(&tuple(spoofed, 1024, server, 80, 0));
    let mut cur = Cursor::default();
    for port in 0..1000u16 {
        let syn = tcp_key(spoofed, 1024 + port, server, 80, tcp::TCP_SYN);
        let r = t.process_frame(&mut cur, &syn, &facts, &commit(), 0, None);
        assert_eq!(r.drop, None, "SYN {port}");
    }
    drop(cur);
    assert_eq!(t.len(), 1000);
    let mut elsewhere = 0;
    for i in 0..200 {
        let key = udp(client(10_000 + i), 1, server, 53);
        let home = t.home_shard(&tuple(key.nw_src, 1, server, 53, 0));
        elsewhere += u32::from(home != flood_home);
        let r = open_answered(&t, &key, &commit(), SEC);
        assert_eq!(r.drop, None, "client {i} refused");
    }
    assert!(
        elsewhere > 150,
        "most clients live in other shards ({elsewhere})"
    );
    let c = t.counters();
    assert_eq!(c.get(Counter::UnestablishedEvicted), 200);
    assert_eq!(c.get(Counter::DropTableFull), 0);
    assert_eq!(t.len(), 1000);
}

/// A real client's handshake in progress in its own shard keeps its place while a flood's
/// older entries fill another shard: a second client of the same shard takes a flood entry's
/// place, not the first client's.
#[test]
fn a_young_handshake_keeps_its_place_while_a_flood_fills_another_shard() {
    let t = table(100, 16);
    let (spoofed, server) = (ip("6.6.6.6"), ip("10.2.0.1"));
    let flood_home = t.home_shard(&tuple(spoofed, 1024, server, 80, 0));
    let (facts, key) = (seg, tcp_key);
    for port in 0..100u16 {
        let r = run(
            &t,
            &key(spoofed, 1024 + port, server, 80, tcp::TCP_SYN),
            &commit(),
            0,
        );
        assert_eq!(r.drop, None);
    }
    // Two clients of one shard other than the flood's, a millisecond apart, 10 s later.
    let clients: Vec<u32> = (0..)
        .map(client)
        .filter(|&c| t.home_shard(&tuple(c, 1, server, 80, 0)) != flood_home)
        .take(1)
        .collect();
    let (c, now) = (clients[0], 10 * SEC);
    let syn = |sport| key(c, sport, server, 80, tcp::TCP_SYN);
    assert_eq!(run(&t, &syn(1), &commit(), now).drop, None);
    assert_eq!(run(&t, &syn(2), &commit(), now + 1_000_000).drop, None);
    assert_eq!(t.counters().get(Counter::UnestablishedEvicted), 2);
    // The first client's handshake completes.
    let mut cur = Cursor::default();
    let track = CtAction::default();
    let synack = key(server, 80, c, 1, tcp::TCP_SYN | tcp::TCP_ACK);
    let r = t.process_frame(
        &mut cur,
        &synack,
        &facts(500, 1),
        &track,
        now + 2_000_000,
        None,
    );
    assert_eq!(
        r.ct_state,
        CT_TRK | CT_EST | CT_RPL,
        "the first handshake was kept"
    );
    drop(cur);
    assert_eq!(t.len(), 100);
}

#[test]
fn one_address_pair_may_fill_the_whole_table() {
    // A shard is sized for twice its share but has no limit of its own: one client talking to
    // one server (all in one shard) can hold every connection the table allows.
    let t = table(2000, 16);
    let commit = CtAction {
        zone: 0,
        commit: true,
        ..CtAction::default()
    };
    for port in 0..2000u16 {
        let r = open_answered(
            &t,
            &udp(client(1), 1024 + port, ip("10.2.0.1"), 80),
            &commit,
            0,
        );
        assert_eq!(r.drop, None, "connection {port}");
    }
    assert_eq!(t.len(), 2000);
    let r = run(&t, &udp(client(1), 9999, ip("10.2.0.1"), 80), &commit, 0);
    assert_eq!(r.drop, Some(CtDrop::TableFull), "the table's own limit");
}

#[test]
fn a_nat_binding_never_takes_a_key_held_in_another_shard() {
    // The node talks to a server itself (un-NATed connections, in the shard of the pair
    // node/server) from nine of the ten ports pods are masqueraded to. A pod's connection
    // lives in another shard; its SNAT must still skip the nine keys those connections hold,
    // as in one table, and the tenth pod finds no free binding.
    let t = table(4096, 16);
    let (server, node) = (ip("8.8.8.8"), ip("192.168.0.10"));
    let plain = CtAction {
        zone: 0,
        commit: true,
        ..CtAction::default()
    };
    for p in 20000..20009 {
        let r = run(&t, &udp(node, p, server, 53), &plain, 0);
        assert_eq!(r.ct_state, CT_TRK | CT_NEW);
    }
    let node_shard = t.home_shard(&tuple(server, 53, node, 20000, 0));
    let pods: Vec<u32> = (0..4096)
        .map(client)
        .filter(|&c| t.home_shard(&tuple(c, 33000, server, 53, 0)) != node_shard)
        .take(2)
        .collect();
    let range = NatRange::new(Addr::v4(node), Addr::v4(node), 20000, 20009).unwrap();
    let spec = NatSpec::snat(range);
    let r = run(&t, &udp(pods[0], 33000, server, 53), &nat(0, &spec), 0);
    assert_eq!(r.ct_state, CT_TRK | CT_NEW | CT_SNAT);
    assert_eq!(
        r.rewrite.unwrap().sport,
        20009,
        "the one key no connection holds"
    );
    let r = run(&t, &udp(pods[1], 33000, server, 53), &nat(0, &spec), 0);
    assert_eq!(r.drop, Some(CtDrop::NatExhausted));
    // Every reply reaches the connection that owns its key.
    let no_nat = NatSpec::default();
    let undo = nat(0, &no_nat);
    for p in 20000..20009 {
        let r = run(&t, &udp(server, 53, node, p), &undo, SEC);
        assert_eq!(
            r.ct_state,
            CT_TRK | CT_EST | CT_RPL,
            "the node's own, port {p}"
        );
        assert_eq!(r.rewrite, None);
    }
    let r = run(&t, &udp(server, 53, node, 20009), &undo, SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_DNAT);
    assert_eq!(r.rewrite.unwrap().dst, Addr::v4(pods[0]));
    assert_eq!(t.len(), 10);
}

#[test]
fn a_nat_commit_racing_an_unnated_connection_for_its_reply_key_leaves_one_owner() {
    // Two threads at once: one commits un-NATed connections server:53 -> node:P (as the node's
    // replies would be keyed), the other masquerades pods to node:P for the same ports. Each key
    // ends with exactly one connection, whichever came first, in one table or in shards.
    let t = table(1 << 14, 16);
    let (server, node) = (ip("8.8.8.8"), ip("192.168.0.10"));
    let ports: Vec<u16> = (20000..20256).collect();
    let plain = CtAction {
        zone: 0,
        commit: true,
        ..CtAction::default()
    };
    let node_shard = t.home_shard(&tuple(server, 53, node, 20000, 0));
    let pods: Vec<u32> = (0..100_000)
        .map(client)
        .filter(|&c| t.home_shard(&tuple(c, 33000, server, 53, 0)) != node_shard)
        .take(ports.len())
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut cur = Cursor::default();
            for &p in &ports {
                // The key server:53 -> node:p, as an original direction.
                let k = udp(node, p, server, 53);
                t.process_frame(&mut cur, &k, &PacketFacts::default(), &plain, 0, None);
                cur = Cursor::default();
            }
        });
        s.spawn(|| {
            let mut cur = Cursor::default();
            for (i, &p) in ports.iter().enumerate() {
                let range = NatRange::new(Addr::v4(node), Addr::v4(node), p, p).unwrap();
                let spec = NatSpec::snat(range);
                let k = udp(pods[i], 33000, server, 53);
                t.process_frame(
                    &mut cur,
                    &k,
                    &PacketFacts::default(),
                    &nat(0, &spec),
                    0,
                    None,
                );
                cur = Cursor::default();
            }
        });
    });
    let mut nat_won = 0;
    for (i, &p) in ports.iter().enumerate() {
        let key = tuple(server, 53, node, p, 0);
        let (e, is_reply) = t.lookup(&key, SEC).expect("one connection holds the key");
        assert!(is_reply);
        if e.nat != 0 {
            nat_won += 1;
            assert_eq!(e.orig.src, Addr::v4(pods[i]));
        } else {
            assert_eq!(e.orig.src, Addr::v4(node));
        }
    }
    // Each port went to exactly one of them: the connections number one per port.
    assert_eq!(t.len(), ports.len(), "{nat_won} ports went to pods");
}
