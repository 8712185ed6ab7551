//! The switch's one flow hash: a fast, non-cryptographic hash of a flow's 5-tuple, for
//! select-group bucket choice and Maglev lookups. It reads only addresses (v4 and v6),
//! protocol and ports, so every packet of a connection gets the same value whatever the other
//! key fields hold. [`frame_flow_hash`] mixes the same fields read straight from a frame, for
//! the tunnel's UDP source port (docs/architecture.md, "RSS for busy ports").

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

/// The mix of one tuple: IPv4 addresses, IPv6 addresses (folded), protocol and ports.
#[inline(always)]
fn mix_tuple(v4: u64, v6: u64, l4: u64, seed: u64) -> u32 {
    let h = fold_mul(v4 ^ K0 ^ seed, v6 ^ K1);
    let h = fold_mul(h ^ l4, K2);
    (h ^ (h >> 32)) as u32
}

/// Hash of (nw_src, nw_dst, ipv6_src, ipv6_dst, nw_proto, tp_src, tp_dst), with `seed`.
#[inline]
pub fn flow_hash_seeded(key: &FlowKey, seed: u64) -> u32 {
    let v4 = ((key.nw_src as u64) << 32) | key.nw_dst as u64;
    let v6 = half(&key.ipv6_src) ^ half(&key.ipv6_dst).rotate_left(32);
    let l4 = ((key.nw_proto as u64) << 32) | ((key.tp_src as u64) << 16) | key.tp_dst as u64;
    mix_tuple(v4, v6, l4, seed)
}

/// Protocols whose first four bytes are the source and destination ports.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136) // TCP, UDP, SCTP, UDP-Lite
}

/// A flow hash read straight from an Ethernet frame (behind up to two VLAN tags), for a
/// choice that must keep each flow on one path, such as a tunnel's UDP source port (RFC 7348
/// §5, as Linux's `udp_flow_src_port`): IPv4 and IPv6 addresses, protocol and, where the
/// packet is not a fragment and carries them, the ports. Every fragment of a datagram hashes
/// by its addresses and protocol, as do IPv6 packets with extension headers; a frame that is
/// not IP hashes by its MAC addresses and EtherType. Nothing is allocated; a frame too short
/// for a header hashes by what it has.
pub fn frame_flow_hash(frame: &[u8]) -> u32 {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let be32 = |at: usize| {
        frame
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut l3 = 14;
    let mut ethertype = be16(12);
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            ethertype = be16(l3 + 2);
            l3 += 4;
        }
    }
    let ports = |proto: u8, at: usize| {
        if has_ports(proto) && frame.len() >= at + 4 {
            u64::from(be32(at))
        } else {
            0
        }
    };
    match ethertype {
        0x0800 if frame.len() >= l3 + 20 && frame[l3] >> 4 == 4 => {
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            let proto = frame[l3 + 9];
            let fragment = be16(l3 + 6) & 0x3fff != 0;
            let v4 = (u64::from(be32(l3 + 12)) << 32) | u64::from(be32(l3 + 16));
            let l4 = if fragment || ihl < 20 {
                0
            } else {
                ports(proto, l3 + ihl)
            };
            mix_tuple(v4, 0, (u64::from(proto) << 32) | l4, 0)
        }
        0x86dd if frame.len() >= l3 + 40 && frame[l3] >> 4 == 6 => {
            let addr = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&frame[at..at + 16]);
                a
            };
            let v6 = half(&addr(l3 + 8)) ^ half(&addr(l3 + 24)).rotate_left(32);
            let proto = frame[l3 + 6];
            mix_tuple(0, v6, (u64::from(proto) << 32) | ports(proto, l3 + 40), 0)
        }
        _ => {
            let mac = |at: usize| {
                let mut w = [0u8; 8];
                if let Some(m) = frame.get(at..at + 6) {
                    w[..6].copy_from_slice(m);
                }
                u64::from_be_bytes(w)
            };
            mix_tuple(mac(0), mac(6), u64::from(ethertype), 0)
        }
    }
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

    use crate::build::FrameBuilder;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn udp4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        FrameBuilder::eth(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(sport, dport)
            .payload(payload)
            .build()
    }

    #[test]
    fn frame_hash_follows_the_flow_not_the_payload() {
        let a = frame_flow_hash(&udp4(5001, 80, b"one"));
        assert_eq!(a, frame_flow_hash(&udp4(5001, 80, b"another payload")));
        assert_ne!(a, frame_flow_hash(&udp4(5002, 80, b"one")));
        assert_ne!(a, frame_flow_hash(&udp4(5001, 81, b"one")));
        // Behind two tags: the same flow.
        let tagged = FrameBuilder::eth(MAC_A, MAC_B)
            .tag(0x88a8, 5)
            .vlan(7)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(5001, 80)
            .payload(b"one")
            .build();
        assert_eq!(a, frame_flow_hash(&tagged));
        let v6 = |sport: u16| {
            FrameBuilder::eth(MAC_A, MAC_B)
                .ipv6([0xfd00, 0, 0, 0, 0, 0, 0, 1], [0xfd00, 0, 0, 0, 0, 0, 0, 2])
                .tcp(sport, 443, 0x10)
                .payload(b"x")
                .build()
        };
        assert_eq!(frame_flow_hash(&v6(40000)), frame_flow_hash(&v6(40000)));
        assert_ne!(frame_flow_hash(&v6(40000)), frame_flow_hash(&v6(40001)));
    }

    #[test]
    fn frame_hash_keeps_fragments_of_a_datagram_together() {
        let frag = |more: bool, offset: u16, sport: u16| {
            FrameBuilder::eth(MAC_A, MAC_B)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
                .fragment(more, offset)
                .udp(sport, 80)
                .payload(&[7; 64])
                .build()
        };
        // A later fragment's first bytes are payload, not ports.
        assert_eq!(
            frame_flow_hash(&frag(true, 0, 5001)),
            frame_flow_hash(&frag(false, 72, 4242))
        );
    }

    #[test]
    fn frame_hash_of_short_and_non_ip_frames() {
        let arp = FrameBuilder::eth(MAC_A, MAC_B)
            .ethertype(0x0806)
            .payload(&[0; 28])
            .build();
        let mut other = arp.clone();
        other[6] ^= 1;
        assert_ne!(frame_flow_hash(&arp), frame_flow_hash(&other));
        // Cut anywhere: hashed by what is there, never out of bounds.
        let whole = udp4(1, 2, b"x");
        for len in 0..=whole.len() {
            frame_flow_hash(&whole[..len]);
        }
        assert_ne!(frame_flow_hash(&whole[..30]), frame_flow_hash(&whole));
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
