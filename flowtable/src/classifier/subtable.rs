//! One subtable: every rule that shares one mask, in a hash table keyed by the masked fields.
//!
//! The table is split into shards (a power of two of them, picked by hash bits) and each shard
//! sits behind its own `Arc`. A published snapshot and the builder share shards; the builder
//! copies a shard only when a change lands in it (`Arc::make_mut`), so publishing a small batch
//! costs the shards it touched, not the size of the subtable.

use std::sync::Arc;

use encap::FlowKey;
use hashbrown::HashTable;

use super::{Rule, RuleId};

/// Grow the shard count when the average shard holds more buckets than this. Small shards keep
/// copy-on-write cheap; the extra indirection costs one pointer load per probe.
const SHARD_TARGET: usize = 512;
/// Shard index bits come from bits 40.. of the hash (hashbrown uses the top 7 and the low bits).
const SHARD_SHIFT: u32 = 40;
const MAX_SHARDS: usize = 1 << 16;

/// Rules with the same masked value: `best` wins, `others` are sorted best-first.
pub(crate) struct Bucket<R> {
    hash: u64,
    best: Arc<Rule<R>>,
    others: Vec<Arc<Rule<R>>>,
}

impl<R> Clone for Bucket<R> {
    fn clone(&self) -> Self {
        Bucket {
            hash: self.hash,
            best: Arc::clone(&self.best),
            others: self.others.clone(),
        }
    }
}

impl<R> Bucket<R> {
    fn add(&mut self, rule: Arc<Rule<R>>) {
        if rule.beats(&self.best) {
            let old = std::mem::replace(&mut self.best, rule);
            self.others.insert(0, old);
        } else {
            let at = self.others.partition_point(|r| r.beats(&rule));
            self.others.insert(at, rule);
        }
    }

    /// Removes rule `id`; returns it. The bucket is empty afterwards when `best` was the only one
    /// (the caller drops the bucket then).
    fn remove(&mut self, id: RuleId) -> Option<(Arc<Rule<R>>, bool)> {
        if self.best.id == id {
            if self.others.is_empty() {
                return Some((Arc::clone(&self.best), true));
            }
            let next = self.others.remove(0);
            return Some((std::mem::replace(&mut self.best, next), false));
        }
        let at = self.others.iter().position(|r| r.id == id)?;
        Some((self.others.remove(at), false))
    }

    fn rules(&self) -> impl Iterator<Item = &Arc<Rule<R>>> {
        std::iter::once(&self.best).chain(self.others.iter())
    }

    /// The `i`-th best rule of the bucket (0 = `best`): rules with this exact match, best first.
    #[inline]
    pub(crate) fn nth(&self, i: usize) -> Option<&Arc<Rule<R>>> {
        match i {
            0 => Some(&self.best),
            _ => self.others.get(i - 1),
        }
    }
}

pub(crate) struct Shard<R> {
    table: HashTable<Bucket<R>>,
}

impl<R> Clone for Shard<R> {
    fn clone(&self) -> Self {
        Shard {
            table: self.table.clone(),
        }
    }
}

impl<R> Shard<R> {
    fn new() -> Self {
        Shard {
            table: HashTable::new(),
        }
    }
}

pub(crate) struct Subtable<R> {
    mask: Arc<FlowKey>,
    /// Indices of the mask's nonzero words, and those words: hashing and comparing touch only these.
    word_idx: Box<[u8]>,
    mask_words: Box<[u64]>,
    seed: u64,
    /// Highest priority of any rule here, maintained by the builder.
    pub(crate) max_priority: u32,
    n_rules: usize,
    n_buckets: usize,
    shards: Box<[Arc<Shard<R>>]>,
}

impl<R> Clone for Subtable<R> {
    fn clone(&self) -> Self {
        Subtable {
            mask: Arc::clone(&self.mask),
            word_idx: self.word_idx.clone(),
            mask_words: self.mask_words.clone(),
            seed: self.seed,
            max_priority: self.max_priority,
            n_rules: self.n_rules,
            n_buckets: self.n_buckets,
            shards: self.shards.clone(),
        }
    }
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xd6e8_feb8_6659_fd93;

impl<R> Subtable<R> {
    pub(crate) fn new(mask: Arc<FlowKey>, seed: u64) -> Self {
        let (word_idx, mask_words): (Vec<u8>, Vec<u64>) = mask
            .words()
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != 0)
            .map(|(i, m)| (i as u8, *m))
            .unzip();
        Subtable {
            mask,
            word_idx: word_idx.into(),
            mask_words: mask_words.into(),
            seed,
            max_priority: 0,
            n_rules: 0,
            n_buckets: 0,
            shards: vec![Arc::new(Shard::new())].into(),
        }
    }

    pub(crate) fn mask(&self) -> &Arc<FlowKey> {
        &self.mask
    }

    pub(crate) fn len(&self) -> usize {
        self.n_rules
    }

    pub(crate) fn n_shards(&self) -> usize {
        self.shards.len()
    }

    /// Hash of `key & mask` over the mask's nonzero words.
    #[inline]
    pub(crate) fn hash(&self, key: &[u64; FlowKey::WORDS]) -> u64 {
        let mut h = self.seed;
        for (&i, &m) in self.word_idx.iter().zip(self.mask_words.iter()) {
            h = fold_mul(h ^ (key[usize::from(i)] & m), K1);
        }
        fold_mul(h ^ K2, K1)
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        ((hash >> SHARD_SHIFT) as usize) & (self.shards.len() - 1)
    }

