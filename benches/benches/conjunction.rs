//! Conjunctive matching (`conjunction(id,k/n)` + `conj_id`): lookup cost with 1k and 10k
//! conjunctive rules at a fixed number of masks, the NetworkPolicy shape.
//!
//! Each policy `p` is a 3-dimensional conjunction: 40 source addresses (nw_src /32), 40
//! destination addresses (nw_dst /32), 20 TCP ports (nw_proto + tp_dst), plus its
//! `conj_id=p` flow. So 100 policies are 10,000 conjunctive flows; whatever the count, the
//! table has 5 masks (3 dimensions, conj_id, the catch-all).
//!
//! Run: `cargo bench -p benches --bench conjunction -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use encap::FlowKey;
use flowtable::classifier::{Classifier, ClassifierBuilder, Conjunction};

const PACKETS: usize = 1024;
const SRCS: u32 = 40;
const DSTS: u32 = 40;
const PORTS: u32 = 20;

type Payload = Box<[Conjunction]>;

fn conj_of(p: &Payload) -> &[Conjunction] {
    p
}

fn src(policy: u32, i: u32) -> u32 {
    0x0a00_0000 | (policy << 8) | i
}
fn dst(policy: u32, i: u32) -> u32 {
    0x0b00_0000 | (policy << 8) | i
}
fn port(policy: u32, i: u32) -> u16 {
    (1000 + policy * PORTS + i) as u16
}

fn soft(id: u32, clause: u8) -> Payload {
    Box::new([Conjunction {
        id,
        clause,
        n_clauses: 3,
    }])
}

fn build(policies: u32) -> std::sync::Arc<Classifier<Payload>> {
    let mut b: ClassifierBuilder<Payload> = ClassifierBuilder::new();
    let z = FlowKey::default;
    let src_mask = FlowKey {
        eth_type: !0,
        nw_src: !0,
        ..z()
    };
    let dst_mask = FlowKey {
        eth_type: !0,
        nw_dst: !0,
        ..z()
    };
    let port_mask = FlowKey {
        eth_type: !0,
        nw_proto: !0,
        tp_dst: !0,
        ..z()
    };
    let conj_mask = FlowKey { conj_id: !0, ..z() };
    for p in 0..policies {
        let id = p + 1;
        for i in 0..SRCS {
            let v = FlowKey {
                eth_type: 0x0800,
                nw_src: src(p, i),
                ..z()
            };
            b.insert(&v, &src_mask, 200, soft(id, 0));
        }
        for i in 0..DSTS {
            let v = FlowKey {
                eth_type: 0x0800,
                nw_dst: dst(p, i),
                ..z()
            };
            b.insert(&v, &dst_mask, 200, soft(id, 1));
        }
        for i in 0..PORTS {
            let v = FlowKey {
                eth_type: 0x0800,
                nw_proto: 6,
                tp_dst: port(p, i),
                ..z()
            };
            b.insert(&v, &port_mask, 200, soft(id, 2));
        }
        let v = FlowKey { conj_id: id, ..z() };
        b.insert(&v, &conj_mask, 200, Box::new([]));
    }
    b.insert(&z(), &z(), 0, Box::new([]));
    b.snapshot()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `dims` of the 3 dimensions match policy-chosen values (3: the conjunction completes).
fn packets(policies: u32, dims: u32) -> Vec<FlowKey> {
    (0..PACKETS as u64)
        .map(|n| {
            let r = splitmix(n);
            let p = (r % u64::from(policies)) as u32;
            let i = (r >> 16) as u32;
            FlowKey {
                in_port: 1,
                eth_type: 0x0800,
                nw_proto: 6,
                nw_src: src(p, i % SRCS),
                nw_dst: if dims >= 2 {
                    dst(p, (i >> 8) % DSTS)
                } else {
                    0x0c00_0001
                },
                tp_src: 40000,
                tp_dst: if dims >= 3 {
                    port(p, (i >> 16) % PORTS)
                } else {
                    9
                },
                ..FlowKey::default()
            }
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("conjunction_lookup");
    g.throughput(Throughput::Elements(PACKETS as u64));
    for policies in [10u32, 100] {
        let cls = build(policies);
        let rules = cls.len();
        assert_eq!(cls.n_subtables(), 5);
        for (what, dims) in [("complete", 3), ("two_of_three", 2), ("one_of_three", 1)] {
            let keys = packets(policies, dims);
            // The answers are what the policy says, checked once before timing.
            for k in &keys {
                let mut wc = FlowKey::default();
                let hit = cls
                    .lookup_conjunctive(k, &mut wc, conj_of)
                    .expect("catch-all");
                assert_eq!(hit.priority() == 200, dims == 3, "{what}");
            }
            g.bench_with_input(
                BenchmarkId::new(what, format!("{rules}rules")),
                &keys,
                |b, keys| {
                    b.iter(|| {
                        let mut n = 0u32;
                        for k in keys {
                            let mut wc = FlowKey::default();
                            if let Some(r) = cls.lookup_conjunctive(k, &mut wc, conj_of) {
                                n += r.priority();
                            }
                        }
                        black_box(n)
                    })
                },
            );
        }
        // The same table through the plain lookup (soft rules treated as ordinary ones): the
        // price of conjunctive matching itself.
        let keys = packets(policies, 3);
        g.bench_with_input(
            BenchmarkId::new("plain_lookup_same_table", format!("{rules}rules")),
            &keys,
            |b, keys| {
                b.iter(|| {
                    let mut n = 0u32;
                    for k in keys {
                        let mut wc = FlowKey::default();
                        if let Some(r) = cls.lookup(k, &mut wc) {
                            n += r.priority();
                        }
                    }
                    black_box(n)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, lookup);
benches::criterion_main!(benches);
