//! Test support for network namespaces (always compiled so other crates' tests can use it).
//!
//! - [`require_root`] gates a root-only test: false with a skip message when not root or when
//!   `/dev/net/tun` is missing, and a panic instead when `CI=true` (a skip must not pass CI).
//! - [`unshare_netns`] moves the *calling thread* into a fresh private namespace (loopback up);
//!   it dies with the thread, along with every interface created in it. Commands spawned from
//!   that thread (`ip link add ...` via [`sh`]) run in it too.
//! - [`Netns`] is a named namespace (`ip netns add`) deleted on drop; [`Netns::enter`] runs the
//!   calling thread in it until the returned guard drops; [`run_in`] runs a command in it.
//! - [`RawEth`] is a plain AF_PACKET socket to play the kernel-side peer in tests.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::iface;

/// True when root-only tests can run; otherwise prints why `test_name` is skipped and returns
/// false, or panics when the environment has `CI=true`.
pub fn require_root(test_name: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let why = if euid != 0 {
        Some("not running as root")
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test_name}: {why}; root-only tests must run under CI=true");
            }
            eprintln!("SKIPPED {test_name}: {why} (run as root to test against the kernel)");
            false
        }
    }
}

fn io_err(msg: String) -> io::Error {
    io::Error::other(msg)
}

fn check(what: &str, out: Output) -> io::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io_err(format!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs a shell command in the calling thread's namespace; its stdout, or an error carrying
/// the command and its stderr.
pub fn sh(cmd: &str) -> io::Result<String> {
    check(cmd, Command::new("sh").arg("-c").arg(cmd).output()?)
}

/// Moves the calling thread into a new, private network namespace and brings loopback up.
pub fn unshare_netns() -> io::Result<()> {
    // SAFETY: unshare only changes the calling thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    iface::set_up("lo", true).map_err(|e| io_err(e.to_string()))
}

/// Runs `f` on a new thread inside a fresh private network namespace, and returns its result
/// (a panic in `f` is re-raised here).
pub fn in_private_netns<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let h = std::thread::spawn(move || -> io::Result<T> {
        unshare_netns()?;
        Ok(f())
    });
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A named network namespace, deleted (with its interfaces) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name`, replacing a stale one left by an earlier crashed run.
    pub fn new(name: &str) -> io::Result<Self> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        check(
            "ip netns add",
            Command::new("ip").args(["netns", "add", name]).output()?,
        )?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command in the namespace (see [`run_in`]).
    pub fn run(&self, cmd: &[&str]) -> io::Result<String> {
        run_in(&self.name, cmd)
    }

    /// Runs a shell command line in the namespace.
    pub fn sh(&self, cmd: &str) -> io::Result<String> {
        run_in(&self.name, &["sh", "-c", cmd])
    }

    /// Runs the calling thread in the namespace until the guard drops.
    pub fn enter(&self) -> io::Result<NetnsGuard> {
        enter(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `cmd` (program and arguments) in namespace `ns`; its stdout, or an error with stderr.
pub fn run_in(ns: &str, cmd: &[&str]) -> io::Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()?;
    check(&format!("ip netns exec {ns} {}", cmd.join(" ")), out)
}

/// Restores the thread's previous network namespace on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    previous: OwnedFd,
}

fn setns(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fd refers to an open namespace file; setns only changes the calling thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the calling thread in the named namespace (`/var/run/netns/NAME`) until the guard drops.
pub fn enter(ns: &str) -> io::Result<NetnsGuard> {
    let previous: OwnedFd = File::open("/proc/thread-self/ns/net")?.into();
    let target = File::open(format!("/var/run/netns/{ns}"))
        .map_err(|e| io_err(format!("namespace {ns:?} not found: {e}")))?;
    setns(&target)?;
    Ok(NetnsGuard { previous })
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = setns(&self.previous);
    }
}

/// A plain AF_PACKET socket on one interface, for playing the kernel-side peer in tests.
#[derive(Debug)]
pub struct RawEth {
    fd: OwnedFd,
    ifindex: u32,
}

impl RawEth {
    /// Opens a socket bound to `ifname` that sees every frame (`ETH_P_ALL`) and can send.
    pub fn bind(ifname: &str) -> io::Result<Self> {
        let ifindex = iface::ifindex(ifname).map_err(|e| io_err(e.to_string()))?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as i32,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, ifindex })
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is a readable buffer of frame.len() bytes.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives frames until `want` accepts one or `timeout` passes; frames this socket sent
    /// itself are skipped. Returns the accepted frame, or `None` on timeout.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if r <= 0 {
                continue;
            }
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buf and from are valid writable buffers of the given lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut flen,
                )
            };
            if n < 0 {
                continue;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let f = &buf[..n as usize];
            if want(f) {
                return Ok(Some(f.to_vec()));
            }
        }
    }
}

/// A test Ethernet frame: `dst`, `src`, EtherType 0x88b5 (local experimental), then `len - 14`
/// payload bytes counting up from `seed`.
pub fn test_frame(dst: [u8; 6], src: [u8; 6], seed: u8, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(14));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..len.saturating_sub(14)).map(|i| seed.wrapping_add(i as u8)));
    f
}
