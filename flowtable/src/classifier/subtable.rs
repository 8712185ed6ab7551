//! One subtable: every rule that shares one mask, in a hash table keyed by the masked fields.
//!
//! # Layout
//!
//! The table is a two-level radix tree on the top bits of the hash: a directory of
//! `Arc<[Arc<Leaf>]>` nodes (up to [`DIR_FANOUT`] leaves each), and small leaves of up to
//! [`LEAF_CAP`] buckets held inline. The leaf count doubles when the subtable averages more
//! than [`LEAF_FILL`] buckets per leaf, so a leaf holds 4–8 buckets on average.
//!
//! A leaf is [`GROUPS`] cache lines ([`Group`]), each holding the 32-bit tags (low hash bits,
//! never 0) of up to [`GROUP`] buckets next to those buckets' winning rule pointers, as Open
//! vSwitch's cmap bucket does; a bucket's group is picked by its tag. So a probe reads one
//! line, which answers it, then the rule itself: two dependent loads where a tag line followed
//! by a separate bucket line took three. The rest of a bucket's rules (same match, lower
//! priority) sit apart (`others`, allocated only when some bucket has them), read only by
//! conjunctive matching and removal;
//! buckets of a full group (rare: a Poisson(2) tail) spill into the leaf's overflow list. Each
//! directory node also has a small Bloom filter over the tags of its leaves' buckets
//! ([`Filter`]): a probe that misses — most do, a packet is probed in every subtable the
//! priorities leave in play — usually stops at the filter and never loads the leaf. The
//! filters sit apart from the nodes, eight consecutive nodes' to a block, so that the 1 MiB a
//! million rules need stay in cache on few pages. Knowing each address one step ahead is
//! what lets [`Classifier::lookup_burst`](super::Classifier::lookup_burst) start the memory
//! loads of a whole burst before it needs any of them.
//!
//! # Sharing between snapshots
//!
//! A published snapshot and the builder share directory nodes and leaves; the builder copies
//! a node only when a change lands in it (`Arc::make_mut`). A change therefore costs one
//! directory node (its `DIR_FANOUT` leaf pointers), one leaf (its few buckets) and one filter
//! block (2 KiB, once per publish), not the subtable: publishing 10k scattered changes into a
//! million rules copies ~10k small leaves.
//! Copying bumps the reference count of every pointer copied, and those counts sit in cold
//! memory; [`touch`] reads them all first so the cache misses overlap instead of queueing
//! behind one locked increment after another. When a snapshot is dropped, the leaves and
//! directory nodes only it held are emptied and kept for the next copies ([`Spares`]):
//! publishing batch after batch then reuses the same allocations instead of a malloc and a
//! free per copy (both are line-aligned, which glibc serves slowly, through `memalign`).

use std::sync::Arc;

use encap::FlowKey;

use super::{Rule, RuleId};

/// The leaf count doubles when the subtable holds more buckets than this per leaf.
const LEAF_FILL: usize = 8;
/// Leaves per directory node (log2).
const DIR_BITS: u32 = 5;
const DIR_FANOUT: usize = 1 << DIR_BITS;
/// 2^26 leaves is ~500M buckets: far beyond any table this switch holds.
const MAX_LEAF_BITS: u32 = 26;

/// Reads one word of each pointee so that their cache lines load in parallel: a copy that
/// follows (reference-count increments, which are serialising locked instructions) then hits
/// the cache. Only a hint for speed; it changes nothing.
#[inline]
fn touch<'a, T: ?Sized + 'a>(arcs: impl Iterator<Item = &'a Arc<T>>) {
    let mut acc = 0usize;
    for a in arcs {
        acc = acc.wrapping_add(Arc::strong_count(a));
    }
    std::hint::black_box(acc);
}

/// Rules with the same masked value, owned: `best` wins, `others` are sorted best-first. Used
/// where buckets move (the overflow list, growth); inline buckets are split between a group
/// line and the leaf's `others` array.
pub(crate) struct Bucket<R> {
    best: Arc<Rule<R>>,
    others: Vec<Arc<Rule<R>>>,
}

impl<R> Clone for Bucket<R> {
    fn clone(&self) -> Self {
        Bucket {
            best: Arc::clone(&self.best),
            others: self.others.clone(),
        }
    }
}

/// Adds `rule` to the bucket `(best, others)`.
fn bucket_add<R>(best: &mut Arc<Rule<R>>, others: &mut Vec<Arc<Rule<R>>>, rule: Arc<Rule<R>>) {
    if rule.beats(best) {
        let old = std::mem::replace(best, rule);
        others.insert(0, old);
    } else {
        let at = others.partition_point(|r| r.beats(&rule));
        others.insert(at, rule);
    }
}

/// Removes rule `id` from the bucket `(best, others)`; returns it, and true when it was the
/// only one (the caller drops the bucket then).
fn bucket_remove<R>(
    best: &mut Arc<Rule<R>>,
    others: &mut Vec<Arc<Rule<R>>>,
    id: RuleId,
) -> Option<(Arc<Rule<R>>, bool)> {
    if best.id == id {
        if others.is_empty() {
            return Some((Arc::clone(best), true));
        }
        let next = others.remove(0);
        return Some((std::mem::replace(best, next), false));
    }
    let at = others.iter().position(|r| r.id == id)?;
    Some((others.remove(at), false))
}

/// A bucket as the lookup sees it: the winning rule and the rest, best first.
pub(crate) struct BucketRef<'a, R> {
    best: &'a Arc<Rule<R>>,
    others: &'a [Arc<Rule<R>>],
}

impl<R> Clone for BucketRef<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for BucketRef<'_, R> {}

impl<'a, R> BucketRef<'a, R> {
    fn to_owned(self) -> Bucket<R> {
        Bucket {
            best: Arc::clone(self.best),
            others: self.others.to_vec(),
        }
    }

    fn rules(self) -> impl Iterator<Item = &'a Arc<Rule<R>>> {
        std::iter::once(self.best).chain(self.others.iter())
    }

    /// The `i`-th best rule of the bucket (0 = `best`): rules with this exact match, best first.
    #[inline]
    pub(crate) fn nth(self, i: usize) -> Option<&'a Arc<Rule<R>>> {
        match i {
            0 => Some(self.best),
            _ => self.others.get(i - 1),
        }
    }
}

/// Buckets per group: one cache line of their tags and winning rules.
const GROUP: usize = 5;
/// Groups per leaf; a bucket's group is fixed by its tag ([`group_of`]).
const GROUPS: usize = 4;
/// Buckets held inline in a leaf.
const LEAF_CAP: usize = GROUP * GROUPS;

/// One cache line that answers a probe: the tags (low hash bits, never 0; 0 = empty lane,
/// lanes fill in order) of up to `GROUP` buckets next to their winning rules. A probe reads
/// the group its tag picks and goes straight to the rule, one dependent load fewer than a tag
/// line followed by a separate bucket line.
#[repr(C, align(64))]
struct Group<R> {
    tags: [u32; GROUP],
    best: [Option<Arc<Rule<R>>>; GROUP],
}

impl<R> Clone for Group<R> {
    fn clone(&self) -> Self {
        Group {
            tags: self.tags,
            best: self.best.clone(),
        }
    }
}

impl<R> Group<R> {
    fn new() -> Self {
        Group {
            tags: [0; GROUP],
            best: std::array::from_fn(|_| None),
        }
    }

    /// Lanes in use (they fill in order).
    #[inline]
    fn len(&self) -> usize {
        self.tags.iter().take_while(|&&t| t != 0).count()
    }

    /// Bit `i` set when lane `i` carries `tag`.
    #[inline]
    fn hits(&self, tag: u32) -> u32 {
        let mut hits = 0u32;
        for (i, &t) in self.tags.iter().enumerate() {
            hits |= u32::from(t == tag) << i;
        }
        hits
    }

