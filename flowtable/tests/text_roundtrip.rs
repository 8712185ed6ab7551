//! parse(print(x)) == x for random flows, and error messages that name the bad token.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use flowtable::action::{
    Action, Controller, Ct, CtZone, Instructions, Nat, NatKind, PacketInReason, SubField,
};
use flowtable::fields::FieldId;
use flowtable::flow::{FlowEntry, FlowFlags, FlowMod};
use flowtable::group::{Bucket, Group, GroupType};
use flowtable::text::{
    PrintOpts, parse_flow, parse_group, print_flow, print_flow_mod, print_group,
};
use flowtable::{Match, OfPort};
use proptest::prelude::*;

fn arb_match() -> impl Strategy<Value = Match> {
    // (eth_type, nw_proto) combinations that make L3/L4 fields legal.
    let proto = prop_oneof![
        Just((None, None)),
        Just((Some(0x0800u16), None)),
        Just((Some(0x0800), Some(6u8))),
        Just((Some(0x0800), Some(17))),
        Just((Some(0x0800), Some(1))),
        Just((Some(0x0800), Some(47))),
        Just((Some(0x86dd), None)),
        Just((Some(0x86dd), Some(6))),
        Just((Some(0x86dd), Some(58))),
        Just((Some(0x0806), None)),
        Just((Some(0x88cc), None)),
    ];
    (
        proto,
        prop::option::of(1u32..5000),
        prop::option::of((any::<u32>(), any::<u32>())),
        prop::option::of((any::<u64>(), any::<u64>())),
        prop::option::of((any::<u8>(), 1u8..=255)),
        prop::option::of((any::<u64>(), 0u32..=48)),
        prop::option::of((any::<u16>(), any::<u16>())),
        prop::option::of((any::<u32>(), 0u32..=32, any::<u32>(), 0u32..=32)),
        prop::option::of((any::<u16>(), any::<u16>(), any::<u8>(), any::<u8>())),
        prop::option::of((any::<u8>(), any::<u8>(), 0u8..4)),
        prop::option::of((any::<u16>(), 1u16..0x200)),
    )
        .prop_map(
            |(proto, in_port, reg, meta, ct, eth, vlan, addrs, l4, ttl, flags)| {
                let mut m = Match::any();
                if let (Some(et), p) = proto {
                    m.set(FieldId::EthType, et as u128, None).unwrap();
                    if let Some(p) = p {
                        m.set(FieldId::IpProto, p as u128, None).unwrap();
                    }
                }
                if let Some(p) = in_port {
                    m.set(FieldId::InPort, p as u128, None).unwrap();
                }
                if let Some((v, mk)) = reg {
                    m.set(FieldId::Reg3, v as u128, Some(mk as u128)).unwrap();
                }
                if let Some((v, mk)) = meta {
                    m.set(FieldId::Metadata, v as u128, Some(mk as u128))
                        .unwrap();
                    m.set(FieldId::TunId, (v >> 3) as u128, None).unwrap();
                }
                if let Some((v, mk)) = ct {
                    m.set(FieldId::CtState, v as u128, Some(mk as u128))
                        .unwrap();
                    m.set(FieldId::CtZone, v as u128, None).unwrap();
                    m.set(FieldId::CtMark, v as u128 * 7, Some(0xff)).unwrap();
                }
                if let Some((v, len)) = eth {
                    let mask = if len == 0 {
                        0xffff_ffff_ffff
                    } else {
                        ((1u128 << len) - 1) << (48 - len)
                    };
                    m.set(FieldId::EthSrc, (v & 0xffff_ffff_ffff) as u128, Some(mask))
                        .unwrap();
                    m.set(FieldId::EthDst, (v >> 16) as u128, None).unwrap();
                }
                if let Some((v, mk)) = vlan {
                    m.set(FieldId::VlanTci, v as u128, Some(mk as u128))
                        .unwrap();
                }
                let et = proto.0;
                let ip = et == Some(0x0800) || et == Some(0x86dd);
                if let Some((a, la, b, lb)) = addrs {
                    let cidr = |l: u32| {
                        if l == 0 {
                            0xffff_ffffu128
                        } else {
                            (0xffff_ffffu128 << (32 - l)) & 0xffff_ffff
                        }
                    };
                    match et {
                        Some(0x0800) => {
                            m.set(FieldId::Ipv4Src, a as u128, Some(cidr(la))).unwrap();
                            m.set(FieldId::Ipv4Dst, b as u128, Some(cidr(lb))).unwrap();
                        }
                        Some(0x0806) => {
                            m.set(FieldId::ArpSpa, a as u128, Some(cidr(la))).unwrap();
                            m.set(FieldId::ArpOp, (b & 0xffff) as u128, None).unwrap();
                            m.set(FieldId::ArpSha, (a as u128) << 8, None).unwrap();
                        }
                        Some(0x86dd) => {
                            let v = ((a as u128) << 96) | b as u128;
                            m.set(
                                FieldId::Ipv6Src,
                                v,
                                Some(u128::MAX << (128 - la.max(1) * 4)),
                            )
                            .unwrap();
                            m.set(FieldId::Ipv6Label, (b & 0xfffff) as u128, None)
                                .unwrap();
                        }
                        _ => {}
                    }
                }
                if ip {
                    if let Some((t, ecn, frag)) = ttl {
                        m.set(FieldId::NwTtl, t as u128, None).unwrap();
                        m.set(FieldId::NwTos, (ecn & 0xfc) as u128, None).unwrap();
                        m.set(FieldId::IpEcn, (ecn & 3) as u128, None).unwrap();
                        let (v, mk) = [(0, 1), (1, 1), (1, 3), (3, 3), (0, 2)][frag as usize % 5];
                        m.set(FieldId::IpFrag, v, Some(mk)).unwrap();
                    }
                    match m.nw_proto() {
                        Some(6) | Some(17) => {
                            if let Some((s, d, mk, _)) = l4 {
                                m.set(FieldId::TpSrc, s as u128, None).unwrap();
                                m.set(FieldId::TpDst, d as u128, Some(((mk as u128) << 8) | 0xff))
                                    .unwrap();
                            }
                            if m.nw_proto() == Some(6)
                                && let Some((v, mk)) = flags
                            {
                                m.set(FieldId::TcpFlags, (v & 0xfff) as u128, Some(mk as u128))
                                    .unwrap();
                            }
                        }
                        Some(1) | Some(58) => {
                            if let Some((_, _, t, c)) = l4 {
                                m.set(FieldId::IcmpType, t as u128, None).unwrap();
                                m.set(FieldId::IcmpCode, c as u128, None).unwrap();
                            }
                        }
                        _ => {}
                    }
                }
                m
            },
        )
}

