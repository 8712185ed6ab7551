//! Opens the I/O back end of a port from its spec: AF_PACKET (or AF_XDP), TAP, or the VXLAN tunnel socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::AbsentPort;
use crate::datapath::ports::PortIo;
use crate::persist::format::MovedTap;
use crate::portspec::{FromFlow, PortKind, PortSpec, XdpMode};

/// An opened port: its I/O, its MAC, and for TAP ports a second handle on the device that
/// the control side keeps to see where the device went (and to delete it wherever it is).
pub struct Opened {
    pub io: PortIo,
    pub mac: [u8; 6],
    pub tap: Option<tap_io::TapPort>,
    /// Where the TAP device was found, when not in the switch's own namespace.
    pub moved: Option<MovedTap>,
    /// `options:xdp=on` was asked for but the port fell back to AF_PACKET: the port's
    /// recorded options say what runs (`xdp` off), the log says why.
    pub xdp_refused: bool,
    /// A tunnel port that cannot open yet (a fixed remote with no route to it, or a
    /// `local_ip` on no interface; a port for any remote only when restored): its I/O is an
    /// [`AbsentPort`], the switch tries again every second.
    pub tunnel_waits: bool,
}

impl Opened {
    pub fn plain(io: PortIo, mac: [u8; 6]) -> Opened {
        Opened {
            io,
            mac,
            tap: None,
            moved: None,
            xdp_refused: false,
            tunnel_waits: false,
        }
    }

    /// A tunnel port waiting to open ([`Opened::tunnel_waits`]).
    pub fn waiting_tunnel(name: &str) -> Opened {
        Opened {
            tunnel_waits: true,
            ..Opened::plain(PortIo::Dev(Box::new(AbsentPort::new(name))), [0; 6])
        }
    }
}

/// Opens the I/O back end of a port; a TAP port that was `moved` into another namespace
/// (the state file says where) is reattached there.
pub fn open_port(spec: &PortSpec, moved: Option<&MovedTap>) -> Result<Opened, String> {
    if matches!(spec.kind, PortKind::Tap | PortKind::Internal)
        && let Some(m) = moved
    {
        match open_moved_tap(m) {
            Ok((port, mac)) => {
                tracing::info!(port = %spec.name, netns = %m.netns, ifname = %m.ifname,
                    "TAP device reattached in the namespace it was moved to");
                let tap = port.try_clone_tx().ok();
                return Ok(Opened {
                    io: PortIo::Dev(Box::new(port)),
                    mac,
                    tap,
                    moved: Some(m.clone()),
                    xdp_refused: false,
                    tunnel_waits: false,
                });
            }
            Err(e) => tracing::warn!(port = %spec.name, netns = %m.netns, ifname = %m.ifname,
                "the TAP device moved there cannot be reattached ({e}): a new one is created in the switch's namespace"),
        }
    }
    open_here(spec)
}

/// Attaches to the persistent TAP device `m.ifname` in the namespace `m.netns` names; never
/// creates one (a device of that name must exist there and be a TAP).
fn open_moved_tap(m: &MovedTap) -> Result<(tap_io::TapPort, [u8; 6]), String> {
    let cfg = tap_io::TapConfig {
        persist: true,
        // The pod decides whether its interface is up.
        bring_up: false,
        ..tap_io::TapConfig::new(&m.ifname)
    };
    tap_io::tap::in_netns(Path::new(&m.netns), || {
        let mac = tap_io::iface::mac(&m.ifname).map_err(|e| e.to_string())?;
        let port = tap_io::TapPort::open(&cfg).map_err(|e| e.to_string())?;
        Ok::<_, String>((port, mac))
    })
    .map_err(|e| format!("{}: {e}", m.netns))?
}

fn open_here(spec: &PortSpec) -> Result<Opened, String> {
    match spec.kind {
        PortKind::AfPacket if spec.xdp == Some(XdpMode::On) => match open_afxdp(spec) {
            Ok(opened) => Ok(opened),
            Err(e) => {
                tracing::warn!(port = %spec.name,
                    "options:xdp=on refused ({e}): the port falls back to AF_PACKET");
                // What runs is recorded without `xdp` (the default: shedding), so open that.
                let fallback = PortSpec {
                    xdp: None,
                    ..spec.clone()
                };
                open_afpacket(&fallback).map(|opened| Opened {
                    xdp_refused: true,
                    ..opened
                })
            }
        },
        PortKind::AfPacket => open_afpacket(spec),
        PortKind::Tap | PortKind::Internal => {
            // Persistent: the device, and the addresses a pod gave it, outlive a restart of
            // the switch, which reattaches by name (`Switch::del_port` deletes it).
            let cfg = tap_io::TapConfig {
                persist: true,
                ..tap_io::TapConfig::new(&spec.name)
            };
            let port = tap_io::TapPort::open(&cfg).map_err(|e| e.to_string())?;
            let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
            let tap = port.try_clone_tx().ok();
            Ok(Opened {
                io: PortIo::Dev(Box::new(port)),
                mac,
                tap,
                moved: None,
                xdp_refused: false,
                tunnel_waits: false,
            })
        }
        PortKind::Vxlan | PortKind::Geneve => open_tunnel(spec),
    }
}

