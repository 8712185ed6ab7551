//! The hashes and choices of the Nicira `multipath` and `bundle` actions, bit for bit as Open
//! vSwitch 3.1 computes them (`lib/flow.c` `flow_hash_fields` and `flow_mask_hash_fields`,
//! `lib/multipath.c`, `lib/bundle.c`, `lib/jhash.c`, and `lib/hash.h` in its portable
//! "mhash" form, the one the packaged x86-64 build uses): the same packet must take the same
//! link or member as on Open vSwitch, so the bytes hashed, their order and layout (Open
//! vSwitch hashes C structs with network-order fields, read as little-endian words on x86)
//! are reproduced here.
//!
//! The hashes read only the slow path's key; [`mask_hash_fields`] un-wildcards what they read,
//! so a megaflow never serves a packet whose hashed fields differ.

use encap::FlowKey;
use encap::flowkey::{FRAG_ANY, FRAG_LATER};
use flowtable::action::{HashFields, MultipathAlgorithm};

const ETH_TYPE_IP: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;
const VLAN_VID_MASK: u16 = 0x0fff;

/// MurmurHash3's scrambling of one data word before it enters the hash.
fn mhash_scramble(data: u32) -> u32 {
    data.wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593)
}

fn mhash_add(hash: u32, data: u32) -> u32 {
    // A zero word leaves the hash as it is before the mixing step (Open vSwitch's shortcut).
    let hash = if data == 0 {
        hash
    } else {
        hash ^ mhash_scramble(data)
    };
    hash.rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

fn mhash_finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

fn hash_add64(hash: u32, data: u64) -> u32 {
    mhash_add(mhash_add(hash, data as u32), (data >> 32) as u32)
}

fn hash_finish(hash: u32, fin: u32) -> u32 {
    mhash_finish(hash ^ fin)
}

/// Open vSwitch's `hash_2words`.
pub fn hash_2words(x: u32, y: u32) -> u32 {
    hash_finish(mhash_add(mhash_add(x, 0), y), 8)
}

fn jhash_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn jhash_final(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Adds the three little-endian words of a 12-byte block to `a`, `b`, `c`.
fn jhash_add_block(a: &mut u32, b: &mut u32, c: &mut u32, block: &[u8]) {
    *a = a.wrapping_add(le32(&block[0..]));
    *b = b.wrapping_add(le32(&block[4..]));
    *c = c.wrapping_add(le32(&block[8..]));
}

/// Open vSwitch's `jhash_bytes` (Bob Jenkins' lookup3; a length that is a multiple of 12
/// ends with a mix, not a final, unlike lookup3's `hashlittle`).
pub fn jhash_bytes(p: &[u8], basis: u32) -> u32 {
    let mut a = 0xdead_beef_u32
        .wrapping_add(p.len() as u32)
        .wrapping_add(basis);
    let (mut b, mut c) = (a, a);
    let mut rest = p;
    while rest.len() >= 12 {
        jhash_add_block(&mut a, &mut b, &mut c, rest);
        jhash_mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if !rest.is_empty() {
        let mut tmp = [0u8; 12];
        tmp[..rest.len()].copy_from_slice(rest);
        jhash_add_block(&mut a, &mut b, &mut c, &tmp);
        jhash_final(&mut a, &mut b, &mut c);
    }
    c
}

/// The VLAN ids of the packet's tags, XORed (Open vSwitch keeps two tags; the key keeps the
/// outer one).
fn vlan_vid(k: &FlowKey) -> u16 {
    k.vlan_tci & VLAN_VID_MASK
}

/// The source XOR destination address, as the 16 bytes of Open vSwitch's union of an IPv4
/// (first 4 bytes) and an IPv6 address; all zero for other packets.
fn l3_xor(k: &FlowKey) -> [u8; 16] {
    let mut a = [0u8; 16];
    match k.eth_type {
        ETH_TYPE_IP => a[..4].copy_from_slice(&(k.nw_src ^ k.nw_dst).to_be_bytes()),
        ETH_TYPE_IPV6 => {
            for (i, x) in a.iter_mut().enumerate() {
                *x = k.ipv6_src[i] ^ k.ipv6_dst[i];
            }
        }
        _ => {}
    }
    a
}

fn eth_xor(k: &FlowKey) -> [u8; 6] {
    let mut e = [0u8; 6];
    for (i, x) in e.iter_mut().enumerate() {
        *x = k.eth_src[i] ^ k.eth_dst[i];
    }
    e
}

/// `flow_hash_symmetric_l4`: jhash of a zeroed 32-byte struct { addr (16), eth_type,
/// vlan_tci, tp_port (be16 each), eth_addr (6), ip_proto }.
fn symmetric_l4(k: &FlowKey, basis: u32) -> u32 {
    let mut f = [0u8; 32];
    let is_ip = matches!(k.eth_type, ETH_TYPE_IP | ETH_TYPE_IPV6);
    f[..16].copy_from_slice(&l3_xor(k));
    f[16..18].copy_from_slice(&k.eth_type.to_be_bytes());
    f[18..20].copy_from_slice(&vlan_vid(k).to_be_bytes());
    // The ports of a first fragment count too (Open vSwitch hides them from table lookups
    // only); a later fragment has none.
    if is_ip && matches!(k.nw_proto, IPPROTO_TCP | IPPROTO_SCTP) {
        f[20..22].copy_from_slice(&(k.tp_src ^ k.tp_dst).to_be_bytes());
    }
    f[22..28].copy_from_slice(&eth_xor(k));
    if is_ip {
        f[28] = k.nw_proto;
    }
    jhash_bytes(&f, basis)
}

/// `flow_hash_symmetric_l2`: for packets that are not IP.
fn symmetric_l2(k: &FlowKey, basis: u32) -> u32 {
    let t = k.eth_type.to_be_bytes();
    let v = vlan_vid(k).to_be_bytes();
    let e = eth_xor(k);
    let mut h = basis;
    h = mhash_add(h, u32::from_le_bytes([t[0], t[1], v[0], v[1]]));
    h = mhash_add(h, u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
    h = mhash_add(h, u32::from_le_bytes([e[4], e[5], 0, 0]));
    hash_finish(h, basis)
}

/// `flow_hash_symmetric_l3l4`.
fn symmetric_l3l4(k: &FlowKey, basis: u32, udp: bool) -> u32 {
    let mut h = basis;
    match k.eth_type {
        ETH_TYPE_IP => {
            h = mhash_add(h, u32::from_le_bytes((k.nw_src ^ k.nw_dst).to_be_bytes()));
        }
        ETH_TYPE_IPV6 => {
            let x = l3_xor(k);
            for half in x.chunks_exact(8) {
                h = hash_add64(h, u64::from_le_bytes(half.try_into().expect("8 bytes")));
            }
        }
        _ => return symmetric_l2(k, basis),
    }
    h = mhash_add(h, u32::from(k.nw_proto));
    let l4 = matches!(k.nw_proto, IPPROTO_TCP | IPPROTO_SCTP) || (udp && k.nw_proto == IPPROTO_UDP);
    if k.nw_frag & FRAG_ANY == 0 && l4 {
        let x = k.tp_src ^ k.tp_dst;
        h = mhash_add(h, u32::from(u16::from_le_bytes(x.to_be_bytes())));
    }
    hash_finish(h, basis)
}

/// `flow_hash_symmetric_l3`: jhash of a zeroed 20-byte struct { addr (16), eth_type }.
fn symmetric_l3(k: &FlowKey, basis: u32) -> u32 {
    let mut f = [0u8; 20];
    f[..16].copy_from_slice(&l3_xor(k));
    f[16..18].copy_from_slice(&k.eth_type.to_be_bytes());
    jhash_bytes(&f, basis)
}

/// Open vSwitch's `flow_hash_fields`.
pub fn flow_hash_fields(k: &FlowKey, fields: HashFields, basis: u16) -> u32 {
    let basis = u32::from(basis);
    match fields {
        HashFields::EthSrc => jhash_bytes(&k.eth_src, basis),
        HashFields::SymmetricL4 => symmetric_l4(k, basis),
        HashFields::SymmetricL3L4 => symmetric_l3l4(k, basis, false),
        HashFields::SymmetricL3L4Udp => symmetric_l3l4(k, basis, true),
        HashFields::NwSrc => addr_hash(k, true, basis),
        HashFields::NwDst => addr_hash(k, false, basis),
        HashFields::SymmetricL3 => symmetric_l3(k, basis),
    }
}

/// jhash of the packet's source (`src`) or destination IP address; `basis` when it has none.
fn addr_hash(k: &FlowKey, src: bool, basis: u32) -> u32 {
    let (v4, v6) = if src {
        (k.nw_src, &k.ipv6_src)
    } else {
        (k.nw_dst, &k.ipv6_dst)
    };
    match k.eth_type {
        ETH_TYPE_IP => jhash_bytes(&v4.to_be_bytes(), basis),
        ETH_TYPE_IPV6 => jhash_bytes(v6, basis),
        _ => basis,
    }
}

/// Un-wildcards in `wc` every key bit [`flow_hash_fields`] read for `k` (Open vSwitch's
/// `flow_mask_hash_fields`, plus the fragment bits and EtherType our hashes branch on).
pub fn mask_hash_fields(k: &FlowKey, wc: &mut FlowKey, fields: HashFields) {
    wc.eth_type = u16::MAX;
    let ip = matches!(k.eth_type, ETH_TYPE_IP | ETH_TYPE_IPV6);
    let addrs = |wc: &mut FlowKey, src: bool, dst: bool| match k.eth_type {
        ETH_TYPE_IP => {
            if src {
                wc.nw_src = u32::MAX;
            }
            if dst {
                wc.nw_dst = u32::MAX;
            }
        }
        ETH_TYPE_IPV6 => {
            if src {
                wc.ipv6_src = [0xff; 16];
            }
            if dst {
                wc.ipv6_dst = [0xff; 16];
            }
        }
        _ => {}
    };
    let ports = |wc: &mut FlowKey| {
        wc.tp_src = u16::MAX;
        wc.tp_dst = u16::MAX;
    };
    // What the symmetric hashes read of the Ethernet header.
    let l2 = |wc: &mut FlowKey| {
        wc.eth_src = [0xff; 6];
        wc.eth_dst = [0xff; 6];
        wc.vlan_tci |= VLAN_VID_MASK;
    };
    match fields {
        HashFields::EthSrc => wc.eth_src = [0xff; 6],
        HashFields::SymmetricL4 => {
            l2(wc);
            addrs(wc, true, true);
            if ip {
                wc.nw_proto = u8::MAX;
                if matches!(k.nw_proto, IPPROTO_TCP | IPPROTO_SCTP) {
                    ports(wc);
                }
            }
        }
        HashFields::SymmetricL3L4 | HashFields::SymmetricL3L4Udp => {
            if !ip {
                // The L2 hash.
                l2(wc);
                return;
            }
            addrs(wc, true, true);
            wc.nw_proto = u8::MAX;
            let udp = fields == HashFields::SymmetricL3L4Udp && k.nw_proto == IPPROTO_UDP;
            if matches!(k.nw_proto, IPPROTO_TCP | IPPROTO_SCTP) || udp {
                // A fragment's ports are not hashed: the fragment bits decide.
                wc.nw_frag |= FRAG_ANY | FRAG_LATER;
                if k.nw_frag & FRAG_ANY == 0 {
                    ports(wc);
                }
            }
        }
        HashFields::NwSrc => addrs(wc, true, false),
        HashFields::NwDst => addrs(wc, false, true),
        HashFields::SymmetricL3 => addrs(wc, true, true),
    }
}

/// `multipath_algorithm`: the link (0..n_links) for `hash`.
pub fn multipath_link(hash: u32, algorithm: MultipathAlgorithm, n_links: u32, arg: u32) -> u16 {
    match algorithm {
        MultipathAlgorithm::ModuloN => (hash % n_links) as u16,
        MultipathAlgorithm::HashThreshold => {
            if n_links == 1 {
                0
            } else {
                (hash / (u32::MAX / n_links + 1)) as u16
            }
        }
        MultipathAlgorithm::Hrw if n_links <= 64 => {
            let mut best = 0u16;
            let mut best_weight = hash_2words(hash, 0);
            for link in 1..n_links {
                let w = hash_2words(hash, link);
                if w > best_weight {
                    best = link as u16;
                    best_weight = w;
                }
            }
            best
        }
        MultipathAlgorithm::Hrw => iter_hash(hash, n_links, 0),
        MultipathAlgorithm::IterHash => iter_hash(hash, n_links, arg),
    }
}

/// `algorithm_iter_hash`: rehash until the value modulo a power of two (or `modulo`, when it
/// is between n_links and twice that) is a link. Half or more of the values are links, so
/// this ends after a few rounds.
fn iter_hash(hash: u32, n_links: u32, modulo: u32) -> u16 {
    let modulo = if modulo < n_links || modulo / 2 > n_links {
        n_links.next_power_of_two()
    } else {
        modulo
    };
    let mut i = 0u32;
    loop {
        let link = (hash_2words(hash, i) % modulo) as u16;
        i = i.wrapping_add(1);
        if u32::from(link) < n_links {
            return link;
        }
    }
}

/// `bundle`'s `hrw` weight of member number `i` (its index in the member list).
pub fn bundle_weight(i: usize, flow_hash: u32) -> u32 {
    hash_2words(i as u32, flow_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash_matches_lookup3_vectors() {
        // Bob Jenkins' published lookup3 `hashlittle` values (30 bytes: no multiple of 12).
        let s = b"Four score and seven years ago";
        assert_eq!(jhash_bytes(s, 0), 0x1777_0551);
        assert_eq!(jhash_bytes(s, 1), 0xcd62_8161);
        assert_eq!(jhash_bytes(b"", 0), 0xdead_beef);
    }

    /// MurmurHash3_x86_32, written from its reference: `hash_2words(x, y)` is the hash of
    /// the bytes of the words (0, y) with seed x.
    fn murmur3(data: &[u8], seed: u32) -> u32 {
        let mut h = seed;
        let blocks = data.chunks_exact(4);
        let tail = blocks.remainder();
        for b in blocks {
            h = mhash_add(h, le32(b));
        }
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k |= u32::from(b) << (8 * i);
        }
        if !tail.is_empty() {
            h ^= mhash_scramble(k);
        }
        mhash_finish(h ^ data.len() as u32)
    }

    #[test]
    fn hash_2words_is_murmur3_of_the_two_words() {
        assert_eq!(
            murmur3(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        for (x, y) in [(0u32, 0u32), (1, 2), (0xdead_beef, 7), (u32::MAX, u32::MAX)] {
            let mut bytes = [0u8; 8];
            bytes[4..].copy_from_slice(&y.to_le_bytes());
            assert_eq!(hash_2words(x, y), murmur3(&bytes, x), "{x} {y}");
        }
    }

    #[test]
    fn algorithms_stay_in_range() {
        for n in [1u32, 2, 3, 7, 64, 65, 1000, 65536] {
            for h in [0u32, 1, 0xdead_beef, u32::MAX, 12345] {
                for alg in MultipathAlgorithm::ALL {
                    for arg in [0u32, n, n + 1, 3 * n] {
                        let l = multipath_link(h, alg, n, arg);
                        assert!(u32::from(l) < n, "{alg:?} n={n} h={h} arg={arg}: {l}");
                    }
                }
            }
        }
    }

    #[test]
    fn symmetric_hashes_ignore_direction() {
        let mut k = FlowKey {
            eth_type: ETH_TYPE_IP,
            nw_proto: IPPROTO_TCP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            tp_src: 1234,
            tp_dst: 80,
            eth_src: [0, 0, 0, 0, 0, 1],
            eth_dst: [0, 0, 0, 0, 0, 2],
            ..FlowKey::default()
        };
        let mut r = k;
        r.nw_src = k.nw_dst;
        r.nw_dst = k.nw_src;
        r.tp_src = k.tp_dst;
        r.tp_dst = k.tp_src;
        r.eth_src = k.eth_dst;
        r.eth_dst = k.eth_src;
        for f in [
            HashFields::SymmetricL4,
            HashFields::SymmetricL3L4,
            HashFields::SymmetricL3L4Udp,
            HashFields::SymmetricL3,
        ] {
            assert_eq!(
                flow_hash_fields(&k, f, 7),
                flow_hash_fields(&r, f, 7),
                "{f:?}"
            );
        }
        // The ports count for TCP.
        let before = flow_hash_fields(&k, HashFields::SymmetricL4, 0);
        k.tp_src = 4321;
        assert_ne!(before, flow_hash_fields(&k, HashFields::SymmetricL4, 0));
    }

    #[test]
    fn the_mask_covers_what_the_hash_reads() {
        // Flipping any key bit outside the mask must not change the hash.
        let base = FlowKey {
            eth_type: ETH_TYPE_IP,
            nw_proto: IPPROTO_UDP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            tp_src: 1234,
            tp_dst: 53,
            vlan_tci: 0x1005,
            eth_src: [0, 0, 0, 0, 0, 1],
            eth_dst: [0, 0, 0, 0, 0, 2],
            ..FlowKey::default()
        };
        let mut v6 = base;
        v6.eth_type = ETH_TYPE_IPV6;
        v6.ipv6_src[15] = 1;
        v6.ipv6_dst[15] = 2;
        let mut tcp = base;
        tcp.nw_proto = IPPROTO_TCP;
        let mut arp = base;
        arp.eth_type = 0x0806;
        for key in [base, v6, tcp, arp] {
            for f in HashFields::ALL {
                let mut wc = FlowKey::default();
                mask_hash_fields(&key, &mut wc, f);
                let h = flow_hash_fields(&key, f, 3);
                for w in 0..FlowKey::WORDS {
                    for bit in 0..64 {
                        if (wc.words()[w] >> bit) & 1 == 1 {
                            continue;
                        }
                        let mut k2 = key;
                        k2.words_mut()[w] ^= 1 << bit;
                        assert_eq!(
                            h,
                            flow_hash_fields(&k2, f, 3),
                            "{f:?}: word {w} bit {bit} is read but not masked"
                        );
                    }
                }
            }
        }
    }
}
