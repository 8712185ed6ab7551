//! Multipart (statistics and description) replies from a bridge's control state.
//!
//! Replies larger than one 64 KiB message are split into several with `OFPMPF_REPLY_MORE`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use flowtable::{FlowEntry, OfPort};

use crate::bridge::{BridgeCtl, PortCtl};
use openflow::buf::FixedStr;
use openflow::convert;
use openflow::error::{ErrorCode, OfError};
use openflow::multipart::TableStats;
use openflow::switch::capabilities as cap;
use openflow::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, GroupFeatures, GroupStats, Message,
    MeterConfig, MeterFeatures, MeterStats, MultipartReply, MultipartRequest, Port, PortStats,
    TableFeatures,
};

/// FEATURES_REPLY capabilities.
pub const CAPABILITIES: u32 =
    cap::FLOW_STATS | cap::TABLE_STATS | cap::PORT_STATS | cap::GROUP_STATS;

/// Tables the switch has (ids 0..=253), as announced in FEATURES_REPLY.
const N_TABLES: u8 = 254;

/// Body bytes per reply message, leaving room for the 16-byte multipart header.
const CHUNK: usize = 60_000;

const OFPP_ANY: u32 = 0xffff_ffff;
const OFPG_ALL: u32 = 0xffff_fffc;

