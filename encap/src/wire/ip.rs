//! The IP protocol number (IPv4 `protocol`, IPv6 `next header`), shared by both IP versions.

use super::enum_with_unknown;

enum_with_unknown! {
    /// IANA "Assigned Internet Protocol Numbers".
    pub enum IpProtocol(u8) {
        /// IPv6 hop-by-hop options extension header.
        HopByHop = 0,
        Icmp = 1,
        Tcp = 6,
        Udp = 17,
        /// IPv6 routing extension header.
        Ipv6Route = 43,
        /// IPv6 fragment extension header.
        Ipv6Frag = 44,
        Icmpv6 = 58,
        /// IPv6 "no next header".
        Ipv6NoNxt = 59,
        /// IPv6 destination options extension header.
        Ipv6Opts = 60,
    }
}

impl IpProtocol {
    /// True for the IPv6 extension headers this crate skips over.
    #[inline]
    pub fn is_ipv6_extension(self) -> bool {
        matches!(
            self,
            IpProtocol::HopByHop
                | IpProtocol::Ipv6Route
                | IpProtocol::Ipv6Frag
                | IpProtocol::Ipv6Opts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
        assert!(IpProtocol::Ipv6Frag.is_ipv6_extension());
        assert!(!IpProtocol::Udp.is_ipv6_extension());
    }
}
