//! The VXLAN tunnel port: `tap_io::TunnelPort` with the VXLAN header of `encap::vxlan`.
//!
//! `VxlanPort::new(name, UdpTunnelSocket, TunnelConfig)` is what vswitchd opens for a
//! `type=vxlan` port; `VxlanPort<MemDatagrams>` is the same port over an in-memory underlay
//! (tests, fuzzing). Receive checks the header (`encap::vxlan::check_header`: exactly the I
//! flag), filters a fixed remote/VNI, strips the 8 bytes and sets `meta.tunnel` (VNI, outer
//! source, local address), which the datapath copies into `tun_id`/`tun_src`/`tun_dst`;
//! refusals are counted as `vxlan_short`, `vxlan_bad_flags`, `vxlan_unknown_tunnel` drops.
//! Transmit pushes `encap::vxlan::Header` for `meta.tunnel.vni` and sends to
//! `(meta.tunnel.dst, dst_port)`.

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
    fn check(payload: &[u8]) -> Result<u32, TunnelRxDrop> {
        check_header(payload).map_err(|e| match e {
            VxlanError::Short => TunnelRxDrop::Short,
            VxlanError::BadFlags(_) => TunnelRxDrop::BadHeader,
        })
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

    #[test]
    fn mtu_leaves_room_for_the_underlay() {
        let (p, _) = port(None, None);
        // 1500 - IPv4 20 - UDP 8 - VXLAN 8 - inner Ethernet 14.
        assert_eq!(p.mtu(), 1450);
    }
}
