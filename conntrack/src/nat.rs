//! NAT bindings: choosing the translated tuple of a new connection.
//!
//! A binding is chosen once, when the connection is committed, and is the connection's reply
//! tuple: the packet after NAT, reversed. The chosen tuple must not already be a key in the
//! table (any zone-equal direction of any connection), otherwise replies would be ambiguous —
//! so allocation probes candidates and asks the table. Probing is bounded
//! (`Config::nat_max_probes`); a binding that cannot be found is refused and counted, never
//! forced.
//!
//! Candidate order (hash mode, the default): the address index and the port offset come from a
//! keyed hash of the original tuple (from the source address alone when `persistent`), and for
//! source NAT the original port is tried first when the range allows it (Linux and OVS do the
//! same: ports are kept when possible). Random mode draws both starts from a PRNG. Without a
//! port range, source NAT keeps the port and falls back to 1024-65535 on a clash;
//! destination NAT keeps the port.

use super::tuple::{Addr, Tuple};
use thiserror::Error;

/// Conn NAT flags: which end of the original direction is translated.
pub const NAT_SRC: u8 = 1;
pub const NAT_DST: u8 = 2;

/// Ports tried when source NAT without a port range must move off the original port.
const EPHEMERAL_MIN: u16 = 1024;
const EPHEMERAL_MAX: u16 = 65535;
/// At most this many ports are probed per address before the next address is tried.
const PORTS_PER_ADDR: u32 = 1024;

/// An address range with an optional port range (`port_min == 0 && port_max == 0`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRange {
    pub addr_min: Addr,
    pub addr_max: Addr,
    pub port_min: u16,
    pub port_max: u16,
}

impl NatRange {
    /// A checked range; ports `0..=0` mean "no port range".
    pub fn new(
        addr_min: Addr,
        addr_max: Addr,
        port_min: u16,
        port_max: u16,
    ) -> Result<NatRange, NatError> {
        if addr_max.to_u128() < addr_min.to_u128() {
            return Err(NatError::AddrRangeReversed);
        }
        if port_max < port_min || (port_min == 0 && port_max != 0) {
            return Err(NatError::PortRangeInvalid(port_min, port_max));
        }
        Ok(NatRange {
            addr_min,
            addr_max,
            port_min,
            port_max,
        })
    }

    /// One address, any port treatment left to the defaults.
    pub fn addr(a: Addr) -> NatRange {
        NatRange {
            addr_min: a,
            addr_max: a,
            port_min: 0,
            port_max: 0,
        }
    }

    fn n_addrs(&self) -> u128 {
        self.addr_max
            .to_u128()
            .saturating_sub(self.addr_min.to_u128())
            .saturating_add(1)
    }

    fn has_ports(&self) -> bool {
        self.port_min != 0
    }
}

/// How the start of the port search is picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PortSelect {
    /// From a keyed hash of the tuple (OVS `hash`, the default).
    #[default]
    Hash,
    /// From a PRNG (OVS `random`).
    Random,
}

/// The `nat(...)` argument of a `ct` action. All `None` means plain `nat`: apply the binding
/// an existing connection already has, create none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatSpec {
    pub src: Option<NatRange>,
    pub dst: Option<NatRange>,
    pub select: PortSelect,
    /// Choose the address from the source address only, so a client keeps its address.
    pub persistent: bool,
}

impl NatSpec {
    pub fn snat(r: NatRange) -> NatSpec {
        NatSpec {
            src: Some(r),
            ..NatSpec::default()
        }
    }

    pub fn dnat(r: NatRange) -> NatSpec {
        NatSpec {
            dst: Some(r),
            ..NatSpec::default()
        }
    }

    /// True when this spec creates a binding for a new connection.
    pub fn has_range(&self) -> bool {
        self.src.is_some() || self.dst.is_some()
    }
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    #[error("NAT address range is reversed: the first address is above the last")]
    AddrRangeReversed,
    #[error("NAT port range {0}-{1} is invalid: ports must be 1-65535 with min <= max")]
    PortRangeInvalid(u16, u16),
    #[error("every candidate NAT binding is in use (addresses/ports exhausted)")]
    Exhausted,
}

