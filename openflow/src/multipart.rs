//! MULTIPART request/reply bodies (OpenFlow 1.3 §7.3.5).

use super::buf::{FixedStr, Put, Reader};
use super::error::{ErrorCode, OfError, err};
use super::group::{GroupDesc, GroupFeatures, GroupStats};
use super::instruction::{Instruction, decode_instructions, encode_instructions};
use super::meter::{MeterConfig, MeterFeatures, MeterStats};
use super::oxm::Match;
use super::switch::Port;

/// `ofp_multipart_type` values.
pub mod mp_type {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT_STATS: u16 = 4;
    pub const QUEUE: u16 = 5;
    pub const GROUP: u16 = 6;
    pub const GROUP_DESC: u16 = 7;
    pub const GROUP_FEATURES: u16 = 8;
    pub const METER: u16 = 9;
    pub const METER_CONFIG: u16 = 10;
    pub const METER_FEATURES: u16 = 11;
    pub const TABLE_FEATURES: u16 = 12;
    pub const PORT_DESC: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`.
pub const MORE: u16 = 1;

/// Body of a flow or aggregate stats request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStatsRequest {
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub match_: Match,
}

impl Default for FlowStatsRequest {
    fn default() -> Self {
        FlowStatsRequest {
            table_id: super::flow::TABLE_ALL,
            out_port: super::action::port::ANY,
            out_group: super::flow::GROUP_ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::any(),
        }
    }
}

impl FlowStatsRequest {
    fn decode(r: &mut Reader<'_>) -> Result<FlowStatsRequest, OfError> {
        let table_id = r.u8("table_id")?;
        r.skip(3, "pad")?;
        let out_port = r.u32("out_port")?;
        let out_group = r.u32("out_group")?;
        r.skip(4, "pad")?;
        let cookie = r.u64("cookie")?;
        let cookie_mask = r.u64("cookie_mask")?;
        let match_ = Match::decode(r)?;
        Ok(FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie,
            cookie_mask,
            match_,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.table_id);
        out.put_zeros(3);
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_zeros(4);
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        self.match_.encode(out);
    }
}

/// A multipart request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultipartRequest {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    /// `port_no` = `OFPP_ANY` for all ports.
    PortStats {
        port_no: u32,
    },
    PortDesc,
    /// `group_id` = `OFPG_ALL` for all groups.
    Group {
        group_id: u32,
    },
    GroupDesc,
    GroupFeatures,
    /// `meter_id` = `OFPM13_ALL` for all meters.
    Meter {
        meter_id: u32,
    },
    /// `meter_id` = `OFPM13_ALL` for all meters.
    MeterConfig {
        meter_id: u32,
    },
    MeterFeatures,
    /// Empty = "tell me"; entries = "set" (refuse with TABLE_FEATURES_FAILED/EPERM).
    TableFeatures(Vec<TableFeatures>),
    /// Experimenter multipart (e.g. ONFST_FLOW_MONITOR), kept raw.
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        body: Vec<u8>,
    },
}

fn expect_empty(r: &Reader<'_>, what: &str) -> Result<(), OfError> {
    if !r.is_empty() {
        return err(
            ErrorCode::BadRequestBadLen,
            format!("{what} request carries {} unexpected bytes", r.remaining()),
        );
    }
    Ok(())
}

impl MultipartRequest {
    pub fn mp_type(&self) -> u16 {
        use mp_type as t;
        match self {
            MultipartRequest::Desc => t::DESC,
            MultipartRequest::Flow(_) => t::FLOW,
            MultipartRequest::Aggregate(_) => t::AGGREGATE,
            MultipartRequest::Table => t::TABLE,
            MultipartRequest::PortStats { .. } => t::PORT_STATS,
            MultipartRequest::PortDesc => t::PORT_DESC,
            MultipartRequest::Group { .. } => t::GROUP,
            MultipartRequest::GroupDesc => t::GROUP_DESC,
            MultipartRequest::GroupFeatures => t::GROUP_FEATURES,
            MultipartRequest::Meter { .. } => t::METER,
            MultipartRequest::MeterConfig { .. } => t::METER_CONFIG,
            MultipartRequest::MeterFeatures => t::METER_FEATURES,
            MultipartRequest::TableFeatures(_) => t::TABLE_FEATURES,
            MultipartRequest::Experimenter { .. } => t::EXPERIMENTER,
        }
    }

    /// Decodes the body after the multipart header.
    pub fn decode(ty: u16, r: &mut Reader<'_>) -> Result<MultipartRequest, OfError> {
        use mp_type as t;
        let req = match ty {
            t::DESC => MultipartRequest::Desc,
            t::FLOW => MultipartRequest::Flow(FlowStatsRequest::decode(r)?),
            t::AGGREGATE => MultipartRequest::Aggregate(FlowStatsRequest::decode(r)?),
            t::TABLE => MultipartRequest::Table,
            t::PORT_STATS => {
                let port_no = r.u32("port_no")?;
                r.skip(4, "pad")?;
                MultipartRequest::PortStats { port_no }
            }
            t::PORT_DESC => MultipartRequest::PortDesc,
            t::GROUP => {
                let group_id = r.u32("group_id")?;
                r.skip(4, "pad")?;
                MultipartRequest::Group { group_id }
            }
            t::GROUP_DESC => MultipartRequest::GroupDesc,
            t::GROUP_FEATURES => MultipartRequest::GroupFeatures,
            t::METER | t::METER_CONFIG => {
                let meter_id = r.u32("meter_id")?;
                r.skip(4, "pad")?;
                if ty == t::METER {
                    MultipartRequest::Meter { meter_id }
                } else {
                    MultipartRequest::MeterConfig { meter_id }
                }
            }
            t::METER_FEATURES => MultipartRequest::MeterFeatures,
            t::TABLE_FEATURES => {
                MultipartRequest::TableFeatures(TableFeatures::decode_list(r.take_rest())?)
            }
            t::EXPERIMENTER => MultipartRequest::Experimenter {
                experimenter: r.u32("experimenter")?,
                exp_type: r.u32("exp_type")?,
                body: r.take_rest().to_vec(),
            },
            _ => {
                return err(
                    ErrorCode::BadRequestBadMultipart,
                    format!("multipart type {ty} is not supported"),
                );
            }
        };
        expect_empty(r, "multipart")?;
        Ok(req)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MultipartRequest::Desc
            | MultipartRequest::Table
            | MultipartRequest::PortDesc
            | MultipartRequest::GroupDesc
            | MultipartRequest::GroupFeatures
            | MultipartRequest::MeterFeatures => {}
            MultipartRequest::Meter { meter_id } | MultipartRequest::MeterConfig { meter_id } => {
                out.put_u32(*meter_id);
                out.put_zeros(4);
            }
            MultipartRequest::Flow(f) | MultipartRequest::Aggregate(f) => f.encode(out),
            MultipartRequest::PortStats { port_no } => {
                out.put_u32(*port_no);
                out.put_zeros(4);
            }
            MultipartRequest::Group { group_id } => {
                out.put_u32(*group_id);
                out.put_zeros(4);
            }
            MultipartRequest::TableFeatures(list) => {
                for t in list {
                    t.encode(out);
                }
            }
            MultipartRequest::Experimenter {
                experimenter,
                exp_type,
                body,
            } => {
                out.put_u32(*experimenter);
                out.put_u32(*exp_type);
                out.extend_from_slice(body);
            }
        }
    }
}

/// `ofp_desc`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    pub mfr_desc: FixedStr<256>,
    pub hw_desc: FixedStr<256>,
    pub sw_desc: FixedStr<256>,
    pub serial_num: FixedStr<32>,
    pub dp_desc: FixedStr<256>,
}

/// One `ofp_flow_stats` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowStats {
    fn decode_list(bytes: &[u8]) -> Result<Vec<FlowStats>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("flow_stats length")?);
            if len < 56 || len > r.remaining() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("flow_stats length {len}"),
                );
            }
            let mut b = Reader::new(r.bytes(len, "flow_stats")?, ErrorCode::BadRequestBadLen);
            b.skip(2, "length")?;
            let table_id = b.u8("table_id")?;
            b.skip(1, "pad")?;
            let mut f = FlowStats {
                table_id,
                duration_sec: b.u32("duration_sec")?,
                duration_nsec: b.u32("duration_nsec")?,
                priority: b.u16("priority")?,
                idle_timeout: b.u16("idle_timeout")?,
                hard_timeout: b.u16("hard_timeout")?,
                flags: b.u16("flags")?,
                ..FlowStats::default()
            };
            b.skip(4, "pad")?;
            f.cookie = b.u64("cookie")?;
            f.packet_count = b.u64("packet_count")?;
            f.byte_count = b.u64("byte_count")?;
            f.match_ = Match::decode(&mut b)?;
            f.instructions = decode_instructions(b.take_rest())?;
            out.push(f);
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(0);
        out.put_u8(self.table_id);
        out.put_zeros(1);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        out.put_u16(self.priority);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.flags);
        out.put_zeros(4);
        out.put_u64(self.cookie);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        self.match_.encode(out);
        encode_instructions(&self.instructions, out);
        let len = (out.len() - start) as u16;
        out.patch_u16(start, len);
    }
}

/// `ofp_aggregate_stats_reply`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

/// `ofp_table_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// `ofp_port_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub port_no: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

impl PortStats {
    pub const LEN: usize = 112;
    /// "Not available" value for counters a port does not keep.
    pub const UNAVAILABLE: u64 = u64::MAX;

