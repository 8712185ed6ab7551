//! OFPT_METER_MOD and the meter multipart bodies (stats, config, features).
//!
//! Decoding checks what Open vSwitch's `ofputil_decode_meter_mod` checks (command, both rate
//! units, band length and type); what a switch accepts beyond that (ids, rates, band types it
//! executes) is the meter table's business (`flowtable::table`), as in Open vSwitch.

use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};

/// `ofp_meter_mod_command`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeterModCommand {
    Add = 0,
    Modify = 1,
    Delete = 2,
}

/// `OFPMF13_KBPS`.
pub const KBPS: u16 = 1;
/// `OFPMF13_PKTPS`.
pub const PKTPS: u16 = 2;

/// `ofp_meter_band_type`: drop.
pub const BAND_DROP: u16 = 1;
/// `ofp_meter_band_type`: DSCP remark.
pub const BAND_DSCP_REMARK: u16 = 2;

/// Length of every band this codec knows (`ofp_meter_band_drop`, `..._dscp_remark`).
const BAND_LEN: usize = 16;

/// One `ofp_meter_band_*` (drop or dscp_remark: the same 16-byte layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MeterBand {
    pub band_type: u16,
    pub rate: u32,
    pub burst_size: u32,
    /// `dscp_remark` only (0 otherwise).
    pub prec_level: u8,
}

impl MeterBand {
    fn decode_list(bytes: &[u8]) -> Result<Vec<MeterBand>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while r.remaining() >= BAND_LEN {
            let mut b = Reader::new(
                r.bytes(BAND_LEN, "meter band")?,
                ErrorCode::BadRequestBadLen,
            );
            let band_type = b.u16("band type")?;
            let len = usize::from(b.u16("band length")?);
            if len != BAND_LEN {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("meter band length {len} (16 expected)"),
                );
            }
            if band_type != BAND_DROP && band_type != BAND_DSCP_REMARK {
                return err(
                    ErrorCode::MeterModBadBand,
                    format!("meter band type {band_type}"),
                );
            }
            let rate = b.u32("band rate")?;
            let burst_size = b.u32("band burst_size")?;
            let prec = b.u8("band prec_level")?;
            out.push(MeterBand {
                band_type,
                rate,
                burst_size,
                prec_level: if band_type == BAND_DSCP_REMARK {
                    prec
                } else {
                    0
                },
            });
        }
        if !r.is_empty() {
            return err(
                ErrorCode::BadRequestBadLen,
                format!("{} bytes after the meter bands", r.remaining()),
            );
        }
        Ok(out)
    }

    fn encode_list(bands: &[MeterBand], out: &mut Vec<u8>) {
        for b in bands {
            out.put_u16(b.band_type);
            out.put_u16(BAND_LEN as u16);
            out.put_u32(b.rate);
            out.put_u32(b.burst_size);
            out.put_u8(b.prec_level);
            out.put_zeros(3);
        }
    }
}

/// OFPT_METER_MOD body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterMod {
    pub command: MeterModCommand,
    /// `OFPMF13_*` (ignored, and sent as 0, for delete).
    pub flags: u16,
    pub meter_id: u32,
    /// Empty for delete (whatever follows a delete's header is ignored, as Open vSwitch does).
    pub bands: Vec<MeterBand>,
}

impl MeterMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<MeterMod, OfError> {
        let command = match r.u16("meter_mod command")? {
            0 => MeterModCommand::Add,
            1 => MeterModCommand::Modify,
            2 => MeterModCommand::Delete,
            c => {
                return err(
                    ErrorCode::MeterModBadCommand,
                    format!("meter_mod command {c}"),
                );
            }
        };
        let flags = r.u16("meter_mod flags")?;
        let meter_id = r.u32("meter_id")?;
        if command == MeterModCommand::Delete {
            r.take_rest();
            return Ok(MeterMod {
                command,
                flags: 0,
                meter_id,
                bands: Vec::new(),
            });
        }
        if flags & KBPS != 0 && flags & PKTPS != 0 {
            return err(
                ErrorCode::MeterModBadFlags,
                "a meter cannot count in both kbps and pktps",
            );
        }
        let bands = MeterBand::decode_list(r.take_rest())?;
        Ok(MeterMod {
            command,
            flags,
            meter_id,
            bands,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.command as u16);
        out.put_u16(if self.command == MeterModCommand::Delete {
            0
        } else {
            self.flags
        });
        out.put_u32(self.meter_id);
        MeterBand::encode_list(&self.bands, out);
    }
}

