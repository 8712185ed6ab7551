//! `OFPT_ERROR` as ovs-ofctl prints it: the error line, then the request it refused.

use std::time::Instant;

use flowtable::text::{self, PrintOpts};

use openflow::convert;
use openflow::message::ErrorMsg;
use openflow::{FlowModCommand, Message};

/// OpenFlow 1.3 error names, indexed by type then code, spelled as ovs-ofctl spells them.
const NAMES: &[(&str, &[&str])] = &[
    ("OFPHFC", &["INCOMPATIBLE", "EPERM"]),
    (
        "OFPBRC",
        &[
            "BAD_VERSION",
            "BAD_TYPE",
            "BAD_STAT",
            "BAD_VENDOR",
            "BAD_SUBTYPE",
            "EPERM",
            "BAD_LEN",
            "BUFFER_EMPTY",
            "BUFFER_UNKNOWN",
            "BAD_TABLE_ID",
            "IS_SLAVE",
            "BAD_PORT",
            "BAD_PACKET",
            "MULTIPART_BUFFER_OVERFLOW",
        ],
    ),
    (
        "OFPBAC",
        &[
            "BAD_TYPE",
            "BAD_LEN",
            "BAD_VENDOR",
            "BAD_VENDOR_TYPE",
            "BAD_OUT_PORT",
            "BAD_ARGUMENT",
            "EPERM",
            "TOO_MANY",
            "BAD_QUEUE",
            "BAD_OUT_GROUP",
            "MATCH_INCONSISTENT",
            "UNSUPPORTED_ORDER",
            "BAD_TAG",
            "BAD_SET_TYPE",
            "BAD_SET_LEN",
            "BAD_SET_ARGUMENT",
        ],
    ),
    (
        "OFPBIC",
        &[
            "UNKNOWN_INST",
            "UNSUP_INST",
            "BAD_TABLE_ID",
            "UNSUP_METADATA",
            "UNSUP_METADATA_MASK",
            "BAD_EXPERIMENTER",
            "BAD_EXP_TYPE",
            "BAD_LEN",
            "EPERM",
        ],
    ),
    (
        "OFPBMC",
        &[
            "BAD_TYPE",
            "BAD_LEN",
            "BAD_TAG",
            "BAD_DL_ADDR_MASK",
            "BAD_NW_ADDR_MASK",
            "BAD_WILDCARDS",
            "BAD_FIELD",
            "BAD_VALUE",
            "BAD_MASK",
            "BAD_PREREQ",
            "DUP_FIELD",
            "EPERM",
        ],
    ),
    (
        "OFPFMFC",
        &[
            "UNKNOWN",
            "TABLE_FULL",
            "BAD_TABLE_ID",
            "OVERLAP",
            "EPERM",
            "BAD_TIMEOUT",
            "BAD_COMMAND",
            "BAD_FLAGS",
        ],
    ),
    (
        "OFPGMFC",
        &[
            "GROUP_EXISTS",
            "INVALID_GROUP",
            "WEIGHT_UNSUPPORTED",
            "OUT_OF_GROUPS",
            "OUT_OF_BUCKETS",
            "CHAINING_UNSUPPORTED",
            "WATCH_UNSUPPORTED",
            "LOOP",
            "UNKNOWN_GROUP",
            "CHAINED_GROUP",
            "BAD_TYPE",
            "BAD_COMMAND",
            "BAD_BUCKET",
            "BAD_WATCH",
            "EPERM",
        ],
    ),
    (
        "OFPPMFC",
        &[
            "BAD_PORT",
            "BAD_HW_ADDR",
            "BAD_CONFIG",
            "BAD_ADVERTISE",
            "EPERM",
        ],
    ),
    ("OFPTMFC", &["BAD_TABLE", "BAD_CONFIG", "EPERM"]),
    ("OFPQOFC", &["BAD_PORT", "BAD_QUEUE", "EPERM"]),
    ("OFPSCFC", &["BAD_FLAGS", "BAD_LEN", "EPERM"]),
    ("OFPRRFC", &["STALE", "UNSUP", "BAD_ROLE"]),
    (
        "OFPMMFC",
        &[
            "UNKNOWN",
            "METER_EXISTS",
            "INVALID_METER",
            "UNKNOWN_METER",
            "BAD_COMMAND",
            "BAD_FLAGS",
            "BAD_RATE",
            "BAD_BURST",
            "BAD_BAND",
            "BAD_BAND_VALUE",
            "OUT_OF_METERS",
            "OUT_OF_BANDS",
        ],
    ),
    (
        "OFPTFFC",
        &[
            "BAD_TABLE",
            "BAD_METADATA",
            "BAD_TYPE",
            "BAD_LEN",
            "BAD_ARGUMENT",
            "EPERM",
        ],
    ),
];

