//! Shared pieces of the conntrack tests: flow keys from text addresses, TCP segment facts,
//! tables with a fixed hash seed, the common `ct` actions, sorted dumps.
#![allow(dead_code)]

use conntrack::*;
use encap::flowkey::FlowKey;
use std::net::Ipv4Addr;

pub const SEC: u64 = 1_000_000_000;

pub fn ip(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap())
}

pub fn addr(s: &str) -> Addr {
    Addr::v4(ip(s))
}

/// An IPv4 flow key of protocol `proto` from `src:sport` to `dst:dport`.
pub fn key(proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    key_n(proto, ip(src), sport, ip(dst), dport)
}

/// [`key`] with addresses as numbers.
pub fn key_n(proto: u8, src: u32, sport: u16, dst: u32, dport: u16) -> FlowKey {
    FlowKey {
        eth_type: 0x0800,
        nw_src: src,
        nw_dst: dst,
        nw_proto: proto,
        tp_src: sport,
        tp_dst: dport,
        ..FlowKey::default()
    }
}

pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u16) -> FlowKey {
    FlowKey {
        tcp_flags: flags,
        ..key(6, src, sport, dst, dport)
    }
}

pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    key(17, src, sport, dst, dport)
}

/// A UDP flow key with addresses as numbers.
pub fn udp_n(src: u32, sport: u16, dst: u32, dport: u16) -> FlowKey {
    key_n(17, src, sport, dst, dport)
}

/// A TCP segment's facts: sequence and acknowledgement numbers, a full window, no scaling.
pub fn seg(seq: u32, ack: u32) -> PacketFacts {
    PacketFacts {
        tcp_seq: seq,
        tcp_ack: ack,
        tcp_window: 65535,
        tcp_wscale: WindowScale::Absent,
        ..PacketFacts::default()
    }
}

/// A table of `max_conns` with hash seed `seed` (runs repeat exactly).
pub fn table_with(max_conns: usize, seed: u64) -> Conntrack {
    Conntrack::new(Config {
        max_conns,
        hash_seed: Some(seed),
        ..Config::default()
    })
    .unwrap()
}

pub fn commit(zone: u16) -> CtAction<'static> {
    CtAction {
        zone,
        commit: true,
        ..CtAction::default()
    }
}

pub fn track(zone: u16) -> CtAction<'static> {
    CtAction {
        zone,
        ..CtAction::default()
    }
}

/// The table's dump at `now`, one line per connection, sorted.
pub fn dump_lines(ct: &Conntrack, now: u64) -> Vec<String> {
    let mut v: Vec<String> = ct.dump(now).map(|e| e.to_string()).collect();
    v.sort();
    v
}
