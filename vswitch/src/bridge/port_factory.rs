//! Opens the I/O back end of a port from its spec: AF_PACKET, TAP, or the VXLAN tunnel socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::datapath::ports::PortIo;
use crate::portspec::{FromFlow, PortKind, PortSpec};

/// Opens the I/O back end of a port.
pub fn open_port(spec: &PortSpec) -> Result<(PortIo, [u8; 6]), String> {
    match spec.kind {
        PortKind::AfPacket => {
            let mut cfg = tap_io::AfPacketConfig::new(&spec.name);
            cfg.skip_udp_dst_port = spec.skip_udp_dport;
            cfg.host_rx = match spec.host_rx {
                None => tap_io::HostRx::Auto,
                Some(true) => tap_io::HostRx::Keep,
                Some(false) => tap_io::HostRx::Drop,
            };
            let port = tap_io::AfPacketPort::open(&cfg).map_err(|e| e.to_string())?;
            if let Some(e) = port.host_rx_error() {
                tracing::warn!(port = %spec.name, "host stack left on for the port's frames: {e}");
            }
            let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
            Ok((PortIo::Dev(Box::new(port)), mac))
        }
        PortKind::Tap | PortKind::Internal => {
            // Persistent: the device, and the addresses a pod gave it, outlive a restart of
            // the switch, which reattaches by name (`Switch::del_port` deletes it).
            let cfg = tap_io::TapConfig {
                persist: true,
                ..tap_io::TapConfig::new(&spec.name)
            };
            let port = tap_io::TapPort::open(&cfg).map_err(|e| e.to_string())?;
            let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
            Ok((PortIo::Dev(Box::new(port)), mac))
        }
        PortKind::Vxlan => {
            let t = spec
                .tunnel
                .as_ref()
                .ok_or("vxlan port without tunnel options")?;
            let local = match t.local_ip {
                Some(IpAddr::V4(ip)) => ip,
                Some(IpAddr::V6(_)) => return Err("IPv6 underlay is not supported yet".into()),
                None => Ipv4Addr::UNSPECIFIED,
            };
            let sock = tap_io::UdpTunnelSocket::bind(SocketAddr::from((local, t.dst_port)))
                .map_err(|e| e.to_string())?;
            let remote = match t.remote_ip {
                FromFlow::Fixed(IpAddr::V4(ip)) => Some(ip),
                FromFlow::Fixed(IpAddr::V6(_)) => {
                    return Err("IPv6 underlay is not supported yet".into());
                }
                FromFlow::Flow => None,
            };
            let vni = match t.key {
                FromFlow::Fixed(k) => Some(k),
                FromFlow::Flow => None,
            };
            let port = crate::datapath::vxlan::VxlanPort::new(
                &spec.name,
                sock,
                tap_io::TunnelConfig {
                    local,
                    dst_port: t.dst_port,
                    remote,
                    vni,
                    underlay_mtu: underlay_mtu(local),
                },
            );
            Ok((PortIo::Tunnel(Box::new(port)), [0; 6]))
        }
    }
}

/// MTU of the interface that owns `local` (1500 when unknown or unspecified).
pub fn underlay_mtu(local: Ipv4Addr) -> usize {
    if local.is_unspecified() {
        return 1500;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return 1500;
    };
    for ifa in addrs {
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        if addr.ip() == local {
            return tap_io::iface::mtu(&ifa.interface_name).unwrap_or(1500);
        }
    }
    1500
}
