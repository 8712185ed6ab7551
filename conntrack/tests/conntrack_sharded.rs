//! The sharded table (`Sharded`, what forwarding threads share): replies of NAT bindings found
//! across shards, NAT bindings unique across shards, limits exact across shards and threads,
//! expiry, flush, snapshot and restore, running counts per zone and per DNAT binding.

use conntrack::*;
use encap::flowkey::{CT_DNAT, CT_EST, CT_NEW, CT_RPL, CT_SNAT, CT_TRK, FlowKey};
use std::net::Ipv4Addr;

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

/// Client `i` of a ClusterIP: its own address, so the clients spread over the shards.
fn client(i: u32) -> u32 {
    ip("10.1.0.0") + i
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
    // The table's own limit, across shards.
    t.set_zone_limit(3, 0);
    for i in 0..2000 {
        run(
            &t,
            &udp(client(500_000 + i), 1, ip("10.2.0.1"), 80),
            &commit(3),
            0,
        );
    }
    assert_eq!(t.len(), 1500);
    assert_eq!(t.counters().get(Counter::DropTableFull), 1205);
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
