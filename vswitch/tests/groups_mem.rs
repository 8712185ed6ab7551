//! Groups end to end on in-memory ports (no root): loops refused and translation bounded, a
//! bucket naming a deleted group, select buckets following the liveness of what they watch.

use std::sync::mpsc;
use std::time::Duration;

use openflow::switch::port_config::PORT_DOWN;
use vswitch::datapath;

mod common;

type Bench = common::MemBridge;

fn bench(n: u32) -> Bench {
    Bench::new(n, datapath::Options::default())
}

fn udp(sport: u16) -> Vec<u8> {
    common::udp_frame_between([10, 0, 0, 1], [10, 0, 0, 2], sport, 53)
}

/// Sends `frame` on port 1 from another thread: a translation that runs away fails the test
/// (ends the test binary) after `limit` instead of hanging it.
fn send_within(b: &Bench, frame: Vec<u8>, limit: Duration) {
    let sw = b.switch.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        sw.inject("br0", 1, &frame).expect("inject");
        let _ = tx.send(());
    });
    if rx.recv_timeout(limit).is_err() {
        // A panic would hang on the bridge's shutdown, which waits for the busy datapath
        // thread: end the test binary instead.
        // Written past the test harness's capture, which the exit would lose.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "the packet was still being translated after {limit:?}"
        );
        std::process::exit(101);
    }
}

/// The review's repro: 1 → 2 → output, then 2 modified to go back to 1. The modify is refused
/// (OFPGMFC_LOOP), the groups stay as they were and the packet goes out (it used to recurse
/// until the stack overflowed).
#[test]
fn a_group_cycle_is_refused_and_the_packet_still_flows() {
    let mut b = bench(2);
    b.command(&[
        "add-group",
        "br0",
        "group_id=2,type=indirect,bucket=actions=output:2",
    ]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=indirect,bucket=actions=group:2",
    ]);
    let err = b
        .control
        .command(&[
            "mod-group",
            "br0",
            "group_id=2,type=indirect,bucket=actions=group:1",
        ])
        .expect_err("a cycle between groups is refused");
    assert!(err.to_string().contains("OFPGMFC_LOOP"), "{err}");
    b.flows("priority=10,in_port=1,actions=group:1");
    send_within(&b, udp(1), Duration::from_secs(10));
    assert_eq!(b.received(2).len(), 1);
}

/// Groups count towards the nesting limit with resubmits: a chain of indirect groups deeper
/// than 64 is dropped as a loop; a shorter one forwards.
#[test]
fn a_group_chain_deeper_than_the_limit_is_a_loop_drop() {
    let mut b = bench(2);
    let chain = |b: &Bench, first: u32, len: u32| {
        let last = first + len - 1;
        b.command(&[
            "add-group",
            "br0",
            &format!("group_id={last},type=indirect,bucket=actions=output:2"),
        ]);
        for id in (first..last).rev() {
            b.command(&[
                "add-group",
                "br0",
                &format!(
                    "group_id={id},type=indirect,bucket=actions=group:{}",
                    id + 1
                ),
            ]);
        }
    };
    chain(&b, 1000, 50);
    chain(&b, 2000, 80);
    b.flows(
        "priority=10,in_port=1,udp,tp_src=1,actions=group:1000\n\
         priority=10,in_port=1,udp,tp_src=2,actions=group:2000",
    );
    send_within(&b, udp(1), Duration::from_secs(10));
    assert_eq!(b.received(2).len(), 1, "50 groups deep is within the limit");
    let loops = b.drops("loop");
    send_within(&b, udp(2), Duration::from_secs(10));
    assert!(b.received(2).is_empty(), "80 groups deep is over the limit");
    assert_eq!(b.drops("loop"), loops + 1);
}

/// A chain of `all` groups whose two buckets both name the next one doubles the work at each
/// level (2^40 outputs): the walk stops at the total budget (Open vSwitch's 4096) and the
/// packet is dropped as a loop, outputs made before the limit included.
#[test]
fn an_exponential_chain_of_all_groups_ends_as_a_loop_drop() {
    let mut b = bench(2);
    b.command(&[
        "add-group",
        "br0",
        "group_id=40,type=all,bucket=actions=output:2",
    ]);
    for id in (1..40u32).rev() {
        let next = id + 1;
        b.command(&[
            "add-group",
            "br0",
            &format!(
                "group_id={id},type=all,bucket=actions=group:{next},bucket=actions=group:{next}"
            ),
        ]);
    }
    b.flows("priority=10,in_port=1,actions=group:1");
    send_within(&b, udp(1), Duration::from_secs(20));
    assert!(b.received(2).is_empty());
    assert_eq!(b.drops("loop"), 1);
    let trace = b.command(&["trace", "br0", "in_port=1,udp,tp_src=1"]);
    assert!(trace.contains("over 4096"), "{trace}");
    assert!(trace.contains("Datapath actions: drop"), "{trace}");
}