    #[inline]
    fn full(&self) -> bool {
        self.tags[GROUP - 1] != 0
    }
}

/// The group of a tag: bits the directory filter and the leaf index do not use.
#[inline]
fn group_of(tag: u32) -> usize {
    (tag >> 24) as usize % GROUPS
}

/// `GROUPS` group lines of `GROUP` inline buckets each (the rest of an inline bucket's rules
/// in `others`), and the buckets whose group was full in `overflow`.
#[repr(C)]
pub(crate) struct Leaf<R> {
    groups: [Group<R>; GROUPS],
    /// `others[g * GROUP + lane]`: the rules after the best one of that inline bucket; boxed
    /// and absent until some bucket has a second rule, so a leaf copy is its group lines.
    others: Option<Box<[Rules<R>; LEAF_CAP]>>,
    overflow: Vec<(u32, Bucket<R>)>,
}

impl<R> Clone for Leaf<R> {
    fn clone(&self) -> Self {
        touch(self.groups.iter().flat_map(|g| g.best.iter().flatten()));
        Leaf {
            groups: self.groups.clone(),
            others: self.others.clone(),
            overflow: self.overflow.clone(),
        }
    }

    /// A copy into an existing (recycled) leaf: no allocation for the leaf itself.
    fn clone_from(&mut self, source: &Self) {
        touch(source.groups.iter().flat_map(|g| g.best.iter().flatten()));
        for (dst, src) in self.groups.iter_mut().zip(source.groups.iter()) {
            dst.tags = src.tags;
            dst.best.clone_from(&src.best);
        }
        self.others.clone_from(&source.others);
        self.overflow.clone_from(&source.overflow);
    }
}

impl<R> Drop for Leaf<R> {
    fn drop(&mut self) {
        // The rules' reference counts are decremented next; load their lines together first.
        touch(self.groups.iter().flat_map(|g| g.best.iter().flatten()));
    }
}

/// Rules of one bucket after its best, best first.
type Rules<R> = Vec<Arc<Rule<R>>>;

/// A bucket's position in its leaf: `group * GROUP + lane` inline (`< LEAF_CAP`), above that
/// in the overflow list.
type Pos = usize;

impl<R> Leaf<R> {
    fn new() -> Self {
        Leaf {
            groups: std::array::from_fn(|_| Group::new()),
            others: None,
            overflow: Vec::new(),
        }
    }

    /// Empties the leaf in place (its rules' counts drop), keeping the allocation.
    fn clear(&mut self) {
        touch(self.groups.iter().flat_map(|g| g.best.iter().flatten()));
        for group in &mut self.groups {
            group.tags = [0; GROUP];
            group.best = std::array::from_fn(|_| None);
        }
        self.others = None;
        self.overflow.clear();
    }

    /// The position of the first bucket with `tag` whose winning rule `eq` accepts.
    #[inline]
    fn position(&self, tag: u32, eq: impl Fn(&Rule<R>) -> bool) -> Option<Pos> {
        let g = group_of(tag);
        let group = &self.groups[g];
        let mut hits = group.hits(tag);
        while hits != 0 {
            let lane = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            if let Some(r) = &group.best[lane]
                && eq(r)
            {
                return Some(g * GROUP + lane);
            }
        }
        // A group spills into the overflow list only when it is full.
        if !group.full() {
            return None;
        }
        self.overflow
            .iter()
            .position(|(t, b)| *t == tag && eq(&b.best))
            .map(|i| LEAF_CAP + i)
    }

    #[inline]
    fn find(&self, tag: u32, eq: impl Fn(&Rule<R>) -> bool) -> Option<BucketRef<'_, R>> {
        let pos = self.position(tag, eq)?;
        self.get(pos)
    }

    #[inline]
    fn get(&self, pos: Pos) -> Option<BucketRef<'_, R>> {
        if pos < LEAF_CAP {
            let best = self.groups[pos / GROUP].best[pos % GROUP].as_ref()?;
            Some(BucketRef {
                best,
                others: self.others.as_ref().map_or(&[], |o| o[pos].as_slice()),
            })
        } else {
            self.overflow.get(pos - LEAF_CAP).map(|(_, b)| BucketRef {
                best: &b.best,
                others: &b.others,
            })
        }
    }

    /// The bucket at `pos` as `(best, others)`, to change in place.
    fn get_mut(&mut self, pos: Pos) -> Option<(&mut Arc<Rule<R>>, &mut Rules<R>)> {
        if pos < LEAF_CAP {
            let best = self.groups[pos / GROUP].best[pos % GROUP].as_mut()?;
            let others = self
                .others
                .get_or_insert_with(|| Box::new(std::array::from_fn(|_| Vec::new())));
            Some((best, &mut others[pos]))
        } else {
            self.overflow
                .get_mut(pos - LEAF_CAP)
                .map(|(_, b)| (&mut b.best, &mut b.others))
        }
    }

    /// Removes rule `id` from the bucket at `pos`; returns it, and true when it was the
    /// bucket's only rule (the caller removes the bucket then).
    fn remove_rule(&mut self, pos: Pos, id: RuleId) -> Option<(Arc<Rule<R>>, bool)> {
        let bucket = self.get(pos)?;
        if bucket.others.is_empty() {
            return (bucket.best.id == id).then(|| (Arc::clone(bucket.best), true));
        }
        let (best, others) = self.get_mut(pos)?;
        let removed = bucket_remove(best, others, id);
        self.drop_empty_others();
        removed
    }

    /// Frees the boxed rule lists once no inline bucket has a second rule, so later copies
    /// of the leaf are its group lines again.
    fn drop_empty_others(&mut self) {
        if self
            .others
            .as_ref()
            .is_some_and(|o| o.iter().all(Vec::is_empty))
        {
            self.others = None;
        }
    }

    /// The first bucket's winning rule with `tag`, if any: the one a probe most likely
    /// compares (read ahead by the staged burst lookup; the probe itself still checks every
    /// candidate). It sits in the group line [`warm`](Self::warm) read.
    #[inline]
    pub(crate) fn first_candidate(&self, tag: u32) -> Option<&Arc<Rule<R>>> {
        let group = &self.groups[group_of(tag)];
        let hits = group.hits(tag);
        if hits == 0 {
            return None;
        }
        group.best[hits.trailing_zeros() as usize].as_ref()
    }

    /// Reads the group line a probe for `tag` needs, so that it loads ahead of the probe.
    #[inline]
    pub(crate) fn warm(&self, tag: u32) -> u32 {
        self.groups[group_of(tag)].tags[0]
    }

    fn push(&mut self, tag: u32, bucket: Bucket<R>) {
        let g = group_of(tag);
        let group = &mut self.groups[g];
        let lane = group.len();
        if lane < GROUP {
            group.tags[lane] = tag;
            group.best[lane] = Some(bucket.best);
            if !bucket.others.is_empty() {
                let others = self
                    .others
                    .get_or_insert_with(|| Box::new(std::array::from_fn(|_| Vec::new())));
                others[g * GROUP + lane] = bucket.others;
            }
        } else {
            self.overflow.push((tag, bucket));
        }
    }

    /// Removes the bucket at `pos`; the last bucket of its group (or an overflow one of the
    /// same group) fills the gap.
    fn remove_at(&mut self, pos: Pos) -> Option<Bucket<R>> {
        if pos >= LEAF_CAP {
            let i = pos - LEAF_CAP;
            return (i < self.overflow.len()).then(|| self.overflow.swap_remove(i).1);
        }
        let (g, lane) = (pos / GROUP, pos % GROUP);
        let group = &mut self.groups[g];
        let len = group.len();
        if lane >= len {
            return None;
        }
        let last = len - 1;
        group.tags.swap(lane, last);
        group.best.swap(lane, last);
        group.tags[last] = 0;
        let best = group.best[last].take();
        let others = match self.others.as_mut() {
            Some(o) => {
                o.swap(pos, g * GROUP + last);
                std::mem::take(&mut o[g * GROUP + last])
            }
            None => Vec::new(),
        };
        if let Some(i) = self.overflow.iter().position(|(t, _)| group_of(*t) == g) {
            let (tag, b) = self.overflow.swap_remove(i);
            self.push(tag, b);
        }
        self.drop_empty_others();
        best.map(|best| Bucket { best, others })
    }

    /// The tags of every bucket, inline and overflow.
    fn all_tags(&self) -> impl Iterator<Item = u32> + '_ {
        self.groups
            .iter()
            .flat_map(|g| g.tags.iter().copied().filter(|&t| t != 0))
            .chain(self.overflow.iter().map(|(t, _)| *t))
    }

    fn buckets(&self) -> impl Iterator<Item = BucketRef<'_, R>> {
        (0..LEAF_CAP)
            .filter_map(|pos| self.get(pos))
            .chain(self.overflow.iter().map(|(_, b)| BucketRef {
                best: &b.best,
                others: &b.others,
            }))
    }

    /// Number of buckets.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.groups.iter().map(Group::len).sum::<usize>() + self.overflow.len()
    }

    fn drain(&mut self) -> impl Iterator<Item = Bucket<R>> + '_ {
        let mut inline = Vec::with_capacity(LEAF_CAP);
        for (g, group) in self.groups.iter_mut().enumerate() {
            group.tags = [0; GROUP];
            for (lane, best) in group.best.iter_mut().enumerate() {
                if let Some(best) = best.take() {
                    let others = self
                        .others
                        .as_mut()
                        .map(|o| std::mem::take(&mut o[g * GROUP + lane]))
                        .unwrap_or_default();
                    inline.push(Bucket { best, others });
                }
            }
        }
        inline
            .into_iter()
            .chain(self.overflow.drain(..).map(|(_, b)| b))
    }

    fn bytes(&self) -> usize {
        // The leaf plus the Arc header (padded to the leaf's alignment).
        std::mem::size_of::<Self>()
            + std::mem::align_of::<Self>()
            + self.overflow.capacity() * std::mem::size_of::<(u32, Bucket<R>)>()
            + self
                .overflow
                .iter()
                .map(|(_, b)| b.others.capacity() * std::mem::size_of::<usize>())
                .sum::<usize>()
            + self.others.as_ref().map_or(0, |o| {
                std::mem::size_of_val(&**o)
                    + o.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<usize>()
            })
    }
}

