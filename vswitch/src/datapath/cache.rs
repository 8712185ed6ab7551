//! The two fast-path cache tiers in front of the OpenFlow tables.
//!
//! - **Exact-match cache (EMC)**: a direct-mapped array indexed by a hash of the whole key. A hit
//!   costs one hash and one 176-byte compare.
//! - **Megaflow cache**: the OVS "dpcls" idea. Each entry is a (masked key, mask) produced by the
//!   slow path's un-wildcarding, so it is correct for every packet that agrees with it on the
//!   mask's bits. Entries are grouped by mask; a lookup masks the key once per distinct mask and
//!   probes a hash table. Correctly un-wildcarded megaflows never give different answers for the
//!   same packet, so there is no priority: the first hit wins.
//!
//! Both tiers belong to one thread's copy of a bridge, which records the pipeline version they
//! were filled under (`DpBridge::cache_version`); when the bridge's flow tables change, the
//! datapath revalidates them before the next batch (`exec::revalidate`: the EMC is cleared, each
//! megaflow is re-translated and kept only if its actions and mask still hold), so a cached entry
//! never outlives a rule change that would alter its actions.

use std::sync::Arc;

use encap::FlowKey;
use hashbrown::HashMap;

/// Bits of the EMC index: 8192 entries.
const EMC_BITS: u32 = 13;

/// Hash of a whole key (FxHash-style multiply-rotate over words; keys are not adversarial
/// enough to need SipHash on this path, and the megaflow tier bounds the damage of collisions).
/// Four independent lanes, so the 21 multiplies overlap instead of forming one dependency
/// chain (the EMC probe was ~6 % of a forwarded packet's cost with a single lane).
#[inline]
pub fn hash_key(key: &FlowKey) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut lanes: [u64; 4] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let words = key.words();
    let mut chunks = words.chunks_exact(4);
    for c in &mut chunks {
        for (lane, w) in lanes.iter_mut().zip(c) {
            *lane = mix(*lane, *w);
        }
    }
    for (lane, w) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane = mix(*lane, *w);
    }
    let h =
        (lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(31) ^ lanes[3].rotate_left(47))
            .wrapping_mul(K);
    h ^ (h >> 29)
}

struct EmcSlot<T> {
    key: FlowKey,
    value: Arc<T>,
}

pub struct Emc<T> {
    slots: Vec<Option<EmcSlot<T>>>,
}

impl<T> Default for Emc<T> {
    fn default() -> Self {
        Emc {
            slots: (0..1usize << EMC_BITS).map(|_| None).collect(),
        }
    }
}

impl<T> Emc<T> {
    #[inline]
    fn index(hash: u64) -> usize {
        (hash >> (64 - EMC_BITS)) as usize
    }

    #[inline]
    pub fn get(&self, key: &FlowKey, hash: u64) -> Option<&Arc<T>> {
        match &self.slots[Self::index(hash)] {
            Some(slot) if slot.key == *key => Some(&slot.value),
            _ => None,
        }
    }

    #[inline]
    pub fn insert(&mut self, key: &FlowKey, hash: u64, value: Arc<T>) {
        self.slots[Self::index(hash)] = Some(EmcSlot { key: *key, value });
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
}

struct MaskGroup<T> {
    mask: FlowKey,
    entries: HashMap<FlowKey, Arc<T>>,
    hits: u64,
}

/// Megaflows grouped by mask.
pub struct MegaflowCache<T> {
    groups: Vec<MaskGroup<T>>,
    len: usize,
    max_entries: usize,
    lookups: u64,
}

impl<T> MegaflowCache<T> {
    pub fn new(max_entries: usize) -> Self {
        MegaflowCache {
            groups: Vec::new(),
            len: 0,
            max_entries,
            lookups: 0,
        }
    }