/// A bucket naming a deleted group ends only its own action list: the other buckets of an
/// `all` group and the actions after a `resubmit` still run, and a packet that was sent on is
/// no `group_missing` drop (Open vSwitch).
#[test]
fn a_bucket_naming_a_deleted_group_spares_its_siblings() {
    let mut b = bench(4);
    b.command(&[
        "add-group",
        "br0",
        "group_id=2,type=indirect,bucket=actions=output:2",
    ]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=all,bucket=actions=group:2,output:4,bucket=actions=output:3",
    ]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=5,type=indirect,bucket=actions=group:2",
    ]);
    b.flows(
        "table=0,priority=10,in_port=1,udp,tp_src=1,actions=group:1\n\
         table=0,priority=10,in_port=1,udp,tp_src=2,actions=resubmit(,1),output:4\n\
         table=0,priority=10,in_port=1,udp,tp_src=3,actions=group:5\n\
         table=1,priority=10,actions=group:5",
    );
    send_within(&b, udp(1), Duration::from_secs(10));
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(b.received(3).len(), 1);
    assert_eq!(b.received(4).len(), 1);
    b.command(&["del-groups", "br0", "group_id=2"]);
    let missing = b.drops("group_missing");
    send_within(&b, udp(1), Duration::from_secs(10));
    assert_eq!(b.received(3).len(), 1, "the sibling bucket still runs");
    assert!(
        b.received(4).is_empty(),
        "the rest of the bucket naming the missing group is skipped"
    );
    send_within(&b, udp(2), Duration::from_secs(10));
    assert_eq!(b.received(4).len(), 1, "the actions after the resubmit run");
    assert_eq!(
        b.drops("group_missing"),
        missing,
        "packets sent on are no drops"
    );
    send_within(&b, udp(3), Duration::from_secs(10));
    assert!((1..=4).all(|p| b.received(p).is_empty()));
    assert_eq!(b.drops("group_missing"), missing + 1);
}

/// Where each of `n` flows goes (the port it came out of, 0 for none).
fn place(b: &mut Bench, n: u16) -> Vec<u32> {
    (0..n)
        .map(|s| {
            b.send(1, &udp(20000 + s));
            let ports = b.peers.len() as u32;
            let out: Vec<u32> = (2..=ports).filter(|p| !b.received(*p).is_empty()).collect();
            assert!(out.len() <= 1, "flow {s} went to {out:?}");
            out.first().copied().unwrap_or(0)
        })
        .collect()
}

fn port_down(b: &Bench, port: u32, down: bool) {
    b.switch
        .set_port_config("br0", &format!("m{port}"), if down { PORT_DOWN } else { 0 })
        .expect("mod-port");
}

/// A select bucket whose watched port is down is not chosen: only its flows move (to the
/// other live buckets), and they come back when the port is up again. With every bucket dead
/// the packet is dropped as `group_missing`.
#[test]
fn select_groups_skip_buckets_whose_watched_port_is_down() {
    let mut b = bench(4);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=select,bucket=weight:100,watch_port:2,actions=output:2,\
         bucket=weight:100,watch_port:3,actions=output:3,bucket=weight:100,watch_port:4,actions=output:4",
    ]);
    b.flows("priority=10,in_port=1,udp,actions=group:1");
    let before = place(&mut b, 300);
    assert!(before.iter().all(|p| *p != 0));
    assert!((2..=4).all(|p| before.contains(&p)), "{before:?}");

    port_down(&b, 3, true);
    let during = place(&mut b, 300);
    for (i, (was, now)) in before.iter().zip(&during).enumerate() {
        assert_ne!(*now, 0, "flow {i} (was on port {was}) went nowhere");
        assert_ne!(*now, 3, "flow {i} still chose the dead bucket");
    }
    let survivors: Vec<usize> = (0..300).filter(|i| before[*i] != 3).collect();
    let kept = survivors
        .iter()
        .filter(|i| before[**i] == during[**i])
        .count();
    assert!(
        kept * 100 >= survivors.len() * 90,
        "only {kept} of {} flows on live buckets kept their bucket",
        survivors.len()
    );

    port_down(&b, 3, false);
    assert_eq!(place(&mut b, 300), before, "every flow back where it was");

    for p in 2..=4 {
        port_down(&b, p, true);
    }
    let missing = b.drops("group_missing");
    assert!(place(&mut b, 10).iter().all(|p| *p == 0));
    assert_eq!(b.drops("group_missing"), missing + 10);
}

