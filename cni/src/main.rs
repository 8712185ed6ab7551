//! `vswitch-cni`: the CNI plugin (spec 1.0.0, with 1.1.0's STATUS and GC) that attaches a
//! container to the node network of a running `vswitchd --config`.
//!
//! ADD: IPAM (delegated, e.g. `host-local`) allocates the address; a veth pair is created, its
//! container end moved into `CNI_NETNS` as `CNI_IFNAME` and configured as `scripts/demo.sh`
//! configures pods (`ip/32`, a route to the gateway on the link, a default route through it
//! unless the namespace has one, the node's pod MTU); the host end is registered with vswitchd
//! (`add-pod`). A failed ADD undoes what it did. DEL undoes ADD and succeeds when there is
//! nothing to undo. See `docs/cni.md`.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use vswitch_cni::args::{self, Command, Config, Env};
use vswitch_cni::error::{CniError, Result, code};
use vswitch_cni::ipam::{self, Ipam};
use vswitch_cni::{link, switch};

fn main() {
    let mut version = args::DEFAULT_VERSION.to_string();
    let result = run(&mut version);
    match result {
        Ok(Some(out)) => println!("{out}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("vswitch-cni: {e}");
            println!("{}", e.to_json(&version));
            std::process::exit(1);
        }
    }
}

fn read_config(version: &mut String) -> Result<Config> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("cannot read the configuration: {e}"),
        )
    })?;
    let config = Config::parse(&bytes)?;
    version.clone_from(&config.conf.cni_version);
    Ok(config)
}

