//! Connection limits below the table's own: per zone (Open vSwitch's `dpctl/ct-set-limits`,
//! Linux's `nf_conntrack` zone limits) and per source address within a zone (Linux's
//! `connlimit` / nftables `ct count`), so one tenant cannot take the whole table.
//!
//! - **Zones**: a default limit for every zone and a limit of its own for some; 0 is
//!   unlimited, and a zone without a limit of its own takes the default (initially unlimited).
//!   The limit in force for each of the 65536 zones is kept in a dense array, and the shared
//!   accounting counts live connections per zone, so the check at commit is two array reads.
//! - **Sources**: (zone, source address) pairs with a limit of their own, e.g. one per pod
//!   (pods send only from their own address). Found by one hash lookup at commit, only while
//!   any is set; a connection remembers which one it was counted against (slot and
//!   generation), so its removal gives the slot back without a lookup, and a slot reused for
//!   another source is never decremented by connections of the old one.
//!
//! Existing connections are never evicted: a lowered limit refuses new ones until enough have
//! ended. A TCP connection ends for the limits when it closes (both FINs acknowledged, or a
//! reset: `TimeoutClass::TcpClosed`), not when its TIME_WAIT runs out, as Linux's
//! `nf_conncount` skips closed connections: it is released from its zone and source counts
//! then (once, at that transition) while it stays in the table for late segments. Only
//! commits are limited; tracking without commit stores nothing and is never refused.

use std::collections::{BTreeMap, HashMap};

use crate::slab::NIL;
use crate::tuple::{Addr, Family};

/// Zones there are (`u16`).
pub const ZONES: usize = 1 << 16;

/// The limit of one zone as `ct-get-limits` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneLimit {
    pub zone: u16,
    /// The limit in force (its own, or the default); 0 is unlimited.
    pub limit: u32,
    /// Live connections in the zone, closed TCP ones (TIME_WAIT, reset) excepted: those do
    /// not count against the limit.
    pub count: u32,
}

/// The limit of one source address within a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLimit {
    pub zone: u16,
    pub family: Family,
    pub src: Addr,
    /// 0 is unlimited (the source is counted, never refused).
    pub limit: u32,
    /// Live connections committed from it while its limit was set, closed TCP ones excepted.
    pub count: u32,
}

impl SourceLimit {
    /// The source address as text.
    pub fn src_text(&self) -> String {
        let mut s = String::new();
        let _ = self.src.fmt_family(self.family, &mut s);
        s
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    limit: SourceLimit,
    generation: u32,
    used: bool,
}

type SourceKey = (u16, Family, Addr);

/// Zone and source limits (the counts of zones live in the shared accounting, `shared.rs`).
pub(crate) struct Limits {
    default: u32,
    /// Zones with a limit of their own.
    own: BTreeMap<u16, u32>,
    /// The limit in force per zone, `ZONES` entries.
    in_force: Box<[u32]>,
    sources: HashMap<SourceKey, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default: 0,
            own: BTreeMap::new(),
            in_force: vec![0; ZONES].into_boxed_slice(),
            sources: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl Limits {
    /// The limit in force for `zone` (0: unlimited).
    #[inline]
    pub fn zone(&self, zone: u16) -> u32 {
        self.in_force[zone as usize]
    }

    pub fn default_limit(&self) -> u32 {
        self.default
    }

    /// Zones with a limit of their own, ascending.
    pub fn own(&self) -> impl Iterator<Item = (u16, u32)> + '_ {
        self.own.iter().map(|(&z, &l)| (z, l))
    }

    pub fn set_default(&mut self, limit: u32) {
        self.default = limit;
        for (z, l) in self.in_force.iter_mut().enumerate() {
            if !self.own.contains_key(&(z as u16)) {
                *l = limit;
            }
        }
    }

    pub fn set_zone(&mut self, zone: u16, limit: u32) {
        self.own.insert(zone, limit);
        self.in_force[zone as usize] = limit;
    }

    /// The zone goes back to the default limit; false if it had none of its own.
    pub fn del_zone(&mut self, zone: u16) -> bool {
        let had = self.own.remove(&zone).is_some();
        self.in_force[zone as usize] = self.default;
        had
    }

    /// Whether any source limit is set (skips the lookup at commit when none is).
    #[inline]
    pub fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// The slot counting `(zone, family, src)`, if it has a limit, and whether it is reached.
    #[inline]
    pub fn source(&self, zone: u16, family: Family, src: &Addr) -> Option<(u32, bool)> {
        let &i = self.sources.get(&(zone, family, *src))?;
        let l = &self.slots[i as usize].limit;
        Some((i, l.limit != 0 && l.count >= l.limit))
    }

    /// Counts a new connection against slot `i`; returns its generation for the connection.
    #[inline]
    pub fn charge(&mut self, i: u32) -> u32 {
        let s = &mut self.slots[i as usize];
        s.limit.count += 1;
        s.generation
    }

    /// Whether a connection counted against (`i`, `generation`) still counts there (the
    /// slot was not removed since).
    pub fn attached(&self, i: u32, generation: u32) -> bool {
        self.slots
            .get(i as usize)
            .is_some_and(|s| s.used && s.generation == generation)
    }

    /// A connection counted against (`i`, `generation`) ended.
    #[inline]
    pub fn release(&mut self, i: u32, generation: u32) {
        if self.attached(i, generation) {
            let s = &mut self.slots[i as usize].limit;
            s.count = s.count.saturating_sub(1);
        }
    }

    /// Replaces every source limit with `wanted` (zone, family, address, limit). Sources kept
    /// keep their counts; returns the slots of sources that are new (the caller counts the
    /// connections they already have).
    pub fn replace_sources(&mut self, wanted: &[(u16, Family, Addr, u32)]) -> Vec<u32> {
        let keep: HashMap<SourceKey, u32> =
            wanted.iter().map(|&(z, f, a, l)| ((z, f, a), l)).collect();
        let gone: Vec<SourceKey> = self
            .sources
            .keys()
            .filter(|k| !keep.contains_key(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(i) = self.sources.remove(&k) {
                let s = &mut self.slots[i as usize];
                s.used = false;
                s.generation = s.generation.wrapping_add(1);
                s.limit.count = 0;
                self.free.push(i);
            }
        }
        let mut new = Vec::new();
        for (&(zone, family, src), &limit) in &keep {
            if let Some(&i) = self.sources.get(&(zone, family, src)) {
                self.slots[i as usize].limit.limit = limit;
                continue;
            }
            let limit = SourceLimit {
                zone,
                family,
                src,
                limit,
                count: 0,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    let s = &mut self.slots[i as usize];
                    s.limit = limit;
                    s.used = true;
                    i
                }
                None => {
                    self.slots.push(Slot {
                        limit,
                        generation: 0,
                        used: true,
                    });
                    (self.slots.len() - 1) as u32
                }
            };
            self.sources.insert((zone, family, src), i);
            new.push(i);
        }
        new
    }

    /// The key of slot `i`.
    pub fn slot_key(&self, i: u32) -> SourceKey {
        let l = &self.slots[i as usize].limit;
        (l.zone, l.family, l.src)
    }

    /// Every source limit, by zone then address.
    pub fn sources(&self) -> Vec<SourceLimit> {
        let mut v: Vec<SourceLimit> = self
            .slots
            .iter()
            .filter(|s| s.used)
            .map(|s| s.limit)
            .collect();
        v.sort_by_key(|l| (l.zone, l.family, l.src));
        v
    }
}

/// No source slot: the connection was not counted against a source limit.
pub(crate) const NO_SLOT: u32 = NIL;
