//! A multi-mask packet classifier: the highest-priority rule matching a [`FlowKey`], plus the
//! set of key bits that decided it.
//!
//! # What it promises
//!
//! A rule is a match value, a mask (a `FlowKey` whose set bits are the bits that matter), a
//! priority and a payload. [`Classifier::lookup`] returns the matching rule with the highest
//! priority; among matching rules of equal priority the one inserted first (lowest [`RuleId`])
//! wins, so the answer never depends on table layout or history. The payload type is generic:
//! the classifier knows nothing about actions or OpenFlow tables.
//!
//! `lookup` also ORs into a caller-supplied *un-wildcard* mask `wc` every key bit it consulted.
//! The promise: every packet that agrees with the looked-up key on the bits set in `wc` gets the
//! same answer. That is what lets the slow path install a megaflow: the caller runs its
//! OpenFlow tables, accumulates `wc` across all the lookups it made, and caches
//! `(key & wc, wc) -> actions`; the cache entry is then exact for every packet it will match.
//! The fewer bits in `wc`, the more packets one megaflow covers.
//!
//! # Masks become subtables
//!
//! Rules are grouped by mask, one subtable per distinct mask (in practice a handful to a few
//! dozen: "in_port exact", "ip dst /24", "ip dst + proto + port", ...). Inside a subtable all
//! rules look at the same bits, so a lookup is one hash of `key & mask` over the mask's nonzero
//! words and one probe; rules with the same masked value share a bucket, sorted best first. The
//! cost of a lookup therefore depends on the number of masks, not the number of rules.
//!
//! Subtables are kept sorted by the highest priority they hold. A lookup probes them in that
//! order and stops as soon as the best match so far has a priority strictly greater than the
//! next subtable's maximum: nothing there could win. (Strictly, because an equal-priority rule
//! with a lower id could still win the tie.)
//!
//! # Un-wildcarding
//!
//! Every probed subtable adds its whole mask to `wc`, whether it hit or missed: a miss is only a
//! miss for packets that agree with the key on those bits. Subtables skipped by the priority
//! early exit add nothing — their rules cannot beat the winner for any packet. One stage of
//! Open vSwitch's staged lookup is implemented: a subtable whose rules carry no key's metadata
//! (pipeline metadata, tunnel and conntrack fields; a few distinct values per subtable are
//! tracked) misses on those bits alone and adds only them, so an established packet does not
//! pin the addresses and ports of `ct_state=+new` rules. Prefix tries are not implemented: the
//! other misses add the whole mask, always correct, only sometimes wider than needed.
//!
//! # Snapshots
//!
//! Readers never see a classifier change under them. Changes go into a [`ClassifierBuilder`];
//! [`ClassifierBuilder::publish`] turns the current rule set into an immutable
//! `Arc<Classifier>` and swaps it in (arc-swap), so a batch of changes appears atomically and
//! the lookup path takes no lock. A reader thread loads the snapshot once per burst through a
//! [`ClassifierReader`] and keeps using it until its next load. (vswitch does not use the
//! builder's own publishing: it takes [`ClassifierBuilder::snapshot`] of each table and publishes
//! them together, in one per-bridge pipeline snapshot behind its own `ArcSwap`.)
//!
//! Publishing is cheap because snapshots share structure: each subtable is a two-level radix
//! tree on the hash (directory nodes of 32 leaf pointers, leaves of a few buckets), every node
//! behind an `Arc`, and the builder copies a node (copy-on-write) only when a change lands in it.
//! A change costs one directory node, one leaf and (once per publish) one block of eight nodes'
//! filters, whatever the table size, so publishing N
//! scattered changes into a million rules costs O(N), not O(rules).
//!
//! # Bursts
//!
//! [`Classifier::lookup_burst`] looks up to [`BURST`] packets at a time. When some subtable is
//! too big for the cache it goes in rounds: every packet first walks the subtables as `lookup`
//! would, up to the next one whose directory node's filter (in cache; it settles most misses
//! without touching a leaf) lets its hash through; then the burst reads all those candidates'
//! leaf group lines (tags next to rule pointers), then the key words of those rules, and only
//! then compares. Each stage's loads are independent of each other, so a burst's cache misses
//! overlap: a round costs a few memory latencies for the whole burst, not per packet and
//! subtable. The reads are ordinary loads (the crate has no `unsafe`; `_mm_prefetch` would
//! need it), fed to `black_box` so the compiler keeps them.

mod builder;
mod conj;
mod subtable;

use std::fmt;
use std::sync::Arc;

use encap::FlowKey;

pub use builder::{ClassifierBuilder, ClassifierReader};
pub use conj::Conjunction;
use subtable::{Leaf, Subtable};

/// Packets per internal step of [`Classifier::lookup_burst`].
pub const BURST: usize = 32;