/// The order in which ports are tried at one address.
struct PortPlan {
    /// Tried first when set (the original port).
    keep: Option<u16>,
    min: u16,
    n: u32,
    start: u32,
}

impl PortPlan {
    fn len(&self) -> u32 {
        self.keep.is_some() as u32 + self.n
    }

    fn at(&self, k: u32) -> u16 {
        match (self.keep, k) {
            (Some(p), 0) => p,
            (Some(_), k) => self.ranged(k - 1),
            (None, k) => self.ranged(k),
        }
    }

    fn ranged(&self, k: u32) -> u16 {
        (self.min as u32 + (self.start + k) % self.n.max(1)) as u16
    }
}

/// Inputs to one allocation, besides the "is this reply key taken" question.
pub(crate) struct AllocRequest<'a> {
    pub spec: &'a NatSpec,
    pub orig: Tuple,
    /// Keyed hash of the original tuple.
    pub tuple_hash: u64,
    /// Keyed hash of the source address (used when `persistent`).
    pub src_hash: u64,
    /// Fresh randomness (used in random mode).
    pub random: u64,
    /// Whether this protocol has ports (TCP, UDP, ICMP echo id).
    pub has_ports: bool,
    pub max_probes: u32,
}

/// Picks the translated tuple (the packet as it leaves, original direction) and the NAT flags,
/// such that its reversal is not in use.
pub(crate) fn allocate(
    req: &AllocRequest<'_>,
    in_use: impl Fn(&Tuple) -> bool,
) -> Result<(Tuple, u8), NatError> {
    let spec = req.spec;
    let seed = if spec.select == PortSelect::Random {
        req.random
    } else {
        req.tuple_hash
    };
    let addr_seed = if spec.persistent { req.src_hash } else { seed };
    let mut wire = req.orig;
    let mut flags = 0;

    // Destination NAT first: a deterministic pick, probed only when it is the sole NAT.
    if let Some(d) = spec.dst {
        flags |= NAT_DST;
        wire.dst = pick_addr(&d, addr_seed, 0);
        if d.has_ports() && req.has_ports {
            let n = (d.port_max - d.port_min) as u32 + 1;
            set_port(&mut wire, false, d.port_min + (seed % n as u64) as u16);
        }
    }

    let (range, is_src) = match (spec.src, spec.dst) {
        (Some(s), _) => {
            flags |= NAT_SRC;
            (s, true)
        }
        (None, Some(d)) => (d, false),
        (None, None) => return Ok((req.orig, 0)),
    };

    let orig_port = if is_src {
        req.orig.sport
    } else {
        req.orig.dport
    };
    let plan = port_plan(&range, is_src, orig_port, seed >> 17, req);
    let n_addrs = range.n_addrs();
    let mut probes = 0u32;
    let mut ai: u128 = 0;
    while ai < n_addrs && probes < req.max_probes {
        let addr = pick_addr(&range, addr_seed, ai);
        let ports = plan.len().min(PORTS_PER_ADDR);
        for k in 0..ports {
            if probes >= req.max_probes {
                break;
            }
            probes += 1;
            let mut cand = wire;
            if is_src {
                cand.src = addr;
            } else {
                cand.dst = addr;
            }
            if req.has_ports {
                set_port(&mut cand, is_src, plan.at(k));
            }
            if !in_use(&cand.reversed()) {
                return Ok((cand, flags));
            }
        }
        ai += 1;
    }
    Err(NatError::Exhausted)
}

