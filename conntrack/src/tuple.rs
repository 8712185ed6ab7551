//! Connection tuples: the hash key of the connection table.
//!
//! A tuple is zone + L3 family + protocol + addresses + ports. Addresses are stored as 16 wire
//! bytes so IPv4 and IPv6 share one layout (IPv4 uses the first 4 bytes, the rest zero); the
//! family byte keeps an IPv4 and an IPv6 tuple with the same bytes apart. For ICMP echo both
//! ports hold the echo identifier, so the reply tuple is the plain reversal of the original.
//! IPv4 addresses sit in the last four bytes, so range arithmetic on the 128-bit value works
//! for both families.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use encap::hash::fmix64;

/// IP protocol numbers conntrack knows about.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// L3 family of a tuple.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

/// An IPv4 or IPv6 address as wire bytes; IPv4 occupies the last four bytes.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// An IPv4 address from its host-order `u32` (the `FlowKey::nw_src` convention).
    pub const fn v4(host_order: u32) -> Addr {
        Addr((host_order as u128).to_be_bytes())
    }

    /// The IPv4 address in host order (meaningful only for an IPv4 tuple).
    pub const fn v4_host(&self) -> u32 {
        u32::from_be_bytes([self.0[12], self.0[13], self.0[14], self.0[15]])
    }

    pub const fn v6(bytes: [u8; 16]) -> Addr {
        Addr(bytes)
    }

    /// The address as a 128-bit big-endian integer, for range arithmetic.
    pub const fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    pub const fn from_u128(v: u128) -> Addr {
        Addr(v.to_be_bytes())
    }

    /// Writes the address in the usual text form of `family`.
    pub fn fmt_family(&self, family: Family, f: &mut impl fmt::Write) -> fmt::Result {
        match family {
            Family::V4 => write!(f, "{}", Ipv4Addr::from(self.v4_host())),
            Family::V6 => write!(f, "{}", Ipv6Addr::from(self.0)),
        }
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(a: Ipv4Addr) -> Addr {
        Addr::v4(u32::from(a))
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(a: Ipv6Addr) -> Addr {
        Addr(a.octets())
    }
}

/// The key of one direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    /// TCP/UDP source port; the echo identifier for ICMP echo; 0 for other protocols.
    pub sport: u16,
    /// TCP/UDP destination port; the echo identifier for ICMP echo; 0 for other protocols.
    pub dport: u16,
    pub zone: u16,
    pub proto: u8,
    pub family: Family,
}

impl Tuple {
    /// The same flow seen from the other end.
    #[inline]
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// True for ICMP/ICMPv6 tuples, whose "ports" are the echo identifier.
    #[inline]
    pub fn is_icmp(&self) -> bool {
        self.proto == PROTO_ICMP || self.proto == PROTO_ICMPV6
    }

    /// Keyed hash of the tuple: the table's only hash, so it must mix well in the top bits
    /// (hashbrown's control bytes) and the low bits (bucket index).
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        let word = |b: &[u8; 16], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        let meta = (self.sport as u64)
            | (self.dport as u64) << 16
            | (self.zone as u64) << 32
            | (self.proto as u64) << 48
            | (self.family as u64) << 56;
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for w in [
            word(&self.src.0, 0),
            word(&self.src.0, 8),
            word(&self.dst.0, 0),
            word(&self.dst.0, 8),
            meta,
        ] {
            h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 29;
        }
        fmix64(h)
    }

    /// Writes `src=..,dst=..,sport=..,dport=..` (or `id=..,type=..,code=..` for ICMP), the tuple
    /// part of `dpctl/dump-conntrack`.
    pub fn fmt_ovs(
        &self,
        icmp_type_code: Option<(u8, u8)>,
        f: &mut impl fmt::Write,
    ) -> fmt::Result {
        f.write_str("src=")?;
        self.src.fmt_family(self.family, f)?;
        f.write_str(",dst=")?;
        self.dst.fmt_family(self.family, f)?;
        if self.is_icmp() {
            write!(f, ",id={}", self.sport)?;
            if let Some((t, c)) = icmp_type_code {
                write!(f, ",type={t},code={c}")?;
            }
            Ok(())
        } else {
            write!(f, ",sport={},dport={}", self.sport, self.dport)
        }
    }
}

/// Name of an IP protocol as `dpctl/dump-conntrack` prints it.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    match proto {
        PROTO_ICMP => Some("icmp"),
        PROTO_ICMPV6 => Some("icmpv6"),
        PROTO_TCP => Some("tcp"),
        PROTO_UDP => Some("udp"),
        132 => Some("sctp"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tuple {
        Tuple {
            src: Addr::v4(0x0a00_0001),
            dst: Addr::v4(0x0a00_0002),
            sport: 1000,
            dport: 80,
            zone: 3,
            proto: PROTO_TCP,
            family: Family::V4,
        }
    }

    #[test]
    fn reversal_is_an_involution_and_swaps_ends() {
        let a = t();
        let r = a.reversed();
        assert_eq!(r.src, a.dst);
        assert_eq!(r.sport, a.dport);
        assert_eq!(r.reversed(), a);
    }

    #[test]
    fn hash_depends_on_every_field() {
        let a = t();
        let base = a.hash(1);
        let variants = [
            Tuple { zone: 4, ..a },
            Tuple { sport: 1001, ..a },
            Tuple { dport: 81, ..a },
            Tuple {
                proto: PROTO_UDP,
                ..a
            },
            Tuple {
                family: Family::V6,
                ..a
            },
            Tuple {
                src: Addr::v4(0x0a00_0003),
                ..a
            },
            a.reversed(),
        ];
        for v in variants {
            assert_ne!(v.hash(1), base, "{v:?}");
        }
        assert_ne!(a.hash(2), base, "seed must matter");
    }

    #[test]
    fn formats_like_ovs() {
        let mut s = String::new();
        t().fmt_ovs(None, &mut s).unwrap();
        assert_eq!(s, "src=10.0.0.1,dst=10.0.0.2,sport=1000,dport=80");
        let v6 = Tuple {
            family: Family::V6,
            src: Addr::from("fe80::1".parse::<Ipv6Addr>().unwrap()),
            dst: Addr::from("fe80::2".parse::<Ipv6Addr>().unwrap()),
            proto: PROTO_ICMPV6,
            sport: 7,
            dport: 7,
            ..t()
        };
        let mut s = String::new();
        v6.fmt_ovs(Some((128, 0)), &mut s).unwrap();
        assert_eq!(s, "src=fe80::1,dst=fe80::2,id=7,type=128,code=0");
    }
}
