//! Shared pieces of the plugin's tests: running the plugin binary with a CNI environment, the
//! reference `host-local` IPAM plugin, network configurations, and (for root tests) node and
//! pod namespaces and a `vswitchd --config` in the node namespace, all removed on drop.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[allow(unused_imports)]
pub use tap_io::netns::{Netns, require_root};

pub const GW: &str = "172.16.1.1";
pub const GW_MAC: &str = "0a:58:0c:00:00:fe";

/// A name unique to this test process and `tag`.
pub fn unique(tag: &str) -> String {
    format!("vc{}-{tag}", std::process::id())
}

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory holding the reference plugins (`host-local`), or a skip (a failure under
/// `CI=true`) when they are not installed.
pub fn cni_bin_dir(test: &str) -> Option<String> {
    for d in ["/usr/lib/cni", "/opt/cni/bin"] {
        if Path::new(d).join("host-local").is_file() {
            return Some(d.to_string());
        }
    }
    let why = "host-local is not installed (Debian: apt-get install containernetworking-plugins)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// What one plugin run gave.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {self:?}"))
    }

    /// The error code of a failed run (checks the spec's error shape).
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {self:?}");
        let v = self.json();
        assert!(v["msg"].is_string(), "error without msg: {v}");
        assert!(v["cniVersion"].is_string(), "error without cniVersion: {v}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error without code: {v}"))
    }

    pub fn assert_ok(&self, what: &str) {
        assert!(self.ok, "{what} failed: {}{}", self.stdout, self.stderr);
    }
}

/// The plugin binary.
pub fn plugin() -> &'static str {
    env!("CARGO_BIN_EXE_vswitch-cni")
}

/// Runs the plugin (inside namespace `in_ns` when given) with only `PATH` and `env` in its
/// environment and `stdin` as input.
pub fn run_plugin(in_ns: Option<&str>, env: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = match in_ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, plugin()]);
            c
        }
        None => Command::new(plugin()),
    };
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the plugin");
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for the plugin");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A network configuration for the plugin: vswitchd in `rundir`, host-local allocating
/// `start..=end` of 172.16.1.0/24 with its state in `data_dir`.
pub fn netconf(rundir: &Path, data_dir: &Path, start: &str, end: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "vswitch-test",
        "type": "vswitch-cni",
        "rundir": rundir,
        "bridge": "br-int",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{
                "subnet": "172.16.1.0/24",
                "rangeStart": start,
                "rangeEnd": end,
                "gateway": GW,
            }]],
        },
    })
}

/// The CNI environment of one container.
pub struct Attach {
    pub id: String,
    pub netns: String,
    pub ifname: String,
    pub bin: String,
}

impl Attach {
    pub fn run(&self, in_ns: Option<&str>, command: &str, conf: &Value, args: &str) -> Out {
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", self.id.as_str()),
            ("CNI_IFNAME", self.ifname.as_str()),
            ("CNI_PATH", self.bin.as_str()),
        ];
        if !self.netns.is_empty() {
            env.push(("CNI_NETNS", self.netns.as_str()));
        }
        if !args.is_empty() {
            env.push(("CNI_ARGS", args));
        }
        run_plugin(in_ns, &env, &conf.to_string())
    }
}

