//! A frame builder for tests (here and in other crates): Ethernet, VLAN tags, IPv4 (with
//! options), IPv6, ARP, TCP, UDP, ICMPv4/ICMPv6, with correct lengths and checksums.
//!
//! ```
//! use encap::build::FrameBuilder;
//! let frame = FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
//!     .vlan(100)
//!     .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
//!     .tcp(12345, 80, encap::wire::tcp::flags::SYN)
//!     .payload(b"hello")
//!     .build();
//! assert_eq!(frame.len(), 14 + 4 + 20 + 20 + 5);
//! ```
//!
//! It allocates (a `Vec` per frame): it is for tests and tools, never the fast path.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;

#[derive(Clone, Debug)]
enum Net {
    Raw(u16),
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
    Arp {
        op: u16,
        sha: [u8; 6],
        spa: Ipv4Addr,
        tha: [u8; 6],
        tpa: Ipv4Addr,
    },
}

#[derive(Clone, Debug)]
enum Transport {
    None,
    Tcp { src: u16, dst: u16, flags: u16 },
    Udp { src: u16, dst: u16 },
    Icmp { ty: u8, code: u8 },
}

/// Builds one frame; see the module docs.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    tags: Vec<(u16, u16)>,
    net: Net,
    transport: Transport,
    /// Overrides the IP protocol / next header when no transport is given.
    proto: Option<u8>,
    ttl: u8,
    tos: u8,
    ident: u16,
    dont_frag: bool,
    more_frags: bool,
    frag_offset: u16,
    flow_label: u32,
    ipv4_options: Vec<u8>,
    udp_checksum: bool,
    payload: Vec<u8>,
}

impl FrameBuilder {
    /// Starts a frame from `src` to `dst` (raw EtherType 0 until a network layer is chosen).
    pub fn eth(src: [u8; 6], dst: [u8; 6]) -> FrameBuilder {
        FrameBuilder {
            eth_src: src,
            eth_dst: dst,
            tags: Vec::new(),
            net: Net::Raw(0),
            transport: Transport::None,
            proto: None,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            flow_label: 0,
            ipv4_options: Vec::new(),
            udp_checksum: true,
            payload: Vec::new(),
        }
    }

    /// Adds an 802.1Q tag (TPID 0x8100) after the tags already added.
    pub fn vlan(self, tci: u16) -> FrameBuilder {
        self.tag(0x8100, tci)
    }

    /// Adds a tag with any TPID (0x88a8 for an 802.1ad outer tag).
    pub fn tag(mut self, tpid: u16, tci: u16) -> FrameBuilder {
        self.tags.push((tpid, tci));
        self
    }

    /// A raw EtherType with the payload as is.
    pub fn ethertype(mut self, ethertype: u16) -> FrameBuilder {
        self.net = Net::Raw(ethertype);
        self
    }