/// 64-bit words of a directory node's filter: 8 bits per bucket at the fullest (`DIR_FANOUT`
/// leaves of `LEAF_FILL` buckets).
const FILTER_WORDS: usize = DIR_FANOUT * LEAF_FILL * 8 / 64;
/// Buckets removed from a node before its filter is rebuilt from the tags.
const FILTER_STALE_MAX: u32 = 32;

/// The filter word and the two bits of a tag: a blocked Bloom filter, both bits in one word.
/// Taken from the tag's bits, which are independent of the leaf index (the hash's top bits).
#[inline]
fn filter_bits(tag: u32) -> (usize, u64) {
    let word = (tag >> 1) as usize % FILTER_WORDS;
    let bits = (1u64 << ((tag >> 8) & 63)) | (1u64 << ((tag >> 14) & 63));
    (word, bits)
}

/// One directory node's Bloom filter over the tags of its leaves' buckets.
///
/// It lets a probe that misses (most probes: a packet is looked up in every subtable until the
/// priorities rule the rest out) stop before the leaf, whose group line is in memory for a
/// million rules: with 8 bits per bucket and two bits per tag, about 5 % of misses go on to
/// the leaf.
type Filter = [u64; FILTER_WORDS];

/// Directory filters per block: a subtable's filters sit together in blocks of this many
/// consecutive nodes', apart from the nodes ([`Subtable::filters`]).
const BLOCK_FILTERS: usize = 1 << BLOCK_BITS;
const BLOCK_BITS: u32 = 3;
const _: () = assert!(
    FILTER_WORDS == DIR_FANOUT,
    "candidate_leaf indexes a block by leaf index"
);

/// The filters of `BLOCK_FILTERS` consecutive directory nodes (a fixed size, so that a probe
/// indexes it without a length check; a small subtable's last block has unused filters).
/// Not line-aligned: a probe reads one word, and plain `malloc` serves a copy faster than
/// `memalign`.
#[derive(Clone)]
struct FilterBlock([Filter; BLOCK_FILTERS]);

fn filter_note(filter: &mut Filter, tag: u32) {
    let (word, bits) = filter_bits(tag);
    filter[word] |= bits;
}

/// The filter of every bucket under `node`.
fn filter_of<R>(node: &DirNode<R>) -> Filter {
    let mut filter = [0u64; FILTER_WORDS];
    for tag in node.leaves.iter().flatten().flat_map(|l| l.all_tags()) {
        filter_note(&mut filter, tag);
    }
    filter
}

/// The filter blocks of `dirs`, built from their leaves.
fn make_filters<R>(dirs: &[Dir<R>]) -> Box<[Arc<FilterBlock>]> {
    dirs.chunks(BLOCK_FILTERS)
        .map(|nodes| {
            Arc::new(FilterBlock(std::array::from_fn(|i| {
                nodes.get(i).map_or([0; FILTER_WORDS], |n| filter_of(n))
            })))
        })
        .collect()
}

/// A directory node: `DIR_FANOUT` leaf pointers (its filter is in the subtable's filter
/// blocks). Line-aligned as it was when the filter came first; not re-measured without.
#[repr(C, align(64))]
pub(crate) struct DirNode<R> {
    /// `None` past the last leaf of a subtable with fewer than `DIR_FANOUT` leaves, and
    /// everywhere in an emptied spare node.
    leaves: [Option<Arc<Leaf<R>>>; DIR_FANOUT],
    /// Buckets removed since the node's filter was built: their bits are still set.
    stale: u32,
}

impl<R> Clone for DirNode<R> {
    fn clone(&self) -> Self {
        touch(self.leaves.iter().flatten());
        DirNode {
            leaves: self.leaves.clone(),
            stale: self.stale,
        }
    }

    /// A copy into an existing spare node: no allocation for the node itself. Slots that
    /// already hold the source's leaf are left alone, so a spare that was this position's node
    /// a publish ago costs only the leaves changed since, not a count per leaf.
    fn clone_from(&mut self, source: &Self) {
        let differs = |i: &usize| !same_leaf(&self.leaves[*i], &source.leaves[*i]);
        touch(
            (0..DIR_FANOUT)
                .filter(differs)
                .flat_map(|i| &source.leaves[i]),
        );
        touch(
            (0..DIR_FANOUT)
                .filter(differs)
                .flat_map(|i| &self.leaves[i]),
        );
        self.stale = source.stale;
        for (dst, src) in self.leaves.iter_mut().zip(source.leaves.iter()) {
            if !same_leaf(dst, src) {
                dst.clone_from(src);
            }
        }
    }
}

