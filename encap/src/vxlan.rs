//! VXLAN (RFC 7348) encapsulation with a per-tunnel precomputed outer header, and decapsulation.
//!
//! Encap: [`VxlanTunnel::new`] builds the 50-byte outer header (Ethernet, IPv4 with DF and
//! TTL 64, UDP to port 4789, VXLAN with the I flag) once per tunnel, with the IPv4 header sum
//! taken over everything but the total length. Per packet, [`VxlanTunnel::encap`] copies it into
//! the headroom in front of the inner frame and patches the IPv4 total length and checksum
//! (one add and fold), the UDP length and the UDP source port (from the inner flow hash, in the
//! ephemeral range 49152..=65535 as RFC 7348 recommends). The UDP checksum is 0, allowed for
//! IPv4 and what Linux sends by default.
//!
//! The address type is `IpAddr` so an IPv6 underlay can be added without an API change; only
//! IPv4 is implemented now ([`VxlanError::Ipv6Underlay`]).

use core::net::{IpAddr, Ipv4Addr};
use core::ops::Range;

use crate::FlowKey;
use crate::checksum;
use crate::wire::vxlan::{FLAG_VNI_VALID, VNI_MAX};

/// IANA-assigned VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
pub const OUTER_HEADER_LEN: usize = 50;
const ETH_LEN: usize = 14;
const IP_AT: usize = ETH_LEN;
const UDP_AT: usize = IP_AT + 20;
const VXLAN_AT: usize = UDP_AT + 8;
const _: () = assert!(VXLAN_AT + 8 == OUTER_HEADER_LEN);
/// Largest inner frame that fits in an IPv4 total length.
pub const MAX_INNER_LEN: usize = u16::MAX as usize - (OUTER_HEADER_LEN - ETH_LEN);

/// Why a tunnel could not be set up, or a packet encapsulated or decapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    #[error("IPv6 underlay is not implemented yet: configure IPv4 tunnel endpoints")]
    Ipv6Underlay,
    #[error("tunnel source and destination are of different IP families")]
    MixedFamilies,
    #[error("VNI {0} does not fit in 24 bits")]
    VniOutOfRange(u32),
    #[error("not enough headroom for the outer header: need {need} bytes, have {have}")]
    NoHeadroom { need: usize, have: usize },
    #[error("inner frame range {start}..{end} is not inside the buffer")]
    BadInnerRange { start: usize, end: usize },
    #[error("inner frame of {0} bytes is too long for an IPv4 outer header")]
    InnerTooLong(usize),
    #[error("frame too short for outer Ethernet/IPv4/UDP/VXLAN headers")]
    Short,
    #[error("outer EtherType {0:#06x} is not IPv4")]
    NotIpv4(u16),
    #[error("outer IPv4 header is invalid (version, IHL or total length)")]
    BadOuterIpv4,
    #[error("outer IPv4 packet is a fragment: reassembly is not supported")]
    OuterFragment,
    #[error("outer IP protocol {0} is not UDP")]
    NotUdp(u8),
    #[error("UDP destination port {0} is not the VXLAN port")]
    WrongPort(u16),
    #[error("UDP length is below the VXLAN header or beyond the IP packet")]
    BadUdpLength,
    #[error("VXLAN flags {0:#04x} do not have the I (VNI valid) bit set")]
    BadFlags(u8),
    #[error("inner frame shorter than an Ethernet header")]
    InnerTooShort,
}

/// What a tunnel port is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the remote node's, or the gateway's).
    pub dst_mac: [u8; 6],
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub vni: u32,
    pub dst_port: u16,
    pub ttl: u8,
    pub tos: u8,
}

impl TunnelConfig {
    /// A config with the defaults: UDP port 4789, TTL 64, TOS 0.
    pub fn new(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src_ip: IpAddr,
        dst_ip: IpAddr,
        vni: u32,
    ) -> Self {
        TunnelConfig {
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            vni,
            dst_port: VXLAN_PORT,
            ttl: 64,
            tos: 0,
        }
    }
}

