//! Maglev properties: minimal disruption when the backend set changes, weighted shares.

use proptest::prelude::*;
use vswitch::lb::{Backend, DEFAULT_TABLE_SIZE, Maglev, five_tuple_hash};

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
        let src = (0x0a00_0000u128 + i as u128).to_be_bytes();
        let h = five_tuple_hash(&src, &[9; 16], 6, (i % 50_000) as u16, 80, 0);
        count[m.pick(h).unwrap()] += 1;
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
