//! Replies rendered as `ovs-ofctl -O OpenFlow13` renders them (headers included).

use std::fmt::Write as _;

use openflow::action::port as ofpp;
use openflow::switch::{capabilities as cap, port_config, port_state};
use openflow::{
    AggregateStats, FeaturesReply, GroupStats, Port, PortStats, SwitchConfig, TableStats,
};

/// A port number as ovs prints it (`LOCAL`, `CONTROLLER`, ..., or the number).
pub fn port_name(p: u32) -> String {
    match p {
        ofpp::LOCAL => "LOCAL".into(),
        ofpp::CONTROLLER => "CONTROLLER".into(),
        ofpp::IN_PORT => "IN_PORT".into(),
        ofpp::TABLE => "TABLE".into(),
        ofpp::NORMAL => "NORMAL".into(),
        ofpp::FLOOD => "FLOOD".into(),
        ofpp::ALL => "ALL".into(),
        ofpp::ANY => "ANY".into(),
        n => n.to_string(),
    }
}

pub fn features(f: &FeaturesReply, xid: u32) -> String {
    let mut s = format!(
        "OFPT_FEATURES_REPLY (OF1.3) (xid={xid:#x}): dpid:{:016x}\nn_tables:{}, n_buffers:{}\ncapabilities:",
        f.datapath_id, f.n_tables, f.n_buffers
    );
    for (bit, name) in [
        (cap::FLOW_STATS, "FLOW_STATS"),
        (cap::TABLE_STATS, "TABLE_STATS"),
        (cap::PORT_STATS, "PORT_STATS"),
        (cap::GROUP_STATS, "GROUP_STATS"),
        (cap::IP_REASM, "IP_REASM"),
        (cap::QUEUE_STATS, "QUEUE_STATS"),
        (cap::PORT_BLOCKED, "PORT_BLOCKED"),
    ] {
        if f.capabilities & bit != 0 {
            s.push(' ');
            s.push_str(name);
        }
    }
    s.push('\n');
    s
}

fn mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn bits(v: u32, names: &[(u32, &str)]) -> String {
    if v == 0 {
        return "0".into();
    }
    let parts: Vec<&str> = names
        .iter()
        .filter(|(b, _)| v & b != 0)
        .map(|(_, n)| *n)
        .collect();
    parts.join(" ")
}

/// `OFPPC_*` bits by name (`0` for none).
fn port_config_bits(v: u32) -> String {
    bits(
        v,
        &[
            (port_config::PORT_DOWN, "PORT_DOWN"),
            (port_config::NO_RECV, "NO_RECV"),
            (port_config::NO_FWD, "NO_FWD"),
            (port_config::NO_PACKET_IN, "NO_PACKET_IN"),
        ],
    )
}

/// An OFPT_PORT_MOD as ovs-ofctl prints it (after the `OFPT_PORT_MOD (OF1.3) (xid=..):`).
pub fn port_mod(pm: &openflow::PortMod) -> String {
    format!(
        " port: {}: addr:{}\n     config: {}\n     mask:   {}\n     advertise: {}",
        port_name(pm.port_no),
        mac(&pm.hw_addr),
        port_config_bits(pm.config),
        port_config_bits(pm.mask),
        if pm.advertise == 0 {
            "UNCHANGED".to_string()
        } else {
            format!("{:#x}", pm.advertise)
        }
    )
}

/// `OFPST_PORT_DESC reply`, or the port list inside `show`.
pub fn port_desc(ports: &[Port], xid: u32) -> String {
    let mut s = format!("OFPST_PORT_DESC reply (OF1.3) (xid={xid:#x}):\n");
    for p in ports {
        let _ = writeln!(
            s,
            " {}({}): addr:{}",
            port_name(p.port_no),
            p.name.text(),
            mac(&p.hw_addr)
        );
        let config = port_config_bits(p.config);
        let state = bits(
            p.state,
            &[
                (port_state::LINK_DOWN, "LINK_DOWN"),
                (port_state::BLOCKED, "BLOCKED"),
                (port_state::LIVE, "LIVE"),
            ],
        );
        let _ = writeln!(s, "     config:     {config}");
        let _ = writeln!(s, "     state:      {state}");
        let _ = writeln!(
            s,
            "     speed: {} Mbps now, {} Mbps max",
            p.curr_speed / 1000,
            p.max_speed / 1000
        );
    }
    s
}

pub fn config(c: &SwitchConfig, xid: u32) -> String {
    let frags = match c.flags & 3 {
        0 => "normal",
        1 => "drop",
        2 => "reassemble",
        _ => "nx-match",
    };
    format!(
        "OFPT_GET_CONFIG_REPLY (OF1.3) (xid={xid:#x}): frags={frags} miss_send_len={}\n",
        c.miss_send_len
    )
}