    pub fn ipv4(mut self, src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> FrameBuilder {
        self.net = Net::Ipv4 {
            src: src.into(),
            dst: dst.into(),
        };
        self
    }

    pub fn ipv6(mut self, src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>) -> FrameBuilder {
        self.net = Net::Ipv6 {
            src: src.into(),
            dst: dst.into(),
        };
        self
    }

    /// An IPv4-over-Ethernet ARP packet (op 1 request, 2 reply).
    pub fn arp(
        mut self,
        op: u16,
        sha: [u8; 6],
        spa: impl Into<Ipv4Addr>,
        tha: [u8; 6],
        tpa: impl Into<Ipv4Addr>,
    ) -> FrameBuilder {
        self.net = Net::Arp {
            op,
            sha,
            spa: spa.into(),
            tha,
            tpa: tpa.into(),
        };
        self
    }

    pub fn ttl(mut self, ttl: u8) -> FrameBuilder {
        self.ttl = ttl;
        self
    }

    /// IPv4 TOS / IPv6 traffic class byte.
    pub fn tos(mut self, tos: u8) -> FrameBuilder {
        self.tos = tos;
        self
    }

    pub fn ident(mut self, ident: u16) -> FrameBuilder {
        self.ident = ident;
        self
    }

    /// IPv4 fragment fields (offset in bytes, a multiple of 8); clears DF.
    pub fn fragment(mut self, more_frags: bool, offset: u16) -> FrameBuilder {
        self.dont_frag = false;
        self.more_frags = more_frags;
        self.frag_offset = offset;
        self
    }

    pub fn flow_label(mut self, label: u32) -> FrameBuilder {
        self.flow_label = label;
        self
    }

    /// IPv4 options (padded with zeros to a multiple of 4, at most 40 bytes).
    pub fn ipv4_options(mut self, options: &[u8]) -> FrameBuilder {
        self.ipv4_options = options.to_vec();
        while !self.ipv4_options.len().is_multiple_of(4) {
            self.ipv4_options.push(0);
        }
        self.ipv4_options.truncate(40);
        self
    }

    /// IP protocol / next header for a payload without a built transport header.
    pub fn protocol(mut self, proto: u8) -> FrameBuilder {
        self.proto = Some(proto);
        self
    }

    pub fn tcp(mut self, src: u16, dst: u16, flags: u16) -> FrameBuilder {
        self.transport = Transport::Tcp { src, dst, flags };
        self
    }

    pub fn udp(mut self, src: u16, dst: u16) -> FrameBuilder {
        self.transport = Transport::Udp { src, dst };
        self
    }

    /// Sends UDP over IPv4 with checksum 0 ("none").
    pub fn without_udp_checksum(mut self) -> FrameBuilder {
        self.udp_checksum = false;
        self
    }

    /// ICMPv4 over IPv4 or ICMPv6 over IPv6, with a zero rest-of-header.
    pub fn icmp(mut self, ty: u8, code: u8) -> FrameBuilder {
        self.transport = Transport::Icmp { ty, code };
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> FrameBuilder {
        self.payload = payload.to_vec();
        self
    }

    fn ethertype_value(&self) -> u16 {
        match self.net {
            Net::Raw(t) => t,
            Net::Ipv4 { .. } => 0x0800,
            Net::Ipv6 { .. } => 0x86dd,
            Net::Arp { .. } => 0x0806,
        }
    }

    fn transport_bytes(&self) -> (u8, Vec<u8>) {
        let mut seg = Vec::new();
        let v6 = matches!(self.net, Net::Ipv6 { .. });
        let proto = match self.transport {
            Transport::None => self.proto.unwrap_or(253), // 253: "use for experimentation"
            Transport::Tcp { src, dst, flags } => {
                seg.extend_from_slice(&src.to_be_bytes());
                seg.extend_from_slice(&dst.to_be_bytes());
                seg.extend_from_slice(&1u32.to_be_bytes()); // seq
                seg.extend_from_slice(&0u32.to_be_bytes()); // ack
                seg.extend_from_slice(&((5u16 << 12) | (flags & 0x0fff)).to_be_bytes());
                seg.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
                6
            }
            Transport::Udp { src, dst } => {
                seg.extend_from_slice(&src.to_be_bytes());
                seg.extend_from_slice(&dst.to_be_bytes());
                seg.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                seg.extend_from_slice(&[0, 0]);
                17
            }
            Transport::Icmp { ty, code } => {
                seg.extend_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
                if v6 { 58 } else { 1 }
            }
        };
        seg.extend_from_slice(&self.payload);
        (proto, seg)
    }

    /// Writes the L4 checksum into `seg` given the pseudo-header sum.
    fn fill_l4_checksum(&self, proto: u8, seg: &mut [u8], pseudo: u32, v4: bool) {
        let at = match (proto, &self.transport) {
            (6, Transport::Tcp { .. }) => 16,
            (17, Transport::Udp { .. }) => 6,
            (1 | 58, Transport::Icmp { .. }) => 2,
            _ => return,
        };
        if proto == 17 && v4 && !self.udp_checksum {
            return;
        }
        let c = if proto == 1 {
            checksum::icmpv4(seg)
        } else {
            checksum::finish(pseudo, seg)
        };
        let c = if proto == 17 {
            checksum::udp_nonzero(c)
        } else {
            c
        };
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// The finished frame.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload.len());
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        for &(tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&self.ethertype_value().to_be_bytes());
        match &self.net {
            Net::Raw(_) => f.extend_from_slice(&self.payload),
            Net::Arp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => {
                f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
                f.extend_from_slice(&op.to_be_bytes());
                f.extend_from_slice(sha);
                f.extend_from_slice(&spa.octets());
                f.extend_from_slice(tha);
                f.extend_from_slice(&tpa.octets());
            }
            Net::Ipv4 { src, dst } => {
                let (proto, mut seg) = self.transport_bytes();
                let later = self.frag_offset != 0;
                if !later {
                    let pseudo = checksum::pseudo_header_v4(*src, *dst, proto, seg.len() as u16);
                    self.fill_l4_checksum(proto, &mut seg, pseudo, true);
                }
                let hlen = 20 + self.ipv4_options.len();
                let mut h = vec![0u8; hlen];
                h[0] = 0x40 | (hlen / 4) as u8;
                h[1] = self.tos;
                h[2..4].copy_from_slice(&((hlen + seg.len()) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&self.ident.to_be_bytes());
                let mut frag = (self.frag_offset >> 3) & 0x1fff;
                if self.dont_frag {
                    frag |= 0x4000;
                }
                if self.more_frags {
                    frag |= 0x2000;
                }
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = self.ttl;
                h[9] = proto;
                h[12..16].copy_from_slice(&src.octets());
                h[16..20].copy_from_slice(&dst.octets());
                h[20..].copy_from_slice(&self.ipv4_options);
                let c = checksum::ipv4_header(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
                f.extend_from_slice(&seg);
            }
            Net::Ipv6 { src, dst } => {
                let (proto, mut seg) = self.transport_bytes();
                let pseudo = checksum::pseudo_header_v6(src, dst, proto, seg.len() as u32);
                self.fill_l4_checksum(proto, &mut seg, pseudo, false);
                let vtf = (6u32 << 28) | ((self.tos as u32) << 20) | (self.flow_label & 0xf_ffff);
                f.extend_from_slice(&vtf.to_be_bytes());
                f.extend_from_slice(&(seg.len() as u16).to_be_bytes());
                f.push(proto);
                f.push(self.ttl);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&dst.octets());
                f.extend_from_slice(&seg);
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4, tcp, udp};

    #[test]
    fn built_checksums_verify() {
        let f = FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .ipv4_options(&[0x94, 0x04, 0, 0])
            .udp(1000, 2000)
            .payload(b"abc")
            .build();
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.header_len(), 24);
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(u.payload(), b"abc");
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));

        let f = FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(1, 2, tcp::flags::ACK)
            .payload(b"xyz")
            .build();
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        let t = tcp::Packet::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
    }
}
