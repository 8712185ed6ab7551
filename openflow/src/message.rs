//! The [`Message`] enum and the top-level [`decode`] / [`encode`] entry points.

use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err, ty};
use super::experimenter::{
    BundleControl, NX_EXPERIMENTER_ID, ONF_EXPERIMENTER_ID, ONFT_BUNDLE_ADD_MESSAGE,
    ONFT_BUNDLE_CONTROL, PacketIn2, nxt,
};
use super::flow::{FlowMod, FlowRemoved, PacketIn, PacketOut};
use super::group::GroupMod;
use super::header::{HEADER_LEN, Header, MAX_MSG_LEN, OFP13_VERSION, msg_type as t};
use super::hello::Hello;
use super::meter::MeterMod;
use super::multipart::{MultipartReply, MultipartRequest};
use super::switch::{FeaturesReply, PortMod, PortStatus, SwitchConfig};

/// An OFPT_ERROR body. For `OFPET_EXPERIMENTER` errors `code` is the experimenter's type and
/// `experimenter` its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMsg {
    pub err_type: u16,
    pub code: u16,
    pub experimenter: Option<u32>,
    /// Start of the offending request.
    pub data: Vec<u8>,
}

/// ONFT_BUNDLE_ADD_MESSAGE body: one message to stage in a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleAdd {
    pub bundle_id: u32,
    pub flags: u16,
    /// The inner message's own xid (ovs-ofctl reuses the outer one).
    pub inner_xid: u32,
    pub inner: Box<Message>,
}

/// Every OpenFlow 1.3 message this codec understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    FeaturesRequest,
    FeaturesReply(FeaturesReply),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    PortMod(PortMod),
    MeterMod(MeterMod),
    MultipartRequest {
        flags: u16,
        body: MultipartRequest,
    },
    MultipartReply {
        flags: u16,
        body: MultipartReply,
    },
    BarrierRequest,
    BarrierReply,
    /// ONFT_BUNDLE_CONTROL (request or reply).
    BundleControl(BundleControl),
    BundleAdd(BundleAdd),
    /// NXT_SET_PACKET_IN_FORMAT: 0 standard, 1 NXT_PACKET_IN, 2 NXT_PACKET_IN2.
    NxSetPacketInFormat(u32),
    /// NXT_SET_CONTROLLER_ID: the connection's controller id (packet-ins of
    /// `controller(id=N)` go to connections with id N).
    NxSetControllerId(u16),
    /// NXT_SET_FLOW_FORMAT (OpenFlow 1.0 sessions only).
    NxSetFlowFormat(u32),
    /// NXT_FLOW_MOD_TABLE_ID (OpenFlow 1.0 sessions only).
    NxFlowModTableId(bool),
    NxPacketIn2(PacketIn2),
    /// Any other experimenter message, raw. A switch answers it with
    /// [`Message::unsupported_experimenter`].
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
}

impl Message {
    /// The `ofp_type` this message is sent as.
    pub fn msg_type(&self) -> u8 {
        match self {
            Message::Hello(_) => t::HELLO,
            Message::Error(_) => t::ERROR,
            Message::EchoRequest(_) => t::ECHO_REQUEST,
            Message::EchoReply(_) => t::ECHO_REPLY,
            Message::FeaturesRequest => t::FEATURES_REQUEST,
            Message::FeaturesReply(_) => t::FEATURES_REPLY,
            Message::GetConfigRequest => t::GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => t::GET_CONFIG_REPLY,
            Message::SetConfig(_) => t::SET_CONFIG,
            Message::PacketIn(_) => t::PACKET_IN,
            Message::FlowRemoved(_) => t::FLOW_REMOVED,
            Message::PortStatus(_) => t::PORT_STATUS,
            Message::PacketOut(_) => t::PACKET_OUT,
            Message::FlowMod(_) => t::FLOW_MOD,
            Message::GroupMod(_) => t::GROUP_MOD,
            Message::PortMod(_) => t::PORT_MOD,
            Message::MeterMod(_) => t::METER_MOD,
            Message::MultipartRequest { .. } => t::MULTIPART_REQUEST,
            Message::MultipartReply { .. } => t::MULTIPART_REPLY,
            Message::BarrierRequest => t::BARRIER_REQUEST,
            Message::BarrierReply => t::BARRIER_REPLY,
            Message::BundleControl(_)
            | Message::BundleAdd(_)
            | Message::NxSetPacketInFormat(_)
            | Message::NxSetControllerId(_)
            | Message::NxSetFlowFormat(_)
            | Message::NxFlowModTableId(_)
            | Message::NxPacketIn2(_)
            | Message::Experimenter { .. } => t::EXPERIMENTER,
        }
    }

