//! Golden errors: malformed or unsupported input yields the exact OpenFlow error type/code,
//! never a panic; plus framing and HELLO negotiation.

use openflow::{
    ErrorCode, Framer, FramingError, Hello, Message, OfError, decode, encode, error_reply,
    negotiate,
};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// `in_port=1,actions=output:2` as ovs-ofctl -O OpenFlow13 sends it (xid 6).
const FLOW_MOD: &str = "040e0058 00000006 0000000000000000 0000000000000000 00 00 0000 0000 8000
    ffffffff ffffffff ffffffff 0000 0000
    0001 000c 80000004 00000001 00000000
    0004 0018 00000000 0000 0010 00000002 0000 000000000000";

fn code_of(bytes: &[u8]) -> ErrorCode {
    decode(bytes).expect_err("must be rejected").code
}

fn with_len_fixed(mut b: Vec<u8>) -> Vec<u8> {
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

#[test]
fn reference_flow_mod_is_valid() {
    let (h, msg) = decode(&unhex(FLOW_MOD)).expect("valid");
    assert_eq!(h.xid, 6);
    assert!(matches!(msg, Message::FlowMod(_)));
}

#[test]
fn wrong_version_is_bad_version() {
    let mut b = unhex(FLOW_MOD);
    b[0] = 0x01;
    assert_eq!(code_of(&b), ErrorCode::BadRequestBadVersion);
    assert_eq!(ErrorCode::BadRequestBadVersion.type_code(), (1, 0));
    // ... but HELLO of any version is accepted for negotiation.
    let (h, msg) = decode(&unhex("0100000800000005")).expect("OF1.0 hello");
    assert_eq!(h.version, 1);
    assert!(matches!(msg, Message::Hello(_)));
}

#[test]
fn lengths_shorter_than_header_or_than_declared_are_bad_len() {
    assert_eq!(code_of(&unhex("04020000")), ErrorCode::BadRequestBadLen);
    assert_eq!(
        code_of(&unhex("0402000400000001")),
        ErrorCode::BadRequestBadLen
    );
    // Declared 0x58 bytes, only 0x50 present.
    let b = unhex(FLOW_MOD);
    assert_eq!(code_of(&b[..0x50]), ErrorCode::BadRequestBadLen);
    assert_eq!(ErrorCode::BadRequestBadLen.type_code(), (1, 6));
}

#[test]
fn truncated_oxm_is_bad_match_len() {
    // ofp_match claims 12 bytes but the in_port TLV header says 8 value bytes.
    let mut b = unhex(FLOW_MOD);
    b[0x37] = 0x08; // OXM_OF_IN_PORT length 4 -> 8
    assert_eq!(code_of(&b), ErrorCode::BadMatchBadLen);
    // ofp_match length running past the message.
    let mut b = unhex(FLOW_MOD);
    b[0x32..0x34].copy_from_slice(&0x00ffu16.to_be_bytes());
    assert_eq!(code_of(&b), ErrorCode::BadMatchBadLen);
    assert_eq!(ErrorCode::BadMatchBadLen.type_code(), (4, 1));
}

#[test]
fn unknown_match_field_and_mask_errors() {
    // OXM field 63 of the basic class does not exist.
    let mut b = unhex(FLOW_MOD);
    b[0x36] = 63 << 1;
    assert_eq!(code_of(&b), ErrorCode::BadMatchBadField);
    // in_port with the hasmask bit (and doubled length) is not maskable.
    let mut b = unhex(FLOW_MOD);
    b[0x36] = 0x01;
    b[0x37] = 0x08;
    b[0x32..0x34].copy_from_slice(&0x0010u16.to_be_bytes());
    let mut v = b[..0x3c].to_vec();
    v.extend_from_slice(&unhex("ffffffff"));
    v.extend_from_slice(&b[0x40..]);
    assert_eq!(code_of(&with_len_fixed(v)), ErrorCode::BadMatchBadMask);
}

#[test]
fn missing_prerequisite_and_duplicates() {
    // tcp_dst=80 without eth_type/ip_proto.
    let m = "0001 000a 80001c02 0050 000000000000";
    let b = unhex(&FLOW_MOD.replace("0001 000c 80000004 00000001 00000000", m));
    assert_eq!(code_of(&with_len_fixed(b)), ErrorCode::BadMatchBadPrereq);
    assert_eq!(ErrorCode::BadMatchBadPrereq.type_code(), (4, 9));
    // in_port twice.
    let m = "0001 0014 80000004 00000001 80000004 00000002 00000000";
    let b = unhex(&FLOW_MOD.replace("0001 000c 80000004 00000001 00000000", m));
    assert_eq!(code_of(&with_len_fixed(b)), ErrorCode::BadMatchDupField);
}

/// The wire forms the field table gives the codec beyond plain values: VLAN_PCP is the bare PCP
/// and needs a tagged VLAN_VID, NXM_OF_IP_TOS is not carried, ARP fields accept RARP.
#[test]
fn field_table_wire_forms() {
    let with_match = |m: &str| {
        with_len_fixed(unhex(
            &FLOW_MOD.replace("0001 000c 80000004 00000001 00000000", m),
        ))
    };
    let flow_of = |b: &[u8]| match decode(b).expect("valid").1 {
        Message::FlowMod(fm) => fm.match_,
        other => panic!("{other:?}"),
    };
    // vlan_vid=0x1005 (tagged, VID 5), vlan_pcp=3.
    let tagged = "0001 000f 80000c02 1005 80000e01 03 00";
    let m = flow_of(&with_match(tagged));
    let (value, mask) = m.to_flow().expect("valid match");
    assert_eq!((value.vlan_tci, mask.vlan_tci), (0x7005, 0xffff));
    let mut again = Vec::new();
    openflow::Match::from_flow(&value, &mask).encode(&mut again);
    assert_eq!(again, unhex(tagged));
    // vlan_pcp alone, or with an untagged VID: missing prerequisite.
    for m in [
        "0001 0009 80000e01 03 00000000000000",
        "0001 000f 80000c02 0005 80000e01 03 00",
    ] {
        assert_eq!(code_of(&with_match(m)), ErrorCode::BadMatchBadPrereq);
    }
    // eth_type=0x800 then NXM_OF_IP_TOS: not a field this codec carries.
    let m = "0001 000f 80000a02 0800 00000a01 10 00";
    assert_eq!(code_of(&with_match(m)), ErrorCode::BadMatchBadField);
    // arp_op under eth_type=0x8035 (RARP) is accepted.
    let m = flow_of(&with_match("0001 0010 80000a02 8035 80002a02 0001"));
    assert_eq!(m.to_flow().expect("valid match").0.arp_op, 1);
}

#[test]
fn unknown_and_unsupported_actions() {
    let out = "0000 0010 00000002 0000 000000000000";
    let replace = |a: &str| with_len_fixed(unhex(&FLOW_MOD.replace(out, a)));
    // Action type 99.
    assert_eq!(
        code_of(&replace("0063 0010 00000002 0000 000000000000")),
        ErrorCode::BadActionBadType
    );
    // COPY_TTL_OUT is refused as BAD_TYPE too.
    assert_eq!(
        code_of(&replace("000b 0008 00000000 0000000000000000")),
        ErrorCode::BadActionBadType
    );
    // Nicira subtype 200.
    assert_eq!(
        code_of(&replace("ffff 0010 00002320 00c8 000000000000")),
        ErrorCode::BadActionBadExpType
    );
    assert_eq!(ErrorCode::BadActionBadExpType.type_code(), (2, 3));
    // Unknown experimenter id.
    assert_eq!(
        code_of(&replace("ffff 0010 00abcdef 0001 000000000000")),
        ErrorCode::BadActionBadExperimenter
    );
    // Action length not a multiple of 8.
    assert_eq!(
        code_of(&replace("0000 000c 00000002 0000 000000000000")),
        ErrorCode::BadActionBadLen
    );
    // Output to OFPP_ANY.
    assert_eq!(
        code_of(&replace("0000 0010 ffffffff 0000 000000000000")),
        ErrorCode::BadActionBadOutPort
    );
}

#[test]
fn bad_instruction_and_command() {
    let inst = "0004 0018 00000000";
    let b = with_len_fixed(unhex(&FLOW_MOD.replace(inst, "0009 0018 00000000")));
    assert_eq!(code_of(&b), ErrorCode::BadInstructionUnknownInst);
    let mut b = unhex(FLOW_MOD);
    b[25] = 9; // command
    assert_eq!(code_of(&b), ErrorCode::FlowModBadCommand);
}

#[test]
fn unsupported_message_and_multipart_types() {
    // OFPT_ROLE_REQUEST.
    assert_eq!(
        code_of(&unhex("041800180000000100000000000000000000000000000000")),
        ErrorCode::BadRequestBadType
    );
    // OFPMP_QUEUE.
    assert_eq!(
        code_of(&unhex(
            "04120018 00000001 0005 0000 00000000 ffffffff ffffffff"
        )),
        ErrorCode::BadRequestBadMultipart
    );
    // OFPT_METER_MOD without its body.
    assert_eq!(
        code_of(&unhex("041d000800000001")),
        ErrorCode::BadRequestBadLen
    );
}

#[test]
fn error_reply_carries_xid_type_code_and_request() {
    let req = unhex("041800180000004200000000000000000000000000000000");
    let e = decode(&req).expect_err("role request unsupported");
    let reply = error_reply(&req, &e);
    assert_eq!(
        reply,
        unhex("0401 0024 00000042 0001 0001 041800180000004200000000000000000000000000000000")
    );
    let e = OfError::new(ErrorCode::GroupModGroupExists, "exists");
    assert_eq!(e.type_code(), (6, 0));
}

#[test]
fn framer_splits_stream_and_rejects_short_length() {
    let a = unhex("0002000c0000000161626364");
    let b = unhex("0414000800000007");
    let mut stream = a.clone();
    stream.extend_from_slice(&b);
    let mut f = Framer::new();
    // Byte by byte: nothing until each message is complete.
    let mut got = Vec::new();
    for byte in &stream {
        f.push(std::slice::from_ref(byte));
        while let Some(m) = f.next_message().expect("valid stream") {
            got.push(m.to_vec());
        }
    }
    assert_eq!(got, vec![a, b]);
    assert_eq!(f.buffered(), 0);

    let mut f = Framer::new();
    f.push(&unhex("0400000400000001"));
    assert_eq!(f.next_message(), Err(FramingError::LengthBelowHeader(4)));
}

#[test]
fn hello_negotiation() {
    // ovs-ofctl -O OpenFlow13.
    let (h, msg) = decode(&unhex("04000010000000050001000800000010")).expect("hello");
    let Message::Hello(hello) = msg else {
        panic!("not hello")
    };
    assert_eq!(negotiate(h.version, &hello), Ok(4));
    // Our HELLO is byte-identical to that one.
    assert_eq!(
        encode(&Message::Hello(Hello::ours()), 5).expect("encode"),
        unhex("04000010000000050001000800000010")
    );
    // Plain ovs-ofctl (OpenFlow 1.0 only) fails, as against real OVS with only 1.3 enabled.
    let (h, msg) = decode(&unhex("0100000800000005")).expect("hello");
    let Message::Hello(hello) = msg else {
        panic!("not hello")
    };
    let e = negotiate(h.version, &hello).expect_err("1.0 only");
    assert_eq!(e.type_code(), (0, 0));
    // A bare version-6 HELLO (ovs-vswitchd's) implies 1.3 support.
    let (h, msg) = decode(&unhex("0600000800000009")).expect("hello");
    let Message::Hello(hello) = msg else {
        panic!("not hello")
    };
    assert_eq!(negotiate(h.version, &hello), Ok(4));
    // A bitmap with only 1.0 and 1.5 is refused even in a version-6 header.
    let (h, msg) = decode(&unhex("06000010000000090001000800000042")).expect("hello");
    let Message::Hello(hello) = msg else {
        panic!("not hello")
    };
    assert!(negotiate(h.version, &hello).is_err());
}

#[test]
fn hostile_inputs_never_panic() {
    let base = unhex(FLOW_MOD);
    // Every truncation and every single-byte corruption of a real message.
    for n in 0..base.len() {
        let _ = decode(&base[..n]);
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut b = base.clone();
            b[n] = v;
            if let Ok((h, m)) = decode(&b) {
                let again = encode(&m, h.xid).expect("encode");
                assert_eq!(decode(&again).expect("re-decode").1, m);
            }
        }
    }
}