/// `OFPBAC_BAD_OUT_GROUP` for (2, 9); a neutral spelling for codes we do not know.
pub fn error_name(err_type: u16, code: u16) -> String {
    NAMES
        .get(usize::from(err_type))
        .and_then(|(prefix, codes)| {
            codes
                .get(usize::from(code))
                .map(|c| format!("{prefix}_{c}"))
        })
        .unwrap_or_else(|| format!("OFPET_{err_type}(code={code})"))
}

/// Names of the Nicira experimenter errors (OpenFlow 1.2+ codes) this switch sends.
fn nx_error_name(code: u16) -> Option<&'static str> {
    match code {
        15 => Some("NXBAC_BAD_CONJUNCTION"),
        _ => None,
    }
}

/// The whole ovs-ofctl rendering: `OFPT_ERROR (OF1.3) (xid=..): NAME` and, when known, the
/// refused request on the next line.
pub fn format_error(e: &ErrorMsg, xid: u32, request: Option<&Message>) -> String {
    let name = match e.experimenter {
        Some(openflow::action::NX_VENDOR_ID) if nx_error_name(e.code).is_some() => {
            nx_error_name(e.code).unwrap_or_default().to_string()
        }
        Some(exp) => format!("experimenter {exp:#x} error type {}", e.code),
        None => error_name(e.err_type, e.code),
    };
    let mut s = format!("OFPT_ERROR (OF1.3) (xid={xid:#x}): {name}\n");
    if let Some(req) = request.and_then(|m| describe(m, xid)) {
        s.push_str(&req);
        s.push('\n');
    }
    s
}

/// One-line rendering of a request we sent (the ones that can be refused).
pub fn describe(msg: &Message, xid: u32) -> Option<String> {
    let head = |name: &str| format!("{name} (OF1.3) (xid={xid:#x}):");
    match msg {
        Message::FlowMod(fm) => {
            let cmd = match fm.command {
                FlowModCommand::Add => "ADD",
                FlowModCommand::Modify => "MOD",
                FlowModCommand::ModifyStrict => "MOD_STRICT",
                FlowModCommand::Delete => "DEL",
                FlowModCommand::DeleteStrict => "DEL_STRICT",
            };
            let mut line = format!("{} {cmd}", head("OFPT_FLOW_MOD"));
            if fm.table_id != 0 && fm.table_id != openflow::flow::TABLE_ALL {
                line.push_str(&format!(" table:{}", fm.table_id));
            }
            if let Ok(model) = convert::flow_mod_in(fm) {
                let mut e = flowtable::FlowEntry::from_mod(&model, Instant::now());
                e.table_id = 0;
                e.cookie = 0;
                e.idle_timeout = 0;
                e.hard_timeout = 0;
                e.flags = flowtable::flow::FlowFlags(0);
                line.push_str(&text::print_flow(&e, &PrintOpts::default()));
            }
            Some(line)
        }
        Message::GroupMod(gm) => {
            let cmd = match gm.command {
                openflow::GroupModCommand::Add => "ADD",
                openflow::GroupModCommand::Modify => "MOD",
                openflow::GroupModCommand::Delete => "DEL",
            };
            let body = convert::group_mod_in(gm)
                .map(|g| text::print_group(&g.group).trim_start().to_string())
                .unwrap_or_default();
            Some(format!("{} {cmd} {body}", head("OFPT_GROUP_MOD")))
        }
        Message::MeterMod(mm) => {
            let cmd = match mm.command {
                openflow::MeterModCommand::Add => "ADD",
                openflow::MeterModCommand::Modify => "MOD",
                openflow::MeterModCommand::Delete => "DEL",
            };
            let body = text::print_meter(&convert::meter_mod_in(mm).meter);
            Some(format!(
                "{} {cmd} {}",
                head("OFPT_METER_MOD"),
                body.trim_end_matches('\n')
            ))
        }
        Message::MultipartRequest {
            body: openflow::MultipartRequest::Meter { meter_id },
            ..
        } => Some(format!(
            "{} {}",
            head("OFPST_METER request"),
            text::meter_id_text(*meter_id, '=')
        )),
        Message::MultipartRequest {
            body: openflow::MultipartRequest::MeterConfig { meter_id },
            ..
        } => Some(format!(
            "{} {}",
            head("OFPST_METER_CONFIG request"),
            text::meter_id_text(*meter_id, '=')
        )),
        // `ofputil_packet_out_format`: the in_port, the actions, the data's length and the
        // packet as a packet-in shows it.
        Message::PacketOut(po) => {
            let actions = convert::actions_in(&po.actions)
                .map(|a| text::print_actions(&a))
                .unwrap_or_default();
            let mut s = format!(
                "{} in_port={} actions={actions}",
                head("OFPT_PACKET_OUT"),
                flowtable::OfPort(po.in_port)
            );
            if po.buffer_id == u32::MAX {
                s.push_str(&format!(" data_len={}", po.data.len()));
                if !po.data.is_empty() {
                    s.push('\n');
                    s.push_str(&super::packet::packet_to_string(&po.data));
                }
            } else {
                s.push_str(&format!(" buffer=0x{:08x}", po.buffer_id));
            }
            Some(s)
        }
        Message::PortMod(pm) => Some(format!(
            "{}{}",
            head("OFPT_PORT_MOD"),
            super::print::port_mod(pm)
        )),
        Message::BundleControl(_) => Some(head("ONFT_BUNDLE_CONTROL")),
        _ => None,
    }
}

