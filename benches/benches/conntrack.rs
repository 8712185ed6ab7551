//! Conntrack benchmarks: the `ct` action's cost per packet on established connections (both
//! directions, table of 1k and 100k connections), per committed new connection with SNAT, a
//! Maglev backend choice for a select group, and a SYN flood from random sources into a full
//! table (what a flood SYN and an established packet cost there; printed: whether real
//! clients' handshakes amid the flood complete, and the memory it takes).
//!
//! Run: `cargo bench -p benches --bench conntrack -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use conntrack::lb::{Backend, DEFAULT_TABLE_SIZE, Maglev};
use conntrack::tcp::{TCP_ACK, TCP_SYN};
use conntrack::{
    Addr, Config, Conntrack, Counter, CtAction, NatRange, NatSpec, PacketFacts, WindowScale,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use encap::FlowKey;
use encap::hash::flow_hash;

fn udp(i: u32) -> FlowKey {
    FlowKey {
        eth_type: 0x0800,
        nw_src: 0x0a00_0000 + i / 1000,
        nw_dst: 0x0808_0800 + i % 16,
        nw_proto: 17,
        tp_src: 1024 + (i % 1000) as u16,
        tp_dst: 53,
        ..FlowKey::default()
    }
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_established");
    let facts = PacketFacts::default();
    for conns in [1_000u32, 100_000] {
        let mut ct = Conntrack::new(Config {
            max_conns: 1 << 18,
            ..Config::default()
        })
        .expect("conntrack");
        let commit = CtAction {
            commit: true,
            ..CtAction::default()
        };
        for i in 0..conns {
            assert!(ct.process(&udp(i), &facts, &commit, 0).drop.is_none());
        }
        let lookup = CtAction::default();
        let keys: Vec<FlowKey> = (0..1024u32)
            .map(|i| udp(i.wrapping_mul(7919) % conns))
            .collect();
        g.throughput(Throughput::Elements(keys.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(conns), &keys, |b, keys| {
            let mut now = 1_000;
            b.iter(|| {
                now += 1;
                for k in keys {
                    black_box(ct.process(k, &facts, &lookup, now));
                }
            })
        });
    }
    g.finish();
}

fn new_with_snat(c: &mut Criterion) {
    let facts = PacketFacts::default();
    let spec = NatSpec::snat(
        NatRange::new(Addr::v4(0xc0a8_0001), Addr::v4(0xc0a8_0010), 0, 0).expect("range"),
    );
    let commit = CtAction {
        commit: true,
        nat: Some(&spec),
        ..CtAction::default()
    };
    let mut g = c.benchmark_group("conntrack_new_snat");
    g.throughput(Throughput::Elements(1024));
    g.bench_function("commit_1024", |b| {
        b.iter_batched(
            || {
                Conntrack::new(Config {
                    max_conns: 4096,
                    ..Config::default()
                })
                .expect("conntrack")
            },
            |mut ct| {
                for i in 0..1024 {
                    black_box(ct.process(&udp(i), &facts, &commit, 0));
                }
                ct
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn maglev_pick(c: &mut Criterion) {
    let backends: Vec<Backend> = (1..=10).map(|id| Backend { id, weight: 1 }).collect();
    let m = Maglev::new(&backends, DEFAULT_TABLE_SIZE).expect("maglev");
    let keys: Vec<FlowKey> = (0..1024u32).map(udp).collect();
    let mut g = c.benchmark_group("maglev");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("hash_and_pick", |b| {
        b.iter(|| {
            for k in &keys {
                black_box(m.pick(flow_hash(k) as u64));
            }
        })
    });
    g.finish();
}

/// A ClusterIP's SYN from `src:sport` (host order) to 10.96.0.10:80.
fn syn(src: u32, sport: u16) -> FlowKey {
    FlowKey {
        eth_type: 0x0800,
        nw_src: src,
        nw_dst: 0x0a60_000a,
        nw_proto: 6,
        tp_src: sport,
        tp_dst: 80,
        tcp_flags: TCP_SYN,
        ..FlowKey::default()
    }
}

fn tcp_facts(seq: u32, ack: u32) -> PacketFacts {
    PacketFacts {
        tcp_seq: seq,
        tcp_ack: ack,
        tcp_window: 65535,
        tcp_wscale: WindowScale::Absent,
        ..PacketFacts::default()
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The default table (262,144 connections): 100k established UDP flows (answered), the rest
/// filled by flood SYNs from random sources, DNATed to a backend as a Service's are. The
/// flood's next SYN is number `next`.
struct Flooded {
    ct: Conntrack,
    commit: CtAction<'static>,
    next: u64,
}

const FLOOD_TABLE: usize = 262_144;
const FLOOD_ESTABLISHED: u32 = 100_000;
const SEC: u64 = 1_000_000_000;

impl Flooded {
    fn new() -> Flooded {
        let spec: &'static NatSpec = Box::leak(Box::new(NatSpec::dnat(
            NatRange::new(Addr::v4(0xac10_011f), Addr::v4(0xac10_011f), 8080, 8080).expect("range"),
        )));
        let commit = CtAction {
            commit: true,
            nat: Some(spec),
            ..CtAction::default()
        };
        // Answered UDP flows kept for a day: the bench's clock runs faster than real time, and
        // an established flow expiring would make room that the flood should not find.
        let timeouts = conntrack::Timeouts {
            other_bidir: std::time::Duration::from_secs(24 * 3600),
            ..conntrack::Timeouts::default()
        };
        let mut ct = Conntrack::new(Config {
            max_conns: FLOOD_TABLE,
            timeouts,
            ..Config::default()
        })
        .expect("conntrack");
        let facts = PacketFacts::default();
        let plain = CtAction {
            commit: true,
            ..CtAction::default()
        };
        for i in 0..FLOOD_ESTABLISHED {
            let k = udp(i);
            assert!(ct.process(&k, &facts, &plain, 0).drop.is_none());
            ct.process(&reply(&k), &facts, &CtAction::default(), 0);
        }
        let mut f = Flooded {
            ct,
            commit,
            next: 0,
        };
        while f.ct.len() < FLOOD_TABLE {
            f.flood_one(0);
        }
        f
    }

    /// One SYN from a random source (never answered: the source is spoofed).
    fn flood_one(&mut self, now: u64) -> bool {
        self.next += 1;
        let r = splitmix(self.next);
        let k = syn(
            0x0b00_0000 | (r as u32 & 0x00ff_ffff),
            (r >> 32) as u16 | 1024,
        );
        let res = self
            .ct
            .process(&k, &tcp_facts(r as u32, 0), &self.commit, now);
        res.drop.is_none()
    }
}

fn reply(k: &FlowKey) -> FlowKey {
    FlowKey {
        nw_src: k.nw_dst,
        nw_dst: k.nw_src,
        tp_src: k.tp_dst,
        tp_dst: k.tp_src,
        ..*k
    }
}

fn syn_flood(c: &mut Criterion) {
    let mut f = Flooded::new();
    let mut g = c.benchmark_group("conntrack_syn_flood");
    g.throughput(Throughput::Elements(1024));
    let mut now = SEC;
    g.bench_function("flood_syn_into_full_table", |b| {
        b.iter(|| {
            now += 1_000_000;
            for _ in 0..1024 {
                black_box(f.flood_one(now));
            }
        })
    });
    let facts = PacketFacts::default();
    let keys: Vec<FlowKey> = (0..1024u32)
        .map(|i| udp(i.wrapping_mul(7919) % FLOOD_ESTABLISHED))
        .collect();
    g.bench_function("established_amid_flood_1_in_2", |b| {
        b.iter(|| {
            now += 1_000_000;
            for k in keys.iter().step_by(2) {
                black_box(f.ct.process(k, &facts, &CtAction::default(), now));
                black_box(f.flood_one(now));
            }
        })
    });
    g.finish();
    assert_eq!(f.ct.len(), FLOOD_TABLE, "the flood stays within the table");
    assert_eq!(
        f.ct.counters().get(Counter::Expired),
        0,
        "room came from expiry, not eviction"
    );
}

/// Not a timing: 1M flood SYNs (1M/s of the callers' clock) into the full default table with a
/// real client's handshake every 100 of them (SYN, 50 flood SYNs, SYN-ACK, ACK); prints how many real clients got
/// established, whether the 100k established flows survived, and the memory it took.
fn report_syn_flood(_c: &mut Criterion) {
    let before = rss_kib();
    let mut f = Flooded::new();
    let filled = rss_kib();
    let fill_syns = f.next;
    let t = std::time::Instant::now();
    let (mut clients, mut established) = (0u32, 0u32);
    let mut now = SEC;
    while f.next < fill_syns + 1_000_000 {
        now += 100_000; // 100 flood SYNs per 100 µs: a flood of 1M SYNs/s
        clients += 1;
        let k = syn(0x0a01_0000 + clients, 40_000);
        let c = f.commit;
        let r = f.ct.process(&k, &tcp_facts(100, 0), &c, now);
        for _ in 0..50 {
            f.flood_one(now);
        }
        if r.drop.is_none() {
            let mut back = reply(&k);
            back.nw_src = 0xac10_011f;
            back.tp_src = 8080;
            back.tcp_flags = TCP_SYN | TCP_ACK;
            f.ct.process(&back, &tcp_facts(500, 101), &CtAction::default(), now);
            let mut ack = k;
            ack.tcp_flags = TCP_ACK;
            let r =
                f.ct.process(&ack, &tcp_facts(101, 501), &CtAction::default(), now);
            established += u32::from(r.ct_state & encap::flowkey::CT_EST != 0);
        }
        for _ in 0..50 {
            f.flood_one(now);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let alive = (0..FLOOD_ESTABLISHED)
        .filter(|&i| {
            let r =
                f.ct.process(&udp(i), &PacketFacts::default(), &CtAction::default(), now);
            r.ct_state & encap::flowkey::CT_EST != 0
        })
        .count();
    let c = f.ct.counters();
    assert_eq!(
        c.get(Counter::Expired),
        0,
        "room came from expiry, not eviction"
    );
    println!(
        "syn_flood: {} flood SYNs into the full table + {clients} real clients in {secs:.2} s ({:.0} ns per packet); \
         real clients established {established}/{clients}; established flows kept {alive}/{FLOOD_ESTABLISHED}; \
         table {} / {FLOOD_TABLE}; unestablished_evicted={} drop_table_full={}; \
         RSS {} KiB filled, +{} KiB over the flood",
        f.next - fill_syns,
        secs * 1e9 / (f.next - fill_syns + 3 * u64::from(clients)) as f64,
        f.ct.len(),
        c.get(Counter::UnestablishedEvicted),
        c.get(Counter::DropTableFull),
        filled.unwrap_or(0).saturating_sub(before.unwrap_or(0)),
        rss_kib().unwrap_or(0).saturating_sub(filled.unwrap_or(0)),
    );
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

criterion_group!(
    benches,
    established,
    new_with_snat,
    maglev_pick,
    report_syn_flood,
    syn_flood
);
benches::criterion_main!(benches);
