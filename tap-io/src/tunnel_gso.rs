//! Whole tunnel super-frames to the underlay: UDP-tunnel GSO through a TAP.
//!
//! A UDP socket cannot carry an encapsulated TSO super-frame (`UDP_SEGMENT` cuts one payload
//! into equal datagrams, so every inner segment would need its own headers and checksum). The
//! kernel (6.17+) takes one only from TUN/TAP: with `TUNSETVNETHDRSZ` ≥ 24 and
//! `TUNSETOFFLOAD` including `TUN_F_UDP_TUNNEL_GSO`, a write may start with the
//! `virtio_net_hdr_v1_hash_tunnel` header (`gso_type` TCPV4/TCPV6 |
//! `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`, `NEEDS_CSUM` at the inner TCP checksum, the outer
//! UDP and inner IP offsets) in front of `[Ethernet | outer IPv4 | UDP | tunnel header |
//! inner super-frame]`. The TAP's ingress is redirected to the underlay interface's egress
//! (`cls_bpf` + `bpf_redirect_neigh`, so the route and ARP are the kernel's), where the
//! skb stays one super-frame as far as the underlay allows: a NIC (or the stack's software
//! GSO in front of it) segments it; over a veth it reaches the peer node whole.
//!
//! [`TunnelGsoTx::open`] checks all of it at port open (TAP, offload flag, BPF program,
//! filter) and fails with the reason, so that the caller keeps the socket path.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::buf::{GsoKind, PacketBuf};
use crate::hostrx::IngressFilter;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
/// include/uapi/linux/if_tun.h (6.17): "I can handle TSO/USO for UDP tunneled packets".
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;

/// `sizeof(struct virtio_net_hdr_v1_hash_tunnel)`: `virtio_net_hdr_v1` (12), hash value
/// (4), hash report (2), padding (2), `outer_th_offset` (2), `inner_nh_offset` (2).
pub const TUNNEL_VNET_HDR_LEN: usize = 24;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// Outer Ethernet + IPv4 + UDP.
const OUTER_LEN: usize = 14 + 20 + 8;

/// The TAP and its redirect; shared by the transmit handles of all threads.
#[derive(Debug)]
struct Device {
    fd: OwnedFd,
    /// Declared after `fd`: the filter goes first (the TAP vanishes with its descriptor).
    _redirect: IngressFilter,
    name: String,
    /// The TAP's own address: the outer destination MAC, so the TAP takes the frame as
    /// addressed to it (the redirect rewrites the Ethernet header for the next hop).
    mac: [u8; 6],
}

/// Sends encapsulated frames through the TAP; see the module docs.
#[derive(Debug, Clone)]
pub struct TunnelGsoTx {
    dev: Arc<Device>,
    local: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    ip_id: u16,
}

