#![no_main]
//! Outer frame bytes -> `encap::vxlan::decap`: must never panic; an accepted frame's inner
//! range lies inside the frame, holds at least an Ethernet header, and re-encapsulating it
//! with the same VNI and addresses decaps to the same result.
use std::net::IpAddr;

use encap::vxlan::{TunnelConfig, VXLAN_PORT, VxlanTunnel, decap};
use encap::{FlowKey, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(d) = decap(data, VXLAN_PORT) else {
        return;
    };
    assert!(d.inner.start <= d.inner.end && d.inner.end <= data.len());
    assert!(d.inner.len() >= 14);
    assert!(d.vni <= 0x00ff_ffff);
    let inner = &data[d.inner.clone()];
    let mut key = FlowKey::default();
    let _ = extract(inner, &mut key);
    d.set_tunnel_metadata(&mut key);

    let (IpAddr::V4(_), IpAddr::V4(_)) = (d.outer_src, d.outer_dst) else {
        panic!("v4 only")
    };
    let tunnel = VxlanTunnel::new(TunnelConfig::new(
        [2; 6],
        [4; 6],
        d.outer_src,
        d.outer_dst,
        d.vni,
    ))
    .unwrap();
    let mut buf = vec![0u8; 50 + inner.len()];
    buf[50..].copy_from_slice(inner);
    let end = buf.len();
    let Ok(outer) = tunnel.encap(&mut buf, 50..end, 7) else {
        return;
    };
    let again = decap(&buf[outer], VXLAN_PORT).expect("our own encapsulation decaps");
    assert_eq!(again.vni, d.vni);
    assert_eq!(
        (again.outer_src, again.outer_dst),
        (d.outer_src, d.outer_dst)
    );
    assert_eq!(&buf[50..][..], inner);
    assert_eq!(again.inner, 50..end);
});