    fn decode(r: &mut Reader<'_>) -> Result<PortStats, OfError> {
        let port_no = r.u32("port_no")?;
        r.skip(4, "pad")?;
        let mut c = [0u64; 12];
        for v in &mut c {
            *v = r.u64("port counter")?;
        }
        Ok(PortStats {
            port_no,
            rx_packets: c[0],
            tx_packets: c[1],
            rx_bytes: c[2],
            tx_bytes: c[3],
            rx_dropped: c[4],
            tx_dropped: c[5],
            rx_errors: c[6],
            tx_errors: c[7],
            rx_frame_err: c[8],
            rx_over_err: c[9],
            rx_crc_err: c[10],
            collisions: c[11],
            duration_sec: r.u32("duration_sec")?,
            duration_nsec: r.u32("duration_nsec")?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        for v in [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ] {
            out.put_u64(v);
        }
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
    }
}

/// `ofp_table_features` with its properties kept raw (they are only ever relayed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableFeatures {
    pub table_id: u8,
    pub name: FixedStr<32>,
    pub metadata_match: u64,
    pub metadata_write: u64,
    pub config: u32,
    pub max_entries: u32,
    /// Encoded `ofp_table_feature_prop_*` list.
    pub properties: Vec<u8>,
}

/// Table-feature property types every entry must carry (OpenFlow 1.3 §7.3.5.5.2).
pub const REQUIRED_TABLE_FEATURE_PROPS: [u16; 8] = [0, 2, 4, 6, 8, 10, 12, 14];

impl TableFeatures {
    /// The smallest entry ovs-ofctl accepts: the eight required properties, all empty
    /// (128 bytes on the wire).
    pub fn minimal(table_id: u8, name: &str, max_entries: u32) -> TableFeatures {
        let mut properties = Vec::new();
        for ty in REQUIRED_TABLE_FEATURE_PROPS {
            super::action::put_prop(&mut properties, ty, &[]);
        }
        TableFeatures {
            table_id,
            name: FixedStr::new(name),
            metadata_match: u64::MAX,
            metadata_write: u64::MAX,
            config: 0,
            max_entries,
            properties,
        }
    }

