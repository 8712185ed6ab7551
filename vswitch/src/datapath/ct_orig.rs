//! `resubmit(port,table,ct)`: the lookup sees the connection's original tuple in place of the
//! packet's addresses, protocol and ports (Open vSwitch's `tuple_swap`); the rule found runs
//! on the packet as it is.

use encap::FlowKey;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

fn is_icmp(key: &FlowKey, proto: u8) -> bool {
    (key.eth_type == 0x0800 && proto == IPPROTO_ICMP)
        || (key.eth_type == 0x86dd && proto == IPPROTO_ICMPV6)
}

/// The key the lookup uses: addresses, protocol and ports swapped with their `ct_*` fields.
/// ICMP keeps its type and code in `icmp_type`/`icmp_code` (the `ct_tp_*` fields hold them
/// for an ICMP connection).
pub fn swapped_key(key: &FlowKey) -> FlowKey {
    let mut k = *key;
    k.nw_proto = key.ct_nw_proto;
    k.ct_nw_proto = key.nw_proto;
    if key.eth_type == 0x0800 {
        (k.nw_src, k.ct_nw_src) = (key.ct_nw_src, key.nw_src);
        (k.nw_dst, k.ct_nw_dst) = (key.ct_nw_dst, key.nw_dst);
    } else {
        (k.ipv6_src, k.ct_ipv6_src) = (key.ct_ipv6_src, key.ipv6_src);
        (k.ipv6_dst, k.ct_ipv6_dst) = (key.ct_ipv6_dst, key.ipv6_dst);
    }
    // The packet's own L4 identifiers, as its ct_tp_* would hold them.
    let (own_src, own_dst) = if is_icmp(key, key.nw_proto) {
        (u16::from(key.icmp_type), u16::from(key.icmp_code))
    } else {
        (key.tp_src, key.tp_dst)
    };
    (k.ct_tp_src, k.ct_tp_dst) = (own_src, own_dst);
    if is_icmp(key, key.ct_nw_proto) {
        k.icmp_type = key.ct_tp_src as u8;
        k.icmp_code = key.ct_tp_dst as u8;
        (k.tp_src, k.tp_dst) = (0, 0);
    } else {
        (k.tp_src, k.tp_dst) = (key.ct_tp_src, key.ct_tp_dst);
        (k.icmp_type, k.icmp_code) = (0, 0);
    }
    k
}

/// Adds to `wc` (the walk's megaflow mask, over the packet's key) what a lookup of the
/// swapped key consulted (`seen`, over the swapped key): each swapped field's bits land on
/// its partner. The L4 fields are pinned whole when any of their bits was read.
pub fn unswap_mask(wc: &mut FlowKey, seen: &FlowKey) {
    let mut rest = *seen;
    rest.nw_proto = 0;
    rest.ct_nw_proto = 0;
    rest.nw_src = 0;
    rest.ct_nw_src = 0;
    rest.nw_dst = 0;
    rest.ct_nw_dst = 0;
    rest.ipv6_src = [0; 16];
    rest.ct_ipv6_src = [0; 16];
    rest.ipv6_dst = [0; 16];
    rest.ct_ipv6_dst = [0; 16];
    rest.tp_src = 0;
    rest.tp_dst = 0;
    rest.ct_tp_src = 0;
    rest.ct_tp_dst = 0;
    rest.icmp_type = 0;
    rest.icmp_code = 0;
    for (w, r) in wc.words_mut().iter_mut().zip(rest.words()) {
        *w |= r;
    }
    wc.ct_nw_proto |= seen.nw_proto;
    wc.nw_proto |= seen.ct_nw_proto;
    wc.ct_nw_src |= seen.nw_src;
    wc.nw_src |= seen.ct_nw_src;
    wc.ct_nw_dst |= seen.nw_dst;
    wc.nw_dst |= seen.ct_nw_dst;
    for i in 0..16 {
        wc.ct_ipv6_src[i] |= seen.ipv6_src[i];
        wc.ipv6_src[i] |= seen.ct_ipv6_src[i];
        wc.ct_ipv6_dst[i] |= seen.ipv6_dst[i];
        wc.ipv6_dst[i] |= seen.ct_ipv6_dst[i];
    }
    if seen.tp_src != 0 || seen.icmp_type != 0 {
        wc.ct_tp_src = u16::MAX;
    }
    if seen.tp_dst != 0 || seen.icmp_code != 0 {
        wc.ct_tp_dst = u16::MAX;
    }
    if seen.ct_tp_src != 0 {
        wc.tp_src = u16::MAX;
        wc.icmp_type = u8::MAX;
    }
    if seen.ct_tp_dst != 0 {
        wc.tp_dst = u16::MAX;
        wc.icmp_code = u8::MAX;
    }
    // Which of the fields above held the ICMP type depends on the protocols.
    if seen.tp_src | seen.tp_dst | seen.ct_tp_src | seen.ct_tp_dst != 0
        || seen.icmp_type | seen.icmp_code != 0
    {
        wc.nw_proto = u8::MAX;
        wc.ct_nw_proto = u8::MAX;
        wc.eth_type = u16::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_tuple_and_maps_the_mask_back() {
        let key = FlowKey {
            eth_type: 0x0800,
            nw_proto: 17,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            tp_src: 1000,
            tp_dst: 53,
            ct_nw_proto: 17,
            ct_nw_src: 0x0a00_0001,
            ct_nw_dst: 0x0a60_0001,
            ct_tp_src: 1000,
            ct_tp_dst: 5353,
            ..FlowKey::default()
        };
        let s = swapped_key(&key);
        assert_eq!((s.nw_dst, s.tp_dst), (0x0a60_0001, 5353));
        assert_eq!((s.ct_nw_dst, s.ct_tp_dst), (0x0a00_0002, 53));
        let seen = FlowKey {
            nw_dst: u32::MAX,
            tp_dst: u16::MAX,
            in_port: u32::MAX,
            ..FlowKey::default()
        };
        let mut wc = FlowKey::default();
        unswap_mask(&mut wc, &seen);
        assert_eq!(wc.ct_nw_dst, u32::MAX);
        assert_eq!(wc.ct_tp_dst, u16::MAX);
        assert_eq!(wc.nw_dst, 0, "the packet's own destination was not read");
        assert_eq!(wc.in_port, u32::MAX);
    }

    #[test]
    fn icmp_connections_look_up_their_type_and_code() {
        let key = FlowKey {
            eth_type: 0x0800,
            nw_proto: 1,
            icmp_type: 0,
            ct_nw_proto: 1,
            ct_tp_src: 8,
            ct_tp_dst: 0,
            ..FlowKey::default()
        };
        let s = swapped_key(&key);
        assert_eq!((s.icmp_type, s.tp_src), (8, 0));
        assert_eq!(s.ct_tp_src, 0, "the packet's own type (echo reply)");
    }
}