/// A tunnel with its outer header precomputed.
#[derive(Clone, Debug)]
pub struct VxlanTunnel {
    header: [u8; OUTER_HEADER_LEN],
    /// Un-complemented sum of the IPv4 header with total length and checksum zero.
    ip_sum_base: u32,
    config: TunnelConfig,
}

/// The UDP source port for a flow hash: the ephemeral range 49152..=65535.
#[inline]
pub fn source_port(flow_hash: u32) -> u16 {
    let h = flow_hash ^ (flow_hash >> 16);
    0xc000 | (h as u16 & 0x3fff)
}

impl VxlanTunnel {
    pub fn new(config: TunnelConfig) -> Result<VxlanTunnel, VxlanError> {
        let (src, dst) = match (config.src_ip, config.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (s, d),
            (IpAddr::V6(_), IpAddr::V6(_)) => return Err(VxlanError::Ipv6Underlay),
            _ => return Err(VxlanError::MixedFamilies),
        };
        if config.vni > VNI_MAX {
            return Err(VxlanError::VniOutOfRange(config.vni));
        }
        let mut h = [0u8; OUTER_HEADER_LEN];
        h[0..6].copy_from_slice(&config.dst_mac);
        h[6..12].copy_from_slice(&config.src_mac);
        h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut h[IP_AT..UDP_AT];
        ip[0] = 0x45;
        ip[1] = config.tos;
        // total length [2..4], ident [4..6] = 0: with DF set the ident is not used (RFC 6864).
        ip[6] = 0x40; // DF
        ip[8] = config.ttl;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let ip_sum_base = checksum::sum(0, ip);
        let udp = &mut h[UDP_AT..VXLAN_AT];
        udp[2..4].copy_from_slice(&config.dst_port.to_be_bytes());
        // source port, length patched per packet; checksum 0.
        let vx = &mut h[VXLAN_AT..];
        vx[0] = FLAG_VNI_VALID;
        vx[4..8].copy_from_slice(&(config.vni << 8).to_be_bytes());
        Ok(VxlanTunnel {
            header: h,
            ip_sum_base,
            config,
        })
    }

    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    /// Bytes of headroom the encapsulation needs in front of the inner frame.
    pub const fn header_len(&self) -> usize {
        OUTER_HEADER_LEN
    }

    /// Writes the outer header for an inner frame of `inner_len` bytes into `out`.
    #[inline]
    pub fn write_header(
        &self,
        out: &mut [u8; OUTER_HEADER_LEN],
        inner_len: usize,
        flow_hash: u32,
    ) -> Result<(), VxlanError> {
        if inner_len > MAX_INNER_LEN {
            return Err(VxlanError::InnerTooLong(inner_len));
        }
        *out = self.header;
        let ip_total = (inner_len + OUTER_HEADER_LEN - ETH_LEN) as u16;
        let udp_len = ip_total - 20;
        out[IP_AT + 2..IP_AT + 4].copy_from_slice(&ip_total.to_be_bytes());
        let csum = !checksum::fold(self.ip_sum_base + ip_total as u32);
        out[IP_AT + 10..IP_AT + 12].copy_from_slice(&csum.to_be_bytes());
        out[UDP_AT..UDP_AT + 2].copy_from_slice(&source_port(flow_hash).to_be_bytes());
        out[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&udp_len.to_be_bytes());
        Ok(())
    }

    /// Encapsulates the inner frame at `buf[inner]` in place: writes the outer header into the
    /// 50 bytes of headroom before `inner.start` and returns the range of the whole outer frame.
    #[inline]
    pub fn encap(
        &self,
        buf: &mut [u8],
        inner: Range<usize>,
        flow_hash: u32,
    ) -> Result<Range<usize>, VxlanError> {
        if inner.start > inner.end || inner.end > buf.len() {
            return Err(VxlanError::BadInnerRange {
                start: inner.start,
                end: inner.end,
            });
        }
        let Some(start) = inner.start.checked_sub(OUTER_HEADER_LEN) else {
            return Err(VxlanError::NoHeadroom {
                need: OUTER_HEADER_LEN,
                have: inner.start,
            });
        };
        let out: &mut [u8; OUTER_HEADER_LEN] =
            (&mut buf[start..inner.start])
                .try_into()
                .map_err(|_| VxlanError::NoHeadroom {
                    need: OUTER_HEADER_LEN,
                    have: inner.start,
                })?;
        self.write_header(out, inner.end - inner.start, flow_hash)?;
        Ok(start..inner.end)
    }
}