/// One `ofp_meter_config` entry (METER_CONFIG reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterConfig {
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterConfig {
    pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<MeterConfig>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("meter_config length")?);
            if len < 8 || len > r.remaining() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("meter_config length {len}"),
                );
            }
            let mut b = Reader::new(r.bytes(len, "meter_config")?, ErrorCode::BadRequestBadLen);
            b.skip(2, "length")?;
            let flags = b.u16("flags")?;
            let meter_id = b.u32("meter_id")?;
            let bands = MeterBand::decode_list(b.take_rest())?;
            out.push(MeterConfig {
                flags,
                meter_id,
                bands,
            });
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16((8 + BAND_LEN * self.bands.len()) as u16);
        out.put_u16(self.flags);
        out.put_u32(self.meter_id);
        MeterBand::encode_list(&self.bands, out);
    }
}

/// One `ofp_meter_stats` entry (METER reply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// `(packet_band_count, byte_band_count)` per band.
    pub bands: Vec<(u64, u64)>,
}

impl MeterStats {
    const LEN: usize = 40;

    pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<MeterStats>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let mut h = r.clone();
            h.skip(4, "meter_id")?;
            let len = usize::from(h.u16("meter_stats length")?);
            if len < Self::LEN || (len - Self::LEN) % 16 != 0 || len > r.remaining() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("meter_stats length {len}"),
                );
            }
            let mut b = Reader::new(r.bytes(len, "meter_stats")?, ErrorCode::BadRequestBadLen);
            let meter_id = b.u32("meter_id")?;
            b.skip(8, "len+pad")?;
            let mut m = MeterStats {
                meter_id,
                flow_count: b.u32("flow_count")?,
                packet_in_count: b.u64("packet_in_count")?,
                byte_in_count: b.u64("byte_in_count")?,
                duration_sec: b.u32("duration_sec")?,
                duration_nsec: b.u32("duration_nsec")?,
                bands: Vec::new(),
            };
            while !b.is_empty() {
                m.bands.push((b.u64("band packets")?, b.u64("band bytes")?));
            }
            out.push(m);
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.meter_id);
        out.put_u16((Self::LEN + 16 * self.bands.len()) as u16);
        out.put_zeros(6);
        out.put_u32(self.flow_count);
        out.put_u64(self.packet_in_count);
        out.put_u64(self.byte_in_count);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        for (p, b) in &self.bands {
            out.put_u64(*p);
            out.put_u64(*b);
        }
    }
}

/// `ofp_meter_features`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterFeatures {
    pub max_meter: u32,
    /// Bitmap of `1 << OFPMBT13_*`.
    pub band_types: u32,
    /// Bitmap of `OFPMF13_*`.
    pub capabilities: u32,
    pub max_bands: u8,
    pub max_color: u8,
}

