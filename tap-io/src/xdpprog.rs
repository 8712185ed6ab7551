//! The XDP side of an AF_XDP port: an `XSKMAP` holding the port's socket, a six-instruction
//! XDP program that redirects every frame into it (`bpf_redirect_map(&xsks,
//! ctx->rx_queue_index, XDP_DROP)`), and a `bpf_link` attaching the program to the interface in
//! native (driver) mode. The link is a file descriptor: the program leaves the interface when
//! the link closes, also when the switch is killed, so nothing is left behind.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of an XDP link.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: the driver runs the program (veth: in its NAPI poll, on the CPU of
/// the sender), never the generic hook in the receive path.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_DROP`: what `bpf_redirect_map` returns when the queue has no socket in the map.
const XDP_DROP: i32 = 1;
/// `BPF_PSEUDO_MAP_FD`: the 64-bit immediate is a map file descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE: i16 = 16;

/// One `struct bpf_insn`: code, dst_reg:4 | src_reg:4, off, imm.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let o = off.to_ne_bytes();
    let i = imm.to_ne_bytes();
    let regs = if cfg!(target_endian = "little") {
        (src << 4) | (dst & 0xf)
    } else {
        (dst << 4) | (src & 0xf)
    };
    u64::from_ne_bytes([code, regs, o[0], o[1], i[0], i[1], i[2], i[3]])
}

/// The redirect program for the map `map_fd`.
fn redirect_prog(map_fd: i32) -> [u64; 6] {
    [
        insn(0x61, 2, 1, XDP_MD_RX_QUEUE, 0), // r2 = ctx->rx_queue_index (u32 load)
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = &xsks (ld_imm64, 2 slots)
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 3, 0, 0, XDP_DROP), // r3 = fallback action
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // r0 = bpf_redirect_map(r1, r2, r3)
        insn(0x95, 0, 0, 0, 0),        // exit
    ]
}

fn bpf(cmd: libc::c_long, attr: &[u8]) -> io::Result<i64> {
    // SAFETY: attr is a zero-padded `union bpf_attr` prefix of the stated size that lives for
    // the call; the pointers inside it (if any) point at live memory set up by the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn fd_of(rc: i64) -> OwnedFd {
    // SAFETY: the bpf call returned a new file descriptor that nobody else owns.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// Writes `words` (native-endian u32s, then u64s) into a zeroed 128-byte attribute block.
struct Attr([u8; 128], usize);

impl Attr {
    fn new() -> Self {
        Attr([0; 128], 0)
    }
    fn u32(mut self, v: u32) -> Self {
        self.0[self.1..self.1 + 4].copy_from_slice(&v.to_ne_bytes());
        self.1 += 4;
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.1 = self.1.next_multiple_of(8);
        self.0[self.1..self.1 + 8].copy_from_slice(&v.to_ne_bytes());
        self.1 += 8;
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0[self.1..self.1 + b.len()].copy_from_slice(b);
        self.1 += b.len();
        self
    }
}

/// The program, its map and the link attaching it; detached when dropped.
#[derive(Debug)]
pub(crate) struct XdpRedirect {
    // Declared first: the link goes (and the program leaves the interface) before the map.
    _link: OwnedFd,
    _map: OwnedFd,
}

/// Why attaching failed, with the step.
#[derive(Debug)]
pub(crate) struct AttachError {
    pub what: &'static str,
    pub source: io::Error,
}

impl XdpRedirect {
    /// Redirects every frame received on `ifindex` (one queue, 0) into the AF_XDP socket
    /// `xsk_fd`. Needs `CAP_BPF` and `CAP_NET_ADMIN`; the driver must run XDP natively.
    pub fn attach(ifindex: u32, xsk_fd: i32) -> Result<Self, AttachError> {
        let err = |what| move |source| AttachError { what, source };
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(b"vsw_xsks");
        // map_type, key_size, value_size, max_entries, map_flags, inner_map_fd, numa_node, name
        let attr = Attr::new()
            .u32(BPF_MAP_TYPE_XSKMAP)
            .u32(4)
            .u32(4)
            .u32(1)
            .u32(0)
            .u32(0)
            .u32(0)
            .bytes(&name);
        let map =
            fd_of(bpf(BPF_MAP_CREATE, &attr.0[..attr.1]).map_err(err("BPF_MAP_CREATE (XSKMAP)"))?);
        let key: u32 = 0;
        let value: u32 = xsk_fd as u32;
        // map_fd, (pad), key pointer, value pointer, flags
        let attr = Attr::new()
            .u32(map.as_raw_fd() as u32)
            .u64(&key as *const u32 as u64)
            .u64(&value as *const u32 as u64)
            .u64(0);
        bpf(BPF_MAP_UPDATE_ELEM, &attr.0[..attr.1]).map_err(err("BPF_MAP_UPDATE_ELEM (XSKMAP)"))?;
        let prog = redirect_prog(map.as_raw_fd());
        let prog =
            crate::hostrx::load_prog_typed(BPF_PROG_TYPE_XDP, BPF_XDP, &prog, b"vsw_xsk_redir")
                .map_err(err("BPF_PROG_LOAD (XDP)"))?;
        // prog_fd, target_ifindex, attach_type, flags
        let attr = Attr::new()
            .u32(prog.as_raw_fd() as u32)
            .u32(ifindex)
            .u32(BPF_XDP)
            .u32(XDP_FLAGS_DRV_MODE);
        let link = fd_of(
            bpf(BPF_LINK_CREATE, &attr.0[..attr.1]).map_err(err("BPF_LINK_CREATE (native XDP)"))?,
        );
        // The link holds the program, the program the map: `prog` may close now.
        Ok(Self {
            _link: link,
            _map: map,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_registers_and_offsets() {
        let p = redirect_prog(7);
        let b = p[0].to_ne_bytes();
        assert_eq!(
            (b[0], b[1], i16::from_ne_bytes([b[2], b[3]])),
            (0x61, 0x12, 16)
        );
        let b = p[1].to_ne_bytes();
        assert_eq!(
            (b[0], b[1], i32::from_ne_bytes([b[4], b[5], b[6], b[7]])),
            (0x18, 0x11, 7)
        );
        let b = p[4].to_ne_bytes();
        assert_eq!(
            (b[0], i32::from_ne_bytes([b[4], b[5], b[6], b[7]])),
            (0x85, 51)
        );
    }

    #[test]
    fn attribute_words_are_aligned() {
        let a = Attr::new().u32(1).u64(2);
        assert_eq!(a.1, 16);
        assert_eq!(u64::from_ne_bytes(a.0[8..16].try_into().unwrap()), 2);
    }
}