/// What decapsulation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapped {
    /// The inner Ethernet frame within the outer frame.
    pub inner: Range<usize>,
    pub vni: u32,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    pub outer_ttl: u8,
    pub outer_tos: u8,
    pub udp_src_port: u16,
}

impl Decapped {
    /// Sets the tunnel metadata of a flow key: `tun_id` = VNI, `tun_src`/`tun_dst` = outer
    /// IPv4 addresses (host order).
    pub fn set_tunnel_metadata(&self, key: &mut FlowKey) {
        key.tun_id = self.vni as u64;
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (self.outer_src, self.outer_dst) {
            key.tun_src = s.into();
            key.tun_dst = d.into();
        }
    }
}

#[inline(always)]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks and strips the outer Ethernet (up to two VLAN tags) / IPv4 / UDP / VXLAN headers of a
/// frame received for UDP port `udp_port`. The outer IPv4 header checksum is not verified (the
/// kernel or NIC has, for frames from a UDP socket or with RX checksum offload).
pub fn decap(frame: &[u8], udp_port: u16) -> Result<Decapped, VxlanError> {
    if frame.len() < OUTER_HEADER_LEN {
        return Err(VxlanError::Short);
    }
    let mut off = 12;
    let mut ethertype = rd16(frame, off);
    let mut tags = 0;
    while (ethertype == 0x8100 || ethertype == 0x88a8) && tags < 2 {
        off += 4;
        if frame.len() < off + 2 {
            return Err(VxlanError::Short);
        }
        ethertype = rd16(frame, off);
        tags += 1;
    }
    if ethertype != 0x0800 {
        return Err(VxlanError::NotIpv4(ethertype));
    }
    let ip_at = off + 2;
    if frame.len() < ip_at + 20 {
        return Err(VxlanError::Short);
    }
    let ip = &frame[ip_at..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = rd16(ip, 2) as usize;
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl {
        return Err(VxlanError::BadOuterIpv4);
    }
    if ip.len() < total {
        return Err(VxlanError::Short);
    }
    if rd16(ip, 6) & 0x3fff != 0 {
        return Err(VxlanError::OuterFragment);
    }
    if ip[9] != 17 {
        return Err(VxlanError::NotUdp(ip[9]));
    }
    let ip = &ip[..total];
    if ip.len() < ihl + 16 {
        return Err(VxlanError::Short);
    }
    let udp = &ip[ihl..];
    let dport = rd16(udp, 2);
    if dport != udp_port {
        return Err(VxlanError::WrongPort(dport));
    }
    let udp_len = rd16(udp, 4) as usize;
    if udp_len < 16 || udp_len > udp.len() {
        return Err(VxlanError::BadUdpLength);
    }
    let flags = udp[8];
    if flags & FLAG_VNI_VALID == 0 {
        return Err(VxlanError::BadFlags(flags));
    }
    let vni = u32::from_be_bytes([udp[12], udp[13], udp[14], udp[15]]) >> 8;
    let inner_start = ip_at + ihl + 16;
    let inner_end = ip_at + ihl + udp_len;
    if inner_end - inner_start < ETH_LEN {
        return Err(VxlanError::InnerTooShort);
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Ok(Decapped {
        inner: inner_start..inner_end,
        vni,
        outer_src: IpAddr::V4(src),
        outer_dst: IpAddr::V4(dst),
        outer_ttl: ip[8],
        outer_tos: ip[1],
        udp_src_port: rd16(udp, 0),
    })
}

#[cfg(test)]
mod tests;
