//! The control plane cannot be starved: every bound of the management and OpenFlow sockets,
//! measured on the daemon process (threads from /proc/PID/task, RSS from /proc/PID/status, CPU
//! from /proc/PID/stat over a short window) while forwarding and other clients keep working.
//! Root: the daemon runs in a namespace with two veth pods.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, assert_ping, require_root, run_timeout};

/// A node with bridge br0 and two pods on it, switching L2 (NORMAL).
fn node(tag: &str, extra: &[&str]) -> Node {
    let mut node = Node::new(tag);
    node.start_switch_with("br0", extra);
    node.add_veth_pod(
        &format!("{tag}a"),
        "vethA",
        "10.77.0.1/24",
        "02:00:00:00:77:01",
    );
    node.add_veth_pod(
        &format!("{tag}b"),
        "vethB",
        "10.77.0.2/24",
        "02:00:00:00:77:02",
    );
    let d = node.daemon();
    d.ctl(&["add-port", "br0", "vethA"]);
    d.ctl(&["add-port", "br0", "vethB"]);
    node
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// VmRSS (now) or VmHWM (peak) of `pid`, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// utime + stime of the whole process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    let at = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(14) + at(15)
}

/// Share of one core the daemon used over `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let tck: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(window);
    let (dt, dc) = (t0.elapsed(), cpu_ticks(pid) - c0);
    dc as f64 / tck / dt.as_secs_f64()
}

/// Raises this test process's descriptor limit (a thousand client sockets).
fn raise_own_nofile() {
    let pid = std::process::id().to_string();
    let _ = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=8192:8192"])
        .status();
}

/// Sets the soft descriptor limit of `pid` (the hard one stays).
fn set_nofile(pid: u32, n: u32) {
    let ok = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={n}:")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit --pid {pid} --nofile={n} failed");
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A `vswitchctl` command's wall time, asserting it succeeded.
fn timed_ctl(rundir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let r = run_timeout(
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--rundir")
            .arg(rundir)
            .args(args),
        Duration::from_secs(20),
    );
    assert!(r.ok, "vswitchctl {args:?}: {}{}", r.stdout, r.stderr);
    t.elapsed()
}

/// Reads one reply line (or what came before EOF) within `limit`.
fn reply_line(s: &UnixStream, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

/// One whole OpenFlow message.
fn read_msg(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h)?;
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let mut msg = h.to_vec();
    msg.resize(len.max(8), 0);
    s.read_exact(&mut msg[8..])?;
    Ok(msg)
}