/// Liveness through `watch_group`: a select bucket watching a fast-failover group is dead
/// while that group has no live bucket.
#[test]
fn select_buckets_follow_the_groups_they_watch() {
    let mut b = bench(5);
    b.command(&[
        "add-group",
        "br0",
        "group_id=10,type=ff,bucket=watch_port:3,actions=output:3",
    ]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=select,bucket=weight:100,actions=output:2,\
         bucket=weight:100,watch_group:10,actions=group:10",
    ]);
    b.flows("priority=10,in_port=1,udp,actions=group:1");
    let before = place(&mut b, 200);
    assert!(before.contains(&2) && before.contains(&3), "{before:?}");
    // Port 5 is watched by no one: nothing moves.
    port_down(&b, 5, true);
    assert_eq!(place(&mut b, 200), before);
    port_down(&b, 3, true);
    assert!(
        place(&mut b, 200).iter().all(|p| *p == 2),
        "the bucket watching a dead group is not chosen"
    );
    port_down(&b, 3, false);
    assert_eq!(place(&mut b, 200), before);
}

/// Group `id`'s counters as `dump-group-stats` reads them: (packets, bytes) of the group and
/// of each bucket.
fn group_counts(b: &Bench, id: u32) -> ((u64, u64), Vec<(u64, u64)>) {
    b.switch
        .with_bridge("br0", |br| {
            let e = br.group_entry(id).ok_or("no such group")?;
            let buckets = e.counts.buckets.iter().map(|c| c.counts()).collect();
            Ok((e.counts.group.counts(), buckets))
        })
        .expect("group counters")
}

/// Every packet through a select group counts to the group and to the bucket it took (chosen
/// in the datapath: one megaflow for all the flows), each bucket's count being the packets
/// that came out of its port; an `all` group counts a packet to every bucket. The counters
/// survive another group's change, and start from 0 when the group itself is modified. Table
/// 0 counts each packet's lookup.
#[test]
fn group_and_bucket_counters_follow_the_traffic() {
    let mut b = bench(4);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=select,bucket=output:2,bucket=output:3,bucket=output:4",
    ]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=2,type=all,bucket=output:2,bucket=output:3",
    ]);
    b.flows(
        "priority=10,in_port=1,udp,tp_dst=53,actions=group:1\n\
         priority=10,in_port=1,udp,tp_dst=54,actions=group:2",
    );
    let len = udp(1).len() as u64;
    let placed = place(&mut b, 300);
    let (group, buckets) = group_counts(&b, 1);
    assert_eq!(group, (300, 300 * len));
    for (i, port) in (2..=4).enumerate() {
        let n = placed.iter().filter(|p| **p == port).count() as u64;
        assert!(n > 0, "no flow chose port {port}: {placed:?}");
        assert_eq!(buckets[i], (n, n * len), "bucket {i} (port {port})");
    }

    let to_all = common::udp_frame_between([10, 0, 0, 1], [10, 0, 0, 2], 7, 54);
    for _ in 0..7 {
        b.send(1, &to_all);
    }
    assert_eq!(b.received(2).len(), 7);
    assert_eq!(b.received(3).len(), 7);
    let l = to_all.len() as u64;
    assert_eq!(group_counts(&b, 2), ((7, 7 * l), vec![(7, 7 * l); 2]));
    assert_eq!(
        group_counts(&b, 1).0,
        (300, 300 * len),
        "group 1 counted no more"
    );

    b.command(&[
        "mod-group",
        "br0",
        "group_id=2,type=all,bucket=output:2,bucket=output:4",
    ]);
    assert_eq!(group_counts(&b, 2), ((0, 0), vec![(0, 0); 2]));
    assert_eq!(
        group_counts(&b, 1).0,
        (300, 300 * len),
        "group 1 kept its counts"
    );
    b.send(1, &to_all);
    assert_eq!(group_counts(&b, 2), ((1, l), vec![(1, l); 2]));
    // Every packet was one lookup in table 0, matched there (cached flows count it too).
    let tables = b
        .switch
        .with_bridge("br0", |br| {
            let c = br.pipeline.load().table_counts.clone();
            Ok((c.of(0), c.of(1)))
        })
        .expect("table counters");
    assert_eq!(tables, ((308, 308), (0, 0)));
}

/// `n_packets` of the flow in `table` whose printed form contains `what`.
fn flow_packets(b: &Bench, table: u8, what: &str) -> u64 {
    let dump = b.command(&["dump-flows", "br0", &format!("table={table}")]);
    let line = dump
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no flow with {what} in table {table}:\n{dump}"));
    let n = line
        .split("n_packets=")
        .nth(1)
        .and_then(|r| r.split(',').next());
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no n_packets in {line}"))
}