fn port_plan(
    range: &NatRange,
    is_src: bool,
    orig_port: u16,
    seed: u64,
    req: &AllocRequest<'_>,
) -> PortPlan {
    if !req.has_ports {
        return PortPlan {
            keep: Some(orig_port),
            min: 0,
            n: 0,
            start: 0,
        };
    }
    let (min, max) = if range.has_ports() {
        (range.port_min, range.port_max)
    } else if is_src {
        (EPHEMERAL_MIN, EPHEMERAL_MAX)
    } else {
        // Destination NAT without ports keeps the port: one candidate per address.
        return PortPlan {
            keep: Some(orig_port),
            min: 0,
            n: 0,
            start: 0,
        };
    };
    let n = (max - min) as u32 + 1;
    let keep_allowed = req.spec.select == PortSelect::Hash
        && (!range.has_ports() || (min..=max).contains(&orig_port));
    PortPlan {
        keep: keep_allowed.then_some(orig_port),
        min,
        n,
        start: (seed % n as u64) as u32,
    }
}

fn pick_addr(r: &NatRange, seed: u64, offset: u128) -> Addr {
    let n = r.n_addrs();
    let idx = ((seed as u128) % n + offset) % n;
    Addr::from_u128(r.addr_min.to_u128() + idx)
}

/// Sets the source or destination port; ICMP echo keeps both "ports" equal to the id.
fn set_port(t: &mut Tuple, src: bool, port: u16) {
    if t.is_icmp() {
        t.sport = port;
        t.dport = port;
    } else if src {
        t.sport = port;
    } else {
        t.dport = port;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::{Family, PROTO_TCP};
    use std::collections::HashSet;

    fn orig() -> Tuple {
        Tuple {
            src: Addr::v4(0x0a00_0001),
            dst: Addr::v4(0x0a00_0002),
            sport: 40000,
            dport: 80,
            zone: 0,
            proto: PROTO_TCP,
            family: Family::V4,
        }
    }

    fn req(spec: &NatSpec) -> AllocRequest<'_> {
        AllocRequest {
            spec,
            orig: orig(),
            tuple_hash: 12345,
            src_hash: 99,
            random: 7,
            has_ports: true,
            max_probes: 4096,
        }
    }

    #[test]
    fn snat_keeps_the_port_when_free_and_moves_on_clash() {
        let spec = NatSpec::snat(NatRange::addr(Addr::v4(0xc0a8_0001)));
        let (w, f) = allocate(&req(&spec), |_| false).unwrap();
        assert_eq!(f, NAT_SRC);
        assert_eq!(
            (w.src, w.sport, w.dst, w.dport),
            (Addr::v4(0xc0a8_0001), 40000, orig().dst, 80)
        );
        let (w2, _) = allocate(&req(&spec), |t| t.dport == 40000).unwrap();
        assert!(w2.sport >= EPHEMERAL_MIN && w2.sport != 40000);
    }

    #[test]
    fn port_range_is_respected_and_exhaustion_reported() {
        let spec = NatSpec::snat(NatRange::new(Addr::v4(1), Addr::v4(2), 100, 103).unwrap());
        let mut used = HashSet::new();
        for _ in 0..8 {
            let (w, _) = allocate(&req(&spec), |t| used.contains(t)).unwrap();
            assert!((100..=103).contains(&w.sport));
            assert!(w.src == Addr::v4(1) || w.src == Addr::v4(2));
            assert!(used.insert(w.reversed()));
        }
        assert_eq!(
            allocate(&req(&spec), |t| used.contains(t)),
            Err(NatError::Exhausted)
        );
    }

    #[test]
    fn dnat_rewrites_destination_and_port() {
        let spec = NatSpec::dnat(NatRange::new(Addr::v4(50), Addr::v4(50), 8080, 8080).unwrap());
        let (w, f) = allocate(&req(&spec), |_| false).unwrap();
        assert_eq!(f, NAT_DST);
        assert_eq!(
            (w.src, w.sport, w.dst, w.dport),
            (orig().src, 40000, Addr::v4(50), 8080)
        );
    }

    #[test]
    fn range_validation() {
        assert_eq!(
            NatRange::new(Addr::v4(2), Addr::v4(1), 0, 0),
            Err(NatError::AddrRangeReversed)
        );
        assert!(NatRange::new(Addr::v4(1), Addr::v4(1), 10, 5).is_err());
        assert!(NatRange::new(Addr::v4(1), Addr::v4(1), 0, 5).is_err());
    }
}
