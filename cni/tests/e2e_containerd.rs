//! The plugin under a real container runtime, as root: a private containerd (its own root,
//! state and socket under a temp dir, started in the node namespace where vswitchd runs) and
//! `ctr run --cni` with a busybox-static rootfs. `ctr` reads the CNI configuration from
//! /etc/cni/net.d and the plugins from /opt/cni/bin: it runs in a private mount namespace
//! where temp dirs holding our conflist and plugins are bind-mounted there. One container stays
//! up while a second one pings the gateway and the first; when both are gone, no pod, veth or
//! address reservation is left.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A program of the runtime stack, or a skip (failure under CI) naming the package.
fn need(test: &str, paths: &[&str], package: &str) -> Option<PathBuf> {
    if let Some(p) = paths.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    let why = format!("{} is not installed (apt-get install {package})", paths[0]);
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// Every process whose command line mentions `dir` (containerd, its shims, ctr clients):
/// only what this test started lives under its own temp dir.
fn pids_using(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// containerd, and everything started under its directory, killed on drop.
struct Containerd {
    child: Child,
    dir: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in pids_using(&self.dir) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

#[test]
fn ctr_run_cni_containers_reach_the_gateway_and_each_other() {
    const TEST: &str = "ctr_run_cni_containers_reach_the_gateway_and_each_other";
    if !require_root(TEST) {
        return;
    }
    let Some(containerd) = need(TEST, &["/usr/bin/containerd"], "containerd") else {
        return;
    };
    let Some(ctr) = need(TEST, &["/usr/bin/ctr"], "containerd") else {
        return;
    };
    let Some(_) = need(TEST, &["/usr/sbin/runc", "/usr/bin/runc"], "runc") else {
        return;
    };
    let Some(busybox) = need(
        TEST,
        &["/bin/busybox", "/usr/bin/busybox"],
        "busybox-static",
    ) else {
        return;
    };
    let Some(node) = Node::start(TEST, "ctr") else {
        return;
    };
    let t = node.dir.path().to_path_buf();
    let netns = format!("--net=/run/netns/{}", node.ns.name());

    // A rootfs: busybox-static and its applets.
    let rootfs = t.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
    }
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "ping", "sleep", "ip", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("applet");
    }

    // The CNI directories: our conflist; the plugin, host-local and loopback.
    let (netd, bin) = (t.join("net.d"), t.join("cni-bin"));
    std::fs::create_dir_all(&netd).expect("net.d");
    std::fs::create_dir_all(&bin).expect("cni bin");
    std::fs::copy(plugin(), bin.join("vswitch-cni")).expect("plugin");
    for p in ["host-local", "loopback"] {
        std::fs::copy(Path::new(&node.bin).join(p), bin.join(p)).expect("reference plugin");
    }
    let mut conf = node.conf("172.16.1.10", "172.16.1.20");
    let ipam = conf["ipam"].take();
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "vswitch-test",
        "plugins": [
            {"type": "vswitch-cni", "rundir": node.rundir(), "bridge": "br-int", "ipam": ipam},
            {"type": "loopback"},
        ],
    });
    std::fs::write(netd.join("10-vswitch.conflist"), conflist.to_string()).expect("conflist");

    // A private containerd in the node namespace (nsenter, not `ip netns exec`: runc needs the
    // host's /sys/fs/cgroup, which `ip netns exec` hides by remounting /sys).
    let sock = t.join("containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n",
        root = t.join("root").display(),
        state = t.join("state").display(),
        sock = sock.display()
    );
    std::fs::write(t.join("containerd.toml"), config).expect("containerd config");
    let log = std::fs::File::create(t.join("containerd.log")).expect("log");
    let child = Command::new("nsenter")
        .arg(&netns)
        .arg(&containerd)
        .arg("--config")
        .arg(t.join("containerd.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn containerd");
    let _containerd = Containerd {
        child,
        dir: t.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd did not start:\n{}",
            std::fs::read_to_string(t.join("containerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // `ctr run --rm --cni` in the node namespace, with the CNI directories bind-mounted.
    let ctr_run = |id: &str, cmd: &str| -> Command {
        let script = format!(
            "mkdir -p /etc/cni/net.d /opt/cni/bin && mount --bind {netd} /etc/cni/net.d && \
             mount --bind {bin} /opt/cni/bin && exec {ctr} --address {sock} run --rm --cni \
             --rootfs {rootfs} {id} /bin/sh -c '{cmd}'",
            netd = netd.display(),
            bin = bin.display(),
            ctr = ctr.display(),
            sock = sock.display(),
            rootfs = rootfs.display(),
        );
        let mut c = Command::new("nsenter");
        c.arg(&netns)
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };

    let first_id = format!("vc{}-one", std::process::id());
    let first = ctr_run(&first_id, "sleep 60")
        .spawn()
        .expect("run the first container");
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_ip = loop {
        if let Some(p) = node.pods().into_iter().next() {
            break p[2].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the first container never got a pod"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    let second_id = format!("vc{}-two", std::process::id());
    let out = ctr_run(
        &second_id,
        &format!(
            "ping -c 1 -W 2 {GW} >/dev/null; ping -c 4 -W 2 {GW} && ping -c 1 -W 2 {first_ip} >/dev/null; \
             ping -c 4 -W 2 {first_ip}"
        ),
    )
    .output()
    .expect("run the second container");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.matches("4 packets received").count() == 2,
        "pings from the second container: {text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.daemon.log()
    );

    // Stop the first: its `ctr run --rm` deletes it, and with it its network (CNI DEL).
    let kill = Command::new("nsenter")
        .arg(&netns)
        .arg(&ctr)
        .arg("--address")
        .arg(&sock)
        .args(["task", "kill", "-s", "KILL", &first_id])
        .output()
        .expect("ctr task kill");
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let first_out = first.wait_with_output().expect("first container");
    let _ = first_out;
    node.assert_clean("after both containers");
}
