//! The writer side: a mutable rule set that publishes immutable snapshots.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use encap::FlowKey;
use hashbrown::HashMap;

use super::subtable::Subtable;
use super::{Classifier, Rule, RuleId};

/// A subtable plus the bookkeeping only the writer needs.
struct MaskEntry<R> {
    subtable: Arc<Subtable<R>>,
    /// priority -> number of rules, to keep `max_priority` right across removals.
    priorities: BTreeMap<u32, usize>,
}

/// Collects rule changes; [`publish`](Self::publish) makes them visible to readers, all at once.
///
/// Between two publishes the builder shares every untouched subtable node with the published
/// snapshot, so a publish costs the leaves the batch changed plus a sort of the subtable list.
pub struct ClassifierBuilder<R> {
    seed: u64,
    next_id: u64,
    version: u64,
    rules: HashMap<RuleId, Arc<Rule<R>>>,
    masks: HashMap<FlowKey, MaskEntry<R>>,
    /// The last snapshot built, reused while nothing changes.
    snapshot: Arc<Classifier<R>>,
    dirty: bool,
    published: Arc<ArcSwap<Classifier<R>>>,
}

impl<R> Default for ClassifierBuilder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> ClassifierBuilder<R> {
    /// An empty rule set; its (empty) snapshot is already published.
    pub fn new() -> Self {
        // A per-classifier hash seed, so nobody can precompute colliding packets.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1;
        let empty = Arc::new(Classifier::empty());
        ClassifierBuilder {
            seed,
            next_id: 1,
            version: 0,
            rules: HashMap::new(),
            masks: HashMap::new(),
            published: Arc::new(ArcSwap::new(Arc::clone(&empty))),
            snapshot: empty,
            dirty: false,
        }
    }

    /// Adds a rule matching packets `p` with `p & mask == value & mask`. Higher `priority` wins;
    /// among equal priorities the rule inserted first (lowest id) wins. Returns the rule's id.
    pub fn insert(&mut self, value: &FlowKey, mask: &FlowKey, priority: u32, payload: R) -> RuleId {
        let id = RuleId(self.next_id);
        self.next_id += 1;
        let seed = self.seed;
        let entry = self.masks.entry(*mask).or_insert_with(|| MaskEntry {
            subtable: Arc::new(Subtable::new(Arc::new(*mask), seed)),
            priorities: BTreeMap::new(),
        });
        let subtable = Arc::make_mut(&mut entry.subtable);
        let rule = Arc::new(Rule {
            id,
            priority,
            value: value.masked(mask),
            mask: Arc::clone(subtable.mask()),
            payload,
        });
        subtable.insert(Arc::clone(&rule));
        *entry.priorities.entry(priority).or_insert(0) += 1;
        subtable.max_priority = subtable.max_priority.max(priority);
        self.rules.insert(id, rule);
        self.dirty = true;
        id
    }

    /// Removes rule `id`; returns it (with its payload), or `None` when no such rule exists.
    pub fn remove(&mut self, id: RuleId) -> Option<Arc<Rule<R>>> {
        let rule = self.rules.remove(&id)?;
        let Some(entry) = self.masks.get_mut(rule.mask.as_ref()) else {
            debug_assert!(false, "rule {id} indexed without its subtable");
            return Some(rule);
        };
        let subtable = Arc::make_mut(&mut entry.subtable);
        let removed = subtable.remove(&rule.value, id);
        debug_assert!(
            removed.is_some(),
            "rule {id} indexed but not in its subtable"
        );
        if let Some(n) = entry.priorities.get_mut(&rule.priority) {
            *n -= 1;
            if *n == 0 {
                entry.priorities.remove(&rule.priority);
            }
        }
        match entry.priorities.last_key_value() {
            Some((&max, _)) => subtable.max_priority = max,
            None => {
                self.masks.remove(rule.mask.as_ref());
            }
        }
        self.dirty = true;
        Some(rule)
    }

    /// The rule with this id, if present.
    pub fn get(&self, id: RuleId) -> Option<&Rule<R>> {
        self.rules.get(&id).map(|r| &**r)
    }

    /// The first-inserted rule with exactly this match and priority (for "replace" semantics).
    pub fn find_exact(&self, value: &FlowKey, mask: &FlowKey, priority: u32) -> Option<&Rule<R>> {
        let entry = self.masks.get(mask)?;
        entry
            .subtable
            .find_exact(&value.masked(mask), priority)
            .map(|r| &**r)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn n_subtables(&self) -> usize {
        self.masks.len()
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule<R>> {
        self.rules.values().map(|r| &**r)
    }

    /// An immutable snapshot of the current rules (not published to readers).
    pub fn snapshot(&mut self) -> Arc<Classifier<R>> {
        if self.dirty {
            self.version += 1;
            let mut subtables: Vec<Arc<Subtable<R>>> = self
                .masks
                .values()
                .map(|e| Arc::clone(&e.subtable))
                .collect();
            // Highest max priority first; the mask words make the order independent of history.
            subtables.sort_unstable_by(|a, b| {
                b.max_priority
                    .cmp(&a.max_priority)
                    .then_with(|| a.mask().words().cmp(b.mask().words()))
            });
            let staged = subtables.iter().any(|s| s.len() >= super::STAGED_MIN_RULES);
            self.snapshot = Arc::new(Classifier {
                subtables: subtables.into(),
                staged,
                n_rules: self.rules.len(),
                version: self.version,
            });
            self.dirty = false;
        }
        Arc::clone(&self.snapshot)
    }

    /// Makes every change since the last publish visible to readers, atomically. Returns the
    /// version of the published snapshot. The replaced snapshot is freed here, after the
    /// readers still in it let go ([`crate::grace`]), not by the last reader.
    pub fn publish(&mut self) -> u64 {
        let snapshot = self.snapshot();
        let version = snapshot.version;
        let old = self.published.swap(snapshot);
        if !Arc::ptr_eq(&old, &self.snapshot) {
            crate::grace::drop_after_readers(old, crate::grace::PATIENCE);
        }
        version
    }

    /// A handle for reader threads to load published snapshots from.
    pub fn reader(&self) -> ClassifierReader<R> {
        ClassifierReader {
            published: Arc::clone(&self.published),
        }
    }

    /// Approximate heap bytes held: rules, subtable tables and the id index.
    pub fn heap_bytes(&self) -> usize {
        let rule = std::mem::size_of::<Rule<R>>() + 2 * std::mem::size_of::<usize>();
        let index = self.rules.capacity() * (std::mem::size_of::<(RuleId, Arc<Rule<R>>)>() + 1);
        let tables: usize = self.masks.values().map(|e| e.subtable.table_bytes()).sum();
        self.rules.len() * rule + index + tables
    }
}

/// A reader's handle: loads the latest published snapshot without taking a lock.
pub struct ClassifierReader<R> {
    published: Arc<ArcSwap<Classifier<R>>>,
}

impl<R> Clone for ClassifierReader<R> {
    fn clone(&self) -> Self {
        ClassifierReader {
            published: Arc::clone(&self.published),
        }
    }
}

impl<R> ClassifierReader<R> {
    /// The current snapshot; hold it for a burst of packets, not forever (it pins old rules).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Classifier<R>>> {
        self.published.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Classifier<R>> {
        self.published.load_full()
    }
}