/// NAT ranges and flags the datapath could not run are refused when decoded (as Open vSwitch's
/// `decode_NXAST_RAW_NAT` refuses them), not accepted and then dropped or narrowed.
#[test]
fn impossible_nat_ranges_are_bad_argument() {
    use openflow::NatAction;
    use openflow::action::{NAT_DST, NAT_PROTO_HASH, NAT_PROTO_RANDOM, NAT_SRC};
    let v4 = |a: [u8; 4]| Some(u32::from_be_bytes(a));
    let base = NatAction {
        flags: NAT_SRC,
        ipv4_min: v4([10, 0, 0, 1]),
        ipv4_max: v4([10, 0, 0, 9]),
        proto_min: Some(1000),
        proto_max: Some(2000),
        ..NatAction::default()
    };
    let decoded = |n: &NatAction| {
        let mut bytes = Vec::new();
        openflow::action::encode_actions(&[openflow::Action::Nat(n.clone())], &mut bytes);
        openflow::action::decode_actions(&bytes)
    };
    decoded(&base).expect("a plain SNAT range");
    decoded(&NatAction::default()).expect("nat without a range");
    let bad = [
        NatAction {
            flags: NAT_SRC | 0x80,
            ..base.clone()
        },
        NatAction {
            flags: NAT_SRC | NAT_PROTO_HASH | NAT_PROTO_RANDOM,
            ..base.clone()
        },
        NatAction {
            ipv4_max: v4([10, 0, 0, 0]),
            ..base.clone()
        },
        NatAction {
            ipv4_min: None,
            ..base.clone()
        },
        NatAction {
            ipv4_min: Some(0),
            ipv4_max: None,
            ..base.clone()
        },
        NatAction {
            ipv6_min: Some([0xfd; 16]),
            ..base.clone()
        },
        NatAction {
            proto_max: Some(999),
            ..base.clone()
        },
        NatAction {
            proto_min: None,
            ..base.clone()
        },
        NatAction {
            flags: NAT_DST,
            ipv4_min: None,
            ipv4_max: None,
            ..base.clone()
        },
    ];
    for n in bad {
        let e = decoded(&n).expect_err(&format!("{n:?} must be refused"));
        assert_eq!(
            e.code,
            ErrorCode::BadActionBadArgument,
            "{n:?}: {}",
            e.detail
        );
    }
}