fn counter(v: u64) -> String {
    if v == PortStats::UNAVAILABLE {
        "?".into()
    } else {
        v.to_string()
    }
}

pub fn port_stats(list: &[PortStats], xid: u32) -> String {
    let mut s = format!(
        "OFPST_PORT reply (OF1.3) (xid={xid:#x}): {} ports\n",
        list.len()
    );
    for p in list {
        let _ = writeln!(
            s,
            "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}, frame={}, over={}, crc={}",
            port_name(p.port_no),
            counter(p.rx_packets),
            counter(p.rx_bytes),
            counter(p.rx_dropped),
            counter(p.rx_errors),
            counter(p.rx_frame_err),
            counter(p.rx_over_err),
            counter(p.rx_crc_err)
        );
        let _ = writeln!(
            s,
            "           tx pkts={}, bytes={}, drop={}, errs={}, coll={}",
            counter(p.tx_packets),
            counter(p.tx_bytes),
            counter(p.tx_dropped),
            counter(p.tx_errors),
            counter(p.collisions)
        );
        let _ = writeln!(
            s,
            "           duration={}",
            duration(p.duration_sec, p.duration_nsec)
        );
    }
    s
}

/// `OFPST_TABLE reply` as Open vSwitch's `ofputil_table_features_format` prints it: every
/// table starts with a blank line (`\n  table N:`), a run of tables equal to the one before
/// collapses into one `  table N: ditto` / `  tables N...M: ditto` line, which is printed when
/// the run ends (so a blank line follows it when another table comes), and the text ends with
/// exactly one newline.
pub fn table_stats(list: &[TableStats], xid: u32) -> String {
    let mut s = format!("OFPST_TABLE reply (OF1.3) (xid={xid:#x}):");
    let same = |a: &TableStats, b: &TableStats| {
        (a.active_count, a.lookup_count, a.matched_count)
            == (b.active_count, b.lookup_count, b.matched_count)
    };
    let finish = |s: &mut String, ditto: Option<(u8, u8)>| match ditto {
        Some((first, last)) if first == last => {
            let _ = write!(s, "\n  table {first}: ditto\n");
        }
        Some((first, last)) => {
            let _ = write!(s, "\n  tables {first}...{last}: ditto\n");
        }
        None => {}
    };
    let mut ditto: Option<(u8, u8)> = None;
    for (i, t) in list.iter().enumerate() {
        if i > 0 && same(t, &list[i - 1]) {
            ditto = Some((ditto.map_or(t.table_id, |(first, _)| first), t.table_id));
            continue;
        }
        finish(&mut s, ditto.take());
        let _ = write!(
            s,
            "\n  table {}:\n    active={}, lookup={}, matched={}\n",
            t.table_id, t.active_count, t.lookup_count, t.matched_count
        );
    }
    finish(&mut s, ditto);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

pub fn aggregate(a: &AggregateStats, xid: u32) -> String {
    format!(
        "OFPST_AGGREGATE reply (OF1.3) (xid={xid:#x}): packet_count={} byte_count={} flow_count={}\n",
        a.packet_count, a.byte_count, a.flow_count
    )
}

pub fn group_stats(list: &[GroupStats], xid: u32) -> String {
    let mut s = format!("OFPST_GROUP reply (OF1.3) (xid={xid:#x}):\n");
    for g in list {
        let _ = write!(
            s,
            " group_id={},duration={},ref_count={},packet_count={},byte_count={}",
            g.group_id,
            duration(g.duration_sec, g.duration_nsec),
            g.ref_count,
            g.packet_count,
            g.byte_count
        );
        for (i, (p, b)) in g.buckets.iter().enumerate() {
            let _ = write!(s, ",bucket{i}:packet_count={p},byte_count={b}");
        }
        s.push('\n');
    }
    s
}

/// `OFPST_DESC` as ovs-ofctl prints it.
pub fn desc(d: &openflow::Desc, xid: u32) -> String {
    format!(
        "OFPST_DESC reply (OF1.3) (xid={xid:#x}):\nManufacturer: {}\nHardware: {}\nSoftware: {}\nSerial Num: {}\nDP Description: {}\n",
        d.mfr_desc.text(),
        d.hw_desc.text(),
        d.sw_desc.text(),
        d.serial_num.text(),
        d.dp_desc.text()
    )
}

/// OpenFlow 1.3 action bits (`1 << OFPAT_*`) in the order and with the names Open vSwitch
/// prints them (`ofpact_bitmap_format`; checked with `ovs-ofctl ofp-print`: the copy_ttl and
/// PBB bits it does not print).
const GROUP_ACTION_NAMES: &[(u32, &str)] = &[
    (0, "output"),
    (22, "group"),
    (25, "set_field"),
    (18, "strip_vlan"),
    (17, "push_vlan"),
    (23, "mod_nw_ttl"),
    (24, "dec_ttl"),
    (15, "set_mpls_ttl"),
    (16, "dec_mpls_ttl"),
    (19, "push_mpls"),
    (20, "pop_mpls"),
    (21, "set_queue"),
];

/// `OFPST_GROUP_FEATURES` as ovs-ofctl prints it.
pub fn group_features(g: &openflow::GroupFeatures, xid: u32) -> String {
    let mut s = format!(
        "OFPST_GROUP_FEATURES reply (OF1.3) (xid={xid:#x}):\n Group table:\n    Types:  {:#x}\n    Capabilities:  {:#x}\n",
        g.types, g.capabilities
    );
    for (i, name) in ["all", "select", "indirect", "fast failover"]
        .iter()
        .enumerate()
    {
        if g.types & (1 << i) == 0 {
            continue;
        }
        let _ = write!(
            s,
            "    {name} group:\n       max_groups={:#x}\n       actions: ",
            g.max_groups[i]
        );
        let names: Vec<&str> = GROUP_ACTION_NAMES
            .iter()
            .filter(|(bit, _)| g.actions[i] & (1 << bit) != 0)
            .map(|(_, n)| *n)
            .collect();
        s.push_str(&names.join(" "));
        s.push('\n');
    }
    s
}

/// Open vSwitch's `ofp_print_duration`: whole seconds; then, when there are nanoseconds,
/// `.mmm` if they are whole milliseconds, else as many of the 9 digits as they need.
fn duration(sec: u32, nsec: u32) -> String {
    let mut s = sec.to_string();
    if nsec > 0 {
        if nsec.is_multiple_of(1_000_000) {
            let _ = write!(s, ".{:03}", nsec / 1_000_000);
        } else {
            let _ = write!(s, ".{nsec:09}");
            while s.ends_with('0') {
                s.pop();
            }
        }
    }
    s.push('s');
    s
}

/// `OFPST_METER_CONFIG` as ovs-ofctl prints it (`dump-meters`).
pub fn meter_config(list: &[openflow::MeterConfig], xid: u32) -> String {
    // The header ends without a newline: each entry starts with one (ofp-print).
    let mut s = format!("OFPST_METER_CONFIG reply (OF1.3) (xid={xid:#x}):");
    for c in list {
        s.push('\n');
        s.push_str(&flowtable::text::print_meter(
            &openflow::convert::meter_config_in(c),
        ));
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// `OFPST_METER` as ovs-ofctl prints it (`meter-stats`).
pub fn meter_stats(list: &[openflow::MeterStats], xid: u32) -> String {
    // The header ends without a newline: each entry starts with one (ofp-print).
    let mut s = format!("OFPST_METER reply (OF1.3) (xid={xid:#x}):");
    for m in list {
        let _ = write!(
            s,
            "\n{} flow_count:{} packet_in_count:{} byte_in_count:{} duration:{} bands:\n",
            flowtable::text::meter_id_text(m.meter_id, ':'),
            m.flow_count,
            m.packet_in_count,
            m.byte_in_count,
            duration(m.duration_sec, m.duration_nsec)
        );
        for (i, (p, b)) in m.bands.iter().enumerate() {
            let _ = writeln!(s, "{i}: packet_count:{p} byte_count:{b}");
        }
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// `OFPST_METER_FEATURES` as ovs-ofctl prints it (`meter-features`).
pub fn meter_features(f: &openflow::MeterFeatures, xid: u32) -> String {
    let names = |bits: u32, table: &[(u32, &str)]| {
        let mut v: Vec<String> = Vec::new();
        for i in 0..32 {
            if bits & (1 << i) == 0 {
                continue;
            }
            match table.iter().find(|(b, _)| *b == 1 << i) {
                Some((_, n)) => v.push((*n).to_string()),
                None => v.push(format!("0x{:x}", 1u32 << i)),
            }
        }
        v.join(" ")
    };
    format!(
        "OFPST_METER_FEATURES reply (OF1.3) (xid={xid:#x}):\nmax_meter:{} max_bands:{} max_color:{}\nband_types: {}\ncapabilities: {}\n",
        f.max_meter,
        f.max_bands,
        f.max_color,
        names(f.band_types, &[(1 << 1, "drop"), (1 << 2, "dscp_remark")]),
        names(
            f.capabilities,
            &[(1, "kbps"), (2, "pktps"), (4, "burst"), (8, "stats")]
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_print_like_ovs_ofctl() {
        // The texts Open vSwitch 3.1's ovs-ofctl printed for the same replies.
        let cfg = vec![
            openflow::MeterConfig {
                flags: 0x0e,
                meter_id: 1,
                bands: vec![openflow::MeterBand {
                    band_type: 1,
                    rate: 10,
                    burst_size: 5,
                    prec_level: 0,
                }],
            },
            openflow::MeterConfig {
                flags: 0x01,
                meter_id: 2,
                bands: vec![openflow::MeterBand {
                    band_type: 1,
                    rate: 1000,
                    burst_size: 0,
                    prec_level: 0,
                }],
            },
        ];
        assert_eq!(
            meter_config(&cfg, 2),
            "OFPST_METER_CONFIG reply (OF1.3) (xid=0x2):\n\
             meter=1 pktps burst stats bands=\ntype=drop rate=10 burst_size=5\n\n\
             meter=2 kbps bands=\ntype=drop rate=1000\n"
        );
        assert_eq!(
            meter_config(&[], 2),
            "OFPST_METER_CONFIG reply (OF1.3) (xid=0x2):\n"
        );
        let st = vec![openflow::MeterStats {
            meter_id: 3,
            flow_count: 0,
            packet_in_count: 0,
            byte_in_count: 0,
            duration_sec: 0,
            duration_nsec: 436_000_000,
            bands: vec![(0, 0), (0, 0)],
        }];
        assert_eq!(
            meter_stats(&st, 2),
            "OFPST_METER reply (OF1.3) (xid=0x2):\n\
             meter:3 flow_count:0 packet_in_count:0 byte_in_count:0 duration:0.436s bands:\n\
             0: packet_count:0 byte_count:0\n1: packet_count:0 byte_count:0\n"
        );
        assert_eq!(duration(4, 0), "4s");
        // ofp_print_duration: whole milliseconds print three digits, finer ones what they need.
        assert_eq!(duration(0, 999_000_000), "0.999s");
        assert_eq!(duration(1, 999_600_000), "1.9996s");
        assert_eq!(duration(2, 5), "2.000000005s");
        let f = openflow::MeterFeatures {
            max_meter: 262_144,
            band_types: 2,
            capabilities: 15,
            max_bands: 8,
            max_color: 0,
        };
        assert_eq!(
            meter_features(&f, 2),
            "OFPST_METER_FEATURES reply (OF1.3) (xid=0x2):\n\
             max_meter:262144 max_bands:8 max_color:0\nband_types: drop\n\
             capabilities: kbps pktps burst stats\n"
        );
    }

    /// Group stats durations print as ovs-ofctl prints them (`ofp_print_duration`).
    #[test]
    fn group_stats_durations_print_like_ovs() {
        let g = |id, duration_sec, duration_nsec| GroupStats {
            group_id: id,
            duration_sec,
            duration_nsec,
            ref_count: 1,
            buckets: vec![(0, 0)],
            ..GroupStats::default()
        };
        assert_eq!(
            group_stats(&[g(1, 0, 0), g(2, 75, 12_000_000)], 6),
            "OFPST_GROUP reply (OF1.3) (xid=0x6):\n \
             group_id=1,duration=0s,ref_count=1,packet_count=0,byte_count=0,bucket0:packet_count=0,byte_count=0\n \
             group_id=2,duration=75.012s,ref_count=1,packet_count=0,byte_count=0,bucket0:packet_count=0,byte_count=0\n"
        );
    }

    #[test]
    fn tables_collapse_into_ditto_like_ovs() {
        let t = |id, active| TableStats {
            table_id: id,
            active_count: active,
            lookup_count: 0,
            matched_count: 0,
        };
        let list = vec![
            t(0, 7),
            t(1, 3),
            t(2, 0),
            t(3, 0),
            t(4, 0),
            t(5, 1),
            t(6, 1),
            t(7, 2),
        ];
        // What `ovs-ofctl ofp-print` prints for this reply: a blank line after a ditto line
        // when a table follows, none after the last table.
        assert_eq!(
            table_stats(&list, 2),
            "OFPST_TABLE reply (OF1.3) (xid=0x2):\n  table 0:\n    active=7, lookup=0, matched=0\n\n  table 1:\n    active=3, lookup=0, matched=0\n\n  table 2:\n    active=0, lookup=0, matched=0\n\n  tables 3...4: ditto\n\n  table 5:\n    active=1, lookup=0, matched=0\n\n  table 6: ditto\n\n  table 7:\n    active=2, lookup=0, matched=0\n"
        );
    }

    #[test]
    fn port_stats_print_unavailable_as_question_mark() {
        let p = PortStats {
            port_no: ofpp::LOCAL,
            rx_dropped: PortStats::UNAVAILABLE,
            duration_sec: 99,
            duration_nsec: 704_000_000,
            ..PortStats::default()
        };
        let s = port_stats(&[p], 2);
        assert!(s.starts_with("OFPST_PORT reply (OF1.3) (xid=0x2): 1 ports\n  port LOCAL: rx pkts=0, bytes=0, drop=?, errs=0,"), "{s}");
        assert!(s.ends_with("           duration=99.704s\n"), "{s}");
    }
}
