#![no_main]
//! Frame bytes -> `encap::extract`: must never panic, and the offsets it reports must lie inside
//! the frame and in order. Rewrites on the parsed frame (IP, ports, TTL, IPv6 ND) and the
//! tunnel's frame hash (`encap::hash::frame_flow_hash`, which parses on its own) must not
//! panic either.
use encap::rewrite::{self, L4Checksum};
use encap::{FlowKey, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Read from the frame alone: the same bytes hash the same.
    assert_eq!(
        encap::hash::frame_flow_hash(data),
        encap::hash::frame_flow_hash(&data.to_vec())
    );
    let mut key = FlowKey::default();
    let parsed = extract(data, &mut key);
    let len = data.len();
    if let Some(l3) = parsed.l3_offset() {
        assert!(l3 >= 14 && l3 <= len);
        assert_eq!(l3, 14 + 4 * parsed.vlans as usize);
    }
    if let Some(end) = parsed.l3_end() {
        assert!(end <= len);
        assert!(parsed.l3_offset().unwrap() <= end);
    }
    if let Some(l4) = parsed.l4_offset() {
        assert!(l4 <= parsed.l3_end().expect("an L4 offset implies a valid L3"));
    }
    if let Some(p) = parsed.payload_offset() {
        assert!(parsed.l4_offset().unwrap() < p && p <= parsed.l3_end().unwrap());
    }
    if parsed.error.is_none() && len >= 14 {
        assert!(parsed.l3_offset().is_some());
    }
    // The same frame parsed again gives the same key (no state leaks through the key).
    let mut again = FlowKey {
        in_port: 1,
        tun_id: 2,
        ..FlowKey::default()
    };
    assert_eq!(extract(data, &mut again), parsed);
    again.in_port = 0;
    again.tun_id = 0;
    assert_eq!(again, key);

    let mut frame = data.to_vec();
    let _ = rewrite::set_ipv4_src(
        &mut frame,
        &parsed,
        [1, 2, 3, 4].into(),
        L4Checksum::Complete,
    );
    let _ = rewrite::set_ipv4_dst(
        &mut frame,
        &parsed,
        [5, 6, 7, 8].into(),
        L4Checksum::Partial,
    );
    let _ = rewrite::set_l4_src_port(&mut frame, &parsed, 1, L4Checksum::Complete);
    let _ = rewrite::set_l4_dst_port(&mut frame, &parsed, 2, L4Checksum::Partial);
    let _ = rewrite::dec_ttl(&mut frame, &parsed);
    let _ = rewrite::set_nd_target(&mut frame, &parsed, [7; 16]);
    let _ = rewrite::set_nd_lla(&mut frame, &parsed, false, [1; 6]);
    let _ = rewrite::set_nd_lla(&mut frame, &parsed, true, [2; 6]);
    let _ = rewrite::set_nd_lla(&mut frame[..len / 2], &parsed, true, [3; 6]);
    let _ = rewrite::set_ipv4_src(
        &mut frame[..len / 2],
        &parsed,
        [1, 2, 3, 4].into(),
        L4Checksum::Complete,
    );
    let _ = rewrite::set_l4_src_port(&mut frame[..len / 2], &parsed, 9, L4Checksum::Complete);
    // ICMP: the quote an error carries (conntrack reads it for every ICMP packet it tracks)
    // and the NAT rewrites of echo identifiers and quotes.
    if let Some(l4) = parsed.l4_offset() {
        let message = &data[l4..parsed.l3_end().unwrap_or(len).min(len)];
        if let Ok(p) = encap::wire::icmpv6::Packet::new_checked(message)
            && let Some(q) = p.quoted_header()
        {
            assert!(q.l4_offset >= 40);
        }
        if let Ok(p) = encap::wire::icmpv4::Packet::new_checked(message) {
            let _ = p.quoted_header();
        }
    }
    let _ = rewrite::set_icmpv4_echo_id(&mut frame, &parsed, 3);
    let _ = rewrite::set_icmpv6_echo_id(&mut frame, &parsed, 3);
    let _ = rewrite::set_icmpv4_quoted(&mut frame, &parsed, [1; 4].into(), [2; 4].into(), 5, 6);
    let _ = rewrite::set_icmpv6_quoted(&mut frame, &parsed, [1; 16], [2; 16], 5, 6);
    let _ = rewrite::set_icmpv6_quoted(&mut frame[..len / 2], &parsed, [1; 16], [2; 16], 5, 6);
});