fn same_leaf<R>(a: &Option<Arc<Leaf<R>>>, b: &Option<Arc<Leaf<R>>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl<R> DirNode<R> {
    fn new(leaves: [Option<Arc<Leaf<R>>>; DIR_FANOUT]) -> Self {
        DirNode { leaves, stale: 0 }
    }

    /// A bucket left: the node's filter rebuilt, once enough stale bits have piled up.
    fn forget_one(&mut self) -> Option<Filter> {
        self.stale += 1;
        (self.stale > FILTER_STALE_MAX).then(|| {
            self.stale = 0;
            filter_of(self)
        })
    }
}

type Dir<R> = Arc<DirNode<R>>;

/// Leaves kept for reuse per subtable: at most this many (~1.5 MiB).
const SPARE_LEAVES_MAX: usize = 4096;
/// Emptied directory nodes kept for reuse per subtable: at most this many (~0.3 MiB).
const SPARE_DIRS_MAX: usize = 1024;

/// Leaf and directory node allocations an old snapshot gave back, for the builder's next copies.
///
/// A publish after a batch of scattered changes frees the previous snapshot's copies of the
/// changed leaves and their nodes, and the next batch allocates as many new copies: with the
/// pool the copies land in the freed allocations, which skips a malloc and a free per copy.
///
/// A dropped snapshot's own directory node is kept at its position (`placed`, at most one per
/// position: ~1.3 MiB at a million rules) with the leaves it shares with newer versions still in
/// it: the next copy of that position starts from it, and only the slots changed since cost a
/// reference count ([`DirNode::clone_from`]). Emptying the node and refilling it took two
/// locked count updates per slot, one at the drop and one at the copy, on leaf headers that
/// are rarely in cache: most of a large publish's time. Its leaves that nothing else held at
/// the drop were emptied then, and a second old version of a position empties both, so removed
/// rules do not wait in a placed node. (One race is left: a reader thread dropping a snapshot,
/// which happens only past the publisher's grace wait, while the builder copies the same
/// position, can leave that position's node holding an old leaf until its next change.)
struct Spares<R> {
    leaves: std::sync::Mutex<Vec<Arc<Leaf<R>>>>,
    dirs: std::sync::Mutex<Vec<Dir<R>>>,
    placed: std::sync::Mutex<PlacedDirs<R>>,
}

/// Spare directory nodes by position, for the layout of `leaf_bits` (a grown subtable's
/// positions mean other leaves, so its old nodes go to the emptied pool instead).
struct PlacedDirs<R> {
    leaf_bits: u32,
    nodes: Vec<Option<Dir<R>>>,
}

/// Locks a spare list. A panic elsewhere cannot leave one inconsistent: every entry is an
/// emptied leaf or node, or an old node whose slots are each empty or a leaf that was shared.
fn lock_spares<T>(list: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    list.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adds `items` to `list` up to `max` entries; frees the rest.
fn keep_spares<T>(list: &std::sync::Mutex<Vec<T>>, items: Vec<T>, max: usize) {
    if items.is_empty() {
        return;
    }
    let mut spare = lock_spares(list);
    let room = max.saturating_sub(spare.len());
    spare.extend(items.into_iter().take(room));
}

impl<R> Spares<R> {
    fn new(leaf_bits: u32, n_dirs: usize) -> Self {
        Spares {
            leaves: std::sync::Mutex::new(Vec::new()),
            dirs: std::sync::Mutex::new(Vec::new()),
            placed: std::sync::Mutex::new(PlacedDirs {
                leaf_bits,
                nodes: (0..n_dirs).map(|_| None).collect(),
            }),
        }
    }

    fn take_leaf(&self) -> Option<Arc<Leaf<R>>> {
        lock_spares(&self.leaves).pop()
    }

    /// A spare node for position `at` of the `leaf_bits` layout: that position's old version
    /// when there is one, else an emptied node.
    fn take_dir(&self, at: usize, leaf_bits: u32) -> Option<Dir<R>> {
        let placed = {
            let mut placed = lock_spares(&self.placed);
            match placed.leaf_bits == leaf_bits {
                true => placed.nodes.get_mut(at).and_then(Option::take),
                false => None,
            }
        };
        placed.or_else(|| lock_spares(&self.dirs).pop())
    }

    /// Keeps `leaves` (emptied) and the nodes `dirs` of a dropped `leaf_bits` layout (held only
    /// here): at their positions when free, else emptied, each up to its maximum.
    fn give(&self, leaves: Vec<Arc<Leaf<R>>>, dirs: Vec<(usize, Dir<R>)>, leaf_bits: u32) {
        keep_spares(&self.leaves, leaves, SPARE_LEAVES_MAX);
        let mut unplaced = Vec::new();
        {
            let mut placed = lock_spares(&self.placed);
            let fits = placed.leaf_bits == leaf_bits;
            for (at, dir) in dirs {
                match placed.nodes.get_mut(at) {
                    Some(slot @ None) if fits => *slot = Some(dir),
                    // Another old version of this position waits already (two snapshots went
                    // before the builder copied it again): the two may share old leaves that
                    // nothing else holds now, so both are emptied and neither keeps them.
                    Some(slot) if fits => {
                        unplaced.extend(slot.take());
                        unplaced.push(dir);
                    }
                    _ => unplaced.push(dir),
                }
            }
        }
        // Emptied outside the lock: dropping the leaves' references may free some. Only nodes
        // held here alone join the emptied pool (all of them: they came from a drop or a slot).
        unplaced.retain_mut(|dir| match Arc::get_mut(dir) {
            Some(node) => {
                touch(node.leaves.iter().flatten());
                node.leaves = std::array::from_fn(|_| None);
                true
            }
            None => false,
        });
        keep_spares(&self.dirs, unplaced, SPARE_DIRS_MAX);
    }

    /// The layout changed to `leaf_bits` with `n_dirs` nodes: nodes placed for the old one
    /// are dropped (they would hold its leaves' counts up while the builder moves them).
    fn relayout(&self, leaf_bits: u32, n_dirs: usize) {
        let old = {
            let mut placed = lock_spares(&self.placed);
            placed.leaf_bits = leaf_bits;
            std::mem::replace(&mut placed.nodes, (0..n_dirs).map(|_| None).collect())
        };
        drop(old);
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        (
            lock_spares(&self.leaves).len(),
            lock_spares(&self.dirs).len(),
            lock_spares(&self.placed).nodes.iter().flatten().count(),
        )
    }
}

/// The leaf in `slot` to change: itself when nothing else holds it, else a copy, made in a
/// spare leaf when there is one.
fn leaf_mut<'a, R>(slot: &'a mut Arc<Leaf<R>>, spare: &Spares<R>) -> &'a mut Leaf<R> {
    if Arc::get_mut(slot).is_none()
        && let Some(mut fresh) = spare.take_leaf()
        && let Some(leaf) = Arc::get_mut(&mut fresh)
    {
        leaf.clone_from(slot);
        *slot = fresh;
    }
    Arc::make_mut(slot)
}

/// The directory node in `slot` (position `at` of the `leaf_bits` layout) to change, as
/// [`leaf_mut`] for leaves.
fn dir_mut<'a, R>(
    slot: &'a mut Dir<R>,
    at: usize,
    leaf_bits: u32,
    spare: &Spares<R>,
) -> &'a mut DirNode<R> {
    if Arc::get_mut(slot).is_none()
        && let Some(mut fresh) = spare.take_dir(at, leaf_bits)
        && let Some(node) = Arc::get_mut(&mut fresh)
    {
        node.clone_from(slot);
        *slot = fresh;
    }
    Arc::make_mut(slot)
}

/// Leaf `i` of `dir` to change; a slot past a small subtable's last leaf gets an empty one
/// (the leaf index never points there, so this is only for safety).
fn dir_leaf_mut<'a, R>(dir: &'a mut DirNode<R>, i: usize, spare: &Spares<R>) -> &'a mut Leaf<R> {
    leaf_mut(
        dir.leaves[i].get_or_insert_with(|| Arc::new(Leaf::new())),
        spare,
    )
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
    /// log2 of the leaf count; a leaf is picked by the top `leaf_bits` bits of the hash.
    leaf_bits: u32,
    /// `max(1, leaves / DIR_FANOUT)` nodes of `min(leaves, DIR_FANOUT)` leaves.
    dirs: Box<[Dir<R>]>,
    /// The nodes' filters, `BLOCK_FILTERS` nodes' to a block: every probe reads one, and at a
    /// million rules they are 1 MiB in ~512 blocks, where inside the nodes they were spread
    /// over 4096 allocations across the whole table (an address translation missed per probe).
    filters: Box<[Arc<FilterBlock>]>,
    /// The metadata stage: `None` when the mask has no metadata bits or nothing besides them.
    stage: Option<Stage>,
    /// Shared by every copy of this subtable (the builder's and its snapshots').
    spare: Arc<Spares<R>>,
}

