//! Classifier benchmarks: lookup cost against rule count at a fixed mask count, insert/remove
//! rates, publish cost per batch size, and memory per rule.
//!
//! Run: `cargo bench -p benches --bench flowtable -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use encap::FlowKey;
use encap::flowkey::{CT_EST, CT_NEW, CT_TRK};
use flowtable::classifier::{Classifier, ClassifierBuilder, RuleId};

const PACKETS: usize = 1024;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A key with every field pseudo-random (derived from `seed`): masked by any of the masks below
/// it gives a value that is almost surely unique.
fn random_key(seed: u64) -> FlowKey {
    let mut key = FlowKey::default();
    for (i, w) in key.words_mut().iter_mut().enumerate() {
        *w = splitmix(seed.wrapping_mul(31).wrapping_add(i as u64));
    }
    key
}

/// Masks a Kubernetes node's pipeline produces: port classification, L2 forwarding, service
/// and endpoint IPs, network-policy 5-tuples on conntrack state, register-driven stages.
fn k8s_masks(n: usize) -> Vec<FlowKey> {
    let z = FlowKey::default;
    let all = vec![
        FlowKey { in_port: !0, ..z() },
        FlowKey {
            in_port: !0,
            eth_dst: [0xff; 6],
            ..z()
        },
        FlowKey {
            eth_dst: [0xff; 6],
            ..z()
        },
        FlowKey { nw_dst: !0, ..z() },
        FlowKey {
            nw_dst: 0xffff_ff00,
            ..z()
        },
        FlowKey { nw_src: !0, ..z() },
        FlowKey {
            nw_dst: !0,
            nw_proto: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey {
            nw_src: !0,
            nw_proto: !0,
            tp_src: !0,
            ..z()
        },
        FlowKey {
            ct_state: CT_TRK | CT_EST,
            nw_dst: !0,
            ..z()
        },
        FlowKey {
            ct_state: CT_TRK | CT_NEW,
            nw_dst: !0,
            nw_proto: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey {
            regs: [!0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            nw_dst: !0,
            ..z()
        },
        FlowKey {
            regs: [0, 0xffff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            in_port: !0,
            ..z()
        },
        FlowKey {
            metadata: !0,
            eth_dst: [0xff; 6],
            ..z()
        },
        FlowKey {
            tun_id: !0,
            nw_dst: !0,
            ..z()
        },
        FlowKey {
            recirc_id: !0,
            ct_state: CT_TRK | CT_EST,
            nw_src: !0,
            ..z()
        },
        FlowKey {
            eth_type: !0,
            nw_src: 0xffff_0000,
            in_port: !0,
            ..z()
        },
        FlowKey {
            nw_src: 0xffff_ff00,
            nw_dst: !0,
            ..z()
        },
        FlowKey {
            nw_src: !0,
            nw_dst: !0,
            nw_proto: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey {
            regs: [0, 0, !0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            nw_dst: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey {
            regs: [0, 0, 0, !0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            eth_dst: [0xff; 6],
            ..z()
        },
        FlowKey {
            ct_mark: !0,
            nw_src: !0,
            ..z()
        },
        FlowKey {
            ct_zone: !0,
            ct_state: CT_TRK | CT_NEW,
            nw_dst: !0,
            ..z()
        },
        FlowKey {
            tun_dst: !0,
            tun_id: !0,
            ..z()
        },
        FlowKey {
            eth_src: [0xff; 6],
            in_port: !0,
            ..z()
        },
        FlowKey {
            nw_dst: 0xffff_0000,
            nw_proto: !0,
            ..z()
        },
        FlowKey {
            vlan_tci: !0,
            eth_dst: [0xff; 6],
            ..z()
        },
        FlowKey {
            arp_tpa: !0,
            arp_op: !0,
            ..z()
        },
        FlowKey {
            ipv6_dst: [0xff; 16],
            ..z()
        },
        FlowKey {
            ipv6_src: [0xff; 16],
            nw_proto: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey {
            regs: [0, 0, 0, 0, !0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ct_state: CT_TRK,
            ..z()
        },
        FlowKey {
            metadata: !0,
            nw_dst: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey {
            regs: [0, 0, 0, 0, 0, !0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            nw_src: !0,
            ..z()
        },
    ];
    all.into_iter().take(n).collect()
}

/// Priority of rule `i` in mask `m`: subtables get spread-out priorities so the early exit
/// matters, as in a real pipeline.
fn priority(m: usize, i: usize) -> u32 {
    ((m * 7919) % 97) as u32 * 10 + (i % 3) as u32
}

struct Setup {
    builder: ClassifierBuilder<u32>,
    cls: Arc<Classifier<u32>>,
    hits: Vec<FlowKey>,
    misses: Vec<FlowKey>,
}

fn build(n_rules: usize, n_masks: usize) -> Setup {
    let masks = k8s_masks(n_masks);
    let mut builder = ClassifierBuilder::new();
    for i in 0..n_rules {
        let m = i % masks.len();
        builder.insert(&random_key(i as u64), &masks[m], priority(m, i), i as u32);
    }
    builder.publish();
    let cls = builder.reader().load_full();
    // Hits: the full random key a rule was made from, so it matches that rule's subtable.
    let hits = (0..PACKETS)
        .map(|p| random_key(splitmix(p as u64) % n_rules as u64))
        .collect();
    let misses = (0..PACKETS)
        .map(|p| random_key(u64::MAX / 2 + p as u64))
        .collect();
    Setup {
        builder,
        cls,
        hits,
        misses,
    }
}

fn million() -> &'static std::sync::Mutex<Setup> {
    static M: OnceLock<std::sync::Mutex<Setup>> = OnceLock::new();
    M.get_or_init(|| std::sync::Mutex::new(build(1_000_000, 16)))
}

fn lookup_all(cls: &Classifier<u32>, packets: &[FlowKey]) -> u64 {
    let mut sum = 0u64;
    let mut wc = FlowKey::default();
    for p in packets {
        if let Some(r) = cls.lookup(p, &mut wc) {
            sum = sum.wrapping_add(u64::from(*r.payload()));
        }
    }
    sum ^ wc.words()[0]
}

/// The same packets through `lookup_burst`, 32 at a time (a datapath rx burst).
fn lookup_all_burst(cls: &Classifier<u32>, packets: &[FlowKey]) -> u64 {
    let mut sum = 0u64;
    let mut wcs = [FlowKey::default(); 32];
    let mut out = [None; 32];
    for burst in packets.chunks(32) {
        cls.lookup_burst(burst, &mut wcs, &mut out);
        for r in out.iter().take(burst.len()).flatten() {
            sum = sum.wrapping_add(u64::from(*r.payload()));
        }
    }
    sum ^ wcs[0].words()[0]
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("classifier_lookup_16_masks");
    g.throughput(Throughput::Elements(PACKETS as u64));
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let owned;
        let guard;
        let setup: &Setup = if n == 1_000_000 {
            guard = million().lock().expect("bench setup lock");
            &guard
        } else {
            owned = build(n, 16);
            &owned
        };
        g.bench_with_input(BenchmarkId::new("hit", n), &setup, |b, s| {
            b.iter(|| lookup_all(&s.cls, black_box(&s.hits)))
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &setup, |b, s| {
            b.iter(|| lookup_all(&s.cls, black_box(&s.misses)))
        });
        g.bench_with_input(BenchmarkId::new("hit_burst", n), &setup, |b, s| {
            b.iter(|| lookup_all_burst(&s.cls, black_box(&s.hits)))
        });
        g.bench_with_input(BenchmarkId::new("miss_burst", n), &setup, |b, s| {
            b.iter(|| lookup_all_burst(&s.cls, black_box(&s.misses)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("classifier_lookup_100k_rules");
    g.throughput(Throughput::Elements(PACKETS as u64));
    for masks in [8usize, 32] {
        let s = build(100_000, masks);
        g.bench_with_input(BenchmarkId::new("hit", masks), &s, |b, s| {
            b.iter(|| lookup_all(&s.cls, black_box(&s.hits)))
        });
        g.bench_with_input(BenchmarkId::new("miss", masks), &s, |b, s| {
            b.iter(|| lookup_all(&s.cls, black_box(&s.misses)))
        });
    }
    g.finish();
}

/// Inserting 100k rules into an empty builder and removing them again, publish included.
fn bench_insert_remove(c: &mut Criterion) {
    const N: usize = 100_000;
    let masks = k8s_masks(16);
    let keys: Vec<FlowKey> = (0..N).map(|i| random_key(i as u64 + 7)).collect();
    let mut g = c.benchmark_group("classifier_update_100k");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut builder = ClassifierBuilder::new();
                let t = Instant::now();
                for (i, k) in keys.iter().enumerate() {
                    builder.insert(k, &masks[i % masks.len()], priority(i % 16, i), i as u32);
                }
                builder.publish();
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("remove", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut builder = ClassifierBuilder::new();
                let ids: Vec<RuleId> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| builder.insert(k, &masks[i % masks.len()], 1, i as u32))
                    .collect();
                builder.publish();
                let t = Instant::now();
                for id in ids {
                    black_box(builder.remove(id));
                }
                builder.publish();
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// Applying a batch of inserts to the 1M-rule classifier and publishing it (the copy-on-write
/// cost lands here); the batch is removed again, untimed, so the base stays the same.
fn bench_publish(c: &mut Criterion) {
    let mut setup = million().lock().expect("bench setup lock");
    let masks = k8s_masks(16);
    let mut g = c.benchmark_group("classifier_publish_on_1m");
    let mut round = 0u64;
    for batch in [1usize, 100, 10_000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let t = Instant::now();
                    let ids: Vec<RuleId> = (0..batch)
                        .map(|i| {
                            let k = random_key(splitmix(round) ^ i as u64);
                            setup.builder.insert(&k, &masks[i % masks.len()], 5, 0)
                        })
                        .collect();
                    setup.builder.publish();
                    total += t.elapsed();
                    for id in ids {
                        setup.builder.remove(id);
                    }
                    setup.builder.publish();
                }
                total
            })
        });
    }
    g.finish();
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Not a timing: prints bytes per rule at 1M rules (RSS growth and the builder's own estimate).
fn report_memory(_c: &mut Criterion) {
    let before = rss_kib().unwrap_or(0);
    let t = Instant::now();
    let setup = million().lock().expect("bench setup lock");
    let built = t.elapsed();
    let after = rss_kib().unwrap_or(0);
    let n = setup.builder.len() as f64;
    println!(
        "classifier memory at {} rules, {} subtables: RSS growth {:.0} B/rule, estimate {:.0} B/rule \
         (setup incl. key generation {:.2?})",
        setup.builder.len(),
        setup.builder.n_subtables(),
        (after.saturating_sub(before) * 1024) as f64 / n,
        setup.builder.heap_bytes() as f64 / n,
        built,
    );
}

/// Not a timing of its own: a reader thread (a forwarding thread's pattern: load the snapshot,
/// look up a burst of 32 packets, let go) runs while 10k-change batches are published into the
/// 1M rules; prints the reader's longest burst and how many took over 1 ms. A reader that
/// holds the snapshot a publish replaces may end up freeing it (`flowtable::grace`).
fn report_reader_stall(_c: &mut Criterion) {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ROUNDS: u64 = 20;
    const BATCH: usize = 10_000;
    let mut setup = million().lock().expect("bench setup lock");
    let masks = k8s_masks(16);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let reader = setup.builder.reader();
        let packets: Vec<FlowKey> = setup.hits[..32].to_vec();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut longest, mut over_1ms, mut bursts) = (Duration::ZERO, 0u64, 0u64);
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let t = Instant::now();
                let cls = reader.load();
                black_box(lookup_all_burst(&cls, &packets));
                drop(cls);
                let took = t.elapsed();
                longest = longest.max(took);
                over_1ms += u64::from(took > Duration::from_millis(1));
                bursts += 1;
            }
            (longest, over_1ms, bursts)
        })
    };
    let t = Instant::now();
    for round in 0..ROUNDS {
        let ids: Vec<RuleId> = (0..BATCH)
            .map(|i| {
                let k = random_key(splitmix(round ^ 0xa11_0000) ^ i as u64);
                setup.builder.insert(&k, &masks[i % masks.len()], 5, 0)
            })
            .collect();
        setup.builder.publish();
        for id in ids {
            setup.builder.remove(id);
        }
        setup.builder.publish();
    }
    let publishing = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (longest, over_1ms, bursts) = reader.join().expect("reader thread");
    println!(
        "reader during {} publishes of {BATCH} changes into 1M rules ({publishing:.2?}): \
         longest burst {longest:.2?}, {over_1ms} of {bursts} bursts over 1 ms",
        2 * ROUNDS
    );
}

criterion_group!(
    benches,
    report_memory,
    report_reader_stall,
    bench_lookup,
    bench_insert_remove,
    bench_publish
);
benches::criterion_main!(benches);