/// OpenFlow 1.3 message names ovs-ofctl puts before a request it cannot decode.
fn type_name(msg_type: u8) -> Option<&'static str> {
    Some(match msg_type {
        0 => "OFPT_HELLO",
        2 => "OFPT_ECHO_REQUEST",
        5 => "OFPT_FEATURES_REQUEST",
        9 => "OFPT_SET_CONFIG",
        13 => "OFPT_PACKET_OUT",
        14 => "OFPT_FLOW_MOD",
        15 => "OFPT_GROUP_MOD",
        16 => "OFPT_PORT_MOD",
        17 => "OFPT_TABLE_MOD",
        20 => "OFPT_BARRIER_REQUEST",
        29 => "OFPT_METER_MOD",
        _ => return None,
    })
}

/// `ovs-ofctl ofp-print` of a whole OFPT_ERROR message (`None` if `bytes` is not one): the
/// error line, then the refused request, or when the request itself does not decode,
/// `***decode error: NAME***` and a hex dump of it.
pub fn ofp_print_error(bytes: &[u8]) -> Option<String> {
    let (h, Message::Error(e)) = openflow::decode(bytes).ok()? else {
        return None;
    };
    let mut s = format_error(&e, h.xid, None);
    let data = &e.data;
    match openflow::decode(data) {
        Ok((dh, msg)) => {
            if let Some(line) = describe(&msg, dh.xid) {
                s.push_str(&line);
                s.push('\n');
            }
        }
        Err(err) => {
            let (t, c) = err.code.type_code();
            if data.len() >= 8
                && let Some(name) = type_name(data[1])
            {
                let xid = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                s.push_str(&format!("{name} (OF1.3) (xid={xid:#x}): "));
            }
            s.push_str(&format!("***decode error: {}***\n", error_name(t, c)));
            s.push_str(&hex_dump(data));
        }
    }
    Some(s)
}

/// ovs's `ofp_hex_dump` layout: offset, 16 bytes split 8-8 by `-`, then the printable ones.
fn hex_dump(data: &[u8]) -> String {
    let mut s = String::new();
    for (i, row) in data.chunks(16).enumerate() {
        s.push_str(&format!("{:08x}  ", i * 16));
        for j in 0..16 {
            match row.get(j) {
                Some(b) => s.push_str(&format!("{b:02x}")),
                None => s.push_str("  "),
            }
            s.push(if j == 7 { '-' } else { ' ' });
        }
        s.push('|');
        for j in 0..16 {
            s.push(match row.get(j) {
                Some(&b) if (0x20..0x7f).contains(&b) => b as char,
                Some(_) => '.',
                None => ' ',
            });
        }
        s.push_str("|\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ovs_spelling() {
        assert_eq!(error_name(2, 9), "OFPBAC_BAD_OUT_GROUP");
        assert_eq!(error_name(6, 8), "OFPGMFC_UNKNOWN_GROUP");
        assert_eq!(error_name(1, 4), "OFPBRC_BAD_SUBTYPE");
        assert_eq!(error_name(5, 3), "OFPFMFC_OVERLAP");
        assert_eq!(error_name(99, 1), "OFPET_99(code=1)");
    }
}