    fn decode_list(bytes: &[u8]) -> Result<Vec<TableFeatures>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::TableFeaturesBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("table_features length")?);
            if len < 64 || len > r.remaining() {
                return err(
                    ErrorCode::TableFeaturesBadLen,
                    format!("table_features length {len}"),
                );
            }
            let mut b = Reader::new(
                r.bytes(len, "table_features")?,
                ErrorCode::TableFeaturesBadLen,
            );
            b.skip(2, "length")?;
            let table_id = b.u8("table_id")?;
            b.skip(5, "pad")?;
            out.push(TableFeatures {
                table_id,
                name: FixedStr(b.array("name")?),
                metadata_match: b.u64("metadata_match")?,
                metadata_write: b.u64("metadata_write")?,
                config: b.u32("config")?,
                max_entries: b.u32("max_entries")?,
                properties: b.take_rest().to_vec(),
            });
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16((64 + self.properties.len()) as u16);
        out.put_u8(self.table_id);
        out.put_zeros(5);
        out.extend_from_slice(&self.name.0);
        out.put_u64(self.metadata_match);
        out.put_u64(self.metadata_write);
        out.put_u32(self.config);
        out.put_u32(self.max_entries);
        out.extend_from_slice(&self.properties);
    }
}

/// A multipart reply body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultipartReply {
    Desc(Box<Desc>),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    PortDesc(Vec<Port>),
    Group(Vec<GroupStats>),
    GroupDesc(Vec<GroupDesc>),
    GroupFeatures(GroupFeatures),
    Meter(Vec<MeterStats>),
    MeterConfig(Vec<MeterConfig>),
    MeterFeatures(MeterFeatures),
    TableFeatures(Vec<TableFeatures>),
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        body: Vec<u8>,
    },
}

