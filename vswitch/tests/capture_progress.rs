//! `vswitchctl capture` shows its progress on stderr (with `--progress`, or whenever stderr is
//! a terminal): the frames taken so far, read from the daemon with `capture-status`, against
//! the capture's limits. Root: the daemon runs in a namespace with two veth pods.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Node, ping_until, ping_with, require_root, run_timeout};

#[test]
fn capture_prints_a_growing_frame_count_and_capture_status_reads_it() {
    if !require_root("capture_prints_a_growing_frame_count_and_capture_status_reads_it") {
        return;
    }
    let tag = "capprog";
    let mut node = Node::new(tag);
    node.start_switch_with("br0", &[]);
    node.add_veth_pod(
        &format!("{tag}a"),
        "vethA",
        "10.78.0.1/24",
        "02:00:00:00:78:01",
    );
    node.add_veth_pod(
        &format!("{tag}b"),
        "vethB",
        "10.78.0.2/24",
        "02:00:00:00:78:02",
    );
    let d = node.daemon();
    d.ctl(&["add-port", "br0", "vethA"]);
    d.ctl(&["add-port", "br0", "vethB"]);
    assert!(ping_until(node.pod(0).name(), "10.78.0.2", 5));

    // No capture running: nothing wanted.
    assert_eq!(
        d.ctl(&["capture-status", "br0", "vethA"]),
        "frames=0 wanted=0\n"
    );
    let bad = d.ctl_run(&["capture-status", "br0", "nosuch"]);
    assert!(
        !bad.ok && bad.stderr.contains("no port nosuch"),
        "{}",
        bad.stderr
    );

    // Two frames per ping on vethA (request in, reply out), a ping every 0.5 s: 48 frames
    // take up to 12 s (less with the pods' own IPv6 and ARP frames, seen at up to ~9 a
    // second), so the once-a-second progress line shows the count grow.
    let pinger = {
        let ns = node.pod(0).name().to_string();
        std::thread::spawn(move || ping_with(&ns, "10.78.0.2", 30, &["-i", "0.5"]))
    };
    let pcap = d.rundir.join("progress.pcap");
    let r = run_timeout(
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--rundir")
            .arg(&d.rundir)
            .args(["capture", "br0", "vethA"])
            .arg(&pcap)
            .args(["count=48", "seconds=30", "--progress"]),
        Duration::from_secs(40),
    );
    let ping = pinger.join().expect("ping thread");
    assert!(r.ok, "capture: {}{}", r.stdout, r.stderr);
    assert!(ping.transmitted >= 12, "{}", ping.output());
    assert_eq!(
        r.stdout,
        format!("48 frames written to {}\n", pcap.display())
    );
    let counts: Vec<u64> = r
        .stderr
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix("capturing on vethA: ")
                .unwrap_or_else(|| panic!("unexpected stderr line {l:?}"));
            assert!(
                rest.contains("/48 frames, ") && rest.ends_with(" s of 30 s"),
                "{l}"
            );
            rest.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(counts.len() >= 3, "too few progress lines: {}", r.stderr);
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "count went down: {counts:?}"
    );
    assert!(
        counts.iter().any(|&n| n > 0 && n < 48),
        "no intermediate count: {counts:?}"
    );

    // Without --progress and with stderr not a terminal: no progress line.
    let r = run_timeout(
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--rundir")
            .arg(&d.rundir)
            .args(["capture", "br0", "vethA"])
            .arg(&pcap)
            .args(["count=1", "seconds=2"]),
        Duration::from_secs(10),
    );
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stderr, "");

    // A capture holds its frames in memory and a control-plane worker while it runs: the
    // count is bounded, and a third capture at once is refused while two run.
    let big = d.ctl_run(&["capture", "br0", "vethA", "/tmp/x.pcap", "count=100001"]);
    assert!(
        !big.ok && big.stderr.contains("1 to 100000"),
        "{}",
        big.stderr
    );
    let long = |name: &str| {
        let (rundir, file) = (d.rundir.clone(), d.rundir.join(name));
        std::thread::spawn(move || {
            run_timeout(
                Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
                    .arg("--rundir")
                    .arg(&rundir)
                    .args(["capture", "br0", "vethB"])
                    .arg(&file)
                    .args(["count=100000", "seconds=3"]),
                Duration::from_secs(15),
            )
        })
    };
    let (first, second) = (long("c1.pcap"), long("c2.pcap"));
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while d.ctl(&["capture-status", "br0", "vethB"]) == "frames=0 wanted=0\n" {
        assert!(std::time::Instant::now() < deadline, "no capture started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let third = d.ctl_run(&["capture", "br0", "vethA", "/tmp/x.pcap", "seconds=1"]);
    assert!(
        !third.ok && third.stderr.contains("2 captures are running already"),
        "{}{}",
        third.stdout,
        third.stderr
    );
    for c in [first, second] {
        let r = c.join().expect("capture thread");
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
    }
    // Ended: a capture may run again.
    let again = d.ctl_run(&[
        "capture",
        "br0",
        "vethA",
        "/tmp/x.pcap",
        "count=1",
        "seconds=1",
    ]);
    assert!(again.ok, "{}", again.stderr);
}