/// [`Classifier::lookup_burst`] stages its probes (loads first, compares after) in
/// classifiers with a subtable of at least this many rules; smaller ones stay in cache and are
/// probed directly.
const STAGED_MIN_RULES: usize = 2048;

/// A probe the staged burst lookup reads ahead: packet `packet`'s hash passed the directory
/// filter of `subtable`, so `leaf` may hold its rule.
struct Candidate<'a, R> {
    packet: usize,
    subtable: &'a Subtable<R>,
    leaf: &'a Leaf<R>,
    hash: u64,
}

impl<R> Clone for Candidate<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Candidate<'_, R> {}

/// Identifies a rule within one [`ClassifierBuilder`]; ids increase with insertion order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One classifier rule. The match value is stored already masked.
pub struct Rule<R> {
    id: RuleId,
    priority: u32,
    value: FlowKey,
    /// Shared by every rule of the subtable.
    mask: Arc<FlowKey>,
    payload: R,
}

impl<R> Rule<R> {
    pub fn id(&self) -> RuleId {
        self.id
    }

    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// The match value, with every bit outside the mask cleared.
    pub fn value(&self) -> &FlowKey {
        &self.value
    }

    pub fn mask(&self) -> &FlowKey {
        &self.mask
    }

    pub fn payload(&self) -> &R {
        &self.payload
    }

    /// True when `key` satisfies this rule's match.
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.matches_masked(&self.value, &self.mask)
    }

    /// True when `self` wins over `other` if both match: higher priority, then lower id.
    #[inline]
    pub fn beats(&self, other: &Rule<R>) -> bool {
        (self.priority, std::cmp::Reverse(self.id)) > (other.priority, std::cmp::Reverse(other.id))
    }
}

impl<R: fmt::Debug> fmt::Debug for Rule<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// An immutable snapshot of a rule set, built by [`ClassifierBuilder`].
pub struct Classifier<R> {
    /// Sorted by `max_priority`, highest first.
    subtables: Box<[Arc<Subtable<R>>]>,
    /// Some subtable is too big for the cache: bursts take the pipelined probe.
    staged: bool,
    n_rules: usize,
    version: u64,
}

impl<R> Classifier<R> {
    fn empty() -> Self {
        Classifier {
            subtables: Box::new([]),
            staged: false,
            n_rules: 0,
            version: 0,
        }
    }

