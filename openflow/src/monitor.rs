//! ONF flow monitoring (`ONFST_FLOW_MONITOR`, the OpenFlow 1.3 form of Nicira's
//! `NXST_FLOW_MONITOR`): what `ovs-ofctl -O OpenFlow13 monitor SWITCH watch:` asks for. The
//! request and the replies travel as experimenter multipart bodies; replies with xid 0 are
//! the live updates that follow the initial dump.

use super::buf::{Put, Reader};
use super::instruction::{Instruction, decode_instructions, encode_instructions};
use super::multipart::{MultipartReply, MultipartRequest};
use super::oxm::Match;
use super::{ErrorCode, OfError};

/// ONF's experimenter id ("ONF\0").
pub const ONF_EXPERIMENTER: u32 = 0x4f4e_4600;
/// `ONFST_FLOW_MONITOR`.
pub const ONFST_FLOW_MONITOR: u32 = 1870;

/// `NXFMF_*` / `ONFFMF_*` request flags.
pub mod flags {
    /// Dump the matching flows first.
    pub const INITIAL: u16 = 1 << 0;
    pub const ADD: u16 = 1 << 1;
    pub const DELETE: u16 = 1 << 2;
    pub const MODIFY: u16 = 1 << 3;
    /// Include the instructions in updates.
    pub const ACTIONS: u16 = 1 << 4;
    /// Also report changes made by the monitoring connection itself.
    pub const OWN: u16 = 1 << 5;
}

/// `NXFME_*` update events.
pub mod event {
    pub const ADDED: u16 = 0;
    pub const DELETED: u16 = 1;
    pub const MODIFIED: u16 = 2;
}

/// One monitor of a request (`onf_flow_monitor_request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorRequest {
    pub id: u32,
    pub flags: u16,
    /// `OFPP_ANY`: any.
    pub out_port: u32,
    /// `0xff`: every table.
    pub table_id: u8,
    pub match_: Match,
}

impl MonitorRequest {
    /// The monitors of a request body.
    pub fn decode_list(body: &[u8]) -> Result<Vec<MonitorRequest>, OfError> {
        let mut r = Reader::new(body, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let id = r.u32("monitor id")?;
            let flags = r.u16("monitor flags")?;
            let _match_len = r.u16("match_len")?;
            let out_port = r.u32("out_port")?;
            let table_id = r.u8("table_id")?;
            r.skip(3, "pad")?;
            let match_ = Match::decode(&mut r)?;
            out.push(MonitorRequest {
                id,
                flags,
                out_port,
                table_id,
                match_,
            });
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.id);
        out.put_u16(self.flags);
        let len_at = out.len();
        out.put_u16(0);
        out.put_u32(self.out_port);
        out.put_u8(self.table_id);
        out.put_zeros(3);
        let m = out.len();
        self.match_.encode(out);
        let match_len = u16::from_be_bytes([out[m + 2], out[m + 3]]);
        out.patch_u16(len_at, match_len);
    }
}

/// One flow update (`nx_flow_update_full`, with an OXM match and OpenFlow 1.3 instructions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowUpdate {
    pub event: u16,
    /// For DELETED: the `OFPRR_*` reason.
    pub reason: u16,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub table_id: u8,
    pub cookie: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowUpdate {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(0);
        out.put_u16(self.event);
        out.put_u16(self.reason);
        out.put_u16(self.priority);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        let len_at = out.len();
        out.put_u16(0);
        out.put_u8(self.table_id);
        out.put_zeros(1);
        out.put_u64(self.cookie);
        let m = out.len();
        self.match_.encode(out);
        let match_len = u16::from_be_bytes([out[m + 2], out[m + 3]]);
        out.patch_u16(len_at, match_len);
        encode_instructions(&self.instructions, out);
        let len = (out.len() - start) as u16;
        out.patch_u16(start, len);
    }

    /// The updates of a reply body.
    pub fn decode_list(body: &[u8]) -> Result<Vec<FlowUpdate>, OfError> {
        let mut r = Reader::new(body, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("flow update length")?);
            if len < 24 || len > r.remaining() {
                return Err(OfError::new(
                    ErrorCode::BadRequestBadLen,
                    format!("flow update length {len}"),
                ));
            }
            let mut b = Reader::new(r.bytes(len, "flow update")?, ErrorCode::BadRequestBadLen);
            b.skip(2, "length")?;
            let event = b.u16("event")?;
            let reason = b.u16("reason")?;
            let priority = b.u16("priority")?;
            let idle_timeout = b.u16("idle_timeout")?;
            let hard_timeout = b.u16("hard_timeout")?;
            let _match_len = b.u16("match_len")?;
            let table_id = b.u8("table_id")?;
            b.skip(1, "pad")?;
            let cookie = b.u64("cookie")?;
            let match_ = Match::decode(&mut b)?;
            let instructions = decode_instructions(b.take_rest())?;
            out.push(FlowUpdate {
                event,
                reason,
                priority,
                idle_timeout,
                hard_timeout,
                table_id,
                cookie,
                match_,
                instructions,
            });
        }
        Ok(out)
    }
}