/// The command's output (ADD's result, VERSION's answer) or its error.
fn run(version: &mut String) -> Result<Option<Value>> {
    let cmd = args::command()?;
    if cmd == Command::Version {
        return Ok(Some(version_answer()));
    }
    let env = Env::read();
    env.validate(cmd)?;
    let config = read_config(version)?;
    config.allows(cmd)?;
    if matches!(cmd, Command::Add | Command::Check | Command::Status) {
        config.refuse_unsupported_fields()?;
    }
    match cmd {
        Command::Add => add(&env, &config).map(Some),
        Command::Del => del(&env, &config).map(|()| None),
        Command::Check => check(&env, &config).map(|()| None),
        Command::Status => status(&env, &config).map(|()| None),
        Command::Gc => gc(&env, &config).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// VERSION: answered in the version the runtime asked in when we speak it.
fn version_answer() -> Value {
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let asked = serde_json::from_str::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| args::SUPPORTED_VERSIONS.contains(&v.as_str()));
    json!({
        "cniVersion": asked.unwrap_or_else(|| args::SUPPORTED_VERSIONS[args::SUPPORTED_VERSIONS.len() - 1].to_string()),
        "supportedVersions": args::SUPPORTED_VERSIONS,
    })
}

/// The pod's name in vswitchd: the container id and the interface name (neither can hold a
/// `:`), so that DEL, CHECK and GC find it.
fn pod_name(container_id: &str, ifname: &str) -> String {
    format!("{container_id}:{ifname}")
}

/// The pod MAC asked for: `runtimeConfig.mac` (capability "mac"), else `CNI_ARGS` `MAC=`.
fn requested_mac(env: &Env, config: &Config) -> Result<Option<String>> {
    if let Some(m) = config
        .conf
        .runtime_config
        .as_ref()
        .and_then(|r| r.mac.as_deref())
    {
        return Ok(args::parse_mac(m));
    }
    env.mac_arg()
}

/// What ADD did so far, undone in reverse on failure.
#[derive(Default)]
struct Undo {
    ipam: bool,
    veth: Option<String>,
    pod: Option<String>,
}

impl Undo {
    fn run(self, config: &Config, ipam: &Ipam) {
        if let Some(pod) = self.pod
            && let Err(e) = switch::call(&config.conf.rundir, &["del-pod", &pod, "--if-exists"])
        {
            eprintln!("vswitch-cni: undo: del-pod {pod}: {e:?}");
        }
        if let Some(host) = self.veth
            && let Err(e) = link::delete(None, &host)
        {
            eprintln!("vswitch-cni: undo: delete {host}: {e}");
        }
        if self.ipam
            && let Err(e) = ipam.del()
        {
            eprintln!("vswitch-cni: undo: IPAM DEL: {e}");
        }
    }
}

fn add(env: &Env, config: &Config) -> Result<Value> {
    let conf = &config.conf;
    let mac = requested_mac(env, config)?;
    let ipam = Ipam::new(config, &env.path)?;
    let node = switch::node_info(&conf.rundir)?;
    if node.bridge != conf.bridge {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "bridge {:?} is not the bridge of vswitchd's node ({:?})",
                conf.bridge, node.bridge
            ),
        ));
    }
    let (id, ifname) = (env.container_id(), env.ifname());
    let netns = env.netns.as_deref().unwrap_or_default();
    let host = link::host_ifname(id, ifname);
    if link::link_info(None, &host)?.is_some() {
        return Err(CniError::new(
            code::LINK,
            format!(
                "interface {host} of container {id}/{ifname} already exists (ADD without DEL?)"
            ),
        ));
    }
    let mtu = conf.mtu.unwrap_or_else(|| node.pod_mtu());
    // Routes via another next hop than the node's gateway cannot work: refused before
    // anything is allocated when the configuration names them (host-local's `ipam.routes`).
    if let Some(e) = ipam::foreign_gateway_route(
        conf.ipam.as_ref().and_then(|i| i.get("routes")),
        node.gateway_ip,
    ) {
        return Err(e);
    }

    let alloc = ipam.add()?;
    let mut undo = Undo {
        ipam: true,
        ..Undo::default()
    };
    let result = (|| -> Result<Value> {
        if let Some(gw) = alloc.gateway
            && gw != node.gateway_ip
        {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "the IPAM gateway {gw} is not the node's gateway {} (the switch answers only that one)",
                    node.gateway_ip
                ),
            ));
        }
        let gw = node.gateway_ip;
        // And when only the IPAM plugin's result has them (released by the undo).
        if let Some(e) = alloc.foreign_gateway_route(gw) {
            return Err(e);
        }
        let mac = mac.clone().unwrap_or_else(|| args::mac_for_ip(alloc.ip));
        link::create_veth(&host, netns, ifname, &mac, mtu)?;
        undo.veth = Some(host.clone());
        let extra: Vec<String> = alloc.routes.iter().map(|(dst, _)| dst.clone()).collect();
        let default_route = link::configure_pod(netns, ifname, alloc.ip, gw, &extra)?;
        let host_mac = link::link_info(None, &host)?
            .map(|l| l.mac)
            .unwrap_or_default();
        let name = pod_name(id, ifname);
        undo.pod = Some(name.clone());
        let (port, ip, macarg) = (
            format!("port={host}"),
            format!("ip={}", alloc.ip),
            format!("mac={mac}"),
        );
        switch::call(&conf.rundir, &["add-pod", &name, &port, &ip, &macarg])
            .map_err(|e| e.into_cni("add-pod"))?;
        let pod = Attached {
            host: &host,
            host_mac: &host_mac,
            ifname,
            mac: &mac,
            netns,
            mtu,
            gw,
            default_route,
        };
        Ok(add_result(config, &pod, &alloc))
    })();
    if result.is_err() {
        undo.run(config, &ipam);
    }
    result
}

/// What ADD set up, for its result.
struct Attached<'a> {
    host: &'a str,
    host_mac: &'a str,
    ifname: &'a str,
    mac: &'a str,
    netns: &'a str,
    mtu: u32,
    gw: Ipv4Addr,
    /// False when the namespace had a default route already (left alone, not reported).
    default_route: bool,
}

