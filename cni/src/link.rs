//! Interfaces, addresses and routes through iproute2's `ip` (and util-linux's `nsenter` to run
//! it inside the container's namespace, which `CNI_NETNS` names by path).
//!
//! One short-lived `ip` per step keeps the plugin free of netlink code and of any async
//! runtime; `ip -batch` applies the container side in one process.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{CniError, Result, code};

/// The host end of a pod's veth pair: `vs` and 13 hex digits of a hash of the container id and
/// the interface name (15 characters, Linux's limit), the same on ADD, CHECK, DEL and GC.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    // FNV-1a 64: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(ifname.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vs{:013x}", h >> 12)
}

/// A tool from `PATH`, or from the usual system directories when the runtime gave the plugin
/// a minimal `PATH`.
fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(PathBuf::from),
    );
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What a failed command said.
#[derive(Debug)]
pub struct CmdError {
    pub what: String,
    pub stderr: String,
}

impl CmdError {
    /// True when the failure is "no such interface".
    pub fn not_found(&self) -> bool {
        let e = &self.stderr;
        e.contains("does not exist") || e.contains("Cannot find device")
    }

    fn into_cni(self, msg: &str) -> CniError {
        CniError::new(code::LINK, format!("{msg}: {}", self.stderr.trim())).with_details(self.what)
    }
}

/// `ip ARGS` in namespace `netns` (a path) or in ours; stdout, or what it printed on failure.
fn ip(
    netns: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> std::result::Result<String, CmdError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new(tool("nsenter"));
            c.arg(format!("--net={ns}")).arg("--").arg(tool("ip"));
            c
        }
        None => Command::new(tool("ip")),
    };
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!(
        "{}ip {}",
        netns
            .map(|n| format!("nsenter --net={n} "))
            .unwrap_or_default(),
        args.join(" ")
    );
    let fail = |stderr: String| CmdError {
        what: what.clone(),
        stderr,
    };
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(format!("cannot write its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(text) = stdin {
            err.push_str(&format!(" [input: {}]", text.trim().replace('\n', "; ")));
        }
        Err(fail(err))
    }
}