    /// The error a switch sends for an experimenter message it does not implement.
    pub fn unsupported_experimenter(experimenter: u32, exp_type: u32) -> OfError {
        if experimenter == NX_EXPERIMENTER_ID || experimenter == ONF_EXPERIMENTER_ID {
            OfError::new(
                ErrorCode::BadRequestBadExpType,
                format!(
                    "experimenter {experimenter:#010x} message type {exp_type} is not supported"
                ),
            )
        } else {
            OfError::new(
                ErrorCode::BadRequestBadExperimenter,
                format!("experimenter {experimenter:#010x}"),
            )
        }
    }
}

/// Decodes one whole message (as returned by the [`super::Framer`]).
///
/// HELLO is accepted in any version (negotiation happens on its body); every other message
/// must be OpenFlow 1.3, else `OFPBRC_BAD_VERSION`.
pub fn decode(buf: &[u8]) -> Result<(Header, Message), OfError> {
    let h = Header::parse(buf)?;
    if usize::from(h.length) != buf.len() {
        return err(
            ErrorCode::BadRequestBadLen,
            format!(
                "header says {} bytes but the message has {}",
                h.length,
                buf.len()
            ),
        );
    }
    if h.msg_type != t::HELLO && h.version != OFP13_VERSION {
        return err(
            ErrorCode::BadRequestBadVersion,
            format!(
                "message version {:#04x}, only OpenFlow 1.3 (0x04) is spoken",
                h.version
            ),
        );
    }
    let mut r = Reader::new(&buf[HEADER_LEN..], ErrorCode::BadRequestBadLen);
    let msg = decode_body(h.msg_type, &mut r)?;
    if !r.is_empty() {
        return err(
            ErrorCode::BadRequestBadLen,
            format!(
                "{} trailing bytes after a type {} message",
                r.remaining(),
                h.msg_type
            ),
        );
    }
    Ok((h, msg))
}

fn decode_body(msg_type: u8, r: &mut Reader<'_>) -> Result<Message, OfError> {
    Ok(match msg_type {
        t::HELLO => Message::Hello(Hello::decode(r.take_rest())?),
        t::ERROR => {
            let err_type = r.u16("error type")?;
            let code = r.u16("error code")?;
            let experimenter = if err_type == ty::EXPERIMENTER {
                Some(r.u32("error experimenter")?)
            } else {
                None
            };
            Message::Error(ErrorMsg {
                err_type,
                code,
                experimenter,
                data: r.take_rest().to_vec(),
            })
        }
        t::ECHO_REQUEST => Message::EchoRequest(r.take_rest().to_vec()),
        t::ECHO_REPLY => Message::EchoReply(r.take_rest().to_vec()),
        t::EXPERIMENTER => decode_experimenter(r)?,
        t::FEATURES_REQUEST => Message::FeaturesRequest,
        t::FEATURES_REPLY => Message::FeaturesReply(FeaturesReply::decode(r)?),
        t::GET_CONFIG_REQUEST => Message::GetConfigRequest,
        t::GET_CONFIG_REPLY => Message::GetConfigReply(SwitchConfig::decode(r)?),
        t::SET_CONFIG => Message::SetConfig(SwitchConfig::decode(r)?),
        t::PACKET_IN => Message::PacketIn(PacketIn::decode(r)?),
        t::FLOW_REMOVED => Message::FlowRemoved(FlowRemoved::decode(r)?),
        t::PORT_STATUS => Message::PortStatus(PortStatus::decode(r)?),
        t::PACKET_OUT => Message::PacketOut(PacketOut::decode(r)?),
        t::FLOW_MOD => Message::FlowMod(FlowMod::decode(r)?),
        t::GROUP_MOD => Message::GroupMod(GroupMod::decode(r)?),
        t::PORT_MOD => Message::PortMod(PortMod::decode(r)?),
        t::METER_MOD => Message::MeterMod(MeterMod::decode(r)?),
        t::MULTIPART_REQUEST | t::MULTIPART_REPLY => {
            let mp = r.u16("multipart type")?;
            let flags = r.u16("multipart flags")?;
            r.skip(4, "multipart pad")?;
            if msg_type == t::MULTIPART_REQUEST {
                Message::MultipartRequest {
                    flags,
                    body: MultipartRequest::decode(mp, r)?,
                }
            } else {
                Message::MultipartReply {
                    flags,
                    body: MultipartReply::decode(mp, r)?,
                }
            }
        }
        t::BARRIER_REQUEST => Message::BarrierRequest,
        t::BARRIER_REPLY => Message::BarrierReply,
        other => {
            return err(
                ErrorCode::BadRequestBadType,
                format!("message type {other} is not supported"),
            );
        }
    })
}

