//! Forwarding threads, in memory: the real datapath (`vswitch::datapath`, its poll loop, caches,
//! conntrack, NAT, select group) on ports that replay pre-generated frames, so no generator
//! process and no kernel share the cores with it. A ClusterIP Service with the Service harness's
//! rules (`benches/harness/services/ovs.flows`: `ct(table=1,zone=1,nat)`, a select group over
//! three backends committing `ct(commit,nat(dst=...))`, a one-way flow's later packets
//! re-committed, output by backend) receives 64-byte UDP from 8192 one-way flows; each client
//! port replays its own 4096 flows in a loop, so every packet is a conntrack lookup with NAT.
//!
//! Cases, each for `SECS` seconds after a warm-up: one forwarding thread polling both client
//! ports, then two threads (`--threads 2`), one client port each; both with the connection
//! table in one shard (one lock for the whole table, held for as long as a batch stays in it:
//! how the table was shared before it was sharded) and in the default 16 shards. Printed:
//! delivered packets/s (frames the backends' ports were handed), process CPU per packet, and
//! the 2-thread/1-thread ratios. Backends' transmit counters are per thread, folded per batch.
//!
//! Run: `cargo bench --profile release -p benches --bench scaling` (`SECS=5` for longer runs,
//! `ROUNDS=3` for the median of three interleaved rounds, `CASES=16x2` for one case: shards x
//! threads). Per forwarding thread it also prints the CPU time per packet it received, the
//! share of a core it got and its context switches: on a shared machine the 2-thread pps
//! depends on the cores the other work leaves, the CPU per packet does not.
//! Without `--bench` (as `cargo test --benches` runs it) it only checks that both cases
//! deliver frames.

mod replay;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use encap::build::FrameBuilder;
use replay::{Bench, Replay, cpu_of, process_cpu};

/// Flows per client port.
const FLOWS: usize = 4096;

fn client_frames(client: u32) -> Vec<Vec<u8>> {
    (0..FLOWS as u32)
        .map(|i| {
            let src = 0x0a00_0000 | (client << 16) | (i >> 8);
            FrameBuilder::eth([0x0a, 0x58, 0, 0, 0, 1], [0x0a, 0x58, 0, 0, 0, 0xfe])
                .ipv4(src.to_be_bytes(), [10, 96, 0, 10])
                .udp(1024 + (i & 0xff) as u16, 53)
                .payload(&[0u8; 18])
                .build()
        })
        .collect()
}

/// One forwarding thread's CPU time and context switches so far.
#[derive(Clone, Copy, Default)]
struct ThreadUse {
    cpu: Duration,
    /// Voluntary switches: the thread slept (a futex wait on a contended lock, or an idle poll).
    voluntary: u64,
    /// Involuntary: the scheduler took the core away (other work on the machine).
    involuntary: u64,
}

/// The forwarding threads (`datapath`, `datapath-N`) by index.
fn datapath_threads() -> Vec<(usize, ThreadUse)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return v;
    };
    for t in dir.flatten() {
        let path = t.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        let index = match comm.strip_prefix("datapath") {
            Some("") => 0,
            Some(n) => match n.strip_prefix('-').and_then(|n| n.parse().ok()) {
                Some(i) => i,
                None => continue,
            },
            None => continue,
        };
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        v.push((
            index,
            ThreadUse {
                cpu: cpu_of(&std::fs::read_to_string(path.join("stat")).unwrap_or_default()),
                voluntary: field("voluntary_ctxt_switches:"),
                involuntary: field("nonvoluntary_ctxt_switches:"),
            },
        ));
    }
    v.sort_by_key(|(i, _)| *i);
    v
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

struct Outcome {
    pps: f64,
    cpu_ns_per_pkt: f64,
    /// Per forwarding thread: CPU ns per packet it received, share of a core it got,
    /// voluntary and involuntary context switches per second.
    threads: Vec<(f64, f64, f64, f64)>,
    load: (String, String),
}