fn arb_port() -> impl Strategy<Value = OfPort> {
    prop_oneof![
        (1u32..0xff00).prop_map(OfPort),
        Just(OfPort::IN_PORT),
        Just(OfPort::NORMAL),
        Just(OfPort::FLOOD),
        Just(OfPort::ALL),
        Just(OfPort::LOCAL),
        Just(OfPort::TABLE),
    ]
}

fn reg(i: u8) -> FieldId {
    FieldId::REGS[i as usize % 8]
}

fn arb_subfield() -> impl Strategy<Value = SubField> {
    (0u8..8, 0u8..32, 1u8..=32).prop_map(|(r, ofs, n)| {
        let n = n.min(32 - ofs);
        SubField {
            field: reg(r),
            ofs,
            n_bits: n,
        }
    })
}

fn arb_simple_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        arb_port().prop_map(|port| Action::Output {
            port,
            max_len: u16::MAX
        }),
        (1u32..0xff00, 14u32..).prop_map(|(p, max_len)| Action::OutputTrunc {
            port: OfPort(p),
            max_len
        }),
        any::<u32>().prop_map(|v| Action::SetField {
            field: FieldId::Ipv4Dst,
            value: v as u128,
            mask: 0xffff_ffff
        }),
        any::<u64>().prop_map(|v| Action::SetField {
            field: FieldId::TunId,
            value: v as u128,
            mask: u64::MAX as u128
        }),
        (0u128..0xffff_ffff_ffff).prop_map(|v| Action::SetField {
            field: FieldId::EthSrc,
            value: v,
            mask: 0xffff_ffff_ffff
        }),
        (0u128..4096).prop_map(|v| Action::SetField {
            field: FieldId::VlanVid,
            value: v | 0x1000,
            mask: 0x1fff
        }),
        any::<u32>().prop_map(|v| Action::SetField {
            field: FieldId::CtMark,
            value: v as u128,
            mask: 0xffff_ffff
        }),
        (arb_subfield(), any::<u32>()).prop_map(|(dst, v)| {
            let value = (v as u128) & ((1u128 << dst.n_bits) - 1);
            Action::RegLoad { dst, value }
        }),
        (arb_subfield(), 0u8..8).prop_map(|(src, r)| Action::Move {
            src,
            dst: SubField {
                field: reg(r),
                ..src
            }
        }),
        Just(Action::Move {
            src: SubField::whole(FieldId::EthSrc),
            dst: SubField::whole(FieldId::EthDst)
        }),
        prop_oneof![Just(0x8100u16), Just(0x88a8)].prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        Just(Action::DecTtl),
        Just(Action::CtClear),
        (prop::option::of(arb_port()), prop::option::of(0u8..255))
            .prop_filter("resubmit needs port or table", |(p, t)| p.is_some()
                || t.is_some())
            .prop_map(|(in_port, table)| Action::Resubmit { in_port, table }),
        any::<u32>().prop_map(Action::Group),
        (
            any::<u16>(),
            0usize..6,
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..4),
            any::<bool>()
        )
            .prop_map(
                |(max_len, r, id, userdata, pause)| Action::Controller(Controller {
                    max_len,
                    reason: PacketInReason::ALL[r],
                    id,
                    userdata,
                    pause,
                })
            ),
        prop_oneof![Just(6usize), Just(14)]
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
            .prop_map(Action::Note),
        (any::<u32>(), 1u8..=64, 2u8..=64).prop_map(|(id, a, b)| Action::Conjunction {
            id,
            clause: a.min(b),
            n_clauses: a.max(b)
        }),
    ]
}