/// A VXLAN or Geneve port: its UDP socket (sharing the UDP port with the other tunnel ports
/// of this local address, one per remote), its source ports, its GSO TAP where the kernel
/// takes one; a port whose remote has no route yet waits ([`Opened::waiting_tunnel`]).
fn open_tunnel(spec: &PortSpec) -> Result<Opened, String> {
    let t = spec
        .tunnel
        .as_ref()
        .ok_or("tunnel port without tunnel options")?;
    let local = match t.local_ip {
        Some(IpAddr::V4(ip)) => ip,
        Some(IpAddr::V6(_)) => return Err("IPv6 underlay is not supported yet".into()),
        None => Ipv4Addr::UNSPECIFIED,
    };
    let remote = match t.remote_ip {
        FromFlow::Fixed(IpAddr::V4(ip)) => Some(ip),
        FromFlow::Fixed(IpAddr::V6(_)) => {
            return Err("IPv6 underlay is not supported yet".into());
        }
        FromFlow::Flow => None,
    };
    // Unconnected, its socket would take any sender's datagrams and keep a port for any remote
    // off its UDP port, and it could not send to the remote anyway: without a route the port
    // waits. Asked of a plain socket first, so that a retry holds no share of the UDP port.
    if let Some(remote) = remote
        && !route_ready(local, remote)?
    {
        return Ok(Opened::waiting_tunnel(&spec.name));
    }
    // Other tunnel ports may share the UDP port: the kernel parts the datagrams by
    // remote (one port per remote, one for any).
    let mut sock = tap_io::UdpTunnelSocket::bind_tunnel(
        SocketAddr::from((local, t.dst_port)),
        remote.map(IpAddr::V4),
        &spec.name,
    )
    .map_err(|e| e.to_string())?;
    if remote.is_some() && sock.connected_remote().is_none() {
        // The route went in between.
        return Ok(Opened::waiting_tunnel(&spec.name));
    }
    // On the socket's own address: a wildcard-bound socket connected to its remote
    // has its route's source address, which the lanes must send from too.
    let ports = tunnel_source_ports(&spec.name, sock.local_addr().ip());
    if let Err(e) = sock.set_source_ports(ports) {
        tracing::warn!(port = %spec.name, "one UDP source port for every flow: {e}");
    }
    let cfg = tap_io::TunnelConfig {
        local,
        dst_port: t.dst_port,
        remote,
        vni: match t.key {
            FromFlow::Fixed(k) => Some(k),
            FromFlow::Flow => None,
        },
        underlay_mtu: underlay_mtu(local),
    };
    let io = match spec.kind {
        PortKind::Geneve => tunnel_io::<crate::datapath::geneve::Geneve>(&spec.name, sock, cfg),
        _ => tunnel_io::<crate::datapath::vxlan::Vxlan>(&spec.name, sock, cfg),
    };
    Ok(Opened::plain(io, [0; 6]))
}

/// Whether the kernel has a route from `local` (unspecified: any) to `remote` now: `false`
/// for no route yet or a `local` on no interface yet (the underlay not up), asked of a plain
/// socket's `connect` to `(remote, 0)` as the port's own socket asks it (it sends nothing);
/// any other failure (a broadcast remote, ...) is the port's error.
fn route_ready(local: Ipv4Addr, remote: Ipv4Addr) -> Result<bool, String> {
    use nix::errno::Errno;
    let errno = |e: &std::io::Error| e.raw_os_error().map(Errno::from_raw);
    let sock = match std::net::UdpSocket::bind((local, 0)) {
        Ok(s) => s,
        Err(e) if errno(&e) == Some(Errno::EADDRNOTAVAIL) => return Ok(false),
        Err(e) => return Err(format!("bind {local}: {e}")),
    };
    match sock.connect((remote, 0)) {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                errno(&e),
                Some(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::ENETDOWN)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(format!("connect to {remote}: {e}")),
    }
}

/// The tunnel port with header `H` over `sock`, with a GSO TAP where the kernel has one.
fn tunnel_io<H: tap_io::TunnelHeader + 'static>(
    name: &str,
    sock: tap_io::UdpTunnelSocket,
    cfg: tap_io::TunnelConfig,
) -> PortIo {
    let port = tap_io::TunnelPort::<_, H>::new(name, sock, cfg);
    let port = match open_tunnel_gso(name, cfg.local, cfg.dst_port) {
        Ok(tx) => {
            tracing::info!(port = %name, tap = tx.tap_name(),
                "tunnel super-frames leave whole (UDP-tunnel GSO through a TAP)");
            port.with_gso_tx(tx)
        }
        Err(e) => {
            tracing::info!(port = %name,
                "tunnel super-frames are segmented before the socket: {e}");
            port
        }
    };
    PortIo::Tunnel(Box::new(port))
}

