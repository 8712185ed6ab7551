//! The Geneve tunnel port: `tap_io::TunnelPort` with the Geneve header of `encap::geneve`.
//!
//! `GenevePort::new(name, UdpTunnelSocket, TunnelConfig)` is what vswitchd opens for a
//! `type=geneve` port (UDP 6081 unless `options:dst_port` says otherwise), as Open vSwitch's and
//! Linux's `geneve` devices speak it. It works as the VXLAN port does (`datapath::vxlan`): the
//! same remote/VNI filters, ECN, source port by flow, GSO TAP and drop counters (`vxlan_short`,
//! `vxlan_bad_flags`, `vxlan_unknown_tunnel` count Geneve's refusals too). What differs is the
//! header: a received one may carry options, skipped (no option is understood; one with the C
//! bit, a critical option, is refused as `vxlan_bad_flags`, as is a control packet, the O bit),
//! and the header sent has none.

use encap::geneve::{GeneveError, HEADER_LEN, Header, MIN_INNER_LEN, check_header};
use tap_io::{TunnelHeader, TunnelRxDrop, UdpTunnelSocket};

/// The Geneve header as a [`TunnelHeader`].
#[derive(Debug, Clone, Copy)]
pub struct Geneve;

impl TunnelHeader for Geneve {
    const LEN: usize = HEADER_LEN;
    const MIN_INNER: usize = MIN_INNER_LEN;

    #[inline]
    fn check(payload: &[u8]) -> Result<(u32, usize), TunnelRxDrop> {
        check_header(payload).map_err(|e| match e {
            GeneveError::Short => TunnelRxDrop::Short,
            GeneveError::Version(_)
            | GeneveError::Protocol(_)
            | GeneveError::Critical
            | GeneveError::Control => TunnelRxDrop::BadHeader,
        })
    }

    #[inline]
    fn write(header: &mut [u8], vni: u32) {
        header.copy_from_slice(Header::new(vni).as_bytes());
    }
}

/// A Geneve tunnel port over a datagram underlay (the kernel UDP socket by default).
pub type GenevePort<D = UdpTunnelSocket> = tap_io::TunnelPort<D, Geneve>;

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use tap_io::{Batch, MemDatagrams, Port, TunnelConfig, TunnelMeta};

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

    fn port() -> (GenevePort<MemDatagrams>, MemDatagrams) {
        let mem = MemDatagrams::new();
        let cfg = TunnelConfig {
            local: LOCAL,
            dst_port: encap::geneve::GENEVE_PORT,
            remote: Some(REMOTE),
            vni: None,
            underlay_mtu: 1500,
        };
        (GenevePort::new("gnv0", mem.clone(), cfg), mem)
    }

    fn inner(seed: u8) -> Vec<u8> {
        let mut f = vec![seed; 60];
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    fn from(ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((ip, 6081))
    }

    #[test]
    fn receive_skips_options_and_refuses_critical_ones() {
        let (mut p, mem) = port();
        // No options.
        let mut plain = Header::new(100).as_bytes().to_vec();
        plain.extend_from_slice(&inner(1));
        // One 8-byte option (class 0x0102, type 0x01, length 1 word).
        let mut opts = vec![0x02, 0x00, 0x65, 0x58, 0, 0, 200, 0];
        opts.extend_from_slice(&[0x01, 0x02, 0x01, 0x01, 1, 2, 3, 4]);
        opts.extend_from_slice(&inner(2));
        // The same with the C bit; and an IPv4 payload (protocol 0x0800).
        let mut critical = opts.clone();
        critical[1] = encap::geneve::FLAG_CRITICAL;
        let mut ip = plain.clone();
        ip[2..4].copy_from_slice(&[0x08, 0x00]);
        for d in [&plain, &opts, &critical, &ip] {
            mem.inject(from(REMOTE), d);
        }
        // From another remote: unknown.
        mem.inject(from(Ipv4Addr::new(192, 168, 0, 9)), &plain);
        let mut rx = Batch::new(32, 128, 2048);
        assert_eq!(p.rx_batch(&mut rx).unwrap(), 5, "every datagram taken");
        assert_eq!(rx.len(), 2);
        assert_eq!(rx[0].data(), &inner(1)[..]);
        assert_eq!(rx[1].data(), &inner(2)[..]);
        assert_eq!(
            rx[1].meta.tunnel,
            Some(TunnelMeta {
                vni: 200,
                src: REMOTE,
                dst: LOCAL
            })
        );
        let s = p.stats();
        assert_eq!(s.rx_tunnel_bad_header, 2);
        assert_eq!(s.rx_tunnel_unknown, 1);
    }

    #[test]
    fn transmit_pushes_the_header_without_options() {
        let (mut p, mem) = port();
        let mut tx = Batch::new(8, 128, 2048);
        let b = tx.spare().unwrap();
        b.set_frame(&inner(3)).unwrap();
        b.meta.tunnel = Some(TunnelMeta {
            vni: 0x01_0203,
            src: Ipv4Addr::UNSPECIFIED,
            dst: REMOTE,
        });
        tx.commit();
        assert_eq!(p.tx_batch(&mut tx).sent, 1);
        let sent = mem.take_sent();
        assert_eq!(sent[0].0, from(REMOTE));
        assert_eq!(&sent[0].1[..8], &[0, 0, 0x65, 0x58, 1, 2, 3, 0]);
        assert_eq!(&sent[0].1[8..], &inner(3)[..]);
        assert_eq!(p.mtu(), 1450);
    }
}