    /// True when `key & mask` equals the (already masked) `value`.
    #[inline]
    fn key_matches(&self, key: &[u64; FlowKey::WORDS], value: &FlowKey) -> bool {
        let v = value.words();
        self.word_idx
            .iter()
            .zip(self.mask_words.iter())
            .all(|(&i, &m)| key[usize::from(i)] & m == v[usize::from(i)])
    }

    /// ORs this subtable's mask into `wc`: the bits a probe here depends on.
    #[inline]
    pub(crate) fn unwildcard(&self, wc: &mut [u64; FlowKey::WORDS]) {
        for (&i, &m) in self.word_idx.iter().zip(self.mask_words.iter()) {
            wc[usize::from(i)] |= m;
        }
    }

    /// The best rule of this subtable matching `key`.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u64; FlowKey::WORDS]) -> Option<&Arc<Rule<R>>> {
        self.probe(key, self.hash(key))
    }

    /// [`lookup`](Self::lookup) with the hash already computed.
    #[inline]
    pub(crate) fn probe(&self, key: &[u64; FlowKey::WORDS], hash: u64) -> Option<&Arc<Rule<R>>> {
        let shard = &self.shards[self.shard_of(hash)];
        shard
            .table
            .find(hash, |b| {
                b.hash == hash && self.key_matches(key, &b.best.value)
            })
            .map(|b| &b.best)
    }

    /// The bucket of rules matching `key` (all share one masked value), best first.
    #[inline]
    pub(crate) fn lookup_bucket(&self, key: &[u64; FlowKey::WORDS]) -> Option<&Bucket<R>> {
        let hash = self.hash(key);
        let shard = &self.shards[self.shard_of(hash)];
        shard.table.find(hash, |b| {
            b.hash == hash && self.key_matches(key, &b.best.value)
        })
    }

    /// The rule with exactly this (masked) value and priority, best first among equals.
    pub(crate) fn find_exact(&self, value: &FlowKey, priority: u32) -> Option<&Arc<Rule<R>>> {
        let hash = self.hash(value.words());
        let shard = &self.shards[self.shard_of(hash)];
        let bucket = shard
            .table
            .find(hash, |b| b.hash == hash && b.best.value == *value)?;
        bucket.rules().find(|r| r.priority == priority)
    }

    /// Adds `rule` (its value is already masked with this subtable's mask).
    pub(crate) fn insert(&mut self, rule: Arc<Rule<R>>) {
        let hash = self.hash(rule.value.words());
        let si = self.shard_of(hash);
        let shard = Arc::make_mut(&mut self.shards[si]);
        match shard
            .table
            .find_mut(hash, |b| b.hash == hash && b.best.value == rule.value)
        {
            Some(bucket) => bucket.add(rule),
            None => {
                shard.table.insert_unique(
                    hash,
                    Bucket {
                        hash,
                        best: rule,
                        others: Vec::new(),
                    },
                    |b| b.hash,
                );
                self.n_buckets += 1;
            }
        }
        self.n_rules += 1;
        if self.n_buckets > self.shards.len() * SHARD_TARGET && self.shards.len() < MAX_SHARDS {
            self.grow();
        }
    }

    /// Removes rule `id` whose masked value is `value`.
    pub(crate) fn remove(&mut self, value: &FlowKey, id: RuleId) -> Option<Arc<Rule<R>>> {
        let hash = self.hash(value.words());
        let si = self.shard_of(hash);
        // Probe the shared shard first so that a miss does not copy it.
        self.shards[si]
            .table
            .find(hash, |b| b.hash == hash && b.best.value == *value)?;
        let shard = Arc::make_mut(&mut self.shards[si]);
        let Ok(mut entry) = shard
            .table
            .find_entry(hash, |b| b.hash == hash && b.best.value == *value)
        else {
            return None;
        };
        let (rule, now_empty) = entry.get_mut().remove(id)?;
        if now_empty {
            entry.remove();
            self.n_buckets -= 1;
        }
        self.n_rules -= 1;
        Some(rule)
    }

    /// Doubles the shard count, redistributing buckets by the next hash bit.
    fn grow(&mut self) {
        let n = self.shards.len() * 2;
        let per_shard = self.n_buckets / n + 1;
        let mut shards: Vec<Shard<R>> = (0..n)
            .map(|_| Shard {
                table: HashTable::with_capacity(per_shard * 5 / 4),
            })
            .collect();
        for old in std::mem::take(&mut self.shards).into_vec() {
            // A shard no snapshot shares is moved, not copied.
            match Arc::try_unwrap(old) {
                Ok(shard) => {
                    for b in shard.table {
                        let si = ((b.hash >> SHARD_SHIFT) as usize) & (n - 1);
                        shards[si].table.insert_unique(b.hash, b, |b| b.hash);
                    }
                }
                Err(shared) => {
                    for b in shared.table.iter() {
                        let si = ((b.hash >> SHARD_SHIFT) as usize) & (n - 1);
                        shards[si]
                            .table
                            .insert_unique(b.hash, b.clone(), |b| b.hash);
                    }
                }
            }
        }
        self.shards = shards.into_iter().map(Arc::new).collect();
    }

    pub(crate) fn rules(&self) -> impl Iterator<Item = &Arc<Rule<R>>> {
        self.shards
            .iter()
            .flat_map(|s| s.table.iter())
            .flat_map(|b| b.rules())
    }

    /// Bytes this subtable's tables hold (rules themselves not included).
    pub(crate) fn table_bytes(&self) -> usize {
        let per_slot = std::mem::size_of::<Bucket<R>>() + 1;
        self.shards
            .iter()
            .map(|s| {
                s.table.capacity() * per_slot
                    + s.table
                        .iter()
                        .map(|b| b.others.capacity() * 8)
                        .sum::<usize>()
                    + std::mem::size_of::<Shard<R>>()
            })
            .sum()
    }
}