/// True once the peer closed the connection (EOF or reset) within `limit`.
fn closed_within(s: &mut UnixStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_thousand_idle_clients_cost_no_thread_and_others_are_answered() {
    if !require_root("a_thousand_idle_clients_cost_no_thread_and_others_are_answered") {
        return;
    }
    raise_own_nofile();
    let node = node(
        "ctlidle",
        &["--mgmt-max-conns", "600", "--of-max-conns", "600"],
    );
    let d = node.daemon();
    let pid = d.pid();
    set_nofile(pid, 8192);
    assert_ping(node.pod(0).name(), "10.77.0.2", 3);
    let (threads0, rss0) = (threads(pid), rss_kb(pid));
    let fds0 = open_fds(pid);

    let mgmt = d.rundir.join("vswitchd.ctl");
    let of = d.rundir.join("br0.mgmt");
    let mut idle = Vec::new();
    for i in 0..1000 {
        let path = if i % 2 == 0 { &mgmt } else { &of };
        idle.push(UnixStream::connect(path).expect("connect idle client"));
    }
    assert!(
        wait_until(Duration::from_secs(20), || open_fds(pid) >= fds0 + 1000),
        "the daemon accepted only {} of 1000 idle clients",
        open_fds(pid) - fds0
    );
    let cpu = cpu_share(pid, Duration::from_secs(2));
    let (threads1, rss1) = (threads(pid), rss_kb(pid));
    eprintln!(
        "1000 idle clients: threads {threads0} -> {threads1}, RSS {rss0} -> {rss1} kB, \
         CPU {:.1} % of a core",
        cpu * 100.0
    );
    assert_eq!(threads1, threads0, "idle clients must not cost threads");
    assert!(cpu < 0.05, "idle clients cost {:.1} % CPU", cpu * 100.0);
    assert!(
        rss1 < rss0 + 64 * 1024,
        "RSS grew {rss0} -> {rss1} kB with idle clients"
    );

    // Everyone else is still served, promptly; forwarding goes on.
    let t = timed_ctl(&d.rundir, &["list-br"]);
    assert!(t < Duration::from_secs(2), "list-br took {t:?}");
    let t = timed_ctl(&d.rundir, &["show", "br0"]);
    assert!(t < Duration::from_secs(2), "show br0 (OpenFlow) took {t:?}");
    assert_ping(node.pod(0).name(), "10.77.0.2", 3);

    // Beyond the cap (600), a client is turned away at once and told why.
    let extra: Vec<UnixStream> = (0..150)
        .map(|_| UnixStream::connect(&mgmt).expect("connect"))
        .collect();
    let refused = reply_line(extra.last().unwrap(), Duration::from_secs(10));
    assert!(
        refused.contains("limit of 600 management connections"),
        "over the cap: {refused:?}"
    );
    drop(extra);
    drop(idle);
    let t = timed_ctl(&d.rundir, &["list-br"]);
    assert!(
        t < Duration::from_secs(2),
        "list-br after the flood took {t:?}"
    );
}

#[test]
fn an_over_long_request_is_refused_and_memory_stays_bounded() {
    if !require_root("an_over_long_request_is_refused_and_memory_stays_bounded") {
        return;
    }
    let node = node("ctllong", &["--mgmt-max-request-bytes", "1048576"]);
    let d = node.daemon();
    let pid = d.pid();
    let rss0 = rss_kb(pid);
    let mgmt = d.rundir.join("vswitchd.ctl");
    // Eight clients each stream 64 MiB without a newline.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let s = UnixStream::connect(&mgmt).expect("connect");
            let mut w = s.try_clone().expect("clone");
            let t = std::thread::spawn(move || {
                let chunk = vec![b'x'; 1 << 20];
                let _ = w.set_write_timeout(Some(Duration::from_secs(20)));
                for _ in 0..64 {
                    if w.write_all(&chunk).is_err() {
                        return false;
                    }
                }
                true
            });
            (s, t)
        })
        .collect();
    // Each is refused: over the per-request cap, or over what all requests may buffer together.
    let mut too_long = 0;
    for (s, t) in writers {
        let reply = reply_line(&s, Duration::from_secs(20));
        assert!(
            reply.contains("\"ok\":false")
                && (reply.contains("request longer than 1048576 bytes")
                    || reply.contains("requests in flight exceed 2097152 bytes")),
            "over-long request: {reply:?}"
        );
        too_long += usize::from(reply.contains("request longer than"));
        let wrote_all = t.join().expect("writer");
        assert!(!wrote_all, "the daemon kept reading an over-long request");
    }
    assert!(too_long > 0, "no reply named the per-request cap");
    let peak = status_kb(pid, "VmHWM");
    eprintln!("8 x 64 MiB requests refused: RSS {rss0} kB, peak {peak} kB");
    assert!(
        peak < rss0 + 48 * 1024,
        "RSS peaked at {peak} kB (from {rss0})"
    );
    // A request of allowed size still works.
    d.ctl(&["add-flow", "br0", "priority=5,ip,actions=NORMAL"]);
    assert!(d.ctl(&["dump-flows", "br0"]).contains("priority=5,ip"));
    assert_ping(node.pod(0).name(), "10.77.0.2", 3);
}

