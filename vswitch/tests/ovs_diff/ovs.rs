//! A private Open vSwitch for the differential suite: its own ovsdb-server and ovs-vswitchd with
//! every socket, database, log and pidfile in one temporary directory, the userspace `dummy`
//! datapath only (`--enable-dummy --disable-system`: no kernel datapath, no devices), started in
//! its own network namespace, and killed on drop. It never talks to a system Open vSwitch.
//!
//! Ports are `type=dummy` with `options:tx_pcap`: packets go in with `netdev-dummy/receive` and
//! what each port sends is read back from its pcap file.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Backend, Outputs, cmd_ok, run_cmd};

pub struct Ovs {
    dir: PathBuf,
    children: Vec<Child>,
    _ns: tap_io::netns::Netns,
    ports: u32,
    /// Per port: how many pcap records were already taken.
    seen: Vec<usize>,
    /// Per port: packets handed to `netdev-dummy/receive` so far.
    received: Vec<u64>,
    ctl: Option<Unixctl>,
}

/// A JSON-RPC connection to ovs-vswitchd's unixctl socket (what `ovs-appctl` speaks), kept open:
/// one process spawn per command would dominate the suite's run time.
struct Unixctl {
    stream: UnixStream,
    buf: Vec<u8>,
    id: u64,
}

impl Unixctl {
    fn connect(path: &Path) -> Result<Unixctl, String> {
        let stream = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(Unixctl {
            stream,
            buf: Vec::new(),
            id: 0,
        })
    }

