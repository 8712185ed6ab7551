//! Datapath "no cliffs" benchmarks:
//!
//! - `mac_learning`: learning a frame's source MAC when the source is known, and when a port
//!   floods 1M random source MACs into a full table (the table evicts from the busiest port: the
//!   cost per frame stays flat and the other ports' MACs stay learned).
//! - `megaflow_cache`: a hit on a hot megaflow, and a new flow's miss + insert + hit once the
//!   cache is full of 1M distinct flows (CLOCK eviction: bounded per flow, hot flows stay).
//! - `service_pipeline`: new connections through a ClusterIP pipeline (ct + NAT + select group
//!   over three backends) on the real datapath with in-memory ports, after 1M distinct
//!   connections went through: per-connection slow-path walks stay at zero (the megaflows do
//!   not pin the 5-tuple). Injection goes through the control channel, so the time per packet
//!   is mostly that channel's; the cache counters printed at the end are the point.
//!
//! Run: `cargo bench -p benches --bench datapath -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use encap::FlowKey;
use encap::build::FrameBuilder;
use vswitch::datapath::cache::MegaflowCache;
use vswitch::datapath::mac_learning::MacTable;

const FLOOD: usize = 1 << 20;
const BATCH: usize = 1024;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_macs(n: usize, seed: u64) -> Vec<[u8; 6]> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let b = splitmix(&mut s).to_be_bytes();
            [b[0] & 0xfe, b[1], b[2], b[3], b[4], b[5]]
        })
        .collect()
}

fn mac_learning(c: &mut Criterion) {
    let mut g = c.benchmark_group("mac_learning");
    g.throughput(Throughput::Elements(BATCH as u64));
    let pods = random_macs(BATCH, 1);
    let mut table = MacTable::new(vswitch::datapath::mac_learning::DEFAULT_MAX_ENTRIES, 300);
    for (i, m) in pods.iter().enumerate() {
        table.learn(0, *m, 2 + (i % 32) as u32, 0);
    }
    g.bench_function("known_sources", |b| {
        b.iter(|| {
            for (i, m) in pods.iter().enumerate() {
                black_box(table.learn(0, *m, 2 + (i % 32) as u32, 1));
            }
        })
    });
    // Port 1 floods 1M random sources; the table is full after the first ~7k.
    let flood = random_macs(FLOOD, 2);
    let mut at = 0usize;
    g.bench_function("flood_1M_random_sources_full_table", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(table.learn(0, flood[at], 1, 2));
                at = (at + 1) % FLOOD;
            }
        })
    });
    g.finish();
    assert!(table.len() <= vswitch::datapath::mac_learning::DEFAULT_MAX_ENTRIES);
    let kept = pods
        .iter()
        .enumerate()
        .filter(|(i, m)| table.lookup(0, **m, 3) == Some(2 + (*i % 32) as u32))
        .count();
    assert_eq!(kept, pods.len(), "the flood evicted other ports' MACs");
    eprintln!(
        "mac_learning: {} flood frames, table {} entries, {} evictions, all {} pod MACs still learned",
        at,
        table.len(),
        table.evictions(),
        pods.len()
    );
}

fn flow(i: u64) -> FlowKey {
    FlowKey {
        in_port: 1,
        eth_type: 0x0800,
        nw_src: 0x0a00_0000 | (i >> 16) as u32,
        nw_dst: 0x0a60_000a,
        nw_proto: 6,
        tp_src: i as u16,
        tp_dst: 80,
        ..FlowKey::default()
    }
}

fn megaflow_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("megaflow_cache");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut cache: MegaflowCache<u64> = MegaflowCache::new(65536);
    // Hot: one Service megaflow (in_port, eth_type, nw_dst, tp_dst) ...
    let service_mask = FlowKey {
        in_port: u32::MAX,
        recirc_id: u32::MAX,
        eth_type: u16::MAX,
        nw_proto: u8::MAX,
        nw_dst: u32::MAX,
        tp_dst: u16::MAX,
        ..FlowKey::default()
    };
    let hot = FlowKey {
        nw_dst: 0x0a60_0001,
        ..flow(0)
    };
    cache.insert(&hot, &service_mask, Arc::new(0), 0);
    // ... and 1M distinct exact 5-tuple flows (a scan, or per-flow megaflows) past the bound.
    let exact = FlowKey::exact_mask();
    for i in 0..FLOOD as u64 {
        cache.insert(&flow(i), &exact, Arc::new(i), 0);
        if i % 64 == 0 {
            assert!(cache.lookup(&hot, 0).is_some(), "hot flow evicted at {i}");
        }
    }
    assert_eq!(cache.len(), 65536);
    g.bench_function("hit_hot_service_flow", |b| {
        b.iter(|| {
            for i in 0..BATCH as u32 {
                let k = FlowKey {
                    tp_src: i as u16,
                    ..hot
                };
                black_box(cache.lookup(&k, 1));
            }
        })
    });
    let mut next = FLOOD as u64;
    g.bench_function("new_flow_past_bound_after_1M", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let k = flow(next);
                next += 1;
                if cache.lookup(&k, 1).is_none() {
                    cache.insert(&k, &exact, Arc::new(next), 1);
                }
                black_box(cache.lookup(&k, 1).expect("just cached"));
            }
            black_box(cache.lookup(&hot, 1).expect("hot flow kept"));
        })
    });
    g.finish();
    eprintln!(
        "megaflow_cache: {} distinct flows, {} cached, {} evictions",
        next,
        cache.len(),
        cache.evictions()
    );
}