fn run(threads: usize, shards: usize, warmup: Duration, secs: Duration) -> Outcome {
    let opts = vswitch::datapath::Options {
        threads,
        ct_shards: shards,
        conntrack: conntrack::Config {
            max_conns: 1 << 16,
            ..conntrack::Config::default()
        },
        ..Default::default()
    };
    let bench = Bench::new(&format!("scaling-{threads}"), opts, &["options:thread=0"]);
    let cmd = |args: &[&str]| bench.cmd(args);
    let buckets: Vec<String> = (1..=3)
        .map(|i| {
            format!(
                "bucket=weight:100,actions=ct(commit,table=2,zone=1,nat(dst=172.16.1.2{i}:5353))"
            )
        })
        .collect();
    cmd(&[
        "add-group",
        "br0",
        &format!("group_id=1,type=select,{}", buckets.join(",")),
    ]);
    cmd(&[
        "add-flows",
        "br0",
        "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
         table=1,priority=100,ct_state=+new+trk,udp,nw_dst=10.96.0.10,tp_dst=53,actions=group:1\n\
         table=1,priority=80,ct_state=+new+trk,ip,nw_dst=172.16.1.0/24,actions=ct(commit,table=2,zone=1)\n\
         table=1,priority=70,ct_state=+est+trk,ip,actions=resubmit(,2)\n\
         table=2,priority=100,ip,nw_dst=172.16.1.21,actions=set_field:0a:58:0c:00:00:02->eth_dst,output:2\n\
         table=2,priority=100,ip,nw_dst=172.16.1.22,actions=set_field:0a:58:0c:00:00:03->eth_dst,output:3\n\
         table=2,priority=100,ip,nw_dst=172.16.1.23,actions=set_field:0a:58:0c:00:00:04->eth_dst,output:4",
    ]);
    // The clients last: they start replaying as soon as they are attached.
    let mut received = Vec::new();
    for c in 0..2u32 {
        let thread = if threads > 1 { c } else { 0 };
        let port = Replay::new(&format!("cl{c}"), client_frames(c), bench.stop.clone());
        received.push((thread as usize, port.received()));
        bench.add_port(
            port,
            &[
                format!("ofport={}", 5 + c),
                format!("options:thread={thread}"),
            ],
        );
    }
    let count = || bench.delivered();
    let per_thread = || {
        let mut n = vec![0u64; threads];
        for (t, r) in &received {
            n[*t] += r.load(Ordering::Relaxed);
        }
        n
    };
    std::thread::sleep(warmup);
    let load0 = loadavg();
    let (p0, c0, t0) = (count(), process_cpu(), Instant::now());
    let (r0, u0) = (per_thread(), datapath_threads());
    std::thread::sleep(secs);
    let (p1, c1, t1) = (count(), process_cpu(), Instant::now());
    let (r1, u1) = (per_thread(), datapath_threads());
    let load1 = loadavg();
    let span = (t1 - t0).as_secs_f64();
    let thread_use = u1
        .iter()
        .filter_map(|(i, b)| {
            let a = u0.iter().find(|(j, _)| j == i)?.1;
            let pkts = r1.get(*i)?.saturating_sub(*r0.get(*i)?) as f64;
            let cpu = (b.cpu - a.cpu).as_secs_f64();
            Some((
                cpu * 1e9 / pkts.max(1.0),
                cpu / span,
                (b.voluntary - a.voluntary) as f64 / span,
                (b.involuntary - a.involuntary) as f64 / span,
            ))
        })
        .collect();
    if p1 == p0 {
        eprintln!(
            "scaling: nothing delivered with {threads} thread(s):\n{}\n{}",
            cmd(&["dump-ports", "br0"]),
            cmd(&["dump-drops", "br0"])
        );
    }
    bench.finish();
    let pkts = (p1 - p0) as f64;
    Outcome {
        pps: pkts / span,
        cpu_ns_per_pkt: (c1 - c0).as_nanos() as f64 / pkts.max(1.0),
        threads: thread_use,
        load: (load0, load1),
    }
}

fn main() {
    benches::enable_heap_huge_pages();
    let bench = std::env::args().any(|a| a == "--bench");
    let (warmup, secs) = if bench {
        let s: u64 = std::env::var("SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        (Duration::from_secs(1), Duration::from_secs(s))
    } else {
        (Duration::from_millis(100), Duration::from_millis(200))
    };
    let shards = vswitch::datapath::DEFAULT_CT_SHARDS;
    // `CASES=16x2,1x1` runs only those (shards x threads), e.g. for `perf record`.
    let wanted: Vec<(usize, usize)> = std::env::var("CASES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|c| {
                    let (s, t) = c.split_once('x')?;
                    Some((s.parse().ok()?, t.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![(1, 1), (1, 2), (shards, 1), (shards, 2)]);
    // `ROUNDS=N`: every case N times, interleaved (so a change of load on the machine hits
    // all cases alike); the round with the median pps is printed.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut all: Vec<Vec<Outcome>> = wanted.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, &(s, t)) in wanted.iter().enumerate() {
            all[i].push(run(t, s, warmup, secs));
        }
    }
    let cases: Vec<(usize, usize, Outcome)> = wanted
        .into_iter()
        .zip(all)
        .map(|((s, t), mut v)| {
            v.sort_by(|a, b| a.pps.total_cmp(&b.pps));
            let mid = v.len() / 2;
            (s, t, v.swap_remove(mid))
        })
        .collect();
    for (s, t, o) in &cases {
        assert!(o.pps > 0.0, "no frames delivered ({t} threads, {s} shards)");
    }
    if !bench {
        return;
    }
    println!(
        "scaling (ClusterIP: ct+NAT+select group, 64-byte UDP, 8192 flows, in memory, {} s, \
         median of {rounds} round(s)):",
        secs.as_secs()
    );
    println!(
        "| conntrack shards | forwarding threads | delivered pps | process CPU ns/packet | \
         per thread: CPU ns/packet received, cores used, voluntary/involuntary switches/s | \
         load average (start, end) |"
    );
    println!("|---|---|---|---|---|---|");
    for (s, t, o) in &cases {
        let per: Vec<String> = o
            .threads
            .iter()
            .map(|(ns, core, vol, inv)| format!("{ns:.0} ns, {core:.2}, {vol:.0}/{inv:.0}"))
            .collect();
        println!(
            "| {s} | {t} | {:.0}k | {:.0} | {} | {}, {} |",
            o.pps / 1000.0,
            o.cpu_ns_per_pkt,
            per.join("; "),
            o.load.0,
            o.load.1
        );
    }
    for s in [1, shards] {
        let find = |t| cases.iter().find(|c| c.0 == s && c.1 == t).map(|c| &c.2);
        if let (Some(one), Some(two)) = (find(1), find(2)) {
            println!(
                "{s} shard(s): 2 threads / 1 thread: {:.2}x pps, {:.2}x CPU per packet",
                two.pps / one.pps,
                two.cpu_ns_per_pkt / one.cpu_ns_per_pkt
            );
        }
    }
    let one = |s| {
        cases
            .iter()
            .find(|c| c.0 == s && c.1 == 1)
            .map(|c| c.2.cpu_ns_per_pkt)
    };
    if let (Some(a), Some(b)) = (one(1), one(shards)) {
        println!(
            "1 thread: {shards} shards / 1 shard CPU per packet: {:.2}x",
            b / a
        );
    }
}
