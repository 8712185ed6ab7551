//! Tunnel ports sharing one UDP port: several VXLAN ports on 4789, one per remote, beside at
//! most one that takes any remote (`remote_ip=flow`), as Open vSwitch allows.
//!
//! Each port keeps its own socket, bound with `SO_REUSEPORT`; a port with a fixed remote
//! connects its socket to that address (UDP port 0: any source port, as a VXLAN sender picks
//! its source port per flow). The kernel gives a datagram to the bound socket that matches it
//! best: the one connected to its sender, else the unconnected one. So the datagrams are parted
//! by the kernel, with no shared receive path between the ports.
//!
//! This registry of the process's claims refuses what the kernel could not part: two ports on
//! the same local address and UDP port with the same remote, or both taking any remote. And the
//! first claim of a UDP port first binds a plain socket there, so a port another program holds
//! is refused as it was before sharing (rather than joined through its own `SO_REUSEPORT`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use crate::udp::UdpError;

struct Held {
    id: u64,
    local: SocketAddr,
    remote: Option<IpAddr>,
    owner: String,
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

/// Claims `(local, remote)` for `owner` and runs `open` under the registry's lock, told whether
/// this process holds no socket on `local`'s UDP port yet (then it must make sure that no other
/// program does). The claim is kept only if `open` succeeds.
pub(crate) fn claim<T>(
    local: SocketAddr,
    remote: Option<IpAddr>,
    owner: &str,
    open: impl FnOnce(bool) -> Result<T, UdpError>,
) -> Result<(T, Claim), UdpError> {
    let mut reg = registry();
    if let Some(h) = reg
        .held
        .iter()
        .find(|h| h.local == local && h.remote == remote)
    {
        return Err(UdpError::Taken {
            addr: local,
            remote: remote.map_or_else(|| "any remote".to_string(), |ip| ip.to_string()),
            owner: h.owner.clone(),
        });
    }
    let first_on_port = !reg.held.iter().any(|h| h.local.port() == local.port());
    let opened = open(first_on_port)?;
    let id = reg.next_id;
    reg.next_id += 1;
    reg.held.push(Held {
        id,
        local,
        remote,
        owner: owner.to_string(),
    });
    Ok((opened, Claim { id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_second_claim_on_the_same_remote_is_refused_until_the_first_is_dropped() {
        let local = addr("127.0.0.1:47891");
        let remote = Some("10.0.0.2".parse().unwrap());
        let (first, c1) = claim(local, remote, "vx1", Ok).unwrap();
        assert!(first, "nothing held the port before");
        let err = claim(local, remote, "vx2", Ok).unwrap_err().to_string();
        assert!(err.contains("vx1") && err.contains("10.0.0.2"), "{err}");
        // Another remote, and any remote, share the port; they are not the first on it.
        let (first, c2) = claim(local, Some("10.0.0.3".parse().unwrap()), "vx3", Ok).unwrap();
        assert!(!first);
        let (_, c3) = claim(local, None, "vx0", Ok).unwrap();
        let err = claim(local, None, "vx4", Ok).unwrap_err().to_string();
        assert!(err.contains("any remote") && err.contains("vx0"), "{err}");
        // Another local address with the same remote is another claim.
        let (_, c4) = claim(addr("127.0.0.2:47891"), remote, "vx5", Ok).unwrap();
        drop(c1);
        let (_, c5) = claim(local, remote, "vx2", Ok).unwrap();
        drop((c2, c3, c4, c5));
        let (first, _c) = claim(local, remote, "vx1", Ok).unwrap();
        assert!(first, "every claim was given back");
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
        assert!(claim(local, None, "vx2", Ok).is_ok());
    }
}
