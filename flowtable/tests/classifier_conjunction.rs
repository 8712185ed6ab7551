//! Conjunctive matching in the classifier (`Classifier::lookup_conjunctive`): the OVS rules
//! (all clauses at one priority, the conj_id re-lookup, drop-back to identical lower flows) and
//! the un-wildcarding promise with soft rules present.

use encap::FlowKey;
use flowtable::classifier::{ClassifierBuilder, Conjunction};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct P {
    name: &'static str,
    conj: Vec<Conjunction>,
}

fn hard(name: &'static str) -> P {
    P { name, conj: vec![] }
}

fn soft(id: u32, clause: u8, n: u8) -> P {
    P {
        name: "soft",
        conj: vec![Conjunction {
            id,
            clause: clause - 1,
            n_clauses: n,
        }],
    }
}

fn conj_of(p: &P) -> &[Conjunction] {
    &p.conj
}

/// (value, mask) for a rule on nw_src and/or tp_dst and/or conj_id (None = wildcard).
fn m(src: Option<u32>, dport: Option<u16>, conj: Option<u32>) -> (FlowKey, FlowKey) {
    let (mut v, mut k) = (FlowKey::default(), FlowKey::default());
    if let Some(s) = src {
        v.nw_src = s;
        k.nw_src = u32::MAX;
    }
    if let Some(d) = dport {
        v.tp_dst = d;
        k.tp_dst = u16::MAX;
    }
    if let Some(c) = conj {
        v.conj_id = c;
        k.conj_id = u32::MAX;
    }
    (v, k)
}

fn key(src: u32, dport: u16) -> FlowKey {
    FlowKey {
        nw_src: src,
        tp_dst: dport,
        ..FlowKey::default()
    }
}

fn insert(b: &mut ClassifierBuilder<P>, r: (FlowKey, FlowKey), prio: u32, p: P) {
    b.insert(&r.0, &r.1, prio, p);
}

fn answer(b: &mut ClassifierBuilder<P>, k: &FlowKey) -> Option<&'static str> {
    let cls = b.snapshot();
    let mut wc = FlowKey::default();
    cls.lookup_conjunctive(k, &mut wc, conj_of)
        .map(|r| r.payload().name)
}

#[test]
fn two_dimensions_both_needed() {
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 2));
    insert(&mut b, m(Some(2), None, None), 100, soft(5, 1, 2));
    insert(&mut b, m(None, Some(80), None), 100, soft(5, 2, 2));
    insert(&mut b, m(None, None, Some(5)), 100, hard("conj5"));
    insert(&mut b, m(None, None, None), 0, hard("default"));
    assert_eq!(answer(&mut b, &key(1, 80)), Some("conj5"));
    assert_eq!(answer(&mut b, &key(2, 80)), Some("conj5"));
    assert_eq!(answer(&mut b, &key(3, 80)), Some("default"));
    assert_eq!(answer(&mut b, &key(1, 81)), Some("default"));
    // A soft rule never wins on its own, even with nothing else to match.
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 2));
    assert_eq!(answer(&mut b, &key(1, 80)), None);
}

#[test]
fn clauses_must_meet_at_one_priority() {
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 2));
    insert(&mut b, m(None, Some(80), None), 90, soft(5, 2, 2));
    insert(&mut b, m(None, None, Some(5)), 100, hard("conj5"));
    insert(&mut b, m(None, None, None), 0, hard("default"));
    assert_eq!(answer(&mut b, &key(1, 80)), Some("default"));
}

#[test]
fn a_higher_hard_match_wins_and_the_conj_id_flow_competes_with_hard_flows() {
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 2));
    insert(&mut b, m(None, Some(80), None), 100, soft(5, 2, 2));
    insert(&mut b, m(Some(1), Some(80), None), 200, hard("exact"));
    insert(&mut b, m(None, None, Some(5)), 10, hard("conj5"));
    insert(&mut b, m(None, Some(80), None), 50, hard("port80"));
    assert_eq!(answer(&mut b, &key(1, 80)), Some("exact"));
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 2));
    insert(&mut b, m(None, Some(81), None), 100, soft(5, 2, 2));
    // The conj_id flow has a lower priority than a hard flow that matches too: the re-lookup
    // returns the best hard flow for the key with conj_id set, as OVS does.
    insert(&mut b, m(None, None, Some(5)), 10, hard("conj5"));
    insert(&mut b, m(Some(1), Some(81), None), 50, hard("src1-81"));
    assert_eq!(answer(&mut b, &key(1, 81)), Some("src1-81"));
    assert_eq!(answer(&mut b, &key(2, 81)), None);
    // A hard flow sharing its match with a higher soft one is hidden by it (per subtable only
    // the best flow of a match is considered), in the re-lookup too.
    insert(&mut b, m(Some(1), None, None), 60, hard("src1"));
    assert_eq!(answer(&mut b, &key(1, 81)), Some("src1-81"));
}

