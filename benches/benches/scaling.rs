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
//! Run: `cargo bench --profile release -p benches --bench scaling` (`SECS=5` for longer runs).
//! Without `--bench` (as `cargo test --benches` runs it) it only checks that both cases
//! deliver frames.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use encap::build::FrameBuilder;
use tap_io::{Batch, Port, PortStats, TxReport};

/// Flows per client port.
const FLOWS: usize = 4096;

/// A port that receives its frames over and over (until stopped) and counts what it is given
/// to send. Its transmit clones (one per other forwarding thread) count on their own.
struct Replay {
    name: String,
    frames: Arc<Vec<Vec<u8>>>,
    next: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    clones: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
    stats: PortStats,
}

impl Replay {
    fn new(name: &str, frames: Vec<Vec<u8>>, stop: Arc<AtomicBool>) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        Self {
            name: name.to_string(),
            frames: Arc::new(frames),
            next: 0,
            stop,
            sent: sent.clone(),
            clones: Arc::new(Mutex::new(vec![sent])),
            stats: PortStats::default(),
        }
    }

    /// Frames handed to this port (and its clones) for sending.
    fn counter(&self) -> Arc<Mutex<Vec<Arc<AtomicU64>>>> {
        self.clones.clone()
    }
}

fn total(c: &Mutex<Vec<Arc<AtomicU64>>>) -> u64 {
    c.lock()
        .unwrap()
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
}

impl Port for Replay {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        if self.frames.is_empty() || self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let mut n = 0;
        while batch.room() > 0 {
            if !batch.push_copy(&self.frames[self.next]) {
                break;
            }
            self.next = (self.next + 1) % self.frames.len();
            n += 1;
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        let n = batch.len();
        let bytes = batch.packets().iter().map(|p| p.len() as u64).sum();
        batch.clear();
        // One add per batch, on this thread's own counter.
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        TxReport {
            sent: n,
            bytes,
            ..TxReport::default()
        }
    }

    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        let sent = Arc::new(AtomicU64::new(0));
        self.clones.lock().unwrap().push(sent.clone());
        Some(Ok(Box::new(Replay {
            name: self.name.clone(),
            frames: Arc::new(Vec::new()),
            next: 0,
            stop: self.stop.clone(),
            sent,
            clones: self.clones.clone(),
            stats: PortStats::default(),
        })))
    }
}

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

/// CPU time (user + system) of this process so far.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

struct Outcome {
    pps: f64,
    cpu_ns_per_pkt: f64,
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
    let (dp, joins) = vswitch::datapath::spawn(opts).expect("datapath");
    let dir =
        std::env::temp_dir().join(format!("vswitch-scaling-{}-{threads}", std::process::id()));
    let switch = Arc::new(vswitch::switch::Switch::new(dp, dir.clone()));
    switch.add_br("br0").expect("add-br");
    let stop = Arc::new(AtomicBool::new(false));
    let mut delivered = Vec::new();
    for b in 2..=4u32 {
        let port = Replay::new(&format!("be{b}"), Vec::new(), stop.clone());
        delivered.push(port.counter());
        let spec = vswitch::portspec::PortSpec::parse(
            &format!("be{b}"),
            &[format!("ofport={b}"), "options:thread=0".into()],
        )
        .expect("spec");
        switch
            .add_port_with_dev("br0", spec, Box::new(port))
            .expect("backend port");
    }
    let control = vswitch::control::Control::new(switch.clone());
    let cmd = |args: &[&str]| {
        control
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
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
    for c in 0..2u32 {
        let thread = if threads > 1 { c } else { 0 };
        let port = Replay::new(&format!("cl{c}"), client_frames(c), stop.clone());
        let ofport = 5 + c;
        let spec = vswitch::portspec::PortSpec::parse(
            &format!("cl{c}"),
            &[
                format!("ofport={ofport}"),
                format!("options:thread={thread}"),
            ],
        )
        .expect("spec");
        switch
            .add_port_with_dev("br0", spec, Box::new(port))
            .expect("client port");
    }
    let count = || delivered.iter().map(|c| total(c)).sum::<u64>();
    std::thread::sleep(warmup);
    let (p0, c0, t0) = (count(), process_cpu(), Instant::now());
    std::thread::sleep(secs);
    let (p1, c1, t1) = (count(), process_cpu(), Instant::now());
    if p1 == p0 {
        eprintln!(
            "scaling: nothing delivered with {threads} thread(s):\n{}\n{}",
            cmd(&["dump-ports", "br0"]),
            cmd(&["dump-drops", "br0"])
        );
    }
    stop.store(true, Ordering::Relaxed);
    switch.shutdown();
    for j in joins {
        let _ = j.join();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let pkts = (p1 - p0) as f64;
    Outcome {
        pps: pkts / (t1 - t0).as_secs_f64(),
        cpu_ns_per_pkt: (c1 - c0).as_nanos() as f64 / pkts.max(1.0),
    }
}

fn main() {
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
    let cases: Vec<(usize, usize, Outcome)> = [(1, 1), (1, 2), (shards, 1), (shards, 2)]
        .into_iter()
        .map(|(s, t)| (s, t, run(t, s, warmup, secs)))
        .collect();
    for (s, t, o) in &cases {
        assert!(o.pps > 0.0, "no frames delivered ({t} threads, {s} shards)");
    }
    if !bench {
        return;
    }
    println!(
        "scaling (ClusterIP: ct+NAT+select group, 64-byte UDP, 8192 flows, in memory, {} s):",
        secs.as_secs()
    );
    println!("| conntrack shards | forwarding threads | delivered pps | process CPU ns/packet |");
    println!("|---|---|---|---|");
    for (s, t, o) in &cases {
        println!(
            "| {s} | {t} | {:.0}k | {:.0} |",
            o.pps / 1000.0,
            o.cpu_ns_per_pkt
        );
    }
    for pair in cases.chunks(2) {
        println!(
            "{} shard(s): 2 threads / 1 thread: {:.2}x",
            pair[0].0,
            pair[1].2.pps / pair[0].2.pps
        );
    }
}
