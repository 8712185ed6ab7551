//! Pieces of the tests that drive vswitchd with the real `ovs-ofctl -O OpenFlow13`
//! (`cli_ofctl.rs`, `ofctl_live.rs`, `meters.rs`, `ofctl_ports.rs`, `openflow_replay.rs`): the
//! tool itself, and a vswitchd with bridge br0 and no ports in this process's namespace (no
//! root needed).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const OVS_OFCTL: &str = "/usr/bin/ovs-ofctl";

/// True when ovs-ofctl is installed; without it a test skips with a message, unless CI=true
/// (then it fails).
pub fn have_ofctl() -> bool {
    if Path::new(OVS_OFCTL).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{OVS_OFCTL} is missing and CI=true: install openvswitch-common");
    }
    eprintln!("SKIP: {OVS_OFCTL} not installed (apt-get install openvswitch-common)");
    false
}

/// `ovs-ofctl -O OpenFlow13 [opts] CMD unix:<rundir/br0.mgmt> ARGS...`.
pub fn ofctl_at(rundir: &Path, opts: &[&str], cmd: &str, args: &[&str]) -> Output {
    Command::new(OVS_OFCTL)
        .args(["-O", "OpenFlow13", "--timeout=10"])
        .args(opts)
        .arg(cmd)
        .arg(format!("unix:{}", rundir.join("br0.mgmt").display()))
        .args(args)
        .output()
        .expect("running ovs-ofctl")
}

/// [`ofctl_at`], panicking with ovs-ofctl's error when it fails; its output.
pub fn ofctl_ok_at(rundir: &Path, opts: &[&str], cmd: &str, args: &[&str]) -> String {
    let out = ofctl_at(rundir, opts, cmd, args);
    assert!(
        out.status.success(),
        "ovs-ofctl {cmd} {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A 50-byte UDP frame, 10.0.0.1:1000 → 10.0.0.2:53 (`hi here `).
pub const UDP_50: &str = "020000000002020000000001080045000024000100004011f9c60a0000010a00000203e80035001000006869206865726520";

/// A running vswitchd with bridge br0 and no ports (and optionally a loopback TCP OpenFlow
/// listener); killed, and its run directory removed, on drop.
pub struct Switch {
    child: Child,
    pub rundir: PathBuf,
    pub tcp_port: Option<u16>,
}

impl Switch {
    /// A switch on a fresh run directory named after `tag`.
    pub fn start(tag: &str) -> Switch {
        Switch::start_with(tag, false)
    }

    /// [`Switch::start`], with an OpenFlow listener on a free loopback TCP port when `tcp`.
    pub fn start_with(tag: &str, tcp: bool) -> Switch {
        let rundir =
            std::env::temp_dir().join(format!("{tag}-{}-{:x}", std::process::id(), rand_tag()));
        let _ = std::fs::remove_dir_all(&rundir);
        std::fs::create_dir_all(&rundir).unwrap();
        let tcp_port = tcp.then(free_port);
        let s = Switch {
            child: spawn_vswitchd(&rundir, tcp_port),
            rundir,
            tcp_port,
        };
        let out = s.ctl(&["add-br", "br0"]);
        assert!(out.status.success(), "add-br: {}", text(&out.stderr));
        wait_for(&s.socket());
        s
    }

    /// SIGTERM, wait, start again on the same run directory.
    pub fn restart(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(Instant::now() < deadline, "vswitchd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(self.rundir.join("vswitchd.ctl"));
        self.child = spawn_vswitchd(&self.rundir, self.tcp_port);
        wait_for(&self.socket());
    }

    /// br0's OpenFlow management socket.
    pub fn socket(&self) -> PathBuf {
        self.rundir.join("br0.mgmt")
    }

    /// The `unix:` target of br0 for ovs-ofctl.
    pub fn target(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--rundir")
            .arg(&self.rundir)
            .args(args)
            .output()
            .expect("running vswitchctl")
    }

    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vswitchctl {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `ovs-ofctl -O OpenFlow13 [opts] CMD unix:<br0.mgmt> ARGS...`.
    pub fn ofctl(&self, opts: &[&str], cmd: &str, args: &[&str]) -> Output {
        ofctl_at(&self.rundir, opts, cmd, args)
    }

    pub fn ofctl_ok(&self, opts: &[&str], cmd: &str, args: &[&str]) -> String {
        ofctl_ok_at(&self.rundir, opts, cmd, args)
    }

    /// Sends [`UDP_50`] from the controller with `actions`, `times` times, through ovs-ofctl.
    pub fn packet_out_udp(&self, actions: &str, times: usize) {
        for _ in 0..times {
            self.ofctl_ok(
                &[],
                "packet-out",
                &[&format!(
                    "in_port=controller packet={UDP_50} actions={actions}"
                )],
            );
        }
    }

    /// Writes `text` to `name` in the run directory; its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.rundir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.rundir);
    }
}

/// Starts vswitchd on `rundir` and waits for its control socket.
fn spawn_vswitchd(rundir: &Path, tcp_port: Option<u16>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vswitchd"));
    cmd.arg("--rundir")
        .arg(rundir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(p) = tcp_port {
        cmd.env("VSWITCH_OF_TCP", format!("br0@127.0.0.1:{p}"));
    }
    let child = cmd.spawn().expect("starting vswitchd");
    wait_for(&rundir.join("vswitchd.ctl"));
    child
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A random number, so that switches started by the tests of one process do not share a run
/// directory.
fn rand_tag() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits (at most 10 s) for `path` to appear.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