/// The mask's metadata words (pipeline metadata, tunnel and conntrack fields: everything before
/// L2), checked before the full probe as Open vSwitch's staged lookup does. A key whose metadata
/// no rule here has misses the subtable on those bits alone, so the probe un-wildcards only
/// them: `table=1,ct_state=+new+trk,tcp,nw_dst=...,tp_dst=80` then pins only `ct_state` of an
/// established packet, instead of its addresses and ports (one megaflow per connection).
#[derive(Clone)]
struct Stage {
    word_idx: Box<[u8]>,
    mask_words: Box<[u64]>,
    /// `(hash of a rule's metadata, rules with it)`; `None` once more than [`STAGE_VALUES`]
    /// distinct values were seen (the stage is skipped from then on: always correct, only wider).
    values: Option<Vec<(u64, u32)>>,
}

/// Distinct metadata values a subtable's stage tracks (kept small: the list is scanned per
/// probe and copied with the subtable when a snapshot shares it).
const STAGE_VALUES: usize = 8;

/// Words before this one hold only metadata, tunnel and conntrack fields.
const L2_WORD: usize = std::mem::offset_of!(FlowKey, eth_dst) / 8;

impl Stage {
    fn new(word_idx: &[u8], mask_words: &[u64]) -> Option<Self> {
        let n = word_idx
            .iter()
            .take_while(|&&i| usize::from(i) < L2_WORD)
            .count();
        (n > 0 && n < word_idx.len()).then(|| Stage {
            word_idx: word_idx[..n].into(),
            mask_words: mask_words[..n].into(),
            values: Some(Vec::new()),
        })
    }

    #[inline]
    fn hash(&self, key: &[u64; FlowKey::WORDS]) -> u64 {
        let mut h = K2;
        for (&i, &m) in self.word_idx.iter().zip(self.mask_words.iter()) {
            h = fold_mul(h ^ (key[usize::from(i)] & m), K1);
        }
        h
    }

    fn add(&mut self, value: &[u64; FlowKey::WORDS]) {
        let h = self.hash(value);
        let Some(values) = self.values.as_mut() else {
            return;
        };
        if let Some(at) = values.iter().position(|(v, _)| *v == h) {
            values[at].1 += 1;
        } else if values.len() < STAGE_VALUES {
            values.push((h, 1));
        } else {
            self.values = None;
        }
    }

    fn remove(&mut self, value: &[u64; FlowKey::WORDS]) {
        let h = self.hash(value);
        if let Some(values) = self.values.as_mut()
            && let Some(at) = values.iter().position(|(v, _)| *v == h)
        {
            values[at].1 -= 1;
            if values[at].1 == 0 {
                values.swap_remove(at);
            }
        }
    }

    /// True when no rule's metadata equals the key's (a hash miss is exact: equal values hash
    /// alike; a collision only means "maybe", and the full probe decides).
    #[inline]
    fn rules_out(&self, key: &[u64; FlowKey::WORDS]) -> bool {
        self.values.as_ref().is_some_and(|values| {
            let h = self.hash(key);
            !values.iter().any(|(v, _)| *v == h)
        })
    }
}

impl<R> Clone for Subtable<R> {
    fn clone(&self) -> Self {
        touch(self.dirs.iter());
        Subtable {
            mask: Arc::clone(&self.mask),
            word_idx: self.word_idx.clone(),
            mask_words: self.mask_words.clone(),
            seed: self.seed,
            max_priority: self.max_priority,
            n_rules: self.n_rules,
            n_buckets: self.n_buckets,
            leaf_bits: self.leaf_bits,
            dirs: self.dirs.clone(),
            filters: self.filters.clone(),
            stage: self.stage.clone(),
            spare: Arc::clone(&self.spare),
        }
    }
}

impl<R> Drop for Subtable<R> {
    fn drop(&mut self) {
        // Directory nodes only this subtable holds go to the spares. Their leaves that nothing
        // else holds (old versions of changed leaves) are emptied into the spare leaves now, so
        // their rules go as they would with the node; the rest stay in the node, for the next
        // copy of its position. Each node's leaf headers are loaded together first, so the
        // cache misses overlap.
        let dirs = std::mem::take(&mut self.dirs);
        touch(dirs.iter());
        let (mut leaves, mut nodes) = (Vec::new(), Vec::new());
        for (at, mut dir) in dirs.into_vec().into_iter().enumerate() {
            // A plain load first: most nodes are shared, and `get_mut` is a locked write.
            if Arc::strong_count(&dir) != 1 {
                continue;
            }
            let Some(node) = Arc::get_mut(&mut dir) else {
                continue;
            };
            touch(node.leaves.iter().flatten());
            for slot in &mut node.leaves {
                if slot.as_ref().is_some_and(|l| Arc::strong_count(l) == 1)
                    && let Some(mut leaf) = slot.take()
                    && let Some(l) = Arc::get_mut(&mut leaf)
                {
                    l.clear();
                    leaves.push(leaf);
                }
            }
            nodes.push((at, dir));
        }
        self.spare.give(leaves, nodes, self.leaf_bits);
    }
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xd6e8_feb8_6659_fd93;

/// The leaf tag of a hash: its low 32 bits, never 0 (0 marks an empty slot).
#[inline]
pub(crate) fn tag_of(hash: u64) -> u32 {
    (hash as u32) | 1
}

#[inline]
fn leaf_index(hash: u64, bits: u32) -> usize {
    // Two shifts rather than one by `64 - bits`, which overflows at 0 bits and would need a
    // check on the probe's critical path.
    ((hash >> 1) >> (63 - bits)) as usize
}

fn make_dirs<R>(leaves: Vec<Leaf<R>>) -> Box<[Dir<R>]> {
    let per_dir = leaves.len().min(DIR_FANOUT);
    let n_dirs = leaves.len() / per_dir;
    let mut it = leaves.into_iter().map(Arc::new);
    (0..n_dirs)
        .map(|_| {
            let slots = std::array::from_fn(|i| if i < per_dir { it.next() } else { None });
            Arc::new(DirNode::new(slots))
        })
        .collect()
}

impl<R> Subtable<R> {
    pub(crate) fn new(mask: Arc<FlowKey>, seed: u64) -> Self {
        let (word_idx, mask_words): (Vec<u8>, Vec<u64>) = mask
            .words()
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != 0)
            .map(|(i, m)| (i as u8, *m))
            .unzip();
        let stage = Stage::new(&word_idx, &mask_words);
        let dirs = make_dirs(vec![Leaf::new()]);
        Subtable {
            stage,
            mask,
            word_idx: word_idx.into(),
            mask_words: mask_words.into(),
            seed,
            max_priority: 0,
            n_rules: 0,
            n_buckets: 0,
            leaf_bits: 0,
            filters: make_filters(&dirs),
            dirs,
            spare: Arc::new(Spares::new(0, 1)),
        }
    }

    /// A new layout: `dirs`, and their filters built from their leaves.
    fn set_dirs(&mut self, dirs: Box<[Dir<R>]>) {
        self.filters = make_filters(&dirs);
        self.dirs = dirs;
    }