/// Packets that missed the datapath's caches (translated in the slow path).
fn cache_misses(b: &Bench) -> u64 {
    let text = b.command(&["dump-drops", "br0"]);
    let line = text.lines().find(|l| l.starts_with("caches:"));
    line.and_then(|l| {
        l.split_whitespace()
            .find_map(|kv| kv.strip_prefix("misses="))
    })
    .and_then(|n| n.parse().ok())
    .unwrap_or_else(|| panic!("no cache misses in {text}"))
}

fn table_lookups(b: &Bench, table: u8) -> (u64, u64) {
    b.switch
        .with_bridge("br0", |br| Ok(br.pipeline.load().table_counts.of(table)))
        .expect("table counters")
}

/// Counters for each kind of group and of select: buckets whose walks go on through different
/// tables (still one megaflow, each branch counting its own rules and lookups), a select that
/// hashes given fields (picked in the slow path), fast_failover and indirect groups; a port
/// going down keeps the counts of the group that watches it, a deleted and re-added group
/// starts from 0.
#[test]
fn every_kind_of_group_counts_its_packets_and_the_rules_behind_its_buckets() {
    let mut b = bench(4);
    for g in [
        "group_id=1,type=select,bucket=actions=resubmit(,5),bucket=actions=resubmit(,6)",
        "group_id=2,type=select,selection_method=hash,fields(udp_src),\
         bucket=output:2,bucket=output:3,bucket=output:4",
        "group_id=3,type=ff,bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3",
        "group_id=4,type=indirect,bucket=actions=output:4",
    ] {
        b.command(&["add-group", "br0", g]);
    }
    b.flows(
        "table=0,priority=10,in_port=1,udp,tp_dst=53,actions=group:1\n\
         table=0,priority=10,in_port=1,udp,tp_dst=54,actions=group:2\n\
         table=0,priority=10,in_port=1,udp,tp_dst=55,actions=group:3\n\
         table=0,priority=10,in_port=1,udp,tp_dst=56,actions=group:4\n\
         table=5,priority=1,actions=output:2\n\
         table=6,priority=1,actions=output:3",
    );
    let len = udp(1).len() as u64;
    let misses = cache_misses(&b);
    let placed = place(&mut b, 200);
    assert_eq!(
        cache_misses(&b),
        misses + 1,
        "one megaflow for all the flows"
    );
    let (to2, to3) = (
        placed.iter().filter(|p| **p == 2).count() as u64,
        placed.iter().filter(|p| **p == 3).count() as u64,
    );
    assert!(to2 > 0 && to3 > 0 && to2 + to3 == 200, "{placed:?}");
    assert_eq!(
        group_counts(&b, 1),
        ((200, 200 * len), vec![(to2, to2 * len), (to3, to3 * len)])
    );
    assert_eq!(flow_packets(&b, 5, "output:2"), to2);
    assert_eq!(flow_packets(&b, 6, "output:3"), to3);
    assert_eq!(table_lookups(&b, 5), (to2, to2));
    assert_eq!(table_lookups(&b, 6), (to3, to3));

    let to = |dport: u16, sport: u16| {
        common::udp_frame_between([10, 0, 0, 1], [10, 0, 0, 2], sport, dport)
    };
    let mut by_port = [0u64; 5];
    for s in 0..60 {
        b.send(1, &to(54, 30000 + s));
        for p in 2..=4 {
            by_port[p as usize] += b.received(p).len() as u64;
        }
    }
    let (group, buckets) = group_counts(&b, 2);
    assert_eq!(group, (60, 60 * len));
    for (i, p) in (2..=4).enumerate() {
        assert_eq!(buckets[i], (by_port[p], by_port[p] * len), "bucket {i}");
    }

    for _ in 0..5 {
        b.send(1, &to(55, 1));
        b.send(1, &to(56, 1));
    }
    assert_eq!(
        group_counts(&b, 3),
        ((5, 5 * len), vec![(5, 5 * len), (0, 0)])
    );
    assert_eq!(group_counts(&b, 4), ((5, 5 * len), vec![(5, 5 * len)]));
    // Port 2 down: the fast_failover group moves to its second bucket, counts kept.
    port_down(&b, 2, true);
    b.send(1, &to(55, 1));
    assert_eq!(b.received(3).len(), 1);
    assert_eq!(
        group_counts(&b, 3),
        ((6, 6 * len), vec![(5, 5 * len), (1, len)])
    );

    b.command(&["del-groups", "br0", "group_id=4"]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=4,type=indirect,bucket=actions=output:4",
    ]);
    assert_eq!(group_counts(&b, 4), ((0, 0), vec![(0, 0)]));
    b.command(&[
        "add-flow",
        "br0",
        "table=0,priority=10,in_port=1,udp,tp_dst=56,actions=group:4",
    ]);
    b.send(1, &to(56, 1));
    assert_eq!(group_counts(&b, 4), ((1, len), vec![(1, len)]));
}
