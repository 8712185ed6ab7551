//! Internet checksums (RFC 1071): the full one's-complement sum, pseudo-headers for IPv4 and
//! IPv6, and incremental updates (RFC 1624) for rewrites of addresses, ports and TTL.
//!
//! Vocabulary: a *sum* is the un-complemented one's-complement sum, kept in a `u32` (or `u64`)
//! accumulator and folded to 16 bits at the end; a *checksum* is the complement of the folded
//! sum, as written on the wire.
//!
//! Incremental updates follow RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`. The result can
//! differ from a full recomputation only in the representation of zero (0x0000 vs 0xffff).
//!
//! "Checksum not ready" (partial checksum offload): a packet handed over by a TAP with a vnet
//! header, or built for TX offload, carries in its L4 checksum field only the *non-complemented*
//! pseudo-header sum; the NIC or kernel finishes it. For such a packet an address rewrite must
//! update that partial sum with [`update_partial_u32`] (the addresses are in the pseudo-header),
//! and a port rewrite must leave it alone (ports are not in the pseudo-header).

use core::net::{Ipv4Addr, Ipv6Addr};

/// Adds the 16-bit big-endian words of `data` to `initial` (an odd final byte is padded with a
/// zero byte). The result is not folded; fold it with [`fold`].
///
/// The words are summed in the machine's byte order, 8 bytes per step (the halves of each u64
/// into a u64 accumulator, which the compiler vectorises), and the folded sum is byte-swapped
/// once at the end: the one's-complement sum commutes with swapping the bytes of every word
/// (RFC 1071 section 2(B)). About twice as fast as swapping each word on the way in.
#[inline]
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    // Each step adds two values below 2^32: no overflow for any buffer below 2^34 bytes.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_ne_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        // The odd byte is the high byte of a big-endian word padded with zero.
        acc += u64::from(u16::from_ne_bytes([rest[i], 0]));
    }
    // Fold to 16 bits with end-around carry (a non-zero sum never folds to 0), then put the
    // bytes in network order.
    let mut f = (acc & 0xffff_ffff) + (acc >> 32);
    f = (f & 0xffff) + (f >> 16);
    f = (f & 0xffff) + (f >> 16);
    f = (f & 0xffff) + (f >> 16);
    let be = u16::from_be(f as u16);
    let total = u64::from(initial) + u64::from(be);
    let folded = ((total & 0xffff_ffff) + (total >> 32)) as u32;
    (folded & 0xffff) + (folded >> 16)
}

/// Folds a 32-bit accumulator to a 16-bit one's-complement sum.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum to write into an IPv4 header whose checksum field is zero.
#[inline]
pub fn ipv4_header(header: &[u8]) -> u16 {
    !fold(sum(0, header))
}

/// The IPv4 pseudo-header sum (source, destination, protocol, L4 length), not folded.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + protocol as u32 + l4_len as u32
}

/// The IPv6 pseudo-header sum (RFC 8200 section 8.1), not folded.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, l4_len: u32) -> u32 {
    let acc = sum(0, &src.octets()) + sum(0, &dst.octets());
    acc + (l4_len >> 16) + (l4_len & 0xffff) + next_header as u32
}

/// The checksum of an L4 segment (TCP, UDP, ICMPv6...) whose checksum field is zero, given
/// its pseudo-header sum. A UDP caller must write 0xffff in place of a 0 result.
#[inline]
pub fn finish(pseudo: u32, segment: &[u8]) -> u16 {
    !fold(sum(pseudo, segment))
}

/// TCP/UDP checksum over IPv4 (segment with its checksum field zeroed).
pub fn l4_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    finish(
        pseudo_header_v4(src, dst, protocol, segment.len() as u16),
        segment,
    )
}

/// TCP/UDP/ICMPv6 checksum over IPv6 (segment with its checksum field zeroed).
pub fn l4_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, segment: &[u8]) -> u16 {
    finish(
        pseudo_header_v6(src, dst, next_header, segment.len() as u32),
        segment,
    )
}

/// ICMPv4 checksum (no pseudo-header) of a message whose checksum field is zero.
pub fn icmpv4(message: &[u8]) -> u16 {
    !fold(sum(0, message))
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word of the covered data changed from `old`
/// to `new`.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(!checksum as u32 + !old as u32 + new as u32)
}

/// The checksum after a 32-bit (word-aligned) field changed from `old` to `new`.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let acc = !checksum as u32 + (!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    !fold(acc)
}

/// The checksum after an IPv4 address changed.
#[inline]
pub fn update_addr_v4(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(checksum, old.into(), new.into())
}