    /// The filter of directory node `at`, to change (its block copied when a snapshot shares it).
    fn filter_mut(&mut self, at: usize) -> &mut Filter {
        &mut Arc::make_mut(&mut self.filters[at / BLOCK_FILTERS]).0[at % BLOCK_FILTERS]
    }

    pub(crate) fn mask(&self) -> &Arc<FlowKey> {
        &self.mask
    }

    pub(crate) fn len(&self) -> usize {
        self.n_rules
    }

    /// Number of leaves.
    pub(crate) fn n_shards(&self) -> usize {
        1 << self.leaf_bits
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

    /// The leaf for `hash` (`None` only in a corrupt table: the index always has a leaf).
    #[inline]
    pub(crate) fn leaf(&self, hash: u64) -> Option<&Leaf<R>> {
        let li = leaf_index(hash, self.leaf_bits);
        self.dirs[li >> DIR_BITS].leaves[li & (DIR_FANOUT - 1)].as_deref()
    }

    /// The leaf for `hash`, or `None` when its directory node's filter rules `hash` out: then
    /// no bucket here has its tag, and no rule matches.
    #[inline]
    pub(crate) fn candidate_leaf(&self, hash: u64) -> Option<&Leaf<R>> {
        let li = leaf_index(hash, self.leaf_bits);
        // The node's pointer loads beside its filter word, so a hit does not wait for it after.
        let dir = &self.dirs[li >> DIR_BITS];
        // The filter word straight from the leaf index: the block is its top bits, and with
        // as many words per filter as leaves per node, the node's filter within the block is
        // the index's bits above the leaf's (`filter_mut` picks the same word). False only when
        // no bucket under the node has the tag.
        let (word, bits) = filter_bits(tag_of(hash));
        let block = self.filters[li >> (DIR_BITS + BLOCK_BITS)].0.as_flattened();
        if block[(li & ((BLOCK_FILTERS - 1) << DIR_BITS)) | word] & bits != bits {
            return None;
        }
        dir.leaves[li & (DIR_FANOUT - 1)].as_deref()
    }

    /// Reads the key words of `rule` that a compare here looks at, the first and the last (a
    /// mask's words span at most a few cache lines of the rule), and its priority, so that the
    /// compare after it finds them in cache. Returns what it read (feed it to `black_box`).
    #[inline]
    pub(crate) fn touch_rule(&self, rule: &Rule<R>) -> u64 {
        let v = rule.value.words();
        let first = self.word_idx.first().map_or(0, |&i| usize::from(i));
        let last = self.word_idx.last().map_or(0, |&i| usize::from(i));
        v[first] ^ v[last] ^ u64::from(rule.priority)
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

    /// The metadata stage: when no rule here has `key`'s metadata, ORs only the metadata bits
    /// into `wc` and returns true (the subtable misses for every key agreeing on them);
    /// otherwise ORs the whole mask, as [`unwildcard`](Self::unwildcard), and returns false:
    /// the caller probes.
    #[inline]
    pub(crate) fn unwildcard_staged(
        &self,
        key: &[u64; FlowKey::WORDS],
        wc: &mut [u64; FlowKey::WORDS],
    ) -> bool {
        if let Some(stage) = &self.stage
            && stage.rules_out(key)
        {
            for (&i, &m) in stage.word_idx.iter().zip(stage.mask_words.iter()) {
                wc[usize::from(i)] |= m;
            }
            return true;
        }
        self.unwildcard(wc);
        false
    }

    /// The best rule of this subtable matching `key`.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u64; FlowKey::WORDS]) -> Option<&Arc<Rule<R>>> {
        self.probe(key, self.hash(key))
    }

    /// [`lookup`](Self::lookup) with the hash already computed.
    #[inline]
    pub(crate) fn probe(&self, key: &[u64; FlowKey::WORDS], hash: u64) -> Option<&Arc<Rule<R>>> {
        self.probe_bucket(key, hash).map(|b| b.best)
    }

    /// The bucket of rules matching `key` (all share one masked value), best first.
    #[inline]
    pub(crate) fn probe_bucket(
        &self,
        key: &[u64; FlowKey::WORDS],
        hash: u64,
    ) -> Option<BucketRef<'_, R>> {
        self.candidate_leaf(hash)?
            .find(tag_of(hash), |r| self.key_matches(key, &r.value))
    }