/// The reply messages' bodies for `req` (one or more, in order).
pub fn reply(b: &BridgeCtl, req: &MultipartRequest) -> Result<Vec<MultipartReply>, OfError> {
    Ok(match req {
        MultipartRequest::Desc => vec![MultipartReply::Desc(Box::new(Desc {
            mfr_desc: FixedStr::new("vswitch project"),
            hw_desc: FixedStr::new("userspace datapath"),
            sw_desc: FixedStr::new(env!("CARGO_PKG_VERSION")),
            serial_num: FixedStr::new("None"),
            dp_desc: FixedStr::new(&b.name),
        }))],
        MultipartRequest::Flow(f) => {
            let now = Instant::now();
            let mut list = Vec::new();
            for e in selected(b, f) {
                list.push(convert::flow_stats_out(&e, now)?);
            }
            chunked(
                list,
                |f: &FlowStats, out| f.encode(out),
                MultipartReply::Flow,
            )
        }
        MultipartRequest::Aggregate(f) => {
            let mut a = AggregateStats::default();
            for e in selected(b, f) {
                a.packet_count += e.packets;
                a.byte_count += e.bytes;
                a.flow_count += 1;
            }
            vec![MultipartReply::Aggregate(a)]
        }
        MultipartRequest::Table => {
            let mut active = [0u32; N_TABLES as usize];
            for e in b.tables().flows() {
                if let Some(n) = active.get_mut(usize::from(e.table_id)) {
                    *n += 1;
                }
            }
            let counts = b.pipeline.load().table_counts.clone();
            let list = (0..N_TABLES)
                .map(|t| {
                    let (lookup_count, matched_count) = counts.of(t);
                    TableStats {
                        table_id: t,
                        active_count: active[usize::from(t)],
                        lookup_count,
                        matched_count,
                    }
                })
                .collect();
            vec![MultipartReply::Table(list)]
        }
        MultipartRequest::PortStats { port_no } => {
            let list = b
                .ports
                .values()
                .filter(|p| *port_no == OFPP_ANY || *port_no == p.ofport)
                .map(|p| {
                    let c = p.counters.snapshot();
                    let (duration_sec, duration_nsec) = openflow::convert::duration_ms(
                        std::time::Duration::from_secs_f64(c.duration_secs),
                    );
                    PortStats {
                        port_no: p.ofport,
                        rx_packets: c.rx_packets,
                        tx_packets: c.tx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_bytes: c.tx_bytes,
                        rx_dropped: c.rx_dropped,
                        tx_dropped: c.tx_dropped,
                        rx_errors: c.rx_errors,
                        tx_errors: c.tx_errors,
                        rx_frame_err: PortStats::UNAVAILABLE,
                        rx_over_err: PortStats::UNAVAILABLE,
                        rx_crc_err: PortStats::UNAVAILABLE,
                        collisions: PortStats::UNAVAILABLE,
                        duration_sec,
                        duration_nsec,
                    }
                })
                .collect();
            chunked(
                list,
                |p: &PortStats, out| p.encode(out),
                MultipartReply::PortStats,
            )
        }
        MultipartRequest::PortDesc => {
            let list = b.ports.values().map(PortCtl::desc).collect();
            chunked(
                list,
                |p: &Port, out| p.encode(out),
                MultipartReply::PortDesc,
            )
        }
        MultipartRequest::Group { group_id } => {
            let flows = b.tables().flows();
            let now = Instant::now();
            let list = b
                .tables()
                .groups()
                .filter(|g| *group_id == OFPG_ALL || *group_id == g.id)
                .map(|g| {
                    let entry = b.group_entry(g.id);
                    // Since the group was added (a modify keeps it), in milliseconds as Open
                    // vSwitch's calc_duration.
                    let age = entry
                        .map(|e| now.saturating_duration_since(e.created))
                        .unwrap_or_default();
                    // A group not yet published has counted nothing.
                    let (packet_count, byte_count) =
                        entry.map_or((0, 0), |e| e.counts.group.counts());
                    let buckets = (0..g.buckets.len())
                        .map(|i| {
                            entry
                                .and_then(|e| e.counts.buckets.get(i))
                                .map_or((0, 0), |c| c.counts())
                        })
                        .collect();
                    let (duration_sec, duration_nsec) = openflow::convert::duration_ms(age);
                    GroupStats {
                        group_id: g.id,
                        ref_count: flows
                            .iter()
                            .filter(|e| e.instructions.uses_group(g.id))
                            .count() as u32,
                        packet_count,
                        byte_count,
                        duration_sec,
                        duration_nsec,
                        buckets,
                    }
                })
                .collect();
            chunked(
                list,
                |g: &GroupStats, out| g.encode(out),
                MultipartReply::Group,
            )
        }
        MultipartRequest::GroupDesc => {
            let list = b
                .tables()
                .groups()
                .map(convert::group_desc_out)
                .collect::<Result<Vec<_>, _>>()?;
            chunked(list, |g, out| g.encode(out), MultipartReply::GroupDesc)
        }
        MultipartRequest::GroupFeatures => {
            // Action bits (OFPAT_*): output, push/pop vlan, group, dec_nw_ttl, set_field.
            let actions = (1 << 0) | (1 << 17) | (1 << 18) | (1 << 22) | (1 << 24) | (1 << 25);
            vec![MultipartReply::GroupFeatures(GroupFeatures {
                types: 0b1111,
                // OFPGFC_SELECT_WEIGHT | OFPGFC_CHAINING.
                capabilities: 0b101,
                max_groups: [flowtable::group::GROUP_MAX; 4],
                actions: [actions; 4],
            })]
        }
        MultipartRequest::Meter { meter_id } | MultipartRequest::MeterConfig { meter_id } => {
            use flowtable::meter::METER_ALL;
            if *meter_id != METER_ALL && b.tables().meter(*meter_id).is_none() {
                return Err(OfError::new(
                    ErrorCode::MeterModUnknownMeter,
                    format!("meter {meter_id} does not exist"),
                ));
            }
            let meters = b
                .tables()
                .meters()
                .filter(|m| *meter_id == METER_ALL || *meter_id == m.id);
            if matches!(req, MultipartRequest::MeterConfig { .. }) {
                let list: Vec<MeterConfig> = meters.map(convert::meter_config_out).collect();
                chunked(list, |m, out| m.encode(out), MultipartReply::MeterConfig)
            } else {
                let flows = b.tables().flows();
                let now = Instant::now();
                let list: Vec<MeterStats> = meters
                    .map(|m| {
                        let entry = b.meter_entry(m.id);
                        let counts = entry.map(|e| e.counts()).unwrap_or_default();
                        let age = entry
                            .map(|e| now.saturating_duration_since(e.created))
                            .unwrap_or_default();
                        let (duration_sec, duration_nsec) = openflow::convert::duration_ms(age);
                        MeterStats {
                            meter_id: m.id,
                            flow_count: flows
                                .iter()
                                .filter(|e| e.instructions.uses_meter(m.id))
                                .count() as u32,
                            packet_in_count: counts.packets,
                            byte_in_count: counts.bytes,
                            duration_sec,
                            duration_nsec,
                            bands: if counts.bands.len() == m.bands.len() {
                                counts.bands
                            } else {
                                vec![(0, 0); m.bands.len()]
                            },
                        }
                    })
                    .collect();
                chunked(list, |m, out| m.encode(out), MultipartReply::Meter)
            }
        }
        MultipartRequest::MeterFeatures => {
            use flowtable::meter::{BAND_DROP, MAX_BANDS, MAX_METERS, MeterFlags};
            // What Open vSwitch's userspace datapath announces (drop bands only).
            vec![MultipartReply::MeterFeatures(MeterFeatures {
                max_meter: MAX_METERS,
                band_types: 1 << BAND_DROP,
                capabilities: u32::from(MeterFlags::ALL),
                max_bands: MAX_BANDS as u8,
                max_color: 0,
            })]
        }
        MultipartRequest::TableFeatures(set) if set.is_empty() => {
            // Unnamed, as Open vSwitch's tables are unless configured: `ovs-ofctl --names`
            // then prints `table=1`, `resubmit(,1)`, not a name.
            let list = (0..N_TABLES)
                .map(|t| TableFeatures::minimal(t, "", 1_000_000))
                .collect();
            chunked(
                list,
                |t: &TableFeatures, out| t.encode(out),
                MultipartReply::TableFeatures,
            )
        }
        MultipartRequest::TableFeatures(_) => {
            return Err(OfError::new(
                ErrorCode::TableFeaturesEperm,
                "table features cannot be changed",
            ));
        }
        MultipartRequest::Experimenter {
            experimenter,
            exp_type,
            ..
        } => {
            return Err(Message::unsupported_experimenter(*experimenter, *exp_type));
        }
    })
}

