#![no_main]
//! The classifier against a linear scan: random rule sets, removals and packets must give the
//! same winner, and every packet agreeing with a looked-up key on the un-wildcarded bits must
//! get the same winner too.

use arbitrary::Arbitrary;
use encap::FlowKey;
use flowtable::classifier::{ClassifierBuilder, RuleId};
use libfuzzer_sys::fuzz_target;

/// A few bits of a few fields, so that fuzzed rules and packets collide often.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct SmallKey {
    in_port: u8,
    nw_src: u16,
    nw_dst: u16,
    tp_dst: u8,
    ct_state: u8,
    reg0: u8,
}

impl SmallKey {
    fn key(self) -> FlowKey {
        FlowKey {
            in_port: u32::from(self.in_port & 3),
            nw_src: 0x0a00_0000 | u32::from(self.nw_src & 0x0303),
            nw_dst: 0x0a00_0000 | u32::from(self.nw_dst & 0x0303),
            tp_dst: u16::from(self.tp_dst & 3),
            ct_state: self.ct_state & 0x23,
            regs: [
                u32::from(self.reg0 & 1),
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

    /// The same fields read as a mask: each byte picks which of the field's bits matter.
    fn mask(self) -> FlowKey {
        let bits = |b: u8| {
            if b & 0x80 != 0 {
                u32::MAX
            } else {
                u32::from(b)
            }
        };
        FlowKey {
            in_port: bits(self.in_port),
            nw_src: if self.nw_src & 0x8000 != 0 {
                u32::MAX
            } else {
                u32::from(self.nw_src) << 8
            },
            nw_dst: if self.nw_dst & 0x8000 != 0 {
                u32::MAX
            } else {
                u32::from(self.nw_dst)
            },
            tp_dst: u16::from(self.tp_dst),
            ct_state: self.ct_state,
            regs: [bits(self.reg0), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..FlowKey::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
struct FuzzRule {
    value: SmallKey,
    /// Index into the input's mask list, so rules share subtables.
    mask: u8,
    priority: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    masks: Vec<SmallKey>,
    rules: Vec<FuzzRule>,
    /// Rules to remove again, as indices into `rules`.
    removals: Vec<u8>,
    packets: Vec<SmallKey>,
    /// Bits to vary outside the un-wildcard mask.
    variants: Vec<SmallKey>,
}

fn reference(rules: &[(RuleId, FlowKey, FlowKey, u32)], key: &FlowKey) -> Option<RuleId> {
    rules
        .iter()
        .filter(|(_, v, m, _)| key.matches_masked(v, m))
        .max_by_key(|(id, _, _, p)| (*p, std::cmp::Reverse(*id)))
        .map(|r| r.0)
}

fuzz_target!(|input: Input| {
    if input.masks.is_empty() {
        return;
    }
    let mut builder = ClassifierBuilder::new();
    let mut live = Vec::new();
    for (n, r) in input.rules.iter().take(64).enumerate() {
        let mask = input.masks[usize::from(r.mask) % input.masks.len()].mask();
        let priority = u32::from(r.priority % 8);
        let id = builder.insert(&r.value.key(), &mask, priority, n);
        live.push((id, r.value.key().masked(&mask), mask, priority));
    }
    let before = builder.snapshot();
    let before_rules = live.clone();
    for &i in input.removals.iter().take(32) {
        if live.is_empty() {
            break;
        }
        let (id, ..) = live.remove(usize::from(i) % live.len());
        assert_eq!(builder.remove(id).map(|r| r.id()), Some(id));
    }
    let after = builder.snapshot();
    assert_eq!(after.len(), live.len());
    for (cls, rules) in [(&before, &before_rules), (&after, &live)] {
        for p in input.packets.iter().take(32) {
            let key = p.key();
            let mut wc = FlowKey::default();
            let got = cls.lookup(&key, &mut wc).map(|r| r.id());
            assert_eq!(got, reference(rules, &key));
            for v in input.variants.iter().take(8) {
                let mut variant = key;
                for ((o, w), x) in variant
                    .words_mut()
                    .iter_mut()
                    .zip(wc.words())
                    .zip(v.key().words())
                {
                    *o = (*o & w) | (x & !w);
                }
                assert_eq!(reference(rules, &variant), got, "un-wildcarding broke");
            }
        }
    }
});