fn fixed_records<T>(
    r: &mut Reader<'_>,
    size: usize,
    what: &str,
    mut f: impl FnMut(&mut Reader<'_>) -> Result<T, OfError>,
) -> Result<Vec<T>, OfError> {
    if !r.remaining().is_multiple_of(size) {
        return err(
            ErrorCode::BadRequestBadLen,
            format!("{what} body is not a multiple of {size} bytes"),
        );
    }
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(f(r)?);
    }
    Ok(out)
}

impl MultipartReply {
    pub fn mp_type(&self) -> u16 {
        use mp_type as t;
        match self {
            MultipartReply::Desc(_) => t::DESC,
            MultipartReply::Flow(_) => t::FLOW,
            MultipartReply::Aggregate(_) => t::AGGREGATE,
            MultipartReply::Table(_) => t::TABLE,
            MultipartReply::PortStats(_) => t::PORT_STATS,
            MultipartReply::PortDesc(_) => t::PORT_DESC,
            MultipartReply::Group(_) => t::GROUP,
            MultipartReply::GroupDesc(_) => t::GROUP_DESC,
            MultipartReply::GroupFeatures(_) => t::GROUP_FEATURES,
            MultipartReply::Meter(_) => t::METER,
            MultipartReply::MeterConfig(_) => t::METER_CONFIG,
            MultipartReply::MeterFeatures(_) => t::METER_FEATURES,
            MultipartReply::TableFeatures(_) => t::TABLE_FEATURES,
            MultipartReply::Experimenter { .. } => t::EXPERIMENTER,
        }
    }

