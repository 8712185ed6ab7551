//! The two fast-path cache tiers in front of the OpenFlow tables.
//!
//! - **Exact-match cache (EMC)**: a direct-mapped array indexed by a hash of the whole key; a
//!   slot holds the hash and the cached flow, and a hit checks the key against the words its
//!   megaflow pins ([`Pinned`]). A hit costs one hash, one 16-byte slot and a few words.
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
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

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

/// A megaflow hit enters the EMC with a probability of 1 in this many (Open vSwitch's
/// `emc-insert-inv-prob` default): a flow that keeps sending gets in after ~100 packets, while
/// the one-packet keys of new connections (and each TCP flag combination) do not evict it.
pub const EMC_INSERT_INV_PROB: u32 = 100;

/// What an EMC slot's value says about the keys it is right for: the EMC holds a hash and a
/// reference, not a copy of the key, and asks the value whether a key whose hash matched is
/// really one of its keys (a cached flow answers from its megaflow's pinned words).
pub trait EmcValue {
    fn covers(&self, key: &FlowKey) -> bool;
}

/// The words a megaflow pins, as (word index, mask, masked value): a key is one of the
/// megaflow's keys when it agrees on these (the megaflow cache's own rule). A megaflow pins
/// a few of the key's 36 words, so checking them reads a few words of the (hot) flow instead
/// of a 288-byte copy of the key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pinned(Box<[(u64, u64, u8)]>);

impl Pinned {
    /// The words of `mask` that are not zero, with `key`'s values under it.
    pub fn new(key: &FlowKey, mask: &FlowKey) -> Pinned {
        Pinned(
            key.words()
                .iter()
                .zip(mask.words())
                .enumerate()
                .filter(|(_, (_, m))| **m != 0)
                .map(|(i, (k, m))| (*m, k & m, i as u8))
                .collect(),
        )
    }

    #[inline]
    pub fn covers(&self, key: &FlowKey) -> bool {
        let w = key.words();
        self.0
            .iter()
            .all(|&(m, v, i)| w[i as usize % FlowKey::WORDS] & m == v)
    }
}

/// One EMC slot: 16 bytes (the key's whole hash, then the value), so the 8192 slots take
/// 128 KiB and stay in a core's L2, where 272-byte slots holding a key copy took 2.2 MiB and
/// missed (Open vSwitch's signature match cache is the same idea).
struct EmcSlot<T> {
    /// The key's hash (0 with no value).
    hash: u64,
    value: Option<Arc<T>>,
}

pub struct Emc<T> {
    slots: Vec<EmcSlot<T>>,
    /// xorshift32 state for the insertion draw.
    rng: u32,
}

impl<T> Default for Emc<T> {
    fn default() -> Self {
        Emc {
            slots: (0..1usize << EMC_BITS)
                .map(|_| EmcSlot {
                    hash: 0,
                    value: None,
                })
                .collect(),
            rng: 0x9e37_79b9,
        }
    }
}

impl<T: EmcValue> Emc<T> {
    #[inline]
    fn index(hash: u64) -> usize {
        (hash >> (64 - EMC_BITS)) as usize
    }

    /// The value of the slot `key` hashes to, if the slot holds this very hash and the value
    /// covers the key (a hash match alone could be another key's).
    #[inline]
    pub fn get(&self, key: &FlowKey, hash: u64) -> Option<&Arc<T>> {
        let slot = &self.slots[Self::index(hash)];
        if slot.hash != hash {
            return None;
        }
        slot.value.as_ref().filter(|v| v.covers(key))
    }

    /// Stores `value` for `key`'s hash; `value` must cover `key` (else the slot never hits).
    #[inline]
    pub fn insert(&mut self, key: &FlowKey, hash: u64, value: Arc<T>) {
        debug_assert!(
            value.covers(key),
            "an EMC value that does not cover its key"
        );
        self.slots[Self::index(hash)] = EmcSlot {
            hash,
            value: Some(value),
        };
    }

    /// [`insert`](Self::insert) with a probability of 1 in [`EMC_INSERT_INV_PROB`].
    #[inline]
    pub fn insert_sometimes(&mut self, key: &FlowKey, hash: u64, value: &Arc<T>) {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        if x.is_multiple_of(EMC_INSERT_INV_PROB) {
            self.insert(key, hash, value.clone());
        }
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| {
            s.hash = 0;
            s.value = None;
        });
    }
}

