//! CPU per new connection through a ClusterIP, in memory: the real datapath (`vswitch::datapath`,
//! poll loop, caches, conntrack, NAT, select group) with the Service harness's own rules
//! (`benches/harness/services/ovs.flows` and `ovs.groups`, loaded unchanged) on ports that replay
//! pre-generated 64-byte UDP frames, so no generator process, no kernel and no control channel
//! share the forwarding thread's time. Default datapath options (one forwarding thread, the
//! default connection table).
//!
//! Cases, each on a fresh datapath, alternating in every round:
//! - `plain`: one rule per backend address (`nw_dst → set eth_dst, output`), every frame a new
//!   5-tuple to a backend: the cost of forwarding a packet of a flow not seen before.
//! - `new connection`: every frame a new 5-tuple to the UDP ClusterIP 10.247.0.12:53: conntrack
//!   miss, `+new`, the select group, `ct(commit,nat(dst=...))`, output; one new connection each.
//! - `one-way entry`: 4096 flows to the ClusterIP replayed over and over (the harness's `udp1`):
//!   each packet finds its connection, is DNATed and re-committed.
//!
//! Printed per case: forwarding-thread CPU per packet (from the scheduler's accounting of the
//! `datapath` thread only, not the process), delivered packets/s, and the datapath's cache
//! counters; then the ratios of the medians. Knobs: `CONNS` (packets per case, 200000: within
//! the default table size), `ROUNDS` (3).
//!
//! Run: `cargo bench --profile release -p benches --bench newconn`. Without `--bench` (as
//! `cargo test --benches` runs it) it runs a short round and checks every frame is delivered.

mod replay;

use std::time::{Duration, Instant};

use encap::build::FrameBuilder;
use replay::{Bench, Replay, threads_cpu};

const VIP: [u8; 4] = [10, 247, 0, 12];
const BACKEND: [u8; 4] = [172, 16, 1, 31];
/// Flows of the one-way case.
const ONE_WAY_FLOWS: u32 = 4096;

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Plain,
    NewConn,
    OneWay,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain forwarding, new 5-tuple per packet",
            Case::NewConn => "ClusterIP, new connection per packet",
            Case::OneWay => "ClusterIP, one-way entry (4096 flows)",
        }
    }
}

/// UDP from client `i` (distinct source address and port up to 2^20 clients) to `dst`:53xx.
fn frame(i: u32, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let src = 0xac10_0300u32 + (i >> 14);
    FrameBuilder::eth(
        [0x0a, 0x58, 0x0c, 0, 0x0f, 0x01],
        [0x0a, 0x58, 0, 0, 0, 0xfe],
    )
    .ipv4(src.to_be_bytes(), dst)
    .udp(1024 + (i & 0x3fff) as u16, dport)
    .payload(&[0u8; 18])
    .build()
}

struct Outcome {
    delivered: u64,
    expected: u64,
    secs: f64,
    fwd_ns_per_pkt: f64,
    caches: String,
}

fn run(case: Case, packets: u32) -> Outcome {
    let bench = Bench::new("newconn", vswitch::datapath::Options::default(), &[]);
    let cmd = |args: &[&str]| bench.cmd(args);
    let (frames, passes): (Vec<Vec<u8>>, u64) = match case {
        Case::Plain => {
            cmd(&[
                "add-flows",
                "br0",
                "table=0,priority=100,ip,nw_dst=172.16.1.31,actions=set_field:0a:58:0c:00:0f:02->eth_dst,output:2\n\
                 table=0,priority=100,ip,nw_dst=172.16.1.32,actions=set_field:0a:58:0c:00:0f:03->eth_dst,output:3\n\
                 table=0,priority=100,ip,nw_dst=172.16.1.33,actions=set_field:0a:58:0c:00:0f:04->eth_dst,output:4\n\
                 table=0,priority=0,actions=drop",
            ]);
            ((0..packets).map(|i| frame(i, BACKEND, 5353)).collect(), 1)
        }
        Case::NewConn | Case::OneWay => {
            cmd(&[
                "add-groups",
                "br0",
                include_str!("../harness/services/ovs.groups"),
            ]);
            cmd(&[
                "add-flows",
                "br0",
                include_str!("../harness/services/ovs.flows"),
            ]);
            if case == Case::NewConn {
                ((0..packets).map(|i| frame(i, VIP, 53)).collect(), 1)
            } else {
                let flows = ONE_WAY_FLOWS.min(packets);
                (
                    (0..flows).map(|i| frame(i, VIP, 53)).collect::<Vec<_>>(),
                    u64::from(packets / flows),
                )
            }
        }
    };
    let expected = frames.len() as u64 * passes;
    let count = || bench.delivered();
    // The client last: it starts replaying as soon as it is attached.
    let client = Replay::passes("cl1", frames, passes, bench.stop.clone());
    let (c0, t0) = (threads_cpu("datapath"), Instant::now());
    bench.add_port(client, &["ofport=1".to_string()]);
    let deadline = t0 + Duration::from_secs(120);
    let mut got = count();
    while got < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        got = count();
    }
    let (c1, t1) = (threads_cpu("datapath"), Instant::now());
    let caches = cmd(&["dump-drops", "br0"])
        .lines()
        .find(|l| l.starts_with("caches:"))
        .unwrap_or_default()
        .to_string();
    if got < expected {
        eprintln!(
            "newconn: {} of {expected} delivered:\n{}",
            got,
            cmd(&["dump-drops", "br0"])
        );
    }
    bench.finish();
    Outcome {
        delivered: got,
        expected,
        secs: (t1 - t0).as_secs_f64(),
        fwd_ns_per_pkt: c1.saturating_sub(c0).as_nanos() as f64 / got.max(1) as f64,
        caches,
    }
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    benches::enable_heap_huge_pages();
    let bench = std::env::args().any(|a| a == "--bench");
    let (packets, rounds) = if bench {
        (env("CONNS", 200_000), env("ROUNDS", 3).max(1))
    } else {
        (8192, 1)
    };
    let cases = [Case::Plain, Case::NewConn, Case::OneWay];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    if bench {
        println!(
            "newconn ({packets} packets per case, 64-byte UDP, in memory, default options, {rounds} rounds):"
        );
        println!("| round | case | fwd thread ns/packet | delivered pps | caches |");
        println!("|---|---|---|---|---|");
    }
    for round in 1..=rounds {
        for (i, case) in cases.iter().enumerate() {
            let o = run(*case, packets);
            assert_eq!(
                o.delivered,
                o.expected,
                "{}: every frame reaches a backend",
                case.name()
            );
            ns[i].push(o.fwd_ns_per_pkt);
            if bench {
                println!(
                    "| {round} | {} | {:.0} | {:.0}k | {} |",
                    case.name(),
                    o.fwd_ns_per_pkt,
                    o.delivered as f64 / o.secs / 1000.0,
                    o.caches.trim_start_matches("caches:").trim()
                );
            }
        }
    }
    if !bench {
        return;
    }
    let m: Vec<f64> = ns.into_iter().map(median).collect();
    println!(
        "medians: plain {:.0} ns, new connection {:.0} ns, one-way entry {:.0} ns per packet",
        m[0], m[1], m[2]
    );
    println!(
        "new connection / plain: {:.2}x; new connection / one-way entry: {:.2}x; one-way entry / plain: {:.2}x",
        m[1] / m[0],
        m[1] / m[2],
        m[2] / m[0]
    );
}