impl MeterFeatures {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MeterFeatures, OfError> {
        let f = MeterFeatures {
            max_meter: r.u32("max_meter")?,
            band_types: r.u32("band_types")?,
            capabilities: r.u32("capabilities")?,
            max_bands: r.u8("max_bands")?,
            max_color: r.u8("max_color")?,
        };
        r.skip(2, "pad")?;
        Ok(f)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.max_meter);
        out.put_u32(self.band_types);
        out.put_u32(self.capabilities);
        out.put_u8(self.max_bands);
        out.put_u8(self.max_color);
        out.put_zeros(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn meter_mod_round_trips() {
        let mm = MeterMod {
            command: MeterModCommand::Add,
            flags: 0x0e,
            meter_id: 1,
            bands: vec![MeterBand {
                band_type: BAND_DROP,
                rate: 10,
                burst_size: 5,
                prec_level: 0,
            }],
        };
        let bytes = encode(&Message::MeterMod(mm.clone()), 2).unwrap();
        // header | command flags meter_id | type len rate burst prec pad: what ovs-ofctl sends
        // for `add-meter br0 meter=1,pktps,burst,stats,bands=type=drop,rate=10,burst_size=5`
        // (`ovs-ofctl ofp-print` reads these bytes back as that meter).
        assert_eq!(
            bytes,
            hex(concat!(
                "041d002000000002",
                "0000000e00000001",
                "000100100000000a0000000500000000"
            ))
        );
        assert_eq!(decode(&bytes).unwrap().1, Message::MeterMod(mm));
    }

    #[test]
    fn meter_mod_errors_like_ovs() {
        let code = |h: &str| decode(&hex(h)).unwrap_err().code;
        // kbps and pktps together: OFPMMFC_BAD_FLAGS (the bytes Open vSwitch 3.1 refused so).
        assert_eq!(
            code("041d0020000000020000000300000005000100100000000a0000000000000000"),
            ErrorCode::MeterModBadFlags
        );
        // Unknown band type (0xffff experimenter): OFPMMFC_BAD_BAND.
        assert_eq!(
            code("041d002000000002000000010000000100ff00100000000a0000000000000000"),
            ErrorCode::MeterModBadBand
        );
        // A band of length 24: OFPBRC_BAD_LEN.
        assert_eq!(
            code(
                "041d00280000000200000001000000010001001800000000a0000000000000000000000000000000"
            ),
            ErrorCode::BadRequestBadLen
        );
        // Command 3: OFPMMFC_BAD_COMMAND.
        assert_eq!(
            code("041d0010000000020003000100000001"),
            ErrorCode::MeterModBadCommand
        );
        // Half a band: OFPBRC_BAD_LEN.
        assert_eq!(
            code("041d0018000000020000000100000001000100100000000a"),
            ErrorCode::BadRequestBadLen
        );
        // A delete ignores what follows its header, as Open vSwitch does.
        let (_, m) = decode(&hex("041d001800000002000200030000000700ff0010ffffffff")).unwrap();
        assert_eq!(
            m,
            Message::MeterMod(MeterMod {
                command: MeterModCommand::Delete,
                flags: 0,
                meter_id: 7,
                bands: vec![],
            })
        );
    }

    #[test]
    fn stats_config_features_round_trip() {
        use crate::{MultipartReply, MultipartRequest};
        for body in [
            MultipartReply::Meter(vec![MeterStats {
                meter_id: 1,
                flow_count: 2,
                packet_in_count: 30,
                byte_in_count: 3000,
                duration_sec: 4,
                duration_nsec: 5,
                bands: vec![(6, 600), (7, 700)],
            }]),
            MultipartReply::MeterConfig(vec![MeterConfig {
                flags: 0x0e,
                meter_id: 1,
                bands: vec![MeterBand {
                    band_type: BAND_DROP,
                    rate: 10,
                    burst_size: 5,
                    prec_level: 0,
                }],
            }]),
            MultipartReply::MeterFeatures(MeterFeatures {
                max_meter: 262_144,
                band_types: 2,
                capabilities: 0xf,
                max_bands: 8,
                max_color: 0,
            }),
        ] {
            let msg = Message::MultipartReply { flags: 0, body };
            let bytes = encode(&msg, 9).unwrap();
            assert_eq!(decode(&bytes).unwrap().1, msg);
        }
        for body in [
            MultipartRequest::Meter { meter_id: 3 },
            MultipartRequest::MeterConfig {
                meter_id: 0xffff_ffff,
            },
            MultipartRequest::MeterFeatures,
        ] {
            let msg = Message::MultipartRequest { flags: 0, body };
            let bytes = encode(&msg, 9).unwrap();
            assert_eq!(decode(&bytes).unwrap().1, msg);
        }
    }
}