/// Megaflows idle this long are dropped by [`MegaflowCache::sweep`] (Open vSwitch's default
/// `max-idle`).
pub const DEFAULT_IDLE_NS: u64 = 10_000_000_000;

/// Slots examined by one eviction before the last one is taken whatever its use (keeps an
/// insert into a full cache bounded).
const EVICT_SCAN: usize = 64;

/// One distinct mask: its entries are slot indices, hashed by the masked key.
struct MaskGroup {
    mask: FlowKey,
    /// Indices of the mask's nonzero words: only these are hashed and compared (a megaflow
    /// mask pins a few of the key's 36 words; the rest are zero in every stored key).
    words: Box<[u8]>,
    /// Bit `recirc_id % 64` of every recirculation pass an entry was stored for (all bits
    /// when the mask does not pin `recirc_id`): a lookup skips a group that cannot hold its
    /// pass. Bits stay set until the group empties.
    recircs: u64,
    table: HashTable<u32>,
    hits: u64,
}

impl MaskGroup {
    fn new(mask: &FlowKey) -> MaskGroup {
        let words = mask
            .words()
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0)
            .map(|(i, _)| i as u8)
            .collect();
        MaskGroup {
            mask: *mask,
            words,
            recircs: if mask.recirc_id == u32::MAX {
                0
            } else {
                u64::MAX
            },
            table: HashTable::new(),
            hits: 0,
        }
    }
}

#[inline]
fn recirc_bit(key: &FlowKey) -> u64 {
    1 << (key.recirc_id & 63)
}

