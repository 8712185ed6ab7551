//! Throughput measurement of `Conntrack::process` (not a pass/fail test).
//! Run: `cargo test -p conntrack --release --test conntrack_perf -- --ignored --nocapture`

use conntrack::*;
use encap::flowkey::{CT_EST, FlowKey};
use std::time::Instant;

mod common;
use common::udp_n;

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn process_throughput() {
    for conns in [1_000, 100_000, 1_000_000] {
        measure(conns, 4_000_000);
    }
}

fn measure(n_conns: u32, n_packets: u32) {
    let rss_before = rss_bytes();
    let mut ct = Conntrack::new(Config {
        max_conns: (n_conns as usize).max(1 << 18),
        ..Config::default()
    })
    .unwrap();
    // 16 NAT addresses: 1M connections to 16 servers do not fit one address's ports.
    let spec =
        NatSpec::snat(NatRange::new(Addr::v4(0xc0a8_0001), Addr::v4(0xc0a8_0010), 0, 0).unwrap());
    let commit = CtAction {
        commit: true,
        nat: Some(&spec),
        ..CtAction::default()
    };
    let f = PacketFacts::default();
    let flow = |i: u32| {
        udp_n(
            0x0a00_0000 + i / 1000,
            1024 + (i % 1000) as u16,
            0x0808_0800 + i % 16,
            53,
        )
    };

    let t = Instant::now();
    for i in 0..n_conns {
        assert!(ct.process(&flow(i), &f, &commit, 0).drop.is_none());
    }
    let commit_ns = t.elapsed().as_nanos() as f64 / n_conns as f64;
    let bytes_per_conn = rss_bytes().saturating_sub(rss_before) as f64 / n_conns as f64;

    // Replies then originals, pseudo-random order over all connections.
    let plain = NatSpec::default();
    let act = CtAction {
        nat: Some(&plain),
        ..CtAction::default()
    };
    let reply = |i: u32| {
        let k = flow(i);
        ct_reply_key(&ct, &k)
    };
    let replies: Vec<FlowKey> = (0..n_conns).map(reply).collect();
    let t = Instant::now();
    let mut x = 12345u32;
    let mut est = 0u32;
    for n in 0..n_packets {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let i = (x >> 8) % n_conns;
        let k = if (x >> 20) & 1 == 0 {
            replies[i as usize]
        } else {
            flow(i)
        };
        let r = ct.process(&k, &f, &act, 1_000 + n as u64);
        est += (r.ct_state & CT_EST != 0) as u32;
    }
    let pkt_ns = t.elapsed().as_nanos() as f64 / n_packets as f64;
    assert!(
        est > n_packets / 2,
        "most packets belong to established connections"
    );
    println!(
        "conntrack: commit+SNAT {commit_ns:.0} ns/conn, lookup+NAT {pkt_ns:.0} ns/packet over {n_conns} conns, {bytes_per_conn:.0} B of memory per connection (RSS growth, table sized to the count)"
    );
}

fn ct_reply_key(ct: &Conntrack, k: &FlowKey) -> FlowKey {
    let t = Tuple {
        src: Addr::v4(k.nw_src),
        dst: Addr::v4(k.nw_dst),
        sport: k.tp_src,
        dport: k.tp_dst,
        zone: 0,
        proto: 17,
        family: Family::V4,
    };
    let (e, _) = ct.lookup(&t, 0).unwrap();
    udp_n(
        e.reply.src.v4_host(),
        e.reply.sport,
        e.reply.dst.v4_host(),
        e.reply.dport,
    )
}

/// Resident set size of this process (Linux `/proc/self/statm`, pages of 4 KiB).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .unwrap_or(0)
        * 4096
}