    pub fn decode(ty: u16, r: &mut Reader<'_>) -> Result<MultipartReply, OfError> {
        use mp_type as t;
        let rep = match ty {
            t::DESC => MultipartReply::Desc(Box::new(Desc {
                mfr_desc: FixedStr(r.array("mfr_desc")?),
                hw_desc: FixedStr(r.array("hw_desc")?),
                sw_desc: FixedStr(r.array("sw_desc")?),
                serial_num: FixedStr(r.array("serial_num")?),
                dp_desc: FixedStr(r.array("dp_desc")?),
            })),
            t::FLOW => MultipartReply::Flow(FlowStats::decode_list(r.take_rest())?),
            t::AGGREGATE => {
                let a = AggregateStats {
                    packet_count: r.u64("packet_count")?,
                    byte_count: r.u64("byte_count")?,
                    flow_count: r.u32("flow_count")?,
                };
                r.skip(4, "pad")?;
                MultipartReply::Aggregate(a)
            }
            t::TABLE => MultipartReply::Table(fixed_records(r, 24, "table stats", |r| {
                let table_id = r.u8("table_id")?;
                r.skip(3, "pad")?;
                Ok(TableStats {
                    table_id,
                    active_count: r.u32("active_count")?,
                    lookup_count: r.u64("lookup_count")?,
                    matched_count: r.u64("matched_count")?,
                })
            })?),
            t::PORT_STATS => MultipartReply::PortStats(fixed_records(
                r,
                PortStats::LEN,
                "port stats",
                PortStats::decode,
            )?),
            t::PORT_DESC => {
                MultipartReply::PortDesc(fixed_records(r, Port::LEN, "port desc", Port::decode)?)
            }
            t::GROUP => MultipartReply::Group(GroupStats::decode_list(r.take_rest())?),
            t::GROUP_DESC => MultipartReply::GroupDesc(GroupDesc::decode_list(r.take_rest())?),
            t::GROUP_FEATURES => MultipartReply::GroupFeatures(GroupFeatures::decode(r)?),
            t::METER => MultipartReply::Meter(MeterStats::decode_list(r.take_rest())?),
            t::METER_CONFIG => {
                MultipartReply::MeterConfig(MeterConfig::decode_list(r.take_rest())?)
            }
            t::METER_FEATURES => MultipartReply::MeterFeatures(MeterFeatures::decode(r)?),
            t::TABLE_FEATURES => {
                MultipartReply::TableFeatures(TableFeatures::decode_list(r.take_rest())?)
            }
            t::EXPERIMENTER => MultipartReply::Experimenter {
                experimenter: r.u32("experimenter")?,
                exp_type: r.u32("exp_type")?,
                body: r.take_rest().to_vec(),
            },
            _ => {
                return err(
                    ErrorCode::BadRequestBadMultipart,
                    format!("multipart type {ty} is not supported"),
                );
            }
        };
        expect_empty(r, "multipart reply")?;
        Ok(rep)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MultipartReply::Desc(d) => {
                out.extend_from_slice(&d.mfr_desc.0);
                out.extend_from_slice(&d.hw_desc.0);
                out.extend_from_slice(&d.sw_desc.0);
                out.extend_from_slice(&d.serial_num.0);
                out.extend_from_slice(&d.dp_desc.0);
            }
            MultipartReply::Flow(list) => list.iter().for_each(|f| f.encode(out)),
            MultipartReply::Aggregate(a) => {
                out.put_u64(a.packet_count);
                out.put_u64(a.byte_count);
                out.put_u32(a.flow_count);
                out.put_zeros(4);
            }
            MultipartReply::Table(list) => {
                for t in list {
                    out.put_u8(t.table_id);
                    out.put_zeros(3);
                    out.put_u32(t.active_count);
                    out.put_u64(t.lookup_count);
                    out.put_u64(t.matched_count);
                }
            }
            MultipartReply::PortStats(list) => list.iter().for_each(|p| p.encode(out)),
            MultipartReply::PortDesc(list) => list.iter().for_each(|p| p.encode(out)),
            MultipartReply::Group(list) => list.iter().for_each(|g| g.encode(out)),
            MultipartReply::GroupDesc(list) => list.iter().for_each(|g| g.encode(out)),
            MultipartReply::GroupFeatures(g) => g.encode(out),
            MultipartReply::Meter(list) => list.iter().for_each(|m| m.encode(out)),
            MultipartReply::MeterConfig(list) => list.iter().for_each(|m| m.encode(out)),
            MultipartReply::MeterFeatures(f) => f.encode(out),
            MultipartReply::TableFeatures(list) => list.iter().for_each(|t| t.encode(out)),
            MultipartReply::Experimenter {
                experimenter,
                exp_type,
                body,
            } => {
                out.put_u32(*experimenter);
                out.put_u32(*exp_type);
                out.extend_from_slice(body);
            }
        }
    }
}
