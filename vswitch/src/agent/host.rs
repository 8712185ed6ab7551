//! The node's side of the host port: the kernel gets the host port's MAC and address, a
//! permanent neighbour entry for the gateway, and routes for every pod CIDR and the Service
//! CIDR through the gateway, so the node (kubelet's probes, `hostNetwork` pods, a `curl` of a
//! ClusterIP) reaches the pod network through the switch.
//!
//! Mode eni: the node reaches pods through the VPC, so the host port has no address of its own
//! and carries only the Service CIDR, from the node's underlay address.
//!
//! Done with iproute2's `ip` (present on every node), idempotently (`replace`), after every
//! apply; routes the previous apply added and this one does not want are removed.

use std::process::Command;

use super::model::{Cidr, Mode, NodeConfig};

/// What was installed on the kernel's side (to undo what a later apply no longer wants).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostState {
    pub interface: Option<String>,
    pub routes: Vec<Cidr>,
}

/// Configures the kernel's side of `cfg`'s host port; returns what is now installed.
pub fn configure(cfg: &NodeConfig, before: &HostState) -> Result<HostState, String> {
    let Some(h) = &cfg.host else {
        // The port itself went with the apply; its routes went with it.
        return Ok(HostState::default());
    };
    let dev = h.interface.as_str();
    let gw = cfg.gateway_ip.to_string();
    let mac = h.mac.to_string();
    ip(&["link", "set", "dev", dev, "address", &mac])?;
    if let Mode::Tunnel { .. } = cfg.mode {
        // The same MTU as the pods: what fits in a VXLAN datagram on the underlay.
        ip(&["link", "set", "dev", dev, "mtu", &pod_mtu(cfg).to_string()])?;
    }
    ip(&["link", "set", "dev", dev, "up"])?;
    let eni = cfg.mode == Mode::Eni;
    if !eni {
        ip(&["addr", "replace", &format!("{}/32", h.ip), "dev", dev])?;
    }
    ip(&[
        "neigh",
        "replace",
        &gw,
        "lladdr",
        &cfg.gateway_mac.to_string(),
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    let mut routes = vec![cfg.service_cidr];
    if !eni {
        ip(&[
            "route",
            "replace",
            &gw,
            "dev",
            dev,
            "src",
            &h.ip.to_string(),
        ])?;
        routes.push(cfg.pod_cidr);
        routes.extend(cfg.peers.iter().map(|p| p.pod_cidr));
    }
    for r in &routes {
        ip(&[
            "route",
            "replace",
            &r.to_string(),
            "via",
            &gw,
            "dev",
            dev,
            "onlink",
            "src",
            &h.ip.to_string(),
        ])?;
    }
    if before.interface.as_deref() == Some(dev) {
        for old in before.routes.iter().filter(|r| !routes.contains(r)) {
            // Already gone is fine.
            let _ = ip(&["route", "del", &old.to_string(), "dev", dev]);
        }
    }
    Ok(HostState {
        interface: Some(dev.to_string()),
        routes,
    })
}

/// The MTU pods (and the host port) use: the underlay's, less VXLAN's outer headers and the
/// inner Ethernet header in tunnel mode; the uplink's in route mode (1500 when unknown).
pub fn pod_mtu(cfg: &NodeConfig) -> usize {
    match cfg.mode {
        Mode::Tunnel { .. } => crate::bridge::underlay_mtu(cfg.underlay_ip)
            .saturating_sub(encap::vxlan::UNDERLAY_OVERHEAD_V4 + 14),
        Mode::Route | Mode::Eni => cfg
            .uplink
            .as_ref()
            .and_then(|u| tap_io::iface::mtu(&u.interface).ok())
            .unwrap_or(1500),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("host port: cannot run ip: {e} (iproute2 is needed)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "host port: ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