    /// The best rule matching `key`, if any. ORs into `wc` the bits the answer depends on: every
    /// key agreeing with `key` on `wc`'s bits gets the same rule. Does not allocate.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, wc: &mut FlowKey) -> Option<&Rule<R>> {
        self.lookup_arc(key, wc).map(|r| &**r)
    }

    #[inline]
    fn lookup_arc(&self, key: &FlowKey, wc: &mut FlowKey) -> Option<&Arc<Rule<R>>> {
        let key_words = key.words();
        let wc_words = wc.words_mut();
        let mut best: Option<&Arc<Rule<R>>> = None;
        for subtable in self.subtables.iter() {
            if best.is_some_and(|b| b.priority > subtable.max_priority) {
                break;
            }
            if subtable.unwildcard_staged(key_words, wc_words) {
                continue;
            }
            if let Some(rule) = subtable.lookup(key_words)
                && best.is_none_or(|b| rule.beats(b))
            {
                best = Some(rule);
            }
        }
        best
    }

    /// [`lookup`](Self::lookup) for a burst: `out[i]` and `wcs[i]` get what `lookup(&keys[i],
    /// &mut wcs[i])` would give. In tables too big for the cache, up to [`BURST`] packets'
    /// probes are read ahead together, so the cache misses of different packets overlap.
    ///
    /// Only the first `min(keys.len(), wcs.len(), out.len())` packets are looked up.
    pub fn lookup_burst<'a>(
        &'a self,
        keys: &[FlowKey],
        wcs: &mut [FlowKey],
        out: &mut [Option<&'a Rule<R>>],
    ) {
        let n = keys.len().min(wcs.len()).min(out.len());
        for start in (0..n).step_by(BURST) {
            let end = (start + BURST).min(n);
            self.lookup_chunk(
                &keys[start..end],
                &mut wcs[start..end],
                &mut out[start..end],
            );
        }
    }

    fn lookup_chunk<'a>(
        &'a self,
        keys: &[FlowKey],
        wcs: &mut [FlowKey],
        out: &mut [Option<&'a Rule<R>>],
    ) {
        let best = if self.staged {
            self.lookup_chunk_staged(keys, wcs)
        } else {
            self.lookup_chunk_direct(keys, wcs)
        };
        for (o, b) in out.iter_mut().zip(best) {
            *o = b.map(|r| &**r);
        }
    }

    /// The burst probe for tables that stay in cache: packet by packet, as [`lookup`](Self::lookup).
    fn lookup_chunk_direct<'a>(
        &'a self,
        keys: &[FlowKey],
        wcs: &mut [FlowKey],
    ) -> [Option<&'a Arc<Rule<R>>>; BURST] {
        let mut best: [Option<&'a Arc<Rule<R>>>; BURST] = [None; BURST];
        for ((key, wc), b) in keys.iter().zip(wcs.iter_mut()).zip(best.iter_mut()) {
            *b = self.lookup_arc(key, wc);
        }
        best
    }

    /// The burst probe for tables too big for the cache. Each packet walks the subtables in
    /// the same order, with the same early exit and un-wildcarding, as [`lookup`](Self::lookup);
    /// what differs is when the memory is read. A round first advances every packet to its next
    /// *candidate*: the next subtable whose directory filter lets its hash through (the filters
    /// stay in cache; most probes end there). Then the round reads, for all candidates of the
    /// burst together, the leaf group line each candidate's tag picks (tags next to rule
    /// pointers), then the key words of the first rule there with the tag, and only then
    /// compares. So a burst pays a few
    /// memory latencies per round, its packets' misses overlapping, instead of a few per
    /// packet and subtable; most packets need one or two rounds (a hit, then the early exit).
    fn lookup_chunk_staged<'a>(
        &'a self,
        keys: &[FlowKey],
        wcs: &mut [FlowKey],
    ) -> [Option<&'a Arc<Rule<R>>>; BURST] {
        let mut best: [Option<&'a Arc<Rule<R>>>; BURST] = [None; BURST];
        let n_sub = self.subtables.len();
        // The subtable each packet probes next; `n_sub` once the packet is settled.
        let mut next = [0usize; BURST];
        let mut cands: [Option<Candidate<'a, R>>; BURST] = [None; BURST];
        loop {
            let mut n_cands = 0;
            for (i, (key, wc)) in keys.iter().zip(wcs.iter_mut()).enumerate() {
                let (key, wc) = (key.words(), wc.words_mut());
                let mut s = next[i];
                while s < n_sub {
                    let subtable = &*self.subtables[s];
                    if best[i].is_some_and(|b| b.priority > subtable.max_priority) {
                        s = n_sub;
                        break;
                    }
                    s += 1;
                    if subtable.unwildcard_staged(key, wc) {
                        continue;
                    }
                    let hash = subtable.hash(key);
                    if let Some(leaf) = subtable.candidate_leaf(hash) {
                        cands[n_cands] = Some(Candidate {
                            packet: i,
                            subtable,
                            leaf,
                            hash,
                        });
                        n_cands += 1;
                        break;
                    }
                }
                next[i] = s;
            }
            if n_cands == 0 {
                return best;
            }
            let cands = &cands[..n_cands];
            let mut warm = 0u64;
            for c in cands.iter().flatten() {
                warm ^= u64::from(c.leaf.warm(subtable::tag_of(c.hash)));
            }
            for c in cands.iter().flatten() {
                if let Some(rule) = c.leaf.first_candidate(subtable::tag_of(c.hash)) {
                    warm ^= c.subtable.touch_rule(rule);
                }
            }
            std::hint::black_box(warm);
            for c in cands.iter().flatten() {
                let i = c.packet;
                if let Some(rule) = c.subtable.probe_leaf(c.leaf, keys[i].words(), c.hash)
                    && best[i].is_none_or(|b| rule.beats(b))
                {
                    best[i] = Some(rule);
                }
            }
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.n_rules
    }

    pub fn is_empty(&self) -> bool {
        self.n_rules == 0
    }

    /// Number of distinct masks.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Grows by one with every snapshot that contains changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The rule with exactly this match and priority, if any (the subtable of `mask` is
    /// found by a scan: for the slow path, not per packet).
    pub fn find_exact(&self, value: &FlowKey, mask: &FlowKey, priority: u32) -> Option<&Rule<R>> {
        let subtable = self.subtables.iter().find(|s| **s.mask() == *mask)?;
        subtable
            .find_exact(&value.masked(mask), priority)
            .map(|r| &**r)
    }

    /// Every rule, subtable by subtable, in no particular order within a subtable.
    pub fn iter(&self) -> impl Iterator<Item = &Rule<R>> {
        self.subtables.iter().flat_map(|s| s.rules()).map(|r| &**r)
    }

    /// `(mask, max priority, rules, leaves)` per subtable, in probe order: for diagnostics.
    pub fn subtable_stats(&self) -> impl Iterator<Item = (&FlowKey, u32, usize, usize)> {
        self.subtables
            .iter()
            .map(|s| (&**s.mask(), s.max_priority, s.len(), s.n_shards()))
    }
}