fn arb_ct() -> impl Strategy<Value = Action> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0u8..255),
        prop::option::of(prop_oneof![
            (1u16..).prop_map(CtZone::Imm),
            // A zone is taken from exactly 16 bits.
            (0u8..8, 0u8..=16).prop_map(|(r, ofs)| CtZone::Field(SubField {
                field: reg(r),
                ofs,
                n_bits: 16,
            }))
        ]),
        prop::option::of((
            any::<bool>(),
            any::<u32>(),
            0u32..3,
            prop::option::of((1u16..1000, 0u16..1000)),
            any::<[bool; 3]>(),
        )),
        prop::collection::vec(arb_simple_action(), 0..2),
    )
        .prop_map(|(commit, force, table, zone, nat, exec)| {
            let nat = nat.map(|(plain, a, span, ports, fl)| {
                if plain {
                    return Nat::default();
                }
                let a1 = Ipv4Addr::from(a);
                let a2 = Ipv4Addr::from(a.saturating_add(span));
                Nat {
                    kind: Some(if a % 2 == 0 {
                        NatKind::Src
                    } else {
                        NatKind::Dst
                    }),
                    addrs: Some((IpAddr::V4(a1), IpAddr::V4(a2))),
                    ports: ports.map(|(p, d)| (p, p.saturating_add(d))),
                    persistent: fl[0],
                    hash: fl[1],
                    random: fl[2],
                }
            });
            Action::Ct(Ct {
                commit,
                force: force && commit,
                table,
                zone,
                nat,
                exec,
                alg: None,
            })
        })
}

