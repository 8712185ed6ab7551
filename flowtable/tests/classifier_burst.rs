//! `lookup_burst` against one `lookup` per packet on large random rule sets: big enough that
//! subtables split into many leaves and the burst takes its staged (prefetching) path, with
//! overlapping masks, tied priorities, removals and snapshots taken before and after changes.
//! A sample of packets is also checked against a linear scan.

use encap::FlowKey;
use flowtable::classifier::{Classifier, ClassifierBuilder, RuleId};
use proptest::prelude::*;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Masks that overlap: coarse ones (in_port, a /8) hit many packets, fine ones (addresses,
/// 5-tuples) make big subtables.
fn masks() -> Vec<FlowKey> {
    let z = FlowKey::default;
    vec![
        FlowKey { nw_dst: !0, ..z() },
        FlowKey {
            nw_dst: !0,
            nw_proto: !0,
            tp_dst: !0,
            ..z()
        },
        FlowKey { in_port: !0, ..z() },
        FlowKey {
            nw_src: !0,
            nw_dst: !0,
            ..z()
        },
        FlowKey {
            nw_dst: 0xff00_0000,
            ..z()
        },
        FlowKey {
            regs: [!0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            nw_src: !0,
            ..z()
        },
        FlowKey {
            in_port: !0,
            tp_dst: !0,
            ..z()
        },
        z(),
    ]
}

/// A packet from a domain where exact fields collide often enough to hit rules: in_port and
/// tp_dst from small sets, addresses from a few thousand.
fn key(seed: u64) -> FlowKey {
    let r = |i: u64| splitmix(seed.wrapping_mul(0x1_0001).wrapping_add(i));
    FlowKey {
        in_port: (r(1) % 8) as u32,
        nw_dst: 0x0a00_0000 | (r(2) % 4096) as u32 | (((r(7) % 3) as u32) << 24),
        nw_src: 0x0a00_0000 | (r(3) % 4096) as u32,
        nw_proto: if r(4).is_multiple_of(2) { 6 } else { 17 },
        tp_dst: [80u16, 443, 53, 8080][(r(5) % 4) as usize],
        regs: [
            (r(6) % 4) as u32,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ],
        ..FlowKey::default()
    }
}

struct Model {
    rules: Vec<(RuleId, FlowKey, FlowKey, u32)>,
}

impl Model {
    fn lookup(&self, key: &FlowKey) -> Option<RuleId> {
        self.rules
            .iter()
            .filter(|(_, value, mask, _)| key.matches_masked(value, mask))
            .max_by_key(|(id, _, _, prio)| (*prio, std::cmp::Reverse(*id)))
            .map(|r| r.0)
    }
}

/// Burst and single lookups agree on every packet (winner and un-wildcard mask), and on a
/// sample the winner is the linear scan's.
fn check(cls: &Classifier<u32>, model: &Model, packets: &[FlowKey]) -> Result<(), TestCaseError> {
    let mut wcs = vec![FlowKey::default(); packets.len()];
    let mut out = vec![None; packets.len()];
    cls.lookup_burst(packets, &mut wcs, &mut out);
    for (i, ((p, wc), got)) in packets.iter().zip(&wcs).zip(&out).enumerate() {
        let mut want_wc = FlowKey::default();
        let want = cls.lookup(p, &mut want_wc).map(|r| r.id());
        prop_assert_eq!(got.map(|r| r.id()), want, "packet {} {:?}", i, p);
        prop_assert_eq!(wc, &want_wc, "wc of packet {}", i);
        if i.is_multiple_of(8) {
            prop_assert_eq!(want, model.lookup(p), "linear scan, packet {}", i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn burst_matches_single_lookup_on_large_tables(
        seed in any::<u64>(),
        n_rules in 0usize..9000,
        n_masks in 1usize..=8,
        remove_every in 2usize..7,
        n_packets in 1usize..300,
    ) {
        let masks = masks();
        let mut builder = ClassifierBuilder::new();
        let mut model = Model { rules: Vec::new() };
        for i in 0..n_rules {
            let s = splitmix(seed ^ i as u64);
            // Most rules go to the fine masks, so those subtables grow past the staging
            // threshold; priorities 0..4 tie across subtables.
            let m = if s.is_multiple_of(4) { (s >> 8) as usize % n_masks } else { (s >> 8) as usize % n_masks.min(2) };
            let value = key(s);
            let prio = ((s >> 20) % 4) as u32;
            let id = builder.insert(&value, &masks[m], prio, i as u32);
            model.rules.push((id, value.masked(&masks[m]), masks[m], prio));
        }
        let before = builder.snapshot();
        let model_before = Model { rules: model.rules.clone() };
        // Hits (rules' own values), near misses and random packets.
        let packets: Vec<FlowKey> = (0..n_packets)
            .map(|p| {
                let s = splitmix(seed.wrapping_add(p as u64 * 7919));
                match (p % 3, model.rules.len()) {
                    (0, n) if n > 0 => model.rules[s as usize % n].1,
                    _ => key(s),
                }
            })
            .collect();
        check(&before, &model_before, &packets)?;

        // Remove a share of the rules (shrinking buckets, emptying leaves) and add new ones.
        let mut kept = Vec::new();
        for (n, r) in model.rules.drain(..).enumerate() {
            if n.is_multiple_of(remove_every) {
                prop_assert!(builder.remove(r.0).is_some());
            } else {
                kept.push(r);
            }
        }
        model.rules = kept;
        for i in 0..n_rules / 4 {
            let s = splitmix(seed ^ 0xdead_beef ^ i as u64);
            let m = (s >> 8) as usize % n_masks;
            let value = key(s);
            let prio = ((s >> 20) % 4) as u32;
            let id = builder.insert(&value, &masks[m], prio, i as u32);
            model.rules.push((id, value.masked(&masks[m]), masks[m], prio));
        }
        let after = builder.snapshot();
        prop_assert_eq!(after.len(), model.rules.len());
        check(&after, &model, &packets)?;
        // The snapshot from before the changes still answers as it did.
        check(&before, &model_before, &packets)?;
    }
}