#[test]
fn silent_trickling_and_unfinished_clients_are_dropped() {
    if !require_root("silent_trickling_and_unfinished_clients_are_dropped") {
        return;
    }
    let node = node("ctlslow", &["--ctl-idle-timeout", "1"]);
    let d = node.daemon();
    let mgmt = d.rundir.join("vswitchd.ctl");
    let of = d.rundir.join("br0.mgmt");

    // Management: silent, and trickling a byte every 200 ms, both get a reply and EOF.
    let silent = UnixStream::connect(&mgmt).unwrap();
    let mut trickle = UnixStream::connect(&mgmt).unwrap();
    let t0 = Instant::now();
    let trickler = {
        let mut w = trickle.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..50 {
                if w.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let reply = reply_line(&silent, Duration::from_secs(10));
    assert!(
        reply.contains("no complete request within 1s"),
        "silent client: {reply:?}"
    );
    assert!(
        closed_within(&mut trickle, Duration::from_secs(10)),
        "a trickling client was not dropped"
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(6), "dropped after {took:?}");
    trickler.join().unwrap();

    // OpenFlow: a silent peer is probed with an echo request, then dropped.
    let mut quiet = UnixStream::connect(&of).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello = read_msg(&mut quiet).unwrap();
    assert_eq!(hello[1], 0, "first message is HELLO");
    quiet.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    let echo = read_msg(&mut quiet).unwrap();
    assert_eq!(
        echo[1], 2,
        "a silent peer gets OFPT_ECHO_REQUEST, got type {}",
        echo[1]
    );
    assert!(
        closed_within(&mut quiet, Duration::from_secs(10)),
        "a peer that ignores echo requests was not dropped"
    );

    // A peer that answers the probes stays.
    let mut live = UnixStream::connect(&of).unwrap();
    live.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    read_msg(&mut live).unwrap();
    live.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    let mut probes = 0;
    while Instant::now() < until {
        let h = read_msg(&mut live).expect("a live peer was dropped");
        assert_eq!(h[1], 2, "unexpected message type {}", h[1]);
        probes += 1;
        // OFPT_ECHO_REPLY with the request's xid.
        let reply = [4, 3, 0, 8, h[4], h[5], h[6], h[7]];
        live.write_all(&reply).unwrap();
    }
    assert!(probes >= 2, "only {probes} probes in 4 s");

    // Half a header, never finished: dropped.
    let mut half = UnixStream::connect(&of).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    read_msg(&mut half).unwrap();
    half.write_all(&[4, 0, 0, 8, 0, 0, 0, 1, 4, 2, 0]).unwrap();
    let t0 = Instant::now();
    assert!(
        closed_within(&mut half, Duration::from_secs(10)),
        "an unfinished message was not dropped"
    );
    assert!(t0.elapsed() < Duration::from_secs(6));

    // Others are served meanwhile; forwarding goes on.
    d.ctl(&["list-br"]);
    assert_ping(node.pod(0).name(), "10.77.0.2", 3);
}

#[test]
fn a_long_command_does_not_block_the_others_and_bad_files_are_refused() {
    if !require_root("a_long_command_does_not_block_the_others_and_bad_files_are_refused") {
        return;
    }
    let node = node("ctlslowcmd", &[]);
    let d = node.daemon();
    // A capture runs for 4 s on a worker; other commands are answered meanwhile.
    let pcap = d.rundir.join("cap.pcap");
    let (rundir, pcap_arg) = (d.rundir.clone(), pcap.to_string_lossy().into_owned());
    let long = std::thread::spawn(move || {
        let t = Instant::now();
        timed_ctl(
            &rundir,
            &["capture", "br0", "vethA", &pcap_arg, "seconds=4"],
        );
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let t = timed_ctl(&d.rundir, &["list-br"]);
        assert!(
            t < Duration::from_secs(2),
            "list-br during a capture took {t:?}"
        );
        let t = timed_ctl(&d.rundir, &["dump-flows", "br0"]);
        assert!(
            t < Duration::from_secs(2),
            "dump-flows during a capture took {t:?}"
        );
    }
    assert_ping(node.pod(0).name(), "10.77.0.2", 2);
    let took = long.join().expect("capture");
    assert!(
        took >= Duration::from_secs(3),
        "the capture ended early ({took:?})"
    );

    // `apply` of a device or a FIFO is refused, quickly, by the client and by the daemon.
    let fifo = d.rundir.join("node.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for bad in [Path::new("/dev/zero"), fifo.as_path()] {
        let t = Instant::now();
        let r = d.ctl_run(&["apply", &bad.to_string_lossy()]);
        assert!(!r.ok, "apply {bad:?} succeeded");
        assert!(
            r.stderr.contains("not a regular file"),
            "apply {bad:?}: {}",
            r.stderr
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    d.ctl(&["list-br"]);
}

#[test]
fn descriptor_exhaustion_does_not_spin() {
    if !require_root("descriptor_exhaustion_does_not_spin") {
        return;
    }
    let node = node("ctlfd", &[]);
    let d = node.daemon();
    let pid = d.pid();
    let limit = open_fds(pid) as u32 + 16;
    set_nofile(pid, limit);
    let mgmt = d.rundir.join("vswitchd.ctl");
    // Far more clients than descriptors left: the backlog holds the rest.
    let held: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&mgmt).expect("connect"))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || open_fds(pid) as u32 >= limit),
        "the daemon never reached its descriptor limit ({} of {limit})",
        open_fds(pid)
    );
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_share(pid, Duration::from_secs(3));
    eprintln!(
        "at the descriptor limit ({limit}): CPU {:.1} % of a core",
        cpu * 100.0
    );
    assert!(cpu < 0.10, "EMFILE spins: {:.1} % CPU", cpu * 100.0);
    assert!(
        d.log_text().contains("accept failed"),
        "no accept-failure warning:\n{}",
        d.log_text()
    );
    // Forwarding does not need new descriptors.
    assert_ping(node.pod(0).name(), "10.77.0.2", 3);
    // Once the clients go, the socket serves again within the back-off.
    drop(held);
    assert!(
        wait_until(Duration::from_secs(15), || d.ctl_run(&["list-br"]).ok),
        "the management socket did not recover"
    );
}
