//! Keeping the host's network stack off a switch port's received frames.
//!
//! An AF_PACKET port taps frames in `__netif_receive_skb_core`; after the taps the kernel goes
//! on with the same frame: tc ingress, then the protocol handlers (`ip_rcv`: route lookup, and
//! for a port with no address of its own an "unreachable" route allocated and freed through RCU
//! per frame). On a port the switch owns, that work is wasted, and it runs in the receive
//! softirq, on the forwarder's core when RPS steers the port there: under overload it is what
//! starves the switch (the frames it refuses at a full ring still went through the stack).
//!
//! [`HostRxDrop::attach`] puts a two-instruction `cls_bpf` program (direct action,
//! `TC_ACT_SHOT`) on the interface's clsact ingress hook: frames end right after the packet
//! taps, as on a Linux bridge port. Detached (filter removed, the clsact qdisc too if it was
//! created here) when dropped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `TC_H_CLSACT` (= `TC_H_INGRESS`): the clsact qdisc's parent.
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
/// The clsact qdisc's handle, `TC_H_MAKE(TC_H_CLSACT, 0)`.
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
/// The ingress hook of clsact, `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)`.
const CLSACT_INGRESS: u32 = 0xFFFF_FFF2;
/// Our filter's priority: last (a larger number runs later), after anyone else's filters.
const FILTER_PRIO: u32 = 0xFFF0;
const FILTER_HANDLE: u32 = 1;
const FILTER_NAME: &str = "vswitch-host-rx-drop";

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `TC_ACT_SHOT`: drop.
const TC_ACT_SHOT: i32 = 2;

/// The drop filter on one interface's ingress; removed on drop.
#[derive(Debug)]
pub struct HostRxDrop {
    _filter: IngressFilter,
}

impl HostRxDrop {
    /// Drops every frame the host stack would receive on `ifindex` after the packet taps
    /// (the switch's port socket still gets them). Needs `CAP_NET_ADMIN` and `CAP_BPF`.
    pub fn attach(ifindex: u32) -> io::Result<Self> {
        let prog = load_prog(&[insn(0xb7, 0, TC_ACT_SHOT), EXIT], b"vsw_host_rx")?;
        IngressFilter::attach(ifindex, &prog, FILTER_NAME).map(|f| Self { _filter: f })
    }
}

/// Our `cls_bpf` program (direct action) on one interface's clsact ingress hook; removed
/// (with the clsact qdisc, if it was created here) on drop.
#[derive(Debug)]
pub struct IngressFilter {
    ifindex: u32,
    /// The clsact qdisc did not exist before: remove it with the filter.
    own_qdisc: bool,
}

/// `BPF_FUNC_redirect_neigh` (5.10+): to another interface's egress, the L2 header from the
/// FIB and neighbour tables.
const BPF_FUNC_REDIRECT_NEIGH: i32 = 152;
/// `BPF_JMP | BPF_EXIT`.
const EXIT: u64 = insn_const(0x95, 0, 0);

impl IngressFilter {
    /// Sends every frame received on `ifindex` out of `to_ifindex` instead, with an Ethernet
    /// header for the next hop of its IP destination (`bpf_redirect_neigh`: route and
    /// neighbour lookup, ARP when needed), as if the host had routed it there.
    pub fn redirect_neigh(ifindex: u32, to_ifindex: u32) -> io::Result<Self> {
        let prog = load_prog(
            &[
                insn(0xb7, 1, to_ifindex as i32),       // r1 = ifindex
                insn(0xb7, 2, 0),                       // r2 = NULL (params: route lookup)
                insn(0xb7, 3, 0),                       // r3 = 0 (plen)
                insn(0xb7, 4, 0),                       // r4 = 0 (flags)
                insn(0x85, 0, BPF_FUNC_REDIRECT_NEIGH), // r0 = TC_ACT_REDIRECT or SHOT
                EXIT,
            ],
            b"vsw_tnl_gso",
        )?;
        Self::attach(ifindex, &prog, "vswitch-tunnel-gso")
    }

    fn attach(ifindex: u32, prog: &OwnedFd, name: &str) -> io::Result<Self> {
        let nl = Netlink::open()?;
        let own_qdisc = match nl.request(
            RTM_NEWQDISC,
            libc::NLM_F_CREATE | libc::NLM_F_EXCL,
            &tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0),
            &[Attr::Str(TCA_KIND, "clsact")],
        ) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => return Err(e),
        };
        let me = Self { ifindex, own_qdisc };
        // Without NLM_F_EXCL: a filter left by a switch that was killed is taken over.
        nl.request(
            RTM_NEWTFILTER,
            libc::NLM_F_CREATE,
            &me.filter_msg(),
            &[
                Attr::Str(TCA_KIND, "bpf"),
                Attr::Nest(
                    TCA_OPTIONS,
                    vec![
                        Attr::U32(TCA_BPF_FD, prog.as_raw_fd() as u32),
                        Attr::Str(TCA_BPF_NAME, name),
                        Attr::U32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT),
                    ],
                ),
            ],
        )?;
        // The filter holds its own reference to the program: `prog` may close now.
        Ok(me)
    }

    fn filter_msg(&self) -> [u8; 20] {
        let info = (FILTER_PRIO << 16) | u32::from((libc::ETH_P_ALL as u16).to_be());
        tcmsg(self.ifindex, FILTER_HANDLE, CLSACT_INGRESS, info)
    }

    fn detach(&self) -> io::Result<()> {
        let nl = Netlink::open()?;
        if self.own_qdisc {
            // Removing the qdisc removes its filters.
            nl.request(
                RTM_DELQDISC,
                0,
                &tcmsg(self.ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0),
                &[],
            )
        } else {
            nl.request(
                RTM_DELTFILTER,
                0,
                &self.filter_msg(),
                &[Attr::Str(TCA_KIND, "bpf")],
            )
        }
    }
}

