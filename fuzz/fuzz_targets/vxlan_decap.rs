#![no_main]
//! The VXLAN receive path the datapath runs: `vswitch::datapath::vxlan::VxlanPort` (a
//! `tap_io::TunnelPort` with `encap::vxlan`'s header check) over an in-memory underlay.
//!
//! Input: one config byte (bit 0: fixed remote 192.168.0.2, bit 1: fixed VNI 4242, bit 2: an
//! underlay MTU of 150, so short datagrams take the tunnel super-frame marking), then
//! datagrams as `[source selector, length, payload...]` (source 0/3: the remote, 1: another
//! IPv4 peer, 2: an IPv6 peer). Checks: no panic; every datagram is taken exactly once across
//! receive calls of a small batch (the drain rule); accepted frames carry tunnel metadata that
//! passes the port's filters, hold at least an Ethernet header and are their datagram minus 8
//! bytes; accepted + refused-by-reason = taken; and sending an accepted frame back through the
//! port yields the VXLAN header for its VNI followed by the same inner frame (at MTU 1500; at
//! MTU 150 a frame marked as a super-frame instead has its headers and checksum place inside it).
use std::net::{Ipv4Addr, SocketAddr};

use encap::vxlan::{Header, check_header};
use encap::{FlowKey, extract};
use libfuzzer_sys::fuzz_target;
use vswitch::datapath::vxlan::{Batch, MemDatagrams, Port, TunnelConfig, VxlanPort};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let remote = (cfg & 1 != 0).then_some(REMOTE);
    let vni = (cfg & 2 != 0).then_some(4242);
    let small_mtu = cfg & 4 != 0;
    let mem = MemDatagrams::new();
    let config = TunnelConfig {
        local: LOCAL,
        dst_port: 4789,
        remote,
        vni,
        underlay_mtu: if small_mtu { 150 } else { 1500 },
    };
    let mut port = VxlanPort::new("vx0", mem.clone(), config);
    let mut sent_payloads: Vec<Vec<u8>> = Vec::new();
    while let [sel, len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let src: SocketAddr = match sel & 3 {
            1 => (OTHER, 4789).into(),
            2 => "[fd00::2]:4789".parse().unwrap(),
            _ => (REMOTE, 4789).into(),
        };
        mem.inject(src, payload);
        sent_payloads.push(payload.to_vec());
    }

    let mut rx = Batch::new(8, 128, 2048);
    let mut tx = Batch::new(8, 128, 2048);
    let mut taken = 0;
    let mut accepted = 0u64;
    loop {
        rx.clear();
        let got = port
            .rx_batch(&mut rx)
            .expect("in-memory receive never fails");
        assert!(rx.len() <= got);
        taken += got;
        for p in rx.iter() {
            let t = p
                .meta
                .tunnel
                .expect("accepted frames carry tunnel metadata");
            assert!(t.vni <= 0x00ff_ffff);
            assert_eq!(t.dst, LOCAL);
            assert!(remote.is_none_or(|r| r == t.src));
            assert!(vni.is_none_or(|k| k == t.vni));
            assert!(p.len() >= 14);
            let mut key = FlowKey::default();
            let _ = extract(p.data(), &mut key);
            if let Some(gso) = p.meta.gso {
                assert!(usize::from(gso.hdr_len) < p.len());
                assert!(gso.size > 0);
                let start = usize::from(p.meta.csum_start.expect("a super-frame's checksum start"));
                assert!(start + 18 <= usize::from(gso.hdr_len));
            }
            if small_mtu {
                // Sending back would segment the marked super-frames: only the receive side
                // is checked at this MTU.
                continue;
            }
            assert!(tx.push_copy_with_meta(p.data(), &p.meta));
        }
        accepted += rx.len() as u64;
        let inners: Vec<(u32, Vec<u8>)> = tx
            .iter()
            .map(|p| (p.meta.tunnel.unwrap().vni, p.data().to_vec()))
            .collect();
        let report = port.tx_batch(&mut tx);
        assert_eq!(report.sent, inners.len());
        for ((dst, payload), (v, inner)) in mem.take_sent().into_iter().zip(&inners) {
            assert_eq!(dst.port(), 4789);
            assert_eq!(&payload[..8], Header::new(*v).as_bytes());
            assert_eq!(&payload[8..], &inner[..]);
            assert_eq!(check_header(&payload), Ok(*v));
            assert!(
                sent_payloads
                    .iter()
                    .any(|d| d.get(8..) == Some(&payload[8..]))
            );
        }
        if got < rx.capacity() {
            break;
        }
    }
    assert_eq!(taken, sent_payloads.len(), "every datagram taken once");
    let s = port.stats();
    assert_eq!(
        accepted
            + s.rx_tunnel_short
            + s.rx_tunnel_bad_header
            + s.rx_tunnel_unknown
            + s.rx_tunnel_ce_not_ect,
        taken as u64
    );
});