/// The checksum after an IPv6 address changed.
pub fn update_addr_v6(checksum: u16, old: &Ipv6Addr, new: &Ipv6Addr) -> u16 {
    let o = old.octets();
    let n = new.octets();
    let mut acc = !checksum as u32;
    for i in (0..16).step_by(2) {
        acc += !u16::from_be_bytes([o[i], o[i + 1]]) as u32;
        acc += u16::from_be_bytes([n[i], n[i + 1]]) as u32;
    }
    !fold(acc)
}

/// For a partial ("not ready") checksum field, which holds the non-complemented pseudo-header
/// sum: the new partial sum after a 32-bit pseudo-header field (an IPv4 address) changed.
#[inline]
pub fn update_partial_u32(partial: u16, old: u32, new: u32) -> u16 {
    !update_u32(!partial, old, new)
}

/// For a partial checksum field: the new partial sum after a 16-bit pseudo-header word changed.
#[inline]
pub fn update_partial_u16(partial: u16, old: u16, new: u16) -> u16 {
    !update_u16(!partial, old, new)
}

/// The UDP-over-IPv4 rule: a computed checksum of 0 is sent as 0xffff, because 0 means "no
/// checksum".
#[inline]
pub fn udp_nonzero(checksum: u16) -> u16 {
    if checksum == 0 { 0xffff } else { checksum }
}

/// CRC32c (Castagnoli, reflected, as SCTP uses) of `data`, complemented: the value whose
/// little-endian bytes are the SCTP checksum field. Table-driven; only SCTP rewrites use it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    /// The textbook scalar reference: 16-bit words added in a u32 with end-around carry.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                (c[0] as u16) << 8
            };
            acc += w as u32;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(
            fold(sum(0, &data[..7])),
            fold(sum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0x00]))
        );
    }

    #[test]
    fn known_ipv4_header() {
        // Wikipedia's IPv4 header checksum example: checksum b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(fold(sum(0, &h)), 0xffff);
    }

    /// Same checksum, allowing only the two representations of zero to differ.
    fn same(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn full_sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(!fold(sum(0, &data)), reference(&data));
        }

        /// With a starting value, at any alignment, and over long buffers of 0xff bytes (the
        /// largest words: the accumulator must not overflow and the fold must carry right).
        #[test]
        fn sum_with_initial_matches_reference(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            skip in 0usize..8,
            initial in any::<u32>(),
            ones in any::<bool>(),
        ) {
            let mut data = data;
            if ones {
                data.iter_mut().for_each(|b| *b = 0xff);
            }
            let d = &data[skip.min(data.len())..];
            // The reference adds `initial` folded as one more word.
            let mut acc = u32::from(!reference(d));
            acc += (initial & 0xffff) + (initial >> 16);
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            let got = fold(sum(initial, d));
            prop_assert!(got == acc as u16 || (acc == 0 && got == 0xffff) || (acc == 0xffff && got == 0),
                "{got:#x} vs {acc:#x}");
            // A non-zero sum never folds to 0 (checksum_ok compares with 0xffff).
            if d.iter().any(|&b| b != 0) {
                prop_assert_ne!(got, 0);
            }
        }

        #[test]
        fn update_u16_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 2..64),
            at in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            let words = data.len() / 2;
            let i = at.index(words) * 2;
            let before = reference(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update_u16(before, old, new);
            prop_assert!(same(updated, reference(&data)), "{updated:#x} vs {:#x}", reference(&data));
        }

        #[test]
        fn update_u32_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..64),
            at in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            let i = at.index(data.len() / 2 - 1) * 2;
            let before = reference(&data);
            let old = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            data[i..i + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert!(same(update_u32(before, old, new), reference(&data)));
        }

        #[test]
        fn update_addr_v6_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 40..41),
            new in any::<[u8; 16]>(),
        ) {
            let before = reference(&data);
            let old: [u8; 16] = data[8..24].try_into().unwrap();
            data[8..24].copy_from_slice(&new);
            let updated = update_addr_v6(before, &Ipv6Addr::from(old), &Ipv6Addr::from(new));
            prop_assert!(same(updated, reference(&data)));
        }

        #[test]
        fn partial_update_matches_recomputed_pseudo_header(
            src in any::<u32>(), dst in any::<u32>(), new_src in any::<u32>(), len in any::<u16>(),
        ) {
            let partial = fold(pseudo_header_v4(src.into(), dst.into(), 6, len));
            let updated = update_partial_u32(partial, src, new_src);
            let expected = fold(pseudo_header_v4(new_src.into(), dst.into(), 6, len));
            prop_assert!(same(updated, expected));
        }
    }
}
