//! The VXLAN tunnel port: `tap_io::TunnelPort` with the VXLAN header of `encap::vxlan`.
//!
//! `VxlanPort::new(name, UdpTunnelSocket, TunnelConfig)` is what vswitchd opens for a
//! `type=vxlan` port; `VxlanPort<MemDatagrams>` is the same port over an in-memory underlay
//! (tests, fuzzing). Receive checks the header (`encap::vxlan::check_header`: exactly the I
//! flag), filters a fixed remote/VNI, strips the 8 bytes and sets `meta.tunnel` (VNI, outer
//! source, local address), which the datapath copies into `tun_id`/`tun_src`/`tun_dst`;
//! refusals are counted as `vxlan_short`, `vxlan_bad_flags`, `vxlan_unknown_tunnel` drops.
//! Transmit pushes `encap::vxlan::Header` for `meta.tunnel.vni` and sends to
//! `(meta.tunnel.dst, dst_port)`. ECN crosses the tunnel as RFC 6040 says (`encap::ecn`): the
//! outer ECN field is the inner packet's (CE sent as ECT(0)), an outer CE is carried onto an
//! ECN-capable inner packet, and around a Not-ECT one it is a `tunnel_ecn_ce_not_ect` drop.

use encap::vxlan::{HEADER_LEN, Header, MIN_INNER_LEN, VxlanError, check_header};
use tap_io::{TunnelHeader, TunnelRxDrop};

pub use tap_io::{Batch, MemDatagrams, Port, TunnelConfig, TunnelMeta, UdpTunnelSocket};

/// The VXLAN header as a [`TunnelHeader`].
#[derive(Debug, Clone, Copy)]
pub struct Vxlan;

impl TunnelHeader for Vxlan {
    const LEN: usize = HEADER_LEN;
    const MIN_INNER: usize = MIN_INNER_LEN;

    #[inline]
    fn check(payload: &[u8]) -> Result<(u32, usize), TunnelRxDrop> {
        match check_header(payload) {
            Ok(vni) => Ok((vni, HEADER_LEN)),
            Err(VxlanError::Short) => Err(TunnelRxDrop::Short),
            Err(VxlanError::BadFlags(_)) => Err(TunnelRxDrop::BadHeader),
        }
    }

    #[inline]
    fn write(header: &mut [u8], vni: u32) {
        header.copy_from_slice(Header::new(vni).as_bytes());
    }
}

