#![no_main]
//! The Geneve receive path: `encap::geneve::check_header` and `vswitch::datapath::geneve::GenevePort`
//! (a `tap_io::TunnelPort`) over an in-memory underlay, one datagram from the fixed remote.
//! Checks: no panic; a header the check accepts is 8 to 260 bytes and within the datagram; the
//! port delivers exactly the datagram minus that header when the inner frame is at least an
//! Ethernet header, with the header's VNI, and nothing otherwise; the datagram is counted once
//! (delivered or refused by reason).
use std::net::{Ipv4Addr, SocketAddr};

use encap::geneve::{MAX_HEADER_LEN, check_header};
use libfuzzer_sys::fuzz_target;
use vswitch::datapath::geneve::GenevePort;
use vswitch::datapath::vxlan::{Batch, MemDatagrams, Port, TunnelConfig};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

fuzz_target!(|data: &[u8]| {
    let checked = check_header(data);
    if let Ok((_, len)) = checked {
        assert!((8..=MAX_HEADER_LEN).contains(&len) && len <= data.len());
    }
    if data.len() > 2000 {
        return;
    }
    let mem = MemDatagrams::new();
    let config = TunnelConfig {
        local: LOCAL,
        dst_port: 6081,
        remote: Some(REMOTE),
        vni: None,
        // Above every input: no frame is taken for a tunnel super-frame (which rewrites its
        // TCP checksum field), so a delivered frame is the datagram's tail byte for byte.
        underlay_mtu: 9000,
    };
    let mut port = GenevePort::new("gnv0", mem.clone(), config);
    mem.inject(SocketAddr::from((REMOTE, 6081)), data);
    let mut batch = Batch::new(4, 300, 2048);
    assert_eq!(port.rx_batch(&mut batch).expect("in memory"), 1);
    let s = port.stats();
    let refused =
        s.rx_tunnel_short + s.rx_tunnel_bad_header + s.rx_tunnel_unknown + s.rx_tunnel_ce_not_ect;
    assert_eq!(batch.len() as u64 + refused, 1);
    match checked {
        Ok((vni, len)) if data.len() - len >= 14 => {
            assert_eq!(batch.len(), 1);
            assert_eq!(batch[0].data(), &data[len..]);
            assert_eq!(batch[0].meta.tunnel.map(|t| t.vni), Some(vni));
        }
        _ => assert_eq!(batch.len(), 0),
    }
});