fn add_result(config: &Config, pod: &Attached, alloc: &ipam::Allocation) -> Value {
    let Attached {
        host,
        host_mac,
        ifname,
        mac,
        netns,
        mtu,
        gw,
        default_route,
    } = *pod;
    // In a chain, an earlier plugin's result comes as `prevResult`: ours is appended to it
    // (the spec's ADD must pass it on), our interfaces after its own.
    let prev = config.conf.prev_result.as_ref().filter(|p| p.is_object());
    let list = |key: &str| {
        prev.and_then(|p| p[key].as_array())
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = list("interfaces");
    let container_index = interfaces.len() + 1;
    let mut ipc = json!({
        "address": format!("{}/32", alloc.ip),
        "gateway": gw.to_string(),
        "interface": container_index,
    });
    if !config.at_least("1.0.0") {
        ipc["version"] = "4".into();
    }
    let mut host_if = json!({"name": host, "mac": host_mac});
    let mut pod_if = json!({"name": ifname, "mac": mac, "sandbox": netns});
    if config.at_least("1.1.0") {
        // 1.1.0's interface `mtu`: what CHECK compares the MTU with.
        host_if["mtu"] = mtu.into();
        pod_if["mtu"] = mtu.into();
    }
    interfaces.push(host_if);
    interfaces.push(pod_if);
    let mut ips = list("ips");
    ips.push(ipc);
    let mut routes = list("routes");
    if default_route {
        routes.push(json!({"dst": "0.0.0.0/0", "gw": gw.to_string()}));
    }
    routes.extend(
        alloc
            .routes
            .iter()
            .map(|(dst, _)| json!({"dst": dst, "gw": gw.to_string()})),
    );
    let mut r = prev.cloned().unwrap_or_else(|| json!({}));
    r["cniVersion"] = config.version().into();
    r["interfaces"] = interfaces.into();
    r["ips"] = ips.into();
    r["routes"] = routes.into();
    let prev_dns = r
        .get("dns")
        .is_some_and(|d| d.as_object().is_some_and(|o| !o.is_empty()));
    if let Some(dns) = alloc.dns.as_ref().filter(|_| !prev_dns) {
        r["dns"] = dns.clone();
    }
    r
}

fn del(env: &Env, config: &Config) -> Result<()> {
    let conf = &config.conf;
    // An unusable IPAM configuration (no type, plugin not found, no CNI_PATH to find it in)
    // fails only the IPAM step: the pod is still unregistered and its veth deleted.
    let ipam = if env.path.is_empty() {
        Err(CniError::new(
            code::INVALID_ENV,
            "CNI_PATH is not set: the IPAM plugin could not be run to release the address (the pod was unregistered and its interfaces deleted)",
        ))
    } else {
        Ipam::new(config, &env.path)
    };
    let (id, ifname) = (env.container_id(), env.ifname());
    let host = link::host_ifname(id, ifname);
    let mut first_err: Option<CniError> = None;
    // Every step runs even when one fails; the first failure is reported.
    match switch::call(
        &conf.rundir,
        &["del-pod", &pod_name(id, ifname), "--if-exists"],
    ) {
        Ok(_) => {}
        // No daemon: nothing is registered with it.
        Err(switch::CallError::NotRunning(m)) => {
            eprintln!("vswitch-cni: DEL: vswitchd not running ({m}); nothing to unregister")
        }
        Err(e) => first_err = Some(e.into_cni("del-pod")),
    }
    if let Err(e) = link::delete(None, &host) {
        first_err.get_or_insert(e);
    }
    if let Err(e) = ipam.and_then(|ipam| ipam.del()) {
        first_err.get_or_insert(e);
    }
    first_err.map_or(Ok(()), Err)
}

fn check_failed(msg: String) -> CniError {
    CniError::new(code::CHECK_FAILED, msg)
}

fn check(env: &Env, config: &Config) -> Result<()> {
    let conf = &config.conf;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult (the result of the ADD)",
        )
    })?;
    let ipam = Ipam::new(config, &env.path)?;
    let (id, ifname) = (env.container_id(), env.ifname());
    let netns = env.netns.as_deref().unwrap_or_default();
    let host = link::host_ifname(id, ifname);
    // What the ADD reported: our container interface (index) and its address.
    let ifaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
    let idx = ifaces
        .iter()
        .position(|i| i["name"] == ifname && i.get("sandbox").and_then(Value::as_str).is_some())
        .ok_or_else(|| check_failed(format!("prevResult has no container interface {ifname}")))?;
    let mac = ifaces[idx]["mac"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    // 1.1.0 results give the interface's MTU; without it any MTU passes (a later plugin in
    // the chain may have changed it).
    let mtu = ifaces[idx]["mtu"].as_u64();
    let ip: Ipv4Addr = prev["ips"]
        .as_array()
        .and_then(|ips| {
            ips.iter().find_map(|e| {
                if e.get("interface")
                    .and_then(Value::as_u64)
                    .is_some_and(|i| i != idx as u64)
                {
                    return None;
                }
                e["address"].as_str()?.split_once('/')?.0.parse().ok()
            })
        })
        .ok_or_else(|| check_failed(format!("prevResult has no IPv4 address for {ifname}")))?;

    let node = switch::node_info(&conf.rundir)?;
    let gw = node.gateway_ip;
    // The default route is checked only when the result has ours: ADD leaves a namespace's
    // existing default route alone (and does not report one then).
    let gw_text = gw.to_string();
    let default_route = prev["routes"].as_array().is_some_and(|routes| {
        routes
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == gw_text.as_str())
    });
    match link::link_info(None, &host)? {
        None => return Err(check_failed(format!("host interface {host} is missing"))),
        Some(l) if !l.up => return Err(check_failed(format!("host interface {host} is down"))),
        Some(_) => {}
    }
    let pod = link::link_info(Some(netns), ifname)?
        .ok_or_else(|| check_failed(format!("{ifname} is missing in {netns}")))?;
    if !pod.up {
        return Err(check_failed(format!("{ifname} is down")));
    }
    if pod.mac != mac {
        return Err(check_failed(format!(
            "{ifname} has MAC {} instead of {mac}",
            pod.mac
        )));
    }
    if let Some(mtu) = mtu
        && u64::from(pod.mtu) != mtu
    {
        return Err(check_failed(format!(
            "{ifname} has MTU {} instead of {mtu}",
            pod.mtu
        )));
    }
    if !pod.ipv4.contains(&(ip, 32)) {
        return Err(check_failed(format!("{ifname} lacks {ip}/32")));
    }
    if default_route && !link::has_default_route(netns, ifname, gw)? {
        return Err(check_failed(format!(
            "no default route via {gw} on {ifname}"
        )));
    }
    let pods = switch::call(&conf.rundir, &["list-pods"]).map_err(|e| e.into_cni("list-pods"))?;
    let name = pod_name(id, ifname);
    let entry = switch::parse_pods(&pods)
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| check_failed(format!("vswitchd has no pod {name}")))?;
    if entry.port != host || entry.ip != ip.to_string() || entry.mac != mac {
        return Err(check_failed(format!(
            "vswitchd's pod {name} is {} {} {}, expected {host} {ip} {mac}",
            entry.port, entry.ip, entry.mac
        )));
    }
    ipam.check(Some(prev))
}

