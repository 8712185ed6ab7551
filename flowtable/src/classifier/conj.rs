//! Conjunctive matching, as Open vSwitch's classifier does it (`conjunction(id,k/n)` and
//! `conj_id`).
//!
//! A rule whose payload carries conjunctions is *soft*: it never wins a lookup by itself, it
//! only says "dimension k of n of conjunction `id` is satisfied". A lookup first finds the best
//! *hard* rule and every soft rule above it (the best rule of each probed subtable). Taking the
//! soft rules of the highest priority, as soon as every clause `1..=n` of some `id` is present
//! among them, the classifier looks up again with `conj_id = id` in the key, ignoring soft
//! rules; the first such lookup that finds a rule gives the answer. When none does, each soft
//! rule of that priority is replaced by the next rule with the identical match (same bucket)
//! and the process repeats at the next priority; a hard rule reached that way competes as a hard
//! match. This is `classifier_lookup__` of OVS `lib/classifier.c`, including its quirks: a
//! conjunction whose `n` exceeds the number of soft rules at that priority is skipped, and the
//! clause set of an id is sized by the first `n` seen for it.
//!
//! Un-wildcarding: every probed subtable of every pass adds its mask to `wc`, so the answer is
//! the same for every key agreeing on those bits (the re-lookups only differ in `conj_id`,
//! which no packet carries).

use encap::FlowKey;
use std::sync::Arc;

use super::subtable::BucketRef;
use super::{Classifier, Rule};

/// One `conjunction(id, clause/n_clauses)` of a rule; `clause` is 0-based (the wire form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conjunction {
    pub id: u32,
    pub clause: u8,
    pub n_clauses: u8,
}

/// A soft match: the rule standing for it, its bucket and its position there.
struct Soft<'a, R> {
    bucket: BucketRef<'a, R>,
    at: usize,
    rule: &'a Arc<Rule<R>>,
}

impl<'a, R> Soft<'a, R> {
    fn rule(&self) -> &'a Arc<Rule<R>> {
        self.rule
    }
}

impl<R> Classifier<R> {
    /// [`lookup`](Self::lookup) with conjunctive matching: `conj_of` gives the conjunctions a
    /// rule's payload carries (empty for an ordinary rule). Returns the winning ordinary rule
    /// (possibly one matching `conj_id`). Allocates only when soft rules match.
    pub fn lookup_conjunctive<F>(
        &self,
        key: &FlowKey,
        wc: &mut FlowKey,
        conj_of: F,
    ) -> Option<&Rule<R>>
    where
        F: Fn(&R) -> &[Conjunction],
    {
        let mut soft: Vec<Soft<'_, R>> = Vec::new();
        let mut hard = self.lookup_hard(key, wc, &conj_of, Some(&mut soft));
        let pri = |r: Option<&Arc<Rule<R>>>| r.map_or(-1i64, |r| i64::from(r.priority));
        let mut matches: Vec<(u32, u64)> = Vec::new();
        loop {
            let hard_pri = pri(hard);
            soft.retain(|s| i64::from(s.rule().priority) > hard_pri);
            let Some(soft_pri) = soft.iter().map(|s| s.rule().priority).max() else {
                return hard.map(|r| &**r);
            };
            let n_soft_pri = soft
                .iter()
                .filter(|s| s.rule().priority == soft_pri)
                .count();
            matches.clear();
            for s in soft.iter().filter(|s| s.rule().priority == soft_pri) {
                for c in conj_of(s.rule().payload()) {
                    if usize::from(c.n_clauses) > n_soft_pri {
                        continue;
                    }
                    let at = match matches.iter().position(|(id, _)| *id == c.id) {
                        Some(at) => at,
                        None => {
                            // Bits above n start set, so "complete" is all ones (OVS: the
                            // shift is taken mod 64).
                            matches.push((c.id, u64::MAX << (c.n_clauses & 63)));
                            matches.len() - 1
                        }
                    };
                    matches[at].1 |= 1u64 << (c.clause & 63);
                    if matches[at].1 == u64::MAX {
                        let mut k = *key;
                        k.conj_id = c.id;
                        if let Some(r) = self.lookup_hard(&k, wc, &conj_of, None) {
                            return Some(&**r);
                        }
                    }
                }
            }
            // No conjunction completed at this priority: fall back to the next rule with the
            // identical match for each soft rule of that priority.
            let mut i = 0;
            while i < soft.len() {
                if soft[i].rule().priority != soft_pri {
                    i += 1;
                    continue;
                }
                match soft[i].bucket.nth(soft[i].at + 1) {
                    Some(next) if conj_of(next.payload()).is_empty() => {
                        if hard.is_none_or(|h| next.beats(h)) {
                            hard = Some(next);
                        }
                        soft.remove(i);
                    }
                    Some(next) => {
                        soft[i].at += 1;
                        soft[i].rule = next;
                        i += 1;
                    }
                    None => {
                        soft.remove(i);
                    }
                }
            }
        }
    }

    /// The best ordinary rule; soft rules found on the way go to `soft` (or are ignored).
    fn lookup_hard<'a, F>(
        &'a self,
        key: &FlowKey,
        wc: &mut FlowKey,
        conj_of: &F,
        mut soft: Option<&mut Vec<Soft<'a, R>>>,
    ) -> Option<&'a Arc<Rule<R>>>
    where
        F: Fn(&R) -> &[Conjunction],
    {
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
            let Some(bucket) = subtable.lookup_bucket(key_words) else {
                continue;
            };
            let Some(rule) = bucket.nth(0) else {
                continue;
            };
            if conj_of(rule.payload()).is_empty() {
                if best.is_none_or(|b| rule.beats(b)) {
                    best = Some(rule);
                }
            } else if let Some(soft) = soft.as_deref_mut() {
                soft.push(Soft {
                    bucket,
                    at: 0,
                    rule,
                });
            }
        }
        best
    }
}