/// Hash of `key` under a mask: only the mask's nonzero `words`, seeded.
#[inline]
fn masked_hash(seed: u64, key: &FlowKey, mask: &FlowKey, words: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let (k, m) = (key.words(), mask.words());
    let mut h = seed;
    for &i in words {
        let w = k[i as usize] & m[i as usize];
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    encap::hash::fmix64(h)
}

/// Whether `key` under the mask equals `stored` (a key stored masked by the same mask, so
/// zero outside the mask's words).
#[inline]
fn masked_eq(key: &FlowKey, mask: &FlowKey, words: &[u8], stored: &FlowKey) -> bool {
    let (k, m, s) = (key.words(), mask.words(), stored.words());
    words
        .iter()
        .all(|&i| k[i as usize] & m[i as usize] == s[i as usize])
}

struct Slot<T> {
    /// The masked key.
    key: FlowKey,
    group: u32,
    value: Option<Arc<T>>,
    /// Hit since the eviction hand last passed (CLOCK's second chance).
    referenced: bool,
    last_used_ns: u64,
}

/// Megaflows grouped by mask, bounded, with idle aging.
///
/// Entries live in a slab; each mask group's hash table holds slab indices. A full cache makes
/// room with CLOCK (an entry hit since the hand last passed gets a second chance; at most
/// [`EVICT_SCAN`] slots are looked at), so new flows keep getting cached however many distinct
/// flows came before: no cliff at the bound. [`sweep`](Self::sweep) drops idle entries a
/// bounded number of slots at a time.
pub struct MegaflowCache<T> {
    /// Indexed by group id; `None` once emptied (ids are reused).
    groups: Vec<Option<MaskGroup>>,
    /// Live group ids, busiest first.
    order: Vec<u32>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    max_entries: usize,
    idle_ns: u64,
    /// CLOCK hand (eviction) and sweep cursor (aging), slot indices.
    hand: usize,
    sweep_at: usize,
    lookups: u64,
    evictions: u64,
    /// Seeds the masked-key hash (random per cache: keys come from the network).
    seed: u64,
}

impl<T> MegaflowCache<T> {
    pub fn new(max_entries: usize) -> Self {
        MegaflowCache::with_idle(max_entries, DEFAULT_IDLE_NS)
    }

    pub fn with_idle(max_entries: usize, idle_ns: u64) -> Self {
        MegaflowCache {
            groups: Vec::new(),
            order: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            max_entries,
            idle_ns,
            hand: 0,
            sweep_at: 0,
            lookups: 0,
            evictions: 0,
            seed: DefaultHashBuilder::default().hash_one(0x6d65_6761_666c_6f77u64),
        }
    }

    pub fn lookup(&mut self, key: &FlowKey, now_ns: u64) -> Option<Arc<T>> {
        self.lookups += 1;
        // Keep the busiest masks first, re-sorted rarely so the order stays cheap to maintain.
        if self.lookups.is_multiple_of(4096) {
            let groups = &mut self.groups;
            self.order.sort_by_key(|g| {
                std::cmp::Reverse(groups[*g as usize].as_ref().map_or(0, |g| g.hits))
            });
            groups.iter_mut().flatten().for_each(|g| g.hits /= 2);
        }
        let pass = recirc_bit(key);
        for gid in &self.order {
            let Some(g) = self.groups[*gid as usize].as_mut() else {
                continue;
            };
            if g.recircs & pass == 0 {
                continue;
            }
            let h = masked_hash(self.seed, key, &g.mask, &g.words);
            let slots = &self.slots;
            if let Some(&i) = g.table.find(h, |&i| {
                masked_eq(key, &g.mask, &g.words, &slots[i as usize].key)
            }) {
                g.hits += 1;
                let slot = &mut self.slots[i as usize];
                slot.referenced = true;
                slot.last_used_ns = now_ns;
                return slot.value.clone();
            }
        }
        None
    }

    /// Adds a megaflow, evicting one (CLOCK) when the cache is full. Returns false only for a
    /// cache of size 0.
    pub fn insert(&mut self, key: &FlowKey, mask: &FlowKey, value: Arc<T>, now_ns: u64) -> bool {
        if self.max_entries == 0 {
            return false;
        }
        let masked = key.masked(mask);
        let gid = match self.order.iter().find(|g| {
            self.groups[**g as usize]
                .as_ref()
                .is_some_and(|g| g.mask == *mask)
        }) {
            Some(g) => *g,
            None => self.new_group(mask),
        };
        let seed = self.seed;
        let slots = &mut self.slots;
        let g = self.groups[gid as usize].as_mut().expect("live group");
        let h = masked_hash(seed, &masked, &g.mask, &g.words);
        if let Some(&i) = g.table.find(h, |&i| slots[i as usize].key == masked) {
            let slot = &mut slots[i as usize];
            slot.value = Some(value);
            slot.last_used_ns = now_ns;
            return true;
        }
        let mut gid = gid;
        if self.len >= self.max_entries {
            self.evict_one();
            if self.groups[gid as usize].is_none() {
                // The victim was the last entry of this very group.
                gid = self.new_group(mask);
            }
        }
        let slot = Slot {
            key: masked,
            group: gid,
            value: Some(value),
            referenced: false,
            last_used_ns: now_ns,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        let MaskGroup {
            mask,
            words,
            recircs,
            table,
            ..
        } = self.groups[gid as usize].as_mut().expect("live group");
        *recircs |= recirc_bit(key);
        table.insert_unique(h, i, |&j| {
            masked_hash(seed, &slots[j as usize].key, mask, words)
        });
        self.len += 1;
        true
    }

    fn new_group(&mut self, mask: &FlowKey) -> u32 {
        let group = MaskGroup::new(mask);
        let gid = match self.groups.iter().position(Option::is_none) {
            Some(i) => {
                self.groups[i] = Some(group);
                i as u32
            }
            None => {
                self.groups.push(Some(group));
                (self.groups.len() - 1) as u32
            }
        };
        self.order.push(gid);
        gid
    }

    /// CLOCK: the first slot not hit since the hand last passed, or the last one looked at.
    fn evict_one(&mut self) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        let mut victim = None;
        for _ in 0..EVICT_SCAN.min(n) {
            let i = self.hand % n;
            self.hand = i + 1;
            let slot = &mut self.slots[i];
            if slot.value.is_none() {
                continue;
            }
            victim = Some(i);
            if !std::mem::take(&mut slot.referenced) {
                break;
            }
        }
        if let Some(i) = victim {
            self.remove_slot(i);
            self.evictions += 1;
        }
    }

    fn remove_slot(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.value.take().is_none() {
            return;
        }
        let gid = slot.group as usize;
        if let Some(g) = self.groups[gid].as_mut()
            && let Ok(entry) = g
                .table
                .find_entry(masked_hash(self.seed, &slot.key, &g.mask, &g.words), |&j| {
                    j as usize == i
                })
        {
            entry.remove();
            if g.table.is_empty() {
                self.groups[gid] = None;
                self.order.retain(|o| *o as usize != gid);
            }
        }
        self.free.push(i as u32);
        self.len -= 1;
    }

    /// Drops entries idle for longer than the idle time, looking at up to `budget` slots from
    /// where the last sweep stopped (so the datapath thread never pauses long). Returns how
    /// many were dropped.
    pub fn sweep(&mut self, now_ns: u64, budget: usize) -> usize {
        let n = self.slots.len();
        let mut dropped = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep_at % n;
            self.sweep_at = i + 1;
            let slot = &self.slots[i];
            if slot.value.is_some() && now_ns.saturating_sub(slot.last_used_ns) > self.idle_ns {
                self.remove_slot(i);
                dropped += 1;
            }
        }
        dropped
    }

    pub fn clear(&mut self) {
        self.groups.clear();
        self.order.clear();
        self.slots.clear();
        self.free.clear();
        self.len = 0;
        self.hand = 0;
        self.sweep_at = 0;
    }

    /// Re-checks every entry: `check(mask, value)` returns the entry to keep (possibly a fresh
    /// one) or `None` to drop it.
    pub fn revalidate(&mut self, mut check: impl FnMut(&FlowKey, &Arc<T>) -> Option<Arc<T>>) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let Some(v) = slot.value.as_ref() else {
                continue;
            };
            let mask = match self.groups[slot.group as usize].as_ref() {
                Some(g) => g.mask,
                None => continue,
            };
            match check(&mask, v) {
                Some(fresh) => self.slots[i].value = Some(fresh),
                None => self.remove_slot(i),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn n_masks(&self) -> usize {
        self.order.len()
    }

    /// Every entry as (mask, masked key, value), for dumps; read-only, never on the fast path.
    pub fn entries(&self) -> impl Iterator<Item = (&FlowKey, &FlowKey, &Arc<T>)> {
        self.slots.iter().filter_map(|slot| {
            let value = slot.value.as_ref()?;
            let group = self.groups.get(slot.group as usize)?.as_ref()?;
            Some((&group.mask, &slot.key, value))
        })
    }

    /// Entries evicted to make room since the cache was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
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

    /// An EMC value for one exact key.
    struct Exact(FlowKey, u32);

    impl EmcValue for Exact {
        fn covers(&self, key: &FlowKey) -> bool {
            self.0 == *key
        }
    }

    #[test]
    fn emc_hits_only_the_exact_key() {
        let mut emc = Emc::default();
        let k = key(1, 7);
        emc.insert(&k, hash_key(&k), Arc::new(Exact(k, 42)));
        assert_eq!(emc.get(&k, hash_key(&k)).map(|v| v.1), Some(42));
        let other = key(1, 8);
        assert!(emc.get(&other, hash_key(&other)).is_none());
        emc.clear();
        assert!(emc.get(&k, hash_key(&k)).is_none());
    }

    #[test]
    fn emc_refuses_another_key_with_the_same_hash() {
        // The slot keeps only the hash: a colliding key must be turned away by the value.
        let mut emc = Emc::default();
        let (k, other) = (key(1, 7), key(1, 8));
        emc.insert(&k, 12345, Arc::new(Exact(k, 1)));
        assert!(emc.get(&k, 12345).is_some());
        assert!(emc.get(&other, 12345).is_none());
        assert!(emc.get(&k, 12346).is_none());
    }

    #[test]
    fn pinned_words_cover_exactly_the_keys_that_agree_on_the_mask() {
        let mask = FlowKey {
            in_port: u32::MAX,
            nw_dst: 0xffff_ff00,
            ..Default::default()
        };
        let p = Pinned::new(&key(1, 0x0a00_0007), &mask);
        assert!(p.covers(&key(1, 0x0a00_0099)));
        assert!(p.covers(&FlowKey {
            tp_src: 80,
            ..key(1, 0x0a00_00ff)
        }));
        assert!(!p.covers(&key(2, 0x0a00_0007)));
        assert!(!p.covers(&key(1, 0x0a00_0107)));
        // No pinned word: every key.
        assert!(Pinned::new(&key(1, 7), &FlowKey::default()).covers(&key(9, 9)));
        // An exact mask: only the key itself.
        let exact = Pinned::new(&key(1, 7), &FlowKey::exact_mask());
        assert!(exact.covers(&key(1, 7)));
        assert!(!exact.covers(&key(1, 6)));
    }

    #[test]
    fn emc_takes_a_repeated_flow_in_after_about_a_hundred_offers() {
        let mut emc = Emc::default();
        let k = key(1, 7);
        let v = Arc::new(Exact(k, 1));
        let mut offers = 0;
        while emc.get(&k, hash_key(&k)).is_none() {
            emc.insert_sometimes(&k, hash_key(&k), &v);
            offers += 1;
            assert!(offers < 5000, "never inserted");
        }
        // One-packet keys: ~1 in 100 of 10,000 gets in.
        let taken = (0..10_000u32)
            .filter(|i| {
                let k = key(2, *i);
                emc.insert_sometimes(&k, hash_key(&k), &Arc::new(Exact(k, 2)));
                emc.get(&k, hash_key(&k)).is_some()
            })
            .count();
        assert!((50..200).contains(&taken), "{taken} of 10000 inserted");
    }

    #[test]
    fn megaflow_covers_every_key_that_agrees_on_the_mask() {
        let mut mf = MegaflowCache::new(10);
        let mask = FlowKey {
            in_port: u32::MAX,
            ..Default::default()
        };
        assert!(mf.insert(&key(1, 7), &mask, Arc::new("port1"), 0));
        assert_eq!(mf.lookup(&key(1, 99), 0).map(|v| *v), Some("port1"));
        assert!(mf.lookup(&key(2, 7), 0).is_none());
        assert_eq!(mf.len(), 1);
        assert_eq!(mf.n_masks(), 1);
        let dumped: Vec<_> = mf.entries().map(|(m, k, v)| (*m, *k, **v)).collect();
        assert_eq!(dumped, vec![(mask, key(1, 0), "port1")]);
    }

    #[test]
    fn a_full_cache_evicts_and_keeps_caching_new_flows() {
        let mut mf = MegaflowCache::new(100);
        let exact = FlowKey::exact_mask();
        for i in 0..10_000u32 {
            assert!(mf.insert(&key(1, i), &exact, Arc::new(i), 0));
            assert_eq!(
                mf.lookup(&key(1, i), 0).map(|v| *v),
                Some(i),
                "new flow {i}"
            );
            assert!(mf.len() <= 100);
        }
        assert_eq!(mf.len(), 100);
        assert_eq!(mf.evictions(), 9_900);
        // The most recent flows are the ones cached.
        assert!(mf.lookup(&key(1, 9_999), 0).is_some());
        assert!(mf.lookup(&key(1, 0), 0).is_none());
    }

    #[test]
    fn eviction_gives_recently_hit_entries_a_second_chance() {
        let mut mf = MegaflowCache::new(4);
        let exact = FlowKey::exact_mask();
        for i in 0..4 {
            mf.insert(&key(1, i), &exact, Arc::new(i), 0);
        }
        // Entry 0 is busy: it must survive the next insert, a cold one goes instead.
        assert!(mf.lookup(&key(1, 0), 0).is_some());
        mf.insert(&key(1, 100), &exact, Arc::new(100), 0);
        assert!(mf.lookup(&key(1, 0), 0).is_some(), "hot entry evicted");
        assert!(mf.lookup(&key(1, 100), 0).is_some());
        assert_eq!(mf.len(), 4);
    }

    #[test]
    fn idle_entries_age_out_and_empty_masks_go_away() {
        const SEC: u64 = 1_000_000_000;
        let mut mf = MegaflowCache::with_idle(100, 10 * SEC);
        let exact = FlowKey::exact_mask();
        let port = FlowKey {
            in_port: u32::MAX,
            ..Default::default()
        };
        mf.insert(&key(1, 1), &exact, Arc::new(1), 0);
        mf.insert(&key(2, 1), &port, Arc::new(2), 0);
        assert_eq!(mf.n_masks(), 2);
        // The port megaflow stays in use; the exact one idles.
        assert!(mf.lookup(&key(2, 5), 8 * SEC).is_some());
        assert_eq!(mf.sweep(11 * SEC, 1000), 1);
        assert!(mf.lookup(&key(1, 1), 11 * SEC).is_none());
        assert!(mf.lookup(&key(2, 9), 11 * SEC).is_some());
        assert_eq!((mf.len(), mf.n_masks()), (1, 1));
        // Freed slots are reused.
        mf.insert(&key(3, 3), &exact, Arc::new(3), 12 * SEC);
        assert_eq!(mf.lookup(&key(3, 3), 12 * SEC).map(|v| *v), Some(3));
    }

    #[test]
    fn evicting_the_last_entry_of_the_group_being_inserted_into_keeps_the_insert() {
        let mut mf = MegaflowCache::new(1);
        let exact = FlowKey::exact_mask();
        mf.insert(&key(1, 1), &exact, Arc::new(1), 0);
        // Full: the one entry of the exact group goes, and with it the group itself.
        mf.insert(&key(1, 2), &exact, Arc::new(2), 0);
        assert_eq!(mf.lookup(&key(1, 2), 0).map(|v| *v), Some(2));
        assert!(mf.lookup(&key(1, 1), 0).is_none());
        assert_eq!((mf.len(), mf.n_masks()), (1, 1));
    }

    #[test]
    fn a_lookup_only_probes_masks_of_its_recirculation_pass_and_only_their_words() {
        let mut mf = MegaflowCache::new(100);
        // Megaflow masks as the slow path makes them: in_port and recirc_id always pinned.
        let pass = |recirc_id: u32, nw_dst: u32, tp_dst: u16| FlowKey {
            in_port: 1,
            recirc_id,
            nw_dst,
            tp_dst,
            ..Default::default()
        };
        let dst_mask = FlowKey {
            in_port: u32::MAX,
            recirc_id: u32::MAX,
            nw_dst: u32::MAX,
            ..Default::default()
        };
        let port_mask = FlowKey {
            tp_dst: u16::MAX,
            ..dst_mask
        };
        mf.insert(&pass(0, 7, 80), &dst_mask, Arc::new("first pass"), 0);
        mf.insert(&pass(3, 7, 80), &port_mask, Arc::new("third pass"), 0);
        // Fields outside a mask do not matter, those inside do, and the pass must agree.
        assert_eq!(mf.lookup(&pass(0, 7, 9), 0).map(|v| *v), Some("first pass"));
        assert_eq!(
            mf.lookup(&pass(3, 7, 80), 0).map(|v| *v),
            Some("third pass")
        );
        assert!(mf.lookup(&pass(3, 7, 81), 0).is_none());
        assert!(mf.lookup(&pass(2, 7, 80), 0).is_none());
        assert!(mf.lookup(&pass(0, 8, 80), 0).is_none());
        let other_port = FlowKey {
            in_port: 2,
            ..pass(0, 7, 80)
        };
        assert!(mf.lookup(&other_port, 0).is_none());
        // A mask that does not pin recirc_id matches every pass.
        let any_pass = FlowKey {
            in_port: u32::MAX,
            ..Default::default()
        };
        let mut anywhere = MegaflowCache::new(10);
        anywhere.insert(&pass(0, 1, 1), &any_pass, Arc::new("any"), 0);
        assert_eq!(anywhere.lookup(&pass(5, 2, 2), 0).map(|v| *v), Some("any"));
    }

    #[test]
    fn revalidate_keeps_replaces_or_drops() {
        let mut mf = MegaflowCache::new(10);
        let exact = FlowKey::exact_mask();
        for i in 0..4 {
            mf.insert(&key(1, i), &exact, Arc::new(i), 0);
        }
        mf.revalidate(|_, v| match **v {
            0 => None,
            1 => Some(Arc::new(10)),
            _ => Some(v.clone()),
        });
        assert_eq!(mf.len(), 3);
        assert!(mf.lookup(&key(1, 0), 0).is_none());
        assert_eq!(mf.lookup(&key(1, 1), 0).map(|v| *v), Some(10));
        assert_eq!(mf.lookup(&key(1, 2), 0).map(|v| *v), Some(2));
    }
}