#[test]
fn drops_back_to_an_identical_lower_priority_flow() {
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 2));
    insert(&mut b, m(None, Some(80), None), 100, soft(5, 2, 2));
    insert(&mut b, m(None, None, Some(5)), 100, hard("conj5"));
    // Same match as the first soft rule, lower priority: a hard one and a soft one.
    insert(&mut b, m(Some(1), None, None), 60, hard("src1-low"));
    insert(&mut b, m(Some(1), None, None), 70, soft(6, 1, 2));
    insert(&mut b, m(None, Some(22), None), 70, soft(6, 2, 2));
    insert(&mut b, m(None, None, Some(6)), 70, hard("conj6"));
    assert_eq!(answer(&mut b, &key(1, 80)), Some("conj5"));
    // Conjunction 5 incomplete at 100; the soft rule drops back to its priority-70 twin,
    // which completes conjunction 6 with port 22.
    assert_eq!(answer(&mut b, &key(1, 22)), Some("conj6"));
    // Neither: drops back further, to the hard priority-60 twin.
    assert_eq!(answer(&mut b, &key(1, 23)), Some("src1-low"));
}

#[test]
fn a_conjunction_wider_than_its_soft_matches_is_skipped() {
    let mut b = ClassifierBuilder::new();
    insert(&mut b, m(Some(1), None, None), 100, soft(5, 1, 3));
    insert(&mut b, m(None, Some(80), None), 100, soft(5, 2, 3));
    insert(&mut b, m(None, None, Some(5)), 100, hard("conj5"));
    assert_eq!(answer(&mut b, &key(1, 80)), None);
}

/// Rules over a tiny domain (nw_src, tp_dst in 0..3), random soft/hard mixes and conjunction
/// ids; the answer for any key that agrees with the looked-up key on `wc` is the same.
/// One random rule: nw_src, tp_dst, conj_id (None = wildcard), priority, conjunction.
type ArbRule = (
    Option<u32>,
    Option<u16>,
    Option<u32>,
    u32,
    Option<(u32, u8, u8)>,
);

fn arb_rules() -> impl Strategy<Value = Vec<ArbRule>> {
    prop::collection::vec(
        (
            prop::option::of(0u32..3),
            prop::option::of(0u16..3),
            prop::option::of(1u32..3),
            prop_oneof![Just(10u32), Just(20), Just(30)],
            prop::option::of((1u32..3, 1u8..=3, 2u8..=3)),
        ),
        1..12,
    )
}

proptest! {
    #[test]
    fn unwildcarding_holds_with_conjunctions(
        rules in arb_rules(),
        probes in prop::collection::vec((0u32..3, 0u16..3, 0u32..3, 0u16..3), 1..16),
    ) {
        let mut b = ClassifierBuilder::new();
        for (i, (src, dport, conj_id, prio, c)) in rules.iter().enumerate() {
            let p = match c {
                // conj_id-matching rules are never soft (as in OpenFlow practice).
                Some((id, k, n)) if conj_id.is_none() => P {
                    name: "soft",
                    conj: vec![Conjunction { id: *id, clause: (*k).min(*n) - 1, n_clauses: *n }],
                },
                _ => P { name: ["r0","r1","r2","r3","r4","r5","r6","r7","r8","r9","r10","r11"][i], conj: vec![] },
            };
            b.insert(&m(*src, *dport, *conj_id).0, &m(*src, *dport, *conj_id).1, *prio, p);
        }
        let cls = b.snapshot();
        for (s, d, s2, d2) in probes {
            let k = key(s, d);
            let mut wc = FlowKey::default();
            let got = cls.lookup_conjunctive(&k, &mut wc, conj_of).map(|r| r.id());
            // Another key, taking k's bits wherever wc says they matter.
            let mut other = key(s2, d2);
            other.nw_src = (k.nw_src & wc.nw_src) | (other.nw_src & !wc.nw_src);
            other.tp_dst = (k.tp_dst & wc.tp_dst) | (other.tp_dst & !wc.tp_dst);
            let mut wc2 = FlowKey::default();
            let again = cls.lookup_conjunctive(&other, &mut wc2, conj_of).map(|r| r.id());
            prop_assert_eq!(got, again);
        }
    }
}
