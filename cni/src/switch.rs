//! vswitchd's management socket `<rundir>/vswitchd.ctl`: one JSON line `{"args":[...]}` in,
//! one JSON line `{"ok":bool,"output":"..."}` out (the protocol of `vswitch::mgmt`).

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{CniError, Result, code};

#[derive(Serialize)]
struct Request<'a> {
    args: &'a [String],
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    output: String,
}

/// Why a call did not give an answer.
#[derive(Debug)]
pub enum CallError {
    /// No daemon listens on the socket (absent, or left behind by a dead daemon).
    NotRunning(String),
    /// The daemon answered `ok: false`; its message.
    Refused(String),
    /// Anything else (I/O in the middle, a malformed reply).
    Failed(String),
}

/// How vswitchd refuses a request while it has no node configuration yet (running, but not
/// started with `--config` nor given one by `vswitchctl apply`): a transient state.
const NO_NODE_CONFIGURATION: &str = "no node configuration";

impl CallError {
    /// As a CNI error: not running, or running without a node configuration yet → 11 (try
    /// again later); refused otherwise → 101, other → 101.
    pub fn into_cni(self, what: &str) -> CniError {
        match self {
            CallError::NotRunning(m) => {
                CniError::new(code::TRY_AGAIN, format!("vswitchd is not running: {m}"))
            }
            CallError::Refused(m) if m.starts_with(NO_NODE_CONFIGURATION) => CniError::new(
                code::TRY_AGAIN,
                format!("vswitchd {what}: {m} (try again once it has one)"),
            ),
            CallError::Refused(m) => CniError::new(code::SWITCH, format!("vswitchd {what}: {m}")),
            CallError::Failed(m) => CniError::new(code::SWITCH, format!("vswitchd {what}: {m}")),
        }
    }
}

/// Sends one command and returns the daemon's output.
pub fn call(rundir: &Path, args: &[&str]) -> std::result::Result<String, CallError> {
    let path = rundir.join("vswitchd.ctl");
    let stream = UnixStream::connect(&path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            CallError::NotRunning(format!("{}: {e}", path.display()))
        }
        _ => CallError::Failed(format!("cannot connect to {}: {e}", path.display())),
    })?;
    let io = |e: std::io::Error| CallError::Failed(format!("management socket: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(io)?;
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut line = serde_json::to_string(&Request { args: &args })
        .map_err(|e| CallError::Failed(e.to_string()))?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut text = String::new();
    BufReader::new(&stream).read_line(&mut text).map_err(io)?;
    let reply: Reply = serde_json::from_str(&text)
        .map_err(|e| CallError::Failed(format!("malformed reply {text:?}: {e}")))?;
    if reply.ok {
        Ok(reply.output)
    } else {
        Err(CallError::Refused(reply.output.trim().to_string()))
    }
}

/// `node-info`: what pods of this node need.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub bridge: String,
    pub mode: String,
    pub gateway_ip: Ipv4Addr,
    #[serde(default)]
    pub mtu: Option<u32>,
}

impl NodeInfo {
    /// The pods' MTU: the daemon's, else room for VXLAN in tunnel mode.
    pub fn pod_mtu(&self) -> u32 {
        self.mtu
            .unwrap_or(if self.mode == "tunnel" { 1450 } else { 1500 })
    }
}

pub fn node_info(rundir: &Path) -> Result<NodeInfo> {
    let out = call(rundir, &["node-info"]).map_err(|e| e.into_cni("node-info"))?;
    serde_json::from_str(out.trim()).map_err(|e| {
        CniError::new(
            code::SWITCH,
            format!("vswitchd node-info: unexpected output {out:?}: {e}"),
        )
    })
}

/// One line of `list-pods`: `NAME PORT IP MAC ofport=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub name: String,
    pub port: String,
    pub ip: String,
    pub mac: String,
}

pub fn parse_pods(text: &str) -> Vec<PodEntry> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(PodEntry {
                name: w.next()?.to_string(),
                port: w.next()?.to_string(),
                ip: w.next()?.to_string(),
                mac: w.next()?.to_ascii_lowercase(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_node_info_parse() {
        let p = parse_pods("a:eth0 vs0123456789abc 172.16.1.5 0A:58:ac:10:01:05 ofport=3\n\n");
        assert_eq!(
            p,
            vec![PodEntry {
                name: "a:eth0".into(),
                port: "vs0123456789abc".into(),
                ip: "172.16.1.5".into(),
                mac: "0a:58:ac:10:01:05".into()
            }]
        );
        let n: NodeInfo = serde_json::from_str(
            r#"{"name":"n1","bridge":"br-int","mode":"tunnel","pod_cidr":"172.16.1.0/24","gateway_ip":"172.16.1.1","gateway_mac":"0a:58:0c:00:00:fe","mtu":1450}"#,
        )
        .expect("node-info");
        assert_eq!(n.pod_mtu(), 1450);
    }

    /// Serves one reply line per connection on `<dir>/vswitchd.ctl` from a thread.
    fn one_reply_socket(dir: &Path, reply: serde_json::Value) {
        std::fs::create_dir_all(dir).expect("dir");
        let listener =
            std::os::unix::net::UnixListener::bind(dir.join("vswitchd.ctl")).expect("bind");
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                let _ = (&s).write_all(format!("{reply}\n").as_bytes());
            }
        });
    }

    #[test]
    fn a_switch_without_node_configuration_is_try_again_later() {
        let dir = std::env::temp_dir().join(format!("vswitch-cni-nocfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        one_reply_socket(
            &dir,
            serde_json::json!({"ok": false, "output":
                "no node configuration: start vswitchd with --config (or vswitchctl apply) first"}),
        );
        let e = node_info(&dir).unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN, "{e}");
        assert!(e.msg.contains("no node configuration"), "{e}");
        // Any other refusal stays permanent.
        let e = CallError::Refused("a pod named x already exists".into()).into_cni("add-pod");
        assert_eq!(e.code, code::SWITCH);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_socket_is_not_running() {
        let e = call(Path::new("/nonexistent-vswitch-cni"), &["node-info"]).unwrap_err();
        assert!(matches!(e, CallError::NotRunning(_)), "{e:?}");
        assert_eq!(e.into_cni("x").code, code::TRY_AGAIN);
    }
}
