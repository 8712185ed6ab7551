//! What the periodic conntrack checkpoint (every 2 s, for `kill -9`) costs forwarding at
//! 100,000 connections, side by side in one run:
//!
//! - "on the forwarding thread" (how checkpoints were taken before): the table is copied by
//!   a job on the first forwarding thread, which forwards nothing meanwhile;
//! - "chunked, off the forwarding threads" (`persist::handover::snapshot_conntrack`, what the
//!   checkpointer and the handover use): the checkpoint thread copies the table itself, taking
//!   its lock for 4096 slots at a time.
//!
//! A probe sends one frame of an established connection (through `ct`, so it needs the table's
//! lock) through the forwarding thread every 200 µs and records how long each took; the
//! longest time is the forwarding stall. Only the copy is measured: the JSON encoding runs on
//! the checkpoint thread either way. In memory, no root. Run with `--nocapture` for the
//! figures (docs/benchmarks.md).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use vswitch::persist::handover;

const CONNS: u32 = 100_000;
/// Checkpoints taken per way (with a pause between them).
const ROUNDS: usize = 5;

fn frame(i: u32) -> Vec<u8> {
    let [_, _, hi, lo] = i.to_be_bytes();
    udp_frame_between(
        [10, 1, hi, lo],
        [10, 2, 0, 1],
        1000 + (i % 50_000) as u16,
        53,
    )
}

/// Probes the forwarding thread while `work` runs `ROUNDS` times; returns (the longest probe,
/// the 99th percentile probe, the probes over 5 ms, the longest `work`).
fn probe_during(
    b: &MemBridge,
    work: &dyn Fn() -> usize,
    expect: usize,
) -> (Duration, Duration, usize, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let switch = b.switch.clone();
        let stop = stop.clone();
        let f = frame(0);
        std::thread::spawn(move || {
            let mut times = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let t = Instant::now();
                switch.inject("br0", 1, &f).expect("inject");
                times.push(t.elapsed());
                std::thread::sleep(Duration::from_micros(200));
            }
            times
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut longest = Duration::ZERO;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let n = work();
        longest = longest.max(t.elapsed());
        // Every connection copied (none expires: UDP's timeout is far off).
        assert!(n >= expect, "{n} of {expect} connections copied");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut times = probe.join().unwrap();
    times.sort();
    let slow = times
        .iter()
        .filter(|t| **t > Duration::from_millis(5))
        .count();
    (
        *times.last().unwrap(),
        times[times.len() * 99 / 100],
        slow,
        longest,
    )
}

#[test]
fn the_checkpoint_copies_the_table_off_the_forwarding_thread() {
    let opts = vswitch::datapath::Options {
        conntrack: conntrack::Config {
            max_conns: CONNS as usize + 1000,
            // None expires while the test runs, however slow the machine.
            timeouts: conntrack::Timeouts {
                other_first: Duration::from_secs(600),
                other_multiple: Duration::from_secs(600),
                ..conntrack::Timeouts::default()
            },
            ..conntrack::Config::default()
        },
        ..vswitch::datapath::Options::default()
    };
    let mut b = MemBridge::new(2, opts);
    b.flows("table=0,priority=10,udp,actions=ct(commit,zone=1),output:2");
    for i in 0..CONNS {
        b.send(1, &frame(i));
        if i % 512 == 0 {
            b.received(2);
        }
    }
    b.received(2);
    let have = ct_len(&b);
    assert!(have >= CONNS as usize, "only {have} connections");

    let switch = b.switch.clone();
    let baseline = probe_during(&b, &|| have, 0);
    let on_thread = probe_during(
        &b,
        &|| {
            let start = switch.dp.start;
            let conns = switch.dp.call(move |dp| {
                let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
                dp.conntrack().snapshot(now)
            });
            conns.len()
        },
        have,
    );
    let chunked = probe_during(&b, &|| handover::snapshot_conntrack(&switch).len(), have);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("{have} connections, {ROUNDS} copies each; probe = one frame through ct every 200 us");
    println!("| table copy | longest probe | 99th percentile | probes over 5 ms | longest copy |");
    println!("|---|---|---|---|---|");
    for (name, (max, p99, slow, work)) in [
        ("none (baseline)", baseline),
        ("copy on the forwarding thread", on_thread),
        ("chunked copy on the checkpoint thread", chunked),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.3} ms | {slow} | {:.1} ms |",
            ms(max),
            ms(p99),
            ms(work)
        );
    }
}

fn ct_len(b: &MemBridge) -> usize {
    b.switch.dp.ct.len()
}
