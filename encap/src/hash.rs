//! The switch's one flow hash: a fast, non-cryptographic hash of a flow's 5-tuple, for
//! select-group bucket choice and Maglev lookups (and, once tunnels vary it, the VXLAN UDP
//! source port: docs/architecture.md, "RSS for busy ports"). It reads only addresses (v4 and v6), protocol and ports, so
//! every packet of a connection gets the same value whatever the other key fields hold.

use crate::FlowKey;

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// 128-bit multiply folded to 64 bits: the mixing step of wyhash-style hashes.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn half(b: &[u8; 16]) -> u64 {
    let lo = u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let hi = u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    lo ^ hi.rotate_left(23)
}

/// Hash of (nw_src, nw_dst, ipv6_src, ipv6_dst, nw_proto, tp_src, tp_dst), with `seed`.
#[inline]
pub fn flow_hash_seeded(key: &FlowKey, seed: u64) -> u32 {
    let v4 = ((key.nw_src as u64) << 32) | key.nw_dst as u64;
    let v6 = half(&key.ipv6_src) ^ half(&key.ipv6_dst).rotate_left(32);
    let l4 = ((key.nw_proto as u64) << 32) | ((key.tp_src as u64) << 16) | key.tp_dst as u64;
    let h = fold_mul(v4 ^ K0 ^ seed, v6 ^ K1);
    let h = fold_mul(h ^ l4, K2);
    (h ^ (h >> 32)) as u32
}

/// MurmurHash3's 64-bit finalizer: a cheap full-avalanche mix for keys that are already one
/// word (ids, folded tuples). Shared so that every table of the switch mixes the same way.
#[inline]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// [`flow_hash_seeded`] with seed 0.
#[inline]
pub fn flow_hash(key: &FlowKey) -> u32 {
    flow_hash_seeded(key, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: u32, dst: u32, sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            nw_src: src,
            nw_dst: dst,
            nw_proto: 6,
            tp_src: sport,
            tp_dst: dport,
            ..FlowKey::default()
        }
    }

    #[test]
    fn depends_on_the_five_tuple_only() {
        let a = key(1, 2, 3, 4);
        let mut b = a;
        b.in_port = 9;
        b.eth_src = [1; 6];
        b.tcp_flags = 0x12;
        b.nw_ttl = 5;
        assert_eq!(flow_hash(&a), flow_hash(&b));
        assert_ne!(flow_hash(&a), flow_hash(&key(1, 2, 3, 5)));
        assert_ne!(flow_hash(&a), flow_hash(&key(2, 1, 3, 4)));
        let mut v6 = a;
        v6.ipv6_src[15] = 1;
        assert_ne!(flow_hash(&a), flow_hash(&v6));
        assert_ne!(flow_hash_seeded(&a, 1), flow_hash(&a));
    }

    #[test]
    fn spreads_sequential_ports_evenly() {
        // 64k flows that differ only in the source port, into 64 buckets by the low bits.
        let mut buckets = [0u32; 64];
        for port in 0..=u16::MAX {
            buckets[(flow_hash(&key(0x0a00_0001, 0x0a00_0002, port, 80)) & 63) as usize] += 1;
        }
        let expected = 65536 / 64;
        for b in buckets {
            assert!(
                b.abs_diff(expected) < expected / 8,
                "bucket {b} vs {expected}"
            );
        }
    }
}