fn arb_flow() -> impl Strategy<Value = FlowMod> {
    (
        arb_match(),
        0u8..200,
        any::<u16>(),
        any::<u64>(),
        any::<u16>(),
        any::<u16>(),
        0u16..32,
        prop::collection::vec(prop_oneof![4 => arb_simple_action(), 1 => arb_ct()], 0..5),
        prop::option::of((any::<u64>(), any::<u64>())),
        prop::option::of(1u8..50),
    )
        .prop_map(
            |(m, table_id, priority, cookie, idle, hard, flags, apply, wm, goto)| FlowMod {
                table_id,
                priority,
                cookie,
                idle_timeout: idle,
                hard_timeout: hard,
                flags: FlowFlags(flags & !FlowFlags::CHECK_OVERLAP),
                // As a table keeps it ("no VLAN tag" as 0x0000/0x1fff).
                match_: m.untagged_as_open_vswitch().unwrap_or(m),
                instructions: Instructions {
                    apply,
                    write_metadata: wm.map(|(v, mk)| (v & mk, mk)),
                    goto_table: goto.map(|g| table_id.saturating_add(g).min(254)),
                    ..Instructions::default()
                },
                ..FlowMod::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dump_flows_text_parses_back(fm in arb_flow()) {
        let e = FlowEntry::from_mod(&fm, Instant::now());
        let text = print_flow(&e, &PrintOpts::default());
        let back = parse_flow(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(&back, &fm, "{}", text);
        let text2 = print_flow_mod(&fm);
        let back2 = parse_flow(&text2).map_err(|err| TestCaseError::fail(format!("{text2}: {err}")))?;
        prop_assert_eq!(&back2, &fm, "{}", text2);
    }

    #[test]
    fn groups_parse_back(
        t in 0usize..4,
        id in 0u32..0xffff_ff00,
        buckets in prop::collection::vec((any::<u16>(), 1u32..100, prop::collection::vec(arb_simple_action(), 0..3)), 1..4),
    ) {
        let group_type = [GroupType::All, GroupType::Select, GroupType::Indirect, GroupType::FastFailover][t];
        let buckets = buckets
            .into_iter()
            .map(|(w, p, actions)| {
                let mut b = Bucket::new(actions);
                if group_type == GroupType::Select { b.weight = w; }
                if group_type == GroupType::FastFailover { b.watch_port = OfPort(p); }
                b
            })
            .collect();
        let g = Group::new(id, group_type, buckets);
        let text = print_group(&g);
        let back = parse_group(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(back, g, "{}", text);
    }
}

fn err(s: &str) -> String {
    parse_flow(s).unwrap_err().to_string()
}

#[test]
fn errors_name_the_token_and_what_was_expected() {
    assert_eq!(
        err("ip,nw_sr=10.0.0.1,actions=drop"),
        "unknown field 'nw_sr' (did you mean nw_src?)"
    );
    assert_eq!(
        err("ip,nw_src=10.0.0.300,actions=drop"),
        "invalid value '10.0.0.300' for ip_src: expected an IPv4 address"
    );
    assert_eq!(
        err("tp_dst=80,actions=drop"),
        "field tp_dst needs a match on tcp, udp or sctp (or their v6 forms) first"
    );
    assert_eq!(
        err("in_port=1"),
        "must specify an action (e.g. 'actions=drop')"
    );
    assert_eq!(
        err("in_port=1,actions=outptu:2"),
        "unknown action 'outptu' (did you mean output?)"
    );
    assert_eq!(
        err("in_port=1,actions=enqueue:1:2"),
        "unsupported action 'enqueue'"
    );
    assert_eq!(
        err("in_port=1,actions=drop,output:1"),
        "\"drop\" must not be accompanied by any other action or instruction"
    );
    assert!(
        err("in_port=1,actions=goto_table:1,output:2")
            .starts_with("invalid instruction ordering at 'output:2'")
    );
    assert_eq!(
        err("in_port=1/1,actions=drop"),
        "field in_port cannot be masked"
    );
    assert_eq!(
        err("priority=70000,actions=drop"),
        "invalid priority '70000': expected a number 0..65535"
    );
    assert_eq!(
        err("actions=load:0x10000->NXM_NX_REG0[0..15]"),
        "invalid load action 'load:0x10000->NXM_NX_REG0[0..15]': value does not fit in 16 bits"
    );
    assert_eq!(
        err("actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..15]"),
        "invalid move action 'move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..15]': source is 8 bits but destination is 16 bits"
    );
    assert_eq!(
        err("actions=mod_tp_dst:80"),
        "invalid mod_tp_dst action 'mod_tp_dst:80': the flow must match tcp, udp or sctp"
    );
    assert_eq!(
        err("ip,actions=ct(commit"),
        "unbalanced parentheses in 'ct(commit'"
    );
    // output(port=P,max_len=N), with ovs-ofctl's words.
    assert_eq!(
        err("actions=output(port=2,max_len=13)"),
        "invalid output action 'output(port=2,max_len=13)': max_len 13 is less than the minimum value 14"
    );
    assert_eq!(
        err("actions=output(port=NORMAL,max_len=20)"),
        "invalid output action 'output(port=NORMAL,max_len=20)': output to unsupported truncate port: NORMAL"
    );
    assert_eq!(
        err("actions=output(port=2,max_len=20,x=1)"),
        "invalid output action 'output(port=2,max_len=20,x=1)': invalid key 'x' in output_trunc argument"
    );
    assert_eq!(
        err("actions=output(max_len=20,port=nope)"),
        "invalid output action 'output(max_len=20,port=nope)': output to unknown truncate port: nope"
    );
}

#[test]
fn output_trunc_reads_and_prints_as_ovs_ofctl() {
    for (text, printed) in [
        ("output(port=2,max_len=100)", "output(port=2,max_len=100)"),
        ("output(max_len=14,port=7)", "output(port=7,max_len=14)"),
        ("output(port:3,max_len:20)", "output(port=3,max_len=20)"),
        (
            "output(port=LOCAL,max_len=64)",
            "output(port=LOCAL,max_len=64)",
        ),
        (
            "output(port=in_port,max_len=64)",
            "output(port=IN_PORT,max_len=64)",
        ),
    ] {
        let fm = parse_flow(&format!("actions={text}")).unwrap();
        let shown = flowtable::text::print_instructions(&fm.instructions);
        assert_eq!(shown, printed, "{text}");
    }
}

#[test]
fn legacy_actions_normalize_like_ovs_ofctl() {
    let p = |s: &str| flowtable::text::print_instructions(&parse_flow(s).unwrap().instructions);
    assert_eq!(
        p("dl_vlan=5,actions=mod_vlan_vid:7"),
        "set_field:4103->vlan_vid"
    );
    assert_eq!(
        p("actions=mod_vlan_vid:7"),
        "push_vlan:0x8100,set_field:4103->vlan_vid"
    );
    assert_eq!(p("udp,actions=mod_tp_src:53"), "set_field:53->udp_src");
    assert_eq!(p("ip,actions=mod_nw_tos:16"), "set_field:4->ip_dscp");
    assert_eq!(p("actions=set_tunnel:0x5"), "set_field:0x5->tun_id");
    assert_eq!(p("actions=output:controller"), "CONTROLLER:65535");
    assert_eq!(p("actions=3,in_port,local"), "output:3,IN_PORT,LOCAL");
    assert_eq!(
        p("actions=set_field:0x5/0x5->reg0"),
        "set_field:0x5/0x5->reg0"
    );
    assert_eq!(p("actions=note:"), "note:00.00.00.00.00.00");
    assert_eq!(p("arp,nw_src=10.0.0.1,actions=drop"), "drop");
    let fm = parse_flow("arp,nw_src=10.0.0.1,nw_proto=2,actions=drop").unwrap();
    assert_eq!(
        flowtable::text::print_match(&fm.match_),
        "arp,arp_spa=10.0.0.1,arp_op=2"
    );
}

#[test]
fn fuzz_found_inputs_do_not_panic() {
    // Multi-byte characters right before a would-be `actions=`.
    let s = "table=2,priority=5,cookie=0x1234,[dle_timeout=300\u{656}p,actions=mod_dl_ad00aec_ttl,output:3";
    assert!(parse_flow(s).is_err());
}
