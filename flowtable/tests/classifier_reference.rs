//! The classifier against a linear-scan reference: same winner for every packet, the
//! un-wildcarding promise, insert/remove sequences and snapshot isolation.

use std::collections::BTreeSet;

use encap::FlowKey;
use flowtable::classifier::{Classifier, ClassifierBuilder, RuleId};
use proptest::prelude::*;

/// The obviously-correct classifier: scan every rule, keep the best match.
#[derive(Clone, Default)]
struct Reference {
    rules: Vec<(RuleId, FlowKey, FlowKey, u32)>,
}

impl Reference {
    fn lookup(&self, key: &FlowKey) -> Option<RuleId> {
        self.rules
            .iter()
            .filter(|(_, value, mask, _)| key.matches_masked(value, mask))
            .max_by_key(|(id, _, _, prio)| (*prio, std::cmp::Reverse(*id)))
            .map(|r| r.0)
    }

    fn n_masks(&self) -> usize {
        self.rules
            .iter()
            .map(|r| *r.2.words())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// A small pool of Kubernetes-flavoured masks, so that rules share subtables.
fn mask_pool() -> Vec<FlowKey> {
    let z = FlowKey::default;
    vec![
        FlowKey {
            in_port: u32::MAX,
            ..z()
        },
        FlowKey {
            in_port: u32::MAX,
            eth_dst: [0xff; 6],
            ..z()
        },
        FlowKey {
            nw_dst: u32::MAX,
            ..z()
        },
        FlowKey {
            nw_dst: 0xffff_ff00,
            ..z()
        },
        FlowKey {
            nw_dst: u32::MAX,
            nw_proto: 0xff,
            tp_dst: 0xffff,
            ..z()
        },
        FlowKey {
            ct_state: 0x22,
            ..z()
        },
        FlowKey {
            regs: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..z()
        },
        z(),
        FlowKey {
            in_port: u32::MAX,
            nw_src: 0xffff_0000,
            ..z()
        },
    ]
}

/// Keys drawn from tiny domains so that rules overlap and packets hit them.
fn key_strategy() -> impl Strategy<Value = FlowKey> {
    (
        0u32..3,
        0u8..3,
        prop::sample::select(vec![0x0a00_0001u32, 0x0a00_0002, 0x0a00_0101, 0x0a01_0001]),
        prop::sample::select(vec![0x0a00_0001u32, 0x0a00_0102, 0x0a02_0001]),
        prop::sample::select(vec![6u8, 17]),
        prop::sample::select(vec![80u16, 443]),
        prop::sample::select(vec![0u8, 0x21, 0x22, 0x23]),
        0u32..3,
    )
        .prop_map(
            |(in_port, mac, nw_dst, nw_src, nw_proto, tp_dst, ct_state, reg0)| FlowKey {
                in_port,
                eth_dst: [0, 0, 0, 0, 0, mac],
                nw_dst,
                nw_src,
                nw_proto,
                tp_dst,
                ct_state,
                regs: [reg0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..FlowKey::default()
            },
        )
}

#[derive(Clone, Debug)]
struct RuleSpec {
    value: FlowKey,
    mask: usize,
    priority: u32,
}

fn rule_strategy() -> impl Strategy<Value = RuleSpec> {
    (key_strategy(), 0..mask_pool().len(), 0u32..4).prop_map(|(value, mask, priority)| RuleSpec {
        value,
        mask,
        priority,
    })
}

/// `key` on the bits of `wc`, `other` elsewhere.
fn blend(key: &FlowKey, wc: &FlowKey, other: &FlowKey) -> FlowKey {
    let mut out = *key;
    for ((o, w), x) in out
        .words_mut()
        .iter_mut()
        .zip(wc.words())
        .zip(other.words())
    {
        *o = (*o & w) | (x & !w);
    }
    out
}

/// Checks `cls` against `reference` for `key`, and the un-wildcarding promise using `others`.
fn check_key(
    cls: &Classifier<u32>,
    reference: &Reference,
    key: &FlowKey,
    others: &[FlowKey],
) -> Result<(), TestCaseError> {
    let mut wc = FlowKey::default();
    let got = cls.lookup(key, &mut wc).map(|r| r.id());
    prop_assert_eq!(got, reference.lookup(key), "winner for {:?}", key);
    for other in others {
        let variant = blend(key, &wc, other);
        prop_assert_eq!(
            reference.lookup(&variant),
            got,
            "packet agreeing on wc {:?} gets another winner: {:?}",
            wc,
            variant
        );
        let mut wc2 = FlowKey::default();
        prop_assert_eq!(cls.lookup(&variant, &mut wc2).map(|r| r.id()), got);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_winner_as_linear_scan_and_wc_is_sufficient(
        rules in prop::collection::vec(rule_strategy(), 0..40),
        keys in prop::collection::vec(key_strategy(), 1..16),
        others in prop::collection::vec(key_strategy(), 1..8),
    ) {
        let masks = mask_pool();
        let mut builder = ClassifierBuilder::new();
        let mut reference = Reference::default();
        for (n, spec) in rules.iter().enumerate() {
            let mask = masks[spec.mask];
            let id = builder.insert(&spec.value, &mask, spec.priority, n as u32);
            reference.rules.push((id, spec.value.masked(&mask), mask, spec.priority));
        }
        builder.publish();
        let cls = builder.reader().load_full();
        prop_assert_eq!(cls.len(), rules.len());
        prop_assert_eq!(cls.n_subtables(), reference.n_masks());
        for key in keys.iter().chain(rules.iter().map(|r| &r.value)) {
            check_key(&cls, &reference, key, &others)?;
        }
        // The burst lookup (chunks of 32) answers exactly like one lookup per packet.
        let burst: Vec<FlowKey> = keys.iter().chain(rules.iter().map(|r| &r.value)).copied().collect();
        let mut wcs = vec![FlowKey::default(); burst.len()];
        let mut out = vec![None; burst.len()];
        cls.lookup_burst(&burst, &mut wcs, &mut out);
        for ((key, wc), got) in burst.iter().zip(&wcs).zip(&out) {
            let mut want_wc = FlowKey::default();
            let want = cls.lookup(key, &mut want_wc).map(|r| r.id());
            prop_assert_eq!(got.map(|r| r.id()), want);
            prop_assert_eq!(wc, &want_wc);
        }
    }

    #[test]
    fn insert_remove_sequences_match_reference(
        ops in prop::collection::vec((any::<bool>(), rule_strategy(), any::<prop::sample::Index>()), 1..80),
        keys in prop::collection::vec(key_strategy(), 1..8),
        others in prop::collection::vec(key_strategy(), 1..4),
    ) {
        let masks = mask_pool();
        let mut builder = ClassifierBuilder::new();
        let reader = builder.reader();
        let mut reference = Reference::default();
        let mut old: Option<(std::sync::Arc<Classifier<u32>>, Reference)> = None;
        for (step, (is_insert, spec, pick)) in ops.iter().enumerate() {
            if *is_insert || reference.rules.is_empty() {
                let mask = masks[spec.mask];
                let id = builder.insert(&spec.value, &mask, spec.priority, step as u32);
                reference.rules.push((id, spec.value.masked(&mask), mask, spec.priority));
            } else {
                let (id, value, mask, priority) = reference.rules.remove(pick.index(reference.rules.len()));
                let removed = builder.remove(id).expect("live rule removes");
                prop_assert_eq!(removed.id(), id);
                prop_assert_eq!(removed.value(), &value);
                prop_assert_eq!(removed.mask(), &mask);
                prop_assert_eq!(removed.priority(), priority);
                prop_assert!(builder.remove(id).is_none(), "second remove of {} succeeded", id);
            }
            if step % 7 == 0 {
                let before = reader.load_full();
                builder.publish();
                let cls = reader.load_full();
                prop_assert!(cls.version() >= before.version());
                prop_assert_eq!(cls.len(), reference.rules.len());
                prop_assert_eq!(cls.n_subtables(), reference.n_masks());
                for key in &keys {
                    check_key(&cls, &reference, key, &others)?;
                }
                // A snapshot taken earlier must not see later changes.
                if let Some((old_cls, old_ref)) = &old {
                    for key in &keys {
                        check_key(old_cls, old_ref, key, &others)?;
                    }
                }
                old = Some((cls, reference.clone()));
            }
        }
        builder.publish();
        let cls = reader.load_full();
        let mut ids: Vec<RuleId> = cls.iter().map(|r| r.id()).collect();
        ids.sort();
        let mut want: Vec<RuleId> = reference.rules.iter().map(|r| r.0).collect();
        want.sort();
        prop_assert_eq!(&ids, &want);
        let mut builder_ids: Vec<RuleId> = builder.iter().map(|r| r.id()).collect();
        builder_ids.sort();
        prop_assert_eq!(builder_ids, want);
        for key in keys.iter().chain(reference.rules.iter().map(|r| &r.1)) {
            check_key(&cls, &reference, key, &others)?;
        }
    }
}
