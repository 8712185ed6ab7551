//! Delegation to the IPAM plugin (`ipam.type`, found in `CNI_PATH`): the spec's delegation
//! protocol: the same environment (with the command set), the network configuration on stdin,
//! its result or error JSON on stdout.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::args::{Config, version_tuple};
use crate::error::{CniError, Result, code};

pub struct Ipam {
    pub plugin: PathBuf,
    /// The configuration the IPAM plugin gets: ours, its `cniVersion` lowered to one the
    /// plugin supports when ours (1.1.0) is newer than it knows (the formats are the same).
    conf: Value,
    /// False when the plugin does not speak our version: STATUS and GC are not delegated.
    pub speaks_ours: bool,
}

fn find(dirs: &[PathBuf], name: &str) -> Result<PathBuf> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                code::IPAM,
                format!(
                    "IPAM plugin {name:?} not found in CNI_PATH ({})",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

impl Ipam {
    pub fn new(config: &Config, cni_path: &[PathBuf]) -> Result<Ipam> {
        let plugin = find(cni_path, &config.ipam_type()?)?;
        let mut ipam = Ipam {
            plugin,
            conf: config.raw.clone(),
            speaks_ours: true,
        };
        if config.at_least("1.1.0") {
            // Older IPAM plugins (host-local before 1.5) stop at 1.0.0.
            let supported: Vec<String> = ipam
                .exec(
                    "VERSION",
                    Some(&serde_json::json!({"cniVersion": config.version()})),
                )
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_value(v["supportedVersions"].clone()).ok())
                .unwrap_or_default();
            if !supported.iter().any(|v| v == config.version()) {
                ipam.speaks_ours = false;
                // A plugin whose VERSION gave no list gets 1.0.0, which every plugin that
                // speaks the 1.x spec takes.
                let best = supported
                    .iter()
                    .filter(|v| version_tuple(v).is_some())
                    .max_by_key(|v| version_tuple(v))
                    .cloned()
                    .unwrap_or_else(|| "1.0.0".to_string());
                ipam.conf["cniVersion"] = best.into();
            }
        }
        Ok(ipam)
    }

    /// Runs the plugin with `CNI_COMMAND=command`; its JSON output (`None` when it printed
    /// nothing), or its error passed on with the plugin's name in front.
    fn exec(&self, command: &str, conf: Option<&Value>) -> Result<Option<Value>> {
        self.exec_env(command, conf, &[])
    }

    /// [`exec`](Self::exec) with `env` set in the plugin's environment besides ours.
    fn exec_env(
        &self,
        command: &str,
        conf: Option<&Value>,
        env: &[(&str, &str)],
    ) -> Result<Option<Value>> {
        let conf = conf.unwrap_or(&self.conf);
        let name = self
            .plugin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |m: String| CniError::new(code::IPAM, format!("IPAM plugin {name}: {m}"));
        let mut child = Command::new(&self.plugin)
            .env("CNI_COMMAND", command)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.plugin.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = serde_json::to_vec(conf).map_err(|e| fail(e.to_string()))?;
            match stdin.write_all(&bytes) {
                // A plugin that exits without reading all of it (VERSION may): its exit
                // status and output below decide, not the pipe.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                r => r.map_err(|e| fail(format!("cannot write its configuration: {e}")))?,
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = if stdout.trim().is_empty() {
            None
        } else {
            serde_json::from_str(stdout.trim()).ok()
        };
        if out.status.success() {
            if parsed.is_none() && !stdout.trim().is_empty() {
                return Err(fail(format!("output is not JSON: {}", stdout.trim())));
            }
            return Ok(parsed);
        }
        // A CNI error object: pass its code and message on.
        if let Some(e) = parsed.as_ref().filter(|v| v.get("code").is_some()) {
            let c = e["code"].as_u64().and_then(|c| u32::try_from(c).ok());
            return Err(CniError::new(
                c.unwrap_or(code::IPAM),
                format!(
                    "IPAM plugin {name}: {}",
                    e["msg"].as_str().unwrap_or("failed")
                ),
            )
            .with_details(e["details"].as_str().unwrap_or_default()));
        }
        Err(fail(format!(
            "failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// ADD: the allocation result. The plugin succeeded once `exec` returns, so it may hold an
    /// address: a result this plugin cannot use (none, or no IPv4 address) releases it first.
    pub fn add(&self) -> Result<Allocation> {
        let v = self.exec("ADD", None)?;
        let alloc = v
            .ok_or_else(|| CniError::new(code::IPAM, "IPAM plugin returned no result"))
            .and_then(|v| Allocation::from_result(&v));
        if alloc.is_err()
            && let Err(e) = self.del()
        {
            eprintln!("vswitch-cni: undo: IPAM DEL: {e}");
        }
        alloc
    }

    pub fn del(&self) -> Result<()> {
        self.exec("DEL", None).map(|_| ())
    }

    pub fn check(&self, prev_result: Option<&Value>) -> Result<()> {
        let mut conf = self.conf.clone();
        if let Some(p) = prev_result {
            conf["prevResult"] = p.clone();
        }
        self.exec("CHECK", Some(&conf)).map(|_| ())
    }

    /// STATUS and GC: delegated only to a plugin that knows them (speaks 1.1.0).
    pub fn status(&self) -> Result<()> {
        if !self.speaks_ours {
            return Ok(());
        }
        self.exec("STATUS", None).map(|_| ())
    }

    pub fn gc(&self) -> Result<()> {
        if !self.speaks_ours {
            return Ok(());
        }
        self.exec("GC", None).map(|_| ())
    }

    /// DEL of attachment `container_id`/`ifname` (not the one of our environment): what GC
    /// does for each attachment it collects when the plugin has no GC of its own.
    pub fn del_attachment(&self, container_id: &str, ifname: &str) -> Result<()> {
        self.exec_env(
            "DEL",
            None,
            &[("CNI_CONTAINERID", container_id), ("CNI_IFNAME", ifname)],
        )
        .map(|_| ())
    }
}

/// The pod's only next hop is the node's gateway `gw` (the pod has `ip/32` and a link route
/// to `gw`; no other address is reachable on the link): a route via `via` cannot be set up.
fn route_via_another_gateway(dst: &str, via: Ipv4Addr, gw: Ipv4Addr) -> CniError {
    CniError::new(
        code::INVALID_CONFIG,
        format!(
            "the IPAM route to {dst} via {via}: the pods' only next hop is the node's gateway {gw} (leave the route's gw out, or set it to {gw})"
        ),
    )
}

/// The first IPv4 route, other than the default one (which this plugin sets itself), of
/// `routes` (the spec's route objects, as the `ipam.routes` of host-local's and static's
/// configuration) whose `gw` is not `gw`, as an error (code 7) to refuse the configuration
/// with.
pub fn foreign_gateway_route(routes: Option<&Value>, gw: Ipv4Addr) -> Option<CniError> {
    routes?.as_array()?.iter().find_map(|r| {
        let dst = r["dst"].as_str()?;
        dst.split_once('/')?.0.parse::<Ipv4Addr>().ok()?;
        let via: Ipv4Addr = r["gw"].as_str()?.parse().ok()?;
        (dst != "0.0.0.0/0" && via != gw).then(|| route_via_another_gateway(dst, via, gw))
    })
}

/// What the IPAM plugin gave: the pod's IPv4 address, its gateway, routes and DNS.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    /// IPv4 routes other than the default one: (destination, gateway if given).
    pub routes: Vec<(String, Option<Ipv4Addr>)>,
    pub dns: Option<Value>,
}

impl Allocation {
    /// As [`foreign_gateway_route`], for the routes of the result.
    pub fn foreign_gateway_route(&self, gw: Ipv4Addr) -> Option<CniError> {
        self.routes.iter().find_map(|(dst, via)| {
            via.filter(|v| *v != gw)
                .map(|v| route_via_another_gateway(dst, v, gw))
        })
    }

    pub fn from_result(v: &Value) -> Result<Allocation> {
        let bad = |m: &str| CniError::new(code::IPAM, format!("IPAM result {v}: {m}"));
        let ips = v["ips"].as_array().ok_or_else(|| bad("no ips"))?;
        let (ip, gateway) = ips
            .iter()
            .find_map(|e| {
                let (a, p) = e["address"].as_str()?.split_once('/')?;
                let ip: Ipv4Addr = a.parse().ok()?;
                let gw = e["gateway"].as_str().and_then(|g| g.parse().ok());
                p.parse::<u8>().ok().filter(|p| *p <= 32)?;
                Some((ip, gw))
            })
            .ok_or_else(|| bad("no IPv4 address (the switch's pods are IPv4)"))?;
        let routes = v["routes"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|r| {
                        let dst = r["dst"].as_str()?;
                        let (a, _) = dst.split_once('/')?;
                        a.parse::<Ipv4Addr>().ok()?;
                        (dst != "0.0.0.0/0").then(|| {
                            (
                                dst.to_string(),
                                r["gw"].as_str().and_then(|g| g.parse().ok()),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Allocation {
            ip,
            gateway,
            routes,
            dns: v.get("dns").filter(|d| !d.is_null()).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_result_parses() {
        let v: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64"},{"address":"172.16.1.5/24","gateway":"172.16.1.1"}],
                "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.0.0.0/8","gw":"172.16.1.1"},{"dst":"::/0"}],"dns":{}}"#,
        )
        .expect("json");
        let a = Allocation::from_result(&v).expect("allocation");
        assert_eq!(a.ip, Ipv4Addr::new(172, 16, 1, 5));
        assert_eq!(a.gateway, Some(Ipv4Addr::new(172, 16, 1, 1)));
        assert_eq!(
            a.routes,
            vec![("10.0.0.0/8".to_string(), Some(Ipv4Addr::new(172, 16, 1, 1)))]
        );
        assert!(
            Allocation::from_result(&serde_json::json!({"ips": [{"address": "fd00::1/64"}]}))
                .is_err()
        );
    }

    #[test]
    fn routes_via_another_gateway_are_refused() {
        let gw = Ipv4Addr::new(172, 16, 1, 1);
        let routes = serde_json::json!([
            {"dst": "0.0.0.0/0", "gw": "172.16.1.254"},
            {"dst": "10.0.0.0/8"},
            {"dst": "10.1.0.0/16", "gw": "172.16.1.1"},
            {"dst": "fd00::/8", "gw": "fd00::1"},
        ]);
        assert!(foreign_gateway_route(Some(&routes), gw).is_none());
        assert!(foreign_gateway_route(None, gw).is_none());
        let mut bad = routes.clone();
        bad.as_array_mut()
            .expect("list")
            .push(serde_json::json!({"dst": "192.168.0.0/16", "gw": "172.16.1.254"}));
        let e = foreign_gateway_route(Some(&bad), gw).expect("refused");
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("192.168.0.0/16 via 172.16.1.254"), "{e}");
        // The same for an IPAM result's routes.
        let a = Allocation::from_result(&serde_json::json!({
            "ips": [{"address": "172.16.1.5/24"}], "routes": bad,
        }))
        .expect("allocation");
        let e = a.foreign_gateway_route(gw).expect("refused");
        assert_eq!(e.code, code::INVALID_CONFIG);
        let ok = Allocation::from_result(&serde_json::json!({
            "ips": [{"address": "172.16.1.5/24"}], "routes": routes,
        }))
        .expect("allocation");
        assert!(ok.foreign_gateway_route(gw).is_none());
    }
}