/// One interface as `ip -j` shows it.
#[derive(Debug, Clone, Default)]
pub struct LinkInfo {
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// The interface `name` in `netns` (a path) or ours; `None` when it does not exist.
pub fn link_info(netns: Option<&str>, name: &str) -> Result<Option<LinkInfo>> {
    let text = match ip(netns, &["-j", "addr", "show", "dev", name], None) {
        Ok(t) => t,
        Err(e) if e.not_found() => return Ok(None),
        Err(e) => return Err(e.into_cni("cannot read an interface")),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CniError::new(code::LINK, format!("cannot parse `ip -j addr` output: {e}")))?;
    let Some(l) = v.as_array().and_then(|a| a.first()) else {
        return Ok(None);
    };
    let flags: Vec<&str> = l["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ipv4 = l["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["family"] == "inet")
                .filter_map(|x| {
                    Some((
                        x["local"].as_str()?.parse().ok()?,
                        u8::try_from(x["prefixlen"].as_u64()?).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(LinkInfo {
        mac: l["address"].as_str().unwrap_or_default().to_string(),
        mtu: l["mtu"]
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0),
        up: flags.contains(&"UP"),
        ipv4,
    }))
}

/// Creates the veth pair: `host` here, its peer `ifname` directly inside `netns` with `mac`,
/// both with `mtu`; the host end gets no IPv6 (the node's kernel must not talk on a switch
/// port) and is brought up. When a step after the creation fails, the pair is deleted again
/// before the error is returned: on `Err` nothing of it is left.
pub fn create_veth(host: &str, netns: &str, ifname: &str, mac: &str, mtu: u32) -> Result<()> {
    let m = mtu.to_string();
    ip(
        None,
        &[
            "link", "add", host, "mtu", &m, "type", "veth", "peer", "name", ifname, "mtu", &m,
            "address", mac, "netns", netns,
        ],
        None,
    )
    .map_err(|e| e.into_cni("cannot create the veth pair"))?;
    // Best effort: absent when the kernel has no IPv6.
    let _ = std::fs::write(
        Path::new("/proc/sys/net/ipv6/conf")
            .join(host)
            .join("disable_ipv6"),
        "1",
    );
    if let Err(e) = ip(None, &["link", "set", "dev", host, "up"], None) {
        // The caller does not own the pair yet: delete it here (which removes its peer too).
        if let Err(d) = delete(None, host) {
            eprintln!("vswitch-cni: undo: delete {host}: {d}");
        }
        return Err(e.into_cni("cannot bring the host end up"));
    }
    Ok(())
}

/// Configures the pod side as `scripts/demo.sh` does: up, `ip/32`, a route to the gateway on
/// the link, a default route via the gateway, and `extra` destinations via the gateway.
///
/// Another interface may have been attached to the namespace first (Multus' `net1`, a second
/// network): the route to the gateway is appended (an existing one to the same address on
/// another interface keeps precedence), and the default route is added only when the namespace
/// has none; an existing default route is left alone. Returns whether the default route was
/// added (it is in the result only then).
pub fn configure_pod(
    netns: &str,
    ifname: &str,
    addr: Ipv4Addr,
    gw: Ipv4Addr,
    extra: &[String],
) -> Result<bool> {
    let mut batch = format!(
        "link set dev {ifname} up\n\
         address add {addr}/32 dev {ifname}\n\
         route append {gw}/32 dev {ifname} scope link\n"
    );
    for dst in extra {
        batch.push_str(&format!("route replace {dst} via {gw} dev {ifname}\n"));
    }
    ip(Some(netns), &["-batch", "-"], Some(&batch))
        .map_err(|e| e.into_cni("cannot configure the container interface"))?;
    // Looked at first: `add` fails ("File exists") only on a default route with the same
    // metric, and one with another metric (a first interface's, metric 100) would be shadowed
    // by ours. `add` stays exclusive for a route added meanwhile; whether that was the reason
    // it failed is asked afterwards (the message may be translated).
    if !default_routes(netns)?.is_empty() {
        return Ok(false);
    }
    match ip(
        Some(netns),
        &[
            "-4",
            "route",
            "add",
            "default",
            "via",
            &gw.to_string(),
            "dev",
            ifname,
        ],
        None,
    ) {
        Ok(_) => Ok(true),
        Err(e) => match default_routes(netns) {
            Ok(routes) if !routes.is_empty() => Ok(false),
            _ => Err(e.into_cni("cannot add the default route")),
        },
    }
}

/// Deletes interface `name` (and with it its veth peer); `false` when it did not exist.
pub fn delete(netns: Option<&str>, name: &str) -> Result<bool> {
    // Looked up first: reading needs no privilege, so DEL of what is gone works unprivileged.
    if link_info(netns, name)?.is_none() {
        return Ok(false);
    }
    match ip(netns, &["link", "del", "dev", name], None) {
        Ok(_) => Ok(true),
        Err(e) if e.not_found() => Ok(false),
        Err(e) => Err(e.into_cni("cannot delete an interface")),
    }
}

/// The IPv4 default routes of `netns`, as `ip -j route` shows them.
fn default_routes(netns: &str) -> Result<Vec<Value>> {
    let text = ip(Some(netns), &["-j", "-4", "route", "show", "default"], None)
        .map_err(|e| e.into_cni("cannot read the container's routes"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        CniError::new(
            code::LINK,
            format!("cannot parse `ip -j route` output: {e}"),
        )
    })?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// True when `netns` has a default route via `gw` on `ifname`.
pub fn has_default_route(netns: &str, ifname: &str, gw: Ipv4Addr) -> Result<bool> {
    let gw = gw.to_string();
    Ok(default_routes(netns)?
        .iter()
        .any(|r| r["gateway"] == gw.as_str() && r["dev"] == ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_stable_and_distinct() {
        let a = host_ifname(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "eth0",
        );
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("vs"));
        assert_eq!(
            a,
            host_ifname(
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "eth0"
            )
        );
        assert_ne!(
            a,
            host_ifname(
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "eth1"
            )
        );
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
    }
}