/// The addresses (IPv4 or IPv6) host-local holds reservations for in `data_dir`: one file
/// each, next to its own lock and last-reserved files.
pub fn reserved(data_dir: &Path, network: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join(network))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs a shell line in namespace `ns`, panicking with its stderr on failure.
pub fn ns_sh(ns: &str, line: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", line])
        .output()
        .expect("spawn ip netns exec");
    assert!(
        out.status.success(),
        "in {ns}: `{line}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plugin's host ends (`vs` + 13 hex digits) present in namespace `ns`.
pub fn host_ends(ns: &str) -> Vec<String> {
    ns_sh(ns, "ip -o link show")
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| n.len() == 15 && n.starts_with("vs"))
        .collect()
}

/// True when `ping -c count` from `ns` to `dst` got every reply (after one reply within 5
/// tries, so that the first ARP exchange does not count).
pub fn ping_all(ns: &str, dst: &str, count: u32) -> (bool, String) {
    let one = |c: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-c", c, "-W", "1", "-i", "0.2", dst,
            ])
            .output()
            .expect("spawn ping")
    };
    let warm = (0..5).any(|_| one("1").status.success());
    let out = one(&count.to_string());
    (
        warm && out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `vswitchd --rundir R --config C` in namespace `ns`; killed and reaped on drop.
pub struct Vswitchd {
    child: Child,
    pub rundir: PathBuf,
}

/// The vswitchd binary next to the plugin's (`cargo build --release -p vswitch --bins`).
pub fn vswitchd_bin() -> PathBuf {
    let p = Path::new(plugin())
        .parent()
        .expect("bin dir")
        .join("vswitchd");
    assert!(
        p.is_file(),
        "{} is missing: build it (cargo build --release -p vswitch --bins)",
        p.display()
    );
    p
}

impl Vswitchd {
    pub fn start(ns: &str, rundir: &Path, config: &Path) -> Vswitchd {
        std::fs::create_dir_all(rundir).expect("rundir");
        let log = std::fs::File::create(rundir.join("vswitchd.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(vswitchd_bin())
            .arg("--rundir")
            .arg(rundir)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn vswitchd");
        let mut d = Vswitchd {
            child,
            rundir: rundir.to_path_buf(),
        };
        let sock = rundir.join("vswitchd.ctl");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("vswitchd exited ({st}):\n{}", d.log());
            }
            assert!(Instant::now() < deadline, "no socket:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.rundir.join("vswitchd.log")).unwrap_or_default()
    }

    /// One management command; the output, or the daemon's error message.
    pub fn call(&self, args: &[&str]) -> Result<String, String> {
        mgmt_call(&self.rundir, args)
    }
}

impl Drop for Vswitchd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The management protocol (one JSON line each way).
pub fn mgmt_call(rundir: &Path, args: &[&str]) -> Result<String, String> {
    use std::io::{BufRead, BufReader};
    let s = std::os::unix::net::UnixStream::connect(rundir.join("vswitchd.ctl"))
        .map_err(|e| format!("connect: {e}"))?;
    let mut line = json!({ "args": args }).to_string();
    line.push('\n');
    (&s).write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&s)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply}"))?;
    let out = v["output"].as_str().unwrap_or_default().to_string();
    if v["ok"] == true { Ok(out) } else { Err(out) }
}

/// A node namespace running vswitchd with a pod-less node file, a temp dir for its run
/// directory and host-local's state. Dropped in order: daemon, namespace, files.
pub struct Node {
    pub daemon: Vswitchd,
    pub ns: Netns,
    pub dir: TempDir,
    pub bin: String,
}

impl Node {
    /// None when the test must skip (not root, host-local missing).
    pub fn start(test: &str, tag: &str) -> Option<Node> {
        if !require_root(test) {
            return None;
        }
        let bin = cni_bin_dir(test)?;
        let dir = TempDir::new(tag);
        let ns = Netns::new(&unique(tag)).expect("node namespace");
        // The underlay address the VXLAN port binds to.
        ns_sh(
            ns.name(),
            "ip link add und0 type veth peer name und1 && ip addr add 192.168.0.11/24 dev und0 && ip link set und0 up && ip link set und1 up",
        );
        let toml = format!(
            "[node]\nname = \"node1\"\nunderlay_ip = \"192.168.0.11\"\npod_cidr = \"172.16.1.0/24\"\n\
             gateway_ip = \"{GW}\"\ngateway_mac = \"{GW_MAC}\"\nmode = \"tunnel\"\n\n[tunnel]\nvni = 100\n\n\
             [[peers]]\nname = \"node2\"\nunderlay_ip = \"192.168.0.12\"\npod_cidr = \"172.16.2.0/24\"\n"
        );
        let config = dir.path().join("node.toml");
        std::fs::write(&config, toml).expect("node.toml");
        let daemon = Vswitchd::start(ns.name(), &dir.path().join("run"), &config);
        if let Err(e) = daemon.call(&["node-info"]) {
            let why = format!(
                "vswitchd does not answer node-info ({e}): the registration contract is missing"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why}");
            }
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        Some(Node {
            daemon,
            ns,
            dir,
            bin,
        })
    }

    pub fn rundir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn conf(&self, start: &str, end: &str) -> Value {
        netconf(&self.rundir(), &self.data(), start, end)
    }

    pub fn attach(&self, id: &str, pod: &Netns) -> Attach {
        Attach {
            id: id.to_string(),
            netns: format!("/run/netns/{}", pod.name()),
            ifname: "eth0".into(),
            bin: self.bin.clone(),
        }
    }

    /// `list-pods` as (name, port, ip, mac) lines.
    pub fn pods(&self) -> Vec<Vec<String>> {
        self.daemon
            .call(&["list-pods"])
            .unwrap_or_else(|e| panic!("list-pods: {e}\n{}", self.daemon.log()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// Nothing of the plugin left: no pod, no host end, no reserved address.
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.pods().is_empty(),
            "{what}: pods left: {:?}",
            self.pods()
        );
        assert!(
            host_ends(self.ns.name()).is_empty(),
            "{what}: veths left: {:?}",
            host_ends(self.ns.name())
        );
        assert!(
            reserved(&self.data(), "vswitch-test").is_empty(),
            "{what}: addresses left reserved"
        );
    }
}