    pub fn lookup(&mut self, key: &FlowKey) -> Option<Arc<T>> {
        self.lookups += 1;
        // Keep the busiest masks first, re-sorted rarely so the order stays cheap to maintain.
        if self.lookups.is_multiple_of(4096) {
            self.groups.sort_by_key(|g| std::cmp::Reverse(g.hits));
            self.groups.iter_mut().for_each(|g| g.hits /= 2);
        }
        for g in &mut self.groups {
            if let Some(v) = g.entries.get(&key.masked(&g.mask)) {
                g.hits += 1;
                return Some(v.clone());
            }
        }
        None
    }

    /// Adds a megaflow; false when the cache is full (the packet still gets its actions, the
    /// flow just stays on the slow path until the cache is flushed).
    pub fn insert(&mut self, key: &FlowKey, mask: &FlowKey, value: Arc<T>) -> bool {
        if self.len >= self.max_entries {
            return false;
        }
        let masked = key.masked(mask);
        let group = match self.groups.iter().position(|g| g.mask == *mask) {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push(MaskGroup {
                    mask: *mask,
                    entries: HashMap::new(),
                    hits: 0,
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        if group.entries.insert(masked, value).is_none() {
            self.len += 1;
        }
        true
    }

    pub fn clear(&mut self) {
        self.groups.clear();
        self.len = 0;
    }

    /// Re-checks every entry: `check(mask, value)` returns the entry to keep (possibly a fresh
    /// one) or `None` to drop it.
    pub fn revalidate(&mut self, mut check: impl FnMut(&FlowKey, &Arc<T>) -> Option<Arc<T>>) {
        let mut len = 0;
        for g in &mut self.groups {
            let mask = g.mask;
            g.entries.retain(|_, v| match check(&mask, v) {
                Some(fresh) => {
                    *v = fresh;
                    true
                }
                None => false,
            });
            len += g.entries.len();
        }
        self.groups.retain(|g| !g.entries.is_empty());
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn n_masks(&self) -> usize {
        self.groups.len()
    }

    /// Every entry as (mask, masked key, value), for dumps; read-only, never on the fast path.
    pub fn entries(&self) -> impl Iterator<Item = (&FlowKey, &FlowKey, &Arc<T>)> {
        self.groups
            .iter()
            .flat_map(|g| g.entries.iter().map(move |(k, v)| (&g.mask, k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u32, dst: u32) -> FlowKey {
        FlowKey {
            in_port: port,
            nw_dst: dst,
            ..Default::default()
        }
    }

    #[test]
    fn emc_hits_only_the_exact_key() {
        let mut emc = Emc::default();
        let k = key(1, 7);
        emc.insert(&k, hash_key(&k), Arc::new(42));
        assert_eq!(emc.get(&k, hash_key(&k)).map(|v| **v), Some(42));
        let other = key(1, 8);
        assert!(emc.get(&other, hash_key(&other)).is_none());
        emc.clear();
        assert!(emc.get(&k, hash_key(&k)).is_none());
    }

    #[test]
    fn megaflow_covers_every_key_that_agrees_on_the_mask() {
        let mut mf = MegaflowCache::new(10);
        let mask = FlowKey {
            in_port: u32::MAX,
            ..Default::default()
        };
        assert!(mf.insert(&key(1, 7), &mask, Arc::new("port1")));
        assert_eq!(mf.lookup(&key(1, 99)).map(|v| *v), Some("port1"));
        assert!(mf.lookup(&key(2, 7)).is_none());
        assert_eq!(mf.len(), 1);
        assert_eq!(mf.n_masks(), 1);
        let dumped: Vec<_> = mf.entries().map(|(m, k, v)| (*m, *k, **v)).collect();
        assert_eq!(dumped, vec![(mask, key(1, 0), "port1")]);
    }

    #[test]
    fn megaflow_cache_is_bounded() {
        let mut mf = MegaflowCache::new(1);
        let exact = FlowKey::exact_mask();
        assert!(mf.insert(&key(1, 1), &exact, Arc::new(1)));
        assert!(!mf.insert(&key(1, 2), &exact, Arc::new(2)));
        assert_eq!(mf.len(), 1);
    }
}