fn decode_experimenter(r: &mut Reader<'_>) -> Result<Message, OfError> {
    let experimenter = r.u32("experimenter")?;
    let exp_type = r.u32("exp_type")?;
    Ok(match (experimenter, exp_type) {
        (ONF_EXPERIMENTER_ID, ONFT_BUNDLE_CONTROL) => {
            Message::BundleControl(BundleControl::decode(r)?)
        }
        (ONF_EXPERIMENTER_ID, ONFT_BUNDLE_ADD_MESSAGE) => {
            let bundle_id = r.u32("bundle_id")?;
            r.skip(2, "pad")?;
            let flags = r.u16("bundle flags")?;
            let rest = r.take_rest();
            let inner_h = Header::parse(rest)?;
            let inner_len = usize::from(inner_h.length);
            // ONF properties may follow the inner message (padded to 8); ovs-ofctl sends none.
            if inner_len > rest.len() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    "bundled message is longer than its container",
                );
            }
            if inner_len.next_multiple_of(8).min(rest.len()) != rest.len() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    "bytes after the bundled message",
                );
            }
            if matches!(inner_h.msg_type, t::HELLO | t::EXPERIMENTER) {
                // Bundling a HELLO or a nested bundle makes no sense.
                return err(
                    ErrorCode::BadRequestBadType,
                    "message type cannot be bundled",
                );
            }
            let (_, inner) = decode(&rest[..inner_len])?;
            Message::BundleAdd(BundleAdd {
                bundle_id,
                flags,
                inner_xid: inner_h.xid,
                inner: Box::new(inner),
            })
        }
        (NX_EXPERIMENTER_ID, nxt::SET_PACKET_IN_FORMAT) => {
            Message::NxSetPacketInFormat(r.u32("packet_in format")?)
        }
        (NX_EXPERIMENTER_ID, nxt::SET_CONTROLLER_ID) => {
            let mut zero = [0u8; 6];
            for b in &mut zero {
                *b = r.u8("nx_controller_id zero")?;
            }
            if zero != [0; 6] {
                return err(
                    ErrorCode::NxBadRequestMustBeZero,
                    "NXT_SET_CONTROLLER_ID: the 6 bytes before the id must be zero",
                );
            }
            Message::NxSetControllerId(r.u16("controller_id")?)
        }
        (NX_EXPERIMENTER_ID, nxt::SET_FLOW_FORMAT) => {
            Message::NxSetFlowFormat(r.u32("flow format")?)
        }
        (NX_EXPERIMENTER_ID, nxt::FLOW_MOD_TABLE_ID) => {
            let set = r.u8("flow_mod_table_id")?;
            r.skip(7, "pad")?;
            Message::NxFlowModTableId(set != 0)
        }
        (NX_EXPERIMENTER_ID, nxt::PACKET_IN2) => Message::NxPacketIn2(PacketIn2::decode(r)?),
        _ => Message::Experimenter {
            experimenter,
            exp_type,
            data: r.take_rest().to_vec(),
        },
    })
}

/// Encodes `msg` with `xid` as an OpenFlow 1.3 message.
///
/// Fails only when the result would exceed the 65535-byte length field (split multipart
/// replies with [`super::split_multipart_reply`]).
pub fn encode(msg: &Message, xid: u32) -> Result<Vec<u8>, OfError> {
    let mut out = Vec::with_capacity(64);
    encode_into(msg, xid, &mut out)?;
    Ok(out)
}

/// Appends the encoded message to `out` (which may already hold other messages).
pub fn encode_into(msg: &Message, xid: u32, out: &mut Vec<u8>) -> Result<(), OfError> {
    let start = out.len();
    Header {
        version: OFP13_VERSION,
        msg_type: msg.msg_type(),
        length: 0,
        xid,
    }
    .write(out);
    encode_body(msg, out);
    let len = out.len() - start;
    if len > MAX_MSG_LEN {
        out.truncate(start);
        return err(
            ErrorCode::BadRequestMultipartBufferOverflow,
            format!("encoded message is {len} bytes, above the 65535-byte limit"),
        );
    }
    out.patch_u16(start + 2, len as u16);
    Ok(())
}

fn experimenter_header(out: &mut Vec<u8>, experimenter: u32, exp_type: u32) {
    out.put_u32(experimenter);
    out.put_u32(exp_type);
}