/// A VXLAN tunnel port over a datagram underlay (the kernel UDP socket by default).
pub type VxlanPort<D = UdpTunnelSocket> = tap_io::TunnelPort<D, Vxlan>;

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use tap_io::TxDropReason;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

    fn port(remote: Option<Ipv4Addr>, vni: Option<u32>) -> (VxlanPort<MemDatagrams>, MemDatagrams) {
        let mem = MemDatagrams::new();
        let cfg = TunnelConfig {
            local: LOCAL,
            dst_port: 4789,
            remote,
            vni,
            underlay_mtu: 1500,
        };
        (VxlanPort::new("vx0", mem.clone(), cfg), mem)
    }

    fn inner(seed: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14..].fill(seed);
        f
    }

    fn datagram(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut d = Header::new(vni).as_bytes().to_vec();
        d[0] = flags;
        d.extend_from_slice(inner);
        d
    }

    fn from(ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((ip, 4789))
    }

    #[test]
    fn receive_strips_and_sets_tunnel_meta() {
        let (mut p, mem) = port(None, None);
        mem.inject(from(REMOTE), &datagram(0x08, 4242, &inner(1)));
        mem.inject(from(REMOTE), &datagram(0x08, 7, &inner(2)));
        let mut rx = Batch::new(32, 128, 2048);
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 2);
        assert_eq!(rx.len(), 2);
        assert_eq!(rx[0].data(), &inner(1)[..]);
        assert_eq!(rx[1].data(), &inner(2)[..]);
        assert_eq!(
            rx[0].meta.tunnel,
            Some(TunnelMeta {
                vni: 4242,
                src: REMOTE,
                dst: LOCAL
            })
        );
        assert_eq!(rx[1].meta.tunnel.map(|t| t.vni), Some(7));
        // The header went into the headroom: pushing it back is in place.
        assert!(rx[0].headroom() >= HEADER_LEN);
    }

    #[test]
    fn receive_filters_and_counts_by_reason() {
        let (mut p, mem) = port(Some(REMOTE), Some(4242));
        let other = Ipv4Addr::new(192, 168, 0, 9);
        mem.inject(from(REMOTE), &datagram(0x00, 4242, &inner(1))); // no I flag
        mem.inject(from(REMOTE), &datagram(0x0c, 4242, &inner(1))); // I + reserved bit
        mem.inject(from(REMOTE), &[0x08, 0, 0, 0, 0, 0x10]); // shorter than the header
        mem.inject(from(REMOTE), &datagram(0x08, 4242, &inner(1)[..13])); // inner < 14
        mem.inject(from(other), &datagram(0x08, 4242, &inner(1))); // wrong remote
        mem.inject(from(REMOTE), &datagram(0x08, 4243, &inner(1))); // wrong VNI
        mem.inject(
            "[fd00::2]:4789".parse().unwrap(),
            &datagram(0x08, 4242, &inner(1)),
        );
        mem.inject(from(REMOTE), &datagram(0x08, 4242, &inner(9))); // the good one
        // Too short AND wrong VNI: the filter comes first, as it always did.
        mem.inject(from(REMOTE), &datagram(0x08, 1, &inner(1)[..10]));
        let mut rx = Batch::new(32, 128, 2048);
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 9, "every datagram taken");
        assert_eq!(rx.len(), 1);
        assert_eq!(rx[0].data(), &inner(9)[..]);
        let s = p.stats();
        assert_eq!(s.rx_tunnel_bad_header, 2);
        assert_eq!(s.rx_tunnel_short, 2);
        assert_eq!(s.rx_tunnel_unknown, 4);
        assert_eq!(s.rx_packets, 9);
    }

    #[test]
    fn receive_appends_and_keeps_the_drain_rule() {
        let (mut p, mem) = port(None, None);
        for i in 0..40u8 {
            let flags = if i % 2 == 0 { 0x08 } else { 0 };
            mem.inject(from(REMOTE), &datagram(flags, i as u32, &inner(i)));
        }
        let mut rx = Batch::new(32, 128, 2048);
        assert!(rx.push_copy(&inner(0xee)));
        // 31 spare slots: 31 taken (room filled, so not drained), 16 of them accepted.
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 31);
        assert_eq!(rx.len(), 1 + 16);
        assert_eq!(rx[0].data(), &inner(0xee)[..]);
        assert_eq!(rx[1].meta.tunnel.map(|t| t.vni), Some(0));
        assert_eq!(rx[16].meta.tunnel.map(|t| t.vni), Some(30));
        rx.clear();
        assert_eq!(
            p.rx_batch(&mut rx).unwrap(),
            9,
            "drained: fewer than the room"
        );
        assert_eq!(rx.len(), 4); // 32, 34, 36, 38
    }

    #[test]
    fn transmit_pushes_the_header_and_routes() {
        let (mut p, mem) = port(None, None);
        let mut tx = Batch::new(8, 128, 2048);
        for (vni, dst) in [(4242, REMOTE), (7, Ipv4Addr::new(10, 1, 1, 1))] {
            let b = tx.spare().unwrap();
            b.set_frame(&inner(vni as u8)).unwrap();
            b.meta.tunnel = Some(TunnelMeta {
                vni,
                src: Ipv4Addr::UNSPECIFIED,
                dst,
            });
            tx.commit();
        }
        assert!(tx.push_copy(&inner(3))); // no tunnel meta: nowhere to send
        let r = p.tx_batch(&mut tx);
        assert_eq!(r.sent, 2);
        assert_eq!(r.dropped.get(TxDropReason::Unreachable), 1);
        assert!(tx.is_empty());
        let sent = mem.take_sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0, from(REMOTE));
        assert_eq!(sent[0].1, datagram(0x08, 4242, &inner(4242u32 as u8)));
        assert_eq!(sent[1].0, SocketAddr::from(([10, 1, 1, 1], 4789)));
        assert_eq!(&sent[1].1[..8], &[0x08, 0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(p.stats().tx_dropped.get(TxDropReason::Unreachable), 1);
        // What one port sends, another receives intact.
        let (mut q, qmem) = port(None, None);
        for (_, d) in sent {
            qmem.inject(from(REMOTE), &d);
        }
        let mut rx = Batch::new(8, 128, 2048);
        assert_eq!(q.rx_batch(&mut rx).unwrap(), 2);
        assert_eq!(rx[0].data(), &inner(4242u32 as u8)[..]);
    }

    /// Each frame goes to the back end with its inner flow's hash (its UDP source port on a
    /// socket with source ports): the same flow the same hash, another flow another; a back
    /// end that does not vary the source port is given none.
    #[test]
    fn transmit_gives_each_datagram_its_inner_flow_hash() {
        let mem = MemDatagrams::new().recording_flows();
        let cfg = TunnelConfig {
            local: LOCAL,
            dst_port: 4789,
            remote: None,
            vni: None,
            underlay_mtu: 1500,
        };
        let mut p = VxlanPort::new("vx0", mem.clone(), cfg);
        let udp = |sport: u16, payload: &[u8]| {
            encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
                .udp(sport, 80)
                .payload(payload)
                .build()
        };
        let frames = [udp(1000, b"a"), udp(1001, b"b"), udp(1000, b"cc")];
        let mut tx = Batch::new(8, 128, 2048);
        for f in &frames {
            let b = tx.spare().unwrap();
            b.set_frame(f).unwrap();
            b.meta.tunnel = Some(TunnelMeta {
                vni: 5,
                src: Ipv4Addr::UNSPECIFIED,
                dst: REMOTE,
            });
            tx.commit();
        }
        assert_eq!(p.tx_batch(&mut tx).sent, 3);
        let sent = mem.take_sent_with_flows();
        let hashes: Vec<u32> = sent.iter().map(|(_, h, _)| *h).collect();
        for (h, f) in hashes.iter().zip(&frames) {
            assert_eq!(*h, encap::hash::frame_flow_hash(f));
        }
        assert_eq!(hashes[0], hashes[2], "one flow, one hash");
        assert_ne!(hashes[0], hashes[1]);

        // Without source ports the hash is not computed.
        let (mut q, plain) = port(None, None);
        let b = tx.spare().unwrap();
        b.set_frame(&frames[0]).unwrap();
        b.meta.tunnel = Some(TunnelMeta {
            vni: 5,
            src: Ipv4Addr::UNSPECIFIED,
            dst: REMOTE,
        });
        tx.commit();
        assert_eq!(q.tx_batch(&mut tx).sent, 1);
        assert_eq!(plain.take_sent_with_flows()[0].1, 0);
    }

    /// An inner IPv4 TCP super-frame as the kernel's tunnel GSO leaves it: IP length the whole
    /// frame's, TCP checksum the partial pseudo-header sum, 32-byte TCP header (timestamps).
    fn tcp_super_frame(payload: usize, proto: u8) -> Vec<u8> {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (f.len() - 14) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[20] = 0x40;
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&src.octets());
        f[30..34].copy_from_slice(&dst.octets());
        let c = encap::checksum::ipv4_header(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5001u16.to_be_bytes());
        f[38..42].copy_from_slice(&1000u32.to_be_bytes());
        f[46] = 8 << 4;
        f[47] = 0x18;
        for (i, b) in f[66..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let pseudo = encap::checksum::pseudo_header_v4(src, dst, 6, ip_len - 20);
        let partial = encap::checksum::fold(pseudo);
        f[50..52].copy_from_slice(&partial.to_be_bytes());
        f
    }

    #[test]
    fn receive_marks_a_whole_tunnel_super_frame() {
        let (mut p, mem) = port(None, None);
        let sf = tcp_super_frame(20_000, 6);
        mem.inject(from(REMOTE), &datagram(0x08, 42, &sf));
        // Too long for the underlay but not TCP, or a TCP frame whose IP length is not the
        // frame's: passed on unmarked.
        let udp = tcp_super_frame(20_000, 17);
        mem.inject(from(REMOTE), &datagram(0x08, 42, &udp));
        let mut short_ip = sf.clone();
        short_ip[16..18].copy_from_slice(&1400u16.to_be_bytes());
        mem.inject(from(REMOTE), &datagram(0x08, 42, &short_ip));
        // An MTU-sized segment whose checksum the sender left partial (checksum offload,
        // nothing finished it on a veth underlay): marked for completion, not GSO.
        let small = tcp_super_frame(1398, 6);
        mem.inject(from(REMOTE), &datagram(0x08, 42, &small));
        // The same with its checksum complete: left alone.
        let mut full = small.clone();
        encap::gso::complete_checksum(&mut full, 34, 16).unwrap();
        mem.inject(from(REMOTE), &datagram(0x08, 42, &full));
        let mut rx = Batch::new(8, 128, tap_io::GSO_FRAME_ROOM);
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 5);
        assert_eq!(rx[0].data(), &sf[..]);
        let m = rx[0].meta;
        assert_eq!(
            m.gso,
            Some(tap_io::Gso {
                kind: tap_io::GsoKind::Tcp4,
                // Inner MTU 1450 - IPv4 20 - TCP 32.
                size: 1398,
                hdr_len: 66,
                ecn: false
            })
        );
        assert!(m.csum_not_ready);
        assert_eq!((m.csum_start, m.csum_offset), (Some(34), Some(16)));
        for k in [1, 2, 4] {
            assert_eq!(rx[k].meta.gso, None, "frame {k}");
            assert!(!rx[k].meta.csum_not_ready, "frame {k}");
        }
        assert_eq!(rx[3].meta.gso, None);
        assert!(rx[3].meta.csum_not_ready);
        assert_eq!(
            (rx[3].meta.csum_start, rx[3].meta.csum_offset),
            (Some(34), Some(16))
        );
        let mut done = rx[3].data().to_vec();
        encap::gso::complete_checksum(&mut done, 34, 16).unwrap();
        assert_eq!(done, full);
        assert_eq!(p.stats().rx_gso, 1);
        assert_eq!(p.stats().rx_csum_not_ready, 1);
        // Segmented as marked, every segment carries a valid TCP checksum and fits the
        // underlay, and the payloads put together are the super-frame's.
        let info = encap::gso::GsoInfo {
            kind: encap::gso::GsoKind::Tcp4,
            mss: 1398,
            hdr_len: 66,
        };
        let mut scratch = Vec::new();
        let mut joined = Vec::new();
        let n = encap::gso::segment(rx[0].data(), &info, &mut scratch, |seg| {
            assert!(seg.len() - 14 <= p.mtu());
            let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
            assert_eq!(encap::checksum::l4_v4(src, dst, 6, &seg[34..]), 0);
            joined.extend_from_slice(&seg[66..]);
        })
        .unwrap();
        assert_eq!(n, 20_000usize.div_ceil(1398));
        assert_eq!(joined, sf[66..]);
    }

    /// An inner IPv4 UDP frame with the TOS byte `tos` (IPv6 with `v6`: the traffic class).
    fn ip_inner(tos: u8, v6: bool) -> Vec<u8> {
        let b = encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if v6 {
            b.ipv6(
                std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            )
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        };
        b.tos(tos).udp(40000, 5201).payload(b"ecn").build()
    }

    #[test]
    fn transmit_sets_the_outer_ecn_from_the_inner_packet() {
        use encap::ecn::{CE, ECT_0, ECT_1, NOT_ECT};
        let (mut p, mem) = port(None, None);
        let cases = [
            (ip_inner(0xb8 | ECT_0, false), ECT_0),
            (ip_inner(CE, false), ECT_0),
            (ip_inner(ECT_1, false), ECT_1),
            (ip_inner(0xb8, false), NOT_ECT),
            (ip_inner(ECT_0, true), ECT_0),
            (ip_inner(CE, true), ECT_0),
            (inner(1), NOT_ECT),
        ];
        let mut tx = Batch::new(8, 128, 2048);
        for (frame, _) in &cases {
            let b = tx.spare().unwrap();
            b.set_frame(frame).unwrap();
            b.meta.tunnel = Some(TunnelMeta {
                vni: 9,
                src: Ipv4Addr::UNSPECIFIED,
                dst: REMOTE,
            });
            tx.commit();
        }
        assert_eq!(p.tx_batch(&mut tx).sent, cases.len());
        let sent = mem.take_sent_with_tos();
        let want: Vec<u8> = cases.iter().map(|c| c.1).collect();
        let got: Vec<u8> = sent.iter().map(|s| s.1).collect();
        // The DSCP stays inside: only the ECN field goes out.
        assert_eq!(got, want);
        for ((_, _, d), (frame, _)) in sent.iter().zip(&cases) {
            assert_eq!(&d[HEADER_LEN..], &frame[..], "inner frame unchanged");
        }
    }

    #[test]
    fn receive_carries_outer_ce_onto_the_inner_packet_or_drops() {
        use encap::ecn::{CE, ECT_0, ECT_1, NOT_ECT};
        let (mut p, mem) = port(None, None);
        let v4_ok = |f: &[u8]| encap::checksum::ipv4_header(&f[14..34]) == 0;
        for (outer, frame) in [
            (CE, ip_inner(0xb8 | ECT_0, false)),
            (CE, ip_inner(ECT_1, true)),
            (CE, ip_inner(NOT_ECT, false)), // refused
            (0xb8 | ECT_0, ip_inner(CE, false)),
            (ECT_1, ip_inner(ECT_0, false)),
            (CE, inner(5)),                // not IP: left alone
            (CE, ip_inner(NOT_ECT, true)), // refused
        ] {
            mem.inject_with_tos(from(REMOTE), outer, &datagram(0x08, 7, &frame));
        }
        let mut rx = Batch::new(8, 128, 2048);
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 7);
        assert_eq!(rx.len(), 5);
        assert_eq!(rx[0].data()[15], 0xb8 | CE, "IPv4 ECT(0) -> CE, DSCP kept");
        assert!(v4_ok(rx[0].data()), "IPv4 header checksum updated");
        assert_eq!(
            encap::ecn::inner_ecn(rx[1].data()),
            Some(CE),
            "IPv6 ECT(1) -> CE"
        );
        assert_eq!(rx[2].data(), &ip_inner(CE, false)[..]);
        assert_eq!(rx[3].data(), &ip_inner(ECT_0, false)[..]);
        assert_eq!(rx[4].data(), &inner(5)[..]);
        let s = p.stats();
        assert_eq!(s.rx_tunnel_ce_not_ect, 2);
        assert_eq!(
            s.rx_tunnel_short + s.rx_tunnel_bad_header + s.rx_tunnel_unknown,
            0
        );

        // A whole tunnel super-frame (one inner IP header for many segments) is marked once.
        let mut sf = tcp_super_frame(20_000, 6);
        sf[15] = ECT_0;
        sf[24..26].fill(0);
        let c = encap::checksum::ipv4_header(&sf[14..34]);
        sf[24..26].copy_from_slice(&c.to_be_bytes());
        mem.inject_with_tos(from(REMOTE), CE, &datagram(0x08, 7, &sf));
        let mut rx = Batch::new(2, 128, tap_io::GSO_FRAME_ROOM);
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 1);
        assert!(rx[0].meta.gso.is_some());
        assert_eq!(rx[0].data()[15], CE);
        assert!(v4_ok(rx[0].data()));
    }

    #[test]
    fn mtu_leaves_room_for_the_underlay() {
        let (p, _) = port(None, None);
        // 1500 - IPv4 20 - UDP 8 - VXLAN 8 - inner Ethernet 14.
        assert_eq!(p.mtu(), 1450);
    }
}
