//! Experimenter messages: the ONF bundle extension and the Nicira messages ovs-ofctl sends
//! in OpenFlow 1.3 sessions (`NXT_SET_PACKET_IN_FORMAT`, `NXT_PACKET_IN2`, ...).

use super::action::{decode_props, put_prop};
use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};
use super::oxm::{OxmTlv, decode_oxm_list};

/// ONF experimenter id ("ONF\0").
pub const ONF_EXPERIMENTER_ID: u32 = 0x4f4e_4600;
/// Nicira experimenter id.
pub const NX_EXPERIMENTER_ID: u32 = 0x0000_2320;

/// ONF experimenter message types.
pub const ONFT_BUNDLE_CONTROL: u32 = 2300;
pub const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

/// Nicira message subtypes.
pub mod nxt {
    pub const SET_FLOW_FORMAT: u32 = 12;
    pub const FLOW_MOD_TABLE_ID: u32 = 15;
    pub const SET_PACKET_IN_FORMAT: u32 = 16;
    pub const SET_CONTROLLER_ID: u32 = 20;
    pub const PACKET_IN2: u32 = 30;
}

/// Bundle control types.
pub mod bundle_ctrl {
    pub const OPEN_REQUEST: u16 = 0;
    pub const OPEN_REPLY: u16 = 1;
    pub const CLOSE_REQUEST: u16 = 2;
    pub const CLOSE_REPLY: u16 = 3;
    pub const COMMIT_REQUEST: u16 = 4;
    pub const COMMIT_REPLY: u16 = 5;
    pub const DISCARD_REQUEST: u16 = 6;
    pub const DISCARD_REPLY: u16 = 7;
}

/// Bundle flags.
pub const BUNDLE_ATOMIC: u16 = 1;
pub const BUNDLE_ORDERED: u16 = 2;

/// ONF experimenter error types for bundles (sent as `OFPET_EXPERIMENTER` in 1.3).
pub mod bundle_err {
    pub const UNKNOWN: u16 = 2300;
    pub const EPERM: u16 = 2301;
    pub const BAD_ID: u16 = 2302;
    pub const BUNDLE_EXIST: u16 = 2303;
    pub const BUNDLE_CLOSED: u16 = 2304;
    pub const OUT_OF_BUNDLES: u16 = 2305;
    pub const BAD_TYPE: u16 = 2306;
    pub const BAD_FLAGS: u16 = 2307;
    pub const MSG_BAD_LEN: u16 = 2308;
    pub const MSG_BAD_XID: u16 = 2309;
    pub const MSG_UNSUP: u16 = 2310;
    pub const MSG_CONFLICT: u16 = 2311;
    pub const MSG_TOO_MANY: u16 = 2312;
    pub const MSG_FAILED: u16 = 2313;
    pub const TIMEOUT: u16 = 2314;
    pub const BUNDLE_IN_PROGRESS: u16 = 2315;
}

/// ONFT_BUNDLE_CONTROL body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleControl {
    pub bundle_id: u32,
    /// One of [`bundle_ctrl`].
    pub ctrl_type: u16,
    /// [`BUNDLE_ATOMIC`] | [`BUNDLE_ORDERED`].
    pub flags: u16,
    /// Encoded properties (none from ovs-ofctl), kept raw.
    pub properties: Vec<u8>,
}

impl BundleControl {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<BundleControl, OfError> {
        let bundle_id = r.u32("bundle_id")?;
        let ctrl_type = r.u16("bundle type")?;
        let flags = r.u16("bundle flags")?;
        Ok(BundleControl {
            bundle_id,
            ctrl_type,
            flags,
            properties: r.take_rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.bundle_id);
        out.put_u16(self.ctrl_type);
        out.put_u16(self.flags);
        out.extend_from_slice(&self.properties);
    }

    /// The reply a switch sends for this request (same id and flags, type + 1).
    pub fn reply(&self) -> BundleControl {
        BundleControl {
            bundle_id: self.bundle_id,
            ctrl_type: self.ctrl_type | 1,
            flags: self.flags,
            properties: Vec::new(),
        }
    }
}

/// NXT_PACKET_IN2 (the property-based packet-in ovs-ofctl monitor asks for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketIn2 {
    pub packet: Vec<u8>,
    pub full_len: Option<u32>,
    pub buffer_id: Option<u32>,
    pub table_id: u8,
    pub cookie: u64,
    pub reason: u8,
    /// Pipeline fields (in_port, registers, ...).
    pub metadata: Vec<OxmTlv>,
    pub userdata: Option<Vec<u8>>,
}

mod pin2 {
    pub const PACKET: u16 = 0;
    pub const FULL_LEN: u16 = 1;
    pub const BUFFER_ID: u16 = 2;
    pub const TABLE_ID: u16 = 3;
    pub const COOKIE: u16 = 4;
    pub const REASON: u16 = 5;
    pub const METADATA: u16 = 6;
    pub const USERDATA: u16 = 7;
}

/// Reads a fixed-width property written ovs-style (a u64 is preceded by 4 pad bytes).
fn prop_uint(val: &[u8], width: usize) -> Result<u64, OfError> {
    let v = if width == 8 && val.len() == 12 {
        &val[4..]
    } else {
        val
    };
    if v.len() < width {
        return err(
            ErrorCode::BadRequestBadLen,
            format!("property value of {} bytes, need {width}", v.len()),
        );
    }
    Ok(v[..width]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

impl PacketIn2 {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PacketIn2, OfError> {
        let mut p = PacketIn2::default();
        for (ty, val) in decode_props(r.take_rest(), ErrorCode::BadRequestBadLen)? {
            match ty {
                pin2::PACKET => p.packet = val.to_vec(),
                pin2::FULL_LEN => p.full_len = Some(prop_uint(val, 4)? as u32),
                pin2::BUFFER_ID => p.buffer_id = Some(prop_uint(val, 4)? as u32),
                pin2::TABLE_ID => p.table_id = prop_uint(val, 1)? as u8,
                pin2::COOKIE => p.cookie = prop_uint(val, 8)?,
                pin2::REASON => p.reason = prop_uint(val, 1)? as u8,
                pin2::METADATA => p.metadata = decode_oxm_list(val)?,
                pin2::USERDATA => p.userdata = Some(val.to_vec()),
                _ => {} // Continuation and future properties: ignored, as receivers must.
            }
        }
        Ok(p)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_prop(out, pin2::PACKET, &self.packet);
        if let Some(v) = self.full_len {
            put_prop(out, pin2::FULL_LEN, &v.to_be_bytes());
        }
        if let Some(v) = self.buffer_id {
            put_prop(out, pin2::BUFFER_ID, &v.to_be_bytes());
        }
        put_prop(out, pin2::TABLE_ID, &[self.table_id]);
        let mut cookie = vec![0u8; 4];
        cookie.extend_from_slice(&self.cookie.to_be_bytes());
        put_prop(out, pin2::COOKIE, &cookie);
        put_prop(out, pin2::REASON, &[self.reason]);
        let mut md = Vec::new();
        for t in &self.metadata {
            t.encode(&mut md);
        }
        put_prop(out, pin2::METADATA, &md);
        if let Some(u) = &self.userdata {
            put_prop(out, pin2::USERDATA, u);
        }
    }
}
