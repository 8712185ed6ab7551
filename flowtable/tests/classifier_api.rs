//! Specific behaviours of the classifier API: ties, early exit, remove, publish, shard growth.

use encap::FlowKey;
use flowtable::classifier::ClassifierBuilder;

fn port_mask() -> FlowKey {
    FlowKey {
        in_port: u32::MAX,
        ..FlowKey::default()
    }
}

fn dst_mask() -> FlowKey {
    FlowKey {
        nw_dst: u32::MAX,
        ..FlowKey::default()
    }
}

fn key(in_port: u32, nw_dst: u32) -> FlowKey {
    FlowKey {
        in_port,
        nw_dst,
        ..FlowKey::default()
    }
}

#[test]
fn equal_priority_tie_goes_to_first_inserted_across_subtables() {
    let mut b = ClassifierBuilder::new();
    let first = b.insert(&key(0, 7), &dst_mask(), 10, "dst");
    let _second = b.insert(&key(1, 0), &port_mask(), 10, "port");
    let cls = b.snapshot();
    let mut wc = FlowKey::default();
    assert_eq!(cls.lookup(&key(1, 7), &mut wc).map(|r| r.id()), Some(first));
    // Both subtables had to be consulted to settle the tie.
    assert_eq!(wc.in_port, u32::MAX);
    assert_eq!(wc.nw_dst, u32::MAX);
}

#[test]
fn equal_priority_tie_in_one_bucket_goes_to_first_inserted() {
    let mut b = ClassifierBuilder::new();
    let first = b.insert(&key(3, 0), &port_mask(), 5, 1);
    let second = b.insert(&key(3, 0), &port_mask(), 5, 2);
    let mut wc = FlowKey::default();
    assert_eq!(
        b.snapshot().lookup(&key(3, 9), &mut wc).map(|r| r.id()),
        Some(first)
    );
    b.remove(first);
    assert_eq!(
        b.snapshot().lookup(&key(3, 9), &mut wc).map(|r| r.id()),
        Some(second)
    );
}

#[test]
fn higher_priority_hit_skips_lower_subtables_and_their_bits() {
    let mut b = ClassifierBuilder::new();
    b.insert(&key(1, 0), &port_mask(), 100, "high");
    b.insert(&key(0, 9), &dst_mask(), 1, "low");
    let cls = b.snapshot();
    let mut wc = FlowKey::default();
    let hit = cls.lookup(&key(1, 9), &mut wc).expect("port rule matches");
    assert_eq!(*hit.payload(), "high");
    assert_eq!(wc, port_mask(), "the low-priority subtable was consulted");
}

#[test]
fn miss_unwildcards_every_probed_mask() {
    let mut b = ClassifierBuilder::new();
    b.insert(&key(1, 0), &port_mask(), 100, ());
    b.insert(&key(0, 9), &dst_mask(), 1, ());
    let mut wc = FlowKey::default();
    assert!(b.snapshot().lookup(&key(2, 8), &mut wc).is_none());
    assert_eq!(wc.in_port, u32::MAX);
    assert_eq!(wc.nw_dst, u32::MAX);
    assert_eq!(wc.masked(&FlowKey::default()), FlowKey::default());
}