/// A ClusterIP Service over three backends on in-memory ports (`vswitch/tests/pipeline_mem.rs`
/// has the same pipeline).
struct Service {
    switch: Arc<vswitch::switch::Switch>,
    control: vswitch::control::Control,
    peers: Vec<tap_io::MemPort>,
    dir: std::path::PathBuf,
}

impl Service {
    fn new() -> Service {
        let opts = vswitch::datapath::Options {
            conntrack: conntrack::Config {
                max_conns: 1 << 21,
                ..conntrack::Config::default()
            },
            ..Default::default()
        };
        let (dp, _threads) = vswitch::datapath::spawn(opts).expect("datapath");
        let dir = std::env::temp_dir().join(format!("vswitch-bench-{}", std::process::id()));
        let switch = Arc::new(vswitch::switch::Switch::new(dp, dir.clone()));
        switch.add_br("br0").expect("add-br");
        let mut peers = Vec::new();
        for i in 1..=4 {
            let (ours, theirs) =
                tap_io::MemPort::pair(&format!("m{i}"), &format!("peer{i}"), 1 << 16);
            let spec =
                vswitch::portspec::PortSpec::parse(&format!("m{i}"), &[format!("ofport={i}")])
                    .expect("port spec");
            switch.add_port_with_io("br0", spec, ours).expect("port");
            peers.push(theirs);
        }
        let control = vswitch::control::Control::new(switch.clone());
        let s = Service {
            switch,
            control,
            peers,
            dir,
        };
        let buckets: Vec<String> = (1..=3)
            .map(|i| {
                format!(
                    "bucket=weight:100,actions=ct(commit,table=2,zone=1,nat(dst=172.16.1.2{i}:8080))"
                )
            })
            .collect();
        s.cmd(&[
            "add-group",
            "br0",
            &format!("group_id=1,type=select,{}", buckets.join(",")),
        ]);
        s.cmd(&[
            "add-flows",
            "br0",
            "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
             table=1,priority=200,ct_state=+new+trk,udp,nw_dst=10.96.0.10,tp_dst=53,actions=group:1\n\
             table=1,priority=90,ct_state=+est+trk,ip,actions=goto_table:2\n\
             table=2,priority=10,ip,nw_dst=172.16.1.21,actions=output:2\n\
             table=2,priority=10,ip,nw_dst=172.16.1.22,actions=output:3\n\
             table=2,priority=10,ip,nw_dst=172.16.1.23,actions=output:4",
        ]);
        s
    }

    fn cmd(&self, args: &[&str]) -> String {
        self.control
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn send(&self, frame: &[u8]) {
        self.switch.inject("br0", 1, frame).expect("inject");
    }

    /// Drains what the backends received; returns how many frames.
    fn drain(&mut self) -> usize {
        use tap_io::Port;
        let mut batch = tap_io::Batch::new(64, 128, 2048);
        let mut n = 0;
        for p in &mut self.peers[1..] {
            loop {
                batch.clear();
                match p.rx_batch(&mut batch) {
                    Ok(k) if k > 0 => n += k,
                    _ => break,
                }
            }
        }
        n
    }

    fn caches(&self) -> String {
        let text = self.cmd(&["dump-drops", "br0"]);
        text.lines()
            .find(|l| l.starts_with("caches:"))
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.switch.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn query(i: u32) -> Vec<u8> {
    let src = 0x0a00_0000 | (i >> 14);
    FrameBuilder::eth([0x0a, 0x58, 0, 0, 0, 1], [0x0a, 0x58, 0, 0, 0, 0xfe])
        .ipv4(src.to_be_bytes(), [10, 96, 0, 10])
        .udp(1024 + (i & 0x3fff) as u16, 53)
        .payload(b"q")
        .build()
}

fn service_pipeline(c: &mut Criterion) {
    let mut s = Service::new();
    let start = Instant::now();
    let mut delivered = 0;
    for i in 0..FLOOD as u32 {
        s.send(&query(i));
        if i % 4096 == 4095 {
            delivered += s.drain();
        }
    }
    delivered += s.drain();
    assert_eq!(delivered, FLOOD, "every connection reaches one backend");
    eprintln!(
        "service_pipeline: {FLOOD} new connections in {:.1} s; {}",
        start.elapsed().as_secs_f64(),
        s.caches()
    );
    let mut g = c.benchmark_group("service_pipeline");
    let mut next = FLOOD as u32;
    g.bench_function("new_connection_after_1M", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                s.send(&query(next));
                next += 1;
            }
            let d = t.elapsed();
            s.drain();
            d.max(Duration::from_nanos(1))
        })
    });
    g.finish();
    eprintln!(
        "service_pipeline: {} connections in all; {}",
        next,
        s.caches()
    );
}

criterion_group!(benches, mac_learning, megaflow_cache, service_pipeline);
benches::criterion_main!(benches);
