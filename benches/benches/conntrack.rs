//! Conntrack benchmarks: the `ct` action's cost per packet on established connections (both
//! directions, table of 1k and 100k connections), per committed new connection with SNAT, and a
//! Maglev backend choice for a select group.
//!
//! Run: `cargo bench -p benches --bench conntrack -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use conntrack::lb::{Backend, DEFAULT_TABLE_SIZE, Maglev};
use conntrack::{Addr, Config, Conntrack, CtAction, NatRange, NatSpec, PacketFacts};
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

criterion_group!(benches, established, new_with_snat, maglev_pick);
benches::criterion_main!(benches);
