//! The flow hash used to pick backends: a keyed mix of the 5-tuple.

use crate::conntrack::tuple::fmix64;
use encap::flowkey::FlowKey;

/// Hashes source/destination address, protocol and ports. Same inputs and seed give the same
/// value on every node, so all nodes pick the same backend for a flow.
pub fn five_tuple_hash(
    src: &[u8; 16],
    dst: &[u8; 16],
    proto: u8,
    sport: u16,
    dport: u16,
    seed: u64,
) -> u64 {
    let word = |b: &[u8; 16], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let mut h = seed ^ 0x243f_6a88_85a3_08d3;
    for w in [
        word(src, 0),
        word(src, 8),
        word(dst, 0),
        word(dst, 8),
        (proto as u64) << 32 | (sport as u64) << 16 | dport as u64,
    ] {
        h = fmix64(h ^ w);
    }
    h
}

/// [`five_tuple_hash`] of a parsed packet (IPv4 addresses widened to 16 bytes).
pub fn flow_hash(key: &FlowKey, seed: u64) -> u64 {
    let (src, dst) = if key.eth_type == 0x86dd {
        (key.ipv6_src, key.ipv6_dst)
    } else {
        (
            (key.nw_src as u128).to_be_bytes(),
            (key.nw_dst as u128).to_be_bytes(),
        )
    };
    five_tuple_hash(&src, &dst, key.nw_proto, key.tp_src, key.tp_dst, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_moves_the_hash() {
        let k = FlowKey {
            eth_type: 0x0800,
            nw_src: 1,
            nw_dst: 2,
            nw_proto: 6,
            tp_src: 3,
            tp_dst: 4,
            ..FlowKey::default()
        };
        let h = flow_hash(&k, 0);
        assert_eq!(h, flow_hash(&k, 0));
        for v in [
            FlowKey { nw_src: 9, ..k },
            FlowKey { nw_dst: 9, ..k },
            FlowKey { nw_proto: 17, ..k },
            FlowKey { tp_src: 9, ..k },
            FlowKey { tp_dst: 9, ..k },
        ] {
            assert_ne!(flow_hash(&v, 0), h);
        }
        assert_ne!(flow_hash(&k, 1), h);
    }
}
