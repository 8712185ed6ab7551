//! NXAST_MULTIPATH, NXAST_BUNDLE and NXAST_BUNDLE_LOAD on the wire: the bytes ovs-ofctl 3.1
//! sends for the text, and the errors Open vSwitch's decoder gives for bad ones.

use flowtable::text::parse_actions;
use openflow::ErrorCode;
use openflow::action::{decode_actions, encode_actions};
use openflow::convert::{actions_in, actions_out};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Text → table model → wire bytes.
fn wire(text: &str) -> String {
    let m = flowtable::Match::any();
    let ins = parse_actions(text, &m).unwrap_or_else(|e| panic!("{text}: {e}"));
    let w = actions_out(&ins.apply).unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut out = Vec::new();
    encode_actions(&w, &mut out);
    // And back to the same model.
    let back = actions_in(&decode_actions(&out).expect("decodes")).expect("converts");
    assert_eq!(back, ins.apply, "{text}");
    hex(&out)
}

#[test]
fn encodes_as_ovs_ofctl() {
    // Recorded from ovs-ofctl 3.1 (openflow/tests/data/of13_messages.tsv, the flow-mod of
    // `in_port=1,actions=bundle(eth_src,0,hrw,ofport,members:2,3)`).
    assert_eq!(
        wire("bundle(eth_src,0,hrw,ofport,members:2,3)"),
        "ffff002800002320000c00010000000000000002000200000000000000000000\
         0002000300000000"
    );
    // struct nx_action_multipath: fields, basis, pad, algorithm, max_link, arg, pad,
    // ofs_nbits, dst (NXM_NX_REG2).
    assert_eq!(
        wire("multipath(symmetric_l3l4+udp,1024,iter_hash,12,16,NXM_NX_REG2[4..7])"),
        "ffff002000002320000a0003040000000003000b000000100000010300010404"
    );
    // bundle_load: ofs_nbits and dst filled in, members padded to 8 bytes.
    assert_eq!(
        wire("bundle_load(nw_dst,7,hrw,ofport,NXM_NX_REG3[0..15],members:1,3,LOCAL)"),
        "ffff002800002320000d000100050007000000020003000f0001060400000000\
         00010003fffe0000"
    );
}

fn decode_err(h: &str) -> ErrorCode {
    decode_actions(&unhex(h)).expect_err(h).code
}

#[test]
fn bad_actions_get_open_vswitch_errors() {
    let mp = |fields: &str, alg: &str, max_link: &str, ofs_nbits: &str, dst: &str| {
        format!("ffff002000002320000a{fields}00000000{alg}{max_link}000000000000{ofs_nbits}{dst}")
    };
    // Good: 4 links in 2 bits of reg0.
    decode_actions(&unhex(&mp("0001", "0002", "0003", "0001", "00010004"))).unwrap();
    // Unknown fields / algorithm, too few bits for the links: OFPBAC_BAD_ARGUMENT.
    assert_eq!(
        decode_err(&mp("0007", "0002", "0003", "0001", "00010004")),
        ErrorCode::BadActionBadArgument
    );
    assert_eq!(
        decode_err(&mp("0001", "0004", "0003", "0001", "00010004")),
        ErrorCode::BadActionBadArgument
    );
    assert_eq!(
        decode_err(&mp("0001", "0002", "0004", "0001", "00010004")),
        ErrorCode::BadActionBadArgument
    );
    // Bits beyond the field: OFPBAC_BAD_SET_LEN; unknown field: OFPBAC_BAD_SET_TYPE.
    assert_eq!(
        decode_err(&mp(
            "0001",
            "0002",
            "0003",
            &format!("{:04x}", (31 << 6) | 1),
            "00010004"
        )),
        ErrorCode::BadActionBadSetLen
    );
    assert_eq!(
        decode_err(&mp("0001", "0002", "0003", "0001", "7fff0004")),
        ErrorCode::BadActionBadSetType
    );

    let bd = |sub: &str, alg: &str, n: &str, ofs_nbits: &str, dst: &str, members: &str| {
        let len = 32 + members.len() / 2;
        format!(
            "ffff{len:04x}00002320{sub}{alg}00000000 00000002{n}{ofs_nbits}{dst}00000000{members}"
        )
        .replace(' ', "")
    };
    decode_actions(&unhex(&bd(
        "000c",
        "0001",
        "0002",
        "0000",
        "00000000",
        "0002000300000000",
    )))
    .unwrap();
    // A 15-bit bundle_load destination, an unknown algorithm, a bundle with a destination.
    assert_eq!(
        decode_err(&bd(
            "000d",
            "0001",
            "0001",
            "000e",
            "00010004",
            "0002000000000000"
        )),
        ErrorCode::BadActionBadArgument
    );
    assert_eq!(
        decode_err(&bd(
            "000c",
            "0002",
            "0001",
            "0000",
            "00000000",
            "0002000000000000"
        )),
        ErrorCode::BadActionBadArgument
    );
    assert_eq!(
        decode_err(&bd(
            "000c",
            "0001",
            "0001",
            "000f",
            "00010004",
            "0002000000000000"
        )),
        ErrorCode::BadActionBadArgument
    );
    // More members than the action has room for: OFPBAC_BAD_LEN.
    assert_eq!(
        decode_err(&bd(
            "000c",
            "0001",
            "0005",
            "0000",
            "00000000",
            "0002000300000000"
        )),
        ErrorCode::BadActionBadLen
    );
    // CONTROLLER, and the OpenFlow 1.0 reserved range, are no members: OFPBAC_BAD_OUT_PORT.
    for m in ["fffd", "ff00"] {
        assert_eq!(
            decode_err(&bd(
                "000c",
                "0001",
                "0001",
                "0000",
                "00000000",
                &format!("{m}000000000000")
            )),
            ErrorCode::BadActionBadOutPort,
            "{m}"
        );
    }
}
