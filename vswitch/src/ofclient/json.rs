//! `--format json` for the OpenFlow dumps (`dump-flows`, `dump-groups`, `dump-group-stats`,
//! `dump-ports`, `dump-tables`): the same requests as the text commands, answered as one JSON
//! document of [`crate::views`].
//! Other OpenFlow commands have no JSON form and refuse the flag.

use std::time::Instant;

use openflow::{MultipartReply, MultipartRequest, convert};

use super::commands::{
    DUMP_XID, Options, arg, compare_flows, fetch_flows, group_filter, resolve_port, sort_criteria,
    wire,
};
use super::{ClientError, Conn, Target};
use crate::views::*;

/// Runs dump `cmd` against the switch named by `args[0]` and answers its JSON.
pub fn run(cmd: &str, args: &[String], opts: &Options) -> Result<String, ClientError> {
    if !matches!(
        cmd,
        "dump-flows" | "dump-groups" | "dump-group-stats" | "dump-ports" | "dump-tables"
    ) {
        return Err(ClientError::Usage(format!(
            "--format json is not available for {cmd}: only dump-flows, dump-groups, \
             dump-group-stats, dump-ports and dump-tables (and the management dumps and lists) \
             print JSON"
        )));
    }
    let target = Target::parse(
        arg(args, 0, cmd, "a switch (bridge, unix:PATH or tcp:IP:PORT)")?,
        &opts.rundir,
    )?;
    let rest = &args[1..];
    let mut c = Conn::open(&target)?;
    c.set_next_xid(DUMP_XID);
    Ok(match cmd {
        "dump-flows" => {
            let criteria = sort_criteria(&opts.sort)?;
            let (_, mut flows) = fetch_flows(&mut c, rest.first().map(String::as_str))?;
            if !criteria.is_empty() {
                flows.sort_by(|a, b| compare_flows(a, b, &criteria));
            }
            let now = Instant::now();
            to_json(&FlowDump {
                flows: flows.iter().map(|e| FlowView::of(e, now)).collect(),
            })
        }
        "dump-groups" => {
            let only = group_filter(rest.first())?;
            let (_, parts) = c.multipart(MultipartRequest::GroupDesc)?;
            let mut groups = Vec::new();
            for part in parts {
                let MultipartReply::GroupDesc(list) = part else {
                    continue;
                };
                for gd in list
                    .iter()
                    .filter(|g| only.is_none_or(|id| id == g.group_id))
                {
                    groups.push(GroupView::of(&convert::group_desc_in(gd).map_err(wire)?));
                }
            }
            to_json(&GroupDump { groups })
        }
        "dump-group-stats" => {
            let group_id = group_filter(rest.first())?.unwrap_or(openflow::group::group_id::ALL);
            let (_, parts) = c.multipart(MultipartRequest::Group { group_id })?;
            let groups = parts
                .into_iter()
                .flat_map(|p| match p {
                    MultipartReply::Group(l) => l,
                    _ => Vec::new(),
                })
                .map(|g| GroupStatsView {
                    group_id: g.group_id,
                    duration_secs: g.duration_sec as f64 + g.duration_nsec as f64 / 1e9,
                    ref_count: g.ref_count,
                    packets: g.packet_count,
                    bytes: g.byte_count,
                    buckets: g
                        .buckets
                        .iter()
                        .map(|&(packets, bytes)| CountsView { packets, bytes })
                        .collect(),
                })
                .collect();
            to_json(&GroupStatsDump { groups })
        }
        "dump-tables" => {
            let (_, parts) = c.multipart(MultipartRequest::Table)?;
            let tables = parts
                .into_iter()
                .flat_map(|p| match p {
                    MultipartReply::Table(l) => l,
                    _ => Vec::new(),
                })
                .map(|t| TableStatsView {
                    table: t.table_id,
                    active: t.active_count,
                    lookups: t.lookup_count,
                    matched: t.matched_count,
                })
                .collect();
            to_json(&TableStatsDump { tables })
        }
        _ => {
            let port_no = match rest.first() {
                Some(p) => resolve_port(&target, p)?,
                None => openflow::action::port::ANY,
            };
            let (_, parts) = c.multipart(MultipartRequest::PortStats { port_no })?;
            let known = |v: u64| (v != openflow::PortStats::UNAVAILABLE).then_some(v);
            let ports = parts
                .into_iter()
                .flat_map(|p| match p {
                    MultipartReply::PortStats(l) => l,
                    _ => Vec::new(),
                })
                .map(|p| PortStatsView {
                    port_no: p.port_no,
                    rx_packets: known(p.rx_packets),
                    rx_bytes: known(p.rx_bytes),
                    rx_dropped: known(p.rx_dropped),
                    rx_errors: known(p.rx_errors),
                    tx_packets: known(p.tx_packets),
                    tx_bytes: known(p.tx_bytes),
                    tx_dropped: known(p.tx_dropped),
                    tx_errors: known(p.tx_errors),
                    duration_secs: p.duration_sec as f64 + p.duration_nsec as f64 / 1e9,
                })
                .collect();
            to_json(&PortStatsDump { ports })
        }
    })
}
