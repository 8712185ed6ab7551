//! Model-based property test of NAT allocation: whatever the sequence of new connections,
//! replies and expiry, no two live connections share a reply tuple, every binding is inside
//! its range, replies are un-NATed to the right client, and a binding is refused only when
//! every candidate for that destination is really taken.

use conntrack::*;
use encap::flowkey::{CT_EST, CT_RPL};
use proptest::prelude::*;
use std::collections::HashSet;

mod common;
use common::{SEC, udp_n};

/// 2 addresses x 3 ports = 6 bindings per destination endpoint.
const NAT_ADDRS: [u32; 2] = [0xc0a8_0001, 0xc0a8_0002];
const NAT_PORTS: (u16, u16) = (100, 102);
const PER_DESTINATION: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    Open {
        client: u8,
        sport: u16,
        server: u8,
        random: bool,
    },
    Reply {
        pick: prop::sample::Index,
    },
    Advance {
        secs: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 1000u16..1003, 0u8..2, any::<bool>())
            .prop_map(|(client, sport, server, random)| Op::Open { client, sport, server, random }),
        2 => any::<prop::sample::Index>().prop_map(|pick| Op::Reply { pick }),
        1 => (0u8..40).prop_map(|secs| Op::Advance { secs }),
    ]
}

fn check_invariants(ct: &Conntrack, now: u64) -> Result<(), TestCaseError> {
    let mut replies = HashSet::new();
    let mut origs = HashSet::new();
    for e in ct.dump(now) {
        prop_assert!(
            replies.insert(e.reply),
            "two connections share reply tuple {:?}",
            e.reply
        );
        prop_assert!(
            origs.insert(e.orig),
            "two connections share original tuple {:?}",
            e.orig
        );
        prop_assert!(NAT_ADDRS.iter().any(|&a| Addr::v4(a) == e.reply.dst));
        prop_assert!((NAT_PORTS.0..=NAT_PORTS.1).contains(&e.reply.dport));
        let (by_reply, is_reply) = ct.lookup(&e.reply, now).unwrap();
        prop_assert!(is_reply && by_reply.id == e.id);
        let (by_orig, is_reply) = ct.lookup(&e.orig, now).unwrap();
        prop_assert!(!is_reply && by_orig.id == e.id);
    }
    prop_assert!(replies.len() == ct.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn nat_bindings_never_collide(ops in prop::collection::vec(op(), 1..80)) {
        let mut ct = Conntrack::new(Config { max_conns: 64, hash_seed: Some(3), ..Config::default() }).unwrap();
        let servers = [0x0808_0808u32, 0x0101_0101];
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Open { client, sport, server, random } => {
                    let spec = NatSpec {
                        src: Some(NatRange::new(Addr::v4(NAT_ADDRS[0]), Addr::v4(NAT_ADDRS[1]), NAT_PORTS.0, NAT_PORTS.1).unwrap()),
                        select: if random { PortSelect::Random } else { PortSelect::Hash },
                        ..NatSpec::default()
                    };
                    let act = CtAction { commit: true, nat: Some(&spec), ..CtAction::default() };
                    let dst = servers[server as usize];
                    let src = 0x0a00_0000 + client as u32;
                    let existed = ct.dump(now).any(|e| e.orig.src == Addr::v4(src) && e.orig.sport == sport && e.orig.dst == Addr::v4(dst) && e.expires_in_ns > 0);
                    let taken_before = ct.dump(now).filter(|e| e.reply.src == Addr::v4(dst) && e.expires_in_ns > 0).count();
                    let r = ct.process(&udp_n(src, sport, dst, 53), &PacketFacts::default(), &act, now);
                    match r.drop {
                        Some(CtDrop::NatExhausted) => {
                            prop_assert!(!existed);
                            prop_assert_eq!(taken_before, PER_DESTINATION, "refused while bindings were free");
                        }
                        Some(other) => prop_assert!(false, "unexpected drop {:?}", other),
                        None => {
                            let rw = r.rewrite.unwrap();
                            prop_assert_eq!(rw.dst, Addr::v4(dst));
                            prop_assert!(existed || taken_before < PER_DESTINATION);
                        }
                    }
                }
                Op::Reply { pick } => {
                    let entries: Vec<ConnEntry> = ct.dump(now).filter(|e| e.expires_in_ns > 0).collect();
                    if !entries.is_empty() {
                        let e = entries[pick.index(entries.len())];
                        let k = udp_n(e.reply.src.v4_host(), e.reply.sport, e.reply.dst.v4_host(), e.reply.dport);
                        let plain = NatSpec::default();
                        let act = CtAction { nat: Some(&plain), ..CtAction::default() };
                        let r = ct.process(&k, &PacketFacts::default(), &act, now);
                        prop_assert_eq!(r.ct_state & (CT_EST | CT_RPL), CT_EST | CT_RPL);
                        let rw = r.rewrite.unwrap();
                        prop_assert_eq!((rw.dst, rw.dport), (e.orig.src, e.orig.sport));
                        prop_assert_eq!((rw.src, rw.sport), (e.orig.dst, e.orig.dport));
                    }
                }
                Op::Advance { secs } => {
                    now += secs as u64 * SEC;
                    // Reap at most one: expired-but-unreaped bindings must count as free too.
                    ct.expire(now, 1);
                }
            }
            check_invariants(&ct, now)?;
        }
    }
}
