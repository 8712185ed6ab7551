//! The daemon's surfaces: flags, run directory, pid file, clean shutdown, refusing a second
//! instance. No root needed (no ports).

mod host_daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use host_daemon::{Daemon, VSWITCHD, ctl, wait_for};

fn rundir(tag: &str) -> PathBuf {
    host_daemon::rundir("vswitchd-cli", tag)
}

fn start(tag: &str, extra: &[&str]) -> Daemon {
    let rundir = rundir(tag);
    let child = Command::new(VSWITCHD)
        .arg("--rundir")
        .arg(&rundir)
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .expect("start vswitchd");
    assert!(
        wait_for(&rundir.join("vswitchd.ctl"), true),
        "no management socket"
    );
    Daemon { child, rundir }
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_what_it_created() {
    let pidfile = std::env::temp_dir().join(format!("vswitchd-cli-{}.pid", std::process::id()));
    let mut d = start("term", &["--pidfile", pidfile.to_str().unwrap()]);
    // The socket appears first; the pid file follows right after.
    assert!(wait_for(&pidfile, true), "no pid file");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, d.child.id());
    assert!(ctl(&d.rundir, &["add-br", "br0"]).status.success());
    assert!(
        d.rundir.join("br0.mgmt").exists(),
        "no OpenFlow socket for br0"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "vswitchd ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(!pidfile.exists(), "pid file left behind");
    assert!(
        !d.rundir.join("vswitchd.ctl").exists(),
        "socket left behind"
    );
    assert!(
        !d.rundir.join("br0.mgmt").exists(),
        "bridge socket left behind"
    );
}

#[test]
fn a_second_daemon_on_the_same_rundir_is_refused() {
    let d = start("twice", &[]);
    let out = Command::new(VSWITCHD)
        .arg("--rundir")
        .arg(&d.rundir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serving"), "{err}");
    // The first one still answers.
    assert!(ctl(&d.rundir, &["list-br"]).status.success());
}

/// The run directory's lock refuses a second daemon even when the first one's socket file is
/// gone (two starts after a crash both see a stale socket, and each would delete the other's).
#[test]
fn a_second_daemon_is_refused_without_the_first_ones_socket_file() {
    let d = start("twice-nosock", &[]);
    std::fs::remove_file(d.rundir.join("vswitchd.ctl")).unwrap();
    let mut second = Command::new(VSWITCHD)
        .arg("--rundir")
        .arg(&d.rundir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second vswitchd started on the same run directory");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("already serving"), "{err}");
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    let out = Command::new(VSWITCHD)
        .args([
            "--rundir",
            "/nonexistent-unused",
            "--ct-timeout",
            "tcp_forever=5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown conntrack timeout 'tcp_forever'"),
        "{err}"
    );
    let out = Command::new(VSWITCHD)
        .args([
            "--rundir",
            "/nonexistent-unused",
            "--ct-timeout",
            "tcp_first",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=SECONDS"));
    // Values out of a flag's range are refused by the command line parser (status 2, naming
    // the flag and the range), not later by the start (status 1).
    for (flag, value, range) in [
        ("--ct-max-conns", "0", "1..=1073741824"),
        ("--ct-max-conns", "1073741825", "1..=1073741824"),
        ("--threads", "0", "1..=64"),
        ("--mgmt-max-request-bytes", "1023", "1024.."),
    ] {
        let out = Command::new(VSWITCHD)
            .args(["--rundir", "/nonexistent-unused", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(range),
            "{flag} {value}: {err}"
        );
    }
}

/// `--man` is a documented flag: `--help` lists it and the man page's synopsis has it.
#[test]
fn man_flag_is_listed_in_help_and_man_page() {
    let out = Command::new(VSWITCHD).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--man"), "{help}");
    let out = Command::new(VSWITCHD).arg("--man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    let synopsis = page
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|s| s.split(".SH").next())
        .unwrap_or_else(|| panic!("no synopsis in {page}"));
    assert!(synopsis.contains("\\-\\-man"), "{synopsis}");
}

#[test]
fn management_errors_name_the_problem() {
    let d = start("errors", &[]);
    let out = ctl(&d.rundir, &["add-port", "nobr", "p0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bridge named nobr"));
    assert!(ctl(&d.rundir, &["add-br", "br0"]).status.success());
    let out = ctl(&d.rundir, &["add-port", "br0", "p0", "type=gre"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown port type 'gre'"));
    let out = ctl(&d.rundir, &["add-br", "br0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = ctl(&d.rundir, &["list-br"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "br0\n");
}

/// A start that fails on its node file leaves nothing behind (no socket, no pid file), and a
/// "file" that is not a regular file (/dev/zero: endless; a FIFO: never ends) is refused at
/// once instead of being read without limit.
#[test]
fn a_failed_start_leaves_no_socket_or_pid_file() {
    let dir = rundir("badconfig");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("node.toml");
    std::fs::write(&bad, "[node]\nname = \"n\"\n").unwrap();
    let pid = dir.join("vswitchd.pid");
    for config in [bad.as_path(), Path::new("/dev/zero")] {
        let t = Instant::now();
        let out = Command::new(VSWITCHD)
            .arg("--rundir")
            .arg(&dir)
            .arg("--pidfile")
            .arg(&pid)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run vswitchd");
        assert!(!out.status.success(), "{config:?} was accepted");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{config:?} took {:?}",
            t.elapsed()
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if config == Path::new("/dev/zero") {
            assert!(err.contains("not a regular file"), "{err}");
        } else {
            assert!(err.contains("missing field"), "{err}");
        }
        assert!(!dir.join("vswitchd.ctl").exists(), "socket left behind");
        assert!(!pid.exists(), "pid file left behind");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