#[test]
fn remove_returns_payload_and_drops_empty_subtable() {
    let mut b = ClassifierBuilder::new();
    let a = b.insert(&key(1, 0), &port_mask(), 1, String::from("a"));
    let c = b.insert(&key(0, 2), &dst_mask(), 1, String::from("c"));
    assert_eq!(b.n_subtables(), 2);
    let removed = b.remove(a).expect("rule a exists");
    assert_eq!(removed.payload(), "a");
    assert!(b.remove(a).is_none());
    assert_eq!(b.n_subtables(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(b.get(c).map(|r| r.payload().as_str()), Some("c"));
    assert!(b.get(a).is_none());
}

#[test]
fn removing_the_top_rule_lowers_subtable_max_priority() {
    let mut b = ClassifierBuilder::new();
    let top = b.insert(&key(1, 0), &port_mask(), 100, "top");
    b.insert(&key(2, 0), &port_mask(), 5, "low-port");
    b.insert(&key(0, 9), &dst_mask(), 50, "dst");
    b.remove(top);
    let cls = b.snapshot();
    let stats: Vec<u32> = cls.subtable_stats().map(|s| s.1).collect();
    assert_eq!(
        stats,
        vec![50, 5],
        "subtables re-sorted by their new max priority"
    );
    let mut wc = FlowKey::default();
    assert_eq!(
        cls.lookup(&key(2, 9), &mut wc).map(|r| *r.payload()),
        Some("dst")
    );
}

#[test]
fn find_exact_finds_by_match_and_priority() {
    let mut b = ClassifierBuilder::new();
    let id = b.insert(&key(4, 1234), &port_mask(), 7, ());
    assert_eq!(
        b.find_exact(&key(4, 0), &port_mask(), 7).map(|r| r.id()),
        Some(id)
    );
    assert!(b.find_exact(&key(4, 0), &port_mask(), 8).is_none());
    assert!(b.find_exact(&key(5, 0), &port_mask(), 7).is_none());
    assert!(b.find_exact(&key(4, 0), &dst_mask(), 7).is_none());
}

#[test]
fn readers_see_a_batch_only_after_publish() {
    let mut b = ClassifierBuilder::new();
    let reader = b.reader();
    b.insert(&key(1, 0), &port_mask(), 1, 'x');
    b.insert(&key(2, 0), &port_mask(), 1, 'y');
    let mut wc = FlowKey::default();
    assert!(reader.load().lookup(&key(1, 0), &mut wc).is_none());
    let before = reader.load_full();
    let version = b.publish();
    let now = reader.load_full();
    assert_eq!(now.version(), version);
    assert_eq!(now.len(), 2);
    assert!(now.lookup(&key(2, 0), &mut wc).is_some());
    assert!(before.is_empty(), "an old snapshot keeps its contents");
    // Publishing without changes keeps the same snapshot.
    assert_eq!(b.publish(), version);
}

#[test]
fn big_subtable_grows_shards_and_stays_correct_across_snapshots() {
    let mut b = ClassifierBuilder::new();
    let ids: Vec<_> = (0..20_000u32)
        .map(|p| b.insert(&key(p, 0), &port_mask(), 1, p))
        .collect();
    let old = b.snapshot();
    let shards = old.subtable_stats().next().map(|s| s.3).unwrap_or(0);
    assert!(shards > 1, "20k buckets should be sharded, got {shards}");
    for id in ids.iter().step_by(2) {
        b.remove(*id);
    }
    let new = b.snapshot();
    let mut wc = FlowKey::default();
    for p in (0..20_000u32).step_by(97) {
        assert_eq!(
            old.lookup(&key(p, 0), &mut wc).map(|r| *r.payload()),
            Some(p)
        );
        let want = if p % 2 == 1 { Some(p) } else { None };
        assert_eq!(new.lookup(&key(p, 0), &mut wc).map(|r| *r.payload()), want);
    }
    assert_eq!(old.len(), 20_000);
    assert_eq!(new.len(), 10_000);
    assert_eq!(new.iter().count(), 10_000);
}

#[test]
fn catch_all_rule_matches_everything_and_adds_no_bits() {
    let mut b = ClassifierBuilder::new();
    let id = b.insert(&key(9, 9), &FlowKey::default(), 0, ());
    let mut wc = FlowKey::default();
    assert_eq!(
        b.snapshot().lookup(&key(1, 2), &mut wc).map(|r| r.id()),
        Some(id)
    );
    assert_eq!(wc, FlowKey::default());
}

/// The Service harness's table 1: `ct_state=+new+trk,tcp,nw_dst=VIP,tp_dst=80` above
/// `ct_state=+est+trk,ip`. An established packet is ruled out of the first subtable by its
/// `ct_state` alone, so its megaflow must not pin the packet's address and port (one megaflow
/// for every established packet, not one per connection); a new packet still pins them.
#[test]
fn metadata_miss_unwildcards_only_the_metadata() {
    const NEW_TRK: u8 = 0x21;
    const EST_TRK: u8 = 0x22;
    let new_rule_mask = FlowKey {
        ct_state: NEW_TRK,
        eth_type: u16::MAX,
        nw_proto: u8::MAX,
        nw_dst: u32::MAX,
        tp_dst: u16::MAX,
        ..FlowKey::default()
    };
    let est_rule_mask = FlowKey {
        ct_state: 0x23,
        eth_type: u16::MAX,
        ..FlowKey::default()
    };
    let mut b = ClassifierBuilder::new();
    let vip = FlowKey {
        ct_state: NEW_TRK,
        eth_type: 0x0800,
        nw_proto: 6,
        nw_dst: 0x0af7_000a,
        tp_dst: 80,
        ..FlowKey::default()
    };
    b.insert(&vip, &new_rule_mask, 100, "group");
    let est = FlowKey {
        ct_state: EST_TRK,
        eth_type: 0x0800,
        ..FlowKey::default()
    };
    b.insert(&est, &est_rule_mask, 70, "resubmit");
    let cls = b.snapshot();

    // A reply of an established connection, to a client port.
    let reply = FlowKey {
        ct_state: EST_TRK,
        eth_type: 0x0800,
        nw_proto: 6,
        nw_dst: 0xac10_030b,
        tp_dst: 45992,
        ..FlowKey::default()
    };
    let mut wc = FlowKey::default();
    assert_eq!(
        cls.lookup(&reply, &mut wc).map(|r| *r.payload()),
        Some("resubmit")
    );
    assert_eq!(
        wc,
        FlowKey {
            ct_state: 0x23,
            eth_type: u16::MAX,
            ..FlowKey::default()
        },
        "only ct_state and eth_type decided"
    );
    // Every key agreeing on those bits gets the same rule: another connection's reply.
    let mut other = reply;
    other.nw_dst = 0xac10_0301;
    other.tp_dst = 1;
    let mut wc2 = FlowKey::default();
    assert_eq!(
        cls.lookup(&other, &mut wc2).map(|r| *r.payload()),
        Some("resubmit")
    );

    // A new connection to the VIP still depends on the address and port.
    let mut wc = FlowKey::default();
    assert_eq!(
        cls.lookup(&vip, &mut wc).map(|r| *r.payload()),
        Some("group")
    );
    assert_eq!(wc.nw_dst, u32::MAX);
    assert_eq!(wc.tp_dst, u16::MAX);
    // A new connection elsewhere misses the VIP rule on its address, not on ct_state.
    let mut elsewhere = vip;
    elsewhere.nw_dst = 0xac10_0115;
    let mut wc = FlowKey::default();
    assert!(cls.lookup(&elsewhere, &mut wc).is_none());
    assert_eq!(wc.nw_dst, u32::MAX);

    // Burst lookups un-wildcard the same bits.
    let keys = [reply, vip, elsewhere];
    let mut wcs = [FlowKey::default(); 3];
    let mut out = [None; 3];
    cls.lookup_burst(&keys, &mut wcs, &mut out);
    for (k, w) in keys.iter().zip(&wcs) {
        let mut want = FlowKey::default();
        cls.lookup(k, &mut want);
        assert_eq!(*w, want);
    }
}

/// A subtable whose rules carry more distinct metadata values than the stage tracks stops
/// staging (wider masks, same answers), and removing rules keeps the stage exact.
#[test]
fn metadata_stage_survives_many_values_and_removal() {
    let mask = FlowKey {
        in_port: u32::MAX,
        nw_dst: u32::MAX,
        ..FlowKey::default()
    };
    let mut b = ClassifierBuilder::new();
    let one = b.insert(&key(1, 9), &mask, 10, 1u32);
    let mut wc = FlowKey::default();
    assert!(b.snapshot().lookup(&key(2, 9), &mut wc).is_none());
    assert_eq!(wc, port_mask(), "port 2 is ruled out by in_port alone");
    b.remove(one);
    b.insert(&key(3, 9), &mask, 10, 3);
    let mut wc = FlowKey::default();
    assert!(b.snapshot().lookup(&key(1, 9), &mut wc).is_none());
    assert_eq!(wc, port_mask(), "the removed rule's port no longer counts");
    for p in 10..40 {
        b.insert(&key(p, 9), &mask, 10, p);
    }
    let cls = b.snapshot();
    for p in 0..50 {
        let mut wc = FlowKey::default();
        let want = (p == 3 || (10..40).contains(&p)).then_some(p);
        assert_eq!(cls.lookup(&key(p, 9), &mut wc).map(|r| *r.payload()), want);
        assert_eq!(
            wc, mask,
            "past the tracked values every probe takes the whole mask"
        );
    }
}
