//! In-memory ports for the datapath benches (`scaling`, `newconn`): a port that receives
//! pre-generated frames (no generator process, no kernel) and counts what it is handed to send.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tap_io::{Batch, Port, PortStats, TxReport};

/// A counter or flag on cache lines of its own. The ports' counters are allocated one after the
/// other by the main thread and each is written by one forwarding thread per batch: unpadded,
/// two threads' counters (and the stop flag every poll reads) would share a line, a cost of the
/// harness that the switch does not have.
#[derive(Default)]
#[repr(align(128))]
pub struct Own<T>(pub T);

impl<T> std::ops::Deref for Own<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A frame count written by one thread.
pub type Counter = Arc<Own<AtomicU64>>;

/// Set to stop every port replaying.
pub type Stop = Arc<Own<AtomicBool>>;

/// A port that receives its frames `passes` times over (or until stopped) and counts what it
/// is given to send. Its transmit clones (one per other forwarding thread) count on their own.
pub struct Replay {
    name: String,
    frames: Arc<Vec<Vec<u8>>>,
    next: usize,
    passes_left: u64,
    stop: Stop,
    sent: Counter,
    clones: Sent,
    /// Frames handed out by `rx_batch` (one add per batch, by the thread polling the port).
    received: Counter,
    stats: PortStats,
}

/// Frames handed to a port and its transmit clones.
pub type Sent = Arc<Mutex<Vec<Counter>>>;

impl Replay {
    /// Replays `frames` until `stop` is set.
    pub fn new(name: &str, frames: Vec<Vec<u8>>, stop: Stop) -> Self {
        Self::passes(name, frames, u64::MAX, stop)
    }

    /// Replays `frames` `passes` times, then receives nothing.
    pub fn passes(name: &str, frames: Vec<Vec<u8>>, passes: u64, stop: Stop) -> Self {
        let sent = Counter::default();
        Self {
            name: name.to_string(),
            frames: Arc::new(frames),
            next: 0,
            passes_left: passes,
            stop,
            sent: sent.clone(),
            clones: Arc::new(Mutex::new(vec![sent])),
            received: Counter::default(),
            stats: PortStats::default(),
        }
    }

    /// Frames handed to this port (and its clones) for sending.
    pub fn counter(&self) -> Sent {
        self.clones.clone()
    }

    /// Frames this port has received so far (handed to the datapath).
    pub fn received(&self) -> Counter {
        self.received.clone()
    }
}

/// What a port's counter says so far.
pub fn total(c: &Mutex<Vec<Counter>>) -> u64 {
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
        if self.frames.is_empty() || self.passes_left == 0 || self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let mut n = 0;
        while batch.room() > 0 && self.passes_left > 0 {
            if !batch.push_copy(&self.frames[self.next]) {
                break;
            }
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
                self.passes_left -= 1;
            }
            n += 1;
        }
        self.received.fetch_add(n as u64, Ordering::Relaxed);
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
        let sent = Counter::default();
        self.clones.lock().unwrap().push(sent.clone());
        Some(Ok(Box::new(Replay {
            name: self.name.clone(),
            frames: Arc::new(Vec::new()),
            next: 0,
            passes_left: 0,
            stop: self.stop.clone(),
            sent,
            clones: self.clones.clone(),
            received: Counter::default(),
            stats: PortStats::default(),
        })))
    }
}

/// A switch on a fresh datapath with bridge br0 and three backend ports be2..be4 (ofports 2 to
/// 4) that count what they are handed: what both datapath benches start from.
pub struct Bench {
    pub switch: Arc<vswitch::switch::Switch>,
    pub control: vswitch::control::Control,
    /// Stops every replay port of the bench.
    pub stop: Stop,
    delivered: Vec<Sent>,
    joins: Vec<std::thread::JoinHandle<()>>,
    dir: std::path::PathBuf,
}

impl Bench {
    /// `tag` names the run directory; `backend_opts` are added to the backends' port specs.
    pub fn new(tag: &str, opts: vswitch::datapath::Options, backend_opts: &[&str]) -> Bench {
        let (dp, joins) = vswitch::datapath::spawn(opts).expect("datapath");
        let dir = std::env::temp_dir().join(format!("vswitch-{tag}-{}", std::process::id()));
        let switch = Arc::new(vswitch::switch::Switch::new(dp, dir.clone()));
        switch.add_br("br0").expect("add-br");
        let control = vswitch::control::Control::new(switch.clone());
        let mut bench = Bench {
            switch,
            control,
            stop: Stop::default(),
            delivered: Vec::new(),
            joins,
            dir,
        };
        for b in 2..=4u32 {
            let port = Replay::new(&format!("be{b}"), Vec::new(), bench.stop.clone());
            bench.delivered.push(port.counter());
            let mut args = vec![format!("ofport={b}")];
            args.extend(backend_opts.iter().map(|o| o.to_string()));
            bench.add_port(port, &args);
        }
        bench
    }

    /// Attaches `port` to br0 with the port spec `args` (`ofport=N`, `options:...`).
    pub fn add_port(&self, port: Replay, args: &[String]) {
        let spec = vswitch::portspec::PortSpec::parse(&port.name, args).expect("port spec");
        self.switch
            .add_port_with_dev("br0", spec, Box::new(port))
            .expect("add port");
    }

    /// A `vswitchctl` command, panicking when it fails.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.control
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Frames handed to the backends so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.iter().map(|c| total(c)).sum()
    }

    /// Stops the replays, the switch and its forwarding threads; removes the run directory.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.switch.shutdown();
        for j in self.joins {
            let _ = j.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU time (user + system) of this process so far.
pub fn process_cpu() -> Duration {
    cpu_of(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// User + system time from a `/proc/.../stat` line.
pub fn cpu_of(stat: &str) -> Duration {
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

/// CPU time of this process's threads named `name` (the forwarding threads: `datapath`,
/// `datapath-N`), in nanoseconds from the scheduler's accounting when the kernel keeps it.
pub fn threads_cpu(name: &str) -> Duration {
    let mut ns = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in dir.flatten() {
        let p = task.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm != name && !comm.starts_with(&format!("{name}-")) {
            continue;
        }
        ns += match std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            Some(v) => v,
            None => {
                let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
                cpu_of(&stat).as_nanos() as u64
            }
        };
    }
    Duration::from_nanos(ns)
}
