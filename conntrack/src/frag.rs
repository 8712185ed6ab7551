//! First-fragment tracking: lets non-first fragments be attributed to their connection.
//!
//! Only the first fragment of a datagram carries the L4 header. When it passes through
//! conntrack its ports are remembered under (zone, family, src, dst, proto, IP id); later
//! fragments of the same datagram take the ports from here. The store is a fixed-size
//! direct-mapped array (no allocation after construction, a newer datagram simply overwrites a
//! colliding slot) whose entries age out after `max_age_ns`. A later fragment seen
//! before its first fragment finds nothing here; conntrack then holds it (`fraghold.rs`) until
//! the first fragment passes. Full reassembly is not done.

use super::tuple::{Addr, Family};

/// One datagram: the fragments sharing it belong together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    pub zone: u16,
    pub proto: u8,
    pub family: Family,
}

impl Default for FragKey {
    fn default() -> Self {
        FragKey {
            src: Addr::default(),
            dst: Addr::default(),
            id: 0,
            zone: 0,
            proto: 0,
            family: Family::V4,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: FragKey,
    sport: u16,
    dport: u16,
    seen_ns: u64,
}

pub(crate) struct FragTracker {
    slots: Vec<Option<Slot>>,
    max_age_ns: u64,
    seed: u64,
}

impl FragTracker {
    pub fn new(n_slots: usize, max_age_ns: u64, seed: u64) -> FragTracker {
        FragTracker {
            slots: vec![None; n_slots.max(1)],
            max_age_ns,
            seed,
        }
    }

    fn slot_of(&self, k: &FragKey) -> usize {
        let t = super::tuple::Tuple {
            src: k.src,
            dst: k.dst,
            sport: k.id as u16,
            dport: (k.id >> 16) as u16,
            zone: k.zone,
            proto: k.proto,
            family: k.family,
        };
        (t.hash(self.seed) % self.slots.len() as u64) as usize
    }

    #[allow(clippy::too_many_arguments)]
    pub fn remember(
        &mut self,
        zone: u16,
        family: Family,
        src: Addr,
        dst: Addr,
        proto: u8,
        id: u32,
        ports: (u16, u16),
        now: u64,
    ) {
        let key = FragKey {
            src,
            dst,
            id,
            zone,
            proto,
            family,
        };
        let i = self.slot_of(&key);
        self.slots[i] = Some(Slot {
            key,
            sport: ports.0,
            dport: ports.1,
            seen_ns: now,
        });
    }

    /// The ports of the datagram's first fragment, if it was seen recently.
    #[allow(clippy::too_many_arguments)]
    pub fn lookup(
        &self,
        zone: u16,
        family: Family,
        src: Addr,
        dst: Addr,
        proto: u8,
        id: u32,
        now: u64,
    ) -> Option<(u16, u16)> {
        let key = FragKey {
            src,
            dst,
            id,
            zone,
            proto,
            family,
        };
        match self.slots[self.slot_of(&key)] {
            Some(s) if s.key == key && now.saturating_sub(s.seen_ns) <= self.max_age_ns => {
                Some((s.sport, s.dport))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_fragments_find_the_first_fragments_ports_until_it_ages_out() {
        let mut f = FragTracker::new(64, 1_000, 5);
        let (a, b) = (Addr::v4(1), Addr::v4(2));
        f.remember(0, Family::V4, a, b, 17, 42, (53, 9999), 100);
        assert_eq!(f.lookup(0, Family::V4, a, b, 17, 42, 500), Some((53, 9999)));
        assert_eq!(
            f.lookup(0, Family::V4, a, b, 17, 43, 500),
            None,
            "other datagram id"
        );
        assert_eq!(
            f.lookup(1, Family::V4, a, b, 17, 42, 500),
            None,
            "other zone"
        );
        assert_eq!(
            f.lookup(0, Family::V4, a, b, 17, 42, 2_000),
            None,
            "aged out"
        );
    }
}