impl Drop for IngressFilter {
    fn drop(&mut self) {
        // Gone with the interface (ENODEV/ENOENT/EINVAL) is fine: so is the filter.
        let _ = self.detach();
    }
}

/// `struct tcmsg`: family, padding, ifindex, handle, parent, info (native byte order).
fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    m[8..12].copy_from_slice(&handle.to_ne_bytes());
    m[12..16].copy_from_slice(&parent.to_ne_bytes());
    m[16..20].copy_from_slice(&info.to_ne_bytes());
    m
}

enum Attr<'a> {
    Str(u16, &'a str),
    U32(u16, u32),
    Nest(u16, Vec<Attr<'a>>),
}

impl Attr<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let kind = match self {
            Attr::Str(t, s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
                *t
            }
            Attr::U32(t, v) => {
                out.extend_from_slice(&v.to_ne_bytes());
                *t
            }
            Attr::Nest(t, inner) => {
                inner.iter().for_each(|a| a.put(out));
                *t
            }
        };
        let len = (out.len() - start) as u16;
        out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        out[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
    }
}

/// A route netlink socket for one request at a time.
struct Netlink(OwnedFd);

impl Netlink {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one request with `NLM_F_ACK` and waits for the kernel's answer.
    fn request(&self, kind: u16, flags: i32, body: &[u8], attrs: &[Attr]) -> io::Result<()> {
        let mut msg = vec![0u8; 16];
        msg.extend_from_slice(body);
        attrs.iter().for_each(|a| a.put(&mut msg));
        let len = msg.len() as u32;
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | flags) as u16;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&kind.to_ne_bytes());
        msg[6..8].copy_from_slice(&flags.to_ne_bytes());
        msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
        // SAFETY: sockaddr_nl is plain data; all-zero (pid 0 = the kernel) is valid.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and kernel are live for the call and of the stated lengths.
        let rc = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is writable for its length during the call.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let got = &buf[..n as usize];
            let mut at = 0;
            while at + 16 <= got.len() {
                let mlen = u32::from_ne_bytes(got[at..at + 4].try_into().unwrap()) as usize;
                let mtype = u16::from_ne_bytes(got[at + 4..at + 6].try_into().unwrap());
                if mtype == libc::NLMSG_ERROR as u16 && at + 20 <= got.len() {
                    let err = i32::from_ne_bytes(got[at + 16..at + 20].try_into().unwrap());
                    return if err == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-err))
                    };
                }
                if mlen < 16 {
                    break;
                }
                at += mlen.next_multiple_of(4);
            }
        }
    }
}

/// One `struct bpf_insn`: code, dst_reg:4 | src_reg:4, off (i16), imm (i32).
const fn insn_const(code: u8, dst: u8, imm: i32) -> u64 {
    let i = imm.to_ne_bytes();
    u64::from_ne_bytes([code, dst, 0, 0, i[0], i[1], i[2], i[3]])
}

fn insn(code: u8, dst: u8, imm: i32) -> u64 {
    insn_const(code, dst, imm)
}

/// Loads `prog` as a `BPF_PROG_TYPE_SCHED_CLS` program named `name` (at most 15 bytes).
fn load_prog(prog: &[u64], name: &[u8]) -> io::Result<OwnedFd> {
    load_prog_typed(BPF_PROG_TYPE_SCHED_CLS, 0, prog, name)
}

/// Loads `prog` as a program of `prog_type` (and `expected_attach_type`) named `name`.
pub(crate) fn load_prog_typed(
    prog_type: u32,
    expected_attach_type: u32,
    prog: &[u64],
    name: &[u8],
) -> io::Result<OwnedFd> {
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD, up to prog_name; the rest stays zero.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
        rest: [u8; 56],
    }
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name[..n]);
    let attr = ProgLoad {
        prog_type,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type,
        rest: [0; 56],
    };
    // SAFETY: attr is a valid bpf_attr prefix (zero-filled beyond the fields set) that lives
    // for the call; insns and license point at live memory of the stated sizes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the interface carries an address the host uses: IPv4, or IPv6 other than
/// link-local. Such a port (an uplink with the node's address) keeps its host stack.
pub fn has_host_address(ifname: &str) -> io::Result<bool> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = false;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and starts with sa_family.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            found = true;
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let b = a.sin6_addr.s6_addr;
            if !(b[0] == 0xfe && b[1] & 0xc0 == 0x80) {
                found = true;
            }
        }
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let mut out = Vec::new();
        Attr::Nest(2, vec![Attr::Str(7, "ab"), Attr::U32(6, 5)]).put(&mut out);
        // nest header 4 + "ab\0" attr (4 + 3, padded to 8) + u32 attr (8).
        assert_eq!(out.len(), 20);
        assert_eq!(u16::from_ne_bytes([out[0], out[1]]), 20);
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), 7);
        assert_eq!(&out[8..11], b"ab\0");
        assert_eq!(u16::from_ne_bytes([out[12], out[13]]), 8);
    }
}
