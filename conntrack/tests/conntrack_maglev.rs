//! Maglev properties: minimal disruption when the backend set changes, weighted shares.

use conntrack::lb::maglev::skip_of;
use conntrack::lb::{Backend, DEFAULT_TABLE_SIZE, Maglev};
use encap::{FlowKey, flow_hash};
use proptest::prelude::*;

/// Whether two of `ids` share a Maglev skip in a table of `size` (see `skip_of`).
fn skips_collide(ids: &[u64], size: usize) -> bool {
    let mut skips: Vec<u64> = ids.iter().map(|&id| skip_of(id, size)).collect();
    skips.sort_unstable();
    skips.windows(2).any(|w| w[0] == w[1])
}

/// Small prime table for the proptests (the properties are size-independent; 65537 is
/// checked separately once).
const SIZE: usize = 4099;

fn backends(ids: &[u64]) -> Vec<Backend> {
    ids.iter().map(|&id| Backend { id, weight: 1 }).collect()
}

/// Fraction of slots whose backend *id* differs between two tables.
fn moved(a: &Maglev, a_ids: &[u64], b: &Maglev, b_ids: &[u64]) -> f64 {
    let changed = a
        .slots()
        .iter()
        .zip(b.slots())
        .filter(|(x, y)| a_ids[**x as usize] != b_ids[**y as usize])
        .count();
    changed as f64 / a.slots().len() as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn adding_one_backend_moves_about_one_nth(ids in prop::collection::hash_set(any::<u64>(), 2..24), extra in any::<u64>()) {
        let ids: Vec<u64> = ids.into_iter().collect();
        prop_assume!(!ids.contains(&extra));
        let mut all = ids.clone();
        all.push(extra);
        // Lockstep pairs are a known 1-in-(size-1) exception, pinned by its own test below.
        prop_assume!(!skips_collide(&all, SIZE));
        let before = Maglev::new(&backends(&ids), SIZE).unwrap();
        let mut more = ids.clone();
        more.push(extra);
        let after = Maglev::new(&backends(&more), SIZE).unwrap();
        let f = moved(&before, &ids, &after, &more);
        let ideal = 1.0 / more.len() as f64;
        // Slots that go to the new backend are unavoidable; Maglev adds a little churn.
        prop_assert!(f >= ideal * 0.8, "moved {f}, ideal {ideal}");
        prop_assert!(f <= ideal * 1.6 + 0.02, "moved {f}, ideal {ideal}");
    }

    #[test]
    fn removing_one_backend_moves_about_one_nth(ids in prop::collection::hash_set(any::<u64>(), 3..24), which in any::<prop::sample::Index>()) {
        let ids: Vec<u64> = ids.into_iter().collect();
        prop_assume!(!skips_collide(&ids, SIZE));
        let gone = which.index(ids.len());
        let before = Maglev::new(&backends(&ids), SIZE).unwrap();
        let fewer: Vec<u64> = ids.iter().copied().enumerate().filter(|&(i, _)| i != gone).map(|(_, id)| id).collect();
        let after = Maglev::new(&backends(&fewer), SIZE).unwrap();
        let f = moved(&before, &ids, &after, &fewer);
        let ideal = 1.0 / ids.len() as f64;
        prop_assert!(f <= ideal * 1.6 + 0.02, "moved {f}, ideal {ideal}");
        // Every slot of the removed backend moved; slots of survivors mostly did not.
        for (s, (x, y)) in before.slots().iter().zip(after.slots()).enumerate() {
            if *x as usize == gone {
                prop_assert_ne!(ids[gone], fewer[*y as usize], "slot {} still on removed backend", s);
            }
        }
    }

    #[test]
    fn weighted_shares_follow_weights(weights in prop::collection::vec(1u32..10, 2..8)) {
        let b: Vec<Backend> = weights.iter().enumerate().map(|(i, &w)| Backend { id: i as u64 * 7919 + 1, weight: w }).collect();
        let m = Maglev::new(&b, SIZE).unwrap();
        let mut count = vec![0usize; b.len()];
        for &s in m.slots() {
            count[s as usize] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let expect = SIZE as f64 * w as f64 / total as f64;
            prop_assert!((count[i] as f64 - expect).abs() <= expect * 0.02 + 2.0, "backend {i}: {} slots, expected {expect}", count[i]);
        }
    }
}

#[test]
fn default_size_table_spreads_flows_evenly() {
    let ids: Vec<u64> = (1..=10).collect();
    let m = Maglev::new(&backends(&ids), DEFAULT_TABLE_SIZE).unwrap();
    let mut count = [0usize; 10];
    for i in 0..100_000u32 {
        let key = FlowKey {
            eth_type: 0x0800,
            nw_src: 0x0a00_0000 + i,
            nw_dst: 0x0909_0909,
            nw_proto: 6,
            tp_src: (i % 50_000) as u16,
            tp_dst: 80,
            ..FlowKey::default()
        };
        count[m.pick(flow_hash(&key) as u64).unwrap()] += 1;
    }
    for c in count {
        assert!((9_000..11_000).contains(&c), "{count:?}");
    }
}

#[test]
fn zero_weight_backend_gets_nothing() {
    let b = [
        Backend { id: 1, weight: 1 },
        Backend { id: 2, weight: 0 },
        Backend { id: 3, weight: 2 },
    ];
    let m = Maglev::new(&b, SIZE).unwrap();
    assert!(m.slots().iter().all(|&s| s != 1));
    let n3 = m.slots().iter().filter(|&&s| s == 2).count();
    assert!((2 * SIZE / 3).abs_diff(n3) <= 2);
}

/// Two backends whose ids give the same Maglev skip (found by the proptest): they walk the
/// table in lockstep, and adding a third moves about twice the ideal share (64–69 % instead
/// of 33 %). The proptests set such inputs apart; this pins down how far it goes.
#[test]
fn colliding_skips_at_most_double_the_disruption() {
    let ids = [11_951_118_655_843_257_162u64, 15_755_273_613_607_714_886];
    assert_eq!(skip_of(ids[0], SIZE), skip_of(ids[1], SIZE));
    let before = Maglev::new(&backends(&ids), SIZE).unwrap();
    for extra in [0u64, 1, 12345, u64::MAX] {
        let more = [ids[0], ids[1], extra];
        let after = Maglev::new(&backends(&more), SIZE).unwrap();
        let f = moved(&before, &ids, &after, &more);
        // The ideal is 1/3; about twice that, never the whole table.
        assert!(f <= 0.75, "extra {extra}: moved {f}");
    }
}