/// The monitors of a multipart request, if it is a flow-monitor request.
pub fn monitor_request(req: &MultipartRequest) -> Option<Result<Vec<MonitorRequest>, OfError>> {
    match req {
        MultipartRequest::Experimenter {
            experimenter: ONF_EXPERIMENTER,
            exp_type: ONFST_FLOW_MONITOR,
            body,
        } => Some(MonitorRequest::decode_list(body)),
        _ => None,
    }
}

/// Flow-monitor replies carrying `updates`, split so that no message exceeds `max_body`
/// bytes of updates (an OpenFlow message is at most 64 KiB).
pub fn monitor_replies(updates: &[FlowUpdate], max_body: usize) -> Vec<MultipartReply> {
    let mut replies = Vec::new();
    let mut body = Vec::new();
    for u in updates {
        let before = body.len();
        u.encode(&mut body);
        if body.len() > max_body && before > 0 {
            let tail = body.split_off(before);
            replies.push(reply(std::mem::replace(&mut body, tail)));
        }
    }
    replies.push(reply(body));
    replies
}

fn reply(body: Vec<u8>) -> MultipartReply {
    MultipartReply::Experimenter {
        experimenter: ONF_EXPERIMENTER,
        exp_type: ONFST_FLOW_MONITOR,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bodies (after the 24-byte multipart and experimenter headers) recorded from
    /// `ovs-ofctl -O OpenFlow13 monitor br0 65534 watch:` against Open vSwitch 3.1.
    const REQUEST: &str = "00000000003f0004ffffffffff0000000001000400000000";
    const INITIAL: &str = "004000000000000a00000000000c000000000000000000000001000c800000040000000100000000000400180000000000000010000000020000000000000000004000000000000a00000000000c000000000000000000000001000c8000000400000002000000000004001800000000000000100000000100000000000000000048000000000005000000000016000000000000000000000001001680000a020800800019080a000000ffffff0000000004001800000000ffff001000002320000efff8010000000020000000000001000000000004010000000000000000000001000400000000";
    const DELETED: &str = "004800010002012c0000000000170000000000000000000000010017800000040000000180000a020800800014011100000400180000000000000010fffffffdffff000000000000";

    #[test]
    fn recorded_request_decodes_and_re_encodes() {
        let body = hex(REQUEST);
        let reqs = MonitorRequest::decode_list(&body).unwrap();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(
            (r.id, r.flags, r.out_port, r.table_id),
            (0, 0x3f, u32::MAX, 0xff)
        );
        assert!(r.match_.fields.is_empty());
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(out, body);
    }

    #[test]
    fn recorded_updates_decode_and_re_encode_byte_for_byte() {
        for (text, n, ev) in [(INITIAL, 4, event::ADDED), (DELETED, 1, event::DELETED)] {
            let body = hex(text);
            let ups = FlowUpdate::decode_list(&body).unwrap();
            assert_eq!(ups.len(), n);
            assert!(ups.iter().all(|u| u.event == ev));
            let mut out = Vec::new();
            for u in &ups {
                u.encode(&mut out);
            }
            assert_eq!(out, body);
        }
        let del = &FlowUpdate::decode_list(&hex(DELETED)).unwrap()[0];
        assert_eq!((del.reason, del.priority, del.table_id), (2, 300, 0));
    }

    #[test]
    fn long_dumps_are_split_into_messages() {
        let ups = FlowUpdate::decode_list(&hex(INITIAL)).unwrap();
        let many: Vec<FlowUpdate> = ups.iter().cycle().take(40).cloned().collect();
        let replies = monitor_replies(&many, 1000);
        assert!(replies.len() > 1);
        let mut back = Vec::new();
        for r in replies {
            let MultipartReply::Experimenter { body, .. } = r else {
                panic!("not an experimenter reply")
            };
            assert!(body.len() <= 1000);
            back.extend(FlowUpdate::decode_list(&body).unwrap());
        }
        assert_eq!(back, many);
    }

    #[test]
    fn truncated_requests_are_errors_not_panics() {
        let body = hex(REQUEST);
        for n in 1..body.len() {
            let _ = MonitorRequest::decode_list(&body[..n]);
        }
        let ups = hex(INITIAL);
        for n in 1..ups.len() {
            let _ = FlowUpdate::decode_list(&ups[..n]);
        }
    }
}