fn status(env: &Env, config: &Config) -> Result<()> {
    let unavailable =
        |e: CniError| CniError::new(code::NOT_AVAILABLE, e.msg).with_details(e.details);
    let node = switch::node_info(&config.conf.rundir).map_err(unavailable)?;
    if node.bridge != config.conf.bridge {
        return Err(CniError::new(
            code::NOT_AVAILABLE,
            format!(
                "vswitchd's node bridge is {:?}, not {:?}",
                node.bridge, config.conf.bridge
            ),
        ));
    }
    if !env.path.is_empty() && config.conf.ipam.is_some() {
        Ipam::new(config, &env.path)
            .and_then(|i| i.status())
            .map_err(unavailable)?;
    }
    Ok(())
}

/// GC: removes the pods (and their veths) this plugin registered whose attachment is not in
/// `cni.dev/valid-attachments`, then delegates GC to the IPAM plugin; one that has no GC (does
/// not speak 1.1.0) gets a DEL for each attachment removed instead.
fn gc(env: &Env, config: &Config) -> Result<()> {
    let valid =
        config.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(code::INVALID_CONFIG, "GC needs cni.dev/valid-attachments")
        })?;
    let keep: std::collections::HashSet<String> = valid
        .iter()
        .map(|a| pod_name(&a.container_id, &a.ifname))
        .collect();
    // As DEL: an unusable IPAM configuration fails only the IPAM step.
    let ipam = Ipam::new(config, &env.path);
    let mut first_err: Option<CniError> = None;
    match switch::call(&config.conf.rundir, &["list-pods"]) {
        Ok(text) => {
            for p in switch::parse_pods(&text) {
                let Some((id, ifname)) = p.name.split_once(':') else {
                    continue;
                };
                // Ours: the port is the host end we would have named for this attachment.
                if p.port != link::host_ifname(id, ifname) || keep.contains(&p.name) {
                    continue;
                }
                if let Err(e) =
                    switch::call(&config.conf.rundir, &["del-pod", &p.name, "--if-exists"])
                {
                    first_err.get_or_insert(e.into_cni("del-pod"));
                }
                if let Err(e) = link::delete(None, &p.port) {
                    first_err.get_or_insert(e);
                }
                if let Ok(ipam) = &ipam
                    && !ipam.speaks_ours
                    && let Err(e) = ipam.del_attachment(id, ifname)
                {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(switch::CallError::NotRunning(_)) => {}
        Err(e) => {
            first_err.get_or_insert(e.into_cni("list-pods"));
        }
    }
    if let Err(e) = ipam.and_then(|ipam| ipam.gc()) {
        first_err.get_or_insert(e);
    }
    first_err.map_or(Ok(()), Err)
}