    /// [`probe`](Self::probe) in the leaf [`leaf`](Self::leaf) gave for `hash`.
    #[inline]
    pub(crate) fn probe_leaf<'a>(
        &self,
        leaf: &'a Leaf<R>,
        key: &[u64; FlowKey::WORDS],
        hash: u64,
    ) -> Option<&'a Arc<Rule<R>>> {
        leaf.find(tag_of(hash), |r| self.key_matches(key, &r.value))
            .map(|b| b.best)
    }

    /// The bucket of rules matching `key` (all share one masked value), best first.
    #[inline]
    pub(crate) fn lookup_bucket(&self, key: &[u64; FlowKey::WORDS]) -> Option<BucketRef<'_, R>> {
        self.probe_bucket(key, self.hash(key))
    }

    /// The rule with exactly this (masked) value and priority, best first among equals.
    pub(crate) fn find_exact(&self, value: &FlowKey, priority: u32) -> Option<&Arc<Rule<R>>> {
        let hash = self.hash(value.words());
        let bucket = self.leaf(hash)?.find(tag_of(hash), |r| r.value == *value)?;
        bucket.rules().find(|r| r.priority == priority)
    }

    /// Adds `rule` (its value is already masked with this subtable's mask).
    pub(crate) fn insert(&mut self, rule: Arc<Rule<R>>) {
        if let Some(stage) = self.stage.as_mut() {
            stage.add(rule.value.words());
        }
        let hash = self.hash(rule.value.words());
        let tag = tag_of(hash);
        let li = leaf_index(hash, self.leaf_bits);
        let at = li >> DIR_BITS;
        filter_note(self.filter_mut(at), tag);
        let dir = dir_mut(&mut self.dirs[at], at, self.leaf_bits, &self.spare);
        let leaf = dir_leaf_mut(dir, li & (DIR_FANOUT - 1), &self.spare);
        match leaf.position(tag, |r| r.value == rule.value) {
            Some(pos) => {
                if let Some((best, others)) = leaf.get_mut(pos) {
                    bucket_add(best, others, rule);
                }
            }
            None => {
                leaf.push(
                    tag,
                    Bucket {
                        best: rule,
                        others: Vec::new(),
                    },
                );
                self.n_buckets += 1;
            }
        }
        self.n_rules += 1;
        if self.n_buckets > LEAF_FILL << self.leaf_bits && self.leaf_bits < MAX_LEAF_BITS {
            self.grow();
        }
    }

    /// Removes rule `id` whose masked value is `value`.
    pub(crate) fn remove(&mut self, value: &FlowKey, id: RuleId) -> Option<Arc<Rule<R>>> {
        let hash = self.hash(value.words());
        let tag = tag_of(hash);
        let eq = |r: &Rule<R>| r.value == *value;
        // Probe the shared leaf first so that a miss does not copy it.
        self.leaf(hash)?.position(tag, eq)?;
        let li = leaf_index(hash, self.leaf_bits);
        let at = li >> DIR_BITS;
        let dir = dir_mut(&mut self.dirs[at], at, self.leaf_bits, &self.spare);
        let leaf = dir_leaf_mut(dir, li & (DIR_FANOUT - 1), &self.spare);
        let pos = leaf.position(tag, eq)?;
        let (rule, now_empty) = leaf.remove_rule(pos, id)?;
        if now_empty {
            leaf.remove_at(pos);
            if let Some(rebuilt) = dir.forget_one() {
                *self.filter_mut(at) = rebuilt;
            }
            self.n_buckets -= 1;
        }
        self.n_rules -= 1;
        if let Some(stage) = self.stage.as_mut() {
            stage.remove(value.words());
        }
        Some(rule)
    }

    /// Doubles the leaf count, splitting each leaf by the next hash bit.
    fn grow(&mut self) {
        let bits = self.leaf_bits + 1;
        let n_leaves = 1usize << bits;
        self.spare
            .relayout(bits, n_leaves / n_leaves.min(DIR_FANOUT));
        let mut leaves: Vec<Leaf<R>> = (0..n_leaves).map(|_| Leaf::new()).collect();
        let dirs = std::mem::take(&mut self.dirs);
        let mut place = |b: Bucket<R>| {
            let hash = self.hash(b.best.value.words());
            leaves[leaf_index(hash, bits)].push(tag_of(hash), b);
        };
        for mut dir in dirs.into_vec() {
            // Nodes no snapshot shares are moved, not copied.
            match Arc::get_mut(&mut dir) {
                Some(unique) => {
                    for leaf in unique.leaves.iter_mut().flatten() {
                        match Arc::get_mut(leaf) {
                            Some(l) => l.drain().for_each(&mut place),
                            None => leaf.buckets().map(BucketRef::to_owned).for_each(&mut place),
                        }
                    }
                }
                None => dir
                    .leaves
                    .iter()
                    .flatten()
                    .flat_map(|l| l.buckets())
                    .map(BucketRef::to_owned)
                    .for_each(&mut place),
            }
        }
        self.leaf_bits = bits;
        self.set_dirs(make_dirs(leaves));
    }

    pub(crate) fn rules(&self) -> impl Iterator<Item = &Arc<Rule<R>>> {
        self.dirs
            .iter()
            .flat_map(|d| d.leaves.iter().flatten())
            .flat_map(|l| l.buckets())
            .flat_map(|b| b.rules())
    }

    /// Bytes this subtable's tables hold (rules themselves not included).
    pub(crate) fn table_bytes(&self) -> usize {
        let dirs = self.dirs.len()
            * (std::mem::size_of::<usize>() * 3 + std::mem::size_of::<DirNode<R>>());
        // Each block with its `Arc` header (two counts) and pointer; a small subtable's one
        // block is whole, used or not.
        let filters = self.filters.len()
            * (std::mem::size_of::<usize>() * 3 + std::mem::size_of::<FilterBlock>());
        let leaves: usize = self
            .dirs
            .iter()
            .flat_map(|d| d.leaves.iter().flatten())
            .map(|l| l.bytes())
            .sum();
        dirs + filters + leaves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u64, port: u32, priority: u32) -> Arc<Rule<u64>> {
        Arc::new(Rule {
            id: RuleId(id),
            priority,
            value: FlowKey {
                in_port: port,
                ..FlowKey::default()
            },
            mask: Arc::new(FlowKey::default()),
            payload: id,
        })
    }

    /// An empty subtable matching `in_port` only.
    fn in_port_subtable(seed: u64) -> Subtable<u64> {
        let mask = Arc::new(FlowKey {
            in_port: !0,
            ..FlowKey::default()
        });
        Subtable::new(mask, seed)
    }

    /// The key words of a packet from port `p`.
    fn in_port_key(p: u32) -> [u64; FlowKey::WORDS] {
        *FlowKey {
            in_port: p,
            ..FlowKey::default()
        }
        .words()
    }

    /// A leaf past its inline capacity: every bucket stays findable through pushes into the
    /// overflow list and removals that refill inline slots from it; a copy is independent.
    /// Where port `p`'s rule goes in `st`: its leaf and its directory node's index.
    fn leaf_of(st: &Subtable<u64>, p: u32) -> *const Leaf<u64> {
        st.leaf(st.hash(&in_port_key(p))).expect("a leaf")
    }

    fn node_index_of(st: &Subtable<u64>, p: u32) -> usize {
        leaf_index(st.hash(&in_port_key(p)), st.leaf_bits) >> DIR_BITS
    }

    fn payload_of(st: &Subtable<u64>, p: u32) -> Option<u64> {
        st.lookup(&in_port_key(p)).map(|r| r.payload)
    }

    /// A subtable of in_port rules for ports `0..n`, payload the port.
    fn ports_subtable(seed: u64, n: u32) -> Subtable<u64> {
        let mut st = in_port_subtable(seed);
        for p in 0..n {
            st.insert(rule(u64::from(p), p, 1));
        }
        st
    }

    #[test]
    fn leaf_overflow_push_find_remove() {
        let mut leaf: Leaf<u64> = Leaf::new();
        let n = 3 * LEAF_CAP as u32;
        // Tags collide in pairs, so the value check decides; their high bits spread them over
        // the groups.
        let tag = |p: u32| tag_of(u64::from(p / 2).wrapping_mul(K1));
        for p in 0..n {
            leaf.push(
                tag(p),
                Bucket {
                    best: rule(u64::from(p), p, 1),
                    others: others_of(p),
                },
            );
        }
        assert!(!leaf.overflow.is_empty());
        assert_eq!(leaf.len(), n as usize);
        // Every third bucket carries two lower-priority rules; a bucket moved to fill a gap
        // (or back from the overflow list) must keep them.
        let find = |leaf: &Leaf<u64>, p: u32| {
            leaf.find(tag(p), |r| r.value.in_port == p).map(|b| {
                let others: Vec<u64> = b.others.iter().map(|r| r.payload).collect();
                assert_eq!(others, payloads(&others_of(p)), "the other rules of {p}");
                b.best.payload
            })
        };
        for p in 0..n {
            assert_eq!(find(&leaf, p), Some(u64::from(p)));
        }
        let copy = leaf.clone();
        let mut live: Vec<u32> = (0..n).collect();
        // Remove from the front and from the back, alternately.
        let mut k = 0;
        while !live.is_empty() {
            let p = if k % 2 == 0 {
                live[0]
            } else {
                live[live.len() - 1]
            };
            let pos = leaf
                .position(tag(p), |r| r.value.in_port == p)
                .expect("live bucket found");
            let gone = leaf.remove_at(pos).expect("bucket removed");
            assert_eq!(gone.best.payload, u64::from(p));
            assert_eq!(payloads(&gone.others), payloads(&others_of(p)));
            live.retain(|&q| q != p);
            assert_eq!(find(&leaf, p), None);
            for &q in &live {
                assert_eq!(find(&leaf, q), Some(u64::from(q)), "after removing {p}");
            }
            assert_eq!(leaf.buckets().count(), live.len());
            assert_eq!(leaf.len(), live.len());
            // Only a full group spills into the overflow list.
            for (t, _) in &leaf.overflow {
                assert!(leaf.groups[group_of(*t)].full());
            }
            k += 1;
        }
        assert!(
            leaf.others.is_none(),
            "the emptied leaf frees its boxed rule lists"
        );
        for p in 0..n {
            assert_eq!(find(&copy, p), Some(u64::from(p)), "the copy kept {p}");
        }
    }

    /// The lower-priority rules the leaf test gives bucket `p`: two for every third bucket.
    fn others_of(p: u32) -> Vec<Arc<Rule<u64>>> {
        if p.is_multiple_of(3) {
            let base = 1_000_000 + 2 * u64::from(p);
            vec![rule(base, p, 0), rule(base + 1, p, 0)]
        } else {
            Vec::new()
        }
    }

    fn payloads(rules: &[Arc<Rule<u64>>]) -> Vec<u64> {
        rules.iter().map(|r| r.payload).collect()
    }

    /// The directory filters: every rule stays findable through inserts, removals (which rebuild
    /// the filters once stale bits pile up) and growth, and most absent keys are ruled out by
    /// their directory node's filter without reaching a leaf.
    #[test]
    fn directory_filter_keeps_rules_and_rules_out_misses() {
        let mut st = in_port_subtable(0x0bad_cafe_f00d_1235);
        let key = in_port_key;
        for p in 0..20_000u32 {
            st.insert(rule(u64::from(p), p, 1));
        }
        let before = st.clone();
        for p in (0..20_000u32).filter(|p| p % 4 != 0) {
            let value = FlowKey {
                in_port: p,
                ..FlowKey::default()
            };
            assert!(st.remove(&value, RuleId(u64::from(p))).is_some());
        }
        for p in 0..20_000u32 {
            let want = (p % 4 == 0).then_some(u64::from(p));
            assert_eq!(st.lookup(&key(p)).map(|r| r.payload), want, "rule {p}");
            assert_eq!(
                before.lookup(&key(p)).map(|r| r.payload),
                Some(u64::from(p))
            );
        }
        let absent = (1_000_000..1_020_000u32)
            .filter(|&p| st.candidate_leaf(st.hash(&key(p))).is_some())
            .count();
        assert!(
            absent < 20_000 / 5,
            "{absent} of 20000 absent keys passed the filter"
        );
    }

    /// Growth splits leaves by hash bits and keeps every rule; snapshots taken before the
    /// growth still see their own rules.
    #[test]
    fn growth_keeps_rules_and_old_copies() {
        let mut st = in_port_subtable(0x1234_5678_9abc_def1);
        let mut copies = Vec::new();
        for p in 0..5000u32 {
            st.insert(rule(u64::from(p), p, p % 3));
            if p % 1000 == 0 {
                copies.push((p, st.clone()));
            }
        }
        assert!(st.n_shards() >= 512, "{} leaves", st.n_shards());
        let key = in_port_key;
        for p in 0..5000u32 {
            assert_eq!(st.lookup(&key(p)).map(|r| r.payload), Some(u64::from(p)));
        }
        for (upto, c) in &copies {
            for p in (0..5000u32).step_by(7) {
                let want = (p <= *upto).then_some(u64::from(p));
                assert_eq!(c.lookup(&key(p)).map(|r| r.payload), want);
            }
        }
        assert_eq!(st.rules().count(), 5000);
    }

    /// A snapshot's own copies of changed leaves and directory nodes go to the spares when it
    /// is dropped: the leaf emptied, the node kept at its position with its shared leaves. The
    /// builder's next copies of that position are made in them; rules come out right on both
    /// sides.
    #[test]
    fn dropped_snapshot_leaves_and_nodes_are_reused_for_the_next_copy() {
        let mut st = ports_subtable(0x5eed_1eaf_0000_0001, 2000);
        let node_at = |st: &Subtable<u64>, p: u32| -> *const DirNode<u64> {
            Arc::as_ptr(&st.dirs[node_index_of(st, p)])
        };
        let snapshot = st.clone();
        st.insert(rule(5000, 5000, 1));
        // The builder copied the leaf of port 5000 and its node; the snapshot alone holds the old ones.
        let old_leaf = leaf_of(&snapshot, 5000);
        let old_node = node_at(&snapshot, 5000);
        assert_ne!(leaf_of(&st, 5000), old_leaf);
        assert_ne!(node_at(&st, 5000), old_node);
        assert_eq!(st.spare.counts(), (0, 0, 0));
        drop(snapshot);
        assert_eq!(
            st.spare.counts(),
            (1, 0, 1),
            "the old leaf was emptied and kept, the old node kept at its position"
        );

        let snapshot = st.clone();
        // A port under the same node, in another leaf: the node's copy starts from its old
        // version, the leaf's copy takes the spare leaf.
        let other = another_leaf_under_the_node_of(&st, 5000);
        st.insert(rule(u64::from(other), other, 1));
        assert_eq!(leaf_of(&st, other), old_leaf, "copied into the spare leaf");
        assert_eq!(node_at(&st, other), old_node, "copied into its old node");
        assert_eq!(st.spare.counts(), (0, 0, 0));
        for p in (0..2000u32).chain([5000, other]) {
            assert_eq!(payload_of(&st, p), Some(u64::from(p)));
        }
        assert_eq!(payload_of(&snapshot, other), None);
        assert_eq!(payload_of(&snapshot, 5000), Some(5000));
        assert_eq!(st.rules().count(), 2002);

        // A port under another node: no old version there, a fresh copy.
        let third = (9000..12000u32)
            .find(|&p| node_index_of(&st, p) != node_index_of(&st, 5000))
            .expect("a port under another node");
        st.insert(rule(u64::from(third), third, 1));
        assert_eq!(payload_of(&st, third), Some(u64::from(third)));
        assert_eq!(payload_of(&snapshot, third), None);
    }

    /// A port above the test tables' ports whose rule would go under `p`'s node, in another leaf.
    fn another_leaf_under_the_node_of(st: &Subtable<u64>, p: u32) -> u32 {
        (6000..9000u32)
            .find(|&q| {
                node_index_of(st, q) == node_index_of(st, p) && leaf_of(st, q) != leaf_of(st, p)
            })
            .expect("another leaf under the same node")
    }

    /// Rules a dropped snapshot alone held go with it, although its node is kept.
    #[test]
    fn a_kept_node_does_not_keep_removed_rules() {
        let mut st = ports_subtable(0x5eed_1eaf_0000_0002, 500);
        let watched = Arc::clone(st.lookup(&in_port_key(7)).expect("rule 7"));
        let snapshot = st.clone();
        st.remove(&watched.value, watched.id);
        assert_eq!(Arc::strong_count(&watched), 2, "the test and the snapshot");
        drop(snapshot);
        assert_eq!(st.spare.counts().2, 1, "the snapshot's node was kept");
        assert_eq!(
            Arc::strong_count(&watched),
            1,
            "only the test holds the removed rule"
        );
    }

    /// Two old versions of one position dropped before the builder copies it again: the old
    /// leaf only those two held goes, with the rule removed from it.
    #[test]
    fn two_old_versions_of_a_node_do_not_keep_removed_rules() {
        let mut st = ports_subtable(0x5eed_1eaf_0000_0004, 500);
        let watched = Arc::clone(st.lookup(&in_port_key(7)).expect("rule 7"));
        let first = st.clone();
        // A change in another leaf of rule 7's node: the second version shares rule 7's leaf.
        let other = another_leaf_under_the_node_of(&st, 7);
        st.insert(rule(u64::from(other), other, 1));
        let second = st.clone();
        st.remove(&watched.value, watched.id);
        assert_eq!(Arc::strong_count(&watched), 2, "the test and the old leaf");
        drop(second);
        drop(first);
        assert_eq!(
            Arc::strong_count(&watched),
            1,
            "only the test holds the removed rule"
        );
        assert_eq!(st.spare.counts().2, 0, "both old versions were emptied");
        assert_eq!(payload_of(&st, 7), None);
        assert_eq!(payload_of(&st, other), Some(u64::from(other)));
    }

    /// Nodes of a layout the subtable has grown out of are never reused at a position.
    #[test]
    fn nodes_of_an_older_layout_are_emptied_not_placed() {
        let mut st = ports_subtable(0x5eed_1eaf_0000_0003, 2000);
        let bits = st.leaf_bits;
        let snapshot = st.clone();
        let mut p = 2000u32;
        while st.leaf_bits == bits {
            st.insert(rule(u64::from(p), p, 1));
            p += 1;
        }
        drop(snapshot);
        let (_, emptied, placed) = st.spare.counts();
        assert_eq!(placed, 0);
        assert!(
            emptied > 0,
            "the old layout's nodes went to the emptied pool"
        );
        let snapshot = st.clone();
        for q in p..p + 300 {
            st.insert(rule(u64::from(q), q, 1));
        }
        for q in 0..p + 300 {
            assert_eq!(payload_of(&st, q), Some(u64::from(q)));
        }
        assert_eq!(payload_of(&snapshot, p), None);
    }
}