impl TunnelGsoTx {
    /// Creates TAP `tap_name` in the current network namespace, takes the tunnel offload on
    /// it and redirects its ingress to `underlay` (the interface that owns `local`). Fails
    /// where the kernel has no UDP-tunnel GSO for TAP (before 6.17) or no `cls_bpf` /
    /// `bpf_redirect_neigh`.
    pub fn open(
        tap_name: &str,
        underlay: &str,
        local: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
    ) -> io::Result<Self> {
        if tap_name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TAP name too long",
            ));
        }
        let path = c"/dev/net/tun";
        // SAFETY: plain open(2) of a NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw was just returned by open(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(tap_name.bytes()) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let hdr = TUNNEL_VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, live across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &hdr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UDP_TUNNEL_GSO;
        // SAFETY: TUNSETOFFLOAD takes the flags as the integer argument itself. A kernel
        // without the tunnel flag refuses the whole set (EINVAL).
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let err = |e: crate::iface::IfaceError| io::Error::other(e.to_string());
        // No IPv6 on the TAP: the host must not send anything into it (best effort).
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{tap_name}/disable_ipv6"),
            "1",
        );
        crate::iface::set_up(tap_name, true).map_err(err)?;
        let mac = crate::iface::mac(tap_name).map_err(err)?;
        let tap_index = crate::iface::ifindex(tap_name).map_err(err)?;
        let to = crate::iface::ifindex(underlay).map_err(err)?;
        let redirect = IngressFilter::redirect_neigh(tap_index, to)?;
        Ok(TunnelGsoTx {
            dev: Arc::new(Device {
                fd,
                _redirect: redirect,
                name: tap_name.to_owned(),
                mac,
            }),
            local,
            src_port,
            dst_port,
            ip_id: 0,
        })
    }

    /// The TAP's name.
    pub fn tap_name(&self) -> &str {
        &self.dev.name
    }

    /// Whether `pkt` (the tunnel header already pushed) fits one outer IPv4 packet.
    pub fn fits(pkt: &PacketBuf) -> bool {
        pkt.len() + 20 + 8 <= usize::from(u16::MAX)
            && pkt.headroom() >= TUNNEL_VNET_HDR_LEN + OUTER_LEN
    }

    /// Sends `pkt` — `[tunnel header (tunnel_len bytes) | inner frame]` — to `dst` from UDP
    /// port `src_port` (`None`: the tunnel's own) with the outer TOS byte `tos`: a GSO super-frame (`meta.gso`) as one tunnel GSO skb (each
    /// segment gets the same outer TOS), anything else as one plain datagram (the inner
    /// checksum must be complete then). The outer headers go into the headroom
    /// ([`TunnelGsoTx::fits`]); the UDP checksum is 0 (VXLAN over IPv4 may do without).
    pub fn send(
        &mut self,
        pkt: &mut PacketBuf,
        tunnel_len: usize,
        dst: Ipv4Addr,
        src_port: Option<u16>,
        tos: u8,
    ) -> io::Result<()> {
        let gso = pkt.meta.gso;
        let inner_nh_rel = match gso {
            Some(g) => {
                let Some(off) = prepare_inner(&mut pkt.data_mut()[tunnel_len..], g.kind) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not a TCP super-frame",
                    ));
                };
                Some((g, off))
            }
            None => None,
        };
        let udp_len = 8 + pkt.len();
        let ip_len = 20 + udp_len;
        let Ok(h) = pkt.push_front(TUNNEL_VNET_HDR_LEN + OUTER_LEN) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no headroom"));
        };
        let (vnet, outer) = h.split_at_mut(TUNNEL_VNET_HDR_LEN);
        vnet.fill(0);
        if let Some((g, (l3, l4, l4_hdr))) = inner_nh_rel {
            let inner0 = OUTER_LEN + tunnel_len;
            let kind = match g.kind {
                GsoKind::Tcp6 => VIRTIO_NET_HDR_GSO_TCPV6,
                _ => VIRTIO_NET_HDR_GSO_TCPV4,
            };
            vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            vnet[1] = kind
                | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
                | if g.ecn { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
            let le = |v: usize| (v as u16).to_le_bytes();
            vnet[2..4].copy_from_slice(&le(inner0 + l4 + l4_hdr)); // hdr_len: through inner TCP
            vnet[4..6].copy_from_slice(&g.size.to_le_bytes());
            vnet[6..8].copy_from_slice(&le(inner0 + l4)); // csum_start: inner TCP
            vnet[8..10].copy_from_slice(&le(16)); // csum_offset: TCP checksum
            vnet[20..22].copy_from_slice(&le(14 + 20)); // outer_th_offset: outer UDP
            vnet[22..24].copy_from_slice(&le(inner0 + l3)); // inner_nh_offset
        }
        outer[0..6].copy_from_slice(&self.dev.mac);
        outer[6..12].copy_from_slice(&self.dev.mac);
        outer[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut outer[14..34];
        ip[0] = 0x45;
        ip[1] = tos;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, as the socket sends
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].fill(0);
        ip[12..16].copy_from_slice(&self.local.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = !fold(sum16(0, ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let udp = &mut outer[34..42];
        udp[0..2].copy_from_slice(&src_port.unwrap_or(self.src_port).to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        udp[6..8].fill(0);
        let data = pkt.data();
        // SAFETY: data is a live, initialised slice for the call; write(2) only reads it.
        let n = unsafe { libc::write(self.dev.fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        let r = if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        let _ = pkt.pull_front(TUNNEL_VNET_HDR_LEN + OUTER_LEN);
        r
    }
}

/// Checks the inner frame of a TCP super-frame and stores the pseudo-header sum in its TCP
/// checksum field (what `NEEDS_CSUM` asks for, whatever the field held). Returns the inner
/// L3 and L4 offsets and the TCP header length.
fn prepare_inner(f: &mut [u8], kind: GsoKind) -> Option<(usize, usize, usize)> {
    let mut l3 = 14;
    let mut ty = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    if ty == 0x8100 {
        ty = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
        l3 = 18;
    }
    let (l4, pseudo) = match (kind, ty) {
        (GsoKind::Tcp4, 0x0800) => {
            let ihl = usize::from(*f.get(l3)? & 0x0f) * 4;
            if ihl < 20 || f.len() < l3 + ihl || f[l3 + 9] != 6 {
                return None;
            }
            let tot = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
            let l4_len = tot.checked_sub(ihl)?;
            let s = sum16(sum16(0, &f[l3 + 12..l3 + 20]), &[0, 6]);
            (l3 + ihl, s + l4_len as u32)
        }
        (GsoKind::Tcp6, 0x86dd) => {
            if f.len() < l3 + 40 || f[l3 + 6] != 6 {
                return None;
            }
            let l4_len = usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]));
            let s = sum16(sum16(0, &f[l3 + 8..l3 + 40]), &[0, 6]);
            (l3 + 40, s + l4_len as u32)
        }
        _ => return None,
    };
    let tcp_hdr = usize::from(*f.get(l4 + 12)? >> 4) * 4;
    if tcp_hdr < 20 || f.len() < l4 + tcp_hdr {
        return None;
    }
    f[l4 + 16..l4 + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
    Some((l3, l4, tcp_hdr))
}

/// One's-complement sum of big-endian 16-bit words (an odd last byte padded with zero).
pub(crate) fn sum16(mut acc: u32, b: &[u8]) -> u32 {
    let mut c = b.chunks_exact(2);
    for w in &mut c {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = c.remainder() {
        acc += u32::from(*x) << 8;
    }
    acc
}

pub(crate) fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_header_sum_goes_into_the_tcp_checksum() {
        let mut f = vec![0u8; 14 + 20 + 20 + 100];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&140u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[46] = 5 << 4;
        f[50..52].copy_from_slice(&[0xab, 0xcd]);
        assert_eq!(prepare_inner(&mut f, GsoKind::Tcp4), Some((14, 34, 20)));
        // 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 120 (TCP length).
        let want = 0x0a00u16 + 1 + 0x0a00 + 2 + 6 + 120;
        assert_eq!(u16::from_be_bytes([f[50], f[51]]), want);
        // Not TCP: refused, nothing written.
        f[23] = 17;
        assert_eq!(prepare_inner(&mut f, GsoKind::Tcp4), None);
        assert_eq!(prepare_inner(&mut f, GsoKind::Tcp6), None);
    }
}
