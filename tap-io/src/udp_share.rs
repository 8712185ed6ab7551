//! Tunnel ports sharing one UDP port: several VXLAN ports on 4789, one per remote, beside at
//! most one that takes any remote (`remote_ip=flow`), as Open vSwitch allows.
//!
//! Each port keeps its own socket, bound with `SO_REUSEPORT`; a port with a fixed remote
//! connects its socket to that address (UDP port 0: any source port, as a VXLAN sender picks
//! its source port per flow). The kernel gives a datagram to the bound socket that matches it
//! best: the one connected to its sender, else the unconnected one. So the datagrams are parted
//! by the kernel, with no shared receive path between the ports.
//!
//! This registry of the process's claims refuses what the kernel could not part:
//! - two ports with the same remote on a UDP port, or two unconnected sockets there (two ports
//!   taking any remote, or one with a remote it had no route to connect to when it opened:
//!   the kernel would split their datagrams by a hash);
//! - ports on one UDP port with different local addresses: a socket bound to the wildcard
//!   address is given, by `connect`, the source address of its route, and the kernel's lookup
//!   ends at the first socket of a group without connected members, so an unconnected socket
//!   bound to that address could take a connected one's datagrams.
//!
//! And the first claim of a UDP port first binds a plain socket there, so a port another
//! program holds is refused as it was before sharing (rather than joined through its own
//! `SO_REUSEPORT`). Parting by connected sockets needs Linux 5.4 or later.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use crate::udp::UdpError;

struct Held {
    id: u64,
    local: SocketAddr,
    remote: Option<IpAddr>,
    owner: String,
    /// Connected to `remote`: the kernel gives it that sender's datagrams only.
    connected: bool,
}

struct Registry {
    next_id: u64,
    held: Vec<Held>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    held: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // The registry is a plain list, consistent after any panic elsewhere.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port's claim on `(local address, UDP port, remote)`, given back when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    id: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        registry().held.retain(|h| h.id != self.id);
    }
}

fn remote_text(remote: Option<IpAddr>) -> String {
    remote.map_or_else(|| "any remote".to_string(), |ip| ip.to_string())
}

/// Claims `(local, remote)` for `owner` and runs `open` under the registry's lock, told whether
/// this process holds no socket on `local`'s UDP port yet (then it must make sure that no other
/// program does); `open` says whether it connected the socket to `remote`. The claim is kept
/// only if `open` succeeds and the kernel can part the port's datagrams from the others'.
pub(crate) fn claim<T>(
    local: SocketAddr,
    remote: Option<IpAddr>,
    owner: &str,
    open: impl FnOnce(bool) -> Result<(T, bool), UdpError>,
) -> Result<(T, Claim), UdpError> {
    let mut reg = registry();
    let on_port = || reg.held.iter().filter(|h| h.local.port() == local.port());
    if let Some(h) = on_port().find(|h| h.local.ip() != local.ip()) {
        return Err(UdpError::Unparted {
            addr: local,
            owner: h.owner.clone(),
            why: format!(
                "it uses local address {} (tunnel ports sharing a UDP port need the same local_ip)",
                h.local.ip()
            ),
        });
    }
    if let Some(h) = on_port().find(|h| h.remote == remote) {
        return Err(UdpError::Taken {
            addr: local,
            remote: remote_text(remote),
            owner: h.owner.clone(),
        });
    }
    let first_on_port = on_port().next().is_none();
    let (opened, connected) = open(first_on_port)?;
    if !connected && let Some(h) = on_port().find(|h| !h.connected) {
        return Err(UdpError::Unparted {
            addr: local,
            owner: h.owner.clone(),
            why: format!(
                "its socket and this one would both take datagrams from any sender ({} and {}; a port with a remote connects its socket to it, which needs a route to it when the port opens)",
                remote_text(h.remote),
                remote_text(remote),
            ),
        });
    }
    let id = reg.next_id;
    reg.next_id += 1;
    reg.held.push(Held {
        id,
        local,
        remote,
        owner: owner.to_string(),
        connected,
    });
    Ok((opened, Claim { id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// An open that connects its socket (`true`) or not, and reports whether it was first.
    fn opened(connected: bool) -> impl FnOnce(bool) -> Result<(bool, bool), UdpError> {
        move |first| Ok((first, connected))
    }

    #[test]
    fn a_second_claim_on_the_same_remote_is_refused_until_the_first_is_dropped() {
        let local = addr("127.0.0.1:47891");
        let remote = Some("10.0.0.2".parse().unwrap());
        let (first, c1) = claim(local, remote, "vx1", opened(true)).unwrap();
        assert!(first, "nothing held the port before");
        let err = claim(local, remote, "vx2", opened(true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vx1") && err.contains("10.0.0.2"), "{err}");
        // Another remote, and any remote, share the port; they are not the first on it.
        let other = Some("10.0.0.3".parse().unwrap());
        let (first, c2) = claim(local, other, "vx3", opened(true)).unwrap();
        assert!(!first);
        let (_, c3) = claim(local, None, "vx0", opened(false)).unwrap();
        let err = claim(local, None, "vx4", opened(false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("any remote") && err.contains("vx0"), "{err}");
        // Another local address on the same UDP port is refused: the kernel could not part
        // a wildcard-bound connected socket's datagrams from an address-bound one's.
        let err = claim(addr("0.0.0.0:47891"), other, "vx5", opened(true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vx1") && err.contains("127.0.0.1"), "{err}");
        drop(c1);
        let (_, c5) = claim(local, remote, "vx2", opened(true)).unwrap();
        drop((c2, c3, c5));
        let (first, _c) = claim(addr("0.0.0.0:47891"), remote, "vx1", opened(true)).unwrap();
        assert!(first, "every claim was given back");
    }

    /// A port whose socket could not be connected to its remote (no route yet) takes any
    /// sender's datagrams: it cannot share the UDP port with another such socket.
    #[test]
    fn two_unconnected_sockets_never_share_a_port() {
        let local = addr("127.0.0.1:47893");
        let b = Some("10.0.0.2".parse().unwrap());
        let c = Some("10.0.0.3".parse().unwrap());
        let (_, cb) = claim(local, b, "vxb", opened(false)).unwrap();
        let err = claim(local, None, "vx0", opened(false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vxb") && err.contains("any sender"), "{err}");
        // A connected one shares it.
        let (_, _cc) = claim(local, c, "vxc", opened(true)).unwrap();
        drop(cb);
        let (_, _c0) = claim(local, None, "vx0", opened(false)).unwrap();
        let err = claim(local, b, "vxb", opened(false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vx0"), "{err}");
    }

    #[test]
    fn a_failed_open_claims_nothing() {
        let local = addr("127.0.0.1:47892");
        let failed: Result<((), Claim), UdpError> = claim(local, None, "vx1", |_| {
            Err(UdpError::Sys {
                what: "bind",
                addr: local,
                source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
            })
        });
        assert!(failed.is_err());
        assert!(claim(local, None, "vx2", opened(false)).is_ok());
    }
}
