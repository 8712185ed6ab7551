//! Match fields `ovs-ofctl -O OpenFlow13` (3.1) sends in forms beyond plain OXM/NXM: `tcp_flags`
//! as the ONF experimenter OXM, `packet_type=(0,0)` for a match whose L2 part has no OpenFlow
//! 1.3 form; and the IPv6 ND fields. Each vector is the FLOW_MOD ovs-ofctl sent (recorded with
//! `ovs-ofctl --no-names -O OpenFlow13 add-flow` against a socket that logs what it receives).

use openflow::convert::{flow_mod_in, flow_mod_out};
use openflow::message::Message;
use openflow::{ErrorCode, OfError};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_flow(bytes: &[u8]) -> Result<flowtable::FlowMod, OfError> {
    let (_, msg) = openflow::decode(bytes)?;
    let Message::FlowMod(fm) = msg else {
        panic!("not a flow mod")
    };
    flow_mod_in(&fm)
}

/// Decodes `hex`, checks the printed match, that the decoded model encodes back to
/// ovs-ofctl's bytes, and that our parser reads `text` to the same match.
fn same_as_ovs(hex: &str, printed: &str, text: &str) {
    let bytes = unhex(hex);
    let flow = decode_flow(&bytes).unwrap();
    assert_eq!(flowtable::text::print_match(&flow.match_), printed);
    let xid = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
    let again = openflow::encode(&Message::FlowMod(flow_mod_out(&flow).unwrap()), xid).unwrap();
    assert_eq!(again, bytes, "re-encoding {printed}");
    // Our own parser reads the text to the same match (its `output:2` carries max_len
    // 0xffff where ovs-ofctl sends 0, so whole messages are not compared).
    let parsed = flowtable::text::parse_flow(text).unwrap();
    assert_eq!(parsed.match_, flow.match_, "parsing {text}");
}

/// `tcp,tcp_flags=+syn-ack,actions=output:2`: ONFOXM_ET_TCP_FLAGS, masked
/// (`ffff5508 4f4e4600 0002 0012`).
const TCP_FLAGS_MASKED: &str = "040e006800000002000000000000000000000000000000000000000000008000ffffffffffffffffffffffff000000000001001b80000a0208008000140106ffff55084f4e4600000200120000000000000400180000000000000010000000020000000000000000";

/// `tcp6,tcp_flags=0x012,actions=output:2`: exact (`ffff5406 4f4e4600 0012`).
const TCP6_FLAGS_EXACT: &str = "040e006800000002000000000000000000000000000000000000000000008000ffffffffffffffffffffffff000000000001001980000a0286dd8000140106ffff54064f4e4600001200000000000000000400180000000000000010000000020000000000000000";

#[test]
fn tcp_flags_travel_as_the_onf_experimenter_oxm() {
    same_as_ovs(
        TCP_FLAGS_MASKED,
        "tcp,tcp_flags=+syn-ack",
        "tcp,tcp_flags=+syn-ack,actions=output:2",
    );
    same_as_ovs(
        TCP6_FLAGS_EXACT,
        "tcp6,tcp_flags=syn|ack",
        "tcp6,tcp_flags=0x012,actions=output:2",
    );
}

#[test]
fn experimenter_oxm_framing_errors() {
    // Another experimenter than ONF: an unknown field.
    let mut b = unhex(TCP_FLAGS_MASKED);
    let at = TCP_FLAGS_MASKED.find("4f4e4600").unwrap() / 2;
    b[at] = 0x00;
    assert_eq!(
        decode_flow(&b).unwrap_err().code,
        ErrorCode::BadMatchBadField
    );
    // A length that does not count the experimenter id.
    let mut b = unhex(TCP_FLAGS_MASKED);
    let at = TCP_FLAGS_MASKED.find("ffff5508").unwrap() / 2;
    b[at + 3] = 4;
    assert!(decode_flow(&b).is_err());
    // A length too short to even hold the experimenter id.
    b[at + 3] = 2;
    assert!(decode_flow(&b).is_err());
    // An unknown ONF field.
    let mut b = unhex(TCP_FLAGS_MASKED);
    b[at + 2] = 0x57;
    assert_eq!(
        decode_flow(&b).unwrap_err().code,
        ErrorCode::BadMatchBadField
    );
}

/// `vlan_tci=0xe000/0xe000,actions=load:0x1005->NXM_OF_VLAN_TCI[],output:2`: OpenFlow 1.3 has
/// no form for a PCP match without the VID, so ovs-ofctl sends `packet_type=(0,0)` alone
/// (`80005804 00000000`) and Open vSwitch installs a match-all flow.
const PACKET_TYPE_ONLY: &str = "040e007000000002000000000000000000000000000000000000000000008000ffffffffffffffffffffffff000000000001000c8000580400000000000000000004003000000000ffff0018000023200007000f00000802000000000000100500000010000000020000000000000000";

#[test]
fn ethernet_packet_type_matches_everything() {
    let bytes = unhex(PACKET_TYPE_ONLY);
    let flow = decode_flow(&bytes).unwrap();
    assert!(flow.match_.is_catchall());
    assert_eq!(
        flowtable::text::print_instructions(&flow.instructions),
        "load:0x1005->NXM_OF_VLAN_TCI[],output:2"
    );
    // Any other packet type is refused; so is a second packet_type.
    let mut b = bytes.clone();
    let at = PACKET_TYPE_ONLY.find("8000580400000000").unwrap() / 2;
    b[at + 5] = 1;
    assert_eq!(
        decode_flow(&b).unwrap_err().code,
        ErrorCode::BadMatchBadValue
    );
}