fn open_afpacket(spec: &PortSpec) -> Result<Opened, String> {
    let mut cfg = tap_io::AfPacketConfig::new(&spec.name);
    cfg.skip_udp_dst_port = spec.skip_udp_dport;
    cfg.host_rx = match spec.host_rx {
        None => tap_io::HostRx::Auto,
        Some(true) => tap_io::HostRx::Keep,
        Some(false) => tap_io::HostRx::Drop,
    };
    cfg.fanout = spec.rx_queues() > 1;
    let port = tap_io::AfPacketPort::open(&cfg).map_err(|e| e.to_string())?;
    if let Some(e) = port.host_rx_error() {
        tracing::warn!(port = %spec.name, "host stack left on for the port's frames: {e}");
    }
    if let Some(e) = port.fanout_error() {
        tracing::warn!(port = %spec.name,
            "options:n_rxq: one receive queue only (the port is received by one thread until it is added again or vswitchd restarts, with its interface up): {e}");
    }
    let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
    // A port that leaves the host stack on keeps every frame for it: no XDP program.
    if !spec.sheds() || !port.host_rx_dropped() {
        return Ok(Opened::plain(PortIo::Dev(Box::new(port)), mac));
    }
    let port = tap_io::SheddingPort::new(port, tap_io::ShedConfig::default());
    Ok(Opened::plain(PortIo::Dev(Box::new(port)), mac))
}

/// An AF_XDP port (`options:xdp=on`); the caller falls back to AF_PACKET when it fails.
fn open_afxdp(spec: &PortSpec) -> Result<Opened, String> {
    // A queue just given up by a port of the same interface (deleted and added again, a
    // restart) is busy for a moment.
    let cfg = tap_io::AfXdpConfig::new(&spec.name);
    let port = tap_io::AfXdpPort::open_patiently(&cfg, std::time::Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    tracing::info!(port = %spec.name, "AF_XDP port: native XDP redirect into an XSK, copy mode");
    let mac = tap_io::iface::mac(&spec.name).unwrap_or_default();
    Ok(Opened::plain(PortIo::Dev(Box::new(port)), mac))
}

/// MTU of the interface that owns `local` (1500 when unknown or unspecified).
pub fn underlay_mtu(local: Ipv4Addr) -> usize {
    underlay_iface(local)
        .and_then(|name| tap_io::iface::mtu(&name).ok())
        .unwrap_or(1500)
}

/// The interface that owns `local`, if any.
pub fn underlay_iface(local: Ipv4Addr) -> Option<String> {
    if local.is_unspecified() {
        return None;
    }
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        if addr.ip() == local {
            return Some(ifa.interface_name);
        }
    }
    None
}

/// The sockets a VXLAN port's datagrams leave from, one UDP source port per inner flow
/// (`tap_io::source_ports`), shared by the tunnel ports on `local`: `VSWITCH_TUNNEL_SRC_PORTS`
/// of them (8 unless set; `0` sends everything from the port's own UDP port, as before).
fn tunnel_source_ports(port: &str, local: IpAddr) -> Option<Arc<tap_io::SourcePorts>> {
    let lanes = match std::env::var("VSWITCH_TUNNEL_SRC_PORTS") {
        Err(_) => tap_io::SourcePorts::LANES_DEFAULT,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(0) => return None,
            Ok(n) if n <= tap_io::SourcePorts::LANES_MAX => n,
            _ => {
                tracing::warn!(port, value = %v,
                    "VSWITCH_TUNNEL_SRC_PORTS is not a number from 0 to {}: {} source ports",
                    tap_io::SourcePorts::LANES_MAX, tap_io::SourcePorts::LANES_DEFAULT);
                tap_io::SourcePorts::LANES_DEFAULT
            }
        },
    };
    match tap_io::SourcePorts::shared(local, lanes) {
        Ok(ports) => Some(ports),
        Err(e) => {
            tracing::warn!(
                port,
                "one UDP source port for every flow: no source port sockets: {e}"
            );
            None
        }
    }
}

/// The TAP through which a VXLAN port sends super-frames whole (`tap_io::tunnel_gso`):
/// the default where the kernel takes UDP-tunnel GSO from a TAP (6.17+) and the port has a
/// local address on an interface; `VSWITCH_TUNNEL_GSO=off` keeps the socket path.
fn open_tunnel_gso(name: &str, local: Ipv4Addr, port: u16) -> Result<tap_io::TunnelGsoTx, String> {
    if std::env::var("VSWITCH_TUNNEL_GSO").is_ok_and(|v| v == "off") {
        return Err("VSWITCH_TUNNEL_GSO=off".into());
    }
    let underlay = underlay_iface(local).ok_or("no local_ip on an interface")?;
    // One TAP per tunnel port, named after it (15 bytes at most).
    let tap: String = format!("gso-{name}").chars().take(15).collect();
    tap_io::TunnelGsoTx::open(&tap, &underlay, local, port, port)
        .map_err(|e| format!("no UDP-tunnel GSO through TAP {tap} to {underlay}: {e}"))
}