fn encode_body(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Hello(h) => h.encode(out),
        Message::Error(e) => {
            out.put_u16(e.err_type);
            out.put_u16(e.code);
            if e.err_type == ty::EXPERIMENTER {
                out.put_u32(e.experimenter.unwrap_or(0));
            }
            out.extend_from_slice(&e.data);
        }
        Message::EchoRequest(d) | Message::EchoReply(d) => out.extend_from_slice(d),
        Message::FeaturesRequest
        | Message::GetConfigRequest
        | Message::BarrierRequest
        | Message::BarrierReply => {}
        Message::FeaturesReply(f) => f.encode(out),
        Message::GetConfigReply(c) | Message::SetConfig(c) => c.encode(out),
        Message::PacketIn(p) => p.encode(out),
        Message::FlowRemoved(f) => f.encode(out),
        Message::PortStatus(p) => p.encode(out),
        Message::PacketOut(p) => p.encode(out),
        Message::FlowMod(f) => f.encode(out),
        Message::GroupMod(g) => g.encode(out),
        Message::PortMod(p) => p.encode(out),
        Message::MeterMod(m) => m.encode(out),
        Message::MultipartRequest { flags, body } => {
            out.put_u16(body.mp_type());
            out.put_u16(*flags);
            out.put_zeros(4);
            body.encode(out);
        }
        Message::MultipartReply { flags, body } => {
            out.put_u16(body.mp_type());
            out.put_u16(*flags);
            out.put_zeros(4);
            body.encode(out);
        }
        Message::BundleControl(b) => {
            experimenter_header(out, ONF_EXPERIMENTER_ID, ONFT_BUNDLE_CONTROL);
            b.encode(out);
        }
        Message::BundleAdd(b) => {
            experimenter_header(out, ONF_EXPERIMENTER_ID, ONFT_BUNDLE_ADD_MESSAGE);
            out.put_u32(b.bundle_id);
            out.put_zeros(2);
            out.put_u16(b.flags);
            let inner_start = out.len();
            Header {
                version: OFP13_VERSION,
                msg_type: b.inner.msg_type(),
                length: 0,
                xid: b.inner_xid,
            }
            .write(out);
            encode_body(&b.inner, out);
            let inner_len = (out.len() - inner_start).min(MAX_MSG_LEN) as u16;
            out.patch_u16(inner_start + 2, inner_len);
        }
        Message::NxSetPacketInFormat(f) => {
            experimenter_header(out, NX_EXPERIMENTER_ID, nxt::SET_PACKET_IN_FORMAT);
            out.put_u32(*f);
        }
        Message::NxSetControllerId(id) => {
            experimenter_header(out, NX_EXPERIMENTER_ID, nxt::SET_CONTROLLER_ID);
            out.put_zeros(6);
            out.put_u16(*id);
        }
        Message::NxSetFlowFormat(f) => {
            experimenter_header(out, NX_EXPERIMENTER_ID, nxt::SET_FLOW_FORMAT);
            out.put_u32(*f);
        }
        Message::NxFlowModTableId(set) => {
            experimenter_header(out, NX_EXPERIMENTER_ID, nxt::FLOW_MOD_TABLE_ID);
            out.put_u8(u8::from(*set));
            out.put_zeros(7);
        }
        Message::NxPacketIn2(p) => {
            experimenter_header(out, NX_EXPERIMENTER_ID, nxt::PACKET_IN2);
            p.encode(out);
        }
        Message::Experimenter {
            experimenter,
            exp_type,
            data,
        } => {
            experimenter_header(out, *experimenter, *exp_type);
            out.extend_from_slice(data);
        }
    }
}

/// Most of the offending request an OFPT_ERROR carries. The OpenFlow 1.3 minimum is 64
/// bytes; ovs-vswitchd echoes the whole request (recorded: an 80-byte FLOW_MOD comes back
/// whole), which lets ovs-ofctl print it, so we do the same up to this cap.
pub const ERROR_DATA_MAX: usize = MAX_MSG_LEN - 12;

/// Builds the OFPT_ERROR reply for `request` (raw bytes, at least partly a header): the
/// request's xid, `error`'s type/code, and the request as data.
pub fn error_reply(request: &[u8], error: &OfError) -> Vec<u8> {
    let xid = if request.len() >= HEADER_LEN {
        u32::from_be_bytes([request[4], request[5], request[6], request[7]])
    } else {
        0
    };
    let (err_type, code) = error.type_code();
    let data = request[..request.len().min(ERROR_DATA_MAX)].to_vec();
    let msg = Message::Error(ErrorMsg {
        err_type,
        code,
        // The only experimenter errors reported are Nicira's (NXBRC_*).
        experimenter: (err_type == ty::EXPERIMENTER).then_some(NX_EXPERIMENTER_ID),
        data,
    });
    // Cannot exceed the limit: data is capped above.
    encode(&msg, xid).unwrap_or_default()
}
