//! Interface helpers over `ioctl`s: index, MTU, MAC address, up/down.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

/// Errors of interface look-ups and changes.
#[derive(Debug, Error)]
pub enum IfaceError {
    /// The name is empty, too long for the kernel (15 bytes) or contains a NUL.
    #[error("invalid interface name {0:?}: must be 1 to 15 bytes without NUL")]
    InvalidName(String),
    /// The kernel refused a request (e.g. no such device, not permitted).
    #[error("{op} on interface {name:?} failed: {source}")]
    Ioctl {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    /// A socket for the requests could not be opened.
    #[error("cannot open a socket for interface requests: {0}")]
    Socket(#[source] io::Error),
}

/// An `ifreq` with the name filled in.
pub(crate) fn ifreq_for(name: &str) -> Result<libc::ifreq, IfaceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(IfaceError::InvalidName(name.to_owned()));
    }
    // SAFETY: ifreq is a plain C struct/union for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ctl_socket() -> Result<OwnedFd, IfaceError> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(IfaceError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(
    op: &'static str,
    request: libc::Ioctl,
    name: &str,
    req: &mut libc::ifreq,
) -> Result<(), IfaceError> {
    let sock = ctl_socket()?;
    // SAFETY: `req` is a valid, initialised ifreq that outlives the call; every request used
    // in this module reads or writes only an ifreq, except SIOCETHTOOL, whose `ifru_data`
    // points at the ethtool structure of its command, which the caller keeps alive across this call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(IfaceError::Ioctl {
            op,
            name: name.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The interface index.
pub fn ifindex(name: &str) -> Result<u32, IfaceError> {
    let mut req = ifreq_for(name)?;
    ioctl("SIOCGIFINDEX", libc::SIOCGIFINDEX, name, &mut req)?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

/// The interface MTU.
pub fn mtu(name: &str) -> Result<usize, IfaceError> {
    let mut req = ifreq_for(name)?;
    ioctl("SIOCGIFMTU", libc::SIOCGIFMTU, name, &mut req)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as usize)
}

/// Sets the interface MTU.
pub fn set_mtu(name: &str, mtu: usize) -> Result<(), IfaceError> {
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_mtu = mtu.min(i32::MAX as usize) as i32;
    ioctl("SIOCSIFMTU", libc::SIOCSIFMTU, name, &mut req)
}

/// The interface's hardware (MAC) address.
pub fn mac(name: &str) -> Result<[u8; 6], IfaceError> {
    let mut req = ifreq_for(name)?;
    ioctl("SIOCGIFHWADDR", libc::SIOCGIFHWADDR, name, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut out = [0u8; 6];
    for (d, s) in out.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(out)
}

fn flags(name: &str) -> Result<libc::c_short, IfaceError> {
    let mut req = ifreq_for(name)?;
    ioctl("SIOCGIFFLAGS", libc::SIOCGIFFLAGS, name, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// True when the interface is administratively up.
pub fn is_up(name: &str) -> Result<bool, IfaceError> {
    Ok(flags(name)? & libc::IFF_UP as libc::c_short != 0)
}

/// True when the interface is operationally up (`IFF_RUNNING`: up, with carrier).
pub fn is_running(name: &str) -> Result<bool, IfaceError> {
    Ok(flags(name)? & libc::IFF_RUNNING as libc::c_short != 0)
}

/// Sets the interface administratively up or down.
pub fn set_up(name: &str, up: bool) -> Result<(), IfaceError> {
    let mut f = flags(name)?;
    if up {
        f |= libc::IFF_UP as libc::c_short;
    } else {
        f &= !(libc::IFF_UP as libc::c_short);
    }
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_flags = f;
    ioctl("SIOCSIFFLAGS", libc::SIOCSIFFLAGS, name, &mut req)
}

/// One `SIOCETHTOOL` get request: `data` is the ethtool structure its `cmd` (set by the
/// caller) reads and fills in, so it must be that command's full structure.
pub(crate) fn ethtool<T>(name: &str, data: &mut T) -> Result<(), IfaceError> {
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_data = (data as *mut T).cast();
    ioctl("SIOCETHTOOL", libc::SIOCETHTOOL, name, &mut req)
}

/// Whether TCP segmentation offload is on for the interface (`ETHTOOL_GTSO`: the device's
/// `NETIF_F_TSO`; `ethtool -K IF tso off` clears it together with TSO6). A packet socket
/// cannot send a TCP super-frame through an interface without it: the kernel drops it
/// (`packet_direct_xmit` refuses to segment), so such a port must get segments.
pub fn tso_enabled(name: &str) -> Result<bool, IfaceError> {
    /// `struct ethtool_value`.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_GTSO: u32 = 0x1e;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GTSO,
        data: 0,
    };
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // `value` lives until after the call; SIOCETHTOOL reads `cmd` and writes `data` through it.
    ioctl("SIOCETHTOOL", libc::SIOCETHTOOL, name, &mut req)?;
    Ok(value.data != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_bad_names_are_refused() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(mtu("lo").unwrap() >= 1500);
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert!(matches!(
            ifindex("this-name-is-too-long"),
            Err(IfaceError::InvalidName(_))
        ));
        assert!(matches!(ifindex(""), Err(IfaceError::InvalidName(_))));
        assert!(tso_enabled("nosuchif0").is_err());
        let e = ifindex("nosuchif0").unwrap_err();
        assert!(e.to_string().contains("nosuchif0"), "{e}");
    }
}