/// `dl_vlan=5,actions=set_field:6->vlan_vid` as ovs-ofctl 3.1 sends it: the VID lacks the
/// VLAN-present bit, which Open vSwitch refuses with OFPBAC_BAD_SET_ARGUMENT ("Invalid value
/// for set field vlan_vid: 6"); with the bit (4102) it is taken.
#[test]
fn vlan_vid_set_field_without_the_present_bit_is_bad_set_argument() {
    let msg = |vid: &str| {
        unhex(&format!(
            "040e0058 00000001 0000000000000000 0000000000000000 00 00 0000 0000 8000
             ffffffff ffffffff ffffffff 0000 0000
             0001 000a 80000c02 1005 000000000000
             0004 0018 00000000 0019 0010 80000c02 {vid} 000000000000"
        ))
    };
    assert_eq!(code_of(&msg("0006")), ErrorCode::BadActionBadSetArgument);
    assert_eq!(code_of(&msg("0000")), ErrorCode::BadActionBadSetArgument);
    assert_eq!(ErrorCode::BadActionBadSetArgument.type_code(), (2, 15));
    let (_, m) = decode(&msg("1006")).expect("valid");
    assert!(matches!(m, Message::FlowMod(_)));
}

/// `FLOW_MOD` with its apply-actions output replaced by NXAST_OUTPUT_TRUNC (16 bytes too):
/// port 2, `max_len` as given; `instruction` 4 applies the actions, 3 writes them into the
/// action set.
fn flow_mod_with_output_trunc(instruction: u16, max_len: u32) -> Vec<u8> {
    let mut b = unhex(FLOW_MOD);
    let n = b.len();
    b[n - 24..n - 22].copy_from_slice(&instruction.to_be_bytes());
    let action = unhex(&format!("ffff 0010 00002320 0027 0002 {max_len:08x}"));
    b[n - 16..].copy_from_slice(&action);
    b
}