    fn call(&mut self, args: &[&str]) -> Result<String, String> {
        self.id += 1;
        let req = serde_json::json!({"method": args[0], "params": &args[1..], "id": self.id});
        self.stream
            .write_all(&serde_json::to_vec(&req).expect("json"))
            .map_err(|e| format!("unixctl write: {e}"))?;
        loop {
            let mut it =
                serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    if v["error"].is_null() {
                        return Ok(v["result"].as_str().unwrap_or("").to_string());
                    }
                    return Err(format!("{args:?}: {}", v["error"]));
                }
                Some(Err(e)) if !e.is_eof() => return Err(format!("unixctl reply: {e}")),
                _ => {}
            }
            let mut chunk = [0u8; 65536];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| format!("unixctl read: {e}"))?;
            if n == 0 {
                return Err("unixctl: ovs-vswitchd closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Collector set ids configured on Open vSwitch's bridge (an IPFIX exporter to a loopback
/// address of its own namespace, where nothing listens): `sample` actions count for these
/// only, so the cases with the `samples` option use them.
pub const SAMPLE_COLLECTOR_SETS: &[u32] = &[1, 2, 3, 4, 5, 6, 7];

/// True when the Open vSwitch programs the suite needs are installed.
pub fn installed() -> bool {
    [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovs-appctl",
        "ovsdb-tool",
    ]
    .iter()
    .all(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) && Path::new(SCHEMA).exists()
}

impl Ovs {
    fn env(&self, c: &mut Command) {
        for v in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            c.env(v, &self.dir);
        }
    }

    fn tool(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        self.env(&mut c);
        c
    }

    fn vsctl(&self, args: &[&str]) {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut c = self.tool("ovs-vsctl");
        c.args([db.as_str(), "--timeout=20"]).args(args);
        cmd_ok(&mut c);
    }

    /// What `ovs-appctl -t <our vswitchd> ARGS` would print.
    pub fn appctl(&mut self, args: &[&str]) -> Result<String, String> {
        if self.ctl.is_none() {
            self.ctl = Some(Unixctl::connect(&self.dir.join("ovs-vswitchd.ctl"))?);
        }
        let r = self.ctl.as_mut().expect("connected").call(args);
        if r.is_err() {
            self.ctl = None;
        }
        r
    }

    /// Packets port `i` has taken from its receive queue (`dpctl/show -s`).
    fn rx_packets(&mut self, i: u32) -> Result<u64, String> {
        let text = self.appctl(&["dpctl/show", "-s"])?;
        let mut in_port = false;
        for l in text.lines() {
            let t = l.trim();
            if t.starts_with("port ") {
                in_port = t.ends_with(&format!(": p{i}")) || t.contains(&format!(": p{i} "));
            } else if in_port && let Some(rest) = t.strip_prefix("RX packets:") {
                let n = rest.split_whitespace().next().unwrap_or("");
                return n.parse().map_err(|_| format!("bad RX count in {t}"));
            }
        }
        Err(format!("no RX packets line for p{i} in:\n{text}"))
    }

    fn spawn(&mut self, ns: &str, args: &[String]) {
        let log =
            std::fs::File::create(self.dir.join(format!("{}.out", args[0]))).expect("create log");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        self.env(&mut c);
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.children.push(child);
    }

    fn wait_for(&self, file: &str) {
        let p = self.dir.join(file);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !p.exists() {
            assert!(
                Instant::now() < deadline,
                "Open vSwitch did not create {} (logs in {})",
                p.display(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts ovsdb-server and ovs-vswitchd with bridge `br0` and dummy ports p1..pN (ofports 1..N).
    pub fn start(tag: &str, ports: u32) -> Ovs {
        let dir = std::env::temp_dir().join(format!("ovsdiff-ovs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create OVS dir");
        let ns = tap_io::netns::Netns::new(&format!("ovd{}-{tag}", std::process::id()))
            .expect("namespace for Open vSwitch");
        let mut ovs = Ovs {
            dir: dir.clone(),
            children: Vec::new(),
            _ns: ns,
            ports,
            seen: vec![0; ports as usize + 1],
            received: vec![0; ports as usize + 1],
            ctl: None,
        };
        let d = dir.display().to_string();
        let mut c = ovs.tool("ovsdb-tool");
        c.args(["create", &format!("{d}/conf.db"), SCHEMA]);
        cmd_ok(&mut c);
        let ns_name = ovs._ns.name().to_string();
        ovs.spawn(
            &ns_name,
            &[
                "ovsdb-server".into(),
                format!("{d}/conf.db"),
                format!("--remote=punix:{d}/db.sock"),
                format!("--unixctl={d}/ovsdb-server.ctl"),
                format!("--pidfile={d}/ovsdb-server.pid"),
                format!("--log-file={d}/ovsdb-server.log"),
                "--no-chdir".into(),
            ],
        );
        ovs.wait_for("db.sock");
        ovs.vsctl(&["--no-wait", "init"]);
        ovs.spawn(
            &ns_name,
            &[
                "ovs-vswitchd".into(),
                format!("unix:{d}/db.sock"),
                format!("--unixctl={d}/ovs-vswitchd.ctl"),
                format!("--pidfile={d}/ovs-vswitchd.pid"),
                format!("--log-file={d}/ovs-vswitchd.log"),
                "--enable-dummy=override".into(),
                "--disable-system".into(),
                "--disable-system-route".into(),
                "--no-chdir".into(),
            ],
        );
        ovs.wait_for("ovs-vswitchd.ctl");
        let mut args: Vec<String> = [
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=dummy",
            "fail-mode=secure",
            "protocols=OpenFlow10,OpenFlow13,OpenFlow15",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 1..=ports {
            args.extend([
                "--".to_string(),
                "add-port".into(),
                "br0".into(),
                format!("p{i}"),
                "--".into(),
                "set".into(),
                "interface".into(),
                format!("p{i}"),
                "type=dummy".into(),
                format!("ofport_request={i}"),
                format!("options:tx_pcap={d}/p{i}.pcap"),
            ]);
        }
        // Flow sampling needs an IPFIX exporter per collector set (Open vSwitch ignores
        // `sample` without one); the target is in the namespace's loopback.
        args.extend(
            [
                "--",
                "--id=@br",
                "get",
                "bridge",
                "br0",
                "--",
                "--id=@ipfix",
                "create",
                "ipfix",
                "targets=\"127.0.0.1:4739\"",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for id in SAMPLE_COLLECTOR_SETS {
            args.extend([
                "--".to_string(),
                "create".into(),
                "flow_sample_collector_set".into(),
                format!("id={id}"),
                "bridge=@br".into(),
                "ipfix=@ipfix".into(),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ovs.vsctl(&refs);
        ovs.wait_for("br0.mgmt");
        for i in 1..=ports {
            ovs.wait_for(&format!("p{i}.pcap"));
        }
        ovs
    }

    /// Frames in port `i`'s pcap file, all of them.
    fn pcap_frames(&self, i: u32) -> Vec<Vec<u8>> {
        let Ok(bytes) = std::fs::read(self.dir.join(format!("p{i}.pcap"))) else {
            return Vec::new();
        };
        let Ok(mut r) = pcap_file::pcap::PcapReader::new(&bytes[..]) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(Ok(p)) = r.next_packet() {
            out.push(p.data.into_owned());
        }
        out
    }
}

impl Backend for Ovs {
    fn mgmt(&self) -> String {
        format!("unix:{}/br0.mgmt", self.dir.display())
    }

    fn reset_state(&mut self) -> Result<(), String> {
        self.appctl(&["dpctl/flush-conntrack"])?;
        self.appctl(&["fdb/flush", "br0"])?;
        Ok(())
    }

    fn settle_flows(&mut self) -> Result<(), String> {
        // Stale megaflows of the previous table go now, not when a revalidator gets to them.
        self.appctl(&["revalidator/purge"]).map(|_| ())
    }

    fn send(&mut self, in_port: u32, frame: &[u8]) -> Result<(), String> {
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        self.appctl(&["netdev-dummy/receive", &format!("p{in_port}"), &hex])?;
        self.received[in_port as usize] += 1;
        // The main thread takes a dummy port's queue and runs the batch through the pipeline in
        // one go, and serves commands only between such runs: once the port's RX counter shows
        // the packet, everything it caused has been sent.
        let want = self.received[in_port as usize];
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.rx_packets(in_port)? < want {
            if Instant::now() > deadline {
                return Err(format!("p{in_port} did not take packet {want} in 20 s"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn collect(&mut self) -> Result<Outputs, String> {
        let mut out = Outputs::new();
        for i in 1..=self.ports {
            let all = self.pcap_frames(i);
            let new = all[self.seen[i as usize].min(all.len())..].to_vec();
            self.seen[i as usize] = all.len();
            if !new.is_empty() {
                out.insert(i, new);
            }
        }
        Ok(out)
    }

    fn conntrack(&mut self) -> Result<String, String> {
        self.appctl(&["dpctl/dump-conntrack"])
    }

    fn set_port_vlan(&mut self, port: u32, settings: &[String]) -> Result<(), String> {
        let name = format!("p{port}");
        let mut args = vec!["clear", "port", &name, "tag", "trunks", "vlan_mode"];
        // ovs-vsctl writes a set of several values in brackets.
        let settings: Vec<String> = settings
            .iter()
            .map(|s| match s.split_once('=') {
                Some(("trunks", v)) => format!("trunks=[{v}]"),
                _ => s.clone(),
            })
            .collect();
        if !settings.is_empty() {
            args.extend(["--", "set", "port", &name]);
            args.extend(settings.iter().map(String::as_str));
        }
        // ovs-vsctl waits until ovs-vswitchd has reconfigured; stale megaflows go too.
        self.vsctl(&args);
        self.settle_flows()
    }

    fn samples(&mut self) -> Result<std::collections::BTreeMap<u32, u64>, String> {
        // `  id   1: flows=0, current flows=0, sampled pkts=5, ...` per collector set.
        let mut c = Command::new("ovs-ofctl");
        c.args(["dump-ipfix-flow", &self.mgmt()]);
        let text = run_cmd(&mut c)?;
        let mut out = std::collections::BTreeMap::new();
        for l in text.lines() {
            let Some(rest) = l.trim_start().strip_prefix("id") else {
                continue;
            };
            let Some((id, stats)) = rest.split_once(':') else {
                continue;
            };
            let n = stats
                .split(", ")
                .find_map(|f| f.trim().strip_prefix("sampled pkts="))
                .ok_or_else(|| format!("no sampled pkts in {l:?}"))?;
            out.insert(
                id.trim().parse().map_err(|_| format!("bad id in {l:?}"))?,
                n.parse().map_err(|_| format!("bad count in {l:?}"))?,
            );
        }
        Ok(out)
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = self.appctl(&["exit"]);
        self.ctl = None;
        let ctl = self.dir.join("ovsdb-server.ctl");
        let mut c = self.tool("ovs-appctl");
        c.args(["--timeout=5", "-t"]).arg(&ctl).arg("exit");
        let _ = run_cmd(&mut c);
        for mut child in self.children.drain(..).rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::env::var_os("OVS_DIFF_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
