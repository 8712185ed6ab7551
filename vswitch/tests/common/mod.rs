//! Shared pieces of the end-to-end tests: namespaces with unique names, a vswitchd guard that
//! kills the daemon on drop, pods wired by veth pairs, and commands bounded by a timeout.
//!
//! Every resource is owned by a guard so that a failing assertion (a panic) still removes the
//! namespaces (and with them every interface) and the daemon.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod ofctl;
pub mod vpc;

// Not every test crate that includes this module uses both.
#[allow(unused_imports)]
pub use tap_io::netns::{Netns, require_root};

/// A name unique to this test process and `tag` (tests of one process use distinct tags).
pub fn unique(tag: &str) -> String {
    format!("vse{}-{tag}", std::process::id())
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command, killing it when it outlives `limit`.
pub fn run_timeout(cmd: &mut Command, limit: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait on child") {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait on killed child");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        ok: status.success() && !timed_out,
        timed_out,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `args` in namespace `ns` with a time limit.
pub fn ns_run(ns: &str, args: &[&str], limit: Duration) -> Run {
    run_timeout(
        Command::new("ip").args(["netns", "exec", ns]).args(args),
        limit,
    )
}

/// Runs a shell line in namespace `ns`; panics with its stderr when it fails.
pub fn ns_sh(ns: &str, line: &str) -> String {
    let r = ns_run(ns, &["sh", "-c", line], Duration::from_secs(10));
    assert!(r.ok, "in {ns}: `{line}` failed: {}{}", r.stdout, r.stderr);
    r.stdout
}

/// What one `ping -c N` run reported. iputils ping exits 0 as soon as one reply arrives
/// (partial loss is still success), so its exit status cannot tell "all replies" from "some":
/// the counts come from its summary line, "N packets transmitted, M received".
#[derive(Debug)]
pub struct Ping {
    /// The `-c` asked for.
    pub count: u32,
    /// From the summary; 0 when ping printed none (it could not send at all, or was killed).
    pub transmitted: u32,
    /// Echo replies, duplicates not counted.
    pub received: u32,
    pub run: Run,
}

impl Ping {
    /// All `count` requests went out and every one was answered.
    pub fn all_replied(&self) -> bool {
        self.run.ok
            && !self.run.timed_out
            && self.transmitted == self.count
            && self.received == self.count
    }

    /// Not one reply (also when ping could not send at all, e.g. without a route).
    pub fn none_replied(&self) -> bool {
        self.received == 0
    }

    /// stdout and stderr, for assertion messages.
    pub fn output(&self) -> String {
        format!("{}{}", self.run.stdout, self.run.stderr)
    }
}

/// (transmitted, received) from iputils ping's summary: "3 packets transmitted, 2 received, ...".
pub fn ping_summary(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout
        .lines()
        .find(|l| l.contains(" packets transmitted, "))?;
    let mut parts = line.split(", ");
    let sent = parts.next()?.strip_suffix(" packets transmitted")?;
    let got = parts.next()?.strip_suffix(" received")?;
    Some((sent.trim().parse().ok()?, got.trim().parse().ok()?))
}

/// `ping -n -c count -W 1 -i 0.2 [extra...] dst` from namespace `ns`.
pub fn ping_with(ns: &str, dst: &str, count: u32, extra: &[&str]) -> Ping {
    let c = count.to_string();
    let mut args = vec!["ping", "-n", "-c", &c, "-W", "1", "-i", "0.2"];
    args.extend_from_slice(extra);
    args.push(dst);
    let run = ns_run(ns, &args, Duration::from_secs(count as u64 + 5));
    let (transmitted, received) = ping_summary(&run.stdout).unwrap_or((0, 0));
    Ping {
        count,
        transmitted,
        received,
        run,
    }
}

/// `ping -n -c count -W 1 -i 0.2 dst` from namespace `ns`; check `all_replied` or
/// `none_replied` on the result, not the exit status.
pub fn ping(ns: &str, dst: &str, count: u32) -> Ping {
    ping_with(ns, dst, count, &[])
}

/// The warm-up that tolerates loss, by name: one-shot pings until one is answered, at most
/// `tries` of them, so up to `tries - 1` may be lost (the first requests can die while ARP
/// resolves, MAC tables learn or a new flow table is being installed). True when one was.
pub fn ping_until(ns: &str, dst: &str, tries: u32) -> bool {
    (0..tries).any(|_| ping(ns, dst, 1).all_replied())
}

/// Asserts that, after a warm-up (`ping_until`, at most 5 tries), `count` pings from `ns` to
/// `dst` are every one answered.
pub fn assert_ping(ns: &str, dst: &str, count: u32) {
    assert!(
        ping_until(ns, dst, 5),
        "no reply at all from {dst} to pings from {ns}"
    );
    let r = ping(ns, dst, count);
    assert!(
        r.all_replied(),
        "ping {ns} -> {dst}: {} of {count} answered (all wanted):\n{}",
        r.received,
        r.output()
    );
}

/// A running `vswitchd` inside a namespace; killed (and reaped) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub rundir: PathBuf,
    log: PathBuf,
    /// The namespace it runs in (for restarts).
    ns: String,
}