/// Flows matching a flow/aggregate stats request (non-strict), with live counters.
fn selected(b: &BridgeCtl, f: &FlowStatsRequest) -> Vec<FlowEntry> {
    let Ok(filter) = convert::match_in(&f.match_) else {
        return Vec::new();
    };
    b.tables()
        .flows()
        .into_iter()
        .filter(|e| f.table_id == flowtable::flow::TABLE_ALL || f.table_id == e.table_id)
        .filter(|e| e.match_.is_subset_of(&filter))
        .filter(|e| f.cookie_mask == 0 || (e.cookie & f.cookie_mask) == (f.cookie & f.cookie_mask))
        .filter(|e| f.out_port == OFPP_ANY || e.instructions.outputs_to(OfPort(f.out_port)))
        .filter(|e| {
            f.out_group == flowtable::flow::GROUP_ANY || e.instructions.uses_group(f.out_group)
        })
        .map(|e| {
            let mut e = e.clone();
            if let Some(s) = b.flow_stats(&e) {
                e.packets += s.packets.load(Relaxed);
                e.bytes += s.bytes.load(Relaxed);
            }
            e
        })
        .collect()
}

/// Splits `list` into reply bodies of at most [`CHUNK`] encoded bytes each (at least one).
fn chunked<T>(
    list: Vec<T>,
    encode: impl Fn(&T, &mut Vec<u8>),
    wrap: impl Fn(Vec<T>) -> MultipartReply,
) -> Vec<MultipartReply> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    let mut scratch = Vec::new();
    for item in list {
        scratch.clear();
        encode(&item, &mut scratch);
        if size + scratch.len() > CHUNK && !cur.is_empty() {
            out.push(wrap(std::mem::take(&mut cur)));
            size = 0;
        }
        size += scratch.len();
        cur.push(item);
    }
    out.push(wrap(cur));
    out
}