/// NXAST_OUTPUT_TRUNC as Open vSwitch checks it: `max_len` under an Ethernet header is
/// `BAD_ARGUMENT`; in an action set it is `BAD_TYPE` (not admitted there).
#[test]
fn output_trunc_max_len_and_action_set() {
    assert_eq!(
        code_of(&flow_mod_with_output_trunc(4, 13)),
        ErrorCode::BadActionBadArgument
    );
    let (_, msg) = decode(&flow_mod_with_output_trunc(4, 14)).expect("14 is taken");
    let Message::FlowMod(fm) = msg else {
        panic!("not a flow mod")
    };
    let model = openflow::convert::flow_mod_in(&fm).expect("converts");
    assert_eq!(
        model.instructions.apply,
        vec![flowtable::Action::OutputTrunc {
            port: flowtable::OfPort(2),
            max_len: 14
        }]
    );
    // Back to the same bytes.
    let again = encode(
        &Message::FlowMod(openflow::convert::flow_mod_out(&model).unwrap()),
        6,
    )
    .unwrap();
    assert_eq!(again, flow_mod_with_output_trunc(4, 14));

    let (_, msg) = decode(&flow_mod_with_output_trunc(3, 100)).expect("framing is fine");
    let Message::FlowMod(fm) = msg else {
        panic!("not a flow mod")
    };
    let e = openflow::convert::flow_mod_in(&fm).expect_err("not in an action set");
    assert_eq!(e.code, ErrorCode::BadActionBadType);
}