impl Daemon {
    /// Starts vswitchd in namespace `ns` and waits for its management socket.
    pub fn start(ns: &str, rundir: &Path) -> Daemon {
        Daemon::start_with(ns, rundir, &[])
    }

    /// Like [`Daemon::start`], with extra vswitchd arguments (e.g. `--threads 2`).
    pub fn start_with(ns: &str, rundir: &Path, extra: &[&str]) -> Daemon {
        let _ = std::fs::remove_dir_all(rundir);
        std::fs::create_dir_all(rundir).expect("create rundir");
        Daemon::spawn_in(ns, rundir, extra)
    }

    /// Starts vswitchd in `ns` on `rundir` as it is (a restart keeps what is there); the log
    /// is appended to.
    pub fn spawn_in(ns: &str, rundir: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn_binary(Path::new(env!("CARGO_BIN_EXE_vswitchd")), ns, rundir, extra)
    }

    /// [`Daemon::spawn_in`] with another vswitchd binary.
    pub fn spawn_binary(bin: &Path, ns: &str, rundir: &Path, extra: &[&str]) -> Daemon {
        let log = rundir.join("vswitchd.log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open daemon log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .arg("--rundir")
            .arg(rundir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .spawn()
            .expect("spawn vswitchd");
        let d = Daemon {
            child: Some(child),
            rundir: rundir.to_path_buf(),
            log,
            ns: ns.to_string(),
        };
        let sock = rundir.join("vswitchd.ctl");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(d.alive_now(), "vswitchd exited at start:\n{}", d.log_text());
            assert!(
                Instant::now() < deadline,
                "vswitchd socket {sock:?} never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn alive_now(&self) -> bool {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        // A zombie still answers kill(0); read its state instead.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// The daemon's pid (`ip netns exec` execs vswitchd in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM (a graceful restart's first half) and waits (at most 10 s) for the exit.
    pub fn stop_gracefully(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("vswitchd ignored SIGTERM for 10 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the daemon with SIGKILL (a crash) and reaps it.
    pub fn kill_hard(&mut self) {
        let mut c = self.child.take().expect("daemon running");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts the next process on the same run directory (after `stop_gracefully` or
    /// `kill_hard`) and waits for its socket.
    pub fn start_again(&mut self, extra: &[&str]) {
        self.start_again_from(Path::new(env!("CARGO_BIN_EXE_vswitchd")), extra);
    }

    /// [`Daemon::start_again`] with another binary (an upgrade).
    pub fn start_again_from(&mut self, bin: &Path, extra: &[&str]) {
        assert!(self.child.is_none(), "the previous process still runs");
        // After a kill -9 the old socket file is still there: wait for one that answers.
        let sock = self.rundir.join("vswitchd.ctl");
        let _ = std::fs::remove_file(&sock);
        let mut next = Daemon::spawn_binary(bin, &self.ns, &self.rundir, extra);
        self.child = next.child.take();
        // Its drop would remove the run directory this one keeps using.
        std::mem::forget(next);
    }

    /// True while the daemon process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `vswitchctl ARGS` against this daemon.
    pub fn ctl_run(&self, args: &[&str]) -> Run {
        run_timeout(
            Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
                .arg("--rundir")
                .arg(&self.rundir)
                .args(args),
            Duration::from_secs(10),
        )
    }

    /// Runs `vswitchctl ARGS`, panicking (with the daemon log) when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let r = self.ctl_run(args);
        assert!(
            r.ok,
            "vswitchctl {} failed: {}{}\ndaemon log:\n{}",
            args.join(" "),
            r.stdout,
            r.stderr,
            self.log_text()
        );
        r.stdout
    }

    /// One named counter of `dump-drops BR`.
    pub fn drops(&self, br: &str, reason: &str) -> u64 {
        let text = self.ctl(&["dump-drops", br]);
        parse_drop(&text, reason).unwrap_or_else(|| panic!("no {reason} in dump-drops:\n{text}"))
    }

    /// The `n_packets` summed over the flows `dump-flows BR FILTER` prints.
    pub fn flow_packets(&self, br: &str, filter: &str) -> u64 {
        self.ctl(&["dump-flows", br, filter])
            .lines()
            .filter_map(|l| {
                l.split([',', ' '])
                    .find_map(|w| w.trim().strip_prefix("n_packets="))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    }

    /// `dump-ports BR` as ofport -> counters.
    pub fn ports(&self, br: &str) -> BTreeMap<u32, PortStats> {
        parse_ports(&self.ctl(&["dump-ports", br]))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.rundir);
    }
}

/// The count of drop reason `name` in `dump-drops` output.
pub fn parse_drop(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == name).then(|| w.next()?.parse().ok())?
    })
}

/// Counters of one port from `dump-ports`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

fn field(line: &str, name: &str) -> u64 {
    line.split([',', ' ', ':'])
        .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Parses `dump-ports` text.
pub fn parse_ports(text: &str) -> BTreeMap<u32, PortStats> {
    let mut out = BTreeMap::new();
    let mut cur: Option<u32> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("port") {
            let n: Option<u32> = rest.split(':').next().and_then(|s| s.trim().parse().ok());
            if let Some(n) = n {
                cur = Some(n);
                let s: &mut PortStats = out.entry(n).or_default();
                s.rx_packets = field(t, "pkts");
                s.rx_bytes = field(t, "bytes");
                s.rx_dropped = field(t, "drop");
            }
        } else if let Some(rest) = t.strip_prefix("tx")
            && let Some(n) = cur
        {
            let s: &mut PortStats = out.entry(n).or_default();
            s.tx_packets = field(rest, "pkts");
            s.tx_bytes = field(rest, "bytes");
            s.tx_dropped = field(rest, "drop");
        }
    }
    out
}

/// A pod: its own namespace, whose `eth0` is the far end of a veth (or a moved TAP).
pub struct Pod {
    pub ns: Netns,
    pub ip: String,
}

impl Pod {
    pub fn name(&self) -> &str {
        self.ns.name()
    }
}

/// A node namespace holding the switch and the host ends of the pods' veth pairs.
pub struct Node {
    /// Declared first: the daemon goes before the namespaces are deleted.
    pub daemon: Option<Daemon>,
    pub pods: Vec<Pod>,
    pub ns: Netns,
}

impl Node {
    /// Creates the node namespace `unique(tag)`.
    pub fn new(tag: &str) -> Node {
        Node {
            daemon: None,
            pods: Vec::new(),
            ns: Netns::new(&unique(tag)).expect("create node namespace"),
        }
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// Starts vswitchd in the node namespace and creates bridge `br`.
    pub fn start_switch(&mut self, br: &str) -> &Daemon {
        self.start_switch_with(br, &[])
    }

    /// Like [`Node::start_switch`], with extra vswitchd arguments.
    pub fn start_switch_with(&mut self, br: &str, extra: &[&str]) -> &Daemon {
        let rundir = std::env::temp_dir().join(format!("{}-run", self.name()));
        let d = Daemon::start_with(self.name(), &rundir, extra);
        d.ctl(&["add-br", br]);
        self.daemon = Some(d);
        self.daemon.as_ref().expect("just set")
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("switch started")
    }

    /// Creates pod namespace `unique(pod_tag)` whose `eth0` (address `ip_cidr`, MAC `mac`)
    /// is the peer of `host_if` in the node namespace; both ends up. Returns the pod's index.
    /// The host end gets no IPv6 link-local address: the node kernel must not talk on a port.
    pub fn add_veth_pod(
        &mut self,
        pod_tag: &str,
        host_if: &str,
        ip_cidr: &str,
        mac: &str,
    ) -> usize {
        let ns = Netns::new(&unique(pod_tag)).expect("create pod namespace");
        ns_sh(
            self.name(),
            &format!(
                "ip link add {host_if} type veth peer name eth0 netns {pod} && \
                 sysctl -qw net.ipv6.conf.{host_if}.disable_ipv6=1 && ip link set {host_if} up",
                pod = ns.name()
            ),
        );
        configure_pod_eth0(ns.name(), ip_cidr, mac);
        // AF_PACKET ports read without virtio-net headers, so a TSO/GSO super-frame from the
        // pod would reach the switch as one >MTU frame and be dropped (too_big): let the
        // pod's stack segment instead, as with any AF_PACKET-based userspace switch.
        ns_sh(ns.name(), "ethtool -K eth0 tso off gso off >/dev/null");
        self.pods.push(Pod {
            ns,
            ip: ip_cidr.split('/').next().unwrap_or_default().to_string(),
        });
        self.pods.len() - 1
    }

    /// Moves TAP device `tap` (created by the switch in the node namespace, which keeps its
    /// descriptor) into a new pod namespace `unique(pod_tag)` as `eth0` with `ip_cidr` and
    /// `mac`. Returns the pod's index.
    pub fn adopt_tap_pod(&mut self, pod_tag: &str, tap: &str, ip_cidr: &str, mac: &str) -> usize {
        let ns = Netns::new(&unique(pod_tag)).expect("pod namespace");
        ns_sh(
            self.name(),
            &format!("ip link set {tap} netns {}", ns.name()),
        );
        ns_sh(ns.name(), &format!("ip link set {tap} name eth0"));
        configure_pod_eth0(ns.name(), ip_cidr, mac);
        let ip = ip_cidr.split('/').next().unwrap_or_default().to_string();
        self.adopt_pod(ns, &ip)
    }

    /// Adopts an already wired pod namespace so that it is cleaned up with the node.
    pub fn adopt_pod(&mut self, ns: Netns, ip: &str) -> usize {
        self.pods.push(Pod {
            ns,
            ip: ip.to_string(),
        });
        self.pods.len() - 1
    }

    pub fn pod(&self, i: usize) -> &Pod {
        &self.pods[i]
    }
}

/// Names `eth0` of namespace `ns` with `mac`, gives it `ip_cidr` and brings it up.
pub fn configure_pod_eth0(ns: &str, ip_cidr: &str, mac: &str) {
    ns_sh(
        ns,
        &format!(
            "ip link set eth0 address {mac} && ip addr add {ip_cidr} dev eth0 && ip link set eth0 up"
        ),
    );
}

/// Node `b` as a plain Linux node on the tunnel tests' underlay: 192.168.0.12/24 on its end
/// `ulb` of the underlay veth, the kernel's VXLAN device `vx0` (VNI 100, UDP 4789, remote
/// 192.168.0.11) in a bridge with pod `pod` (172.16.0.2/16, 02:00:00:00:0b:02).
pub fn kernel_vxlan_peer(b: &str, pod: &str) {
    ns_sh(
        b,
        &format!(
            "ip addr add 192.168.0.12/24 dev ulb && ip link set ulb up && \
             ip link add vx0 type vxlan id 100 local 192.168.0.12 remote 192.168.0.11 dstport 4789 dev ulb && \
             ip link add brb type bridge && ip link set vx0 master brb && \
             ip link add vpb type veth peer name eth0 netns {pod} && ip link set vpb master brb && \
             ip link set vx0 up && ip link set vpb up && ip link set brb up"
        ),
    );
    configure_pod_eth0(pod, "172.16.0.2/16", "02:00:00:00:0b:02");
}

/// A capture running in a namespace; `finish` stops it and returns what it printed.
pub struct Capture {
    child: Option<Child>,
    out: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -nn -e -l -i IFACE [-c max] FILTER` in `ns` (output to a file).
    pub fn start(ns: &str, iface: &str, max: u32, filter: &str) -> Capture {
        let out = std::env::temp_dir().join(format!("{ns}-{iface}-cap.txt"));
        let f = std::fs::File::create(&out).expect("capture file");
        let max = max.to_string();
        let mut args = vec![
            "netns", "exec", ns, "tcpdump", "-nn", "-e", "-vv", "-l", "-i", iface, "-c", &max,
        ];
        args.extend(filter.split_whitespace());
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn tcpdump");
        // tcpdump prints "listening on" once its socket is open.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(Instant::now() < deadline, "tcpdump did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture {
            child: Some(child),
            out,
        }
    }

    /// Waits up to `limit` for tcpdump to exit by itself (its -c count), then stops it.
    pub fn finish(mut self, limit: Duration) -> String {
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

/// A process running in a namespace (a server, a capture, a long client); killed on drop.
pub struct Spawned {
    child: Option<Child>,
    out: PathBuf,
}

impl Spawned {
    /// Starts `args` in namespace `ns`, stdout and stderr to a file named after `tag`.
    pub fn start(ns: &str, tag: &str, args: &[&str]) -> Spawned {
        let out = std::env::temp_dir().join(format!("{ns}-{tag}.out"));
        let f = std::fs::File::create(&out).expect("spawned output file");
        // Its own process group, so that drop also stops what it started (`timeout`'s
        // child would otherwise outlive a killed `timeout`, orphaned in a deleted namespace).
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {args:?} in {ns}: {e}"));
        Spawned {
            child: Some(child),
            out,
        }
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = format!("-{}", c.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Waits (up to 5 s) until something in `ns` listens on `port` (`proto` "tcp" or "udp").
pub fn wait_listening(ns: &str, proto: &str, port: u16) {
    let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = ns_run(ns, &["ss", flag, &filter], Duration::from_secs(3));
        if r.ok && !r.stdout.trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {proto}/{port} in {ns}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Writes `text` to a file in the temp dir named `name` (prefixed by the process id) and
/// returns its path; for helper scripts the tests run inside namespaces.
pub fn temp_script(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vse{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("write helper script");
    p
}

impl Node {
    /// A pod wired as CNI plugins for routed pods do: `ip/32` on `eth0`, a route to the
    /// gateway `gw` on the link, a default route through it and a permanent neighbour entry
    /// for it (`gw_mac`), so every packet goes to the switch and no ARP is needed. `mtu`
    /// leaves room for VXLAN; segmentation and receive offloads off (no vnet header on the
    /// AF_PACKET ports), tx checksum offload stays on. Returns the pod's index.
    pub fn add_routed_pod(
        &mut self,
        tag: &str,
        host_if: &str,
        ip: &str,
        mac: &str,
        gw: (&str, &str),
    ) -> usize {
        let i = self.add_veth_pod(tag, host_if, &format!("{ip}/32"), mac);
        let (gw_ip, gw_mac) = gw;
        ns_sh(
            self.pods[i].name(),
            &format!(
                "ip link set eth0 mtu 1450 && ip route add {gw_ip} dev eth0 && \
                 ip route add default via {gw_ip} && \
                 ip neigh replace {gw_ip} lladdr {gw_mac} dev eth0 nud permanent && \
                 (ethtool -K eth0 gro off >/dev/null 2>&1 || true)"
            ),
        );
        i
    }
}

/// A switch (in this process, no root) with bridge `br0` and `n` in-memory ports, ofports
/// `1..=n`; `peers[i]` is the far end of ofport `i + 1` (what the switch sends there arrives
/// on it).
pub struct MemBridge {
    pub switch: std::sync::Arc<vswitch::switch::Switch>,
    pub control: vswitch::control::Control,
    pub peers: Vec<tap_io::MemPort>,
    dir: PathBuf,
}

impl MemBridge {
    pub fn new(n: u32, opts: vswitch::datapath::Options) -> MemBridge {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let (dp, _threads) = vswitch::datapath::spawn(opts).expect("datapath");
        let dir = std::env::temp_dir().join(format!(
            "vswitch-mem-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let switch = std::sync::Arc::new(vswitch::switch::Switch::new(dp, dir.clone()));
        switch.add_br("br0").expect("add-br");
        let mut peers = Vec::new();
        for i in 1..=n {
            let (ours, theirs) = tap_io::MemPort::pair(&format!("m{i}"), &format!("peer{i}"), 1024);
            let spec =
                vswitch::portspec::PortSpec::parse(&format!("m{i}"), &[format!("ofport={i}")])
                    .expect("port spec");
            switch
                .add_port_with_io("br0", spec, ours)
                .expect("add-port");
            peers.push(theirs);
        }
        let control = vswitch::control::Control::new(switch.clone());
        MemBridge {
            switch,
            control,
            peers,
            dir,
        }
    }

    /// Runs a `vswitchctl`-style command; panics with its error.
    pub fn command(&self, args: &[&str]) -> String {
        self.control
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Replaces the bridge's flows with `text` (one flow per line).
    pub fn flows(&self, text: &str) {
        self.command(&["del-flows", "br0"]);
        self.command(&["add-flows", "br0", text]);
    }

    /// Runs `frame` through the bridge as if received on `in_port`.
    pub fn send(&self, in_port: u32, frame: &[u8]) {
        self.switch.inject("br0", in_port, frame).expect("inject");
    }

    /// Frames the switch sent out of `ofport` since the last call.
    pub fn received(&mut self, ofport: u32) -> Vec<Vec<u8>> {
        use tap_io::Port;
        let mut out = Vec::new();
        let mut batch = tap_io::Batch::new(64, 128, 9216);
        loop {
            batch.clear();
            match self.peers[ofport as usize - 1].rx_batch(&mut batch) {
                Ok(n) if n > 0 => out.extend(batch.iter().map(|p| p.data().to_vec())),
                _ => return out,
            }
        }
    }

    /// Which of ports `1..=n` sent something since the last call (and how many frames).
    pub fn outputs(&mut self, n: u32) -> Vec<(u32, usize)> {
        (1..=n)
            .filter_map(|p| {
                let got = self.received(p).len();
                (got > 0).then_some((p, got))
            })
            .collect()
    }

    /// A drop counter of `dump-drops br0`.
    pub fn drops(&self, reason: &str) -> u64 {
        let text = self.command(&["dump-drops", "br0"]);
        parse_drop(&text, reason).unwrap_or_else(|| panic!("no counter {reason} in:\n{text}"))
    }
}

impl Drop for MemBridge {
    fn drop(&mut self) {
        self.switch.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An Ethernet + IPv4 + UDP frame (02:00:00:00:00:01 -> 02:00:00:00:00:02) from `src:sport`
/// to `dst:dport` with a one-byte payload; the IPv4 checksum set, UDP's 0 (none).
pub fn udp_frame_between(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip_len: u16 = 20 + 8 + 1;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, b'q']);
    f
}

/// The long-lived TCP connection of the restart tests (python3, run in namespaces):
/// - `serve PORT SECS`: accepts one connection at a time and answers each line with
///   "LINE PEER-ADDRESS:PEER-PORT" (so the client sees the address the connection arrives
///   from, NAT applied); exits after SECS;
/// - `client HOST PORT SECS [SRC]`: one connection (from address SRC if given), a numbered
///   line every 10 ms for SECS, each reply checked; prints JSON: `sent`, `echoed`,
///   `max_gap_ms` (the longest pause between two replies), `peers` (the addresses the server
///   saw), `local_port`, and `err` when the connection broke.
pub const ECHO_HELPER: &str = r#"
import json, os, socket, sys, threading, time
if sys.argv[1] == 'serve':
    threading.Timer(float(sys.argv[3]), lambda: os._exit(0)).start()
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', int(sys.argv[2]))); s.listen(4)
    while True:
        c, peer = s.accept()
        tag = f'{peer[0]}:{peer[1]}'.encode()
        f = c.makefile('rb')
        for line in f:
            c.sendall(line.rstrip(b'\n') + b' ' + tag + b'\n')
else:
    host, port, secs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    src = sys.argv[5] if len(sys.argv) > 5 else '-'
    res = {'sent': 0, 'echoed': 0, 'max_gap_ms': 0.0, 'peers': []}
    try:
        c = socket.create_connection((host, port), timeout=5,
                                     source_address=(src, 0) if src != '-' else None)
        res['local_port'] = c.getsockname()[1]
        f = c.makefile('rb')
        end = time.time() + secs
        last = time.time()
        i = 0
        while time.time() < end:
            c.sendall(f"{i}\n".encode()); res['sent'] += 1
            got = f.readline().decode().strip()
            n, _, peer = got.partition(' ')
            if n != str(i):
                res['err'] = f'expected {i}, got {got!r}'; break
            if peer not in res['peers']:
                res['peers'].append(peer)
            now = time.time(); res['max_gap_ms'] = max(res['max_gap_ms'], (now - last) * 1000); last = now
            res['echoed'] += 1; i += 1
            time.sleep(0.01)
        c.close()
    except Exception as e:
        res['err'] = f'{type(e).__name__}: {e}'
    print(json.dumps(res))
"#;

/// Sends `bytes` over TCP from `src_ns` to `dst_ip:port` (listening in `dst_ns`); bytes received.
pub fn tcp_transfer(src_ns: &str, dst_ns: &str, dst_ip: &str, port: u16, bytes: usize) -> usize {
    let dst = dst_ns.to_string();
    let listen = format!("timeout 10 nc -l -n {port} | wc -c");
    let receiver =
        std::thread::spawn(move || ns_run(&dst, &["sh", "-c", &listen], Duration::from_secs(12)));
    wait_listening(dst_ns, "tcp", port);
    let send = ns_run(
        src_ns,
        &[
            "sh",
            "-c",
            &format!("head -c {bytes} /dev/zero | timeout 8 nc -N -n -w 3 {dst_ip} {port}"),
        ],
        Duration::from_secs(10),
    );
    let recv = receiver.join().expect("receiver thread");
    assert!(send.ok, "TCP sender failed: {}{}", send.stdout, send.stderr);
    recv.stdout.trim().parse().unwrap_or(0)
}
