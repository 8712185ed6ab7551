//! Port numbers Open vSwitch cannot represent, refused on the wire with its errors. Open
//! vSwitch keeps OpenFlow 1.0's 16-bit ports inside: an OpenFlow 1.3 port must be below 0xff00
//! or 0xffffff00 and up (`ofputil_port_from_ofp11`, lib/ofp-port.c). A flow-mod or group-mod
//! with another is refused by ovs-vswitchd, and a reply holding one is one ovs-ofctl cannot
//! decode ("port 65520 is outside the supported range 0 through 65279 or 0xffffff00 through
//! 0xffffffff").

use openflow::{
    Action, Bucket, ErrorCode, GroupMod, GroupModCommand, GroupType, Message, decode, encode,
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

const OUTPUT_2: &str = "0000 0010 00000002 0000 000000000000";

fn code_of(hex: &str) -> Option<ErrorCode> {
    decode(&unhex(hex)).err().map(|e| e.code)
}

/// An output action to 0xff00..=0xfffffeff (none Open vSwitch represents) or to
/// 0xffffff00..=0xfffffff7 (OpenFlow 1.0's unnamed reserved ports): OFPBAC_BAD_OUT_PORT, as
/// ovs-vswitchd's `decode_OFPAT_RAW11_OUTPUT` answers.
#[test]
fn output_to_a_port_open_vswitch_cannot_represent_is_bad_out_port() {
    for port in [
        0xff00u32,
        0xfff0,
        0xffff,
        0x1_0000,
        0x00ab_cdef,
        0xffff_feff,
        0xffff_ff00,
        0xffff_fff7,
    ] {
        let hex = FLOW_MOD.replace(OUTPUT_2, &format!("0000 0010 {port:08x} 0000 000000000000"));
        assert_eq!(
            code_of(&hex),
            Some(ErrorCode::BadActionBadOutPort),
            "output:{port:#x}"
        );
    }
    assert_eq!(ErrorCode::BadActionBadOutPort.type_code(), (2, 4));
    for port in [1u32, 0xfeff, 0xffff_fff8, 0xffff_fffa, 0xffff_fffe] {
        let hex = FLOW_MOD.replace(OUTPUT_2, &format!("0000 0010 {port:08x} 0000 000000000000"));
        assert_eq!(code_of(&hex), None, "output:{port:#x}");
    }
}

/// An OXM in_port match Open vSwitch cannot represent is OFPBMC_BAD_VALUE (`nx_pull_raw`:
/// `mf_is_value_valid`); as a set-field, OFPBAC_BAD_SET_ARGUMENT. OpenFlow 1.0's reserved
/// numbers, 0xffffff00 and up, are ports it has.
#[test]
fn in_port_open_vswitch_cannot_represent_is_a_bad_value() {
    for port in [0xff00u32, 0xfff0, 0x1_0000, 0xffff_feff] {
        let hex = FLOW_MOD.replace("80000004 00000001", &format!("80000004 {port:08x}"));
        assert_eq!(
            code_of(&hex),
            Some(ErrorCode::BadMatchBadValue),
            "in_port={port:#x}"
        );
        let set = FLOW_MOD.replace(OUTPUT_2, &format!("0019 0010 80000004 {port:08x} 00000000"));
        assert_eq!(
            code_of(&set),
            Some(ErrorCode::BadActionBadSetArgument),
            "set_field:{port:#x}->in_port"
        );
    }
    assert_eq!(ErrorCode::BadMatchBadValue.type_code(), (4, 7));
    for port in [0xfeffu32, 0xffff_ff00, 0xffff_fffe] {
        let hex = FLOW_MOD.replace("80000004 00000001", &format!("80000004 {port:08x}"));
        assert_eq!(code_of(&hex), None, "in_port={port:#x}");
    }
}

/// A bucket's watch_port Open vSwitch cannot represent: OFPGMFC_BAD_WATCH, as its bucket
/// decoder answers (after the bucket's actions).
#[test]
fn watch_port_open_vswitch_cannot_represent_is_bad_watch() {
    let group = |watch_port: u32| {
        let gm = GroupMod {
            command: GroupModCommand::Add,
            group_type: GroupType::FastFailover,
            group_id: 1,
            buckets: vec![Bucket {
                watch_port,
                actions: vec![Action::Output {
                    port: 1,
                    max_len: 0,
                }],
                ..Bucket::default()
            }],
        };
        encode(&Message::GroupMod(gm), 7).expect("encodes")
    };
    for port in [0xff00u32, 0xfff0, 0x1_0000, 0xffff_feff] {
        let e = decode(&group(port)).expect_err("refused");
        assert_eq!(e.code, ErrorCode::GroupModBadWatch, "watch_port:{port:#x}");
    }
    assert_eq!(ErrorCode::GroupModBadWatch.type_code(), (6, 13));
    for port in [1u32, 0xfeff, 0xffff_ff00, 0xffff_ffff] {
        decode(&group(port)).unwrap_or_else(|e| panic!("watch_port:{port:#x}: {e}"));
    }
}
